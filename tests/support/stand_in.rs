//! A local stand-in for the Anthropic API: the one fake the integration tests
//! allow. It is an axum server on `127.0.0.1:0` that speaks the real wire
//! format of the Messages API (<https://docs.anthropic.com/en/api/messages>),
//! its streaming form (<https://docs.anthropic.com/en/api/messages-streaming>)
//! and its errors (<https://docs.anthropic.com/en/api/errors>), and records
//! every request it receives.
//!
//! Replies are deterministic ([`reply_text_for`]), and special model names
//! script failures:
//!
//! | `model` | what happens |
//! | --- | --- |
//! | `stand-in-error-<status>` | that HTTP status with its error type, e.g. 529 `overloaded_error` |
//! | `stand-in-slow` | streams one delta every 200 ms for 60 s; a client that leaves early is counted in [`StandIn::disconnects`] (non-streaming: answers after 60 s) |
//! | `stand-in-midstream-error` | streams `message_start`, then an `error` event (`overloaded_error`) and ends |
//!
//! It also serves the OAuth token endpoint of Anthropic's workload-identity
//! federation, `POST /v1/oauth/token`, as the official SDKs use it: an
//! RFC 7523 `jwt-bearer` grant in a JSON body, with the beta
//! [`FEDERATION_BETA`]. It checks the grant type, that `assertion` is a
//! well-formed, unexpired JWT (not its signature), the federation rule id and
//! the organization id ([`StandInOptions`]); answers RFC 6749 §5.1 tokens
//! (opaque `sk-ant-oat01-…` access tokens, `expires_in` =
//! [`StandInOptions::access_token_lifetime`]) or RFC 6749 §5.2 errors
//! (`400 invalid_request` / `unsupported_grant_type` / `invalid_grant`,
//! `401 invalid_grant` for a rule or organization that does not match); and
//! counts every exchange ([`StandIn::token_exchanges`]). The access tokens
//! are accepted as `Authorization: Bearer` on the API only with the API beta
//! [`OAUTH_BETA`], as the real API does; otherwise, or once expired or
//! revoked ([`StandIn::revoke_access_tokens`]), `401 authentication_error`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::serve::ListenerExt;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::{Value, json};

/// The upstream API key the stand-in accepts by default, in `x-api-key` or as
/// `Authorization: Bearer` (how the official SDKs 2.x send an `api_key`).
pub const STAND_IN_API_KEY: &str = "sk-ant-stand-in-upstream-key";
/// The `anthropic-organization-id` header on every stand-in response.
pub const STAND_IN_ORGANIZATION_ID: &str = "00000000-0000-4000-8000-000000000001";
/// The federation rule id the token endpoint accepts by default.
pub const STAND_IN_FEDERATION_RULE_ID: &str = "fdrl_01StandInFederationRule";
/// The RFC 7523 §2.1 grant type the token endpoint accepts.
pub const JWT_BEARER_GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The beta a `jwt-bearer` exchange must carry in `anthropic-beta`.
pub const FEDERATION_BETA: &str = "oidc-federation-2026-04-01";
/// The beta an API request with an OAuth access token must carry.
pub const OAUTH_BETA: &str = "oauth-2025-04-20";
/// Prefix of the access tokens the token endpoint issues.
pub const ACCESS_TOKEN_PREFIX: &str = "sk-ant-oat01-";
/// Default `expires_in` of issued access tokens (federation tokens live ≤ 10 minutes).
pub const DEFAULT_ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(600);
/// Model that streams one delta every [`SLOW_DELTA_INTERVAL`] for [`SLOW_TOTAL`].
pub const SLOW_MODEL: &str = "stand-in-slow";
/// Model whose stream carries an `error` event right after `message_start`.
pub const MIDSTREAM_ERROR_MODEL: &str = "stand-in-midstream-error";
/// Prefix of the models that answer with a scripted error status.
pub const ERROR_MODEL_PREFIX: &str = "stand-in-error-";
/// Pause between two deltas of [`SLOW_MODEL`].
pub const SLOW_DELTA_INTERVAL: Duration = Duration::from_millis(200);
/// How long a [`SLOW_MODEL`] stream lasts when nobody leaves.
pub const SLOW_TOTAL: Duration = Duration::from_secs(60);
/// Characters per `text_delta` piece.
pub const DELTA_CHARS: usize = 5;
/// Largest request body the stand-in reads; past it, 413 `request_too_large`.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// Pause between two writes in [`Chunking::OddSplits`].
pub const ODD_SPLIT_PAUSE: Duration = Duration::from_millis(1);

