//! [`PostgresStore`]: the shared [`AuditStore`] for any number of gateway
//! instances (crate feature `postgres`), with batched writes, fail-closed
//! buffering and a per-instance hash chain.
//!
//! Writes go through one writer task per store: callers enqueue a record
//! (bounded queue) and wait for the transaction that contains it, so a
//! request record is durable before [`record_request`](AuditStore::record_request)
//! returns, yet many records share one commit (group commit). If PostgreSQL
//! cannot take a batch for longer than the configured buffer, the batch
//! fails, the store refuses every write at once (the gateway answers 503
//! and forwards nothing) and probes the database until it answers again.
//!
//! The schema (see `docs/audit.md`, "Schema") is created at open, versioned
//! in `audit_schema_version`, under an advisory lock so that instances
//! starting together do not race. Tables live in the connection's
//! `search_path` (set it with `?options=-c%20search_path%3Dmyschema` in the
//! URL to use another schema).

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions, Row};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::chain::{self, ChainHead, ChainSnapshot, ChainSource, RecordKind, StoredRecord};
use super::{
    AuditError, AuditEvent, AuditQuery, AuditRecord, AuditStore, ChainEntry, Checkpoint,
    CheckpointSigner, RequestRecord, ResponseRecord,
};

/// Current schema version (table `audit_schema_version`).
pub const POSTGRES_SCHEMA_VERSION: i32 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS audit_exchange (
    id                UUID PRIMARY KEY,
    received_at_us    BIGINT NOT NULL,
    instance          TEXT NOT NULL,
    principal_issuer  TEXT,
    principal_subject TEXT,
    principal_groups  TEXT[] NOT NULL DEFAULT '{}',
    model             TEXT,
    verdict           TEXT NOT NULL,
    decision_rules    TEXT[] NOT NULL DEFAULT '{}',
    status            INTEGER,
    complete          BOOLEAN,
    request           JSON NOT NULL,
    response          JSON
);
CREATE INDEX IF NOT EXISTS audit_exchange_time ON audit_exchange (received_at_us DESC, id DESC);
CREATE INDEX IF NOT EXISTS audit_exchange_subject ON audit_exchange (principal_subject, received_at_us DESC);
CREATE INDEX IF NOT EXISTS audit_exchange_issuer ON audit_exchange (principal_issuer, received_at_us DESC);
CREATE INDEX IF NOT EXISTS audit_exchange_groups ON audit_exchange USING GIN (principal_groups);
CREATE INDEX IF NOT EXISTS audit_exchange_rules ON audit_exchange USING GIN (decision_rules);
CREATE INDEX IF NOT EXISTS audit_exchange_verdict ON audit_exchange (verdict, received_at_us DESC);
CREATE INDEX IF NOT EXISTS audit_exchange_model ON audit_exchange (model, received_at_us DESC);
CREATE INDEX IF NOT EXISTS audit_exchange_status ON audit_exchange (status, received_at_us DESC);
CREATE INDEX IF NOT EXISTS audit_exchange_instance ON audit_exchange (instance, received_at_us DESC);
CREATE TABLE IF NOT EXISTS audit_event (
    id          UUID PRIMARY KEY,
    time_us     BIGINT NOT NULL,
    instance    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    exchange_id UUID,
    event       JSON NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_event_time ON audit_event (time_us DESC, id DESC);
CREATE INDEX IF NOT EXISTS audit_event_exchange ON audit_event (exchange_id);
CREATE TABLE IF NOT EXISTS audit_chain (
    instance       TEXT NOT NULL,
    seq            BIGINT NOT NULL,
    kind           TEXT NOT NULL,
    record_id      UUID NOT NULL,
    record_time_us BIGINT NOT NULL,
    record_hash    TEXT NOT NULL,
    prev_hash      TEXT NOT NULL,
    entry_hash     TEXT NOT NULL,
    PRIMARY KEY (instance, seq)
);
CREATE INDEX IF NOT EXISTS audit_chain_record ON audit_chain (record_id);
CREATE TABLE IF NOT EXISTS audit_checkpoint (
    id               BIGSERIAL PRIMARY KEY,
    instance         TEXT NOT NULL,
    seq              BIGINT NOT NULL,
    entry_hash       TEXT NOT NULL,
    created_at_us    BIGINT NOT NULL,
    purged_before_us BIGINT,
    key_id           TEXT NOT NULL,
    signature        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_checkpoint_instance ON audit_checkpoint (instance, seq);
";

/// Default most records per transaction.
pub const DEFAULT_BATCH_MAX: usize = 1024;
/// Default queue capacity, in records.
pub const DEFAULT_QUEUE_CAPACITY: usize = 16_384;
/// Default time a record may wait for an unreachable database before the
/// write fails (and the gateway refuses requests).
pub const DEFAULT_BUFFER: Duration = Duration::from_secs(5);
/// Default checkpoint interval, in chain entries.
pub const DEFAULT_CHECKPOINT_EVERY: u64 = 1000;
/// Default checkpoint interval in time.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);

/// How to open a [`PostgresStore`].
///
/// ```
/// use std::time::Duration;
/// use skillgate::audit::PostgresOptions;
/// let o = PostgresOptions::new("postgres://skillgate@db/skillgate", "gw-1")
///     .batch_max(512)
///     .buffer(Duration::from_secs(2));
/// assert_eq!(o.batch_max, 512);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PostgresOptions {
    /// `postgres://user@host:port/db` (add `?sslmode=require` for TLS).
    pub url: String,
    /// This instance's chain name (must be unique among running instances).
    pub instance: String,
    /// Most records per transaction (default [`DEFAULT_BATCH_MAX`]).
    pub batch_max: usize,
    /// Queue capacity in records (default [`DEFAULT_QUEUE_CAPACITY`]); a
    /// writer waits up to `buffer` for room.
    pub queue_capacity: usize,
    /// How long a record may wait for the database (default [`DEFAULT_BUFFER`]).
    pub buffer: Duration,
    /// Signs checkpoints; without it the chain is kept but not signed.
    pub signer: Option<CheckpointSigner>,
    /// Checkpoint after this many entries (default [`DEFAULT_CHECKPOINT_EVERY`]).
    pub checkpoint_every: u64,
    /// … or after this long with unsigned entries (default [`DEFAULT_CHECKPOINT_INTERVAL`]).
    pub checkpoint_interval: Duration,
    /// Pooled connections (default 4; one is the writer's).
    pub pool_size: u32,
}

impl PostgresOptions {
    /// Defaults for `url` and `instance`.
    pub fn new(url: impl Into<String>, instance: impl Into<String>) -> Self {
        PostgresOptions {
            url: url.into(),
            instance: instance.into(),
            batch_max: DEFAULT_BATCH_MAX,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            buffer: DEFAULT_BUFFER,
            signer: None,
            checkpoint_every: DEFAULT_CHECKPOINT_EVERY,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            pool_size: 4,
        }
    }
    /// Most records per transaction (at least 1).
    pub fn batch_max(mut self, n: usize) -> Self {
        self.batch_max = n.max(1);
        self
    }
    /// Queue capacity in records (at least 1).
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n.max(1);
        self
    }
    /// How long a record may wait for the database.
    pub fn buffer(mut self, d: Duration) -> Self {
        self.buffer = d;
        self
    }
    /// The checkpoint signing key.
    pub fn signer(mut self, s: CheckpointSigner) -> Self {
        self.signer = Some(s);
        self
    }
    /// Checkpoint every `n` entries (at least 1).
    pub fn checkpoint_every(mut self, n: u64) -> Self {
        self.checkpoint_every = n.max(1);
        self
    }
    /// Checkpoint at least this often while entries are unsigned.
    pub fn checkpoint_interval(mut self, d: Duration) -> Self {
        self.checkpoint_interval = d;
        self
    }
    /// Pooled connections (at least 2).
    pub fn pool_size(mut self, n: u32) -> Self {
        self.pool_size = n.max(2);
        self
    }
}

