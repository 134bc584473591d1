//! Linux configfs-tsm (`/sys/kernel/config/tsm/report`): a bare TDX guest's quote interface.
//!
//! One report entry per process (`<dir>/sealtune-<pid>`, created with `mkdir`, which makes the
//! kernel populate it). A quote: write the 64 bytes to `inblob`, read `generation`, read
//! `outblob` (the kernel produces the quote), read `generation` again: if it moved, someone else
//! wrote `inblob` meanwhile and the read is retried. `provider` must be `tdx_guest`. There is no
//! event log and no app-compose on a bare guest; and no way to seal a key, so the TEE signer of
//! this source is new at every start (see [`super::Attestation::open`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{AttestError, QuoteSource, RawQuote, SourceKind};

/// Attempts when `generation` moves under a read.
const MAX_ATTEMPTS: u32 = 5;
/// Largest outblob accepted.
const MAX_QUOTE: u64 = 1 << 20;

/// The configfs-tsm source.
#[derive(Debug)]
pub struct TsmSource {
    entry: PathBuf,
    timeout: Duration,
    lock: tokio::sync::Mutex<()>,
}

impl TsmSource {
    /// Creates (or reuses) this process's report entry under `dir` and checks its provider.
    pub fn open(dir: &Path, timeout_secs: u64) -> Result<Self, AttestError> {
        if !dir.is_dir() {
            return Err(AttestError::Tsm {
                path: dir.to_path_buf(),
                reason:
                    "no configfs-tsm report directory (not a TDX guest, or configfs not mounted)"
                        .into(),
            });
        }
        let entry = dir.join(format!("sealtune-{}", std::process::id()));
        match std::fs::create_dir(&entry) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(tsm_err(&entry, format!("mkdir: {e}"))),
        }
        let source = Self {
            entry,
            timeout: Duration::from_secs(timeout_secs.max(1)),
            lock: tokio::sync::Mutex::new(()),
        };
        source.check_provider()?;
        Ok(source)
    }

    /// The report entry this source writes.
    pub fn entry(&self) -> &Path {
        &self.entry
    }

    fn check_provider(&self) -> Result<(), AttestError> {
        let path = self.entry.join("provider");
        let provider = std::fs::read_to_string(&path).map_err(|e| tsm_err(&path, e))?;
        if provider.trim() != "tdx_guest" {
            return Err(tsm_err(
                &path,
                format!("provider is {:?}, not tdx_guest", provider.trim()),
            ));
        }
        Ok(())
    }
}

fn generation(entry: &Path) -> Result<u64, AttestError> {
    let path = entry.join("generation");
    let text = std::fs::read_to_string(&path).map_err(|e| tsm_err(&path, e))?;
    text.trim()
        .parse()
        .map_err(|e| tsm_err(&path, format!("{:?}: {e}", text.trim())))
}

fn quote_blocking(entry: &Path, report_data: &[u8; 64]) -> Result<Vec<u8>, AttestError> {
    use std::io::Read as _;
    let inblob = entry.join("inblob");
    let outblob = entry.join("outblob");
    let mut last = String::new();
    for _ in 0..MAX_ATTEMPTS {
        std::fs::write(&inblob, report_data).map_err(|e| tsm_err(&inblob, e))?;
        let before = generation(entry)?;
        let mut quote = Vec::new();
        std::fs::File::open(&outblob)
            .and_then(|f| f.take(MAX_QUOTE + 1).read_to_end(&mut quote))
            .map_err(|e| tsm_err(&outblob, e))?;
        let after = generation(entry)?;
        if before != after {
            last = format!("generation moved from {before} to {after} during the read");
            continue;
        }
        if quote.len() as u64 > MAX_QUOTE {
            return Err(tsm_err(&outblob, "quote larger than 1 MiB"));
        }
        if quote.is_empty() {
            return Err(tsm_err(&outblob, "empty quote"));
        }
        return Ok(quote);
    }
    Err(tsm_err(
        entry,
        format!("no stable quote after {MAX_ATTEMPTS} attempts ({last})"),
    ))
}

impl Drop for TsmSource {
    fn drop(&mut self) {
        // Best effort: the kernel removes the entry's attributes with the directory.
        let _ = std::fs::remove_dir(&self.entry);
    }
}

impl QuoteSource for TsmSource {
    fn kind(&self) -> SourceKind {
        SourceKind::ConfigfsTsm
    }

    async fn quote(&self, report_data: [u8; 64]) -> Result<RawQuote, AttestError> {
        let _guard = self.lock.lock().await;
        let entry = self.entry.clone();
        let work = tokio::task::spawn_blocking(move || quote_blocking(&entry, &report_data));
        let quote = tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| tsm_err(&self.entry, format!("no quote within {:?}", self.timeout)))?
            .map_err(|e| tsm_err(&self.entry, format!("quote task failed: {e}")))??;
        Ok(RawQuote {
            quote,
            ..Default::default()
        })
    }
}

fn tsm_err(path: &Path, reason: impl std::fmt::Display) -> AttestError {
    AttestError::Tsm {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}
