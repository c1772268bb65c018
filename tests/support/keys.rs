//! Signing keys made fresh in the test (RSA, P-256, P-384, Ed25519), their
//! public JWKs, and a signer for raw compact-JWS input, so tests can build
//! tokens `jsonwebtoken::encode` would never make (duplicate members,
//! non-canonical base64url, odd headers) and still sign them validly.
//!
//! Also used by `benches/identity.rs` (through `#[path]`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

/// base64url without padding (RFC 7515 §2).
pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A private key the test controls, with its public forms.
pub struct TestKey {
    /// The algorithm this key signs with.
    pub alg: Algorithm,
    /// Its `kid`.
    pub kid: String,
    /// The private key, for `jsonwebtoken`.
    pub encoding: EncodingKey,
    /// The public key as a JWK (RFC 7517 §4), with `kid`, `alg` and `use`.
    pub jwk: Value,
    /// The public key as SPKI PEM (RSA and EC only; empty for Ed25519).
    pub public_pem: String,
}

impl TestKey {
    /// A 2048-bit RSA key for `alg` (RS* or PS*).
    pub fn rsa(alg: Algorithm, kid: &str) -> TestKey {
        use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        use rsa::traits::PublicKeyParts;
        let private = rsa::PrivateKey::new(&mut rand::rng(), 2048).expect("RSA keygen");
        let public = private.to_public_key();
        let pem = private.to_pkcs8_pem(LineEnding::LF).expect("RSA PKCS#8");
        TestKey {
            alg,
            kid: kid.into(),
            encoding: EncodingKey::from_rsa_pem(pem.as_bytes()).expect("RSA encoding key"),
            jwk: json!({
                "kty": "RSA", "n": b64(public.n_bytes()), "e": b64(public.e_bytes()),
                "kid": kid, "alg": alg_name(alg), "use": "sig",
            }),
            public_pem: public.to_public_key_pem(LineEnding::LF).expect("RSA SPKI"),
        }
    }

    /// A P-256 key for ES256.
    pub fn p256(kid: &str) -> TestKey {
        use p256::elliptic_curve::Generate;
        use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        let secret = p256::SecretKey::generate_from_rng(&mut rand::rng());
        let pem = secret.to_pkcs8_pem(LineEnding::LF).expect("P-256 PKCS#8");
        let point = secret.public_key().to_sec1_bytes();
        TestKey {
            alg: Algorithm::ES256,
            kid: kid.into(),
            encoding: EncodingKey::from_ec_pem(pem.as_bytes()).expect("P-256 encoding key"),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..]),
                "kid": kid, "alg": "ES256", "use": "sig",
            }),
            public_pem: secret
                .public_key()
                .to_public_key_pem(LineEnding::LF)
                .expect("P-256 SPKI"),
        }
    }

    /// A P-384 key for ES384.
    pub fn p384(kid: &str) -> TestKey {
        use p384::elliptic_curve::Generate;
        use p384::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        let secret = p384::SecretKey::generate_from_rng(&mut rand::rng());
        let pem = secret.to_pkcs8_pem(LineEnding::LF).expect("P-384 PKCS#8");
        let point = secret.public_key().to_sec1_bytes();
        TestKey {
            alg: Algorithm::ES384,
            kid: kid.into(),
            encoding: EncodingKey::from_ec_pem(pem.as_bytes()).expect("P-384 encoding key"),
            jwk: json!({
                "kty": "EC", "crv": "P-384", "x": b64(&point[1..49]), "y": b64(&point[49..]),
                "kid": kid, "alg": "ES384", "use": "sig",
            }),
            public_pem: secret
                .public_key()
                .to_public_key_pem(LineEnding::LF)
                .expect("P-384 SPKI"),
        }
    }

    /// An Ed25519 key for EdDSA (RFC 8037).
    pub fn ed25519(kid: &str) -> TestKey {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).expect("randomness");
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        let der = signing.to_pkcs8_der().expect("Ed25519 PKCS#8");
        TestKey {
            alg: Algorithm::EdDSA,
            kid: kid.into(),
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            jwk: json!({
                "kty": "OKP", "crv": "Ed25519", "x": b64(signing.verifying_key().as_bytes()),
                "kid": kid, "alg": "EdDSA", "use": "sig",
            }),
            public_pem: String::new(),
        }
    }

    /// The standard header for this key: `alg`, `kid`, `typ: at+jwt`.
    pub fn header(&self) -> Value {
        json!({"alg": alg_name(self.alg), "kid": self.kid, "typ": "at+jwt"})
    }

    /// Signs `signing_input` (`header.payload`, as ASCII) and returns the
    /// base64url signature.
    pub fn sign_input(&self, signing_input: &str) -> String {
        jsonwebtoken::crypto::sign(signing_input.as_bytes(), &self.encoding, self.alg)
            .expect("sign")
    }

    /// A token with exactly these header and payload JSON texts (not
    /// re-serialized: duplicates and odd spacing survive), validly signed.
    pub fn sign_raw(&self, header_json: &str, payload_json: &str) -> String {
        self.sign_segments(&b64(header_json), &b64(payload_json))
    }

    /// A token from already-encoded segments (which may be non-canonical),
    /// validly signed over exactly those characters.
    pub fn sign_segments(&self, header_b64: &str, payload_b64: &str) -> String {
        let input = format!("{header_b64}.{payload_b64}");
        let sig = self.sign_input(&input);
        format!("{input}.{sig}")
    }

    /// A token with `header` and `claims`, validly signed.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        self.sign_raw(&header.to_string(), &claims.to_string())
    }
}

/// The JWS name of `alg` (RFC 7518 §3.1).
pub fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
        other => panic!("no JWS name known for {other:?}"),
    }
}

/// A JWKS document (RFC 7517 §5) with these keys' public JWKs.
pub fn jwks(keys: &[&TestKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}
