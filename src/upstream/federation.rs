//! [`FederatedCredential`]: the gateway's upstream credential from Anthropic's
//! workload-identity federation instead of a static API key.
//!
//! The client side of the flow is the one the official SDKs implement
//! (Python `anthropic` 2.x, `lib/credentials/_workload.py`, `_cache.py` and
//! `_auth.py`), mirrored here request for request:
//!
//! 1. The identity token (a JWT from the workload's own identity provider,
//!    e.g. a Kubernetes projected service-account token) is read from a file,
//!    afresh for every exchange, so in-place rotation needs no restart.
//! 2. It is exchanged with an RFC 7523 §2.1 `jwt-bearer` grant:
//!    `POST {base_url}/v1/oauth/token` with `content-type: application/json`,
//!    `anthropic-beta: oauth-2025-04-20,oidc-federation-2026-04-01` and the
//!    JSON body `grant_type`, `assertion`, `federation_rule_id`,
//!    `organization_id` and, when configured, `service_account_id` and
//!    `workspace_id`.
//! 3. The answer is an RFC 6749 §5.1 token response: `access_token`,
//!    `expires_in` (seconds) and optionally `token_type`, which must then be
//!    `Bearer`. Errors are RFC 6749 §5.2 bodies; a `401` is retried once
//!    (with the identity token re-read), as the SDK does.
//! 4. The access token is cached and used as [`Credential::OAuthBearer`]:
//!    `Authorization: Bearer <token>` plus the API beta `oauth-2025-04-20`,
//!    which [`Upstream`](super::Upstream) merges into `anthropic-beta`.
//!
//! Refresh follows the SDK's two-tier policy. More than
//! [`DEFAULT_ADVISORY_REFRESH`] (120 s) before expiry the cached token is
//! served. Inside that window one caller refreshes while the others keep
//! the cached token, and a failed refresh serves the cached token (and is
//! not retried for 5 s). Inside the last [`DEFAULT_MANDATORY_REFRESH`]
//! (30 s), or with no token, every caller waits for the one refresh in
//! flight and its failure is the callers' error: nothing is forwarded
//! without a valid credential. Whatever the number of concurrent callers,
//! at most one exchange is in flight. The exchange runs on its own task,
//! so a caller that goes away does not cancel it for the others.
//!
//! Exchange failures are [`CredentialError`]s whose messages never contain
//! the identity token or an access token.
//!
//! ```no_run
//! use std::time::Duration;
//! use skillgate::upstream::{FederatedCredential, Upstream, ANTHROPIC_API_URL};
//! let credential = FederatedCredential::builder(ANTHROPIC_API_URL)
//!     .identity_token_file("/var/run/secrets/anthropic/token")
//!     .federation_rule_id("fdrl_01AbCdEf")
//!     .organization_id("00000000-0000-4000-8000-000000000000")
//!     .build()?;
//! let upstream = Upstream::builder(ANTHROPIC_API_URL)
//!     .credential(credential)
//!     .build()?;
//! # let _ = upstream;
//! # Ok::<(), skillgate::upstream::UpstreamConfigError>(())
//! ```

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use http::{HeaderValue, Request, Uri, header};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use tokio::io::AsyncReadExt;

use super::UpstreamConfigError;
use super::credential::{Credential, CredentialError, CredentialSource};
use crate::body::{Body, collect_limited};
use crate::http_client::{HttpsClient, https_client};

/// Path of Anthropic's OAuth token endpoint, appended to the base URL.
pub const TOKEN_ENDPOINT_PATH: &str = "/v1/oauth/token";
/// The RFC 7523 §2.1 grant type of the exchange.
pub const JWT_BEARER_GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The API beta that admits `Authorization: Bearer` OAuth access tokens; sent
/// on every API request made with one, and on the exchange.
pub const OAUTH_BETA: &str = "oauth-2025-04-20";
/// The beta of the federation (`jwt-bearer`) exchange itself; sent only on
/// the exchange, never on API requests.
pub const FEDERATION_BETA: &str = "oidc-federation-2026-04-01";
/// Refresh is attempted this long before expiry; failures still serve the
/// cached token (the SDK's `ADVISORY_REFRESH_SECONDS`).
pub const DEFAULT_ADVISORY_REFRESH: Duration = Duration::from_secs(120);
/// Inside this long before expiry the token is no longer served: callers
/// wait for the refresh and fail with it (the SDK's `MANDATORY_REFRESH_SECONDS`).
pub const DEFAULT_MANDATORY_REFRESH: Duration = Duration::from_secs(30);
/// Default limit on one exchange, connection and response body included (the
/// SDK's `TOKEN_EXCHANGE_TIMEOUT`).
pub const DEFAULT_EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// After a failed advisory refresh, the cached token is served without a new
/// attempt for this long, so an endpoint outage is not hit at request rate.
const ADVISORY_BACKOFF: Duration = Duration::from_secs(5);
/// Identity tokens longer than this are refused before sending (a key or a
/// certificate given by mistake, not a JWT).
const MAX_ASSERTION_BYTES: usize = 16 * 1024;
/// Largest token-endpoint response read.
const MAX_RESPONSE_BYTES: usize = 1 << 20;
/// Longest piece of an endpoint's error text kept in a message.
const MAX_ERROR_CHARS: usize = 256;

