//! The Anthropic Messages streaming events, as carried in SSE `data:` lines.
//!
//! With `"stream": true`, the Messages API answers with an event stream
//! (<https://docs.anthropic.com/en/api/messages-streaming>): `message_start`,
//! then for each content block `content_block_start`, some
//! `content_block_delta`s and `content_block_stop`, then `message_delta` and
//! `message_stop`; `ping` and `error` may appear anywhere. [`StreamEvent`] is a
//! typed view of one event's JSON; [`reassemble`] rebuilds what a client ends
//! up with from a whole transcript.
//!
//! The API adds event and delta types over time; unknown ones parse as
//! [`StreamEvent::Unknown`] and [`Delta::Unknown`], never as errors.
//!
//! ```
//! use skillgate::wire::sse::SseEvent;
//! use skillgate::wire::stream::{Delta, StreamEvent};
//!
//! let ev = SseEvent::new(
//!     Some("content_block_delta"),
//!     r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
//! );
//! assert_eq!(
//!     StreamEvent::parse(&ev)?,
//!     StreamEvent::ContentBlockDelta { index: 0, delta: Delta::TextDelta { text: "Hi".into() } }
//! );
//! # Ok::<(), serde_json::Error>(())
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::sse::{SseDecoder, SseError, SseEvent};

/// One Messages streaming event: the JSON object in an SSE block's `data`,
/// discriminated by its `"type"` member (the SSE `event:` name repeats it).
///
/// Sub-objects the gateway does not need typed (the message, content blocks,
/// usage, errors) are kept as [`serde_json::Value`]. Members not listed are
/// ignored.
///
/// ```
/// use skillgate::wire::sse::SseEvent;
/// use skillgate::wire::stream::StreamEvent;
///
/// let stop = SseEvent::new(Some("message_stop"), r#"{"type":"message_stop"}"#);
/// assert_eq!(StreamEvent::parse(&stop)?, StreamEvent::MessageStop);
///
/// // A type this version does not know is not an error.
/// let new = SseEvent::new(Some("future_event"), r#"{"type":"future_event","x":1}"#);
/// assert_eq!(StreamEvent::parse(&new)?, StreamEvent::Unknown);
///
/// // A known type with missing members is.
/// let bad = SseEvent::new(None, r#"{"type":"content_block_stop"}"#);
/// assert!(StreamEvent::parse(&bad).is_err());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum StreamEvent {
    /// `message_start`: the message envelope, with empty `content` and the
    /// initial `usage` (`input_tokens`, cache token counts, `output_tokens`).
    MessageStart {
        /// The `message` object (`id`, `model`, `role`, `usage`, …).
        message: Value,
    },
    /// `content_block_start`: a content block begins at `index`.
    ContentBlockStart {
        /// Position of the block in the message's `content` array.
        index: usize,
        /// The block's initial state, e.g. `{"type":"text","text":""}` or
        /// `{"type":"tool_use","id":…,"name":…,"input":{}}`.
        content_block: Value,
    },
    /// `content_block_delta`: an increment to the block at `index`.
    ContentBlockDelta {
        /// Position of the block in the message's `content` array.
        index: usize,
        /// The increment.
        delta: Delta,
    },
    /// `content_block_stop`: the block at `index` is complete.
    ContentBlockStop {
        /// Position of the block in the message's `content` array.
        index: usize,
    },
    /// `message_delta`: top-level changes to the message.
    MessageDelta {
        /// `{"stop_reason": …, "stop_sequence": …}`.
        delta: Value,
        /// Cumulative token counts (at least `output_tokens`), if present.
        #[serde(default)]
        usage: Option<Value>,
    },
    /// `message_stop`: the stream is complete.
    MessageStop,
    /// `ping`: keep-alive.
    Ping,
    /// `error`: the API failed mid-stream (e.g. `overloaded_error`).
    Error {
        /// `{"type": "overloaded_error", "message": "Overloaded"}`.
        error: Value,
    },
    /// Any other `type`: a kind of event this version does not know.
    #[serde(other)]
    Unknown,
}

