//! The scenarios of the rules engine's tests (`policy/tests.rs`), written
//! once as a table of (request, expected decision) cases and run against a
//! [`RulesPolicy`] and an equivalent Cedar policy set: both engines must
//! give the expected decision *and* the same [`Evaluation`] (decision,
//! reason, obligations, matched rules in order, shadow labels). Then the
//! Cedar-specific parts: load errors, hot reload, the layer with an
//! injected clock, and a differential property test.

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::identity::Principal;
use crate::policy::{PolicyHandle, RulesPolicy};
use crate::wire::messages::MessagesRequest;

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

fn simple() -> serde_json::Value {
    json!({"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]})
}

/// What a case expects.
#[derive(Debug, Clone)]
enum Expect {
    Allow,
    /// Allow with this `max_tokens` ceiling and these redaction profiles.
    AllowWith(u64, &'static [&'static str]),
    Deny(&'static str),
    Approval(&'static str),
}

/// One request of a scenario.
struct Case {
    who: Option<Principal>,
    method: &'static str,
    path: &'static str,
    body: Option<serde_json::Value>,
    body_bytes: usize,
    at: &'static str,
    expect: Expect,
    /// Matched rule labels, in order, when the case checks them.
    matched: Option<&'static [&'static str]>,
}

impl Case {
    /// `POST /v1/messages` by `who` with `body`, 100 bytes, at a Wednesday noon.
    fn new(who: Option<Principal>, body: serde_json::Value, expect: Expect) -> Case {
        Case {
            who,
            method: "POST",
            path: "/v1/messages",
            body: Some(body),
            body_bytes: 100,
            at: "2026-07-15T12:00:00Z",
            expect,
            matched: None,
        }
    }
    fn endpoint(mut self, method: &'static str, path: &'static str) -> Case {
        self.method = method;
        self.path = path;
        self.body = None;
        self
    }
    fn bytes(mut self, n: usize) -> Case {
        self.body_bytes = n;
        self
    }
    fn at(mut self, t: &'static str) -> Case {
        self.at = t;
        self
    }
    fn matched(mut self, labels: &'static [&'static str]) -> Case {
        self.matched = Some(labels);
        self
    }
}

/// A scenario: the same policy for both engines, and its cases.
struct Scenario {
    name: &'static str,
    rules: &'static str,
    cedar: &'static str,
    /// The Cedar context file.
    context: &'static str,
    cases: Vec<Case>,
}

fn cedar(text: &str, context: &str) -> CedarPolicy {
    CedarPolicy::builder()
        .context(context, "context.toml")
        .build(text, "test.cedar")
        .unwrap_or_else(|e| panic!("{e}"))
}

fn check(e: &Evaluation, expect: &Expect) -> bool {
    match (expect, &e.decision) {
        (Expect::Allow, Decision::Allow { .. }) => true,
        (Expect::AllowWith(max, profiles), Decision::Allow { obligations }) => {
            obligations.max_tokens == Some(*max) && obligations.redaction_profiles == *profiles
        }
        (Expect::Deny(r), Decision::Deny { rule, .. }) => rule == r,
        (Expect::Approval(r), Decision::RequireApproval { rule, .. }) => rule == r,
        _ => false,
    }
}

fn run(s: Scenario) {
    let rules = RulesPolicy::from_toml(s.rules, "test.toml").unwrap_or_else(|e| panic!("{e}"));
    let cedar = cedar(s.cedar, s.context);
    assert_eq!(
        rules.rule_ids().collect::<Vec<_>>(),
        cedar.rule_ids().collect::<Vec<_>>(),
        "{}: the two policies name the same rules in the same order",
        s.name
    );
    for (i, c) in s.cases.iter().enumerate() {
        let req = c.body.clone().map(body);
        let mut input = PolicyInput::new(c.method, c.path)
            .body_bytes(c.body_bytes)
            .at(c.at.parse().unwrap());
        if let Some(p) = &c.who {
            input = input.principal(p);
        }
        if let Some(r) = &req {
            input = input.request(r);
        }
        let by_rules = rules.evaluate(&input);
        let by_cedar = cedar.evaluate(&input);
        assert!(
            check(&by_rules, &c.expect),
            "{} case {i}: rules engine gave {:?}, expected {:?}",
            s.name,
            by_rules.decision,
            c.expect
        );
        assert_eq!(by_cedar, by_rules, "{} case {i}: Cedar differs", s.name);
        if let Some(labels) = c.matched {
            let got: Vec<_> = by_cedar.matched.iter().map(RuleMatch::label).collect();
            assert_eq!(got, labels, "{} case {i}", s.name);
        }
    }
}

#[test]
fn default_deny() {
    run(Scenario {
        name: "default deny",
        rules: "",
        cedar: "",
        context: "",
        cases: vec![
            Case::new(Some(principal(&[])), simple(), Expect::Deny("default")).matched(&[]),
            Case::new(None, simple(), Expect::Deny("default")).endpoint("GET", "/v1/models"),
        ],
    });
}

#[test]
fn principal_selectors() {
    run(Scenario {
        name: "principal",
        rules: r#"
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
            n = { equals = "3" }
            list = "y"
            [[rule]]
            id = "claim-miss"
            effect = "allow"
            match = { claims = { repository = { equals = "acme" } } }
        "#,
        cedar: r#"
            @id("by-group")
            permit(principal, action, resource)
            when { principal in Skillgate::Group::"ci" || principal in Skillgate::Group::"ops" };

            @id("by-issuer-subject")
            permit(principal, action, resource)
            when { principal.issuer like "https://idp.*" && principal.subject like "skill-*" };

            @id("by-scope")
            permit(principal, action, resource) when { principal.scopes.contains("messages:write") };

            @id("by-claims")
            permit(principal, action, resource)
            when {
                principal.hasTag("repository") && principal.getTag("repository") like "acme/*" &&
                principal.hasTag("ref") && principal.getTag("ref") == "refs/heads/main" &&
                principal.hasTag("n") && principal.getTag("n") == "3" &&
                principal.claim_values.contains("list=y")
            };

            @id("claim-miss")
            permit(principal, action, resource)
            when { principal.hasTag("repository") && principal.getTag("repository") == "acme" };
        "#,
        context: "",
        cases: vec![
            Case::new(Some(principal(&["ops"])), simple(), Expect::Allow).matched(&[
                "by-group",
                "by-issuer-subject",
                "by-scope",
                "by-claims",
            ]),
            Case::new(Some(principal(&["nobody"])), simple(), Expect::Allow).matched(&[
                "by-issuer-subject",
                "by-scope",
                "by-claims",
            ]),
            Case::new(
                Some(Principal::new("https://other.example.com", "robot")),
                simple(),
                Expect::Deny("default"),
            ),
            // No principal at all: principal selectors never match.
            Case::new(None, simple(), Expect::Deny("default")).matched(&[]),
        ],
    });
}

#[test]
fn endpoint_selectors() {
    let who = || Some(principal(&[]));
    run(Scenario {
        name: "endpoint",
        rules: r#"
            [[rule]]
            id = "messages-only"
            effect = "allow"
            match = { methods = ["post"], paths = ["/v1/messages", "/v1/messages/count_tokens"] }
        "#,
        cedar: r#"
            @id("messages-only")
            permit(
                principal,
                action in [Skillgate::Action::"messages", Skillgate::Action::"count_tokens"],
                resource
            ) when { context.method == "POST" };
        "#,
        context: "",
        cases: vec![
            Case::new(who(), simple(), Expect::Allow).endpoint("POST", "/v1/messages"),
            Case::new(who(), simple(), Expect::Allow),
            Case::new(who(), simple(), Expect::Allow).endpoint("POST", "/v1/messages/count_tokens"),
            Case::new(who(), simple(), Expect::Deny("default")).endpoint("GET", "/v1/messages"),
            Case::new(who(), simple(), Expect::Deny("default"))
                .endpoint("POST", "/v1/messages/batches"),
            Case::new(who(), simple(), Expect::Deny("default")).endpoint("GET", "/v1/files"),
        ],
    });
}

#[test]
fn model_and_size_selectors() {
    let ci = || Some(principal(&["ci"]));
    run(Scenario {
        name: "model and size",
        rules: r#"
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
        cedar: r#"
            @id("all")
            permit(principal, action, resource);

            @id("no-opus-for-ci")
            @reason("Opus is not for CI")
            forbid(principal in Skillgate::Group::"ci", action, resource is Skillgate::Model)
            when { resource.id like "claude-opus-*" };

            @id("max-tokens")
            forbid(principal, action, resource)
            when { context has max_tokens && context.max_tokens > 8192 };

            @id("big-bodies")
            forbid(principal, action, resource) when { context.body_bytes > 1000 };

            @id("long-prompts")
            @effect("require_approval")
            permit(principal, action, resource) when { context.estimated_input_tokens > 10 };
        "#,
        context: "",
        cases: vec![
            Case::new(
                ci(),
                json!({"model": "claude-opus-4-1", "max_tokens": 10, "messages": []}),
                Expect::Deny("no-opus-for-ci"),
            ),
            Case::new(
                Some(principal(&["dev"])),
                json!({"model": "claude-opus-4-1", "max_tokens": 10, "messages": []}),
                Expect::Allow,
            ),
            Case::new(
                ci(),
                json!({"model": "m", "max_tokens": 9000, "messages": []}),
                Expect::Deny("max-tokens"),
            ),
            Case::new(
                ci(),
                json!({"model": "m", "max_tokens": 8192, "messages": []}),
                Expect::Allow,
            ),
            Case::new(ci(), simple(), Expect::Deny("big-bodies")).bytes(1001),
            Case::new(ci(), simple(), Expect::Allow).bytes(1000),
            Case::new(
                ci(),
                json!({"model": "m", "messages": [{"role": "user", "content": "x".repeat(41)}]}),
                Expect::Approval("long-prompts"),
            ),
            Case::new(
                ci(),
                json!({"model": "m", "messages": [{"role": "user", "content": "x".repeat(40)}]}),
                Expect::Allow,
            ),
        ],
    });
}

#[test]
fn tools_and_skills_selectors() {
    let who = || Some(principal(&[]));
    run(Scenario {
        name: "tools and skills",
        rules: r#"
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
        cedar: r#"
            @id("all")
            permit(principal, action, resource);

            @id("no-web")
            forbid(principal, action, resource) when { context.tool_sets.contains("web") };

            @id("no-shell")
            forbid(principal, action, resource) when { context.tool_sets.contains("shell") };

            @id("xlsx-needs-approval")
            @effect("require_approval")
            permit(principal, action, resource) when { context.skills.contains("xlsx") };
        "#,
        context: r#"
            [tool_sets.web]
            tool_types = ["web_search_*"]
            [tool_sets.shell]
            tools = ["bash", "shell*"]
        "#,
        cases: vec![
            Case::new(who(), simple(), Expect::Allow),
            Case::new(
                who(),
                json!({"model": "m", "messages": [], "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
                Expect::Deny("no-web"),
            ),
            Case::new(
                who(),
                json!({"model": "m", "messages": [], "tools": [{"name": "calc"}, {"name": "shell_exec"}]}),
                Expect::Deny("no-shell"),
            ),
            Case::new(
                who(),
                json!({"model": "m", "messages": [], "tools": [{"name": "calc"}]}),
                Expect::Allow,
            ),
            Case::new(
                who(),
                json!({"model": "m", "messages": [], "container": {"skills": [{"type": "anthropic", "skill_id": "xlsx"}]}}),
                Expect::Approval("xlsx-needs-approval"),
            ),
        ],
    });
}

#[test]
fn keywords_everywhere_in_the_prompt() {
    let who = || Some(principal(&[]));
    let approval = |b| Case::new(who(), b, Expect::Approval("customer-export"));
    run(Scenario {
        name: "keywords",
        rules: r#"
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
        cedar: r#"
            @id("all")
            permit(principal, action, resource);

            @id("customer-export")
            @effect("require_approval")
            permit(principal, action, resource)
            when { context.keywords.contains("customer-export") };

            @id("codename")
            forbid(principal, action, resource) when { context.keywords.contains("codename") };
        "#,
        context: r#"
            [keywords.customer-export]
            keywords = ["customer export"]
            [keywords.codename]
            patterns = ['\bproject\s+(x|y)\b']
            case_sensitive = true
        "#,
        cases: vec![
            approval(json!({"model": "m", "system": "Please run the Customer EXPORT now", "messages": []})),
            approval(json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "a customer export"}]}]})),
            approval(json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "customer export done"}]}]})),
            approval(json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "customer export"}}]}]})),
            Case::new(
                who(),
                json!({"model": "m", "messages": [{"role": "user", "content": "customer data export"}]}),
                Expect::Allow,
            ),
            Case::new(
                who(),
                json!({"model": "m", "messages": [{"role": "user", "content": "about project x today"}]}),
                Expect::Deny("codename"),
            ),
            // Case-sensitive set.
            Case::new(
                who(),
                json!({"model": "m", "messages": [{"role": "user", "content": "about PROJECT X today"}]}),
                Expect::Allow,
            ),
            // Both: deny overrides approval; both recorded.
            Case::new(
                who(),
                json!({"model": "m", "messages": [{"role": "user", "content": "project y: customer export"}]}),
                Expect::Deny("codename"),
            )
            .matched(&["all", "customer-export", "codename"]),
        ],
    });
}