/// The SDK's beta value for the exchange: both flags, comma-separated.
fn exchange_beta() -> String {
    format!("{OAUTH_BETA},{FEDERATION_BETA}")
}

/// An upstream [`CredentialSource`] performing Anthropic's workload-identity
/// federation; see the [module docs](self) for the protocol and the refresh
/// policy.
///
/// `Debug` shows the configuration, never a token.
///
/// ```
/// use skillgate::upstream::FederatedCredential;
/// let c = FederatedCredential::builder("http://127.0.0.1:8081")
///     .identity_token_file("/var/run/secrets/anthropic/token")
///     .federation_rule_id("fdrl_01AbCdEf")
///     .organization_id("00000000-0000-4000-8000-000000000000")
///     .build()
///     .unwrap();
/// assert_eq!(c.token_endpoint(), "http://127.0.0.1:8081/v1/oauth/token");
/// ```
#[derive(Clone)]
pub struct FederatedCredential {
    inner: Arc<Inner>,
}

struct Inner {
    client: HttpsClient,
    token_uri: Uri,
    identity_token_file: PathBuf,
    federation_rule_id: String,
    organization_id: String,
    service_account_id: Option<String>,
    workspace_id: Option<String>,
    advisory: Duration,
    mandatory: Duration,
    timeout: Duration,
    state: Mutex<State>,
}

/// The exchange in flight, shared by every caller waiting for it.
type Flight = Shared<BoxFuture<'static, Result<AccessToken, CredentialError>>>;

#[derive(Default)]
struct State {
    cached: Option<AccessToken>,
    flight: Option<Flight>,
    last_advisory_failure: Option<Instant>,
}

#[derive(Clone)]
struct AccessToken {
    token: SecretString,
    expires_at: Instant,
}

impl AccessToken {
    fn credential(&self) -> Credential {
        Credential::OAuthBearer(self.token.clone())
    }
}

/// Builder for [`FederatedCredential`]; the identity token file, the
/// federation rule id and the organization id are required.
///
/// ```
/// use std::time::Duration;
/// use skillgate::upstream::FederatedCredential;
/// let c = FederatedCredential::builder("https://api.anthropic.com")
///     .identity_token_file("/var/run/secrets/anthropic/token")
///     .federation_rule_id("fdrl_01AbCdEf")
///     .organization_id("00000000-0000-4000-8000-000000000000")
///     .workspace_id("default")
///     .advisory_refresh(Duration::from_secs(120))
///     .mandatory_refresh(Duration::from_secs(30))
///     .timeout(Duration::from_secs(30))
///     .build();
/// assert!(c.is_ok());
/// ```
#[derive(Debug, Clone)]
pub struct FederatedCredentialBuilder {
    url: String,
    identity_token_file: Option<PathBuf>,
    federation_rule_id: Option<String>,
    organization_id: Option<String>,
    service_account_id: Option<String>,
    workspace_id: Option<String>,
    advisory: Duration,
    mandatory: Duration,
    timeout: Duration,
}

impl FederatedCredential {
    /// Starts a builder whose token endpoint is `{url}/v1/oauth/token`; `url`
    /// is the upstream API's base URL (the access token is only valid there).
    pub fn builder(url: impl Into<String>) -> FederatedCredentialBuilder {
        FederatedCredentialBuilder {
            url: url.into(),
            identity_token_file: None,
            federation_rule_id: None,
            organization_id: None,
            service_account_id: None,
            workspace_id: None,
            advisory: DEFAULT_ADVISORY_REFRESH,
            mandatory: DEFAULT_MANDATORY_REFRESH,
            timeout: DEFAULT_EXCHANGE_TIMEOUT,
        }
    }

