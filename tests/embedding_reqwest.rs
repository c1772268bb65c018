//! The client side (feature `reqwest`) end to end: machine-identity tokens
//! from a real OIDC provider (npm `oidc-provider`, client credentials) and
//! from the gateway's own token endpoint; renewal on `401`; and skillgate's
//! layers running inside a reqwest-middleware chain (`Enforce`) — policy
//! denial as a typed error, streaming kept streaming, audit records written.

#![cfg(all(feature = "reqwest", feature = "sqlite"))]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use futures_util::StreamExt;
use secrecy::SecretString;
use serde_json::{Value, json};
use skillgate::audit::{AuditStore, SqliteStore, Verdict};
use skillgate::client::{
    ClientCredentials, Enforce, GatewayTokenExchange, MachineIdentity, Refusal, TokenError,
    TokenSource,
};
use skillgate::error::ErrorType;
use skillgate::gateway::Gateway;
use skillgate::identity::federation::{ClaimCondition, FederationRule};
use skillgate::identity::{JwtVerifier, KeySource};
use skillgate::policy::{PolicyLayer, RulesPolicy};
use skillgate::upstream::{Credential, StaticCredential};
use support::gateway::TestGateway;
use support::oidc::{AUDIENCE, OidcProvider, RESOURCE, SCOPE};
use support::stand_in::{SLOW_MODEL, STAND_IN_API_KEY, StandIn, reply_text_for};

fn client_credentials(idp: &OidcProvider) -> ClientCredentials {
    ClientCredentials::new(&idp.token_endpoint, &idp.client_id, &idp.client_secret)
        .resource(RESOURCE)
        .scope(SCOPE)
}

fn client(mw: impl reqwest_middleware::Middleware) -> reqwest_middleware::ClientWithMiddleware {
    reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(mw)
        .build()
}

fn messages_body(model: &str, text: &str, stream: bool) -> String {
    json!({"model": model, "max_tokens": 64, "stream": stream,
           "messages": [{"role": "user", "content": text}]})
    .to_string()
}

