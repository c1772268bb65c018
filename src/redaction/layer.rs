//! [`RedactionLayer`], its service and the SSE body ([`RedactionBody`]).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::{Frame, SizeHint};
use serde_json::{Value, json};
use tower::{Layer, Service};

use super::json::{push_findings, redact_block, redact_json_value, redact_message, redact_request};
use super::reversible::{restore_message, restore_value};
use super::{Mode, RedactionError, Redactor, StreamRedactor, TokenRestorer, TokenVault};
use crate::audit::{AuditHandle, Finding};
use crate::body::{Body, BoxError, collect_limited};
use crate::error::{ErrorType, error_response};
use crate::identity::ResponseFuture;
use crate::wire::messages::RequestBody;
use crate::wire::sse::{SseDecoder, SseEvent};

/// Default largest JSON response rewritten whole: 32 MiB.
const DEFAULT_MAX_RESPONSE_BYTES: usize = 32 << 20;

/// Masks PII and secrets in Messages responses (JSON and SSE) and, opt-in,
/// in request prompts; see the [module docs](super).
///
/// Sits between the budget layer and the forward guard. Findings go to the
/// [`AuditHandle`] of the request (response record) and to a
/// `skillgate::redaction` tracing event per finding.
///
/// ```
/// use skillgate::redaction::{Mode, RedactionLayer, Redactor};
/// let layer = RedactionLayer::builder()
///     .redactor(Redactor::new())
///     .mode(Mode::Strict)
///     .redact_requests(true)
///     .build();
/// # let _ = layer;
/// ```
#[derive(Debug, Clone)]
pub struct RedactionLayer {
    redactor: Redactor,
    mode: Mode,
    requests: bool,
    reversible: bool,
    #[cfg(feature = "redis")]
    redis_vault: Option<super::RedisVault>,
    max_response_bytes: usize,
}

/// Builder for [`RedactionLayer`].
#[derive(Debug, Default)]
pub struct RedactionLayerBuilder {
    redactor: Option<Redactor>,
    mode: Mode,
    requests: bool,
    reversible: bool,
    #[cfg(feature = "redis")]
    redis_vault: Option<super::RedisVault>,
    max_response_bytes: Option<usize>,
}

impl RedactionLayerBuilder {
    /// The detectors and operators (default [`Redactor::new`]).
    pub fn redactor(mut self, r: Redactor) -> Self {
        self.redactor = Some(r);
        self
    }
    /// Strict (default) or best-effort.
    pub fn mode(mut self, m: Mode) -> Self {
        self.mode = m;
        self
    }
    /// Also mask the prompts of `POST /v1/messages` requests before they go
    /// upstream (default `false`).
    pub fn redact_requests(mut self, on: bool) -> Self {
        self.requests = on;
        self
    }
    /// Reversible request redaction (default `false`): prompts are masked
    /// with [`Operator::Token`](super::Operator::Token) for every entity
    /// type, and the tokens issued for the request are restored to their
    /// values in its response, after response masking (see
    /// `docs/redaction.md`). Takes precedence over
    /// [`redact_requests`](Self::redact_requests).
    pub fn reversible(mut self, on: bool) -> Self {
        self.reversible = on;
        self
    }
    /// Keeps reversible tokens in Redis too (implies
    /// [`reversible`](Self::reversible)), so a later turn of the same
    /// principal that carries an earlier token gets its value back.
    #[cfg(feature = "redis")]
    pub fn redis_vault(mut self, v: super::RedisVault) -> Self {
        self.reversible = true;
        self.redis_vault = Some(v);
        self
    }
    /// Largest JSON response rewritten, in bytes (default 32 MiB); larger
    /// ones fail (strict) or pass unchanged (best-effort).
    pub fn max_response_bytes(mut self, n: usize) -> Self {
        self.max_response_bytes = Some(n);
        self
    }
    /// The layer.
    pub fn build(self) -> RedactionLayer {
        RedactionLayer {
            redactor: self.redactor.unwrap_or_default(),
            mode: self.mode,
            requests: self.requests,
            reversible: self.reversible,
            #[cfg(feature = "redis")]
            redis_vault: self.redis_vault,
            max_response_bytes: self
                .max_response_bytes
                .unwrap_or(DEFAULT_MAX_RESPONSE_BYTES),
        }
    }
}

