//! The gateway's upstream credential without a static key:
//! `upstream::FederatedCredential` exchanging the gateway's own identity
//! token at the Anthropic stand-in's `POST /v1/oauth/token` (RFC 7523
//! jwt-bearer, as the official SDKs do), `Upstream` sending the access token
//! with the API beta it needs, and a gateway assembled from `GatewayConfig`
//! with no API key anywhere serving the official Python SDK.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, StatusCode};
use http_body_util::BodyExt;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use skillgate::gateway::GatewayConfig;
use skillgate::identity::dev::{DevIssuer, MintOptions};
use skillgate::upstream::{
    Credential, CredentialError, CredentialSource, FederatedCredential, FederatedCredentialBuilder,
    Upstream,
};
use support::gateway::TestGateway;
use support::python::sdk_call;
use support::stand_in::{
    ACCESS_TOKEN_PREFIX, ReceivedRequest, STAND_IN_FEDERATION_RULE_ID, STAND_IN_ORGANIZATION_ID,
    StandIn, StandInOptions, reply_text_for,
};
use tower::ServiceExt;

/// Shorter than the default mandatory refresh margin (30 s): such a token is
/// refreshed by every call.
const EXPIRING: Duration = Duration::from_secs(10);
/// Between the mandatory (30 s) and advisory (120 s) margins.
const ADVISORY: Duration = Duration::from_secs(60);
const FRESH: Duration = Duration::from_secs(600);

/// The gateway's own workload: an identity issuer, and the token file a
/// platform (e.g. Kubernetes) would keep rotated.
struct Workload {
    issuer: DevIssuer,
    _dir: tempfile::TempDir,
    token_file: PathBuf,
}

impl Workload {
    fn new() -> Workload {
        let dir = tempfile::tempdir().expect("tempdir");
        let token_file = dir.path().join("identity-token");
        let workload = Workload {
            issuer: DevIssuer::ephemeral(),
            token_file,
            _dir: dir,
        };
        workload.rotate("system:serviceaccount:ai:skillgate");
        workload
    }

    fn mint(&self, sub: &str) -> String {
        self.issuer
            .mint(&MintOptions::new(sub).audience("https://api.anthropic.com"))
            .expect("mint identity token")
    }

    /// Writes a new identity token for `sub` (with a trailing newline, as
    /// mounted files often have) and returns it.
    fn rotate(&self, sub: &str) -> String {
        let token = self.mint(sub);
        std::fs::write(&self.token_file, format!("{token}\n")).expect("write identity token");
        token
    }

    fn credential(&self, stand_in: &StandIn) -> FederatedCredentialBuilder {
        FederatedCredential::builder(stand_in.base_url())
            .identity_token_file(&self.token_file)
            .federation_rule_id(STAND_IN_FEDERATION_RULE_ID)
            .organization_id(STAND_IN_ORGANIZATION_ID)
    }
}

async fn stand_in_with_lifetime(lifetime: Duration) -> StandIn {
    StandIn::start_with(StandInOptions {
        access_token_lifetime: lifetime,
        ..StandInOptions::default()
    })
    .await
}

/// The access token inside a credential from the federated source.
fn access_token(c: Credential) -> String {
    match c {
        Credential::OAuthBearer(t) => t.expose_secret().to_owned(),
        other => panic!("expected an OAuth access token, got {other:?}"),
    }
}

fn token_requests(stand_in: &StandIn) -> Vec<ReceivedRequest> {
    stand_in
        .received()
        .into_iter()
        .filter(|r| r.path_and_query == "/v1/oauth/token")
        .collect()
}

fn api_requests(stand_in: &StandIn) -> Vec<ReceivedRequest> {
    stand_in
        .received()
        .into_iter()
        .filter(|r| r.path_and_query.starts_with("/v1/messages"))
        .collect()
}

fn beta_flags(r: &ReceivedRequest) -> Vec<String> {
    r.headers
        .get_all("anthropic-beta")
        .iter()
        .flat_map(|v| v.to_str().expect("ascii").split(','))
        .map(|f| f.trim().to_owned())
        .collect()
}

