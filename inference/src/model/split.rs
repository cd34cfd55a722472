//! Data-parallel forward steps on the CPU: a batch of many sequences (a decode step of several streams)
//! is cut into one part per kernel thread, and each thread runs its part's whole pass through the layers
//! alone, instead of every projection, norm and attention being shared out over the threads.
//!
//! Why: sharing out each op makes the threads hand every activation row to each other between
//! consecutive ops, some 150 times per step. This machine's two virtual CPUs are sometimes placed far
//! apart by the host: a cache-line round trip between them then takes ≈ 300 ns instead of ≈ 60–80 ns
//! (measured with a ping-pong of one atomic), and a 16-stream decode step took ≈ 19 ms instead of
//! ≈ 14 ms. Two threads that each decode 8 of the streams alone read every weight once each but share
//! nothing until the logits, and took ≈ 12.5 ms per step whatever the placement. The output projection
//! (one row per sequence) still runs over all threads together, after the parts.
//!
//! The parts are contiguous ranges of the batch, so the rows come back in the batch's order, and each
//! sequence's rows are computed by the same ops on the same values as without the split (a row's
//! result never depends on the other rows of its batch), so the logits are the same bits (test).

use std::ops::Range;
use std::sync::Mutex;

use candle_core::Result;

use super::SeqStep;
use crate::cpu_kernels::pool;

/// Sequences per part at least: each thread reads every weight for its part's tokens, and with few
/// tokens that reading is the step's cost. `decode_bench`, 2 threads, cores placed near: 8 streams in
/// two parts of 4 took 8.6 ms per step against 8.0 shared out op by op, 12 streams in parts of 6 about
/// the same (11.0–13.9 against 11.3–11.7), 16 in parts of 8 13.0–13.3 against 14.1.
const MIN_SEQUENCES_PER_PART: usize = 6;

/// How much more than an equal share of the tokens the largest part may hold; above it (a long prompt
/// chunk beside a few decoding streams) one thread would be left waiting, and the step is shared out op
/// by op instead.
const MAX_IMBALANCE: f64 = 1.25;

/// The parts of a batch whose sequences feed `tokens[i]` tokens each, for `threads` threads: contiguous
/// ranges covering the batch with about equal token counts, or a single range when splitting does not
/// pay (see [`MIN_SEQUENCES_PER_PART`] and [`MAX_IMBALANCE`]).
pub(super) fn parts(tokens: &[usize], threads: usize) -> Vec<Range<usize>> {
    let whole: Vec<Range<usize>> = std::iter::once(0..tokens.len()).collect();
    if threads < 2 || tokens.len() < threads * MIN_SEQUENCES_PER_PART {
        return whole;
    }
    let total: usize = tokens.iter().sum();
    let mut out = Vec::with_capacity(threads);
    let (mut start, mut sum) = (0, 0);
    for (i, &t) in tokens.iter().enumerate() {
        sum += t;
        // Cut after sequence `i` once this part reaches its share of all the tokens.
        let share = total * (out.len() + 1) / threads;
        if sum >= share && out.len() + 1 < threads && i + 1 < tokens.len() {
            out.push(start..i + 1);
            start = i + 1;
        }
    }
    out.push(start..tokens.len());
    let largest = out
        .iter()
        .map(|r| tokens[r.clone()].iter().sum::<usize>())
        .max();
    let fair = total as f64 / threads as f64;
    let balanced = largest.is_some_and(|l| l as f64 <= fair * MAX_IMBALANCE);
    if out.len() < 2 || !balanced || out.iter().any(|r| r.len() < MIN_SEQUENCES_PER_PART) {
        return whole;
    }
    out
}

