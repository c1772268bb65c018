//! Hand-written equivalents of the regex searches of `detect.rs` for ASCII
//! text without custom patterns: the start search ([`next`]: where a value
//! may start and which patterns may start there) and the anchored searches
//! of the card, SSN, IPv4, phone, e-mail, IBAN and key patterns. Each
//! answers only what it can decide from ASCII and otherwise says
//! [`Match::Ask`] / [`Next::Ask`], so the regex decides (a non-ASCII digit,
//! letter, separator, zero-width character, fullwidth `＠`, or a JSON
//! escape); the tests in `detect.rs` compare them with the regexes.

/// What a hand-written matcher found, anchored at a start.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Match {
    /// The leftmost-first match ends here.
    End(usize),
    /// No match.
    None,
    /// Not decidable here: run the regex.
    Ask,
}

/// `DIGIT_SEP`'s ASCII members.
fn ascii_sep(b: u8) -> bool {
    matches!(b, b' ' | b'-' | b'.')
}

/// The card pattern `\d(?:SEP?\d){12,18}` (SEP: `DIGIT_SEP`) anchored
/// at `s`: greedy, and every step is forced on ASCII text, so the match
/// takes as many (separator, digit) steps as there are, up to 18.
pub(crate) fn card(hay: &[u8], s: usize) -> Match {
    if !hay.get(s).is_some_and(u8::is_ascii_digit) {
        return Match::Ask;
    }
    let mut p = s + 1;
    let mut steps = 0;
    while steps < 18 {
        match hay.get(p) {
            Some(b) if b.is_ascii_digit() => p += 1,
            Some(&b) if ascii_sep(b) => match hay.get(p + 1) {
                Some(d) if d.is_ascii_digit() => p += 2,
                Some(&c) if c >= 0x80 => return Match::Ask,
                _ => break,
            },
            Some(&b) if b >= 0x80 => return Match::Ask,
            _ => break,
        }
        steps += 1;
    }
    if steps >= 12 {
        Match::End(p)
    } else {
        Match::None
    }
}

/// The SSN pattern `\d{3}SEP?\d{2}SEP?\d{4}` anchored at `s`.
pub(crate) fn ssn(hay: &[u8], s: usize) -> Match {
    let mut p = s;
    for (i, n) in [3usize, 2, 4].into_iter().enumerate() {
        if i > 0 {
            match hay.get(p) {
                Some(&b) if ascii_sep(b) => {
                    if hay.get(p + 1).is_some_and(|&c| c >= 0x80) {
                        return Match::Ask;
                    }
                    p += 1;
                }
                Some(&b) if b >= 0x80 => return Match::Ask,
                _ => {}
            }
        }
        for _ in 0..n {
            match hay.get(p) {
                Some(b) if b.is_ascii_digit() => p += 1,
                Some(&b) if b >= 0x80 => return Match::Ask,
                _ => return Match::None,
            }
        }
    }
    Match::End(p)
}

/// The IPv4 pattern `[0-9]{1,3}(?:\.[0-9]{1,3}){3}` anchored at `s`
/// (ASCII only, so always decided).
pub(crate) fn ipv4(hay: &[u8], s: usize) -> Match {
    let mut p = s;
    for i in 0..4 {
        if i > 0 {
            if hay.get(p) != Some(&b'.') {
                return Match::None;
            }
            p += 1;
        }
        let start = p;
        while p - start < 3 && hay.get(p).is_some_and(u8::is_ascii_digit) {
            p += 1;
        }
        if p == start {
            return Match::None;
        }
    }
    Match::End(p)
}

/// Whether only the digit-led patterns (card, SSN, IPv4, phone) can
/// start at `s`, an ASCII digit: the run of ASCII e-mail-local and
/// name characters from `s` holds no letter (no secret keyword, no hex
/// group) and ends, within 64 bytes and before the end of `hay`, at a
/// byte that is not `@`, `:` or non-ASCII (no e-mail, no IPv6).
pub(crate) fn digit_family_only(hay: &[u8], s: usize) -> bool {
    if !hay.get(s).is_some_and(u8::is_ascii_digit) {
        return false;
    }
    for &b in hay.iter().skip(s).take(64) {
        match b {
            b'0'..=b'9' | b'_' | b'.' | b'%' | b'+' | b'-' => {}
            b'@' | b':' | 0x80..=0xFF => return false,
            b if b.is_ascii_alphabetic() => return false,
            _ => return true,
        }
    }
    false
}

