//! Redaction of whole JSON documents: Messages responses, content blocks,
//! tool inputs, requests.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{RedactionError, Redactor};
use crate::audit::Finding;

/// Object members that hold opaque data and are never rewritten.
const OPAQUE_KEYS: &[&str] = &[
    "type",
    "id",
    "tool_use_id",
    "signature",
    "encrypted_content",
    "encrypted_index",
    "data",
    "media_type",
    "file_id",
    "name",
    "server_name",
    "page_age",
];

/// Block types whose content arrives whole and is rewritten string by string
/// (opaque members excepted).
const WHOLE_BLOCK_TYPES: &[&str] = &[
    "web_search_tool_result",
    "web_fetch_tool_result",
    "code_execution_tool_result",
    "bash_code_execution_tool_result",
    "text_editor_code_execution_tool_result",
    "tool_search_tool_result",
    "mcp_tool_result",
    "container_upload",
];

/// Rewrites every string inside `value` (not object keys, not
/// [opaque](OPAQUE_KEYS) members), recording findings under `path` (a JSON
/// Pointer prefix such as `response/content/0/input`).
///
/// ```
/// use skillgate::redaction::{Redactor, redact_json_value};
/// let r = Redactor::new();
/// let mut v = serde_json::json!({"to": ["dana.lee@example.com"], "n": 1});
/// let mut findings = Vec::new();
/// redact_json_value(&r, &mut v, "response/content/1/input", &mut findings);
/// assert_eq!(v["to"][0], "[REDACTED:EMAIL_ADDRESS]");
/// assert_eq!(findings[0].path, "response/content/1/input/to/0");
/// ```
pub fn redact_json_value(r: &Redactor, value: &mut Value, path: &str, findings: &mut Vec<Finding>) {
    redact_strings(r, value, path, findings, true);
}

/// [`redact_json_value`], optionally without skipping opaque members (tool
/// inputs are the model's own data whatever their member names).
fn redact_strings(
    r: &Redactor,
    value: &mut Value,
    path: &str,
    findings: &mut Vec<Finding>,
    skip_opaque: bool,
) {
    match value {
        Value::String(s) => {
            let out = r.redact_text(s);
            if !out.findings.is_empty() {
                push_findings(findings, &out.findings, path);
                *s = out.text;
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                redact_strings(r, item, &format!("{path}/{i}"), findings, skip_opaque);
            }
        }
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if skip_opaque && OPAQUE_KEYS.contains(&k.as_str()) {
                    continue;
                }
                let p = format!("{path}/{}", escape_pointer(k));
                redact_strings(r, v, &p, findings, skip_opaque);
            }
        }
        _ => {}
    }
}

pub(crate) fn push_findings(out: &mut Vec<Finding>, f: &BTreeMap<String, u64>, path: &str) {
    for (t, n) in f {
        out.push(Finding::new(t.clone(), *n, path));
    }
}

fn escape_pointer(k: &str) -> String {
    k.replace('~', "~0").replace('/', "~1")
}

/// Rewrites one content block of a response (`path` e.g.
/// `response/content/0`). Thinking blocks are left alone.
pub(crate) fn redact_block(
    r: &Redactor,
    block: &mut Value,
    path: &str,
    findings: &mut Vec<Finding>,
) -> Result<(), RedactionError> {
    let ty = block
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    match ty.as_str() {
        "thinking" | "redacted_thinking" => Ok(()),
        "text" => {
            if let Some(Value::String(s)) = block.get_mut("text") {
                let out = r.redact_text(s);
                push_findings(findings, &out.findings, &format!("{path}/text"));
                *s = out.text;
            }
            if let Some(c) = block.get_mut("citations") {
                redact_json_value(r, c, &format!("{path}/citations"), findings);
            }
            Ok(())
        }
        "tool_use" | "server_tool_use" | "mcp_tool_use" => {
            // First as JSON text, like the streamed `input_json_delta`s, so
            // that member names give context (`"api_key": "…"`); then every
            // string value decoded, so that nothing hides behind a JSON
            // escape (`api_key=\"…\"` inside a file's content, `\u0040`).
            // The placeholders of the first pass are left alone by the second.
            if let Some(input) = block.get_mut("input") {
                let text = serde_json::to_string(input)
                    .map_err(|e| RedactionError::Uninspectable(format!("tool input: {e}")))?;
                let out = r.redact_json_text(&text);
                if !out.findings.is_empty() {
                    *input = serde_json::from_str(&out.text).map_err(|e| {
                        RedactionError::Uninspectable(format!("redacted tool input: {e}"))
                    })?;
                    push_findings(findings, &out.findings, &format!("{path}/input"));
                }
                redact_strings(r, input, &format!("{path}/input"), findings, false);
            }
            Ok(())
        }
        t if WHOLE_BLOCK_TYPES.contains(&t) => {
            redact_json_value(r, block, path, findings);
            Ok(())
        }
        _ => Err(RedactionError::Uninspectable(format!(
            "content block type {ty:?}"
        ))),
    }
}

/// Rewrites a Messages response (`type: message`) in place.
pub(crate) fn redact_message(
    r: &Redactor,
    msg: &mut Value,
    findings: &mut Vec<Finding>,
    best_effort: bool,
) -> Result<(), RedactionError> {
    let Some(Value::Array(content)) = msg.get_mut("content") else {
        return Err(RedactionError::Uninspectable(
            "message without content".into(),
        ));
    };
    for (i, block) in content.iter_mut().enumerate() {
        match redact_block(r, block, &format!("response/content/{i}"), findings) {
            Ok(()) => {}
            Err(e) if best_effort => {
                tracing::warn!(target: "skillgate::redaction", error = %e, "content left uninspected (best effort)");
                findings.push(Finding::new(
                    "UNINSPECTED",
                    1,
                    format!("response/content/{i}"),
                ));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Rewrites the prompt text of a Messages request: `system` (string or
/// blocks), every message's content (text, tool inputs, tool results,
/// documents' text), and tool descriptions.
pub(crate) fn redact_request(r: &Redactor, req: &mut Value, findings: &mut Vec<Finding>) {
    if let Some(sys) = req.get_mut("system") {
        redact_prompt_content(r, sys, "request/system", findings);
    }
    if let Some(Value::Array(msgs)) = req.get_mut("messages") {
        for (i, m) in msgs.iter_mut().enumerate() {
            if let Some(c) = m.get_mut("content") {
                redact_prompt_content(r, c, &format!("request/messages/{i}/content"), findings);
            }
        }
    }
    if let Some(Value::Array(tools)) = req.get_mut("tools") {
        for (i, t) in tools.iter_mut().enumerate() {
            if let Some(d) = t.get_mut("description") {
                redact_json_value(r, d, &format!("request/tools/{i}/description"), findings);
            }
        }
    }
}

fn redact_prompt_content(r: &Redactor, c: &mut Value, path: &str, findings: &mut Vec<Finding>) {
    match c {
        Value::String(_) => redact_json_value(r, c, path, findings),
        Value::Array(blocks) => {
            for (i, b) in blocks.iter_mut().enumerate() {
                let ty = b.get("type").and_then(Value::as_str).unwrap_or_default();
                if matches!(ty, "thinking" | "redacted_thinking" | "image") {
                    continue;
                }
                redact_json_value(r, b, &format!("{path}/{i}"), findings);
            }
        }
        _ => {}
    }
}