async fn post_messages(
    c: &reqwest_middleware::ClientWithMiddleware,
    base: &str,
    body: String,
) -> reqwest_middleware::Result<reqwest::Response> {
    c.post(format!("{base}/v1/messages"))
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_from_a_real_provider_through_the_gateway() {
    let idp = OidcProvider::start().await;
    let upstream = StandIn::start().await;
    let gw = TestGateway::start(&upstream, |c, _| {
        c.identity.issuer = Some(idp.issuer.clone());
        c.identity.audience = AUDIENCE.into();
        c.identity.require_typ = Some("at+jwt".into());
    })
    .await;
    let c = client(MachineIdentity::new(client_credentials(&idp)));
    for prompt in ["first", "second"] {
        let res = post_messages(
            &c,
            &gw.base_url,
            messages_body("claude-sonnet-5", prompt, false),
        )
        .await
        .expect("sent");
        assert_eq!(res.status(), 200);
        let v: Value = res.json().await.expect("json");
        assert_eq!(v["content"][0]["text"], reply_text_for(prompt));
    }
    let recs = gw.records(2).await;
    for r in &recs {
        let p = r.request.principal.as_ref().expect("principal");
        assert_eq!(
            (p.issuer.as_str(), p.subject.as_str()),
            (idp.issuer.as_str(), idp.client_id.as_str())
        );
    }
    // The skill's token never reached the upstream.
    for r in upstream.received() {
        assert_eq!(r.header("x-api-key"), Some(STAND_IN_API_KEY));
        assert!(r.header("authorization").is_none());
    }
}

/// Hands out a bad token until invalidated, then `good`.
struct StaleFirst {
    good: String,
    stale: std::sync::atomic::AtomicBool,
    fetches: AtomicUsize,
    invalidations: AtomicUsize,
}

#[async_trait]
impl TokenSource for StaleFirst {
    async fn token(&self) -> Result<SecretString, TokenError> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        Ok(SecretString::from(if self.stale.load(Ordering::SeqCst) {
            "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c3RhbGU".to_owned()
        } else {
            self.good.clone()
        }))
    }
    fn invalidate(&self) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        self.stale.store(false, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_401_renews_the_token_once_and_retries() {
    let upstream = StandIn::start().await;
    let gw = TestGateway::start(&upstream, |_, _| {}).await;
    let source = Arc::new(StaleFirst {
        good: gw.token("renewing-skill", &["ci"]),
        stale: true.into(),
        fetches: AtomicUsize::new(0),
        invalidations: AtomicUsize::new(0),
    });
    let c = client(MachineIdentity::from_arc(source.clone()));
    let res = post_messages(
        &c,
        &gw.base_url,
        messages_body("claude-sonnet-5", "retry", false),
    )
    .await
    .expect("sent");
    assert_eq!(res.status(), 200);
    assert_eq!(source.fetches.load(Ordering::SeqCst), 2);
    assert_eq!(source.invalidations.load(Ordering::SeqCst), 1);

    // A source that only has bad tokens: one retry, then the 401 is the answer.
    let bad = Arc::new(StaleFirst {
        good: "still-not-a-token".into(),
        stale: true.into(),
        fetches: AtomicUsize::new(0),
        invalidations: AtomicUsize::new(0),
    });
    let c = client(MachineIdentity::from_arc(bad.clone()));
    let res = post_messages(
        &c,
        &gw.base_url,
        messages_body("claude-sonnet-5", "x", false),
    )
    .await
    .expect("sent");
    assert_eq!(res.status(), 401);
    assert_eq!(bad.fetches.load(Ordering::SeqCst), 2, "exactly one retry");
    assert_eq!(
        upstream.received().len(),
        1,
        "only the renewed call went upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_token_exchange_as_token_source() {
    const ORG: &str = "00000000-0000-4000-8000-0000000000bb";
    const RULE: &str = "fdrl_embedding";
    let idp = OidcProvider::start().await;
    let upstream = StandIn::start().await;
    let gw = TestGateway::start(&upstream, |cfg, dir| {
        cfg.identity.issuer = Some(idp.issuer.clone());
        cfg.identity.dev_issuer = Some(true);
        cfg.federation.key_file = dir.join("federation-keys.json");
        cfg.federation.organization_id = Some(ORG.into());
        cfg.federation.rules = vec![
            FederationRule::new(RULE)
                .issuer(&idp.issuer)
                .condition("client_id", ClaimCondition::equals(idp.client_id.clone()))
                .group("exchanged"),
        ];
    })
    .await;
    let source = GatewayTokenExchange::new(&gw.base_url, client_credentials(&idp), RULE)
        .organization_id(ORG);
    let c = client(MachineIdentity::new(source));
    for prompt in ["one", "two"] {
        let res = post_messages(
            &c,
            &gw.base_url,
            messages_body("claude-sonnet-5", prompt, false),
        )
        .await
        .expect("sent");
        assert_eq!(res.status(), 200);
    }
    let recs = gw.audit.recent(10).await.expect("records");
    let exchanges = recs
        .iter()
        .filter(|r| r.request.path == "/v1/oauth/token")
        .count();
    assert_eq!(exchanges, 1, "the gateway token is cached between calls");
    let call = recs
        .iter()
        .find(|r| r.request.path == "/v1/messages")
        .expect("a call");
    let p = call.request.principal.as_ref().expect("principal");
    assert!(p.in_group("exchanged"), "{p:?}");
    assert_eq!(p.subject, idp.client_id);

    // A wrong rule id is a typed token error, and nothing is sent.
    let wrong = GatewayTokenExchange::new(&gw.base_url, client_credentials(&idp), "fdrl_nope")
        .organization_id(ORG);
    let err = post_messages(
        &client(MachineIdentity::new(wrong)),
        &gw.base_url,
        messages_body("claude-sonnet-5", "x", false),
    )
    .await
    .expect_err("no token");
    let msg = err.to_string();
    assert!(
        msg.contains("invalid_grant") && msg.contains("400"),
        "{msg}"
    );
}

const LOCAL_POLICY: &str = r#"
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

/// Verifies the provider's client-credentials access tokens (RFC 9068 `at+jwt`).
fn access_token_verifier(idp: &OidcProvider) -> JwtVerifier {
    JwtVerifier::builder(idp.issuer.clone())
        .audience(AUDIENCE)
        .require_typ("at+jwt")
        .keys(KeySource::Discovery)
        .build()
        .expect("verifier")
}

/// A client with the skill's identity and `gateway`'s layers enforced locally.
fn enforcing_client(
    idp: &OidcProvider,
    gateway: &Gateway,
) -> reqwest_middleware::ClientWithMiddleware {
    reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(MachineIdentity::new(client_credentials(idp)))
        .with(
            Enforce::new(gateway.layer())
                .upstream_credential(StaticCredential::new(Credential::api_key(STAND_IN_API_KEY))),
        )
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_runs_policy_and_audit_inside_the_client() {
    let idp = OidcProvider::start().await;
    let upstream = StandIn::start().await;
    let store: Arc<dyn AuditStore> = Arc::new(SqliteStore::in_memory().await.expect("store"));
    let gateway = Gateway::builder()
        .verifier(access_token_verifier(&idp))
        .audit_store_arc(store.clone())
        .policy(PolicyLayer::new(
            RulesPolicy::from_toml(LOCAL_POLICY, "local").expect("policy"),
        ))
        .build()
        .expect("gateway");
    let c = enforcing_client(&idp, &gateway);
    let api = upstream.base_url();

    // A streamed answer arrives piece by piece and whole.
    let res = post_messages(
        &c,
        &api,
        messages_body("claude-sonnet-5", "stream me", true),
    )
    .await
    .expect("allowed");
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/event-stream")
    );
    let streamed_id = res
        .extensions()
        .get::<skillgate::audit::AuditHandle>()
        .expect("the audit handle rides on the response")
        .id();
    let mut text = String::new();
    let mut sse = String::new();
    let mut chunks = res.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        sse.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
    }
    for line in sse.lines().filter_map(|l| l.strip_prefix("data: ")) {
        let v: Value = serde_json::from_str(line).expect("event json");
        if v["delta"]["type"] == "text_delta" {
            text.push_str(v["delta"]["text"].as_str().unwrap_or(""));
        }
    }
    assert_eq!(text, reply_text_for("stream me"));

    // Streaming is not buffered: the first delta is here while the upstream is still sending.
    let res = post_messages(&c, &api, messages_body(SLOW_MODEL, "slowly", true))
        .await
        .expect("allowed");
    let mut chunks = res.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("text_delta") {
        let chunk = chunks.next().await.expect("more").expect("chunk");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    // Had the adapter buffered, the 60 s slow stream would have completed.
    assert!(
        upstream.completed_streams() <= 1,
        "the slow stream is still going"
    );
    drop(chunks);

    // A policy denial is a typed error, recorded, and never sent.
    let sent_before = upstream.received().len();
    let err = post_messages(&c, &api, messages_body("claude-opus-4", "big", false))
        .await
        .expect_err("denied");
    let refusal = Refusal::from_error(&err)
        .expect("a skillgate refusal")
        .clone();
    assert_eq!(refusal.status, 403);
    assert_eq!(refusal.error_type, Some(ErrorType::Permission));
    assert!(refusal.message.contains("no-opus"), "{}", refusal.message);
    assert_eq!(upstream.received().len(), sent_before);
    let id = refusal.audit_id.expect("audit id");
    let mut denied = None;
    for _ in 0..200 {
        denied = store.get(id).await.expect("store");
        if denied.as_ref().is_some_and(|r| r.response.is_some()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let denied = denied.expect("refusal recorded");
    assert_eq!(denied.request.decision.verdict, Verdict::Deny);
    assert!(denied.request.decision.rules.iter().any(|r| r == "no-opus"));
    assert_eq!(
        denied.request.principal.as_ref().map(|p| p.subject.clone()),
        Some(idp.client_id.clone())
    );

    // The allowed exchanges are recorded with the principal and the answer.
    let mut first = None;
    for _ in 0..200 {
        first = store.get(streamed_id).await.expect("store");
        if first.as_ref().is_some_and(|r| r.response.is_some()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let first = first.expect("streamed call recorded");
    assert!(first.request.body.windows(9).any(|w| w == b"stream me"));
    assert!(first.is_complete(), "the whole stream was recorded");
    assert_eq!(first.request.decision.verdict, Verdict::Allow);
    assert!(first.request.stream);
    // Upstream saw the API key and none of the skill's token.
    for r in upstream.received() {
        assert_eq!(r.header("x-api-key"), Some(STAND_IN_API_KEY));
        assert!(r.header("authorization").is_none());
    }
}

#[tokio::test]
async fn a_transport_error_is_returned_as_such_not_as_a_refusal() {
    let dev = skillgate::identity::dev::DevIssuer::ephemeral();
    let store: Arc<dyn AuditStore> = Arc::new(SqliteStore::in_memory().await.expect("store"));
    let gateway = Gateway::builder()
        .verifier(dev.verifier("skillgate"))
        .audit_store_arc(store.clone())
        .build()
        .expect("gateway");
    let token = dev
        .mint(&skillgate::identity::dev::MintOptions::new("offline-skill"))
        .expect("mint");
    let c = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(MachineIdentity::new(Fixed(token)))
        .with(Enforce::new(gateway.layer()))
        .build();
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    let err = post_messages(
        &c,
        &format!("http://{addr}"),
        messages_body("claude-sonnet-5", "x", false),
    )
    .await
    .expect_err("nobody listens");
    assert!(Refusal::from_error(&err).is_none(), "{err}");
    assert!(
        matches!(err, reqwest_middleware::Error::Reqwest(ref e) if e.is_connect()),
        "{err}"
    );
    // The attempt was recorded before it was sent.
    let recs = store.recent(10).await.expect("records");
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].request.decision.verdict, Verdict::Allow);
}

struct Fixed(String);

#[async_trait]
impl TokenSource for Fixed {
    async fn token(&self) -> Result<SecretString, TokenError> {
        Ok(SecretString::from(self.0.clone()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_are_cached_and_renewed_on_invalidation() {
    use secrecy::ExposeSecret;
    use skillgate::client::ClientAuth;
    let idp = OidcProvider::start().await;
    for auth in [ClientAuth::Basic, ClientAuth::Post] {
        let source = client_credentials(&idp).client_auth(auth);
        let first = source.token().await.expect("token");
        let (_, claims) = support::oidc::decode_unverified(first.expose_secret());
        assert_eq!(claims["client_id"], idp.client_id.as_str(), "{auth:?}");
        // Long-lived (oidc-provider's default is minutes): the same token again.
        let again = source.token().await.expect("token");
        assert_eq!(first.expose_secret(), again.expose_secret(), "{auth:?}");
        // Refused somewhere: the next call fetches a new one.
        source.invalidate();
        let fresh = source.token().await.expect("token");
        assert_ne!(first.expose_secret(), fresh.expose_secret(), "{auth:?}");
    }
    // A wrong secret is a typed error naming the RFC 6749 code, not the secret.
    let wrong = ClientCredentials::new(&idp.token_endpoint, &idp.client_id, "not-the-secret")
        .resource(RESOURCE)
        .scope(SCOPE);
    let e = wrong.token().await.expect_err("refused");
    let msg = e.to_string();
    assert!(
        msg.contains("invalid_client") && msg.contains("401"),
        "{msg}"
    );
    assert!(!msg.contains("not-the-secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_masks_a_streamed_answer_in_flight_and_records_the_finding() {
    use skillgate::redaction::{RedactionLayer, Redactor};

    let idp = OidcProvider::start().await;
    let upstream = StandIn::start().await;
    let store: Arc<dyn AuditStore> = Arc::new(SqliteStore::in_memory().await.expect("store"));
    let gateway = Gateway::builder()
        .verifier(access_token_verifier(&idp))
        .audit_store_arc(store.clone())
        .redaction(RedactionLayer::new(Redactor::new()))
        .build()
        .expect("gateway");
    let c = enforcing_client(&idp, &gateway);

    // The stand-in echoes the prompt in 5-character text_delta pieces, so the
    // card number reaches the client side split across several events.
    let prompt = "charge card 4111 1111 1111 1111 today";
    let res = post_messages(
        &c,
        &upstream.base_url(),
        messages_body("claude-sonnet-5", prompt, true),
    )
    .await
    .expect("allowed");
    assert_eq!(res.status(), 200);
    let id = res
        .extensions()
        .get::<skillgate::audit::AuditHandle>()
        .expect("audit handle")
        .id();
    let mut sse = String::new();
    let mut chunks = res.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        sse.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
    }
    let mut text = String::new();
    for line in sse.lines().filter_map(|l| l.strip_prefix("data: ")) {
        let v: Value = serde_json::from_str(line).expect("event json");
        if v["delta"]["type"] == "text_delta" {
            text.push_str(v["delta"]["text"].as_str().unwrap_or(""));
        }
    }
    // The upstream really sent the number (the stand-in echoes), the client never saw any of it.
    assert!(reply_text_for(prompt).contains("4111 1111 1111 1111"));
    assert_eq!(
        text,
        reply_text_for(prompt).replace("4111 1111 1111 1111", "[REDACTED:CREDIT_CARD]")
    );
    assert!(
        !sse.contains("4111"),
        "a fragment of the card leaked: {sse}"
    );
    assert!(sse.contains("message_stop"), "the stream ends normally");

    // The finding (type, count, path; never the value) is in the audit record.
    let mut findings = Vec::new();
    for _ in 0..200 {
        if let Some(rec) = store.get(id).await.expect("get")
            && let Some(r) = rec.response.filter(|r| r.complete)
        {
            findings = r.findings;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(
        findings
            .iter()
            .any(|f| f.entity_type == "CREDIT_CARD" && f.count == 1),
        "{findings:?}"
    );
    assert!(!format!("{findings:?}").contains("4111"));
}
