//! The official SDKs configured only through their environment variables
//! (workload-identity federation): `tests/python/sdk_env.py` (Python
//! `anthropic`) and `tests/node/sdk_call.mjs` (npm `@anthropic-ai/sdk`).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;

use super::python::{SDK_CALL_TIMEOUT, python};

/// What the SDK is told, as environment variables, and nothing else.
pub struct FederationEnv {
    /// `ANTHROPIC_BASE_URL`: the gateway.
    pub base_url: String,
    /// `ANTHROPIC_IDENTITY_TOKEN_FILE`.
    pub token_file: PathBuf,
    /// `ANTHROPIC_FEDERATION_RULE_ID`.
    pub rule_id: String,
    /// `ANTHROPIC_ORGANIZATION_ID`.
    pub organization_id: String,
}

/// Which SDK to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sdk {
    Python,
    TypeScript,
}

fn command(sdk: Sdk) -> tokio::process::Command {
    match sdk {
        Sdk::Python => {
            let mut c = tokio::process::Command::new(python());
            c.arg(super::repo_dir().join("tests/python/sdk_env.py"))
                .env("PYTHONUNBUFFERED", "1")
                .env("PYTHONDONTWRITEBYTECODE", "1");
            c
        }
        Sdk::TypeScript => {
            let modules = super::repo_dir().join("tests/node/node_modules/@anthropic-ai/sdk");
            assert!(
                modules.exists(),
                "{} is missing: run .ci/setup (npm ci --prefix tests/node)",
                modules.display()
            );
            let mut c = tokio::process::Command::new(super::oidc::node());
            c.arg(super::repo_dir().join("tests/node/sdk_call.mjs"));
            c
        }
    }
}

/// Runs the driver with `steps` (`create`, `stream`, `rotate:PATH`) and
/// returns its `results` array. Every inherited `ANTHROPIC_*` and `SG_*`
/// variable is removed; only `env` and `extra_env` are set.
pub async fn run_sdk(
    sdk: Sdk,
    env: &FederationEnv,
    steps: &[String],
    extra_env: &[(&str, &str)],
) -> Vec<Value> {
    let mut c = command(sdk);
    for (name, _) in std::env::vars_os() {
        let n = name.to_string_lossy();
        if n.starts_with("ANTHROPIC_") || n.starts_with("SG_") {
            c.env_remove(&name);
        }
    }
    c.args(steps)
        .env("ANTHROPIC_BASE_URL", &env.base_url)
        .env("ANTHROPIC_IDENTITY_TOKEN_FILE", &env.token_file)
        .env("ANTHROPIC_FEDERATION_RULE_ID", &env.rule_id)
        .env("ANTHROPIC_ORGANIZATION_ID", &env.organization_id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in extra_env {
        c.env(k, v);
    }
    let child = c
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the {sdk:?} SDK driver: {e}"));
    let out = tokio::time::timeout(SDK_CALL_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{sdk:?} SDK driver took more than {SDK_CALL_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("{sdk:?} SDK driver: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{sdk:?} SDK driver failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("{sdk:?} SDK driver printed nothing; stderr: {stderr}"));
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| {
        panic!("{sdk:?} SDK driver printed no JSON ({e}): {line}\nstderr: {stderr}")
    });
    v["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {v}"))
        .clone()
}

/// `rotate:PATH` step.
pub fn rotate_step(path: &Path) -> String {
    format!("rotate:{}", path.display())
}
