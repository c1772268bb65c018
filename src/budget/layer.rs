//! [`BudgetLayer`], its service, and the body that counts tokens as the
//! response streams ([`BudgetBody`]).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::{Frame, SizeHint};
use jiff::Timestamp;
use tower::{Layer, Service};

use super::usage::DEFAULT_MAX_JSON_BYTES;
use super::{
    Admission, BudgetConfig, BudgetError, BudgetStore, Budgets, Check, CounterKind, MemoryStore,
    OnStoreError, StoreError, UsageMeter,
};
use crate::audit::AuditHandle;
use crate::body::{Body, BoxError};
use crate::error::{Error, ErrorType, error_response};
use crate::identity::{Principal, ResponseFuture};
use crate::policy::Clock;

/// The public message of a refusal for an unavailable budget store.
const STORE_UNAVAILABLE: &str =
    "the gateway cannot check rate limits right now; nothing was forwarded";

/// Enforces [`Budgets`] with a [`BudgetStore`]; see the [module docs](crate::budget).
///
/// ```
/// use skillgate::budget::{BudgetLayer, Budgets, MemoryStore, OnStoreError};
/// let budgets = Budgets::new(vec![], jiff::tz::TimeZone::UTC, "doc").unwrap();
/// let layer = BudgetLayer::new(budgets, MemoryStore::new())
///     .on_store_error(OnStoreError::Deny)
///     .store_timeout(std::time::Duration::from_millis(250))
///     .clock(|| "2026-01-01T00:00:00Z".parse().unwrap());
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct BudgetLayer {
    budgets: Arc<Budgets>,
    store: Arc<dyn BudgetStore>,
    clock: Clock,
    on_store_error: OnStoreError,
    timeout: Duration,
    max_json_bytes: usize,
}

impl std::fmt::Debug for BudgetLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetLayer")
            .field("budgets", &self.budgets)
            .field("on_store_error", &self.on_store_error)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl BudgetLayer {
    /// A layer enforcing `budgets` with counters in `store`; fails closed,
    /// store timeout 500 ms, system clock.
    pub fn new(budgets: Budgets, store: impl BudgetStore) -> Self {
        Self::from_arc(Arc::new(budgets), Arc::new(store))
    }

    /// A layer over already shared parts.
    pub fn from_arc(budgets: Arc<Budgets>, store: Arc<dyn BudgetStore>) -> Self {
        BudgetLayer {
            budgets,
            store,
            clock: Arc::new(Timestamp::now),
            on_store_error: OnStoreError::Deny,
            timeout: Duration::from_millis(super::limits::DEFAULT_STORE_TIMEOUT_MS),
            max_json_bytes: DEFAULT_MAX_JSON_BYTES,
        }
    }

    /// The layer a `[budgets]` section describes, or `None` when it has no
    /// limits. With `redis_url` the counters are in Redis (feature `redis`;
    /// the connection is made on first use), else in this process. Must be
    /// called inside a Tokio runtime when `redis_url` is set.
    ///
    /// # Errors
    /// [`BudgetError`] for bad limits, an unknown time zone, a bad Redis URL,
    /// or a `redis_url` in a build without the `redis` feature.
    pub fn from_config(cfg: &BudgetConfig) -> Result<Option<Self>, BudgetError> {
        if cfg.limits.is_empty() {
            return Ok(None);
        }
        let budgets = Budgets::from_config(cfg)?;
        let timeout = Duration::from_millis(cfg.store_timeout_ms.max(1));
        let store: Arc<dyn BudgetStore> = match &cfg.redis_url {
            None => Arc::new(MemoryStore::new()),
            #[cfg(feature = "redis")]
            Some(url) => Arc::new(
                super::RedisStore::open(url, timeout)
                    .map_err(|e| BudgetError::Store(e.to_string()))?,
            ),
            #[cfg(not(feature = "redis"))]
            Some(_) => {
                return Err(BudgetError::Store(
                    "budgets.redis_url is set but skillgate was built without the `redis` feature"
                        .into(),
                ));
            }
        };
        Ok(Some(
            Self::from_arc(Arc::new(budgets), store)
                .on_store_error(cfg.on_store_error)
                .store_timeout(timeout),
        ))
    }

    /// What to do when the store fails (default [`OnStoreError::Deny`]).
    pub fn on_store_error(mut self, v: OnStoreError) -> Self {
        self.on_store_error = v;
        self
    }

    /// Longest wait for one store operation (default 500 ms); longer counts
    /// as a store failure.
    pub fn store_timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// Largest JSON response kept whole to read its `usage` (default 8 MiB).
    pub fn max_json_bytes(mut self, n: usize) -> Self {
        self.max_json_bytes = n;
        self
    }

    /// Replaces the clock (default: system time).
    pub fn clock(mut self, clock: impl Fn() -> Timestamp + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The limits enforced.
    pub fn budgets(&self) -> &Arc<Budgets> {
        &self.budgets
    }

    /// The store the counters live in.
    pub fn store(&self) -> &Arc<dyn BudgetStore> {
        &self.store
    }
}

impl<S> Layer<S> for BudgetLayer {
    type Service = BudgetService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        BudgetService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`BudgetLayer`].
#[derive(Clone)]
pub struct BudgetService<S> {
    inner: S,
    layer: BudgetLayer,
}

/// Whole seconds from `now` until `at`, rounded up, at least 1.
fn seconds_until(now: Timestamp, at: Timestamp) -> i64 {
    let ms = at.as_millisecond() - now.as_millisecond();
    ((ms + 999) / 1000).max(1)
}

/// RFC 3339 at whole seconds (rounded up), e.g. `2026-01-01T00:01:00Z`.
fn rfc3339(at: Timestamp) -> String {
    let secs = at.as_millisecond().div_euclid(1000) + i64::from(at.as_millisecond() % 1000 != 0);
    Timestamp::from_second(secs).unwrap_or(at).to_string()
}

fn set(res: &mut Response<Body>, name: &'static str, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        res.headers_mut().insert(name, v);
    }
}

