//! Redaction with typed, numbered placeholders, restoration of a request's own values, and the split
//! of what the model wrote into restored placeholders and leaks.
//!
//! A [`Mapping`] belongs to one request: the same value (compared after width/dash/space folding) gets
//! the same placeholder, e.g. `〔氏名1〕`. Leaks — PII in the model's output that is not one of this
//! request's values — are replaced by an unnumbered placeholder such as `〔氏名〕` and reported.

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::detector::Detector;
use crate::entity::{Entity, EntityType};
use crate::text::fold_char;

static PLACEHOLDER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"〔[^〔〕0-9\s]{1,8}[0-9]{0,6}〕")
        .unwrap_or_else(|e| panic!("invalid built-in pattern: {e}"))
});

/// One placeholder of a request and the value it stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingEntry {
    /// The placeholder as written in the redacted text, e.g. `〔氏名1〕`.
    pub placeholder: String,
    /// The entity type.
    #[serde(rename = "type")]
    pub kind: EntityType,
    /// The original value, as it first appeared in the request.
    pub value: String,
}

/// The placeholders of one request. Keep it with the request; never share it across requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    entries: Vec<MappingEntry>,
}

/// A redacted text with its entities and this request's mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redaction {
    /// The input with every entity replaced by its placeholder.
    pub text: String,
    /// The entities found, with offsets into the original input.
    pub entities: Vec<Entity>,
    /// Placeholder → value, for restoring the answer.
    pub mapping: Mapping,
}

/// What the output check did to a model answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputReport {
    /// The answer for the authorised caller: this request's placeholders restored, leaks redacted.
    pub text: String,
    /// Placeholders of this request that were restored, in order of appearance.
    pub restored: Vec<String>,
    /// PII the model produced that was not in the request (offsets into the raw answer).
    pub leaks: Vec<Entity>,
}

/// The comparison key of a value: folded widths, no spaces or dashes.
fn key(kind: EntityType, value: &str) -> (EntityType, String) {
    (
        kind,
        value
            .chars()
            .map(fold_char)
            .filter(|c| !matches!(c, ' ' | '-' | '\n' | '\t'))
            .collect(),
    )
}

impl Mapping {
    /// An empty mapping (for a request whose redaction spans several messages, see
    /// [`Detector::redact_with`]).
    pub fn new() -> Mapping {
        Mapping::default()
    }

    /// Every entry, in order of first appearance.
    pub fn entries(&self) -> &[MappingEntry] {
        &self.entries
    }

    /// Number of distinct values.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing was redacted.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The placeholder for `value`, allocating the next number of its type when it is new.
    pub fn placeholder_for(&mut self, kind: EntityType, value: &str) -> String {
        if let Some(e) = self.find_value(kind, value) {
            return e.placeholder.clone();
        }
        let n = self.entries.iter().filter(|e| e.kind == kind).count() + 1;
        let placeholder = format!("〔{}{}〕", kind.placeholder_label(), n);
        self.entries.push(MappingEntry {
            placeholder: placeholder.clone(),
            kind,
            value: value.to_string(),
        });
        placeholder
    }

    /// The entry whose value equals `value` (after folding), if this request contained it.
    pub fn find_value(&self, kind: EntityType, value: &str) -> Option<&MappingEntry> {
        let k = key(kind, value);
        self.entries.iter().find(|e| key(e.kind, &e.value) == k)
    }

    /// The entry for a placeholder such as `〔氏名1〕`.
    pub fn find_placeholder(&self, placeholder: &str) -> Option<&MappingEntry> {
        self.entries.iter().find(|e| e.placeholder == placeholder)
    }
}

/// Replaces this request's placeholders in `answer` by their values. Placeholders that are not in
/// `mapping` (invented by the model, or another request's) are left as they are.
pub fn restore(answer: &str, mapping: &Mapping) -> String {
    restore_counting(answer, mapping).0
}

fn restore_counting(answer: &str, mapping: &Mapping) -> (String, Vec<String>) {
    let mut out = String::with_capacity(answer.len());
    let mut restored = Vec::new();
    let mut last = 0;
    for m in PLACEHOLDER.find_iter(answer) {
        if let Some(e) = mapping.find_placeholder(m.as_str()) {
            out.push_str(&answer[last..m.start()]);
            out.push_str(&e.value);
            restored.push(e.placeholder.clone());
            last = m.end();
        }
    }
    out.push_str(&answer[last..]);
    (out, restored)
}

/// Code-point ranges of placeholders in `text` (the detector never reports entities inside them).
pub(crate) fn placeholder_ranges(text: &str) -> Vec<(usize, usize)> {
    if !text.contains('〔') {
        return Vec::new();
    }
    PLACEHOLDER
        .find_iter(text)
        .map(|m| {
            let s = text[..m.start()].chars().count();
            (s, s + m.as_str().chars().count())
        })
        .collect()
}

/// Applies an output check to `raw` given the entities detected in it (offsets relative to `raw`;
/// `offset` is added to the reported leaks).
pub(crate) fn apply_output(
    raw: &str,
    entities: &[Entity],
    mapping: &Mapping,
    offset: usize,
) -> OutputReport {
    let mut redacted = String::with_capacity(raw.len());
    let mut leaks = Vec::new();
    let mut chars = raw.char_indices().map(|(b, _)| b).chain([raw.len()]);
    let byte_of: Vec<usize> = chars.by_ref().collect();
    let mut last = 0;
    for e in entities {
        if mapping.find_value(e.kind, &e.text).is_some() {
            continue;
        }
        redacted.push_str(&raw[last..byte_of[e.start]]);
        redacted.push_str(&format!("〔{}〕", e.kind.placeholder_label()));
        last = byte_of[e.end];
        leaks.push(Entity {
            start: e.start + offset,
            end: e.end + offset,
            ..e.clone()
        });
    }
    redacted.push_str(&raw[last..]);
    let (text, restored) = restore_counting(&redacted, mapping);
    OutputReport {
        text,
        restored,
        leaks,
    }
}

impl Detector {
    /// Redacts `input` with a fresh mapping.
    pub fn redact(&self, input: &str) -> Redaction {
        let mut mapping = Mapping::new();
        let (text, entities) = self.redact_with(input, &mut mapping);
        Redaction {
            text,
            entities,
            mapping,
        }
    }

    /// Redacts `input` into an existing mapping, so that several messages of one request share
    /// placeholders. Returns the redacted text and the entities found.
    pub fn redact_with(&self, input: &str, mapping: &mut Mapping) -> (String, Vec<Entity>) {
        let entities = self.detect(input);
        let mut out = String::with_capacity(input.len());
        let mut chars = input.char_indices().map(|(b, _)| b).chain([input.len()]);
        let byte_of: Vec<usize> = chars.by_ref().collect();
        let mut last = 0;
        for e in &entities {
            out.push_str(&input[last..byte_of[e.start]]);
            out.push_str(&mapping.placeholder_for(e.kind, &e.text));
            last = byte_of[e.end];
        }
        out.push_str(&input[last..]);
        (out, entities)
    }

    /// Checks a whole model answer: restores this request's placeholders and redacts (and reports)
    /// PII that the request did not contain. Values of the request that the model repeats verbatim are
    /// not leaks.
    pub fn check_output(&self, answer: &str, mapping: &Mapping) -> OutputReport {
        let entities = self.detect(answer);
        apply_output(answer, &entities, mapping, 0)
    }
}
