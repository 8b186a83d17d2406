//! The HNSW graph (Malkov & Yashunin, 2018) over any [`VectorStore`].
//!
//! Layout: layer-0 neighbour lists live in one flat array, `M0 + 1` words per node (a count, then
//! up to `M0 = 2M` ids); upper layers of the few nodes that have them live in a second flat array,
//! `M + 1` words per (node, layer). Words are `AtomicU32` so the parallel build can read lists
//! without locks while another thread rewrites them under that node's (striped) lock: a reader
//! may see a list mid-update, but every id it sees is a valid node, which is all search needs.
//! Relaxed atomic loads are plain loads on x86, so queries pay nothing for this.

use super::store::{row_maybe_normalized, VectorStore};
use super::Metric;
use crate::{threads, Error, Result};
use rayon::prelude::*;
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Mutex;

/// Number of striped node locks used while building (a node's lock is `locks[node % N]`).
const LOCK_STRIPES: usize = 4096;
/// Highest level a node may get (levels are stored as `u8`).
const MAX_LEVEL: usize = 16;

/// How many neighbours ahead of the one being compared a search prefetches vectors for (4
/// measured best on the e5 set; prefetching a whole list at once stalls on the CPU's limit of
/// outstanding misses, 1-2 ahead leaves loads exposed).
const PREFETCH_AHEAD: usize = 4;

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

/// A candidate: distance (lower is closer) and node.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Cand {
    pub d: f32,
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
        self.d.total_cmp(&o.d).then(self.id.cmp(&o.id))
    }
}

/// Per-search visited marks: a node is visited when its tag equals the current epoch, so
/// clearing is O(1) except once every 65,535 searches.
pub(crate) struct Visited {
    tags: Vec<u16>,
    epoch: u16,
}

