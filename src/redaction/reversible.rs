//! Reversible request redaction: the model sees tokens, the caller gets its
//! own values back.
//!
//! With `request = "reversible"` the layer masks the prompt with
//! [`Operator::Token`](super::Operator::Token) for every entity type, into a
//! vault made for this one request. The tokens issued (and, with a
//! [`RedisVault`], the tokens of earlier turns that the prompt carries and
//! that were issued to the same principal) form the request's *restore map*.
//! In the response, after response masking, exactly the tokens of that map
//! are replaced by their values; anything else token-shaped passes unchanged.
//!
//! Tokens have a fixed shape, `[ENTITY_TYPE:tok:<16 lowercase hex>]` with an
//! entity type of 1–64 characters `A-Z0-9_`, so a stream only holds back a
//! possible token prefix: at most 86 bytes.
//!
//! ```
//! use std::collections::HashMap;
//! use std::sync::Arc;
//! use skillgate::redaction::TokenRestorer;
//!
//! let map = HashMap::from([(
//!     "[EMAIL_ADDRESS:tok:0011223344556677]".to_owned(),
//!     "dana.lee@example.com".to_owned(),
//! )]);
//! let mut r = TokenRestorer::new(Arc::new(map), false);
//! let mut out = r.push("mail [EMAIL_ADD");
//! assert_eq!(out, "mail ");
//! out.push_str(&r.push("RESS:tok:0011223344556677] or [X:tok:ffffffffffffffff]"));
//! out.push_str(&r.finish());
//! assert_eq!(out, "mail dana.lee@example.com or [X:tok:ffffffffffffffff]");
//! assert_eq!(r.restored(), 1);
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

/// Longest entity type name in a token (characters).
const MAX_ENTITY_LEN: usize = 64;
/// Hex digits of a token's tag.
const TAG_LEN: usize = 16;

/// Where the layer keeps tokens of reversible request redaction.
///
/// ```
/// use skillgate::redaction::VaultKind;
/// let v: VaultKind = serde_json::from_str(r#""redis""#).unwrap();
/// assert_eq!(v, VaultKind::Redis);
/// assert_eq!(VaultKind::default(), VaultKind::Memory);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VaultKind {
    /// Per request only: a token is restored in the response to the request
    /// that issued it.
    #[default]
    Memory,
    /// Also in Redis with a TTL (feature `redis`), per principal, so a later
    /// turn carrying an earlier token gets its value restored.
    Redis,
}

/// The outcome of looking at the start of a text for a token.
enum Scan {
    /// A whole token of this many bytes.
    Token(usize),
    /// The text could still grow into a token.
    Partial,
    /// Not a token.
    No,
}

fn is_entity_byte(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'
}

/// `s` starts with `[`.
fn scan(s: &str) -> Scan {
    let b = s.as_bytes();
    let n = b[1..]
        .iter()
        .take(MAX_ENTITY_LEN + 1)
        .take_while(|c| is_entity_byte(**c))
        .count();
    if n > MAX_ENTITY_LEN {
        return Scan::No;
    }
    let mut i = 1 + n;
    if i == b.len() {
        return Scan::Partial;
    }
    if n == 0 {
        return Scan::No;
    }
    for c in b":tok:" {
        if i == b.len() {
            return Scan::Partial;
        }
        if b[i] != *c {
            return Scan::No;
        }
        i += 1;
    }
    for _ in 0..TAG_LEN {
        if i == b.len() {
            return Scan::Partial;
        }
        if !matches!(b[i], b'0'..=b'9' | b'a'..=b'f') {
            return Scan::No;
        }
        i += 1;
    }
    if i == b.len() {
        return Scan::Partial;
    }
    if b[i] != b']' {
        return Scan::No;
    }
    Scan::Token(i + 1)
}

/// Every token-shaped substring of `text`, in order (duplicates kept).
#[cfg(any(feature = "redis", test))]
pub(crate) fn tokens_in(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(i) = text[at..].find('[') {
        let i = at + i;
        match scan(&text[i..]) {
            Scan::Token(n) => {
                out.push(&text[i..i + n]);
                at = i + n;
            }
            _ => at = i + 1,
        }
    }
    out
}

