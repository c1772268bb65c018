//! Unit tests: the labelled cases of `tests/fixtures/pii_cases.jsonl`, every
//! detector, operators, streaming invariants (proptest).

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::Value;

use super::*;

const CASES: &str = include_str!("../../tests/fixtures/pii_cases.jsonl");

struct Case {
    id: String,
    kind: String,
    input: String,
    expected: Vec<(String, String)>,
}

fn cases() -> Vec<Case> {
    CASES
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            Case {
                id: v["id"].as_str().unwrap().into(),
                kind: v["kind"].as_str().unwrap().into(),
                input: v["input"].as_str().unwrap().into(),
                expected: v["expected_spans"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| {
                        (
                            s["type"].as_str().unwrap().into(),
                            s["text"].as_str().unwrap().into(),
                        )
                    })
                    .collect(),
            }
        })
        .collect()
}

/// The concatenated `text_delta` texts of an SSE transcript.
fn sse_text(sse: &str) -> String {
    let events = crate::wire::sse::decode_all(sse.as_bytes()).unwrap();
    let mut out = String::new();
    for e in events {
        if e.event() == Some("content_block_delta") {
            let v: Value = serde_json::from_str(e.data()).unwrap();
            if let Some(t) = v.pointer("/delta/text").and_then(Value::as_str) {
                out.push_str(t);
            }
        }
    }
    out
}

fn found(r: &Redactor, text: &str) -> Vec<(String, String)> {
    r.detect(text)
        .into_iter()
        .map(|s| (s.entity_type.to_string(), text[s.start..s.end].to_owned()))
        .collect()
}

/// Entity types the fixture accepts as equivalent labels.
fn same_type(expected: &str, got: &str) -> bool {
    expected == got || (expected == "US_SSN" && got == "US_ITIN")
}

#[test]
fn fixture_cases_detected_exactly() {
    let r = Redactor::new();
    let all = cases();
    assert!(all.len() >= 20);
    for c in &all {
        let text = if c.kind.starts_with("streaming_") {
            sse_text(&c.input)
        } else {
            c.input.clone()
        };
        let got = found(&r, &text);
        assert_eq!(got.len(), c.expected.len(), "case {}: got {got:?}", c.id);
        for ((et, ev), (gt, gv)) in c.expected.iter().zip(&got) {
            assert!(same_type(et, gt), "case {}: type {gt} for {et}", c.id);
            assert_eq!(ev, gv, "case {}", c.id);
        }
        // Redacted text holds none of the values, and redacting it again changes nothing.
        let out = r.redact_text(&text);
        for (_, v) in &c.expected {
            assert!(!out.text.contains(v.as_str()), "case {}", c.id);
        }
        assert_eq!(
            r.redact_text(&out.text).text,
            out.text,
            "case {} not idempotent",
            c.id
        );
    }
}

#[test]
fn fixture_streaming_cases_through_the_engine() {
    let r = Redactor::new();
    for c in cases().iter().filter(|c| c.kind.starts_with("streaming_")) {
        let events = crate::wire::sse::decode_all(c.input.as_bytes()).unwrap();
        let mut s = r.stream();
        let mut emitted = String::new();
        for e in events {
            if e.event() != Some("content_block_delta") {
                continue;
            }
            let v: Value = serde_json::from_str(e.data()).unwrap();
            let t = v.pointer("/delta/text").and_then(Value::as_str).unwrap();
            emitted.push_str(&s.push(t).unwrap());
            for (_, value) in &c.expected {
                assert_no_fragment(&emitted, value, &c.id);
            }
        }
        emitted.push_str(&s.finish().unwrap());
        assert_eq!(
            emitted,
            r.redact_text(&sse_text(&c.input)).text,
            "case {}",
            c.id
        );
    }
}

/// No prefix of `value` longer than 3 bytes at the very end of `emitted`,
/// and the value nowhere in it.
fn assert_no_fragment(emitted: &str, value: &str, id: &str) {
    assert!(!emitted.contains(value), "case {id}: value emitted");
    for n in 4..value.len() {
        if value.is_char_boundary(n) {
            assert!(
                !emitted.ends_with(&value[..n]),
                "case {id}: emitted ends with a fragment {n} bytes long"
            );
        }
    }
}

#[test]
fn request_field_case_masks_system() {
    let r = Redactor::new();
    let c = cases()
        .into_iter()
        .find(|c| c.kind == "request_field_coverage")
        .unwrap();
    let mut v: Value = serde_json::from_str(&c.input).unwrap();
    let mut f = Vec::new();
    json::redact_request(&r, &mut v, &mut f);
    assert_eq!(v["system"], "User email is [REDACTED:EMAIL_ADDRESS]");
    assert_eq!(f[0].path, "request/system");
}

fn one(r: &Redactor, text: &str) -> Option<(String, String)> {
    let f = found(r, text);
    assert!(f.len() <= 1, "{text:?}: {f:?}");
    f.into_iter().next()
}

