//! `mlvec._native.maxsim`: bindings of `mlvec_core::maxsim` over packed token sets (array
//! borrowing, validation errors, GIL release).

use crate::arrays::{contiguous1, FloatSlice, Floats2};
use crate::errors::IntoPyResult;
use mlvec_core::maxsim::{self, DirectionGrad, Outputs, Pairing};
use mlvec_core::tokens::TokenSets;
use numpy::{PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

type Grads<'py> = (Bound<'py, PyArray2<f32>>, Bound<'py, PyArray2<f32>>);

type Fwd<'py> = (
    Bound<'py, PyArray1<f32>>,
    Option<Bound<'py, PyArray2<i32>>>,
    Option<Bound<'py, PyArray1<f32>>>,
    Option<Bound<'py, PyArray2<i32>>>,
);

/// One side's packed token sets as numpy hands them over: rows, offsets, optional row mask.
struct Packed<'py> {
    name: &'static str,
    rows: Floats2<'py>,
    offsets: PyReadonlyArray1<'py, i64>,
    mask: Option<PyReadonlyArray1<'py, bool>>,
}

impl<'py> Packed<'py> {
    fn new(
        names: [&'static str; 3],
        rows: &Bound<'py, PyAny>,
        offsets: PyReadonlyArray1<'py, i64>,
        mask: Option<PyReadonlyArray1<'py, bool>>,
        bf16: bool,
    ) -> PyResult<Self> {
        let [name, offsets_name, mask_name] = names;
        let rows = Floats2::extract(name, rows, bf16)?;
        contiguous1(offsets_name, &offsets)?;
        if let Some(m) = &mask {
            contiguous1(mask_name, m)?;
        }
        Ok(Packed {
            name,
            rows,
            offsets,
            mask,
        })
    }

    /// The core's view of these sets over `data` (this side's rows, typed).
    fn sets<'a, T: mlvec_core::tokens::Element>(&'a self, data: &'a [T]) -> PyResult<TokenSets<'a, T>> {
        let offsets = self.offsets.as_slice().expect("checked contiguous");
        let mask = self
            .mask
            .as_ref()
            .map(|m| m.as_slice().expect("checked contiguous"));
        TokenSets::new(self.name, data, self.rows.cols(), offsets, mask).py()
    }
}

/// Run `$body` with `$qt`, `$dt` the two sides' token sets of one element type, or raise a
/// TypeError naming the mismatch.
macro_rules! with_sets {
    ($q:expr, $d:expr, |$qt:ident, $dt:ident| $body:expr) => {
        match ($q.rows.slice(), $d.rows.slice()) {
            (FloatSlice::F32(qs), FloatSlice::F32(ds)) => {
                let ($qt, $dt) = ($q.sets(qs)?, $d.sets(ds)?);
                $body
            }
            (FloatSlice::F16(qs), FloatSlice::F16(ds)) => {
                let ($qt, $dt) = ($q.sets(qs)?, $d.sets(ds)?);
                $body
            }
            (FloatSlice::BF16(qs), FloatSlice::BF16(ds)) => {
                let ($qt, $dt) = ($q.sets(qs)?, $d.sets(ds)?);
                $body
            }
            _ => {
                return Err(PyTypeError::new_err(format!(
                    "documents: dtype {} does not match the queries' {}",
                    $d.rows.dtype_name(),
                    $q.rows.dtype_name()
                )))
            }
        }
    };
}

const QUERIES: [&str; 3] = ["queries", "q_offsets", "q_mask"];
const DOCUMENTS: [&str; 3] = ["documents", "d_offsets", "d_mask"];

fn pairing(paired: bool) -> Pairing {
    if paired {
        Pairing::Paired
    } else {
        Pairing::AllPairs
    }
}

/// MaxSim forward over packed token rows. See `_native/maxsim.pyi` for the contract.
#[pyfunction]
#[pyo3(signature = (q, q_offsets, q_mask, d, d_offsets, d_mask, *, bf16=false, paired=false, q2d_argmax=false, d2q=false, d2q_argmax=false, check_finite=false))]
#[allow(clippy::too_many_arguments)]
fn forward<'py>(
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
    let qp = Packed::new(QUERIES, q, q_offsets, q_mask, bf16)?;
    let dp = Packed::new(DOCUMENTS, d, d_offsets, d_mask, bf16)?;
    let want = Outputs {
        q2d_argmax,
        d2q,
        d2q_argmax,
        check_finite,
    };
    let out = with_sets!(qp, dp, |qt, dt| py
        .allow_threads(|| maxsim::forward(&qt, &dt, pairing(paired), want))
        .py()?);
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
    argmax: &'a Option<PyReadonlyArray2<'_, i32>>,
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

/// MaxSim backward: gradients with respect to the token rows (float32). See `_native/maxsim.pyi`.
#[pyfunction]
#[pyo3(signature = (q, q_offsets, q_mask, d, d_offsets, d_mask, *, bf16=false, paired=false, grad_q2d=None, q2d_argmax=None, grad_d2q=None, d2q_argmax=None))]
#[allow(clippy::too_many_arguments)]
fn backward<'py>(
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
    q2d_argmax: Option<PyReadonlyArray2<'py, i32>>,
    grad_d2q: Option<PyReadonlyArray1<'py, f32>>,
    d2q_argmax: Option<PyReadonlyArray2<'py, i32>>,
) -> PyResult<Grads<'py>> {
    let qp = Packed::new(QUERIES, q, q_offsets, q_mask, bf16)?;
    let dp = Packed::new(DOCUMENTS, d, d_offsets, d_mask, bf16)?;
    let g1 = grad_pair("q2d", &grad_q2d, &q2d_argmax)?;
    let g2 = grad_pair("d2q", &grad_d2q, &d2q_argmax)?;
    let (dq, dd) = with_sets!(qp, dp, |qt, dt| py
        .allow_threads(|| maxsim::backward(&qt, &dt, pairing(paired), g1, g2))
        .py()?);
    Ok((
        PyArray1::from_vec(py, dq).reshape([qp.rows.rows(), qp.rows.cols()])?,
        PyArray1::from_vec(py, dd).reshape([dp.rows.rows(), dp.rows.cols()])?,
    ))
}

/// Fill `mlvec._native.maxsim`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(forward, m)?)?;
    m.add_function(wrap_pyfunction!(backward, m)?)?;
    Ok(())
}
