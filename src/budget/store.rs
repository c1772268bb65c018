//! The [`BudgetStore`] plug-in trait and what it answers.

use async_trait::async_trait;
use jiff::Timestamp;

use super::Check;

/// Why the store could not answer. The message never contains a credential
/// (Redis URLs are redacted).
///
/// ```
/// use skillgate::budget::StoreError;
/// let e = StoreError::Timeout;
/// assert_eq!(e.to_string(), "budget store timed out");
/// ```
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// The store is unreachable or failed (connection refused, script error).
    #[error("budget store unavailable: {0}")]
    Unavailable(String),
    /// The store did not answer within the configured timeout.
    #[error("budget store timed out")]
    Timeout,
}

/// A counter's state as of a store operation.
///
/// ```
/// use skillgate::budget::CounterState;
/// let now: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
/// let s = CounterState { used: 3, retry_at: now, reset_at: now };
/// assert_eq!(s.remaining(5), 2);
/// assert_eq!(s.remaining(2), 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterState {
    /// Requests in the window, or tokens used today (after this request was
    /// recorded, when it was admitted).
    pub used: u64,
    /// When a request would next be admitted by this counter: `now` when it
    /// is under its limit; otherwise when enough of the window has slid out
    /// (requests) or the day ends (tokens).
    pub retry_at: Timestamp,
    /// When the counter is fully replenished: the newest request leaves the
    /// window (requests), or the day ends (tokens).
    pub reset_at: Timestamp,
}

impl CounterState {
    /// What is left of `limit`.
    pub fn remaining(&self, limit: u64) -> u64 {
        limit.saturating_sub(self.used)
    }
}

/// The answer to [`BudgetStore::admit`].
///
/// ```
/// use skillgate::budget::Admission;
/// let a = Admission { refused: None, states: vec![] };
/// assert!(a.admitted());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// Index (into the checks) of the first counter at or over its limit;
    /// `None` when the request was admitted and recorded.
    pub refused: Option<usize>,
    /// Each counter's state, in the order of the checks.
    pub states: Vec<CounterState>,
}

impl Admission {
    /// Whether the request was admitted.
    pub fn admitted(&self) -> bool {
        self.refused.is_none()
    }
}

/// Where counters live: in this process ([`MemoryStore`](super::MemoryStore))
/// or shared by every gateway instance (`RedisStore`, feature `redis`).
///
/// Implementations must make [`admit`](Self::admit) atomic over all its
/// checks: no other admission may interleave between reading the counters
/// and recording the request.
///
/// ```
/// use async_trait::async_trait;
/// use skillgate::budget::{Admission, BudgetStore, Check, CounterState, StoreError};
///
/// /// A store that admits everything and remembers nothing.
/// struct Unlimited;
/// #[async_trait]
/// impl BudgetStore for Unlimited {
///     async fn admit(&self, checks: &[Check], now: jiff::Timestamp) -> Result<Admission, StoreError> {
///         Ok(Admission { refused: None, states: self.peek(checks, now).await? })
///     }
///     async fn peek(&self, checks: &[Check], now: jiff::Timestamp) -> Result<Vec<CounterState>, StoreError> {
///         Ok(checks.iter().map(|_| CounterState { used: 0, retry_at: now, reset_at: now }).collect())
///     }
///     async fn add_tokens(&self, _: &[Check], _: u64) -> Result<(), StoreError> { Ok(()) }
/// }
/// ```
#[async_trait]
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a skillgate `BudgetStore`",
    note = "implement admit, peek and add_tokens with #[async_trait]"
)]
pub trait BudgetStore: Send + Sync + 'static {
    /// Atomically checks every counter at `now`. If each is under its limit,
    /// records the request in every request counter and returns
    /// `refused: None`; otherwise records nothing and names the first
    /// counter at or over its limit. Token counters are only read.
    async fn admit(&self, checks: &[Check], now: Timestamp) -> Result<Admission, StoreError>;

    /// Reads every counter at `now` without recording anything.
    async fn peek(&self, checks: &[Check], now: Timestamp)
    -> Result<Vec<CounterState>, StoreError>;

    /// Adds `tokens` to every token counter among `checks` (request counters
    /// are skipped). A counter expires a day after its day ends.
    async fn add_tokens(&self, checks: &[Check], tokens: u64) -> Result<(), StoreError>;
}

#[async_trait]
impl<T: BudgetStore + ?Sized> BudgetStore for std::sync::Arc<T> {
    async fn admit(&self, checks: &[Check], now: Timestamp) -> Result<Admission, StoreError> {
        (**self).admit(checks, now).await
    }
    async fn peek(
        &self,
        checks: &[Check],
        now: Timestamp,
    ) -> Result<Vec<CounterState>, StoreError> {
        (**self).peek(checks, now).await
    }
    async fn add_tokens(&self, checks: &[Check], tokens: u64) -> Result<(), StoreError> {
        (**self).add_tokens(checks, tokens).await
    }
}

/// How long a token counter is kept after its day ends, in ms (one day).
pub(crate) const TOKEN_KEY_GRACE_MS: i64 = 24 * 60 * 60 * 1000;
