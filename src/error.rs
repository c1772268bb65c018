//! Errors, and how each one becomes an Anthropic-shaped HTTP response.
//!
//! Every refusal skillgate makes is a *response*, never a service error, so a
//! stack stays `Infallible` as axum requires. The body follows the Anthropic
//! API's error format (<https://docs.anthropic.com/en/api/errors>):
//!
//! ```json
//! {"type":"error","error":{"type":"authentication_error","message":"…"}}
//! ```
//!
//! Denials carry `x-should-retry: false` so the official SDKs do not retry
//! them. Messages are fixed strings chosen here: no token, secret, matched PII
//! value or upstream detail is ever echoed.
//!
//! ```
//! use skillgate::error::{Error, ErrorType};
//! let response = Error::Unauthenticated.into_response();
//! assert_eq!(response.status(), 401);
//! assert_eq!(response.headers()["x-should-retry"], "false");
//! assert_eq!(Error::Unauthenticated.error_type(), ErrorType::Authentication);
//! ```

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;

use crate::body::Body;

/// The `error.type` values of the Anthropic API, each with its HTTP status.
///
/// Source: <https://docs.anthropic.com/en/api/errors> (HTTP errors table).
///
/// ```
/// use skillgate::error::ErrorType;
/// assert_eq!(ErrorType::RequestTooLarge.status(), 413);
/// assert_eq!(ErrorType::RequestTooLarge.as_str(), "request_too_large");
/// assert_eq!(ErrorType::from_status(529), Some(ErrorType::Overloaded));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorType {
    /// 400 `invalid_request_error`: the request's format or content is wrong.
    InvalidRequest,
    /// 401 `authentication_error`: no valid credential.
    Authentication,
    /// 403 `permission_error`: the credential may not do this.
    Permission,
    /// 404 `not_found_error`: no such resource or endpoint.
    NotFound,
    /// 413 `request_too_large`: the request body exceeds the limit.
    RequestTooLarge,
    /// 429 `rate_limit_error`: a rate limit or budget was hit.
    RateLimit,
    /// 500 `api_error`: an unexpected internal error.
    Api,
    /// 504 `timeout_error`: the request timed out.
    Timeout,
    /// 529 `overloaded_error`: the API is temporarily overloaded.
    Overloaded,
}

impl ErrorType {
    /// Every error type, in status order.
    pub const ALL: [ErrorType; 9] = [
        ErrorType::InvalidRequest,
        ErrorType::Authentication,
        ErrorType::Permission,
        ErrorType::NotFound,
        ErrorType::RequestTooLarge,
        ErrorType::RateLimit,
        ErrorType::Api,
        ErrorType::Timeout,
        ErrorType::Overloaded,
    ];

