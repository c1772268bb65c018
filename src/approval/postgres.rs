//! [`PostgresApprovalStore`]: approvals shared by every gateway instance
//! through one PostgreSQL database (crate feature `postgres`).

use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::Row;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use tokio::sync::broadcast;
use uuid::Uuid;

use super::store::{ApprovalStore, ApprovalStoreError};
use super::types::{ApprovalDecision, ApprovalRequest, ApprovalState, ApprovalStatus, Grant};

/// Approvals, decisions, grants and callback nonces in PostgreSQL. A
/// decision made through any instance is announced with `NOTIFY` on the
/// channel `{prefix}approvals`; every instance `LISTEN`s and releases the
/// request it holds.
///
/// Three tables, created if missing:
///
/// - `{prefix}approvals (id TEXT PRIMARY KEY, status TEXT, created_at BIGINT, state TEXT)`
///   — `state` is the [`ApprovalState`] as JSON; decisions lock the row
///   (`SELECT … FOR UPDATE`) so a request leaves `pending` exactly once.
/// - `{prefix}approval_grants (id TEXT PRIMARY KEY, principal TEXT, rule TEXT, expires_at BIGINT, revoked BOOLEAN, grant_json TEXT)`
/// - `{prefix}approval_nonces (nonce TEXT PRIMARY KEY, expires_at BIGINT)`
///
/// ```no_run
/// use skillgate::approval::{Approvals, PostgresApprovalStore};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = PostgresApprovalStore::connect("postgres://skillgate@db.internal/skillgate", "skillgate_")
///     .await
///     .unwrap();
/// let approvals = Approvals::builder().store(store).build();
/// # let _ = approvals;
/// # });
/// ```
#[derive(Debug)]
pub struct PostgresApprovalStore {
    pool: PgPool,
    approvals: String,
    grants: String,
    nonces: String,
    channel: String,
    feed: broadcast::Sender<Uuid>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for PostgresApprovalStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

fn unavailable(e: impl std::fmt::Display) -> ApprovalStoreError {
    ApprovalStoreError::Unavailable(e.to_string())
}

fn check_prefix(prefix: &str) -> Result<(), ApprovalStoreError> {
    let ok = prefix.len() <= 40
        && prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !prefix.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(ApprovalStoreError::Unavailable(
            "table prefix must match [a-z_][a-z0-9_]* and be at most 40 characters".into(),
        ))
    }
}

fn parse_state(s: &str) -> Result<ApprovalState, ApprovalStoreError> {
    serde_json::from_str(s).map_err(|e| unavailable(format!("stored approval unreadable: {e}")))
}

