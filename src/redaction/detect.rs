//! Detectors: one multi-pattern search, then validators.
//!
//! One unanchored [`regex_automata::meta::Regex`] over the *starts* of all
//! patterns (`builtin_starts`: a digit, `sk-`, a word followed by `@`, …,
//! without counted repetitions, so its lazy DFA stays small) finds the next
//! place a value could begin. There, one anchored pass of the precise
//! patterns (`MatchKind::All`) says which of them match; each, in the
//! priority order of `builtin_patterns`, goes through its validator (Luhn,
//! issuer prefix, SSA rules, libphonenumber, mod-97, …) until one accepts.
//! If none does, the search moves on by one character (over a whole digit
//! run when the run cannot start a value). Matches never overlap.
//!
//! Without custom patterns, ASCII text takes a hand-written path
//! (`detect/fast.rs`) that gives the same answers faster: a scanner that
//! jumps over lower-case words and spaces to the bytes that can decide a
//! value and names the patterns that may start there (instead of the
//! unanchored search and the start-set search), and matchers for the card,
//! SSN, IPv4, phone, e-mail, IBAN and key patterns (instead of their
//! anchored searches). Any non-ASCII character they would have to read
//! (other than common punctuation such as curly quotes and dashes next to
//! letters) hands the decision back to the regexes; proptests compare both
//! paths.
//!
//! The same procedure runs on whole texts ([`Detector::detect`]) and, with a
//! liveness check per start position, on text arriving in pieces
//! ([`Detector::detect_partial`], used by the streaming engine): that is what
//! makes the streamed result equal the whole-text result for any chunking.

use std::sync::Arc;

use regex_automata::hybrid::LazyStateID;
use regex_automata::hybrid::dfa::{Cache as DfaCache, DFA};
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, MatchKind, PatternSet, meta};

use super::RedactionError;

/// Entity type names of the built-in detectors.
pub mod entity {
    /// Payment card number (PAN).
    pub const CREDIT_CARD: &str = "CREDIT_CARD";
    /// US Social Security number.
    pub const US_SSN: &str = "US_SSN";
    /// E-mail address.
    pub const EMAIL_ADDRESS: &str = "EMAIL_ADDRESS";
    /// Telephone number.
    pub const PHONE_NUMBER: &str = "PHONE_NUMBER";
    /// International Bank Account Number.
    pub const IBAN_CODE: &str = "IBAN_CODE";
    /// IPv4 or IPv6 address.
    pub const IP_ADDRESS: &str = "IP_ADDRESS";
    /// Anthropic API or admin key (`sk-ant-…`).
    pub const ANTHROPIC_API_KEY: &str = "ANTHROPIC_API_KEY";
    /// OpenAI API key (`sk-…`, `sk-proj-…`).
    pub const OPENAI_API_KEY: &str = "OPENAI_API_KEY";
    /// AWS access key id (`AKIA…`, `ASIA…`).
    pub const AWS_ACCESS_KEY: &str = "AWS_ACCESS_KEY";
    /// GitHub token (`ghp_…`, `github_pat_…`).
    pub const GITHUB_TOKEN: &str = "GITHUB_TOKEN";
    /// Slack token (`xoxb-…`).
    pub const SLACK_TOKEN: &str = "SLACK_TOKEN";
    /// PEM private key block.
    pub const PRIVATE_KEY: &str = "PRIVATE_KEY";
    /// JSON Web Token.
    pub const JWT: &str = "JWT";
    /// Password in a URL's user-info (`scheme://user:password@host`).
    pub const URL_CREDENTIALS: &str = "URL_CREDENTIALS";
    /// Value assigned to a secret-looking name (`api_key = "…"`).
    pub const GENERIC_SECRET: &str = "GENERIC_SECRET";

    /// Every built-in entity type.
    pub const ALL: &[&str] = &[
        CREDIT_CARD,
        US_SSN,
        EMAIL_ADDRESS,
        PHONE_NUMBER,
        IBAN_CODE,
        IP_ADDRESS,
        ANTHROPIC_API_KEY,
        OPENAI_API_KEY,
        AWS_ACCESS_KEY,
        GITHUB_TOKEN,
        SLACK_TOKEN,
        PRIVATE_KEY,
        JWT,
        URL_CREDENTIALS,
        GENERIC_SECRET,
    ];
}

/// Separators allowed inside digit values: one visible separator (space,
/// `-`, `.`, no-break, figure, thin and narrow no-break spaces, the Unicode
/// hyphens and dashes U+2010–U+2015, minus U+2212, fullwidth `－` and `．`),
/// with up to two zero-width characters on either side, or up to two
/// zero-width characters alone.
const DIGIT_SEP: &str = r"(?:[\u{200B}-\u{200D}\u{2060}\u{FEFF}]{0,2}[ \-.\u{A0}\u{2007}\u{2009}\u{202F}\u{2010}-\u{2015}\u{2212}\u{FF0D}\u{FF0E}][\u{200B}-\u{200D}\u{2060}\u{FEFF}]{0,2}|[\u{200B}-\u{200D}\u{2060}\u{FEFF}]{1,2})";
const ZW: &str = r"\u{200B}-\u{200D}\u{2060}\u{FEFF}";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Placeholder,
    PrivateKey,
    Anthropic,
    OpenAi,
    Aws,
    GitHub,
    Slack,
    Jwt,
    UrlCredentials,
    Email,
    Iban,
    Card,
    Ssn,
    Ipv4,
    Ipv6,
    Phone,
    Generic,
    Custom,
}

/// Lazy-DFA cache per search automaton and thread, in bytes (the anchored
/// all-patterns automaton has many states: Unicode letter classes of the
/// e-mail pattern times the counted digit patterns).
const SEARCH_CACHE_BYTES: usize = 4 << 20;

/// Idle liveness-automaton caches kept for reuse by new streams (each holds
/// at most the automaton's cache capacity, 8 MiB).
const IDLE_CACHES: usize = 8;

/// The e-mail pattern with `local` as the repetition of its local part.
fn email_pattern(local: &str) -> String {
    format!(
        r"[\p{{L}}\p{{N}}\p{{M}}._%+\-\u{{FF0E}}{ZW}]{local}[@\u{{FF20}}\u{{FE6B}}][\p{{L}}\p{{N}}\p{{M}}\-{ZW}]+(?:[.\u{{FF0E}}\u{{3002}}][\p{{L}}\p{{N}}\p{{M}}\-{ZW}]+)+"
    )
}

/// The built-in patterns in priority order (kind, entity type, pattern).
fn builtin_patterns() -> Vec<(Kind, &'static str, String)> {
    use entity::*;
    vec![
        (
            Kind::Placeholder,
            "",
            r"\[REDACTED(?:[:_][A-Za-z0-9_]{1,64})?\]|\[[A-Z][A-Z0-9_]{0,63}:(?:hmac|tok):[0-9a-f]{16}\]".into(),
        ),
        (
            Kind::PrivateKey,
            PRIVATE_KEY,
            r"-----BEGIN[A-Z ]{0,32} PRIVATE KEY-----(?:[A-Za-z0-9+/=:,\-\r\n \t]|\\[rn])+?-----END[A-Z ]{0,32} PRIVATE KEY-----".into(),
        ),
        (
            Kind::Anthropic,
            ANTHROPIC_API_KEY,
            r"sk-ant-[a-z]{3,10}[0-9]{2}-[A-Za-z0-9_\-]{20,}".into(),
        ),
        (
            Kind::OpenAi,
            OPENAI_API_KEY,
            r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}".into(),
        ),
        (
            Kind::Aws,
            AWS_ACCESS_KEY,
            r"(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}".into(),
        ),
        (
            Kind::GitHub,
            GITHUB_TOKEN,
            r"gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}".into(),
        ),
        (Kind::Slack, SLACK_TOKEN, r"xox[abposr]-[A-Za-z0-9\-]{10,}".into()),
        (
            Kind::Jwt,
            JWT,
            r"eyJ[A-Za-z0-9_\-]{4,}\.eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{8,}".into(),
        ),
        (
            Kind::UrlCredentials,
            URL_CREDENTIALS,
            r#"[A-Za-z][A-Za-z0-9+.\-]{1,15}://[^\s/@:"'<>\\]{1,128}:[^\s/@"'<>\\]{1,256}@"#.into(),
        ),
        (Kind::Email, EMAIL_ADDRESS, email_pattern("+")),
        (
            Kind::Iban,
            IBAN_CODE,
            r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}".into(),
        ),
        (Kind::Card, CREDIT_CARD, format!(r"\d(?:{DIGIT_SEP}?\d){{12,18}}")),
        (
            Kind::Ssn,
            US_SSN,
            format!(r"\d{{3}}{DIGIT_SEP}?\d{{2}}{DIGIT_SEP}?\d{{4}}"),
        ),
        (Kind::Ipv4, IP_ADDRESS, r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}".into()),
        (
            Kind::Ipv6,
            IP_ADDRESS,
            r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){1,6}:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}".into(),
        ),
        (
            Kind::Phone,
            PHONE_NUMBER,
            format!(
                r"(?:\+|\(\+?)?\d{{1,4}}\)?(?:{DIGIT_SEP}{{0,2}}\(?\d{{1,5}}\)?){{1,6}}"
            ),
        ),
        (
            Kind::Generic,
            GENERIC_SECRET,
            // Quotes may be escaped (`api_key=\"…\"` inside a JSON string,
            // as streamed tool input arrives).
            r#"[A-Za-z0-9_.\-]{0,64}(?i:api[_\-]?key|secret|token|passw(?:or)?d|pwd|auth|credential|access[_\-]?key|private[_\-]?key)[A-Za-z0-9_.\-]{0,64}(?:\\?["'])?[ \t]*(?::|=|:=|=>)[ \t]*(?:\\?["'])?[A-Za-z0-9_\-+/=.~]{16,4096}"#.into(),
        ),
    ]
}

