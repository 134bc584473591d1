//! The loopback HTTP test fixture (a PCCS and a provider stand-in) lives in the one harness:
//! [`sealtune_e2e::http`].
#![allow(unused_imports)]

pub use sealtune_e2e::http::*;
