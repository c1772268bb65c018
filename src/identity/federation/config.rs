//! `[federation]` of the gateway's TOML configuration ([`FederationConfig`])
//! and the running federation it builds ([`Federation`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::endpoint::{DEFAULT_MAX_TOKEN_TTL, DEFAULT_TOKEN_TTL, TokenEndpoint};
use super::issuer::{DEFAULT_GATEWAY_ISSUER, GatewayTokenIssuer, GatewayTokenVerifier};
use super::keys::now;
use super::layer::TokenEndpointLayer;
use super::revocation::{MemoryRevocationStore, RevocationError, RevocationStore};
use super::rule::FederationRule;
use crate::identity::IssuerSet;

/// `[federation]`: the gateway's own token endpoint. Enabled when at least
/// one rule is configured.
///
/// ```
/// use skillgate::identity::federation::FederationConfig;
/// let f: FederationConfig = toml::from_str(r#"
///     key_file = "/var/lib/skillgate/federation-keys.json"
///     token_ttl_secs = 600
///     max_token_ttl_secs = 3600
///     [revocation]
///     store = "postgres"
///     url_env = "SKILLGATE_DATABASE_URL"
///     [[rules]]
///     id = "fdrl_billing_ci"
///     issuers = ["https://token.actions.githubusercontent.com"]
///     groups = ["billing-ci"]
///     max_ttl_secs = 900
///     [rules.conditions]
///     repository = "acme/billing"
///     ref = { glob = "refs/heads/*" }
/// "#).unwrap();
/// assert!(f.enabled());
/// assert_eq!(f.rules[0].groups, ["billing-ci"]);
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FederationConfig {
    /// `iss` of minted tokens (default `urn:skillgate:gateway`).
    pub issuer: String,
    /// `aud` of minted tokens (default: the issuer).
    pub audience: Option<String>,
    /// The signing key ring, created on first start (default
    /// `./skillgate-federation-keys.json`). Every instance must share it.
    pub key_file: PathBuf,
    /// Lifetime of minted tokens in seconds (default 600).
    pub token_ttl_secs: u64,
    /// Longest lifetime any rule may give, in seconds (default 3600).
    pub max_token_ttl_secs: u64,
    /// When set, requests must send this `organization_id`.
    pub organization_id: Option<String>,
    /// Where revocations are kept.
    pub revocation: RevocationConfig,
    /// The federation rules (`[[federation.rules]]`).
    pub rules: Vec<FederationRule>,
}

impl Default for FederationConfig {
    fn default() -> Self {
        FederationConfig {
            issuer: DEFAULT_GATEWAY_ISSUER.into(),
            audience: None,
            key_file: PathBuf::from("./skillgate-federation-keys.json"),
            token_ttl_secs: DEFAULT_TOKEN_TTL.as_secs(),
            max_token_ttl_secs: DEFAULT_MAX_TOKEN_TTL.as_secs(),
            organization_id: None,
            revocation: RevocationConfig::default(),
            rules: Vec::new(),
        }
    }
}

/// Which revocation store backs the federation.
///
/// ```
/// use skillgate::identity::federation::RevocationBackend;
/// assert_eq!(RevocationBackend::default(), RevocationBackend::Memory);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RevocationBackend {
    /// In this process only: right for a single instance.
    #[default]
    Memory,
    /// A PostgreSQL database shared by all instances (crate feature `postgres`).
    Postgres,
}

/// `[federation.revocation]`.
///
/// ```
/// let r = skillgate::identity::federation::RevocationConfig::default();
/// assert_eq!(r.table_prefix, "skillgate_");
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RevocationConfig {
    /// `memory` (default) or `postgres`.
    pub store: RevocationBackend,
    /// The PostgreSQL URL. Prefer `url_env` when it holds a password.
    pub url: Option<String>,
    /// An environment variable holding the PostgreSQL URL.
    pub url_env: Option<String>,
    /// Prefix of the table names (default `skillgate_`).
    pub table_prefix: String,
}

impl Default for RevocationConfig {
    fn default() -> Self {
        RevocationConfig {
            store: RevocationBackend::Memory,
            url: None,
            url_env: None,
            table_prefix: "skillgate_".into(),
        }
    }
}

