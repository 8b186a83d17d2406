//! The graph kind of the index family: HNSW (Malkov & Yashunin) over one of the index's stores
//! — float32 rows, SQ8 codes, or SQ8 codes with float16 re-scoring copies.
//!
//! - `M` links per node on upper layers, `2M` on layer 0, the neighbour-selection heuristic,
//!   parallel insertion on [`crate::threads`] with striped per-node locks, incremental adds
//!   (`build.rs`).
//! - Filtered search walks through rejected nodes and switches to an exact scan of the allowed
//!   set when that is cheaper (few allowed nodes), so recall does not collapse (`search.rs`).
//! - Removal re-links the live nodes that pointed to removed ones (heuristic over their
//!   X
//! - [`Hnsw::to_parts`] / [`Hnsw::from_parts`] expose the graph as plain arrays for the file
//!   format (the round trip is exact).
//!
//! Nodes are the index's slots: the index owns the ids, validation and the allow-lists (over
//! slots) this module searches with. Scores are the [`Metric`]'s, higher is better.

mod build;
mod compact;
pub mod graph;
mod search;

#[cfg(test)]
mod tests;

use super::codec::sq8::{Sq8, Sq8Codes, Sq8F16, F16_MAX};
use super::filter::Bitmap;
use super::io::Buf;
use super::metric::Metric;
use super::store::FullVectors;
use crate::{threads, Error, Result};
pub use graph::Params;
use graph::{Cand, Graph};
use rayon::prelude::*;
use std::sync::atomic::AtomicU32;

/// How a graph stores its vectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// Full-precision float32 rows.
    F32,
    /// One byte per dimension, per-dimension range trained on the first batch (and widened by
    /// later ones).
    Sq8,
    /// SQ8 codes for the walk plus float16 copies of the vectors that re-score the final
    /// candidates (3 bytes per dimension in all).
    Sq8F16,
}

/// The whole graph as plain arrays (what the file format stores).
///
/// Node `i` has level `levels[i]` and one neighbour list per layer `0..=levels[i]`; lists are
/// stored node by node, layer by layer: list `j` is `neighbors[offsets[j]..offsets[j+1]]`.
#[derive(Clone, Debug, PartialEq)]
pub struct HnswParts {
    pub dim: usize,
    pub metric: Metric,
    pub storage: Storage,
    pub params: Params,
    pub levels: Vec<u8>,
    pub offsets: Vec<u64>,
    pub neighbors: Vec<u32>,
    /// `[n, dim]` rows for [`Storage::F32`], empty otherwise.
    pub vectors: Vec<f32>,
    /// `[n, dim]` codes for [`Storage::Sq8`] and [`Storage::Sq8F16`], empty otherwise.
    pub codes: Vec<u8>,
    /// `[n, dim]` float16 bits for [`Storage::Sq8F16`], empty otherwise.
    pub half: Vec<u16>,
    /// SQ8 per-dimension minimum and step (empty before training).
    pub sq_min: Vec<f32>,
    pub sq_scale: Vec<f32>,
    pub entry_point: Option<u32>,
}

enum Inner {
    F32(Graph<FullVectors>),
    Sq8(Graph<Sq8Codes>),
    Sq8F16(Graph<Sq8F16>),
}

macro_rules! each {
    ($self:expr, |$g:ident| $body:expr) => {
        match $self {
            Inner::F32($g) => $body,
            Inner::Sq8($g) => $body,
            Inner::Sq8F16($g) => $body,
        }
    };
}

/// An HNSW graph. Not internally locked: `&self` methods (search) may run from many threads at
/// once; `&mut self` methods (add, remove) need exclusive access.
pub struct Hnsw {
    dim: usize,
    metric: Metric,
    storage: Storage,
    inner: Inner,
}

