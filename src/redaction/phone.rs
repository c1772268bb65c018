//! Phone-number parsing and validity from libphonenumber's metadata,
//! compiled once.
//!
//! The `phonenumber` crate (a maintained libphonenumber port) holds the
//! metadata. Its own `parse` and `is_valid` look every metadata pattern up by
//! its source text in one global LRU cache behind a mutex (hashing pattern
//! texts of up to a few KiB with SipHash on every use) and run the number-type
//! regexes one after another: about 10 µs per number, most of the redaction
//! time on text dense with phone numbers. This module gives the same answers
//! from per-region automata built once (all of a region's number-type
//! patterns in one fully compiled, anchored multi-pattern DFA, walked state
//! by state with no cache or allocation per number) and a direct reading of
//! the candidate, which the detector's phone pattern has already reduced to
//! digits, spaces, `-`, `.`, parentheses and a leading `+`.
//!
//! It mirrors `phonenumber` 0.3.10 (metadata 9.0.33) rule for rule, quirks
//! included:
//! - [`parse`] follows `phonenumber::parse`: RFC 3966 reading first (no
//!   spaces; a `+` code ends at the first separator), else the natural one
//!   (from the first `+` or digit, trailing non-digits dropped); a leading
//!   `+` or the region's international (IDD) prefix selects international
//!   form, whose calling code is the first known 1–3 digit prefix; a national
//!   number starting with the region's own code loses it when it is not
//!   possible as written; then the national prefix for parsing (with its
//!   transform rule) and the national prefix are stripped unless that leaves
//!   a number too short for the region.
//! - [`is_valid`] follows `phonenumber::is_valid`: the region comes from the
//!   calling code (several regions: the first whose `leading_digits` match at
//!   the start, or, without `leading_digits`, whose number types match); a
//!   number is valid if the region's general description matches and so does
//!   one of the premium-rate, toll-free, shared-cost, VoIP, personal, pager,
//!   UAN, voicemail, fixed-line or mobile descriptions. A description matches
//!   when its `possible_length` list (if any) holds the number's length and
//!   its pattern matches at the start (the crate's test: a match beginning at
//!   offset 0, not necessarily the whole number).
//!
//! Text outside that alphabet is left to the crate ([`Parsed::Unsupported`]).
//! The tests `same_parse_as_libphonenumber` and `same_verdict_as_libphonenumber`
//! compare both answers with the crate's on numbers derived from the
//! metadata's examples, written in national and international forms.

use std::collections::HashMap;
use std::sync::OnceLock;

use phonenumber::PhoneNumber;
use phonenumber::country::Id;
use phonenumber::metadata::{DATABASE, Descriptor, Metadata};
use regex_automata::dfa::{Automaton, StartKind, dense};
use regex_automata::util::primitives::StateID;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, MatchKind};

/// Compiles the [`DEFAULT_REGIONS`] and the calling-code tables now (once per
/// process), so that the first response with a phone number does not wait
/// for them.
pub(crate) fn warm() {
    for id in DEFAULT_REGIONS {
        let _ = home_region(id);
    }
    let _ = known_code(1);
    for id in DEFAULT_REGIONS {
        let code = DATABASE
            .by_id(id.as_ref())
            .map_or(1, Metadata::country_code);
        if let Some(CodeRegions::Several(metas, leading)) = code_regions(code) {
            leading.get_or_init(|| LeadingSet::new(metas));
        }
    }
}

/// Regions in which a number written in national form (no `+`) is tried.
pub(crate) const DEFAULT_REGIONS: [Id; 12] = [
    Id::US,
    Id::GB,
    Id::DE,
    Id::FR,
    Id::IN,
    Id::AU,
    Id::CA,
    Id::ES,
    Id::IT,
    Id::NL,
    Id::JP,
    Id::BR,
];

/// A region's metadata and its compiled form; the [`DEFAULT_REGIONS`]'
/// looked up once (the database hashes the id's text on every lookup).
fn home_region(id: Id) -> Option<(&'static Metadata, &'static Region)> {
    fn lookup(id: Id) -> Option<(&'static Metadata, &'static Region)> {
        let meta = DATABASE.by_id(id.as_ref())?;
        Some((meta, region(meta)?))
    }
    static DEFAULTS: OnceLock<Vec<Option<(&'static Metadata, &'static Region)>>> = OnceLock::new();
    match DEFAULT_REGIONS.iter().position(|&r| r == id) {
        Some(i) => DEFAULTS
            .get_or_init(|| DEFAULT_REGIONS.iter().map(|&r| lookup(r)).collect())
            .get(i)
            .copied()
            .flatten(),
        None => lookup(id),
    }
}

/// Shortest and longest national significant number the crate accepts.
const MIN_NSN: usize = 2;
const MAX_NSN: usize = 17;

