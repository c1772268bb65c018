//! Raw bodies kept encrypted: [`BodyKey`] (AES-256-GCM) and [`EncryptedBody`].

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use uuid::Uuid;

use super::AuditError;

/// A body encrypted with AES-256-GCM under a [`BodyKey`].
///
/// The associated data binds it to its exchange and side
/// (`"<exchange id>/request"` or `"<exchange id>/response"`), so a
/// ciphertext moved to another record or side does not decrypt.
///
/// ```
/// use skillgate::audit::{BodyKey, EncryptedBody};
/// let key = BodyKey::from_bytes([7u8; 32]);
/// let id = uuid::Uuid::now_v7();
/// let sealed: EncryptedBody = key.seal(id, "request", b"raw prompt").unwrap();
/// assert_eq!(sealed.alg, "A256GCM");
/// assert_eq!(&key.open(id, "request", &sealed).unwrap()[..], b"raw prompt");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptedBody {
    /// Algorithm: always `A256GCM`.
    pub alg: String,
    /// Which key: the first 16 hex digits of SHA-256 of the key.
    pub key_id: String,
    /// The 96-bit nonce, base64 (random per body).
    pub nonce: String,
    /// Ciphertext followed by the 128-bit tag, base64.
    pub ciphertext: String,
}

/// A 32-byte AES-256-GCM key for raw bodies.
///
/// ```
/// let key = skillgate::audit::BodyKey::from_bytes([1u8; 32]);
/// assert_eq!(key.id().len(), 16);
/// ```
#[derive(Clone)]
pub struct BodyKey {
    id: String,
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for BodyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl BodyKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(key: [u8; 32]) -> BodyKey {
        let digest = sha2::Sha256::digest(key);
        let id = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        BodyKey {
            id,
            cipher: Aes256Gcm::new(&key.into()),
        }
    }

