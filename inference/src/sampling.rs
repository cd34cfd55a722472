//! Choosing the next token from logits: greedy, or temperature with top-k and top-p, seeded for
//! reproducibility. A small pure function of its inputs and the RNG state.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::cpu_kernels::elementwise;

/// How to pick tokens for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature; 0 (or below 1e-5) means greedy.
    pub temperature: f32,
    /// Nucleus mass kept (1.0 keeps everything).
    pub top_p: f32,
    /// Candidates kept by rank (0 keeps everything).
    pub top_k: usize,
    /// RNG seed; the same seed and prompt give the same tokens.
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            seed: None,
        }
    }
}

/// A sampler holding one request's RNG.
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
}

impl Sampler {
    /// A sampler for `params`.
    pub fn new(params: SamplingParams) -> Self {
        let rng = match params.seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        };
        Self { params, rng }
    }

    /// The next token for these logits.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let p = &self.params;
        if p.temperature < 1e-5 {
            return greedy(logits);
        }
        if p.top_k == 0 && p.top_p >= 1.0 {
            // Every token stays: draw from the weights as they are, without listing them.
            let w = weights(logits, p.temperature);
            let total = lane_sum(&w);
            let r: f32 = self.rng.random();
            return pick_weight(&w, r * total);
        }
        let probs = candidates(logits, p);
        let r: f32 = self.rng.random();
        pick(&probs, r)
    }
}

/// Index of the largest logit (the first one on ties; NaNs are never picked, and 0 when all are NaN).
///
/// Two passes the compiler vectorizes — the maximum in sixteen lanes, then the first position that
/// holds it — instead of one loop with a branch per logit: with sixteen streams the scheduler thread
/// picked 16 × 49 152 logits per step this way while the other kernel thread waited.
pub fn greedy(logits: &[f32]) -> u32 {
    let max = max_logit(logits);
    logits.iter().position(|&l| l == max).unwrap_or(0) as u32
}

/// The largest logit that is not NaN (−∞ when there is none), in sixteen lanes.
fn max_logit(logits: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 16];
    let chunks = logits.chunks_exact(16);
    let tail = chunks
        .remainder()
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    for c in chunks {
        for (m, &l) in lanes.iter_mut().zip(c) {
            *m = if l > *m { l } else { *m };
        }
    }
    lanes.iter().copied().fold(tail, f32::max)
}