/// One region's metadata, compiled.
struct Region {
    /// Pattern 0: the general description; then one per number type.
    set: Dfa,
    /// The general description's allowed national-number lengths, in
    /// order (empty: any).
    general_lengths: Vec<u16>,
    /// Allowed lengths per pattern of `set` as bit sets (bit
    /// `1 << length`; all bits: any length). Numbers read here have at most [`Num::CAP`] digits, so lengths from
    /// 64 up can never match and are left out.
    length_bits: Vec<u64>,
    /// Lengths of numbers diallable only locally (general description).
    local_lengths: Vec<u16>,
    country_code: u16,
    national_prefix: Option<String>,
    /// `national_prefix_for_parsing` (captures: carrier code, rest).
    prefix_for_parsing: Option<regex::Regex>,
    /// The same when it is plain strings of digits, one or several
    /// alternatives (most regions: `0`, `1`; GB: `0|180020`), matched
    /// without the regex.
    prefix_for_parsing_literals: Option<Vec<String>>,
    national_prefix_transform_rule: Option<String>,
    /// The international (IDD) prefix pattern.
    international_prefix: Option<Dfa>,
}

/// The crate's `Validation` of a number's length, as far as parsing needs it.
#[derive(PartialEq, Eq)]
enum Length {
    Possible,
    LocalOnly,
    TooShort,
    Other,
}

/// A metadata pattern set compiled into a dense DFA, searched anchored at
/// the start of a national number: a walk over a table, with no cache,
/// pool or allocation per search. The crate compiles its metadata patterns
/// with `ignore_whitespace`; they only ever see national numbers in ASCII
/// digits, where a Unicode `\d` and `[0-9]` match alike, so they are
/// compiled without Unicode. All 254 regions' number-type sets take
/// 1.8 MB this way (the largest, CN, 35 KB; about 0.6 ms each to build).
struct Dfa {
    dfa: dense::DFA<Vec<u32>>,
    /// The anchored start state, when it does not depend on what precedes
    /// the search (no look-behind: always, for these patterns).
    start: Option<StateID>,
}

/// Bound on one automaton's size (bytes), far above the largest region's
/// (35 KB); a set past it is left to the crate.
const DFA_LIMIT: usize = 4 << 20;

impl Dfa {
    /// `None` if a pattern does not compile, the automaton would pass
    /// [`DFA_LIMIT`], or there are more than 64 patterns (the crate then
    /// decides).
    fn new(patterns: &[&str], kind: MatchKind) -> Option<Dfa> {
        if patterns.len() > 64 {
            return None;
        }
        dense::Builder::new()
            .syntax(
                syntax::Config::new()
                    .ignore_whitespace(true)
                    .unicode(false)
                    .utf8(false),
            )
            .configure(
                dense::Config::new()
                    .match_kind(kind)
                    .start_kind(StartKind::Anchored)
                    .minimize(false)
                    .dfa_size_limit(Some(DFA_LIMIT))
                    .determinize_size_limit(Some(DFA_LIMIT)),
            )
            .build_many(patterns)
            .ok()
            .map(|dfa| Dfa {
                start: dfa.universal_start_state(Anchored::Yes),
                dfa,
            })
    }

    /// The patterns (bit `1 << id`) with a match beginning at the start of
    /// `hay`, ending anywhere: what an anchored overlapping search of a
    /// [`MatchKind::All`] automaton reports. (The patterns have no
    /// look-around and no byte makes the automaton quit, so a walk over its
    /// states decides.)
    fn starting(&self, hay: &[u8]) -> u64 {
        let dfa = &self.dfa;
        let Some(mut s) = self.start(hay) else {
            return 0;
        };
        let mut found = 0u64;
        let mut collect = |s| {
            if dfa.is_match_state(s) {
                for i in 0..dfa.match_len(s) {
                    found |= 1 << dfa.match_pattern(s, i).as_usize();
                }
            }
        };
        for &b in hay {
            s = dfa.next_state(s, b);
            if dfa.is_special_state(s) {
                if dfa.is_dead_state(s) || dfa.is_quit_state(s) {
                    return found;
                }
                collect(s);
            }
        }
        collect(dfa.next_eoi_state(s));
        found
    }

    /// The end of the leftmost-first match beginning at the start of `hay`
    /// (a [`MatchKind::LeftmostFirst`] automaton): what the crate's
    /// unanchored `find` returns when its match starts at 0. The walk of
    /// regex-automata's forward search without its prefilter and
    /// acceleration (matches are seen one byte late: a match state entered
    /// on the byte at `i` ends a match at `i`).
    fn anchored_end(&self, hay: &[u8]) -> Option<usize> {
        let dfa = &self.dfa;
        let mut s = self.start(hay)?;
        let mut end = None;
        for (i, &b) in hay.iter().enumerate() {
            s = dfa.next_state(s, b);
            if dfa.is_special_state(s) {
                if dfa.is_match_state(s) {
                    end = Some(i);
                } else if dfa.is_dead_state(s) {
                    return end;
                } else if dfa.is_quit_state(s) {
                    return None;
                }
            }
        }
        if dfa.is_match_state(dfa.next_eoi_state(s)) {
            end = Some(hay.len());
        }
        end
    }

    /// The anchored start state for a search of `hay`.
    fn start(&self, hay: &[u8]) -> Option<StateID> {
        self.start.or_else(|| {
            self.dfa
                .start_state_forward(&Input::new(hay).anchored(Anchored::Yes))
                .ok()
        })
    }
}

