//! The shared outbound HTTP client (hyper-util + rustls), for upstream calls
//! and key/discovery fetches.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri, header};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::body::{Body, collect_limited};

/// An HTTPS-capable (and plain HTTP) client whose request body is [`Body`].
pub(crate) type HttpsClient = Client<HttpsConnector<HttpConnector>, Body>;

/// Builds a client that trusts the platform's root certificates (so corporate
/// CAs work) and speaks HTTP/1.1 and HTTP/2 via ALPN.
pub(crate) fn https_client() -> std::io::Result<HttpsClient> {
    // The ring provider is the only one compiled in; installing it is
    // idempotent and keeps rustls from guessing.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    let https = HttpsConnectorBuilder::new()
        .with_native_roots()?
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(https))
}

/// Why a JSON document could not be fetched.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("invalid URL")]
    Url,
    #[error("request failed: {0}")]
    Transport(String),
    #[error("timed out")]
    Timeout,
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("body too large or unreadable")]
    Body,
    #[error("not JSON")]
    Json,
}

/// GETs `url` and parses the body as JSON, reading at most `limit` bytes.
pub(crate) async fn get_json(
    client: &HttpsClient,
    url: &str,
    limit: usize,
    timeout: Duration,
) -> Result<serde_json::Value, FetchError> {
    let uri: Uri = url.parse().map_err(|_| FetchError::Url)?;
    let req = Request::get(uri)
        .header(header::ACCEPT, "application/json")
        .header(
            header::USER_AGENT,
            concat!("skillgate/", env!("CARGO_PKG_VERSION")),
        )
        .body(Body::empty())
        .map_err(|_| FetchError::Url)?;
    let fut = async {
        let res = client
            .request(req)
            .await
            .map_err(|e| FetchError::Transport(e.to_string()))?;
        if !res.status().is_success() {
            return Err(FetchError::Status(res.status().as_u16()));
        }
        let bytes: Bytes = collect_limited(Body::new(res.into_body()), limit)
            .await
            .map_err(|_| FetchError::Body)?;
        serde_json::from_slice(&bytes).map_err(|_| FetchError::Json)
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| FetchError::Timeout)?
}
