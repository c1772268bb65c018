//! How a verified token becomes a [`Principal`]: [`ClaimMapping`] (which
//! claims name the subject, groups, scopes and client, which become
//! attributes), [`Conditions`] on claim values with [`Glob`] patterns,
//! [`GroupRule`]s that derive groups from claims, and the [`TypRule`] for the
//! `typ` header.
//!
//! # Claim paths
//!
//! A claim path is a claim name, or names joined by dots into nested objects:
//! `groups`, `realm_access.roles`, `kubernetes.io.namespace`. A claim whose
//! own name contains dots (`kubernetes.io`, URI-named claims) is found too:
//! the whole path is first tried as one name, then every split at a dot,
//! longest first name first.
//!
//! # Conditions and group rules
//!
//! A [`Conditions`] set maps claim paths to accepted values. It holds when
//! **every** condition holds. One condition holds when the claim exists and
//! one of its accepted values matches; when the claim is an array, when any
//! element matches. A string value is a [`Glob`] (a string without
//! metacharacters matches exactly); an integer or boolean matches the same
//! JSON value or its decimal / `true` / `false` text (GitHub sends
//! `"ref_protected": "true"`).
//!
//! A [`GroupRule`] adds its groups when its conditions hold. Every matching
//! rule adds its groups, in configuration order, after the groups read from
//! the token's own groups claims; duplicates are dropped.
//!
//! ```
//! use serde_json::json;
//! use skillgate::identity::{ClaimMapping, Conditions, GroupRule};
//!
//! let mut mapping = ClaimMapping::default();
//! mapping.rules.push(GroupRule::new(
//!     Conditions::new()
//!         .glob("repository", "acme/billing")?
//!         .glob("ref", "refs/heads/main")?,
//!     ["billing-ci"],
//! )?);
//! let claims = json!({
//!     "iss": "https://token.actions.githubusercontent.com",
//!     "sub": "repo:acme/billing:ref:refs/heads/main",
//!     "repository": "acme/billing",
//!     "ref": "refs/heads/main",
//! });
//! let p = mapping
//!     .principal("https://token.actions.githubusercontent.com", claims.as_object().unwrap().clone())
//!     .unwrap();
//! assert_eq!(p.groups, ["billing-ci"]);
//! # Ok::<(), skillgate::identity::MappingError>(())
//! ```

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::principal::{claim_path, string_list};
use super::{AuthError, Principal};

