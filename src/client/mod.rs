//! The client side (feature `reqwest`): skillgate for a Rust skill that calls
//! Claude with [`reqwest`] through [`reqwest_middleware`].
//!
//! - [`MachineIdentity`] attaches the skill's machine identity
//!   (`Authorization: Bearer`) to every request, from a [`TokenSource`]:
//!   a file ([`FileToken`], re-read when it changes), an environment variable
//!   ([`EnvToken`]), the OAuth 2.0 client-credentials grant
//!   ([`ClientCredentials`], cached and renewed before expiry) or the
//!   gateway's own token endpoint ([`GatewayTokenExchange`], RFC 7523). On a
//!   `401` it renews the token once and retries (when the request body can
//!   be replayed).
//! - [`Enforce`] runs skillgate's tower layers — the whole
//!   [`GatewayLayer`](crate::gateway::GatewayLayer) or any stack of your own
//!   — inside the middleware chain, for a skill that calls the Anthropic API
//!   directly but must still decide and record locally. A refusal by the
//!   stack is an `Err` carrying a [`Refusal`]; a streamed answer stays
//!   streamed.
//!
//! ```no_run
//! # #[cfg(feature = "sqlite")] {
//! use skillgate::client::{EnvToken, MachineIdentity};
//!
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! // A skill calling Claude through a skillgate gateway:
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(MachineIdentity::new(EnvToken::new("SKILLGATE_TOKEN")))
//!     .build();
//! let answer = client
//!     .post("http://127.0.0.1:8080/v1/messages")
//!     .header("anthropic-version", "2023-06-01")
//!     .header("content-type", "application/json")
//!     .body(r#"{"model":"claude-sonnet-5","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}"#)
//!     .send()
//!     .await?;
//! println!("{}", answer.text().await?);
//! # Ok(()) }
//! # }
//! ```
//!
//! skillgate turns on no TLS backend of reqwest: enable one on your own
//! `reqwest` dependency (for example `features = ["rustls-tls"]`) to reach
//! `https` identity providers, gateways and APIs.
//!
//! See `docs/embedding.md` and `examples/reqwest_client.rs`.

mod enforce;
mod token;

use std::sync::Arc;

use async_trait::async_trait;
use http::{HeaderValue, StatusCode, header};
use reqwest_middleware::{Middleware, Next};
use secrecy::ExposeSecret;

pub use enforce::{Enforce, Forward, Refusal};
pub use token::{
    ClientAuth, ClientCredentials, DEFAULT_LIFETIME_WITHOUT_EXPIRY, DEFAULT_REFRESH_BEFORE,
    EnvToken, FileToken, GatewayTokenExchange, JWT_BEARER_GRANT_TYPE, TOKEN_REQUEST_TIMEOUT,
    TokenError, TokenSource,
};

/// A reqwest middleware that presents the skill's machine identity.
///
/// Sets `Authorization: Bearer <token>` (marked sensitive) and removes any
/// `x-api-key`, so the identity is the one credential the request carries.
/// When the answer is `401` — from the gateway, or a [`Refusal`] with status
/// 401 from a local [`Enforce`] stack behind it — the source is
/// [invalidated](TokenSource::invalidate) and the request is sent once more
/// with a fresh token, if its body can be replayed (`try_clone`).
///
/// A token source failure is an `Err` carrying the [`TokenError`]; the
/// request is not sent.
///
/// ```
/// use skillgate::client::{FileToken, MachineIdentity};
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(MachineIdentity::new(FileToken::new("/var/run/secrets/tokens/skillgate")))
///     .build();
/// # let _ = client;
/// ```
#[derive(Clone)]
pub struct MachineIdentity {
    source: Arc<dyn TokenSource>,
}

impl std::fmt::Debug for MachineIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MachineIdentity").finish_non_exhaustive()
    }
}

impl MachineIdentity {
    /// Presents tokens from `source`.
    pub fn new(source: impl TokenSource) -> Self {
        MachineIdentity {
            source: Arc::new(source),
        }
    }

    /// Presents tokens from an already shared source.
    pub fn from_arc(source: Arc<dyn TokenSource>) -> Self {
        MachineIdentity { source }
    }

    async fn authorize(&self, req: &mut reqwest::Request) -> reqwest_middleware::Result<()> {
        let token = self
            .source
            .token()
            .await
            .map_err(reqwest_middleware::Error::middleware)?;
        let mut value = HeaderValue::try_from(format!("Bearer {}", token.expose_secret()))
            .map_err(|_| {
                reqwest_middleware::Error::middleware(TokenError::Missing(
                    "the token is not a valid header value".into(),
                ))
            })?;
        value.set_sensitive(true);
        req.headers_mut().insert(header::AUTHORIZATION, value);
        req.headers_mut().remove("x-api-key");
        Ok(())
    }
}

fn unauthorized(res: &reqwest_middleware::Result<reqwest::Response>) -> bool {
    match res {
        Ok(r) => r.status() == StatusCode::UNAUTHORIZED,
        Err(e) => Refusal::from_error(e).is_some_and(|r| r.status == StatusCode::UNAUTHORIZED),
    }
}

#[async_trait]
impl Middleware for MachineIdentity {
    async fn handle(
        &self,
        mut req: reqwest::Request,
        extensions: &mut http::Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let replay = req.try_clone();
        self.authorize(&mut req).await?;
        let res = next.clone().run(req, extensions).await;
        if !unauthorized(&res) {
            return res;
        }
        let Some(mut again) = replay else {
            return res;
        };
        self.source.invalidate();
        self.authorize(&mut again).await?;
        next.run(again, extensions).await
    }
}
