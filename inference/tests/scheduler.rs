//! Continuous batching through the scheduler actor: concurrency never changes greedy tokens, late joiners
//! and early leavers do not disturb others, the queue is bounded, the KV budget holds requests back (or
//! refuses one that could never fit), dropped receivers cancel, and requests with a common prefix share its
//! keys and values without changing their tokens.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anshin_inference::fixture;
use anshin_inference::loader;
use anshin_inference::metrics::Metrics;
use anshin_inference::prefix;
use anshin_inference::sampling::SamplingParams;
use anshin_inference::scheduler::{
    self, GenEvent, GenerateRequest, SchedulerConfig, SchedulerHandle, SubmitError,
};
use anshin_inference::tokenizer::TextTokenizer;
use candle_core::Device;
use tokio::sync::mpsc::UnboundedReceiver;

type Started = (
    SchedulerHandle,
    Arc<TextTokenizer>,
    Metrics,
    tempfile::TempDir,
);

fn start(max_batch: usize, max_waiting: usize) -> Started {
    start_with(SchedulerConfig {
        max_waiting,
        max_batch,
        kv_budget_tokens: 8192,
        prefill_chunk: 8,
        max_context: 4096,
        prefix_cache: false,
    })
}

fn start_with(cfg: SchedulerConfig) -> Started {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = fixture::write_hf(dir.path(), false).expect("fixture");
    let m = loader::load(&path, None, &Device::Cpu).expect("load");
    let tok = Arc::new(m.tokenizer);
    let metrics = Metrics::new();
    (
        scheduler::spawn(m.model, tok.clone(), cfg, metrics.clone()),
        tok,
        metrics,
        dir,
    )
}

fn request(tok: &TextTokenizer, prompt: &str, max_tokens: usize) -> GenerateRequest {
    GenerateRequest {
        prompt: tok.encode(prompt).expect("encode"),
        max_tokens,
        sampling: SamplingParams::default(),
        stop: vec![],
        ignore_eos: true,
        cache_scope: 0,
    }
}

fn tokens(mut rx: UnboundedReceiver<GenEvent>) -> Vec<u32> {
    while let Some(ev) = rx.blocking_recv() {
        match ev {
            GenEvent::Delta(_) => {}
            GenEvent::Done(c) => return c.tokens,
            GenEvent::Failed(e) => panic!("generation failed: {e}"),
        }
    }
    panic!("stream ended without Done")
}

/// Waits (at most 10 s) until the metrics text contains `line`; the actor counts just after it replies.
fn wait_metric(metrics: &Metrics, line: &str) {
    let start = Instant::now();
    while !metrics.render().contains(line) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "metric never showed `{line}`"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

const PROMPTS: [&str; 4] = [
    "頭痛と発熱があります。",
    "血圧 142/88 mmHg",
    "セフトリアキソン点滴静注を開始し、解熱傾向を確認した。",
    "Take one",
];

#[test]
fn concurrent_requests_get_the_same_greedy_tokens_as_sequential_ones() {
    let (h, tok, metrics, _dir) = start(8, 16);
    let alone: Vec<Vec<u32>> = PROMPTS
        .iter()
        .map(|p| tokens(h.submit(request(&tok, p, 20)).expect("submit")))
        .collect();
    let rxs: Vec<_> = PROMPTS
        .iter()
        .map(|p| h.submit(request(&tok, p, 20)).expect("submit"))
        .collect();
    let together: Vec<Vec<u32>> = rxs.into_iter().map(tokens).collect();
    assert_eq!(alone, together);
    wait_metric(&metrics, "anshin_inference_requests_total{status=\"ok\"} 8");
}

/// A note that several requests share, several prefill chunks (8 tokens here) long.
const NOTE: &str = "患者は65歳男性。3日前からの発熱と湿性咳嗽。高血圧と2型糖尿病でアムロジピンとメトホルミンを内服中。";

#[test]
fn requests_sharing_a_prefix_copy_it_and_get_the_same_greedy_tokens() {
    let (h, tok, metrics, _dir) = start(8, 16);
    let prompts: Vec<String> = ["診断は?", "次に行う検査は?", "治療方針は?", "注意点は?"]
        .iter()
        .map(|q| format!("{NOTE}{q}"))
        .collect();
    let alone: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| tokens(h.submit(request(&tok, p, 12)).expect("submit")))
        .collect();
    // One at a time there is no running donor.
    assert!(
        metrics
            .render()
            .contains("anshin_inference_prefix_shared_tokens_total 0\n")
    );
    let rxs: Vec<_> = prompts
        .iter()
        .map(|p| h.submit(request(&tok, p, 12)).expect("submit"))
        .collect();
    let together: Vec<Vec<u32>> = rxs.into_iter().map(tokens).collect();
    assert_eq!(alone, together);
    // Every later request takes its common prefix with the first (all but its last token), except a
    // tail shorter than a prefill chunk (8 tokens here), which it computes rather than wait a step for.
    let ids: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| tok.encode(p).expect("encode"))
        .collect();
    let expected: usize = ids[1..]
        .iter()
        .map(|p| prefix::common_prefix(p, &ids[0]).min(p.len() - 1) - 7)
        .sum();
    assert!(
        expected >= 3 * prefix::MIN_SHARED_TOKENS,
        "the note is long enough"
    );
    let shared = metric_value(&metrics, "anshin_inference_prefix_shared_tokens_total");
    assert!(
        shared >= expected as f64,
        "{shared} tokens shared, expected at least {expected}"
    );
}

