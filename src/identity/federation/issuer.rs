//! [`GatewayTokenIssuer`]: mints the gateway's own access tokens, and
//! [`GatewayTokenVerifier`]: accepts them (signature, audience, revocation).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use jsonwebtoken::{Algorithm, Header};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};

use super::keys::{KeyRing, now};
use super::revocation::{RevocationQuery, RevocationStore};
use crate::identity::{AuthError, JwtVerifier, KeySource, Principal, TokenVerifier};

/// The default `iss` (and `aud`) of gateway-minted tokens.
pub const DEFAULT_GATEWAY_ISSUER: &str = "urn:skillgate:gateway";

/// Private claim (RFC 7519 §4.3): the issuer of the assertion the token was
/// exchanged for. With `sub` it names the principal.
pub const CLAIM_ORIGINAL_ISSUER: &str = "orig_iss";
/// Private claim: the id of the federation rule that granted the token.
pub const CLAIM_FEDERATION_RULE: &str = "federation_rule_id";
/// Private claim: the `organization_id` the caller sent, if any.
pub const CLAIM_ORGANIZATION: &str = "organization_id";
/// Private claim: the `workspace_id` the caller sent, if any.
pub const CLAIM_WORKSPACE: &str = "workspace_id";
/// Private claim: the `service_account_id` the caller sent, if any.
pub const CLAIM_SERVICE_ACCOUNT: &str = "service_account_id";

/// Why the gateway issuer could not load, create, rotate or sign.
///
/// ```
/// use skillgate::identity::federation::IssuerError;
/// let e = IssuerError::BadKeyFile("/etc/skillgate/keys.json".into());
/// assert!(e.to_string().contains("not valid"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssuerError {
    /// Reading or writing the key file failed.
    #[error("gateway key file {path}: {source}")]
    Io {
        /// The key file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The key file exists but is not a gateway key ring.
    #[error("gateway key file {0} is not valid")]
    BadKeyFile(String),
    /// Random bytes were unavailable, or encoding or signing failed.
    #[error("gateway issuer: {0}")]
    Crypto(String),
    /// The issuer or audience is empty.
    #[error("gateway issuer: issuer and audience must not be empty")]
    Config,
}

/// What a minted token says about its principal.
///
/// ```
/// use std::time::Duration;
/// use skillgate::identity::federation::TokenGrant;
/// let g = TokenGrant::new("https://token.actions.githubusercontent.com", "repo:acme/billing:ref:refs/heads/main", "fdrl_ci")
///     .group("billing-ci")
///     .ttl(Duration::from_secs(300));
/// assert_eq!(g.groups, ["billing-ci"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    /// The assertion's issuer (`orig_iss`).
    pub issuer: String,
    /// The assertion's subject (`sub`).
    pub subject: String,
    /// The assertion's OAuth client (`client_id`); the subject when `None`.
    pub client_id: Option<String>,
    /// Groups granted (`groups`).
    pub groups: Vec<String>,
    /// The federation rule (`federation_rule_id`).
    pub rule_id: String,
    /// `organization_id` as the caller sent it.
    pub organization_id: Option<String>,
    /// `workspace_id` as the caller sent it.
    pub workspace_id: Option<String>,
    /// `service_account_id` as the caller sent it.
    pub service_account_id: Option<String>,
    /// Lifetime: `exp` = `iat` + ttl, whole seconds (default 10 minutes).
    pub ttl: Duration,
}

impl TokenGrant {
    /// A grant for (`issuer`, `subject`) under rule `rule_id`, no groups, 10 minutes.
    pub fn new(
        issuer: impl Into<String>,
        subject: impl Into<String>,
        rule_id: impl Into<String>,
    ) -> Self {
        TokenGrant {
            issuer: issuer.into(),
            subject: subject.into(),
            client_id: None,
            groups: Vec::new(),
            rule_id: rule_id.into(),
            organization_id: None,
            workspace_id: None,
            service_account_id: None,
            ttl: Duration::from_secs(600),
        }
    }

