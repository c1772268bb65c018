//! Policy through the HTTP stack with the official Python SDK.

mod support;

use std::time::Duration;

use serde_json::Value;
use skillgate::audit::{AuditStore, Verdict};
use skillgate::gateway::{GatewayConfig, serve};
use skillgate::identity::dev::MintOptions;
use support::python::sdk_call;
use support::stand_in::{STAND_IN_API_KEY, StandIn, reply_text_for};

const POLICY: &str = r#"
[[rule]]
id = "ci-messages"
effect = "allow"
match = { groups = "ci", paths = ["/v1/messages"] }
obligations = { max_tokens = 512 }

[[rule]]
id = "no-opus-for-ci"
effect = "deny"
reason = "Opus models are not for CI jobs"
match = { groups = "ci", models = "claude-opus-*" }

[[rule]]
id = "customer-export"
effect = "require_approval"
reason = "prompts about customer exports need a human"
match = { keywords = "customer export" }
"#;

/// The same policy in Cedar (feature `cedar`): the scenario below runs
/// under both engines.
#[cfg(feature = "cedar")]
const CEDAR_POLICY: &str = r#"
@id("ci-messages")
@max_tokens("512")
permit(principal in Skillgate::Group::"ci", action == Skillgate::Action::"messages", resource);

@id("no-opus-for-ci")
@reason("Opus models are not for CI jobs")
forbid(principal in Skillgate::Group::"ci", action, resource is Skillgate::Model)
when { resource.id like "claude-opus-*" };

@id("customer-export")
@effect("require_approval")
@reason("prompts about customer exports need a human")
permit(principal, action, resource) when { context.keywords.contains("customer-export") };
"#;

#[cfg(feature = "cedar")]
const CEDAR_CONTEXT: &str = r#"
[keywords.customer-export]
keywords = ["customer export"]
"#;

#[derive(Clone, Copy)]
enum Engine {
    Rules,
    #[cfg(feature = "cedar")]
    Cedar,
}

struct Gw {
    base: String,
    audit: std::sync::Arc<dyn AuditStore>,
    ci_token: String,
    intern_token: String,
    policy_file: std::path::PathBuf,
    handle: skillgate::policy::PolicyHandle,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(up: &StandIn) -> Gw {
    start_with(up, Engine::Rules).await
}

async fn start_with(up: &StandIn, engine: Engine) -> Gw {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("key");
    std::fs::write(&key, STAND_IN_API_KEY).expect("key");
    let mut cfg = GatewayConfig::default();
    let policy_file = match engine {
        Engine::Rules => {
            let f = dir.path().join("policy.toml");
            std::fs::write(&f, POLICY).expect("policy");
            f
        }
        #[cfg(feature = "cedar")]
        Engine::Cedar => {
            let f = dir.path().join("policy.cedar");
            std::fs::write(&f, CEDAR_POLICY).expect("policy");
            let c = dir.path().join("cedar-context.toml");
            std::fs::write(&c, CEDAR_CONTEXT).expect("context");
            cfg.policy.engine = skillgate::gateway::PolicyEngineKind::Cedar;
            cfg.policy.context = Some(c);
            f
        }
    };
    cfg.upstream.url = up.base_url();
    cfg.upstream.api_key_file = Some(key);
    cfg.audit.sqlite = dir.path().join("audit.db");
    cfg.identity.dev_key_file = dir.path().join("dev.json");
    cfg.policy.file = Some(policy_file.clone());
    cfg.policy.watch_interval_secs = 0;
    let a = cfg.assemble().await.expect("assemble");
    let dev = a.dev_issuer.clone().expect("dev");
    let ci_token = dev
        .mint(&MintOptions::new("nightly-report").group("ci"))
        .expect("mint");
    let intern_token = dev
        .mint(&MintOptions::new("intern-bot").group("interns"))
        .expect("mint");
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
        ci_token,
        intern_token,
        policy_file,
        handle: a.policy.expect("policy handle"),
        _dir: dir,
        _stop: tx,
    }
}

