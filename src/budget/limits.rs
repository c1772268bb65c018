//! Limits: their configuration ([`BudgetConfig`], [`LimitConfig`]), their
//! compiled form ([`Budgets`]) and the counters a request is checked against
//! ([`Check`]), with the window arithmetic.

use std::time::Duration;

use globset::{Glob, GlobSet, GlobSetBuilder};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::identity::Principal;

/// Length of the request-rate window: one minute, sliding.
pub const MINUTE: Duration = Duration::from_secs(60);
/// Default prefix of every store key.
pub const DEFAULT_KEY_PREFIX: &str = "skillgate:budget";
/// Default longest wait for the budget store, in milliseconds.
pub const DEFAULT_STORE_TIMEOUT_MS: u64 = 500;

/// Who shares a counter.
///
/// ```
/// use skillgate::budget::Scope;
/// let s: Scope = serde_json::from_str("\"group\"").unwrap();
/// assert_eq!(s, Scope::Group);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Each principal (issuer + subject) has its own counter.
    Principal,
    /// Everyone in a named group shares one counter (one per group listed in
    /// the limit's `groups`).
    Group,
}

/// What to do when the budget store cannot be reached or answers too late.
///
/// ```
/// use skillgate::budget::OnStoreError;
/// assert_eq!(OnStoreError::default(), OnStoreError::Deny);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnStoreError {
    /// Fail closed: refuse the request with `503 api_error`
    /// (`x-should-retry: true`, `retry-after: 1`). The default.
    #[default]
    Deny,
    /// Fail open: forward the request uncounted (and log an error).
    Allow,
}

/// One `[[budgets.limit]]` entry.
///
/// A limit applies to a principal when every selector given matches: it is
/// in at least one of `groups` (if any are listed) and its subject matches at
/// least one of the `subjects` globs (if any). With `scope = "group"`,
/// `groups` is required and names the groups whose members share a counter.
///
/// ```
/// use skillgate::budget::{LimitConfig, Scope};
/// let l: LimitConfig = toml::from_str(r#"
///     id = "ci-rpm"
///     scope = "group"
///     groups = ["ci"]
///     requests_per_minute = 600
/// "#).unwrap();
/// assert_eq!(l.scope, Scope::Group);
/// assert_eq!(l.requests_per_minute, Some(600));
/// assert_eq!(l.tokens_per_day, None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    /// A unique id (`[A-Za-z0-9_.-]`, at most 64 characters): named in
    /// refusals, in the audit record, and in store keys.
    pub id: String,
    /// Whose counter: each principal's own (default), or a group's shared one.
    #[serde(default = "default_scope")]
    pub scope: Scope,
    /// Group selector (for `scope = "group"`: the groups counted).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Subject selector: globs (`*`, `?`, `[..]`) over the `sub` claim.
    #[serde(default)]
    pub subjects: Vec<String>,
    /// Requests admitted per sliding minute.
    pub requests_per_minute: Option<u64>,
    /// Tokens (input + output + cache creation + cache read) per day, days
    /// starting at midnight in the configured time zone.
    pub tokens_per_day: Option<u64>,
}

fn default_scope() -> Scope {
    Scope::Principal
}

