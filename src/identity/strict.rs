//! A strict pre-parse of a JWS compact serialization (RFC 7515 §7.1), run
//! before any key lookup or signature check.
//!
//! `jsonwebtoken` is lenient where ambiguity is dangerous: duplicate JSON
//! member names are resolved "last one wins" by `serde_json` (RFC 7515 §5.2
//! and RFC 8725 §3.1 say such a token must be refused, since two parsers can
//! read it differently), and claim types are coerced or skipped. This module
//! refuses, with an [`AuthError`], anything that is not exactly one reading:
//!
//! - the token is at most [`MAX_TOKEN_BYTES`] and has exactly three segments;
//! - every segment is canonical base64url (RFC 7515 §2, RFC 4648 §5): only
//!   `A–Z a–z 0–9 - _`, no `=` padding, no whitespace, no impossible length,
//!   and the unused low bits of the last character are zero (so one byte
//!   string has exactly one encoding);
//! - header and payload are UTF-8 JSON objects with no duplicate member name
//!   at any depth;
//! - header members have their RFC 7515 §4.1 types; `crit` is refused
//!   outright (we implement no extension, §4.1.11);
//! - registered claims have their RFC 7519 §4.1 types: `iss`, `sub`, `jti`
//!   strings; `aud` a string or an array of strings; `exp`, `nbf`, `iat`
//!   numbers (NumericDate, §2).
//!
//! The signature is checked afterwards, by `jsonwebtoken`, over the bytes the
//! token actually carries.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::AuthError;
use super::jwt::{MAX_TOKEN_BYTES, typ_matches};

/// Longest `kid` accepted, in bytes. Real key ids are far shorter (a UUID, a
/// thumbprint); a longer one is refused before it reaches the key store.
pub(crate) const MAX_KID_BYTES: usize = 256;

/// A compact JWS whose segments passed the strict checks.
#[derive(Debug)]
pub(crate) struct Compact {
    /// The JOSE header (no duplicate members).
    pub header: Map<String, Value>,
    /// The JWT claims set (no duplicate members).
    pub claims: Map<String, Value>,
    /// The decoded signature bytes.
    pub signature: Vec<u8>,
}

/// What the verifier needs from a checked header.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct HeaderParams<'a> {
    /// The `alg`, already known to be in the allow-list.
    pub alg: Algorithm,
    /// The `kid`, if any.
    pub kid: Option<&'a str>,
    /// The `typ`, if any.
    pub typ: Option<&'a str>,
}

/// Splits and decodes `token`; see the module docs for what is refused.
pub(crate) fn parse(token: &str) -> Result<Compact, AuthError> {
    let [h, p, s] = segments(token)?;
    let header = json_object(&segment(h)?)?;
    let claims = json_object(&segment(p)?)?;
    let signature = segment(s)?;
    if signature.is_empty() {
        return Err(AuthError::Malformed);
    }
    Ok(Compact {
        header,
        claims,
        signature,
    })
}

/// Decodes only the payload, with the same strictness (for routing by `iss`).
pub(crate) fn parse_claims(token: &str) -> Result<Map<String, Value>, AuthError> {
    let [_, p, _] = segments(token)?;
    json_object(&segment(p)?)
}

fn segments(token: &str) -> Result<[&str; 3], AuthError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::TooLarge {
            limit: MAX_TOKEN_BYTES,
        });
    }
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) => Ok([h, p, s]),
        _ => Err(AuthError::Malformed),
    }
}