/// What [`PostgresStore::purge`] removed.
///
/// ```
/// let r = skillgate::audit::PurgeReport::default();
/// assert_eq!(r.exchanges, 0);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Exchanges deleted.
    pub exchanges: u64,
    /// Events deleted.
    pub events: u64,
    /// Chain entries deleted (each instance's chain is anchored by a signed
    /// purge checkpoint first).
    pub chain_entries: u64,
}

/// Audit records in PostgreSQL; see the [module docs](self).
///
/// ```no_run
/// use skillgate::audit::{AuditStore, PostgresOptions, PostgresStore};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = PostgresStore::open(PostgresOptions::new("postgres://postgres@127.0.0.1/test", "gw-1")).await.unwrap();
/// let recent = store.recent(10).await.unwrap();
/// # let _ = recent;
/// # });
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    tx: mpsc::Sender<Op>,
    healthy: Arc<AtomicBool>,
    buffer: Duration,
    signer: Option<CheckpointSigner>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("healthy", &self.healthy.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

type Reply = oneshot::Sender<Result<(), AuditError>>;

enum Op {
    Request {
        id: Uuid,
        doc: String,
        cols: RequestColumns,
        reply: Reply,
    },
    Response {
        id: Uuid,
        doc: String,
        status: i32,
        complete: bool,
        provisional: bool,
        reply: Reply,
    },
    Event {
        id: Uuid,
        doc: String,
        time_us: i64,
        instance: String,
        kind: String,
        exchange_id: Option<Uuid>,
        reply: Reply,
    },
    Checkpoint {
        reply: Reply,
    },
}

impl Op {
    fn fail(self, e: AuditError) {
        let reply = match self {
            Op::Request { reply, .. }
            | Op::Response { reply, .. }
            | Op::Event { reply, .. }
            | Op::Checkpoint { reply } => reply,
        };
        let _ = reply.send(Err(e));
    }
}

/// The indexed columns of an exchange, derived from the request JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RequestColumns {
    received_at_us: i64,
    instance: String,
    issuer: Option<String>,
    subject: Option<String>,
    groups: Vec<String>,
    model: Option<String>,
    verdict: String,
    rules: Vec<String>,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn str_at(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str().map(str::to_owned)
}

fn time_us(v: Option<&Value>) -> Option<i64> {
    v?.as_str()?
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_microsecond())
}

fn request_columns(v: &Value) -> Option<RequestColumns> {
    let principal = v.get("principal").filter(|p| !p.is_null());
    Some(RequestColumns {
        received_at_us: time_us(v.get("received_at"))?,
        instance: str_at(v, &["instance"])?,
        issuer: principal.and_then(|p| str_at(p, &["issuer"])),
        subject: principal.and_then(|p| str_at(p, &["subject"])),
        groups: strings(principal.and_then(|p| p.get("groups"))),
        model: str_at(v, &["model"]),
        verdict: str_at(v, &["decision", "verdict"])?,
        rules: strings(v.get("decision").and_then(|d| d.get("rules"))),
    })
}

fn response_columns(v: &Value) -> Option<(i32, bool)> {
    let status = i32::try_from(v.get("status")?.as_u64()?).ok()?;
    Some((status, v.get("complete")?.as_bool()?))
}

