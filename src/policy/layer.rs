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
use crate::wire::messages::{MessagesRequest, RequestBody, WireError, is_messages_path};

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

/// The Message Batches create endpoint.
const BATCHES_PATH: &str = "/v1/messages/batches";

/// The Messages requests inside a batch create body
/// (`{"requests":[{"custom_id":…,"params":{…}}]}`).
fn batch_items(body: &[u8]) -> Result<Vec<MessagesRequest>, WireError> {
    let v = crate::json::parse_unique(body).map_err(|e| WireError::Json {
        line: e.line(),
        column: e.column(),
    })?;
    let requests = v
        .get("requests")
        .and_then(serde_json::Value::as_array)
        .ok_or(WireError::Shape("a batch needs a \"requests\" array"))?;
    requests
        .iter()
        .map(|r| {
            let params = r
                .get("params")
                .ok_or(WireError::Shape("every batch request needs \"params\""))?;
            MessagesRequest::from_value(params.clone())
        })
        .collect()
}

/// Combines several evaluations: the first deny, else the first
/// require-approval, else allow with every obligation merged; all matched
/// rules are kept (each id once).
fn strictest(evals: Vec<Evaluation>) -> Evaluation {
    let mut matched: Vec<super::RuleMatch> = Vec::new();
    for e in &evals {
        for m in &e.matched {
            if !matched.contains(m) {
                matched.push(m.clone());
            }
        }
    }
    let pick = |effect| {
        evals
            .iter()
            .find(|e| e.decision.effect() == effect)
            .map(|e| e.decision.clone())
    };
    let decision = pick(super::Effect::Deny)
        .or_else(|| pick(super::Effect::RequireApproval))
        .unwrap_or_else(|| {
            let mut obligations = super::Obligations::default();
            for e in &evals {
                if let Decision::Allow { obligations: o } = &e.decision {
                    obligations.merge(o);
                }
            }
            Decision::Allow { obligations }
        });
    Evaluation { decision, matched }
}

