//! [`Approvals`]: the shared heart of the approval flow. The layer holds
//! requests through it; the API, the webhook callbacks and library users
//! decide through it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::watch;
use uuid::Uuid;

use super::mask::{DEFAULT_PREVIEW_CHARS, mask_preview};
use super::sink::ApprovalSink;
use super::store::{ApprovalStore, ApprovalStoreError, MemoryApprovalStore};
use super::types::{
    ApprovalDecision, ApprovalRequest, ApprovalState, ApprovalStatus, ApprovalVerdict, Grant,
};
use crate::audit::{AuditEvent, AuditHandle, AuditStore};
use crate::identity::Principal;

/// Default longest wait for a decision (5 minutes).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// Default longest grant an approver may give (8 hours).
pub const DEFAULT_MAX_GRANT: Duration = Duration::from_secs(8 * 3600);
/// Longest approver reason kept, in characters.
pub const MAX_REASON_CHARS: usize = 1000;
/// Longest time one sink may take to take a notification.
const SINK_TIMEOUT: Duration = Duration::from_secs(10);

/// Turns prompt text into the preview approvers see. Must mask every
/// sensitive value; the default is [`mask_preview`] at
/// [`DEFAULT_PREVIEW_CHARS`].
pub type PreviewMasker = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// The default preview masker: the redaction engine's detectors
/// ([`Redactor::new`](crate::redaction::Redactor::new), typed placeholders
/// such as `[REDACTED:CREDIT_CARD]`), then the conservative
/// [`mask_preview`] over the result, cut at [`DEFAULT_PREVIEW_CHARS`]. Two
/// passes: a value one of them misses is still caught by the other.
///
/// ```
/// let m = skillgate::approval::default_preview_masker();
/// let p = m("ssn 987-65-4321 for bob@corp.example");
/// assert!(!p.contains("4321") && !p.contains("bob@"), "{p}");
/// ```
pub fn default_preview_masker() -> PreviewMasker {
    let redactor = crate::redaction::Redactor::new();
    Arc::new(move |s: &str| mask_preview(&redactor.redact_text(s).text, DEFAULT_PREVIEW_CHARS))
}

/// Why a decision or a query by an approver was refused.
///
/// ```
/// use skillgate::approval::ApprovalError;
/// assert_eq!(ApprovalError::SelfApproval.status(), 403);
/// assert_eq!(ApprovalError::NotFound.status(), 404);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    /// No such approval or grant (or not visible to this approver).
    #[error("no such approval or grant")]
    NotFound,
    /// The approver is not in any of the rule's approver groups.
    #[error("you are not an approver for policy rule `{0}`")]
    NotAnApprover(String),
    /// Nobody approves their own request.
    #[error("nobody approves their own request")]
    SelfApproval,
    /// The request was already resolved.
    #[error("the approval is no longer pending ({})", .0.as_str())]
    NotPending(ApprovalStatus),
    /// This approver already approved it (N of M counts distinct approvers).
    #[error("you already approved this request")]
    AlreadyApproved,
    /// Bad input (a missing reason, a grant too long).
    #[error("{0}")]
    Invalid(String),
    /// The approval store failed.
    #[error("approval store unavailable")]
    Unavailable,
    /// The audit store could not record the event, so nothing was done.
    #[error("audit store unavailable")]
    AuditUnavailable,
}

impl ApprovalError {
    /// The HTTP status the approver API answers with.
    pub fn status(&self) -> u16 {
        match self {
            ApprovalError::NotFound => 404,
            ApprovalError::NotAnApprover(_) | ApprovalError::SelfApproval => 403,
            ApprovalError::NotPending(_) | ApprovalError::AlreadyApproved => 409,
            ApprovalError::Invalid(_) => 400,
            ApprovalError::Unavailable | ApprovalError::AuditUnavailable => 503,
        }
    }
}

impl From<ApprovalStoreError> for ApprovalError {
    fn from(e: ApprovalStoreError) -> Self {
        match e {
            ApprovalStoreError::NotFound => ApprovalError::NotFound,
            ApprovalStoreError::NotPending(s) => ApprovalError::NotPending(s),
            ApprovalStoreError::Unavailable(m) => {
                tracing::error!(error = %m, "approval store failed");
                ApprovalError::Unavailable
            }
        }
    }
}

