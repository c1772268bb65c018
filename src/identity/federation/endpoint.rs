//! [`TokenEndpoint`]: the RFC 7523 jwt-bearer exchange itself, independent
//! of HTTP — parse ([`TokenRequest`]), verify, match a rule, mint.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use secrecy::{ExposeSecret, SecretString};
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use super::issuer::{GatewayTokenIssuer, IssuedToken, TokenGrant, token_str};
use super::keys::now;
use super::rule::FederationRule;
use crate::body::Body;
use crate::identity::{AuthError, MAX_TOKEN_BYTES, Principal, TokenVerifier};

/// The token endpoint's path, as the SDKs call it (`{base_url}/v1/oauth/token`).
pub const TOKEN_PATH: &str = "/v1/oauth/token";
/// The RFC 7523 §2.1 grant type.
pub const GRANT_TYPE_JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The `anthropic-beta` value the SDKs send on jwt-bearer exchanges (accepted, not required).
pub const FEDERATION_BETA: &str = "oidc-federation-2026-04-01";
/// The `anthropic-beta` value the SDKs send with OAuth bearer tokens (accepted, not required).
pub const OAUTH_BETA: &str = "oauth-2025-04-20";
/// Default lifetime of minted tokens (10 minutes).
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(600);
/// Default longest lifetime any rule may give (1 hour).
pub const DEFAULT_MAX_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// Largest token request body accepted, in bytes (64 KiB).
pub const MAX_TOKEN_REQUEST_BYTES: usize = 64 * 1024;

/// The RFC 6749 §5.2 error codes the endpoint answers with (plus
/// `temporarily_unavailable` for the gateway's own outages).
///
/// ```
/// use skillgate::identity::federation::OAuthErrorCode;
/// assert_eq!(OAuthErrorCode::InvalidGrant.as_str(), "invalid_grant");
/// assert_eq!(OAuthErrorCode::InvalidGrant.status(), 400);
/// assert_eq!(OAuthErrorCode::InvalidClient.status(), 401);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OAuthErrorCode {
    /// 400: a parameter is missing, repeated, of the wrong type, or the body is malformed.
    InvalidRequest,
    /// 401: the request tried client authentication, which this endpoint does not support.
    InvalidClient,
    /// 400: the assertion is invalid or expired, or no rule accepts it (RFC 7523 §3.1).
    InvalidGrant,
    /// 400: a `grant_type` other than jwt-bearer.
    UnsupportedGrantType,
    /// 503: the gateway cannot verify or record right now (retryable).
    TemporarilyUnavailable,
    /// 500: the gateway failed to mint the token.
    ServerError,
}

impl OAuthErrorCode {
    /// The `error` value.
    pub const fn as_str(self) -> &'static str {
        match self {
            OAuthErrorCode::InvalidRequest => "invalid_request",
            OAuthErrorCode::InvalidClient => "invalid_client",
            OAuthErrorCode::InvalidGrant => "invalid_grant",
            OAuthErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            OAuthErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            OAuthErrorCode::ServerError => "server_error",
        }
    }

    /// The HTTP status (RFC 6749 §5.2: 400, or 401 for `invalid_client`).
    pub const fn status(self) -> u16 {
        match self {
            OAuthErrorCode::InvalidClient => 401,
            OAuthErrorCode::TemporarilyUnavailable => 503,
            OAuthErrorCode::ServerError => 500,
            _ => 400,
        }
    }

    /// Whether a client may retry (`x-should-retry`): only for the gateway's outages.
    pub const fn should_retry(self) -> bool {
        matches!(
            self,
            OAuthErrorCode::TemporarilyUnavailable | OAuthErrorCode::ServerError
        )
    }
}

/// A refused exchange: the public code and description, and the reason for
/// the log and the audit record. Neither ever contains the assertion or any
/// other request value.
///
/// ```
/// use skillgate::identity::federation::{OAuthErrorCode, TokenError};
/// let e = TokenError::new(OAuthErrorCode::InvalidGrant, "assertion: token expired");
/// let r = e.into_response();
/// assert_eq!(r.status(), 400);
/// assert_eq!(r.headers()["x-should-retry"], "false");
/// assert_eq!(r.headers()["cache-control"], "no-store");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {reason}", code.as_str())]
pub struct TokenError {
    /// The RFC 6749 error code.
    pub code: OAuthErrorCode,
    /// Why, for the log and the audit record (never a request value).
    pub reason: String,
}

