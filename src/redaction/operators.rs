//! What replaces a detected value: [`Operator`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How a value of one entity type is rewritten.
///
/// Every output is inert for the detectors: placeholders and tokens are
/// recognised and skipped, masks keep at most `keep_last` characters, so
/// redacting redacted text changes nothing.
///
/// ```
/// use skillgate::redaction::Operator;
/// let op: Operator = serde_json::from_str(r#"{"kind":"mask","keep_last":4}"#).unwrap();
/// assert_eq!(op, Operator::Mask { keep_last: 4 });
/// let op: Operator = serde_json::from_str(r#"{"kind":"replace"}"#).unwrap();
/// assert_eq!(op, Operator::Replace);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Operator {
    /// `[REDACTED:ENTITY_TYPE]` (the default).
    Replace,
    /// Every letter and digit becomes `*` except the last `keep_last`
    /// (separators stay), e.g. `**** **** **** 1111`. `keep_last` is capped at 4
    /// and at less than half of the value's letters and digits.
    Mask {
        /// Letters/digits left visible at the end (0–4).
        #[serde(default)]
        keep_last: usize,
    },
    /// `[ENTITY_TYPE:hmac:<16 hex>]`: the first 8 bytes of
    /// HMAC-SHA256(deployment key, entity type ‖ 0 ‖ value). Stable for one
    /// key, so equal values stay linkable without being readable.
    Hash,
    /// `[ENTITY_TYPE:tok:<16 hex>]`, reversible through the redactor's
    /// [`TokenVault`] (same derivation as `Hash`, a different label).
    Token,
}

/// Tokens issued by [`Operator::Token`] and the values they stand for,
/// kept in memory (per redactor, or per request when created per request).
///
/// ```
/// use skillgate::redaction::TokenVault;
/// let v = TokenVault::default();
/// v.insert("[EMAIL_ADDRESS:tok:0011223344556677]".into(), "a@example.com".into());
/// assert_eq!(v.restore("mail [EMAIL_ADDRESS:tok:0011223344556677]!"), "mail a@example.com!");
/// ```
#[derive(Debug, Clone, Default)]
pub struct TokenVault {
    map: Arc<Mutex<HashMap<String, String>>>,
}

impl TokenVault {
    /// Remembers `token` → `value`.
    pub fn insert(&self, token: String, value: String) {
        if let Ok(mut m) = self.map.lock() {
            m.insert(token, value);
        }
    }

    /// A copy of every token → value held.
    pub(crate) fn snapshot(&self) -> HashMap<String, String> {
        self.map.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Number of tokens held.
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether no token is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `text` with every known token replaced by its original value.
    pub fn restore(&self, text: &str) -> String {
        let Ok(m) = self.map.lock() else {
            return text.to_owned();
        };
        if m.is_empty() || !text.contains(":tok:") {
            return text.to_owned();
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(i) = rest.find('[') {
            out.push_str(&rest[..i]);
            let tail = &rest[i..];
            match tail
                .find(']')
                .map(|j| &tail[..=j])
                .and_then(|t| m.get(t).map(|v| (t, v)))
            {
                Some((t, v)) => {
                    out.push_str(v);
                    rest = &tail[t.len()..];
                }
                None => {
                    out.push('[');
                    rest = &tail[1..];
                }
            }
        }
        out.push_str(rest);
        out
    }
}

/// Applies operators; holds the HMAC key and the token vault.
#[derive(Clone)]
pub(crate) struct Operators {
    pub(crate) default: Operator,
    pub(crate) per_type: HashMap<String, Operator>,
    pub(crate) key: Arc<[u8]>,
    pub(crate) vault: TokenVault,
}

impl std::fmt::Debug for Operators {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operators")
            .field("default", &self.default)
            .field("per_type", &self.per_type)
            .finish_non_exhaustive()
    }
}

impl Operators {
    /// The operator for `entity`.
    pub(crate) fn for_type(&self, entity: &str) -> &Operator {
        if self.per_type.is_empty() {
            return &self.default;
        }
        self.per_type.get(entity).unwrap_or(&self.default)
    }

    /// The replacement text for `value` of type `entity`.
    pub(crate) fn apply(&self, entity: &str, value: &str, out: &mut String) {
        match self.for_type(entity) {
            Operator::Replace => {
                out.push_str("[REDACTED:");
                out.push_str(entity);
                out.push(']');
            }
            Operator::Mask { keep_last } => mask(value, (*keep_last).min(4), out),
            Operator::Hash => {
                let tag = self.tag(b"hash", entity, value);
                out.push_str(&format!("[{entity}:hmac:{tag}]"));
            }
            Operator::Token => {
                let tag = self.tag(b"token", entity, value);
                let token = format!("[{entity}:tok:{tag}]");
                self.vault.insert(token.clone(), value.to_owned());
                out.push_str(&token);
            }
        }
    }

    fn tag(&self, label: &[u8], entity: &str, value: &str) -> String {
        // HMAC accepts keys of any length, so this cannot fail.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return "0000000000000000".into();
        };
        mac.update(label);
        mac.update(&[0]);
        mac.update(entity.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        let bytes = mac.finalize().into_bytes();
        bytes[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Letters and digits → `*`, except the last `keep`; zero-width characters dropped.
fn mask(value: &str, keep: usize, out: &mut String) {
    let total = value.chars().filter(|c| c.is_alphanumeric()).count();
    // Never show half or more of a short value (an IPv4 address has 4–12 digits).
    let keep = keep.min(total.saturating_sub(1) / 2);
    let mut seen = 0;
    for c in value.chars() {
        if matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}') {
            continue;
        }
        if c.is_alphanumeric() {
            seen += 1;
            if seen + keep > total {
                out.push(c);
            } else {
                out.push('*');
            }
        } else if c == '@' || c == '.' || c == '-' || c == ' ' {
            out.push(c);
        } else {
            out.push('*');
        }
    }
}
