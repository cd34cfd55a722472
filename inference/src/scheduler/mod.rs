//! Continuous batching. One actor thread owns the model, the waiting queue and every sequence's KV cache;
//! callers hold a cheap [`SchedulerHandle`] and receive [`GenEvent`]s over a channel.
//!
//! Each step: take new requests off the channel, admit waiting ones while the batch and the KV budget
//! allow, run one forward pass over all running sequences together (prompt chunks of new ones, one token
//! of the others), sample, stream text, and retire finished or cancelled sequences. A request whose
//! receiver was dropped (the client went away) is cancelled at the next step. Before each step, prompts
//! that begin like a running sequence's take its cached keys and values for the common part
//! ([`crate::prefix`]), and one whose prefix another computes in this step sits the step out.

mod actor;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tokio::sync::{mpsc, watch};

use crate::metrics::Metrics;
use crate::model::Llama;
use crate::sampling::SamplingParams;
use crate::tokenizer::TextTokenizer;
use actor::Actor;

/// One generation request, already tokenized.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    /// Prompt token ids.
    pub prompt: Vec<u32>,
    /// Most tokens to generate (clamped to the context left after the prompt).
    pub max_tokens: usize,
    /// Sampling parameters.
    pub sampling: SamplingParams,
    /// Strings that end generation; the output is cut before them.
    pub stop: Vec<String>,
    /// Keep generating past end-of-sequence tokens (benchmarks and tests that need fixed lengths).
    pub ignore_eos: bool,
    /// Who may share cached keys and values with this request ([`crate::prefix`]): only requests with
    /// the same scope do (0: requests that name none). The gateway passes each tenant's own, so that one
    /// hospital's prompts never give another's a cache hit it could time.
    pub cache_scope: u64,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-sequence token or a stop string.
    Stop,
    /// `max_tokens` (or the context) was reached.
    Length,
}

impl FinishReason {
    /// The OpenAI `finish_reason` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
        }
    }
}

/// The summary sent when a request finishes.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Prompt length in tokens.
    pub prompt_tokens: usize,
    /// Generated token ids (including a final end-of-sequence token, if any).
    pub tokens: Vec<u32>,
}

/// What a request's receiver gets.
#[derive(Debug, Clone, PartialEq)]
pub enum GenEvent {
    /// New output text.
    Delta(String),
    /// Generation finished; the last event.
    Done(Completion),
    /// The engine failed; the last event.
    Failed(String),
}

/// Why a request was not accepted.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SubmitError {
    /// The waiting queue is full (HTTP 429).
    #[error("the server is at capacity ({0} requests waiting); retry later")]
    QueueFull(usize),
    /// The prompt does not fit the context (HTTP 400).
    #[error("the prompt is {prompt} tokens but the model's context is {context} tokens")]
    PromptTooLong {
        /// Prompt tokens.
        prompt: usize,
        /// Context length.
        context: usize,
    },
    /// The request alone needs more KV cache than the server's budget (HTTP 400).
    #[error(
        "prompt plus max_tokens needs {needed} tokens of KV cache but the budget is {budget}; lower max_tokens"
    )]
    ExceedsKvBudget {
        /// Tokens needed.
        needed: usize,
        /// Budget in tokens.
        budget: usize,
    },
    /// The prompt is empty (HTTP 400).
    #[error("the prompt is empty")]
    EmptyPrompt,
    /// The engine thread has stopped (HTTP 503).
    #[error("the inference engine has stopped")]
    Stopped,
}

/// Limits of the scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Requests allowed to wait for a batch slot before new ones get 429.
    pub max_waiting: usize,
    /// Sequences decoded together at most.
    pub max_batch: usize,
    /// Total KV cache, in tokens, over all running sequences.
    pub kv_budget_tokens: usize,
    /// Prompt tokens fed per sequence per step (long prompts are prefilled in chunks).
    pub prefill_chunk: usize,
    /// The model's context length.
    pub max_context: usize,
    /// Keep finished requests' caches (within the KV budget) for later prompts that begin the same
    /// way ([`crate::prefix_cache`]).
    pub prefix_cache: bool,
}

/// A request in the actor's queue.
struct Job {
    req: GenerateRequest,
    events: mpsc::UnboundedSender<GenEvent>,
    accepted: Instant,
}

/// A cloneable handle to the scheduler actor.
#[derive(Clone)]
pub struct SchedulerHandle {
    tx: mpsc::UnboundedSender<Job>,
    waiting: Arc<AtomicUsize>,
    cfg: Arc<SchedulerConfig>,
    /// Set once, with the reason, when the actor thread died.
    died: watch::Receiver<Option<String>>,
}

