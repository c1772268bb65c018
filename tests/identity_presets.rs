//! Many issuers and IdP presets: tokens with each provider's real claim
//! layout, signed with test keys (RS256 / ES256, `tests/fixtures/`), map to
//! the documented principal and groups; presets are overridden field by
//! field; the same subject from two issuers is two principals; the
//! `[[identity.issuers]]` configuration parses, and refuses mistakes
//! clearly; and a gateway with several issuers serves them over HTTP.

mod support;

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use skillgate::audit::AuditStore;
use skillgate::gateway::{GatewayConfig, serve};
use skillgate::identity::dev::DevIssuer;
use skillgate::identity::{
    AuthError, IssuerConfig, IssuerSet, JwtVerifier, KeySource, Principal, TokenVerifier,
};
use support::stand_in::{STAND_IN_API_KEY, StandIn};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

/// A test IdP key: signs tokens and publishes the JWKS.
struct Signer {
    alg: Algorithm,
    kid: String,
    key: EncodingKey,
    jwks: String,
}

impl Signer {
    fn new(alg: Algorithm, kid: &str) -> Signer {
        let dir = support::repo_dir().join("tests/fixtures");
        let key = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(
                &std::fs::read(dir.join("test-rsa-2048.pem")).expect("rsa fixture"),
            ),
            Algorithm::ES256 => EncodingKey::from_ec_pem(
                &std::fs::read(dir.join("test-p256.pem")).expect("p256 fixture"),
            ),
            other => panic!("no fixture for {other:?}"),
        }
        .expect("fixture key");
        let mut jwk = Jwk::from_encoding_key(&key, alg).expect("jwk");
        jwk.common.key_id = Some(kid.into());
        let jwks = serde_json::to_string(&JwkSet { keys: vec![jwk] }).expect("jwks");
        Signer {
            alg,
            kid: kid.into(),
            key,
            jwks,
        }
    }

    fn rsa() -> Signer {
        Signer::new(Algorithm::RS256, "rsa-test-1")
    }

    fn p256() -> Signer {
        Signer::new(Algorithm::ES256, "p256-test-1")
    }

    fn sign(&self, typ: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.typ = typ.map(str::to_owned);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).expect("sign")
    }

    /// A verifier for one `[[identity.issuers]]` table, with this key.
    fn verifier(&self, toml_text: &str) -> JwtVerifier {
        let cfg: IssuerConfig = toml::from_str(toml_text).expect("issuer config");
        cfg.builder()
            .expect("builder")
            .keys(KeySource::Static(self.jwks.clone()))
            .build()
            .expect("verifier")
    }
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// Adds `iat`, `nbf` and `exp` (10 minutes) to `claims`.
fn timed(mut claims: Value) -> Value {
    let t = now();
    let o = claims.as_object_mut().expect("object");
    o.insert("iat".into(), json!(t));
    o.insert("nbf".into(), json!(t));
    o.insert("exp".into(), json!(t + 600));
    claims
}

async fn ok(v: &JwtVerifier, token: &str) -> Principal {
    match v.verify(token).await {
        Ok(p) => p,
        Err(e) => panic!("token refused: {e}"),
    }
}

// ---------------------------------------------------------------------------
// Presets

#[tokio::test]
async fn entra_v1_app_token_maps_object_id_roles_appid_and_tenant() {
    let idp = Signer::rsa();
    let issuer = format!("https://sts.windows.net/{TENANT}/");
    let v = idp.verifier(&format!(
        "preset = \"entra-v1\"\nissuer = \"{issuer}\"\naudience = \"api://skillgate\""
    ));
    // An app-only (client credentials) v1.0 access token.
    let claims = timed(json!({
        "aud": "api://skillgate",
        "iss": issuer,
        "aio": "E2ZgYJg8bWnl/8PP5ymmd6+NLpl9AQ==",
        "appid": "6e74172b-be56-4843-9ff4-e66a39bb12e3",
        "appidacr": "1",
        "idp": issuer,
        "oid": "b1a6c2e0-4c5d-4b8e-9f0a-1c2d3e4f5a6b",
        "rh": "0.AAAAv4j5cvGGr0GRqy180BHbRysXdG5Dvhk.",
        "roles": ["Skills.Invoke", "Skills.Billing"],
        "sub": "b1a6c2e0-4c5d-4b8e-9f0a-1c2d3e4f5a6b",
        "tid": TENANT,
        "uti": "fqiBqXLPj0eQa82S-IYFAA",
        "ver": "1.0"
    }));
    let p = ok(&v, &idp.sign(Some("JWT"), &claims)).await;
    assert_eq!(p.issuer, issuer);
    assert_eq!(p.subject, "b1a6c2e0-4c5d-4b8e-9f0a-1c2d3e4f5a6b");
    assert_eq!(
        p.client_id.as_deref(),
        Some("6e74172b-be56-4843-9ff4-e66a39bb12e3")
    );
    assert_eq!(p.groups, ["Skills.Invoke", "Skills.Billing"]);
    assert_eq!(p.attribute("tenant_id"), Some(TENANT));
    assert_eq!(
        p.attribute("object_id"),
        Some("b1a6c2e0-4c5d-4b8e-9f0a-1c2d3e4f5a6b")
    );
    assert_eq!(
        p.attribute("app_id"),
        Some("6e74172b-be56-4843-9ff4-e66a39bb12e3")
    );
    // A v2.0 token (other issuer) is not accepted by the v1 entry.
    let v2 = timed(json!({"aud": "api://skillgate", "sub": "x", "oid": "x",
        "iss": format!("https://login.microsoftonline.com/{TENANT}/v2.0")}));
    assert_eq!(
        v.verify(&idp.sign(Some("JWT"), &v2)).await.unwrap_err(),
        AuthError::WrongIssuer
    );
}

