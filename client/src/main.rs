//! `sealtune`: the customer CLI, a thin binary over the `sealtune_client` library.
//! Exit codes are documented in `sealtune --help` and `sealtune_client::error::exit`.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use sealtune_client::cli::{Cli, RunEnv, error_json, run, usage_error_json};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            let informational = matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            );
            if !informational && std::env::args().any(|a| a == "--json") {
                // `--json` promises one JSON document on stdout, usage errors included.
                let doc = usage_error_json(&e);
                println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
                return ExitCode::from(2);
            }
            e.exit()
        }
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let mut random = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut random);
    let env = RunEnv {
        now_ms,
        random,
        progress: std::io::stderr().is_terminal(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sealtune: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(run(&cli, &env));
    match result {
        Ok(out) => {
            if cli.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&out.json).unwrap_or_default()
                );
            } else if !out.human.is_empty() {
                println!("{}", out.human);
            }
            ExitCode::from(u8::try_from(out.exit_code).unwrap_or(1))
        }
        Err(e) => {
            if cli.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&error_json(&e)).unwrap_or_default()
                );
            } else {
                eprintln!("error: {e}");
                if let Some(h) = e.hint() {
                    eprintln!("hint: {h}");
                }
            }
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
        }
    }
}
