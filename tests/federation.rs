//! Workload-identity federation end to end: the official Python and
//! TypeScript SDKs, configured only through environment variables, exchange
//! an identity token from a real OIDC provider (npm `oidc-provider`) at the
//! gateway's `/v1/oauth/token`, then call the Anthropic stand-in through the
//! gateway with the minted token. Also: RFC 6749 refusals, the audit record
//! (no assertion, no issued token in clear), revocation by token id and by
//! principal, and (feature `postgres`) revocation shared by two gateways.

mod support;

use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};
use skillgate::audit::{AuditRecord, Verdict};
use skillgate::gateway::GatewayConfig;
use skillgate::identity::dev::{DEV_AUDIENCE, DEV_ISSUER, DevIssuer};
use skillgate::identity::federation::{
    ClaimCondition, Federation, FederationRule, GRANT_TYPE_JWT_BEARER, fingerprint,
};
use support::gateway::TestGateway;
use support::oidc::{OTHER_RESOURCE, OidcProvider, decode_unverified};
use support::python::sdk_call;
use support::sdk_env::{FederationEnv, Sdk, rotate_step, run_sdk};
use support::stand_in::{STAND_IN_API_KEY, StandIn, reply_text_for};

const ORG: &str = "00000000-0000-4000-8000-0000000000aa";
/// Tokens under this rule live 20 s: less than the SDKs' 30 s mandatory
/// refresh threshold, so every API call makes a fresh exchange.
const RULE: &str = "fdrl_oidc_ci";
const RULE_DEV: &str = "fdrl_dev";
const RULE_STRICT: &str = "fdrl_strict";
const GROUP: &str = "federated-ci";

/// A test gateway with the token endpoint on.
struct Gw {
    inner: TestGateway,
    dev: Arc<DevIssuer>,
    federation: Federation,
}

impl std::ops::Deref for Gw {
    type Target = TestGateway;
    fn deref(&self) -> &TestGateway {
        &self.inner
    }
}

fn rules(idp: &OidcProvider) -> Vec<FederationRule> {
    vec![
        FederationRule::new(RULE)
            .issuer(&idp.issuer)
            .condition("client_id", ClaimCondition::equals(idp.client_id.clone()))
            .condition("scope", ClaimCondition::glob("*messages:write*"))
            .group(GROUP)
            .max_ttl_secs(20),
        FederationRule::new(RULE_DEV)
            .issuer(DEV_ISSUER)
            .group("dev"),
        FederationRule::new(RULE_STRICT)
            .issuer(&idp.issuer)
            .condition("client_id", ClaimCondition::equals("someone-else")),
    ]
}

impl Gw {
    async fn start(
        upstream: &StandIn,
        idp: &OidcProvider,
        tweak: impl FnOnce(&mut GatewayConfig, &Path),
    ) -> Gw {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = support::gateway::config(upstream, dir.path());
        cfg.identity.issuer = Some(idp.issuer.clone());
        cfg.identity.dev_issuer = Some(true);
        cfg.federation.key_file = dir.path().join("federation-keys.json");
        cfg.federation.organization_id = Some(ORG.into());
        cfg.federation.rules = rules(idp);
        tweak(&mut cfg, dir.path());
        let inner = TestGateway::serve(cfg, None, dir).await;
        Gw {
            dev: inner.dev.clone().expect("dev issuer on"),
            federation: inner.federation.clone().expect("federation on"),
            inner,
        }
    }

    /// POSTs a token request as the SDKs do (JSON); returns status, headers, body text.
    async fn exchange_raw(
        &self,
        body: &Value,
        authorization: Option<&str>,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let mut req = reqwest::Client::new()
            .post(format!("{}/v1/oauth/token", self.base_url))
            .header(
                "anthropic-beta",
                "oauth-2025-04-20,oidc-federation-2026-04-01",
            )
            .json(body);
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        let res = req.send().await.expect("POST /v1/oauth/token");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        (status, headers, res.text().await.expect("body"))
    }

    /// A successful exchange: the access token.
    async fn exchange(&self, assertion: &str, rule: &str) -> String {
        let (status, _, text) = self.exchange_raw(&request(assertion, rule), None).await;
        assert_eq!(status, 200, "{text}");
        let v: Value = serde_json::from_str(&text).expect("JSON");
        v["access_token"].as_str().expect("access_token").to_owned()
    }
}

