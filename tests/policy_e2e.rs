//! Policy through the HTTP stack with the official Python SDK.

mod support;

use serde_json::Value;
use skillgate::audit::Verdict;
use support::gateway::TestGateway;
use support::python::sdk_call;
use support::stand_in::{StandIn, reply_text_for};

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
    gw: TestGateway,
    ci_token: String,
    intern_token: String,
    policy_file: std::path::PathBuf,
    handle: skillgate::policy::PolicyHandle,
}

async fn start(up: &StandIn) -> Gw {
    start_with(up, Engine::Rules).await
}

async fn start_with(up: &StandIn, engine: Engine) -> Gw {
    let gw = TestGateway::start(up, |cfg, dir| {
        let file = match engine {
            Engine::Rules => {
                let f = dir.join("policy.toml");
                std::fs::write(&f, POLICY).expect("policy");
                f
            }
            #[cfg(feature = "cedar")]
            Engine::Cedar => {
                let f = dir.join("policy.cedar");
                std::fs::write(&f, CEDAR_POLICY).expect("policy");
                let c = dir.join("cedar-context.toml");
                std::fs::write(&c, CEDAR_CONTEXT).expect("context");
                cfg.policy.engine = skillgate::gateway::PolicyEngineKind::Cedar;
                cfg.policy.context = Some(c);
                f
            }
        };
        cfg.policy.file = Some(file);
        cfg.policy.watch_interval_secs = 0;
    })
    .await;
    Gw {
        ci_token: gw.token("nightly-report", &["ci"]),
        intern_token: gw.token("intern-bot", &["interns"]),
        policy_file: gw.dir.path().join(match engine {
            Engine::Rules => "policy.toml",
            #[cfg(feature = "cedar")]
            Engine::Cedar => "policy.cedar",
        }),
        handle: gw.policy.clone().expect("policy handle"),
        gw,
    }
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
        &gw.gw.base_url,
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
        &gw.gw.base_url,
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
        &gw.gw.base_url,
        Some(&gw.intern_token),
        &[("SG_MAX_RETRIES", "2")],
    )
    .await;
    assert_denied(&out, "default");

    // Approval required, but no approval channel: refused, never forwarded; the
    // keyword itself is not echoed.
    let out = sdk_call(
        "stream",
        &gw.gw.base_url,
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
    let recs = gw.gw.records(4).await;
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
    let out = sdk_call("create", &gw.gw.base_url, Some(&gw.intern_token), &[]).await;
    assert_denied(&out, "default");
    std::fs::write(&gw.policy_file, format!("{POLICY}\n[[rule]]\nid = \"interns-too\"\neffect = \"allow\"\nmatch = {{ groups = \"interns\" }}\n"))
        .expect("write");
    gw.handle.reload_file(&gw.policy_file).expect("reload");
    let out = sdk_call(
        "create",
        &gw.gw.base_url,
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
        &gw.gw.base_url,
        Some(&gw.intern_token),
        &[("SG_PROMPT", "y")],
    )
    .await;
    assert_eq!(out["ok"], true, "{out}");
}
