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
    emitted: usize,
}

impl TextStream {
    /// A stream that ends at any of `stops` (empty strings are ignored).
    pub fn new(stops: Vec<String>) -> Self {
        Self {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
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

    /// Length of the longest suffix of `text` that is a proper prefix of a stop string.
    fn held_back(&self, text: &str) -> usize {
        let mut longest = 0;
        for stop in &self.stops {
            for (i, _) in stop.char_indices().skip(1) {
                if i > longest && text.ends_with(&stop[..i]) {
                    longest = i;
                }
            }
        }
        longest
    }
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

    #[test]
    fn incomplete_characters_wait_for_the_next_token() {
        let mut s = TextStream::new(vec![]);
        assert_eq!(s.update("咳\u{FFFD}").delta, "咳");
        assert_eq!(s.update("咳と痰").delta, "と痰");
    }
}
