//! Detection latency with cold caches, for two dictionary directories in the same run (one built
//! another way against the default; the same directory twice to time one). Between two detections the
//! process busy-waits 0.1, 1 or 5 ms (`spin…`: the core stays awake and the process touches no memory),
//! sleeps 5 ms (`idle`), or reads and writes 64 MB of other memory (`trashed`, as the backend and the
//! network stack do between two requests in the gateway benchmark).
//!
//! `cargo run --release -p anshin-guardrails --example cold_detect -- DIR_A DIR_B [ROUNDS]`
//! prints JSON: µs per detection (p50, mean) for each directory and condition.

use std::time::{Duration, Instant};

use anshin_guardrails::{Detector, Dictionary};

const PROMPT: &str = "患者の山田太郎さん（住所：東京都千代田区千代田1-1、マイナンバー：123456789018）は三日前から\
発熱と咳嗽があり、本日外来を受診した。既往歴として高血圧症があり、アムロジピンを内服中である。";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(a), Some(b)) = (args.get(1), args.get(2)) else {
        return Err("usage: cold_detect DIR_A DIR_B [ROUNDS]".into());
    };
    let rounds: usize = args.get(3).and_then(|r| r.parse().ok()).unwrap_or(300);
    let dets = [
        Detector::new(Dictionary::load(a.as_ref())?),
        Detector::new(Dictionary::load(b.as_ref())?),
    ];
    let mut trash = vec![0u8; 64 << 20];
    let mut out = serde_json::Map::new();
    for condition in ["warm", "spin100us", "spin1ms", "spin", "idle", "trashed"] {
        let mut times = [Vec::new(), Vec::new()];
        for round in 0..rounds {
            for k in [round % 2, 1 - round % 2] {
                match condition {
                    "idle" => std::thread::sleep(Duration::from_millis(5)),
                    "spin100us" => spin(Duration::from_micros(100)),
                    "spin1ms" => spin(Duration::from_millis(1)),
                    "spin" => spin(Duration::from_millis(5)),
                    "trashed" => trash
                        .iter_mut()
                        .step_by(64)
                        .for_each(|x| *x = x.wrapping_add(1)),
                    _ => {}
                }
                let t = Instant::now();
                let found = dets[k].detect(PROMPT).len();
                times[k].push(t.elapsed().as_secs_f64() * 1e6);
                if found < 3 {
                    return Err(
                        format!("expected name, address and My Number, found {found}").into(),
                    );
                }
            }
        }
        for (k, dir) in [a, b].iter().enumerate() {
            let t = &mut times[k];
            t.sort_by(f64::total_cmp);
            let mean = t.iter().sum::<f64>() / t.len() as f64;
            out.insert(
                format!("{condition} {dir}"),
                serde_json::json!({"p50_us": t[t.len() / 2].round(), "mean_us": mean.round()}),
            );
        }
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// Busy-waits without touching memory: the core stays awake and nothing of ours evicts the caches.
fn spin(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}