/// The approval coordinator: store, sinks, waiting requests, audit.
/// Cheap to clone (one `Arc`). One per gateway instance; instances share
/// state through a shared [`ApprovalStore`].
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::time::Duration;
/// use skillgate::approval::{Approvals, ChannelSink, MemoryApprovalStore};
/// let channel = ChannelSink::new(16);
/// let approvals = Approvals::builder()
///     .store(MemoryApprovalStore::new())
///     .sink(channel.clone())
///     .timeout(Duration::from_secs(120))
///     .default_approvers(["secops"])
///     .build();
/// assert_eq!(approvals.timeout(), Duration::from_secs(120));
/// # });
/// ```
#[derive(Clone)]
pub struct Approvals {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn ApprovalStore>,
    sinks: Vec<Arc<dyn ApprovalSink>>,
    audit: Option<Arc<dyn AuditStore>>,
    instance: String,
    timeout: Duration,
    max_grant: Duration,
    masker: PreviewMasker,
    default_approvers: Vec<String>,
    waiters: Mutex<HashMap<Uuid, watch::Sender<Option<ApprovalState>>>>,
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvals")
            .field("timeout", &self.inner.timeout)
            .field("sinks", &self.inner.sinks.len())
            .field("default_approvers", &self.inner.default_approvers)
            .finish_non_exhaustive()
    }
}

/// Builder for [`Approvals`].
#[must_use]
pub struct ApprovalsBuilder {
    store: Option<Arc<dyn ApprovalStore>>,
    sinks: Vec<Arc<dyn ApprovalSink>>,
    audit: Option<Arc<dyn AuditStore>>,
    instance: String,
    timeout: Duration,
    max_grant: Duration,
    masker: Option<PreviewMasker>,
    default_approvers: Vec<String>,
}

impl ApprovalsBuilder {
    /// Where approvals live (default: a [`MemoryApprovalStore`]).
    pub fn store(mut self, store: impl ApprovalStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }
    /// An already shared store.
    pub fn store_arc(mut self, store: Arc<dyn ApprovalStore>) -> Self {
        self.store = Some(store);
        self
    }
    /// Adds a channel that announces new requests.
    pub fn sink(mut self, sink: impl ApprovalSink) -> Self {
        self.sinks.push(Arc::new(sink));
        self
    }
    /// Adds an already shared sink.
    pub fn sink_arc(mut self, sink: Arc<dyn ApprovalSink>) -> Self {
        self.sinks.push(sink);
        self
    }
    /// Where approver-side events (decisions, grants) are recorded. The
    /// gateway sets its own audit store; without one, such events are only
    /// logged. Request-side events go to the exchange's
    /// [`AuditHandle`].
    pub fn audit_store(mut self, store: Arc<dyn AuditStore>) -> Self {
        self.audit = Some(store);
        self
    }
    /// This instance's name in audit events.
    pub fn instance(mut self, name: impl Into<String>) -> Self {
        self.instance = name.into();
        self
    }
    /// Longest wait for a decision (default [`DEFAULT_TIMEOUT`], 5 minutes).
    /// Keep it below the callers' own HTTP timeout (the Python and
    /// TypeScript SDKs: 10 minutes), see `docs/approvals.md`.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }
    /// Longest grant window an approver may give (default 8 hours).
    pub fn max_grant(mut self, t: Duration) -> Self {
        self.max_grant = t;
        self
    }
    /// Replaces the preview masker (default: [`default_preview_masker`]).
    pub fn preview_masker(mut self, m: PreviewMasker) -> Self {
        self.masker = Some(m);
        self
    }
    /// Approver groups for rules that name none (default: none, so such a
    /// request can only time out).
    pub fn default_approvers<I, G>(mut self, groups: I) -> Self
    where
        I: IntoIterator<Item = G>,
        G: Into<String>,
    {
        self.default_approvers = groups.into_iter().map(Into::into).collect();
        self
    }