#[test]
fn detectors_positive_and_negative() {
    let r = Redactor::new();
    let yes: &[(&str, &str, &str)] = &[
        (
            "card 5555-5555-5555-4444 ok",
            "CREDIT_CARD",
            "5555-5555-5555-4444",
        ),
        (
            "card 4111.1111.1111.1111 ok",
            "CREDIT_CARD",
            "4111.1111.1111.1111",
        ),
        (
            "card ４１１１１１１１１１１１１１１１ ok",
            "CREDIT_CARD",
            "４１１１１１１１１１１１１１１１",
        ),
        (
            "card 4111\u{200B}1111\u{200B}1111\u{200B}1111 ok",
            "CREDIT_CARD",
            "4111\u{200B}1111\u{200B}1111\u{200B}1111",
        ),
        ("ssn 123-45-6789.", "US_SSN", "123-45-6789"),
        (
            "mail a.b+tag@example.co.uk!",
            "EMAIL_ADDRESS",
            "a.b+tag@example.co.uk",
        ),
        (
            "mail josé@bücher.example ok",
            "EMAIL_ADDRESS",
            "josé@bücher.example",
        ),
        (
            "call +1 415 555 2671 now",
            "PHONE_NUMBER",
            "+1 415 555 2671",
        ),
        ("call (415) 555-2671 now", "PHONE_NUMBER", "(415) 555-2671"),
        (
            "call +44 20 7946 0958 now",
            "PHONE_NUMBER",
            "+44 20 7946 0958",
        ),
        (
            "iban DE89 3704 0044 0532 0130 00 thanks",
            "IBAN_CODE",
            "DE89 3704 0044 0532 0130 00",
        ),
        (
            "iban GB82WEST12345698765432.",
            "IBAN_CODE",
            "GB82WEST12345698765432",
        ),
        ("host 192.168.10.254 up", "IP_ADDRESS", "192.168.10.254"),
        (
            "host 2001:db8::8a2e:370:7334 up",
            "IP_ADDRESS",
            "2001:db8::8a2e:370:7334",
        ),
        (
            "key AKIAIOSFODNN7EXAMPLE used",
            "AWS_ACCESS_KEY",
            "AKIAIOSFODNN7EXAMPLE",
        ),
        (
            // All letters: no trigger byte in the whole text.
            "key AKIAQWERTYUIOPASDFGH used",
            "AWS_ACCESS_KEY",
            "AKIAQWERTYUIOPASDFGH",
        ),
        (
            "t ghp_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ x",
            "GITHUB_TOKEN",
            "ghp_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ",
        ),
        (
            "t ghp_0123456789abcdefghijABCDEFGHIJ012345 x",
            "GITHUB_TOKEN",
            "ghp_0123456789abcdefghijABCDEFGHIJ012345",
        ),
        (
            "t xoxb-1234567890-abcdefghij x",
            "SLACK_TOKEN",
            "xoxb-1234567890-abcdefghij",
        ),
        (
            "k sk-proj-abcDEF0123456789ghijKLMN x",
            "OPENAI_API_KEY",
            "sk-proj-abcDEF0123456789ghijKLMN",
        ),
        (
            "db postgres://app:s3cr3tPass@db.internal/x",
            "URL_CREDENTIALS",
            "s3cr3tPass",
        ),
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlLXZhbHVl end",
            "JWT",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlLXZhbHVl",
        ),
        (
            "password = 'Xy7kQ2mPz9LwR4tB'",
            "GENERIC_SECRET",
            "Xy7kQ2mPz9LwR4tB",
        ),
        (
            "export ANTHROPIC_API_KEY=sk-ant-api03-abcdefghijklmnop0123456789ABCD\n",
            "ANTHROPIC_API_KEY",
            "sk-ant-api03-abcdefghijklmnop0123456789ABCD",
        ),
    ];
    for (text, ty, value) in yes {
        let got = one(&r, text);
        assert_eq!(
            got,
            Some(((*ty).to_owned(), (*value).to_owned())),
            "{text:?}"
        );
    }
    let pem =
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----";
    assert_eq!(
        one(&r, &format!("key:\n{pem}\n")),
        Some(("PRIVATE_KEY".into(), pem.into()))
    );
    let escaped = pem.replace('\n', "\\n");
    let json_text = format!("{{\"k\":\"{escaped}\"}}");
    let out = r.redact_json_text(&json_text);
    assert_eq!(out.text, "{\"k\":\"[REDACTED:PRIVATE_KEY]\"}");
    let no: &[&str] = &[
        "version 1.2.3 released 2024-05-01",
        "order 4111111111111112 (fails Luhn)",
        "ssn 000-12-3456 and 666-12-3456 and 123-00-4567",
        "a 123456789 alone",
        "std::fmt::Debug and a::b",
        "uuid 123e4567-e89b-12d3-a456-426614174000",
        "time 12:30:45 on 12/29",
        "not@valid and @handle",
        "password = 'correcthorsebatterystaple'",
        "token: [REDACTED_API_KEY]",
        "iban DE89370400440532013001",
        "ip 999.1.1.1",
    ];
    for text in no {
        assert_eq!(found(&r, text), vec![], "{text:?}");
    }
}

#[test]
fn operators() {
    let r = Redactor::builder()
        .operator("CREDIT_CARD", Operator::Mask { keep_last: 4 })
        .operator("EMAIL_ADDRESS", Operator::Hash)
        .operator("US_SSN", Operator::Token)
        .hmac_key(b"deployment key".to_vec())
        .build()
        .unwrap();
    let out = r.redact_text("4111-1111-1111-1111 a@example.com 123-45-6789");
    let parts: Vec<&str> = out.text.split(' ').collect();
    assert_eq!(parts[0], "****-****-****-1111");
    assert!(
        parts[1].starts_with("[EMAIL_ADDRESS:hmac:")
            && parts[1].len() == "[EMAIL_ADDRESS:hmac:]".len() + 16
    );
    assert!(parts[2].starts_with("[US_SSN:tok:"));
    // Stable for a key, different for another key.
    assert_eq!(r.redact_text("a@example.com").text, parts[1]);
    let other = Redactor::builder()
        .operator("EMAIL_ADDRESS", Operator::Hash)
        .hmac_key(b"k2".to_vec())
        .build()
        .unwrap();
    assert_ne!(other.redact_text("a@example.com").text, parts[1]);
    // Reversible tokens, and every output is left alone.
    assert_eq!(
        r.vault().restore(&out.text).split(' ').nth(2),
        Some("123-45-6789")
    );
    assert_eq!(r.redact_text(&out.text).text, out.text);
    assert_eq!(
        out.findings,
        BTreeMap::from([
            ("CREDIT_CARD".into(), 1),
            ("EMAIL_ADDRESS".into(), 1),
            ("US_SSN".into(), 1)
        ])
    );
}