    /// Reads a key file: exactly 32 raw bytes, or 64 hex digits, or the
    /// base64 of 32 bytes (surrounding white space ignored).
    ///
    /// # Errors
    /// [`AuditError::Unavailable`] when the file cannot be read or holds
    /// anything else (the content is never echoed).
    pub fn from_file(path: impl AsRef<Path>) -> Result<BodyKey, AuditError> {
        let raw = std::fs::read(path.as_ref())
            .map_err(|e| AuditError::Unavailable(format!("read body key file: {e}")))?;
        let key: Option<[u8; 32]> = if raw.len() == 32 {
            raw.as_slice().try_into().ok()
        } else {
            let text = String::from_utf8_lossy(&raw);
            let t = text.trim();
            if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
                (0..32)
                    .map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16).ok())
                    .collect::<Option<Vec<u8>>>()
                    .and_then(|v| v.try_into().ok())
            } else {
                STANDARD.decode(t).ok().and_then(|v| v.try_into().ok())
            }
        };
        key.map(BodyKey::from_bytes).ok_or_else(|| {
            AuditError::Unavailable(
                "body key file must hold 32 bytes: raw, 64 hex digits or base64".into(),
            )
        })
    }

    /// The key id recorded with every body it seals.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Encrypts `plain` for exchange `id`, side `side` (`request` or `response`).
    ///
    /// # Errors
    /// [`AuditError::Unavailable`] when the operating system's random source fails.
    pub fn seal(&self, id: Uuid, side: &str, plain: &[u8]) -> Result<EncryptedBody, AuditError> {
        let mut nonce = [0u8; 12];
        getrandom::getrandom(&mut nonce)
            .map_err(|_| AuditError::Unavailable("random source failed".into()))?;
        let aad = format!("{id}/{side}");
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| AuditError::Unavailable("raw body encryption failed".into()))?;
        Ok(EncryptedBody {
            alg: "A256GCM".into(),
            key_id: self.id.clone(),
            nonce: STANDARD.encode(nonce),
            ciphertext: STANDARD.encode(ct),
        })
    }

    /// Decrypts a body sealed for exchange `id`, side `side`.
    ///
    /// # Errors
    /// [`AuditError::Corrupt`] when the key id differs, the encoding is bad,
    /// or authentication fails (wrong key, modified ciphertext, nonce or
    /// associated data).
    pub fn open(&self, id: Uuid, side: &str, body: &EncryptedBody) -> Result<Bytes, AuditError> {
        if body.alg != "A256GCM" {
            return Err(AuditError::Corrupt("raw body: unknown algorithm".into()));
        }
        if body.key_id != self.id {
            return Err(AuditError::Corrupt(format!(
                "raw body sealed under key {}, not {}",
                body.key_id, self.id
            )));
        }
        let nonce = STANDARD
            .decode(&body.nonce)
            .ok()
            .filter(|n| n.len() == 12)
            .ok_or_else(|| AuditError::Corrupt("raw body: bad nonce".into()))?;
        let ct = STANDARD
            .decode(&body.ciphertext)
            .map_err(|_| AuditError::Corrupt("raw body: bad ciphertext encoding".into()))?;
        let aad = format!("{id}/{side}");
        self.cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ct,
                    aad: aad.as_bytes(),
                },
            )
            .map(Bytes::from)
            .map_err(|_| AuditError::Corrupt("raw body does not authenticate".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_fresh_nonces() {
        let key = BodyKey::from_bytes([9u8; 32]);
        let id = Uuid::now_v7();
        let a = key.seal(id, "response", b"hello").unwrap();
        let b = key.seal(id, "response", b"hello").unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
        assert_eq!(&key.open(id, "response", &a).unwrap()[..], b"hello");
        assert!(!a.ciphertext.contains("hello"));
    }

    #[test]
    fn wrong_key_fails() {
        let id = Uuid::now_v7();
        let sealed = BodyKey::from_bytes([1u8; 32])
            .seal(id, "request", b"secret")
            .unwrap();
        let other = BodyKey::from_bytes([2u8; 32]);
        assert!(matches!(
            other.open(id, "request", &sealed),
            Err(AuditError::Corrupt(_))
        ));
        // Even with the key id forged to match, authentication fails.
        let mut forged = sealed.clone();
        forged.key_id = other.id().to_owned();
        assert!(matches!(
            other.open(id, "request", &forged),
            Err(AuditError::Corrupt(_))
        ));
    }

    #[test]
    fn tampered_ciphertext_nonce_or_context_fails() {
        let key = BodyKey::from_bytes([3u8; 32]);
        let id = Uuid::now_v7();
        let sealed = key.seal(id, "request", b"the original prompt").unwrap();
        let mut ct = STANDARD.decode(&sealed.ciphertext).unwrap();
        ct[0] ^= 1;
        let t = EncryptedBody {
            ciphertext: STANDARD.encode(&ct),
            ..sealed.clone()
        };
        assert!(key.open(id, "request", &t).is_err());
        let mut n = STANDARD.decode(&sealed.nonce).unwrap();
        n[11] ^= 1;
        let t = EncryptedBody {
            nonce: STANDARD.encode(&n),
            ..sealed.clone()
        };
        assert!(key.open(id, "request", &t).is_err());
        assert!(key.open(id, "response", &sealed).is_err(), "other side");
        assert!(
            key.open(Uuid::now_v7(), "request", &sealed).is_err(),
            "other exchange"
        );
        assert!(key.open(id, "request", &sealed).is_ok());
    }

    #[test]
    fn key_files_in_three_encodings() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = [0xabu8; 32];
        let want = BodyKey::from_bytes(bytes).id().to_owned();
        let p = dir.path().join("k");
        std::fs::write(&p, bytes).unwrap();
        assert_eq!(BodyKey::from_file(&p).unwrap().id(), want);
        std::fs::write(&p, format!("{}\n", "ab".repeat(32))).unwrap();
        assert_eq!(BodyKey::from_file(&p).unwrap().id(), want);
        std::fs::write(&p, STANDARD.encode(bytes)).unwrap();
        assert_eq!(BodyKey::from_file(&p).unwrap().id(), want);
        std::fs::write(&p, "too short").unwrap();
        let err = BodyKey::from_file(&p).unwrap_err().to_string();
        assert!(!err.contains("too short"));
    }
}
