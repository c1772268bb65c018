//! [`RedisStore`]: counters in Redis, shared by every gateway instance
//! (feature `redis`).
//!
//! Admission is one Lua script ([`ADMIT_SCRIPT`]) run with `EVALSHA`: Redis
//! runs scripts one at a time, so reading every counter and recording the
//! request cannot interleave with another instance's admission. Request
//! counters are sorted sets of admission times (a sliding log); token
//! counters are integers per day (`INCRBY` in a `MULTI` transaction).
//!
//! Times come from the gateway's clock, not from Redis `TIME`, so that the
//! clock is injectable in tests; instances should keep their clocks in sync
//! (NTP). A skew of `s` seconds shifts each instance's view of the window by
//! `s`, nothing else.
//!
//! All keys of one admission are passed as `KEYS`, as Lua scripts require;
//! they do not share a hash slot, so Redis Cluster is not supported (use a
//! single primary, with replicas and Sentinel for availability).

use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::limits::redact_url;
use super::store::TOKEN_KEY_GRACE_MS;
use super::{Admission, BudgetStore, Check, CounterKind, CounterState, StoreError};

/// The admission script.
///
/// `KEYS`: one per check. `ARGV`: `now_ms`, a unique member for this
/// request, `dry_run` (`"1"`: only read), then per check its kind (`r` for
/// requests, `t` for tokens), its limit, and its window in ms (`r`) or the
/// end of its day in ms since the epoch (`t`).
///
/// Returns `{refused, used₁, retry_at₁, reset_at₁, used₂, …}` where
/// `refused` is the 1-based index of the first counter at or over its
/// limit, `0` when admitted (and then recorded unless `dry_run`).
pub const ADMIT_SCRIPT: &str = r#"
local now = tonumber(ARGV[1])
local member = ARGV[2]
local dry = ARGV[3] == '1'
local out = {0}
local refused = 0
for i = 1, #KEYS do
  local base = 3 + (i - 1) * 3
  local kind = ARGV[base + 1]
  local limit = tonumber(ARGV[base + 2])
  local param = tonumber(ARGV[base + 3])
  local used, retry_at, reset_at
  if kind == 'r' then
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - param)
    used = redis.call('ZCARD', KEYS[i])
    retry_at = now
    reset_at = now
    if used > 0 then
      local newest = redis.call('ZRANGE', KEYS[i], -1, -1, 'WITHSCORES')
      reset_at = tonumber(newest[2]) + param
    end
    if used >= limit then
      local at = redis.call('ZRANGE', KEYS[i], used - limit, used - limit, 'WITHSCORES')
      retry_at = tonumber(at[2]) + param
    end
  else
    used = tonumber(redis.call('GET', KEYS[i]) or '0')
    reset_at = param
    retry_at = now
    if used >= limit then
      retry_at = param
    end
  end
  if used >= limit and refused == 0 then
    refused = i
  end
  out[#out + 1] = used
  out[#out + 1] = retry_at
  out[#out + 1] = reset_at
end
if refused == 0 and not dry then
  for i = 1, #KEYS do
    local base = 3 + (i - 1) * 3
    if ARGV[base + 1] == 'r' then
      local window = tonumber(ARGV[base + 3])
      redis.call('ZADD', KEYS[i], now, member)
      redis.call('PEXPIRE', KEYS[i], window)
      local o = 2 + (i - 1) * 3
      out[o] = redis.call('ZCARD', KEYS[i])
      local newest = redis.call('ZRANGE', KEYS[i], -1, -1, 'WITHSCORES')
      out[o + 2] = tonumber(newest[2]) + window
    end
  end
end
out[1] = refused
return out
"#;

/// Counters in Redis, shared by every gateway instance that uses the same
/// server and key prefix.
///
/// Admission is one Lua script ([`ADMIT_SCRIPT`]) run with `EVALSHA`: Redis
/// runs scripts one at a time, so reading every counter and recording the
/// request cannot interleave with another instance's admission. Request
/// counters are sorted sets of admission times (a sliding log); token
/// counters are integers per day (`INCRBY` in a `MULTI` transaction).
/// Times come from the gateway's clock (keep instances in sync with NTP).
/// The keys of one admission do not share a hash slot: Redis Cluster is not
/// supported.
///
/// The connection is made lazily and re-made after a failure, so a gateway
/// starts while Redis is down; each operation then fails within the timeout
/// and the layer applies its `on_store_error` setting.
///
/// ```no_run
/// use skillgate::budget::RedisStore;
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = RedisStore::open("redis://127.0.0.1:6379", std::time::Duration::from_millis(500)).unwrap();
/// # let _ = store;
/// # });
/// ```
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    admit: redis::Script,
    timeout: Duration,
    shown_url: String,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.shown_url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: redis::RedisError) -> StoreError {
    if e.is_timeout() {
        StoreError::Timeout
    } else {
        StoreError::Unavailable(e.to_string())
    }
}

impl RedisStore {
    /// A store for the Redis at `url`, each operation (connecting included)
    /// bounded by `timeout`. Must be called inside a Tokio runtime.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] if the URL does not parse (the message
    /// does not repeat it).
    pub fn open(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        let client = redis::Client::open(url)
            .map_err(|e| StoreError::Unavailable(format!("bad redis URL: {:?}", e.kind())))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            // One attempt per operation: a down Redis must fail fast, not
            // hold requests through a reconnection back-off.
            .set_number_of_retries(0);
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(RedisStore {
            conn,
            admit: redis::Script::new(ADMIT_SCRIPT),
            timeout,
            shown_url: redact_url(url),
        })
    }

    async fn run(
        &self,
        checks: &[Check],
        now: Timestamp,
        dry_run: bool,
    ) -> Result<Admission, StoreError> {
        let now_ms = now.as_millisecond();
        let mut inv = self.admit.prepare_invoke();
        inv.arg(now_ms)
            .arg(format!("{now_ms}-{}", uuid::Uuid::now_v7()))
            .arg(if dry_run { "1" } else { "0" });
        for c in checks {
            inv.key(&c.key);
            match c.kind {
                CounterKind::Requests { window_ms } => inv.arg("r").arg(c.limit).arg(window_ms),
                CounterKind::Tokens { resets_at } => {
                    inv.arg("t").arg(c.limit).arg(resets_at.as_millisecond())
                }
            };
        }
        let mut conn = self.conn.clone();
        let out: Vec<i64> =
            match tokio::time::timeout(self.timeout, inv.invoke_async(&mut conn)).await {
                Err(_) => return Err(StoreError::Timeout),
                Ok(r) => r.map_err(unavailable)?,
            };
        if out.len() != 1 + 3 * checks.len() {
            return Err(StoreError::Unavailable(
                "admission script answered an unexpected shape".into(),
            ));
        }
        let ts = |ms: i64| Timestamp::from_millisecond(ms).unwrap_or(Timestamp::MAX);
        let states = out[1..]
            .chunks_exact(3)
            .map(|c| CounterState {
                used: u64::try_from(c[0]).unwrap_or(0),
                retry_at: ts(c[1]),
                reset_at: ts(c[2]),
            })
            .collect();
        let refused = usize::try_from(out[0]).ok().and_then(|i| i.checked_sub(1));
        Ok(Admission { refused, states })
    }
}

#[async_trait]
impl BudgetStore for RedisStore {
    async fn admit(&self, checks: &[Check], now: Timestamp) -> Result<Admission, StoreError> {
        if checks.is_empty() {
            return Ok(Admission {
                refused: None,
                states: vec![],
            });
        }
        self.run(checks, now, false).await
    }

    async fn peek(
        &self,
        checks: &[Check],
        now: Timestamp,
    ) -> Result<Vec<CounterState>, StoreError> {
        if checks.is_empty() {
            return Ok(vec![]);
        }
        Ok(self.run(checks, now, true).await?.states)
    }

    async fn add_tokens(&self, checks: &[Check], tokens: u64) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        let mut any = false;
        for c in checks {
            if let CounterKind::Tokens { resets_at } = c.kind {
                any = true;
                pipe.cmd("INCRBY").arg(&c.key).arg(tokens).ignore();
                pipe.cmd("PEXPIREAT")
                    .arg(&c.key)
                    .arg(
                        resets_at
                            .as_millisecond()
                            .saturating_add(TOKEN_KEY_GRACE_MS),
                    )
                    .ignore();
            }
        }
        if !any || tokens == 0 {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.timeout, pipe.query_async::<()>(&mut conn)).await {
            Err(_) => Err(StoreError::Timeout),
            Ok(r) => r.map_err(unavailable),
        }
    }
}
