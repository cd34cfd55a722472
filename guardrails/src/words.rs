//! Word-level helpers shared by the name and address rules: the script of a character and the
//! name-like word that ends before (or starts at) a position, judged from the analyser's tokens.

use crate::dict::Dictionary;
use crate::morph::Tok;
use crate::text::{Text, is_hiragana, is_kanji, is_katakana};

/// The writing system of a character, as far as names care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Script {
    Kanji,
    Hiragana,
    Katakana,
    Latin,
    Other,
}

/// The script of `c`.
pub(crate) fn script(c: char) -> Script {
    if is_kanji(c) {
        Script::Kanji
    } else if is_hiragana(c) {
        Script::Hiragana
    } else if is_katakana(c) {
        Script::Katakana
    } else if c.is_ascii_alphabetic() {
        Script::Latin
    } else {
        Script::Other
    }
}

/// A candidate name word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Word {
    pub start: usize,
    pub end: usize,
    pub script: Script,
    /// The word is a family name in the lexicon (whatever the analyser chose here).
    pub surname: bool,
    /// The word is a given name in the lexicon, tagged 人名,名 / 人名,一般, or not in the lexicon.
    pub given_like: bool,
    /// The word is a listed name or some token of it is tagged 人名.
    pub name_tagged: bool,
    /// Some token of the word is tagged 人名 by the analyser in this context.
    pub analyser_tagged: bool,
}

/// Tokens plus text, with lookups by position.
pub(crate) struct Words<'a> {
    pub text: &'a Text,
    pub toks: &'a [Tok],
    pub dict: &'a Dictionary,
}

/// How strictly a word must look like a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strictness {
    /// The first (or only) word of a name: kanji tokens must be names, proper nouns or unknown words.
    Strict,
    /// The second word after a surname and a space: any noun that is not a medical/department word.
    Lenient,
}

/// Endings that make a word an institution, department or disease rather than a name.
const NOT_NAME_ENDINGS: &[char] = &[
    '科', '院', '棟', '病', '症', '室', '課', '局', '剤', '薬', '錠', '液',
];

impl<'a> Words<'a> {
    /// Index of the token starting at `pos`.
    pub fn tok_starting(&self, pos: usize) -> Option<usize> {
        self.toks.binary_search_by_key(&pos, |t| t.start).ok()
    }

    /// Index of the token ending at `pos`.
    pub fn tok_ending(&self, pos: usize) -> Option<usize> {
        self.toks.binary_search_by_key(&pos, |t| t.end).ok()
    }

    fn tok_script(&self, t: &Tok) -> Option<Script> {
        let first = script(self.text.at(t.start)?);
        (t.start..t.end)
            .all(|i| self.text.at(i).is_some_and(|c| script(c) == first))
            .then_some(first)
    }

    /// Whether a token may be merged into a neighbouring name token: nouns and unknown words, not
    /// suffixes (さん, 様) or particles.
    fn continues_word(&self, t: &Tok) -> bool {
        (t.pos.noun || t.pos.unknown) && !t.pos.suffix
    }

    fn surface(&self, t: &Tok) -> &str {
        self.text.slice(t.start, t.end)
    }

    fn in_name_lists(&self, s: &str) -> bool {
        self.dict.surnames.contains(s) || self.dict.given_names.contains(s)
    }

    fn accepts(&self, t: &Tok, strict: Strictness) -> bool {
        match strict {
            Strictness::Strict => {
                t.pos.name_like()
                    || t.pos.proper
                    || t.pos.unknown
                    || self.in_name_lists(self.surface(t))
            }
            Strictness::Lenient => t.pos.noun || t.pos.unknown,
        }
    }