/// A read of `hay[i]` by a matcher that answers only for ASCII: `Err` on a
/// non-ASCII byte (the regex may read it as a digit, separator, letter or
/// `@`), `Ok(None)` past the end.
fn ascii_at(hay: &[u8], i: usize) -> Result<Option<u8>, Asked> {
    match hay.get(i) {
        Some(&b) if b >= 0x80 => Err(Asked),
        b => Ok(b.copied()),
    }
}

/// A hand-written matcher met a byte only the regex can read.
#[derive(Debug)]
pub(crate) struct Asked;

impl From<Result<Option<usize>, Asked>> for Match {
    fn from(r: Result<Option<usize>, Asked>) -> Match {
        match r {
            Ok(Some(e)) => Match::End(e),
            Ok(None) => Match::None,
            Err(Asked) => Match::Ask,
        }
    }
}

/// End of the run of bytes from `p` that satisfy `class`: 16 bytes at a
/// time while a whole chunk is in the class (the classes below are written
/// without branches, so a chunk is one vector compare), then byte by byte.
/// Keys, tokens and long local parts are read at several bytes per cycle.
#[inline(always)]
fn run_end(hay: &[u8], mut p: usize, class: impl Fn(u8) -> bool) -> usize {
    while let Some(c) = hay.get(p..).and_then(<[u8]>::first_chunk::<16>) {
        let mut all = true;
        for &b in c {
            all &= class(b);
        }
        if !all {
            break;
        }
        p += 16;
    }
    while p < hay.len() && class(hay[p]) {
        p += 1;
    }
    p
}

/// Like [`run_end`], but `Err` if the run stops at a non-ASCII byte (which
/// the regex's Unicode class might continue).
#[inline]
fn ascii_run_end(hay: &[u8], p: usize, class: impl Fn(u8) -> bool) -> Result<usize, Asked> {
    let r = run_end(hay, p, class);
    ascii_at(hay, r).map(|_| r)
}

/// `[0-9]`, without branches.
#[inline(always)]
fn is_digit(b: u8) -> bool {
    b.wrapping_sub(b'0') < 10
}

/// `[A-Za-z0-9]`, without branches (`| 0x20` folds upper case to lower
/// and sends no other byte into `a..=z`).
#[inline(always)]
fn alnum(b: u8) -> bool {
    ((b | 0x20).wrapping_sub(b'a') < 26) | is_digit(b)
}

/// The e-mail pattern's local-part characters, ASCII ones.
#[inline(always)]
fn email_local(b: u8) -> bool {
    alnum(b) | (b == b'.') | (b == b'_') | (b == b'%') | (b == b'+') | (b == b'-')
}

/// The e-mail pattern's domain-label characters, ASCII ones.
#[inline(always)]
fn email_label(b: u8) -> bool {
    alnum(b) | (b == b'-')
}

/// Key-token characters `[A-Za-z0-9_-]`.
#[inline(always)]
fn token_char(b: u8) -> bool {
    alnum(b) | (b == b'_') | (b == b'-')
}

/// The secret-assignment name characters `[A-Za-z0-9_.-]`.
#[inline(always)]
fn name_char(b: u8) -> bool {
    alnum(b) | (b == b'_') | (b == b'.') | (b == b'-')
}

/// URL scheme characters `[A-Za-z0-9+.-]`.
#[inline(always)]
fn scheme_char(b: u8) -> bool {
    alnum(b) | (b == b'+') | (b == b'.') | (b == b'-')
}

/// The e-mail pattern anchored at `s`:
/// `LOCAL+[@＠﹫]LABEL+(?:[.．。]LABEL+)+`. Each class excludes the next
/// delimiter, so greedy runs decide: the local part is the whole run, then
/// `@`, then as many `.label` steps as follow (at least one).
pub(crate) fn email(hay: &[u8], s: usize) -> Match {
    (|| {
        let at = ascii_run_end(hay, s, email_local)?;
        if at == s || ascii_at(hay, at)? != Some(b'@') {
            return Ok(None);
        }
        let mut q = ascii_run_end(hay, at + 1, email_label)?;
        if q == at + 1 {
            return Ok(None);
        }
        let mut end = None;
        while ascii_at(hay, q)? == Some(b'.') {
            let r = ascii_run_end(hay, q + 1, email_label)?;
            if r == q + 1 {
                break;
            }
            end = Some(r);
            q = r;
        }
        Ok(end)
    })()
    .into()
}

