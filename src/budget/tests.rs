//! Layer tests: refusals, headers, counting through the body, store failure,
//! windows with an injected clock.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use jiff::Timestamp;
use serde_json::{Value, json};
use tower::{ServiceExt, service_fn, util::BoxCloneService};

use super::*;
use crate::body::Body;
use crate::identity::Principal;

type Svc = BoxCloneService<Request<Body>, Response<Body>, Infallible>;

/// A clock tests move by hand (ms since the epoch).
#[derive(Clone)]
struct TestClock(Arc<AtomicI64>);

impl TestClock {
    fn at(t: &str) -> Self {
        let ts: Timestamp = t.parse().unwrap();
        TestClock(Arc::new(AtomicI64::new(ts.as_millisecond())))
    }
    fn now(&self) -> Timestamp {
        Timestamp::from_millisecond(self.0.load(Ordering::SeqCst)).unwrap()
    }
    fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_millis() as i64, Ordering::SeqCst);
    }
    fn set(&self, t: &str) {
        let ts: Timestamp = t.parse().unwrap();
        self.0.store(ts.as_millisecond(), Ordering::SeqCst);
    }
}

fn limits(toml_text: &str) -> Budgets {
    let cfg: BudgetConfig = toml::from_str(toml_text).unwrap();
    Budgets::from_config(&cfg).unwrap()
}

/// Answers every request with a JSON message whose usage is 20 in + 10 out,
/// or, for `"stream": true`, the same usage as SSE cut into 3-byte chunks.
fn upstream()
-> impl tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future = impl Send>
+ Clone
+ Send
+ 'static {
    service_fn(|req: Request<Body>| async move {
        let stream = req.headers().contains_key("x-test-stream");
        let res = if stream {
            let sse = sse_reply(20, 10);
            let chunks: Vec<Result<http_body::Frame<Bytes>, Infallible>> = sse
                .as_bytes()
                .chunks(3)
                .map(|c| Ok(http_body::Frame::data(Bytes::copy_from_slice(c))))
                .collect();
            Response::builder()
                .header(header::CONTENT_TYPE, "text/event-stream")
                .body(Body::new(StreamBody::new(futures_util::stream::iter(
                    chunks,
                ))))
                .unwrap()
        } else {
            Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(
                    json!({"type": "message", "content": [],
                        "usage": {"input_tokens": 20, "output_tokens": 10}})
                    .to_string(),
                ))
                .unwrap()
        };
        Ok::<_, Infallible>(res)
    })
}

fn sse_reply(input: u64, output: u64) -> String {
    format!(
        "event: message_start\ndata: {}\n\nevent: ping\ndata: {{\"type\":\"ping\"}}\n\nevent: message_delta\ndata: {}\n\nevent: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n",
        json!({"type":"message_start","message":{"usage":{"input_tokens":input,"output_tokens":1}}}),
        json!({"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":output}}),
    )
}

fn svc(layer: BudgetLayer) -> Svc {
    BoxCloneService::new(
        tower::ServiceBuilder::new()
            .layer(layer)
            .service(upstream()),
    )
}

fn request(subject: &str, groups: &[&str], stream: bool) -> Request<Body> {
    let mut b = Request::post("/v1/messages");
    if stream {
        b = b.header("x-test-stream", "1");
    }
    let mut req = b.body(Body::from("{}")).unwrap();
    req.extensions_mut()
        .insert(Principal::new("https://idp.example", subject).with_groups(groups.iter().copied()));
    req
}

async fn call(s: &Svc, subject: &str, groups: &[&str]) -> Response<Body> {
    s.clone()
        .oneshot(request(subject, groups, false))
        .await
        .unwrap()
}

async fn body_of(res: Response<Body>) -> Bytes {
    res.into_body().collect().await.unwrap().to_bytes()
}

fn header_str<'a>(res: &'a Response<Body>, name: &str) -> &'a str {
    res.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

