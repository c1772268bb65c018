//! [`JwtVerifier`]: OIDC / OAuth 2.0 JWT access-token verification
//! (RFC 7519, RFC 8725 best practices, RFC 9068 profile), built on `jsonwebtoken`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation, decode};
use serde::de::IgnoredAny;
use serde_json::{Map, Value};

use super::jwks::{KeySource, KeyStore, KeyStoreOptions};
use super::mapping::{ClaimMapping, Conditions, GroupRule, MappingError, TypRule};
use super::presets::Preset;
use super::strict;
use super::{AuthError, Principal, TokenVerifier};

/// Largest token accepted, in bytes (16 KiB). Longer ones are refused before parsing.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The asymmetric algorithms skillgate verifies (RFC 7518 §3.1, RFC 8037).
/// HMAC algorithms and `none` are never accepted.
pub const SUPPORTED_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// A configuration mistake found by [`JwtVerifierBuilder::build`].
///
/// ```
/// use skillgate::identity::{JwtVerifier, KeySource};
/// let err = JwtVerifier::builder("https://idp.example.com")
///     .keys(KeySource::Discovery)
///     .build()
///     .unwrap_err();
/// assert!(err.to_string().contains("audience"));
/// ```
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// No audience configured: every token would be accepted for any audience.
    #[error("at least one audience is required (RFC 7519 §4.1.3)")]
    NoAudience,
    /// The issuer is empty.
    #[error("issuer is required")]
    NoIssuer,
    /// No key source configured.
    #[error("no key source: set a JWKS file, a JWKS URL, or discovery")]
    NoKeySource,
    /// An algorithm that is not asymmetric, or empty allow-list.
    #[error("algorithm allow-list must be non-empty and asymmetric only: {0}")]
    BadAlgorithms(String),
    /// The HTTPS client could not be created (no root certificates).
    #[error("HTTP client: {0}")]
    Client(String),
    /// A claim path in the mapping is empty or has an empty segment.
    #[error("claim mapping: {0}")]
    BadMapping(MappingError),
    /// An issuer alias is empty or repeats the issuer.
    #[error("issuer alias {0:?} is empty or repeats the issuer")]
    BadAlias(String),
    /// A public issuer ([`Preset::is_public`]) without any `require` condition
    /// would accept tokens anyone can obtain.
    #[error(
        "preset {0} accepts tokens anyone can obtain for any audience: add a `require` condition \
         (for example repository_owner = \"acme\", or email = \"*@my-project.iam.gserviceaccount.com\")"
    )]
    UnrestrictedPublicIssuer(Preset),
}

/// Verifies JWTs from one issuer.
///
/// Checks, in order: size (≤ [`MAX_TOKEN_BYTES`]), compact form with every
/// segment in canonical base64url, header and payload JSON objects without
/// duplicate member names (RFC 7515 §5.2, RFC 8725 §3.1), `alg` in the
/// allow-list (never `none` or HMAC), no `crit`, `typ` where required, the
/// types of the registered claims (RFC 7519 §4.1), the signature's shape
/// (ECDSA `r` and `s` non-zero), a key from the issuer's JWKS that matches
/// `kid` and `alg` exactly (key type and curve), the signature, then `iss`
/// (exact), `aud` (any configured), `exp` (required) and `nbf` with leeway.
/// `jku`, `x5u`, `jwk` and `x5c` headers are ignored and never fetched
/// (RFC 8725 §3.10). docs/identity.md (hardening) lists the attacks these
/// checks refuse.
///
/// ```
/// use std::time::Duration;
/// use skillgate::identity::{JwtVerifier, KeySource};
/// let verifier = JwtVerifier::builder("https://idp.example.com")
///     .audience("skillgate")
///     .keys(KeySource::Discovery)
///     .require_typ("at+jwt")
///     .groups_claim("groups")
///     .leeway(Duration::from_secs(30))
///     .build()
///     .unwrap();
/// assert_eq!(verifier.issuer(), "https://idp.example.com");
/// ```
#[derive(Clone)]
pub struct JwtVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: String,
    /// `issuer` first, then its aliases: every accepted `iss`.
    accepted_issuers: Vec<String>,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway: u64,
    typ: TypRule,
    mapping: ClaimMapping,
    keys: KeyStore,
}

/// Builder for [`JwtVerifier`]; see its docs.
#[derive(Debug, Clone)]
pub struct JwtVerifierBuilder {
    issuer: String,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway: Duration,
    typ: TypRule,
    mapping: ClaimMapping,
    aliases: Vec<String>,
    preset: Option<Preset>,
    source: Option<KeySource>,
    options: KeyStoreOptions,
}

