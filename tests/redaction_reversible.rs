//! Reversible request redaction through the HTTP stack: the stand-in (the
//! model) receives only tokens, the caller — the official Python SDK, JSON and
//! streamed — gets its own values back; with the Redis vault a token from
//! turn 1 is restored in turn 2, for the same principal only.
#![cfg(feature = "sqlite")]

mod support;

use skillgate::redaction::RequestRedaction;
use support::gateway::TestGateway;
use support::python::sdk_call;
use support::stand_in::{StandIn, reply_text_for};

const PROMPT: &str = "mail dana.lee@example.com about card 4111 1111 1111 1111";

/// The tokens (`[TYPE:tok:<hex>]`) in `text`.
fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices('[') {
        let Some(len) = text[i..].find(']') else {
            continue;
        };
        let t = &text[i..=i + len];
        let Some((ty, tag)) = t[1..t.len() - 1].split_once(":tok:") else {
            continue;
        };
        if !ty.is_empty()
            && ty.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
            && tag.len() == 16
            && tag
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            out.push(t.to_owned());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_sees_tokens_caller_gets_values() {
    let upstream = StandIn::start().await;
    let gw = TestGateway::start(&upstream, |cfg, _| {
        cfg.redaction.enabled = true;
        cfg.redaction.request = RequestRedaction::Reversible;
    })
    .await;
    let token = gw.token("reversible-test", &[]);
    for mode in ["create", "stream"] {
        let out = sdk_call(mode, &gw.base_url, Some(&token), &[("SG_PROMPT", PROMPT)]).await;
        assert_eq!(out["ok"], true, "{out}");
        // The caller reads its own values.
        assert_eq!(out["text"], reply_text_for(PROMPT), "{mode}: {out}");
        // The model saw tokens only.
        let sent = upstream.received().last().unwrap().json();
        let seen = sent["messages"][0]["content"].as_str().unwrap().to_owned();
        assert!(
            !seen.contains("dana.lee") && !seen.contains("4111"),
            "{seen}"
        );
        let toks = tokens(&seen);
        assert_eq!(toks.len(), 2, "{seen}");
        assert!(toks[0].starts_with("[EMAIL_ADDRESS:tok:"), "{toks:?}");
        assert!(toks[1].starts_with("[CREDIT_CARD:tok:"), "{toks:?}");
    }

    // A token this request did not issue passes unchanged.
    let foreign = "[EMAIL_ADDRESS:tok:0123456789abcdef]";
    let prompt = format!("echo {foreign}");
    let out = sdk_call(
        "stream",
        &gw.base_url,
        Some(&token),
        &[("SG_PROMPT", &prompt)],
    )
    .await;
    assert_eq!(out["text"], reply_text_for(&prompt), "{out}");
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_vault_restores_a_token_of_an_earlier_turn() {
    let upstream = StandIn::start().await;
    let prefix = format!("skillgate-test:vault:{}:", uuid::Uuid::now_v7());
    let gw = TestGateway::start(&upstream, |cfg, _| {
        cfg.redaction.enabled = true;
        cfg.redaction.request = RequestRedaction::Reversible;
        cfg.redaction.vault = skillgate::redaction::VaultKind::Redis;
        cfg.redaction.vault_redis_url = Some("redis://127.0.0.1:6379".into());
        cfg.redaction.vault_key_prefix = Some(prefix.clone());
        cfg.redaction.vault_ttl_secs = Some(60);
    })
    .await;
    let alice = gw.token("alice", &[]);

    // Turn 1: the value is tokenised.
    let out = sdk_call(
        "create",
        &gw.base_url,
        Some(&alice),
        &[("SG_PROMPT", "mail dana.lee@example.com")],
    )
    .await;
    assert_eq!(
        out["text"],
        reply_text_for("mail dana.lee@example.com"),
        "{out}"
    );
    let sent = upstream.received().last().unwrap().json();
    let toks = tokens(sent["messages"][0]["content"].as_str().unwrap());
    assert_eq!(toks.len(), 1, "{sent}");
    let tok = &toks[0];

    // Turn 2 carries only the token (e.g. a caller that kept the model's
    // view of the history): the value comes back from Redis.
    let prompt = format!("and again {tok}");
    let out = sdk_call(
        "stream",
        &gw.base_url,
        Some(&alice),
        &[("SG_PROMPT", &prompt)],
    )
    .await;
    assert_eq!(
        out["text"],
        reply_text_for("and again dana.lee@example.com"),
        "{out}"
    );
    let sent = upstream.received().last().unwrap().json();
    assert_eq!(sent["messages"][0]["content"], prompt.as_str());

    // Another principal with the same token gets the token, not the value.
    let mallory = gw.token("mallory", &[]);
    let out = sdk_call(
        "stream",
        &gw.base_url,
        Some(&mallory),
        &[("SG_PROMPT", &prompt)],
    )
    .await;
    assert_eq!(out["text"], reply_text_for(&prompt), "{out}");

    // The entry lives in Redis under the prefix, with a TTL.
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let ttl: i64 = redis::cmd("TTL")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((1..=60).contains(&ttl), "{ttl}");
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .unwrap();
}