    /// The full token endpoint URL.
    pub fn token_endpoint(&self) -> String {
        self.inner.token_uri.to_string()
    }
}

impl std::fmt::Debug for FederatedCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = &self.inner;
        f.debug_struct("FederatedCredential")
            .field("token_endpoint", &i.token_uri.to_string())
            .field("identity_token_file", &i.identity_token_file)
            .field("federation_rule_id", &i.federation_rule_id)
            .field("organization_id", &i.organization_id)
            .field("service_account_id", &i.service_account_id)
            .field("workspace_id", &i.workspace_id)
            .finish_non_exhaustive()
    }
}

impl FederatedCredentialBuilder {
    /// The file holding the identity token (a JWT), re-read for every
    /// exchange; surrounding whitespace is ignored. Required.
    pub fn identity_token_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.identity_token_file = Some(path.into());
        self
    }

    /// The federation rule that admits the identity token (`fdrl_…`). Required.
    pub fn federation_rule_id(mut self, id: impl Into<String>) -> Self {
        self.federation_rule_id = Some(id.into());
        self
    }

    /// The organization's UUID. Required.
    pub fn organization_id(mut self, id: impl Into<String>) -> Self {
        self.organization_id = Some(id.into());
        self
    }

    /// The service account to act as, when the rule needs it to be named.
    pub fn service_account_id(mut self, id: impl Into<String>) -> Self {
        self.service_account_id = Some(id.into());
        self
    }

    /// The workspace to scope the token to (`wrkspc_…` or `default`); by
    /// default the server picks the rule's workspace.
    pub fn workspace_id(mut self, id: impl Into<String>) -> Self {
        self.workspace_id = Some(id.into());
        self
    }

    /// How long before expiry a refresh is first attempted (default
    /// [`DEFAULT_ADVISORY_REFRESH`]).
    pub fn advisory_refresh(mut self, before_expiry: Duration) -> Self {
        self.advisory = before_expiry;
        self
    }

    /// How long before expiry the cached token stops being served (default
    /// [`DEFAULT_MANDATORY_REFRESH`]). Covers the time a token needs to reach
    /// the API and clock skew.
    pub fn mandatory_refresh(mut self, before_expiry: Duration) -> Self {
        self.mandatory = before_expiry;
        self
    }

    /// Limit on one exchange, reading the response included (default
    /// [`DEFAULT_EXCHANGE_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Builds the source. No exchange happens until the first
    /// [`credential`](CredentialSource::credential) call.
    ///
    /// # Errors
    /// [`UpstreamConfigError::BadUrl`] for a URL that is not absolute
    /// `http(s)`; [`UpstreamConfigError::CleartextTokenEndpoint`] for plain
    /// `http` to anything but `localhost`, `127.0.0.1` or `[::1]` (the
    /// exchange carries the identity token; the SDK refuses the same);
    /// [`UpstreamConfigError::Incomplete`] when a required value is missing
    /// or empty; [`UpstreamConfigError::Tls`] without TLS roots.
    pub fn build(self) -> Result<FederatedCredential, UpstreamConfigError> {
        let base: Uri = self
            .url
            .trim_end_matches('/')
            .parse()
            .map_err(|_| UpstreamConfigError::BadUrl)?;
        let scheme = base.scheme().cloned().ok_or(UpstreamConfigError::BadUrl)?;
        let authority = base
            .authority()
            .cloned()
            .ok_or(UpstreamConfigError::BadUrl)?;
        if scheme == http::uri::Scheme::HTTP {
            if !matches!(authority.host(), "localhost" | "127.0.0.1" | "[::1]") {
                return Err(UpstreamConfigError::CleartextTokenEndpoint);
            }
        } else if scheme != http::uri::Scheme::HTTPS {
            return Err(UpstreamConfigError::BadUrl);
        }
        let token_uri = Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query(format!(
                "{}{TOKEN_ENDPOINT_PATH}",
                base.path().trim_end_matches('/')
            ))
            .build()
            .map_err(|_| UpstreamConfigError::BadUrl)?;
        let identity_token_file = self
            .identity_token_file
            .filter(|p| !p.as_os_str().is_empty())
            .ok_or(UpstreamConfigError::Incomplete("identity_token_file"))?;
        let federation_rule_id = non_empty(self.federation_rule_id)
            .ok_or(UpstreamConfigError::Incomplete("federation_rule_id"))?;
        let organization_id = non_empty(self.organization_id)
            .ok_or(UpstreamConfigError::Incomplete("organization_id"))?;
        let client = https_client().map_err(|e| UpstreamConfigError::Tls(e.to_string()))?;
        Ok(FederatedCredential {
            inner: Arc::new(Inner {
                client,
                token_uri,
                identity_token_file,
                federation_rule_id,
                organization_id,
                service_account_id: non_empty(self.service_account_id),
                workspace_id: non_empty(self.workspace_id),
                advisory: self.advisory,
                mandatory: self.mandatory,
                timeout: self.timeout,
                state: Mutex::new(State::default()),
            }),
        })
    }
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

