//! An `AuditStore` of your own: every record is forwarded to your own
//! system — here as JSON lines to a writer (a file, a socket, a log
//! shipper's stdin) — and the recent ones are kept for queries.
//!
//! ```text
//! cargo run --example custom_audit_store -- --demo   # one exchange against the local stand-in; prints the JSON lines
//! ```
//!
//! The contract (see `skillgate::audit::AuditStore`): `record_request` must be
//! durable when it returns `Ok` — the gateway forwards only after it; an
//! `Err` makes the gateway refuse the request (`503`, fail closed).

#[path = "../tests/support/stand_in.rs"]
#[allow(dead_code)]
mod stand_in;

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use skillgate::audit::{
    AuditError, AuditEvent, AuditQuery, AuditRecord, AuditStore, RequestRecord, ResponseRecord,
};
use uuid::Uuid;

/// Forwards records as JSON lines to `W` and keeps the newest `keep` in memory.
pub struct ForwardingStore<W> {
    out: Mutex<W>,
    keep: usize,
    recent: Mutex<VecDeque<AuditRecord>>,
    events: Mutex<VecDeque<AuditEvent>>,
}

impl<W: Write + Send + 'static> ForwardingStore<W> {
    /// Forwards to `out`, keeping `keep` records for queries.
    pub fn new(out: W, keep: usize) -> Self {
        ForwardingStore {
            out: Mutex::new(out),
            keep,
            recent: Mutex::new(VecDeque::new()),
            events: Mutex::new(VecDeque::new()),
        }
    }

    fn emit(&self, kind: &str, value: impl serde::Serialize) -> Result<(), AuditError> {
        let line = serde_json::json!({ "kind": kind, "record": value });
        let mut out = self
            .out
            .lock()
            .map_err(|_| AuditError::Unavailable("writer poisoned".into()))?;
        // A write error is an Err: the gateway then refuses instead of forwarding unrecorded.
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(|e| AuditError::Unavailable(e.to_string()))
    }
}

#[async_trait]
impl<W: Write + Send + 'static> AuditStore for ForwardingStore<W> {
    async fn record_request(&self, r: &RequestRecord) -> Result<(), AuditError> {
        self.emit("request", r)?;
        let mut recent = self
            .recent
            .lock()
            .map_err(|_| AuditError::Unavailable("poisoned".into()))?;
        recent.push_front(AuditRecord {
            request: r.clone(),
            response: None,
        });
        recent.truncate(self.keep);
        Ok(())
    }

    async fn record_response(&self, r: &ResponseRecord) -> Result<(), AuditError> {
        self.emit("response", r)?;
        let mut recent = self
            .recent
            .lock()
            .map_err(|_| AuditError::Unavailable("poisoned".into()))?;
        if let Some(rec) = recent.iter_mut().find(|x| x.request.id == r.id) {
            rec.response = Some(r.clone());
        }
        Ok(())
    }

    async fn get(&self, id: Uuid) -> Result<Option<AuditRecord>, AuditError> {
        let recent = self
            .recent
            .lock()
            .map_err(|_| AuditError::Unavailable("poisoned".into()))?;
        Ok(recent.iter().find(|x| x.request.id == id).cloned())
    }

    async fn recent(&self, limit: usize) -> Result<Vec<AuditRecord>, AuditError> {
        let recent = self
            .recent
            .lock()
            .map_err(|_| AuditError::Unavailable("poisoned".into()))?;
        Ok(recent.iter().take(limit).cloned().collect())
    }

    async fn query(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>, AuditError> {
        let recent = self
            .recent
            .lock()
            .map_err(|_| AuditError::Unavailable("poisoned".into()))?;
        // The reference semantics, over what is kept in memory (newest first).
        Ok(recent
            .iter()
            .filter(|r| q.matches(r))
            .take(q.limit)
            .cloned()
            .collect())
    }

    async fn record_event(&self, e: &AuditEvent) -> Result<(), AuditError> {
        self.emit("event", e)?;
        let mut events = self
            .events
            .lock()
            .map_err(|_| AuditError::Unavailable("poisoned".into()))?;
        events.push_front(e.clone());
        events.truncate(self.keep);
        Ok(())
    }

    async fn recent_events(&self, limit: usize) -> Result<Vec<AuditEvent>, AuditError> {
        let events = self
            .events
            .lock()
            .map_err(|_| AuditError::Unavailable("poisoned".into()))?;
        Ok(events.iter().take(limit).cloned().collect())
    }
}

/// A `Write` into shared memory, so the demo can show what was forwarded.
#[derive(Clone, Default)]
pub struct SharedBuf(pub Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One exchange through a gateway that uses the store; returns the JSON lines forwarded.
pub async fn demo() -> Result<Vec<serde_json::Value>, String> {
    use skillgate::identity::dev::{DevIssuer, MintOptions};
    use skillgate::upstream::{Credential, StaticCredential, Upstream};
    use tower::ServiceExt;

    let api = stand_in::StandIn::start().await;
    let buf = SharedBuf::default();
    let store = Arc::new(ForwardingStore::new(buf.clone(), 1000));
    let dev = DevIssuer::ephemeral();
    let gateway = skillgate::gateway::Gateway::builder()
        .verifier(dev.verifier("skillgate"))
        .audit_store_arc(store.clone())
        .build()
        .map_err(|e| e.to_string())?;
    let upstream = Upstream::builder(api.base_url())
        .credential(StaticCredential::new(Credential::api_key(
            stand_in::STAND_IN_API_KEY,
        )))
        .build()
        .map_err(|e| e.to_string())?;
    let token = dev
        .mint(&MintOptions::new("audited-skill"))
        .map_err(|e| e.to_string())?;
    let body = r#"{"model":"claude-sonnet-5","max_tokens":16,"messages":[{"role":"user","content":"record me"}]}"#;
    let req = http::Request::post("/v1/messages")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01")
        .header("content-length", body.len())
        .body(skillgate::Body::from(body))
        .map_err(|e| e.to_string())?;
    let Ok(res) = gateway.service(upstream).oneshot(req).await;
    let status = res.status();
    // Reading the body to its end completes the record.
    let _ = http_body_util::BodyExt::collect(res.into_body()).await;
    if status != 200 {
        return Err(format!("gateway answered {status}"));
    }
    for _ in 0..200 {
        let lines: Vec<serde_json::Value> =
            String::from_utf8_lossy(&buf.0.lock().map_err(|_| "poisoned")?)
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
        if lines.iter().any(|l| l["kind"] == "response") {
            return Ok(lines);
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    Err("no response record was forwarded".into())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    if !std::env::args().any(|a| a == "--demo") {
        eprintln!("usage: custom_audit_store --demo");
        return std::process::ExitCode::from(2);
    }
    match demo().await {
        Ok(lines) => {
            lines.iter().for_each(|l| println!("{l}"));
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}
