//! Morphological analysis with vibrato: turns the normalised text into tokens with the few IPADIC
//! part-of-speech facts the name and address rules need.

use crate::dict::Dictionary;
use crate::text::Text;

/// Longest piece handed to the analyser at once; longer lines are cut (at a space or punctuation when
/// possible) so memory stays linear on huge inputs.
const MAX_SEGMENT: usize = 512;

/// One token: code-point range plus part-of-speech facts from its IPADIC feature string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tok {
    pub start: usize,
    pub end: usize,
    pub pos: Pos,
}

/// The part-of-speech facts the rules use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Pos {
    /// 名詞 (any noun).
    pub noun: bool,
    /// 名詞,固有名詞 (any proper noun).
    pub proper: bool,
    /// 名詞,固有名詞,人名,姓.
    pub surname: bool,
    /// 名詞,固有名詞,人名,名.
    pub given: bool,
    /// 名詞,固有名詞,人名,一般 (a name of unknown part).
    pub person: bool,
    /// 名詞,固有名詞,地域 (a place).
    pub place: bool,
    /// 名詞,固有名詞,組織 (an organisation).
    pub org: bool,
    /// 名詞,数 (a number).
    pub number: bool,
    /// 名詞,一般 / サ変接続 / 形容動詞語幹 etc. from the system lexicon: a common word.
    pub common: bool,
    /// Not in the lexicon (vibrato's unknown-word handler produced it).
    pub unknown: bool,
    /// 名詞,接尾 (a suffix such as さん, 様, 市, 病).
    pub suffix: bool,
}

impl Pos {
    /// Whether the token is tagged as any kind of person name.
    pub fn name_like(&self) -> bool {
        self.surname || self.given || self.person
    }

    fn parse(feature: &str, unknown: bool) -> Pos {
        let mut f = feature.split(',');
        let (p0, p1, p2, p3) = (f.next(), f.next(), f.next(), f.next());
        let noun = p0 == Some("名詞");
        let proper = noun && p1 == Some("固有名詞");
        Pos {
            noun,
            proper,
            surname: proper && p2 == Some("人名") && p3 == Some("姓"),
            given: proper && p2 == Some("人名") && p3 == Some("名"),
            person: proper && p2 == Some("人名") && p3 == Some("一般"),
            place: proper && p2 == Some("地域"),
            org: proper && p2 == Some("組織"),
            number: noun && p1 == Some("数"),
            common: noun
                && !unknown
                && matches!(
                    p1,
                    Some("一般" | "サ変接続" | "形容動詞語幹" | "ナイ形容詞語幹")
                ),
            unknown,
            suffix: noun && p1 == Some("接尾"),
        }
    }
}

/// Tokenises the whole normalised text, line by line, returning tokens in order.
pub(crate) fn tokenize(dict: &Dictionary, text: &Text) -> Vec<Tok> {
    let mut worker = dict.tokenizer.new_worker();
    let mut toks = Vec::with_capacity(text.len() / 2 + 1);
    let mut seg_start = 0;
    while seg_start < text.len() {
        let seg_end = segment_end(text, seg_start);
        worker.reset_sentence(text.slice(seg_start, seg_end));
        worker.tokenize();
        for t in worker.token_iter() {
            let r = t.range_char();
            let unknown = t.lex_type() == vibrato::dictionary::LexType::Unknown;
            toks.push(Tok {
                start: seg_start + r.start,
                end: seg_start + r.end,
                pos: Pos::parse(t.feature(), unknown),
            });
        }
        seg_start = seg_end;
    }
    toks
}

/// End of the segment starting at `start`: after the next newline, or a cut near `MAX_SEGMENT`.
fn segment_end(text: &Text, start: usize) -> usize {
    let limit = (start + MAX_SEGMENT).min(text.len());
    if let Some(nl) = (start..limit).find(|&i| text.chars[i] == '\n') {
        return nl + 1;
    }
    if limit == text.len() {
        return limit;
    }
    (start + MAX_SEGMENT / 2..limit)
        .rev()
        .find(|&i| matches!(text.chars[i], ' ' | '。' | '、' | ',' | '.'))
        .map_or(limit, |i| i + 1)
}
