//! Unpacking an OCI layout into a root file system, checking every digest on the way: the manifest and
//! configuration blobs, each layer's compressed bytes before it is opened, and its uncompressed tar
//! against the configuration's `diff_ids`. Only the layouts [`crate::build`] writes are supported
//! (gzip tar layers, no whiteouts).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use flate2::read::GzDecoder;
use sha2::{Digest, Sha256};

use crate::oci::*;
use crate::{ImageError, sha256_digest};

/// Unpack the image named `reference` (or the layout's only one) into `out`; returns its manifest digest.
pub fn unpack(layout: &Path, reference: Option<&str>, out: &Path) -> Result<String, ImageError> {
    let index: Index = read_json(&layout.join("index.json"))?;
    let desc = pick(&index, reference)?;
    let blobs = layout.join("blobs").join("sha256");
    let manifest: Manifest = serde_json::from_slice(&read_blob(&blobs, &desc.digest)?)
        .map_err(|e| ImageError::Layout(format!("manifest: {e}")))?;
    let config: ImageConfig = serde_json::from_slice(&read_blob(&blobs, &manifest.config.digest)?)
        .map_err(|e| ImageError::Layout(format!("config: {e}")))?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(ImageError::Layout(
            "the config's diff_ids do not match the manifest's layers".into(),
        ));
    }
    std::fs::create_dir_all(out).map_err(ImageError::io("create", out))?;
    for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
        if layer.media_type != LAYER_MEDIA_TYPE {
            return Err(ImageError::Layout(format!(
                "layer media type {} is not supported",
                layer.media_type
            )));
        }
        let path = blob_path(&blobs, &layer.digest)?;
        check_file_digest(&path, &layer.digest)?;
        unpack_layer(&path, diff_id, out)?;
    }
    Ok(desc.digest.clone())
}

fn pick<'a>(index: &'a Index, reference: Option<&str>) -> Result<&'a Descriptor, ImageError> {
    let named = |d: &&Descriptor| {
        reference.is_none_or(|r| d.annotations.get(REF_NAME).map(String::as_str) == Some(r))
    };
    let mut found = index.manifests.iter().filter(named);
    match (found.next(), found.next()) {
        (Some(d), None) => Ok(d),
        (None, _) => Err(ImageError::Layout(format!(
            "no manifest named {reference:?} in index.json"
        ))),
        (Some(_), Some(_)) => Err(ImageError::Layout("several manifests: name one".into())),
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ImageError> {
    let bytes = std::fs::read(path).map_err(ImageError::io("read", path))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ImageError::Layout(format!("{}: {e}", path.display())))
}

fn blob_path(blobs: &Path, digest: &str) -> Result<std::path::PathBuf, ImageError> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(blobs.join(hex))
        }
        _ => Err(ImageError::Layout(format!(
            "digest {digest:?} is not sha256:<64 hex>"
        ))),
    }
}

fn read_blob(blobs: &Path, digest: &str) -> Result<Vec<u8>, ImageError> {
    let path = blob_path(blobs, digest)?;
    let bytes = std::fs::read(&path).map_err(ImageError::io("read", &path))?;
    if sha256_digest(&bytes) != digest {
        return Err(ImageError::Layout(format!(
            "blob {digest} does not hash to its name"
        )));
    }
    Ok(bytes)
}

fn check_file_digest(path: &Path, digest: &str) -> Result<(), ImageError> {
    let mut hashing = HashingReader {
        inner: File::open(path).map_err(ImageError::io("open", path))?,
        hash: Sha256::new(),
    };
    std::io::copy(&mut hashing, &mut std::io::sink()).map_err(ImageError::io("read", path))?;
    if format!("sha256:{}", hex::encode(hashing.hash.finalize())) != digest {
        return Err(ImageError::Layout(format!(
            "layer {digest} does not hash to its name"
        )));
    }
    Ok(())
}

struct HashingReader<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

fn unpack_layer(path: &Path, diff_id: &str, out: &Path) -> Result<(), ImageError> {
    let file = File::open(path).map_err(ImageError::io("open", path))?;
    let mut plain = HashingReader {
        inner: GzDecoder::new(BufReader::new(file)),
        hash: Sha256::new(),
    };
    {
        let mut archive = tar::Archive::new(&mut plain);
        archive.set_preserve_permissions(true);
        archive.set_preserve_ownerships(true);
        archive.set_preserve_mtime(true);
        archive.set_overwrite(true);
        for entry in archive
            .entries()
            .map_err(ImageError::io("read the layer", path))?
        {
            let mut entry = entry.map_err(ImageError::io("read the layer", path))?;
            let name = entry
                .path()
                .map_err(ImageError::io("read the layer", path))?
                .into_owned();
            if name
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".wh."))
            {
                return Err(ImageError::Layout(format!(
                    "whiteout {} is not supported",
                    name.display()
                )));
            }
            // `unpack_in` refuses names that leave `out` (`..`, absolute paths, links followed out).
            entry
                .unpack_in(out)
                .map_err(ImageError::io("unpack", out.join(&name)))?;
        }
    }
    std::io::copy(&mut plain, &mut std::io::sink())
        .map_err(ImageError::io("read the layer", path))?;
    if format!("sha256:{}", hex::encode(plain.hash.finalize())) != diff_id {
        return Err(ImageError::Layout(format!(
            "layer {} does not match its diff_id {diff_id}",
            path.display()
        )));
    }
    Ok(())
}
