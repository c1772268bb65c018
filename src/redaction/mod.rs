//! Redaction: PII and secrets masked in responses, streamed ones included,
//! with no fragment of a masked value reaching the caller first.
//!
//! - [`Redactor`]: the synchronous API, usable anywhere —
//!   [`Redactor::redact_text`] returns the rewritten text and its findings
//!   (entity type and count, never the value).
//! - [`StreamRedactor`]: the incremental engine for text arriving in pieces
//!   (one per content block): feed text, get back what is safe to emit now;
//!   [`finish`](StreamRedactor::finish) at the block's end. The concatenated
//!   output equals [`Redactor::redact_text`] of the whole text, for any split.
//! - [`RedactionLayer`]: the tower layer that rewrites Messages responses,
//!   JSON and SSE (`text_delta`, `input_json_delta`, `citations_delta`), and
//!   optionally the prompts of requests.
//!
//! Detectors (validation rules in `docs/redaction.md`): payment cards, US SSN,
//! e-mail, phone numbers (libphonenumber), IBAN, IPv4/IPv6, Anthropic/OpenAI/
//! AWS/GitHub/Slack keys, PEM private keys, JWTs, passwords in URLs,
//! secret-looking assignments, and custom patterns.
//!
//! ```
//! use skillgate::redaction::{Operator, Redactor};
//!
//! let r = Redactor::builder()
//!     .operator("CREDIT_CARD", Operator::Mask { keep_last: 4 })
//!     .build()?;
//! let out = r.redact_text("card 4111 1111 1111 1111, mail dana.lee@example.com.");
//! assert_eq!(out.text, "card **** **** **** 1111, mail [REDACTED:EMAIL_ADDRESS].");
//! assert_eq!(out.findings.len(), 2);
//! // Masked text is left alone.
//! assert_eq!(r.redact_text(&out.text).text, out.text);
//!
//! // The same, streamed in pieces: nothing of the card is emitted before its mask.
//! let mut s = r.stream();
//! let mut emitted = String::new();
//! for piece in ["card 4111 11", "11 1111 1111, mail dana.lee@exa", "mple.com."] {
//!     emitted.push_str(&s.push(piece)?);
//!     assert!(!emitted.contains("4111"));
//! }
//! emitted.push_str(&s.finish()?);
//! assert_eq!(emitted, out.text);
//! # Ok::<(), skillgate::redaction::RedactionError>(())
//! ```

mod config;
mod detect;
mod json;
mod layer;
mod operators;
mod phone;
mod reversible;
mod stream;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub use config::{RedactionConfig, RequestRedaction};
pub use detect::{CustomPattern, Span, entity};
pub use json::redact_json_value;
pub use layer::{
    FINDINGS_METRIC, RedactionBody, RedactionLayer, RedactionLayerBuilder, RedactionService,
};
pub use operators::{Operator, TokenVault};
#[cfg(feature = "redis")]
pub use reversible::RedisVault;
pub use reversible::{TokenRestorer, VaultKind};
pub use stream::{DEFAULT_MAX_HOLD_BYTES, JsonStreamRedactor, StreamRedactor};

use detect::Detector;
use operators::Operators;

/// What went wrong while building or running a redactor. Messages never hold
/// a scanned value.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedactionError {
    /// Bad configuration: a pattern that does not compile, an unknown entity
    /// type, an unreadable key file.
    #[error("redaction configuration: {0}")]
    Config(String),
    /// Text held back waiting for a possible match grew past the limit (bytes).
    #[error("redaction hold-back exceeded {0} bytes")]
    HoldOverflow(usize),
    /// Content the layer cannot inspect (unknown block or delta type, bad
    /// JSON, compressed body, broken event stream).
    #[error("uninspectable content: {0}")]
    Uninspectable(String),
}

/// What happens when content cannot be inspected.
///
/// ```
/// use skillgate::redaction::Mode;
/// assert_eq!(Mode::default(), Mode::Strict);
/// let m: Mode = serde_json::from_str(r#""best_effort""#).unwrap();
/// assert_eq!(m, Mode::BestEffort);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Fail closed: a JSON response becomes `500 api_error`, a stream ends
    /// with an SSE `error` event.
    #[default]
    Strict,
    /// Pass what cannot be inspected through unchanged (recorded as a
    /// finding of type `UNINSPECTED` with count 1).
    BestEffort,
}

/// The result of [`Redactor::redact_text`].
///
/// ```
/// let r = skillgate::redaction::Redactor::new();
/// let out = r.redact_text("nothing here");
/// assert_eq!(out.text, "nothing here");
/// assert!(out.findings.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redacted {
    /// The rewritten text.
    pub text: String,
    /// Entity type → number of values rewritten.
    pub findings: BTreeMap<String, u64>,
}

/// The detectors plus operators; cheap to clone (`Arc` inside).
///
/// ```
/// let r = skillgate::redaction::Redactor::new();
/// let out = r.redact_text("SSN: 987-65-4321");
/// assert_eq!(out.text, "SSN: [REDACTED:US_SSN]");
/// assert_eq!(out.findings["US_SSN"], 1);
/// ```
#[derive(Debug, Clone)]
pub struct Redactor {
    detector: Arc<Detector>,
    ops: Arc<Operators>,
    max_hold: usize,
}

/// Builder for [`Redactor`]; see [`Redactor::builder`].
#[derive(Debug, Default)]
pub struct RedactorBuilder {
    entity_types: Option<Vec<String>>,
    custom: Vec<CustomPattern>,
    default_op: Option<Operator>,
    per_type: HashMap<String, Operator>,
    key: Option<Vec<u8>>,
    max_hold: Option<usize>,
    vault: Option<TokenVault>,
}