#[tokio::test]
async fn entra_v2_delegated_token_uses_azp_and_scp() {
    let idp = Signer::rsa();
    let issuer = format!("https://login.microsoftonline.com/{TENANT}/v2.0");
    let aud = "c3a4e5f6-1111-4222-8333-944455556666";
    let v = idp.verifier(&format!(
        "preset = \"entra-v2\"\nissuer = \"{issuer}\"\naudience = \"{aud}\""
    ));
    let claims = timed(json!({
        "aud": aud,
        "iss": issuer,
        "azp": "0e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b",
        "azpacr": "2",
        "name": "Billing Agent",
        "oid": "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a",
        "preferred_username": "billing-agent@acme.example",
        "rh": "1.AXkAv4j5cvGGr0GRqy180BHbR.",
        "roles": ["Skills.Invoke"],
        "scp": "Skills.Read Skills.Write",
        "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
        "tid": TENANT,
        "uti": "HTkO2OTJiUCSSwGGa1O7AA",
        "ver": "2.0"
    }));
    let p = ok(&v, &idp.sign(Some("JWT"), &claims)).await;
    // `oid`, not the pairwise `sub`, is the subject.
    assert_eq!(p.subject, "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a");
    assert_eq!(
        p.client_id.as_deref(),
        Some("0e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b")
    );
    assert_eq!(p.scopes, ["Skills.Read", "Skills.Write"]);
    assert_eq!(p.groups, ["Skills.Invoke"]);
    assert_eq!(p.attribute("tenant_id"), Some(TENANT));
    // HS256 and other algorithms outside the preset's RS256 are refused.
    let es = Signer::p256();
    let v_es = JwtVerifier::builder(issuer.clone())
        .preset(skillgate::identity::Preset::EntraV2)
        .audience(aud)
        .keys(KeySource::Static(es.jwks.clone()))
        .build()
        .unwrap();
    assert_eq!(
        v_es.verify(&es.sign(Some("JWT"), &claims))
            .await
            .unwrap_err(),
        AuthError::AlgorithmNotAllowed
    );
}

#[tokio::test]
async fn okta_access_token_maps_cid_scp_groups_and_uid() {
    let idp = Signer::rsa();
    let issuer = "https://acme.okta.com/oauth2/default";
    let v = idp.verifier(&format!(
        "preset = \"okta\"\nissuer = \"{issuer}\"\naudience = \"api://skillgate\""
    ));
    let claims = timed(json!({
        "ver": 1,
        "jti": "AT.0mP4JKAZX1iACIT4vbEDF7LpvDVjxypPMf0D7uX39RE",
        "iss": issuer,
        "aud": "api://skillgate",
        "cid": "0oa1abcdEFGHijklm357",
        "uid": "00u1efghIJKLmnop468",
        "scp": ["skills.invoke", "openid"],
        "auth_time": 1_750_000_000,
        "sub": "billing-agent@acme.example",
        "groups": ["Everyone", "billing"]
    }));
    let p = ok(&v, &idp.sign(None, &claims)).await;
    assert_eq!(p.subject, "billing-agent@acme.example");
    assert_eq!(p.client_id.as_deref(), Some("0oa1abcdEFGHijklm357"));
    assert_eq!(p.scopes, ["skills.invoke", "openid"]);
    assert_eq!(p.groups, ["Everyone", "billing"]);
    assert_eq!(p.attribute("user_id"), Some("00u1efghIJKLmnop468"));
    assert_eq!(
        p.token_id.as_deref(),
        Some("AT.0mP4JKAZX1iACIT4vbEDF7LpvDVjxypPMf0D7uX39RE")
    );
}

