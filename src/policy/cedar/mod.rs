//! The Cedar policy engine (feature `cedar`): [`CedarPolicy`], policies in
//! the [Cedar](https://www.cedarpolicy.com) language validated against the
//! skillgate schema ([`SCHEMA`]). Reference: `docs/policy.md`.
//!
//! Cedar only says *permit* or *forbid*; skillgate reads each policy's
//! annotations for the rest (`@id`, `@effect`, `@reason`, `@shadow`,
//! obligations, `@time_zone`) and combines the policies that are satisfied
//! with [`Evaluation::combine`], exactly as for the rules engine: an enforced
//! `forbid` denies, else an enforced `permit` with
//! `@effect("require_approval")` requires approval, else any enforced
//! `permit` allows; nothing satisfied is a deny by rule `default`.
//!
//! To learn every satisfied policy (Cedar itself reports only the
//! determining ones), each policy is evaluated as a `permit` with the same
//! scope and conditions; its own effect is taken from the file. The Cedar
//! authorizer therefore never decides on its own, and shadow policies can
//! only ever be recorded.
//!
//! Keyword scanning and tool-name globs run in Rust (one regex-automata
//! multi-pattern search per prompt text, as for the rules engine): the
//! *context file* names keyword sets and tool sets, and the names of those
//! that hit are passed as `context.keywords` and `context.tool_sets`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Policy, PolicyId,
    PolicySet, Request, RestrictedExpression, Schema, ValidationMode, Validator,
};
use globset::GlobSet;
use jiff::tz::TimeZone;
use regex_automata::meta::Regex;
use regex_automata::{Input, MatchKind, PatternSet};
use serde::Deserialize;
use serde_json::Value;

use super::rules::{globs, line_of, time_zone};
use super::{
    Decision, Effect, Evaluation, Obligations, PolicyEngine, PolicyError, PolicyInput, RuleMatch,
    estimate_input_tokens,
};

/// The built-in skillgate Cedar schema (Cedar schema format): principal
/// `Skillgate::Principal` in `Skillgate::Group`s, one action per endpoint
/// family, resource `Skillgate::Model` or `Skillgate::Endpoint`, and the
/// request context. Documented field by field in the file itself and in
/// `docs/policy.md`.
///
/// ```
/// assert!(skillgate::policy::cedar::SCHEMA.contains("namespace Skillgate"));
/// ```
pub const SCHEMA: &str = include_str!("skillgate.cedarschema");

