//! Anshin's addition (see `third_party/README.md`): the lattice's edges for every start position,
//! gathered before the Viterbi pass instead of during it.
//!
//! Vibrato looks a sentence up one position at a time, and when the dictionary has fallen out of the
//! caches every lookup waits on memory in turn. Gathering all positions' words first lets those
//! lookups overlap (see `Lexicon::matches_all`). The lattice built from the gathered edges is the
//! same, edge for edge and in the same order.

use crate::dictionary::lexicon::{LexMatch, LexScratch, WordParam};
use crate::dictionary::word_idx::WordIdx;
use crate::sentence::Sentence;
use crate::tokenizer::Tokenizer;

/// One edge of the lattice: a word from its start position (kept by [`Edges`]) to `end`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Edge {
    pub end: usize,
    pub word_idx: WordIdx,
    pub param: WordParam,
}

/// Every start position's edges: user-lexicon words, system-lexicon words, then unknown words, in the
/// order [`Tokenizer`]'s per-position lookup produces them.
#[derive(Default)]
pub(crate) struct Edges {
    edges: Vec<Edge>,
    /// `edges[offsets[p]..offsets[p + 1]]` start at position `p`.
    offsets: Vec<usize>,
    system: Vec<(u32, LexMatch)>,
    scratch: LexScratch,
}

impl Edges {
    /// The edges that start at `start`.
    pub fn at(&self, start: usize) -> &[Edge] {
        match (self.offsets.get(start), self.offsets.get(start + 1)) {
            (Some(&a), Some(&b)) => &self.edges[a..b],
            _ => &[],
        }
    }

    /// Gathers every position's edges of `sent`.
    pub fn gather(&mut self, tokenizer: &Tokenizer, sent: &Sentence) {
        let dict = tokenizer.dictionary();
        let chars = sent.chars();
        let Edges {
            edges,
            offsets,
            system,
            scratch,
        } = self;
        edges.clear();
        offsets.clear();
        system.clear();
        dict.system_lexicon().matches_all(chars, scratch, system);
        let mut system = system.iter().peekable();
        let word = |start: usize, m: &LexMatch| Edge {
            end: start + m.end_char,
            word_idx: m.word_idx,
            param: m.word_param,
        };
        for start in 0..sent.len_char() {
            offsets.push(edges.len());
            let mut has_matched = false;
            if let Some(user) = dict.user_lexicon() {
                for m in user.common_prefix_iterator(&chars[start..]) {
                    edges.push(word(start, &m));
                    has_matched = true;
                }
            }
            while let Some((_, m)) = system.next_if(|(s, _)| *s as usize == start) {
                edges.push(word(start, m));
                has_matched = true;
            }
            dict.unk_handler().gen_unk_words(
                sent,
                start,
                has_matched,
                tokenizer.max_grouping_len,
                |w| {
                    debug_assert_eq!(w.start_char(), start);
                    edges.push(Edge {
                        end: w.end_char(),
                        word_idx: w.word_idx(),
                        param: w.word_param(),
                    })
                },
            );
        }
        offsets.push(edges.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::dictionary::SystemDictionaryBuilder;

    const LEX_CSV: &str = include_str!("../tests/resources/lex.csv");
    const USER_CSV: &str = include_str!("../tests/resources/user.csv");
    const MATRIX_DEF: &str = include_str!("../tests/resources/matrix.def");
    const CHAR_DEF: &str = include_str!("../tests/resources/char.def");
    const UNK_DEF: &str = include_str!("../tests/resources/unk.def");

    /// Vibrato's own per-position lookup (its `add_lattice_edges` before this change), as
    /// `(start, end, word_idx, param)`.
    fn per_position(
        tokenizer: &Tokenizer,
        sent: &Sentence,
    ) -> Vec<(usize, usize, WordIdx, WordParam)> {
        let dict = tokenizer.dictionary();
        let mut out = vec![];
        for start in 0..sent.len_char() {
            let suffix = &sent.chars()[start..];
            let mut has_matched = false;
            let lexicons = dict
                .user_lexicon()
                .into_iter()
                .chain([dict.system_lexicon()]);
            for lexicon in lexicons {
                for m in lexicon.common_prefix_iterator(suffix) {
                    out.push((start, start + m.end_char, m.word_idx, m.word_param));
                    has_matched = true;
                }
            }
            dict.unk_handler().gen_unk_words(
                sent,
                start,
                has_matched,
                tokenizer.max_grouping_len,
                |w| out.push((start, w.end_char(), w.word_idx(), w.word_param())),
            );
        }
        out
    }

    fn gathered(tokenizer: &Tokenizer, sent: &Sentence) -> Vec<(usize, usize, WordIdx, WordParam)> {
        let mut edges = Edges::default();
        edges.gather(tokenizer, sent);
        (0..sent.len_char())
            .flat_map(|s| {
                edges
                    .at(s)
                    .iter()
                    .map(move |e| (s, e.end, e.word_idx, e.param))
            })
            .collect()
    }

    #[test]
    fn gathered_edges_equal_the_per_position_lookup() {
        for user in [false, true] {
            let dict = SystemDictionaryBuilder::from_readers(
                LEX_CSV.as_bytes(),
                MATRIX_DEF.as_bytes(),
                CHAR_DEF.as_bytes(),
                UNK_DEF.as_bytes(),
            )
            .unwrap();
            let dict = if user {
                dict.reset_user_lexicon_from_reader(Some(USER_CSV.as_bytes()))
                    .unwrap()
            } else {
                dict
            };
            for grouping in [0, 2] {
                let tokenizer = Tokenizer::new(dict_clone(&dict)).max_grouping_len(grouping);
                for text in [
                    "京都東京都京都",
                    "東京都に行った。ＡＢＣ abc 123 ｱｲｳ",
                    "自然言語処理を勉強する京都大学の学生",
                    "x",
                    "　 東京",
                ] {
                    let mut sent = Sentence::new();
                    sent.set_sentence(text);
                    sent.compile(tokenizer.dictionary().char_prop());
                    let expected = per_position(&tokenizer, &sent);
                    assert!(!expected.is_empty());
                    assert_eq!(gathered(&tokenizer, &sent), expected, "{text}");
                }
            }
        }
    }

    fn dict_clone(dict: &crate::Dictionary) -> crate::Dictionary {
        let mut buf = vec![];
        dict.write(&mut buf).unwrap();
        crate::Dictionary::read(&buf[..]).unwrap()
    }
}