#[test]
fn combination_and_shadow() {
    let ci = || Some(principal(&["ci"]));
    run(Scenario {
        name: "combination and shadow",
        rules: r#"
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
        cedar: r#"
            @id("allow-all")
            @max_tokens("4096")
            permit(principal, action, resource);

            @id("allow-ci")
            @max_tokens("1024")
            @redaction_profiles("pii")
            permit(principal in Skillgate::Group::"ci", action, resource);

            @id("would-deny-sonnet")
            @shadow("true")
            forbid(principal, action, resource is Skillgate::Model)
            when { resource.id like "claude-sonnet-*" };

            @id("approve-ci")
            @effect("require_approval")
            permit(principal in Skillgate::Group::"ci", action, resource)
            when { context.keywords.contains("deploy") };
        "#,
        context: "[keywords.deploy]\nkeywords = [\"deploy\"]\n",
        cases: vec![
            Case::new(ci(), simple(), Expect::AllowWith(1024, &["pii"])).matched(&[
                "allow-all",
                "allow-ci",
                "would-deny-sonnet (shadow: would deny)",
            ]),
            Case::new(Some(principal(&[])), simple(), Expect::AllowWith(4096, &[])),
            Case::new(
                ci(),
                json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "deploy it"}]}),
                Expect::Approval("approve-ci"),
            )
            .matched(&[
                "allow-all",
                "allow-ci",
                "would-deny-sonnet (shadow: would deny)",
                "approve-ci",
            ]),
        ],
    });
}

