//! A scripted fake engine behind the real HTTP server, in-process on loopback: each request gets the
//! next scripted reply, every `GenerateRequest` is recorded, and the engine can be made to die.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anshin_inference::chat_template::{CHATML, ChatTemplate};
use anshin_inference::metrics::Metrics;
use anshin_inference::scheduler::{
    Completion, FinishReason, GenEvent, GenerateRequest, SubmitError,
};
use anshin_inference::server::auth::ApiKey;
use anshin_inference::server::{self, AppState, Engine, Generate, ServeError};
use anshin_inference::tokenizer::TextTokenizer;
use futures::future::BoxFuture;
use tokio::sync::mpsc::{self, UnboundedReceiver};
use tokio::sync::watch;

/// One scripted reply: the events of an accepted request, or a refusal.
pub type Script = Result<Vec<GenEvent>, SubmitError>;

/// Answers each request with the next scripted reply and records what it was asked.
pub struct Fake {
    script: Mutex<VecDeque<Script>>,
    /// Every request the engine received, in order.
    pub seen: Mutex<Vec<GenerateRequest>>,
    died: watch::Sender<Option<String>>,
}

impl Fake {
    /// Makes the engine stop for good, as a dead scheduler thread does.
    pub fn die(&self, reason: &str) {
        self.died.send_replace(Some(reason.to_owned()));
    }

    /// The requests received so far.
    pub fn seen(&self) -> Vec<GenerateRequest> {
        self.seen.lock().expect("lock").clone()
    }
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

    fn stopped(&self) -> BoxFuture<'static, String> {
        let mut died = self.died.subscribe();
        Box::pin(async move {
            let reason = died
                .wait_for(Option::is_some)
                .await
                .map(|r| r.clone().unwrap_or_default());
            match reason {
                Ok(reason) => reason,
                // The actor ended normally (every handle dropped): it never dies.
                Err(_) => std::future::pending().await,
            }
        })
    }
}

/// A finished request's last event.
pub fn done(prompt_tokens: usize, generated: usize, reason: FinishReason) -> GenEvent {
    GenEvent::Done(Completion {
        finish_reason: reason,
        prompt_tokens,
        tokens: vec![7; generated],
    })
}

/// A running server over a [`Fake`].
pub struct FakeServer {
    pub addr: SocketAddr,
    pub fake: Arc<Fake>,
    /// The server task: what [`server::run`] returned.
    pub served: Option<tokio::task::JoinHandle<Result<(), ServeError>>>,
    pub tokenizer: Arc<TextTokenizer>,
    pub rt: tokio::runtime::Runtime,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl FakeServer {
    /// Waits (at most `timeout`) for the server task to end; what it returned.
    pub fn wait_served(&mut self, timeout: Duration) -> Result<(), ServeError> {
        let served = self.served.take().expect("the server task");
        self.rt
            .block_on(async { tokio::time::timeout(timeout, served).await })
            .expect("the server ended in time")
            .expect("the server task did not panic")
    }
}

/// The fixture's tokenizer (ChatML special tokens).
pub fn fixture_tokenizer() -> TextTokenizer {
    let trained = anshin_inference::fixture::train_tokenizer().expect("fixture tokenizer");
    let json = trained.to_string(false).expect("tokenizer json");
    TextTokenizer::from_json(&json, None, None).expect("tokenizer")
}

/// Serves `script` with the ChatML template, requiring `api_key` when given.
pub fn start_fake(script: Vec<Script>, api_key: Option<&str>) -> FakeServer {
    let tokenizer = Arc::new(fixture_tokenizer());
    let (died, _) = watch::channel(None);
    let fake = Arc::new(Fake {
        script: Mutex::new(script.into()),
        seen: Mutex::default(),
        died,
    });
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (addr, served) = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut state = AppState::new("fake", Metrics::new());
        if let Some(key) = api_key {
            state = state.with_api_key(ApiKey::new(key));
        }
        state.set_engine(Engine {
            handle: fake.clone(),
            tokenizer: tokenizer.clone(),
            template: ChatTemplate::new(CHATML, None, None).expect("template"),
            default_max_tokens: 16,
        });
        let stop = async {
            let _ = stopped.await;
        };
        let served = tokio::spawn(server::run(listener, state, stop, Duration::from_secs(1)));
        (addr, served)
    });
    FakeServer {
        addr,
        fake,
        served: Some(served),
        tokenizer,
        rt,
        _stop: stop,
    }
}