/// Annotations a policy may carry; any other is an error (a typo such as
/// `@efect` must not silently change a decision).
const ANNOTATIONS: &[&str] = &[
    "id",
    "effect",
    "reason",
    "shadow",
    "max_tokens",
    "redaction_profiles",
    "audit_level",
    "time_zone",
    "description",
    "approvers",
    "approvals_required",
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContextFile {
    time_zone: Option<String>,
    #[serde(default)]
    keywords: BTreeMap<String, toml::Spanned<KeywordSetConfig>>,
    #[serde(default)]
    tool_sets: BTreeMap<String, toml::Spanned<ToolSetConfig>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeywordSetConfig {
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    patterns: Vec<String>,
    #[serde(default)]
    case_sensitive: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolSetConfig {
    #[serde(default)]
    tools: Vec<String>,
    #[serde(default)]
    tool_types: Vec<String>,
    #[serde(default)]
    skills: Vec<String>,
}

struct ToolSet {
    name: String,
    tools: Option<GlobSet>,
    tool_types: Option<GlobSet>,
    skills: Option<GlobSet>,
}

/// The compiled context file: default time zone, keyword sets, tool sets.
struct ContextSpec {
    time_zone: TimeZone,
    keyword_names: Vec<String>,
    keywords: Option<Regex>,
    /// pattern index → keyword set index
    keyword_set: Vec<usize>,
    tool_sets: Vec<ToolSet>,
}

impl ContextSpec {
    fn parse(text: &str, file: &str) -> Result<ContextSpec, PolicyError> {
        let err = |line: usize, message: String| PolicyError {
            file: file.to_owned(),
            line,
            rule: None,
            message,
        };
        let parsed: ContextFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(1);
            err(line, e.message().to_owned())
        })?;
        let tz = match &parsed.time_zone {
            Some(name) => time_zone(name).map_err(|m| err(1, format!("time_zone: {m}")))?,
            None => TimeZone::UTC,
        };
        let mut patterns = Vec::new();
        let mut keyword_set = Vec::new();
        let mut keyword_names = Vec::new();
        for (name, spanned) in parsed.keywords {
            let line = line_of(text, spanned.span().start);
            let k = spanned.into_inner();
            let e = |m: String| err(line, format!("keywords.{name}: {m}"));
            let flags = if k.case_sensitive { "" } else { "(?i)" };
            let index = keyword_names.len();
            for w in &k.keywords {
                if w.is_empty() {
                    return Err(e("empty keyword".into()));
                }
                patterns.push(format!("{flags}{}", regex_syntax::escape(w)));
                keyword_set.push(index);
            }
            for p in &k.patterns {
                Regex::new(&format!("{flags}{p}"))
                    .map_err(|_| e(format!("invalid regex {p:?}")))?;
                patterns.push(format!("{flags}{p}"));
                keyword_set.push(index);
            }
            if k.keywords.is_empty() && k.patterns.is_empty() {
                return Err(e("give keywords or patterns".into()));
            }
            keyword_names.push(name);
        }
        let keywords = if patterns.is_empty() {
            None
        } else {
            Some(
                Regex::builder()
                    .configure(Regex::config().match_kind(MatchKind::All))
                    .build_many(&patterns)
                    .map_err(|e| err(1, format!("keywords: {e}")))?,
            )
        };
        let mut tool_sets = Vec::new();
        for (name, spanned) in parsed.tool_sets {
            let line = line_of(text, spanned.span().start);
            let t = spanned.into_inner();
            let g = |v: Vec<String>, what: &str| {
                if v.is_empty() {
                    return Ok(None);
                }
                globs(v, &format!("tool_sets.{name}.{what}"))
                    .map(Some)
                    .map_err(|m| err(line, m))
            };
            let set = ToolSet {
                tools: g(t.tools, "tools")?,
                tool_types: g(t.tool_types, "tool_types")?,
                skills: g(t.skills, "skills")?,
                name,
            };
            if set.tools.is_none() && set.tool_types.is_none() && set.skills.is_none() {
                return Err(err(
                    line,
                    format!("tool_sets.{}: give tools, tool_types or skills", set.name),
                ));
            }
            tool_sets.push(set);
        }
        Ok(ContextSpec {
            time_zone: tz,
            keyword_names,
            keywords,
            keyword_set,
            tool_sets,
        })
    }

    /// Names of the keyword sets found in the prompt text.
    fn keyword_hits(&self, input: &PolicyInput<'_>) -> Vec<&str> {
        let (Some(re), Some(req)) = (&self.keywords, input.request) else {
            return Vec::new();
        };
        let mut set = PatternSet::new(re.pattern_len());
        for text in req.prompt_texts() {
            re.which_overlapping_matches(&Input::new(text), &mut set);
            if set.is_full() {
                break;
            }
        }
        let mut hit = vec![false; self.keyword_names.len()];
        for pid in set.iter() {
            if let Some(i) = self.keyword_set.get(pid.as_usize()) {
                hit[*i] = true;
            }
        }
        self.keyword_names
            .iter()
            .zip(hit)
            .filter(|(_, h)| *h)
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// Names of the tool sets any requested tool, tool type or skill is in.
    fn tool_set_hits(&self, input: &PolicyInput<'_>) -> Vec<&str> {
        let Some(req) = input.request else {
            return Vec::new();
        };
        let any = |g: &Option<GlobSet>, mut values: Box<dyn Iterator<Item = &str> + '_>| {
            g.as_ref().is_some_and(|g| values.any(|v| g.is_match(v)))
        };
        self.tool_sets
            .iter()
            .filter(|s| {
                any(&s.tools, Box::new(req.tool_names()))
                    || any(&s.tool_types, Box::new(req.tool_types()))
                    || any(&s.skills, Box::new(req.skill_ids()))
            })
            .map(|s| s.name.as_str())
            .collect()
    }
}

/// One policy's skillgate meaning, from its effect and annotations.
struct Meta {
    id: String,
    effect: Effect,
    shadow: bool,
    reason: String,
    obligations: Obligations,
    approvers: Vec<String>,
    approvals_required: u32,
}

/// Entity type and action names, parsed once.
struct Names {
    principal: EntityTypeName,
    group: EntityTypeName,
    model: EntityTypeName,
    endpoint: EntityTypeName,
    action: EntityTypeName,
}

impl Names {
    fn new() -> Result<Names, String> {
        let t = |s: &str| EntityTypeName::from_str(s).map_err(|e| e.to_string());
        Ok(Names {
            principal: t("Skillgate::Principal")?,
            group: t("Skillgate::Group")?,
            model: t("Skillgate::Model")?,
            endpoint: t("Skillgate::Endpoint")?,
            action: t("Skillgate::Action")?,
        })
    }
}

/// A compiled Cedar policy set with its schema and context file: a
/// [`PolicyEngine`]. Immutable and cheap to share; reloads build a new one
/// (see [`CedarFiles`]).
///
/// ```
/// use skillgate::identity::Principal;
/// use skillgate::policy::{Decision, PolicyEngine, PolicyInput, cedar::CedarPolicy};
/// use skillgate::wire::messages::MessagesRequest;
/// let policy = CedarPolicy::from_str(r#"
///     @id("ci-messages")
///     permit(principal in Skillgate::Group::"ci", action == Skillgate::Action::"messages", resource);
///
///     @id("no-opus-for-ci")
///     @reason("Opus models are not for CI jobs")
///     forbid(principal in Skillgate::Group::"ci", action, resource is Skillgate::Model)
///     when { resource.id like "claude-opus-*" };
/// "#, "policy.cedar").unwrap();
/// let p = Principal::new("https://idp", "job-1").with_groups(["ci"]);
/// let body = MessagesRequest::parse(br#"{"model":"claude-opus-4-1","messages":[]}"#).unwrap();
/// let input = PolicyInput::new("POST", "/v1/messages").principal(&p).request(&body);
/// assert_eq!(policy.evaluate(&input).decision.rule(), Some("no-opus-for-ci"));
/// ```
pub struct CedarPolicy {
    schema: Schema,
    names: Names,
    rules: Vec<Meta>,
    index: HashMap<String, usize>,
    /// Policies (all as `permit`) grouped by the time zone of `context.time`.
    partitions: Vec<(TimeZone, PolicySet)>,
    spec: ContextSpec,
    authorizer: Authorizer,
}

impl std::fmt::Debug for CedarPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CedarPolicy")
            .field("rules", &self.rule_ids().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Builds a [`CedarPolicy`] from text: an optional schema (default
/// [`SCHEMA`]) and an optional context file, then the policies.
///
/// ```
/// use skillgate::policy::cedar::CedarPolicy;
/// let policy = CedarPolicy::builder()
///     .context("time_zone = \"Europe/Berlin\"\n[keywords.customer-export]\nkeywords = [\"customer export\"]\n", "context.toml")
///     .build(r#"
///         @id("customer-export")
///         @effect("require_approval")
///         permit(principal, action, resource) when { context.keywords.contains("customer-export") };
///     "#, "policy.cedar")
///     .unwrap();
/// assert_eq!(policy.rule_ids().collect::<Vec<_>>(), ["customer-export"]);
/// ```
#[derive(Debug, Clone, Default)]
pub struct CedarBuilder {
    schema: Option<(String, String)>,
    context: Option<(String, String)>,
}

impl CedarBuilder {
    /// Uses `text` (Cedar schema format, named `file` in errors) instead of
    /// [`SCHEMA`]. It must describe the same principal, resource, action and
    /// context shapes that skillgate builds (requests that do not fit are
    /// denied); use it to narrow what policies may use.
    pub fn schema(mut self, text: impl Into<String>, file: impl Into<String>) -> Self {
        self.schema = Some((text.into(), file.into()));
        self
    }

    /// Uses `text` as the context file (TOML, named `file` in errors):
    /// `time_zone`, `[keywords.NAME]` and `[tool_sets.NAME]` (see
    /// `docs/policy.md`).
    pub fn context(mut self, text: impl Into<String>, file: impl Into<String>) -> Self {
        self.context = Some((text.into(), file.into()));
        self
    }

    /// Parses, validates and compiles the policies in `text` (`file` names
    /// it in errors).
    ///
    /// # Errors
    /// [`PolicyError`] naming the file (policies, schema or context file),
    /// the line and the policy id: syntax errors, templates, a missing,
    /// empty or duplicate `@id`, unknown or invalid annotations, schema
    /// validation errors (strict mode), references to keyword or tool sets
    /// that the context file does not define.
    pub fn build(&self, text: &str, file: &str) -> Result<CedarPolicy, PolicyError> {
        let (schema_text, schema_file) = match &self.schema {
            Some((t, f)) => (t.as_str(), f.as_str()),
            None => (SCHEMA, "skillgate.cedarschema"),
        };
        let schema = parse_schema(schema_text, schema_file)?;
        let spec = match &self.context {
            Some((t, f)) => ContextSpec::parse(t, f)?,
            None => ContextSpec::parse("", "")?,
        };
        compile(text, file, schema, spec)
    }
}

fn diag_line(d: &dyn miette::Diagnostic, text: &str) -> Option<usize> {
    d.labels()
        .and_then(|mut l| l.next())
        .map(|l| line_of(text, l.offset()))
}

fn diag_message(d: &dyn miette::Diagnostic) -> String {
    match d.help() {
        Some(h) => format!("{d}; {h}"),
        None => d.to_string(),
    }
}

fn parse_schema(text: &str, file: &str) -> Result<Schema, PolicyError> {
    match Schema::from_cedarschema_str(text) {
        Ok((schema, warnings)) => {
            for w in warnings {
                tracing::warn!(file, warning = %w, "Cedar schema warning");
            }
            Ok(schema)
        }
        Err(e) => Err(PolicyError {
            file: file.to_owned(),
            line: diag_line(&e, text).unwrap_or(1),
            rule: None,
            message: diag_message(&e),
        }),
    }
}

/// The annotation-derived meaning of one policy.
fn meta_of(p: &Policy, id: &str) -> Result<(Meta, Option<TimeZone>), String> {
    for (k, _) in p.annotations() {
        if !ANNOTATIONS.contains(&k) {
            return Err(format!(
                "unknown annotation @{k} (known: {})",
                ANNOTATIONS.join(", ")
            ));
        }
    }
    let effect = match (p.effect(), p.annotation("effect")) {
        (cedar_policy::Effect::Forbid, None | Some("deny")) => Effect::Deny,
        (cedar_policy::Effect::Permit, None | Some("allow")) => Effect::Allow,
        (cedar_policy::Effect::Permit, Some("require_approval")) => Effect::RequireApproval,
        (cedar_policy::Effect::Forbid, Some(e)) => {
            return Err(format!(
                "@effect({e:?}) on a forbid policy: forbid always denies"
            ));
        }
        (cedar_policy::Effect::Permit, Some(e)) => {
            return Err(format!(
                "@effect({e:?}): a permit policy is \"allow\" or \"require_approval\""
            ));
        }
    };
    let shadow = match p.annotation("shadow") {
        None | Some("false") => false,
        Some("true") | Some("") => true,
        Some(s) => return Err(format!("@shadow({s:?}): \"true\" or \"false\"")),
    };
    let max_tokens = p
        .annotation("max_tokens")
        .map(|s| {
            s.trim()
                .parse::<u64>()
                .map_err(|_| format!("@max_tokens({s:?}): a whole number"))
        })
        .transpose()?;
    let redaction_profiles: Vec<String> = p
        .annotation("redaction_profiles")
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let audit_level = p.annotation("audit_level").map(str::to_owned);
    let obligations = Obligations {
        max_tokens,
        redaction_profiles,
        audit_level,
    };
    if effect == Effect::Deny && !obligations.is_empty() {
        return Err("obligations (@max_tokens, @redaction_profiles, @audit_level) apply to permit policies only".into());
    }
    let approvers: Vec<String> = p
        .annotation("approvers")
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let approvals_required = p
        .annotation("approvals_required")
        .map(|s| match s.trim().parse::<u32>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(format!(
                "@approvals_required({s:?}): a whole number, at least 1"
            )),
        })
        .transpose()?;
    if effect != Effect::RequireApproval && (!approvers.is_empty() || approvals_required.is_some())
    {
        return Err(
            "@approvers and @approvals_required apply to require_approval policies only".into(),
        );
    }
    let tz = p
        .annotation("time_zone")
        .map(|n| time_zone(n).map_err(|m| format!("@time_zone: {m}")))
        .transpose()?;
    let reason = p
        .annotation("reason")
        .map(str::to_owned)
        .unwrap_or_else(|| match effect {
            Effect::Deny => format!("denied by policy rule {id}"),
            Effect::RequireApproval => format!("approval required by policy rule {id}"),
            Effect::Allow => String::new(),
        });
    Ok((
        Meta {
            id: id.to_owned(),
            effect,
            shadow,
            reason,
            obligations,
            approvers,
            approvals_required: approvals_required.unwrap_or(1),
        },
        tz,
    ))
}

/// The string literals a policy tests `context.<attr>` for with
/// `contains`, `containsAll` or `containsAny` (from its JSON form).
fn set_references(est: &Value, attr: &str, out: &mut Vec<String>) {
    match est {
        Value::Object(m) => {
            for (k, v) in m {
                if matches!(k.as_str(), "contains" | "containsAll" | "containsAny")
                    && let (Some(left), Some(right)) = (v.get("left"), v.get("right"))
                    && left.pointer("/./left/Var").and_then(Value::as_str) == Some("context")
                    && left.pointer("/./attr").and_then(Value::as_str) == Some(attr)
                {
                    literal_strings(right, out);
                }
                set_references(v, attr, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| set_references(v, attr, out)),
        _ => {}
    }
}

fn literal_strings(v: &Value, out: &mut Vec<String>) {
    if let Some(s) = v.get("Value").and_then(Value::as_str) {
        out.push(s.to_owned());
    }
    if let Some(items) = v.get("Set").and_then(Value::as_array) {
        items.iter().for_each(|i| literal_strings(i, out));
    }
}

fn compile(
    text: &str,
    file: &str,
    schema: Schema,
    spec: ContextSpec,
) -> Result<CedarPolicy, PolicyError> {
    let err = |line: usize, rule: Option<&str>, message: String| PolicyError {
        file: file.to_owned(),
        line,
        rule: rule.map(str::to_owned),
        message,
    };
    let parsed = PolicySet::from_str(text)
        .map_err(|e| err(diag_line(&e, text).unwrap_or(1), None, diag_message(&e)))?;
    if let Some(t) = parsed.templates().next() {
        let line = t
            .to_cedar()
            .lines()
            .next()
            .and_then(|first| text.find(first))
            .map(|o| line_of(text, o))
            .unwrap_or(1);
        return Err(err(line, None, "policy templates are not supported".into()));
    }
    // `from_str` names policies policy0, policy1, … in file order.
    let mut policies: Vec<&Policy> = parsed.policies().collect();
    policies.sort_by_key(|p| {
        pid(p.id())
            .strip_prefix("policy")
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(usize::MAX)
    });
    let mut cursor = 0;
    let mut rules = Vec::new();
    let mut lines = HashMap::new();
    let mut index = HashMap::new();
    let mut named = PolicySet::new();
    let mut zones: Vec<Option<TimeZone>> = Vec::new();
    for p in policies {
        // The policy's own text, found in order, gives its first line.
        let src = p.to_cedar().unwrap_or_default();
        let line = match text.get(cursor..).and_then(|rest| rest.find(&src)) {
            Some(at) if !src.is_empty() => {
                cursor += at + src.len();
                line_of(text, cursor - src.len())
            }
            _ => line_of(text, cursor),
        };
        let id = match p.annotation("id") {
            Some(id) if !id.trim().is_empty() => id.to_owned(),
            Some(_) => return Err(err(line, None, "@id must not be empty".into())),
            None => {
                return Err(err(
                    line,
                    None,
                    "policy without @id(\"…\"): every policy needs a unique id".into(),
                ));
            }
        };
        if index.contains_key(&id) {
            return Err(err(line, Some(&id), "duplicate policy id".into()));
        }
        let (meta, tz) = meta_of(p, &id).map_err(|m| err(line, Some(&id), m))?;
        named
            .add(p.new_id(PolicyId::new(&id)))
            .map_err(|e| err(line, Some(&id), e.to_string()))?;
        index.insert(id.clone(), rules.len());
        lines.insert(id, line);
        rules.push(meta);
        zones.push(tz);
    }

    let validation = Validator::new(schema.clone()).validate(&named, ValidationMode::Strict);
    for w in validation.validation_warnings() {
        tracing::warn!(file, warning = %w, "Cedar policy warning");
    }
    if let Some(e) = validation.validation_errors().next() {
        let id = e.policy_id().to_string();
        let line = diag_line(e, text)
            .or_else(|| lines.get(&id).copied())
            .unwrap_or(1);
        let more = validation.validation_errors().count() - 1;
        let mut message = diag_message(e);
        if more > 0 {
            message.push_str(&format!(" (and {more} more validation errors)"));
        }
        return Err(err(line, Some(&id), message));
    }

    // Every policy as a `permit` (same scope and conditions), so the
    // authorizer reports each satisfied one; grouped by time zone.
    let mut partitions: Vec<(TimeZone, PolicySet)> = Vec::new();
    for (meta, tz) in rules.iter().zip(zones) {
        let id = meta.id.as_str();
        let line = lines.get(id).copied().unwrap_or(1);
        let p = named
            .policy(&PolicyId::new(id))
            .ok_or_else(|| err(line, Some(id), "internal: policy vanished".into()))?;
        let mut est = p
            .to_json()
            .map_err(|e| err(line, Some(id), e.to_string()))?;
        for (attr, known) in [
            ("keywords", &spec.keyword_names),
            (
                "tool_sets",
                &spec.tool_sets.iter().map(|s| s.name.clone()).collect(),
            ),
        ] {
            let mut refs = Vec::new();
            set_references(&est, attr, &mut refs);
            if let Some(unknown) = refs.iter().find(|r| !known.contains(r)) {
                return Err(err(
                    line,
                    Some(id),
                    format!(
                        "context.{attr}: {unknown:?} is not defined in the context file ([{attr}.{unknown}])"
                    ),
                ));
            }
        }
        est["effect"] = Value::from("permit");
        let as_permit = Policy::from_json(Some(PolicyId::new(id)), est)
            .map_err(|e| err(line, Some(id), e.to_string()))?;
        let tz = tz.unwrap_or_else(|| spec.time_zone.clone());
        let slot = match partitions.iter().position(|(z, _)| *z == tz) {
            Some(i) => i,
            None => {
                partitions.push((tz, PolicySet::new()));
                partitions.len() - 1
            }
        };
        partitions[slot]
            .1
            .add(as_permit)
            .map_err(|e| err(line, Some(id), e.to_string()))?;
    }
    let names = Names::new().map_err(|m| err(1, None, format!("internal: {m}")))?;
    Ok(CedarPolicy {
        schema,
        names,
        rules,
        index,
        partitions,
        spec,
        authorizer: Authorizer::new(),
    })
}

/// The Cedar action for an endpoint: one per endpoint family.
///
/// ```
/// use skillgate::policy::cedar::action_for;
/// assert_eq!(action_for("/v1/messages"), "messages");
/// assert_eq!(action_for("/v1/messages/batches/msgbatch_1/results"), "batches");
/// assert_eq!(action_for("/v1/models"), "models");
/// assert_eq!(action_for("/v1/modelsx"), "other");
/// ```
pub fn action_for(path: &str) -> &'static str {
    let under = |prefix: &str| {
        path == prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    if path == "/v1/messages" {
        "messages"
    } else if path == "/v1/messages/count_tokens" {
        "count_tokens"
    } else if under("/v1/messages/batches") {
        "batches"
    } else if under("/v1/models") {
        "models"
    } else if under("/v1/files") {
        "files"
    } else if under("/v1/skills") {
        "skills"
    } else {
        "other"
    }
}

/// Flattens claims into scalar tags (dot paths) and `path=value` strings.
fn flatten_claims(
    prefix: &str,
    v: &Value,
    depth: usize,
    tags: &mut BTreeMap<String, String>,
    values: &mut BTreeSet<String>,
) {
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(_) | Value::Bool(_) => Some(v.to_string()),
        _ => None,
    };
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_claims(&path, v, depth + 1, tags, values);
            }
        }
        Value::Array(items) => {
            for s in items.iter().filter_map(scalar) {
                values.insert(format!("{prefix}={s}"));
            }
        }
        other => {
            if let Some(s) = scalar(other) {
                values.insert(format!("{prefix}={s}"));
                // A claim named with the whole dotted path wins over a
                // nested one (as `Principal::claim` looks them up).
                if depth <= 1 {
                    tags.insert(prefix.to_owned(), s);
                } else {
                    tags.entry(prefix.to_owned()).or_insert(s);
                }
            }
        }
    }
}