#[tokio::test]
async fn exchange_sends_what_the_sdk_sends_and_caches() {
    let stand_in = StandIn::start().await;
    let workload = Workload::new();
    let identity = workload.rotate("system:serviceaccount:ai:skillgate");
    let source = workload.credential(&stand_in).build().expect("build");

    let first = access_token(source.credential().await.expect("exchange"));
    assert!(first.starts_with(ACCESS_TOKEN_PREFIX), "an issued token");
    assert_eq!(stand_in.token_exchanges(), 1);

    let requests = token_requests(&stand_in);
    let [exchange] = requests.as_slice() else {
        panic!("one exchange: {requests:#?}")
    };
    assert_eq!(exchange.method, "POST");
    assert_eq!(exchange.header("content-type"), Some("application/json"));
    assert_eq!(
        exchange.header("anthropic-beta"),
        Some("oauth-2025-04-20,oidc-federation-2026-04-01")
    );
    assert_eq!(
        exchange.json(),
        json!({
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "assertion": identity,
            "federation_rule_id": STAND_IN_FEDERATION_RULE_ID,
            "organization_id": STAND_IN_ORGANIZATION_ID,
        }),
        "exactly the SDK's body, the file's whitespace trimmed"
    );
    assert!(exchange.header("authorization").is_none());
    assert!(exchange.header("x-api-key").is_none());

    // Cached: no new exchange while the token is fresh.
    let second = access_token(source.credential().await.expect("cached"));
    assert_eq!(second, first);
    assert_eq!(stand_in.token_exchanges(), 1);
}

#[tokio::test]
async fn optional_service_account_and_workspace_are_sent() {
    let stand_in = StandIn::start().await;
    let workload = Workload::new();
    let source = workload
        .credential(&stand_in)
        .service_account_id("svac_01Gateway")
        .workspace_id("default")
        .build()
        .expect("build");
    source.credential().await.expect("exchange");
    let body = token_requests(&stand_in)[0].json();
    assert_eq!(body["service_account_id"], "svac_01Gateway");
    assert_eq!(body["workspace_id"], "default");
}

#[tokio::test]
async fn expiring_token_is_refreshed_before_expiry() {
    let stand_in = stand_in_with_lifetime(EXPIRING).await;
    let workload = Workload::new();
    let source = workload.credential(&stand_in).build().expect("build");

    // Inside the mandatory margin from the start: each call refreshes.
    let a = access_token(source.credential().await.expect("first"));
    let b = access_token(source.credential().await.expect("refresh"));
    assert_ne!(a, b);
    assert_eq!(stand_in.token_exchanges(), 2);

    // A longer-lived token is then served from the cache.
    stand_in.set_access_token_lifetime(FRESH);
    let c = access_token(source.credential().await.expect("refresh"));
    let d = access_token(source.credential().await.expect("cached"));
    assert_ne!(c, b);
    assert_eq!(c, d);
    assert_eq!(stand_in.token_exchanges(), 3);

    // Margins are configurable: with a mandatory margin beyond the
    // lifetime, even a fresh token is refreshed.
    let eager = workload
        .credential(&stand_in)
        .advisory_refresh(Duration::from_secs(3600))
        .mandatory_refresh(Duration::from_secs(3600))
        .build()
        .expect("build");
    let e = access_token(eager.credential().await.expect("first"));
    let f = access_token(eager.credential().await.expect("refresh"));
    assert_ne!(e, f);
    assert_eq!(stand_in.token_exchanges(), 5);
}

#[tokio::test]
async fn advisory_refresh_failure_serves_the_cached_token() {
    let stand_in = stand_in_with_lifetime(ADVISORY).await;
    let workload = Workload::new();
    let source = workload.credential(&stand_in).build().expect("build");

    let a = access_token(source.credential().await.expect("first"));
    // In the advisory window: a refresh is made, and succeeds.
    let b = access_token(source.credential().await.expect("advisory refresh"));
    assert_ne!(a, b);
    assert_eq!(stand_in.token_exchanges(), 2);

    // The identity token disappears: the refresh fails, the still valid
    // cached token is served.
    std::fs::remove_file(&workload.token_file).expect("remove");
    let c = access_token(source.credential().await.expect("stale but valid"));
    assert_eq!(c, b);
    assert_eq!(
        stand_in.token_exchanges(),
        2,
        "nothing to send without a file"
    );
}

