//! [`GatewayConfig`]: the gateway's TOML configuration, and its assembly into
//! a running stack ([`GatewayConfig::assemble`]).
//!
//! Every field has a default, so an empty file (or none) runs a development
//! gateway: listen on `127.0.0.1:8080`, audit to `./skillgate-audit.db`,
//! trust only the local development issuer. See `docs/configuration.md`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::{BuildError, Gateway, GatewayService};
use crate::audit::AuditStore;
use crate::identity::dev::{DEV_AUDIENCE, DEV_ISSUER, DevIssuer};
use crate::identity::federation::{Federation, FederationConfig};
use crate::identity::{IssuerConfig, IssuerSet};
use crate::upstream::{
    ANTHROPIC_API_URL, CredentialSource, FederatedCredential, FileCredential, StaticCredential,
    Upstream,
};

/// The whole gateway configuration (TOML).
///
/// ```
/// use skillgate::gateway::GatewayConfig;
/// let cfg: GatewayConfig = toml::from_str(r#"
///     listen = "0.0.0.0:8443"
///     [upstream]
///     url = "https://api.anthropic.com"
///     api_key_env = "ANTHROPIC_API_KEY"
///     [identity]
///     issuer = "https://token.actions.githubusercontent.com"
///     audience = "skillgate"
///     groups_claim = "groups"
///     [audit]
///     sqlite = "/var/lib/skillgate/audit.db"
/// "#).unwrap();
/// assert_eq!(cfg.listen.port(), 8443);
/// assert!(!cfg.identity.dev_issuer_enabled());
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address to listen on (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// Longest wait for in-flight exchanges at shutdown, in seconds (default 30).
    pub shutdown_grace_secs: u64,
    /// The gateway's external base URL, e.g. `https://ai-gateway.corp`
    /// (default: each request's `Host`). Message Batches `results_url`s are
    /// rewritten to it so SDKs fetch results through the gateway.
    pub public_url: Option<String>,
    /// Where requests go.
    pub upstream: UpstreamConfig,
    /// Who may call.
    pub identity: IdentityConfig,
    /// Where exchanges are recorded.
    pub audit: AuditConfig,
    /// How requests are decided.
    pub policy: PolicyConfig,
    /// The workload-identity token endpoint (`[federation]`, see
    /// [`FederationConfig`]); off unless rules are configured.
    pub federation: FederationConfig,
    /// Budgets and rate limits (`[budgets]`, see `docs/policy.md` (budgets)).
    pub budgets: crate::budget::BudgetConfig,
    /// Human approval (`[approval]`, see `docs/approvals.md`).
    pub approval: crate::approval::ApprovalConfig,
    /// PII and secret redaction (`[redaction]`, see `docs/redaction.md`); off by default.
    pub redaction: crate::redaction::RedactionConfig,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            shutdown_grace_secs: 30,
            public_url: None,
            upstream: UpstreamConfig::default(),
            identity: IdentityConfig::default(),
            audit: AuditConfig::default(),
            policy: PolicyConfig::default(),
            federation: FederationConfig::default(),
            budgets: crate::budget::BudgetConfig::default(),
            approval: crate::approval::ApprovalConfig::default(),
            redaction: crate::redaction::RedactionConfig::default(),
        }
    }
}

