//! The PostgreSQL audit store against the machine's PostgreSQL
//! (`SKILLGATE_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`):
//! query semantics, two gateway instances on one database, tamper evidence,
//! a store outage (fail closed, then recovery), retention, and a gateway
//! killed with SIGKILL mid-stream.
//!
//! Every test works in its own schema (`search_path` in the URL).
#![cfg(feature = "postgres")]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use skillgate::audit::{
    AuditEvent, AuditQuery, AuditRecord, AuditStore, CheckpointSigner, DecisionRecord,
    PostgresOptions, PostgresStore, Problem, RequestRecord, ResponseRecord, Verdict, verify,
};
use skillgate::gateway::AuditStoreKind;
use skillgate::identity::Principal;
use sqlx::Executor;
use support::gateway::TestGateway;
use support::stand_in::{SLOW_MODEL, STAND_IN_API_KEY, StandIn};

fn base_url() -> String {
    std::env::var("SKILLGATE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh schema; the returned URL puts it first on the `search_path`.
struct Schema {
    name: String,
    url: String,
    admin: sqlx::PgPool,
}

impl Schema {
    async fn new() -> Schema {
        let name = format!("sg_test_{}", uuid::Uuid::now_v7().simple());
        let admin = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&base_url())
            .await
            .expect("connect to the test PostgreSQL");
        admin
            .execute(format!("CREATE SCHEMA {name}").as_str())
            .await
            .expect("create schema");
        let sep = if base_url().contains('?') { '&' } else { '?' };
        let url = format!("{}{sep}options=-c%20search_path%3D{name}", base_url());
        Schema { name, url, admin }
    }

    /// Runs `sql` with this schema on the search path.
    async fn exec(&self, sql: &str) -> u64 {
        let mut conn = self.admin.acquire().await.expect("conn");
        conn.execute(format!("SET search_path TO {}", self.name).as_str())
            .await
            .expect("search_path");
        let done = conn.execute(sql).await.expect("sql");
        conn.execute("SET search_path TO public")
            .await
            .expect("reset");
        done.rows_affected()
    }

    async fn scalar_i64(&self, sql: &str) -> i64 {
        let mut conn = self.admin.acquire().await.expect("conn");
        conn.execute(format!("SET search_path TO {}", self.name).as_str())
            .await
            .expect("search_path");
        let v: i64 = sqlx::query_scalar(sql)
            .fetch_one(&mut *conn)
            .await
            .expect("scalar");
        conn.execute("SET search_path TO public")
            .await
            .expect("reset");
        v
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let name = self.name.clone();
        let url = base_url();
        // Best effort, on a fresh runtime: the test's runtime may be gone.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(pool) = sqlx::PgPool::connect(&url).await {
                    let _ = pool
                        .execute(format!("DROP SCHEMA IF EXISTS {name} CASCADE").as_str())
                        .await;
                }
            });
        })
        .join();
    }
}

fn signer() -> CheckpointSigner {
    CheckpointSigner::from_bytes(&[42; 32])
}

fn principal(sub: &str, groups: &[&str]) -> Principal {
    let mut p = Principal::new("https://issuer.test", sub);
    p.groups = groups.iter().map(|g| g.to_string()).collect();
    p
}

async fn open(schema: &Schema, instance: &str) -> PostgresStore {
    PostgresStore::open(
        PostgresOptions::new(&schema.url, instance)
            .signer(signer())
            .checkpoint_every(7),
    )
    .await
    .expect("open store")
}

