//! Bindings of `mlvec_core::contrastive`: the fused element-wise passes over one logits tile.
//! Tiles are float32 C-contiguous 2-D arrays, modified in place where the function says so.

use crate::arrays::describe;
use crate::errors::IntoPyResult;
use numpy::{PyArray1, PyReadonlyArray1, PyReadwriteArray2, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

/// `(row log-sum-exps, column log-sum-exps if asked for)`.
type Lses<'py> = (Bound<'py, PyArray1<f32>>, Option<Bound<'py, PyArray1<f32>>>);

fn tile_arg<'py>(obj: &Bound<'py, PyAny>) -> PyResult<PyReadwriteArray2<'py, f32>> {
    let t = obj.extract::<PyReadwriteArray2<f32>>().map_err(|_| {
        PyTypeError::new_err(format!(
            "tile: expected a writable 2-D float32 numpy array, got {}",
            describe(obj)
        ))
    })?;
    if !t.is_c_contiguous() {
        return Err(PyValueError::new_err("tile: array must be C-contiguous"));
    }
    Ok(t)
}

fn vec_arg<'py>(arg: &'static str, obj: &Bound<'py, PyAny>) -> PyResult<PyReadonlyArray1<'py, f32>> {
    let v = obj.extract::<PyReadonlyArray1<f32>>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{arg}: expected a 1-D float32 numpy array, got {}",
            describe(obj)
        ))
    })?;
    if !v.is_c_contiguous() {
        return Err(PyValueError::new_err(format!("{arg}: array must be contiguous")));
    }
    Ok(v)
}

/// InfoNCE tile statistics. See `_native.pyi`.
#[pyfunction]
#[pyo3(signature = (tile, bias, *, cols=true))]
pub fn contrastive_softmax_stats<'py>(
    py: Python<'py>,
    tile: &Bound<'py, PyAny>,
    bias: f32,
    cols: bool,
) -> PyResult<Lses<'py>> {
    let mut t = tile_arg(tile)?;
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

/// InfoNCE tile gradient weights, in place. See `_native.pyi`.
#[pyfunction]
#[pyo3(signature = (tile, bias, shift_r, shift_c=None))]
pub fn contrastive_softmax_grad<'py>(
    py: Python<'py>,
    tile: &Bound<'py, PyAny>,
    bias: f32,
    shift_r: &Bound<'py, PyAny>,
    shift_c: Option<&Bound<'py, PyAny>>,
) -> PyResult<()> {
    let mut t = tile_arg(tile)?;
    let (n, m) = (t.shape()[0], t.shape()[1]);
    let sr = vec_arg("shift_r", shift_r)?;
    let sc = shift_c.map(|c| vec_arg("shift_c", c)).transpose()?;
    let data = t.as_slice_mut().expect("checked contiguous");
    let srs = sr.as_slice().expect("checked contiguous");
    let scs = sc.as_ref().map(|c| c.as_slice().expect("checked contiguous"));
    py.allow_threads(|| mlvec_core::contrastive::softmax_grad(data, n, m, bias, srs, scs))
        .py()
}

/// SigLIP tile loss `sum softplus(tile + bias)`. See `_native.pyi`.
#[pyfunction]
pub fn contrastive_sigmoid_loss(py: Python<'_>, tile: &Bound<'_, PyAny>, bias: f32) -> PyResult<f64> {
    let t = tile_arg(tile)?;
    let (n, m) = (t.shape()[0], t.shape()[1]);
    let data = t.as_slice().expect("checked contiguous");
    py.allow_threads(|| mlvec_core::contrastive::sigmoid_loss(data, n, m, bias))
        .py()
}

/// SigLIP tile loss and gradient in one pass: writes `factor * sigmoid(tile + bias)` in place;
/// returns `(sum softplus(tile + bias), sum of the gradient)`. See `_native.pyi`.
#[pyfunction]
pub fn contrastive_sigmoid_loss_grad(
    py: Python<'_>,
    tile: &Bound<'_, PyAny>,
    bias: f32,
    factor: f32,
) -> PyResult<(f64, f64)> {
    let mut t = tile_arg(tile)?;
    let (n, m) = (t.shape()[0], t.shape()[1]);
    let data = t.as_slice_mut().expect("checked contiguous");
    py.allow_threads(|| mlvec_core::contrastive::sigmoid_loss_grad(data, n, m, bias, factor))
        .py()
}
