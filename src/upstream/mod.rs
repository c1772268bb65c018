//! Forwarding to the Anthropic API: [`Upstream`], a tower `Service` that
//! streams the request and the response, and [`CredentialSource`], which
//! supplies the gateway's own credential.
//!
//! What is forwarded: method, path and query string (`?beta=true` matters),
//! the body bytes unchanged, and only the headers in
//! [`FORWARDED_HEADERS`] plus any `x-stainless-*` SDK telemetry header.
//! Everything else is dropped — hop-by-hop headers, and every caller
//! credential (`authorization`, `x-api-key`, `cookie`,
//! `proxy-authorization`) — and the upstream credential is injected.
//! `accept-encoding` is not forwarded, so responses arrive uncompressed and
//! can be inspected.
//!
//! The gateway's credential comes from a [`CredentialSource`]: a fixed key
//! ([`StaticCredential`]), a key file that may rotate ([`FileCredential`]),
//! or no static key at all — [`FederatedCredential`] exchanges the gateway's
//! own workload identity token for a short-lived access token at the API's
//! `/v1/oauth/token`, as the official SDKs do. With such an access token
//! ([`Credential::OAuthBearer`]) the request also carries the API beta
//! [`OAUTH_BETA`], merged into the caller's `anthropic-beta` values without
//! duplicating one; and a `401` from the API makes the source
//! [invalidate](CredentialSource::invalidate) that token, so the next request
//! uses a fresh one.
//!
//! Upstream responses, errors included, pass through unchanged except for
//! hop-by-hop headers. If the upstream sends no response headers within the
//! first-byte timeout (default 10 minutes, long generations included) the
//! caller gets `504 timeout_error`; if it cannot be reached, `502 api_error`.
//! A caller that disconnects drops the response body, which drops the
//! upstream connection: the upstream request is cancelled.
//!
//! ```
//! use std::time::Duration;
//! use skillgate::upstream::{Credential, StaticCredential, Upstream};
//! let upstream = Upstream::builder("https://api.anthropic.com")
//!     .credential(StaticCredential::new(Credential::api_key("sk-ant-example")))
//!     .first_byte_timeout(Duration::from_secs(600))
//!     .build()
//!     .unwrap();
//! # let _ = upstream;
//! ```

mod credential;
mod federation;

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Request, Response, Uri};
use tower::Service;

pub use credential::{
    Credential, CredentialError, CredentialSource, FileCredential, StaticCredential,
};
pub use federation::{
    DEFAULT_ADVISORY_REFRESH, DEFAULT_EXCHANGE_TIMEOUT, DEFAULT_MANDATORY_REFRESH, FEDERATION_BETA,
    FederatedCredential, FederatedCredentialBuilder, JWT_BEARER_GRANT_TYPE, OAUTH_BETA,
    TOKEN_ENDPOINT_PATH,
};

use crate::body::Body;
use crate::error::Error;
use crate::http_client::{HttpsClient, https_client};
use crate::identity::ResponseFuture;

/// The public Anthropic API.
pub const ANTHROPIC_API_URL: &str = "https://api.anthropic.com";

/// Request headers forwarded upstream (besides `x-stainless-*`).
pub const FORWARDED_HEADERS: [&str; 8] = [
    "anthropic-version",
    "anthropic-beta",
    "content-type",
    "accept",
    "user-agent",
    "x-claude-code-session-id",
    "idempotency-key",
    "x-request-id",
];

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded in either direction.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
];

/// Why an [`Upstream`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamConfigError {
    /// The base URL is not an absolute `http(s)://` URL.
    #[error("upstream URL must be an absolute http(s) URL")]
    BadUrl,
    /// No credential source was configured.
    #[error("no upstream credential source configured")]
    NoCredential,
    /// The TLS client could not be created.
    #[error("TLS client: {0}")]
    Tls(String),
    /// A token endpoint over plain `http` to a host other than `localhost`,
    /// `127.0.0.1` or `[::1]`: the exchange would carry the identity token
    /// in clear text.
    #[error("the token endpoint must use https (plain http only to localhost)")]
    CleartextTokenEndpoint,
    /// A required value is missing or empty (its name).
    #[error("{0} is required")]
    Incomplete(&'static str),
}

/// Forwards requests to the Anthropic API; see the [module docs](self).
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

struct Inner {
    client: HttpsClient,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    base_path: String,
    credential: Arc<dyn CredentialSource>,
    first_byte_timeout: Duration,
}

