//! Policy evaluation speed: a 100-rule policy, keyword scan included, over a
//! 100 KiB prompt (issue target: ≤ 50 µs median). Results: docs/benchmarks.md.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use skillgate::identity::Principal;
use skillgate::policy::{PolicyEngine, PolicyInput, RulesPolicy};
use skillgate::wire::messages::MessagesRequest;

fn hundred_rules() -> String {
    let mut s = String::new();
    for i in 0..40 {
        s.push_str(&format!(
            "[[rule]]\nid = \"kw-{i}\"\neffect = \"require_approval\"\nmatch = {{ keywords = [\"restricted term {i}\", \"codename-{i}\"], patterns = ['\\bproject\\s+zeta{i}\\b'] }}\n"
        ));
    }
    for i in 0..30 {
        s.push_str(&format!(
            "[[rule]]\nid = \"model-{i}\"\neffect = \"deny\"\nmatch = {{ groups = \"team-{i}\", models = [\"claude-opus-*\", \"claude-3-{i}*\"] }}\n"
        ));
    }
    for i in 0..29 {
        s.push_str(&format!(
            "[[rule]]\nid = \"allow-{i}\"\neffect = \"allow\"\nmatch = {{ groups = [\"team-{i}\", \"ci\"], paths = \"/v1/messages\", time = {{ days = [\"mon\",\"tue\",\"wed\",\"thu\",\"fri\"], hours = \"00:00-23:59\", time_zone = \"Europe/Berlin\" }} }}\n"
        ));
    }
    s.push_str("[[rule]]\nid = \"big\"\neffect = \"deny\"\nmatch = { max_tokens_above = 64000, tools = [\"shell*\"] }\n");
    s
}

/// The same 100 rules as Cedar policies and a context file.
#[cfg(feature = "cedar")]
fn hundred_cedar_policies() -> (String, String) {
    let (mut p, mut c) = (String::new(), String::new());
    for i in 0..40 {
        c.push_str(&format!(
            "[keywords.kw-{i}]\nkeywords = [\"restricted term {i}\", \"codename-{i}\"]\npatterns = ['\\bproject\\s+zeta{i}\\b']\n"
        ));
        p.push_str(&format!(
            "@id(\"kw-{i}\")\n@effect(\"require_approval\")\npermit(principal, action, resource) when {{ context.keywords.contains(\"kw-{i}\") }};\n"
        ));
    }
    for i in 0..30 {
        p.push_str(&format!(
            "@id(\"model-{i}\")\nforbid(principal in Skillgate::Group::\"team-{i}\", action, resource is Skillgate::Model) when {{ resource.id like \"claude-opus-*\" || resource.id like \"claude-3-{i}*\" }};\n"
        ));
    }
    for i in 0..29 {
        p.push_str(&format!(
            "@id(\"allow-{i}\")\n@time_zone(\"Europe/Berlin\")\npermit(principal, action == Skillgate::Action::\"messages\", resource) when {{ (principal in Skillgate::Group::\"team-{i}\" || principal in Skillgate::Group::\"ci\") && context.time.weekday <= 5 && context.time.minutes < 1439 }};\n"
        ));
    }
    c.push_str("[tool_sets.shell]\ntools = [\"shell*\"]\n");
    p.push_str("@id(\"big\")\nforbid(principal, action, resource) when { context has max_tokens && context.max_tokens > 64000 && context.tool_sets.contains(\"shell\") };\n");
    (p, c)
}

fn prompt_body(kib: usize) -> Vec<u8> {
    let sentence =
        "The quarterly report covers revenue, churn and the onboarding funnel in detail. ";
    let mut text = String::new();
    while text.len() < kib * 1024 {
        text.push_str(sentence);
    }
    serde_json::to_vec(&serde_json::json!({
        "model": "claude-sonnet-4-5", "max_tokens": 1024,
        "system": "You are a careful analyst.",
        "messages": [{"role": "user", "content": text}]
    }))
    .expect("json")
}

fn bench(c: &mut Criterion) {
    let policy = RulesPolicy::from_toml(&hundred_rules(), "bench.toml").expect("policy");
    assert_eq!(policy.rule_ids().count(), 100);
    let who = Principal::new("https://idp", "skill").with_groups(["ci"]);
    let body = prompt_body(100);
    let req = MessagesRequest::parse(&body).expect("parse");
    let now: jiff::Timestamp = "2026-12-01T10:00:00Z".parse().expect("ts");

    let mut g = c.benchmark_group("policy");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("evaluate_100_rules_100KiB_prompt", |b| {
        b.iter(|| {
            let input = PolicyInput::new("POST", "/v1/messages")
                .principal(&who)
                .request(&req)
                .body_bytes(body.len())
                .at(now);
            black_box(policy.evaluate(black_box(&input)))
        })
    });
    // The same prompt with one restricted term at its very end: the
    // all-matches search runs too.
    let mut hit_body: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let text = hit_body["messages"][0]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    hit_body["messages"][0]["content"] = serde_json::Value::from(text + " codename-17");
    let hit_req =
        MessagesRequest::parse(&serde_json::to_vec(&hit_body).expect("json")).expect("parse");
    g.bench_function("evaluate_100_rules_100KiB_prompt_with_keyword_hit", |b| {
        b.iter(|| {
            let input = PolicyInput::new("POST", "/v1/messages")
                .principal(&who)
                .request(&hit_req)
                .body_bytes(body.len())
                .at(now);
            black_box(policy.evaluate(black_box(&input)))
        })
    });
    #[cfg(feature = "cedar")]
    {
        let (policies, context) = hundred_cedar_policies();
        let cedar = skillgate::policy::cedar::CedarPolicy::builder()
            .context(context, "bench-context.toml")
            .build(&policies, "bench.cedar")
            .expect("cedar policy");
        assert_eq!(cedar.rule_ids().count(), 100);
        g.bench_function("cedar_evaluate_100_policies_100KiB_prompt", |b| {
            b.iter(|| {
                let input = PolicyInput::new("POST", "/v1/messages")
                    .principal(&who)
                    .request(&req)
                    .body_bytes(body.len())
                    .at(now);
                black_box(cedar.evaluate(black_box(&input)))
            })
        });
    }
    g.bench_function("parse_100KiB_messages_request", |b| {
        b.iter(|| black_box(MessagesRequest::parse(black_box(&body)).expect("parse")))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