#[tokio::test]
async fn google_service_account_id_token_either_issuer_spelling_is_one_principal() {
    let idp = Signer::rsa();
    let aud = "https://skillgate.acme.example";
    let v = idp.verifier(&format!(
        "preset = \"google\"\naudience = \"{aud}\"\n\
         require = {{ email = \"*@acme-prod.iam.gserviceaccount.com\", email_verified = true }}\n\
         group_rules = [{{ when = {{ email = \"billing-*@acme-prod.iam.gserviceaccount.com\" }}, groups = [\"billing\"] }}]"
    ));
    assert_eq!(
        v.accepted_issuers().collect::<Vec<_>>(),
        ["https://accounts.google.com", "accounts.google.com"]
    );
    let token = |iss: &str, email: &str| {
        idp.sign(
            Some("JWT"),
            &timed(json!({
                "aud": aud,
                "azp": "112233445566778899001",
                "email": email,
                "email_verified": true,
                "iss": iss,
                "sub": "112233445566778899001"
            })),
        )
    };
    let email = "billing-bot@acme-prod.iam.gserviceaccount.com";
    let a = ok(&v, &token("https://accounts.google.com", email)).await;
    let b = ok(&v, &token("accounts.google.com", email)).await;
    assert_eq!(
        a.key(),
        ("https://accounts.google.com", "112233445566778899001")
    );
    assert_eq!(a.key(), b.key(), "both spellings are the same issuer");
    assert_eq!(a.client_id.as_deref(), Some("112233445566778899001"));
    assert_eq!(a.attribute("email"), Some(email));
    assert_eq!(a.groups, ["billing"]);
    // A service account of another project (or any Google account) is refused.
    let other = token(
        "https://accounts.google.com",
        "bot@attacker.iam.gserviceaccount.com",
    );
    assert_eq!(
        v.verify(&other).await.unwrap_err(),
        AuthError::ClaimsNotAccepted
    );
    // So is the right e-mail for another audience.
    let wrong_aud = idp.sign(
        Some("JWT"),
        &timed(json!({"aud": "https://elsewhere.example", "email": email,
            "email_verified": true, "iss": "https://accounts.google.com", "sub": "1"})),
    );
    assert_eq!(
        v.verify(&wrong_aud).await.unwrap_err(),
        AuthError::WrongAudience
    );
}

fn k8s_claims(issuer: &str, ns: &str, sa: &str) -> Value {
    timed(json!({
        "aud": ["skillgate"],
        "iss": issuer,
        "jti": "e51f1fbc-4733-4b85-a59f-ba80c0523874",
        "kubernetes.io": {
            "namespace": ns,
            "node": {"name": "worker-1", "uid": "517eb86e-b863-451b-bf70-86cb61439a3a"},
            "pod": {"name": format!("{sa}-7d4b9c-x2x9z"), "uid": "0d8b260e-ef0e-45fb-be8e-ff44f97722e8"},
            "serviceaccount": {"name": sa, "uid": "e6a8680e-d103-4cce-80ea-03acbbeacf7d"},
            "warnafter": now() + 300
        },
        "sub": format!("system:serviceaccount:{ns}:{sa}")
    }))
}

#[tokio::test]
async fn kubernetes_projected_token_maps_namespace_and_service_account() {
    let idp = Signer::rsa();
    let issuer = "https://kubernetes.default.svc.cluster.local";
    let v = idp.verifier(&format!(
        r#"preset = "kubernetes"
issuer = "{issuer}"
audience = "skillgate"
group_rules = [
    {{ when = {{ kubernetes.io.namespace = "billing" }}, groups = ["billing"] }},
    {{ when = {{ "kubernetes.io.namespace" = "billing", "kubernetes.io.serviceaccount.name" = "invoice-*" }}, groups = ["invoicing"] }},
]"#
    ));
    // Kubernetes tokens carry no `typ` header.
    let p = ok(
        &v,
        &idp.sign(None, &k8s_claims(issuer, "billing", "invoice-agent")),
    )
    .await;
    assert_eq!(p.subject, "system:serviceaccount:billing:invoice-agent");
    assert_eq!(p.attribute("namespace"), Some("billing"));
    assert_eq!(p.attribute("service_account"), Some("invoice-agent"));
    assert_eq!(
        p.attribute("service_account_uid"),
        Some("e6a8680e-d103-4cce-80ea-03acbbeacf7d")
    );
    assert_eq!(p.attribute("pod"), Some("invoice-agent-7d4b9c-x2x9z"));
    assert_eq!(p.groups, ["billing", "invoicing"]);
    assert!(p.client_id.is_none());
    assert_eq!(p.claim("kubernetes.io.node.name"), Some(&json!("worker-1")));

    let other = ok(
        &v,
        &idp.sign(None, &k8s_claims(issuer, "search", "indexer")),
    )
    .await;
    assert!(other.groups.is_empty());
    // A token whose subject is not a service account is refused by the preset.
    let mut odd = k8s_claims(issuer, "billing", "x");
    odd["sub"] = json!("admin");
    assert_eq!(
        v.verify(&idp.sign(None, &odd)).await.unwrap_err(),
        AuthError::ClaimsNotAccepted
    );
}

