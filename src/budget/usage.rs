//! Counting tokens from the `usage` of responses: [`UsageMeter`] and
//! [`usage_tokens`].

use bytes::BytesMut;
use http::{HeaderMap, StatusCode, header};
use serde_json::{Map, Value};

use crate::wire::sse::SseDecoder;
use crate::wire::stream::StreamEvent;

/// Default largest JSON response body kept whole to read its `usage`
/// (8 MiB). Past it only the last [`JSON_TAIL_BYTES`] are kept.
pub const DEFAULT_MAX_JSON_BYTES: usize = 8 * 1024 * 1024;
/// How much of the end of an over-long JSON body is kept to find `usage`.
pub const JSON_TAIL_BYTES: usize = 64 * 1024;

/// The `usage` members that are counted, all of them input or output tokens
/// the model processed.
pub const COUNTED_USAGE_FIELDS: [&str; 4] = [
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
];

/// Tokens in one `usage` object: `input_tokens + output_tokens +
/// cache_creation_input_tokens + cache_read_input_tokens`. Missing, null or
/// non-integer members count 0.
///
/// Cache tokens are counted because they are input the model processed:
/// the API reports them *instead of* `input_tokens` for the cached part of a
/// prompt, so leaving them out would let a caller with prompt caching read
/// most of its input past the budget.
///
/// ```
/// use serde_json::json;
/// use skillgate::budget::usage_tokens;
/// assert_eq!(usage_tokens(&json!({"input_tokens": 10, "output_tokens": 5})), 15);
/// assert_eq!(usage_tokens(&json!({
///     "input_tokens": 3, "cache_creation_input_tokens": 100,
///     "cache_read_input_tokens": 2000, "output_tokens": 7, "service_tier": "standard"
/// })), 2110);
/// assert_eq!(usage_tokens(&json!(null)), 0);
/// ```
pub fn usage_tokens(usage: &Value) -> u64 {
    COUNTED_USAGE_FIELDS
        .iter()
        .filter_map(|f| usage.get(f).and_then(Value::as_u64))
        .fold(0u64, u64::saturating_add)
}

enum Kind {
    Sse {
        decoder: Box<SseDecoder>,
        /// `message_start.message.usage` with every `message_delta.usage`
        /// laid over it (those counts are cumulative).
        usage: Map<String, Value>,
        failed: bool,
    },
    Json {
        buf: BytesMut,
        cap: usize,
        overflowed: bool,
    },
}

/// Counts the tokens of one response as its body streams past, without
/// holding it up: feed it every chunk ([`push`](Self::push)) and the end
/// ([`finish`](Self::finish)); each call returns the tokens newly seen.
///
/// - **SSE** (`text/event-stream`): events are decoded incrementally
///   ([`SseDecoder`]); `message_start.message.usage` counts as soon as it
///   arrives, then each `message_delta.usage` (cumulative counts) adds what
///   grew. The meter holds at most one partial event.
/// - **JSON**: the body is kept (up to [`DEFAULT_MAX_JSON_BYTES`]) and its
///   top-level `usage` counted at the end. A longer body keeps only its last
///   [`JSON_TAIL_BYTES`], where the API puts `usage`, and the last
///   `"usage": {…}` object there is counted.
///
/// ```
/// use skillgate::budget::UsageMeter;
/// let sse = concat!(
///     "event: message_start\n",
///     r#"data: {"type":"message_start","message":{"usage":{"input_tokens":12,"output_tokens":1}}}"#, "\n\n",
///     "event: message_delta\n",
///     r#"data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":30}}"#, "\n\n",
/// );
/// let mut meter = UsageMeter::sse();
/// let mut seen = 0;
/// for chunk in sse.as_bytes().chunks(7) {
///     seen += meter.push(chunk);
/// }
/// seen += meter.finish();
/// assert_eq!(seen, 12 + 30);
/// assert_eq!(meter.total(), 42);
/// ```
pub struct UsageMeter {
    kind: Kind,
    counted: u64,
}

