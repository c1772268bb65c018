//! The official Anthropic Python SDK (pinned in `tests/python/requirements.txt`)
//! driven through `tests/python/sdk_call.py`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

/// How long one SDK call may take, Python start-up included.
pub const SDK_CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// The Python of the venv that has the SDK: `$SKILLGATE_PYTHON`, or
/// `$CARGO_MANIFEST_DIR/.venv/bin/python`. Panics if it is missing.
pub fn python() -> PathBuf {
    if let Some(path) = std::env::var_os("SKILLGATE_PYTHON") {
        let path = PathBuf::from(path);
        assert!(
            path.exists(),
            "SKILLGATE_PYTHON={} does not exist",
            path.display()
        );
        return path;
    }
    let path = super::repo_dir().join(".venv/bin/python");
    assert!(
        path.exists(),
        "{} is missing: run .ci/run first (creates .venv), or just .ci/setup",
        path.display()
    );
    path
}

/// `tests/python/sdk_call.py`.
pub fn sdk_call_script() -> PathBuf {
    super::repo_dir().join("tests/python/sdk_call.py")
}

/// Runs `sdk_call.py MODE` (`create`, `stream` or `count_tokens`) against
/// `base_url` and returns the JSON line it printed.
///
/// `token` is sent with `auth_token=` (`Authorization: Bearer`); `None` sends
/// no credential. `extra_env` sets more `SG_*` variables (see the script's
/// docstring), e.g. `("SG_PROMPT", "hi")`, `("SG_MODEL", "stand-in-error-529")`,
/// `("SG_TOKEN_AS_API_KEY", "1")`, `("SG_TOKEN_HEADER", "x-api-key")`.
/// Panics (with the script's stderr) if the script itself fails.
pub async fn sdk_call(
    mode: &str,
    base_url: &str,
    token: Option<&str>,
    extra_env: &[(&str, &str)],
) -> Value {
    let mut command = tokio::process::Command::new(python());
    command
        .arg(sdk_call_script())
        .arg(mode)
        .env("SG_BASE_URL", base_url)
        .env_remove("SG_TOKEN")
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SG_") && name != "SG_BASE_URL" {
            command.env_remove(name);
        }
    }
    if let Some(token) = token {
        command.env("SG_TOKEN", token);
    }
    for (name, value) in extra_env {
        command.env(name, value);
    }
    let child = command
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {}: {err}", python().display()));
    let output = tokio::time::timeout(SDK_CALL_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("sdk_call.py {mode} took more than {SDK_CALL_TIMEOUT:?}"))
        .unwrap_or_else(|err| panic!("sdk_call.py {mode}: cannot wait for it: {err}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "sdk_call.py {mode} failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );
    let line = stdout
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .unwrap_or_else(|| panic!("sdk_call.py {mode} printed nothing; stderr: {stderr}"));
    serde_json::from_str(line).unwrap_or_else(|err| {
        panic!("sdk_call.py {mode} printed no JSON ({err}): {line}\nstderr: {stderr}")
    })
}
