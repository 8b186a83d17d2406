//! The one error type of the core. The bindings map each variant to one Python exception.

/// Errors raised by the core. Messages name the argument at fault and the shapes involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value, shape or length is not acceptable (Python: `ValueError`).
    #[error("{arg}: {msg}")]
    InvalidArgument { arg: &'static str, msg: String },
    /// An element type is not supported (Python: `TypeError`).
    #[error("{arg}: {msg}")]
    Dtype { arg: &'static str, msg: String },
    /// A file is missing, truncated, corrupted or of an unknown version (Python: `mlvec.FormatError`).
    #[error("{0}")]
    Format(String),
    /// Any I/O failure (Python: `OSError`).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The operation is not valid in the current state, e.g. search before train (Python: `mlvec.MlvecError`).
    #[error("{0}")]
    State(String),
}

impl Error {
    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(arg: &'static str, msg: impl Into<String>) -> Self {
        Error::InvalidArgument { arg, msg: msg.into() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
