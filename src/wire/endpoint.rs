//! Which requests may enter the gateway at all: method and path shape.
//!
//! Checked first, before identity or policy, so that every later layer — and
//! every policy rule about paths — sees the path the upstream will see. A
//! path the upstream might normalise differently (`/v1/./messages`,
//! `/v1//messages`, `/v1/%6dessages`, `/v1/Messages`, a trailing `/`) is
//! refused instead of forwarded.

use http::Method;

use crate::error::Error;

/// Why a request line was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointError {
    /// Not a path this gateway serves (`404 not_found_error`).
    NotFound,
    /// A method the Anthropic API does not use (`400 invalid_request_error`).
    MethodNotAllowed,
    /// A path that is not in canonical form (`400 invalid_request_error`).
    NonCanonical,
}

impl EndpointError {
    /// The error response to send.
    pub fn into_error(self) -> Error {
        match self {
            EndpointError::NotFound => Error::NotFound,
            EndpointError::MethodNotAllowed => {
                Error::InvalidRequest("method not allowed: use GET, POST or DELETE".into())
            }
            EndpointError::NonCanonical => Error::InvalidRequest(
                "request path is not canonical (dot segments, empty segments, percent-encoding, \
                 trailing slash or upper-case endpoint names are refused)"
                    .into(),
            ),
        }
    }
}

/// Checks `method` and `path` (without query).
///
/// - methods: `GET`, `HEAD`, `POST`, `DELETE` (exactly, upper case);
/// - paths: under `/v1/`, segments of `A–Z a–z 0–9 _ - .` only, none empty,
///   `.` or `..`; segments without digits (endpoint names) in lower case;
/// - `/v1/complete` (the legacy Text Completions API) is not served.
///
/// ```
/// use http::Method;
/// use skillgate::wire::endpoint::{EndpointError, check};
/// assert_eq!(check(&Method::POST, "/v1/messages"), Ok(()));
/// assert_eq!(check(&Method::GET, "/v1/files/file_011CNha8iCJcU1wXNR6q4V8w"), Ok(()));
/// assert_eq!(check(&Method::POST, "/v1/./messages"), Err(EndpointError::NonCanonical));
/// assert_eq!(check(&Method::TRACE, "/v1/messages"), Err(EndpointError::MethodNotAllowed));
/// assert_eq!(check(&Method::GET, "/admin"), Err(EndpointError::NotFound));
/// ```
pub fn check(method: &Method, path: &str) -> Result<(), EndpointError> {
    if !matches!(
        *method,
        Method::GET | Method::HEAD | Method::POST | Method::DELETE
    ) {
        return Err(EndpointError::MethodNotAllowed);
    }
    let Some(rest) = path.strip_prefix("/v1/") else {
        return Err(if path == "/v1" {
            EndpointError::NotFound
        } else {
            canonical_or(path)
        });
    };
    for seg in rest.split('/') {
        let ok_chars = seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if seg.is_empty() || seg == "." || seg == ".." || !ok_chars {
            return Err(EndpointError::NonCanonical);
        }
        if !seg.bytes().any(|b| b.is_ascii_digit()) && seg.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(EndpointError::NonCanonical);
        }
    }
    if rest == "complete" {
        return Err(EndpointError::NotFound);
    }
    Ok(())
}

/// Outside `/v1/`: a non-canonical spelling of it is refused as such, anything else is unknown.
fn canonical_or(path: &str) -> EndpointError {
    let lower = path.to_ascii_lowercase();
    if lower.contains("/v1") || lower.contains('%') || lower.starts_with("//") {
        EndpointError::NonCanonical
    } else {
        EndpointError::NotFound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths_only() {
        let ok = [
            "/v1/messages",
            "/v1/messages/count_tokens",
            "/v1/messages/batches",
            "/v1/messages/batches/msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d/results",
            "/v1/models",
            "/v1/models/claude-sonnet-5",
            "/v1/files/file_011CNha8iCJcU1wXNR6q4V8w/content",
            "/v1/oauth/token",
            "/v1/skills/skill_01AbCd/versions/1759178010641129",
        ];
        for p in ok {
            assert_eq!(check(&Method::POST, p), Ok(()), "{p}");
        }
        let bad = [
            "/v1/./messages",
            "/v1/x/../messages",
            "/v1/%2e/messages",
            "/v1/%6dessages",
            "/v1//messages",
            "/v1/messages/",
            "/v1/messages;x",
            "/v1/Messages",
            "/v1/MESSAGES/batches",
            "/v1/messages%00",
            "/v1/messages\\x",
            "//v1/messages",
            "/V1/messages",
            "/%76%31/messages",
        ];
        for p in bad {
            assert_eq!(
                check(&Method::POST, p),
                Err(EndpointError::NonCanonical),
                "{p}"
            );
        }
        assert_eq!(
            check(&Method::POST, "/v1/complete"),
            Err(EndpointError::NotFound)
        );
        assert_eq!(
            check(&Method::GET, "/admin/secrets"),
            Err(EndpointError::NotFound)
        );
        assert_eq!(check(&Method::GET, "/"), Err(EndpointError::NotFound));
        for m in ["TRACE", "PUT", "PATCH", "OPTIONS", "CONNECT"] {
            let method = Method::from_bytes(m.as_bytes()).unwrap();
            assert_eq!(
                check(&method, "/v1/messages"),
                Err(EndpointError::MethodNotAllowed)
            );
        }
        let lower = Method::from_bytes(b"post").unwrap();
        assert_eq!(
            check(&lower, "/v1/messages"),
            Err(EndpointError::MethodNotAllowed)
        );
    }
}
