//! Where a skill's machine-identity token comes from: the [`TokenSource`]
//! trait and four sources — a file ([`FileToken`]), an environment variable
//! ([`EnvToken`]), the OAuth 2.0 client-credentials grant
//! ([`ClientCredentials`]) and the gateway's own token endpoint
//! ([`GatewayTokenExchange`], RFC 7523 jwt-bearer).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Default margin before expiry at which a cached token is renewed (60 s).
pub const DEFAULT_REFRESH_BEFORE: Duration = Duration::from_secs(60);
/// How long a token without `expires_in` is reused (60 s).
pub const DEFAULT_LIFETIME_WITHOUT_EXPIRY: Duration = Duration::from_secs(60);
/// Timeout of one token request (30 s).
pub const TOKEN_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest token response body read, in bytes (64 KiB).
const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

/// Why no token could be produced. Never contains a token, a secret or a
/// client secret.
///
/// ```
/// use skillgate::client::TokenError;
/// let e = TokenError::Missing("SKILL_TOKEN is not set".into());
/// assert!(e.to_string().contains("not set"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not configured, unset or empty.
    #[error("no token: {0}")]
    Missing(String),
    /// The token file could not be read.
    #[error("token file {path} could not be read")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A token request failed: unreachable, timed out, refused (RFC 6749
    /// §5.2 `error` code), or an answer that is not a usable bearer token.
    #[error("token request to {endpoint} failed{}: {message}", status.map(|s| format!(" with status {s}")).unwrap_or_default())]
    Exchange {
        /// The token endpoint.
        endpoint: String,
        /// Its HTTP status, when it answered.
        status: Option<u16>,
        /// What went wrong (the RFC 6749 §5.2 `error` code when given).
        message: String,
    },
}

/// Produces the bearer token a skill presents as its machine identity.
///
/// Implementations cache as they see fit; [`invalidate`](Self::invalidate)
/// is called when a token was refused (`401`), so the next
/// [`token`](Self::token) fetches a fresh one.
///
/// ```
/// use async_trait::async_trait;
/// use secrecy::SecretString;
/// use skillgate::client::{TokenError, TokenSource};
///
/// struct Fixed(&'static str);
///
/// #[async_trait]
/// impl TokenSource for Fixed {
///     async fn token(&self) -> Result<SecretString, TokenError> {
///         Ok(SecretString::from(self.0))
///     }
/// }
/// ```
#[async_trait]
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a skillgate `TokenSource`",
    note = "implement `async fn token(&self) -> Result<SecretString, TokenError>` with #[async_trait]"
)]
pub trait TokenSource: Send + Sync + 'static {
    /// The token to present now.
    ///
    /// # Errors
    /// [`TokenError`] when none can be produced; the request is then not sent.
    async fn token(&self) -> Result<SecretString, TokenError>;

    /// Forgets any cached token (it was refused). Default: nothing cached.
    fn invalidate(&self) {}
}

#[async_trait]
impl<T: TokenSource + ?Sized> TokenSource for Arc<T> {
    async fn token(&self) -> Result<SecretString, TokenError> {
        (**self).token().await
    }
    fn invalidate(&self) {
        (**self).invalidate()
    }
}

/// A token kept in a file, re-read whenever the file changes (modification
/// time or length) — for projected tokens that the platform rotates in
/// place (Kubernetes service-account tokens, SPIFFE JWT-SVIDs on disk).
/// Surrounding white space is trimmed.
///
/// ```
/// use skillgate::client::FileToken;
/// let source = FileToken::new("/var/run/secrets/tokens/skillgate");
/// # let _ = source;
/// ```
#[derive(Debug)]
pub struct FileToken {
    path: PathBuf,
    cache: Mutex<Option<(SystemTime, u64, SecretString)>>,
}

impl FileToken {
    /// Reads the token from `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileToken {
            path: path.into(),
            cache: Mutex::new(None),
        }
    }

    fn read_err(&self, source: std::io::Error) -> TokenError {
        TokenError::Read {
            path: self.path.display().to_string(),
            source,
        }
    }
}

