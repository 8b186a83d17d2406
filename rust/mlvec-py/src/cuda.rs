//! `mlvec._native.cuda`: bindings of `mlvec_cuda` (NVRTC set-up, compile checks and kernel
//! launches on raw device pointers, ints from torch's `data_ptr()`, and a stream handle, an
//! int). The wrappers re-exported by `mlvec.cuda` check torch tensors and call these; these
//! functions trust the pointers they are given. NVRTC is located by `mlvec.cuda` (from pip's
//! nvidia wheels) and handed over with [`configure`].

use crate::errors::IntoPyResult;
use mlvec_cuda::kernels::{self, Backward, Dtype, Pairwise, Place, Sets};
use pyo3::prelude::*;
use std::path::PathBuf;

/// `(data_ptr, offsets_ptr, mask_ptr or 0, n_sets)`.
type SetsArg = (u64, u64, u64, i64);

fn sets(s: SetsArg) -> Sets {
    Sets {
        data: s.0,
        offsets: s.1,
        mask: s.2,
        n: s.3,
    }
}

/// Enqueue a launch with the GIL released (it only queues work on the caller's stream).
fn enqueue(py: Python<'_>, f: impl FnOnce() -> mlvec_cuda::Result<()> + Send) -> PyResult<()> {
    py.allow_threads(f).py()
}

/// Whether the CUDA kernels can run here: `(True, "")` or `(False, reason)`.
#[pyfunction]
fn status() -> (bool, String) {
    match mlvec_cuda::status() {
        Ok(()) => (true, String::new()),
        Err(why) => (false, why),
    }
}

/// Set where NVRTC (the library file), the CUDA include folders and the cubin cache are.
#[pyfunction]
#[pyo3(signature = (nvrtc_path=None, include_dirs=None, cache_dir=None))]
fn configure(nvrtc_path: Option<PathBuf>, include_dirs: Option<Vec<PathBuf>>, cache_dir: Option<PathBuf>) {
    mlvec_cuda::nvrtc::configure(nvrtc_path, include_dirs, cache_dir);
}

/// NVRTC's `(major, minor)` version; raises when NVRTC cannot be loaded.
#[pyfunction]
fn nvrtc_version() -> PyResult<(i32, i32)> {
    mlvec_cuda::nvrtc::version().py()
}

/// Compile every kernel for `arch` (e.g. `"sm_90"`, no GPU needed) and return their names.
#[pyfunction]
fn compile_check(py: Python<'_>, arch: &str) -> PyResult<Vec<&'static str>> {
    py.allow_threads(|| mlvec_cuda::nvrtc::compile_check(arch)).py()
}

/// Compute capability `(major, minor)` of a CUDA device.
#[pyfunction]
fn compute_capability(device: i32) -> PyResult<(i32, i32)> {
    mlvec_cuda::driver::compute_capability(device).py()
}

/// `(tile_rows, tile_cols, max_cols, select_chunk, max_k)` of the kernels.
#[pyfunction]
fn limits() -> (i64, i64, i64, i64, i64) {
    (
        kernels::TILE_ROWS,
        kernels::TILE_COLS,
        kernels::MAX_COLS,
        kernels::SELECT_CHUNK,
        kernels::MAX_K,
    )
}

/// MaxSim forward (see `mlvec_cuda::kernels::maxsim_forward`).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn maxsim_forward(
    py: Python<'_>,
    dtype_name: &str,
    device: i32,
    stream: u64,
    a: SetsArg,
    b: SetsArg,
    dim: i64,
    paired: bool,
    transpose: bool,
    la_max: i64,
    lb_max: i64,
    sum: u64,
    row_arg: u64,
    col_sum: u64,
    col_arg: u64,
) -> PyResult<()> {
    let dt = Dtype::parse(dtype_name).py()?;
    let at = Place { device, stream };
    enqueue(py, || {
        kernels::maxsim_forward(
            at,
            dt,
            &sets(a),
            &sets(b),
            dim,
            paired,
            transpose,
            la_max,
            lb_max,
            sum,
            row_arg,
            col_sum,
            col_arg,
        )
    })
}