fn exchange_error(status: Option<u16>, message: impl Into<String>) -> CredentialError {
    CredentialError::Exchange {
        status,
        message: message.into(),
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the one exchange on its own task; the caller holds the state
    /// lock and stores the flight, and the task publishes its token and
    /// clears the flight when done.
    fn start_flight(self: &Arc<Self>) -> Flight {
        let inner = Arc::clone(self);
        let task = tokio::spawn(async move {
            let result = inner.exchange_with_retry().await;
            let mut state = inner.lock();
            if let Ok(token) = &result {
                state.cached = Some(token.clone());
            }
            state.flight = None;
            result
        });
        async move {
            task.await.unwrap_or_else(|_| {
                Err(exchange_error(None, "the token exchange task was aborted"))
            })
        }
        .boxed()
        .shared()
    }

    /// One exchange, and one more if the endpoint answered 401 (the SDK's
    /// `TokenCache._call_provider`; the identity token file is re-read, so a
    /// token rotated in the meantime is used).
    async fn exchange_with_retry(&self) -> Result<AccessToken, CredentialError> {
        match self.exchange().await {
            Err(CredentialError::Exchange {
                status: Some(401), ..
            }) => {
                tracing::debug!("token endpoint answered 401; retrying the exchange once");
                self.exchange().await
            }
            other => other,
        }
    }

    async fn read_identity_token(&self) -> Result<SecretString, CredentialError> {
        let shown = self.identity_token_file.display();
        let unreadable = |e: std::io::Error| {
            CredentialError::Unreadable(format!("identity token file {shown}: {}", e.kind()))
        };
        let file = tokio::fs::File::open(&self.identity_token_file)
            .await
            .map_err(unreadable)?;
        // Whitespace around the token is allowed, within reason.
        let limit = 2 * MAX_ASSERTION_BYTES;
        let mut raw = Vec::new();
        file.take(limit as u64 + 1)
            .read_to_end(&mut raw)
            .await
            .map_err(unreadable)?;
        let too_large = || {
            CredentialError::Unreadable(format!(
                "identity token file {shown} holds more than {MAX_ASSERTION_BYTES} bytes; \
                 not a JWT (point it at the projected token, not a key or certificate)"
            ))
        };
        if raw.len() > limit {
            return Err(too_large());
        }
        let text = String::from_utf8(raw).map_err(|_| {
            CredentialError::Unreadable(format!("identity token file {shown} is not UTF-8"))
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(CredentialError::Missing(format!(
                "identity token file {shown} is empty"
            )));
        }
        if token.len() > MAX_ASSERTION_BYTES {
            return Err(too_large());
        }
        Ok(SecretString::from(token.to_owned()))
    }

    fn request_body(&self, assertion: &SecretString) -> Vec<u8> {
        let mut body = Map::new();
        body.insert("grant_type".into(), JWT_BEARER_GRANT_TYPE.into());
        body.insert("assertion".into(), assertion.expose_secret().into());
        body.insert(
            "federation_rule_id".into(),
            self.federation_rule_id.clone().into(),
        );
        body.insert(
            "organization_id".into(),
            self.organization_id.clone().into(),
        );
        if let Some(id) = &self.service_account_id {
            body.insert("service_account_id".into(), id.clone().into());
        }
        if let Some(id) = &self.workspace_id {
            body.insert("workspace_id".into(), id.clone().into());
        }
        Value::Object(body).to_string().into_bytes()
    }

    async fn exchange(&self) -> Result<AccessToken, CredentialError> {
        let assertion = self.read_identity_token().await?;
        let endpoint = &self.token_uri;
        let mut request = Request::post(endpoint.clone())
            .header("anthropic-beta", exchange_beta())
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                concat!("skillgate/", env!("CARGO_PKG_VERSION")),
            )
            .body(Body::from(self.request_body(&assertion)))
            .map_err(|_| exchange_error(None, format!("cannot build a request to {endpoint}")))?;
        request.headers_mut().insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        let call = async {
            let response = self.client.request(request).await.map_err(|e| {
                exchange_error(None, format!("cannot reach token endpoint {endpoint}: {e}"))
            })?;
            let status = response.status().as_u16();
            let request_id = response
                .headers()
                .get("request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = collect_limited(Body::new(response.into_body()), MAX_RESPONSE_BYTES)
                .await
                .map_err(|_| {
                    exchange_error(
                        Some(status),
                        format!(
                            "token endpoint response unreadable or over {MAX_RESPONSE_BYTES} bytes"
                        ),
                    )
                })?;
            Ok::<_, CredentialError>((status, request_id, body))
        };
        let (status, request_id, body) =
            tokio::time::timeout(self.timeout, call)
                .await
                .map_err(|_| {
                    exchange_error(
                        None,
                        format!(
                            "token endpoint {endpoint} did not answer within {:?}",
                            self.timeout
                        ),
                    )
                })??;
        let received = Instant::now();
        let parsed = parse_token_response(status, &body, assertion.expose_secret());
        match parsed {
            Ok((token, expires_in)) => {
                tracing::debug!(
                    expires_in_secs = expires_in.as_secs(),
                    request_id = request_id.as_deref().unwrap_or(""),
                    "upstream access token obtained by federation"
                );
                Ok(AccessToken {
                    token,
                    expires_at: received + expires_in,
                })
            }
            Err(CredentialError::Exchange { status, message }) => {
                let message = match request_id {
                    Some(id) => format!("{message} [request_id={}]", printable(&id)),
                    None => message,
                };
                tracing::warn!(status, error = %message, "upstream token exchange failed");
                Err(CredentialError::Exchange { status, message })
            }
            Err(other) => Err(other),
        }
    }
}

/// Reads a token-endpoint answer the way the SDK does: status ≥ 400 is an
/// error (RFC 6749 §5.2 body, redacted); otherwise a JSON object with a
/// string `access_token`, an `expires_in` that is a number of seconds (or a
/// string holding one), and no `token_type` other than `Bearer`.
fn parse_token_response(
    status: u16,
    body: &[u8],
    assertion: &str,
) -> Result<(SecretString, Duration), CredentialError> {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    if status >= 400 {
        let detail = json
            .as_ref()
            .and_then(|v| error_detail(v, assertion))
            .unwrap_or_else(|| format!("{} bytes of non-RFC 6749 error body", body.len()));
        let mut message = format!("token exchange refused (HTTP {status}): {detail}");
        if status == 401 {
            message.push_str(
                " (check that the federation rule matches the identity token's issuer, \
                 subject and audience, and set workspace_id if the rule covers several workspaces)",
            );
        }
        return Err(exchange_error(Some(status), message));
    }
    let Some(Value::Object(data)) = json else {
        return Err(exchange_error(
            Some(status),
            format!("token endpoint answered HTTP {status} without a JSON object"),
        ));
    };
    if let Some(kind) = data.get("token_type").filter(|t| !t.is_null()) {
        let bearer = kind
            .as_str()
            .is_some_and(|k| k.eq_ignore_ascii_case("bearer"));
        if !bearer {
            return Err(exchange_error(
                Some(status),
                format!(
                    "token endpoint returned unsupported token_type {} (expected Bearer)",
                    shorten(&printable(&kind.to_string()))
                ),
            ));
        }
    }
    let token = data
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty());
    let expires_in = data.get("expires_in").and_then(seconds);
    match (token, expires_in) {
        (Some(token), Some(secs)) => {
            if HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
                return Err(exchange_error(
                    Some(status),
                    "token endpoint returned an access_token that is not a valid header value",
                ));
            }
            Ok((
                SecretString::from(token.to_owned()),
                Duration::from_secs(secs),
            ))
        }
        _ => Err(exchange_error(
            Some(status),
            "token endpoint response missing required fields (access_token / expires_in)",
        )),
    }
}