/// Restores the tokens of one request in text arriving in pieces (one
/// content block's `text_delta`s or `input_json_delta`s).
///
/// Output is the same however the text is split: a possible token prefix at
/// the end of the text is held back until it completes or cannot be a token.
/// In JSON mode the values are written JSON-escaped (for the inside of a
/// JSON string).
///
/// ```
/// use std::{collections::HashMap, sync::Arc};
/// let map = HashMap::from([("[US_SSN:tok:00000000000000aa]".to_owned(), "a\"b".to_owned())]);
/// let mut r = skillgate::redaction::TokenRestorer::new(Arc::new(map), true);
/// let out = r.push(r#"{"x": "[US_SSN:tok:00000000000000aa]"}"#) + &r.finish();
/// assert_eq!(out, r#"{"x": "a\"b"}"#);
/// ```
#[derive(Clone)]
pub struct TokenRestorer {
    tokens: Arc<HashMap<String, String>>,
    held: String,
    json: bool,
    restored: u64,
}

impl std::fmt::Debug for TokenRestorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRestorer")
            .field("tokens", &self.tokens.len())
            .field("held_bytes", &self.held.len())
            .field("json", &self.json)
            .finish_non_exhaustive()
    }
}

impl TokenRestorer {
    /// A restorer for the token → value map `tokens`; `json` when the text is
    /// JSON text (values are then escaped).
    pub fn new(tokens: Arc<HashMap<String, String>>, json: bool) -> Self {
        TokenRestorer {
            tokens,
            held: String::new(),
            json,
            restored: 0,
        }
    }

    /// Adds `text`; returns what can be emitted now.
    pub fn push(&mut self, text: &str) -> String {
        self.held.push_str(text);
        self.run(false)
    }

    /// Ends the text: returns the rest (a held incomplete token unchanged).
    pub fn finish(&mut self) -> String {
        self.run(true)
    }

    /// Tokens replaced so far.
    pub fn restored(&self) -> u64 {
        self.restored
    }

    fn run(&mut self, last: bool) -> String {
        let s = std::mem::take(&mut self.held);
        let mut out = String::with_capacity(s.len());
        let mut at = 0;
        while let Some(i) = s[at..].find('[') {
            let i = at + i;
            out.push_str(&s[at..i]);
            match scan(&s[i..]) {
                Scan::Token(n) => {
                    let t = &s[i..i + n];
                    match self.tokens.get(t) {
                        Some(v) => {
                            self.restored += 1;
                            push_value(v, self.json, &mut out);
                        }
                        None => out.push_str(t),
                    }
                    at = i + n;
                }
                Scan::Partial if !last => {
                    self.held = s[i..].to_owned();
                    return out;
                }
                _ => {
                    out.push('[');
                    at = i + 1;
                }
            }
        }
        out.push_str(&s[at..]);
        out
    }
}

fn push_value(v: &str, json: bool, out: &mut String) {
    if !json {
        out.push_str(v);
        return;
    }
    // A JSON string literal without its quotes.
    let lit = serde_json::to_string(v).unwrap_or_default();
    out.push_str(lit.get(1..lit.len().saturating_sub(1)).unwrap_or_default());
}

/// `text` with the tokens of `tokens` restored (whole-text form of
/// [`TokenRestorer`]); returns the number restored.
pub(crate) fn restore_text(tokens: &Arc<HashMap<String, String>>, text: &mut String) -> u64 {
    if !text.contains(":tok:") {
        return 0;
    }
    let mut r = TokenRestorer::new(tokens.clone(), false);
    let mut out = r.push(text);
    out.push_str(&r.finish());
    *text = out;
    r.restored
}

/// Restores every string inside `v` (not object keys).
pub(crate) fn restore_value(tokens: &Arc<HashMap<String, String>>, v: &mut Value) -> u64 {
    match v {
        Value::String(s) => restore_text(tokens, s),
        Value::Array(items) => items.iter_mut().map(|i| restore_value(tokens, i)).sum(),
        Value::Object(map) => map.values_mut().map(|i| restore_value(tokens, i)).sum(),
        _ => 0,
    }
}

/// Restores a Messages response in place: `text` blocks' text and tool-use
/// blocks' inputs.
pub(crate) fn restore_message(tokens: &Arc<HashMap<String, String>>, msg: &mut Value) -> u64 {
    let Some(Value::Array(content)) = msg.get_mut("content") else {
        return 0;
    };
    let mut n = 0;
    for block in content {
        let ty = block
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        match ty.as_str() {
            "text" => {
                if let Some(Value::String(s)) = block.get_mut("text") {
                    n += restore_text(tokens, s);
                }
            }
            "tool_use" | "server_tool_use" | "mcp_tool_use" => {
                if let Some(input) = block.get_mut("input") {
                    n += restore_value(tokens, input);
                }
            }
            _ => {}
        }
    }
    n
}

