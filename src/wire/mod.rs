//! The Anthropic wire format: Messages requests, SSE streams, error bodies.
//!
//! - [`sse`]: an incremental Server-Sent Events codec (WHATWG HTML §9.2).
//! - [`stream`]: the Messages streaming events (`message_start` … `message_stop`).
//! - [`messages`]: a read-only view of a Messages request.
//! - error bodies live in [`crate::error`].

pub mod endpoint;
pub mod messages;
pub mod sse;
pub mod stream;
