//! PERSON: names found from the analyser's 人名 tags plus context — honorifics after a name
//! (さん/様/氏/先生/くん/ちゃん/殿/Dr), role or family labels before it (患者, 主治医, 看護師, 父, 次女, …),
//! a family name followed by a given name, self-introductions (〜です), romaji names from the
//! dictionary's name readings, and kana or kanji readings in brackets after a found name.
//!
//! Medical eponyms survive because a name directly followed by 病/症/式/病院/内科… is dropped.

use std::sync::LazyLock;

use regex::Regex;

use crate::dict::Dictionary;
use crate::entity::{EntityType, Span};
use crate::words::{Script, Strictness, Word, Words, script};

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|e| panic!("invalid built-in pattern {pattern}: {e}"))
}

static HONORIFIC: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"さん|様|さま|氏|先生|くん|ちゃん|殿|Dr|Ns|医師|看護師|薬剤師|技師|准教授|教授|院長|部長|科長|師長|主任",
    )
});
static LABEL: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?:患者|氏名|お名前|名前|主治医|担当医|担当看護師|担当者|担当|看護師|説明医師|医師|院長|宛先|申請児|申請者|保護者|本人|祖父|祖母|父|母|夫|妻|長男|長女|次男|次女|三男|三女|兄|姉|弟|妹|息子|娘|キーパーソン|リーダー|記載者|記録者|報告者|連絡者|依頼者|新患|立会|執刀医|紹介医|依頼医|薬剤師|検査技師|技師|代理人|ケアマネジャー|ケアマネ|フリガナ|ふりがな|氏名カナ|カナ氏名|MSW|CM|PT|OT|ST|Dr\.|Ns\.|Dr|Ns)(?:の)?[ :]*",
    )
});
static SELF_INTRO: LazyLock<Regex> = LazyLock::new(|| re(r"です|と申します|といいます"));
static ROMAJI_PAIR: LazyLock<Regex> = LazyLock::new(|| re(r"[A-Z][A-Za-z]+ [A-Z][A-Za-z]+"));
static ENGLISH_CONTEXT: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?:I'm|I am|[Mm]y name is|[Pp]atient:?|[Pp]t\.?|[Nn]ame:|Mrs?\.?|Ms\.?|Dr\.|[Dd]aughter|[Ss]on|[Ww]ife|[Hh]usband|[Mm]other|[Ff]ather) +([A-Z][A-Za-z]+(?: [A-Z][A-Za-z]+)?)",
    )
});
/// What directly follows an eponym rather than a person's name.
const EPONYM_TAILS: &[&str] = &[
    "病",
    "症",
    "式",
    "法",
    "反射",
    "徴候",
    "分類",
    "試験",
    "病院",
    "医院",
    "内科",
    "外科",
    "クリニック",
    "記念",
    "大学",
    "線",
    "腺",
    "細胞",
    "管",
    "型",
    "膜",
    "体",
    "スケール",
];

/// Finds person names; `out` receives PERSON spans (possibly overlapping, resolved by the caller).
pub(crate) fn find(w: &Words<'_>, dict: &Dictionary, out: &mut Vec<Span>) {
    let before = out.len();
    by_honorific(w, out);
    by_label(w, out);
    by_family_then_given(w, out);
    by_self_introduction(w, out);
    by_romaji(w, dict, out);
    out.retain(|s| s.kind != EntityType::Person || !eponym(w, s.end));
    let found: Vec<Span> = out[before..].to_vec();
    for s in found {
        reading_after(w, s.end, out);
    }
}

fn push(out: &mut Vec<Span>, start: usize, end: usize) {
    if end > start {
        out.push(Span::new(EntityType::Person, start, end));
    }
}

fn eponym(w: &Words<'_>, end: usize) -> bool {
    let rest = &w.text.norm[w.text.byte_idx(end)..];
    EPONYM_TAILS.iter().any(|t| rest.starts_with(t))
}