fn github_claims(repo: &str, git_ref: &str, environment: Option<&str>) -> Value {
    let owner = repo.split('/').next().expect("owner");
    let sub = match environment {
        Some(env) => format!("repo:{repo}:environment:{env}"),
        None if git_ref.starts_with("refs/pull/") => format!("repo:{repo}:pull_request"),
        None => format!("repo:{repo}:ref:{git_ref}"),
    };
    let mut c = json!({
        "jti": "4a576b35-ff09-41c5-af2c-ca62dd89b76a",
        "sub": sub,
        "aud": "https://skillgate.acme.example",
        "ref": git_ref,
        "sha": "7f93a73b8273af5d35fcd70661704c1cadc57054",
        "repository": repo,
        "repository_owner": owner,
        "repository_owner_id": "65432",
        "repository_id": "123456789",
        "repository_visibility": "private",
        "run_id": "9876543210",
        "run_number": "42",
        "run_attempt": "1",
        "actor": "octocat",
        "actor_id": "583231",
        "workflow": "Release",
        "workflow_ref": format!("{repo}/.github/workflows/release.yml@{git_ref}"),
        "workflow_sha": "7f93a73b8273af5d35fcd70661704c1cadc57054",
        "job_workflow_ref": format!("acme/workflows/.github/workflows/deploy.yml@refs/heads/main"),
        "job_workflow_sha": "1f93a73b8273af5d35fcd70661704c1cadc57055",
        "event_name": "push",
        "ref_type": "branch",
        "ref_protected": "true",
        "runner_environment": "github-hosted",
        "iss": "https://token.actions.githubusercontent.com"
    });
    if let Some(env) = environment {
        c["environment"] = json!(env);
    }
    timed(c)
}

const GITHUB_CONFIG: &str = r#"
preset = "github-actions"
audience = "https://skillgate.acme.example"
require = { repository_owner = "acme", repository_owner_id = "65432" }
group_rules = [
    { when = { repository = "acme/billing", ref = "refs/heads/main" }, groups = ["billing-ci"] },
    { when = { repository = "acme/*", ref = ["refs/tags/v*", "refs/heads/main"] }, groups = ["release"] },
    { when = { job_workflow_ref = "acme/workflows/.github/workflows/deploy.yml@refs/heads/main", environment = "production" }, groups = ["deployer"] },
]
"#;

#[tokio::test]
async fn github_actions_token_maps_repository_and_group_rules() {
    let idp = Signer::rsa();
    let v = idp.verifier(GITHUB_CONFIG);
    let p = ok(
        &v,
        &idp.sign(
            Some("JWT"),
            &github_claims("acme/billing", "refs/heads/main", None),
        ),
    )
    .await;
    assert_eq!(p.issuer, "https://token.actions.githubusercontent.com");
    assert_eq!(p.subject, "repo:acme/billing:ref:refs/heads/main");
    assert_eq!(p.groups, ["billing-ci", "release"]);
    assert_eq!(p.attribute("repository"), Some("acme/billing"));
    assert_eq!(p.attribute("repository_owner"), Some("acme"));
    assert_eq!(p.attribute("ref"), Some("refs/heads/main"));
    assert_eq!(
        p.attribute("job_workflow_ref"),
        Some("acme/workflows/.github/workflows/deploy.yml@refs/heads/main")
    );
    assert_eq!(p.attribute("environment"), None);

    // A pull request of the same repository: authenticated, no group.
    let pr = ok(
        &v,
        &idp.sign(
            Some("JWT"),
            &github_claims("acme/billing", "refs/pull/27/merge", None),
        ),
    )
    .await;
    assert_eq!(pr.subject, "repo:acme/billing:pull_request");
    assert!(pr.groups.is_empty(), "{:?}", pr.groups);

    // A tag in another acme repository, in the production environment.
    let tag = ok(
        &v,
        &idp.sign(
            Some("JWT"),
            &github_claims("acme/search", "refs/tags/v2.1.0", Some("production")),
        ),
    )
    .await;
    assert_eq!(tag.subject, "repo:acme/search:environment:production");
    assert_eq!(tag.groups, ["release", "deployer"]);
    assert_eq!(tag.attribute("environment"), Some("production"));

    // Any other owner is refused: GitHub mints tokens for every repository.
    let evil = idp.sign(
        Some("JWT"),
        &github_claims("evil/billing", "refs/heads/main", None),
    );
    assert_eq!(
        v.verify(&evil).await.unwrap_err(),
        AuthError::ClaimsNotAccepted
    );
    // A look-alike owner name with another owner id (a renamed / re-registered
    // account) is refused too.
    let mut renamed = github_claims("acme/billing", "refs/heads/main", None);
    renamed["repository_owner_id"] = json!("99999");
    assert_eq!(
        v.verify(&idp.sign(Some("JWT"), &renamed))
            .await
            .unwrap_err(),
        AuthError::ClaimsNotAccepted
    );
}

