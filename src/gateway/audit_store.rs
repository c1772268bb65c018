//! Opening the audit store `[audit]` names (SQLite or PostgreSQL), and the
//! periodic retention purge.

use std::sync::Arc;
#[cfg(feature = "postgres")]
use std::time::Duration;

use super::config::{AuditConfig, AuditStoreKind, ConfigError};
use crate::audit::AuditStore;

impl AuditConfig {
    /// The PostgreSQL URL: `url`, or the variable `url_env` names.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] if neither gives one.
    pub fn postgres_url(&self) -> Result<String, ConfigError> {
        if let Some(u) = &self.url {
            return Ok(u.clone());
        }
        if let Some(var) = &self.url_env {
            return std::env::var(var).map_err(|_| {
                ConfigError::Invalid(format!("audit.url_env: variable {var} is not set"))
            });
        }
        Err(ConfigError::Invalid(
            "audit.store = \"postgres\" needs url or url_env".into(),
        ))
    }

    /// The checkpoint signer from `signing_key_file`, if set.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the file if it is unreadable or not a
    /// PKCS#8 Ed25519 key.
    pub fn signer(&self) -> Result<Option<crate::audit::CheckpointSigner>, ConfigError> {
        self.signing_key_file
            .as_deref()
            .map(|p| {
                crate::audit::CheckpointSigner::from_pkcs8_pem_file(p)
                    .map_err(|e| ConfigError::Invalid(format!("audit.signing_key_file: {e}")))
            })
            .transpose()
    }

    /// This instance's name: `instance`, or `hostname:pid`.
    pub fn instance_name(&self) -> String {
        self.instance
            .clone()
            .unwrap_or_else(crate::audit::layer_default_instance)
    }

    /// Opens the PostgreSQL store with these settings (also used by the
    /// `audit verify` and `audit purge` commands).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for a missing URL or key, or if the database
    /// cannot be opened.
    #[cfg(feature = "postgres")]
    pub async fn open_postgres(&self) -> Result<crate::audit::PostgresStore, ConfigError> {
        let mut o = crate::audit::PostgresOptions::new(self.postgres_url()?, self.instance_name())
            .batch_max(self.batch_max)
            .queue_capacity(self.queue_capacity)
            .buffer(Duration::from_millis(self.buffer_ms))
            .checkpoint_every(self.checkpoint_every)
            .checkpoint_interval(Duration::from_secs(self.checkpoint_interval_secs.max(1)));
        if let Some(s) = self.signer()? {
            o = o.signer(s);
        }
        crate::audit::PostgresStore::open(o)
            .await
            .map_err(|e| ConfigError::Invalid(format!("audit (postgres): {e}")))
    }

    /// Opens the configured store (`[audit.jsonl]` when set) and, with `retention_days` set, starts the
    /// periodic purge (PostgreSQL; needs `signing_key_file`).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the setting at fault.
    pub async fn open_store(&self) -> Result<Arc<dyn AuditStore>, ConfigError> {
        if let Some(j) = &self.jsonl {
            if self.store != AuditStoreKind::Sqlite || self.retention_days.is_some() {
                return Err(ConfigError::Invalid(
                    "[audit.jsonl] cannot be combined with store = \"postgres\" or retention_days"
                        .into(),
                ));
            }
            return self.open_jsonl_store(j);
        }
        match self.store {
            AuditStoreKind::Sqlite => self.open_sqlite().await,
            AuditStoreKind::Postgres => self.open_postgres_store().await,
        }
    }

    #[cfg(feature = "sqlite")]
    async fn open_sqlite(&self) -> Result<Arc<dyn AuditStore>, ConfigError> {
        if self.retention_days.is_some() {
            return Err(ConfigError::Invalid(
                "audit.retention_days is supported with store = \"postgres\" only".into(),
            ));
        }
        let invalid = |e: crate::audit::AuditError| {
            ConfigError::Invalid(format!("audit.sqlite {}: {e}", self.sqlite.display()))
        };
        // Every record is chained under this instance's name; checkpoints
        // are signed when a key is configured.
        let store = crate::audit::SqliteStore::open(&self.sqlite)
            .await
            .map_err(invalid)?
            .chained(&self.instance_name(), self.signer()?, self.checkpoint_every)
            .await
            .map_err(invalid)?;
        Ok(Arc::new(store))
    }

    #[cfg(not(feature = "sqlite"))]
    async fn open_sqlite(&self) -> Result<Arc<dyn AuditStore>, ConfigError> {
        Err(ConfigError::Invalid(
            "this build has no SQLite support (crate feature `sqlite`)".into(),
        ))
    }

    #[cfg(feature = "postgres")]
    async fn open_postgres_store(&self) -> Result<Arc<dyn AuditStore>, ConfigError> {
        let store = self.open_postgres().await?;
        if let Some(days) = self.retention_days {
            if self.signing_key_file.is_none() {
                return Err(ConfigError::Invalid(
                    "audit.retention_days needs audit.signing_key_file (the purge signs a checkpoint)"
                        .into(),
                ));
            }
            let purger = store.clone();
            let every = Duration::from_secs(self.purge_interval_secs.max(1));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    let cutoff = jiff::Timestamp::now()
                        - jiff::SignedDuration::from_hours(
                            i64::try_from(days)
                                .unwrap_or(i64::MAX / 3600 / 2)
                                .saturating_mul(24),
                        );
                    match purger.purge(cutoff).await {
                        Ok(r) => tracing::info!(
                            exchanges = r.exchanges,
                            events = r.events,
                            "audit: retention purge"
                        ),
                        Err(e) => tracing::error!(error = %e, "audit: retention purge failed"),
                    }
                }
            });
        }
        Ok(Arc::new(store))
    }

    #[cfg(not(feature = "postgres"))]
    async fn open_postgres_store(&self) -> Result<Arc<dyn AuditStore>, ConfigError> {
        Err(ConfigError::Invalid(
            "this build has no PostgreSQL support (crate feature `postgres`)".into(),
        ))
    }
}