#[tokio::test]
async fn mandatory_refresh_failure_fails_closed() {
    let stand_in = stand_in_with_lifetime(EXPIRING).await;
    let workload = Workload::new();
    let source = workload.credential(&stand_in).build().expect("build");
    source.credential().await.expect("first");

    std::fs::remove_file(&workload.token_file).expect("remove");
    let e = source.credential().await.unwrap_err();
    assert!(matches!(e, CredentialError::Unreadable(_)), "{e:?}");
    assert!(
        e.to_string()
            .contains(&workload.token_file.display().to_string())
    );

    // The token endpoint refuses (an expired identity token): the cached
    // token about to expire is not served either.
    workload.rotate("again");
    let source = workload.credential(&stand_in).build().expect("build");
    source.credential().await.expect("expiring token");
    let issued = stand_in.access_tokens_issued();
    std::fs::write(&workload.token_file, expired_identity_token(&workload)).expect("write");
    let e = source.credential().await.unwrap_err();
    assert!(
        matches!(
            e,
            CredentialError::Exchange {
                status: Some(400),
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(stand_in.access_tokens_issued(), issued);
}

fn expired_identity_token(workload: &Workload) -> String {
    let now = jiff::Timestamp::now().as_second();
    workload
        .issuer
        .sign(
            json!({"iss": workload.issuer.issuer(), "sub": "gw", "aud": "https://api.anthropic.com", "exp": now - 60})
                .as_object()
                .expect("object"),
        )
        .expect("sign")
}

#[tokio::test]
async fn identity_token_rotation_is_used_at_the_next_exchange() {
    let stand_in = stand_in_with_lifetime(EXPIRING).await;
    let workload = Workload::new();
    let source = workload.credential(&stand_in).build().expect("build");

    let first = workload.rotate("skillgate-pod-1");
    source.credential().await.expect("first");
    let second = workload.rotate("skillgate-pod-1-rotated");
    source.credential().await.expect("second");

    let assertions: Vec<Value> = token_requests(&stand_in)
        .iter()
        .map(|r| r.json()["assertion"].clone())
        .collect();
    assert_eq!(assertions, [json!(first), json!(second)]);
}

fn expect_refused(e: &CredentialError, status: u16, identity: &str) {
    match e {
        CredentialError::Exchange {
            status: Some(s),
            message,
        } => {
            assert_eq!(*s, status, "{message}");
            assert!(message.contains("invalid_grant"), "{message}");
        }
        other => panic!("expected a refused exchange, got {other:?}"),
    }
    let shown = format!("{e} {e:?}");
    for part in identity.split('.') {
        assert!(!shown.contains(part), "identity token leaked: {shown}");
    }
}

#[tokio::test]
async fn refused_exchanges_fail_closed() {
    let stand_in = StandIn::start().await;
    let workload = Workload::new();
    let identity = workload.rotate("system:serviceaccount:ai:skillgate");

    // A rule that does not match: 401 invalid_grant, retried once like the SDK.
    let source = workload
        .credential(&stand_in)
        .federation_rule_id("fdrl_01NotThisOne")
        .build()
        .expect("build");
    expect_refused(&source.credential().await.unwrap_err(), 401, &identity);
    assert_eq!(stand_in.token_exchanges(), 2);
    // Nothing cached: the next call asks again.
    assert!(source.credential().await.is_err());
    assert_eq!(stand_in.token_exchanges(), 4);

    // Another organization: 401 as well.
    let source = workload
        .credential(&stand_in)
        .organization_id("00000000-0000-4000-8000-0000000000ff")
        .build()
        .expect("build");
    expect_refused(&source.credential().await.unwrap_err(), 401, &identity);
    assert_eq!(stand_in.token_exchanges(), 6);

    // An expired identity token: 400 invalid_grant, not retried.
    let expired = expired_identity_token(&workload);
    std::fs::write(&workload.token_file, &expired).expect("write");
    let source = workload.credential(&stand_in).build().expect("build");
    expect_refused(&source.credential().await.unwrap_err(), 400, &expired);
    assert_eq!(stand_in.token_exchanges(), 7);

    // Not a JWT at all: 400 invalid_grant.
    std::fs::write(&workload.token_file, "not-a-jwt").expect("write");
    expect_refused(&source.credential().await.unwrap_err(), 400, "not-a-jwt");
    assert_eq!(stand_in.token_exchanges(), 8);

    // No file, or an empty one: nothing is sent.
    std::fs::write(&workload.token_file, "\n").expect("write");
    assert!(matches!(
        source.credential().await,
        Err(CredentialError::Missing(_))
    ));
    std::fs::remove_file(&workload.token_file).expect("remove");
    assert!(matches!(
        source.credential().await,
        Err(CredentialError::Unreadable(_))
    ));
    assert_eq!(stand_in.token_exchanges(), 8);
    assert_eq!(stand_in.access_tokens_issued(), 0);
}

async fn concurrent_tokens(source: &Arc<FederatedCredential>, n: usize) -> Vec<String> {
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let source = Arc::clone(source);
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                access_token(source.credential().await.expect("credential"))
            })
        })
        .collect();
    let mut tokens = Vec::with_capacity(n);
    for t in tasks {
        tokens.push(t.await.expect("task"));
    }
    tokens
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_cause_a_single_exchange() {
    const N: usize = 200;
    let stand_in = StandIn::start().await;
    let workload = Workload::new();

    // Cold cache: 200 callers, one exchange, one token for all.
    let source = Arc::new(workload.credential(&stand_in).build().expect("build"));
    let tokens = concurrent_tokens(&source, N).await;
    assert_eq!(stand_in.token_exchanges(), 1);
    assert!(tokens.iter().all(|t| t == &tokens[0]));

    // Expiring cache (mandatory window): all wait for one refresh and get
    // the new token.
    stand_in.set_access_token_lifetime(EXPIRING);
    let source = Arc::new(workload.credential(&stand_in).build().expect("build"));
    let old = access_token(source.credential().await.expect("expiring token"));
    assert_eq!(stand_in.token_exchanges(), 2);
    stand_in.set_access_token_lifetime(FRESH);
    let tokens = concurrent_tokens(&source, N).await;
    assert_eq!(stand_in.token_exchanges(), 3);
    assert!(tokens.iter().all(|t| t == &tokens[0] && t != &old));

    // Advisory window: one refresh; callers meanwhile keep the cached token.
    stand_in.set_access_token_lifetime(ADVISORY);
    let source = Arc::new(workload.credential(&stand_in).build().expect("build"));
    let old = access_token(source.credential().await.expect("advisory token"));
    assert_eq!(stand_in.token_exchanges(), 4);
    stand_in.set_access_token_lifetime(FRESH);
    let tokens = concurrent_tokens(&source, N).await;
    assert_eq!(stand_in.token_exchanges(), 5);
    let new: Vec<&String> = tokens.iter().filter(|t| *t != &old).collect();
    assert!(!new.is_empty(), "the refreshing caller gets the new token");
    assert!(new.iter().all(|t| *t == new[0]));
    // And after it, everyone does.
    let after = access_token(source.credential().await.expect("cached"));
    assert_eq!(&after, new[0]);
    assert_eq!(stand_in.token_exchanges(), 5);
}

