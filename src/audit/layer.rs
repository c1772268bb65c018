//! [`AuditLayer`], its service, the [`AuditHandle`] shared with inner layers,
//! and the tee body that records responses without delaying them.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::{Method, Request, Response, header};
use http_body::{Body as _, Frame, SizeHint};
use tower::{Layer, Service};
use uuid::Uuid;

use super::{
    AuditError, AuditEvent, AuditStore, DecisionRecord, Finding, RequestRecord, ResponseRecord,
    Verdict,
};
use crate::body::{Body, BoxError};
use crate::error::Error;
use crate::identity::{Principal, ResponseFuture};
use crate::wire::messages::RequestBody;

/// Default largest request body accepted, in bytes (32 MiB, the Messages API's own limit).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 32 * 1024 * 1024;
/// How much of a refused (never forwarded) request's body a record keeps, in bytes (64 KiB).
pub const REFUSED_BODY_RECORD_BYTES: usize = 64 * 1024;
/// Default largest response body kept in a record, in bytes (8 MiB); the
/// client still receives everything.
pub const DEFAULT_MAX_CAPTURE_BYTES: usize = 8 * 1024 * 1024;

/// Records every exchange; see the [module docs](crate::audit).
///
/// ```
/// # #[cfg(feature = "sqlite")] {
/// use skillgate::audit::AuditLayer;
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = skillgate::audit::SqliteStore::in_memory().await.unwrap();
/// let layer = AuditLayer::new(store).instance("gw-1").max_request_bytes(1 << 20);
/// # let _ = layer;
/// # });
/// # }
/// ```
#[derive(Clone)]
pub struct AuditLayer {
    store: Arc<dyn AuditStore>,
    instance: Arc<str>,
    max_request_bytes: usize,
    max_capture_bytes: usize,
    raw_key: Option<Arc<super::BodyKey>>,
}

impl AuditLayer {
    /// A layer writing to `store`, with the default limits.
    pub fn new(store: impl AuditStore) -> Self {
        Self::from_arc(Arc::new(store))
    }

    /// A layer writing to an already shared store.
    pub fn from_arc(store: Arc<dyn AuditStore>) -> Self {
        AuditLayer {
            store,
            instance: default_instance().into(),
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_capture_bytes: DEFAULT_MAX_CAPTURE_BYTES,
            raw_key: None,
        }
    }

    /// Also keeps the raw bodies — the request as received, the response as
    /// received from upstream (when a layer supplies it with
    /// [`AuditHandle::set_raw_response_body`]) — encrypted under `key`
    /// (AES-256-GCM, [`BodyKey`](super::BodyKey)). Off by default.
    pub fn raw_body_key(mut self, key: super::BodyKey) -> Self {
        self.raw_key = Some(Arc::new(key));
        self
    }

    /// Names this gateway instance in every record (default `hostname:pid`).
    pub fn instance(mut self, name: impl Into<String>) -> Self {
        self.instance = name.into().into();
        self
    }

    /// Largest request body accepted, in bytes; larger ones get `413 request_too_large`.
    pub fn max_request_bytes(mut self, limit: usize) -> Self {
        self.max_request_bytes = limit;
        self
    }

    /// Largest response body kept in a record, in bytes.
    pub fn max_capture_bytes(mut self, limit: usize) -> Self {
        self.max_capture_bytes = limit;
        self
    }

    /// The store records go to.
    pub fn store(&self) -> &Arc<dyn AuditStore> {
        &self.store
    }
}

pub(crate) fn default_instance() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "skillgate".into());
    format!("{host}:{}", std::process::id())
}

impl<S> Layer<S> for AuditLayer {
    type Service = AuditService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuditService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`AuditLayer`].
#[derive(Clone)]
pub struct AuditService<S> {
    inner: S,
    layer: AuditLayer,
}

