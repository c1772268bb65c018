//! Real-parts test harness shared by the integration tests: each test file
//! does `mod support;`.
//!
//! - [`gateway`]: a gateway assembled like the example, on a free port.
//! - [`stand_in`]: local stand-in for the Anthropic API (the only fake).
//! - [`keys`]: fresh signing keys (RSA, P-256, P-384, Ed25519) and a raw JWS signer.
//! - [`oidc`]: a real OpenID Connect provider (`oidc-provider` on Node).
//! - [`python`]: the official Anthropic Python SDK as a client.
//! - [`sdk_env`]: the official Python and TypeScript SDKs configured only by
//!   environment variables (workload-identity federation).
//!
//! Set up the Node and Python parts once with `.ci/setup`.

#![allow(dead_code)]

pub mod gateway;
pub mod keys;
pub mod oidc;
pub mod python;
pub mod sdk_env;
pub mod stand_in;

/// The repository's top folder.
pub fn repo_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
