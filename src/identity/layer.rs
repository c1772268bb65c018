//! [`IdentityLayer`] and its service.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderMap, HeaderName, Request, Response, header};
use tower::{Layer, Service};

use super::{AuthError, TokenVerifier};
use crate::audit::{AuditHandle, DecisionRecord};
use crate::body::Body;
use crate::error::Error;

/// Every header that can carry a caller credential. All are removed from a
/// request once its identity is verified, so none can reach the upstream.
pub const CREDENTIAL_HEADERS: [HeaderName; 4] = [
    header::AUTHORIZATION,
    HeaderName::from_static("x-api-key"),
    header::COOKIE,
    header::PROXY_AUTHORIZATION,
];

/// The future returned by [`IdentityService`] (and by every skillgate service).
pub type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send + 'static>>;

/// Verifies the caller's token; see the [module docs](crate::identity).
///
/// ```
/// use skillgate::identity::{IdentityLayer, dev::DevIssuer};
/// let layer = IdentityLayer::new(DevIssuer::ephemeral().verifier("skillgate"));
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct IdentityLayer {
    verifier: Arc<dyn TokenVerifier>,
}

impl IdentityLayer {
    /// A layer that verifies with `verifier`.
    pub fn new(verifier: impl TokenVerifier) -> Self {
        IdentityLayer {
            verifier: Arc::new(verifier),
        }
    }

    /// A layer sharing an already shared verifier.
    pub fn from_arc(verifier: Arc<dyn TokenVerifier>) -> Self {
        IdentityLayer { verifier }
    }
}

impl<S> Layer<S> for IdentityLayer {
    type Service = IdentityService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        IdentityService {
            inner,
            verifier: self.verifier.clone(),
        }
    }
}

/// The service made by [`IdentityLayer`].
#[derive(Clone)]
pub struct IdentityService<S> {
    inner: S,
    verifier: Arc<dyn TokenVerifier>,
}

/// Reads the bearer credential: `Authorization: Bearer <t>` (scheme
/// case-insensitive, RFC 7235 §2.1) or `x-api-key: <t>`. Both present with
/// different values is refused.
pub(crate) fn extract_token(headers: &HeaderMap) -> Result<String, AuthError> {
    let bearer = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(v) => {
            let v = v.to_str().map_err(|_| AuthError::Malformed)?;
            let (scheme, rest) = v.split_once(' ').ok_or(AuthError::Malformed)?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(AuthError::Malformed);
            }
            let t = rest.trim();
            if t.is_empty() {
                return Err(AuthError::MissingToken);
            }
            Some(t.to_owned())
        }
    };
    let api_key = match headers.get("x-api-key") {
        None => None,
        Some(v) => {
            let t = v.to_str().map_err(|_| AuthError::Malformed)?.trim();
            (!t.is_empty()).then(|| t.to_owned())
        }
    };
    match (bearer, api_key) {
        (Some(b), Some(k)) if b != k => Err(AuthError::AmbiguousToken),
        (Some(t), _) | (None, Some(t)) => Ok(t),
        (None, None) => Err(AuthError::MissingToken),
    }
}

impl<S> Service<Request<Body>> for IdentityService<S>
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

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let verifier = self.verifier.clone();
        // Take the service that was driven to readiness; leave a clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let result = match extract_token(req.headers()) {
                Ok(token) => verifier.verify(&token).await,
                Err(e) => Err(e),
            };
            let audit = req.extensions().get::<AuditHandle>().cloned();
            match result {
                Ok(principal) => {
                    for h in &CREDENTIAL_HEADERS {
                        req.headers_mut().remove(h);
                    }
                    tracing::debug!(principal = %principal.id(), "caller authenticated");
                    if let Some(a) = &audit {
                        a.set_principal(&principal);
                    }
                    req.extensions_mut().insert(principal);
                    inner.call(req).await
                }
                Err(reason) => {
                    // The reason is logged and audited, never told to the caller.
                    tracing::info!(%reason, "caller refused");
                    if let Some(a) = &audit {
                        a.set_decision(DecisionRecord::deny(format!("authentication: {reason}")));
                    }
                    Ok(Error::Unauthenticated.into_response())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn token_extraction() {
        assert_eq!(
            extract_token(&headers(&[("authorization", "Bearer abc")])).unwrap(),
            "abc"
        );
        assert_eq!(
            extract_token(&headers(&[("authorization", "bearer  abc ")])).unwrap(),
            "abc"
        );
        assert_eq!(
            extract_token(&headers(&[("x-api-key", "abc")])).unwrap(),
            "abc"
        );
        assert_eq!(
            extract_token(&headers(&[
                ("authorization", "Bearer abc"),
                ("x-api-key", "abc")
            ]))
            .unwrap(),
            "abc"
        );
        assert_eq!(
            extract_token(&headers(&[
                ("authorization", "Bearer a"),
                ("x-api-key", "b")
            ])),
            Err(AuthError::AmbiguousToken)
        );
        assert_eq!(
            extract_token(&headers(&[("authorization", "Basic abc")])),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            extract_token(&headers(&[("authorization", "Bearer ")])),
            Err(AuthError::MissingToken)
        );
        assert_eq!(extract_token(&headers(&[])), Err(AuthError::MissingToken));
    }
}