/// The model name that scripts `status` (see the module table).
pub fn error_model(status: u16) -> String {
    format!("{ERROR_MODEL_PREFIX}{status}")
}

/// The reply text the stand-in gives for a prompt: deterministic so tests can
/// assert it.
pub fn reply_text_for(last_user_text: &str) -> String {
    format!("stand-in reply to: {last_user_text}")
}

/// The `text_delta` pieces a streamed reply is cut into, in order: runs of
/// [`DELTA_CHARS`] characters (never splitting a character).
pub fn reply_pieces(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(DELTA_CHARS)
        .map(|piece| piece.iter().collect())
        .collect()
}

/// The `usage.input_tokens` the stand-in reports for a request body (and the
/// answer of `count_tokens`): the number of whitespace-separated words in the
/// system prompt and in every message's text, at least 1.
pub fn input_tokens_for(request: &Value) -> u64 {
    let mut words = 0usize;
    if let Some(system) = request.get("system") {
        words += content_text(system).split_whitespace().count();
    }
    if let Some(messages) = request.get("messages").and_then(Value::as_array) {
        for message in messages {
            if let Some(content) = message.get("content") {
                words += content_text(content).split_whitespace().count();
            }
        }
    }
    u64::try_from(words.max(1)).unwrap_or(u64::MAX)
}

/// The error `type` the Anthropic API uses with an HTTP status, for the
/// statuses the stand-in can script.
pub fn error_type_for_status(status: u16) -> Option<&'static str> {
    Some(match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        500 => "api_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        _ => return None,
    })
}

/// How the bytes of a streamed (SSE) reply are written to the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Chunking {
    /// All events that are ready together in one write.
    Whole,
    /// One write per event (what the real API mostly does).
    #[default]
    PerEvent,
    /// Every event cut at awkward offsets (inside `event:`, mid-JSON — which
    /// may fall inside a multi-byte character — and between the two closing
    /// newlines, whose second half goes out with the next event's head), one
    /// write per piece with a [`ODD_SPLIT_PAUSE`] pause so each is flushed.
    OddSplits,
}

/// How a [`StandIn`] behaves.
#[derive(Debug, Clone)]
pub struct StandInOptions {
    /// The only key accepted, in `x-api-key` or as `Authorization: Bearer`.
    pub api_key: String,
    /// How SSE bytes are written.
    pub chunking: Chunking,
    /// Where to listen (default `127.0.0.1:0`, a free port).
    pub bind: SocketAddr,
    /// The only `federation_rule_id` the token endpoint accepts (default
    /// [`STAND_IN_FEDERATION_RULE_ID`]).
    pub federation_rule_id: String,
    /// The only `organization_id` the token endpoint accepts (default
    /// [`STAND_IN_ORGANIZATION_ID`]).
    pub organization_id: String,
    /// `expires_in` of the access tokens issued from now on (default
    /// [`DEFAULT_ACCESS_TOKEN_LIFETIME`]); see also
    /// [`StandIn::set_access_token_lifetime`].
    pub access_token_lifetime: Duration,
}

impl Default for StandInOptions {
    fn default() -> Self {
        StandInOptions {
            api_key: STAND_IN_API_KEY.to_owned(),
            chunking: Chunking::default(),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            federation_rule_id: STAND_IN_FEDERATION_RULE_ID.to_owned(),
            organization_id: STAND_IN_ORGANIZATION_ID.to_owned(),
            access_token_lifetime: DEFAULT_ACCESS_TOKEN_LIFETIME,
        }
    }
}