#[tokio::test]
async fn spiffe_jwt_svid_needs_spiffe_subject_audience_and_jwt_typ() {
    let idp = Signer::p256();
    let issuer = "https://oidc.spire.acme.example";
    let v = idp.verifier(&format!(
        r#"preset = "spiffe"
issuer = "{issuer}"
audience = "spiffe://acme.example/skillgate"
require = {{ sub = "spiffe://acme.example/**" }}
group_rules = [{{ when = {{ sub = "spiffe://acme.example/ns/billing/sa/*" }}, groups = ["billing"] }}]"#
    ));
    let svid = |sub: &str| {
        timed(json!({
            "sub": sub,
            "aud": ["spiffe://acme.example/skillgate"],
            "iss": issuer
        }))
    };
    let claims = svid("spiffe://acme.example/ns/billing/sa/invoice-agent");
    let p = ok(&v, &idp.sign(Some("JWT"), &claims)).await;
    assert_eq!(
        p.subject,
        "spiffe://acme.example/ns/billing/sa/invoice-agent"
    );
    assert_eq!(p.groups, ["billing"]);
    // `typ` is optional in JWT-SVID §2.3; JOSE is allowed; others are not.
    ok(&v, &idp.sign(None, &claims)).await;
    ok(&v, &idp.sign(Some("JOSE"), &claims)).await;
    assert_eq!(
        v.verify(&idp.sign(Some("at+jwt"), &claims))
            .await
            .unwrap_err(),
        AuthError::WrongType
    );
    // Another trust domain, or no SPIFFE ID at all.
    for sub in ["spiffe://evil.example/ns/billing/sa/x", "billing"] {
        assert_eq!(
            v.verify(&idp.sign(Some("JWT"), &svid(sub)))
                .await
                .unwrap_err(),
            AuthError::ClaimsNotAccepted,
            "{sub}"
        );
    }
    // The audience is required (JWT-SVID §3.2).
    let mut no_aud = claims.clone();
    no_aud.as_object_mut().unwrap().remove("aud");
    assert_eq!(
        v.verify(&idp.sign(Some("JWT"), &no_aud)).await.unwrap_err(),
        AuthError::MissingClaim("aud")
    );
}

#[tokio::test]
async fn presets_are_overridden_field_by_field() {
    let idp = Signer::rsa();
    let issuer = format!("https://login.microsoftonline.com/{TENANT}/v2.0");
    let v = idp.verifier(&format!(
        r#"preset = "entra-v2"
issuer = "{issuer}"
audience = ["api://skillgate", "c3a4e5f6-1111-4222-8333-944455556666"]
subject_claim = "sub"
groups_claim = ["roles", "groups"]
client_id_claim = "appid"
attributes = {{ app_id = "appid", display_name = "name" }}
typ = "JWT"
leeway_secs = 5"#
    ));
    let claims = timed(json!({
        "aud": "c3a4e5f6-1111-4222-8333-944455556666",
        "iss": issuer,
        "azp": "azp-client",
        "appid": "appid-client",
        "name": "Billing Agent",
        "oid": "oid-1",
        "roles": ["Skills.Invoke"],
        "groups": ["5f0e9d8c-7b6a-4594-8372-615049382716"],
        "sub": "pairwise-sub",
        "tid": TENANT
    }));
    let p = ok(&v, &idp.sign(Some("JWT"), &claims)).await;
    assert_eq!(p.subject, "pairwise-sub");
    assert_eq!(p.client_id.as_deref(), Some("appid-client"));
    assert_eq!(
        p.groups,
        ["Skills.Invoke", "5f0e9d8c-7b6a-4594-8372-615049382716"]
    );
    // Overridden and added attributes; the untouched ones stay.
    assert_eq!(p.attribute("app_id"), Some("appid-client"));
    assert_eq!(p.attribute("display_name"), Some("Billing Agent"));
    assert_eq!(p.attribute("tenant_id"), Some(TENANT));
    assert_eq!(p.attribute("object_id"), Some("oid-1"));
    // `typ = "JWT"` is now required.
    assert_eq!(
        v.verify(&idp.sign(None, &claims)).await.unwrap_err(),
        AuthError::WrongType
    );
    // Algorithms overridden: RS256 no longer accepted.
    let ps_only = toml::from_str::<IssuerConfig>(&format!(
        "preset = \"entra-v2\"\nissuer = \"{issuer}\"\naudience = \"api://skillgate\"\nalgorithms = [\"PS256\"]"
    ))
    .unwrap()
    .builder()
    .unwrap()
    .keys(KeySource::Static(idp.jwks.clone()))
    .build()
    .unwrap();
    assert_eq!(
        ps_only
            .verify(&idp.sign(Some("JWT"), &claims))
            .await
            .unwrap_err(),
        AuthError::AlgorithmNotAllowed
    );
}

