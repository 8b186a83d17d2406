//! The HNSW graph (Malkov & Yashunin, 2018) over any [`VectorStore`]: its links and the pieces
//! every pass shares. Nodes are the index's slots (dense `u32`, in insertion order).
//!
//! Layout: layer-0 neighbour lists live in one flat array, `M0 + 1` words per node (a count, then
//! up to `M0 = 2M` ids); upper layers of the few nodes that have them live in a second flat array,
//! `M + 1` words per (node, layer). Words are `AtomicU32` so the parallel build can read lists
//! without locks while another thread rewrites them under that node's (striped) lock: a reader
//! may see a list mid-update, but every id it sees is a valid node, which is all search needs.
//! Relaxed atomic loads are plain loads on x86, so queries pay nothing for this.

use crate::index::store::VectorStore;
use std::cmp::Ordering;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Mutex;

/// Number of striped node locks used while building (a node's lock is `locks[node % N]`).
pub(crate) const LOCK_STRIPES: usize = 4096;
/// Highest level a node may get (levels are stored as `u8`).
pub(crate) const MAX_LEVEL: usize = 16;

/// Build and search parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// Links per node on upper layers (`2M` on layer 0).
    pub m: usize,
    /// Candidate list size while inserting.
    pub ef_construction: usize,
    /// Default candidate list size while searching.
    pub ef_search: usize,
    /// Seed of the level generator.
    pub seed: u64,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            m: 16,
            ef_construction: 200,
            ef_search: 64,
            seed: 0x005e_ed0f_4e57,
        }
    }
}

/// A candidate: its score (higher is better) and node. Ordered by quality: a greater candidate
/// has the higher score, or the same score and the smaller node.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Cand {
    pub s: f32,
    pub id: u32,
}

impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Cand {
    fn cmp(&self, o: &Self) -> Ordering {
        self.s.total_cmp(&o.s).then(o.id.cmp(&self.id))
    }
}

/// Sort candidates best first.
pub(crate) fn best_first(c: &mut [Cand]) {
    c.sort_unstable_by(|a, b| b.cmp(a));
}

/// Per-search visited marks: a node is visited when its tag equals the current epoch, so
/// clearing is O(1) except once every 65,535 searches.
pub(crate) struct Visited {
    tags: Vec<u16>,
    epoch: u16,
}

impl Visited {
    pub(crate) fn reset(&mut self, n: usize) {
        if self.tags.len() < n {
            self.tags.resize(n, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.tags.fill(0);
            self.epoch = 1;
        }
    }

    /// Mark `i`; true when it was already marked.
    #[inline(always)]
    pub(crate) fn test_set(&mut self, i: u32) -> bool {
        let t = &mut self.tags[i as usize];
        let seen = *t == self.epoch;
        *t = self.epoch;
        seen
    }
}

/// A visited list borrowed from a graph's pool.
pub(crate) struct Lease<'a> {
    pool: &'a Mutex<Vec<Visited>>,
    v: Option<Visited>,
}

impl std::ops::Deref for Lease<'_> {
    type Target = Visited;
    fn deref(&self) -> &Visited {
        self.v.as_ref().expect("present until drop")
    }
}

impl std::ops::DerefMut for Lease<'_> {
    fn deref_mut(&mut self) -> &mut Visited {
        self.v.as_mut().expect("present until drop")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(v) = self.v.take() {
            self.pool.lock().unwrap_or_else(|e| e.into_inner()).push(v);
        }
    }
}

/// The graph and the vectors it links.
pub struct Graph<S: VectorStore> {
    pub(crate) store: S,
    pub(crate) params: Params,
    pub(crate) levels: Vec<u8>,
    pub(crate) links0: Vec<AtomicU32>,
    /// Start (in words) of each node's upper-layer lists in `links_up`; unused when level is 0.
    pub(crate) up_start: Vec<u64>,
    pub(crate) links_up: Vec<AtomicU32>,
    pub(crate) entry: Option<u32>,
    visited: Mutex<Vec<Visited>>,
}

impl<S: VectorStore> Graph<S> {
    pub fn new(store: S, params: Params) -> Self {
        Self {
            store,
            params,
            levels: Vec::new(),
            links0: Vec::new(),
            up_start: Vec::new(),
            links_up: Vec::new(),
            entry: None,
            visited: Mutex::new(Vec::new()),
        }
    }

    pub fn m0(&self) -> usize {
        2 * self.params.m
    }

