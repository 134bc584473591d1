//! Progress reporting for long transfers, decoupled from any terminal library: the library calls a
//! [`Progress`]; the binary passes an indicatif bar (hidden under `--json` or when stderr is not a
//! terminal), tests pass [`NoProgress`].

/// Receives progress of one transfer, in bytes.
pub trait Progress: Send + Sync {
    /// The total is known (or changed).
    fn set_total(&self, total: u64);
    /// `n` more bytes were done.
    fn advance(&self, n: u64);
    /// The transfer ended (successfully or not).
    fn finish(&self);
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn set_total(&self, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}

impl Progress for indicatif::ProgressBar {
    fn set_total(&self, total: u64) {
        self.set_length(total);
    }
    fn advance(&self, n: u64) {
        self.inc(n);
    }
    fn finish(&self) {
        self.finish_and_clear();
    }
}

/// A byte bar on stderr with `message`, or a hidden one when `visible` is false.
pub fn bar(message: &str, visible: bool) -> indicatif::ProgressBar {
    if !visible {
        return indicatif::ProgressBar::hidden();
    }
    let bar =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message.to_owned());
    bar
}

/// A writer that reports the bytes written through it.
pub(crate) struct ProgressWriter<'a, W> {
    pub(crate) inner: W,
    pub(crate) progress: &'a dyn Progress,
}

impl<W: std::io::Write> std::io::Write for ProgressWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
