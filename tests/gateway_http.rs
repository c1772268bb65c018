//! The gateway's HTTP behaviour at the edges: bad input, refusals, upstream
//! errors, audit failure, disconnects, and the example binary itself.

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use serde_json::{Value, json};
use skillgate::audit::{
    AuditError, AuditRecord, AuditStore, RequestRecord, ResponseRecord, Verdict,
};
use skillgate::gateway::{GatewayConfig, serve};
use skillgate::identity::dev::{DevIssuer, MintOptions};
use support::gateway::TestGateway;
use support::stand_in::{SLOW_MODEL, STAND_IN_API_KEY, StandIn, error_model};

struct Gw {
    base: String,
    audit: Arc<dyn AuditStore>,
    token: String,
    _gw: TestGateway,
}

async fn start(
    upstream: &StandIn,
    tweak: impl FnOnce(&mut GatewayConfig),
    store: Option<Arc<dyn AuditStore>>,
) -> Gw {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = support::gateway::config(upstream, dir.path());
    tweak(&mut cfg);
    let gw = TestGateway::serve(cfg, store, dir).await;
    Gw {
        base: gw.base_url.clone(),
        audit: gw.audit.clone(),
        token: gw.token("edge-tester", &[]),
        _gw: gw,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().build().expect("client")
}

fn messages_body(model: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 64, "stream": stream,
           "messages": [{"role": "user", "content": "hi"}]})
}

async fn post(gw: &Gw, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
    client()
        .post(format!("{}{path}", gw.base))
        .bearer_auth(&gw.token)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("send")
}

async fn error_of(res: reqwest::Response) -> (u16, String, Value) {
    let status = res.status().as_u16();
    let retry = res
        .headers()
        .get("x-should-retry")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body: Value = res.json().await.expect("json error body");
    assert_eq!(body["type"], "error", "{body}");
    (status, retry, body)
}

