//! Scenario tests for the rules engine: one per selector, combination
//! semantics, shadow mode, time windows across DST, errors, and a property.

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::wire::messages::MessagesRequest;

fn policy(text: &str) -> RulesPolicy {
    RulesPolicy::from_toml(text, "test.toml").unwrap_or_else(|e| panic!("{e}"))
}

fn principal(groups: &[&str]) -> Principal {
    let mut p =
        Principal::new("https://idp.example.com", "skill-a").with_groups(groups.iter().copied());
    p.scopes = vec!["messages:write".into()];
    p.claims =
        json!({"repository": "acme/billing", "ref": "refs/heads/main", "n": 3, "list": ["x", "y"]})
            .as_object()
            .cloned()
            .unwrap_or_default();
    p
}

fn body(v: serde_json::Value) -> MessagesRequest {
    MessagesRequest::parse(v.to_string().as_bytes()).unwrap()
}

fn decide(p: &RulesPolicy, who: &Principal, req: &MessagesRequest) -> Evaluation {
    p.evaluate(
        &PolicyInput::new("POST", "/v1/messages")
            .principal(who)
            .request(req)
            .body_bytes(100),
    )
}

fn simple() -> MessagesRequest {
    body(
        json!({"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}),
    )
}

fn allowed(e: &Evaluation) -> bool {
    matches!(e.decision, Decision::Allow { .. })
}

const ALLOW_ALL: &str = "[[rule]]\nid = \"all\"\neffect = \"allow\"\n";

#[test]
fn default_deny() {
    let p = policy("");
    let e = decide(&p, &principal(&[]), &simple());
    assert_eq!(e.decision.rule(), Some("default"));
    assert!(e.matched.is_empty());
}

#[test]
fn principal_selectors() {
    let p = policy(
        r#"
        [[rule]]
        id = "by-group"
        effect = "allow"
        match = { groups = ["ci", "ops"] }
        [[rule]]
        id = "by-issuer-subject"
        effect = "allow"
        match = { issuer = "https://idp.*", subject = ["skill-*"] }
        [[rule]]
        id = "by-scope"
        effect = "allow"
        match = { scopes = "messages:write" }
        [[rule]]
        id = "by-claims"
        effect = "allow"
        [rule.match.claims]
        repository = "acme/*"
        ref = { equals = "refs/heads/main" }
        n = { regex = "[0-9]+" }
        list = "y"
        [[rule]]
        id = "claim-miss"
        effect = "allow"
        match = { claims = { repository = { equals = "acme" } } }
    "#,
    );
    let e = decide(&p, &principal(&["ops"]), &simple());
    let ids: Vec<_> = e.matched.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(
        ids,
        ["by-group", "by-issuer-subject", "by-scope", "by-claims"]
    );
    let e = decide(&p, &principal(&["nobody"]), &simple());
    assert!(!e.matched.iter().any(|m| m.id == "by-group"));
    // No principal at all: principal selectors never match.
    let e = p.evaluate(&PolicyInput::new("POST", "/v1/messages").request(&simple()));
    assert_eq!(e.decision.rule(), Some("default"));
}

#[test]
fn endpoint_selectors() {
    let p = policy(
        r#"
        [[rule]]
        id = "messages-only"
        effect = "allow"
        match = { methods = ["post"], paths = ["/v1/messages", "/v1/messages/count_tokens"] }
    "#,
    );
    let who = principal(&[]);
    assert!(allowed(&p.evaluate(
        &PolicyInput::new("POST", "/v1/messages").principal(&who)
    )));
    assert!(!allowed(&p.evaluate(
        &PolicyInput::new("GET", "/v1/messages").principal(&who)
    )));
    assert!(!allowed(&p.evaluate(
        &PolicyInput::new("POST", "/v1/messages/batches").principal(&who)
    )));
    assert!(!allowed(&p.evaluate(
        &PolicyInput::new("GET", "/v1/files").principal(&who)
    )));
}

#[test]
fn model_and_size_selectors() {
    let p = policy(
        r#"
        [[rule]]
        id = "all"
        effect = "allow"
        [[rule]]
        id = "no-opus-for-ci"
        effect = "deny"
        reason = "Opus is not for CI"
        match = { groups = "ci", models = "claude-opus-*" }
        [[rule]]
        id = "max-tokens"
        effect = "deny"
        match = { max_tokens_above = 8192 }
        [[rule]]
        id = "big-bodies"
        effect = "deny"
        match = { body_bytes_above = 1000 }
        [[rule]]
        id = "long-prompts"
        effect = "require_approval"
        match = { input_tokens_above = 10 }
    "#,
    );
    let ci = principal(&["ci"]);
    let opus = body(json!({"model": "claude-opus-4-1", "max_tokens": 10, "messages": []}));
    let e = decide(&p, &ci, &opus);
    assert_eq!(
        e.decision,
        Decision::Deny {
            rule: "no-opus-for-ci".into(),
            reason: "Opus is not for CI".into()
        }
    );
    assert!(allowed(&decide(&p, &principal(&["dev"]), &opus)));
    let big = body(json!({"model": "m", "max_tokens": 9000, "messages": []}));
    assert_eq!(decide(&p, &ci, &big).decision.rule(), Some("max-tokens"));
    let e = p.evaluate(
        &PolicyInput::new("POST", "/v1/messages")
            .principal(&ci)
            .request(&simple())
            .body_bytes(1001),
    );
    assert_eq!(e.decision.rule(), Some("big-bodies"));
    let long =
        body(json!({"model": "m", "messages": [{"role": "user", "content": "x".repeat(41)}]}));
    assert_eq!(estimate_input_tokens(&long), 11);
    assert_eq!(
        decide(&p, &ci, &long).decision.effect(),
        Effect::RequireApproval
    );
}

#[test]
fn tools_and_skills_selectors() {
    let p = policy(
        r#"
        [[rule]]
        id = "all"
        effect = "allow"
        [[rule]]
        id = "no-web"
        effect = "deny"
        match = { tool_types = "web_search_*" }
        [[rule]]
        id = "no-shell"
        effect = "deny"
        match = { tools = ["bash", "shell*"] }
        [[rule]]
        id = "xlsx-needs-approval"
        effect = "require_approval"
        match = { skills = "xlsx" }
    "#,
    );
    let who = principal(&[]);
    assert!(allowed(&decide(&p, &who, &simple())));
    let web = body(
        json!({"model": "m", "messages": [], "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
    );
    assert_eq!(decide(&p, &who, &web).decision.rule(), Some("no-web"));
    let shell = body(
        json!({"model": "m", "messages": [], "tools": [{"name": "calc"}, {"name": "shell_exec"}]}),
    );
    assert_eq!(decide(&p, &who, &shell).decision.rule(), Some("no-shell"));
    let xlsx = body(
        json!({"model": "m", "messages": [], "container": {"skills": [{"type": "anthropic", "skill_id": "xlsx"}]}}),
    );
    assert_eq!(
        decide(&p, &who, &xlsx).decision.effect(),
        Effect::RequireApproval
    );
}

#[test]
fn keywords_everywhere_in_the_prompt() {
    let p = policy(
        r#"
        [[rule]]
        id = "all"
        effect = "allow"
        [[rule]]
        id = "customer-export"
        effect = "require_approval"
        match = { keywords = ["customer export"] }
        [[rule]]
        id = "codename"
        effect = "deny"
        match = { patterns = ['\bproject\s+(x|y)\b'], case_sensitive = true }
    "#,
    );
    let who = principal(&[]);
    let places = [
        json!({"model": "m", "system": "Please run the Customer EXPORT now", "messages": []}),
        json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "a customer export"}]}]}),
        json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "customer export done"}]}]}),
        json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "customer export"}}]}]}),
    ];
    for b in places {
        assert_eq!(
            decide(&p, &who, &body(b.clone())).decision.effect(),
            Effect::RequireApproval,
            "{b}"
        );
    }
    let no = body(
        json!({"model": "m", "messages": [{"role": "user", "content": "customer data export"}]}),
    );
    assert!(allowed(&decide(&p, &who, &no)));
    let x = body(
        json!({"model": "m", "messages": [{"role": "user", "content": "about project x today"}]}),
    );
    assert_eq!(decide(&p, &who, &x).decision.rule(), Some("codename"));
    let upper = body(
        json!({"model": "m", "messages": [{"role": "user", "content": "about PROJECT X today"}]}),
    );
    assert!(allowed(&decide(&p, &who, &upper)), "case-sensitive rule");
    // The denial reason never contains the matched text.
    if let Decision::Deny { reason, .. } = decide(&p, &who, &x).decision {
        assert!(!reason.contains("project"));
    }
}

