//! The webhook channel: [`WebhookSink`] posts each approval request as
//! signed JSON to a bridge (Slack, Teams, a ticket system) with signed
//! approve/deny callback URLs; [`WebhookCallbacks`] checks the callbacks.
//!
//! Both directions are signed with HMAC-SHA256 over
//! `"{timestamp}.{nonce}.{body}"` with the shared secret, sent as
//! `skillgate-timestamp` (Unix seconds), `skillgate-nonce` (16–128
//! characters of `[A-Za-z0-9_-]`) and `skillgate-signature: v1=<hex>`.
//! A callback is accepted only with a valid URL signature (binding approval
//! id, verdict and expiry), a valid body signature, a timestamp within
//! [`MAX_SKEW`] of the gateway's clock and a nonce never seen before (kept in
//! the [`ApprovalStore`](super::ApprovalStore), so shared across instances).
//! See `docs/approvals.md` for the payload schema.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use jiff::Timestamp;
use serde::Deserialize;
use sha2::Sha256;
use uuid::Uuid;

use super::hub::{ApprovalError, Approvals};
use super::sink::{ApprovalSink, SinkError};
use super::types::{ApprovalRequest, ApprovalVerdict};
use crate::body::Body;
use crate::error::{ErrorType, error_response};
use crate::identity::Principal;

/// Largest difference between a callback's timestamp and the gateway clock.
pub const MAX_SKEW: Duration = Duration::from_secs(300);
/// Header carrying the Unix time of signing.
pub const TIMESTAMP_HEADER: &str = "skillgate-timestamp";
/// Header carrying the single-use nonce.
pub const NONCE_HEADER: &str = "skillgate-nonce";
/// Header carrying `v1=<hex HMAC-SHA256>`.
pub const SIGNATURE_HEADER: &str = "skillgate-signature";

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length.
    match HmacSha256::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts any key length"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The `skillgate-signature` value for a message: `v1=` and the hex
/// HMAC-SHA256 of `"{timestamp}.{nonce}.{body}"` under `secret`.
///
/// ```
/// let s = skillgate::approval::webhook::signature(b"secret", 1764496800, "n0nce-0123456789", b"{}");
/// assert!(s.starts_with("v1=") && s.len() == 3 + 64);
/// ```
pub fn signature(secret: &[u8], timestamp: i64, nonce: &str, body: &[u8]) -> String {
    let mut m = mac(secret);
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(nonce.as_bytes());
    m.update(b".");
    m.update(body);
    format!("v1={}", hex(&m.finalize().into_bytes()))
}

fn url_mac(secret: &[u8], id: Uuid, verdict: ApprovalVerdict, exp: i64) -> HmacSha256 {
    let mut m = mac(secret);
    m.update(format!("callback.{id}.{}.{exp}", verdict.as_str()).as_bytes());
    m
}

fn fresh_nonce() -> String {
    let mut b = [0u8; 16];
    if getrandom::getrandom(&mut b).is_err() {
        // Unique anyway: the nonce only needs to be unused, not secret.
        return Uuid::now_v7().simple().to_string();
    }
    hex(&b)
}

/// Checks signed callbacks; see the [module docs](self). Made by
/// [`WebhookSink::callbacks`] or from the secret alone.
///
/// ```
/// use skillgate::approval::webhook::WebhookCallbacks;
/// let cb = WebhookCallbacks::new(b"a shared secret of 32 bytes or more".to_vec(), "https://gw.example");
/// let url = cb.callback_url(uuid::Uuid::nil(), skillgate::approval::ApprovalVerdict::Approve, 1764496800);
/// assert!(url.starts_with("https://gw.example/approvals/callback/00000000-0000-0000-0000-000000000000/approve?exp=1764496800&sig="));
/// ```
#[derive(Clone)]
pub struct WebhookCallbacks {
    secret: Arc<[u8]>,
    public_url: Arc<str>,
}