fn metric_value(metrics: &Metrics, name: &str) -> f64 {
    let text = metrics.render();
    let line = text
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("no metric {name}"));
    line[name.len()..].trim().parse().expect("a number")
}

#[test]
fn sequences_joining_and_leaving_do_not_change_a_running_one() {
    let (h, tok, _m, _dir) = start(8, 16);
    let reference = tokens(h.submit(request(&tok, PROMPTS[2], 60)).expect("submit"));
    let mut long = h.submit(request(&tok, PROMPTS[2], 60)).expect("submit");
    // Wait until the long request streams, then let short requests join and leave while it runs.
    let first = long.blocking_recv().expect("first event");
    assert!(matches!(first, GenEvent::Delta(_)));
    let short: Vec<_> = PROMPTS
        .iter()
        .map(|p| h.submit(request(&tok, p, 5)).expect("submit"))
        .collect();
    let short_tokens: Vec<Vec<u32>> = short.into_iter().map(tokens).collect();
    assert!(short_tokens.iter().all(|t| t.len() == 5));
    assert_eq!(tokens(long), reference);
}

#[test]
fn a_full_queue_refuses_with_queue_full() {
    let (h, tok, _m, _dir) = start(1, 2);
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..8 {
        match h.submit(request(&tok, PROMPTS[0], 400)) {
            Ok(rx) => held.push(rx),
            Err(SubmitError::QueueFull(n)) => {
                assert_eq!(n, 2);
                refused += 1;
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert!(
        refused >= 4,
        "only {refused} of 8 were refused with a queue of 2 and a batch of 1"
    );
}

#[test]
fn dropping_the_receiver_cancels_the_request() {
    let (h, tok, metrics, _dir) = start(4, 4);
    let mut rx = h.submit(request(&tok, PROMPTS[0], 3000)).expect("submit");
    assert!(matches!(rx.blocking_recv(), Some(GenEvent::Delta(_))));
    drop(rx);
    wait_metric(
        &metrics,
        "anshin_inference_requests_total{status=\"cancelled\"} 1",
    );
    // The slot is free again: a new request completes.
    assert_eq!(
        tokens(h.submit(request(&tok, PROMPTS[1], 3)).expect("submit")).len(),
        3
    );
}

#[test]
fn prompt_longer_than_the_context_is_refused() {
    let (h, tok, _m, _dir) = start(1, 1);
    let mut req = request(&tok, PROMPTS[0], 1);
    req.prompt = vec![5; 5000];
    assert_eq!(
        h.submit(req).expect_err("too long"),
        SubmitError::PromptTooLong {
            prompt: 5000,
            context: 4096
        }
    );
}

#[test]
fn a_request_waits_while_the_kv_budget_is_taken_and_runs_when_it_frees() {
    let (h, tok, metrics, _dir) = start_with(SchedulerConfig {
        max_waiting: 4,
        max_batch: 8,
        kv_budget_tokens: 1200,
        prefill_chunk: 8,
        max_context: 4096,
        prefix_cache: false,
    });
    // The first request reserves prompt + 1000 tokens of the 1200; the second needs about 100 more
    // than is left, so it must wait although the batch has room for it.
    let mut first = h.submit(request(&tok, PROMPTS[0], 1000)).expect("submit");
    assert!(matches!(first.blocking_recv(), Some(GenEvent::Delta(_))));
    let second = h.submit(request(&tok, PROMPTS[1], 300)).expect("submit");
    wait_metric(&metrics, "anshin_inference_queue_depth 1");
    wait_metric(&metrics, "anshin_inference_running_sequences 1");
    drop(first);
    assert_eq!(tokens(second).len(), 300);
}

#[test]
fn a_request_larger_than_the_kv_budget_is_refused() {
    let (h, tok, _m, _dir) = start_with(SchedulerConfig {
        max_waiting: 4,
        max_batch: 8,
        kv_budget_tokens: 100,
        prefill_chunk: 8,
        max_context: 4096,
        prefix_cache: false,
    });
    let req = request(&tok, PROMPTS[0], 200);
    let needed = req.prompt.len() + 200;
    assert_eq!(
        h.submit(req).expect_err("over the budget"),
        SubmitError::ExceedsKvBudget {
            needed,
            budget: 100
        }
    );
}

fn with_prefix_cache(kv_budget_tokens: usize) -> Started {
    start_with(SchedulerConfig {
        max_waiting: 4,
        max_batch: 8,
        kv_budget_tokens,
        prefill_chunk: 8,
        max_context: 4096,
        prefix_cache: true,
    })
}

/// The metrics line of the tokens kept by finished requests' caches, when it reads `n`.
fn kept_line(n: usize) -> String {
    format!("anshin_inference_prefix_cache_tokens {n}\n")
}

/// The next turn of a conversation (the first prompt, its answer, a new question) copies what the
/// finished first turn cached, and its tokens are those of a server that computes everything.
#[test]
fn the_next_turn_of_a_conversation_copies_the_finished_turn_and_gets_the_same_tokens() {
    let (h, tok, metrics, _dir) = with_prefix_cache(8192);
    let first = request(&tok, &format!("{NOTE}診断は?"), 12);
    let prompt1 = first.prompt.clone();
    let answer = tokens(h.submit(first).expect("submit"));
    let cached = prompt1.len() + answer.len() - 1; // the last answer token was never fed
    wait_metric(&metrics, &kept_line(cached));
    let mut next = request(&tok, "次に行う検査は?", 12);
    next.prompt = [&prompt1[..], &answer[..], &next.prompt[..]].concat();
    let next_prompt = next.prompt.clone();
    let got = tokens(h.submit(next).expect("submit"));

    let (plain, _, plain_metrics, _dir2) = start(8, 4);
    let mut again = request(&tok, "", 12);
    again.prompt = next_prompt.clone();
    assert_eq!(got, tokens(plain.submit(again).expect("submit")));
    let shared = "anshin_inference_prefix_shared_tokens_total";
    let copied = metric_value(&metrics, shared);
    assert_eq!(copied, cached as f64, "the whole finished turn is copied");
    assert_eq!(metric_value(&plain_metrics, shared), 0.0);
    // The second turn's cache covers the first's, which is dropped.
    let second = next_prompt.len() + got.len() - 1;
    wait_metric(&metrics, &kept_line(second));
}

/// Kept caches never crowd out a request: admitting one evicts them down to the room it leaves.
#[test]
fn finished_caches_give_way_to_a_request_that_needs_their_room() {
    let (h, tok, metrics, _dir) = with_prefix_cache(300);
    let first = request(&tok, NOTE, 150);
    let kept = first.prompt.len() + 149;
    assert_eq!(tokens(h.submit(first).expect("submit")).len(), 150);
    wait_metric(&metrics, &kept_line(kept));
    // Another prompt that reserves more than the budget minus the kept cache.
    let other = request(&tok, PROMPTS[2], 200);
    let needs = other.prompt.len() + 200;
    assert!(kept + needs > 300 && needs <= 300);
    let mut rx = h.submit(other).expect("submit");
    assert!(matches!(rx.blocking_recv(), Some(GenEvent::Delta(_))));
    let held = metric_value(&metrics, "anshin_inference_prefix_cache_tokens");
    assert!(
        held as usize + needs <= 300,
        "{held} cached tokens kept beside a request reserving {needs} of 300"
    );
    assert_eq!(tokens(rx).len(), 200);
    wait_metric(&metrics, &kept_line(needs - 1));
}