impl TokenError {
    /// An error with `code` and the internal `reason`.
    pub fn new(code: OAuthErrorCode, reason: impl Into<String>) -> Self {
        TokenError {
            code,
            reason: reason.into(),
        }
    }

    /// The fixed public `error_description`.
    pub fn description(&self) -> &'static str {
        match self.code {
            OAuthErrorCode::InvalidRequest => {
                "the token request is malformed or misses a required parameter"
            }
            OAuthErrorCode::InvalidClient => "client authentication is not supported here",
            OAuthErrorCode::InvalidGrant => {
                "the assertion is not valid, or no federation rule accepts it"
            }
            OAuthErrorCode::UnsupportedGrantType => {
                "only urn:ietf:params:oauth:grant-type:jwt-bearer is supported"
            }
            OAuthErrorCode::TemporarilyUnavailable => {
                "the gateway cannot issue tokens right now; retry later"
            }
            OAuthErrorCode::ServerError => "the gateway failed to issue a token",
        }
    }

    /// The RFC 6749 §5.2 response: `{"error": …, "error_description": …}`
    /// with `cache-control: no-store` and `x-should-retry`.
    pub fn into_response(self) -> Response<Body> {
        let body = json!({"error": self.code.as_str(), "error_description": self.description()});
        let mut res = json_response(self.code.status(), &body);
        res.headers_mut().insert(
            "x-should-retry",
            HeaderValue::from_static(if self.code.should_retry() {
                "true"
            } else {
                "false"
            }),
        );
        if self.code == OAuthErrorCode::InvalidClient {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"skillgate\""),
            );
        }
        res
    }
}

pub(crate) fn json_response(status: u16, body: &Value) -> Response<Body> {
    let mut res = Response::new(Body::from(serde_json::to_vec(body).unwrap_or_default()));
    *res.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // RFC 6749 §5.1: responses that carry (or may carry) tokens are not cached.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

fn invalid_request(reason: impl Into<String>) -> TokenError {
    TokenError::new(OAuthErrorCode::InvalidRequest, reason)
}

/// A parsed token request. `Debug` does not show the assertion.
///
/// Accepts what both official SDKs send — a JSON object
/// (`Content-Type: application/json`) — and the RFC 6749 §4.1.3 form
/// encoding (`application/x-www-form-urlencoded`). Every parameter must be
/// a string and appear at most once (RFC 6749 §3.2); unknown parameters are
/// ignored, except client-authentication ones (`client_secret`,
/// `client_assertion`), which make the request [`invalid_client`](OAuthErrorCode::InvalidClient).
///
/// ```
/// use skillgate::identity::federation::TokenRequest;
/// let body = br#"{"grant_type":"urn:ietf:params:oauth:grant-type:jwt-bearer","assertion":"e30.e30.sig","federation_rule_id":"fdrl_ci","organization_id":"org-1"}"#;
/// let r = TokenRequest::parse(Some("application/json"), body).unwrap();
/// assert_eq!(r.federation_rule_id.as_deref(), Some("fdrl_ci"));
/// assert!(!format!("{r:?}").contains("e30.e30.sig"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    /// `grant_type`.
    pub grant_type: Option<String>,
    /// `assertion`: the caller's identity token (a secret).
    pub assertion: Option<SecretString>,
    /// `federation_rule_id`.
    pub federation_rule_id: Option<String>,
    /// `organization_id`.
    pub organization_id: Option<String>,
    /// `service_account_id`.
    pub service_account_id: Option<String>,
    /// `workspace_id`.
    pub workspace_id: Option<String>,
    /// Whether the body carried client-authentication parameters.
    pub client_authentication: bool,
}

