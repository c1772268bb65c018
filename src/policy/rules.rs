//! The built-in rules engine: [`RulesPolicy`], compiled from a TOML policy
//! file. The file format is documented in `docs/policy.md`.

use std::collections::BTreeMap;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use regex_automata::meta::Regex;
use regex_automata::{Input, MatchKind, PatternSet};
use serde::Deserialize;
use serde_json::Value;

use super::{Effect, Evaluation, Obligations, PolicyEngine, PolicyInput, RuleMatch};

/// Why a policy file was refused: the file, the line and the rule at fault.
///
/// ```
/// use skillgate::policy::RulesPolicy;
/// let err = RulesPolicy::from_toml("[[rule]]\nid = \"a\"\neffect = \"allow\"\n[rule.match]\nmodels = [\"[\"]\n", "p.toml")
///     .unwrap_err();
/// assert!(err.to_string().starts_with("p.toml:1: rule `a`:"), "{err}");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {}{message}", rule.as_ref().map(|r| format!("rule `{r}`: ")).unwrap_or_default())]
pub struct PolicyError {
    /// The policy file (as named by the caller).
    pub file: String,
    /// 1-based line of the problem (the rule's first line for rule errors).
    pub line: usize,
    /// The rule at fault, if the problem is in a rule.
    pub rule: Option<String>,
    /// What is wrong.
    pub message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    defaults: Defaults,
    #[serde(default, rename = "rule")]
    rules: Vec<toml::Spanned<RuleConfig>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Defaults {
    time_zone: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleConfig {
    id: String,
    effect: Effect,
    #[serde(default)]
    shadow: bool,
    reason: Option<String>,
    #[serde(default, rename = "match")]
    when: MatchConfig,
    #[serde(default)]
    obligations: ObligationsConfig,
    /// Groups whose members may approve (require_approval rules only).
    #[serde(default)]
    approvers: Option<OneOrMany>,
    /// Distinct approvals needed (require_approval rules only; default 1).
    approvals_required: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ObligationsConfig {
    max_tokens: Option<u64>,
    #[serde(default)]
    redaction_profiles: Vec<String>,
    audit_level: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ClaimMatchConfig {
    Glob(String),
    Many(Vec<String>),
    Op(ClaimOp),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimOp {
    equals: Option<String>,
    glob: Option<String>,
    regex: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchConfig {
    issuer: Option<OneOrMany>,
    subject: Option<OneOrMany>,
    groups: Option<OneOrMany>,
    scopes: Option<OneOrMany>,
    #[serde(default)]
    claims: BTreeMap<String, ClaimMatchConfig>,
    methods: Option<OneOrMany>,
    paths: Option<OneOrMany>,
    models: Option<OneOrMany>,
    max_tokens_above: Option<u64>,
    body_bytes_above: Option<u64>,
    input_tokens_above: Option<u64>,
    tools: Option<OneOrMany>,
    tool_types: Option<OneOrMany>,
    skills: Option<OneOrMany>,
    keywords: Option<OneOrMany>,
    patterns: Option<OneOrMany>,
    #[serde(default)]
    case_sensitive: bool,
    time: Option<TimeConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeConfig {
    #[serde(default)]
    days: Vec<String>,
    hours: Option<String>,
    time_zone: Option<String>,
    #[serde(default)]
    outside: bool,
}

enum ClaimMatcher {
    Equals(String),
    Glob(GlobSet),
    Regex(Box<Regex>),
}

struct TimeWindow {
    days: Vec<Weekday>,
    hours: Option<(Time, Time)>,
    tz: TimeZone,
    outside: bool,
}

#[derive(Default)]
struct Matcher {
    issuer: Option<GlobSet>,
    subject: Option<GlobSet>,
    groups: Option<Vec<String>>,
    scopes: Option<Vec<String>>,
    claims: Vec<(String, ClaimMatcher)>,
    methods: Option<Vec<String>>,
    paths: Option<GlobSet>,
    models: Option<GlobSet>,
    max_tokens_above: Option<u64>,
    body_bytes_above: Option<u64>,
    input_tokens_above: Option<u64>,
    tools: Option<GlobSet>,
    tool_types: Option<GlobSet>,
    skills: Option<GlobSet>,
    has_keywords: bool,
    time: Option<TimeWindow>,
}

struct Rule {
    id: String,
    effect: Effect,
    shadow: bool,
    reason: String,
    matcher: Matcher,
    obligations: Obligations,
    approvers: Vec<String>,
    approvals_required: u32,
}

/// A compiled rules policy. Cheap to share (`Arc`), immutable; reloads
/// build a new one.
///
/// Semantics: every selector in a rule's `[rule.match]` must hold (AND); a
/// list-valued selector holds when any of its values matches (OR); an absent
/// selector always holds. All rules are evaluated; see
/// [`Evaluation::combine`] for how matches become a decision (deny overrides
/// require-approval overrides allow; default deny).
///
/// All keywords and patterns of all rules are compiled into one
/// multi-pattern automaton and searched once per prompt text.
///
/// ```
/// use skillgate::policy::{Decision, PolicyEngine, PolicyInput, RulesPolicy};
/// use skillgate::identity::Principal;
/// let policy = RulesPolicy::from_toml(r#"
///     [[rule]]
///     id = "ci-messages"
///     effect = "allow"
///     [rule.match]
///     groups = ["ci"]
///     paths = ["/v1/messages"]
///
///     [[rule]]
///     id = "no-opus-for-ci"
///     effect = "deny"
///     reason = "Opus models are not for CI jobs"
///     [rule.match]
///     groups = ["ci"]
///     models = ["claude-opus-*"]
/// "#, "policy.toml").unwrap();
/// let p = Principal::new("https://idp", "job-1").with_groups(["ci"]);
/// let body = skillgate::wire::messages::MessagesRequest::parse(br#"{"model":"claude-opus-4-1","messages":[]}"#).unwrap();
/// let input = PolicyInput::new("POST", "/v1/messages").principal(&p).request(&body);
/// assert_eq!(policy.evaluate(&input).decision.rule(), Some("no-opus-for-ci"));
/// ```
pub struct RulesPolicy {
    rules: Vec<Rule>,
    /// All keywords and patterns, leftmost-first: answers "any match at all?"
    /// at prefilter speed, the common case for clean prompts.
    keywords_any: Option<Regex>,
    /// The same patterns, all-matches: which ones occur.
    keywords: Option<Regex>,
    /// pattern index → rule index
    keyword_rule: Vec<usize>,
}

impl std::fmt::Debug for RulesPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RulesPolicy")
            .field(
                "rules",
                &self.rules.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

pub(super) fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len()))
        .map(|s| s.bytes().filter(|b| *b == b'\n').count() + 1)
        .unwrap_or(1)
}

pub(super) fn globs(values: Vec<String>, what: &str) -> Result<GlobSet, String> {
    let mut b = GlobSetBuilder::new();
    for v in values {
        let g = GlobBuilder::new(&v)
            .literal_separator(false)
            .build()
            .map_err(|e| format!("{what}: invalid glob {v:?}: {}", e.kind()))?;
        b.add(g);
    }
    b.build().map_err(|e| format!("{what}: {e}"))
}

fn parse_weekday(s: &str) -> Result<Weekday, String> {
    Ok(match s.to_ascii_lowercase().get(..3) {
        Some("mon") => Weekday::Monday,
        Some("tue") => Weekday::Tuesday,
        Some("wed") => Weekday::Wednesday,
        Some("thu") => Weekday::Thursday,
        Some("fri") => Weekday::Friday,
        Some("sat") => Weekday::Saturday,
        Some("sun") => Weekday::Sunday,
        _ => return Err(format!("time.days: unknown day {s:?}")),
    })
}

fn parse_hours(s: &str) -> Result<(Time, Time), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("time.hours: expected \"HH:MM-HH:MM\", got {s:?}"))?;
    let t = |x: &str| {
        x.trim()
            .parse::<Time>()
            .map_err(|_| format!("time.hours: invalid time {:?}", x.trim()))
    };
    Ok((t(a)?, t(b)?))
}

pub(super) fn time_zone(name: &str) -> Result<TimeZone, String> {
    TimeZone::get(name).map_err(|_| format!("unknown IANA time zone {name:?}"))
}

impl TimeWindow {
    fn contains(&self, now: jiff::Timestamp) -> bool {
        let local = now.to_zoned(self.tz.clone());
        let day_ok = self.days.is_empty() || self.days.contains(&local.weekday());
        let t = local.time();
        let hour_ok = match self.hours {
            None => true,
            Some((start, end)) if start <= end => t >= start && t < end,
            // Overnight window, e.g. 22:00-06:00.
            Some((start, end)) => t >= start || t < end,
        };
        (day_ok && hour_ok) != self.outside
    }
}

fn value_strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(value_strings).collect(),
        Value::Null | Value::Object(_) => Vec::new(),
        other => vec![other.to_string()],
    }
}

impl ClaimMatcher {
    fn matches(&self, v: &Value) -> bool {
        value_strings(v).iter().any(|s| match self {
            ClaimMatcher::Equals(e) => s == e,
            ClaimMatcher::Glob(g) => g.is_match(s),
            ClaimMatcher::Regex(r) => r.is_match(s.as_str()),
        })
    }
}

fn compile_claim(path: &str, c: ClaimMatchConfig) -> Result<ClaimMatcher, String> {
    Ok(match c {
        ClaimMatchConfig::Glob(g) => ClaimMatcher::Glob(globs(vec![g], &format!("claims.{path}"))?),
        ClaimMatchConfig::Many(gs) => ClaimMatcher::Glob(globs(gs, &format!("claims.{path}"))?),
        ClaimMatchConfig::Op(ClaimOp {
            equals: Some(e),
            glob: None,
            regex: None,
        }) => ClaimMatcher::Equals(e),
        ClaimMatchConfig::Op(ClaimOp {
            equals: None,
            glob: Some(g),
            regex: None,
        }) => ClaimMatcher::Glob(globs(vec![g], &format!("claims.{path}"))?),
        ClaimMatchConfig::Op(ClaimOp {
            equals: None,
            glob: None,
            regex: Some(r),
        }) => ClaimMatcher::Regex(Box::new(
            Regex::new(&format!("^(?:{r})$"))
                .map_err(|_| format!("claims.{path}: invalid regex"))?,
        )),
        ClaimMatchConfig::Op(_) => {
            return Err(format!(
                "claims.{path}: give exactly one of equals, glob, regex"
            ));
        }
    })
}

impl RulesPolicy {
    /// Parses and compiles a policy. `file` names it in errors.
    ///
    /// # Errors
    /// [`PolicyError`] with file, line and rule id: TOML syntax, unknown keys,
    /// duplicate rule ids, bad globs, regexes, days, hours or time zones.
    pub fn from_toml(text: &str, file: &str) -> Result<RulesPolicy, PolicyError> {
        let err = |line: usize, rule: Option<&str>, message: String| PolicyError {
            file: file.to_owned(),
            line,
            rule: rule.map(str::to_owned),
            message,
        };
        let parsed: PolicyFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(1);
            err(line, None, e.message().to_owned())
        })?;
        let default_tz = match &parsed.defaults.time_zone {
            Some(name) => {
                time_zone(name).map_err(|m| err(1, None, format!("defaults.time_zone: {m}")))?
            }
            None => TimeZone::UTC,
        };
        let mut rules = Vec::new();
        let mut patterns: Vec<String> = Vec::new();
        let mut keyword_rule = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for spanned in parsed.rules {
            let line = line_of(text, spanned.span().start);
            let rc = spanned.into_inner();
            let id = rc.id.clone();
            let e = |m: String| err(line, Some(&id), m);
            if id.is_empty() {
                return Err(e("id must not be empty".into()));
            }
            if !seen.insert(id.clone()) {
                return Err(e("duplicate rule id".into()));
            }
            let w = rc.when;
            let g = |v: Option<OneOrMany>, what: &str| -> Result<Option<GlobSet>, PolicyError> {
                v.map(|v| globs(v.into_vec(), what)).transpose().map_err(&e)
            };
            let mut m = Matcher {
                issuer: g(w.issuer, "issuer")?,
                subject: g(w.subject, "subject")?,
                groups: w.groups.map(OneOrMany::into_vec),
                scopes: w.scopes.map(OneOrMany::into_vec),
                methods: w.methods.map(|v| {
                    v.into_vec()
                        .into_iter()
                        .map(|m| m.to_ascii_uppercase())
                        .collect()
                }),
                paths: g(w.paths, "paths")?,
                models: g(w.models, "models")?,
                max_tokens_above: w.max_tokens_above,
                body_bytes_above: w.body_bytes_above,
                input_tokens_above: w.input_tokens_above,
                tools: g(w.tools, "tools")?,
                tool_types: g(w.tool_types, "tool_types")?,
                skills: g(w.skills, "skills")?,
                ..Matcher::default()
            };
            for (path, c) in w.claims {
                let cm = compile_claim(&path, c).map_err(&e)?;
                m.claims.push((path, cm));
            }
            if let Some(t) = w.time {
                let tz = match &t.time_zone {
                    Some(n) => time_zone(n).map_err(|x| e(format!("time.time_zone: {x}")))?,
                    None => default_tz.clone(),
                };
                m.time = Some(TimeWindow {
                    days: t
                        .days
                        .iter()
                        .map(|d| parse_weekday(d))
                        .collect::<Result<_, _>>()
                        .map_err(&e)?,
                    hours: t
                        .hours
                        .as_deref()
                        .map(parse_hours)
                        .transpose()
                        .map_err(&e)?,
                    tz,
                    outside: t.outside,
                });
            }
            let flags = if w.case_sensitive { "" } else { "(?i)" };
            let rule_index = rules.len();
            for k in w.keywords.map(OneOrMany::into_vec).unwrap_or_default() {
                if k.is_empty() {
                    return Err(e("keywords: empty keyword".into()));
                }
                // Any run of white space between words matches any other
                // (line breaks, NBSP, text split across blocks).
                let words: Vec<String> = k.split_whitespace().map(regex_syntax::escape).collect();
                patterns.push(format!("{flags}{}", words.join(r"\s+")));
                keyword_rule.push(rule_index);
                m.has_keywords = true;
            }
            for p in w.patterns.map(OneOrMany::into_vec).unwrap_or_default() {
                // Validate each on its own so the error names the rule.
                Regex::new(&format!("{flags}{p}"))
                    .map_err(|_| e(format!("patterns: invalid regex {p:?}")))?;
                patterns.push(format!("{flags}{p}"));
                keyword_rule.push(rule_index);
                m.has_keywords = true;
            }
            let approvers = rc.approvers.map(OneOrMany::into_vec).unwrap_or_default();
            if rc.effect != Effect::RequireApproval
                && (!approvers.is_empty() || rc.approvals_required.is_some())
            {
                return Err(e(
                    "approvers and approvals_required apply to require_approval rules only".into(),
                ));
            }
            if approvers.iter().any(|g| g.trim().is_empty()) {
                return Err(e("approvers: empty group name".into()));
            }
            let approvals_required = rc.approvals_required.unwrap_or(1);
            if approvals_required == 0 {
                return Err(e("approvals_required: at least 1".into()));
            }
            rules.push(Rule {
                approvers,
                approvals_required,
                reason: rc.reason.unwrap_or_else(|| match rc.effect {
                    Effect::Deny => format!("denied by policy rule {id}"),
                    Effect::RequireApproval => format!("approval required by policy rule {id}"),
                    Effect::Allow => String::new(),
                }),
                id,
                effect: rc.effect,
                shadow: rc.shadow,
                matcher: m,
                obligations: Obligations {
                    max_tokens: rc.obligations.max_tokens,
                    redaction_profiles: rc.obligations.redaction_profiles,
                    audit_level: rc.obligations.audit_level,
                },
            });
        }
        let build = |kind: MatchKind| {
            Regex::builder()
                .configure(Regex::config().match_kind(kind))
                .build_many(&patterns)
                .map_err(|e| err(1, None, format!("keywords/patterns: {e}")))
        };
        let (keywords_any, keywords) = if patterns.is_empty() {
            (None, None)
        } else {
            (
                Some(build(MatchKind::LeftmostFirst)?),
                Some(build(MatchKind::All)?),
            )
        };
        Ok(RulesPolicy {
            rules,
            keywords_any,
            keywords,
            keyword_rule,
        })
    }

    /// Reads and compiles a policy file.
    ///
    /// # Errors
    /// [`PolicyError`] (line 0 when the file cannot be read).
    pub fn from_file(path: &std::path::Path) -> Result<RulesPolicy, PolicyError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError {
            file: shown.clone(),
            line: 0,
            rule: None,
            message: e.to_string(),
        })?;
        RulesPolicy::from_toml(&text, &shown)
    }

    /// The rule ids, in file order.
    pub fn rule_ids(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.id.as_str())
    }

    /// Which rules' keywords or patterns occur in the prompt text.
    fn keyword_hits(&self, input: &PolicyInput<'_>) -> Vec<bool> {
        let mut hits = vec![false; self.rules.len()];
        let (Some(re), Some(req)) = (&self.keywords, input.request) else {
            return hits;
        };
        let mut set = PatternSet::new(re.pattern_len());
        let hay = keyword_haystack(req);
        if self
            .keywords_any
            .as_ref()
            .is_some_and(|any| !any.is_match(hay.as_str()))
        {
            return hits;
        }
        re.which_overlapping_matches(&Input::new(&hay), &mut set);
        for pid in set.iter() {
            if let Some(r) = self.keyword_rule.get(pid.as_usize()) {
                hits[*r] = true;
            }
        }
        hits
    }
}

