//! Elastic Common Schema (ECS 9.x) events, with the `gen_ai.*` fields for
//! the model and token usage.
//!
//! ```
//! use skillgate::audit::{AuditRecord, DecisionRecord, RequestRecord, ResponseRecord};
//! use skillgate::audit::export::{ExportOptions, ecs};
//!
//! let req = RequestRecord::new("POST", "/v1/messages?beta=true", DecisionRecord::allow());
//! let mut resp = ResponseRecord::new(req.id, 200);
//! resp.usage = Some(serde_json::json!({"input_tokens": 12, "output_tokens": 30}));
//! let ev = ecs::event(&AuditRecord { request: req, response: Some(resp) }, &ExportOptions::default());
//! assert_eq!(ev["event"]["outcome"], "success");
//! assert_eq!(ev["url"]["query"], "beta=true");
//! assert_eq!(ev["gen_ai"]["usage"]["output_tokens"], 30);
//! ```

use serde_json::{Value, json};

use super::{ExportOptions, Tokens, body_text, error_of, operation, split_target};
use crate::audit::{AuditRecord, Verdict};

/// The ECS version the events declare in `ecs.version`.
pub const ECS_VERSION: &str = "9.0.0";

/// Maps one exchange to an ECS event (a JSON object).
///
/// `@timestamp` is when the request was received (RFC 3339, µs);
/// `event.outcome` is `success` for an allowed exchange answered below 400,
/// `failure` for a refusal or an error status, `unknown` while no response
/// is recorded; `event.duration` is in nanoseconds. Bodies appear in
/// `http.request.body.content` / `http.response.body.content` only with
/// [`ExportOptions::include_bodies`].
pub fn event(record: &AuditRecord, options: &ExportOptions) -> Value {
    let req = &record.request;
    let resp = record.response.as_ref();
    let denied = req.decision.verdict == Verdict::Deny;
    let outcome = match resp {
        _ if denied => "failure",
        Some(r) if r.status < 400 => "success",
        Some(_) => "failure",
        None => "unknown",
    };
    let (path, query) = split_target(&req.path);

    let mut event = json!({
        "kind": "event",
        "category": ["api", "web"],
        "type": if denied { json!(["access", "denied"]) } else { json!(["access", "allowed"]) },
        "action": operation(&req.method, &req.path),
        "outcome": outcome,
        "id": req.id.to_string(),
        "start": req.received_at.to_string(),
        "dataset": "skillgate.audit",
        "module": "skillgate",
        "provider": "skillgate",
        "severity": if denied { 3 } else if outcome == "success" { 1 } else { 2 },
    });
    if let Some(reason) = &req.decision.reason {
        event["reason"] = json!(reason);
    }
    if let Some(r) = resp {
        event["end"] = json!(r.completed_at.to_string());
        event["duration"] = json!(r.latency_us.saturating_mul(1000));
    }

    let mut http = json!({
        "request": {
            "method": req.method,
            "id": req.id.to_string(),
            "body": { "bytes": req.body.len() },
        },
    });
    if let Some(r) = resp {
        http["response"] = json!({
            "status_code": r.status,
            "body": { "bytes": r.body.len() },
            "mime_type": if req.stream { "text/event-stream" } else { "application/json" },
        });
    }
    if options.include_bodies {
        http["request"]["body"]["content"] = json!(body_text(&req.body));
        if let Some(r) = resp {
            http["response"]["body"]["content"] = json!(body_text(&r.body));
        }
    }

    let mut url = json!({ "path": path, "original": req.path });
    if let Some(q) = query {
        url["query"] = json!(q);
    }

    let mut ev = json!({
        "@timestamp": req.received_at.to_string(),
        "ecs": { "version": ECS_VERSION },
        "message": format!(
            "{} {} {}{}",
            req.decision.verdict.as_str(),
            req.method,
            path,
            resp.map(|r| format!(" -> {}", r.status)).unwrap_or_default()
        ),
        "event": event,
        "http": http,
        "url": url,
        "service": { "name": "skillgate", "type": "gateway", "node": { "name": req.instance } },
        "observer": { "product": "skillgate", "vendor": "skillgate", "type": "proxy",
                      "version": env!("CARGO_PKG_VERSION") },
        "labels": { "stream": req.stream.to_string() },
    });
    if let Some(p) = &req.principal {
        let mut user = json!({ "id": p.subject, "name": p.subject, "domain": p.issuer });
        if !p.groups.is_empty() {
            user["roles"] = json!(p.groups);
        }
        ev["user"] = user;
        if let Some(c) = &p.client_id {
            ev["client"] = json!({ "user": { "id": c } });
        }
    }
    if !req.decision.rules.is_empty() {
        ev["rule"] = json!({ "id": req.decision.rules, "name": req.decision.rules });
    }
    if let Some(r) = resp {
        if let Some((ty, msg)) = error_of(r) {
            ev["error"] = json!({ "type": ty, "message": msg });
        }
        if let Some(id) = &r.upstream_request_id {
            ev["trace"] = json!({ "id": id });
            ev["labels"]["upstream_request_id"] = json!(id);
        }
    }
    if req.model.is_some() || resp.and_then(Tokens::from_response).is_some() {
        let mut gen_ai = json!({ "system": "anthropic", "operation": { "name": "chat" } });
        if let Some(m) = &req.model {
            gen_ai["request"] = json!({ "model": m });
        }
        if let Some(t) = resp.and_then(Tokens::from_response) {
            gen_ai["usage"] = json!({ "input_tokens": t.input, "output_tokens": t.output });
        }
        ev["gen_ai"] = gen_ai;
    }

    let mut sg = json!({
        "decision": { "verdict": req.decision.verdict.as_str(), "rules": req.decision.rules },
    });
    if let Some(r) = resp {
        sg["complete"] = json!(r.complete);
        sg["body_truncated"] = json!(r.body_truncated);
        sg["ttfb_us"] = json!(r.ttfb_us);
        if let Some(t) = Tokens::from_response(r) {
            sg["usage"] = json!({
                "cache_creation_input_tokens": t.cache_creation,
                "cache_read_input_tokens": t.cache_read,
            });
        }
        if !r.findings.is_empty() {
            sg["findings"] = json!(r.findings);
        }
    }
    ev["skillgate"] = sg;
    ev
}