/// Decodes one segment, accepting only the canonical base64url form.
pub(crate) fn segment(seg: &str) -> Result<Vec<u8>, AuthError> {
    let bytes = seg.as_bytes();
    if !bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
    {
        return Err(AuthError::Malformed);
    }
    // One leftover character can carry no whole byte (RFC 4648 §4).
    if bytes.len() % 4 == 1 {
        return Err(AuthError::Malformed);
    }
    // Unused bits of the last character must be zero (RFC 4648 §3.5): with
    // 2 leftover characters 4 bits are unused, with 3 leftover 2 bits are.
    let unused_mask = match bytes.len() % 4 {
        2 => 0b1111,
        3 => 0b11,
        _ => 0,
    };
    if let Some(&last) = bytes.last()
        && sextet(last) & unused_mask != 0
    {
        return Err(AuthError::Malformed);
    }
    // The engine is strict too (no padding, no trailing bits); belt and braces.
    URL_SAFE_NO_PAD
        .decode(bytes)
        .map_err(|_| AuthError::Malformed)
}

/// The 6-bit value of a base64url character (already known to be one).
fn sextet(c: u8) -> u8 {
    match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        _ => 63,
    }
}

/// Parses a JSON object, refusing duplicate member names at any depth.
pub(crate) fn json_object(bytes: &[u8]) -> Result<Map<String, Value>, AuthError> {
    let value = crate::json::parse_unique(bytes).map_err(|_| AuthError::Malformed)?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(AuthError::Malformed),
    }
}

/// Checks the JOSE header (RFC 7515 §4.1) against the verifier's rules and
/// returns what key selection needs.
///
/// `jku`, `jwk`, `x5u`, `x5c`, `x5t` and `x5t#S256` are deliberately not
/// read: keys come only from the issuer's configured key set (RFC 8725 §3.10).
pub(crate) fn check_header<'a>(
    header: &'a Map<String, Value>,
    allowed: &[Algorithm],
    required_typ: Option<&str>,
) -> Result<HeaderParams<'a>, AuthError> {
    let alg = match header.get("alg") {
        Some(Value::String(name)) => name
            .parse::<Algorithm>()
            .map_err(|_| AuthError::AlgorithmNotAllowed)?,
        Some(_) => return Err(AuthError::Malformed),
        None => return Err(AuthError::AlgorithmNotAllowed),
    };
    if !allowed.contains(&alg) {
        return Err(AuthError::AlgorithmNotAllowed);
    }
    // We implement no JWS extension, so any `crit` is one we do not understand.
    if header.contains_key("crit") {
        return Err(AuthError::UnsupportedCritical);
    }
    let kid = optional_str(header, "kid")?;
    if kid.is_some_and(|k| k.len() > MAX_KID_BYTES) {
        return Err(AuthError::UnknownKey);
    }
    let typ = optional_str(header, "typ")?;
    optional_str(header, "cty")?;
    if let Some(want) = required_typ
        && !typ_matches(typ, want)
    {
        return Err(AuthError::WrongType);
    }
    Ok(HeaderParams { alg, kid, typ })
}

/// Checks the signature's shape for `alg` before any cryptography: ECDSA
/// signatures are the fixed-size `r ‖ s` of RFC 7518 §3.4 with neither half
/// zero (a zero `r` or `s` is never valid, and accepting it is the
/// "psychic signatures" bug, CVE-2022-21449); EdDSA signatures are 64 bytes
/// (RFC 8032 §5.1.6). RSA lengths depend on the key and are checked there.
pub(crate) fn check_signature_shape(alg: Algorithm, sig: &[u8]) -> Result<(), AuthError> {
    let half = match alg {
        Algorithm::ES256 => 32,
        Algorithm::ES384 => 48,
        Algorithm::EdDSA => {
            return if sig.len() == 64 {
                Ok(())
            } else {
                Err(AuthError::InvalidSignature)
            };
        }
        _ => return Ok(()),
    };
    if sig.len() != 2 * half {
        return Err(AuthError::InvalidSignature);
    }
    let (r, s) = sig.split_at(half);
    if r.iter().all(|b| *b == 0) || s.iter().all(|b| *b == 0) {
        return Err(AuthError::InvalidSignature);
    }
    Ok(())
}