#[test]
fn business_hours_across_dst() {
    // New York: DST starts 2026-03-08 02:00 local (07:00Z); ends 2026-11-01 02:00 local (06:00Z).
    let fin = || Some(principal(&["finance"]));
    let at = |t: &'static str, ok: bool| {
        let expect = if ok {
            Expect::Allow
        } else {
            Expect::Deny("default")
        };
        Case::new(fin(), simple(), expect)
            .endpoint("POST", "/v1/messages")
            .at(t)
    };
    run(Scenario {
        name: "business hours",
        rules: r#"
            [defaults]
            time_zone = "America/New_York"
            [[rule]]
            id = "finance-business-hours"
            effect = "allow"
            match = { groups = "finance", time = { days = ["mon", "tue", "wed", "thu", "fri"], hours = "09:00-17:00" } }
        "#,
        cedar: r#"
            @id("finance-business-hours")
            permit(principal in Skillgate::Group::"finance", action, resource)
            when {
                ["mon", "tue", "wed", "thu", "fri"].contains(context.time.day) &&
                context.time.minutes >= 540 && context.time.minutes < 1020
            };
        "#,
        context: "time_zone = \"America/New_York\"\n",
        cases: vec![
            // Friday 2026-03-06, EST (UTC-5): 09:00 local = 14:00Z.
            at("2026-03-06T13:59:59Z", false),
            at("2026-03-06T14:00:00Z", true),
            at("2026-03-06T21:59:59Z", true),
            at("2026-03-06T22:00:00Z", false),
            // Monday 2026-03-09, EDT (UTC-4): 09:00 local = 13:00Z.
            at("2026-03-09T12:59:59Z", false),
            at("2026-03-09T13:00:00Z", true),
            at("2026-03-09T21:00:00Z", false),
            // Sunday is out whatever the hour.
            at("2026-03-08T15:00:00Z", false),
            // Back to EST in November: Monday 2026-11-02 09:00 local = 14:00Z.
            at("2026-11-02T13:30:00Z", false),
            at("2026-11-02T14:00:00Z", true),
        ],
    });
}