impl RedactorBuilder {
    /// Only these entity types are detected (default: every built-in one).
    pub fn entity_types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.entity_types = Some(types.into_iter().map(Into::into).collect());
        self
    }
    /// Adds a custom pattern (always enabled).
    pub fn custom_pattern(mut self, p: CustomPattern) -> Self {
        self.custom.push(p);
        self
    }
    /// The operator for types without their own (default [`Operator::Replace`]).
    pub fn default_operator(mut self, op: Operator) -> Self {
        self.default_op = Some(op);
        self
    }
    /// The operator for one entity type.
    pub fn operator(mut self, entity_type: impl Into<String>, op: Operator) -> Self {
        self.per_type.insert(entity_type.into(), op);
        self
    }
    /// The deployment key of [`Operator::Hash`] and [`Operator::Token`]
    /// (default: 32 random bytes per process, so hashes are stable only
    /// until restart).
    pub fn hmac_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }
    /// Most bytes a stream may hold back waiting for a value to complete
    /// (default [`DEFAULT_MAX_HOLD_BYTES`]); past it the stream fails.
    pub fn max_hold_bytes(mut self, n: usize) -> Self {
        self.max_hold = Some(n);
        self
    }
    /// Where [`Operator::Token`] keeps its tokens (default: a new vault).
    pub fn vault(mut self, v: TokenVault) -> Self {
        self.vault = Some(v);
        self
    }

    /// Compiles the detectors.
    ///
    /// # Errors
    /// [`RedactionError::Config`] for an unknown entity type, a custom
    /// pattern that does not compile or a bad custom type name.
    pub fn build(self) -> Result<Redactor, RedactionError> {
        let detector = Detector::new(self.entity_types.as_deref(), &self.custom)?;
        let key: Arc<[u8]> = match self.key {
            Some(k) if !k.is_empty() => k.into(),
            Some(_) => return Err(RedactionError::Config("empty hmac key".into())),
            None => {
                let mut k = [0u8; 32];
                getrandom::getrandom(&mut k)
                    .map_err(|e| RedactionError::Config(format!("random key: {e}")))?;
                Arc::from(&k[..])
            }
        };
        Ok(Redactor {
            detector: Arc::new(detector),
            ops: Arc::new(Operators {
                default: self.default_op.unwrap_or(Operator::Replace),
                per_type: self.per_type,
                key,
                vault: self.vault.unwrap_or_default(),
            }),
            max_hold: self.max_hold.unwrap_or(DEFAULT_MAX_HOLD_BYTES),
        })
    }
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new()
    }
}

impl Redactor {
    /// Every built-in detector, [`Operator::Replace`] for all.
    ///
    /// # Panics
    /// Never in practice: the built-in patterns are fixed and compile (a test
    /// guards it).
    pub fn new() -> Redactor {
        #[allow(clippy::expect_used)]
        Redactor::builder()
            .build()
            .expect("built-in redaction patterns compile")
    }

    /// Starts a builder.
    pub fn builder() -> RedactorBuilder {
        RedactorBuilder::default()
    }

    /// The values in `text` (byte ranges and types), without rewriting it.
    pub fn detect(&self, text: &str) -> Vec<Span> {
        self.detector.detect(text)
    }

    /// `text` with every detected value rewritten by its operator.
    pub fn redact_text(&self, text: &str) -> Redacted {
        let spans = self.detector.detect(text);
        let mut findings = BTreeMap::new();
        let text = self.apply(text, &spans, &mut findings);
        Redacted { text, findings }
    }

    /// The vault holding [`Operator::Token`] values.
    pub fn vault(&self) -> &TokenVault {
        &self.ops.vault
    }

    /// This redactor with [`Operator::Token`] for every entity type, issuing
    /// into `vault` (reversible request redaction).
    pub(crate) fn tokenizing(&self, vault: TokenVault) -> Redactor {
        Redactor {
            detector: self.detector.clone(),
            ops: Arc::new(Operators {
                default: Operator::Token,
                per_type: HashMap::new(),
                key: self.ops.key.clone(),
                vault,
            }),
            max_hold: self.max_hold,
        }
    }

    /// A new incremental scanner for one stream of text.
    pub fn stream(&self) -> StreamRedactor {
        StreamRedactor::new(self.clone())
    }

    /// Rewrites `text` given its spans, counting findings.
    pub(crate) fn apply(
        &self,
        text: &str,
        spans: &[Span],
        findings: &mut BTreeMap<String, u64>,
    ) -> String {
        if spans.is_empty() {
            return text.to_owned();
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        // Counted per entity type name (the detector shares one `Arc` per
        // type, so the pointer usually decides), then added to `findings`.
        let mut counts: Vec<(&Arc<str>, u64)> = Vec::new();
        for s in spans {
            out.push_str(&text[at..s.start]);
            self.ops
                .apply(&s.entity_type, &text[s.start..s.end], &mut out);
            match counts
                .iter_mut()
                .find(|(t, _)| Arc::ptr_eq(t, &s.entity_type) || **t == s.entity_type)
            {
                Some((_, n)) => *n += 1,
                None => counts.push((&s.entity_type, 1)),
            }
            at = s.end;
        }
        out.push_str(&text[at..]);
        for (t, n) in counts {
            match findings.get_mut(&**t) {
                Some(c) => *c += n,
                None => {
                    findings.insert(t.to_string(), n);
                }
            }
        }
        out
    }
}
