//! OCSF 1.8.0 API Activity (`class_uid` 6003, `category_uid` 6) with the
//! `ai_operation` profile (`ai_model`, `message_context` token counts).
//!
//! Required attributes of class 6003 in OCSF 1.8.0 — `activity_id`,
//! `category_uid`, `class_uid`, `type_uid`, `severity_id`, `time`,
//! `metadata` (`product`, `version`), `actor`, `api` (`operation`),
//! `src_endpoint` — are set on every event, including refused requests and
//! requests without a principal. The table is in `docs/audit.md`.
//!
//! ```
//! use skillgate::audit::{AuditRecord, DecisionRecord, RequestRecord};
//! use skillgate::audit::export::{ExportOptions, ocsf};
//!
//! let mut req = RequestRecord::new("POST", "/v1/messages", DecisionRecord::deny("policy: no rule allows"));
//! req.model = Some("claude-sonnet-4-5".into());
//! let ev = ocsf::api_activity(&AuditRecord { request: req, response: None }, &ExportOptions::default());
//! assert_eq!(ev["type_uid"], 600301); // API Activity: Create
//! assert_eq!(ev["ai_model"]["name"], "claude-sonnet-4-5");
//! assert_eq!(ev["status_id"], 2); // Failure: the gateway refused it
//! ```

use serde_json::{Map, Value, json};

use super::{ExportOptions, Tokens, body_text, epoch_ms, error_of, operation, split_target};
use crate::audit::{AuditRecord, Verdict};

/// The OCSF schema version the events follow.
pub const OCSF_VERSION: &str = "1.8.0";
/// `class_uid` of API Activity.
pub const CLASS_UID: u32 = 6003;
/// `category_uid` of Application Activity.
pub const CATEGORY_UID: u32 = 6;

/// `activity_id` for an HTTP method: `POST` 1 (Create), `GET`/`HEAD` 2
/// (Read), `PUT`/`PATCH` 3 (Update), `DELETE` 4 (Delete), others 99 (Other).
///
/// ```
/// assert_eq!(skillgate::audit::export::ocsf::activity_id("DELETE"), 4);
/// ```
pub fn activity_id(method: &str) -> u32 {
    match method {
        "POST" => 1,
        "GET" | "HEAD" => 2,
        "PUT" | "PATCH" => 3,
        "DELETE" => 4,
        _ => 99,
    }
}

fn activity_name(id: u32) -> &'static str {
    match id {
        1 => "Create",
        2 => "Read",
        3 => "Update",
        4 => "Delete",
        _ => "Other",
    }
}