    /// Adds a granted group.
    pub fn group(mut self, g: impl Into<String>) -> Self {
        self.groups.push(g.into());
        self
    }

    /// Sets the lifetime.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }
}

/// A minted access token. `Debug` does not show the token.
///
/// ```
/// use secrecy::ExposeSecret;
/// use skillgate::identity::federation::{GatewayTokenIssuer, TokenGrant};
/// let issuer = GatewayTokenIssuer::ephemeral("urn:skillgate:gateway", "urn:skillgate:gateway").unwrap();
/// let t = issuer.mint(&TokenGrant::new("https://idp", "skill-a", "rule-1")).unwrap();
/// assert_eq!(t.expires_in(), 600);
/// assert_eq!(t.access_token.expose_secret().split('.').count(), 3);
/// assert!(!format!("{t:?}").contains(t.access_token.expose_secret()));
/// ```
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The compact JWS.
    pub access_token: SecretString,
    /// Its `jti` (a UUID v7), the handle for revocation.
    pub token_id: String,
    /// `iat`, seconds since the Unix epoch.
    pub issued_at: i64,
    /// `exp`, seconds since the Unix epoch.
    pub expires_at: i64,
}

impl IssuedToken {
    /// Seconds from issue to expiry (`expires_in`, RFC 6749 §5.1).
    pub fn expires_in(&self) -> i64 {
        self.expires_at - self.issued_at
    }
}

struct State {
    ring: Arc<KeyRing>,
    verifier: JwtVerifier,
    mtime: Option<SystemTime>,
}

/// The gateway as a token issuer: signs RFC 9068 access tokens (`typ:
/// at+jwt`, EdDSA over Ed25519, header `kid`) with its current key and
/// publishes the current and previous keys for verification.
///
/// # Token layout
///
/// | claim | value |
/// |---|---|
/// | `iss` | this issuer (default [`DEFAULT_GATEWAY_ISSUER`]) |
/// | `aud` | this gateway's audience (default: the issuer) |
/// | `sub` | the assertion's subject |
/// | `client_id` | the assertion's client, else its subject (RFC 9068 §2.2) |
/// | `iat`, `exp` | issue and expiry time, seconds |
/// | `jti` | a UUID v7, the handle for revocation |
/// | `groups` | the groups the federation rule grants |
/// | [`orig_iss`](CLAIM_ORIGINAL_ISSUER) | the assertion's issuer |
/// | [`federation_rule_id`](CLAIM_FEDERATION_RULE) | the rule that granted the token |
/// | `organization_id`, `workspace_id`, `service_account_id` | as the caller sent them, when sent |
///
/// # Rotation
///
/// [`rotate`](Self::rotate) makes a fresh signing key current and keeps the
/// old one published (up to [`MAX_PREVIOUS_KEYS`](super::MAX_PREVIOUS_KEYS)
/// retired keys), so tokens signed before keep verifying until they expire.
/// Instances sharing the key file pick a rotation up when they meet a token
/// with an unknown `kid` (the verifier re-reads a changed file once), or at
/// [`reload`](Self::reload).
///
/// ```
/// use skillgate::identity::federation::GatewayTokenIssuer;
/// let issuer = GatewayTokenIssuer::ephemeral("urn:skillgate:gateway", "urn:skillgate:gateway").unwrap();
/// let before = issuer.current_kid();
/// issuer.rotate().unwrap();
/// assert_ne!(issuer.current_kid(), before);
/// assert!(issuer.jwks_json().contains(&before));
/// ```
pub struct GatewayTokenIssuer {
    issuer: String,
    audience: String,
    path: Option<PathBuf>,
    state: RwLock<Arc<State>>,
    reload: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for GatewayTokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayTokenIssuer")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("key_file", &self.path)
            .field("kid", &self.current_kid())
            .finish_non_exhaustive()
    }
}