fn pid(id: &PolicyId) -> &str {
    id.as_ref()
}

fn long(n: u64) -> RestrictedExpression {
    RestrictedExpression::new_long(i64::try_from(n).unwrap_or(i64::MAX))
}

fn string_set<'a>(items: impl IntoIterator<Item = &'a str>) -> RestrictedExpression {
    RestrictedExpression::new_set(
        items
            .into_iter()
            .map(|s| RestrictedExpression::new_string(s.to_owned())),
    )
}

fn time_record(now: jiff::Timestamp, tz: &TimeZone) -> Result<RestrictedExpression, String> {
    let z = now.to_zoned(tz.clone());
    let day = match z.weekday() {
        jiff::civil::Weekday::Monday => "mon",
        jiff::civil::Weekday::Tuesday => "tue",
        jiff::civil::Weekday::Wednesday => "wed",
        jiff::civil::Weekday::Thursday => "thu",
        jiff::civil::Weekday::Friday => "fri",
        jiff::civil::Weekday::Saturday => "sat",
        jiff::civil::Weekday::Sunday => "sun",
    };
    let (hour, minute) = (i64::from(z.hour()), i64::from(z.minute()));
    RestrictedExpression::new_record([
        (
            "day".to_owned(),
            RestrictedExpression::new_string(day.into()),
        ),
        (
            "weekday".to_owned(),
            RestrictedExpression::new_long(i64::from(z.weekday().to_monday_one_offset())),
        ),
        ("hour".to_owned(), RestrictedExpression::new_long(hour)),
        ("minute".to_owned(), RestrictedExpression::new_long(minute)),
        (
            "minutes".to_owned(),
            RestrictedExpression::new_long(hour * 60 + minute),
        ),
    ])
    .map_err(|e| e.to_string())
}