#[tokio::test]
async fn builder_api_is_backwards_compatible() {
    let idp = Signer::rsa();
    let v = JwtVerifier::builder("https://keycloak.acme.example/realms/ci")
        .audience("skillgate")
        .groups_claim("realm_access.roles")
        .subject_claim("preferred_username")
        .require_typ("at+jwt")
        .keys(KeySource::Static(idp.jwks.clone()))
        .build()
        .unwrap();
    let claims = timed(json!({
        "iss": "https://keycloak.acme.example/realms/ci",
        "aud": "skillgate",
        "sub": "f:1:2",
        "preferred_username": "service-account-billing",
        "azp": "billing",
        "scope": "profile skills",
        "realm_access": {"roles": ["ci", "billing"]}
    }));
    let p = ok(&v, &idp.sign(Some("at+jwt"), &claims)).await;
    assert_eq!(p.subject, "service-account-billing");
    assert_eq!(p.groups, ["ci", "billing"]);
    assert_eq!(p.scopes, ["profile", "skills"]);
    assert_eq!(p.client_id.as_deref(), Some("billing"));
    assert!(p.attributes.is_empty());
    assert_eq!(
        v.verify(&idp.sign(Some("JWT"), &claims)).await.unwrap_err(),
        AuthError::WrongType
    );
}

// ---------------------------------------------------------------------------
// Two issuers, one subject

#[tokio::test]
async fn same_subject_from_two_issuers_is_two_principals() {
    let a = DevIssuer::try_ephemeral("https://idp-a.example").unwrap();
    let b = DevIssuer::try_ephemeral("https://idp-b.example").unwrap();
    let set = IssuerSet::new()
        .with_jwt(a.verifier("skillgate"))
        .with_jwt(b.verifier("skillgate"));
    let mint = |d: &DevIssuer| {
        d.mint(&skillgate::identity::dev::MintOptions::new("skill-billing"))
            .unwrap()
    };
    let pa = set.verify(&mint(&a)).await.unwrap();
    let pb = set.verify(&mint(&b)).await.unwrap();
    assert_eq!(pa.subject, pb.subject);
    assert_ne!(pa.key(), pb.key());
    assert_ne!(pa.id(), pb.id());
    assert_ne!(pa, pb);
    assert_eq!(pa.issuer, "https://idp-a.example");
    assert_eq!(pb.issuer, "https://idp-b.example");
    // A token of issuer B signed with A's key is not A's principal or B's.
    let mut claims = serde_json::Map::new();
    let t = now();
    for (k, v) in [
        ("iss", json!("https://idp-b.example")),
        ("sub", json!("skill-billing")),
        ("aud", json!("skillgate")),
        ("exp", json!(t + 600)),
    ] {
        claims.insert(k.into(), v);
    }
    let forged = a.sign(&claims).unwrap();
    assert!(set.verify(&forged).await.is_err());
}

// ---------------------------------------------------------------------------
// Configuration

fn jwks_file(dir: &std::path::Path, name: &str, jwks: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, jwks).unwrap();
    p.display().to_string()
}

