//! [`JsonlStore`]: an append-only JSON-lines audit store in a folder of
//! rotated files.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    AuditError, AuditEvent, AuditQuery, AuditRecord, AuditStore, RequestRecord, ResponseRecord,
};

/// When [`JsonlStore`] starts a new file, and how many it keeps.
///
/// ```
/// let o = skillgate::audit::JsonlOptions::default();
/// assert_eq!(o.max_bytes, 64 * 1024 * 1024);
/// assert_eq!(o.max_age, std::time::Duration::from_secs(86_400));
/// assert_eq!(o.keep_files, 30);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonlOptions {
    /// Start a new file before a line would take the current one past this
    /// many bytes (default 64 MiB). A single longer line gets a file of its own.
    pub max_bytes: u64,
    /// Start a new file when the current one is older than this (default 24 h).
    pub max_age: Duration,
    /// Files kept; the oldest are deleted on rotation (default 30; at least 1).
    pub keep_files: usize,
}

impl Default for JsonlOptions {
    fn default() -> Self {
        JsonlOptions {
            max_bytes: 64 * 1024 * 1024,
            max_age: Duration::from_secs(86_400),
            keep_files: 30,
        }
    }
}

/// One line of a JSON-lines audit file.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", content = "record", rename_all = "snake_case")]
enum Line {
    Request(RequestRecord),
    Response(ResponseRecord),
    Event(AuditEvent),
}

struct Current {
    file: File,
    opened: Instant,
    size: u64,
}

struct State {
    dir: PathBuf,
    options: JsonlOptions,
    current: Option<Current>,
    /// Requests written by this process whose response is not written yet.
    pending: HashSet<Uuid>,
}

/// An [`AuditStore`] writing one JSON object per line to files
/// `audit-YYYY-MM-DDTHH-MM-SSZ-NNN.jsonl` in a folder: a request line
/// (`{"type":"request","record":{…}}`), later a response line, and event
/// lines. Nothing is ever rewritten.
///
/// - **Durable**: every line is written and `fsync`ed before the call
///   returns, so a request is on disk before it is forwarded.
/// - **Rotation**: a new file when the current one would pass
///   [`JsonlOptions::max_bytes`] or is older than [`JsonlOptions::max_age`],
///   and on every open (a torn line left by a crash is never appended to);
///   only the newest [`JsonlOptions::keep_files`] files are kept.
/// - **Reads** scan every file, oldest first: fine for one instance and
///   for investigation, not for a busy shared store (use SQLite or
///   PostgreSQL there). A line that does not parse (a write torn by a crash)
///   is skipped with a warning; the other lines still count.
/// - One writing process per folder.
///
/// ```
/// use skillgate::audit::{AuditStore, DecisionRecord, JsonlOptions, JsonlStore, RequestRecord};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let dir = tempfile::tempdir().unwrap();
/// let store = JsonlStore::open(dir.path(), JsonlOptions::default()).unwrap();
/// let req = RequestRecord::new("POST", "/v1/messages", DecisionRecord::allow());
/// store.record_request(&req).await.unwrap();
/// assert_eq!(store.get(req.id).await.unwrap().unwrap().request, req);
/// # });
/// ```
#[derive(Clone)]
pub struct JsonlStore {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for JsonlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonlStore").finish_non_exhaustive()
    }
}

fn io(op: &str, e: &std::io::Error) -> AuditError {
    AuditError::Unavailable(format!("{op}: {e}"))
}

fn is_audit_file(name: &str) -> bool {
    name.starts_with("audit-") && name.ends_with(".jsonl")
}

/// The audit files in `dir`, oldest first (names sort by time).
fn files(dir: &Path) -> Result<Vec<PathBuf>, AuditError> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io("list audit files", &e))?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(is_audit_file))
        .map(|e| e.path())
        .collect();
    v.sort();
    Ok(v)
}

