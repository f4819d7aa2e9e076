//! The `dwr` binary (under construction): see the `dwr_server` library.
fn main() {}
