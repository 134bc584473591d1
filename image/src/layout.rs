//! The OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`) of a spec and its layer
//! directories: the layers are written in parallel, each hashed twice on the way (the uncompressed tar
//! for `diff_ids`, the gzip stream for the blob's digest), then the configuration, the manifest and the
//! index.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::{Compression, GzBuilder};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;

use crate::layer::{LayerStats, Stamp, write_layer};
use crate::oci::*;
use crate::spec::ImageSpec;
use crate::{ImageError, sha256_digest};

/// The gzip level of every layer (part of the bytes: changing it changes every digest).
pub const GZIP_LEVEL: u32 = 6;

/// What [`build`] wrote.
#[derive(Debug, Clone)]
pub struct Built {
    /// `sha256:<hex>` of the manifest: the digest a compose file pins (`image@sha256:…`).
    pub manifest_digest: String,
    /// The reference in `index.json` (`<version>-<variant>`).
    pub reference: String,
    /// The layer descriptors, bottom first, with what each held.
    pub layers: Vec<(Descriptor, LayerStats)>,
}

/// Write the image of `spec`'s `variant` into the empty (or missing) directory `out`; `dirs` gives a
/// directory for every layer of the spec, by name, and nothing else.
pub fn build(
    spec: &ImageSpec,
    variant: &str,
    dirs: &[(String, PathBuf)],
    out: &Path,
) -> Result<Built, ImageError> {
    let extra_env = &spec.variant(variant)?.env;
    let sources = layer_sources(spec, dirs)?;
    let blobs = out.join("blobs").join("sha256");
    prepare_out(out, &blobs)?;
    let mtime = u64::try_from(spec.created).map_err(|_| ImageError::Spec("created < 0".into()))?;

    let results: Vec<Result<(Descriptor, String, LayerStats), ImageError>> =
        std::thread::scope(|s| {
            let handles: Vec<_> = sources
                .iter()
                .enumerate()
                .map(|(i, (dir, normalize))| {
                    let blobs = &blobs;
                    s.spawn(move || {
                        write_blob_layer(
                            dir,
                            Stamp {
                                mtime,
                                normalize: *normalize,
                            },
                            blobs,
                            i,
                        )
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(ImageError::Layout("a layer writer panicked".into()))
                    })
                })
                .collect()
        });
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for r in results {
        let (desc, diff_id, stats) = r?;
        diff_ids.push(diff_id);
        layers.push((desc, stats));
    }

    let created = time::OffsetDateTime::from_unix_timestamp(spec.created)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .ok_or_else(|| ImageError::Spec(format!("created {} is not a time", spec.created)))?;
    let c = &spec.config;
    let config = ImageConfig {
        created: created.clone(),
        architecture: spec.architecture.clone(),
        os: spec.os.clone(),
        config: ContainerConfig {
            env: c.env.iter().chain(extra_env).cloned().collect(),
            entrypoint: c.entrypoint.clone(),
            cmd: c.cmd.clone(),
            working_dir: c.working_dir.clone(),
            exposed_ports: c
                .exposed_ports
                .iter()
                .map(|p| (p.clone(), Empty {}))
                .collect(),
            volumes: c.volumes.iter().map(|v| (v.clone(), Empty {})).collect(),
            labels: c.labels.clone(),
        },
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids,
        },
        history: spec
            .layers
            .iter()
            .map(|l| History {
                created: created.clone(),
                created_by: l.comment.clone(),
            })
            .collect(),
    };
    let config_desc = write_json_blob(&blobs, CONFIG_MEDIA_TYPE, &config)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: MANIFEST_MEDIA_TYPE.into(),
        config: config_desc,
        layers: layers.iter().map(|(d, _)| d.clone()).collect(),
    };
    let mut manifest_desc = write_json_blob(&blobs, MANIFEST_MEDIA_TYPE, &manifest)?;
    let reference = spec.reference(variant);
    manifest_desc.annotations = BTreeMap::from([(REF_NAME.to_owned(), reference.clone())]);
    manifest_desc.platform = Some(Platform {
        architecture: spec.architecture.clone(),
        os: spec.os.clone(),
    });
    let index = Index {
        schema_version: 2,
        media_type: INDEX_MEDIA_TYPE.into(),
        manifests: vec![manifest_desc.clone()],
    };
    write_file(&out.join("index.json"), &to_json(&index)?)?;
    write_file(&out.join("oci-layout"), OCI_LAYOUT.as_bytes())?;
    Ok(Built {
        manifest_digest: manifest_desc.digest,
        reference,
        layers,
    })
}

