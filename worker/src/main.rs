//! `sealtune-worker`: thin binary over the `sealtune_worker` library.
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    match args.get(1).and_then(|a| a.to_str()) {
        // The executor child (see `sealtune_worker::exec`).
        Some("exec") => match args.get(2) {
            Some(dir) if args.len() == 3 => sealtune_worker::exec::child_main(dir.as_ref()),
            _ => {
                eprintln!("usage: sealtune-worker exec <task dir>");
                ExitCode::from(2)
            }
        },
        _ => {
            eprintln!("sealtune-worker: not yet implemented (see the worker issue)");
            ExitCode::from(2)
        }
    }
}