/// One request as the stand-in received it.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    /// `POST`, `GET`, …
    pub method: String,
    /// Path with its query string, e.g. `/v1/messages?beta=true`.
    pub path_and_query: String,
    /// Every header as received.
    pub headers: HeaderMap,
    /// The body bytes (empty if none, or if it was too large to read).
    pub body: Bytes,
}

impl ReceivedRequest {
    /// The body as JSON; panics with the body's text when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "stand-in: request body of {} {} is not JSON ({err}): {:?}",
                self.method,
                self.path_and_query,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// A header's value as text, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

struct Shared {
    options: StandInOptions,
    received: Mutex<Vec<ReceivedRequest>>,
    disconnects: AtomicUsize,
    completed_streams: AtomicUsize,
    token_exchanges: AtomicUsize,
    access_token_lifetime: Mutex<Duration>,
    access_tokens: Mutex<HashMap<String, IssuedToken>>,
    replay: Mutex<Option<String>>,
}

/// An access token the token endpoint issued.
struct IssuedToken {
    expires_at: Instant,
    revoked: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not hide what was recorded.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running stand-in; the server stops when this is dropped.
pub struct StandIn {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl StandIn {
    /// Starts a stand-in that accepts [`STAND_IN_API_KEY`] and writes one
    /// event per write.
    pub async fn start() -> StandIn {
        StandIn::start_with(StandInOptions::default()).await
    }

    /// Starts a stand-in with `options`.
    pub async fn start_with(options: StandInOptions) -> StandIn {
        let listener = tokio::net::TcpListener::bind(options.bind)
            .await
            .unwrap_or_else(|e| panic!("stand-in: cannot bind {}: {e}", options.bind));
        let addr = listener
            .local_addr()
            .expect("stand-in: listener has no local address");
        let shared = Arc::new(Shared {
            access_token_lifetime: Mutex::new(options.access_token_lifetime),
            options,
            received: Mutex::new(Vec::new()),
            disconnects: AtomicUsize::new(0),
            completed_streams: AtomicUsize::new(0),
            token_exchanges: AtomicUsize::new(0),
            access_tokens: Mutex::new(HashMap::new()),
            replay: Mutex::new(None),
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        // Small SSE writes must leave at once, not wait for Nagle.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let server = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                eprintln!("stand-in: server stopped: {err}");
            }
        });
        StandIn {
            addr,
            shared,
            server,
        }
    }

    /// From now on, every streamed `POST /v1/messages` is answered with
    /// exactly this SSE transcript (one write per event, bytes verbatim);
    /// `None` goes back to the normal reply.
    pub fn set_replay(&self, transcript: Option<&str>) {
        *lock(&self.shared.replay) = transcript.map(str::to_owned);
    }

    /// `http://127.0.0.1:PORT`, with no trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request seen so far, in arrival order.
    pub fn received(&self) -> Vec<ReceivedRequest> {
        lock(&self.shared.received).clone()
    }

    /// Streams whose client went away before the stream's end (and
    /// non-streaming [`SLOW_MODEL`] requests abandoned before the answer).
    pub fn disconnects(&self) -> usize {
        self.shared.disconnects.load(Ordering::SeqCst)
    }

    /// Streams whose every byte was handed to the connection.
    pub fn completed_streams(&self) -> usize {
        self.shared.completed_streams.load(Ordering::SeqCst)
    }

    /// Requests received at `POST /v1/oauth/token`, refused ones included.
    pub fn token_exchanges(&self) -> usize {
        self.shared.token_exchanges.load(Ordering::SeqCst)
    }

    /// Access tokens issued so far.
    pub fn access_tokens_issued(&self) -> usize {
        lock(&self.shared.access_tokens).len()
    }

