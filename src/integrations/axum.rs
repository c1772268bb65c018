//! axum 0.8 extractors for what the skillgate layers learned about a request.
//!
//! Behind [`Gateway::any_body_layer`](crate::gateway::Gateway::any_body_layer),
//! a handler can take:
//!
//! | extractor | from | present when |
//! | --- | --- | --- |
//! | [`Principal`] | the identity layer | always behind the gateway (unauthenticated callers never reach a handler) |
//! | [`Decision`] | the policy layer | a policy is configured |
//! | [`AuditId`] | the audit layer | always behind the gateway |
//! | [`AuditHandle`] | the audit layer (to `record_event`, `add_findings`) | always behind the gateway |
//!
//! Each is also extractable as `Option<…>`, which is `None` when absent.
//! A required extractor whose value is absent means the route is not behind
//! the layer that provides it — a wiring mistake, not a caller's: the
//! request is refused (fail closed) with an Anthropic-shaped
//! `500 api_error` ([`Error::Internal`]) and the reason is logged.
//!
//! ```
//! use axum::{Json, Router, routing::get};
//! use skillgate::identity::Principal;
//! use skillgate::integrations::axum::AuditId;
//!
//! async fn whoami(principal: Principal, audit: AuditId) -> Json<serde_json::Value> {
//!     Json(serde_json::json!({ "subject": principal.subject, "audit_id": audit.0 }))
//! }
//!
//! # #[cfg(feature = "sqlite")] {
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let gateway = skillgate::gateway::Gateway::builder()
//!     .verifier(skillgate::identity::dev::DevIssuer::ephemeral().verifier("skillgate"))
//!     .audit_store(skillgate::audit::SqliteStore::in_memory().await.unwrap())
//!     .build()
//!     .unwrap();
//! let app: Router = Router::new()
//!     .route("/v1/whoami", get(whoami))
//!     .route_layer(gateway.any_body_layer());
//! # let _ = app;
//! # });
//! # }
//! ```

use ::axum::extract::{FromRequestParts, OptionalFromRequestParts};
use ::axum::response::{IntoResponse, Response};
use http::request::Parts;
use uuid::Uuid;

use crate::audit::AuditHandle;
use crate::error::Error;
use crate::identity::Principal;
use crate::policy::Decision;

/// The id (UUID v7) of the audit record of the exchange in progress, as
/// stored by the [`AuditStore`](crate::audit::AuditStore) (`AuditStore::get(id)`).
///
/// ```
/// use skillgate::integrations::axum::AuditId;
/// async fn handler(AuditId(id): AuditId) -> String {
///     id.to_string()
/// }
/// # let _ = handler;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AuditId(pub Uuid);

/// Why an extractor found nothing: the route is not behind the layer that
/// provides the value. Renders as `500 api_error` (Anthropic-shaped, via
/// [`Error::Internal`]); the log line names the missing layer.
///
/// ```
/// use axum::response::IntoResponse;
/// use skillgate::integrations::axum::MissingExtension;
/// let res = MissingExtension("Principal").into_response();
/// assert_eq!(res.status(), 500);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no {0} in the request extensions: is this route behind the skillgate layers?")]
pub struct MissingExtension(pub &'static str);

impl IntoResponse for MissingExtension {
    fn into_response(self) -> Response {
        tracing::error!(error = %self, "skillgate extractor refused the request");
        Error::Internal.into_response().into_response()
    }
}

fn get<T: Clone + Send + Sync + 'static>(parts: &Parts) -> Option<T> {
    parts.extensions.get::<T>().cloned()
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = MissingExtension;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        get::<Principal>(parts).ok_or(MissingExtension("Principal"))
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Principal {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(get::<Principal>(parts))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Decision {
    type Rejection = MissingExtension;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        get::<Decision>(parts).ok_or(MissingExtension("policy Decision"))
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Decision {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(get::<Decision>(parts))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AuditId {
    type Rejection = MissingExtension;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<AuditHandle>()
            .map(|h| AuditId(h.id()))
            .ok_or(MissingExtension("AuditHandle"))
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for AuditId {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<AuditHandle>()
            .map(|h| AuditId(h.id())))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AuditHandle {
    type Rejection = MissingExtension;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        get::<AuditHandle>(parts).ok_or(MissingExtension("AuditHandle"))
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for AuditHandle {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(get::<AuditHandle>(parts))
    }
}