/// JSON object members in order, duplicates kept (serde_json's map keeps only the last).
struct Members(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Members, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, Value>()? {
                    out.push((k, v));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl TokenRequest {
    /// Parses a token request body with its `Content-Type`.
    ///
    /// # Errors
    /// [`OAuthErrorCode::InvalidRequest`] for an unsupported content type, a
    /// body that is not a JSON object or form, a non-string or repeated
    /// parameter, or a body over [`MAX_TOKEN_REQUEST_BYTES`].
    pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<TokenRequest, TokenError> {
        if body.len() > MAX_TOKEN_REQUEST_BYTES {
            return Err(invalid_request("token request body too large"));
        }
        let media = content_type
            .and_then(|c| c.split(';').next())
            .map(|c| c.trim().to_ascii_lowercase());
        let pairs: Vec<(String, String)> = match media.as_deref() {
            Some("application/json") => {
                let Members(members) = serde_json::from_slice(body)
                    .map_err(|_| invalid_request("body is not a JSON object"))?;
                let mut pairs = Vec::with_capacity(members.len());
                for (k, v) in members {
                    match v {
                        Value::String(s) => pairs.push((k, s)),
                        // JSON null is how some clients say "absent".
                        Value::Null => {}
                        // Only a recognized name is echoed: the caller chooses
                        // the others (RFC 6749 §3.2 ignores them anyway).
                        _ if is_known_parameter(&k) => {
                            return Err(invalid_request(format!("parameter {k} is not a string")));
                        }
                        _ => {}
                    }
                }
                pairs
            }
            Some("application/x-www-form-urlencoded") => form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
            _ => return Err(invalid_request("unsupported content type")),
        };
        let mut req = TokenRequest::default();
        let mut seen = std::collections::HashSet::new();
        for (k, v) in pairs {
            if !is_known_parameter(&k) {
                continue; // RFC 6749 §3.2: unrecognized parameters are ignored.
            }
            if !seen.insert(k.clone()) {
                return Err(invalid_request(format!("parameter {k} repeated")));
            }
            // An empty value counts as absent (a defaulted-but-empty CI variable).
            let v = (!v.is_empty()).then_some(v);
            match k.as_str() {
                "grant_type" => req.grant_type = v,
                "assertion" => req.assertion = v.map(SecretString::from),
                "federation_rule_id" => req.federation_rule_id = v,
                "organization_id" => req.organization_id = v,
                "service_account_id" => req.service_account_id = v,
                "workspace_id" => req.workspace_id = v,
                _ => req.client_authentication = true,
            }
        }
        Ok(req)
    }

    /// A stand-in for the body to keep in the audit record: the parameters
    /// without the assertion, which is replaced by
    /// `"[redacted sha256:<first 16 hex digits>]"` (a fingerprint to tell two
    /// assertions apart; the token cannot be recovered from it).
    pub fn redacted_json(&self) -> Bytes {
        let mut m = serde_json::Map::new();
        let mut put = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                m.insert(k.into(), json!(v));
            }
        };
        put("grant_type", &self.grant_type);
        put("federation_rule_id", &self.federation_rule_id);
        put("organization_id", &self.organization_id);
        put("service_account_id", &self.service_account_id);
        put("workspace_id", &self.workspace_id);
        if let Some(a) = &self.assertion {
            m.insert(
                "assertion".into(),
                json!(format!("[redacted {}]", fingerprint(a.expose_secret()))),
            );
        }
        if self.client_authentication {
            m.insert("client_authentication".into(), json!("[redacted]"));
        }
        Bytes::from(serde_json::to_vec(&m).unwrap_or_default())
    }
}

/// The token request parameters this endpoint reads.
fn is_known_parameter(name: &str) -> bool {
    matches!(
        name,
        "grant_type"
            | "assertion"
            | "federation_rule_id"
            | "organization_id"
            | "service_account_id"
            | "workspace_id"
            | "client_secret"
            | "client_assertion"
            | "client_assertion_type"
    )
}