#[test]
fn configuration_errors_are_clear() {
    assert!(matches!(
        Redactor::builder().entity_types(["NOPE"]).build(),
        Err(RedactionError::Config(_))
    ));
    assert!(matches!(
        Redactor::builder()
            .custom_pattern(CustomPattern::new("EMP", "("))
            .build(),
        Err(RedactionError::Config(_))
    ));
    assert!(matches!(
        Redactor::builder()
            .custom_pattern(CustomPattern::new("bad type", "x"))
            .build(),
        Err(RedactionError::Config(_))
    ));
    let r = Redactor::builder()
        .entity_types(["EMAIL_ADDRESS"])
        .custom_pattern(CustomPattern::new("EMPLOYEE_ID", "EMP-[0-9]{6}"))
        .build()
        .unwrap();
    let out = r.redact_text("EMP-123456 a@example.com 4111 1111 1111 1111");
    assert_eq!(
        out.text,
        "[REDACTED:EMPLOYEE_ID] [REDACTED:EMAIL_ADDRESS] 4111 1111 1111 1111"
    );
}

#[test]
fn hold_back_is_bounded() {
    let r = Redactor::builder().max_hold_bytes(1024).build().unwrap();
    // A private key block that never ends stays held until the cap.
    let mut s = r.stream();
    assert_eq!(
        s.push("key: -----BEGIN PRIVATE KEY-----\n").unwrap(),
        "key: "
    );
    let err = (0..100).find_map(|_| s.push(&"a".repeat(64)).err());
    assert_eq!(err, Some(RedactionError::HoldOverflow(1024)));
    // A run of letters is held only while it could still be an e-mail
    // local part (64 characters) or the name before a secret keyword (64
    // characters, then e.g. `auth`).
    let mut s = r.stream();
    let mut out = String::new();
    for _ in 0..100 {
        out.push_str(&s.push(&"a".repeat(64)).unwrap());
    }
    assert!(s.held_bytes() <= 64 + 16, "{}", s.held_bytes());
    out.push_str(&s.finish().unwrap());
    assert_eq!(out, "a".repeat(6400));
    // Ordinary prose is released word by word.
    let mut s = r.stream();
    let out = s.push("hello there general kenobi").unwrap();
    assert_eq!(out, "hello there general ");
}