impl CedarPolicy {
    /// A builder for a custom schema or a context file.
    pub fn builder() -> CedarBuilder {
        CedarBuilder::default()
    }

    /// Parses, validates (against [`SCHEMA`]) and compiles `text`, without
    /// a context file (`context.time` in UTC, no keyword or tool sets).
    /// `file` names it in errors.
    ///
    /// ```
    /// use skillgate::policy::cedar::CedarPolicy;
    /// let err = CedarPolicy::from_str("\n@id(\"typo\")\npermit(principal, action, resource) when { context.modle == \"x\" };", "p.cedar").unwrap_err();
    /// assert_eq!((err.file.as_str(), err.line, err.rule.as_deref()), ("p.cedar", 3, Some("typo")));
    /// ```
    ///
    /// # Errors
    /// See [`CedarBuilder::build`].
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(text: &str, file: &str) -> Result<CedarPolicy, PolicyError> {
        CedarBuilder::default().build(text, file)
    }

    /// Reads and compiles the policies file, with an optional schema file
    /// (default [`SCHEMA`]) and an optional context file.
    ///
    /// # Errors
    /// [`PolicyError`] naming the file at fault (line 0 when it cannot be
    /// read); see [`CedarBuilder::build`].
    pub fn from_files(
        policies: &Path,
        schema: Option<&Path>,
        context: Option<&Path>,
    ) -> Result<CedarPolicy, PolicyError> {
        let read = |p: &Path| {
            let shown = p.display().to_string();
            std::fs::read_to_string(p)
                .map(|t| (t, shown.clone()))
                .map_err(|e| PolicyError {
                    file: shown,
                    line: 0,
                    rule: None,
                    message: e.to_string(),
                })
        };
        let mut b = CedarBuilder::default();
        if let Some(s) = schema {
            let (t, f) = read(s)?;
            b = b.schema(t, f);
        }
        if let Some(c) = context {
            let (t, f) = read(c)?;
            b = b.context(t, f);
        }
        let (t, f) = read(policies)?;
        b.build(&t, &f)
    }

