#![doc = include_str!("../docs/crate.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod approval;
pub mod audit;
pub mod body;
pub mod budget;
#[cfg(feature = "reqwest")]
pub mod client;
pub mod error;
pub mod gateway;
mod http_client;
pub mod identity;
pub mod integrations;
mod json;
pub mod policy;
pub mod redaction;
pub mod upstream;
pub mod wire;

pub use body::Body;
pub use error::{Error, ErrorType};

/// The code in `docs/embedding.md` compiles (doctests, not run: it needs an IdP and an API key).
#[cfg(all(doctest, feature = "axum", feature = "reqwest", feature = "sqlite"))]
#[doc = include_str!("../docs/embedding.md")]
pub struct EmbeddingGuide;