/// `[upstream]`: the Anthropic API and the gateway's own credential.
///
/// The credential is, in order: workload-identity federation when
/// `identity_token_file`, `federation_rule_id` and `organization_id` are set
/// (no static key; see [`FederatedCredential`]), else the key in
/// `api_key_file`, else the key in the environment variable `api_key_env`.
///
/// ```
/// let u = skillgate::gateway::UpstreamConfig::default();
/// assert_eq!(u.url, "https://api.anthropic.com");
/// assert_eq!(u.api_key_env, "ANTHROPIC_API_KEY");
/// assert!(u.identity_token_file.is_none());
///
/// let f: skillgate::gateway::UpstreamConfig = toml::from_str(r#"
///     identity_token_file = "/var/run/secrets/anthropic/token"
///     federation_rule_id = "fdrl_01AbCdEf"
///     organization_id = "00000000-0000-4000-8000-000000000000"
/// "#).unwrap();
/// assert!(f.federated());
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Base URL (default `https://api.anthropic.com`).
    pub url: String,
    /// Environment variable holding the API key (default `ANTHROPIC_API_KEY`).
    pub api_key_env: String,
    /// A file holding the API key instead (re-read when it changes). Wins over `api_key_env`.
    pub api_key_file: Option<PathBuf>,
    /// Longest wait for response headers, in seconds (default 600).
    pub first_byte_timeout_secs: u64,
    /// The gateway's own identity token (a JWT, e.g. a Kubernetes projected
    /// service-account token), re-read for every exchange. With
    /// `federation_rule_id` and `organization_id` it replaces the API key.
    pub identity_token_file: Option<PathBuf>,
    /// The Anthropic federation rule that admits that token (`fdrl_…`).
    pub federation_rule_id: Option<String>,
    /// The Anthropic organization's UUID.
    pub organization_id: Option<String>,
    /// The service account to act as (federation only; optional).
    pub service_account_id: Option<String>,
    /// The workspace to scope the access token to, `wrkspc_…` or `default`
    /// (federation only; optional).
    pub workspace_id: Option<String>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            url: ANTHROPIC_API_URL.into(),
            api_key_env: "ANTHROPIC_API_KEY".into(),
            api_key_file: None,
            first_byte_timeout_secs: 600,
            identity_token_file: None,
            federation_rule_id: None,
            organization_id: None,
            service_account_id: None,
            workspace_id: None,
        }
    }
}

impl UpstreamConfig {
    /// Whether any federation key is set, i.e. the credential is meant to come
    /// from workload-identity federation rather than an API key.
    pub fn federated(&self) -> bool {
        self.identity_token_file.is_some()
            || self.federation_rule_id.is_some()
            || self.organization_id.is_some()
            || self.service_account_id.is_some()
            || self.workspace_id.is_some()
    }
}

/// `[identity]`: the trusted token issuers.
///
/// Each `[[identity.issuers]]` table is one issuer ([`IssuerConfig`]: preset,
/// audiences, algorithms, `typ`, keys, claim mapping, `require`, group
/// rules). The single-issuer keys (`issuer`, `jwks_file`, `jwks_url`,
/// `audience`, `groups_claim`, `algorithms`, `leeway_secs`, `require_typ`)
/// remain as a shorthand for one more entry, listed first. With `issuer`
/// set, keys come from `jwks_file`, else `jwks_url`, else OIDC discovery.
/// Without any issuer, only the development issuer is trusted. See
/// `docs/identity.md`.
///
/// ```
/// use skillgate::gateway::IdentityConfig;
/// let i = IdentityConfig::default();
/// assert!(i.dev_issuer_enabled());
/// assert_eq!(i.audience, "skillgate");
///
/// let i: IdentityConfig = toml::from_str(r#"
///     [[issuers]]
///     preset = "kubernetes"
///     issuer = "https://kubernetes.default.svc.cluster.local"
///     audience = "skillgate"
///     jwks_file = "/etc/skillgate/cluster-jwks.json"
///     group_rules = [{ when = { "kubernetes.io.namespace" = "billing" }, groups = ["billing"] }]
/// "#).unwrap();
/// assert_eq!(i.issuers.len(), 1);
/// assert!(!i.dev_issuer_enabled());
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityConfig {
    /// The issuer identifier (`iss`), e.g. `https://accounts.google.com`.
    pub issuer: Option<String>,
    /// A JWKS file for the issuer.
    pub jwks_file: Option<PathBuf>,
    /// A JWKS URL for the issuer.
    pub jwks_url: Option<String>,
    /// The required audience (default `skillgate`).
    pub audience: String,
    /// Claim path holding groups (default `groups`).
    pub groups_claim: String,
    /// Allowed algorithms (default: all asymmetric ones), e.g. `["RS256", "ES256"]`.
    pub algorithms: Option<Vec<String>>,
    /// Clock-skew leeway in seconds (default 60).
    pub leeway_secs: u64,
    /// Required `typ` header, e.g. `at+jwt` (default: not checked).
    pub require_typ: Option<String>,
    /// Trust the local development issuer (default: only when no `issuer` is set).
    pub dev_issuer: Option<bool>,
    /// The development issuer's key file (default `./skillgate-dev-issuer.json`).
    pub dev_key_file: PathBuf,
    /// How many verified external tokens to remember (default 10,000; 0 = verify every request).
    pub verified_token_cache: usize,
    /// Longest reuse of one cached verification, in seconds (default 300; never past `exp`).
    pub verified_token_cache_secs: u64,
    /// Further issuers, each configured on its own (`[[identity.issuers]]`).
    pub issuers: Vec<IssuerConfig>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            issuer: None,
            jwks_file: None,
            jwks_url: None,
            audience: DEV_AUDIENCE.into(),
            groups_claim: "groups".into(),
            algorithms: None,
            leeway_secs: 60,
            require_typ: None,
            dev_issuer: None,
            dev_key_file: PathBuf::from("./skillgate-dev-issuer.json"),
            verified_token_cache: crate::identity::DEFAULT_CACHE_ENTRIES,
            verified_token_cache_secs: crate::identity::DEFAULT_CACHE_TTL.as_secs(),
            issuers: Vec::new(),
        }
    }
}

