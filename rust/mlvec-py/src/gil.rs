//! Releasing the GIL around short native calls without paying a sleeping thread's wake-up.
//!
//! When Python threads call a short kernel (one query against an index: ~15 µs) in a loop, the
//! GIL changes hands twice per call. A thread that finishes its kernel while another thread
//! holds the GIL sleeps on the interpreter's condition variable until the GIL is dropped, and
//! on virtual machines that wake-up (an idle vCPU halted, then an inter-processor interrupt)
//! takes about as long as the kernel: two threads ran barely faster than one.
//!
//! [`detach`] lets a thread whose kernel is done wait *awake* for a short while when the GIL is
//! held by a thread that came back from an mlvec call and is, most likely, about to make the
//! next one. That holder clears the flag as it releases the GIL, and the waiting thread then
//! takes the GIL uncontended. Only one thread waits this way at a time (more would take cores
//! from the holder), and never longer than [`SPIN_LIMIT`]: past it the thread blocks on the
//! GIL as usual. It is a scheduling hint only; what runs and what it returns do not change.

use pyo3::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set while the GIL is held by a thread that came back from [`detach`] and has not released
/// the GIL through it since (written only by the GIL's holder).
static HOLDER_RETURNED: AtomicBool = AtomicBool::new(false);

/// Set while a thread waits awake for the GIL.
static SPINNING: AtomicBool = AtomicBool::new(false);

/// Longest a finished call waits awake for the GIL before blocking on it as usual.
const SPIN_LIMIT: Duration = Duration::from_micros(30);

/// Run `f` with the GIL released, like [`Python::allow_threads`], re-taking the GIL without a
/// sleep when another mlvec caller is about to release it.
pub fn detach<T: Send>(py: Python<'_>, f: impl FnOnce() -> T + Send) -> T {
    // We hold the GIL: whoever held it before has released it.
    HOLDER_RETURNED.store(false, Ordering::Release);
    let out = py.allow_threads(|| {
        let out = f();
        if HOLDER_RETURNED.load(Ordering::Acquire)
            && SPINNING
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            let start = Instant::now();
            while HOLDER_RETURNED.load(Ordering::Acquire) && start.elapsed() < SPIN_LIMIT {
                std::hint::spin_loop();
            }
            SPINNING.store(false, Ordering::Release);
        }
        out
    });
    HOLDER_RETURNED.store(true, Ordering::Release);
    out
}