/// The 429 for a refusal by `checks[idx]`, and the audit reason.
///
/// Headers: `retry-after` (seconds until the refusing counter admits again);
/// `x-should-retry: true` only when that is at most 60 s (the SDKs wait out
/// `retry-after` up to 60 s), else `false`; and per kind of counter the most
/// restrictive one's `anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`.
fn refusal(
    checks: &[Check],
    adm: &Admission,
    idx: usize,
    now: Timestamp,
) -> (Response<Body>, String) {
    let check = &checks[idx];
    let state = adm.states[idx];
    let secs = seconds_until(now, state.retry_at);
    let (message, reason) = match check.kind {
        CounterKind::Requests { .. } => (
            format!(
                "rate limit `{}` reached: {} requests per minute; retry in {secs} s",
                check.limit_id, check.limit
            ),
            format!(
                "budget limit {}: {} of {} requests per minute",
                check.limit_id, state.used, check.limit
            ),
        ),
        CounterKind::Tokens { .. } => (
            format!(
                "token budget `{}` used up: {} of {} tokens today; resets at {}",
                check.limit_id,
                state.used,
                check.limit,
                rfc3339(state.reset_at)
            ),
            format!(
                "budget limit {}: {} of {} tokens per day",
                check.limit_id, state.used, check.limit
            ),
        ),
    };
    let mut res = error_response(
        StatusCode::TOO_MANY_REQUESTS,
        ErrorType::RateLimit,
        &message,
        secs <= 60,
    );
    set(&mut res, "retry-after", secs.to_string());
    for tokens in [false, true] {
        // The refusing counter if it is of this kind, else the one with least left.
        let pick = if check.is_tokens() == tokens {
            Some(idx)
        } else {
            (0..checks.len())
                .filter(|&i| checks[i].is_tokens() == tokens)
                .min_by_key(|&i| adm.states[i].remaining(checks[i].limit))
        };
        if let Some(i) = pick {
            let kind = if tokens { "tokens" } else { "requests" };
            let s = adm.states[i];
            let limit = checks[i].limit;
            set(&mut res, header_name(kind, "limit"), limit.to_string());
            set(
                &mut res,
                header_name(kind, "remaining"),
                s.remaining(limit).to_string(),
            );
            set(&mut res, header_name(kind, "reset"), rfc3339(s.reset_at));
        }
    }
    (res, reason)
}

fn header_name(kind: &str, what: &str) -> &'static str {
    match (kind, what) {
        ("requests", "limit") => "anthropic-ratelimit-requests-limit",
        ("requests", "remaining") => "anthropic-ratelimit-requests-remaining",
        ("requests", _) => "anthropic-ratelimit-requests-reset",
        (_, "limit") => "anthropic-ratelimit-tokens-limit",
        (_, "remaining") => "anthropic-ratelimit-tokens-remaining",
        _ => "anthropic-ratelimit-tokens-reset",
    }
}

/// The 503 for an unavailable store: the gateway's own transient failure.
fn store_unavailable() -> Response<Body> {
    let mut res = error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorType::Api,
        STORE_UNAVAILABLE,
        true,
    );
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    res
}