/// The increment carried by a `content_block_delta`, by its `"type"`.
///
/// ```
/// use skillgate::wire::stream::Delta;
///
/// let d: Delta = serde_json::from_str(r#"{"type":"input_json_delta","partial_json":"{\"a\":"}"#)?;
/// assert_eq!(d, Delta::InputJsonDelta { partial_json: r#"{"a":"#.into() });
/// let d: Delta = serde_json::from_str(r#"{"type":"some_new_delta"}"#)?;
/// assert_eq!(d, Delta::Unknown);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Delta {
    /// `text_delta`: more text for a `text` block.
    TextDelta {
        /// The text to append.
        text: String,
    },
    /// `input_json_delta`: more of a tool-use block's `input`, as a fragment of
    /// JSON text; only the concatenation of all fragments is valid JSON.
    InputJsonDelta {
        /// The JSON text to append.
        partial_json: String,
    },
    /// `thinking_delta`: more text for a `thinking` block.
    ThinkingDelta {
        /// The thinking text to append.
        thinking: String,
    },
    /// `signature_delta`: the signature of a `thinking` block.
    SignatureDelta {
        /// The signature.
        signature: String,
    },
    /// `citations_delta`: a citation to add to a `text` block.
    CitationsDelta {
        /// The citation object (`type`, `cited_text`, location fields, …).
        citation: Value,
    },
    /// Any other `type`: a kind of delta this version does not know.
    #[serde(other)]
    Unknown,
}

impl StreamEvent {
    /// Parses the JSON in `ev.data()`. The JSON `"type"` decides the variant;
    /// the SSE `event:` name is not consulted.
    ///
    /// Errors if the data is not a JSON object with a string `"type"`, or if
    /// an event or delta of a known type lacks a member it requires (or has
    /// one of the wrong type). Blocks with no data, such as keep-alive comments
    /// ([`SseEvent::is_comment_only`]), are errors too: skip them first.
    pub fn parse(ev: &SseEvent) -> Result<StreamEvent, serde_json::Error> {
        serde_json::from_str(ev.data())
    }
}

/// What a client ends up with after a whole stream; see [`reassemble`].
///
/// ```
/// use skillgate::wire::stream::Reassembled;
/// let nothing = Reassembled::default();
/// assert!(nothing.text.is_empty() && !nothing.complete);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reassembled {
    /// The text of every `text` block (its initial `text` plus its
    /// `text_delta`s), blocks in index order joined with `"\n"`.
    pub text: String,
    /// For each tool-use block (`tool_use`, `server_tool_use`,
    /// `mcp_tool_use`), in index order: its `input_json_delta` fragments
    /// concatenated, i.e. the input as JSON text. `""` if none arrived (the
    /// API then means `{}`).
    pub tool_inputs: Vec<String>,
    /// The last non-null `stop_reason` seen (from `message_delta.delta`, or
    /// `message_start.message`), e.g. `"end_turn"`, `"tool_use"`.
    pub stop_reason: Option<String>,
    /// `message_start.message.usage` with the non-null members of each
    /// `message_delta.usage` laid over it (those counts are cumulative), e.g.
    /// `{"input_tokens":472,"output_tokens":89,…}`. `None` if neither came.
    pub usage: Option<Value>,
    /// The `error` object of the last `error` event, if any.
    pub error: Option<Value>,
    /// Whether `message_stop` was seen.
    pub complete: bool,
}

/// Kind of a content block, as far as reassembly cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Text,
    Tool,
    Other,
}

#[derive(Debug)]
struct Block {
    kind: BlockKind,
    text: String,
}

impl Block {
    fn new(kind: BlockKind) -> Self {
        Block {
            kind,
            text: String::new(),
        }
    }
}

