//! An existing axum application that adds skillgate: its own routes stay as
//! they are, `/v1/*` is proxied to Claude under the full stack (identity,
//! policy, audit…), and one route of its own, `GET /v1/whoami`, runs behind
//! the same stack and reads the caller's `Principal`.
//!
//! ```text
//! ANTHROPIC_API_KEY=sk-ant-… cargo run --example axum_router --features axum   # serves 127.0.0.1:3000
//! cargo run --example axum_router --features axum -- --demo                    # scripted run against the local stand-in, then exits
//! ```
//!
//! Without `--demo` it trusts a development issuer and prints a token to try
//! it with `curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:3000/v1/whoami`.

#[path = "../tests/support/stand_in.rs"]
#[allow(dead_code)]
mod stand_in;

use std::sync::Arc;

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use skillgate::audit::{AuditStore, SqliteStore};
use skillgate::body::AnyBody;
use skillgate::gateway::Gateway;
use skillgate::identity::Principal;
use skillgate::identity::dev::{DevIssuer, MintOptions};
use skillgate::integrations::axum::AuditId;
use skillgate::policy::{Decision, PolicyLayer, RulesPolicy};
use skillgate::upstream::{StaticCredential, Upstream};

/// Who may do what: the `ci` group may call Messages and `whoami`; every
/// other request is denied (no rule allows it).
pub const POLICY: &str = r#"
[[rule]]
id = "ci-messages"
effect = "allow"
match = { groups = ["ci"], paths = ["/v1/messages", "/v1/whoami"] }
"#;

/// The application's own route behind the stack: who is calling, what the
/// policy decided, and the audit record of this request.
async fn whoami(principal: Principal, decision: Option<Decision>, audit: AuditId) -> Json<Value> {
    Json(json!({
        "issuer": principal.issuer,
        "subject": principal.subject,
        "groups": principal.groups,
        "decision_rule": decision.as_ref().and_then(|d| d.rule()).map(str::to_owned),
        "audit_id": audit.0.to_string(),
    }))
}

/// The gateway: dev-issuer tokens, the [`POLICY`] above, audit to `store`.
pub fn gateway(dev: &DevIssuer, store: Arc<dyn AuditStore>) -> Result<Gateway, String> {
    let policy = RulesPolicy::from_toml(POLICY, "axum_router policy").map_err(|e| e.to_string())?;
    Gateway::builder()
        .verifier(dev.verifier("skillgate"))
        .audit_store_arc(store)
        .policy(PolicyLayer::new(policy))
        .build()
        .map_err(|e| e.to_string())
}

/// The whole application: its own routes, plus the skillgate routes.
pub fn app(gateway: &Gateway, upstream: Upstream) -> Router {
    let skillgate_routes = Router::new()
        .route("/v1/whoami", get(whoami))
        .route_service("/v1/{*path}", AnyBody::new(upstream))
        .route_layer(gateway.any_body_layer());
    Router::new()
        .route("/", get(|| async { "my existing app" }))
        .route("/healthz", get(|| async { "ok" }))
        .merge(skillgate_routes)
}

/// The scripted exchange of `--demo`: starts the stand-in, serves the app on
/// a free port, and checks each answer. Returns what it saw.
pub async fn demo() -> Result<Vec<String>, String> {
    let upstream_api = stand_in::StandIn::start().await;
    let upstream = Upstream::builder(upstream_api.base_url())
        .credential(StaticCredential::new(
            skillgate::upstream::Credential::api_key(stand_in::STAND_IN_API_KEY),
        ))
        .build()
        .map_err(|e| e.to_string())?;
    let dev = DevIssuer::ephemeral();
    let store: Arc<dyn AuditStore> =
        Arc::new(SqliteStore::in_memory().await.map_err(|e| e.to_string())?);
    let gw = gateway(&dev, store.clone())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let base = format!(
        "http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let server = tokio::spawn(axum::serve(listener, app(&gw, upstream)).into_future());

    let mint = |sub: &str, group: &str| {
        let mut o = MintOptions::new(sub);
        o.groups = vec![group.to_owned()];
        dev.mint(&o).map_err(|e| e.to_string())
    };
    let ci = mint("demo-skill", "ci")?;
    let other = mint("other-skill", "marketing")?;
    let http = reqwest::Client::new();
    let mut seen = Vec::new();

    let root = http
        .get(format!("{base}/"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    seen.push(format!("GET / -> {}", root.status()));
    check(
        root.status() == 200,
        "the app's own route answers without a token",
    )?;

    let who = http
        .get(format!("{base}/v1/whoami"))
        .bearer_auth(&ci)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = who.status();
    let body: Value = who.json().await.map_err(|e| e.to_string())?;
    seen.push(format!("GET /v1/whoami -> {status} {body}"));
    check(
        status == 200 && body["subject"] == "demo-skill",
        "whoami sees the principal",
    )?;

    let msg = http
        .post(format!("{base}/v1/messages"))
        .bearer_auth(&ci)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "claude-sonnet-5", "max_tokens": 64,
                      "messages": [{"role": "user", "content": "hello from axum"}]}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = msg.status();
    let body: Value = msg.json().await.map_err(|e| e.to_string())?;
    seen.push(format!("POST /v1/messages -> {status}"));
    check(
        status == 200 && body["content"][0]["text"] == stand_in::reply_text_for("hello from axum"),
        "Messages is proxied to the upstream",
    )?;

    let denied = http
        .post(format!("{base}/v1/messages"))
        .bearer_auth(&other)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "claude-sonnet-5", "max_tokens": 64,
                      "messages": [{"role": "user", "content": "not allowed"}]}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = denied.status();
    let body: Value = denied.json().await.map_err(|e| e.to_string())?;
    seen.push(format!(
        "POST /v1/messages (group marketing) -> {status} {}",
        body["error"]["type"]
    ));
    check(
        status == 403 && body["error"]["type"] == "permission_error",
        "policy denies",
    )?;

    let anon = http
        .get(format!("{base}/v1/whoami"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    seen.push(format!("GET /v1/whoami (no token) -> {}", anon.status()));
    check(anon.status() == 401, "no token, no answer")?;

    check(
        upstream_api.received().len() == 1,
        "only the allowed call reached the upstream",
    )?;
    server.abort();
    Ok(seen)
}

fn check(ok: bool, what: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("demo check failed: {what}"))
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    if std::env::args().any(|a| a == "--demo") {
        return match demo().await {
            Ok(seen) => {
                seen.iter().for_each(|l| println!("{l}"));
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    if let Err(e) = serve().await {
        eprintln!("error: {e}");
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}

async fn serve() -> Result<(), String> {
    let upstream = Upstream::builder("https://api.anthropic.com")
        .credential(StaticCredential::from_env("ANTHROPIC_API_KEY").map_err(|e| e.to_string())?)
        .build()
        .map_err(|e| e.to_string())?;
    let dev = DevIssuer::ephemeral();
    let store = Arc::new(
        SqliteStore::open(std::path::Path::new("axum-app-audit.db"))
            .await
            .map_err(|e| e.to_string())?,
    );
    let gw = gateway(&dev, store)?;
    let mut o = MintOptions::new("my-skill");
    o.groups = vec!["ci".into()];
    println!("token: {}", dev.mint(&o).map_err(|e| e.to_string())?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000")
        .await
        .map_err(|e| e.to_string())?;
    println!("listening on http://127.0.0.1:3000");
    axum::serve(listener, app(&gw, upstream))
        .await
        .map_err(|e| e.to_string())
}
