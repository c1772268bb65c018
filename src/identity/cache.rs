//! [`CachingVerifier`]: remembers verified tokens so a busy caller does not
//! pay a signature check on every request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::{AuthError, Principal, TokenVerifier};

/// Default bound on cached tokens.
pub const DEFAULT_CACHE_ENTRIES: usize = 10_000;
/// Default longest time one verification is reused, whatever the token's `exp`.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);

#[derive(Clone)]
struct Entry {
    principal: Arc<Principal>,
    /// The token's `exp` (seconds since the Unix epoch).
    exp: i64,
    /// When this entry stops being served, whatever `exp` says.
    until: Instant,
}

/// Wraps a [`TokenVerifier`] and caches its successful verifications, keyed
/// by the SHA-256 of the token (the token itself is never stored).
///
/// - **Honours `exp`**: an entry is served only while the current time is
///   before the principal's [`expires_at`](Principal::expires_at)
///   (RFC 7519 §4.1.4, no leeway), and at most for
///   [`max_ttl`](Self::max_ttl) after verification (default
///   [`DEFAULT_CACHE_TTL`]), which bounds how long a key removed from the
///   issuer's JWKS keeps working for tokens already seen. After that the
///   inner verifier decides again.
/// - **Bounded**: at most about [`max_entries`](Self::max_entries) tokens
///   (default [`DEFAULT_CACHE_ENTRIES`]); when full, the cache evicts by
///   recency and frequency (CLOCK-Pro, from the `quick_cache` crate), so a
///   flood of one-off tokens cannot push out the tokens of busy callers.
///   Expired entries are dropped when next looked up.
/// - Only successes are cached. A principal without `expires_at` is never
///   cached. Refusals always go to the inner verifier, so a transient
///   [`AuthError::KeysUnavailable`] is not remembered.
///
/// Revocation by the inner verifier only applies on a cache miss: call
/// [`forget`](Self::forget) or [`clear`](Self::clear) when revoking, or keep
/// `max_ttl` short.
///
/// ```
/// use std::time::Duration;
/// use skillgate::identity::{CachingVerifier, TokenVerifier, dev::{DevIssuer, MintOptions}};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let dev = DevIssuer::ephemeral();
/// let verifier = CachingVerifier::new(dev.verifier("skillgate"))
///     .max_entries(50_000)
///     .max_ttl(Duration::from_secs(60));
/// let token = dev.mint(&MintOptions::new("skill-a")).unwrap();
/// let first = verifier.verify(&token).await.unwrap(); // signature checked
/// let again = verifier.verify(&token).await.unwrap(); // served from the cache
/// assert_eq!(first, again);
/// assert_eq!(verifier.len(), 1);
/// # });
/// ```
pub struct CachingVerifier<V> {
    inner: V,
    entries: quick_cache::sync::Cache<[u8; 32], Entry>,
    max_entries: usize,
    max_ttl: Duration,
}

impl<V: TokenVerifier> CachingVerifier<V> {
    /// A cache in front of `inner` with [`DEFAULT_CACHE_ENTRIES`] and
    /// [`DEFAULT_CACHE_TTL`].
    pub fn new(inner: V) -> Self {
        CachingVerifier {
            inner,
            entries: quick_cache::sync::Cache::new(DEFAULT_CACHE_ENTRIES),
            max_entries: DEFAULT_CACHE_ENTRIES,
            max_ttl: DEFAULT_CACHE_TTL,
        }
    }

    /// Bounds the cache to about `n` tokens (at least 1). Replaces the
    /// current contents.
    pub fn max_entries(mut self, n: usize) -> Self {
        let n = n.max(1);
        self.entries = quick_cache::sync::Cache::new(n);
        self.max_entries = n;
        self
    }

    /// The longest time one verification is reused (whole seconds are
    /// enough; `exp` still applies if earlier).
    pub fn max_ttl(mut self, ttl: Duration) -> Self {
        self.max_ttl = ttl;
        self
    }

    /// The configured bound on entries.
    pub fn capacity(&self) -> usize {
        self.max_entries
    }

    /// How many tokens are cached now (expired ones included until looked up).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops `token`'s cached verification, if any (e.g. after revoking it).
    pub fn forget(&self, token: &str) {
        self.entries.remove(&key(token));
    }

    /// Drops every cached verification.
    pub fn clear(&self) {
        self.entries.clear();
    }

    /// The wrapped verifier.
    pub fn inner(&self) -> &V {
        &self.inner
    }
}

fn key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn now_unix() -> i64 {
    jiff::Timestamp::now().as_second()
}

#[async_trait]
impl<V: TokenVerifier> TokenVerifier for CachingVerifier<V> {
    async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let k = key(token);
        if let Some(e) = self.entries.get(&k) {
            if now_unix() < e.exp && Instant::now() < e.until {
                return Ok((*e.principal).clone());
            }
            self.entries.remove(&k);
        }
        let principal = self.inner.verify(token).await?;
        if let Some(exp) = principal.expires_at
            && now_unix() < exp
            && !self.max_ttl.is_zero()
        {
            let entry = Entry {
                principal: Arc::new(principal.clone()),
                exp,
                until: Instant::now() + self.max_ttl,
            };
            self.entries.insert(k, entry);
        }
        Ok(principal)
    }
}

