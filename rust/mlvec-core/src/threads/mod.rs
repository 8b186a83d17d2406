//! The thread pool every parallel kernel of the core runs on.
//!
//! One process-wide rayon pool whose size the caller can change at any time
//! (`mlvec.set_num_threads`). Work submitted while the size changes finishes on the old pool.
//! Passes that alternate with torch's own kernels go through [`for_each_part`] instead, which
//! prefers the OpenMP team torch runs on ([`openmp`]).

pub mod openmp;

use std::sync::{Arc, OnceLock, RwLock};

fn default_threads() -> usize {
    std::env::var("MLVEC_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn build(n: usize) -> Arc<rayon::ThreadPool> {
    Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(|i| format!("mlvec-{i}"))
            .build()
            .expect("building a rayon thread pool"),
    )
}

fn slot() -> &'static RwLock<Arc<rayon::ThreadPool>> {
    static POOL: OnceLock<RwLock<Arc<rayon::ThreadPool>>> = OnceLock::new();
    POOL.get_or_init(|| RwLock::new(build(default_threads())))
}

/// The current pool (cheap: an `Arc` clone).
pub fn pool() -> Arc<rayon::ThreadPool> {
    slot().read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Number of threads parallel kernels use.
pub fn num_threads() -> usize {
    pool().current_num_threads()
}

/// Set the number of threads parallel kernels use (`n >= 1`).
pub fn set_num_threads(n: usize) -> crate::Result<()> {
    if n == 0 {
        return Err(crate::Error::invalid("num_threads", "must be at least 1"));
    }
    *slot().write().unwrap_or_else(|e| e.into_inner()) = build(n);
    Ok(())
}

/// Run `f` inside the pool, so rayon's parallel iterators in it use the pool's threads.
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    pool().install(f)
}

/// Run `f(part)` for every `part` in `0..parts`, in parallel, on the process's OpenMP team when
/// an OpenMP runtime is loaded (see [`openmp`]; `MLVEC_OPENMP=0` in the environment opts out),
/// else on the mlvec pool; [`num_threads`] threads either way. Parts may run in any order and
/// on any thread; callers that combine per-part results do so in part order.
pub fn for_each_part(parts: usize, f: &(dyn Fn(usize) + Sync)) {
    if parts == 0 {
        return;
    }
    // Read per call (microseconds against a pass over a logits tile), so a process can compare
    // both runners (benches/bench_losses_openmp.py).
    let opted_out = std::env::var_os("MLVEC_OPENMP").is_some_and(|v| v == "0");
    if parts > 1 && !opted_out && openmp::run(parts, num_threads(), f) {
        return;
    }
    install(|| {
        use rayon::prelude::*;
        (0..parts).into_par_iter().for_each(f)
    })
}
