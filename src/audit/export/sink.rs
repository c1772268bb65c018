//! Where exported events go: [`Sink`] and its three implementations, and
//! [`export`], which batches.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Uri, header};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::{ExportFormat, ExportOptions};
use crate::audit::AuditRecord;
use crate::body::Body;

/// Why an export failed. Carries no event content.
///
/// ```
/// use skillgate::audit::export::ExportError;
/// let e = ExportError::Rejected { status: 400 };
/// assert!(e.to_string().contains("400"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// Writing to stdout or the file failed.
    #[error("export write failed: {0}")]
    Io(#[from] std::io::Error),
    /// The HTTP endpoint URL or a header is invalid.
    #[error("export endpoint invalid: {0}")]
    Config(String),
    /// The endpoint refused a batch with a status that retrying cannot fix (4xx other than 408/429).
    #[error("export endpoint rejected the batch with HTTP status {status}")]
    Rejected {
        /// The HTTP status.
        status: u16,
    },
    /// Every attempt failed (transport error, timeout, 408, 429 or 5xx).
    #[error("export endpoint failed after {attempts} attempts: {last}")]
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// The last failure, e.g. `HTTP status 503` or `timed out`.
        last: String,
    },
}

/// A destination for mapped events. `send` gets one batch and returns when
/// the destination has accepted all of it.
///
/// ```
/// use async_trait::async_trait;
/// use skillgate::audit::export::{ExportError, Sink};
///
/// struct Count(std::sync::atomic::AtomicUsize);
/// #[async_trait]
/// impl Sink for Count {
///     async fn send(&self, batch: &[serde_json::Value]) -> Result<(), ExportError> {
///         self.0.fetch_add(batch.len(), std::sync::atomic::Ordering::Relaxed);
///         Ok(())
///     }
/// }
/// ```
#[async_trait]
pub trait Sink: Send + Sync {
    /// Delivers `batch` (one JSON object per event).
    async fn send(&self, batch: &[Value]) -> Result<(), ExportError>;
}

fn ndjson(batch: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in batch {
        // A serde_json::Value always serializes.
        if serde_json::to_writer(&mut out, v).is_ok() {
            out.push(b'\n');
        }
    }
    out
}

/// Writes each event as one JSON line to standard output.
///
/// ```
/// let _sink = skillgate::audit::export::StdoutSink;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct StdoutSink;

#[async_trait]
impl Sink for StdoutSink {
    async fn send(&self, batch: &[Value]) -> Result<(), ExportError> {
        use std::io::Write as _;
        let data = ndjson(batch);
        // Standard output is written synchronously: a batch is bounded and
        // stdout is the CLI's own output.
        let mut out = std::io::stdout().lock();
        out.write_all(&data)?;
        out.flush()?;
        Ok(())
    }
}

/// Appends each event as one JSON line to a file (created if missing), and
/// syncs the file after each batch.
///
/// ```
/// let _sink = skillgate::audit::export::FileSink::new("/var/log/skillgate/ocsf.jsonl");
/// ```
#[derive(Debug, Clone)]
pub struct FileSink {
    path: PathBuf,
}

impl FileSink {
    /// A sink appending to `path`.
    pub fn new(path: impl AsRef<Path>) -> Self {
        FileSink {
            path: path.as_ref().to_owned(),
        }
    }
}

#[async_trait]
impl Sink for FileSink {
    async fn send(&self, batch: &[Value]) -> Result<(), ExportError> {
        let mut f = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .await?;
        f.write_all(&ndjson(batch)).await?;
        f.flush().await?;
        f.sync_data().await?;
        Ok(())
    }
}

/// How [`HttpSink`] retries a failed batch: up to `max_attempts` attempts,
/// waiting `initial_delay`, then twice as long each time, at most `max_delay`.
///
/// ```
/// use std::time::Duration;
/// use skillgate::audit::export::RetryPolicy;
/// let p = RetryPolicy::default();
/// assert_eq!(p.delay(0), Duration::from_millis(200));
/// assert_eq!(p.delay(1), Duration::from_millis(400));
/// assert_eq!(p.delay(30), p.max_delay);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per batch, the first included (default 5; at least 1).
    pub max_attempts: u32,
    /// Wait before the second attempt (default 200 ms).
    pub initial_delay: Duration,
    /// Longest wait between attempts (default 10 s).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `retry` (0-based).
    pub fn delay(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        self.initial_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }
}

/// `POST`s each batch to an HTTP(S) endpoint as newline-delimited JSON
/// (`Content-Type: application/x-ndjson`), retrying transport errors,
/// timeouts, 408, 429 and 5xx with exponential backoff ([`RetryPolicy`]).
/// Any other status ≥ 300 fails the export at once ([`ExportError::Rejected`]).
///
/// ```
/// use skillgate::audit::export::{HttpSink, RetryPolicy};
/// let sink = HttpSink::new("https://siem.example/ingest")
///     .unwrap()
///     .header("authorization", "Bearer from-a-secret-store")
///     .unwrap()
///     .retry(RetryPolicy { max_attempts: 3, ..RetryPolicy::default() });
/// # let _ = sink;
/// ```
#[derive(Clone)]
pub struct HttpSink {
    uri: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    retry: RetryPolicy,
    timeout: Duration,
    client: crate::http_client::HttpsClient,
}