impl std::fmt::Debug for UsageMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            Kind::Sse { .. } => "sse",
            Kind::Json { .. } => "json",
        };
        f.debug_struct("UsageMeter")
            .field("kind", &kind)
            .field("counted", &self.counted)
            .finish()
    }
}

impl UsageMeter {
    /// A meter for an event stream.
    pub fn sse() -> Self {
        UsageMeter {
            kind: Kind::Sse {
                decoder: Box::new(SseDecoder::new()),
                usage: Map::new(),
                failed: false,
            },
            counted: 0,
        }
    }

    /// A meter for a JSON body, kept whole up to [`DEFAULT_MAX_JSON_BYTES`].
    pub fn json() -> Self {
        Self::json_with_limit(DEFAULT_MAX_JSON_BYTES)
    }

    /// A meter for a JSON body, kept whole up to `cap` bytes.
    pub fn json_with_limit(cap: usize) -> Self {
        UsageMeter {
            kind: Kind::Json {
                buf: BytesMut::new(),
                cap,
                overflowed: false,
            },
            counted: 0,
        }
    }

    /// The meter for a response, or `None` if it cannot carry usage: only
    /// `2xx` responses with a `text/event-stream` or JSON content type are
    /// metered. `max_json_bytes` as in [`json_with_limit`](Self::json_with_limit).
    pub fn for_response(
        status: StatusCode,
        headers: &HeaderMap,
        max_json_bytes: usize,
    ) -> Option<Self> {
        if !status.is_success() {
            return None;
        }
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())?
            .trim_start()
            .to_ascii_lowercase();
        if ct.starts_with("text/event-stream") {
            Some(Self::sse())
        } else if ct.starts_with("application/json") {
            Some(Self::json_with_limit(max_json_bytes))
        } else {
            None
        }
    }

    /// Tokens counted so far.
    pub fn total(&self) -> u64 {
        self.counted
    }

    /// Feeds the next bytes of the body; returns the tokens newly seen.
    pub fn push(&mut self, chunk: &[u8]) -> u64 {
        match &mut self.kind {
            Kind::Sse {
                decoder,
                usage,
                failed,
            } => {
                if *failed {
                    return 0;
                }
                let events = match decoder.push(chunk) {
                    Ok(events) => events,
                    Err(e) => {
                        tracing::warn!(error = %e, "budget: event stream undecodable; its usage is not counted further");
                        *failed = true;
                        return 0;
                    }
                };
                let mut changed = false;
                for ev in &events {
                    if ev.is_comment_only() {
                        continue;
                    }
                    match StreamEvent::parse(ev) {
                        Ok(StreamEvent::MessageStart { message }) => {
                            if let Some(u) = message.get("usage") {
                                changed |= lay_over(usage, u);
                            }
                        }
                        Ok(StreamEvent::MessageDelta { usage: Some(u), .. }) => {
                            changed |= lay_over(usage, &u);
                        }
                        _ => {}
                    }
                }
                if !changed {
                    return 0;
                }
                let now = COUNTED_USAGE_FIELDS
                    .iter()
                    .filter_map(|f| usage.get(*f).and_then(Value::as_u64))
                    .fold(0u64, u64::saturating_add);
                self.grow_to(now)
            }
            Kind::Json {
                buf,
                cap,
                overflowed,
            } => {
                buf.extend_from_slice(chunk);
                if buf.len() > *cap {
                    *overflowed = true;
                }
                if *overflowed && buf.len() > 2 * JSON_TAIL_BYTES {
                    let cut = buf.len() - JSON_TAIL_BYTES;
                    let _ = buf.split_to(cut);
                }
                0
            }
        }
    }

    /// Ends the body; returns the tokens newly seen (for JSON, all of them).
    pub fn finish(&mut self) -> u64 {
        match &mut self.kind {
            Kind::Sse { decoder, .. } => {
                // A partial last event carried nothing the client received whole.
                let _ = decoder.finish();
                0
            }
            Kind::Json {
                buf, overflowed, ..
            } => {
                let tokens = if *overflowed {
                    tail_usage(buf).map(|u| usage_tokens(&u))
                } else {
                    serde_json::from_slice::<Value>(buf)
                        .ok()
                        .and_then(|v| v.get("usage").map(usage_tokens))
                };
                *buf = BytesMut::new();
                self.grow_to(tokens.unwrap_or(0))
            }
        }
    }

    fn grow_to(&mut self, total: u64) -> u64 {
        let new = total.saturating_sub(self.counted);
        self.counted = self.counted.max(total);
        new
    }
}

