//! Detection of every entity type on sentences written for these tests (not the dev set), and hard
//! negatives: medical vocabulary that must survive.

mod common;

use anshin_guardrails::{Detector, EntityType};
use common::{detector, found, found_of};

#[test]
fn detector_is_send_and_sync_for_sharing_across_requests() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Detector>();
}

#[test]
fn offsets_are_code_points_and_text_matches_the_input() {
    let input = "😀患者ID:55123 の 前川 智也さん";
    for e in detector().detect(input) {
        let slice: String = input.chars().skip(e.start).take(e.end - e.start).collect();
        assert_eq!(slice, e.text);
    }
    assert_eq!(found_of(input, EntityType::PatientId), ["55123"]);
}

#[test]
fn person_names_with_honorifics_labels_and_family_given_pairs() {
    assert_eq!(
        found_of("外来で前川さんに説明した。", EntityType::Person),
        ["前川"]
    );
    assert_eq!(
        found_of("担当医：河合 俊介（消化器内科）", EntityType::Person),
        ["河合 俊介"]
    );
    assert_eq!(
        found_of("紹介元 三浦 恵美子 先生 御侍史", EntityType::Person),
        ["三浦 恵美子"]
    );
    assert_eq!(
        found_of("母 杉山 涼子 が付き添い", EntityType::Person),
        ["杉山 涼子"]
    );
    assert_eq!(
        found_of("野村です。薬の飲み方を教えてください。", EntityType::Person),
        ["野村"]
    );
    assert_eq!(
        found_of("菅原 トメ様 92歳", EntityType::Person),
        ["菅原 トメ"]
    );
}

#[test]
fn names_before_job_titles_and_after_role_labels() {
    assert_eq!(
        found_of("山下医師に相談。田中看護師が対応。", EntityType::Person),
        ["山下", "田中"]
    );
    assert_eq!(
        found_of("担当：佐藤。記録者：高田。", EntityType::Person),
        ["佐藤", "高田"]
    );
    assert_eq!(
        found_of("Dr.山田より申し送り。", EntityType::Person),
        ["山田"]
    );
    assert_eq!(
        found_of("検査技師 伊藤、薬剤師 加藤より", EntityType::Person),
        ["伊藤", "加藤"]
    );
}

#[test]
fn care_team_labels_and_furigana_fields() {
    assert_eq!(
        found_of("担当CM 小池、フリガナ：タナカ タロウ", EntityType::Person),
        ["小池", "タナカ タロウ"]
    );
}

#[test]
fn common_words_before_honorifics_are_not_names() {
    let text = "みなさん、おばあちゃん、お母さん、お子さん、東京医師会、担当医師、病棟看護師長、外来看護師、お客さん";
    assert!(found(text).is_empty(), "{:?}", found(text));
}

#[test]
fn kana_and_romaji_names() {
    assert_eq!(
        found_of("ゆいちゃん、陽菜ちゃん", EntityType::Person),
        ["ゆい", "陽菜"]
    );
    assert_eq!(
        found_of("ジョン・スミスさん来院", EntityType::Person),
        ["ジョン・スミス"]
    );
    assert_eq!(
        found_of("TARO YAMADA, Mr. John Smith", EntityType::Person),
        ["TARO YAMADA", "John Smith"]
    );
    assert_eq!(
        found_of("いしだ こうくん、発熱あり", EntityType::Person),
        ["いしだ こう"]
    );
    assert_eq!(
        found_of("pt: Nakamura Yuki 34F, migraine", EntityType::Person),
        ["Nakamura Yuki"]
    );
    assert_eq!(
        found_of("Kenta SUZUKI was seen today", EntityType::Person),
        ["Kenta SUZUKI"]
    );
    assert_eq!(
        found_of("受付：原田 翔（ハラダ ショウ）", EntityType::Person),
        ["原田 翔", "ハラダ ショウ"]
    );
}

#[test]
fn addresses_street_level_only() {
    assert_eq!(
        found_of(
            "現住所：静岡県浜松市中区元城町103-2 メゾン元城305",
            EntityType::Address
        ),
        ["静岡県浜松市中区元城町103-2 メゾン元城305"]
    );
    assert_eq!(
        found_of("福岡市博多区博多駅前2丁目1番1号へ転居", EntityType::Address),
        ["福岡市博多区博多駅前2丁目1番1号"]
    );
    assert!(
        found_of(
            "京都府でインフルエンザが流行している。",
            EntityType::Address
        )
        .is_empty()
    );
    assert!(found_of("札幌市内の病院に3回入院した。", EntityType::Address).is_empty());
    assert_eq!(
        found_of("札幌市中央区北1条西2丁目1番地へ", EntityType::Address),
        ["札幌市中央区北1条西2丁目1番地"]
    );
    assert_eq!(
        found_of("沖縄県島尻郡南風原町字兼城123番地", EntityType::Address),
        ["沖縄県島尻郡南風原町字兼城123番地"]
    );
    assert!(found("東京都から3名、横浜市立大学 2年、静岡県で2例").is_empty());
    assert!(found("東京都3名、大阪府内3施設、北海道150床").is_empty());
    assert_eq!(
        found_of("京都市左京区聖護院川原町54", EntityType::Address),
        ["京都市左京区聖護院川原町54"]
    );
    assert_eq!(
        found_of(
            "東京都港区六本木6-10-1 六本木ヒルズ森タワー",
            EntityType::Address
        ),
        ["東京都港区六本木6-10-1 六本木ヒルズ森タワー"]
    );
}

