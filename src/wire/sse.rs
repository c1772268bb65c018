//! An incremental Server-Sent Events codec.
//!
//! Follows the WHATWG HTML Living Standard, §9.2 "Server-sent events":
//! §9.2.5 "Parsing an event stream" (line terminators, the optional leading
//! byte order mark, comments, `field: value` lines) and §9.2.6 "Interpreting an
//! event stream" (`event`, `data`, `id`, `retry`, blank-line dispatch).
//!
//! The unit this codec works in is the *block*: every byte up to and including
//! the blank line that ends it. [`SseDecoder`] yields one [`SseEvent`] per block,
//! including blocks that carry no event at all (keep-alive comments, stray
//! blank lines), so that a proxy can forward [`SseEvent::raw`] byte for byte:
//! the `raw()` of every yielded block, concatenated, is exactly the input.
//!
//! ```
//! use skillgate::wire::sse::SseDecoder;
//!
//! let mut decoder = SseDecoder::new();
//! // Chunks may split anywhere, even between the CR and LF of a CRLF.
//! let mut events = decoder.push(b"event: ping\r\ndata: {\"type\":\"ping\"}\r")?;
//! events.extend(decoder.push(b"\n\r\n: keepalive\n\n")?);
//! decoder.finish()?;
//!
//! assert_eq!(events.len(), 2);
//! assert_eq!(events[0].event(), Some("ping"));
//! assert_eq!(events[0].data(), r#"{"type":"ping"}"#);
//! assert!(events[1].is_comment_only());
//! let raw: Vec<u8> = events.iter().flat_map(|e| e.raw().to_vec()).collect();
//! assert_eq!(raw, b"event: ping\r\ndata: {\"type\":\"ping\"}\r\n\r\n: keepalive\n\n");
//! # Ok::<(), skillgate::wire::sse::SseError>(())
//! ```

use bytes::{Bytes, BytesMut};

/// The UTF-8 byte order mark, ignored once at the very start of a stream (§9.2.5).
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Default for [`SseDecoder::new`]: the largest block accepted, 16 MiB.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// One block of an event stream: its exact bytes plus the fields it sets.
///
/// Field semantics follow WHATWG HTML §9.2.6, applied to this block alone:
/// `event` and `id` keep their last value, `data` lines are joined with `\n`,
/// `retry` is kept only when it is all ASCII digits. The `id` is not carried
/// over from earlier blocks (tracking the "last event ID" is up to the caller).
///
/// Decoded blocks remember their bytes exactly as received ([`raw`](Self::raw));
/// blocks built with [`SseEvent::new`] use a canonical encoding.
///
/// ```
/// use skillgate::wire::sse::{decode_all, SseEvent};
///
/// let ev = SseEvent::new(Some("content_block_delta"), "line one\nline two");
/// assert_eq!(
///     &ev.to_bytes()[..],
///     b"event: content_block_delta\ndata: line one\ndata: line two\n\n"
/// );
/// // Decoding the canonical bytes gives the same event back.
/// assert_eq!(decode_all(&ev.to_bytes())?, vec![ev]);
///
/// let decoded = decode_all(b"id: 7\nretry: 3000\ndata:  two spaces\n\n")?;
/// assert_eq!(decoded[0].id(), Some("7"));
/// assert_eq!(decoded[0].retry(), Some(3000));
/// assert_eq!(decoded[0].data(), " two spaces"); // only one space is stripped
/// assert_eq!(decoded[0].event(), None);
/// # Ok::<(), skillgate::wire::sse::SseError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SseEvent {
    raw: Bytes,
    fields: Fields,
}

/// The fields one block sets, accumulated line by line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
struct Fields {
    event: Option<String>,
    data: String,
    has_data: bool,
    id: Option<String>,
    retry: Option<u64>,
}

impl Fields {
    /// Applies one `field: value` line (§9.2.6 "process the field").
    fn apply(&mut self, name: &str, value: &str) {
        match name {
            "event" => self.event = Some(value.to_owned()),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            // All digits, so parsing fails only on overflow, which is ignored too.
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse::<u64>() {
                    self.retry = Some(ms);
                }
            }
            _ => {}
        }
    }
}

impl SseEvent {
    /// Builds an event with the canonical encoding: `event: X\n` if `event` is
    /// given, then one `data: line\n` per line of `data`, then a blank line `\n`.
    ///
    /// `data` is split into lines on `\n`; `\r\n` and a lone `\r` also count as
    /// line breaks (a decoder would read them so), so [`data`](Self::data)
    /// returns the lines joined with `\n`. A field value cannot hold a line
    /// break, so `event` is cut at its first `\r` or `\n`. Decoding
    /// [`to_bytes`](Self::to_bytes) always yields an event equal to this one.
    ///
    /// ```
    /// use skillgate::wire::sse::SseEvent;
    /// let ev = SseEvent::new(None, "");
    /// assert_eq!(&ev.to_bytes()[..], b"data: \n\n");
    /// assert!(!ev.is_comment_only());
    /// ```
    pub fn new(event: Option<&str>, data: &str) -> SseEvent {
        let event = event.map(|e| e.split(['\r', '\n']).next().unwrap_or_default());
        let lines = split_lines(data);
        let mut raw = String::with_capacity(
            event.map_or(0, |e| e.len() + 8) + data.len() + 7 * lines.len() + 1,
        );
        if let Some(e) = event {
            raw.push_str("event: ");
            raw.push_str(e);
            raw.push('\n');
        }
        for line in &lines {
            raw.push_str("data: ");
            raw.push_str(line);
            raw.push('\n');
        }
        raw.push('\n');
        SseEvent {
            raw: Bytes::from(raw),
            fields: Fields {
                event: event.map(str::to_owned),
                data: lines.join("\n"),
                has_data: true,
                id: None,
                retry: None,
            },
        }
    }

