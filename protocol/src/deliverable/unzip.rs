//! Extracting the decrypted zip safely: no entry may land outside the destination, no links, no
//! duplicates, and the size is bounded against zip bombs.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use super::format::READ_BUF_LEN;

/// Bounds of [`unzip_safely`] against zip bombs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnzipLimits {
    /// Most entries (files and directories).
    pub max_entries: usize,
    /// Most bytes written in all (counted as extracted, not as declared).
    pub max_total_bytes: u64,
}

impl Default for UnzipLimits {
    /// 100 000 entries and 1 TiB: above any model, below a full disk.
    fn default() -> Self {
        UnzipLimits {
            max_entries: 100_000,
            max_total_bytes: 1 << 40,
        }
    }
}

/// Why a zip could not be extracted. The destination directory is removed on any of these.
#[derive(Debug, thiserror::Error)]
pub enum UnzipError {
    /// The zip is malformed, or an entry's checksum does not match.
    #[error("invalid zip: {0}")]
    Zip(#[from] zip::result::ZipError),
    /// Reading or writing failed.
    #[error("I/O error while extracting: {0}")]
    Io(#[from] io::Error),
    /// An entry name that is absolute, holds `..`, a backslash, a drive or a NUL.
    #[error(
        "zip entry {0:?} has an unsafe path (absolute, `..`, backslash or drive); refusing to extract"
    )]
    UnsafePath(String),
    /// A symbolic-link entry.
    #[error("zip entry {0:?} is a symbolic link; refusing to extract")]
    Symlink(String),
    /// Two entries with the same path.
    #[error("zip entry {0:?} appears twice")]
    Duplicate(String),
    /// More entries than the limit.
    #[error("zip has {0} entries, more than the limit of {1}")]
    TooManyEntries(usize, usize),
    /// More extracted bytes than the limit.
    #[error("zip extracts to more than {0} bytes (zip bomb?)")]
    TooLarge(u64),
    /// The destination exists already.
    #[error("destination {0} exists already; extract into a new directory")]
    DestinationExists(PathBuf),
}

/// What [`unzip_safely`] extracted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unzipped {
    /// Files written.
    pub files: usize,
    /// Bytes written.
    pub bytes: u64,
}

/// The relative path of a zip entry name, or `None` if it could escape the destination.
pub(crate) fn safe_entry_path(name: &str) -> Option<PathBuf> {
    if name.is_empty() || name.contains('\\') || name.contains('\0') || name.starts_with('/') {
        return None;
    }
    let mut out = PathBuf::new();
    for part in name.split('/') {
        if part.is_empty() {
            continue;
        }
        if part == "." || part == ".." || part.contains(':') {
            return None;
        }
        out.push(part);
    }
    let normal = out.components().all(|c| matches!(c, Component::Normal(_)));
    (normal && out.components().next().is_some()).then_some(out)
}

/// Extract the zip at `zip_path` into the new directory `dest` (which must not exist), refusing entries
/// that would land outside it, symbolic links and duplicates, and stopping at `limits`. On error `dest` is
/// removed, so a half-extracted model is never left behind.
pub fn unzip_safely(
    zip_path: &Path,
    dest: &Path,
    limits: &UnzipLimits,
) -> Result<Unzipped, UnzipError> {
    if dest.exists() {
        return Err(UnzipError::DestinationExists(dest.to_path_buf()));
    }
    let mut archive = zip::ZipArchive::new(File::open(zip_path)?)?;
    if archive.len() > limits.max_entries {
        return Err(UnzipError::TooManyEntries(
            archive.len(),
            limits.max_entries,
        ));
    }
    fs::create_dir_all(dest)?;
    let result = extract(&mut archive, dest, limits);
    if result.is_err() {
        let _ = fs::remove_dir_all(dest);
    }
    result
}

fn extract(
    archive: &mut zip::ZipArchive<File>,
    dest: &Path,
    limits: &UnzipLimits,
) -> Result<Unzipped, UnzipError> {
    let mut files = 0usize;
    let mut bytes = 0u64;
    let mut buf = vec![0u8; READ_BUF_LEN];
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i)?;
        let name = entry.name().to_string();
        if entry.is_symlink() {
            return Err(UnzipError::Symlink(name));
        }
        let rel = safe_entry_path(&name).ok_or_else(|| UnzipError::UnsafePath(name.clone()))?;
        let path = dest.join(&rel);
        if entry.is_dir() {
            fs::create_dir_all(&path)?;
            continue;
        }
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut file = match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(UnzipError::Duplicate(name));
            }
            Err(e) => return Err(e.into()),
        };
        loop {
            let n = entry.read(&mut buf)?;
            if n == 0 {
                break;
            }
            bytes = bytes.saturating_add(n as u64);
            if bytes > limits.max_total_bytes {
                return Err(UnzipError::TooLarge(limits.max_total_bytes));
            }
            file.write_all(buf.get(..n).unwrap_or_default())?;
        }
        files = files.saturating_add(1);
    }
    Ok(Unzipped { files, bytes })
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_entry_names_are_refused() {
        for bad in [
            "../x",
            "/etc/passwd",
            "a/../../x",
            "a\\..\\x",
            "C:/x",
            "c:x",
            "",
            "./",
            "a/./b",
        ] {
            assert_eq!(safe_entry_path(bad), None, "{bad}");
        }
        assert_eq!(
            safe_entry_path("output_model/a/b.bin"),
            Some(PathBuf::from("output_model/a/b.bin"))
        );
        assert_eq!(
            safe_entry_path("output_model/"),
            Some(PathBuf::from("output_model"))
        );
    }
}