/// `[A-Z]{2}[0-9]{2}`: how an IBAN starts.
fn iban_start(h: &[u8]) -> bool {
    h.len() >= 4
        && h[0].is_ascii_uppercase()
        && h[1].is_ascii_uppercase()
        && h[2].is_ascii_digit()
        && h[3].is_ascii_digit()
}

/// `AKIA|ASIA|ABIA|ACCA`: how an AWS access key id starts.
fn aws_start(h: &[u8]) -> bool {
    [b"AKIA", b"ASIA", b"ABIA", b"ACCA"]
        .iter()
        .any(|k| h.starts_with(&k[..]))
}

/// `gh[pousr]_`: how a classic GitHub token starts.
fn github_start(h: &[u8]) -> bool {
    h.len() >= 4
        && h.starts_with(b"gh")
        && matches!(h[2], b'p' | b'o' | b'u' | b's' | b'r')
        && h[3] == b'_'
}

/// `xox[abposr]-`: how a Slack token starts.
fn slack_start(h: &[u8]) -> bool {
    h.len() >= 5
        && h.starts_with(b"xox")
        && matches!(h[3], b'a' | b'b' | b'p' | b'o' | b's' | b'r')
        && h[4] == b'-'
}

/// The IBAN pattern `[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}` anchored at `s`
/// (ASCII only, so always decided): each step takes a space only when an
/// upper-case letter or digit follows it.
pub(crate) fn iban(hay: &[u8], s: usize) -> Match {
    let up_or_digit = |i: usize| {
        hay.get(i)
            .is_some_and(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    };
    if !iban_start(&hay[s..]) {
        return Match::None;
    }
    let mut p = s + 4;
    let mut steps = 0;
    while steps < 30 {
        if up_or_digit(p) {
            p += 1;
        } else if hay.get(p) == Some(&b' ') && up_or_digit(p + 1) {
            p += 2;
        } else {
            break;
        }
        steps += 1;
    }
    if steps >= 11 {
        Match::End(p)
    } else {
        Match::None
    }
}

/// The key patterns with a literal prefix (ASCII only, so always decided):
/// AWS key ids, GitHub, Anthropic, OpenAI and Slack tokens, JWTs.
pub(crate) fn key(kind: super::Kind, hay: &[u8], s: usize) -> Match {
    use super::Kind;
    let h = &hay[s..];
    // The end of the run of `class` from `at`, if `min` long.
    #[inline(always)]
    fn run_from(hay: &[u8], at: usize, class: impl Fn(u8) -> bool, min: usize) -> Option<usize> {
        let r = run_end(hay, at, class);
        (r - at >= min).then_some(r)
    }
    let end = match kind {
        // (?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}
        Kind::Aws => (aws_start(h)
            && h.len() >= 20
            && h[4..20]
                .iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()))
        .then_some(s + 20),
        // gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}
        Kind::GitHub => {
            let first = github_start(h)
                .then(|| run_from(hay, s + 4, alnum, 36))
                .flatten();
            first.or_else(|| {
                h.starts_with(b"github_pat_")
                    .then(|| run_from(hay, s + 11, |b: u8| alnum(b) | (b == b'_'), 22))
                    .flatten()
            })
        }
        // sk-ant-[a-z]{3,10}[0-9]{2}-[A-Za-z0-9_\-]{20,}
        Kind::Anthropic => {
            if !h.starts_with(b"sk-ant-") {
                None
            } else {
                let l = run_end(hay, s + 7, |b: u8| b.wrapping_sub(b'a') < 26);
                let ok = (3..=10).contains(&(l - (s + 7)))
                    && hay.get(l).is_some_and(u8::is_ascii_digit)
                    && hay.get(l + 1).is_some_and(u8::is_ascii_digit)
                    && hay.get(l + 2) == Some(&b'-');
                if ok {
                    let r = run_end(hay, l + 3, token_char);
                    (r - (l + 3) >= 20).then_some(r)
                } else {
                    None
                }
            }
        }
        // sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}: the optional
        // prefixes are made of the run's own characters, so either way the
        // match is the whole run, if it holds 20 characters.
        Kind::OpenAi => h
            .starts_with(b"sk-")
            .then(|| run_from(hay, s + 3, token_char, 20))
            .flatten(),
        // xox[abposr]-[A-Za-z0-9\-]{10,}
        Kind::Slack => slack_start(h)
            .then(|| run_from(hay, s + 5, email_label, 10))
            .flatten(),
        // eyJ[A-Za-z0-9_\-]{4,}\.eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{8,}
        Kind::Jwt => (|| {
            if !h.starts_with(b"eyJ") {
                return None;
            }
            let a = run_from(hay, s + 3, token_char, 4)?;
            if hay.get(a) != Some(&b'.') || !hay[a + 1..].starts_with(b"eyJ") {
                return None;
            }
            let b = run_end(hay, a + 4, token_char);
            if b - (a + 4) < 4 || hay.get(b) != Some(&b'.') {
                return None;
            }
            let c = run_end(hay, b + 1, token_char);
            (c - (b + 1) >= 8).then_some(c)
        })(),
        _ => return Match::Ask,
    };
    match end {
        Some(e) => Match::End(e),
        None => Match::None,
    }
}

