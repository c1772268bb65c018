//! A generated corpus of fake PII for benchmarks and precision/recall:
//! deterministic (seeded xorshift), nothing real (test card ranges, 555-01xx
//! and Ofcom drama phone ranges, example.* domains, private IPs).

/// One labelled value in a generated text: byte range and entity type.
#[derive(Debug, Clone)]
pub struct Label {
    pub start: usize,
    pub end: usize,
    pub entity_type: &'static str,
}

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, xs: &'a [&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }
    fn alnum(&mut self, n: usize, upper_only: bool) -> String {
        let set: &[u8] = if upper_only {
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
        } else {
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
        };
        (0..n)
            .map(|_| char::from(set[self.below(set.len() as u64) as usize]))
            .collect()
    }
}

const WORDS: &[&str] = &[
    "the",
    "model",
    "returned",
    "a",
    "summary",
    "of",
    "quarterly",
    "results",
    "and",
    "noted",
    "that",
    "revenue",
    "grew",
    "while",
    "costs",
    "stayed",
    "flat",
    "our",
    "team",
    "will",
    "review",
    "plan",
    "before",
    "meeting",
    "with",
    "customer",
    "support",
    "about",
    "renewal",
    "please",
    "check",
    "attached",
    "document",
    "for",
    "details",
    "on",
    "migration",
    "schedule",
    "service",
    "latency",
    "improved",
    "after",
    "deploy",
    "rollback",
    "was",
    "not",
    "needed",
    "thanks",
    "everyone",
    "who",
    "helped",
    "prepare",
    "this",
    "report",
    "next",
    "steps",
    "include",
    "hiring",
    "two",
    "engineers",
];

fn luhn_complete(body: &str) -> String {
    let digits: Vec<u32> = body.bytes().map(|b| (b - b'0') as u32).collect();
    let mut sum = 0;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut x = *d;
        if i % 2 == 0 {
            x *= 2;
            if x > 9 {
                x -= 9;
            }
        }
        sum += x;
    }
    format!("{body}{}", (10 - sum % 10) % 10)
}

fn group(d: &str, sizes: &[usize], sep: &str) -> String {
    let mut out = Vec::new();
    let mut at = 0;
    for s in sizes {
        out.push(&d[at..at + s]);
        at += s;
    }
    out.join(sep)
}