impl RedactionLayer {
    /// Starts a builder.
    pub fn builder() -> RedactionLayerBuilder {
        RedactionLayerBuilder::default()
    }

    /// A strict layer with `redactor`, responses only.
    pub fn new(redactor: Redactor) -> Self {
        Self::builder().redactor(redactor).build()
    }

    /// The redactor in use.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }
}

impl<S> Layer<S> for RedactionLayer {
    type Service = RedactionService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RedactionService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`RedactionLayer`].
#[derive(Debug, Clone)]
pub struct RedactionService<S> {
    inner: S,
    layer: RedactionLayer,
}

/// Counter of values redacted (labels `entity_type`, and `path` cut to its
/// first two segments, e.g. `response/content`), through the `metrics`
/// facade: whatever recorder the embedding service installs receives it.
pub const FINDINGS_METRIC: &str = "skillgate_redaction_findings_total";

fn record(audit: Option<&AuditHandle>, findings: Vec<Finding>) {
    for f in &findings {
        // Bounded label values: entity types and the part of the path that
        // names the message side, never block indexes or member names.
        let side: String = f.path.split('/').take(2).collect::<Vec<_>>().join("/");
        metrics::counter!(FINDINGS_METRIC, "entity_type" => f.entity_type.clone(), "path" => side)
            .increment(f.count);
        tracing::info!(
            target: "skillgate::redaction",
            entity_type = %f.entity_type,
            count = f.count,
            path = %f.path,
            "values redacted"
        );
    }
    if let (Some(a), false) = (audit, findings.is_empty()) {
        a.add_findings(findings);
    }
}

fn failure(e: &RedactionError) -> Response<Body> {
    tracing::error!(target: "skillgate::redaction", error = %e, "response withheld (strict redaction)");
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorType::Api,
        "the gateway could not inspect the response for sensitive data; it was withheld",
        false,
    )
}

impl<S> Service<Request<Body>> for RedactionService<S>
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

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let audit = req.extensions().get::<AuditHandle>().cloned();
            let messages = req.method() == Method::POST && req.uri().path() == "/v1/messages";
            if !messages {
                return inner.call(req).await;
            }
            let mut restore = None;
            if layer.reversible {
                let vault = TokenVault::default();
                let r = layer.redactor.tokenizing(vault.clone());
                if let Err(res) = mask_request(&mut req, &r, layer.mode, audit.as_ref()) {
                    return Ok(*res);
                }
                #[allow(unused_mut)]
                let mut tokens = vault.snapshot();
                #[cfg(feature = "redis")]
                if let Some(rv) = &layer.redis_vault {
                    let scope = super::reversible::scope_of(
                        req.extensions().get::<crate::identity::Principal>(),
                    );
                    let body = req
                        .extensions()
                        .get::<RequestBody>()
                        .map(|b| b.bytes().clone());
                    carry_tokens(rv, scope, body, &mut tokens).await;
                }
                if !tokens.is_empty() {
                    restore = Some(Arc::new(tokens));
                }
            } else if layer.requests
                && let Err(res) =
                    mask_request(&mut req, &layer.redactor, layer.mode, audit.as_ref())
            {
                return Ok(*res);
            }
            let res = inner.call(req).await?;
            Ok(redact_response(&layer, res, audit, restore).await)
        })
    }
}

/// Masks the prompt of `req` with `r`, replacing its body and `RequestBody`
/// when anything was found; `Err` holds the strict-mode failure response.
fn mask_request(
    req: &mut Request<Body>,
    r: &Redactor,
    mode: Mode,
    audit: Option<&AuditHandle>,
) -> Result<(), Box<Response<Body>>> {
    let body = req.extensions().get::<RequestBody>().cloned();
    let Some(b) = body else { return Ok(()) };
    let Ok(mut v) = serde_json::from_slice::<Value>(b.bytes()) else {
        return Ok(());
    };
    let mut findings = Vec::new();
    redact_request(r, &mut v, &mut findings);
    if findings.is_empty() {
        return Ok(());
    }
    match serde_json::to_vec(&v) {
        Ok(bytes) => {
            let bytes = Bytes::from(bytes);
            req.headers_mut().remove(header::CONTENT_LENGTH);
            req.extensions_mut().insert(RequestBody::new(bytes.clone()));
            *req.body_mut() = Body::from(bytes);
            record(audit, findings);
            Ok(())
        }
        Err(_) if mode == Mode::Strict => Err(Box::new(failure(&RedactionError::Uninspectable(
            "request body".into(),
        )))),
        Err(_) => Ok(()),
    }
}

