//! Bindings of `mlvec_core::hnsw`: the `HnswIndex` class.
//!
//! The index sits behind an `RwLock`: searches share it (and run with the GIL released, so
//! searches from several Python threads run in parallel), `add`/`remove`/`compact` take it
//! exclusively, so they are safe to call while other threads search.

use crate::arrays::describe;
use crate::errors::IntoPyResult;
use crate::gil;
use mlvec_core::hnsw::{Hnsw, Metric, Params, Storage};
use numpy::{PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use std::sync::RwLock;

/// `(scores, ids)` of a search.
type Hits<'py> = (Bound<'py, PyArray2<f32>>, Bound<'py, PyArray2<i64>>);

/// HNSW graph index over float32 or SQ8-coded vectors. See `_native.pyi`.
#[pyclass(module = "mlvec._native", name = "HnswIndex")]
pub struct HnswIndex {
    inner: RwLock<Hnsw>,
    dim: usize,
}

fn floats2<'py>(
    arg: &'static str,
    obj: &Bound<'py, PyAny>,
    dim: usize,
) -> PyResult<PyReadonlyArray2<'py, f32>> {
    let a = obj.extract::<PyReadonlyArray2<f32>>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{arg}: expected a 2-D numpy array of float32, got {}",
            describe(obj)
        ))
    })?;
    if a.shape()[1] != dim {
        return Err(PyValueError::new_err(format!(
            "{arg}: expected shape [n, {dim}], got {:?}",
            a.shape()
        )));
    }
    if !a.is_c_contiguous() {
        return Err(PyValueError::new_err(format!(
            "{arg}: array must be C-contiguous"
        )));
    }
    Ok(a)
}

fn ids1(arg: &'static str, obj: &Bound<'_, PyAny>) -> PyResult<Vec<u64>> {
    let a = obj.extract::<PyReadonlyArray1<i64>>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{arg}: expected a 1-D numpy array of int64, got {}",
            describe(obj)
        ))
    })?;
    // Ids are small next to vectors: any 1-D int64 layout (e.g. a strided slice) is copied.
    let s = a.as_array();
    if let Some(bad) = s.iter().find(|&&x| x < 0) {
        return Err(PyValueError::new_err(format!(
            "{arg}: ids must be non-negative, got {bad}"
        )));
    }
    Ok(s.iter().map(|&x| x as u64).collect())
}

impl HnswIndex {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Hnsw> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Hnsw> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[pymethods]
impl HnswIndex {
    #[new]
    #[pyo3(signature = (dim, metric="ip", M=16, ef_construction=200, storage="f32", ef_search=64))]
    #[allow(non_snake_case)]
    fn new(
        dim: i64,
        metric: &str,
        M: i64,
        ef_construction: i64,
        storage: &str,
        ef_search: i64,
    ) -> PyResult<Self> {
        let pos = |arg: &str, v: i64| -> PyResult<usize> {
            if v < 1 {
                Err(PyValueError::new_err(format!(
                    "{arg}: must be at least 1, got {v}"
                )))
            } else {
                Ok(v as usize)
            }
        };
        let params = Params {
            m: pos("M", M)?,
            ef_construction: pos("ef_construction", ef_construction)?,
            ef_search: pos("ef_search", ef_search)?,
            ..Params::default()
        };
        let dim = pos("dim", dim)?;
        let index = Hnsw::new(
            dim,
            Metric::parse(metric).py()?,
            Storage::parse(storage).py()?,
            params,
        )
        .py()?;
        Ok(Self {
            inner: RwLock::new(index),
            dim,
        })
    }

    /// Add rows `x` (float32 `[n, dim]`) with int64 `ids` (default: consecutive). Returns the ids.
    #[pyo3(signature = (x, ids=None))]
    fn add<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        ids: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let xa = floats2("x", x, self.dim)?;
        let ids = ids.map(|i| ids1("ids", i)).transpose()?;
        if let Some(i) = &ids {
            if i.len() != xa.shape()[0] {
                return Err(PyValueError::new_err(format!(
                    "ids: has {} ids for {} rows of x",
                    i.len(),
                    xa.shape()[0]
                )));
            }
        }
        let xs = xa.as_slice()?;
        let out = py.allow_threads(|| self.write().add(xs, ids.as_deref())).py()?;
        Ok(PyArray1::from_vec(
            py,
            out.into_iter().map(|i| i as i64).collect(),
        ))
    }

    /// `(scores float32 [nq, k], ids int64 [nq, k])`, padded with -inf / -1.
    #[pyo3(signature = (q, k, ef_search=None, allow=None))]
    fn search<'py>(
        &self,
        py: Python<'py>,
        q: &Bound<'py, PyAny>,
        k: i64,
        ef_search: Option<i64>,
        allow: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Hits<'py>> {
        if k < 1 {
            return Err(PyValueError::new_err(format!("k: must be at least 1, got {k}")));
        }
        if let Some(e) = ef_search {
            if e < 1 {
                return Err(PyValueError::new_err(format!(
                    "ef_search: must be at least 1, got {e}"
                )));
            }
        }
        let qa = floats2("q", q, self.dim)?;
        let nq = qa.shape()[0];
        let allow = allow.map(|a| ids1("allow", a)).transpose()?;
        let qs = qa.as_slice()?;
        let k = k as usize;
        let (s, i) = gil::detach(py, || {
            let g = self.read();
            let set = allow.as_ref().map(|a| g.node_set(a));
            g.search_batch(qs, k, ef_search.map(|e| e as usize), set.as_ref())
        })
        .py()?;
        Ok((
            PyArray1::from_vec(py, s).reshape([nq, k])?,
            PyArray1::from_vec(py, i).reshape([nq, k])?,
        ))
    }

    /// Remove ids (all must be present and distinct); their space is freed by `compact()`.
    fn remove(&self, py: Python<'_>, ids: &Bound<'_, PyAny>) -> PyResult<()> {
        let ids = ids1("ids", ids)?;
        py.allow_threads(|| self.write().remove(&ids)).py()
    }

    /// Rebuild the graph over the live vectors, freeing the space of removed ones.
    fn compact(&self, py: Python<'_>) {
        py.allow_threads(|| self.write().compact())
    }

    /// Bytes held by the index.
    fn memory_usage(&self, py: Python<'_>) -> usize {
        py.allow_threads(|| self.read().memory_usage())
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        py.allow_threads(|| self.read().len())
    }

    #[getter]
    fn dim(&self) -> usize {
        self.dim
    }

    #[getter]
    fn metric(&self) -> &'static str {
        self.read().metric().name()
    }

    #[getter]
    fn storage(&self) -> &'static str {
        self.read().storage().name()
    }

    /// Default `ef` of searches (settable).
    #[getter]
    fn get_ef_search(&self) -> usize {
        self.read().params().ef_search
    }

    #[setter]
    fn set_ef_search(&self, py: Python<'_>, ef: i64) -> PyResult<()> {
        if ef < 1 {
            return Err(PyValueError::new_err(format!(
                "ef_search: must be at least 1, got {ef}"
            )));
        }
        py.allow_threads(|| self.write().set_ef_search(ef as usize)).py()
    }

    fn __repr__(&self) -> String {
        let g = self.read();
        let p = g.params();
        format!(
            "HnswIndex(dim={}, metric='{}', M={}, ef_construction={}, storage='{}', ef_search={}, len={})",
            self.dim,
            g.metric().name(),
            p.m,
            p.ef_construction,
            g.storage().name(),
            p.ef_search,
            g.len()
        )
    }
}
