//! Where pending approvals, decisions and grants live: the
//! [`ApprovalStore`] trait and the single-instance [`MemoryApprovalStore`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use jiff::Timestamp;
use uuid::Uuid;

use super::types::{ApprovalDecision, ApprovalRequest, ApprovalState, ApprovalStatus, Grant};

/// Why a store operation failed.
///
/// ```
/// use skillgate::approval::{ApprovalStatus, ApprovalStoreError};
/// let e = ApprovalStoreError::NotPending(ApprovalStatus::Denied);
/// assert_eq!(e.to_string(), "the approval is no longer pending (denied)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalStoreError {
    /// No such approval or grant.
    #[error("no such approval")]
    NotFound,
    /// The approval was already resolved.
    #[error("the approval is no longer pending ({})", .0.as_str())]
    NotPending(ApprovalStatus),
    /// The backend failed (connection, query); the message names no secret.
    #[error("approval store unavailable: {0}")]
    Unavailable(String),
}

/// Shared state of approvals. Implementations must make
/// [`decide`](Self::decide) and [`close`](Self::close) atomic: a request
/// leaves `pending` exactly once, whichever instance gets there first.
///
/// ```
/// use skillgate::approval::{ApprovalStore, MemoryApprovalStore};
/// let store: std::sync::Arc<dyn ApprovalStore> = std::sync::Arc::new(MemoryApprovalStore::new());
/// # let _ = store;
/// ```
#[async_trait]
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a skillgate `ApprovalStore`",
    note = "implement the async methods of `skillgate::approval::ApprovalStore` with #[async_trait]"
)]
pub trait ApprovalStore: Send + Sync + 'static {
    /// Stores a new pending request.
    async fn insert(&self, request: &ApprovalRequest) -> Result<(), ApprovalStoreError>;
    /// The request and its decisions.
    async fn get(&self, id: Uuid) -> Result<Option<ApprovalState>, ApprovalStoreError>;
    /// Every pending request, oldest first.
    async fn pending(&self) -> Result<Vec<ApprovalState>, ApprovalStoreError>;
    /// Applies a decision to a pending request ([`ApprovalState::apply`]) and
    /// returns the new state; [`ApprovalStoreError::NotPending`] if it was
    /// already resolved.
    async fn decide(
        &self,
        decision: &ApprovalDecision,
    ) -> Result<ApprovalState, ApprovalStoreError>;
    /// Resolves a pending request as `status` (`timed_out` or `cancelled`);
    /// returns the final state, which is another one if a decision won the race.
    async fn close(
        &self,
        id: Uuid,
        status: ApprovalStatus,
        at: Timestamp,
    ) -> Result<ApprovalState, ApprovalStoreError>;
    /// Stores a grant.
    async fn insert_grant(&self, grant: &Grant) -> Result<(), ApprovalStoreError>;
    /// A grant active at `now` for this principal and rule, if any.
    async fn active_grant(
        &self,
        principal: &str,
        rule: &str,
        now: Timestamp,
    ) -> Result<Option<Grant>, ApprovalStoreError>;
    /// Every grant active at `now`.
    async fn grants(&self, now: Timestamp) -> Result<Vec<Grant>, ApprovalStoreError>;
    /// A grant by id, active or not.
    async fn grant(&self, id: Uuid) -> Result<Option<Grant>, ApprovalStoreError>;
    /// Revokes a grant; returns it as revoked.
    async fn revoke_grant(
        &self,
        id: Uuid,
        by: &str,
        at: Timestamp,
    ) -> Result<Grant, ApprovalStoreError>;
    /// Remembers a webhook callback nonce until `expires`; `false` if it was
    /// already used (a replay).
    async fn use_nonce(&self, nonce: &str, expires: Timestamp) -> Result<bool, ApprovalStoreError>;
    /// A feed of approval ids resolved by *other* instances, for stores
    /// shared between instances (PostgreSQL `LISTEN`). `None`: every decision
    /// is made in this process.
    fn resolutions(&self) -> Option<tokio::sync::broadcast::Receiver<Uuid>> {
        None
    }
}

