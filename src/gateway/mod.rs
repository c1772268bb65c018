//! Assembling the stack: [`Gateway`] (typed builder), [`GatewayLayer`] (the
//! layers in canonical order, applicable to any service, an axum `Router`
//! included), [`GatewayConfig`] (the TOML file of the example gateway) and
//! [`serve`] (HTTP/1.1 + HTTP/2 server with graceful shutdown).
//!
//! Request path: **Audit → TokenEndpoint → Identity → Policy → Budget →
//! Redaction → ForwardGuard → inner service** (usually [`Upstream`](crate::upstream::Upstream));
//! the response travels back out the same way. The token endpoint
//! ([`federation`](crate::identity::federation)) answers only
//! `POST /v1/oauth/token` and only when configured; policy and budget run
//! when configured, and so does redaction. The approval layer slots in
//! between policy and budget.
//!
//! ```
//! # #[cfg(feature = "sqlite")] {
//! use skillgate::gateway::Gateway;
//! use skillgate::identity::dev::DevIssuer;
//! use skillgate::upstream::{Credential, StaticCredential, Upstream};
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let dev = DevIssuer::ephemeral();
//! let gateway = Gateway::builder()
//!     .verifier(dev.verifier("skillgate"))
//!     .audit_store(skillgate::audit::SqliteStore::in_memory().await.unwrap())
//!     .build()
//!     .unwrap();
//! let upstream = Upstream::builder("https://api.anthropic.com")
//!     .credential(StaticCredential::new(Credential::api_key("sk-ant-example")))
//!     .build()
//!     .unwrap();
//! let service = gateway.service(upstream); // Service<Request<Body>, Response = Response<Body>, Error = Infallible>
//! # let _ = service;
//! # });
//! # }
//! ```

mod batches;
mod buffer;
mod config;
mod guard;
mod serve;

use std::convert::Infallible;
use std::sync::Arc;

use http::{Request, Response};
use tower::util::{BoxCloneSyncService, Either};
use tower::{Layer, Service};

pub use buffer::{BufferLayer, BufferService, DEFAULT_BODY_READ_TIMEOUT};
pub use config::{
    Assembled, AuditConfig, ConfigError, GatewayConfig, IdentityConfig, PolicyConfig,
    PolicyEngineKind, UpstreamConfig,
};
pub use guard::{ForwardGuard, ForwardGuardLayer};
pub use serve::{
    HEADER_READ_TIMEOUT, HealthLayer, HealthService, MAX_CONNECTIONS, serve, shutdown_signal,
};

use crate::audit::{AuditLayer, AuditService, AuditStore};
use crate::body::Body;
use crate::budget::{BudgetLayer, BudgetService};
use crate::identity::federation::{TokenEndpointLayer, TokenEndpointService};
use crate::identity::{IdentityLayer, IdentityService, TokenVerifier};
use crate::policy::{PolicyLayer, PolicyService};
use crate::redaction::{RedactionLayer, RedactionService};

/// A boxed, cloneable gateway service, as [`Gateway::service`] returns.
pub type GatewayService = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// The assembled layers; see the [module docs](self).
///
/// ```
/// # #[cfg(feature = "sqlite")] {
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use skillgate::gateway::Gateway;
/// let g = Gateway::builder()
///     .verifier(skillgate::identity::dev::DevIssuer::ephemeral().verifier("skillgate"))
///     .audit_store(skillgate::audit::SqliteStore::in_memory().await.unwrap())
///     .max_request_bytes(4 << 20)
///     .build()
///     .unwrap();
/// let layer = g.layer(); // apply to any Service<Request<Body>>
/// # let _ = layer;
/// # });
/// # }
/// ```
#[derive(Clone)]
pub struct Gateway {
    audit: AuditLayer,
    token_endpoint: TokenEndpointLayer,
    identity: IdentityLayer,
    buffer: BufferLayer,
    policy: Option<PolicyLayer>,
    guard: ForwardGuardLayer,
    budget: Option<BudgetLayer>,
    redaction: Option<RedactionLayer>,
}