fn request(assertion: &str, rule: &str) -> Value {
    json!({
        "grant_type": GRANT_TYPE_JWT_BEARER,
        "assertion": assertion,
        "federation_rule_id": rule,
        "organization_id": ORG,
    })
}

fn write_token(path: &Path, token: &str) {
    std::fs::write(path, token).expect("write identity token");
}

fn record_text(r: &AuditRecord) -> String {
    serde_json::to_string(r).expect("record as JSON")
}

async fn sdk_round_trip_with_rotation(sdk: Sdk) {
    let upstream = StandIn::start().await;
    let idp = OidcProvider::start().await;
    let gw = Gw::start(&upstream, &idp, |_, _| {}).await;
    let first = idp.client_credentials_token().await;
    let second = idp.client_credentials_token().await;
    assert_ne!(first, second);
    let token_file = gw.dir.path().join("identity-token");
    let next_file = gw.dir.path().join("next-identity-token");
    write_token(&token_file, &first);
    write_token(&next_file, &second);
    let env = FederationEnv {
        base_url: gw.base_url.clone(),
        token_file,
        rule_id: RULE.into(),
        organization_id: ORG.into(),
    };
    let prompt = format!("federated hello from {sdk:?}");
    let steps = [
        "create".to_string(),
        "stream".to_string(),
        rotate_step(&next_file),
        "create".to_string(),
    ];
    let results = run_sdk(sdk, &env, &steps, &[("SG_PROMPT", &prompt)]).await;
    assert_eq!(results.len(), 3, "{results:?}");
    for r in &results {
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["text"], reply_text_for(&prompt), "{r}");
    }

    // Upstream saw three Messages calls with the gateway's key only.
    let received = upstream.received();
    assert_eq!(received.len(), 3);
    for r in &received {
        assert_eq!(r.header("x-api-key"), Some(STAND_IN_API_KEY));
        assert!(r.header("authorization").is_none());
        let all = format!("{:?}{}", r.headers, String::from_utf8_lossy(&r.body));
        assert!(!all.contains(&first) && !all.contains(&second));
    }

    // Three exchanges (one per call: the 20 s tokens are always due for
    // refresh) and three Messages calls, all recorded.
    let recs = gw.records(6).await;
    let mut exchanges: Vec<&AuditRecord> = recs
        .iter()
        .filter(|r| r.request.path == "/v1/oauth/token")
        .collect();
    exchanges.reverse(); // oldest first
    assert_eq!(exchanges.len(), 3, "{recs:#?}");
    for (i, ex) in exchanges.iter().enumerate() {
        let text = record_text(ex);
        assert!(
            !text.contains(&first) && !text.contains(&second),
            "assertion in the audit record"
        );
        assert_eq!(ex.request.decision.verdict, Verdict::Allow);
        assert_eq!(ex.request.decision.rules, [RULE]);
        let resp = ex.response.as_ref().expect("response recorded");
        assert_eq!(resp.status, 200);
        let body: Value = serde_json::from_slice(&resp.body).expect("redacted response");
        assert!(
            body["access_token"]
                .as_str()
                .is_some_and(|t| t.starts_with("[redacted jti=")),
            "{body}"
        );
        assert_eq!(body["expires_in"], 20);
        let req: Value = serde_json::from_slice(&ex.request.body).expect("redacted request");
        assert_eq!(req["federation_rule_id"], RULE);
        assert_eq!(req["organization_id"], ORG);
        // The rotated file is read at the next exchange.
        let want = if i < 2 { &first } else { &second };
        assert_eq!(
            req["assertion"],
            format!("[redacted {}]", fingerprint(want)),
            "exchange {i}"
        );
        let p = ex.request.principal.as_ref().expect("asserted principal");
        assert_eq!(p.issuer, idp.issuer);
    }
    for r in recs
        .iter()
        .filter(|r| r.request.path.starts_with("/v1/messages"))
    {
        let p = r.request.principal.as_ref().expect("principal");
        assert_eq!(p.issuer, idp.issuer, "original issuer");
        assert_eq!(p.subject, idp.client_id);
        assert_eq!(p.groups, [GROUP], "groups granted by the rule");
        assert_eq!(p.claims["iss"], gw.federation.issuer().issuer());
        assert_eq!(p.claims["federation_rule_id"], RULE);
        assert_eq!(p.claims["organization_id"], ORG);
        assert_eq!(r.request.decision.verdict, Verdict::Allow);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_env_only_federation_create_stream_and_rotation() {
    sdk_round_trip_with_rotation(Sdk::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_env_only_federation_create_stream_and_rotation() {
    sdk_round_trip_with_rotation(Sdk::TypeScript).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_rfc6749_errors_that_echo_nothing() {
    let upstream = StandIn::start().await;
    let idp = OidcProvider::start().await;
    let gw = Gw::start(&upstream, &idp, |_, _| {}).await;
    let oidc = idp.client_credentials_token().await;
    let wrong_audience = idp.token_for_resource(OTHER_RESOURCE).await;
    let dev = gw
        .dev
        .mint(&skillgate::identity::dev::MintOptions::new("skill-dev"))
        .expect("mint");
    let now = jiff::Timestamp::now().as_second();
    let expired = gw
        .dev
        .sign(
            json!({"iss": DEV_ISSUER, "sub": "skill-dev", "aud": DEV_AUDIENCE,
                   "iat": now - 7200, "exp": now - 3600})
            .as_object()
            .expect("object"),
        )
        .expect("sign");
    let gateway_token = gw.exchange(&dev, RULE_DEV).await;

    let with = |assertion: &str, f: &dyn Fn(&mut Value)| {
        let mut v = request(assertion, RULE);
        f(&mut v);
        v
    };
    /// (name, body, Authorization header, status, error, the secret that must not come back)
    type Case<'a> = (&'a str, Value, Option<&'a str>, u16, &'a str, String);
    let cases: Vec<Case> = vec![
        (
            "unknown rule id",
            with(&oidc, &|v| v["federation_rule_id"] = json!("fdrl_nope")),
            None,
            400,
            "invalid_grant",
            oidc.clone(),
        ),
        (
            "issuer not allowed by the rule",
            request(&dev, RULE),
            None,
            400,
            "invalid_grant",
            dev.clone(),
        ),
        (
            "other issuer's rule",
            request(&oidc, RULE_DEV),
            None,
            400,
            "invalid_grant",
            oidc.clone(),
        ),
        (
            "conditions not met",
            request(&oidc, RULE_STRICT),
            None,
            400,
            "invalid_grant",
            oidc.clone(),
        ),
        (
            "expired assertion",
            request(&expired, RULE_DEV),
            None,
            400,
            "invalid_grant",
            expired.clone(),
        ),
        (
            "assertion for another audience",
            request(&wrong_audience, RULE),
            None,
            400,
            "invalid_grant",
            wrong_audience.clone(),
        ),
        (
            "garbage assertion",
            request("garbage.garbage.garbage", RULE),
            None,
            400,
            "invalid_grant",
            "garbage.garbage.garbage".into(),
        ),
        (
            "a gateway token is not an assertion",
            request(&gateway_token, RULE_DEV),
            None,
            400,
            "invalid_grant",
            gateway_token.clone(),
        ),
        (
            "wrong organization",
            with(&oidc, &|v| v["organization_id"] = json!("org-other")),
            None,
            400,
            "invalid_grant",
            oidc.clone(),
        ),
        (
            "wrong grant type",
            with(&oidc, &|v| v["grant_type"] = json!("client_credentials")),
            None,
            400,
            "unsupported_grant_type",
            oidc.clone(),
        ),
        (
            "missing assertion",
            with(&oidc, &|v| {
                v.as_object_mut().expect("object").remove("assertion");
            }),
            None,
            400,
            "invalid_request",
            oidc.clone(),
        ),
        (
            "assertion not a string",
            with(&oidc, &|v| v["assertion"] = json!({"jwt": "x"})),
            None,
            400,
            "invalid_request",
            oidc.clone(),
        ),
        (
            "client authentication attempted",
            request(&oidc, RULE),
            Some("Basic c2tpbGxnYXRlOnNlY3JldA=="),
            401,
            "invalid_client",
            oidc.clone(),
        ),
    ];
    for (name, body, auth, status, error, secret) in &cases {
        let (got, headers, text) = gw.exchange_raw(body, *auth).await;
        assert_eq!(got, *status, "{name}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(v["error"], *error, "{name}");
        let keys: Vec<&String> = v.as_object().expect("object").keys().collect();
        assert_eq!(keys, ["error", "error_description"], "{name}");
        assert_eq!(headers["x-should-retry"], "false", "{name}");
        assert_eq!(headers["cache-control"], "no-store", "{name}");
        assert!(!text.contains(secret.as_str()), "{name}: echoed");
        assert!(!text.contains("sk-ant"), "{name}");
    }
    // Nothing reached the upstream, and no record holds an assertion.
    assert!(upstream.received().is_empty());
    let recs = gw.records(cases.len() + 1).await;
    for r in &recs {
        let text = record_text(r);
        for secret in [&oidc, &dev, &expired, &wrong_audience, &gateway_token] {
            assert!(!text.contains(secret.as_str()), "credential in {text}");
        }
    }
    let denied = recs
        .iter()
        .filter(|r| r.request.decision.verdict == Verdict::Deny)
        .count();
    assert_eq!(denied, cases.len());
    let reasons: Vec<String> = recs
        .iter()
        .filter_map(|r| r.request.decision.reason.clone())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("claim condition not met: client_id")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("token expired")),
        "{reasons:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdks_surface_exchange_errors() {
    let upstream = StandIn::start().await;
    let idp = OidcProvider::start().await;
    let gw = Gw::start(&upstream, &idp, |_, _| {}).await;
    let token = idp.client_credentials_token().await;
    let token_file = gw.dir.path().join("identity-token");
    write_token(&token_file, &token);
    for sdk in [Sdk::Python, Sdk::TypeScript] {
        for rule in [RULE_STRICT, "fdrl_does_not_exist"] {
            let env = FederationEnv {
                base_url: gw.base_url.clone(),
                token_file: token_file.clone(),
                rule_id: rule.into(),
                organization_id: ORG.into(),
            };
            let results = run_sdk(sdk, &env, &["create".into()], &[]).await;
            let r = &results[0];
            assert_eq!(r["ok"], false, "{sdk:?} {rule}: {r}");
            assert_eq!(r["error_class"], "WorkloadIdentityError", "{sdk:?}: {r}");
            assert_eq!(r["status"], 400, "{sdk:?}: {r}");
            let message = r["message"].as_str().unwrap_or_default();
            assert!(message.contains("invalid_grant"), "{sdk:?}: {r}");
            assert!(!message.contains(&token), "{sdk:?}: token echoed");
        }
    }
    assert!(upstream.received().is_empty(), "nothing forwarded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_by_token_id_and_by_principal() {
    let upstream = StandIn::start().await;
    let idp = OidcProvider::start().await;
    let gw = Gw::start(&upstream, &idp, |_, _| {}).await;
    let assertion = idp.client_credentials_token().await;
    let a = gw.exchange(&assertion, RULE).await;
    let b = gw.exchange(&assertion, RULE).await;
    let call = |t: String| {
        let base = gw.base_url.clone();
        async move { sdk_call("create", &base, Some(&t), &[]).await }
    };
    assert_eq!(call(a.clone()).await["ok"], true);
    assert_eq!(call(b.clone()).await["ok"], true);

    let (_, claims) = decode_unverified(&a);
    let jti = claims["jti"].as_str().expect("jti");
    gw.federation.revoke_token_id(jti).await.expect("revoke");
    let out = call(a.clone()).await;
    assert_eq!(out["ok"], false, "{out}");
    assert_eq!(out["status"], 401);
    assert_eq!(out["error_class"], "AuthenticationError");
    assert_eq!(call(b.clone()).await["ok"], true, "other token unaffected");

    gw.federation
        .revoke_principal(&idp.issuer, &idp.client_id)
        .await
        .expect("revoke principal");
    let out = call(b).await;
    assert_eq!(out["ok"], false, "{out}");
    assert_eq!(out["status"], 401);
    // A different principal (the dev issuer's) is untouched.
    let dev = gw
        .dev
        .mint(&skillgate::identity::dev::MintOptions::new("skill-dev"))
        .expect("mint");
    let c = gw.exchange(&dev, RULE_DEV).await;
    assert_eq!(call(c).await["ok"], true);

    assert_eq!(upstream.received().len(), 4);
    let recs = gw.records(9).await;
    let revoked = recs
        .iter()
        .filter(|r| r.request.decision.reason.as_deref() == Some("authentication: token revoked"))
        .count();
    assert_eq!(revoked, 2, "both refusals recorded as revocations");
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use skillgate::identity::federation::{
        GatewayTokenIssuer, PostgresRevocationStore, RevocationBackend, RevocationStore, TokenGrant,
    };
    use skillgate::identity::{AuthError, TokenVerifier};

    fn url() -> String {
        std::env::var("SKILLGATE_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
    }

    /// A table prefix no other test run uses.
    fn unique_prefix() -> String {
        format!("sg_fed_{}_", uuid::Uuid::now_v7().simple())
    }

    async fn drop_tables(prefix: &str) {
        let store = PostgresRevocationStore::connect(&url(), prefix)
            .await
            .expect("connect");
        let (t, p) = store.tables();
        for table in [t, p] {
            sqlx::query(&format!("DROP TABLE IF EXISTS {table}"))
                .execute(store.pool())
                .await
                .expect("drop");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_gateways_share_keys_and_revocations() {
        let prefix = unique_prefix();
        let upstream = StandIn::start().await;
        let idp = OidcProvider::start().await;
        let shared = tempfile::tempdir().expect("tempdir");
        let keys = shared.path().join("federation-keys.json");
        let configure = |cfg: &mut GatewayConfig, _: &Path| {
            cfg.federation.key_file = keys.clone();
            cfg.federation.revocation.store = RevocationBackend::Postgres;
            cfg.federation.revocation.url = Some(url());
            cfg.federation.revocation.table_prefix = prefix.clone();
        };
        let a = Gw::start(&upstream, &idp, configure).await;
        let b = Gw::start(&upstream, &idp, configure).await;
        let assertion = idp.client_credentials_token().await;
        let call =
            |base: String, t: String| async move { sdk_call("create", &base, Some(&t), &[]).await };

        // Minted by A, accepted by B (shared key ring), revoked through B,
        // refused by A.
        let t1 = a.exchange(&assertion, RULE).await;
        assert_eq!(call(b.base_url.clone(), t1.clone()).await["ok"], true);
        let (_, claims) = decode_unverified(&t1);
        b.federation
            .revoke_token_id(claims["jti"].as_str().expect("jti"))
            .await
            .expect("revoke");
        let out = call(a.base_url.clone(), t1).await;
        assert_eq!(out["status"], 401, "{out}");

        // Minted by B, principal revoked through A, refused by B.
        let t2 = b.exchange(&assertion, RULE).await;
        assert_eq!(call(a.base_url.clone(), t2.clone()).await["ok"], true);
        a.federation
            .revoke_principal(&idp.issuer, &idp.client_id)
            .await
            .expect("revoke principal");
        let out = call(b.base_url.clone(), t2).await;
        assert_eq!(out["status"], 401, "{out}");
        drop_tables(&prefix).await;
    }

    #[tokio::test]
    async fn stores_share_state_and_verification_fails_closed() {
        let prefix = unique_prefix();
        let one = PostgresRevocationStore::connect(&url(), &prefix)
            .await
            .expect("connect");
        let two = PostgresRevocationStore::connect(&url(), &prefix)
            .await
            .expect("connect again (tables exist: idempotent)");
        let issuer = Arc::new(
            GatewayTokenIssuer::ephemeral("urn:skillgate:gateway", "urn:skillgate:gateway")
                .expect("issuer"),
        );
        let grant = TokenGrant::new("https://idp.test", "skill-a", "r");
        let t1 = issuer.mint(&grant).expect("mint");
        let t2 = issuer.mint(&grant).expect("mint");
        let v_two = issuer.verifier(Arc::new(two.clone()));
        use secrecy::ExposeSecret;
        assert!(v_two.verify(t1.access_token.expose_secret()).await.is_ok());
        one.revoke_token(&t1.token_id, t1.expires_at)
            .await
            .expect("revoke");
        assert_eq!(
            v_two
                .verify(t1.access_token.expose_secret())
                .await
                .unwrap_err(),
            AuthError::Revoked
        );
        assert!(v_two.verify(t2.access_token.expose_secret()).await.is_ok());
        one.revoke_principal("https://idp.test", "skill-a", t2.issued_at + 1)
            .await
            .expect("revoke principal");
        assert_eq!(
            v_two
                .verify(t2.access_token.expose_secret())
                .await
                .unwrap_err(),
            AuthError::Revoked
        );
        // Pruning with a cut-off after everything removes both entries.
        assert_eq!(one.prune(t2.expires_at + 10).await.expect("prune"), 2);
        assert!(v_two.verify(t2.access_token.expose_secret()).await.is_ok());
        drop_tables(&prefix).await;
        // The store can no longer answer: the token is refused, not waved through.
        two.pool().close().await;
        assert_eq!(
            v_two
                .verify(t2.access_token.expose_secret())
                .await
                .unwrap_err(),
            AuthError::RevocationUnavailable
        );
    }
}
