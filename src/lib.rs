//! dwr: a distributed workload runner. This facade re-exports the core crate; the
//! adapters (`dwr-redis`, `dwr-docker`) and the binary (`dwr-server`) are their own crates.

pub use dwr_core as core;