/// Texts mixing every detector with prose and near misses.
fn sample_texts() -> Vec<String> {
    let mut v: Vec<String> = cases()
        .iter()
        .map(|c| {
            if c.kind.starts_with("streaming_") {
                sse_text(&c.input)
            } else {
                c.input.clone()
            }
        })
        .collect();
    v.push(
        "Pay 4111 1111 1111 1111 or 3782 822463 10005; SSN: 987-65-4321, 123-45-6789. \
         Mail dana.lee@example.com, bob＠example.org; call +1 415 555 2671 or 020 7946 0958. \
         IBAN DE89 3704 0044 0532 0130 00, host 10.0.0.1 and fe80::1:2:3. \
         key sk-ant-api03-abcdefghijklmnop0123456789ABCD AKIAIOSFODNN7EXAMPLE \
         ghp_0123456789abcdefghijABCDEFGHIJ012345 xoxb-1234567890-abcdefghij \
         https://u:pa55w0rdX@h.example/ eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlLXZhbHVl \
         api_key=\"Q7mT2xK9pL4wR8vN3cB6hJ1yF5dS0gZ2aE7u\" v1.2.3 12:30 [REDACTED:US_SSN]"
            .into(),
    );
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Streamed output equals whole-text output for any split points, and no
    /// emitted prefix ever ends with a fragment of a masked value.
    #[test]
    fn chunk_split_invariance(idx in 0usize..32, cuts in proptest::collection::vec(0usize..400, 0..24)) {
        let r = Redactor::new();
        let texts = sample_texts();
        let text = &texts[idx % texts.len()];
        let whole = r.redact_text(text);
        let masked: Vec<String> = r.detect(text).iter().map(|s| text[s.start..s.end].to_owned()).collect();
        let mut points: Vec<usize> = cuts.into_iter().map(|c| c % (text.len() + 1)).filter(|&c| text.is_char_boundary(c)).collect();
        points.sort_unstable();
        points.dedup();
        let mut s = r.stream();
        let mut emitted = String::new();
        let mut at = 0;
        for p in points.into_iter().chain([text.len()]) {
            emitted.push_str(&s.push(&text[at..p]).unwrap());
            at = p;
            for m in &masked {
                prop_assert!(!emitted.contains(m.as_str()));
                for n in 1..m.len() {
                    if m.is_char_boundary(n) {
                        // A fragment at the end of the emitted text must be
                        // ordinary text there in the whole output too.
                        if emitted.ends_with(&m[..n]) {
                            prop_assert!(whole.text.starts_with(&emitted));
                        }
                    }
                }
            }
            prop_assert!(whole.text.starts_with(&emitted), "emitted text diverges from the whole-text result");
        }
        emitted.push_str(&s.finish().unwrap());
        prop_assert_eq!(&emitted, &whole.text);
        prop_assert_eq!(s.findings(), &whole.findings);
    }

    /// The same for JSON text (tool inputs).
    #[test]
    fn json_chunk_split_invariance(idx in 0usize..32, cuts in proptest::collection::vec(0usize..600, 0..24)) {
        let r = Redactor::new();
        let texts = sample_texts();
        let text = serde_json::to_string(&serde_json::json!({"note": texts[idx % texts.len()], "api_key": "Q7mT2xK9pL4wR8vN3cB6hJ1yF5dS0gZ2aE7u"})).unwrap();
        let whole = r.redact_json_text(&text);
        prop_assert!(serde_json::from_str::<Value>(&whole.text).is_ok());
        let mut points: Vec<usize> = cuts.into_iter().map(|c| c % (text.len() + 1)).filter(|&c| text.is_char_boundary(c)).collect();
        points.sort_unstable();
        points.dedup();
        let mut s = r.stream_json();
        let mut emitted = String::new();
        let mut at = 0;
        for p in points.into_iter().chain([text.len()]) {
            emitted.push_str(&s.push(&text[at..p]).unwrap());
            at = p;
            prop_assert!(whole.text.starts_with(&emitted));
        }
        emitted.push_str(&s.finish().unwrap());
        prop_assert_eq!(emitted, whole.text);
    }

    /// Redacting redacted text changes nothing, whatever the operator.
    #[test]
    fn idempotence(idx in 0usize..32, op in 0usize..4) {
        let op = [Operator::Replace, Operator::Mask { keep_last: 4 }, Operator::Hash, Operator::Token][op].clone();
        let r = Redactor::builder().default_operator(op).build().unwrap();
        let texts = sample_texts();
        let once = r.redact_text(&texts[idx % texts.len()]);
        let twice = r.redact_text(&once.text);
        prop_assert_eq!(&twice.text, &once.text);
        prop_assert!(twice.findings.is_empty());
    }

    /// The IBAN check (which reduces mod 97 only now and then) agrees with
    /// ISO 7064 spelled out: letters as two digits, the first four
    /// characters moved to the end, the whole number mod 97 = 1. Check
    /// digits are drawn at random, so about one in 97 candidates is valid;
    /// the valid ones are also built on purpose.
    #[test]
    fn iban_check_matches_iso_7064(
        country in 0usize..5,
        body in "[0-9A-Z]{27}",
        check in 0u32..100,
        fix in any::<bool>(),
        spaced in any::<bool>(),
    ) {
        let (cc, len) = [("DE", 22), ("GB", 22), ("FR", 27), ("NL", 18), ("MT", 31)][country];
        let bban = &body[..len - 4];
        let reference = |check: u32| {
            let moved = format!("{bban}{cc}{check:02}");
            moved.bytes().fold(0u32, |rem, b| match b {
                b'0'..=b'9' => (rem * 10 + u32::from(b - b'0')) % 97,
                _ => (rem * 100 + u32::from(b - b'A') + 10) % 97,
            })
        };
        // 98 minus the residue with check digits 00 makes a valid IBAN.
        let check = if fix { 98 - reference(0) } else { check };
        let iban = format!("{cc}{check:02}{bban}");
        let text = if spaced {
            iban.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(" ")
        } else {
            iban.clone()
        };
        let valid = reference(check) == 1;
        prop_assert_eq!(
            super::detect::validators::iban(&text).is_some(),
            valid,
            "{}", text
        );
        if fix {
            prop_assert!(valid);
        }
    }

    /// The vectorised trigger search finds exactly the first byte a plain
    /// scan finds, wherever it sits relative to the 64-byte chunks.
    #[test]
    fn first_trigger_equals_plain_scan(
        hay in proptest::collection::vec(prop_oneof![Just(b'a'), Just(b' '), any::<u8>()], 0..300),
    ) {
        let plain = hay.iter().position(|&b| {
            b.is_ascii_digit() || matches!(b, b':' | b'@' | b'=' | b'-' | b'_') || b >= 0x80
        });
        prop_assert_eq!(super::detect::prefilter::first_trigger(&hay), plain);
    }

    /// The line prefilter keeps exactly the lines a plain reading keeps
    /// (those holding a trigger byte or a key prefix without one), merged
    /// into maximal runs: the prefix search that only reads the gaps
    /// between trigger lines misses none.
    #[test]
    fn trigger_lines_equal_plain_lines(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("a "), Just("\n"), Just("AKIA"), Just("ASIA"), Just("ACCA"), Just("eyJ"),
                Just("IA"), Just("7"), Just("-"), Just("xyz"), Just("é"),
            ],
            0..60,
        ),
    ) {
        let text: String = parts.concat();
        let hay = text.as_bytes();
        let mut plain: Vec<(usize, usize)> = Vec::new();
        let mut start = 0;
        for line in text.split('\n') {
            let end = start + line.len();
            let keep = line.bytes().any(|b| {
                b.is_ascii_digit() || matches!(b, b':' | b'@' | b'=' | b'-' | b'_') || b >= 0x80
            }) || ["AKIA", "ASIA", "ABIA", "ACCA", "eyJ"].iter().any(|p| line.contains(p));
            if keep {
                match plain.last_mut() {
                    Some(last) if last.1 + 1 >= start => last.1 = end,
                    _ => plain.push((start, end)),
                }
            }
            start = end + 1;
        }
        prop_assert_eq!(super::detect::prefilter::trigger_lines(hay), plain);
    }

    /// Random text never panics and stream = whole.
    #[test]
    fn random_text(text in "[ a-zA-Z0-9@.:=_\\-+()\n＠٤]{0,200}", cut in 0usize..200) {
        let r = Redactor::new();
        let whole = r.redact_text(&text);
        let mut cut = cut.min(text.len());
        while !text.is_char_boundary(cut) { cut -= 1; }
        let mut s = r.stream();
        let mut out = s.push(&text[..cut]).unwrap();
        out.push_str(&s.push(&text[cut..]).unwrap());
        out.push_str(&s.finish().unwrap());
        prop_assert_eq!(out, whole.text);
    }
}

