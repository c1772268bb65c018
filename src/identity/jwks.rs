//! JWKS loading and caching (RFC 7517), with OIDC discovery (OIDC Discovery 1.0 §4).

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use crate::http_client::{HttpsClient, get_json};

use super::AuthError;

/// Where an issuer's signing keys come from.
///
/// ```
/// use skillgate::identity::KeySource;
/// let s = KeySource::Discovery;
/// let f = KeySource::JwksFile("/etc/skillgate/jwks.json".into());
/// # let _ = (s, f);
/// ```
#[derive(Debug, Clone)]
pub enum KeySource {
    /// `{issuer}/.well-known/openid-configuration` → `jwks_uri` (OIDC Discovery 1.0 §4).
    Discovery,
    /// A JWKS document at this URL.
    JwksUrl(String),
    /// A JWKS document in this file, re-read when its modification time changes.
    JwksFile(PathBuf),
    /// A fixed JWKS (JSON text), e.g. for tests or an embedded dev issuer.
    Static(String),
}

/// One usable verification key.
#[derive(Clone)]
pub(crate) struct VerifyingKey {
    pub kid: Option<String>,
    /// The `alg` the JWK pins, if it names one.
    pub alg: Option<Algorithm>,
    pub kind: KeyKind,
    pub key: DecodingKey,
}

/// The key type, fine enough to match an algorithm exactly (RFC 7518 §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    pub(crate) fn fits(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyKind::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyKind::P256 => alg == ES256,
            KeyKind::P384 => alg == ES384,
            KeyKind::Ed25519 => alg == EdDSA,
        }
    }
}

/// Converts one JWK; symmetric keys, encryption keys and unknown curves are
/// skipped (`None`) so one odd key does not poison the set.
fn convert(jwk_json: &Value) -> Option<VerifyingKey> {
    let jwk: Jwk = serde_json::from_value(jwk_json.clone()).ok()?;
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => KeyKind::Rsa,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => KeyKind::P256,
            EllipticCurve::P384 => KeyKind::P384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => KeyKind::Ed25519,
            _ => return None,
        },
        // Never verify with a shared secret taken from a key set.
        _ => return None,
    };
    let alg = match jwk.common.key_algorithm {
        Some(a) => Some(Algorithm::try_from(a).ok()?),
        None => None,
    };
    if alg.is_some_and(|a| !kind.fits(a)) {
        return None;
    }
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    Some(VerifyingKey {
        kid: jwk.common.key_id.clone(),
        alg,
        kind,
        key,
    })
}

/// Parses a JWKS document (`{"keys":[…]}`) into usable keys.
pub(crate) fn parse_jwks(doc: &Value) -> Result<Vec<VerifyingKey>, AuthError> {
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or(AuthError::KeysUnavailable)?;
    Ok(keys.iter().filter_map(convert).collect())
}

/// Tuning for [`KeyStore`].
#[derive(Debug, Clone)]
pub(crate) struct KeyStoreOptions {
    /// Minimum time between two refreshes triggered by an unknown `kid`.
    pub min_refresh_interval: Duration,
    /// Refresh keys older than this on the next use (a failure keeps the old ones).
    pub max_age: Duration,
    /// Longest time fetched keys keep being served while refreshes fail (the
    /// IdP is down); older keys are refused and verification fails closed
    /// with [`AuthError::KeysUnavailable`] until a refresh succeeds.
    pub max_stale: Duration,
    /// Largest JWKS or discovery document accepted (bytes).
    pub max_document_bytes: usize,
    /// Timeout of one fetch.
    pub fetch_timeout: Duration,
}

