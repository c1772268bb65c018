//! End to end through the same assembly the example gateway uses
//! (`GatewayConfig::assemble` + `serve`), with the official Python SDK as the
//! caller, a local stand-in for the Anthropic API upstream, and a real OIDC
//! provider (npm `oidc-provider`) for tokens.

mod support;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use skillgate::audit::Verdict;
use skillgate::identity::dev::{DEV_AUDIENCE, DEV_ISSUER, DevIssuer, MintOptions};
use support::gateway::TestGateway;
use support::oidc::OidcProvider;
use support::python::sdk_call;
use support::stand_in::{STAND_IN_API_KEY, StandIn, reply_text_for};

fn assert_no_caller_credentials(upstream: &StandIn, caller_token: &str) {
    for r in upstream.received() {
        assert_eq!(
            r.header("x-api-key"),
            Some(STAND_IN_API_KEY),
            "upstream key injected"
        );
        assert!(
            r.header("authorization").is_none(),
            "no caller authorization upstream"
        );
        for (name, value) in &r.headers {
            let v = value.to_str().unwrap_or("");
            assert!(
                !v.contains(caller_token),
                "caller token leaked upstream in {name}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_create_through_gateway() {
    let upstream = StandIn::start().await;
    let gw = TestGateway::start(&upstream, |_, _| {}).await;
    let token = gw.token("skill-billing", &["ci"]);
    let prompt = "What is 2 + 2?";
    let out = sdk_call(
        "create",
        &gw.base_url,
        Some(&token),
        &[("SG_PROMPT", prompt)],
    )
    .await;
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(out["text"], reply_text_for(prompt));
    assert_eq!(upstream.received().len(), 1);
    assert_no_caller_credentials(&upstream, &token);
    let seen = &upstream.received()[0];
    assert_eq!(seen.path_and_query, "/v1/messages");
    // The SDK's own version header travels through unchanged.
    assert!(
        seen.header("anthropic-version")
            .is_some_and(|v| !v.is_empty())
    );
    assert!(
        seen.header("user-agent")
            .is_some_and(|v| v.contains("Python"))
    );

    let recs = gw.records(1).await;
    let rec = &recs[0];
    let p = rec.request.principal.as_ref().expect("principal recorded");
    assert_eq!(p.subject, "skill-billing");
    assert_eq!(p.issuer, DEV_ISSUER);
    assert_eq!(p.groups, ["ci"]);
    assert_eq!(rec.request.decision.verdict, Verdict::Allow);
    assert_eq!(rec.request.model.as_deref(), Some("claude-sonnet-4-5"));
    assert!(!rec.request.stream);
    // The request as forwarded, byte for byte.
    assert_eq!(rec.request.body, seen.body);
    let resp = rec.response.as_ref().expect("response recorded");
    assert!(resp.complete);
    assert_eq!(resp.status, 200);
    let body: Value = serde_json::from_slice(&resp.body).expect("json body");
    assert_eq!(body["content"][0]["text"], reply_text_for(prompt));
    assert!(
        resp.upstream_request_id
            .as_deref()
            .is_some_and(|r| r.starts_with("req_"))
    );
    assert!(resp.usage.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_stream_through_gateway() {
    let upstream = StandIn::start_with(support::stand_in::StandInOptions {
        chunking: support::stand_in::Chunking::OddSplits,
        ..Default::default()
    })
    .await;
    let gw = TestGateway::start(&upstream, |_, _| {}).await;
    let token = gw.token("skill-stream", &["ci"]);
    let prompt = "Tell me a long story about a lighthouse keeper";
    let out = sdk_call(
        "stream",
        &gw.base_url,
        Some(&token),
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
    assert_eq!(events.first(), Some(&"message_start"));
    assert_eq!(events.last(), Some(&"message_stop"));
    assert_no_caller_credentials(&upstream, &token);

    let recs = gw.records(1).await;
    let rec = &recs[0];
    assert!(rec.request.stream);
    let resp = rec.response.as_ref().expect("response");
    assert!(resp.complete);
    // The event stream as delivered, and the reassembled text.
    let sse = std::str::from_utf8(&resp.body).expect("utf-8 sse");
    assert!(sse.starts_with("event: message_start"));
    assert!(sse.contains("event: message_stop"));
    assert_eq!(resp.text.as_deref(), Some(reply_text_for(prompt).as_str()));

    // The SSE codec decodes this real stream to the same events however it is split.
    let whole = skillgate::wire::sse::decode_all(&resp.body).expect("valid SSE");
    assert_eq!(whole.first().and_then(|e| e.event()), Some("message_start"));
    for cut in 0..=resp.body.len() {
        let mut d = skillgate::wire::sse::SseDecoder::new();
        let mut got = d.push(&resp.body[..cut]).expect("push");
        got.extend(d.push(&resp.body[cut..]).expect("push"));
        d.finish().expect("finish");
        assert_eq!(got, whole, "split at {cut}");
    }
}

fn forge(header: Value, claims: Value, signature: &str) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        signature
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_gets_authentication_error_for_bad_tokens() {
    let upstream = StandIn::start().await;
    let gw = TestGateway::start(&upstream, |_, _| {}).await;
    let dev = gw.dev.clone().expect("dev issuer");
    let now = jiff::Timestamp::now().as_second();
    let claims = |iss: &str, aud: &str, exp: i64| {
        json!({"iss": iss, "sub": "mallory", "aud": aud, "exp": exp})
            .as_object()
            .cloned()
            .expect("object")
    };
    let good = gw.token("someone", &["ci"]);
    let other_key = DevIssuer::ephemeral();
    let bad_sig = {
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged = other_key.mint(&MintOptions::new("someone")).expect("mint");
        let sig = forged.rsplit('.').next().expect("sig").to_owned();
        parts[2] = &sig;
        parts.join(".")
    };
    type Case<'a> = (&'a str, Option<String>, &'a [(&'a str, &'a str)]);
    let cases: Vec<Case> = vec![
        ("no token", None, &[]),
        (
            "expired",
            Some(
                dev.sign(&claims(DEV_ISSUER, DEV_AUDIENCE, now - 3600))
                    .expect("sign"),
            ),
            &[],
        ),
        (
            "wrong audience",
            Some(
                dev.sign(&claims(DEV_ISSUER, "another-service", now + 600))
                    .expect("sign"),
            ),
            &[],
        ),
        (
            "wrong issuer",
            Some(
                DevIssuer::try_ephemeral("https://evil.example")
                    .expect("issuer")
                    .sign(&claims("https://evil.example", DEV_AUDIENCE, now + 600))
                    .expect("sign"),
            ),
            &[],
        ),
        ("bad signature", Some(bad_sig), &[]),
        (
            "alg none",
            Some(forge(
                json!({"alg": "none", "typ": "at+jwt"}),
                json!(claims(DEV_ISSUER, DEV_AUDIENCE, now + 600)),
                "",
            )),
            &[],
        ),
        (
            "garbage as x-api-key",
            Some("sk-ant-not-a-jwt".into()),
            &[("SG_TOKEN_AS_API_KEY", "1")],
        ),
    ];
    let n = cases.len();
    for (name, token, env) in cases {
        let out = sdk_call("create", &gw.base_url, token.as_deref(), env).await;
        assert_eq!(out["ok"], false, "{name}: {out}");
        assert_eq!(out["error_class"], "AuthenticationError", "{name}: {out}");
        assert_eq!(out["status"], 401, "{name}");
        assert_eq!(out["body"]["type"], "error", "{name}");
        assert_eq!(
            out["body"]["error"]["type"], "authentication_error",
            "{name}"
        );
        let message = out["body"]["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            !message.contains("expired") && !message.contains("audience"),
            "{name}: message leaks the reason: {message}"
        );
        if let Some(t) = &token {
            assert!(
                !out.to_string().contains(t.as_str()),
                "{name}: token echoed"
            );
        }
    }
    assert!(
        upstream.received().is_empty(),
        "nothing forwarded for refused tokens"
    );
    let recs = gw.records(n).await;
    assert_eq!(recs.len(), n);
    for r in &recs {
        assert_eq!(r.request.decision.verdict, Verdict::Deny);
        assert!(
            r.request
                .decision
                .reason
                .as_deref()
                .is_some_and(|s| s.starts_with("authentication"))
        );
        assert_eq!(r.response.as_ref().map(|x| x.status), Some(401));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_a_real_oidc_provider_via_discovery() {
    let idp = OidcProvider::start().await;
    let upstream = StandIn::start().await;
    let gw = TestGateway::start(&upstream, |c, _| {
        c.identity.issuer = Some(idp.issuer.clone());
        c.identity.audience = support::oidc::AUDIENCE.into();
        c.identity.require_typ = Some("at+jwt".into());
    })
    .await;
    assert!(gw.dev.is_none(), "a real issuer turns the dev issuer off");
    let token = idp.client_credentials_token().await;
    let out = sdk_call(
        "create",
        &gw.base_url,
        Some(&token),
        &[("SG_PROMPT", "hello")],
    )
    .await;
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(out["text"], reply_text_for("hello"));
    assert_no_caller_credentials(&upstream, &token);
    let recs = gw.records(1).await;
    let p = recs[0].request.principal.as_ref().expect("principal");
    assert_eq!(p.issuer, idp.issuer);
    assert_eq!(p.client_id.as_deref(), Some(idp.client_id.as_str()));
    assert_eq!(p.groups, support::oidc::GROUPS);
    assert!(p.has_scope(support::oidc::SCOPE));

    // A token from the same IdP for another audience is refused.
    let other = idp.token_for_resource(support::oidc::OTHER_RESOURCE).await;
    let out = sdk_call("create", &gw.base_url, Some(&other), &[]).await;
    assert_eq!(out["error_class"], "AuthenticationError", "{out}");
    // A dev-issuer token is refused once a real issuer is configured.
    let dev = DevIssuer::ephemeral()
        .mint(&MintOptions::new("x"))
        .expect("mint");
    let out = sdk_call("create", &gw.base_url, Some(&dev), &[]).await;
    assert_eq!(out["error_class"], "AuthenticationError", "{out}");
    assert_eq!(upstream.received().len(), 1);
}

/// The example binary (built by `cargo test`): the README's one command.
fn example_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("examples").join("gateway");
    assert!(
        bin.exists(),
        "{} missing: cargo test builds examples",
        bin.display()
    );
    bin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_gateway_runs_mints_and_shuts_down_gracefully() {
    use tokio::io::AsyncBufReadExt;
    let upstream = StandIn::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        let mut c = tokio::process::Command::new(example_binary());
        c.args(args)
            .current_dir(dir.path())
            .env("SG_EXAMPLE_UPSTREAM_KEY", STAND_IN_API_KEY)
            .env("RUST_LOG", "warn")
            .kill_on_drop(true);
        c
    };
    let mut child = run(&[
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream.base_url(),
        "--upstream-key-env",
        "SG_EXAMPLE_UPSTREAM_KEY",
    ])
    .stdout(std::process::Stdio::piped())
    .spawn()
    .expect("start example gateway");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("gateway did not start")
        .expect("read")
        .expect("a line");
    let base = line
        .strip_prefix("skillgate listening on ")
        .expect("listening line")
        .to_owned();
    assert!(
        dir.path().join("skillgate-dev-issuer.json").exists(),
        "dev key created on first start"
    );

    let minted = run(&[
        "mint-token",
        "--sub",
        "readme-skill",
        "--group",
        "ci",
        "--ttl",
        "120",
    ])
    .output()
    .await
    .expect("mint-token");
    assert!(minted.status.success());
    let token = String::from_utf8(minted.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    let out = sdk_call("stream", &base, Some(&token), &[("SG_PROMPT", "hi")]).await;
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(out["text"], reply_text_for("hi"));
    assert!(
        dir.path().join("skillgate-audit.db").exists(),
        "audit db in the working directory"
    );

    let health = reqwest::get(format!("{base}/healthz"))
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);

    let pid = child.id().expect("pid").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("gateway did not stop on SIGTERM")
        .expect("wait");
    assert!(status.success(), "graceful exit, got {status}");
}