impl IdentityConfig {
    /// Whether the development issuer is trusted (default: only when no
    /// other issuer is configured).
    pub fn dev_issuer_enabled(&self) -> bool {
        self.dev_issuer
            .unwrap_or(self.issuer.is_none() && self.issuers.is_empty())
    }

    /// The shorthand keys as one issuer entry, if `issuer` is set.
    pub fn shorthand_issuer(&self) -> Option<IssuerConfig> {
        let issuer = self.issuer.as_ref()?;
        let mut c = IssuerConfig::new(issuer.clone(), [self.audience.clone()]);
        c.jwks_file = self.jwks_file.clone();
        c.jwks_url = self.jwks_url.clone();
        c.groups_claim = Some(vec![self.groups_claim.clone()]);
        c.algorithms = self.algorithms.clone();
        c.leeway_secs = Some(self.leeway_secs);
        c.typ = self.require_typ.clone().map(|t| vec![t]);
        Some(c)
    }
}

/// `[audit]`: the audit store and limits.
///
/// ```
/// let a = skillgate::gateway::AuditConfig::default();
/// assert_eq!(a.max_request_bytes, 32 * 1024 * 1024);
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// SQLite database file (default `./skillgate-audit.db`).
    pub sqlite: PathBuf,
    /// This instance's name in records (default `hostname:pid`).
    pub instance: Option<String>,
    /// Largest request body accepted, in bytes (default 32 MiB).
    pub max_request_bytes: usize,
    /// Largest response body kept per record, in bytes (default 8 MiB).
    pub max_capture_bytes: usize,
    /// `[audit.jsonl]`: when set, records go to rotated JSON-lines files in
    /// this folder instead of the SQLite database (`audit::JsonlStore`).
    pub jsonl: Option<JsonlConfig>,
    /// A file holding a 32-byte AES-256-GCM key (raw, 64 hex digits or
    /// base64): when set, raw bodies (request as received, response as
    /// received from upstream) are kept too, encrypted (`audit::BodyKey`).
    pub raw_body_key_file: Option<PathBuf>,
    /// `sqlite` (default) or `postgres` (crate feature `postgres`).
    pub store: AuditStoreKind,
    /// PostgreSQL URL for `store = "postgres"`.
    pub url: Option<String>,
    /// Environment variable holding the PostgreSQL URL (instead of `url`).
    pub url_env: Option<String>,
    /// Most records per PostgreSQL transaction (default 1024).
    pub batch_max: usize,
    /// Records waiting for the PostgreSQL writer, at most (default 16384).
    pub queue_capacity: usize,
    /// How long a record may wait for an unreachable PostgreSQL before the
    /// gateway refuses requests with 503, in milliseconds (default 5000).
    pub buffer_ms: u64,
    /// PKCS#8 PEM Ed25519 private key that signs chain checkpoints.
    pub signing_key_file: Option<PathBuf>,
    /// Checkpoint after this many chain entries (default 1000).
    pub checkpoint_every: u64,
    /// … or after this many seconds with unsigned entries (default 60).
    pub checkpoint_interval_secs: u64,
    /// Delete exchanges and events older than this many days (default: keep all).
    pub retention_days: Option<u64>,
    /// How often the retention purge runs, in seconds (default 3600).
    pub purge_interval_secs: u64,
}

