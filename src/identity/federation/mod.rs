//! Workload-identity federation: the gateway's own token endpoint.
//!
//! The official SDKs (Python `anthropic` 2.x, npm `@anthropic-ai/sdk` 1.x)
//! configured with `ANTHROPIC_IDENTITY_TOKEN_FILE` (or
//! `ANTHROPIC_IDENTITY_TOKEN`), `ANTHROPIC_FEDERATION_RULE_ID` and
//! `ANTHROPIC_ORGANIZATION_ID` POST an RFC 7523 jwt-bearer exchange to
//! `{base_url}/v1/oauth/token` and then call the API with
//! `Authorization: Bearer <access_token>`. With the base URL pointing at the
//! gateway, this module answers that exchange, so a workload gets a gateway
//! identity with environment variables only.
//!
//! - [`TokenEndpointLayer`]: serves `POST /v1/oauth/token` (JSON as the SDKs
//!   send it, or an RFC 6749 form), passes every other request on. It sits
//!   between the [`AuditLayer`](crate::audit::AuditLayer) and the
//!   [`IdentityLayer`](crate::identity::IdentityLayer); the audit record of
//!   an exchange keeps the parameters with the assertion replaced by a
//!   fingerprint, and the response with the token replaced by its `jti`.
//! - [`TokenEndpoint`]: verifies the assertion with the *external* issuers
//!   (never the gateway's own tokens), matches the [`FederationRule`] named
//!   by `federation_rule_id` (allowed issuers, [`ClaimCondition`]s, groups
//!   granted, longest lifetime) and mints a token. Refusals are RFC 6749
//!   §5.2 bodies ([`OAuthErrorCode`]) that never echo the request.
//! - [`GatewayTokenIssuer`]: signs RFC 9068 access tokens (`typ: at+jwt`,
//!   EdDSA, `kid`) with a key ring that rotates; [`GatewayTokenVerifier`]
//!   verifies them for the identity layer and checks revocation every time.
//! - [`RevocationStore`]: revocation by token id and by principal;
//!   [`MemoryRevocationStore`] for one instance, `PostgresRevocationStore`
//!   (crate feature `postgres`) shared by all instances.
//! - [`FederationConfig`] / [`Federation`]: the `[federation]` section of the
//!   gateway configuration and what it builds.
//!
//! A successful exchange answers (RFC 6749 §5.1, `cache-control: no-store`):
//!
//! ```json
//! {"access_token": "<gateway JWT>", "token_type": "Bearer", "expires_in": 600}
//! ```
//!
//! ```
//! use std::convert::Infallible;
//! use std::sync::Arc;
//! use http::{Request, Response};
//! use http_body_util::BodyExt;
//! use skillgate::Body;
//! use skillgate::identity::{IdentityLayer, IssuerSet, Principal};
//! use skillgate::identity::dev::{DevIssuer, MintOptions};
//! use skillgate::identity::federation::{Federation, FederationRule, GatewayTokenIssuer, MemoryRevocationStore, TokenEndpoint};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let idp = DevIssuer::ephemeral(); // the workload's identity provider
//! let external = IssuerSet::new().with(idp.issuer(), idp.verifier("skillgate"));
//! let gw = Arc::new(GatewayTokenIssuer::ephemeral("urn:skillgate:gateway", "urn:skillgate:gateway").unwrap());
//! let endpoint = TokenEndpoint::builder(gw, external.clone())
//!     .rule(FederationRule::new("fdrl_ci").issuer(idp.issuer()).group("ci"))
//!     .build()
//!     .unwrap();
//! let fed = Federation::new(Arc::new(endpoint), Arc::new(MemoryRevocationStore::new()));
//! let svc = ServiceBuilder::new()
//!     .layer(fed.layer())
//!     .layer(IdentityLayer::new(fed.extend(external)))
//!     .service(service_fn(|req: Request<Body>| async move {
//!         let p = req.extensions().get::<Principal>().unwrap();
//!         Ok::<_, Infallible>(Response::new(Body::from(p.groups.join(","))))
//!     }));
//!
//! // 1. The exchange, as the SDKs send it.
//! let body = serde_json::json!({
//!     "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
//!     "assertion": idp.mint(&MintOptions::new("skill-a")).unwrap(),
//!     "federation_rule_id": "fdrl_ci",
//!     "organization_id": "org-1",
//! });
//! let res = svc.clone().oneshot(
//!     Request::post("/v1/oauth/token")
//!         .header("content-type", "application/json")
//!         .body(Body::from(body.to_string()))
//!         .unwrap(),
//! ).await.unwrap();
//! assert_eq!(res.status(), 200);
//! let json: serde_json::Value = serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
//! let token = json["access_token"].as_str().unwrap();
//!
//! // 2. The API call with the gateway token.
//! let res = svc.oneshot(
//!     Request::post("/v1/messages").header("authorization", format!("Bearer {token}")).body(Body::empty()).unwrap(),
//! ).await.unwrap();
//! assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "ci");
//! # });
//! ```

mod config;
mod endpoint;
mod issuer;
mod keys;
mod layer;
#[cfg(feature = "postgres")]
mod postgres;
mod revocation;
mod rule;

pub use config::{
    Federation, FederationConfig, FederationError, RevocationBackend, RevocationConfig,
};
pub use endpoint::{
    DEFAULT_MAX_TOKEN_TTL, DEFAULT_TOKEN_TTL, EndpointConfigError, Exchange, FEDERATION_BETA,
    GRANT_TYPE_JWT_BEARER, MAX_TOKEN_REQUEST_BYTES, OAUTH_BETA, OAuthErrorCode, TOKEN_PATH,
    TokenEndpoint, TokenEndpointBuilder, TokenError, TokenRequest, fingerprint,
};
pub use issuer::{
    CLAIM_FEDERATION_RULE, CLAIM_ORGANIZATION, CLAIM_ORIGINAL_ISSUER, CLAIM_SERVICE_ACCOUNT,
    CLAIM_WORKSPACE, DEFAULT_GATEWAY_ISSUER, GatewayTokenIssuer, GatewayTokenVerifier, IssuedToken,
    IssuerError, TokenGrant,
};
pub use keys::MAX_PREVIOUS_KEYS;
pub use layer::{TokenEndpointLayer, TokenEndpointService};
#[cfg(feature = "postgres")]
pub use postgres::{DEFAULT_TABLE_PREFIX, PostgresRevocationStore};
pub use revocation::{MemoryRevocationStore, RevocationError, RevocationQuery, RevocationStore};
pub use rule::{ClaimCondition, FederationRule, RuleMismatch};
