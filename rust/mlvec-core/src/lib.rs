//! mlvec-core: the pure-Rust kernels behind mlvec. No Python here; `mlvec-py` binds it.
//!
//! - [`maxsim`]: token-wise late-interaction (ColBERT sum-of-max, FILIP mean-of-max) scoring and
//!   its gradient, over padded or packed variable-length token sets.
//! - [`simd`]: the SIMD kernels (AVX-512, AVX2, portable), chosen at run time from [`cpu`]:
//!   MaxSim tiles, and the vector kernels every index kind shares.
//! - [`index`]: one family of ANN indexes — exact and quantized inverted lists (Flat, IVF, SQ8,
//!   PQ, 4-bit fast-scan, binary) and HNSW graphs — with shared ids, filters, removal and files.
//! - [`contrastive`]: fused element-wise passes over one logits tile of the contrastive losses.
//! - [`threads`]: the process-wide thread pool all parallel kernels run on.

pub mod contrastive;
pub mod cpu;
pub mod error;
pub mod index;
pub mod maxsim;
pub mod simd;
pub mod threads;
pub mod tokens;

pub use error::{Error, Result};
