//! Tokens from a real OpenID Connect provider (`oidc-provider` on Node, see
//! tests/support/oidc.rs) signed with every algorithm it has a key for
//! (RS256, PS256, ES256, EdDSA), verified by `JwtVerifier` through OIDC
//! discovery; then a key rotation at the provider, picked up by a running
//! gateway through its unknown-`kid` refresh, without a restart.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use skillgate::audit::SqliteStore;
use skillgate::gateway::{Gateway, serve};
use skillgate::identity::{Algorithm, AuthError, JwtVerifier, KeySource, TokenVerifier};
use skillgate::upstream::{Credential, StaticCredential, Upstream};
use support::oidc::{self, ALGORITHMS, AUDIENCE, GROUPS, OidcProvider, SCOPE};
use support::stand_in::{STAND_IN_API_KEY, StandIn};

fn discovery_verifier(idp: &OidcProvider, refresh: Duration) -> JwtVerifier {
    JwtVerifier::builder(idp.issuer.clone())
        .audience(AUDIENCE)
        .require_typ("at+jwt")
        .keys(KeySource::Discovery)
        .refresh_interval(refresh)
        .build()
        .expect("verifier")
}

#[tokio::test]
async fn every_algorithm_from_a_real_provider_verifies_via_discovery() {
    let idp = OidcProvider::start().await;
    let v = discovery_verifier(&idp, Duration::from_secs(30));
    v.preload().await.expect("discovery and JWKS load");
    for alg in ALGORITHMS {
        let token = idp.token_with_alg(alg).await;
        let (header, _) = oidc::decode_unverified(&token);
        assert_eq!(header["alg"], alg, "the provider signed with {alg}");
        assert_eq!(header["kid"], json!(idp.kids[alg]));
        let p = v
            .verify(&token)
            .await
            .unwrap_or_else(|e| panic!("{alg} token refused: {e}"));
        assert_eq!(p.issuer, idp.issuer);
        assert_eq!(p.subject, idp.client_id);
        assert_eq!(p.groups, GROUPS);
        assert!(p.has_scope(SCOPE));

        // A verifier whose allow-list lacks the algorithm refuses the same token.
        let others: Vec<Algorithm> = ALGORITHMS
            .iter()
            .filter(|a| **a != alg)
            .map(|a| a.parse().expect("algorithm name"))
            .collect();
        let narrow = JwtVerifier::builder(idp.issuer.clone())
            .audience(AUDIENCE)
            .keys(KeySource::Discovery)
            .algorithms(others)
            .build()
            .expect("verifier");
        assert_eq!(
            narrow.verify(&token).await.unwrap_err(),
            AuthError::AlgorithmNotAllowed,
            "{alg}"
        );
    }
}

#[tokio::test]
async fn the_default_signing_algorithm_is_chosen_at_start() {
    let idp = OidcProvider::start_with_env(&[("OIDC_ACCESS_TOKEN_ALG", "EdDSA")]).await;
    let token = idp.client_credentials_token().await;
    let (header, claims) = oidc::decode_unverified(&token);
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(claims["aud"], AUDIENCE);
    let v = discovery_verifier(&idp, Duration::from_secs(30));
    assert_eq!(
        v.verify(&token).await.expect("verifies").subject,
        idp.client_id
    );
}

/// The gateway (audit → identity → upstream stand-in) on loopback.
struct Stack {
    base: String,
    upstream: StandIn,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn stack(verifier: JwtVerifier) -> Stack {
    let upstream = StandIn::start().await;
    let gateway = Gateway::builder()
        .verifier(verifier)
        .audit_store(SqliteStore::in_memory().await.expect("sqlite"))
        .build()
        .expect("gateway");
    let inner = Upstream::builder(upstream.base_url())
        .credential(StaticCredential::new(Credential::api_key(STAND_IN_API_KEY)))
        .build()
        .expect("upstream");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(
        listener,
        gateway.service(inner),
        async move {
            let _ = rx.await;
        },
        Duration::from_secs(5),
    ));
    Stack {
        base,
        upstream,
        _stop: tx,
    }
}

async fn status_of(s: &Stack, token: &str) -> (u16, Value) {
    let res = reqwest::Client::new()
        .post(format!("{}/v1/messages", s.base))
        .bearer_auth(token)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "claude-sonnet-4-5", "max_tokens": 16,
                      "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("send");
    let status = res.status().as_u16();
    (status, res.json().await.expect("json body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_is_picked_up_by_a_running_gateway() {
    let idp = OidcProvider::start().await;
    let refresh = Duration::from_millis(200);
    let gw = stack(discovery_verifier(&idp, refresh)).await;

    let mut before = Vec::new();
    for alg in ALGORITHMS {
        let token = idp.token_with_alg(alg).await;
        let (status, body) = status_of(&gw, &token).await;
        assert_eq!(status, 200, "{alg} before rotation: {body}");
        before.push((alg, token));
    }

    let new_kids = idp.rotate_keys().await;
    for alg in ALGORITHMS {
        assert_ne!(new_kids[alg], idp.kids[alg], "{alg} key was replaced");
    }
    // Past the refresh interval since the gateway's last JWKS fetch, the
    // first token with an unknown kid makes the gateway fetch the new set.
    tokio::time::sleep(refresh + Duration::from_millis(50)).await;
    for alg in ALGORITHMS {
        let token = idp.token_with_alg(alg).await;
        let (header, _) = oidc::decode_unverified(&token);
        assert_eq!(header["kid"], json!(new_kids[alg]));
        let (status, body) = status_of(&gw, &token).await;
        assert_eq!(status, 200, "{alg} after rotation: {body}");
    }
    // The old keys left the JWKS: tokens signed with them are refused now.
    for (alg, token) in &before {
        let (status, body) = status_of(&gw, token).await;
        assert_eq!(status, 401, "{alg} token from the retired key: {body}");
        assert_eq!(body["error"]["type"], "authentication_error");
    }
    assert_eq!(gw.upstream.received().len(), 2 * ALGORITHMS.len());
}