/// Characters that render as nothing; removed before keyword scanning so
/// `cus\u{200B}tomer` still reads as `customer`.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}' | '\u{180E}' | '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}'
    )
}

/// All prompt text as one haystack: texts joined by a line break (so a phrase
/// split across blocks is still found) with invisible characters removed.
fn keyword_haystack(req: &crate::wire::messages::MessagesRequest) -> String {
    let mut hay = String::with_capacity(req.prompt_texts().map(|t| t.len() + 1).sum());
    for t in req.prompt_texts() {
        // Every invisible character starts with one of these UTF-8 lead bytes.
        if t.bytes().any(|b| matches!(b, 0xC2 | 0xE1 | 0xE2 | 0xEF)) {
            hay.extend(t.chars().filter(|c| !invisible(*c)));
        } else {
            hay.push_str(t);
        }
        hay.push('\n');
    }
    hay
}

/// Estimated input tokens: prompt text bytes / 4, rounded up. An estimate
/// for policy thresholds only; the API's `usage` is authoritative.
pub fn estimate_input_tokens(req: &crate::wire::messages::MessagesRequest) -> u64 {
    let bytes: usize = req.prompt_texts().map(str::len).sum();
    (bytes as u64).div_ceil(4)
}

impl Matcher {
    fn matches(&self, input: &PolicyInput<'_>, keyword_hit: bool) -> bool {
        let p = input.principal;
        let any_glob = |set: &Option<GlobSet>, value: Option<&str>| match set {
            None => true,
            Some(s) => value.is_some_and(|v| s.is_match(v)),
        };
        if !any_glob(&self.issuer, p.map(|p| p.issuer.as_str()))
            || !any_glob(&self.subject, p.map(|p| p.subject.as_str()))
        {
            return false;
        }
        if let Some(groups) = &self.groups
            && !p.is_some_and(|p| groups.iter().any(|g| p.in_group(g)))
        {
            return false;
        }
        if let Some(scopes) = &self.scopes
            && !p.is_some_and(|p| scopes.iter().any(|s| p.has_scope(s)))
        {
            return false;
        }
        for (path, m) in &self.claims {
            if !p.and_then(|p| p.claim(path)).is_some_and(|v| m.matches(v)) {
                return false;
            }
        }
        if let Some(methods) = &self.methods
            && !methods.iter().any(|m| m == input.method)
        {
            return false;
        }
        if !any_glob(&self.paths, Some(input.path)) {
            return false;
        }
        let req = input.request;
        if !any_glob(&self.models, req.and_then(|r| r.model())) {
            return false;
        }
        if let Some(n) = self.max_tokens_above
            && req.and_then(|r| r.max_tokens()).is_none_or(|m| m <= n)
        {
            return false;
        }
        if let Some(n) = self.body_bytes_above
            && (input.body_bytes as u64) <= n
        {
            return false;
        }
        if let Some(n) = self.input_tokens_above
            && req.is_none_or(|r| estimate_input_tokens(r) <= n)
        {
            return false;
        }
        let any_of = |set: &Option<GlobSet>, values: Option<Vec<&str>>| match set {
            None => true,
            Some(s) => values.is_some_and(|vs| vs.iter().any(|v| s.is_match(v))),
        };
        if !any_of(&self.tools, req.map(|r| r.tool_names().collect()))
            || !any_of(&self.tool_types, req.map(|r| r.tool_types().collect()))
            || !any_of(&self.skills, req.map(|r| r.skill_ids().collect()))
        {
            return false;
        }
        if self.has_keywords && !keyword_hit {
            return false;
        }
        if let Some(w) = &self.time
            && !w.contains(input.now)
        {
            return false;
        }
        true
    }
}

impl PolicyEngine for RulesPolicy {
    fn evaluate(&self, input: &PolicyInput<'_>) -> Evaluation {
        let hits = self.keyword_hits(input);
        let matches = self
            .rules
            .iter()
            .zip(hits)
            .filter(|(r, hit)| r.matcher.matches(input, *hit))
            .map(|(r, _)| {
                (
                    RuleMatch {
                        id: r.id.clone(),
                        effect: r.effect,
                        shadow: r.shadow,
                    },
                    r.reason.clone(),
                    r.obligations.clone(),
                )
            })
            .collect();
        let mut eval = Evaluation::combine(matches);
        if let super::Decision::RequireApproval {
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
