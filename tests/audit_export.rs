//! SIEM export: every OCSF event carries the attributes OCSF 1.8.0 requires
//! of API Activity (class 6003, list in `tests/fixtures/ocsf/`), ECS events
//! carry their core fields, bodies stay out unless asked for, and the HTTP
//! sink retries a failing receiver with bounded batches.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use skillgate::audit::export::{
    BatchLimits, ExportError, ExportFormat, ExportOptions, HttpSink, RetryPolicy, export,
};
use skillgate::audit::{AuditRecord, DecisionRecord, Finding, RequestRecord, ResponseRecord};
use skillgate::identity::Principal;

const SECRET_PROMPT: &str = "my card is 4111 1111 1111 1111";

fn principal() -> Principal {
    let mut p = Principal::new(
        "https://token.actions.githubusercontent.com",
        "repo:acme/ci:ref:refs/heads/main",
    );
    p.groups = vec!["ci".into(), "acme".into()];
    p.client_id = Some("gh-actions".into());
    p
}

fn request(
    method: &str,
    path: &str,
    decision: DecisionRecord,
    who: Option<Principal>,
) -> RequestRecord {
    let mut r = RequestRecord::new(method, path, decision);
    r.instance = "gw-1:42".into();
    r.principal = who;
    r
}

/// A variety of exchanges: allowed, denied by policy, refused without a
/// principal, upstream error, streaming, incomplete, in flight, GET/DELETE.
fn variety() -> Vec<AuditRecord> {
    let mut out = Vec::new();

    // Allowed, non-streaming, with usage and findings.
    let mut req = request(
        "POST",
        "/v1/messages",
        DecisionRecord::allow(),
        Some(principal()),
    );
    req.model = Some("claude-sonnet-4-5".into());
    req.body = Bytes::from(format!(
        r#"{{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{{"role":"user","content":"{SECRET_PROMPT}"}}]}}"#
    ));
    let mut resp = ResponseRecord::new(req.id, 200);
    resp.body = Bytes::from_static(br#"{"id":"msg_1","type":"message","content":[{"type":"text","text":"[CREDIT_CARD] noted"}],"usage":{"input_tokens":21,"output_tokens":5,"cache_read_input_tokens":100}}"#);
    resp.usage = Some(json!({"input_tokens":21,"output_tokens":5,"cache_read_input_tokens":100}));
    resp.upstream_request_id = Some("req_011".into());
    resp.latency_us = 1_500_000;
    resp.findings = vec![Finding::new("CREDIT_CARD", 1, "request/messages/0/content")];
    out.push(AuditRecord {
        request: req,
        response: Some(resp),
    });

    // Denied by a policy rule.
    let mut d = DecisionRecord::deny("policy: rule no-opus denies model");
    d.rules = vec!["no-opus".into()];
    let mut req = request("POST", "/v1/messages", d, Some(principal()));
    req.model = Some("claude-opus-4-1".into());
    req.body = Bytes::from(format!(
        r#"{{"model":"claude-opus-4-1","messages":[{{"role":"user","content":"{SECRET_PROMPT}"}}]}}"#
    ));
    let mut resp = ResponseRecord::new(req.id, 403);
    resp.body = Bytes::from_static(
        br#"{"type":"error","error":{"type":"permission_error","message":"denied by policy"}}"#,
    );
    out.push(AuditRecord {
        request: req,
        response: Some(resp),
    });

    // Refused before identity: no principal, no model.
    let req = request(
        "POST",
        "/v1/messages?beta=true",
        DecisionRecord::deny("authentication: no bearer token"),
        None,
    );
    let mut resp = ResponseRecord::new(req.id, 401);
    resp.body = Bytes::from_static(
        br#"{"type":"error","error":{"type":"authentication_error","message":"missing token"}}"#,
    );
    out.push(AuditRecord {
        request: req,
        response: Some(resp),
    });

    // Allowed, upstream overloaded.
    let mut req = request(
        "POST",
        "/v1/messages",
        DecisionRecord::allow(),
        Some(principal()),
    );
    req.model = Some("claude-haiku-4-5".into());
    let mut resp = ResponseRecord::new(req.id, 529);
    resp.body = Bytes::from_static(
        br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
    );
    out.push(AuditRecord {
        request: req,
        response: Some(resp),
    });

    // Streaming, complete.
    let mut req = request(
        "POST",
        "/v1/messages",
        DecisionRecord::allow(),
        Some(principal()),
    );
    req.model = Some("claude-sonnet-4-5".into());
    req.stream = true;
    let mut resp = ResponseRecord::new(req.id, 200);
    resp.body = Bytes::from_static(b"event: message_start\ndata: {\"type\":\"message_start\"}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    resp.text = Some("hello".into());
    resp.usage = Some(json!({"input_tokens":3,"output_tokens":7}));
    out.push(AuditRecord {
        request: req.clone(),
        response: Some(resp.clone()),
    });

    // Streaming, client went away (incomplete, 499).
    let mut req2 = req.clone();
    req2.id = uuid::Uuid::now_v7();
    let mut resp2 = ResponseRecord::new(req2.id, 499);
    resp2.complete = false;
    out.push(AuditRecord {
        request: req2,
        response: Some(resp2),
    });

    // In flight: no response yet.
    let req = request(
        "POST",
        "/v1/messages/count_tokens",
        DecisionRecord::allow(),
        Some(principal()),
    );
    out.push(AuditRecord {
        request: req,
        response: None,
    });

    // GET and DELETE (other activities).
    let req = request(
        "GET",
        "/v1/models",
        DecisionRecord::allow(),
        Some(principal()),
    );
    let resp = ResponseRecord::new(req.id, 200);
    out.push(AuditRecord {
        request: req,
        response: Some(resp),
    });
    let req = request(
        "DELETE",
        "/v1/messages/batches/msgbatch_1",
        DecisionRecord::allow(),
        None,
    );
    out.push(AuditRecord {
        request: req,
        response: None,
    });
    out
}

fn fixture() -> Value {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ocsf/api_activity_6003_required.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn lookup<'a>(v: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(v, |v, k| v.get(k))
}

fn present(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(_) => true,
    }
}

/// Every problem of `ev` against the class 6003 requirement list.
fn ocsf_problems(ev: &Value, fx: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for k in fx["required"].as_array().unwrap() {
        let k = k.as_str().unwrap();
        if !present(ev.get(k)) {
            problems.push(format!("missing required {k}"));
        }
    }
    for (field, spec) in fx["objects"].as_object().unwrap() {
        let Some(obj) = lookup(ev, field) else {
            continue;
        };
        if obj.is_null() {
            continue;
        }
        if !obj.is_object() {
            problems.push(format!("{field} is not an object"));
            continue;
        }
        for k in spec["required"].as_array().unwrap() {
            let k = k.as_str().unwrap();
            if !present(obj.get(k)) {
                problems.push(format!("missing required {field}.{k}"));
            }
        }
        let alo = spec["at_least_one"].as_array().unwrap();
        if !alo.is_empty() && !alo.iter().any(|k| present(obj.get(k.as_str().unwrap()))) {
            problems.push(format!("{field} needs at least one of {alo:?}"));
        }
    }
    let class = ev["class_uid"].as_u64().unwrap_or(0);
    let activity = ev["activity_id"].as_u64().unwrap_or(0);
    if class != fx["class_uid"].as_u64().unwrap() {
        problems.push(format!("class_uid {class}"));
    }
    if ev["category_uid"].as_u64() != fx["category_uid"].as_u64() {
        problems.push("category_uid".into());
    }
    if ev["type_uid"].as_u64() != Some(class * 100 + activity) {
        problems.push("type_uid != class_uid * 100 + activity_id".into());
    }
    if !ev["time"].is_i64() {
        problems.push("time is not an integer (ms since epoch)".into());
    }
    if !matches!(ev["severity_id"].as_u64(), Some(0..=6 | 99)) {
        problems.push("severity_id out of range".into());
    }
    if !matches!(activity, 0..=4 | 99) {
        problems.push("activity_id out of range".into());
    }
    problems
}

#[test]
fn every_ocsf_event_has_the_attributes_class_6003_requires() {
    let fx = fixture();
    let recs = variety();
    for options in [
        ExportOptions::new(),
        ExportOptions::new().include_bodies(true),
    ] {
        for rec in &recs {
            let ev = ExportFormat::Ocsf.map(rec, &options);
            let problems = ocsf_problems(&ev, &fx);
            assert!(
                problems.is_empty(),
                "{} {}: {problems:?}\n{ev:#}",
                rec.request.method,
                rec.request.path
            );
        }
    }
}

#[test]
fn the_requirement_check_catches_a_missing_attribute() {
    // The check above can fail: strip attributes and it reports them.
    let fx = fixture();
    let mut ev = ExportFormat::Ocsf.map(&variety()[0], &ExportOptions::new());
    ev.as_object_mut().unwrap().remove("src_endpoint");
    ev["metadata"].as_object_mut().unwrap().remove("version");
    ev["actor"] = json!({});
    ev["type_uid"] = json!(600399);
    let problems = ocsf_problems(&ev, &fx);
    assert!(
        problems
            .iter()
            .any(|p| p == "missing required src_endpoint"),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p == "missing required metadata.version"),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("actor needs at least one")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.starts_with("type_uid")),
        "{problems:?}"
    );
}

