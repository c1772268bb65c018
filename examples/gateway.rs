//! The runnable skillgate gateway.
//!
//! ```text
//! cargo run --example gateway                      # dev defaults: 127.0.0.1:8080, dev issuer, ./skillgate-audit.db
//! cargo run --example gateway -- mint-token --sub my-skill --group ci
//! cargo run --example gateway -- --config skillgate.toml --listen 0.0.0.0:8080
//! cargo run --example gateway -- audit query --since 24h --verdict deny
//! cargo run --example gateway -- audit export --format ocsf --sink http:https://siem.example/ingest
//! ```
//!
//! Everything is assembled by the library (`GatewayConfig::assemble`); this
//! file only reads the command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[path = "gateway/audit_chain.rs"]
mod audit_chain;
#[path = "gateway/audit_cli.rs"]
mod audit_cli;
use skillgate::gateway::{GatewayConfig, serve, shutdown_signal};
use skillgate::identity::dev::MintOptions;

#[derive(Parser, Debug)]
#[command(
    name = "gateway",
    about = "skillgate: an identity-aware gateway in front of the Anthropic API"
)]
struct Cli {
    /// TOML configuration file (see docs/configuration.md).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, global = true)]
    listen: Option<SocketAddr>,
    /// Upstream API base URL [default: https://api.anthropic.com].
    #[arg(long, global = true)]
    upstream: Option<String>,
    /// Environment variable holding the upstream API key [default: ANTHROPIC_API_KEY].
    #[arg(long, global = true)]
    upstream_key_env: Option<String>,
    /// Trusted token issuer; keys found by OIDC discovery unless --jwks-file is given.
    #[arg(long, global = true)]
    issuer: Option<String>,
    /// JWKS file for --issuer.
    #[arg(long, global = true)]
    jwks_file: Option<PathBuf>,
    /// Required token audience [default: skillgate].
    #[arg(long, global = true)]
    audience: Option<String>,
    /// Claim path holding groups [default: groups].
    #[arg(long, global = true)]
    groups_claim: Option<String>,
    /// Policy rules file (docs/policy.md); reloaded on change and SIGHUP.
    #[arg(long, global = true)]
    policy: Option<PathBuf>,
    /// SQLite audit database [default: ./skillgate-audit.db].
    #[arg(long, global = true)]
    audit_db: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the gateway (the default).
    Serve,
    /// Print a short-lived token from the development issuer.
    MintToken {
        /// Subject (`sub`): the skill's name.
        #[arg(long)]
        sub: String,
        /// A group (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 900)]
        ttl: u64,
    },
    /// The audit trail: query, show, replay, export, verify, purge (docs/audit.md).
    Audit(Box<audit_cli::AuditArgs>),
}

fn config(cli: &Cli) -> Result<GatewayConfig, String> {
    let mut cfg = match &cli.config {
        Some(p) => GatewayConfig::from_file(p).map_err(|e| e.to_string())?,
        None => GatewayConfig::default(),
    };
    if let Some(v) = cli.listen {
        cfg.listen = v;
    }
    if let Some(v) = &cli.upstream {
        cfg.upstream.url = v.clone();
    }
    if let Some(v) = &cli.upstream_key_env {
        cfg.upstream.api_key_env = v.clone();
    }
    if let Some(v) = &cli.issuer {
        cfg.identity.issuer = Some(v.clone());
    }
    if let Some(v) = &cli.jwks_file {
        cfg.identity.jwks_file = Some(v.clone());
    }
    if let Some(v) = &cli.audience {
        cfg.identity.audience = v.clone();
    }
    if let Some(v) = &cli.groups_claim {
        cfg.identity.groups_claim = v.clone();
    }
    if let Some(v) = &cli.policy {
        cfg.policy.file = Some(v.clone());
    }
    if let Some(v) = &cli.audit_db {
        cfg.audit.sqlite = v.clone();
    }
    Ok(cfg)
}

async fn run(cli: Cli) -> Result<(), String> {
    let cfg = config(&cli)?;
    match cli.command {
        Some(Command::MintToken { sub, groups, ttl }) => {
            if !cfg.identity.dev_issuer_enabled() {
                return Err("the development issuer is disabled by this configuration".into());
            }
            let dev = cfg.dev_issuer().map_err(|e| e.to_string())?;
            let mut opts = MintOptions::new(sub)
                .ttl(Duration::from_secs(ttl))
                .audience(cfg.identity.audience.clone());
            opts.groups = groups;
            println!("{}", dev.mint(&opts).map_err(|e| e.to_string())?);
            Ok(())
        }
        Some(Command::Audit(args)) => match args.command {
            audit_cli::AuditCommand::Chain(c) => audit_chain::run(c, &cfg).await,
            command => {
                let store = cfg.audit.open_store().await.map_err(|e| e.to_string())?;
                audit_cli::run(command, store).await
            }
        },
        None | Some(Command::Serve) => {
            let assembled = cfg.assemble().await.map_err(|e| e.to_string())?;
            let listener = tokio::net::TcpListener::bind(cfg.listen)
                .await
                .map_err(|e| format!("listen {}: {e}", cfg.listen))?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            tracing::info!(%addr, upstream = %cfg.upstream.url, audit = %cfg.audit.sqlite.display(), "skillgate listening");
            if assembled.policy.is_none() {
                tracing::warn!(
                    "no policy file: every authenticated caller may use every /v1/ endpoint"
                );
            }
            if assembled.dev_issuer.is_some() {
                tracing::warn!(
                    "trusting the local development issuer; mint a token with: \
                     cargo run --example gateway -- mint-token --sub my-skill --group ci"
                );
            }
            println!("skillgate listening on http://{addr}");
            serve(
                listener,
                assembled.service,
                shutdown_signal(),
                Duration::from_secs(cfg.shutdown_grace_secs),
            )
            .await
            .map_err(|e| e.to_string())
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
