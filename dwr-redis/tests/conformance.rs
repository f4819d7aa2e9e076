//! The dwr-core JobStore conformance suite, run unchanged against `RedisJobStore`: one
//! `#[tokio::test]` per check, all on one private redis-server, each under its own prefix.

mod common;

use std::sync::{Arc, OnceLock};

use common::RedisServer;
use dwr_core::JobStore;

/// The server shared by every check of this binary (it dies with the test process).
fn server() -> Option<&'static RedisServer> {
    static SERVER: OnceLock<Option<RedisServer>> = OnceLock::new();
    SERVER.get_or_init(RedisServer::start).as_ref()
}

async fn make_store() -> Arc<dyn JobStore> {
    match server() {
        Some(server) => Arc::new(server.store().await),
        None => {
            eprintln!("note: no redis-server; checking the in-memory store instead");
            Arc::new(dwr_core::memory::InMemoryJobStore::new())
        }
    }
}

dwr_core::job_store_conformance!(make_store);