/// The sum of `w` in sixteen lanes (a sequential sum waits on every addition).
fn lane_sum(w: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let chunks = w.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, &x) in lanes.iter_mut().zip(c) {
            *a += x;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Weights of the tokens that may be kept by top-k or top-p when there are enough of them: those at
/// least this fraction of the most likely token's. A language model's distribution puts nearly all its
/// mass on a few dozen tokens, so the selection below runs on those instead of the whole vocabulary.
const HEAD_MIN_WEIGHT: f32 = 1e-4;

/// `(token, probability)` after temperature, top-k and top-p, renormalised; sorted by probability when
/// top-p cut the set (with `top_p >= 1` and no top-k every token stays, in token order).
pub fn candidates(logits: &[f32], p: &SamplingParams) -> Vec<(u32, f32)> {
    let w = weights(logits, p.temperature);
    let all_total = lane_sum(&w);
    let pairs = |min: f32| -> Vec<(u32, f32)> {
        (w.iter().enumerate())
            .filter(|&(_, &x)| x >= min)
            .map(|(i, &x)| (i as u32, x))
            .collect()
    };
    let nucleus_only = p.top_k == 0 || p.top_k >= w.len();
    let mut probs = match (nucleus_only, p.top_p < 1.0) {
        (true, false) => pairs(f32::NEG_INFINITY),
        _ => {
            // Exact when the head holds the k largest, or (top-p alone) more than the nucleus's mass:
            // every token left out weighs less than every token in it. Otherwise all tokens.
            let head = pairs(HEAD_MIN_WEIGHT);
            let enough = match nucleus_only {
                false => head.len() >= p.top_k,
                true => head.iter().map(|x| x.1).sum::<f32>() >= p.top_p * all_total * 1.001,
            };
            if enough {
                head
            } else {
                pairs(f32::NEG_INFINITY)
            }
        }
    };
    if !nucleus_only && p.top_k < probs.len() {
        // The k largest, in no order yet: a selection, not a sort of the whole vocabulary.
        probs.select_nth_unstable_by(p.top_k - 1, by_weight_desc);
        probs.truncate(p.top_k);
    }
    let total = match nucleus_only {
        true => all_total,
        false => probs.iter().map(|x| x.1).sum(),
    };
    let nucleus = nucleus_len(&mut probs, total, p.top_p);
    probs.truncate(nucleus);
    let kept_total: f32 = probs.iter().map(|x| x.1).sum();
    probs.iter().map(|&(id, w)| (id, w / kept_total)).collect()
}

/// `e^{(l - max) / temperature}` for every logit: softmax weights before normalisation.
fn weights(logits: &[f32], temperature: f32) -> Vec<f32> {
    let mut w = vec![0f32; logits.len()];
    elementwise::exp_shifted(logits, max_logit(logits), 1.0 / temperature, &mut w);
    w
}

/// The first token whose cumulative weight passes `target` (the last one if rounding leaves it short).
fn pick_weight(w: &[f32], target: f32) -> u32 {
    let mut acc = 0.0;
    for (i, &x) in w.iter().enumerate() {
        acc += x;
        if target < acc {
            return i as u32;
        }
    }
    w.len().saturating_sub(1) as u32
}

fn by_weight_desc(a: &(u32, f32), b: &(u32, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1)
}

/// Sorts the head of `probs` (descending) far enough to hold the smallest set whose share of `total`
/// reaches `top_p`, and returns that set's length. Sorting a whole 50k-token vocabulary for every token
/// of every sequence costs milliseconds; the nucleus is usually a few dozen tokens, so the head is found
/// by selection, growing fourfold until it holds enough mass.
fn nucleus_len(probs: &mut [(u32, f32)], total: f32, top_p: f32) -> usize {
    if top_p >= 1.0 || probs.is_empty() {
        return probs.len();
    }
    let mut head = 64.min(probs.len());
    loop {
        if head < probs.len() {
            probs.select_nth_unstable_by(head - 1, by_weight_desc);
        }
        probs[..head].sort_unstable_by(by_weight_desc);
        let mut mass = 0.0;
        for (i, &(_, w)) in probs[..head].iter().enumerate() {
            mass += w / total;
            if mass >= top_p {
                return i + 1;
            }
        }
        if head == probs.len() {
            return head;
        }
        head = (head * 4).min(probs.len());
    }
}

fn pick(probs: &[(u32, f32)], r: f32) -> u32 {
    let mut acc = 0.0;
    for &(id, p) in probs {
        acc += p;
        if r < acc {
            return id;
        }
    }
    probs.last().map_or(0, |x| x.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOGITS: [f32; 5] = [1.0, 3.0, 2.0, -1.0, 2.5];

    #[test]
    fn greedy_matches_a_plain_scan_with_ties_nans_and_infinities() {
        // The first index of the largest value that is not NaN; 0 when all are.
        let scan = |l: &[f32]| {
            let mut best = None;
            for (i, &x) in l.iter().enumerate() {
                if !x.is_nan() && best.is_none_or(|b: usize| x > l[b]) {
                    best = Some(i);
                }
            }
            best.unwrap_or(0) as u32
        };
        let mut rng = StdRng::seed_from_u64(9);
        for n in [1, 15, 16, 17, 100, 49_152] {
            for case in 0..6 {
                // Few distinct values, so that the maximum is often tied.
                let mut l: Vec<f32> = (0..n).map(|_| rng.random_range(0..8) as f32).collect();
                match case {
                    1 => l.iter_mut().step_by(3).for_each(|x| *x = f32::NAN),
                    2 => l.fill(f32::NEG_INFINITY),
                    3 => l.fill(f32::NAN),
                    4 => l[n - 1] = f32::INFINITY,
                    5 => l[0] = f32::NAN,
                    _ => {}
                }
                assert_eq!(greedy(&l), scan(&l), "{n} logits, case {case}");
            }
        }
    }

    #[test]
    fn greedy_takes_the_largest_logit() {
        assert_eq!(Sampler::new(SamplingParams::default()).sample(&LOGITS), 1);
    }

    #[test]
    fn top_k_one_is_greedy_at_any_temperature() {
        let p = SamplingParams {
            temperature: 5.0,
            top_k: 1,
            ..Default::default()
        };
        let mut s = Sampler::new(p);
        assert!((0..50).all(|_| s.sample(&LOGITS) == 1));
    }

    #[test]
    fn top_p_keeps_the_smallest_nucleus() {
        let p = SamplingParams {
            temperature: 1.0,
            top_p: 0.5,
            ..Default::default()
        };
        let c = candidates(&LOGITS, &p);
        assert_eq!(c.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 4]);
        assert!((c.iter().map(|x| x.1).sum::<f32>() - 1.0).abs() < 1e-5);
    }

    /// The selection-based nucleus equals the one a full sort gives, on a vocabulary-sized row.
    #[test]
    fn nucleus_matches_a_full_sort_on_a_large_vocabulary() {
        let logits: Vec<f32> = (0..50_000u32)
            .map(|i| ((i.wrapping_mul(2_654_435_761) >> 8) % 10_000) as f32 / 700.0)
            .collect();
        // 40 000 > the tokens within a factor 1e-4 of the most likely: the head is not enough.
        let cases = [
            (0, 0.9),
            (0, 0.999),
            (40, 0.95),
            (1000, 1.0),
            (40_000, 1.0),
            (0, 0.0),
        ];
        for (top_k, top_p) in cases {
            let p = SamplingParams {
                temperature: 0.8,
                top_k,
                top_p,
                ..Default::default()
            };
            let fast = candidates(&logits, &p);
            let mut all: Vec<(u32, f32)> = logits
                .iter()
                .enumerate()
                .map(|(i, &l)| (i as u32, l))
                .collect();
            all.sort_by(|a, b| b.1.total_cmp(&a.1));
            // Reference: the whole row sorted, cut to top-k, weighed in f64. The kept set must be the
            // smallest prefix reaching top-p, up to f32 rounding of the mass (1e-5): near top_p = 1
            // over a flat tail that rounding alone moves the boundary by hundreds of tokens.
            all.truncate(if top_k > 0 { top_k } else { all.len() });
            let w: Vec<f64> = (all.iter())
                .map(|x| ((f64::from(x.1) - f64::from(all[0].1)) / 0.8).exp())
                .collect();
            let total: f64 = w.iter().sum();
            let mass = |n: usize| w[..n].iter().sum::<f64>() / total;
            let n = fast.len();
            if top_p >= 1.0 {
                assert_eq!(n, all.len(), "top_k {top_k}: every candidate stays");
            } else {
                assert!(
                    mass(n) >= f64::from(top_p) - 1e-5 && mass(n - 1) < f64::from(top_p) + 1e-5,
                    "top_k {top_k} top_p {top_p}: {n} tokens hold {} of the mass, {} without the last",
                    mass(n),
                    mass(n - 1)
                );
            }
            let mut got: Vec<f32> = fast.iter().map(|&(id, _)| logits[id as usize]).collect();
            got.sort_by(|a, b| b.total_cmp(a));
            let want: Vec<f32> = all[..fast.len()].iter().map(|x| x.1).collect();
            assert_eq!(got, want, "the kept tokens are the most likely ones");
            assert!((fast.iter().map(|x| x.1).sum::<f32>() - 1.0).abs() < 1e-3);
        }
    }

    /// Ten likely tokens and a long tail just below the head's weight that holds a quarter of the mass:
    /// a nucleus of 0.9 reaches into the tail, so it must be chosen from every token.
    #[test]
    fn a_nucleus_reaching_past_the_head_is_taken_from_every_token() {
        let tail = 0.8 * (0.9 * HEAD_MIN_WEIGHT).ln();
        let logits: Vec<f32> = (0..40_010)
            .map(|i| if i < 10 { 0.0 } else { tail })
            .collect();
        let p = SamplingParams {
            temperature: 0.8,
            top_p: 0.9,
            ..Default::default()
        };
        let c = candidates(&logits, &p);
        // Mass 10 + 40 000 · 9e-5 = 13.6; 0.9 of it needs 10 + ≈ 24 900 tail tokens.
        let want = 10.0 + (0.9 * 13.6 - 10.0) / (0.9 * f64::from(HEAD_MIN_WEIGHT));
        assert!(
            (c.len() as f64 - want).abs() < 100.0,
            "{} tokens, want ≈ {want:.0}",
            c.len()
        );
        assert!(c[..10].iter().all(|x| x.0 < 10), "the likely tokens first");
    }

    /// Drawn from the whole distribution (no top-k, no top-p), tokens come as often as their
    /// probability: 4 000 draws where one token has 3 times another's weight and a third has none.
    #[test]
    fn tokens_are_drawn_as_often_as_their_probability() {
        let logits = [0.0, 3f32.ln(), -200.0];
        for top_p in [1.0, 0.999_999] {
            let mut s = Sampler::new(SamplingParams {
                temperature: 1.0,
                top_p,
                seed: Some(3),
                ..Default::default()
            });
            let mut counts = [0usize; 3];
            for _ in 0..4000 {
                counts[s.sample(&logits) as usize] += 1;
            }
            // 3 000 expected, binomial sd ≈ 27.
            assert!(counts[1].abs_diff(3000) < 150, "top_p {top_p}: {counts:?}");
            assert_eq!(counts[2], 0, "top_p {top_p}: {counts:?}");
        }
    }

    #[test]
    fn same_seed_same_tokens_and_sampling_varies() {
        let p = SamplingParams {
            temperature: 1.5,
            seed: Some(7),
            ..Default::default()
        };
        let run = |p: &SamplingParams| {
            let mut s = Sampler::new(p.clone());
            (0..40).map(|_| s.sample(&LOGITS)).collect::<Vec<_>>()
        };
        let a = run(&p);
        assert_eq!(a, run(&p));
        assert!(
            a.iter().any(|&t| t != a[0]),
            "temperature sampling never varied: {a:?}"
        );
    }
}