/// `sha256:` and the first 16 hex digits of the SHA-256 of `secret`.
pub fn fingerprint(secret: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(secret.as_bytes());
    let hex: String = d[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A successful exchange.
///
/// ```
/// # use std::sync::Arc;
/// # use skillgate::identity::dev::{DevIssuer, MintOptions};
/// # use skillgate::identity::federation::{FederationRule, GatewayTokenIssuer, TokenEndpoint, TokenRequest};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// # let idp = DevIssuer::ephemeral();
/// # let gw = Arc::new(GatewayTokenIssuer::ephemeral("urn:skillgate:gateway", "urn:skillgate:gateway").unwrap());
/// # let endpoint = TokenEndpoint::builder(gw, idp.verifier("skillgate"))
/// #     .rule(FederationRule::new("r").issuer(idp.issuer())).build().unwrap();
/// # let body = serde_json::json!({"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
/// #     "assertion": idp.mint(&MintOptions::new("skill-a")).unwrap(), "federation_rule_id": "r"});
/// # let req = TokenRequest::parse(Some("application/json"), body.to_string().as_bytes()).unwrap();
/// let ex = endpoint.exchange(&req).await.unwrap();
/// assert_eq!(ex.response_json()["token_type"], "Bearer");
/// assert_eq!(ex.asserted.subject, "skill-a");
/// let kept = String::from_utf8(ex.redacted_response_json().to_vec()).unwrap();
/// assert!(kept.contains(&ex.token.token_id));
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The minted token.
    pub token: IssuedToken,
    /// The principal the assertion proved (its issuer, subject and claims).
    pub asserted: Principal,
    /// The rule that accepted it.
    pub rule_id: String,
}

impl Exchange {
    /// The RFC 6749 §5.1 body: `{"access_token", "token_type": "Bearer", "expires_in"}`.
    pub fn response_json(&self) -> Value {
        json!({
            "access_token": token_str(&self.token),
            "token_type": "Bearer",
            "expires_in": self.token.expires_in(),
        })
    }

    /// The same body with the token replaced by its id, for the audit record.
    pub fn redacted_response_json(&self) -> Bytes {
        let v = json!({
            "access_token": format!("[redacted jti={}]", self.token.token_id),
            "token_type": "Bearer",
            "expires_in": self.token.expires_in(),
        });
        Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
    }
}

/// Why a [`TokenEndpoint`] configuration is unusable.
///
/// ```
/// use skillgate::identity::federation::EndpointConfigError;
/// assert!(EndpointConfigError("duplicate rule id r".into()).to_string().contains("duplicate"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("token endpoint: {0}")]
pub struct EndpointConfigError(pub String);

/// The jwt-bearer exchange: verifies the assertion with the *external*
/// issuers' verifier (never the gateway's own tokens), matches the
/// [`FederationRule`] named by `federation_rule_id`, and mints a gateway
/// token with [`GatewayTokenIssuer`].
///
/// Lifetime of a minted token: the smallest of the endpoint's token
/// lifetime, the rule's `max_ttl_secs`, the endpoint's maximum, and the time
/// the assertion has left (a token never outlives the identity it came from).
///
/// ```
/// use std::sync::Arc;
/// use skillgate::identity::dev::{DevIssuer, MintOptions};
/// use skillgate::identity::federation::{FederationRule, GatewayTokenIssuer, TokenEndpoint, TokenRequest};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let idp = DevIssuer::ephemeral(); // stands in for the workload's identity provider
/// let gw = Arc::new(GatewayTokenIssuer::ephemeral("urn:skillgate:gateway", "urn:skillgate:gateway").unwrap());
/// let endpoint = TokenEndpoint::builder(gw, idp.verifier("skillgate"))
///     .rule(FederationRule::new("fdrl_ci").issuer(idp.issuer()).group("ci"))
///     .build()
///     .unwrap();
/// let assertion = idp.mint(&MintOptions::new("skill-a")).unwrap();
/// let body = serde_json::json!({
///     "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
///     "assertion": assertion,
///     "federation_rule_id": "fdrl_ci",
///     "organization_id": "org-1",
/// });
/// let req = TokenRequest::parse(Some("application/json"), body.to_string().as_bytes()).unwrap();
/// let ex = endpoint.exchange(&req).await.unwrap();
/// assert_eq!(ex.rule_id, "fdrl_ci");
/// assert_eq!(ex.token.expires_in(), 600);
/// # });
/// ```
pub struct TokenEndpoint {
    assertions: Arc<dyn TokenVerifier>,
    rules: HashMap<String, FederationRule>,
    issuer: Arc<GatewayTokenIssuer>,
    token_ttl: Duration,
    max_token_ttl: Duration,
    organization_id: Option<String>,
}

impl std::fmt::Debug for TokenEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenEndpoint")
            .field("issuer", &self.issuer.issuer())
            .field("rules", &self.rules.keys().collect::<Vec<_>>())
            .field("token_ttl", &self.token_ttl)
            .field("max_token_ttl", &self.max_token_ttl)
            .finish_non_exhaustive()
    }
}

