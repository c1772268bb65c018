//! An `ApprovalSink` of your own: every request that needs a human is
//! announced to your own system — here a "ticket queue" (an async channel
//! standing for Jira, ServiceNow or a chat bot) — and a decision made there
//! comes back through `Approvals::decide`, authenticated as the approver.
//!
//! ```text
//! cargo run --example custom_approval_sink -- --demo   # one held request, approved from the ticket queue
//! ```
//!
//! The contract (see `skillgate::approval::ApprovalSink`): `notify` is called
//! once per new request, before the caller starts waiting, and gets the
//! masked request (rule, principal, body digest, masked preview, expiry) —
//! never the prompt itself. It must return quickly (the gateway bounds each
//! call at 10 s); an `Err` is logged and the request stays listed in the
//! inbox, so a broken channel never approves anything.

#[path = "../tests/support/stand_in.rs"]
#[allow(dead_code)]
mod stand_in;

use async_trait::async_trait;
use skillgate::approval::{
    ApprovalRequest, ApprovalSink, ApprovalState, ApprovalStatus, SinkError,
};
use tokio::sync::mpsc;

/// A ticket as the ticket system stores it: only masked, non-secret fields.
#[derive(Debug, Clone)]
pub struct Ticket {
    /// The approval id to decide on.
    pub approval_id: uuid::Uuid,
    /// Title shown to the approver.
    pub title: String,
    /// The masked prompt preview.
    pub body: String,
}

/// Opens a ticket per approval request and closes it when the request is resolved.
pub struct TicketSink {
    queue: mpsc::Sender<Ticket>,
    closed: mpsc::Sender<(uuid::Uuid, ApprovalStatus)>,
}

#[async_trait]
impl ApprovalSink for TicketSink {
    async fn notify(&self, r: &ApprovalRequest) -> Result<(), SinkError> {
        let ticket = Ticket {
            approval_id: r.id,
            title: format!(
                "{} asks to pass rule {} (body sha256 {})",
                r.principal, r.rule, r.body_sha256
            ),
            body: r.preview.clone(),
        };
        // A full queue is a delivery failure, not a silent drop.
        self.queue
            .try_send(ticket)
            .map_err(|e| SinkError(format!("ticket queue: {e}")))
    }

    async fn resolved(&self, state: &ApprovalState) -> Result<(), SinkError> {
        self.closed
            .try_send((state.request.id, state.status))
            .map_err(|e| SinkError(format!("ticket queue: {e}")))
    }
}

/// A gateway whose policy holds prompts about payroll for the `finance-leads`
/// group; the ticket queue's approver approves; returns what happened.
pub async fn demo() -> Result<Vec<String>, String> {
    use std::sync::Arc;
    use std::time::Duration;

    use skillgate::approval::{ApprovalVerdict, Approvals};
    use skillgate::identity::Principal;
    use skillgate::identity::dev::{DevIssuer, MintOptions};
    use skillgate::policy::{PolicyLayer, RulesPolicy};
    use skillgate::upstream::{Credential, StaticCredential, Upstream};
    use tower::ServiceExt;

    let api = stand_in::StandIn::start().await;
    let store = Arc::new(
        skillgate::audit::SqliteStore::in_memory()
            .await
            .map_err(|e| e.to_string())?,
    );
    let policy = RulesPolicy::from_toml(
        r#"
[[rule]]
id = "payroll-needs-a-human"
effect = "require_approval"
reason = "prompts about payroll need a finance lead"
approvers = ["finance-leads"]
match = { keywords = ["payroll"] }

[[rule]]
id = "everyone"
effect = "allow"
"#,
        "demo-policy.toml",
    )
    .map_err(|e| e.to_string())?;

    let (queue, mut tickets) = mpsc::channel(16);
    let (closed, mut closed_rx) = mpsc::channel(16);
    let approvals = Approvals::builder()
        .sink(TicketSink { queue, closed })
        .audit_store(store.clone())
        .timeout(Duration::from_secs(30))
        .build();

    let dev = DevIssuer::ephemeral();
    let gateway = skillgate::gateway::Gateway::builder()
        .verifier(dev.verifier("skillgate"))
        .audit_store_arc(store.clone())
        .policy(PolicyLayer::new(policy))
        .approvals(approvals.clone())
        .build()
        .map_err(|e| e.to_string())?;
    let upstream = Upstream::builder(api.base_url())
        .credential(StaticCredential::new(Credential::api_key(
            stand_in::STAND_IN_API_KEY,
        )))
        .build()
        .map_err(|e| e.to_string())?;
    let token = dev
        .mint(&MintOptions::new("payroll-skill"))
        .map_err(|e| e.to_string())?;
    let body = r#"{"model":"claude-sonnet-5","max_tokens":16,"messages":[{"role":"user","content":"summarise the payroll run for card 4111 1111 1111 1111"}]}"#;
    let req = http::Request::post("/v1/messages")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01")
        .header("content-length", body.len())
        .body(skillgate::Body::from(body))
        .map_err(|e| e.to_string())?;
    let held = tokio::spawn(gateway.service(upstream).oneshot(req));

    let mut seen = Vec::new();
    // The ticket system's side: a finance lead reads the ticket and approves.
    let ticket = tokio::time::timeout(Duration::from_secs(20), tickets.recv())
        .await
        .map_err(|_| "no ticket was opened")?
        .ok_or("ticket queue closed")?;
    if ticket.body.contains("4111 1111 1111 1111") {
        return Err("the ticket carries an unmasked card number".into());
    }
    seen.push(format!("ticket: {}", ticket.title));
    let lead = Principal::new("https://idp.example.com", "dana").with_groups(["finance-leads"]);
    approvals
        .decide(
            ticket.approval_id,
            &lead,
            ApprovalVerdict::Approve,
            "monthly run, expected",
            None,
        )
        .await
        .map_err(|e| e.to_string())?;

    let Ok(res) = held.await.map_err(|e| e.to_string())?;
    let status = res.status();
    let answer = http_body_util::BodyExt::collect(res.into_body())
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    seen.push(format!("held request -> {status}"));
    if status != 200 {
        return Err(format!(
            "gateway answered {status}: {}",
            String::from_utf8_lossy(&answer)
        ));
    }
    let (id, outcome) = tokio::time::timeout(Duration::from_secs(5), closed_rx.recv())
        .await
        .map_err(|_| "the ticket was never closed")?
        .ok_or("ticket queue closed")?;
    if id != ticket.approval_id {
        return Err("a different ticket was closed".into());
    }
    seen.push(format!("ticket closed: {outcome:?}"));
    Ok(seen)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    if !std::env::args().any(|a| a == "--demo") {
        eprintln!("usage: custom_approval_sink --demo");
        return std::process::ExitCode::from(2);
    }
    match demo().await {
        Ok(lines) => {
            for l in lines {
                println!("{l}");
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("demo failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
