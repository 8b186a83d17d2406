//! `mlvec._native.contrastive`: bindings of `mlvec_core::contrastive`, the fused element-wise
//! passes over one logits tile. Tiles are float32 C-contiguous 2-D arrays, modified in place
//! where the function says so.

use crate::arrays::{readonly_1d, writable_f32_2d};
use crate::errors::IntoPyResult;
use numpy::{PyArray1, PyUntypedArrayMethods};
use pyo3::prelude::*;

/// `(row log-sum-exps, column log-sum-exps if asked for)`.
type Lses<'py> = (Bound<'py, PyArray1<f32>>, Option<Bound<'py, PyArray1<f32>>>);

/// InfoNCE tile statistics. See `_native/contrastive.pyi`.
#[pyfunction]
#[pyo3(signature = (tile, bias, *, cols=true))]
fn softmax_stats<'py>(
    py: Python<'py>,
    tile: &Bound<'py, PyAny>,
    bias: f32,
    cols: bool,
) -> PyResult<Lses<'py>> {
    let mut t = writable_f32_2d("tile", tile)?;
    let (n, m) = (t.shape()[0], t.shape()[1]);
    let data = t.as_slice_mut().expect("checked contiguous");
    let mut row = vec![0.0_f32; n];
    let mut col = cols.then(|| vec![0.0_f32; m]);
    py.allow_threads(|| {
        mlvec_core::contrastive::softmax_stats(data, n, m, bias, &mut row, col.as_deref_mut())
    })
    .py()?;
    Ok((
        PyArray1::from_vec(py, row),
        col.map(|c| PyArray1::from_vec(py, c)),
    ))
}

/// InfoNCE tile gradient weights, in place. See `_native/contrastive.pyi`.
#[pyfunction]
#[pyo3(signature = (tile, bias, shift_r, shift_c=None))]
fn softmax_grad<'py>(
    py: Python<'py>,
    tile: &Bound<'py, PyAny>,
    bias: f32,
    shift_r: &Bound<'py, PyAny>,
    shift_c: Option<&Bound<'py, PyAny>>,
) -> PyResult<()> {
    let mut t = writable_f32_2d("tile", tile)?;
    let (n, m) = (t.shape()[0], t.shape()[1]);
    let sr = readonly_1d::<f32>("shift_r", "float32", shift_r)?;
    let sc = shift_c
        .map(|c| readonly_1d::<f32>("shift_c", "float32", c))
        .transpose()?;
    let data = t.as_slice_mut().expect("checked contiguous");
    let srs = sr.as_slice().expect("checked contiguous");
    let scs = sc.as_ref().map(|c| c.as_slice().expect("checked contiguous"));
    py.allow_threads(|| mlvec_core::contrastive::softmax_grad(data, n, m, bias, srs, scs))
        .py()
}

/// SigLIP tile loss `sum softplus(tile + bias)`. See `_native/contrastive.pyi`.
#[pyfunction]
fn sigmoid_loss(py: Python<'_>, tile: &Bound<'_, PyAny>, bias: f32) -> PyResult<f64> {
    let t = writable_f32_2d("tile", tile)?;
    let (n, m) = (t.shape()[0], t.shape()[1]);
    let data = t.as_slice().expect("checked contiguous");
    py.allow_threads(|| mlvec_core::contrastive::sigmoid_loss(data, n, m, bias))
        .py()
}

/// SigLIP tile loss and gradient in one pass: writes `factor * sigmoid(tile + bias)` in place;
/// returns `(sum softplus(tile + bias), sum of the gradient)`. See `_native/contrastive.pyi`.
#[pyfunction]
fn sigmoid_loss_grad(
    py: Python<'_>,
    tile: &Bound<'_, PyAny>,
    bias: f32,
    factor: f32,
) -> PyResult<(f64, f64)> {
    let mut t = writable_f32_2d("tile", tile)?;
    let (n, m) = (t.shape()[0], t.shape()[1]);
    let data = t.as_slice_mut().expect("checked contiguous");
    py.allow_threads(|| mlvec_core::contrastive::sigmoid_loss_grad(data, n, m, bias, factor))
        .py()
}

/// Fill `mlvec._native.contrastive`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(softmax_stats, m)?)?;
    m.add_function(wrap_pyfunction!(softmax_grad, m)?)?;
    m.add_function(wrap_pyfunction!(sigmoid_loss, m)?)?;
    m.add_function(wrap_pyfunction!(sigmoid_loss_grad, m)?)?;
    Ok(())
}
