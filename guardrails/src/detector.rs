//! The detector: runs the structured rules, the analyser-based name and address rules and the
//! birth-date rule over one normalised view of the input, then resolves overlaps into a sorted list of
//! non-overlapping entities.

use crate::dict::Dictionary;
use crate::entity::{Entity, EntityType, Span};
use crate::morph::WorkerPool;
use crate::text::Text;
use crate::words::Words;
use crate::{address, dates, morph, names, rules};

/// Detects Japanese PII. Build once with [`Detector::new`] and share it (`Send + Sync`, e.g. in an
/// `Arc`); each call allocates only per-call scratch space.
pub struct Detector {
    dict: Dictionary,
    workers: WorkerPool,
}

impl Detector {
    /// Wraps a loaded dictionary (see [`Dictionary::load_default`]).
    pub fn new(dict: Dictionary) -> Detector {
        let workers = WorkerPool::new(&dict);
        Detector { dict, workers }
    }

    /// Loads the dictionary from its default location and builds a detector.
    pub fn load_default() -> crate::Result<Detector> {
        Ok(Detector::new(Dictionary::load_default()?))
    }

    /// Finds every entity in `input`, sorted by start, never overlapping. Offsets are code points.
    pub fn detect(&self, input: &str) -> Vec<Entity> {
        let text = Text::new(input);
        let spans = self.spans(&text);
        let orig: Vec<usize> = input
            .char_indices()
            .map(|(b, _)| b)
            .chain([input.len()])
            .collect();
        spans
            .into_iter()
            .map(|s| Entity {
                kind: s.kind,
                start: s.start,
                end: s.end,
                text: input[orig[s.start]..orig[s.end]].to_string(),
            })
            .collect()
    }

    /// The analyser's tokens for `input` as `(surface, IPADIC feature)` pairs — for inspecting why a
    /// name or address was (not) found.
    pub fn analyse(&self, input: &str) -> Vec<(String, String)> {
        let mut worker = self.dict.tokenizer.new_worker();
        worker.reset_sentence(Text::new(input).norm);
        worker.tokenize();
        worker
            .token_iter()
            .map(|t| (t.surface().to_string(), t.feature().to_string()))
            .collect()
    }

    fn spans(&self, text: &Text) -> Vec<Span> {
        let mut spans = Vec::new();
        rules::find(text, &mut spans);
        let toks = morph::tokenize(&self.workers, text);
        let words = Words {
            text,
            toks: &toks,
            dict: &self.dict,
        };
        address::find(&words, &mut spans);
        names::find(&words, &self.dict, &mut spans);
        rules::postal_before_address(text, &mut spans);
        let persons: Vec<Span> = spans
            .iter()
            .filter(|s| s.kind == EntityType::Person)
            .copied()
            .collect();
        dates::find(text, &persons, &mut spans);
        resolve(text, spans)
    }
}

/// Lower wins when spans overlap: checksummed and labelled identifiers first, names last.
fn priority(kind: EntityType) -> u8 {
    match kind {
        EntityType::MyNumber => 0,
        EntityType::Email => 1,
        EntityType::Phone => 2,
        EntityType::PostalCode => 3,
        EntityType::InsuranceId => 4,
        EntityType::PatientId => 5,
        EntityType::BirthDate => 6,
        EntityType::Address => 7,
        EntityType::Person => 8,
    }
}

/// Trims spaces at the edges, drops empty spans and spans inside placeholders (`〔氏名1〕`), and keeps
/// the best of overlapping spans.
fn resolve(text: &Text, mut spans: Vec<Span>) -> Vec<Span> {
    for s in &mut spans {
        while s.start < s.end && text.at(s.start) == Some(' ') {
            s.start += 1;
        }
        while s.end > s.start && text.at(s.end - 1) == Some(' ') {
            s.end -= 1;
        }
    }
    spans.retain(|s| s.end > s.start && s.end <= text.len());
    spans.sort_by_key(|s| {
        (
            priority(s.kind),
            std::cmp::Reverse(s.end - s.start),
            s.start,
        )
    });
    let mut taken = vec![false; text.len()];
    for (s, e) in crate::redact::placeholder_ranges(&text.norm) {
        taken[s..e].iter_mut().for_each(|t| *t = true);
    }
    let mut kept = Vec::with_capacity(spans.len());
    for s in spans {
        if taken[s.start..s.end].iter().any(|&t| t) {
            continue;
        }
        taken[s.start..s.end].iter_mut().for_each(|t| *t = true);
        kept.push(s);
    }
    kept.sort_by_key(|s| s.start);
    kept
}
