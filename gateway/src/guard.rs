//! Guardrails on request and whole-answer bodies: input texts of a chat or completion request are
//! replaced by their redacted form (one [`Mapping`] per request, shared by all its messages); a
//! non-streamed answer's texts are checked, the caller's own values restored and leaks redacted or
//! the answer blocked. Streams are handled in [`crate::sse`].

use std::collections::BTreeMap;

use anshin_guardrails::{Detector, Entity, Mapping, restore};
use serde_json::Value;

use crate::error::{ApiError, OUTPUT_BLOCKED_MESSAGE};
use crate::table::Action;

/// Bodies up to this many bytes are guarded on the async worker itself, larger ones on the blocking
/// pool. Detection costs roughly a microsecond per character, so below this size (a few hundred
/// characters) it takes less time than handing the work to another thread and back — two wake-ups and
/// context switches, which on a busy core cost more than the detection — and is short enough not to
/// hold up the worker's other requests.
pub const INLINE_MAX_BYTES: usize = 1536;

/// Runs guardrail work `f` on a body of `size` bytes: inline when small, on the blocking pool when
/// not. `None` when the blocking task panicked.
pub(crate) async fn run_sized<T: Send + 'static>(
    size: usize,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    if size <= INLINE_MAX_BYTES {
        return Some(f());
    }
    tokio::task::spawn_blocking(f).await.ok()
}

/// Which OpenAI endpoint a body belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/completions`.
    Completion,
}

/// Counts by entity type (`"PERSON"` → 2).
pub type Counts = BTreeMap<String, u64>;

/// Adds entities to per-type counts.
pub fn count(counts: &mut Counts, entities: &[Entity]) {
    for e in entities {
        *counts.entry(e.kind.as_str().to_owned()).or_default() += 1;
    }
}

/// The result of input guardrails.
#[derive(Debug, Default)]
pub struct InputResult {
    /// This request's placeholders.
    pub mapping: Mapping,
    /// Entities replaced, by type.
    pub counts: Counts,
    /// Characters of input text (the prompt-token estimate before the backend reports usage).
    pub chars: u64,
}

/// Mutable references to every input text of a request body, or a 400 explaining the shape.
/// Roles a chat message may have; any other role would reach the chat template unchecked.
pub const ROLES: [&str; 3] = ["system", "user", "assistant"];

fn check_role(message: &Value) -> Result<(), ApiError> {
    match message.get("role").and_then(Value::as_str) {
        Some(r) if ROLES.contains(&r) => Ok(()),
        _ => Err(ApiError::BadRequest(format!(
            "every message needs a `role`, one of {}",
            ROLES.join(", ")
        ))),
    }
}

fn input_texts(kind: Kind, body: &mut Value) -> Result<Vec<&mut String>, ApiError> {
    let obj = body
        .as_object_mut()
        .ok_or_else(|| ApiError::BadRequest("the body must be a JSON object".into()))?;
    match kind {
        Kind::Chat => {
            let msgs = obj.get_mut("messages").and_then(Value::as_array_mut);
            let msgs =
                msgs.ok_or_else(|| ApiError::BadRequest("`messages` must be a list".into()))?;
            if msgs.is_empty() {
                return Err(ApiError::BadRequest("`messages` must not be empty".into()));
            }
            let mut out = Vec::new();
            for m in msgs.iter_mut() {
                check_role(m)?;
                let Some(fields) = m.as_object_mut() else {
                    continue;
                };
                for (field, value) in fields.iter_mut() {
                    match (field.as_str(), value) {
                        // An optional participant `name` is text the model may see: guarded too.
                        ("name", Value::String(s)) | ("content", Value::String(s)) => out.push(s),
                        ("content", Value::Array(parts)) => {
                            out.extend(parts.iter_mut().filter_map(|p| match p.get_mut("text") {
                                Some(Value::String(s)) => Some(s),
                                _ => None,
                            }))
                        }
                        ("content", Value::Null) => {}
                        ("content", _) => {
                            return Err(ApiError::BadRequest(
                                "message `content` must be a string or a list of parts".into(),
                            ));
                        }
                        _ => {}
                    }
                }
            }
            Ok(out)
        }
        Kind::Completion => match obj.get_mut("prompt") {
            Some(Value::String(s)) => Ok(vec![s]),
            Some(Value::Array(a)) => a
                .iter_mut()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    _ => Err(ApiError::BadRequest(
                        "`prompt` must be a string or a list of strings".into(),
                    )),
                })
                .collect(),
            _ => Err(ApiError::BadRequest(
                "`prompt` must be a string or a list of strings".into(),
            )),
        },
    }
}

