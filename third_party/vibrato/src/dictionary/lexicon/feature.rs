use bincode::{Decode, Encode};

#[derive(Default, Decode, Encode)]
pub struct WordFeatures {
    features: Vec<String>,
}

impl WordFeatures {
    pub fn new<I, S>(features: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self {
            features: features
                .into_iter()
                .map(|s| s.as_ref().to_string())
                .collect(),
        }
    }

    /// Prefetches the string header of `word_id`'s feature (Anshin's addition).
    #[inline(always)]
    pub fn prefetch(&self, word_id: usize) {
        if word_id < self.features.len() {
            crate::utils::prefetch(self.features.as_ptr().wrapping_add(word_id));
        }
    }

    /// Prefetches the text of `word_id`'s feature; reads its header (Anshin's addition).
    #[inline(always)]
    pub fn prefetch_text(&self, word_id: usize) {
        if let Some(f) = self.features.get(word_id) {
            crate::utils::prefetch(f.as_ptr());
        }
    }

    #[inline(always)]
    pub fn get(&self, word_id: usize) -> &str {
        &self.features[word_id]
    }
}