impl State {
    fn rotate(&mut self) -> Result<(), AuditError> {
        if let Some(c) = self.current.take() {
            let _ = c.file.sync_all();
        }
        let stamp = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H-%M-%SZ")
            .to_string();
        // Names must sort after every existing file (reads go by name order),
        // also when older files of this second were already rotated away.
        let newest = files(&self.dir)?.pop();
        let mut seq = 0u32;
        let path = loop {
            let p = self.dir.join(format!("audit-{stamp}-{seq:03}.jsonl"));
            if !p.exists() && newest.as_ref().is_none_or(|n| p > *n) {
                break p;
            }
            seq += 1;
            if seq > 999 {
                return Err(AuditError::Unavailable(
                    "cannot name a new audit file after the newest one (too many this second, or the clock went back)".into(),
                ));
            }
        };
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| io("create audit file", &e))?;
        // Make the new name itself durable.
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        self.current = Some(Current {
            file,
            opened: Instant::now(),
            size: 0,
        });
        let all = files(&self.dir)?;
        let keep = self.options.keep_files.max(1);
        if all.len() > keep {
            for old in &all[..all.len() - keep] {
                if let Err(e) = std::fs::remove_file(old) {
                    tracing::warn!(file = %old.display(), error = %e, "audit: cannot delete rotated file");
                }
            }
        }
        Ok(())
    }

    fn append(&mut self, line: &[u8]) -> Result<(), AuditError> {
        let len = line.len() as u64 + 1;
        let needs_new = match &self.current {
            None => true,
            Some(c) => {
                (c.size > 0 && c.size.saturating_add(len) > self.options.max_bytes)
                    || c.opened.elapsed() >= self.options.max_age
            }
        };
        if needs_new {
            self.rotate()?;
        }
        let c = self
            .current
            .as_mut()
            .ok_or_else(|| AuditError::Unavailable("no audit file open".into()))?;
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line);
        buf.push(b'\n');
        c.file
            .write_all(&buf)
            .map_err(|e| io("write audit line", &e))?;
        c.file.sync_data().map_err(|e| io("sync audit file", &e))?;
        c.size += len;
        Ok(())
    }
}

/// Everything read back from the files.
#[derive(Default)]
struct Scan {
    records: Vec<AuditRecord>,
    events: Vec<AuditEvent>,
}

fn scan(dir: &Path) -> Result<Scan, AuditError> {
    let mut order: Vec<Uuid> = Vec::new();
    let mut by_id: HashMap<Uuid, AuditRecord> = HashMap::new();
    let mut events = Vec::new();
    for path in files(dir)? {
        let f = match File::open(&path) {
            Ok(f) => f,
            // Deleted by a rotation since it was listed.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io("open audit file", &e)),
        };
        for (n, line) in BufReader::new(f).split(b'\n').enumerate() {
            let line = line.map_err(|e| io("read audit file", &e))?;
            if line.is_empty() {
                continue;
            }
            match serde_json::from_slice::<Line>(&line) {
                Ok(Line::Request(r)) => {
                    if !by_id.contains_key(&r.id) {
                        order.push(r.id);
                    }
                    by_id.insert(
                        r.id,
                        AuditRecord {
                            request: r,
                            response: None,
                        },
                    );
                }
                Ok(Line::Response(r)) => {
                    if let Some(rec) = by_id.get_mut(&r.id) {
                        rec.response = Some(r);
                    }
                }
                Ok(Line::Event(e)) => events.push(e),
                Err(_) => tracing::warn!(
                    file = %path.display(),
                    line = n + 1,
                    "audit: skipping a line that does not parse (torn write?)"
                ),
            }
        }
    }
    let records = order
        .into_iter()
        .filter_map(|id| by_id.remove(&id))
        .collect();
    Ok(Scan { records, events })
}

impl JsonlStore {
    /// Opens (creating it if needed) the folder `dir` and starts a new file.
    ///
    /// # Errors
    /// [`AuditError::Unavailable`] when the folder cannot be created or written.
    pub fn open(dir: impl AsRef<Path>, options: JsonlOptions) -> Result<JsonlStore, AuditError> {
        let dir = dir.as_ref().to_owned();
        std::fs::create_dir_all(&dir).map_err(|e| io("create audit folder", &e))?;
        let mut state = State {
            dir,
            options,
            current: None,
            pending: HashSet::new(),
        };
        state.rotate()?;
        Ok(JsonlStore {
            state: Arc::new(Mutex::new(state)),
        })
    }