async fn records(gw: &Gw, n: usize) -> Vec<skillgate::audit::AuditRecord> {
    for _ in 0..400 {
        let r = gw.audit.recent(100).await.expect("query");
        if r.len() >= n && r.iter().all(|x| x.response.is_some()) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("records missing");
}

fn assert_denied(out: &Value, rule: &str) {
    assert_eq!(out["ok"], false, "{out}");
    assert_eq!(out["error_class"], "PermissionDeniedError", "{out}");
    assert_eq!(out["status"], 403);
    assert_eq!(out["body"]["error"]["type"], "permission_error");
    let msg = out["body"]["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains(&format!("`{rule}`")), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_decisions_reach_the_sdk() {
    decisions_reach_the_sdk(Engine::Rules).await;
}

#[cfg(feature = "cedar")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cedar_policy_decisions_reach_the_sdk() {
    decisions_reach_the_sdk(Engine::Cedar).await;
}

async fn decisions_reach_the_sdk(engine: Engine) {
    let up = StandIn::start().await;
    let gw = start_with(&up, engine).await;

    // Allowed, with max_tokens clamped by the obligation.
    let out = sdk_call(
        "create",
        &gw.base,
        Some(&gw.ci_token),
        &[("SG_PROMPT", "hi"), ("SG_MAX_TOKENS", "4000")],
    )
    .await;
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(out["text"], reply_text_for("hi"));
    assert_eq!(up.received().len(), 1);
    assert_eq!(
        up.received()[0].json()["max_tokens"],
        512,
        "clamped upstream"
    );

    // Denied by rule, with the SDK's default retries on: not retried.
    let out = sdk_call(
        "create",
        &gw.base,
        Some(&gw.ci_token),
        &[("SG_MODEL", "claude-opus-4-1"), ("SG_MAX_RETRIES", "2")],
    )
    .await;
    assert_denied(&out, "no-opus-for-ci");
    assert!(
        out["body"]["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Opus models are not for CI jobs")
    );

    // Default deny for a group no rule allows.
    let out = sdk_call(
        "create",
        &gw.base,
        Some(&gw.intern_token),
        &[("SG_MAX_RETRIES", "2")],
    )
    .await;
    assert_denied(&out, "default");

    // Approval required, but no approval channel: refused, never forwarded; the
    // keyword itself is not echoed.
    let out = sdk_call(
        "stream",
        &gw.base,
        Some(&gw.ci_token),
        &[("SG_PROMPT", "start the Customer Export job")],
    )
    .await;
    assert_denied(&out, "customer-export");
    assert!(
        !out["body"]["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase()
            .contains("customer export job")
    );

    assert_eq!(
        up.received().len(),
        1,
        "denied requests never went upstream"
    );
    let recs = records(&gw, 4).await;
    assert_eq!(
        recs.len(),
        4,
        "one record per call: the SDK did not retry denials"
    );
    let newest = &recs[0];
    assert_eq!(newest.request.decision.verdict, Verdict::Deny);
    assert!(
        newest
            .request
            .decision
            .rules
            .contains(&"customer-export".to_string()),
        "{:?}",
        newest.request.decision
    );
    let opus = recs
        .iter()
        .find(|r| r.request.model.as_deref() == Some("claude-opus-4-1"))
        .expect("opus record");
    assert_eq!(
        opus.request.decision.rules,
        ["ci-messages", "no-opus-for-ci"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_reload_applies_to_the_next_request() {
    let up = StandIn::start().await;
    let gw = start(&up).await;
    let out = sdk_call("create", &gw.base, Some(&gw.intern_token), &[]).await;
    assert_denied(&out, "default");
    std::fs::write(&gw.policy_file, format!("{POLICY}\n[[rule]]\nid = \"interns-too\"\neffect = \"allow\"\nmatch = {{ groups = \"interns\" }}\n"))
        .expect("write");
    gw.handle.reload_file(&gw.policy_file).expect("reload");
    let out = sdk_call(
        "create",
        &gw.base,
        Some(&gw.intern_token),
        &[("SG_PROMPT", "x")],
    )
    .await;
    assert_eq!(out["ok"], true, "{out}");
    // A broken file keeps the last good policy.
    std::fs::write(&gw.policy_file, "[[rule]]\nid = \"oops\"\n").expect("write");
    assert!(gw.handle.reload_file(&gw.policy_file).is_err());
    let out = sdk_call(
        "create",
        &gw.base,
        Some(&gw.intern_token),
        &[("SG_PROMPT", "y")],
    )
    .await;
    assert_eq!(out["ok"], true, "{out}");
}
