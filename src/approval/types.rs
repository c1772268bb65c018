//! The records of an approval: [`ApprovalRequest`], [`ApprovalDecision`],
//! [`ApprovalState`] and [`Grant`].

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One request waiting for a human, as approvers (and webhooks) see it.
///
/// It never holds the prompt itself: only a masked `preview` and the
/// SHA-256 digest of the exact body that will be forwarded.
///
/// ```
/// use skillgate::approval::ApprovalRequest;
/// let r = ApprovalRequest::example();
/// assert_eq!(r.body_sha256.len(), 64);
/// assert!(r.expires_at > r.created_at);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    /// Approval id (UUID v7).
    pub id: Uuid,
    /// The audit record of the held exchange, if audited.
    pub exchange_id: Option<Uuid>,
    /// The caller, as [`Principal::id`](crate::identity::Principal::id) (`issuer#subject`).
    pub principal: String,
    /// The caller's groups (for the approver's context).
    pub principal_groups: Vec<String>,
    /// The policy rule that required approval.
    pub rule: String,
    /// The rule's reason.
    pub reason: String,
    /// Groups whose members may decide.
    pub approvers: Vec<String>,
    /// Distinct approvals needed (N of M), at least 1.
    pub approvals_required: u32,
    /// HTTP method and path of the held request.
    pub method: String,
    /// Path of the held request, e.g. `/v1/messages`.
    pub path: String,
    /// The requested model, if any.
    pub model: Option<String>,
    /// Lower-case hex SHA-256 of the request body that will be forwarded
    /// (64 characters). An approval is bound to this body.
    pub body_sha256: String,
    /// The prompt with PII masked, truncated (see
    /// [`mask_preview`](crate::approval::mask_preview)).
    pub preview: String,
    /// When the request started waiting.
    pub created_at: Timestamp,
    /// When it times out (denied with `approval timed out`).
    pub expires_at: Timestamp,
}

impl ApprovalRequest {
    /// A filled-in example, for docs and tests.
    pub fn example() -> Self {
        ApprovalRequest {
            id: Uuid::now_v7(),
            exchange_id: None,
            principal: "https://idp.example#ci-job".into(),
            principal_groups: vec!["ci".into()],
            rule: "customer-export".into(),
            reason: "prompts about customer exports need a human".into(),
            approvers: vec!["secops".into()],
            approvals_required: 1,
            method: "POST".into(),
            path: "/v1/messages".into(),
            model: Some("claude-sonnet-4-5".into()),
            body_sha256: "0".repeat(64),
            preview: "Prepare the customer export for [EMAIL]".into(),
            created_at: "2026-11-30T10:00:00Z".parse().unwrap_or_default(),
            expires_at: "2026-11-30T10:05:00Z".parse().unwrap_or_default(),
        }
    }
}

/// Approve or deny.
///
/// ```
/// use skillgate::approval::ApprovalVerdict;
/// assert_eq!(serde_json::to_string(&ApprovalVerdict::Approve).unwrap(), "\"approve\"");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalVerdict {
    /// Let it through (counts toward N of M).
    Approve,
    /// Refuse it (one denial is final).
    Deny,
}

impl ApprovalVerdict {
    /// `"approve"` or `"deny"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalVerdict::Approve => "approve",
            ApprovalVerdict::Deny => "deny",
        }
    }
}

/// One approver's decision on one request.
///
/// ```
/// use skillgate::approval::{ApprovalDecision, ApprovalVerdict};
/// let d = ApprovalDecision::new(uuid::Uuid::nil(), "https://idp#alice", ApprovalVerdict::Deny, "not today");
/// assert_eq!(d.verdict, ApprovalVerdict::Deny);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalDecision {
    /// The request decided.
    pub request_id: Uuid,
    /// The approver, as `issuer#subject`.
    pub approver: String,
    /// Approve or deny.
    pub verdict: ApprovalVerdict,
    /// The approver's reason (shown to the caller on a denial).
    pub reason: String,
    /// When it was decided.
    pub decided_at: Timestamp,
}

impl ApprovalDecision {
    /// A decision made now.
    pub fn new(
        request_id: Uuid,
        approver: impl Into<String>,
        verdict: ApprovalVerdict,
        reason: impl Into<String>,
    ) -> Self {
        ApprovalDecision {
            request_id,
            approver: approver.into(),
            verdict,
            reason: reason.into(),
            decided_at: Timestamp::now(),
        }
    }
}

/// Where a request stands.
///
/// ```
/// use skillgate::approval::ApprovalStatus;
/// assert!(ApprovalStatus::Pending.is_pending());
/// assert_eq!(ApprovalStatus::TimedOut.as_str(), "timed_out");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    /// Waiting for decisions.
    Pending,
    /// Enough approvals: forwarded.
    Approved,
    /// Denied by an approver.
    Denied,
    /// Nobody decided in time.
    TimedOut,
    /// The caller went away.
    Cancelled,
}

