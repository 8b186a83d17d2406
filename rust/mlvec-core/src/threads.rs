//! The thread pool every parallel kernel of the core runs on.
//!
//! One process-wide rayon pool whose size the caller can change at any time
//! (`mlvec.set_num_threads`). Work submitted while the size changes finishes on the old pool.

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