/// Builder for [`Upstream`].
pub struct UpstreamBuilder {
    url: String,
    credential: Option<Arc<dyn CredentialSource>>,
    first_byte_timeout: Duration,
}

impl Upstream {
    /// Starts a builder for the API at `url` (e.g. [`ANTHROPIC_API_URL`]).
    pub fn builder(url: impl Into<String>) -> UpstreamBuilder {
        UpstreamBuilder {
            url: url.into(),
            credential: None,
            first_byte_timeout: Duration::from_secs(600),
        }
    }
}

impl UpstreamBuilder {
    /// The source of the gateway's credential (required).
    pub fn credential(mut self, c: impl CredentialSource) -> Self {
        self.credential = Some(Arc::new(c));
        self
    }

    /// An already shared credential source.
    pub fn credential_arc(mut self, c: Arc<dyn CredentialSource>) -> Self {
        self.credential = Some(c);
        self
    }

    /// Longest wait for the upstream's response headers (default 600 s).
    pub fn first_byte_timeout(mut self, t: Duration) -> Self {
        self.first_byte_timeout = t;
        self
    }

    /// Builds the service.
    ///
    /// # Errors
    /// [`UpstreamConfigError`] for a bad URL, no credential, or no TLS roots.
    pub fn build(self) -> Result<Upstream, UpstreamConfigError> {
        let uri: Uri = self.url.parse().map_err(|_| UpstreamConfigError::BadUrl)?;
        let scheme = uri.scheme().cloned().ok_or(UpstreamConfigError::BadUrl)?;
        if scheme != http::uri::Scheme::HTTP && scheme != http::uri::Scheme::HTTPS {
            return Err(UpstreamConfigError::BadUrl);
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or(UpstreamConfigError::BadUrl)?;
        let credential = self.credential.ok_or(UpstreamConfigError::NoCredential)?;
        let client = https_client().map_err(|e| UpstreamConfigError::Tls(e.to_string()))?;
        Ok(Upstream {
            inner: Arc::new(Inner {
                client,
                scheme,
                authority,
                base_path: uri.path().trim_end_matches('/').to_owned(),
                credential,
                first_byte_timeout: self.first_byte_timeout,
            }),
        })
    }
}

fn forwarded(name: &HeaderName) -> bool {
    let n = name.as_str();
    FORWARDED_HEADERS.contains(&n) || n.starts_with("x-stainless-")
}

/// Copies the allow-listed request headers.
pub(crate) fn filter_request_headers(src: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (k, v) in src {
        if forwarded(k) {
            out.append(k.clone(), v.clone());
        }
    }
    out
}

/// Adds `flag` to the request's `anthropic-beta` values unless one of them
/// already is exactly `flag` (comma-separated lists, several header lines and
/// surrounding spaces are understood). When added, the values become one
/// comma-separated header, like the SDK's.
pub(crate) fn add_beta(h: &mut HeaderMap, flag: &'static str) {
    const BETA: &str = "anthropic-beta";
    let values: Vec<&HeaderValue> = h.get_all(BETA).iter().collect();
    let mut flags: Vec<String> = Vec::new();
    for v in &values {
        let Ok(text) = v.to_str() else {
            // Not visible ASCII: leave the caller's values alone, add ours.
            h.append(BETA, HeaderValue::from_static(flag));
            return;
        };
        flags.extend(
            text.split(',')
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .map(str::to_owned),
        );
    }
    if flags.iter().any(|f| f == flag) {
        return;
    }
    flags.push(flag.to_owned());
    match HeaderValue::from_str(&flags.join(",")) {
        Ok(v) => {
            h.insert(BETA, v);
        }
        Err(_) => {
            h.append(BETA, HeaderValue::from_static(flag));
        }
    }
}

/// Removes hop-by-hop headers, including any named by `Connection`.
pub(crate) fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        h.remove(n);
    }
}