    /// The wire name, e.g. `"permission_error"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorType::InvalidRequest => "invalid_request_error",
            ErrorType::Authentication => "authentication_error",
            ErrorType::Permission => "permission_error",
            ErrorType::NotFound => "not_found_error",
            ErrorType::RequestTooLarge => "request_too_large",
            ErrorType::RateLimit => "rate_limit_error",
            ErrorType::Api => "api_error",
            ErrorType::Timeout => "timeout_error",
            ErrorType::Overloaded => "overloaded_error",
        }
    }

    /// The HTTP status the Anthropic API uses for this type.
    pub const fn status(self) -> u16 {
        match self {
            ErrorType::InvalidRequest => 400,
            ErrorType::Authentication => 401,
            ErrorType::Permission => 403,
            ErrorType::NotFound => 404,
            ErrorType::RequestTooLarge => 413,
            ErrorType::RateLimit => 429,
            ErrorType::Api => 500,
            ErrorType::Timeout => 504,
            ErrorType::Overloaded => 529,
        }
    }

    /// The type for an HTTP status, if the table has one.
    pub fn from_status(status: u16) -> Option<ErrorType> {
        ErrorType::ALL.into_iter().find(|t| t.status() == status)
    }

    /// Parses a wire name such as `"not_found_error"`.
    pub fn from_wire(name: &str) -> Option<ErrorType> {
        ErrorType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl std::fmt::Display for ErrorType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An Anthropic API error body: `{"type":"error","error":{"type":…,"message":…}}`.
///
/// ```
/// use skillgate::error::{ApiErrorBody, ErrorType};
/// let body = ApiErrorBody::new(ErrorType::NotFound, "Not found");
/// assert_eq!(
///     serde_json::to_string(&body).unwrap(),
///     r#"{"type":"error","error":{"type":"not_found_error","message":"Not found"}}"#
/// );
/// ```
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ApiErrorBody {
    /// Always `"error"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The error object.
    pub error: ApiErrorDetail,
}

/// The `error` member of an [`ApiErrorBody`].
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ApiErrorDetail {
    /// The error type's wire name, e.g. `"authentication_error"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A human-readable message. Never contains secrets or matched values.
    pub message: String,
}

impl ApiErrorBody {
    /// Builds the body for `kind` with `message`.
    pub fn new(kind: ErrorType, message: impl Into<String>) -> Self {
        ApiErrorBody {
            kind: "error".into(),
            error: ApiErrorDetail {
                kind: kind.as_str().into(),
                message: message.into(),
            },
        }
    }

    /// The serialized JSON bytes.
    pub fn to_bytes(&self) -> Bytes {
        // Serializing two strings into JSON cannot fail.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }
}

/// Every way skillgate itself refuses or fails a request.
///
/// Each variant maps to one [`ErrorType`] and a fixed public message through
/// [`Error::into_response`]. The `Display` text is for logs and is equally
/// free of secrets.
///
/// ```
/// use skillgate::error::Error;
/// let r = Error::BodyTooLarge { limit: 1024 }.into_response();
/// assert_eq!(r.status(), 413);
/// ```
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// No credential, or one that did not verify (RFC 6750 §3.1 `invalid_token`).
    #[error("caller is not authenticated")]
    Unauthenticated,
    /// The caller is authenticated but may not do this.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The request body is longer than the configured limit (bytes).
    #[error("request body exceeds {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The request body is not what the endpoint takes (malformed JSON, wrong shape).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The path is not an endpoint this gateway serves.
    #[error("unknown endpoint")]
    NotFound,
    /// The request could not be read from the client.
    #[error("request body could not be read")]
    BodyRead,
    /// The audit store could not record the request, so it is not forwarded.
    #[error("audit store unavailable")]
    AuditUnavailable,
    /// The upstream credential could not be obtained.
    #[error("upstream credential unavailable")]
    CredentialUnavailable,
    /// The upstream API could not be reached.
    #[error("upstream unreachable")]
    UpstreamUnavailable,
    /// The upstream API sent no response headers within the first-byte timeout.
    #[error("upstream timed out")]
    UpstreamTimeout,
    /// The approval store could not hold the request for approval, so it
    /// is not forwarded.
    #[error("approval store unavailable")]
    ApprovalUnavailable,
    /// Anything else that went wrong inside the gateway.
    #[error("internal error")]
    Internal,
}

impl Error {
    /// The Anthropic error type this error is reported as.
    pub fn error_type(&self) -> ErrorType {
        match self {
            Error::Unauthenticated => ErrorType::Authentication,
            Error::PermissionDenied(_) => ErrorType::Permission,
            Error::BodyTooLarge { .. } => ErrorType::RequestTooLarge,
            Error::InvalidRequest(_) | Error::BodyRead => ErrorType::InvalidRequest,
            Error::NotFound => ErrorType::NotFound,
            Error::AuditUnavailable
            | Error::ApprovalUnavailable
            | Error::CredentialUnavailable
            | Error::UpstreamUnavailable
            | Error::Internal => ErrorType::Api,
            Error::UpstreamTimeout => ErrorType::Timeout,
        }
    }

    /// The HTTP status of the response. Mostly the error type's status; the
    /// gateway's own unavailability is `503` and an unreachable upstream `502`.
    pub fn status(&self) -> StatusCode {
        let code = match self {
            Error::AuditUnavailable | Error::ApprovalUnavailable | Error::CredentialUnavailable => {
                503
            }
            Error::UpstreamUnavailable => 502,
            other => other.error_type().status(),
        };
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// Whether the SDKs should retry: `false` for every denial and for bad
    /// input, `true` only for transient gateway-side conditions.
    pub fn should_retry(&self) -> bool {
        matches!(
            self,
            Error::AuditUnavailable
                | Error::ApprovalUnavailable
                | Error::CredentialUnavailable
                | Error::UpstreamUnavailable
                | Error::UpstreamTimeout
        )
    }

    /// The fixed public message. Never includes caller input.
    pub fn public_message(&self) -> String {
        match self {
            Error::Unauthenticated => "invalid or missing machine-identity token".into(),
            Error::PermissionDenied(reason) => reason.clone(),
            Error::BodyTooLarge { limit } => {
                format!("request body exceeds the gateway limit of {limit} bytes")
            }
            Error::InvalidRequest(why) => why.clone(),
            Error::NotFound => "not an endpoint this gateway serves".into(),
            Error::BodyRead => "request body could not be read".into(),
            Error::AuditUnavailable => {
                "the gateway cannot record requests right now; nothing was forwarded".into()
            }
            Error::ApprovalUnavailable => {
                "the gateway cannot hold requests for approval right now; nothing was forwarded"
                    .into()
            }
            Error::CredentialUnavailable => {
                "the gateway has no upstream credential right now".into()
            }
            Error::UpstreamUnavailable => "the upstream API could not be reached".into(),
            Error::UpstreamTimeout => "the upstream API did not answer in time".into(),
            Error::Internal => "internal gateway error".into(),
        }
    }

    /// Renders the Anthropic-shaped error response.
    pub fn into_response(self) -> Response<Body> {
        error_response(
            self.status(),
            self.error_type(),
            &self.public_message(),
            self.should_retry(),
        )
    }
}

/// Builds an Anthropic-shaped error response with an explicit status.
///
/// Sets `content-type: application/json` and `x-should-retry`.
pub fn error_response(
    status: StatusCode,
    kind: ErrorType,
    message: &str,
    should_retry: bool,
) -> Response<Body> {
    let mut res = Response::new(Body::from(ApiErrorBody::new(kind, message).to_bytes()));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        "x-should-retry",
        HeaderValue::from_static(if should_retry { "true" } else { "false" }),
    );
    if status == StatusCode::UNAUTHORIZED {
        // RFC 6750 §3: tell the client which scheme is expected, without detail.
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn table_round_trips() {
        for t in ErrorType::ALL {
            assert_eq!(ErrorType::from_status(t.status()), Some(t));
            assert_eq!(ErrorType::from_wire(t.as_str()), Some(t));
        }
        assert_eq!(ErrorType::from_status(418), None);
    }

    #[tokio::test]
    async fn response_shape() {
        let r = Error::Unauthenticated.into_response();
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["x-should-retry"], "false");
        assert_eq!(r.headers()["content-type"], "application/json");
        let b = r.into_body().collect().await.unwrap().to_bytes();
        let v: ApiErrorBody = serde_json::from_slice(&b).unwrap();
        assert_eq!(v.kind, "error");
        assert_eq!(v.error.kind, "authentication_error");
    }

    #[test]
    fn gateway_unavailability_is_retryable_denials_are_not() {
        assert!(Error::AuditUnavailable.should_retry());
        assert_eq!(Error::AuditUnavailable.status(), 503);
        assert!(!Error::PermissionDenied("x".into()).should_retry());
        assert!(!Error::BodyTooLarge { limit: 1 }.should_retry());
    }
}
