//! The gateway's signing keys: one current Ed25519 key that signs, and the
//! previous keys that are still published so tokens they signed keep
//! verifying until they expire.
//!
//! On disk (mode 0600) the ring is a JSON file:
//!
//! ```json
//! {"version": 1,
//!  "current": {"kid": "…", "private_key_pem": "-----BEGIN PRIVATE KEY-----…", "created_at": 1767225600},
//!  "previous": [{"kid": "…", "x": "<base64url Ed25519 public key>", "retired_at": 1767225600}]}
//! ```
//!
//! Retired keys keep only their public half.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding};
use jsonwebtoken::EncodingKey;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::IssuerError;
use crate::identity::dev::{kid_for, random_key};

/// How many retired keys a rotation keeps published (newest first).
pub const MAX_PREVIOUS_KEYS: usize = 4;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    version: u32,
    current: CurrentKey,
    #[serde(default)]
    previous: Vec<PreviousKey>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CurrentKey {
    kid: String,
    private_key_pem: String,
    created_at: i64,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PreviousKey {
    kid: String,
    x: String,
    retired_at: i64,
}

/// The signing key and the published verification keys.
pub(crate) struct KeyRing {
    kid: String,
    created_at: i64,
    signing: SigningKey,
    encoding: EncodingKey,
    previous: Vec<PreviousKey>,
}

impl KeyRing {
    fn from_parts(
        kid: String,
        created_at: i64,
        signing: SigningKey,
        previous: Vec<PreviousKey>,
    ) -> Result<Self, IssuerError> {
        let der = signing
            .to_pkcs8_der()
            .map_err(|e| IssuerError::Crypto(e.to_string()))?;
        Ok(KeyRing {
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            kid,
            created_at,
            signing,
            previous,
        })
    }

    /// A ring with one fresh key and nothing retired.
    pub(crate) fn generate() -> Result<Self, IssuerError> {
        let key = random_key().map_err(|e| IssuerError::Crypto(e.to_string()))?;
        Self::from_parts(kid_for(&key), now(), key, Vec::new())
    }

    /// A ring whose new current key is fresh and whose old current key is
    /// the newest previous one (at most [`MAX_PREVIOUS_KEYS`] kept).
    pub(crate) fn rotated(&self) -> Result<Self, IssuerError> {
        let key = random_key().map_err(|e| IssuerError::Crypto(e.to_string()))?;
        let mut previous = vec![PreviousKey {
            kid: self.kid.clone(),
            x: URL_SAFE_NO_PAD.encode(self.signing.verifying_key().as_bytes()),
            retired_at: now(),
        }];
        previous.extend(self.previous.iter().cloned());
        previous.truncate(MAX_PREVIOUS_KEYS);
        Self::from_parts(kid_for(&key), now(), key, previous)
    }

    pub(crate) fn kid(&self) -> &str {
        &self.kid
    }

    pub(crate) fn encoding(&self) -> &EncodingKey {
        &self.encoding
    }

    #[cfg(test)]
    pub(crate) fn previous_kids(&self) -> impl Iterator<Item = &str> {
        self.previous.iter().map(|p| p.kid.as_str())
    }

    /// The public JWKS (RFC 7517 §5; OKP keys per RFC 8037 §2): the current
    /// key first, then the previous ones.
    pub(crate) fn jwks(&self) -> Value {
        let entry = |kid: &str, x: &str| json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"});
        let mut keys = vec![entry(
            &self.kid,
            &URL_SAFE_NO_PAD.encode(self.signing.verifying_key().as_bytes()),
        )];
        keys.extend(self.previous.iter().map(|p| entry(&p.kid, &p.x)));
        json!({ "keys": keys })
    }

    fn to_file(&self) -> Result<Vec<u8>, IssuerError> {
        let pem = self
            .signing
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| IssuerError::Crypto(e.to_string()))?;
        let file = KeyFile {
            version: 1,
            current: CurrentKey {
                kid: self.kid.clone(),
                private_key_pem: pem.to_string(),
                created_at: self.created_at,
            },
            previous: self.previous.clone(),
        };
        serde_json::to_vec_pretty(&file).map_err(|e| IssuerError::Crypto(e.to_string()))
    }

    pub(crate) fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self, IssuerError> {
        let bad = || IssuerError::BadKeyFile(path.display().to_string());
        let f: KeyFile = serde_json::from_slice(bytes).map_err(|_| bad())?;
        if f.version != 1 {
            return Err(bad());
        }
        let key = SigningKey::from_pkcs8_pem(&f.current.private_key_pem).map_err(|_| bad())?;
        for p in &f.previous {
            let x = URL_SAFE_NO_PAD.decode(&p.x).map_err(|_| bad())?;
            if x.len() != 32 || p.kid.is_empty() {
                return Err(bad());
            }
        }
        Self::from_parts(f.current.kid, f.current.created_at, key, f.previous)
    }

    /// Reads the ring from `path`.
    pub(crate) fn load(path: &Path) -> Result<Self, IssuerError> {
        let bytes = std::fs::read(path).map_err(|source| io(path, source))?;
        Self::from_bytes(&bytes, path)
    }

    /// Reads the ring from `path`, creating a fresh one there (mode 0600) if
    /// the file does not exist. If another process creates it at the same
    /// moment, that one wins and is read.
    pub(crate) fn load_or_create(path: &Path) -> Result<Self, IssuerError> {
        match std::fs::read(path) {
            Ok(bytes) => Self::from_bytes(&bytes, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let ring = Self::generate()?;
                let bytes = ring.to_file()?;
                match write_private(path, &bytes, false) {
                    Ok(()) => Ok(ring),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load(path),
                    Err(e) => Err(io(path, e)),
                }
            }
            Err(e) => Err(io(path, e)),
        }
    }

    /// Atomically replaces the file at `path` with this ring.
    pub(crate) fn save(&self, path: &Path) -> Result<(), IssuerError> {
        let bytes = self.to_file()?;
        write_private(path, &bytes, true).map_err(|e| io(path, e))
    }
}

