//! A Rust skill calling Claude with reqwest + reqwest-middleware, two ways:
//!
//! 1. through a skillgate gateway: [`MachineIdentity`] attaches the skill's
//!    machine identity (here a token file, re-read when it changes) to every
//!    request;
//! 2. directly to the Anthropic API, with skillgate's layers (identity,
//!    policy, audit) running *inside* the client through [`Enforce`]: denials
//!    are typed errors ([`Refusal`]), streams stay streams, every exchange is
//!    recorded locally.
//!
//! ```text
//! cargo run --example reqwest_client --features reqwest -- --demo   # against the local stand-in, then exits
//! ```
//!
//! Other token sources: `EnvToken::new("SKILLGATE_TOKEN")`,
//! `ClientCredentials::new(token_endpoint, client_id, client_secret)` (OAuth
//! 2.0 client credentials), `GatewayTokenExchange::new(gateway, FileToken::new(…), rule_id)`.

#[path = "../tests/support/stand_in.rs"]
#[allow(dead_code)]
mod stand_in;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use skillgate::audit::{AuditStore, SqliteStore};
use skillgate::client::{Enforce, FileToken, MachineIdentity, Refusal};
use skillgate::gateway::{Gateway, GatewayConfig, serve};
use skillgate::identity::dev::{DevIssuer, MintOptions};
use skillgate::policy::{PolicyLayer, RulesPolicy};
use skillgate::upstream::{Credential, StaticCredential};

/// The local policy of way 2: Messages for the `ci` group, nothing on Opus.
pub const POLICY: &str = r#"
[[rule]]
id = "ci-messages"
effect = "allow"
match = { groups = ["ci"], paths = ["/v1/messages"] }

[[rule]]
id = "no-opus"
effect = "deny"
reason = "Opus models are not for this skill"
match = { models = ["claude-opus-*"] }
"#;

fn message(model: &str, text: &str, stream: bool) -> String {
    json!({"model": model, "max_tokens": 64, "stream": stream,
           "messages": [{"role": "user", "content": text}]})
    .to_string()
}

/// Way 1: through a gateway. Returns the reply text.
pub async fn through_gateway(
    gateway_url: &str,
    token_file: &std::path::Path,
) -> Result<String, String> {
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(MachineIdentity::new(FileToken::new(token_file)))
        .build();
    let res = client
        .post(format!("{gateway_url}/v1/messages"))
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(message(
            "claude-sonnet-5",
            "hello through the gateway",
            false,
        ))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = res.status();
    let body: serde_json::Value = res.json().await.map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("gateway answered {status}: {body}"));
    }
    Ok(body["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

/// Way 2: the client for calling the Anthropic API at `api_url` directly,
/// with the local stack. Tokens come from `token_file`, verified by `dev`.
pub fn enforcing_client(
    dev: &DevIssuer,
    store: Arc<dyn AuditStore>,
    token_file: &std::path::Path,
    api_key: &str,
) -> Result<reqwest_middleware::ClientWithMiddleware, String> {
    let policy =
        RulesPolicy::from_toml(POLICY, "reqwest_client policy").map_err(|e| e.to_string())?;
    let gateway = Gateway::builder()
        .verifier(dev.verifier("skillgate"))
        .audit_store_arc(store)
        .policy(PolicyLayer::new(policy))
        .build()
        .map_err(|e| e.to_string())?;
    Ok(
        reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(MachineIdentity::new(FileToken::new(token_file)))
            .with(
                Enforce::new(gateway.layer())
                    .upstream_credential(StaticCredential::new(Credential::api_key(api_key))),
            )
            .build(),
    )
}

/// The scripted run of `--demo`. Returns what it saw.
pub async fn demo() -> Result<Vec<String>, String> {
    let api = stand_in::StandIn::start().await;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut seen = Vec::new();

    // Way 1: a gateway assembled from configuration, as the example gateway is.
    let key_file = dir.path().join("upstream-key");
    std::fs::write(&key_file, stand_in::STAND_IN_API_KEY).map_err(|e| e.to_string())?;
    let mut cfg = GatewayConfig::default();
    cfg.upstream.url = api.base_url();
    cfg.upstream.api_key_file = Some(key_file);
    cfg.audit.sqlite = dir.path().join("audit.db");
    cfg.identity.dev_key_file = dir.path().join("dev-issuer.json");
    let assembled = cfg.assemble().await.map_err(|e| e.to_string())?;
    let dev = assembled.dev_issuer.clone().ok_or("no dev issuer")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let gateway_url = format!(
        "http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(
        listener,
        assembled.service,
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(1),
    ));
    let token_file = dir.path().join("token");
    let mut opts = MintOptions::new("demo-skill");
    opts.groups = vec!["ci".into()];
    std::fs::write(&token_file, dev.mint(&opts).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let text = through_gateway(&gateway_url, &token_file).await?;
    seen.push(format!("through the gateway: {text}"));
    check(
        text == stand_in::reply_text_for("hello through the gateway"),
        "gateway reply",
    )?;
    let _ = stop.send(());

    // Way 2: the local stack, straight to the API.
    let local_dev = DevIssuer::ephemeral();
    std::fs::write(
        &token_file,
        local_dev.mint(&opts).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let store: Arc<dyn AuditStore> =
        Arc::new(SqliteStore::in_memory().await.map_err(|e| e.to_string())?);
    let client = enforcing_client(
        &local_dev,
        store.clone(),
        &token_file,
        stand_in::STAND_IN_API_KEY,
    )?;

    let res = client
        .post(format!("{}/v1/messages", api.base_url()))
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(message("claude-sonnet-5", "stream this locally", true))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    check(res.status() == 200, "streamed call allowed")?;
    let mut chunks = 0;
    let mut sse = Vec::new();
    let mut stream = res.bytes_stream();
    while let Some(chunk) = stream.next().await {
        sse.extend_from_slice(&chunk.map_err(|e| e.to_string())?);
        chunks += 1;
    }
    let sse = String::from_utf8_lossy(&sse);
    seen.push(format!(
        "streamed directly: {chunks} chunks, message_stop: {}",
        sse.contains("message_stop")
    ));
    check(sse.contains("event: message_stop"), "stream complete")?;

    let denied = client
        .post(format!("{}/v1/messages", api.base_url()))
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(message("claude-opus-4", "big model please", false))
        .send()
        .await;
    let refusal = match &denied {
        Err(e) => Refusal::from_error(e).cloned(),
        Ok(_) => None,
    }
    .ok_or("the Opus call was not refused")?;
    seen.push(format!(
        "refused locally: {} {}",
        refusal.status, refusal.message
    ));
    check(
        refusal.status == 403,
        "policy denial is a typed 403 refusal",
    )?;

    // Both local exchanges are in the local audit store (records finish in the background).
    for _ in 0..200 {
        let recs = store.recent(10).await.map_err(|e| e.to_string())?;
        if recs.len() == 2 && recs.iter().all(|r| r.response.is_some()) {
            seen.push(format!("local audit records: {}", recs.len()));
            check(
                api.received().len() == 2,
                "one call through the gateway, one direct",
            )?;
            return Ok(seen);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Err("local audit records did not appear".into())
}

fn check(ok: bool, what: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("demo check failed: {what}"))
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    if !std::env::args().any(|a| a == "--demo") {
        eprintln!(
            "usage: reqwest_client --demo   (see the source for the two ways to use the client side)"
        );
        return std::process::ExitCode::from(2);
    }
    match demo().await {
        Ok(seen) => {
            seen.iter().for_each(|l| println!("{l}"));
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}
