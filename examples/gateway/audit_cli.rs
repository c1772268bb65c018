//! `gateway audit …`: query, show, replay and export audit records.
//!
//! Kept in its own file so other `audit` subcommands (verify, purge) can be
//! added beside these without touching them. The work is done by the
//! library (`AuditStore::query`/`get`, `audit::replay`, `audit::export`);
//! this file only reads arguments and prints.

use std::sync::Arc;

use clap::{Args, Subcommand, ValueEnum};
use skillgate::audit::export::{
    BatchLimits, ExportFormat, ExportOptions, FileSink, HttpSink, RetryPolicy, Sink, StdoutSink,
};
use skillgate::audit::replay::{ReplayOptions, replay};
use skillgate::audit::{AuditQuery, AuditRecord, AuditStore, Verdict, parse_time};

/// `gateway audit <command>`.
#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// `verify` and `purge` (the hash chain, docs/audit.md).
    #[command(flatten)]
    Chain(super::audit_chain::ChainCommand),
    /// List exchanges matching filters, newest first.
    Query {
        #[command(flatten)]
        filters: Filters,
        /// One JSON record per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print one whole exchange (request, decision, response) as JSON.
    Show {
        /// Exchange id (UUID).
        id: String,
        /// Key file for the encrypted raw bodies: adds them, decrypted, as
        /// `raw_request_body` / `raw_response_body`.
        #[arg(long)]
        decrypt_key: Option<std::path::PathBuf>,
    },
    /// Re-emit the response body exactly as the client received it, to stdout.
    Replay {
        /// Exchange id (UUID).
        id: String,
        /// Wait between chunks as the original response did.
        #[arg(long)]
        timing: bool,
        /// With --timing: play this many times faster.
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
    },
    /// Export matching exchanges to a SIEM as OCSF or ECS JSON, oldest first.
    Export {
        #[command(flatten)]
        filters: Filters,
        /// Event schema.
        #[arg(long, value_enum, default_value_t = Format::Ocsf)]
        format: Format,
        /// `stdout`, `file:PATH` (appended, one event per line) or `http:URL` / `https:URL` (NDJSON POSTs).
        #[arg(long, default_value = "stdout")]
        sink: String,
        /// Include request and response bodies (prompts, completions). Off by default.
        #[arg(long)]
        include_bodies: bool,
        /// Most events per batch.
        #[arg(long, default_value_t = 500)]
        batch_events: usize,
        /// Attempts per batch for an HTTP sink.
        #[arg(long, default_value_t = 5)]
        max_attempts: u32,
        /// HTTP sink: a header whose value is read from an environment variable, as NAME=ENV_VAR (repeatable).
        #[arg(long = "header-env")]
        header_env: Vec<String>,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum Format {
    Ocsf,
    Ecs,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum VerdictArg {
    Allow,
    Deny,
}

/// The filters of `AuditQuery`.
#[derive(Args, Debug)]
pub struct Filters {
    /// Principal subject (`sub`), exact.
    #[arg(long)]
    subject: Option<String>,
    /// Principal issuer, exact.
    #[arg(long)]
    issuer: Option<String>,
    /// A group the principal had.
    #[arg(long)]
    group: Option<String>,
    /// Received at or after: RFC 3339 or a span back from now (30m, 24h, 7d).
    #[arg(long)]
    since: Option<String>,
    /// Received before: RFC 3339 or a span back from now.
    #[arg(long)]
    until: Option<String>,
    /// The gateway's verdict.
    #[arg(long, value_enum)]
    verdict: Option<VerdictArg>,
    /// Messages model, exact.
    #[arg(long)]
    model: Option<String>,
    /// A rule id that matched.
    #[arg(long)]
    rule: Option<String>,
    /// HTTP status sent to the client.
    #[arg(long)]
    status: Option<u16>,
    /// Gateway instance name, exact.
    #[arg(long)]
    instance: Option<String>,
    /// Most exchanges (query: default 100; export: default 100000).
    #[arg(long)]
    limit: Option<usize>,
}

impl Filters {
    fn query(&self, default_limit: usize) -> Result<AuditQuery, String> {
        let now = jiff::Timestamp::now();
        let mut q = AuditQuery::new().limit(self.limit.unwrap_or(default_limit));
        q.subject = self.subject.clone();
        q.issuer = self.issuer.clone();
        q.group = self.group.clone();
        q.model = self.model.clone();
        q.rule = self.rule.clone();
        q.status = self.status;
        q.instance = self.instance.clone();
        q.verdict = self.verdict.map(|v| match v {
            VerdictArg::Allow => Verdict::Allow,
            VerdictArg::Deny => Verdict::Deny,
        });
        if let Some(s) = &self.since {
            q.since = Some(parse_time(s, now).map_err(|e| format!("--since: {e}"))?);
        }
        if let Some(s) = &self.until {
            q.until = Some(parse_time(s, now).map_err(|e| format!("--until: {e}"))?);
        }
        Ok(q)
    }
}

fn parse_id(id: &str) -> Result<uuid::Uuid, String> {
    uuid::Uuid::parse_str(id.trim()).map_err(|_| "the exchange id must be a UUID".to_owned())
}

async fn get(store: &dyn AuditStore, id: &str) -> Result<AuditRecord, String> {
    store
        .get(parse_id(id)?)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "no exchange with this id".to_owned())
}

fn table(records: &[AuditRecord]) -> String {
    let mut out = format!(
        "{:<36}  {:<27}  {:<7}  {:<6}  {:<9}  {:<24}  {:<30}  {:<20}  {}\n",
        "ID", "RECEIVED", "VERDICT", "STATUS", "LATENCY", "SUBJECT", "REQUEST", "MODEL", "RULES"
    );
    for r in records {
        let q = &r.request;
        let (status, latency) = match &r.response {
            Some(x) => (
                format!("{}{}", x.status, if x.complete { "" } else { "*" }),
                format!("{}ms", x.latency_us / 1000),
            ),
            None => ("-".into(), "-".into()),
        };
        out.push_str(&format!(
            "{:<36}  {:<27}  {:<7}  {:<6}  {:<9}  {:<24}  {:<30}  {:<20}  {}\n",
            q.id,
            q.received_at.to_string(),
            q.decision.verdict.as_str(),
            status,
            latency,
            q.principal.as_ref().map_or("-", |p| p.subject.as_str()),
            format!("{} {}", q.method, q.path),
            q.model.as_deref().unwrap_or("-"),
            q.decision.rules.join(","),
        ));
    }
    out
}

fn sink(spec: &str, max_attempts: u32, header_env: &[String]) -> Result<Box<dyn Sink>, String> {
    if spec == "stdout" {
        return Ok(Box::new(StdoutSink));
    }
    if let Some(path) = spec.strip_prefix("file:") {
        return Ok(Box::new(FileSink::new(path)));
    }
    let url = spec
        .strip_prefix("http:")
        .filter(|u| u.starts_with("//") || u.starts_with("http"))
        .map(|u| {
            if u.starts_with("//") {
                format!("http:{u}")
            } else {
                u.to_owned()
            }
        })
        .or_else(|| spec.starts_with("https:").then(|| spec.to_owned()))
        .ok_or_else(|| "--sink must be stdout, file:PATH or http:URL".to_owned())?;
    let mut s = HttpSink::new(&url)
        .map_err(|e| e.to_string())?
        .retry(RetryPolicy {
            max_attempts,
            ..RetryPolicy::default()
        });
    for h in header_env {
        let (name, var) = h
            .split_once('=')
            .ok_or_else(|| "--header-env takes NAME=ENV_VAR".to_owned())?;
        let value = std::env::var(var).map_err(|_| format!("--header-env: ${var} is not set"))?;
        s = s.header(name, &value).map_err(|e| e.to_string())?;
    }
    Ok(Box::new(s))
}

/// Runs one `audit` subcommand against `store`.
pub async fn run(command: AuditCommand, store: Arc<dyn AuditStore>) -> Result<(), String> {
    match command {
        AuditCommand::Chain(_) => Err("verify and purge run against the configured store".into()),
        AuditCommand::Query { filters, json } => {
            let records = store
                .query(&filters.query(skillgate::audit::DEFAULT_QUERY_LIMIT)?)
                .await
                .map_err(|e| e.to_string())?;
            if json {
                for r in &records {
                    println!("{}", serde_json::to_string(r).map_err(|e| e.to_string())?);
                }
            } else {
                print!("{}", table(&records));
            }
            Ok(())
        }
        AuditCommand::Show { id, decrypt_key } => {
            let rec = get(&*store, &id).await?;
            let mut v = serde_json::to_value(&rec).map_err(|e| e.to_string())?;
            if let Some(path) = decrypt_key {
                let key = skillgate::audit::BodyKey::from_file(&path).map_err(|e| e.to_string())?;
                let text = |b: bytes::Bytes| String::from_utf8_lossy(&b).into_owned();
                if let Some(raw) = &rec.request.raw_body {
                    let plain = key
                        .open(rec.request.id, "request", raw)
                        .map_err(|e| e.to_string())?;
                    v["raw_request_body"] = serde_json::json!(text(plain));
                }
                if let Some(raw) = rec.response.as_ref().and_then(|r| r.raw_body.as_ref()) {
                    let plain = key
                        .open(rec.request.id, "response", raw)
                        .map_err(|e| e.to_string())?;
                    v["raw_response_body"] = serde_json::json!(text(plain));
                }
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?
            );
            Ok(())
        }
        AuditCommand::Replay { id, timing, speed } => {
            let rec = get(&*store, &id).await?;
            let resp = rec
                .response
                .ok_or_else(|| "this exchange has no recorded response".to_owned())?;
            let mut out = tokio::io::BufWriter::new(StdOut);
            let report = replay(&resp, &mut out, ReplayOptions { timing, speed })
                .await
                .map_err(|e| format!("write: {e}"))?;
            if report.truncated {
                eprintln!(
                    "warning: the record kept only the first {} bytes of this response",
                    report.bytes
                );
            }
            if report.incomplete {
                eprintln!(
                    "warning: this exchange did not complete (status {})",
                    resp.status
                );
            }
            Ok(())
        }
        AuditCommand::Export {
            filters,
            format,
            sink: spec,
            include_bodies,
            batch_events,
            max_attempts,
            header_env,
        } => {
            let mut records = store
                .query(&filters.query(100_000)?)
                .await
                .map_err(|e| e.to_string())?;
            records.reverse(); // oldest first
            let format = match format {
                Format::Ocsf => ExportFormat::Ocsf,
                Format::Ecs => ExportFormat::Ecs,
            };
            let sink = sink(&spec, max_attempts, &header_env)?;
            let limits = BatchLimits {
                max_events: batch_events,
                ..BatchLimits::default()
            };
            let options = ExportOptions::new().include_bodies(include_bodies);
            let n = skillgate::audit::export::export(&records, format, &options, &*sink, limits)
                .await
                .map_err(|e| e.to_string())?;
            eprintln!("exported {n} events");
            Ok(())
        }
    }
}

/// Standard output as an `AsyncWrite` (tokio's `io-std` feature is not enabled).
struct StdOut;

impl tokio::io::AsyncWrite for StdOut {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::io::Write as _;
        std::task::Poll::Ready(std::io::stdout().lock().write(buf))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::io::Write as _;
        std::task::Poll::Ready(std::io::stdout().lock().flush())
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.poll_flush(cx)
    }
}
