//! The dwr-core JobStore conformance suite again, with every script sent by SHA
//! (`EVALSHA`), as on a server without functions (Redis 6): the stores connect as a user
//! the server does not let load functions, so the store falls back to the scripts' text.

mod common;

use std::sync::{Arc, OnceLock};

use common::RedisServer;
use dwr_core::JobStore;
use dwr_redis::{RedisConfig, RedisJobStore};

/// A user who may run everything but `FUNCTION` (so no `FUNCTION LOAD`).
const USER: &str = "nofunctions";
const PASSWORD: &str = "conformance";

/// The server shared by every check of this binary, with [`USER`] (it dies with the test
/// process).
fn server() -> Option<&'static RedisServer> {
    static SERVER: OnceLock<Option<RedisServer>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let server = RedisServer::start()?;
            redis::cmd("ACL")
                .arg(&["SETUSER", USER, "on", &format!(">{PASSWORD}")][..])
                .arg(&["~*", "&*", "+@all", "-function"][..])
                .exec(&mut server.client())
                .expect("ACL SETUSER");
            Some(server)
        })
        .as_ref()
}

async fn make_store() -> Arc<dyn JobStore> {
    match server() {
        Some(server) => {
            let config = RedisConfig {
                url: Some(format!(
                    "redis://{USER}:{PASSWORD}@127.0.0.1:{}/",
                    server.port()
                )),
                ..server.config()
            };
            let store = RedisJobStore::connect(config)
                .await
                .expect("connect as the user without functions");
            assert!(
                !store.uses_functions(),
                "the store did not fall back to EVALSHA"
            );
            Arc::new(store)
        }
        None => {
            eprintln!("note: no redis-server; checking the in-memory store instead");
            Arc::new(dwr_core::memory::InMemoryJobStore::new())
        }
    }
}

dwr_core::job_store_conformance!(make_store);