    /// The value of the block's `event` field (the last one if repeated), or
    /// `None` if it has none. An `event:` line with an empty value gives
    /// `Some("")`, which §9.2.6 treats like no event type (`"message"`).
    pub fn event(&self) -> Option<&str> {
        self.fields.event.as_deref()
    }

    /// The block's `data` lines joined with `\n` (§9.2.6), without a trailing
    /// newline; `""` if the block has no `data` field.
    pub fn data(&self) -> &str {
        &self.fields.data
    }

    /// The value of the block's `id` field (the last one if repeated), or
    /// `None`. Values containing U+0000 NULL are ignored, as §9.2.6 requires.
    pub fn id(&self) -> Option<&str> {
        self.fields.id.as_deref()
    }

    /// The block's `retry` field: a reconnection time in milliseconds. Kept only
    /// if the value is non-empty and all ASCII digits (§9.2.6) and fits a `u64`.
    pub fn retry(&self) -> Option<u64> {
        self.fields.retry
    }

    /// `true` if the block sets none of `event`, `data`, `id` or `retry`: it
    /// holds only comments (`: keepalive\n\n`), is a stray blank line, or has
    /// only fields that §9.2.6 ignores. Such a block dispatches no event.
    pub fn is_comment_only(&self) -> bool {
        let f = &self.fields;
        !f.has_data && f.event.is_none() && f.id.is_none() && f.retry.is_none()
    }

    /// The exact bytes of this block as received, including comments, unknown
    /// fields, a leading byte order mark and the terminating blank line.
    ///
    /// One exception to "including": when a block ends with a CR that was the
    /// last byte of a [`SseDecoder::push`] chunk, the block is yielded at once,
    /// so an LF that then starts the next chunk (completing that CRLF) is
    /// carried at the front of the *next* block's `raw()` instead.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// The bytes to send for this block: equal to [`raw`](Self::raw), so a
    /// decoded block is re-emitted byte for byte. Cheap (reference counted).
    pub fn to_bytes(&self) -> Bytes {
        self.raw.clone()
    }
}

/// Splits on `\r\n`, `\r` and `\n`; always returns at least one (possibly empty) line.
fn split_lines(s: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find(['\r', '\n']) {
        lines.push(&rest[..i]);
        let after = if rest[i..].starts_with("\r\n") {
            i + 2
        } else {
            i + 1
        };
        rest = &rest[after..];
    }
    lines.push(rest);
    lines
}

/// Why an event stream could not be decoded.
///
/// Errors from [`SseDecoder`] are sticky: once one is returned, every later
/// [`push`](SseDecoder::push) returns it again, until [`finish`](SseDecoder::finish).
///
/// ```
/// use skillgate::wire::sse::{decode_all, SseDecoder, SseError};
///
/// assert_eq!(decode_all(b"data: cut off\n"), Err(SseError::Truncated));
/// assert_eq!(decode_all(b"data: \xff\n\n"), Err(SseError::InvalidUtf8));
///
/// let mut small = SseDecoder::with_max_event_bytes(8);
/// assert_eq!(
///     small.push(b"data: far too long\n\n"),
///     Err(SseError::EventTooLarge { limit: 8 })
/// );
/// ```
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SseError {
    /// A single block grew beyond `limit` bytes. Counted are the block's bytes
    /// before its terminating blank line (so the count does not depend on where
    /// chunks were split); a block still being received fails as soon as its
    /// buffered bytes pass the limit.
    #[error("server-sent event block larger than {limit} bytes")]
    EventTooLarge {
        /// The limit that was exceeded, in bytes.
        limit: usize,
    },
    /// A field line (any non-comment line) was not valid UTF-8.
    #[error("server-sent event field is not valid UTF-8")]
    InvalidUtf8,
    /// The stream ended inside a block that has content other than ASCII
    /// whitespace (space, tab, CR, LF) and the leading byte order mark.
    #[error("event stream ended inside an unterminated event")]
    Truncated,
}

/// Incremental SSE decoder: feed it chunks as they arrive, get whole blocks.
///
/// Line terminators are LF, CRLF or a lone CR (§9.2.5), recognised across
/// chunk boundaries: a CR ending one chunk and an LF starting the next are one
/// terminator. A block is yielded as soon as its terminating blank line is
/// complete, so the decoder never holds more than the one block still being
/// received ([`buffered_len`](Self::buffered_len) bytes).
///
/// For any input, and however it is split into chunks, the blocks yielded
/// carry the same fields in the same order, and their [`SseEvent::raw`] bytes
/// concatenated with the still-buffered bytes equal the input. (`raw()` itself
/// only differs in the CR/LF case described there.)
///
/// ```
/// use skillgate::wire::sse::SseDecoder;
///
/// let mut decoder = SseDecoder::new();
/// assert!(decoder.push(b"event: message_stop\ndata: {\"type\":")?.is_empty());
/// assert_eq!(decoder.buffered_len(), 34); // held until the blank line
/// let events = decoder.push(b"\"message_stop\"}\n\n")?;
/// assert_eq!(events[0].event(), Some("message_stop"));
/// assert_eq!(decoder.buffered_len(), 0);
/// decoder.finish()?;
/// # Ok::<(), skillgate::wire::sse::SseError>(())
/// ```
#[derive(Debug)]
pub struct SseDecoder {
    /// Bytes of the block being received, from its first byte.
    buf: BytesMut,
    /// How much of `buf` has been scanned for line terminators.
    scan: usize,
    /// Where the current (unterminated) line starts in `buf`.
    line_start: usize,
    /// Leading bytes of `buf` that belong to the previous block's terminator
    /// (an LF after a CR that ended a chunk): kept in `raw`, never parsed.
    skip: usize,
    /// The last byte scanned was a CR ending a line; an LF next is part of it.
    after_cr: bool,
    /// No line of the stream has been completed yet (a BOM may start it).
    first_line: bool,
    /// The block being received is the first of the stream.
    first_block: bool,
    /// Fields set by the completed lines of the block being received.
    fields: Fields,
    /// Largest block accepted, in bytes.
    limit: usize,
    /// The sticky error, once one occurred.
    failed: Option<SseError>,
}

