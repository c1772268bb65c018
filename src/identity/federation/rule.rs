//! [`FederationRule`]: which verified identities may exchange their token
//! for a gateway token, and which groups they get.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::identity::Principal;

/// A condition on one claim of the assertion.
///
/// - [`Equals`](Self::Equals): the claim is exactly this JSON value.
/// - [`Glob`](Self::Glob): the claim is a string matching the pattern, where
///   `*` matches any run of characters (`/` and `:` included) and `?` exactly
///   one; every other character matches itself.
///
/// When the claim is an array, the condition holds if any element satisfies
/// it. A missing claim satisfies nothing.
///
/// In TOML a bare value means `Equals`; a table says which:
/// `repository = "acme/billing"`, `ref = { glob = "refs/heads/*" }`,
/// `run_attempt = { equals = 1 }`.
///
/// ```
/// use serde_json::json;
/// use skillgate::identity::federation::ClaimCondition;
/// let c = ClaimCondition::glob("repo:acme/*:ref:refs/heads/main");
/// assert!(c.matches(Some(&json!("repo:acme/billing:ref:refs/heads/main"))));
/// assert!(!c.matches(Some(&json!("repo:evil/billing:ref:refs/heads/main"))));
/// assert!(ClaimCondition::equals("ci").matches(Some(&json!(["dev", "ci"]))));
/// assert!(!ClaimCondition::equals("ci").matches(None));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimCondition {
    /// The claim equals this value (JSON equality: `"1"` is not `1`).
    Equals(Value),
    /// The claim is a string matching this glob.
    Glob(String),
}

impl ClaimCondition {
    /// An [`Equals`](Self::Equals) condition.
    pub fn equals(v: impl Into<Value>) -> Self {
        ClaimCondition::Equals(v.into())
    }

    /// A [`Glob`](Self::Glob) condition.
    pub fn glob(pattern: impl Into<String>) -> Self {
        ClaimCondition::Glob(pattern.into())
    }

    /// Whether `claim` (the claim's value, `None` when absent) satisfies this condition.
    pub fn matches(&self, claim: Option<&Value>) -> bool {
        let one = |v: &Value| match self {
            ClaimCondition::Equals(want) => v == want,
            ClaimCondition::Glob(p) => v.as_str().is_some_and(|s| glob_match(p, s)),
        };
        match claim {
            None => false,
            // An array equal to an array condition, or any element matching.
            Some(all @ Value::Array(items)) => {
                matches!(self, ClaimCondition::Equals(w) if w == all) || items.iter().any(one)
            }
            Some(v) => one(v),
        }
    }
}

impl<'de> Deserialize<'de> for ClaimCondition {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct GlobSpec {
            glob: String,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct EqualsSpec {
            equals: Value,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Spec {
            Glob(GlobSpec),
            Equals(EqualsSpec),
            Bare(Value),
        }
        Ok(match Spec::deserialize(d)? {
            Spec::Glob(g) => ClaimCondition::Glob(g.glob),
            Spec::Equals(e) => ClaimCondition::Equals(e.equals),
            Spec::Bare(Value::Object(_)) => {
                return Err(serde::de::Error::custom(
                    "a claim condition table must be { glob = \"…\" } or { equals = … }",
                ));
            }
            Spec::Bare(v) => ClaimCondition::Equals(v),
        })
    }
}

/// Looks up a dot-separated claim path where claim names may themselves
/// contain dots: at each level the longest name that exists wins, so
/// `kubernetes.io.namespace` finds `{"kubernetes.io": {"namespace": …}}`.
pub(crate) fn lookup<'a>(
    claims: &'a serde_json::Map<String, Value>,
    path: &str,
) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    // Split points, longest prefix first.
    for (i, _) in path.char_indices().rev().filter(|(_, c)| *c == '.') {
        if let Some(Value::Object(inner)) = claims.get(&path[..i])
            && let Some(v) = lookup(inner, &path[i + 1..])
        {
            return Some(v);
        }
    }
    None
}

/// Glob match: `*` any run (possibly empty), `?` one character.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and the text position it is currently matched up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(c) if *c == '?' || *c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Why a verified identity did not satisfy a rule. The text names the
/// claim, never its value.
///
/// ```
/// use skillgate::identity::federation::RuleMismatch;
/// let m = RuleMismatch::Condition("repository".into());
/// assert_eq!(m.to_string(), "claim condition not met: repository");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleMismatch {
    /// The assertion's issuer is not one the rule allows.
    #[error("issuer not allowed by the rule")]
    Issuer,
    /// The condition on this claim path is not met.
    #[error("claim condition not met: {0}")]
    Condition(String),
}

