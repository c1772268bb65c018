//! What one audited exchange looks like: [`RequestRecord`], [`ResponseRecord`], [`AuditRecord`].

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::identity::Principal;

/// The gateway's verdict on a request, as recorded.
///
/// ```
/// use skillgate::audit::Verdict;
/// assert_eq!(Verdict::Deny.as_str(), "deny");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Forwarded upstream.
    Allow,
    /// Refused by the gateway.
    Deny,
}

impl Verdict {
    /// `"allow"` or `"deny"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        }
    }

    /// Parses `"allow"` / `"deny"`.
    pub fn parse(s: &str) -> Option<Verdict> {
        match s {
            "allow" => Some(Verdict::Allow),
            "deny" => Some(Verdict::Deny),
            _ => None,
        }
    }
}

/// The decision attached to a record: verdict, the layer's reason, and the
/// ids of the rules that matched (empty until a policy layer sets them).
///
/// ```
/// use skillgate::audit::{DecisionRecord, Verdict};
/// let d = DecisionRecord::deny("authentication: token expired");
/// assert_eq!(d.verdict, Verdict::Deny);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// Allow or deny.
    pub verdict: Verdict,
    /// Why, in words for the audit reader (never a secret or matched value).
    pub reason: Option<String>,
    /// Ids of the rules that matched.
    pub rules: Vec<String>,
}

impl DecisionRecord {
    /// An allow with no reason.
    pub fn allow() -> Self {
        DecisionRecord {
            verdict: Verdict::Allow,
            reason: None,
            rules: Vec::new(),
        }
    }

    /// A deny with `reason`.
    pub fn deny(reason: impl Into<String>) -> Self {
        DecisionRecord {
            verdict: Verdict::Deny,
            reason: Some(reason.into()),
            rules: Vec::new(),
        }
    }
}

/// The request half of an exchange, written before the request goes upstream
/// (or, for a request the gateway refused, when the refusal is sent).
///
/// ```
/// use skillgate::audit::{DecisionRecord, RequestRecord};
/// let r = RequestRecord::new("POST", "/v1/messages", DecisionRecord::allow());
/// assert_eq!(r.method, "POST");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// The exchange id (UUID v7, time-ordered).
    pub id: Uuid,
    /// When the gateway received the request (µs precision).
    pub received_at: jiff::Timestamp,
    /// Which gateway instance handled it.
    pub instance: String,
    /// The verified caller, if identity succeeded.
    pub principal: Option<Principal>,
    /// HTTP method.
    pub method: String,
    /// Path and query string, e.g. `/v1/messages?beta=true`.
    pub path: String,
    /// The Messages `model`, if the body named one.
    pub model: Option<String>,
    /// Whether the body asked for `"stream": true`.
    pub stream: bool,
    /// The gateway's decision.
    pub decision: DecisionRecord,
    /// The request body as forwarded (or as received, when refused).
    #[serde(with = "bytes_as_text")]
    pub body: Bytes,
    /// The request body as received from the caller, encrypted, when the
    /// audit layer has a raw-body key ([`AuditLayer::raw_body_key`](crate::audit::AuditLayer::raw_body_key)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_body: Option<super::EncryptedBody>,
}

impl RequestRecord {
    /// A record with a fresh id, received now, no principal and an empty body.
    pub fn new(method: &str, path: &str, decision: DecisionRecord) -> Self {
        RequestRecord {
            id: Uuid::now_v7(),
            received_at: jiff::Timestamp::now(),
            instance: String::new(),
            principal: None,
            method: method.into(),
            path: path.into(),
            model: None,
            stream: false,
            decision,
            body: Bytes::new(),
            raw_body: None,
        }
    }
}

/// The response half, written when the response body ends or is dropped.
///
/// ```
/// use skillgate::audit::ResponseRecord;
/// let r = ResponseRecord::new(uuid::Uuid::now_v7(), 200);
/// assert!(r.complete);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseRecord {
    /// The exchange id, as in the [`RequestRecord`].
    pub id: Uuid,
    /// When the last byte went to the client (or the client went away).
    pub completed_at: jiff::Timestamp,
    /// HTTP status sent to the client.
    pub status: u16,
    /// The upstream's `request-id` header.
    pub upstream_request_id: Option<String>,
    /// The response body as delivered to the client (for SSE, the event stream).
    #[serde(with = "bytes_as_text")]
    pub body: Bytes,
    /// `true` when `body` was cut at the capture limit.
    pub body_truncated: bool,
    /// For SSE responses: the text the client received, reassembled from `text_delta` events.
    pub text: Option<String>,
    /// `usage` from the response (input/output tokens), if present.
    pub usage: Option<serde_json::Value>,
    /// `false` when the client disconnected or the stream broke before the end.
    pub complete: bool,
    /// From request received to response headers, in µs.
    pub ttfb_us: u64,
    /// From request received to the end of the response body, in µs.
    pub latency_us: u64,
    /// What redaction found and masked in this exchange (entity type, count,
    /// JSON path — never the value). Empty when nothing was found or no
    /// redaction layer ran.
    #[serde(default)]
    pub findings: Vec<Finding>,
    /// When each chunk of the response body went to the client, for
    /// [`replay`](crate::audit::replay) with the original timing. At most
    /// [`MAX_CHUNK_TIMINGS`] entries (later chunks are not timed). Empty
    /// for records written before timing was kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<ChunkTiming>,
    /// The response as received from upstream (before redaction), encrypted,
    /// when the audit layer has a raw-body key and a layer supplied it
    /// ([`AuditHandle::set_raw_response_body`](crate::audit::AuditHandle::set_raw_response_body)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_body: Option<super::EncryptedBody>,
}