#[test]
fn overnight_and_outside_windows() {
    let who = || Some(principal(&[]));
    let at = |t: &'static str, expect: Expect| {
        Case::new(who(), simple(), expect)
            .endpoint("GET", "/v1/models")
            .at(t)
    };
    run(Scenario {
        name: "overnight and outside",
        rules: r#"
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
        cedar: r#"
            @id("all")
            permit(principal, action, resource);

            @id("maintenance")
            @time_zone("Europe/Berlin")
            forbid(principal, action, resource)
            when { context.time.minutes >= 1320 || context.time.minutes < 360 };

            @id("weekdays-only")
            @time_zone("UTC")
            forbid(principal, action, resource) when { context.time.weekday > 5 };
        "#,
        // A default zone that neither policy uses: the annotations decide.
        context: "time_zone = \"Asia/Tokyo\"\n",
        cases: vec![
            // Wednesday 2026-07-15, Berlin is UTC+2.
            at("2026-07-15T20:30:00Z", Expect::Deny("maintenance")), // 22:30 local
            at("2026-07-15T03:59:00Z", Expect::Deny("maintenance")), // 05:59 local
            at("2026-07-15T04:00:00Z", Expect::Allow),               // 06:00 local
            at("2026-07-18T12:00:00Z", Expect::Deny("weekdays-only")), // Saturday
        ],
    });
}