/// `expires_in` as whole seconds: a JSON number (fractions dropped, negative
/// meaning already expired) or a string holding an integer, like Python's
/// `int()` in the SDK.
fn seconds(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_i64().map(|i| i.max(0) as u64))
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite())
                    .map(|f| f.max(0.0).min(u64::MAX as f64) as u64)
            }),
        Value::String(s) => s.trim().parse::<i64>().ok().map(|i| i.max(0) as u64),
        _ => None,
    }
}

/// The RFC 6749 §5.2 fields of an error body (or the `error` object of an
/// Anthropic-shaped one), each shortened, and dropped if it echoes any part
/// of the assertion.
fn error_detail(v: &Value, assertion: &str) -> Option<String> {
    let obj = v.as_object()?;
    let (code, description) = match obj.get("error") {
        Some(Value::String(code)) => (
            code.as_str(),
            obj.get("error_description").and_then(Value::as_str),
        ),
        Some(Value::Object(e)) => (
            e.get("type").and_then(Value::as_str)?,
            e.get("message").and_then(Value::as_str),
        ),
        _ => return None,
    };
    let safe = |s: &str| {
        if echoes(s, assertion) {
            "[redacted: echoes the identity token]".to_owned()
        } else {
            shorten(&printable(s))
        }
    };
    Some(match description {
        Some(d) => format!("{}: {}", safe(code), safe(d)),
        None => safe(code),
    })
}

