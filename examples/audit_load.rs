//! Load figures for the audit stores (results in docs/benchmarks.md).
//!
//! ```text
//! # records per second through the PostgreSQL batched writer
//! cargo run --release --example audit_load --all-features -- records postgres://postgres@127.0.0.1:5432/test 10 64
//! # gateway request latency with audit to SQLite, then to PostgreSQL
//! cargo run --release --example audit_load --all-features -- gateway postgres://postgres@127.0.0.1:5432/test 3000 16
//! ```
//!
//! `records URL SECONDS WRITERS`: WRITERS tasks each write request+response
//! pairs (1 KiB bodies) through one `PostgresStore` for SECONDS; prints
//! records per second (each half is a record) and the `record_request`
//! latency percentiles (time until the record is durable).
//!
//! `gateway URL REQUESTS CONCURRENCY`: the assembled gateway in front of the
//! Anthropic API stand-in, once with audit to SQLite and once to
//! PostgreSQL; prints the request latency percentiles seen by the client.
//! Every run works in a fresh PostgreSQL schema, dropped at the end.

#[path = "../tests/support/stand_in.rs"]
#[allow(dead_code)]
mod stand_in;

use std::sync::Arc;
use std::time::{Duration, Instant};

use skillgate::audit::{
    AuditStore, CheckpointSigner, DecisionRecord, PostgresOptions, PostgresStore, RequestRecord,
    ResponseRecord,
};
use skillgate::gateway::{AuditStoreKind, GatewayConfig, serve};
use skillgate::identity::dev::MintOptions;
use sqlx::Executor;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn show(name: &str, mut lat: Vec<Duration>) {
    lat.sort();
    println!(
        "{name}: n={} p50={:?} p90={:?} p99={:?} max={:?}",
        lat.len(),
        pct(&lat, 0.50),
        pct(&lat, 0.90),
        pct(&lat, 0.99),
        lat.last().copied().unwrap_or_default()
    );
}

async fn fresh_schema(url: &str) -> (String, String) {
    let name = format!("sg_load_{}", uuid::Uuid::now_v7().simple());
    let pool = sqlx::PgPool::connect(url).await.expect("connect");
    pool.execute(format!("CREATE SCHEMA {name}").as_str())
        .await
        .expect("create schema");
    let sep = if url.contains('?') { '&' } else { '?' };
    (
        name.clone(),
        format!("{url}{sep}options=-c%20search_path%3D{name}"),
    )
}

async fn drop_schema(url: &str, name: &str) {
    if let Ok(pool) = sqlx::PgPool::connect(url).await {
        let _ = pool
            .execute(format!("DROP SCHEMA IF EXISTS {name} CASCADE").as_str())
            .await;
    }
}

async fn records(url: &str, secs: u64, writers: usize) {
    let (schema, schema_url) = fresh_schema(url).await;
    let store = Arc::new(
        PostgresStore::open(
            PostgresOptions::new(&schema_url, "load")
                .signer(CheckpointSigner::from_bytes(&[1; 32]))
                .checkpoint_every(10_000),
        )
        .await
        .expect("open"),
    );
    let body = bytes::Bytes::from(format!(
        "{{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":256,\"messages\":[{{\"role\":\"user\",\"content\":\"{}\"}}]}}",
        "x".repeat(900)
    ));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let (store, body) = (store.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut n = 0u64;
            while Instant::now() < deadline {
                let mut req = RequestRecord::new("POST", "/v1/messages", DecisionRecord::allow());
                req.instance = "load".into();
                req.model = Some("claude-sonnet-4-5".into());
                req.body = body.clone();
                let t = Instant::now();
                store.record_request(&req).await.expect("record request");
                lat.push(t.elapsed());
                let mut res = ResponseRecord::new(req.id, 200);
                res.body = bytes::Bytes::from_static(
                    b"{\"type\":\"message\",\"usage\":{\"input_tokens\":10,\"output_tokens\":20}}",
                );
                store.record_response(&res).await.expect("record response");
                n += 2;
            }
            (n, lat)
        }));
    }
    let mut total = 0;
    let mut lat = Vec::new();
    for t in tasks {
        let (n, l) = t.await.expect("writer");
        total += n;
        lat.extend(l);
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "postgres batched writer: {writers} writers, {total} records in {elapsed:.1} s = {:.0} records/s",
        total as f64 / elapsed
    );
    show("record_request (durable) latency", lat);
    let report = skillgate::audit::verify(
        store.as_ref(),
        &CheckpointSigner::from_bytes(&[1; 32]).verifying_key(),
    )
    .await
    .expect("verify");
    println!(
        "verify: {} records, {} problems",
        report.records_verified,
        report.problems.len()
    );
    drop_schema(url, &schema).await;
}