    /// The folder holding the files.
    pub fn dir(&self) -> PathBuf {
        self.lock().dir.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn write(&self, line: Line) -> Result<(), AuditError> {
        let bytes = serde_json::to_vec(&line)
            .map_err(|e| AuditError::Unavailable(format!("encode audit line: {e}")))?;
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || {
            let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
            match &line {
                Line::Response(r) if !st.pending.contains(&r.id) => {
                    return Err(AuditError::UnknownId);
                }
                Line::Request(r) if st.pending.contains(&r.id) => {
                    return Err(AuditError::Unavailable("duplicate request record".into()));
                }
                _ => {}
            }
            st.append(&bytes)?;
            match line {
                Line::Request(r) => {
                    st.pending.insert(r.id);
                }
                Line::Response(r) => {
                    st.pending.remove(&r.id);
                }
                Line::Event(_) => {}
            }
            Ok(())
        })
        .await
        .map_err(|_| AuditError::Unavailable("audit writer task failed".into()))?
    }

    async fn scan(&self) -> Result<Scan, AuditError> {
        let dir = self.dir();
        tokio::task::spawn_blocking(move || scan(&dir))
            .await
            .map_err(|_| AuditError::Unavailable("audit reader task failed".into()))?
    }
}

fn newest_first(mut v: Vec<AuditRecord>) -> Vec<AuditRecord> {
    v.sort_by(|a, b| {
        (b.request.received_at, b.request.id).cmp(&(a.request.received_at, a.request.id))
    });
    v
}

#[async_trait]
impl AuditStore for JsonlStore {
    async fn record_request(&self, record: &RequestRecord) -> Result<(), AuditError> {
        self.write(Line::Request(record.clone())).await
    }
    async fn record_response(&self, record: &ResponseRecord) -> Result<(), AuditError> {
        self.write(Line::Response(record.clone())).await
    }
    async fn get(&self, id: Uuid) -> Result<Option<AuditRecord>, AuditError> {
        Ok(self
            .scan()
            .await?
            .records
            .into_iter()
            .find(|r| r.request.id == id))
    }
    async fn recent(&self, limit: usize) -> Result<Vec<AuditRecord>, AuditError> {
        let mut v = newest_first(self.scan().await?.records);
        v.truncate(limit);
        Ok(v)
    }
    async fn query(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>, AuditError> {
        let v = newest_first(self.scan().await?.records);
        Ok(v.into_iter()
            .filter(|r| q.matches(r))
            .take(q.limit)
            .collect())
    }
    async fn record_event(&self, event: &AuditEvent) -> Result<(), AuditError> {
        self.write(Line::Event(event.clone())).await
    }
    async fn recent_events(&self, limit: usize) -> Result<Vec<AuditEvent>, AuditError> {
        let mut v = self.scan().await?.events;
        v.sort_by_key(|e| std::cmp::Reverse((e.time, e.id)));
        v.truncate(limit);
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{DecisionRecord, Finding};
    use crate::identity::Principal;

    fn request() -> RequestRecord {
        let mut r = RequestRecord::new("POST", "/v1/messages", DecisionRecord::allow());
        let mut p = Principal::new("https://issuer.example", "repo:acme/ci");
        p.groups = vec!["ci".into()];
        r.principal = Some(p);
        r.model = Some("claude-sonnet-4-5".into());
        r.body = bytes::Bytes::from_static(br#"{"model":"claude-sonnet-4-5"}"#);
        r.instance = "gw-1".into();
        r
    }

    fn response(id: Uuid) -> ResponseRecord {
        let mut r = ResponseRecord::new(id, 200);
        r.body = bytes::Bytes::from_static(b"{\"ok\":true}");
        r.usage = Some(serde_json::json!({"input_tokens": 1, "output_tokens": 2}));
        r.findings = vec![Finding::new("US_SSN", 1, "response/content/0/text")];
        r.chunks = vec![crate::audit::ChunkTiming {
            offset_bytes: 0,
            at_us: 10,
        }];
        r
    }

    fn audit_files(dir: &Path) -> Vec<PathBuf> {
        files(dir).unwrap()
    }

    #[tokio::test]
    async fn records_and_events_round_trip_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = JsonlStore::open(dir.path(), JsonlOptions::default()).unwrap();
        let req = request();
        store.record_request(&req).await.unwrap();
        let resp = response(req.id);
        store.record_response(&resp).await.unwrap();
        let other = RequestRecord::new("GET", "/v1/models", DecisionRecord::deny("no"));
        store.record_request(&other).await.unwrap();
        let ev = AuditEvent::new("grant.created", serde_json::json!({"rule": "r"}));
        store.record_event(&ev).await.unwrap();
        assert!(matches!(
            store.record_response(&response(Uuid::now_v7())).await,
            Err(AuditError::UnknownId)
        ));

        let store = JsonlStore::open(dir.path(), JsonlOptions::default()).unwrap();
        let back = store.get(req.id).await.unwrap().unwrap();
        assert_eq!(back.request, req);
        assert_eq!(back.response, Some(resp));
        assert_eq!(store.recent(10).await.unwrap().len(), 2);
        assert_eq!(store.recent(10).await.unwrap()[0].request.id, other.id);
        assert_eq!(store.recent_events(10).await.unwrap(), vec![ev]);
        let q = AuditQuery::new().group("ci").status(200);
        let found = store.query(&q).await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].request.id, req.id);
        assert!(
            store
                .query(&AuditQuery::new().verdict(crate::audit::Verdict::Deny))
                .await
                .unwrap()[0]
                .response
                .is_none()
        );
        assert_eq!(audit_files(dir.path()).len(), 2, "a new file per open");
    }

