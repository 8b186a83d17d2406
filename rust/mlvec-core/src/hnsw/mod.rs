//! HNSW graph index (Malkov & Yashunin) over f32 vectors or SQ8 codes.
//!
//! - Metrics: inner product, L2 (squared), cosine (vectors and queries normalised at insert).
//! - `M` links per node on upper layers, `2M` on layer 0, the neighbour-selection heuristic,
//!   parallel insertion on [`crate::threads`] with striped per-node locks, incremental `add`.
//! - Filtered search walks through rejected nodes and switches to an exact scan of the allowed
//!   set when that is cheaper (few allowed points), so recall does not collapse.
//! - `remove` marks ids deleted (they stop appearing in results at once); `compact` re-links the
//!   live nodes that pointed to removed ones (heuristic over their neighbours' neighbours), then
//!   copies the live nodes into fresh arrays, freeing the space.
//! - [`Hnsw::to_parts`] / [`Hnsw::from_parts`] expose the whole index as plain arrays for a
//!   persistence layer (the round trip is exact).
//!
//! Scores are higher-is-better: `<q, x>` for inner product and cosine, `-|q - x|²` for L2.
//!
//! ```
//! use mlvec_core::hnsw::{Hnsw, Metric, Params, Storage};
//! let mut index = Hnsw::new(2, Metric::L2, Storage::F32, Params::default()).unwrap();
//! index.add(&[0.0, 0.0, 1.0, 0.0, 0.0, 5.0], Some(&[10, 11, 12])).unwrap();
//! let hits = index.search(&[0.9, 0.1], 2, None, None).unwrap();
//! assert_eq!(hits[0].1, 11);
//! ```

pub mod graph;
pub mod store;

#[cfg(test)]
mod tests;

use crate::simd::vector::normalize;
use crate::{threads, Error, Result};
use graph::{Allow, Cand, Graph};
pub use graph::{NodeSet, Params};
use rayon::prelude::*;
use std::sync::atomic::AtomicU32;
use store::{F32Store, Sq8F16Store, Sq8Store, F16_MAX};

/// How vectors are compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Inner product.
    Ip,
    /// Squared Euclidean distance.
    L2,
    /// Cosine similarity (inner product of unit vectors).
    Cosine,
}

impl Metric {
    /// `"ip"`, `"l2"` or `"cosine"`.
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "ip" | "inner_product" | "dot" => Ok(Metric::Ip),
            "l2" | "euclidean" => Ok(Metric::L2),
            "cosine" | "cos" => Ok(Metric::Cosine),
            _ => Err(Error::invalid(
                "metric",
                format!("expected 'ip', 'l2' or 'cosine', got {s:?}"),
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Metric::Ip => "ip",
            Metric::L2 => "l2",
            Metric::Cosine => "cosine",
        }
    }
}

/// How vectors are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// Full-precision float32 rows.
    F32,
    /// One byte per dimension, per-dimension min/max trained on the first batch added.
    Sq8,
    /// SQ8 codes for the walk plus float16 copies of the vectors that re-score the final
    /// candidates (3 bytes per dimension in all).
    Sq8F16,
}

impl Storage {
    /// `"f32"` or `"sq8"`.
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "flat" | "float32" => Ok(Storage::F32),
            "sq8" => Ok(Storage::Sq8),
            "sq8_f16" | "sq8+f16" => Ok(Storage::Sq8F16),
            _ => Err(Error::invalid(
                "storage",
                format!("expected 'f32', 'sq8' or 'sq8_f16', got {s:?}"),
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Storage::F32 => "f32",
            Storage::Sq8 => "sq8",
            Storage::Sq8F16 => "sq8_f16",
        }
    }
}

/// The whole index as plain arrays (what a persistence layer stores).
///
/// Node `i` (internal order) has level `levels[i]` and one neighbour list per layer
/// `0..=levels[i]`; lists are stored node by node, layer by layer: list `j` is
/// `neighbors[offsets[j]..offsets[j+1]]` (internal node numbers).
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
    /// SQ8 per-dimension minimum and step (empty before the first add).
    pub sq_min: Vec<f32>,
    pub sq_scale: Vec<f32>,
    /// User id of each node.
    pub ids: Vec<u64>,
    /// Removed (not yet compacted) nodes.
    pub deleted: Vec<bool>,
    pub entry_point: Option<u32>,
    /// The id the next add without ids starts from.
    pub next_auto_id: u64,
}

