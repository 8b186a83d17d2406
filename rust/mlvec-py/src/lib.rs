//! `mlvec._native`: thin PyO3 bindings over `mlvec-core` and `mlvec-cuda`. Arrays in, arrays
//! out; the GIL is released around every kernel; Rust errors map to Python exceptions in
//! `errors`.
//!
//! The top level holds what concerns the whole library (version, exceptions, threads, CPU
//! features); each domain is a submodule: `maxsim`, `contrastive`, `cuda` and `index`.

mod arrays;
mod contrastive;
mod cuda;
mod errors;
mod gil;
mod index;
mod maxsim;

use errors::IntoPyResult;
use pyo3::prelude::*;

/// Number of threads mlvec's parallel kernels use.
#[pyfunction]
fn get_num_threads() -> usize {
    mlvec_core::threads::num_threads()
}

/// Set the number of threads mlvec's parallel kernels use (>= 1).
#[pyfunction]
fn set_num_threads(n: i64) -> PyResult<()> {
    if n < 1 {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "num_threads must be at least 1, got {n}"
        )));
    }
    mlvec_core::threads::set_num_threads(n as usize).py()
}

/// SIMD extensions detected on this CPU at run time.
#[pyfunction]
fn cpu_features() -> Vec<&'static str> {
    mlvec_core::cpu::features()
}

fn fill_index(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<index::PyIndex>()
}

/// Add the submodule `parent.name`, filled by `fill`, and register it in `sys.modules` so that
/// `import mlvec._native.<name>` and `from mlvec._native import <name>` both find it.
fn add_submodule(
    parent: &Bound<'_, PyModule>,
    name: &str,
    doc: &str,
    fill: fn(&Bound<'_, PyModule>) -> PyResult<()>,
) -> PyResult<()> {
    let py = parent.py();
    let qualified = format!("{}.{name}", parent.name()?);
    let sub = PyModule::new(py, name)?;
    // Set before filling: functions take their `__module__` from it.
    sub.setattr("__name__", &qualified)?;
    sub.setattr("__doc__", doc)?;
    fill(&sub)?;
    parent.add(name, &sub)?;
    py.import("sys")?.getattr("modules")?.set_item(qualified, sub)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("MlvecError", py.get_type::<errors::MlvecError>())?;
    m.add("FormatError", py.get_type::<errors::FormatError>())?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(cpu_features, m)?)?;
    add_submodule(
        m,
        "maxsim",
        "MaxSim over packed token sets (CPU).",
        maxsim::register,
    )?;
    add_submodule(
        m,
        "contrastive",
        "Fused element-wise passes over one contrastive logits tile (CPU).",
        contrastive::register,
    )?;
    add_submodule(
        m,
        "cuda",
        "CUDA kernels compiled at run time with NVRTC, launched on raw device pointers.",
        cuda::register,
    )?;
    add_submodule(m, "index", "The compiled vector index.", fill_index)?;
    Ok(())
}