/// With a raw-body key, the audit record keeps the response as upstream sent
/// it (sealed) while the caller and the plain record get the masked one —
/// for a JSON message and for an event stream.
#[cfg(feature = "sqlite")]
#[tokio::test]
async fn raw_upstream_response_is_sealed_in_the_audit_record() {
    use crate::audit::{AuditHandle, AuditLayer, AuditStore, BodyKey, SqliteStore};
    use crate::gateway::BufferLayer;
    use http::{Request, Response};
    use http_body_util::BodyExt;
    use std::convert::Infallible;
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    const SSN: &str = "078-05-1120";
    let json = format!(
        r#"{{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{{"type":"text","text":"SSN {SSN} ok"}}],"stop_reason":"end_turn","stop_sequence":null,"usage":{{"input_tokens":3,"output_tokens":5}}}}"#
    );
    let sse = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_2\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n\
         event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
         event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"SSN 078-05\"}}\n\n\
         event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"-1120 ok\"}}\n\n\
         event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
         event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":5}}\n\n\
         event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
        .to_owned();
    for (ctype, upstream) in [("application/json", json), ("text/event-stream", sse)] {
        let store = Arc::new(SqliteStore::in_memory().await.unwrap());
        let key = BodyKey::from_bytes([9u8; 32]);
        let body = upstream.clone();
        let svc = ServiceBuilder::new()
            .layer(AuditLayer::from_arc(store.clone()).raw_body_key(key.clone()))
            .layer(BufferLayer::new(1 << 20))
            .layer(RedactionLayer::new(Redactor::new()))
            .service(service_fn(move |req: Request<crate::body::Body>| {
                let body = body.clone();
                async move {
                    let handle = req.extensions().get::<AuditHandle>().unwrap().clone();
                    handle
                        .commit(
                            req.extensions()
                                .get::<crate::wire::messages::RequestBody>()
                                .unwrap(),
                        )
                        .await
                        .unwrap();
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", ctype)
                            .body(crate::body::Body::from(body))
                            .unwrap(),
                    )
                }
            }));
        let res = svc
            .oneshot(
                Request::post("/v1/messages")
                    .header("content-type", "application/json")
                    .body(crate::body::Body::from(
                        r#"{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#,
                    ))
                    .unwrap(),
            )
            .await
            .unwrap();
        let id = res.extensions().get::<AuditHandle>().unwrap().id();
        let delivered = res.into_body().collect().await.unwrap().to_bytes();
        let delivered = String::from_utf8_lossy(&delivered).into_owned();
        assert!(
            !delivered.contains(SSN) && !delivered.contains("078-05"),
            "{ctype}: {delivered}"
        );
        assert!(delivered.contains("REDACTED"), "{ctype}: {delivered}");
        let mut rec = None;
        for _ in 0..200 {
            if let Some(r) = store.get(id).await.unwrap()
                && r.response.is_some()
            {
                rec = Some(r);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let resp = rec.expect("response record").response.unwrap();
        assert!(
            !String::from_utf8_lossy(&resp.body).contains(SSN),
            "{ctype}"
        );
        let sealed = resp.raw_body.as_ref().expect("raw response kept");
        assert!(!sealed.ciphertext.contains(SSN));
        let raw = key.open(id, "response", sealed).unwrap();
        assert_eq!(
            raw,
            upstream.as_bytes(),
            "{ctype}: raw copy is upstream's bytes"
        );
    }
}

/// Long runs before `@`, `://`, `::` or a secret keyword are scanned once,
/// not once per position (each case below took minutes when every position
/// of the run was a candidate start), and a value after such a run is still
/// found.
#[test]
fn long_runs_are_not_rescanned_and_values_after_them_are_found() {
    let r = Redactor::new();
    let run = "a".repeat(100_000);
    for text in [
        format!("{run}@"),
        format!("{run}@example"),
        format!("{run}://x"),
        format!("{run}::"),
        format!("{}@", "a.".repeat(50_000)),
        format!("{}::", "deadbeef".repeat(12_500)),
        format!("{run}_token is here"),
    ] {
        assert!(r.detect(&text).is_empty(), "{}…", &text[text.len() - 12..]);
    }
    let t = format!("{}.dana@example.com", "x".repeat(200));
    let found: Vec<&str> = r.detect(&t).iter().map(|s| &t[s.start..s.end]).collect();
    assert_eq!(found, ["dana@example.com"]);
    // Runs of scheme characters holding many possible starts (from the
    // differential review of the hand-written search: each start re-read
    // the rest of the run, 6.6 s for 200 KB of `1.` in a release build).
    for run in [
        "1.".repeat(100_000),
        "sk-".repeat(66_000),
        "2024-01-15-".repeat(18_000),
        "M10.5-3.2l12.3-4.5-6.7c".repeat(9_000),
        "de-ad-be-ef-00-11-".repeat(11_000),
    ] {
        let t = format!("{run} card 4111 1111 1111 1111");
        let found: Vec<&str> = r.detect(&t).iter().map(|s| &t[s.start..s.end]).collect();
        assert_eq!(
            found.last(),
            Some(&"4111 1111 1111 1111"),
            "{}…",
            &run[..24]
        );
    }
    let t = format!(
        "{}+https://user:hunter2hunter2@db.example/",
        "x".repeat(100)
    );
    let found: Vec<&str> = r.detect(&t).iter().map(|s| &t[s.start..s.end]).collect();
    assert_eq!(found, ["hunter2hunter2"]);
}

/// `pieces` pushed one by one through a new stream (`json`: a JSON stream),
/// then finished: the whole streamed output.
fn streamed(r: &Redactor, pieces: &[&str], json: bool) -> String {
    let mut s = if json { r.stream_json() } else { r.stream() };
    let mut out = String::new();
    for p in pieces {
        out.push_str(&s.push(p).unwrap());
    }
    out.push_str(&s.finish().unwrap());
    out
}

/// Findings of the adversarial review (2026-11-30): values wrapped in
/// placeholder-shaped text, IPv6 with an embedded IPv4 part, and runs of
/// key prefixes or secret assignments, which were searched to their end from
/// every prefix (quadratic: minutes for the sizes below).
#[test]
fn adversarial_review_findings_stay_fixed() {
    let r = Redactor::new();
    for (t, v) in [
        ("x [REDACTED_4111111111111111] y", "4111111111111111"),
        (
            "x [REDACTED:AKIAABCDEFGHIJKLMNOP] y",
            "AKIAABCDEFGHIJKLMNOP",
        ),
        (
            "x [REDACTED_ghp_abcdefghijklmnopqrstuvwxyz0123456789] y",
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        ),
        (
            "x [NOT_A_TYPE:tok:0123456789abcdef] 4111111111111111",
            "4111111111111111",
        ),
    ] {
        let out = r.redact_text(t).text;
        assert!(!out.contains(v), "{t:?} -> {out:?}");
        assert_eq!(streamed(&r, &[t], false), out);
    }
    // Our own placeholders stay as they are.
    for t in [
        "[REDACTED]",
        "[REDACTED:CREDIT_CARD]",
        "[US_SSN:hmac:0123456789abcdef]",
        "[EMAIL_ADDRESS:tok:0123456789abcdef]",
    ] {
        assert_eq!(r.redact_text(t).text, t);
    }
    for t in [
        "ip ::ffff:192.168.1.1 ok",
        "ip 64:ff9b::192.0.2.33 ok",
        "ip 2001:db8::192.168.0.1 ok",
    ] {
        assert_eq!(
            r.redact_text(t).text,
            "ip [REDACTED:IP_ADDRESS] ok",
            "{t:?}"
        );
    }
    for text in [
        "sk-".repeat(70_000),
        "eyJ".repeat(70_000),
        "ghp_".repeat(50_000),
        "token=".repeat(3_000),
        "1-".repeat(50_000),
        "AKIA".repeat(50_000),
    ] {
        let out = r.redact_text(&text);
        assert!(out.findings.is_empty(), "{:?}", out.findings);
    }
}

/// Typographic and confusable separators found by the adversarial review:
/// zero-width characters next to a separator, Unicode spaces and dashes,
/// fullwidth hyphen and full stop. Each value is masked whole, streamed or
/// not.
#[test]
fn unicode_separators_do_not_hide_values() {
    let r = Redactor::new();
    for (t, v) in [
        ("ssn 078\u{200B}-05-1120 x", "078\u{200B}-05-1120"),
        (
            "card 4111\u{200B} 1111 1111 1111 x",
            "4111\u{200B} 1111 1111 1111",
        ),
        (
            "card 4111\u{202F}1111\u{202F}1111\u{202F}1111 x",
            "4111\u{202F}1111\u{202F}1111\u{202F}1111",
        ),
        (
            "card 4111\u{2009}1111\u{2009}1111\u{2009}1111 x",
            "4111\u{2009}1111\u{2009}1111\u{2009}1111",
        ),
        (
            "card 4111\u{2013}1111\u{2013}1111\u{2013}1111 x",
            "4111\u{2013}1111\u{2013}1111\u{2013}1111",
        ),
        (
            "ssn 078\u{FF0D}05\u{FF0D}1120 x",
            "078\u{FF0D}05\u{FF0D}1120",
        ),
        (
            "ssn 078\u{2011}05\u{2011}1120 x",
            "078\u{2011}05\u{2011}1120",
        ),
        (
            "call (415)\u{202F}555\u{2011}2671 now",
            "(415)\u{202F}555\u{2011}2671",
        ),
        (
            "mail dana\u{FF0E}lee\u{FF20}example\u{FF0E}com x",
            "dana\u{FF0E}lee\u{FF20}example\u{FF0E}com",
        ),
    ] {
        let spans = r.detect(t);
        let found: Vec<&str> = spans.iter().map(|s| &t[s.start..s.end]).collect();
        assert_eq!(found, [v], "{t:?}");
        let whole = r.redact_text(t).text;
        let chars: Vec<String> = t.chars().map(String::from).collect();
        let pieces: Vec<&str> = chars.iter().map(String::as_str).collect();
        assert_eq!(streamed(&r, &pieces, false), whole, "{t:?}");
    }
    // Mixed kinds of separator are still not one card.
    assert!(r.detect("4111 1111\u{2013}1111.1111").is_empty());
}

/// JSON text (adversarial review): no value starts inside a `\uXXXX`
/// escape (the output stays valid JSON), the character an escape stands for
/// decides the boundary after it, and a streamed backslash run longer than
/// the kept context keeps its escape parity.
#[test]
fn json_escapes_stay_valid_and_streams_keep_escape_parity() {
    let r = Redactor::new();
    let stream_json = |pieces: &[&str]| streamed(&r, pieces, true);
    // U+4111 then twelve ones: no card in the decoded string.
    let input = r#"{"a":"\u4111111111111111 x"}"#;
    for out in [r.redact_json_text(input).text, stream_json(&[input])] {
        assert_eq!(out, input);
    }
    // serde_json writes control characters as \u00XX.
    let text =
        serde_json::json!({"a": "\u{10} 415 555 2671", "card": "4111 1111 1111 1111"}).to_string();
    let out = r.redact_json_text(&text).text;
    let v: Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(v["a"], "\u{10} [REDACTED:PHONE_NUMBER]");
    assert_eq!(v["card"], "[REDACTED:CREDIT_CARD]");
    assert_eq!(stream_json(&[&text[..9], &text[9..]]), out);
    // An escaped space before a card is a boundary; an escaped letter is not.
    let spaced = r#"{"a":"\u00204111111111111111"}"#;
    assert_eq!(
        r.redact_json_text(spaced).text,
        r#"{"a":"\u0020[REDACTED:CREDIT_CARD]"}"#
    );
    let glued = r#"{"a":"\u00414111111111111111"}"#;
    assert_eq!(r.redact_json_text(glued).text, glued);
    // 71 backslashes: the `n` is escaped (odd run), so the card after it
    // starts at a boundary — also when the run crosses the kept context.
    let first = format!(
        "{{\"a\":\"{}{}n4111111111111111",
        "x ".repeat(60),
        "\\".repeat(71)
    );
    let second = " end\"}";
    let whole = r.redact_json_text(&format!("{first}{second}")).text;
    assert!(!whole.contains("4111111111111111"), "{whole}");
    assert_eq!(stream_json(&[&first, second]), whole);
}

/// A tool input in a JSON response is also redacted value by value, so a
/// value behind a JSON escape (a quoted assignment in file content) is found
/// (adversarial review).
#[test]
fn tool_input_values_behind_json_escapes_are_masked_in_json_responses() {
    let r = Redactor::new();
    let mut msg = serde_json::json!({
        "type": "message",
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "write", "input": {
            "cfg": "api_key=\"Q7mT2xK9pL4wR8vN3cB6\"\n",
            "data": "export TOKEN=\"ghp_abcdefghijklmnopqrstuvwxyz0123456789\"",
            "to": "dana\u{0040}example.com"
        }}]
    });
    let mut findings = Vec::new();
    json::redact_message(&r, &mut msg, &mut findings, false).unwrap();
    let out = msg.to_string();
    for secret in ["Q7mT2xK9pL4wR8vN3cB6", "ghp_abcdefghij", "dana@example.com"] {
        assert!(!out.contains(secret), "{secret} in {out}");
    }
    assert_eq!(msg["content"][0]["name"], "write");
    assert_eq!(msg["content"][0]["id"], "toolu_1");
}