impl Inner {
    async fn forward(self: Arc<Self>, req: Request<Body>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let pq = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let uri = match Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(format!("{}{}", self.base_path, pq))
            .build()
        {
            Ok(u) => u,
            Err(_) => return Error::InvalidRequest("invalid request path".into()).into_response(),
        };
        let credential = match self.credential.credential().await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "no upstream credential");
                return Error::CredentialUnavailable.into_response();
            }
        };
        let mut out = Request::new(body);
        *out.method_mut() = parts.method;
        *out.uri_mut() = uri;
        *out.headers_mut() = filter_request_headers(&parts.headers);
        out.headers_mut().insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        if let Some(flag) = credential.required_beta() {
            add_beta(out.headers_mut(), flag);
        }
        let (name, value) = credential.header();
        match HeaderValue::from_str(&value) {
            Ok(mut v) => {
                v.set_sensitive(true);
                out.headers_mut().insert(name, v);
            }
            Err(_) => {
                tracing::error!("upstream credential is not a valid header value");
                return Error::CredentialUnavailable.into_response();
            }
        }
        match tokio::time::timeout(self.first_byte_timeout, self.client.request(out)).await {
            Err(_) => Error::UpstreamTimeout.into_response(),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "upstream request failed");
                Error::UpstreamUnavailable.into_response()
            }
            Ok(Ok(res)) => {
                if res.status() == http::StatusCode::UNAUTHORIZED {
                    self.credential.invalidate(&credential);
                }
                let (mut parts, body) = res.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                // The upstream's cookies are for the gateway's session, not the caller's.
                parts.headers.remove(header::SET_COOKIE);
                Response::from_parts(parts, Body::new(body))
            }
        }
    }
}

impl Service<Request<Body>> for Upstream {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move { Ok(inner.forward(req).await) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allow_listed_headers_pass() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Bearer caller"),
            ("x-api-key", "caller"),
            ("cookie", "c=1"),
            ("proxy-authorization", "Basic x"),
            ("anthropic-version", "2023-06-01"),
            ("anthropic-beta", "a,b"),
            ("x-stainless-lang", "python"),
            ("accept-encoding", "gzip"),
            ("x-forwarded-for", "10.0.0.1"),
            ("connection", "close"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let out = filter_request_headers(&h);
        let mut names: Vec<_> = out.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(
            names,
            ["anthropic-beta", "anthropic-version", "x-stainless-lang"]
        );
    }

    #[test]
    fn hop_by_hop_stripped_including_connection_named() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("request-id", HeaderValue::from_static("req_1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("request-id"));
    }

    fn betas(h: &HeaderMap) -> Vec<&str> {
        h.get_all("anthropic-beta")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    #[test]
    fn oauth_beta_is_merged_once() {
        let mut h = HeaderMap::new();
        add_beta(&mut h, OAUTH_BETA);
        assert_eq!(betas(&h), ["oauth-2025-04-20"]);
        add_beta(&mut h, OAUTH_BETA);
        assert_eq!(betas(&h), ["oauth-2025-04-20"]);

        let mut h = HeaderMap::new();
        h.append("anthropic-beta", HeaderValue::from_static("a-1, b-2"));
        h.append("anthropic-beta", HeaderValue::from_static("c-3"));
        add_beta(&mut h, OAUTH_BETA);
        assert_eq!(betas(&h), ["a-1,b-2,c-3,oauth-2025-04-20"]);

        // Already there (in any line, with spaces): untouched.
        let mut h = HeaderMap::new();
        h.append("anthropic-beta", HeaderValue::from_static("x"));
        h.append(
            "anthropic-beta",
            HeaderValue::from_static(" oauth-2025-04-20 ,y"),
        );
        add_beta(&mut h, OAUTH_BETA);
        assert_eq!(betas(&h), ["x", " oauth-2025-04-20 ,y"]);

        // A flag that merely starts with ours is another flag.
        let mut h = HeaderMap::new();
        h.insert(
            "anthropic-beta",
            HeaderValue::from_static("oauth-2025-04-20b"),
        );
        add_beta(&mut h, OAUTH_BETA);
        assert_eq!(betas(&h), ["oauth-2025-04-20b,oauth-2025-04-20"]);
    }

    #[test]
    fn builder_validates() {
        let c = || StaticCredential::new(Credential::api_key("k"));
        assert!(matches!(
            Upstream::builder("not a url").credential(c()).build(),
            Err(UpstreamConfigError::BadUrl)
        ));
        assert!(matches!(
            Upstream::builder("ftp://x").credential(c()).build(),
            Err(UpstreamConfigError::BadUrl)
        ));
        assert!(matches!(
            Upstream::builder("https://x").build(),
            Err(UpstreamConfigError::NoCredential)
        ));
        assert!(
            Upstream::builder("http://127.0.0.1:1/base/")
                .credential(c())
                .build()
                .is_ok()
        );
    }
}