fn unavailable(op: &str, e: &sqlx::Error) -> AuditError {
    // PostgreSQL's messages name tables, columns and constraints; bound
    // values are never part of them.
    let detail = match e {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} (SQLSTATE {code})", db.message()),
            None => db.message().to_owned(),
        },
        sqlx::Error::Io(io) => format!("I/O error: {io}"),
        sqlx::Error::PoolTimedOut => "timed out waiting for a connection".to_owned(),
        sqlx::Error::PoolClosed => "connection pool closed".to_owned(),
        sqlx::Error::Tls(_) => "TLS error".to_owned(),
        sqlx::Error::Configuration(_) => "invalid configuration".to_owned(),
        _ => "database error".to_owned(),
    };
    AuditError::Unavailable(format!("postgres: {op}: {detail}"))
}

fn encode<T: serde::Serialize>(what: &str, v: &T) -> Result<(Value, String), AuditError> {
    let value = serde_json::to_value(v)
        .map_err(|_| AuditError::Unavailable(format!("postgres: cannot encode {what}")))?;
    let text = chain::canonical_json(&value);
    Ok((value, text))
}

impl PostgresStore {
    /// Connects, creates or upgrades the schema, reads this instance's chain
    /// head and starts the writer task (on the current Tokio runtime).
    ///
    /// # Errors
    /// [`AuditError::Unavailable`] if the database cannot be reached or the
    /// URL is invalid; [`AuditError::Corrupt`] if the schema is newer than
    /// this build.
    pub async fn open(options: PostgresOptions) -> Result<PostgresStore, AuditError> {
        let connect = PgConnectOptions::from_str(&options.url)
            .map_err(|e| unavailable("parse URL", &e))?
            .disable_statement_logging();
        let pool = PgPoolOptions::new()
            .max_connections(options.pool_size.max(2))
            .acquire_timeout(
                options
                    .buffer
                    .clamp(Duration::from_millis(200), Duration::from_secs(5)),
            )
            .connect_with(connect)
            .await
            .map_err(|e| unavailable("connect", &e))?;
        migrate(&pool).await?;
        let head = load_head(&pool, &options.instance).await?;
        let (tx, rx) = mpsc::channel(options.queue_capacity.max(1));
        let healthy = Arc::new(AtomicBool::new(true));
        let writer = Writer {
            pool: pool.clone(),
            head,
            since_checkpoint: 0,
            last_checkpoint: Instant::now(),
            healthy: healthy.clone(),
            options: options.clone(),
        };
        tokio::spawn(writer.run(rx));
        Ok(PostgresStore {
            pool,
            tx,
            healthy,
            buffer: options.buffer,
            signer: options.signer,
        })
    }

    /// The connection pool (for operations and tests).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Whether the last write reached the database (`false` while the store
    /// refuses writes because PostgreSQL is unreachable).
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::SeqCst)
    }

    async fn submit(&self, make: impl FnOnce(Reply) -> Op) -> Result<(), AuditError> {
        if !self.is_healthy() {
            return Err(AuditError::Unavailable(
                "postgres: unreachable; writes refused until it answers again".into(),
            ));
        }
        let (reply, rx) = oneshot::channel();
        match tokio::time::timeout(self.buffer, self.tx.send(make(reply))).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(AuditError::Unavailable("postgres: writer stopped".into())),
            Err(_) => {
                return Err(AuditError::Unavailable(
                    "postgres: write queue full for the whole buffer time".into(),
                ));
            }
        }
        rx.await
            .unwrap_or_else(|_| Err(AuditError::Unavailable("postgres: writer stopped".into())))
    }

    /// Signs a checkpoint over this instance's newest entry now (no-op
    /// without a signer or without new entries). Call it before a planned
    /// shutdown so the chain's tail is signed.
    ///
    /// # Errors
    /// As [`AuditStore::record_request`].
    pub async fn checkpoint(&self) -> Result<(), AuditError> {
        self.submit(|reply| Op::Checkpoint { reply }).await
    }

    /// Deletes exchanges received before `cutoff` and events older than it.
    /// For each instance's chain it first writes a signed checkpoint (with
    /// `purged_before_us` = `cutoff`) over the entry just before the first
    /// one that stays, then deletes the entries and checkpoints before it,
    /// so verification starts from that checkpoint. One transaction.
    ///
    /// # Errors
    /// [`AuditError::Unavailable`] without a signing key (a purge would make
    /// the chain unverifiable) or if the database fails.
    pub async fn purge(&self, cutoff: jiff::Timestamp) -> Result<PurgeReport, AuditError> {
        let signer = self.signer.as_ref().ok_or_else(|| {
            AuditError::Unavailable("purge needs the checkpoint signing key".into())
        })?;
        let cutoff_us = cutoff.as_microsecond();
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| unavailable("purge", &e))?;
        sqlx::query("SELECT pg_advisory_xact_lock(7339214502)")
            .execute(&mut *tx)
            .await
            .map_err(|e| unavailable("purge", &e))?;
        let instances: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT instance FROM audit_chain")
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| unavailable("purge", &e))?;
        let mut report = PurgeReport::default();
        for inst in instances {
            let keep_from: Option<i64> = sqlx::query_scalar(
                "SELECT min(seq) FROM audit_chain WHERE instance = $1 AND record_time_us >= $2",
            )
            .bind(&inst)
            .bind(cutoff_us)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| unavailable("purge", &e))?;
            let anchor: Option<(i64, String)> = match keep_from {
                Some(k) => sqlx::query_as(
                    "SELECT seq, entry_hash FROM audit_chain WHERE instance = $1 AND seq = $2",
                )
                .bind(&inst)
                .bind(k - 1)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| unavailable("purge", &e))?,
                None => sqlx::query_as(
                    "SELECT seq, entry_hash FROM audit_chain WHERE instance = $1 ORDER BY seq DESC LIMIT 1",
                )
                .bind(&inst)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| unavailable("purge", &e))?,
            };
            let Some((seq, hash)) = anchor else { continue };
            let cp = signer.sign(
                &inst,
                seq,
                hash,
                jiff::Timestamp::now().as_microsecond(),
                Some(cutoff_us),
            );
            insert_checkpoint(&mut tx, &cp).await?;
            let done = sqlx::query("DELETE FROM audit_chain WHERE instance = $1 AND seq <= $2")
                .bind(&inst)
                .bind(seq)
                .execute(&mut *tx)
                .await
                .map_err(|e| unavailable("purge", &e))?;
            report.chain_entries += done.rows_affected();
            sqlx::query("DELETE FROM audit_checkpoint WHERE instance = $1 AND seq < $2")
                .bind(&inst)
                .bind(seq)
                .execute(&mut *tx)
                .await
                .map_err(|e| unavailable("purge", &e))?;
        }
        report.exchanges = sqlx::query("DELETE FROM audit_exchange WHERE received_at_us < $1")
            .bind(cutoff_us)
            .execute(&mut *tx)
            .await
            .map_err(|e| unavailable("purge", &e))?
            .rows_affected();
        report.events = sqlx::query("DELETE FROM audit_event WHERE time_us < $1")
            .bind(cutoff_us)
            .execute(&mut *tx)
            .await
            .map_err(|e| unavailable("purge", &e))?
            .rows_affected();
        tx.commit().await.map_err(|e| unavailable("purge", &e))?;
        Ok(report)
    }
}

