//! [`PostgresRevocationStore`]: revocations shared by every gateway instance
//! through one PostgreSQL database (crate feature `postgres`).

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions};

use super::revocation::{RevocationError, RevocationQuery, RevocationStore};

/// The default prefix of the store's table names.
pub const DEFAULT_TABLE_PREFIX: &str = "skillgate_";

/// Revocations in PostgreSQL, so that a revocation made through any instance
/// is seen by every instance on its next verification.
///
/// Two tables, created if missing (idempotent, serialized by an advisory
/// lock so concurrent start-ups do not race):
///
/// - `{prefix}revoked_tokens (token_id TEXT PRIMARY KEY, expires_at BIGINT, revoked_at BIGINT)`
/// - `{prefix}revoked_principals (issuer TEXT, subject TEXT, issued_before BIGINT, revoked_at BIGINT, PRIMARY KEY (issuer, subject))`
///
/// Every check is one indexed query; if the database cannot answer, the
/// check fails and the token is refused (fail closed). Connections use
/// TLS when the URL asks for it (`sslmode=require`), with the system's roots.
///
/// ```no_run
/// use skillgate::identity::federation::{PostgresRevocationStore, RevocationStore};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = PostgresRevocationStore::connect("postgres://skillgate@db.internal/skillgate", "skillgate_")
///     .await
///     .unwrap();
/// store.revoke_principal("https://token.actions.githubusercontent.com", "repo:acme/billing:ref:refs/heads/main", 1_767_225_600)
///     .await
///     .unwrap();
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct PostgresRevocationStore {
    pool: PgPool,
    tokens: String,
    principals: String,
}

fn unavailable(e: sqlx::Error) -> RevocationError {
    RevocationError::Unavailable(e.to_string())
}

/// A table prefix is spliced into SQL, so only `[a-z_][a-z0-9_]*` (≤ 40
/// characters) or the empty string is accepted.
fn check_prefix(prefix: &str) -> Result<(), RevocationError> {
    let ok = prefix.len() <= 40
        && prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !prefix.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(RevocationError::Config(
            "table prefix must match [a-z_][a-z0-9_]* and be at most 40 characters".into(),
        ))
    }
}

impl PostgresRevocationStore {
    /// Connects to `url` (e.g. `postgres://user@host:5432/db`) and creates the
    /// tables `{table_prefix}revoked_tokens` and `{table_prefix}revoked_principals`
    /// if they do not exist. Waits at most 5 s for a connection.
    ///
    /// # Errors
    /// [`RevocationError::Config`] for a bad prefix or URL,
    /// [`RevocationError::Unavailable`] if the database cannot be reached.
    pub async fn connect(url: &str, table_prefix: &str) -> Result<Self, RevocationError> {
        check_prefix(table_prefix)?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| match e {
                sqlx::Error::Configuration(_) => {
                    RevocationError::Config("invalid PostgreSQL URL".into())
                }
                other => unavailable(other),
            })?;
        Self::from_pool(pool, table_prefix).await
    }

    /// Uses an existing pool; creates the tables if they do not exist.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub async fn from_pool(pool: PgPool, table_prefix: &str) -> Result<Self, RevocationError> {
        check_prefix(table_prefix)?;
        let store = PostgresRevocationStore {
            pool,
            tokens: format!("{table_prefix}revoked_tokens"),
            principals: format!("{table_prefix}revoked_principals"),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), RevocationError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        // Concurrent CREATE TABLE IF NOT EXISTS can still collide in the
        // catalog; one advisory lock per database serializes the start-ups.
        sqlx::query("SELECT pg_advisory_xact_lock(7339214501)")
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS {} (
                token_id TEXT PRIMARY KEY,
                expires_at BIGINT NOT NULL,
                revoked_at BIGINT NOT NULL)",
            self.tokens
        ))
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS {} (
                issuer TEXT NOT NULL,
                subject TEXT NOT NULL,
                issued_before BIGINT NOT NULL,
                revoked_at BIGINT NOT NULL,
                PRIMARY KEY (issuer, subject))",
            self.principals
        ))
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)
    }

    /// The connection pool (for operations and tests).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The two table names: (tokens, principals).
    pub fn tables(&self) -> (&str, &str) {
        (&self.tokens, &self.principals)
    }
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

#[async_trait]
impl RevocationStore for PostgresRevocationStore {
    async fn revoke_token(&self, token_id: &str, expires_at: i64) -> Result<(), RevocationError> {
        sqlx::query(&format!(
            "INSERT INTO {t} (token_id, expires_at, revoked_at) VALUES ($1, $2, $3)
             ON CONFLICT (token_id) DO UPDATE
             SET expires_at = GREATEST({t}.expires_at, EXCLUDED.expires_at)",
            t = self.tokens
        ))
        .bind(token_id)
        .bind(expires_at)
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn revoke_principal(
        &self,
        issuer: &str,
        subject: &str,
        issued_before: i64,
    ) -> Result<(), RevocationError> {
        sqlx::query(&format!(
            "INSERT INTO {t} (issuer, subject, issued_before, revoked_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (issuer, subject) DO UPDATE
             SET issued_before = GREATEST({t}.issued_before, EXCLUDED.issued_before),
                 revoked_at = EXCLUDED.revoked_at",
            t = self.principals
        ))
        .bind(issuer)
        .bind(subject)
        .bind(issued_before)
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn is_revoked(&self, q: &RevocationQuery<'_>) -> Result<bool, RevocationError> {
        let (revoked,): (bool,) = sqlx::query_as(&format!(
            "SELECT EXISTS (SELECT 1 FROM {} WHERE token_id = $1)
                 OR EXISTS (SELECT 1 FROM {} WHERE issuer = $2 AND subject = $3 AND issued_before > $4)",
            self.tokens, self.principals
        ))
        .bind(q.token_id)
        .bind(q.issuer)
        .bind(q.subject)
        .bind(q.issued_at)
        .fetch_one(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(revoked)
    }

    async fn prune(&self, cutoff: i64) -> Result<u64, RevocationError> {
        let a = sqlx::query(&format!(
            "DELETE FROM {} WHERE expires_at < $1",
            self.tokens
        ))
        .bind(cutoff)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?
        .rows_affected();
        let b = sqlx::query(&format!(
            "DELETE FROM {} WHERE issued_before < $1",
            self.principals
        ))
        .bind(cutoff)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?
        .rows_affected();
        Ok(a + b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_checked() {
        for ok in ["", "skillgate_", "t_1_", "_x"] {
            assert!(check_prefix(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "Skill",
            "a;drop table x;",
            "1a",
            "a-b",
            "a.b",
            &"x".repeat(41),
        ] {
            assert!(check_prefix(bad).is_err(), "{bad:?}");
        }
    }
}
