//! Morphological analysis with vibrato: turns the normalised text into tokens with the few IPADIC
//! part-of-speech facts the name and address rules need.

use std::sync::Mutex;

use vibrato::tokenizer::worker::Worker;

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

    /// Parses the leading fields of an IPADIC feature string with prefix checks (this runs for every
    /// token, so it avoids splitting the whole string).
    fn parse(feature: &str, unknown: bool) -> Pos {
        let Some(rest) = feature.strip_prefix("名詞,") else {
            return Pos {
                unknown,
                ..Pos::default()
            };
        };
        let proper_rest = rest.strip_prefix("固有名詞,");
        let proper = proper_rest.is_some();
        let pr = proper_rest.unwrap_or("");
        let person = pr.strip_prefix("人名,");
        Pos {
            noun: true,
            proper,
            surname: person.is_some_and(|p| p.starts_with("姓")),
            given: person.is_some_and(|p| p.starts_with("名")),
            person: person.is_some_and(|p| p.starts_with("一般")),
            place: pr.starts_with("地域"),
            org: pr.starts_with("組織"),
            number: rest.starts_with("数,"),
            common: !unknown
                && ["一般,", "サ変接続,", "形容動詞語幹,", "ナイ形容詞語幹,"]
                    .iter()
                    .any(|c| rest.starts_with(c)),
            unknown,
            suffix: rest.starts_with("接尾,"),
        }
    }
}

/// Reusable analyser workers (each holds its lattice buffers), so a call does not reallocate them.
pub(crate) struct WorkerPool {
    tokenizer: &'static vibrato::Tokenizer,
    idle: Mutex<Vec<Worker<'static>>>,
}

impl WorkerPool {
    /// Most idle workers kept; more are created under load and dropped afterwards.
    const KEEP: usize = 64;

    pub fn new(dict: &Dictionary) -> WorkerPool {
        WorkerPool {
            tokenizer: dict.tokenizer,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn take(&self) -> Worker<'static> {
        let pooled = self.idle.lock().ok().and_then(|mut v| v.pop());
        pooled.unwrap_or_else(|| self.tokenizer.new_worker())
    }

    fn give_back(&self, worker: Worker<'static>) {
        if let Ok(mut v) = self.idle.lock()
            && v.len() < Self::KEEP
        {
            v.push(worker);
        }
    }
}

/// Tokenises the whole normalised text, line by line, returning tokens in order. Lines without any
/// kanji or kana are skipped: no Japanese name or address can be in them.
pub(crate) fn tokenize(pool: &WorkerPool, text: &Text) -> Vec<Tok> {
    let mut worker = pool.take();
    let mut toks = Vec::with_capacity(text.len() / 2 + 1);
    let mut seg_start = 0;
    while seg_start < text.len() {
        let seg_end = segment_end(text, seg_start);
        if !text.chars[seg_start..seg_end]
            .iter()
            .any(|&c| c as u32 >= 0x3000)
        {
            seg_start = seg_end;
            continue;
        }
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
    pool.give_back(worker);
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