/// Stores the tokens issued for `req` in Redis under its principal's scope
/// and adds the values of earlier tokens the (masked) prompt carries. Redis
/// failures are logged and leave those tokens unrestored (nothing leaks).
#[cfg(feature = "redis")]
async fn carry_tokens(
    rv: &super::RedisVault,
    scope: String,
    body: Option<Bytes>,
    tokens: &mut HashMap<String, String>,
) {
    if let Err(e) = rv.store(&scope, tokens).await {
        tracing::warn!(target: "skillgate::redaction", error = %e, "token vault: store failed");
    }
    let Some(b) = body else {
        return;
    };
    let mut carried: Vec<String> = super::reversible::tokens_in(&String::from_utf8_lossy(&b))
        .into_iter()
        .filter(|t| !tokens.contains_key(*t))
        .map(str::to_owned)
        .collect();
    carried.sort_unstable();
    carried.dedup();
    match rv.lookup(&scope, &carried).await {
        Ok(found) => tokens.extend(found),
        Err(e) => {
            tracing::warn!(target: "skillgate::redaction", error = %e, "token vault: lookup failed");
        }
    }
}

async fn redact_response(
    layer: &RedactionLayer,
    res: Response<Body>,
    audit: Option<AuditHandle>,
    restore: Option<Arc<HashMap<String, String>>>,
) -> Response<Body> {
    if !res.status().is_success() {
        return res;
    }
    let strict = layer.mode == Mode::Strict;
    let encoded = res
        .headers()
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    let ctype = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let uninspectable = |why: &str| {
        let e = RedactionError::Uninspectable(why.into());
        if strict {
            Some(failure(&e))
        } else {
            tracing::warn!(target: "skillgate::redaction", error = %e, "response passed uninspected (best effort)");
            record(
                audit.as_ref(),
                vec![Finding::new("UNINSPECTED", 1, "response")],
            );
            None
        }
    };
    if encoded {
        return uninspectable("compressed response body").unwrap_or(res);
    }
    if ctype.starts_with("text/event-stream") {
        let (mut parts, body) = res.into_parts();
        parts.headers.remove(header::CONTENT_LENGTH);
        let mut body = RedactionBody::new(body, layer.redactor.clone(), layer.mode, audit);
        body.restore = restore;
        return Response::from_parts(parts, Body::new(body));
    }
    if !ctype.starts_with("application/json") {
        return uninspectable("response content type").unwrap_or(res);
    }
    let (mut parts, body) = res.into_parts();
    let bytes = match collect_limited(body, layer.max_response_bytes).await {
        Ok(b) => {
            // The response as upstream sent it, for the encrypted raw copy
            // (kept only when the audit layer has a raw-body key).
            if let Some(a) = &audit {
                a.set_raw_response_body(b.clone());
            }
            b
        }
        Err(e) => {
            let e = RedactionError::Uninspectable(format!("response body: {e}"));
            if !strict {
                tracing::warn!(target: "skillgate::redaction", error = %e, "response lost");
            }
            return failure(&e);
        }
    };
    let mut findings = Vec::new();
    let rewritten = serde_json::from_slice::<Value>(&bytes)
        .map_err(|e| RedactionError::Uninspectable(format!("response JSON: {e}")))
        .and_then(|mut v| {
            redact_message(&layer.redactor, &mut v, &mut findings, !strict)?;
            // After masking: restored values are the caller's own prompt data.
            if let Some(m) = &restore {
                restore_message(m, &mut v);
            }
            serde_json::to_vec(&v)
                .map_err(|e| RedactionError::Uninspectable(format!("response JSON: {e}")))
        });
    match rewritten {
        Ok(out) => {
            record(audit.as_ref(), findings);
            parts.headers.remove(header::CONTENT_LENGTH);
            if let Ok(v) = HeaderValue::from_str(&out.len().to_string()) {
                parts.headers.insert(header::CONTENT_LENGTH, v);
            }
            Response::from_parts(parts, Body::from(out))
        }
        Err(e) if strict => failure(&e),
        Err(e) => {
            tracing::warn!(target: "skillgate::redaction", error = %e, "response passed uninspected (best effort)");
            record(
                audit.as_ref(),
                vec![Finding::new("UNINSPECTED", 1, "response")],
            );
            Response::from_parts(parts, Body::from(bytes))
        }
    }
}

