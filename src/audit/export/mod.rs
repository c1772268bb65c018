//! SIEM export: audit records mapped to OCSF API Activity (class 6003) or
//! Elastic Common Schema JSON, and sinks that ship them (stdout, a file, an
//! HTTP endpoint with batching and retries).
//!
//! - [`ocsf::api_activity`] and [`ecs::event`]: pure mapping functions, one
//!   [`AuditRecord`] in, one JSON object out. The field-by-field mapping is
//!   in `docs/audit.md`.
//! - Bodies (prompts, completions) are **never** exported unless
//!   [`ExportOptions::include_bodies`] is set.
//! - [`Sink`]: where mapped events go. [`StdoutSink`], [`FileSink`] (append,
//!   one JSON object per line) and [`HttpSink`] (NDJSON `POST`s, bounded
//!   batches, exponential backoff).
//! - [`export`]: maps records and sends them in batches of at most
//!   [`BatchLimits::max_events`] events and [`BatchLimits::max_bytes`] bytes.
//!
//! ```
//! use skillgate::audit::{AuditRecord, DecisionRecord, RequestRecord};
//! use skillgate::audit::export::{ExportFormat, ExportOptions};
//!
//! let rec = AuditRecord {
//!     request: RequestRecord::new("POST", "/v1/messages", DecisionRecord::allow()),
//!     response: None,
//! };
//! let ocsf = ExportFormat::Ocsf.map(&rec, &ExportOptions::default());
//! assert_eq!(ocsf["class_uid"], 6003);
//! let ecs = ExportFormat::Ecs.map(&rec, &ExportOptions::default());
//! assert_eq!(ecs["event"]["id"], rec.request.id.to_string());
//! ```

pub mod ecs;
pub mod ocsf;
mod sink;

pub use sink::{
    BatchLimits, ExportError, FileSink, HttpSink, RetryPolicy, Sink, StdoutSink, export,
};

use serde_json::Value;

use super::{AuditRecord, ResponseRecord};

/// Which schema [`export`] writes.
///
/// ```
/// use skillgate::audit::export::ExportFormat;
/// assert_eq!(ExportFormat::parse("ocsf"), Some(ExportFormat::Ocsf));
/// assert_eq!(ExportFormat::parse("ecs"), Some(ExportFormat::Ecs));
/// assert_eq!(ExportFormat::parse("cef"), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// OCSF 1.8.0 API Activity (class_uid 6003) with the `ai_operation` profile.
    Ocsf,
    /// Elastic Common Schema 9.x with `gen_ai.*` fields.
    Ecs,
}

impl ExportFormat {
    /// `"ocsf"` or `"ecs"` (case-sensitive).
    pub fn parse(s: &str) -> Option<ExportFormat> {
        match s {
            "ocsf" => Some(ExportFormat::Ocsf),
            "ecs" => Some(ExportFormat::Ecs),
            _ => None,
        }
    }

    /// Maps one record to one event of this format.
    pub fn map(self, record: &AuditRecord, options: &ExportOptions) -> Value {
        match self {
            ExportFormat::Ocsf => ocsf::api_activity(record, options),
            ExportFormat::Ecs => ecs::event(record, options),
        }
    }
}

/// What the mappings put in an event.
///
/// ```
/// use skillgate::audit::export::ExportOptions;
/// let o = ExportOptions::default();
/// assert!(!o.include_bodies);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportOptions {
    /// Include the request and response bodies (prompts and completions, as
    /// stored: after redaction). Off by default: bodies may hold personal
    /// data and secrets the SIEM must not receive.
    pub include_bodies: bool,
}

impl ExportOptions {
    /// Bodies excluded.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`include_bodies`](Self::include_bodies).
    pub fn include_bodies(mut self, yes: bool) -> Self {
        self.include_bodies = yes;
        self
    }
}

/// Token counts read from a response's `usage` object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tokens {
    /// `input_tokens` + `cache_creation_input_tokens` + `cache_read_input_tokens`.
    pub input: u64,
    /// `output_tokens`.
    pub output: u64,
    pub cache_creation: u64,
    pub cache_read: u64,
}

impl Tokens {
    pub(crate) fn from_response(r: &ResponseRecord) -> Option<Tokens> {
        let u = r.usage.as_ref()?.as_object()?;
        let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
        if !u.contains_key("input_tokens") && !u.contains_key("output_tokens") {
            return None;
        }
        let cache_creation = n("cache_creation_input_tokens");
        let cache_read = n("cache_read_input_tokens");
        Some(Tokens {
            input: n("input_tokens")
                .saturating_add(cache_creation)
                .saturating_add(cache_read),
            output: n("output_tokens"),
            cache_creation,
            cache_read,
        })
    }

    pub(crate) fn total(self) -> u64 {
        self.input.saturating_add(self.output)
    }
}

/// The Anthropic error (`type`, `message`) of an error response body, if it is one.
pub(crate) fn error_of(r: &ResponseRecord) -> Option<(String, String)> {
    if r.status < 400 {
        return None;
    }
    let v: Value = serde_json::from_slice(&r.body).ok()?;
    let e = v.get("error")?;
    Some((
        e.get("type")?.as_str()?.to_owned(),
        e.get("message")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
    ))
}

/// `(path, query)` of a recorded request target.
pub(crate) fn split_target(target: &str) -> (&str, Option<&str>) {
    match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    }
}

/// The API operation name of a request: `METHOD path` without the query,
/// e.g. `POST /v1/messages`.
pub(crate) fn operation(method: &str, target: &str) -> String {
    format!("{method} {}", split_target(target).0)
}

pub(crate) fn body_text(b: &bytes::Bytes) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Milliseconds since the Unix epoch (OCSF `timestamp_t`).
pub(crate) fn epoch_ms(t: jiff::Timestamp) -> i64 {
    t.as_millisecond()
}