/// The start of each built-in pattern (same order as [`builtin_patterns`]),
/// written without counted repetitions. Each matches a prefix of every
/// value its pattern matches, so a value can only start where one of these
/// starts. The unanchored search runs over these; the precise patterns run
/// anchored at each start found. (Searching the precise patterns unanchored
/// made one automaton whose states multiply — every digit may start a card,
/// a phone number and an IP at different counts — and its lazy DFA rebuilt
/// states on every new text.) Runs that can repeat without limit are bounded
/// as the validators bound them (a local part of at most 64 characters, a
/// scheme of at most 16, four hex digits per IPv6 group, at most 64
/// name characters before a secret keyword), so a long run of letters is
/// not searched again from each of its positions.
fn builtin_starts() -> Vec<String> {
    vec![
        r"\[[A-Z]".into(),
        r"-----BEGIN".into(),
        r"sk-ant-".into(),
        r"sk-".into(),
        r"A(?:KIA|SIA|BIA|CCA)".into(),
        r"gh[pousr]_|github_pat_".into(),
        r"xox[abposr]-".into(),
        r"eyJ".into(),
        r"[A-Za-z][A-Za-z0-9+.\-]{1,15}://".into(),
        format!(r"[\p{{L}}\p{{N}}\p{{M}}._%+\-\u{{FF0E}}{ZW}]{{1,64}}[@\u{{FF20}}\u{{FE6B}}]"),
        r"[A-Z]{2}[0-9]{2}".into(),
        r"\d".into(),
        r"\d".into(),
        r"[0-9]".into(),
        r"[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:".into(),
        r"(?:\+|\(\+?)?\d".into(),
        r"[A-Za-z0-9_.\-]{0,64}(?i:api[_\-]?key|secret|token|passw(?:or)?d|pwd|auth|credential|access[_\-]?key|private[_\-]?key)".into(),
    ]
}

/// A pattern of its own, from configuration: `pattern` is a regular
/// expression in the syntax of the `regex` crate (no look-around, no
/// back-references); every match is a value of `entity_type`.
///
/// ```
/// use skillgate::redaction::CustomPattern;
/// let p = CustomPattern::new("EMPLOYEE_ID", r"EMP-[0-9]{6}");
/// assert_eq!(p.entity_type, "EMPLOYEE_ID");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct CustomPattern {
    /// The entity type reported and used to choose the operator.
    pub entity_type: String,
    /// The regular expression.
    pub pattern: String,
}

impl CustomPattern {
    /// A custom pattern.
    pub fn new(entity_type: impl Into<String>, pattern: impl Into<String>) -> Self {
        CustomPattern {
            entity_type: entity_type.into(),
            pattern: pattern.into(),
        }
    }
}

/// One detected value: byte range in the scanned text and entity type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// First byte of the value.
    pub start: usize,
    /// One past the last byte of the value.
    pub end: usize,
    /// Entity type (one of [`entity`] or a custom one).
    pub entity_type: Arc<str>,
}

struct Pat {
    kind: Kind,
    entity: Arc<str>,
    anchored: meta::Regex,
}

/// The compiled detectors; cheap to share (`Arc` inside a `Redactor`).
pub(crate) struct Detector {
    /// The patterns' starts ([`builtin_starts`], then custom patterns),
    /// searched unanchored for the next place a value could start.
    starts: meta::Regex,
    /// The start patterns with `MatchKind::All`: which of them match
    /// anchored at a start (bounded, so cheap), i.e. which precise patterns
    /// to try there.
    start_set: meta::Regex,
    live: DFA,
    /// Liveness caches of finished streams, reused by new ones.
    idle_caches: std::sync::Mutex<Vec<DfaCache>>,
    pats: Vec<Pat>,
    /// The patterns whose starts match at an ASCII digit that can start
    /// nothing else ([`fast::digit_family_only`]): cards, SSNs, IPv4, phones.
    digit_family_pids: [usize; 4],
    /// Which detector kinds are enabled (entity type filter applied).
    enabled: Vec<bool>,
    has_custom: bool,
    /// Whether the hand-written start search and matchers of [`fast`] run
    /// (always, except in the tests that compare them with the regexes).
    hand: bool,
}

/// Where the liveness run of the last partial scan stopped: the start it
/// found alive, the automaton state after `upto` bytes of text, and the
/// cache's clear count then (a cleared cache invalidates the state).
#[derive(Clone, Copy, Debug)]
pub(crate) struct LiveMemo {
    pub(crate) start: usize,
    state: LazyStateID,
    upto: usize,
    clears: usize,
}

impl LiveMemo {
    /// The memo after `cut` bytes are dropped from the front of the text
    /// (`None` if it pointed into them).
    pub(crate) fn shifted(self, cut: usize) -> Option<LiveMemo> {
        Some(LiveMemo {
            start: self.start.checked_sub(cut)?,
            upto: self.upto.checked_sub(cut)?,
            ..self
        })
    }
}

enum Live {
    Alive(LazyStateID),
    Dead,
    Unknown,
}

/// What a partial scan decided.
pub(crate) struct Partial {
    /// Values found, starting at or after the scan start.
    pub spans: Vec<Span>,
    /// Everything before this offset is decided: no value found later can
    /// start before it.
    pub decided: usize,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("patterns", &self.pats.len())
            .finish_non_exhaustive()
    }
}

