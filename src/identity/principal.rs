//! The verified caller: [`Principal`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A verified machine identity, built from a token's claims.
///
/// A principal is identified by the pair (`issuer`, `subject`): the same
/// subject from two issuers is two principals (OIDC Core §2, `sub` is only
/// unique within its issuer). Inserted into the request extensions by
/// [`IdentityLayer`](crate::identity::IdentityLayer) for the layers behind it.
///
/// Compare principals with [`Principal::key`] or [`Principal::id`], never
/// by subject alone.
///
/// ```
/// use skillgate::identity::Principal;
/// let p = Principal::new("https://idp.example.com", "skill-billing")
///     .with_groups(["ci", "billing"]);
/// assert!(p.in_group("billing"));
/// assert_eq!(p.id(), "https://idp.example.com#skill-billing");
/// let other = Principal::new("https://other.example.com", "skill-billing");
/// assert_ne!(p.key(), other.key());
/// assert_ne!(p.id(), other.id());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Principal {
    /// The `iss` claim (RFC 7519 §4.1.1).
    pub issuer: String,
    /// The `sub` claim (RFC 7519 §4.1.2).
    pub subject: String,
    /// The OAuth client, from the configured claims (default: `client_id`
    /// (RFC 9068 §2.2), else `azp`, `appid` or `cid`).
    pub client_id: Option<String>,
    /// Groups: from the configured claim paths (strings; a single string
    /// counts as one group), then from matching group rules; no duplicates.
    pub groups: Vec<String>,
    /// Scopes: by default `scope` (space-separated, RFC 9068 §2.2.3) and
    /// `scp` (string or array).
    pub scopes: Vec<String>,
    /// The `jti` claim (RFC 7519 §4.1.7), if any.
    pub token_id: Option<String>,
    /// The `exp` claim: seconds since the Unix epoch.
    pub expires_at: Option<i64>,
    /// Named attributes the issuer's mapping reads from claims (for example
    /// `namespace` and `service_account` for Kubernetes, `repository` for
    /// GitHub Actions), as text.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// Every claim of the verified token, as JSON.
    pub claims: Map<String, Value>,
}

impl Principal {
    /// A principal with only issuer and subject set.
    pub fn new(issuer: impl Into<String>, subject: impl Into<String>) -> Self {
        Principal {
            issuer: issuer.into(),
            subject: subject.into(),
            client_id: None,
            groups: Vec::new(),
            scopes: Vec::new(),
            token_id: None,
            expires_at: None,
            attributes: BTreeMap::new(),
            claims: Map::new(),
        }
    }

    /// Replaces the groups.
    pub fn with_groups<I, G>(mut self, groups: I) -> Self
    where
        I: IntoIterator<Item = G>,
        G: Into<String>,
    {
        self.groups = groups.into_iter().map(Into::into).collect();
        self
    }

    /// The identity of the principal: the pair (issuer, subject).
    pub fn key(&self) -> (&str, &str) {
        (&self.issuer, &self.subject)
    }

    /// A stable display id: `issuer#subject`, with `%` and `#` in the issuer
    /// percent-encoded so that two different (issuer, subject) pairs never
    /// give the same id (the first `#` always ends the issuer).
    pub fn id(&self) -> String {
        let mut id = String::with_capacity(self.issuer.len() + self.subject.len() + 1);
        for c in self.issuer.chars() {
            match c {
                '%' => id.push_str("%25"),
                '#' => id.push_str("%23"),
                c => id.push(c),
            }
        }
        id.push('#');
        id.push_str(&self.subject);
        id
    }

    /// An attribute by name (see [`attributes`](Self::attributes)).
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.get(name).map(String::as_str)
    }

    /// Whether the principal is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// Whether the principal holds `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// A claim by dot-separated path, e.g. `"realm_access.roles"` or
    /// `"kubernetes.io.namespace"` (claim names containing dots are found).
    pub fn claim(&self, path: &str) -> Option<&Value> {
        claim_path(&self.claims, path)
    }
}

/// Looks up a dot-separated path in a claims object. The whole path as one
/// claim name wins (URI-named claims); otherwise the path is split at a dot,
/// the longest existing object name first (`kubernetes.io` + `namespace`),
/// and the rest is looked up inside it.
pub(crate) fn claim_path<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    path.match_indices('.').rev().find_map(|(i, _)| {
        claims
            .get(&path[..i])
            .and_then(Value::as_object)
            .and_then(|inner| claim_path(inner, &path[i + 1..]))
    })
}

/// Reads a claim as a list of strings: an array of strings, or one string
/// split on whitespace when `split_spaces` (OAuth `scope`), else taken whole.
pub(crate) fn string_list(v: Option<&Value>, split_spaces: bool) -> Vec<String> {
    match v {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_owned))
            .collect(),
        Some(Value::String(s)) if split_spaces => s.split_whitespace().map(str::to_owned).collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claim_paths() {
        let c = json!({"a": {"b": ["x"]}, "urn:x.y": 1})
            .as_object()
            .unwrap()
            .clone();
        assert_eq!(claim_path(&c, "a.b"), Some(&json!(["x"])));
        assert_eq!(claim_path(&c, "urn:x.y"), Some(&json!(1)));
        assert_eq!(claim_path(&c, "a.c"), None);
        assert_eq!(claim_path(&c, "a.b.c"), None);
        let k = json!({"kubernetes.io": {"namespace": "prod", "serviceaccount": {"name": "sa"}}});
        let k = k.as_object().unwrap();
        assert_eq!(
            claim_path(k, "kubernetes.io.namespace"),
            Some(&json!("prod"))
        );
        assert_eq!(
            claim_path(k, "kubernetes.io.serviceaccount.name"),
            Some(&json!("sa"))
        );
        assert_eq!(claim_path(k, "kubernetes.io.pod.name"), None);
    }

    #[test]
    fn ids_never_conflate_issuer_and_subject() {
        let a = Principal::new("https://a", "b#c");
        let b = Principal::new("https://a#b", "c");
        assert_ne!(a.id(), b.id());
        assert_eq!(b.id(), "https://a%23b#c");
        let c = Principal::new("https://a%23b", "c");
        assert_ne!(b.id(), c.id());
        let same_sub = Principal::new("https://other", "b#c");
        assert_ne!(a.id(), same_sub.id());
        assert_ne!(a.key(), same_sub.key());
        assert_ne!(a, same_sub);
    }

    #[test]
    fn string_lists() {
        assert_eq!(string_list(Some(&json!("a b")), true), vec!["a", "b"]);
        assert_eq!(string_list(Some(&json!("a b")), false), vec!["a b"]);
        assert_eq!(
            string_list(Some(&json!(["a", 1, "b"])), false),
            vec!["a", "b"]
        );
        assert!(string_list(Some(&json!({"a": 1})), true).is_empty());
        assert!(string_list(None, true).is_empty());
    }
}
