//! Human approval through the HTTP stack with the official Python SDK: the
//! held request, approval, denial, timeout, grants, self-approval, N of M.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
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

[[rule]]
id = "payroll"
effect = "require_approval"
reason = "payroll needs two people"
match = { keywords = "payroll" }
approvers = ["secops", "finance"]
approvals_required = 2
"#;

async fn gateway(upstream: &StandIn, timeout_secs: u64) -> TestGateway {
    TestGateway::start(upstream, |cfg, dir| {
        let file = dir.join("policy.toml");
        std::fs::write(&file, POLICY).expect("write policy");
        cfg.policy.file = Some(file);
        cfg.approval.enabled = true;
        cfg.approval.timeout_secs = timeout_secs;
    })
    .await
}

/// The approver API.
struct Approver<'a> {
    gw: &'a TestGateway,
    token: String,
    http: reqwest::Client,
}

impl<'a> Approver<'a> {
    fn new(gw: &'a TestGateway, sub: &str, groups: &[&str]) -> Self {
        Approver {
            gw,
            token: gw.token(sub, groups),
            http: reqwest::Client::new(),
        }
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}/approvals/api{path}", self.gw.base_url))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("approver GET");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/approvals/api{path}", self.gw.base_url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("approver POST");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// Waits until a pending request with `rule` shows up; returns it.
    async fn pending(&self, rule: &str) -> Value {
        for _ in 0..600 {
            let (status, v) = self.get("/requests").await;
            assert_eq!(status, 200, "{v}");
            if let Some(s) = v["data"]
                .as_array()
                .and_then(|a| a.iter().find(|s| s["request"]["rule"] == rule))
            {
                return s.clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no pending approval for rule {rule}");
    }
}

fn held_call(
    gw: &TestGateway,
    token: String,
    prompt: &'static str,
) -> tokio::task::JoinHandle<Value> {
    let base = gw.base_url.clone();
    tokio::spawn(async move {
        sdk_call(
            "create",
            &base,
            Some(&token),
            &[("SG_PROMPT", prompt), ("SG_TIMEOUT", "120")],
        )
        .await
    })
}

async fn events(gw: &TestGateway) -> Vec<skillgate::audit::AuditEvent> {
    gw.audit.recent_events(200).await.expect("events")
}

#[tokio::test]
async fn approved_request_completes_and_self_approval_is_refused() {
    let upstream = StandIn::start().await;
    let gw = gateway(&upstream, 60).await;
    let prompt = "Prepare the customer export for bob@corp.example, account 12345678.";
    let call = held_call(&gw, gw.token("nightly-job", &["ci"]), prompt);
    let alice = Approver::new(&gw, "alice", &["secops"]);
    let pending = alice.pending("customer-export").await;
    let r = &pending["request"];
    let id = r["id"].as_str().unwrap().to_owned();
    // Nothing reached the model while waiting.
    assert!(upstream.received().is_empty());
    // The preview is masked; the digest is of the forwarded body.
    let preview = r["preview"].as_str().unwrap();
    assert!(preview.contains("customer export"), "{preview}");
    assert!(
        !preview.contains("bob@corp.example") && !preview.contains("12345678"),
        "{preview}"
    );
    assert_eq!(r["approvers"], json!(["secops"]));
    assert!(r["principal"].as_str().unwrap().ends_with("#nightly-job"));

    // The caller itself (even in the approver group) cannot approve.
    let me = Approver::new(&gw, "nightly-job", &["ci", "secops"]);
    let (status, v) = me
        .post(
            &format!("/requests/{id}/approve"),
            json!({"reason": "mine"}),
        )
        .await;
    assert_eq!(status, 403, "{v}");
    assert_eq!(v["error"]["type"], "permission_error");
    // Someone outside the approver groups cannot either, nor see it.
    let eve = Approver::new(&gw, "eve", &["ci"]);
    let (status, _) = eve
        .post(&format!("/requests/{id}/approve"), json!({"reason": "x"}))
        .await;
    assert_eq!(status, 403);
    let (_, v) = eve.get("/requests").await;
    assert_eq!(v["data"], json!([]));
    // No token: 401.
    let r = reqwest::get(format!("{}/approvals/api/requests", gw.base_url))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let (status, v) = alice
        .post(
            &format!("/requests/{id}/approve"),
            json!({"reason": "ticket OPS-1"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "approved");
    let out = call.await.unwrap();
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(out["text"], reply_text_for(prompt));
    assert_eq!(upstream.received().len(), 1);
    // Deciding again: no longer pending.
    let (status, _) = alice
        .post(&format!("/requests/{id}/deny"), json!({"reason": "late"}))
        .await;
    assert_eq!(status, 409);

    let recs = gw.records(1).await;
    assert_eq!(
        recs[0].request.decision.verdict,
        skillgate::audit::Verdict::Allow
    );
    let ev = events(&gw).await;
    let kinds: Vec<&str> = ev.iter().map(|e| e.kind.as_str()).collect();
    assert!(
        kinds.contains(&"approval.requested") && kinds.contains(&"approval.approved"),
        "{kinds:?}"
    );
    let approved = ev.iter().find(|e| e.kind == "approval.approved").unwrap();
    assert!(approved.actor.as_ref().unwrap().subject == "alice");
    for e in &ev {
        let d = e.detail.to_string();
        assert!(
            !d.contains("bob@corp.example") && !d.contains("12345678"),
            "unmasked prompt in {d}"
        );
    }
}

#[tokio::test]
async fn denial_and_timeout_raise_permission_denied_with_the_reason() {
    let upstream = StandIn::start().await;
    let gw = gateway(&upstream, 60).await;
    let call = held_call(
        &gw,
        gw.token("job-a", &["ci"]),
        "run the customer export now",
    );
    let bob = Approver::new(&gw, "bob", &["secops"]);
    let id = bob.pending("customer-export").await["request"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, v) = bob
        .post(&format!("/requests/{id}/deny"), json!({"reason": ""}))
        .await;
    assert_eq!(status, 400, "a denial needs a reason: {v}");
    let (status, _) = bob
        .post(
            &format!("/requests/{id}/deny"),
            json!({"reason": "not during the freeze"}),
        )
        .await;
    assert_eq!(status, 200);
    let out = call.await.unwrap();
    assert_eq!(out["error_class"], "PermissionDeniedError", "{out}");
    assert_eq!(out["status"], 403);
    assert!(
        out["api_message"]
            .as_str()
            .unwrap()
            .contains("not during the freeze"),
        "{out}"
    );
    assert!(upstream.received().is_empty());

    let quick = gateway(&upstream, 2).await;
    let out = sdk_call(
        "create",
        &quick.base_url,
        Some(&quick.token("job-b", &["ci"])),
        &[
            ("SG_PROMPT", "the customer export please"),
            ("SG_MAX_RETRIES", "2"),
        ],
    )
    .await;
    assert_eq!(out["error_class"], "PermissionDeniedError", "{out}");
    assert!(
        out["api_message"].as_str().unwrap().contains("timed out"),
        "{out}"
    );
    assert!(upstream.received().is_empty());
    let kinds: Vec<String> = events(&quick).await.into_iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds.iter().filter(|k| *k == "approval.timed_out").count(),
        1,
        "not retried: {kinds:?}"
    );
    let kinds: Vec<String> = events(&gw).await.into_iter().map(|e| e.kind).collect();
    assert!(kinds.contains(&"approval.denied".to_owned()), "{kinds:?}");
}

#[tokio::test]
async fn a_grant_lets_the_next_call_through_until_revoked() {
    let upstream = StandIn::start().await;
    let gw = gateway(&upstream, 60).await;
    let token = gw.token("export-job", &["ci"]);
    let alice = Approver::new(&gw, "alice", &["secops"]);
    let call = held_call(&gw, token.clone(), "customer export, run 1");
    let id = alice.pending("customer-export").await["request"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, v) = alice
        .post(
            &format!("/requests/{id}/approve"),
            json!({"reason": "nightly", "grant_secs": 3600}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(call.await.unwrap()["ok"], true);
    let (_, grants) = alice.get("/grants").await;
    let grants = grants["data"].as_array().unwrap().clone();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0]["rule"], "customer-export");

    // Within the window: through at once, nobody asked.
    let out = sdk_call(
        "create",
        &gw.base_url,
        Some(&token),
        &[("SG_PROMPT", "customer export, run 2")],
    )
    .await;
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(upstream.received().len(), 2);
    // Another principal is not covered.
    let other = held_call(
        &gw,
        gw.token("other-job", &["ci"]),
        "customer export, other",
    );
    let oid = alice.pending("customer-export").await["request"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    alice
        .post(&format!("/requests/{oid}/deny"), json!({"reason": "no"}))
        .await;
    assert_eq!(other.await.unwrap()["status"], 403);

    // Revoked: the next call waits again.
    let gid = grants[0]["id"].as_str().unwrap();
    let (status, _) = alice
        .post(&format!("/grants/{gid}/revoke"), json!({}))
        .await;
    assert_eq!(status, 200);
    let (_, after) = alice.get("/grants").await;
    assert_eq!(after["data"], json!([]));
    let call = held_call(&gw, token.clone(), "customer export, run 3");
    let id = alice.pending("customer-export").await["request"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    alice
        .post(
            &format!("/requests/{id}/deny"),
            json!({"reason": "grant revoked"}),
        )
        .await;
    assert_eq!(call.await.unwrap()["status"], 403);
    let kinds: Vec<String> = events(&gw).await.into_iter().map(|e| e.kind).collect();
    assert!(
        kinds.contains(&"grant.created".to_owned()) && kinds.contains(&"grant.revoked".to_owned()),
        "{kinds:?}"
    );
}

#[tokio::test]
async fn two_of_m_needs_two_distinct_approvers() {
    let upstream = StandIn::start().await;
    let gw = gateway(&upstream, 60).await;
    let call = held_call(&gw, gw.token("payroll-job", &["ci"]), "compute the payroll");
    let alice = Approver::new(&gw, "alice", &["secops"]);
    let carol = Approver::new(&gw, "carol", &["finance"]);
    let id = alice.pending("payroll").await["request"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, v) = alice
        .post(&format!("/requests/{id}/approve"), json!({"reason": "ok"}))
        .await;
    assert_eq!(v["status"], "pending");
    let (status, _) = alice
        .post(
            &format!("/requests/{id}/approve"),
            json!({"reason": "again"}),
        )
        .await;
    assert_eq!(status, 409, "the same approver counts once");
    assert!(upstream.received().is_empty());
    let (_, v) = carol
        .post(
            &format!("/requests/{id}/approve"),
            json!({"reason": "ok too"}),
        )
        .await;
    assert_eq!(v["status"], "approved");
    assert_eq!(call.await.unwrap()["ok"], true);
}

#[tokio::test]
async fn a_caller_that_leaves_cancels_its_approval() {
    let upstream = StandIn::start().await;
    let gw = gateway(&upstream, 60).await;
    let token = gw.token("leaver", &["ci"]);
    let http = reqwest::Client::new();
    let req = http
        .post(format!("{}/v1/messages", gw.base_url))
        .bearer_auth(&token)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "customer export"}]}))
        .timeout(Duration::from_millis(1500))
        .send();
    let alice = Approver::new(&gw, "alice", &["secops"]);
    let (res, pending) = tokio::join!(req, alice.pending("customer-export"));
    assert!(res.is_err(), "the client gave up");
    let id = pending["request"]["id"].as_str().unwrap().to_owned();
    // The store is closed first, then the event written: wait for both.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        let (_, v) = alice.get(&format!("/requests/{id}")).await;
        let kinds: Vec<String> = events(&gw).await.into_iter().map(|e| e.kind).collect();
        if v["status"] == "cancelled" && kinds.contains(&"approval.cancelled".to_owned()) {
            assert!(upstream.received().is_empty());
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("approval not cancelled");
}
