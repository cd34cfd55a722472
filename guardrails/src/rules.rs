//! Structured identifiers found by rules on the normalised text: phone numbers, e-mail addresses,
//! postal codes, My Numbers (check digit or label), insurance numbers and patient/chart/card numbers.
//!
//! Boundaries are explicit ASCII checks (never `\b`/`\w`, which treat kana as word characters).

use std::sync::LazyLock;

use regex::Regex;

use crate::entity::{EntityType, Span};
use crate::mynumber::is_valid_my_number;
use crate::text::Text;

fn re(pattern: &str) -> Regex {
    // Patterns are constants of this module, exercised by its tests.
    Regex::new(pattern).unwrap_or_else(|e| panic!("invalid built-in pattern {pattern}: {e}"))
}

static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?:\+81[ -]?(?:\(0\)[ -]?)?\(?|\(0|0)[0-9]{1,4}(?:\) ?|[ (-])?[0-9]{1,4}(?:\) ?|[ -])?[0-9]{3,4}",
    )
});
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    re(r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63}){1,8}")
});
static POSTAL: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?:〒|郵便番号|郵便|ZIP|Zip|zip)[ :]*([0-9]{3}-?[0-9]{4})"));
static TWELVE: LazyLock<Regex> = LazyLock::new(|| re(r"[0-9]{4}([ -]?)[0-9]{4}[ -]?[0-9]{4}"));
static MY_NUMBER_LABEL: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)個人番号|マイナンバー|my ?number|個人番号カード"));
static INSURER: LazyLock<Regex> =
    LazyLock::new(|| re(r"保険者(?:番号|No\.?)[ :：]*([0-9]{8}|[0-9]{6})"));
static INSURED: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?:被保険者(?:証)?(?:の)?(?:番号|No\.?)|被保険者証[^0-9\n]{0,6}?番号)[ :：]*([0-9]{6,10})")
});
static SYMBOL_AND_NUMBER: LazyLock<Regex> =
    LazyLock::new(|| re(r"記号[・/]?番号[ :：]*([^ 、。,・/\n]{1,10})[・/ ]([0-9A-Za-z\-]{1,12})"));
static SYMBOL: LazyLock<Regex> =
    LazyLock::new(|| re(r"記号[ :：]*([^ 、。,・:\n番]{1,10}?)(?:[ 、,。・\n]|番号|$)"));
/// The two-digit branch number (枝番) of a health-insurance card.
static BRANCH: LazyLock<Regex> = LazyLock::new(|| re(r"枝番[ :：]*([0-9]{1,3})"));
static NUMBER_AFTER_SYMBOL: LazyLock<Regex> = LazyLock::new(|| re(r"番号[ :：]*([0-9]{1,12})"));
static PATIENT: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)(?:患者ID|患者番号|患者No\.?|カルテ番号|カルテNo\.?|カルテID|診察券番号|診察券No\.?|診察券|ID番号|MRN|Patient ID|Chart No\.?|ID)[ :：#]*(?:No\.?[ ]*)?([A-Za-z]{0,3}-?[0-9][0-9\-]*[0-9]|[0-9]{3,})",
    )
});

/// Finds every structured identifier in `text`.
pub(crate) fn find(text: &Text, out: &mut Vec<Span>) {
    find_gated(text, &Gates::of(&text.norm), out);
}

/// Which rules can match at all. A rule runs only when `text` holds something every one of its
/// matches needs (an `@`, enough digits, its label's literal): checking that scans the text, which
/// is in the cache, while even a regex that finds nothing reads its automaton and prefilter, which
/// after a pause between requests are not (`docs/gateway.md`, "Where a cold detection goes").
struct Gates {
    email: bool,
    my_number: bool,
    phone: bool,
    postal: bool,
    insurer: bool,
    branch: bool,
    symbol: bool,
    patient: bool,
}

impl Gates {
    fn of(norm: &str) -> Gates {
        let digits = norm.bytes().filter(u8::is_ascii_digit).count();
        Gates {
            email: norm.contains('@'),
            my_number: digits >= 12,
            // Every phone match starts with `+81`, `(0` or `0`.
            phone: norm.contains('0') || norm.contains("+81"),
            postal: ["〒", "郵便", "ZIP", "Zip", "zip"]
                .iter()
                .any(|l| norm.contains(l)),
            // 被保険者 contains 保険者.
            insurer: norm.contains("保険者"),
            branch: norm.contains("枝番"),
            symbol: norm.contains("記号"),
            patient: digits > 0,
        }
    }
}