#[test]
fn phones_emails_postal_codes() {
    assert_eq!(
        found_of("自宅 ０３－５２１２－８８７０ に連絡", EntityType::Phone),
        ["０３－５２１２－８８７０"]
    );
    assert_eq!(
        found_of("携帯 +81 80 1234 5678", EntityType::Phone),
        ["+81 80 1234 5678"]
    );
    assert_eq!(
        found_of("連絡先はa.kawai-77@example.co.jpです", EntityType::Email),
        ["a.kawai-77@example.co.jp"]
    );
    assert_eq!(
        found_of("〒 060-0042 札幌市", EntityType::PostalCode),
        ["060-0042"]
    );
}

#[test]
fn birth_dates_in_every_calendar_but_not_visit_dates() {
    assert_eq!(
        found_of("前川 智也（平成元年12月3日生）", EntityType::BirthDate),
        ["平成元年12月3日"]
    );
    assert_eq!(
        found_of("生年月日：1979/11/30", EntityType::BirthDate),
        ["1979/11/30"]
    );
    assert_eq!(
        found_of("DOB 2001-04-09, allergy none", EntityType::BirthDate),
        ["2001-04-09"]
    );
    assert_eq!(
        found_of("T15.3.1生まれ", EntityType::BirthDate),
        ["T15.3.1"]
    );
    assert!(
        found_of(
            "2025年3月3日に入院、2025年3月10日退院。",
            EntityType::BirthDate
        )
        .is_empty()
    );
    assert!(found_of("令和6年4月1日 初診", EntityType::BirthDate).is_empty());
    assert!(
        found_of(
            "昭和60年4月1日 胃切除術、山田 太郎様 2024/4/1 外来",
            EntityType::BirthDate
        )
        .is_empty()
    );
}

#[test]
fn my_number_by_check_digit_and_by_label() {
    assert_eq!(
        found_of("番号は 1234 5678 9018 です", EntityType::MyNumber),
        ["1234 5678 9018"]
    );
    assert!(found_of("伝票番号 1234 5678 9011", EntityType::MyNumber).is_empty());
    assert_eq!(
        found_of(
            "マイナンバー：１２３４５６７８９０１１",
            EntityType::MyNumber
        ),
        ["１２３４５６７８９０１１"]
    );
}

#[test]
fn insurance_and_patient_ids() {
    assert_eq!(
        found_of("保険者番号：０６１３０４１２", EntityType::InsuranceId),
        ["０６１３０４１２"]
    );
    assert_eq!(
        found_of("被保険者証 記号 12-3 番号 45", EntityType::InsuranceId),
        ["12-3", "45"]
    );
    assert_eq!(
        found_of("後期高齢者被保険者番号 39123456", EntityType::InsuranceId),
        ["39123456"]
    );
    assert_eq!(
        found_of("カルテNo. A-20931 再診", EntityType::PatientId),
        ["A-20931"]
    );
    assert_eq!(
        found_of("診察券番号 000123", EntityType::PatientId),
        ["000123"]
    );
}

#[test]
fn hard_negatives_medical_vocabulary_survives() {
    for text in [
        "橋本病にてチラーヂンS 50μg 内服中。",
        "川崎病の既往あり、冠動脈瘤なし。",
        "パーキンソン病 Yahr III、レボドパ 300mg/日。",
        "クローン病とベーチェット病の鑑別。",
        "アルツハイマー型認知症、ドネペジル 5mg。",
        "ICD-10: E11.9、I10、K21.0。",
        "HbA1c 7.2%、LDL-C 142 mg/dL、eGFR 48。",
        "72歳男性、2024年5月12日に内視鏡検査。",
        "聖路加国際病院 循環器内科 外来。",
        "田中内科クリニックから紹介。",
        "医療機関コード 1312345 の登録。",
        "製造番号 A1234-5678、ロット 24K09。",
        "患者さんとご家族に説明。看護師さんへ申し送り。",
        "東京都の感染者数は増加、大阪府内でも同様。",
        "第2病日 CRP 12.3、WBC 15800/μL。",
        "ワルファリン 2mg、INR 2.4。次回 3/14 10:30 採血。",
        "血圧 130/80、脈拍 72、SpO2 98%（室内気）。",
        // Space-separated SOAP notes: one-kanji family names (左, 中) followed by a common noun.
        "S) 頭痛 あり 嘔気 なし O) 体温 36.5 A) 感冒 P) 経過 観察",
        "右 下肢 浮腫 軽度、左 上肢 しびれ なし。胸部 X線 異常 なし。",
        "中 等量 の 胸水、少量 の 腹水。肝 腫大 なし。",
        "主訴 発熱 咳嗽。既往歴 高血圧 糖尿病。家族歴 特記 なし。",
        "本日 退院 予定、家族 へ 説明 済み。看護 計画 評価。",
        // 姓+名 readings inside medical words, and family labels glued to a word (母趾 = big toe).
        "S状結腸に8mmのポリープ、コールドスネアで切除。上行結腸に憩室。",
        "右母趾背屈力低下(MMT 4)。",
    ] {
        assert!(found(text).is_empty(), "{text}: {:?}", found(text));
    }
}
