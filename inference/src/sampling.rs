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

/// Index of the largest logit (the first one on ties).
pub fn greedy(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// `(token, probability)` after temperature, top-k and top-p, sorted by probability and renormalised.
pub fn candidates(logits: &[f32], p: &SamplingParams) -> Vec<(u32, f32)> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut probs: Vec<(u32, f32)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| (i as u32, ((l - max) / p.temperature).exp()))
        .collect();
    probs.sort_by(|a, b| b.1.total_cmp(&a.1));
    if p.top_k > 0 {
        probs.truncate(p.top_k);
    }
    let total: f32 = probs.iter().map(|x| x.1).sum();
    let mut kept = Vec::with_capacity(probs.len());
    let mut mass = 0.0;
    for (id, w) in probs {
        let pr = w / total;
        kept.push((id, pr));
        mass += pr;
        if mass >= p.top_p {
            break;
        }
    }
    let kept_total: f32 = kept.iter().map(|x| x.1).sum();
    kept.iter().map(|&(id, pr)| (id, pr / kept_total)).collect()
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