impl SchedulerHandle {
    /// Queues a request; events arrive on the returned receiver. Dropping it cancels the request.
    pub fn submit(
        &self,
        mut req: GenerateRequest,
    ) -> Result<mpsc::UnboundedReceiver<GenEvent>, SubmitError> {
        let c = &self.cfg;
        if req.prompt.is_empty() {
            return Err(SubmitError::EmptyPrompt);
        }
        if req.prompt.len() >= c.max_context {
            return Err(SubmitError::PromptTooLong {
                prompt: req.prompt.len(),
                context: c.max_context,
            });
        }
        req.max_tokens = req.max_tokens.clamp(1, c.max_context - req.prompt.len());
        let needed = req.prompt.len() + req.max_tokens;
        if needed > c.kv_budget_tokens {
            return Err(SubmitError::ExceedsKvBudget {
                needed,
                budget: c.kv_budget_tokens,
            });
        }
        self.waiting
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
                (w < c.max_waiting).then_some(w + 1)
            })
            .map_err(SubmitError::QueueFull)?;
        let (events, rx) = mpsc::unbounded_channel();
        let job = Job {
            req,
            events,
            accepted: Instant::now(),
        };
        if self.tx.send(job).is_err() {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(SubmitError::Stopped);
        }
        Ok(rx)
    }

    /// The scheduler's limits.
    pub fn config(&self) -> &SchedulerConfig {
        &self.cfg
    }

    /// Resolves, with the reason, once the actor thread has died (a panic); pending while it runs and
    /// after a normal stop.
    pub fn stopped(&self) -> impl Future<Output = String> + Send + 'static {
        let mut died = self.died.clone();
        async move {
            let reason = died
                .wait_for(Option::is_some)
                .await
                .map(|r| r.clone().unwrap_or_default());
            match reason {
                Ok(reason) => reason,
                // The actor ended normally (every handle dropped): it never dies.
                Err(_) => std::future::pending().await,
            }
        }
    }
}

/// Starts the actor thread that owns `model`; it stops when every handle is dropped and work is done.
/// The thread runs under a supervisor: if the actor panics, every request it held or that waits in its
/// queue fails with the reason, new submits fail with [`SubmitError::Stopped`], and
/// [`SchedulerHandle::stopped`] resolves, which the server turns into 503s and an exit.
pub fn spawn(
    model: Llama,
    tokenizer: Arc<TextTokenizer>,
    cfg: SchedulerConfig,
    metrics: Metrics,
) -> SchedulerHandle {
    spawn_actor(model, tokenizer, cfg, metrics, |_| {})
}

fn spawn_actor(
    model: Llama,
    tokenizer: Arc<TextTokenizer>,
    cfg: SchedulerConfig,
    metrics: Metrics,
    configure: impl FnOnce(&mut Actor),
) -> SchedulerHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let waiting = Arc::new(AtomicUsize::new(0));
    let cfg = Arc::new(cfg);
    let (died_tx, died) = watch::channel(None);
    let mut actor = Actor::new(model, tokenizer, cfg.clone(), metrics, rx, waiting.clone());
    configure(&mut actor);
    std::thread::Builder::new()
        .name("anshin-scheduler".into())
        .spawn(move || supervise(actor, died_tx))
        .expect("the OS can start one thread");
    SchedulerHandle {
        tx,
        waiting,
        cfg,
        died,
    }
}

/// What requests the dead actor held are told (the panic's own text goes to the log, not to callers).
pub const STOPPED_MESSAGE: &str = "the inference engine stopped; retry on another replica";

/// Runs the actor; on a panic, fails its requests and reports the reason on `died`. The clean-up runs
/// under its own `catch_unwind`, so `died` is set even if the actor's state is too broken to clean up.
fn supervise(mut actor: Actor, died: watch::Sender<Option<String>>) {
    let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| actor.run())) else {
        return;
    };
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| actor.fail_everything(STOPPED_MESSAGE)));
    died.send_replace(Some(format!("the scheduler thread panicked: {what}")));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{fixture, loader};

    /// A panic in the actor (injected at its third step) fails the running and the waiting request,
    /// refuses later submits, and resolves `stopped` with the panic's message — instead of a thread that
    /// is gone and a handle that still accepts work.
    #[test]
    fn a_panicking_actor_fails_its_requests_and_reports_why() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = fixture::write_hf(dir.path(), false).expect("fixture");
        let m = loader::load(&path, None, &candle_core::Device::Cpu).expect("load");
        let tok = Arc::new(m.tokenizer);
        let cfg = SchedulerConfig {
            max_waiting: 8,
            max_batch: 1,
            kv_budget_tokens: 8192,
            prefill_chunk: 8,
            max_context: 4096,
            prefix_cache: false,
        };
        let handle = spawn_actor(m.model, tok.clone(), cfg, Metrics::new(), |a| {
            a.panic_at_step = Some(3)
        });
        let req = GenerateRequest {
            prompt: tok.encode("患者は").expect("encode"),
            max_tokens: 50,
            sampling: SamplingParams::default(),
            stop: vec![],
            ignore_eos: true,
            cache_scope: 0,
        };
        let running = handle.submit(req.clone()).expect("accepted");
        let queued = handle.submit(req.clone()).expect("accepted");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let wait = std::time::Duration::from_secs(30);
        let reason = rt
            .block_on(async { tokio::time::timeout(wait, handle.stopped()).await })
            .expect("the supervisor reports the death");
        assert!(reason.contains("injected scheduler fault"), "{reason}");
        for mut rx in [running, queued] {
            let mut last = None;
            while let Some(ev) = rx.blocking_recv() {
                last = Some(ev);
            }
            assert_eq!(last, Some(GenEvent::Failed(STOPPED_MESSAGE.into())));
        }
        assert_eq!(handle.submit(req).err(), Some(SubmitError::Stopped));
    }
}