/// What a content block's deltas go through.
enum BlockState {
    Text(Box<StreamRedactor>),
    Json(Box<StreamRedactor>),
    Pass,
}

/// The response body of a redacted event stream.
///
/// Decodes the upstream SSE, feeds `text_delta` text and `input_json_delta`
/// JSON of each content block to its own [`StreamRedactor`], and emits the
/// released text as `content_block_delta` events of the same type and index
/// (deltas may be merged or split; event order is kept; every other event is
/// forwarded byte for byte). Held text is flushed before the block's
/// `content_block_stop`. `citations_delta` citations are rewritten whole;
/// thinking and signature deltas pass untouched. In strict mode any failure
/// ends the stream with an SSE `error` event (`api_error`).
pub struct RedactionBody {
    inner: Body,
    redactor: Redactor,
    mode: Mode,
    audit: Option<AuditHandle>,
    decoder: SseDecoder,
    blocks: HashMap<u64, BlockState>,
    queue: VecDeque<Bytes>,
    done: bool,
    findings: Vec<Finding>,
    /// Tokens of this request to restore (reversible request redaction).
    restore: Option<Arc<HashMap<String, String>>>,
    restorers: HashMap<u64, TokenRestorer>,
    /// The upstream bytes, when the audit record keeps raw bodies (at most
    /// [`DEFAULT_MAX_CAPTURE_BYTES`](crate::audit::DEFAULT_MAX_CAPTURE_BYTES)).
    raw: Option<BytesMut>,
}