impl Detector {
    /// Builds the detectors for `enabled` entity types (`None`: all built-ins)
    /// plus `custom` patterns.
    pub(crate) fn new(
        enabled: Option<&[String]>,
        custom: &[CustomPattern],
    ) -> Result<Detector, RedactionError> {
        let mut list: Vec<(Kind, Arc<str>, String)> = builtin_patterns()
            .into_iter()
            .map(|(k, e, p)| (k, Arc::<str>::from(e), p))
            .collect();
        for c in custom {
            if c.entity_type.is_empty()
                || !c
                    .entity_type
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(RedactionError::Config(format!(
                    "custom entity type {:?} must be non-empty A-Z, 0-9 and _",
                    c.entity_type
                )));
            }
            list.push((
                Kind::Custom,
                Arc::from(c.entity_type.as_str()),
                c.pattern.clone(),
            ));
        }
        // The liveness automaton bounds the e-mail local part as the
        // validator does (64 characters): a long run of letters is then not
        // held back, nor read again, from each of its positions. (The search
        // pattern stays unbounded: counted Unicode classes make its anchored
        // search slower, and the validator rejects longer local parts.)
        let live_email = email_pattern("{1,64}");
        let live_sources: Vec<&str> = list
            .iter()
            .map(|(k, _, p)| {
                if *k == Kind::Email {
                    live_email.as_str()
                } else {
                    p.as_str()
                }
            })
            .collect();
        let mut start_sources = builtin_starts();
        debug_assert_eq!(start_sources.len(), builtin_patterns().len());
        start_sources.extend(custom.iter().map(|c| c.pattern.clone()));
        let syn = syntax::Config::new().unicode(true).utf8(true);
        let many = |kind: MatchKind, patterns: &[&str]| {
            meta::Regex::builder()
                .syntax(syn)
                .configure(
                    meta::Config::new()
                        .match_kind(kind)
                        .hybrid_cache_capacity(SEARCH_CACHE_BYTES),
                )
                .build_many(patterns)
                .map_err(|e| RedactionError::Config(format!("detector patterns: {e}")))
        };
        let start_refs: Vec<&str> = start_sources.iter().map(String::as_str).collect();
        let starts = many(MatchKind::LeftmostFirst, &start_refs)?;
        let start_set = many(MatchKind::All, &start_refs)?;
        let live = DFA::builder()
            .syntax(syn)
            .configure(
                DFA::config()
                    .match_kind(MatchKind::All)
                    .starts_for_each_pattern(false)
                    .cache_capacity(8 << 20)
                    .minimum_cache_clear_count(None),
            )
            .build_many(&live_sources)
            .map_err(|e| RedactionError::Config(format!("detector automaton: {e}")))?;
        let mut pats = Vec::with_capacity(list.len());
        let mut enabled_flags = Vec::with_capacity(list.len());
        for (kind, ent, src) in &list {
            let anchored = meta::Regex::builder()
                .syntax(syn)
                .build(src)
                .map_err(|e| RedactionError::Config(format!("pattern for {ent}: {e}")))?;
            let on = match (kind, enabled) {
                (Kind::Placeholder, _) | (Kind::Custom, _) | (_, None) => true,
                (_, Some(list)) => list.iter().any(|e| **e == **ent),
            };
            enabled_flags.push(on);
            pats.push(Pat {
                kind: *kind,
                entity: ent.clone(),
                anchored,
            });
        }
        if let Some(list) = enabled {
            for e in list {
                if !pats.iter().any(|p| *p.entity == **e) {
                    return Err(RedactionError::Config(format!("unknown entity type {e:?}")));
                }
            }
        }
        if pats
            .iter()
            .zip(&enabled_flags)
            .any(|(p, on)| p.kind == Kind::Phone && *on)
        {
            crate::redaction::phone::warm();
        }
        // Without custom patterns a built-in's pattern id is its kind's
        // index (the hand-written start search relies on it).
        debug_assert!(
            pats.iter()
                .enumerate()
                .all(|(i, p)| p.kind == Kind::Custom || p.kind as usize == i)
        );
        let pid_of = |k: Kind| pats.iter().position(|p| p.kind == k).unwrap_or(usize::MAX);
        let digit_family_pids = [
            pid_of(Kind::Card),
            pid_of(Kind::Ssn),
            pid_of(Kind::Ipv4),
            pid_of(Kind::Phone),
        ];
        Ok(Detector {
            starts,
            start_set,
            live,
            idle_caches: std::sync::Mutex::new(Vec::new()),
            pats,
            digit_family_pids,
            enabled: enabled_flags,
            has_custom: !custom.is_empty(),
            hand: true,
        })
    }

    /// A cache of the liveness automaton for one scanner: a returned one
    /// when there is one (its states stay built across streams), else new.
    pub(crate) fn cache(&self) -> DfaCache {
        self.idle_caches
            .lock()
            .ok()
            .and_then(|mut v| v.pop())
            .unwrap_or_else(|| self.live.create_cache())
    }

    /// Takes back a scanner's cache (kept while fewer than
    /// [`IDLE_CACHES`] are idle).
    pub(crate) fn recycle(&self, cache: DfaCache) {
        if let Ok(mut v) = self.idle_caches.lock()
            && v.len() < IDLE_CACHES
        {
            v.push(cache);
        }
    }

    /// All values in a whole text.
    pub(crate) fn detect(&self, text: &str) -> Vec<Span> {
        self.detect_with(text, false)
    }

    /// All values in a whole text; `json`: the text is JSON (escapes are
    /// boundaries, never part of a value).
    pub(crate) fn detect_with(&self, text: &str, json: bool) -> Vec<Span> {
        let mut out = Vec::new();
        if !self.has_custom && !prefilter::any_trigger(text.as_bytes()) {
            return out;
        }
        if self.has_custom || text.contains("-----BEGIN") {
            self.scan(text, 0, text.len(), text.len(), true, json, &mut out);
            return out;
        }
        // No value crosses a line break (only PEM blocks and custom patterns
        // could), and every value holds a trigger byte: scanning only the lines
        // with a trigger gives the same values as scanning everything.
        for (a, b) in prefilter::trigger_lines(text.as_bytes()) {
            self.scan(text, a, b, b, true, json, &mut out);
        }
        out
    }

    /// Scans `text[from..]` knowing more text may follow (unless `last`).
    /// `text[..from]` is context only (already decided). `memo` carries the
    /// liveness run of the previous call on the same growing text.
    pub(crate) fn detect_partial(
        &self,
        text: &str,
        from: usize,
        last: bool,
        json: bool,
        cache: &mut DfaCache,
        memo: &mut Option<LiveMemo>,
    ) -> Partial {
        let mut spans = Vec::new();
        if last {
            *memo = None;
            self.scan(text, from, text.len(), text.len(), true, json, &mut spans);
            return Partial {
                spans,
                decided: text.len(),
            };
        }
        let hold = self.hold_point(text, from, cache, memo);
        let decided = self.scan(text, from, hold, text.len(), false, json, &mut spans);
        Partial { spans, decided }
    }

    /// The first char boundary `s ≥ from` where a match could start and
    /// still be growing at the end of `text` (`text.len()` if none).
    ///
    /// Starts found dead stay dead, and the run from the start found alive
    /// last time is resumed where it stopped (`memo`), so text held back
    /// while it grows is not read again on every push (which made holding
    /// quadratic in the held length).
    fn hold_point(
        &self,
        text: &str,
        from: usize,
        cache: &mut DfaCache,
        memo: &mut Option<LiveMemo>,
    ) -> usize {
        let hay = text.as_bytes();
        let mut s = from;
        if let Some(m) = memo.take()
            && m.start >= from
            && m.upto <= hay.len()
            && m.clears == cache.clear_count()
        {
            // Every start in [from, m.start) was dead last time.
            match self.run_live(hay, m.state, m.upto, cache) {
                Live::Alive(state) => {
                    *memo = Some(LiveMemo {
                        start: m.start,
                        state,
                        upto: hay.len(),
                        clears: cache.clear_count(),
                    });
                    return m.start;
                }
                Live::Unknown => return m.start,
                Live::Dead => s = m.start + 1,
            }
        }
        while s < hay.len() {
            if text.is_char_boundary(s) {
                let input = Input::new(hay).span(s..hay.len()).anchored(Anchored::Yes);
                let Ok(start) = self.live.start_state_forward(cache, &input) else {
                    return s;
                };
                match self.run_live(hay, start, s, cache) {
                    Live::Alive(state) => {
                        *memo = Some(LiveMemo {
                            start: s,
                            state,
                            upto: hay.len(),
                            clears: cache.clear_count(),
                        });
                        return s;
                    }
                    Live::Unknown => return s,
                    Live::Dead => {}
                }
            }
            s += 1;
        }
        hay.len()
    }

    /// Runs the all-patterns automaton from `state` over `hay[at..]`.
    /// Errors (a gave-up cache, a quit byte) count as alive, without a
    /// state to resume: hold, fail safe.
    fn run_live(
        &self,
        hay: &[u8],
        mut state: LazyStateID,
        at: usize,
        cache: &mut DfaCache,
    ) -> Live {
        for &b in &hay[at..] {
            match self.live.next_state(cache, state, b) {
                Ok(next) => state = next,
                Err(_) => return Live::Unknown,
            }
            if state.is_dead() {
                return Live::Dead;
            }
            if state.is_quit() {
                return Live::Unknown;
            }
        }
        Live::Alive(state)
    }

    /// Runs the search over starts in `[from, until)`; every match found there
    /// ends before `text.len()` when `!last` (the liveness check guarantees
    /// it). Returns how far the text is decided.
    #[allow(clippy::too_many_arguments)]
    fn scan(
        &self,
        text: &str,
        from: usize,
        until: usize,
        span_end: usize,
        last: bool,
        json: bool,
        out: &mut Vec<Span>,
    ) -> usize {
        let hay = text.as_bytes();
        let mut pos = from;
        // Allocated only when the regex decides the start set.
        let mut set: Option<PatternSet> = None;
        while pos < until {
            // The next start and the patterns that may match there: by hand
            // on ASCII text ([`fast::next`]), else by the start searches.
            let found = if self.has_custom || !self.hand {
                fast::Next::Ask(pos)
            } else {
                fast::next(&hay[..span_end], pos, until, json)
            };
            let (s, mask) = match found {
                fast::Next::Done => return until,
                fast::Next::At(s, mask) => (s, Some(mask)),
                fast::Next::Ask(from) => {
                    let input = Input::new(hay).span(from..span_end);
                    match self.starts.search(&input) {
                        Some(m) if m.start() < until => (m.start(), None),
                        _ => return until,
                    }
                }
            };
            // Every pattern whose start matches at s, in priority order (the
            // order a leftmost-first search over them would prefer), unless
            // what precedes s already rules it out — checked before its
            // anchored search, which may run far (`sk-sk-sk-…` would
            // otherwise be searched to its end from every `sk-`).
            let mut verdict = Verdict::No;
            // The digit values share one boundary rule: checked once.
            let mut digit_start: Option<bool> = None;
            // Tries `pid`; `true` once a pattern decides.
            let mut attempt = |pid: usize| {
                let may = match self.pats[pid].kind {
                    Kind::Card | Kind::Ssn | Kind::Ipv4 | Kind::Phone => {
                        *digit_start.get_or_insert_with(|| self.may_start(pid, text, s, json))
                    }
                    _ => self.may_start(pid, text, s, json),
                };
                if !may {
                    return false;
                }
                verdict = self.try_pattern(pid, span_end, text, s, last, json);
                !matches!(verdict, Verdict::No)
            };
            match mask {
                Some(mut bits) => {
                    while bits != 0 {
                        let pid = bits.trailing_zeros() as usize;
                        bits &= bits - 1;
                        if attempt(pid) {
                            break;
                        }
                    }
                }
                None => {
                    let set = set.get_or_insert_with(|| PatternSet::new(self.pats.len()));
                    set.clear();
                    if self.hand && !self.has_custom && fast::digit_family_only(&hay[..span_end], s)
                    {
                        for pid in self.digit_family_pids {
                            if let Ok(id) = regex_automata::PatternID::new(pid) {
                                set.insert(id);
                            }
                        }
                    } else {
                        let inp = Input::new(hay).span(s..span_end).anchored(Anchored::Yes);
                        self.start_set.which_overlapping_matches(&inp, set);
                    }
                    for pid in set.iter() {
                        if attempt(pid.as_usize()) {
                            break;
                        }
                    }
                }
            }
            let accepted = match verdict {
                Verdict::Undecided => return s,
                Verdict::Yes(a, b, p) => Some((p, a, b)),
                Verdict::No => None,
            };
            match accepted {
                Some((p, a, b)) => {
                    // Mask outputs (`*****1234`) and placeholders are never values.
                    if self.pats[p].kind != Kind::Placeholder
                        && self.enabled[p]
                        && !self.is_placeholder(&text[a..b])
                        && !text[a..b].starts_with("***")
                    {
                        out.push(Span {
                            start: a,
                            end: b,
                            entity_type: self.pats[p].entity.clone(),
                        });
                    }
                    // Resume after the whole candidate (placeholders, the key
                    // name of an assignment and the URL scheme are consumed too).
                    pos = b.max(s + 1);
                    while pos < hay.len() && !text.is_char_boundary(pos) {
                        pos += 1;
                    }
                }
                None => {
                    pos = s + 1;
                    while pos < hay.len() && !text.is_char_boundary(pos) {
                        pos += 1;
                    }
                    // An ASCII digit right after a letter, digit or `_` can
                    // start no built-in value: the patterns that begin with a
                    // digit (cards, SSNs, phones, IPs, e-mail and assignment
                    // names) all require a boundary before them. Skipping
                    // such starts keeps a long digit run linear. (In JSON an
                    // escape letter such as the `n` of `\n` is a boundary.)
                    if !self.has_custom {
                        while pos < until
                            && hay[pos].is_ascii_digit()
                            && (hay[pos - 1].is_ascii_alphanumeric() || hay[pos - 1] == b'_')
                            && !(json && near_escape(text, pos))
                            && !after_placeholder_prefix(text, pos)
                        {
                            pos += 1;
                        }
                    }
                }
            }
        }
        pos
    }

    /// Whether what precedes `s` allows a value of pattern `pid` to start
    /// there: the boundary rule of its validator, checked first because it
    /// is cheap. `true` where an escape in JSON text makes the start
    /// ambiguous (the validator decides).
    fn may_start(&self, pid: usize, text: &str, s: usize, json: bool) -> bool {
        if json && near_escape(text, s) {
            return true;
        }
        let before_text = if after_placeholder_prefix(text, s) {
            ""
        } else {
            &text[..s]
        };
        let before = before_text.chars().next_back();
        match self.pats[pid].kind {
            Kind::Anthropic | Kind::OpenAi | Kind::GitHub | Kind::Slack | Kind::Aws | Kind::Jwt => {
                token_boundary(before)
            }
            Kind::Email | Kind::Iban | Kind::Ipv6 | Kind::Generic => word_boundary(before),
            Kind::Card | Kind::Ssn | Kind::Phone | Kind::Ipv4 => digit_boundary_before(before_text),
            Kind::Placeholder | Kind::PrivateKey | Kind::UrlCredentials | Kind::Custom => true,
        }
    }

    /// Whether a placeholder-shaped text is one of ours: `[REDACTED]`, or
    /// `[REDACTED:T]`, `[REDACTED_T]`, `[T:hmac:…]`, `[T:tok:…]` where `T` is
    /// an entity type of this detector. Anything else (`[REDACTED_4111…]`)
    /// is ordinary text, scanned like any other.
    fn known_placeholder(&self, v: &str) -> bool {
        let inner = v.trim_start_matches('[').trim_end_matches(']');
        let ty = if inner == "REDACTED" {
            return true;
        } else if let Some(t) = inner
            .strip_prefix("REDACTED:")
            .or_else(|| inner.strip_prefix("REDACTED_"))
        {
            t
        } else {
            inner.split(':').next().unwrap_or_default()
        };
        self.pats
            .iter()
            .any(|p| p.kind != Kind::Placeholder && *p.entity == *ty)
    }

    /// Validates pattern `pid` anchored at `s` (its match found in
    /// `text[s..span_end]`).
    fn try_pattern(
        &self,
        pid: usize,
        span_end: usize,
        text: &str,
        s: usize,
        last: bool,
        json: bool,
    ) -> Verdict {
        if !self.enabled[pid] && self.pats[pid].kind != Kind::Placeholder {
            return Verdict::No;
        }
        let hay = &text.as_bytes()[..span_end];
        let kind = self.pats[pid].kind;
        let quick = match kind {
            _ if !self.hand => fast::Match::Ask,
            Kind::Card => fast::card(hay, s),
            Kind::Ssn => fast::ssn(hay, s),
            Kind::Ipv4 => fast::ipv4(hay, s),
            Kind::Phone if !fast::phone_digits_possible(hay, s) => fast::Match::None,
            Kind::Phone => fast::phone(hay, s),
            Kind::Email => fast::email(hay, s),
            Kind::Iban => fast::iban(hay, s),
            Kind::Aws | Kind::GitHub | Kind::Anthropic | Kind::OpenAi | Kind::Slack | Kind::Jwt => {
                fast::key(kind, hay, s)
            }
            _ => fast::Match::Ask,
        };
        let end = match quick {
            fast::Match::End(e) => Some(e),
            fast::Match::None => None,
            fast::Match::Ask => {
                let inp = Input::new(text.as_bytes())
                    .span(s..span_end)
                    .anchored(Anchored::Yes);
                self.pats[pid].anchored.search(&inp).map(|m| m.end())
            }
        };
        match end {
            Some(e) => self.validate(pid, text, s, e, last, json),
            None => Verdict::No,
        }
    }

    /// Whether `v` is exactly one of our placeholders (never a value).
    fn is_placeholder(&self, v: &str) -> bool {
        v.starts_with('[')
            && self.pats[0]
                .anchored
                .search(&Input::new(v).anchored(Anchored::Yes))
                .is_some_and(|m| m.end() == v.len())
    }

    fn validate(
        &self,
        pid: usize,
        text: &str,
        s: usize,
        e: usize,
        last: bool,
        json: bool,
    ) -> Verdict {
        let pat = &self.pats[pid];
        // The character after the value decides boundaries: wait for it.
        if e >= text.len() && !last {
            return Verdict::Undecided;
        }
        // In JSON text the letter of an escape (`\n`) is a boundary, never
        // part of a value; the four hex digits of a `\uXXXX` escape belong to
        // it, so no value starts at or inside one.
        let escaped = json && escaped_at(text, s);
        if json && (in_unicode_escape(text, s) || (escaped && text.as_bytes()[s] == b'u')) {
            return Verdict::No;
        }
        let s = if escaped && text.as_bytes()[s].is_ascii() {
            s + 1
        } else {
            s
        };
        if s >= e {
            return Verdict::No;
        }
        let v = &text[s..e];
        // A value right after an escape (`\n4111…`) starts at a boundary too.
        let after_escape = json
            && s >= 1
            && text.is_char_boundary(s - 1)
            && escaped_at(text, s - 1)
            && text.as_bytes()[s - 1] != b'u';
        // After a `\uXXXX` escape, the character it stands for decides.
        let decoded_before = if json {
            unicode_escape_before(text, s)
        } else {
            None
        };
        let before_text = if escaped || after_escape || after_placeholder_prefix(text, s) {
            ""
        } else if let Some(c) = decoded_before {
            if c.is_alphanumeric() || c == '_' {
                "a"
            } else {
                ""
            }
        } else {
            &text[..s]
        };
        let before = before_text.chars().next_back();
        let after = text[e..].chars().next();
        let yes = |a: usize, b: usize| Verdict::Yes(a, b, pid);
        match pat.kind {
            Kind::Placeholder => {
                if self.known_placeholder(v) {
                    yes(s, e)
                } else {
                    Verdict::No
                }
            }
            Kind::Custom => yes(s, e),
            Kind::PrivateKey => yes(s, e),
            // AWS key ids (16 base-32 characters after the prefix: about one
            // in 28 has no digit) and GitHub tokens (random base-62 after a
            // specific prefix) need no digit; the prefix is evidence enough.
            Kind::Aws | Kind::GitHub => {
                if token_boundary(before) && token_boundary(after) {
                    yes(s, e)
                } else {
                    Verdict::No
                }
            }
            Kind::Anthropic | Kind::OpenAi | Kind::Slack => {
                if token_boundary(before) && token_boundary(after) && has_digit_and_letter(v) {
                    yes(s, e)
                } else {
                    Verdict::No
                }
            }
            Kind::Jwt => {
                if token_boundary(before) && token_boundary(after) && validators::jwt(v) {
                    yes(s, e)
                } else {
                    Verdict::No
                }
            }
            Kind::UrlCredentials => match validators::url_password(v) {
                Some((a, b)) => yes(s + a, s + b),
                None => Verdict::No,
            },
            Kind::Email => match validators::email(v) {
                Some(len) if word_boundary(before) => yes(s, s + len),
                _ => Verdict::No,
            },
            Kind::Iban => match validators::iban(v) {
                Some(len)
                    if word_boundary(before) && word_boundary(text[s + len..].chars().next()) =>
                {
                    yes(s, s + len)
                }
                _ => Verdict::No,
            },
            Kind::Card => {
                if !digit_boundary_before(before_text) {
                    return Verdict::No;
                }
                // Longest group-aligned prefix that is a valid card number.
                for len in validators::card_prefixes(v) {
                    if digit_boundary_after(&text[s + len..]) && validators::card(&v[..len]) {
                        return yes(s, s + len);
                    }
                }
                Verdict::No
            }
            Kind::Ssn => {
                if !digit_boundary_before(before_text) || !digit_boundary_after(&text[e..]) {
                    return Verdict::No;
                }
                match validators::ssn(v) {
                    validators::Ssn::Valid => yes(s, e),
                    validators::Ssn::NeedsContext if ssn_context(text, s) => yes(s, e),
                    _ => Verdict::No,
                }
            }
            Kind::Ipv4 => {
                if digit_boundary_before(before_text)
                    && digit_boundary_after(&text[e..])
                    && v.parse::<std::net::Ipv4Addr>().is_ok()
                {
                    yes(s, e)
                } else {
                    Verdict::No
                }
            }
            Kind::Ipv6 => {
                if word_boundary(before)
                    && word_boundary(after)
                    && before != Some(':')
                    && after != Some(':')
                    && validators::ipv6(v)
                {
                    yes(s, e)
                } else {
                    Verdict::No
                }
            }
            Kind::Phone => {
                if !digit_boundary_before(before_text) || !digit_boundary_after(&text[e..]) {
                    return Verdict::No;
                }
                // SSN-shaped values (3-2-4) are decided by the SSN rules alone.
                if validators::ssn_shaped(v) {
                    return Verdict::No;
                }
                if validators::phone(v) {
                    yes(s, e)
                } else {
                    Verdict::No
                }
            }
            Kind::Generic => match validators::assignment_value(v) {
                Some(a) if word_boundary(before) && token_boundary(after) => {
                    // A known key format as the value keeps its own type.
                    let value_pid = (0..self.pats.len()).find(|&i| {
                        matches!(
                            self.pats[i].kind,
                            Kind::Anthropic
                                | Kind::OpenAi
                                | Kind::Aws
                                | Kind::GitHub
                                | Kind::Slack
                                | Kind::Jwt
                        ) && self.enabled[i]
                            && self.pats[i]
                                .anchored
                                .search(
                                    &Input::new(text.as_bytes())
                                        .span(s + a..e)
                                        .anchored(Anchored::Yes),
                                )
                                .is_some_and(|m| m.end() == e)
                    });
                    Verdict::Yes(s + a, e, value_pid.unwrap_or(pid))
                }
                _ => Verdict::No,
            },
        }
    }
}