/// Rebuilds what a client would see from a whole SSE transcript of a
/// streaming Messages response: see [`Reassembled`] for each part.
///
/// Returns `None` if `sse_bytes` is not a decodable event stream (invalid
/// UTF-8, or a block over the decoder's default 16 MiB limit). A stream cut
/// off inside a block ([`SseError::Truncated`]) is reassembled from the blocks
/// before the cut, with `complete` telling whether `message_stop` was seen.
/// Blocks whose data does not parse as a [`StreamEvent`] (comments, unknown
/// shapes) are skipped. A delta for a block that never had a
/// `content_block_start` is kept, as text for a `text_delta` and as a tool
/// input for an `input_json_delta`; deltas that do not fit the block's type
/// are ignored.
///
/// ```
/// use skillgate::wire::stream::reassemble;
///
/// let sse = concat!(
///     "event: content_block_start\n",
///     r#"data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#, "\n\n",
///     "event: content_block_delta\n",
///     r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#, "\n\n",
///     "event: message_delta\n",
///     r#"data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":3}}"#, "\n\n",
///     "event: message_stop\n",
///     r#"data: {"type":"message_stop"}"#, "\n\n",
/// );
/// let r = reassemble(sse.as_bytes()).unwrap();
/// assert_eq!(r.text, "Hello");
/// assert_eq!(r.stop_reason.as_deref(), Some("end_turn"));
/// assert_eq!(r.usage, Some(serde_json::json!({"output_tokens": 3})));
/// assert!(r.complete);
///
/// assert_eq!(reassemble(b"data: \xff\n\n"), None);
/// ```
pub fn reassemble(sse_bytes: &[u8]) -> Option<Reassembled> {
    let mut decoder = SseDecoder::new();
    let events = decoder.push(sse_bytes).ok()?;
    match decoder.finish() {
        Ok(()) | Err(SseError::Truncated) => {}
        Err(_) => return None,
    }

    let mut out = Reassembled::default();
    let mut blocks: BTreeMap<usize, Block> = BTreeMap::new();
    for ev in &events {
        if ev.is_comment_only() {
            continue;
        }
        let Ok(event) = StreamEvent::parse(ev) else {
            continue;
        };
        match event {
            StreamEvent::MessageStart { message } => {
                if let Some(reason) = message.get("stop_reason").and_then(Value::as_str) {
                    out.stop_reason = Some(reason.to_owned());
                }
                if let Some(usage) = message.get("usage") {
                    merge_usage(&mut out.usage, usage);
                }
            }
            StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => {
                let kind = match content_block.get("type").and_then(Value::as_str) {
                    Some("text") => BlockKind::Text,
                    Some("tool_use" | "server_tool_use" | "mcp_tool_use") => BlockKind::Tool,
                    _ => BlockKind::Other,
                };
                let mut block = Block::new(kind);
                if kind == BlockKind::Text
                    && let Some(text) = content_block.get("text").and_then(Value::as_str)
                {
                    block.text.push_str(text);
                }
                blocks.insert(index, block);
            }
            StreamEvent::ContentBlockDelta { index, delta } => {
                let (kind, piece) = match &delta {
                    Delta::TextDelta { text } => (BlockKind::Text, text),
                    Delta::InputJsonDelta { partial_json } => (BlockKind::Tool, partial_json),
                    _ => continue,
                };
                let block = blocks.entry(index).or_insert_with(|| Block::new(kind));
                if block.kind == kind {
                    block.text.push_str(piece);
                }
            }
            StreamEvent::MessageDelta { delta, usage } => {
                if let Some(reason) = delta.get("stop_reason").and_then(Value::as_str) {
                    out.stop_reason = Some(reason.to_owned());
                }
                if let Some(usage) = &usage {
                    merge_usage(&mut out.usage, usage);
                }
            }
            StreamEvent::MessageStop => out.complete = true,
            StreamEvent::Error { error } => out.error = Some(error),
            StreamEvent::ContentBlockStop { .. } | StreamEvent::Ping | StreamEvent::Unknown => {}
        }
    }

    let mut texts = Vec::new();
    for block in blocks.into_values() {
        match block.kind {
            BlockKind::Text => texts.push(block.text),
            BlockKind::Tool => out.tool_inputs.push(block.text),
            BlockKind::Other => {}
        }
    }
    out.text = texts.join("\n");
    Some(out)
}

