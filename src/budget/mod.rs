//! Budgets and rate limits per principal and per group: requests per minute
//! and tokens per day, enforced across every gateway instance.
//!
//! - [`BudgetLayer`] / [`BudgetService`]: the middleware, after the policy
//!   layer (it needs the [`Principal`](crate::identity::Principal)).
//! - [`Budgets`]: the compiled limits ([`LimitConfig`], configured in the
//!   `[budgets]` section, [`BudgetConfig`]); [`Budgets::plan`] lists the
//!   counters ([`Check`]) that apply to a caller.
//! - [`BudgetStore`]: where counters live. [`MemoryStore`] keeps them in this
//!   process; `RedisStore` (feature `redis`) shares them between instances
//!   with an atomic Lua script.
//! - [`UsageMeter`] / [`BudgetBody`]: count the tokens in each response's
//!   `usage` as it streams (JSON, or SSE `message_start` + `message_delta`),
//!   never delaying the client.
//!
//! **Windows.** Requests per minute use a *sliding* window (a log of
//! admission times): at any instant at most `requests_per_minute` requests
//! were admitted in the minute before it. A fixed window would let a caller
//! send twice the limit across a minute boundary, and would make a refusal
//! depend on where the boundary falls. Tokens per day use a *fixed* window:
//! the calendar day in the configured time zone (UTC by default), so a
//! budget resets at local midnight, 23 or 25 hours apart across DST changes.
//!
//! **Counting.** A request is counted when it is admitted (a request later
//! refused by the forward guard, or failed upstream, still counts). Tokens are
//! counted from `usage` as the response arrives, so a budget is checked
//! before a request and charged after it: the last admitted request may take
//! a caller past its budget by that request's tokens. A request is refused
//! when any of its counters is already at or over its limit; a refused
//! request is not counted.
//!
//! **Refusals.** `429 rate_limit_error` with `retry-after` (seconds until
//! that counter admits again), `x-should-retry: true` when that is at most
//! 60 s (the SDKs then wait and retry) and `false` otherwise (a daily
//! budget), and `anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`.
//! The audit record is marked denied with the limit's id.
//! If the store fails, the request is refused with `503 api_error`
//! (`retry-after: 1`) — the gateway's own transient fault, not the caller's
//! rate — unless `on_store_error = "allow"`.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use skillgate::{Body, identity::Principal};
//! use skillgate::budget::{BudgetConfig, BudgetLayer};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let cfg: BudgetConfig = toml::from_str(r#"
//!     [[limit]]
//!     id = "ci-rpm"
//!     scope = "group"
//!     groups = ["ci"]
//!     requests_per_minute = 2
//! "#).unwrap();
//! let layer = BudgetLayer::from_config(&cfg).unwrap().expect("limits configured");
//! let svc = ServiceBuilder::new()
//!     .layer(layer)
//!     .service(service_fn(|_req: Request<Body>| async { Ok::<_, Infallible>(Response::new(Body::empty())) }));
//!
//! let call = |subject: &str| {
//!     let mut req = Request::post("/v1/messages").body(Body::empty()).unwrap();
//!     req.extensions_mut().insert(Principal::new("https://idp", subject).with_groups(["ci"]));
//!     svc.clone().oneshot(req)
//! };
//! assert_eq!(call("job-a").await.unwrap().status(), 200);
//! assert_eq!(call("job-b").await.unwrap().status(), 200);
//! let third = call("job-c").await.unwrap(); // the group shares one counter
//! assert_eq!(third.status(), 429);
//! assert!(third.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() <= 60);
//! # });
//! ```

mod layer;
mod limits;
mod memory;
#[cfg(feature = "redis")]
mod redis;
mod store;
mod usage;

pub use layer::{BudgetBody, BudgetLayer, BudgetService};
pub use limits::{
    BudgetConfig, BudgetError, Budgets, Check, CounterKind, DEFAULT_KEY_PREFIX,
    DEFAULT_STORE_TIMEOUT_MS, LimitConfig, MINUTE, OnStoreError, Scope, day_window,
};
pub use memory::MemoryStore;
#[cfg(feature = "redis")]
pub use redis::{ADMIT_SCRIPT, RedisStore};
pub use store::{Admission, BudgetStore, CounterState, StoreError};
pub use usage::{
    COUNTED_USAGE_FIELDS, DEFAULT_MAX_JSON_BYTES, JSON_TAIL_BYTES, UsageMeter, usage_tokens,
};

#[cfg(test)]
mod tests;