#[test]
fn load_errors_name_file_line_and_policy() {
    let cases: &[(&str, &str, usize, Option<&str>, &str)] = &[
        // (policies, context file, line, policy id, message contains)
        (
            "\n\npermit(principal, action, resource",
            "",
            3,
            None,
            "unexpected end",
        ),
        (
            "@id(\"a\")\npermit(principal, action, resource);\n\npermit(principal, action, resource);\n",
            "",
            4,
            None,
            "@id",
        ),
        (
            "@id(\"a\")\npermit(principal, action, resource);\n@id(\"a\")\nforbid(principal, action, resource);\n",
            "",
            3,
            Some("a"),
            "duplicate",
        ),
        (
            "@id(\"e\")\n@efect(\"require_approval\")\npermit(principal, action, resource);\n",
            "",
            1,
            Some("e"),
            "@efect",
        ),
        (
            "@id(\"f\")\n@effect(\"require_approval\")\nforbid(principal, action, resource);\n",
            "",
            1,
            Some("f"),
            "forbid always denies",
        ),
        (
            "@id(\"s\")\n@shadow(\"yes\")\npermit(principal, action, resource);\n",
            "",
            1,
            Some("s"),
            "@shadow",
        ),
        (
            "@id(\"m\")\n@max_tokens(\"lots\")\npermit(principal, action, resource);\n",
            "",
            1,
            Some("m"),
            "@max_tokens",
        ),
        (
            "@id(\"tz\")\n@time_zone(\"Mars/Olympus\")\npermit(principal, action, resource);\n",
            "",
            1,
            Some("tz"),
            "Mars/Olympus",
        ),
        (
            "@id(\"ok\")\npermit(principal, action, resource);\n\n@id(\"typo\")\nforbid(principal, action, resource)\nwhen { context.modle == \"x\" };\n",
            "",
            6,
            Some("typo"),
            "modle",
        ),
        (
            "@id(\"kw\")\nforbid(principal, action, resource) when { context.keywords.contains(\"secrets\") };\n",
            "[keywords.secret]\nkeywords = [\"secret\"]\n",
            1,
            Some("kw"),
            "\"secrets\" is not defined",
        ),
        (
            "@id(\"ts\")\nforbid(principal, action, resource) when { context.tool_sets.containsAny([\"web\", \"shel\"]) };\n",
            "[tool_sets.web]\ntool_types = [\"web_search_*\"]\n[tool_sets.shell]\ntools = [\"bash\"]\n",
            1,
            Some("ts"),
            "\"shel\"",
        ),
        (
            "@id(\"tpl\")\npermit(principal == ?principal, action, resource);\n",
            "",
            1,
            None,
            "templates",
        ),
    ];
    for (text, context, line, rule, needle) in cases {
        let e = CedarPolicy::builder()
            .context(*context, "context.toml")
            .build(text, "p.cedar")
            .unwrap_err();
        assert_eq!(e.file, "p.cedar", "{e}");
        assert_eq!(e.line, *line, "{e}");
        assert_eq!(e.rule.as_deref(), *rule, "{e}");
        assert!(e.to_string().contains(needle), "{e}");
    }
    // Context file errors name the context file.
    for (context, line, needle) in [
        (
            "\n[keywords.bad]\npatterns = [\"(unclosed\"]\n",
            2,
            "invalid regex",
        ),
        ("[keywords.empty]\n", 1, "give keywords or patterns"),
        ("time_zone = \"Nowhere/Land\"\n", 1, "Nowhere/Land"),
        ("[tool_sets.g]\ntools = [\"[\"]\n", 1, "invalid glob"),
        ("colour = 1\n", 1, "colour"),
    ] {
        let e = CedarPolicy::builder()
            .context(context, "ctx.toml")
            .build("", "p.cedar")
            .unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("ctx.toml", line), "{e}");
        assert!(e.to_string().contains(needle), "{e}");
    }
    // A schema that does not parse names the schema file and line.
    let e = CedarPolicy::builder()
        .schema(
            "namespace X {\n  entity A = { a: Strin };\n",
            "bad.cedarschema",
        )
        .build("", "p.cedar")
        .unwrap_err();
    assert_eq!(e.file, "bad.cedarschema", "{e}");
}

