//! Self-test of the real-parts harness in `tests/support`: the official
//! Python SDK against the Anthropic stand-in, the stand-in's wire format seen
//! raw, and the real OIDC provider.

mod support;

use std::process::Stdio;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

use support::oidc::{self, OidcProvider};
use support::python::sdk_call;
use support::stand_in::{
    Chunking, MIDSTREAM_ERROR_MODEL, ReceivedRequest, SLOW_MODEL, STAND_IN_API_KEY, StandIn,
    StandInOptions, error_model, input_tokens_for, reply_pieces, reply_text_for,
};

/// Non-ASCII on purpose: odd splits then fall inside multi-byte characters.
const PROMPT: &str = "Count to three, please — ünïcode ✓";
const DEFAULT_MODEL: &str = "claude-sonnet-4-5";

/// The exact event order of a streamed text reply.
fn expected_events(prompt: &str) -> Vec<String> {
    let deltas = reply_pieces(&reply_text_for(prompt)).len();
    assert!(deltas >= 3, "a reply should stream in several deltas");
    let mut names = vec!["message_start", "content_block_start", "ping"];
    names.extend(std::iter::repeat_n("content_block_delta", deltas));
    names.extend(["content_block_stop", "message_delta", "message_stop"]);
    names.into_iter().map(String::from).collect()
}

fn only_request(stand_in: &StandIn) -> ReceivedRequest {
    let received = stand_in.received();
    assert_eq!(
        received.len(),
        1,
        "want exactly one request, got {received:#?}"
    );
    received.into_iter().next().expect("one request")
}

/// The SDK's dump of a message has one text block with `text` (the SDK adds
/// `citations: null` of its own).
fn assert_one_text_block(message: &Value, text: &str) {
    let content = message["content"].as_array().expect("content is a list");
    assert_eq!(content.len(), 1, "{message:#}");
    assert_eq!(content[0]["type"], "text");
    assert_eq!(content[0]["text"], text);
}

fn assert_ok(out: &Value) {
    assert_eq!(out["ok"], json!(true), "SDK call failed: {out:#}");
}

/// `[(event name, data)]` of an SSE body, parsed independently of any SDK.
fn parse_sse(text: &str) -> Vec<(String, Value)> {
    assert!(
        text.ends_with("\n\n"),
        "an SSE body ends with a blank line: {text:?}"
    );
    text.split("\n\n")
        .filter(|block| !block.is_empty())
        .map(|block| {
            let mut name = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    name = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = Some(
                        serde_json::from_str(v)
                            .unwrap_or_else(|err| panic!("SSE data is not JSON ({err}): {v:?}")),
                    );
                } else {
                    panic!("unexpected SSE line {line:?}");
                }
            }
            (
                name.unwrap_or_else(|| panic!("SSE block without event: {block:?}")),
                data.unwrap_or_else(|| panic!("SSE block without data: {block:?}")),
            )
        })
        .collect()
}

#[tokio::test]
async fn python_sdk_create_against_stand_in() {
    let stand_in = StandIn::start().await;
    let out = sdk_call(
        "create",
        &stand_in.base_url(),
        Some(STAND_IN_API_KEY),
        &[("SG_TOKEN_AS_API_KEY", "1"), ("SG_PROMPT", PROMPT)],
    )
    .await;
    assert_ok(&out);
    let reply = reply_text_for(PROMPT);
    assert_eq!(out["text"], json!(reply));
    let message = &out["message"];
    assert!(
        message["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("msg_"))
    );
    assert_eq!(message["type"], "message");
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["model"], DEFAULT_MODEL);
    assert_one_text_block(message, &reply);
    assert_eq!(message["stop_reason"], "end_turn");
    assert_eq!(message["stop_sequence"], Value::Null);
    assert_eq!(
        message["usage"]["output_tokens"],
        json!(reply_pieces(&reply).len())
    );
    let request_id = out["headers"]["request-id"].as_str().unwrap_or_default();
    assert!(request_id.starts_with("req_"), "{out:#}");
    assert_eq!(out["request_id"], json!(request_id));

    let request = only_request(&stand_in);
    assert_eq!(request.method, "POST");
    assert_eq!(request.path_and_query, "/v1/messages");
    // anthropic 2.x sends an `api_key` as a Bearer token, not as x-api-key.
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {STAND_IN_API_KEY}").as_str())
    );
    assert_eq!(request.header("x-api-key"), None);
    assert!(request.header("anthropic-version").is_some());
    let body = request.json();
    assert_eq!(body["model"], DEFAULT_MODEL);
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": PROMPT}])
    );
    assert_ne!(body.get("stream"), Some(&json!(true)));
    assert_eq!(
        message["usage"]["input_tokens"],
        json!(input_tokens_for(&body))
    );
}