/// `f` over the [`parts`] of `batch`, in parallel on the kernel pool (each part's own kernels run on
/// its thread alone: the pool runs a call made during a job on the calling thread), with the parts'
/// rows concatenated in the batch's order. One part: `f(batch)` here, its kernels shared out as usual.
pub(super) fn run<F>(batch: &mut [SeqStep<'_>], f: F) -> Result<Vec<f32>>
where
    F: Fn(&mut [SeqStep<'_>]) -> Result<Vec<f32>> + Sync,
{
    let tokens: Vec<usize> = batch.iter().map(|s| s.tokens.len()).collect();
    let ranges = parts(&tokens, pool::threads());
    if ranges.len() < 2 {
        return f(batch);
    }
    type Slot<'s, 'a> = Mutex<(&'s mut [SeqStep<'a>], Option<Result<Vec<f32>>>)>;
    let mut slots: Vec<Slot<'_, '_>> = Vec::with_capacity(ranges.len());
    let mut rest = batch;
    for r in &ranges {
        let (part, tail) = std::mem::take(&mut rest).split_at_mut(r.len());
        slots.push(Mutex::new((part, None)));
        rest = tail;
    }
    pool::for_each(slots.len(), &|i| {
        let mut slot = slots[i].lock().unwrap_or_else(|p| p.into_inner());
        let out = f(slot.0);
        slot.1 = Some(out);
    });
    let mut rows = Vec::new();
    for slot in slots {
        let (_, out) = slot.into_inner().unwrap_or_else(|p| p.into_inner());
        match out {
            Some(part) => rows.extend(part?),
            None => candle_core::bail!("a part of the batch was not run"),
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv_cache::SeqCache;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// `check` on a decode step of 16 sequences whose only token is its index.
    fn with_sixteen_sequences(check: impl FnOnce(&mut [SeqStep<'_>])) {
        let tokens: Vec<Vec<u32>> = (0..16u32).map(|i| vec![i]).collect();
        let mut caches: Vec<SeqCache> = (0..16).map(|_| SeqCache::new(1)).collect();
        let mut batch: Vec<SeqStep<'_>> = tokens
            .iter()
            .zip(caches.iter_mut())
            .map(|(t, c)| SeqStep {
                tokens: t,
                cache: c,
            })
            .collect();
        check(&mut batch);
    }

    /// The parts' rows come back in the batch's order, from as many calls as there are parts.
    #[test]
    fn run_concatenates_the_parts_in_batch_order() {
        with_sixteen_sequences(|batch| {
            let calls = AtomicUsize::new(0);
            let rows = run(batch, |part| {
                calls.fetch_add(1, Ordering::Relaxed);
                Ok(part.iter().map(|s| s.tokens[0] as f32).collect())
            })
            .expect("run");
            let want: Vec<f32> = (0..16).map(|i| i as f32).collect();
            assert_eq!(rows, want);
            let parts = parts(&[1; 16], pool::threads()).len();
            assert_eq!(calls.load(Ordering::Relaxed), parts);
            if pool::threads() > 1 {
                assert!(parts > 1);
            }
        });
    }

    /// An error in any part is the step's error.
    #[test]
    fn an_error_in_one_part_fails_the_step() {
        with_sixteen_sequences(|batch| {
            let got = run(batch, |part| {
                if part.iter().any(|s| s.tokens[0] == 15) {
                    candle_core::bail!("no");
                }
                Ok(vec![0.0; part.len()])
            });
            assert!(got.is_err());
        });
    }

    #[test]
    fn a_decode_step_of_many_streams_splits_evenly_into_contiguous_parts() {
        assert_eq!(parts(&[1; 16], 2), vec![0..8, 8..16]);
        assert_eq!(parts(&[1; 17], 2), vec![0..8, 8..17]);
        assert_eq!(parts(&[1; 18], 3), vec![0..6, 6..12, 12..18]);
    }

    #[test]
    fn prompts_split_by_their_tokens() {
        // One decoding stream, then 15 prompts of 45 tokens (the benchmark's distinct prompts).
        let tokens: Vec<usize> = std::iter::once(1).chain([45; 15]).collect();
        let got = parts(&tokens, 2);
        assert_eq!(got.len(), 2);
        let sums: Vec<usize> = got.iter().map(|r| tokens[r.clone()].iter().sum()).collect();
        assert!(sums.iter().all(|&s| s <= 380), "{sums:?}");
        assert_eq!(got[0].start, 0);
        assert_eq!(got[0].end, got[1].start);
        assert_eq!(got[1].end, tokens.len());
    }

    #[test]
    fn small_or_lopsided_batches_stay_whole() {
        let whole = |n: usize| -> Vec<Range<usize>> { std::iter::once(0..n).collect() };
        assert_eq!(parts(&[1; 11], 2), whole(11)); // Fewer than 6 sequences per part.
        assert_eq!(parts(&[1; 16], 1), whole(16)); // One thread.
        let long_chunk: Vec<usize> = std::iter::once(512).chain([1; 9]).collect();
        assert_eq!(parts(&long_chunk, 2), whole(10));
    }
}
