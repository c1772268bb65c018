//! Just-in-time human approval: requests the policy marks
//! [`Decision::RequireApproval`](crate::policy::Decision::RequireApproval)
//! wait at the gateway, connection open, until an approver decides.
//!
//! - [`ApprovalLayer`] / [`ApprovalService`]: right after the policy layer.
//!   It holds the request (hold mode: the caller's connection stays open)
//!   until enough approvers approve, one denies, or the timeout passes
//!   (default 5 minutes). Denied or timed out: `403 permission_error`,
//!   `x-should-retry: false`, naming the rule and the reason. A caller that
//!   disconnects cancels its pending approval.
//! - [`Approvals`]: the coordinator shared by the layer, the
//!   [approver API and inbox page](ApprovalApiLayer), the
//!   [webhook](webhook) and library users ([`Approvals::decide`]).
//! - [`ApprovalStore`]: where pending approvals, decisions and grants live;
//!   [`MemoryApprovalStore`] for one instance, [`PostgresApprovalStore`]
//!   (feature `postgres`) to share them between instances, where a decision
//!   made on instance B releases the request held on instance A
//!   (`LISTEN`/`NOTIFY`).
//! - [`ApprovalSink`]: channels that announce new requests:
//!   [`ChannelSink`] (in-process), [`webhook::WebhookSink`] (signed JSON
//!   with signed approve/deny callback URLs).
//! - [`Grant`]s: an approver may approve a time-boxed window for one
//!   principal and rule; re-runs in the window go through at once.
//!
//! An [`ApprovalRequest`] carries the SHA-256 of the exact body that will be
//! forwarded (after policy obligations such as the `max_tokens` clamp) and
//! a masked preview of the prompt ([`default_preview_masker`]: the redaction
//! engine, then [`mask_preview`]; pluggable
//! with [`ApprovalsBuilder::preview_masker`]); never the prompt itself.
//! Every request, decision, grant and timeout is an
//! [`AuditEvent`](crate::audit::AuditEvent). The flow, the HTTP API and the
//! webhook schema are in `docs/approvals.md`.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use skillgate::Body;
//! use skillgate::approval::{ApprovalLayer, ApprovalVerdict, Approvals, ChannelEvent, ChannelSink};
//! use skillgate::identity::Principal;
//! use skillgate::policy::Decision;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let channel = ChannelSink::new(16);
//! let mut inbox = channel.subscribe();
//! let approvals = Approvals::builder().sink(channel).build();
//! let svc = ApprovalLayer::new(approvals.clone()).layer(service_fn(|req: Request<Body>| async move {
//!     // Reached only once approved: the decision is now Allow.
//!     assert!(matches!(req.extensions().get::<Decision>(), Some(Decision::Allow { .. })));
//!     Ok::<_, Infallible>(Response::new(Body::from("answer")))
//! }));
//!
//! let mut req = Request::post("/v1/messages").body(Body::empty()).unwrap();
//! req.extensions_mut().insert(Principal::new("https://idp", "ci-job"));
//! req.extensions_mut().insert(Decision::RequireApproval {
//!     rule: "customer-export".into(),
//!     reason: "needs a human".into(),
//!     obligations: Default::default(),
//!     approvers: vec!["secops".into()],
//!     approvals_required: 1,
//! });
//! let held = tokio::spawn(svc.oneshot(req));
//!
//! // An approver sees the request and approves it.
//! let ChannelEvent::Requested(r) = inbox.recv().await.unwrap() else { unreachable!() };
//! let alice = Principal::new("https://idp", "alice").with_groups(["secops"]);
//! approvals.decide(r.id, &alice, ApprovalVerdict::Approve, "looks fine", None).await.unwrap();
//! assert_eq!(held.await.unwrap().unwrap().status(), 200);
//! # });
//! ```

mod api;
mod config;
mod hub;
mod layer;
mod mask;
#[cfg(feature = "postgres")]
mod postgres;
mod sink;
mod store;
#[cfg(test)]
mod tests;
mod types;
pub mod webhook;

pub use api::{APPROVALS_PATH, ApprovalApi, ApprovalApiLayer};
pub use config::ApprovalConfig;
pub use hub::{
    ApprovalError, Approvals, ApprovalsBuilder, DEFAULT_MAX_GRANT, DEFAULT_TIMEOUT,
    MAX_REASON_CHARS, PreviewMasker, default_preview_masker,
};
pub use layer::{ApprovalLayer, ApprovalService, body_sha256};
pub use mask::{DEFAULT_PREVIEW_CHARS, mask_preview};
#[cfg(feature = "postgres")]
pub use postgres::PostgresApprovalStore;
pub use sink::{ApprovalSink, ChannelEvent, ChannelSink, SinkError};
pub use store::{ApprovalStore, ApprovalStoreError, MemoryApprovalStore};
pub use types::{
    ApprovalDecision, ApprovalRequest, ApprovalState, ApprovalStatus, ApprovalVerdict, Grant,
};