/// Builder for [`TokenEndpoint`].
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use skillgate::identity::IssuerSet;
/// use skillgate::identity::federation::{FederationRule, GatewayTokenIssuer, TokenEndpoint};
/// let gw = Arc::new(GatewayTokenIssuer::ephemeral("urn:skillgate:gateway", "urn:skillgate:gateway").unwrap());
/// let endpoint = TokenEndpoint::builder(gw, IssuerSet::new())
///     .rule(FederationRule::new("r").issuer("https://idp.example.com"))
///     .token_ttl(Duration::from_secs(300))
///     .max_token_ttl(Duration::from_secs(900))
///     .organization_id("00000000-0000-4000-8000-000000000001")
///     .build()
///     .unwrap();
/// assert_eq!(endpoint.max_token_ttl(), Duration::from_secs(900));
/// ```
pub struct TokenEndpointBuilder {
    assertions: Arc<dyn TokenVerifier>,
    rules: Vec<FederationRule>,
    issuer: Arc<GatewayTokenIssuer>,
    token_ttl: Duration,
    max_token_ttl: Duration,
    organization_id: Option<String>,
}

impl TokenEndpoint {
    /// Starts a builder: `issuer` mints, `assertions` verifies the callers'
    /// identity tokens (the external issuers only).
    pub fn builder(
        issuer: Arc<GatewayTokenIssuer>,
        assertions: impl TokenVerifier,
    ) -> TokenEndpointBuilder {
        TokenEndpointBuilder {
            assertions: Arc::new(assertions),
            rules: Vec::new(),
            issuer,
            token_ttl: DEFAULT_TOKEN_TTL,
            max_token_ttl: DEFAULT_MAX_TOKEN_TTL,
            organization_id: None,
        }
    }

    /// The issuer that mints.
    pub fn issuer(&self) -> &Arc<GatewayTokenIssuer> {
        &self.issuer
    }

    /// The longest lifetime a minted token can have.
    pub fn max_token_ttl(&self) -> Duration {
        self.max_token_ttl
    }

    /// Runs the exchange for a parsed request.
    ///
    /// # Errors
    /// A [`TokenError`]: `invalid_request` (missing parameter, wrong
    /// organization), `unsupported_grant_type`, `invalid_client` (client
    /// authentication attempted), `invalid_grant` (assertion invalid or
    /// expired, unknown rule, rule not satisfied), `temporarily_unavailable`
    /// (the issuer's keys cannot be loaded), `server_error` (signing failed).
    pub async fn exchange(&self, req: &TokenRequest) -> Result<Exchange, TokenError> {
        let grant_type = req
            .grant_type
            .as_deref()
            .ok_or_else(|| invalid_request("grant_type missing"))?;
        if grant_type != GRANT_TYPE_JWT_BEARER {
            return Err(TokenError::new(
                OAuthErrorCode::UnsupportedGrantType,
                "grant_type is not jwt-bearer",
            ));
        }
        if req.client_authentication {
            return Err(TokenError::new(
                OAuthErrorCode::InvalidClient,
                "client authentication parameters sent",
            ));
        }
        let assertion = req
            .assertion
            .as_ref()
            .ok_or_else(|| invalid_request("assertion missing"))?;
        let rule_id = req
            .federation_rule_id
            .as_deref()
            .ok_or_else(|| invalid_request("federation_rule_id missing"))?;
        if let Some(want) = &self.organization_id {
            match req.organization_id.as_deref() {
                None => return Err(invalid_request("organization_id missing")),
                Some(got) if got != want => {
                    return Err(TokenError::new(
                        OAuthErrorCode::InvalidGrant,
                        "organization_id is not this gateway's",
                    ));
                }
                Some(_) => {}
            }
        }
        let secret = assertion.expose_secret();
        if secret.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::new(
                OAuthErrorCode::InvalidGrant,
                "assertion too large",
            ));
        }
        let asserted = match self.assertions.verify(secret).await {
            Ok(p) => p,
            Err(e @ (AuthError::KeysUnavailable | AuthError::RevocationUnavailable)) => {
                return Err(TokenError::new(
                    OAuthErrorCode::TemporarilyUnavailable,
                    format!("assertion: {e}"),
                ));
            }
            Err(e) => {
                return Err(TokenError::new(
                    OAuthErrorCode::InvalidGrant,
                    format!("assertion: {e}"),
                ));
            }
        };
        // Unknown rule and unmet rule answer the same to the caller.
        let rule = self.rules.get(rule_id).ok_or_else(|| {
            TokenError::new(OAuthErrorCode::InvalidGrant, "unknown federation rule")
        })?;
        rule.check(&asserted).map_err(|m| {
            TokenError::new(
                OAuthErrorCode::InvalidGrant,
                format!("rule {}: {m}", rule.id),
            )
        })?;
        let left = asserted.expires_at.unwrap_or(0).saturating_sub(now());
        let mut ttl = self.token_ttl.min(self.max_token_ttl).as_secs();
        if let Some(r) = rule.max_ttl_secs {
            ttl = ttl.min(r);
        }
        let ttl = ttl.min(u64::try_from(left).unwrap_or(0));
        if ttl == 0 {
            return Err(TokenError::new(
                OAuthErrorCode::InvalidGrant,
                "assertion expired",
            ));
        }
        let grant = TokenGrant {
            issuer: asserted.issuer.clone(),
            subject: asserted.subject.clone(),
            client_id: asserted.client_id.clone(),
            groups: rule.groups.clone(),
            rule_id: rule.id.clone(),
            organization_id: req.organization_id.clone(),
            workspace_id: req.workspace_id.clone(),
            service_account_id: req.service_account_id.clone(),
            ttl: Duration::from_secs(ttl),
        };
        let token = self
            .issuer
            .mint(&grant)
            .map_err(|e| TokenError::new(OAuthErrorCode::ServerError, e.to_string()))?;
        Ok(Exchange {
            token,
            asserted,
            rule_id: rule.id.clone(),
        })
    }
}