/// Most [`ChunkTiming`] entries a [`ResponseRecord`] keeps (4096; a long
/// stream's later chunks are replayed together at the end).
pub const MAX_CHUNK_TIMINGS: usize = 4096;

/// When one chunk (one body frame) of a response was handed to the client.
///
/// ```
/// use skillgate::audit::ChunkTiming;
/// let c = ChunkTiming { offset_bytes: 0, at_us: 1_250 };
/// assert_eq!(serde_json::to_string(&c).unwrap(), r#"{"offset_bytes":0,"at_us":1250}"#);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkTiming {
    /// Where the chunk starts in the body as delivered, in bytes.
    pub offset_bytes: u64,
    /// When it was handed on, in µs since the request was received (same
    /// origin as [`ResponseRecord::ttfb_us`]).
    pub at_us: u64,
}

impl ResponseRecord {
    /// A complete, empty-bodied record for `id` with `status`, completed now.
    pub fn new(id: Uuid, status: u16) -> Self {
        ResponseRecord {
            id,
            completed_at: jiff::Timestamp::now(),
            status,
            upstream_request_id: None,
            body: Bytes::new(),
            body_truncated: false,
            text: None,
            usage: None,
            complete: true,
            ttfb_us: 0,
            latency_us: 0,
            findings: Vec::new(),
            chunks: Vec::new(),
            raw_body: None,
        }
    }
}

/// One kind of sensitive value found (and masked) at one place of an
/// exchange. Carries no part of the value itself.
///
/// `path` is where it was found: `request` or `response`, then a JSON
/// Pointer (RFC 6901) into the Messages body, e.g.
/// `response/content/0/text` or `request/messages/2/content/0/text`.
///
/// ```
/// use skillgate::audit::Finding;
/// let f = Finding::new("CREDIT_CARD", 2, "response/content/0/text");
/// assert_eq!(f.count, 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Finding {
    /// The entity type, e.g. `CREDIT_CARD`, `US_SSN`, `EMAIL_ADDRESS`.
    pub entity_type: String,
    /// How many values of this type were found at `path`.
    pub count: u64,
    /// Where: `request/…` or `response/…` followed by a JSON Pointer.
    pub path: String,
}

impl Finding {
    /// A finding of `count` values of `entity_type` at `path`.
    pub fn new(entity_type: impl Into<String>, count: u64, path: impl Into<String>) -> Self {
        Finding {
            entity_type: entity_type.into(),
            count,
            path: path.into(),
        }
    }
}

/// Something that happened outside the request/response pair of one
/// exchange but belongs in the audit trail: an approval asked for, granted,
/// denied or timed out, a grant created or revoked, a checkpoint written.
///
/// `kind` is a dotted name, e.g. `approval.requested`, `approval.approved`,
/// `approval.denied`, `approval.timed_out`, `approval.cancelled`,
/// `grant.created`, `grant.revoked`. `detail` holds the kind's own fields
/// as a JSON object (never a secret, a token or an unmasked prompt).
///
/// ```
/// use skillgate::audit::AuditEvent;
/// let e = AuditEvent::new("approval.requested", serde_json::json!({"rule": "restricted-words"}));
/// assert_eq!(e.kind, "approval.requested");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Event id (UUID v7, time-ordered).
    pub id: Uuid,
    /// When it happened (µs precision).
    pub time: jiff::Timestamp,
    /// Which gateway instance wrote it.
    pub instance: String,
    /// Dotted event kind, see the type docs.
    pub kind: String,
    /// The exchange it concerns, if any.
    pub exchange_id: Option<Uuid>,
    /// Who acted (an approver, an administrator), if anyone.
    pub actor: Option<Principal>,
    /// The kind's own fields, a JSON object.
    pub detail: serde_json::Value,
}

impl AuditEvent {
    /// An event of `kind` happening now, with a fresh id, no exchange and no actor.
    pub fn new(kind: impl Into<String>, detail: serde_json::Value) -> Self {
        AuditEvent {
            id: Uuid::now_v7(),
            time: jiff::Timestamp::now(),
            instance: String::new(),
            kind: kind.into(),
            exchange_id: None,
            actor: None,
            detail,
        }
    }
}

/// A whole exchange as read back from a store.
///
/// ```
/// use skillgate::audit::{AuditRecord, DecisionRecord, RequestRecord};
/// let rec = AuditRecord { request: RequestRecord::new("GET", "/v1/models", DecisionRecord::allow()), response: None };
/// assert!(!rec.is_complete());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The request half.
    pub request: RequestRecord,
    /// The response half; `None` while in flight, or if the gateway died mid-exchange.
    pub response: Option<ResponseRecord>,
}

impl AuditRecord {
    /// Whether the response was recorded and delivered whole.
    pub fn is_complete(&self) -> bool {
        self.response.as_ref().is_some_and(|r| r.complete)
    }
}

/// Bodies are stored as UTF-8 text when they are (JSON, SSE), else base64.
mod bytes_as_text {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Text(String),
        Binary { base64: String },
    }

    pub fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(b) {
            Ok(t) => Repr::Text(t.to_owned()),
            Err(_) => Repr::Binary {
                base64: STANDARD.encode(b),
            },
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        match Repr::deserialize(d)? {
            Repr::Text(t) => Ok(Bytes::from(t)),
            Repr::Binary { base64 } => STANDARD
                .decode(base64)
                .map(Bytes::from)
                .map_err(serde::de::Error::custom),
        }
    }
}