enum Verdict {
    No,
    Undecided,
    Yes(usize, usize, usize),
}

/// Whether `text[..s]` ends with `[REDACTED_` or `[REDACTED:`: what follows
/// starts at a boundary, so a value wrapped in placeholder-shaped text
/// (`[REDACTED_4111…]`) is still found.
fn after_placeholder_prefix(text: &str, s: usize) -> bool {
    let b = &text.as_bytes()[..s];
    b.ends_with(b"[REDACTED_") || b.ends_with(b"[REDACTED:")
}

/// Whether a backslash stands in the six bytes up to and including `s`
/// (JSON text: `s` may be in or right after an escape).
fn near_escape(text: &str, s: usize) -> bool {
    let b = text.as_bytes();
    b[s.saturating_sub(6)..(s + 1).min(b.len())].contains(&b'\\')
}

/// Whether `text[s]` is one of the four hex digits of a `\uXXXX` escape.
fn in_unicode_escape(text: &str, s: usize) -> bool {
    let b = text.as_bytes();
    (1..=4).any(|k| {
        s >= k
            && b[s - k] == b'u'
            && escaped_at(text, s - k)
            && b[s - k + 1..=s.min(b.len() - 1)]
                .iter()
                .all(u8::is_ascii_hexdigit)
    })
}

/// The character a complete `\uXXXX` escape ending right before `s` stands
/// for (U+FFFD for a lone surrogate).
fn unicode_escape_before(text: &str, s: usize) -> Option<char> {
    let b = text.as_bytes();
    if s < 6 || b[s - 5] != b'u' || !escaped_at(text, s - 5) {
        return None;
    }
    let hex = std::str::from_utf8(&b[s - 4..s]).ok()?;
    if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let n = u32::from_str_radix(hex, 16).ok()?;
    Some(char::from_u32(n).unwrap_or('\u{FFFD}'))
}

/// Whether `text[s]` follows an odd run of backslashes (an escape letter).
fn escaped_at(text: &str, s: usize) -> bool {
    text.as_bytes()[..s]
        .iter()
        .rev()
        .take_while(|&&b| b == b'\\')
        .count()
        % 2
        == 1
}

fn has_digit_and_letter(v: &str) -> bool {
    v.bytes().any(|b| b.is_ascii_digit()) && v.bytes().any(|b| b.is_ascii_alphabetic())
}

/// Not a letter, digit or `_` (or the end of the text).
fn word_boundary(c: Option<char>) -> bool {
    c.is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
}