#[test]
fn the_schema_accepts_every_request_shape() {
    // Inputs with and without principal, model, max_tokens, tools, claims:
    // none may be refused for not fitting the schema (rule `cedar`).
    let p = cedar(
        r#"@id("all")
        permit(principal, action, resource);"#,
        "",
    );
    let mut k8s = Principal::new("https://k8s", "system:serviceaccount:ns:sa").with_groups(["a"]);
    k8s.client_id = Some("cli".into());
    k8s.claims = json!({"kubernetes.io": {"namespace": "ns", "pod": {"name": "p"}}, "aud": ["x", "y"], "f": 1.5, "b": true, "nul": null, "objs": [{"a": 1}]})
        .as_object()
        .cloned()
        .unwrap_or_default();
    k8s.attributes.insert("namespace".into(), "ns".into());
    let bodies = [
        None,
        Some(json!({"messages": []})),
        Some(
            json!({"model": "m", "max_tokens": u64::MAX, "stream": true, "messages": [], "tools": [{"name": "t", "type": "custom"}], "container": {"skills": [{"skill_id": "s"}]}}),
        ),
    ];
    for who in [None, Some(principal(&["g1", "g2"])), Some(k8s.clone())] {
        for b in &bodies {
            for path in [
                "/v1/messages",
                "/v1/messages/count_tokens",
                "/v1/messages/batches/x",
                "/v1/models",
                "/v1/files/f",
                "/v1/skills",
                "/v1/other",
            ] {
                let req = b.clone().map(body);
                let mut input = PolicyInput::new("POST", path).body_bytes(usize::MAX);
                if let Some(w) = &who {
                    input = input.principal(w);
                }
                if let Some(r) = &req {
                    input = input.request(r);
                }
                let e = p.evaluate(&input);
                assert!(
                    matches!(e.decision, Decision::Allow { .. }),
                    "{path} {b:?}: {:?}",
                    e.decision
                );
            }
        }
    }
    // Nested claims are tags by dot path; named attributes too.
    let p = cedar(
        r#"@id("ns")
        permit(principal, action, resource)
        when {
            principal.hasTag("kubernetes.io.namespace") && principal.getTag("kubernetes.io.namespace") == "ns" &&
            principal.hasTag("kubernetes.io.pod.name") &&
            principal.getTag("kubernetes.io.pod.name") == "p" &&
            principal.hasTag("namespace") && principal.claim_values.contains("aud=y") &&
            principal has client_id && principal.client_id == "cli"
        };"#,
        "",
    );
    let e = p.evaluate(&PolicyInput::new("GET", "/v1/models").principal(&k8s));
    assert!(
        matches!(e.decision, Decision::Allow { .. }),
        "{:?}",
        e.decision
    );
}

#[test]
fn a_failing_policy_fails_closed() {
    // Long overflow is an evaluation error: the forbid counts as satisfied,
    // the permit as not.
    let p = cedar(
        r#"
        @id("all")
        permit(principal, action, resource);
        @id("overflowing-forbid")
        forbid(principal, action, resource) when { context.body_bytes + 1 > 0 };
        @id("overflowing-permit")
        @max_tokens("5")
        permit(principal, action, resource) when { context.body_bytes + 1 > 0 };
        "#,
        "",
    );
    let e = p.evaluate(&PolicyInput::new("GET", "/v1/models").body_bytes(usize::MAX));
    assert_eq!(e.decision.rule(), Some("overflowing-forbid"));
    let ids: Vec<_> = e.matched.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["all", "overflowing-forbid"]);
    let e = p.evaluate(&PolicyInput::new("GET", "/v1/models").body_bytes(10));
    assert_eq!(
        e.decision.rule(),
        Some("overflowing-forbid"),
        "no overflow: satisfied"
    );
}

#[test]
fn hot_reload_through_the_policy_handle() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policy.cedar");
    let context = dir.path().join("context.toml");
    std::fs::write(
        &policies,
        "@id(\"all\")\npermit(principal, action, resource);\n",
    )
    .unwrap();
    std::fs::write(&context, "").unwrap();
    let files = CedarFiles::new(&policies).context(&context);
    assert_eq!(files.paths(), [policies.clone(), context.clone()]);
    let handle = PolicyHandle::new(files.load().unwrap());
    let who = principal(&[]);
    let input = PolicyInput::new("POST", "/v1/messages").principal(&who);
    let allowed = |h: &PolicyHandle| matches!(h.evaluate(&input).decision, Decision::Allow { .. });
    assert!(allowed(&handle));
    // A broken policy keeps the old one in force and names file, line, id.
    std::fs::write(
        &policies,
        "@id(\"broken\")\npermit(principal, action, resource) when { context.nope };\n",
    )
    .unwrap();
    let err = handle.reload_with("test", || files.load()).unwrap_err();
    assert_eq!(err.file, policies.display().to_string());
    assert_eq!((err.line, err.rule.as_deref()), (2, Some("broken")));
    assert_eq!(handle.last_error(), Some(err));
    assert!(allowed(&handle), "old policy still in force");
    // A broken context file too.
    std::fs::write(&policies, "").unwrap();
    std::fs::write(&context, "time_zone = 3\n").unwrap();
    let err = handle.reload_with("test", || files.load()).unwrap_err();
    assert_eq!(err.file, context.display().to_string());
    assert!(allowed(&handle));
    // Fixed: the new (empty) policy denies.
    std::fs::write(&context, "").unwrap();
    handle.reload_with("test", || files.load()).unwrap();
    assert!(handle.last_error().is_none());
    assert!(!allowed(&handle), "new (empty) policy denies");
    // A missing file is an error naming it (line 0).
    let err = CedarFiles::new(dir.path().join("missing.cedar"))
        .load()
        .unwrap_err();
    assert_eq!(err.line, 0);
}

