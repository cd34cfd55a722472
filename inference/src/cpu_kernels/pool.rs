//! A small persistent thread pool for the many short parallel loops of a forward step.
//!
//! A decode step runs some 200 projections of tens of microseconds each; rayon's fork-join wakes a
//! sleeping worker through the OS for each, which costs a visible share of the step. Here the workers
//! spin on a generation counter for a while after each job (as llama.cpp's threadpool does) and only then
//! sleep, so back-to-back jobs of one step start without a system call.
//!
//! [`for_each`] publishes a job `f(0..n)`; the caller and the workers claim indices from the job's own
//! counter until none are left, and the caller returns once every index has run. The job lives in an
//! `Arc`, so a worker that arrives late only finds the counter exhausted and never touches the caller's
//! closure after `for_each` returned. One job at a time: a call made while another runs (from a second
//! thread, or nested inside a job) runs its loop on the calling thread instead of waiting.
//!
//! Threads: `rayon::current_num_threads()` at first use (the caller counts as one), so `RAYON_NUM_THREADS`
//! sizes both pools alike. `ANSHIN_KERNEL_SPIN_US` overrides how long idle workers poll (see [`SPIN`]).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, TryLockError};
use std::time::{Duration, Instant};

/// How long an idle worker polls for the next job before it sleeps: longer than the gaps between the
/// projections of one step, shorter than the pause between steps of a quiet server.
const SPIN: Duration = Duration::from_millis(1);

/// How long a waiting thread spins on the CPU before it polls with `yield_now` instead, so that other
/// threads that need the core (candle's rayon workers, other processes) get it.
const BUSY: Duration = Duration::from_micros(20);

/// [`SPIN`], or `ANSHIN_KERNEL_SPIN_US` microseconds (0: sleep after every job) to measure its effect.
fn spin_time() -> Duration {
    static T: OnceLock<Duration> = OnceLock::new();
    *T.get_or_init(|| {
        std::env::var("ANSHIN_KERNEL_SPIN_US")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(SPIN, Duration::from_micros)
    })
}

type Task = dyn Fn(usize) + Sync;

struct Job {
    /// The caller's closure, lifetime erased: only dereferenced for a claimed index `< n`, and the caller
    /// does not return before all of those have finished.
    f: *const Task,
    n: usize,
    next: AtomicUsize,
    done: AtomicUsize,
    panicked: AtomicBool,
}

// SAFETY: `f` points to a `Sync` closure, used only while the caller waits in `for_each`.
unsafe impl Send for Job {}
// SAFETY: as above; the counters are atomics.
unsafe impl Sync for Job {}

impl Job {
    /// Claims and runs indices until none are left.
    fn work(&self) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.n {
                return;
            }
            // SAFETY: `i < n`, so the caller is still inside `for_each`, waiting for this index.
            let f = unsafe { &*self.f };
            if catch_unwind(AssertUnwindSafe(|| f(i))).is_err() {
                self.panicked.store(true, Ordering::Relaxed);
            }
            self.done.fetch_add(1, Ordering::Release);
        }
    }
}

struct Pool {
    workers: usize,
    /// Serialises callers; held for the whole of a job.
    submit: Mutex<()>,
    job: Mutex<Option<Arc<Job>>>,
    generation: AtomicU64,
    sleepers: Mutex<usize>,
    wake: Condvar,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<&'static Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let workers = rayon::current_num_threads().saturating_sub(1);
        let pool: &'static Pool = Box::leak(Box::new(Pool {
            workers,
            submit: Mutex::new(()),
            job: Mutex::new(None),
            generation: AtomicU64::new(0),
            sleepers: Mutex::new(0),
            wake: Condvar::new(),
        }));
        for i in 0..workers {
            let spawned = std::thread::Builder::new()
                .name(format!("anshin-kernel-{i}"))
                .spawn(move || pool.worker());
            if spawned.is_err() {
                // Fewer workers only means less parallelism: the caller runs whatever is left.
                break;
            }
        }
        pool
    })
}

/// Threads that share a [`for_each`] job: the workers and the caller.
pub fn threads() -> usize {
    pool().workers + 1
}