#[test]
fn ocsf_fields_follow_the_record() {
    let recs = variety();
    let o = ExportOptions::new();
    let allow = ExportFormat::Ocsf.map(&recs[0], &o);
    assert_eq!(allow["activity_id"], 1);
    assert_eq!(allow["type_uid"], 600301);
    assert_eq!(allow["status_id"], 1);
    assert_eq!(allow["time"], recs[0].request.received_at.as_millisecond());
    assert_eq!(
        allow["actor"]["user"]["uid"],
        "repo:acme/ci:ref:refs/heads/main"
    );
    assert_eq!(allow["actor"]["user"]["groups"][1]["name"], "acme");
    assert_eq!(
        allow["actor"]["idp"]["name"],
        "https://token.actions.githubusercontent.com"
    );
    assert_eq!(allow["api"]["operation"], "POST /v1/messages");
    assert_eq!(
        allow["api"]["request"]["uid"],
        recs[0].request.id.to_string()
    );
    assert_eq!(
        allow["ai_model"],
        json!({"name": "claude-sonnet-4-5", "ai_provider": "Anthropic"})
    );
    assert_eq!(allow["message_context"]["prompt_tokens"], 121);
    assert_eq!(allow["message_context"]["completion_tokens"], 5);
    assert_eq!(allow["message_context"]["total_tokens"], 126);
    assert_eq!(allow["metadata"]["profiles"], json!(["ai_operation"]));
    assert_eq!(allow["metadata"]["correlation_uid"], "req_011");
    assert_eq!(allow["duration"], 1500);
    assert_eq!(
        allow["unmapped"]["skillgate"]["findings"][0]["entity_type"],
        "CREDIT_CARD"
    );

    let deny = ExportFormat::Ocsf.map(&recs[1], &o);
    assert_eq!(deny["status_id"], 2);
    assert_eq!(deny["severity_id"], 3);
    assert_eq!(deny["status_detail"], "policy: rule no-opus denies model");
    assert_eq!(deny["api"]["response"]["error"], "permission_error");
    assert_eq!(
        deny["unmapped"]["skillgate"]["decision"]["rules"],
        json!(["no-opus"])
    );

    let anon = ExportFormat::Ocsf.map(&recs[2], &o);
    assert_eq!(anon["actor"]["user"]["name"], "unauthenticated");
    assert_eq!(anon["http_request"]["url"]["query_string"], "beta=true");
    assert!(anon.get("ai_model").is_none());

    let overloaded = ExportFormat::Ocsf.map(&recs[3], &o);
    assert_eq!(
        (
            overloaded["status_id"].clone(),
            overloaded["severity_id"].clone()
        ),
        (json!(2), json!(2))
    );
    let in_flight = ExportFormat::Ocsf.map(&recs[6], &o);
    assert_eq!(in_flight["status_id"], 0);
    assert_eq!(ExportFormat::Ocsf.map(&recs[7], &o)["type_uid"], 600302);
    assert_eq!(ExportFormat::Ocsf.map(&recs[8], &o)["type_uid"], 600304);
}

