//! The JWT attack suite (issue 3, item 5): every known way to get a forged
//! or ambiguous token past a verifier, each refused with an `AuthError` by
//! `JwtVerifier` and with `401 authentication_error` through the HTTP stack.
//!
//! The keys are made fresh here; forged tokens are signed validly wherever
//! that makes the attack stronger (a duplicate-key token signed by the
//! trusted key is only refused if the verifier really refuses duplicates).
//! See docs/identity.md (hardening) for the list and how each is refused.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use skillgate::identity::{
    Algorithm, AuthError, IssuerSet, JwtVerifier, KeySource, MAX_TOKEN_BYTES, TokenVerifier,
};
use support::keys::{TestKey, b64, jwks, now};

const ISS: &str = "https://idp.attack.test";
const AUD: &str = "skillgate";

/// The issuer's real keys, one per key type (RSA keygen is slow-ish: once).
struct Trusted {
    rs: TestKey,
    ps: TestKey,
    es: TestKey,
    es384: TestKey,
    ed: TestKey,
}

static TRUSTED: LazyLock<Trusted> = LazyLock::new(|| Trusted {
    rs: TestKey::rsa(Algorithm::RS256, "rsa-1"),
    ps: TestKey::rsa(Algorithm::PS256, "rsa-pss-1"),
    es: TestKey::p256("p256-1"),
    es384: TestKey::p384("p384-1"),
    ed: TestKey::ed25519("ed-1"),
});

impl Trusted {
    fn all(&self) -> [&TestKey; 5] {
        [&self.rs, &self.ps, &self.es, &self.es384, &self.ed]
    }
    fn jwks(&self) -> String {
        jwks(&self.all())
    }
}

/// A verifier that trusts exactly [`TRUSTED`] (static JWKS), requires
/// `typ: at+jwt`, and allows every asymmetric algorithm.
fn verifier() -> JwtVerifier {
    JwtVerifier::builder(ISS)
        .audience(AUD)
        .require_typ("at+jwt")
        .keys(KeySource::Static(TRUSTED.jwks()))
        .build()
        .expect("verifier")
}

