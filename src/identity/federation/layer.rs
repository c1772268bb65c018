//! [`TokenEndpointLayer`] and its service: answers `POST /v1/oauth/token`,
//! passes every other request through.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response, header};
use serde_json::json;
use tower::{Layer, Service};

use super::endpoint::{
    Exchange, MAX_TOKEN_REQUEST_BYTES, OAuthErrorCode, TOKEN_PATH, TokenEndpoint, TokenError,
    TokenRequest, json_response,
};
use crate::audit::{AuditHandle, DecisionRecord};
use crate::body::{Body, collect_limited};
use crate::identity::ResponseFuture;
use crate::wire::messages::RequestBody;

/// Serves the token endpoint in front of the identity layer; see the
/// [module docs](super).
///
/// Place it inside the [`AuditLayer`](crate::audit::AuditLayer) (so the
/// exchange is recorded, with the assertion and the issued token redacted)
/// and outside the [`IdentityLayer`](crate::identity::IdentityLayer) (a
/// caller has no gateway token yet when it asks for one).
///
/// ```
/// use std::sync::Arc;
/// use skillgate::identity::dev::DevIssuer;
/// use skillgate::identity::federation::{FederationRule, GatewayTokenIssuer, TokenEndpoint, TokenEndpointLayer};
/// let idp = DevIssuer::ephemeral();
/// let gw = Arc::new(GatewayTokenIssuer::ephemeral("urn:skillgate:gateway", "urn:skillgate:gateway").unwrap());
/// let endpoint = TokenEndpoint::builder(gw, idp.verifier("skillgate"))
///     .rule(FederationRule::new("fdrl_ci").issuer(idp.issuer()))
///     .build()
///     .unwrap();
/// let layer = TokenEndpointLayer::new(endpoint);
/// let off = TokenEndpointLayer::disabled(); // passes everything through
/// # let _ = (layer, off);
/// ```
#[derive(Clone, Debug, Default)]
pub struct TokenEndpointLayer {
    endpoint: Option<Arc<TokenEndpoint>>,
}

impl TokenEndpointLayer {
    /// A layer serving `endpoint`.
    pub fn new(endpoint: TokenEndpoint) -> Self {
        Self::from_arc(Arc::new(endpoint))
    }

    /// A layer sharing an already shared endpoint.
    pub fn from_arc(endpoint: Arc<TokenEndpoint>) -> Self {
        TokenEndpointLayer {
            endpoint: Some(endpoint),
        }
    }

    /// A layer that serves nothing and passes every request through.
    pub fn disabled() -> Self {
        TokenEndpointLayer { endpoint: None }
    }

    /// Whether it serves the token endpoint.
    pub fn is_enabled(&self) -> bool {
        self.endpoint.is_some()
    }
}

impl<S> Layer<S> for TokenEndpointLayer {
    type Service = TokenEndpointService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TokenEndpointService {
            inner,
            endpoint: self.endpoint.clone(),
        }
    }
}

/// The service made by [`TokenEndpointLayer`].
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use skillgate::Body;
/// use skillgate::identity::federation::TokenEndpointLayer;
/// use tower::{Layer, ServiceExt, service_fn};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let svc = TokenEndpointLayer::disabled()
///     .layer(service_fn(|_req: Request<Body>| async { Ok::<_, Infallible>(Response::new(Body::empty())) }));
/// let res = svc.oneshot(Request::post("/v1/oauth/token").body(Body::empty()).unwrap()).await.unwrap();
/// assert_eq!(res.status(), 200); // disabled: passed through to the inner service
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct TokenEndpointService<S> {
    inner: S,
    endpoint: Option<Arc<TokenEndpoint>>,
}

fn is_token_request(req: &Request<Body>) -> bool {
    req.method() == Method::POST && req.uri().path() == TOKEN_PATH
}

impl<S> Service<Request<Body>> for TokenEndpointService<S>
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
        let endpoint = match &self.endpoint {
            Some(e) if is_token_request(&req) => e.clone(),
            _ => {
                let fut = self.inner.call(req);
                return Box::pin(fut);
            }
        };
        Box::pin(async move { Ok(serve(&endpoint, req).await) })
    }
}

async fn serve(endpoint: &TokenEndpoint, req: Request<Body>) -> Response<Body> {
    let audit = req.extensions().get::<AuditHandle>().cloned();
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // RFC 6749 §5.2: client authentication through the Authorization header
    // is not supported here, and answered as such.
    let header_auth = req.headers().contains_key(header::AUTHORIZATION);
    let body = match req.extensions().get::<RequestBody>() {
        Some(b) => Ok(b.bytes().clone()),
        None => collect_limited(req.into_body(), MAX_TOKEN_REQUEST_BYTES)
            .await
            .map_err(|e| e.to_string()),
    };
    let parsed = match &body {
        Ok(b) => TokenRequest::parse(content_type.as_deref(), b),
        Err(e) => Err(TokenError::new(OAuthErrorCode::InvalidRequest, e.clone())),
    };
    // Whatever happens next, the audit record never holds the assertion.
    if let Some(a) = &audit {
        let stand_in = match &parsed {
            Ok(r) => r.redacted_json(),
            Err(_) => Bytes::from(
                serde_json::to_vec(&json!({
                    "redacted": "unparsed token request withheld",
                    "bytes": body.as_ref().map(Bytes::len).unwrap_or(0),
                }))
                .unwrap_or_default(),
            ),
        };
        a.set_request_body_for_record(stand_in);
    }
    let result = match parsed {
        Ok(_) if header_auth => Err(TokenError::new(
            OAuthErrorCode::InvalidClient,
            "Authorization header sent to the token endpoint",
        )),
        Ok(r) => endpoint.exchange(&r).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(ex) => issue(ex, audit.as_ref(), body.unwrap_or_default()).await,
        Err(e) => {
            tracing::info!(error = %e.code.as_str(), reason = %e.reason, "token exchange refused");
            if let Some(a) = &audit {
                a.set_decision(DecisionRecord::deny(format!("federation: {e}")));
            }
            e.into_response()
        }
    }
}

/// Records the issue durably, then answers with the token.
async fn issue(ex: Exchange, audit: Option<&AuditHandle>, body: Bytes) -> Response<Body> {
    let principal = ex.asserted.id();
    if let Some(a) = audit {
        a.set_principal(&ex.asserted);
        a.set_decision(DecisionRecord {
            verdict: crate::audit::Verdict::Allow,
            reason: Some(format!(
                "federation: issued gateway token {} for {} s",
                ex.token.token_id,
                ex.token.expires_in()
            )),
            rules: vec![ex.rule_id.clone()],
        });
        // As with forwarding: no credential leaves before its record is durable.
        if let Err(e) = a.commit(&RequestBody::new(body)).await {
            tracing::error!(error = %e, "audit: could not record token issue; not issued");
            a.set_decision(DecisionRecord::deny(
                "federation: audit store unavailable; token not issued",
            ));
            return TokenError::new(
                OAuthErrorCode::TemporarilyUnavailable,
                "audit store unavailable",
            )
            .into_response();
        }
        a.set_response_body_for_record(ex.redacted_response_json());
    }
    tracing::info!(
        principal = %principal,
        rule = %ex.rule_id,
        jti = %ex.token.token_id,
        ttl = ex.token.expires_in(),
        "gateway token issued"
    );
    json_response(200, &ex.response_json())
}
