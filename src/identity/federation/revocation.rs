//! Revocation of gateway-minted tokens: by token id (`jti`) and by principal
//! ("every token of (issuer, subject) issued before T").

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;

/// Why a revocation store could not answer or record. Carries no token.
///
/// ```
/// use skillgate::identity::federation::RevocationError;
/// let e = RevocationError::Unavailable("connection refused".into());
/// assert!(e.to_string().contains("unavailable"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RevocationError {
    /// The store cannot be reached or refused the operation.
    #[error("revocation store unavailable: {0}")]
    Unavailable(String),
    /// The store's configuration is unusable (bad table prefix, bad URL).
    #[error("revocation store configuration: {0}")]
    Config(String),
}

/// What a revocation check is asked about one token.
///
/// ```
/// use skillgate::identity::federation::RevocationQuery;
/// let q = RevocationQuery { token_id: "0190…", issuer: "https://idp", subject: "skill-a", issued_at: 1_767_225_600 };
/// # let _ = q;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevocationQuery<'a> {
    /// The token's `jti`.
    pub token_id: &'a str,
    /// The principal's issuer (the assertion's issuer, `orig_iss`).
    pub issuer: &'a str,
    /// The principal's subject.
    pub subject: &'a str,
    /// The token's `iat`, seconds since the Unix epoch.
    pub issued_at: i64,
}

/// Where revocations live. Every gateway instance must use the same store
/// (for several instances: [`PostgresRevocationStore`](super::PostgresRevocationStore))
/// for a revocation to take effect everywhere.
///
/// A token is revoked when its `jti` was revoked, or when its principal was
/// revoked with a cut-off later than the token's `iat`. Implementations must
/// return `Err` rather than `Ok(false)` when they cannot tell (the verifier
/// then refuses the token).
///
/// ```
/// use async_trait::async_trait;
/// use skillgate::identity::federation::{RevocationError, RevocationQuery, RevocationStore};
///
/// /// Nothing is ever revoked (only for a gateway without revocation needs).
/// struct Never;
///
/// #[async_trait]
/// impl RevocationStore for Never {
///     async fn revoke_token(&self, _: &str, _: i64) -> Result<(), RevocationError> {
///         Err(RevocationError::Config("revocation is not supported".into()))
///     }
///     async fn revoke_principal(&self, _: &str, _: &str, _: i64) -> Result<(), RevocationError> {
///         Err(RevocationError::Config("revocation is not supported".into()))
///     }
///     async fn is_revoked(&self, _: &RevocationQuery<'_>) -> Result<bool, RevocationError> {
///         Ok(false)
///     }
/// }
/// ```
#[async_trait]
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a skillgate `RevocationStore`",
    note = "implement revoke_token, revoke_principal and is_revoked with #[async_trait]"
)]
pub trait RevocationStore: Send + Sync + 'static {
    /// Revokes the token whose `jti` is `token_id`. `expires_at` (the
    /// token's `exp`, seconds) tells when the entry may be pruned.
    async fn revoke_token(&self, token_id: &str, expires_at: i64) -> Result<(), RevocationError>;

    /// Revokes every token of (`issuer`, `subject`) whose `iat` is before
    /// `issued_before` (seconds). A later cut-off replaces an earlier one; an
    /// earlier one never shortens it. Tokens issued from `issued_before` on
    /// are accepted again (the identity itself stays trusted: to stop new
    /// exchanges, change the federation rule).
    async fn revoke_principal(
        &self,
        issuer: &str,
        subject: &str,
        issued_before: i64,
    ) -> Result<(), RevocationError>;

    /// Whether the token described by `query` is revoked.
    async fn is_revoked(&self, query: &RevocationQuery<'_>) -> Result<bool, RevocationError>;

    /// Forgets entries that can no longer matter: token entries whose token
    /// expired before `cutoff`, principal entries whose cut-off is before
    /// `cutoff`. Pass `now - longest token lifetime - leeway`. Returns how
    /// many entries were removed (default: none).
    async fn prune(&self, cutoff: i64) -> Result<u64, RevocationError> {
        let _ = cutoff;
        Ok(0)
    }
}