/// `[budgets]`: the limits and where their counters live.
///
/// ```
/// use skillgate::budget::{BudgetConfig, OnStoreError};
/// let c: BudgetConfig = toml::from_str(r#"
///     redis_url = "redis://127.0.0.1:6379"
///     time_zone = "Europe/Berlin"
///     [[limit]]
///     id = "skill-daily-tokens"
///     groups = ["skills"]
///     tokens_per_day = 50000
/// "#).unwrap();
/// assert_eq!(c.on_store_error, OnStoreError::Deny);
/// assert_eq!(c.limits.len(), 1);
/// assert_eq!(c.key_prefix, "skillgate:budget");
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetConfig {
    /// Redis URL (`redis://[user:password@]host:port[/db]`, `rediss://` is
    /// not built in). Unset: counters are kept in this process only.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key (default `skillgate:budget`). Gateways that
    /// must share limits use the same prefix.
    pub key_prefix: String,
    /// Store unreachable or too slow: `"deny"` (default) or `"allow"`.
    pub on_store_error: OnStoreError,
    /// IANA time zone in which days start (default `"UTC"`).
    pub time_zone: String,
    /// Longest wait for the store per operation, in ms (default 500).
    pub store_timeout_ms: u64,
    /// The limits. None: no budget layer is installed.
    #[serde(rename = "limit")]
    pub limits: Vec<LimitConfig>,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            redis_url: None,
            key_prefix: DEFAULT_KEY_PREFIX.into(),
            on_store_error: OnStoreError::Deny,
            time_zone: "UTC".into(),
            store_timeout_ms: DEFAULT_STORE_TIMEOUT_MS,
            limits: Vec::new(),
        }
    }
}

impl std::fmt::Debug for BudgetConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetConfig")
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("key_prefix", &self.key_prefix)
            .field("on_store_error", &self.on_store_error)
            .field("time_zone", &self.time_zone)
            .field("store_timeout_ms", &self.store_timeout_ms)
            .field("limits", &self.limits)
            .finish()
    }
}

/// A URL with any `user:password@` part replaced by `***@`, for logs.
pub(crate) fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_owned(),
    }
}

/// Why limits could not be compiled or a store could not be set up.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BudgetError {
    /// A limit is unusable; the message names its id.
    #[error("budget limit {id}: {message}")]
    Limit {
        /// The limit's id.
        id: String,
        /// What is wrong.
        message: String,
    },
    /// `time_zone` is not a known IANA name.
    #[error("budgets.time_zone: unknown time zone {0:?}")]
    TimeZone(String),
    /// The store could not be set up (bad URL, feature not built).
    #[error("budget store: {0}")]
    Store(String),
}

/// What a counter counts, and its window.
///
/// ```
/// use skillgate::budget::CounterKind;
/// let k = CounterKind::Requests { window_ms: 60_000 };
/// assert!(matches!(k, CounterKind::Requests { .. }));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterKind {
    /// Requests admitted in the last `window_ms` milliseconds (a sliding log).
    Requests {
        /// The window length in ms (60 000).
        window_ms: i64,
    },
    /// Tokens used in the current day (a fixed window), which ends at `resets_at`.
    Tokens {
        /// The start of the next day in the configured time zone.
        resets_at: Timestamp,
    },
}

/// One counter a request is checked against: which limit, the store key,
/// the kind and the limit value.
///
/// ```
/// use skillgate::budget::{Budgets, LimitConfig, Scope};
/// use skillgate::identity::Principal;
/// let b = Budgets::new(vec![LimitConfig {
///     id: "rpm".into(), scope: Scope::Principal, groups: vec![], subjects: vec![],
///     requests_per_minute: Some(10), tokens_per_day: None,
/// }], jiff::tz::TimeZone::UTC, "test").unwrap();
/// let checks = b.plan(&Principal::new("https://idp", "bot"), "2026-01-01T00:00:00Z".parse().unwrap());
/// assert_eq!(checks.len(), 1);
/// assert_eq!(checks[0].limit, 10);
/// assert!(checks[0].key.starts_with("test:rpm:p:"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The limit's id.
    pub limit_id: String,
    /// The store key of the counter.
    pub key: String,
    /// Requests or tokens, with the window.
    pub kind: CounterKind,
    /// The limit value (requests per window or tokens per day); at least 1.
    pub limit: u64,
}

impl Check {
    /// Whether this counts tokens.
    pub fn is_tokens(&self) -> bool {
        matches!(self.kind, CounterKind::Tokens { .. })
    }
}

struct Limit {
    config: LimitConfig,
    subjects: Option<GlobSet>,
}