/// A mistake in a mapping, a condition or a glob.
///
/// ```
/// use skillgate::identity::{Glob, MappingError};
/// assert!(matches!(Glob::new("refs/[main"), Err(MappingError::BadGlob { .. })));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MappingError {
    /// The glob pattern cannot be compiled.
    #[error("bad glob {pattern:?}: {reason}")]
    BadGlob {
        /// The pattern as written.
        pattern: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A claim path is empty or has an empty segment (`a..b`).
    #[error("bad claim path {0:?}")]
    BadPath(String),
    /// A condition lists no accepted value, or a value of an unusable type
    /// (a float, a table inside a list).
    #[error("condition on {path:?}: {reason}")]
    BadCondition {
        /// The claim path.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A group rule grants no group, or an empty group name.
    #[error("group rule grants no group (or an empty group name)")]
    NoGroups,
}

// ---------------------------------------------------------------------------
// Glob

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(char),
    /// `?`: one character other than `/`.
    One,
    /// `*`: any run of characters without `/`.
    Star,
    /// `**`: any run of characters.
    StarStar,
    /// `[...]` / `[!...]`: one character (not `/`) in (or not in) the ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// A glob pattern on claim values.
///
/// | syntax | matches |
/// |---|---|
/// | `*` | any run of characters except `/` (`acme/*` matches `acme/billing`, not `acme/a/b`) |
/// | `**` | any run of characters, `/` included (`refs/heads/**`) |
/// | `?` | one character except `/` |
/// | `[abc]`, `[a-z]`, `[!a-z]` | one character (not `/`) in / not in the set |
/// | `\x` | the character `x` literally (`\*` is a star) |
///
/// Anything else matches itself, so a pattern without metacharacters is an
/// exact, case-sensitive match. Errors: an unclosed or empty `[`, a reversed
/// range (`[z-a]`), a trailing `\`, three or more `*` in a row.
///
/// ```
/// use skillgate::identity::Glob;
/// let g = Glob::new("acme/*")?;
/// assert!(g.matches("acme/billing"));
/// assert!(!g.matches("acme/billing/extra"));
/// assert!(!g.matches("other/billing"));
/// assert!(Glob::new("refs/heads/**")?.matches("refs/heads/feature/x"));
/// # Ok::<(), skillgate::identity::MappingError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Glob {
    source: String,
    toks: Vec<Tok>,
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.source)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Glob {
    /// Compiles `pattern`.
    ///
    /// # Errors
    /// [`MappingError::BadGlob`] naming the problem.
    pub fn new(pattern: &str) -> Result<Glob, MappingError> {
        let bad = |reason| MappingError::BadGlob {
            pattern: pattern.to_owned(),
            reason,
        };
        let chars: Vec<char> = pattern.chars().collect();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '*' => {
                    let run = chars[i..].iter().take_while(|c| **c == '*').count();
                    match run {
                        1 => toks.push(Tok::Star),
                        2 => toks.push(Tok::StarStar),
                        _ => return Err(bad("three or more `*` in a row")),
                    }
                    i += run;
                }
                '?' => {
                    toks.push(Tok::One);
                    i += 1;
                }
                '\\' => {
                    let c = *chars.get(i + 1).ok_or_else(|| bad("trailing `\\`"))?;
                    toks.push(Tok::Lit(c));
                    i += 2;
                }
                '[' => {
                    let mut j = i + 1;
                    let negated = chars.get(j) == Some(&'!');
                    if negated {
                        j += 1;
                    }
                    let mut ranges = Vec::new();
                    loop {
                        let c = *chars.get(j).ok_or_else(|| bad("unclosed `[`"))?;
                        if c == ']' {
                            break;
                        }
                        let lo = if c == '\\' {
                            j += 1;
                            *chars.get(j).ok_or_else(|| bad("unclosed `[`"))?
                        } else {
                            c
                        };
                        let hi = if chars.get(j + 1) == Some(&'-')
                            && chars.get(j + 2).is_some_and(|c| *c != ']')
                        {
                            j += 2;
                            let h = chars[j];
                            if h == '\\' {
                                j += 1;
                                *chars.get(j).ok_or_else(|| bad("unclosed `[`"))?
                            } else {
                                h
                            }
                        } else {
                            lo
                        };
                        if hi < lo {
                            return Err(bad("reversed range in `[...]`"));
                        }
                        ranges.push((lo, hi));
                        j += 1;
                    }
                    if ranges.is_empty() {
                        return Err(bad("empty `[]`"));
                    }
                    toks.push(Tok::Class { negated, ranges });
                    i = j + 1;
                }
                c => {
                    toks.push(Tok::Lit(c));
                    i += 1;
                }
            }
        }
        Ok(Glob {
            source: pattern.to_owned(),
            toks,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `text` matches the whole pattern. Linear in
    /// `pattern length × text length`; no backtracking blow-up.
    pub fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let n = text.len();
        // cur[i]: the pattern so far can end right before text[i].
        let mut cur = vec![false; n + 1];
        cur[0] = true;
        for tok in &self.toks {
            let mut next = vec![false; n + 1];
            match tok {
                Tok::Star | Tok::StarStar => {
                    let cross = matches!(tok, Tok::StarStar);
                    for i in 0..=n {
                        next[i] = cur[i] || (i > 0 && next[i - 1] && (cross || text[i - 1] != '/'));
                    }
                }
                _ => {
                    for i in 0..n {
                        if cur[i] && single(tok, text[i]) {
                            next[i + 1] = true;
                        }
                    }
                }
            }
            if !next.iter().any(|b| *b) {
                return false;
            }
            cur = next;
        }
        cur[n]
    }
}

