//! Generates the redaction corpus (fake data) and scores skillgate on it:
//!
//! ```sh
//! cargo run --release --example redaction_corpus -- corpus.jsonl   # writes the corpus
//! cargo run --release --example redaction_corpus -- score corpus.jsonl
//! ```
//!
//! `score` prints one JSON line: time in ms (first pass, automata still
//! being built, and `warm_ms`, the same texts again) and per entity type true/false
//! positives and false negatives (a detected span counts when it overlaps a
//! labelled span of the same type). `benches/presidio_compare.py` runs both
//! and Presidio on the same file.

use std::collections::BTreeMap;

use skillgate::redaction::Redactor;

#[path = "../benches/support/corpus.rs"]
#[allow(dead_code)]
mod corpus;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [cmd, path] if cmd == "score" => score(path),
        [path] => generate(path),
        _ => Err("usage: redaction_corpus FILE | redaction_corpus score FILE".into()),
    }
}

fn generate(path: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut out = String::new();
    for i in 0..400u64 {
        let (text, labels) = corpus::dense(100 + i, 4096);
        let labels: Vec<_> = labels
            .iter()
            .map(|l| {
                // Character offsets, as Python sees them.
                let cs = text[..l.start].chars().count();
                let ce = cs + text[l.start..l.end].chars().count();
                serde_json::json!({"start": cs, "end": ce, "type": l.entity_type})
            })
            .collect();
        out.push_str(&serde_json::json!({"text": text, "labels": labels}).to_string());
        out.push('\n');
    }
    std::fs::write(path, out)?;
    Ok(())
}

fn score(path: &str) -> Result<(), Box<dyn std::error::Error>> {
    let data = std::fs::read_to_string(path)?;
    let docs: Vec<serde_json::Value> = data
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let texts: Vec<String> = docs
        .iter()
        .map(|d| d["text"].as_str().unwrap_or_default().to_owned())
        .collect();
    let t = std::time::Instant::now();
    let r = Redactor::new();
    let new_ms = t.elapsed().as_secs_f64() * 1e3;
    // One short warm-up call, as the comparison script gives Presidio (loads
    // libphonenumber's metadata; regions are still compiled on first use).
    let _ = r.detect("warm up 4111 1111 1111 1111");
    let t0 = std::time::Instant::now();
    let found: Vec<_> = texts.iter().map(|t| r.detect(t)).collect();
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    // The same texts again: the lazy automata and the phone regions used are
    // built now (a long-running gateway's steady state).
    let t1 = std::time::Instant::now();
    let again: Vec<_> = texts.iter().map(|t| r.detect(t)).collect();
    let warm_ms = t1.elapsed().as_secs_f64() * 1e3;
    if again != found {
        return Err("second pass found different values".into());
    }
    let mut m: BTreeMap<String, [u64; 3]> = BTreeMap::new();
    for ((doc, text), spans) in docs.iter().zip(&texts).zip(&found) {
        let labels: Vec<(usize, usize, String)> = doc["labels"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| {
                (
                    l["start"].as_u64().unwrap_or(0) as usize,
                    l["end"].as_u64().unwrap_or(0) as usize,
                    l["type"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let spans: Vec<(usize, usize, String)> = spans
            .iter()
            .map(|s| {
                let cs = text[..s.start].chars().count();
                (
                    cs,
                    cs + text[s.start..s.end].chars().count(),
                    s.entity_type.to_string(),
                )
            })
            .collect();
        corpus::score(&labels, &spans, &mut m);
    }
    let bytes: usize = texts.iter().map(String::len).sum();
    let per_type: BTreeMap<_, _> = m
        .into_iter()
        .map(|(k, [tp, fp, fn_])| (k, serde_json::json!({"tp": tp, "fp": fp, "fn": fn_})))
        .collect();
    println!(
        "{}",
        serde_json::json!({"engine": "skillgate", "new_ms": new_ms, "ms": ms, "warm_ms": warm_ms, "bytes": bytes, "per_type": per_type})
    );
    Ok(())
}