#[async_trait]
impl<T: RevocationStore + ?Sized> RevocationStore for Arc<T> {
    async fn revoke_token(&self, token_id: &str, expires_at: i64) -> Result<(), RevocationError> {
        (**self).revoke_token(token_id, expires_at).await
    }
    async fn revoke_principal(
        &self,
        issuer: &str,
        subject: &str,
        issued_before: i64,
    ) -> Result<(), RevocationError> {
        (**self)
            .revoke_principal(issuer, subject, issued_before)
            .await
    }
    async fn is_revoked(&self, query: &RevocationQuery<'_>) -> Result<bool, RevocationError> {
        (**self).is_revoked(query).await
    }
    async fn prune(&self, cutoff: i64) -> Result<u64, RevocationError> {
        (**self).prune(cutoff).await
    }
}

/// A revocation store in this process's memory: right for one instance,
/// and for tests. Revocations are lost at restart.
///
/// ```
/// use skillgate::identity::federation::{MemoryRevocationStore, RevocationQuery, RevocationStore};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryRevocationStore::new();
/// store.revoke_token("jti-1", 2_000_000_000).await.unwrap();
/// let q = RevocationQuery { token_id: "jti-1", issuer: "https://idp", subject: "s", issued_at: 0 };
/// assert!(store.is_revoked(&q).await.unwrap());
/// # });
/// ```
#[derive(Debug, Default)]
pub struct MemoryRevocationStore {
    tokens: RwLock<HashMap<String, i64>>,
    principals: RwLock<HashMap<(String, String), i64>>,
}

impl MemoryRevocationStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl RevocationStore for MemoryRevocationStore {
    async fn revoke_token(&self, token_id: &str, expires_at: i64) -> Result<(), RevocationError> {
        let mut t = self.tokens.write().unwrap_or_else(|p| p.into_inner());
        let e = t.entry(token_id.to_owned()).or_insert(expires_at);
        *e = (*e).max(expires_at);
        Ok(())
    }

    async fn revoke_principal(
        &self,
        issuer: &str,
        subject: &str,
        issued_before: i64,
    ) -> Result<(), RevocationError> {
        let mut p = self.principals.write().unwrap_or_else(|p| p.into_inner());
        let e = p
            .entry((issuer.to_owned(), subject.to_owned()))
            .or_insert(issued_before);
        *e = (*e).max(issued_before);
        Ok(())
    }

    async fn is_revoked(&self, q: &RevocationQuery<'_>) -> Result<bool, RevocationError> {
        if self
            .tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(q.token_id)
        {
            return Ok(true);
        }
        let principals = self.principals.read().unwrap_or_else(|p| p.into_inner());
        let key = (q.issuer.to_owned(), q.subject.to_owned());
        Ok(principals
            .get(&key)
            .is_some_and(|before| q.issued_at < *before))
    }

    async fn prune(&self, cutoff: i64) -> Result<u64, RevocationError> {
        let mut removed = 0u64;
        {
            let mut t = self.tokens.write().unwrap_or_else(|p| p.into_inner());
            let before = t.len();
            t.retain(|_, exp| *exp >= cutoff);
            removed += (before - t.len()) as u64;
        }
        let mut p = self.principals.write().unwrap_or_else(|p| p.into_inner());
        let before = p.len();
        p.retain(|_, t| *t >= cutoff);
        removed += (before - p.len()) as u64;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q<'a>(jti: &'a str, sub: &'a str, iat: i64) -> RevocationQuery<'a> {
        RevocationQuery {
            token_id: jti,
            issuer: "https://idp",
            subject: sub,
            issued_at: iat,
        }
    }

    #[tokio::test]
    async fn memory_store_semantics() {
        let s = MemoryRevocationStore::new();
        assert!(!s.is_revoked(&q("a", "s", 100)).await.unwrap());
        s.revoke_token("a", 500).await.unwrap();
        assert!(s.is_revoked(&q("a", "s", 100)).await.unwrap());
        s.revoke_principal("https://idp", "s", 200).await.unwrap();
        assert!(s.is_revoked(&q("b", "s", 199)).await.unwrap());
        assert!(!s.is_revoked(&q("b", "s", 200)).await.unwrap());
        // An earlier cut-off never shortens a later one.
        s.revoke_principal("https://idp", "s", 150).await.unwrap();
        assert!(s.is_revoked(&q("b", "s", 199)).await.unwrap());
        assert!(!s.is_revoked(&q("b", "other", 0)).await.unwrap());
        assert_eq!(s.prune(300).await.unwrap(), 1, "principal entry pruned");
        assert_eq!(s.prune(600).await.unwrap(), 1, "token entry pruned");
        assert!(!s.is_revoked(&q("a", "s", 100)).await.unwrap());
    }
}
