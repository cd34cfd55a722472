//! Prefix sharing between running sequences: a prompt that begins like another running sequence's prompt
//! takes that sequence's keys and values for the common part instead of computing them again.
//!
//! Requests that carry the same system prompt, chat-template header or document arrive together in
//! practice; their common prefix gives the same keys and values in every sequence (a position's keys and
//! values depend only on the tokens up to it), so copying the cached rows is exact and costs a memcpy
//! instead of a forward pass. Donors are the sequences in the running batch and the caches that finished
//! requests left behind ([`crate::prefix_cache`], which the scheduler lists after the running ones as
//! donors that are never prefilling); the copy lives in the new sequence's own cache.
//!
//! [`plan`] is pure: given where every running sequence stands, it says which ones copy rows from whom,
//! and which ones sit out this step because a donor is computing their prefix in it (so that sixteen
//! requests arriving together compute their common prefix once, not sixteen times). The scheduler
//! applies the plan.

/// Shorter common prefixes are computed, not shared (one block of a paged cache elsewhere; below it the
/// bookkeeping is not worth a step's delay).
pub const MIN_SHARED_TOKENS: usize = 16;

/// Where one running sequence stands before a step.
#[derive(Debug, Clone, Copy)]
pub struct Standing<'a> {
    /// Its prompt.
    pub prompt: &'a [u32],
    /// Prompt tokens already fed (or copied).
    pub fed: usize,
    /// Tokens in its cache.
    pub cached: usize,
    /// Whether its cache can give and take rows (host caches can; candle tensor caches cannot).
    pub shareable: bool,
    /// Its request's cache scope: sequences share only within one
    /// ([`crate::scheduler::GenerateRequest::cache_scope`]).
    pub scope: u64,
}

impl Standing<'_> {
    fn prefilling(&self) -> bool {
        self.fed < self.prompt.len()
    }
}

/// What one sequence does before and during the step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Action {
    /// Copy cache rows `fed..upto` from a donor first: `(donor's index in the running batch, upto)`.
    pub copy: Option<(usize, usize)>,
    /// Sit out this step: a donor computes at least [`MIN_SHARED_TOKENS`] more of this prefix in it (or
    /// a whole prefill chunk, when chunks are smaller: as much as this sequence would compute itself).
    pub hold: bool,
}

