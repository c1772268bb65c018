//! `gateway audit query|show|replay|export` on the example binary, against
//! the audit database a real gateway wrote for real exchanges (streaming,
//! non-streaming, refused).

mod support;

use serde_json::{Value, json};
use support::gateway::TestGateway;
use support::stand_in::StandIn;

/// The example binary (built by `cargo test`).
fn example_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("examples").join("gateway");
    assert!(
        bin.exists(),
        "{} missing: cargo test builds examples",
        bin.display()
    );
    bin
}

async fn cli(gw: &TestGateway, args: &[&str]) -> (bool, Vec<u8>, String) {
    let db = gw.dir.path().join("audit.db");
    let out = tokio::process::Command::new(example_binary())
        .arg("--audit-db")
        .arg(&db)
        .args(args)
        .current_dir(gw.dir.path())
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run example");
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn lines(b: &[u8]) -> Vec<Value> {
    std::str::from_utf8(b)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_show_replay_and_export_read_what_the_gateway_recorded() {
    let upstream = StandIn::start().await;
    let gw = TestGateway::start(&upstream, |_, _| {}).await;
    let http = reqwest::Client::new();
    let token = gw.token("repo:acme/ci", &["ci"]);

    // A streaming exchange: keep the bytes exactly as this client got them.
    let res = http
        .post(format!("{}/v1/messages", gw.base_url))
        .bearer_auth(&token)
        .header("anthropic-version", "2023-06-01")
        .json(
            &json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "stream": true,
                      "messages": [{"role": "user", "content": "tell me a story"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let streamed = res.bytes().await.unwrap();
    assert!(
        streamed.starts_with(b"event: message_start"),
        "{streamed:?}"
    );

    // A non-streaming exchange by another subject.
    let other = gw.token("repo:acme/nightly", &["nightly"]);
    let res = http
        .post(format!("{}/v1/messages", gw.base_url))
        .bearer_auth(&other)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "claude-haiku-4-5", "max_tokens": 16,
                      "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let plain = res.bytes().await.unwrap();

    // Refused: no token.
    let res = http
        .post(format!("{}/v1/messages", gw.base_url))
        .json(&json!({"model": "claude-haiku-4-5", "max_tokens": 16, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let recs = gw.records(3).await;

    // query --json, with filters.
    let (ok, out, err) = cli(&gw, &["audit", "query", "--json"]).await;
    assert!(ok, "{err}");
    assert_eq!(lines(&out).len(), 3);
    let (ok, out, err) = cli(
        &gw,
        &["audit", "query", "--json", "--subject", "repo:acme/ci"],
    )
    .await;
    assert!(ok, "{err}");
    let ci = lines(&out);
    assert_eq!(ci.len(), 1);
    assert_eq!(ci[0]["request"]["model"], "claude-sonnet-4-5");
    let stream_id = ci[0]["request"]["id"].as_str().unwrap().to_owned();
    let (_, out, _) = cli(
        &gw,
        &[
            "audit",
            "query",
            "--json",
            "--verdict",
            "deny",
            "--since",
            "1h",
        ],
    )
    .await;
    assert_eq!(lines(&out).len(), 1);
    assert_eq!(lines(&out)[0]["response"]["status"], 401);
    let (_, out, _) = cli(
        &gw,
        &[
            "audit", "query", "--json", "--group", "nightly", "--status", "200",
        ],
    )
    .await;
    assert_eq!(lines(&out).len(), 1);
    let (_, out, _) = cli(&gw, &["audit", "query", "--json", "--until", "1h"]).await;
    assert!(out.is_empty(), "nothing is older than an hour");
    let (ok, out, err) = cli(&gw, &["audit", "query", "--model", "claude-haiku-4-5"]).await;
    assert!(ok, "{err}");
    let table = String::from_utf8(out).unwrap();
    assert!(table.starts_with("ID"), "{table}");
    // The refused request's body was never read (no token), so it names no model.
    assert_eq!(
        table.lines().count(),
        2,
        "header and the haiku exchange: {table}"
    );
    assert!(
        table.contains("repo:acme/nightly") && table.contains("POST /v1/messages"),
        "{table}"
    );
    let (ok, _, err) = cli(&gw, &["audit", "query", "--since", "yesterday"]).await;
    assert!(!ok && err.contains("--since"), "{err}");

    // show: the whole exchange.
    let (ok, out, err) = cli(&gw, &["audit", "show", &stream_id]).await;
    assert!(ok, "{err}");
    let shown: Value = serde_json::from_slice(&out).unwrap();
    let rec = recs
        .iter()
        .find(|r| r.request.id.to_string() == stream_id)
        .unwrap();
    assert_eq!(shown, serde_json::to_value(rec).unwrap());
    assert!(
        !rec.response.as_ref().unwrap().chunks.is_empty(),
        "chunk timing recorded"
    );
    let (ok, _, err) = cli(&gw, &["audit", "show", "not-a-uuid"]).await;
    assert!(!ok && err.contains("UUID"), "{err}");
    let (ok, _, err) = cli(&gw, &["audit", "show", &uuid::Uuid::now_v7().to_string()]).await;
    assert!(!ok && err.contains("no exchange"), "{err}");

    // replay: the bytes as delivered, with and without timing.
    let (ok, out, err) = cli(&gw, &["audit", "replay", &stream_id]).await;
    assert!(ok, "{err}");
    assert_eq!(out, streamed.to_vec());
    let (ok, out, err) = cli(
        &gw,
        &["audit", "replay", &stream_id, "--timing", "--speed", "50"],
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(out, streamed.to_vec());
    let plain_id = recs
        .iter()
        .find(|r| {
            r.request.model.as_deref() == Some("claude-haiku-4-5")
                && r.response.as_ref().unwrap().status == 200
        })
        .unwrap()
        .request
        .id
        .to_string();
    let (ok, out, _) = cli(&gw, &["audit", "replay", &plain_id]).await;
    assert!(ok);
    assert_eq!(out, plain.to_vec());

    // export: OCSF to a file, ECS to stdout; bodies stay out.
    let file = gw.dir.path().join("ocsf.jsonl");
    let sink = format!("file:{}", file.display());
    let (ok, _, err) = cli(
        &gw,
        &[
            "audit", "export", "--format", "ocsf", "--sink", &sink, "--since", "24h",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(err.contains("exported 3 events"), "{err}");
    let events = lines(&std::fs::read(&file).unwrap());
    assert_eq!(events.len(), 3);
    let times: Vec<i64> = events.iter().map(|e| e["time"].as_i64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest first");
    for e in &events {
        assert_eq!(e["class_uid"], 6003);
        assert!(e["api"]["request"].get("data").is_none());
    }
    assert!(
        !std::fs::read_to_string(&file)
            .unwrap()
            .contains("tell me a story")
    );
    let (ok, out, err) = cli(
        &gw,
        &[
            "audit",
            "export",
            "--format",
            "ecs",
            "--subject",
            "repo:acme/ci",
            "--include-bodies",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let ecs = lines(&out);
    assert_eq!(ecs.len(), 1);
    assert_eq!(ecs[0]["user"]["id"], "repo:acme/ci");
    assert_eq!(ecs[0]["gen_ai"]["request"]["model"], "claude-sonnet-4-5");
    assert!(
        ecs[0]["http"]["request"]["body"]["content"]
            .as_str()
            .unwrap()
            .contains("tell me a story")
    );
    let (ok, _, err) = cli(&gw, &["audit", "export", "--sink", "ftp://x"]).await;
    assert!(!ok && err.contains("--sink"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_store_from_config_records_a_gateway_exchange_the_cli_reads() {
    let upstream = StandIn::start().await;
    let gw = TestGateway::start(&upstream, |cfg, dir| {
        cfg.audit.jsonl = Some(
            toml::from_str(&format!(
                "dir = {:?}\nmax_bytes = 100000",
                dir.join("jsonl").display().to_string()
            ))
            .unwrap(),
        );
    })
    .await;
    let token = gw.token("repo:acme/ci", &["ci"]);
    let res = reqwest::Client::new()
        .post(format!("{}/v1/messages", gw.base_url))
        .bearer_auth(&token)
        .header("anthropic-version", "2023-06-01")
        .json(
            &json!({"model": "claude-sonnet-4-5", "max_tokens": 16, "stream": true,
                      "messages": [{"role": "user", "content": "hello"}]}),
        )
        .send()
        .await
        .unwrap();
    let streamed = res.bytes().await.unwrap();
    let recs = gw.records(1).await;
    assert!(!gw.dir.path().join("audit.db").exists(), "SQLite not used");
    let files: Vec<_> = std::fs::read_dir(gw.dir.path().join("jsonl"))
        .unwrap()
        .collect();
    assert_eq!(files.len(), 1);
    let id = recs[0].request.id.to_string();
    let cfg_file = gw.dir.path().join("gw.toml");
    std::fs::write(
        &cfg_file,
        format!(
            "[audit.jsonl]\ndir = {:?}\n",
            gw.dir.path().join("jsonl").display().to_string()
        ),
    )
    .unwrap();
    let out = tokio::process::Command::new(example_binary())
        .arg("--config")
        .arg(&cfg_file)
        .args(["audit", "replay", &id])
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, streamed.to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_request_body_is_stored_encrypted_and_show_decrypts_it_with_the_key_only() {
    let upstream = StandIn::start().await;
    let gw = TestGateway::start(&upstream, |cfg, dir| {
        let key = dir.join("raw.key");
        std::fs::write(&key, "42".repeat(32)).unwrap();
        cfg.audit.raw_body_key_file = Some(key);
    })
    .await;
    let token = gw.token("repo:acme/ci", &["ci"]);
    let sent = r#"{"model":"claude-haiku-4-5","max_tokens":16,"messages":[{"role":"user","content":"raw words"}]}"#;
    let res = reqwest::Client::new()
        .post(format!("{}/v1/messages", gw.base_url))
        .bearer_auth(&token)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(sent)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let _ = res.bytes().await.unwrap();
    let recs = gw.records(1).await;
    let id = recs[0].request.id.to_string();
    let raw = recs[0].request.raw_body.as_ref().expect("raw body kept");
    assert!(!raw.ciphertext.contains("raw words"));

    let (ok, out, err) = cli(&gw, &["audit", "show", &id]).await;
    assert!(ok, "{err}");
    let shown: Value = serde_json::from_slice(&out).unwrap();
    assert!(shown.get("raw_request_body").is_none());

    let key = gw.dir.path().join("raw.key");
    let (ok, out, err) = cli(
        &gw,
        &["audit", "show", &id, "--decrypt-key", key.to_str().unwrap()],
    )
    .await;
    assert!(ok, "{err}");
    let shown: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(shown["raw_request_body"], sent);

    let wrong = gw.dir.path().join("wrong.key");
    std::fs::write(&wrong, "43".repeat(32)).unwrap();
    let (ok, _, err) = cli(
        &gw,
        &[
            "audit",
            "show",
            &id,
            "--decrypt-key",
            wrong.to_str().unwrap(),
        ],
    )
    .await;
    assert!(!ok, "a wrong key must not decrypt");
    assert!(err.contains("sealed under key"), "{err}");
}
