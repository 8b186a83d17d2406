//! Building the graph: parallel insertion of a batch on [`crate::threads`] with striped per-node
//! locks, and the neighbour-selection heuristic that keeps links spread across directions.

use super::graph::{best_first, Cand, Graph, Visited, LOCK_STRIPES};
use crate::index::store::{row_maybe_normalized, VectorStore};
use crate::threads;
use rayon::prelude::*;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;

/// Parts of one insertion batch shared by the threads that build it.
struct BuildCtx {
    locks: Vec<Mutex<()>>,
    /// Entry point and its level, updated when a node with a higher level arrives.
    entry: Mutex<(Option<u32>, usize)>,
}

/// Striped node locks for a graph of `n` nodes.
pub(crate) fn node_locks(n: usize) -> Vec<Mutex<()>> {
    (0..LOCK_STRIPES.min(n.max(1))).map(|_| Mutex::new(())).collect()
}

impl<S: VectorStore> Graph<S> {
    /// The neighbour-selection heuristic: walk candidates from the best, keep one only if it is
    /// closer to the base than to every one already kept (spreads links across directions).
    pub(crate) fn select(&self, sorted: &[Cand], m: usize, scratch: &mut Vec<f32>) -> Vec<u32> {
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
                if kept.iter().all(|&s| self.store.score_pair(s, c.id) <= c.s) {
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
            if kept.iter().all(|(_, qs)| self.store.score(qs, c.id) <= c.s) {
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
            s: self.store.score(&q, ep),
            id: ep,
        };
        for layer in (level + 1..=top).rev() {
            cur = self.greedy(&q, cur, layer, buf);
        }
        let mut eps = vec![cur];
        let mut scratch = Vec::with_capacity(self.store.dim());
        for layer in (0..=level.min(top)).rev() {
            vis.reset(self.len());
            // Another thread may already link to `node` (it found it through a layer this
            // insertion has linked): never let the search return `node` itself.
            vis.test_set(node);
            let found = self.search_layer::<false>(&q, &eps, layer, efc, vis, |_| true, buf);
            let sorted: Vec<Cand> = found.into_sorted_vec().into_iter().map(|c| c.0).collect();
            let chosen = self.select(&sorted, self.cap(layer), &mut scratch);
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
    pub(crate) fn link_back(
        &self,
        locks: &[Mutex<()>],
        nb: u32,
        node: u32,
        layer: usize,
        scratch: &mut Vec<f32>,
    ) {
        let cap = self.cap(layer);
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
                s: self.store.score_pair(nb, id),
                id,
            })
            .collect()
        } else {
            self.store.decode(nb, scratch);
            let qn = self.store.prepare(scratch);
            olds.map(|id| Cand {
                s: self.store.score(&qn, id),
                id,
            })
            .collect()
        };
        best_first(&mut c);
        let keep = self.select(&c, cap, scratch);
        self.write_list(nb, layer, &keep);
    }

    /// Append `rows` (validated; normalised here when `normalize`) as new nodes, linking them
    /// in parallel.
    pub(crate) fn add_rows(&mut self, rows: &[f32], normalize: bool) {
        let dim = self.store.dim();
        let n_new = rows.len() / dim;
        if n_new == 0 {
            return;
        }
        let start = self.len();
        self.store.extend(rows, normalize);
        self.append_nodes(n_new, None);
        let all: Vec<u32> = (start as u32..(start + n_new) as u32).collect();
        let entry = self.link(&all, |i, buf| {
            let r = &rows[(i as usize - start) * dim..][..dim];
            row_maybe_normalized(r, normalize, buf).to_vec()
        });
        self.entry = entry;
    }

    /// Insert `nodes` into the graph in parallel; `vector(i, buf)` gives node i's f32 form.
    /// Returns the new entry point.
    fn link(&self, nodes: &[u32], vector: impl Fn(u32, &mut Vec<f32>) -> Vec<f32> + Sync) -> Option<u32> {
        let top = self.entry.map_or(0, |e| self.levels[e as usize] as usize);
        let ctx = BuildCtx {
            locks: node_locks(self.len()),
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
}