/// The action of every running sequence, in order, when prefills take `chunk` prompt tokens per step.
pub fn plan(seqs: &[Standing<'_>], chunk: usize) -> Vec<Action> {
    let mut actions = vec![Action::default(); seqs.len()];
    for i in 0..seqs.len() {
        let me = &seqs[i];
        if !me.prefilling() || !me.shareable {
            continue;
        }
        // At least one prompt token is always computed: it gives the logits of the first output token.
        let cap = me.prompt.len() - 1;
        // Each other prompt is compared once; the copy and the wait below both use it.
        let shared: Vec<usize> = (0..seqs.len())
            .map(|j| match j == i {
                true => 0, // never its own donor
                false => common_prefix(me.prompt, seqs[j].prompt),
            })
            .collect();
        let usable = |j: usize, cached: usize| {
            let covered = cached.min(seqs[j].prompt.len());
            shared[j].min(covered).min(cap)
        };
        let peer = |j: usize| j != i && seqs[j].shareable && seqs[j].scope == me.scope;
        let donors = (0..seqs.len()).filter(|&j| peer(j));
        let mut fed = me.fed;
        if let Some((upto, from)) = donors.map(|j| (usable(j, seqs[j].cached), j)).max()
            && upto > fed
            && upto >= MIN_SHARED_TOKENS
        {
            actions[i].copy = Some((from, upto));
            fed = upto;
        }
        // Wait for an earlier sequence that computes more of our prefix in this step (earlier only, so
        // that two sequences never wait for each other).
        actions[i].hold = (0..i).any(|j| {
            let other = &seqs[j];
            let computing = other.prefilling() && peer(j) && !actions[j].hold;
            let start = actions[j].copy.map_or(other.fed, |(_, upto)| upto);
            let after = (start + chunk.max(1)).min(other.prompt.len());
            computing && usable(j, after) >= fed + MIN_SHARED_TOKENS.min(chunk.max(1))
        });
    }
    actions
}

/// The number of leading tokens `a` and `b` share.
pub fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FEED: Action = Action {
        copy: None,
        hold: false,
    };
    const HOLD: Action = Action {
        copy: None,
        hold: true,
    };

    fn copy(from: usize, upto: usize) -> Action {
        Action {
            copy: Some((from, upto)),
            hold: false,
        }
    }

    fn standing(prompt: &[u32], fed: usize, cached: usize) -> Standing<'_> {
        Standing {
            prompt,
            fed,
            cached,
            shareable: true,
            scope: 0,
        }
    }

    fn prompt(shared: usize, own: u32, own_len: usize) -> Vec<u32> {
        let mut p: Vec<u32> = (0..shared as u32).collect();
        p.extend(std::iter::repeat_n(1000 + own, own_len));
        p
    }

    #[test]
    fn a_new_sequence_copies_the_common_prefix_of_a_running_one() {
        let (a, b) = (prompt(40, 1, 5), prompt(40, 2, 3));
        // `a` is decoding (prompt fed, 2 tokens generated); `b` just arrived.
        let seqs = [standing(&a, 45, 47), standing(&b, 0, 0)];
        let got = plan(&seqs, 512);
        assert_eq!(got, [FEED, copy(0, 40)]);
    }

    /// A finished request's kept cache comes after the running sequences, fully fed: new prompts copy
    /// from it (the longest common part wins) and never wait for it.
    #[test]
    fn kept_caches_of_finished_requests_are_donors_after_the_running_ones() {
        let (kept, running, new) = (prompt(60, 1, 0), prompt(30, 2, 9), prompt(50, 3, 6));
        let seqs = [
            standing(&running, 39, 41),
            standing(&new, 0, 0),
            standing(&kept, 60, 60),
        ];
        let got = plan(&seqs, 8);
        assert_eq!(got[..2], [FEED, copy(2, 50)]);
    }

    /// Sequences of different cache scopes (different tenants) neither copy from nor wait for each other.
    #[test]
    fn sequences_share_only_within_their_cache_scope() {
        let ps: Vec<Vec<u32>> = (0..3).map(|i| prompt(40, i, 4)).collect();
        let mut seqs: Vec<_> = ps.iter().map(|p| standing(p, 0, 0)).collect();
        seqs[1].scope = 7;
        assert_eq!(plan(&seqs, 512), [FEED, FEED, HOLD]);
        seqs[0] = standing(&ps[0], 44, 44);
        assert_eq!(plan(&seqs, 512), [FEED, FEED, copy(0, 40)]);
    }

    #[test]
    fn the_copy_leaves_the_last_prompt_token_to_compute() {
        let a = prompt(40, 1, 0);
        let seqs = [standing(&a, 40, 41), standing(&a, 0, 0)];
        assert_eq!(plan(&seqs, 512)[1], copy(0, 39));
    }

    #[test]
    fn only_the_part_a_donor_has_cached_is_copied() {
        let (a, b) = (prompt(100, 1, 0), prompt(100, 2, 4));
        // The donor is mid-prefill at 64 tokens and computes the rest of the shared part in this step:
        // `b` copies the 64 and waits for the rest.
        let seqs = [standing(&a, 64, 64), standing(&b, 0, 0)];
        let copy_and_hold = Action {
            hold: true,
            ..copy(0, 64)
        };
        assert_eq!(plan(&seqs, 64), [FEED, copy_and_hold]);
        // With a donor that has stopped prefilling there is nothing to wait for.
        let c = prompt(64, 3, 0);
        let seqs = [standing(&c, 64, 65), standing(&b, 0, 0)];
        assert_eq!(plan(&seqs, 64), [FEED, copy(0, 64)]);
    }

    #[test]
    fn sequences_arriving_together_wait_for_the_first_to_compute_their_prefix() {
        let ps: Vec<Vec<u32>> = (0..4).map(|i| prompt(40, i, 4)).collect();
        let seqs: Vec<_> = ps.iter().map(|p| standing(p, 0, 0)).collect();
        let got = plan(&seqs, 512);
        assert_eq!(got, [FEED, HOLD, HOLD, HOLD]);
        // Next step the first has its prompt cached and the others copy from it.
        let mut seqs = seqs;
        seqs[0] = standing(&ps[0], 44, 44);
        let got = plan(&seqs, 512);
        let c = copy(0, 40);
        assert_eq!(got, [FEED, c, c, c]);
    }

    #[test]
    fn with_small_chunks_a_follower_keeps_pace_with_its_donor() {
        let (a, b) = (prompt(40, 1, 2), prompt(40, 2, 2));
        let mut seqs = [standing(&a, 0, 0), standing(&b, 0, 0)];
        // Chunks of 8: the donor's 8 are as many as `b` would compute, so `b` waits for them...
        assert_eq!(plan(&seqs, 8)[1], HOLD);
        seqs[0] = standing(&a, 8, 8);
        assert_eq!(plan(&seqs, 8)[1], HOLD);
        // ...and copies once the shared part reaches the minimum, then keeps waiting for the rest.
        seqs[0] = standing(&a, 16, 16);
        let copy_and_hold = Action {
            hold: true,
            ..copy(0, 16)
        };
        assert_eq!(plan(&seqs, 8)[1], copy_and_hold);
    }

    #[test]
    fn short_or_absent_common_prefixes_are_computed() {
        let (a, b) = (prompt(10, 1, 30), prompt(10, 2, 30));
        let seqs = [standing(&a, 0, 0), standing(&b, 0, 0)];
        assert_eq!(plan(&seqs, 512), [FEED, FEED]);
        let c: Vec<u32> = (500..560).collect();
        let seqs = [standing(&a, 40, 41), standing(&c, 0, 0)];
        assert_eq!(plan(&seqs, 512), [FEED, FEED]);
    }

    #[test]
    fn caches_that_cannot_share_neither_give_nor_take() {
        let a = prompt(40, 1, 4);
        let mut donor = standing(&a, 44, 45);
        donor.shareable = false;
        assert_eq!(plan(&[donor, standing(&a, 0, 0)], 512), [FEED, FEED]);
    }

    #[test]
    fn a_sequence_never_waits_for_one_that_waits() {
        let ps: Vec<Vec<u32>> = (0..3).map(|i| prompt(40, i, 4)).collect();
        // Sequence 0 is decoding an unrelated prompt; 1 and 2 share a prefix and arrived together.
        let other: Vec<u32> = (900..950).collect();
        let seqs = [
            standing(&other, 50, 51),
            standing(&ps[1], 0, 0),
            standing(&ps[2], 0, 0),
        ];
        assert_eq!(plan(&seqs, 512), [FEED, FEED, HOLD]);
    }

    #[test]
    fn a_long_shared_prompt_is_followed_chunk_by_chunk() {
        let (a, b) = (prompt(300, 1, 2), prompt(300, 2, 2));
        // Both arrived together; chunk 128: `b` waits while `a` computes, copies, and waits again.
        let mut seqs = [standing(&a, 0, 0), standing(&b, 0, 0)];
        assert_eq!(plan(&seqs, 128)[1], HOLD);
        // `b` copies what `a` has, and waits again while `a` computes the next 128 shared tokens.
        seqs[0] = standing(&a, 128, 128);
        let copy_and_hold = Action {
            hold: true,
            ..copy(0, 128)
        };
        assert_eq!(plan(&seqs, 128)[1], copy_and_hold);
        seqs[0] = standing(&a, 256, 256);
        seqs[1] = standing(&b, 128, 128);
        assert_eq!(plan(&seqs, 128)[1].copy, Some((0, 256)));
        // The last shared tokens: `a` computes 256..302, so `b` waits once more, then copies all 300.
        assert!(plan(&seqs, 128)[1].hold);
        seqs[0] = standing(&a, 302, 303);
        seqs[1] = standing(&b, 256, 256);
        assert_eq!(plan(&seqs, 128)[1], copy(0, 300));
    }
}