/// Like [`word_boundary`], `-` also joins tokens.
fn token_boundary(c: Option<char>) -> bool {
    word_boundary(c) && c != Some('-')
}

/// The text before a digit value does not make it part of a longer token:
/// no letter/digit/`_` directly before, nor `-`, `.`, `/`, `:` after one.
fn digit_boundary_before(before: &str) -> bool {
    let mut it = before.chars().rev();
    match it.next() {
        None => true,
        Some(c) if c.is_alphanumeric() || c == '_' => false,
        Some('-' | '.' | '/' | ':' | '+') => it.next().is_none_or(|c| !c.is_alphanumeric()),
        Some(_) => true,
    }
}

/// Mirror of [`digit_boundary_before`] for the text after a value.
fn digit_boundary_after(after: &str) -> bool {
    let mut it = after.chars();
    match it.next() {
        None => true,
        Some(c) if c.is_alphanumeric() || c == '_' => false,
        Some('-' | '.' | '/' | ':') => it.next().is_none_or(|c| !c.is_alphanumeric()),
        Some(_) => true,
    }
}

/// Bytes before a value that are searched for SSN context words.
pub(crate) const CONTEXT_BYTES: usize = 48;

fn ssn_context(text: &str, s: usize) -> bool {
    let mut a = s.saturating_sub(CONTEXT_BYTES);
    while !text.is_char_boundary(a) {
        a += 1;
    }
    let window = text[a..s].to_ascii_lowercase();
    ["ssn", "social security", "ss#", "ss #", "itin", "taxpayer"]
        .iter()
        .any(|w| window.contains(w))
}

mod fast;

pub(crate) mod prefilter {
    //! The cheap pass: bytes without which no built-in value can exist.

    /// Whether `b` is a byte without which no built-in value (AWS key ids
    /// and JWTs aside) can exist: a digit, `@`, `:`, `=`, `-`, `_` or a
    /// non-ASCII byte (fullwidth digits and `@`, zero-width characters).
    /// Key prefixes hold `-` or `_`.
    ///
    /// Written without branches or tables so that [`first_trigger`]
    /// compiles to SIMD compares.
    #[inline(always)]
    fn is_trigger(b: u8) -> bool {
        // '0'..='9' and ':' are 0x30..=0x3A.
        (b.wrapping_sub(b'0') <= 10)
            | (b == b'@')
            | (b == b'=')
            | (b == b'-')
            | (b == b'_')
            | (b >= 0x80)
    }

    /// Prefixes of values that may hold no trigger byte: AWS key ids (all
    /// letters, now and then) and JWTs (rarely).
    const PREFIX_LITERALS: [&str; 5] = ["AKIA", "ASIA", "ABIA", "ACCA", "eyJ"];

    /// Offsets of the [`PREFIX_LITERALS`] in `hay`, in order: SIMD substring
    /// searches for `IA` (AKIA, ASIA, ABIA), `CCA` (ACCA) and `eyJ`, each hit
    /// then checked in place. (Much faster on prose than one multi-literal
    /// search, because these needles are rare in ordinary text.)
    fn prefix_literals(hay: &[u8]) -> Vec<usize> {
        use memchr::memmem;
        let mut out: Vec<usize> = Vec::new();
        for (needle, back) in [(&b"IA"[..], 2usize), (b"CCA", 1), (b"eyJ", 0)] {
            for i in memmem::find_iter(hay, needle) {
                if i >= back
                    && PREFIX_LITERALS
                        .iter()
                        .any(|p| hay[i - back..].starts_with(p.as_bytes()))
                {
                    out.push(i - back);
                }
            }
        }
        out.sort_unstable();
        out
    }

    /// Offset of the first trigger byte in `hay`.
    pub(crate) fn first_trigger(hay: &[u8]) -> Option<usize> {
        const CHUNK: usize = 64;
        let mut chunks = hay.chunks_exact(CHUNK);
        let mut base = 0;
        for c in &mut chunks {
            let mut any = false;
            for &b in c {
                any |= is_trigger(b);
            }
            if any {
                return c.iter().position(|&b| is_trigger(b)).map(|i| base + i);
            }
            base += CHUNK;
        }
        chunks
            .remainder()
            .iter()
            .position(|&b| is_trigger(b))
            .map(|i| base + i)
    }

    /// Whether `hay` holds a trigger byte: whole 64-byte chunks at a time
    /// (vector compares, no search for the byte's offset).
    fn has_trigger(hay: &[u8]) -> bool {
        const CHUNK: usize = 64;
        let mut chunks = hay.chunks_exact(CHUNK);
        for c in &mut chunks {
            let mut any = false;
            for &b in c {
                any |= is_trigger(b);
            }
            if any {
                return true;
            }
        }
        chunks
            .remainder()
            .iter()
            .fold(false, |any, &b| any | is_trigger(b))
    }

    /// Whether a text holds any trigger byte or a [`PREFIX_LITERALS`] one.
    pub(crate) fn any_trigger(hay: &[u8]) -> bool {
        first_trigger(hay).is_some() || has_prefix_literal(hay)
    }

    fn has_prefix_literal(hay: &[u8]) -> bool {
        !prefix_literals(hay).is_empty()
    }

    /// Maximal runs of lines (byte ranges, line breaks excluded at the ends)
    /// that hold a trigger byte or a [`PREFIX_LITERALS`] one.
    pub(crate) fn trigger_lines(hay: &[u8]) -> Vec<(usize, usize)> {
        let mut out: Vec<(usize, usize)> = Vec::new();
        let mut pos = 0;
        while pos < hay.len() {
            // A line with a trigger is kept (the test reads whole chunks, and
            // on text dense with values the first one decides); from a line
            // without, the search jumps to the next trigger.
            let end = memchr::memchr(b'\n', &hay[pos..]).map_or(hay.len(), |i| pos + i);
            if !has_trigger(&hay[pos..end]) {
                let Some(off) = first_trigger(&hay[end..]) else {
                    break;
                };
                let t = end + off;
                pos = memchr::memrchr(b'\n', &hay[end..t]).map_or(end, |i| end + i + 1);
                continue;
            }
            match out.last_mut() {
                Some(last) if last.1 + 1 >= pos => last.1 = end,
                _ => out.push((pos, end)),
            }
            pos = end + 1;
        }
        // Prefixes of values without trigger bytes: their lines too. Only
        // the gaps between the lines found can hold such a line (a prefix
        // holds no line break), and on text dense with values there are
        // none to search.
        let mut extra: Vec<(usize, usize)> = Vec::new();
        let mut gap_start = 0;
        let gaps = out
            .iter()
            .map(|&(a, b)| (a, b + 1))
            .chain([(hay.len(), hay.len())]);
        for (a, next) in gaps {
            if gap_start < a {
                let gap = &hay[gap_start..a];
                // Positions ascend: one line lookup per line, not per hit.
                let mut line_end = None;
                for t in prefix_literals(gap) {
                    let t = gap_start + t;
                    if line_end.is_some_and(|e| t < e) {
                        continue;
                    }
                    let start = memchr::memrchr(b'\n', &hay[..t]).map_or(0, |i| i + 1);
                    let end = memchr::memchr(b'\n', &hay[t..]).map_or(hay.len(), |i| t + i);
                    line_end = Some(end);
                    extra.push((start, end));
                }
            }
            gap_start = next;
        }
        if extra.is_empty() {
            return out;
        }
        out.extend(extra);
        out.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(out.len());
        for (a, b) in out {
            match merged.last_mut() {
                Some(last) if last.1 + 1 >= a => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        merged
    }
}

pub(crate) mod validators {
    //! Validation rules, one function per detector.

    /// ASCII value of a Unicode decimal digit (`Nd`), e.g. `'٤'` → 4.
    pub(crate) fn digit_value(c: char) -> Option<u32> {
        if let Some(d) = c.to_digit(10) {
            return Some(d);
        }
        // Nd digits come in contiguous runs of ten starting at a zero.
        const ZEROS: &[u32] = &[
            0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6,
            0x0D66, 0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0,
            0x1A80, 0x1A90, 0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0,
            0xAA50, 0xABF0, 0xFF10, 0x104A0, 0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6,
        ];
        let u = c as u32;
        ZEROS.iter().find(|&&z| u >= z && u < z + 10).map(|z| u - z)
    }

    /// The digits of a value, folded to ASCII values, and what its visible
    /// separators are, without allocating: a candidate of the card, SSN or
    /// phone pattern has at most 34 digits. Longer text (never such a
    /// candidate) reports `overflow` and is no value.
    pub(crate) struct Digits {
        d: [u8; 64],
        n: usize,
        /// The first three visible separators (zero-width characters aside),
        /// folded to their ASCII kind.
        first: [Option<char>; 3],
        /// Visible separators in all.
        visible: usize,
        /// Whether every visible separator is the same.
        one_kind: bool,
        overflow: bool,
    }

    impl Digits {
        pub(crate) fn of(v: &str) -> Digits {
            let mut out = Digits {
                d: [0; 64],
                n: 0,
                first: [None; 3],
                visible: 0,
                one_kind: true,
                overflow: false,
            };
            let sep = |c: char, out: &mut Digits| {
                if is_zero_width(c) {
                    return;
                }
                let c = normal_sep(c);
                if out.visible < 3 {
                    out.first[out.visible] = Some(c);
                }
                if out.first[0].is_some_and(|f| f != c) {
                    out.one_kind = false;
                }
                out.visible += 1;
            };
            if v.is_ascii() {
                for &b in v.as_bytes() {
                    if b.is_ascii_digit() {
                        if out.n == out.d.len() {
                            out.overflow = true;
                            break;
                        }
                        out.d[out.n] = b - b'0';
                        out.n += 1;
                    } else {
                        sep(char::from(b), &mut out);
                    }
                }
                return out;
            }
            for c in v.chars() {
                match digit_value(c) {
                    Some(_) if out.n == out.d.len() => {
                        out.overflow = true;
                        break;
                    }
                    Some(x) => {
                        out.d[out.n] = x as u8;
                        out.n += 1;
                    }
                    None => sep(c, &mut out),
                }
            }
            out
        }

        fn digits(&self) -> &[u8] {
            &self.d[..self.n]
        }

        /// The first visible separators (up to three).
        fn visible(&self) -> impl Iterator<Item = char> + '_ {
            self.first.iter().flatten().copied()
        }

        /// Whether every visible separator is the same.
        fn one_separator_kind(&self) -> bool {
            self.one_kind
        }
    }

    /// A separator folded to its ASCII kind: Unicode hyphens, dashes and
    /// minus signs to `-`, Unicode spaces to ` `, fullwidth `．` to `.`.
    fn normal_sep(c: char) -> char {
        match c {
            '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FF0D}' => '-',
            '\u{A0}' | '\u{2007}' | '\u{2009}' | '\u{202F}' => ' ',
            '\u{FF0E}' => '.',
            c => c,
        }
    }

    fn is_zero_width(c: char) -> bool {
        matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}')
    }