impl std::fmt::Debug for HttpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values may be credentials: never printed.
        f.debug_struct("HttpSink")
            .field("uri", &self.uri)
            .field("retry", &self.retry)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HttpSink {
    /// A sink posting to `url` (`http` or `https`), default retries, 30 s per attempt.
    ///
    /// # Errors
    /// [`ExportError::Config`] for a URL that does not parse or is not http(s);
    /// [`ExportError::Io`] when the platform's root certificates cannot be loaded.
    pub fn new(url: &str) -> Result<HttpSink, ExportError> {
        let uri: Uri = url
            .parse()
            .map_err(|_| ExportError::Config("URL does not parse".into()))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(ExportError::Config("URL must be http(s)://host/…".into()));
        }
        Ok(HttpSink {
            uri,
            headers: Vec::new(),
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(30),
            client: crate::http_client::https_client()?,
        })
    }

    /// Adds a header to every request (e.g. `authorization`).
    ///
    /// # Errors
    /// [`ExportError::Config`] when the name or value is not a valid header.
    pub fn header(mut self, name: &str, value: &str) -> Result<HttpSink, ExportError> {
        let n = HeaderName::try_from(name)
            .map_err(|_| ExportError::Config("invalid header name".into()))?;
        let mut v = HeaderValue::try_from(value)
            .map_err(|_| ExportError::Config(format!("invalid value for header {n}")))?;
        v.set_sensitive(true);
        self.headers.push((n, v));
        Ok(self)
    }

    /// Sets the retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> HttpSink {
        self.retry = policy;
        self
    }

    /// Sets the time allowed per attempt (default 30 s).
    pub fn timeout(mut self, t: Duration) -> HttpSink {
        self.timeout = t;
        self
    }

    async fn attempt(&self, body: &Bytes) -> Result<(), Failure> {
        let mut req = Request::post(self.uri.clone())
            .header(header::CONTENT_TYPE, "application/x-ndjson")
            .header(
                header::USER_AGENT,
                concat!("skillgate/", env!("CARGO_PKG_VERSION")),
            );
        for (n, v) in &self.headers {
            req = req.header(n, v);
        }
        let req = req
            .body(Body::from(body.clone()))
            .map_err(|_| Failure::Fatal(ExportError::Config("cannot build request".into())))?;
        let res = tokio::time::timeout(self.timeout, self.client.request(req))
            .await
            .map_err(|_| Failure::Retry("timed out".into()))?
            .map_err(|e| Failure::Retry(format!("transport: {e}")))?;
        let status = res.status().as_u16();
        // Drain the (small) answer so the connection can be reused.
        let _ = tokio::time::timeout(
            self.timeout,
            crate::body::collect_limited(Body::new(res.into_body()), 64 * 1024),
        )
        .await;
        match status {
            200..=299 => Ok(()),
            408 | 429 | 500..=599 => Err(Failure::Retry(format!("HTTP status {status}"))),
            _ => Err(Failure::Fatal(ExportError::Rejected { status })),
        }
    }
}

enum Failure {
    Retry(String),
    Fatal(ExportError),
}

#[async_trait]
impl Sink for HttpSink {
    async fn send(&self, batch: &[Value]) -> Result<(), ExportError> {
        let body = Bytes::from(ndjson(batch));
        let attempts = self.retry.max_attempts.max(1);
        let mut last = String::new();
        for n in 0..attempts {
            if n > 0 {
                tokio::time::sleep(self.retry.delay(n - 1)).await;
            }
            match self.attempt(&body).await {
                Ok(()) => return Ok(()),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry(why)) => {
                    tracing::warn!(attempt = n + 1, of = attempts, reason = %why, "audit export: batch not accepted");
                    last = why;
                }
            }
        }
        Err(ExportError::GaveUp { attempts, last })
    }
}

/// Bounds on one batch: at most `max_events` events and about `max_bytes`
/// bytes of NDJSON (an event larger than `max_bytes` goes alone).
///
/// ```
/// let l = skillgate::audit::export::BatchLimits::default();
/// assert_eq!((l.max_events, l.max_bytes), (500, 1 << 20));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most events per batch (default 500; at least 1).
    pub max_events: usize,
    /// Most bytes per batch (default 1 MiB).
    pub max_bytes: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            max_events: 500,
            max_bytes: 1 << 20,
        }
    }
}

/// Maps `records` to `format` and sends them to `sink` in batches bounded
/// by `limits`, in order. Returns the number of events sent.
///
/// # Errors
/// The sink's [`ExportError`]; batches before the failing one were delivered.
///
/// ```
/// use skillgate::audit::{AuditRecord, DecisionRecord, RequestRecord};
/// use skillgate::audit::export::{BatchLimits, ExportFormat, ExportOptions, FileSink, export};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("ocsf.jsonl");
/// let recs: Vec<AuditRecord> = (0..3)
///     .map(|_| AuditRecord { request: RequestRecord::new("GET", "/v1/models", DecisionRecord::allow()), response: None })
///     .collect();
/// let n = export(&recs, ExportFormat::Ocsf, &ExportOptions::default(), &FileSink::new(&path), BatchLimits::default())
///     .await
///     .unwrap();
/// assert_eq!(n, 3);
/// assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);
/// # });
/// ```
pub async fn export<'a>(
    records: impl IntoIterator<Item = &'a AuditRecord>,
    format: ExportFormat,
    options: &ExportOptions,
    sink: &dyn Sink,
    limits: BatchLimits,
) -> Result<usize, ExportError> {
    let max_events = limits.max_events.max(1);
    let mut batch: Vec<Value> = Vec::new();
    let mut bytes = 0usize;
    let mut sent = 0usize;
    for rec in records {
        let ev = format.map(rec, options);
        let size = serde_json::to_vec(&ev).map(|v| v.len() + 1).unwrap_or(0);
        if !batch.is_empty() && (batch.len() >= max_events || bytes + size > limits.max_bytes) {
            sink.send(&batch).await?;
            sent += batch.len();
            batch.clear();
            bytes = 0;
        }
        bytes += size;
        batch.push(ev);
    }
    if !batch.is_empty() {
        sink.send(&batch).await?;
        sent += batch.len();
    }
    Ok(sent)
}