    /// The policy ids, in file order.
    pub fn rule_ids(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.id.as_str())
    }

    fn entities(
        &self,
        input: &PolicyInput<'_>,
    ) -> Result<(EntityUid, EntityUid, Entities), String> {
        let uid = |t: &EntityTypeName, id: &str| {
            EntityUid::from_type_name_and_id(t.clone(), EntityId::new(id))
        };
        let mut entities = Vec::new();
        let principal = match input.principal {
            Some(p) => {
                let me = uid(&self.names.principal, &p.id());
                let mut tags = BTreeMap::new();
                let mut values = BTreeSet::new();
                flatten_claims(
                    "",
                    &Value::Object(p.claims.clone()),
                    0,
                    &mut tags,
                    &mut values,
                );
                for (k, v) in &p.attributes {
                    tags.insert(k.clone(), v.clone());
                }
                let mut attrs = vec![
                    (
                        "issuer".to_owned(),
                        RestrictedExpression::new_string(p.issuer.clone()),
                    ),
                    (
                        "subject".to_owned(),
                        RestrictedExpression::new_string(p.subject.clone()),
                    ),
                    (
                        "scopes".to_owned(),
                        string_set(p.scopes.iter().map(String::as_str)),
                    ),
                    (
                        "claim_values".to_owned(),
                        string_set(values.iter().map(String::as_str)),
                    ),
                ];
                if let Some(c) = &p.client_id {
                    attrs.push((
                        "client_id".to_owned(),
                        RestrictedExpression::new_string(c.clone()),
                    ));
                }
                let groups: Vec<EntityUid> =
                    p.groups.iter().map(|g| uid(&self.names.group, g)).collect();
                for g in &groups {
                    entities.push(Entity::with_uid(g.clone()));
                }
                entities.push(
                    Entity::new_with_tags(
                        me.clone(),
                        attrs,
                        groups,
                        tags.into_iter()
                            .map(|(k, v)| (k, RestrictedExpression::new_string(v))),
                    )
                    .map_err(|e| e.to_string())?,
                );
                me
            }
            None => {
                let me = uid(&self.names.principal, "");
                entities.push(
                    Entity::new_with_tags(
                        me.clone(),
                        [
                            (
                                "issuer".to_owned(),
                                RestrictedExpression::new_string(String::new()),
                            ),
                            (
                                "subject".to_owned(),
                                RestrictedExpression::new_string(String::new()),
                            ),
                            ("scopes".to_owned(), string_set([])),
                            ("claim_values".to_owned(), string_set([])),
                        ],
                        [],
                        [],
                    )
                    .map_err(|e| e.to_string())?,
                );
                me
            }
        };
        let resource = match input.request.and_then(|r| r.model()) {
            Some(m) => {
                let r = uid(&self.names.model, m);
                entities.push(
                    Entity::new(
                        r.clone(),
                        [(
                            "id".to_owned(),
                            RestrictedExpression::new_string(m.to_owned()),
                        )]
                        .into_iter()
                        .collect(),
                        Default::default(),
                    )
                    .map_err(|e| e.to_string())?,
                );
                r
            }
            None => {
                let r = uid(&self.names.endpoint, input.path);
                entities.push(
                    Entity::new(
                        r.clone(),
                        [(
                            "path".to_owned(),
                            RestrictedExpression::new_string(input.path.to_owned()),
                        )]
                        .into_iter()
                        .collect(),
                        Default::default(),
                    )
                    .map_err(|e| e.to_string())?,
                );
                r
            }
        };
        let entities =
            Entities::from_entities(entities, Some(&self.schema)).map_err(|e| e.to_string())?;
        Ok((principal, resource, entities))
    }

    fn context_pairs(&self, input: &PolicyInput<'_>) -> Vec<(String, RestrictedExpression)> {
        let req = input.request;
        let mut pairs = vec![
            (
                "method".to_owned(),
                RestrictedExpression::new_string(input.method.to_owned()),
            ),
            (
                "path".to_owned(),
                RestrictedExpression::new_string(input.path.to_owned()),
            ),
            ("body_bytes".to_owned(), long(input.body_bytes as u64)),
            (
                "estimated_input_tokens".to_owned(),
                long(req.map(estimate_input_tokens).unwrap_or(0)),
            ),
            (
                "stream".to_owned(),
                RestrictedExpression::new_bool(req.is_some_and(|r| r.stream())),
            ),
            (
                "tools".to_owned(),
                string_set(req.into_iter().flat_map(|r| r.tool_names())),
            ),
            (
                "tool_types".to_owned(),
                string_set(req.into_iter().flat_map(|r| r.tool_types())),
            ),
            (
                "skills".to_owned(),
                string_set(req.into_iter().flat_map(|r| r.skill_ids())),
            ),
            (
                "tool_sets".to_owned(),
                string_set(self.spec.tool_set_hits(input)),
            ),
            (
                "keywords".to_owned(),
                string_set(self.spec.keyword_hits(input)),
            ),
        ];
        if let Some(n) = req.and_then(|r| r.max_tokens()) {
            pairs.push(("max_tokens".to_owned(), long(n)));
        }
        pairs
    }

    /// Which policies are satisfied (`true`) or failed to evaluate (`false`).
    fn hits(&self, input: &PolicyInput<'_>) -> Result<Vec<Option<bool>>, String> {
        let (principal, resource, entities) = self.entities(input)?;
        let action = EntityUid::from_type_name_and_id(
            self.names.action.clone(),
            EntityId::new(action_for(input.path)),
        );
        let base = self.context_pairs(input);
        let mut hits = vec![None; self.rules.len()];
        for (tz, set) in &self.partitions {
            let mut pairs = base.clone();
            pairs.push(("time".to_owned(), time_record(input.now, tz)?));
            let context = Context::from_pairs(pairs).map_err(|e| e.to_string())?;
            let request = Request::new(
                principal.clone(),
                action.clone(),
                resource.clone(),
                context,
                Some(&self.schema),
            )
            .map_err(|e| e.to_string())?;
            let response = self.authorizer.is_authorized(&request, set, &entities);
            for id in response.diagnostics().reason() {
                if let Some(i) = self.index.get(pid(id)) {
                    hits[*i] = Some(true);
                }
            }
            for e in response.diagnostics().errors() {
                let cedar_policy::AuthorizationError::PolicyEvaluationError(e) = e;
                tracing::warn!(policy = %e.policy_id(), error = %e.inner(), "Cedar policy could not be evaluated");
                if let Some(i) = self.index.get(pid(e.policy_id())) {
                    hits[*i] = Some(false);
                }
            }
        }
        Ok(hits)
    }
}