/// Builder for [`Gateway`].
#[derive(Default)]
pub struct GatewayBuilder {
    verifier: Option<Arc<dyn TokenVerifier>>,
    store: Option<Arc<dyn AuditStore>>,
    instance: Option<String>,
    max_request_bytes: Option<usize>,
    max_capture_bytes: Option<usize>,
    body_read_timeout: Option<std::time::Duration>,
    policy: Option<PolicyLayer>,
    public_url: Option<String>,
    token_endpoint: Option<TokenEndpointLayer>,
    budget: Option<BudgetLayer>,
    redaction: Option<RedactionLayer>,
}

/// What is missing from a [`GatewayBuilder`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildError {
    /// No token verifier: the gateway would not know who is calling.
    #[error("a token verifier is required")]
    NoVerifier,
    /// No audit store: the gateway would forward unrecorded requests.
    #[error("an audit store is required")]
    NoAuditStore,
}

impl Gateway {
    /// Starts a builder.
    pub fn builder() -> GatewayBuilder {
        GatewayBuilder::default()
    }

    /// The layers in canonical order, to wrap any inner service.
    pub fn layer(&self) -> GatewayLayer {
        GatewayLayer {
            audit: self.audit.clone(),
            token_endpoint: self.token_endpoint.clone(),
            identity: self.identity.clone(),
            buffer: self.buffer,
            policy: self.policy.clone(),
            guard: self.guard.clone(),
            budget: self.budget.clone(),
            redaction: self.redaction.clone(),
        }
    }

    /// The whole stack around `inner` (usually an [`Upstream`](crate::upstream::Upstream)), boxed.
    pub fn service<S>(&self, inner: S) -> GatewayService
    where
        S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        BoxCloneSyncService::new(self.layer().layer(inner))
    }

    /// The audit store in use.
    pub fn audit_store(&self) -> &Arc<dyn AuditStore> {
        self.audit.store()
    }
}

impl GatewayBuilder {
    /// How callers are authenticated (required).
    pub fn verifier(mut self, v: impl TokenVerifier) -> Self {
        self.verifier = Some(Arc::new(v));
        self
    }
    /// An already shared verifier.
    pub fn verifier_arc(mut self, v: Arc<dyn TokenVerifier>) -> Self {
        self.verifier = Some(v);
        self
    }
    /// Where exchanges are recorded (required).
    pub fn audit_store(mut self, s: impl AuditStore) -> Self {
        self.store = Some(Arc::new(s));
        self
    }
    /// An already shared store.
    pub fn audit_store_arc(mut self, s: Arc<dyn AuditStore>) -> Self {
        self.store = Some(s);
        self
    }
    /// This instance's name in audit records.
    pub fn instance(mut self, name: impl Into<String>) -> Self {
        self.instance = Some(name.into());
        self
    }
    /// Largest request body accepted, in bytes (default 32 MiB).
    pub fn max_request_bytes(mut self, n: usize) -> Self {
        self.max_request_bytes = Some(n);
        self
    }
    /// Longest time to receive a request body once the caller is
    /// authenticated (default 60 s).
    pub fn body_read_timeout(mut self, t: std::time::Duration) -> Self {
        self.body_read_timeout = Some(t);
        self
    }
    /// Largest response body kept per audit record, in bytes (default 8 MiB).
    pub fn max_capture_bytes(mut self, n: usize) -> Self {
        self.max_capture_bytes = Some(n);
        self
    }
    /// Serves the workload-identity token endpoint (`POST /v1/oauth/token`)
    /// between audit and identity (default: none). Add the matching
    /// [`GatewayTokenVerifier`](crate::identity::federation::GatewayTokenVerifier)
    /// to the verifier so minted tokens are accepted.
    pub fn token_endpoint(mut self, layer: TokenEndpointLayer) -> Self {
        self.token_endpoint = Some(layer);
        self
    }

    /// Decide every request with this policy layer. Without one, every
    /// authenticated caller may use every `/v1/` endpoint (a warning is logged
    /// by the example gateway).
    pub fn policy(mut self, layer: PolicyLayer) -> Self {
        self.policy = Some(layer);
        self
    }

