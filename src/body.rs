//! The one body type that flows through the skillgate stack.
//!
//! Every layer takes `http::Request<Body>` and returns `http::Response<Body>`, so
//! layers compose without generic body plumbing. [`Body`] wraps any
//! [`http_body::Body`] whose data is [`Bytes`]; errors are boxed.
//!
//! ```
//! use skillgate::body::Body;
//! use http_body_util::BodyExt;
//! # tokio_test_block_on(async {
//! let body = Body::from("hello");
//! let bytes = body.collect().await.unwrap().to_bytes();
//! assert_eq!(&bytes[..], b"hello");
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, LengthLimitError, Limited};

/// A boxed error, as carried by [`Body`] frames.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The request and response body type of every skillgate layer.
///
/// Cheap to construct from bytes or strings; wraps streaming bodies (hyper's
/// `Incoming`, a tee, an SSE rewriter) without buffering them.
///
/// ```
/// use skillgate::body::Body;
/// let empty = Body::empty();
/// let text = Body::from(String::from("{}"));
/// # let _ = (empty, text);
/// ```
pub struct Body(UnsyncBoxBody<Bytes, BoxError>);

impl Body {
    /// Wraps any body whose data is [`Bytes`].
    pub fn new<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Body(body.map_err(Into::into).boxed_unsync())
    }

    /// A body with no bytes.
    pub fn empty() -> Self {
        Body::new(Empty::<Bytes>::new())
    }
}

impl Default for Body {
    fn default() -> Self {
        Body::empty()
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body").finish_non_exhaustive()
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        Body::new(Full::new(b))
    }
}
impl From<Vec<u8>> for Body {
    fn from(b: Vec<u8>) -> Self {
        Body::from(Bytes::from(b))
    }
}
impl From<String> for Body {
    fn from(s: String) -> Self {
        Body::from(Bytes::from(s))
    }
}
impl From<&'static str> for Body {
    fn from(s: &'static str) -> Self {
        Body::from(Bytes::from_static(s.as_bytes()))
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.0).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

/// Why [`collect_limited`] could not return the whole body.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// The body is longer than the limit (bytes).
    #[error("body exceeds {limit} bytes")]
    TooLarge {
        /// The limit that was exceeded, in bytes.
        limit: usize,
    },
    /// The body stream failed (client went away, broken transfer encoding).
    #[error("body stream failed")]
    Stream(#[source] BoxError),
}

/// Reads a whole body into memory, refusing more than `limit` bytes.
///
/// The limit is enforced while reading (a `Content-Length` that lies does not
/// help an attacker); a body over it yields [`CollectError::TooLarge`].
pub async fn collect_limited(body: Body, limit: usize) -> Result<Bytes, CollectError> {
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(CollectError::TooLarge { limit }),
        Err(e) => Err(CollectError::Stream(e)),
    }
}

/// Adapts a service on `Request<Body>` to any request body type, and its
/// response body (any [`http_body::Body`] of [`Bytes`]) to [`Body`].
///
/// This is how the skillgate stack meets other frameworks: an axum
/// `Router`'s routes take `Request<axum::body::Body>` and answer
/// `Response<axum::body::Body>`; wrapped in `AnyBody`, an
/// [`Upstream`](crate::upstream::Upstream) can be mounted as an axum route
/// service, and [`AnyBodyLayer`] puts the whole gateway around axum routes.
/// Bodies are re-boxed, never buffered: a stream stays a stream.
///
/// ```
/// use std::convert::Infallible;
/// use skillgate::body::{AnyBody, Body};
/// use tower::{ServiceExt, service_fn};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// // A service on skillgate's body type...
/// let svc = service_fn(|_req: http::Request<Body>| async {
///     Ok::<_, Infallible>(http::Response::new(Body::from("hi")))
/// });
/// // ...now takes any body, here a `String`.
/// let res = AnyBody::new(svc).oneshot(http::Request::new(String::from("x"))).await.unwrap();
/// assert_eq!(res.status(), 200);
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct AnyBody<S> {
    inner: S,
}

impl<S> AnyBody<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        AnyBody { inner }
    }

    /// The wrapped service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, RB> tower::Service<http::Request<B>> for AnyBody<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    RB: http_body::Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<http::Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let fut = self.inner.call(req.map(into_body));
        Box::pin(async move { fut.await.map(|res| res.map(into_body)) })
    }
}

/// `b` as a [`Body`], without boxing it twice when it already is one.
fn into_body<B>(b: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let mut slot = Some(b);
    if let Some(body) = (&mut slot as &mut dyn std::any::Any).downcast_mut::<Option<Body>>()
        && let Some(body) = body.take()
    {
        return body;
    }
    match slot {
        Some(b) => Body::new(b),
        None => Body::empty(),
    }
}

/// Applies a layer built for `Request<Body>` → `Response<Body>` services (such
/// as [`GatewayLayer`](crate::gateway::GatewayLayer)) to services of any body
/// type, by wrapping both sides in [`AnyBody`].
///
/// `AnyBodyLayer::new(gateway.layer())` is what an axum `Router` takes in
/// `.layer(…)` or `.route_layer(…)`; [`Gateway::any_body_layer`](crate::gateway::Gateway::any_body_layer)
/// is the shorthand. See `docs/embedding.md`.
///
/// ```
/// use std::convert::Infallible;
/// use skillgate::body::{AnyBodyLayer, Body};
/// use tower::{Layer, ServiceExt, service_fn};
/// use tower::layer::util::Identity;
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let inner = service_fn(|_req: http::Request<Body>| async {
///     Ok::<_, Infallible>(http::Response::new(String::from("from a String body")))
/// });
/// let svc = AnyBodyLayer::new(Identity::new()).layer(inner);
/// let res = svc.oneshot(http::Request::new(Body::empty())).await.unwrap();
/// assert_eq!(res.status(), 200);
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct AnyBodyLayer<L> {
    inner: L,
}

impl<L> AnyBodyLayer<L> {
    /// Wraps `layer`.
    pub fn new(layer: L) -> Self {
        AnyBodyLayer { inner: layer }
    }
}

impl<L, S> tower::Layer<S> for AnyBodyLayer<L>
where
    L: tower::Layer<AnyBody<S>>,
{
    type Service = AnyBody<L::Service>;
    fn layer(&self, inner: S) -> Self::Service {
        AnyBody::new(self.inner.layer(AnyBody::new(inner)))
    }
}
