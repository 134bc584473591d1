//! One layer: a directory written as a tar stream whose bytes depend only on the directory's names,
//! contents, link targets and (unless normalized) mode bits and numeric owners — never on the order the
//! file system lists them in, on timestamps, or on the build machine's user names.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use crate::ImageError;

/// How a layer's entries are stamped.
#[derive(Debug, Clone, Copy)]
pub struct Stamp {
    /// Every entry's mtime (Unix seconds).
    pub mtime: u64,
    /// Root's with `0755`/`0644` (`true`), or the directory's own ids and mode bits (`false`).
    pub normalize: bool,
}

/// What a layer held, for the build's report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Regular files written (hard links counted once).
    pub files: u64,
    /// Bytes of regular file content.
    pub bytes: u64,
    /// Special files left out (devices, FIFOs, sockets).
    pub skipped: u64,
}

/// Write `root`'s contents (not `root` itself) as a tar stream into `out`, entry names relative to
/// `root` (`usr/bin/`, `usr/bin/env`). Returns what was written; the caller finishes `out`.
pub fn write_layer<W: Write>(
    root: &Path,
    stamp: Stamp,
    out: W,
) -> Result<(LayerStats, W), ImageError> {
    let mut w = Writer {
        tar: tar::Builder::new(out),
        stamp,
        links: BTreeMap::new(),
        stats: LayerStats::default(),
    };
    w.tar.follow_symlinks(false);
    w.dir(root, Path::new(""))?;
    let out = w
        .tar
        .into_inner()
        .map_err(ImageError::io("finish the tar stream of", root))?;
    Ok((w.stats, out))
}

struct Writer<W: Write> {
    tar: tar::Builder<W>,
    stamp: Stamp,
    /// (device, inode) of files with several links → the first name written, for hard-link entries.
    links: BTreeMap<(u64, u64), PathBuf>,
    stats: LayerStats,
}

impl<W: Write> Writer<W> {
    /// The entries of one directory, sorted by name bytes, each directory followed by its contents.
    fn dir(&mut self, dir: &Path, rel: &Path) -> Result<(), ImageError> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .map_err(ImageError::io("list", dir))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(ImageError::io("list", dir))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            self.entry(&dir.join(&name), &rel.join(&name))?;
        }
        Ok(())
    }

    fn entry(&mut self, path: &Path, rel: &Path) -> Result<(), ImageError> {
        let meta = std::fs::symlink_metadata(path).map_err(ImageError::io("stat", path))?;
        let ft = meta.file_type();
        let mut h = self.header(&meta);
        let fail = ImageError::io("write into the layer", path);
        if ft.is_dir() {
            h.set_entry_type(EntryType::Directory);
            h.set_size(0);
            self.tar
                .append_data(&mut h, rel, io::empty())
                .map_err(fail)?;
            return self.dir(path, rel);
        }
        if ft.is_symlink() {
            let target = std::fs::read_link(path).map_err(ImageError::io("read the link", path))?;
            h.set_entry_type(EntryType::Symlink);
            h.set_size(0);
            return self.tar.append_link(&mut h, rel, target).map_err(fail);
        }
        if !ft.is_file() {
            self.stats.skipped += 1;
            return Ok(());
        }
        if meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key) {
                h.set_entry_type(EntryType::Link);
                h.set_size(0);
                return self.tar.append_link(&mut h, rel, first).map_err(fail);
            }
            self.links.insert(key, rel.to_path_buf());
        }
        h.set_entry_type(EntryType::Regular);
        h.set_size(meta.len());
        let file = File::open(path).map_err(ImageError::io("open", path))?;
        // The size in the header is the one read at stat time: a file that shrinks under the build fails
        // it, and one that grows is cut there, rather than a header that disagrees with the bytes.
        let data = Exact {
            inner: io::Read::take(file, meta.len()),
            left: meta.len(),
        };
        self.tar.append_data(&mut h, rel, data).map_err(fail)?;
        self.stats.files += 1;
        self.stats.bytes += meta.len();
        Ok(())
    }

    fn header(&self, meta: &std::fs::Metadata) -> Header {
        let mut h = Header::new_gnu();
        h.set_mtime(self.stamp.mtime);
        let mode = meta.mode() & 0o7777;
        if self.stamp.normalize {
            h.set_uid(0);
            h.set_gid(0);
            let exec = meta.is_dir() || mode & 0o111 != 0;
            h.set_mode(if exec { 0o755 } else { 0o644 });
        } else {
            h.set_uid(u64::from(meta.uid()));
            h.set_gid(u64::from(meta.gid()));
            h.set_mode(mode);
        }
        h
    }
}

