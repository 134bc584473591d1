//! `sealtune`: the customer CLI, a thin binary over the `sealtune_client` library.
fn main() {
    eprintln!("sealtune: not yet implemented");
    std::process::exit(2);
}
