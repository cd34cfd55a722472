//! The scheduler actor: the thread that owns the model, the waiting queue and every sequence's KV cache,
//! and runs the step loop described in [`super`]. [`super::spawn`] runs it under a supervisor.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;

use super::{GenEvent, Job, SchedulerConfig};
use crate::metrics::Metrics;
use crate::model::{Llama, SeqStep};
use crate::prefix;
use crate::prefix_cache::PrefixCache;
use crate::sequence::{Sequence, StepOutcome};
use crate::tokenizer::TextTokenizer;

pub(super) struct Actor {
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
    /// Test-only fault: panic at this step (counting from 1), to exercise the supervisor.
    #[cfg(test)]
    pub(super) panic_at_step: Option<usize>,
}

impl Actor {
    /// An actor that owns `model` and takes jobs from `rx`.
    pub(super) fn new(
        model: Llama,
        tokenizer: Arc<TextTokenizer>,
        cfg: Arc<SchedulerConfig>,
        metrics: Metrics,
        rx: mpsc::UnboundedReceiver<Job>,
        waiting_count: Arc<AtomicUsize>,
    ) -> Self {
        Self {
            model,
            tokenizer,
            cfg,
            metrics,
            rx,
            waiting_count,
            waiting: VecDeque::new(),
            running: Vec::new(),
            reserved: 0,
            cache: PrefixCache::new(),
            logits: Vec::new(),
            #[cfg(test)]
            panic_at_step: None,
        }
    }

    /// The step loop; returns when every handle is gone and no work is left.
    pub(super) fn run(&mut self) {
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
        #[cfg(test)]
        if let Some(n) = self.panic_at_step.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                panic!("injected scheduler fault");
            }
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

    /// After a panic of [`Self::run`]: ends every running, waiting and queued request with `message`
    /// and closes the queue, so that later submits fail at once. Sequences the panic was moving are
    /// already gone; their receivers see the channel close. No bookkeeping (reservations, caches): the
    /// actor never runs again.
    pub(super) fn fail_everything(&mut self, message: &str) {
        self.rx.close();
        while let Ok(job) = self.rx.try_recv() {
            self.waiting.push_back(job);
        }
        for job in self.waiting.drain(..) {
            let _ = job.events.send(GenEvent::Failed(message.to_owned()));
            self.metrics.request_done("error");
        }
        for seq in self.running.drain(..) {
            seq.fail(message);
            self.metrics.request_done("error");
        }
        self.waiting_count.store(0, Ordering::SeqCst);
        self.metrics.running.set(0);
        self.metrics.queue_depth.set(0);
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