/// Waits until the token counters of `subject` reach `want` (charging runs
/// on spawned tasks).
async fn wait_tokens(
    store: &MemoryStore,
    budgets: &Budgets,
    subject: &str,
    now: Timestamp,
    want: u64,
) {
    let checks: Vec<Check> = budgets
        .plan(&Principal::new("https://idp.example", subject), now)
        .into_iter()
        .filter(Check::is_tokens)
        .collect();
    for _ in 0..1000 {
        let states = store.peek(&checks, now).await.unwrap();
        if states.iter().all(|s| s.used >= want) {
            assert!(states.iter().all(|s| s.used == want), "{states:?}");
            return;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("tokens never reached {want}");
}

#[tokio::test]
async fn per_minute_limit_slides_with_the_clock() {
    let clock = TestClock::at("2026-04-01T12:00:00Z");
    let c = clock.clone();
    let layer = BudgetLayer::new(
        limits("[[limit]]\nid = \"rpm\"\nrequests_per_minute = 3"),
        MemoryStore::new(),
    )
    .clock(move || c.now());
    let s = svc(layer);

    assert_eq!(call(&s, "bot", &[]).await.status(), 200); // 12:00:00
    clock.advance(Duration::from_secs(20));
    assert_eq!(call(&s, "bot", &[]).await.status(), 200); // 12:00:20
    clock.advance(Duration::from_secs(20));
    assert_eq!(call(&s, "bot", &[]).await.status(), 200); // 12:00:40
    clock.advance(Duration::from_millis(10_500));
    // 12:00:50.5: three in the last minute; the oldest leaves at 12:01:00.
    let res = call(&s, "bot", &[]).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header_str(&res, "retry-after"), "10");
    assert_eq!(header_str(&res, "x-should-retry"), "true");
    assert_eq!(header_str(&res, "anthropic-ratelimit-requests-limit"), "3");
    assert_eq!(
        header_str(&res, "anthropic-ratelimit-requests-remaining"),
        "0"
    );
    assert_eq!(
        header_str(&res, "anthropic-ratelimit-requests-reset"),
        "2026-04-01T12:01:40Z"
    );
    assert!(
        res.headers()
            .get("anthropic-ratelimit-tokens-limit")
            .is_none()
    );
    let v: Value = serde_json::from_slice(&body_of(res).await).unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert!(v["error"]["message"].as_str().unwrap().contains("`rpm`"));

    // Another principal has its own counter.
    assert_eq!(call(&s, "other-bot", &[]).await.status(), 200);

    // The instant the oldest request leaves the window, one slot frees.
    clock.set("2026-04-01T12:01:00Z");
    assert_eq!(call(&s, "bot", &[]).await.status(), 200);
    assert_eq!(call(&s, "bot", &[]).await.status(), 429);
    clock.set("2026-04-01T12:01:20Z");
    assert_eq!(call(&s, "bot", &[]).await.status(), 200);
}

#[tokio::test]
async fn refused_requests_are_not_counted() {
    let clock = TestClock::at("2026-04-01T12:00:00Z");
    let c = clock.clone();
    let s = svc(BudgetLayer::new(
        limits("[[limit]]\nid = \"rpm\"\nrequests_per_minute = 1"),
        MemoryStore::new(),
    )
    .clock(move || c.now()));
    assert_eq!(call(&s, "bot", &[]).await.status(), 200);
    for _ in 0..5 {
        clock.advance(Duration::from_secs(10));
        assert_eq!(call(&s, "bot", &[]).await.status(), 429);
    }
    // 60 s after the one admitted request: free again, however often it was refused.
    clock.set("2026-04-01T12:01:00Z");
    assert_eq!(call(&s, "bot", &[]).await.status(), 200);
}

#[tokio::test]
async fn group_scope_shares_one_counter() {
    let s = svc(BudgetLayer::new(
        limits(
            r#"
            [[limit]]
            id = "ci"
            scope = "group"
            groups = ["ci"]
            requests_per_minute = 3
            "#,
        ),
        MemoryStore::new(),
    ));
    for who in ["a", "b", "c"] {
        assert_eq!(call(&s, who, &["ci"]).await.status(), 200);
    }
    assert_eq!(call(&s, "d", &["ci"]).await.status(), 429);
    // Not in the group: no limit applies.
    assert_eq!(call(&s, "e", &["dev"]).await.status(), 200);
}

#[tokio::test]
async fn daily_tokens_json_and_sse_then_reset_at_local_midnight() {
    let clock = TestClock::at("2026-10-24T20:00:00Z"); // 22:00 in Berlin
    let c = clock.clone();
    let budgets = Arc::new(limits(
        r#"
        time_zone = "Europe/Berlin"
        [[limit]]
        id = "skill-daily-tokens"
        subjects = ["skill-*"]
        tokens_per_day = 50
        "#,
    ));
    let store = Arc::new(MemoryStore::new());
    let layer = BudgetLayer::from_arc(budgets.clone(), store.clone()).clock(move || c.now());
    let s = svc(layer);

    // JSON: 30 tokens.
    let res = call(&s, "skill-a", &[]).await;
    assert_eq!(res.status(), 200);
    body_of(res).await;
    wait_tokens(&store, &budgets, "skill-a", clock.now(), 30).await;

    // SSE in 3-byte chunks: 20 + 10 more; the client gets the bytes unchanged.
    let res = s
        .clone()
        .oneshot(request("skill-a", &[], true))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(body_of(res).await, Bytes::from(sse_reply(20, 10)));
    wait_tokens(&store, &budgets, "skill-a", clock.now(), 60).await;

    // 60 ≥ 50: refused until midnight in Berlin (22:00 UTC: CEST, UTC+2).
    let res = call(&s, "skill-a", &[]).await;
    assert_eq!(res.status(), 429);
    assert_eq!(header_str(&res, "retry-after"), "7200");
    assert_eq!(header_str(&res, "x-should-retry"), "false");
    assert_eq!(header_str(&res, "anthropic-ratelimit-tokens-limit"), "50");
    assert_eq!(
        header_str(&res, "anthropic-ratelimit-tokens-remaining"),
        "0"
    );
    assert_eq!(
        header_str(&res, "anthropic-ratelimit-tokens-reset"),
        "2026-10-24T22:00:00Z"
    );
    let v: Value = serde_json::from_slice(&body_of(res).await).unwrap();
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("`skill-daily-tokens`") && msg.contains("60 of 50"),
        "{msg}"
    );

    // A subject the limit does not select is not limited.
    assert_eq!(call(&s, "report-job", &[]).await.status(), 200);

    // One second before local midnight: still refused; at midnight: a new day.
    clock.set("2026-10-24T21:59:59Z");
    assert_eq!(call(&s, "skill-a", &[]).await.status(), 429);
    clock.set("2026-10-24T22:00:00Z");
    assert_eq!(call(&s, "skill-a", &[]).await.status(), 200);
}