impl Hnsw {
    /// An empty graph of `dim`-dimensional vectors.
    pub fn new(dim: usize, metric: Metric, storage: Storage, params: Params) -> Result<Self> {
        if dim == 0 {
            return Err(Error::invalid("dim", "must be at least 1"));
        }
        if params.m < 2 || params.m > 256 {
            return Err(Error::invalid(
                "M",
                format!("must be in 2..=256, got {}", params.m),
            ));
        }
        if params.ef_construction < 1 {
            return Err(Error::invalid("ef_construction", "must be at least 1"));
        }
        if params.ef_search < 1 {
            return Err(Error::invalid("ef_search", "must be at least 1"));
        }
        let sq = || Sq8Codes::new(dim, metric, Sq8::default(), Vec::new());
        let inner = match storage {
            Storage::F32 => Inner::F32(Graph::new(FullVectors::new(dim, metric, Buf::default()), params)),
            Storage::Sq8 => Inner::Sq8(Graph::new(sq(), params)),
            Storage::Sq8F16 => Inner::Sq8F16(Graph::new(Sq8F16::new(sq(), Vec::new()), params)),
        };
        Ok(Self {
            dim,
            metric,
            storage,
            inner,
        })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn metric(&self) -> Metric {
        self.metric
    }

    pub fn storage(&self) -> Storage {
        self.storage
    }

    pub fn params(&self) -> Params {
        each!(&self.inner, |g| g.params)
    }

    /// Nodes (vectors) in the graph.
    pub fn len(&self) -> usize {
        each!(&self.inner, |g| g.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Set the SQ8 range from the rows `x` (`[n, dim]`, validated); nothing to learn for
    /// float32 rows. Only an empty graph is trained.
    pub(crate) fn train(&mut self, x: &[f32]) {
        let normalize = self.metric.normalizes();
        match &mut self.inner {
            Inner::F32(_) => {}
            Inner::Sq8(g) => g.store.train(x, normalize),
            Inner::Sq8F16(g) => g.store.sq.train(x, normalize),
        }
    }

    /// Reject rows this graph cannot store (checked before anything changes): values beyond
    /// the float16 range where float16 copies are kept (normalised cosine rows always fit).
    pub(crate) fn check_rows(&self, x: &[f32]) -> Result<()> {
        if self.storage == Storage::Sq8F16 && !self.metric.normalizes() {
            if let Some(p) = x.iter().position(|v| v.abs() > F16_MAX) {
                return Err(Error::invalid(
                    "x",
                    format!(
                        "row {} has {} at column {}, beyond the float16 range (±65504) that \
                         rescore16 keeps for re-scoring",
                        p / self.dim,
                        x[p],
                        p % self.dim
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Append the rows of `x` (validated, `[n, dim]`) as nodes `len..len + n`, linking them in
    /// parallel (normalised first for cosine).
    pub(crate) fn add(&mut self, x: &[f32]) {
        let normalize = self.metric.normalizes();
        each!(&mut self.inner, |g| g.add_rows(x, normalize))
    }

    /// Remove the nodes in `gone`, re-linking their neighbourhoods; the rest are renumbered in
    /// order.
    pub(crate) fn remove(&mut self, gone: &Bitmap) {
        each!(&mut self.inner, |g| g.compact(gone))
    }

    /// The (up to) `k` best `(score, node)` of each query (`[nq, dim]`, normalised for cosine),
    /// best first, from `ef` candidates (default: the graph's `ef_search`); `allow` restricts
    /// the nodes returned. One query runs on the caller's thread (no pool hand-off on the
    /// latency path), a batch in parallel.
    pub(crate) fn search(
        &self,
        queries: &[f32],
        k: usize,
        ef: Option<usize>,
        allow: Option<&Bitmap>,
    ) -> Vec<Vec<(f32, u32)>> {
        let one = |q: &[f32]| -> Vec<(f32, u32)> {
            each!(&self.inner, |g| {
                let ef = ef.unwrap_or(g.params.ef_search);
                g.knn(q, k, ef, allow)
                    .into_iter()
                    .map(|Cand { s, id }| (s, id))
                    .collect()
            })
        };
        if queries.len() <= self.dim {
            return queries.chunks_exact(self.dim).map(one).collect();
        }
        threads::install(|| queries.par_chunks(self.dim).map(one).collect())
    }

    /// Bytes the graph holds.
    pub fn memory_usage(&self) -> usize {
        std::mem::size_of::<Self>() + each!(&self.inner, |g| g.memory_usage())
    }

    /// The graph as plain arrays.
    pub fn to_parts(&self) -> HnswParts {
        let (mut vectors, mut codes, mut half, mut sq_min, mut sq_scale) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut sq_parts = |sq: &Sq8Codes| {
            codes = sq.codes.clone();
            sq_min = sq.sq.vmin.clone();
            sq_scale = sq.sq.step.clone();
        };
        match &self.inner {
            Inner::F32(g) => vectors = g.store.data.as_slice().to_vec(),
            Inner::Sq8(g) => sq_parts(&g.store),
            Inner::Sq8F16(g) => {
                sq_parts(&g.store.sq);
                half = g.store.half.clone();
            }
        }
        each!(&self.inner, |g| {
            let n = g.len();
            let mut offsets = Vec::with_capacity(n + 1);
            let mut neighbors = Vec::new();
            offsets.push(0u64);
            let mut buf = Vec::new();
            for i in 0..n as u32 {
                for layer in 0..=g.levels[i as usize] as usize {
                    g.neighbours(i, layer, &mut buf);
                    neighbors.extend_from_slice(&buf);
                    offsets.push(neighbors.len() as u64);
                }
            }
            HnswParts {
                dim: self.dim,
                metric: self.metric,
                storage: self.storage,
                params: g.params,
                levels: g.levels.clone(),
                offsets,
                neighbors,
                vectors,
                codes,
                half,
                sq_min,
                sq_scale,
                entry_point: g.entry,
            }
        })
    }

    /// Rebuild a graph from [`HnswParts`], checking that they are consistent
    /// ([`Error::Format`] otherwise).
    pub fn from_parts(p: HnswParts) -> Result<Self> {
        let bad = |m: String| Error::Format(format!("HNSW parts: {m}"));
        let mut index = Self::new(p.dim, p.metric, p.storage, p.params).map_err(|e| bad(e.to_string()))?;
        let n = p.levels.len();
        let (dim, m) = (p.dim, p.params.m);
        match p.storage {
            Storage::F32 if p.vectors.len() != n * dim || !p.codes.is_empty() => {
                return Err(bad(format!(
                    "expected {} f32 values, got {}",
                    n * dim,
                    p.vectors.len()
                )));
            }
            Storage::Sq8 | Storage::Sq8F16 if p.codes.len() != n * dim || !p.vectors.is_empty() => {
                return Err(bad(format!("expected {} codes, got {}", n * dim, p.codes.len())));
            }
            Storage::Sq8 | Storage::Sq8F16 if n > 0 && (p.sq_min.len() != dim || p.sq_scale.len() != dim) => {
                return Err(bad("SQ8 min/scale must have dim values".into()));
            }
            _ => {}
        }
        let want_half = if p.storage == Storage::Sq8F16 { n * dim } else { 0 };
        if p.half.len() != want_half {
            return Err(bad(format!(
                "expected {want_half} float16 values, got {}",
                p.half.len()
            )));
        }
        if p.levels.iter().any(|&l| l as usize >= graph::MAX_LEVEL) {
            return Err(bad("a level is above 15".into()));
        }
        let n_lists: usize = p.levels.iter().map(|&l| l as usize + 1).sum();
        if p.offsets.len() != n_lists + 1 || p.offsets.first() != Some(&0) {
            return Err(bad(format!(
                "expected {} offsets starting at 0, got {}",
                n_lists + 1,
                p.offsets.len()
            )));
        }
        if p.offsets.last().copied() != Some(p.neighbors.len() as u64) {
            return Err(bad("the last offset is not the number of neighbours".into()));
        }
        if p.neighbors.iter().any(|&x| x as usize >= n) {
            return Err(bad("a neighbour id is out of range".into()));
        }
        match p.entry_point {
            None if n > 0 => return Err(bad("no entry point".into())),
            Some(e) if e as usize >= n => return Err(bad("entry point out of range".into())),
            _ => {}
        }
        macro_rules! fill {
            ($g:expr) => {{
                let g = $g;
                let (w0, wu) = (2 * m + 1, m + 1);
                g.levels = p.levels;
                g.links0 = (0..n * w0).map(|_| AtomicU32::new(0)).collect();
                let mut up = 0u64;
                g.up_start = g
                    .levels
                    .iter()
                    .map(|&l| {
                        let s = up;
                        up += l as u64 * wu as u64;
                        s
                    })
                    .collect();
                g.links_up = (0..up).map(|_| AtomicU32::new(0)).collect();
                let mut j = 0;
                for i in 0..n {
                    for layer in 0..=g.levels[i] as usize {
                        let list = &p.neighbors[p.offsets[j] as usize..p.offsets[j + 1] as usize];
                        let cap = if layer == 0 { w0 - 1 } else { wu - 1 };
                        if p.offsets[j] > p.offsets[j + 1] || list.len() > cap {
                            return Err(bad(format!(
                                "list {j} is longer than {cap} or has a decreasing offset"
                            )));
                        }
                        g.write_list(i as u32, layer, list);
                        j += 1;
                    }
                }
                g.entry = p.entry_point;
            }};
        }
        let sq = |codes| {
            let range = Sq8 {
                vmin: p.sq_min.clone(),
                step: p.sq_scale.clone(),
            };
            Sq8Codes::new(dim, p.metric, range, codes)
        };
        match &mut index.inner {
            Inner::F32(g) => {
                g.store = FullVectors::new(dim, p.metric, Buf::Owned(p.vectors));
                fill!(g)
            }
            Inner::Sq8(g) => {
                g.store = sq(p.codes);
                fill!(g)
            }
            Inner::Sq8F16(g) => {
                g.store = Sq8F16::new(sq(p.codes), p.half);
                fill!(g)
            }
        }
        Ok(index)
    }
}