impl GatewayTokenIssuer {
    fn with_ring(
        issuer: &str,
        audience: &str,
        path: Option<PathBuf>,
        ring: KeyRing,
        mtime: Option<SystemTime>,
    ) -> Result<Self, IssuerError> {
        if issuer.is_empty() || audience.is_empty() {
            return Err(IssuerError::Config);
        }
        let state = Self::state(issuer, audience, ring, mtime)?;
        Ok(GatewayTokenIssuer {
            issuer: issuer.into(),
            audience: audience.into(),
            path,
            state: RwLock::new(Arc::new(state)),
            reload: tokio::sync::Mutex::new(()),
        })
    }

    fn state(
        issuer: &str,
        audience: &str,
        ring: KeyRing,
        mtime: Option<SystemTime>,
    ) -> Result<State, IssuerError> {
        let verifier = JwtVerifier::builder(issuer)
            .audience(audience)
            .algorithms([Algorithm::EdDSA])
            .require_typ("at+jwt")
            .keys(KeySource::Static(ring.jwks().to_string()))
            .build()
            .map_err(|e| IssuerError::Crypto(e.to_string()))?;
        Ok(State {
            ring: Arc::new(ring),
            verifier,
            mtime,
        })
    }

    /// An issuer with a fresh in-memory key (nothing is written; tokens die
    /// with the process). For tests and single-instance trials.
    ///
    /// # Errors
    /// [`IssuerError::Config`] for an empty issuer or audience,
    /// [`IssuerError::Crypto`] without randomness.
    pub fn ephemeral(issuer: &str, audience: &str) -> Result<Self, IssuerError> {
        Self::with_ring(issuer, audience, None, KeyRing::generate()?, None)
    }

    /// An issuer whose key ring lives in `path`, created (mode 0600) on
    /// first use. Every instance of a gateway must share the same file (or
    /// a copy of it) so that each accepts the tokens the others mint.
    ///
    /// # Errors
    /// [`IssuerError::Io`], [`IssuerError::BadKeyFile`], [`IssuerError::Config`].
    pub fn load_or_create(path: &Path, issuer: &str, audience: &str) -> Result<Self, IssuerError> {
        let ring = KeyRing::load_or_create(path)?;
        Self::with_ring(issuer, audience, Some(path.to_owned()), ring, mtime(path))
    }

