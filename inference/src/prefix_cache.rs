//! The caches of finished requests, kept as donors for later prompts that begin the same way.
//!
//! A chat client sends the whole conversation again at every turn, and many requests of one hospital
//! start with the same system prompt; without this, each turn computes the keys and values of the
//! conversation so far once more. When a request finishes, its cache (prompt and answer, as far as they
//! were fed) moves here instead of being freed; a later prompt that begins with the same tokens copies
//! the common part ([`crate::prefix::plan`] treats these entries as donors that are never prefilling).
//!
//! The entries live inside the KV budget: the scheduler evicts the least recently used ones whenever a
//! request it admits needs their room, so a full cache never holds a request back. They are not counted
//! in the KV-utilisation gauge (they are free to reclaim, and an autoscaler must not add replicas for
//! them); `anshin_inference_prefix_cache_tokens` shows them. Host (CPU) caches only.

use std::collections::VecDeque;

use crate::kv_cache::SeqCache;
use crate::prefix::{MIN_SHARED_TOKENS, Standing, common_prefix};

/// Entries kept at most, whatever the budget: every prefilling prompt is compared with each of them.
pub const MAX_ENTRIES: usize = 256;

/// One finished request's cache, the tokens it holds, and the request's cache scope.
struct Entry {
    tokens: Vec<u32>,
    cache: SeqCache,
    scope: u64,
}

/// Finished requests' caches, least recently used first.
#[derive(Default)]
pub struct PrefixCache {
    entries: VecDeque<Entry>,
}