    /// Luhn (mod 10) over digit values.
    pub(crate) fn luhn(d: &[u8]) -> bool {
        let mut sum = 0u32;
        for (i, &x) in d.iter().rev().enumerate() {
            let mut x = x as u32;
            if i % 2 == 1 {
                x *= 2;
                if x > 9 {
                    x -= 9;
                }
            }
            sum += x;
        }
        sum.is_multiple_of(10)
    }

    /// Byte lengths of the prefixes of a card candidate worth trying, longest
    /// first: the whole value, then each prefix ending before a separator.
    pub(crate) fn card_prefixes(v: &str) -> impl Iterator<Item = usize> + '_ {
        // Backwards: a digit whose next character is not one ends a prefix.
        let mut after_is_digit = true;
        let ends = v.char_indices().rev().filter_map(move |(i, c)| {
            let digit = digit_value(c).is_some();
            let end = (digit && !after_is_digit).then(|| i + c.len_utf8());
            after_is_digit = digit;
            end
        });
        std::iter::once(v.len()).chain(ends.filter(move |&e| e != v.len()))
    }

    /// Payment card: 13–19 digits, one kind of separator (or none, zero-width
    /// characters aside), a known issuer prefix with a length it issues, Luhn.
    pub(crate) fn card(v: &str) -> bool {
        let dig = Digits::of(v);
        let d = dig.digits();
        if dig.overflow || !(13..=19).contains(&d.len()) || !dig.one_separator_kind() {
            return false;
        }
        issuer_ok(d) && luhn(d)
    }

    fn prefix_num(d: &[u8], n: usize) -> u32 {
        d.iter().take(n).fold(0, |a, &x| a * 10 + x as u32)
    }

    /// Issuer identification number ranges and the lengths each issues.
    fn issuer_ok(d: &[u8]) -> bool {
        let len = d.len();
        let p1 = prefix_num(d, 1);
        let p2 = prefix_num(d, 2);
        let p3 = prefix_num(d, 3);
        let p4 = prefix_num(d, 4);
        let p6 = prefix_num(d, 6);
        // Visa
        (p1 == 4 && matches!(len, 13 | 16 | 19))
            // Mastercard 51–55, 2221–2720
            || (((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && len == 16)
            // American Express
            || ((p2 == 34 || p2 == 37) && len == 15)
            // Diners Club International 300–305, 36, 38–39
            || (((300..=305).contains(&p3) || p2 == 36 || p2 == 38 || p2 == 39 || p3 == 309)
                && (14..=19).contains(&len))
            // Discover 6011, 644–649, 65, 622126–622925
            || ((p4 == 6011 || (644..=649).contains(&p3) || p2 == 65 || (622126..=622925).contains(&p6))
                && (16..=19).contains(&len))
            // JCB 3528–3589
            || ((3528..=3589).contains(&p4) && (16..=19).contains(&len))
            // UnionPay 62
            || (p2 == 62 && (16..=19).contains(&len))
            // Maestro 50, 56–69
            || ((p2 == 50 || (56..=69).contains(&p2)) && (12..=19).contains(&len))
    }

    /// Digits grouped 3-2-4 (or 9 in a row), the shape of an SSN.
    pub(crate) fn ssn_shaped(v: &str) -> bool {
        // Digit counts of the groups between visible separators.
        let mut groups = [0usize; 3];
        let mut g = 0;
        if v.is_ascii() {
            for &b in v.as_bytes() {
                if b.is_ascii_digit() {
                    groups[g] += 1;
                } else {
                    g += 1;
                    if g == groups.len() {
                        return false;
                    }
                }
            }
            return (g == 2 && groups == [3, 2, 4]) || (g == 0 && groups[0] == 9);
        }
        for c in v.chars() {
            if digit_value(c).is_some() {
                groups[g] += 1;
            } else if !is_zero_width(c) {
                g += 1;
                if g == groups.len() {
                    return false;
                }
            }
        }
        (g == 2 && groups == [3, 2, 4]) || (g == 0 && groups[0] == 9)
    }

    /// SSN verdict.
    #[derive(Debug, PartialEq, Eq)]
    pub(crate) enum Ssn {
        Valid,
        NeedsContext,
        Invalid,
    }

    /// US SSN: area 001–899 except 666, group 01–99, serial 0001–9999, one
    /// separator kind used twice or none. Areas 900–999 (never issued; ITINs
    /// and the advertising range 987-65-4320…4329) and values written without
    /// separators are masked only with SSN context nearby.
    pub(crate) fn ssn(v: &str) -> Ssn {
        let dig = Digits::of(v);
        let d = dig.digits();
        if dig.overflow || d.len() != 9 {
            return Ssn::Invalid;
        }
        let mut visible = dig.visible();
        let separated = match (visible.next(), visible.next(), visible.next()) {
            (None, _, _) => false,
            (Some(a), Some(b), None) if a == b && (a == '-' || a == ' ') => true,
            _ => return Ssn::Invalid,
        };
        let area = prefix_num(d, 3);
        let group = d[3] as u32 * 10 + d[4] as u32;
        let serial = prefix_num(&d[5..], 4);
        if area == 0 || area == 666 || group == 0 || serial == 0 {
            return Ssn::Invalid;
        }
        if area >= 900 || !separated {
            return Ssn::NeedsContext;
        }
        Ssn::Valid
    }

    /// Phone number: 7–15 digits (9 or more without `+`), written with `+`,
    /// parentheses or separators (a bare digit run is too often an id), valid for its
    /// country per libphonenumber (`+` form) or for one of the default
    /// regions (national form).
    pub(crate) fn phone(v: &str) -> bool {
        if v.is_ascii() {
            return phone_ascii(v);
        }
        phone_chars(v)
    }

    /// [`phone`] read character by character (any text).
    pub(super) fn phone_chars(v: &str) -> bool {
        let dig = Digits::of(v);
        let n = dig.digits().len();
        if dig.overflow || !(7..=15).contains(&n) {
            return false;
        }
        let intl = v.starts_with('+') || v.starts_with("(+");
        // National numbers (with trunk prefix or area code) have 9 digits or
        // more in every default region; shorter runs are dates, times, ids.
        if !intl && (n < 9 || dig.visible().next().is_none()) {
            return false;
        }
        if v.is_ascii() {
            // Already what the parser reads.
            if intl {
                return phone_valid(None, v);
            }
            return crate::redaction::phone::DEFAULT_REGIONS
                .into_iter()
                .any(|r| phone_valid(Some(r), v));
        }
        // Normalise to ASCII for the parser.
        let mut norm = String::with_capacity(v.len());
        for c in v.chars() {
            match digit_value(c) {
                Some(x) => norm.push(char::from(b'0' + x as u8)),
                None if is_zero_width(c) => {}
                None => norm.push(normal_sep(c)),
            }
        }
        if intl {
            return phone_valid(None, &norm);
        }
        crate::redaction::phone::DEFAULT_REGIONS
            .into_iter()
            .any(|r| phone_valid(Some(r), &norm))
    }

    /// [`phone`] for ASCII text: the same rules read from the bytes (every
    /// separator is visible; the digits need not be copied out).
    pub(super) fn phone_ascii(v: &str) -> bool {
        let b = v.as_bytes();
        let n = b.iter().filter(|c| c.is_ascii_digit()).count();
        if !(7..=15).contains(&n) {
            return false;
        }
        let intl = v.starts_with('+') || v.starts_with("(+");
        if intl {
            return phone_valid(None, v);
        }
        // National numbers: 9 digits or more, written with a separator.
        n >= 9
            && n < b.len()
            && crate::redaction::phone::DEFAULT_REGIONS
                .into_iter()
                .any(|r| phone_valid(Some(r), v))
    }

    /// libphonenumber's verdict on `text` read in `region` (`None`:
    /// international form only): parsed and validated by the compiled
    /// metadata of [`crate::redaction::phone`], or by the `phonenumber` crate
    /// itself for text outside that reading's alphabet.
    fn phone_valid(region: Option<phonenumber::country::Id>, text: &str) -> bool {
        use crate::redaction::phone;
        match phone::parse_and_validate(region, text) {
            Some(valid) => valid,
            None => {
                widen_phone_regex_cache();
                phonenumber::parse(region, text).is_ok_and(|n| phone::is_valid(&n))
            }
        }
    }

    /// Compiled libphonenumber patterns kept at once. The `phonenumber`
    /// crate compiles its metadata patterns lazily into one LRU cache of 100
    /// entries; validating a national number against the default regions
    /// touches more than that, so every candidate recompiled patterns (tens of
    /// µs each). 1,024 holds the default regions' patterns and those of many
    /// countries seen in `+` form, and bounds the memory they take.
    const PHONE_REGEX_CACHE: usize = 1024;

    fn widen_phone_regex_cache() {
        static WIDEN: std::sync::Once = std::sync::Once::new();
        WIDEN.call_once(|| {
            if let Ok(mut cache) = phonenumber::metadata::DATABASE.cache().lock()
                && cache.capacity() < PHONE_REGEX_CACHE
            {
                cache.set_capacity(PHONE_REGEX_CACHE);
            }
        });
    }

    /// IBAN: country code, length for that country, mod-97 = 1. Returns the
    /// byte length of the valid prefix of the candidate (groups of four may
    /// be followed by other words).
    pub(crate) fn iban(v: &str) -> Option<usize> {
        let country = v.as_bytes().first_chunk::<2>()?;
        let want = iban_length(country)?;
        let mut n = 0;
        let mut end = None;
        for (i, c) in v.char_indices() {
            if c != ' ' {
                n += 1;
                if n == want {
                    end = Some(i + 1);
                    break;
                }
            }
        }
        let end = end?;
        // Mod 97 of the characters after the first four, then those four
        // (letters count as 10–35).
        let mut head = [0u8; 4];
        let mut acc: u64 = 0;
        let compact = v[..end].bytes().filter(|b| *b != b' ');
        for (i, b) in compact.enumerate() {
            if i < 4 {
                head[i] = b;
                continue;
            }
            acc = mod97_step(acc, b)?;
        }
        for b in head {
            acc = mod97_step(acc, b)?;
        }
        (acc % 97 == 1).then_some(end)
    }

    /// One character of an IBAN's mod-97 check (ISO 7064): the number read
    /// so far, taken mod 97 only when it passes 10^15 (a division per
    /// character made the check a chain of 20–30 dependent divisions; the
    /// value stays below 10^17 + 35, far from `u64::MAX`, and its residue
    /// mod 97 is the same).
    fn mod97_step(acc: u64, b: u8) -> Option<u64> {
        let acc = if acc >= 1_000_000_000_000_000 {
            acc % 97
        } else {
            acc
        };
        Some(match b {
            b'0'..=b'9' => acc * 10 + u64::from(b - b'0'),
            b'A'..=b'Z' => acc * 100 + u64::from(b - b'A') + 10,
            _ => return None,
        })
    }

    /// IBAN length per country (ISO 13616 registry).
    fn iban_length(c: &[u8; 2]) -> Option<usize> {
        Some(match c {
            b"AD" => 24,
            b"AE" => 23,
            b"AL" => 28,
            b"AT" => 20,
            b"AZ" => 28,
            b"BA" => 20,
            b"BE" => 16,
            b"BG" => 22,
            b"BH" => 22,
            b"BR" => 29,
            b"BY" => 28,
            b"CH" => 21,
            b"CR" => 22,
            b"CY" => 28,
            b"CZ" => 24,
            b"DE" => 22,
            b"DK" => 18,
            b"DO" => 28,
            b"EE" => 20,
            b"EG" => 29,
            b"ES" => 24,
            b"FI" => 18,
            b"FO" => 18,
            b"FR" => 27,
            b"GB" => 22,
            b"GE" => 22,
            b"GI" => 23,
            b"GL" => 18,
            b"GR" => 27,
            b"GT" => 28,
            b"HR" => 21,
            b"HU" => 28,
            b"IE" => 22,
            b"IL" => 23,
            b"IQ" => 23,
            b"IS" => 26,
            b"IT" => 27,
            b"JO" => 30,
            b"KW" => 30,
            b"KZ" => 20,
            b"LB" => 28,
            b"LC" => 32,
            b"LI" => 21,
            b"LT" => 20,
            b"LU" => 20,
            b"LV" => 21,
            b"MC" => 27,
            b"MD" => 24,
            b"ME" => 22,
            b"MK" => 19,
            b"MR" => 27,
            b"MT" => 31,
            b"MU" => 30,
            b"NL" => 18,
            b"NO" => 15,
            b"PK" => 24,
            b"PL" => 28,
            b"PS" => 29,
            b"PT" => 25,
            b"QA" => 29,
            b"RO" => 24,
            b"RS" => 22,
            b"SA" => 24,
            b"SC" => 31,
            b"SE" => 24,
            b"SI" => 19,
            b"SK" => 24,
            b"SM" => 27,
            b"ST" => 25,
            b"SV" => 28,
            b"TL" => 23,
            b"TN" => 24,
            b"TR" => 26,
            b"UA" => 29,
            b"VA" => 22,
            b"VG" => 24,
            b"XK" => 20,
            _ => return None,
        })
    }

    /// E-mail: returns the byte length of the address (a domain may be
    /// followed by a sentence's dot). Local part 1–64 characters, not starting
    /// or ending with `.`; domain labels 1–63; top-level label two letters or more.
    pub(crate) fn email(v: &str) -> Option<usize> {
        if v.is_ascii() {
            return email_ascii(v.as_bytes());
        }
        email_chars(v)
    }

    /// [`email`] read character by character (any text).
    pub(super) fn email_chars(v: &str) -> Option<usize> {
        let at = v.find(['@', '\u{FF20}', '\u{FE6B}'])?;
        let local = &v[..at];
        if local.is_empty()
            || local.chars().count() > 64
            || local.starts_with(['.', '\u{FF0E}'])
            || local.ends_with(['.', '\u{FF0E}'])
        {
            return None;
        }
        let at_len = v[at..].chars().next()?.len_utf8();
        let domain = &v[at + at_len..];
        let mut labels = 0;
        let mut tld = "";
        for l in domain.split(['.', '\u{FF0E}', '\u{3002}']) {
            if l.is_empty() || l.chars().count() > 63 {
                return None;
            }
            labels += 1;
            tld = l;
        }
        if labels < 2 {
            return None;
        }
        if tld.chars().count() < 2 || !tld.chars().all(|c| c.is_alphabetic()) {
            return None;
        }
        Some(v.len())
    }

    /// [`email`] for ASCII text, byte by byte (no `char` decoding): the
    /// same rules, where every character is one byte.
    pub(super) fn email_ascii(v: &[u8]) -> Option<usize> {
        let at = v.iter().position(|&b| b == b'@')?;
        let local = &v[..at];
        if local.is_empty() || local.len() > 64 || local[0] == b'.' || local[at - 1] == b'.' {
            return None;
        }
        let mut labels = 0;
        let mut tld: &[u8] = &[];
        for l in v[at + 1..].split(|&b| b == b'.') {
            if l.is_empty() || l.len() > 63 {
                return None;
            }
            labels += 1;
            tld = l;
        }
        if labels < 2 || tld.len() < 2 || !tld.iter().all(u8::is_ascii_alphabetic) {
            return None;
        }
        Some(v.len())
    }

    /// IPv6: parses, and has at least three hex groups or a `::` with two.
    pub(crate) fn ipv6(v: &str) -> bool {
        if v.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        let groups = v.split(':').filter(|g| !g.is_empty()).count();
        groups >= 3 || (groups >= 2 && v.contains("::") && v.len() >= 6)
    }

    /// JWT: the header decodes to a JSON object with `alg`.
    pub(crate) fn jwt(v: &str) -> bool {
        use base64::Engine as _;
        let Some(h) = v.split('.').next() else {
            return false;
        };
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|j| j.get("alg").is_some())
    }

    /// The password of `scheme://user:password@`, as a byte range.
    pub(crate) fn url_password(v: &str) -> Option<(usize, usize)> {
        let after_scheme = v.find("://")? + 3;
        let colon = after_scheme + v[after_scheme..].find(':')?;
        let end = v.len() - 1; // the '@'
        (colon + 1 < end).then_some((colon + 1, end))
    }

    /// The value of `name = value`: byte offset where it starts, if it looks
    /// like a secret (mixed letters and digits, ≥ 3 bits of entropy per
    /// character, not a placeholder or a plain word).
    pub(crate) fn assignment_value(v: &str) -> Option<usize> {
        let sep = v.find([':', '='])?;
        let rest = &v[sep..];
        let off = sep
            + rest
                .find(|c: char| !matches!(c, ':' | '=' | '>' | ' ' | '\t' | '"' | '\'' | '\\'))?;
        let value = &v[off..];
        let upper = value.to_ascii_uppercase();
        if upper.contains("REDACTED") || upper.contains("EXAMPLE") || upper.contains("XXXX") {
            return None;
        }
        if !value.bytes().any(|b| b.is_ascii_digit())
            || !value.bytes().any(|b| b.is_ascii_alphabetic())
        {
            return None;
        }
        (entropy(value) >= 3.0).then_some(off)
    }

    /// Shannon entropy in bits per byte.
    pub(crate) fn entropy(v: &str) -> f64 {
        let mut counts = [0u32; 256];
        for b in v.bytes() {
            counts[b as usize] += 1;
        }
        let n = v.len() as f64;
        counts
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| {
                let p = c as f64 / n;
                -p * p.log2()
            })
            .sum()
    }
}

