//! A real OpenID Connect provider (`oidc-provider` 9.x on Node) run on
//! loopback by `tests/node/oidc_provider.mjs`.
//!
//! It has one confidential client limited to the `client_credentials` grant.
//! Its access tokens are JWTs (RFC 9068, header `typ: at+jwt`) with
//! `aud` = [`AUDIENCE`], `iss` = the issuer, `sub` = `client_id` = the client,
//! `scope` = [`SCOPE`] and `groups` = [`GROUPS`]. The JWKS has one key per
//! algorithm in [`ALGORITHMS`] (RSA for RS256, EC P-256 for ES256, a second
//! RSA key for PS256, Ed25519 for EdDSA), fresh each start. Tokens for
//! [`RESOURCE`] are RS256 (or `OIDC_ACCESS_TOKEN_ALG`, see
//! [`OidcProvider::start_with_env`]); [`OidcProvider::token_with_alg`] gets
//! one signed with any of them. [`OidcProvider::rotate_keys`] replaces every
//! key while the provider keeps running on the same port.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// The `aud` of the access tokens.
pub const AUDIENCE: &str = "skillgate";
/// The resource indicator (RFC 8707) that maps to [`AUDIENCE`]; the provider
/// wants an absolute URI here, so it is not the bare audience.
pub const RESOURCE: &str = "urn:skillgate";
/// A second resource server's indicator: its tokens are real and validly
/// signed, but their audience is [`OTHER_AUDIENCE`], not skillgate.
pub const OTHER_RESOURCE: &str = "urn:other-service";
/// The `aud` of tokens for [`OTHER_RESOURCE`].
pub const OTHER_AUDIENCE: &str = "other-service";
/// The scope granted to the client.
pub const SCOPE: &str = "messages:write";
/// The `groups` claim of the client's tokens.
pub const GROUPS: [&str; 2] = ["ci", "billing"];
/// The access-token signing algorithms the provider has keys for.
pub const ALGORITHMS: [&str; 4] = ["RS256", "PS256", "ES256", "EdDSA"];
/// How long the provider may take to print its line.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running provider; the Node process is killed when this is dropped (and
/// exits by itself if the test process dies, as its stdin then closes).
pub struct OidcProvider {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    /// Bearer token for the provider's admin endpoint (key rotation).
    pub admin_token: String,
    /// The `kid` of the key for each algorithm at start (see [`Self::rotate_keys`]).
    pub kids: std::collections::BTreeMap<String, String>,
    child: Child,
    // Held open: the provider exits when its stdin closes.
    _stdin: ChildStdin,
    _stdout: BufReader<ChildStdout>,
    stderr: Arc<Mutex<String>>,
}

/// `tests/node/oidc_provider.mjs`.
pub fn script() -> std::path::PathBuf {
    super::repo_dir().join("tests/node/oidc_provider.mjs")
}

/// `$SKILLGATE_NODE`, or `node` from `PATH`.
pub fn node() -> std::ffi::OsString {
    std::env::var_os("SKILLGATE_NODE").unwrap_or_else(|| "node".into())
}

impl OidcProvider {
    /// Spawns the provider on a free port and waits for its JSON line.
    pub async fn start() -> OidcProvider {
        Self::start_with_env(&[]).await
    }

    /// Like [`Self::start`], with extra environment variables for the
    /// script, e.g. `("OIDC_ACCESS_TOKEN_ALG", "ES256")` to sign
    /// [`RESOURCE`] tokens with ES256.
    pub async fn start_with_env(env: &[(&str, &str)]) -> OidcProvider {
        // On a loaded 2-core CI machine a start can stall; a fresh process
        // (the stalled one is killed on drop) is tried before giving up.
        let mut last = String::new();
        for _ in 0..3 {
            match Self::start_once(env).await {
                Ok(p) => return p,
                Err(stderr) => last = stderr,
            }
        }
        panic!(
            "oidc_provider.mjs did not announce itself within {START_TIMEOUT:?}, three times; stderr:\n{last}"
        )
    }