/// Runs `f(i)` for every `i` in `0..n`, spread over the pool and the calling thread; returns when all
/// have run. A panic in `f` is re-raised here after the others finished.
pub fn for_each(n: usize, f: &(dyn Fn(usize) + Sync)) {
    let pool = pool();
    if n <= 1 || pool.workers == 0 {
        return (0..n).for_each(f);
    }
    let _guard = match pool.submit.try_lock() {
        Ok(g) => g,
        Err(TryLockError::WouldBlock) => return (0..n).for_each(f),
        Err(TryLockError::Poisoned(p)) => p.into_inner(),
    };
    // SAFETY: only the lifetime is erased; see `Job::f`.
    let f_static: *const Task =
        unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync + '_), &'static Task>(f) };
    let job = Arc::new(Job {
        f: f_static,
        n,
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        panicked: AtomicBool::new(false),
    });
    *lock(&pool.job) = Some(job.clone());
    pool.generation.fetch_add(1, Ordering::Release);
    if *lock(&pool.sleepers) > 0 {
        pool.wake.notify_all();
    }
    job.work();
    let mut backoff = Backoff::new();
    while job.done.load(Ordering::Acquire) < n {
        backoff.relax();
    }
    *lock(&pool.job) = None;
    if job.panicked.load(Ordering::Relaxed) {
        panic!("a parallel kernel task panicked");
    }
}

/// Elements below which [`for_rows_mut`] runs on the calling thread: one decoding stream's row (576 to a
/// few thousand values) takes less time than handing it out. A batched decode step's rows (16 streams ×
/// 576 values and more) are shared out: run on the caller alone, its norms, activations and
/// quantizations left the other thread spinning, and sharing them made 16-stream decode steps ≈ 5 %
/// shorter (`decode_bench`).
pub const ROWS_PARALLEL_MIN: usize = 4 * 1024;

/// Pieces per thread in [`for_rows_mut`], so that a thread that starts late still gets a share.
const ROW_PIECES_PER_THREAD: usize = 2;

/// Runs `f(first_row, rows)` over `data` cut into pieces of whole rows of `width` elements, spread over
/// the pool when `data` has at least [`ROWS_PARALLEL_MIN`] elements (a prompt's or a batched decode
/// step's activations), else in one call on this thread. The pieces are disjoint, so `f` may write its
/// rows; row-wise work gives the same values either way.
pub fn for_rows_mut<T: Send>(data: &mut [T], width: usize, f: &(dyn Fn(usize, &mut [T]) + Sync)) {
    let width = width.max(1);
    let rows = data.len() / width;
    if data.len() < ROWS_PARALLEL_MIN || threads() == 1 || rows < 2 {
        return f(0, data);
    }
    let per_piece = rows.div_ceil(threads() * ROW_PIECES_PER_THREAD);
    let pieces = rows.div_ceil(per_piece);
    let len = data.len();
    let base = Rows(data.as_mut_ptr());
    for_each(pieces, &|i| {
        let first = i * per_piece;
        // The last piece also takes a partial row at the end, if any.
        let end = if i + 1 == pieces {
            len
        } else {
            (first + per_piece) * width
        };
        // SAFETY: pieces `[first · width, end)` are disjoint and inside `data`, which outlives the call
        // (`for_each` returns after every piece ran); `T: Send` lets another thread write them.
        let piece =
            unsafe { std::slice::from_raw_parts_mut(base.at(first * width), end - first * width) };
        f(first, piece);
    });
}

/// `data`'s pointer, shared by the pieces of [`for_rows_mut`].
struct Rows<T>(*mut T);

impl<T> Rows<T> {
    /// The element at `i` (a method, so that closures capture the `Sync` wrapper, not the pointer).
    fn at(&self, i: usize) -> *mut T {
        // SAFETY: callers stay inside the slice the pointer came from.
        unsafe { self.0.add(i) }
    }
}

// SAFETY: each piece is written by one task only, and `T: Send`.
unsafe impl<T: Send> Sync for Rows<T> {}