/// Applies the input policy to `body` in place.
pub fn guard_input(
    det: Option<&Detector>,
    kind: Kind,
    body: &mut Value,
    action: Action,
) -> Result<InputResult, ApiError> {
    let texts = input_texts(kind, body)?;
    let mut res = InputResult {
        chars: texts.iter().map(|t| t.chars().count() as u64).sum(),
        ..Default::default()
    };
    let Some(det) = det.filter(|_| action != Action::Off) else {
        return Ok(res);
    };
    if action == Action::Block {
        for t in &texts {
            count(&mut res.counts, &det.detect(t));
        }
        if !res.counts.is_empty() {
            let types: Vec<&str> = res.counts.keys().map(String::as_str).collect();
            return Err(ApiError::InputBlocked(types.join(", ")));
        }
        return Ok(res);
    }
    for t in texts {
        let (redacted, entities) = det.redact_with(t, &mut res.mapping);
        count(&mut res.counts, &entities);
        *t = redacted;
    }
    Ok(res)
}

/// What output guardrails did to an answer.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct OutputResult {
    /// Leaks by type.
    pub leaks: Counts,
    /// Whether the answer was replaced by the block message.
    pub blocked: bool,
}

/// Mutable references to every answer text of a non-streamed response, with its choice object.
fn answer_texts(kind: Kind, body: &mut Value) -> Vec<&mut Value> {
    let Some(choices) = body.get_mut("choices").and_then(Value::as_array_mut) else {
        return Vec::new();
    };
    choices
        .iter_mut()
        .collect::<Vec<_>>()
        .into_iter()
        .filter(|c| answer_text_of(kind, c).is_some())
        .collect()
}

fn answer_text_of(kind: Kind, choice: &Value) -> Option<&str> {
    match kind {
        Kind::Chat => choice.get("message")?.get("content")?.as_str(),
        Kind::Completion => choice.get("text")?.as_str(),
    }
}

fn set_answer_text(kind: Kind, choice: &mut Value, text: String) {
    let slot = match kind {
        Kind::Chat => choice.get_mut("message").and_then(|m| m.get_mut("content")),
        Kind::Completion => choice.get_mut("text"),
    };
    if let Some(s) = slot {
        *s = Value::String(text);
    }
}

/// Applies the output policy to a whole answer in place.
pub fn guard_output(
    det: Option<&Detector>,
    kind: Kind,
    body: &mut Value,
    mapping: &Mapping,
    action: Action,
) -> OutputResult {
    let mut res = OutputResult::default();
    for choice in answer_texts(kind, body) {
        let raw = answer_text_of(kind, choice).unwrap_or_default().to_owned();
        let text = match det.filter(|_| action != Action::Off) {
            None => restore(&raw, mapping),
            Some(det) => {
                let report = det.check_output(&raw, mapping);
                count(&mut res.leaks, &report.leaks);
                if action == Action::Block && !report.leaks.is_empty() {
                    res.blocked = true;
                    if let Some(f) = choice.get_mut("finish_reason") {
                        *f = Value::String("content_filter".into());
                    }
                    OUTPUT_BLOCKED_MESSAGE.to_owned()
                } else {
                    report.text
                }
            }
        };
        set_answer_text(kind, choice, text);
    }
    res
}