#[async_trait]
impl TokenSource for FileToken {
    async fn token(&self) -> Result<SecretString, TokenError> {
        let meta = tokio::fs::metadata(&self.path)
            .await
            .map_err(|e| self.read_err(e))?;
        let stamp = (
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
        );
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((m, l, t)) = cache.as_ref()
                && (*m, *l) == stamp
            {
                return Ok(t.clone());
            }
        }
        let text = tokio::fs::read_to_string(&self.path)
            .await
            .map_err(|e| self.read_err(e))?;
        let token = text.trim();
        if token.is_empty() {
            return Err(TokenError::Missing(format!(
                "token file {} is empty",
                self.path.display()
            )));
        }
        let token = SecretString::from(token.to_owned());
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((stamp.0, stamp.1, token.clone()));
        Ok(token)
    }

    fn invalidate(&self) {
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// A token in an environment variable, read on every request (so a
/// process that updates its environment is followed). Surrounding white
/// space is trimmed.
///
/// ```
/// use skillgate::client::EnvToken;
/// let source = EnvToken::new("SKILLGATE_TOKEN");
/// # let _ = source;
/// ```
#[derive(Debug, Clone)]
pub struct EnvToken {
    var: String,
}

impl EnvToken {
    /// Reads the variable `var`.
    pub fn new(var: impl Into<String>) -> Self {
        EnvToken { var: var.into() }
    }
}

#[async_trait]
impl TokenSource for EnvToken {
    async fn token(&self) -> Result<SecretString, TokenError> {
        match std::env::var(&self.var) {
            Ok(v) if !v.trim().is_empty() => Ok(SecretString::from(v.trim().to_owned())),
            _ => Err(TokenError::Missing(format!("{} is not set", self.var))),
        }
    }
}

/// A fetched token and when to renew it.
struct Cached {
    token: SecretString,
    renew_at: Instant,
}

/// The shared cache of the two fetching sources: one fetch at a time,
/// renewed `refresh_before` ahead of expiry (at most half the lifetime).
struct TokenCache {
    slot: tokio::sync::Mutex<Option<Cached>>,
    refresh_before: Duration,
}

impl TokenCache {
    fn new(refresh_before: Duration) -> Self {
        TokenCache {
            slot: tokio::sync::Mutex::new(None),
            refresh_before,
        }
    }

    async fn get<F, Fut>(&self, fetch: F) -> Result<SecretString, TokenError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(SecretString, Option<u64>), TokenError>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some(c) = slot.as_ref()
            && Instant::now() < c.renew_at
        {
            return Ok(c.token.clone());
        }
        let (token, expires_in) = fetch().await?;
        let lifetime = expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_LIFETIME_WITHOUT_EXPIRY);
        let margin = self.refresh_before.min(lifetime / 2);
        *slot = Some(Cached {
            token: token.clone(),
            renew_at: Instant::now() + lifetime.saturating_sub(margin),
        });
        Ok(token)
    }

    fn clear(&self) {
        if let Ok(mut slot) = self.slot.try_lock() {
            *slot = None;
        } else {
            // A fetch is in progress: it produces a fresh token anyway.
        }
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct OAuthError {
    error: String,
}

fn default_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(TOKEN_REQUEST_TIMEOUT)
        .build()
        .unwrap_or_default()
}

/// Sends a token request and reads an RFC 6749 §5.1 answer.
async fn token_request(
    endpoint: &str,
    request: reqwest::RequestBuilder,
) -> Result<(SecretString, Option<u64>), TokenError> {
    let fail = |status: Option<u16>, message: String| TokenError::Exchange {
        endpoint: endpoint.to_owned(),
        status,
        message,
    };
    let response = request.send().await.map_err(|e| {
        fail(
            None,
            if e.is_timeout() {
                "timed out".into()
            } else {
                "unreachable".into()
            },
        )
    })?;
    let status = response.status().as_u16();
    let mut body = Vec::new();
    let mut response = response;
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|_| fail(Some(status), "response could not be read".into()))?
    {
        if body.len() + chunk.len() > MAX_TOKEN_RESPONSE_BYTES {
            return Err(fail(Some(status), "response too large".into()));
        }
        body.extend_from_slice(&chunk);
    }
    if !(200..300).contains(&status) {
        let code = serde_json::from_slice::<OAuthError>(&body)
            .map(|e| e.error)
            .ok()
            .filter(|c| c.len() <= 64 && c.bytes().all(|b| b.is_ascii_graphic()))
            .unwrap_or_else(|| "refused".into());
        return Err(fail(Some(status), code));
    }
    let parsed: TokenResponse = serde_json::from_slice(&body)
        .map_err(|_| fail(Some(status), "not an OAuth 2.0 token response".into()))?;
    if parsed.access_token.is_empty() {
        return Err(fail(Some(status), "empty access_token".into()));
    }
    if let Some(t) = &parsed.token_type
        && !t.eq_ignore_ascii_case("bearer")
    {
        return Err(fail(Some(status), "token_type is not Bearer".into()));
    }
    Ok((SecretString::from(parsed.access_token), parsed.expires_in))
}

