//! BIRTH_DATE: dates (和暦 明治/大正/昭和/平成/令和 and their letters M/T/S/H/R, 西暦 in 年月日 or
//! slash/dot/hyphen form) that are dates of birth: followed by 生/生まれ, preceded by 生年月日/DOB, right
//! after a found name (`上田 智子 様　昭和55年4月12日`), or full dates in the 明治/大正/昭和 eras. Visit,
//! test and surgery dates are not birth dates.

use std::sync::LazyLock;

use regex::Regex;

use crate::entity::{EntityType, Span};
use crate::text::Text;

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|e| panic!("invalid built-in pattern {pattern}: {e}"))
}

static DATE: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?:明治|大正|昭和|平成|令和) ?(?:元|[0-9]{1,2}) ?年 ?[0-9]{1,2} ?月 ?[0-9]{1,2} ?日",
        r"|(?:明治|大正|昭和|平成|令和) ?(?:元|[0-9]{1,2})[./][0-9]{1,2}[./][0-9]{1,2}",
        r"|[MTSHR]\.? ?[0-9]{1,2}[./][0-9]{1,2}[./][0-9]{1,2}",
        r"|[0-9]{1,2}/[0-9]{1,2}/(?:18|19|20)[0-9]{2}",
        r"|(?:18|19|20)[0-9]{2} ?(?:年 ?[0-9]{1,2} ?月 ?[0-9]{1,2} ?日|/[0-9]{1,2}/[0-9]{1,2}|\.[0-9]{1,2}\.[0-9]{1,2}|-[0-9]{1,2}-[0-9]{1,2})",
        // Partial dates: a birth year (and month) needs 生 after it, a month and day a label before it.
        r"|(?:明治|大正|昭和|平成|令和) ?(?:元|[0-9]{1,2}) ?年(?: ?[0-9]{1,2} ?月)?",
        r"|(?:18|19|20)[0-9]{2} ?年(?: ?[0-9]{1,2} ?月)?",
        r"|[0-9]{1,2} ?月 ?[0-9]{1,2} ?日",
    ))
});
static AFTER_BIRTH: LazyLock<Regex> = LazyLock::new(|| re(r"^ ?(?:生|誕生|出生)"));
static BEFORE_BIRTH: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)(?:生年月日|誕生日|生まれ|DOB|D\.O\.B\.?|date of birth|birth ?date|born)[ :]*(?:\([^)]*\))?[ :]*$",
    )
});
static AFTER_EVENT: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^ ?(?:に|の|から|より|まで|頃|ごろ)?(?:初診|受診|再診|再来|外来|入院|退院|手術|来院|来所|往診|訪問|面談|紹介|検診|健診|接種|採血|検査|施行|撮影|開始|終了|予約|死亡|発症|診断|転院|投与|処方|更新|提出|申請|記載|作成|交付|発行|以降|現在)",
    )
});
/// What may stand between a name and its birth date (honorific, reading in brackets, separators).
static NAME_GAP: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^ *(?:様|さん|氏|殿|くん|ちゃん)? *(?:\([^)]{0,16}\))? *[,、]? *(?:生年月日)?[ :]*$")
});

/// Finds birth dates; `persons` are the PERSON spans already found (for the name-adjacency rule).
pub(crate) fn find(text: &Text, persons: &[Span], out: &mut Vec<Span>) {
    for m in DATE.find_iter(&text.norm) {
        let (s, e) = (text.char_idx(m.start()), text.char_idx(m.end()));
        if text.before(s).is_some_and(|c| c.is_ascii_alphanumeric())
            || text.at(e).is_some_and(|c| c.is_ascii_digit())
        {
            continue;
        }
        let after = &text.norm[m.end()..];
        let before = &text.norm[text.byte_idx(s.saturating_sub(24))..m.start()];
        if AFTER_EVENT.is_match(after) {
            continue;
        }
        let full = m.as_str().ends_with('日') && m.as_str().contains('年')
            || m.as_str().matches(['/', '.', '-']).count() == 2;
        if !full {
            let year_part = m.as_str().contains('年');
            let birth = if year_part {
                AFTER_BIRTH.is_match(after)
            } else {
                BEFORE_BIRTH.is_match(before)
            };
            if birth {
                out.push(Span::new(EntityType::BirthDate, s, e));
            }
            continue;
        }
        // A full 明治/大正/昭和 date standing alone is a birth date in today's records; one followed by a
        // word (`昭和60年4月1日 胃切除術`) is an event.
        let next_word = after.trim_start().chars().next().is_some_and(|c| {
            crate::text::is_kanji(c) || crate::text::is_hiragana(c) || crate::text::is_katakana(c)
        });
        let old_era = m.as_str().starts_with(['明', '大', '昭', 'M', 'T', 'S']) && !next_word;
        let after_name = persons
            .iter()
            .any(|p| p.end <= s && s - p.end <= 24 && NAME_GAP.is_match(text.slice(p.end, s)));
        if AFTER_BIRTH.is_match(after) || BEFORE_BIRTH.is_match(before) || after_name || old_era {
            out.push(Span::new(EntityType::BirthDate, s, e));
        }
    }
}
