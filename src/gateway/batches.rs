//! Keeping Message Batches results behind the gateway.
//!
//! Batch objects carry an absolute `results_url`
//! (<https://docs.anthropic.com/en/api/creating-message-batches>) that the
//! SDKs call directly. Pointing at the upstream, it would send the skill's
//! token around the gateway; so the guard rewrites its origin to the
//! gateway's own.

use bytes::Bytes;
use http::{HeaderMap, header};
use serde_json::Value;

/// Whether `path` is a Message Batches endpoint whose responses may carry `results_url`.
pub(crate) fn is_batches_path(path: &str) -> bool {
    path == "/v1/messages/batches" || path.starts_with("/v1/messages/batches/")
}

/// The gateway's own origin for this request: `public_url` if configured,
/// else `http(s)://{Host}` (scheme from `x-forwarded-proto`, default http).
pub(crate) fn gateway_origin(
    public_url: Option<&str>,
    authority: Option<&str>,
    headers: &HeaderMap,
) -> Option<String> {
    if let Some(u) = public_url {
        return Some(u.trim_end_matches('/').to_owned());
    }
    // HTTP/2 carries the host in `:authority` (the URI), HTTP/1.1 in `Host`.
    let host = match authority {
        Some(a) => a,
        None => headers.get(header::HOST)?.to_str().ok()?,
    };
    // Only a plain host[:port] (DNS name, IPv4, or [IPv6]) is trusted to build a URL.
    let plain = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if host.is_empty() || !plain {
        return None;
    }
    let proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|p| *p == "https" || *p == "http")
        .unwrap_or("http");
    Some(format!("{proto}://{host}"))
}

fn rewrite_value(v: &mut Value, origin: &str) -> bool {
    let mut changed = false;
    if let Some(Value::String(url)) = v.get_mut("results_url") {
        // Keep the path (…/v1/messages/batches/{id}/results), replace the origin.
        if let Some(idx) = url.find("/v1/") {
            let new = format!("{origin}{}", &url[idx..]);
            if *url != new {
                *url = new;
                changed = true;
            }
        }
    }
    if let Some(Value::Array(items)) = v.get_mut("data") {
        for item in items {
            changed |= rewrite_value(item, origin);
        }
    }
    changed
}

/// Rewrites every `results_url` in a batch object or list page to `origin`.
/// `None` if nothing changed or the body is not JSON.
pub(crate) fn rewrite_results_urls(body: &[u8], origin: &str) -> Option<Bytes> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    if rewrite_value(&mut v, origin) {
        serde_json::to_vec(&v).ok().map(Bytes::from)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_object_and_list() {
        let one = br#"{"id":"msgbatch_1","type":"message_batch","results_url":"https://api.anthropic.com/v1/messages/batches/msgbatch_1/results"}"#;
        let out = rewrite_results_urls(one, "http://gw:8080").unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v["results_url"],
            "http://gw:8080/v1/messages/batches/msgbatch_1/results"
        );
        let list = br#"{"data":[{"results_url":"https://api.anthropic.com/v1/messages/batches/a/results"},{"results_url":null}],"has_more":false}"#;
        let v: Value =
            serde_json::from_slice(&rewrite_results_urls(list, "https://gw").unwrap()).unwrap();
        assert_eq!(
            v["data"][0]["results_url"],
            "https://gw/v1/messages/batches/a/results"
        );
        assert!(rewrite_results_urls(br#"{"results_url":null}"#, "https://gw").is_none());
        assert!(rewrite_results_urls(b"not json", "https://gw").is_none());
    }

    #[test]
    fn origin_from_host() {
        let mut h = HeaderMap::new();
        assert_eq!(gateway_origin(None, None, &h), None);
        h.insert(header::HOST, "gw.internal:8080".parse().unwrap());
        assert_eq!(
            gateway_origin(None, None, &h).as_deref(),
            Some("http://gw.internal:8080")
        );
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        assert_eq!(
            gateway_origin(None, None, &h).as_deref(),
            Some("https://gw.internal:8080")
        );
        assert_eq!(
            gateway_origin(None, Some("[::1]:9"), &h).as_deref(),
            Some("https://[::1]:9")
        );
        for evil in [
            "evil.example/x",
            "evil.example?x=",
            "evil#x",
            "a\\b",
            "u@evil",
        ] {
            h.insert(header::HOST, evil.parse().unwrap());
            assert_eq!(gateway_origin(None, None, &h), None, "{evil}");
        }
        assert_eq!(
            gateway_origin(Some("https://ai.corp/"), None, &h).as_deref(),
            Some("https://ai.corp")
        );
    }
}
