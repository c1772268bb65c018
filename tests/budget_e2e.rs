//! Budgets and rate limits through the HTTP stack: the machine's Redis shared
//! by two gateway instances, token budgets seen by the official Python SDK,
//! failing closed when Redis is down, and the Redis store itself (atomicity,
//! windows) checked against the in-process store.
#![cfg(all(feature = "redis", feature = "sqlite"))]

mod support;

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};
use skillgate::audit::{AuditStore, Verdict};
use skillgate::budget::{
    BudgetConfig, BudgetStore, Budgets, Check, LimitConfig, MemoryStore, RedisStore, Scope,
};
use skillgate::gateway::{GatewayConfig, serve};
use skillgate::identity::Principal;
use skillgate::identity::dev::{DEV_ISSUER, MintOptions};
use support::python::sdk_call;
use support::stand_in::{
    STAND_IN_API_KEY, StandIn, input_tokens_for, reply_pieces, reply_text_for,
};

/// The machine's Redis (no auth).
const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// A key prefix no other test (or run) uses.
fn unique_prefix(test: &str) -> String {
    format!("skillgate-test:{test}:{}", uuid::Uuid::now_v7())
}

/// Deletes every key under `prefix` (test keys may be dated far ahead and
/// would otherwise outlive the test).
async fn cleanup(prefix: &str) {
    let client = redis::Client::open(REDIS_URL).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .expect("keys");
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .expect("del");
    }
}

struct Gw {
    base: String,
    audit: Arc<dyn AuditStore>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A gateway on a free port, with its own audit database in `dir` and the
/// development issuer's key at `dir/dev.json` (shared by gateways in `dir`).
async fn start(up: &StandIn, dir: &std::path::Path, name: &str, budgets: &str) -> Gw {
    let key = dir.join("key");
    std::fs::write(&key, STAND_IN_API_KEY).expect("key");
    let mut cfg = GatewayConfig::default();
    cfg.upstream.url = up.base_url();
    cfg.upstream.api_key_file = Some(key);
    cfg.audit.sqlite = dir.join(format!("{name}.db"));
    cfg.audit.instance = Some(name.into());
    cfg.identity.dev_key_file = dir.join("dev.json");
    cfg.budgets = toml::from_str(budgets).expect("budgets toml");
    let a = cfg.assemble().await.expect("assemble");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(
        listener,
        a.service,
        async move {
            let _ = rx.await;
        },
        Duration::from_secs(5),
    ));
    Gw {
        base,
        audit: a.audit,
        _stop: tx,
    }
}

fn mint(dir: &std::path::Path, subject: &str, groups: &[&str]) -> String {
    let dev =
        skillgate::identity::dev::DevIssuer::load_or_create(&dir.join("dev.json"), DEV_ISSUER)
            .expect("dev issuer");
    let mut o = MintOptions::new(subject);
    for g in groups {
        o = o.group(*g);
    }
    dev.mint(&o).expect("mint")
}

async fn post(base: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}/v1/messages"))
        .bearer_auth(token)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "claude-sonnet-4-5", "max_tokens": 16,
            "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("post")
}

fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name}"))
        .to_str()
        .expect("ascii")
        .to_owned()
}

/// A port nothing listens on (discard; also what the gateway tests use for
/// an unreachable upstream). A port freed by a test could be handed to the
/// next listener the tests open.
const CLOSED_PORT: u16 = 9;