/// Why the federation could not be built.
///
/// ```
/// use skillgate::identity::federation::FederationError;
/// let e = FederationError::Config("no rules".into());
/// assert!(e.to_string().contains("no rules"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FederationError {
    /// An inconsistent setting.
    #[error("{0}")]
    Config(String),
    /// The key ring could not be loaded or created.
    #[error(transparent)]
    Keys(#[from] super::IssuerError),
    /// The revocation store could not be opened.
    #[error(transparent)]
    Revocation(#[from] RevocationError),
}

impl FederationConfig {
    /// Whether the token endpoint is on (at least one rule).
    pub fn enabled(&self) -> bool {
        !self.rules.is_empty()
    }

    /// Builds the federation: loads or creates the key ring, opens the
    /// revocation store and builds the endpoint, with `external` (the
    /// configured external issuers) verifying assertions. `None` when
    /// disabled.
    ///
    /// # Errors
    /// [`FederationError`]: the gateway issuer collides with an external
    /// one, a rule names an issuer that is not configured, an unusable
    /// lifetime or rule, a key file or revocation store problem.
    pub async fn build(&self, external: &IssuerSet) -> Result<Option<Federation>, FederationError> {
        if !self.enabled() {
            return Ok(None);
        }
        let cfg = |m: String| FederationError::Config(m);
        if external.issuers().any(|i| i == self.issuer) {
            return Err(cfg(format!(
                "federation.issuer {:?} is also a trusted external issuer",
                self.issuer
            )));
        }
        for r in &self.rules {
            if let Some(i) = r
                .issuers
                .iter()
                .find(|i| !external.issuers().any(|e| e == *i))
            {
                return Err(cfg(format!(
                    "rule {}: issuer {i:?} is not a configured identity issuer",
                    r.id
                )));
            }
        }
        let audience = self.audience.clone().unwrap_or_else(|| self.issuer.clone());
        let issuer = Arc::new(GatewayTokenIssuer::load_or_create(
            &self.key_file,
            &self.issuer,
            &audience,
        )?);
        let revocations = self.revocation.open().await?;
        let endpoint = TokenEndpoint::builder(issuer.clone(), external.clone())
            .rules(self.rules.iter().cloned())
            .token_ttl(Duration::from_secs(self.token_ttl_secs))
            .max_token_ttl(Duration::from_secs(self.max_token_ttl_secs));
        let endpoint = match &self.organization_id {
            Some(o) => endpoint.organization_id(o.clone()),
            None => endpoint,
        };
        let endpoint = endpoint.build().map_err(|e| cfg(e.to_string()))?;
        Ok(Some(Federation::new(Arc::new(endpoint), revocations)))
    }
}

impl RevocationConfig {
    /// Opens the configured store.
    ///
    /// # Errors
    /// [`RevocationError::Config`] for a missing URL or a build without the
    /// `postgres` feature; [`RevocationError::Unavailable`] if the database
    /// cannot be reached.
    pub async fn open(&self) -> Result<Arc<dyn RevocationStore>, RevocationError> {
        match self.store {
            RevocationBackend::Memory => Ok(Arc::new(MemoryRevocationStore::new())),
            RevocationBackend::Postgres => {
                let url = match (&self.url, &self.url_env) {
                    (Some(u), _) => u.clone(),
                    (None, Some(var)) => std::env::var(var).map_err(|_| {
                        RevocationError::Config(format!("environment variable {var} is not set"))
                    })?,
                    (None, None) => {
                        return Err(RevocationError::Config(
                            "revocation.store = \"postgres\" needs url or url_env".into(),
                        ));
                    }
                };
                open_postgres(&url, &self.table_prefix).await
            }
        }
    }
}

#[cfg(feature = "postgres")]
async fn open_postgres(
    url: &str,
    prefix: &str,
) -> Result<Arc<dyn RevocationStore>, RevocationError> {
    Ok(Arc::new(
        super::PostgresRevocationStore::connect(url, prefix).await?,
    ))
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(_: &str, _: &str) -> Result<Arc<dyn RevocationStore>, RevocationError> {
    Err(RevocationError::Config(
        "this build has no PostgreSQL support (crate feature `postgres`)".into(),
    ))
}

/// A running federation: the token endpoint, the gateway issuer and the
/// revocation store, with the operations an operator needs.
///
/// ```
/// use std::sync::Arc;
/// use skillgate::identity::dev::DevIssuer;
/// use skillgate::identity::federation::{Federation, FederationRule, GatewayTokenIssuer, MemoryRevocationStore, TokenEndpoint};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let idp = DevIssuer::ephemeral();
/// let gw = Arc::new(GatewayTokenIssuer::ephemeral("urn:skillgate:gateway", "urn:skillgate:gateway").unwrap());
/// let endpoint = TokenEndpoint::builder(gw, idp.verifier("skillgate"))
///     .rule(FederationRule::new("fdrl_ci").issuer(idp.issuer()))
///     .build()
///     .unwrap();
/// let fed = Federation::new(Arc::new(endpoint), Arc::new(MemoryRevocationStore::new()));
/// fed.revoke_principal(idp.issuer(), "skill-a").await.unwrap();
/// let _layer = fed.layer();          // between AuditLayer and IdentityLayer
/// let _verifier = fed.verifier();    // into the IdentityLayer's IssuerSet
/// # });
/// ```
#[derive(Clone)]
pub struct Federation {
    endpoint: Arc<TokenEndpoint>,
    revocations: Arc<dyn RevocationStore>,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Federation {
    /// Bundles an endpoint with the revocation store its tokens are checked against.
    pub fn new(endpoint: Arc<TokenEndpoint>, revocations: Arc<dyn RevocationStore>) -> Self {
        Federation {
            endpoint,
            revocations,
        }
    }

    /// The gateway issuer.
    pub fn issuer(&self) -> &Arc<GatewayTokenIssuer> {
        self.endpoint.issuer()
    }

    /// The token endpoint.
    pub fn endpoint(&self) -> &Arc<TokenEndpoint> {
        &self.endpoint
    }

    /// The revocation store.
    pub fn revocations(&self) -> &Arc<dyn RevocationStore> {
        &self.revocations
    }

    /// The layer serving the endpoint.
    pub fn layer(&self) -> TokenEndpointLayer {
        TokenEndpointLayer::from_arc(self.endpoint.clone())
    }

    /// The verifier of gateway tokens (with revocation), for the identity layer.
    pub fn verifier(&self) -> GatewayTokenVerifier {
        self.issuer().verifier(self.revocations.clone())
    }

    /// `set` with the gateway's verifier added under the gateway's issuer.
    pub fn extend(&self, set: IssuerSet) -> IssuerSet {
        set.with(self.issuer().issuer().to_owned(), self.verifier())
    }

    /// Revokes one token by its `jti`. `expires_at` unknown? Pass the
    /// latest it could be: now + the maximum lifetime (what
    /// [`revoke_token_id`](Self::revoke_token_id) does).
    ///
    /// # Errors
    /// The store's [`RevocationError`].
    pub async fn revoke_token(
        &self,
        token_id: &str,
        expires_at: i64,
    ) -> Result<(), RevocationError> {
        self.revocations.revoke_token(token_id, expires_at).await?;
        tracing::info!(jti = %token_id, "gateway token revoked");
        Ok(())
    }

    /// Revokes one token by its `jti` alone.
    ///
    /// # Errors
    /// The store's [`RevocationError`].
    pub async fn revoke_token_id(&self, token_id: &str) -> Result<(), RevocationError> {
        let max = i64::try_from(self.endpoint.max_token_ttl().as_secs()).unwrap_or(i64::MAX / 4);
        self.revoke_token(token_id, now().saturating_add(max).saturating_add(60))
            .await
    }

    /// Revokes every token of (`issuer`, `subject`) issued up to now
    /// (cut-off: the next second, so a token minted in this very second is
    /// revoked too).
    ///
    /// # Errors
    /// The store's [`RevocationError`].
    pub async fn revoke_principal(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<(), RevocationError> {
        self.revoke_principal_before(issuer, subject, now() + 1)
            .await
    }

    /// Revokes every token of (`issuer`, `subject`) whose `iat` is before
    /// `issued_before` (seconds since the Unix epoch).
    ///
    /// # Errors
    /// The store's [`RevocationError`].
    pub async fn revoke_principal_before(
        &self,
        issuer: &str,
        subject: &str,
        issued_before: i64,
    ) -> Result<(), RevocationError> {
        self.revocations
            .revoke_principal(issuer, subject, issued_before)
            .await?;
        tracing::info!(issuer = %issuer, subject = %subject, issued_before, "principal's gateway tokens revoked");
        Ok(())
    }

    /// Forgets revocations that can no longer matter (every token they
    /// could affect has expired). Returns how many entries were removed.
    ///
    /// # Errors
    /// The store's [`RevocationError`].
    pub async fn prune_revocations(&self) -> Result<u64, RevocationError> {
        let max = i64::try_from(self.endpoint.max_token_ttl().as_secs()).unwrap_or(i64::MAX / 4);
        self.revocations
            .prune(now().saturating_sub(max).saturating_sub(120))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::dev::DevIssuer;

    fn rule(iss: &str) -> FederationRule {
        FederationRule::new("r").issuer(iss)
    }

    #[tokio::test]
    async fn build_checks_issuers() {
        let dir = tempfile::tempdir().unwrap();
        let idp = DevIssuer::try_ephemeral("https://idp.test").unwrap();
        let set = IssuerSet::new().with(idp.issuer(), idp.verifier("skillgate"));
        let mut c = FederationConfig {
            key_file: dir.path().join("keys.json"),
            ..FederationConfig::default()
        };
        assert!(c.build(&set).await.unwrap().is_none(), "no rules: off");
        c.rules.push(rule("https://unknown.test"));
        assert!(
            matches!(c.build(&set).await, Err(FederationError::Config(m)) if m.contains("not a configured"))
        );
        c.rules = vec![rule("https://idp.test")];
        let fed = c.build(&set).await.unwrap().unwrap();
        assert_eq!(fed.issuer().issuer(), DEFAULT_GATEWAY_ISSUER);
        assert!(dir.path().join("keys.json").exists());
        let extended = fed.extend(set.clone());
        assert_eq!(extended.issuers().count(), 2);
        c.issuer = "https://idp.test".into();
        assert!(matches!(
            c.build(&set).await,
            Err(FederationError::Config(_))
        ));
    }

    #[tokio::test]
    async fn postgres_needs_a_url() {
        let r = RevocationConfig {
            store: RevocationBackend::Postgres,
            ..RevocationConfig::default()
        };
        assert!(matches!(r.open().await, Err(RevocationError::Config(_))));
    }
}
