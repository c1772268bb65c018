//! The verified caller: [`Principal`].

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A verified machine identity, built from a token's claims.
///
/// A principal is identified by the pair (`issuer`, `subject`): the same
/// subject from two issuers is two principals (OIDC Core §2, `sub` is only
/// unique within its issuer). Inserted into the request extensions by
/// [`IdentityLayer`](crate::identity::IdentityLayer) for the layers behind it.
///
/// ```
/// use skillgate::identity::Principal;
/// let p = Principal::new("https://idp.example.com", "skill-billing")
///     .with_groups(["ci", "billing"]);
/// assert!(p.in_group("billing"));
/// assert_eq!(p.id(), "https://idp.example.com#skill-billing");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Principal {
    /// The `iss` claim (RFC 7519 §4.1.1).
    pub issuer: String,
    /// The `sub` claim (RFC 7519 §4.1.2).
    pub subject: String,
    /// The OAuth client: `client_id` (RFC 9068 §2.2), else `azp`, `appid` or `cid`.
    pub client_id: Option<String>,
    /// Groups, from the configured claim path (strings; a single string counts as one group).
    pub groups: Vec<String>,
    /// Scopes: `scope` (space-separated, RFC 9068 §2.2.3) or `scp` (string or array).
    pub scopes: Vec<String>,
    /// The `jti` claim (RFC 7519 §4.1.7), if any.
    pub token_id: Option<String>,
    /// The `exp` claim: seconds since the Unix epoch.
    pub expires_at: Option<i64>,
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

    /// A stable display id: `issuer#subject`.
    pub fn id(&self) -> String {
        format!("{}#{}", self.issuer, self.subject)
    }

    /// Whether the principal is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// Whether the principal holds `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// A claim by dot-separated path, e.g. `"realm_access.roles"`.
    pub fn claim(&self, path: &str) -> Option<&Value> {
        claim_path(&self.claims, path)
    }
}

/// Looks up a dot-separated path in a claims object.
pub(crate) fn claim_path<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    // A claim whose own name contains dots (e.g. a URI-named claim) wins.
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let mut cur = claims.get(parts.next()?)?;
    for p in parts {
        cur = cur.as_object()?.get(p)?;
    }
    Some(cur)
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
