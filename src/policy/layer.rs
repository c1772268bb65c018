//! [`PolicyLayer`] and its service.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use tower::{Layer, Service};

use super::{Decision, Evaluation, PolicyEngine, PolicyHandle, PolicyInput};
use crate::audit::{AuditHandle, DecisionRecord, Verdict};
use crate::body::Body;
use crate::error::{Error, ErrorType, error_response};
use crate::identity::{Principal, ResponseFuture};
use crate::wire::messages::{RequestBody, is_messages_path};

/// The decision clock; injectable for tests (time windows, DST).
pub type Clock = Arc<dyn Fn() -> jiff::Timestamp + Send + Sync>;

/// Decides every request with a [`PolicyEngine`]; see the [module docs](crate::policy).
///
/// ```
/// use skillgate::policy::{PolicyLayer, RulesPolicy};
/// let layer = PolicyLayer::new(RulesPolicy::from_toml("", "empty.toml").unwrap())
///     .clock(|| "2026-03-08T06:59:59Z".parse().unwrap());
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct PolicyLayer {
    engine: Arc<dyn PolicyEngine>,
    clock: Clock,
}

impl PolicyLayer {
    /// A layer deciding with `engine` (a [`PolicyHandle`] for hot reload).
    pub fn new(engine: impl PolicyEngine) -> Self {
        PolicyLayer {
            engine: Arc::new(engine),
            clock: Arc::new(jiff::Timestamp::now),
        }
    }

    /// A layer deciding with the policy in force in `handle`.
    pub fn from_handle(handle: PolicyHandle) -> Self {
        Self::new(handle)
    }

    /// Replaces the clock (default: system time).
    pub fn clock(mut self, clock: impl Fn() -> jiff::Timestamp + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }
}

impl<S> Layer<S> for PolicyLayer {
    type Service = PolicyService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        PolicyService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`PolicyLayer`].
#[derive(Clone)]
pub struct PolicyService<S> {
    inner: S,
    layer: PolicyLayer,
}

fn audit_decision(eval: &Evaluation) -> DecisionRecord {
    let rules = eval.matched.iter().map(|m| m.label()).collect();
    match &eval.decision {
        Decision::Allow { .. } => DecisionRecord {
            verdict: Verdict::Allow,
            reason: None,
            rules,
        },
        Decision::Deny { rule, reason } => DecisionRecord {
            verdict: Verdict::Deny,
            reason: Some(format!("policy rule {rule}: {reason}")),
            rules,
        },
        Decision::RequireApproval { rule, reason, .. } => DecisionRecord {
            verdict: Verdict::Deny,
            reason: Some(format!("approval required by policy rule {rule}: {reason}")),
            rules,
        },
    }
}

/// The 403 for a policy denial: names the rule and its reason only.
pub(crate) fn denial(rule: &str, reason: &str) -> Response<Body> {
    error_response(
        StatusCode::FORBIDDEN,
        ErrorType::Permission,
        &format!("request denied by policy rule `{rule}`: {reason}"),
        false,
    )
}

/// Rewrites `max_tokens` down to `ceiling` if the body asks for more.
fn clamp_max_tokens(body: &Bytes, ceiling: u64) -> Option<Bytes> {
    let mut v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let current = v.get("max_tokens")?.as_u64()?;
    if current <= ceiling {
        return None;
    }
    v["max_tokens"] = serde_json::Value::from(ceiling);
    serde_json::to_vec(&v).ok().map(Bytes::from)
}

impl<S> Service<Request<Body>> for PolicyService<S>
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
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let audit = req.extensions().get::<AuditHandle>().cloned();
            let body = req.extensions().get::<RequestBody>().cloned();
            let path = req.uri().path().to_owned();
            let view = match &body {
                Some(b) if req.method() == Method::POST && is_messages_path(&path) => {
                    match b.messages() {
                        Ok(v) => Some(v),
                        Err(e) => {
                            let err = Error::InvalidRequest(e.to_string());
                            if let Some(a) = &audit {
                                a.set_decision(DecisionRecord::deny(err.to_string()));
                            }
                            return Ok(err.into_response());
                        }
                    }
                }
                _ => None,
            };
            let eval = {
                let principal = req.extensions().get::<Principal>();
                let mut input = PolicyInput::new(req.method().as_str(), &path)
                    .body_bytes(body.as_ref().map(|b| b.bytes().len()).unwrap_or(0))
                    .at((layer.clock)());
                if let Some(p) = principal {
                    input = input.principal(p);
                }
                if let Some(v) = &view {
                    input = input.request(v);
                }
                layer.engine.evaluate(&input)
            };
            if let Some(a) = &audit {
                a.set_decision(audit_decision(&eval));
            }
            tracing::debug!(decision = eval.decision.effect().as_str(), rules = ?eval.matched, "policy decision");
            match &eval.decision {
                Decision::Deny { rule, reason } => return Ok(denial(rule, reason)),
                Decision::Allow { obligations } | Decision::RequireApproval { obligations, .. } => {
                    if let (Some(ceiling), Some(b)) = (obligations.max_tokens, &body)
                        && let Some(clamped) = clamp_max_tokens(b.bytes(), ceiling)
                    {
                        req.headers_mut().remove(header::CONTENT_LENGTH);
                        req.extensions_mut()
                            .insert(RequestBody::new(clamped.clone()));
                        *req.body_mut() = Body::from(clamped);
                    }
                }
            }
            req.extensions_mut().insert(eval.decision);
            inner.call(req).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamp_only_lowers() {
        let b = Bytes::from_static(br#"{"model":"m","max_tokens":9000,"messages":[]}"#);
        let c = clamp_max_tokens(&b, 1024).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&c).unwrap();
        assert_eq!(v["max_tokens"], 1024);
        assert_eq!(v["model"], "m");
        assert!(clamp_max_tokens(&b, 10_000).is_none());
        assert!(clamp_max_tokens(&Bytes::from_static(b"{}"), 5).is_none());
    }
}