#[derive(Default)]
struct Draft {
    principal: Option<Principal>,
    decision: Option<DecisionRecord>,
    body: Bytes,
    /// Set by [`AuditHandle::set_request_body_for_record`]: `body` is a
    /// redacted stand-in that [`AuditHandle::commit`] must not overwrite.
    body_replaced: bool,
    /// Set by [`AuditHandle::set_response_body_for_record`]: recorded instead
    /// of the response bytes the client received.
    response_body: Option<Bytes>,
    model: Option<String>,
    stream: bool,
    committed: bool,
    /// Added by [`AuditHandle::add_findings`]; merged into the response record.
    findings: Vec<Finding>,
    /// The request body as received (kept only with a raw-body key).
    raw_request: Option<Bytes>,
    /// The response body as received from upstream (kept only with a raw-body key).
    raw_response: Option<Bytes>,
}

struct HandleInner {
    id: Uuid,
    received_at: jiff::Timestamp,
    started: Instant,
    method: String,
    path: String,
    instance: Arc<str>,
    store: Arc<dyn AuditStore>,
    raw_key: Option<Arc<super::BodyKey>>,
    draft: Mutex<Draft>,
}

/// The audit record of the exchange in progress, in the request extensions.
///
/// Inner layers add what they learn ([`set_principal`](Self::set_principal),
/// [`set_decision`](Self::set_decision)); the innermost point commits the
/// request record before forwarding ([`commit`](Self::commit)).
///
/// ```
/// use skillgate::audit::AuditHandle;
/// fn record_id(req: &http::Request<skillgate::Body>) -> Option<uuid::Uuid> {
///     req.extensions().get::<AuditHandle>().map(|h| h.id())
/// }
/// ```
#[derive(Clone)]
pub struct AuditHandle(Arc<HandleInner>);

impl AuditHandle {
    fn draft(&self) -> std::sync::MutexGuard<'_, Draft> {
        self.0.draft.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The exchange id (UUID v7).
    pub fn id(&self) -> Uuid {
        self.0.id
    }

    /// Records the verified caller.
    pub fn set_principal(&self, p: &Principal) {
        self.draft().principal = Some(p.clone());
    }

    /// Records the decision (the last one set wins).
    pub fn set_decision(&self, d: DecisionRecord) {
        self.draft().decision = Some(d);
    }

    /// Marks the exchange denied with `reason`, keeping the matched rules
    /// already recorded (e.g. by the policy layer).
    pub fn deny(&self, reason: impl Into<String>) {
        let mut d = self.draft();
        let rules = d.decision.take().map(|x| x.rules).unwrap_or_default();
        d.decision = Some(DecisionRecord {
            verdict: Verdict::Deny,
            reason: Some(reason.into()),
            rules,
        });
    }

    /// Replaces the request body kept in the record with `body` (for
    /// example a form with its credential redacted). The request itself is
    /// not changed; a later [`commit`](Self::commit) keeps this replacement.
    /// Call it before the record is written: after a commit it has no effect.
    ///
    /// ```
    /// # fn f(handle: &skillgate::audit::AuditHandle) {
    /// handle.set_request_body_for_record(bytes::Bytes::from_static(br#"{"assertion":"[redacted]"}"#));
    /// # }
    /// ```
    pub fn set_request_body_for_record(&self, body: Bytes) {
        let mut d = self.draft();
        d.body = body;
        d.body_replaced = true;
    }

    /// Records `body` as the response body instead of the bytes the client
    /// receives (for a response that carries a credential, such as an issued
    /// access token). The client still receives the real response.
    pub fn set_response_body_for_record(&self, body: Bytes) {
        self.draft().response_body = Some(body);
    }

    /// Keeps the buffered request body for the record (called by
    /// [`BufferLayer`](crate::gateway::BufferLayer) once the caller is authenticated).
    pub fn set_received_body(&self, body: &Bytes) {
        let mut d = self.draft();
        if !d.body_replaced {
            d.body = body.clone();
        }
        if self.0.raw_key.is_some() {
            d.raw_request = Some(body.clone());
        }
    }

