//! OpenAI request and response bodies (the subset Anshin serves), and their conversion to a
//! [`GenerateRequest`].

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::chat_template::ChatMessage;
use crate::sampling::SamplingParams;
use crate::scheduler::{Completion, GenerateRequest};
use crate::server::error::ApiError;

/// Most stop strings a request may give.
pub const MAX_STOPS: usize = 4;
/// Longest stop string, in bytes.
pub const MAX_STOP_BYTES: usize = 256;

/// `stop`: one string or a list.
#[derive(Debug, Deserialize, Default)]
#[serde(untagged)]
pub enum Stop {
    /// No stop strings.
    #[default]
    None,
    /// One stop string.
    One(String),
    /// Several stop strings.
    Many(Vec<String>),
}

/// `stream_options`.
#[derive(Debug, Deserialize, Default)]
pub struct StreamOptions {
    /// Send a last chunk with token usage.
    #[serde(default)]
    pub include_usage: bool,
}

/// Sampling fields shared by both endpoints.
#[derive(Debug, Deserialize, Default)]
pub struct CommonParams {
    /// Requested model name (informational: one model per server).
    pub model: Option<String>,
    /// Most tokens to generate.
    pub max_tokens: Option<usize>,
    /// Newer name for `max_tokens` in chat.
    pub max_completion_tokens: Option<usize>,
    /// Sampling temperature (0 = greedy; OpenAI's default is 1).
    pub temperature: Option<f32>,
    /// Nucleus sampling mass.
    pub top_p: Option<f32>,
    /// Top-k (an extension OpenAI does not have).
    pub top_k: Option<usize>,
    /// RNG seed.
    pub seed: Option<u64>,
    /// Stop strings.
    #[serde(default)]
    pub stop: Stop,
    /// Stream as server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Streaming options.
    pub stream_options: Option<StreamOptions>,
    /// Number of choices; only 1 is supported.
    pub n: Option<usize>,
    /// Generate past end-of-sequence tokens (an extension, as in vLLM).
    #[serde(default)]
    pub ignore_eos: bool,
}

/// `POST /v1/chat/completions` body.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// Sampling and streaming fields.
    #[serde(flatten)]
    pub params: CommonParams,
}

/// `POST /v1/completions` body.
#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    /// The prompt: a string or a list holding one string.
    pub prompt: Value,
    /// Sampling and streaming fields.
    #[serde(flatten)]
    pub params: CommonParams,
}

impl CompletionRequest {
    /// The prompt text.
    pub fn prompt_text(&self) -> Result<String, ApiError> {
        match &self.prompt {
            Value::String(s) => Ok(s.clone()),
            Value::Array(a) if a.len() == 1 => a[0]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| ApiError::Invalid("prompt must be a string".into())),
            _ => Err(ApiError::Invalid(
                "prompt must be a string or a list of one string".into(),
            )),
        }
    }
}

impl CommonParams {
    /// A scheduler request for `prompt` tokens, validating ranges.
    pub fn to_request(
        &self,
        prompt: Vec<u32>,
        default_max_tokens: usize,
    ) -> Result<GenerateRequest, ApiError> {
        if self.n.unwrap_or(1) != 1 {
            return Err(ApiError::Invalid("only n = 1 is supported".into()));
        }
        let temperature = self.temperature.unwrap_or(1.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(ApiError::Invalid(format!(
                "temperature {temperature} is outside 0..=2"
            )));
        }
        let top_p = self.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ApiError::Invalid(format!(
                "top_p {top_p} is outside (0, 1]"
            )));
        }
        let max_tokens = self
            .max_completion_tokens
            .or(self.max_tokens)
            .unwrap_or(default_max_tokens);
        if max_tokens == 0 {
            return Err(ApiError::Invalid("max_tokens must be at least 1".into()));
        }
        let stop = self.stop_strings()?;
        let sampling = SamplingParams {
            temperature,
            top_p,
            top_k: self.top_k.unwrap_or(0),
            seed: self.seed,
        };
        Ok(GenerateRequest {
            prompt,
            max_tokens,
            sampling,
            stop,
            ignore_eos: self.ignore_eos,
            cache_scope: 0,
        })
    }

    /// The stop strings: at most [`MAX_STOPS`], each 1 to [`MAX_STOP_BYTES`] bytes, since every generated
    /// token is checked against them on the scheduler thread that all requests share.
    fn stop_strings(&self) -> Result<Vec<String>, ApiError> {
        let stop = match &self.stop {
            Stop::None => vec![],
            Stop::One(s) => vec![s.clone()],
            Stop::Many(v) => v.clone(),
        };
        if stop.len() > MAX_STOPS {
            return Err(ApiError::Invalid(format!(
                "{} stop strings given; at most {MAX_STOPS} are allowed",
                stop.len()
            )));
        }
        for s in &stop {
            if s.is_empty() {
                return Err(ApiError::Invalid(
                    "a stop string is empty; leave it out".into(),
                ));
            }
            if s.len() > MAX_STOP_BYTES {
                return Err(ApiError::Invalid(format!(
                    "a stop string is {} bytes long; at most {MAX_STOP_BYTES} bytes are allowed",
                    s.len()
                )));
            }
        }
        Ok(stop)
    }

    /// Whether the stream ends with a usage chunk.
    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage)
    }
}

