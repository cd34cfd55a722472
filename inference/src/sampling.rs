//! Choosing the next token from logits: greedy, or temperature with top-k and top-p, seeded for
//! reproducibility. A small pure function of its inputs and the RNG state.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

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
        if self.params.temperature < 1e-5 {
            return greedy(logits);
        }
        let probs = candidates(logits, &self.params);
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
    let max = lanes.iter().copied().fold(tail, f32::max);
    logits.iter().position(|&l| l == max).unwrap_or(0) as u32
}

/// `(token, probability)` after temperature, top-k and top-p, renormalised; sorted by probability when
/// top-p cut the set (with `top_p >= 1` every token stays, in no particular order).
pub fn candidates(logits: &[f32], p: &SamplingParams) -> Vec<(u32, f32)> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut probs: Vec<(u32, f32)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| (i as u32, ((l - max) / p.temperature).exp()))
        .collect();
    if p.top_k > 0 && p.top_k < probs.len() {
        // The k largest, in no order yet: a selection, not a sort of the whole vocabulary.
        probs.select_nth_unstable_by(p.top_k - 1, by_weight_desc);
        probs.truncate(p.top_k);
    }
    let total: f32 = probs.iter().map(|x| x.1).sum();
    let nucleus = nucleus_len(&mut probs, total, p.top_p);
    probs.truncate(nucleus);
    let kept_total: f32 = probs.iter().map(|x| x.1).sum();
    probs.iter().map(|&(id, w)| (id, w / kept_total)).collect()
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
        for (top_k, top_p) in [(0, 0.9), (0, 0.999), (40, 0.95), (1000, 1.0), (0, 0.0)] {
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
            // Reference: the whole row sorted, cut to top-k, then to the smallest prefix reaching top-p.
            all.truncate(if top_k > 0 { top_k } else { all.len() });
            let w: Vec<f32> = all.iter().map(|x| ((x.1 - all[0].1) / 0.8).exp()).collect();
            let total: f32 = w.iter().sum();
            let mut mass = 0.0;
            let expected_len = if top_p >= 1.0 {
                all.len()
            } else {
                1 + w
                    .iter()
                    .position(|x| {
                        mass += x / total;
                        mass >= top_p
                    })
                    .unwrap_or(all.len() - 1)
            };
            // f32 sums in another order move the boundary a little (more so near top_p = 1).
            assert!(
                fast.len().abs_diff(expected_len) <= 1 + expected_len / 100,
                "top_k {top_k} top_p {top_p}: {} vs {expected_len}",
                fast.len()
            );
            let mut got: Vec<f32> = fast.iter().map(|&(id, _)| logits[id as usize]).collect();
            got.sort_by(|a, b| b.total_cmp(a));
            let want: Vec<f32> = all[..fast.len()].iter().map(|x| x.1).collect();
            assert_eq!(got, want, "the kept tokens are the most likely ones");
            assert!((fast.iter().map(|x| x.1).sum::<f32>() - 1.0).abs() < 1e-3);
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