async fn wait_records(audit: &Arc<dyn AuditStore>, n: usize) -> Vec<skillgate::audit::AuditRecord> {
    for _ in 0..400 {
        let r = audit.recent(100).await.expect("query");
        if r.len() >= n && r.iter().all(|x| x.response.is_some()) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("audit records missing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_share_a_per_minute_limit_through_redis() {
    let up = StandIn::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = unique_prefix("two-gateways");
    let budgets = format!(
        r#"
        redis_url = "{REDIS_URL}"
        key_prefix = "{}"
        [[limit]]
        id = "per-skill-rpm"
        requests_per_minute = 5
        [[limit]]
        id = "ci-rpm"
        scope = "group"
        groups = ["ci"]
        requests_per_minute = 8
        "#,
        prefix
    );
    let a = start(&up, dir.path(), "gw-a", &budgets).await;
    let b = start(&up, dir.path(), "gw-b", &budgets).await;
    let token = mint(dir.path(), "skill-a", &[]);

    // Alternating between the instances, 5 are admitted in all…
    for i in 0..5 {
        let gw = if i % 2 == 0 { &a } else { &b };
        let res = post(&gw.base, &token).await;
        assert_eq!(res.status(), 200, "request {} on {}", i + 1, gw.base);
    }
    // …and the 6th is refused on either.
    for gw in [&a, &b] {
        let res = post(&gw.base, &token).await;
        assert_eq!(res.status(), 429);
        let retry: u64 = header(&res, "retry-after").parse().expect("seconds");
        assert!((1..=60).contains(&retry), "{retry}");
        assert_eq!(header(&res, "x-should-retry"), "true");
        assert_eq!(header(&res, "anthropic-ratelimit-requests-limit"), "5");
        assert_eq!(header(&res, "anthropic-ratelimit-requests-remaining"), "0");
        let body: Value = res.json().await.expect("json");
        assert_eq!(body["error"]["type"], "rate_limit_error");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("`per-skill-rpm`"))
        );
    }
    assert_eq!(up.received().len(), 5, "refusals never reach upstream");

    // A group counter is shared by its members across instances: 8 in all.
    let members: Vec<String> = (0..3)
        .map(|i| mint(dir.path(), &format!("ci-job-{i}"), &["ci"]))
        .collect();
    let mut admitted = 0;
    for i in 0..10 {
        let gw = if i % 2 == 0 { &a } else { &b };
        let res = post(&gw.base, &members[i % 3]).await;
        match res.status().as_u16() {
            200 => admitted += 1,
            429 => assert!(i >= 8, "refused early at {i}"),
            s => panic!("status {s}"),
        }
    }
    assert_eq!(admitted, 8);

    // Both instances recorded their refusals as denials naming the limit.
    let recs = wait_records(&a.audit, 6).await;
    let denied: Vec<_> = recs
        .iter()
        .filter(|r| r.request.decision.verdict == Verdict::Deny)
        .collect();
    assert!(!denied.is_empty());
    assert!(denied.iter().all(|r| {
        r.request
            .decision
            .reason
            .as_deref()
            .is_some_and(|m| m.starts_with("budget limit "))
    }));
    cleanup(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_budget_runs_out_and_the_sdk_raises_rate_limit_error() {
    const PROMPT: &str = "alpha beta gamma delta";
    let per_call = input_tokens_for(&json!({"messages": [{"role": "user", "content": PROMPT}]}))
        + reply_pieces(&reply_text_for(PROMPT)).len() as u64;
    // Two calls stay under it, the third is admitted and goes over.
    let budget = 2 * per_call + 1;

    let up = StandIn::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = unique_prefix("token-budget");
    let budgets_toml = format!(
        r#"
        redis_url = "{REDIS_URL}"
        key_prefix = "{}"
        time_zone = "Europe/Berlin"
        [[limit]]
        id = "skill-daily-tokens"
        subjects = ["skill-*"]
        tokens_per_day = {budget}
        "#,
        prefix
    );
    let gw = start(&up, dir.path(), "gw", &budgets_toml).await;
    let token = mint(dir.path(), "skill-report", &["skills"]);

    // Read the same counters the gateway writes.
    let cfg: BudgetConfig = toml::from_str(&budgets_toml).expect("toml");
    let budgets = Budgets::from_config(&cfg).expect("budgets");
    let peek = RedisStore::open(REDIS_URL, Duration::from_secs(2)).expect("redis");
    let principal = Principal::new(DEV_ISSUER, "skill-report");
    let used = || async {
        let now = Timestamp::now();
        let checks = budgets.plan(&principal, now);
        peek.peek(&checks, now).await.expect("peek")[0].used
    };
    let wait_used = |want: u64| {
        let used = &used;
        async move {
            for _ in 0..400 {
                let u = used().await;
                if u >= want {
                    assert_eq!(u, want, "counted exactly once");
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("tokens never reached {want}");
        }
    };

    let env = [("SG_PROMPT", PROMPT)];
    let out = sdk_call("create", &gw.base, Some(&token), &env).await;
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(
        out["message"]["usage"]["input_tokens"].as_u64().unwrap()
            + out["message"]["usage"]["output_tokens"].as_u64().unwrap(),
        per_call
    );
    wait_used(per_call).await;

    // Streaming: message_start + message_delta usage, counted as it streams.
    let out = sdk_call("stream", &gw.base, Some(&token), &env).await;
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(out["text"], reply_text_for(PROMPT));
    wait_used(2 * per_call).await;

    // Under the budget (by one token): admitted, and it goes over.
    let out = sdk_call("create", &gw.base, Some(&token), &env).await;
    assert_eq!(out["ok"], true, "{out}");
    wait_used(3 * per_call).await;

    // Over: refused, and with the SDK's default retries it is not retried.
    let out = sdk_call(
        "create",
        &gw.base,
        Some(&token),
        &[("SG_PROMPT", PROMPT), ("SG_MAX_RETRIES", "2")],
    )
    .await;
    assert_eq!(out["ok"], false, "{out}");
    assert_eq!(out["error_class"], "RateLimitError", "{out}");
    assert_eq!(out["status"], 429);
    assert_eq!(out["error_type"], "rate_limit_error");
    let h = &out["headers"];
    let retry: u64 = h["retry-after"]
        .as_str()
        .expect("retry-after")
        .parse()
        .expect("secs");
    assert!((1..=25 * 3600).contains(&retry), "{retry}");
    assert_eq!(h["x-should-retry"], "false");
    assert_eq!(h["anthropic-ratelimit-tokens-limit"], budget.to_string());
    assert_eq!(h["anthropic-ratelimit-tokens-remaining"], "0");
    let reset: Timestamp = h["anthropic-ratelimit-tokens-reset"]
        .as_str()
        .expect("reset")
        .parse()
        .expect("RFC 3339");
    assert_eq!(
        reset,
        skillgate::budget::day_window(Timestamp::now(), budgets.time_zone()).1
    );
    let msg = out["api_message"].as_str().unwrap_or_default();
    assert!(msg.contains("`skill-daily-tokens`"), "{msg}");
    assert_eq!(
        up.received().len(),
        3,
        "the refused call never went upstream"
    );

    // The refusal is in the audit record.
    let recs = wait_records(&gw.audit, 4).await;
    let denied: Vec<_> = recs
        .iter()
        .filter(|r| r.request.decision.verdict == Verdict::Deny)
        .collect();
    assert_eq!(denied.len(), 1, "one refusal, not retried");
    assert_eq!(
        denied[0].request.decision.reason.as_deref(),
        Some(
            format!(
                "budget limit skill-daily-tokens: {} of {budget} tokens per day",
                3 * per_call
            )
            .as_str()
        )
    );
    cleanup(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_fails_closed_by_default() {
    let up = StandIn::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = CLOSED_PORT;
    let limits = "[[limit]]\nid = \"rpm\"\nrequests_per_minute = 100";
    let closed = start(
        &up,
        dir.path(),
        "closed",
        &format!("redis_url = \"redis://127.0.0.1:{port}\"\n{limits}"),
    )
    .await;
    let open = start(
        &up,
        dir.path(),
        "open",
        &format!("redis_url = \"redis://127.0.0.1:{port}\"\non_store_error = \"allow\"\n{limits}"),
    )
    .await;
    let token = mint(dir.path(), "skill-a", &[]);

    for _ in 0..2 {
        let res = post(&closed.base, &token).await;
        assert_eq!(res.status(), 503);
        assert_eq!(header(&res, "x-should-retry"), "true");
        assert_eq!(header(&res, "retry-after"), "1");
        let body: Value = res.json().await.expect("json");
        assert_eq!(body["error"]["type"], "api_error");
        let msg = body["error"]["message"].as_str().unwrap_or_default();
        assert!(!msg.contains(&port.to_string()), "no store detail: {msg}");
    }
    assert!(up.received().is_empty(), "nothing forwarded");
    let recs = wait_records(&closed.audit, 2).await;
    assert!(recs.iter().all(|r| {
        r.request.decision.verdict == Verdict::Deny
            && r.request.decision.reason.as_deref() == Some("budget store unavailable")
    }));

    // The SDK sees a server error, not a rate limit.
    let out = sdk_call("create", &closed.base, Some(&token), &[]).await;
    assert_eq!(out["status"], 503, "{out}");
    assert_eq!(out["error_class"], "ServiceUnavailableError", "{out}");

    // Configured to fail open: forwarded, uncounted.
    let res = post(&open.base, &token).await;
    assert_eq!(res.status(), 200);
    assert_eq!(up.received().len(), 1);
}

fn check(key: &str, limit: u64, kind: skillgate::budget::CounterKind) -> Check {
    Check {
        limit_id: "t".into(),
        key: key.into(),
        kind,
        limit,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_admits_exactly_the_limit_under_concurrency() {
    let prefix = unique_prefix("concurrency");
    let checks = Arc::new(vec![check(
        &format!("{prefix}:rpm"),
        50,
        skillgate::budget::CounterKind::Requests { window_ms: 60_000 },
    )]);
    // Four connections, as four gateway instances would have.
    let stores: Vec<Arc<RedisStore>> = (0..4)
        .map(|_| Arc::new(RedisStore::open(REDIS_URL, Duration::from_secs(5)).expect("redis")))
        .collect();
    let now = Timestamp::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let store = stores[i % 4].clone();
        let checks = checks.clone();
        tasks.spawn(async move { store.admit(&checks, now).await.expect("admit").admitted() });
    }
    let mut admitted = 0;
    while let Some(r) = tasks.join_next().await {
        admitted += usize::from(r.expect("task"));
    }
    assert_eq!(admitted, 50);
    let s = stores[0].peek(&checks, now).await.expect("peek");
    assert_eq!(s[0].used, 50);
    cleanup(&prefix).await;
}

/// The same sequence of operations gives the same answers from the Redis
/// store and the in-process store: windows, boundaries, multi-counter atomicity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_and_memory_stores_agree_on_windows() {
    let redis = RedisStore::open(REDIS_URL, Duration::from_secs(5)).expect("redis");
    let memory = MemoryStore::new();
    let prefix = unique_prefix("windows");
    let r = window_script(&redis, &prefix).await;
    let m = window_script(&memory, &prefix).await;
    assert_eq!(r, m);
    let refused: Vec<Option<&str>> = m.iter().map(|(r, _)| r.as_deref()).collect();
    assert_eq!(
        refused,
        [
            None,
            None,
            Some("rpm:requests"),
            None,
            Some("team:requests"),
            None,
            None,
            Some("rpm:tokens"),
            Some("rpm:tokens"),
            None
        ]
    );
    // 60 s after the oldest request in the window; NY midnight (EDT) for tokens.
    assert_eq!(m[2].1, "refused until 2099-03-08T05:00:30Z");
    assert_eq!(m[4].1, "refused until 2099-03-08T05:00:30Z");
    assert_eq!(m[7].1, "refused until 2099-03-09T04:00:00Z");
    cleanup(&prefix).await;
    // Counts include the request just admitted.
    assert_eq!(m[6].1, "used [2, 0, 3]");
}

async fn window_script(store: &dyn BudgetStore, prefix: &str) -> Vec<(Option<String>, String)> {
    // Dates are far in the future: Redis expires token counters a day after
    // their day ends, by its own clock.
    let tz = jiff::tz::TimeZone::get("America/New_York").expect("tz");
    let budgets = Budgets::new(
        vec![
            LimitConfig {
                id: "rpm".into(),
                scope: Scope::Principal,
                groups: vec![],
                subjects: vec![],
                requests_per_minute: Some(2),
                tokens_per_day: Some(100),
            },
            LimitConfig {
                id: "team".into(),
                scope: Scope::Group,
                groups: vec!["team".into()],
                subjects: vec![],
                requests_per_minute: Some(3),
                tokens_per_day: None,
            },
        ],
        tz,
        prefix,
    )
    .expect("budgets");
    let alice = Principal::new("https://idp", "alice").with_groups(["team"]);
    let bob = Principal::new("https://idp", "bob").with_groups(["team"]);
    let at = |s: &str| s.parse::<Timestamp>().expect("ts");
    let admit = async |p: &Principal, t: &str| {
        let now = at(t);
        let checks = budgets.plan(p, now);
        let a = store.admit(&checks, now).await.expect("admit");
        match a.refused {
            Some(i) => (
                Some(format!(
                    "{}:{}",
                    checks[i].limit_id,
                    if checks[i].is_tokens() {
                        "tokens"
                    } else {
                        "requests"
                    }
                )),
                format!("refused until {}", a.states[i].retry_at),
            ),
            None => (
                None,
                format!(
                    "used {:?}",
                    a.states.iter().map(|s| s.used).collect::<Vec<_>>()
                ),
            ),
        }
    };
    let mut log = Vec::new();
    // New York: EST (UTC-5) until 2099-03-08 07:00 UTC, then EDT: a 23-hour day.
    log.push(admit(&alice, "2099-03-08T04:59:30Z").await);
    log.push(admit(&alice, "2099-03-08T04:59:50Z").await);
    log.push(admit(&alice, "2099-03-08T05:00:10Z").await); // alice's 3rd in a minute
    log.push(admit(&bob, "2099-03-08T05:00:15Z").await); // the team's 3rd
    log.push(admit(&bob, "2099-03-08T05:00:20Z").await); // the team's 4th
    log.push(admit(&alice, "2099-03-08T05:00:30Z").await); // 04:59:30 left both windows
    log.push(admit(&alice, "2099-03-08T05:00:50Z").await); // 04:59:50 left too
    // Tokens: 100 per New York day.
    let day1 = budgets.plan(&alice, at("2099-03-08T12:00:00Z"));
    store.add_tokens(&day1, 60).await.expect("add");
    store.add_tokens(&day1, 40).await.expect("add");
    log.push(admit(&alice, "2099-03-08T12:00:00Z").await); // 100 of 100
    log.push(admit(&alice, "2099-03-09T03:59:59Z").await); // 23:59:59 EDT, same day
    log.push(admit(&alice, "2099-03-09T04:00:00Z").await); // midnight EDT: a new day
    log
}