/// Tokens in Redis with a TTL (feature `redis`): key
/// `<prefix><scope>:<token>` → value, where the scope is a SHA-256 of the
/// principal's issuer and subject, so one principal's tokens never restore
/// for another. The token is itself an HMAC of the value under the
/// deployment key, so the same value always gets the same token and key.
/// Values are stored as they are (protect the Redis like the prompts).
///
/// ```no_run
/// # async fn run() -> Result<(), skillgate::redaction::RedactionError> {
/// use std::time::Duration;
/// let v = skillgate::redaction::RedisVault::open(
///     "redis://127.0.0.1:6379", "skillgate:vault:", Duration::from_secs(3600), Duration::from_secs(2))?;
/// # Ok(()) }
/// ```
#[cfg(feature = "redis")]
#[derive(Clone)]
pub struct RedisVault {
    conn: redis::aio::ConnectionManager,
    prefix: String,
    ttl: std::time::Duration,
    timeout: std::time::Duration,
}

#[cfg(feature = "redis")]
impl std::fmt::Debug for RedisVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisVault")
            .field("prefix", &self.prefix)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "redis")]
impl RedisVault {
    /// A vault at `url` (connects lazily; every operation bounded by
    /// `timeout`), keys starting with `prefix`, entries living `ttl`
    /// (whole seconds, at least 1). Must be called inside a Tokio runtime.
    ///
    /// # Errors
    /// [`RedactionError::Config`](super::RedactionError::Config) for a URL
    /// that does not parse (the message does not repeat it).
    pub fn open(
        url: &str,
        prefix: &str,
        ttl: std::time::Duration,
        timeout: std::time::Duration,
    ) -> Result<Self, super::RedactionError> {
        use redis::aio::{ConnectionManager, ConnectionManagerConfig};
        let client = redis::Client::open(url).map_err(|e| {
            super::RedactionError::Config(format!("vault redis URL: {:?}", e.kind()))
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(0);
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| super::RedactionError::Config(format!("vault redis: {:?}", e.kind())))?;
        Ok(RedisVault {
            conn,
            prefix: prefix.to_owned(),
            ttl: ttl.max(std::time::Duration::from_secs(1)),
            timeout,
        })
    }

    fn key(&self, scope: &str, token: &str) -> String {
        format!("{}{scope}:{token}", self.prefix)
    }

    /// Stores `tokens` (token → value) for `scope`, refreshing their TTL.
    ///
    /// # Errors
    /// `Err(message)` when Redis fails or times out (no value in it).
    pub async fn store(&self, scope: &str, tokens: &HashMap<String, String>) -> Result<(), String> {
        if tokens.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (t, v) in tokens {
            pipe.set_ex(self.key(scope, t), v, self.ttl.as_secs())
                .ignore();
        }
        let mut conn = self.conn.clone();
        let fut = pipe.query_async::<()>(&mut conn);
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("{:?}", e.kind())),
            Err(_) => Err("timed out".into()),
        }
    }

    /// The values of those of `tokens` stored for `scope`.
    ///
    /// # Errors
    /// `Err(message)` when Redis fails or times out.
    pub async fn lookup(
        &self,
        scope: &str,
        tokens: &[String],
    ) -> Result<HashMap<String, String>, String> {
        if tokens.is_empty() {
            return Ok(HashMap::new());
        }
        let keys: Vec<String> = tokens.iter().map(|t| self.key(scope, t)).collect();
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("MGET");
        cmd.arg(&keys);
        let fut = cmd.query_async::<Vec<Option<String>>>(&mut conn);
        let vals = match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(format!("{:?}", e.kind())),
            Err(_) => return Err("timed out".into()),
        };
        Ok(tokens
            .iter()
            .zip(vals)
            .filter_map(|(t, v)| v.map(|v| (t.clone(), v)))
            .collect())
    }
}

