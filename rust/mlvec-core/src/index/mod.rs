//! One family of vector indexes: exact and quantized inverted lists (Flat, IVF over Flat / SQ8 /
//! 8-bit PQ / 4-bit PQ fast-scan / binary RaBitQ-style codes, optional exact re-scoring) and HNSW
//! graphs (over float32 rows, SQ8 codes, or SQ8 codes with float16 re-scoring copies), behind one
//! [`Index`] with shared ids, validation, filtered search, removal with compaction, and a
//! versioned, checksummed, memory-mappable file format.
//!
//! What the kinds share lives here, one concern per file: the types (this file), building
//! (`train`, `add`, `remove`: `build.rs`), searching and filters (`search.rs`) and persistence
//! (`persist.rs`, with [`io`] the container format). What differs is a `Structure`:
//!
//! - [`ivf::Ivf`]: coarse centroids ([`kmeans`]) and inverted lists whose entries one
//!   [`codec::ListCodec`] encodes ([`codec`]: flat, sq8, pq, fastscan, binary).
//! - [`hnsw::Hnsw`]: a graph whose nodes are the index's slots, walking a [`store::VectorStore`].
//!
//! Every kind addresses vectors by slot (dense `u32`, in insertion order; removal renumbers the
//! kept slots in order); user ids, allow-lists ([`filter`]) and the id ↔ slot map are the index's.
//! Scores are "higher is better" everywhere ([`metric`]: L2 scores `-‖q − x‖²`); kernels are
//! [`crate::simd::vector`]'s. A new kind (a multi-vector index, say) is another `Structure`
//! that reuses the ids, filters, k-means, the residual codecs and the file container.
//!
//! ```
//! use mlvec_core::index::{metric::Metric, Index, SearchParams};
//! let mut index = Index::new(2, "HNSW16", Metric::L2, 0).unwrap();
//! index.add(&[0.0, 0.0, 1.0, 0.0, 0.0, 5.0], Some(&[10, 11, 12])).unwrap();
//! let allow = index.allow_ids(&[10, 12]);
//! let p = SearchParams::default();
//! let (scores, ids) = index.search(&[0.9, 0.1], 2, &p, None).unwrap();
//! assert_eq!(ids[..2], [11, 10]);
//! assert!((scores[0] + 0.02).abs() < 1e-6); // -‖q − x‖²
//! let (_, ids) = index.search(&[0.9, 0.1], 3, &p, Some(&allow)).unwrap();
//! assert_eq!(ids, [10, 12, -1]);
//! ```

mod build;
pub mod codec;
pub mod factory;
pub mod filter;
pub mod hnsw;
pub mod ids;
pub mod io;
pub mod ivf;
pub mod kmeans;
pub mod metric;
mod persist;
mod search;
pub mod store;
pub mod topk;

#[cfg(test)]
mod tests;

use crate::Result;
use factory::IndexSpec;
use filter::Bitmap;
use hnsw::Hnsw;
use ids::SlotIds;
use ivf::Ivf;
use metric::Metric;
use std::collections::HashMap;
use std::sync::OnceLock;

pub use store::{FullVectors, VectorStore};

/// Per-call search settings.
#[derive(Clone, Copy, Debug)]
pub struct SearchParams {
    /// Inverted lists visited per query (IVF only; clamped to the number of lists).
    pub nprobe: Option<usize>,
    /// With stored full-precision vectors, `max(k * rescore, 32)` quantized candidates (4× that
    /// for binary codes, pruned by their error bound) are re-scored exactly; 0 disables it.
    pub rescore: usize,
    /// Candidate list size of a graph search (HNSW only; default: the index's `ef_search`).
    pub ef_search: Option<usize>,
}

impl Default for SearchParams {
    fn default() -> Self {
        SearchParams {
            nprobe: None,
            rescore: 4,
            ef_search: None,
        }
    }
}

/// Default build and search settings of `HNSW<M>` kinds.
pub const HNSW_EF_CONSTRUCTION: usize = 200;
pub const HNSW_EF_SEARCH: usize = 64;