async fn migrate(pool: &PgPool) -> Result<(), AuditError> {
    let mut tx = pool.begin().await.map_err(|e| unavailable("migrate", &e))?;
    sqlx::query("SELECT pg_advisory_xact_lock(7339214502)")
        .execute(&mut *tx)
        .await
        .map_err(|e| unavailable("migrate", &e))?;
    sqlx::raw_sql(SCHEMA)
        .execute(&mut *tx)
        .await
        .map_err(|e| unavailable("create schema", &e))?;
    let version: Option<i32> = sqlx::query_scalar("SELECT max(version) FROM audit_schema_version")
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| unavailable("read schema version", &e))?;
    match version {
        Some(v) if v > POSTGRES_SCHEMA_VERSION => {
            return Err(AuditError::Corrupt(format!(
                "database schema version {v} is newer than supported version {POSTGRES_SCHEMA_VERSION}"
            )));
        }
        Some(_) => {}
        None => {
            sqlx::query("INSERT INTO audit_schema_version (version) VALUES ($1)")
                .bind(POSTGRES_SCHEMA_VERSION)
                .execute(&mut *tx)
                .await
                .map_err(|e| unavailable("write schema version", &e))?;
        }
    }
    tx.commit().await.map_err(|e| unavailable("migrate", &e))
}

async fn load_head(pool: &PgPool, instance: &str) -> Result<ChainHead, AuditError> {
    let row: Option<(i64, String)> = sqlx::query_as(
        "SELECT seq, entry_hash FROM audit_chain WHERE instance = $1 ORDER BY seq DESC LIMIT 1",
    )
    .bind(instance)
    .fetch_optional(pool)
    .await
    .map_err(|e| unavailable("read chain head", &e))?;
    if let Some((seq, hash)) = row {
        return Ok(ChainHead {
            instance: instance.to_owned(),
            seq,
            hash,
        });
    }
    // Everything purged: continue from the newest checkpoint.
    let cp: Option<(i64, String)> = sqlx::query_as(
        "SELECT seq, entry_hash FROM audit_checkpoint WHERE instance = $1 ORDER BY seq DESC LIMIT 1",
    )
    .bind(instance)
    .fetch_optional(pool)
    .await
    .map_err(|e| unavailable("read chain head", &e))?;
    Ok(match cp {
        Some((seq, hash)) => ChainHead {
            instance: instance.to_owned(),
            seq,
            hash,
        },
        None => ChainHead::genesis(instance),
    })
}