fn find_gated(text: &Text, gates: &Gates, out: &mut Vec<Span>) {
    if gates.email {
        find_emails(text, out);
    }
    if gates.my_number {
        find_my_numbers(text, out);
    }
    if gates.phone {
        find_phones(text, out);
    }
    if gates.postal {
        find_postal_codes(text, out);
    }
    find_insurance(text, gates, out);
    if gates.patient {
        find_patient_ids(text, out);
    }
}

/// Whether `c` continues an ASCII number or word (so a match next to it is not whole).
fn glued(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_ascii_alphanumeric())
}

/// Whether the ASCII word right before `start` is TEL/FAX/PHONE/MOBILE (`TEL03-1234-5678`).
fn after_phone_word(text: &Text, start: usize) -> bool {
    let from = (0..start)
        .rev()
        .take(6)
        .take_while(|&i| text.chars[i].is_ascii_alphabetic())
        .last();
    from.is_some_and(|f| {
        let w = text.slice(f, start).to_ascii_lowercase();
        matches!(w.as_str(), "tel" | "fax" | "phone" | "mobile" | "ph")
    })
}

fn isolated_number(text: &Text, start: usize, end: usize) -> bool {
    let before = text.before(start);
    let after = text.at(end);
    let after2 = text.at(end + 1);
    let glued_before = (glued(before) && !after_phone_word(text, start))
        || matches!(before, Some('-' | '.' | '+' | '/'));
    let continues_after = after.is_some_and(|c| c.is_ascii_digit())
        || (matches!(after, Some('-' | '/' | '.')) && after2.is_some_and(|c| c.is_ascii_digit()));
    !(glued_before || continues_after)
}

fn find_emails(text: &Text, out: &mut Vec<Span>) {
    for m in EMAIL.find_iter(&text.norm) {
        let (s, e) = (text.char_idx(m.start()), text.char_idx(m.end()));
        out.push(Span::new(EntityType::Email, s, e));
    }
}

fn find_phones(text: &Text, out: &mut Vec<Span>) {
    let mut from = 0;
    while let Some(m) = PHONE.find_at(&text.norm, from) {
        let (mut s, e) = (text.char_idx(m.start()), text.char_idx(m.end()));
        from = m.start() + m.as_str().chars().next().map_or(1, char::len_utf8);
        // `(03)1234-5678` keeps its bracket; an opening bracket that is never closed is punctuation.
        if m.as_str().starts_with('(')
            && !m.as_str().contains(')')
            && !m.as_str()[1..].contains('(')
        {
            s += 1;
        }
        let digits: String = m.as_str().chars().filter(char::is_ascii_digit).collect();
        let ok_len = if m.as_str().starts_with("+81") {
            let rest = digits.strip_prefix("81").unwrap_or(&digits);
            let rest = rest.strip_prefix('0').unwrap_or(rest);
            (9..=10).contains(&rest.len())
        } else {
            (10..=11).contains(&digits.len())
        };
        if !ok_len || !isolated_number(text, s, e) || extension_context(text, s) {
            continue;
        }
        out.push(Span::new(EntityType::Phone, s, e));
        from = m.end();
    }
}

/// Extensions and PHS numbers (内線 4521) are not phone numbers of a person.
fn extension_context(text: &Text, start: usize) -> bool {
    let from = start.saturating_sub(4);
    let before = text.slice(from, start);
    before.contains("内線") || before.contains("PHS") || before.contains("ext")
}

fn find_postal_codes(text: &Text, out: &mut Vec<Span>) {
    for c in POSTAL.captures_iter(&text.norm) {
        if let Some(g) = c.get(1) {
            let (s, e) = (text.char_idx(g.start()), text.char_idx(g.end()));
            if !text.at(e).is_some_and(|c| c.is_ascii_digit()) {
                out.push(Span::new(EntityType::PostalCode, s, e));
            }
        }
    }
}

static BARE_POSTAL: LazyLock<Regex> = LazyLock::new(|| re(r"[0-9]{3}-[0-9]{4}"));

