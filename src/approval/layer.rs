//! [`ApprovalLayer`] and its service.

use std::convert::Infallible;
use std::task::{Context, Poll};

use http::{Request, Response};
use jiff::Timestamp;
use sha2::{Digest, Sha256};
use tower::{Layer, Service};
use uuid::Uuid;

use super::hub::{ApprovalError, Approvals};
use super::types::{ApprovalRequest, ApprovalState, ApprovalStatus};
use crate::audit::{AuditEvent, AuditHandle, DecisionRecord, Verdict};
use crate::body::Body;
use crate::error::Error;
use crate::identity::{Principal, ResponseFuture};
use crate::policy::Decision;
use crate::wire::messages::RequestBody;

/// Holds every request the policy marked
/// [`Decision::RequireApproval`] until a human decides; see the
/// [module docs](crate::approval).
///
/// Sits right after the [`PolicyLayer`](crate::policy::PolicyLayer). Any
/// other decision passes through untouched. Approved (or covered by an
/// active grant): the `Decision` extension becomes
/// [`Decision::Allow`] with the rule's obligations and the request goes on.
/// Denied, timed out or unholdable: `403 permission_error` (or `503` when
/// the store is down) with `x-should-retry: false`, naming the rule and the
/// reason; nothing is forwarded.
///
/// ```
/// use skillgate::approval::{ApprovalLayer, Approvals};
/// let layer = ApprovalLayer::new(Approvals::builder().build());
/// # let _ = layer;
/// ```
#[derive(Clone, Debug)]
pub struct ApprovalLayer {
    approvals: Approvals,
}

impl ApprovalLayer {
    /// A layer holding requests through `approvals`.
    pub fn new(approvals: Approvals) -> Self {
        ApprovalLayer { approvals }
    }

    /// The coordinator (to decide, or to serve the approver API).
    pub fn approvals(&self) -> &Approvals {
        &self.approvals
    }
}

impl<S> Layer<S> for ApprovalLayer {
    type Service = ApprovalService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ApprovalService {
            inner,
            approvals: self.approvals.clone(),
        }
    }
}

/// The service made by [`ApprovalLayer`].
#[derive(Clone, Debug)]
pub struct ApprovalService<S> {
    inner: S,
    approvals: Approvals,
}

/// Lower-case hex SHA-256 of `bytes` (64 characters).
///
/// ```
/// assert_eq!(
///     skillgate::approval::body_sha256(b""),
///     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
/// );
/// ```
pub fn body_sha256(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn allow(req: &mut Request<Body>, audit: Option<&AuditHandle>, rule: &str, why: String) {
    let obligations = match req.extensions_mut().remove::<Decision>() {
        Some(Decision::RequireApproval { obligations, .. }) => obligations,
        _ => Default::default(),
    };
    req.extensions_mut().insert(Decision::Allow { obligations });
    if let Some(a) = audit {
        a.set_decision(DecisionRecord {
            verdict: Verdict::Allow,
            reason: Some(why),
            rules: vec![rule.to_owned()],
        });
    }
}

fn refuse(audit: Option<&AuditHandle>, rule: &str, reason: &str) -> Response<Body> {
    if let Some(a) = audit {
        a.deny(format!("policy rule {rule}: {reason}"));
    }
    crate::policy::denial(rule, reason)
}

fn approvers_of(state: &ApprovalState) -> String {
    let mut names: Vec<&str> = Vec::new();
    for d in &state.decisions {
        if !names.contains(&d.approver.as_str()) {
            names.push(&d.approver);
        }
    }
    names.join(", ")
}

impl<S> Service<Request<Body>> for ApprovalService<S>
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
        let hub = self.approvals.clone();
        Box::pin(async move {
            let Some(Decision::RequireApproval {
                rule,
                reason,
                approvers,
                approvals_required,
                ..
            }) = req.extensions().get::<Decision>().cloned()
            else {
                return inner.call(req).await;
            };
            let audit = req.extensions().get::<AuditHandle>().cloned();
            let Some(principal) = req.extensions().get::<Principal>().cloned() else {
                return Ok(refuse(
                    audit.as_ref(),
                    &rule,
                    "approval needs an authenticated caller",
                ));
            };
            let principal_id = principal.id();
            let body = req
                .extensions()
                .get::<RequestBody>()
                .cloned()
                .unwrap_or_else(|| RequestBody::new(bytes::Bytes::new()));
            let digest = body_sha256(body.bytes());
            match hub.active_grant(&principal_id, &rule).await {
                Ok(Some(grant)) => {
                    if let Some(a) = &audit
                        && let Err(e) = a
                            .record_event(AuditEvent::new(
                                "approval.approved",
                                serde_json::json!({
                                    "rule": rule,
                                    "principal": principal_id,
                                    "grant_id": grant.id,
                                    "body_sha256": digest,
                                }),
                            ))
                            .await
                    {
                        tracing::error!(error = %e, "audit write failed; request refused");
                        a.deny("audit store unavailable");
                        return Ok(Error::AuditUnavailable.into_response());
                    }
                    allow(
                        &mut req,
                        audit.as_ref(),
                        &rule,
                        format!("policy rule {rule}: approved by grant {}", grant.id),
                    );
                    return inner.call(req).await;
                }
                Ok(None) => {}
                Err(_) => {
                    if let Some(a) = &audit {
                        a.deny("approval store unavailable");
                    }
                    return Ok(Error::ApprovalUnavailable.into_response());
                }
            }
            let (model, text) = match body.messages() {
                Ok(m) => (
                    m.model().map(str::to_owned),
                    m.prompt_texts().collect::<Vec<_>>().join("\n"),
                ),
                Err(_) => (None, String::new()),
            };
            let now = Timestamp::now();
            let expires_at = jiff::SignedDuration::try_from(hub.timeout())
                .ok()
                .and_then(|d| now.checked_add(d).ok())
                .unwrap_or(now);
            let groups = hub.approver_groups(&approvers);
            if groups.is_empty() {
                tracing::warn!(rule = %rule, "approval rule names no approver group and no default is set: the request can only time out");
            }
            let request = ApprovalRequest {
                id: Uuid::now_v7(),
                exchange_id: audit.as_ref().map(AuditHandle::id),
                principal: principal_id,
                principal_groups: principal.groups.clone(),
                rule: rule.clone(),
                reason,
                approvers: groups,
                approvals_required: approvals_required.max(1),
                method: req.method().as_str().to_owned(),
                path: req.uri().path().to_owned(),
                model,
                body_sha256: digest,
                preview: hub.preview(&text),
                created_at: now,
                expires_at,
            };
            drop(text);
            match hub.hold(request, audit.as_ref()).await {
                Ok(state) if state.status == ApprovalStatus::Approved => {
                    let why = format!("policy rule {rule}: approved by {}", approvers_of(&state));
                    allow(&mut req, audit.as_ref(), &rule, why);
                    inner.call(req).await
                }
                Ok(state) => Ok(refuse(audit.as_ref(), &rule, &state.refusal_reason())),
                Err(ApprovalError::AuditUnavailable) => {
                    if let Some(a) = &audit {
                        a.deny("audit store unavailable");
                    }
                    Ok(Error::AuditUnavailable.into_response())
                }
                Err(_) => {
                    if let Some(a) = &audit {
                        a.deny("approval store unavailable");
                    }
                    Ok(Error::ApprovalUnavailable.into_response())
                }
            }
        })
    }
}
