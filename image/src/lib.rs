//! # sealtune-image
//!
//! Writes the worker's OCI image layout from directories, with no container daemon and no registry,
//! so that the same inputs give the same bytes and therefore the same manifest digest (the digest a
//! dstack compose file pins and customers trust, docs/provider-guide.md). `scripts/build-image`
//! fills one directory per layer (the Debian base from `deploy/image/debian.lock`, the venv, the
//! worker and its stock scripts and models) and calls [`build`]; [`unpack`] is its inverse, used to
//! check an image by running it.
//!
//! What makes the bytes reproducible, whatever the build machine's clock, umask, file system or
//! `HashMap` seed:
//!
//! | part | rule |
//! |---|---|
//! | order | entries depth-first, each directory's names sorted by their bytes ([`layer`]) |
//! | time | every mtime, and the config's `created`, is the spec's `created` (SOURCE_DATE_EPOCH) |
//! | ownership and modes | layers with `normalize = true` are root's, `0755`/`0644`; others keep the numeric ids and mode bits the build gave them |
//! | what is left out | devices, FIFOs and sockets (the runtime provides `/dev`), extended attributes, user and group names |
//! | compression | gzip through zlib-rs at level 6, header without name or time (the backend is named in Cargo.toml) |
//! | JSON | structs in field order, maps as `BTreeMap`, compact ([`oci`]) |
//!
//! ```no_run
//! use std::path::PathBuf;
//! let spec = sealtune_image::ImageSpec::from_toml(&std::fs::read_to_string("deploy/image.toml")?)?;
//! let layers = vec![("debian".to_owned(), PathBuf::from("/tmp/rootfs"))];
//! let built = sealtune_image::build(&spec, "cpu", &layers, "/tmp/oci".as_ref())?;
//! println!("{}", built.manifest_digest);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod layer;
pub mod layout;
pub mod oci;
pub mod spec;
pub mod unpack;

pub use layout::{Built, build};
pub use spec::ImageSpec;
pub use unpack::unpack;

use std::path::PathBuf;

/// Everything that can go wrong building or unpacking an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A file of the build could not be read or written.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The image spec (`deploy/image.toml`) or the layers given for it are wrong.
    #[error("image spec: {0}")]
    Spec(String),
    /// An OCI layout does not hold what its index and manifest say (a digest, a size, a format).
    #[error("OCI layout: {0}")]
    Layout(String),
}

impl ImageError {
    fn io(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { what, path, source }
    }
}

/// `sha256:<hex>` of some bytes, the form OCI digests take.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}