/// `[audit.jsonl]`: the JSON-lines file store (`docs/audit.md`).
///
/// ```
/// let c: skillgate::gateway::JsonlConfig = toml::from_str(r#"dir = "/var/log/skillgate/audit""#).unwrap();
/// assert_eq!(c.keep_files, 30);
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlConfig {
    /// Folder of the `audit-*.jsonl` files.
    pub dir: PathBuf,
    /// Start a new file past this many bytes (default 64 MiB).
    #[serde(default = "jsonl_max_bytes")]
    pub max_bytes: u64,
    /// Start a new file when the current one is this many seconds old (default 86400).
    #[serde(default = "jsonl_max_age_secs")]
    pub max_age_secs: u64,
    /// Files kept (default 30).
    #[serde(default = "jsonl_keep_files")]
    pub keep_files: usize,
}

fn jsonl_max_bytes() -> u64 {
    crate::audit::JsonlOptions::default().max_bytes
}
fn jsonl_max_age_secs() -> u64 {
    crate::audit::JsonlOptions::default().max_age.as_secs()
}
fn jsonl_keep_files() -> usize {
    crate::audit::JsonlOptions::default().keep_files
}

impl AuditConfig {
    /// Opens the JSON-lines store of `[audit.jsonl]`.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the folder and why it cannot be opened.
    pub(crate) fn open_jsonl_store(
        &self,
        j: &JsonlConfig,
    ) -> Result<Arc<dyn AuditStore>, ConfigError> {
        let opts = crate::audit::JsonlOptions {
            max_bytes: j.max_bytes,
            max_age: std::time::Duration::from_secs(j.max_age_secs),
            keep_files: j.keep_files,
        };
        crate::audit::JsonlStore::open(&j.dir, opts)
            .map(|s| Arc::new(s) as Arc<dyn AuditStore>)
            .map_err(|e| ConfigError::Invalid(format!("audit.jsonl {}: {e}", j.dir.display())))
    }
}

/// Which audit store `[audit] store` names.
///
/// ```
/// use skillgate::gateway::AuditStoreKind;
/// assert_eq!(AuditStoreKind::default(), AuditStoreKind::Sqlite);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditStoreKind {
    /// The embedded SQLite file (`sqlite`).
    #[default]
    Sqlite,
    /// A PostgreSQL database shared by all instances (`url`).
    Postgres,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            sqlite: PathBuf::from("./skillgate-audit.db"),
            instance: None,
            max_request_bytes: crate::audit::DEFAULT_MAX_REQUEST_BYTES,
            max_capture_bytes: crate::audit::DEFAULT_MAX_CAPTURE_BYTES,
            jsonl: None,
            raw_body_key_file: None,
            store: AuditStoreKind::Sqlite,
            url: None,
            url_env: None,
            batch_max: 1024,
            queue_capacity: 16_384,
            buffer_ms: 5000,
            signing_key_file: None,
            checkpoint_every: 1000,
            checkpoint_interval_secs: 60,
            retention_days: None,
            purge_interval_secs: 3600,
        }
    }
}

