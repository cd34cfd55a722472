//! A normalised view of the input that keeps code-point offsets: every input character maps to exactly
//! one output character, so a span found in the normalised text has the same offsets in the original.
//!
//! Full-width digits, letters and punctuation become ASCII, the many dash characters (and `ー` between
//! digits) become `-`, and the ideographic space becomes a plain space. Rules and the morphological
//! analyser both run on this view.

/// The input, normalised one character to one character, with a byte → code-point index.
pub(crate) struct Text {
    /// Normalised characters, same count as the input's code points.
    pub chars: Vec<char>,
    /// The normalised characters as a string (for regexes and the tokenizer).
    pub norm: String,
    /// Byte offset in `norm` of every character, plus `norm.len()` at the end.
    byte_starts: Vec<usize>,
}

impl Text {
    /// Builds the normalised view of `input`.
    pub fn new(input: &str) -> Text {
        let mut chars: Vec<char> = input.chars().map(fold_char).collect();
        for i in 1..chars.len().saturating_sub(1) {
            if matches!(chars[i], 'ー' | 'ｰ' | '一')
                && chars[i - 1].is_ascii_digit()
                && chars[i + 1].is_ascii_digit()
            {
                chars[i] = '-';
            }
        }
        let mut norm = String::with_capacity(input.len());
        let mut byte_starts = Vec::with_capacity(chars.len() + 1);
        for &c in &chars {
            byte_starts.push(norm.len());
            norm.push(c);
        }
        byte_starts.push(norm.len());
        Text {
            chars,
            norm,
            byte_starts,
        }
    }

    /// Number of code points.
    pub fn len(&self) -> usize {
        self.chars.len()
    }

    /// Converts a byte offset of `norm` (always on a char boundary) to a code-point index.
    pub fn char_idx(&self, byte: usize) -> usize {
        match self.byte_starts.binary_search(&byte) {
            Ok(i) | Err(i) => i,
        }
    }

    /// Byte offset in `norm` of code point `idx` (clamped to the end).
    pub fn byte_idx(&self, idx: usize) -> usize {
        self.byte_starts[idx.min(self.chars.len())]
    }

    /// The normalised text of code points `start..end`.
    pub fn slice(&self, start: usize, end: usize) -> &str {
        &self.norm[self.byte_idx(start)..self.byte_idx(end)]
    }

    /// Character at `idx`, or `None` outside the text.
    pub fn at(&self, idx: usize) -> Option<char> {
        self.chars.get(idx).copied()
    }

    /// Character before `idx`, or `None` at the start.
    pub fn before(&self, idx: usize) -> Option<char> {
        idx.checked_sub(1).and_then(|i| self.at(i))
    }
}

/// Folds one character to its ASCII / canonical form (one char in, one char out).
pub(crate) fn fold_char(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => {
            // Full-width ASCII block: shift to ASCII, except the full-width dash handled below.
            let ascii = char::from_u32(c as u32 - 0xFF01 + 0x21).unwrap_or(c);
            if ascii == '-' { '-' } else { ascii }
        }
        '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FE63}' | '\u{2043}' | '\u{FE58}' => '-',
        '\u{3000}' | '\u{00A0}' | '\u{2002}'..='\u{200A}' => ' ',
        _ => c,
    }
}

/// Whether `c` is a hiragana character (including the iteration marks).
pub(crate) fn is_hiragana(c: char) -> bool {
    matches!(c, '\u{3041}'..='\u{309F}')
}

/// Whether `c` is a katakana character (full- or half-width, including `ー` and `・`-less marks).
pub(crate) fn is_katakana(c: char) -> bool {
    matches!(c, '\u{30A1}'..='\u{30FA}' | '\u{30FC}'..='\u{30FF}' | '\u{FF66}'..='\u{FF9F}')
}

/// Whether `c` is a CJK ideograph (or the repetition mark 々 / ヶ used in names and places).
pub(crate) fn is_kanji(c: char) -> bool {
    matches!(c, '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}' | '\u{F900}'..='\u{FAFF}' | '々' | '〆' | 'ヶ')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_keeps_one_char_per_char_and_maps_digits_and_dashes() {
        let t = Text::new("０８０－２７１６ー９９４０　〒７３０");
        assert_eq!(t.norm, "080-2716-9940 〒730");
        assert_eq!(
            t.len(),
            "０８０－２７１６ー９９４０　〒７３０".chars().count()
        );
        assert_eq!(t.char_idx(t.byte_idx(14)), 14);
    }

    #[test]
    fn long_vowel_mark_stays_inside_words() {
        assert_eq!(Text::new("コーヒー1ー2").norm, "コーヒー1-2");
    }
}
