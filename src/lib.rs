#![doc = include_str!("../docs/crate.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
pub mod body;
pub mod budget;
pub mod error;
pub mod gateway;
mod http_client;
pub mod identity;
mod json;
pub mod policy;
pub mod redaction;
pub mod upstream;
pub mod wire;

pub use body::Body;
pub use error::{Error, ErrorType};