fn parse_grant(s: &str) -> Result<Grant, ApprovalStoreError> {
    serde_json::from_str(s).map_err(|e| unavailable(format!("stored grant unreadable: {e}")))
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, ApprovalStoreError> {
    serde_json::to_string(v).map_err(unavailable)
}

impl PostgresApprovalStore {
    /// Connects to `url`, creates the tables `{table_prefix}approvals`,
    /// `{table_prefix}approval_grants` and `{table_prefix}approval_nonces` if
    /// missing, and starts listening on `{table_prefix}approvals`. Must run
    /// inside a Tokio runtime; waits at most 5 s for a connection.
    ///
    /// # Errors
    /// [`ApprovalStoreError::Unavailable`] for a bad prefix or an
    /// unreachable database.
    pub async fn connect(url: &str, table_prefix: &str) -> Result<Self, ApprovalStoreError> {
        check_prefix(table_prefix)?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(unavailable)?;
        let approvals = format!("{table_prefix}approvals");
        let grants = format!("{table_prefix}approval_grants");
        let nonces = format!("{table_prefix}approval_nonces");
        let mut tx = pool.begin().await.map_err(unavailable)?;
        // Serialize concurrent start-ups creating the same tables.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(&approvals)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        for ddl in [
            format!(
                "CREATE TABLE IF NOT EXISTS {approvals} (id TEXT PRIMARY KEY, status TEXT NOT NULL, created_at BIGINT NOT NULL, state TEXT NOT NULL)"
            ),
            format!("CREATE INDEX IF NOT EXISTS {approvals}_status ON {approvals} (status)"),
            format!(
                "CREATE TABLE IF NOT EXISTS {grants} (id TEXT PRIMARY KEY, principal TEXT NOT NULL, rule TEXT NOT NULL, expires_at BIGINT NOT NULL, revoked BOOLEAN NOT NULL, grant_json TEXT NOT NULL)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {nonces} (nonce TEXT PRIMARY KEY, expires_at BIGINT NOT NULL)"
            ),
        ] {
            sqlx::query(&ddl)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)?;
        let (feed, _) = broadcast::channel(1024);
        let mut listener = PgListener::connect_with(&pool).await.map_err(unavailable)?;
        listener.listen(&approvals).await.map_err(unavailable)?;
        let tx = feed.clone();
        let listener = tokio::spawn(async move {
            loop {
                // `recv` reconnects by itself after a lost connection.
                match listener.recv().await {
                    Ok(n) => {
                        if let Ok(id) = Uuid::parse_str(n.payload()) {
                            let _ = tx.send(id);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "approval LISTEN connection failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(PostgresApprovalStore {
            pool,
            channel: approvals.clone(),
            approvals,
            grants,
            nonces,
            feed,
            listener,
        })
    }

    /// Writes `state` under the row lock held by `tx` and announces it.
    async fn write_resolved(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        state: &ApprovalState,
    ) -> Result<(), ApprovalStoreError> {
        sqlx::query(&format!(
            "UPDATE {} SET status = $2, state = $3 WHERE id = $1",
            self.approvals
        ))
        .bind(state.request.id.to_string())
        .bind(state.status.as_str())
        .bind(json(state)?)
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
        if !state.status.is_pending() {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(&self.channel)
                .bind(state.request.id.to_string())
                .execute(&mut **tx)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn locked(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        id: Uuid,
    ) -> Result<ApprovalState, ApprovalStoreError> {
        let row = sqlx::query(&format!(
            "SELECT state FROM {} WHERE id = $1 FOR UPDATE",
            self.approvals
        ))
        .bind(id.to_string())
        .fetch_optional(&mut **tx)
        .await
        .map_err(unavailable)?
        .ok_or(ApprovalStoreError::NotFound)?;
        parse_state(row.try_get::<&str, _>(0).map_err(unavailable)?)
    }
}

#[async_trait]
impl ApprovalStore for PostgresApprovalStore {
    async fn insert(&self, r: &ApprovalRequest) -> Result<(), ApprovalStoreError> {
        let state = ApprovalState::new(r.clone());
        sqlx::query(&format!(
            "INSERT INTO {} (id, status, created_at, state) VALUES ($1, $2, $3, $4)",
            self.approvals
        ))
        .bind(r.id.to_string())
        .bind(state.status.as_str())
        .bind(r.created_at.as_microsecond())
        .bind(json(&state)?)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn get(&self, id: Uuid) -> Result<Option<ApprovalState>, ApprovalStoreError> {
        let row = sqlx::query(&format!(
            "SELECT state FROM {} WHERE id = $1",
            self.approvals
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        row.map(|r| parse_state(r.try_get::<&str, _>(0).map_err(unavailable)?))
            .transpose()
    }

    async fn pending(&self) -> Result<Vec<ApprovalState>, ApprovalStoreError> {
        let rows = sqlx::query(&format!(
            "SELECT state FROM {} WHERE status = 'pending' ORDER BY created_at, id LIMIT 1000",
            self.approvals
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(|r| parse_state(r.try_get::<&str, _>(0).map_err(unavailable)?))
            .collect()
    }

    async fn decide(&self, d: &ApprovalDecision) -> Result<ApprovalState, ApprovalStoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let mut state = self.locked(&mut tx, d.request_id).await?;
        if !state.status.is_pending() {
            return Err(ApprovalStoreError::NotPending(state.status));
        }
        state.apply(d.clone());
        self.write_resolved(&mut tx, &state).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(state)
    }

    async fn close(
        &self,
        id: Uuid,
        status: ApprovalStatus,
        at: Timestamp,
    ) -> Result<ApprovalState, ApprovalStoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let mut state = self.locked(&mut tx, id).await?;
        if state.status.is_pending() {
            state.status = status;
            state.resolved_at = Some(at);
            self.write_resolved(&mut tx, &state).await?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(state)
    }

    async fn insert_grant(&self, g: &Grant) -> Result<(), ApprovalStoreError> {
        sqlx::query(&format!(
            "INSERT INTO {} (id, principal, rule, expires_at, revoked, grant_json) VALUES ($1, $2, $3, $4, FALSE, $5)",
            self.grants
        ))
        .bind(g.id.to_string())
        .bind(&g.principal)
        .bind(&g.rule)
        .bind(g.expires_at.as_second())
        .bind(json(g)?)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn active_grant(
        &self,
        principal: &str,
        rule: &str,
        now: Timestamp,
    ) -> Result<Option<Grant>, ApprovalStoreError> {
        let rows = sqlx::query(&format!(
            "SELECT grant_json FROM {} WHERE principal = $1 AND rule = $2 AND NOT revoked AND expires_at > $3",
            self.grants
        ))
        .bind(principal)
        .bind(rule)
        .bind(now.as_second())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        for r in rows {
            let g = parse_grant(r.try_get::<&str, _>(0).map_err(unavailable)?)?;
            if g.is_active(now) {
                return Ok(Some(g));
            }
        }
        Ok(None)
    }

    async fn grants(&self, now: Timestamp) -> Result<Vec<Grant>, ApprovalStoreError> {
        let rows = sqlx::query(&format!(
            "SELECT grant_json FROM {} WHERE NOT revoked AND expires_at > $1 ORDER BY id LIMIT 1000",
            self.grants
        ))
        .bind(now.as_second())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let mut out = Vec::new();
        for r in rows {
            let g = parse_grant(r.try_get::<&str, _>(0).map_err(unavailable)?)?;
            if g.is_active(now) {
                out.push(g);
            }
        }
        Ok(out)
    }

    async fn grant(&self, id: Uuid) -> Result<Option<Grant>, ApprovalStoreError> {
        let row = sqlx::query(&format!(
            "SELECT grant_json FROM {} WHERE id = $1",
            self.grants
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        row.map(|r| parse_grant(r.try_get::<&str, _>(0).map_err(unavailable)?))
            .transpose()
    }

    async fn revoke_grant(
        &self,
        id: Uuid,
        by: &str,
        at: Timestamp,
    ) -> Result<Grant, ApprovalStoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let row = sqlx::query(&format!(
            "SELECT grant_json FROM {} WHERE id = $1 FOR UPDATE",
            self.grants
        ))
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?
        .ok_or(ApprovalStoreError::NotFound)?;
        let mut g = parse_grant(row.try_get::<&str, _>(0).map_err(unavailable)?)?;
        if g.revoked_at.is_none() {
            g.revoked_at = Some(at);
            g.revoked_by = Some(by.to_owned());
            sqlx::query(&format!(
                "UPDATE {} SET revoked = TRUE, grant_json = $2 WHERE id = $1",
                self.grants
            ))
            .bind(id.to_string())
            .bind(json(&g)?)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(g)
    }

    async fn use_nonce(&self, nonce: &str, expires: Timestamp) -> Result<bool, ApprovalStoreError> {
        sqlx::query(&format!(
            "DELETE FROM {} WHERE expires_at < $1",
            self.nonces
        ))
        .bind(Timestamp::now().as_second())
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        let done = sqlx::query(&format!(
            "INSERT INTO {} (nonce, expires_at) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING",
            self.nonces
        ))
        .bind(nonce)
        .bind(expires.as_second())
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }

    fn resolutions(&self) -> Option<broadcast::Receiver<Uuid>> {
        Some(self.feed.subscribe())
    }
}