impl ApprovalStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Denied => "denied",
            ApprovalStatus::TimedOut => "timed_out",
            ApprovalStatus::Cancelled => "cancelled",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            ApprovalStatus::Pending,
            ApprovalStatus::Approved,
            ApprovalStatus::Denied,
            ApprovalStatus::TimedOut,
            ApprovalStatus::Cancelled,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }

    /// Still waiting.
    pub fn is_pending(self) -> bool {
        self == ApprovalStatus::Pending
    }
}

/// A request with its decisions so far, as a store holds it.
///
/// ```
/// use skillgate::approval::{ApprovalRequest, ApprovalState, ApprovalStatus};
/// let s = ApprovalState::new(ApprovalRequest::example());
/// assert_eq!(s.status, ApprovalStatus::Pending);
/// assert_eq!(s.approvals(), 0);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalState {
    /// The request.
    pub request: ApprovalRequest,
    /// Where it stands.
    pub status: ApprovalStatus,
    /// Every decision, in order.
    pub decisions: Vec<ApprovalDecision>,
    /// When it left `pending`.
    pub resolved_at: Option<Timestamp>,
}

impl ApprovalState {
    /// A fresh pending state.
    pub fn new(request: ApprovalRequest) -> Self {
        ApprovalState {
            request,
            status: ApprovalStatus::Pending,
            decisions: Vec::new(),
            resolved_at: None,
        }
    }

    /// Distinct approvers who approved.
    pub fn approvals(&self) -> usize {
        let mut seen: Vec<&str> = Vec::new();
        for d in &self.decisions {
            if d.verdict == ApprovalVerdict::Approve && !seen.contains(&d.approver.as_str()) {
                seen.push(&d.approver);
            }
        }
        seen.len()
    }

    /// The reason to give the caller for a refusal: the denying approver's
    /// reason, or what happened.
    pub fn refusal_reason(&self) -> String {
        match self.status {
            ApprovalStatus::Denied => {
                let why = self
                    .decisions
                    .iter()
                    .rev()
                    .find(|d| d.verdict == ApprovalVerdict::Deny)
                    .map(|d| d.reason.as_str())
                    .unwrap_or("");
                if why.is_empty() {
                    "approval denied".into()
                } else {
                    format!("approval denied: {why}")
                }
            }
            ApprovalStatus::TimedOut => "approval timed out: no approver decided in time".into(),
            ApprovalStatus::Cancelled => "approval cancelled".into(),
            ApprovalStatus::Pending | ApprovalStatus::Approved => String::new(),
        }
    }

    /// Applies `d` to a pending state (the rule every store follows): a
    /// denial resolves it `denied`; an approval counts once per approver and
    /// resolves it `approved` at `approvals_required`.
    pub fn apply(&mut self, d: ApprovalDecision) {
        let at = d.decided_at;
        let deny = d.verdict == ApprovalVerdict::Deny;
        self.decisions.push(d);
        if deny {
            self.status = ApprovalStatus::Denied;
            self.resolved_at = Some(at);
        } else if self.approvals() >= self.request.approvals_required.max(1) as usize {
            self.status = ApprovalStatus::Approved;
            self.resolved_at = Some(at);
        }
    }
}

/// A time-boxed window in which one principal's requests matching one rule
/// go through without waiting.
///
/// ```
/// use skillgate::approval::Grant;
/// let g = Grant::example();
/// assert!(g.is_active("2026-11-30T10:30:00Z".parse().unwrap()));
/// assert!(!g.is_active("2026-11-30T11:00:01Z".parse().unwrap()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Grant id (UUID v7).
    pub id: Uuid,
    /// The caller it covers (`issuer#subject`).
    pub principal: String,
    /// The rule it covers.
    pub rule: String,
    /// Groups that may revoke it (the rule's approvers).
    pub approvers: Vec<String>,
    /// Who created it.
    pub created_by: String,
    /// Why.
    pub reason: String,
    /// The approval it came from, if any.
    pub request_id: Option<Uuid>,
    /// Start.
    pub created_at: Timestamp,
    /// End (exclusive).
    pub expires_at: Timestamp,
    /// When it was revoked, if it was.
    pub revoked_at: Option<Timestamp>,
    /// Who revoked it.
    pub revoked_by: Option<String>,
}

impl Grant {
    /// Whether it lets requests through at `now`.
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.created_at <= now && now < self.expires_at
    }

    /// A filled-in example, for docs and tests.
    pub fn example() -> Self {
        Grant {
            id: Uuid::now_v7(),
            principal: "https://idp.example#ci-job".into(),
            rule: "customer-export".into(),
            approvers: vec!["secops".into()],
            created_by: "https://idp.example#alice".into(),
            reason: "nightly export run".into(),
            request_id: None,
            created_at: "2026-11-30T10:00:00Z".parse().unwrap_or_default(),
            expires_at: "2026-11-30T11:00:00Z".parse().unwrap_or_default(),
            revoked_at: None,
            revoked_by: None,
        }
    }
}
