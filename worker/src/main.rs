//! `sealtune-worker`: thin binary over the `sealtune_worker` library.
fn main() {
    eprintln!("sealtune-worker: not yet implemented (see the worker issue)");
    std::process::exit(2);
}
