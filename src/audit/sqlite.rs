//! [`SqliteStore`]: the embedded, single-instance [`AuditStore`] (SQLite via sqlx).
//!
//! One row per exchange in the table `audit_exchange`. The request columns are
//! written by [`record_request`](AuditStore::record_request) before the request
//! is forwarded; the response columns stay `NULL` until
//! [`record_response`](AuditStore::record_response) fills them in.
//!
//! The schema uses only portable types (`TEXT`, `INTEGER`, `BLOB`) so that a
//! PostgreSQL store can mirror it column for column (`TEXT`, `BIGINT`, `BYTEA`).
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `id` | `TEXT PRIMARY KEY` | exchange id, hyphenated UUID (v7) |
//! | `received_at` | `TEXT NOT NULL` | when the request arrived, RFC 3339 UTC with 6 fractional digits |
//! | `received_at_us` | `INTEGER NOT NULL` | the same instant in µs since the Unix epoch (indexed; ordering key) |
//! | `instance` | `TEXT NOT NULL` | gateway instance that handled the exchange |
//! | `principal_issuer` | `TEXT` | caller's `iss`; `NULL` when identity failed |
//! | `principal_subject` | `TEXT` | caller's `sub`; `NULL` when identity failed |
//! | `principal_groups` | `TEXT` | caller's groups as a JSON array; `NULL` when identity failed |
//! | `principal_json` | `TEXT` | the whole [`Principal`] as JSON (claims included); `NULL` when identity failed |
//! | `method` | `TEXT NOT NULL` | HTTP method |
//! | `path` | `TEXT NOT NULL` | path and query string |
//! | `model` | `TEXT` | Messages `model`, if the body named one |
//! | `stream` | `INTEGER NOT NULL` | `1` if the body asked for `"stream": true`, else `0` |
//! | `verdict` | `TEXT NOT NULL` | `'allow'` or `'deny'` |
//! | `decision_reason` | `TEXT` | why, in words for the audit reader |
//! | `decision_rules` | `TEXT NOT NULL` | ids of the matched rules, as a JSON array |
//! | `request_body` | `BLOB NOT NULL` | request body as forwarded (or as received, when refused) |
//! | `completed_at` | `TEXT` | when the response ended, RFC 3339 UTC with 6 fractional digits; `NULL` until the response is recorded |
//! | `status` | `INTEGER` | HTTP status sent to the client |
//! | `upstream_request_id` | `TEXT` | upstream `request-id` header |
//! | `response_body` | `BLOB` | response body as delivered (for SSE, the event stream), up to the capture limit |
//! | `response_body_truncated` | `INTEGER` | `1` if `response_body` was cut at the capture limit |
//! | `response_text` | `TEXT` | for SSE: the text the client received |
//! | `usage_json` | `TEXT` | the response `usage` object as JSON |
//! | `complete` | `INTEGER` | `1` if the response was delivered whole, `0` if the client or stream went away |
//! | `ttfb_us` | `INTEGER` | µs from request received to response headers |
//! | `latency_us` | `INTEGER` | µs from request received to the end of the response body |
//!
//! Indexes: `(principal_issuer, principal_subject, received_at_us)`,
//! `(received_at_us)`, `(verdict)`, `(model)`. The schema version is kept in
//! `PRAGMA user_version` (currently `3`).
//!
//! With [`SqliteStore::chained`] (what the gateway uses), every record
//! half also gets a hash-chain entry in `audit_chain` and periodic signed
//! checkpoints in `audit_checkpoint` (see `docs/audit.md`).
//!
//! Timestamps are stored with microsecond precision: sub-microsecond digits of
//! a record's timestamps are dropped.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, Row};
use uuid::Uuid;

use super::{
    AuditError, AuditEvent, AuditQuery, AuditRecord, AuditStore, DecisionRecord, RequestRecord,
    ResponseRecord, Verdict,
};
use crate::identity::Principal;

/// Current schema version, stored in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 3;

/// Version 1 → 2: redaction findings on the response.
const MIGRATE_1_TO_2: &str = "ALTER TABLE audit_exchange ADD COLUMN findings_json TEXT;";

/// Version 2 → 3: per-chunk delivery timing of the response (for replay)
/// and the encrypted raw bodies.
const MIGRATE_2_TO_3: &str = "ALTER TABLE audit_exchange ADD COLUMN chunks_json TEXT;
ALTER TABLE audit_exchange ADD COLUMN request_raw_json TEXT;
ALTER TABLE audit_exchange ADD COLUMN response_raw_json TEXT;";