#[test]
fn ecs_events_carry_core_user_http_url_and_gen_ai_fields() {
    let recs = variety();
    let o = ExportOptions::new();
    for rec in &recs {
        let ev = ExportFormat::Ecs.map(rec, &o);
        for k in [
            "@timestamp",
            "ecs.version",
            "event.kind",
            "event.category",
            "event.type",
            "event.outcome",
            "event.id",
            "http.request.method",
            "url.path",
        ] {
            assert!(present(lookup(&ev, k)), "{k} missing in {ev:#}");
        }
        assert!(
            jiff::Timestamp::strptime("%Y-%m-%dT%H:%M:%S%.fZ", ev["@timestamp"].as_str().unwrap())
                .is_ok()
                || ev["@timestamp"]
                    .as_str()
                    .unwrap()
                    .parse::<jiff::Timestamp>()
                    .is_ok()
        );
    }
    let allow = ExportFormat::Ecs.map(&recs[0], &o);
    assert_eq!(allow["event"]["outcome"], "success");
    assert_eq!(allow["user"]["id"], "repo:acme/ci:ref:refs/heads/main");
    assert_eq!(
        allow["user"]["domain"],
        "https://token.actions.githubusercontent.com"
    );
    assert_eq!(allow["user"]["roles"], json!(["ci", "acme"]));
    assert_eq!(allow["http"]["response"]["status_code"], 200);
    assert_eq!(allow["event"]["duration"], 1_500_000_000u64);
    assert_eq!(allow["gen_ai"]["request"]["model"], "claude-sonnet-4-5");
    assert_eq!(
        allow["gen_ai"]["usage"],
        json!({"input_tokens": 121, "output_tokens": 5})
    );
    assert_eq!(allow["gen_ai"]["system"], "anthropic");
    let deny = ExportFormat::Ecs.map(&recs[1], &o);
    assert_eq!(deny["event"]["outcome"], "failure");
    assert_eq!(deny["event"]["type"], json!(["access", "denied"]));
    assert_eq!(deny["rule"]["id"], json!(["no-opus"]));
    assert_eq!(deny["error"]["type"], "permission_error");
    let anon = ExportFormat::Ecs.map(&recs[2], &o);
    assert!(anon.get("user").is_none());
    assert_eq!(anon["url"]["query"], "beta=true");
}