impl Default for SseDecoder {
    /// Same as [`SseDecoder::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl SseDecoder {
    /// A decoder for a new stream that accepts blocks of up to
    /// [`DEFAULT_MAX_EVENT_BYTES`] (16 MiB).
    pub fn new() -> Self {
        Self::with_max_event_bytes(DEFAULT_MAX_EVENT_BYTES)
    }

    /// A decoder for a new stream that rejects any block larger than `limit`
    /// bytes with [`SseError::EventTooLarge`] (see there for what is counted).
    pub fn with_max_event_bytes(limit: usize) -> Self {
        SseDecoder {
            buf: BytesMut::new(),
            scan: 0,
            line_start: 0,
            skip: 0,
            after_cr: false,
            first_line: true,
            first_block: true,
            fields: Fields::default(),
            limit,
            failed: None,
        }
    }

    /// Feeds the next bytes of the stream (split anywhere, even inside a CRLF
    /// or a UTF-8 sequence) and returns every block they complete, in order.
    ///
    /// On an error ([`SseError::EventTooLarge`], [`SseError::InvalidUtf8`]),
    /// blocks this chunk completed before the bad one are still returned as
    /// `Ok`, and the error is reported by the next call to `push` or
    /// [`finish`](Self::finish); if there are none, the error is returned at
    /// once. Either way the decoder then stays failed and drops its buffer.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        let result = self.scan_lines(&mut out).and_then(|()| {
            if self.buf.len().saturating_sub(self.skip) > self.limit {
                Err(self.too_large())
            } else {
                Ok(())
            }
        });
        match result {
            Ok(()) => Ok(out),
            Err(e) => {
                self.buf = BytesMut::new();
                self.failed = Some(e.clone());
                if out.is_empty() { Err(e) } else { Ok(out) }
            }
        }
    }

    /// Ends the stream. `Ok(())` if nothing but ASCII whitespace (or a leading
    /// byte order mark) is pending, which is then dropped, as §9.2.6 drops an
    /// unterminated block at end of file; [`SseError::Truncated`] if an
    /// unterminated block with content remains; the sticky error if
    /// [`push`](Self::push) failed earlier.
    ///
    /// The decoder is then reset to the state of a new one (same limit), ready
    /// for another stream.
    pub fn finish(&mut self) -> Result<(), SseError> {
        let result = if let Some(e) = self.failed.take() {
            Err(e)
        } else {
            let mut pending = self.buf.get(self.skip..).unwrap_or_default();
            if self.first_block {
                pending = pending.strip_prefix(BOM).unwrap_or(pending);
            }
            if pending
                .iter()
                .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            {
                Ok(())
            } else {
                Err(SseError::Truncated)
            }
        };
        *self = Self::with_max_event_bytes(self.limit);
        result
    }

    /// Bytes held for the block not yet terminated (its partial lines
    /// included). At most the limit, plus one LF in the CR/LF case.
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    fn too_large(&self) -> SseError {
        SseError::EventTooLarge { limit: self.limit }
    }

    /// Processes every line terminator in `buf[scan..]`, pushing completed blocks.
    fn scan_lines(&mut self, out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        loop {
            if self.after_cr {
                let Some(&next) = self.buf.get(self.scan) else {
                    return Ok(());
                };
                self.after_cr = false;
                if next == b'\n' {
                    // Second half of a CRLF whose CR ended the previous chunk.
                    if self.scan == 0 {
                        // That CR ended the previous block, already yielded.
                        self.skip = 1;
                    }
                    self.scan += 1;
                    self.line_start = self.scan;
                }
            }
            let rest = self.buf.get(self.scan..).unwrap_or_default();
            let Some(offset) = rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
                self.scan = self.buf.len();
                return Ok(());
            };
            let line_end = self.scan + offset;
            let mut next = line_end + 1;
            if self.buf.get(line_end) == Some(&b'\r') {
                match self.buf.get(next) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            let line_start = self.line_start;
            self.scan = next;
            self.line_start = next;

            let mut line = self.buf.get(line_start..line_end).unwrap_or_default();
            if self.first_line {
                self.first_line = false;
                line = line.strip_prefix(BOM).unwrap_or(line);
            }

            if line.is_empty() {
                // Blank line: the block is complete.
                if line_start.saturating_sub(self.skip) > self.limit {
                    return Err(self.too_large());
                }
                let raw = self.buf.split_to(next).freeze();
                out.push(SseEvent {
                    raw,
                    fields: std::mem::take(&mut self.fields),
                });
                self.scan = 0;
                self.line_start = 0;
                self.skip = 0;
                self.first_block = false;
                continue;
            }

            // Checked before UTF-8 so the first error does not depend on chunking.
            if line_end.saturating_sub(self.skip) > self.limit {
                return Err(self.too_large());
            }
            if line.first() == Some(&b':') {
                continue; // comment
            }
            let line = std::str::from_utf8(line).map_err(|_| SseError::InvalidUtf8)?;
            let (name, value) = match line.split_once(':') {
                Some((name, value)) => (name, value.strip_prefix(' ').unwrap_or(value)),
                None => (line, ""),
            };
            self.fields.apply(name, value);
        }
    }
}

