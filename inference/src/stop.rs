//! Turning generated token ids into streamed text: emits only complete UTF-8 characters, cuts the output
//! at the first stop string, and holds back text that might be the start of a stop string.

/// What to send after a new token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextUpdate {
    /// New text to send (may be empty).
    pub delta: String,
    /// Whether a stop string was found (the text is final, cut before it).
    pub stopped: bool,
}

/// Streaming state of one sequence's output text.
#[derive(Debug, Default)]
pub struct TextStream {
    stops: Vec<String>,
    /// Per stop string, its KMP prefix function ([`prefix_function`]).
    borders: Vec<Vec<usize>>,
    emitted: usize,
}

impl TextStream {
    /// A stream that ends at any of `stops` (empty strings are ignored).
    pub fn new(stops: Vec<String>) -> Self {
        let stops: Vec<String> = stops.into_iter().filter(|s| !s.is_empty()).collect();
        let borders = stops
            .iter()
            .map(|s| prefix_function(s.as_bytes()))
            .collect();
        Self {
            stops,
            borders,
            emitted: 0,
        }
    }

    /// Given the full decoded output so far (each call's text extends the previous one's), what to send
    /// now.
    pub fn update(&mut self, text: &str) -> TextUpdate {
        if let Some(cut) = self.first_stop(text) {
            let delta = text
                .get(self.emitted.min(cut)..cut)
                .unwrap_or_default()
                .to_owned();
            self.emitted = cut;
            return TextUpdate {
                delta,
                stopped: true,
            };
        }
        // A trailing U+FFFD is an incomplete multi-byte character: wait for the next token.
        let complete = text.strip_suffix('\u{FFFD}').unwrap_or(text);
        let safe = complete.len() - self.held_back(complete);
        let delta = if safe > self.emitted {
            text[self.emitted..safe].to_owned()
        } else {
            String::new()
        };
        self.emitted = self.emitted.max(safe);
        TextUpdate {
            delta,
            stopped: false,
        }
    }

    /// The rest of the text at the end of generation (nothing is held back any more).
    pub fn finish(&mut self, text: &str) -> String {
        let rest = text.get(self.emitted..).unwrap_or_default().to_owned();
        self.emitted = text.len();
        rest
    }

    /// Where the first stop string starts. Only the text from `emitted` on is searched: a stop that
    /// began earlier would have been held back (its start is a suffix of the text and a prefix of the
    /// stop), so a step costs the new text, not the whole output.
    fn first_stop(&self, text: &str) -> Option<usize> {
        let (base, tail) = match text.get(self.emitted..) {
            Some(tail) => (self.emitted, tail),
            None => (0, text),
        };
        self.stops
            .iter()
            .filter_map(|s| tail.find(s.as_str()))
            .min()
            .map(|i| base + i)
    }

    /// Length of the longest suffix of `text` that is a proper prefix of a stop string. Runs on the
    /// scheduler thread for every token, so its work per stop string is bounded by
    /// min(stop length, text length) ([`suffix_in_prefix`]).
    fn held_back(&self, text: &str) -> usize {
        self.stops
            .iter()
            .zip(&self.borders)
            .map(|(stop, borders)| suffix_in_prefix(text.as_bytes(), stop.as_bytes(), borders))
            .max()
            .unwrap_or(0)
    }
}

/// KMP prefix function of `s`: for each `i`, the length of the longest proper prefix of `s[..=i]` that
/// is also its suffix.
fn prefix_function(s: &[u8]) -> Vec<usize> {
    let mut pf = vec![0; s.len()];
    let mut k = 0;
    for i in 1..s.len() {
        while k > 0 && s[i] != s[k] {
            k = pf[k - 1];
        }
        if s[i] == s[k] {
            k += 1;
        }
        pf[i] = k;
    }
    pf
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop` (non-empty; `borders` is its
/// [`prefix_function`]). Only the last `stop.len() - 1` bytes of `text` can be part of such a suffix, and
/// KMP reads each of them once (amortized), so the work is O(min(stop.len(), text.len())). Matching
/// bytes of UTF-8 finds only whole characters: a match starts at `stop`'s first byte, never a
/// continuation byte, and ends where `text` ends.
fn suffix_in_prefix(text: &[u8], stop: &[u8], borders: &[usize]) -> usize {
    let window = &text[text.len().saturating_sub(stop.len().saturating_sub(1))..];
    let mut k = 0;
    for &b in window {
        // k < stop.len(): the window is shorter than the stop string.
        while k > 0 && stop[k] != b {
            k = borders[k - 1];
        }
        if stop[k] == b {
            k += 1;
        }
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_text_and_cuts_at_stop_string() {
        let mut s = TextStream::new(vec!["###".into()]);
        assert_eq!(s.update("熱が").delta, "熱が");
        assert_eq!(
            s.update("熱があります#").delta,
            "あります",
            "a possible stop prefix is held back"
        );
        let u = s.update("熱があります##");
        assert_eq!((u.delta.as_str(), u.stopped), ("", false));
        let u = s.update("熱があります###次");
        assert_eq!((u.delta.as_str(), u.stopped), ("", true));
    }

    #[test]
    fn held_back_text_is_released_when_it_is_not_a_stop() {
        let mut s = TextStream::new(vec!["END".into()]);
        assert_eq!(s.update("aE").delta, "a");
        assert_eq!(s.update("aEx").delta, "Ex");
        assert_eq!(s.finish("aExy"), "y");
    }

    /// The held-back length equals its definition (the longest suffix of the text that is a proper
    /// prefix of a stop string) on random strings of ASCII and multi-byte characters.
    #[test]
    fn held_back_text_is_the_longest_stop_prefix_at_the_end() {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        let alphabet = ['a', 'b', 'あ', 'い'];
        let mut rng = StdRng::seed_from_u64(7);
        let word = |rng: &mut StdRng, max: usize| -> String {
            let n = rng.random_range(0..=max);
            (0..n)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect()
        };
        for _ in 0..2000 {
            let stop =
                alphabet[rng.random_range(0..alphabet.len())].to_string() + &word(&mut rng, 5);
            let text = word(&mut rng, 8);
            let naive = stop
                .char_indices()
                .skip(1)
                .map(|(i, _)| i)
                .filter(|&i| text.ends_with(&stop[..i]))
                .max()
                .unwrap_or(0);
            let s = TextStream::new(vec![stop.clone()]);
            assert_eq!(s.held_back(&text), naive, "stop {stop:?} text {text:?}");
        }
    }

    /// One token's stop check with a 1 MiB stop string and a 1 MiB output takes linear time: checking
    /// every prefix of the stop string against the text's end took O(n²), minutes at this size.
    #[test]
    fn a_long_stop_string_costs_linear_time_per_token() {
        let n = 1 << 20;
        let stop = "a".repeat(n) + "b";
        let text = "a".repeat(n);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut s = TextStream::new(vec![stop]);
            let _ = tx.send(s.update(&text));
        });
        let u = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("the stop check finished in time");
        assert_eq!(
            (u.delta.as_str(), u.stopped),
            ("", false),
            "all of it may start the stop"
        );
    }

    #[test]
    fn incomplete_characters_wait_for_the_next_token() {
        let mut s = TextStream::new(vec![]);
        assert_eq!(s.update("咳\u{FFFD}").delta, "咳");
        assert_eq!(s.update("咳と痰").delta, "と痰");
    }
}
