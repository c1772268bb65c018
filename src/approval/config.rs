//! `[approval]` in the gateway configuration: [`ApprovalConfig`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::hub::Approvals;
use super::webhook::{WebhookCallbacks, WebhookSink};
use crate::audit::AuditStore;

/// `[approval]`: how requests that need a human are held.
///
/// ```
/// let c: skillgate::approval::ApprovalConfig = toml::from_str(r#"
///     enabled = true
///     timeout_secs = 240
///     default_approvers = ["secops"]
///     webhook_url = "https://bridge.example/skillgate"
///     webhook_secret_file = "/run/secrets/skillgate-webhook"
/// "#).unwrap();
/// assert_eq!(c.timeout_secs, 240);
/// assert_eq!(skillgate::approval::ApprovalConfig::default().timeout_secs, 300);
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApprovalConfig {
    /// Hold require-approval requests and serve `/approvals/` (default
    /// false: such requests are refused by the forward guard).
    pub enabled: bool,
    /// Longest wait for a decision, in seconds (default 300). Keep it below
    /// the callers' HTTP timeout (the Python/TypeScript SDKs: 600 s).
    pub timeout_secs: u64,
    /// Longest grant an approver may give, in seconds (default 28 800, 8 h).
    pub max_grant_secs: u64,
    /// Approver groups for require-approval rules that name none.
    pub default_approvers: Vec<String>,
    /// PostgreSQL URL for approvals shared by several instances (feature
    /// `postgres`); unset: in memory, this instance only.
    pub postgres_url: Option<String>,
    /// Table-name prefix in PostgreSQL (default `skillgate_`).
    pub postgres_table_prefix: String,
    /// Where new requests are POSTed as signed JSON (optional).
    pub webhook_url: Option<String>,
    /// File holding the webhook HMAC secret (≥ 32 bytes; required with `webhook_url`).
    pub webhook_secret_file: Option<PathBuf>,
}

impl Default for ApprovalConfig {
    fn default() -> Self {
        ApprovalConfig {
            enabled: false,
            timeout_secs: 300,
            max_grant_secs: 8 * 3600,
            default_approvers: Vec::new(),
            postgres_url: None,
            postgres_table_prefix: "skillgate_".into(),
            webhook_url: None,
            webhook_secret_file: None,
        }
    }
}

impl ApprovalConfig {
    /// Builds the coordinator (and the webhook callback checker, if a
    /// webhook is configured); `None` when not enabled. `public_url` is the
    /// gateway's external base URL for callback links.
    ///
    /// # Errors
    /// A message naming the key at fault (unreadable secret, bad URL,
    /// PostgreSQL unreachable, `postgres_url` without the feature).
    pub async fn build(
        &self,
        audit: Arc<dyn AuditStore>,
        instance: Option<&str>,
        public_url: Option<&str>,
    ) -> Result<Option<(Approvals, Option<WebhookCallbacks>)>, String> {
        if !self.enabled {
            return Ok(None);
        }
        if self.timeout_secs == 0 {
            return Err("approval.timeout_secs must be at least 1".into());
        }
        let mut b = Approvals::builder()
            .timeout(Duration::from_secs(self.timeout_secs))
            .max_grant(Duration::from_secs(self.max_grant_secs.max(1)))
            .default_approvers(self.default_approvers.iter().cloned())
            .audit_store(audit);
        if let Some(i) = instance {
            b = b.instance(i);
        }
        match &self.postgres_url {
            None => {}
            #[cfg(feature = "postgres")]
            Some(url) => {
                let store = super::PostgresApprovalStore::connect(url, &self.postgres_table_prefix)
                    .await
                    .map_err(|e| format!("approval.postgres_url: {e}"))?;
                b = b.store(store);
            }
            #[cfg(not(feature = "postgres"))]
            Some(_) => {
                return Err(
                    "approval.postgres_url is set but skillgate was built without the `postgres` feature"
                        .into(),
                );
            }
        }
        let mut callbacks = None;
        if let Some(url) = &self.webhook_url {
            let file = self
                .webhook_secret_file
                .as_ref()
                .ok_or("approval.webhook_url needs approval.webhook_secret_file")?;
            let secret = std::fs::read(file)
                .map_err(|e| format!("approval.webhook_secret_file {}: {e}", file.display()))?;
            let secret = secret.trim_ascii().to_vec();
            let public = public_url
                .ok_or("approval.webhook_url needs public_url (for the callback links)")?;
            let sink = WebhookSink::new(url, secret, public).map_err(|e| e.to_string())?;
            callbacks = Some(sink.callbacks());
            b = b.sink(sink);
        }
        Ok(Some((b.build(), callbacks)))
    }
}