/// Adversarial review: the raw-body capture when the stream does not
/// end cleanly — the caller drops the body mid-stream (a value half sent by
/// upstream is held), or upstream fails mid-stream. Nothing panics, the plain
/// record holds no fragment of the value, and the raw copy is sealed.
#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_capture_when_the_stream_is_cut() {
    use crate::audit::{AuditHandle, AuditLayer, AuditStore, BodyKey, SqliteStore};
    use crate::gateway::BufferLayer;
    use bytes::Bytes;
    use futures_util::StreamExt;
    use http::{Request, Response};
    use http_body::Frame;
    use http_body_util::{BodyExt, StreamBody};
    use std::convert::Infallible;
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    let head = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_2\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n\
         event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
         event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hello SSN 078-05\"}}\n\n";
    // 0: caller drops mid-stream (upstream then stalls); 1: upstream errors.
    for scenario in 0..2 {
        let store = Arc::new(SqliteStore::in_memory().await.unwrap());
        let key = BodyKey::from_bytes([9u8; 32]);
        let svc = ServiceBuilder::new()
            .layer(AuditLayer::from_arc(store.clone()).raw_body_key(key.clone()))
            .layer(BufferLayer::new(1 << 20))
            .layer(RedactionLayer::new(Redactor::new()))
            .service(service_fn(
                move |req: Request<crate::body::Body>| async move {
                    let handle = req.extensions().get::<AuditHandle>().unwrap().clone();
                    handle
                        .commit(
                            req.extensions()
                                .get::<crate::wire::messages::RequestBody>()
                                .unwrap(),
                        )
                        .await
                        .unwrap();
                    let first: Result<Frame<Bytes>, crate::body::BoxError> =
                        Ok(Frame::data(Bytes::from_static(head.as_bytes())));
                    let body = if scenario == 0 {
                        crate::body::Body::new(StreamBody::new(
                            futures_util::stream::iter(vec![first])
                                .chain(futures_util::stream::pending()),
                        ))
                    } else {
                        let err: Result<Frame<Bytes>, crate::body::BoxError> =
                            Err("upstream reset".into());
                        crate::body::Body::new(StreamBody::new(futures_util::stream::iter(vec![
                            first, err,
                        ])))
                    };
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "text/event-stream")
                            .body(body)
                            .unwrap(),
                    )
                },
            ));
        let res = svc
            .oneshot(
                Request::post("/v1/messages")
                    .header("content-type", "application/json")
                    .body(crate::body::Body::from(
                        r#"{"model":"claude-sonnet-4-5","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
                    ))
                    .unwrap(),
            )
            .await
            .unwrap();
        let id = res.extensions().get::<AuditHandle>().unwrap().id();
        let mut body = res.into_body();
        let mut delivered = Vec::new();
        loop {
            let f = tokio::time::timeout(std::time::Duration::from_millis(300), body.frame()).await;
            match f {
                Ok(Some(Ok(fr))) => {
                    if let Ok(d) = fr.into_data() {
                        delivered.extend_from_slice(&d);
                    }
                }
                Ok(Some(Err(e))) => {
                    assert!(!e.to_string().contains("078-05"), "error: {e}");
                    break;
                }
                Ok(None) | Err(_) => break,
            }
        }
        drop(body); // scenario 0: the caller leaves mid-stream
        let delivered = String::from_utf8_lossy(&delivered).into_owned();
        assert!(
            !delivered.contains("078-05"),
            "scenario {scenario}: {delivered}"
        );
        let mut rec = None;
        for _ in 0..300 {
            if let Some(r) = store.get(id).await.unwrap()
                && r.response.is_some()
            {
                rec = Some(r);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let mut resp = rec.expect("response record").response.unwrap();
        let sealed = resp.raw_body.take();
        let plain = format!("{resp:?} {:?}", String::from_utf8_lossy(&resp.body));
        assert!(
            !plain.contains("078-05"),
            "scenario {scenario}: plain record {plain}"
        );
        let sealed = sealed.unwrap_or_else(|| panic!("scenario {scenario}: raw response not kept"));
        let raw = key.open(id, "response", &sealed).unwrap();
        assert_eq!(raw, head.as_bytes(), "scenario {scenario}");
    }
}