impl std::fmt::Debug for WebhookCallbacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookCallbacks")
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallbackBody {
    approver: CallbackApprover,
    #[serde(default)]
    reason: String,
    grant_secs: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallbackApprover {
    issuer: String,
    subject: String,
    #[serde(default)]
    groups: Vec<String>,
}

fn unauthorized(msg: &str) -> Response<Body> {
    error_response(
        StatusCode::UNAUTHORIZED,
        ErrorType::Authentication,
        msg,
        false,
    )
}

impl WebhookCallbacks {
    /// Callbacks signed with `secret`, served at `public_url` (the gateway's
    /// external base URL, e.g. `https://ai-gateway.corp`).
    pub fn new(secret: Vec<u8>, public_url: impl Into<String>) -> Self {
        WebhookCallbacks {
            secret: secret.into(),
            public_url: public_url.into().trim_end_matches('/').into(),
        }
    }

    /// The signed callback URL for deciding `id` with `verdict`, valid
    /// until `exp` (Unix seconds).
    pub fn callback_url(&self, id: Uuid, verdict: ApprovalVerdict, exp: i64) -> String {
        let sig = hex(&url_mac(&self.secret, id, verdict, exp)
            .finalize()
            .into_bytes());
        format!(
            "{}/approvals/callback/{id}/{}?exp={exp}&sig={sig}",
            self.public_url,
            verdict.as_str()
        )
    }

    /// Verifies and applies one callback; answers the bridge.
    pub(crate) async fn handle(
        &self,
        approvals: &Approvals,
        id: Uuid,
        verdict: ApprovalVerdict,
        query: &str,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Response<Body> {
        let mut exp = None;
        let mut sig = None;
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "exp" => exp = v.parse::<i64>().ok(),
                "sig" => sig = unhex(&v),
                _ => {}
            }
        }
        let (Some(exp), Some(sig)) = (exp, sig) else {
            return unauthorized("callback URL is not signed");
        };
        if url_mac(&self.secret, id, verdict, exp)
            .verify_slice(&sig)
            .is_err()
        {
            return unauthorized("callback URL signature does not verify");
        }
        let now = Timestamp::now().as_second();
        if now > exp {
            return unauthorized("callback URL has expired");
        }
        let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let (Some(ts), Some(nonce), Some(body_sig)) =
            (h(TIMESTAMP_HEADER), h(NONCE_HEADER), h(SIGNATURE_HEADER))
        else {
            return unauthorized("callback is not signed");
        };
        let Ok(ts) = ts.parse::<i64>() else {
            return unauthorized("bad callback timestamp");
        };
        if !(16..=128).contains(&nonce.len())
            || !nonce
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return unauthorized("bad callback nonce");
        }
        let Some(given) = body_sig.strip_prefix("v1=").and_then(unhex) else {
            return unauthorized("bad callback signature");
        };
        let mut m = mac(&self.secret);
        m.update(format!("{ts}.{nonce}.").as_bytes());
        m.update(body);
        if m.verify_slice(&given).is_err() {
            return unauthorized("callback signature does not verify");
        }
        if (now - ts).unsigned_abs() > MAX_SKEW.as_secs() {
            return unauthorized("callback timestamp is too old or in the future");
        }
        let keep_until =
            Timestamp::from_second(ts + 2 * MAX_SKEW.as_secs() as i64).unwrap_or(Timestamp::MAX);
        match approvals.store().use_nonce(nonce, keep_until).await {
            Ok(true) => {}
            Ok(false) => return unauthorized("callback nonce was already used"),
            Err(_) => return crate::error::Error::ApprovalUnavailable.into_response(),
        }
        let cb: CallbackBody = match serde_json::from_slice(body) {
            Ok(b) => b,
            Err(_) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    ErrorType::InvalidRequest,
                    "callback body must be {\"approver\":{\"issuer\",\"subject\",\"groups\"},\"reason\",\"grant_secs\"?}",
                    false,
                );
            }
        };
        if cb.approver.issuer.is_empty() || cb.approver.subject.is_empty() {
            return error_response(
                StatusCode::BAD_REQUEST,
                ErrorType::InvalidRequest,
                "callback approver needs an issuer and a subject",
                false,
            );
        }
        let approver =
            Principal::new(cb.approver.issuer, cb.approver.subject).with_groups(cb.approver.groups);
        let grant = match verdict {
            ApprovalVerdict::Approve => cb.grant_secs.map(Duration::from_secs),
            ApprovalVerdict::Deny => None,
        };
        match approvals
            .decide(id, &approver, verdict, &cb.reason, grant)
            .await
        {
            Ok(state) => {
                let mut res = Response::new(Body::from(
                    serde_json::to_vec(&serde_json::json!({
                        "approval_id": id,
                        "status": state.status.as_str(),
                    }))
                    .unwrap_or_default(),
                ));
                res.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                res
            }
            Err(e) => {
                let status =
                    StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let kind = match e {
                    ApprovalError::NotAnApprover(_) | ApprovalError::SelfApproval => {
                        ErrorType::Permission
                    }
                    ApprovalError::NotFound => ErrorType::NotFound,
                    ApprovalError::Unavailable | ApprovalError::AuditUnavailable => ErrorType::Api,
                    _ => ErrorType::InvalidRequest,
                };
                error_response(status, kind, &e.to_string(), e.status() == 503)
            }
        }
    }
}