/// A federation rule: which issuers' tokens, with which claims, may be
/// exchanged at the token endpoint under this rule's id, the groups the
/// minted token carries, and its longest lifetime.
///
/// Callers name the rule with `federation_rule_id` (the SDKs read it from
/// `ANTHROPIC_FEDERATION_RULE_ID`). Every condition must hold.
///
/// ```
/// use serde_json::json;
/// use skillgate::identity::Principal;
/// use skillgate::identity::federation::{ClaimCondition, FederationRule};
/// let rule = FederationRule::new("fdrl_billing_ci")
///     .issuer("https://token.actions.githubusercontent.com")
///     .condition("repository", ClaimCondition::equals("acme/billing"))
///     .condition("ref", ClaimCondition::glob("refs/heads/*"))
///     .group("billing-ci")
///     .max_ttl_secs(300);
/// let mut p = Principal::new("https://token.actions.githubusercontent.com", "repo:acme/billing:ref:refs/heads/main");
/// p.claims = json!({"repository": "acme/billing", "ref": "refs/heads/main"}).as_object().unwrap().clone();
/// assert!(rule.check(&p).is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationRule {
    /// The rule id callers send as `federation_rule_id`.
    pub id: String,
    /// Issuers (`iss`, exact) whose tokens this rule accepts; at least one.
    pub issuers: Vec<String>,
    /// Claim path → condition; all must hold. Paths are dot-separated; a
    /// claim name that contains dots is found too (`kubernetes.io.namespace`).
    #[serde(default)]
    pub conditions: BTreeMap<String, ClaimCondition>,
    /// Groups the minted token carries (the assertion's own groups are not copied).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Longest lifetime of tokens minted under this rule, in seconds (default:
    /// the endpoint's token lifetime).
    #[serde(default)]
    pub max_ttl_secs: Option<u64>,
}

impl FederationRule {
    /// A rule with id `id` and nothing allowed yet.
    pub fn new(id: impl Into<String>) -> Self {
        FederationRule {
            id: id.into(),
            issuers: Vec::new(),
            conditions: BTreeMap::new(),
            groups: Vec::new(),
            max_ttl_secs: None,
        }
    }

    /// Allows tokens from `issuer`.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuers.push(issuer.into());
        self
    }

    /// Adds a condition on the claim at `path`.
    pub fn condition(mut self, path: impl Into<String>, c: ClaimCondition) -> Self {
        self.conditions.insert(path.into(), c);
        self
    }

    /// Grants `group`.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.groups.push(group.into());
        self
    }

    /// Caps the lifetime of tokens minted under this rule (seconds).
    pub fn max_ttl_secs(mut self, secs: u64) -> Self {
        self.max_ttl_secs = Some(secs);
        self
    }

    /// Checks a verified principal (from the assertion) against the rule.
    ///
    /// # Errors
    /// The first [`RuleMismatch`] found.
    pub fn check(&self, p: &Principal) -> Result<(), RuleMismatch> {
        if !self.issuers.contains(&p.issuer) {
            return Err(RuleMismatch::Issuer);
        }
        for (path, cond) in &self.conditions {
            if !cond.matches(lookup(&p.claims, path)) {
                return Err(RuleMismatch::Condition(path.clone()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn globs() {
        for (p, t, want) in [
            ("*", "", true),
            ("*", "anything/at:all", true),
            ("refs/heads/*", "refs/heads/main", true),
            ("refs/heads/*", "refs/tags/v1", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*b*b", "abxbb", true),
            ("*b*b", "abxba", false),
            (
                "repo:acme/*:ref:refs/heads/main",
                "repo:acme/x:ref:refs/heads/main",
                true,
            ),
            (
                "repo:acme/*:ref:refs/heads/main",
                "repo:acme/x:ref:refs/heads/dev",
                false,
            ),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("", "", true),
            ("", "x", false),
            (
                "system:serviceaccount:ci:*",
                "system:serviceaccount:ci:runner",
                true,
            ),
            (
                "system:serviceaccount:ci:*",
                "system:serviceaccount:cix:runner",
                false,
            ),
        ] {
            assert_eq!(glob_match(p, t), want, "{p:?} vs {t:?}");
        }
    }

    #[test]
    fn conditions_from_toml() {
        #[derive(Deserialize)]
        struct W {
            c: BTreeMap<String, ClaimCondition>,
        }
        let w: W = toml::from_str(
            r#"
            [c]
            repository = "acme/billing"
            ref = { glob = "refs/heads/*" }
            run_attempt = { equals = 1 }
            "#,
        )
        .unwrap();
        assert_eq!(w.c["repository"], ClaimCondition::equals("acme/billing"));
        assert_eq!(w.c["ref"], ClaimCondition::glob("refs/heads/*"));
        assert_eq!(w.c["run_attempt"], ClaimCondition::equals(1));
        assert!(toml::from_str::<W>("[c]\nx = { regex = \"a\" }").is_err());
    }

    #[test]
    fn rule_checks_issuer_and_every_condition() {
        let rule = FederationRule::new("r")
            .issuer("https://a")
            .condition("kubernetes.io.namespace", ClaimCondition::equals("ci"))
            .condition("sub", ClaimCondition::glob("system:serviceaccount:ci:*"));
        let mut p = Principal::new("https://a", "system:serviceaccount:ci:runner");
        p.claims = json!({
            "sub": "system:serviceaccount:ci:runner",
            "kubernetes.io": {"namespace": "ci"}
        })
        .as_object()
        .unwrap()
        .clone();
        assert_eq!(rule.check(&p), Ok(()));
        let mut other_iss = p.clone();
        other_iss.issuer = "https://b".into();
        assert_eq!(rule.check(&other_iss), Err(RuleMismatch::Issuer));
        p.claims["kubernetes.io"]["namespace"] = json!("prod");
        assert_eq!(
            rule.check(&p),
            Err(RuleMismatch::Condition("kubernetes.io.namespace".into()))
        );
        p.claims.remove("kubernetes.io");
        assert!(rule.check(&p).is_err(), "a missing claim fails");
    }
}