#[test]
fn bodies_are_exported_only_when_asked_for() {
    let recs = variety();
    for fmt in [ExportFormat::Ocsf, ExportFormat::Ecs] {
        for rec in &recs[..2] {
            let without = serde_json::to_string(&fmt.map(rec, &ExportOptions::new())).unwrap();
            assert!(
                !without.contains("4111"),
                "{fmt:?} leaked a body: {without}"
            );
            assert!(
                !without.contains("CREDIT_CARD]"),
                "{fmt:?} leaked a response body"
            );
            let with =
                serde_json::to_string(&fmt.map(rec, &ExportOptions::new().include_bodies(true)))
                    .unwrap();
            assert!(
                with.contains("4111 1111 1111 1111"),
                "{fmt:?} dropped the body when asked: {with}"
            );
        }
    }
}

/// A local NDJSON receiver that answers 503 to the first `fail_first`
/// requests, then 200; it keeps every accepted batch.
async fn receiver(
    fail_first: usize,
    status_after: u16,
) -> (String, Arc<Mutex<Vec<Vec<Value>>>>, Arc<AtomicUsize>) {
    let accepted: Arc<Mutex<Vec<Vec<Value>>>> = Arc::default();
    let attempts = Arc::new(AtomicUsize::new(0));
    let (acc, att) = (accepted.clone(), attempts.clone());
    let app = axum::Router::new().route(
        "/ingest",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: Bytes| {
            let (acc, att) = (acc.clone(), att.clone());
            async move {
                let n = att.fetch_add(1, Ordering::SeqCst);
                assert_eq!(headers.get("content-type").unwrap(), "application/x-ndjson");
                assert_eq!(headers.get("authorization").unwrap(), "Bearer siem-token");
                if n < fail_first {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                }
                let batch = body
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(|l| serde_json::from_slice(l).unwrap())
                    .collect();
                acc.lock().unwrap().push(batch);
                axum::http::StatusCode::from_u16(status_after).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ingest", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, accepted, attempts)
}

fn fast_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(40),
    }
}

#[tokio::test]
async fn http_sink_retries_a_failing_receiver_and_keeps_batches_bounded() {
    let (url, accepted, attempts) = receiver(3, 200).await;
    let sink = HttpSink::new(&url)
        .unwrap()
        .header("authorization", "Bearer siem-token")
        .unwrap()
        .retry(fast_retry(5));
    // 9 records × 3 = 27 events, at most 4 per batch → 7 batches; the first
    // batch needs 4 attempts (3 refusals).
    let recs: Vec<AuditRecord> = (0..3).flat_map(|_| variety()).collect();
    let limits = BatchLimits {
        max_events: 4,
        max_bytes: 1 << 20,
    };
    let sent = export(
        &recs,
        ExportFormat::Ocsf,
        &ExportOptions::new(),
        &sink,
        limits,
    )
    .await
    .unwrap();
    assert_eq!(sent, 27);
    let batches = accepted.lock().unwrap().clone();
    assert_eq!(batches.len(), 7);
    assert!(batches.iter().all(|b| !b.is_empty() && b.len() <= 4));
    assert_eq!(attempts.load(Ordering::SeqCst), 7 + 3);
    let uids: Vec<&str> = batches
        .iter()
        .flatten()
        .map(|e| e["metadata"]["uid"].as_str().unwrap())
        .collect();
    let want: Vec<String> = recs.iter().map(|r| r.request.id.to_string()).collect();
    assert_eq!(uids, want, "every event once, in order");
}

#[tokio::test]
async fn http_sink_batches_are_bounded_by_bytes_too() {
    let (url, accepted, _) = receiver(0, 200).await;
    let sink = HttpSink::new(&url)
        .unwrap()
        .header("authorization", "Bearer siem-token")
        .unwrap();
    let recs = variety();
    let one = serde_json::to_vec(&ExportFormat::Ecs.map(&recs[0], &ExportOptions::new()))
        .unwrap()
        .len();
    let limits = BatchLimits {
        max_events: 1000,
        max_bytes: one * 2 + 2,
    };
    let sent = export(
        &recs,
        ExportFormat::Ecs,
        &ExportOptions::new(),
        &sink,
        limits,
    )
    .await
    .unwrap();
    assert_eq!(sent, recs.len());
    let batches = accepted.lock().unwrap().clone();
    assert!(batches.len() >= recs.len() / 2, "{} batches", batches.len());
    for b in &batches {
        let bytes: usize = b
            .iter()
            .map(|e| serde_json::to_vec(e).unwrap().len() + 1)
            .sum();
        assert!(
            b.len() == 1 || bytes <= limits.max_bytes,
            "batch of {} events, {bytes} bytes",
            b.len()
        );
    }
}

#[tokio::test]
async fn http_sink_gives_up_after_bounded_attempts_and_does_not_retry_a_client_error() {
    let (url, accepted, attempts) = receiver(usize::MAX, 200).await;
    let sink = HttpSink::new(&url)
        .unwrap()
        .header("authorization", "Bearer siem-token")
        .unwrap()
        .retry(fast_retry(3));
    let err = export(
        &variety(),
        ExportFormat::Ocsf,
        &ExportOptions::new(),
        &sink,
        BatchLimits::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, ExportError::GaveUp { attempts: 3, .. }),
        "{err}"
    );
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    assert!(accepted.lock().unwrap().is_empty());

    let (url, _, attempts) = receiver(0, 400).await;
    let sink = HttpSink::new(&url)
        .unwrap()
        .header("authorization", "Bearer siem-token")
        .unwrap()
        .retry(fast_retry(5));
    let err = export(
        &variety(),
        ExportFormat::Ecs,
        &ExportOptions::new(),
        &sink,
        BatchLimits::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, ExportError::Rejected { status: 400 }),
        "{err}"
    );
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
}

#[test]
fn http_sink_refuses_a_non_http_url() {
    assert!(matches!(
        HttpSink::new("file:///etc/passwd"),
        Err(ExportError::Config(_))
    ));
    assert!(matches!(
        HttpSink::new("not a url"),
        Err(ExportError::Config(_))
    ));
}
