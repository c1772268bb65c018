//! A read-only view of a Messages API request body
//! (<https://docs.anthropic.com/en/api/messages>), and the buffered request
//! body that layers share through the request extensions.
//!
//! The view is for *deciding*; the bytes the caller sent are forwarded
//! unchanged (never re-serialized).
//!
//! ```
//! use skillgate::wire::messages::MessagesRequest;
//! let body = br#"{"model":"claude-sonnet-4-5","max_tokens":256,"stream":true,
//!   "system":"Be brief.",
//!   "messages":[{"role":"user","content":[{"type":"text","text":"Hi"}]}],
//!   "tools":[{"name":"get_weather","input_schema":{}}],
//!   "container":{"skills":[{"type":"anthropic","skill_id":"pptx","version":"latest"}]}}"#;
//! let req = MessagesRequest::parse(body).unwrap();
//! assert_eq!(req.model(), Some("claude-sonnet-4-5"));
//! assert_eq!(req.max_tokens(), Some(256));
//! assert!(req.stream());
//! assert_eq!(req.prompt_texts().collect::<Vec<_>>(), ["Be brief.", "Hi"]);
//! assert_eq!(req.tool_names().collect::<Vec<_>>(), ["get_weather"]);
//! assert_eq!(req.skill_ids().collect::<Vec<_>>(), ["pptx"]);
//! ```

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

/// Why a body is not a Messages request. The message names the position and
/// the kind of problem, never the content.
///
/// ```
/// use skillgate::wire::messages::MessagesRequest;
/// let err = MessagesRequest::parse(b"{\"model\":").unwrap_err();
/// assert!(err.to_string().starts_with("request body is not valid JSON"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Not JSON (syntax error or truncated), at a 1-based line and column.
    #[error("request body is not valid JSON (line {line}, column {column})")]
    Json {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// The same member name twice in one object (RFC 8259 §4 leaves its meaning open).
    #[error("request body repeats a member name in one object (line {line}, column {column})")]
    DuplicateKey {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// Arrays and objects nested deeper than the limit.
    #[error("request body nests JSON deeper than {limit} levels")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// JSON, but not an object with the Messages fields' types.
    #[error("request body does not have the Messages request shape ({0})")]
    Shape(&'static str),
}

/// Deepest JSON nesting (arrays and objects) accepted in a request body.
/// Real Messages requests (tool schemas included) stay far below it.
pub const MAX_JSON_DEPTH: usize = 64;

/// The maximum nesting depth of arrays and objects in `bytes`, counted
/// without parsing (brackets inside strings are skipped). Linear, no
/// allocation, so it runs before the parser ever recurses.
pub fn json_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max, mut in_str, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_str {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// A parsed Messages request: the fields the gateway decides on.
///
/// Unknown fields are ignored, so new API features do not break parsing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MessagesRequest {
    model: Option<String>,
    max_tokens: Option<u64>,
    stream: bool,
    texts: Vec<String>,
    tool_names: Vec<String>,
    tool_types: Vec<String>,
    skill_ids: Vec<String>,
}

#[derive(Deserialize)]
struct Raw {
    model: Option<String>,
    max_tokens: Option<u64>,
    stream: Option<bool>,
    #[serde(default)]
    system: Option<Value>,
    #[serde(default)]
    messages: Vec<RawMessage>,
    #[serde(default)]
    tools: Vec<RawTool>,
    #[serde(default)]
    container: Option<RawContainer>,
    #[serde(default)]
    mcp_servers: Vec<Value>,
}

#[derive(Deserialize)]
struct RawMessage {
    #[serde(default)]
    content: Value,
}

#[derive(Deserialize)]
struct RawTool {
    name: Option<String>,
    description: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct RawContainer {
    #[serde(default)]
    skills: Vec<RawSkill>,
}

#[derive(Deserialize)]
struct RawSkill {
    skill_id: Option<String>,
}

/// Collects every string inside a JSON value (tool inputs).
fn collect_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|i| collect_strings(i, out)),
        Value::Object(m) => m.values().for_each(|i| collect_strings(i, out)),
        _ => {}
    }
}

