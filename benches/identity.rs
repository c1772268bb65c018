//! Cost of verifying one caller token: `JwtVerifier` alone (strict parse,
//! key lookup, signature, claims) versus `CachingVerifier` in front of it (a
//! SHA-256 of the token and a cache lookup), for RS256, ES256 and EdDSA
//! tokens of a typical size (~800 bytes).
//!
//! Run with `cargo bench --bench identity`; figures in docs/benchmarks.md.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use serde_json::json;
use skillgate::identity::{Algorithm, CachingVerifier, JwtVerifier, KeySource, TokenVerifier};

#[allow(dead_code)]
#[path = "../tests/support/keys.rs"]
mod keys;

use keys::{TestKey, jwks, now};

const ISS: &str = "https://idp.bench.test";

fn bench_verify(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let signers = [
        TestKey::rsa(Algorithm::RS256, "rsa-1"),
        TestKey::p256("p256-1"),
        TestKey::ed25519("ed-1"),
    ];
    let all: Vec<&TestKey> = signers.iter().collect();
    let verifier = JwtVerifier::builder(ISS)
        .audience("skillgate")
        .require_typ("at+jwt")
        .keys(KeySource::Static(jwks(&all)))
        .build()
        .expect("verifier");
    rt.block_on(verifier.preload()).expect("keys");
    let cached = CachingVerifier::new(verifier.clone());

    let mut group = c.benchmark_group("verify");
    for key in &signers {
        // Claims shaped like a real IdP's access token.
        let claims = json!({
            "iss": ISS, "aud": "skillgate", "sub": "system:serviceaccount:billing:report-skill",
            "client_id": "report-skill", "scope": "messages:write models:read",
            "groups": ["billing", "ci", "reporting"], "jti": "01J9Z8Q4W6F3B2N7K5M0XRT1YA",
            "iat": now(), "nbf": now(), "exp": now() + 3600,
            "kubernetes.io": {"namespace": "billing", "serviceaccount": {"name": "report-skill"}},
        });
        let token = key.sign(&key.header(), &claims);
        let name = keys::alg_name(key.alg);
        // Both paths must accept the token before being timed.
        rt.block_on(verifier.verify(&token)).expect("verifies");
        rt.block_on(cached.verify(&token)).expect("verifies");

        group.bench_with_input(BenchmarkId::new("uncached", name), &token, |b, t| {
            b.iter(|| rt.block_on(verifier.verify(black_box(t))).expect("ok"))
        });
        group.bench_with_input(BenchmarkId::new("cached", name), &token, |b, t| {
            b.iter(|| rt.block_on(cached.verify(black_box(t))).expect("ok"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_verify);
criterion_main!(benches);