fn claims() -> Value {
    json!({
        "iss": ISS, "aud": AUD, "sub": "skill-a", "client_id": "skill-a",
        "iat": now(), "exp": now() + 600, "jti": "t-1",
    })
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

fn without(mut v: Value, key: &str) -> Value {
    v.as_object_mut().expect("object").remove(key);
    v
}

async fn refusal(v: &impl TokenVerifier, token: &str) -> AuthError {
    match v.verify(token).await {
        Ok(p) => panic!("token accepted as {}: {token}", p.id()),
        Err(e) => e,
    }
}

/// A loopback HTTP server that counts every request and answers `body`.
struct Counter {
    base: String,
    hits: Arc<AtomicUsize>,
}

async fn counter(body: String) -> Counter {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let (h, body) = (h.clone(), body.clone());
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            body
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Counter { base, hits }
}

#[tokio::test]
async fn baseline_every_algorithm_verifies() {
    // Without this, the refusals below could be a broken signer's doing.
    let v = verifier();
    for key in TRUSTED.all() {
        let token = key.sign(&key.header(), &claims());
        let p = v
            .verify(&token)
            .await
            .unwrap_or_else(|e| panic!("{:?}: {e}", key.alg));
        assert_eq!((p.issuer.as_str(), p.subject.as_str()), (ISS, "skill-a"));
    }
    // `aud` as an array containing ours, and `typ` with the media-type prefix.
    let t = &TRUSTED.ed;
    let token = t.sign(
        &with(t.header(), "typ", json!("application/at+jwt")),
        &with(claims(), "aud", json!(["other", AUD])),
    );
    assert!(v.verify(&token).await.is_ok());
}

#[tokio::test]
async fn alg_none_in_every_spelling_is_refused() {
    let v = verifier();
    let good = TRUSTED.ed.sign(&TRUSTED.ed.header(), &claims());
    let good_sig = good.rsplit('.').next().expect("signature");
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({"alg": alg, "kid": "ed-1", "typ": "at+jwt"});
        let input = format!("{}.{}", b64(header.to_string()), b64(claims().to_string()));
        // The classic form: empty signature.
        assert_eq!(
            refusal(&v, &format!("{input}.")).await,
            AuthError::Malformed,
            "{alg}, empty signature"
        );
        // With a signature lifted from a real token, or any bytes.
        for sig in [good_sig, "AAAA"] {
            assert_eq!(
                refusal(&v, &format!("{input}.{sig}")).await,
                AuthError::AlgorithmNotAllowed,
                "{alg}"
            );
        }
    }
    // No `alg` at all, or `alg` of the wrong type.
    for header in [
        json!({"kid": "ed-1", "typ": "at+jwt"}),
        json!({"alg": null}),
    ] {
        let token = TRUSTED.ed.sign(&header, &claims());
        assert!(v.verify(&token).await.is_err(), "{header}");
    }
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_is_refused() {
    // The key-confusion attack: the attacker knows the RSA public key and
    // uses it as an HMAC secret, hoping the verifier feeds the same bytes
    // to HMAC when the header says HS256.
    let v = verifier();
    let rsa = &TRUSTED.rs;
    let jwk_text = rsa.jwk.to_string();
    let n = rsa.jwk["n"].as_str().expect("n").to_owned();
    let secrets: [&[u8]; 4] = [
        rsa.public_pem.as_bytes(),
        rsa.public_pem.trim_end().as_bytes(),
        jwk_text.as_bytes(),
        n.as_bytes(),
    ];
    for secret in secrets {
        for (alg, name) in [
            (Algorithm::HS256, "HS256"),
            (Algorithm::HS384, "HS384"),
            (Algorithm::HS512, "HS512"),
        ] {
            let header = json!({"alg": name, "kid": rsa.kid, "typ": "at+jwt"});
            let input = format!("{}.{}", b64(header.to_string()), b64(claims().to_string()));
            let key = jsonwebtoken::EncodingKey::from_secret(secret).expect("hmac key");
            let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key, alg).expect("hmac");
            assert_eq!(
                refusal(&v, &format!("{input}.{sig}")).await,
                AuthError::AlgorithmNotAllowed,
                "{name}"
            );
        }
    }
    // And HMAC cannot even be configured.
    assert!(
        JwtVerifier::builder(ISS)
            .audience(AUD)
            .algorithms([Algorithm::HS256])
            .keys(KeySource::Static(TRUSTED.jwks()))
            .build()
            .is_err()
    );
}

