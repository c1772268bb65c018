//! The [`AuditStore`] plug-in trait.

use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

use super::{AuditEvent, AuditQuery, AuditRecord, RequestRecord, ResponseRecord};

/// Why a store operation failed. Carries no request content.
///
/// ```
/// use skillgate::audit::AuditError;
/// let e = AuditError::Unavailable("connection refused".into());
/// assert!(e.to_string().contains("unavailable"));
/// ```
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuditError {
    /// The store cannot be reached or refused the write.
    #[error("audit store unavailable: {0}")]
    Unavailable(String),
    /// A stored record could not be decoded.
    #[error("audit record corrupt: {0}")]
    Corrupt(String),
    /// A response was recorded for an id with no request record.
    #[error("no request record for this id")]
    UnknownId,
}

/// Where audit records go. Shared by all requests of a gateway (and, for a
/// shared database, by all instances).
///
/// `record_request` must be durable when it returns `Ok`: the gateway forwards
/// a request only after that. Implementations must not log bodies.
///
/// ```
/// use std::sync::Mutex;
/// use async_trait::async_trait;
/// use skillgate::audit::{AuditError, AuditEvent, AuditQuery, AuditRecord, AuditStore, RequestRecord, ResponseRecord};
///
/// #[derive(Default)]
/// struct InMemory(Mutex<Vec<AuditRecord>>, Mutex<Vec<AuditEvent>>);
///
/// #[async_trait]
/// impl AuditStore for InMemory {
///     async fn record_request(&self, r: &RequestRecord) -> Result<(), AuditError> {
///         self.0.lock().unwrap().push(AuditRecord { request: r.clone(), response: None });
///         Ok(())
///     }
///     async fn record_response(&self, r: &ResponseRecord) -> Result<(), AuditError> {
///         let mut v = self.0.lock().unwrap();
///         let rec = v.iter_mut().find(|x| x.request.id == r.id).ok_or(AuditError::UnknownId)?;
///         rec.response = Some(r.clone());
///         Ok(())
///     }
///     async fn get(&self, id: uuid::Uuid) -> Result<Option<AuditRecord>, AuditError> {
///         Ok(self.0.lock().unwrap().iter().find(|x| x.request.id == id).cloned())
///     }
///     async fn recent(&self, limit: usize) -> Result<Vec<AuditRecord>, AuditError> {
///         Ok(self.0.lock().unwrap().iter().rev().take(limit).cloned().collect())
///     }
///     async fn query(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>, AuditError> {
///         let v = self.0.lock().unwrap();
///         Ok(v.iter().rev().filter(|r| q.matches(r)).take(q.limit).cloned().collect())
///     }
///     async fn record_event(&self, e: &AuditEvent) -> Result<(), AuditError> {
///         self.1.lock().unwrap().push(e.clone());
///         Ok(())
///     }
///     async fn recent_events(&self, limit: usize) -> Result<Vec<AuditEvent>, AuditError> {
///         Ok(self.1.lock().unwrap().iter().rev().take(limit).cloned().collect())
///     }
/// }
/// ```
#[async_trait]
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a skillgate `AuditStore`",
    note = "implement record_request, record_response, get, recent, query, record_event and recent_events with #[async_trait]"
)]
pub trait AuditStore: Send + Sync + 'static {
    /// Durably writes the request half. Called once per exchange, before forwarding.
    async fn record_request(&self, record: &RequestRecord) -> Result<(), AuditError>;
    /// Writes the response half of an exchange whose request is recorded.
    async fn record_response(&self, record: &ResponseRecord) -> Result<(), AuditError>;
    /// Writes a provisional response half when the response headers go to
    /// the client (`complete = false`, status, upstream request id, no
    /// body), so a gateway killed mid-stream leaves an incomplete response
    /// record. Never overwrites a response already recorded. Default: does
    /// nothing (the store keeps only the final record).
    async fn record_response_started(&self, record: &ResponseRecord) -> Result<(), AuditError> {
        let _ = record;
        Ok(())
    }
    /// Reads one exchange.
    async fn get(&self, id: Uuid) -> Result<Option<AuditRecord>, AuditError>;
    /// The newest `limit` exchanges, newest first.
    async fn recent(&self, limit: usize) -> Result<Vec<AuditRecord>, AuditError>;
    /// The exchanges that pass every filter of `query`, newest first, at
    /// most `query.limit` (semantics: [`AuditQuery::matches`]).
    async fn query(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, AuditError>;
    /// Durably writes an event that is not one exchange's request or
    /// response (approvals, grants, checkpoints). Callers treat an error as
    /// a reason to refuse what the event records (fail closed).
    async fn record_event(&self, event: &AuditEvent) -> Result<(), AuditError>;
    /// The newest `limit` events, newest first.
    async fn recent_events(&self, limit: usize) -> Result<Vec<AuditEvent>, AuditError>;
}

#[async_trait]
impl<T: AuditStore + ?Sized> AuditStore for Arc<T> {
    async fn record_request(&self, record: &RequestRecord) -> Result<(), AuditError> {
        (**self).record_request(record).await
    }
    async fn record_response(&self, record: &ResponseRecord) -> Result<(), AuditError> {
        (**self).record_response(record).await
    }
    async fn record_response_started(&self, record: &ResponseRecord) -> Result<(), AuditError> {
        (**self).record_response_started(record).await
    }
    async fn get(&self, id: Uuid) -> Result<Option<AuditRecord>, AuditError> {
        (**self).get(id).await
    }
    async fn recent(&self, limit: usize) -> Result<Vec<AuditRecord>, AuditError> {
        (**self).recent(limit).await
    }
    async fn query(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, AuditError> {
        (**self).query(query).await
    }
    async fn record_event(&self, event: &AuditEvent) -> Result<(), AuditError> {
        (**self).record_event(event).await
    }
    async fn recent_events(&self, limit: usize) -> Result<Vec<AuditEvent>, AuditError> {
        (**self).recent_events(limit).await
    }
}