    /// Supplies the response body as received from upstream, before any
    /// change (redaction calls this with what it read). Kept, encrypted,
    /// only when the audit layer has a raw-body key
    /// ([`AuditLayer::raw_body_key`]); otherwise dropped. Call it before the
    /// response body ends.
    ///
    /// ```
    /// # fn f(handle: &skillgate::audit::AuditHandle) {
    /// handle.set_raw_response_body(bytes::Bytes::from_static(b"{\"content\":[]}"));
    /// # }
    /// ```
    pub fn set_raw_response_body(&self, body: Bytes) {
        if self.0.raw_key.is_some() {
            self.draft().raw_response = Some(body);
        }
    }

    /// Whether raw bodies are kept (the audit layer has a raw-body key).
    pub fn keeps_raw_bodies(&self) -> bool {
        self.0.raw_key.is_some()
    }

    /// Adds redaction findings (entity type, count, path — never the value)
    /// to the response record. Findings with the same type and path are
    /// summed. Call it before the response body ends.
    ///
    /// ```
    /// # fn f(handle: &skillgate::audit::AuditHandle) {
    /// use skillgate::audit::Finding;
    /// handle.add_findings([Finding::new("US_SSN", 1, "response/content/0/text")]);
    /// # }
    /// ```
    pub fn add_findings(&self, findings: impl IntoIterator<Item = Finding>) {
        let mut d = self.draft();
        for f in findings {
            match d
                .findings
                .iter_mut()
                .find(|x| x.entity_type == f.entity_type && x.path == f.path)
            {
                Some(x) => x.count = x.count.saturating_add(f.count),
                None => d.findings.push(f),
            }
        }
    }

    /// The findings added so far.
    pub fn findings(&self) -> Vec<Finding> {
        self.draft().findings.clone()
    }

    /// Writes `event` to the audit store with this exchange's id and this
    /// instance's name filled in.
    ///
    /// # Errors
    /// The store's [`AuditError`]; the caller must fail closed.
    pub async fn record_event(&self, mut event: AuditEvent) -> Result<(), AuditError> {
        event.exchange_id = Some(self.0.id);
        event.instance = self.0.instance.to_string();
        self.0.store.record_event(&event).await
    }

    /// The audit store this exchange is recorded in.
    pub fn store(&self) -> &Arc<dyn AuditStore> {
        &self.0.store
    }

    /// Whether the request record has been written.
    pub fn is_committed(&self) -> bool {
        self.draft().committed
    }

    fn request_record(&self, fallback: DecisionRecord) -> RequestRecord {
        let d = self.draft();
        // A refused request never reached commit(): read model and stream now.
        let (model, stream) = match (&d.model, d.committed) {
            (None, false) => crate::wire::messages::MessagesRequest::parse(&d.body)
                .map(|v| (v.model().map(str::to_owned), v.stream()))
                .unwrap_or((None, false)),
            _ => (d.model.clone(), d.stream),
        };
        RequestRecord {
            id: self.0.id,
            received_at: self.0.received_at,
            instance: self.0.instance.to_string(),
            principal: d.principal.clone(),
            method: self.0.method.clone(),
            path: self.0.path.clone(),
            model,
            stream,
            decision: d.decision.clone().unwrap_or(fallback),
            body: d.body.clone(),
            raw_body: None,
        }
    }

    /// Durably writes the request record with `body` as the forwarded body.
    /// Call it last thing before forwarding; forward only on `Ok`.
    /// Idempotent: a second call does nothing.
    ///
    /// # Errors
    /// The store's [`AuditError`]; the caller must then refuse the request.
    pub async fn commit(&self, body: &RequestBody) -> Result<(), AuditError> {
        {
            let mut d = self.draft();
            if d.committed {
                return Ok(());
            }
            if !d.body_replaced {
                d.body = body.bytes().clone();
            }
            if let Ok(view) = body.messages() {
                d.model = view.model().map(str::to_owned);
                d.stream = view.stream();
            }
            if d.decision.is_none() {
                d.decision = Some(DecisionRecord::allow());
            }
        }
        let mut record = self.request_record(DecisionRecord::allow());
        if let Some(key) = &self.0.raw_key {
            let raw = self.draft().raw_request.take();
            if let Some(raw) = raw {
                // Fail closed: a raw body that cannot be sealed refuses the request.
                record.raw_body = Some(key.seal(self.0.id, "request", &raw)?);
            }
        }
        self.0.store.record_request(&record).await?;
        self.draft().committed = true;
        Ok(())
    }