    /// The name-like word that ends at `end`, walking tokens backwards. `strict` applies to the token
    /// at `end`; tokens merged into it must always look like names.
    pub fn word_before(&self, end: usize, strict: Strictness) -> Option<Word> {
        let last = self.tok_ending(end)?;
        let sc = self.tok_script(&self.toks[last])?;
        let mut first = last;
        let limit = if sc == Script::Kanji { 4 } else { 8 };
        while first > 0 {
            let prev = &self.toks[first - 1];
            if prev.end != self.toks[first].start
                || self.tok_script(prev) != Some(sc)
                || end - prev.start > limit
                || !(sc != Script::Kanji || self.accepts(prev, Strictness::Strict))
                || !self.continues_word(prev)
            {
                break;
            }
            first -= 1;
        }
        self.make_word(first, last, sc, strict)
    }

    /// A run of 2–5 kana of one script ending at `end` and starting after a non-letter — a family name
    /// written in kana (`おがわ りん`), which the analyser often splits into particles.
    pub fn kana_run_before(&self, end: usize) -> Option<Word> {
        let sc = script(self.text.before(end)?);
        if !matches!(sc, Script::Hiragana | Script::Katakana) {
            return None;
        }
        let mut start = end;
        while start > 0
            && self.text.before(start).is_some_and(|c| script(c) == sc)
            && end - start < 6
        {
            start -= 1;
        }
        let boundary = self
            .text
            .before(start)
            .is_none_or(|c| script(c) == Script::Other || c == '・');
        (boundary && (2..=5).contains(&(end - start))).then_some(Word {
            start,
            end,
            script: sc,
            surname: false,
            given_like: false,
            name_tagged: false,
            analyser_tagged: false,
        })
    }

    /// The name-like word that starts at `start`, walking tokens forwards (same rule as
    /// [`Words::word_before`]).
    pub fn word_after(&self, start: usize, strict: Strictness) -> Option<Word> {
        let first = self.tok_starting(start)?;
        let sc = self.tok_script(&self.toks[first])?;
        let limit = if sc == Script::Kanji { 4 } else { 8 };
        let mut last = first;
        while last + 1 < self.toks.len() {
            let next = &self.toks[last + 1];
            if next.start != self.toks[last].end
                || self.tok_script(next) != Some(sc)
                || next.end - start > limit
                || !(sc != Script::Kanji || self.accepts(next, Strictness::Strict))
                || !self.continues_word(next)
            {
                break;
            }
            last += 1;
        }
        self.make_word(first, last, sc, strict)
    }

    fn make_word(&self, first: usize, last: usize, sc: Script, strict: Strictness) -> Option<Word> {
        let toks = &self.toks[first..=last];
        let (start, end) = (toks[0].start, toks[toks.len() - 1].end);
        let ok = match sc {
            Script::Kanji => toks.iter().all(|t| self.accepts(t, strict)),
            Script::Hiragana | Script::Katakana => {
                let len = end - start;
                let single_common =
                    toks.len() == 1 && toks[0].pos.common && !toks[0].pos.name_like();
                (2..=8).contains(&len)
                    && self.continues_word(&toks[0])
                    && (strict == Strictness::Lenient || !single_common)
            }
            Script::Latin => self.text.at(start).is_some_and(|c| c.is_ascii_uppercase()),
            Script::Other => false,
        };
        let ends_badly = self
            .text
            .at(end - 1)
            .is_some_and(|c| NOT_NAME_ENDINGS.contains(&c));
        let surface = self.text.slice(start, end);
        let listed_surname = self.dict.surnames.contains(surface);
        let listed_given = self.dict.given_names.contains(surface);
        (ok && !ends_badly).then(|| Word {
            start,
            end,
            script: sc,
            surname: listed_surname || toks.iter().any(|t| t.pos.surname),
            given_like: listed_given
                || toks
                    .iter()
                    .any(|t| t.pos.given || t.pos.person || t.pos.unknown),
            name_tagged: listed_surname || listed_given || toks.iter().any(|t| t.pos.name_like()),
            analyser_tagged: toks.iter().any(|t| t.pos.name_like()),
        })
    }
}