impl std::fmt::Debug for RedactionBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedactionBody")
            .field("mode", &self.mode)
            .field("open_blocks", &self.blocks.len())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl RedactionBody {
    /// Wraps an upstream SSE body.
    pub fn new(inner: Body, redactor: Redactor, mode: Mode, audit: Option<AuditHandle>) -> Self {
        RedactionBody {
            inner,
            redactor,
            mode,
            decoder: SseDecoder::new(),
            blocks: HashMap::new(),
            queue: VecDeque::new(),
            done: false,
            findings: Vec::new(),
            restore: None,
            restorers: HashMap::new(),
            raw: audit
                .as_ref()
                .filter(|a| a.keeps_raw_bodies())
                .map(|_| BytesMut::new()),
            audit,
        }
    }

    /// Queues a delta of released (masked) text, restoring this request's
    /// tokens first when reversible; `last` ends the block's text.
    fn emit(&mut self, index: u64, kind: &str, field: &str, text: &str, last: bool) {
        let out = match &self.restore {
            Some(m) => {
                let r = self
                    .restorers
                    .entry(index)
                    .or_insert_with(|| TokenRestorer::new(m.clone(), kind == "input_json_delta"));
                let mut out = r.push(text);
                if last {
                    out.push_str(&r.finish());
                    self.restorers.remove(&index);
                }
                out
            }
            None => text.to_owned(),
        };
        if !out.is_empty() {
            self.queue
                .push_back(Self::delta_event(index, kind, field, &out));
        }
    }

    fn delta_event(index: u64, kind: &str, field: &str, text: &str) -> Bytes {
        let data = json!({
            "type": "content_block_delta",
            "index": index,
            "delta": {"type": kind, field: text},
        });
        SseEvent::new(Some("content_block_delta"), &data.to_string()).to_bytes()
    }

    fn flush_block(&mut self, index: u64) -> Result<(), RedactionError> {
        let Some(state) = self.blocks.remove(&index) else {
            return Ok(());
        };
        let (mut s, kind, field, path) = match state {
            BlockState::Text(s) => (s, "text_delta", "text", "text"),
            BlockState::Json(s) => (s, "input_json_delta", "partial_json", "input"),
            BlockState::Pass => return Ok(()),
        };
        let rest = s.finish()?;
        self.emit(index, kind, field, &rest, true);
        push_findings(
            &mut self.findings,
            s.findings(),
            &format!("response/content/{index}/{path}"),
        );
        Ok(())
    }

    fn on_event(&mut self, ev: SseEvent) -> Result<(), RedactionError> {
        let name = ev.event().unwrap_or_default().to_owned();
        let content = matches!(
            name.as_str(),
            "content_block_start" | "content_block_delta" | "content_block_stop"
        );
        if !content {
            if name == "message_stop" {
                let open: Vec<u64> = self.blocks.keys().copied().collect();
                for i in open {
                    self.flush_block(i)?;
                }
            }
            self.queue.push_back(ev.raw().clone());
            return Ok(());
        }
        let bad = |what: &str| RedactionError::Uninspectable(what.to_owned());
        let mut v: Value =
            serde_json::from_str(ev.data()).map_err(|_| bad("event data is not JSON"))?;
        let index = v
            .get("index")
            .and_then(Value::as_u64)
            .ok_or_else(|| bad("content event without index"))?;
        match name.as_str() {
            "content_block_start" => {
                let block = v
                    .get_mut("content_block")
                    .ok_or_else(|| bad("content_block_start without block"))?;
                let ty = block
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let path = format!("response/content/{index}");
                match ty.as_str() {
                    "text" => {
                        let initial = block
                            .get("text")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned();
                        let mut s = Box::new(self.redactor.stream());
                        if initial.is_empty() {
                            self.queue.push_back(ev.raw().clone());
                        } else {
                            block["text"] = Value::String(String::new());
                            self.queue.push_back(
                                SseEvent::new(Some("content_block_start"), &v.to_string())
                                    .to_bytes(),
                            );
                            let out = s.push(&initial)?;
                            self.emit(index, "text_delta", "text", &out, false);
                        }
                        self.blocks.insert(index, BlockState::Text(s));
                    }
                    "tool_use" | "server_tool_use" | "mcp_tool_use" => {
                        let mut f = Vec::new();
                        if let Some(input) = block.get_mut("input") {
                            redact_json_value(
                                &self.redactor,
                                input,
                                &format!("{path}/input"),
                                &mut f,
                            );
                        }
                        let restored = match (&self.restore, block.get_mut("input")) {
                            (Some(m), Some(input)) => restore_value(m, input),
                            _ => 0,
                        };
                        if f.is_empty() && restored == 0 {
                            self.queue.push_back(ev.raw().clone());
                        } else {
                            self.queue.push_back(
                                SseEvent::new(Some("content_block_start"), &v.to_string())
                                    .to_bytes(),
                            );
                            self.findings.extend(f);
                        }
                        self.blocks.insert(
                            index,
                            BlockState::Json(Box::new(self.redactor.stream_json())),
                        );
                    }
                    "thinking" | "redacted_thinking" => {
                        self.queue.push_back(ev.raw().clone());
                        self.blocks.insert(index, BlockState::Pass);
                    }
                    _ => {
                        let mut f = Vec::new();
                        redact_block(&self.redactor, block, &path, &mut f)?;
                        if f.is_empty() {
                            self.queue.push_back(ev.raw().clone());
                        } else {
                            self.queue.push_back(
                                SseEvent::new(Some("content_block_start"), &v.to_string())
                                    .to_bytes(),
                            );
                            self.findings.extend(f);
                        }
                        self.blocks.insert(index, BlockState::Pass);
                    }
                }
                Ok(())
            }
            "content_block_delta" => {
                let dtype = v
                    .pointer("/delta/type")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let state = self.blocks.get_mut(&index);
                match (dtype.as_str(), state) {
                    ("text_delta", Some(BlockState::Text(s))) => {
                        let text = v
                            .pointer("/delta/text")
                            .and_then(Value::as_str)
                            .ok_or_else(|| bad("text_delta without text"))?;
                        let out = s.push(text)?;
                        self.emit(index, "text_delta", "text", &out, false);
                        Ok(())
                    }
                    ("input_json_delta", Some(BlockState::Json(s))) => {
                        let text = v
                            .pointer("/delta/partial_json")
                            .and_then(Value::as_str)
                            .ok_or_else(|| bad("input_json_delta without partial_json"))?;
                        let out = s.push(text)?;
                        self.emit(index, "input_json_delta", "partial_json", &out, false);
                        Ok(())
                    }
                    ("citations_delta", Some(BlockState::Text(_))) => {
                        let mut f = Vec::new();
                        if let Some(c) = v.pointer_mut("/delta/citation") {
                            redact_json_value(
                                &self.redactor,
                                c,
                                &format!("response/content/{index}/citations"),
                                &mut f,
                            );
                        }
                        if f.is_empty() {
                            self.queue.push_back(ev.raw().clone());
                        } else {
                            self.queue.push_back(
                                SseEvent::new(Some("content_block_delta"), &v.to_string())
                                    .to_bytes(),
                            );
                            self.findings.extend(f);
                        }
                        Ok(())
                    }
                    ("thinking_delta" | "signature_delta", Some(BlockState::Pass)) => {
                        self.queue.push_back(ev.raw().clone());
                        Ok(())
                    }
                    (t, _) => Err(bad(&format!("delta type {t:?} for this block"))),
                }
            }
            _ => {
                // content_block_stop: release what the block still holds first.
                self.flush_block(index)?;
                self.queue.push_back(ev.raw().clone());
                Ok(())
            }
        }
    }

    /// Ends the stream with an SSE `error` event (strict) or records the
    /// failure and passes the rest through unchanged (best effort).
    fn fail(&mut self, e: RedactionError) {
        tracing::error!(target: "skillgate::redaction", error = %e, "stream redaction failed");
        self.findings
            .push(Finding::new("UNINSPECTED", 1, "response"));
        let data = json!({
            "type": "error",
            "error": {
                "type": "api_error",
                "message": "the gateway could not inspect the response for sensitive data; the stream was ended",
            },
        });
        self.queue
            .push_back(SseEvent::new(Some("error"), &data.to_string()).to_bytes());
        self.done = true;
        self.blocks.clear();
        self.finish_record();
    }

    fn finish_record(&mut self) {
        let f = std::mem::take(&mut self.findings);
        record(self.audit.as_ref(), f);
        self.hand_over_raw();
    }

    /// Gives the upstream bytes read so far to the audit record (once).
    fn hand_over_raw(&mut self) {
        if let (Some(a), Some(raw)) = (&self.audit, self.raw.take()) {
            a.set_raw_response_body(raw.freeze());
        }
    }

    fn on_chunk(&mut self, chunk: &[u8]) {
        if let Some(raw) = &mut self.raw {
            let room = crate::audit::DEFAULT_MAX_CAPTURE_BYTES.saturating_sub(raw.len());
            raw.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        let events = match self.decoder.push(chunk) {
            Ok(evs) => evs,
            Err(e) => {
                return self.fail(RedactionError::Uninspectable(format!("event stream: {e}")));
            }
        };
        for ev in events {
            let raw = ev.raw().clone();
            if let Err(e) = self.on_event(ev) {
                if self.mode == Mode::BestEffort {
                    // The event cannot be inspected: it passes as it came.
                    tracing::warn!(target: "skillgate::redaction", error = %e, "stream content passed uninspected (best effort)");
                    self.findings
                        .push(Finding::new("UNINSPECTED", 1, "response"));
                    self.queue.push_back(raw);
                    continue;
                }
                return self.fail(e);
            }
        }
    }

    fn on_end(&mut self) {
        if let Err(e) = self.decoder.finish() {
            return self.fail(RedactionError::Uninspectable(format!("event stream: {e}")));
        }
        // A stream cut short: what is held is released redacted as a whole.
        let open: Vec<u64> = self.blocks.keys().copied().collect();
        for i in open {
            if let Err(e) = self.flush_block(i) {
                return self.fail(e);
            }
        }
        self.done = true;
        self.finish_record();
    }
}

impl Drop for RedactionBody {
    fn drop(&mut self) {
        // The caller left mid-stream: keep what upstream sent until then.
        self.hand_over_raw();
    }
}

impl http_body::Body for RedactionBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if let Some(b) = this.queue.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(b))));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => this.on_end(),
                Poll::Ready(Some(Err(e))) => {
                    // Upstream failed: what is held is dropped, never released.
                    this.done = true;
                    this.blocks.clear();
                    this.finish_record();
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        this.on_chunk(&data);
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.queue.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
