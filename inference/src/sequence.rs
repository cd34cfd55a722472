//! One running request inside the scheduler: its KV cache, how much of its prompt was fed, the tokens
//! it generated, and the text it has streamed. `next_step` says what to feed; `after_step` consumes the
//! logits row, samples, streams, and says whether the sequence is done.

use std::time::Instant;

use tokio::sync::mpsc;

use crate::detok::Detokenizer;
use crate::kv_cache::SeqCache;
use crate::metrics::Metrics;
use crate::model::SeqStep;
use crate::prefix::{Standing, common_prefix};
use crate::sampling::Sampler;
use crate::scheduler::{Completion, FinishReason, GenEvent, GenerateRequest};
use crate::stop::TextStream;
use crate::tokenizer::TextTokenizer;

/// What happened to a sequence in a step.
pub enum StepOutcome {
    /// It keeps running.
    Continue,
    /// It left the batch; the value is the `status` metric label.
    Finished(&'static str),
}

/// A request in the running batch.
pub struct Sequence {
    req: GenerateRequest,
    events: mpsc::UnboundedSender<GenEvent>,
    accepted: Instant,
    cache: SeqCache,
    fed: usize,
    generated: Vec<u32>,
    sampler: Sampler,
    detok: Detokenizer,
    text: TextStream,
    last_token_at: Option<Instant>,
    reserved: usize,
}

impl Sequence {
    /// A sequence that has not been fed yet; `reserved` is its KV reservation in tokens.
    pub fn new(
        req: GenerateRequest,
        events: mpsc::UnboundedSender<GenEvent>,
        accepted: Instant,
        num_layers: usize,
        reserved: usize,
    ) -> Self {
        let sampler = Sampler::new(req.sampling.clone());
        let text = TextStream::new(req.stop.clone());
        Self {
            req,
            events,
            accepted,
            cache: SeqCache::new(num_layers),
            fed: 0,
            generated: Vec::new(),
            sampler,
            detok: Detokenizer::new(),
            text,
            last_token_at: None,
            reserved,
        }
    }

    /// The tokens to feed this step: the next prompt chunk, or the last generated token.
    pub fn next_step(&mut self, chunk: usize) -> SeqStep<'_> {
        let tokens = if self.fed < self.req.prompt.len() {
            let end = (self.fed + chunk.max(1)).min(self.req.prompt.len());
            let part = &self.req.prompt[self.fed..end];
            self.fed = end;
            part
        } else {
            // After prefill there is always a generated token (a sequence finishes otherwise).
            let last = self.generated.len().saturating_sub(1);
            &self.generated[last..]
        };
        SeqStep {
            tokens,
            cache: &mut self.cache,
        }
    }

    /// Consumes this sequence's logits row from the step that just ran.
    pub fn after_step(
        &mut self,
        logits: &[f32],
        tok: &TextTokenizer,
        metrics: &Metrics,
    ) -> StepOutcome {
        if self.events.is_closed() {
            return StepOutcome::Finished("cancelled");
        }
        if self.fed < self.req.prompt.len() {
            return StepOutcome::Continue; // still prefilling
        }
        let token = self.sampler.sample(logits);
        self.record_timing(metrics);
        self.generated.push(token);
        metrics.generated_tokens.inc();
        if !self.req.ignore_eos && tok.stop_ids.contains(&token) {
            return self.finish(FinishReason::Stop, true, tok);
        }
        if let Err(e) = self.detok.update(tok, &self.generated) {
            self.fail(&e.to_string());
            return StepOutcome::Finished("error");
        }
        let update = self.text.update(self.detok.text());
        if !update.delta.is_empty() && self.events.send(GenEvent::Delta(update.delta)).is_err() {
            return StepOutcome::Finished("cancelled");
        }
        if update.stopped {
            return self.finish(FinishReason::Stop, false, tok);
        }
        if self.generated.len() >= self.req.max_tokens {
            return self.finish(FinishReason::Length, true, tok);
        }
        StepOutcome::Continue
    }

    fn record_timing(&mut self, metrics: &Metrics) {
        let now = Instant::now();
        match self.last_token_at {
            None => metrics.ttft.observe((now - self.accepted).as_secs_f64()),
            Some(prev) => metrics.tpot.observe((now - prev).as_secs_f64()),
        }
        self.last_token_at = Some(now);
    }

    /// Sends the last text (unless a stop string cut it) and the summary.
    fn finish(&mut self, reason: FinishReason, flush: bool, tok: &TextTokenizer) -> StepOutcome {
        if flush && let Ok(text) = tok.decode(&self.generated) {
            let rest = self.text.finish(&text);
            if !rest.is_empty() {
                let _ = self.events.send(GenEvent::Delta(rest));
            }
        }
        let done = Completion {
            finish_reason: reason,
            prompt_tokens: self.req.prompt.len(),
            tokens: self.generated.clone(),
        };
        match self.events.send(GenEvent::Done(done)) {
            Ok(()) => StepOutcome::Finished("ok"),
            Err(_) => StepOutcome::Finished("cancelled"),
        }
    }

    /// Tells the client the engine failed.
    pub fn fail(&self, err: &str) {
        let _ = self.events.send(GenEvent::Failed(err.to_owned()));
    }

    /// Where this sequence stands, for [`crate::prefix::plan`]; `host` says whether the model caches host
    /// rows.
    pub fn standing(&self, host: bool) -> Standing<'_> {
        Standing {
            prompt: &self.req.prompt,
            fed: self.fed,
            cached: self.cache.len(),
            shareable: host && self.cache.holds_host_rows(),
            scope: self.req.cache_scope,
        }
    }

    /// This sequence as a donor: its prompt and its cache.
    pub fn donor(&self) -> (&[u32], &SeqCache) {
        (&self.req.prompt, &self.cache)
    }

    /// Takes a donor's cached rows (of its tokens `donor.0`) up to prompt position `upto` as this
    /// sequence's own (the tokens agree up to there); returns the number of tokens copied, 0 when the
    /// caches could not share.
    pub fn copy_prefix(&mut self, (tokens, cache): (&[u32], &SeqCache), upto: usize) -> usize {
        let from = self.fed;
        let fits = from == self.cache.len()
            && upto < self.req.prompt.len()
            && common_prefix(&self.req.prompt, tokens) >= upto;
        if !fits || !self.cache.copy_prefix_from(cache, upto) {
            return 0;
        }
        self.fed = upto;
        upto - from
    }

    /// The tokens whose keys and values the cache holds (the prompt, then the answer but for its last
    /// token, which was never fed), with the cache and the request's cache scope: what
    /// [`crate::prefix_cache`] keeps.
    pub fn into_cached(self) -> (Vec<u32>, SeqCache, u64) {
        let tokens = (self.req.prompt.iter().chain(&self.generated))
            .take(self.cache.len())
            .copied()
            .collect();
        (tokens, self.cache, self.req.cache_scope)
    }

    /// Whether the client has gone away.
    pub fn is_cancelled(&self) -> bool {
        self.events.is_closed()
    }

    /// KV reservation in tokens.
    pub fn reserved_tokens(&self) -> usize {
        self.reserved
    }

    /// Tokens currently in the KV cache.
    pub fn cached_tokens(&self) -> usize {
        self.cache.len()
    }
}