#[tokio::test]
async fn client_leaving_early_is_charged_for_what_was_seen() {
    let budgets = Arc::new(limits("[[limit]]\nid = \"t\"\ntokens_per_day = 1000"));
    let store = Arc::new(MemoryStore::new());
    let s = svc(BudgetLayer::from_arc(budgets.clone(), store.clone()));
    let res = s.clone().oneshot(request("bot", &[], true)).await.unwrap();
    let mut body = res.into_body();
    // Read until message_start has passed (its usage: 20 in + 1 out), then leave.
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("event: ping") {
        let frame = body.frame().await.unwrap().unwrap();
        seen.extend_from_slice(frame.data_ref().unwrap());
    }
    drop(body);
    wait_tokens(&store, &budgets, "bot", Timestamp::now(), 21).await;
}

struct FailingStore;

#[async_trait]
impl BudgetStore for FailingStore {
    async fn admit(&self, _: &[Check], _: Timestamp) -> Result<Admission, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    async fn peek(&self, _: &[Check], _: Timestamp) -> Result<Vec<CounterState>, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    async fn add_tokens(&self, _: &[Check], _: u64) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
}

/// A store that never answers.
struct HangingStore;

#[async_trait]
impl BudgetStore for HangingStore {
    async fn admit(&self, _: &[Check], _: Timestamp) -> Result<Admission, StoreError> {
        std::future::pending().await
    }
    async fn peek(&self, _: &[Check], _: Timestamp) -> Result<Vec<CounterState>, StoreError> {
        std::future::pending().await
    }
    async fn add_tokens(&self, _: &[Check], _: u64) -> Result<(), StoreError> {
        std::future::pending().await
    }
}

#[tokio::test]
async fn store_failure_fails_closed_or_open_as_configured() {
    let b = || limits("[[limit]]\nid = \"rpm\"\nrequests_per_minute = 5");
    let closed = svc(BudgetLayer::new(b(), FailingStore));
    let res = call(&closed, "bot", &[]).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header_str(&res, "x-should-retry"), "true");
    assert_eq!(header_str(&res, "retry-after"), "1");
    let v: Value = serde_json::from_slice(&body_of(res).await).unwrap();
    assert_eq!(v["error"]["type"], "api_error");
    assert!(!v["error"]["message"].as_str().unwrap().contains("refused"));

    let hanging = svc(BudgetLayer::new(b(), HangingStore).store_timeout(Duration::from_millis(20)));
    assert_eq!(call(&hanging, "bot", &[]).await.status(), 503);

    let open = svc(BudgetLayer::new(b(), FailingStore).on_store_error(OnStoreError::Allow));
    let res = call(&open, "bot", &[]).await;
    assert_eq!(res.status(), 200);
    // Counting tokens then fails too, and only logs: the body is intact.
    assert!(!body_of(res).await.is_empty());
}