impl JwtVerifier {
    /// Starts a builder for tokens whose `iss` is exactly `issuer`.
    pub fn builder(issuer: impl Into<String>) -> JwtVerifierBuilder {
        JwtVerifierBuilder {
            issuer: issuer.into(),
            audiences: Vec::new(),
            algorithms: SUPPORTED_ALGORITHMS.to_vec(),
            leeway: Duration::from_secs(60),
            typ: TypRule::Any,
            mapping: ClaimMapping::default(),
            aliases: Vec::new(),
            preset: None,
            source: None,
            options: KeyStoreOptions::default(),
        }
    }

    /// The issuer this verifier accepts (and puts in every principal).
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// Every accepted `iss` value: the issuer, then its aliases.
    pub fn accepted_issuers(&self) -> impl Iterator<Item = &str> {
        self.inner.accepted_issuers.iter().map(String::as_str)
    }

    /// The claim mapping in use.
    pub fn mapping(&self) -> &ClaimMapping {
        &self.inner.mapping
    }

    /// Loads the signing keys now (discovery, JWKS fetch or file read), so a
    /// misconfiguration shows at startup rather than at the first request.
    ///
    /// # Errors
    /// [`AuthError::KeysUnavailable`] if no usable key could be loaded.
    pub async fn preload(&self) -> Result<(), AuthError> {
        self.inner.keys.keys(None).await.map(|_| ())
    }
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.inner.issuer)
            .field("audiences", &self.inner.audiences)
            .field("algorithms", &self.inner.algorithms)
            .finish_non_exhaustive()
    }
}

impl JwtVerifierBuilder {
    /// Adds an accepted audience (`aud`, RFC 7519 §4.1.3). At least one is required.
    pub fn audience(mut self, aud: impl Into<String>) -> Self {
        self.audiences.push(aud.into());
        self
    }

    /// Replaces the algorithm allow-list (default: every asymmetric algorithm
    /// in [`SUPPORTED_ALGORITHMS`]).
    pub fn algorithms(mut self, algs: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algs.into_iter().collect();
        self
    }

    /// Clock-skew leeway for `exp` and `nbf` (default 60 s; whole seconds).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Requires the `typ` header, compared case-insensitively with an optional
    /// `application/` prefix (RFC 9068 §4 uses `at+jwt`). Same as
    /// `typ_rule(TypRule::Require(vec![typ]))`.
    pub fn require_typ(mut self, typ: impl Into<String>) -> Self {
        self.typ = TypRule::Require(vec![typ.into()]);
        self
    }

    /// Replaces the `typ` header rule (default [`TypRule::Any`]).
    pub fn typ_rule(mut self, rule: TypRule) -> Self {
        self.typ = rule;
        self
    }

    /// Also accepts tokens whose `iss` is `alias` (another spelling of the
    /// same issuer, e.g. Google's `accounts.google.com`). The principal's
    /// issuer is still the configured one.
    pub fn issuer_alias(mut self, alias: impl Into<String>) -> Self {
        let alias = alias.into();
        if !self.aliases.contains(&alias) {
            self.aliases.push(alias);
        }
        self
    }

    /// Applies a [`Preset`]'s defaults: algorithms, `typ` rule, issuer
    /// aliases, and the whole claim mapping (replacing earlier mapping
    /// calls). Call it first, then override field by field; the key source
    /// becomes the preset's default only if none is set yet.
    pub fn preset(mut self, preset: Preset) -> Self {
        self.algorithms = preset.algorithms();
        self.typ = preset.typ_rule();
        self.mapping = preset.mapping();
        for a in preset.issuer_aliases() {
            self = self.issuer_alias(*a);
        }
        if self.source.is_none() {
            self.source = preset.default_keys(&self.issuer);
        }
        self.preset = Some(preset);
        self
    }

    /// Replaces the whole claim mapping (see [`ClaimMapping`]).
    pub fn mapping(mut self, mapping: ClaimMapping) -> Self {
        self.mapping = mapping;
        self
    }

    /// The dot-separated claim path that holds groups (default `groups`;
    /// Entra ID uses `roles`, Keycloak `realm_access.roles`). Replaces the
    /// list set by [`groups_claims`](Self::groups_claims).
    pub fn groups_claim(mut self, path: impl Into<String>) -> Self {
        self.mapping.groups = vec![path.into()];
        self
    }

    /// Every claim path that holds groups; their values are concatenated.
    pub fn groups_claims<I: IntoIterator<Item = S>, S: Into<String>>(mut self, paths: I) -> Self {
        self.mapping.groups = paths.into_iter().map(Into::into).collect();
        self
    }

    /// The claim that names the subject (default `sub`).
    pub fn subject_claim(mut self, claim: impl Into<String>) -> Self {
        self.mapping.subject = claim.into();
        self
    }

