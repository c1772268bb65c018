//! [`ForwardGuardLayer`]: the innermost step before a request leaves the
//! gateway. It refuses unknown endpoints and malformed Messages bodies, then
//! commits the audit record; only a committed request is forwarded.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Method, Request, Response};
use tower::{Layer, Service};

use crate::audit::AuditHandle;
use crate::body::Body;
use crate::error::Error;
use crate::identity::ResponseFuture;
use crate::wire::messages::{RequestBody, is_messages_path};

/// The innermost gateway layer: see `docs/architecture.md`.
///
/// Endpoints: every path under `/v1/` is forwarded (the Anthropic API's
/// surface grows; the policy layer narrows it); anything else is
/// `404 not_found_error`. A `POST` to `/v1/messages` or
/// `/v1/messages/count_tokens` whose body is not a JSON object of the
/// Messages shape is `400 invalid_request_error`, naming the position of the
/// problem but never the content.
///
/// ```
/// use skillgate::gateway::ForwardGuardLayer;
/// let layer = ForwardGuardLayer::new();
/// # let _ = layer;
/// ```
#[derive(Clone, Debug, Default)]
pub struct ForwardGuardLayer {
    public_url: Option<Arc<str>>,
}

impl ForwardGuardLayer {
    /// The layer.
    pub fn new() -> Self {
        ForwardGuardLayer::default()
    }

    /// The gateway's external base URL (e.g. `https://ai-gateway.corp`), used
    /// to rewrite Message Batches `results_url`s so they point back at the
    /// gateway. Default: derived from the request's `Host` header.
    pub fn public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = Some(url.into().into());
        self
    }
}

impl<S> Layer<S> for ForwardGuardLayer {
    type Service = ForwardGuard<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ForwardGuard {
            inner,
            public_url: self.public_url.clone(),
        }
    }
}

/// The service made by [`ForwardGuardLayer`].
#[derive(Clone, Debug)]
pub struct ForwardGuard<S> {
    inner: S,
    public_url: Option<Arc<str>>,
}

/// Largest batch object or list page the guard rewrites, in bytes.
const MAX_BATCH_JSON_BYTES: usize = 8 * 1024 * 1024;

async fn rewrite_batches(res: Response<Body>, origin: Option<String>) -> Response<Body> {
    let is_json = res
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !res.status().is_success() || !is_json {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let bytes = match crate::body::collect_limited(body, MAX_BATCH_JSON_BYTES).await {
        Ok(b) => b,
        Err(e) => {
            // Fail closed: an uninspected results_url could lead around the gateway.
            tracing::warn!(error = %e, "batch response could not be inspected");
            return Error::Internal.into_response();
        }
    };
    let Some(origin) = origin else {
        return Error::Internal.into_response();
    };
    match super::batches::rewrite_results_urls(&bytes, &origin) {
        Some(new) => {
            parts.headers.remove(http::header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(new))
        }
        None => Response::from_parts(parts, Body::from(bytes)),
    }
}

/// Checks the endpoint and body shape; `Err` is the refusal.
pub(crate) fn check_request(req: &Request<Body>) -> Result<(), Error> {
    let path = req.uri().path();
    if !path.starts_with("/v1/") {
        return Err(Error::NotFound);
    }
    if req.method() == Method::POST
        && is_messages_path(path)
        && let Some(body) = req.extensions().get::<RequestBody>()
    {
        body.messages()
            .map_err(|e| Error::InvalidRequest(e.to_string()))?;
    }
    Ok(())
}

impl<S> Service<Request<Body>> for ForwardGuard<S>
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
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let public_url = self.public_url.clone();
        Box::pin(async move {
            let audit = req.extensions().get::<AuditHandle>().cloned();
            if let Err(e) = check_request(&req) {
                if let Some(a) = &audit {
                    a.deny(e.to_string());
                }
                return Ok(e.into_response());
            }
            // A decision that still requires approval here has not been
            // approved by anyone: no approval layer released it.
            if let Some(crate::policy::Decision::RequireApproval { rule, .. }) =
                req.extensions().get::<crate::policy::Decision>()
            {
                let rule = rule.clone();
                if let Some(a) = &audit {
                    a.deny(format!(
                        "approval required by policy rule {rule}; no approval channel configured"
                    ));
                }
                return Ok(crate::policy::denial(
                    &rule,
                    "human approval is required and this gateway has no approval channel",
                ));
            }
            if let Some(a) = &audit {
                let body = req
                    .extensions()
                    .get::<RequestBody>()
                    .cloned()
                    .unwrap_or_else(|| RequestBody::new(bytes::Bytes::new()));
                if let Err(e) = a.commit(&body).await {
                    // Fail closed: nothing unrecorded goes upstream.
                    tracing::error!(id = %a.id(), error = %e, "audit write failed; request refused");
                    a.deny("audit store unavailable");
                    return Ok(Error::AuditUnavailable.into_response());
                }
            }
            let batches = super::batches::is_batches_path(req.uri().path());
            let origin = super::batches::gateway_origin(
                public_url.as_deref(),
                req.uri().authority().map(|a| a.as_str()),
                req.headers(),
            );
            let res = inner.call(req).await?;
            if batches {
                return Ok(rewrite_batches(res, origin).await);
            }
            Ok(res)
        })
    }
}
