//! `sealtune-verify`: thin binary over the `sealtune_verifier` library.
fn main() {
    eprintln!("sealtune-verify: not yet implemented (see the verifier issue)");
    std::process::exit(2);
}
