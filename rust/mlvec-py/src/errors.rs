//! The one place where Rust errors become Python exceptions: those of the core
//! (`mlvec_core::Error`) and of the CUDA layer (`mlvec_cuda::Error`), each variant to one
//! exception type, the message unchanged.

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

/// An error of a crate under the bindings, as the Python exception it maps to.
pub trait ToPyErr {
    fn to_py_err(self) -> PyErr;
}

impl ToPyErr for mlvec_core::Error {
    fn to_py_err(self) -> PyErr {
        use mlvec_core::Error as E;
        match self {
            E::InvalidArgument { .. } => PyValueError::new_err(self.to_string()),
            E::Dtype { .. } => PyTypeError::new_err(self.to_string()),
            E::Format(_) => FormatError::new_err(self.to_string()),
            E::Io(e) => PyOSError::new_err(e.to_string()),
            E::State(_) => MlvecError::new_err(self.to_string()),
        }
    }
}

impl ToPyErr for mlvec_cuda::Error {
    fn to_py_err(self) -> PyErr {
        use mlvec_cuda::Error as E;
        match self {
            E::Invalid { .. } => PyValueError::new_err(self.to_string()),
            E::Unavailable(_) | E::Compile { .. } | E::Driver { .. } => MlvecError::new_err(self.to_string()),
        }
    }
}

/// `?`-friendly conversion of a core or CUDA result: `f(...).py()?`.
pub trait IntoPyResult<T> {
    fn py(self) -> pyo3::PyResult<T>;
}

impl<T, E: ToPyErr> IntoPyResult<T> for Result<T, E> {
    fn py(self) -> pyo3::PyResult<T> {
        self.map_err(ToPyErr::to_py_err)
    }
}