impl Default for KeyStoreOptions {
    fn default() -> Self {
        KeyStoreOptions {
            min_refresh_interval: Duration::from_secs(30),
            max_age: Duration::from_secs(3600),
            max_stale: Duration::from_secs(24 * 3600),
            max_document_bytes: 1 << 20,
            fetch_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Default)]
struct State {
    keys: Arc<Vec<VerifyingKey>>,
    loaded_at: Option<Instant>,
    attempted_at: Option<Instant>,
    file_mtime: Option<SystemTime>,
}

/// The cached keys of one issuer. Refreshes are single-flight.
pub(crate) struct KeyStore {
    issuer: String,
    source: KeySource,
    options: KeyStoreOptions,
    client: Option<HttpsClient>,
    state: RwLock<State>,
    refresh: tokio::sync::Mutex<()>,
}

impl KeyStore {
    pub(crate) fn new(
        issuer: String,
        source: KeySource,
        options: KeyStoreOptions,
        client: Option<HttpsClient>,
    ) -> Self {
        KeyStore {
            issuer,
            source,
            options,
            client,
            state: RwLock::new(State::default()),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    fn snapshot(&self) -> (Arc<Vec<VerifyingKey>>, Option<Instant>, Option<Instant>) {
        match self.state.read() {
            Ok(s) => (s.keys.clone(), s.loaded_at, s.attempted_at),
            Err(p) => {
                let s = p.into_inner();
                (s.keys.clone(), s.loaded_at, s.attempted_at)
            }
        }
    }

    /// Whether keys loaded at `loaded` may still be served.
    fn fresh_enough(&self, loaded: Option<Instant>) -> bool {
        match loaded {
            None => false,
            Some(_) if matches!(self.source, KeySource::Static(_)) => true,
            Some(t) => t.elapsed() <= self.options.max_stale,
        }
    }

    /// The current keys; loads them on first use, reloads stale ones, and
    /// when `want_kid` is not among them refreshes at most once per interval.
    /// Refreshes are single-flight: however many callers need one at the same
    /// time, one fetch happens and the others reuse its result.
    pub(crate) async fn keys(
        &self,
        want_kid: Option<&str>,
    ) -> Result<Arc<Vec<VerifyingKey>>, AuthError> {
        let (keys, loaded, attempted) = self.snapshot();
        let file_changed = loaded.is_some()
            && matches!(self.source, KeySource::JwksFile(_))
            && self.file_changed().await;
        let refresh_after = self.options.max_age.min(self.options.max_stale);
        let expired = !matches!(self.source, KeySource::Static(_))
            && loaded.is_some_and(|t| t.elapsed() >= refresh_after);
        let missing = want_kid.is_some_and(|k| !keys.iter().any(|v| v.kid.as_deref() == Some(k)));
        let current = |keys: Arc<Vec<VerifyingKey>>, loaded: Option<Instant>| {
            if self.fresh_enough(loaded) {
                Ok(keys)
            } else {
                Err(AuthError::KeysUnavailable)
            }
        };
        if !(loaded.is_none() || file_changed || expired || missing) {
            return Ok(keys);
        }
        let throttled = !file_changed
            && attempted.is_some_and(|t| t.elapsed() < self.options.min_refresh_interval);
        if throttled {
            return current(keys, loaded);
        }
        // Single flight: one task refreshes, the others wait and reuse its result.
        let _guard = self.refresh.lock().await;
        let (keys2, loaded2, attempted2) = self.snapshot();
        if attempted2 != attempted {
            return current(keys2, loaded2);
        }
        let result = self.load().await;
        let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
        st.attempted_at = Some(Instant::now());
        match result {
            Ok((new_keys, mtime)) => {
                st.keys = Arc::new(new_keys);
                st.loaded_at = st.attempted_at;
                st.file_mtime = mtime;
                Ok(st.keys.clone())
            }
            Err(e) => {
                tracing::warn!(issuer = %self.issuer, error = %e, "could not load signing keys");
                // Keep serving the last good keys while the IdP is down, up
                // to `max_stale`; then fail closed.
                if self.fresh_enough(st.loaded_at) {
                    Ok(st.keys.clone())
                } else {
                    if st.loaded_at.is_some() {
                        tracing::error!(
                            issuer = %self.issuer,
                            max_stale_secs = self.options.max_stale.as_secs(),
                            "cached signing keys are older than max_stale: refusing tokens until the IdP answers"
                        );
                    }
                    Err(AuthError::KeysUnavailable)
                }
            }
        }
    }

    async fn file_changed(&self) -> bool {
        let KeySource::JwksFile(path) = &self.source else {
            return false;
        };
        let now = tokio::fs::metadata(path)
            .await
            .and_then(|m| m.modified())
            .ok();
        let seen = self.state.read().map(|s| s.file_mtime).unwrap_or(None);
        now != seen
    }

    async fn load(&self) -> Result<(Vec<VerifyingKey>, Option<SystemTime>), String> {
        let limit = self.options.max_document_bytes;
        let timeout = self.options.fetch_timeout;
        let (doc, mtime) = match &self.source {
            KeySource::Static(text) => (
                serde_json::from_str::<Value>(text).map_err(|e| format!("static JWKS: {e}"))?,
                None,
            ),
            KeySource::JwksFile(path) => {
                let meta = tokio::fs::metadata(path)
                    .await
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                if meta.len() as usize > limit {
                    return Err(format!("{}: larger than {limit} bytes", path.display()));
                }
                let text = tokio::fs::read(path)
                    .await
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let doc = serde_json::from_slice(&text)
                    .map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
                (doc, meta.modified().ok())
            }
            KeySource::JwksUrl(url) => {
                let client = self.client.as_ref().ok_or("no HTTP client")?;
                let doc = get_json(client, url, limit, timeout)
                    .await
                    .map_err(|e| format!("JWKS {url}: {e}"))?;
                (doc, None)
            }
            KeySource::Discovery => {
                let client = self.client.as_ref().ok_or("no HTTP client")?;
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.issuer.trim_end_matches('/')
                );
                let meta = get_json(client, &url, limit, timeout)
                    .await
                    .map_err(|e| format!("discovery {url}: {e}"))?;
                // OIDC Discovery §4.3: the document's issuer must equal ours exactly.
                if meta.get("issuer").and_then(Value::as_str) != Some(self.issuer.as_str()) {
                    return Err(format!("discovery {url}: issuer mismatch"));
                }
                let jwks_uri = meta
                    .get("jwks_uri")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("discovery {url}: no jwks_uri"))?;
                let doc = get_json(client, jwks_uri, limit, timeout)
                    .await
                    .map_err(|e| format!("JWKS {jwks_uri}: {e}"))?;
                (doc, None)
            }
        };
        let keys = parse_jwks(&doc).map_err(|_| "JWKS has no \"keys\" array".to_string())?;
        if keys.is_empty() {
            return Err("JWKS has no usable signing keys".into());
        }
        Ok((keys, mtime))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::identity::dev::{DevIssuer, MintOptions};
    use crate::identity::{JwtVerifier, TokenVerifier};

    const ISS: &str = "https://idp.test";

    /// A JWKS endpoint on loopback that counts its hits and can switch keys or fail.
    struct Idp {
        url: String,
        hits: Arc<AtomicUsize>,
        jwks: Arc<RwLock<Option<String>>>,
    }

    async fn idp(initial: String) -> Idp {
        let hits = Arc::new(AtomicUsize::new(0));
        let jwks = Arc::new(RwLock::new(Some(initial)));
        let (h, j) = (hits.clone(), jwks.clone());
        let app = axum::Router::new().route(
            "/keys",
            axum::routing::get(move || {
                let (h, j) = (h.clone(), j.clone());
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    // Slow enough that concurrent callers really overlap.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    match j.read().unwrap().clone() {
                        Some(body) => (http::StatusCode::OK, body),
                        None => (http::StatusCode::SERVICE_UNAVAILABLE, String::new()),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/keys", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Idp { url, hits, jwks }
    }

    fn verifier(url: &str, interval: Duration, max_age: Duration) -> JwtVerifier {
        JwtVerifier::builder(ISS)
            .audience("skillgate")
            .keys(KeySource::JwksUrl(url.into()))
            .refresh_interval(interval)
            .max_key_age(max_age)
            .build()
            .unwrap()
    }

    fn token(dev: &DevIssuer) -> String {
        dev.mint(&MintOptions::new("s")).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_cold_start_fetches_once() {
        let a = DevIssuer::try_ephemeral(ISS).unwrap();
        let idp = idp(a.jwks_json()).await;
        let v = verifier(&idp.url, Duration::from_secs(30), Duration::from_secs(3600));
        let t = token(&a);
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let (v, t) = (v.clone(), t.clone());
                tokio::spawn(async move { v.verify(&t).await })
            })
            .collect();
        for task in tasks {
            assert!(task.await.unwrap().is_ok());
        }
        assert_eq!(idp.hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rotation_is_picked_up_and_unknown_kids_are_throttled() {
        let a = DevIssuer::try_ephemeral(ISS).unwrap();
        let b = DevIssuer::try_ephemeral(ISS).unwrap();
        let c = DevIssuer::try_ephemeral(ISS).unwrap();
        let idp = idp(a.jwks_json()).await;
        let v = verifier(
            &idp.url,
            Duration::from_millis(300),
            Duration::from_secs(3600),
        );
        assert!(v.verify(&token(&a)).await.is_ok());
        assert_eq!(idp.hits.load(Ordering::SeqCst), 1);
        // The IdP rotates to key B; a token with B's kid triggers one refresh.
        tokio::time::sleep(Duration::from_millis(350)).await;
        *idp.jwks.write().unwrap() = Some(b.jwks_json());
        assert!(v.verify(&token(&b)).await.is_ok());
        assert_eq!(idp.hits.load(Ordering::SeqCst), 2);
        // An unknown kid right after: no new fetch inside the interval.
        for _ in 0..20 {
            assert_eq!(
                v.verify(&token(&c)).await.unwrap_err(),
                AuthError::UnknownKey
            );
        }
        assert_eq!(idp.hits.load(Ordering::SeqCst), 2);
        // A's key is gone from the set.
        assert_eq!(
            v.verify(&token(&a)).await.unwrap_err(),
            AuthError::UnknownKey
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cached_keys_survive_an_idp_outage() {
        let a = DevIssuer::try_ephemeral(ISS).unwrap();
        let idp = idp(a.jwks_json()).await;
        let v = verifier(
            &idp.url,
            Duration::from_millis(10),
            Duration::from_millis(10),
        );
        assert!(v.verify(&token(&a)).await.is_ok());
        *idp.jwks.write().unwrap() = None; // IdP answers 503 from now on
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(
            v.verify(&token(&a)).await.is_ok(),
            "stale keys keep working while the IdP is down"
        );
        assert!(
            idp.hits.load(Ordering::SeqCst) >= 2,
            "a refresh was attempted"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_thousand_concurrent_new_kids_cause_one_fetch() {
        let a = DevIssuer::try_ephemeral(ISS).unwrap();
        let b = DevIssuer::try_ephemeral(ISS).unwrap();
        let idp = idp(a.jwks_json()).await;
        let v = verifier(
            &idp.url,
            Duration::from_millis(100),
            Duration::from_secs(3600),
        );
        assert!(v.verify(&token(&a)).await.is_ok());
        assert_eq!(idp.hits.load(Ordering::SeqCst), 1);
        // Past the refresh interval, the IdP rotates to key B.
        tokio::time::sleep(Duration::from_millis(150)).await;
        *idp.jwks.write().unwrap() = Some(b.jwks_json());
        let t = token(&b);
        let start = Arc::new(tokio::sync::Barrier::new(1_000));
        let tasks: Vec<_> = (0..1_000)
            .map(|_| {
                let (v, t, start) = (v.clone(), t.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    v.verify(&t).await
                })
            })
            .collect();
        for task in tasks {
            assert!(task.await.unwrap().is_ok());
        }
        assert_eq!(
            idp.hits.load(Ordering::SeqCst),
            2,
            "1,000 requests with a new kid cause exactly one JWKS fetch"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stale_keys_are_served_up_to_max_stale_then_fail_closed() {
        let a = DevIssuer::try_ephemeral(ISS).unwrap();
        let idp = idp(a.jwks_json()).await;
        let v = JwtVerifier::builder(ISS)
            .audience("skillgate")
            .keys(KeySource::JwksUrl(idp.url.clone()))
            .refresh_interval(Duration::from_millis(10))
            .max_key_age(Duration::from_millis(10))
            .max_stale(Duration::from_millis(1_000))
            .build()
            .unwrap();
        assert!(v.verify(&token(&a)).await.is_ok());
        *idp.jwks.write().unwrap() = None; // the IdP is down from now on
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(
            v.verify(&token(&a)).await.is_ok(),
            "within max_stale the last good keys are used"
        );
        let hits_while_down = idp.hits.load(Ordering::SeqCst);
        assert!(hits_while_down >= 2, "a refresh was attempted");
        tokio::time::sleep(Duration::from_millis(1_050)).await;
        assert_eq!(
            v.verify(&token(&a)).await.unwrap_err(),
            AuthError::KeysUnavailable,
            "past max_stale the verifier fails closed"
        );
        assert!(idp.hits.load(Ordering::SeqCst) > hits_while_down);
        // The IdP comes back: the next refresh restores service.
        *idp.jwks.write().unwrap() = Some(a.jwks_json());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(v.verify(&token(&a)).await.is_ok());
    }

    #[tokio::test]
    async fn idp_down_at_start_fails_closed() {
        let a = DevIssuer::try_ephemeral(ISS).unwrap();
        let v = verifier(
            "http://127.0.0.1:9/keys",
            Duration::from_secs(30),
            Duration::from_secs(3600),
        );
        assert_eq!(
            v.verify(&token(&a)).await.unwrap_err(),
            AuthError::KeysUnavailable
        );
        assert_eq!(v.preload().await.unwrap_err(), AuthError::KeysUnavailable);
    }

    #[tokio::test]
    async fn jwks_file_is_reread_when_it_changes() {
        let a = DevIssuer::try_ephemeral(ISS).unwrap();
        let b = DevIssuer::try_ephemeral(ISS).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        std::fs::write(&path, a.jwks_json()).unwrap();
        let v = JwtVerifier::builder(ISS)
            .audience("skillgate")
            .jwks_file(&path)
            .build()
            .unwrap();
        assert!(v.verify(&token(&a)).await.is_ok());
        std::fs::write(&path, b.jwks_json()).unwrap();
        let later = std::time::SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert!(v.verify(&token(&b)).await.is_ok());
        assert_eq!(
            v.verify(&token(&a)).await.unwrap_err(),
            AuthError::UnknownKey
        );
    }

    #[test]
    fn odd_keys_are_skipped_not_fatal() {
        let a = DevIssuer::ephemeral();
        let mut doc: Value = serde_json::from_str(&a.jwks_json()).unwrap();
        let keys = doc["keys"].as_array_mut().unwrap();
        keys.push(serde_json::json!({"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}));
        keys.push(serde_json::json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}));
        keys.push(serde_json::json!({"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"}));
        keys.push(serde_json::json!({"kty": "weird"}));
        let parsed = parse_jwks(&doc).unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].kind, KeyKind::Ed25519);
        assert!(parse_jwks(&serde_json::json!({"nokeys": []})).is_err());
    }
}
