//! Anshin's addition to crawdad (see `third_party/README.md`): common-prefix search from every start
//! position of a text at once.
//!
//! [`Trie::common_prefix_search`] walks one start position's path down the trie, and each step waits
//! for the previous node to come from memory. When the trie has fallen out of the caches (a process
//! that analyses a short text now and then), those waits are the whole cost. Here the walks of all
//! start positions advance together, one depth at a time: the nodes of one depth are independent of
//! each other, so they are prefetched together and their cache misses overlap instead of queuing.

use alloc::vec::Vec;

use crate::mapper::INVALID_CODE;
use crate::trie::Trie;
use crate::{Node, END_CODE};

/// Reusable buffers for [`Trie::common_prefix_search_all`], so repeated searches do not allocate.
#[derive(Default, Debug, Clone)]
pub struct SearchScratch {
    codes: Vec<u32>,
    /// `(start, node)` of the walks still going.
    active: Vec<(u32, u32)>,
    /// `(start, leaf node, length)` of keys found at this depth whose value sits in a separate leaf.
    leaves: Vec<(u32, u32, u32)>,
}

/// One match: the key `text[start..start + len]` has `value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    /// Start position in the text, in characters.
    pub start: u32,
    /// The key's value.
    pub value: u32,
    /// The key's length in characters.
    pub len: u32,
}

/// Asks the CPU to bring `p`'s cache line in; it never faults and changes nothing.
#[inline(always)]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint that never faults, whatever the address.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

impl Trie {
    #[inline(always)]
    fn node_at(&self, idx: u32) -> Option<&Node> {
        self.nodes.get(usize::try_from(idx).ok()?)
    }

    #[inline(always)]
    fn prefetch_node(&self, idx: u32) {
        if (idx as usize) < self.nodes.len() {
            prefetch(self.nodes.as_ptr().wrapping_add(idx as usize));
        }
    }

    /// Every key that is a prefix of `text[start..]`, for every `start`, appended to `out` sorted by
    /// start and then by length — the same matches, in the same order, as calling
    /// [`Trie::common_prefix_search`] on each suffix of `text` in turn.
    pub fn common_prefix_search_all(
        &self,
        text: &[char],
        scratch: &mut SearchScratch,
        out: &mut Vec<Match>,
    ) {
        let first = out.len();
        let SearchScratch {
            codes,
            active,
            leaves,
        } = scratch;
        codes.clear();
        codes.extend(
            text.iter()
                .map(|&c| self.mapper.get(c).unwrap_or(INVALID_CODE)),
        );
        active.clear();
        active.extend(
            (0..codes.len())
                .filter(|&p| codes[p] != INVALID_CODE)
                .map(|p| (p as u32, 0)),
        );
        let mut depth = 0;
        while !active.is_empty() {
            self.advance(codes, depth, active, leaves, out);
            for &(start, leaf, len) in leaves.iter() {
                if let Some(n) = self.node_at(leaf) {
                    out.push(Match {
                        start,
                        value: n.get_base(),
                        len,
                    });
                }
            }
            leaves.clear();
            depth += 1;
        }
        // A start has at most one match per length, so (start, length) orders them as the per-suffix
        // searches do; the unstable sort does not allocate.
        out[first..].sort_unstable_by_key(|m| (m.start, m.len));
    }

    /// Moves every active walk one character deeper: prefetches all children first, then checks them.
    /// Walks that end are dropped; keys found are pushed to `out` (value in the child itself) or to
    /// `leaves` (value in a separate leaf node, prefetched here).
    fn advance(
        &self,
        codes: &[u32],
        depth: usize,
        active: &mut Vec<(u32, u32)>,
        leaves: &mut Vec<(u32, u32, u32)>,
        out: &mut Vec<Match>,
    ) {
        let code_at = |start: u32| {
            codes
                .get(start as usize + depth)
                .copied()
                .unwrap_or(INVALID_CODE)
        };
        for &(start, node) in active.iter() {
            let mc = code_at(start);
            if let (true, Some(n)) = (mc != INVALID_CODE, self.node_at(node)) {
                self.prefetch_node(n.get_base() ^ mc);
            }
        }
        let mut kept = 0;
        for i in 0..active.len() {
            let (start, node) = active[i];
            let mc = code_at(start);
            let Some(n) = self.node_at(node).filter(|_| mc != INVALID_CODE) else {
                continue;
            };
            let child = n.get_base() ^ mc;
            let Some(c) = self.node_at(child).filter(|c| c.get_check() == node) else {
                continue;
            };
            let len = depth as u32 + 1;
            if c.is_leaf() {
                out.push(Match {
                    start,
                    value: c.get_base(),
                    len,
                });
                continue;
            }
            if c.has_leaf() {
                let leaf = c.get_base() ^ END_CODE;
                self.prefetch_node(leaf);
                leaves.push((start, leaf, len));
            }
            active[kept] = (start, child);
            kept += 1;
        }
        active.truncate(kept);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_per_suffix_searches_find_in_the_same_order() {
        let mut keys = vec![
            "世",
            "世界",
            "世界中",
            "世論調査",
            "界",
            "中の",
            "統計",
            "統計調査",
            "調",
        ];
        keys.sort_unstable();
        let trie = Trie::from_keys(&keys).unwrap();
        for text in [
            "世界中の統計世論調査",
            "",
            "統計調",
            "ab世界",
            "世界世界中中の",
        ] {
            let chars: Vec<char> = text.chars().collect();
            let mut expected = vec![];
            for i in 0..chars.len() {
                for (value, len) in trie.common_prefix_search(chars[i..].iter().copied()) {
                    expected.push(Match {
                        start: i as u32,
                        value,
                        len: len as u32,
                    });
                }
            }
            let mut got = vec![];
            trie.common_prefix_search_all(&chars, &mut SearchScratch::default(), &mut got);
            assert_eq!(got, expected, "{text}");
        }
    }
}