/// Lays the non-null members of the `add` object over `into`; whether any were.
fn lay_over(into: &mut Map<String, Value>, add: &Value) -> bool {
    let mut any = false;
    if let Value::Object(add) = add {
        for (k, v) in add {
            if !v.is_null() {
                into.insert(k.clone(), v.clone());
                any = true;
            }
        }
    }
    any
}

/// The last `"usage": {…}` object in the tail of a JSON body.
fn tail_usage(tail: &[u8]) -> Option<Value> {
    const NEEDLE: &[u8] = b"\"usage\"";
    let mut end = tail.len();
    while let Some(pos) = tail[..end].windows(NEEDLE.len()).rposition(|w| w == NEEDLE) {
        let rest = &tail[pos + NEEDLE.len()..];
        let rest = trim_ws(rest);
        if let Some(rest) = rest.strip_prefix(b":") {
            let rest = trim_ws(rest);
            if rest.first() == Some(&b'{')
                && let Some(Ok(v)) = serde_json::Deserializer::from_slice(rest)
                    .into_iter::<Value>()
                    .next()
            {
                return Some(v);
            }
        }
        end = pos;
    }
    None
}

fn trim_ws(b: &[u8]) -> &[u8] {
    let n = b
        .iter()
        .take_while(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
        .count();
    &b[n..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn feed(meter: &mut UsageMeter, bytes: &[u8], size: usize) -> u64 {
        let mut n = 0;
        for c in bytes.chunks(size.max(1)) {
            n += meter.push(c);
        }
        n + meter.finish()
    }

    fn sse_transcript() -> String {
        let ev = |name: &str, data: Value| format!("event: {name}\r\ndata: {data}\r\n\r\n");
        [
            ev(
                "message_start",
                json!({"type":"message_start","message":{"id":"msg_1","content":[],"usage":{
                    "input_tokens": 472, "cache_creation_input_tokens": 100,
                    "cache_read_input_tokens": 1000, "output_tokens": 1, "service_tier": "standard"}}}),
            ),
            ev(
                "content_block_start",
                json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
            ),
            ": keep-alive\n\n".to_owned(),
            ev("ping", json!({"type":"ping"})),
            ev(
                "content_block_delta",
                json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"héllo \"usage\": {\"output_tokens\": 999}"}}),
            ),
            ev("content_block_stop", json!({"type":"content_block_stop","index":0})),
            // Cumulative: output grows 1 → 89; input repeated, and a null.
            ev(
                "message_delta",
                json!({"type":"message_delta","delta":{"stop_reason":"end_turn"},
                    "usage":{"input_tokens": 472, "output_tokens": 89, "cache_read_input_tokens": null}}),
            ),
            ev("message_stop", json!({"type":"message_stop"})),
        ]
        .concat()
    }

    #[test]
    fn sse_usage_in_any_chunking() {
        let t = sse_transcript();
        let expected = 472 + 100 + 1000 + 89;
        for size in [1, 2, 3, 5, 7, 13, 64, 100_000] {
            let mut m = UsageMeter::sse();
            assert_eq!(
                feed(&mut m, t.as_bytes(), size),
                expected,
                "chunk size {size}"
            );
            assert_eq!(m.total(), expected);
        }
    }

    #[test]
    fn sse_counts_as_it_streams() {
        let t = sse_transcript();
        let start_end = t.find("event: content_block_start").unwrap();
        let mut m = UsageMeter::sse();
        // message_start alone already counts input and the first output token.
        assert_eq!(m.push(&t.as_bytes()[..start_end]), 472 + 100 + 1000 + 1);
        assert_eq!(m.push(&t.as_bytes()[start_end..]), 88);
        assert_eq!(m.finish(), 0);
    }

    #[test]
    fn sse_cut_short_counts_what_arrived() {
        let t = sse_transcript();
        let cut = t.find("event: message_delta").unwrap() + 20;
        let mut m = UsageMeter::sse();
        assert_eq!(feed(&mut m, &t.as_bytes()[..cut], 9), 1573);
    }

    #[test]
    fn sse_error_stream_and_garbage() {
        let mut m = UsageMeter::sse();
        let err = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\"}}\n\n";
        assert_eq!(feed(&mut m, err.as_bytes(), 4), 0);
        let mut m = UsageMeter::sse();
        assert_eq!(feed(&mut m, b"data: \xff\xfe\n\ndata: {}\n\n", 3), 0);
    }

    #[test]
    fn json_usage_in_any_chunking() {
        let body = json!({
            "id": "msg_1", "type": "message", "role": "assistant",
            "content": [{"type": "tool_use", "id": "t", "name": "x", "input": {"usage": {"input_tokens": 5000}}}],
            "usage": {"input_tokens": 21, "output_tokens": 8, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 4},
        })
        .to_string();
        for size in [1, 2, 5, 17, 1 << 20] {
            let mut m = UsageMeter::json();
            assert_eq!(feed(&mut m, body.as_bytes(), size), 33, "chunk size {size}");
        }
        let mut m = UsageMeter::json();
        assert_eq!(feed(&mut m, b"{\"type\":\"message\"}", 3), 0);
        let mut m = UsageMeter::json();
        assert_eq!(
            feed(&mut m, b"{\"usage\":{\"input_tokens\":", 3),
            0,
            "cut short"
        );
    }

    #[test]
    fn long_json_counts_from_the_tail() {
        let text = "x".repeat(300_000);
        let body = json!({
            "content": [{"type": "text", "text": text}],
            "usage": {"input_tokens": 7, "output_tokens": 70000},
        })
        .to_string();
        let mut m = UsageMeter::json_with_limit(1024);
        assert_eq!(feed(&mut m, body.as_bytes(), 4096), 70007);
        // A `"usage"` inside a string is escaped and never matches.
        let tricky = br#"{"content":[{"text":"\"usage\": {\"input_tokens\": 9}"}],"usage" : {"output_tokens":3}}"#;
        assert_eq!(tail_usage(tricky), Some(json!({"output_tokens": 3})));
        assert_eq!(
            tail_usage(br#"{"text":"\"usage\": {\"input_tokens\": 9}"}"#),
            None
        );
    }

    #[test]
    fn which_responses_are_metered() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            "text/event-stream; charset=utf-8".parse().unwrap(),
        );
        assert!(UsageMeter::for_response(StatusCode::OK, &h, 10).is_some());
        assert!(UsageMeter::for_response(StatusCode::TOO_MANY_REQUESTS, &h, 10).is_none());
        h.insert(header::CONTENT_TYPE, "Application/JSON".parse().unwrap());
        assert!(matches!(
            UsageMeter::for_response(StatusCode::OK, &h, 10).map(|m| m.kind),
            Some(Kind::Json { .. })
        ));
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(UsageMeter::for_response(StatusCode::OK, &h, 10).is_none());
        assert!(UsageMeter::for_response(StatusCode::OK, &HeaderMap::new(), 10).is_none());
    }
}
