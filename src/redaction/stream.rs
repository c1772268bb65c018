//! The incremental engine: text in pieces, redacted output as early as is
//! safe, equal to the whole-text result.
//!
//! Invariant. Let `T` be the text pushed so far. The scanner emits a prefix
//! `T[..d]` (redacted) where `d` is the *decided* point: every value starting
//! before `d` has been fully seen and validated, and no value can start
//! before `d` however the text continues. `d` is found with an anchored run of
//! the all-patterns automaton from each candidate start: while the run is
//! still alive at the end of `T`, a value starting there may still be
//! growing, so that start and everything after it is held back. Validators
//! also wait for the character after a value (its boundary). Hence the held
//! text is exactly what could still be part of a value, and no byte of a
//! value that ends up masked is emitted before its mask.

use std::collections::BTreeMap;

use regex_automata::hybrid::dfa::Cache as DfaCache;

use super::detect::{CONTEXT_BYTES, LiveMemo};
use super::{RedactionError, Redactor};

/// Default for [`RedactorBuilder::max_hold_bytes`](super::RedactorBuilder::max_hold_bytes):
/// 64 KiB held back at most per stream.
pub const DEFAULT_MAX_HOLD_BYTES: usize = 64 * 1024;

/// Bytes of already emitted text kept as left context (SSN context words,
/// boundaries).
const TAIL_BYTES: usize = CONTEXT_BYTES + 16;

/// Incremental redaction of one text stream (one content block).
///
/// ```
/// let r = skillgate::redaction::Redactor::new();
/// let mut s = r.stream();
/// assert_eq!(s.push("mail dana.lee@exa")?, "mail ");
/// assert_eq!(s.push("mple.com now")?, "[REDACTED:EMAIL_ADDRESS] ");
/// assert_eq!(s.finish()?, "now");
/// assert_eq!(s.findings()["EMAIL_ADDRESS"], 1);
/// # Ok::<(), skillgate::redaction::RedactionError>(())
/// ```
pub struct StreamRedactor {
    redactor: Redactor,
    /// Liveness-automaton cache, borrowed from the detector's idle ones and
    /// given back on drop.
    cache: Option<DfaCache>,
    /// Emitted original text (its end), then held text.
    hay: String,
    /// Start of the held text in `hay`.
    held: usize,
    findings: BTreeMap<String, u64>,
    json: bool,
    /// Where the liveness run stopped last time (offsets in `hay`).
    memo: Option<LiveMemo>,
}

impl Drop for StreamRedactor {
    fn drop(&mut self) {
        if let Some(cache) = self.cache.take() {
            self.redactor.detector.recycle(cache);
        }
    }
}

impl std::fmt::Debug for StreamRedactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamRedactor")
            .field("held_bytes", &(self.hay.len() - self.held))
            .field("json", &self.json)
            .finish_non_exhaustive()
    }
}

/// Incremental redaction of JSON text (the `partial_json` of
/// `input_json_delta` events): values inside strings are found as in plain
/// text, JSON escapes (`\n`) count as boundaries and are never cut, so the
/// output stays valid JSON.
///
/// ```
/// let r = skillgate::redaction::Redactor::new();
/// let mut s = r.stream_json();
/// let mut out = s.push(r#"{"note": "line\n4111 1111 "#)?;
/// out.push_str(&s.push(r#"1111 1111"}"#)?);
/// out.push_str(&s.finish()?);
/// assert_eq!(out, r#"{"note": "line\n[REDACTED:CREDIT_CARD]"}"#);
/// # Ok::<(), skillgate::redaction::RedactionError>(())
/// ```
pub type JsonStreamRedactor = StreamRedactor;

impl StreamRedactor {
    pub(crate) fn new(redactor: Redactor) -> Self {
        Self::with_json(redactor, false)
    }

    pub(crate) fn with_json(redactor: Redactor, json: bool) -> Self {
        let cache = Some(redactor.detector.cache());
        StreamRedactor {
            redactor,
            cache,
            hay: String::new(),
            held: 0,
            findings: BTreeMap::new(),
            json,
            memo: None,
        }
    }

    /// Adds `text`; returns the redacted text that is safe to emit now
    /// (possibly empty).
    ///
    /// # Errors
    /// [`RedactionError::HoldOverflow`] when more than the redactor's
    /// `max_hold_bytes` would be held back; the stream must then be ended.
    pub fn push(&mut self, text: &str) -> Result<String, RedactionError> {
        self.hay.push_str(text);
        self.advance(false)
    }

    /// Ends the stream: returns the rest of the redacted text.
    ///
    /// # Errors
    /// None today; the signature leaves room for stricter checks.
    pub fn finish(&mut self) -> Result<String, RedactionError> {
        self.advance(true)
    }

    /// Entity type → values rewritten so far.
    pub fn findings(&self) -> &BTreeMap<String, u64> {
        &self.findings
    }

    /// Bytes currently held back.
    pub fn held_bytes(&self) -> usize {
        self.hay.len() - self.held
    }

    fn advance(&mut self, last: bool) -> Result<String, RedactionError> {
        let det = &self.redactor.detector;
        let cache = self.cache.get_or_insert_with(|| det.cache());
        let p = det.detect_partial(&self.hay, self.held, last, self.json, cache, &mut self.memo);
        let decided = p.decided.max(self.held);
        let mut out = String::new();
        let mut at = self.held;
        for s in &p.spans {
            out.push_str(&self.hay[at..s.start]);
            self.redactor
                .ops
                .apply(&s.entity_type, &self.hay[s.start..s.end], &mut out);
            *self.findings.entry(s.entity_type.to_string()).or_insert(0) += 1;
            at = s.end;
        }
        out.push_str(&self.hay[at..decided]);
        self.held = decided;
        // A value accepted from before the memo's start may end past it:
        // the memo is then stale (every start before `decided` is decided).
        if self.memo.is_some_and(|m| m.start < decided) {
            self.memo = None;
        }
        // Keep only the left context the detectors need.
        if self.held > TAIL_BYTES * 2 {
            let mut cut = self.held - TAIL_BYTES;
            while !self.hay.is_char_boundary(cut) {
                cut -= 1;
            }
            // Drop only an even number of the backslashes the cut splits,
            // so JSON escape parity stays right in the kept context.
            let run = self.hay.as_bytes()[..cut]
                .iter()
                .rev()
                .take_while(|&&b| b == b'\\')
                .count();
            if run % 2 == 1 {
                cut -= 1;
            }
            self.hay.drain(..cut);
            self.held -= cut;
            // The memo's start is held (checked above), so after the cut.
            self.memo = self.memo.and_then(|m| m.shifted(cut));
        }
        if self.held_bytes() > self.redactor.max_hold {
            return Err(RedactionError::HoldOverflow(self.redactor.max_hold));
        }
        Ok(out)
    }
}

impl Redactor {
    /// A new incremental scanner for JSON text (see [`JsonStreamRedactor`]).
    pub fn stream_json(&self) -> JsonStreamRedactor {
        StreamRedactor::with_json(self.clone(), true)
    }

    /// Redacts a whole JSON text the way [`Redactor::stream_json`] would.
    pub fn redact_json_text(&self, text: &str) -> super::Redacted {
        let spans = self.detector.detect_with(text, true);
        let mut findings = BTreeMap::new();
        let text = self.apply(text, &spans, &mut findings);
        super::Redacted { text, findings }
    }
}