fn messages_request(betas: &[&str]) -> Request<skillgate::Body> {
    let mut b = Request::post("/v1/messages")
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01")
        // A caller credential must never go upstream.
        .header("authorization", "Bearer caller-token");
    for beta in betas {
        b = b.header("anthropic-beta", *beta);
    }
    b.body(skillgate::Body::from(
        json!({"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]})
            .to_string(),
    ))
    .expect("request")
}

async fn send(upstream: &Upstream, req: Request<skillgate::Body>) -> (StatusCode, Value) {
    let res = upstream.clone().oneshot(req).await.expect("infallible");
    let status = res.status();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&body).expect("json"))
}

#[tokio::test]
async fn upstream_sends_the_oauth_beta_and_reexchanges_after_a_401() {
    let stand_in = StandIn::start().await;
    let workload = Workload::new();
    let upstream = Upstream::builder(stand_in.base_url())
        .credential(workload.credential(&stand_in).build().expect("build"))
        .build()
        .expect("upstream");

    let cases: [(&[&str], &[&str]); 4] = [
        (&[], &["oauth-2025-04-20"]),
        (
            &["files-api-2025-04-14"],
            &["files-api-2025-04-14", "oauth-2025-04-20"],
        ),
        (
            &["files-api-2025-04-14, oauth-2025-04-20"],
            &["files-api-2025-04-14", "oauth-2025-04-20"],
        ),
        (
            &["a-1", "b-2,oauth-2025-04-20b"],
            &["a-1", "b-2", "oauth-2025-04-20b", "oauth-2025-04-20"],
        ),
    ];
    for (sent, expected) in cases {
        let (status, body) = send(&upstream, messages_request(sent)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let seen = api_requests(&stand_in).pop().expect("forwarded");
        assert_eq!(beta_flags(&seen), expected, "sent {sent:?}");
        let auth = seen.header("authorization").expect("authorization");
        assert!(auth.starts_with(&format!("Bearer {ACCESS_TOKEN_PREFIX}")));
        assert!(seen.header("x-api-key").is_none());
    }
    assert_eq!(stand_in.token_exchanges(), 1);

    // The API stops accepting the token: the 401 reaches the caller, and the
    // next request is made with a freshly exchanged token.
    stand_in.revoke_access_tokens();
    let (status, body) = send(&upstream, messages_request(&[])).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["type"], "authentication_error");
    let (status, body) = send(&upstream, messages_request(&[])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(stand_in.token_exchanges(), 2);
    let seen = api_requests(&stand_in);
    let last_two: Vec<_> = seen[seen.len() - 2..]
        .iter()
        .map(|r| r.header("authorization").expect("auth").to_owned())
        .collect();
    assert_ne!(last_two[0], last_two[1]);

    // Without a usable identity token nothing is forwarded: 503.
    stand_in.revoke_access_tokens();
    std::fs::remove_file(&workload.token_file).expect("remove");
    let before = api_requests(&stand_in).len();
    let (status, body) = send(&upstream, messages_request(&[])).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = send(&upstream, messages_request(&[])).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["type"], "api_error");
    assert_eq!(api_requests(&stand_in).len(), before + 1);
}

