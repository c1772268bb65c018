//! The [`TokenVerifier`] plug-in trait and its error type.

use std::sync::Arc;

use async_trait::async_trait;

use super::Principal;

/// Why a token was refused. For logs and tests only: the caller always gets
/// the same generic 401, so these details never help an attacker.
///
/// No variant carries any part of the token.
///
/// ```
/// use skillgate::identity::AuthError;
/// assert_eq!(AuthError::Expired.to_string(), "token expired");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No `Authorization: Bearer` or `x-api-key` credential.
    #[error("no credential presented")]
    MissingToken,
    /// Both `Authorization` and `x-api-key` were sent with different values.
    #[error("conflicting credentials presented")]
    AmbiguousToken,
    /// Longer than the verifier accepts (bytes).
    #[error("token longer than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Not a compact JWS, bad base64url, bad JSON, or a claim of the wrong type.
    #[error("malformed token")]
    Malformed,
    /// `alg` not in the verifier's allow-list (includes `none` and HMAC).
    #[error("algorithm not allowed")]
    AlgorithmNotAllowed,
    /// A `crit` header names an extension this verifier does not implement (RFC 7515 §4.1.11).
    #[error("unsupported critical header")]
    UnsupportedCritical,
    /// The `typ` header is not the required one (RFC 8725 §3.11, RFC 9068 §4).
    #[error("token type not accepted")]
    WrongType,
    /// No key in the issuer's JWKS matches `kid` and `alg`.
    #[error("no matching signing key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("invalid signature")]
    InvalidSignature,
    /// `exp` is in the past (beyond leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` is not a configured issuer.
    #[error("issuer not accepted")]
    WrongIssuer,
    /// `aud` does not contain a configured audience.
    #[error("audience not accepted")]
    WrongAudience,
    /// A required claim is absent.
    #[error("required claim missing: {0}")]
    MissingClaim(&'static str),
    /// The issuer's keys could not be loaded (IdP unreachable, bad JWKS).
    #[error("signing keys unavailable")]
    KeysUnavailable,
    /// The token was revoked.
    #[error("token revoked")]
    Revoked,
    /// The token's claims do not meet the issuer's `require` conditions.
    #[error("token claims not accepted by this issuer")]
    ClaimsNotAccepted,
    /// Whether the token is revoked could not be determined (revocation
    /// store unreachable); refused, failing closed.
    #[error("revocation status unavailable")]
    RevocationUnavailable,
}

/// Verifies a caller's credential and yields its [`Principal`].
///
/// Implement it to plug in another identity system (token introspection,
/// mTLS-bound tokens…). Implementations must fail closed: any doubt is an
/// `Err`. The token is a secret: never log it or put it in an error.
///
/// ```
/// use async_trait::async_trait;
/// use skillgate::identity::{AuthError, Principal, TokenVerifier};
///
/// struct Allowlist;
///
/// #[async_trait]
/// impl TokenVerifier for Allowlist {
///     async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
///         match token {
///             "let-me-in" => Ok(Principal::new("urn:example", "tester")),
///             _ => Err(AuthError::InvalidSignature),
///         }
///     }
/// }
/// ```
#[async_trait]
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a skillgate `TokenVerifier`",
    note = "implement `async fn verify(&self, token: &str) -> Result<Principal, AuthError>` with #[async_trait]"
)]
pub trait TokenVerifier: Send + Sync + 'static {
    /// Verifies `token` (the bearer credential, without scheme) and returns
    /// the principal it proves.
    async fn verify(&self, token: &str) -> Result<Principal, AuthError>;
}

#[async_trait]
impl<T: TokenVerifier + ?Sized> TokenVerifier for Arc<T> {
    async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        (**self).verify(token).await
    }
}

/// Several issuers behind one verifier: picks the verifier registered for the
/// token's (unverified) `iss` claim, then lets it verify everything.
///
/// Reading `iss` before verification is only routing: the chosen verifier
/// checks `iss` again against its own configuration.
///
/// ```
/// use skillgate::identity::{IssuerSet, dev::DevIssuer};
/// let dev = DevIssuer::ephemeral();
/// let set = IssuerSet::new().with(dev.issuer(), dev.verifier("skillgate"));
/// assert_eq!(set.issuers().count(), 1);
/// ```
#[derive(Default, Clone)]
pub struct IssuerSet {
    verifiers: Vec<(String, Arc<dyn TokenVerifier>)>,
}

impl IssuerSet {
    /// An empty set (refuses every token).
    pub fn new() -> Self {
        IssuerSet::default()
    }

    /// Adds the verifier for tokens whose `iss` is `issuer`.
    pub fn with(mut self, issuer: impl Into<String>, verifier: impl TokenVerifier) -> Self {
        self.verifiers.push((issuer.into(), Arc::new(verifier)));
        self
    }

    /// Adds a JWT verifier under each `iss` it accepts (its issuer and aliases).
    pub fn with_jwt(mut self, verifier: super::JwtVerifier) -> Self {
        let issuers: Vec<String> = verifier.accepted_issuers().map(str::to_owned).collect();
        for iss in issuers {
            self = self.with(iss, verifier.clone());
        }
        self
    }

    /// The configured issuer identifiers (aliases included).
    pub fn issuers(&self) -> impl Iterator<Item = &str> {
        self.verifiers.iter().map(|(i, _)| i.as_str())
    }
}

#[async_trait]
impl TokenVerifier for IssuerSet {
    async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let iss = super::jwt::unverified_issuer(token)?;
        match self.verifiers.iter().find(|(i, _)| *i == iss) {
            Some((_, v)) => v.verify(token).await,
            None => Err(AuthError::WrongIssuer),
        }
    }
}