/// The phone pattern
/// `(?:\+|\(\+?)?\d{1,4}\)?(?:SEP{0,2}\(?\d{1,5}\)?){1,6}` anchored at `s`,
/// as a backtracking search in the regex's order of preference (greedy
/// repetitions, optional parts taken first, the `+` alternative first):
/// the first complete path is the leftmost-first match. On ASCII text
/// `SEP` is one of space, `-` and `.`; any non-ASCII byte read asks the
/// regex.
pub(crate) fn phone(hay: &[u8], s: usize) -> Match {
    (|| {
        let at = |i| ascii_at(hay, i);
        // (?:\+|\(\+?)? — the options that apply, preferred first.
        let mut prefixes = [s; 3];
        let n = match (at(s)?, at(s + 1)?) {
            (Some(b'+'), _) => {
                prefixes[0] = s + 1;
                2
            }
            (Some(b'('), Some(b'+')) => {
                prefixes[0] = s + 2;
                prefixes[1] = s + 1;
                3
            }
            (Some(b'('), _) => {
                prefixes[0] = s + 1;
                2
            }
            _ => 1,
        };
        for &p in &prefixes[..n] {
            // \d{1,4}\)? then the repetition.
            let digits = ascii_run_end(hay, p, is_digit)? - p;
            for k in (1..=digits.min(4)).rev() {
                for q in close_paren(hay, p + k)? {
                    if let Some(e) = phone_steps(hay, q, 0)? {
                        return Ok(Some(e));
                    }
                }
            }
        }
        Ok(None)
    })()
    .into()
}

/// Whether a phone number starting at `s` could have the digits its
/// validator asks for: seven, or nine without a leading `+` (or `(+`).
/// Counts the digits of the run of ASCII digits, separators and
/// parentheses from `s`, which holds any match of the phone pattern there;
/// `true` (undecided) when the run reaches the end of `hay` (more text may
/// follow) or a non-ASCII byte (the regex may read it as a digit or
/// separator). Near misses such as dates, times and order numbers are
/// turned away before the backtracking search.
pub(crate) fn phone_digits_possible(hay: &[u8], s: usize) -> bool {
    let intl = hay.get(s) == Some(&b'+') || hay[s..].starts_with(b"(+");
    let need = if intl { 7 } else { 9 };
    let mut digits = 0;
    for &b in &hay[s..] {
        match b {
            b'0'..=b'9' => {
                digits += 1;
                if digits >= need {
                    return true;
                }
            }
            b'+' | b'(' | b')' | b' ' | b'-' | b'.' => {}
            0x80..=0xFF => return true,
            _ => return false,
        }
    }
    true
}

/// The positions after an optional `)` at `p`, preferred first.
fn close_paren(hay: &[u8], p: usize) -> Result<impl Iterator<Item = usize>, Asked> {
    let take = ascii_at(hay, p)? == Some(b')');
    Ok(take.then_some(p + 1).into_iter().chain([p]))
}