#[tokio::test]
async fn file_watch_picks_up_context_changes() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policy.cedar");
    let context = dir.path().join("context.toml");
    std::fs::write(
        &policies,
        "@id(\"all\")\npermit(principal, action, resource);\n@id(\"kw\")\nforbid(principal, action, resource) when { context.keywords.contains(\"k\") };\n",
    )
    .unwrap();
    std::fs::write(&context, "[keywords.k]\nkeywords = [\"alpha\"]\n").unwrap();
    let files = CedarFiles::new(&policies).context(&context);
    let handle = PolicyHandle::new(files.load().unwrap());
    let watched = files.clone();
    let task = handle.watch_with(
        files.paths(),
        std::time::Duration::from_millis(20),
        move || watched.load(),
    );
    let req = body(json!({"model": "m", "messages": [{"role": "user", "content": "beta"}]}));
    let denied = || {
        handle
            .evaluate(&PolicyInput::new("POST", "/v1/messages").request(&req))
            .decision
            .rule()
            == Some("kw")
    };
    assert!(!denied());
    std::fs::write(&context, "[keywords.k]\nkeywords = [\"beta\"]\n").unwrap();
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&context)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let mut ok = false;
    for _ in 0..200 {
        if denied() {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    task.abort();
    assert!(ok, "watcher did not reload the context file");
}

#[tokio::test]
async fn through_the_layer_with_an_injected_clock() {
    use crate::body::Body;
    use crate::policy::PolicyLayer;
    use crate::wire::messages::RequestBody;
    use http::{Request, Response};
    use http_body_util::BodyExt;
    use std::convert::Infallible;
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    let policy = std::sync::Arc::new(
        CedarPolicy::builder()
            .context("time_zone = \"America/New_York\"\n", "context.toml")
            .build(
                r#"
                @id("finance-business-hours")
                permit(principal in Skillgate::Group::"finance", action, resource)
                when { context.time.weekday <= 5 && context.time.hour >= 9 && context.time.hour < 17 };
                "#,
                "policy.cedar",
            )
            .unwrap(),
    );
    let call = |at: &'static str| {
        let svc = ServiceBuilder::new()
            .layer(PolicyLayer::new(policy.clone()).clock(move || at.parse().unwrap()))
            .service(service_fn(|_req: Request<Body>| async {
                Ok::<_, Infallible>(Response::new(Body::empty()))
            }));
        let bytes = bytes::Bytes::from_static(
            br#"{"model":"claude-sonnet-4-5","max_tokens":10,"messages":[]}"#,
        );
        let mut req = Request::post("/v1/messages")
            .body(Body::from(bytes.clone()))
            .unwrap();
        req.extensions_mut().insert(RequestBody::new(bytes));
        req.extensions_mut().insert(principal(&["finance"]));
        svc.oneshot(req)
    };
    // Sunday 2026-03-08 15:00Z (11:00 EDT): denied, the message names the default rule.
    let res = call("2026-03-08T15:00:00Z").await.unwrap();
    assert_eq!(res.status(), 403);
    let text = res.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("`default`"), "{text}");
    // Monday 2026-03-09 13:00Z = 09:00 EDT (the day after DST starts): allowed.
    assert_eq!(call("2026-03-09T13:00:00Z").await.unwrap().status(), 200);
    // Friday 2026-03-06 13:30Z = 08:30 EST: not yet.
    assert_eq!(call("2026-03-06T13:30:00Z").await.unwrap().status(), 403);
}