    /// Writes what remains of the exchange: the request record if it was
    /// never committed (a refusal), then the response record.
    async fn finish(self, mut response: ResponseRecord) {
        response.latency_us = micros(self.0.started);
        let findings = std::mem::take(&mut self.draft().findings);
        response.findings.extend(findings);
        let raw = self.draft().raw_response.take();
        if let (Some(key), Some(raw)) = (&self.0.raw_key, raw) {
            match key.seal(self.0.id, "response", &raw) {
                Ok(sealed) => response.raw_body = Some(sealed),
                Err(e) => {
                    tracing::error!(id = %self.0.id, error = %e, "audit: raw response body not kept")
                }
            }
        }
        let committed = self.is_committed();
        if !committed {
            let why = if response.status == 499 {
                "caller went away before a response".to_owned()
            } else {
                format!("refused with status {}", response.status)
            };
            let mut rec = self.request_record(DecisionRecord::deny(why.clone()));
            if rec.decision.verdict == Verdict::Allow {
                rec.decision = DecisionRecord::deny(why);
            }
            // Never forwarded: keep a bounded prefix, so refused requests
            // cannot fill the audit store.
            if rec.body.len() > REFUSED_BODY_RECORD_BYTES {
                rec.body = rec.body.slice(..REFUSED_BODY_RECORD_BYTES);
            }
            if let Err(e) = self.0.store.record_request(&rec).await {
                tracing::error!(id = %self.0.id, error = %e, "audit: could not record refused request");
                return;
            }
        }
        if let Err(e) = self.0.store.record_response(&response).await {
            tracing::error!(id = %self.0.id, error = %e, "audit: could not record response");
        }
    }
}

fn micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

impl<S> Service<Request<Body>> for AuditService<S>
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
        let layer = self.layer.clone();
        let started = Instant::now();
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            let path = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_else(|| parts.uri.path().to_owned());
            let handle = AuditHandle(Arc::new(HandleInner {
                id: Uuid::now_v7(),
                received_at: jiff::Timestamp::now(),
                started,
                method: parts.method.to_string(),
                path,
                instance: layer.instance.clone(),
                store: layer.store.clone(),
                raw_key: layer.raw_key.clone(),
                draft: Mutex::new(Draft::default()),
            }));
            // The request line first: every later layer, and every policy
            // rule about paths, must see the path the upstream will see.
            let bodyless = matches!(parts.method, Method::GET | Method::HEAD | Method::DELETE);
            let has_body = parts.headers.contains_key(header::TRANSFER_ENCODING)
                || parts
                    .headers
                    .get(header::CONTENT_LENGTH)
                    .is_some_and(|v| v.as_bytes() != b"0");
            let shape = crate::wire::endpoint::check(&parts.method, parts.uri.path())
                .map_err(|e| e.into_error())
                .and_then(|()| {
                    if bodyless && has_body {
                        Err(Error::InvalidRequest(format!(
                            "{} requests take no body",
                            parts.method
                        )))
                    } else {
                        Ok(())
                    }
                });
            if let Err(err) = shape {
                handle.set_decision(DecisionRecord::deny(err.to_string()));
                return Ok(wrap_response(
                    handle,
                    err.into_response(),
                    layer.max_capture_bytes,
                ));
            }
            // A declared length over the limit is refused without reading a byte.
            let declared = parts
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > layer.max_request_bytes as u64) {
                let err = Error::BodyTooLarge {
                    limit: layer.max_request_bytes,
                };
                handle.set_decision(DecisionRecord::deny(err.to_string()));
                return Ok(wrap_response(
                    handle,
                    err.into_response(),
                    layer.max_capture_bytes,
                ));
            }
            // The body stays a stream here: it is read only after the caller
            // is authenticated (`BufferLayer`), so an anonymous caller costs
            // headers, not 32 MiB of memory and audit storage.
            parts.extensions.insert(handle.clone());
            let guard = PendingGuard(Some(handle.clone()));
            let res = inner.call(Request::from_parts(parts, body)).await?;
            guard.disarm();
            Ok(wrap_response(handle, res, layer.max_capture_bytes))
        })
    }
}