/// How an index arranges its vectors: the part that differs from kind to kind. Every variant
/// takes rows as given (cosine normalisation is its own), addresses them by slot and keeps slots
/// dense and in order.
enum Structure {
    Lists(Ivf),
    Graph(Hnsw),
}

impl Structure {
    /// Learn what the arrangement needs from a sample (validated, `n >= 1`).
    fn train(&mut self, x: &[f32]) -> Result<()> {
        match self {
            Structure::Lists(l) => l.train(x),
            Structure::Graph(g) => {
                g.train(x);
                Ok(())
            }
        }
    }

    /// Reject rows this kind cannot store (before anything changes).
    fn check_rows(&self, x: &[f32]) -> Result<()> {
        match self {
            Structure::Lists(_) => Ok(()),
            Structure::Graph(g) => g.check_rows(x),
        }
    }

    /// Append validated rows as slots `first..first + n` (infallible).
    fn add(&mut self, x: &[f32], first: u32) {
        match self {
            Structure::Lists(l) => l.add(x, first),
            Structure::Graph(g) => g.add(x),
        }
    }

    /// Drop the slots in `gone`, renumbering the rest in order, and free their space.
    fn remove(&mut self, gone: &Bitmap) {
        match self {
            Structure::Lists(l) => l.remove(gone),
            Structure::Graph(g) => g.remove(gone),
        }
    }

    /// The `k` best `(score, slot)` of each query (`[nq, dim]`, normalised for cosine).
    fn search(
        &self,
        q: &[f32],
        k: usize,
        params: &SearchParams,
        allow: Option<&Bitmap>,
    ) -> Vec<Vec<(f32, u32)>> {
        match self {
            Structure::Lists(l) => l.search(q, k, params, allow),
            Structure::Graph(g) => g.search(q, k, params.ef_search, allow),
        }
    }

    fn memory_usage(&self) -> usize {
        match self {
            Structure::Lists(l) => l.memory_usage(),
            Structure::Graph(g) => g.memory_usage(),
        }
    }
}

/// An index (see the module docs for the kinds).
pub struct Index {
    dim: usize,
    metric: Metric,
    spec: IndexSpec,
    seed: u64,
    trained: bool,
    /// User id of each slot.
    ids: SlotIds,
    /// The id the next add without ids starts from (one past the largest id ever added).
    next_id: i64,
    /// id -> slot, built on first need and dropped on every mutation.
    id_map: OnceLock<HashMap<i64, u32>>,
    structure: Structure,
}

impl Index {
    pub fn dim(&self) -> usize {
        self.dim
    }
    pub fn metric(&self) -> Metric {
        self.metric
    }
    pub fn spec(&self) -> IndexSpec {
        self.spec
    }
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn is_trained(&self) -> bool {
        self.trained
    }
    /// The graph of an `HNSW<M>` index.
    pub fn graph(&self) -> Option<&Hnsw> {
        match &self.structure {
            Structure::Graph(g) => Some(g),
            Structure::Lists(_) => None,
        }
    }
    /// The inverted lists of the other kinds.
    pub fn lists(&self) -> Option<&Ivf> {
        match &self.structure {
            Structure::Lists(l) => Some(l),
            Structure::Graph(_) => None,
        }
    }
    /// Number of inverted lists (1 without a coarse quantizer, and for graphs).
    pub fn nlist(&self) -> usize {
        self.lists().map_or(1, Ivf::nlist)
    }
    /// The user ids, by slot.
    pub fn ids(&self) -> std::borrow::Cow<'_, [i64]> {
        self.ids.as_slice()
    }
    /// The stored full-precision vectors, when the index keeps them for re-scoring.
    pub fn full_vectors(&self) -> Option<&FullVectors> {
        self.lists().and_then(|l| l.raw.as_ref())
    }

    /// Bytes held by the index's data (codes, vectors, links, ids, centroids, codebooks;
    /// memory-mapped parts included).
    pub fn memory_usage(&self) -> usize {
        let map = self.id_map.get().map_or(0, |m| m.capacity() * 16);
        self.structure.memory_usage() + map + self.ids.bytes()
    }
}
