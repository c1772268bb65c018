//! Machine identity: verify the caller's token, attach a [`Principal`], strip
//! every caller credential.
//!
//! - [`IdentityLayer`] / [`IdentityService`]: the middleware.
//! - [`TokenVerifier`]: the plug-in trait; [`JwtVerifier`] verifies OIDC/OAuth
//!   JWTs from any standards-compliant IdP; [`IssuerSet`] routes by issuer.
//! - [`IssuerConfig`] / [`Preset`]: one issuer's configuration, with claim
//!   layouts of real IdPs (Entra ID, Okta, Google, Kubernetes, GitHub
//!   Actions, SPIFFE); [`ClaimMapping`], [`Conditions`] and [`GroupRule`]
//!   turn claims into a principal and groups (`docs/identity.md`).
//! - [`CachingVerifier`]: remembers verified tokens (bounded, honours `exp`).
//! - [`dev::DevIssuer`]: a local issuer for trying things out.
//! - [`federation`]: the gateway's own token endpoint (`POST /v1/oauth/token`)
//!   for the SDKs' workload-identity federation, and the gateway tokens it mints.
//!
//! The token is read from `Authorization: Bearer …` (RFC 6750 §2.1) or
//! `x-api-key` (what the Anthropic SDKs send for `api_key=`). On success the
//! [`Principal`] goes into the request extensions; `authorization`,
//! `x-api-key`, `cookie` and `proxy-authorization` are removed so no caller
//! credential can travel further. On failure the caller gets
//! `401 authentication_error` with `x-should-retry: false` and a message that
//! says nothing about why.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use skillgate::{Body, identity::{IdentityLayer, Principal, dev::{DevIssuer, MintOptions}}};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let dev = DevIssuer::ephemeral();
//! let svc = ServiceBuilder::new()
//!     .layer(IdentityLayer::new(dev.verifier("skillgate")))
//!     .service(service_fn(|req: Request<Body>| async move {
//!         let who = req.extensions().get::<Principal>().unwrap().subject.clone();
//!         assert!(req.headers().get("authorization").is_none());
//!         Ok::<_, Infallible>(Response::new(Body::from(who)))
//!     }));
//!
//! let token = dev.mint(&MintOptions::new("skill-a")).unwrap();
//! let req = Request::post("/v1/messages")
//!     .header("authorization", format!("Bearer {token}"))
//!     .body(Body::empty())
//!     .unwrap();
//! assert_eq!(svc.clone().oneshot(req).await.unwrap().status(), 200);
//!
//! let anonymous = Request::post("/v1/messages").body(Body::empty()).unwrap();
//! assert_eq!(svc.oneshot(anonymous).await.unwrap().status(), 401);
//! # });
//! ```

mod cache;
pub mod dev;
pub mod federation;
mod jwks;
mod jwt;
mod layer;
mod mapping;
mod presets;
mod principal;
mod strict;
mod verifier;

pub use cache::{CachingVerifier, DEFAULT_CACHE_ENTRIES, DEFAULT_CACHE_TTL};
pub use jwks::KeySource;
pub use jwt::{
    ConfigError, JwtVerifier, JwtVerifierBuilder, MAX_TOKEN_BYTES, SUPPORTED_ALGORITHMS,
};
pub use layer::{CREDENTIAL_HEADERS, IdentityLayer, IdentityService, ResponseFuture};
pub use mapping::{ClaimMapping, Conditions, Glob, GroupRule, MappingError, TypRule, ValuePattern};
pub use presets::{GITHUB_ACTIONS_ISSUER, GOOGLE_ISSUER, IssuerConfig, IssuerConfigError, Preset};
pub use principal::Principal;
pub use verifier::{AuthError, IssuerSet, TokenVerifier};

/// Re-exported so callers can name algorithms without depending on `jsonwebtoken`.
pub use jsonwebtoken::Algorithm;