    fn snapshot(&self) -> Arc<State> {
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn swap(&self, ring: KeyRing, mtime: Option<SystemTime>) -> Result<(), IssuerError> {
        let state = Self::state(&self.issuer, &self.audience, ring, mtime)?;
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(state);
        Ok(())
    }

    /// The `iss` of minted tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The `aud` of minted tokens.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The `kid` of the key that signs now.
    pub fn current_kid(&self) -> String {
        self.snapshot().ring.kid().to_owned()
    }

    /// The public JWKS (RFC 7517 §5): the current key, then the previous ones.
    pub fn jwks_json(&self) -> String {
        self.snapshot().ring.jwks().to_string()
    }

    /// Makes a fresh key current and keeps the old one published; with a
    /// key file, the file is re-read first (another instance may have
    /// rotated) and then atomically replaced. Returns the new `kid`.
    ///
    /// # Errors
    /// [`IssuerError`] if the file cannot be read or written; nothing changes then.
    pub fn rotate(&self) -> Result<String, IssuerError> {
        let base = match &self.path {
            Some(p) => Arc::new(KeyRing::load(p)?),
            None => self.snapshot().ring.clone(),
        };
        let ring = base.rotated()?;
        let kid = ring.kid().to_owned();
        if let Some(p) = &self.path {
            ring.save(p)?;
        }
        self.swap(ring, self.path.as_deref().and_then(mtime))?;
        tracing::info!(kid = %kid, "gateway signing key rotated");
        Ok(kid)
    }

    /// Re-reads the key file (no-op without one).
    ///
    /// # Errors
    /// [`IssuerError`] if the file cannot be read; the old keys stay in use.
    pub fn reload(&self) -> Result<(), IssuerError> {
        if let Some(p) = &self.path {
            let ring = KeyRing::load(p)?;
            self.swap(ring, mtime(p))?;
        }
        Ok(())
    }

    /// Re-reads the key file if its modification time changed; whether it did.
    async fn reload_if_changed(&self) -> bool {
        let Some(path) = &self.path else {
            return false;
        };
        let _single_flight = self.reload.lock().await;
        let now = tokio::fs::metadata(path)
            .await
            .and_then(|m| m.modified())
            .ok();
        if now.is_none() || now == self.snapshot().mtime {
            return false;
        }
        match tokio::fs::read(path).await {
            Ok(bytes) => {
                let ring = match super::keys::KeyRing::from_bytes(&bytes, path) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, "gateway key file changed but is not usable");
                        return false;
                    }
                };
                self.swap(ring, now).is_ok()
            }
            Err(e) => {
                tracing::warn!(error = %e, "gateway key file changed but cannot be read");
                false
            }
        }
    }

    /// Mints an access token for `grant` (see the layout above).
    ///
    /// # Errors
    /// [`IssuerError::Crypto`] if signing fails.
    pub fn mint(&self, grant: &TokenGrant) -> Result<IssuedToken, IssuerError> {
        let state = self.snapshot();
        let iat = now();
        let ttl = i64::try_from(grant.ttl.as_secs()).unwrap_or(i64::MAX / 4);
        let exp = iat.saturating_add(ttl);
        let jti = uuid::Uuid::now_v7().to_string();
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(self.issuer));
        claims.insert("aud".into(), json!(self.audience));
        claims.insert("sub".into(), json!(grant.subject));
        claims.insert(
            "client_id".into(),
            json!(grant.client_id.as_deref().unwrap_or(&grant.subject)),
        );
        claims.insert("iat".into(), json!(iat));
        claims.insert("exp".into(), json!(exp));
        claims.insert("jti".into(), json!(jti));
        claims.insert("groups".into(), json!(grant.groups));
        claims.insert(CLAIM_ORIGINAL_ISSUER.into(), json!(grant.issuer));
        claims.insert(CLAIM_FEDERATION_RULE.into(), json!(grant.rule_id));
        for (name, v) in [
            (CLAIM_ORGANIZATION, &grant.organization_id),
            (CLAIM_WORKSPACE, &grant.workspace_id),
            (CLAIM_SERVICE_ACCOUNT, &grant.service_account_id),
        ] {
            if let Some(v) = v {
                claims.insert(name.into(), json!(v));
            }
        }
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some("at+jwt".into());
        header.kid = Some(state.ring.kid().to_owned());
        let token = jsonwebtoken::encode(&header, &claims, state.ring.encoding())
            .map_err(|e| IssuerError::Crypto(e.to_string()))?;
        Ok(IssuedToken {
            access_token: SecretString::from(token),
            token_id: jti,
            issued_at: iat,
            expires_at: exp,
        })
    }

    /// The verifier for this issuer's tokens, checking every token against
    /// `revocations` (shared by all instances for revocation to reach them).
    pub fn verifier(
        self: &Arc<Self>,
        revocations: Arc<dyn RevocationStore>,
    ) -> GatewayTokenVerifier {
        GatewayTokenVerifier {
            issuer: self.clone(),
            revocations,
        }
    }
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Verifies gateway-minted tokens: signature by a current or previous key,
/// `iss`, `aud`, `typ: at+jwt`, `exp`, then revocation — on every call, so a
/// revocation takes effect on the next request (failing closed with
/// [`AuthError::RevocationUnavailable`] when the store cannot answer).
///
/// The [`Principal`] it yields names the *original* identity: `issuer` is
/// the assertion's issuer (claim `orig_iss`), `subject` its subject,
/// `groups` those the rule granted, `token_id` the gateway token's `jti`;
/// `claims["iss"]` is the gateway and `claims["federation_rule_id"]` the rule,
/// so a layer can tell a federated principal from a direct one.
///
/// ```
/// use std::sync::Arc;
/// use secrecy::ExposeSecret;
/// use skillgate::identity::TokenVerifier;
/// use skillgate::identity::federation::{GatewayTokenIssuer, MemoryRevocationStore, TokenGrant};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let issuer = Arc::new(GatewayTokenIssuer::ephemeral("urn:skillgate:gateway", "urn:skillgate:gateway").unwrap());
/// let verifier = issuer.verifier(Arc::new(MemoryRevocationStore::new()));
/// let t = issuer.mint(&TokenGrant::new("https://idp", "skill-a", "rule-1").group("ci")).unwrap();
/// let p = verifier.verify(t.access_token.expose_secret()).await.unwrap();
/// assert_eq!((p.issuer.as_str(), p.subject.as_str()), ("https://idp", "skill-a"));
/// assert!(p.in_group("ci"));
/// # });
/// ```
#[derive(Clone)]
pub struct GatewayTokenVerifier {
    issuer: Arc<GatewayTokenIssuer>,
    revocations: Arc<dyn RevocationStore>,
}