/// `[policy]`: the policy file and its engine (see `docs/policy.md`, and
/// `docs/policy.md` for `engine = "cedar"`).
///
/// Without a file, every authenticated caller may use every `/v1/` endpoint.
///
/// ```
/// use skillgate::gateway::{PolicyConfig, PolicyEngineKind};
/// let p = PolicyConfig::default();
/// assert!(p.file.is_none());
/// assert_eq!(p.engine, PolicyEngineKind::Rules);
/// assert_eq!(p.watch_interval_secs, 2);
///
/// let c: PolicyConfig = toml::from_str(r#"
///     engine = "cedar"
///     file = "/etc/skillgate/policy.cedar"
///     context = "/etc/skillgate/cedar-context.toml"
/// "#).unwrap();
/// assert_eq!(c.engine, PolicyEngineKind::Cedar);
/// assert!(c.schema.is_none());
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Which engine reads `file` (default `"rules"`).
    pub engine: PolicyEngineKind,
    /// The policy file: TOML rules, or Cedar policies. Reloaded on change
    /// and on SIGHUP; a file that does not compile keeps the previous
    /// policy in force.
    pub file: Option<PathBuf>,
    /// Cedar only: a schema file replacing the built-in skillgate schema.
    pub schema: Option<PathBuf>,
    /// Cedar only: the context file (default time zone, keyword sets, tool
    /// sets); watched like `file`.
    pub context: Option<PathBuf>,
    /// How often the files' modification times are checked, in seconds (default 2; 0 = no watching).
    pub watch_interval_secs: u64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            engine: PolicyEngineKind::Rules,
            file: None,
            schema: None,
            context: None,
            watch_interval_secs: 2,
        }
    }
}

/// `[policy] engine`: the language of the policy file.
///
/// ```
/// use skillgate::gateway::PolicyEngineKind;
/// assert_eq!(PolicyEngineKind::default(), PolicyEngineKind::Rules);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyEngineKind {
    /// The built-in TOML rules engine (`policy::RulesPolicy`).
    #[default]
    Rules,
    /// Cedar policies (`policy::cedar::CedarPolicy`); needs the crate
    /// feature `cedar`, else assembly fails.
    Cedar,
}

impl PolicyConfig {
    /// Loads the configured policy into a handle and, when
    /// `watch_interval_secs > 0`, starts watching its files (call within a
    /// Tokio runtime). `None` without a file.
    pub(crate) fn load(&self) -> Result<Option<crate::policy::PolicyHandle>, ConfigError> {
        use crate::policy::PolicyHandle;
        let Some(path) = &self.file else {
            return Ok(None);
        };
        let invalid = |e: crate::policy::PolicyError| ConfigError::Invalid(format!("policy: {e}"));
        let interval = Duration::from_secs(self.watch_interval_secs);
        let handle = match self.engine {
            PolicyEngineKind::Rules => {
                if self.schema.is_some() || self.context.is_some() {
                    return Err(ConfigError::Invalid(
                        "policy: schema and context are for engine = \"cedar\"".into(),
                    ));
                }
                let handle = PolicyHandle::new(
                    crate::policy::RulesPolicy::from_file(path).map_err(invalid)?,
                );
                if self.watch_interval_secs > 0 {
                    handle.watch_file(path.clone(), interval);
                }
                handle
            }
            #[cfg(feature = "cedar")]
            PolicyEngineKind::Cedar => {
                let mut files = crate::policy::cedar::CedarFiles::new(path.clone());
                files.schema = self.schema.clone();
                files.context = self.context.clone();
                let handle = PolicyHandle::new(files.load().map_err(invalid)?);
                if self.watch_interval_secs > 0 {
                    let watched = files.clone();
                    handle.watch_with(files.paths(), interval, move || watched.load());
                }
                handle
            }
            #[cfg(not(feature = "cedar"))]
            PolicyEngineKind::Cedar => {
                return Err(ConfigError::Invalid(
                    "policy: engine = \"cedar\" needs skillgate built with the `cedar` feature"
                        .into(),
                ));
            }
        };
        Ok(Some(handle))
    }
}

/// Why a configuration could not be loaded or assembled.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The TOML is invalid (the message names line and column).
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// A value is inconsistent or unusable.
    #[error("configuration: {0}")]
    Invalid(String),
}

/// A configured gateway, ready to serve.
pub struct Assembled {
    /// The whole stack around the upstream.
    pub service: GatewayService,
    /// The layers alone, to put around services of your own (an axum
    /// `Router`: [`Gateway::any_body_layer`]); see `docs/embedding.md`.
    pub gateway: Gateway,
    /// The configured upstream, the inner service of [`Assembled::service`].
    pub upstream: Upstream,
    /// The policy in force (when `[policy] file` is set), for reloads.
    pub policy: Option<crate::policy::PolicyHandle>,
    /// The audit store, for queries.
    pub audit: Arc<dyn AuditStore>,
    /// The development issuer, when trusted.
    pub dev_issuer: Option<Arc<DevIssuer>>,
    /// The token endpoint and its revocation store, when `[federation]` has rules.
    pub federation: Option<Federation>,
    /// The approval coordinator, when `[approval] enabled`.
    pub approvals: Option<crate::approval::Approvals>,
}