impl<S> Service<Request<Body>> for BudgetService<S>
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

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let audit = req.extensions().get::<AuditHandle>().cloned();
            let deny = |reason: String| {
                if let Some(a) = &audit {
                    a.deny(reason);
                }
            };
            // Budgets are keyed by identity: no principal, no way to count.
            let now = (layer.clock)();
            let (checks, who) = match req.extensions().get::<Principal>() {
                Some(p) => (layer.budgets.plan(p, now), p.id()),
                None => {
                    deny("budget: no verified principal".into());
                    return Ok(Error::Unauthenticated.into_response());
                }
            };
            if checks.is_empty() {
                return inner.call(req).await;
            }
            let admitted =
                match tokio::time::timeout(layer.timeout, layer.store.admit(&checks, now)).await {
                    Ok(r) => r,
                    Err(_) => Err(StoreError::Timeout),
                };
            let adm = match admitted {
                Ok(a) => a,
                Err(e) => match layer.on_store_error {
                    OnStoreError::Deny => {
                        tracing::error!(error = %e, "budget store failed; request refused (on_store_error = deny)");
                        deny("budget store unavailable".into());
                        return Ok(store_unavailable());
                    }
                    OnStoreError::Allow => {
                        tracing::error!(error = %e, "budget store failed; request forwarded uncounted (on_store_error = allow)");
                        return inner.call(req).await;
                    }
                },
            };
            if let Some(idx) = adm.refused {
                let (res, reason) = refusal(&checks, &adm, idx, now);
                tracing::info!(principal = %who, %reason, "budget refused request");
                deny(reason);
                return Ok(res);
            }
            let token_checks: Vec<Check> = checks.into_iter().filter(Check::is_tokens).collect();
            let res = inner.call(req).await?;
            if token_checks.is_empty() {
                return Ok(res);
            }
            let Some(meter) =
                UsageMeter::for_response(res.status(), res.headers(), layer.max_json_bytes)
            else {
                return Ok(res);
            };
            let charger = Charger {
                store: layer.store.clone(),
                checks: Arc::new(token_checks),
                timeout: layer.timeout,
            };
            Ok(res.map(|body| {
                Body::new(BudgetBody {
                    inner: body,
                    meter: Some(Metering { meter, charger }),
                })
            }))
        })
    }
}

/// Adds tokens to the token counters of one exchange, each time on its own
/// task so the client's bytes never wait for the store.
struct Charger {
    store: Arc<dyn BudgetStore>,
    checks: Arc<Vec<Check>>,
    timeout: Duration,
}

impl Charger {
    fn charge(&self, tokens: u64) {
        if tokens == 0 {
            return;
        }
        let (store, checks, timeout) = (self.store.clone(), self.checks.clone(), self.timeout);
        let task = async move {
            let r = match tokio::time::timeout(timeout, store.add_tokens(&checks, tokens)).await {
                Ok(r) => r,
                Err(_) => Err(StoreError::Timeout),
            };
            if let Err(e) = r {
                // After the fact nothing can be refused; the loss is logged.
                let ids: Vec<&str> = checks.iter().map(|c| c.limit_id.as_str()).collect();
                tracing::error!(error = %e, tokens, limits = ?ids, "budget: could not count tokens");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(task);
            }
            Err(_) => tracing::error!(tokens, "budget: no runtime to count tokens on"),
        }
    }
}

struct Metering {
    meter: UsageMeter,
    charger: Charger,
}

impl Metering {
    fn end(mut self) {
        let n = self.meter.finish();
        self.charger.charge(n);
    }
}

pin_project_lite::pin_project! {
    /// The response body wrapper that counts the tokens in the response's
    /// `usage` as the bytes pass to the client, charging the token counters
    /// as soon as usage is seen (SSE) or when the body ends (JSON). The
    /// client's bytes are passed on unchanged and never wait: charging runs
    /// on separate tasks. A body dropped early (client gone) is charged for
    /// what was seen.
    pub struct BudgetBody {
        #[pin]
        inner: Body,
        meter: Option<Metering>,
    }

    impl PinnedDrop for BudgetBody {
        fn drop(this: Pin<&mut Self>) {
            if let Some(m) = this.project().meter.take() {
                m.end();
            }
        }
    }
}

impl http_body::Body for BudgetBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(m)) = (frame.data_ref(), this.meter.as_mut()) {
                    let n = m.meter.push(data);
                    m.charger.charge(n);
                }
            }
            Poll::Ready(Some(Err(_)) | None) => {
                if let Some(m) = this.meter.take() {
                    m.end();
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