/// The compiled limits, with the day's time zone and the key prefix.
///
/// ```
/// use skillgate::budget::{BudgetConfig, Budgets};
/// let cfg: BudgetConfig = toml::from_str(r#"
///     [[limit]]
///     id = "skill-daily-tokens"
///     subjects = ["skill-*"]
///     tokens_per_day = 50000
/// "#).unwrap();
/// let budgets = Budgets::from_config(&cfg).unwrap();
/// assert_eq!(budgets.len(), 1);
/// ```
pub struct Budgets {
    limits: Vec<Limit>,
    tz: TimeZone,
    prefix: String,
}

impl std::fmt::Debug for Budgets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budgets")
            .field(
                "limits",
                &self.limits.iter().map(|l| &l.config.id).collect::<Vec<_>>(),
            )
            .field("time_zone", &self.tz.iana_name())
            .field("prefix", &self.prefix)
            .finish()
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl Budgets {
    /// Compiles `limits`; days start at midnight in `tz`; keys begin with `prefix`.
    ///
    /// # Errors
    /// [`BudgetError::Limit`] for a bad id, a duplicate id, a limit with no
    /// value or a zero value, a group-scoped limit without `groups`, or a
    /// subject glob that does not parse.
    pub fn new(
        limits: Vec<LimitConfig>,
        tz: TimeZone,
        prefix: impl Into<String>,
    ) -> Result<Self, BudgetError> {
        let mut out: Vec<Limit> = Vec::with_capacity(limits.len());
        for config in limits {
            let err = |message: &str| BudgetError::Limit {
                id: config.id.clone(),
                message: message.into(),
            };
            if !valid_id(&config.id) {
                return Err(err(
                    "id must be 1 to 64 characters of A-Z, a-z, 0-9, '_', '.', '-'",
                ));
            }
            if out.iter().any(|l| l.config.id == config.id) {
                return Err(err("duplicate id"));
            }
            if config.requests_per_minute.is_none() && config.tokens_per_day.is_none() {
                return Err(err("set requests_per_minute and/or tokens_per_day"));
            }
            if config.requests_per_minute == Some(0) || config.tokens_per_day == Some(0) {
                return Err(err(
                    "a limit of 0 refuses everything; use a policy deny rule instead",
                ));
            }
            if config.scope == Scope::Group && config.groups.is_empty() {
                return Err(err(
                    "scope = \"group\" needs the groups that share a counter",
                ));
            }
            let subjects = if config.subjects.is_empty() {
                None
            } else {
                let mut b = GlobSetBuilder::new();
                for s in &config.subjects {
                    b.add(Glob::new(s).map_err(|e| err(&format!("subjects: {e}")))?);
                }
                Some(b.build().map_err(|e| err(&format!("subjects: {e}")))?)
            };
            out.push(Limit { config, subjects });
        }
        Ok(Budgets {
            limits: out,
            tz,
            prefix: prefix.into(),
        })
    }

    /// Compiles the limits of a `[budgets]` section.
    ///
    /// # Errors
    /// [`BudgetError::TimeZone`] or as [`Budgets::new`].
    pub fn from_config(cfg: &BudgetConfig) -> Result<Self, BudgetError> {
        let tz = TimeZone::get(&cfg.time_zone)
            .map_err(|_| BudgetError::TimeZone(cfg.time_zone.clone()))?;
        Self::new(cfg.limits.clone(), tz, cfg.key_prefix.clone())
    }

    /// How many limits there are.
    pub fn len(&self) -> usize {
        self.limits.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.limits.is_empty()
    }

    /// The time zone days start in.
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// The counters that apply to `principal` at `now`, in limit order
    /// (requests before tokens within a limit).
    pub fn plan(&self, principal: &Principal, now: Timestamp) -> Vec<Check> {
        let mut out = Vec::new();
        let mut day: Option<(String, Timestamp)> = None;
        for limit in &self.limits {
            let c = &limit.config;
            if let Some(globs) = &limit.subjects
                && !globs.is_match(&principal.subject)
            {
                continue;
            }
            let scopes: Vec<String> = match c.scope {
                Scope::Principal => {
                    if !c.groups.is_empty() && !c.groups.iter().any(|g| principal.in_group(g)) {
                        continue;
                    }
                    vec![format!(
                        "p:{}",
                        short_hash(&[&principal.issuer, &principal.subject])
                    )]
                }
                Scope::Group => c
                    .groups
                    .iter()
                    .filter(|g| principal.in_group(g))
                    .map(|g| format!("g:{}", short_hash(&[g])))
                    .collect(),
            };
            for scope in scopes {
                if let Some(n) = c.requests_per_minute {
                    out.push(Check {
                        limit_id: c.id.clone(),
                        key: format!("{}:{}:{scope}:rpm", self.prefix, c.id),
                        kind: CounterKind::Requests {
                            window_ms: MINUTE.as_millis() as i64,
                        },
                        limit: n,
                    });
                }
                if let Some(n) = c.tokens_per_day {
                    let (label, resets_at) =
                        day.get_or_insert_with(|| day_window(now, &self.tz)).clone();
                    out.push(Check {
                        limit_id: c.id.clone(),
                        key: format!("{}:{}:{scope}:tpd:{label}", self.prefix, c.id),
                        kind: CounterKind::Tokens { resets_at },
                        limit: n,
                    });
                }
            }
        }
        out
    }
}