#[test]
fn keyword_evasions_are_caught() {
    let p = policy(
        r#"
        [[rule]]
        id = "all"
        effect = "allow"
        [[rule]]
        id = "customer-export"
        effect = "deny"
        match = { keywords = ["customer export"] }
    "#,
    );
    let who = principal(&[]);
    let user = |content: serde_json::Value| {
        body(json!({"model": "m", "messages": [{"role": "user", "content": content}]}))
    };
    let cases = [
        user(json!("customer\nexport")),
        user(json!("customer   export")),
        user(json!("customer\u{00A0}export")),
        user(json!("cus\u{200B}tomer ex\u{00AD}port")),
        user(
            json!([{"type": "text", "text": "please run the customer"}, {"type": "text", "text": "export now"}]),
        ),
        user(
            json!([{"type": "search_result", "source": "s", "title": "t", "content": [{"type": "text", "text": "customer export"}]}]),
        ),
        body(
            json!({"model": "m", "messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "run", "input": {"job": "customer export"}}]}]}),
        ),
        body(
            json!({"model": "m", "messages": [], "tools": [{"name": "x", "description": "does the customer export", "input_schema": {}}]}),
        ),
        body(
            json!({"model": "m", "messages": [], "mcp_servers": [{"type": "url", "url": "https://m", "name": "customer export"}]}),
        ),
    ];
    for (i, b) in cases.iter().enumerate() {
        assert_eq!(
            decide(&p, &who, b).decision.rule(),
            Some("customer-export"),
            "case {i}"
        );
    }
    assert!(allowed(&decide(
        &p,
        &who,
        &user(json!("a customer record export"))
    )));
}

#[test]
fn combination_and_shadow() {
    let p = policy(
        r#"
        [[rule]]
        id = "allow-all"
        effect = "allow"
        obligations = { max_tokens = 4096 }
        [[rule]]
        id = "allow-ci"
        effect = "allow"
        match = { groups = "ci" }
        obligations = { max_tokens = 1024, redaction_profiles = ["pii"] }
        [[rule]]
        id = "would-deny-sonnet"
        effect = "deny"
        shadow = true
        match = { models = "claude-sonnet-*" }
        [[rule]]
        id = "approve-ci"
        effect = "require_approval"
        match = { groups = "ci", keywords = "deploy" }
    "#,
    );
    let ci = principal(&["ci"]);
    let e = decide(&p, &ci, &simple());
    match &e.decision {
        Decision::Allow { obligations } => {
            assert_eq!(obligations.max_tokens, Some(1024));
            assert_eq!(obligations.redaction_profiles, ["pii"]);
        }
        other => panic!("{other:?}"),
    }
    let labels: Vec<_> = e.matched.iter().map(RuleMatch::label).collect();
    assert_eq!(
        labels,
        [
            "allow-all",
            "allow-ci",
            "would-deny-sonnet (shadow: would deny)"
        ]
    );
    let deploy = body(
        json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "deploy it"}]}),
    );
    assert_eq!(
        decide(&p, &ci, &deploy).decision.effect(),
        Effect::RequireApproval
    );
}