#[cfg(test)]
mod fast_tests {
    //! The hand-written matchers of [`fast`] against the regexes they stand
    //! for, on random text over digits, ASCII and Unicode separators,
    //! zero-width characters, non-ASCII digits and the bytes that start other
    //! values.
    use super::*;
    use proptest::prelude::*;

    const ALPHABET: &[char] = &[
        '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '0', '4', '1', ' ', ' ', '-', '.', '.',
        'a', 'F', ':', '@', '_', '+', '(', ')', ',', '\u{200B}', '\u{2009}', '\u{FF0D}', '٣', '５',
    ];

    fn text() -> impl Strategy<Value = String> {
        proptest::collection::vec(proptest::sample::select(ALPHABET), 0..48)
            .prop_map(|v| v.into_iter().collect())
    }

    /// Where a span of `t` ends when up to three bytes are still to arrive
    /// (`cut % 4`, moved forward to a char boundary): text still streaming.
    fn arriving_end(t: &str, cut: usize) -> usize {
        let mut end = t.len().saturating_sub(cut % 4);
        while !t.is_char_boundary(end) {
            end += 1;
        }
        end
    }

    fn detector() -> &'static Detector {
        static D: std::sync::OnceLock<Detector> = std::sync::OnceLock::new();
        D.get_or_init(|| Detector::new(None, &[]).expect("built-in patterns"))
    }

    fn regex_end(kind: Kind, text: &str, s: usize, end: usize) -> Option<usize> {
        let d = detector();
        let pat = d.pats.iter().find(|p| p.kind == kind).expect("built-in");
        let inp = Input::new(text).span(s..end).anchored(Anchored::Yes);
        pat.anchored.search(&inp).map(|m| m.end())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn matchers_agree_with_the_regexes(t in text(), cut in 0usize..48) {
            // `end` < len: text that is still arriving (the stream's span).
            let end = arriving_end(&t, cut);
            let hay = &t.as_bytes()[..end];
            for s in (0..end).filter(|&s| t.is_char_boundary(s)) {
                for (kind, quick) in [
                    (Kind::Card, fast::card(hay, s)),
                    (Kind::Ssn, fast::ssn(hay, s)),
                    (Kind::Ipv4, fast::ipv4(hay, s)),
                ] {
                    let want = regex_end(kind, &t, s, end);
                    match quick {
                        fast::Match::End(e) => prop_assert_eq!(Some(e), want, "{:?} {:?} at {}", kind, t, s),
                        fast::Match::None => prop_assert_eq!(None, want, "{:?} {:?} at {}", kind, t, s),
                        fast::Match::Ask => {}
                    }
                }
                if fast::digit_family_only(hay, s) {
                    let d = detector();
                    let mut set = PatternSet::new(d.pats.len());
                    let inp = Input::new(&t).span(s..end).anchored(Anchored::Yes);
                    d.start_set.which_overlapping_matches(&inp, &mut set);
                    let got: Vec<usize> = set.iter().map(|p| p.as_usize()).collect();
                    prop_assert_eq!(got, d.digit_family_pids.to_vec(), "{:?} at {}", t, s);
                }
            }
        }
    }

    /// Pieces of values, their prefixes and what surrounds them, to build
    /// texts where the hand-written matchers and the start search meet
    /// every pattern (the plain alphabet above rarely spells `sk-ant-`).
    const PIECES: &[&str] = &[
        "sk-",
        "ant-",
        "api",
        "03-",
        "proj-",
        "AKIA",
        "ASIA",
        "ACCA",
        "ghp_",
        "github_pat_",
        "xoxb-",
        "eyJ",
        "eyJhbGciOiJIUzI1NiJ9",
        "abcdefghij",
        "ABCDEFGHIJKLMNOP",
        "QRSTUVWXYZ",
        "0123456789",
        "a1B2c3D4e5",
        ".",
        "..",
        "@",
        "＠",
        "example",
        ".com",
        ".",
        "+",
        "(",
        ")",
        "-",
        " ",
        "  ",
        "\t",
        "_",
        "%",
        ":",
        "://",
        "http",
        "x",
        "user",
        "pass",
        "=",
        "=>",
        "\"",
        "'",
        "\\",
        "\\n",
        "\\\"",
        "\\u0040",
        "api_key",
        "Token",
        "SECRET",
        "passwd",
        "Auth",
        "[REDACTED",
        "[REDACTED_",
        "[REDACTED:",
        "[",
        "]",
        "CREDIT_CARD",
        "-----BEGIN",
        " PRIVATE KEY-----",
        "-----END",
        "DE89",
        "3704",
        "0044",
        "0532",
        "0130",
        "00",
        "GB",
        "GB82",
        "WEST",
        "Z",
        "é",
        "’",
        "—",
        "…",
        "\u{200B}",
        "\u{2009}",
        "５",
        "٣",
        "ſ",
        "\u{212A}",
        "4111111111111111",
        "4111 1111",
        "202",
        "555",
        "0123",
        "1",
        "7",
        "10.0.0.1",
        "::",
        "fe80",
        " \t ",
        "word",
        "password ",
        "db8",
        "\n",
        ",",
        ";",
        "#",
        "/",
    ];

    fn pieces() -> impl Strategy<Value = String> {
        proptest::collection::vec(proptest::sample::select(PIECES), 0..24).prop_map(|v| v.concat())
    }

    /// The detector with the hand-written paths off: the regexes alone.
    fn regex_only() -> &'static Detector {
        static D: std::sync::OnceLock<Detector> = std::sync::OnceLock::new();
        D.get_or_init(|| {
            let mut d = Detector::new(None, &[]).expect("built-in patterns");
            d.hand = false;
            d
        })
    }

    /// What the regexes say may start at `s`: the patterns matching there
    /// (anchored, within `..end`), less those the boundary rule before `s`
    /// rules out. The scan accepts values only among these.
    fn starts_at(t: &str, s: usize, end: usize, json: bool) -> Vec<usize> {
        let d = detector();
        let inp = Input::new(t).span(s..end).anchored(Anchored::Yes);
        (0..d.pats.len())
            .filter(|&pid| d.pats[pid].anchored.search(&inp).is_some())
            .filter(|&pid| d.may_start(pid, t, s, json))
            .collect()
    }

    proptest! {
        // `FAST_CASES=200000` runs a longer search (release build advised).
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("FAST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
        ))]

        /// The byte-wise phone check of ASCII candidates says what the
        /// character-wise one says.
        #[test]
        fn ascii_phone_check_agrees(v in "(\\+|\\(\\+?)?[0-9]{1,4}\\)?([ .-]{0,2}\\(?[0-9]{1,5}\\)?){1,6}") {
            prop_assert_eq!(validators::phone_ascii(&v), validators::phone_chars(&v), "{}", v);
        }

        /// The byte-wise e-mail check of ASCII candidates says what the
        /// character-wise one says.
        #[test]
        fn ascii_email_check_agrees(v in "[a-z0-9.@_+-]{0,70}(@[a-z.-]{0,70})?[.a-z0-9]{0,4}") {
            prop_assert_eq!(
                validators::email_ascii(v.as_bytes()),
                validators::email_chars(&v),
                "{}", v
            );
        }

        #[test]
        fn value_matchers_agree_with_the_regexes(t in pieces(), cut in 0usize..8) {
            let end = arriving_end(&t, cut);
            let hay = &t.as_bytes()[..end];
            for s in (0..end).filter(|&s| t.is_char_boundary(s)) {
                for kind in [
                    Kind::Phone, Kind::Email, Kind::Iban, Kind::Aws, Kind::GitHub,
                    Kind::Anthropic, Kind::OpenAi, Kind::Slack, Kind::Jwt,
                ] {
                    let quick = match kind {
                        Kind::Phone => fast::phone(hay, s),
                        Kind::Email => fast::email(hay, s),
                        Kind::Iban => fast::iban(hay, s),
                        k => fast::key(k, hay, s),
                    };
                    let want = regex_end(kind, &t, s, end);
                    match quick {
                        fast::Match::End(e) => prop_assert_eq!(Some(e), want, "{:?} {:?} at {}", kind, t, s),
                        fast::Match::None => prop_assert_eq!(None, want, "{:?} {:?} at {}", kind, t, s),
                        fast::Match::Ask => prop_assert!(
                            t[s..end].bytes().any(|b| b >= 0x80),
                            "{:?} asked on ASCII {:?} at {}", kind, t, s
                        ),
                    }
                }
            }
        }

        #[test]
        fn start_search_skips_no_start(
            t in pieces(),
            cut in 0usize..8,
            from in 0usize..64,
            json in any::<bool>(),
        ) {
            let end = arriving_end(&t, cut);
            let mut pos = from.min(end);
            while !t.is_char_boundary(pos) {
                pos += 1;
            }
            let hay = &t.as_bytes()[..end];
            let found = fast::next(hay, pos, end, json);
            let clear_until = match found {
                fast::Next::At(s, mask) => {
                    prop_assert!(s >= pos && s < end && t.is_char_boundary(s));
                    for pid in starts_at(&t, s, end, json) {
                        prop_assert!(mask & (1 << pid) != 0, "{:?} at {}: pattern {} left out", t, s, pid);
                    }
                    s
                }
                fast::Next::Done => end,
                fast::Next::Ask(q) => {
                    prop_assert!(q >= pos && q <= end);
                    q
                }
            };
            for p in (pos..clear_until).filter(|&p| t.is_char_boundary(p)) {
                let missed = starts_at(&t, p, end, json);
                prop_assert!(missed.is_empty(), "{:?} from {}: start {:?} at {} skipped", t, pos, missed, p);
            }
        }

        #[test]
        fn hand_paths_find_what_the_regexes_find(t in pieces(), json in any::<bool>()) {
            prop_assert_eq!(detector().detect_with(&t, json), regex_only().detect_with(&t, json), "{:?}", t);
        }
    }

    #[test]
    fn start_search_reaches_back_from_what_decides() {
        // The byte that makes a value (`=`, `@`, a tab in an assignment's
        // gap, a digit) can follow a long run of lower-case letters and
        // spaces: the value's start is found before it.
        for (text, start) in [
            ("so the password \t = hX9kQ2mZ7pL4wR8vN3 ok", 7),
            ("so the password\t= hX9kQ2mZ7pL4wR8vN3 ok", 7),
            ("so the password   = hX9kQ2mZ7pL4wR8vN3 ok", 7),
            ("write to danalee@example.com today", 9),
            ("the host fe80:abcd::1 is up", 9),
        ] {
            let found = fast::next(text.as_bytes(), 0, text.len(), false);
            assert!(
                matches!(found, fast::Next::At(s, _) if s == start),
                "{text:?}: {found:?}"
            );
        }
        // After a word longer than any local part or name, a character only
        // the regex reads decides nothing for the word: the regex is asked
        // from that character on.
        let long = format!("{}é 4111 1111 1111 1111", "w".repeat(200));
        assert_eq!(
            fast::next(long.as_bytes(), 0, long.len(), false),
            fast::Next::Ask(200)
        );
        let spans = detector().detect("so the password \t = hX9kQ2mZ7pL4wR8vN3 ok");
        assert_eq!(spans.len(), 1, "{spans:?}");
    }

    #[test]
    fn matchers_decide_plain_ascii_values() {
        // On plain ASCII digits and separators the regex is never needed.
        for (text, card, ssn, ip) in [
            ("4111 1111 1111 1111", Some(19), None, None),
            ("4111-1111-1111-1111-", Some(19), None, None),
            ("078-05-1120", None, Some(11), None),
            ("078 05 1120 9", None, Some(11), None),
            ("10.0.12.255", None, None, Some(11)),
            ("1000.1.1.1", None, None, None),
        ] {
            let hay = text.as_bytes();
            let end = |m: fast::Match| match m {
                fast::Match::End(e) => Some(e),
                fast::Match::None => None,
                fast::Match::Ask => panic!("{text}: asked the regex"),
            };
            assert_eq!(end(fast::card(hay, 0)), card, "{text}");
            assert_eq!(end(fast::ssn(hay, 0)), ssn, "{text}");
            assert_eq!(end(fast::ipv4(hay, 0)), ip, "{text}");
            let ended = format!("{text}, then prose");
            assert!(fast::digit_family_only(ended.as_bytes(), 0), "{text}");
        }
        // A zero-width character or a non-ASCII separator leaves it to the regex.
        assert_eq!(
            fast::card("4111\u{200B}1111 1111 1111".as_bytes(), 0),
            fast::Match::Ask
        );
        assert_eq!(
            fast::ssn("078\u{2009}05\u{2009}1120".as_bytes(), 0),
            fast::Match::Ask
        );
        // Where the run of name characters may still grow, the start-set
        // search decides.
        assert!(!fast::digit_family_only(b"078-05-1120", 0));
        assert!(!fast::digit_family_only(b"12345@example.com", 0));
        assert!(!fast::digit_family_only(b"2001:db8::1", 0));
        assert!(!fast::digit_family_only(b"1password=hunter2hunter2", 0));
    }
}
