//! Running a parallel loop on the OpenMP team that torch's (or numpy's BLAS's) kernels use.
//!
//! The contrastive losses alternate torch GEMMs (on torch's OpenMP threads) with mlvec's
//! element-wise tile passes. After each GEMM, GNU OpenMP keeps its worker threads spinning for
//! a while, waiting for the next parallel region; a pass on mlvec's own pool then shares the
//! cores with those spinning threads, and runs correspondingly slower (measured: the losses ran
//! about 10 % faster with `OMP_WAIT_POLICY=PASSIVE`). Running the pass *as* an OpenMP parallel
//! region instead hands it to the very threads that are spinning: nothing competes, nothing
//! has to be woken up.
//!
//! The runtime is found, never loaded: `dlopen("libgomp.so.1", RTLD_NOLOAD)` succeeds only
//! when the process already has it (torch's wheels ship it), and `GOMP_parallel` is the stable
//! entry point GCC itself compiles `#pragma omp parallel` to. Without it, callers fall back to
//! the mlvec pool.

use std::ffi::{c_uint, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

type RegionFn = unsafe extern "C" fn(*mut c_void);
type GompParallel = unsafe extern "C" fn(RegionFn, *mut c_void, c_uint, c_uint);

/// `GOMP_parallel` of the loaded runtime (found once; looked for again while absent).
fn gomp_parallel() -> Option<GompParallel> {
    static FOUND: OnceLock<GompParallel> = OnceLock::new();
    if let Some(f) = FOUND.get() {
        return Some(*f);
    }
    #[cfg(target_os = "linux")]
    {
        use libloading::os::unix::{Library, RTLD_NOW};
        const RTLD_NOLOAD: std::ffi::c_int = 0x4;
        // SAFETY: RTLD_NOLOAD only returns a handle to a library the process already loaded
        // (its initialisers have run); we look up one symbol with its documented signature.
        let f = unsafe {
            let lib = Library::open(Some("libgomp.so.1"), RTLD_NOW | RTLD_NOLOAD).ok()?;
            let f: GompParallel = *lib.get::<GompParallel>(b"GOMP_parallel\0").ok()?;
            // Never unloaded: the symbol must stay valid (the handle only adds a reference).
            std::mem::forget(lib);
            f
        };
        Some(*FOUND.get_or_init(|| f))
    }
    #[cfg(not(target_os = "linux"))]
    None
}

struct Region<'a> {
    f: &'a (dyn Fn(usize) + Sync),
    parts: usize,
    next: AtomicUsize,
    panicked: AtomicBool,
}

/// The body every team thread runs: take the next part until none is left.
unsafe extern "C" fn region(data: *mut c_void) {
    // SAFETY: `data` is the `Region` that `run` keeps alive until GOMP_parallel returns.
    let r = unsafe { &*(data as *const Region) };
    loop {
        let i = r.next.fetch_add(1, Ordering::Relaxed);
        if i >= r.parts {
            break;
        }
        // A panic must not unwind through the C runtime: note it, re-raise it after the region.
        if catch_unwind(AssertUnwindSafe(|| (r.f)(i))).is_err() {
            r.panicked.store(true, Ordering::Relaxed);
        }
    }
}

/// Run `f(part)` for `part` in `0..parts` on `threads` OpenMP threads (the caller included);
/// `false` when no OpenMP runtime is loaded (nothing was run).
pub fn run(parts: usize, threads: usize, f: &(dyn Fn(usize) + Sync)) -> bool {
    let Some(parallel) = gomp_parallel() else {
        return false;
    };
    let r = Region {
        f,
        parts,
        next: AtomicUsize::new(0),
        panicked: AtomicBool::new(false),
    };
    let n = threads.clamp(1, parts) as c_uint;
    // SAFETY: `region` only reads `r` through a shared reference, and GOMP_parallel returns
    // after every team thread has left it, so `r` outlives every use.
    unsafe { parallel(region, &r as *const Region as *mut c_void, n, 0) };
    if r.panicked.load(Ordering::Relaxed) {
        panic!("a parallel part panicked on an OpenMP thread");
    }
    true
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    /// Load GNU OpenMP as torch would (GCC's runtime library: present wherever GCC links).
    fn load_gomp() -> libloading::Library {
        // SAFETY: loading a system library whose initialisers are safe to run.
        unsafe { libloading::Library::new("libgomp.so.1") }
            .expect("libgomp.so.1 (GCC's OpenMP runtime) must be installed to test the OpenMP path")
    }

    #[test]
    fn every_part_runs_once_on_the_loaded_team() {
        let _lib = load_gomp();
        for (parts, threads) in [(1, 1), (7, 2), (64, 3), (3, 8)] {
            let hits: Vec<AtomicU32> = (0..parts).map(|_| AtomicU32::new(0)).collect();
            let ran = run(parts, threads, &|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(ran, "the runtime is loaded: the region must run on it");
            assert!(
                hits.iter().all(|h| h.load(Ordering::Relaxed) == 1),
                "{parts} parts, {threads} threads"
            );
        }
    }

    #[test]
    fn a_panicking_part_is_re_raised_after_the_region() {
        let _lib = load_gomp();
        let done = AtomicU32::new(0);
        let out = catch_unwind(AssertUnwindSafe(|| {
            run(16, 2, &|i| {
                if i == 5 {
                    panic!("part 5");
                }
                done.fetch_add(1, Ordering::Relaxed);
            })
        }));
        assert!(out.is_err());
        // The other parts still ran: nothing unwound through the C runtime.
        assert_eq!(done.load(Ordering::Relaxed), 15);
    }
}