/// The spec's layers in order with their directories; every layer given once, nothing unknown.
fn layer_sources(
    spec: &ImageSpec,
    dirs: &[(String, PathBuf)],
) -> Result<Vec<(PathBuf, bool)>, ImageError> {
    let mut given: BTreeMap<&str, &PathBuf> = BTreeMap::new();
    for (name, dir) in dirs {
        if !spec.layers.iter().any(|l| &l.name == name) {
            return Err(ImageError::Spec(format!("no layer {name:?} in the spec")));
        }
        if given.insert(name, dir).is_some() {
            return Err(ImageError::Spec(format!("layer {name:?} given twice")));
        }
    }
    spec.layers
        .iter()
        .map(|l| match given.get(l.name.as_str()) {
            Some(dir) if dir.is_dir() => Ok(((*dir).clone(), l.normalize)),
            Some(dir) => Err(ImageError::Spec(format!(
                "layer {:?}: {} is not a directory",
                l.name,
                dir.display()
            ))),
            None => Err(ImageError::Spec(format!(
                "no directory given for layer {:?}",
                l.name
            ))),
        })
        .collect()
}

fn prepare_out(out: &Path, blobs: &Path) -> Result<(), ImageError> {
    if out.exists()
        && std::fs::read_dir(out)
            .map_err(ImageError::io("list", out))?
            .next()
            .is_some()
    {
        return Err(ImageError::Spec(format!("{} is not empty", out.display())));
    }
    std::fs::create_dir_all(blobs).map_err(ImageError::io("create", blobs))
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    len: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn hashing<W>(inner: W) -> Hashing<W> {
    Hashing {
        inner,
        hash: Sha256::new(),
        len: 0,
    }
}

/// Layer `i`: tar → (diff_id hash) → gzip → (digest) → a temporary blob, renamed to its digest.
fn write_blob_layer(
    dir: &Path,
    stamp: Stamp,
    blobs: &Path,
    i: usize,
) -> Result<(Descriptor, String, LayerStats), ImageError> {
    let tmp = blobs.join(format!(".layer-{i}.tmp"));
    let file = File::create(&tmp).map_err(ImageError::io("create", &tmp))?;
    let gz = GzBuilder::new().mtime(0).write(
        hashing(BufWriter::with_capacity(1 << 20, file)),
        Compression::new(GZIP_LEVEL),
    );
    let (stats, plain) = write_layer(dir, stamp, hashing(gz))?;
    let diff_id = format!("sha256:{}", hex::encode(plain.hash.finalize()));
    let compressed = plain
        .inner
        .finish()
        .map_err(ImageError::io("compress", &tmp))?;
    let digest = format!("sha256:{}", hex::encode(compressed.hash.finalize()));
    let size = compressed.len;
    let file = compressed
        .inner
        .into_inner()
        .map_err(|e| ImageError::io("write", &tmp)(e.into_error()))?;
    file.sync_all().map_err(ImageError::io("sync", &tmp))?;
    let path = blob_path(blobs, &digest);
    std::fs::rename(&tmp, &path).map_err(ImageError::io("rename into place", &path))?;
    let desc = Descriptor {
        media_type: LAYER_MEDIA_TYPE.into(),
        digest,
        size,
        annotations: BTreeMap::new(),
        platform: None,
    };
    Ok((desc, diff_id, stats))
}

fn blob_path(blobs: &Path, digest: &str) -> PathBuf {
    blobs.join(digest.trim_start_matches("sha256:"))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, ImageError> {
    serde_json::to_vec(value).map_err(|e| ImageError::Layout(format!("serialize: {e}")))
}

fn write_json_blob<T: serde::Serialize>(
    blobs: &Path,
    media_type: &str,
    value: &T,
) -> Result<Descriptor, ImageError> {
    let bytes = to_json(value)?;
    let digest = sha256_digest(&bytes);
    write_file(&blob_path(blobs, &digest), &bytes)?;
    Ok(Descriptor {
        media_type: media_type.into(),
        digest,
        size: bytes.len() as u64,
        annotations: BTreeMap::new(),
        platform: None,
    })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    std::fs::write(path, bytes).map_err(ImageError::io("write", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"
name = "t"
version = "1"
repository = "example.invalid/t"
created = 1796428800
architecture = "amd64"
os = "linux"
[config]
entrypoint = ["/bin/t"]
exposed_ports = ["3080/tcp", "80/tcp", "9/udp"]
volumes = ["/b", "/a"]
[config.labels]
z = "1"
a = "2"
m = "3"
[[layer]]
name = "one"
comment = "the first"
[[layer]]
name = "two"
comment = "the second"
normalize = false
[variants.v]
env = ["X=1"]
"#;

    fn tree(root: &Path) -> Vec<(String, PathBuf)> {
        for (p, c) in [("one/bin/t", "t"), ("two/etc/a", "a")] {
            let p = root.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, c).unwrap();
        }
        ["one", "two"]
            .iter()
            .map(|n| (n.to_string(), root.join(n)))
            .collect()
    }

    /// The bytes are pinned: a change of the tar or gzip writer, the JSON or the backend (feature
    /// unification can switch flate2's) fails here before it silently changes every published digest.
    /// Layer "two" keeps owners and modes, so the tree is made with fixed ones.
    #[test]
    fn a_fixed_tree_gives_the_pinned_digest() {
        let spec = ImageSpec::from_toml(SPEC).unwrap();
        let d = tempfile::tempdir().unwrap();
        let dirs = tree(d.path());
        use std::os::unix::fs::PermissionsExt;
        for p in ["two", "two/etc"] {
            std::fs::set_permissions(d.path().join(p), std::fs::Permissions::from_mode(0o755))
                .unwrap();
        }
        std::fs::set_permissions(
            d.path().join("two/etc/a"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let (uid, gid) = {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::metadata(d.path().join("two/etc/a")).unwrap();
            (m.uid(), m.gid())
        };
        let built = build(&spec, "v", &dirs, &d.path().join("oci")).unwrap();
        if (uid, gid) == (0, 0) {
            assert_eq!(
                built.manifest_digest,
                "sha256:a81498da8bc610e98e7d09e10f3fd4e7842dba7a91216ca9ac419c964aa18069"
            );
        }
        // Maps of many entries serialize in one order (BTreeMap), whatever the process's hash seed.
        let again = build(&spec, "v", &dirs, &d.path().join("oci2")).unwrap();
        assert_eq!(built.manifest_digest, again.manifest_digest);
        let config = std::fs::read_to_string(blob_path(&d.path().join("oci/blobs/sha256"), &{
            let m: Manifest = serde_json::from_slice(
                &std::fs::read(blob_path(
                    &d.path().join("oci/blobs/sha256"),
                    &built.manifest_digest,
                ))
                .unwrap(),
            )
            .unwrap();
            m.config.digest
        }))
        .unwrap();
        assert!(
            config.contains(r#""ExposedPorts":{"3080/tcp":{},"80/tcp":{},"9/udp":{}}"#),
            "{config}"
        );
        assert!(config.contains(r#""Env":["X=1"]"#), "{config}");
        assert!(
            config.contains(r#""created":"2026-12-05T00:00:00Z""#),
            "{config}"
        );
    }

    #[test]
    fn every_layer_of_the_spec_must_be_given_once_and_nothing_else() {
        let spec = ImageSpec::from_toml(SPEC).unwrap();
        let d = tempfile::tempdir().unwrap();
        let dirs = tree(d.path());
        let run = |dirs: &[(String, PathBuf)], out: &str| {
            build(&spec, "v", dirs, &d.path().join(out))
                .unwrap_err()
                .to_string()
        };
        assert!(run(&dirs[..1], "o1").contains("no directory given for layer \"two\""));
        let mut twice = dirs.clone();
        twice.push(dirs[0].clone());
        assert!(run(&twice, "o2").contains("given twice"));
        let mut unknown = dirs.clone();
        unknown.push(("three".into(), d.path().join("one")));
        assert!(run(&unknown, "o3").contains("no layer \"three\""));
        let e = build(&spec, "w", &dirs, &d.path().join("o4"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no variant \"w\""), "{e}");
        // An output directory with something in it is not overwritten.
        std::fs::create_dir_all(d.path().join("full")).unwrap();
        std::fs::write(d.path().join("full/x"), "").unwrap();
        assert!(run(&dirs, "full").contains("is not empty"));
    }

    #[test]
    fn a_spec_with_a_layer_named_twice_or_a_bad_env_is_refused() {
        let twice = SPEC.replace("name = \"two\"", "name = \"one\"");
        assert!(
            ImageSpec::from_toml(&twice)
                .unwrap_err()
                .to_string()
                .contains("named twice")
        );
        let env = SPEC.replace("X=1", "X");
        assert!(
            ImageSpec::from_toml(&env)
                .unwrap_err()
                .to_string()
                .contains("not KEY=value")
        );
        let unknown = SPEC.replace("os = \"linux\"", "os = \"linux\"\nuser = \"root\"");
        assert!(ImageSpec::from_toml(&unknown).is_err());
    }
}