async fn gateway(url: &str, requests: usize, concurrency: usize) {
    let upstream = stand_in::StandIn::start().await;
    for kind in [AuditStoreKind::Sqlite, AuditStoreKind::Postgres] {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("upstream-key");
        std::fs::write(&key, stand_in::STAND_IN_API_KEY).expect("key");
        let mut cfg = GatewayConfig::default();
        cfg.upstream.url = upstream.base_url();
        cfg.upstream.api_key_file = Some(key);
        cfg.identity.dev_key_file = dir.path().join("dev.json");
        cfg.audit.sqlite = dir.path().join("audit.db");
        let mut schema = None;
        if kind == AuditStoreKind::Postgres {
            let (name, schema_url) = fresh_schema(url).await;
            cfg.audit.store = kind;
            cfg.audit.url = Some(schema_url);
            schema = Some(name);
        }
        let assembled = cfg.assemble().await.expect("assemble");
        let token = assembled
            .dev_issuer
            .as_ref()
            .expect("dev issuer")
            .mint(&MintOptions::new("load"))
            .expect("mint");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            assembled.service,
            async move {
                let _ = stopped.await;
            },
            Duration::from_secs(5),
        ));
        let client = reqwest::Client::new();
        let send = |client: reqwest::Client, base: String, token: String| async move {
            let t = Instant::now();
            let res = client
                .post(format!("{base}/v1/messages"))
                .bearer_auth(token)
                .header("anthropic-version", "2023-06-01")
                .body(r#"{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"hello"}]}"#)
                .header("content-type", "application/json")
                .send()
                .await
                .expect("send");
            assert_eq!(res.status(), 200);
            res.bytes().await.expect("body");
            t.elapsed()
        };
        // Warm up connections and caches.
        for _ in 0..50 {
            send(client.clone(), base.clone(), token.clone()).await;
        }
        let started = Instant::now();
        let per = requests / concurrency;
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (client, base, token) = (client.clone(), base.clone(), token.clone());
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per);
                for _ in 0..per {
                    lat.push(send(client.clone(), base.clone(), token.clone()).await);
                }
                lat
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await.expect("client"));
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "gateway, audit to {kind:?}: {} requests, concurrency {concurrency}, {:.0} req/s",
            lat.len(),
            lat.len() as f64 / secs
        );
        show("  request latency", lat);
        let _ = stop.send(());
        let _ = server.await;
        if let Some(name) = schema {
            drop_schema(url, &name).await;
        }
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_owned());
    let url = arg(1, "postgres://postgres@127.0.0.1:5432/test");
    match args.first().map(String::as_str) {
        Some("records") => {
            records(
                &url,
                arg(2, "10").parse().unwrap_or(10),
                arg(3, "64").parse().unwrap_or(64),
            )
            .await
        }
        Some("gateway") => {
            gateway(
                &url,
                arg(2, "3000").parse().unwrap_or(3000),
                arg(3, "16").parse().unwrap_or(16),
            )
            .await
        }
        _ => {
            eprintln!(
                "usage: audit_load records URL SECONDS WRITERS | gateway URL REQUESTS CONCURRENCY"
            );
            std::process::exit(2);
        }
    }
}