/// A reader of exactly `left` more bytes: ending early is an error.
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: io::Read> io::Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was written",
            ));
        }
        self.left = self.left.saturating_sub(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tar_of(root: &Path, normalize: bool) -> Vec<u8> {
        write_layer(
            root,
            Stamp {
                mtime: 1_000,
                normalize,
            },
            Vec::new(),
        )
        .unwrap()
        .1
    }

    fn entries(tar: &[u8]) -> Vec<(String, u32, u64, u64, u64)> {
        let mut a = tar::Archive::new(tar);
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.mtime().unwrap(),
                    h.size().unwrap(),
                )
            })
            .collect()
    }

    /// Names sorted by bytes, each directory before its contents, whatever order they were made in.
    #[test]
    fn entries_are_sorted_depth_first_by_name_bytes() {
        let d = tempfile::tempdir().unwrap();
        for name in ["b", "a/z", "a/B", "C"] {
            let p = d.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, name).unwrap();
        }
        let names: Vec<_> = entries(&tar_of(d.path(), true))
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(names, ["C", "a", "a/B", "a/z", "b"]);
    }

    /// Normalized: root's, 0755 or 0644, the stamp's mtime, whatever the file system says.
    #[test]
    fn normalized_entries_are_roots_with_two_modes_and_the_stamp_time() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("tool");
        std::fs::write(&f, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o700)).unwrap();
        let g = d.path().join("data");
        std::fs::write(&g, "x").unwrap();
        std::fs::set_permissions(&g, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = entries(&tar_of(d.path(), true));
        assert_eq!(e[0], ("data".into(), 0o644, 0, 1_000, 1));
        assert_eq!(e[1], ("tool".into(), 0o755, 0, 1_000, 10));
        // Kept: the mode bits as they are.
        let e = entries(&tar_of(d.path(), false));
        assert_eq!((e[0].1, e[1].1), (0o600, 0o700));
    }

    /// Hard links are one file and a link entry to the first name; symlinks keep their target; long
    /// names survive.
    #[test]
    fn links_and_long_names_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let long = "n".repeat(150);
        std::fs::write(d.path().join(&long), "data").unwrap();
        std::fs::hard_link(d.path().join(&long), d.path().join("hard")).unwrap();
        std::os::unix::fs::symlink(&long, d.path().join("soft")).unwrap();
        let tar = tar_of(d.path(), true);
        let mut a = tar::Archive::new(tar.as_slice());
        let got: Vec<_> = a
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let link = e.link_name().unwrap().map(|l| l.display().to_string());
                (
                    e.path().unwrap().display().to_string(),
                    e.header().entry_type(),
                    link,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("hard".to_owned(), EntryType::Regular, None),
                (long.clone(), EntryType::Link, Some("hard".to_owned())),
                ("soft".to_owned(), EntryType::Symlink, Some(long.clone())),
            ]
        );
    }

    /// A FIFO is left out and counted, not written as a file.
    #[test]
    fn special_files_are_skipped() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        let ok = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let (stats, tar) = write_layer(
            d.path(),
            Stamp {
                mtime: 0,
                normalize: true,
            },
            Vec::new(),
        )
        .unwrap();
        assert_eq!(stats.skipped, 1);
        assert!(entries(&tar).is_empty());
    }
}
