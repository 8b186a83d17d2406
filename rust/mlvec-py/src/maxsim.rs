//! Bindings of `mlvec_core::maxsim`: array conversion, validation errors, GIL release.

use crate::arrays::{contiguous1, FloatSlice, Floats2};
use crate::errors::IntoPyResult;
use mlvec_core::maxsim::{self, DirectionGrad, Outputs, Pairing};
use mlvec_core::tokens::{Element, TokenSets};
use numpy::{PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

type Grads<'py> = (Bound<'py, PyArray2<f32>>, Bound<'py, PyArray2<f32>>);

type Fwd<'py> = (
    Bound<'py, PyArray1<f32>>,
    Option<Bound<'py, PyArray2<i32>>>,
    Option<Bound<'py, PyArray1<f32>>>,
    Option<Bound<'py, PyArray2<i32>>>,
);

/// Both sides as typed slices of one element type, or a TypeError naming the mismatch.
macro_rules! with_typed {
    ($q:expr, $d:expr, |$qs:ident, $ds:ident| $body:expr) => {
        match ($q.slice(), $d.slice()) {
            (FloatSlice::F32($qs), FloatSlice::F32($ds)) => $body,
            (FloatSlice::F16($qs), FloatSlice::F16($ds)) => $body,
            (FloatSlice::BF16($qs), FloatSlice::BF16($ds)) => $body,
            _ => {
                return Err(PyTypeError::new_err(format!(
                    "documents: dtype {} does not match the queries' {}",
                    $d.dtype_name(),
                    $q.dtype_name()
                )))
            }
        }
    };
}

fn sets<'a, T: Element>(
    arg: &'static str,
    data: &'a [T],
    dim: usize,
    offsets: &[i64],
    mask: Option<&'a [bool]>,
) -> PyResult<TokenSets<'a, T>> {
    TokenSets::new(arg, data, dim, offsets, mask).py()
}

fn pairing(paired: bool) -> Pairing {
    if paired {
        Pairing::Paired
    } else {
        Pairing::AllPairs
    }
}

/// MaxSim forward over packed token rows. See `_native.pyi` for the contract.
#[pyfunction]
#[pyo3(signature = (q, q_offsets, q_mask, d, d_offsets, d_mask, *, bf16=false, paired=false, q2d_argmax=false, d2q=false, d2q_argmax=false, check_finite=false))]
#[allow(clippy::too_many_arguments)]
pub fn maxsim_forward<'py>(
    py: Python<'py>,
    q: &Bound<'py, PyAny>,
    q_offsets: PyReadonlyArray1<'py, i64>,
    q_mask: Option<PyReadonlyArray1<'py, bool>>,
    d: &Bound<'py, PyAny>,
    d_offsets: PyReadonlyArray1<'py, i64>,
    d_mask: Option<PyReadonlyArray1<'py, bool>>,
    bf16: bool,
    paired: bool,
    q2d_argmax: bool,
    d2q: bool,
    d2q_argmax: bool,
    check_finite: bool,
) -> PyResult<Fwd<'py>> {
    let qa = Floats2::extract("queries", q, bf16)?;
    let da = Floats2::extract("documents", d, bf16)?;
    let (qo, d_o) = (
        contiguous1("q_offsets", &q_offsets)?,
        contiguous1("d_offsets", &d_offsets)?,
    );
    let qm = q_mask.as_ref().map(|m| contiguous1("q_mask", m)).transpose()?;
    let dm = d_mask.as_ref().map(|m| contiguous1("d_mask", m)).transpose()?;
    let want = Outputs {
        q2d_argmax,
        d2q,
        d2q_argmax,
        check_finite,
    };
    let out = with_typed!(qa, da, |qs, ds| {
        let qt = sets("queries", qs, qa.cols(), qo, qm)?;
        let dt = sets("documents", ds, da.cols(), d_o, dm)?;
        py.allow_threads(|| maxsim::forward(&qt, &dt, pairing(paired), want))
            .py()?
    });
    let p = out.q2d.len();
    let arg2 = |v: Option<Vec<i32>>, l: usize| -> PyResult<Option<Bound<'py, PyArray2<i32>>>> {
        v.map(|v| PyArray1::from_vec(py, v).reshape([p, l])).transpose()
    };
    Ok((
        PyArray1::from_vec(py, out.q2d),
        arg2(out.q2d_argmax, out.lq_max)?,
        out.d2q.map(|v| PyArray1::from_vec(py, v)),
        arg2(out.d2q_argmax, out.ld_max)?,
    ))
}