/// FILIP pair tile (see `mlvec_cuda::kernels::filip_forward`).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn filip_forward(
    py: Python<'_>,
    dtype_name: &str,
    device: i32,
    stream: u64,
    a: SetsArg,
    b: SetsArg,
    dim: i64,
    paired: bool,
    la_max: i64,
    lb_max: i64,
    a_mean: u64,
    b_mean: u64,
    a_arg: u64,
    b_arg: u64,
) -> PyResult<()> {
    let dt = Dtype::parse(dtype_name).py()?;
    let at = Place { device, stream };
    enqueue(py, || {
        kernels::filip_forward(
            at,
            dt,
            &sets(a),
            &sets(b),
            dim,
            paired,
            la_max,
            lb_max,
            a_mean,
            b_mean,
            a_arg,
            b_arg,
        )
    })
}

/// One direction of the MaxSim backward; `kind` is `"gather_a"`, `"scatter_b"` (deterministic)
/// or `"scatter_b_atomic"`.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn maxsim_backward(
    py: Python<'_>,
    dtype_name: &str,
    device: i32,
    stream: u64,
    kind: &str,
    a: SetsArg,
    b: SetsArg,
    dim: i64,
    paired: bool,
    transpose: bool,
    la_max: i64,
    lb_max: i64,
    grad: u64,
    argmax: u64,
    da: u64,
    db: u64,
) -> PyResult<()> {
    let dt = Dtype::parse(dtype_name).py()?;
    let kind = Backward::parse(kind).py()?;
    let at = Place { device, stream };
    enqueue(py, || {
        kernels::maxsim_backward(
            at,
            dt,
            kind,
            &sets(a),
            &sets(b),
            dim,
            paired,
            transpose,
            la_max,
            lb_max,
            grad,
            argmax,
            da,
            db,
        )
    })
}

/// CLIP forward tile pass (see `mlvec_cuda::kernels::clip_lse_partials`).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn clip_lse_partials(
    py: Python<'_>,
    dtype_name: &str,
    device: i32,
    stream: u64,
    x: u64,
    y: u64,
    m: i64,
    n: i64,
    dim: i64,
    scale: f32,
    row_pmax: u64,
    row_psum: u64,
    col_pmax: u64,
    col_psum: u64,
) -> PyResult<()> {
    let dt = Dtype::parse(dtype_name).py()?;
    let at = Place { device, stream };
    let pw = Pairwise { x, y, m, n, dim };
    enqueue(py, || {
        kernels::clip_lse_partials(at, dt, &pw, scale, row_pmax, row_psum, col_pmax, col_psum)
    })
}

/// CLIP backward tile pass (see `mlvec_cuda::kernels::clip_grad`).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn clip_grad(
    py: Python<'_>,
    dtype_name: &str,
    device: i32,
    stream: u64,
    x: u64,
    y: u64,
    m: i64,
    n: i64,
    dim: i64,
    scale: f32,
    row_lse: u64,
    col_lse: u64,
    g_row: u64,
    g_col: u64,
    dx: u64,
    dy: u64,
    dscale_part: u64,
) -> PyResult<()> {
    let dt = Dtype::parse(dtype_name).py()?;
    let at = Place { device, stream };
    let pw = Pairwise { x, y, m, n, dim };
    enqueue(py, || {
        kernels::clip_grad(
            at,
            dt,
            &pw,
            scale,
            row_lse,
            col_lse,
            g_row,
            g_col,
            dx,
            dy,
            dscale_part,
        )
    })
}

/// SigLIP forward tile pass (see `mlvec_cuda::kernels::siglip_forward`).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn siglip_forward(
    py: Python<'_>,
    dtype_name: &str,
    device: i32,
    stream: u64,
    x: u64,
    y: u64,
    m: i64,
    n: i64,
    dim: i64,
    scale: f32,
    bias: f32,
    row_offset: i64,
    col_offset: i64,
    row_part: u64,
) -> PyResult<()> {
    let dt = Dtype::parse(dtype_name).py()?;
    let at = Place { device, stream };
    let pw = Pairwise { x, y, m, n, dim };
    enqueue(py, || {
        kernels::siglip_forward(at, dt, &pw, scale, bias, row_offset, col_offset, row_part)
    })
}

