//! Replay: re-emit a recorded response exactly as the client received it
//! (the bytes as delivered), optionally with the original timing.
//!
//! The response body in the record is what the [`AuditLayer`](super::AuditLayer)
//! tee saw going to the client, after every inner layer (redaction included).
//! [`ResponseRecord::chunks`] says where each body frame started and when it
//! was handed on; [`plan`] cuts the body into those chunks and [`replay`]
//! writes them, sleeping between them when asked.
//!
//! ```
//! use skillgate::audit::{ChunkTiming, ResponseRecord};
//! use skillgate::audit::replay::{ReplayOptions, replay};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let mut r = ResponseRecord::new(uuid::Uuid::now_v7(), 200);
//! r.body = bytes::Bytes::from_static(b"event: ping\n\nevent: message_stop\n\n");
//! r.chunks = vec![ChunkTiming { offset_bytes: 0, at_us: 100 }, ChunkTiming { offset_bytes: 13, at_us: 2_100 }];
//! let mut out = Vec::new();
//! let report = replay(&r, &mut out, ReplayOptions::default()).await.unwrap();
//! assert_eq!(out, &r.body[..]);
//! assert_eq!(report.chunks, 2);
//! # });
//! ```

use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::ResponseRecord;

/// One piece of a replay: `bytes` handed on `after` the response headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayChunk {
    /// Time from the response headers (`ttfb_us`) to this chunk.
    pub after: Duration,
    /// The bytes of this chunk, as delivered.
    pub bytes: Bytes,
}

/// How [`replay`] writes.
///
/// ```
/// let o = skillgate::audit::replay::ReplayOptions { timing: true, ..Default::default() };
/// assert_eq!(o.speed, 1.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplayOptions {
    /// Sleep between chunks as the original exchange did.
    pub timing: bool,
    /// With `timing`: divide every delay by this (2.0 replays twice as fast).
    /// Values ≤ 0 or not finite count as 1.0.
    pub speed: f64,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            timing: false,
            speed: 1.0,
        }
    }
}

/// What [`replay`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayReport {
    /// Bytes written.
    pub bytes: u64,
    /// Chunks written.
    pub chunks: usize,
    /// `true` when the record's body was cut at the capture limit: the
    /// client received more than was replayed.
    pub truncated: bool,
    /// `true` when the exchange did not complete (client went away, stream broke).
    pub incomplete: bool,
}

/// Cuts the recorded body into the chunks the client received, with their
/// delays after the response headers. Without timing data (older records,
/// or a body the record replaced) the whole body is one chunk at zero.
/// Offsets past the end of the stored body (a truncated capture) are dropped;
/// bytes after the last timed chunk belong to it.
pub fn plan(record: &ResponseRecord) -> Vec<ReplayChunk> {
    let body = &record.body;
    let len = body.len() as u64;
    let mut starts: Vec<(u64, u64)> = record
        .chunks
        .iter()
        .filter(|c| c.offset_bytes < len)
        .map(|c| (c.offset_bytes, c.at_us.saturating_sub(record.ttfb_us)))
        .collect();
    starts.sort_by_key(|c| c.0);
    starts.dedup_by_key(|c| c.0);
    if starts.first().is_none_or(|c| c.0 != 0) {
        starts.insert(0, (0, 0));
    }
    let mut out = Vec::with_capacity(starts.len());
    for (i, &(off, at)) in starts.iter().enumerate() {
        let end = starts.get(i + 1).map_or(len, |n| n.0);
        if end > off {
            // off < end ≤ len, both fit usize because len came from a usize.
            out.push(ReplayChunk {
                after: Duration::from_micros(at),
                bytes: body.slice(off as usize..end as usize),
            });
        }
    }
    out
}

