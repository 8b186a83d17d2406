//! mlvec-cuda: CUDA kernels compiled at run time with NVRTC and launched on the caller's stream.
//!
//! The `.cu` sources of `cuda_kernels/` are embedded in the binary ([`sources`]). At first use on a
//! device they are compiled with NVRTC for that device's compute capability, the cubins cached on
//! disk ([`nvrtc`]), loaded into the device's primary context (the one torch uses) and launched on
//! a stream handle the caller passes, on raw device pointers the caller owns ([`kernels`]).
//!
//! Nothing CUDA is linked at build time: `cudarc` opens `libcuda` and `libnvrtc` when first asked,
//! so this crate builds and imports on machines without CUDA. [`status`] says whether the kernels
//! can run and, if not, why.

pub mod driver;
pub mod error;
pub mod kernels;
pub mod nvrtc;
pub mod sources;

pub use error::{Error, Result};

/// Whether the CUDA kernels can run here: a driver, at least one device and NVRTC. The error
/// string says which is missing.
pub fn status() -> std::result::Result<(), String> {
    driver::device_count()
        .and_then(|n| {
            if n == 0 {
                Err(Error::Unavailable("the CUDA driver reports no device".into()))
            } else {
                Ok(())
            }
        })
        .and_then(|()| nvrtc::version().map(|_| ()))
        .map_err(|e| e.to_string())
}