    async fn start_once(env: &[(&str, &str)]) -> Result<OidcProvider, String> {
        let modules = super::repo_dir().join("tests/node/node_modules/oidc-provider");
        assert!(
            modules.exists(),
            "{} is missing: run .ci/run first, or just .ci/setup (npm ci --prefix tests/node)",
            modules.display()
        );
        let mut child = tokio::process::Command::new(node())
            .arg(script())
            .env("OIDC_PORT", "0")
            .env_remove("OIDC_KEEP_STDIN")
            .env_remove("OIDC_ACCESS_TOKEN_ALG")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start node ({:?}): {err}", node()));
        let stdin = child.stdin.take().expect("child stdin is piped");
        let mut stdout = BufReader::new(child.stdout.take().expect("child stdout is piped"));
        let stderr = Arc::new(Mutex::new(String::new()));
        {
            let mut pipe = child.stderr.take().expect("child stderr is piped");
            let stderr = Arc::clone(&stderr);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let text = String::from_utf8_lossy(&buf[..n]);
                    stderr
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push_str(&text);
                }
            });
        }

        let mut line = String::new();
        let read = tokio::time::timeout(START_TIMEOUT, stdout.read_line(&mut line)).await;
        let said =
            |stderr: &Arc<Mutex<String>>| stderr.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match read {
            Ok(Ok(n)) if n > 0 => {}
            Ok(Ok(_)) => {
                // Give the stderr reader a moment to collect the reason.
                tokio::time::sleep(Duration::from_millis(200)).await;
                panic!(
                    "oidc_provider.mjs exited before announcing itself; stderr:\n{}",
                    said(&stderr)
                )
            }
            Ok(Err(err)) => panic!("reading oidc_provider.mjs stdout: {err}"),
            Err(_) => return Err(said(&stderr)),
        }
        let announced: Value = serde_json::from_str(line.trim()).unwrap_or_else(|err| {
            panic!("oidc_provider.mjs printed no JSON line ({err}): {line:?}")
        });
        let field = |name: &str| -> String {
            announced[name]
                .as_str()
                .unwrap_or_else(|| panic!("oidc_provider.mjs line has no {name:?}: {announced}"))
                .to_owned()
        };
        Ok(OidcProvider {
            issuer: field("issuer"),
            client_id: field("client_id"),
            client_secret: field("client_secret"),
            token_endpoint: field("token_endpoint"),
            jwks_uri: field("jwks_uri"),
            admin_token: field("admin_token"),
            kids: kids_of(&announced["kids"]),
            child,
            _stdin: stdin,
            _stdout: stdout,
            stderr,
        })
    }

    /// `{issuer}/.well-known/openid-configuration`.
    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer)
    }

    /// What the provider wrote on stderr so far (warnings, server errors).
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The process id of the Node process, if it still runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// GETs a JSON document (discovery, JWKS) from the provider.
    pub async fn get_json(&self, url: &str) -> Value {
        let response = reqwest::get(url)
            .await
            .unwrap_or_else(|err| panic!("GET {url}: {err}"));
        let status = response.status();
        let text = response
            .text()
            .await
            .unwrap_or_else(|err| panic!("GET {url}: reading body: {err}"));
        assert!(status.is_success(), "GET {url}: {status}: {text}");
        serde_json::from_str(&text)
            .unwrap_or_else(|err| panic!("GET {url}: not JSON ({err}): {text}"))
    }

    /// The discovery document.
    pub async fn discovery(&self) -> Value {
        self.get_json(&self.discovery_url()).await
    }

    /// The JWKS (public keys only).
    pub async fn jwks(&self) -> Value {
        self.get_json(&self.jwks_uri).await
    }

    /// POSTs `form` to the token endpoint with the client's credentials
    /// (`client_secret_basic`); returns the status and the JSON body.
    pub async fn token_request(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(&self.token_endpoint)
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .form(form)
            .send()
            .await
            .unwrap_or_else(|err| panic!("POST {}: {err}", self.token_endpoint));
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .unwrap_or_else(|err| panic!("POST {}: reading body: {err}", self.token_endpoint));
        let body = serde_json::from_str(&text).unwrap_or_else(|err| {
            panic!(
                "POST {}: {status}, body not JSON ({err}): {text}",
                self.token_endpoint
            )
        });
        (status, body)
    }

    /// A fresh client-credentials access token for skillgate (a JWT:
    /// `resource` = [`RESOURCE`], `scope` = [`SCOPE`]).
    pub async fn client_credentials_token(&self) -> String {
        self.token_for_resource(RESOURCE).await
    }

    /// A fresh client-credentials access token for skillgate signed with
    /// `alg` (one of [`ALGORITHMS`]).
    pub async fn token_with_alg(&self, alg: &str) -> String {
        self.token_for_resource(&resource_for_alg(alg)).await
    }

    /// Replaces every signing key with a fresh one (new kids) while the
    /// provider keeps running: same port, issuer and client. Returns the new
    /// `kid` of each algorithm. Tokens signed before no longer verify against
    /// the new JWKS.
    pub async fn rotate_keys(&self) -> std::collections::BTreeMap<String, String> {
        let url = format!("{}/admin/rotate-keys", self.issuer);
        let response = reqwest::Client::new()
            .post(&url)
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .unwrap_or_else(|err| panic!("POST {url}: {err}"));
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .unwrap_or_else(|err| panic!("POST {url}: body not JSON: {err}"));
        assert!(status.is_success(), "POST {url}: {status}: {body}");
        kids_of(&body["kids"])
    }

    /// A fresh client-credentials access token for `resource` (e.g.
    /// [`OTHER_RESOURCE`] for a token with the wrong audience).
    pub async fn token_for_resource(&self, resource: &str) -> String {
        let (status, body) = self
            .token_request(&[
                ("grant_type", "client_credentials"),
                ("resource", resource),
                ("scope", SCOPE),
            ])
            .await;
        assert_eq!(
            status,
            200,
            "token endpoint refused client_credentials for {resource}: {body}\nprovider stderr:\n{}",
            self.stderr()
        );
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("token response has no access_token: {body}"))
            .to_owned()
    }
}