/// Maps one exchange to an OCSF API Activity event (a JSON object).
///
/// `time` is when the request was received (ms since the Unix epoch);
/// `status_id` is 1 (Success) for an allowed exchange answered below 400,
/// 2 (Failure) for a refusal or an error status, 0 (Unknown) while no
/// response is recorded. `severity_id` is 1 (Informational) for a success,
/// 3 (Medium) for a refusal, 2 (Low) for an upstream error or an
/// incomplete exchange. Bodies appear in `api.request.data` /
/// `api.response.data` only with [`ExportOptions::include_bodies`].
pub fn api_activity(record: &AuditRecord, options: &ExportOptions) -> Value {
    let req = &record.request;
    let resp = record.response.as_ref();
    let activity = activity_id(&req.method);
    let denied = req.decision.verdict == Verdict::Deny;
    let (status_id, status) = match resp {
        _ if denied => (2, "Failure"),
        Some(r) if r.status < 400 => (1, "Success"),
        Some(_) => (2, "Failure"),
        None => (0, "Unknown"),
    };
    let severity_id = if denied {
        3
    } else if status_id == 1 && record.is_complete() {
        1
    } else {
        2
    };
    let severity = match severity_id {
        1 => "Informational",
        2 => "Low",
        _ => "Medium",
    };
    let (path, query) = split_target(&req.path);

    let mut ev = Map::new();
    ev.insert("activity_id".into(), json!(activity));
    ev.insert("activity_name".into(), json!(activity_name(activity)));
    ev.insert("category_uid".into(), json!(CATEGORY_UID));
    ev.insert("category_name".into(), json!("Application Activity"));
    ev.insert("class_uid".into(), json!(CLASS_UID));
    ev.insert("class_name".into(), json!("API Activity"));
    ev.insert("type_uid".into(), json!(CLASS_UID * 100 + activity));
    ev.insert(
        "type_name".into(),
        json!(format!("API Activity: {}", activity_name(activity))),
    );
    ev.insert("time".into(), json!(epoch_ms(req.received_at)));
    ev.insert("start_time".into(), json!(epoch_ms(req.received_at)));
    ev.insert("severity_id".into(), json!(severity_id));
    ev.insert("severity".into(), json!(severity));
    ev.insert("status_id".into(), json!(status_id));
    ev.insert("status".into(), json!(status));
    if let Some(r) = resp {
        ev.insert("end_time".into(), json!(epoch_ms(r.completed_at)));
        ev.insert("duration".into(), json!(r.latency_us / 1000));
        ev.insert("status_code".into(), json!(r.status.to_string()));
    }
    if let Some(reason) = &req.decision.reason {
        ev.insert("status_detail".into(), json!(reason));
    }
    ev.insert(
        "message".into(),
        json!(format!(
            "{} {} {}{}",
            req.decision.verdict.as_str(),
            req.method,
            path,
            resp.map(|r| format!(" -> {}", r.status))
                .unwrap_or_default()
        )),
    );

    let mut profiles = vec![];
    if req.model.is_some() {
        profiles.push("ai_operation");
    }
    ev.insert(
        "metadata".into(),
        json!({
            "version": OCSF_VERSION,
            "product": {
                "name": "skillgate",
                "vendor_name": "skillgate",
                "version": env!("CARGO_PKG_VERSION"),
            },
            "uid": req.id.to_string(),
            "log_name": "skillgate-audit",
            "profiles": profiles,
            "correlation_uid": resp.and_then(|r| r.upstream_request_id.clone()),
        }),
    );

    let actor = match &req.principal {
        Some(p) => {
            let mut user = json!({
                "uid": p.subject,
                "name": p.subject,
                "type_id": 3, // System (a machine identity)
                "type": "System",
                "groups": p.groups.iter().map(|g| json!({"name": g})).collect::<Vec<_>>(),
            });
            if let Some(c) = &p.client_id {
                user["credential_uid"] = json!(c);
            }
            let mut actor = json!({ "user": user, "idp": { "name": p.issuer, "uid": p.issuer } });
            if let Some(c) = &p.client_id {
                actor["app_uid"] = json!(c);
            }
            actor
        }
        // No verified principal: the caller is unknown. OCSF requires an
        // actor with at least one of user/app/process/session.
        None => json!({ "user": { "name": "unauthenticated", "type_id": 0, "type": "Unknown" } }),
    };
    ev.insert("actor".into(), actor);

    let mut api = json!({
        "operation": operation(&req.method, &req.path),
        "service": { "name": "Anthropic API" },
        "request": { "uid": req.id.to_string() },
    });
    if let Some(r) = resp {
        let mut response = json!({ "code": r.status });
        if let Some((ty, msg)) = error_of(r) {
            response["error"] = json!(ty);
            response["error_message"] = json!(msg);
        }
        api["response"] = response;
    }
    if options.include_bodies {
        api["request"]["data"] = json!(body_text(&req.body));
        if let Some(r) = resp {
            api["response"]["data"] = json!(body_text(&r.body));
        }
    }
    ev.insert("api".into(), api);

    // The client address is not recorded yet; the authenticated subject
    // names the source (OCSF needs one of ip/uid/name/hostname…).
    let src_name = req
        .principal
        .as_ref()
        .map(|p| p.subject.clone())
        .unwrap_or_else(|| "unknown".into());
    ev.insert("src_endpoint".into(), json!({ "name": src_name }));
    ev.insert(
        "dst_endpoint".into(),
        json!({ "name": req.instance, "svc_name": "skillgate" }),
    );

    let mut url = json!({ "path": path, "url_string": req.path });
    if let Some(q) = query {
        url["query_string"] = json!(q);
    }
    ev.insert(
        "http_request".into(),
        json!({ "http_method": req.method, "url": url, "length": req.body.len() }),
    );
    if let Some(r) = resp {
        ev.insert(
            "http_response".into(),
            json!({
                "code": r.status,
                "latency": r.latency_us / 1000,
                "length": r.body.len(),
                "content_type": if req.stream { "text/event-stream" } else { "application/json" },
            }),
        );
    }

    if let Some(model) = &req.model {
        ev.insert(
            "ai_model".into(),
            json!({ "name": model, "ai_provider": "Anthropic" }),
        );
    }
    if let Some(t) = resp.and_then(Tokens::from_response) {
        ev.insert(
            "message_context".into(),
            json!({
                "service": { "name": "Anthropic API" },
                "prompt_tokens": t.input,
                "completion_tokens": t.output,
                "total_tokens": t.total(),
            }),
        );
    }

    let mut sg = json!({
        "exchange_id": req.id.to_string(),
        "instance": req.instance,
        "decision": {
            "verdict": req.decision.verdict.as_str(),
            "reason": req.decision.reason,
            "rules": req.decision.rules,
        },
        "stream": req.stream,
        "received_at": req.received_at.to_string(),
    });
    if let Some(p) = &req.principal {
        sg["issuer"] = json!(p.issuer);
        sg["scopes"] = json!(p.scopes);
    }
    if let Some(r) = resp {
        sg["complete"] = json!(r.complete);
        sg["body_truncated"] = json!(r.body_truncated);
        sg["ttfb_us"] = json!(r.ttfb_us);
        sg["latency_us"] = json!(r.latency_us);
        sg["completed_at"] = json!(r.completed_at.to_string());
        if let Some(u) = &r.usage {
            sg["usage"] = u.clone();
        }
        if !r.findings.is_empty() {
            sg["findings"] = json!(r.findings);
        }
    }
    ev.insert("unmapped".into(), json!({ "skillgate": sg }));
    Value::Object(ev)
}