/// Decodes a complete byte stream: [`SseDecoder::push`] of all of it, then
/// [`SseDecoder::finish`], with the default size limit. Any error (including
/// one `push` deferred) is returned instead of the blocks.
///
/// ```
/// use skillgate::wire::sse::decode_all;
/// let events = decode_all(b": hi\n\nevent: a\ndata: 1\ndata: 2\n\n")?;
/// assert_eq!(events.len(), 2);
/// assert!(events[0].is_comment_only());
/// assert_eq!((events[1].event(), events[1].data()), (Some("a"), "1\n2"));
/// # Ok::<(), skillgate::wire::sse::SseError>(())
/// ```
pub fn decode_all(bytes: &[u8]) -> Result<Vec<SseEvent>, SseError> {
    let mut decoder = SseDecoder::new();
    let events = decoder.push(bytes)?;
    decoder.finish()?;
    Ok(events)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A realistic Messages streaming transcript (LF line endings): a text
    /// block, a ping, a tool_use block with streamed input, then the end.
    pub(crate) const TRANSCRIPT: &str = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01XFDUDYJgAACzvnptvVoYEL\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":472,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":2}}}\n",
        "\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n",
        "\n",
        "event: ping\n",
        "data: {\"type\": \"ping\"}\n",
        "\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Okay\"}}\n",
        "\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\", let's check the weather\"}}\n",
        "\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" in San Francisco – “now”.\"}}\n",
        "\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":0}\n",
        "\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01T1x1fJ34qAmk2tNTrN7Up6\",\"name\":\"get_weather\",\"input\":{}}}\n",
        "\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n",
        "\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"location\\\": \\\"San Fra\"}}\n",
        "\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"ncisco, CA\\\"}\"}}\n",
        "\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":1}\n",
        "\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":89}}\n",
        "\n",
        "event: message_stop\n",
        "data: {\"type\":\"message_stop\"}\n",
        "\n",
    );

    /// Event names of [`TRANSCRIPT`], in order.
    const TRANSCRIPT_EVENTS: [&str; 14] = [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ];

    /// What a block means, without its raw bytes.
    type Semantic = (Option<String>, String, Option<String>, Option<u64>, bool);

    fn semantic(ev: &SseEvent) -> Semantic {
        (
            ev.event().map(str::to_owned),
            ev.data().to_owned(),
            ev.id().map(str::to_owned),
            ev.retry(),
            ev.is_comment_only(),
        )
    }

    fn semantics(evs: &[SseEvent]) -> Vec<Semantic> {
        evs.iter().map(semantic).collect()
    }

    fn concat_raw(evs: &[SseEvent]) -> Vec<u8> {
        evs.iter().flat_map(|e| e.raw().iter().copied()).collect()
    }

    /// Everything a decoder run produced: blocks yielded before the first
    /// error, the first error (from push or finish), and what stayed buffered.
    #[derive(Debug)]
    struct Run {
        events: Vec<SseEvent>,
        outcome: Result<(), SseError>,
        buffered_at_end: usize,
    }

    fn run(decoder: &mut SseDecoder, input: &[u8], cuts: &[usize]) -> Run {
        let mut events = Vec::new();
        let mut start = 0;
        let mut outcome = Ok(());
        for &end in cuts.iter().chain(std::iter::once(&input.len())) {
            match decoder.push(&input[start..end]) {
                Ok(evs) => events.extend(evs),
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
            start = end;
        }
        let buffered_at_end = decoder.buffered_len();
        let finished = decoder.finish();
        if outcome.is_ok() {
            outcome = finished;
        }
        Run {
            events,
            outcome,
            buffered_at_end,
        }
    }

    fn run_default(input: &[u8], cuts: &[usize]) -> Run {
        run(&mut SseDecoder::new(), input, cuts)
    }

    fn push_all(decoder: &mut SseDecoder, chunks: &[&[u8]]) -> Vec<SseEvent> {
        chunks
            .iter()
            .flat_map(|c| decoder.push(c).expect("valid chunk"))
            .collect()
    }

    // ---- The realistic transcript -------------------------------------------------

    #[test]
    fn transcript_decodes_into_its_events() {
        let events = decode_all(TRANSCRIPT.as_bytes()).unwrap();
        let names: Vec<_> = events.iter().map(|e| e.event().unwrap()).collect();
        assert_eq!(names, TRANSCRIPT_EVENTS);
        assert_eq!(concat_raw(&events), TRANSCRIPT.as_bytes());
        for ev in &events {
            assert!(ev.raw().ends_with(b"\n\n"));
            assert!(ev.data().starts_with('{') && ev.data().ends_with('}'));
            assert!(!ev.is_comment_only());
            assert_eq!(ev.id(), None);
            assert_eq!(ev.retry(), None);
            assert_eq!(ev.to_bytes(), *ev.raw());
        }
        assert_eq!(events[2].data(), r#"{"type": "ping"}"#);
        assert!(events[5].data().contains("“now”"));
    }

    #[test]
    fn transcript_split_at_every_offset_is_identical() {
        let input = TRANSCRIPT.as_bytes();
        let whole = decode_all(input).unwrap();
        for cut in 0..=input.len() {
            let r = run_default(input, &[cut]);
            assert_eq!(r.outcome, Ok(()), "cut at {cut}");
            assert_eq!(r.events, whole, "cut at {cut}");
        }
        let bytewise: Vec<usize> = (1..input.len()).collect();
        assert_eq!(run_default(input, &bytewise).events, whole);
    }

    #[test]
    fn transcript_buffers_at_most_one_block() {
        let input = TRANSCRIPT.as_bytes();
        let longest = decode_all(input)
            .unwrap()
            .iter()
            .map(|e| e.raw().len())
            .max()
            .unwrap();
        let mut decoder = SseDecoder::new();
        for (i, b) in input.iter().enumerate() {
            decoder.push(std::slice::from_ref(b)).unwrap();
            assert!(decoder.buffered_len() < longest, "at byte {i}");
        }
        assert_eq!(decoder.buffered_len(), 0);
    }

    #[test]
    fn crlf_and_cr_transcripts_decode_to_the_same_fields() {
        let lf = decode_all(TRANSCRIPT.as_bytes()).unwrap();
        for eol in ["\r\n", "\r"] {
            let input = TRANSCRIPT.replace('\n', eol).into_bytes();
            let whole = decode_all(&input).unwrap();
            assert_eq!(semantics(&whole), semantics(&lf), "{eol:?}");
            assert_eq!(concat_raw(&whole), input);
            for ev in &whole {
                assert!(ev.raw().ends_with(format!("{eol}{eol}").as_bytes()));
            }
            for cut in 0..=input.len() {
                for pieces in [vec![cut], (1..input.len()).step_by(cut.max(1)).collect()] {
                    let r = run_default(&input, &pieces);
                    assert_eq!(r.outcome, Ok(()), "{eol:?} cut {cut}");
                    assert_eq!(semantics(&r.events), semantics(&lf), "{eol:?} cut {cut}");
                    let mut all = concat_raw(&r.events);
                    assert_eq!(all.len() + r.buffered_at_end, input.len());
                    all.extend_from_slice(&input[all.len()..]);
                    assert_eq!(all, input);
                }
            }
        }
    }

    #[test]
    fn crlf_split_inside_block_terminator_keeps_every_byte() {
        // Whole: the LF belongs to the first block.
        let whole = decode_all(b"data: a\r\n\r\ndata: b\r\n\r\n").unwrap();
        assert_eq!(&whole[0].raw()[..], b"data: a\r\n\r\n");
        // Split between the CR and LF of the blank line: the block is yielded
        // at once and the LF is carried by the next block, never parsed.
        let mut d = SseDecoder::new();
        let first = d.push(b"data: a\r\n\r").unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(&first[0].raw()[..], b"data: a\r\n\r");
        assert_eq!(first[0].data(), "a");
        let second = d.push(b"\ndata: b\r\n\r\n").unwrap();
        assert_eq!(second.len(), 1, "the LF must not become a blank line");
        assert_eq!(&second[0].raw()[..], b"\ndata: b\r\n\r\n");
        assert_eq!(second[0].data(), "b");
        assert_eq!(d.finish(), Ok(()));
    }

    #[test]
    fn cr_then_lf_in_next_chunk_is_one_terminator() {
        let mut d = SseDecoder::new();
        let events = push_all(&mut d, &[b"data: a\r", b"\n", b"data: b\r", b"\n\r", b"\n"]);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data(), "a\nb");
        assert_eq!(&events[0].raw()[..], b"data: a\r\ndata: b\r\n\r");
        // The trailing LF is held as the start of the next block, then dropped.
        assert_eq!(d.buffered_len(), 1);
        assert_eq!(d.finish(), Ok(()));

        // A lone CR followed by something else is a terminator on its own.
        let mut d = SseDecoder::new();
        let events = push_all(&mut d, &[b"data: a\r", b"data: b\r", b"\r"]);
        assert_eq!(
            semantics(&events),
            semantics(&decode_all(b"data: a\rdata: b\r\r").unwrap())
        );
        assert_eq!(events[0].data(), "a\nb");
    }

    #[test]
    fn lone_cr_block_is_yielded_without_waiting_for_more_input() {
        let mut d = SseDecoder::new();
        let events = d.push(b"data: a\r\r").unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(d.buffered_len(), 0);
        let events = d.push(b"data: b\r\r").unwrap();
        assert_eq!(events[0].data(), "b");
        assert_eq!(&events[0].raw()[..], b"data: b\r\r");
    }

    // ---- Field parsing ----------------------------------------------------------------

    #[test]
    fn mixed_terminators_and_multiline_data() {
        let events = decode_all(b"data: a\r\ndata: b\rdata:\ndata:  c\n\n").unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data(), "a\nb\n\n c");
    }

    #[test]
    fn comments_are_ignored_but_kept_in_raw() {
        let input = b": keepalive\n\nevent: x\n:comment in the middle\ndata: 1\n\n";
        let events = decode_all(input).unwrap();
        assert_eq!(events.len(), 2);
        assert!(events[0].is_comment_only());
        assert_eq!(events[0].data(), "");
        assert_eq!(events[0].event(), None);
        assert_eq!(&events[0].raw()[..], b": keepalive\n\n");
        assert_eq!((events[1].event(), events[1].data()), (Some("x"), "1"));
        assert!(!events[1].is_comment_only());
        assert_eq!(concat_raw(&events), input);
    }

    #[test]
    fn stray_blank_lines_are_empty_blocks() {
        let input = b"\ndata: a\n\n\n\r\n";
        let events = decode_all(input).unwrap();
        let raws: Vec<&[u8]> = events.iter().map(|e| &e.raw()[..]).collect();
        assert_eq!(raws, [&b"\n"[..], b"data: a\n\n", b"\n", b"\r\n"]);
        let only: Vec<bool> = events.iter().map(SseEvent::is_comment_only).collect();
        assert_eq!(only, [true, false, true, true]);
    }

    #[test]
    fn field_without_colon_has_empty_value() {
        let events = decode_all(b"data\n\nevent\ndata\ndata\n\n").unwrap();
        assert_eq!(events[0].data(), "");
        assert!(
            !events[0].is_comment_only(),
            "an empty data field still counts"
        );
        assert_eq!(events[1].event(), Some(""));
        assert_eq!(events[1].data(), "\n");
    }

    #[test]
    fn only_one_leading_space_is_stripped_and_colons_in_values_survive() {
        let events = decode_all(b"event:x\ndata:   a: b \n\n").unwrap();
        assert_eq!(events[0].event(), Some("x"));
        assert_eq!(events[0].data(), "  a: b ");
        // A tab is not stripped.
        assert_eq!(decode_all(b"data:\tt\n\n").unwrap()[0].data(), "\tt");
    }

    #[test]
    fn unknown_fields_are_ignored_but_kept_in_raw() {
        let input = b"foo: bar\nData: x\ndata : y\n\nfoo\n\n";
        let events = decode_all(input).unwrap();
        assert_eq!(events[0].data(), "");
        assert!(events[0].is_comment_only());
        assert!(events[1].is_comment_only());
        assert_eq!(concat_raw(&events), input);
    }

    #[test]
    fn last_event_and_id_win() {
        let events = decode_all(b"event: a\nid: 1\nevent: b\nid: 2\ndata: x\n\n").unwrap();
        assert_eq!(events[0].event(), Some("b"));
        assert_eq!(events[0].id(), Some("2"));
    }

    #[test]
    fn id_with_nul_is_ignored() {
        let events = decode_all(b"id: 1\nid: 2\0\n\nid\n\n").unwrap();
        assert_eq!(events[0].id(), Some("1"));
        assert!(!events[0].is_comment_only());
        assert_eq!(events[1].id(), Some(""));
        assert!(decode_all(b"id: \0\n\n").unwrap()[0].is_comment_only());
    }

    #[test]
    fn retry_must_be_all_digits() {
        let retry = |input: &[u8]| decode_all(input).unwrap()[0].retry();
        assert_eq!(retry(b"retry: 3000\n\n"), Some(3000));
        assert_eq!(retry(b"retry: 0\n\n"), Some(0));
        assert_eq!(retry(b"retry: 10\nretry: x\n\n"), Some(10));
        assert_eq!(retry(b"retry: 30s\n\n"), None);
        assert_eq!(retry(b"retry: -1\n\n"), None);
        assert_eq!(retry(b"retry:  5\n\n"), None);
        assert_eq!(retry(b"retry:\n\n"), None);
        assert_eq!(retry(b"retry: 99999999999999999999999\n\n"), None);
        assert!(decode_all(b"retry: x\n\n").unwrap()[0].is_comment_only());
        assert!(!decode_all(b"retry: 1\n\n").unwrap()[0].is_comment_only());
    }

    #[test]
    fn event_only_block_is_not_comment_only() {
        let ev = &decode_all(b"event: x\n\n").unwrap()[0];
        assert_eq!((ev.event(), ev.data()), (Some("x"), ""));
        assert!(!ev.is_comment_only());
    }

    // ---- Byte order mark ------------------------------------------------------------

    #[test]
    fn leading_bom_is_ignored_but_kept_in_raw() {
        let input = b"\xEF\xBB\xBFdata: a\n\n\xEF\xBB\xBFdata: b\n\n";
        let events = decode_all(input).unwrap();
        assert_eq!(events[0].data(), "a");
        assert!(events[0].raw().starts_with(BOM));
        // Only at the very start: later it is part of a (unknown) field name.
        assert_eq!(events[1].data(), "");
        assert!(events[1].is_comment_only());
        assert_eq!(concat_raw(&events), input);
        for cut in 0..=input.len() {
            assert_eq!(run_default(input, &[cut]).events, events, "cut {cut}");
        }
        assert_eq!(run_default(input, &[1, 2, 3]).events, events);
    }

    #[test]
    fn bom_then_blank_line_is_an_empty_block() {
        let events = decode_all(b"\xEF\xBB\xBF\ndata: a\n\n").unwrap();
        assert_eq!(events.len(), 2);
        assert!(events[0].is_comment_only());
        assert_eq!(&events[0].raw()[..], b"\xEF\xBB\xBF\n");
        assert_eq!(decode_all(b"\xEF\xBB\xBF"), Ok(vec![]));
        assert_eq!(decode_all(b"\xEF\xBB"), Err(SseError::Truncated));
    }

    // ---- End of stream ----------------------------------------------------------------

    #[test]
    fn finish_reports_truncation_only_for_content() {
        assert_eq!(decode_all(b""), Ok(vec![]));
        let a = decode_all(b"data: a\n\n").unwrap();
        assert_eq!(decode_all(b"data: a\n\n \t\r\n  "), Ok(a.clone()));
        assert_eq!(decode_all(b"data: a\n\n  "), Ok(a));
        assert_eq!(decode_all(b"data: a"), Err(SseError::Truncated));
        assert_eq!(decode_all(b"data: a\n"), Err(SseError::Truncated));
        assert_eq!(decode_all(b"data: a\n\n: ping\n"), Err(SseError::Truncated));
        assert_eq!(decode_all(b"data: a\n\nx"), Err(SseError::Truncated));
    }

    #[test]
    fn finish_resets_the_decoder() {
        let mut d = SseDecoder::with_max_event_bytes(100);
        assert!(d.push(b"data: partial").unwrap().is_empty());
        assert_eq!(d.buffered_len(), 13);
        assert_eq!(d.finish(), Err(SseError::Truncated));
        assert_eq!(d.buffered_len(), 0);
        assert_eq!(d.finish(), Ok(()));
        // A new stream: a BOM is recognised again, the limit is kept.
        let events = d.push(b"\xEF\xBB\xBFdata: new\n\n").unwrap();
        assert_eq!(events[0].data(), "new");
        assert_eq!(
            d.push(&[b'x'; 101]),
            Err(SseError::EventTooLarge { limit: 100 })
        );
    }

    // ---- Errors -------------------------------------------------------------------------

    #[test]
    fn oversized_complete_block_is_rejected() {
        // "data: 0123\n" is 11 bytes before the blank line.
        let input = b"data: 0123\n\n";
        assert_eq!(
            SseDecoder::with_max_event_bytes(11)
                .push(input)
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            SseDecoder::with_max_event_bytes(10).push(input),
            Err(SseError::EventTooLarge { limit: 10 })
        );
        // The limit does not count the blank line, so CRLF splits don't matter.
        // The second block carries the LF when a cut separates it from its CR.
        let crlf = b"data: 0123\r\n\r\ndata: 0123\r\n\r\n";
        for cut in 0..=crlf.len() {
            let r = run(&mut SseDecoder::with_max_event_bytes(12), crlf, &[cut]);
            assert_eq!(r.outcome, Ok(()), "cut {cut}");
            let r = run(&mut SseDecoder::with_max_event_bytes(11), crlf, &[cut]);
            assert_eq!(
                r.outcome,
                Err(SseError::EventTooLarge { limit: 11 }),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn oversized_incomplete_block_fails_early_and_drops_its_buffer() {
        let mut d = SseDecoder::with_max_event_bytes(16);
        assert!(d.push(b"data: 0123456789").unwrap().is_empty());
        assert_eq!(d.push(b"x"), Err(SseError::EventTooLarge { limit: 16 }));
        assert_eq!(d.buffered_len(), 0);
    }

    #[test]
    fn error_after_good_blocks_is_deferred_and_sticky() {
        let mut d = SseDecoder::with_max_event_bytes(16);
        let events = d
            .push(b"data: ok\n\ndata: this one is far too long")
            .unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data(), "ok");
        let err = SseError::EventTooLarge { limit: 16 };
        assert_eq!(d.push(b"\n\ndata: fine\n\n"), Err(err.clone()));
        assert_eq!(d.push(b""), Err(err.clone()));
        assert_eq!(d.finish(), Err(err));
        // decode_all reports the deferred error.
        assert_eq!(
            decode_all(b"data: ok\n\ndata: \xC3\n\n"),
            Err(SseError::InvalidUtf8)
        );
    }

    #[test]
    fn invalid_utf8_in_fields_is_rejected_but_not_in_comments() {
        assert_eq!(decode_all(b"data: \xFF\n\n"), Err(SseError::InvalidUtf8));
        assert_eq!(decode_all(b"ev\xC3ent: x\n\n"), Err(SseError::InvalidUtf8));
        assert_eq!(
            decode_all(b"\xEF\xBB\xBFdata: \xED\xA0\x80\n\n"),
            Err(SseError::InvalidUtf8)
        );
        let events = decode_all(b": \xFF\xFE\ndata: ok\n\n").unwrap();
        assert_eq!(events[0].data(), "ok");
        // A multi-byte character split across chunks is fine.
        let input = "data: é€😀\n\n".as_bytes();
        for cut in 0..=input.len() {
            let r = run_default(input, &[cut]);
            assert_eq!(r.outcome, Ok(()));
            assert_eq!(r.events[0].data(), "é€😀");
        }
    }

    #[test]
    fn errors_display() {
        assert_eq!(
            SseError::EventTooLarge { limit: 5 }.to_string(),
            "server-sent event block larger than 5 bytes"
        );
        assert!(SseError::Truncated.to_string().contains("unterminated"));
    }

    // ---- Encoding -------------------------------------------------------------------------

    #[test]
    fn new_uses_the_canonical_encoding() {
        let ev = SseEvent::new(Some("message_stop"), r#"{"type":"message_stop"}"#);
        assert_eq!(
            &ev.to_bytes()[..],
            b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
        );
        assert_eq!(ev.raw(), &ev.to_bytes());
        assert_eq!(ev.event(), Some("message_stop"));
        assert_eq!((ev.id(), ev.retry()), (None, None));
        assert_eq!(
            &SseEvent::new(None, "a\n\nb\n").to_bytes()[..],
            b"data: a\ndata: \ndata: b\ndata: \n\n"
        );
    }

    #[test]
    fn new_normalises_line_breaks_that_a_decoder_would_see() {
        let ev = SseEvent::new(Some("a\r\nevent: b"), "x\r\ny\rz");
        assert_eq!(ev.event(), Some("a"));
        assert_eq!(ev.data(), "x\ny\nz");
        assert_eq!(
            &ev.to_bytes()[..],
            b"event: a\ndata: x\ndata: y\ndata: z\n\n"
        );
        assert_eq!(decode_all(&ev.to_bytes()).unwrap(), vec![ev]);
    }

    #[test]
    fn default_is_new() {
        let mut d = SseDecoder::default();
        assert_eq!(d.limit, DEFAULT_MAX_EVENT_BYTES);
        assert_eq!(d.push(b"data: x\n\n").unwrap()[0].data(), "x");
    }

    // ---- Property tests -------------------------------------------------------------------

    /// One line of a generated valid block.
    #[derive(Debug, Clone)]
    enum Line {
        /// `name`, then `":"` + separator + value, or no colon at all.
        Field {
            name: String,
            colon: Option<&'static str>,
            value: String,
        },
        Comment(String),
    }

    fn field_name() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => Just("data".to_owned()),
            2 => Just("event".to_owned()),
            1 => Just("id".to_owned()),
            1 => Just("retry".to_owned()),
            // No U+FEFF: at the very start of a stream it is the BOM, which
            // the spec strips, so it would not survive as a field name.
            1 => "[a-zA-Z_é ]{1,6}",
        ]
    }

    fn field_value() -> impl Strategy<Value = String> {
        prop_oneof![
            "[0-9]{0,4}",
            "[^\r\n]{0,12}",
            " [a-z :]{0,6}",
            Just("\0".to_owned()),
        ]
    }

    fn line() -> impl Strategy<Value = Line> {
        prop_oneof![
            6 => (field_name(), prop_oneof![Just(Some(": ")), Just(Some(":")), Just(None)], field_value())
                .prop_map(|(name, colon, value)| Line::Field {
                    name,
                    value: if colon.is_some() { value } else { String::new() },
                    colon,
                }),
            1 => "[^\r\n]{0,10}".prop_map(Line::Comment),
        ]
    }

    fn eol() -> impl Strategy<Value = &'static str> {
        prop_oneof![Just("\n"), Just("\r\n"), Just("\r")]
    }

    /// A valid stream (every block terminated) and the fields each block sets.
    fn valid_stream() -> impl Strategy<Value = (Vec<u8>, Vec<Semantic>)> {
        let block = (prop::collection::vec((line(), eol()), 0..5), eol());
        (any::<bool>(), prop::collection::vec(block, 0..8)).prop_map(|(bom, blocks)| {
            let mut out = Vec::new();
            if bom && !blocks.is_empty() {
                out.extend_from_slice(BOM);
            }
            let mut expected = Vec::new();
            let mut prev_eol = "";
            for (lines, blank) in blocks {
                let mut f = Fields::default();
                for (line, eol) in lines {
                    match line {
                        Line::Comment(text) => {
                            out.push(b':');
                            out.extend_from_slice(text.as_bytes());
                        }
                        Line::Field { name, colon, value } => {
                            out.extend_from_slice(name.as_bytes());
                            let mut parsed = value.as_str();
                            if let Some(sep) = colon {
                                out.extend_from_slice(sep.as_bytes());
                                out.extend_from_slice(value.as_bytes());
                                if sep == ":" {
                                    parsed = parsed.strip_prefix(' ').unwrap_or(parsed);
                                }
                            }
                            f.apply(&name, parsed);
                        }
                    }
                    out.extend_from_slice(eol.as_bytes());
                    prev_eol = eol;
                }
                // A blank line ending in a lone LF right after a lone CR would
                // merge into a CRLF; a generator must not emit that.
                let blank = if prev_eol == "\r" && blank == "\n" {
                    "\r\n"
                } else {
                    blank
                };
                out.extend_from_slice(blank.as_bytes());
                prev_eol = blank;
                let ev = SseEvent {
                    raw: Bytes::new(),
                    fields: f,
                };
                expected.push(semantic(&ev));
            }
            (out, expected)
        })
    }

    fn cuts(len: usize) -> impl Strategy<Value = Vec<usize>> {
        prop::collection::vec(0..=len, 0..12).prop_map(|mut v| {
            v.sort_unstable();
            v
        })
    }

    fn with_cuts<S: Strategy<Value = Vec<u8>>>(
        bytes: S,
    ) -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
        bytes.prop_flat_map(|b| {
            let len = b.len();
            (Just(b), cuts(len))
        })
    }

    /// Bytes that are mostly SSE syntax, so arbitrary inputs hit the edge cases.
    fn sse_ish_bytes() -> impl Strategy<Value = Vec<u8>> {
        let alphabet: &[u8] = b"\r\n\r\n:: dataevntrydx0\xEF\xBB\xBF\xFF\xC3\xA9";
        prop::collection::vec(prop::sample::select(alphabet.to_vec()), 0..200)
    }

    proptest! {
        #[test]
        fn valid_streams_decode_to_their_model_whatever_the_chunking(
            (input, expected) in valid_stream(),
            seed in any::<prop::sample::Index>(),
            more in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
        ) {
            let whole = decode_all(&input).unwrap();
            prop_assert_eq!(semantics(&whole), expected);
            prop_assert_eq!(concat_raw(&whole), input.clone());

            let mut pieces: Vec<usize> = std::iter::once(seed).chain(more)
                .map(|i| i.index(input.len() + 1)).collect();
            pieces.sort_unstable();
            let r = run_default(&input, &pieces);
            prop_assert_eq!(&r.outcome, &Ok(()));
            prop_assert_eq!(semantics(&r.events), semantics(&whole));
            let raw = concat_raw(&r.events);
            prop_assert_eq!(raw.len() + r.buffered_at_end, input.len());
            prop_assert_eq!(&raw[..], &input[..raw.len()]);
            prop_assert!(input[raw.len()..].iter().all(|&b| b == b'\n'));
            if !input.contains(&b'\r') {
                prop_assert_eq!(r.events, whole);
            }
        }

        #[test]
        fn any_bytes_any_chunking_same_outcome_no_panic(
            (input, pieces) in prop_oneof![with_cuts(sse_ish_bytes()), with_cuts(prop::collection::vec(any::<u8>(), 0..200))],
            limit in prop_oneof![Just(DEFAULT_MAX_EVENT_BYTES), 0usize..40],
        ) {
            let whole = run(&mut SseDecoder::with_max_event_bytes(limit), &input, &[]);
            let split = run(&mut SseDecoder::with_max_event_bytes(limit), &input, &pieces);
            prop_assert_eq!(&split.outcome, &whole.outcome);
            prop_assert_eq!(semantics(&split.events), semantics(&whole.events));
            if whole.outcome.is_ok() {
                // A clean end emits every byte except trailing white space
                // after the last block, which `finish` accepts and drops.
                let raw = concat_raw(&whole.events);
                prop_assert_eq!(&raw[..], &input[..raw.len()]);
                let mut rest = &input[raw.len()..];
                if raw.is_empty() {
                    rest = rest.strip_prefix(BOM).unwrap_or(rest);
                }
                prop_assert!(rest.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n')));
            }
            // Without an error, every byte is in a block or still buffered.
            let raw = concat_raw(&split.events);
            prop_assert_eq!(&raw[..], &input[..raw.len()]);
            if split.outcome != Err(SseError::EventTooLarge { limit }) && split.outcome != Err(SseError::InvalidUtf8) {
                prop_assert_eq!(raw.len() + split.buffered_at_end, input.len());
            }
        }

        #[test]
        fn new_round_trips_through_the_decoder(
            event in prop::option::of("[^\r\n]{0,10}|.{0,10}"),
            data in ".{0,30}|[a\r\n]{0,10}",
        ) {
            let ev = SseEvent::new(event.as_deref(), &data);
            let decoded = decode_all(&ev.to_bytes()).unwrap();
            prop_assert_eq!(decoded, vec![ev.clone()]);
            prop_assert_eq!(ev.data(), split_lines(&data).join("\n"));
            if let Some(e) = &event && !e.contains(['\r', '\n']) {
                prop_assert_eq!(ev.event(), Some(e.as_str()));
            }
        }
    }
}
