//! Test support: a private `redis-server` on a free loopback port, killed on drop, and a
//! store connected to it under a fresh key prefix.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use dwr_redis::{RedisConfig, RedisJobStore};

/// A redis-server process owned by one test.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    args: Vec<String>,
}

/// Whether the environment demands real services (then a missing one fails the test).
pub fn services_required() -> bool {
    std::env::var("DWR_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

impl RedisServer {
    /// Starts a server without persistence, or returns `None` (with a note) when
    /// `redis-server` is missing and services are not required.
    pub fn start() -> Option<Self> {
        Self::start_with(&["--save", "", "--appendonly", "no"])
    }

    /// Starts a server with extra arguments (in its own temp directory).
    pub fn start_with(extra: &[&str]) -> Option<Self> {
        if Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            assert!(
                !services_required(),
                "redis-server is not installed but DWR_REQUIRE_SERVICES=1 (run scripts/provision.sh)"
            );
            eprintln!("note: redis-server not installed; skipping this Redis test");
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut server = Self {
            child: None,
            port,
            dir,
            args: extra.iter().map(|s| (*s).to_owned()).collect(),
        };
        server.launch();
        Some(server)
    }

    fn launch(&mut self) {
        // redis-server runs under a small shell that kills it (SIGKILL) as soon as its stdin
        // closes: when this handle drops, or when the test process exits in any way, so no
        // server outlives the tests (even one held in a `static`).
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#"redis-server "$@" & p=$!; read _; kill -9 $p; wait $p"#)
            .arg("sh")
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if ping(self.port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not answer PING", self.port);
    }

    /// Kills the server at once (SIGKILL), as a crash would, and waits until it is gone.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and directory (AOF is replayed).
    pub fn restart(&mut self) {
        self.kill9();
        self.launch();
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its data directory.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// A config for this server under a fresh key prefix.
    pub fn config(&self) -> RedisConfig {
        static N: AtomicU32 = AtomicU32::new(0);
        RedisConfig {
            host: "127.0.0.1".to_owned(),
            port: self.port,
            key_prefix: format!("t{}:", N.fetch_add(1, Ordering::Relaxed)),
            ..RedisConfig::default()
        }
    }

    /// A store connected to this server under a fresh key prefix.
    pub async fn store(&self) -> RedisJobStore {
        RedisJobStore::connect(self.config())
            .await
            .expect("connect to the test redis-server")
    }

    /// The calls of each command run so far (`INFO commandstats`: `cmdstat_<name>:calls=<n>,...`).
    pub fn command_calls(&self) -> BTreeMap<String, u64> {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut self.client())
            .expect("INFO commandstats");
        info.lines()
            .filter_map(|line| {
                let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = rest.strip_prefix("calls=")?.split(',').next()?;
                Some((name.to_owned(), calls.parse().ok()?))
            })
            .collect()
    }

    /// The calls of `command` run so far (0 for one never run).
    pub fn calls(&self, command: &str) -> u64 {
        self.command_calls().get(command).copied().unwrap_or(0)
    }

    /// A synchronous connection for inspecting the server.
    pub fn client(&self) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
            .and_then(|c| c.get_connection())
            .expect("inspection connection")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Three `redis-sentinel`s watching one primary under the name [`Sentinels::MASTER`]
/// (quorum 2, a server judged down after 1 s), killed on drop.
pub struct Sentinels {
    children: Vec<Child>,
    ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

impl Sentinels {
    /// The name the Sentinels know the primary by.
    pub const MASTER: &'static str = "dwrtest";

    /// Starts three Sentinels watching the primary on `primary_port` (which has
    /// `replicas` replicas) and waits until each knows them and the two other Sentinels.
    pub fn start(primary_port: u16, replicas: usize) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut sentinels = Self {
            children: Vec::new(),
            ports: Vec::new(),
            _dir: dir,
        };
        for i in 0..3 {
            let port = free_port();
            let conf = sentinels._dir.path().join(format!("sentinel{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                     sentinel monitor {m} 127.0.0.1 {primary_port} 2\n\
                     sentinel down-after-milliseconds {m} 1000\n\
                     sentinel failover-timeout {m} 4000\n",
                    dir = sentinels._dir.path().display(),
                    m = Self::MASTER,
                ),
            )
            .expect("sentinel config");
            // As for RedisServer: killed as soon as this handle (or the test) goes.
            let child = Command::new("sh")
                .arg("-c")
                .arg(r#"redis-server "$1" --sentinel & p=$!; read _; kill -9 $p; wait $p"#)
                .arg("sh")
                .arg(&conf)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-sentinel");
            sentinels.children.push(child);
            sentinels.ports.push(port);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for &port in &sentinels.ports {
            loop {
                let known = |what: &str| -> usize {
                    redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                        .and_then(|c| c.get_connection())
                        .and_then(|mut c| {
                            redis::cmd("SENTINEL")
                                .arg(what)
                                .arg(Self::MASTER)
                                .query::<Vec<redis::Value>>(&mut c)
                        })
                        .map(|v| v.len())
                        .unwrap_or(0)
                };
                if known("SENTINELS") == 2 && known("REPLICAS") == replicas {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the Sentinels did not find each other"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        sentinels
    }

    /// `127.0.0.1:port` of each.
    pub fn addresses(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect()
    }

    /// The port of the primary as the first Sentinel names it.
    pub fn primary_port(&self) -> Option<u16> {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.ports[0]))
            .and_then(|c| c.get_connection())
            .and_then(|mut c| {
                redis::cmd("SENTINEL")
                    .arg("GET-MASTER-ADDR-BY-NAME")
                    .arg(Self::MASTER)
                    .query::<Option<(String, u16)>>(&mut c)
            })
            .ok()
            .flatten()
            .map(|(_, port)| port)
    }

    /// Asks the first Sentinel for a failover (the primary stays up, as a replica).
    pub fn failover(&self) {
        let mut conn = redis::Client::open(format!("redis://127.0.0.1:{}/", self.ports[0]))
            .and_then(|c| c.get_connection())
            .expect("sentinel connection");
        let _: () = redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg(Self::MASTER)
            .query(&mut conn)
            .expect("SENTINEL FAILOVER");
    }
}

impl Drop for Sentinels {
    fn drop(&mut self) {
        for mut child in self.children.drain(..) {
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}

/// Waits until `server` (a replica) reports its link to the primary up.
pub fn wait_for_replication(server: &RedisServer) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut server.client())
            .unwrap_or_default();
        if info.contains("master_link_status:up") {
            return;
        }
        assert!(Instant::now() < deadline, "the replica did not sync");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    stream.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}
