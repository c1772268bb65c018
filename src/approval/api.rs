//! The approver HTTP API and the approvals inbox page:
//! [`ApprovalApiLayer`].

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use serde::Deserialize;
use tower::{Layer, Service};
use uuid::Uuid;

use super::hub::{ApprovalError, Approvals};
use super::types::ApprovalVerdict;
use super::webhook::WebhookCallbacks;
use crate::body::{Body, collect_limited};
use crate::error::{ErrorType, error_response};
use crate::identity::{Principal, ResponseFuture, TokenVerifier};

/// The path prefix everything approval-related is served under.
pub const APPROVALS_PATH: &str = "/approvals";
/// Largest approver API request body, in bytes.
const MAX_API_BODY: usize = 16 * 1024;

const INBOX_HTML: &str = include_str!("inbox/index.html");
const INBOX_JS: &str = include_str!("inbox/inbox.js");
const INBOX_CSS: &str = include_str!("inbox/inbox.css");

/// Serves the approver API and inbox under `/approvals/`, and passes every
/// other request to the inner service. Put it outside the gateway stack (as
/// [`Gateway::service`](crate::gateway::Gateway::service) does): approver
/// requests are not Claude requests.
///
/// Approvers authenticate with `Authorization: Bearer <token>`, verified by
/// the same [`TokenVerifier`] as callers; what they may see and decide
/// follows the rules' approver groups ([`Approvals::decide`]).
///
/// | Method and path | Does |
/// |---|---|
/// | `GET /approvals/` | the inbox page (HTML; its JS and CSS beside it) |
/// | `GET /approvals/api/requests` | pending requests this approver may decide |
/// | `GET /approvals/api/requests/{id}` | one request with its decisions |
/// | `POST /approvals/api/requests/{id}/approve` | `{"reason": "…", "grant_secs": 3600}` (grant optional) |
/// | `POST /approvals/api/requests/{id}/deny` | `{"reason": "…"}` (reason required) |
/// | `GET /approvals/api/grants` | active grants of this approver's rules |
/// | `POST /approvals/api/grants/{id}/revoke` | revokes a grant |
/// | `POST /approvals/callback/{id}/{approve\|deny}` | signed webhook callback ([`WebhookCallbacks`]) |
///
/// Errors are Anthropic-shaped JSON (`401` no or bad token, `403` not an
/// approver or self-approval, `404`, `409` no longer pending, `400` bad input,
/// `503` store down). Every answer carries `Cache-Control: no-store` and
/// strict security headers (CSP `default-src 'self'`, `X-Frame-Options: DENY`).
///
/// ```
/// use std::sync::Arc;
/// use skillgate::approval::{ApprovalApiLayer, Approvals};
/// use skillgate::identity::dev::DevIssuer;
/// let verifier = Arc::new(DevIssuer::ephemeral().verifier("skillgate"));
/// let layer = ApprovalApiLayer::new(Approvals::builder().build(), verifier);
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct ApprovalApiLayer {
    approvals: Approvals,
    verifier: Arc<dyn TokenVerifier>,
    callbacks: Option<WebhookCallbacks>,
}

impl std::fmt::Debug for ApprovalApiLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApprovalApiLayer")
            .field("approvals", &self.approvals)
            .finish_non_exhaustive()
    }
}

impl ApprovalApiLayer {
    /// Serves `approvals` to approvers verified by `verifier`.
    pub fn new(approvals: Approvals, verifier: Arc<dyn TokenVerifier>) -> Self {
        ApprovalApiLayer {
            approvals,
            verifier,
            callbacks: None,
        }
    }

    /// Also accepts signed webhook callbacks.
    pub fn webhook_callbacks(mut self, callbacks: WebhookCallbacks) -> Self {
        self.callbacks = Some(callbacks);
        self
    }
}

impl<S> Layer<S> for ApprovalApiLayer {
    type Service = ApprovalApi<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ApprovalApi {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`ApprovalApiLayer`].
#[derive(Clone)]
pub struct ApprovalApi<S> {
    inner: S,
    layer: ApprovalApiLayer,
}

impl<S> std::fmt::Debug for ApprovalApi<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApprovalApi").finish_non_exhaustive()
    }
}

fn is_approvals_path(path: &str) -> bool {
    path == APPROVALS_PATH
        || path
            .strip_prefix(APPROVALS_PATH)
            .is_some_and(|r| r.starts_with('/'))
}