fn compile_regex(pattern: &str) -> Option<regex::Regex> {
    regex::RegexBuilder::new(pattern)
        .ignore_whitespace(true)
        .build()
        .ok()
}

impl Region {
    /// `None` if a pattern does not compile (the crate then decides).
    fn new(meta: &Metadata) -> Option<Region> {
        let d = meta.descriptors();
        let types: [Option<&Descriptor>; 10] = [
            d.premium_rate(),
            d.toll_free(),
            d.shared_cost(),
            d.voip(),
            d.personal_number(),
            d.pager(),
            d.uan(),
            d.voicemail(),
            d.fixed_line(),
            d.mobile(),
        ];
        let descs: Vec<&Descriptor> = std::iter::once(d.general())
            .chain(types.into_iter().flatten())
            .collect();
        let sources: Vec<&str> = descs.iter().map(|d| d.national_number().as_str()).collect();
        let opt_regex = |re: Option<&str>| match re {
            Some(re) => compile_regex(re).map(Some),
            None => Some(None),
        };
        let international_prefix = match meta.international_prefix() {
            Some(re) => Some(Dfa::new(&[re.as_str()], MatchKind::LeftmostFirst)?),
            None => None,
        };
        Some(Region {
            set: Dfa::new(&sources, MatchKind::All)?,
            general_lengths: d.general().possible_length().to_vec(),
            length_bits: descs
                .iter()
                .map(|d| length_bits(d.possible_length()))
                .collect(),
            local_lengths: d.general().possible_local_length().to_vec(),
            country_code: meta.country_code(),
            national_prefix: meta.national_prefix().map(str::to_owned),
            prefix_for_parsing: opt_regex(meta.national_prefix_for_parsing().map(|r| r.as_str()))?,
            prefix_for_parsing_literals: meta
                .national_prefix_for_parsing()
                .map(|r| r.as_str().split('|'))
                .and_then(|alts| {
                    alts.map(|p| {
                        (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                            .then(|| p.to_owned())
                    })
                    .collect()
                }),
            national_prefix_transform_rule: meta
                .national_prefix_transform_rule()
                .map(str::to_owned),
            international_prefix,
        })
    }

    /// The descriptions (bit `1 << pattern`) whose `possible_length` list
    /// allows a national number of `len` digits.
    /// (No list names 64 digits or more, so such a number is allowed only
    /// where any length is.)
    fn allowing(&self, len: usize) -> u64 {
        let allows = |b: u64| match u32::try_from(len).ok().and_then(|l| 1u64.checked_shl(l)) {
            Some(bit) => b & bit != 0,
            None => b == u64::MAX,
        };
        self.length_bits
            .iter()
            .enumerate()
            .fold(0, |acc, (i, &b)| if allows(b) { acc | 1 << i } else { acc })
    }

    /// The crate's `Descriptor::is_match` of the general description.
    fn general_match(&self, national: &[u8]) -> bool {
        self.allowing(national.len()) & 1 != 0 && self.set.starting(national) & 1 != 0
    }

    /// The crate's `number_type(meta, national) != Type::Unknown`: the
    /// general description and one number type match.
    fn has_type(&self, national: &[u8]) -> bool {
        let allowed = self.allowing(national.len());
        // No automaton run when no description allows the length.
        if allowed & 1 == 0 || allowed == 1 {
            return false;
        }
        let found = self.set.starting(national) & allowed;
        found & 1 != 0 && found != 1
    }

    /// The crate's `validator::length(meta, number, Type::Unknown)` (its
    /// general `possible_length` list, used only when non-empty).
    fn length(&self, len: usize) -> Length {
        let possible = &self.general_lengths;
        let len = len as u16;
        let (Some(&min), Some(&max)) = (possible.first(), possible.last()) else {
            return Length::Other;
        };
        if self.local_lengths.contains(&len) {
            Length::LocalOnly
        } else if len == min {
            Length::Possible
        } else if len < min {
            Length::TooShort
        } else if len > max {
            Length::Other
        } else if possible.contains(&len) {
            Length::Possible
        } else {
            Length::Other
        }
    }

    /// The crate's `helper::national_number`: strips the national prefix for
    /// parsing (or applies its transform rule). `Ok(None)` where the crate
    /// would panic (a transform rule whose first group did not take part);
    /// `Err(())` when a transformed number does not fit a [`Num`].
    fn strip_prefix_for_parsing(&self, national: Num) -> Result<Option<Num>, ()> {
        let digits = national.bytes();
        let cut = |k: usize| {
            let mut n = national;
            n.drain(k);
            Ok(Some(n))
        };
        let Some(re) = &self.prefix_for_parsing else {
            return match &self.national_prefix {
                Some(p) if has_prefix(digits, p.as_bytes()) => cut(p.len()),
                _ => Ok(Some(national)),
            };
        };
        if let Some(alts) = &self.prefix_for_parsing_literals
            && self.national_prefix_transform_rule.is_none()
        {
            // The regex's leftmost-first match: at the start the first
            // alternative that fits, else none that counts; no groups, so
            // the prefix is cut.
            return match alts.iter().find(|a| has_prefix(digits, a.as_bytes())) {
                Some(a) => cut(a.len()),
                None => Ok(Some(national)),
            };
        }
        let text = national.as_str();
        let Some(caps) = re.captures(text) else {
            return Ok(Some(national));
        };
        let Some(whole) = caps.get(0) else {
            return Ok(None);
        };
        if whole.start() != 0 {
            return Ok(Some(national));
        }
        let first = caps.get(1).is_some();
        let last = caps.get(caps.len() - 1).is_some();
        match &self.national_prefix_transform_rule {
            Some(rule) if last => {
                let viable = self.general_match(text.as_bytes());
                let transformed = re.replace(text, rule.as_str());
                if viable && !self.general_match(transformed.as_bytes()) {
                    return Ok(Some(national));
                }
                if !first {
                    return Ok(None);
                }
                Num::new(&transformed).map(Some).ok_or(())
            }
            // (The crate also compares the general description before and
            // after, on the same text: never a difference.)
            _ => cut(whole.end()),
        }
    }
}

/// `digits.starts_with(prefix)` for the few bytes of a national prefix,
/// compared in place (the library call costs more than the comparison).
#[inline(always)]
fn has_prefix(digits: &[u8], prefix: &[u8]) -> bool {
    digits.len() >= prefix.len() && digits.iter().zip(prefix).all(|(a, b)| a == b)
}

/// A `possible_length` list as a bit set ([`Region::length_bits`]).
fn length_bits(lengths: &[u16]) -> u64 {
    if lengths.is_empty() {
        return u64::MAX;
    }
    lengths
        .iter()
        .filter(|&&l| l < 64)
        .fold(0, |acc, &l| acc | 1 << l)
}

/// A number being read, in a fixed buffer (ASCII digits; no allocation
/// per candidate). Longer texts are left to the crate.
#[derive(Clone, Copy)]
struct Num {
    b: [u8; Num::CAP],
    n: usize,
}

impl Num {
    const CAP: usize = 40;