/// Clamps `max_tokens` in every request of a batch body.
fn clamp_batch_max_tokens(body: &Bytes, ceiling: u64) -> Option<Bytes> {
    let mut v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let mut changed = false;
    for r in v.get_mut("requests")?.as_array_mut()? {
        if let Some(params) = r.get_mut("params")
            && params
                .get("max_tokens")
                .and_then(serde_json::Value::as_u64)
                .is_some_and(|m| m > ceiling)
        {
            params["max_tokens"] = serde_json::Value::from(ceiling);
            changed = true;
        }
    }
    if changed {
        serde_json::to_vec(&v).ok().map(Bytes::from)
    } else {
        None
    }
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
            let is_batch = req.method() == Method::POST && path == BATCHES_PATH;
            let batch = match (&body, is_batch) {
                (Some(b), true) => match batch_items(b.bytes()) {
                    Ok(items) => Some(items),
                    Err(e) => {
                        let err = Error::InvalidRequest(e.to_string());
                        if let Some(a) = &audit {
                            a.set_decision(DecisionRecord::deny(err.to_string()));
                        }
                        return Ok(err.into_response());
                    }
                },
                _ => None,
            };
            let eval = {
                let principal = req.extensions().get::<Principal>();
                let now = (layer.clock)();
                let mut input = PolicyInput::new(req.method().as_str(), &path)
                    .body_bytes(body.as_ref().map(|b| b.bytes().len()).unwrap_or(0))
                    .at(now);
                if let Some(p) = principal {
                    input = input.principal(p);
                }
                if let Some(v) = &view {
                    input = input.request(v);
                }
                let endpoint = layer.engine.evaluate(&input);
                match &batch {
                    // Every request in a batch is decided as the Messages
                    // request it will become; the strictest decision wins.
                    Some(items) => {
                        let mut all = vec![endpoint];
                        for item in items {
                            let mut i = PolicyInput::new("POST", "/v1/messages")
                                .request(item)
                                .at(now);
                            if let Some(p) = principal {
                                i = i.principal(p);
                            }
                            all.push(layer.engine.evaluate(&i));
                        }
                        strictest(all)
                    }
                    None => endpoint,
                }
            };
            if let Some(a) = &audit {
                a.set_decision(audit_decision(&eval));
            }
            tracing::debug!(decision = eval.decision.effect().as_str(), rules = ?eval.matched, "policy decision");
            match &eval.decision {
                Decision::Deny { rule, reason } => return Ok(denial(rule, reason)),
                Decision::Allow { obligations } | Decision::RequireApproval { obligations, .. } => {
                    let clamp = |b: &Bytes, ceiling| {
                        if is_batch {
                            clamp_batch_max_tokens(b, ceiling)
                        } else {
                            clamp_max_tokens(b, ceiling)
                        }
                    };
                    if let (Some(ceiling), Some(b)) = (obligations.max_tokens, &body)
                        && let Some(clamped) = clamp(b.bytes(), ceiling)
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

    async fn run_batch(policy: &str, body: serde_json::Value) -> (u16, Option<serde_json::Value>) {
        use tower::ServiceExt;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
        let seen2 = seen.clone();
        let svc = PolicyLayer::new(super::super::RulesPolicy::from_toml(policy, "p.toml").unwrap())
            .layer(tower::service_fn(move |req: Request<Body>| {
                let seen = seen2.clone();
                async move {
                    let b = req
                        .extensions()
                        .get::<RequestBody>()
                        .unwrap()
                        .bytes()
                        .clone();
                    *seen.lock().unwrap() = Some(serde_json::from_slice(&b).unwrap());
                    Ok::<_, Infallible>(Response::new(Body::empty()))
                }
            }));
        let bytes = Bytes::from(body.to_string());
        let mut req = Request::post(BATCHES_PATH)
            .body(Body::from(bytes.clone()))
            .unwrap();
        req.extensions_mut().insert(RequestBody::new(bytes));
        req.extensions_mut()
            .insert(Principal::new("https://idp", "s").with_groups(["ci"]));
        let res = svc.oneshot(req).await.unwrap();
        let got = seen.lock().unwrap().clone();
        (res.status().as_u16(), got)
    }

    #[tokio::test]
    async fn batch_requests_are_decided_one_by_one() {
        let policy = r#"
            [[rule]]
            id = "ci"
            effect = "allow"
            match = { groups = "ci", paths = ["/v1/messages", "/v1/messages/batches"] }
            obligations = { max_tokens = 100 }
            [[rule]]
            id = "no-opus"
            effect = "deny"
            match = { models = "claude-opus-*" }
            [[rule]]
            id = "export"
            effect = "deny"
            match = { keywords = "customer export" }
        "#;
        let item = |model: &str, text: &str| serde_json::json!({"custom_id": "a", "params": {"model": model, "max_tokens": 5000, "messages": [{"role": "user", "content": text}]}});
        let (status, seen) = run_batch(policy, serde_json::json!({"requests": [item("claude-sonnet-5", "hi"), item("claude-sonnet-5", "yo")]})).await;
        assert_eq!(status, 200);
        let seen = seen.unwrap();
        assert_eq!(
            seen["requests"][0]["params"]["max_tokens"], 100,
            "clamped in every item"
        );
        assert_eq!(seen["requests"][1]["params"]["max_tokens"], 100);
        let (status, seen) = run_batch(policy, serde_json::json!({"requests": [item("claude-sonnet-5", "hi"), item("claude-opus-4-8", "hi")]})).await;
        assert_eq!((status, seen), (403, None));
        let (status, _) = run_batch(
            policy,
            serde_json::json!({"requests": [item("claude-sonnet-5", "the customer export")]}),
        )
        .await;
        assert_eq!(status, 403);
        let (status, _) = run_batch(policy, serde_json::json!({"requests": "nope"})).await;
        assert_eq!(status, 400);
        // Without a rule allowing the batches endpoint: default deny.
        let only_messages = policy.replace(r#", "/v1/messages/batches""#, "");
        let (status, _) = run_batch(
            &only_messages,
            serde_json::json!({"requests": [item("claude-sonnet-5", "hi")]}),
        )
        .await;
        assert_eq!(status, 403);
    }

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
