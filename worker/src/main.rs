//! `sealtune-worker`: thin binary over the `sealtune_worker` library.
use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = sealtune_worker::cli::Cli::parse();
    match sealtune_worker::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sealtune-worker: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
