//! No panic on any input: random Unicode, adversarial mixes of the characters the rules look at,
//! huge inputs, and random bytes through the CLI.

mod common;

use anshin_guardrails::{OutputGuard, StreamScanner, cli, restore};
use common::detector;
use proptest::prelude::*;

/// Characters the rules care about, so random strings hit the interesting paths.
const ALPHABET: &[&str] = &[
    "0",
    "7",
    "０",
    "９",
    "-",
    "－",
    "ー",
    "‐",
    " ",
    "　",
    "〒",
    "@",
    ".",
    "(",
    "（",
    ")",
    "）",
    ":",
    "：",
    "、",
    "。",
    "\n",
    "山田",
    "太郎",
    "さん",
    "様",
    "先生",
    "患者",
    "ID",
    "番号",
    "記号",
    "保険者番号",
    "個人番号",
    "東京都",
    "新宿区",
    "丁目",
    "番地",
    "号",
    "生",
    "昭和",
    "令和",
    "元年",
    "年",
    "月",
    "日",
    "S",
    "H",
    "+81",
    "〔氏名1〕",
    "〔",
    "〕",
    "ａ",
    "x",
    "病",
    "😀",
    "\u{0301}",
    "\u{200d}",
    "ｶ",
    "ﾞ",
];

fn check(text: &str) {
    let det = detector();
    let ents = det.detect(text);
    let n = text.chars().count();
    let mut last_end = 0;
    for e in &ents {
        assert!(
            e.start < e.end && e.end <= n && e.start >= last_end,
            "{e:?} in {text:?}"
        );
        last_end = e.end;
    }
    let red = det.redact(text);
    let _ = restore(&red.text, &red.mapping);
    let _ = det.check_output(text, &red.mapping);
    let mut s = StreamScanner::new(det);
    let mut back = String::new();
    // Chunks of 1, 2, 3, … characters, so boundaries fall everywhere.
    let chars: Vec<char> = text.chars().collect();
    let (mut i, mut size) = (0, 1);
    while i < chars.len() {
        let end = (i + size).min(chars.len());
        back.push_str(&s.push(&chars[i..end].iter().collect::<String>()).text);
        i = end;
        size = size % 5 + 1;
    }
    back.push_str(&s.finish().text);
    assert_eq!(back, text);
    let mut g = OutputGuard::new(det, &red.mapping);
    let _ = g.push(text);
    let _ = g.finish();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn any_unicode_string_is_handled(text in "\\PC{0,120}") {
        check(&text);
    }

    #[test]
    fn adversarial_mixes_are_handled(parts in proptest::collection::vec(proptest::sample::select(ALPHABET), 0..80)) {
        check(&parts.concat());
    }

    #[test]
    fn random_bytes_through_the_cli_never_stop_the_run(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut out = Vec::new();
        cli::scan(detector(), bytes.as_slice(), &mut out).expect("scan to memory");
        let lines = bytes.split(|&b| b == b'\n').count() - usize::from(bytes.ends_with(b"\n") || bytes.is_empty());
        prop_assert_eq!(String::from_utf8(out).expect("UTF-8 output").lines().count(), lines);
    }
}

#[test]
fn huge_inputs_are_handled_in_linear_memory() {
    let unit = "患者 山田 太郎様（TEL 090-1234-5678）東京都新宿区西新宿2-8-1。ああああああ";
    let big = unit.repeat(20_000);
    let ents = detector().detect(&big);
    assert!(ents.len() >= 40_000, "{}", ents.len());
    let one_line = "漢".repeat(300_000);
    let _ = detector().detect(&one_line);
    let digits = "1".repeat(200_000);
    assert!(detector().detect(&digits).is_empty());
}