fn single(tok: &Tok, c: char) -> bool {
    match tok {
        Tok::Lit(l) => *l == c,
        Tok::One => c != '/',
        Tok::Class { negated, ranges } => {
            c != '/' && (ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated)
        }
        Tok::Star | Tok::StarStar => false,
    }
}

// ---------------------------------------------------------------------------
// Conditions

/// One accepted value in a condition.
///
/// ```
/// use serde_json::json;
/// use skillgate::identity::{Glob, ValuePattern};
/// let p = ValuePattern::Glob(Glob::new("refs/tags/v*")?);
/// assert!(p.matches(&json!(["refs/heads/main", "refs/tags/v1"])));
/// assert!(ValuePattern::Bool(true).matches(&json!("true")));
/// assert!(ValuePattern::Int(74).matches(&json!("74")));
/// assert!(!ValuePattern::Int(74).matches(&json!({"id": 74})));
/// # Ok::<(), skillgate::identity::MappingError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValuePattern {
    /// A glob on string values (numbers and booleans are compared as their text).
    Glob(Glob),
    /// An integer: equal JSON number, or a string with its decimal text.
    Int(i64),
    /// A boolean: equal JSON boolean, or the string `"true"` / `"false"`.
    Bool(bool),
}

impl ValuePattern {
    fn matches_scalar(&self, v: &Value) -> bool {
        match (self, v) {
            (ValuePattern::Glob(g), Value::String(s)) => g.matches(s),
            (ValuePattern::Glob(g), Value::Number(n)) => g.matches(&n.to_string()),
            (ValuePattern::Glob(g), Value::Bool(b)) => g.matches(if *b { "true" } else { "false" }),
            (ValuePattern::Int(i), Value::Number(n)) => n.as_i64() == Some(*i),
            (ValuePattern::Int(i), Value::String(s)) => *s == i.to_string(),
            (ValuePattern::Bool(b), Value::Bool(v)) => b == v,
            (ValuePattern::Bool(b), Value::String(s)) => s == if *b { "true" } else { "false" },
            _ => false,
        }
    }

    /// Whether the claim value `v` matches: a scalar directly, an array when
    /// any element does. Objects and `null` never match.
    pub fn matches(&self, v: &Value) -> bool {
        match v {
            Value::Array(items) => items.iter().any(|i| self.matches_scalar(i)),
            other => self.matches_scalar(other),
        }
    }
}

/// A set of conditions on claims (`docs/identity.md`, "Conditions").
///
/// The set holds when **every** condition holds; an empty set always holds.
/// One condition holds when the claim (a [claim path](ClaimMapping)) exists
/// and one of its accepted [`ValuePattern`]s matches; when the claim is an
/// array, when any element matches. Missing claims, objects and `null` never
/// match.
///
/// In TOML (as `require` or a group rule's `when`), each key is a claim path
/// and each value a string (glob), integer, boolean, or a list of them (any
/// may match). Dotted keys written without quotes are nested tables in TOML;
/// they are flattened back into the same path, so
/// `kubernetes.io.namespace = "prod"` and `"kubernetes.io.namespace" = "prod"`
/// mean the same.
///
/// ```
/// use serde_json::json;
/// use skillgate::identity::Conditions;
/// let c: Conditions = toml::from_str(r#"
///     repository_owner = "acme"
///     ref = ["refs/heads/main", "refs/tags/v*"]
///     kubernetes.io.namespace = "prod-*"
/// "#).unwrap();
/// let claims = json!({
///     "repository_owner": "acme", "ref": "refs/tags/v1.2",
///     "kubernetes.io": {"namespace": "prod-eu"}
/// });
/// assert!(c.matches(claims.as_object().unwrap()));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conditions {
    conds: Vec<(String, Vec<ValuePattern>)>,
}

fn check_path(path: &str) -> Result<(), MappingError> {
    if path.is_empty() || path.split('.').any(str::is_empty) {
        return Err(MappingError::BadPath(path.to_owned()));
    }
    Ok(())
}

impl Conditions {
    /// An empty set (always holds).
    pub fn new() -> Self {
        Conditions::default()
    }