impl PrefixCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tokens held by all entries (each counts against the KV budget).
    pub fn tokens(&self) -> usize {
        self.entries.iter().map(|e| e.tokens.len()).sum()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Keeps `cache`, which holds the keys and values of `tokens` (one row per token), as the most
    /// recently used entry of cache scope `scope`. Entries of that scope whose tokens it covers whole
    /// (an earlier turn of the same conversation, the same prompt again) are dropped. A cache that
    /// could never be copied from (too short, or candle tensors rather than host rows: a GPU's) is not
    /// kept.
    pub fn insert(&mut self, tokens: Vec<u32>, cache: SeqCache, scope: u64) {
        let shareable = tokens.len() >= MIN_SHARED_TOKENS && cache.holds_host_rows();
        if !shareable || tokens.len() != cache.len() {
            return;
        }
        let covered =
            |e: &Entry| e.scope == scope && common_prefix(&e.tokens, &tokens) == e.tokens.len();
        self.entries.retain(|e| !covered(e));
        self.entries.push_back(Entry {
            tokens,
            cache,
            scope,
        });
        while self.entries.len() > MAX_ENTRIES {
            self.entries.pop_front();
        }
    }

    /// Evicts least recently used entries until at most `room` tokens are held.
    pub fn shrink_to(&mut self, room: usize) {
        while self.tokens() > room && self.entries.pop_front().is_some() {}
    }

    /// Entry `i` as a donor for [`crate::prefix::plan`]: its tokens, all fed and cached.
    pub fn standing(&self, i: usize) -> Standing<'_> {
        let e = &self.entries[i];
        Standing {
            prompt: &e.tokens,
            fed: e.tokens.len(),
            cached: e.cache.len(),
            shareable: e.cache.holds_host_rows(),
            scope: e.scope,
        }
    }

    /// Entry `i`'s tokens and cache, to copy rows from.
    pub fn donor(&self, i: usize) -> (&[u32], &SeqCache) {
        let e = &self.entries[i];
        (&e.tokens, &e.cache)
    }

    /// Marks the entries `used` (indices as [`Self::standing`] had them) as the most recently used.
    pub fn touch(&mut self, used: &[usize]) {
        let mut used: Vec<usize> = used.to_vec();
        used.sort_unstable();
        used.dedup();
        // From the back, so the indices still to move stay valid.
        let moved: Vec<Entry> = used
            .iter()
            .rev()
            .filter_map(|&i| self.entries.remove(i))
            .collect();
        self.entries.extend(moved.into_iter().rev());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache of `n` rows (one layer, width 1), as the tokens' own cache would be.
    fn cache(n: usize) -> SeqCache {
        let mut c = SeqCache::new(1);
        c.append_rows(0, 1, &vec![0.5; n], &vec![0.25; n])
            .expect("rows");
        c
    }

    fn keep(p: &mut PrefixCache, tokens: &[u32]) {
        p.insert(tokens.to_vec(), cache(tokens.len()), 0);
    }

    fn firsts(p: &PrefixCache) -> Vec<u32> {
        (0..p.len()).map(|i| p.donor(i).0[0]).collect()
    }

    fn run(first: u32, len: u32) -> Vec<u32> {
        (first..first + len).collect()
    }

    #[test]
    fn later_turns_replace_the_earlier_turns_they_extend() {
        let mut p = PrefixCache::new();
        let turn1 = run(0, 20);
        keep(&mut p, &turn1);
        keep(&mut p, &run(100, 30));
        let turn2: Vec<u32> = turn1.iter().copied().chain(run(50, 10)).collect();
        keep(&mut p, &turn2);
        assert_eq!(firsts(&p), vec![100, 0]);
        assert_eq!(p.tokens(), 30 + 30);
        assert_eq!(p.donor(1).0, &turn2[..]);
        // The same prompt again is one entry, not two.
        keep(&mut p, &turn2);
        assert_eq!((p.len(), p.tokens()), (2, 60));
    }

    #[test]
    fn caches_that_cannot_be_copied_from_or_do_not_match_their_tokens_are_not_kept() {
        let mut p = PrefixCache::new();
        keep(&mut p, &run(0, MIN_SHARED_TOKENS as u32 - 1));
        p.insert(run(0, 20), cache(19), 0);
        // Candle tensors (a GPU's cache) cannot be copied from.
        let mut tensors = SeqCache::new(1);
        let kv = candle_core::Tensor::zeros(
            (1, 20, 4),
            candle_core::DType::F32,
            &candle_core::Device::Cpu,
        )
        .expect("tensor");
        tensors.append(0, &kv, &kv).expect("append");
        assert_eq!(tensors.len(), 20);
        p.insert(run(0, 20), tensors, 0);
        assert!(p.is_empty() && p.tokens() == 0);
    }

    #[test]
    fn an_entry_covers_only_entries_of_its_own_scope() {
        let mut p = PrefixCache::new();
        p.insert(run(0, 20), cache(20), 1);
        p.insert(run(0, 30), cache(30), 2);
        assert_eq!((p.len(), p.tokens()), (2, 50));
        assert_eq!((p.standing(0).scope, p.standing(1).scope), (1, 2));
        p.insert(run(0, 30), cache(30), 1);
        assert_eq!((p.len(), p.tokens()), (2, 60));
    }

    #[test]
    fn shrinking_evicts_the_least_recently_used_first() {
        let mut p = PrefixCache::new();
        for first in [0, 100, 200] {
            keep(&mut p, &run(first, 20));
        }
        p.touch(&[0]);
        assert_eq!(firsts(&p), vec![100, 200, 0]);
        p.shrink_to(45);
        assert_eq!(firsts(&p), vec![200, 0]);
        assert_eq!(p.tokens(), 40);
        p.shrink_to(0);
        assert!(p.is_empty() && p.tokens() == 0);
    }

    #[test]
    fn touching_several_entries_keeps_their_order_among_themselves() {
        let mut p = PrefixCache::new();
        for first in [0, 100, 200, 300] {
            keep(&mut p, &run(first, 20));
        }
        p.touch(&[2, 0, 2]);
        assert_eq!(firsts(&p), vec![100, 300, 0, 200]);
        let s = p.standing(3);
        assert_eq!((s.fed, s.cached, s.shareable), (20, 20, true));
    }

    #[test]
    fn the_number_of_entries_is_bounded() {
        let mut p = PrefixCache::new();
        for first in 0..(MAX_ENTRIES as u32 + 5) {
            keep(&mut p, &run(first * 1000, 16));
        }
        assert_eq!(p.len(), MAX_ENTRIES);
        assert_eq!(p.tokens(), MAX_ENTRIES * 16);
        assert_eq!(p.donor(0).0[0], 5000);
    }
}