/// Findings reach metrics: a `metrics` counter per entity type and message
/// side, counted through the layer (issue: findings "go to the audit record
/// and to metrics").
#[test]
fn findings_are_counted_in_metrics() {
    use http::{Request, Response};
    use http_body_util::BodyExt;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use std::convert::Infallible;
    use tower::{Layer, ServiceExt, service_fn};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let body = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"SSN 078-05-1120 and 219-09-9999, card 4111 1111 1111 1111"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":5}}"#;
    metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let svc = RedactionLayer::new(Redactor::new()).layer(service_fn(
                move |_req: Request<crate::body::Body>| async move {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "application/json")
                            .body(crate::body::Body::from(body))
                            .unwrap(),
                    )
                },
            ));
            let res = svc
                .oneshot(
                    Request::post("/v1/messages")
                        .body(crate::body::Body::from("{}"))
                        .unwrap(),
                )
                .await
                .unwrap();
            let out = res.into_body().collect().await.unwrap().to_bytes();
            assert!(!String::from_utf8_lossy(&out).contains("078-05-1120"));
        });
    });
    let mut counts = std::collections::BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        assert_eq!(key.name(), FINDINGS_METRIC);
        let labels: BTreeMap<String, String> = key
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        assert_eq!(labels["path"], "response/content");
        if let DebugValue::Counter(n) = value {
            counts.insert(labels["entity_type"].clone(), n);
        }
    }
    assert_eq!(counts.get("US_SSN"), Some(&2));
    assert_eq!(counts.get("CREDIT_CARD"), Some(&1));
}

