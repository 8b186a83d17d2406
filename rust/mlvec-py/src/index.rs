//! Bindings of `mlvec_core::index`: one pyclass over a lock-protected index.
//!
//! Concurrency: the index sits behind a `RwLock`. `search` takes the read lock, so any number
//! of searches run at once (each on the GIL-free rayon pool); `train`, `add` and `remove` take
//! the write lock and wait for running searches to finish. Every call sees the index either
//! entirely before or entirely after a concurrent modification. The GIL is released around all
//! work, including the wait for the lock.

use crate::arrays::{contiguous1, describe, FloatSlice, Floats2};
use crate::errors::IntoPyResult;
use crate::gil;
use mlvec_core::index::{metric::Metric, Index, SearchParams};
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// Rows of a float array as float32 (borrowed when already float32).
fn floats<'a>(arg: &'static str, a: &'a Floats2<'_>, dim: usize) -> PyResult<Cow<'a, [f32]>> {
    if a.cols() != dim {
        return Err(PyValueError::new_err(format!(
            "{arg}: expected rows of dimension {dim}, got an array of {} columns ({})",
            a.cols(),
            a.dtype_name()
        )));
    }
    Ok(match a.slice() {
        FloatSlice::F32(s) => Cow::Borrowed(s),
        FloatSlice::F16(s) => Cow::Owned(s.iter().map(|v| v.to_f32()).collect()),
        FloatSlice::BF16(s) => Cow::Owned(s.iter().map(|v| v.to_f32()).collect()),
    })
}

/// The compiled index; use `mlvec.index.Index` (the documented wrapper) instead.
#[pyclass(name = "NativeIndex", module = "mlvec._native.index", frozen)]
pub struct PyIndex {
    inner: Arc<RwLock<Index>>,
}

impl PyIndex {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

type SearchOut<'py> = (Bound<'py, numpy::PyArray2<f32>>, Bound<'py, numpy::PyArray2<i64>>);

#[pymethods]
impl PyIndex {
    #[new]
    #[pyo3(signature = (dim, kind, metric = "ip", seed = 0))]
    fn new(dim: i64, kind: &str, metric: &str, seed: u64) -> PyResult<Self> {
        if dim < 1 {
            return Err(PyValueError::new_err(format!(
                "dim: must be at least 1, got {dim}"
            )));
        }
        let m = Metric::parse(metric).py()?;
        Ok(PyIndex {
            inner: Arc::new(RwLock::new(Index::new(dim as usize, kind, m, seed).py()?)),
        })
    }

    #[pyo3(signature = (x, *, bf16 = false))]
    fn train(&self, py: Python<'_>, x: &Bound<'_, PyAny>, bf16: bool) -> PyResult<()> {
        let a = Floats2::extract("x", x, bf16)?;
        let dim = self.read().dim();
        let v = floats("x", &a, dim)?;
        py.allow_threads(|| self.write().train(&v)).py()
    }

    #[pyo3(signature = (x, ids = None, *, bf16 = false))]
    fn add(
        &self,
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
        ids: Option<PyReadonlyArray1<'_, i64>>,
        bf16: bool,
    ) -> PyResult<()> {
        let a = Floats2::extract("x", x, bf16)?;
        let dim = self.read().dim();
        let v = floats("x", &a, dim)?;
        let ids = ids.as_ref().map(|i| contiguous1("ids", i)).transpose()?;
        py.allow_threads(|| self.write().add(&v, ids)).py()
    }

    #[pyo3(signature = (queries, k, *, nprobe = None, rescore = 4, ef_search = None, allow_ids = None, allow_mask = None, bf16 = false))]
    #[allow(clippy::too_many_arguments)]
    fn search<'py>(
        &self,
        py: Python<'py>,
        queries: &Bound<'py, PyAny>,
        k: i64,
        nprobe: Option<i64>,
        rescore: i64,
        ef_search: Option<i64>,
        allow_ids: Option<PyReadonlyArray1<'py, i64>>,
        allow_mask: Option<PyReadonlyArray1<'py, bool>>,
        bf16: bool,
    ) -> PyResult<SearchOut<'py>> {
        if k < 1 {
            return Err(PyValueError::new_err(format!("k: must be at least 1, got {k}")));
        }
        if let Some(p) = nprobe.filter(|&p| p < 1) {
            return Err(PyValueError::new_err(format!(
                "nprobe: must be at least 1, got {p}"
            )));
        }
        if let Some(e) = ef_search.filter(|&e| e < 1) {
            return Err(PyValueError::new_err(format!(
                "ef_search: must be at least 1, got {e}"
            )));
        }
        if rescore < 0 {
            return Err(PyValueError::new_err(format!(
                "rescore: must be >= 0, got {rescore}"
            )));
        }
        if allow_ids.is_some() && allow_mask.is_some() {
            return Err(PyValueError::new_err("give allow_ids or allow_mask, not both"));
        }
        let a = Floats2::extract("queries", queries, bf16)?;
        let dim = self.read().dim();
        let v = floats("queries", &a, dim)?;
        let nq = v.len() / dim;
        let ai = allow_ids
            .as_ref()
            .map(|i| contiguous1("allow_ids", i))
            .transpose()?;
        let am = allow_mask
            .as_ref()
            .map(|i| contiguous1("allow_mask", i))
            .transpose()?;
        let params = SearchParams {
            nprobe: nprobe.map(|p| p as usize),
            rescore: rescore as usize,
            ef_search: ef_search.map(|e| e as usize),
        };
        let k = k as usize;
        let (s, i) = gil::detach(py, || {
            let idx = self.read();
            let allow = match (ai, am) {
                (Some(ids), _) => Some(idx.allow_ids(ids)),
                (_, Some(mask)) => Some(idx.allow_mask(mask)),
                _ => None,
            };
            idx.search(&v, k, &params, allow.as_ref())
        })
        .py()?;
        Ok((
            PyArray1::from_vec(py, s).reshape([nq, k])?,
            PyArray1::from_vec(py, i).reshape([nq, k])?,
        ))
    }

    fn remove(&self, py: Python<'_>, ids: &Bound<'_, PyAny>) -> PyResult<usize> {
        let arr: PyReadonlyArray1<i64> = ids.extract().map_err(|_| {
            pyo3::exceptions::PyTypeError::new_err(format!(
                "ids: expected a 1-D int64 array, got {}",
                describe(ids)
            ))
        })?;
        let s = contiguous1("ids", &arr)?;
        py.allow_threads(|| self.write().remove(s)).py()
    }

    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.allow_threads(|| self.read().save(&path)).py()
    }

    #[staticmethod]
    #[pyo3(signature = (path, mmap = true))]
    fn load(py: Python<'_>, path: PathBuf, mmap: bool) -> PyResult<Self> {
        let idx = py.allow_threads(|| Index::load(&path, mmap)).py()?;
        Ok(PyIndex {
            inner: Arc::new(RwLock::new(idx)),
        })
    }

    fn __len__(&self) -> usize {
        self.read().len()
    }

    fn dim(&self) -> usize {
        self.read().dim()
    }

    fn metric(&self) -> &'static str {
        self.read().metric().name()
    }

    fn kind(&self) -> String {
        self.read().spec().to_string()
    }

    fn is_trained(&self) -> bool {
        self.read().is_trained()
    }

    fn nlist(&self) -> usize {
        self.read().nlist()
    }

    fn memory_usage(&self) -> usize {
        self.read().memory_usage()
    }

    fn ids<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        PyArray1::from_vec(py, self.read().ids().to_vec())
    }
}