#[tokio::test]
async fn python_sdk_stream_against_stand_in_with_every_chunking() {
    let chunkings = [Chunking::Whole, Chunking::PerEvent, Chunking::OddSplits];
    let mut stand_ins = Vec::new();
    for chunking in chunkings {
        stand_ins.push(
            StandIn::start_with(StandInOptions {
                chunking,
                ..StandInOptions::default()
            })
            .await,
        );
    }
    let calls = stand_ins.iter().map(|stand_in| async move {
        sdk_call(
            "stream",
            &stand_in.base_url(),
            Some(STAND_IN_API_KEY),
            &[("SG_PROMPT", PROMPT)],
        )
        .await
    });
    let outs = futures_util::future::join_all(calls).await;

    let reply = reply_text_for(PROMPT);
    for ((chunking, stand_in), out) in chunkings.iter().zip(&stand_ins).zip(&outs) {
        assert_ok(out);
        assert_eq!(out["text"], json!(reply), "{chunking:?}");
        assert_eq!(
            out["events"],
            json!(expected_events(PROMPT)),
            "{chunking:?}"
        );
        let message = &out["message"];
        assert_one_text_block(message, &reply);
        assert_eq!(message["stop_reason"], "end_turn");
        assert_eq!(
            message["usage"]["output_tokens"],
            json!(reply_pieces(&reply).len())
        );
        assert_eq!(
            out["headers"]["content-type"],
            "text/event-stream; charset=utf-8"
        );
        let request = only_request(stand_in);
        assert_eq!(request.json()["stream"], json!(true));
        // auth_token= is a Bearer token too.
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {STAND_IN_API_KEY}").as_str())
        );
        assert_eq!(stand_in.completed_streams(), 1, "{chunking:?}");
        assert_eq!(stand_in.disconnects(), 0, "{chunking:?}");
    }
}