/// The stand-in behaves like the API: the token endpoint wants its beta, and
/// an access token is refused without the OAuth beta.
#[tokio::test]
async fn stand_in_token_endpoint_and_beta_rules() {
    let stand_in = StandIn::start().await;
    let workload = Workload::new();
    let http = reqwest::Client::new();
    let body = json!({
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "assertion": workload.mint("gw"),
        "federation_rule_id": STAND_IN_FEDERATION_RULE_ID,
        "organization_id": STAND_IN_ORGANIZATION_ID,
    });
    let token_url = format!("{}/v1/oauth/token", stand_in.base_url());
    let post = |beta: Option<&str>, body: &Value| {
        let mut r = http
            .post(&token_url)
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(b) = beta {
            r = r.header("anthropic-beta", b);
        }
        r.send()
    };

    let res = post(None, &body).await.expect("post");
    assert_eq!(res.status(), 400);
    let err: Value = res.json().await.expect("json");
    assert_eq!(err["error"], "invalid_request");

    let mut wrong_grant = body.clone();
    wrong_grant["grant_type"] = json!("client_credentials");
    let res = post(Some("oidc-federation-2026-04-01"), &wrong_grant)
        .await
        .expect("post");
    assert_eq!(res.status(), 400);
    let err: Value = res.json().await.expect("json");
    assert_eq!(err["error"], "unsupported_grant_type");

    let res = post(Some("oidc-federation-2026-04-01"), &body)
        .await
        .expect("post");
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers().get("cache-control").map(|v| v.as_bytes()),
        Some(&b"no-store"[..])
    );
    let token: Value = res.json().await.expect("json");
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["expires_in"], 600);
    let access = token["access_token"].as_str().expect("token").to_owned();

    let call = |beta: Option<&str>| {
        let mut r = http
            .post(format!("{}/v1/messages", stand_in.base_url()))
            .bearer_auth(&access)
            .header("anthropic-version", "2023-06-01")
            .header("content-type", "application/json")
            .body(
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})
                    .to_string(),
            );
        if let Some(b) = beta {
            r = r.header("anthropic-beta", b);
        }
        r.send()
    };
    let res = call(None).await.expect("call");
    assert_eq!(res.status(), 401);
    let err: Value = res.json().await.expect("json");
    assert_eq!(err["type"], "error");
    assert_eq!(err["error"]["type"], "authentication_error");
    assert_eq!(
        err["error"]["message"],
        "OAuth authentication is currently not supported."
    );
    let res = call(Some("oauth-2025-04-20")).await.expect("call");
    assert_eq!(res.status(), 200);
    assert_eq!(stand_in.token_exchanges(), 3);
}