#[async_trait]
impl<T: ApprovalStore + ?Sized> ApprovalStore for Arc<T> {
    async fn insert(&self, r: &ApprovalRequest) -> Result<(), ApprovalStoreError> {
        (**self).insert(r).await
    }
    async fn get(&self, id: Uuid) -> Result<Option<ApprovalState>, ApprovalStoreError> {
        (**self).get(id).await
    }
    async fn pending(&self) -> Result<Vec<ApprovalState>, ApprovalStoreError> {
        (**self).pending().await
    }
    async fn decide(&self, d: &ApprovalDecision) -> Result<ApprovalState, ApprovalStoreError> {
        (**self).decide(d).await
    }
    async fn close(
        &self,
        id: Uuid,
        status: ApprovalStatus,
        at: Timestamp,
    ) -> Result<ApprovalState, ApprovalStoreError> {
        (**self).close(id, status, at).await
    }
    async fn insert_grant(&self, g: &Grant) -> Result<(), ApprovalStoreError> {
        (**self).insert_grant(g).await
    }
    async fn active_grant(
        &self,
        p: &str,
        r: &str,
        now: Timestamp,
    ) -> Result<Option<Grant>, ApprovalStoreError> {
        (**self).active_grant(p, r, now).await
    }
    async fn grants(&self, now: Timestamp) -> Result<Vec<Grant>, ApprovalStoreError> {
        (**self).grants(now).await
    }
    async fn grant(&self, id: Uuid) -> Result<Option<Grant>, ApprovalStoreError> {
        (**self).grant(id).await
    }
    async fn revoke_grant(
        &self,
        id: Uuid,
        by: &str,
        at: Timestamp,
    ) -> Result<Grant, ApprovalStoreError> {
        (**self).revoke_grant(id, by, at).await
    }
    async fn use_nonce(&self, n: &str, e: Timestamp) -> Result<bool, ApprovalStoreError> {
        (**self).use_nonce(n, e).await
    }
    fn resolutions(&self) -> Option<tokio::sync::broadcast::Receiver<Uuid>> {
        (**self).resolutions()
    }
}

/// Approvals in this process only (one gateway instance, library use,
/// tests). Resolved requests are dropped from memory at once (their record
/// is in the audit store); expired grants and nonces on the next write.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use skillgate::approval::*;
/// let store = MemoryApprovalStore::new();
/// let req = ApprovalRequest::example();
/// store.insert(&req).await.unwrap();
/// let d = ApprovalDecision::new(req.id, "https://idp#alice", ApprovalVerdict::Approve, "ok");
/// assert_eq!(store.decide(&d).await.unwrap().status, ApprovalStatus::Approved);
/// assert!(store.decide(&d).await.is_err(), "decided once");
/// # });
/// ```
#[derive(Debug, Default)]
pub struct MemoryApprovalStore {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    pending: HashMap<Uuid, ApprovalState>,
    /// Resolved requests, kept briefly so late readers see the outcome.
    resolved: HashMap<Uuid, ApprovalState>,
    grants: HashMap<Uuid, Grant>,
    nonces: HashMap<String, Timestamp>,
}

/// Resolved states kept in memory at most (oldest dropped first).
const MAX_RESOLVED_KEPT: usize = 1024;

impl MemoryApprovalStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, MemoryInner>, ApprovalStoreError> {
        self.inner
            .lock()
            .map_err(|_| ApprovalStoreError::Unavailable("memory store poisoned".into()))
    }
}

impl MemoryInner {
    fn resolve(&mut self, state: ApprovalState) {
        self.pending.remove(&state.request.id);
        if self.resolved.len() >= MAX_RESOLVED_KEPT
            && let Some(oldest) = self
                .resolved
                .values()
                .min_by_key(|s| s.resolved_at)
                .map(|s| s.request.id)
        {
            self.resolved.remove(&oldest);
        }
        self.resolved.insert(state.request.id, state);
    }
}

