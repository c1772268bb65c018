//! `gateway audit verify` and `gateway audit purge`: the tamper-evidence and
//! retention commands (docs/audit.md, "Verification" and "Retention").

use std::path::PathBuf;

use clap::Subcommand;
use skillgate::gateway::{AuditStoreKind, GatewayConfig};

#[derive(Subcommand, Debug)]
pub enum ChainCommand {
    /// Check every instance's hash chain and signed checkpoints; lists each
    /// modified, deleted, reordered or unchained record (exit status 1 if any).
    Verify {
        /// SPKI PEM Ed25519 public key of the checkpoint signing key.
        #[arg(long)]
        public_key: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete exchanges and events older than an age (`90d`, `12h`, `30m`,
    /// `45s`), after a signed checkpoint that keeps the chain verifiable.
    Purge {
        /// The age.
        #[arg(long)]
        older_than: String,
    },
}

/// Parses `90d`, `12h`, `30m`, `45s` into seconds.
fn parse_age(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .map_err(|_| format!("--older-than {s:?}: expected a number and a unit (d, h, m, s)"))?;
    let mult = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" | "" => 1,
        _ => return Err(format!("--older-than {s:?}: unit must be d, h, m or s")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("--older-than {s:?}: too large"))
}

fn print_report(report: &skillgate::audit::VerifyReport, json: bool) -> Result<(), String> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).map_err(|e| e.to_string())?
        );
    } else {
        for s in &report.instances {
            println!(
                "instance {}: {} entries (seq {}..{}), {} valid checkpoints, last signed seq {}",
                s.instance,
                s.entries,
                s.first_seq.unwrap_or(0),
                s.last_seq.unwrap_or(0),
                s.valid_checkpoints,
                s.last_checkpoint_seq
                    .map(|x| x.to_string())
                    .unwrap_or_else(|| "none".into())
            );
        }
        println!(
            "{} records verified, {} purged by retention",
            report.records_verified, report.records_purged
        );
        for p in &report.problems {
            println!("{p}");
        }
    }
    if report.is_ok() {
        Ok(())
    } else {
        Err(format!("{} problems found", report.problems.len()))
    }
}

pub async fn run(command: ChainCommand, cfg: &GatewayConfig) -> Result<(), String> {
    match cfg.audit.store {
        AuditStoreKind::Sqlite => run_sqlite(command, cfg).await,
        AuditStoreKind::Postgres => run_postgres(command, cfg).await,
    }
}

async fn run_sqlite(command: ChainCommand, cfg: &GatewayConfig) -> Result<(), String> {
    match command {
        ChainCommand::Verify { public_key, json } => {
            let key = skillgate::audit::read_public_key(&public_key).map_err(|e| e.to_string())?;
            let store = skillgate::audit::SqliteStore::open(&cfg.audit.sqlite)
                .await
                .map_err(|e| e.to_string())?;
            let report = skillgate::audit::verify(&store, &key)
                .await
                .map_err(|e| e.to_string())?;
            print_report(&report, json)
        }
        ChainCommand::Purge { older_than } => {
            let _ = parse_age(&older_than)?;
            Err("audit purge needs [audit] store = \"postgres\"".into())
        }
    }
}

#[cfg(feature = "postgres")]
async fn run_postgres(command: ChainCommand, cfg: &GatewayConfig) -> Result<(), String> {
    let mut audit = cfg.audit.clone();
    // The command is not a gateway instance: never append to a live chain.
    audit.instance = Some(format!("audit-cli:{}", std::process::id()));
    let store = audit.open_postgres().await.map_err(|e| e.to_string())?;
    match command {
        ChainCommand::Verify { public_key, json } => {
            let key = skillgate::audit::read_public_key(&public_key).map_err(|e| e.to_string())?;
            let report = skillgate::audit::verify(&store, &key)
                .await
                .map_err(|e| e.to_string())?;
            print_report(&report, json)
        }
        ChainCommand::Purge { older_than } => {
            let secs = parse_age(&older_than)?;
            let cutoff = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(secs);
            let r = store.purge(cutoff).await.map_err(|e| e.to_string())?;
            println!(
                "purged {} exchanges, {} events, {} chain entries older than {cutoff}",
                r.exchanges, r.events, r.chain_entries
            );
            Ok(())
        }
    }
}

#[cfg(not(feature = "postgres"))]
async fn run_postgres(command: ChainCommand, _cfg: &GatewayConfig) -> Result<(), String> {
    let _ = command;
    Err("this build has no PostgreSQL support (crate feature `postgres`), which audit verify/purge need".into())
}
