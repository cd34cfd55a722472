//! ADDRESS: a street-level address. The analyser finds the locality (a run of place-name tokens —
//! 都道府県, 市区町村, 町名 — starting at a 地域-tagged token or after a 住所 label); a rule then requires
//! the house number right after it (丁目/番地/番/号 or hyphenated digits) and takes an optional building
//! and room. A bare prefecture or city without a number is not an address.

use std::sync::LazyLock;

use regex::Regex;

use crate::entity::{EntityType, Span};
use crate::words::{Script, Words, script};

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|e| panic!("invalid built-in pattern {pattern}: {e}"))
}

static HOUSE_NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^[0-9一二三四五六七八九十]+(?:(?:丁目|番地の|番地|番|号|条[東西南北]?|線[東西南北]?|-|の)[0-9]+){0,6}(?:丁目|番地|番|号)?",
    )
});
static BUILDING: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^ ?([\p{Han}\p{Katakana}A-Za-zー・]{1,20}?)((?:[0-9]+(?:号棟|号館|棟)?[0-9]*(?:号室|F|階|号)?)?)(?:[^\p{Han}\p{Katakana}A-Za-zー・0-9]|$)",
    )
});
static LABEL: LazyLock<Regex> = LazyLock::new(|| re(r"(?:住所|現住所|居住地|送付先|所在地)[ :]*"));
/// Endings of a building name (besides any katakana in it).
const BUILDING_WORDS: &[&str] = &[
    "荘",
    "棟",
    "寮",
    "住宅",
    "団地",
    "館",
    "苑",
    "ビル",
    "コーポ",
    "タワー",
    "ヒルズ",
    "ハイツ",
    "マンション",
    "レジデンス",
    "ハウス",
    "アパート",
    "コート",
    "パレス",
];
/// Longest locality considered (prefecture + city + ward + town).
const MAX_LOCALITY: usize = 24;

/// Finds addresses.
pub(crate) fn find(w: &Words<'_>, out: &mut Vec<Span>) {
    let mut next_free = 0;
    for (i, t) in w.toks.iter().enumerate() {
        if t.start < next_free || !t.pos.place {
            continue;
        }
        if let Some(end) = address_from(w, i) {
            out.push(Span::new(EntityType::Address, t.start, end));
            next_free = end;
        }
    }
    for m in LABEL.find_iter(&w.text.norm) {
        let p = w.text.char_idx(m.end());
        if p < next_free {
            continue;
        }
        if let Some(i) = w.tok_starting(p)
            && let Some(end) = address_from(w, i)
        {
            out.push(Span::new(EntityType::Address, p, end));
        }
    }
}

/// The end of the address whose locality starts at token `first`, if a house number follows it.
fn address_from(w: &Words<'_>, first: usize) -> Option<usize> {
    let start = w.toks[first].start;
    let mut end = w.toks[first].end;
    let mut i = first + 1;
    while let Some(t) = w.toks.get(i) {
        let letters = (t.start..t.end).all(|p| {
            w.text.at(p).is_some_and(|c| {
                matches!(
                    script(c),
                    Script::Kanji | Script::Katakana | Script::Hiragana
                )
            })
        });
        let joiner = matches!(w.text.slice(t.start, t.end), "の" | "ケ" | "ヶ" | "が")
            && w.toks
                .get(i + 1)
                .is_some_and(|n| n.pos.noun && !n.pos.number && n.start == t.end);
        if t.start != end
            || !letters
            || t.end - start > MAX_LOCALITY
            || !(t.pos.noun && !t.pos.number || joiner)
        {
            break;
        }
        end = t.end;
        i += 1;
    }
    let rest = &w.text.norm[w.text.byte_idx(end)..];
    let number = HOUSE_NUMBER.find(rest)?;
    let num_str = number.as_str().trim_end_matches(['-', 'の']);
    if !num_str
        .chars()
        .any(|c| c.is_ascii_digit() || "一二三四五六七八九十".contains(c))
    {
        return None;
    }
    let mut stop = end + num_str.chars().count();
    // A bare number right after a town name is only a house number when it has the shape of one.
    let shaped = num_str.contains(['-', '丁', '番', '号', '条', '線']);
    // A bare number (`聖護院川原町54`) only after a town-level locality and when nothing but a space,
    // punctuation or the end follows it (`東京都3名`, `大阪府内3施設` are counts, not addresses).
    let bare_ok = !shaped
        && (end - start) >= 4
        && num_str.len() <= 4
        && w.text
            .at(stop)
            .is_none_or(|c| c.is_whitespace() || matches!(c, '、' | '。' | ',' | '.' | '(' | ')'));
    if !shaped && !bare_ok {
        return None;
    }
    let rest = &w.text.norm[w.text.byte_idx(stop)..];
    if let Some(c) = BUILDING.captures(rest) {
        let name = c.get(1).map_or("", |g| g.as_str());
        let has_number = c.get(2).is_some_and(|g| !g.as_str().is_empty());
        let building_word = BUILDING_WORDS.iter().any(|b| name.ends_with(b));
        let is_building = has_number && name.chars().any(crate::text::is_katakana) || building_word;
        if is_building {
            // Up to the end of the room number (or of the name); the terminator is not included.
            let last = c.get(2).filter(|g| !g.as_str().is_empty()).or(c.get(1));
            stop += last.map_or(0, |g| rest[..g.end()].chars().count());
        }
    }
    Some(stop)
}