impl<V> std::fmt::Debug for CachingVerifier<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachingVerifier")
            .field("entries", &self.entries.len())
            .field("max_entries", &self.max_entries)
            .field("max_ttl", &self.max_ttl)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Accepts `"<subject>:<exp>"` tokens and counts its calls.
    #[derive(Default)]
    struct Counting {
        calls: AtomicUsize,
    }

    #[async_trait]
    impl TokenVerifier for Counting {
        async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let (sub, exp) = token.split_once(':').ok_or(AuthError::Malformed)?;
            if sub == "bad" {
                return Err(AuthError::InvalidSignature);
            }
            let mut p = Principal::new("urn:test", sub);
            p.expires_at = exp.parse().ok();
            Ok(p)
        }
    }

    fn calls(v: &CachingVerifier<Counting>) -> usize {
        v.inner().calls.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn second_verification_is_served_from_the_cache() {
        let v = CachingVerifier::new(Counting::default());
        let t = format!("a:{}", now_unix() + 600);
        let first = v.verify(&t).await.unwrap();
        for _ in 0..5 {
            assert_eq!(v.verify(&t).await.unwrap(), first);
        }
        assert_eq!(calls(&v), 1);
        // A different token is a different entry.
        let other = format!("b:{}", now_unix() + 600);
        assert_eq!(v.verify(&other).await.unwrap().subject, "b");
        assert_eq!(calls(&v), 2);
        v.forget(&t);
        v.verify(&t).await.unwrap();
        assert_eq!(calls(&v), 3);
        v.clear();
        assert!(v.is_empty());
    }

    #[tokio::test]
    async fn expired_principals_are_never_served() {
        let v = CachingVerifier::new(Counting::default());
        // exp == now: already expired (RFC 7519 §4.1.4 "on or after").
        let t = format!("a:{}", now_unix());
        v.verify(&t).await.unwrap();
        v.verify(&t).await.unwrap();
        assert_eq!(calls(&v), 2, "a token at its exp is not cached");
        assert!(v.is_empty());
        // No exp at all: never cached.
        v.verify("a:none").await.unwrap();
        v.verify("a:none").await.unwrap();
        assert_eq!(calls(&v), 4);

        // A cached entry whose exp passes is dropped on lookup.
        let v = CachingVerifier::new(Counting::default());
        let t = format!("a:{}", now_unix() + 600);
        v.verify(&t).await.unwrap();
        let k = key(&t);
        let mut e = v.entries.get(&k).unwrap();
        e.exp = now_unix() - 1;
        v.entries.insert(k, e);
        v.verify(&t).await.unwrap();
        assert_eq!(
            calls(&v),
            2,
            "expired entry went back to the inner verifier"
        );
    }

    #[tokio::test]
    async fn max_ttl_bounds_reuse() {
        let v = CachingVerifier::new(Counting::default()).max_ttl(Duration::ZERO);
        let t = format!("a:{}", now_unix() + 600);
        v.verify(&t).await.unwrap();
        v.verify(&t).await.unwrap();
        assert_eq!(calls(&v), 2);

        let v = CachingVerifier::new(Counting::default()).max_ttl(Duration::from_secs(60));
        v.verify(&t).await.unwrap();
        let k = key(&t);
        let mut e = v.entries.get(&k).unwrap();
        e.until = Instant::now();
        v.entries.insert(k, e);
        v.verify(&t).await.unwrap();
        assert_eq!(calls(&v), 2);
    }

    #[tokio::test]
    async fn failures_are_not_cached() {
        let v = CachingVerifier::new(Counting::default());
        let t = format!("bad:{}", now_unix() + 600);
        for _ in 0..3 {
            assert_eq!(v.verify(&t).await, Err(AuthError::InvalidSignature));
        }
        assert_eq!(calls(&v), 3);
        assert!(v.is_empty());
    }

    #[tokio::test]
    async fn size_is_bounded_and_busy_tokens_survive_a_flood() {
        let v = CachingVerifier::new(Counting::default()).max_entries(100);
        assert_eq!(v.capacity(), 100);
        let exp = now_unix() + 600;
        let busy = format!("busy:{exp}");
        v.verify(&busy).await.unwrap();
        let mut busy_misses = 0;
        for i in 0..2_000 {
            v.verify(&format!("once-{i}:{exp}")).await.unwrap();
            if i % 10 == 0 {
                let before = calls(&v);
                v.verify(&busy).await.unwrap();
                busy_misses += calls(&v) - before;
            }
            assert!(v.len() <= 100, "{} entries", v.len());
        }
        assert_eq!(busy_misses, 0, "one-off tokens evicted the busy one");
        assert!(v.len() >= 50, "the cache is used: {} entries", v.len());
    }
}
