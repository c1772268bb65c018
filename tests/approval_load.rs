//! Memory of held requests (ignored by default; results in
//! `docs/benchmarks.md`):
//!
//!     cargo test --release --test approval_load -- --ignored --nocapture
//!
//! Holds 1,000 require-approval requests at once against a gateway
//! assembled as the example binary does (same process; the clients are bare
//! TCP connections writing one HTTP/1.1 request each, so their own cost is a
//! socket and a few hundred bytes) and reports the growth of the process's
//! resident set (`VmRSS` in `/proc/self/status`).

mod support;

use std::time::Duration;

use support::gateway::TestGateway;
use support::stand_in::StandIn;
use tokio::io::AsyncWriteExt;

const HELD: usize = 1000;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "load measurement; run by hand, see the file docs"]
async fn one_thousand_held_requests() {
    let upstream = StandIn::start().await;
    let gw = TestGateway::start(&upstream, |cfg, dir| {
        let file = dir.join("policy.toml");
        std::fs::write(
            &file,
            r#"
[[rule]]
id = "all"
effect = "allow"
match = { paths = ["/v1/messages"] }
[[rule]]
id = "hold"
effect = "require_approval"
match = { keywords = "restricted" }
approvers = ["secops"]
"#,
        )
        .unwrap();
        cfg.policy.file = Some(file);
        cfg.approval.enabled = true;
        cfg.approval.timeout_secs = 600;
    })
    .await;
    let addr = gw.base_url.trim_start_matches("http://").to_owned();
    let token = gw.token("load", &["ci"]);
    let body = r#"{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"a restricted prompt of ordinary size, asking for a summary of the quarterly numbers"}]}"#;
    let request = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\nanthropic-version: 2023-06-01\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    // Warm up (allocator, audit store, TLS-free client paths) with a few held requests.
    let mut conns = Vec::with_capacity(HELD);
    for _ in 0..10 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        conns.push(s);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = rss_kib();
    for _ in 10..HELD {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        conns.push(s);
    }
    let approver = gw.token("alice", &["secops"]);
    let http = reqwest::Client::new();
    let mut pending = 0;
    for _ in 0..600 {
        let v: serde_json::Value = http
            .get(format!("{}/approvals/api/requests", gw.base_url))
            .bearer_auth(&approver)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        pending = v["data"].as_array().map_or(0, Vec::len);
        if pending >= HELD {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(pending, HELD, "all requests held");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib();
    let grown = after.saturating_sub(before);
    println!(
        "held {HELD} requests: RSS {before} KiB -> {after} KiB, +{grown} KiB ({:.1} MiB, {:.1} KiB per held request over {} requests)",
        grown as f64 / 1024.0,
        grown as f64 / (HELD - 10) as f64,
        HELD - 10
    );
    drop(conns);
}