async fn insert_checkpoint(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    cp: &Checkpoint,
) -> Result<(), AuditError> {
    sqlx::query(
        "INSERT INTO audit_checkpoint (instance, seq, entry_hash, created_at_us, purged_before_us, key_id, signature) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
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

struct Writer {
    pool: PgPool,
    head: ChainHead,
    since_checkpoint: u64,
    last_checkpoint: Instant,
    healthy: Arc<AtomicBool>,
    options: PostgresOptions,
}

/// What one op did in a committed batch.
enum Outcome {
    Ok,
    Err(AuditError),
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Op>) {
        let mut tick = tokio::time::interval(
            self.options
                .checkpoint_interval
                .max(Duration::from_millis(100)),
        );
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let first = tokio::select! {
                op = rx.recv() => match op {
                    Some(op) => op,
                    None => break,
                },
                _ = tick.tick() => {
                    if self.since_checkpoint > 0
                        && self.options.signer.is_some()
                        && self.last_checkpoint.elapsed() >= self.options.checkpoint_interval
                    {
                        let (reply, _rx) = oneshot::channel();
                        Op::Checkpoint { reply }
                    } else {
                        continue;
                    }
                }
            };
            let mut batch = vec![first];
            while batch.len() < self.options.batch_max {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            self.process(batch, &mut rx).await;
        }
        // Senders gone: sign the tail so a clean shutdown leaves it verifiable.
        if self.since_checkpoint > 0 && self.options.signer.is_some() {
            let (reply, _rx) = oneshot::channel();
            self.process(vec![Op::Checkpoint { reply }], &mut rx).await;
        }
    }

    async fn process(&mut self, batch: Vec<Op>, rx: &mut mpsc::Receiver<Op>) {
        let deadline = Instant::now() + self.options.buffer;
        let mut last_err;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let attempt =
                tokio::time::timeout(remaining.max(Duration::from_millis(50)), self.write(&batch))
                    .await;
            match attempt {
                Ok(Ok((head, outcomes, checkpointed, n))) => {
                    self.head = head;
                    if checkpointed {
                        self.since_checkpoint = 0;
                        self.last_checkpoint = Instant::now();
                    } else {
                        self.since_checkpoint += n;
                    }
                    for (op, outcome) in batch.into_iter().zip(outcomes) {
                        match outcome {
                            Outcome::Ok => {
                                let reply = match op {
                                    Op::Request { reply, .. }
                                    | Op::Response { reply, .. }
                                    | Op::Event { reply, .. }
                                    | Op::Checkpoint { reply } => reply,
                                };
                                let _ = reply.send(Ok(()));
                            }
                            Outcome::Err(e) => op.fail(e),
                        }
                    }
                    return;
                }
                Ok(Err(e)) => last_err = e,
                Err(_) => {
                    last_err = AuditError::Unavailable(
                        "postgres: write did not finish within the buffer time".into(),
                    )
                }
            }
            // A commit whose answer was lost may still have landed: the
            // chain head in the database says.
            if let Ok(head) = load_head(&self.pool, &self.head.instance).await
                && head.seq > self.head.seq
            {
                self.head = head;
                for op in batch {
                    match op {
                        Op::Request { reply, .. }
                        | Op::Response { reply, .. }
                        | Op::Event { reply, .. }
                        | Op::Checkpoint { reply } => {
                            let _ = reply.send(Ok(()));
                        }
                    }
                }
                return;
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tracing::error!(error = %last_err, records = batch.len(), "audit: PostgreSQL unreachable past the buffer; refusing writes until it answers");
        self.healthy.store(false, Ordering::SeqCst);
        for op in batch {
            op.fail(last_err.clone());
        }
        // Refuse everything queued, probe until the database answers.
        loop {
            while let Ok(op) = rx.try_recv() {
                op.fail(last_err.clone());
            }
            let probe = tokio::time::timeout(
                Duration::from_secs(2),
                sqlx::query("SELECT 1").execute(&self.pool),
            )
            .await;
            if matches!(probe, Ok(Ok(_)))
                && let Ok(head) = load_head(&self.pool, &self.head.instance).await
            {
                self.head = head;
                self.healthy.store(true, Ordering::SeqCst);
                tracing::info!("audit: PostgreSQL answers again; accepting writes");
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// One transaction for the whole batch. Returns the new head, one
    /// outcome per op, whether a checkpoint was written, and the number of
    /// chain entries appended.
    async fn write(
        &self,
        batch: &[Op],
    ) -> Result<(ChainHead, Vec<Outcome>, bool, u64), AuditError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| unavailable("begin", &e))?;

        // 1. Requests.
        let mut ids = Vec::new();
        let mut times = Vec::new();
        let mut insts = Vec::new();
        let mut issuers: Vec<Option<String>> = Vec::new();
        let mut subjects: Vec<Option<String>> = Vec::new();
        let mut groups = Vec::new();
        let mut models: Vec<Option<String>> = Vec::new();
        let mut verdicts = Vec::new();
        let mut rules = Vec::new();
        let mut docs = Vec::new();
        for op in batch {
            if let Op::Request { id, doc, cols, .. } = op {
                ids.push(id.hyphenated().to_string());
                times.push(cols.received_at_us);
                insts.push(cols.instance.clone());
                issuers.push(cols.issuer.clone());
                subjects.push(cols.subject.clone());
                groups.push(serde_json::to_string(&cols.groups).unwrap_or_else(|_| "[]".into()));
                models.push(cols.model.clone());
                verdicts.push(cols.verdict.clone());
                rules.push(serde_json::to_string(&cols.rules).unwrap_or_else(|_| "[]".into()));
                docs.push(doc.clone());
            }
        }
        let mut inserted: HashSet<Uuid> = HashSet::new();
        if !ids.is_empty() {
            let rows: Vec<String> = sqlx::query_scalar(
                "INSERT INTO audit_exchange (id, received_at_us, instance, principal_issuer, principal_subject, \
                 principal_groups, model, verdict, decision_rules, request) \
                 SELECT u.id::uuid, u.t, u.inst, u.iss, u.sub, \
                   ARRAY(SELECT json_array_elements_text(u.g::json)), u.model, u.verdict, \
                   ARRAY(SELECT json_array_elements_text(u.r::json)), u.doc::json \
                 FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::text[], \
                   $7::text[], $8::text[], $9::text[], $10::text[]) \
                   AS u(id, t, inst, iss, sub, g, model, verdict, r, doc) \
                 ON CONFLICT (id) DO NOTHING RETURNING id::text",
            )
            .bind(&ids)
            .bind(&times)
            .bind(&insts)
            .bind(&issuers)
            .bind(&subjects)
            .bind(&groups)
            .bind(&models)
            .bind(&verdicts)
            .bind(&rules)
            .bind(&docs)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| unavailable("record requests", &e))?;
            inserted = rows
                .iter()
                .filter_map(|s| Uuid::parse_str(s).ok())
                .collect();
        }

        // 2. Responses: a final record wins over a provisional one in the
        // same batch; the last final per id wins.
        let mut last_final: HashMap<Uuid, usize> = HashMap::new();
        let mut first_provisional: HashMap<Uuid, usize> = HashMap::new();
        for (i, op) in batch.iter().enumerate() {
            if let Op::Response {
                id, provisional, ..
            } = op
            {
                if *provisional {
                    first_provisional.entry(*id).or_insert(i);
                } else {
                    last_final.insert(*id, i);
                }
            }
        }
        first_provisional.retain(|id, _| !last_final.contains_key(id));
        let mut response_time: HashMap<Uuid, i64> = HashMap::new();
        for (set, provisional) in [(&first_provisional, true), (&last_final, false)] {
            if set.is_empty() {
                continue;
            }
            let mut ids = Vec::new();
            let mut docs = Vec::new();
            let mut statuses = Vec::new();
            let mut completes = Vec::new();
            for &i in set.values() {
                if let Op::Response {
                    id,
                    doc,
                    status,
                    complete,
                    ..
                } = &batch[i]
                {
                    ids.push(id.hyphenated().to_string());
                    docs.push(doc.clone());
                    statuses.push(*status);
                    completes.push(*complete);
                }
            }
            let only_empty = if provisional {
                " AND e.response IS NULL"
            } else {
                ""
            };
            let rows: Vec<(String, i64)> = sqlx::query_as(&format!(
                "UPDATE audit_exchange e SET response = u.doc::json, status = u.status, complete = u.complete \
                 FROM UNNEST($1::text[], $2::text[], $3::int4[], $4::bool[]) AS u(id, doc, status, complete) \
                 WHERE e.id = u.id::uuid{only_empty} RETURNING e.id::text, e.received_at_us"
            ))
            .bind(&ids)
            .bind(&docs)
            .bind(&statuses)
            .bind(&completes)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| unavailable("record responses", &e))?;
            for (id, t) in rows {
                if let Ok(id) = Uuid::parse_str(&id) {
                    response_time.insert(id, t);
                }
            }
        }

        // 3. Events.
        let mut ev_ids = Vec::new();
        let mut ev_times = Vec::new();
        let mut ev_insts = Vec::new();
        let mut ev_kinds = Vec::new();
        let mut ev_exchanges: Vec<Option<String>> = Vec::new();
        let mut ev_docs = Vec::new();
        for op in batch {
            if let Op::Event {
                id,
                doc,
                time_us,
                instance,
                kind,
                exchange_id,
                ..
            } = op
            {
                ev_ids.push(id.hyphenated().to_string());
                ev_times.push(*time_us);
                ev_insts.push(instance.clone());
                ev_kinds.push(kind.clone());
                ev_exchanges.push(exchange_id.map(|x| x.hyphenated().to_string()));
                ev_docs.push(doc.clone());
            }
        }
        let mut events_inserted: HashSet<Uuid> = HashSet::new();
        if !ev_ids.is_empty() {
            let rows: Vec<String> = sqlx::query_scalar(
                "INSERT INTO audit_event (id, time_us, instance, kind, exchange_id, event) \
                 SELECT u.id::uuid, u.t, u.inst, u.kind, u.x::uuid, u.doc::json \
                 FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::text[]) \
                   AS u(id, t, inst, kind, x, doc) \
                 ON CONFLICT (id) DO NOTHING RETURNING id::text",
            )
            .bind(&ev_ids)
            .bind(&ev_times)
            .bind(&ev_insts)
            .bind(&ev_kinds)
            .bind(&ev_exchanges)
            .bind(&ev_docs)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| unavailable("record events", &e))?;
            events_inserted = rows
                .iter()
                .filter_map(|s| Uuid::parse_str(s).ok())
                .collect();
        }

        // 4. Chain entries, in queue order, for what was written.
        let mut head = self.head.clone();
        let mut entries: Vec<ChainEntry> = Vec::new();
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut want_checkpoint = false;
        for (i, op) in batch.iter().enumerate() {
            match op {
                Op::Request { id, doc, cols, .. } => {
                    if inserted.remove(id) {
                        entries.push(head.append(
                            RecordKind::Request,
                            *id,
                            cols.received_at_us,
                            chain::sha256_hex(doc.as_bytes()),
                        ));
                        outcomes.push(Outcome::Ok);
                    } else {
                        outcomes.push(Outcome::Err(AuditError::Unavailable(
                            "postgres: a record with this id exists".into(),
                        )));
                    }
                }
                Op::Response {
                    id,
                    doc,
                    provisional,
                    ..
                } => {
                    let chosen = if *provisional {
                        first_provisional.get(id) == Some(&i)
                    } else {
                        last_final.get(id) == Some(&i)
                    };
                    match response_time.get(id) {
                        Some(t) if chosen => {
                            entries.push(head.append(
                                RecordKind::Response,
                                *id,
                                *t,
                                chain::sha256_hex(doc.as_bytes()),
                            ));
                            outcomes.push(Outcome::Ok);
                        }
                        // Superseded within the batch, or a provisional
                        // record arriving after the final one: nothing to write.
                        _ if !*provisional && !chosen => outcomes.push(Outcome::Ok),
                        _ if *provisional => outcomes.push(Outcome::Ok),
                        _ => outcomes.push(Outcome::Err(AuditError::UnknownId)),
                    }
                }
                Op::Event {
                    id, doc, time_us, ..
                } => {
                    if events_inserted.remove(id) {
                        entries.push(head.append(
                            RecordKind::Event,
                            *id,
                            *time_us,
                            chain::sha256_hex(doc.as_bytes()),
                        ));
                        outcomes.push(Outcome::Ok);
                    } else {
                        outcomes.push(Outcome::Err(AuditError::Unavailable(
                            "postgres: an event with this id exists".into(),
                        )));
                    }
                }
                Op::Checkpoint { .. } => {
                    want_checkpoint = true;
                    outcomes.push(Outcome::Ok);
                }
            }
        }
        if !entries.is_empty() {
            let mut seqs = Vec::new();
            let mut kinds = Vec::new();
            let mut rids = Vec::new();
            let mut rtimes = Vec::new();
            let mut rhashes = Vec::new();
            let mut prevs = Vec::new();
            let mut hashes = Vec::new();
            for e in &entries {
                seqs.push(e.seq);
                kinds.push(e.kind.as_str());
                rids.push(e.record_id.hyphenated().to_string());
                rtimes.push(e.record_time_us);
                rhashes.push(e.record_hash.as_str());
                prevs.push(e.prev_hash.as_str());
                hashes.push(e.entry_hash.as_str());
            }
            sqlx::query(
                "INSERT INTO audit_chain (instance, seq, kind, record_id, record_time_us, record_hash, prev_hash, entry_hash) \
                 SELECT $1, u.seq, u.kind, u.rid::uuid, u.t, u.rh, u.prev, u.h \
                 FROM UNNEST($2::int8[], $3::text[], $4::text[], $5::int8[], $6::text[], $7::text[], $8::text[]) \
                   AS u(seq, kind, rid, t, rh, prev, h)",
            )
            .bind(&head.instance)
            .bind(&seqs)
            .bind(&kinds)
            .bind(&rids)
            .bind(&rtimes)
            .bind(&rhashes)
            .bind(&prevs)
            .bind(&hashes)
            .execute(&mut *tx)
            .await
            .map_err(|e| unavailable("write chain", &e))?;
        }
        let n = entries.len() as u64;
        let due = self.since_checkpoint + n >= self.options.checkpoint_every
            || (want_checkpoint && self.since_checkpoint + n > 0);
        let mut checkpointed = false;
        if let Some(signer) = &self.options.signer
            && due
            && head.seq > 0
        {
            let cp = signer.sign(
                &head.instance,
                head.seq,
                head.hash.clone(),
                jiff::Timestamp::now().as_microsecond(),
                None,
            );
            insert_checkpoint(&mut tx, &cp).await?;
            checkpointed = true;
        }
        tx.commit().await.map_err(|e| unavailable("commit", &e))?;
        Ok((head, outcomes, checkpointed, n))
    }
}