/// `usage` object of a finished request.
pub fn usage(c: &Completion) -> Value {
    json!({"prompt_tokens": c.prompt_tokens, "completion_tokens": c.tokens.len(),
           "total_tokens": c.prompt_tokens + c.tokens.len()})
}

/// The two response shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Kind {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/completions`.
    Text,
}

/// One streamed chunk: `delta` text, or the final `finish_reason`.
pub fn chunk(
    kind: Kind,
    id: &str,
    model: &str,
    created: u64,
    text: Option<&str>,
    finish: Option<&str>,
) -> Value {
    match kind {
        Kind::Chat => {
            let delta = match text {
                Some(t) => json!({"content": t}),
                None if finish.is_none() => json!({"role": "assistant", "content": ""}),
                None => json!({}),
            };
            json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}]})
        }
        Kind::Text => {
            json!({"id": id, "object": "text_completion", "created": created, "model": model,
            "choices": [{"index": 0, "text": text.unwrap_or(""), "finish_reason": finish, "logprobs": null}]})
        }
    }
}

/// The whole (non-streamed) response.
pub fn full_response(
    kind: Kind,
    id: &str,
    model: &str,
    created: u64,
    text: &str,
    c: &Completion,
) -> Value {
    let finish = c.finish_reason.as_str();
    let choice = match kind {
        Kind::Chat => json!({"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": finish, "logprobs": null}),
        Kind::Text => json!({"index": 0, "text": text, "finish_reason": finish, "logprobs": null}),
    };
    let object = if kind == Kind::Chat {
        "chat.completion"
    } else {
        "text_completion"
    };
    json!({"id": id, "object": object, "created": created, "model": model, "choices": [choice], "usage": usage(c)})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_stop(stop: Stop) -> Result<GenerateRequest, ApiError> {
        let params = CommonParams {
            stop,
            ..CommonParams::default()
        };
        params.to_request(vec![1, 2, 3], 16)
    }

    #[test]
    fn stop_strings_are_capped_in_number_and_length() {
        let ok = "。".repeat(85) + "x"; // 256 bytes
        assert_eq!(ok.len(), MAX_STOP_BYTES);
        let req = with_stop(Stop::Many(vec![
            ok.clone(),
            "a".into(),
            "b".into(),
            "c".into(),
        ]));
        assert_eq!(req.expect("four stops of up to 256 bytes").stop.len(), 4);

        let too_long = ok + "y";
        for (stop, says) in [
            (Stop::One(too_long.clone()), "257 bytes long; at most 256"),
            (
                Stop::Many(vec!["a".into(), too_long]),
                "257 bytes long; at most 256",
            ),
            (Stop::One(String::new()), "stop string is empty"),
            (
                Stop::Many(vec!["a".into(), String::new()]),
                "stop string is empty",
            ),
            (
                Stop::Many(vec!["a".into(); 5]),
                "5 stop strings given; at most 4",
            ),
        ] {
            let err = with_stop(stop).expect_err(says);
            assert!(matches!(err, ApiError::Invalid(_)), "{err}");
            assert!(err.to_string().contains(says), "{err}");
        }
    }
}