/// `(?:SEP{0,2}\(?\d{1,5}\)?){1,6}` from `p` after `done` steps.
fn phone_steps(hay: &[u8], p: usize, done: usize) -> Result<Option<usize>, Asked> {
    if done == 6 {
        return Ok(Some(p));
    }
    let at = |i| ascii_at(hay, i);
    // SEP{0,2}: two separators if there are, then one, then none.
    let mut seps = [p; 3];
    let mut n = 1;
    if at(p)?.is_some_and(ascii_sep) {
        seps = [p + 1, p, p];
        n = 2;
        if at(p + 1)?.is_some_and(ascii_sep) {
            seps = [p + 2, p + 1, p];
            n = 3;
        }
    }
    for &a in &seps[..n] {
        let opens = (at(a)? == Some(b'('))
            .then_some(a + 1)
            .into_iter()
            .chain([a]);
        for b in opens {
            let digits = ascii_run_end(hay, b, is_digit)? - b;
            for k in (1..=digits.min(5)).rev() {
                for c in close_paren(hay, b + k)? {
                    if let Some(e) = phone_steps(hay, c, done + 1)? {
                        return Ok(Some(e));
                    }
                }
            }
        }
    }
    // No further step: the repetition ends here once it has one.
    Ok((done >= 1).then_some(p))
}

/// Where the next value may start, as found by [`next`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// A position where values may start, and which built-in patterns may
    /// match there (bit `1 << pid`; without custom patterns a built-in's
    /// pattern id is its `Kind`'s index).
    At(usize, u32),
    /// No value starts before the end of the range.
    Done,
    /// From this position on the regex decides: a character outside ASCII
    /// (other than common punctuation) or a JSON escape is in reach.
    Ask(usize),
}

fn bit(k: super::Kind) -> u32 {
    1 << k as u32
}

/// Non-ASCII characters that no built-in pattern reads as part of a value
/// next to letters: the General Punctuation quotes, dashes, bullets and
/// ellipsis (U+2010–U+2027, U+2030–U+205E). (The dashes U+2010–U+2015 do
/// separate digits; the digit matchers ask the regex on any non-ASCII
/// byte, so they never see them as inert.) Returns the character's length.
fn inert(hay: &[u8], p: usize) -> Option<usize> {
    // U+2010..=U+205E are E2 80 90..=E2 81 9E.
    match hay.get(p..p + 3)? {
        [0xE2, 0x80, 0x90..=0xA7] | [0xE2, 0x80, 0xB0..=0xBF] | [0xE2, 0x81, 0x80..=0x9E] => {
            Some(3)
        }
        _ => None,
    }
}

/// Whether a run that stopped at `r` ends there for sure: ASCII, the end,
/// or an [`inert`] character.
fn run_stops(hay: &[u8], r: usize) -> Result<(), Asked> {
    match hay.get(r) {
        Some(&b) if b >= 0x80 && inert(hay, r).is_none() => Err(Asked),
        _ => Ok(()),
    }
}

/// Case-insensitively, whether a name holds a word the secret-assignment
/// pattern's keywords all contain (`api`, `secret`, `token`, `passw`,
/// `pwd`, `auth`, `credential`, `access`, `private`).
fn has_secret_word(name: &[u8]) -> bool {
    const WORDS: [&[u8]; 9] = [
        b"api",
        b"secret",
        b"token",
        b"passw",
        b"pwd",
        b"auth",
        b"credential",
        b"access",
        b"private",
    ];
    name.windows(3).enumerate().any(|(i, w)| {
        WORDS.iter().any(|word| {
            w.eq_ignore_ascii_case(&word[..3])
                && name
                    .get(i..i + word.len())
                    .is_some_and(|n| n.eq_ignore_ascii_case(word))
        })
    })
}

/// Whether the assignment operator of the secret pattern follows a name
/// ending at `g`: `(?:\\?["'])?[ \t]*(?::|=)`.
fn assignment_follows(hay: &[u8], g: usize) -> bool {
    let mut q = g;
    if hay.get(q) == Some(&b'\\') && matches!(hay.get(q + 1), Some(b'"' | b'\'')) {
        q += 2;
    } else if matches!(hay.get(q), Some(b'"' | b'\'')) {
        q += 1;
    }
    while matches!(hay.get(q), Some(b' ' | b'\t')) {
        q += 1;
    }
    matches!(hay.get(q), Some(b':' | b'='))
}