/// A 128-bit hex digest of the parts (length-prefixed, so no two part lists collide).
fn short_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The day containing `now` in `tz`: its label (`YYYY-MM-DD`, local date)
/// and the instant the next day starts. Days across a DST change are 23 or
/// 25 hours long; a day whose midnight does not exist starts at the first
/// instant that does (jiff's `start_of_day`).
///
/// ```
/// use skillgate::budget::day_window;
/// let tz = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
/// // 2026-03-29: clocks go forward at 02:00, the day has 23 hours.
/// let (label, end) = day_window("2026-03-29T12:00:00Z".parse().unwrap(), &tz);
/// assert_eq!(label, "2026-03-29");
/// assert_eq!(end.to_string(), "2026-03-29T22:00:00Z");
/// ```
pub fn day_window(now: Timestamp, tz: &TimeZone) -> (String, Timestamp) {
    let local = now.to_zoned(tz.clone());
    let label = local.date().to_string();
    let end = local
        .date()
        .tomorrow()
        .ok()
        .and_then(|d| d.to_zoned(tz.clone()).ok())
        .and_then(|z| z.start_of_day().ok())
        .map(|z| z.timestamp())
        // Only at the very end of jiff's range: a day from now.
        .unwrap_or_else(|| {
            now.checked_add(jiff::SignedDuration::from_hours(24))
                .unwrap_or(now)
        });
    (label, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(id: &str) -> LimitConfig {
        LimitConfig {
            id: id.into(),
            scope: Scope::Principal,
            groups: vec![],
            subjects: vec![],
            requests_per_minute: Some(1),
            tokens_per_day: None,
        }
    }

    #[test]
    fn validation() {
        let utc = TimeZone::UTC;
        assert!(Budgets::new(vec![limit("a b")], utc.clone(), "p").is_err());
        assert!(Budgets::new(vec![limit("a"), limit("a")], utc.clone(), "p").is_err());
        let mut none = limit("n");
        none.requests_per_minute = None;
        assert!(Budgets::new(vec![none], utc.clone(), "p").is_err());
        let mut zero = limit("z");
        zero.requests_per_minute = Some(0);
        assert!(Budgets::new(vec![zero], utc.clone(), "p").is_err());
        let mut g = limit("g");
        g.scope = Scope::Group;
        let e = Budgets::new(vec![g], utc.clone(), "p").unwrap_err();
        assert!(e.to_string().contains("budget limit g"), "{e}");
        let mut glob = limit("glob");
        glob.subjects = vec!["[".into()];
        assert!(Budgets::new(vec![glob], utc, "p").is_err());
        let cfg = BudgetConfig {
            time_zone: "Mars/Olympus".into(),
            ..Default::default()
        };
        assert_eq!(
            Budgets::from_config(&cfg).unwrap_err(),
            BudgetError::TimeZone("Mars/Olympus".into())
        );
    }

    #[test]
    fn selectors_and_scopes() {
        let mut by_group = limit("ci");
        by_group.scope = Scope::Group;
        by_group.groups = vec!["ci".into(), "cd".into()];
        let mut skills = limit("skills");
        skills.subjects = vec!["skill-*".into()];
        skills.tokens_per_day = Some(50_000);
        let mut finance = limit("finance");
        finance.groups = vec!["finance".into()];
        let b = Budgets::new(vec![by_group, skills, finance], TimeZone::UTC, "x").unwrap();
        let now: Timestamp = "2026-05-01T10:00:00Z".parse().unwrap();

        let a = Principal::new("https://idp", "skill-a").with_groups(["ci", "cd"]);
        let b2 = Principal::new("https://idp", "job-b").with_groups(["ci"]);
        let pa = b.plan(&a, now);
        let ids: Vec<_> = pa.iter().map(|c| c.limit_id.as_str()).collect();
        assert_eq!(ids, ["ci", "ci", "skills", "skills"]);
        assert!(pa[3].is_tokens());
        assert!(pa[3].key.ends_with(":tpd:2026-05-01"), "{}", pa[3].key);
        let pb = b.plan(&b2, now);
        assert_eq!(pb.len(), 1);
        // One shared counter per group: both principals hit the same "ci" key.
        assert!(pa.iter().any(|c| c.key == pb[0].key));
        // Per-principal keys differ between principals and between issuers.
        let other_issuer = Principal::new("https://other", "skill-a");
        assert_ne!(b.plan(&other_issuer, now)[0].key, pa[2].key);
        assert!(
            b.plan(&Principal::new("https://idp", "nobody"), now)
                .is_empty()
        );
        let f = Principal::new("https://idp", "nobody").with_groups(["finance"]);
        assert_eq!(b.plan(&f, now)[0].limit_id, "finance");
    }

    #[test]
    fn day_windows_follow_the_time_zone() {
        let utc = TimeZone::UTC;
        let (l, end) = day_window("2026-01-01T23:59:59.999Z".parse().unwrap(), &utc);
        assert_eq!(
            (l.as_str(), end.to_string().as_str()),
            ("2026-01-01", "2026-01-02T00:00:00Z")
        );
        let (l, _) = day_window("2026-01-02T00:00:00Z".parse().unwrap(), &utc);
        assert_eq!(l, "2026-01-02");

        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        // 23:30 UTC on Jan 1 is already Jan 2 in Berlin (UTC+1).
        let (l, end) = day_window("2026-01-01T23:30:00Z".parse().unwrap(), &berlin);
        assert_eq!(l, "2026-01-02");
        assert_eq!(end.to_string(), "2026-01-02T23:00:00Z");
        // Autumn DST change: the day has 25 hours.
        let (l, end) = day_window("2026-10-25T00:30:00Z".parse().unwrap(), &berlin);
        assert_eq!(l, "2026-10-25");
        assert_eq!(end.to_string(), "2026-10-25T23:00:00Z");
        // The instant before the new day and the instant it starts.
        let before = end
            .checked_sub(jiff::SignedDuration::from_nanos(1))
            .unwrap();
        assert_eq!(day_window(before, &berlin).0, "2026-10-25");
        assert_eq!(day_window(end, &berlin).0, "2026-10-26");
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("redis://u:secret@h:6379/0"),
            "redis://***@h:6379/0"
        );
        assert_eq!(redact_url("redis://h:6379"), "redis://h:6379");
        let cfg = BudgetConfig {
            redis_url: Some("redis://:hunter2@h".into()),
            ..Default::default()
        };
        assert!(!format!("{cfg:?}").contains("hunter2"));
    }
}