/// How a [`ClientCredentials`] source authenticates to the token endpoint
/// (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// HTTP Basic with the form-encoded id and secret (`client_secret_basic`, the default).
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body (`client_secret_post`).
    Post,
}

/// The OAuth 2.0 client-credentials grant (RFC 6749 §4.4): a confidential
/// client exchanges its id and secret for an access token at its identity
/// provider's token endpoint. The token is cached and renewed
/// `refresh_before` ahead of its `expires_in` (default
/// [`DEFAULT_REFRESH_BEFORE`], at most half the lifetime); one request at a
/// time.
///
/// ```
/// use skillgate::client::ClientCredentials;
/// let source = ClientCredentials::new("https://idp.example.com/oauth2/token", "my-skill", "s3cret")
///     .scope("messages:write")
///     .resource("urn:skillgate");
/// # let _ = source;
/// ```
pub struct ClientCredentials {
    endpoint: String,
    client_id: String,
    client_secret: SecretString,
    scope: Option<String>,
    resource: Option<String>,
    audience: Option<String>,
    auth: ClientAuth,
    client: reqwest::Client,
    cache: TokenCache,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("endpoint", &self.endpoint)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl ClientCredentials {
    /// A source for `client_id` with `client_secret` at `token_endpoint`.
    pub fn new(
        token_endpoint: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Self {
        ClientCredentials {
            endpoint: token_endpoint.into(),
            client_id: client_id.into(),
            client_secret: SecretString::from(client_secret.into()),
            scope: None,
            resource: None,
            audience: None,
            auth: ClientAuth::Basic,
            client: default_client(),
            cache: TokenCache::new(DEFAULT_REFRESH_BEFORE),
        }
    }
    /// The `scope` parameter (space-separated scopes).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }
    /// The `resource` parameter (RFC 8707 resource indicator).
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }
    /// The `audience` parameter some providers use instead of `resource` (Auth0, Okta custom servers).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }
    /// How the client authenticates (default [`ClientAuth::Basic`]).
    pub fn client_auth(mut self, auth: ClientAuth) -> Self {
        self.auth = auth;
        self
    }
    /// Renew this long before expiry (default 60 s).
    pub fn refresh_before(mut self, margin: Duration) -> Self {
        self.cache = TokenCache::new(margin);
        self
    }
    /// The HTTP client for token requests (default: 30 s timeout).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.client = client;
        self
    }

    async fn fetch(&self) -> Result<(SecretString, Option<u64>), TokenError> {
        let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
        if let Some(s) = &self.scope {
            form.push(("scope", s));
        }
        if let Some(r) = &self.resource {
            form.push(("resource", r));
        }
        if let Some(a) = &self.audience {
            form.push(("audience", a));
        }
        let secret = self.client_secret.expose_secret();
        let mut req = self.client.post(&self.endpoint);
        match self.auth {
            ClientAuth::Basic => {
                // RFC 6749 §2.3.1: id and secret are form-encoded before Basic.
                let enc =
                    |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                req = req.basic_auth(enc(&self.client_id), Some(enc(secret)));
            }
            ClientAuth::Post => {
                form.push(("client_id", &self.client_id));
                form.push(("client_secret", secret));
            }
        }
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let req = req
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            .body(body);
        token_request(&self.endpoint, req).await
    }
}

#[async_trait]
impl TokenSource for ClientCredentials {
    async fn token(&self) -> Result<SecretString, TokenError> {
        self.cache.get(|| self.fetch()).await
    }
    fn invalidate(&self) {
        self.cache.clear();
    }
}

/// The gateway's own token endpoint (`POST {gateway}/v1/oauth/token`, RFC 7523
/// jwt-bearer, see `docs/identity.md`): the workload's identity token from
/// another source (for example a [`FileToken`] with a projected Kubernetes
/// token) is the `assertion`; the gateway answers a short-lived gateway token
/// scoped by the federation rule. Cached and renewed like
/// [`ClientCredentials`]; the assertion is read anew for every exchange.
///
/// ```
/// use skillgate::client::{FileToken, GatewayTokenExchange};
/// let source = GatewayTokenExchange::new(
///     "https://ai-gateway.corp",
///     FileToken::new("/var/run/secrets/tokens/skillgate"),
///     "fdrl_ci",
/// );
/// # let _ = source;
/// ```
pub struct GatewayTokenExchange {
    endpoint: String,
    assertion: Arc<dyn TokenSource>,
    federation_rule_id: String,
    organization_id: Option<String>,
    client: reqwest::Client,
    cache: TokenCache,
}