#[tokio::test]
async fn config_with_several_issuers_presets_and_rules() {
    let dir = tempfile::tempdir().unwrap();
    let rsa = Signer::rsa();
    let ec = Signer::p256();
    let gh = jwks_file(dir.path(), "gh.json", &rsa.jwks);
    let k8s = jwks_file(dir.path(), "k8s.json", &ec.jwks);
    let text = format!(
        r#"
[identity]
issuer = "https://legacy-idp.example"
jwks_file = "{gh}"
audience = "skillgate"
groups_claim = "roles"

[[identity.issuers]]
preset = "github-actions"
audience = "https://skillgate.acme.example"
jwks_file = "{gh}"
require = {{ repository_owner = "acme" }}
group_rules = [{{ when = {{ repository = "acme/billing", ref = "refs/heads/main" }}, groups = ["billing-ci"] }}]

[[identity.issuers]]
preset = "kubernetes"
issuer = "https://kubernetes.default.svc.cluster.local"
audiences = ["skillgate", "skillgate-staging"]
jwks_file = "{k8s}"

[[identity.issuers.group_rules]]
when = {{ kubernetes.io.namespace = "billing" }}
groups = ["billing"]
"#
    );
    let cfg: GatewayConfig = toml::from_str(&text).unwrap();
    assert!(!cfg.identity.dev_issuer_enabled());
    let (set, dev) = cfg.verifier().unwrap();
    assert!(dev.is_none());
    assert_eq!(
        set.issuers().collect::<Vec<_>>(),
        [
            "https://legacy-idp.example",
            "https://token.actions.githubusercontent.com",
            "https://kubernetes.default.svc.cluster.local"
        ]
    );
    let p = set
        .verify(&rsa.sign(
            Some("JWT"),
            &github_claims("acme/billing", "refs/heads/main", None),
        ))
        .await
        .unwrap();
    assert_eq!(p.groups, ["billing-ci"]);
    let mut k = k8s_claims(
        "https://kubernetes.default.svc.cluster.local",
        "billing",
        "invoice-agent",
    );
    k["aud"] = json!(["skillgate-staging"]);
    let p = set.verify(&ec.sign(None, &k)).await.unwrap();
    assert_eq!(p.groups, ["billing"]);
    assert_eq!(p.attribute("namespace"), Some("billing"));
    // The shorthand entry keeps its `groups_claim`.
    let legacy = timed(
        json!({"iss": "https://legacy-idp.example", "aud": "skillgate",
        "sub": "skill-a", "roles": ["ops"]}),
    );
    let p = set.verify(&rsa.sign(None, &legacy)).await.unwrap();
    assert_eq!(p.groups, ["ops"]);
}

fn config_error(text: &str) -> String {
    match toml::from_str::<GatewayConfig>(text) {
        Err(e) => e.to_string(),
        Ok(cfg) => match cfg.verifier() {
            Err(e) => e.to_string(),
            Ok(_) => panic!("configuration accepted:\n{text}"),
        },
    }
}

#[test]
fn config_mistakes_are_clear_errors() {
    let e = config_error("[[identity.issuers]]\npreset = \"entra\"\naudience = \"a\"");
    assert!(e.contains("unknown preset \"entra\""), "{e}");
    assert!(e.contains("entra-v1, entra-v2"), "{e}");
    assert!(e.contains("line 2"), "{e}");

    let e = config_error(
        "[[identity.issuers]]\nissuer = \"https://i\"\naudience = \"a\"\nrequire = { repository = \"acme/[billing\" }",
    );
    assert!(
        e.contains("bad glob \"acme/[billing\": unclosed `[`"),
        "{e}"
    );

    let e = config_error(
        "[[identity.issuers]]\nissuer = \"https://i\"\naudience = \"a\"\n\
         group_rules = [{ when = { ref = \"refs/heads/***\" }, groups = [\"x\"] }]",
    );
    assert!(e.contains("bad glob"), "{e}");

    let e = config_error("[[identity.issuers]]\npreset = \"kubernetes\"\nissuer = \"https://k\"");
    assert!(e.contains("missing field `audience`"), "{e}");

    let e = config_error("[[identity.issuers]]\npreset = \"okta\"\naudience = \"a\"");
    assert!(e.contains("identity.issuers[0]"), "{e}");
    assert!(e.contains("issuer is required"), "{e}");

    let e = config_error("[[identity.issuers]]\npreset = \"github-actions\"\naudience = \"a\"");
    assert!(e.contains("require"), "{e}");
    assert!(
        e.contains("identity.issuers[0] (https://token.actions.githubusercontent.com)"),
        "{e}"
    );

    let e = config_error(
        "[[identity.issuers]]\npreset = \"entra-v1\"\n\
         issuer = \"https://login.microsoftonline.com/t/v2.0\"\naudience = \"a\"",
    );
    assert!(e.contains("entra-v2"), "{e}");

    let e = config_error(
        "[identity]\nissuer = \"https://i\"\n[[identity.issuers]]\nissuer = \"https://i\"\naudience = \"b\"",
    );
    assert!(e.contains("already configured"), "{e}");

    let e = config_error(
        "[[identity.issuers]]\npreset = \"google\"\naudience = \"a\"\nrequire = { email = \"x@y\" }\n\
         [[identity.issuers]]\nissuer = \"accounts.google.com\"\naudience = \"a\"",
    );
    assert!(e.contains("already configured"), "{e}");

    let e =
        config_error("[[identity.issuers]]\nissuer = \"https://i\"\naudience = \"a\"\ncolour = 1");
    assert!(e.contains("unknown field `colour`"), "{e}");
}

// ---------------------------------------------------------------------------
// Through the HTTP stack