impl PolicyEngine for CedarPolicy {
    /// Evaluates every policy; satisfied ones become matches combined by
    /// [`Evaluation::combine`]. A policy whose evaluation fails counts as
    /// satisfied when it is a `forbid` or requires approval (fail closed)
    /// and as not satisfied when it allows. A request that cannot be put to
    /// Cedar at all (it does not fit the schema) is denied by rule `cedar`.
    fn evaluate(&self, input: &PolicyInput<'_>) -> Evaluation {
        let hits = match self.hits(input) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "Cedar request could not be built; denying");
                return Evaluation {
                    decision: Decision::Deny {
                        rule: "cedar".into(),
                        reason: "the request could not be evaluated by the Cedar policy".into(),
                    },
                    matched: Vec::new(),
                };
            }
        };
        let matches = self
            .rules
            .iter()
            .zip(hits)
            .filter_map(|(r, hit)| {
                let reason = match hit {
                    Some(true) => r.reason.clone(),
                    Some(false) if r.effect != Effect::Allow => {
                        format!("policy rule {} could not be evaluated", r.id)
                    }
                    _ => return None,
                };
                Some((
                    RuleMatch {
                        id: r.id.clone(),
                        effect: r.effect,
                        shadow: r.shadow,
                    },
                    reason,
                    r.obligations.clone(),
                ))
            })
            .collect();
        let mut eval = Evaluation::combine(matches);
        if let Decision::RequireApproval {
            rule,
            approvers,
            approvals_required,
            ..
        } = &mut eval.decision
            && let Some(r) = self.rules.iter().find(|r| &r.id == rule)
        {
            approvers.clone_from(&r.approvers);
            *approvals_required = r.approvals_required;
        }
        eval
    }
}