/// How long a connection waits for another writer's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an operation waits for a free pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Pooled connections for a file database (SQLite serializes writers anyway).
const FILE_POOL_SIZE: u32 = 4;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_exchange (
    id                      TEXT PRIMARY KEY NOT NULL,
    received_at             TEXT NOT NULL,
    received_at_us          INTEGER NOT NULL,
    instance                TEXT NOT NULL,
    principal_issuer        TEXT,
    principal_subject       TEXT,
    principal_groups        TEXT,
    principal_json          TEXT,
    method                  TEXT NOT NULL,
    path                    TEXT NOT NULL,
    model                   TEXT,
    stream                  INTEGER NOT NULL,
    verdict                 TEXT NOT NULL CHECK (verdict IN ('allow', 'deny')),
    decision_reason         TEXT,
    decision_rules          TEXT NOT NULL,
    request_body            BLOB NOT NULL,
    completed_at            TEXT,
    status                  INTEGER,
    upstream_request_id     TEXT,
    response_body           BLOB,
    response_body_truncated INTEGER,
    response_text           TEXT,
    usage_json              TEXT,
    complete                INTEGER,
    ttfb_us                 INTEGER,
    latency_us              INTEGER,
    findings_json           TEXT,
    chunks_json             TEXT,
    request_raw_json        TEXT,
    response_raw_json       TEXT
);
CREATE TABLE IF NOT EXISTS audit_event (
    id          TEXT PRIMARY KEY NOT NULL,
    time        TEXT NOT NULL,
    time_us     INTEGER NOT NULL,
    instance    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    exchange_id TEXT,
    actor_json  TEXT,
    detail_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_event_time ON audit_event (time_us);
CREATE INDEX IF NOT EXISTS audit_event_exchange ON audit_event (exchange_id);
CREATE INDEX IF NOT EXISTS audit_exchange_principal_time
    ON audit_exchange (principal_issuer, principal_subject, received_at_us);
CREATE INDEX IF NOT EXISTS audit_exchange_time ON audit_exchange (received_at_us);
CREATE INDEX IF NOT EXISTS audit_exchange_verdict ON audit_exchange (verdict);
CREATE INDEX IF NOT EXISTS audit_exchange_model ON audit_exchange (model);
CREATE TABLE IF NOT EXISTS audit_chain (
    instance       TEXT NOT NULL,
    seq            INTEGER NOT NULL,
    kind           TEXT NOT NULL,
    record_id      TEXT NOT NULL,
    record_time_us INTEGER NOT NULL,
    record_hash    TEXT NOT NULL,
    prev_hash      TEXT NOT NULL,
    entry_hash     TEXT NOT NULL,
    PRIMARY KEY (instance, seq)
);
CREATE TABLE IF NOT EXISTS audit_checkpoint (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    instance         TEXT NOT NULL,
    seq              INTEGER NOT NULL,
    entry_hash       TEXT NOT NULL,
    created_at_us    INTEGER NOT NULL,
    purged_before_us INTEGER,
    key_id           TEXT NOT NULL,
    signature        TEXT NOT NULL
);
";

const INSERT_REQUEST: &str = "
INSERT INTO audit_exchange (
    id, received_at, received_at_us, instance,
    principal_issuer, principal_subject, principal_groups, principal_json,
    method, path, model, stream,
    verdict, decision_reason, decision_rules, request_body, request_raw_json
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

const UPDATE_RESPONSE: &str = "
UPDATE audit_exchange SET
    completed_at = ?, status = ?, upstream_request_id = ?,
    response_body = ?, response_body_truncated = ?, response_text = ?,
    usage_json = ?, complete = ?, ttfb_us = ?, latency_us = ?, findings_json = ?,
    chunks_json = ?, response_raw_json = ?
WHERE id = ?";

const INSERT_EVENT: &str = "
INSERT INTO audit_event (id, time, time_us, instance, kind, exchange_id, actor_json, detail_json)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)";

const SELECT_COLUMNS: &str = "
SELECT id, received_at, instance, principal_json, method, path, model, stream,
       verdict, decision_reason, decision_rules, request_body,
       completed_at, status, upstream_request_id, response_body,
       response_body_truncated, response_text, usage_json, complete, ttfb_us, latency_us,
       findings_json, chunks_json, request_raw_json, response_raw_json
FROM audit_exchange";

/// The embedded default [`AuditStore`]: one SQLite database file, shared by
/// the requests of one gateway instance (several processes may open the same
/// file; SQLite serializes their writes).
///
/// [`open`](Self::open) uses the WAL journal with `synchronous = FULL`, so a
/// request record is on disk when [`record_request`](AuditStore::record_request)
/// returns, and survives a process kill.
///
/// Records live in one table, `audit_exchange`, one row per exchange keyed by
/// the exchange id; the response columns are `NULL` until the response is
/// recorded. Timestamps are kept to the microsecond. Bodies are stored as
/// `BLOB`s exactly as they passed; they never appear in errors or logs.
///
/// ```
/// use skillgate::audit::{AuditStore, DecisionRecord, RequestRecord, ResponseRecord, SqliteStore};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = SqliteStore::in_memory().await?;
///
/// let mut req = RequestRecord::new("POST", "/v1/messages", DecisionRecord::allow());
/// req.body = bytes::Bytes::from_static(br#"{"model":"claude-sonnet-4-5"}"#);
/// store.record_request(&req).await?;
///
/// let mut res = ResponseRecord::new(req.id, 200);
/// res.body = bytes::Bytes::from_static(br#"{"type":"message"}"#);
/// store.record_response(&res).await?;
///
/// let rec = store.get(req.id).await?.expect("recorded");
/// assert!(rec.is_complete());
/// assert_eq!(rec.response.map(|r| r.status), Some(200));
/// assert_eq!(store.recent(10).await?.len(), 1);
/// # Ok::<(), skillgate::audit::AuditError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// The hash chain, when enabled with [`SqliteStore::chained`].
    chain: Option<std::sync::Arc<chain::SqliteChain>>,
}

