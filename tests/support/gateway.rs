//! A gateway assembled exactly as the example does (`GatewayConfig::assemble`
//! + `serve`), on a free loopback port, with every file in a temporary folder.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use skillgate::audit::{AuditRecord, AuditStore};
use skillgate::gateway::{Assembled, GatewayConfig, serve};
use skillgate::identity::dev::{DevIssuer, MintOptions};
use skillgate::identity::federation::Federation;
use skillgate::policy::PolicyHandle;

use super::stand_in::{STAND_IN_API_KEY, StandIn};

/// A running test gateway; it stops when dropped.
pub struct TestGateway {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// The audit store.
    pub audit: Arc<dyn AuditStore>,
    /// The development issuer, when trusted.
    pub dev: Option<Arc<DevIssuer>>,
    /// The policy in force, when configured.
    pub policy: Option<PolicyHandle>,
    /// The token endpoint, when configured.
    pub federation: Option<Federation>,
    /// The folder holding the gateway's files.
    pub dir: tempfile::TempDir,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

/// A configuration for a gateway in `dir` in front of `upstream`: upstream
/// key in a file, audit database and dev-issuer key in `dir`.
pub fn config(upstream: &StandIn, dir: &Path) -> GatewayConfig {
    let key_file = dir.join("upstream-key");
    std::fs::write(&key_file, STAND_IN_API_KEY).expect("write upstream key");
    let mut cfg = GatewayConfig::default();
    cfg.upstream.url = upstream.base_url();
    cfg.upstream.api_key_file = Some(key_file);
    cfg.audit.sqlite = dir.join("audit.db");
    cfg.identity.dev_key_file = dir.join("dev-issuer.json");
    cfg
}

impl TestGateway {
    /// Starts a gateway from [`config`], changed by `tweak`.
    pub async fn start(
        upstream: &StandIn,
        tweak: impl FnOnce(&mut GatewayConfig, &Path),
    ) -> TestGateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = config(upstream, dir.path());
        tweak(&mut cfg, dir.path());
        Self::serve(cfg, None, dir).await
    }

    /// Starts a gateway from `cfg` (files in `dir`), with `store` as its
    /// audit store instead of the configured SQLite file if given.
    pub async fn serve(
        cfg: GatewayConfig,
        store: Option<Arc<dyn AuditStore>>,
        dir: tempfile::TempDir,
    ) -> TestGateway {
        let assembled: Assembled = match store {
            Some(s) => cfg.assemble_with_store(s).await,
            None => cfg.assemble().await,
        }
        .expect("assemble");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(
            listener,
            assembled.service,
            async move {
                let _ = rx.await;
            },
            Duration::from_secs(5),
        ));
        TestGateway {
            base_url: format!("http://{addr}"),
            audit: assembled.audit,
            dev: assembled.dev_issuer,
            policy: assembled.policy,
            federation: assembled.federation,
            dir,
            _shutdown: tx,
        }
    }

    /// A dev-issuer token for `sub` in `groups`.
    pub fn token(&self, sub: &str, groups: &[&str]) -> String {
        let dev = self.dev.as_ref().expect("dev issuer enabled");
        let mut opts = MintOptions::new(sub);
        opts.groups = groups.iter().map(|g| g.to_string()).collect();
        dev.mint(&opts).expect("mint")
    }

    /// Waits until at least `n` exchanges are recorded with their response; newest first.
    pub async fn records(&self, n: usize) -> Vec<AuditRecord> {
        for _ in 0..400 {
            let recs = self.audit.recent(500).await.expect("audit query");
            if recs.len() >= n && recs.iter().all(|r| r.response.is_some()) {
                return recs;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "audit records did not appear: {:?}",
            self.audit.recent(500).await
        );
    }
}