/// One rule in both languages: (effect, selector, shadow) → (TOML, Cedar).
fn both(i: usize, effect: &str, selector: usize, shadow: bool) -> (String, String) {
    let (toml_sel, cedar_sel) = [
        ("", "true"),
        (
            "match = { groups = \"ci\" }",
            "principal in Skillgate::Group::\"ci\"",
        ),
        (
            "match = { models = \"claude-opus-*\" }",
            "resource is Skillgate::Model && resource.id like \"claude-opus-*\"",
        ),
        (
            "match = { keywords = \"secret\" }",
            "context.keywords.contains(\"secret\")",
        ),
        (
            "match = { max_tokens_above = 500 }",
            "context has max_tokens && context.max_tokens > 500",
        ),
        (
            "match = { paths = \"/v1/messages\" }",
            "context.path == \"/v1/messages\"",
        ),
    ][selector];
    let toml =
        format!("[[rule]]\nid = \"r{i}\"\neffect = \"{effect}\"\nshadow = {shadow}\n{toml_sel}\n");
    let (kind, annotation) = match effect {
        "deny" => ("forbid", ""),
        "require_approval" => ("permit", "@effect(\"require_approval\")\n"),
        _ => ("permit", ""),
    };
    let cedar = format!(
        "@id(\"r{i}\")\n@shadow(\"{shadow}\")\n{annotation}{kind}(principal, action, resource) when {{ {cedar_sel} }};\n"
    );
    (toml, cedar)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Random rule sets written in both languages decide random requests
    /// identically (decision, reasons, matches in order).
    #[test]
    fn both_engines_agree(
        rules in proptest::collection::vec(
            (prop_oneof![Just("allow"), Just("deny"), Just("require_approval")], 0usize..6, any::<bool>()),
            0..7,
        ),
        groups in prop_oneof![Just(vec!["ci"]), Just(vec![]), Just(vec!["ops", "ci"])],
        model in prop_oneof![Just("claude-opus-4-1"), Just("claude-sonnet-4-5")],
        text in prop_oneof![Just("hello"), Just("a SECRET plan")],
        max in 0u64..1000,
        path in prop_oneof![Just("/v1/messages"), Just("/v1/messages/count_tokens")],
    ) {
        let (toml, cedar_text): (String, String) = rules
            .iter()
            .enumerate()
            .map(|(i, (e, s, sh))| both(i, e, *s, *sh))
            .fold((String::new(), String::new()), |(a, b), (t, c)| (a + &t, b + &c));
        let r = RulesPolicy::from_toml(&toml, "p.toml").unwrap();
        let c = cedar(&cedar_text, "[keywords.secret]\nkeywords = [\"secret\"]\n");
        let who = principal(&groups);
        let req = body(json!({"model": model, "max_tokens": max, "messages": [{"role": "user", "content": text}]}));
        let input = PolicyInput::new("POST", path).principal(&who).request(&req);
        prop_assert_eq!(c.evaluate(&input), r.evaluate(&input));
    }
}

#[test]
fn gateway_config_selects_the_engine() {
    use crate::gateway::{ConfigError, PolicyConfig};
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policy.cedar");
    std::fs::write(
        &policies,
        "@id(\"all\")\npermit(principal, action, resource);\n",
    )
    .unwrap();
    let cfg = |text: String| -> PolicyConfig { toml::from_str(&text).unwrap() };
    let p = policies.display();
    let handle = cfg(format!(
        "engine = \"cedar\"\nfile = \"{p}\"\nwatch_interval_secs = 0\n"
    ))
    .load()
    .unwrap()
    .unwrap();
    let who = principal(&[]);
    assert!(matches!(
        handle
            .evaluate(&PolicyInput::new("GET", "/v1/models").principal(&who))
            .decision,
        Decision::Allow { .. }
    ));
    // The same file read by the rules engine does not parse.
    let e = cfg(format!("file = \"{p}\"\nwatch_interval_secs = 0\n"))
        .load()
        .unwrap_err();
    assert!(
        matches!(e, ConfigError::Invalid(ref m) if m.contains("policy.cedar:1")),
        "{e}"
    );
    // schema/context belong to the Cedar engine.
    let e = cfg(format!("file = \"{p}\"\ncontext = \"c.toml\"\n"))
        .load()
        .unwrap_err();
    assert!(e.to_string().contains("engine = \"cedar\""), "{e}");
    // A Cedar load error names the file, line and policy.
    std::fs::write(
        &policies,
        "\n@id(\"bad\")\n@effect(\"maybe\")\npermit(principal, action, resource);\n",
    )
    .unwrap();
    let e = cfg(format!(
        "engine = \"cedar\"\nfile = \"{p}\"\nwatch_interval_secs = 0\n"
    ))
    .load()
    .unwrap_err();
    assert!(e.to_string().contains("policy.cedar:2: rule `bad`"), "{e}");
}

#[test]
fn the_documented_examples_load() {
    let doc = include_str!("../../../docs/policy.md");
    let block = |lang: &str| -> Vec<String> {
        doc.split(&format!("```{lang}\n"))
            .skip(1)
            .filter_map(|b| b.split("```").next().map(str::to_owned))
            .collect()
    };
    let policies: String = block("cedar").concat();
    let context: String = block("toml")
        .into_iter()
        .filter(|b| b.starts_with("# cedar-context.toml"))
        .collect();
    let p = cedar(&policies, &context);
    assert_eq!(p.rule_ids().count(), 6);
    // The context-file reference example is valid as written.
    let reference = block("toml")
        .into_iter()
        .find(|b| b.starts_with("time_zone"))
        .expect("context file example");
    cedar("", &reference);
    // The error example's policy gives the documented message.
    let e = CedarPolicy::from_str(
        "@id(\"no-opus\")\nforbid(principal, action, resource is Skillgate::Model) when { resource.modle like \"x\" };",
        "policy.cedar",
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("policy.cedar:2: rule `no-opus`: for policy `no-opus`, attribute `modle` on entity type `Skillgate::Model` not found"),
        "{e}"
    );
}
