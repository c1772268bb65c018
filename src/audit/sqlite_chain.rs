//! The hash chain of a [`SqliteStore`]: entries and checkpoints in the same
//! database file, written in the same transaction as each record (see
//! `docs/audit.md`, "Hash chain and checkpoints"). The hashed form of a
//! record is the record as read back from the row (timestamps at µs
//! precision), so that verification recomputes exactly the same bytes.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqlitePool;
use uuid::Uuid;

use super::super::chain::{
    self as hc, ChainHead, ChainSnapshot, ChainSource, RecordKind, StoredRecord,
};
use super::super::{
    AuditError, AuditEvent, ChainEntry, Checkpoint, CheckpointSigner, RequestRecord, ResponseRecord,
};
use super::{
    SELECT_COLUMNS, SqliteStore, decode_event, decode_row, insert_event, insert_request,
    unavailable, update_response,
};

/// One record half to write.
pub(super) enum Half<'a> {
    Request(&'a RequestRecord),
    Response(&'a ResponseRecord),
    Event(&'a AuditEvent),
}

struct State {
    head: ChainHead,
    since_checkpoint: u64,
}

/// The writer side of a SQLite store's chain.
pub(super) struct SqliteChain {
    state: tokio::sync::Mutex<State>,
    signer: Option<CheckpointSigner>,
    every: u64,
}

impl std::fmt::Debug for SqliteChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteChain")
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

const SELECT_EVENT: &str =
    "SELECT id, time, instance, kind, exchange_id, actor_json, detail_json FROM audit_event";

fn hash_value<T: serde::Serialize>(v: &T) -> Result<String, AuditError> {
    serde_json::to_value(v)
        .map(|v| hc::record_hash(&v))
        .map_err(|_| AuditError::Unavailable("sqlite: cannot encode record for hashing".into()))
}

impl SqliteChain {
    pub(super) async fn write(&self, pool: &SqlitePool, half: Half<'_>) -> Result<(), AuditError> {
        let mut st = self.state.lock().await;
        let mut tx = pool.begin().await.map_err(|e| unavailable("begin", &e))?;
        let (kind, id) = match half {
            Half::Request(r) => {
                insert_request(&mut *tx, r).await?;
                (RecordKind::Request, r.id)
            }
            Half::Response(r) => {
                update_response(&mut *tx, r).await?;
                (RecordKind::Response, r.id)
            }
            Half::Event(e) => {
                insert_event(&mut *tx, e).await?;
                (RecordKind::Event, e.id)
            }
        };
        // Hash what a reader will decode.
        let (hash, time_us) = if kind == RecordKind::Event {
            let row = sqlx::query(&format!("{SELECT_EVENT} WHERE id = ?"))
                .bind(id.hyphenated().to_string())
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| unavailable("read back event", &e))?;
            let ev = decode_event(&row)?;
            (hash_value(&ev)?, ev.time.as_microsecond())
        } else {
            let row = sqlx::query(&format!("{SELECT_COLUMNS} WHERE id = ?"))
                .bind(id.hyphenated().to_string())
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| unavailable("read back record", &e))?;
            let rec = decode_row(&row)?;
            let hash = match kind {
                RecordKind::Request => hash_value(&rec.request)?,
                _ => hash_value(&rec.response)?,
            };
            (hash, rec.request.received_at.as_microsecond())
        };
        let mut head = st.head.clone();
        let entry = head.append(kind, id, time_us, hash);
        insert_entry(&mut tx, &entry).await?;
        let due = st.since_checkpoint + 1 >= self.every;
        let mut signed = false;
        if let Some(signer) = &self.signer
            && due
        {
            let cp = signer.sign(
                &head.instance,
                head.seq,
                head.hash.clone(),
                jiff::Timestamp::now().as_microsecond(),
                None,
            );
            insert_checkpoint(&mut tx, &cp).await?;
            signed = true;
        }
        tx.commit().await.map_err(|e| unavailable("commit", &e))?;
        st.head = head;
        st.since_checkpoint = if signed { 0 } else { st.since_checkpoint + 1 };
        Ok(())
    }

    /// Signs a checkpoint over the newest entry now (no-op without a signer
    /// or new entries).
    async fn checkpoint(&self, pool: &SqlitePool) -> Result<(), AuditError> {
        let mut st = self.state.lock().await;
        let Some(signer) = &self.signer else {
            return Ok(());
        };
        if st.since_checkpoint == 0 || st.head.seq == 0 {
            return Ok(());
        }
        let cp = signer.sign(
            &st.head.instance,
            st.head.seq,
            st.head.hash.clone(),
            jiff::Timestamp::now().as_microsecond(),
            None,
        );
        let mut tx = pool.begin().await.map_err(|e| unavailable("begin", &e))?;
        insert_checkpoint(&mut tx, &cp).await?;
        tx.commit().await.map_err(|e| unavailable("commit", &e))?;
        st.since_checkpoint = 0;
        Ok(())
    }
}