    /// Builds it. With a store shared between instances (PostgreSQL), a
    /// task follows the store's resolution feed when a Tokio runtime is
    /// running.
    pub fn build(self) -> Approvals {
        let store = self
            .store
            .unwrap_or_else(|| Arc::new(MemoryApprovalStore::new()));
        let feed = store.resolutions();
        let approvals = Approvals {
            inner: Arc::new(Inner {
                store,
                sinks: self.sinks,
                audit: self.audit,
                instance: self.instance,
                timeout: self.timeout,
                max_grant: self.max_grant,
                masker: self.masker.unwrap_or_else(default_preview_masker),
                default_approvers: self.default_approvers,
                waiters: Mutex::new(HashMap::new()),
            }),
        };
        if let Some(mut rx) = feed {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    let weak: Weak<Inner> = Arc::downgrade(&approvals.inner);
                    rt.spawn(async move {
                        loop {
                            let id = match rx.recv().await {
                                Ok(id) => id,
                                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                                    tracing::warn!(
                                        missed = n,
                                        "approval feed lagged; re-reading pending waiters"
                                    );
                                    let Some(inner) = weak.upgrade() else { return };
                                    let ids: Vec<Uuid> = match inner.waiters.lock() {
                                        Ok(w) => w.keys().copied().collect(),
                                        Err(_) => Vec::new(),
                                    };
                                    let hub = Approvals { inner };
                                    for id in ids {
                                        hub.refresh(id).await;
                                    }
                                    continue;
                                }
                                Err(_) => return,
                            };
                            let Some(inner) = weak.upgrade() else { return };
                            Approvals { inner }.refresh(id).await;
                        }
                    });
                }
                Err(_) => tracing::warn!(
                    "approval store has a resolution feed but no Tokio runtime runs; decisions made on other instances are seen only at timeout"
                ),
            }
        }
        approvals
    }
}

/// Cancels a held approval when the caller goes away.
struct HoldGuard {
    hub: Approvals,
    id: Uuid,
    audit: Option<AuditHandle>,
    armed: bool,
}

impl Drop for HoldGuard {
    fn drop(&mut self) {
        if let Ok(mut w) = self.hub.inner.waiters.lock() {
            w.remove(&self.id);
        }
        if !self.armed {
            return;
        }
        let hub = self.hub.clone();
        let id = self.id;
        let audit = self.audit.take();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                match hub
                    .inner
                    .store
                    .close(id, ApprovalStatus::Cancelled, Timestamp::now())
                    .await
                {
                    Ok(state) if state.status == ApprovalStatus::Cancelled => {
                        hub.record_request_event(audit.as_ref(), "approval.cancelled", &state)
                            .await;
                        hub.announce_resolved(&state).await;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(approval = %id, error = %e, "could not cancel approval")
                    }
                }
            });
        }
    }
}