/// Whether `w0 ␣ w1` reads as family name + given name.
fn pairs(w0: &Word, w1: &Word) -> bool {
    match (w0.script, w1.script) {
        (Script::Kanji, Script::Kanji) => w0.surname || (w0.name_tagged && w1.given_like),
        (Script::Kanji, Script::Hiragana | Script::Katakana) => w0.name_tagged,
        (Script::Hiragana, Script::Hiragana) | (Script::Katakana, Script::Katakana) => true,
        _ => false,
    }
}

/// Extends a name word backwards over `family ␣` when the pair reads as a full name.
fn with_family(w: &Words<'_>, w1: &Word) -> usize {
    if w1.start >= 2 && w.text.at(w1.start - 1) == Some(' ') {
        let sep = w1.start - 1;
        if let Some(w0) = w.word_before(sep, Strictness::Strict)
            && pairs(&w0, w1)
        {
            return w0.start;
        }
        if let Some(w0) = w.kana_run_before(sep).filter(|w0| w0.script == w1.script) {
            return w0.start;
        }
    }
    // Foreign names in katakana: ジョン・スミス.
    if w1.script == Script::Katakana
        && w1.start >= 2
        && w.text.at(w1.start - 1) == Some('・')
        && let Some(w0) = w
            .kana_run_before(w1.start - 1)
            .filter(|w0| w0.script == Script::Katakana)
    {
        return w0.start;
    }
    w1.start
}

/// A single word standing alone must be tagged as a name, unknown to the lexicon, or kana.
fn alone_ok(word: &Word) -> bool {
    word.name_tagged
        || word.given_like
        || matches!(word.script, Script::Hiragana | Script::Katakana)
}

/// Whether the honorific at `h` stands on its own: a token starts there, or the analyser only broke
/// a kana name before it into particles (`ゆいちゃん` → ゆい/ちゃ/ん) rather than reading one noun
/// (`おばあちゃん`).
fn honorific_stands_alone(w: &Words<'_>, h: usize) -> bool {
    if w.tok_starting(h).is_some() {
        return true;
    }
    let containing = w.toks.iter().find(|t| t.start < h && h < t.end);
    containing.is_some_and(|t| !t.pos.noun)
        && w.text.before(h).is_some_and(crate::text::is_hiragana)
}

/// Children's honorifics, after which a 2–3 kanji given name the lexicon does not know still counts.
fn child_honorific(s: &str) -> bool {
    matches!(s, "ちゃん" | "くん")
}

/// Honorifics proper (さん, 様, …) as opposed to job titles (医師, 教授, …), after which only a word
/// the lexicon knows as a name counts (`東京医師会` is no person).
fn is_title(s: &str) -> bool {
    !matches!(
        s,
        "さん" | "様" | "さま" | "氏" | "先生" | "くん" | "ちゃん" | "殿" | "Dr" | "Ns"
    )
}

fn by_honorific(w: &Words<'_>, out: &mut Vec<Span>) {
    for m in HONORIFIC.find_iter(&w.text.norm) {
        let h = w.text.char_idx(m.start());
        if !honorific_stands_alone(w, h)
            || m.as_str().starts_with(['D', 'N'])
                && w.text.at(h + 2).is_some_and(|c| c.is_ascii_alphabetic())
        {
            continue;
        }
        let end = if h > 0 && w.text.at(h - 1) == Some(' ') {
            h - 1
        } else {
            h
        };
        if let Some((s, e)) = name_before_honorific(w, end, m.as_str()) {
            push(out, s, e);
        }
    }
}

/// The name ending at `end`, right before the honorific `hon`.
fn name_before_honorific(w: &Words<'_>, end: usize, hon: &str) -> Option<(usize, usize)> {
    let not_latin = |x: &Word| x.script != Script::Latin;
    if let Some(w1) = w.word_before(end, Strictness::Strict).filter(not_latin) {
        let start = with_family(w, &w1);
        let ok = if is_title(hon) {
            w1.name_tagged
        } else {
            alone_ok(&w1)
        };
        return (start < w1.start || ok).then_some((start, w1.end));
    }
    if let Some(w1) = w.word_before(end, Strictness::Lenient).filter(not_latin) {
        let start = with_family(w, &w1);
        let child_name = child_honorific(hon)
            && w1.script == Script::Kanji
            && (2..=3).contains(&(w1.end - w1.start));
        return (start < w1.start || child_name).then_some((start, w1.end));
    }
    // A kana given name the analyser read as a verb or particles (ゆいちゃん → ゆい/ちゃ/ん).
    if is_title(hon) {
        return None;
    }
    let run = w.kana_run_before(end)?;
    Some((with_family(w, &run), run.end))
}

