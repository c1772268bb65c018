//! [`BufferLayer`]: reads the request body once the caller is authenticated.

use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use tower::{Layer, Service};

use crate::audit::AuditHandle;
use crate::body::{Body, CollectError, collect_limited};
use crate::error::Error;
use crate::identity::ResponseFuture;
use crate::wire::messages::RequestBody;

/// Default longest time to receive a whole request body (60 s).
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Buffers the request body (at most `limit` bytes, within a read timeout)
/// and shares it with the layers behind it as a
/// [`RequestBody`] extension; the audit record keeps it.
///
/// It sits right after identity, so only authenticated callers can make the
/// gateway hold a body in memory. Too large: `413 request_too_large`; not
/// received in time or broken: `400 invalid_request_error`.
///
/// ```
/// use std::time::Duration;
/// use skillgate::gateway::BufferLayer;
/// let layer = BufferLayer::new(1 << 20).read_timeout(Duration::from_secs(30));
/// # let _ = layer;
/// ```
#[derive(Clone, Copy, Debug)]
pub struct BufferLayer {
    limit: usize,
    read_timeout: Duration,
}

impl BufferLayer {
    /// Buffers at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        BufferLayer {
            limit,
            read_timeout: DEFAULT_BODY_READ_TIMEOUT,
        }
    }

    /// Longest time to receive the whole body (default 60 s).
    pub fn read_timeout(mut self, t: Duration) -> Self {
        self.read_timeout = t;
        self
    }
}

impl<S> Layer<S> for BufferLayer {
    type Service = BufferService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        BufferService {
            inner,
            layer: *self,
        }
    }
}

/// The service made by [`BufferLayer`].
#[derive(Clone, Debug)]
pub struct BufferService<S> {
    inner: S,
    layer: BufferLayer,
}

impl<S> Service<Request<Body>> for BufferService<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer;
        Box::pin(async move {
            if req.extensions().get::<RequestBody>().is_some() {
                return inner.call(req).await;
            }
            let (mut parts, body) = req.into_parts();
            let audit = parts.extensions.get::<AuditHandle>().cloned();
            let read =
                tokio::time::timeout(layer.read_timeout, collect_limited(body, layer.limit)).await;
            let bytes = match read {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => {
                    let err = match e {
                        CollectError::TooLarge { limit } => Error::BodyTooLarge { limit },
                        CollectError::Stream(_) => Error::BodyRead,
                    };
                    if let Some(a) = &audit {
                        a.deny(err.to_string());
                    }
                    return Ok(err.into_response());
                }
                Err(_) => {
                    let err = Error::InvalidRequest(format!(
                        "request body not received within {} s",
                        layer.read_timeout.as_secs()
                    ));
                    if let Some(a) = &audit {
                        a.deny("request body read timed out");
                    }
                    return Ok(err.into_response());
                }
            };
            if let Some(a) = &audit {
                a.set_received_body(&bytes);
            }
            parts.extensions.insert(RequestBody::new(bytes.clone()));
            inner
                .call(Request::from_parts(parts, Body::from(bytes)))
                .await
        })
    }
}