/// A `NNN-NNNN` code written without 〒 right before a found address is its postal code.
pub(crate) fn postal_before_address(text: &Text, out: &mut Vec<Span>) {
    let starts: Vec<usize> = out
        .iter()
        .filter(|s| s.kind == EntityType::Address)
        .map(|s| s.start)
        .collect();
    if starts.is_empty() {
        return;
    }
    for m in BARE_POSTAL.find_iter(&text.norm) {
        let (s, e) = (text.char_idx(m.start()), text.char_idx(m.end()));
        let next = if text.at(e) == Some(' ') { e + 1 } else { e };
        if starts.contains(&next) && isolated_number(text, s, e) {
            out.push(Span::new(EntityType::PostalCode, s, e));
        }
    }
}

fn find_my_numbers(text: &Text, out: &mut Vec<Span>) {
    for m in TWELVE.find_iter(&text.norm) {
        let (s, e) = (text.char_idx(m.start()), text.char_idx(m.end()));
        if !isolated_number(text, s, e) {
            continue;
        }
        let digits: String = m.as_str().chars().filter(char::is_ascii_digit).collect();
        let label_from = text.byte_idx(s.saturating_sub(16));
        let labelled = MY_NUMBER_LABEL.is_match(&text.norm[label_from..m.start()]);
        if is_valid_my_number(&digits) || labelled {
            out.push(Span::new(EntityType::MyNumber, s, e));
        }
    }
}

fn push_group(text: &Text, g: Option<regex::Match<'_>>, kind: EntityType, out: &mut Vec<Span>) {
    if let Some(g) = g {
        let (s, e) = (text.char_idx(g.start()), text.char_idx(g.end()));
        if e > s && !text.at(e).is_some_and(|c| c.is_ascii_digit()) {
            out.push(Span::new(kind, s, e));
        }
    }
}

/// Runs the health-insurance rules whose label literal (保険者, 枝番, 記号) is in `text`.
fn find_insurance(text: &Text, gates: &Gates, out: &mut Vec<Span>) {
    let kind = EntityType::InsuranceId;
    let labelled = [
        (gates.insurer, &INSURER),
        (gates.insurer, &INSURED),
        (gates.branch, &BRANCH),
    ];
    for (_, rule) in labelled.into_iter().filter(|(open, _)| *open) {
        for c in rule.captures_iter(&text.norm) {
            push_group(text, c.get(1), kind, out);
        }
    }
    if !gates.symbol {
        return;
    }
    for c in SYMBOL_AND_NUMBER.captures_iter(&text.norm) {
        push_group(text, c.get(1), kind, out);
        push_group(text, c.get(2), kind, out);
    }
    for c in SYMBOL.captures_iter(&text.norm) {
        let Some(g) = c.get(1) else { continue };
        if g.as_str().starts_with('・') || !g.as_str().chars().any(|c| c.is_ascii_digit()) {
            continue;
        }
        push_group(text, Some(g), kind, out);
        // The 番号 that follows a 記号 within the same clause is the insured person's number.
        let window_end = text.byte_idx(text.char_idx(g.end()) + 12);
        if let Some(n) = NUMBER_AFTER_SYMBOL.captures(&text.norm[g.end()..window_end])
            && let Some(v) = n.get(1)
        {
            let s = text.char_idx(g.end() + v.start());
            let e = text.char_idx(g.end() + v.end());
            if !text.at(e).is_some_and(|c| c.is_ascii_digit()) {
                out.push(Span::new(kind, s, e));
            }
        }
    }
}