async fn insert_entry(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    e: &ChainEntry,
) -> Result<(), AuditError> {
    sqlx::query(
        "INSERT INTO audit_chain (instance, seq, kind, record_id, record_time_us, record_hash, prev_hash, entry_hash) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&e.instance)
    .bind(e.seq)
    .bind(e.kind.as_str())
    .bind(e.record_id.hyphenated().to_string())
    .bind(e.record_time_us)
    .bind(&e.record_hash)
    .bind(&e.prev_hash)
    .bind(&e.entry_hash)
    .execute(&mut **tx)
    .await
    .map_err(|e| unavailable("write chain", &e))?;
    Ok(())
}

async fn insert_checkpoint(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    cp: &Checkpoint,
) -> Result<(), AuditError> {
    sqlx::query(
        "INSERT INTO audit_checkpoint (instance, seq, entry_hash, created_at_us, purged_before_us, key_id, signature) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&cp.instance)
    .bind(cp.seq)
    .bind(&cp.entry_hash)
    .bind(cp.created_at_us)
    .bind(cp.purged_before_us)
    .bind(&cp.key_id)
    .bind(&cp.signature)
    .execute(&mut **tx)
    .await
    .map_err(|e| unavailable("write checkpoint", &e))?;
    Ok(())
}

impl SqliteStore {
    /// Keeps a hash chain named `instance` over every record this store
    /// writes from now on, signing a checkpoint every `checkpoint_every`
    /// entries with `signer` (if given). Continues the chain already in the
    /// file under that name.
    ///
    /// # Errors
    /// [`AuditError::Unavailable`] if the chain head cannot be read.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use skillgate::audit::{CheckpointSigner, SqliteStore};
    /// let store = SqliteStore::in_memory().await.unwrap()
    ///     .chained("gw-1", Some(CheckpointSigner::from_bytes(&[1; 32])), 1000).await.unwrap();
    /// # let _ = store;
    /// # });
    /// ```
    pub async fn chained(
        mut self,
        instance: &str,
        signer: Option<CheckpointSigner>,
        checkpoint_every: u64,
    ) -> Result<SqliteStore, AuditError> {
        let row: Option<(i64, String)> = sqlx::query_as(
            "SELECT seq, entry_hash FROM audit_chain WHERE instance = ? ORDER BY seq DESC LIMIT 1",
        )
        .bind(instance)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| unavailable("read chain head", &e))?;
        let head = match row {
            Some((seq, hash)) => ChainHead {
                instance: instance.to_owned(),
                seq,
                hash,
            },
            None => ChainHead::genesis(instance),
        };
        self.chain = Some(std::sync::Arc::new(SqliteChain {
            state: tokio::sync::Mutex::new(State {
                head,
                since_checkpoint: 0,
            }),
            signer,
            every: checkpoint_every.max(1),
        }));
        Ok(self)
    }

    /// Signs a checkpoint over this store's newest chain entry now (no-op
    /// without a chain, a signer or new entries). Call it before shutdown.
    ///
    /// # Errors
    /// [`AuditError::Unavailable`] if the database fails.
    pub async fn checkpoint(&self) -> Result<(), AuditError> {
        match &self.chain {
            Some(c) => c.checkpoint(&self.pool).await,
            None => Ok(()),
        }
    }
}

#[async_trait]
impl ChainSource for SqliteStore {
    async fn chain_snapshot(&self) -> Result<ChainSnapshot, AuditError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| unavailable("verify", &e))?;
        let mut snap = ChainSnapshot::default();
        let rows = sqlx::query(
            "SELECT instance, seq, kind, record_id, record_time_us, record_hash, prev_hash, entry_hash FROM audit_chain",
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| unavailable("read chain", &e))?;
        snap.entries
            .extend(rows.iter().map(super::super::chain::rows::chain_entry));
        let rows = sqlx::query(
            "SELECT instance, seq, entry_hash, created_at_us, purged_before_us, key_id, signature FROM audit_checkpoint",
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| unavailable("read checkpoints", &e))?;
        snap.checkpoints
            .extend(rows.iter().map(super::super::chain::rows::checkpoint));
        let rows = sqlx::query(SELECT_COLUMNS)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| unavailable("read records", &e))?;
        for r in rows {
            let id_text: String = r.try_get("id").unwrap_or_default();
            let id = Uuid::parse_str(&id_text).unwrap_or_default();
            // A row that no longer decodes counts as modified (empty hash).
            let (req_hash, res_hash) = match decode_row(&r) {
                Ok(rec) => (
                    hash_value(&rec.request).unwrap_or_default(),
                    rec.response
                        .as_ref()
                        .map(|x| hash_value(x).unwrap_or_default()),
                ),
                Err(_) => (String::new(), None),
            };
            snap.records.push(StoredRecord {
                kind: RecordKind::Request,
                id,
                hash: req_hash,
                columns_agree: true,
            });
            if let Some(h) = res_hash {
                snap.records.push(StoredRecord {
                    kind: RecordKind::Response,
                    id,
                    hash: h,
                    columns_agree: true,
                });
            }
        }
        let rows = sqlx::query(SELECT_EVENT)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| unavailable("read events", &e))?;
        for r in rows {
            let id_text: String = r.try_get("id").unwrap_or_default();
            let id = Uuid::parse_str(&id_text).unwrap_or_default();
            let hash = decode_event(&r)
                .ok()
                .and_then(|e| hash_value(&e).ok())
                .unwrap_or_default();
            snap.records.push(StoredRecord {
                kind: RecordKind::Event,
                id,
                hash,
                columns_agree: true,
            });
        }
        Ok(snap)
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::{AuditStore, DecisionRecord, Problem, verify};
    use super::*;

    #[tokio::test]
    async fn sqlite_chain_verifies_and_names_tampering() {
        let signer = CheckpointSigner::from_bytes(&[5; 32]);
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("a.db"))
            .await
            .unwrap()
            .chained("gw-sqlite", Some(signer.clone()), 4)
            .await
            .unwrap();
        let mut ids = Vec::new();
        for i in 0..6 {
            let mut r = RequestRecord::new("POST", "/v1/messages", DecisionRecord::allow());
            r.model = Some(format!("claude-{i}"));
            r.body = bytes::Bytes::from(format!("{{\"n\":{i}}}"));
            store.record_request(&r).await.unwrap();
            let mut res = ResponseRecord::new(r.id, 200);
            res.usage = Some(serde_json::json!({"output_tokens": i}));
            store.record_response(&res).await.unwrap();
            ids.push(r.id);
        }
        store
            .record_event(&AuditEvent::new(
                "grant.created",
                serde_json::json!({"x": 1}),
            ))
            .await
            .unwrap();
        store.checkpoint().await.unwrap();
        let key = signer.verifying_key();
        let ok = verify(&store, &key).await.unwrap();
        assert!(ok.is_ok(), "{:?}", ok.problems);
        assert_eq!(ok.records_verified, 13);

        // A reopened store continues the same chain.
        let again = SqliteStore::open(dir.path().join("a.db"))
            .await
            .unwrap()
            .chained("gw-sqlite", Some(signer.clone()), 4)
            .await
            .unwrap();
        again
            .record_event(&AuditEvent::new("grant.revoked", serde_json::json!({})))
            .await
            .unwrap();
        again.checkpoint().await.unwrap();
        assert!(verify(&again, &key).await.unwrap().is_ok());

        let pool = &store.pool;
        sqlx::query("UPDATE audit_exchange SET model = 'claude-x' WHERE id = ?")
            .bind(ids[1].hyphenated().to_string())
            .execute(pool)
            .await
            .unwrap();
        sqlx::query("DELETE FROM audit_exchange WHERE id = ?")
            .bind(ids[3].hyphenated().to_string())
            .execute(pool)
            .await
            .unwrap();
        sqlx::query("UPDATE audit_chain SET seq = -seq WHERE seq IN (2, 3)")
            .execute(pool)
            .await
            .unwrap();
        sqlx::query(
            "UPDATE audit_chain SET seq = CASE seq WHEN -2 THEN 3 ELSE 2 END WHERE seq IN (-2, -3)",
        )
        .execute(pool)
        .await
        .unwrap();
        let r = verify(&store, &key).await.unwrap();
        assert!(
            r.problems
                .iter()
                .any(|p| matches!(p, Problem::Modified { record_id, .. } if *record_id == ids[1])),
            "{:?}",
            r.problems
        );
        assert!(
            r.problems
                .iter()
                .any(|p| matches!(p, Problem::Deleted { record_id, .. } if *record_id == ids[3])),
            "{:?}",
            r.problems
        );
        assert!(
            r.problems
                .iter()
                .any(|p| matches!(p, Problem::BrokenLink { seq, .. } if *seq == 2 || *seq == 3)),
            "{:?}",
            r.problems
        );
    }
}