    /// The claim paths that hold scopes (default `scope`, `scp`).
    pub fn scopes_claims<I: IntoIterator<Item = S>, S: Into<String>>(mut self, paths: I) -> Self {
        self.mapping.scopes = paths.into_iter().map(Into::into).collect();
        self
    }

    /// The claim paths naming the client, first present wins (default
    /// `client_id`, `azp`, `appid`, `cid`).
    pub fn client_id_claims<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        paths: I,
    ) -> Self {
        self.mapping.client_id = paths.into_iter().map(Into::into).collect();
        self
    }

    /// Adds (or replaces) the principal attribute `name`, read from claim `path`.
    pub fn attribute(mut self, name: impl Into<String>, path: impl Into<String>) -> Self {
        self.mapping.attributes.insert(name.into(), path.into());
        self
    }

    /// Adds a group rule (applied after the earlier ones).
    pub fn group_rule(mut self, rule: GroupRule) -> Self {
        self.mapping.rules.push(rule);
        self
    }

    /// Adds conditions every token must meet, replacing earlier ones on the
    /// same claim path. Tokens that fail get [`AuthError::ClaimsNotAccepted`].
    pub fn require(mut self, conditions: &Conditions) -> Self {
        self.mapping.require = std::mem::take(&mut self.mapping.require).merge(conditions);
        self
    }

    /// Where the signing keys come from.
    pub fn keys(mut self, source: KeySource) -> Self {
        self.source = Some(source);
        self
    }

    /// Keys from a JWKS file (re-read when it changes).
    pub fn jwks_file(self, path: impl Into<PathBuf>) -> Self {
        self.keys(KeySource::JwksFile(path.into()))
    }

    /// Minimum time between refreshes caused by an unknown `kid` (default 30 s).
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.options.min_refresh_interval = interval;
        self
    }

    /// Age after which fetched keys are refreshed on next use (default 1 h).
    /// If the refresh fails the old keys stay in use.
    pub fn max_key_age(mut self, age: Duration) -> Self {
        self.options.max_age = age;
        self
    }

    /// How long fetched keys keep being used while the IdP cannot be reached
    /// (default 24 h). Past that, tokens are refused with
    /// [`AuthError::KeysUnavailable`] until a refresh succeeds (fail closed).
    /// Does not apply to [`KeySource::Static`].
    pub fn max_stale(mut self, age: Duration) -> Self {
        self.options.max_stale = age;
        self
    }

    /// Validates the configuration and builds the verifier. No I/O happens
    /// here; see [`JwtVerifier::preload`].
    ///
    /// # Errors
    /// A [`ConfigError`] naming what is missing or unsafe.
    pub fn build(self) -> Result<JwtVerifier, ConfigError> {
        if self.issuer.is_empty() {
            return Err(ConfigError::NoIssuer);
        }
        if self.audiences.is_empty() {
            return Err(ConfigError::NoAudience);
        }
        if self.algorithms.is_empty() {
            return Err(ConfigError::BadAlgorithms("empty".into()));
        }
        if let Some(bad) = self
            .algorithms
            .iter()
            .find(|a| !SUPPORTED_ALGORITHMS.contains(a))
        {
            return Err(ConfigError::BadAlgorithms(format!("{bad:?}")));
        }
        self.mapping.validate().map_err(ConfigError::BadMapping)?;
        if let Some(a) = self
            .aliases
            .iter()
            .find(|a| a.is_empty() || **a == self.issuer)
        {
            return Err(ConfigError::BadAlias(a.clone()));
        }
        if let Some(p) = self.preset
            && p.is_public()
            && self.mapping.require.is_empty()
        {
            return Err(ConfigError::UnrestrictedPublicIssuer(p));
        }
        let source = self.source.ok_or(ConfigError::NoKeySource)?;
        let client = match source {
            KeySource::Discovery | KeySource::JwksUrl(_) => Some(
                crate::http_client::https_client()
                    .map_err(|e| ConfigError::Client(e.to_string()))?,
            ),
            _ => None,
        };
        let keys = KeyStore::new(self.issuer.clone(), source, self.options, client);
        let mut accepted_issuers = vec![self.issuer.clone()];
        accepted_issuers.extend(self.aliases);
        Ok(JwtVerifier {
            inner: Arc::new(Inner {
                issuer: self.issuer,
                accepted_issuers,
                audiences: self.audiences,
                algorithms: self.algorithms,
                leeway: self.leeway.as_secs(),
                typ: self.typ,
                mapping: self.mapping,
                keys,
            }),
        })
    }
}

pub(crate) fn typ_matches(got: Option<&str>, want: &str) -> bool {
    let norm = |s: &str| {
        let s = s.to_ascii_lowercase();
        s.strip_prefix("application/")
            .map(str::to_owned)
            .unwrap_or(s)
    };
    got.is_some_and(|g| norm(g) == norm(want))
}