fn find_patient_ids(text: &Text, out: &mut Vec<Span>) {
    for c in PATIENT.captures_iter(&text.norm) {
        let (Some(all), Some(g)) = (c.get(0), c.get(1)) else {
            continue;
        };
        // `ID` inside an ASCII word (COVID 2019) is no label.
        if glued(text.before(text.char_idx(all.start()))) {
            continue;
        }
        let digits = g.as_str().chars().filter(char::is_ascii_digit).count();
        let (s, e) = (text.char_idx(g.start()), text.char_idx(g.end()));
        if digits >= 3 && !glued(text.at(e)) {
            out.push(Span::new(EntityType::PatientId, s, e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_never_skip_a_match() {
        let open = Gates {
            email: true,
            my_number: true,
            phone: true,
            postal: true,
            insurer: true,
            branch: true,
            symbol: true,
            patient: true,
        };
        // One rule per input, each at the edge of its gate (e.g. exactly 12 digits, `+81` without a
        // 0), so that a gate stricter than its rule drops a match here.
        for input in [
            "連絡先 03-1234-5678",
            "携帯 +81 3 1234 5678",
            "mail: taro@example.jp",
            "〒100-0001",
            "郵便番号 160-0023",
            "ZIP 1000001",
            "マイナンバー 123456789018",
            "保険者番号 06139999",
            "被保険者証の番号 12345678",
            "枝番 01",
            "記号 ２３４・番号 ５６",
            "患者ID: A-123",
        ] {
            let t = Text::new(input);
            let (mut gated, mut all) = (Vec::new(), Vec::new());
            find(&t, &mut gated);
            find_gated(&t, &open, &mut all);
            assert!(!all.is_empty(), "no rule matches {input}");
            assert_eq!(gated, all, "{input}");
        }
        let t = Text::new("既往歴に高血圧症。CRP 8.2 mg/dL。三日前から発熱。");
        let mut none = Vec::new();
        find_gated(&t, &open, &mut none);
        assert!(none.is_empty());
    }

    fn kinds(input: &str) -> Vec<(EntityType, String)> {
        let t = Text::new(input);
        let mut v = Vec::new();
        find(&t, &mut v);
        v.sort_by_key(|s| s.start);
        v.iter()
            .map(|s| {
                (
                    s.kind,
                    input.chars().skip(s.start).take(s.end - s.start).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn phones_in_every_width_and_form() {
        for (input, want) in [
            ("TEL 045-311-6028", "045-311-6028"),
            (
                "連絡は（０８０－２７１６－９９４０）まで",
                "０８０－２７１６－９９４０",
            ),
            ("Tel: +81-90-3388-1726", "+81-90-3388-1726"),
            ("SMS でお願いします：09044710285", "09044710285"),
            ("090 5567 1823（本人）", "090 5567 1823"),
            ("0776‐22‐8145（実家）", "0776‐22‐8145"),
            ("代表 03(3812)2111", "03(3812)2111"),
            ("TEL03-3812-2111", "03-3812-2111"),
        ] {
            assert_eq!(
                kinds(input),
                vec![(EntityType::Phone, want.to_string())],
                "{input}"
            );
        }
    }

    #[test]
    fn numbers_that_are_not_phones() {
        for input in [
            "内線 4521",
            "製造番号 24-0318-77",
            "2024-04-01 採血",
            "HbA1c 6.8%、eGFR 62",
            "ロット 0123456789012",
        ] {
            assert!(
                kinds(input).iter().all(|(k, _)| *k != EntityType::Phone),
                "{input}"
            );
        }
    }

    #[test]
    fn email_next_to_kana_is_found_whole() {
        assert_eq!(
            kinds("メール：chinatsu_w@icloud.comまで"),
            vec![(EntityType::Email, "chinatsu_w@icloud.com".to_string())]
        );
    }

    #[test]
    fn postal_codes_need_the_mark_or_a_label() {
        assert_eq!(
            kinds("〒７３０－００１１"),
            vec![(EntityType::PostalCode, "７３０－００１１".into())]
        );
        assert_eq!(
            kinds("〒9200961 石川"),
            vec![(EntityType::PostalCode, "9200961".into())]
        );
        assert!(kinds("検体 113-0033").is_empty());
    }

    #[test]
    fn my_number_by_check_digit_or_label() {
        assert_eq!(
            kinds("番号 9098 1729 0084 は"),
            vec![(EntityType::MyNumber, "9098 1729 0084".into())]
        );
        // Invalid check digit, no label: not flagged. Same digits with a label: flagged.
        assert!(kinds("伝票 9098 1729 0085").is_empty());
        assert_eq!(
            kinds("個人番号 909817290085"),
            vec![(EntityType::MyNumber, "909817290085".into())]
        );
    }

    #[test]
    fn insurance_symbol_number_and_insurer() {
        let got = kinds("保険者番号 34040865　記号・番号 K-22・0572");
        let texts: Vec<&str> = got.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(texts, ["34040865", "K-22", "0572"]);
        let got = kinds("記号 板橋7、番号 08821。");
        let texts: Vec<&str> = got.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(texts, ["板橋7", "08821"]);
        assert!(kinds("暗証番号は4桁です。製造番号 24-0318-77").is_empty());
    }

    #[test]
    fn patient_ids_after_their_labels() {
        assert_eq!(
            kinds("カルテ番号 K-300218 西田"),
            vec![(EntityType::PatientId, "K-300218".into())]
        );
        assert_eq!(
            kinds("診察券 No.19-4477 太田"),
            vec![(EntityType::PatientId, "19-4477".into())]
        );
        assert_eq!(
            kinds("MRN 88-120-445, lives"),
            vec![(EntityType::PatientId, "88-120-445".into())]
        );
    }
}