/// Posts every new approval request to a webhook; see the
/// [module docs](self) and `docs/approvals.md` for the payload.
///
/// ```
/// use skillgate::approval::webhook::WebhookSink;
/// let sink = WebhookSink::new("https://bridge.example/skillgate", b"a shared secret of 32 bytes or more".to_vec(), "https://gw.example").unwrap();
/// let callbacks = sink.callbacks(); // give to ApprovalApiLayer::webhook_callbacks
/// # let _ = callbacks;
/// ```
#[derive(Clone)]
pub struct WebhookSink {
    url: http::Uri,
    callbacks: WebhookCallbacks,
    client: crate::http_client::HttpsClient,
}

impl std::fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSink")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Why a [`WebhookSink`] could not be made.
///
/// ```
/// use skillgate::approval::webhook::WebhookSink;
/// assert!(WebhookSink::new("not a url", b"0123456789abcdef0123456789abcdef".to_vec(), "https://gw").is_err());
/// assert!(WebhookSink::new("https://b.example", b"short".to_vec(), "https://gw").is_err());
/// ```
#[derive(Debug, thiserror::Error)]
#[error("webhook: {0}")]
pub struct WebhookError(String);

/// Shortest webhook secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

impl WebhookSink {
    /// Posts to `url` (http or https), signing with `secret` (at least
    /// [`MIN_SECRET_BYTES`]); callback URLs point at `public_url`.
    ///
    /// # Errors
    /// A bad URL, a short secret, or no TLS roots on the machine.
    pub fn new(
        url: &str,
        secret: Vec<u8>,
        public_url: impl Into<String>,
    ) -> Result<Self, WebhookError> {
        let uri: http::Uri = url
            .parse()
            .map_err(|_| WebhookError("invalid webhook URL".into()))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(WebhookError("webhook URL must be http(s)://host/…".into()));
        }
        if secret.len() < MIN_SECRET_BYTES {
            return Err(WebhookError(format!(
                "webhook secret must be at least {MIN_SECRET_BYTES} bytes"
            )));
        }
        let client = crate::http_client::https_client().map_err(|e| WebhookError(e.to_string()))?;
        Ok(WebhookSink {
            url: uri,
            callbacks: WebhookCallbacks::new(secret, public_url),
            client,
        })
    }

    /// The matching callback checker.
    pub fn callbacks(&self) -> WebhookCallbacks {
        self.callbacks.clone()
    }

    /// The JSON payload posted for `request`.
    pub fn payload(&self, request: &ApprovalRequest) -> serde_json::Value {
        let exp = request.expires_at.as_second();
        serde_json::json!({
            "type": "approval.requested",
            "request": request,
            "callbacks": {
                "approve": self.callbacks.callback_url(request.id, ApprovalVerdict::Approve, exp),
                "deny": self.callbacks.callback_url(request.id, ApprovalVerdict::Deny, exp),
            },
        })
    }
}

#[async_trait::async_trait]
impl ApprovalSink for WebhookSink {
    async fn notify(&self, request: &ApprovalRequest) -> Result<(), SinkError> {
        let body = serde_json::to_vec(&self.payload(request))
            .map_err(|e| SinkError(format!("payload: {e}")))?;
        let ts = Timestamp::now().as_second();
        let nonce = fresh_nonce();
        let sig = signature(&self.callbacks.secret, ts, &nonce, &body);
        let req = Request::post(self.url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, ts.to_string())
            .header(NONCE_HEADER, nonce)
            .header(SIGNATURE_HEADER, sig)
            .body(Body::from(body))
            .map_err(|e| SinkError(e.to_string()))?;
        let res = tokio::time::timeout(Duration::from_secs(10), self.client.request(req))
            .await
            .map_err(|_| SinkError("webhook timed out".into()))?
            .map_err(|e| SinkError(format!("webhook unreachable: {e}")))?;
        if !res.status().is_success() {
            return Err(SinkError(format!("webhook answered {}", res.status())));
        }
        Ok(())
    }
}
