//! A `TokenVerifier` of your own: opaque tokens checked at an internal
//! OAuth 2.0 token introspection endpoint (RFC 7662).
//!
//! ```text
//! cargo run --example custom_verifier -- --demo   # runs a small introspection endpoint and the stand-in, then exits
//! ```
//!
//! The contract (see `skillgate::identity::TokenVerifier`): fail closed —
//! any doubt is an `Err`; never log the token or put it in an error.

#[path = "../tests/support/stand_in.rs"]
#[allow(dead_code)]
mod stand_in;

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use skillgate::identity::{AuthError, Principal, TokenVerifier};

/// Verifies tokens by RFC 7662 introspection, authenticating as a resource
/// server with HTTP Basic.
pub struct IntrospectionVerifier {
    endpoint: String,
    client_id: String,
    client_secret: String,
    /// The issuer recorded in the principal (introspection answers may omit `iss`).
    issuer: String,
    http: reqwest::Client,
}

/// The RFC 7662 §2.2 members this verifier uses.
#[derive(Deserialize)]
struct Introspection {
    active: bool,
    sub: Option<String>,
    iss: Option<String>,
    client_id: Option<String>,
    scope: Option<String>,
    exp: Option<i64>,
    #[serde(default)]
    groups: Vec<String>,
}

impl IntrospectionVerifier {
    /// A verifier asking `endpoint`, as resource server `client_id`.
    pub fn new(endpoint: &str, client_id: &str, client_secret: &str, issuer: &str) -> Self {
        IntrospectionVerifier {
            endpoint: endpoint.to_owned(),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            issuer: issuer.to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
        }
    }
}

#[async_trait]
impl TokenVerifier for IntrospectionVerifier {
    async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .append_pair("token_type_hint", "access_token")
            .finish();
        let res = self
            .http
            .post(&self.endpoint)
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            // Unreachable introspection: fail closed.
            .map_err(|_| AuthError::KeysUnavailable)?;
        if !res.status().is_success() {
            return Err(AuthError::KeysUnavailable);
        }
        let info: Introspection = res.json().await.map_err(|_| AuthError::Malformed)?;
        if !info.active {
            return Err(AuthError::InvalidSignature);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(i64::MAX);
        if info.exp.is_some_and(|exp| exp <= now) {
            return Err(AuthError::Expired);
        }
        let sub = info.sub.ok_or(AuthError::MissingClaim("sub"))?;
        let mut p = Principal::new(info.iss.unwrap_or_else(|| self.issuer.clone()), sub)
            .with_groups(info.groups);
        p.client_id = info.client_id;
        p.scopes = info
            .scope
            .map(|s| s.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        p.expires_at = info.exp;
        Ok(p)
    }
}

/// A stand-in for your internal introspection endpoint: knows one token.
async fn introspection_endpoint() -> Result<String, String> {
    use axum::routing::post;
    async fn introspect(
        form: axum::extract::Form<Vec<(String, String)>>,
    ) -> axum::Json<serde_json::Value> {
        let token = form
            .0
            .iter()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.as_str());
        axum::Json(match token {
            Some("opaque-token-of-report-builder") => serde_json::json!({
                "active": true, "sub": "report-builder", "client_id": "report-builder",
                "scope": "messages:write", "groups": ["reports"],
                "exp": jiff::Timestamp::now().as_second() + 600,
            }),
            _ => serde_json::json!({ "active": false }),
        })
    }
    let app = axum::Router::new().route("/introspect", post(introspect));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let url = format!(
        "http://{}/introspect",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    tokio::spawn(axum::serve(listener, app).into_future());
    Ok(url)
}

/// The scripted run: a known token passes, an unknown one gets 401.
pub async fn demo() -> Result<Vec<String>, String> {
    use skillgate::upstream::{Credential, StaticCredential, Upstream};
    use tower::ServiceExt;

    let api = stand_in::StandIn::start().await;
    let endpoint = introspection_endpoint().await?;
    let verifier = IntrospectionVerifier::new(
        &endpoint,
        "skillgate",
        "rs-secret",
        "https://internal-auth.corp",
    );
    let gateway = skillgate::gateway::Gateway::builder()
        .verifier(verifier)
        .audit_store(
            skillgate::audit::SqliteStore::in_memory()
                .await
                .map_err(|e| e.to_string())?,
        )
        .build()
        .map_err(|e| e.to_string())?;
    let upstream = Upstream::builder(api.base_url())
        .credential(StaticCredential::new(Credential::api_key(
            stand_in::STAND_IN_API_KEY,
        )))
        .build()
        .map_err(|e| e.to_string())?;
    let service = gateway.service(upstream);
    let body = r#"{"model":"claude-sonnet-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
    let call = |token: &'static str| {
        let service = service.clone();
        async move {
            let req = http::Request::post("/v1/messages")
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .header("anthropic-version", "2023-06-01")
                .header("content-length", body.len())
                .body(skillgate::Body::from(body))
                .map_err(|e| e.to_string())?;
            let Ok(res) = service.oneshot(req).await;
            let status = res.status().as_u16();
            let _ = http_body_util::BodyExt::collect(res.into_body()).await;
            Ok::<u16, String>(status)
        }
    };
    let known = call("opaque-token-of-report-builder").await?;
    let unknown = call("opaque-token-nobody-issued").await?;
    if known != 200 || unknown != 401 {
        return Err(format!(
            "demo check failed: known token -> {known}, unknown -> {unknown}"
        ));
    }
    Ok(vec![
        format!("known token -> {known}"),
        format!("unknown token -> {unknown}"),
    ])
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    if !std::env::args().any(|a| a == "--demo") {
        eprintln!("usage: custom_verifier --demo");
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