#[tokio::test]
async fn jwk_jku_x5u_x5c_headers_are_ignored_and_never_fetched() {
    let attacker = TestKey::p256("attacker-1");
    let attacker_jwks = jwks(&[&attacker]);
    // Where the attacker's headers point: counts every hit.
    let evil = counter(attacker_jwks.clone()).await;
    // The issuer's real JWKS endpoint: the verifier does fetch from here.
    let idp = counter(TRUSTED.jwks()).await;
    let v = JwtVerifier::builder(ISS)
        .audience(AUD)
        .require_typ("at+jwt")
        .keys(KeySource::JwksUrl(format!("{}/jwks", idp.base)))
        .refresh_interval(Duration::ZERO)
        .build()
        .expect("verifier");
    let x5c = base64::engine::general_purpose::STANDARD.encode(b"not really a certificate");
    let headers = |kid: &str| {
        json!({
            "alg": "ES256", "kid": kid, "typ": "at+jwt",
            "jku": format!("{}/jwks", evil.base),
            "x5u": format!("{}/cert.pem", evil.base),
            "jwk": attacker.jwk,
            "x5c": [x5c],
        })
    };
    // Signed by the attacker, pointing at the attacker's key every way JOSE
    // allows; with the attacker's kid, and with the trusted key's kid.
    let forged = attacker.sign(&headers("attacker-1"), &claims());
    assert_eq!(refusal(&v, &forged).await, AuthError::UnknownKey);
    let forged = attacker.sign(&headers("p256-1"), &claims());
    assert_eq!(refusal(&v, &forged).await, AuthError::InvalidSignature);
    // Each header alone, too.
    for (name, value) in [
        ("jku", json!(format!("{}/jwks", evil.base))),
        ("x5u", json!(format!("{}/x5u", evil.base))),
        ("jwk", attacker.jwk.clone()),
        ("x5c", json!([x5c])),
    ] {
        let header = with(attacker.header(), name, value);
        let forged = attacker.sign(&header, &claims());
        assert!(v.verify(&forged).await.is_err(), "{name}");
    }
    // A genuine token carrying the same headers verifies: they are ignored,
    // not a reason to trust or to fetch anything.
    let genuine = TRUSTED.es.sign(&headers("p256-1"), &claims());
    assert!(v.verify(&genuine).await.is_ok());
    assert_eq!(evil.hits.load(Ordering::SeqCst), 0, "attacker URL fetched");
    assert!(idp.hits.load(Ordering::SeqCst) >= 1, "the real JWKS was");
}

#[tokio::test]
async fn kid_injection_strings_are_only_compared_never_interpreted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, TRUSTED.jwks()).expect("write jwks");
    let marker = dir.path().join("pwned");
    let v = JwtVerifier::builder(ISS)
        .audience(AUD)
        .require_typ("at+jwt")
        .jwks_file(&path)
        .refresh_interval(Duration::ZERO)
        .build()
        .expect("verifier");
    let kids = [
        "../../dev/null".to_owned(),
        "../../../../../../etc/passwd".to_owned(),
        path.display().to_string(),
        "' OR 1=1 --".to_owned(),
        "\" OR \"\"=\"".to_owned(),
        format!("$(touch {})", marker.display()),
        format!("`touch {}`", marker.display()),
        format!("; touch {} #", marker.display()),
        "ed-1\u{0}".to_owned(),
        "ed-1 ".to_owned(),
        "%2e%2e%2f%2e%2e%2fdev%2fnull".to_owned(),
        "k".repeat(1000),
    ];
    let attacker = TestKey::ed25519("x");
    for kid in &kids {
        for signer in [&attacker, &TRUSTED.ed] {
            let header = with(signer.header(), "kid", json!(kid));
            let token = signer.sign(&header, &claims());
            assert_eq!(refusal(&v, &token).await, AuthError::UnknownKey, "{kid:?}");
        }
    }
    assert!(!marker.exists(), "a kid was run as a shell command");
    assert_eq!(
        std::fs::read_to_string(&path).expect("jwks still there"),
        TRUSTED.jwks()
    );
    let good = TRUSTED.ed.sign(&TRUSTED.ed.header(), &claims());
    assert!(v.verify(&good).await.is_ok());
}

#[tokio::test]
async fn ecdsa_signature_with_r_and_s_zero_is_refused() {
    // CVE-2022-21449 ("psychic signatures"): r = s = 0 verified anything in
    // some ECDSA implementations.
    let v = verifier();
    for (key, half) in [(&TRUSTED.es, 32), (&TRUSTED.es384, 48)] {
        let input = format!(
            "{}.{}",
            b64(key.header().to_string()),
            b64(claims().to_string())
        );
        let mut sigs = vec![vec![0u8; 2 * half]];
        let mut r_zero = vec![0u8; half];
        r_zero.extend(vec![1u8; half]);
        sigs.push(r_zero);
        let mut s_zero = vec![1u8; half];
        s_zero.extend(vec![0u8; half]);
        sigs.push(s_zero);
        // The DER form some libraries also accept: SEQUENCE { 0, 0 }.
        sigs.push(vec![0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00]);
        for sig in sigs {
            assert_eq!(
                refusal(&v, &format!("{input}.{}", b64(&sig))).await,
                AuthError::InvalidSignature,
                "{:?} {sig:?}",
                key.alg
            );
        }
        // The crypto layer underneath refuses it on its own as well.
        let decoding = jsonwebtoken::DecodingKey::from_ec_pem(key.public_pem.as_bytes())
            .expect("decoding key");
        let zero = b64(vec![0u8; 2 * half]);
        assert!(
            !jsonwebtoken::crypto::verify(&zero, input.as_bytes(), &decoding, key.alg)
                .unwrap_or(false)
        );
    }
}