/// Whether the IPv6 start `[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:` matches at `p`.
fn ipv6_start(hay: &[u8], p: usize) -> bool {
    let hex = |q: usize| {
        let mut r = q;
        while r - q < 4 && hay.get(r).is_some_and(u8::is_ascii_hexdigit) {
            r += 1;
        }
        r
    };
    let a = hex(p);
    if hay.get(a) != Some(&b':') {
        return false;
    }
    let b = hex(a + 1);
    hay.get(b) == Some(&b':')
}

/// The longest local part the e-mail start pattern allows (`{1,64}`).
const EMAIL_RUN: usize = 64;
/// Longer than any name the secret-assignment pattern matches (64
/// characters, a keyword of at most 15, 64 more).
const NAME_RUN: usize = 160;

/// The patterns that may start at `p`, a position after a boundary (no
/// letter, digit or `_` before it): every built-in whose start pattern can
/// match there, found by reading ASCII (`Err` where a non-ASCII character
/// could change the answer). May include patterns that then fail; never
/// leaves one out.
fn at_boundary(hay: &[u8], p: usize) -> Result<u32, Asked> {
    use super::Kind;
    let b = hay[p];
    let h = &hay[p..];
    let mut mask = 0;
    if email_local(b) {
        // One pass over the local-part run (bounded): the name run is its
        // part before the first `%` or `+`.
        let r = run_end(&hay[..hay.len().min(p + NAME_RUN + 1)], p, email_local);
        let whole = r - p <= NAME_RUN;
        if whole {
            run_stops(hay, r)?;
        }
        if r - p <= EMAIL_RUN && hay.get(r) == Some(&b'@') {
            mask |= bit(Kind::Email);
        }
        if name_char(b) {
            let g = hay[p..r]
                .iter()
                .position(|&c| c == b'%' || c == b'+')
                .map_or(r, |i| p + i);
            if (g < r || whole) && assignment_follows(hay, g) && has_secret_word(&hay[p..g]) {
                mask |= bit(Kind::Generic);
            }
        }
    }
    if (b.is_ascii_hexdigit() || b == b':') && ipv6_start(hay, p) {
        mask |= bit(Kind::Ipv6);
    }
    if b.is_ascii_digit() {
        mask |= bit(Kind::Card) | bit(Kind::Ssn) | bit(Kind::Ipv4) | bit(Kind::Phone);
    } else if b == b'+' || b == b'(' {
        // (?:\+|\(\+?)?\d
        let d = if b == b'(' && h.get(1) == Some(&b'+') {
            2
        } else {
            1
        };
        match h.get(d) {
            Some(c) if c.is_ascii_digit() => mask |= bit(Kind::Phone),
            Some(&c) if c >= 0x80 => return Err(Asked),
            _ => {}
        }
    } else if b.is_ascii_alphabetic() {
        if iban_start(h) {
            mask |= bit(Kind::Iban);
        }
        match b {
            b's' if h.starts_with(b"sk-") => {
                mask |= bit(Kind::OpenAi);
                if h.starts_with(b"sk-ant-") {
                    mask |= bit(Kind::Anthropic);
                }
            }
            b'A' if aws_start(h) => mask |= bit(Kind::Aws),
            b'g' if github_start(h) || h.starts_with(b"github_pat_") => mask |= bit(Kind::GitHub),
            b'x' if slack_start(h) => mask |= bit(Kind::Slack),
            b'e' if h.starts_with(b"eyJ") => mask |= bit(Kind::Jwt),
            _ => {}
        }
    }
    Ok(mask)
}

/// Byte classes for [`next`]: ASCII letters and digits, and the other
/// e-mail local-part characters (`.`, `_`, `%`, `+`, `-`).
const ALNUM: u8 = 1;
const LOCAL_PUNCT: u8 = 2;

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() {
            t[b] = ALNUM;
        } else if matches!(c, b'.' | b'_' | b'%' | b'+' | b'-') {
            t[b] = LOCAL_PUNCT;
        }
        b += 1;
    }
    t
};