impl std::fmt::Debug for GatewayTokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayTokenVerifier")
            .field("issuer", &self.issuer.issuer)
            .finish_non_exhaustive()
    }
}

impl GatewayTokenVerifier {
    /// The issuer whose tokens this verifier accepts.
    pub fn issuer(&self) -> &str {
        &self.issuer.issuer
    }
}

#[async_trait]
impl TokenVerifier for GatewayTokenVerifier {
    async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let verified = match self.issuer.snapshot().verifier.verify(token).await {
            // A `kid` this instance does not know: another instance may have
            // rotated the shared key file.
            Err(AuthError::UnknownKey) if self.issuer.reload_if_changed().await => {
                self.issuer.snapshot().verifier.verify(token).await
            }
            other => other,
        };
        let mut principal = verified?;
        let original = principal
            .claims
            .get(CLAIM_ORIGINAL_ISSUER)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(AuthError::MissingClaim("orig_iss"))?
            .to_owned();
        principal.issuer = original;
        let issued_at = principal
            .claims
            .get("iat")
            .and_then(Value::as_i64)
            .ok_or(AuthError::MissingClaim("iat"))?;
        let token_id = principal
            .token_id
            .clone()
            .ok_or(AuthError::MissingClaim("jti"))?;
        let query = RevocationQuery {
            token_id: &token_id,
            issuer: &principal.issuer,
            subject: &principal.subject,
            issued_at,
        };
        match self.revocations.is_revoked(&query).await {
            Ok(false) => Ok(principal),
            Ok(true) => Err(AuthError::Revoked),
            Err(e) => {
                tracing::warn!(error = %e, "revocation store unavailable; refusing gateway token");
                Err(AuthError::RevocationUnavailable)
            }
        }
    }
}