#[tokio::test]
async fn keys_of_the_wrong_type_or_curve_are_not_used() {
    let v = verifier();
    let c = claims();
    // A P-384 signature presented as ES256 under the P-384 key's kid.
    let p384 = &TRUSTED.es384;
    let header = json!({"alg": "ES256", "kid": p384.kid, "typ": "at+jwt"});
    let input = format!("{}.{}", b64(header.to_string()), b64(c.to_string()));
    let sig = p384.sign_input(&input);
    assert_eq!(
        refusal(&v, &format!("{input}.{sig}")).await,
        AuthError::InvalidSignature,
        "96-byte signature for ES256"
    );
    // Header algorithm naming another key type than the kid's key.
    for (alg, kid) in [
        ("ES256", "p384-1"),
        ("ES384", "p256-1"),
        ("ES256", "ed-1"),
        ("EdDSA", "p256-1"),
        ("ES256", "rsa-1"),
        ("RS256", "p256-1"),
        ("PS256", "rsa-1"), // the JWK pins RS256
        ("RS256", "rsa-pss-1"),
    ] {
        let header = json!({"alg": alg, "kid": kid, "typ": "at+jwt"});
        let input = format!("{}.{}", b64(header.to_string()), b64(c.to_string()));
        let sig = match alg {
            "ES256" | "EdDSA" => b64([7u8; 64]),
            "ES384" => b64([7u8; 96]),
            _ => b64([7u8; 256]),
        };
        assert_eq!(
            refusal(&v, &format!("{input}.{sig}")).await,
            AuthError::UnknownKey,
            "{alg} with {kid}"
        );
    }
    // A JWKS entry whose `alg` does not fit its curve is dropped at load:
    // a P-384 key labelled ES256 is never used, even for a valid P-384 token.
    let mut mislabelled = TRUSTED.es384.jwk.clone();
    mislabelled["alg"] = json!("ES256");
    let v = JwtVerifier::builder(ISS)
        .audience(AUD)
        .keys(KeySource::Static(
            json!({"keys": [mislabelled]}).to_string(),
        ))
        .build()
        .expect("verifier");
    let token = p384.sign(&p384.header(), &c);
    assert!(v.verify(&token).await.is_err());
}