/// Collects every prompt text in a `content` value: a string, or blocks of
/// type `text`, `tool_result` (its string or nested text blocks) and
/// `document` (a `text` source's `data`, or a `content` source's blocks).
fn collect_texts(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(blocks) => {
            for b in blocks {
                match b.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        if let Some(t) = b.get("text").and_then(Value::as_str) {
                            out.push(t.to_owned());
                        }
                    }
                    Some("tool_result") => {
                        if let Some(c) = b.get("content") {
                            collect_texts(c, out);
                        }
                    }
                    Some("document") => {
                        let src = b.get("source");
                        match src.and_then(|s| s.get("type")).and_then(Value::as_str) {
                            Some("text") => {
                                if let Some(d) =
                                    src.and_then(|s| s.get("data")).and_then(Value::as_str)
                                {
                                    out.push(d.to_owned());
                                }
                            }
                            Some("content") => {
                                if let Some(c) = src.and_then(|s| s.get("content")) {
                                    collect_texts(c, out);
                                }
                            }
                            _ => {}
                        }
                        for k in ["title", "context"] {
                            if let Some(t) = b.get(k).and_then(Value::as_str) {
                                out.push(t.to_owned());
                            }
                        }
                    }
                    Some("search_result") => {
                        if let Some(t) = b.get("title").and_then(Value::as_str) {
                            out.push(t.to_owned());
                        }
                        if let Some(c) = b.get("content") {
                            collect_texts(c, out);
                        }
                    }
                    Some("thinking") => {
                        if let Some(t) = b.get("thinking").and_then(Value::as_str) {
                            out.push(t.to_owned());
                        }
                    }
                    // Tool calls in the history: the model reads their input.
                    Some("tool_use" | "server_tool_use" | "mcp_tool_use") => {
                        if let Some(input) = b.get("input") {
                            collect_strings(input, out);
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

impl MessagesRequest {
    /// Parses a request body.
    ///
    /// # Errors
    /// [`WireError::Json`] for bytes that are not JSON, [`WireError::Shape`]
    /// for JSON whose known fields have the wrong types.
    pub fn parse(body: &[u8]) -> Result<MessagesRequest, WireError> {
        let depth = json_depth(body);
        if depth > MAX_JSON_DEPTH {
            return Err(WireError::TooDeep {
                limit: MAX_JSON_DEPTH,
            });
        }
        // Duplicate member names are refused: the upstream might read
        // `{"model":"a","model":"b"}` differently from the policy.
        let value: Value = crate::json::parse_unique(body).map_err(|e| {
            if e.is_data() {
                WireError::DuplicateKey {
                    line: e.line(),
                    column: e.column(),
                }
            } else {
                WireError::Json {
                    line: e.line(),
                    column: e.column(),
                }
            }
        })?;
        Self::from_value(value)
    }

    /// Builds the view from an already parsed JSON value (e.g. one request
    /// of a Message Batches body).
    ///
    /// # Errors
    /// [`WireError::Shape`] for a value that is not a Messages request object.
    pub fn from_value(value: Value) -> Result<MessagesRequest, WireError> {
        if !value.is_object() {
            return Err(WireError::Shape("not a JSON object"));
        }
        let raw: Raw = serde_json::from_value(value)
            .map_err(|_| WireError::Shape("a field has the wrong type"))?;
        let mut texts = Vec::new();
        if let Some(s) = &raw.system {
            collect_texts(s, &mut texts);
        }
        for m in &raw.messages {
            collect_texts(&m.content, &mut texts);
        }
        // Tool descriptions and MCP server names are prompt text too.
        texts.extend(raw.tools.iter().filter_map(|t| t.description.clone()));
        for server in &raw.mcp_servers {
            if let Some(n) = server.get("name").and_then(Value::as_str) {
                texts.push(n.to_owned());
            }
        }
        Ok(MessagesRequest {
            model: raw.model,
            max_tokens: raw.max_tokens,
            stream: raw.stream.unwrap_or(false),
            texts,
            tool_names: raw.tools.iter().filter_map(|t| t.name.clone()).collect(),
            tool_types: raw.tools.iter().filter_map(|t| t.kind.clone()).collect(),
            skill_ids: raw
                .container
                .map(|c| c.skills.into_iter().filter_map(|s| s.skill_id).collect())
                .unwrap_or_default(),
        })
    }

    /// `model`.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }
    /// `max_tokens`.
    pub fn max_tokens(&self) -> Option<u64> {
        self.max_tokens
    }
    /// `stream` (absent = `false`).
    pub fn stream(&self) -> bool {
        self.stream
    }
    /// All prompt text, in order: system, then each message's text, tool
    /// results, documents, search results, thinking and the string values of
    /// earlier tool calls' input; then tool descriptions and MCP server names.
    pub fn prompt_texts(&self) -> impl Iterator<Item = &str> {
        self.texts.iter().map(String::as_str)
    }
    /// `tools[].name`.
    pub fn tool_names(&self) -> impl Iterator<Item = &str> {
        self.tool_names.iter().map(String::as_str)
    }
    /// `tools[].type` (server and versioned client tools, e.g. `web_search_20250305`).
    pub fn tool_types(&self) -> impl Iterator<Item = &str> {
        self.tool_types.iter().map(String::as_str)
    }
    /// Agent Skills requested: `container.skills[].skill_id`.
    pub fn skill_ids(&self) -> impl Iterator<Item = &str> {
        self.skill_ids.iter().map(String::as_str)
    }
}

/// Whether `path` (without query) takes a Messages request body.
pub fn is_messages_path(path: &str) -> bool {
    matches!(path, "/v1/messages" | "/v1/messages/count_tokens")
}

/// The whole request body, buffered once (within the gateway's size limit)
/// and shared with every layer through the request extensions. The
/// [`MessagesRequest`] view is parsed on first use.
///
/// ```
/// use skillgate::wire::messages::RequestBody;
/// let b = RequestBody::new(bytes::Bytes::from_static(br#"{"model":"m","messages":[]}"#));
/// assert_eq!(b.messages().unwrap().model(), Some("m"));
/// ```
#[derive(Clone, Debug)]
pub struct RequestBody {
    bytes: Bytes,
    view: Arc<OnceLock<Result<Arc<MessagesRequest>, WireError>>>,
}

impl RequestBody {
    /// Wraps buffered bytes.
    pub fn new(bytes: Bytes) -> Self {
        RequestBody {
            bytes,
            view: Arc::new(OnceLock::new()),
        }
    }
    /// The bytes as received.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
    /// The Messages view (parsed once).
    ///
    /// # Errors
    /// The [`WireError`] from [`MessagesRequest::parse`].
    pub fn messages(&self) -> Result<Arc<MessagesRequest>, WireError> {
        self.view
            .get_or_init(|| MessagesRequest::parse(&self.bytes).map(Arc::new))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_every_prompt_text_kind() {
        let body = br#"{"model":"m","system":[{"type":"text","text":"S"}],
          "messages":[
            {"role":"user","content":"plain"},
            {"role":"assistant","content":[{"type":"tool_use","id":"t","name":"x","input":{"q":"tool input"}}]},
            {"role":"user","content":[
               {"type":"tool_result","tool_use_id":"t","content":"tool says"},
               {"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"nested"}]},
               {"type":"document","source":{"type":"text","media_type":"text/plain","data":"doc text"},"title":"T"},
               {"type":"document","source":{"type":"content","content":[{"type":"text","text":"doc block"}]}},
               {"type":"image","source":{"type":"base64","data":"AAAA"}},
               {"type":"search_result","source":"https://x","title":"ST","content":[{"type":"text","text":"found"}]}
            ]}],
          "tools":[{"name":"t","description":"tool desc","input_schema":{}}],
          "mcp_servers":[{"type":"url","url":"https://mcp","name":"srv"}]}"#;
        let r = MessagesRequest::parse(body).unwrap();
        assert_eq!(
            r.prompt_texts().collect::<Vec<_>>(),
            [
                "S",
                "plain",
                "tool input",
                "tool says",
                "nested",
                "doc text",
                "T",
                "doc block",
                "ST",
                "found",
                "tool desc",
                "srv"
            ]
        );
        assert!(!r.stream());
    }

    #[test]
    fn errors_name_position_not_content() {
        let e = MessagesRequest::parse(b"{\"model\": \"secret-value\"").unwrap_err();
        assert!(matches!(e, WireError::Json { line: 1, .. }));
        assert!(!e.to_string().contains("secret"));
        assert_eq!(
            MessagesRequest::parse(b"[1]").unwrap_err(),
            WireError::Shape("not a JSON object")
        );
        let e = MessagesRequest::parse(br#"{"model": 5}"#).unwrap_err();
        assert!(matches!(e, WireError::Shape(_)));
        let e = MessagesRequest::parse(br#"{"max_tokens": "secret"}"#).unwrap_err();
        assert!(!e.to_string().contains("secret"));
    }

    #[test]
    fn duplicate_member_names_are_refused() {
        for body in [
            r#"{"model":"claude-sonnet-5","model":"claude-opus-4-8","messages":[]}"#,
            r#"{"max_tokens":5000,"max_tokens":5,"messages":[]}"#,
            r#"{"messages":[{"role":"user","content":[{"type":"text","text":"a","text":"b"}]}]}"#,
            r#"{"model":"a","mod\u0065l":"b"}"#,
        ] {
            let e = MessagesRequest::parse(body.as_bytes()).unwrap_err();
            assert!(matches!(e, WireError::DuplicateKey { .. }), "{body}: {e}");
        }
    }

    #[test]
    fn nesting_depth_is_limited() {
        assert_eq!(json_depth(br#"{"a":[1,{"b":"[[[{{{"}]}"#), 3);
        assert_eq!(json_depth(br#""\"[[[""#), 0);
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        assert_eq!(
            MessagesRequest::parse(deep.as_bytes()).unwrap_err(),
            WireError::TooDeep { limit: 64 }
        );
        let ok = format!("{{\"x\":{}{}}}", "[".repeat(60), "]".repeat(60));
        assert!(MessagesRequest::parse(ok.as_bytes()).is_ok());
        // Far deeper than serde_json's own recursion limit: a clear error, no stack trouble.
        let huge = "[".repeat(1_000_000);
        assert!(matches!(
            MessagesRequest::parse(huge.as_bytes()),
            Err(WireError::TooDeep { .. })
        ));
    }

    #[test]
    fn skills_and_tools() {
        let r = MessagesRequest::parse(
            br#"{"tools":[{"type":"web_search_20250305","name":"web_search"},{"name":"calc","input_schema":{}}],
                "container":{"skills":[{"type":"custom","skill_id":"skill_01abc"}]}}"#,
        )
        .unwrap();
        assert_eq!(r.tool_names().collect::<Vec<_>>(), ["web_search", "calc"]);
        assert_eq!(r.tool_types().collect::<Vec<_>>(), ["web_search_20250305"]);
        assert_eq!(r.skill_ids().collect::<Vec<_>>(), ["skill_01abc"]);
    }
}