#[tokio::test]
async fn no_principal_is_refused_no_limit_passes() {
    let s = svc(BudgetLayer::new(
        limits("[[limit]]\nid = \"rpm\"\ngroups = [\"ci\"]\nrequests_per_minute = 1"),
        MemoryStore::new(),
    ));
    let res = s
        .clone()
        .oneshot(Request::post("/v1/messages").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    for _ in 0..3 {
        assert_eq!(call(&s, "bot", &["dev"]).await.status(), 200);
    }
}

#[tokio::test]
async fn config_without_limits_installs_nothing() {
    assert!(
        BudgetLayer::from_config(&BudgetConfig::default())
            .unwrap()
            .is_none()
    );
    let e = toml::from_str::<BudgetConfig>(
        "[[limit]]\nid = \"x\"\nrequests_per_minute = 1\ncolour = 1",
    )
    .unwrap_err();
    assert!(e.to_string().contains("colour"), "{e}");
    let e = toml::from_str::<BudgetConfig>("on_store_error = \"maybe\"").unwrap_err();
    assert!(e.to_string().contains("maybe"), "{e}");
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn refusal_is_in_the_audit_record() {
    use crate::audit::{AuditHandle, AuditLayer, AuditStore, SqliteStore, Verdict};
    let store = Arc::new(SqliteStore::in_memory().await.unwrap());
    let s: Svc = BoxCloneService::new(
        tower::ServiceBuilder::new()
            .layer(AuditLayer::from_arc(store.clone()))
            .map_request(|mut req: Request<Body>| {
                req.extensions_mut()
                    .insert(Principal::new("https://idp.example", "bot"));
                req
            })
            .layer(BudgetLayer::new(
                limits("[[limit]]\nid = \"rpm-1\"\nrequests_per_minute = 1"),
                MemoryStore::new(),
            ))
            .service(upstream()),
    );
    let req = || {
        Request::post("/v1/messages")
            .body(Body::from("{}"))
            .unwrap()
    };
    body_of(s.clone().oneshot(req()).await.unwrap()).await;
    let res = s.clone().oneshot(req()).await.unwrap();
    assert_eq!(res.status(), 429);
    let id = res.extensions().get::<AuditHandle>().unwrap().id();
    body_of(res).await;
    for _ in 0..500 {
        if let Some(rec) = store.get(id).await.unwrap()
            && rec.response.is_some()
        {
            assert_eq!(rec.request.decision.verdict, Verdict::Deny);
            let reason = rec.request.decision.reason.unwrap();
            assert_eq!(reason, "budget limit rpm-1: 1 of 1 requests per minute");
            assert_eq!(rec.response.unwrap().status, 429);
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("no audit record");
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn gateway_config_wires_the_budgets_section() {
    use crate::gateway::GatewayConfig;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "sk-ant-test").unwrap();
    let text = format!(
        r#"
        [upstream]
        api_key_file = "{}"
        [identity]
        dev_key_file = "{}"
        [budgets]
        time_zone = "Europe/Berlin"
        [[budgets.limit]]
        id = "skill-daily-tokens"
        subjects = ["skill-*"]
        tokens_per_day = 50000
        "#,
        key.display(),
        dir.path().join("dev.json").display()
    );
    let mut cfg: GatewayConfig = toml::from_str(&text).unwrap();
    assert_eq!(cfg.budgets.limits[0].tokens_per_day, Some(50_000));
    let store = Arc::new(crate::audit::SqliteStore::in_memory().await.unwrap());
    cfg.assemble_with_store(store.clone()).await.unwrap();

    cfg.budgets.time_zone = "Nowhere/Special".into();
    let e = cfg.assemble_with_store(store.clone()).await.unwrap_err();
    assert!(e.to_string().contains("budgets"), "{e}");
    #[cfg(not(feature = "redis"))]
    {
        cfg.budgets.time_zone = "UTC".into();
        cfg.budgets.redis_url = Some("redis://127.0.0.1:6379".into());
        let e = cfg.assemble_with_store(store).await.unwrap_err();
        assert!(e.to_string().contains("`redis` feature"), "{e}");
    }
}
