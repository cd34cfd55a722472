//! Continuous batching. One actor thread owns the model, the waiting queue and every sequence's KV cache;
//! callers hold a cheap [`SchedulerHandle`] and receive [`GenEvent`]s over a channel.
//!
//! Each step: take new requests off the channel, admit waiting ones while the batch and the KV budget
//! allow, run one forward pass over all running sequences together (prompt chunks of new ones, one token
//! of the others), sample, stream text, and retire finished or cancelled sequences. A request whose
//! receiver was dropped (the client went away) is cancelled at the next step. Before each step, prompts
//! that begin like a running sequence's take its cached keys and values for the common part
//! ([`crate::prefix`]), and one whose prefix another computes in this step sits the step out.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::model::{Llama, SeqStep};
use crate::prefix;
use crate::prefix_cache::PrefixCache;
use crate::sampling::SamplingParams;
use crate::sequence::{Sequence, StepOutcome};
use crate::tokenizer::TextTokenizer;

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
}

/// Starts the actor thread that owns `model`; it stops when every handle is dropped and work is done.
pub fn spawn(
    model: Llama,
    tokenizer: Arc<TextTokenizer>,
    cfg: SchedulerConfig,
    metrics: Metrics,
) -> SchedulerHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let waiting = Arc::new(AtomicUsize::new(0));
    let cfg = Arc::new(cfg);
    let mut actor = Actor {
        model,
        tokenizer,
        cfg: cfg.clone(),
        metrics,
        rx,
        waiting_count: waiting.clone(),
        waiting: VecDeque::new(),
        running: Vec::new(),
        reserved: 0,
        cache: PrefixCache::new(),
        logits: Vec::new(),
    };
    std::thread::Builder::new()
        .name("anshin-scheduler".into())
        .spawn(move || actor.run())
        .expect("the OS can start one thread");
    SchedulerHandle { tx, waiting, cfg }
}

struct Actor {
    model: Llama,
    tokenizer: Arc<TextTokenizer>,
    cfg: Arc<SchedulerConfig>,
    metrics: Metrics,
    rx: mpsc::UnboundedReceiver<Job>,
    waiting_count: Arc<AtomicUsize>,
    waiting: VecDeque<Job>,
    running: Vec<Sequence>,
    reserved: usize,
    cache: PrefixCache,
    /// The last step's logits, `[sequences, vocab]`: one buffer reused by every step.
    logits: Vec<f32>,
}

impl Actor {
    fn run(&mut self) {
        loop {
            if self.running.is_empty() && self.waiting.is_empty() {
                match self.rx.blocking_recv() {
                    Some(job) => self.waiting.push_back(job),
                    None => return,
                }
            }
            while let Ok(job) = self.rx.try_recv() {
                self.waiting.push_back(job);
            }
            self.drop_cancelled_waiting();
            self.admit();
            self.step();
            self.publish_gauges();
        }
    }

    fn drop_cancelled_waiting(&mut self) {
        let before = self.waiting.len();
        self.waiting.retain(|j| !j.events.is_closed());
        let dropped = before - self.waiting.len();
        for _ in 0..dropped {
            self.waiting_count.fetch_sub(1, Ordering::SeqCst);
            self.metrics.request_done("cancelled");
        }
    }

    fn admit(&mut self) {
        while self.running.len() < self.cfg.max_batch {
            let Some(front) = self.waiting.front() else {
                break;
            };
            let need = front.req.prompt.len() + front.req.max_tokens;
            let Some(room) = self.cfg.kv_budget_tokens.checked_sub(self.reserved + need) else {
                break;
            };
            // Finished requests' caches give way to a request that needs their room.
            self.cache.shrink_to(room);
            let Some(job) = self.waiting.pop_front() else {
                break;
            };
            self.waiting_count.fetch_sub(1, Ordering::SeqCst);
            self.reserved += need;
            self.metrics
                .prompt_tokens
                .inc_by(job.req.prompt.len() as u64);
            let layers = self.model.config().num_layers;
            self.running.push(Sequence::new(
                job.req,
                job.events,
                job.accepted,
                layers,
                need,
            ));
        }
    }