/// Exposes the token string for the crate's own use (tests, the endpoint).
pub(crate) fn token_str(t: &IssuedToken) -> &str {
    t.access_token.expose_secret()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::dev::DevIssuer;
    use crate::identity::federation::MemoryRevocationStore;

    const ISS: &str = DEFAULT_GATEWAY_ISSUER;

    fn grant() -> TokenGrant {
        TokenGrant::new("https://idp.test", "skill-a", "rule-1").group("ci")
    }

    #[tokio::test]
    async fn minted_token_layout() {
        let issuer = Arc::new(GatewayTokenIssuer::ephemeral(ISS, "gw-aud").unwrap());
        let mut g = grant();
        g.organization_id = Some("org-1".into());
        let t = issuer.mint(&g).unwrap();
        let v = issuer.verifier(Arc::new(MemoryRevocationStore::new()));
        let p = v.verify(token_str(&t)).await.unwrap();
        assert_eq!(p.issuer, "https://idp.test");
        assert_eq!(p.subject, "skill-a");
        assert_eq!(p.client_id.as_deref(), Some("skill-a"));
        assert_eq!(p.groups, ["ci"]);
        assert_eq!(p.token_id.as_deref(), Some(t.token_id.as_str()));
        assert_eq!(p.claims["iss"], ISS);
        assert_eq!(p.claims["aud"], "gw-aud");
        assert_eq!(p.claims[CLAIM_FEDERATION_RULE], "rule-1");
        assert_eq!(p.claims[CLAIM_ORGANIZATION], "org-1");
        assert!(p.claims.get(CLAIM_WORKSPACE).is_none());
        assert_eq!(p.expires_at, Some(t.expires_at));
        assert_eq!(t.expires_in(), 600);
    }

    #[tokio::test]
    async fn other_keys_audiences_and_token_types_are_refused() {
        let issuer = Arc::new(GatewayTokenIssuer::ephemeral(ISS, ISS).unwrap());
        let v = issuer.verifier(Arc::new(MemoryRevocationStore::new()));
        // Same issuer name, different key.
        let impostor = GatewayTokenIssuer::ephemeral(ISS, ISS).unwrap();
        let t = impostor.mint(&grant()).unwrap();
        assert_eq!(
            v.verify(token_str(&t)).await.unwrap_err(),
            AuthError::UnknownKey
        );
        // Another audience.
        let other_aud = Arc::new(GatewayTokenIssuer::ephemeral(ISS, "elsewhere").unwrap());
        let t = other_aud.mint(&grant()).unwrap();
        let v2 = issuer.verifier(Arc::new(MemoryRevocationStore::new()));
        assert!(v2.verify(token_str(&t)).await.is_err());
        // A dev-issuer token claiming the gateway issuer.
        let dev = DevIssuer::try_ephemeral(ISS).unwrap();
        let forged = dev
            .mint(&crate::identity::dev::MintOptions::new("x").audience(ISS))
            .unwrap();
        assert!(v.verify(&forged).await.is_err());
    }

    #[tokio::test]
    async fn rotation_keeps_old_tokens_valid_and_other_instances_follow() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let a = Arc::new(GatewayTokenIssuer::load_or_create(&path, ISS, ISS).unwrap());
        let b = Arc::new(GatewayTokenIssuer::load_or_create(&path, ISS, ISS).unwrap());
        assert_eq!(a.current_kid(), b.current_kid());
        let old = a.mint(&grant()).unwrap();
        let old_kid = a.current_kid();
        a.rotate().unwrap();
        // Make sure the file's mtime moves even on coarse-grained file systems.
        let later = SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_ne!(a.current_kid(), old_kid);
        let new = a.mint(&grant()).unwrap();
        let store: Arc<dyn RevocationStore> = Arc::new(MemoryRevocationStore::new());
        let va = a.verifier(store.clone());
        let vb = b.verifier(store);
        // A verifies both; B still has only the old key, and learns the new
        // one from the changed file when it meets the unknown kid.
        assert!(va.verify(token_str(&old)).await.is_ok());
        assert!(va.verify(token_str(&new)).await.is_ok());
        assert!(vb.verify(token_str(&old)).await.is_ok());
        assert_eq!(b.current_kid(), old_kid);
        assert!(vb.verify(token_str(&new)).await.is_ok());
        assert_eq!(b.current_kid(), a.current_kid());
    }

    #[tokio::test]
    async fn revoked_tokens_and_principals_fail() {
        let issuer = Arc::new(GatewayTokenIssuer::ephemeral(ISS, ISS).unwrap());
        let store = Arc::new(MemoryRevocationStore::new());
        let v = issuer.verifier(store.clone());
        let t1 = issuer.mint(&grant()).unwrap();
        let t2 = issuer.mint(&grant()).unwrap();
        store
            .revoke_token(&t1.token_id, t1.expires_at)
            .await
            .unwrap();
        assert_eq!(
            v.verify(token_str(&t1)).await.unwrap_err(),
            AuthError::Revoked
        );
        assert!(v.verify(token_str(&t2)).await.is_ok());
        store
            .revoke_principal("https://idp.test", "skill-a", t2.issued_at + 1)
            .await
            .unwrap();
        assert_eq!(
            v.verify(token_str(&t2)).await.unwrap_err(),
            AuthError::Revoked
        );
        // Another subject of the same issuer is untouched.
        let mut g = grant();
        g.subject = "skill-b".into();
        let t3 = issuer.mint(&g).unwrap();
        assert!(v.verify(token_str(&t3)).await.is_ok());
    }
}