fn grad_pair<'a>(
    name: &'static str,
    grad: &'a Option<PyReadonlyArray1<'_, f32>>,
    argmax: &'a Option<numpy::PyReadonlyArray2<'_, i32>>,
) -> PyResult<Option<DirectionGrad<'a>>> {
    match (grad, argmax) {
        (None, None) => Ok(None),
        (Some(g), Some(a)) => Ok(Some(DirectionGrad {
            grad: contiguous1(name, g)?,
            argmax: a
                .as_slice()
                .map_err(|_| PyValueError::new_err(format!("{name}: argmax must be C-contiguous")))?,
        })),
        _ => Err(PyValueError::new_err(format!(
            "grad_{name} and {name}_argmax must be given together"
        ))),
    }
}

/// MaxSim backward: gradients with respect to the token rows (float32). See `_native.pyi`.
#[pyfunction]
#[pyo3(signature = (q, q_offsets, q_mask, d, d_offsets, d_mask, *, bf16=false, paired=false, grad_q2d=None, q2d_argmax=None, grad_d2q=None, d2q_argmax=None))]
#[allow(clippy::too_many_arguments)]
pub fn maxsim_backward<'py>(
    py: Python<'py>,
    q: &Bound<'py, PyAny>,
    q_offsets: PyReadonlyArray1<'py, i64>,
    q_mask: Option<PyReadonlyArray1<'py, bool>>,
    d: &Bound<'py, PyAny>,
    d_offsets: PyReadonlyArray1<'py, i64>,
    d_mask: Option<PyReadonlyArray1<'py, bool>>,
    bf16: bool,
    paired: bool,
    grad_q2d: Option<PyReadonlyArray1<'py, f32>>,
    q2d_argmax: Option<numpy::PyReadonlyArray2<'py, i32>>,
    grad_d2q: Option<PyReadonlyArray1<'py, f32>>,
    d2q_argmax: Option<numpy::PyReadonlyArray2<'py, i32>>,
) -> PyResult<Grads<'py>> {
    let qa = Floats2::extract("queries", q, bf16)?;
    let da = Floats2::extract("documents", d, bf16)?;
    let (qo, d_o) = (
        contiguous1("q_offsets", &q_offsets)?,
        contiguous1("d_offsets", &d_offsets)?,
    );
    let qm = q_mask.as_ref().map(|m| contiguous1("q_mask", m)).transpose()?;
    let dm = d_mask.as_ref().map(|m| contiguous1("d_mask", m)).transpose()?;
    let g1 = grad_pair("q2d", &grad_q2d, &q2d_argmax)?;
    let g2 = grad_pair("d2q", &grad_d2q, &d2q_argmax)?;
    let (dim, rq, rd) = (qa.cols(), qa_rows(&qa), qa_rows(&da));
    let (dq, dd) = with_typed!(qa, da, |qs, ds| {
        let qt = sets("queries", qs, qa.cols(), qo, qm)?;
        let dt = sets("documents", ds, da.cols(), d_o, dm)?;
        py.allow_threads(|| maxsim::backward(&qt, &dt, pairing(paired), g1, g2))
            .py()?
    });
    Ok((
        PyArray1::from_vec(py, dq).reshape([rq, dim])?,
        PyArray1::from_vec(py, dd).reshape([rd, da.cols()])?,
    ))
}

fn qa_rows(a: &Floats2) -> usize {
    match a {
        Floats2::F32(x) => x.shape()[0],
        Floats2::F16(x) => x.shape()[0],
        Floats2::BF16(x) => x.shape()[0],
    }
}