#[path = "sqlite_chain.rs"]
mod chain;

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path` and applies
    /// the schema (idempotent).
    ///
    /// Connections use the WAL journal, `synchronous = FULL` (a committed
    /// request record survives a process kill), a 5 s busy timeout and
    /// foreign keys on.
    ///
    /// # Errors
    /// [`AuditError::Unavailable`] if the file cannot be opened or created,
    /// or the schema cannot be applied; [`AuditError::Corrupt`] if the file
    /// holds a newer schema version than this build understands.
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteStore, AuditError> {
        let base = SqliteConnectOptions::new()
            .filename(path.as_ref())
            .create_if_missing(true)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .disable_statement_logging();

        // Switching to WAL needs an exclusive lock that the busy timeout does
        // not wait for, and WAL is persistent in the file: switch once, on a
        // bootstrap connection, then let pooled connections inherit it.
        let mut conn = connect_with_retry(&base.clone().journal_mode(SqliteJournalMode::Wal))
            .await
            .map_err(|e| unavailable("open database", &e))?;
        let applied = apply_schema(&mut conn).await;
        let closed = conn.close().await;
        applied?;
        closed.map_err(|e| unavailable("close bootstrap connection", &e))?;

        let pool = SqlitePoolOptions::new()
            .max_connections(FILE_POOL_SIZE)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(base)
            .await
            .map_err(|e| unavailable("open database", &e))?;
        Ok(SqliteStore { pool, chain: None })
    }

    /// A private in-memory database (one connection, for tests and examples).
    ///
    /// Its records live as long as the store (and its clones).
    ///
    /// # Errors
    /// [`AuditError::Unavailable`] if SQLite cannot open the database.
    pub async fn in_memory() -> Result<SqliteStore, AuditError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(|e| unavailable("in-memory options", &e))?
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .disable_statement_logging();
        // One connection that is never recycled: closing it would drop the data.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| unavailable("open in-memory database", &e))?;
        {
            let mut conn = pool
                .acquire()
                .await
                .map_err(|e| unavailable("open in-memory database", &e))?;
            apply_schema(&mut conn).await?;
        }
        Ok(SqliteStore { pool, chain: None })
    }
}

/// Connects, retrying briefly while another process holds the lock needed
/// to switch the journal mode.
async fn connect_with_retry(
    options: &SqliteConnectOptions,
) -> Result<sqlx::SqliteConnection, sqlx::Error> {
    let mut attempt = 0u32;
    loop {
        match options.connect().await {
            Err(e) if is_busy(&e) && attempt < 50 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

fn is_busy(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes.
            db.code()
                .and_then(|c| c.parse::<i32>().ok())
                .is_some_and(|c| matches!(c & 0xff, 5 | 6))
        }
        _ => false,
    }
}

async fn apply_schema(conn: &mut sqlx::SqliteConnection) -> Result<(), AuditError> {
    let mut tx = conn
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(|e| unavailable("apply schema", &e))?;
    let version: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| unavailable("read schema version", &e))?;
    if version > SCHEMA_VERSION {
        return Err(AuditError::Corrupt(format!(
            "database schema version {version} is newer than supported version {SCHEMA_VERSION}"
        )));
    }
    if version == 1 {
        sqlx::raw_sql(MIGRATE_1_TO_2)
            .execute(&mut *tx)
            .await
            .map_err(|e| unavailable("migrate schema 1 to 2", &e))?;
    }
    if version == 1 || version == 2 {
        sqlx::raw_sql(MIGRATE_2_TO_3)
            .execute(&mut *tx)
            .await
            .map_err(|e| unavailable("migrate schema 2 to 3", &e))?;
    }
    sqlx::raw_sql(SCHEMA)
        .execute(&mut *tx)
        .await
        .map_err(|e| unavailable("apply schema", &e))?;
    if version < SCHEMA_VERSION {
        // PRAGMA takes no bound parameters; the value is a constant.
        sqlx::raw_sql(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
            .execute(&mut *tx)
            .await
            .map_err(|e| unavailable("write schema version", &e))?;
    }
    tx.commit()
        .await
        .map_err(|e| unavailable("apply schema", &e))
}

/// Maps a sqlx error to [`AuditError::Unavailable`]. SQLite's messages name
/// tables, columns and constraints, never bound values, so no body content
/// can leak into them.
fn unavailable(op: &str, e: &sqlx::Error) -> AuditError {
    let detail = match e {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} (code {code})", db.message()),
            None => db.message().to_owned(),
        },
        sqlx::Error::Io(io) => format!("I/O error: {io}"),
        sqlx::Error::PoolTimedOut => "timed out waiting for a connection".to_owned(),
        sqlx::Error::PoolClosed => "connection pool closed".to_owned(),
        sqlx::Error::WorkerCrashed => "database worker crashed".to_owned(),
        sqlx::Error::Configuration(c) => format!("configuration: {c}"),
        _ => "database error".to_owned(),
    };
    AuditError::Unavailable(format!("sqlite: {op}: {detail}"))
}

fn corrupt(column: &str, what: impl std::fmt::Display) -> AuditError {
    AuditError::Corrupt(format!("audit_exchange.{column}: {what}"))
}

fn to_json<T: serde::Serialize + ?Sized>(what: &str, v: &T) -> Result<String, AuditError> {
    // Serializing our own types to JSON cannot fail in practice; say which field if it does.
    serde_json::to_string(v)
        .map_err(|_| AuditError::Unavailable(format!("sqlite: cannot encode {what} as JSON")))
}

/// `µs since epoch` and its RFC 3339 text, truncated to the microsecond.
fn encode_time(ts: jiff::Timestamp) -> (i64, String) {
    let us = ts.as_microsecond();
    let text = jiff::Timestamp::from_microsecond(us)
        .map(|t| {
            jiff::fmt::temporal::DateTimePrinter::new()
                .precision(Some(6))
                .timestamp_to_string(&t)
        })
        .unwrap_or_else(|_| ts.to_string());
    (us, text)
}

fn decode_time(column: &str, text: &str) -> Result<jiff::Timestamp, AuditError> {
    text.parse::<jiff::Timestamp>()
        .map_err(|_| corrupt(column, "not an RFC 3339 timestamp"))
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn get<'r, T>(row: &'r SqliteRow, column: &str) -> Result<T, AuditError>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get::<T, _>(column)
        .map_err(|_| corrupt(column, "unexpected type or NULL"))
}

fn decode_row(row: &SqliteRow) -> Result<AuditRecord, AuditError> {
    let id_text: String = get(row, "id")?;
    let id = Uuid::parse_str(&id_text).map_err(|_| corrupt("id", "not a UUID"))?;

    let received_at = decode_time("received_at", &get::<String>(row, "received_at")?)?;
    let principal = match get::<Option<String>>(row, "principal_json")? {
        Some(json) => Some(
            serde_json::from_str::<Principal>(&json)
                .map_err(|_| corrupt("principal_json", "not a principal JSON object"))?,
        ),
        None => None,
    };
    let verdict_text: String = get(row, "verdict")?;
    let verdict = Verdict::parse(&verdict_text)
        .ok_or_else(|| corrupt("verdict", "neither 'allow' nor 'deny'"))?;
    let rules: Vec<String> = serde_json::from_str(&get::<String>(row, "decision_rules")?)
        .map_err(|_| corrupt("decision_rules", "not a JSON array of strings"))?;

    let request = RequestRecord {
        id,
        received_at,
        instance: get(row, "instance")?,
        principal,
        method: get(row, "method")?,
        path: get(row, "path")?,
        model: get(row, "model")?,
        stream: get::<i64>(row, "stream")? != 0,
        decision: DecisionRecord {
            verdict,
            reason: get(row, "decision_reason")?,
            rules,
        },
        body: Bytes::from(get::<Vec<u8>>(row, "request_body")?),
        raw_body: match get::<Option<String>>(row, "request_raw_json")? {
            Some(json) => Some(
                serde_json::from_str(&json)
                    .map_err(|_| corrupt("request_raw_json", "not an encrypted body"))?,
            ),
            None => None,
        },
    };

    let response = match get::<Option<String>>(row, "completed_at")? {
        None => None,
        Some(completed_at) => {
            let status = u16::try_from(get::<i64>(row, "status")?)
                .map_err(|_| corrupt("status", "out of range"))?;
            let usage = match get::<Option<String>>(row, "usage_json")? {
                Some(json) => Some(
                    serde_json::from_str::<serde_json::Value>(&json)
                        .map_err(|_| corrupt("usage_json", "not JSON"))?,
                ),
                None => None,
            };
            let micros = |column: &str| -> Result<u64, AuditError> {
                u64::try_from(get::<i64>(row, column)?).map_err(|_| corrupt(column, "negative"))
            };
            Some(ResponseRecord {
                id,
                completed_at: decode_time("completed_at", &completed_at)?,
                status,
                upstream_request_id: get(row, "upstream_request_id")?,
                body: Bytes::from(
                    get::<Option<Vec<u8>>>(row, "response_body")?.unwrap_or_default(),
                ),
                body_truncated: get::<i64>(row, "response_body_truncated")? != 0,
                text: get(row, "response_text")?,
                usage,
                complete: get::<i64>(row, "complete")? != 0,
                ttfb_us: micros("ttfb_us")?,
                latency_us: micros("latency_us")?,
                findings: match get::<Option<String>>(row, "findings_json")? {
                    Some(json) => serde_json::from_str(&json)
                        .map_err(|_| corrupt("findings_json", "not a JSON array of findings"))?,
                    None => Vec::new(),
                },
                chunks: match get::<Option<String>>(row, "chunks_json")? {
                    Some(json) => serde_json::from_str(&json)
                        .map_err(|_| corrupt("chunks_json", "not a JSON array of chunk timings"))?,
                    None => Vec::new(),
                },
                raw_body: match get::<Option<String>>(row, "response_raw_json")? {
                    Some(json) => Some(
                        serde_json::from_str(&json)
                            .map_err(|_| corrupt("response_raw_json", "not an encrypted body"))?,
                    ),
                    None => None,
                },
            })
        }
    };

    Ok(AuditRecord { request, response })
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn record_request(&self, record: &RequestRecord) -> Result<(), AuditError> {
        match &self.chain {
            None => insert_request(&self.pool, record).await,
            Some(c) => c.write(&self.pool, chain::Half::Request(record)).await,
        }
    }

    async fn record_response(&self, record: &ResponseRecord) -> Result<(), AuditError> {
        match &self.chain {
            None => update_response(&self.pool, record).await,
            Some(c) => c.write(&self.pool, chain::Half::Response(record)).await,
        }
    }

    async fn get(&self, id: Uuid) -> Result<Option<AuditRecord>, AuditError> {
        let row = sqlx::query(&format!("{SELECT_COLUMNS} WHERE id = ?"))
            .bind(id.hyphenated().to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| unavailable("read record", &e))?;
        row.as_ref().map(decode_row).transpose()
    }

    async fn recent(&self, limit: usize) -> Result<Vec<AuditRecord>, AuditError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = sqlx::query(&format!(
            "{SELECT_COLUMNS} ORDER BY received_at_us DESC, id DESC LIMIT ?"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| unavailable("read recent records", &e))?;
        rows.iter().map(decode_row).collect()
    }

    async fn query(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>, AuditError> {
        let mut sql = sqlx::QueryBuilder::<sqlx::Sqlite>::new(SELECT_COLUMNS);
        sql.push(" WHERE 1 = 1");
        if let Some(v) = &q.subject {
            sql.push(" AND principal_subject = ").push_bind(v.clone());
        }
        if let Some(v) = &q.issuer {
            sql.push(" AND principal_issuer = ").push_bind(v.clone());
        }
        if let Some(v) = &q.group {
            sql.push(
                " AND principal_groups IS NOT NULL AND EXISTS \
                 (SELECT 1 FROM json_each(principal_groups) WHERE json_each.value = ",
            )
            .push_bind(v.clone())
            .push(")");
        }
        if let Some(t) = q.since {
            sql.push(" AND received_at_us >= ")
                .push_bind(encode_time(t).0);
        }
        if let Some(t) = q.until {
            sql.push(" AND received_at_us < ")
                .push_bind(encode_time(t).0);
        }
        if let Some(v) = q.verdict {
            sql.push(" AND verdict = ").push_bind(v.as_str());
        }
        if let Some(v) = &q.model {
            sql.push(" AND model = ").push_bind(v.clone());
        }
        if let Some(v) = &q.rule {
            sql.push(
                " AND EXISTS (SELECT 1 FROM json_each(decision_rules) WHERE json_each.value = ",
            )
            .push_bind(v.clone())
            .push(")");
        }
        if let Some(v) = q.status {
            sql.push(" AND status = ").push_bind(i64::from(v));
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
        rows.iter().map(decode_row).collect()
    }

    async fn record_event(&self, event: &AuditEvent) -> Result<(), AuditError> {
        match &self.chain {
            None => insert_event(&self.pool, event).await,
            Some(c) => c.write(&self.pool, chain::Half::Event(event)).await,
        }
    }

    async fn recent_events(&self, limit: usize) -> Result<Vec<AuditEvent>, AuditError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = sqlx::query(
            "SELECT id, time, instance, kind, exchange_id, actor_json, detail_json
             FROM audit_event ORDER BY time_us DESC, id DESC LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| unavailable("read recent events", &e))?;
        rows.iter().map(decode_event).collect()
    }
}

async fn insert_request<'c, E: sqlx::Executor<'c, Database = sqlx::Sqlite>>(
    exec: E,
    record: &RequestRecord,
) -> Result<(), AuditError> {
    let (received_at_us, received_at) = encode_time(record.received_at);
    let (issuer, subject, groups, principal_json) = match &record.principal {
        Some(p) => (
            Some(p.issuer.as_str()),
            Some(p.subject.as_str()),
            Some(to_json("principal groups", &p.groups)?),
            Some(to_json("principal", p)?),
        ),
        None => (None, None, None, None),
    };
    let rules = to_json("decision rules", &record.decision.rules)?;
    sqlx::query(INSERT_REQUEST)
        .bind(record.id.hyphenated().to_string())
        .bind(received_at)
        .bind(received_at_us)
        .bind(record.instance.as_str())
        .bind(issuer)
        .bind(subject)
        .bind(groups)
        .bind(principal_json)
        .bind(record.method.as_str())
        .bind(record.path.as_str())
        .bind(record.model.as_deref())
        .bind(i64::from(record.stream))
        .bind(record.decision.verdict.as_str())
        .bind(record.decision.reason.as_deref())
        .bind(rules)
        .bind(&record.body[..])
        .bind(match &record.raw_body {
            Some(b) => Some(to_json("raw request body", b)?),
            None => None,
        })
        .execute(exec)
        .await
        .map_err(|e| unavailable("record request", &e))?;
    Ok(())
}

async fn update_response<'c, E: sqlx::Executor<'c, Database = sqlx::Sqlite>>(
    exec: E,
    record: &ResponseRecord,
) -> Result<(), AuditError> {
    let (_, completed_at) = encode_time(record.completed_at);
    let usage = match &record.usage {
        Some(u) => Some(to_json("usage", u)?),
        None => None,
    };
    let done = sqlx::query(UPDATE_RESPONSE)
        .bind(completed_at)
        .bind(i64::from(record.status))
        .bind(record.upstream_request_id.as_deref())
        .bind(&record.body[..])
        .bind(i64::from(record.body_truncated))
        .bind(record.text.as_deref())
        .bind(usage)
        .bind(i64::from(record.complete))
        .bind(saturating_i64(record.ttfb_us))
        .bind(saturating_i64(record.latency_us))
        .bind(to_json("findings", &record.findings)?)
        .bind(to_json("chunks", &record.chunks)?)
        .bind(match &record.raw_body {
            Some(b) => Some(to_json("raw response body", b)?),
            None => None,
        })
        .bind(record.id.hyphenated().to_string())
        .execute(exec)
        .await
        .map_err(|e| unavailable("record response", &e))?;
    if done.rows_affected() == 0 {
        return Err(AuditError::UnknownId);
    }
    Ok(())
}

async fn insert_event<'c, E: sqlx::Executor<'c, Database = sqlx::Sqlite>>(
    exec: E,
    event: &AuditEvent,
) -> Result<(), AuditError> {
    let (time_us, time) = encode_time(event.time);
    let actor = match &event.actor {
        Some(p) => Some(to_json("event actor", p)?),
        None => None,
    };
    sqlx::query(INSERT_EVENT)
        .bind(event.id.hyphenated().to_string())
        .bind(time)
        .bind(time_us)
        .bind(event.instance.as_str())
        .bind(event.kind.as_str())
        .bind(event.exchange_id.map(|u| u.hyphenated().to_string()))
        .bind(actor)
        .bind(to_json("event detail", &event.detail)?)
        .execute(exec)
        .await
        .map_err(|e| unavailable("record event", &e))?;
    Ok(())
}

fn decode_event(row: &SqliteRow) -> Result<AuditEvent, AuditError> {
    let uuid =
        |column: &str, text: &str| Uuid::parse_str(text).map_err(|_| corrupt(column, "not a UUID"));
    Ok(AuditEvent {
        id: uuid("id", &get::<String>(row, "id")?)?,
        time: decode_time("time", &get::<String>(row, "time")?)?,
        instance: get(row, "instance")?,
        kind: get(row, "kind")?,
        exchange_id: get::<Option<String>>(row, "exchange_id")?
            .map(|t| uuid("exchange_id", &t))
            .transpose()?,
        actor: get::<Option<String>>(row, "actor_json")?
            .map(|j| {
                serde_json::from_str::<Principal>(&j)
                    .map_err(|_| corrupt("actor_json", "not a principal JSON object"))
            })
            .transpose()?,
        detail: serde_json::from_str(&get::<String>(row, "detail_json")?)
            .map_err(|_| corrupt("detail_json", "not JSON"))?,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;

    fn ts(us: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_microsecond(us).unwrap()
    }

    fn request_at(us: i64) -> RequestRecord {
        let mut r = RequestRecord::new("POST", "/v1/messages", DecisionRecord::allow());
        r.received_at = ts(us);
        r
    }

    fn full_request() -> RequestRecord {
        let mut claims = serde_json::Map::new();
        claims.insert("iss".into(), json!("https://idp.example.com"));
        claims.insert("sub".into(), json!("skill-billing"));
        claims.insert("nested".into(), json!({"a": [1, 2, {"b": null}], "ü": "ß"}));
        let principal = Principal {
            issuer: "https://idp.example.com".into(),
            subject: "skill-billing".into(),
            client_id: Some("client-42".into()),
            groups: vec!["ci".into(), "billing".into()],
            scopes: vec!["messages:write".into()],
            token_id: Some("jti-1".into()),
            expires_at: Some(1_900_000_000),
            attributes: Default::default(),
            claims,
        };
        RequestRecord {
            id: Uuid::now_v7(),
            received_at: ts(1_750_000_000_123_456),
            instance: "gw-1:42".into(),
            principal: Some(principal),
            method: "POST".into(),
            path: "/v1/messages?beta=true".into(),
            model: Some("claude-sonnet-4-5".into()),
            stream: true,
            decision: DecisionRecord {
                verdict: Verdict::Deny,
                reason: Some("policy: no billing on weekends".into()),
                rules: vec!["r1".into(), "weekend-block".into()],
            },
            body: Bytes::from_static(&[0xff, 0xfe, 0x00, 0x80, b'{', 0xc3, 0x28]),
            raw_body: Some(crate::audit::EncryptedBody {
                alg: "A256GCM".into(),
                key_id: "0011223344556677".into(),
                nonce: "AAAAAAAAAAAAAAAA".into(),
                ciphertext: "c2VhbGVk".into(),
            }),
        }
    }

    fn full_response(id: Uuid) -> ResponseRecord {
        ResponseRecord {
            id,
            completed_at: ts(1_750_000_001_654_321),
            status: 200,
            upstream_request_id: Some("req_011CXYZ".into()),
            body: Bytes::from_static(
                b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi \xe2\x9c\x93\"}}\n\n",
            ),
            body_truncated: true,
            text: Some("Hi ✓".into()),
            usage: Some(json!({"input_tokens": 12, "output_tokens": 3})),
            complete: true,
            ttfb_us: 12_345,
            latency_us: u64::MAX,
            findings: vec![
                crate::audit::Finding::new("CREDIT_CARD", 2, "response/content/0/text"),
                crate::audit::Finding::new("US_SSN", 1, "response/content/1/input/ssn"),
            ],
            chunks: vec![
                crate::audit::ChunkTiming {
                    offset_bytes: 0,
                    at_us: 12_400,
                },
                crate::audit::ChunkTiming {
                    offset_bytes: 40,
                    at_us: 250_000,
                },
            ],
            raw_body: Some(crate::audit::EncryptedBody {
                alg: "A256GCM".into(),
                key_id: "0011223344556677".into(),
                nonce: "BBBBBBBBBBBBBBBB".into(),
                ciphertext: "cmF3".into(),
            }),
        }
    }

    #[tokio::test]
    async fn full_record_round_trips() {
        let store = SqliteStore::in_memory().await.unwrap();
        let req = full_request();
        let res = full_response(req.id);
        store.record_request(&req).await.unwrap();
        store.record_response(&res).await.unwrap();

        let rec = store.get(req.id).await.unwrap().unwrap();
        assert_eq!(rec.request, req);
        let mut expected = res.clone();
        expected.latency_us = i64::MAX as u64; // saturated into INTEGER
        assert_eq!(rec.response, Some(expected));
        assert!(rec.is_complete());
    }

    #[tokio::test]
    async fn timestamps_are_stored_to_the_microsecond() {
        let store = SqliteStore::in_memory().await.unwrap();
        let mut req = request_at(0);
        req.received_at = jiff::Timestamp::new(1_750_000_000, 123_456_789).unwrap();
        store.record_request(&req).await.unwrap();
        let rec = store.get(req.id).await.unwrap().unwrap();
        assert_eq!(rec.request.received_at, ts(1_750_000_000_123_456));
        let (us, text): (i64, String) =
            sqlx::query_as("SELECT received_at_us, received_at FROM audit_exchange")
                .fetch_one(&store.pool)
                .await
                .unwrap();
        assert_eq!(us, 1_750_000_000_123_456);
        assert_eq!(text, "2025-06-15T15:06:40.123456Z");
    }

    #[tokio::test]
    async fn minimal_record_without_principal_round_trips() {
        let store = SqliteStore::in_memory().await.unwrap();
        let req = request_at(1_000_000);
        store.record_request(&req).await.unwrap();
        let rec = store.get(req.id).await.unwrap().unwrap();
        assert_eq!(rec.request, req);
        assert_eq!(rec.request.principal, None);
    }

    #[tokio::test]
    async fn response_for_unknown_id_is_rejected() {
        let store = SqliteStore::in_memory().await.unwrap();
        let err = store
            .record_response(&ResponseRecord::new(Uuid::now_v7(), 200))
            .await
            .unwrap_err();
        assert_eq!(err, AuditError::UnknownId);
    }

    #[tokio::test]
    async fn get_unknown_id_is_none() {
        let store = SqliteStore::in_memory().await.unwrap();
        assert_eq!(store.get(Uuid::now_v7()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn duplicate_request_is_refused_without_content() {
        let store = SqliteStore::in_memory().await.unwrap();
        let mut req = request_at(1);
        req.body = Bytes::from_static(b"secret-body-content");
        store.record_request(&req).await.unwrap();
        let err = store.record_request(&req).await.unwrap_err();
        assert!(matches!(err, AuditError::Unavailable(_)), "{err:?}");
        assert!(!err.to_string().contains("secret-body-content"));
    }

    #[tokio::test]
    async fn unanswered_request_reads_back_incomplete() {
        let store = SqliteStore::in_memory().await.unwrap();
        let req = request_at(5);
        store.record_request(&req).await.unwrap();
        let rec = store.get(req.id).await.unwrap().unwrap();
        assert_eq!(rec.response, None);
        assert!(!rec.is_complete());
    }

    #[tokio::test]
    async fn incomplete_response_is_not_complete() {
        let store = SqliteStore::in_memory().await.unwrap();
        let req = request_at(5);
        store.record_request(&req).await.unwrap();
        let mut res = ResponseRecord::new(req.id, 200);
        res.completed_at = ts(6);
        res.complete = false;
        store.record_response(&res).await.unwrap();
        let rec = store.get(req.id).await.unwrap().unwrap();
        assert_eq!(rec.response, Some(res));
        assert!(!rec.is_complete());
    }

    #[tokio::test]
    async fn recent_is_newest_first_and_limited() {
        let store = SqliteStore::in_memory().await.unwrap();
        // Inserted out of order; two share a timestamp (tie broken by id, descending).
        let mut same_a = request_at(2_000);
        let mut same_b = request_at(2_000);
        same_a.id = Uuid::parse_str("00000000-0000-7000-8000-00000000000a").unwrap();
        same_b.id = Uuid::parse_str("00000000-0000-7000-8000-00000000000b").unwrap();
        let oldest = request_at(1_000);
        let newest = request_at(3_000);
        for r in [&same_a, &newest, &oldest, &same_b] {
            store.record_request(r).await.unwrap();
        }

        let ids = |v: Vec<AuditRecord>| v.into_iter().map(|r| r.request.id).collect::<Vec<_>>();
        assert_eq!(
            ids(store.recent(10).await.unwrap()),
            vec![newest.id, same_b.id, same_a.id, oldest.id]
        );
        assert_eq!(
            ids(store.recent(2).await.unwrap()),
            vec![newest.id, same_b.id]
        );
        assert!(store.recent(0).await.unwrap().is_empty());
        assert_eq!(store.recent(usize::MAX).await.unwrap().len(), 4);
    }

    #[tokio::test]
    async fn reopening_a_file_keeps_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let req = full_request();
        let res = full_response(req.id);
        {
            let store = SqliteStore::open(&path).await.unwrap();
            store.record_request(&req).await.unwrap();
            store.record_response(&res).await.unwrap();
            store.pool.close().await;
        }
        let store = SqliteStore::open(&path).await.unwrap();
        let rec = store.get(req.id).await.unwrap().unwrap();
        assert_eq!(rec.request, req);
        assert_eq!(
            rec.response.map(|r| r.upstream_request_id),
            Some(res.upstream_request_id)
        );

        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(sync, 2, "synchronous = FULL");
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(fk, 1);
        let version: i64 = sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[tokio::test]
    async fn newer_schema_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        {
            let store = SqliteStore::open(&path).await.unwrap();
            sqlx::raw_sql("PRAGMA user_version = 99")
                .execute(&store.pool)
                .await
                .unwrap();
            store.pool.close().await;
        }
        let err = SqliteStore::open(&path).await.unwrap_err();
        assert!(matches!(err, AuditError::Corrupt(_)), "{err:?}");
    }

    #[tokio::test]
    async fn version_1_database_is_migrated_and_keeps_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        // Versions before 3 had no raw bodies.
        let old = RequestRecord {
            raw_body: None,
            ..full_request()
        };
        {
            // A database as version 1 wrote it: no findings or chunks column, no events table.
            let store = SqliteStore::open(&path).await.unwrap();
            store.record_request(&old).await.unwrap();
            sqlx::raw_sql(
                "ALTER TABLE audit_exchange DROP COLUMN findings_json; \
                 ALTER TABLE audit_exchange DROP COLUMN chunks_json; \
                 ALTER TABLE audit_exchange DROP COLUMN request_raw_json; \
                 ALTER TABLE audit_exchange DROP COLUMN response_raw_json; \
                 DROP TABLE audit_event; PRAGMA user_version = 1",
            )
            .execute(&store.pool)
            .await
            .unwrap();
            store.pool.close().await;
        }
        let store = SqliteStore::open(&path).await.unwrap();
        let version: i64 = sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!(store.get(old.id).await.unwrap().unwrap().request, old);
        let response = full_response(old.id);
        store.record_response(&response).await.unwrap();
        let back = store.get(old.id).await.unwrap().unwrap();
        assert_eq!(back.response.unwrap().findings, response.findings);
        store
            .record_event(&AuditEvent::new("grant.created", json!({"rule": "r"})))
            .await
            .unwrap();
        assert_eq!(store.recent_events(10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn version_2_database_is_migrated_and_keeps_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        // Versions before 3 had no raw bodies.
        let old = RequestRecord {
            raw_body: None,
            ..full_request()
        };
        {
            // A database as version 2 wrote it: no chunks column.
            let store = SqliteStore::open(&path).await.unwrap();
            store.record_request(&old).await.unwrap();
            sqlx::raw_sql(
                "ALTER TABLE audit_exchange DROP COLUMN chunks_json; \
                 ALTER TABLE audit_exchange DROP COLUMN request_raw_json; \
                 ALTER TABLE audit_exchange DROP COLUMN response_raw_json; PRAGMA user_version = 2",
            )
            .execute(&store.pool)
            .await
            .unwrap();
            store.pool.close().await;
        }
        let store = SqliteStore::open(&path).await.unwrap();
        let version: i64 = sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!(store.get(old.id).await.unwrap().unwrap().request, old);
        let response = full_response(old.id);
        store.record_response(&response).await.unwrap();
        let back = store.get(old.id).await.unwrap().unwrap();
        assert_eq!(back.response.unwrap().chunks, response.chunks);
    }

    #[tokio::test]
    async fn query_filters_agree_with_the_reference_semantics() {
        let store = SqliteStore::in_memory().await.unwrap();
        let mut all = Vec::new();
        for i in 0..24i64 {
            let mut r = full_request();
            r.id = Uuid::now_v7();
            r.received_at = ts(1_750_000_000_000_000 + i * 1_000_000);
            r.instance = format!("gw-{}", i % 2);
            r.model = Some(
                if i % 3 == 0 {
                    "claude-opus-5"
                } else {
                    "claude-sonnet-5"
                }
                .into(),
            );
            r.decision.verdict = if i % 4 == 0 {
                Verdict::Deny
            } else {
                Verdict::Allow
            };
            r.decision.rules = if i % 5 == 0 {
                vec!["r-five".into()]
            } else {
                vec![]
            };
            if let Some(p) = r.principal.as_mut() {
                p.subject = format!("svc-{}", i % 3);
                p.groups = if i % 2 == 0 {
                    vec!["ci".into()]
                } else {
                    vec!["billing".into(), "x".into()]
                };
            }
            if i == 7 {
                r.principal = None;
            }
            store.record_request(&r).await.unwrap();
            let mut rec = AuditRecord {
                request: r.clone(),
                response: None,
            };
            if i % 6 != 5 {
                let mut resp = full_response(r.id);
                resp.status = if i % 2 == 0 { 200 } else { 403 };
                store.record_response(&resp).await.unwrap();
                rec.response = Some(resp);
            }
            all.push(rec);
        }
        all.reverse(); // newest first
        let queries = [
            AuditQuery::new(),
            AuditQuery::new().limit(3),
            AuditQuery::new().subject("svc-1"),
            AuditQuery::new().issuer("https://idp.example.com").limit(5),
            AuditQuery::new().group("billing"),
            AuditQuery::new().group("ci").verdict(Verdict::Deny),
            AuditQuery::new()
                .since(ts(1_750_000_005_000_000))
                .until(ts(1_750_000_009_000_000)),
            AuditQuery::new().model("claude-opus-5").status(200),
            AuditQuery::new().rule("r-five"),
            AuditQuery::new().status(403).instance("gw-1"),
            AuditQuery::new().subject("nobody"),
        ];
        for q in queries {
            let want: Vec<_> = all
                .iter()
                .filter(|r| q.matches(r))
                .take(q.limit)
                .cloned()
                .collect();
            let got = store.query(&q).await.unwrap();
            assert_eq!(
                got.iter().map(|r| r.request.id).collect::<Vec<_>>(),
                want.iter().map(|r| r.request.id).collect::<Vec<_>>(),
                "{q:?}"
            );
        }
        // The filters do select something (the test is not vacuous).
        assert_eq!(
            store
                .query(&AuditQuery::new().group("billing"))
                .await
                .unwrap()
                .len(),
            11
        );
    }

    #[tokio::test]
    async fn events_round_trip_newest_first() {
        let store = SqliteStore::in_memory().await.unwrap();
        let mut first = AuditEvent::new("approval.requested", json!({"rule": "restricted"}));
        first.exchange_id = Some(Uuid::now_v7());
        first.instance = "gw-1".into();
        first.time = ts(1_750_000_000_000_001);
        let mut second = AuditEvent::new("approval.approved", json!({"reason": "looked fine"}));
        second.exchange_id = first.exchange_id;
        second.actor = full_request().principal;
        second.time = ts(1_750_000_000_000_002);
        store.record_event(&first).await.unwrap();
        store.record_event(&second).await.unwrap();
        assert_eq!(
            store.recent_events(10).await.unwrap(),
            vec![second.clone(), first]
        );
        assert_eq!(store.recent_events(1).await.unwrap(), vec![second.clone()]);
        let dup = store.record_event(&second).await.unwrap_err();
        assert!(matches!(dup, AuditError::Unavailable(_)), "{dup:?}");
    }

    #[tokio::test]
    async fn open_in_missing_directory_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let err = SqliteStore::open(dir.path().join("no/such/dir/audit.db"))
            .await
            .unwrap_err();
        assert!(matches!(err, AuditError::Unavailable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn two_handles_on_one_file_see_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let a = SqliteStore::open(&path).await.unwrap();
        let b = SqliteStore::open(&path).await.unwrap();

        let ra = request_at(1);
        let rb = request_at(2);
        a.record_request(&ra).await.unwrap();
        b.record_request(&rb).await.unwrap();
        // Each handle completes the other's exchange.
        b.record_response(&ResponseRecord::new(ra.id, 201))
            .await
            .unwrap();
        a.record_response(&ResponseRecord::new(rb.id, 202))
            .await
            .unwrap();

        for store in [&a, &b] {
            let recent = store.recent(10).await.unwrap();
            let got: Vec<_> = recent
                .iter()
                .map(|r| (r.request.id, r.response.as_ref().map(|x| x.status)))
                .collect();
            assert_eq!(got, vec![(rb.id, Some(202)), (ra.id, Some(201))]);
        }
    }

    async fn concurrent_requests_all_land(store: SqliteStore) {
        let store = Arc::new(store);
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..200 {
            let store = store.clone();
            tasks.spawn(async move {
                let mut r = request_at(i);
                r.body = Bytes::from(format!("{{\"n\":{i}}}"));
                store.record_request(&r).await.map(|()| r.id)
            });
        }
        let mut ids = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            ids.push(joined.unwrap().unwrap());
        }
        assert_eq!(ids.len(), 200);
        let recent = store.recent(1_000).await.unwrap();
        assert_eq!(recent.len(), 200);
        for id in ids {
            assert!(store.get(id).await.unwrap().is_some());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_requests_all_land_in_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("audit.db"))
            .await
            .unwrap();
        concurrent_requests_all_land(store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_requests_all_land_in_memory() {
        concurrent_requests_all_land(SqliteStore::in_memory().await.unwrap()).await;
    }
}