    /// The `expires_in` of access tokens issued from now on.
    pub fn set_access_token_lifetime(&self, lifetime: Duration) {
        *lock(&self.shared.access_token_lifetime) = lifetime;
    }

    /// Revokes every access token issued so far: the API answers them with
    /// `401 authentication_error` from now on.
    pub fn revoke_access_tokens(&self) {
        for token in lock(&self.shared.access_tokens).values_mut() {
            token.revoked = true;
        }
    }

    /// Waits until [`StandIn::disconnects`] reaches `count`, for at most
    /// `timeout`; tells whether it did. The stand-in notices a client leaving
    /// at its next write or pause, so allow a few hundred milliseconds.
    pub async fn wait_for_disconnects(&self, count: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.disconnects() >= count {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::now_v7().simple())
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let request_id = new_id("req_");
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_else(|| parts.uri.path().to_owned());
    let (body, too_large) = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => (bytes, false),
        Err(_) => (Bytes::new(), true),
    };
    lock(&shared.received).push(ReceivedRequest {
        method: parts.method.to_string(),
        path_and_query,
        headers: parts.headers.clone(),
        body: body.clone(),
    });

    let mut response = if too_large {
        error_response(
            413,
            "Request exceeds the maximum allowed number of bytes.",
            &request_id,
        )
    } else {
        let call = Call {
            shared: &shared,
            request_id: &request_id,
        };
        call.route(&parts.method, parts.uri.path(), &parts.headers, &body)
            .await
    };
    let headers = response.headers_mut();
    headers.insert(
        "request-id",
        HeaderValue::from_str(&request_id).expect("request id is a valid header value"),
    );
    headers.insert(
        "anthropic-organization-id",
        HeaderValue::from_static(STAND_IN_ORGANIZATION_ID),
    );
    response
}

/// One request being answered: where to count, and the id to report.
struct Call<'a> {
    shared: &'a Arc<Shared>,
    request_id: &'a str,
}

impl Call<'_> {
    fn error(&self, status: u16, message: &str) -> Response {
        error_response(status, message, self.request_id)
    }