fn iban_de(r: &mut Rng) -> String {
    let bban = r.digits(18);
    // Check digits: 98 - (BBAN + "DE00" as digits) mod 97.
    let s = format!("{bban}131400");
    let rem = s
        .bytes()
        .fold(0u64, |a, b| (a * 10 + (b - b'0') as u64) % 97);
    let check = 98 - rem;
    let full = format!("DE{check:02}{bban}");
    if r.below(2) == 0 {
        full
    } else {
        full.as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap_or(""))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A value of a random type: (text, entity type).
pub fn value(r: &mut Rng) -> (String, &'static str) {
    match r.below(10) {
        0 | 1 => {
            let (body, sizes): (String, &[usize]) = match r.below(3) {
                0 => (format!("4{}", r.digits(14)), &[4, 4, 4, 4]),
                1 => (
                    format!("5{}{}", 1 + r.below(5), r.digits(13)),
                    &[4, 4, 4, 4],
                ),
                _ => (format!("37{}", r.digits(12)), &[4, 6, 5]),
            };
            let d = luhn_complete(&body);
            let sep = r.pick(&[" ", "-", ""]);
            (group(&d, sizes, sep), "CREDIT_CARD")
        }
        2 => {
            let mut area = 1 + r.below(899);
            if area == 666 {
                area = 667;
            }
            let v = format!("{area:03}-{:02}-{:04}", 1 + r.below(99), 1 + r.below(9999));
            (v, "US_SSN")
        }
        3 | 4 => {
            let first = r.pick(&["dana", "li", "omar", "eva", "jo", "sam"]);
            let last = r.pick(&["lee", "ng", "smith", "garcia", "kim"]);
            let tag = if r.below(3) == 0 { "+news" } else { "" };
            let dom = r.pick(&["example.com", "example.org", "mail.example.net"]);
            (format!("{first}.{last}{tag}@{dom}"), "EMAIL_ADDRESS")
        }
        5 | 6 => {
            let v = match r.below(3) {
                0 => format!("+1 202 555 01{}", r.digits(2)),
                1 => format!("(202) 555-01{}", r.digits(2)),
                _ => format!("020 7946 0{}", r.digits(3)),
            };
            (v, "PHONE_NUMBER")
        }
        7 => (iban_de(r), "IBAN_CODE"),
        8 => (
            format!("10.{}.{}.{}", r.below(256), r.below(256), 1 + r.below(254)),
            "IP_ADDRESS",
        ),
        _ => match r.below(3) {
            0 => (format!("AKIA{}", r.alnum(16, true)), "AWS_ACCESS_KEY"),
            1 => (format!("ghp_{}", r.alnum(36, false)), "GITHUB_TOKEN"),
            _ => (
                format!("sk-ant-api03-{}AA", r.alnum(93, false)),
                "ANTHROPIC_API_KEY",
            ),
        },
    }
}

/// A near miss: looks like PII, is not.
fn near_miss(r: &mut Rng) -> String {
    match r.below(5) {
        0 => format!("version {}.{}.{}", r.below(10), r.below(20), r.below(50)),
        1 => format!("on 2026-{:02}-{:02}", 1 + r.below(12), 1 + r.below(28)),
        2 => format!("order {}", r.digits(8)),
        3 => format!("at {:02}:{:02}", r.below(24), r.below(60)),
        _ => format!("ticket #{}", r.digits(5)),
    }
}

fn sentence(r: &mut Rng, out: &mut String) {
    let n = 6 + r.below(10);
    for i in 0..n {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(r.pick(WORDS));
    }
    out.push_str(". ");
}

/// Prose without a single digit, `@` or other trigger: `bytes` long.
pub fn clean_prose(seed: u64, bytes: usize) -> String {
    let mut r = Rng::new(seed);
    let mut s = String::with_capacity(bytes + 128);
    while s.len() < bytes {
        sentence(&mut r, &mut s);
        if r.below(8) == 0 {
            s.push('\n');
        }
    }
    s
}

/// Prose with ordinary numbers (dates, versions, times) but no PII.
pub fn numeric_prose(seed: u64, bytes: usize) -> String {
    let mut r = Rng::new(seed);
    let mut s = String::with_capacity(bytes + 128);
    while s.len() < bytes {
        sentence(&mut r, &mut s);
        s.push_str(&near_miss(&mut r));
        s.push_str(". ");
    }
    s
}

/// PII-dense text: one labelled value every ~60 bytes, plus near misses.
pub fn dense(seed: u64, bytes: usize) -> (String, Vec<Label>) {
    let mut r = Rng::new(seed);
    let mut s = String::with_capacity(bytes + 256);
    let mut labels = Vec::new();
    while s.len() < bytes {
        let n = 3 + r.below(5);
        for _ in 0..n {
            s.push_str(r.pick(WORDS));
            s.push(' ');
        }
        let (v, t) = value(&mut r);
        let start = s.len();
        s.push_str(&v);
        labels.push(Label {
            start,
            end: s.len(),
            entity_type: t,
        });
        s.push_str(r.pick(&[" ", ", ", ". ", "; "]));
        if r.below(4) == 0 {
            s.push_str(&near_miss(&mut r));
            s.push_str(". ");
        }
        if r.below(6) == 0 {
            s.push('\n');
        }
    }
    (s, labels)
}

/// Scores detected spans against labels, both `(start, end, entity type)`
/// in the same offset unit: adds to `m[type]` = `[true positives, false
/// positives, false negatives]`. A detected span counts when it overlaps a
/// label of the same type.
pub fn score(
    labels: &[(usize, usize, String)],
    spans: &[(usize, usize, String)],
    m: &mut std::collections::BTreeMap<String, [u64; 3]>,
) {
    for (s, e, t) in spans {
        let hit = labels
            .iter()
            .any(|(ls, le, lt)| lt == t && s < le && ls < e);
        m.entry(t.clone()).or_default()[if hit { 0 } else { 1 }] += 1;
    }
    for (ls, le, lt) in labels {
        if !spans.iter().any(|(s, e, t)| t == lt && s < le && ls < e) {
            m.entry(lt.clone()).or_default()[2] += 1;
        }
    }
}