impl std::fmt::Debug for GatewayTokenExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayTokenExchange")
            .field("endpoint", &self.endpoint)
            .field("federation_rule_id", &self.federation_rule_id)
            .finish_non_exhaustive()
    }
}

/// The RFC 7523 §2.1 grant type.
pub const JWT_BEARER_GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

impl GatewayTokenExchange {
    /// Exchanges `assertion`'s token at `gateway_url` (base URL, e.g.
    /// `https://ai-gateway.corp`) under `federation_rule_id`.
    pub fn new(
        gateway_url: impl Into<String>,
        assertion: impl TokenSource,
        federation_rule_id: impl Into<String>,
    ) -> Self {
        let base: String = gateway_url.into();
        GatewayTokenExchange {
            endpoint: format!("{}/v1/oauth/token", base.trim_end_matches('/')),
            assertion: Arc::new(assertion),
            federation_rule_id: federation_rule_id.into(),
            organization_id: None,
            client: default_client(),
            cache: TokenCache::new(DEFAULT_REFRESH_BEFORE),
        }
    }
    /// The `organization_id` parameter (required when the gateway sets one).
    pub fn organization_id(mut self, id: impl Into<String>) -> Self {
        self.organization_id = Some(id.into());
        self
    }
    /// Renew this long before expiry (default 60 s).
    pub fn refresh_before(mut self, margin: Duration) -> Self {
        self.cache = TokenCache::new(margin);
        self
    }
    /// The HTTP client for token requests (default: 30 s timeout).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.client = client;
        self
    }

    async fn fetch(&self) -> Result<(SecretString, Option<u64>), TokenError> {
        let assertion = self.assertion.token().await?;
        let mut body = serde_json::json!({
            "grant_type": JWT_BEARER_GRANT_TYPE,
            "assertion": assertion.expose_secret(),
            "federation_rule_id": self.federation_rule_id,
        });
        if let Some(o) = &self.organization_id {
            body["organization_id"] = serde_json::Value::String(o.clone());
        }
        let req = self
            .client
            .post(&self.endpoint)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .body(body.to_string());
        let result = token_request(&self.endpoint, req).await;
        if matches!(
            &result,
            Err(TokenError::Exchange {
                status: Some(400 | 401),
                ..
            })
        ) {
            // A refused assertion may be a stale one: read it anew next time.
            self.assertion.invalidate();
        }
        result
    }
}

#[async_trait]
impl TokenSource for GatewayTokenExchange {
    async fn token(&self) -> Result<SecretString, TokenError> {
        self.cache.get(|| self.fetch()).await
    }
    fn invalidate(&self) {
        self.cache.clear();
        self.assertion.invalidate();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_token_follows_changes_and_trims() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").unwrap();
        let src = FileToken::new(&path);
        assert_eq!(src.token().await.unwrap().expose_secret(), "first");
        // A different length is a change even within one mtime tick.
        std::fs::write(&path, "second-token").unwrap();
        assert_eq!(src.token().await.unwrap().expose_secret(), "second-token");
        std::fs::write(&path, "  \n").unwrap();
        assert!(matches!(src.token().await, Err(TokenError::Missing(_))));
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(src.token().await, Err(TokenError::Read { .. })));
    }

    #[tokio::test]
    async fn env_token_reads_the_variable() {
        let src = EnvToken::new("SKILLGATE_TEST_SURELY_UNSET_TOKEN_VAR");
        let e = src.token().await.unwrap_err();
        assert!(
            e.to_string()
                .contains("SKILLGATE_TEST_SURELY_UNSET_TOKEN_VAR")
        );
    }

    #[tokio::test]
    async fn cache_renews_ahead_of_expiry() {
        let cache = TokenCache::new(Duration::from_secs(60));
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let fetch = |ttl: u64| {
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move { Ok((SecretString::from(format!("t{n}")), Some(ttl))) }
        };
        // Long-lived: reused.
        assert_eq!(
            cache.get(|| fetch(3600)).await.unwrap().expose_secret(),
            "t0"
        );
        assert_eq!(
            cache.get(|| fetch(3600)).await.unwrap().expose_secret(),
            "t0"
        );
        cache.clear();
        // Expires within the margin (a 1 s token renews after 0.5 s at most):
        // renewed at once once expired.
        assert_eq!(cache.get(|| fetch(0)).await.unwrap().expose_secret(), "t1");
        assert_eq!(cache.get(|| fetch(0)).await.unwrap().expose_secret(), "t2");
    }
}
