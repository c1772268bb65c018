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

mod audit_store;
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
    Assembled, AuditConfig, AuditStoreKind, ConfigError, GatewayConfig, IdentityConfig,
    JsonlConfig, PolicyConfig, PolicyEngineKind, UpstreamConfig,
};
pub use guard::{ForwardGuard, ForwardGuardLayer};
pub use serve::{
    HEADER_READ_TIMEOUT, HealthLayer, HealthService, MAX_CONNECTIONS, serve, shutdown_signal,
};

use crate::approval::{ApprovalApiLayer, ApprovalLayer, ApprovalService, Approvals};
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
    approval: Option<ApprovalLayer>,
    approval_api: Option<ApprovalApiLayer>,
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
    approvals: Option<Approvals>,
    webhook_callbacks: Option<crate::approval::webhook::WebhookCallbacks>,
    raw_body_key: Option<crate::audit::BodyKey>,
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
            approval: self.approval.clone(),
            redaction: self.redaction.clone(),
        }
    }

    /// The layers in canonical order, for services of any body type — an
    /// axum `Router` or route included — through
    /// [`AnyBodyLayer`](crate::body::AnyBodyLayer): request bodies are turned
    /// into [`Body`], inner response bodies too; nothing is buffered beyond
    /// what [`BufferLayer`] reads. See `docs/embedding.md`.
    ///
    /// ```
    /// # #[cfg(feature = "sqlite")] {
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let g = skillgate::gateway::Gateway::builder()
    ///     .verifier(skillgate::identity::dev::DevIssuer::ephemeral().verifier("skillgate"))
    ///     .audit_store(skillgate::audit::SqliteStore::in_memory().await.unwrap())
    ///     .build()
    ///     .unwrap();
    /// let layer = g.any_body_layer(); // e.g. axum::Router::new().route_layer(layer)
    /// # let _ = layer;
    /// # });
    /// # }
    /// ```
    pub fn any_body_layer(&self) -> crate::body::AnyBodyLayer<GatewayLayer> {
        crate::body::AnyBodyLayer::new(self.layer())
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
        let stack = self.layer().layer(inner);
        match &self.approval_api {
            // Approver requests (`/approvals/…`) are answered before the
            // caller stack; everything else goes through it.
            Some(api) => BoxCloneSyncService::new(api.layer(stack)),
            None => BoxCloneSyncService::new(stack),
        }
    }

    /// The approver API and inbox layer, when approvals are configured (to
    /// put in front of a custom stack built with [`Gateway::layer`]).
    pub fn approval_api(&self) -> Option<&ApprovalApiLayer> {
        self.approval_api.as_ref()
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
    /// Also keep raw bodies in audit records, encrypted under `key`
    /// ([`AuditLayer::raw_body_key`]).
    pub fn raw_body_key(mut self, key: crate::audit::BodyKey) -> Self {
        self.raw_body_key = Some(key);
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

    /// Hold requests the policy marks require-approval until approvers
    /// decide (after policy, before budget), and serve the approver API and
    /// inbox under `/approvals/` from [`Gateway::service`]. Without it, such
    /// requests are refused by the forward guard.
    pub fn approvals(mut self, approvals: Approvals) -> Self {
        self.approvals = Some(approvals);
        self
    }

    /// Accept signed webhook callbacks at `/approvals/callback/…` (with
    /// [`approvals`](Self::approvals)).
    pub fn webhook_callbacks(mut self, cb: crate::approval::webhook::WebhookCallbacks) -> Self {
        self.webhook_callbacks = Some(cb);
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
        let approval = self.approvals.clone().map(ApprovalLayer::new);
        let approval_api = self.approvals.map(|a| {
            let api = ApprovalApiLayer::new(a, verifier.clone());
            match self.webhook_callbacks {
                Some(cb) => api.webhook_callbacks(cb),
                None => api,
            }
        });
        if let Some(k) = self.raw_body_key {
            audit = audit.raw_body_key(k);
        }
        Ok(Gateway {
            approval,
            approval_api,
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
    approval: Option<ApprovalLayer>,
    redaction: Option<RedactionLayer>,
}

/// The service a [`GatewayLayer`] makes around `S`.
pub type GatewayLayerService<S> = AuditService<
    TokenEndpointService<
        IdentityService<BufferService<Either<PolicyService<Approved<S>>, Budgeted<S>>>>,
    >,
>;

/// The budgeted service with the approval layer in front, if configured.
pub type Approved<S> = Either<ApprovalService<Budgeted<S>>, Budgeted<S>>;

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
            Some(p) => Either::Left(p.layer(match &self.approval {
                Some(a) => Either::Left(a.layer(budgeted)),
                None => Either::Right(budgeted),
            })),
            None => Either::Right(budgeted),
        };
        self.audit.layer(
            self.token_endpoint
                .layer(self.identity.layer(self.buffer.layer(decided))),
        )
    }
}
