//! Redaction with numbered placeholders, restoration for the authorised caller, and leak reporting.

mod common;

use anshin_guardrails::{EntityType, Mapping, restore};
use common::detector;

const NOTE: &str = "患者 前川 智也様（TEL 090-1111-2222）。前川 智也様の妻 前川 美紀さん（090-3333-4444）、\
                    再度 ０９０－１１１１－２２２２ に連絡。";

#[test]
fn same_value_gets_same_placeholder_and_types_are_numbered_separately() {
    let r = detector().redact(NOTE);
    assert_eq!(
        r.text,
        "患者 〔氏名1〕様（TEL 〔電話1〕）。〔氏名1〕様の妻 〔氏名2〕さん（〔電話2〕）、再度 〔電話1〕 に連絡。"
    );
    let phs: Vec<&str> = r
        .mapping
        .entries()
        .iter()
        .map(|e| e.placeholder.as_str())
        .collect();
    assert_eq!(phs, ["〔氏名1〕", "〔電話1〕", "〔氏名2〕", "〔電話2〕"]);
    assert_eq!(
        r.mapping.find_placeholder("〔電話1〕").map(|e| e.kind),
        Some(EntityType::Phone)
    );
}

#[test]
fn restore_puts_back_this_requests_values_only() {
    let r = detector().redact(NOTE);
    let answer = "〔氏名1〕様には〔電話1〕へ、〔氏名2〕さんにも連絡します。〔氏名9〕は不明。";
    assert_eq!(
        restore(answer, &r.mapping),
        "前川 智也様には090-1111-2222へ、前川 美紀さんにも連絡します。〔氏名9〕は不明。"
    );
    // Another request's mapping restores nothing of this one.
    assert_eq!(restore(answer, &Mapping::new()), answer);
}

#[test]
fn output_check_separates_restored_values_from_leaks() {
    let r = detector().redact("患者 前川 智也様、TEL 090-1111-2222。");
    let answer = "〔氏名1〕様へ。別の患者 岩崎 義男さん（03-9999-8888）と同室です。";
    let rep = detector().check_output(answer, &r.mapping);
    assert_eq!(rep.restored, ["〔氏名1〕"]);
    let leaks: Vec<(EntityType, &str)> = rep
        .leaks
        .iter()
        .map(|e| (e.kind, e.text.as_str()))
        .collect();
    assert_eq!(
        leaks,
        [
            (EntityType::Person, "岩崎 義男"),
            (EntityType::Phone, "03-9999-8888")
        ]
    );
    assert_eq!(
        rep.text,
        "前川 智也様へ。別の患者 〔氏名〕さん（〔電話〕）と同室です。"
    );
    // A value of the request repeated verbatim by the model is the caller's own data, not a leak.
    let echo = detector().check_output("TEL 090-1111-2222 に折り返します。", &r.mapping);
    assert!(echo.leaks.is_empty());
}

#[test]
fn one_mapping_spans_several_messages_of_a_request() {
    let mut m = Mapping::new();
    let (a, _) = detector().redact_with("主治医：河合 俊介", &mut m);
    let (b, _) = detector().redact_with("河合 俊介先生に、患者 杉山 涼子さんの件で。", &mut m);
    assert_eq!(a, "主治医：〔氏名1〕");
    assert_eq!(b, "〔氏名1〕先生に、患者 〔氏名2〕さんの件で。");
}

#[test]
fn placeholders_in_text_are_never_detected_again() {
    let text = "〔氏名1〕さん、〔患者番号123〕、〔電話1〕";
    assert!(
        detector().detect(text).is_empty(),
        "{:?}",
        detector().detect(text)
    );
}