/// Records the exchange as incomplete if the caller goes away before any
/// response exists (the request future is dropped while waiting upstream).
struct PendingGuard(Option<AuditHandle>);

impl PendingGuard {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            let mut record = ResponseRecord::new(handle.id(), 499);
            record.complete = false;
            record.ttfb_us = micros(handle.0.started);
            spawn_finish(handle, record);
        }
    }
}

fn wrap_response(handle: AuditHandle, res: Response<Body>, cap: usize) -> Response<Body> {
    let ttfb_us = micros(handle.0.started);
    let (mut parts, body) = res.into_parts();
    let is_sse = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
    let mut record = ResponseRecord::new(handle.id(), parts.status.as_u16());
    record.ttfb_us = ttfb_us;
    record.upstream_request_id = parts
        .headers
        .get("request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    parts.extensions.insert(handle.clone());
    if handle.is_committed() {
        // Forwarded: leave an incomplete response record now, so a gateway
        // killed mid-stream still shows the exchange as started and cut.
        let mut provisional = record.clone();
        provisional.complete = false;
        let h = handle.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = h.0.store.record_response_started(&provisional).await {
                    tracing::warn!(id = %h.0.id, error = %e, "audit: could not record the response start");
                }
            });
        }
    }
    let tee = AuditBody {
        inner: body,
        state: Some(TeeState {
            handle,
            record,
            captured: BytesMut::new(),
            cap,
            is_sse,
            delivered: 0,
        }),
    };
    Response::from_parts(parts, Body::new(tee))
}

struct TeeState {
    handle: AuditHandle,
    record: ResponseRecord,
    captured: BytesMut,
    cap: usize,
    is_sse: bool,
    /// Body bytes handed on so far (whether captured or not).
    delivered: u64,
}

impl TeeState {
    fn finish(self, complete: bool) {
        let TeeState {
            handle,
            mut record,
            captured,
            is_sse,
            ..
        } = self;
        record.complete = complete;
        record.completed_at = jiff::Timestamp::now();
        record.body = captured.freeze();
        let replacement = handle.draft().response_body.take();
        if let Some(replacement) = replacement {
            // An inner layer said what to keep instead (the real body holds a credential).
            record.body = replacement;
            record.body_truncated = false;
            // The stand-in is not what was delivered: no timing to replay.
            record.chunks.clear();
            return spawn_finish(handle, record);
        }
        if is_sse {
            // Reassembly reads the whole capture: do it off the client's path.
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(async move {
                        let parsed = tokio::task::spawn_blocking(move || {
                            let r = crate::wire::stream::reassemble(&record.body);
                            (record, r)
                        })
                        .await;
                        if let Ok((mut record, r)) = parsed {
                            if let Some(r) = r {
                                // A stream that ended without message_stop (or an
                                // error event) was cut short.
                                record.complete &= r.complete || r.error.is_some();
                                record.text = Some(r.text);
                                record.usage = r.usage;
                            }
                            handle.finish(record).await;
                        }
                    });
                }
                Err(_) => tracing::error!("audit: no runtime to record the response on"),
            }
            return;
        } else if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&record.body) {
            record.usage = v.get("usage").cloned();
        }
        spawn_finish(handle, record);
    }
}

