//! mlvec-cuda: CUDA kernels compiled at run time with NVRTC and launched on the caller's stream.
//!
//! No kernels are wired up yet; [`status`] reports why CUDA is unavailable so `mlvec` can say so.

/// Whether the CUDA path can be used, and if not, why.
pub fn status() -> Result<(), String> {
    Err("mlvec was built without CUDA kernels; CUDA tensors are not supported yet".to_string())
}