/// Where a Cedar policy comes from on disk: the policies file, and
/// optionally a schema file and a context file. Load it with
/// [`load`](Self::load); hot-reload it through a
/// [`PolicyHandle`](super::PolicyHandle) with
/// [`watch_with`](super::PolicyHandle::watch_with) over [`paths`](Self::paths).
///
/// ```no_run
/// use std::time::Duration;
/// use skillgate::policy::{PolicyHandle, cedar::CedarFiles};
/// # async fn run() -> Result<(), skillgate::policy::PolicyError> {
/// let files = CedarFiles::new("/etc/skillgate/policy.cedar").context("/etc/skillgate/cedar-context.toml");
/// let handle = PolicyHandle::new(files.load()?);
/// let watched = files.clone();
/// handle.watch_with(files.paths(), Duration::from_secs(2), move || watched.load());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CedarFiles {
    /// The Cedar policies.
    pub policies: PathBuf,
    /// A schema replacing [`SCHEMA`].
    pub schema: Option<PathBuf>,
    /// The context file (time zone, keyword sets, tool sets).
    pub context: Option<PathBuf>,
}

impl CedarFiles {
    /// The policies file alone.
    pub fn new(policies: impl Into<PathBuf>) -> Self {
        CedarFiles {
            policies: policies.into(),
            schema: None,
            context: None,
        }
    }
    /// Sets the schema file.
    pub fn schema(mut self, path: impl Into<PathBuf>) -> Self {
        self.schema = Some(path.into());
        self
    }
    /// Sets the context file.
    pub fn context(mut self, path: impl Into<PathBuf>) -> Self {
        self.context = Some(path.into());
        self
    }
    /// Every file, for watching.
    pub fn paths(&self) -> Vec<PathBuf> {
        std::iter::once(self.policies.clone())
            .chain(self.schema.clone())
            .chain(self.context.clone())
            .collect()
    }
    /// Reads and compiles the files.
    ///
    /// # Errors
    /// See [`CedarPolicy::from_files`].
    pub fn load(&self) -> Result<CedarPolicy, PolicyError> {
        CedarPolicy::from_files(
            &self.policies,
            self.schema.as_deref(),
            self.context.as_deref(),
        )
    }
}

#[cfg(test)]
mod tests;