fn secure(mut res: Response<Body>) -> Response<Body> {
    let h = res.headers_mut();
    for (name, value) in [
        (
            "content-security-policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    res
}

fn asset(content_type: &'static str, body: &'static str) -> Response<Body> {
    let mut res = Response::new(Body::from(Bytes::from_static(body.as_bytes())));
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}

fn json(status: StatusCode, v: &serde_json::Value) -> Response<Body> {
    let mut res = Response::new(Body::from(serde_json::to_vec(v).unwrap_or_default()));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

fn fail(e: &ApprovalError) -> Response<Body> {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let kind = match e.status() {
        403 => ErrorType::Permission,
        404 => ErrorType::NotFound,
        503 => ErrorType::Api,
        _ => ErrorType::InvalidRequest,
    };
    error_response(status, kind, &e.to_string(), e.status() == 503)
}

fn not_found() -> Response<Body> {
    fail(&ApprovalError::NotFound)
}

fn bearer(req: &Request<Body>) -> Option<&str> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideBody {
    #[serde(default)]
    reason: String,
    grant_secs: Option<u64>,
}

impl<S> Service<Request<Body>> for ApprovalApi<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        if !is_approvals_path(req.uri().path()) {
            let fut = self.inner.call(req);
            return Box::pin(fut);
        }
        let layer = self.layer.clone();
        Box::pin(async move { Ok(secure(handle(layer, req).await)) })
    }
}

async fn handle(layer: ApprovalApiLayer, req: Request<Body>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let rest = path.strip_prefix(APPROVALS_PATH).unwrap_or("");
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let method = req.method().clone();
    // Static assets: no authentication (they hold no data).
    match (&method, segments.as_slice()) {
        (&Method::GET, []) => {
            if rest.is_empty() {
                let mut res = Response::new(Body::empty());
                *res.status_mut() = StatusCode::PERMANENT_REDIRECT;
                res.headers_mut()
                    .insert(header::LOCATION, HeaderValue::from_static("/approvals/"));
                return res;
            }
            return asset("text/html; charset=utf-8", INBOX_HTML);
        }
        (&Method::GET, ["inbox.js"]) => return asset("text/javascript; charset=utf-8", INBOX_JS),
        (&Method::GET, ["inbox.css"]) => return asset("text/css; charset=utf-8", INBOX_CSS),
        (&Method::GET, ["favicon.ico"]) => {
            let mut res = Response::new(Body::empty());
            *res.status_mut() = StatusCode::NO_CONTENT;
            return res;
        }
        (&Method::POST, ["callback", id, verdict]) => {
            let Some(cb) = &layer.callbacks else {
                return not_found();
            };
            let (Ok(id), Some(verdict)) = (Uuid::parse_str(id), parse_verdict(verdict)) else {
                return not_found();
            };
            let query = req.uri().query().unwrap_or("").to_owned();
            let headers = req.headers().clone();
            let body = match collect_limited(req.into_body(), MAX_API_BODY).await {
                Ok(b) => b,
                Err(_) => return fail(&ApprovalError::Invalid("body too large".into())),
            };
            return cb
                .handle(&layer.approvals, id, verdict, &query, &headers, &body)
                .await;
        }
        _ => {}
    }
    if segments.first() != Some(&"api") {
        return not_found();
    }
    let Some(token) = bearer(&req) else {
        return crate::error::Error::Unauthenticated.into_response();
    };
    let approver: Principal = match layer.verifier.verify(token).await {
        Ok(p) => p,
        Err(_) => return crate::error::Error::Unauthenticated.into_response(),
    };
    let hub = &layer.approvals;
    match (&method, &segments[1..]) {
        (&Method::GET, ["requests"]) => match hub.pending_for(&approver).await {
            Ok(list) => json(
                StatusCode::OK,
                &serde_json::json!({"data": list, "approver": approver.id()}),
            ),
            Err(e) => fail(&e),
        },
        (&Method::GET, ["requests", id]) => {
            let Ok(id) = Uuid::parse_str(id) else {
                return not_found();
            };
            match hub.get_for(id, &approver).await {
                Ok(s) => json(StatusCode::OK, &serde_json::json!(s)),
                Err(e) => fail(&e),
            }
        }
        (&Method::POST, ["requests", id, verdict]) => {
            let (Ok(id), Some(verdict)) = (Uuid::parse_str(id), parse_verdict(verdict)) else {
                return not_found();
            };
            let bytes = match collect_limited(req.into_body(), MAX_API_BODY).await {
                Ok(b) => b,
                Err(_) => return fail(&ApprovalError::Invalid("body too large".into())),
            };
            let body: DecideBody = if bytes.iter().all(u8::is_ascii_whitespace) {
                DecideBody {
                    reason: String::new(),
                    grant_secs: None,
                }
            } else {
                match serde_json::from_slice(&bytes) {
                    Ok(b) => b,
                    Err(_) => {
                        return fail(&ApprovalError::Invalid(
                            "body must be {\"reason\": string, \"grant_secs\": number?}".into(),
                        ));
                    }
                }
            };
            if verdict == ApprovalVerdict::Deny && body.grant_secs.is_some() {
                return fail(&ApprovalError::Invalid(
                    "a grant comes with an approval".into(),
                ));
            }
            match hub
                .decide(
                    id,
                    &approver,
                    verdict,
                    &body.reason,
                    body.grant_secs.map(Duration::from_secs),
                )
                .await
            {
                Ok(s) => json(StatusCode::OK, &serde_json::json!(s)),
                Err(e) => fail(&e),
            }
        }
        (&Method::GET, ["grants"]) => match hub.grants_for(&approver).await {
            Ok(list) => json(StatusCode::OK, &serde_json::json!({"data": list})),
            Err(e) => fail(&e),
        },
        (&Method::POST, ["grants", id, "revoke"]) => {
            let Ok(id) = Uuid::parse_str(id) else {
                return not_found();
            };
            match hub.revoke_grant(id, &approver).await {
                Ok(g) => json(StatusCode::OK, &serde_json::json!(g)),
                Err(e) => fail(&e),
            }
        }
        _ => not_found(),
    }
}

fn parse_verdict(s: &str) -> Option<ApprovalVerdict> {
    match s {
        "approve" => Some(ApprovalVerdict::Approve),
        "deny" => Some(ApprovalVerdict::Deny),
        _ => None,
    }
}
