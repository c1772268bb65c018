//! Serving a gateway over HTTP: [`serve`], [`HealthLayer`], [`shutdown_signal`].

use std::convert::Infallible;
use std::future::Future;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderValue, Method, Request, Response, header};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;

use super::GatewayService;
use crate::body::Body;
use crate::error::Error;
use crate::identity::{CREDENTIAL_HEADERS, ResponseFuture};

/// Longest time a client may take to send a request head (30 s).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Most connections served at once; further clients wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 4096;

/// Answers `GET /healthz` with `200 {"status":"ok"}` and passes everything
/// else on. Health checks are not audited and need no token.
///
/// ```
/// use skillgate::gateway::HealthLayer;
/// let layer = HealthLayer;
/// # let _ = layer;
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct HealthLayer;

impl<S> Layer<S> for HealthLayer {
    type Service = HealthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        HealthService { inner }
    }
}

/// The service made by [`HealthLayer`].
#[derive(Clone, Debug)]
pub struct HealthService<S> {
    inner: S,
}

impl<S> Service<Request<Body>> for HealthService<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        if req.uri().path() == "/healthz" && req.method() == Method::GET {
            let mut res = Response::new(Body::from("{\"status\":\"ok\"}"));
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return Box::pin(async move { Ok(res) });
        }
        Box::pin(self.inner.call(req))
    }
}

/// Resolves on SIGTERM or ctrl-c (SIGINT).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

fn boxed_response<B>(r: Response<B>) -> Response<Body>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<crate::body::BoxError>,
{
    r.map(Body::new)
}

fn incoming_request(r: Request<hyper::body::Incoming>) -> Request<Body> {
    r.map(Body::new)
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    tracing::error!("a request handler panicked; answered 500");
    Error::Internal.into_response()
}

/// Serves `service` on `listener` (HTTP/1.1 and h2c) until `shutdown`
/// resolves, then stops accepting and lets in-flight exchanges (streams
/// included) finish for at most `grace`, after which they are cut.
///
/// Adds `GET /healthz`, request tracing (credential headers marked sensitive
/// so they are never logged) and a panic guard that answers
/// `500 api_error` instead of dropping the connection.
///
/// # Errors
/// Only an accept loop I/O error that is not per-connection.
pub async fn serve(
    listener: TcpListener,
    service: GatewayService,
    shutdown: impl Future<Output = ()> + Send,
    grace: Duration,
) -> std::io::Result<()> {
    let stack: GatewayService = GatewayService::new(
        ServiceBuilder::new()
            .layer(SetSensitiveRequestHeadersLayer::new(CREDENTIAL_HEADERS))
            .map_response(boxed_response)
            .layer(TraceLayer::new_for_http())
            .map_response(boxed_response)
            .layer(CatchPanicLayer::custom(panic_response))
            .layer(HealthLayer)
            .service(service),
    );
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A client gets HEADER_READ_TIMEOUT to send its request head (slowloris);
    // the body has its own read timeout once the caller is authenticated.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        // At most MAX_CONNECTIONS at once: beyond that, stop accepting until one closes.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Per-connection errors (e.g. EMFILE) must not end the server.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let svc = stack
                    .clone()
                    .map_request(incoming_request);
                let conn = builder.serve_connection_with_upgrades(
                    TokioIo::new(stream),
                    TowerToHyperService::new(svc),
                );
                let watched = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    if let Err(e) = watched.await {
                        tracing::debug!(%peer, error = %e, "connection ended with error");
                    }
                    drop(permit);
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down; waiting for in-flight requests");
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(?grace, "grace period over; cutting remaining connections");
    }
    Ok(())
}