    async fn route(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Response {
        if *method == Method::POST && path == "/v1/oauth/token" {
            return self.token_exchange(headers, body);
        }
        // The key may come as `x-api-key` or, as the official SDKs 2.x send
        // it, as `Authorization: Bearer`; `x-api-key` wins when both are set.
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
        let api_key = headers.get("x-api-key").map(HeaderValue::as_bytes);
        match (api_key, bearer) {
            (None, Some(token)) if token.starts_with(ACCESS_TOKEN_PREFIX.as_bytes()) => {
                if let Some(refusal) = self.check_access_token(token, headers) {
                    return refusal;
                }
            }
            _ => match api_key.or(bearer) {
                None => return self.error(401, "x-api-key header is required"),
                Some(key) if key != self.shared.options.api_key.as_bytes() => {
                    return self.error(401, "invalid x-api-key");
                }
                Some(_) => {}
            },
        }
        if !headers.contains_key("anthropic-version") {
            return self.error(400, "anthropic-version: header is required");
        }
        match (method, path) {
            (&Method::POST, "/v1/messages") => self.messages(body).await,
            (&Method::POST, "/v1/messages/count_tokens") => self.count_tokens(body),
            (&Method::GET, "/v1/models") => json_response(StatusCode::OK, &models_page()),
            (&Method::GET, p) if p.starts_with("/v1/models/") => {
                let id = &p["/v1/models/".len()..];
                match models().into_iter().find(|m| m["id"] == id) {
                    Some(model) => json_response(StatusCode::OK, &model),
                    None => self.error(404, &format!("model: {id}")),
                }
            }
            _ => self.error(404, "Not Found"),
        }
    }

    /// An OAuth access token on the API: needs the [`OAUTH_BETA`] beta, and
    /// must be one this stand-in issued, unexpired and unrevoked. `None` when
    /// it is accepted.
    fn check_access_token(&self, token: &[u8], headers: &HeaderMap) -> Option<Response> {
        if !beta_flags(headers).iter().any(|f| f == OAUTH_BETA) {
            return Some(self.error(401, "OAuth authentication is currently not supported."));
        }
        let token = std::str::from_utf8(token).ok()?;
        let tokens = lock(&self.shared.access_tokens);
        match tokens.get(token) {
            Some(t) if t.revoked => Some(self.error(401, "Invalid bearer token")),
            Some(t) if t.expires_at <= Instant::now() => Some(self.error(
                401,
                "OAuth token has expired. Please obtain a new token or refresh your existing token.",
            )),
            Some(_) => None,
            None => Some(self.error(401, "Invalid bearer token")),
        }
    }

    /// `POST /v1/oauth/token`: the RFC 7523 `jwt-bearer` exchange.
    fn token_exchange(&self, headers: &HeaderMap, body: &Bytes) -> Response {
        self.shared.token_exchanges.fetch_add(1, Ordering::SeqCst);
        let refuse =
            |status: u16, error: &str, description: &str| oauth_error(status, error, description);
        if !beta_flags(headers).iter().any(|f| f == FEDERATION_BETA) {
            return refuse(
                400,
                "invalid_request",
                "jwt-bearer grants require the anthropic-beta header oidc-federation-2026-04-01",
            );
        }
        let json_body = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim()
                    .to_ascii_lowercase()
                    .starts_with("application/json")
            });
        if !json_body {
            return refuse(
                400,
                "invalid_request",
                "content-type must be application/json",
            );
        }
        let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(body) else {
            return refuse(400, "invalid_request", "the body must be a JSON object");
        };
        let field = |name: &str| {
            request
                .get(name)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
        };
        match field("grant_type") {
            None => return refuse(400, "invalid_request", "grant_type is required"),
            Some(JWT_BEARER_GRANT_TYPE) => {}
            Some(_) => {
                return refuse(
                    400,
                    "unsupported_grant_type",
                    "only jwt-bearer is supported here",
                );
            }
        }
        for name in ["assertion", "federation_rule_id", "organization_id"] {
            if field(name).is_none() {
                return refuse(400, "invalid_request", &format!("{name} is required"));
            }
        }
        for name in ["service_account_id", "workspace_id"] {
            if request.contains_key(name) && field(name).is_none() {
                return refuse(
                    400,
                    "invalid_request",
                    &format!("{name} must be a non-empty string"),
                );
            }
        }
        let Some(claims) = field("assertion").and_then(jwt_claims) else {
            return refuse(
                400,
                "invalid_grant",
                "the assertion is not a well-formed JWT",
            );
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if claims
            .get("exp")
            .and_then(Value::as_u64)
            .is_none_or(|exp| exp <= now)
        {
            return refuse(
                400,
                "invalid_grant",
                "the assertion has expired or has no exp",
            );
        }
        if field("federation_rule_id") != Some(self.shared.options.federation_rule_id.as_str())
            || field("organization_id") != Some(self.shared.options.organization_id.as_str())
        {
            return refuse(
                401,
                "invalid_grant",
                "no federation rule of this organization matches the assertion",
            );
        }
        let lifetime = *lock(&self.shared.access_token_lifetime);
        let token = format!("{ACCESS_TOKEN_PREFIX}{}", uuid::Uuid::now_v7().simple());
        lock(&self.shared.access_tokens).insert(
            token.clone(),
            IssuedToken {
                expires_at: Instant::now() + lifetime,
                revoked: false,
            },
        );
        let mut response = json_response(
            StatusCode::OK,
            &json!({
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": lifetime.as_secs(),
            }),
        );
        no_store(&mut response);
        response
    }

    /// Parses a JSON object body, or gives the 400 the API gives.
    fn parse_object(&self, body: &Bytes) -> Result<Value, Box<Response>> {
        let message = match serde_json::from_slice::<Value>(body) {
            Ok(value @ Value::Object(_)) => return Ok(value),
            Ok(_) => "Request body must be a JSON object".to_owned(),
            Err(err) => format!("There was an error parsing the body: {err}"),
        };
        Err(Box::new(self.error(400, &message)))
    }