/// Whether `s` contains the assertion or any sizeable segment of it.
fn echoes(s: &str, assertion: &str) -> bool {
    s.contains(assertion)
        || assertion
            .split('.')
            .filter(|part| part.len() >= 16)
            .any(|part| s.contains(part))
}

/// Control characters replaced, so a hostile body cannot forge log lines.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn shorten(s: &str) -> String {
    match s.char_indices().nth(MAX_ERROR_CHARS) {
        Some((cut, _)) => format!("{}… ({} more bytes)", &s[..cut], s.len() - cut),
        None => s.to_owned(),
    }
}

#[async_trait]
impl CredentialSource for FederatedCredential {
    async fn credential(&self) -> Result<Credential, CredentialError> {
        let inner = &self.inner;
        let (flight, fallback) = {
            let mut state = inner.lock();
            let now = Instant::now();
            let mut fallback = None;
            if let Some(token) = &state.cached {
                let remaining = token.expires_at.saturating_duration_since(now);
                if remaining > inner.advisory {
                    return Ok(token.credential());
                }
                if remaining > inner.mandatory {
                    // Advisory window: one caller refreshes, nobody waits.
                    let backing_off = state
                        .last_advisory_failure
                        .is_some_and(|t| now.saturating_duration_since(t) < ADVISORY_BACKOFF);
                    if state.flight.is_some() || backing_off {
                        return Ok(token.credential());
                    }
                    fallback = Some(token.clone());
                }
            }
            let flight = match &state.flight {
                Some(flight) => flight.clone(),
                None => {
                    let flight = inner.start_flight();
                    state.flight = Some(flight.clone());
                    flight
                }
            };
            (flight, fallback)
        };
        match flight.await {
            Ok(token) => Ok(token.credential()),
            Err(error) => match fallback {
                Some(stale) if stale.expires_at > Instant::now() => {
                    tracing::warn!(
                        error = %error,
                        "advisory upstream token refresh failed; serving the cached token"
                    );
                    inner.lock().last_advisory_failure = Some(Instant::now());
                    Ok(stale.credential())
                }
                _ => Err(error),
            },
        }
    }