/// Writes a varied set of exchanges and events through `store`.
async fn write_mix(store: &PostgresStore, instance: &str, n: usize) -> Vec<AuditRecord> {
    let mut out = Vec::new();
    let base = jiff::Timestamp::now();
    for i in 0..n {
        let mut decision = if i % 4 == 3 {
            DecisionRecord::deny("policy: denied")
        } else {
            DecisionRecord::allow()
        };
        if i % 3 == 0 {
            decision.rules.push(format!("rule-{}", i % 2));
        }
        let mut req = RequestRecord::new("POST", "/v1/messages", decision);
        req.received_at = base + jiff::SignedDuration::from_millis(i as i64 * 3);
        req.instance = instance.to_owned();
        req.principal = (i % 5 != 4).then(|| {
            principal(
                &format!("skill-{}", i % 3),
                if i % 2 == 0 {
                    &["ci", "billing"]
                } else {
                    &["ci"]
                },
            )
        });
        req.model = Some(format!("claude-{}", i % 2));
        req.body = bytes::Bytes::from(format!("{{\"n\":{i},\"nul\":\"\\u0000\"}}"));
        store.record_request(&req).await.expect("record request");
        let response = if i % 6 != 5 {
            let mut res = ResponseRecord::new(req.id, [200, 403, 529][i % 3]);
            res.body = bytes::Bytes::from_static(b"{\"ok\":true}");
            res.usage = Some(serde_json::json!({"input_tokens": i, "output_tokens": 1}));
            store.record_response(&res).await.expect("record response");
            Some(res)
        } else {
            None
        };
        if i % 4 == 0 {
            let mut e = AuditEvent::new("approval.requested", serde_json::json!({"i": i}));
            e.instance = instance.to_owned();
            e.exchange_id = Some(req.id);
            store.record_event(&e).await.expect("record event");
        }
        out.push(AuditRecord {
            request: req,
            response,
        });
    }
    out
}