#[tokio::test]
async fn python_sdk_sees_stand_in_errors() {
    let stand_in = StandIn::start().await;
    let base = stand_in.base_url();
    let model_529 = error_model(529);
    let overloaded_env = [("SG_MODEL", model_529.as_str())];
    let (wrong_key, no_key, overloaded, midstream, x_api_key, count) = tokio::join!(
        sdk_call(
            "create",
            &base,
            Some("sk-ant-wrong"),
            &[("SG_TOKEN_AS_API_KEY", "1")]
        ),
        sdk_call("create", &base, None, &[]),
        sdk_call("create", &base, Some(STAND_IN_API_KEY), &overloaded_env),
        sdk_call(
            "stream",
            &base,
            Some(STAND_IN_API_KEY),
            &[("SG_MODEL", MIDSTREAM_ERROR_MODEL)]
        ),
        sdk_call(
            "create",
            &base,
            Some(STAND_IN_API_KEY),
            &[("SG_TOKEN_HEADER", "x-api-key"), ("SG_PROMPT", "hi")]
        ),
        sdk_call(
            "count_tokens",
            &base,
            Some(STAND_IN_API_KEY),
            &[("SG_PROMPT", "one two three")]
        ),
    );

    for (out, message) in [
        (&wrong_key, "invalid x-api-key"),
        (&no_key, "x-api-key header is required"),
    ] {
        assert_eq!(out["ok"], json!(false), "{out:#}");
        assert_eq!(out["error_class"], "AuthenticationError", "{out:#}");
        assert_eq!(out["status"], 401);
        let request_id = out["headers"]["request-id"].as_str().unwrap_or_default();
        assert!(request_id.starts_with("req_"), "{out:#}");
        assert_eq!(
            out["body"],
            json!({
                "type": "error",
                "error": {"type": "authentication_error", "message": message},
                "request_id": request_id,
            })
        );
        assert_eq!(out["request_id"], json!(request_id));
    }

    assert_eq!(overloaded["ok"], json!(false), "{overloaded:#}");
    assert_eq!(
        overloaded["error_class"], "OverloadedError",
        "{overloaded:#}"
    );
    assert_eq!(overloaded["status"], 529);
    assert_eq!(overloaded["body"]["error"]["type"], "overloaded_error");

    // An error event after a 200: the SDK raises a plain APIStatusError.
    assert_eq!(midstream["ok"], json!(false), "{midstream:#}");
    assert_eq!(midstream["error_class"], "APIStatusError", "{midstream:#}");
    assert_eq!(midstream["status"], 200);
    assert_eq!(midstream["events"], json!(["message_start", "error"]));
    assert_eq!(
        midstream["body"],
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    );

    assert_ok(&x_api_key);
    assert_eq!(x_api_key["text"], json!(reply_text_for("hi")));

    assert_ok(&count);
    assert_eq!(count["input_tokens"], 3);

    let received = stand_in.received();
    assert_eq!(received.len(), 6, "{received:#?}");
    let by_header = received
        .iter()
        .find(|r| r.header("x-api-key").is_some())
        .expect("one request came with x-api-key");
    assert_eq!(by_header.header("x-api-key"), Some(STAND_IN_API_KEY));
    assert_eq!(by_header.header("authorization"), None);
    let anonymous: Vec<_> = received
        .iter()
        .filter(|r| r.header("x-api-key").is_none() && r.header("authorization").is_none())
        .collect();
    assert_eq!(anonymous.len(), 1, "the no-credential call sent none");
    assert!(
        received
            .iter()
            .any(|r| r.path_and_query == "/v1/messages/count_tokens")
    );
}