    /// Links a list of `layer` may hold.
    pub(crate) fn cap(&self, layer: usize) -> usize {
        if layer == 0 {
            self.m0()
        } else {
            self.params.m
        }
    }

    /// Nodes in the graph.
    pub fn len(&self) -> usize {
        self.levels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn level_of(&self, i: usize) -> usize {
        // Deterministic per (seed, node number): splitmix64 -> uniform (0, 1] -> -ln(u) * mL.
        let mut z = self
            .params
            .seed
            .wrapping_add((i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let u = ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let ml = 1.0 / (self.params.m.max(2) as f64).ln();
        ((-u.ln() * ml) as usize).min(MAX_LEVEL - 1)
    }

    /// The words of `node`'s list on `layer`: the count, then the capacity's ids.
    #[inline(always)]
    pub(crate) fn slot(&self, node: u32, layer: usize) -> &[AtomicU32] {
        if layer == 0 {
            let w = self.m0() + 1;
            let s = node as usize * w;
            &self.links0[s..s + w]
        } else {
            let w = self.params.m + 1;
            let s = self.up_start[node as usize] as usize + (layer - 1) * w;
            &self.links_up[s..s + w]
        }
    }

    /// Start loading the neighbour list of `node` on `layer` into cache.
    #[inline(always)]
    pub(crate) fn prefetch_list(&self, node: u32, layer: usize) {
        let w = self.cap(layer) + 1;
        let p = if layer == 0 {
            self.links0.as_ptr().wrapping_add(node as usize * w)
        } else {
            self.links_up
                .as_ptr()
                .wrapping_add(self.up_start[node as usize] as usize + (layer - 1) * w)
        };
        for line in 0..(w * 4).div_ceil(64).min(4) {
            crate::simd::prefetch_line(p.wrapping_add(line * 16).cast());
        }
    }

    /// The neighbours of `node` on `layer` as a copy (count clamped to the list's capacity).
    #[inline(always)]
    pub(crate) fn neighbours(&self, node: u32, layer: usize, out: &mut Vec<u32>) {
        let s = self.slot(node, layer);
        let n = (s[0].load(Relaxed) as usize).min(s.len() - 1);
        out.clear();
        out.extend(s[1..=n].iter().map(|a| a.load(Relaxed)));
    }

    /// Replace the list of `node` on `layer` (at most its capacity).
    pub(crate) fn write_list(&self, node: u32, layer: usize, list: &[u32]) {
        let s = self.slot(node, layer);
        debug_assert!(list.len() < s.len());
        for (a, &v) in s[1..].iter().zip(list) {
            a.store(v, Relaxed);
        }
        s[0].store(list.len() as u32, Relaxed);
    }

    /// A visited list from the pool (returned to it when the lease drops).
    pub(crate) fn take_visited(&self) -> Lease<'_> {
        let v = self.visited.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut v = v.unwrap_or(Visited {
            tags: Vec::new(),
            epoch: 0,
        });
        v.reset(self.len());
        Lease {
            pool: &self.visited,
            v: Some(v),
        }
    }

    /// Grow the per-node arrays for `n_new` new nodes (levels drawn, or given).
    pub(crate) fn append_nodes(&mut self, n_new: usize, levels: Option<&[u8]>) {
        let start = self.len();
        let (w0, wu) = (self.m0() + 1, self.params.m + 1);
        self.levels.reserve_exact(n_new);
        self.up_start.reserve_exact(n_new);
        self.links0.reserve_exact(n_new * w0);
        let mut up_words = 0usize;
        for j in 0..n_new {
            let lv = match levels {
                Some(l) => l[j] as usize,
                None => self.level_of(start + j),
            };
            self.levels.push(lv as u8);
            self.up_start.push((self.links_up.len() + up_words) as u64);
            up_words += lv * wu;
        }
        self.links0
            .resize_with((start + n_new) * w0, || AtomicU32::new(0));
        self.links_up.reserve_exact(up_words);
        self.links_up
            .resize_with(self.links_up.len() + up_words, || AtomicU32::new(0));
    }

    /// Bytes held by vectors and links (capacities, not lengths) and the visited lists.
    pub fn memory_usage(&self) -> usize {
        let vis: usize = self
            .visited
            .lock()
            .map(|v| v.iter().map(|x| x.tags.capacity() * 2).sum())
            .unwrap_or(0);
        self.store.memory_usage()
            + self.levels.capacity()
            + self.links0.capacity() * 4
            + self.up_start.capacity() * 8
            + self.links_up.capacity() * 4
            + vis
    }
}
