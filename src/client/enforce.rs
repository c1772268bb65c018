//! [`Enforce`]: skillgate's tower layers inside a reqwest-middleware chain.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::Bytes;
use http::StatusCode;
use http_body::Body as _;
use http_body_util::BodyExt;
use reqwest_middleware::{Middleware, Next};
use tokio::sync::{mpsc, oneshot};
use tower::{Layer, Service, ServiceExt};
use uuid::Uuid;

use crate::audit::AuditHandle;
use crate::body::Body;
use crate::error::{ApiErrorBody, Error, ErrorType};
use crate::upstream::CredentialSource;

/// Largest refusal body read to build a [`Refusal`], in bytes (64 KiB).
const MAX_REFUSAL_BYTES: usize = 64 * 1024;
/// Largest request body sent as one replayable buffer rather than a stream, in bytes (32 MiB).
const MAX_REPLAYABLE_BYTES: u64 = 32 * 1024 * 1024;

/// A request the local stack let through, on its way to the next middleware.
struct Outbound {
    request: http::Request<Body>,
    reply: oneshot::Sender<http::Response<Body>>,
}

/// The innermost service of an [`Enforce`] stack: it hands the request to
/// the rest of the reqwest-middleware chain (and so to the network) and
/// returns its answer as a stream. Before that it sets the upstream
/// credential, if [`Enforce::upstream_credential`] configured one.
///
/// Only [`Enforce`] makes these; the type is public so that a stack's
/// service type can be named (`L: Layer<Forward>`).
#[derive(Clone)]
pub struct Forward {
    tx: mpsc::Sender<Outbound>,
    credential: Option<Arc<dyn CredentialSource>>,
}

impl std::fmt::Debug for Forward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forward").finish_non_exhaustive()
    }
}

impl Service<http::Request<Body>> for Forward {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let tx = self.tx.clone();
        let credential = self.credential.clone();
        Box::pin(async move {
            if let Some(source) = credential {
                let c = match source.credential().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(error = %e, "upstream credential unavailable");
                        return Ok(Error::CredentialUnavailable.into_response());
                    }
                };
                let (name, value) = c.header();
                let Ok(mut value) = http::HeaderValue::try_from(value) else {
                    return Ok(Error::CredentialUnavailable.into_response());
                };
                value.set_sensitive(true);
                let h = request.headers_mut();
                h.remove(http::header::AUTHORIZATION);
                h.remove("x-api-key");
                h.insert(name, value);
                if let Some(beta) = c.required_beta() {
                    crate::upstream::add_beta(h, beta);
                }
            }
            let (reply, answer) = oneshot::channel();
            if tx.send(Outbound { request, reply }).await.is_err() {
                return Ok(Error::UpstreamUnavailable.into_response());
            }
            Ok(answer
                .await
                .unwrap_or_else(|_| Error::UpstreamUnavailable.into_response()))
        })
    }
}

/// A refusal by the local skillgate stack (the request was never sent):
/// the Anthropic-shaped error it answered, as a typed error.
///
/// [`Enforce`] returns it inside `reqwest_middleware::Error::Middleware`;
/// [`Refusal::from_error`] finds it.
///
/// ```
/// use skillgate::client::Refusal;
/// fn explain(e: &reqwest_middleware::Error) -> String {
///     match Refusal::from_error(e) {
///         Some(r) => format!("skillgate refused ({}): {}", r.status, r.message),
///         None => format!("transport error: {e}"),
///     }
/// }
/// # let _ = explain;
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused by skillgate with {status}: {message}")]
pub struct Refusal {
    /// The HTTP status of the refusal (`403` for a policy denial).
    pub status: StatusCode,
    /// The Anthropic `error.type`, e.g. [`ErrorType::Permission`].
    pub error_type: Option<ErrorType>,
    /// The public message (never a secret or request content).
    pub message: String,
    /// The id of the audit record of the refused request, when the stack audits.
    pub audit_id: Option<Uuid>,
}

impl Refusal {
    /// The refusal inside a reqwest-middleware error, if it is one.
    pub fn from_error(e: &reqwest_middleware::Error) -> Option<&Refusal> {
        match e {
            reqwest_middleware::Error::Middleware(inner) => inner.downcast_ref::<Refusal>(),
            reqwest_middleware::Error::Reqwest(_) => None,
        }
    }

    async fn read(res: http::Response<Body>) -> Refusal {
        let status = res.status();
        let audit_id = res.extensions().get::<AuditHandle>().map(|h| h.id());
        // Reading to the end also lets the audit layer write its record.
        let body = crate::body::collect_limited(res.into_body(), MAX_REFUSAL_BYTES)
            .await
            .unwrap_or_default();
        let parsed = serde_json::from_slice::<ApiErrorBody>(&body).ok();
        Refusal {
            status,
            error_type: parsed
                .as_ref()
                .and_then(|p| ErrorType::from_wire(&p.error.kind))
                .or_else(|| ErrorType::from_status(status.as_u16())),
            message: parsed
                .map(|p| p.error.message)
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("refused").to_owned()),
            audit_id,
        }
    }
}