    fn step(&mut self) {
        if self.running.is_empty() {
            return;
        }
        let chunk = self.cfg.prefill_chunk;
        let held = self.share_prefixes(chunk);
        let mut batch: Vec<SeqStep<'_>> = self
            .running
            .iter_mut()
            .zip(&held)
            .filter(|(_, held)| !**held)
            .map(|(s, _)| s.next_step(chunk))
            .collect();
        let mut logits = std::mem::take(&mut self.logits);
        let vocab = self.model.forward_into(&mut batch, &mut logits);
        drop(batch);
        let mut rows = match vocab {
            Ok(vocab) => logits.chunks_exact(vocab.max(1)),
            Err(e) => {
                self.logits = logits;
                return self.fail_all(&e.to_string());
            }
        };
        let mut keep = Vec::with_capacity(self.running.len());
        for (mut seq, held) in std::mem::take(&mut self.running).into_iter().zip(held) {
            let outcome = match (held, seq.is_cancelled()) {
                (true, false) => StepOutcome::Continue,
                (true, true) => StepOutcome::Finished("cancelled"),
                // One row per fed sequence, in order (`forward` returns as many rows as it was given).
                (false, _) => match rows.next() {
                    Some(row) => seq.after_step(row, &self.tokenizer, &self.metrics),
                    None => {
                        seq.fail("the model returned fewer logits rows than sequences");
                        StepOutcome::Finished("error")
                    }
                },
            };
            match outcome {
                StepOutcome::Continue => keep.push(seq),
                StepOutcome::Finished(status) => {
                    self.reserved -= seq.reserved_tokens();
                    self.metrics.request_done(status);
                    if self.cfg.prefix_cache && status != "error" {
                        // Its reservation (prompt + max_tokens) covered these rows and is released.
                        let (tokens, cache, scope) = seq.into_cached();
                        self.cache.insert(tokens, cache, scope);
                    }
                }
            }
        }
        self.running = keep;
        self.logits = logits;
    }

    /// Applies [`prefix::plan`]: copies shared prefixes from running sequences and from finished ones'
    /// caches (donors after the running ones); returns, per running sequence, whether it sits out this
    /// step.
    fn share_prefixes(&mut self, chunk: usize) -> Vec<bool> {
        let host = self.model.caches_host_rows();
        let n = self.running.len();
        let standings: Vec<_> = (self.running.iter().map(|s| s.standing(host)))
            .chain((0..self.cache.len()).map(|i| self.cache.standing(i)))
            .collect();
        let actions = prefix::plan(&standings, chunk);
        let mut used = Vec::new();
        for (i, action) in actions.iter().enumerate().take(n) {
            let Some((from, upto)) = action.copy else {
                continue;
            };
            let copied = if from < n {
                let (seq, donor) = pair_mut(&mut self.running, i, from);
                seq.copy_prefix(donor.donor(), upto)
            } else {
                used.push(from - n);
                self.running[i].copy_prefix(self.cache.donor(from - n), upto)
            };
            self.metrics.prefix_shared_tokens.inc_by(copied as u64);
        }
        self.cache.touch(&used);
        actions.iter().take(n).map(|a| a.hold).collect()
    }

    fn fail_all(&mut self, err: &str) {
        tracing::error!(error = %err, sequences = self.running.len(), "forward pass failed");
        for seq in self.running.drain(..) {
            seq.fail(err);
            self.reserved -= seq.reserved_tokens();
            self.metrics.request_done("error");
        }
    }

    fn publish_gauges(&self) {
        let used: usize = self.running.iter().map(Sequence::cached_tokens).sum();
        self.metrics
            .kv_utilization
            .set(used as f64 / self.cfg.kv_budget_tokens.max(1) as f64);
        self.metrics.running.set(self.running.len() as i64);
        self.metrics
            .prefix_cache_tokens
            .set(self.cache.tokens() as i64);
        self.metrics
            .queue_depth
            .set(self.waiting_count.load(Ordering::SeqCst) as i64);
    }
}

/// `(&mut v[i], &v[j])` for `i != j`.
fn pair_mut<T>(v: &mut [T], i: usize, j: usize) -> (&mut T, &T) {
    assert_ne!(i, j, "a sequence is not its own donor");
    if i < j {
        let (head, tail) = v.split_at_mut(j);
        (&mut head[i], &tail[0])
    } else {
        let (head, tail) = v.split_at_mut(i);
        (&mut tail[0], &head[j])
    }
}