/// Writes the recorded response body to `out` chunk by chunk ([`plan`]),
/// sleeping between chunks when [`ReplayOptions::timing`] is set.
///
/// # Errors
/// The writer's I/O error.
pub async fn replay<W: AsyncWrite + Unpin>(
    record: &ResponseRecord,
    out: &mut W,
    options: ReplayOptions,
) -> std::io::Result<ReplayReport> {
    let speed = if options.speed.is_finite() && options.speed > 0.0 {
        options.speed
    } else {
        1.0
    };
    let start = tokio::time::Instant::now();
    let mut report = ReplayReport {
        bytes: 0,
        chunks: 0,
        truncated: record.body_truncated,
        incomplete: !record.complete,
    };
    for chunk in plan(record) {
        if options.timing {
            let at = start + chunk.after.div_f64(speed);
            tokio::time::sleep_until(at).await;
        }
        out.write_all(&chunk.bytes).await?;
        out.flush().await?;
        report.bytes += chunk.bytes.len() as u64;
        report.chunks += 1;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::ChunkTiming;

    fn rec(body: &'static [u8], chunks: &[(u64, u64)]) -> ResponseRecord {
        let mut r = ResponseRecord::new(uuid::Uuid::now_v7(), 200);
        r.body = Bytes::from_static(body);
        r.ttfb_us = 1_000;
        r.chunks = chunks
            .iter()
            .map(|&(offset_bytes, at_us)| ChunkTiming {
                offset_bytes,
                at_us,
            })
            .collect();
        r
    }

    #[test]
    fn plan_cuts_at_offsets_and_measures_from_the_headers() {
        let p = plan(&rec(b"aaabbbbcc", &[(0, 1_500), (3, 11_000), (7, 31_000)]));
        let got: Vec<(u128, &[u8])> = p
            .iter()
            .map(|c| (c.after.as_micros(), &c.bytes[..]))
            .collect();
        assert_eq!(
            got,
            vec![(500, &b"aaa"[..]), (10_000, b"bbbb"), (30_000, b"cc")]
        );
    }

    #[test]
    fn plan_without_timing_is_the_whole_body_at_once() {
        let p = plan(&rec(b"whole", &[]));
        assert_eq!(p.len(), 1);
        assert_eq!(&p[0].bytes[..], b"whole");
        assert_eq!(p[0].after, Duration::ZERO);
        assert!(plan(&rec(b"", &[])).is_empty());
    }

    #[test]
    fn plan_drops_offsets_past_a_truncated_capture_and_keeps_every_byte() {
        let p = plan(&rec(
            b"abcdef",
            &[(2, 5_000), (4, 6_000), (100, 9_000), (4, 7_000)],
        ));
        let joined: Vec<u8> = p.iter().flat_map(|c| c.bytes.to_vec()).collect();
        assert_eq!(joined, b"abcdef");
        assert_eq!(p.len(), 3);
        assert_eq!(&p[0].bytes[..], b"ab");
    }

    proptest::proptest! {
        #[test]
        fn plan_reassembles_the_body(body in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
                                     offs in proptest::collection::vec((0u64..250, 0u64..1_000_000), 0..20)) {
            let mut r = ResponseRecord::new(uuid::Uuid::now_v7(), 200);
            r.body = Bytes::from(body.clone());
            r.chunks = offs.iter().map(|&(o, t)| ChunkTiming { offset_bytes: o, at_us: t }).collect();
            let joined: Vec<u8> = plan(&r).iter().flat_map(|c| c.bytes.to_vec()).collect();
            proptest::prop_assert_eq!(joined, body);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn timed_replay_waits_as_the_original_did() {
        let r = rec(b"aaabbbbcc", &[(0, 1_000), (3, 201_000), (7, 1_001_000)]);
        let start = tokio::time::Instant::now();
        let mut out = Vec::new();
        let rep = replay(
            &r,
            &mut out,
            ReplayOptions {
                timing: true,
                speed: 1.0,
            },
        )
        .await
        .unwrap();
        assert_eq!(out, b"aaabbbbcc");
        assert_eq!(rep.chunks, 3);
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        let start = tokio::time::Instant::now();
        replay(
            &r,
            &mut Vec::new(),
            ReplayOptions {
                timing: true,
                speed: 4.0,
            },
        )
        .await
        .unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(250));
    }
}
