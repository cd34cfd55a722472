//! The check digit of the 12-digit individual number (個人番号, My Number), as defined by the
//! ordinance of the My Number Act (行政手続における特定の個人を識別するための番号の利用等に関する法律
//! 施行令 第八条): with P(n) the n-th of the first eleven digits counted from the right and
//! Q(n) = n + 1 for n ≤ 6, n − 5 for n ≥ 7, the check digit is 0 when Σ P(n)·Q(n) mod 11 ≤ 1 and
//! 11 − (Σ mod 11) otherwise.

/// Whether `digits` (exactly twelve ASCII digits, separators removed) carries a valid check digit.
pub fn is_valid_my_number(digits: &str) -> bool {
    let d: Vec<u32> = digits.chars().filter_map(|c| c.to_digit(10)).collect();
    if d.len() != 12 || digits.chars().count() != 12 {
        return false;
    }
    check_digit(&d[..11]) == d[11]
}

/// The check digit for the first eleven digits of an individual number.
pub fn check_digit(first11: &[u32]) -> u32 {
    let sum: u32 = first11
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &p)| {
            let n = i as u32 + 1;
            let q = if n <= 6 { n + 1 } else { n - 5 };
            p * q
        })
        .sum();
    let r = sum % 11;
    if r <= 1 { 0 } else { 11 - r }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_digit_accepts_valid_and_rejects_every_other_last_digit() {
        // 12345678901: weights from the left 6,5,4,3,2,7,6,5,4,3,2 give 212; 212 mod 11 = 3 → 11 − 3 = 8.
        assert_eq!(check_digit(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]), 8);
        for base in ["92595387680", "57554532695", "29407561366"] {
            let first: Vec<u32> = base.chars().filter_map(|c| c.to_digit(10)).collect();
            let good = check_digit(&first);
            for last in 0..10 {
                let s = format!("{base}{last}");
                assert_eq!(is_valid_my_number(&s), last == good, "{s}");
            }
        }
    }

    #[test]
    fn wrong_length_or_non_digits_are_invalid() {
        assert!(!is_valid_my_number("12345678901"));
        assert!(!is_valid_my_number("1234567890123"));
        assert!(!is_valid_my_number("12345678901a"));
    }
}