/// Reads `iss` from an unverified token, for routing to the right verifier
/// only. The payload gets the same strict parse as in verification (canonical
/// base64url, no duplicate members), so routing and verification cannot read
/// two different issuers out of one token.
pub(crate) fn unverified_issuer(token: &str) -> Result<String, AuthError> {
    let claims = strict::parse_claims(token)?;
    match claims.get("iss") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(AuthError::Malformed),
        None => Err(AuthError::MissingClaim("iss")),
    }
}

fn map_jwt_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::InvalidSignature | ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidRsaKey(_) => {
            AuthError::InvalidSignature
        }
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::MissingRequiredClaim(c) => match c.as_str() {
            "exp" => AuthError::MissingClaim("exp"),
            "iss" => AuthError::MissingClaim("iss"),
            "aud" => AuthError::MissingClaim("aud"),
            "sub" => AuthError::MissingClaim("sub"),
            _ => AuthError::Malformed,
        },
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => AuthError::AlgorithmNotAllowed,
        _ => AuthError::Malformed,
    }
}

impl Inner {
    async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        // Strict pre-parse: size, canonical base64url, no duplicate JSON
        // members, header and claim types (see `strict`). Nothing below sees
        // a token that two parsers could read differently.
        let compact = strict::parse(token)?;
        let header = strict::check_header(&compact.header, &self.algorithms, None)?;
        if !self.typ.allows(header.typ) {
            return Err(AuthError::WrongType);
        }
        strict::check_signature_shape(header.alg, &compact.signature)?;
        strict::check_claims(&compact.claims)?;
        // Only the configured key set is consulted: `jku`, `jwk`, `x5u` and
        // `x5c` in the header are never read, let alone fetched.
        let keys = self.keys.keys(header.kid).await?;
        let candidates: Vec<_> = keys
            .iter()
            .filter(|k| match (header.kid, &k.kid) {
                (Some(want), Some(have)) => want == have,
                (Some(_), None) => false,
                (None, _) => true,
            })
            .filter(|k| k.kind.fits(header.alg) && k.alg.is_none_or(|a| a == header.alg))
            .collect();
        if candidates.is_empty() {
            return Err(AuthError::UnknownKey);
        }
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.set_issuer(&self.accepted_issuers);
        validation.set_audience(&self.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        let mut last = AuthError::InvalidSignature;
        for key in candidates {
            // jsonwebtoken checks the signature over the bytes as sent and
            // validates iss/aud/exp/nbf; the claims are the strict parse's.
            match decode::<IgnoredAny>(token, &key.key, &validation) {
                Ok(_) => return self.principal(compact.claims),
                Err(e) => {
                    last = map_jwt_error(e.kind());
                    if last != AuthError::InvalidSignature {
                        break;
                    }
                }
            }
        }
        Err(last)
    }

    /// Maps verified claims to the principal (see [`ClaimMapping`]).
    fn principal(&self, claims: Map<String, Value>) -> Result<Principal, AuthError> {
        self.mapping.principal(&self.issuer, claims)
    }
}

#[async_trait]
impl TokenVerifier for JwtVerifier {
    async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.inner.verify(token).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typ_comparison() {
        assert!(typ_matches(Some("at+jwt"), "at+jwt"));
        assert!(typ_matches(Some("application/AT+JWT"), "at+jwt"));
        assert!(!typ_matches(Some("JWT"), "at+jwt"));
        assert!(!typ_matches(None, "at+jwt"));
    }

    #[test]
    fn build_refuses_unsafe_configs() {
        let b = || JwtVerifier::builder("https://i").keys(KeySource::Discovery);
        assert_eq!(b().build().err(), Some(ConfigError::NoAudience));
        assert!(matches!(
            b().audience("a")
                .algorithms([Algorithm::HS256])
                .build()
                .err(),
            Some(ConfigError::BadAlgorithms(_))
        ));
        assert!(matches!(
            b().audience("a").algorithms([]).build().err(),
            Some(ConfigError::BadAlgorithms(_))
        ));
        assert_eq!(
            JwtVerifier::builder("https://i")
                .audience("a")
                .build()
                .err(),
            Some(ConfigError::NoKeySource)
        );
    }

    #[test]
    fn unverified_issuer_reads_payload_only() {
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let p = URL_SAFE_NO_PAD.encode(br#"{"iss":"https://a"}"#);
        assert_eq!(unverified_issuer(&format!("x.{p}.y")).unwrap(), "https://a");
        let p = URL_SAFE_NO_PAD.encode(br#"{"iss":["https://a"]}"#);
        assert_eq!(
            unverified_issuer(&format!("x.{p}.y")),
            Err(AuthError::Malformed)
        );
        assert_eq!(unverified_issuer("x.y"), Err(AuthError::Malformed));
    }
}
