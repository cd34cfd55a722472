//! The chunked scanner: entities split across chunk boundaries are still caught, released text
//! concatenates back to the input, and offsets refer to the whole stream.

mod common;

use anshin_guardrails::{Entity, Mapping, OutputGuard, StreamScanner};
use common::detector;

fn run_chunks(chunks: &[&str]) -> (String, Vec<Entity>) {
    let mut s = StreamScanner::new(detector());
    let mut text = String::new();
    let mut ents = Vec::new();
    for c in chunks {
        let r = s.push(c);
        assert_eq!(r.offset, text.chars().count());
        text.push_str(&r.text);
        ents.extend(r.entities);
    }
    let r = s.finish();
    text.push_str(&r.text);
    ents.extend(r.entities);
    (text, ents)
}

const INPUT: &str = "連絡先は 080-2716-9940 です。担当は河合 俊介先生。〒113-0033 東京都文京区本郷6-2-9\nメール a.kawai@example.jp まで。";

#[test]
fn every_split_point_gives_the_same_entities_as_whole_text_detection() {
    let whole = detector().detect(INPUT);
    assert!(whole.len() >= 5, "{whole:?}");
    let chars: Vec<char> = INPUT.chars().collect();
    for cut in 1..chars.len() {
        let a: String = chars[..cut].iter().collect();
        let b: String = chars[cut..].iter().collect();
        let (text, ents) = run_chunks(&[&a, &b]);
        assert_eq!(text, INPUT);
        assert_eq!(ents, whole, "split at {cut}");
    }
}

#[test]
fn one_char_chunks_still_catch_a_phone_number() {
    let chunks: Vec<String> = INPUT.chars().map(String::from).collect();
    let refs: Vec<&str> = chunks.iter().map(String::as_str).collect();
    let (text, ents) = run_chunks(&refs);
    assert_eq!(text, INPUT);
    assert!(ents.iter().any(|e| e.text == "080-2716-9940"), "{ents:?}");
}

#[test]
fn nothing_is_released_while_an_entity_may_still_be_forming() {
    let mut s = StreamScanner::new(detector());
    let r = s.push("電話は 090-12");
    assert!(r.text.is_empty());
    let r = s.push("34-5678 です。次の");
    assert_eq!(r.text, "電話は 090-1234-5678 です。");
    assert_eq!(r.entities.len(), 1);
    let r = s.finish();
    assert_eq!(r.text, "次の");
    assert_eq!(r.offset, "電話は 090-1234-5678 です。".chars().count());
}

#[test]
fn long_text_without_sentence_breaks_is_released_in_bounded_pieces() {
    let mut s = StreamScanner::new(detector());
    let mut released = 0;
    for _ in 0..100 {
        released += s.push("あいうえおかきくけこ").text.chars().count();
    }
    assert!(
        released >= 1000 - StreamScanner::MAX_HOLD,
        "released {released}"
    );
}

#[test]
fn adversarial_endless_entity_does_not_grow_the_buffer_forever() {
    let mut s = StreamScanner::new(detector());
    let mut released = "東京都".to_string();
    let _ = s.push("東京都");
    for _ in 0..2000 {
        released.push_str(&s.push("1-").text);
    }
    assert!(released.chars().count() > 4000 - StreamScanner::FORCE - 3);
}

#[test]
fn output_guard_restores_placeholders_split_across_chunks_and_redacts_leaks() {
    let r = detector().redact("患者 前川 智也様");
    let mut g = OutputGuard::new(detector(), &r.mapping);
    let mut out = String::new();
    let mut leaks = Vec::new();
    for c in ["〔氏", "名1〕様の連絡先は 03-99", "99-8888 です。", "以上"] {
        let o = g.push(c);
        out.push_str(&o.text);
        leaks.extend(o.leaks);
    }
    out.push_str(&g.finish().text);
    assert_eq!(out, "前川 智也様の連絡先は 〔電話〕 です。以上");
    assert_eq!(leaks.len(), 1);
    assert_eq!(leaks[0].text, "03-9999-8888");
    let empty = Mapping::new();
    let mut g = OutputGuard::new(detector(), &empty);
    assert_eq!(g.push("〔氏名1〕。").text, "〔氏名1〕。");
}