/// A wait loop's pacing: spin hints while the wait is young, then `yield_now` each round.
struct Backoff {
    start: Instant,
    rounds: u32,
    yielding: bool,
}

impl Backoff {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            rounds: 0,
            yielding: false,
        }
    }

    /// One round; returns the time waited so far (read every 64 rounds, zero in between).
    fn relax(&mut self) -> Duration {
        if self.yielding {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
        self.rounds = self.rounds.wrapping_add(1);
        if !self.rounds.is_multiple_of(64) {
            return Duration::ZERO;
        }
        let waited = self.start.elapsed();
        self.yielding = waited > BUSY;
        waited
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Pool {
    fn worker(&self) {
        // Spawned before any job was published: generation 0 is the one seen, even if the first job
        // was published before this thread got to run.
        let mut seen = 0;
        loop {
            seen = self.wait_past(seen);
            let job = lock(&self.job).clone();
            if let Some(job) = job {
                job.work();
            }
        }
    }

    /// Polls, then sleeps, until the generation moves past `seen`; returns the new one.
    fn wait_past(&self, seen: u64) -> u64 {
        let mut backoff = Backoff::new();
        loop {
            let g = self.generation.load(Ordering::Acquire);
            if g != seen {
                return g;
            }
            if backoff.relax() > spin_time() {
                break;
            }
        }
        let mut sleepers = lock(&self.sleepers);
        *sleepers += 1;
        loop {
            let g = self.generation.load(Ordering::Acquire);
            if g != seen {
                *sleepers -= 1;
                return g;
            }
            sleepers = self
                .wake
                .wait_timeout(sleepers, Duration::from_millis(100))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_index_runs_exactly_once() {
        for n in [0, 1, 2, 3, 17, 1000] {
            let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            for_each(n, &|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(
                hits.iter().all(|h| h.load(Ordering::Relaxed) == 1),
                "n = {n}"
            );
        }
    }

    /// Every element is handed out once, inside a piece that starts at a whole row and says which.
    #[test]
    fn row_pieces_cover_every_element_once_at_their_own_rows() {
        for (len, width) in [
            (10, 3),
            (ROWS_PARALLEL_MIN, 576),
            (ROWS_PARALLEL_MIN * 3 + 7, 1000),
        ] {
            let mut data = vec![0u32; len];
            let pieces = AtomicUsize::new(0);
            for_rows_mut(&mut data, width, &|first, rows| {
                pieces.fetch_add(1, Ordering::Relaxed);
                for (i, x) in rows.iter_mut().enumerate() {
                    *x += (first * width + i) as u32 + 1;
                }
            });
            let want: Vec<u32> = (1..=len as u32).collect();
            assert_eq!(data, want, "{len} elements in rows of {width}");
            let many = pieces.load(Ordering::Relaxed) > 1;
            assert_eq!(many, len >= ROWS_PARALLEL_MIN && threads() > 1);
        }
    }

    #[test]
    fn workers_take_part_in_a_job() {
        if threads() < 2 {
            return;
        }
        let ids = Mutex::new(std::collections::HashSet::new());
        // Tries for a while: a job started while another test's job runs stays on its caller, and on a
        // loaded machine the worker may not get a core at once.
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            for_each(4, &|_| {
                lock(&ids).insert(std::thread::current().id());
                std::thread::sleep(Duration::from_millis(10));
            });
            if lock(&ids).len() >= 2 {
                return;
            }
        }
        panic!("only the caller ran the jobs");
    }

    #[test]
    fn concurrent_and_nested_calls_complete() {
        let total = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..50 {
                        for_each(8, &|_| {
                            for_each(3, &|_| {
                                total.fetch_add(1, Ordering::Relaxed);
                            });
                        });
                    }
                });
            }
        });
        assert_eq!(total.load(Ordering::Relaxed), 4 * 50 * 8 * 3);
    }

    #[test]
    fn a_panicking_task_panics_the_caller_and_the_pool_keeps_working() {
        let r = std::panic::catch_unwind(|| for_each(4, &|i| assert_ne!(i, 2, "boom")));
        assert!(r.is_err());
        let count = AtomicUsize::new(0);
        for_each(5, &|_| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 5);
    }
}