    #[tokio::test]
    async fn rotates_by_size_and_keeps_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let opts = JsonlOptions {
            max_bytes: 2_000,
            max_age: Duration::from_secs(3600),
            keep_files: 3,
        };
        let store = JsonlStore::open(dir.path(), opts).unwrap();
        let mut ids = Vec::new();
        for _ in 0..30 {
            let r = request();
            store.record_request(&r).await.unwrap();
            store.record_response(&response(r.id)).await.unwrap();
            ids.push(r.id);
        }
        let files = audit_files(dir.path());
        assert_eq!(files.len(), 3);
        for f in &files {
            assert!(
                std::fs::metadata(f).unwrap().len() <= 2_000,
                "{} too big",
                f.display()
            );
        }
        // The oldest exchanges went with the deleted files; the newest remain whole.
        let recent = store.recent(100).await.unwrap();
        assert!(recent.len() < 30 && !recent.is_empty());
        assert_eq!(recent[0].request.id, *ids.last().unwrap());
        assert!(recent[0].response.is_some());
    }

    #[tokio::test]
    async fn rotates_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let opts = JsonlOptions {
            max_bytes: u64::MAX,
            max_age: Duration::from_millis(1_100),
            keep_files: 10,
        };
        let store = JsonlStore::open(dir.path(), opts).unwrap();
        store.record_request(&request()).await.unwrap();
        store.record_request(&request()).await.unwrap();
        assert_eq!(audit_files(dir.path()).len(), 1);
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        store.record_request(&request()).await.unwrap();
        assert_eq!(audit_files(dir.path()).len(), 2);
        assert_eq!(store.recent(10).await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_torn_last_line_is_skipped_and_earlier_records_stay() {
        let dir = tempfile::tempdir().unwrap();
        let store = JsonlStore::open(dir.path(), JsonlOptions::default()).unwrap();
        let a = request();
        store.record_request(&a).await.unwrap();
        store.record_response(&response(a.id)).await.unwrap();
        let b = request();
        store.record_request(&b).await.unwrap();
        drop(store);
        // A crash in the middle of writing b's response line.
        let file = audit_files(dir.path()).pop().unwrap();
        let line = serde_json::to_vec(&Line::Response(response(b.id))).unwrap();
        let mut f = OpenOptions::new().append(true).open(&file).unwrap();
        f.write_all(&line[..line.len() / 2]).unwrap();
        drop(f);

        let store = JsonlStore::open(dir.path(), JsonlOptions::default()).unwrap();
        assert!(store.get(a.id).await.unwrap().unwrap().is_complete());
        let b_back = store.get(b.id).await.unwrap().unwrap();
        assert_eq!(b_back.request, b);
        assert!(
            b_back.response.is_none(),
            "the torn response line is not half-read"
        );
        // New writes go to a new file, not after the torn line.
        let c = request();
        store.record_request(&c).await.unwrap();
        assert_eq!(store.recent(10).await.unwrap().len(), 3);
    }
}