impl Visited {
    fn reset(&mut self, n: usize) {
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
    fn test_set(&mut self, i: u32) -> bool {
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

/// Which nodes a search may return (all of them may still be walked through).
pub(crate) enum Allow<'a> {
    /// Every live node.
    Live,
    /// Live nodes whose user id passes the predicate.
    Pred(&'a (dyn Fn(u64) -> bool + Sync)),
    /// Live nodes in an internal set (built from a list of user ids).
    Set(&'a NodeSet),
}

/// A set of internal nodes: bitmap for membership plus the sorted list for exact scans.
pub struct NodeSet {
    bits: Vec<u64>,
    nodes: Vec<u32>,
}

impl NodeSet {
    #[inline(always)]
    fn contains(&self, i: u32) -> bool {
        self.bits[i as usize / 64] >> (i % 64) & 1 == 1
    }

    /// Number of nodes in the set.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The set of internal nodes `nodes` (ascending, each `< n`).
    pub(crate) fn from_sorted(n: usize, nodes: Vec<u32>) -> Self {
        let mut bits = vec![0u64; n.div_ceil(64)];
        for &i in &nodes {
            bits[i as usize / 64] |= 1 << (i % 64);
        }
        NodeSet { bits, nodes }
    }
}

/// The graph. Internal node numbers are `u32` (dense, in insertion order); user ids are `u64`.
pub struct Graph<S: VectorStore> {
    pub(crate) store: S,
    pub(crate) metric: Metric,
    pub(crate) params: Params,
    pub(crate) levels: Vec<u8>,
    pub(crate) links0: Vec<AtomicU32>,
    /// Start (in words) of each node's upper-layer lists in `links_up`; unused when level is 0.
    pub(crate) up_start: Vec<u64>,
    pub(crate) links_up: Vec<AtomicU32>,
    pub(crate) ids: Vec<u64>,
    pub(crate) deleted: Vec<bool>,
    pub(crate) n_deleted: usize,
    pub(crate) id_map: HashMap<u64, u32>,
    pub(crate) entry: Option<u32>,
    pub(crate) next_auto_id: u64,
    visited: Mutex<Vec<Visited>>,
}

/// Parts of one insertion batch shared by the threads that build it.
struct BuildCtx {
    locks: Vec<Mutex<()>>,
    /// Entry point and its level, updated when a node with a higher level arrives.
    entry: Mutex<(Option<u32>, usize)>,
}

impl<S: VectorStore> Graph<S> {
    pub fn new(store: S, metric: Metric, params: Params) -> Self {
        Self {
            store,
            metric,
            params,
            levels: Vec::new(),
            links0: Vec::new(),
            up_start: Vec::new(),
            links_up: Vec::new(),
            ids: Vec::new(),
            deleted: Vec::new(),
            n_deleted: 0,
            id_map: HashMap::new(),
            entry: None,
            next_auto_id: 0,
            visited: Mutex::new(Vec::new()),
        }
    }

    pub fn m0(&self) -> usize {
        2 * self.params.m
    }

    /// Nodes in the graph, removed ones included.
    pub fn n_nodes(&self) -> usize {
        self.levels.len()
    }

    /// Live (not removed) nodes.
    pub fn len(&self) -> usize {
        self.levels.len() - self.n_deleted
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn level_of(&self, i: usize) -> usize {
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

    #[inline(always)]
    fn slot(&self, node: u32, layer: usize) -> &[AtomicU32] {
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
    fn prefetch_list(&self, node: u32, layer: usize) {
        let w = if layer == 0 {
            self.m0() + 1
        } else {
            self.params.m + 1
        };
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
    fn neighbours(&self, node: u32, layer: usize, out: &mut Vec<u32>) {
        let s = self.slot(node, layer);
        let n = (s[0].load(Relaxed) as usize).min(s.len() - 1);
        out.clear();
        out.extend(s[1..=n].iter().map(|a| a.load(Relaxed)));
    }

    /// The neighbours of `node` on `layer` (for export).
    pub(crate) fn neighbours_of(&self, node: u32, layer: usize, out: &mut Vec<u32>) {
        self.neighbours(node, layer, out)
    }

    /// Set a neighbour list (for import; the caller checked its length).
    pub(crate) fn set_list(&self, node: u32, layer: usize, list: &[u32]) {
        self.write_list(node, layer, list)
    }

    fn write_list(&self, node: u32, layer: usize, list: &[u32]) {
        let s = self.slot(node, layer);
        debug_assert!(list.len() < s.len());
        for (a, &v) in s[1..].iter().zip(list) {
            a.store(v, Relaxed);
        }
        s[0].store(list.len() as u32, Relaxed);
    }

    /// A visited list from the pool (returned to it when the lease drops).
    fn take_visited(&self) -> Lease<'_> {
        let v = self.visited.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut v = v.unwrap_or(Visited {
            tags: Vec::new(),
            epoch: 0,
        });
        v.reset(self.n_nodes());
        Lease {
            pool: &self.visited,
            v: Some(v),
        }
    }

    /// Greedy descent on one upper layer: move to the closest neighbour until none is closer.
    fn greedy(&self, q: &S::Query, mut cur: Cand, layer: usize, buf: &mut Vec<u32>) -> Cand {
        loop {
            let mut moved = false;
            self.neighbours(cur.id, layer, buf);
            for &nb in buf.iter() {
                let d = self.store.dist(q, nb);
                if d < cur.d {
                    cur = Cand { d, id: nb };
                    moved = true;
                }
            }
            if !moved {
                return cur;
            }
        }
    }

    /// Best-first search of one layer from `eps`, keeping the `ef` closest nodes that `ok`
    /// accepts; nodes it rejects are still walked through. Returns a max-heap (worst on top).
    #[allow(clippy::too_many_arguments)]
    fn search_layer<const FILTERED: bool>(
        &self,
        q: &S::Query,
        eps: &[Cand],
        layer: usize,
        ef: usize,
        vis: &mut Visited,
        ok: impl Fn(u32) -> bool,
        buf: &mut Vec<u32>,
    ) -> BinaryHeap<Cand> {
        let mut cands: BinaryHeap<Reverse<Cand>> = BinaryHeap::with_capacity(ef * 2);
        let mut res: BinaryHeap<Cand> = BinaryHeap::with_capacity(ef + 1);
        for &e in eps {
            if vis.test_set(e.id) {
                continue;
            }
            cands.push(Reverse(e));
            if !FILTERED || ok(e.id) {
                res.push(e);
                if res.len() > ef {
                    res.pop();
                }
            }
        }
        let mut bound = if res.len() >= ef {
            res.peek().map_or(f32::INFINITY, |c| c.d)
        } else {
            f32::INFINITY
        };
        while let Some(Reverse(c)) = cands.pop() {
            if c.d > bound {
                break;
            }
            // The next candidate's list is likely read next: start loading it now.
            if let Some(Reverse(next)) = cands.peek() {
                self.prefetch_list(next.id, layer);
            }
            self.neighbours(c.id, layer, buf);
            // Drop visited ids first, then keep the loads of the next few vectors in flight while
            // computing distances (prefetching all of them at once stalls on the CPU's
            // outstanding-miss limit).
            buf.retain(|&nb| !vis.test_set(nb));
            let ahead = PREFETCH_AHEAD;
            for &nb in buf.iter().take(ahead) {
                self.store.prefetch(nb);
            }
            for j in 0..buf.len() {
                if let Some(&nx) = buf.get(j + ahead) {
                    self.store.prefetch(nx);
                }
                let nb = buf[j];
                let d = self.store.dist(q, nb);
                if d < bound {
                    cands.push(Reverse(Cand { d, id: nb }));
                    if !FILTERED || ok(nb) {
                        res.push(Cand { d, id: nb });
                        if res.len() > ef {
                            res.pop();
                        }
                        if res.len() >= ef {
                            bound = res.peek().map_or(f32::INFINITY, |c| c.d);
                        }
                    }
                }
            }
        }
        res
    }

    /// The neighbour-selection heuristic: walk candidates from closest, keep one only if it is
    /// closer to the base than to every one already kept (spreads links across directions).
    fn select(&self, sorted: &[Cand], m: usize, scratch: &mut Vec<f32>) -> Vec<u32> {
        if sorted.len() <= m {
            return sorted.iter().map(|c| c.id).collect();
        }
        if S::DIRECT_PAIRS {
            // Compare stored vectors in place: no copies on the build's hottest path.
            let mut kept: Vec<u32> = Vec::with_capacity(m);
            for c in sorted {
                if kept.len() >= m {
                    break;
                }
                if kept.iter().all(|&s| self.store.dist_stored(s, c.id) >= c.d) {
                    kept.push(c.id);
                }
            }
            return kept;
        }
        let mut kept: Vec<(u32, S::Query)> = Vec::with_capacity(m);
        for c in sorted {
            if kept.len() >= m {
                break;
            }
            if kept.iter().all(|(_, qs)| self.store.dist(qs, c.id) >= c.d) {
                self.store.decode(c.id, scratch);
                kept.push((c.id, self.store.prepare(scratch)));
            }
        }
        kept.into_iter().map(|(i, _)| i).collect()
    }

    /// Insert node `node` (whose vector is already in the store; `qv` is its f32 form).
    fn insert(&self, ctx: &BuildCtx, node: u32, qv: &[f32], vis: &mut Visited, buf: &mut Vec<u32>) {
        let q = self.store.prepare(qv);
        let level = self.levels[node as usize] as usize;
        let mut guard = ctx.entry.lock().unwrap_or_else(|e| e.into_inner());
        let (ep, top) = *guard;
        let Some(ep) = ep else {
            *guard = (Some(node), level);
            return;
        };
        // A node that raises the top level holds the entry lock for its whole insertion, so no
        // other thread starts from an entry point whose upper layers are still empty.
        let guard = if level > top {
            Some(guard)
        } else {
            drop(guard);
            None
        };
        let efc = self.params.ef_construction.max(self.params.m);
        let mut cur = Cand {
            d: self.store.dist(&q, ep),
            id: ep,
        };
        for layer in (level + 1..=top).rev() {
            cur = self.greedy(&q, cur, layer, buf);
        }
        let mut eps = vec![cur];
        let mut scratch = Vec::with_capacity(self.store.dim());
        for layer in (0..=level.min(top)).rev() {
            vis.reset(self.n_nodes());
            // Another thread may already link to `node` (it found it through a layer this
            // insertion has linked): never let the search return `node` itself.
            vis.test_set(node);
            let found = self.search_layer::<false>(&q, &eps, layer, efc, vis, |_| true, buf);
            let sorted = found.into_sorted_vec();
            let cap = if layer == 0 { self.m0() } else { self.params.m };
            let chosen = self.select(&sorted, cap, &mut scratch);
            {
                let _l = ctx.locks[node as usize % LOCK_STRIPES]
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                self.write_list(node, layer, &chosen);
            }
            for &nb in &chosen {
                self.link_back(&ctx.locks, nb, node, layer, &mut scratch);
            }
            eps = sorted;
        }
        if let Some(mut g) = guard {
            *g = (Some(node), level);
        }
    }

    /// Add the link `nb -> node` on `layer` under `nb`'s lock; when `nb`'s list is full,
    /// re-select it among the old links plus `node`, seen from `nb`.
    fn link_back(&self, locks: &[Mutex<()>], nb: u32, node: u32, layer: usize, scratch: &mut Vec<f32>) {
        let cap = if layer == 0 { self.m0() } else { self.params.m };
        let _l = locks[nb as usize % locks.len()]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let s = self.slot(nb, layer);
        let n = (s[0].load(Relaxed) as usize).min(cap);
        if s[1..=n].iter().any(|a| a.load(Relaxed) == node) {
            return;
        }
        if n < cap {
            s[n + 1].store(node, Relaxed);
            s[0].store(n as u32 + 1, Relaxed);
            return;
        }
        let olds = s[1..=n]
            .iter()
            .map(|a| a.load(Relaxed))
            .chain(std::iter::once(node));
        let mut c: Vec<Cand> = if S::DIRECT_PAIRS {
            olds.map(|id| Cand {
                d: self.store.dist_stored(nb, id),
                id,
            })
            .collect()
        } else {
            self.store.decode(nb, scratch);
            let qn = self.store.prepare(scratch);
            olds.map(|id| Cand {
                d: self.store.dist(&qn, id),
                id,
            })
            .collect()
        };
        c.sort_unstable();
        let keep = self.select(&c, cap, scratch);
        self.write_list(nb, layer, &keep);
    }

    /// Append `rows` (already validated) with user ids `ids`, building links in parallel.
    pub(crate) fn add_rows(&mut self, rows: &[f32], ids: &[u64], normalize: bool) {
        let dim = self.store.dim();
        let n_new = ids.len();
        if n_new == 0 {
            return;
        }
        let start = self.n_nodes();
        self.store.extend(rows, normalize);
        self.append_nodes(ids, None);
        let all: Vec<u32> = (start as u32..(start + n_new) as u32).collect();
        let entry = self.link(&all, |i, buf| {
            let r = &rows[(i as usize - start) * dim..][..dim];
            row_maybe_normalized(r, normalize, buf).to_vec()
        });
        self.entry = entry;
    }

    /// Grow the per-node arrays for new nodes with `ids` (levels drawn, or given).
    fn append_nodes(&mut self, ids: &[u64], levels: Option<&[u8]>) {
        let start = self.n_nodes();
        let n_new = ids.len();
        let (w0, wu) = (self.m0() + 1, self.params.m + 1);
        for k in [
            &mut self.levels as &mut dyn ReserveExact,
            &mut self.deleted,
            &mut self.ids,
            &mut self.up_start,
        ] {
            k.reserve_exact_n(n_new);
        }
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
        self.deleted.resize(start + n_new, false);
        for (j, &id) in ids.iter().enumerate() {
            self.id_map.insert(id, (start + j) as u32);
            self.next_auto_id = self.next_auto_id.max(id.saturating_add(1));
        }
        self.ids.extend_from_slice(ids);
    }

    /// Insert `nodes` into the graph in parallel; `vector(i, buf)` gives node i's f32 form.
    /// Returns the new entry point.
    fn link(&self, nodes: &[u32], vector: impl Fn(u32, &mut Vec<f32>) -> Vec<f32> + Sync) -> Option<u32> {
        let top = self.entry.map_or(0, |e| self.levels[e as usize] as usize);
        let ctx = BuildCtx {
            locks: (0..LOCK_STRIPES.min(self.n_nodes().max(1)))
                .map(|_| Mutex::new(()))
                .collect(),
            entry: Mutex::new((self.entry, top)),
        };
        let this = self;
        // The first node of an empty graph becomes the entry point before the threads start.
        let rest = if this.entry.is_none() {
            let mut vis = this.take_visited();
            let mut b = Vec::new();
            let v = vector(nodes[0], &mut Vec::new());
            this.insert(&ctx, nodes[0], &v, &mut vis, &mut b);
            &nodes[1..]
        } else {
            nodes
        };
        threads::install(|| {
            rest.par_iter().with_min_len(16).for_each_init(
                || {
                    (
                        this.take_visited(),
                        Vec::with_capacity(4 * this.params.m),
                        Vec::new(),
                    )
                },
                |(vis, buf, tmp), &i| {
                    let v = vector(i, tmp);
                    this.insert(&ctx, i, &v, vis, buf);
                },
            );
        });
        ctx.entry.into_inner().unwrap_or_else(|e| e.into_inner()).0
    }

    #[inline(always)]
    fn allowed(&self, allow: &Allow, i: u32) -> bool {
        !self.deleted[i as usize]
            && match allow {
                Allow::Live => true,
                Allow::Pred(f) => f(self.ids[i as usize]),
                Allow::Set(s) => s.contains(i),
            }
    }

    /// Build a [`NodeSet`] of the live nodes among user ids `ids` (unknown ids are ignored).
    pub fn node_set(&self, ids: &[u64]) -> NodeSet {
        let n = self.n_nodes();
        let mut bits = vec![0u64; n.div_ceil(64)];
        let mut nodes = Vec::new();
        for id in ids {
            if let Some(&i) = self.id_map.get(id) {
                let w = &mut bits[i as usize / 64];
                if *w >> (i % 64) & 1 == 0 && !self.deleted[i as usize] {
                    *w |= 1 << (i % 64);
                    nodes.push(i);
                }
            }
        }
        nodes.sort_unstable();
        NodeSet { bits, nodes }
    }

    /// Exact top-k over the allowed nodes.
    fn exact(&self, q: &S::Query, k: usize, allow: &Allow) -> Vec<Cand> {
        let mut heap: BinaryHeap<Cand> = BinaryHeap::with_capacity(k + 1);
        let mut push = |i: u32| {
            let d = self.store.dist(q, i);
            if heap.len() < k || d < heap.peek().map_or(f32::INFINITY, |c| c.d) {
                heap.push(Cand { d, id: i });
                if heap.len() > k {
                    heap.pop();
                }
            }
        };
        match allow {
            Allow::Set(s) => s
                .nodes
                .iter()
                .filter(|&&i| !self.deleted[i as usize])
                .for_each(|&i| push(i)),
            _ => (0..self.n_nodes() as u32)
                .filter(|&i| self.allowed(allow, i))
                .for_each(push),
        }
        heap.into_sorted_vec()
    }

    /// Estimated number of nodes `allow` admits (exact for sets and for "live").
    fn estimate_allowed(&self, allow: &Allow) -> usize {
        match allow {
            Allow::Live => self.len(),
            Allow::Set(s) => s.len(),
            Allow::Pred(_) => {
                // A strided sample of up to 1,024 nodes.
                let n = self.n_nodes();
                let step = n.div_ceil(1024).max(1);
                let (mut seen, mut hit) = (0usize, 0usize);
                for i in (0..n).step_by(step) {
                    seen += 1;
                    hit += self.allowed(allow, i as u32) as usize;
                }
                (hit * n).checked_div(seen).unwrap_or(0)
            }
        }
    }

    /// The `k` nearest allowed nodes to the (normalised where needed) query `qv`, closest first.
    pub(crate) fn knn(&self, qv: &[f32], k: usize, ef: usize, allow: &Allow) -> Vec<Cand> {
        let Some(ep) = self.entry else { return Vec::new() };
        let q = self.store.prepare(qv);
        let ef = ef.max(k);
        // A store with a precise copy keeps the whole candidate list and re-scores it.
        let want = if S::RESCORES { ef } else { k };
        let out = self.walk(&q, ep, want, ef, allow);
        if !S::RESCORES {
            return out;
        }
        let mut out: Vec<Cand> = out
            .into_iter()
            .map(|c| Cand {
                d: self.store.precise_dist(&q, c.id),
                id: c.id,
            })
            .collect();
        out.sort_unstable();
        out.truncate(k);
        out
    }

    /// The `k` best allowed nodes by the walk's own distances (an exact scan when the allowed
    /// nodes are few), closest first.
    fn walk(&self, q: &S::Query, ep: u32, k: usize, ef: usize, allow: &Allow) -> Vec<Cand> {
        let restricted = self.n_deleted > 0 || !matches!(allow, Allow::Live);
        if restricted {
            // Walking the graph through rejected nodes costs about ef * M0 / s distances at
            // selectivity s; an exact scan of the allowed nodes costs s * n. Scan when cheaper.
            let est = self.estimate_allowed(allow);
            if est == 0 || (est as f64).powi(2) <= (self.n_nodes() * ef * self.m0()) as f64 {
                return self.exact(q, k, allow);
            }
        }
        let mut buf = Vec::with_capacity(self.m0());
        let mut cur = Cand {
            d: self.store.dist(q, ep),
            id: ep,
        };
        for layer in (1..=self.levels[ep as usize] as usize).rev() {
            cur = self.greedy(q, cur, layer, &mut buf);
        }
        let mut vis = self.take_visited();
        let found = if restricted {
            self.search_layer::<true>(q, &[cur], 0, ef, &mut vis, |i| self.allowed(allow, i), &mut buf)
        } else {
            self.search_layer::<false>(q, &[cur], 0, ef, &mut vis, |_| true, &mut buf)
        };
        drop(vis);
        let mut out = found.into_sorted_vec();
        if restricted && out.len() < k && out.len() < self.len() {
            // The walk ran out of allowed nodes before k: answer exactly instead.
            return self.exact(q, k, allow);
        }
        out.truncate(k);
        out
    }

    /// Mark user ids removed (all must be live and distinct; otherwise nothing changes).
    pub(crate) fn remove(&mut self, ids: &[u64]) -> Result<()> {
        let mut nodes = Vec::with_capacity(ids.len());
        let mut seen = std::collections::HashSet::with_capacity(ids.len());
        for &id in ids {
            if !seen.insert(id) {
                return Err(Error::invalid("ids", format!("id {id} appears more than once")));
            }
            match self.id_map.get(&id) {
                Some(&i) => nodes.push(i),
                None => return Err(Error::invalid("ids", format!("unknown id {id}"))),
            }
        }
        for (id, i) in ids.iter().zip(nodes) {
            self.id_map.remove(id);
            self.deleted[i as usize] = true;
        }
        self.n_deleted += ids.len();
        Ok(())
    }

    /// Drop removed nodes for real. First every live node that links to a removed one gets that
    /// list re-selected with the heuristic, from its live links plus the links of the removed
    /// nodes it pointed to (followed through chains of removed nodes); a node left with too few
    /// candidates searches for more from the entry point, as an insertion would. Then the live
    /// nodes are renumbered (keeping their order) and their vectors, codes and lists copied into
    /// fresh arrays, so the space is freed. Nodes away from removed ones keep their lists as
    /// they are: cost grows with the removed nodes' neighbourhoods, not with the whole index.
    pub(crate) fn compact(&mut self) {
        if self.n_deleted == 0 {
            return;
        }
        let keep: Vec<u32> = (0..self.n_nodes() as u32)
            .filter(|&i| !self.deleted[i as usize])
            .collect();
        // The entry point must be a live node on the highest live level.
        let entry = match self.entry {
            Some(e) if !self.deleted[e as usize] => Some(e),
            _ => keep
                .iter()
                .copied()
                .max_by_key(|&i| (self.levels[i as usize], Reverse(i))),
        };
        if let Some(e) = entry {
            let this = &*self;
            threads::install(|| {
                // Each node rewrites only its own list, so this pass needs no locks...
                let added: Vec<(u32, u8, u32)> = keep
                    .par_iter()
                    .with_min_len(64)
                    .map_init(
                        || (this.take_visited(), Vec::new(), Vec::new(), Vec::new()),
                        |(vis, buf, scratch, cands), &p| {
                            let mut added = Vec::new();
                            for layer in 0..=this.levels[p as usize] as usize {
                                this.repair_list(p, layer, e, vis, buf, scratch, cands, &mut added);
                            }
                            added
                        },
                    )
                    .flatten()
                    .collect();
                // ...then every new link gets its reverse link, as an insertion adds them.
                let locks: Vec<Mutex<()>> = (0..LOCK_STRIPES.min(this.n_nodes()))
                    .map(|_| Mutex::new(()))
                    .collect();
                added
                    .par_iter()
                    .with_min_len(64)
                    .for_each_init(Vec::new, |scratch, &(p, layer, c)| {
                        this.link_back(&locks, c, p, layer as usize, scratch)
                    });
            });
        }
        let mut new_of = vec![u32::MAX; self.n_nodes()];
        for (j, &i) in keep.iter().enumerate() {
            new_of[i as usize] = j as u32;
        }
        let store = self.store.gather(&keep);
        let ids: Vec<u64> = keep.iter().map(|&i| self.ids[i as usize]).collect();
        let levels: Vec<u8> = keep.iter().map(|&i| self.levels[i as usize]).collect();
        let mut g = Graph::new(store, self.metric, self.params);
        g.next_auto_id = self.next_auto_id;
        g.append_nodes(&ids, Some(&levels));
        let (mut buf, mut out) = (Vec::new(), Vec::new());
        for (j, &i) in keep.iter().enumerate() {
            for layer in 0..=levels[j] as usize {
                self.neighbours(i, layer, &mut buf);
                out.clear();
                out.extend(buf.iter().map(|&x| new_of[x as usize]).filter(|&x| x != u32::MAX));
                g.write_list(j as u32, layer, &out);
            }
        }
        g.entry = entry.map(|e| new_of[e as usize]);
        *self = g;
    }

    /// Re-select the list of live node `p` on `layer` if it links to removed nodes (see
    /// [`Graph::compact`]), and push `(p, layer, c)` to `added` for each link `p -> c` that is
    /// new. Only `p`'s own list is written, so nodes repair in parallel.
    #[allow(clippy::too_many_arguments)]
    fn repair_list(
        &self,
        p: u32,
        layer: usize,
        entry: u32,
        vis: &mut Visited,
        buf: &mut Vec<u32>,
        scratch: &mut Vec<f32>,
        cands: &mut Vec<u32>,
        added: &mut Vec<(u32, u8, u32)>,
    ) {
        self.neighbours(p, layer, buf);
        if !buf.iter().any(|&x| self.deleted[x as usize]) {
            return;
        }
        let cap = if layer == 0 { self.m0() } else { self.params.m };
        vis.reset(self.n_nodes());
        vis.test_set(p);
        cands.clear();
        let mut removed: Vec<u32> = Vec::new();
        let sort = |x: u32, vis: &mut Visited, cands: &mut Vec<u32>, removed: &mut Vec<u32>| {
            if !vis.test_set(x) {
                if self.deleted[x as usize] {
                    removed.push(x);
                } else {
                    cands.push(x);
                }
            }
        };
        for &x in buf.iter() {
            sort(x, vis, cands, &mut removed);
        }
        // Follow the removed neighbours' links; go further through chains of removed nodes
        // (breadth first, up to a budget) only while fewer than `cap` live candidates are found.
        let direct = removed.len();
        let mut next = 0;
        let mut nb = Vec::new();
        while next < removed.len() && (next < direct || (cands.len() < cap && next < 4 * cap)) {
            let d = removed[next];
            next += 1;
            if (self.levels[d as usize] as usize) < layer {
                continue;
            }
            self.neighbours(d, layer, &mut nb);
            for &x in &nb {
                sort(x, vis, cands, &mut removed);
            }
        }
        self.store.decode(p, scratch);
        let q = self.store.prepare(scratch);
        let mut sorted: Vec<Cand> = cands
            .iter()
            .map(|&id| Cand {
                d: self.store.dist(&q, id),
                id,
            })
            .collect();
        if sorted.len() < self.params.m.min(self.len().saturating_sub(1)) {
            // Too few live nodes around `p`: search for neighbours from the entry point.
            let mut cur = Cand {
                d: self.store.dist(&q, entry),
                id: entry,
            };
            for l in (layer + 1..=self.levels[entry as usize] as usize).rev() {
                cur = self.greedy(&q, cur, l, buf);
            }
            if (self.levels[entry as usize] as usize) >= layer {
                vis.reset(self.n_nodes());
                let efc = self.params.ef_construction.max(self.params.m);
                let ok = |i: u32| i != p && !self.deleted[i as usize];
                let found = self.search_layer::<true>(&q, &[cur], layer, efc, vis, ok, buf);
                sorted.extend(found);
            }
        }
        sorted.sort_unstable();
        sorted.dedup_by_key(|c| c.id);
        let chosen = self.select(&sorted, cap, scratch);
        self.neighbours(p, layer, buf);
        added.extend(
            chosen
                .iter()
                .filter(|c| !buf.contains(c))
                .map(|&c| (p, layer as u8, c)),
        );
        self.write_list(p, layer, &chosen);
    }

    /// Bytes held by vectors, links, ids and the id map (capacities, not lengths).
    pub fn memory_usage(&self) -> usize {
        let map = self.id_map.capacity() * (8 + 4 + 1);
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
            + self.ids.capacity() * 8
            + self.deleted.capacity()
            + map
            + vis
    }
}

trait ReserveExact {
    fn reserve_exact_n(&mut self, n: usize);
}
impl<T> ReserveExact for Vec<T> {
    fn reserve_exact_n(&mut self, n: usize) {
        self.reserve_exact(n);
    }
}
