//! mlvec-core: the pure-Rust kernels behind mlvec. No Python here; `mlvec-py` binds it.
//!
//! - [`maxsim`]: token-wise late-interaction (ColBERT sum-of-max, FILIP mean-of-max) scoring and
//!   its gradient, over padded or packed variable-length token sets.
//! - [`simd`]: the SIMD micro-kernels (AVX-512, AVX2, portable), chosen at run time.
//! - [`hnsw`]: HNSW graph index over f32 vectors or SQ8 codes, with filters, removal and compaction.
//! - [`index`]: exact and quantized ANN indexes (Flat, IVF, SQ8, PQ, 4-bit fast-scan, binary).
//! - [`contrastive`]: fused element-wise passes over one logits tile of the contrastive losses.
//! - [`threads`]: the process-wide thread pool all parallel kernels run on.

pub mod contrastive;
pub mod cpu;
pub mod error;
pub mod hnsw;
pub mod index;
pub mod maxsim;
pub mod simd;
pub mod threads;
pub mod tokens;

pub use error::{Error, Result};