    /// Checks the fields every Messages request needs; `None` when fine.
    fn validate(&self, request: &Value, needs_max_tokens: bool) -> Option<Response> {
        if !request.get("model").is_some_and(Value::is_string) {
            return Some(self.error(400, "model: Field required"));
        }
        if needs_max_tokens && !request.get("max_tokens").is_some_and(Value::is_u64) {
            return Some(self.error(400, "max_tokens: Field required"));
        }
        match request.get("messages").and_then(Value::as_array) {
            None => Some(self.error(400, "messages: Field required")),
            Some(list) if list.is_empty() => {
                Some(self.error(400, "messages: at least one message is required"))
            }
            Some(_) => None,
        }
    }

    /// The scripted error for a `stand-in-error-<status>` model, if it is one.
    fn scripted_error(&self, model: &str) -> Option<Response> {
        let status = model.strip_prefix(ERROR_MODEL_PREFIX)?;
        let Some(status) = status
            .parse::<u16>()
            .ok()
            .filter(|s| error_type_for_status(*s).is_some())
        else {
            return Some(self.error(400, &format!("stand-in cannot script status {status:?}")));
        };
        let message = match status {
            400 => "stand-in scripted invalid request",
            401 => "invalid x-api-key",
            403 => "Your API key does not have permission to use the specified resource.",
            404 => "The requested resource could not be found.",
            413 => "Request exceeds the maximum allowed number of bytes.",
            429 => "Number of request tokens has exceeded your per-minute rate limit",
            500 => "Internal server error",
            504 => "Request timed out",
            _ => "Overloaded",
        };
        let mut response = self.error(status, message);
        if status == 429 {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        Some(response)
    }

    async fn messages(&self, body: &Bytes) -> Response {
        let request = match self.parse_object(body) {
            Ok(request) => request,
            Err(response) => return *response,
        };
        if let Some(response) = self.validate(&request, true) {
            return response;
        }
        let model = request["model"].as_str().unwrap_or_default().to_owned();
        if let Some(response) = self.scripted_error(&model) {
            return response;
        }
        let stream = request.get("stream").and_then(Value::as_bool) == Some(true);
        let input_tokens = input_tokens_for(&request);
        let prompt = last_user_text(&request);

        let replay = lock(&self.shared.replay).clone();
        if let (true, Some(transcript)) = (stream, replay) {
            let events = transcript
                .split_inclusive("\n\n")
                .map(|e| Event {
                    pause_before: Duration::ZERO,
                    bytes: Bytes::from(e.to_owned()),
                })
                .collect();
            return sse_response(self.shared, events);
        }
        if stream {
            let events = stream_events(&model, &prompt, input_tokens);
            return sse_response(self.shared, events);
        }
        if model == SLOW_MODEL {
            // Counted as a disconnect if the client leaves and the server
            // drops this handler before the answer.
            let guard = LeaveGuard::new(self.shared);
            tokio::time::sleep(SLOW_TOTAL).await;
            guard.finish();
        }
        let text = reply_text_for(&prompt);
        let output_tokens = reply_pieces(&text).len() as u64;
        let message = json!({
            "id": new_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": usage(input_tokens, output_tokens),
        });
        json_response(StatusCode::OK, &message)
    }

    fn count_tokens(&self, body: &Bytes) -> Response {
        let request = match self.parse_object(body) {
            Ok(request) => request,
            Err(response) => return *response,
        };
        if let Some(response) = self.validate(&request, false) {
            return response;
        }
        if let Some(response) = self.scripted_error(request["model"].as_str().unwrap_or_default()) {
            return response;
        }
        json_response(
            StatusCode::OK,
            &json!({"input_tokens": input_tokens_for(&request)}),
        )
    }
}

fn usage(input_tokens: u64, output_tokens: u64) -> Value {
    json!({
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "service_tier": "standard",
    })
}

/// Text of a `content` (or `system`) value: a string, or the `text` of its
/// text blocks joined with newlines.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|block| block.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|block| block.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// The text of the last `user` message.
fn last_user_text(request: &Value) -> String {
    request["messages"]
        .as_array()
        .and_then(|messages| {
            messages
                .iter()
                .rev()
                .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        })
        .and_then(|message| message.get("content"))
        .map(content_text)
        .unwrap_or_default()
}

/// One SSE event and the pause before it is written.
struct Event {
    pause_before: Duration,
    bytes: Bytes,
}

fn event(name: &str, data: &Value) -> Event {
    Event {
        pause_before: Duration::ZERO,
        bytes: Bytes::from(format!("event: {name}\ndata: {data}\n\n")),
    }
}

fn stream_events(model: &str, prompt: &str, input_tokens: u64) -> Vec<Event> {
    let message_start = event(
        "message_start",
        &json!({
            "type": "message_start",
            "message": {
                "id": new_id("msg_"),
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": usage(input_tokens, 1),
            },
        }),
    );
    if model == MIDSTREAM_ERROR_MODEL {
        return vec![
            message_start,
            event(
                "error",
                &json!({
                    "type": "error",
                    "error": {"type": "overloaded_error", "message": "Overloaded"},
                }),
            ),
        ];
    }

    let (pieces, pause) = if model == SLOW_MODEL {
        let ticks = (SLOW_TOTAL.as_millis() / SLOW_DELTA_INTERVAL.as_millis()) as usize;
        let pieces = (1..=ticks).map(|i| format!("tick {i} ")).collect();
        (pieces, SLOW_DELTA_INTERVAL)
    } else {
        (reply_pieces(&reply_text_for(prompt)), Duration::ZERO)
    };
    let output_tokens = pieces.len() as u64;

    let mut events = vec![
        message_start,
        event(
            "content_block_start",
            &json!({
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            }),
        ),
        event("ping", &json!({"type": "ping"})),
    ];
    for piece in pieces {
        let mut delta = event(
            "content_block_delta",
            &json!({
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": piece},
            }),
        );
        delta.pause_before = pause;
        events.push(delta);
    }
    events.push(event(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(event(
        "message_delta",
        &json!({
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": output_tokens},
        }),
    ));
    events.push(event("message_stop", &json!({"type": "message_stop"})));
    events
}

/// Turns events into writes according to `chunking`.
fn writes(events: Vec<Event>, chunking: Chunking) -> Vec<Event> {
    match chunking {
        Chunking::PerEvent => events,
        Chunking::Whole => {
            let mut out: Vec<Event> = Vec::new();
            for ev in events {
                match out.last_mut() {
                    Some(last) if ev.pause_before.is_zero() => {
                        let mut joined = Vec::with_capacity(last.bytes.len() + ev.bytes.len());
                        joined.extend_from_slice(&last.bytes);
                        joined.extend_from_slice(&ev.bytes);
                        last.bytes = Bytes::from(joined);
                    }
                    _ => out.push(ev),
                }
            }
            out
        }
        Chunking::OddSplits => {
            let mut out = Vec::new();
            // The second closing newline of the previous event.
            let mut carry = Bytes::new();
            for ev in events {
                let bytes = ev.bytes;
                let len = bytes.len();
                let mid = (len / 2) | 1;
                let head_end = 3.min(len);
                let tail_start = len.saturating_sub(1).max(mid);
                let mut head = Vec::with_capacity(carry.len() + head_end);
                head.extend_from_slice(&carry);
                head.extend_from_slice(&bytes[..head_end]);
                out.push(Event {
                    pause_before: ev.pause_before.max(ODD_SPLIT_PAUSE),
                    bytes: Bytes::from(head),
                });
                for piece in [
                    bytes.slice(head_end..mid.max(head_end)),
                    bytes.slice(mid.max(head_end)..tail_start),
                ] {
                    if !piece.is_empty() {
                        out.push(Event {
                            pause_before: ODD_SPLIT_PAUSE,
                            bytes: piece,
                        });
                    }
                }
                carry = bytes.slice(tail_start..);
            }
            if !carry.is_empty() {
                out.push(Event {
                    pause_before: ODD_SPLIT_PAUSE,
                    bytes: carry,
                });
            }
            out
        }
    }
}

/// Counts a client that leaves before `finish` is called.
struct LeaveGuard<'a> {
    shared: &'a Shared,
    finished: bool,
}

impl<'a> LeaveGuard<'a> {
    fn new(shared: &'a Shared) -> Self {
        LeaveGuard {
            shared,
            finished: false,
        }
    }

    fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for LeaveGuard<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.disconnects.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn sse_response(shared: &Arc<Shared>, events: Vec<Event>) -> Response {
    let writes = writes(events, shared.options.chunking);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(1);
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        let guard = LeaveGuard::new(&shared);
        for write in writes {
            if !write.pause_before.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(write.pause_before) => {}
                    _ = tx.closed() => return,
                }
            }
            if tx.send(Ok(write.bytes)).await.is_err() {
                return;
            }
        }
        guard.finish();
        shared.completed_streams.fetch_add(1, Ordering::SeqCst);
    });
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The flags of every `anthropic-beta` header, trimmed.
fn beta_flags(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("anthropic-beta")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|f| f.trim().to_owned())
        .filter(|f| !f.is_empty())
        .collect()
}

