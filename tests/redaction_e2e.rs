//! Redaction through the HTTP stack: the `streaming_` cases of
//! `tests/fixtures/pii_cases.jsonl` replayed byte for byte by the stand-in and
//! read with the official Python SDK's stream helper and as raw SSE; JSON
//! responses; prompt masking; strict mode failing closed; findings in the audit
//! record.
#![cfg(feature = "sqlite")]

mod support;

use serde_json::Value;
use skillgate::redaction::Redactor;
use skillgate::wire::sse::decode_all;
use support::gateway::TestGateway;
use support::python::sdk_call;
use support::stand_in::StandIn;

const CASES: &str = include_str!("fixtures/pii_cases.jsonl");

struct Case {
    id: String,
    input: String,
    values: Vec<String>,
}

fn streaming_cases() -> Vec<Case> {
    CASES
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["kind"].as_str().unwrap().starts_with("streaming_"))
        .map(|v| Case {
            id: v["id"].as_str().unwrap().into(),
            input: v["input"].as_str().unwrap().into(),
            values: v["expected_spans"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["text"].as_str().unwrap().to_owned())
                .collect(),
        })
        .collect()
}

/// The `text_delta` texts of an SSE body, in order.
fn text_deltas(sse: &[u8]) -> Vec<String> {
    decode_all(sse)
        .unwrap()
        .iter()
        .filter(|e| e.event() == Some("content_block_delta"))
        .filter_map(|e| {
            let v: Value = serde_json::from_str(e.data()).unwrap();
            v.pointer("/delta/text")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect()
}

async fn gateway(upstream: &StandIn, requests: bool) -> TestGateway {
    TestGateway::start(upstream, |cfg, _| {
        cfg.redaction.enabled = true;
        cfg.redaction.redact_requests = requests;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_cases_through_the_python_sdk_and_raw_sse() {
    let upstream = StandIn::start().await;
    let gw = gateway(&upstream, false).await;
    let token = gw.token("redaction-test", &[]);
    let redactor = Redactor::new();
    let cases = streaming_cases();
    assert!(cases.len() >= 4);
    for c in &cases {
        upstream.set_replay(Some(&c.input));
        let whole: String = text_deltas(c.input.as_bytes()).concat();
        let expected = redactor.redact_text(&whole).text;

        // The official SDK's stream helper reassembles a valid message.
        let out = sdk_call("stream", &gw.base_url, Some(&token), &[]).await;
        assert_eq!(out["ok"], true, "case {}: {out}", c.id);
        assert_eq!(out["text"], expected, "case {}", c.id);
        assert_eq!(
            out["message"]["content"][0]["text"], expected,
            "case {}",
            c.id
        );
        let events: Vec<&str> = out["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap())
            .collect();
        assert_eq!(events.first(), Some(&"message_start"));
        assert_eq!(events.last(), Some(&"message_stop"), "case {}", c.id);

        // Raw bytes: no delta carries the value or ends with a fragment of it.
        let res = reqwest::Client::new()
            .post(format!("{}/v1/messages", gw.base_url))
            .bearer_auth(&token)
            .header("anthropic-version", "2023-06-01")
            .json(&serde_json::json!({
                "model": "claude-fixture", "max_tokens": 64, "stream": true,
                "messages": [{"role": "user", "content": "replay"}],
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let body = res.bytes().await.unwrap();
        let deltas = text_deltas(&body);
        assert_eq!(deltas.concat(), expected, "case {}", c.id);
        for d in &deltas {
            for v in &c.values {
                assert!(!d.contains(v.as_str()), "case {}: value in a delta", c.id);
                for n in 4..v.len() {
                    if v.is_char_boundary(n) {
                        assert!(
                            !d.ends_with(&v[..n]),
                            "case {}: a delta ends with a {n}-byte fragment of the value",
                            c.id
                        );
                    }
                }
            }
        }
    }
    upstream.set_replay(None);
    // Findings (type, count, path — never the value) are on the response records.
    let records = gw.records(2 * cases.len()).await;
    let with_findings: Vec<_> = records
        .iter()
        .filter_map(|r| r.response.as_ref())
        .filter(|r| !r.findings.is_empty())
        .collect();
    assert_eq!(with_findings.len(), 2 * cases.len());
    for r in with_findings {
        assert_eq!(r.findings[0].path, "response/content/0/text");
        let dump = serde_json::to_string(&r.findings).unwrap();
        for c in &cases {
            for v in &c.values {
                assert!(!dump.contains(v.as_str()));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_responses_and_prompts() {
    let upstream = StandIn::start().await;
    let prompt = "my card is 4111 1111 1111 1111 and mail dana.lee@example.com";
    // Responses only: the model sees the prompt, the caller gets it masked back.
    let gw = gateway(&upstream, false).await;
    let token = gw.token("redaction-test", &[]);
    let out = sdk_call(
        "create",
        &gw.base_url,
        Some(&token),
        &[("SG_PROMPT", prompt)],
    )
    .await;
    assert_eq!(out["ok"], true, "{out}");
    let text = out["text"].as_str().unwrap();
    assert!(
        text.ends_with("my card is [REDACTED:CREDIT_CARD] and mail [REDACTED:EMAIL_ADDRESS]"),
        "{text}"
    );
    let sent = upstream.received().last().unwrap().json();
    assert_eq!(sent["messages"][0]["content"], prompt);
    drop(gw);

    // With request masking the model never sees the values.
    let gw = gateway(&upstream, true).await;
    let token = gw.token("redaction-test", &[]);
    let out = sdk_call(
        "stream",
        &gw.base_url,
        Some(&token),
        &[
            ("SG_PROMPT", prompt),
            ("SG_SYSTEM", "reply to 987-65-4321, SSN"),
        ],
    )
    .await;
    assert_eq!(out["ok"], true, "{out}");
    let sent = upstream.received().last().unwrap().json();
    assert_eq!(
        sent["messages"][0]["content"],
        "my card is [REDACTED:CREDIT_CARD] and mail [REDACTED:EMAIL_ADDRESS]"
    );
    assert_eq!(
        sent["system"], "reply to 987-65-4321, SSN",
        "no SSN context before the value"
    );
    let rec = &gw.records(1).await[0];
    let paths: Vec<&str> = rec
        .response
        .as_ref()
        .unwrap()
        .findings
        .iter()
        .map(|f| f.path.as_str())
        .collect();
    assert!(paths.contains(&"request/messages/0/content"), "{paths:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_ends_an_uninspectable_stream_with_an_error_event() {
    let upstream = StandIn::start().await;
    let gw = gateway(&upstream, false).await;
    let token = gw.token("redaction-test", &[]);
    let transcript = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_x\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"m\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"card 4111 1111\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"mystery_delta\",\"blob\":\"1111 1111\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: message_stop\n",
        "data: {\"type\":\"message_stop\"}\n\n",
    );
    upstream.set_replay(Some(transcript));
    let out = sdk_call("stream", &gw.base_url, Some(&token), &[]).await;
    assert_eq!(out["ok"], false, "{out}");
    let events: Vec<&str> = out["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(events.last(), Some(&"error"), "{events:?}");
    assert!(!events.contains(&"message_stop"));
    assert!(
        !out.to_string().contains("4111"),
        "held digits were never released: {out}"
    );
}