async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, http::HeaderMap, Value) {
    let mut request = client.request(method, url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let response = request.send().await.expect("request to the stand-in");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("stand-in body");
    let value = serde_json::from_slice(&bytes).unwrap_or_else(|err| {
        panic!(
            "stand-in body is not JSON ({err}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, headers, value)
}

/// One refused request to the stand-in and the error it must get.
struct WireCase<'a> {
    what: &'a str,
    status: u16,
    error_type: &'a str,
    headers: &'a [(&'a str, &'a str)],
    /// `None`: a valid Messages body.
    body: Option<&'a str>,
    /// `None`: `/v1/messages`.
    url: Option<&'a str>,
}

impl<'a> WireCase<'a> {
    fn new(
        what: &'a str,
        status: u16,
        error_type: &'a str,
        headers: &'a [(&'a str, &'a str)],
    ) -> Self {
        WireCase {
            what,
            status,
            error_type,
            headers,
            body: None,
            url: None,
        }
    }
}

#[tokio::test]
async fn stand_in_wire_format_and_errors() {
    let stand_in = StandIn::start().await;
    let base = stand_in.base_url();
    let client = reqwest::Client::new();
    let key = ("x-api-key", STAND_IN_API_KEY);
    let version = ("anthropic-version", "2023-06-01");
    let good = r#"{"model":"m","max_tokens":8,"messages":[{"role":"user","content":[{"type":"text","text":"a b"},{"type":"image","source":{}},{"type":"text","text":"c"}]}]}"#;
    let messages = format!("{base}/v1/messages");
    let post = reqwest::Method::POST;

    let no_key = [version];
    let wrong_key = [("x-api-key", "sk-ant-nope"), version];
    let no_version = [key];
    let both = [key, version];
    let unknown = format!("{base}/v1/nope");
    let no_max_tokens = r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#;
    let cases = [
        WireCase::new("no key", 401, "authentication_error", &no_key),
        WireCase::new("wrong key", 401, "authentication_error", &wrong_key),
        WireCase::new("no version", 400, "invalid_request_error", &no_version),
        WireCase {
            body: Some("{\"model\":"),
            ..WireCase::new("bad JSON", 400, "invalid_request_error", &both)
        },
        WireCase {
            body: Some(no_max_tokens),
            ..WireCase::new("no max_tokens", 400, "invalid_request_error", &both)
        },
        WireCase {
            body: None,
            url: Some(&unknown),
            ..WireCase::new("unknown path", 404, "not_found_error", &both)
        },
    ];
    for case in cases {
        let what = case.what;
        let url = case.url.unwrap_or(&messages).to_owned();
        let body = case.body.or(Some(good));
        let (got, response_headers, value) =
            send(&client, post.clone(), url, case.headers, body).await;
        assert_eq!(got, case.status, "{what}: {value}");
        let request_id = response_headers["request-id"].to_str().expect("ascii");
        assert!(request_id.starts_with("req_"), "{what}");
        assert_eq!(value["type"], "error", "{what}");
        assert_eq!(value["error"]["type"], case.error_type, "{what}: {value}");
        assert!(value["error"]["message"].is_string(), "{what}");
        assert_eq!(value["request_id"], request_id, "{what}");
    }

    for status in [400u16, 401, 403, 404, 413, 429, 500, 529] {
        let body = format!(
            r#"{{"model":"{}","max_tokens":8,"messages":[{{"role":"user","content":"x"}}]}}"#,
            error_model(status)
        );
        let (got, _, value) = send(
            &client,
            post.clone(),
            messages.clone(),
            &[key, version],
            Some(&body),
        )
        .await;
        assert_eq!(got, status);
        let want = skillgate::ErrorType::from_status(status).expect("known status");
        assert_eq!(value["error"]["type"], want.as_str(), "{status}");
    }

    // A text-block prompt, with the query string kept.
    let (got, headers, value) = send(
        &client,
        post.clone(),
        format!("{messages}?beta=true"),
        &[key, version],
        Some(good),
    )
    .await;
    assert_eq!(got, 200, "{value}");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(value["content"][0]["text"], reply_text_for("a b\nc"));
    assert_eq!(value["usage"]["input_tokens"], 3);
    assert_eq!(value["usage"]["cache_creation_input_tokens"], 0);
    assert_eq!(value["usage"]["cache_read_input_tokens"], 0);

    let (got, _, value) = send(
        &client,
        post.clone(),
        format!("{base}/v1/messages/count_tokens"),
        &[key, version],
        Some(r#"{"model":"m","system":"be brief","messages":[{"role":"user","content":"x y"}]}"#),
    )
    .await;
    assert_eq!((got, value), (200, json!({"input_tokens": 4})));

    let (got, _, value) = send(
        &client,
        reqwest::Method::GET,
        format!("{base}/v1/models"),
        &[key, version],
        None,
    )
    .await;
    assert_eq!(got, 200);
    assert_eq!(value["has_more"], false);
    let data = value["data"].as_array().expect("models list has data");
    assert!(!data.is_empty());
    assert!(data.iter().all(|m| m["type"] == "model"));
    assert_eq!(value["first_id"], data[0]["id"]);

    let received = stand_in.received();
    assert!(
        received
            .iter()
            .any(|r| r.path_and_query == "/v1/messages?beta=true")
    );
    assert_eq!(received.len(), 6 + 8 + 3);
}

#[tokio::test]
async fn stand_in_odd_splits_reassemble_to_the_exact_events() {
    let stand_in = StandIn::start_with(StandInOptions {
        chunking: Chunking::OddSplits,
        ..StandInOptions::default()
    })
    .await;
    let body = json!({
        "model": DEFAULT_MODEL,
        "max_tokens": 64,
        "stream": true,
        "messages": [{"role": "user", "content": PROMPT}],
    });
    let response = reqwest::Client::new()
        .post(format!("{}/v1/messages", stand_in.base_url()))
        .header("x-api-key", STAND_IN_API_KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .expect("stream request");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let mut chunks = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        chunks.push(chunk.expect("stream chunk"));
    }
    let all: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
    let text = String::from_utf8(all).expect("SSE is UTF-8 once reassembled");
    let events = parse_sse(&text);
    let names: Vec<String> = events.iter().map(|(name, _)| name.clone()).collect();
    assert_eq!(names, expected_events(PROMPT));
    assert!(
        chunks.len() > 1,
        "odd splits should reach the client in several reads"
    );
    for (name, data) in &events {
        assert_eq!(&data["type"], name, "data.type matches the event name");
    }
    let text: String = events
        .iter()
        .filter(|(name, _)| name == "content_block_delta")
        .map(|(_, data)| {
            assert_eq!(data["delta"]["type"], "text_delta");
            data["delta"]["text"]
                .as_str()
                .expect("delta text")
                .to_owned()
        })
        .collect();
    assert_eq!(text, reply_text_for(PROMPT));
    let start = &events[0].1["message"];
    assert_eq!(start["content"], json!([]));
    assert_eq!(start["stop_reason"], Value::Null);
    let delta = &events[events.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(
        delta["usage"]["output_tokens"],
        json!(reply_pieces(&reply_text_for(PROMPT)).len())
    );
}

#[tokio::test]
async fn stand_in_counts_a_client_leaving_a_slow_stream() {
    let stand_in = StandIn::start().await;
    let response = reqwest::Client::new()
        .post(format!("{}/v1/messages", stand_in.base_url()))
        .header("x-api-key", STAND_IN_API_KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({
            "model": SLOW_MODEL,
            "max_tokens": 64,
            "stream": true,
            "messages": [{"role": "user", "content": "slow"}],
        }))
        .send()
        .await
        .expect("slow stream request");
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let mut seen = String::new();
    while seen.matches("event: content_block_delta").count() < 4 {
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("a delta within 5 s")
            .expect("stream still open")
            .expect("stream chunk");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("tick 2 "), "{seen}");
    assert_eq!(stand_in.disconnects(), 0);
    drop(stream);
    assert!(
        stand_in
            .wait_for_disconnects(1, Duration::from_secs(5))
            .await,
        "the stand-in did not notice the client leaving"
    );
    assert_eq!(stand_in.completed_streams(), 0);
}

#[tokio::test]
async fn stand_in_counts_a_client_giving_up_on_a_slow_answer() {
    let stand_in = StandIn::start().await;
    let result = reqwest::Client::builder()
        .timeout(Duration::from_millis(400))
        .build()
        .expect("client")
        .post(format!("{}/v1/messages", stand_in.base_url()))
        .header("x-api-key", STAND_IN_API_KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({
            "model": SLOW_MODEL,
            "max_tokens": 64,
            "messages": [{"role": "user", "content": "slow"}],
        }))
        .send()
        .await;
    let err = result.expect_err("a non-streaming slow answer takes 60 s");
    assert!(err.is_timeout(), "{err}");
    assert!(
        stand_in
            .wait_for_disconnects(1, Duration::from_secs(5))
            .await,
        "the stand-in did not notice the client giving up"
    );
}

#[tokio::test]
async fn oidc_provider_issues_jwt_access_tokens() {
    let provider = OidcProvider::start().await;
    assert!(provider.issuer.starts_with("http://127.0.0.1:"));

    let discovery = provider.discovery().await;
    assert_eq!(discovery["issuer"], json!(provider.issuer));
    assert_eq!(discovery["token_endpoint"], json!(provider.token_endpoint));
    assert_eq!(discovery["jwks_uri"], json!(provider.jwks_uri));
    assert!(
        discovery["grant_types_supported"]
            .as_array()
            .is_some_and(|g| g.contains(&json!("client_credentials"))),
        "{discovery:#}"
    );

    let jwks = provider.jwks().await;
    let keys = jwks["keys"].as_array().expect("JWKS has keys");
    let rsa = keys.iter().find(|k| k["kty"] == "RSA").expect("an RSA key");
    assert_eq!(rsa["alg"], "RS256");
    assert!(keys.iter().any(|k| k["kty"] == "EC" && k["crv"] == "P-256"));
    assert!(
        keys.iter().all(|k| k.get("d").is_none()),
        "JWKS must not publish private parts"
    );

    let token = provider.client_credentials_token().await;
    let (header, claims) = oidc::decode_unverified(&token);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], rsa["kid"]);
    assert_eq!(claims["aud"], oidc::AUDIENCE);
    assert_eq!(claims["iss"], json!(provider.issuer));
    assert_eq!(claims["groups"], json!(oidc::GROUPS));
    assert_eq!(claims["client_id"], json!(provider.client_id));
    assert_eq!(claims["sub"], json!(provider.client_id));
    assert_eq!(claims["scope"], oidc::SCOPE);
    assert!(claims["jti"].is_string());
    let iat = claims["iat"].as_i64().expect("iat");
    let exp = claims["exp"].as_i64().expect("exp");
    assert_eq!(exp - iat, 3600);

    let other = provider.token_for_resource(oidc::OTHER_RESOURCE).await;
    let (_, other_claims) = oidc::decode_unverified(&other);
    assert_eq!(other_claims["aud"], oidc::OTHER_AUDIENCE);

    // A bare `skillgate` is no resource indicator (not an absolute URI).
    let (status, body) = provider
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("resource", "skillgate"),
        ])
        .await;
    assert_eq!((status, &body["error"]), (400, &json!("invalid_target")));

    // client_secret_post works too; a wrong secret does not.
    for (secret, want) in [(provider.client_secret.as_str(), 200), ("wrong", 401)] {
        let response = reqwest::Client::new()
            .post(&provider.token_endpoint)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", provider.client_id.as_str()),
                ("client_secret", secret),
            ])
            .send()
            .await
            .expect("token request");
        assert_eq!(response.status().as_u16(), want);
    }
}

/// Spawns the provider script directly and waits for its line.
async fn spawn_provider() -> tokio::process::Child {
    let mut child = tokio::process::Command::new(oidc::node())
        .arg(oidc::script())
        .env("OIDC_PORT", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(oidc::START_TIMEOUT, lines.next_line())
        .await
        .expect("provider announced itself in time")
        .expect("read stdout")
        .expect("a line");
    let announced: Value = serde_json::from_str(&line).expect("one JSON line");
    assert!(announced["issuer"].is_string());
    child
}

#[tokio::test]
async fn oidc_provider_exits_on_stdin_close_and_on_sigterm() {
    let (mut by_stdin, mut by_term) = tokio::join!(spawn_provider(), spawn_provider());

    drop(by_stdin.stdin.take());
    let status = tokio::time::timeout(Duration::from_secs(5), by_stdin.wait())
        .await
        .expect("provider exits within 5 s of stdin closing")
        .expect("wait");
    assert!(status.success(), "{status}");

    let pid = by_term.id().expect("running").to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(kill.success());
    let status = tokio::time::timeout(Duration::from_secs(5), by_term.wait())
        .await
        .expect("provider exits within 5 s of SIGTERM")
        .expect("wait");
    assert!(status.success(), "{status}");
}