    fn invalidate(&self, rejected: &Credential) {
        let Credential::OAuthBearer(rejected) = rejected else {
            return;
        };
        let mut state = self.inner.lock();
        if state
            .cached
            .as_ref()
            .is_some_and(|c| c.token.expose_secret() == rejected.expose_secret())
        {
            tracing::info!("the API refused the upstream access token; it will be re-exchanged");
            state.cached = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWT: &str = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJnYXRld2F5LXdvcmtsb2FkIn0.c2lnbmF0dXJlLWJ5dGVzLWhlcmUtYW5kLW1vcmU";

    fn builder() -> FederatedCredentialBuilder {
        FederatedCredential::builder("https://api.example.com")
            .identity_token_file("/tmp/none")
            .federation_rule_id("fdrl_1")
            .organization_id("org-1")
    }

    #[test]
    fn token_endpoint_follows_base_path() {
        let c = FederatedCredential::builder("https://proxy.example.com/anthropic/")
            .identity_token_file("/t")
            .federation_rule_id("fdrl_1")
            .organization_id("org")
            .build()
            .unwrap();
        assert_eq!(
            c.token_endpoint(),
            "https://proxy.example.com/anthropic/v1/oauth/token"
        );
    }

    #[test]
    fn builder_refuses_cleartext_and_incomplete() {
        for url in ["http://api.example.com", "http://10.0.0.1:8080"] {
            assert!(matches!(
                FederatedCredential::builder(url)
                    .identity_token_file("/t")
                    .federation_rule_id("r")
                    .organization_id("o")
                    .build(),
                Err(UpstreamConfigError::CleartextTokenEndpoint)
            ));
        }
        for url in ["http://localhost:1", "http://127.0.0.1:1", "http://[::1]:1"] {
            assert!(
                FederatedCredential::builder(url)
                    .identity_token_file("/t")
                    .federation_rule_id("r")
                    .organization_id("o")
                    .build()
                    .is_ok(),
                "{url}"
            );
        }
        assert!(matches!(
            builder().federation_rule_id("  ").build(),
            Err(UpstreamConfigError::Incomplete("federation_rule_id"))
        ));
        assert!(matches!(
            FederatedCredential::builder("https://x")
                .federation_rule_id("r")
                .organization_id("o")
                .build(),
            Err(UpstreamConfigError::Incomplete("identity_token_file"))
        ));
        assert!(matches!(
            builder().organization_id("").build(),
            Err(UpstreamConfigError::Incomplete("organization_id"))
        ));
        assert!(matches!(builder().build().map(|_| ()), Ok(())));
        assert!(matches!(
            FederatedCredential::builder("ftp://x")
                .identity_token_file("/t")
                .federation_rule_id("r")
                .organization_id("o")
                .build(),
            Err(UpstreamConfigError::BadUrl)
        ));
    }

    #[test]
    fn request_body_is_what_the_sdk_sends() {
        let c = builder().build().unwrap();
        let body: Value =
            serde_json::from_slice(&c.inner.request_body(&SecretString::from(JWT))).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": JWT,
                "federation_rule_id": "fdrl_1",
                "organization_id": "org-1",
            })
        );
        let c = builder()
            .service_account_id("svac_1")
            .workspace_id("default")
            .build()
            .unwrap();
        let body: Value =
            serde_json::from_slice(&c.inner.request_body(&SecretString::from(JWT))).unwrap();
        assert_eq!(body["service_account_id"], "svac_1");
        assert_eq!(body["workspace_id"], "default");
        assert_eq!(
            exchange_beta(),
            "oauth-2025-04-20,oidc-federation-2026-04-01"
        );
    }

    #[test]
    fn token_response_parsing() {
        let ok = |b: &str| parse_token_response(200, b.as_bytes(), JWT);
        let (t, d) =
            ok(r#"{"access_token":"at-1","token_type":"Bearer","expires_in":600}"#).unwrap();
        assert_eq!(t.expose_secret(), "at-1");
        assert_eq!(d, Duration::from_secs(600));
        // token_type is optional and case-insensitive; expires_in may be a float or a string.
        assert_eq!(
            ok(r#"{"access_token":"a","token_type":"bearer","expires_in":59.9}"#)
                .unwrap()
                .1,
            Duration::from_secs(59)
        );
        assert_eq!(
            ok(r#"{"access_token":"a","expires_in":"30"}"#).unwrap().1,
            Duration::from_secs(30)
        );
        assert_eq!(
            ok(r#"{"access_token":"a","expires_in":-5}"#).unwrap().1,
            Duration::ZERO
        );
        for bad in [
            r#"{"access_token":"a","token_type":"mac","expires_in":60}"#,
            r#"{"access_token":"a"}"#,
            r#"{"expires_in":60}"#,
            r#"{"access_token":"","expires_in":60}"#,
            r#"{"access_token":7,"expires_in":60}"#,
            r#"{"access_token":"a","expires_in":true}"#,
            r#"{"access_token":"a\nb","expires_in":60}"#,
            r#"["not", "an", "object"]"#,
            "not json",
        ] {
            let e = ok(bad).unwrap_err();
            assert!(
                matches!(
                    e,
                    CredentialError::Exchange {
                        status: Some(200),
                        ..
                    }
                ),
                "{bad}: {e:?}"
            );
        }
    }

    #[test]
    fn error_bodies_are_summarised_without_secrets() {
        let e = parse_token_response(
            401,
            br#"{"error":"invalid_grant","error_description":"no rule matches"}"#,
            JWT,
        )
        .unwrap_err();
        let CredentialError::Exchange { status, message } = e else {
            panic!("{e:?}")
        };
        assert_eq!(status, Some(401));
        assert!(message.contains("HTTP 401"));
        assert!(message.contains("invalid_grant: no rule matches"));
        assert!(message.contains("federation rule"));

        // An endpoint echoing the assertion (or a segment of it) is not repeated.
        let payload = JWT.split('.').nth(1).unwrap();
        for echo in [JWT.to_owned(), format!("bad payload {payload}")] {
            let body = serde_json::json!({"error": "invalid_grant", "error_description": echo});
            let e = parse_token_response(400, body.to_string().as_bytes(), JWT).unwrap_err();
            let text = e.to_string();
            assert!(!text.contains(payload), "{text}");
            assert!(text.contains("invalid_grant"));
            assert!(text.contains("redacted"));
        }
        // A non-JSON error body is described, not quoted.
        let e = parse_token_response(502, JWT.as_bytes(), JWT).unwrap_err();
        assert!(!e.to_string().contains(payload));
        // Anthropic-shaped errors are read too; long text is cut.
        let long = "x".repeat(1000);
        let body = serde_json::json!({"type": "error", "error": {"type": "invalid_request_error", "message": long}});
        let e = parse_token_response(400, body.to_string().as_bytes(), JWT).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("invalid_request_error"));
        assert!(text.len() < 600, "{}", text.len());
    }

    #[tokio::test]
    async fn identity_token_file_checks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let c = builder().identity_token_file(&path).build().unwrap();
        assert!(matches!(
            c.inner.read_identity_token().await,
            Err(CredentialError::Unreadable(_))
        ));
        std::fs::write(&path, " \n").unwrap();
        assert!(matches!(
            c.inner.read_identity_token().await,
            Err(CredentialError::Missing(_))
        ));
        std::fs::write(&path, format!("\n{JWT}\n")).unwrap();
        assert_eq!(
            c.inner.read_identity_token().await.unwrap().expose_secret(),
            JWT
        );
        std::fs::write(&path, "a".repeat(MAX_ASSERTION_BYTES + 1)).unwrap();
        let e = c.inner.read_identity_token().await.unwrap_err();
        assert!(e.to_string().contains("not a JWT"), "{e}");
        std::fs::write(&path, "a".repeat(10 * MAX_ASSERTION_BYTES)).unwrap();
        assert!(c.inner.read_identity_token().await.is_err());
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(matches!(
            c.inner.read_identity_token().await,
            Err(CredentialError::Unreadable(_))
        ));
    }

    #[tokio::test]
    async fn unreachable_endpoint_fails_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, JWT).unwrap();
        // A port nobody listens on.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let c = FederatedCredential::builder(format!("http://{addr}"))
            .identity_token_file(&path)
            .federation_rule_id("r")
            .organization_id("o")
            .build()
            .unwrap();
        let e = c.credential().await.unwrap_err();
        assert!(
            matches!(e, CredentialError::Exchange { status: None, .. }),
            "{e:?}"
        );
        assert!(!e.to_string().contains(JWT));
        // The failed flight is gone: the next call tries again (and fails again).
        assert!(c.credential().await.is_err());
    }

    #[test]
    fn debug_shows_no_secret() {
        let c = builder().build().unwrap();
        c.inner.lock().cached = Some(AccessToken {
            token: SecretString::from("sk-ant-oat-secret"),
            expires_at: Instant::now() + Duration::from_secs(600),
        });
        let shown = format!("{c:?}");
        assert!(shown.contains("fdrl_1"));
        assert!(!shown.contains("sk-ant-oat-secret"));
    }

    #[tokio::test]
    async fn invalidate_drops_only_the_rejected_token() {
        let c = builder().build().unwrap();
        let fresh = Instant::now() + Duration::from_secs(600);
        c.inner.lock().cached = Some(AccessToken {
            token: SecretString::from("current"),
            expires_at: fresh,
        });
        c.invalidate(&Credential::oauth_bearer("older"));
        c.invalidate(&Credential::api_key("current"));
        assert_eq!(c.credential().await.unwrap().header().1, "Bearer current");
        c.invalidate(&Credential::oauth_bearer("current"));
        assert!(c.inner.lock().cached.is_none());
    }
}