fn decode_exchange(request: &str, response: Option<&str>) -> Result<AuditRecord, AuditError> {
    let request: RequestRecord = serde_json::from_str(request)
        .map_err(|_| AuditError::Corrupt("audit_exchange.request: not a request record".into()))?;
    let response = match response {
        Some(r) => Some(serde_json::from_str::<ResponseRecord>(r).map_err(|_| {
            AuditError::Corrupt("audit_exchange.response: not a response record".into())
        })?),
        None => None,
    };
    Ok(AuditRecord { request, response })
}

fn decode_rows(rows: &[PgRow]) -> Result<Vec<AuditRecord>, AuditError> {
    rows.iter()
        .map(|row| {
            let req: String = row
                .try_get("request")
                .map_err(|_| AuditError::Corrupt("audit_exchange.request".into()))?;
            let res: Option<String> = row
                .try_get("response")
                .map_err(|_| AuditError::Corrupt("audit_exchange.response".into()))?;
            decode_exchange(&req, res.as_deref())
        })
        .collect()
}

const SELECT_EXCHANGE: &str =
    "SELECT request::text AS request, response::text AS response FROM audit_exchange";

#[async_trait]
impl AuditStore for PostgresStore {
    async fn record_request(&self, record: &RequestRecord) -> Result<(), AuditError> {
        let (value, doc) = encode("request record", record)?;
        let cols = request_columns(&value).ok_or_else(|| {
            AuditError::Unavailable("postgres: request record lacks fields".into())
        })?;
        let id = record.id;
        self.submit(|reply| Op::Request {
            id,
            doc,
            cols,
            reply,
        })
        .await
    }