fn at(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

#[test]
fn business_hours_across_dst() {
    // New York: DST starts 2026-03-08 02:00 local (07:00Z); ends 2026-11-01 02:00 local (06:00Z).
    let p = policy(
        r#"
        [defaults]
        time_zone = "America/New_York"
        [[rule]]
        id = "finance-business-hours"
        effect = "allow"
        match = { groups = "finance", time = { days = ["mon", "tue", "wed", "thu", "fri"], hours = "09:00-17:00" } }
    "#,
    );
    let fin = principal(&["finance"]);
    let ok = |t: &str| {
        allowed(
            &p.evaluate(
                &PolicyInput::new("POST", "/v1/messages")
                    .principal(&fin)
                    .at(at(t)),
            ),
        )
    };
    // Friday 2026-03-06, EST (UTC-5): 09:00 local = 14:00Z.
    assert!(!ok("2026-03-06T13:59:59Z"));
    assert!(ok("2026-03-06T14:00:00Z"));
    assert!(ok("2026-03-06T21:59:59Z"));
    assert!(!ok("2026-03-06T22:00:00Z"));
    // Monday 2026-03-09, EDT (UTC-4): 09:00 local = 13:00Z.
    assert!(!ok("2026-03-09T12:59:59Z"));
    assert!(ok("2026-03-09T13:00:00Z"));
    assert!(!ok("2026-03-09T21:00:00Z"));
    // Sunday is out whatever the hour.
    assert!(!ok("2026-03-08T15:00:00Z"));
    // Back to EST in November: Monday 2026-11-02 09:00 local = 14:00Z.
    assert!(!ok("2026-11-02T13:30:00Z"));
    assert!(ok("2026-11-02T14:00:00Z"));
}

#[test]
fn overnight_and_outside_windows() {
    let p = policy(
        r#"
        [[rule]]
        id = "all"
        effect = "allow"
        [[rule]]
        id = "maintenance"
        effect = "deny"
        match = { time = { hours = "22:00-06:00", time_zone = "Europe/Berlin" } }
        [[rule]]
        id = "weekdays-only"
        effect = "deny"
        match = { time = { days = ["mon", "tue", "wed", "thu", "fri"], outside = true, time_zone = "UTC" } }
    "#,
    );
    let who = principal(&[]);
    let rule = |t: &str| {
        p.evaluate(
            &PolicyInput::new("GET", "/v1/models")
                .principal(&who)
                .at(at(t)),
        )
        .decision
        .rule()
        .map(str::to_owned)
    };
    // Wednesday 2026-07-15, Berlin is UTC+2.
    assert_eq!(rule("2026-07-15T20:30:00Z").as_deref(), Some("maintenance")); // 22:30 local
    assert_eq!(rule("2026-07-15T03:59:00Z").as_deref(), Some("maintenance")); // 05:59 local
    assert_eq!(rule("2026-07-15T04:00:00Z"), None); // 06:00 local
    assert_eq!(
        rule("2026-07-18T12:00:00Z").as_deref(),
        Some("weekdays-only")
    ); // Saturday
}

#[test]
fn errors_name_file_line_and_rule() {
    let cases = [
        (
            "[[rule]]\nid = \"a\"\neffect = \"allow\"\n[[rule]]\nid = \"a\"\neffect = \"deny\"\n",
            4,
            Some("a"),
            "duplicate",
        ),
        (
            "\n\n[[rule]]\nid = \"tz\"\neffect = \"allow\"\nmatch = { time = { time_zone = \"Mars/Olympus\" } }\n",
            3,
            Some("tz"),
            "Mars/Olympus",
        ),
        (
            "[[rule]]\nid = \"re\"\neffect = \"deny\"\nmatch = { patterns = [\"(unclosed\"] }\n",
            1,
            Some("re"),
            "invalid regex",
        ),
        (
            "[[rule]]\nid = \"d\"\neffect = \"deny\"\nmatch = { time = { days = [\"someday\"] } }\n",
            1,
            Some("d"),
            "someday",
        ),
        (
            "[[rule]]\nid = \"h\"\neffect = \"deny\"\nmatch = { time = { hours = \"9-5\" } }\n",
            1,
            Some("h"),
            "hours",
        ),
        (
            "[[rule]]\nid = \"x\"\neffect = \"maybe\"\n",
            3,
            None,
            "maybe",
        ),
        (
            "[[rule]]\nid = \"x\"\neffect = \"allow\"\nmatch = { modle = \"x\" }\n",
            4,
            None,
            "modle",
        ),
        ("[[rule]\n", 1, None, ""),
    ];
    for (text, line, rule, needle) in cases {
        let e = RulesPolicy::from_toml(text, "p.toml").unwrap_err();
        assert_eq!(e.file, "p.toml");
        assert_eq!(e.line, line, "{e}");
        assert_eq!(e.rule.as_deref(), rule, "{e}");
        assert!(e.to_string().contains(needle), "{e}");
    }
}

#[test]
fn hot_reload_keeps_old_policy_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, ALLOW_ALL).unwrap();
    let handle = PolicyHandle::new(RulesPolicy::from_file(&path).unwrap());
    let who = principal(&[]);
    let input = PolicyInput::new("POST", "/v1/messages").principal(&who);
    assert!(allowed(&handle.evaluate(&input)));
    std::fs::write(
        &path,
        "[[rule]]\nid = \"broken\"\neffect = \"allow\"\nmatch = { models = \"[\" }\n",
    )
    .unwrap();
    let err = handle.reload_file(&path).unwrap_err();
    assert_eq!((err.line, err.rule.as_deref()), (1, Some("broken")));
    assert_eq!(handle.last_error(), Some(err));
    assert!(
        allowed(&handle.evaluate(&input)),
        "old policy still in force"
    );
    std::fs::write(&path, "").unwrap();
    handle.reload_file(&path).unwrap();
    assert!(handle.last_error().is_none());
    assert!(
        !allowed(&handle.evaluate(&input)),
        "new (empty) policy denies"
    );
}

