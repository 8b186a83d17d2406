//! Errors of the CUDA layer. The bindings map `Invalid` to `ValueError`, the rest to `MlvecError`.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An argument is out of range for the kernels (Python: `ValueError`).
    #[error("{arg}: {msg}")]
    Invalid { arg: &'static str, msg: String },
    /// No driver, no device or no NVRTC.
    #[error("CUDA unavailable: {0}")]
    Unavailable(String),
    /// NVRTC rejected a source; the message holds its log.
    #[error("NVRTC could not compile {file} for {arch}: {log}")]
    Compile { file: String, arch: String, log: String },
    /// A CUDA driver call failed.
    #[error("CUDA driver error in {call}: {msg}")]
    Driver { call: &'static str, msg: String },
}

impl Error {
    pub fn invalid(arg: &'static str, msg: impl Into<String>) -> Self {
        Error::Invalid { arg, msg: msg.into() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
