//! A development issuer, so a newcomer can try the gateway in a minute.
//!
//! [`DevIssuer`] holds an Ed25519 signing key (created on first use and kept
//! in a file readable only by its owner), publishes the matching JWKS, and
//! mints short-lived RFC 9068 access tokens. It is for local use: a
//! production gateway trusts a real IdP instead (the example gateway turns the
//! dev issuer off as soon as a real issuer is configured).
//!
//! ```
//! use std::time::Duration;
//! use skillgate::identity::dev::{DevIssuer, MintOptions};
//! let dev = DevIssuer::ephemeral();
//! let token = dev.mint(&MintOptions::new("my-skill").group("ci").ttl(Duration::from_secs(300)))
//!     .unwrap();
//! assert_eq!(token.split('.').count(), 3);
//! ```

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{EncodePrivateKey, spki::der::pem::LineEnding};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{JwtVerifier, KeySource};

/// The default issuer identifier of the development issuer.
pub const DEV_ISSUER: &str = "urn:skillgate:dev-issuer";
/// The default audience of tokens the development issuer mints.
pub const DEV_AUDIENCE: &str = "skillgate";

/// A local Ed25519 token issuer for development and tests.
///
/// ```
/// use skillgate::identity::dev::DevIssuer;
/// let dev = DevIssuer::ephemeral();
/// assert!(dev.jwks_json().contains("Ed25519"));
/// ```
pub struct DevIssuer {
    issuer: String,
    kid: String,
    signing: SigningKey,
    encoding: EncodingKey,
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    issuer: String,
    kid: String,
    private_key_pem: String,
}

/// What to put in a minted token.
///
/// ```
/// use skillgate::identity::dev::MintOptions;
/// let o = MintOptions::new("skill-a").group("ci").group("billing");
/// # let _ = o;
/// ```
#[derive(Debug, Clone)]
pub struct MintOptions {
    /// `sub`.
    pub subject: String,
    /// `groups`.
    pub groups: Vec<String>,
    /// Lifetime; `exp` = now + ttl (default 15 minutes).
    pub ttl: Duration,
    /// `aud` (default [`DEV_AUDIENCE`]).
    pub audience: String,
    /// Further claims merged into the payload (they cannot override iss/sub/aud/exp/iat).
    pub extra: Map<String, Value>,
}

impl MintOptions {
    /// Options for subject `sub` with the defaults.
    pub fn new(subject: impl Into<String>) -> Self {
        MintOptions {
            subject: subject.into(),
            groups: Vec::new(),
            ttl: Duration::from_secs(15 * 60),
            audience: DEV_AUDIENCE.into(),
            extra: Map::new(),
        }
    }
    /// Adds a group.
    pub fn group(mut self, g: impl Into<String>) -> Self {
        self.groups.push(g.into());
        self
    }
    /// Sets the lifetime.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }
    /// Sets the audience.
    pub fn audience(mut self, aud: impl Into<String>) -> Self {
        self.audience = aud.into();
        self
    }
}

/// Why the development issuer could not load, create or mint.
#[derive(Debug, thiserror::Error)]
pub enum DevIssuerError {
    /// Reading or writing the key file failed.
    #[error("dev issuer key file {path}: {source}")]
    Io {
        /// The key file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The key file exists but is not one this issuer wrote.
    #[error("dev issuer key file {0} is not valid")]
    BadFile(String),
    /// Random bytes were unavailable or signing failed.
    #[error("dev issuer: {0}")]
    Crypto(String),
}

pub(crate) fn random_key() -> Result<SigningKey, DevIssuerError> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| DevIssuerError::Crypto(e.to_string()))?;
    Ok(SigningKey::from_bytes(&seed))
}

impl DevIssuer {
    fn from_key(issuer: String, kid: String, signing: SigningKey) -> Result<Self, DevIssuerError> {
        let der = signing
            .to_pkcs8_der()
            .map_err(|e| DevIssuerError::Crypto(e.to_string()))?;
        let encoding = EncodingKey::from_ed_der(der.as_bytes());
        Ok(DevIssuer {
            issuer,
            kid,
            signing,
            encoding,
        })
    }

    /// A fresh in-memory issuer named [`DEV_ISSUER`] (nothing is written).
    ///
    /// # Panics
    /// Only if the operating system has no randomness source.
    pub fn ephemeral() -> Self {
        Self::try_ephemeral(DEV_ISSUER).expect("OS randomness is available")
    }

    /// A fresh in-memory issuer named `issuer`.
    ///
    /// # Errors
    /// [`DevIssuerError::Crypto`] if no randomness is available.
    pub fn try_ephemeral(issuer: &str) -> Result<Self, DevIssuerError> {
        let key = random_key()?;
        let kid = kid_for(&key);
        Self::from_key(issuer.into(), kid, key)
    }