/// [`at_boundary`] for a word of ASCII letters and digits `hay[p..r]` that
/// ends at `r` (not a letter, digit or local-part character): the e-mail,
/// name and scheme runs from `p` all end at `r`, so one look at what
/// follows decides.
fn at_word(hay: &[u8], p: usize, r: usize) -> Result<u32, Asked> {
    use super::Kind;
    let word = &hay[p..r];
    // What follows a longer word decides nothing (no local part, name or
    // hex group is that long).
    if word.len() <= NAME_RUN {
        run_stops(hay, r)?;
    }
    let b = hay[p];
    let mut mask = 0;
    match hay.get(r) {
        Some(b'@') if word.len() <= EMAIL_RUN => mask |= bit(Kind::Email),
        Some(b':')
            if word.len() <= 4 && word.iter().all(u8::is_ascii_hexdigit) && ipv6_start(hay, p) =>
        {
            mask |= bit(Kind::Ipv6)
        }
        _ => {}
    }
    if matches!(
        hay.get(r),
        Some(b':' | b'=' | b'"' | b'\'' | b'\\' | b' ' | b'\t')
    ) && word.len() <= NAME_RUN
        && assignment_follows(hay, r)
        && has_secret_word(word)
    {
        mask |= bit(Kind::Generic);
    }
    if b.is_ascii_digit() {
        mask |= bit(Kind::Card) | bit(Kind::Ssn) | bit(Kind::Ipv4) | bit(Kind::Phone);
    } else {
        if iban_start(word) {
            mask |= bit(Kind::Iban);
        }
        if aws_start(word) {
            mask |= bit(Kind::Aws);
        }
    }
    // (The other key patterns hold `-`, `_` or `.` after their first
    // word, which this one is not followed by.)
    Ok(mask)
}

/// The next position in `[pos, until)` where a built-in value may start,
/// reading `hay` (the text up to the end of the searched span) as ASCII:
/// the hand-written form of the unanchored start search and the start-set
/// search after it, for text without custom patterns.
///
/// Positions are skipped only where no start pattern can match, or where
/// every one that can is ruled out by the boundary rule before it (a
/// letter, digit or `_` right before a value that needs a boundary).
/// Every returned pattern set holds every pattern whose start matches.
/// With `json`, a backslash within six bytes asks the regex (escapes make
/// boundaries there).
///
/// Words of letters and digits are taken whole: only their first position
/// can follow a boundary, and what follows the word decides the rest.
pub(crate) fn next(hay: &[u8], pos: usize, until: usize, json: bool) -> Next {
    use super::Kind;
    if json && hay[pos.saturating_sub(6)..pos].contains(&b'\\') {
        return Next::Ask(pos);
    }
    let boundary_at = |p: usize| {
        // (A non-ASCII byte before counts as a boundary: `may_start`
        // decides. After `[REDACTED_` a value starts at a boundary too.)
        p == 0 || {
            let prev = hay[p - 1];
            if prev == b'_' {
                hay[..p].ends_with(b"[REDACTED_")
            } else {
                !prev.is_ascii_alphanumeric()
            }
        }
    };
    // End of the last run of scheme characters measured (positions before
    // it share it).
    let mut scheme_end = 0;
    let mut p = pos;
    // The interesting byte the position-by-position reading works toward.
    let mut target = pos;
    loop {
        if p >= target && p < hay.len() && BORING[hay[p] as usize] {
            // Skip to the next interesting byte, then back to where a value
            // reaching it could start.
            let t = next_interesting(hay, p);
            p = back_from(hay, p, t);
            target = t;
        }
        if p >= until {
            return Next::Done;
        }
        let b = hay[p];
        let class = CLASS[b as usize];
        if class == ALNUM {
            // A word: letters and digits up to `r`. Only `p` can follow a
            // boundary; inside, only a URL scheme can start.
            let mut r = p + 1;
            while r < hay.len() && CLASS[hay[r] as usize] == ALNUM {
                r += 1;
            }
            let mut mask = 0;
            if boundary_at(p) {
                let found = if hay
                    .get(r)
                    .is_some_and(|&c| CLASS[c as usize] == LOCAL_PUNCT)
                {
                    at_boundary(hay, p)
                } else {
                    let m = at_word(hay, p, r);
                    // The same answer, but for a JWT's `eyJ`: a JWT needs a
                    // `.` after the word.
                    debug_assert_eq!(
                        m.as_ref().ok(),
                        at_boundary(hay, p)
                            .map(|m| m & !bit(Kind::Jwt))
                            .as_ref()
                            .ok(),
                        "{p}"
                    );
                    m
                };
                match found {
                    Ok(m) => mask = m,
                    Err(Asked) => return Next::Ask(p),
                }
            }
            if matches!(hay.get(r), Some(b':' | b'+' | b'.' | b'-')) {
                if p >= scheme_end {
                    // A scheme is at most 16 characters: a `://` further than
                    // that from this word starts no URL in it. (Reading the
                    // whole run here, once per start found in it, made long
                    // runs such as `1.1.1.…` or `sk-sk-…` quadratic.)
                    let cap = hay.len().min(r + 17);
                    scheme_end = run_end(&hay[..cap], r, scheme_char);
                }
                if hay[scheme_end..].starts_with(b"://") {
                    // [A-Za-z][A-Za-z0-9+.\-]{1,15}://
                    let first = p.max(scheme_end.saturating_sub(16));
                    let url = (first..r.min(scheme_end - 1).min(until))
                        .find(|&q| hay[q].is_ascii_alphabetic());
                    match url {
                        Some(q) if q == p => mask |= bit(Kind::UrlCredentials),
                        Some(q) if mask == 0 => return Next::At(q, bit(Kind::UrlCredentials)),
                        _ => {}
                    }
                }
            }
            if mask != 0 {
                return Next::At(p, mask);
            }
            p = r;
            continue;
        }
        if b >= 0x80 {
            match inert(hay, p) {
                Some(len) => {
                    p += len;
                    continue;
                }
                None => return Next::Ask(p),
            }
        }
        let mut mask = 0;
        match b {
            b'\\' if json => return Next::Ask(p),
            b'[' if hay.get(p + 1).is_some_and(u8::is_ascii_uppercase) => {
                mask |= bit(Kind::Placeholder)
            }
            b'-' if hay[p..].starts_with(b"-----BEGIN") => mask |= bit(Kind::PrivateKey),
            _ => {}
        }
        if (class == LOCAL_PUNCT || matches!(b, b'(' | b':')) && boundary_at(p) {
            match at_boundary(hay, p) {
                Ok(m) => mask |= m,
                Err(Asked) => return Next::Ask(p),
            }
        }
        if mask != 0 {
            return Next::At(p, mask);
        }
        p += 1;
    }
}

