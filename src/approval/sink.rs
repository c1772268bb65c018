//! Where new approval requests are announced: the [`ApprovalSink`] trait and
//! the in-process [`ChannelSink`].

use async_trait::async_trait;
use tokio::sync::broadcast;

use super::types::{ApprovalRequest, ApprovalState};

/// Announces approval requests to approvers (a chat bridge, a ticket system,
/// a test). Called once per new request, before the caller starts waiting;
/// a sink must not block for long (the gateway bounds each call at 10 s)
/// and must never see the unmasked prompt (it gets the masked
/// [`ApprovalRequest`]).
///
/// Decisions do not come back through the sink: approvers decide with
/// [`Approvals::decide`](super::Approvals::decide), the approver HTTP API or
/// a signed webhook callback.
///
/// ```
/// use async_trait::async_trait;
/// use skillgate::approval::{ApprovalRequest, ApprovalSink, SinkError};
///
/// struct Log;
///
/// #[async_trait]
/// impl ApprovalSink for Log {
///     async fn notify(&self, r: &ApprovalRequest) -> Result<(), SinkError> {
///         println!("approval {} needed for rule {}", r.id, r.rule);
///         Ok(())
///     }
/// }
/// ```
#[async_trait]
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a skillgate `ApprovalSink`",
    note = "implement `async fn notify(&self, request: &ApprovalRequest) -> Result<(), SinkError>` with #[async_trait]"
)]
pub trait ApprovalSink: Send + Sync + 'static {
    /// A new request is waiting.
    async fn notify(&self, request: &ApprovalRequest) -> Result<(), SinkError>;

    /// A request left `pending` (approved, denied, timed out, cancelled).
    /// Default: nothing.
    async fn resolved(&self, _state: &ApprovalState) -> Result<(), SinkError> {
        Ok(())
    }
}

/// A sink failed to deliver; logged, the request keeps waiting for other
/// channels (the inbox lists it regardless).
///
/// ```
/// let e = skillgate::approval::SinkError("webhook answered 500".into());
/// assert_eq!(e.to_string(), "approval sink: webhook answered 500");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("approval sink: {0}")]
pub struct SinkError(pub String);

/// What a [`ChannelSink`] sends its subscribers.
///
/// ```
/// use skillgate::approval::{ApprovalRequest, ChannelEvent};
/// let e = ChannelEvent::Requested(Box::new(ApprovalRequest::example()));
/// assert!(matches!(e, ChannelEvent::Requested(_)));
/// ```
#[derive(Debug, Clone)]
pub enum ChannelEvent {
    /// A new request waits.
    Requested(Box<ApprovalRequest>),
    /// A request left `pending`.
    Resolved(Box<ApprovalState>),
}

/// The in-process channel: every request (and resolution) is broadcast to
/// subscribers in this process, for library users and tests. Decide with
/// [`Approvals::decide`](super::Approvals::decide).
///
/// ```
/// use skillgate::approval::ChannelSink;
/// let sink = ChannelSink::new(64);
/// let mut rx = sink.subscribe();
/// # let _ = &mut rx;
/// ```
#[derive(Debug, Clone)]
pub struct ChannelSink {
    tx: broadcast::Sender<ChannelEvent>,
}

impl ChannelSink {
    /// A channel keeping up to `capacity` unread events per subscriber
    /// (slow subscribers miss the oldest).
    pub fn new(capacity: usize) -> Self {
        ChannelSink {
            tx: broadcast::channel(capacity.max(1)).0,
        }
    }

    /// A new subscriber; it sees events sent from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ChannelEvent> {
        self.tx.subscribe()
    }
}

#[async_trait]
impl ApprovalSink for ChannelSink {
    async fn notify(&self, request: &ApprovalRequest) -> Result<(), SinkError> {
        // No subscriber is not an error: the inbox and API still list it.
        let _ = self
            .tx
            .send(ChannelEvent::Requested(Box::new(request.clone())));
        Ok(())
    }

    async fn resolved(&self, state: &ApprovalState) -> Result<(), SinkError> {
        let _ = self
            .tx
            .send(ChannelEvent::Resolved(Box::new(state.clone())));
        Ok(())
    }
}
