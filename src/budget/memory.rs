//! [`MemoryStore`]: counters in this process, for a single gateway instance.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use jiff::Timestamp;

use super::store::TOKEN_KEY_GRACE_MS;
use super::{Admission, BudgetStore, Check, CounterKind, CounterState, StoreError};

/// How many operations between two sweeps of expired counters.
const SWEEP_EVERY: u64 = 1024;

enum Slot {
    /// Admission times (ms since the epoch), ascending.
    Log(VecDeque<i64>),
    /// Tokens used, and when the counter may be dropped (ms since the epoch).
    Count { used: u64, expires_ms: i64 },
}

/// Counters kept in this process: exact and atomic (one mutex), but not
/// shared with other gateway instances — each would allow the full limit.
/// Use Redis (feature `redis`) when several instances serve the same callers.
///
/// Expired counters are swept every 1024 operations.
///
/// ```
/// use skillgate::budget::{BudgetStore, Budgets, LimitConfig, MemoryStore, Scope};
/// use skillgate::identity::Principal;
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let budgets = Budgets::new(vec![LimitConfig {
///     id: "rpm".into(), scope: Scope::Principal, groups: vec![], subjects: vec![],
///     requests_per_minute: Some(2), tokens_per_day: None,
/// }], jiff::tz::TimeZone::UTC, "doc").unwrap();
/// let store = MemoryStore::new();
/// let now: jiff::Timestamp = "2026-01-01T12:00:00Z".parse().unwrap();
/// let checks = budgets.plan(&Principal::new("https://idp", "bot"), now);
/// assert!(store.admit(&checks, now).await.unwrap().admitted());
/// assert!(store.admit(&checks, now).await.unwrap().admitted());
/// let third = store.admit(&checks, now).await.unwrap();
/// assert_eq!(third.refused, Some(0));
/// assert_eq!(third.states[0].retry_at.to_string(), "2026-01-01T12:01:00Z");
/// # });
/// ```
#[derive(Default)]
pub struct MemoryStore {
    slots: Mutex<HashMap<String, Slot>>,
    ops: AtomicU64,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::MAX)
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn maybe_sweep(&self, slots: &mut HashMap<String, Slot>, now_ms: i64) {
        if !self
            .ops
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(SWEEP_EVERY)
        {
            return;
        }
        slots.retain(|_, slot| match slot {
            // A log whose newest entry left the window is empty at the next
            // read; a minute is the longest request window.
            Slot::Log(log) => log.back().is_some_and(|&t| t > now_ms - 60_000),
            Slot::Count { expires_ms, .. } => *expires_ms > now_ms,
        });
    }

    /// Reads (and prunes) every counter; the shared core of admit and peek.
    fn read(slots: &mut HashMap<String, Slot>, checks: &[Check], now_ms: i64) -> Admission {
        let mut refused = None;
        let mut states = Vec::with_capacity(checks.len());
        for (i, c) in checks.iter().enumerate() {
            let state = match c.kind {
                CounterKind::Requests { window_ms } => {
                    let (used, retry_at, reset_at) = match slots.get_mut(&c.key) {
                        Some(Slot::Log(log)) => {
                            while log.front().is_some_and(|&t| t <= now_ms - window_ms) {
                                log.pop_front();
                            }
                            let used = log.len() as u64;
                            let reset = log.back().map_or(now_ms, |&t| t + window_ms);
                            let retry = if used >= c.limit {
                                let idx = usize::try_from(used - c.limit).unwrap_or(0);
                                log.get(idx).map_or(now_ms, |&t| t + window_ms)
                            } else {
                                now_ms
                            };
                            (used, retry, reset)
                        }
                        _ => (0, now_ms, now_ms),
                    };
                    CounterState {
                        used,
                        retry_at: ts(retry_at),
                        reset_at: ts(reset_at),
                    }
                }
                CounterKind::Tokens { resets_at } => {
                    let used = match slots.get(&c.key) {
                        Some(Slot::Count { used, .. }) => *used,
                        _ => 0,
                    };
                    CounterState {
                        used,
                        retry_at: if used >= c.limit {
                            resets_at
                        } else {
                            ts(now_ms)
                        },
                        reset_at: resets_at,
                    }
                }
            };
            if state.used >= c.limit && refused.is_none() {
                refused = Some(i);
            }
            states.push(state);
        }
        Admission { refused, states }
    }
}

#[async_trait]
impl BudgetStore for MemoryStore {
    async fn admit(&self, checks: &[Check], now: Timestamp) -> Result<Admission, StoreError> {
        let now_ms = ms(now);
        let mut slots = self.lock();
        self.maybe_sweep(&mut slots, now_ms);
        let mut adm = Self::read(&mut slots, checks, now_ms);
        if adm.admitted() {
            for (c, state) in checks.iter().zip(adm.states.iter_mut()) {
                if let CounterKind::Requests { window_ms } = c.kind {
                    let slot = slots
                        .entry(c.key.clone())
                        .or_insert_with(|| Slot::Log(VecDeque::new()));
                    if !matches!(slot, Slot::Log(_)) {
                        *slot = Slot::Log(VecDeque::new());
                    }
                    if let Slot::Log(log) = slot {
                        // Keep the log sorted even if clocks step backwards.
                        let at = log.partition_point(|&t| t <= now_ms);
                        log.insert(at, now_ms);
                        state.used = log.len() as u64;
                        state.reset_at = ts(log.back().copied().unwrap_or(now_ms) + window_ms);
                    }
                }
            }
        }
        Ok(adm)
    }

    async fn peek(
        &self,
        checks: &[Check],
        now: Timestamp,
    ) -> Result<Vec<CounterState>, StoreError> {
        let mut slots = self.lock();
        Ok(Self::read(&mut slots, checks, ms(now)).states)
    }

    async fn add_tokens(&self, checks: &[Check], tokens: u64) -> Result<(), StoreError> {
        let mut slots = self.lock();
        for c in checks {
            if let CounterKind::Tokens { resets_at } = c.kind {
                let expires_ms = ms(resets_at).saturating_add(TOKEN_KEY_GRACE_MS);
                match slots.get_mut(&c.key) {
                    Some(Slot::Count { used, .. }) => *used = used.saturating_add(tokens),
                    _ => {
                        slots.insert(
                            c.key.clone(),
                            Slot::Count {
                                used: tokens,
                                expires_ms,
                            },
                        );
                    }
                }
            }
        }
        Ok(())
    }
}
