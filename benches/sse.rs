//! Decode throughput of [`SseDecoder`] on a ~1 MiB realistic Messages stream,
//! fed in ~20-byte chunks (worst case: many tiny network reads) and in 16 KiB
//! chunks (typical buffered reads).
//!
//! Run with `cargo bench --bench sse`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use skillgate::wire::sse::SseDecoder;

/// A streaming Messages response of at least `target` bytes: one text block
/// made of many `text_delta`s, periodic pings, then a tool_use block and the end.
fn transcript(target: usize) -> Vec<u8> {
    let mut out = String::with_capacity(target + 4096);
    out.push_str(concat!(
        "event: message_start\n",
        r#"data: {"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2}}}"#,
        "\n\n",
        "event: content_block_start\n",
        r#"data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        "\n\n",
    ));
    let words = [
        "The",
        " gateway",
        " forwards",
        " each",
        " event",
        " unchanged,",
        " while",
        " the",
        " audit",
        " log",
        " records",
        " what",
        " the",
        " model",
        " said",
        ".\\n",
    ];
    let mut i = 0usize;
    while out.len() < target {
        if i % 50 == 49 {
            out.push_str("event: ping\ndata: {\"type\": \"ping\"}\n\n");
        }
        let text: String = (0..3).map(|k| words[(i + k) % words.len()]).collect();
        out.push_str("event: content_block_delta\n");
        out.push_str(r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":""#);
        out.push_str(&text);
        out.push_str("\"}}\n\n");
        i += 1;
    }
    out.push_str(concat!(
        "event: content_block_stop\n",
        r#"data: {"type":"content_block_stop","index":0}"#,
        "\n\n",
        "event: content_block_start\n",
        r#"data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01","name":"get_weather","input":{}}}"#,
        "\n\n",
        "event: content_block_delta\n",
        r#"data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"location\": \"San Francisco, CA\"}"}}"#,
        "\n\n",
        "event: content_block_stop\n",
        r#"data: {"type":"content_block_stop","index":1}"#,
        "\n\n",
        "event: message_delta\n",
        r#"data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":8912}}"#,
        "\n\n",
        "event: message_stop\n",
        r#"data: {"type":"message_stop"}"#,
        "\n\n",
    ));
    out.into_bytes()
}

/// Decodes `input` in `chunk`-byte pieces; returns the number of blocks.
fn decode(input: &[u8], chunk: usize) -> usize {
    let mut decoder = SseDecoder::new();
    let mut blocks = 0;
    for piece in input.chunks(chunk) {
        blocks += decoder.push(piece).expect("valid stream").len();
    }
    decoder.finish().expect("complete stream");
    blocks
}

fn bench_decode(c: &mut Criterion) {
    let input = transcript(1 << 20);
    let expected_blocks = decode(&input, input.len());
    let mut group = c.benchmark_group("sse_decode");
    group.throughput(Throughput::Bytes(input.len() as u64));
    for chunk in [20usize, 16 * 1024] {
        assert_eq!(decode(&input, chunk), expected_blocks);
        group.bench_with_input(
            BenchmarkId::new("chunk_bytes", chunk),
            &chunk,
            |b, &chunk| {
                b.iter(|| decode(black_box(&input), chunk));
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench_decode);
criterion_main!(benches);
