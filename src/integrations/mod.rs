//! Integrations with other frameworks, each behind its own feature.
//!
//! - [`axum`] (feature `axum`): extractors for the [`Principal`](crate::identity::Principal),
//!   the policy [`Decision`](crate::policy::Decision) and the audit record id
//!   ([`AuditId`](axum::AuditId)) in handlers behind the gateway layers.
//! - The client side (feature `reqwest`) lives in [`client`](crate::client).
//!
//! The body adapters that let the stack wrap services of any body type are
//! [`AnyBody`](crate::body::AnyBody) and [`AnyBodyLayer`](crate::body::AnyBodyLayer);
//! `docs/embedding.md` walks through all three ways in.

#[cfg(feature = "axum")]
pub mod axum;
