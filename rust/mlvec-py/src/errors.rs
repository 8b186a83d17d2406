//! The one place where core errors become Python exceptions.

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyOSError, PyTypeError, PyValueError};
use pyo3::PyErr;

create_exception!(
    _native,
    MlvecError,
    PyException,
    "Base class of mlvec's own errors (invalid state, unreadable files)."
);
create_exception!(
    _native,
    FormatError,
    MlvecError,
    "A file is truncated, corrupted, not an mlvec file, or of an unsupported version."
);

pub fn to_py(err: mlvec_core::Error) -> PyErr {
    use mlvec_core::Error as E;
    match err {
        E::InvalidArgument { .. } => PyValueError::new_err(err.to_string()),
        E::Dtype { .. } => PyTypeError::new_err(err.to_string()),
        E::Format(_) => FormatError::new_err(err.to_string()),
        E::Io(e) => PyOSError::new_err(e.to_string()),
        E::State(_) => MlvecError::new_err(err.to_string()),
    }
}

/// `?`-friendly conversion for core results.
pub trait IntoPyResult<T> {
    fn py(self) -> pyo3::PyResult<T>;
}

impl<T> IntoPyResult<T> for mlvec_core::Result<T> {
    fn py(self) -> pyo3::PyResult<T> {
        self.map_err(to_py)
    }
}