/// The claims of a structurally valid JWS compact JWT (RFC 7519 §7.2:
/// three base64url parts, a JSON header with a non-`none` `alg`, a JSON
/// object payload); the signature is not checked.
fn jwt_claims(token: &str) -> Option<serde_json::Map<String, Value>> {
    let parts: Vec<&str> = token.split('.').collect();
    let [head, payload, signature] = parts.as_slice() else {
        return None;
    };
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).ok();
    decode(signature).filter(|s| !s.is_empty())?;
    let header: Value = serde_json::from_slice(&decode(head)?).ok()?;
    let alg = header.get("alg").and_then(Value::as_str)?;
    if alg.eq_ignore_ascii_case("none") {
        return None;
    }
    match serde_json::from_slice(&decode(payload)?).ok()? {
        Value::Object(claims) => Some(claims),
        _ => None,
    }
}

/// An RFC 6749 §5.2 error response.
fn oauth_error(status: u16, error: &str, description: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = json_response(
        status,
        &json!({"error": error, "error_description": description}),
    );
    no_store(&mut response);
    response
}

/// RFC 6749 §5.1: token responses are not cached.
fn no_store(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    let mut response = Response::new(Body::from(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// An Anthropic-shaped error body, with the id also sent as `request-id`.
fn error_response(status: u16, message: &str, request_id: &str) -> Response {
    let error_type = error_type_for_status(status).unwrap_or("api_error");
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(
        status,
        &json!({
            "type": "error",
            "error": {"type": error_type, "message": message},
            "request_id": request_id,
        }),
    )
}

fn models() -> Vec<Value> {
    [
        (
            "claude-sonnet-4-5-20250929",
            "Claude Sonnet 4.5",
            "2025-09-29T00:00:00Z",
        ),
        (
            "claude-haiku-4-5-20251001",
            "Claude Haiku 4.5",
            "2025-10-15T00:00:00Z",
        ),
        (
            "claude-opus-4-1-20250805",
            "Claude Opus 4.1",
            "2025-08-05T00:00:00Z",
        ),
    ]
    .into_iter()
    .map(|(id, display_name, created_at)| {
        json!({"type": "model", "id": id, "display_name": display_name, "created_at": created_at})
    })
    .collect()
}

fn models_page() -> Value {
    let data = models();
    json!({
        "first_id": data.first().map(|m| m["id"].clone()),
        "last_id": data.last().map(|m| m["id"].clone()),
        "has_more": false,
        "data": data,
    })
}
