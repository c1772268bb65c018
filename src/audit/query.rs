//! [`AuditQuery`]: the filters of `AuditStore::query` (and of the `audit query` CLI).

use serde::{Deserialize, Serialize};

use super::{AuditRecord, Verdict};

/// Default number of exchanges a query returns.
pub const DEFAULT_QUERY_LIMIT: usize = 100;

/// Which exchanges to read back. Every filter that is set must match; the
/// result is newest first (by `received_at`, then id), at most `limit` long.
///
/// Times are compared with the request's `received_at`: `since` inclusive,
/// `until` exclusive.
///
/// ```
/// use skillgate::audit::{AuditQuery, Verdict};
/// let q = AuditQuery::new().subject("repo:acme/ci").verdict(Verdict::Deny).limit(10);
/// assert_eq!(q.limit, 10);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AuditQuery {
    /// Principal `sub` (exact).
    pub subject: Option<String>,
    /// Principal issuer (exact).
    pub issuer: Option<String>,
    /// A group the principal had (exact member of `groups`).
    pub group: Option<String>,
    /// Received at or after this time.
    pub since: Option<jiff::Timestamp>,
    /// Received before this time.
    pub until: Option<jiff::Timestamp>,
    /// The decision's verdict.
    pub verdict: Option<Verdict>,
    /// The Messages `model` (exact).
    pub model: Option<String>,
    /// A rule id among the decision's matched rules.
    pub rule: Option<String>,
    /// HTTP status sent to the client (exchanges without a response never match).
    pub status: Option<u16>,
    /// Gateway instance name (exact, as recorded).
    pub instance: Option<String>,
    /// Most exchanges returned (default [`DEFAULT_QUERY_LIMIT`]).
    pub limit: usize,
}

impl Default for AuditQuery {
    fn default() -> Self {
        AuditQuery {
            subject: None,
            issuer: None,
            group: None,
            since: None,
            until: None,
            verdict: None,
            model: None,
            rule: None,
            status: None,
            instance: None,
            limit: DEFAULT_QUERY_LIMIT,
        }
    }
}

impl AuditQuery {
    /// No filters, [`DEFAULT_QUERY_LIMIT`] results.
    pub fn new() -> Self {
        Self::default()
    }
    /// Only this principal subject.
    pub fn subject(mut self, s: impl Into<String>) -> Self {
        self.subject = Some(s.into());
        self
    }
    /// Only this issuer.
    pub fn issuer(mut self, s: impl Into<String>) -> Self {
        self.issuer = Some(s.into());
        self
    }
    /// Only principals in this group.
    pub fn group(mut self, s: impl Into<String>) -> Self {
        self.group = Some(s.into());
        self
    }
    /// Received at or after `t`.
    pub fn since(mut self, t: jiff::Timestamp) -> Self {
        self.since = Some(t);
        self
    }
    /// Received before `t`.
    pub fn until(mut self, t: jiff::Timestamp) -> Self {
        self.until = Some(t);
        self
    }
    /// Only this verdict.
    pub fn verdict(mut self, v: Verdict) -> Self {
        self.verdict = Some(v);
        self
    }
    /// Only this model.
    pub fn model(mut self, s: impl Into<String>) -> Self {
        self.model = Some(s.into());
        self
    }
    /// Only exchanges where this rule matched.
    pub fn rule(mut self, s: impl Into<String>) -> Self {
        self.rule = Some(s.into());
        self
    }
    /// Only this response status.
    pub fn status(mut self, s: u16) -> Self {
        self.status = Some(s);
        self
    }
    /// Only this instance.
    pub fn instance(mut self, s: impl Into<String>) -> Self {
        self.instance = Some(s.into());
        self
    }
    /// At most `n` results.
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = n;
        self
    }

    /// Whether `record` passes every filter (the reference semantics that
    /// store implementations follow; also usable for stores without indexes).
    ///
    /// ```
    /// use skillgate::audit::{AuditQuery, AuditRecord, DecisionRecord, RequestRecord};
    /// let rec = AuditRecord { request: RequestRecord::new("GET", "/v1/models", DecisionRecord::allow()), response: None };
    /// assert!(AuditQuery::new().matches(&rec));
    /// assert!(!AuditQuery::new().status(200).matches(&rec));
    /// ```
    pub fn matches(&self, record: &AuditRecord) -> bool {
        let r = &record.request;
        let p = r.principal.as_ref();
        let eq = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| have == Some(w))
        };
        eq(&self.subject, p.map(|p| p.subject.as_str()))
            && eq(&self.issuer, p.map(|p| p.issuer.as_str()))
            && self
                .group
                .as_ref()
                .is_none_or(|g| p.is_some_and(|p| p.groups.iter().any(|x| x == g)))
            && self.since.is_none_or(|t| r.received_at >= t)
            && self.until.is_none_or(|t| r.received_at < t)
            && self.verdict.is_none_or(|v| r.decision.verdict == v)
            && eq(&self.model, r.model.as_deref())
            && self
                .rule
                .as_ref()
                .is_none_or(|x| r.decision.rules.iter().any(|y| y == x))
            && self
                .status
                .is_none_or(|s| record.response.as_ref().is_some_and(|x| x.status == s))
            && eq(&self.instance, Some(r.instance.as_str()))
    }
}