#[async_trait]
impl ApprovalStore for MemoryApprovalStore {
    async fn insert(&self, r: &ApprovalRequest) -> Result<(), ApprovalStoreError> {
        self.lock()?
            .pending
            .insert(r.id, ApprovalState::new(r.clone()));
        Ok(())
    }

    async fn get(&self, id: Uuid) -> Result<Option<ApprovalState>, ApprovalStoreError> {
        let g = self.lock()?;
        Ok(g.pending.get(&id).or_else(|| g.resolved.get(&id)).cloned())
    }

    async fn pending(&self) -> Result<Vec<ApprovalState>, ApprovalStoreError> {
        let mut v: Vec<_> = self.lock()?.pending.values().cloned().collect();
        v.sort_by_key(|s| (s.request.created_at, s.request.id));
        Ok(v)
    }

    async fn decide(&self, d: &ApprovalDecision) -> Result<ApprovalState, ApprovalStoreError> {
        let mut g = self.lock()?;
        let Some(state) = g.pending.get_mut(&d.request_id) else {
            return Err(match g.resolved.get(&d.request_id) {
                Some(s) => ApprovalStoreError::NotPending(s.status),
                None => ApprovalStoreError::NotFound,
            });
        };
        state.apply(d.clone());
        let state = state.clone();
        if !state.status.is_pending() {
            g.resolve(state.clone());
        }
        Ok(state)
    }

    async fn close(
        &self,
        id: Uuid,
        status: ApprovalStatus,
        at: Timestamp,
    ) -> Result<ApprovalState, ApprovalStoreError> {
        let mut g = self.lock()?;
        match g.pending.remove(&id) {
            Some(mut s) => {
                s.status = status;
                s.resolved_at = Some(at);
                g.resolve(s.clone());
                Ok(s)
            }
            None => g
                .resolved
                .get(&id)
                .cloned()
                .ok_or(ApprovalStoreError::NotFound),
        }
    }

    async fn insert_grant(&self, grant: &Grant) -> Result<(), ApprovalStoreError> {
        let mut g = self.lock()?;
        let now = Timestamp::now();
        g.grants
            .retain(|_, x| x.expires_at > now && x.revoked_at.is_none());
        g.grants.insert(grant.id, grant.clone());
        Ok(())
    }

    async fn active_grant(
        &self,
        principal: &str,
        rule: &str,
        now: Timestamp,
    ) -> Result<Option<Grant>, ApprovalStoreError> {
        Ok(self
            .lock()?
            .grants
            .values()
            .find(|g| g.principal == principal && g.rule == rule && g.is_active(now))
            .cloned())
    }

    async fn grants(&self, now: Timestamp) -> Result<Vec<Grant>, ApprovalStoreError> {
        let mut v: Vec<_> = self
            .lock()?
            .grants
            .values()
            .filter(|g| g.is_active(now))
            .cloned()
            .collect();
        v.sort_by_key(|g| (g.created_at, g.id));
        Ok(v)
    }

    async fn grant(&self, id: Uuid) -> Result<Option<Grant>, ApprovalStoreError> {
        Ok(self.lock()?.grants.get(&id).cloned())
    }

    async fn revoke_grant(
        &self,
        id: Uuid,
        by: &str,
        at: Timestamp,
    ) -> Result<Grant, ApprovalStoreError> {
        let mut g = self.lock()?;
        let grant = g.grants.get_mut(&id).ok_or(ApprovalStoreError::NotFound)?;
        if grant.revoked_at.is_none() {
            grant.revoked_at = Some(at);
            grant.revoked_by = Some(by.to_owned());
        }
        Ok(grant.clone())
    }

    async fn use_nonce(&self, nonce: &str, expires: Timestamp) -> Result<bool, ApprovalStoreError> {
        let mut g = self.lock()?;
        let now = Timestamp::now();
        g.nonces.retain(|_, e| *e > now);
        if g.nonces.contains_key(nonce) {
            return Ok(false);
        }
        g.nonces.insert(nonce.to_owned(), expires);
        Ok(true)
    }
}