enum Inner {
    F32(Graph<F32Store>),
    Sq8(Graph<Sq8Store>),
    Sq8F16(Graph<Sq8F16Store>),
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

/// An HNSW index. Not internally locked: `&self` methods (search) may run from many threads at
/// once; `&mut self` methods (add, remove, compact) need exclusive access.
pub struct Hnsw {
    dim: usize,
    metric: Metric,
    storage: Storage,
    inner: Inner,
}

fn check_finite(arg: &'static str, x: &[f32], dim: usize) -> Result<()> {
    if let Some(p) = x.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(
            arg,
            format!(
                "row {} has a non-finite value ({}) at column {}",
                p / dim,
                x[p],
                p % dim
            ),
        ));
    }
    Ok(())
}

impl Hnsw {
    /// An empty index of `dim`-dimensional vectors.
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
        let inner = match storage {
            Storage::F32 => Inner::F32(Graph::new(F32Store::new(dim, metric), metric, params)),
            Storage::Sq8 => Inner::Sq8(Graph::new(Sq8Store::new(dim, metric), metric, params)),
            Storage::Sq8F16 => Inner::Sq8F16(Graph::new(Sq8F16Store::new(dim, metric), metric, params)),
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

    /// Change the default `ef` of searches.
    pub fn set_ef_search(&mut self, ef: usize) -> Result<()> {
        if ef == 0 {
            return Err(Error::invalid("ef_search", "must be at least 1"));
        }
        each!(&mut self.inner, |g| g.params.ef_search = ef);
        Ok(())
    }

    /// Live vectors.
    pub fn len(&self) -> usize {
        each!(&self.inner, |g| g.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Set the SQ8 range from the sample rows `x` (`[n, dim]`); nothing to learn for F32 storage.
    /// Only an empty index can be trained. On error nothing changes.
    pub fn train(&mut self, x: &[f32]) -> Result<()> {
        if !x.len().is_multiple_of(self.dim) {
            return Err(Error::invalid(
                "x",
                format!("length {} is not a multiple of dim={}", x.len(), self.dim),
            ));
        }
        check_finite("x", x, self.dim)?;
        let normalize = self.metric == Metric::Cosine;
        let (n, sq) = match &mut self.inner {
            Inner::F32(_) => return Ok(()),
            Inner::Sq8(g) => (g.n_nodes(), &mut g.store),
            Inner::Sq8F16(g) => (g.n_nodes(), &mut g.store.sq),
        };
        if n > 0 {
            return Err(Error::State(format!(
                "the index holds {n} vectors; train it before adding any"
            )));
        }
        sq.train(x, normalize);
        Ok(())
    }

    /// User id of each internal node (removed, not yet compacted nodes included).
    pub fn node_ids(&self) -> &[u64] {
        each!(&self.inner, |g| &g.ids[..])
    }

    /// The set of internal nodes `nodes` (ascending, each below the node count), to restrict
    /// [`Hnsw::search_batch`] to.
    pub fn nodes(&self, nodes: Vec<u32>) -> Result<NodeSet> {
        let n = each!(&self.inner, |g| g.n_nodes());
        if nodes.windows(2).any(|w| w[0] >= w[1]) || nodes.last().is_some_and(|&i| i as usize >= n) {
            return Err(Error::invalid("allow", "nodes must be ascending and in range"));
        }
        Ok(NodeSet::from_sorted(n, nodes))
    }

    /// Nodes removed but not yet compacted away.
    pub fn n_deleted(&self) -> usize {
        each!(&self.inner, |g| g.n_deleted)
    }

    /// Whether user id `id` is in the index (and not removed).
    pub fn contains(&self, id: u64) -> bool {
        each!(&self.inner, |g| g.id_map.contains_key(&id))
    }

    /// Bytes the index holds.
    pub fn memory_usage(&self) -> usize {
        std::mem::size_of::<Self>() + each!(&self.inner, |g| g.memory_usage())
    }

    /// Add the rows of `data` (`[n, dim]`, row-major) with user ids `ids` (default: consecutive
    /// from one past the largest id ever added). Returns the ids. On error nothing changes.
    pub fn add(&mut self, data: &[f32], ids: Option<&[u64]>) -> Result<Vec<u64>> {
        let dim = self.dim;
        if !data.len().is_multiple_of(dim) {
            return Err(Error::invalid(
                "x",
                format!("length {} is not a multiple of dim={dim}", data.len()),
            ));
        }
        let n = data.len() / dim;
        check_finite("x", data, dim)?;
        if self.storage == Storage::Sq8F16 && self.metric != Metric::Cosine {
            if let Some(p) = data.iter().position(|v| v.abs() > F16_MAX) {
                return Err(Error::invalid(
                    "x",
                    format!(
                        "row {} has {} at column {}, beyond the float16 range (±65504) that \
                         storage 'sq8_f16' keeps for re-scoring",
                        p / dim,
                        data[p],
                        p % dim
                    ),
                ));
            }
        }
        let (n_nodes, next) = each!(&self.inner, |g| (g.n_nodes(), g.next_auto_id));
        if n_nodes + n >= u32::MAX as usize {
            return Err(Error::invalid("x", "the index can hold at most 2^32 - 2 vectors"));
        }
        let ids: Vec<u64> = match ids {
            Some(ids) => {
                if ids.len() != n {
                    return Err(Error::invalid(
                        "ids",
                        format!("has {} ids for {n} rows of x", ids.len()),
                    ));
                }
                let mut seen = std::collections::HashSet::with_capacity(n);
                for &id in ids {
                    if !seen.insert(id) {
                        return Err(Error::invalid("ids", format!("id {id} appears more than once")));
                    }
                    if self.contains(id) {
                        return Err(Error::invalid("ids", format!("id {id} is already in the index")));
                    }
                }
                ids.to_vec()
            }
            None => (next..next + n as u64).collect(),
        };
        let normalize = self.metric == Metric::Cosine;
        each!(&mut self.inner, |g| g.add_rows(data, &ids, normalize));
        Ok(ids)
    }

    fn query_vec<'a>(&self, q: &'a [f32], buf: &'a mut Vec<f32>) -> &'a [f32] {
        if self.metric == Metric::Cosine {
            buf.clear();
            buf.extend_from_slice(q);
            normalize(buf);
            buf
        } else {
            q
        }
    }

    fn check_query(&self, q: &[f32], k: usize, ef: Option<usize>) -> Result<()> {
        if !q.len().is_multiple_of(self.dim) {
            return Err(Error::invalid(
                "queries",
                format!("length {} is not a multiple of dim={}", q.len(), self.dim),
            ));
        }
        if k == 0 {
            return Err(Error::invalid("k", "must be at least 1"));
        }
        if ef == Some(0) {
            return Err(Error::invalid("ef_search", "must be at least 1"));
        }
        check_finite("queries", q, self.dim)
    }

    fn knn(
        &self,
        q: &[f32],
        k: usize,
        ef: Option<usize>,
        allow: &Allow,
        buf: &mut Vec<f32>,
    ) -> Vec<(f32, u64)> {
        let qv = self.query_vec(q, buf);
        each!(&self.inner, |g| {
            let ef = ef.unwrap_or(g.params.ef_search);
            g.knn(qv, k, ef, allow)
                .into_iter()
                .map(|Cand { d, id }| (-d, g.ids[id as usize]))
                .collect()
        })
    }

    /// The (up to) `k` best `(score, id)` for one query (`dim` values), best first. `ef`
    /// defaults to the index's `ef_search`; `filter` admits user ids.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        filter: Option<&(dyn Fn(u64) -> bool + Sync)>,
    ) -> Result<Vec<(f32, u64)>> {
        if query.len() != self.dim {
            return Err(Error::invalid(
                "query",
                format!("has {} values, expected dim={}", query.len(), self.dim),
            ));
        }
        self.check_query(query, k, ef)?;
        let allow = match filter {
            Some(f) => Allow::Pred(f),
            None => Allow::Live,
        };
        Ok(self.knn(query, k, ef, &allow, &mut Vec::new()))
    }

    /// The live nodes among user ids `ids`, to restrict [`Hnsw::search_batch`] to.
    pub fn node_set(&self, ids: &[u64]) -> NodeSet {
        each!(&self.inner, |g| g.node_set(ids))
    }

    /// Search `queries` (`[nq, dim]`) in parallel; returns `(scores [nq, k], ids [nq, k])`
    /// padded with `-inf` / `-1` where fewer than `k` results exist. `allow` restricts results.
    pub fn search_batch(
        &self,
        queries: &[f32],
        k: usize,
        ef: Option<usize>,
        allow: Option<&NodeSet>,
    ) -> Result<(Vec<f32>, Vec<i64>)> {
        self.check_query(queries, k, ef)?;
        let nq = queries.len() / self.dim;
        let mut scores = vec![f32::NEG_INFINITY; nq * k];
        let mut ids = vec![-1i64; nq * k];
        let allow = match allow {
            Some(s) => Allow::Set(s),
            None => Allow::Live,
        };
        let one = |q: &[f32], s: &mut [f32], o: &mut [i64], buf: &mut Vec<f32>| {
            for (j, (sc, id)) in self.knn(q, k, ef, &allow, buf).into_iter().enumerate() {
                s[j] = sc;
                o[j] = id as i64;
            }
        };
        if nq <= 1 {
            // A single query runs on the caller's thread: no pool hand-off on the latency path.
            if nq == 1 {
                one(queries, &mut scores, &mut ids, &mut Vec::new());
            }
        } else {
            let dim = self.dim;
            threads::install(|| {
                queries
                    .par_chunks(dim)
                    .zip(scores.par_chunks_mut(k))
                    .zip(ids.par_chunks_mut(k))
                    .for_each_init(Vec::new, |buf, ((q, s), o)| one(q, s, o, buf));
            });
        }
        Ok((scores, ids))
    }

    /// Remove user ids (all must be present and distinct, else an error and nothing changes).
    /// They stop appearing in results at once; [`Hnsw::compact`] frees their space.
    pub fn remove(&mut self, ids: &[u64]) -> Result<()> {
        each!(&mut self.inner, |g| g.remove(ids))
    }

    /// Free the space of removed vectors: re-link the nodes that pointed to them, then copy the
    /// live nodes (in their order) into fresh arrays.
    pub fn compact(&mut self) {
        each!(&mut self.inner, |g| g.compact())
    }

    /// The index as plain arrays.
    pub fn to_parts(&self) -> HnswParts {
        let (mut vectors, mut codes, mut half, mut sq_min, mut sq_scale) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut sq_parts = |sq: &Sq8Store| {
            codes = sq.codes.clone();
            sq_min = sq.min.clone();
            sq_scale = sq.scale.clone();
        };
        match &self.inner {
            Inner::F32(g) => vectors = g.store.data.clone(),
            Inner::Sq8(g) => sq_parts(&g.store),
            Inner::Sq8F16(g) => {
                sq_parts(&g.store.sq);
                half = g.store.half.clone();
            }
        }
        each!(&self.inner, |g| {
            let n = g.n_nodes();
            let mut offsets = Vec::with_capacity(n + 1);
            let mut neighbors = Vec::new();
            offsets.push(0u64);
            let mut buf = Vec::new();
            for i in 0..n as u32 {
                for layer in 0..=g.levels[i as usize] as usize {
                    g.neighbours_of(i, layer, &mut buf);
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
                ids: g.ids.clone(),
                deleted: g.deleted.clone(),
                entry_point: g.entry,
                next_auto_id: g.next_auto_id,
            }
        })
    }

    /// Rebuild an index from [`HnswParts`], checking that they are consistent
    /// ([`Error::Format`] otherwise).
    pub fn from_parts(p: HnswParts) -> Result<Self> {
        let bad = |m: String| Error::Format(format!("HNSW parts: {m}"));
        let mut index = Self::new(p.dim, p.metric, p.storage, p.params).map_err(|e| bad(e.to_string()))?;
        let n = p.levels.len();
        let (dim, m) = (p.dim, p.params.m);
        if p.ids.len() != n || p.deleted.len() != n {
            return Err(bad(format!(
                "{} levels but {} ids and {} deleted flags",
                n,
                p.ids.len(),
                p.deleted.len()
            )));
        }
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
        if p.levels.iter().any(|&l| l as usize >= 16) {
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
        let mut id_map = std::collections::HashMap::with_capacity(n);
        for (i, (&id, &del)) in p.ids.iter().zip(&p.deleted).enumerate() {
            if !del && id_map.insert(id, i as u32).is_some() {
                return Err(bad(format!("id {id} appears twice")));
            }
        }
        let n_deleted = p.deleted.iter().filter(|&&d| d).count();
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
                        g.set_list(i as u32, layer, list);
                        j += 1;
                    }
                }
                g.ids = p.ids;
                g.deleted = p.deleted;
                g.n_deleted = n_deleted;
                g.id_map = id_map;
                g.entry = p.entry_point;
                g.next_auto_id = p.next_auto_id;
            }};
        }
        match &mut index.inner {
            Inner::F32(g) => {
                g.store = F32Store::from_data(dim, p.metric, p.vectors);
                fill!(g)
            }
            Inner::Sq8(g) => {
                g.store = Sq8Store::from_parts(dim, p.metric, p.sq_min, p.sq_scale, p.codes);
                fill!(g)
            }
            Inner::Sq8F16(g) => {
                let sq = Sq8Store::from_parts(dim, p.metric, p.sq_min, p.sq_scale, p.codes);
                g.store = Sq8F16Store::from_parts(sq, p.half);
                fill!(g)
            }
        }
        Ok(index)
    }
}