impl Approvals {
    /// Starts a builder (memory store, 5-minute timeout, no sinks).
    pub fn builder() -> ApprovalsBuilder {
        ApprovalsBuilder {
            store: None,
            sinks: Vec::new(),
            audit: None,
            instance: String::new(),
            timeout: DEFAULT_TIMEOUT,
            max_grant: DEFAULT_MAX_GRANT,
            masker: None,
            default_approvers: Vec::new(),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn ApprovalStore> {
        &self.inner.store
    }

    /// Longest wait for a decision.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// Requests held by this instance right now.
    pub fn held(&self) -> usize {
        self.inner.waiters.lock().map(|w| w.len()).unwrap_or(0)
    }

    /// The preview of `text` (masked, truncated).
    pub fn preview(&self, text: &str) -> String {
        (self.inner.masker)(text)
    }

    /// Approver groups for a rule naming `groups` (the defaults when empty).
    pub(crate) fn approver_groups(&self, groups: &[String]) -> Vec<String> {
        if groups.is_empty() {
            self.inner.default_approvers.clone()
        } else {
            groups.to_vec()
        }
    }

    fn is_approver(approver: &Principal, groups: &[String]) -> bool {
        groups.iter().any(|g| approver.in_group(g))
    }

    /// Pending requests `approver` may decide (their own excluded), oldest first.
    ///
    /// # Errors
    /// [`ApprovalError::Unavailable`] when the store fails.
    pub async fn pending_for(
        &self,
        approver: &Principal,
    ) -> Result<Vec<ApprovalState>, ApprovalError> {
        let me = approver.id();
        Ok(self
            .inner
            .store
            .pending()
            .await?
            .into_iter()
            .filter(|s| {
                s.request.principal != me && Self::is_approver(approver, &s.request.approvers)
            })
            .collect())
    }

    /// One request, if `approver` is one of its approvers (else
    /// [`ApprovalError::NotFound`], to not reveal it).
    ///
    /// # Errors
    /// [`ApprovalError::NotFound`], [`ApprovalError::Unavailable`].
    pub async fn get_for(
        &self,
        id: Uuid,
        approver: &Principal,
    ) -> Result<ApprovalState, ApprovalError> {
        let s = self
            .inner
            .store
            .get(id)
            .await?
            .ok_or(ApprovalError::NotFound)?;
        if !Self::is_approver(approver, &s.request.approvers) {
            return Err(ApprovalError::NotFound);
        }
        Ok(s)
    }

    /// Records `approver`'s decision on request `id`, releasing the held
    /// request when it resolves (on whichever instance holds it). With
    /// `grant` on an approval that completes the request, also opens a
    /// grant for the same principal and rule for that long.
    ///
    /// Checks, in order: the request exists and `approver` is in one of its
    /// approver groups ([`NotFound`](ApprovalError::NotFound) /
    /// [`NotAnApprover`](ApprovalError::NotAnApprover)); it is not their own
    /// ([`SelfApproval`](ApprovalError::SelfApproval)); it is pending
    /// ([`NotPending`](ApprovalError::NotPending)); they did not approve it
    /// already; a denial has a reason; a grant is at most `max_grant`.
    ///
    /// # Errors
    /// As listed; [`ApprovalError::Unavailable`] when the store fails.
    pub async fn decide(
        &self,
        id: Uuid,
        approver: &Principal,
        verdict: ApprovalVerdict,
        reason: &str,
        grant: Option<Duration>,
    ) -> Result<ApprovalState, ApprovalError> {
        let reason = reason.trim();
        if reason.chars().count() > MAX_REASON_CHARS {
            return Err(ApprovalError::Invalid(format!(
                "reason is longer than {MAX_REASON_CHARS} characters"
            )));
        }
        if verdict == ApprovalVerdict::Deny && reason.is_empty() {
            return Err(ApprovalError::Invalid("a denial needs a reason".into()));
        }
        if let Some(g) = grant
            && (g > self.inner.max_grant || g.is_zero())
        {
            return Err(ApprovalError::Invalid(format!(
                "a grant lasts between 1 s and {} s",
                self.inner.max_grant.as_secs()
            )));
        }
        let state = self
            .inner
            .store
            .get(id)
            .await?
            .ok_or(ApprovalError::NotFound)?;
        let me = approver.id();
        if !Self::is_approver(approver, &state.request.approvers) {
            return Err(ApprovalError::NotAnApprover(state.request.rule.clone()));
        }
        if state.request.principal == me {
            return Err(ApprovalError::SelfApproval);
        }
        if !state.status.is_pending() {
            return Err(ApprovalError::NotPending(state.status));
        }
        if state
            .decisions
            .iter()
            .any(|d| d.approver == me && d.verdict == ApprovalVerdict::Approve)
        {
            return Err(ApprovalError::AlreadyApproved);
        }
        let decision = ApprovalDecision::new(id, me.clone(), verdict, reason);
        let state = self.inner.store.decide(&decision).await?;
        let kind = match verdict {
            ApprovalVerdict::Approve => "approval.approved",
            ApprovalVerdict::Deny => "approval.denied",
        };
        self.record_actor_event(
            kind,
            approver,
            state.request.exchange_id,
            serde_json::json!({
                "approval_id": id,
                "rule": state.request.rule,
                "principal": state.request.principal,
                "reason": reason,
                "approvals": state.approvals(),
                "approvals_required": state.request.approvals_required,
                "status": state.status.as_str(),
                "body_sha256": state.request.body_sha256,
            }),
        )
        .await;
        if let (Some(window), ApprovalStatus::Approved) = (grant, state.status) {
            let now = Timestamp::now();
            let g = Grant {
                id: Uuid::now_v7(),
                principal: state.request.principal.clone(),
                rule: state.request.rule.clone(),
                approvers: state.request.approvers.clone(),
                created_by: me,
                reason: reason.to_owned(),
                request_id: Some(id),
                created_at: now,
                expires_at: now
                    .checked_add(jiff::SignedDuration::try_from(window).unwrap_or_default())
                    .unwrap_or(now),
                revoked_at: None,
                revoked_by: None,
            };
            self.inner.store.insert_grant(&g).await?;
            self.record_actor_event(
                "grant.created",
                approver,
                None,
                serde_json::json!({
                    "grant_id": g.id,
                    "principal": g.principal,
                    "rule": g.rule,
                    "approval_id": id,
                    "expires_at": g.expires_at,
                    "reason": g.reason,
                }),
            )
            .await;
        }
        self.release(&state);
        if !state.status.is_pending() {
            self.announce_resolved(&state).await;
        }
        Ok(state)
    }

    /// Active grants `approver` may see (those of rules they approve for).
    ///
    /// # Errors
    /// [`ApprovalError::Unavailable`].
    pub async fn grants_for(&self, approver: &Principal) -> Result<Vec<Grant>, ApprovalError> {
        Ok(self
            .inner
            .store
            .grants(Timestamp::now())
            .await?
            .into_iter()
            .filter(|g| Self::is_approver(approver, &g.approvers))
            .collect())
    }

    /// Revokes grant `id`; `approver` must be an approver of its rule.
    ///
    /// # Errors
    /// [`ApprovalError::NotFound`] (also when not theirs to see),
    /// [`ApprovalError::Unavailable`].
    pub async fn revoke_grant(
        &self,
        id: Uuid,
        approver: &Principal,
    ) -> Result<Grant, ApprovalError> {
        let g = self
            .inner
            .store
            .grant(id)
            .await?
            .ok_or(ApprovalError::NotFound)?;
        if !Self::is_approver(approver, &g.approvers) {
            return Err(ApprovalError::NotFound);
        }
        let g = self
            .inner
            .store
            .revoke_grant(id, &approver.id(), Timestamp::now())
            .await?;
        self.record_actor_event(
            "grant.revoked",
            approver,
            None,
            serde_json::json!({"grant_id": g.id, "principal": g.principal, "rule": g.rule}),
        )
        .await;
        Ok(g)
    }

    /// An active grant for this principal and rule.
    pub(crate) async fn active_grant(
        &self,
        principal: &str,
        rule: &str,
    ) -> Result<Option<Grant>, ApprovalError> {
        Ok(self
            .inner
            .store
            .active_grant(principal, rule, Timestamp::now())
            .await?)
    }

    /// Stores `request`, announces it and waits for its resolution or its
    /// expiry. Dropping the future (the caller went away) cancels it.
    ///
    /// # Errors
    /// [`ApprovalError::Unavailable`] or [`ApprovalError::AuditUnavailable`]
    /// when it cannot even be put up for approval.
    pub(crate) async fn hold(
        &self,
        request: ApprovalRequest,
        audit: Option<&AuditHandle>,
    ) -> Result<ApprovalState, ApprovalError> {
        let id = request.id;
        let (tx, mut rx) = watch::channel(None);
        self.inner
            .waiters
            .lock()
            .map_err(|_| ApprovalError::Unavailable)?
            .insert(id, tx);
        let mut guard = HoldGuard {
            hub: self.clone(),
            id,
            audit: audit.cloned(),
            armed: false,
        };
        self.inner.store.insert(&request).await?;
        guard.armed = true;
        let requested = AuditEvent::new(
            "approval.requested",
            serde_json::json!({
                "approval_id": id,
                "rule": request.rule,
                "principal": request.principal,
                "approvers": request.approvers,
                "approvals_required": request.approvals_required,
                "body_sha256": request.body_sha256,
                "preview": request.preview,
                "expires_at": request.expires_at,
            }),
        );
        if let Some(a) = audit
            && let Err(e) = a.record_event(requested).await
        {
            tracing::error!(approval = %id, error = %e, "audit write failed; approval refused");
            guard.armed = false;
            let _ = self
                .inner
                .store
                .close(id, ApprovalStatus::Cancelled, Timestamp::now())
                .await;
            return Err(ApprovalError::AuditUnavailable);
        }
        let notes = self.inner.sinks.iter().map(|s| {
            let request = &request;
            async move {
                match tokio::time::timeout(SINK_TIMEOUT, s.notify(request)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(approval = %request.id, error = %e, "approval sink failed")
                    }
                    Err(_) => tracing::warn!(approval = %request.id, "approval sink timed out"),
                }
            }
        });
        futures_util::future::join_all(notes).await;
        let left = request
            .expires_at
            .duration_since(Timestamp::now())
            .try_into()
            .unwrap_or(Duration::ZERO);
        let state: Option<ApprovalState> = {
            match tokio::time::timeout(left, rx.wait_for(Option::is_some)).await {
                Ok(Ok(s)) => s.clone(),
                _ => None,
            }
        };
        let state = match state {
            Some(s) => s,
            None => {
                // Timed out here; a decision may have won the race in the store.
                let s = self
                    .inner
                    .store
                    .close(id, ApprovalStatus::TimedOut, Timestamp::now())
                    .await?;
                if s.status == ApprovalStatus::TimedOut {
                    self.record_request_event(audit, "approval.timed_out", &s)
                        .await;
                    self.announce_resolved(&s).await;
                }
                s
            }
        };
        guard.armed = false;
        Ok(state)
    }

    /// Wakes the local waiter of a resolved request.
    fn release(&self, state: &ApprovalState) {
        if state.status.is_pending() {
            return;
        }
        if let Ok(w) = self.inner.waiters.lock()
            && let Some(tx) = w.get(&state.request.id)
        {
            tx.send_replace(Some(state.clone()));
        }
    }

    /// Re-reads `id` after another instance resolved it and wakes its waiter here.
    async fn refresh(&self, id: Uuid) {
        let held = self
            .inner
            .waiters
            .lock()
            .map(|w| w.contains_key(&id))
            .unwrap_or(false);
        if !held {
            return;
        }
        match self.inner.store.get(id).await {
            Ok(Some(s)) => self.release(&s),
            Ok(None) => {}
            Err(e) => tracing::warn!(approval = %id, error = %e, "could not re-read approval"),
        }
    }

    async fn announce_resolved(&self, state: &ApprovalState) {
        for s in &self.inner.sinks {
            if let Ok(Err(e)) = tokio::time::timeout(SINK_TIMEOUT, s.resolved(state)).await {
                tracing::warn!(approval = %state.request.id, error = %e, "approval sink failed");
            }
        }
    }

    pub(crate) async fn record_request_event(
        &self,
        audit: Option<&AuditHandle>,
        kind: &str,
        state: &ApprovalState,
    ) {
        let event = AuditEvent::new(
            kind,
            serde_json::json!({
                "approval_id": state.request.id,
                "rule": state.request.rule,
                "principal": state.request.principal,
                "status": state.status.as_str(),
                "body_sha256": state.request.body_sha256,
            }),
        );
        let res = match audit {
            Some(a) => a.record_event(event).await,
            None => match &self.inner.audit {
                Some(s) => {
                    let mut event = event;
                    event.exchange_id = state.request.exchange_id;
                    event.instance.clone_from(&self.inner.instance);
                    s.record_event(&event).await
                }
                None => Ok(()),
            },
        };
        if let Err(e) = res {
            tracing::error!(approval = %state.request.id, kind, error = %e, "audit event not recorded");
        }
    }

    async fn record_actor_event(
        &self,
        kind: &str,
        actor: &Principal,
        exchange_id: Option<Uuid>,
        detail: serde_json::Value,
    ) {
        let Some(store) = &self.inner.audit else {
            tracing::info!(kind, actor = %actor.id(), detail = %detail, "approval event (no audit store configured)");
            return;
        };
        let mut event = AuditEvent::new(kind, detail);
        event.actor = Some(actor.clone());
        event.exchange_id = exchange_id;
        event.instance.clone_from(&self.inner.instance);
        if let Err(e) = store.record_event(&event).await {
            tracing::error!(kind, error = %e, "audit event not recorded");
        }
    }
}