    async fn record_response(&self, record: &ResponseRecord) -> Result<(), AuditError> {
        let (_, doc) = encode("response record", record)?;
        let id = record.id;
        let (status, complete) = (i32::from(record.status), record.complete);
        self.submit(|reply| Op::Response {
            id,
            doc,
            status,
            complete,
            provisional: false,
            reply,
        })
        .await
    }

    async fn record_response_started(&self, record: &ResponseRecord) -> Result<(), AuditError> {
        let (_, doc) = encode("response record", record)?;
        let id = record.id;
        self.submit(|reply| Op::Response {
            id,
            doc,
            status: i32::from(record.status),
            complete: false,
            provisional: true,
            reply,
        })
        .await
    }

    async fn get(&self, id: Uuid) -> Result<Option<AuditRecord>, AuditError> {
        let row = sqlx::query(&format!("{SELECT_EXCHANGE} WHERE id = $1::uuid"))
            .bind(id.hyphenated().to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| unavailable("read record", &e))?;
        Ok(decode_rows(row.as_slice())?.pop())
    }

    async fn recent(&self, limit: usize) -> Result<Vec<AuditRecord>, AuditError> {
        self.query(&AuditQuery::new().limit(limit)).await
    }

    async fn query(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>, AuditError> {
        let mut sql = sqlx::QueryBuilder::<sqlx::Postgres>::new(SELECT_EXCHANGE);
        sql.push(" WHERE TRUE");
        if let Some(v) = &q.subject {
            sql.push(" AND principal_subject = ").push_bind(v.clone());
        }
        if let Some(v) = &q.issuer {
            sql.push(" AND principal_issuer = ").push_bind(v.clone());
        }
        if let Some(v) = &q.group {
            sql.push(" AND principal_groups @> ARRAY[")
                .push_bind(v.clone())
                .push("]::text[]");
        }
        if let Some(t) = q.since {
            sql.push(" AND received_at_us >= ")
                .push_bind(t.as_microsecond());
        }
        if let Some(t) = q.until {
            sql.push(" AND received_at_us < ")
                .push_bind(t.as_microsecond());
        }
        if let Some(v) = q.verdict {
            sql.push(" AND verdict = ").push_bind(v.as_str());
        }
        if let Some(v) = &q.model {
            sql.push(" AND model = ").push_bind(v.clone());
        }
        if let Some(v) = &q.rule {
            sql.push(" AND decision_rules @> ARRAY[")
                .push_bind(v.clone())
                .push("]::text[]");
        }
        if let Some(v) = q.status {
            sql.push(" AND status = ").push_bind(i32::from(v));
        }
        if let Some(v) = &q.instance {
            sql.push(" AND instance = ").push_bind(v.clone());
        }
        sql.push(" ORDER BY received_at_us DESC, id DESC LIMIT ")
            .push_bind(i64::try_from(q.limit).unwrap_or(i64::MAX));
        let rows = sql
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(|e| unavailable("query records", &e))?;
        decode_rows(&rows)
    }

    async fn record_event(&self, event: &AuditEvent) -> Result<(), AuditError> {
        let (_, doc) = encode("event", event)?;
        let (id, time_us, instance, kind, exchange_id) = (
            event.id,
            event.time.as_microsecond(),
            event.instance.clone(),
            event.kind.clone(),
            event.exchange_id,
        );
        self.submit(|reply| Op::Event {
            id,
            doc,
            time_us,
            instance,
            kind,
            exchange_id,
            reply,
        })
        .await
    }

    async fn recent_events(&self, limit: usize) -> Result<Vec<AuditEvent>, AuditError> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT event::text FROM audit_event ORDER BY time_us DESC, id DESC LIMIT $1",
        )
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| unavailable("read events", &e))?;
        rows.iter()
            .map(|r| {
                serde_json::from_str(r)
                    .map_err(|_| AuditError::Corrupt("audit_event.event: not an event".into()))
            })
            .collect()
    }
}