/// The resource indicator whose tokens are signed with `alg` (audience
/// [`AUDIENCE`]), e.g. `urn:skillgate:es256`.
pub fn resource_for_alg(alg: &str) -> String {
    assert!(ALGORITHMS.contains(&alg), "the provider has no {alg} key");
    format!("{RESOURCE}:{}", alg.to_ascii_lowercase())
}

fn kids_of(v: &Value) -> std::collections::BTreeMap<String, String> {
    v.as_object()
        .unwrap_or_else(|| panic!("kids is not an object: {v}"))
        .iter()
        .map(|(alg, kid)| {
            let kid = kid
                .as_str()
                .unwrap_or_else(|| panic!("kid of {alg}: {kid}"));
            (alg.clone(), kid.to_owned())
        })
        .collect()
}

/// The header and payload of a compact JWS, decoded but NOT verified (for
/// asserting what a token says, never for trusting it).
pub fn decode_unverified(token: &str) -> (Value, Value) {
    use base64::Engine as _;
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(
        parts.len(),
        3,
        "not a compact JWS (want 3 dot-separated parts): {token}"
    );
    let decode = |part: &str, what: &str| -> Value {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap_or_else(|err| panic!("JWT {what} is not base64url ({err}): {part}"));
        serde_json::from_slice(&bytes).unwrap_or_else(|err| {
            panic!(
                "JWT {what} is not JSON ({err}): {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    };
    (decode(parts[0], "header"), decode(parts[1], "payload"))
}