    /// The gateway's external base URL, e.g. `https://ai-gateway.corp`
    /// (default: taken from each request's `Host` header). Used to keep
    /// Message Batches `results_url`s pointing at the gateway.
    pub fn public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = Some(url.into());
        self
    }

    /// Enforce budgets and rate limits with this layer (after policy, before
    /// the forward guard). Without one, nothing is counted.
    pub fn budget(mut self, layer: BudgetLayer) -> Self {
        self.budget = Some(layer);
        self
    }

    /// Mask PII and secrets in responses (and, if the layer says so, in
    /// prompts) with this layer, between the budget layer and the forward
    /// guard. Without one, nothing is redacted.
    pub fn redaction(mut self, layer: RedactionLayer) -> Self {
        self.redaction = Some(layer);
        self
    }

    /// Builds the gateway.
    ///
    /// # Errors
    /// [`BuildError`] naming the missing part.
    pub fn build(self) -> Result<Gateway, BuildError> {
        let verifier = self.verifier.ok_or(BuildError::NoVerifier)?;
        let store = self.store.ok_or(BuildError::NoAuditStore)?;
        let mut audit = AuditLayer::from_arc(store);
        if let Some(i) = self.instance {
            audit = audit.instance(i);
        }
        let mut buffer = BufferLayer::new(
            self.max_request_bytes
                .unwrap_or(crate::audit::DEFAULT_MAX_REQUEST_BYTES),
        );
        if let Some(n) = self.max_request_bytes {
            audit = audit.max_request_bytes(n);
        }
        if let Some(t) = self.body_read_timeout {
            buffer = buffer.read_timeout(t);
        }
        if let Some(n) = self.max_capture_bytes {
            audit = audit.max_capture_bytes(n);
        }
        Ok(Gateway {
            audit,
            token_endpoint: self
                .token_endpoint
                .unwrap_or_else(TokenEndpointLayer::disabled),
            identity: IdentityLayer::from_arc(verifier),
            buffer,
            policy: self.policy,
            guard: match self.public_url {
                Some(u) => ForwardGuardLayer::new().public_url(u),
                None => ForwardGuardLayer::new(),
            },
            budget: self.budget,
            redaction: self.redaction,
        })
    }
}

/// Audit → TokenEndpoint → Identity → Policy (if configured) → Budget (if
/// configured) → Redaction (if configured) → ForwardGuard, as one [`Layer`].
#[derive(Clone)]
pub struct GatewayLayer {
    audit: AuditLayer,
    token_endpoint: TokenEndpointLayer,
    identity: IdentityLayer,
    buffer: BufferLayer,
    policy: Option<PolicyLayer>,
    guard: ForwardGuardLayer,
    budget: Option<BudgetLayer>,
    redaction: Option<RedactionLayer>,
}

/// The service a [`GatewayLayer`] makes around `S`.
pub type GatewayLayerService<S> = AuditService<
    TokenEndpointService<
        IdentityService<BufferService<Either<PolicyService<Budgeted<S>>, Budgeted<S>>>>,
    >,
>;

/// The guarded service with the budget layer in front, if configured.
pub type Budgeted<S> = Either<BudgetService<Redacted<S>>, Redacted<S>>;

/// The guarded service with the redaction layer in front, if configured.
pub type Redacted<S> = Either<RedactionService<ForwardGuard<S>>, ForwardGuard<S>>;

impl<S> Layer<S> for GatewayLayer {
    type Service = GatewayLayerService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        let guarded = self.guard.layer(inner);
        let guarded = match &self.redaction {
            Some(r) => Either::Left(r.layer(guarded)),
            None => Either::Right(guarded),
        };
        let budgeted = match &self.budget {
            Some(b) => Either::Left(b.layer(guarded)),
            None => Either::Right(guarded),
        };
        let decided = match &self.policy {
            Some(p) => Either::Left(p.layer(budgeted)),
            None => Either::Right(budgeted),
        };
        self.audit.layer(
            self.token_endpoint
                .layer(self.identity.layer(self.buffer.layer(decided))),
        )
    }
}