fn hash_of(text: &str) -> Option<(Value, String)> {
    let v: Value = serde_json::from_str(text).ok()?;
    let h = chain::record_hash(&v);
    Some((v, h))
}

#[async_trait]
impl ChainSource for PostgresStore {
    async fn chain_snapshot(&self) -> Result<ChainSnapshot, AuditError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| unavailable("verify", &e))?;
        // One consistent view of all tables.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(|e| unavailable("verify", &e))?;
        let mut snap = ChainSnapshot::default();
        let rows = sqlx::query(
            "SELECT instance, seq, kind, record_id::text AS record_id, record_time_us, record_hash, prev_hash, entry_hash FROM audit_chain",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| unavailable("read chain", &e))?;
        snap.entries
            .extend(rows.iter().map(chain::rows::chain_entry));
        let rows = sqlx::query(
            "SELECT instance, seq, entry_hash, created_at_us, purged_before_us, key_id, signature FROM audit_checkpoint",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| unavailable("read checkpoints", &e))?;
        snap.checkpoints
            .extend(rows.iter().map(chain::rows::checkpoint));
        let rows = sqlx::query(
            "SELECT id::text AS id, received_at_us, instance, principal_issuer, principal_subject, principal_groups, \
             model, verdict, decision_rules, status, complete, request::text AS request, response::text AS response \
             FROM audit_exchange",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| unavailable("read records", &e))?;
        for r in rows {
            let id: String = r.try_get("id").unwrap_or_default();
            let id = Uuid::parse_str(&id).unwrap_or_default();
            let req: String = r.try_get("request").unwrap_or_default();
            let (hash, agree) = match hash_of(&req) {
                Some((v, h)) => {
                    let stored = RequestColumns {
                        received_at_us: r.try_get("received_at_us").unwrap_or_default(),
                        instance: r.try_get("instance").unwrap_or_default(),
                        issuer: r.try_get("principal_issuer").unwrap_or_default(),
                        subject: r.try_get("principal_subject").unwrap_or_default(),
                        groups: r.try_get("principal_groups").unwrap_or_default(),
                        model: r.try_get("model").unwrap_or_default(),
                        verdict: r.try_get("verdict").unwrap_or_default(),
                        rules: r.try_get("decision_rules").unwrap_or_default(),
                    };
                    let id_ok =
                        str_at(&v, &["id"]).as_deref() == Some(&id.hyphenated().to_string());
                    (h, id_ok && request_columns(&v).as_ref() == Some(&stored))
                }
                None => (String::new(), false),
            };
            snap.records.push(StoredRecord {
                kind: RecordKind::Request,
                id,
                hash,
                columns_agree: agree,
            });
            let res: Option<String> = r.try_get("response").unwrap_or_default();
            if let Some(res) = res {
                let status: Option<i32> = r.try_get("status").unwrap_or_default();
                let complete: Option<bool> = r.try_get("complete").unwrap_or_default();
                let (hash, agree) = match hash_of(&res) {
                    Some((v, h)) => {
                        let id_ok =
                            str_at(&v, &["id"]).as_deref() == Some(&id.hyphenated().to_string());
                        let cols = response_columns(&v);
                        let agree = id_ok
                            && cols.is_some_and(|(s, c)| Some(s) == status && Some(c) == complete);
                        (h, agree)
                    }
                    None => (String::new(), false),
                };
                snap.records.push(StoredRecord {
                    kind: RecordKind::Response,
                    id,
                    hash,
                    columns_agree: agree,
                });
            }
        }
        let rows =
            sqlx::query("SELECT id::text AS id, time_us, event::text AS event FROM audit_event")
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| unavailable("read events", &e))?;
        for r in rows {
            let id: String = r.try_get("id").unwrap_or_default();
            let id = Uuid::parse_str(&id).unwrap_or_default();
            let ev: String = r.try_get("event").unwrap_or_default();
            let t: i64 = r.try_get("time_us").unwrap_or_default();
            let (hash, agree) = match hash_of(&ev) {
                Some((v, h)) => (
                    h,
                    str_at(&v, &["id"]).as_deref() == Some(&id.hyphenated().to_string())
                        && time_us(v.get("time")) == Some(t),
                ),
                None => (String::new(), false),
            };
            snap.records.push(StoredRecord {
                kind: RecordKind::Event,
                id,
                hash,
                columns_agree: agree,
            });
        }
        tx.commit().await.map_err(|e| unavailable("verify", &e))?;
        Ok(snap)
    }
}
