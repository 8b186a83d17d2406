//! Bindings of `mlvec_cuda`: NVRTC set-up, compile checks and kernel launches on raw device
//! pointers (ints from torch's `data_ptr()`) and a stream handle (an int). `mlvec.cuda` wraps
//! them for torch tensors; these functions trust the pointers they are given.

use crate::errors::MlvecError;
use mlvec_cuda::kernels::{self, Backward, Dtype, Pairwise, Place, Sets};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::path::PathBuf;

fn to_py(e: mlvec_cuda::Error) -> PyErr {
    match e {
        mlvec_cuda::Error::Invalid { .. } => PyValueError::new_err(e.to_string()),
        _ => MlvecError::new_err(e.to_string()),
    }
}

trait Py<T> {
    fn py(self) -> PyResult<T>;
}

impl<T> Py<T> for mlvec_cuda::Result<T> {
    fn py(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}

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

fn dtype(name: &str) -> PyResult<Dtype> {
    Dtype::parse(name).py()
}

/// Locate NVRTC and the CUDA headers from the nvidia wheels (once), then report the status.
pub fn status(py: Python<'_>) -> Result<(), String> {
    static LOCATED: std::sync::Once = std::sync::Once::new();
    LOCATED.call_once(|| {
        let _ = locate(py);
    });
    mlvec_cuda::status()
}

fn locate(py: Python<'_>) -> PyResult<()> {
    let m = py.import("mlvec._cuda_locate")?;
    let nvrtc: Option<String> = m.call_method0("find_nvrtc")?.extract()?;
    let include: Vec<String> = m.call_method1("find_include_dirs", (nvrtc.clone(),))?.extract()?;
    mlvec_cuda::nvrtc::configure(
        nvrtc.map(PathBuf::from),
        (!include.is_empty()).then(|| include.into_iter().map(PathBuf::from).collect()),
        None,
    );
    Ok(())
}

/// Set where NVRTC (the library file), the CUDA include folders and the cubin cache are.
#[pyfunction]
#[pyo3(signature = (nvrtc_path=None, include_dirs=None, cache_dir=None))]
pub fn cuda_configure(
    nvrtc_path: Option<PathBuf>,
    include_dirs: Option<Vec<PathBuf>>,
    cache_dir: Option<PathBuf>,
) {
    mlvec_cuda::nvrtc::configure(nvrtc_path, include_dirs, cache_dir);
}

/// NVRTC's `(major, minor)` version; raises when NVRTC cannot be loaded.
#[pyfunction]
pub fn cuda_nvrtc_version() -> PyResult<(i32, i32)> {
    mlvec_cuda::nvrtc::version().py()
}

/// Compile every kernel for `arch` (e.g. `"sm_90"`, no GPU needed) and return their names.
#[pyfunction]
pub fn cuda_compile_check(py: Python<'_>, arch: &str) -> PyResult<Vec<&'static str>> {
    py.allow_threads(|| mlvec_cuda::nvrtc::compile_check(arch)).py()
}

/// Compute capability `(major, minor)` of a CUDA device.
#[pyfunction]
pub fn cuda_compute_capability(device: i32) -> PyResult<(i32, i32)> {
    mlvec_cuda::driver::compute_capability(device).py()
}

/// `(tile_rows, tile_cols, max_cols, select_chunk, max_k)` of the kernels.
#[pyfunction]
pub fn cuda_limits() -> (i64, i64, i64, i64, i64) {
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
pub fn cuda_maxsim_forward(
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
    let dt = dtype(dtype_name)?;
    let at = Place { device, stream };
    py.allow_threads(|| {
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
    .py()
}

/// FILIP pair tile (see `mlvec_cuda::kernels::filip_forward`).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn cuda_filip_forward(
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
    let dt = dtype(dtype_name)?;
    let at = Place { device, stream };
    py.allow_threads(|| {
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
    .py()
}

/// One direction of the MaxSim backward; `kind` is `"gather_a"`, `"scatter_b"` (deterministic)
/// or `"scatter_b_atomic"`.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn cuda_maxsim_backward(
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
    let dt = dtype(dtype_name)?;
    let kind = match kind {
        "gather_a" => Backward::GatherA,
        "scatter_b" => Backward::ScatterBDeterministic,
        "scatter_b_atomic" => Backward::ScatterBAtomic,
        other => {
            return Err(PyValueError::new_err(format!(
                "kind: expected 'gather_a', 'scatter_b' or 'scatter_b_atomic', got {other:?}"
            )))
        }
    };
    let at = Place { device, stream };
    py.allow_threads(|| {
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
    .py()
}

fn pairwise(x: u64, y: u64, m: i64, n: i64, dim: i64) -> Pairwise {
    Pairwise { x, y, m, n, dim }
}

/// CLIP forward tile pass (see `mlvec_cuda::kernels::clip_lse_partials`).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn cuda_clip_lse_partials(
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
    let dt = dtype(dtype_name)?;
    let at = Place { device, stream };
    let pw = pairwise(x, y, m, n, dim);
    py.allow_threads(|| {
        kernels::clip_lse_partials(at, dt, &pw, scale, row_pmax, row_psum, col_pmax, col_psum)
    })
    .py()
}

/// CLIP backward tile pass (see `mlvec_cuda::kernels::clip_grad`).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn cuda_clip_grad(
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
    let dt = dtype(dtype_name)?;
    let at = Place { device, stream };
    let pw = pairwise(x, y, m, n, dim);
    py.allow_threads(|| {
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
    .py()
}

/// SigLIP forward tile pass (see `mlvec_cuda::kernels::siglip_forward`).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn cuda_siglip_forward(
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
    let dt = dtype(dtype_name)?;
    let at = Place { device, stream };
    let pw = pairwise(x, y, m, n, dim);
    py.allow_threads(|| kernels::siglip_forward(at, dt, &pw, scale, bias, row_offset, col_offset, row_part))
        .py()
}

/// SigLIP backward tile pass (see `mlvec_cuda::kernels::siglip_backward`).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn cuda_siglip_backward(
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
    let dt = dtype(dtype_name)?;
    let at = Place { device, stream };
    let pw = pairwise(x, y, m, n, dim);
    py.allow_threads(|| {
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
    .py()
}

/// PQ lookup-table scan (see `mlvec_cuda::kernels::pq_scan`).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn cuda_pq_scan(
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
    py.allow_threads(|| kernels::pq_scan(at, codes, n, m, ksub, lut, nq, dist))
        .py()
}

/// Binary Hamming scan (see `mlvec_cuda::kernels::hamming_scan`).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn cuda_hamming_scan(
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
    py.allow_threads(|| kernels::hamming_scan(at, codes, n, words, queries, nq, dist))
        .py()
}

/// One round of k-smallest selection (see `mlvec_cuda::kernels::select_k`).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn cuda_select_k(
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
    py.allow_threads(|| kernels::select_k(at, vals, ids, rows, n, k, out_vals, out_ids))
        .py()
}
