//! Katakana → Hepburn romaji, used to turn the dictionary's name readings into the romaji name lists
//! that recognise `Tanaka Hiroki` or `UEDA Mariko`.

const BASE: &[(&str, &str)] = &[
    ("ア", "a"),
    ("イ", "i"),
    ("ウ", "u"),
    ("エ", "e"),
    ("オ", "o"),
    ("カ", "ka"),
    ("キ", "ki"),
    ("ク", "ku"),
    ("ケ", "ke"),
    ("コ", "ko"),
    ("ガ", "ga"),
    ("ギ", "gi"),
    ("グ", "gu"),
    ("ゲ", "ge"),
    ("ゴ", "go"),
    ("サ", "sa"),
    ("シ", "shi"),
    ("ス", "su"),
    ("セ", "se"),
    ("ソ", "so"),
    ("ザ", "za"),
    ("ジ", "ji"),
    ("ズ", "zu"),
    ("ゼ", "ze"),
    ("ゾ", "zo"),
    ("タ", "ta"),
    ("チ", "chi"),
    ("ツ", "tsu"),
    ("テ", "te"),
    ("ト", "to"),
    ("ダ", "da"),
    ("ヂ", "ji"),
    ("ヅ", "zu"),
    ("デ", "de"),
    ("ド", "do"),
    ("ナ", "na"),
    ("ニ", "ni"),
    ("ヌ", "nu"),
    ("ネ", "ne"),
    ("ノ", "no"),
    ("ハ", "ha"),
    ("ヒ", "hi"),
    ("フ", "fu"),
    ("ヘ", "he"),
    ("ホ", "ho"),
    ("バ", "ba"),
    ("ビ", "bi"),
    ("ブ", "bu"),
    ("ベ", "be"),
    ("ボ", "bo"),
    ("パ", "pa"),
    ("ピ", "pi"),
    ("プ", "pu"),
    ("ペ", "pe"),
    ("ポ", "po"),
    ("マ", "ma"),
    ("ミ", "mi"),
    ("ム", "mu"),
    ("メ", "me"),
    ("モ", "mo"),
    ("ヤ", "ya"),
    ("ユ", "yu"),
    ("ヨ", "yo"),
    ("ラ", "ra"),
    ("リ", "ri"),
    ("ル", "ru"),
    ("レ", "re"),
    ("ロ", "ro"),
    ("ワ", "wa"),
    ("ヰ", "i"),
    ("ヱ", "e"),
    ("ヲ", "o"),
    ("ン", "n"),
    ("ヴ", "vu"),
    ("ァ", "a"),
    ("ィ", "i"),
    ("ゥ", "u"),
    ("ェ", "e"),
    ("ォ", "o"),
];

const DIGRAPHS: &[(&str, &str)] = &[
    ("キャ", "kya"),
    ("キュ", "kyu"),
    ("キョ", "kyo"),
    ("ギャ", "gya"),
    ("ギュ", "gyu"),
    ("ギョ", "gyo"),
    ("シャ", "sha"),
    ("シュ", "shu"),
    ("ショ", "sho"),
    ("ジャ", "ja"),
    ("ジュ", "ju"),
    ("ジョ", "jo"),
    ("チャ", "cha"),
    ("チュ", "chu"),
    ("チョ", "cho"),
    ("ニャ", "nya"),
    ("ニュ", "nyu"),
    ("ニョ", "nyo"),
    ("ヒャ", "hya"),
    ("ヒュ", "hyu"),
    ("ヒョ", "hyo"),
    ("ビャ", "bya"),
    ("ビュ", "byu"),
    ("ビョ", "byo"),
    ("ピャ", "pya"),
    ("ピュ", "pyu"),
    ("ピョ", "pyo"),
    ("ミャ", "mya"),
    ("ミュ", "myu"),
    ("ミョ", "myo"),
    ("リャ", "rya"),
    ("リュ", "ryu"),
    ("リョ", "ryo"),
];

/// Converts a katakana reading to lower-case Hepburn romaji. Returns `None` when the reading holds a
/// character outside the table (the name then simply has no romaji form).
pub(crate) fn to_romaji(kana: &str) -> Option<String> {
    let chars: Vec<char> = kana.chars().collect();
    let mut out = String::with_capacity(chars.len() * 2);
    let mut i = 0;
    let mut double_next = false;
    while i < chars.len() {
        let c = chars[i];
        if c == 'ッ' {
            double_next = true;
            i += 1;
            continue;
        }
        if c == 'ー' {
            i += 1;
            continue;
        }
        let syllable = (i + 1 < chars.len())
            .then(|| lookup(DIGRAPHS, &chars[i..i + 2]))
            .flatten()
            .map(|s| (s, 2))
            .or_else(|| lookup(BASE, &chars[i..i + 1]).map(|s| (s, 1)));
        let (roma, used) = syllable?;
        if double_next {
            let first = roma.chars().next()?;
            out.push(if roma.starts_with("ch") { 't' } else { first });
            double_next = false;
        }
        out.push_str(roma);
        i += used;
    }
    Some(out)
}

/// The spelling without long vowels, as on passports (`satou` → `sato`, `yuuko` → `yuko`).
pub(crate) fn passport_form(romaji: &str) -> String {
    romaji
        .replace("ou", "o")
        .replace("oo", "o")
        .replace("uu", "u")
}

fn lookup(table: &[(&str, &'static str)], key: &[char]) -> Option<&'static str> {
    let k: String = key.iter().collect();
    table.iter().find(|(kana, _)| *kana == k).map(|(_, r)| *r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hepburn_of_common_names() {
        assert_eq!(to_romaji("タナカ").as_deref(), Some("tanaka"));
        assert_eq!(to_romaji("キョウコ").as_deref(), Some("kyouko"));
        assert_eq!(to_romaji("ハットリ").as_deref(), Some("hattori"));
        assert_eq!(passport_form("satou"), "sato");
        assert_eq!(to_romaji("ABC"), None);
    }
}
