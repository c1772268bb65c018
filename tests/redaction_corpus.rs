//! Precision and recall on the generated corpus (fake data,
//! `benches/support/corpus.rs`): about 2 MiB of PII-dense text with every
//! built-in value type, labelled by the generator. Every labelled value is
//! found with its type and nothing else is reported; streaming the same
//! text in ~20-byte deltas gives the whole-text output.

use std::collections::BTreeMap;

use skillgate::redaction::Redactor;

#[path = "../benches/support/corpus.rs"]
#[allow(dead_code)]
mod corpus;

#[test]
fn generated_corpus_precision_and_recall_are_one() {
    let r = Redactor::new();
    let mut m: BTreeMap<String, [u64; 3]> = BTreeMap::new();
    let mut bytes = 0;
    for seed in 0..64u64 {
        let (text, labels) = corpus::dense(1_000 + seed, 32 << 10);
        bytes += text.len();
        let labels: Vec<_> = labels
            .iter()
            .map(|l| (l.start, l.end, l.entity_type.to_owned()))
            .collect();
        let spans: Vec<_> = r
            .detect(&text)
            .iter()
            .map(|s| (s.start, s.end, s.entity_type.to_string()))
            .collect();
        corpus::score(&labels, &spans, &mut m);
    }
    assert!(bytes >= 2 << 20, "corpus is {bytes} bytes");
    for t in [
        "CREDIT_CARD",
        "US_SSN",
        "EMAIL_ADDRESS",
        "PHONE_NUMBER",
        "IBAN_CODE",
        "IP_ADDRESS",
        "AWS_ACCESS_KEY",
        "GITHUB_TOKEN",
        "ANTHROPIC_API_KEY",
    ] {
        let [tp, _, _] = m.get(t).copied().unwrap_or_default();
        assert!(tp > 100, "{t}: only {tp} true positives in the corpus");
    }
    for (t, [tp, fp, fn_]) in &m {
        assert_eq!((*fp, *fn_), (0, 0), "{t}: {tp} tp, {fp} fp, {fn_} fn");
    }
}

#[test]
fn streamed_corpus_equals_whole_text() {
    let r = Redactor::new();
    for seed in 0..4u64 {
        let (text, _) = corpus::dense(2_000 + seed, 64 << 10);
        let whole = r.redact_text(&text);
        let mut s = r.stream();
        let mut out = String::new();
        let mut at = 0;
        // Delta sizes vary with the seed: 7..=29 bytes.
        let mut size = 7 + seed as usize * 5;
        while at < text.len() {
            let mut end = (at + size).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            out.push_str(&s.push(&text[at..end]).expect("within the hold limit"));
            at = end;
            size = 7 + (size * 13 + 5) % 23;
        }
        out.push_str(&s.finish().expect("finish"));
        assert_eq!(out, whole.text, "seed {seed}");
        assert_eq!(s.findings(), &whole.findings);
    }
}