/// The vault scope of a principal: hex SHA-256 of `issuer ‖ 0 ‖ subject`
/// (`"anonymous"` without a principal).
#[cfg(any(feature = "redis", test))]
pub(crate) fn scope_of(p: Option<&crate::identity::Principal>) -> String {
    use sha2::{Digest, Sha256};
    let Some(p) = p else {
        return "anonymous".into();
    };
    let mut h = Sha256::new();
    h.update(p.issuer.as_bytes());
    h.update([0]);
    h.update(p.subject.as_bytes());
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn map() -> Arc<HashMap<String, String>> {
        Arc::new(HashMap::from([
            (
                "[EMAIL_ADDRESS:tok:0123456789abcdef]".to_owned(),
                "dana.lee@example.com".to_owned(),
            ),
            (
                "[US_SSN:tok:fedcba9876543210]".to_owned(),
                "987-65-4321 \"q\"".to_owned(),
            ),
        ]))
    }

    fn whole(text: &str, json: bool) -> String {
        let mut r = TokenRestorer::new(map(), json);
        r.push(text) + &r.finish()
    }

    #[test]
    fn restores_only_known_tokens() {
        let t = "a [EMAIL_ADDRESS:tok:0123456789abcdef] b [EMAIL_ADDRESS:tok:0123456789abcdee] \
                 [[US_SSN:tok:fedcba9876543210]] [x:tok:0123456789abcdef] [US_SSN:tok:fedcba98";
        assert_eq!(
            whole(t, false),
            "a dana.lee@example.com b [EMAIL_ADDRESS:tok:0123456789abcdee] \
             [987-65-4321 \"q\"] [x:tok:0123456789abcdef] [US_SSN:tok:fedcba98"
        );
        assert_eq!(
            whole(r#"{"s":"[US_SSN:tok:fedcba9876543210]"}"#, true),
            r#"{"s":"987-65-4321 \"q\""}"#
        );
    }

    #[test]
    fn holds_back_only_a_possible_token() {
        let mut r = TokenRestorer::new(map(), false);
        assert_eq!(r.push("x [US_SSN:tok:fe"), "x ");
        assert_eq!(r.push("z"), "[US_SSN:tok:fez");
        assert_eq!(r.push("[A"), "");
        assert_eq!(r.push("b"), "[Ab");
        assert_eq!(r.finish(), "");
    }

    #[test]
    fn json_message_blocks() {
        let mut m = serde_json::json!({"content": [
            {"type": "text", "text": "hi [EMAIL_ADDRESS:tok:0123456789abcdef]"},
            {"type": "tool_use", "id": "t", "name": "n",
             "input": {"to": ["[EMAIL_ADDRESS:tok:0123456789abcdef]"], "n": 1}},
            {"type": "thinking", "thinking": "[EMAIL_ADDRESS:tok:0123456789abcdef]", "signature": "s"},
        ]});
        assert_eq!(restore_message(&map(), &mut m), 2);
        assert_eq!(m["content"][0]["text"], "hi dana.lee@example.com");
        assert_eq!(m["content"][1]["input"]["to"][0], "dana.lee@example.com");
        assert_eq!(
            m["content"][2]["thinking"],
            "[EMAIL_ADDRESS:tok:0123456789abcdef]"
        );
    }

    #[test]
    fn finds_tokens() {
        assert_eq!(
            tokens_in("[[A:tok:0123456789abcdef] [B:tok:01]"),
            vec!["[A:tok:0123456789abcdef]"]
        );
    }

    fn text_strategy() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("[EMAIL_ADDRESS:tok:0123456789abcdef]".to_owned()),
            Just("[US_SSN:tok:fedcba9876543210]".to_owned()),
            Just("[US_SSN:tok:fedcba987654321".to_owned()),
            Just("[OTHER:tok:fedcba9876543210]".to_owned()),
            Just("[".to_owned()),
            Just("\"".to_owned()),
            "[a-zA-Z :_\\]é]{0,6}",
        ];
        proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn output_is_independent_of_chunking(
            text in text_strategy(),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
            json in any::<bool>(),
        ) {
            let expected = whole(&text, json);
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(text.len() + 1)).collect();
            points.push(0);
            points.push(text.len());
            points.sort_unstable();
            points.retain(|p| text.is_char_boundary(*p));
            let mut r = TokenRestorer::new(map(), json);
            let mut out = String::new();
            for w in points.windows(2) {
                out.push_str(&r.push(&text[w[0]..w[1]]));
                prop_assert!(r.held.len() <= 1 + MAX_ENTITY_LEN + 5 + TAG_LEN);
            }
            out.push_str(&r.finish());
            prop_assert_eq!(out, expected);
        }
    }
}