#[tokio::test]
async fn registered_claims_of_the_wrong_type_or_missing_are_refused() {
    let v = verifier();
    let t = &TRUSTED.ed;
    let far = (now() + 600).to_string();
    let cases = [
        (with(claims(), "exp", json!(far)), AuthError::Malformed),
        (with(claims(), "nbf", json!("0")), AuthError::Malformed),
        (with(claims(), "iat", json!("0")), AuthError::Malformed),
        (with(claims(), "iss", json!([ISS])), AuthError::Malformed),
        (
            with(claims(), "iss", json!({"iss": ISS})),
            AuthError::Malformed,
        ),
        (with(claims(), "aud", json!(1)), AuthError::Malformed),
        (with(claims(), "aud", json!([])), AuthError::Malformed),
        (
            with(claims(), "sub", json!(["skill-a"])),
            AuthError::Malformed,
        ),
        (without(claims(), "aud"), AuthError::MissingClaim("aud")),
        (without(claims(), "iss"), AuthError::MissingClaim("iss")),
        (without(claims(), "exp"), AuthError::MissingClaim("exp")),
        (
            with(claims(), "iss", json!("https://evil.test")),
            AuthError::WrongIssuer,
        ),
        (
            with(claims(), "aud", json!("other")),
            AuthError::WrongAudience,
        ),
        (
            with(claims(), "exp", json!(now() - 3600)),
            AuthError::Expired,
        ),
        (
            with(claims(), "nbf", json!(now() + 3600)),
            AuthError::NotYetValid,
        ),
    ];
    for (c, want) in cases {
        let token = t.sign(&t.header(), &c);
        assert_eq!(refusal(&v, &token).await, want, "{c}");
    }
    // Routing by issuer is just as strict.
    let set = IssuerSet::new().with(ISS, verifier());
    let token = t.sign(&t.header(), &with(claims(), "iss", json!([ISS])));
    assert_eq!(refusal(&set, &token).await, AuthError::Malformed);
}

#[tokio::test]
async fn an_id_token_is_not_an_access_token() {
    let v = verifier();
    let t = &TRUSTED.rs;
    // What an OIDC provider issues as an ID token: typ JWT, nonce, at_hash.
    let id_token_claims = with(
        with(claims(), "nonce", json!("n-0S6_WzA2Mj")),
        "at_hash",
        json!("77QmUPtjPfzWtF2AnpK9RQ"),
    );
    for header in [
        with(t.header(), "typ", json!("JWT")),
        with(t.header(), "typ", json!("application/jwt")),
        with(t.header(), "typ", json!("dpop+jwt")),
        without(t.header(), "typ"),
    ] {
        let token = t.sign(&header, &id_token_claims);
        assert_eq!(refusal(&v, &token).await, AuthError::WrongType, "{header}");
    }
}

#[tokio::test]
async fn unknown_critical_headers_are_refused() {
    let v = verifier();
    let t = &TRUSTED.es;
    for (crit, extra) in [
        (json!(["exp"]), json!({"exp": now() + 600})),
        (json!(["b64"]), json!({"b64": false})),
        (
            json!(["urn:example:unknown"]),
            json!({"urn:example:unknown": 1}),
        ),
        (json!([]), json!({})),
    ] {
        let mut header = with(t.header(), "crit", crit.clone());
        for (k, v) in extra.as_object().expect("object") {
            header[k] = v.clone();
        }
        let token = t.sign(&header, &claims());
        assert_eq!(
            refusal(&v, &token).await,
            AuthError::UnsupportedCritical,
            "{crit}"
        );
    }
}

/// A token signed by `key` whose claims carry a `pad` claim of `n` bytes.
fn padded(key: &TestKey, n: usize) -> String {
    key.sign(&key.header(), &with(claims(), "pad", json!("x".repeat(n))))
}

#[tokio::test]
async fn tokens_over_16_kib_are_refused_before_any_key_lookup() {
    let idp = counter(TRUSTED.jwks()).await;
    let v = JwtVerifier::builder(ISS)
        .audience(AUD)
        .keys(KeySource::JwksUrl(format!("{}/jwks", idp.base)))
        .build()
        .expect("verifier");
    let key = &TRUSTED.ed;
    // The largest token within the limit verifies…
    let base = padded(key, 0).len();
    let mut n = (MAX_TOKEN_BYTES - base) * 3 / 4;
    while padded(key, n + 1).len() <= MAX_TOKEN_BYTES {
        n += 1;
    }
    while padded(key, n).len() > MAX_TOKEN_BYTES {
        n -= 1;
    }
    let at_limit = padded(key, n);
    assert!(at_limit.len() <= MAX_TOKEN_BYTES && at_limit.len() > MAX_TOKEN_BYTES - 4);
    let over = (n + 1..)
        .map(|m| padded(key, m))
        .find(|t| t.len() > MAX_TOKEN_BYTES)
        .expect("a longer token");
    assert_eq!(
        refusal(&v, &over).await,
        AuthError::TooLarge {
            limit: MAX_TOKEN_BYTES
        }
    );
    assert_eq!(
        idp.hits.load(Ordering::SeqCst),
        0,
        "refused before any fetch"
    );
    assert!(v.verify(&at_limit).await.is_ok());
    // Far over the limit, and not even a JWT: the same.
    let huge = "a".repeat(1 << 20);
    assert!(matches!(
        refusal(&v, &huge).await,
        AuthError::TooLarge { .. }
    ));
}