    /// Adds (or replaces) the condition on `path`: one of `patterns` must match.
    ///
    /// # Errors
    /// [`MappingError::BadPath`], or [`MappingError::BadCondition`] when
    /// `patterns` is empty.
    pub fn with(
        mut self,
        path: impl Into<String>,
        patterns: impl IntoIterator<Item = ValuePattern>,
    ) -> Result<Self, MappingError> {
        let path = path.into();
        check_path(&path)?;
        let patterns: Vec<_> = patterns.into_iter().collect();
        if patterns.is_empty() {
            return Err(MappingError::BadCondition {
                path,
                reason: "no accepted value",
            });
        }
        self.conds.retain(|(p, _)| *p != path);
        self.conds.push((path, patterns));
        Ok(self)
    }

    /// Adds (or replaces) the condition that `path` matches the glob `pattern`.
    ///
    /// # Errors
    /// [`MappingError::BadGlob`] or [`MappingError::BadPath`].
    pub fn glob(self, path: impl Into<String>, pattern: &str) -> Result<Self, MappingError> {
        let g = Glob::new(pattern)?;
        self.with(path, [ValuePattern::Glob(g)])
    }

    /// Adds every condition of `other`, replacing conditions on the same path.
    pub fn merge(mut self, other: &Conditions) -> Self {
        for (path, pats) in &other.conds {
            self.conds.retain(|(p, _)| p != path);
            self.conds.push((path.clone(), pats.clone()));
        }
        self
    }

    /// Whether there are no conditions.
    pub fn is_empty(&self) -> bool {
        self.conds.is_empty()
    }

    /// The claim paths with a condition, in order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.conds.iter().map(|(p, _)| p.as_str())
    }

    /// Whether every condition holds for `claims`.
    pub fn matches(&self, claims: &Map<String, Value>) -> bool {
        self.conds.iter().all(|(path, pats)| {
            claim_path(claims, path).is_some_and(|v| pats.iter().any(|p| p.matches(v)))
        })
    }
}

/// The TOML / JSON form of a condition value before compilation.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawValue {
    Bool(bool),
    Int(i64),
    Str(String),
    List(Vec<RawScalar>),
    Table(BTreeMap<String, RawValue>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawScalar {
    Bool(bool),
    Int(i64),
    Str(String),
}

fn compile_scalar(s: RawScalar) -> Result<ValuePattern, MappingError> {
    Ok(match s {
        RawScalar::Bool(b) => ValuePattern::Bool(b),
        RawScalar::Int(i) => ValuePattern::Int(i),
        RawScalar::Str(s) => ValuePattern::Glob(Glob::new(&s)?),
    })
}

fn flatten(
    prefix: &str,
    raw: BTreeMap<String, RawValue>,
    out: Conditions,
) -> Result<Conditions, MappingError> {
    let mut out = out;
    for (k, v) in raw {
        let path = if prefix.is_empty() {
            k
        } else {
            format!("{prefix}.{k}")
        };
        out = match v {
            RawValue::Table(t) => {
                if t.is_empty() {
                    return Err(MappingError::BadCondition {
                        path,
                        reason: "empty table",
                    });
                }
                flatten(&path, t, out)?
            }
            RawValue::List(items) => {
                let pats = items
                    .into_iter()
                    .map(compile_scalar)
                    .collect::<Result<Vec<_>, _>>()?;
                out.with(path, pats)?
            }
            RawValue::Bool(b) => out.with(path, [ValuePattern::Bool(b)])?,
            RawValue::Int(i) => out.with(path, [ValuePattern::Int(i)])?,
            RawValue::Str(s) => out.with(path, [ValuePattern::Glob(Glob::new(&s)?)])?,
        };
    }
    Ok(out)
}

impl<'de> Deserialize<'de> for Conditions {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = BTreeMap::<String, RawValue>::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "conditions are a table of claim path = string (glob) | integer | boolean | list of them",
            )
        })?;
        flatten("", raw, Conditions::new()).map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------
// Group rules

