//! Incremental detokenization: the text of a sequence's generated tokens, extended at each step by
//! decoding a window of the last few tokens instead of the whole output again (which made every step
//! cost time in proportion to the answer's length).
//!
//! The window starts one token before the last text read, as text-generation-inference and vLLM do: a
//! token decoded on its own can lose its leading space (SentencePiece decoders strip it at the start of
//! a text) or be part of a multi-byte character, so the new text is what decoding `prefix..` adds to
//! decoding `prefix..read`. The window only moves on when it ends in a complete character; `read` is
//! therefore always at a character boundary, and the pieces join up to what decoding the whole output
//! gives (tests `incremental_detokenization_equals_whole_decoding*`: the fixture's byte-level BPE,
//! SmolLM2's, and Gemma 3's SentencePiece-style tokenizer when that model is present).

use crate::tokenizer::{TextTokenizer, TokenizerError};

/// The decoded text of one sequence's tokens so far.
#[derive(Debug, Default)]
pub struct Detokenizer {
    prefix: usize,
    read: usize,
    text: String,
}

impl Detokenizer {
    /// Nothing decoded yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The text of the tokens read so far: complete characters only (an incomplete one waits for the
    /// tokens that finish it).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Reads the tokens `ids` has beyond those already read (`ids` is the whole output so far).
    pub fn update(&mut self, tok: &TextTokenizer, ids: &[u32]) -> Result<(), TokenizerError> {
        if ids.len() <= self.read {
            return Ok(());
        }
        let before = tok.decode(&ids[self.prefix..self.read])?;
        let after = tok.decode(&ids[self.prefix..])?;
        if after.ends_with('\u{FFFD}') || after.len() <= before.len() {
            return Ok(()); // an incomplete character, or nothing visible yet: wait for more tokens
        }
        match after.strip_prefix(before.as_str()) {
            Some(new) => self.text.push_str(new),
            // The window decodes its start differently once extended (no tokenizer we know does):
            // fall back to the whole output, keeping what was already read.
            None => {
                let all = tok.decode(ids)?;
                if let Some(new) = all.strip_prefix(self.text.as_str()) {
                    self.text.push_str(new);
                }
            }
        }
        self.prefix = self.read;
        self.read = ids.len();
        Ok(())
    }
}
