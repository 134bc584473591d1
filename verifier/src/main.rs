//! `sealtune-verify`: thin binary over the `sealtune_verifier` library.
//!
//! Exit codes: 0 every required link holds, 1 some link fails, 2 the check could not run (bad
//! arguments, unreadable files, unreachable services).
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::unreachable,
    clippy::arithmetic_side_effects
)]
use clap::Parser;

fn main() {
    let cli = sealtune_verifier::cli::Cli::parse();
    let result = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(anyhow::Error::from)
        .and_then(|now| {
            sealtune_verifier::cli::run(&cli, now.as_secs(), &mut std::io::stdout().lock())
                .map_err(anyhow::Error::from)
        });
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("sealtune-verify: {e:#}");
            std::process::exit(2);
        }
    }
}