#[tokio::test]
async fn duplicate_json_members_are_refused() {
    // RFC 7515 §5.2 / RFC 8725 §3.1: a parser that keeps the first and one
    // that keeps the last would read two different tokens. All of these are
    // validly signed by the trusted key.
    let v = verifier();
    let t = &TRUSTED.ed;
    let exp = now() + 600;
    let good_header = r#"{"alg":"EdDSA","kid":"ed-1","typ":"at+jwt"}"#;
    let good_claims = format!(r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"skill-a","exp":{exp}}}"#);
    assert!(
        v.verify(&t.sign_raw(good_header, &good_claims))
            .await
            .is_ok(),
        "the raw forms are right"
    );
    let headers = [
        r#"{"alg":"none","alg":"EdDSA","kid":"ed-1","typ":"at+jwt"}"#.to_owned(),
        r#"{"alg":"EdDSA","alg":"EdDSA","kid":"ed-1","typ":"at+jwt"}"#.to_owned(),
        r#"{"alg":"EdDSA","kid":"other","kid":"ed-1","typ":"at+jwt"}"#.to_owned(),
        r#"{"alg":"EdDSA","kid":"ed-1","typ":"JWT","typ":"at+jwt"}"#.to_owned(),
        r#"{"alg":"EdDSA","kid":"ed-1","typ":"at+jwt","crit":["x"],"crit":[]}"#.to_owned(),
        r#"{"alg":"EdDSA","kid":"ed-1","typ":"at+jwt","\u0061lg":"EdDSA"}"#.to_owned(),
    ];
    for h in &headers {
        assert_eq!(
            refusal(&v, &t.sign_raw(h, &good_claims)).await,
            AuthError::Malformed,
            "{h}"
        );
    }
    let claim_sets = [
        format!(
            r#"{{"iss":"https://evil.test","iss":"{ISS}","aud":"{AUD}","sub":"a","exp":{exp}}}"#
        ),
        format!(
            r#"{{"iss":"{ISS}","iss":"https://evil.test","aud":"{AUD}","sub":"a","exp":{exp}}}"#
        ),
        format!(r#"{{"iss":"{ISS}","aud":"other","aud":"{AUD}","sub":"a","exp":{exp}}}"#),
        format!(r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"a","sub":"admin","exp":{exp}}}"#),
        // Claims the principal is built from, which jsonwebtoken's own
        // validation never looks at: groups drive authorization.
        format!(
            r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"a","exp":{exp},"groups":["ci"],"groups":["admin"]}}"#
        ),
        format!(
            r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"a","exp":{exp},"client_id":"a","client_id":"b"}}"#
        ),
        format!(r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"a","exp":1,"exp":{exp}}}"#),
        format!(
            r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"a","exp":{exp},"groups":{{"x":1,"x":2}}}}"#
        ),
        format!(
            r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"a","exp":{exp},"realm":[{{"r":1,"r":2}}]}}"#
        ),
    ];
    for c in &claim_sets {
        assert_eq!(
            refusal(&v, &t.sign_raw(good_header, c)).await,
            AuthError::Malformed,
            "{c}"
        );
    }
    // Routing by issuer refuses the ambiguous `iss` too.
    let set = IssuerSet::new().with(ISS, verifier());
    assert_eq!(
        refusal(&set, &t.sign_raw(good_header, &claim_sets[0])).await,
        AuthError::Malformed
    );
}

