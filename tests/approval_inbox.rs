//! The approvals inbox page in headless Chromium (playwright-core): the
//! pending request appears with its masked preview, and the Approve click
//! releases the held Python SDK call.

mod support;

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use support::gateway::TestGateway;
use support::python::sdk_call;
use support::stand_in::{StandIn, reply_text_for};

const POLICY: &str = r#"
[[rule]]
id = "ci-messages"
effect = "allow"
match = { groups = "ci", paths = ["/v1/messages"] }

[[rule]]
id = "customer-export"
effect = "require_approval"
reason = "prompts about customer exports need a human"
match = { keywords = "customer export" }
approvers = ["secops"]
"#;

#[tokio::test]
async fn approving_in_the_inbox_releases_the_held_sdk_call() {
    let upstream = StandIn::start().await;
    let gw = TestGateway::start(&upstream, |cfg, dir| {
        let file = dir.join("policy.toml");
        std::fs::write(&file, POLICY).unwrap();
        cfg.policy.file = Some(file);
        cfg.approval.enabled = true;
    })
    .await;
    // A prompt whose preview must be shown as text, not markup.
    let prompt = "customer export <img src=x onerror=alert(1)> for ann@corp.example";
    let call = {
        let base = gw.base_url.clone();
        let token = gw.token("nightly-job", &["ci"]);
        tokio::spawn(async move {
            sdk_call(
                "create",
                &base,
                Some(&token),
                &[("SG_PROMPT", prompt), ("SG_TIMEOUT", "120")],
            )
            .await
        })
    };
    let shot = gw.dir.path().join("inbox.png");
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(support::oidc::node())
            .arg(support::repo_dir().join("tests/node/inbox.mjs"))
            .env("SG_INBOX_URL", format!("{}/approvals/", gw.base_url))
            .env("SG_APPROVER_TOKEN", gw.token("alice", &["secops"]))
            .env("SG_RULE", "customer-export")
            .env("SG_REASON", "ticket OPS-7")
            .env("SG_SCREENSHOT", &shot)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("inbox.mjs finished")
    .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no output; stderr: {stderr}"));
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}\n{stderr}"));
    assert_eq!(v["ok"], true, "{v}\n{stderr}");
    assert_eq!(v["rule"], "customer-export");
    let preview = v["preview"].as_str().unwrap();
    assert!(
        preview.contains("<img src=x onerror=alert(1)>"),
        "shown as text: {preview}"
    );
    assert!(!preview.contains("ann@corp.example"), "masked: {preview}");
    assert!(
        v["preview_html"].as_str().unwrap().contains("&lt;img"),
        "escaped, never parsed: {v}"
    );
    assert_eq!(
        v["console_errors"],
        serde_json::json!([]),
        "no CSP violations"
    );
    assert!(v["csp"].as_str().unwrap().starts_with("default-src 'self'"));
    assert_eq!(v["frame_options"], "DENY");
    let png = std::fs::read(&shot).expect("screenshot written");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    let out = call.await.unwrap();
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(out["text"], reply_text_for(prompt));
    let events = gw.audit.recent_events(50).await.unwrap();
    let approved = events
        .iter()
        .find(|e| e.kind == "approval.approved")
        .expect("approval recorded");
    assert_eq!(approved.detail["reason"], "ticket OPS-7");
}