/// The name after position `p`: a strict first word, optionally `␣` and a second word.
fn name_after(w: &Words<'_>, p: usize) -> Option<(usize, usize)> {
    let w0 = w.word_after(p, Strictness::Strict)?;
    if w.text.at(w0.end) == Some(' ')
        && let Some(w1) = w.word_after(w0.end + 1, Strictness::Lenient)
        && pairs(&w0, &w1)
    {
        return Some((w0.start, w1.end));
    }
    (alone_ok(&w0) && w0.script != Script::Latin).then_some((w0.start, w0.end))
}

fn by_label(w: &Words<'_>, out: &mut Vec<Span>) {
    for m in LABEL.find_iter(&w.text.norm) {
        let (ls, le) = (w.text.char_idx(m.start()), w.text.char_idx(m.end()));
        if w.tok_starting(ls).is_none() {
            continue;
        }
        // Directly after the label (`長男宅`), only a word the analyser itself tags as a name counts.
        // A label glued to the next word (`母趾`, `長男宅`) is part of that word unless the analyser
        // itself reads a name there.
        let separated = m.as_str().ends_with([' ', ':', 'の', '.']);
        if let Some((s, e)) = name_after(w, le) {
            let tagged = w
                .word_after(le, Strictness::Strict)
                .is_some_and(|x| x.analyser_tagged);
            if separated || tagged {
                push(out, s, e);
            }
        }
    }
}

fn by_family_then_given(w: &Words<'_>, out: &mut Vec<Span>) {
    for (i, t) in w.toks.iter().enumerate() {
        // A listed family name the analyser did not tag must start a word (`一時金 直接` is no name).
        let glued = w
            .text
            .before(t.start)
            .is_some_and(|c| script(c) == Script::Kanji);
        if !(t.pos.surname || (!glued && w.dict.surnames.contains(w.text.slice(t.start, t.end)))) {
            continue;
        }
        if let Some(next) = w.toks.get(i + 1)
            && next.start == t.end
            && next.pos.given
            && whole_word(w, i, i + 1)
        {
            push(out, t.start, next.end);
            continue;
        }
        if w.text.at(t.end) == Some(' ') {
            let Some(w0) = w.word_before(t.end, Strictness::Strict) else {
                continue;
            };
            let Some(w1) = w.word_after(t.end + 1, Strictness::Lenient) else {
                continue;
            };
            // A one-kanji family name (森, 林, 左, 中) is also a common word: after it, only a given
            // name the lexicon knows (or kana) makes a person, not any noun (`左 上肢`, `中 等量`).
            let one_kanji = w0.end - w0.start == 1;
            let short_uncommon =
                (2..=3).contains(&(w1.end - w1.start)) && !single_common_word(w, &w1);
            let second_ok = match w1.script {
                Script::Kanji if one_kanji => self_given(w, &w1) || t.pos.surname && short_uncommon,
                Script::Kanji => w1.given_like || w1.name_tagged || short_uncommon,
                Script::Hiragana | Script::Katakana => true,
                _ => false,
            };
            if second_ok && pairs(&w0, &w1) {
                push(out, w0.start, w1.end);
            }
        }
    }
}

/// Whether `word` is exactly one common-noun token of the lexicon (上肢, 等量), i.e. not a name.
fn single_common_word(w: &Words<'_>, word: &Word) -> bool {
    w.tok_starting(word.start)
        .map(|i| &w.toks[i])
        .is_some_and(|t| t.end == word.end && t.pos.common && !t.pos.name_like())
}

/// Whether `word` is a given name in the lexicon or tagged 人名,名 here.
fn self_given(w: &Words<'_>, word: &Word) -> bool {
    w.dict
        .given_names
        .contains(w.text.slice(word.start, word.end))
        || word.given_like && word.name_tagged
}