/// base64url text whose length is not a multiple of 4, so that padding
/// would be "valid" padding, and which contains `-` or `_`.
fn awkward_claims() -> String {
    for i in 0..10_000 {
        let c = with(claims(), "n", json!(format!("{i}~~~???>>>")));
        let enc = b64(c.to_string());
        if !enc.len().is_multiple_of(4) && (enc.contains('-') || enc.contains('_')) {
            return enc;
        }
    }
    unreachable!("some nonce gives an awkward encoding")
}

/// `enc` with the unused low bits of its last character set.
fn trailing_bits(enc: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    assert_ne!(enc.len() % 4, 0);
    let last = *enc.as_bytes().last().expect("non-empty");
    let idx = ALPHABET.iter().position(|c| *c == last).expect("base64url");
    let flipped = ALPHABET[idx | 1] as char;
    assert_ne!(
        flipped as u8, last,
        "the last bit was already unused-and-zero"
    );
    format!("{}{flipped}", &enc[..enc.len() - 1])
}

#[tokio::test]
async fn non_canonical_base64url_is_refused() {
    let v = verifier();
    let t = &TRUSTED.ed;
    let payload = awkward_claims();
    let header = b64(t.header().to_string());
    assert!(
        v.verify(&t.sign_segments(&header, &payload)).await.is_ok(),
        "canonical form verifies"
    );
    let pad = "=".repeat((4 - payload.len() % 4) % 4);
    let std_alphabet = payload.replace('-', "+").replace('_', "/");
    let mid = payload.len() / 2;
    let variants = [
        ("padding", format!("{payload}{pad}")),
        ("standard alphabet", std_alphabet),
        ("trailing bits", trailing_bits(&payload)),
        ("space", format!("{} {}", &payload[..mid], &payload[mid..])),
        (
            "newline",
            format!("{}\n{}", &payload[..mid], &payload[mid..]),
        ),
        ("tab", format!("{payload}\t")),
        ("percent-encoded", format!("{payload}%3D")),
    ];
    for (what, p) in &variants {
        // Validly signed over exactly the non-canonical text.
        let token = t.sign_segments(&header, p);
        assert_eq!(refusal(&v, &token).await, AuthError::Malformed, "{what}");
    }
    // The header and the signature segment get the same treatment.
    let good = t.sign_segments(&header, &payload);
    let sig = good.rsplit('.').next().expect("signature");
    let sig_variants = [format!("{sig}=="), trailing_bits(sig), format!(" {sig}")];
    for s in sig_variants {
        let token = format!("{header}.{payload}.{s}");
        assert_eq!(refusal(&v, &token).await, AuthError::Malformed, "{s}");
    }
    let padded_header = format!("{header}{}", "=".repeat((4 - header.len() % 4) % 4));
    if padded_header != header {
        let token = t.sign_segments(&padded_header, &payload);
        assert_eq!(refusal(&v, &token).await, AuthError::Malformed);
    }
    // Extra segments, empty segments, a JWE-shaped token.
    for token in [
        format!("{good}.x"),
        format!(".{payload}.{sig}"),
        format!("{header}..{sig}"),
        format!("{header}.{payload}.{sig}.{sig}.{sig}"),
    ] {
        assert_eq!(refusal(&v, &token).await, AuthError::Malformed);
    }
}

mod http {
    //! A few of the attacks through the whole HTTP stack: 401
    //! `authentication_error`, `x-should-retry: false`, nothing forwarded.

    use super::*;
    use skillgate::audit::SqliteStore;
    use skillgate::gateway::{Gateway, serve};
    use skillgate::upstream::{Credential, StaticCredential, Upstream};
    use support::stand_in::{STAND_IN_API_KEY, StandIn};

