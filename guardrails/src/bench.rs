//! The benchmark behind `anshin-guardrails bench`: throughput (MB/s on one core) over the dev set,
//! latency percentiles for a 4 KB clinical note, and recall/precision — for Anshin and, from a JSON file
//! written by `guardrails/bench/presidio_peer.py` in the same run, for the Presidio peer.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::detector::Detector;
use crate::entity::Entity;
use crate::eval::{GoldRecord, Scores, score};

/// Figures of one detector.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    /// What was measured.
    pub system: String,
    /// UTF-8 megabytes (10⁶ bytes) of dev-set text per second of wall-clock time on one thread.
    pub throughput_mb_per_s_per_core: f64,
    /// The same per second of CPU time actually given to the thread (Linux schedstat), which does not
    /// depend on how loaded the machine is; `None` where unavailable (and for the peer).
    pub throughput_mb_per_cpu_s: Option<f64>,
    /// Size of the note used for latency.
    pub note_bytes: usize,
    /// How many timed runs the percentiles come from.
    pub latency_runs: usize,
    /// Median latency for the note, milliseconds.
    pub note_p50_ms: f64,
    /// 99th-percentile latency for the note, milliseconds.
    pub note_p99_ms: f64,
    /// Recall per type and precision on the labelled set.
    pub scores: Scores,
}

/// What the peer script writes.
#[derive(Debug, Clone, Deserialize)]
pub struct PeerRun {
    /// Peer name.
    pub peer: String,
    /// Predictions per record id.
    pub predictions: Vec<PeerPrediction>,
    /// Throughput measured by the peer script.
    pub throughput_mb_per_s_per_core: f64,
    /// Note size the peer used.
    pub note_bytes: usize,
    /// Timed runs.
    pub latency_runs: usize,
    /// Median note latency (ms).
    pub note_p50_ms: f64,
    /// p99 note latency (ms).
    pub note_p99_ms: f64,
}

/// The peer's entities for one record.
#[derive(Debug, Clone, Deserialize)]
pub struct PeerPrediction {
    /// Record id.
    pub id: String,
    /// Entities (types mapped onto Anshin's by the script).
    pub entities: Vec<Entity>,
}

/// The 4 KB note: dev records joined by newlines while the UTF-8 size stays within `limit` bytes (the
/// peer script builds the same note).
pub fn build_note(texts: &[&str], limit: usize) -> String {
    let mut note = String::new();
    for t in texts {
        let extra = t.len() + usize::from(!note.is_empty());
        if note.len() + extra > limit {
            break;
        }
        if !note.is_empty() {
            note.push('\n');
        }
        note.push_str(t);
    }
    note
}

/// Nanoseconds this thread has spent on a CPU (first field of `/proc/thread-self/schedstat`).
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((p * (sorted.len() - 1) as f64).round() as usize).min(sorted.len() - 1);
    sorted[idx].as_secs_f64() * 1000.0
}

/// Measures `detector` on `gold`: throughput for at least `min_time`, then `latency_runs` timed runs on
/// the note after a warm-up.
pub fn measure(
    detector: &Detector,
    gold: &[GoldRecord],
    min_time: Duration,
    latency_runs: usize,
) -> Figures {
    let texts: Vec<&str> = gold.iter().map(|r| r.text.as_str()).collect();
    let preds: Vec<Vec<Entity>> = texts.iter().map(|t| detector.detect(t)).collect();
    let (scores, _) = score(gold.iter().zip(preds.iter().map(Vec::as_slice)));
    let (mut bytes, start, cpu_start) = (0usize, Instant::now(), thread_cpu_ns());
    while start.elapsed() < min_time || bytes == 0 {
        for t in &texts {
            bytes += t.len();
            std::hint::black_box(detector.detect(t));
        }
    }
    let throughput = bytes as f64 / start.elapsed().as_secs_f64() / 1e6;
    let cpu_throughput = cpu_start
        .zip(thread_cpu_ns())
        .filter(|(a, b)| b > a)
        .map(|(a, b)| bytes as f64 / ((b - a) as f64 / 1e9) / 1e6);
    let note = build_note(&texts, 4096);
    for _ in 0..latency_runs.min(100) {
        std::hint::black_box(detector.detect(&note));
    }
    let mut lat: Vec<Duration> = (0..latency_runs)
        .map(|_| {
            let s = Instant::now();
            std::hint::black_box(detector.detect(&note));
            s.elapsed()
        })
        .collect();
    lat.sort();
    Figures {
        system: "anshin-guardrails (vibrato + IPADIC, 1 thread)".into(),
        throughput_mb_per_s_per_core: throughput,
        throughput_mb_per_cpu_s: cpu_throughput,
        note_bytes: note.len(),
        latency_runs,
        note_p50_ms: percentile(&lat, 0.5),
        note_p99_ms: percentile(&lat, 0.99),
        scores,
    }
}

/// Scores a peer run with the same scorer as Anshin.
pub fn peer_figures(peer: &PeerRun, gold: &[GoldRecord]) -> Figures {
    let empty = Vec::new();
    let preds: Vec<&Vec<Entity>> = gold
        .iter()
        .map(|r| {
            peer.predictions
                .iter()
                .find(|p| p.id == r.id)
                .map_or(&empty, |p| &p.entities)
        })
        .collect();
    let (scores, _) = score(gold.iter().zip(preds.iter().map(|p| p.as_slice())));
    Figures {
        system: peer.peer.clone(),
        throughput_mb_per_s_per_core: peer.throughput_mb_per_s_per_core,
        throughput_mb_per_cpu_s: None,
        note_bytes: peer.note_bytes,
        latency_runs: peer.latency_runs,
        note_p50_ms: peer.note_p50_ms,
        note_p99_ms: peer.note_p99_ms,
        scores,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_stays_within_the_byte_limit() {
        let texts = ["あいう", "abc", "漢字漢字"];
        assert_eq!(build_note(&texts, 13), "あいう\nabc");
        assert_eq!(build_note(&texts, 4096), "あいう\nabc\n漢字漢字");
    }
}
