//! `mlvec._native`: thin PyO3 bindings over `mlvec-core`. Arrays in, arrays out; the GIL is
//! released around every kernel; core errors map to Python exceptions in `errors`.

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

/// Whether the CUDA kernels can run here: `(True, "")` or `(False, reason)`.
#[pyfunction]
fn cuda_status(py: Python<'_>) -> (bool, String) {
    match cuda::status(py) {
        Ok(()) => (true, String::new()),
        Err(why) => (false, why),
    }
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
    m.add_function(wrap_pyfunction!(cuda_status, m)?)?;
    m.add_function(wrap_pyfunction!(maxsim::maxsim_forward, m)?)?;
    m.add_function(wrap_pyfunction!(maxsim::maxsim_backward, m)?)?;
    m.add_function(wrap_pyfunction!(cuda::cuda_configure, m)?)?;
    m.add_function(wrap_pyfunction!(cuda::cuda_nvrtc_version, m)?)?;
    m.add_function(wrap_pyfunction!(cuda::cuda_compile_check, m)?)?;
    m.add_function(wrap_pyfunction!(cuda::cuda_compute_capability, m)?)?;
    m.add_function(wrap_pyfunction!(cuda::cuda_limits, m)?)?;
    m.add_function(wrap_pyfunction!(cuda::cuda_maxsim_forward, m)?)?;
    m.add_function(wrap_pyfunction!(cuda::cuda_filip_forward, m)?)?;
    m.add_function(wrap_pyfunction!(cuda::cuda_maxsim_backward, m)?)?;
    m.add_function(wrap_pyfunction!(cuda::cuda_clip_lse_partials, m)?)?;
    m.add_function(wrap_pyfunction!(cuda::cuda_clip_grad, m)?)?;
    m.add_function(wrap_pyfunction!(cuda::cuda_siglip_forward, m)?)?;
    m.add_function(wrap_pyfunction!(cuda::cuda_siglip_backward, m)?)?;
    m.add_function(wrap_pyfunction!(cuda::cuda_pq_scan, m)?)?;
    m.add_function(wrap_pyfunction!(cuda::cuda_hamming_scan, m)?)?;
    m.add_function(wrap_pyfunction!(cuda::cuda_select_k, m)?)?;
    m.add_function(wrap_pyfunction!(contrastive::contrastive_softmax_stats, m)?)?;
    m.add_function(wrap_pyfunction!(contrastive::contrastive_softmax_grad, m)?)?;
    m.add_function(wrap_pyfunction!(contrastive::contrastive_sigmoid_loss, m)?)?;
    m.add_function(wrap_pyfunction!(contrastive::contrastive_sigmoid_loss_grad, m)?)?;
    m.add_class::<index::PyIndex>()?;
    Ok(())
}