fn reference(all: &[AuditRecord], q: &AuditQuery) -> Vec<uuid::Uuid> {
    let mut v: Vec<&AuditRecord> = all.iter().filter(|r| q.matches(r)).collect();
    v.sort_by(|a, b| {
        (b.request.received_at.as_microsecond(), b.request.id)
            .cmp(&(a.request.received_at.as_microsecond(), a.request.id))
    });
    v.into_iter().take(q.limit).map(|r| r.request.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_database_and_queries_follow_the_reference_semantics() {
    let schema = Schema::new().await;
    let (a, b) = tokio::join!(open(&schema, "gw-a"), open(&schema, "gw-b"));
    let (ra, rb) = tokio::join!(write_mix(&a, "gw-a", 30), write_mix(&b, "gw-b", 30));
    let all: Vec<AuditRecord> = ra.into_iter().chain(rb).collect();

    // Exact round trip, from either instance.
    for r in all.iter().take(5) {
        assert_eq!(b.get(r.request.id).await.unwrap().as_ref(), Some(r));
    }
    let t = all[10].request.received_at;
    let queries = [
        AuditQuery::new().limit(1000),
        AuditQuery::new().limit(7),
        AuditQuery::new().subject("skill-1"),
        AuditQuery::new().issuer("https://issuer.test"),
        AuditQuery::new().group("billing"),
        AuditQuery::new().group("nobody"),
        AuditQuery::new().since(t),
        AuditQuery::new().until(t),
        AuditQuery::new().verdict(Verdict::Deny),
        AuditQuery::new().model("claude-1").verdict(Verdict::Allow),
        AuditQuery::new().rule("rule-0"),
        AuditQuery::new().status(403),
        AuditQuery::new().instance("gw-b").status(200),
    ];
    for q in &queries {
        let got: Vec<uuid::Uuid> = a
            .query(q)
            .await
            .expect("query")
            .iter()
            .map(|r| r.request.id)
            .collect();
        assert_eq!(got, reference(&all, q), "query {q:?}");
    }
    assert_eq!(a.recent(1000).await.unwrap().len(), 60);
    assert_eq!(a.recent_events(100).await.unwrap().len(), 16);

    a.checkpoint().await.unwrap();
    b.checkpoint().await.unwrap();
    let report = verify(&a, &signer().verifying_key()).await.expect("verify");
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.instances.len(), 2);
    // 60 requests + 50 responses + 16 events.
    assert_eq!(report.records_verified, 126);
    for s in &report.instances {
        assert_eq!(s.last_checkpoint_seq, s.last_seq, "{s:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_modified_deleted_and_reordered_records() {
    let schema = Schema::new().await;
    let store = open(&schema, "gw-t").await;
    let recs = write_mix(&store, "gw-t", 12).await;
    store.checkpoint().await.unwrap();
    let key = signer().verifying_key();
    assert!(verify(&store, &key).await.unwrap().is_ok());

    // Modified: a request's model changed in both the JSON and the column.
    let victim = recs[2].request.id;
    schema
        .exec(&format!(
            "UPDATE audit_exchange SET request = replace(request::text, '\"claude-0\"', '\"claude-9\"')::json, \
             model = 'claude-9' WHERE id = '{victim}'"
        ))
        .await;
    // Modified behind the record's back: only the indexed status column.
    let status_victim = recs[0].request.id;
    schema
        .exec(&format!(
            "UPDATE audit_exchange SET status = 204 WHERE id = '{status_victim}'"
        ))
        .await;
    // Deleted: an event row.
    let deleted = schema
        .exec("DELETE FROM audit_event WHERE id = (SELECT id FROM audit_event ORDER BY time_us LIMIT 1)")
        .await;
    assert_eq!(deleted, 1);
    // Reordered: two chain entries swap places.
    schema
        .exec("UPDATE audit_chain SET seq = -seq WHERE seq IN (4, 5)")
        .await;
    schema
        .exec(
            "UPDATE audit_chain SET seq = CASE seq WHEN -4 THEN 5 ELSE 4 END WHERE seq IN (-4, -5)",
        )
        .await;

    let report = verify(&store, &key).await.unwrap();
    let text: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
    assert!(
        report
            .problems
            .iter()
            .any(|p| matches!(p, Problem::Modified { record_id, kind, .. }
            if *record_id == victim && kind.as_str() == "request")),
        "{text:#?}"
    );
    assert!(
        report
            .problems
            .iter()
            .any(|p| matches!(p, Problem::Modified { record_id, kind, .. }
            if *record_id == status_victim && kind.as_str() == "response")),
        "{text:#?}"
    );
    assert!(
        report
            .problems
            .iter()
            .any(|p| matches!(p, Problem::Deleted { kind, .. } if kind.as_str() == "event")),
        "{text:#?}"
    );
    assert!(
        report
            .problems
            .iter()
            .any(|p| matches!(p, Problem::BrokenLink { seq, .. } if *seq == 4 || *seq == 5)),
        "{text:#?}"
    );
    // Nothing else is blamed: exactly these four findings (the swap breaks
    // the links at 4, 5 and 6).
    let links = report
        .problems
        .iter()
        .filter(|p| matches!(p, Problem::BrokenLink { .. }))
        .count();
    assert_eq!(report.problems.len() - links, 3, "{text:#?}");

    // Swapping whole records between two ids is a modification of both.
    let fresh = Schema::new().await;
    let store = open(&fresh, "gw-s").await;
    let recs = write_mix(&store, "gw-s", 3).await;
    let (x, y) = (recs[0].request.id, recs[1].request.id);
    fresh
        .exec(&format!(
            "UPDATE audit_exchange e SET request = o.request, response = o.response, status = o.status \
             FROM audit_exchange o WHERE (e.id, o.id) IN (('{x}'::uuid, '{y}'::uuid), ('{y}'::uuid, '{x}'::uuid))"
        ))
        .await;
    let report = verify(&store, &key).await.unwrap();
    let modified: Vec<uuid::Uuid> = report
        .problems
        .iter()
        .filter_map(|p| match p {
            Problem::Modified { record_id, .. } => Some(*record_id),
            _ => None,
        })
        .collect();
    assert!(
        modified.contains(&x) && modified.contains(&y),
        "{:?}",
        report.problems
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_keeps_the_chain_verifiable_and_new_entries_link_on() {
    let schema = Schema::new().await;
    let store = open(&schema, "gw-r").await;
    let old = write_mix(&store, "gw-r", 10).await;
    let cutoff = old[6].request.received_at;
    let report = store.purge(cutoff).await.expect("purge");
    assert_eq!(report.exchanges, 6);
    let left = store.recent(100).await.unwrap();
    assert_eq!(left.len(), 4);
    write_mix(&store, "gw-r", 3).await;
    store.checkpoint().await.unwrap();
    let v = verify(&store, &signer().verifying_key()).await.unwrap();
    assert!(v.is_ok(), "{:?}", v.problems);
    assert!(v.records_purged > 0);

    // A purge without the key is refused rather than leaving an unverifiable chain.
    let unsigned = PostgresStore::open(PostgresOptions::new(&schema.url, "gw-x"))
        .await
        .unwrap();
    assert!(unsigned.purge(jiff::Timestamp::now()).await.is_err());

    // Deleting records without a signed purge is still reported.
    schema.exec("DELETE FROM audit_exchange").await;
    let v = verify(&store, &signer().verifying_key()).await.unwrap();
    assert!(
        v.problems
            .iter()
            .any(|p| matches!(p, Problem::Deleted { .. }))
    );
}

/// A loopback TCP proxy that can cut every connection and refuse new ones.
struct Proxy {
    port: u16,
    open: Arc<AtomicBool>,
    conns: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    async fn start(target: &str) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let conns: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (o, c, target) = (open.clone(), conns.clone(), target.to_owned());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !o.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                c.lock().unwrap().push(task.abort_handle());
            }
        });
        Proxy { port, open, conns }
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

fn pg_host_port() -> String {
    let u = base_url();
    let rest = u.split("://").nth(1).unwrap_or("127.0.0.1:5432/test");
    let host = rest.split('@').next_back().unwrap_or(rest);
    host.split('/')
        .next()
        .unwrap_or("127.0.0.1:5432")
        .to_owned()
}

async fn post(
    client: &reqwest::Client,
    gw: &TestGateway,
    token: &str,
    model: &str,
) -> reqwest::Response {
    client
        .post(format!("{}/v1/messages", gw.base_url))
        .bearer_auth(token)
        .header("anthropic-version", "2023-06-01")
        .json(&serde_json::json!({
            "model": model,
            "max_tokens": 16,
            "messages": [{"role": "user", "content": "hello"}],
        }))
        .send()
        .await
        .expect("send")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_record_into_one_database_and_both_chains_verify() {
    let schema = Schema::new().await;
    let upstream = StandIn::start().await;
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = key_dir.path().join("audit-signing.pem");
    write_signing_key(&key_file);
    let start = |name: &'static str| {
        let (url, key_file) = (schema.url.clone(), key_file.clone());
        TestGateway::start(&upstream, move |cfg, _| {
            cfg.audit.store = AuditStoreKind::Postgres;
            cfg.audit.url = Some(url);
            cfg.audit.instance = Some(name.into());
            cfg.audit.signing_key_file = Some(key_file);
            cfg.audit.checkpoint_every = 5;
        })
    };
    let gw_a = start("gw-a").await;
    let gw_b = start("gw-b").await;
    let client = reqwest::Client::new();
    for gw in [&gw_a, &gw_b] {
        let token = gw.token("skill-ci", &["ci"]);
        for _ in 0..3 {
            let res = post(&client, gw, &token, "claude-sonnet-4-5").await;
            assert_eq!(res.status(), 200);
            res.bytes().await.unwrap();
        }
    }
    // Either gateway sees all six exchanges, from both instances.
    let recs = wait_complete(gw_a.audit.as_ref(), 6).await;
    assert_eq!(recs.len(), 6);
    for inst in ["gw-a", "gw-b"] {
        let q = AuditQuery::new().instance(inst).status(200);
        assert_eq!(gw_b.audit.query(&q).await.unwrap().len(), 3, "{inst}");
    }
    assert!(recs.iter().all(|r| r.is_complete()));

    let store = PostgresStore::open(PostgresOptions::new(&schema.url, "verifier"))
        .await
        .unwrap();
    let report = verify(&store, &signer_from_file(&key_file).verifying_key())
        .await
        .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    let names: Vec<&str> = report
        .instances
        .iter()
        .map(|s| s.instance.as_str())
        .collect();
    assert_eq!(names, ["gw-a", "gw-b"]);
    // Each exchange: request, provisional response, final response.
    assert!(
        report
            .instances
            .iter()
            .all(|s| s.entries >= 6 && s.valid_checkpoints >= 1)
    );
}

/// Waits until `n` exchanges have their final (complete) response record.
async fn wait_complete(store: &dyn AuditStore, n: usize) -> Vec<AuditRecord> {
    for _ in 0..400 {
        let recs = store.recent(100).await.expect("recent");
        if recs.len() >= n && recs.iter().all(|r| r.is_complete()) {
            return recs;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("responses were not recorded complete");
}

fn write_signing_key(path: &std::path::Path) {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let pem = key
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .unwrap();
    std::fs::write(path, pem.as_bytes()).unwrap();
}

fn signer_from_file(path: &std::path::Path) -> CheckpointSigner {
    CheckpointSigner::from_pkcs8_pem_file(path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_outage_refuses_requests_with_503_and_recovers() {
    let schema = Schema::new().await;
    let proxy = Proxy::start(&pg_host_port()).await;
    let url = {
        let u = schema.url.clone();
        let hp = pg_host_port();
        u.replacen(&hp, &format!("127.0.0.1:{}", proxy.port), 1)
    };
    let upstream = StandIn::start().await;
    let gw = TestGateway::start(&upstream, move |cfg, _| {
        cfg.audit.store = AuditStoreKind::Postgres;
        cfg.audit.url = Some(url);
        cfg.audit.instance = Some("gw-outage".into());
        cfg.audit.buffer_ms = 1000;
    })
    .await;
    let client = reqwest::Client::new();
    let token = gw.token("skill-ci", &["ci"]);
    let res = post(&client, &gw, &token, "claude-sonnet-4-5").await;
    assert_eq!(res.status(), 200);
    res.bytes().await.unwrap();
    // Let the final response record land before the cut.
    wait_complete(gw.audit.as_ref(), 1).await;
    let forwarded_before = upstream.received().len();

    proxy.cut();
    for _ in 0..3 {
        let res = post(&client, &gw, &token, "claude-sonnet-4-5").await;
        assert_eq!(res.status(), 503);
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "api_error", "{body}");
    }
    assert_eq!(
        upstream.received().len(),
        forwarded_before,
        "nothing forwarded while the store is down"
    );

    proxy.restore();
    let mut recovered = false;
    for _ in 0..60 {
        let res = post(&client, &gw, &token, "claude-sonnet-4-5").await;
        let status = res.status();
        res.bytes().await.unwrap();
        if status == 200 {
            recovered = true;
            break;
        }
        assert_eq!(status, 503);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        recovered,
        "the gateway accepts requests again once PostgreSQL answers"
    );
    assert_eq!(upstream.received().len(), forwarded_before + 1);
    // The recovered exchange is recorded in full (its provisional response
    // row is replaced by the final one).
    wait_complete(gw.audit.as_ref(), 2).await;
}

/// The example binary; built here if `cargo test` did not build examples.
fn example_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("examples").join("gateway");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "--example", "gateway", "--all-features"])
            .current_dir(support::repo_dir())
            .status()
            .expect("cargo build --example gateway");
        assert!(status.success());
    }
    bin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_leaves_the_request_and_an_incomplete_response() {
    use tokio::io::AsyncBufReadExt;
    let schema = Schema::new().await;
    let upstream = StandIn::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("audit-signing.pem");
    write_signing_key(&key_file);
    let config = dir.path().join("skillgate.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\n[upstream]\nurl = \"{}\"\napi_key_env = \"SG_KILL_UPSTREAM_KEY\"\n\
             [audit]\nstore = \"postgres\"\nurl = \"{}\"\ninstance = \"gw-killed\"\nsigning_key_file = \"{}\"\n",
            upstream.base_url(),
            schema.url,
            key_file.display()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut c = tokio::process::Command::new(example_binary());
        c.arg("--config")
            .arg(&config)
            .args(args)
            .current_dir(dir.path())
            .env("SG_KILL_UPSTREAM_KEY", STAND_IN_API_KEY)
            .env("RUST_LOG", "warn")
            .kill_on_drop(true);
        c
    };
    let mut child = run(&[])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start example gateway");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("gateway did not start")
        .unwrap()
        .expect("a line");
    let base = line
        .strip_prefix("skillgate listening on ")
        .expect("listening line")
        .to_owned();
    let minted = run(&["mint-token", "--sub", "killed-skill"])
        .output()
        .await
        .unwrap();
    assert!(
        minted.status.success(),
        "{}",
        String::from_utf8_lossy(&minted.stderr)
    );
    let token = String::from_utf8(minted.stdout).unwrap().trim().to_owned();

    let mut res = reqwest::Client::new()
        .post(format!("{base}/v1/messages"))
        .bearer_auth(&token)
        .header("anthropic-version", "2023-06-01")
        .json(&serde_json::json!({
            "model": SLOW_MODEL,
            "max_tokens": 64,
            "stream": true,
            "messages": [{"role": "user", "content": "take your time"}],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // A few events into the stream…
    let mut got = 0;
    while got < 3 {
        res.chunk().await.unwrap().expect("stream continues");
        got += 1;
    }
    // …the provisional response row is there (it is written when the
    // headers go out), then the process dies without any chance to clean up.
    let store = PostgresStore::open(PostgresOptions::new(&schema.url, "reader"))
        .await
        .unwrap();
    let mut provisional = None;
    for _ in 0..100 {
        let recs = store.recent(10).await.unwrap();
        if let Some(r) = recs.into_iter().find(|r| r.response.is_some()) {
            provisional = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = provisional.expect("provisional response row written");
    child.start_kill().expect("SIGKILL");
    let status = child.wait().await.unwrap();
    assert!(!status.success());
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9));
    // The client sees the stream cut.
    let mut cut = false;
    for _ in 0..1000 {
        match res.chunk().await {
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => {
                cut = true;
                break;
            }
        }
    }
    assert!(cut);

    let recs = store.recent(10).await.unwrap();
    assert_eq!(recs.len(), 1);
    let rec = &recs[0];
    assert_eq!(rec.request.id, before.request.id);
    assert_eq!(rec.request.model.as_deref(), Some(SLOW_MODEL));
    assert!(rec.request.stream);
    let response = rec.response.as_ref().expect("response record");
    assert!(!response.complete, "marked incomplete");
    assert_eq!(response.status, 200);
    assert!(response.upstream_request_id.is_some());
    assert_eq!(
        schema
            .scalar_i64("SELECT count(*) FROM audit_exchange WHERE complete = false")
            .await,
        1
    );
    // What was written before the kill still verifies.
    let report = verify(&store, &signer_from_file(&key_file).verifying_key())
        .await
        .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.records_verified, 2);

    // The same through the command line: clean, then after an edit.
    let public = dir.path().join("audit-signing.pub.pem");
    write_public_key(&key_file, &public);
    let public = public.to_str().unwrap().to_owned();
    let verify_cli = || run(&["audit", "verify", "--public-key", &public]).output();
    let out = verify_cli().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("2 records verified"), "{stdout}");
    schema
        .exec("UPDATE audit_exchange SET response = replace(response::text, '\"status\":200', '\"status\":500')::json, status = 500")
        .await;
    let out = verify_cli().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("modified: response {}", rec.request.id)),
        "{stdout}"
    );

    // Retention from the command line: everything is older than 0 s; the
    // chain stays verifiable afterwards (the edited record is gone too).
    let out = run(&["audit", "purge", "--older-than", "0s"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("purged 1 exchanges"));
    let out = verify_cli().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("0 records verified"), "{stdout}");
    assert!(stdout.contains("1 valid checkpoints"), "{stdout}");
}

fn write_public_key(private: &std::path::Path, public: &std::path::Path) {
    use ed25519_dalek::pkcs8::EncodePublicKey;
    let key = signer_from_file(private).verifying_key();
    let pem = key
        .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .unwrap();
    std::fs::write(public, pem).unwrap();
}