    /// A copy of `s` (`None` if longer than [`Num::CAP`] or not ASCII digits).
    fn new(s: &str) -> Option<Num> {
        let mut out = Num {
            b: [0; Num::CAP],
            n: 0,
        };
        for &c in s.as_bytes() {
            if !c.is_ascii_digit() || out.n == Num::CAP {
                return None;
            }
            out.b[out.n] = c;
            out.n += 1;
        }
        Some(out)
    }

    /// Replaces the contents with the ASCII digits of `s`; `false` if
    /// more than [`Num::CAP`]. (Filled in place: a `Num` returned by value
    /// right after its bytes were written one by one is copied back
    /// through a store-forwarding stall.)
    fn set_digits(&mut self, s: &str) -> bool {
        self.n = 0;
        for &c in s.as_bytes() {
            if c.is_ascii_digit() {
                if self.n == Num::CAP {
                    return false;
                }
                self.b[self.n] = c;
                self.n += 1;
            }
        }
        true
    }

    fn bytes(&self) -> &[u8] {
        &self.b[..self.n]
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits are ever stored.
        std::str::from_utf8(&self.b[..self.n]).unwrap_or_default()
    }

    /// Drops the first `k` digits.
    fn drain(&mut self, k: usize) {
        let k = k.min(self.n);
        self.b.copy_within(k..self.n, 0);
        self.n -= k;
    }

    fn len(&self) -> usize {
        self.n
    }
}

/// `code` in decimal, without allocating.
fn decimal(code: u16, buf: &mut [u8; 5]) -> &str {
    let mut n = code;
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).unwrap_or_default()
}

/// Identity hash for metadata addresses (already unique; no SipHash on
/// every lookup).
#[derive(Default)]
struct AddressHasher(u64);

impl std::hash::Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_usize(&mut self, n: usize) {
        // Metadata entries are far more than 16 bytes apart.
        self.0 = (n as u64) >> 4;
    }
}

type RegionMap =
    HashMap<usize, OnceLock<Option<Region>>, std::hash::BuildHasherDefault<AddressHasher>>;

/// Every metadata entry of the crate's static database (each calling code's,
/// so the non-geographic entries sharing the id `001` are all there), keyed
/// by address, each compiled on first use.
fn regions() -> &'static RegionMap {
    static REGIONS: OnceLock<RegionMap> = OnceLock::new();
    REGIONS.get_or_init(|| {
        let mut map = RegionMap::default();
        let by_code = (1..=999u16).filter_map(|c| DATABASE.by_code(&c)).flatten();
        for meta in DATABASE.iter().chain(by_code) {
            map.entry(meta as *const Metadata as usize)
                .or_insert_with(OnceLock::new);
        }
        map
    })
}

