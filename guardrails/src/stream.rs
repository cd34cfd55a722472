//! Streaming: a scanner fed chunk by chunk (e.g. the model's SSE tokens) that releases text only once
//! no entity can still be forming across the chunk boundary.
//!
//! Text is held back until a sentence or line break (`。！？\n`), or, when none comes, until more than
//! [`StreamScanner::MAX_HOLD`] characters are pending; then everything up to a cut that no detected
//! entity straddles is released. An unclosed placeholder (`〔氏名`) is always held back. The last
//! [`StreamScanner::CONTEXT`] released characters are kept as left context, so a label such as
//! `患者ID:` in one release still qualifies the number at the start of the next.

use crate::detector::Detector;
use crate::entity::Entity;
use crate::redact::{Mapping, apply_output};

/// Text released by a [`StreamScanner`], with the entities inside it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Released {
    /// The released text, unchanged.
    pub text: String,
    /// Code-point offset of `text` in the whole stream.
    pub offset: usize,
    /// Entities inside `text`, with offsets in the whole stream.
    pub entities: Vec<Entity>,
}

/// Chunked detection over one stream. Create one per stream; it borrows the shared detector.
pub struct StreamScanner<'d> {
    detector: &'d Detector,
    pending: String,
    context: String,
    released_chars: usize,
}

impl<'d> StreamScanner<'d> {
    /// Pending characters beyond which text is released even without a sentence break.
    pub const MAX_HOLD: usize = 256;
    /// Characters held back at the end when releasing without a sentence break.
    pub const TAIL: usize = 64;
    /// Released characters kept as left context for the next detection.
    pub const CONTEXT: usize = 32;
    /// Pending characters beyond which text is released even through an entity (a safety valve).
    pub const FORCE: usize = 4 * Self::MAX_HOLD;

    /// A scanner for a new stream.
    pub fn new(detector: &'d Detector) -> StreamScanner<'d> {
        StreamScanner {
            detector,
            pending: String::new(),
            context: String::new(),
            released_chars: 0,
        }
    }

    /// Feeds a chunk; returns whatever can be released now (possibly nothing).
    pub fn push(&mut self, chunk: &str) -> Released {
        self.pending.push_str(chunk);
        let chars: Vec<char> = self.pending.chars().collect();
        let Some(cut) = candidate_cut(&chars) else {
            return self.empty();
        };
        self.release(cut, false)
    }

    /// Ends the stream, releasing everything still held.
    pub fn finish(&mut self) -> Released {
        let n = self.pending.chars().count();
        self.release(n, true)
    }

    fn empty(&self) -> Released {
        Released {
            text: String::new(),
            offset: self.released_chars,
            entities: Vec::new(),
        }
    }

    fn release(&mut self, cut: usize, last: bool) -> Released {
        let ctx_len = self.context.chars().count();
        let window = format!("{}{}", self.context, self.pending);
        let entities = self.detector.detect(&window);
        let mut cut = ctx_len + cut;
        // Past FORCE pending characters, release at the cut whatever it splits, so memory and work
        // stay bounded on adversarial input (no real entity is that long).
        let forced = self.pending.chars().count() > Self::FORCE;
        if !last && !forced {
            // Never cut through an entity or an unclosed placeholder.
            for e in &entities {
                if e.start < cut && cut < e.end && e.start >= ctx_len {
                    cut = e.start;
                }
            }
            let wchars: Vec<char> = window.chars().collect();
            if let Some(open) = (ctx_len..cut).rev().find(|&i| wchars[i] == '〔')
                && !wchars[open..cut].contains(&'〕')
            {
                cut = open;
            }
        }
        if cut <= ctx_len {
            return self.empty();
        }
        let n = cut - ctx_len;
        let split = self
            .pending
            .char_indices()
            .nth(n)
            .map_or(self.pending.len(), |(b, _)| b);
        let text: String = self.pending[..split].to_string();
        self.pending.drain(..split);
        let base = self.released_chars;
        let out_entities = entities
            .into_iter()
            .filter(|e| e.start >= ctx_len && e.end <= cut)
            .map(|e| Entity {
                start: e.start - ctx_len + base,
                end: e.end - ctx_len + base,
                ..e
            })
            .collect();
        self.released_chars += n;
        let mut ctx: Vec<char> = self.context.chars().chain(text.chars()).collect();
        let keep = ctx.len().saturating_sub(Self::CONTEXT);
        ctx.drain(..keep);
        self.context = ctx.into_iter().collect();
        Released {
            text,
            offset: base,
            entities: out_entities,
        }
    }
}

/// Where pending text may be cut: after the last sentence break, or near the end of a long run.
fn candidate_cut(chars: &[char]) -> Option<usize> {
    if let Some(i) = chars
        .iter()
        .rposition(|c| matches!(c, '。' | '！' | '？' | '\n'))
    {
        return Some(i + 1);
    }
    if chars.len() <= StreamScanner::MAX_HOLD {
        return None;
    }
    let hard = chars.len() - StreamScanner::TAIL;
    let soft = (hard.saturating_sub(32)..hard)
        .rev()
        .find(|&i| matches!(chars[i], ' ' | '、' | ',' | '　'));
    Some(soft.map_or(hard, |i| i + 1))
}

/// One step of an [`OutputGuard`]: text for the caller and the leaks found in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputChunk {
    /// Text to send to the authorised caller: placeholders restored, leaks redacted.
    pub text: String,
    /// Placeholders of this request restored in this chunk.
    pub restored: Vec<String>,
    /// PII the model produced on its own (offsets in the raw model stream).
    pub leaks: Vec<Entity>,
}

/// The output side of the gateway for a streamed answer: a [`StreamScanner`] plus this request's
/// [`Mapping`].
pub struct OutputGuard<'d, 'm> {
    scanner: StreamScanner<'d>,
    mapping: &'m Mapping,
}

impl<'d, 'm> OutputGuard<'d, 'm> {
    /// A guard for one streamed answer to the request that produced `mapping`.
    pub fn new(detector: &'d Detector, mapping: &'m Mapping) -> OutputGuard<'d, 'm> {
        OutputGuard {
            scanner: StreamScanner::new(detector),
            mapping,
        }
    }

    /// Feeds a chunk of the model's output.
    pub fn push(&mut self, chunk: &str) -> OutputChunk {
        let r = self.scanner.push(chunk);
        self.apply(r)
    }

    /// Ends the answer, flushing what is held.
    pub fn finish(&mut self) -> OutputChunk {
        let r = self.scanner.finish();
        self.apply(r)
    }

    fn apply(&self, r: Released) -> OutputChunk {
        let local: Vec<Entity> = r
            .entities
            .iter()
            .map(|e| Entity {
                start: e.start - r.offset,
                end: e.end - r.offset,
                ..e.clone()
            })
            .collect();
        let rep = apply_output(&r.text, &local, self.mapping, r.offset);
        OutputChunk {
            text: rep.text,
            restored: rep.restored,
            leaks: rep.leaks,
        }
    }
}