/// A value held back while it grows (a PEM block, then an e-mail local part
/// that turns out not to be one) resumes its liveness run across pushes: the
/// streamed output still equals the whole-text output, nothing of the key is
/// emitted before its mask, and what follows is released.
#[test]
fn held_values_resume_across_pushes() {
    let r = Redactor::new();
    let body: String = (0..200)
        .map(|i| format!("{:064}\n", i * 7919).replace('0', "Ab"))
        .collect();
    let text = format!(
        "key -----BEGIN PRIVATE KEY-----\n{body}-----END PRIVATE KEY----- then dana{} done and mail dana@example.com",
        "x".repeat(3000)
    );
    let whole = r.redact_text(&text).text;
    assert!(whole.contains("[REDACTED:PRIVATE_KEY]") && !whole.contains("BEGIN"));
    assert!(whole.contains("[REDACTED:EMAIL_ADDRESS]"));
    for step in [1usize, 7, 64, 1000] {
        let mut s = r.stream();
        let mut out = String::new();
        let mut at = 0;
        while at < text.len() {
            let end = (at + step).min(text.len());
            let emitted = s.push(&text[at..end]).unwrap();
            assert!(
                !emitted.contains("Ab"),
                "key text emitted early (step {step})"
            );
            out.push_str(&emitted);
            at = end;
        }
        out.push_str(&s.finish().unwrap());
        assert_eq!(out, whole, "step {step}");
    }
}

/// Streamed tool input is JSON text: a secret assignment inside a string
/// has escaped quotes (`api_key=\"…\"`, `{\"password\": \"…\"}`). The value
/// is masked in the stream as in the whole text, and the JSON stays valid.
#[test]
fn escaped_quotes_do_not_hide_assignments_in_streamed_tool_input() {
    let r = Redactor::new();
    let value = "Zq8wLm3Np7Rt2Vx9Ks4H";
    for json in [
        format!(r#"{{"content": "export API_KEY=\"{value}\"\nrun"}}"#),
        format!(r#"{{"config": "{{\"password\": \"{value}\"}}"}}"#),
    ] {
        let whole = r.redact_json_text(&json).text;
        assert!(!whole.contains(value), "{whole}");
        assert!(whole.contains("[REDACTED:GENERIC_SECRET]"), "{whole}");
        serde_json::from_str::<serde_json::Value>(&whole).expect("still JSON");
        let pieces: Vec<&str> = json
            .as_bytes()
            .chunks(3)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        assert_eq!(streamed(&r, &pieces, true), whole);
    }
    // Plain text written the same way (a shell line in a text block).
    let text = format!(r#"set TOKEN=\"{value}\" first"#);
    assert!(!r.redact_text(&text).text.contains(value));
}

/// Pushes `text` cut at `cuts`; after each push checks that the emitted
/// part of the input never ends strictly inside a value the whole-text scan
/// masks. Returns the streamed output.
fn stream_checked(r: &Redactor, text: &str, cuts: &[usize]) -> String {
    let spans = r.detect(text);
    let mut cuts: Vec<usize> = cuts
        .iter()
        .map(|&c| {
            let mut c = c.min(text.len());
            while !text.is_char_boundary(c) {
                c -= 1;
            }
            c
        })
        .collect();
    cuts.push(text.len());
    cuts.sort_unstable();
    cuts.dedup();
    let mut s = r.stream();
    let (mut out, mut at) = (String::new(), 0);
    for c in cuts {
        out.push_str(&s.push(&text[at..c]).unwrap());
        at = c;
        let consumed = c - s.held_bytes();
        for sp in &spans {
            assert!(
                !(sp.start < consumed && consumed < sp.end),
                "emitted prefix ends inside {}: {text:?}",
                sp.entity_type
            );
        }
    }
    out.push_str(&s.finish().unwrap());
    out
}

/// From the adversarial review of the resumed liveness run: a value
/// accepted from before the held start and ending far past it (a long
/// non-ASCII domain, URL password or custom pattern) left the resume point
/// behind the emitted text — an overflow panic in debug builds, and in
/// release builds the next value's beginning emitted before its mask.
#[test]
fn accepted_value_past_the_held_start_keeps_the_stream_safe() {
    let prose = "hello there and a few more words of prose ".repeat(5);
    let r = Redactor::new();
    let cases = [
        (
            format!("{prose}mail dana@{}.com__ rest", "é".repeat(40)),
            "__ rest",
            2,
        ),
        (
            format!("{prose}see https://u:{}@host.example/x now", "ä".repeat(40)),
            "@host",
            3,
        ),
    ];
    for (t, at, off) in &cases {
        let cut = t.find(at).unwrap() + off;
        assert_eq!(
            stream_checked(&r, t, &[cut]),
            r.redact_text(t).text,
            "{t:?}"
        );
    }
    let t = format!(
        "hello -----BEGIN PRIVATE KEY-----\nMIIEvAbc123+/=\nAbcDef\n-----END PRIVATE KEY-----dana@example.com{}dana@example.com",
        "é".repeat(25)
    );
    assert_eq!(stream_checked(&r, &t, &[]), r.redact_text(&t).text);
    let custom = Redactor::builder()
        .custom_pattern(CustomPattern::new("TICKET", r"T[a-z]+@[a-z]+"))
        .build()
        .unwrap();
    let t = format!("{prose}ref T{}@corp.xy rest", "a".repeat(64));
    let cut = t.find(" rest").unwrap();
    assert_eq!(
        stream_checked(&custom, &t, &[cut]),
        custom.redact_text(&t).text
    );
    // The next value is still held until its mask.
    let pieces = [
        format!("{prose}mail dana@{}.com__", "é".repeat(40)),
        " x bob@exa".to_string(),
        "mple.com now".to_string(),
    ];
    let whole = r.redact_text(&pieces.concat()).text;
    assert!(whole.ends_with("[REDACTED:EMAIL_ADDRESS] now"));
    let mut s = r.stream();
    let mut out = String::new();
    for p in &pieces {
        let e = s.push(p).unwrap();
        assert!(!e.contains("bob@"), "emitted early: {e:?}");
        out.push_str(&e);
    }
    out.push_str(&s.finish().unwrap());
    assert_eq!(out, whole);
}