/// Bytes that decide nothing on their own: lower-case letters and spaces.
/// No value starts at one unless an interesting byte (any other) follows
/// within its run of lower-case letters, then spaces (the gap between a
/// secret's name and `=`): every start pattern holds a digit, an
/// upper-case letter or punctuation after such a run (`@`, `-`, `_`, `.`,
/// `:`, `=`, a quote, …). (Two compares: the 16-byte test stays short.)
#[inline(always)]
const fn boring(b: u8) -> bool {
    b.wrapping_sub(b'a') < 26 || b == b' '
}

/// [`boring`] as a table, for byte-at-a-time reading.
static BORING: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = boring(b as u8);
        b += 1;
    }
    t
};

/// Offset of the first byte at or after `from` that is not [`boring`]
/// (`hay.len()` if none): 16 bytes at a time (one vector compare), then
/// the byte within them.
fn next_interesting(hay: &[u8], from: usize) -> usize {
    const CHUNK: usize = 16;
    let rest = &hay[from..];
    let mut chunks = rest.chunks_exact(CHUNK);
    let mut base = from;
    for c in &mut chunks {
        let mut all = true;
        for &b in c {
            all &= boring(b);
        }
        if !all {
            return base + c.iter().position(|&b| !BORING[b as usize]).unwrap_or(0);
        }
        base += CHUNK;
    }
    base + chunks
        .remainder()
        .iter()
        .position(|&b| !boring(b))
        .unwrap_or(chunks.remainder().len())
}

/// The first position at or after `from` from which a value could reach
/// the interesting byte at `t`: back over lower-case letters (a run that
/// `t` continues or ends); from an assignment's `:` or `=`, or a tab in the
/// gap before them, first back over spaces.
fn back_from(hay: &[u8], from: usize, t: usize) -> usize {
    let mut q = t;
    if matches!(hay.get(t), Some(b':' | b'=' | b'\t')) {
        while q > from && hay[q - 1] == b' ' {
            q -= 1;
        }
    }
    while q > from && hay[q - 1].is_ascii_lowercase() {
        q -= 1;
    }
    q
}