/// Whether tokens `first..=last` form a whole word: not glued to letters of the same script on either
/// side (`上行結腸`, `コールドスネア` hold 姓+名 readings inside medical words) unless a suffix such as
/// 様/氏 follows, and at least three characters when written in kanji without a space.
fn whole_word(w: &Words<'_>, first: usize, last: usize) -> bool {
    let (start, end) = (w.toks[first].start, w.toks[last].end);
    let Some(sc) = w.text.at(start).map(script) else {
        return false;
    };
    let same = |c: Option<char>| c.is_some_and(|c| script(c) == sc);
    let suffix_next = w
        .toks
        .get(last + 1)
        .is_some_and(|t| t.start == end && t.pos.suffix);
    let long_enough = sc != Script::Kanji || end - start >= 3;
    !same(w.text.before(start)) && (!same(w.text.at(end)) || suffix_next) && long_enough
}

fn by_self_introduction(w: &Words<'_>, out: &mut Vec<Span>) {
    for m in SELF_INTRO.find_iter(&w.text.norm) {
        let p = w.text.char_idx(m.start());
        if let Some(w1) = w
            .word_before(p, Strictness::Strict)
            .filter(|x| x.name_tagged)
        {
            let at_clause_start = w1.start == 0
                || w.text
                    .at(w1.start - 1)
                    .is_some_and(|c| matches!(c, ' ' | '\n' | '。' | '、' | '「' | ':'));
            if at_clause_start {
                push(out, with_family(w, &w1), w1.end);
            }
        }
    }
}

fn by_romaji(w: &Words<'_>, dict: &Dictionary, out: &mut Vec<Span>) {
    let norm = &w.text.norm;
    let ascii_before = |b: usize| {
        norm[..b]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric())
    };
    let mut from = 0;
    while let Some(m) = ROMAJI_PAIR.find_at(norm, from) {
        from = m.start() + 1;
        while !norm.is_char_boundary(from) {
            from += 1;
        }
        if ascii_before(m.start()) {
            continue;
        }
        let (a, b) = m.as_str().split_once(' ').unwrap_or((m.as_str(), ""));
        let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
        let s = &dict.romaji_surnames;
        let g = &dict.romaji_given;
        if (s.contains(&a) && g.contains(&b)) || (g.contains(&a) && s.contains(&b)) {
            push(out, w.text.char_idx(m.start()), w.text.char_idx(m.end()));
            from = m.end();
        }
    }
    for c in ENGLISH_CONTEXT.captures_iter(norm) {
        let (Some(all), Some(g)) = (c.get(0), c.get(1)) else {
            continue;
        };
        // `Patient ID: …` / `Pt MRN …`: a short all-capitals word is an abbreviation, not a name.
        let first = g.as_str().split(' ').next().unwrap_or("");
        let abbreviation = first.len() <= 3 && first.chars().all(|c| c.is_ascii_uppercase());
        if !ascii_before(all.start()) && !abbreviation {
            push(out, w.text.char_idx(g.start()), w.text.char_idx(g.end()));
        }
    }
}

/// A reading in brackets right after a name — `藤田 健（フジタ ケン）`, `Kimura Aiko (木村 愛子)` — is a
/// name too.
fn reading_after(w: &Words<'_>, end: usize, out: &mut Vec<Span>) {
    let mut p = end;
    if w.text.at(p) == Some(' ') {
        p += 1;
    }
    if !matches!(w.text.at(p), Some('(')) {
        return;
    }
    let open = p + 1;
    let Some(close) = (open..(open + 16).min(w.text.len())).find(|&i| w.text.at(i) == Some(')'))
    else {
        return;
    };
    let inner = w.text.slice(open, close);
    let kana = !inner.trim().is_empty()
        && inner
            .chars()
            .all(|c| c == ' ' || crate::text::is_hiragana(c) || crate::text::is_katakana(c));
    if kana {
        push(out, open, close);
    } else if let Some((s, e)) = name_after(w, open).filter(|&(_, e)| e == close) {
        push(out, s, e);
    }
}
