//! Link the embedded CPython (and libtorch with the `torch` feature) with rpaths.
fn main() {
    sealtune_build_support::link_embedded_python();
    if std::env::var_os("CARGO_FEATURE_TORCH").is_some() {
        sealtune_build_support::link_libtorch();
    }
}