/// Writing never delays the client: it happens on its own task.
fn spawn_finish(handle: AuditHandle, record: ResponseRecord) {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            rt.spawn(handle.finish(record));
        }
        Err(_) => tracing::error!("audit: no runtime to record the response on"),
    }
}

pin_project_lite::pin_project! {
    /// The response body wrapper that copies what the client receives into
    /// the audit record (up to the capture limit) and writes the record when
    /// the body ends, fails, or is dropped early (client went away).
    pub struct AuditBody {
        #[pin]
        inner: Body,
        state: Option<TeeState>,
    }

    impl PinnedDrop for AuditBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(state) = this.state.take() {
                // A body that had nothing left to send ended normally even if
                // nobody polled its end.
                let complete = this.inner.is_end_stream();
                state.finish(complete);
            }
        }
    }
}

impl http_body::Body for AuditBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(st)) = (frame.data_ref(), this.state.as_mut()) {
                    let room = st.cap.saturating_sub(st.captured.len());
                    if data.len() > room {
                        st.record.body_truncated = true;
                    }
                    st.captured.extend_from_slice(&data[..data.len().min(room)]);
                    if !data.is_empty() && st.record.chunks.len() < super::MAX_CHUNK_TIMINGS {
                        st.record.chunks.push(super::ChunkTiming {
                            offset_bytes: st.delivered,
                            at_us: micros(st.handle.0.started),
                        });
                    }
                    st.delivered = st.delivered.saturating_add(data.len() as u64);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(st) = this.state.take() {
                    st.finish(false);
                }
            }
            Poll::Ready(None) => {
                if let Some(st) = this.state.take() {
                    st.finish(true);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use std::convert::Infallible;

    use http::{Request, Response};
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    use super::*;
    use crate::audit::SqliteStore;
    use crate::gateway::BufferLayer;

    async fn wait_for_response(store: &SqliteStore, id: Uuid) -> crate::audit::AuditRecord {
        for _ in 0..200 {
            if let Some(rec) = store.get(id).await.unwrap()
                && rec.response.is_some()
            {
                return rec;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("response record never written");
    }

    #[tokio::test]
    async fn findings_are_summed_into_the_response_record_and_events_carry_the_exchange() {
        let store = Arc::new(SqliteStore::in_memory().await.unwrap());
        let svc = ServiceBuilder::new()
            .layer(AuditLayer::from_arc(store.clone()).instance("gw-test"))
            .layer(BufferLayer::new(1 << 20))
            .service(service_fn(|req: Request<Body>| async move {
                let handle = req.extensions().get::<AuditHandle>().unwrap().clone();
                handle
                    .commit(req.extensions().get::<RequestBody>().unwrap())
                    .await
                    .unwrap();
                handle.add_findings([
                    Finding::new("CREDIT_CARD", 1, "response/content/0/text"),
                    Finding::new("EMAIL_ADDRESS", 1, "response/content/0/text"),
                ]);
                handle.add_findings([Finding::new("CREDIT_CARD", 2, "response/content/0/text")]);
                handle
                    .record_event(AuditEvent::new(
                        "approval.requested",
                        serde_json::json!({"rule": "r1"}),
                    ))
                    .await
                    .unwrap();
                Ok::<_, Infallible>(Response::new(Body::from("{}")))
            }));
        let res = svc
            .oneshot(
                Request::post("/v1/messages")
                    .body(Body::from("{}"))
                    .unwrap(),
            )
            .await
            .unwrap();
        let id = res.extensions().get::<AuditHandle>().unwrap().id();
        let _ = http_body_util::BodyExt::collect(res.into_body()).await;
        let rec = wait_for_response(&store, id).await;
        let mut findings = rec.response.unwrap().findings;
        findings.sort_by(|a, b| a.entity_type.cmp(&b.entity_type));
        assert_eq!(
            findings,
            vec![
                Finding::new("CREDIT_CARD", 3, "response/content/0/text"),
                Finding::new("EMAIL_ADDRESS", 1, "response/content/0/text"),
            ]
        );
        let events = store.recent_events(10).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].exchange_id, Some(id));
        assert_eq!(events[0].instance.split(':').next(), Some("gw-test"));
    }

    #[tokio::test]
    async fn raw_bodies_are_sealed_with_the_key_and_open_only_with_it() {
        let store = Arc::new(SqliteStore::in_memory().await.unwrap());
        let key = crate::audit::BodyKey::from_bytes([5u8; 32]);
        let svc = ServiceBuilder::new()
            .layer(AuditLayer::from_arc(store.clone()).raw_body_key(key.clone()))
            .layer(BufferLayer::new(1 << 20))
            .service(service_fn(|req: Request<Body>| async move {
                let handle = req.extensions().get::<AuditHandle>().unwrap().clone();
                assert!(handle.keeps_raw_bodies());
                // What redaction would do: record a masked request and response.
                handle.set_request_body_for_record(Bytes::from_static(b"{\"masked\":true}"));
                handle
                    .commit(req.extensions().get::<RequestBody>().unwrap())
                    .await
                    .unwrap();
                handle.set_raw_response_body(Bytes::from_static(b"{\"ssn\":\"078-05-1120\"}"));
                Ok::<_, Infallible>(Response::new(Body::from("{\"ssn\":\"[US_SSN]\"}")))
            }));
        let res = svc
            .oneshot(
                Request::post("/v1/messages")
                    .body(Body::from("{\"card\":\"4111111111111111\"}"))
                    .unwrap(),
            )
            .await
            .unwrap();
        let id = res.extensions().get::<AuditHandle>().unwrap().id();
        let _ = http_body_util::BodyExt::collect(res.into_body()).await;
        let rec = wait_for_response(&store, id).await;
        assert_eq!(&rec.request.body[..], b"{\"masked\":true}");
        let raw_req = rec.request.raw_body.as_ref().unwrap();
        assert_eq!(raw_req.key_id, key.id());
        assert!(!raw_req.ciphertext.contains("4111"));
        assert_eq!(
            &key.open(id, "request", raw_req).unwrap()[..],
            b"{\"card\":\"4111111111111111\"}"
        );
        let resp = rec.response.unwrap();
        assert_eq!(&resp.body[..], b"{\"ssn\":\"[US_SSN]\"}");
        let raw_resp = resp.raw_body.as_ref().unwrap();
        assert_eq!(
            &key.open(id, "response", raw_resp).unwrap()[..],
            b"{\"ssn\":\"078-05-1120\"}"
        );
        let wrong = crate::audit::BodyKey::from_bytes([6u8; 32]);
        assert!(wrong.open(id, "response", raw_resp).is_err());
    }

    #[tokio::test]
    async fn without_a_key_no_raw_body_is_kept() {
        let store = Arc::new(SqliteStore::in_memory().await.unwrap());
        let svc = ServiceBuilder::new()
            .layer(AuditLayer::from_arc(store.clone()))
            .layer(BufferLayer::new(1 << 20))
            .service(service_fn(|req: Request<Body>| async move {
                let handle = req.extensions().get::<AuditHandle>().unwrap().clone();
                assert!(!handle.keeps_raw_bodies());
                handle
                    .commit(req.extensions().get::<RequestBody>().unwrap())
                    .await
                    .unwrap();
                handle.set_raw_response_body(Bytes::from_static(b"raw"));
                Ok::<_, Infallible>(Response::new(Body::from("{}")))
            }));
        let res = svc
            .oneshot(
                Request::post("/v1/messages")
                    .body(Body::from("{}"))
                    .unwrap(),
            )
            .await
            .unwrap();
        let id = res.extensions().get::<AuditHandle>().unwrap().id();
        let _ = http_body_util::BodyExt::collect(res.into_body()).await;
        let rec = wait_for_response(&store, id).await;
        assert!(rec.request.raw_body.is_none());
        assert!(rec.response.unwrap().raw_body.is_none());
    }
}
