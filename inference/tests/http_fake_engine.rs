//! The HTTP layer on its own, over the [`Generate`] trait with a scripted fake engine: what a request's
//! JSON becomes (the `GenerateRequest` the engine receives), how events are framed (whole answers, SSE
//! chunks, the usage chunk, `[DONE]`, an engine failure mid-stream), and which status each refusal of
//! the engine maps to (429 queue full, 400 over the KV budget) — the cases a real model cannot be made
//! to produce on demand.

mod common;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anshin_inference::chat_template::{CHATML, ChatTemplate};
use anshin_inference::metrics::Metrics;
use anshin_inference::scheduler::{
    Completion, FinishReason, GenEvent, GenerateRequest, SubmitError,
};
use anshin_inference::server::{self, AppState, Engine, Generate};
use anshin_inference::tokenizer::TextTokenizer;
use common::{Reply, http, sse_data};
use serde_json::Value;
use tokio::sync::mpsc::{self, UnboundedReceiver};

type Script = Result<Vec<GenEvent>, SubmitError>;

/// Answers each request with the next scripted reply and records what it was asked.
#[derive(Default)]
struct Fake {
    script: Mutex<VecDeque<Script>>,
    seen: Mutex<Vec<GenerateRequest>>,
}

impl Generate for Fake {
    fn submit(&self, req: GenerateRequest) -> Result<UnboundedReceiver<GenEvent>, SubmitError> {
        self.seen.lock().expect("lock").push(req);
        let next = self.script.lock().expect("lock").pop_front();
        let events = next.expect("a scripted reply for every request")?;
        let (tx, rx) = mpsc::unbounded_channel();
        for ev in events {
            let _ = tx.send(ev);
        }
        Ok(rx)
    }
}

fn done(prompt_tokens: usize, generated: usize, reason: FinishReason) -> GenEvent {
    GenEvent::Done(Completion {
        finish_reason: reason,
        prompt_tokens,
        tokens: vec![7; generated],
    })
}

struct Server {
    addr: SocketAddr,
    fake: Arc<Fake>,
    _stop: tokio::sync::oneshot::Sender<()>,
    _rt: tokio::runtime::Runtime,
}

fn start(script: Vec<Script>) -> Server {
    let trained = anshin_inference::fixture::train_tokenizer().expect("fixture tokenizer");
    let json = trained.to_string(false).expect("tokenizer json");
    let tokenizer = TextTokenizer::from_json(&json, None, None).expect("tokenizer");
    let fake = Arc::new(Fake {
        script: Mutex::new(script.into()),
        seen: Mutex::default(),
    });
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let addr = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = AppState::new("fake", Metrics::new());
        state.set_engine(Engine {
            handle: fake.clone(),
            tokenizer: Arc::new(tokenizer),
            template: ChatTemplate::new(CHATML, None, None).expect("template"),
            default_max_tokens: 16,
        });
        let stop = async {
            let _ = stopped.await;
        };
        tokio::spawn(server::run(listener, state, stop, Duration::from_secs(1)));
        addr
    });
    Server {
        addr,
        fake,
        _stop: stop,
        _rt: rt,
    }
}

fn json(r: &Reply) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.body))
}

#[test]
fn request_fields_reach_the_engine_and_the_answer_is_assembled() {
    let s = start(vec![Ok(vec![
        GenEvent::Delta("安静に".into()),
        GenEvent::Delta("してください。".into()),
        done(12, 5, FinishReason::Length),
    ])]);
    let body = r#"{"messages":[{"role":"user","content":"頭痛があります"}],"max_tokens":5,
        "temperature":0.7,"top_p":0.9,"top_k":40,"seed":11,"stop":["。\n"]}"#;
    let r = http(s.addr, "POST", "/v1/chat/completions", Some(body));
    assert_eq!(r.status, 200, "{}", r.body);
    let v = json(&r);
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "安静にしてください。"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["prompt_tokens"], 12);
    assert_eq!(v["usage"]["completion_tokens"], 5);

    let seen = s.fake.seen.lock().expect("lock").clone();
    let req = &seen[0];
    assert_eq!(req.max_tokens, 5);
    assert_eq!(req.sampling.temperature, 0.7);
    assert_eq!(req.sampling.top_p, 0.9);
    assert_eq!(req.sampling.top_k, 40);
    assert_eq!(req.sampling.seed, Some(11));
    assert_eq!(req.stop, vec!["。\n".to_string()]);
    assert!(
        !req.prompt.is_empty(),
        "the chat template's prompt was tokenized"
    );
}

#[test]
fn a_stream_is_framed_as_openai_chunks_with_usage_and_done() {
    let s = start(vec![Ok(vec![
        GenEvent::Delta("血圧".into()),
        GenEvent::Delta("は正常".into()),
        done(4, 2, FinishReason::Stop),
    ])]);
    let body = r#"{"prompt":"血圧","stream":true,"stream_options":{"include_usage":true}}"#;
    let r = http(s.addr, "POST", "/v1/completions", Some(body));
    assert_eq!(r.status, 200);
    assert!(
        r.head.to_ascii_lowercase().contains("text/event-stream"),
        "{}",
        r.head
    );
    let data = sse_data(&r.body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).expect("chunk JSON"))
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(text, "血圧は正常");
    let finish: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, vec!["stop"]);
    let usage = &chunks.last().expect("usage chunk")["usage"];
    assert_eq!(
        (
            usage["prompt_tokens"].as_u64(),
            usage["completion_tokens"].as_u64()
        ),
        (Some(4), Some(2))
    );
}

#[test]
fn an_engine_failure_mid_stream_ends_it_with_an_error_event() {
    let s = start(vec![Ok(vec![
        GenEvent::Delta("途中".into()),
        GenEvent::Failed("device lost".into()),
    ])]);
    let r = http(
        s.addr,
        "POST",
        "/v1/completions",
        Some(r#"{"prompt":"x","stream":true}"#),
    );
    assert_eq!(r.status, 200);
    let data = sse_data(&r.body);
    let last: Value = serde_json::from_str(data.last().expect("events")).expect("JSON");
    assert_eq!(last["error"]["code"], "engine_error", "{data:?}");
    assert!(
        !data.iter().any(|d| d == "[DONE]"),
        "a failed stream must not claim [DONE]"
    );
}

#[test]
fn engine_refusals_map_to_openai_statuses() {
    let s = start(vec![
        Err(SubmitError::QueueFull(16)),
        Err(SubmitError::ExceedsKvBudget {
            needed: 9000,
            budget: 4096,
        }),
        Ok(vec![GenEvent::Failed("device lost".into())]),
    ]);
    let ask = || http(s.addr, "POST", "/v1/completions", Some(r#"{"prompt":"x"}"#));
    let busy = ask();
    assert_eq!(busy.status, 429, "{}", busy.body);
    assert!(
        json(&busy)["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("retry later"))
    );
    let big = ask();
    assert_eq!(big.status, 400, "{}", big.body);
    assert!(
        json(&big)["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("lower max_tokens"))
    );
    let failed = ask();
    assert_eq!(failed.status, 500, "{}", failed.body);
    assert_eq!(json(&failed)["error"]["type"], "server_error");
}
