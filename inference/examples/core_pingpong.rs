//! How far apart the host placed this machine's cores: two threads pass one atomic counter back and
//! forth and the mean round trip is printed (tens of nanoseconds when the cores share a cache, a few
//! hundred when they do not). A 2-thread decode step of many streams slows down by a third in the second
//! case unless it runs in parts (`model/split.rs`); run this before a benchmark to tell the cases apart.
//!
//! `cargo run --release -p anshin-inference --example core_pingpong [ROUND_TRIPS]`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let flag = Arc::new(AtomicU64::new(0));
    let other = {
        let flag = flag.clone();
        std::thread::spawn(move || {
            for i in 0..n {
                while flag.load(Ordering::Acquire) != 2 * i + 1 {
                    std::hint::spin_loop();
                }
                flag.store(2 * i + 2, Ordering::Release);
            }
        })
    };
    let t = Instant::now();
    for i in 0..n {
        flag.store(2 * i + 1, Ordering::Release);
        while flag.load(Ordering::Acquire) != 2 * i + 2 {
            std::hint::spin_loop();
        }
    }
    let ns = t.elapsed().as_nanos() as f64 / n.max(1) as f64;
    if other.join().is_err() {
        eprintln!("the other thread panicked");
        std::process::exit(1);
    }
    println!("{{\"round_trip_ns\": {ns:.0}}}");
}