struct FederatedGateway {
    base_url: String,
    dev: Arc<DevIssuer>,
    _gw: TestGateway,
}

async fn start_gateway(stand_in: &StandIn, identity_token_file: &Path) -> FederatedGateway {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg: GatewayConfig = toml::from_str(&format!(
        r#"
        [upstream]
        url = "{url}"
        api_key_env = "SKILLGATE_TEST_NO_SUCH_KEY_VARIABLE"
        identity_token_file = "{file}"
        federation_rule_id = "{rule}"
        organization_id = "{org}"
        "#,
        url = stand_in.base_url(),
        file = identity_token_file.display(),
        rule = STAND_IN_FEDERATION_RULE_ID,
        org = STAND_IN_ORGANIZATION_ID,
    ))
    .expect("config");
    assert!(
        std::env::var_os("SKILLGATE_TEST_NO_SUCH_KEY_VARIABLE").is_none(),
        "no API key anywhere"
    );
    cfg.audit.sqlite = dir.path().join("audit.db");
    cfg.identity.dev_key_file = dir.path().join("dev-issuer.json");
    let gw = TestGateway::serve(cfg, None, dir).await;
    FederatedGateway {
        base_url: gw.base_url.clone(),
        dev: gw.dev.clone().expect("dev issuer"),
        _gw: gw,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_with_federated_upstream_serves_the_python_sdk() {
    let stand_in = StandIn::start().await;
    let workload = Workload::new();
    let identity = workload.rotate("system:serviceaccount:ai:skillgate");
    let gw = start_gateway(&stand_in, &workload.token_file).await;
    let caller = gw
        .dev
        .mint(&MintOptions::new("skill-billing").group("ci"))
        .expect("mint");

    let prompt = "What is 2 + 2?";
    let out = sdk_call(
        "create",
        &gw.base_url,
        Some(&caller),
        &[("SG_PROMPT", prompt)],
    )
    .await;
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(out["text"], reply_text_for(prompt));

    let prompt = "Tell me about lighthouses";
    let out = sdk_call(
        "stream",
        &gw.base_url,
        Some(&caller),
        &[("SG_PROMPT", prompt)],
    )
    .await;
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(out["text"], reply_text_for(prompt));
    let events: Vec<&str> = out["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(events.last(), Some(&"message_stop"));

    // The caller's own betas travel with the one the access token needs.
    let out = sdk_call(
        "create",
        &gw.base_url,
        Some(&caller),
        &[("SG_PROMPT", "beta"), ("SG_BETAS", "files-api-2025-04-14")],
    )
    .await;
    assert_eq!(out["ok"], true, "{out}");

    // One exchange served all three calls.
    assert_eq!(stand_in.token_exchanges(), 1);
    assert_eq!(token_requests(&stand_in)[0].json()["assertion"], identity);
    let api = api_requests(&stand_in);
    assert_eq!(api.len(), 3);
    for r in &api {
        let auth = r.header("authorization").expect("authorization");
        assert!(auth.starts_with(&format!("Bearer {ACCESS_TOKEN_PREFIX}")));
        assert!(r.header("x-api-key").is_none(), "no API key anywhere");
        let flags = beta_flags(r);
        assert_eq!(
            flags.iter().filter(|f| *f == "oauth-2025-04-20").count(),
            1,
            "{flags:?}"
        );
        for (name, value) in &r.headers {
            let v = value.to_str().unwrap_or("");
            assert!(!v.contains(&caller), "caller token leaked in {name}");
            assert!(!v.contains(&identity), "identity token leaked in {name}");
        }
    }
    assert_eq!(
        beta_flags(&api[2]),
        ["files-api-2025-04-14", "oauth-2025-04-20"]
    );
}