    struct Stack {
        base: String,
        upstream: StandIn,
        _stop: tokio::sync::oneshot::Sender<()>,
    }

    async fn stack() -> Stack {
        let upstream = StandIn::start().await;
        let gateway = Gateway::builder()
            .verifier(verifier())
            .audit_store(SqliteStore::in_memory().await.expect("sqlite"))
            .build()
            .expect("gateway");
        let inner = Upstream::builder(upstream.base_url())
            .credential(StaticCredential::new(Credential::api_key(STAND_IN_API_KEY)))
            .build()
            .expect("upstream");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(
            listener,
            gateway.service(inner),
            async move {
                let _ = rx.await;
            },
            Duration::from_secs(5),
        ));
        Stack {
            base,
            upstream,
            _stop: tx,
        }
    }

    async fn call(s: &Stack, token: &str) -> (u16, String, Value) {
        let res = reqwest::Client::new()
            .post(format!("{}/v1/messages", s.base))
            .bearer_auth(token)
            .header("anthropic-version", "2023-06-01")
            .json(&json!({"model": "claude-sonnet-4-5", "max_tokens": 16,
                          "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .expect("send");
        let status = res.status().as_u16();
        let retry = res
            .headers()
            .get("x-should-retry")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = res.json().await.expect("json body");
        (status, retry, body)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn attacks_get_401_through_the_gateway() {
        let s = stack().await;
        let t = &TRUSTED.ed;
        let (status, _, body) = call(&s, &t.sign(&t.header(), &claims())).await;
        assert_eq!(status, 200, "{body}");

        let evil = counter(String::new()).await;
        let attacker = TestKey::ed25519("ed-1");
        let exp = now() + 600;
        let dup_iss = format!(
            r#"{{"iss":"https://evil.test","iss":"{ISS}","aud":"{AUD}","sub":"a","exp":{exp}}}"#
        );
        let payload = awkward_claims();
        let header = b64(t.header().to_string());
        let none_input = format!(
            "{}.{}",
            b64(json!({"alg": "none", "typ": "at+jwt"}).to_string()),
            b64(claims().to_string())
        );
        let attacks = [
            ("alg none", format!("{none_input}.")),
            (
                "alg nOnE",
                format!(
                    "{}.{}.AAAA",
                    b64(r#"{"alg":"nOnE","typ":"at+jwt"}"#),
                    b64(claims().to_string())
                ),
            ),
            (
                "jku",
                attacker.sign(
                    &with(
                        attacker.header(),
                        "jku",
                        json!(format!("{}/jwks", evil.base)),
                    ),
                    &claims(),
                ),
            ),
            (
                "embedded jwk",
                attacker.sign(
                    &with(attacker.header(), "jwk", attacker.jwk.clone()),
                    &claims(),
                ),
            ),
            (
                "duplicate iss",
                t.sign_raw(&t.header().to_string(), &dup_iss),
            ),
            (
                "padded base64url",
                t.sign_segments(
                    &header,
                    &format!("{payload}{}", "=".repeat((4 - payload.len() % 4) % 4)),
                ),
            ),
            ("over 16 KiB", padded(t, MAX_TOKEN_BYTES)),
            (
                "typ JWT",
                t.sign(&with(t.header(), "typ", json!("JWT")), &claims()),
            ),
        ];
        for (what, token) in &attacks {
            let (status, retry, body) = call(&s, token).await;
            assert_eq!(status, 401, "{what}: {body}");
            assert_eq!(retry, "false", "{what}");
            assert_eq!(body["error"]["type"], "authentication_error", "{what}");
            let text = body.to_string();
            assert!(!text.contains(token.as_str()), "{what}: token echoed");
        }
        assert_eq!(evil.hits.load(Ordering::SeqCst), 0, "jku was fetched");
        assert_eq!(
            s.upstream.received().len(),
            1,
            "only the good call was forwarded"
        );
    }
}
