//! The gateway layers inside an axum application (feature `axum`): handlers
//! read the `Principal`, the policy `Decision` and the audit record id; a
//! refused request never reaches a handler.

#![cfg(all(feature = "axum", feature = "sqlite"))]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body as AxumBody;
use axum::routing::get;
use http::Request;
use http_body_util::BodyExt;
use serde_json::Value;
use skillgate::audit::{AuditStore, SqliteStore, Verdict};
use skillgate::gateway::Gateway;
use skillgate::identity::Principal;
use skillgate::identity::dev::{DevIssuer, MintOptions};
use skillgate::integrations::axum::AuditId;
use skillgate::policy::{Decision, PolicyLayer, RulesPolicy};
use tower::ServiceExt;

const POLICY: &str = r#"
[[rule]]
id = "ci-whoami"
effect = "allow"
match = { groups = ["ci"], paths = ["/v1/whoami"] }
"#;

struct App {
    router: Router,
    dev: DevIssuer,
    store: Arc<dyn AuditStore>,
    calls: Arc<AtomicUsize>,
}

async fn app() -> App {
    let dev = DevIssuer::ephemeral();
    let store: Arc<dyn AuditStore> = Arc::new(SqliteStore::in_memory().await.expect("store"));
    let gateway = Gateway::builder()
        .verifier(dev.verifier("skillgate"))
        .audit_store_arc(store.clone())
        .policy(PolicyLayer::new(
            RulesPolicy::from_toml(POLICY, "test").expect("policy"),
        ))
        .build()
        .expect("gateway");
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let whoami = move |p: Principal, d: Decision, a: AuditId| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            axum::Json(serde_json::json!({
                "subject": p.subject,
                "groups": p.groups,
                "allowed": matches!(d, Decision::Allow { .. }),
                "audit_id": a.0.to_string(),
            }))
        }
    };
    let router = Router::new()
        .route("/", get(|| async { "public" }))
        .route("/unguarded", get(|p: Principal| async move { p.subject }))
        .merge(
            Router::new()
                .route("/v1/whoami", get(whoami))
                .route_layer(gateway.any_body_layer()),
        );
    App {
        router,
        dev,
        store,
        calls,
    }
}

fn token(dev: &DevIssuer, sub: &str, group: &str) -> String {
    let mut o = MintOptions::new(sub);
    o.groups = vec![group.to_owned()];
    dev.mint(&o).expect("mint")
}

async fn call(router: &Router, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = Request::get(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let res = router
        .clone()
        .oneshot(req.body(AxumBody::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = res.status().as_u16();
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, json)
}

#[tokio::test]
async fn a_handler_sees_the_principal_decision_and_audit_id() {
    let app = app().await;
    let t = token(&app.dev, "report-builder", "ci");
    let (status, body) = call(&app.router, "/v1/whoami", Some(&t)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["subject"], "report-builder");
    assert_eq!(body["groups"], serde_json::json!(["ci"]));
    assert_eq!(body["allowed"], true);
    // The id the handler saw is the id of the stored record.
    let id: uuid::Uuid = body["audit_id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");
    let rec = app.store.get(id).await.expect("store").expect("record");
    assert_eq!(
        rec.request.principal.as_ref().map(|p| p.subject.as_str()),
        Some("report-builder")
    );
    assert_eq!(rec.request.decision.verdict, Verdict::Allow);
    // The app's own routes outside the layer are untouched.
    assert_eq!(
        call(&app.router, "/", None).await,
        (200, Value::String("public".into()))
    );
    assert_eq!(app.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_refused_request_never_reaches_the_handler() {
    let app = app().await;
    // Policy denial: authenticated, but not in the allowed group.
    let other = token(&app.dev, "marketing-bot", "marketing");
    let (status, body) = call(&app.router, "/v1/whoami", Some(&other)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "permission_error");
    // No token, and a forged one.
    let (status, body) = call(&app.router, "/v1/whoami", None).await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (401, Some("authentication_error"))
    );
    let forged = token(&DevIssuer::ephemeral(), "report-builder", "ci");
    let (status, _) = call(&app.router, "/v1/whoami", Some(&forged)).await;
    assert_eq!(status, 401);
    assert_eq!(app.calls.load(Ordering::SeqCst), 0, "the handler never ran");
}

#[tokio::test]
async fn an_extractor_outside_the_layers_fails_closed() {
    let app = app().await;
    let t = token(&app.dev, "report-builder", "ci");
    // A route not behind the gateway has no Principal: refused, not anonymous.
    let (status, body) = call(&app.router, "/unguarded", Some(&t)).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"]["type"], "api_error");
}