/// Checks the types of the registered claims (RFC 7519 §4.1) and that `iss`,
/// `aud` and `exp` are present.
pub(crate) fn check_claims(claims: &Map<String, Value>) -> Result<(), AuthError> {
    match claims.get("iss") {
        Some(Value::String(_)) => {}
        Some(_) => return Err(AuthError::Malformed),
        None => return Err(AuthError::MissingClaim("iss")),
    }
    match claims.get("aud") {
        Some(Value::String(_)) => {}
        Some(Value::Array(items)) if !items.is_empty() && items.iter().all(Value::is_string) => {}
        Some(_) => return Err(AuthError::Malformed),
        None => return Err(AuthError::MissingClaim("aud")),
    }
    match claims.get("exp") {
        Some(Value::Number(_)) => {}
        Some(_) => return Err(AuthError::Malformed),
        None => return Err(AuthError::MissingClaim("exp")),
    }
    for name in ["nbf", "iat"] {
        if claims.get(name).is_some_and(|v| !v.is_number()) {
            return Err(AuthError::Malformed);
        }
    }
    for name in ["sub", "jti"] {
        optional_str(claims, name)?;
    }
    Ok(())
}

fn optional_str<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, AuthError> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(AuthError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn canonical_base64url_only() {
        assert_eq!(segment("eyJhIjoxfQ").unwrap(), br#"{"a":1}"#);
        for bad in [
            "eyJhIjoxfQ==", // padding
            "eyJhIjoxfQ=",
            "eyJh+joxfQ", // standard alphabet
            "eyJh/joxfQ",
            "eyJhIjox fQ", // whitespace
            "eyJhIjoxfQ\n",
            "eyJhIjoxfR", // last char carries set unused bits
            "eyJhI",      // length ≡ 1 (mod 4)
            "eyJhIjoxfQ%3D",
        ] {
            assert_eq!(segment(bad), Err(AuthError::Malformed), "{bad:?}");
        }
        // Both encodings of 0xff: only the canonical one decodes.
        assert_eq!(segment("_w").unwrap(), [0xff]);
        assert_eq!(segment("_x"), Err(AuthError::Malformed));
    }

    #[test]
    fn duplicate_members_are_refused_at_any_depth() {
        assert!(json_object(br#"{"a":1,"b":{"c":[{"d":1}]}}"#).is_ok());
        for bad in [
            r#"{"iss":"a","iss":"b"}"#,
            r#"{"a":{"x":1,"x":1}}"#,
            r#"{"a":[{"x":1,"x":2}]}"#,
            // The same name spelt with an escape is still the same name.
            r#"{"alg":"EdDSA","\u0061lg":"none"}"#,
            r#"[1]"#,
            r#"{"a":1} x"#,
            "{\"a\":1}\u{feff}",
        ] {
            assert_eq!(
                json_object(bad.as_bytes()),
                Err(AuthError::Malformed),
                "{bad}"
            );
        }
        assert_eq!(json_object(b"\xff{}"), Err(AuthError::Malformed));
    }

    #[test]
    fn parse_splits_three_segments() {
        let token = format!("{}.{}.AAAA", b64(r#"{"alg":"EdDSA"}"#), b64(r#"{"x":1}"#));
        let c = parse(&token).unwrap();
        assert_eq!(c.header["alg"], "EdDSA");
        assert_eq!(c.claims["x"], 1);
        assert_eq!(c.signature, [0, 0, 0]);
        for bad in [
            format!("{token}."),
            format!("{}.{}.", b64("{}"), b64("{}")),
            "a.b".into(),
            format!("{}..AAAA", b64("{}")),
        ] {
            assert_eq!(parse(&bad).unwrap_err(), AuthError::Malformed, "{bad}");
        }
        let big = format!("{}.{}.AAAA", b64("{}"), "A".repeat(MAX_TOKEN_BYTES));
        assert!(matches!(parse(&big), Err(AuthError::TooLarge { .. })));
    }

    #[test]
    fn header_rules() {
        let all = [Algorithm::ES256, Algorithm::EdDSA];
        let h = |v: Value| v.as_object().unwrap().clone();
        let ok = h(json!({"alg": "ES256", "kid": "k", "typ": "at+jwt", "jku": "http://x"}));
        assert_eq!(
            check_header(&ok, &all, Some("at+jwt")).unwrap(),
            HeaderParams {
                alg: Algorithm::ES256,
                kid: Some("k"),
                typ: Some("at+jwt")
            }
        );
        let refused = [
            (json!({"alg": "none"}), AuthError::AlgorithmNotAllowed),
            (json!({"alg": "es256"}), AuthError::AlgorithmNotAllowed),
            (json!({"alg": "HS256"}), AuthError::AlgorithmNotAllowed),
            (json!({"alg": "RS256"}), AuthError::AlgorithmNotAllowed),
            (json!({}), AuthError::AlgorithmNotAllowed),
            (json!({"alg": ["ES256"]}), AuthError::Malformed),
            (
                json!({"alg": "ES256", "crit": []}),
                AuthError::UnsupportedCritical,
            ),
            (json!({"alg": "ES256", "kid": 7}), AuthError::Malformed),
            (
                json!({"alg": "ES256", "kid": "k".repeat(300)}),
                AuthError::UnknownKey,
            ),
            (json!({"alg": "ES256", "typ": "JWT"}), AuthError::WrongType),
            (json!({"alg": "ES256"}), AuthError::WrongType),
        ];
        for (header, want) in refused {
            assert_eq!(
                check_header(&h(header.clone()), &all, Some("at+jwt")),
                Err(want),
                "{header}"
            );
        }
    }

    #[test]
    fn claim_types() {
        let c = |v: Value| v.as_object().unwrap().clone();
        let base = json!({"iss": "i", "aud": "a", "exp": 1, "sub": "s"});
        assert!(check_claims(&c(base.clone())).is_ok());
        assert!(check_claims(&c(json!({"iss": "i", "aud": ["a", "b"], "exp": 1.5}))).is_ok());
        let cases = [
            ("iss", json!(["i"]), AuthError::Malformed),
            ("aud", json!([]), AuthError::Malformed),
            ("aud", json!([1]), AuthError::Malformed),
            ("exp", json!("1"), AuthError::Malformed),
            ("nbf", json!("1"), AuthError::Malformed),
            ("iat", json!(null), AuthError::Malformed),
            ("sub", json!(1), AuthError::Malformed),
        ];
        for (name, value, want) in cases {
            let mut claims = c(base.clone());
            claims.insert(name.into(), value.clone());
            assert_eq!(check_claims(&claims), Err(want), "{name}: {value}");
        }
        for name in ["iss", "aud", "exp"] {
            let mut claims = c(base.clone());
            claims.remove(name);
            assert!(
                matches!(check_claims(&claims), Err(AuthError::MissingClaim(n)) if n == name),
                "{name}"
            );
        }
    }

    #[test]
    fn signature_shapes() {
        let ok = [1u8; 64];
        assert!(check_signature_shape(Algorithm::ES256, &ok).is_ok());
        assert!(check_signature_shape(Algorithm::EdDSA, &ok).is_ok());
        let mut zero_r = ok;
        zero_r[..32].fill(0);
        let mut zero_s = ok;
        zero_s[32..].fill(0);
        for bad in [&[0u8; 64][..], &zero_r, &zero_s, &ok[..63], &[1u8; 72]] {
            assert_eq!(
                check_signature_shape(Algorithm::ES256, bad),
                Err(AuthError::InvalidSignature)
            );
        }
        assert_eq!(
            check_signature_shape(Algorithm::ES384, &ok),
            Err(AuthError::InvalidSignature)
        );
        assert!(check_signature_shape(Algorithm::ES384, &[1u8; 96]).is_ok());
        assert_eq!(
            check_signature_shape(Algorithm::EdDSA, &ok[..32]),
            Err(AuthError::InvalidSignature)
        );
        assert!(check_signature_shape(Algorithm::RS256, &ok[..3]).is_ok());
    }
}
