//! (to be written: see the protocol issue)