#[tokio::test]
async fn file_watch_picks_up_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, "").unwrap();
    let handle = PolicyHandle::new(RulesPolicy::from_file(&path).unwrap());
    let task = handle.watch_file(&path, std::time::Duration::from_millis(20));
    let who = principal(&[]);
    std::fs::write(&path, ALLOW_ALL).unwrap();
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let mut ok = false;
    for _ in 0..200 {
        if allowed(&handle.evaluate(&PolicyInput::new("GET", "/v1/models").principal(&who))) {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    task.abort();
    assert!(ok, "watcher did not reload");
}

fn arb_rule(i: usize) -> impl Strategy<Value = String> {
    let effect = prop_oneof![Just("allow"), Just("deny"), Just("require_approval")];
    let selector = prop_oneof![
        Just(String::new()),
        Just("match = { groups = \"ci\" }".to_string()),
        Just("match = { models = \"claude-opus-*\" }".to_string()),
        Just("match = { keywords = \"secret\" }".to_string()),
        Just("match = { max_tokens_above = 500 }".to_string()),
        Just("match = { paths = \"/v1/messages\" }".to_string()),
    ];
    (effect, selector, any::<bool>()).prop_map(move |(e, s, shadow)| {
        format!("[[rule]]\nid = \"r{i}\"\neffect = \"{e}\"\nshadow = {shadow}\n{s}\n")
    })
}

fn arb_request() -> impl Strategy<Value = (Vec<&'static str>, MessagesRequest)> {
    (
        prop_oneof![Just(vec!["ci"]), Just(vec![]), Just(vec!["ops", "ci"])],
        prop_oneof![Just("claude-opus-4-1"), Just("claude-sonnet-4-5")],
        prop_oneof![Just("hello"), Just("a secret plan")],
        0u64..1000,
    )
        .prop_map(|(g, model, text, max)| {
            (g, body(json!({"model": model, "max_tokens": max, "messages": [{"role": "user", "content": text}]})))
        })
}

proptest! {
    /// Adding a deny rule never turns a denied request into an allowed one,
    /// and never makes an allowed request less strict than require-approval → deny.
    #[test]
    fn adding_a_deny_rule_never_allows_more(
        rules in proptest::collection::vec((0usize..1).prop_flat_map(|_| arb_rule(0)), 0..6),
        extra_selector in 0usize..4,
        (groups, req) in arb_request(),
    ) {
        let base: String = rules.iter().enumerate().map(|(i, r)| r.replacen("id = \"r0\"", &format!("id = \"r{i}\""), 1)).collect();
        let selector = ["", "match = { groups = \"ci\" }", "match = { keywords = \"secret\" }", "match = { models = \"claude-*\" }"][extra_selector];
        let with_deny = format!("{base}[[rule]]\nid = \"extra-deny\"\neffect = \"deny\"\n{selector}\n");
        let who = principal(&groups);
        let before = decide(&policy(&base), &who, &req);
        let after = decide(&policy(&with_deny), &who, &req);
        prop_assert!(after.decision.effect() >= before.decision.effect(),
            "{:?} -> {:?}", before.decision, after.decision);
        if before.decision.effect() == Effect::Deny {
            prop_assert_eq!(after.decision.effect(), Effect::Deny);
        }
    }
}