impl std::fmt::Debug for Assembled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assembled")
            .field(
                "dev_issuer",
                &self.dev_issuer.as_ref().map(|d| d.issuer().to_owned()),
            )
            .finish_non_exhaustive()
    }
}

impl GatewayConfig {
    /// Reads a TOML file.
    ///
    /// # Errors
    /// [`ConfigError::Read`] or [`ConfigError::Parse`].
    pub fn from_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: shown,
            message: e.to_string(),
        })
    }

    /// The development issuer of this configuration, loading or creating its key file.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] if the key file cannot be read or written.
    pub fn dev_issuer(&self) -> Result<DevIssuer, ConfigError> {
        DevIssuer::load_or_create(&self.identity.dev_key_file, DEV_ISSUER)
            .map_err(|e| ConfigError::Invalid(e.to_string()))
    }

    /// The token verifier this configuration describes.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for an inconsistent identity section.
    pub fn verifier(&self) -> Result<(IssuerSet, Option<Arc<DevIssuer>>), ConfigError> {
        let id = &self.identity;
        if id.issuer.is_none() && (id.jwks_file.is_some() || id.jwks_url.is_some()) {
            return Err(ConfigError::Invalid(
                "identity.jwks_file / jwks_url need identity.issuer (tokens are checked against it)".into(),
            ));
        }
        let mut entries: Vec<(String, IssuerConfig)> = Vec::new();
        if let Some(c) = id.shorthand_issuer() {
            entries.push(("identity".into(), c));
        }
        for (i, c) in id.issuers.iter().enumerate() {
            let what = c
                .effective_issuer()
                .map(str::to_owned)
                .or_else(|| c.preset.map(|p| format!("preset {p}")))
                .unwrap_or_default();
            entries.push((format!("identity.issuers[{i}] ({what})"), c.clone()));
        }
        let mut set = IssuerSet::new();
        // Every accepted `iss` routes to exactly one verifier.
        let mut seen: Vec<(String, String)> = Vec::new();
        let mut claim = |iss: &str, place: &str| -> Result<(), ConfigError> {
            if let Some((_, first)) = seen.iter().find(|(i, _)| i == iss) {
                return Err(ConfigError::Invalid(format!(
                    "{place}: issuer {iss:?} is already configured by {first}; \
                     one issuer has one entry (list several audiences there)"
                )));
            }
            seen.push((iss.to_owned(), place.to_owned()));
            Ok(())
        };
        for (place, c) in &entries {
            let v = c
                .verifier()
                .map_err(|e| ConfigError::Invalid(format!("{place}: {e}")))?;
            for iss in v.accepted_issuers() {
                claim(iss, place)?;
            }
            if id.verified_token_cache == 0 {
                set = set.with_jwt(v);
            } else {
                // One cache per issuer: a busy skill pays one signature check
                // per token, not per request. Gateway-minted tokens are not
                // cached, so their revocation takes effect at once.
                let issuers: Vec<String> = v.accepted_issuers().map(str::to_owned).collect();
                let cached = Arc::new(
                    crate::identity::CachingVerifier::new(v)
                        .max_entries(id.verified_token_cache)
                        .max_ttl(Duration::from_secs(id.verified_token_cache_secs)),
                );
                for iss in issuers {
                    set = set.with(iss, cached.clone());
                }
            }
        }
        let dev = if id.dev_issuer_enabled() {
            let dev = Arc::new(self.dev_issuer()?);
            claim(dev.issuer(), "identity.dev_issuer")?;
            set = set.with(dev.issuer().to_owned(), dev.verifier(&id.audience));
            Some(dev)
        } else {
            None
        };
        if set.issuers().next().is_none() {
            return Err(ConfigError::Invalid(
                "no trusted issuer: set identity.issuer, add [[identity.issuers]], or enable the dev issuer".into(),
            ));
        }
        Ok((set, dev))
    }

    /// The upstream credential source: [`FederatedCredential`] when the
    /// federation keys are set, else `api_key_file` if set, else `api_key_env`.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] if the environment variable is unset, if the
    /// federation keys are incomplete, or if they are set together with
    /// `api_key_file` (one credential, chosen on purpose).
    pub fn credential(&self) -> Result<Arc<dyn CredentialSource>, ConfigError> {
        let u = &self.upstream;
        if u.federated() {
            if u.api_key_file.is_some() {
                return Err(ConfigError::Invalid(
                    "upstream: set either api_key_file or the federation keys \
                     (identity_token_file, federation_rule_id, organization_id), not both"
                        .into(),
                ));
            }
            let mut b = FederatedCredential::builder(u.url.clone());
            if let Some(f) = &u.identity_token_file {
                b = b.identity_token_file(f.clone());
            }
            if let Some(id) = &u.federation_rule_id {
                b = b.federation_rule_id(id.clone());
            }
            if let Some(id) = &u.organization_id {
                b = b.organization_id(id.clone());
            }
            if let Some(id) = &u.service_account_id {
                b = b.service_account_id(id.clone());
            }
            if let Some(id) = &u.workspace_id {
                b = b.workspace_id(id.clone());
            }
            return b
                .build()
                .map(|c| Arc::new(c) as Arc<dyn CredentialSource>)
                .map_err(|e| ConfigError::Invalid(format!("upstream federation: {e}")));
        }
        match &u.api_key_file {
            Some(f) => Ok(Arc::new(FileCredential::new(f.clone()))),
            None => StaticCredential::from_env(&self.upstream.api_key_env)
                .map(|c| Arc::new(c) as Arc<dyn CredentialSource>)
                .map_err(|e| ConfigError::Invalid(e.to_string())),
        }
    }

    /// Builds the whole stack: verifier, audit store, upstream.
    ///
    /// # Errors
    /// [`ConfigError`] naming the section at fault.
    #[cfg(feature = "sqlite")]
    pub async fn assemble(&self) -> Result<Assembled, ConfigError> {
        let store = self.audit.open_store().await?;
        self.assemble_with_store(store).await
    }

    /// Builds the whole stack with an audit store of the caller's choosing.
    ///
    /// # Errors
    /// [`ConfigError`] naming the section at fault.
    pub async fn assemble_with_store(
        &self,
        store: Arc<dyn AuditStore>,
    ) -> Result<Assembled, ConfigError> {
        let (verifier, dev_issuer) = self.verifier()?;
        let federation = self
            .federation
            .build(&verifier)
            .await
            .map_err(|e| ConfigError::Invalid(format!("federation: {e}")))?;
        let verifier = match &federation {
            Some(f) => f.extend(verifier),
            None => verifier,
        };
        let upstream = Upstream::builder(self.upstream.url.clone())
            .credential_arc(self.credential()?)
            .first_byte_timeout(Duration::from_secs(self.upstream.first_byte_timeout_secs))
            .build()
            .map_err(|e| ConfigError::Invalid(format!("upstream: {e}")))?;
        let mut b = Gateway::builder()
            .verifier(verifier)
            .audit_store_arc(store.clone())
            .max_request_bytes(self.audit.max_request_bytes)
            .max_capture_bytes(self.audit.max_capture_bytes);
        if let Some(i) = &self.audit.instance {
            b = b.instance(i.clone());
        }
        if let Some(f) = &self.audit.raw_body_key_file {
            let key = crate::audit::BodyKey::from_file(f).map_err(|e| {
                ConfigError::Invalid(format!("audit.raw_body_key_file {}: {e}", f.display()))
            })?;
            b = b.raw_body_key(key);
        }
        if let Some(u) = &self.public_url {
            b = b.public_url(u.clone());
        }
        let policy = self.policy.load()?;
        if let Some(handle) = &policy {
            b = b.policy(crate::policy::PolicyLayer::from_handle(handle.clone()));
        }
        if let Some(f) = &federation {
            b = b.token_endpoint(f.layer());
        }
        if let Some(layer) = crate::budget::BudgetLayer::from_config(&self.budgets)
            .map_err(|e| ConfigError::Invalid(format!("budgets: {e}")))?
        {
            b = b.budget(layer);
        }
        let approvals = self
            .approval
            .build(
                store.clone(),
                self.audit.instance.as_deref(),
                self.public_url.as_deref(),
            )
            .await
            .map_err(ConfigError::Invalid)?;
        let approvals = approvals.map(|(a, callbacks)| {
            b = std::mem::take(&mut b).approvals(a.clone());
            if let Some(cb) = callbacks {
                b = std::mem::take(&mut b).webhook_callbacks(cb);
            }
            a
        });
        if let Some(layer) = crate::redaction::RedactionLayer::from_config(&self.redaction)
            .map_err(|e| ConfigError::Invalid(format!("redaction: {e}")))?
        {
            b = b.redaction(layer);
        }
        let gateway = b
            .build()
            .map_err(|e: BuildError| ConfigError::Invalid(e.to_string()))?;
        Ok(Assembled {
            service: gateway.service(upstream.clone()),
            gateway,
            upstream,
            policy,
            audit: store,
            dev_issuer,
            federation,
            approvals,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_errors() {
        let e = toml::from_str::<GatewayConfig>("[identity]\nissuer_url = \"x\"").unwrap_err();
        assert!(e.to_string().contains("issuer_url"));
    }

    #[test]
    fn jwks_without_issuer_is_refused() {
        let mut c = GatewayConfig::default();
        c.identity.jwks_file = Some("/x".into());
        c.identity.dev_issuer = Some(false);
        assert!(matches!(c.verifier(), Err(ConfigError::Invalid(_))));
    }

    #[test]
    fn hmac_algorithms_are_refused() {
        let mut c = GatewayConfig::default();
        c.identity.issuer = Some("https://idp".into());
        c.identity.algorithms = Some(vec!["HS256".into()]);
        assert!(matches!(c.verifier(), Err(ConfigError::Invalid(m)) if m.contains("HS256")));
    }

    #[test]
    fn upstream_federation_keys_select_the_federated_source() {
        let mut c = GatewayConfig::default();
        c.upstream.url = "https://api.anthropic.com".into();
        c.upstream.api_key_env = "SKILLGATE_TEST_SURELY_UNSET_VAR".into();
        // No key anywhere and no federation: refused.
        assert!(c.credential().is_err());
        c.upstream.identity_token_file = Some("/var/run/secrets/anthropic/token".into());
        c.upstream.federation_rule_id = Some("fdrl_1".into());
        // Incomplete federation: refused, naming what is missing.
        assert!(
            matches!(c.credential(), Err(ConfigError::Invalid(m)) if m.contains("organization_id"))
        );
        c.upstream.organization_id = Some("00000000-0000-4000-8000-000000000000".into());
        assert!(c.credential().is_ok());
        // Both an API key file and federation: refused.
        c.upstream.api_key_file = Some("/run/secrets/key".into());
        assert!(matches!(c.credential(), Err(ConfigError::Invalid(m)) if m.contains("not both")));
        c.upstream.api_key_file = None;
        // Plain http to a remote host would carry the identity token in clear.
        c.upstream.url = "http://api.example.com".into();
        assert!(matches!(c.credential(), Err(ConfigError::Invalid(m)) if m.contains("https")));
        // A stray optional key alone still means federation, which is incomplete.
        let mut c = GatewayConfig::default();
        c.upstream.workspace_id = Some("default".into());
        assert!(matches!(c.credential(), Err(ConfigError::Invalid(m)) if m.contains("federation")));
    }

    #[test]
    fn real_issuer_turns_dev_issuer_off() {
        let mut c = GatewayConfig::default();
        c.identity.issuer = Some("https://idp".into());
        let (set, dev) = c.verifier().unwrap();
        assert!(dev.is_none());
        assert_eq!(set.issuers().collect::<Vec<_>>(), ["https://idp"]);
    }
}