struct Running {
    base_url: String,
    audit: Arc<dyn AuditStore>,
    _dir: tempfile::TempDir,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

async fn start_gateway(upstream: &StandIn, identity_toml: &str, dir: tempfile::TempDir) -> Running {
    let key_file = dir.path().join("upstream-key");
    std::fs::write(&key_file, STAND_IN_API_KEY).unwrap();
    let mut cfg: GatewayConfig = toml::from_str(identity_toml).expect("config");
    cfg.upstream.url = upstream.base_url();
    cfg.upstream.api_key_file = Some(key_file);
    cfg.audit.sqlite = dir.path().join("audit.db");
    cfg.identity.dev_key_file = dir.path().join("dev-issuer.json");
    let assembled = cfg.assemble().await.expect("assemble");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(
        listener,
        assembled.service,
        async move {
            let _ = rx.await;
        },
        Duration::from_secs(5),
    ));
    Running {
        base_url: format!("http://{addr}"),
        audit: assembled.audit,
        _dir: dir,
        _shutdown: tx,
    }
}

async fn call(base: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}/v1/messages"))
        .bearer_auth(token)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": "hello"}]
        }))
        .send()
        .await
        .expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_with_several_issuers_keeps_principals_apart() {
    let upstream = StandIn::start().await;
    let dir = tempfile::tempdir().unwrap();
    let a = DevIssuer::try_ephemeral("https://idp-a.example").unwrap();
    let b = DevIssuer::try_ephemeral("https://idp-b.example").unwrap();
    let gh = Signer::rsa();
    let a_jwks = jwks_file(dir.path(), "a.json", &a.jwks_json());
    let b_jwks = jwks_file(dir.path(), "b.json", &b.jwks_json());
    let gh_jwks = jwks_file(dir.path(), "gh.json", &gh.jwks);
    let config = format!(
        r#"
[[identity.issuers]]
issuer = "https://idp-a.example"
audience = "skillgate"
jwks_file = "{a_jwks}"

[[identity.issuers]]
issuer = "https://idp-b.example"
audience = "skillgate"
jwks_file = "{b_jwks}"
group_rules = [{{ when = {{ sub = "skill-*" }}, groups = ["from-b"] }}]

[[identity.issuers]]
preset = "github-actions"
audience = "https://skillgate.acme.example"
jwks_file = "{gh_jwks}"
require = {{ repository_owner = "acme" }}
group_rules = [{{ when = {{ repository = "acme/billing", ref = "refs/heads/main" }}, groups = ["billing-ci"] }}]
"#
    );
    let gw = start_gateway(&upstream, &config, dir).await;
    let mint = |d: &DevIssuer| {
        d.mint(&skillgate::identity::dev::MintOptions::new("skill-billing").group("ci"))
            .unwrap()
    };
    assert_eq!(call(&gw.base_url, &mint(&a)).await.status(), 200);
    assert_eq!(call(&gw.base_url, &mint(&b)).await.status(), 200);
    let gh_ok = gh.sign(
        Some("JWT"),
        &github_claims("acme/billing", "refs/heads/main", None),
    );
    assert_eq!(call(&gw.base_url, &gh_ok).await.status(), 200);

    // Refused: another GitHub owner, an unknown issuer, the dev issuer (off).
    let gh_evil = gh.sign(
        Some("JWT"),
        &github_claims("evil/billing", "refs/heads/main", None),
    );
    let unknown = DevIssuer::try_ephemeral("https://idp-c.example").unwrap();
    let dev = DevIssuer::ephemeral();
    for token in [gh_evil, mint(&unknown), mint(&dev)] {
        let res = call(&gw.base_url, &token).await;
        assert_eq!(res.status(), 401);
        assert_eq!(
            res.headers()
                .get("x-should-retry")
                .and_then(|v| v.to_str().ok()),
            Some("false")
        );
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["type"], "authentication_error");
    }
    assert_eq!(
        upstream.received().len(),
        3,
        "only the accepted calls reach upstream"
    );

    // The audit log has three distinct principals for the accepted calls.
    let mut principals = Vec::new();
    for _ in 0..200 {
        principals = gw
            .audit
            .recent(100)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|r| r.request.principal)
            .collect::<Vec<_>>();
        if principals.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let find = |iss: &str| {
        principals
            .iter()
            .find(|p| p.issuer == iss)
            .unwrap_or_else(|| panic!("no principal from {iss}: {principals:?}"))
            .clone()
    };
    let pa = find("https://idp-a.example");
    let pb = find("https://idp-b.example");
    let pg = find("https://token.actions.githubusercontent.com");
    assert_eq!(pa.subject, "skill-billing");
    assert_eq!(pb.subject, "skill-billing");
    assert_ne!(pa.id(), pb.id());
    assert_eq!(pa.groups, ["ci"]);
    assert_eq!(pb.groups, ["ci", "from-b"]);
    assert_eq!(pg.groups, ["billing-ci"]);
    assert_eq!(pg.attribute("repository"), Some("acme/billing"));
    assert_eq!(principals.len(), 3, "refused calls carry no principal");
}