/// The compiled form of one metadata entry of the static database.
fn region(meta: &'static Metadata) -> Option<&'static Region> {
    let cell = regions().get(&(meta as *const Metadata as usize))?;
    cell.get_or_init(|| Region::new(meta)).as_ref()
}

/// The regions of one calling code, as the crate's `source_for` reads
/// them: one (a non-geographic `001` entry, or a region), or several in the
/// database's order.
enum CodeRegions {
    One(Option<&'static Metadata>),
    /// (Boxed: a compiled automaton is large, and most codes have one region.)
    Several(Vec<&'static Metadata>, Box<OnceLock<Option<LeadingSet>>>),
}

/// The `leading_digits` patterns of a calling code's regions in one
/// anchored multi-pattern search (the North American code alone has 23):
/// one search says whose match at the start of a number.
struct LeadingSet {
    set: Dfa,
    /// Pattern id per region of the code (`None`: no `leading_digits`).
    pids: Vec<Option<usize>>,
    /// The code's regions, compiled.
    regions: Vec<&'static Region>,
    /// The national-number lengths some region's general description
    /// allows (bit per length; `None` when one allows any length).
    lengths: Option<u32>,
}

impl LeadingSet {
    fn new(metas: &[&'static Metadata]) -> Option<LeadingSet> {
        let mut sources = Vec::new();
        let pids = metas
            .iter()
            .map(|m| {
                m.leading_digits().map(|re| {
                    sources.push(re.as_str());
                    sources.len() - 1
                })
            })
            .collect();
        let regions: Vec<&'static Region> =
            metas.iter().map(|&m| region(m)).collect::<Option<_>>()?;
        let lengths = regions.iter().try_fold(0u32, |acc, r| {
            let general = &r.general_lengths;
            if general.is_empty() || general.iter().any(|&l| l >= 32) {
                return None;
            }
            Some(general.iter().fold(acc, |a, &l| a | 1 << l))
        });
        Some(LeadingSet {
            set: Dfa::new(&sources, MatchKind::All)?,
            pids,
            regions,
            lengths,
        })
    }
}

/// [`CodeRegions`] of every calling code (indexed by code), looked up once.
fn code_regions(code: u16) -> Option<&'static CodeRegions> {
    static CODES: OnceLock<Vec<Option<CodeRegions>>> = OnceLock::new();
    CODES
        .get_or_init(|| {
            let mut map = Vec::new();
            for code in 0..=999u16 {
                let Some(ids) = DATABASE.region(&code) else {
                    map.push(None);
                    continue;
                };
                let entry = if ids.len() == 1 {
                    CodeRegions::One(if ids[0] == "001" {
                        DATABASE.by_code(&code).and_then(|m| m.into_iter().next())
                    } else if ids[0].parse::<Id>().is_ok() {
                        DATABASE.by_id(ids[0])
                    } else {
                        None
                    })
                } else {
                    CodeRegions::Several(
                        ids.iter().filter_map(|id| DATABASE.by_id(*id)).collect(),
                        Box::new(OnceLock::new()),
                    )
                };
                map.push(Some(entry));
            }
            map
        })
        .get(usize::from(code))?
        .as_ref()
}

/// Whether the database has metadata for a calling code (the crate's
/// `by_code(code).is_some()`).
fn known_code(code: u16) -> bool {
    static KNOWN: OnceLock<Vec<bool>> = OnceLock::new();
    KNOWN
        .get_or_init(|| {
            (0..1000u16)
                .map(|c| DATABASE.by_code(&c).is_some())
                .collect()
        })
        .get(usize::from(code))
        .copied()
        .unwrap_or(false)
}

/// The crate's `validator::source_for`: the metadata for a calling code and
/// national number, and whether choosing it already showed that a number
/// type matches. `Err(())`: a region could not be compiled.
fn source_for(code: u16, national: &[u8]) -> Result<Option<(&'static Metadata, bool)>, ()> {
    match code_regions(code) {
        None => Ok(None),
        Some(CodeRegions::One(m)) => Ok(m.map(|m| (m, false))),
        Some(CodeRegions::Several(metas, leading)) => {
            let leading = leading
                .get_or_init(|| LeadingSet::new(metas))
                .as_ref()
                .ok_or(())?;
            // Whose `leading_digits` match, found once when first needed.
            let mut matched: Option<u64> = None;
            for (i, (&m, r)) in metas.iter().zip(&leading.regions).enumerate() {
                match leading.pids[i] {
                    Some(pid) => {
                        let set = *matched.get_or_insert_with(|| leading.set.starting(national));
                        if set & (1 << pid) != 0 {
                            return Ok(Some((m, false)));
                        }
                    }
                    None => {
                        if r.has_type(national) {
                            return Ok(Some((m, true)));
                        }
                    }
                }
            }
            Ok(None)
        }
    }
}

/// Whether a national significant number is valid for a calling code,
/// with the same verdict as `phonenumber::is_valid`.
pub(crate) fn valid(code: u16, national: &str) -> bool {
    valid_from(code, national.as_bytes(), None)
}

/// [`source_for`]'s answer.
type SourceFor = Result<Option<(&'static Metadata, bool)>, ()>;

/// [`valid`], given [`source_for`]'s answer for this number when already
/// known.
fn valid_from(code: u16, national: &[u8], known: Option<SourceFor>) -> bool {
    // A number is valid only if the general description of the region
    // chosen allows its length: with several regions, no run when none does.
    if let Some(CodeRegions::Several(_, leading)) = code_regions(code)
        && let Some(Some(LeadingSet {
            lengths: Some(lengths),
            ..
        })) = leading.get()
        && (national.len() >= 32 || lengths & (1 << national.len()) == 0)
    {
        return false;
    }
    match known.unwrap_or_else(|| source_for(code, national)) {
        Ok(Some((_, true))) => true,
        Ok(Some((meta, false))) => region(meta).is_some_and(|r| r.has_type(national)),
        Ok(None) | Err(()) => false,
    }
}

/// Whether `number` is valid for its calling code, with the same verdict
/// as `phonenumber::is_valid`.
pub(crate) fn is_valid(number: &PhoneNumber) -> bool {
    valid(number.country().code(), &number.national().to_string())
}

/// What [`parse`] made of a text (the form the tests compare with the
/// crate's).
#[cfg(test)]
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// Calling code and national significant number (leading zeros kept),
    /// as `phonenumber::parse` gives them.
    Number(u16, String),
    /// `phonenumber::parse` gives an error.
    Invalid,
    /// Outside this reading's alphabet: ask the crate.
    Unsupported,
}

fn is_separator(b: u8) -> bool {
    matches!(b, b'-' | b'.' | b'(' | b')')
}

/// Where the country calling code comes from (the crate's `Source`).
#[derive(PartialEq, Eq)]
enum Source {
    Plus,
    Idd,
    Default,
}

/// `phonenumber::parse(country, text)` for texts made of ASCII digits,
/// spaces, `-`, `.`, parentheses and one `+` at the start (or after an
/// opening parenthesis), with at least three digits.
#[cfg(test)]
pub(crate) fn parse(country: Option<Id>, text: &str) -> Parsed {
    match parse_num(country, text) {
        Read::Number(code, national, _) => Parsed::Number(code, national.as_str().to_owned()),
        Read::Invalid => Parsed::Invalid,
        Read::Unsupported => Parsed::Unsupported,
    }
}

/// Whether `text`, read in `country` (`None`: international form only), is
/// a valid number, as `phonenumber::parse` then `phonenumber::is_valid`
/// say; `None` for text outside the alphabet [`parse_num`] reads (the
/// crate then decides).
pub(crate) fn parse_and_validate(country: Option<Id>, text: &str) -> Option<bool> {
    match parse_num(country, text) {
        Read::Number(code, national, known) => Some(valid_from(code, national.bytes(), known)),
        Read::Invalid => Some(false),
        Read::Unsupported => None,
    }
}

/// [`Parsed`] with the national number in a [`Num`], and [`source_for`]'s
/// answer for it when parsing already asked.
enum Read {
    Number(u16, Num, Option<SourceFor>),
    Invalid,
    Unsupported,
}

fn parse_num(country: Option<Id>, text: &str) -> Read {
    let b = text.as_bytes();
    // One pass over the alphabet: digits, spaces, one `+` first (or after
    // an opening parenthesis), separators.
    let (mut digits, mut pluses, mut space) = (0usize, 0usize, false);
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'0'..=b'9' => digits += 1,
            b' ' => space = true,
            b'+' if i == 0 || (i == 1 && b[0] == b'(') => pluses += 1,
            c if is_separator(c) => {}
            _ => return Read::Unsupported,
        }
    }
    if digits < 3 || pluses > 1 {
        return Read::Unsupported;
    }
    // RFC 3966 reading (no spaces): `+code` up to the first separator, then
    // digits and separators; or digits and separators alone.
    let mut rfc_code: Option<&str> = None;
    let raw: &str;
    // The digits of `raw`: all of them, but for an RFC 3966 code's.
    let mut raw_digits = digits;
    let rfc_plus = text
        .strip_prefix('+')
        .and_then(|rest| rest.bytes().position(is_separator).map(|k| (rest, k)))
        .filter(|&(_, k)| k > 0);
    if !space && pluses == 0 {
        raw = text;
    } else if let (false, Some((rest, k))) = (space, rfc_plus) {
        rfc_code = Some(&rest[..k]);
        raw = &rest[k..];
        // (The code is digits only: no space, no second `+`.)
        raw_digits -= k;
    } else {
        // Natural reading: from the first `+` or digit; trailing characters
        // other than digits dropped.
        let start = b
            .iter()
            .position(|&c| c == b'+' || c.is_ascii_digit())
            .unwrap_or(0);
        raw = text[start..].trim_end_matches(|c: char| !c.is_ascii_digit());
    }
    // Viability (`is_viable`): two digits alone, or three digits or more
    // among punctuation.
    let viable = raw.len() >= MIN_NSN && (raw_digits >= 3 || (raw_digits == 2 && raw.len() == 2));
    if !viable {
        return Read::Invalid;
    }
    let home: Option<(&'static Metadata, &'static Region)> = match country {
        Some(id) => match home_region(id) {
            Some(home) => Some(home),
            None => return Read::Unsupported,
        },
        None => None,
    };
    // International prefix (`helper::international_prefix`).
    let idd = home
        .as_ref()
        .and_then(|(_, r)| r.international_prefix.as_ref());
    // (The crate's unanchored `find` counts only a match at the start; the
    // leftmost-first match starting there ends where the anchored one does.)
    let strip_idd = |national: &[u8]| -> Option<usize> {
        let end = idd?.anchored_end(national)?;
        (national.get(end) != Some(&b'0')).then_some(end)
    };
    let mut source;
    let mut national = Num {
        b: [0; Num::CAP],
        n: 0,
    };
    if !national.set_digits(raw.strip_prefix('+').unwrap_or(raw)) {
        return Read::Unsupported;
    }
    if rfc_code.is_some() {
        source = Source::Plus;
    } else if raw.starts_with('+') {
        source = Source::Plus;
        if let Some(end) = strip_idd(national.bytes()) {
            national.drain(end);
        }
    } else {
        source = Source::Default;
        if let Some(end) = strip_idd(national.bytes()) {
            source = Source::Idd;
            national.drain(end);
        }
    }
    // Country calling code (`helper::country_code`).
    let code: u16;
    if source == Source::Default {
        let Some((_, r)) = &home else {
            return Read::Invalid;
        };
        let mut buf = [0u8; 5];
        let own = decimal(r.country_code, &mut buf);
        if has_prefix(national.bytes(), own.as_bytes())
            && (!r.general_match(national.bytes())
                || !matches!(
                    r.length(national.len()),
                    Length::Possible | Length::LocalOnly
                ))
        {
            national.drain(own.len());
        }
        code = r.country_code;
    } else {
        if national.len() <= MIN_NSN {
            return Read::Invalid;
        }
        match rfc_code {
            Some(p) => match p.parse::<u16>() {
                Ok(c) if known_code(c) => code = c,
                _ => return Read::Invalid,
            },
            None => {
                let digits = national.bytes();
                if digits.first() == Some(&b'0') {
                    return Read::Invalid;
                }
                let found = (1..=3).find_map(|len| {
                    let c = digits
                        .get(..len)?
                        .iter()
                        .fold(0u16, |c, &d| c * 10 + u16::from(d - b'0'));
                    known_code(c).then_some((len, c))
                });
                let Some((len, c)) = found else {
                    return Read::Invalid;
                };
                national.drain(len);
                code = c;
            }
        }
    }
    // The metadata for national prefixes: the default region's, else the
    // calling code's.
    let mut asked: Option<(Num, SourceFor)> = None;
    let meta = match &home {
        Some((m, _)) => Some(*m),
        None => {
            let zeros = national.bytes().iter().take_while(|&&b| b == b'0').count();
            let trimmed = &national.bytes()[zeros..];
            let found = source_for(code, trimmed);
            if trimmed.len() == national.len() {
                asked = Some((national, found));
            }
            match found {
                Ok(m) => m.map(|(m, _)| m),
                Err(()) => return Read::Unsupported,
            }
        }
    };
    if let Some(meta) = meta {
        let Some(r) = region(meta) else {
            return Read::Unsupported;
        };
        let mut potential = match r.strip_prefix_for_parsing(national) {
            Ok(Some(p)) => p,
            Ok(None) => return Read::Invalid,
            Err(()) => return Read::Unsupported,
        };
        if let Some(p) = &r.national_prefix
            && has_prefix(potential.bytes(), p.as_bytes())
        {
            potential.drain(p.len());
        }
        if r.length(potential.len()) != Length::TooShort {
            national = potential;
        }
    }
    if national.len() < MIN_NSN || national.len() > MAX_NSN {
        return Read::Invalid;
    }
    // `NationalNumber`: leading zeros counted, the rest a number below 2^56.
    // (All zeros is no number: the crate's `u64` parse of the empty rest
    // fails.)
    let zeros = national.bytes().iter().take_while(|&&b| b == b'0').count();
    let rest = &national.bytes()[zeros..];
    let value = rest.iter().try_fold(0u64, |v, &d| {
        v.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    });
    match value {
        Some(v) if !rest.is_empty() && v < (1 << 56) => {
            let known = asked
                .filter(|(n, _)| n.bytes() == national.bytes())
                .map(|(_, found)| found);
            Read::Number(code, national, known)
        }
        _ => Read::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// National numbers worth judging for one region: every example number,
    /// each with every digit changed, one digit dropped and one added.
    fn variants(meta: &Metadata) -> Vec<String> {
        let d = meta.descriptors();
        let examples = [
            Some(d.general()),
            d.fixed_line(),
            d.mobile(),
            d.toll_free(),
            d.premium_rate(),
            d.shared_cost(),
            d.personal_number(),
            d.voip(),
            d.pager(),
            d.uan(),
            d.voicemail(),
            d.emergency(),
            d.short_code(),
        ];
        let mut out = Vec::new();
        for ex in examples.into_iter().flatten().filter_map(|d| d.example()) {
            out.push(ex.to_owned());
            let b = ex.as_bytes();
            for i in 0..b.len() {
                let mut v = b.to_vec();
                v[i] = b'0' + (v[i] - b'0' + 3) % 10;
                out.push(String::from_utf8(v).unwrap());
                let mut shorter = b.to_vec();
                shorter.remove(i);
                out.push(String::from_utf8(shorter).unwrap());
            }
            out.push(format!("{ex}7"));
            out.push(format!("0{ex}"));
        }
        out
    }

    /// The crate's reading of `text`, or `None` where it panics.
    fn crate_parse(region: Option<Id>, text: &str) -> Option<Parsed> {
        let text = text.to_owned();
        std::panic::catch_unwind(move || match phonenumber::parse(region, &text) {
            Ok(n) => Parsed::Number(n.country().code(), n.national().to_string()),
            Err(_) => Parsed::Invalid,
        })
        .ok()
    }

    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    /// `digits` cut into groups of 1–5, joined by one separator (or none),
    /// the first group sometimes in parentheses.
    fn grouped(r: &mut Rng, digits: &str) -> String {
        let sep = [" ", "-", ".", ""][r.below(4)];
        let mut out = String::new();
        let mut rest = digits;
        let mut first = true;
        while !rest.is_empty() {
            let n = (1 + r.below(5)).min(rest.len());
            if !first {
                out.push_str(sep);
            }
            if first && r.below(4) == 0 {
                out.push('(');
                out.push_str(&rest[..n]);
                out.push(')');
            } else {
                out.push_str(&rest[..n]);
            }
            first = false;
            rest = &rest[n..];
        }
        out
    }

    #[test]
    fn same_parse_as_libphonenumber() {
        let mut r = Rng(0x9E37_79B9_7F4A_7C15);
        let (mut numbers, mut invalid, mut valid_count, mut compared) = (0, 0, 0, 0);
        let mut metas: Vec<&Metadata> = DATABASE.iter().collect();
        metas.sort_by_key(|m| (m.country_code(), m.id().to_owned()));
        for meta in metas {
            let cc = meta.country_code();
            let np = meta.national_prefix().unwrap_or("");
            for nsn in variants(meta).into_iter().step_by(11) {
                let g = grouped(&mut r, &nsn);
                let forms = [
                    format!("{np}{g}"),
                    g.clone(),
                    format!("+{cc}{nsn}"),
                    format!("+{cc} {g}"),
                    format!("+{cc}-{g}"),
                    format!("(+{cc}) {g}"),
                    format!("+{cc} ({np}) {g}"),
                    format!("00{cc} {g}"),
                    format!("011 {cc} {g}"),
                    format!("{cc} {np}{g}"),
                ];
                for text in forms {
                    let mut regions = vec![None];
                    regions.push(Some(DEFAULT_REGIONS[r.below(12)]));
                    if let Ok(id) = meta.id().parse::<Id>()
                        && DEFAULT_REGIONS.contains(&id)
                    {
                        regions.push(Some(id));
                    }
                    for region in regions {
                        let Some(want) = crate_parse(region, &text) else {
                            continue;
                        };
                        let got = parse(region, &text);
                        assert_eq!(got, want, "{region:?} {text:?}");
                        compared += 1;
                        if let Parsed::Number(code, national) = &got {
                            numbers += 1;
                            let n = phonenumber::parse(region, &text).unwrap();
                            assert_eq!(valid(*code, national), phonenumber::is_valid(&n));
                            valid_count += usize::from(valid(*code, national));
                        } else {
                            invalid += 1;
                        }
                    }
                }
            }
        }
        // Every outcome occurs often: the comparison is not vacuous.
        assert!(compared > 30_000, "{compared}");
        assert!(
            numbers > 5_000 && invalid > 1_000 && valid_count > 2_000,
            "{numbers} {invalid} {valid_count}"
        );
    }

    #[test]
    fn outside_the_alphabet_is_left_to_the_crate() {
        for text in [
            "+1 202 555 0123 ext. 7",
            "202/555/0123",
            "1+202 555 0123",
            "12",
        ] {
            assert_eq!(parse(Some(Id::US), text), Parsed::Unsupported, "{text}");
        }
    }

    #[test]
    fn same_verdict_as_libphonenumber() {
        let mut checked = 0;
        let mut valid = 0;
        for meta in DATABASE.iter() {
            let code = meta.country_code();
            for national in variants(meta) {
                let Ok(n) = phonenumber::parse(None, format!("+{code}{national}")) else {
                    continue;
                };
                let want = phonenumber::is_valid(&n);
                assert_eq!(is_valid(&n), want, "+{code} {national}");
                checked += 1;
                valid += usize::from(want);
            }
        }
        // Both verdicts occur often: the comparison is not vacuous.
        assert!(checked > 20_000, "{checked}");
        assert!(
            valid > 2_000 && checked - valid > 2_000,
            "{valid} of {checked}"
        );
    }

    #[test]
    fn non_geographic_and_shared_codes() {
        // Codes shared by several regions (+1, +7, +44) choose the region by
        // leading digits or number type; +800 is non-geographic (`001`).
        let mut verdicts = Vec::new();
        for text in [
            "+1 202 555 0123",
            "+1 650 253 0000",
            "+1 416 924 1234",
            "+1 264 497 1234",
            "+1 999 123 4567",
            "+800 1234 5678",
            "+808 1234 5678",
            "+44 20 7946 0958",
            "+44 1481 256 789",
            "+7 495 123 4567",
            "+7 727 123 4567",
            "+7 095 123 4567",
        ] {
            let n = phonenumber::parse(None, text).unwrap();
            assert_eq!(is_valid(&n), phonenumber::is_valid(&n), "{text}");
            verdicts.push(is_valid(&n));
        }
        assert!(verdicts.contains(&true) && verdicts.contains(&false));
    }
}
