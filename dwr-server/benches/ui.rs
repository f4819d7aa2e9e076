//! Criterion benchmarks of the dashboard's jobs page with 100,000 jobs in the store: the
//! first page as the server answers `GET /ui/jobs` (router, session, store reads, HTML),
//! unfiltered, by status, and with a filter the store does not index (a queue: the newest
//! 20,000 jobs are searched). Also the size of the page.
//!
//! `cargo bench -p dwr-server --bench ui` runs it over the in-memory store; with `REDIS_URL`
//! set (the variable `dwr` and `dwr bench` read) it runs over that Redis too, under a key
//! prefix of its own, deleted afterwards. `cargo test` runs it once, in memory only.

// `criterion_group!` generates a public function without a doc comment.
#![allow(missing_docs)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use criterion::{criterion_group, criterion_main, Criterion};
use dwr_core::{
    FirstFit, InMemoryJobStore, Job, JobId, JobSpec, JobStore, Scheduler, SchedulerConfig,
    Timestamp,
};
use dwr_server::{app, ApiConfig, AppState};
use http_body_util::BodyExt;
use tower::ServiceExt;

const JOBS: usize = 100_000;

fn spec(i: usize) -> JobSpec {
    let mut spec = JobSpec::new(
        if i.is_multiple_of(3) {
            "dwr-test/busybox:latest"
        } else {
            "example/trainer:2.1"
        },
        vec!["run".into(), i.to_string()],
        500,
        256,
    );
    if i.is_multiple_of(10) {
        spec.queue = "batch".to_owned();
    }
    spec
}

async fn fill(store: &Arc<dyn JobStore>) {
    let mut pending = Vec::with_capacity(256);
    for i in 0..JOBS {
        let store = store.clone();
        pending.push(tokio::spawn(async move {
            store
                .submit(Job::new(JobId::new(), spec(i), Timestamp::now()))
                .await
                .expect("submit");
        }));
        if pending.len() == 256 {
            for task in pending.drain(..) {
                task.await.unwrap();
            }
        }
    }
    for task in pending {
        task.await.unwrap();
    }
}

async fn get(router: &axum::Router, uri: &str) -> usize {
    let response = router
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{uri}");
    response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .len()
}

fn bench_store(
    c: &mut Criterion,
    name: &str,
    rt: &tokio::runtime::Runtime,
    store: Arc<dyn JobStore>,
) {
    rt.block_on(fill(&store));
    let scheduler = Scheduler::new(store, Arc::new(FirstFit), SchedulerConfig::default());
    let router = app(AppState::new(scheduler, ApiConfig::default()));
    let mut group = c.benchmark_group(format!("ui_jobs_page/{name}"));
    for (label, uri) in [
        ("first_page", "/ui/jobs"),
        ("by_status", "/ui/jobs?status=pending"),
        ("by_queue_searched", "/ui/jobs?queue=batch"),
    ] {
        let bytes = rt.block_on(get(&router, uri));
        println!("ui_jobs_page/{name}/{label}: {bytes} bytes of HTML");
        group.bench_function(label, |b| b.iter(|| rt.block_on(get(&router, uri))));
    }
    group.finish();
}

fn jobs_page(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    bench_store(c, "memory", &rt, Arc::new(InMemoryJobStore::new()));
    // `cargo bench` passes --bench; `cargo test` (which runs every bench once) does not.
    let benchmarking = std::env::args().any(|a| a == "--bench");
    if let Some(url) = std::env::var("REDIS_URL").ok().filter(|_| benchmarking) {
        let config = dwr_redis::RedisConfig {
            url: Some(url),
            key_prefix: format!("uibench-{}:", &JobId::new().to_string()[..8]),
            ..dwr_redis::RedisConfig::default()
        };
        let store = rt
            .block_on(dwr_redis::RedisJobStore::connect(config))
            .expect("connect to REDIS_URL");
        bench_store(c, "redis", &rt, Arc::new(store.clone()));
        rt.block_on(store.delete_all_keys()).expect("clean up");
    }
}

criterion_group!(benches, jobs_page);
criterion_main!(benches);