/// Runs a tower stack of skillgate layers inside a reqwest-middleware chain.
///
/// Each request is turned into an `http::Request<`[`Body`]`>`, passed through
/// `layer`'s service, whose innermost [`Forward`] hands it to the next
/// middleware (and so to the network); the answer comes back through the
/// stack (audit tee, redaction…) and is turned into a `reqwest::Response`
/// whose body streams as it arrives — nothing is buffered on the way back.
///
/// - A refusal by the stack (the request never reached [`Forward`]) is an
///   `Err` holding a [`Refusal`] (status, Anthropic `error.type`, message,
///   audit record id).
/// - An answer that went through carries the exchange's
///   [`AuditHandle`] in `Response::extensions()` (its `id()` is the audit
///   record id), when the stack audits.
/// - A transport error of the rest of the chain is returned as it was.
/// - The caller's own credential never leaves: put the identity layer in the
///   stack (the whole [`GatewayLayer`](crate::gateway::GatewayLayer) does)
///   and the upstream credential here with
///   [`upstream_credential`](Self::upstream_credential).
///
/// `L` is any layer whose service takes `Request<Body>` and answers
/// `Response<Body>` infallibly — a `GatewayLayer`, or a `tower::ServiceBuilder`
/// of the layers you choose.
///
/// ```
/// # #[cfg(feature = "sqlite")] {
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use skillgate::client::{EnvToken, Enforce, MachineIdentity};
/// use skillgate::gateway::Gateway;
/// use skillgate::upstream::StaticCredential;
///
/// let dev = skillgate::identity::dev::DevIssuer::ephemeral();
/// let gateway = Gateway::builder()
///     .verifier(dev.verifier("skillgate"))
///     .audit_store(skillgate::audit::SqliteStore::in_memory().await.unwrap())
///     .build()
///     .unwrap();
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(MachineIdentity::new(EnvToken::new("SKILLGATE_TOKEN")))
///     .with(Enforce::new(gateway.layer())
///         .upstream_credential(StaticCredential::new(skillgate::upstream::Credential::api_key("sk-ant-…"))))
///     .build();
/// # let _ = client;
/// # });
/// # }
/// ```
pub struct Enforce<L> {
    layer: L,
    credential: Option<Arc<dyn CredentialSource>>,
}

impl<L> std::fmt::Debug for Enforce<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enforce").finish_non_exhaustive()
    }
}

impl<L> Enforce<L> {
    /// Runs requests through `layer`.
    pub fn new(layer: L) -> Self {
        Enforce {
            layer,
            credential: None,
        }
    }

    /// Sets this credential on every request the stack lets through
    /// (`x-api-key` or `Authorization: Bearer`, replacing any the stack left),
    /// as the gateway's [`Upstream`](crate::upstream::Upstream) would.
    pub fn upstream_credential(mut self, source: impl CredentialSource) -> Self {
        self.credential = Some(Arc::new(source));
        self
    }
}

/// `body` as a reqwest body: one replayable buffer when its length is known
/// (the stack has usually buffered it already), else a stream.
async fn to_reqwest_body(body: Body) -> reqwest::Body {
    match body.size_hint().exact() {
        Some(n) if n <= MAX_REPLAYABLE_BYTES => {
            match body.collect().await {
                Ok(c) => reqwest::Body::from(c.to_bytes()),
                Err(e) => reqwest::Body::wrap_stream(futures_util::stream::once(async move {
                    Err::<Bytes, _>(e)
                })),
            }
        }
        _ => reqwest::Body::wrap_stream(http_body_util::BodyDataStream::new(body)),
    }
}

fn stream_response(res: http::Response<Body>) -> reqwest::Response {
    reqwest::Response::from(
        res.map(|b| reqwest::Body::wrap_stream(http_body_util::BodyDataStream::new(b))),
    )
}

#[async_trait]
impl<L> Middleware for Enforce<L>
where
    L: Layer<Forward> + Send + Sync + 'static,
    L::Service: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Send
        + 'static,
    <L::Service as Service<http::Request<Body>>>::Future: Send + 'static,
{
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut http::Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let request: http::Request<reqwest::Body> =
            req.try_into().map_err(reqwest_middleware::Error::Reqwest)?;
        let request = request.map(Body::new);
        let (tx, mut rx) = mpsc::channel::<Outbound>(1);
        let service = self.layer.layer(Forward {
            tx,
            credential: self.credential.clone(),
        });
        let mut forwarded = false;
        let mut failure: Option<reqwest_middleware::Error> = None;
        let response = {
            let stack = std::pin::pin!(service.oneshot(request));
            let pump = std::pin::pin!(async {
                while let Some(Outbound { request, reply }) = rx.recv().await {
                    forwarded = true;
                    let (parts, body) = request.into_parts();
                    let body = to_reqwest_body(body).await;
                    let outgoing =
                        match reqwest::Request::try_from(http::Request::from_parts(parts, body)) {
                            Ok(r) => r,
                            Err(e) => {
                                failure = Some(reqwest_middleware::Error::Reqwest(e));
                                let _ = reply.send(Error::UpstreamUnavailable.into_response());
                                continue;
                            }
                        };
                    let answer = match next.clone().run(outgoing, extensions).await {
                        Ok(r) => http::Response::from(r).map(Body::new),
                        Err(e) => {
                            failure = Some(e);
                            Error::UpstreamUnavailable.into_response()
                        }
                    };
                    let _ = reply.send(answer);
                }
            });
            match futures_util::future::select(stack, pump).await {
                futures_util::future::Either::Left((res, _)) => res,
                futures_util::future::Either::Right(((), stack)) => stack.await,
            }
        };
        let Ok(response) = response;
        if let Some(e) = failure {
            return Err(e);
        }
        if !forwarded {
            return Err(reqwest_middleware::Error::middleware(
                Refusal::read(response).await,
            ));
        }
        Ok(stream_response(response))
    }
}
