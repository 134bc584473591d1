//! `sealtune-verify`: thin binary over the `sealtune_verifier` library.
use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = sealtune_verifier::cli::Cli::parse();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let code = sealtune_verifier::cli::run(&cli, now, &mut std::io::stdout().lock())?;
    std::process::exit(code);
}