fn io(path: &Path, source: std::io::Error) -> IssuerError {
    IssuerError::Io {
        path: path.display().to_string(),
        source,
    }
}

pub(crate) fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// Writes `bytes` to a temporary file beside `path` (mode 0600), then moves
/// it into place: `replace` renames over an existing file; otherwise the
/// file is linked in only if `path` does not exist yet (`AlreadyExists`).
fn write_private(path: &Path, bytes: &[u8], replace: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut suffix = [0u8; 8];
    getrandom::getrandom(&mut suffix).map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", URL_SAFE_NO_PAD.encode(suffix)));
    let tmp = path.with_file_name(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = (|| {
        let mut f = options.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        if replace {
            std::fs::rename(&tmp, path)
        } else {
            std::fs::hard_link(&tmp, path)
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_previous_public_keys_only() {
        let mut ring = KeyRing::generate().unwrap();
        let first = ring.kid().to_owned();
        for _ in 0..(MAX_PREVIOUS_KEYS + 2) {
            ring = ring.rotated().unwrap();
        }
        let jwks = ring.jwks();
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 1 + MAX_PREVIOUS_KEYS);
        assert_eq!(keys[0]["kid"], ring.kid());
        assert!(
            keys.iter().all(|k| k.get("d").is_none()),
            "no private parts"
        );
        assert!(!ring.previous_kids().any(|k| k == first), "oldest dropped");
    }

    #[test]
    fn file_round_trip_and_atomic_create() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let a = KeyRing::load_or_create(&path).unwrap();
        let b = KeyRing::load_or_create(&path).unwrap();
        assert_eq!(a.jwks(), b.jwks());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let r = a.rotated().unwrap();
        r.save(&path).unwrap();
        let c = KeyRing::load(&path).unwrap();
        assert_eq!(c.jwks(), r.jwks());
        assert_eq!(c.previous_kids().collect::<Vec<_>>(), [a.kid()]);
        // No temporary files are left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        std::fs::write(&path, b"{\"version\":1}").unwrap();
        assert!(matches!(
            KeyRing::load(&path),
            Err(IssuerError::BadKeyFile(_))
        ));
    }
}