/// Lays the non-null members of the `add` object over `into` (an object).
fn merge_usage(into: &mut Option<Value>, add: &Value) {
    let Value::Object(add) = add else {
        return;
    };
    let target = into.get_or_insert_with(|| Value::Object(Map::new()));
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in add {
            if !value.is_null() {
                target.insert(key.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::sse::decode_all;
    use crate::wire::sse::tests::TRANSCRIPT;
    use serde_json::json;

    fn parse(data: &str) -> Result<StreamEvent, serde_json::Error> {
        StreamEvent::parse(&SseEvent::new(None, data))
    }

    fn block(event: &str, data: Value) -> String {
        format!("event: {event}\ndata: {data}\n\n")
    }

    fn text_start(index: usize) -> String {
        block(
            "content_block_start",
            json!({"type":"content_block_start","index":index,"content_block":{"type":"text","text":""}}),
        )
    }

    fn text_delta(index: usize, text: &str) -> String {
        block(
            "content_block_delta",
            json!({"type":"content_block_delta","index":index,"delta":{"type":"text_delta","text":text}}),
        )
    }

    fn json_delta(index: usize, partial: &str) -> String {
        block(
            "content_block_delta",
            json!({"type":"content_block_delta","index":index,"delta":{"type":"input_json_delta","partial_json":partial}}),
        )
    }

    fn tool_start(index: usize, kind: &str) -> String {
        block(
            "content_block_start",
            json!({"type":"content_block_start","index":index,"content_block":{"type":kind,"id":"toolu_1","name":"f","input":{}}}),
        )
    }

    #[test]
    fn transcript_events_parse_to_their_variants() {
        let events: Vec<StreamEvent> = decode_all(TRANSCRIPT.as_bytes())
            .unwrap()
            .iter()
            .map(|e| StreamEvent::parse(e).unwrap())
            .collect();
        assert_eq!(events.len(), 14);
        let StreamEvent::MessageStart { message } = &events[0] else {
            panic!("{:?}", events[0]);
        };
        assert_eq!(message["usage"]["input_tokens"], 472);
        assert_eq!(
            events[1],
            StreamEvent::ContentBlockStart {
                index: 0,
                content_block: json!({"type":"text","text":""})
            }
        );
        assert_eq!(events[2], StreamEvent::Ping);
        assert_eq!(
            events[3],
            StreamEvent::ContentBlockDelta {
                index: 0,
                delta: Delta::TextDelta {
                    text: "Okay".into()
                }
            }
        );
        assert_eq!(events[6], StreamEvent::ContentBlockStop { index: 0 });
        assert_eq!(
            events[9],
            StreamEvent::ContentBlockDelta {
                index: 1,
                delta: Delta::InputJsonDelta {
                    partial_json: r#"{"location": "San Fra"#.into()
                }
            }
        );
        assert_eq!(
            events[12],
            StreamEvent::MessageDelta {
                delta: json!({"stop_reason":"tool_use","stop_sequence":null}),
                usage: Some(json!({"output_tokens":89}))
            }
        );
        assert_eq!(events[13], StreamEvent::MessageStop);
    }

    #[test]
    fn other_delta_types_parse() {
        let delta = |d: Value| match parse(
            &json!({"type":"content_block_delta","index":2,"delta":d}).to_string(),
        )
        .unwrap()
        {
            StreamEvent::ContentBlockDelta { index: 2, delta } => delta,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            delta(json!({"type":"thinking_delta","thinking":"Let me"})),
            Delta::ThinkingDelta {
                thinking: "Let me".into()
            }
        );
        assert_eq!(
            delta(json!({"type":"signature_delta","signature":"EqQB"})),
            Delta::SignatureDelta {
                signature: "EqQB".into()
            }
        );
        let citation = json!({"type":"char_location","cited_text":"x","document_index":0,"start_char_index":0,"end_char_index":1});
        assert_eq!(
            delta(json!({"type":"citations_delta","citation":citation})),
            Delta::CitationsDelta { citation }
        );
        assert_eq!(
            delta(json!({"type":"brand_new_delta","stuff":[1]})),
            Delta::Unknown
        );
    }

    #[test]
    fn error_event_parses() {
        let ev = parse(
            r#"{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}"#,
        );
        assert_eq!(
            ev.unwrap(),
            StreamEvent::Error {
                error: json!({"type":"overloaded_error","message":"Overloaded"})
            }
        );
    }

    #[test]
    fn unknown_event_types_and_extra_members_are_not_errors() {
        assert_eq!(
            parse(r#"{"type":"brand_new","index":"x"}"#).unwrap(),
            StreamEvent::Unknown
        );
        assert_eq!(
            parse(r#"{"type":"message_stop","extra":{"a":1}}"#).unwrap(),
            StreamEvent::MessageStop
        );
        assert_eq!(
            parse(r#"{"type":"ping","n":1}"#).unwrap(),
            StreamEvent::Ping
        );
        assert_eq!(
            parse(r#"{"type":"content_block_stop","index":3,"new_member":true}"#).unwrap(),
            StreamEvent::ContentBlockStop { index: 3 }
        );
        assert_eq!(
            parse(r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"}}"#).unwrap(),
            StreamEvent::MessageDelta {
                delta: json!({"stop_reason":"end_turn"}),
                usage: None
            }
        );
    }

    #[test]
    fn malformed_events_are_errors() {
        assert!(parse("").is_err());
        assert!(parse("not json").is_err());
        assert!(parse("[1,2]").is_err());
        assert!(parse(r#"{"index":0}"#).is_err(), "no type");
        assert!(parse(r#"{"type":7}"#).is_err());
        assert!(parse(r#"{"type":"content_block_stop","index":-1}"#).is_err());
        assert!(
            parse(r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta"}}"#)
                .is_err()
        );
        assert!(parse(r#"{"type":"message_start"}"#).is_err());
        let keepalive = &decode_all(b": keepalive\n\n").unwrap()[0];
        assert!(StreamEvent::parse(keepalive).is_err());
    }

    #[test]
    fn parse_uses_the_json_type_not_the_sse_event_name() {
        let ev = SseEvent::new(Some("ping"), r#"{"type":"message_stop"}"#);
        assert_eq!(StreamEvent::parse(&ev).unwrap(), StreamEvent::MessageStop);
    }

    #[test]
    fn transcript_reassembles() {
        let r = reassemble(TRANSCRIPT.as_bytes()).unwrap();
        assert_eq!(
            r.text,
            "Okay, let's check the weather in San Francisco – “now”."
        );
        assert_eq!(
            r.tool_inputs,
            vec![r#"{"location": "San Francisco, CA"}"#.to_owned()]
        );
        let input: Value = serde_json::from_str(&r.tool_inputs[0]).unwrap();
        assert_eq!(input["location"], "San Francisco, CA");
        assert_eq!(r.stop_reason.as_deref(), Some("tool_use"));
        assert_eq!(
            r.usage,
            Some(json!({
                "input_tokens": 472,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 89
            }))
        );
        assert_eq!(r.error, None);
        assert!(r.complete);
    }

    #[test]
    fn line_endings_do_not_change_the_reassembly() {
        let lf = reassemble(TRANSCRIPT.as_bytes()).unwrap();
        for eol in ["\r\n", "\r"] {
            let other = TRANSCRIPT.replace('\n', eol);
            assert_eq!(reassemble(other.as_bytes()).unwrap(), lf, "{eol:?}");
        }
        let with_noise = TRANSCRIPT.replace("event: ping\n", ": keepalive\n\nevent: ping\nid: 1\n");
        assert_eq!(
            reassemble(format!("\u{feff}{with_noise}").as_bytes()).unwrap(),
            lf
        );
    }

    #[test]
    fn text_blocks_join_in_index_order_with_newlines() {
        // Blocks arrive out of index order; the tool block sits between texts.
        let sse = [
            text_start(2),
            text_delta(2, "third"),
            text_start(0),
            text_delta(0, "fir"),
            tool_start(1, "tool_use"),
            json_delta(1, r#"{"q":"#),
            text_delta(0, "st"),
            json_delta(1, "1}"),
            tool_start(3, "server_tool_use"),
            json_delta(3, r#"{"query":"x"}"#),
            tool_start(4, "tool_use"),
        ]
        .concat();
        let r = reassemble(sse.as_bytes()).unwrap();
        assert_eq!(r.text, "first\nthird");
        assert_eq!(r.tool_inputs, [r#"{"q":1}"#, r#"{"query":"x"}"#, ""]);
        assert!(!r.complete);
        assert_eq!((r.stop_reason, r.usage, r.error), (None, None, None));
    }

    #[test]
    fn non_text_blocks_and_mismatched_deltas_are_left_out() {
        let thinking = block(
            "content_block_start",
            json!({"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}),
        );
        let thinking_delta = block(
            "content_block_delta",
            json!({"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hmm"}}),
        );
        let sse = [
            thinking,
            thinking_delta,
            text_delta(0, "not text"),
            text_start(1),
            json_delta(1, "{}"),
            text_delta(1, "shown"),
            // A delta without a start still counts, by its own kind.
            text_delta(5, "orphan"),
            json_delta(6, "{}"),
        ]
        .concat();
        let r = reassemble(sse.as_bytes()).unwrap();
        assert_eq!(r.text, "shown\norphan");
        assert_eq!(r.tool_inputs, ["{}"]);
    }

    #[test]
    fn text_block_start_with_initial_text_is_kept() {
        let start = block(
            "content_block_start",
            json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":"Pre"}}),
        );
        let r = reassemble([start, text_delta(0, "fix")].concat().as_bytes()).unwrap();
        assert_eq!(r.text, "Prefix");
    }

    #[test]
    fn usage_merges_start_and_delta_counts() {
        let start = block(
            "message_start",
            json!({"type":"message_start","message":{"id":"m","usage":{"input_tokens":10,"output_tokens":1,"cache_read_input_tokens":4}}}),
        );
        let delta = block(
            "message_delta",
            json!({"type":"message_delta","delta":{"stop_reason":"max_tokens","stop_sequence":null},"usage":{"output_tokens":50,"input_tokens":null}}),
        );
        let second = block(
            "message_delta",
            json!({"type":"message_delta","delta":{"stop_reason":null},"usage":{"output_tokens":60}}),
        );
        let r = reassemble([start, delta, second].concat().as_bytes()).unwrap();
        assert_eq!(
            r.usage,
            Some(json!({"input_tokens":10,"output_tokens":60,"cache_read_input_tokens":4}))
        );
        assert_eq!(
            r.stop_reason.as_deref(),
            Some("max_tokens"),
            "null does not reset it"
        );
    }

    #[test]
    fn error_event_is_reported() {
        let sse = [
            text_start(0),
            text_delta(0, "partial"),
            block(
                "error",
                json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}),
            ),
        ]
        .concat();
        let r = reassemble(sse.as_bytes()).unwrap();
        assert_eq!(r.text, "partial");
        assert_eq!(
            r.error,
            Some(json!({"type":"overloaded_error","message":"Overloaded"}))
        );
        assert!(!r.complete);
    }

    #[test]
    fn truncated_stream_reassembles_what_arrived() {
        let cut = TRANSCRIPT.find("ncisco, CA").unwrap();
        let r = reassemble(&TRANSCRIPT.as_bytes()[..cut]).unwrap();
        assert_eq!(
            r.text,
            "Okay, let's check the weather in San Francisco – “now”."
        );
        assert_eq!(r.tool_inputs, [r#"{"location": "San Fra"#]);
        assert_eq!(r.stop_reason, None);
        assert_eq!(r.usage.as_ref().unwrap()["output_tokens"], 2);
        assert!(!r.complete);
    }

    #[test]
    fn undecodable_streams_give_none() {
        assert_eq!(reassemble(b"data: \xC3\n\n"), None);
        let mut bad = TRANSCRIPT.as_bytes().to_vec();
        bad.extend_from_slice(b"data: \xFF\n\n");
        assert_eq!(reassemble(&bad), None);
        assert_eq!(reassemble(b""), Some(Reassembled::default()));
        assert_eq!(
            reassemble(b"data: not json\n\n"),
            Some(Reassembled::default())
        );
    }
}