/// Derives groups from claims: when every condition of `when` holds, the
/// principal gets `groups`. Every matching rule of an issuer adds its groups,
/// in configuration order, after the groups read from the token's own groups
/// claims; duplicates are dropped (`docs/identity.md`, "Group rules").
///
/// In TOML: `{ when = { repository = "acme/billing", ref = "refs/heads/main" }, groups = ["billing-ci"] }`.
/// `when` is required; `when = {}` (always) is allowed but must be written out.
///
/// ```
/// use skillgate::identity::GroupRule;
/// let r: GroupRule = toml::from_str(r#"
///     when = { "kubernetes.io.namespace" = "billing" }
///     groups = ["billing"]
/// "#).unwrap();
/// assert_eq!(r.groups, ["billing"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawRule")]
pub struct GroupRule {
    /// The conditions, all of which must hold.
    pub when: Conditions,
    /// The groups added when they do.
    pub groups: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    when: Conditions,
    groups: Vec<String>,
}

impl TryFrom<RawRule> for GroupRule {
    type Error = MappingError;
    fn try_from(r: RawRule) -> Result<Self, MappingError> {
        GroupRule::new(r.when, r.groups)
    }
}

impl GroupRule {
    /// A rule granting `groups` when `when` holds.
    ///
    /// # Errors
    /// [`MappingError::NoGroups`] if `groups` is empty or names an empty group.
    pub fn new<I, G>(when: Conditions, groups: I) -> Result<Self, MappingError>
    where
        I: IntoIterator<Item = G>,
        G: Into<String>,
    {
        let groups: Vec<String> = groups.into_iter().map(Into::into).collect();
        if groups.is_empty() || groups.iter().any(String::is_empty) {
            return Err(MappingError::NoGroups);
        }
        Ok(GroupRule { when, groups })
    }
}

// ---------------------------------------------------------------------------
// typ

/// Which `typ` header values a verifier accepts (RFC 7515 §4.1.9, RFC 8725
/// §3.11). Values compare case-insensitively, with an optional
/// `application/` prefix.
///
/// ```
/// use skillgate::identity::TypRule;
/// let spiffe = TypRule::IfPresent(vec!["JWT".into(), "JOSE".into()]);
/// assert!(spiffe.allows(None));
/// assert!(spiffe.allows(Some("jwt")));
/// assert!(!spiffe.allows(Some("at+jwt")));
/// assert!(!TypRule::Require(vec!["at+jwt".into()]).allows(None));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TypRule {
    /// `typ` is not checked (the default).
    #[default]
    Any,
    /// `typ` must be present and one of these.
    Require(Vec<String>),
    /// `typ` may be absent; when present it must be one of these.
    IfPresent(Vec<String>),
}

