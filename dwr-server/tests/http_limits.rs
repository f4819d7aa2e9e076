//! The server loop's connection limits over real sockets on 127.0.0.1: slow clients are
//! cut off after the header-read timeout, and connections past the cap wait until one
//! closes.

use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use dwr_server::http::{serve, ConnectionLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

async fn start(limits: ConnectionLimits) -> (std::net::SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Router::new().route("/health", get(|| async { "ok" }));
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve(listener, router, limits, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

const REQUEST: &[u8] = b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

/// Reads until the peer closes or `wait` passes; `None` when nothing came in time.
async fn read_answer(stream: &mut TcpStream, wait: Duration) -> Option<String> {
    let mut buf = Vec::new();
    match tokio::time::timeout(wait, stream.read_to_end(&mut buf)).await {
        Ok(_) => Some(String::from_utf8_lossy(&buf).into_owned()),
        Err(_) => None,
    }
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let timeout = Duration::from_millis(300);
    let (addr, _stop) = start(ConnectionLimits {
        max_connections: 16,
        header_read_timeout: timeout,
    })
    .await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: local")
        .await
        .unwrap();
    let answer = read_answer(&mut slow, Duration::from_secs(5))
        .await
        .expect("the slow connection is still open 5 s later");
    let took = started.elapsed();
    assert!(
        took >= timeout - Duration::from_millis(50),
        "cut off early: {took:?}"
    );
    assert!(!answer.contains("200 OK"), "{answer}");
    // A prompt client is served meanwhile and after.
    let mut quick = TcpStream::connect(addr).await.unwrap();
    quick.write_all(REQUEST).await.unwrap();
    let answer = read_answer(&mut quick, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn connections_past_the_cap_wait_for_one_to_close() {
    let (addr, _stop) = start(ConnectionLimits {
        max_connections: 2,
        header_read_timeout: Duration::from_secs(30),
    })
    .await;
    let idle_a = TcpStream::connect(addr).await.unwrap();
    let _idle_b = TcpStream::connect(addr).await.unwrap();
    // Let the loop accept both before the third arrives.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = TcpStream::connect(addr).await.unwrap();
    third.write_all(REQUEST).await.unwrap();
    assert_eq!(
        read_answer(&mut third, Duration::from_millis(500)).await,
        None,
        "a third connection was served while two were open"
    );
    drop(idle_a);
    let answer = read_answer(&mut third, Duration::from_secs(5))
        .await
        .expect("served once a connection closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