impl TokenEndpointBuilder {
    /// Adds a rule. Ids must be unique.
    pub fn rule(mut self, rule: FederationRule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Adds rules.
    pub fn rules(mut self, rules: impl IntoIterator<Item = FederationRule>) -> Self {
        self.rules.extend(rules);
        self
    }

    /// Lifetime of minted tokens (default 10 minutes; whole seconds).
    pub fn token_ttl(mut self, ttl: Duration) -> Self {
        self.token_ttl = ttl;
        self
    }

    /// Longest lifetime any token may get, whatever a rule says (default 1 hour).
    pub fn max_token_ttl(mut self, ttl: Duration) -> Self {
        self.max_token_ttl = ttl;
        self
    }

    /// Requires requests to name this `organization_id` (default: any is accepted).
    pub fn organization_id(mut self, id: impl Into<String>) -> Self {
        self.organization_id = Some(id.into());
        self
    }

    /// Checks the configuration and builds the endpoint.
    ///
    /// # Errors
    /// [`EndpointConfigError`]: a zero or over-maximum lifetime, an empty or
    /// duplicate rule id, a rule without issuers, a rule that allows the
    /// gateway's own issuer, or a rule lifetime over the maximum.
    pub fn build(self) -> Result<TokenEndpoint, EndpointConfigError> {
        let err = |m: String| Err(EndpointConfigError(m));
        if self.token_ttl.as_secs() == 0 || self.max_token_ttl.as_secs() == 0 {
            return err("token lifetimes must be at least one second".into());
        }
        if self.token_ttl > self.max_token_ttl {
            return err("token_ttl is longer than max_token_ttl".into());
        }
        let mut rules = HashMap::new();
        for r in self.rules {
            if r.id.is_empty() {
                return err("a federation rule has an empty id".into());
            }
            if r.issuers.is_empty() {
                return err(format!("rule {}: no issuers", r.id));
            }
            if r.issuers.iter().any(|i| i == self.issuer.issuer()) {
                return err(format!(
                    "rule {}: the gateway's own tokens cannot be exchanged",
                    r.id
                ));
            }
            if r.max_ttl_secs == Some(0)
                || r.max_ttl_secs
                    .is_some_and(|t| t > self.max_token_ttl.as_secs())
            {
                return err(format!(
                    "rule {}: max_ttl_secs must be between 1 and max_token_ttl",
                    r.id
                ));
            }
            if rules.contains_key(&r.id) {
                return err(format!("duplicate rule id {}", r.id));
            }
            rules.insert(r.id.clone(), r);
        }
        Ok(TokenEndpoint {
            assertions: self.assertions,
            rules,
            issuer: self.issuer,
            token_ttl: self.token_ttl,
            max_token_ttl: self.max_token_ttl,
            organization_id: self.organization_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::dev::{DevIssuer, MintOptions};
    use crate::identity::federation::{ClaimCondition, MemoryRevocationStore};
    use crate::identity::{IssuerSet, TokenVerifier};

    const GW: &str = "urn:skillgate:gateway";

    struct Fixture {
        idp: DevIssuer,
        other: DevIssuer,
        gw: Arc<GatewayTokenIssuer>,
        endpoint: TokenEndpoint,
    }

    fn fixture() -> Fixture {
        let idp = DevIssuer::try_ephemeral("https://idp.test").unwrap();
        let other = DevIssuer::try_ephemeral("https://other.test").unwrap();
        let gw = Arc::new(GatewayTokenIssuer::ephemeral(GW, GW).unwrap());
        let set = IssuerSet::new()
            .with(idp.issuer(), idp.verifier("skillgate"))
            .with(other.issuer(), other.verifier("skillgate"));
        let endpoint = TokenEndpoint::builder(gw.clone(), set)
            .rule(
                FederationRule::new("ci")
                    .issuer("https://idp.test")
                    .condition("env", ClaimCondition::glob("prod-*"))
                    .group("ci")
                    .max_ttl_secs(120),
            )
            .rule(FederationRule::new("open").issuer("https://idp.test"))
            .organization_id("org-1")
            .build()
            .unwrap();
        Fixture {
            idp,
            other,
            gw,
            endpoint,
        }
    }

    fn assertion(idp: &DevIssuer, env: &str) -> String {
        let mut o = MintOptions::new("skill-a");
        o.extra.insert("env".into(), json!(env));
        idp.mint(&o).unwrap()
    }

    fn request(assertion: &str, rule: &str) -> TokenRequest {
        let body = json!({
            "grant_type": GRANT_TYPE_JWT_BEARER,
            "assertion": assertion,
            "federation_rule_id": rule,
            "organization_id": "org-1",
        });
        TokenRequest::parse(Some("application/json"), body.to_string().as_bytes()).unwrap()
    }

    #[tokio::test]
    async fn exchange_mints_a_token_the_gateway_verifier_accepts() {
        let f = fixture();
        let ex = f
            .endpoint
            .exchange(&request(&assertion(&f.idp, "prod-eu"), "ci"))
            .await
            .unwrap();
        assert_eq!(ex.token.expires_in(), 120, "rule max ttl caps");
        let v = f.gw.verifier(Arc::new(MemoryRevocationStore::new()));
        let p = v.verify(token_str(&ex.token)).await.unwrap();
        assert_eq!(p.issuer, "https://idp.test");
        assert_eq!(p.subject, "skill-a");
        assert_eq!(p.groups, ["ci"], "only the rule's groups");
        assert_eq!(p.claims["organization_id"], "org-1");
        let open = f
            .endpoint
            .exchange(&request(&assertion(&f.idp, "dev"), "open"))
            .await
            .unwrap();
        assert_eq!(open.token.expires_in(), 600);
        assert!(
            !String::from_utf8_lossy(&ex.redacted_response_json()).contains(token_str(&ex.token))
        );
    }

    #[tokio::test]
    async fn refusals_have_the_right_codes() {
        let f = fixture();
        let good = assertion(&f.idp, "prod-eu");
        let code = |r: Result<Exchange, TokenError>| r.unwrap_err().code;
        use OAuthErrorCode::*;
        assert_eq!(
            code(f.endpoint.exchange(&request(&good, "nope")).await),
            InvalidGrant
        );
        assert_eq!(
            code(
                f.endpoint
                    .exchange(&request(&assertion(&f.other, "prod-eu"), "ci"))
                    .await
            ),
            InvalidGrant,
            "issuer not allowed by the rule"
        );
        assert_eq!(
            code(
                f.endpoint
                    .exchange(&request(&assertion(&f.idp, "dev"), "ci"))
                    .await
            ),
            InvalidGrant,
            "condition not met"
        );
        assert_eq!(
            code(f.endpoint.exchange(&request("garbage", "ci")).await),
            InvalidGrant
        );
        let expired = f
            .idp
            .mint(&MintOptions::new("skill-a").ttl(Duration::from_secs(0)))
            .unwrap();
        let e = f
            .endpoint
            .exchange(&request(&expired, "open"))
            .await
            .unwrap_err();
        assert_eq!(e.code, InvalidGrant, "{e}");
        // The gateway's own token is not an acceptable assertion.
        let ex = f.endpoint.exchange(&request(&good, "ci")).await.unwrap();
        assert_eq!(
            code(
                f.endpoint
                    .exchange(&request(token_str(&ex.token), "ci"))
                    .await
            ),
            InvalidGrant
        );
        let mut r = request(&good, "ci");
        r.grant_type = Some("client_credentials".into());
        assert_eq!(code(f.endpoint.exchange(&r).await), UnsupportedGrantType);
        let mut r = request(&good, "ci");
        r.grant_type = None;
        assert_eq!(code(f.endpoint.exchange(&r).await), InvalidRequest);
        let mut r = request(&good, "ci");
        r.organization_id = Some("org-2".into());
        assert_eq!(code(f.endpoint.exchange(&r).await), InvalidGrant);
        let mut r = request(&good, "ci");
        r.client_authentication = true;
        assert_eq!(code(f.endpoint.exchange(&r).await), InvalidClient);
        let mut r = request(&good, "ci");
        r.assertion = None;
        assert_eq!(code(f.endpoint.exchange(&r).await), InvalidRequest);
    }

    #[test]
    fn parsing() {
        let form = format!(
            "grant_type={}&assertion=a.b.c&federation_rule_id=r&extra=ignored",
            GRANT_TYPE_JWT_BEARER.replace(':', "%3A")
        );
        let r = TokenRequest::parse(
            Some("application/x-www-form-urlencoded; charset=utf-8"),
            form.as_bytes(),
        )
        .unwrap();
        assert_eq!(r.grant_type.as_deref(), Some(GRANT_TYPE_JWT_BEARER));
        assert_eq!(r.assertion.as_ref().unwrap().expose_secret(), "a.b.c");
        let bad =
            |ct: Option<&str>, b: &str| TokenRequest::parse(ct, b.as_bytes()).unwrap_err().code;
        use OAuthErrorCode::InvalidRequest;
        assert_eq!(bad(Some("application/json"), "[1]"), InvalidRequest);
        assert_eq!(
            bad(Some("application/json"), r#"{"assertion":1}"#),
            InvalidRequest
        );
        assert_eq!(
            bad(
                Some("application/json"),
                r#"{"assertion":"a","assertion":"b"}"#
            ),
            InvalidRequest
        );
        assert_eq!(
            bad(
                Some("application/x-www-form-urlencoded"),
                "assertion=a&assertion=b"
            ),
            InvalidRequest
        );
        // An unknown parameter is ignored whatever its type, and its
        // (caller-chosen) name is never echoed.
        let r = TokenRequest::parse(
            Some("application/json"),
            br#"{"assertion":"a.b.c","<script>caller-chosen-name":{"x":1}}"#,
        )
        .unwrap();
        assert_eq!(r.assertion.as_ref().unwrap().expose_secret(), "a.b.c");
        let e =
            TokenRequest::parse(Some("application/json"), br#"{"grant_type":[1]}"#).unwrap_err();
        assert!(e.to_string().contains("grant_type"), "{e}");
        assert_eq!(bad(Some("text/plain"), "{}"), InvalidRequest);
        assert_eq!(bad(None, "{}"), InvalidRequest);
        let client = TokenRequest::parse(
            Some("application/json"),
            br#"{"client_secret":"s3cr3t","workspace_id":""}"#,
        )
        .unwrap();
        assert!(client.client_authentication);
        assert_eq!(client.workspace_id, None);
        let red = String::from_utf8(client.redacted_json().to_vec()).unwrap();
        assert!(!red.contains("s3cr3t"));
        let r = TokenRequest::parse(
            Some("application/json"),
            br#"{"assertion":"header.payload.signature","federation_rule_id":"r"}"#,
        )
        .unwrap();
        let red = String::from_utf8(r.redacted_json().to_vec()).unwrap();
        assert!(!red.contains("header.payload.signature"), "{red}");
        assert!(red.contains(&fingerprint("header.payload.signature")));
    }

    #[test]
    fn builder_refuses_unsafe_rules() {
        let gw = Arc::new(GatewayTokenIssuer::ephemeral(GW, GW).unwrap());
        let b = || TokenEndpoint::builder(gw.clone(), IssuerSet::new());
        assert!(b().rule(FederationRule::new("r")).build().is_err());
        assert!(
            b().rule(FederationRule::new("r").issuer(GW))
                .build()
                .is_err()
        );
        assert!(
            b().rule(FederationRule::new("r").issuer("https://a"))
                .rule(FederationRule::new("r").issuer("https://b"))
                .build()
                .is_err()
        );
        assert!(
            b().rule(
                FederationRule::new("r")
                    .issuer("https://a")
                    .max_ttl_secs(7200)
            )
            .build()
            .is_err()
        );
        assert!(b().token_ttl(Duration::from_secs(7200)).build().is_err());
    }
}