impl TypRule {
    /// Whether a token whose header `typ` is `typ` passes.
    pub fn allows(&self, typ: Option<&str>) -> bool {
        match (self, typ) {
            (TypRule::Any, _) => true,
            (TypRule::Require(_), None) => false,
            (TypRule::IfPresent(_), None) => true,
            (TypRule::Require(ok) | TypRule::IfPresent(ok), Some(t)) => {
                ok.iter().any(|want| super::jwt::typ_matches(Some(t), want))
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Mapping

/// Which claims make up the [`Principal`], plus acceptance conditions and
/// group rules. [`Default`] is the generic OAuth / OIDC shape.
///
/// | field | default | principal field |
/// |---|---|---|
/// | `subject` | `sub` | `subject` (a non-empty string, else the token is refused) |
/// | `groups` | `["groups"]` | `groups`: every listed claim, arrays or one string each, then `rules` |
/// | `scopes` | `["scope", "scp"]` | `scopes`: arrays, or strings split on spaces |
/// | `client_id` | `["client_id", "azp", "appid", "cid"]` | `client_id`: the first that is present |
/// | `attributes` | none | `attributes`: name → claim path; strings, numbers and booleans as text |
/// | `require` | none | the token is refused unless every condition holds |
///
/// Claim paths are claim names, or names joined by dots into nested objects
/// (`realm_access.roles`); a claim whose own name contains dots is found too
/// (`kubernetes.io.namespace`: the whole path as one name first, then each
/// split at a dot, longest first name first).
///
/// The principal's `issuer` is the verifier's configured issuer (also when
/// the token used one of its aliases), so the pair (issuer, subject) is one
/// principal however the issuer was spelled.
///
/// ```
/// use serde_json::json;
/// use skillgate::identity::ClaimMapping;
/// let mut m = ClaimMapping::default();
/// m.subject = "oid".into();
/// m.groups = vec!["roles".into()];
/// m.attributes.insert("tenant_id".into(), "tid".into());
/// let claims = json!({"iss": "https://sts.windows.net/t/", "sub": "x", "oid": "o-1",
///                     "tid": "t", "roles": ["Skills.Invoke"], "appid": "app-1"});
/// let p = m.principal("https://sts.windows.net/t/", claims.as_object().unwrap().clone()).unwrap();
/// assert_eq!((p.subject.as_str(), p.client_id.as_deref()), ("o-1", Some("app-1")));
/// assert_eq!(p.attribute("tenant_id"), Some("t"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClaimMapping {
    /// Claim path of the subject.
    pub subject: String,
    /// Claim paths holding groups.
    pub groups: Vec<String>,
    /// Claim paths holding scopes.
    pub scopes: Vec<String>,
    /// Claim paths naming the OAuth client, first present wins.
    pub client_id: Vec<String>,
    /// Principal attributes: attribute name → claim path.
    pub attributes: BTreeMap<String, String>,
    /// Group rules, applied in order.
    pub rules: Vec<GroupRule>,
    /// Conditions every accepted token must meet.
    pub require: Conditions,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        ClaimMapping {
            subject: "sub".into(),
            groups: vec!["groups".into()],
            scopes: vec!["scope".into(), "scp".into()],
            client_id: ["client_id", "azp", "appid", "cid"]
                .map(String::from)
                .to_vec(),
            attributes: BTreeMap::new(),
            rules: Vec::new(),
            require: Conditions::new(),
        }
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn dedup(v: &mut Vec<String>) {
    let mut seen = HashSet::new();
    v.retain(|s| seen.insert(s.clone()));
}

impl ClaimMapping {
    /// Checks every claim path and rule.
    ///
    /// # Errors
    /// [`MappingError::BadPath`] for an empty path or segment.
    pub fn validate(&self) -> Result<(), MappingError> {
        check_path(&self.subject)?;
        for p in self
            .groups
            .iter()
            .chain(&self.scopes)
            .chain(&self.client_id)
            .chain(self.attributes.values())
        {
            check_path(p)?;
        }
        Ok(())
    }

    /// Builds the principal for verified `claims` of a token from `issuer`.
    /// Call only after the signature, `iss`, `aud` and times are verified.
    ///
    /// # Errors
    /// [`AuthError::ClaimsNotAccepted`] when `require` does not hold,
    /// [`AuthError::MissingClaim`] when the subject or `iss` is absent.
    pub fn principal(
        &self,
        issuer: &str,
        claims: Map<String, Value>,
    ) -> Result<Principal, AuthError> {
        if !claims.get("iss").is_some_and(Value::is_string) {
            return Err(AuthError::MissingClaim("iss"));
        }
        if !self.require.matches(&claims) {
            return Err(AuthError::ClaimsNotAccepted);
        }
        let subject = claim_path(&claims, &self.subject)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or(AuthError::MissingClaim("sub"))?;
        let client_id = self
            .client_id
            .iter()
            .find_map(|c| {
                claim_path(&claims, c)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
            })
            .map(str::to_owned);
        let mut groups: Vec<String> = self
            .groups
            .iter()
            .flat_map(|g| string_list(claim_path(&claims, g), false))
            .collect();
        for rule in &self.rules {
            if rule.when.matches(&claims) {
                groups.extend(rule.groups.iter().cloned());
            }
        }
        groups.retain(|g| !g.is_empty());
        dedup(&mut groups);
        let mut scopes: Vec<String> = self
            .scopes
            .iter()
            .flat_map(|s| string_list(claim_path(&claims, s), true))
            .collect();
        dedup(&mut scopes);
        let attributes = self
            .attributes
            .iter()
            .filter_map(|(name, path)| {
                claim_path(&claims, path)
                    .and_then(scalar_text)
                    .map(|v| (name.clone(), v))
            })
            .collect();
        Ok(Principal {
            issuer: issuer.to_owned(),
            subject,
            client_id,
            groups,
            scopes,
            token_id: claims.get("jti").and_then(Value::as_str).map(str::to_owned),
            expires_at: claims.get("exp").and_then(Value::as_i64),
            attributes,
            claims,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn glob_semantics() {
        let m = |p: &str, t: &str| Glob::new(p).unwrap().matches(t);
        assert!(m("acme/billing", "acme/billing"));
        assert!(!m("acme/billing", "acme/billing2"));
        assert!(!m("acme/billing", "Acme/billing"));
        assert!(m("acme/*", "acme/billing"));
        assert!(m("acme/*", "acme/"));
        assert!(!m("acme/*", "acme/a/b"));
        assert!(!m("acme/*", "acmex/billing"));
        assert!(m("refs/heads/**", "refs/heads/feature/x"));
        assert!(m("**", ""));
        assert!(m(
            "*@proj.iam.gserviceaccount.com",
            "ci@proj.iam.gserviceaccount.com"
        ));
        assert!(!m(
            "*@proj.iam.gserviceaccount.com",
            "ci@evil.com#@proj.iam.gserviceaccount.comx"
        ));
        assert!(m("v?.?", "v1.2"));
        assert!(!m("v?", "v/"));
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[a-c]x", "dx"));
        assert!(m("[!a-c]x", "dx"));
        assert!(!m("[!a-c]x", "/x"));
        assert!(m(r"a\*", "a*"));
        assert!(!m(r"a\*", "ab"));
        assert!(m(
            "system:serviceaccount:prod:*",
            "system:serviceaccount:prod:skill"
        ));
        assert!(m("*a*a*a*a*a*b", &format!("{}b", "a".repeat(40))));
        assert!(!m("*a*a*a*a*a*b", &"a".repeat(4000)));
        assert!(m("ü*", "über"));
    }

    #[test]
    fn bad_globs_are_errors() {
        for p in ["[abc", "[]", "a\\", "***", "[z-a]", "[!]"] {
            assert!(
                matches!(Glob::new(p), Err(MappingError::BadGlob { .. })),
                "{p} should be refused"
            );
        }
    }

    #[test]
    fn conditions_need_every_condition_and_any_array_element() {
        let c = Conditions::new()
            .glob("repository", "acme/*")
            .unwrap()
            .glob("ref", "refs/heads/main")
            .unwrap();
        assert!(c.matches(&obj(
            json!({"repository": "acme/x", "ref": "refs/heads/main"})
        )));
        assert!(!c.matches(&obj(
            json!({"repository": "acme/x", "ref": "refs/heads/dev"})
        )));
        assert!(!c.matches(&obj(json!({"repository": "acme/x"}))));
        let arr = Conditions::new().glob("aud", "b").unwrap();
        assert!(arr.matches(&obj(json!({"aud": ["a", "b"]}))));
        assert!(!arr.matches(&obj(json!({"aud": ["a", "c"]}))));
        assert!(!arr.matches(&obj(json!({"aud": {"b": "b"}}))));
        assert!(Conditions::new().matches(&obj(json!({}))));
    }

    #[test]
    fn typed_values_compare_with_text_forms() {
        let c: Conditions =
            toml::from_str("ref_protected = true\nrepository_id = 74\nrun = \"12\"").unwrap();
        assert!(c.matches(&obj(
            json!({"ref_protected": "true", "repository_id": "74", "run": 12})
        )));
        assert!(c.matches(&obj(
            json!({"ref_protected": true, "repository_id": 74, "run": "12"})
        )));
        assert!(!c.matches(&obj(
            json!({"ref_protected": "false", "repository_id": 74, "run": 12})
        )));
        assert!(!c.matches(&obj(
            json!({"ref_protected": true, "repository_id": 740, "run": 12})
        )));
    }

    #[test]
    fn toml_conditions_flatten_dotted_keys_and_report_errors() {
        let a: Conditions = toml::from_str("kubernetes.io.namespace = \"prod\"").unwrap();
        let b: Conditions = toml::from_str("\"kubernetes.io.namespace\" = \"prod\"").unwrap();
        assert_eq!(a, b);
        let claims = obj(json!({"kubernetes.io": {"namespace": "prod"}}));
        assert!(a.matches(&claims));
        let e = toml::from_str::<Conditions>("repository = \"acme/[x\"").unwrap_err();
        assert!(e.to_string().contains("bad glob"), "{e}");
        let e = toml::from_str::<Conditions>("x = 1.5").unwrap_err();
        assert!(e.to_string().contains("claim path"), "{e}");
        let e = toml::from_str::<Conditions>("x = []").unwrap_err();
        assert!(e.to_string().contains("no accepted value"), "{e}");
    }

    #[test]
    fn group_rules_add_to_token_groups() {
        let rules = toml::from_str::<BTreeMap<String, Vec<GroupRule>>>(
            r#"
            [[r]]
            when = { repository = "acme/billing", ref = "refs/heads/main" }
            groups = ["billing-ci"]
            [[r]]
            when = { repository_owner = "acme" }
            groups = ["acme", "ci"]
            [[r]]
            when = { repository_owner = "other" }
            groups = ["never"]
            "#,
        )
        .unwrap()
        .remove("r")
        .unwrap();
        let m = ClaimMapping {
            rules,
            ..ClaimMapping::default()
        };
        let p = m
            .principal(
                "https://i",
                obj(
                    json!({"iss": "https://i", "sub": "s", "groups": ["ci", "own"],
                           "repository": "acme/billing", "repository_owner": "acme",
                           "ref": "refs/heads/main"}),
                ),
            )
            .unwrap();
        assert_eq!(p.groups, ["ci", "own", "billing-ci", "acme"]);
        let e = toml::from_str::<GroupRule>("when = {}\ngroups = []").unwrap_err();
        assert!(e.to_string().contains("no group"), "{e}");
        assert!(toml::from_str::<GroupRule>("groups = [\"x\"]").is_err());
    }

    #[test]
    fn require_refuses_and_subject_is_required() {
        let m = ClaimMapping {
            require: Conditions::new().glob("repository_owner", "acme").unwrap(),
            ..ClaimMapping::default()
        };
        let ok = obj(json!({"iss": "i", "sub": "s", "repository_owner": "acme"}));
        assert!(m.principal("i", ok).is_ok());
        let other = obj(json!({"iss": "i", "sub": "s", "repository_owner": "evil"}));
        assert_eq!(
            m.principal("i", other).unwrap_err(),
            AuthError::ClaimsNotAccepted
        );
        let m = ClaimMapping::default();
        assert_eq!(
            m.principal("i", obj(json!({"iss": "i", "sub": ""})))
                .unwrap_err(),
            AuthError::MissingClaim("sub")
        );
        assert_eq!(
            m.principal("i", obj(json!({"sub": "s"}))).unwrap_err(),
            AuthError::MissingClaim("iss")
        );
    }

    #[test]
    fn scopes_and_client_id() {
        let m = ClaimMapping::default();
        let p = m
            .principal(
                "i",
                obj(
                    json!({"iss": "i", "sub": "s", "scope": "a b", "scp": ["b", "c"],
                           "azp": "client-1", "cid": "other"}),
                ),
            )
            .unwrap();
        assert_eq!(p.scopes, ["a", "b", "c"]);
        assert_eq!(p.client_id.as_deref(), Some("client-1"));
    }

    #[test]
    fn validate_refuses_empty_paths() {
        let mut m = ClaimMapping::default();
        assert!(m.validate().is_ok());
        m.groups.push("a..b".into());
        assert_eq!(m.validate(), Err(MappingError::BadPath("a..b".into())));
    }
}