async fn wait_records(store: &Arc<dyn AuditStore>, n: usize) -> Vec<AuditRecord> {
    for _ in 0..400 {
        let r = store.recent(100).await.expect("query");
        if r.len() >= n && r.iter().all(|x| x.response.is_some()) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("records did not appear");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_and_is_recorded() {
    let up = StandIn::start().await;
    let gw = start(&up, |c| c.audit.max_request_bytes = 64 * 1024, None).await;

    let (s, retry, b) = error_of(
        post(
            &gw,
            "/v1/messages",
            "{\"model\": \"claude\", \"messages\": [",
        )
        .await,
    )
    .await;
    assert_eq!((s, retry.as_str()), (400, "false"));
    assert_eq!(b["error"]["type"], "invalid_request_error");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("not valid JSON"),
        "{b}"
    );

    let (s, _, b) = error_of(post(&gw, "/v1/messages", "[1,2]").await).await;
    assert_eq!(s, 400);
    assert_eq!(b["error"]["type"], "invalid_request_error");

    let big = format!(
        "{{\"model\":\"m\",\"messages\":[{{\"role\":\"user\",\"content\":\"{}\"}}]}}",
        "a".repeat(100 * 1024)
    );
    let (s, retry, b) = error_of(post(&gw, "/v1/messages", big).await).await;
    assert_eq!((s, retry.as_str()), (413, "false"));
    assert_eq!(b["error"]["type"], "request_too_large");

    let (s, _, b) = error_of(post(&gw, "/admin/secrets", "{}").await).await;
    assert_eq!(s, 404);
    assert_eq!(b["error"]["type"], "not_found_error");

    // Health needs no token and is not audited.
    let h = client()
        .get(format!("{}/healthz", gw.base))
        .send()
        .await
        .expect("healthz");
    assert_eq!(h.status(), 200);

    assert!(up.received().is_empty(), "nothing forwarded");
    let recs = wait_records(&gw.audit, 4).await;
    assert_eq!(recs.len(), 4);
    assert!(
        recs.iter()
            .all(|r| r.request.decision.verdict == Verdict::Deny)
    );
    let statuses: Vec<u16> = recs
        .iter()
        .filter_map(|r| r.response.as_ref().map(|x| x.status))
        .collect();
    assert_eq!(statuses, [404, 413, 400, 400]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_errors_pass_through_and_query_is_forwarded() {
    let up = StandIn::start().await;
    let gw = start(&up, |_| {}, None).await;
    for status in [400u16, 429, 500, 529] {
        let res = post(
            &gw,
            "/v1/messages?beta=true",
            messages_body(&error_model(status), false).to_string(),
        )
        .await;
        assert_eq!(res.status().as_u16(), status);
        assert!(
            res.headers().get("request-id").is_some(),
            "upstream headers kept"
        );
        let body: Value = res.json().await.expect("json");
        assert_eq!(body["type"], "error");
        assert!(
            body["request_id"]
                .as_str()
                .is_some_and(|r| r.starts_with("req_")),
            "body unchanged: {body}"
        );
    }
    let seen = up.received();
    assert_eq!(seen.len(), 4);
    assert!(
        seen.iter()
            .all(|r| r.path_and_query == "/v1/messages?beta=true")
    );
    // Other endpoints under /v1/ are forwarded too.
    let res = client()
        .get(format!("{}/v1/models", gw.base))
        .header("x-api-key", &gw.token)
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .expect("models");
    assert_eq!(res.status(), 200);
    let last = up.received().pop().expect("models request");
    assert_eq!(
        last.header("x-api-key"),
        Some(STAND_IN_API_KEY),
        "caller's x-api-key replaced"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_unreachable_is_502_api_error() {
    let up = StandIn::start().await;
    let gw = start(&up, |c| c.upstream.url = "http://127.0.0.1:9".into(), None).await;
    let (s, retry, b) =
        error_of(post(&gw, "/v1/messages", messages_body("m", false).to_string()).await).await;
    assert_eq!((s, retry.as_str()), (502, "true"));
    assert_eq!(b["error"]["type"], "api_error");
}

/// A store that refuses every write, as a database that went away would.
struct DownStore;

#[async_trait]
impl AuditStore for DownStore {
    async fn record_request(&self, _: &RequestRecord) -> Result<(), AuditError> {
        Err(AuditError::Unavailable("connection refused".into()))
    }
    async fn record_response(&self, _: &ResponseRecord) -> Result<(), AuditError> {
        Err(AuditError::Unavailable("connection refused".into()))
    }
    async fn get(&self, _: uuid::Uuid) -> Result<Option<AuditRecord>, AuditError> {
        Ok(None)
    }
    async fn recent(&self, _: usize) -> Result<Vec<AuditRecord>, AuditError> {
        Ok(Vec::new())
    }
    async fn query(
        &self,
        _: &skillgate::audit::AuditQuery,
    ) -> Result<Vec<AuditRecord>, AuditError> {
        Err(AuditError::Unavailable("connection refused".into()))
    }
    async fn record_event(&self, _: &skillgate::audit::AuditEvent) -> Result<(), AuditError> {
        Err(AuditError::Unavailable("connection refused".into()))
    }
    async fn recent_events(
        &self,
        _: usize,
    ) -> Result<Vec<skillgate::audit::AuditEvent>, AuditError> {
        Ok(Vec::new())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_store_down_refuses_with_503_and_forwards_nothing() {
    let up = StandIn::start().await;
    let gw = start(&up, |_| {}, Some(Arc::new(DownStore))).await;
    let (s, _, b) =
        error_of(post(&gw, "/v1/messages", messages_body("m", false).to_string()).await).await;
    assert_eq!(s, 503);
    assert_eq!(b["error"]["type"], "api_error");
    assert!(
        up.received().is_empty(),
        "an unrecorded request was forwarded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_cancels_upstream_and_marks_record_incomplete() {
    let up = StandIn::start().await;
    let gw = start(&up, |_| {}, None).await;
    let res = post(
        &gw,
        "/v1/messages",
        messages_body(SLOW_MODEL, true).to_string(),
    )
    .await;
    assert_eq!(res.status(), 200);
    let mut stream = res.bytes_stream();
    let mut got = Vec::new();
    while got.len() < 200 {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("stream stalled")
            .expect("stream ended early")
            .expect("chunk");
        got.extend_from_slice(&chunk);
    }
    drop(stream);
    let recs = wait_records(&gw.audit, 1).await;
    let resp = recs[0].response.as_ref().expect("response");
    assert!(
        !resp.complete,
        "a disconnected client leaves an incomplete record"
    );
    assert!(resp.body.len() >= 200);
    for _ in 0..200 {
        if up.disconnects() >= 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the upstream request was not cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_dev_token_is_refused_even_with_valid_shape() {
    let up = StandIn::start().await;
    let gw = start(&up, |_| {}, None).await;
    // A token signed by a different dev key (same issuer name): signature fails.
    let stranger = DevIssuer::ephemeral()
        .mint(&MintOptions::new("x"))
        .expect("mint");
    let res = client()
        .post(format!("{}/v1/messages", gw.base))
        .bearer_auth(stranger)
        .body(messages_body("m", false).to_string())
        .send()
        .await
        .expect("send");
    let (s, retry, b) = error_of(res).await;
    assert_eq!((s, retry.as_str()), (401, "false"));
    assert_eq!(b["error"]["type"], "authentication_error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_results_url_points_back_at_the_gateway() {
    use http::{Request, Response};
    use skillgate::Body;
    // An upstream that answers like the Message Batches API.
    let upstream = tower::service_fn(|req: Request<Body>| async move {
        let id = "msgbatch_01abc";
        let body = if req.uri().path() == "/v1/messages/batches" {
            json!({"data": [{"id": id, "type": "message_batch",
                   "results_url": format!("https://api.anthropic.com/v1/messages/batches/{id}/results")}],
                   "has_more": false})
        } else {
            json!({"id": id, "type": "message_batch", "processing_status": "ended",
                   "results_url": format!("https://api.anthropic.com/v1/messages/batches/{id}/results")})
        };
        let mut res = Response::new(Body::from(body.to_string()));
        res.headers_mut()
            .insert("content-type", "application/json".parse().expect("header"));
        Ok::<_, std::convert::Infallible>(res)
    });
    let dev = DevIssuer::ephemeral();
    let store = skillgate::audit::SqliteStore::in_memory()
        .await
        .expect("store");
    let service = skillgate::gateway::Gateway::builder()
        .verifier(dev.verifier("skillgate"))
        .audit_store(store)
        .build()
        .expect("gateway")
        .service(upstream);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (_stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(
        listener,
        service,
        async move {
            let _ = rx.await;
        },
        Duration::from_secs(1),
    ));
    let token = dev.mint(&MintOptions::new("batcher")).expect("mint");
    for path in [
        "/v1/messages/batches/msgbatch_01abc",
        "/v1/messages/batches",
    ] {
        let v: Value = client()
            .get(format!("{base}{path}"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        let url = v
            .get("results_url")
            .or_else(|| v["data"][0].get("results_url"))
            .expect("results_url");
        assert_eq!(
            url,
            &json!(format!("{base}/v1/messages/batches/msgbatch_01abc/results")),
            "{path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_bodies_are_never_read_and_odd_request_lines_are_refused() {
    let up = StandIn::start().await;
    let gw = start(&up, |_| {}, None).await;
    // 4 MiB without a token: refused on the headers, body never buffered or stored.
    let big = vec![b'a'; 4 << 20];
    let res = client()
        .post(format!("{}/v1/messages", gw.base))
        .body(big)
        .send()
        .await;
    if let Ok(res) = res {
        assert_eq!(res.status(), 401);
    }
    let path_cases = [
        "/v1/./messages",
        "/v1//messages",
        "/v1/%6dessages",
        "/v1/Messages",
        "/v1/messages/",
        "/v1/x/../messages",
        "/v1/complete",
    ];
    for p in path_cases {
        // reqwest normalises some of these; send them raw over TCP.
        let raw = format!(
            "POST {p} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}",
            gw.token
        );
        let addr = gw.base.trim_start_matches("http://");
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(raw.as_bytes()).await.expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        let status = out.split(' ').nth(1).unwrap_or("");
        assert!(status == "400" || status == "404", "{p}: {out}");
        assert!(out.contains("\"type\":\"error\""), "{p}: {out}");
    }
    let trace = client()
        .request(
            reqwest::Method::from_bytes(b"TRACE").expect("method"),
            format!("{}/v1/messages", gw.base),
        )
        .bearer_auth(&gw.token)
        .send()
        .await
        .expect("trace");
    assert_eq!(trace.status(), 400);
    let get_with_body = client()
        .get(format!("{}/v1/models", gw.base))
        .bearer_auth(&gw.token)
        .body("{\"model\":\"claude-opus-4-8\"}")
        .send()
        .await
        .expect("get");
    assert_eq!(get_with_body.status(), 400);
    assert!(up.received().is_empty(), "nothing forwarded");
    let recs = wait_records(&gw.audit, 10).await;
    let anonymous = recs
        .iter()
        .find(|r| r.response.as_ref().is_some_and(|x| x.status == 401))
        .expect("401 record");
    assert!(
        anonymous.request.body.is_empty(),
        "an anonymous body is neither read nor stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_leaving_before_the_answer_leaves_an_incomplete_record() {
    let up = StandIn::start().await;
    let gw = start(&up, |_| {}, None).await;
    let req = client()
        .post(format!("{}/v1/messages", gw.base))
        .bearer_auth(&gw.token)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(messages_body(SLOW_MODEL, false).to_string())
        .timeout(Duration::from_millis(800))
        .send()
        .await;
    assert!(req.is_err(), "the client gave up");
    let recs = wait_records(&gw.audit, 1).await;
    let resp = recs[0].response.as_ref().expect("response half");
    assert_eq!(resp.status, 499);
    assert!(!resp.complete);
    assert_eq!(
        recs[0].request.decision.verdict,
        Verdict::Allow,
        "it was forwarded"
    );
}