/// SigLIP backward tile pass (see `mlvec_cuda::kernels::siglip_backward`).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn siglip_backward(
    py: Python<'_>,
    dtype_name: &str,
    device: i32,
    stream: u64,
    x: u64,
    y: u64,
    m: i64,
    n: i64,
    dim: i64,
    scale: f32,
    bias: f32,
    row_offset: i64,
    col_offset: i64,
    g_row: u64,
    dx: u64,
    dy: u64,
    dscale_part: u64,
    dbias_part: u64,
) -> PyResult<()> {
    let dt = Dtype::parse(dtype_name).py()?;
    let at = Place { device, stream };
    let pw = Pairwise { x, y, m, n, dim };
    enqueue(py, || {
        kernels::siglip_backward(
            at,
            dt,
            &pw,
            scale,
            bias,
            row_offset,
            col_offset,
            g_row,
            dx,
            dy,
            dscale_part,
            dbias_part,
        )
    })
}

/// PQ lookup-table scan (see `mlvec_cuda::kernels::pq_scan`).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn pq_scan(
    py: Python<'_>,
    device: i32,
    stream: u64,
    codes: u64,
    n: i64,
    m: i64,
    ksub: i64,
    lut: u64,
    nq: i64,
    dist: u64,
) -> PyResult<()> {
    let at = Place { device, stream };
    enqueue(py, || kernels::pq_scan(at, codes, n, m, ksub, lut, nq, dist))
}

/// Binary Hamming scan (see `mlvec_cuda::kernels::hamming_scan`).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn hamming_scan(
    py: Python<'_>,
    device: i32,
    stream: u64,
    codes: u64,
    n: i64,
    words: i64,
    queries: u64,
    nq: i64,
    dist: u64,
) -> PyResult<()> {
    let at = Place { device, stream };
    enqueue(py, || {
        kernels::hamming_scan(at, codes, n, words, queries, nq, dist)
    })
}

/// One round of k-smallest selection (see `mlvec_cuda::kernels::select_k`).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn select_k(
    py: Python<'_>,
    device: i32,
    stream: u64,
    vals: u64,
    ids: u64,
    rows: i64,
    n: i64,
    k: i64,
    out_vals: u64,
    out_ids: u64,
) -> PyResult<()> {
    let at = Place { device, stream };
    enqueue(py, || {
        kernels::select_k(at, vals, ids, rows, n, k, out_vals, out_ids)
    })
}

/// Fill `mlvec._native.cuda`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(status, m)?)?;
    m.add_function(wrap_pyfunction!(configure, m)?)?;
    m.add_function(wrap_pyfunction!(nvrtc_version, m)?)?;
    m.add_function(wrap_pyfunction!(compile_check, m)?)?;
    m.add_function(wrap_pyfunction!(compute_capability, m)?)?;
    m.add_function(wrap_pyfunction!(limits, m)?)?;
    m.add_function(wrap_pyfunction!(maxsim_forward, m)?)?;
    m.add_function(wrap_pyfunction!(filip_forward, m)?)?;
    m.add_function(wrap_pyfunction!(maxsim_backward, m)?)?;
    m.add_function(wrap_pyfunction!(clip_lse_partials, m)?)?;
    m.add_function(wrap_pyfunction!(clip_grad, m)?)?;
    m.add_function(wrap_pyfunction!(siglip_forward, m)?)?;
    m.add_function(wrap_pyfunction!(siglip_backward, m)?)?;
    m.add_function(wrap_pyfunction!(pq_scan, m)?)?;
    m.add_function(wrap_pyfunction!(hamming_scan, m)?)?;
    m.add_function(wrap_pyfunction!(select_k, m)?)?;
    Ok(())
}