    /// Loads the issuer's key from `path`, creating it (mode 0600) on first use.
    ///
    /// # Errors
    /// [`DevIssuerError::Io`] or [`DevIssuerError::BadFile`].
    pub fn load_or_create(path: &Path, issuer: &str) -> Result<Self, DevIssuerError> {
        let io = |source| DevIssuerError::Io {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read(path) {
            Ok(bytes) => {
                let f: KeyFile = serde_json::from_slice(&bytes)
                    .map_err(|_| DevIssuerError::BadFile(path.display().to_string()))?;
                use ed25519_dalek::pkcs8::DecodePrivateKey;
                let key = SigningKey::from_pkcs8_pem(&f.private_key_pem)
                    .map_err(|_| DevIssuerError::BadFile(path.display().to_string()))?;
                Self::from_key(f.issuer, f.kid, key)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = random_key()?;
                let kid = kid_for(&key);
                let pem = key
                    .to_pkcs8_pem(LineEnding::LF)
                    .map_err(|e| DevIssuerError::Crypto(e.to_string()))?;
                let file = KeyFile {
                    issuer: issuer.into(),
                    kid: kid.clone(),
                    private_key_pem: pem.to_string(),
                };
                let text = serde_json::to_vec_pretty(&file)
                    .map_err(|e| DevIssuerError::Crypto(e.to_string()))?;
                write_private(path, &text).map_err(io)?;
                Self::from_key(issuer.into(), kid, key)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The issuer identifier (`iss` of minted tokens).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The public JWKS (RFC 7517 §5) with the one Ed25519 key (RFC 8037 §2).
    pub fn jwks_json(&self) -> String {
        let x = URL_SAFE_NO_PAD.encode(self.signing.verifying_key().as_bytes());
        json!({"keys": [{
            "kty": "OKP", "crv": "Ed25519", "x": x,
            "kid": self.kid, "alg": "EdDSA", "use": "sig"
        }]})
        .to_string()
    }

    /// A verifier for this issuer's tokens with audience `audience`,
    /// requiring `typ: at+jwt`.
    pub fn verifier(&self, audience: &str) -> JwtVerifier {
        JwtVerifier::builder(self.issuer.clone())
            .audience(audience)
            .algorithms([Algorithm::EdDSA])
            .require_typ("at+jwt")
            .keys(KeySource::Static(self.jwks_json()))
            .build()
            .expect("static dev-issuer configuration is valid")
    }

    /// Mints an access token (RFC 9068 shape: `typ: at+jwt`, `iss`, `sub`,
    /// `aud`, `exp`, `iat`, `jti`, `client_id`, `groups`).
    ///
    /// # Errors
    /// [`DevIssuerError::Crypto`] if signing fails.
    pub fn mint(&self, opts: &MintOptions) -> Result<String, DevIssuerError> {
        let now = jiff::Timestamp::now().as_second();
        let ttl = i64::try_from(opts.ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let mut claims = opts.extra.clone();
        let jti = uuid::Uuid::now_v7().to_string();
        for (k, v) in [
            ("iss", json!(self.issuer)),
            ("sub", json!(opts.subject)),
            ("aud", json!(opts.audience)),
            ("iat", json!(now)),
            ("exp", json!(now.saturating_add(ttl))),
            ("jti", json!(jti)),
            ("client_id", json!(opts.subject)),
            ("groups", json!(opts.groups)),
        ] {
            claims.insert(k.into(), v);
        }
        self.sign(&claims)
    }

    /// Signs exactly `claims` (header `alg: EdDSA`, `typ: at+jwt`, this key's
    /// `kid`). For tests that need tokens `mint` would not make (expired,
    /// missing claims…).
    ///
    /// # Errors
    /// [`DevIssuerError::Crypto`] if signing fails.
    pub fn sign(&self, claims: &Map<String, Value>) -> Result<String, DevIssuerError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some("at+jwt".into());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| DevIssuerError::Crypto(e.to_string()))
    }
}

pub(crate) fn kid_for(key: &SigningKey) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(key.verifying_key().as_bytes());
    URL_SAFE_NO_PAD.encode(&d[..12])
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{AuthError, TokenVerifier};

    #[tokio::test]
    async fn minted_tokens_verify_and_map_to_principal() {
        let dev = DevIssuer::ephemeral();
        let t = dev.mint(&MintOptions::new("skill-a").group("ci")).unwrap();
        let p = dev.verifier(DEV_AUDIENCE).verify(&t).await.unwrap();
        assert_eq!(p.subject, "skill-a");
        assert_eq!(p.issuer, DEV_ISSUER);
        assert_eq!(p.groups, vec!["ci"]);
        assert!(p.token_id.is_some());
        // Another audience is refused.
        assert_eq!(
            dev.verifier("other").verify(&t).await.unwrap_err(),
            AuthError::WrongAudience
        );
        // Another issuer's key is refused.
        let other = DevIssuer::ephemeral();
        assert!(other.verifier(DEV_AUDIENCE).verify(&t).await.is_err());
    }

    #[tokio::test]
    async fn expired_and_early_tokens_fail() {
        let dev = DevIssuer::ephemeral();
        let v = dev.verifier(DEV_AUDIENCE);
        let now = jiff::Timestamp::now().as_second();
        let claims = |exp: i64, nbf: i64| {
            json!({"iss": DEV_ISSUER, "sub": "s", "aud": DEV_AUDIENCE, "exp": exp, "nbf": nbf})
                .as_object()
                .unwrap()
                .clone()
        };
        // Within the 60 s leeway: accepted.
        assert!(
            v.verify(&dev.sign(&claims(now - 30, now)).unwrap())
                .await
                .is_ok()
        );
        let expired = dev.sign(&claims(now - 3600, now - 7200)).unwrap();
        assert_eq!(v.verify(&expired).await.unwrap_err(), AuthError::Expired);
        let early = dev.sign(&claims(now + 7200, now + 3600)).unwrap();
        assert_eq!(v.verify(&early).await.unwrap_err(), AuthError::NotYetValid);
    }

    #[test]
    fn key_file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dev.json");
        let a = DevIssuer::load_or_create(&path, DEV_ISSUER).unwrap();
        let b = DevIssuer::load_or_create(&path, DEV_ISSUER).unwrap();
        assert_eq!(a.jwks_json(), b.jwks_json());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, b"garbage").unwrap();
        assert!(matches!(
            DevIssuer::load_or_create(&path, DEV_ISSUER),
            Err(DevIssuerError::BadFile(_))
        ));
    }
}
