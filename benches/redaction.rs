//! Redaction speed: whole texts (clean prose, prose with numbers, PII-dense)
//! and the streaming engine fed ~20-byte `text_delta`s. Figures in
//! docs/benchmarks.md; precision/recall and the Presidio comparison in
//! benches/presidio_compare.py.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use skillgate::redaction::Redactor;

#[path = "support/corpus.rs"]
#[allow(dead_code)]
mod corpus;

const SIZE: usize = 1 << 20;

fn whole(c: &mut Criterion) {
    let r = Redactor::new();
    let clean = corpus::clean_prose(1, SIZE);
    let numeric = corpus::numeric_prose(2, SIZE);
    let (dense, _) = corpus::dense(3, SIZE);
    let mut g = c.benchmark_group("redact_text");
    g.sample_size(10);
    for (name, text) in [
        ("clean_prose", &clean),
        ("numeric_prose", &numeric),
        ("pii_dense", &dense),
    ] {
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| std::hint::black_box(r.redact_text(text)))
        });
    }
    // The same dense text with phone numbers not detected: how much of the
    // dense figure is libphonenumber validation.
    let no_phone = Redactor::builder()
        .entity_types(
            skillgate::redaction::entity::ALL
                .iter()
                .filter(|e| **e != skillgate::redaction::entity::PHONE_NUMBER)
                .copied(),
        )
        .build()
        .expect("built-in entity types");
    g.throughput(Throughput::Bytes(dense.len() as u64));
    g.bench_function("pii_dense_without_phone", |b| {
        b.iter(|| std::hint::black_box(no_phone.redact_text(&dense)))
    });
    g.finish();
}

fn stream(c: &mut Criterion) {
    let r = Redactor::new();
    let mut g = c.benchmark_group("stream_20_byte_deltas");
    g.sample_size(10);
    // A value that stays incomplete for 48 KiB (a PEM private key block,
    // held back until its END line): the cost of holding back.
    let mut pem = String::from("key follows -----BEGIN PRIVATE KEY-----\n");
    let mut rng = corpus::Rng::new(6);
    while pem.len() < 48 << 10 {
        for _ in 0..64 {
            let set = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            pem.push(char::from(set[rng.below(64) as usize]));
        }
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY----- done");
    for (name, text) in [
        ("numeric_prose", corpus::numeric_prose(4, 64 << 10)),
        ("pii_dense", corpus::dense(5, 64 << 10).0),
        ("held_48_kib_pem", pem),
        // 48 KiB of letters without a break, then a space: every position
        // could start an e-mail local part until the run ends.
        (
            "letter_run_48_kib",
            format!("{} end", "ab".repeat(24 << 10)),
        ),
    ] {
        let mut deltas = Vec::new();
        let mut at = 0;
        while at < text.len() {
            let mut end = (at + 20).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            deltas.push(&text[at..end]);
            at = end;
        }
        g.throughput(Throughput::Elements(deltas.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut s = r.stream();
                let mut n = 0;
                for d in &deltas {
                    n += s.push(d).map(|o| o.len()).unwrap_or(0);
                }
                n += s.finish().map(|o| o.len()).unwrap_or(0);
                std::hint::black_box(n)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, whole, stream);
criterion_main!(benches);
