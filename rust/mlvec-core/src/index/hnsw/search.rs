//! Searching the graph: greedy descent through the upper layers, best-first search of layer 0,
//! filters that walk through rejected nodes, and an exact scan when few nodes are allowed.

use super::graph::{best_first, Cand, Graph, Visited};
use crate::index::filter::Bitmap;
use crate::index::store::VectorStore;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// How many neighbours ahead of the one being scored a search prefetches vectors for (4
/// measured best on the e5 set; prefetching a whole list at once stalls on the CPU's limit of
/// outstanding misses, 1-2 ahead leaves loads exposed).
const PREFETCH_AHEAD: usize = 4;

/// The kept candidates of a layer search: a min-heap, the worst kept on top.
pub(crate) type Kept = BinaryHeap<Reverse<Cand>>;

impl<S: VectorStore> Graph<S> {
    /// Greedy descent on one upper layer: move to the best neighbour until none is better.
    pub(crate) fn greedy(&self, q: &S::Query, mut cur: Cand, layer: usize, buf: &mut Vec<u32>) -> Cand {
        loop {
            let mut moved = false;
            self.neighbours(cur.id, layer, buf);
            for &nb in buf.iter() {
                let s = self.store.score(q, nb);
                if s > cur.s {
                    cur = Cand { s, id: nb };
                    moved = true;
                }
            }
            if !moved {
                return cur;
            }
        }
    }

    /// Best-first search of one layer from `eps`, keeping the `ef` best nodes that `ok`
    /// accepts; nodes it rejects are still walked through.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn search_layer<const FILTERED: bool>(
        &self,
        q: &S::Query,
        eps: &[Cand],
        layer: usize,
        ef: usize,
        vis: &mut Visited,
        ok: impl Fn(u32) -> bool,
        buf: &mut Vec<u32>,
    ) -> Kept {
        // Candidates to expand, best on top.
        let mut cands: BinaryHeap<Cand> = BinaryHeap::with_capacity(ef * 2);
        let mut res: Kept = BinaryHeap::with_capacity(ef + 1);
        for &e in eps {
            if vis.test_set(e.id) {
                continue;
            }
            cands.push(e);
            if !FILTERED || ok(e.id) {
                res.push(Reverse(e));
                if res.len() > ef {
                    res.pop();
                }
            }
        }
        let mut bound = if res.len() >= ef {
            res.peek().map_or(f32::NEG_INFINITY, |c| c.0.s)
        } else {
            f32::NEG_INFINITY
        };
        while let Some(c) = cands.pop() {
            if c.s < bound {
                break;
            }
            // The next candidate's list is likely read next: start loading it now.
            if let Some(next) = cands.peek() {
                self.prefetch_list(next.id, layer);
            }
            self.neighbours(c.id, layer, buf);
            // Drop visited ids first, then keep the loads of the next few vectors in flight while
            // scoring (prefetching all of them at once stalls on the CPU's outstanding-miss
            // limit).
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
                let s = self.store.score(q, nb);
                if s > bound {
                    cands.push(Cand { s, id: nb });
                    if !FILTERED || ok(nb) {
                        res.push(Reverse(Cand { s, id: nb }));
                        if res.len() > ef {
                            res.pop();
                        }
                        if res.len() >= ef {
                            bound = res.peek().map_or(f32::NEG_INFINITY, |c| c.0.s);
                        }
                    }
                }
            }
        }
        res
    }

    /// Exact top-k over the allowed nodes.
    fn exact(&self, q: &S::Query, k: usize, allow: Option<&Bitmap>) -> Vec<Cand> {
        let mut heap: Kept = BinaryHeap::with_capacity(k + 1);
        let mut push = |i: u32| {
            let s = self.store.score(q, i);
            if heap.len() < k || s > heap.peek().map_or(f32::NEG_INFINITY, |c| c.0.s) {
                heap.push(Reverse(Cand { s, id: i }));
                if heap.len() > k {
                    heap.pop();
                }
            }
        };
        match allow {
            Some(a) => a.iter().for_each(&mut push),
            None => (0..self.len() as u32).for_each(&mut push),
        }
        heap.into_sorted_vec().into_iter().map(|c| c.0).collect()
    }

    /// The `k` best allowed nodes for the (normalised where needed) query `qv`, best first.
    pub(crate) fn knn(&self, qv: &[f32], k: usize, ef: usize, allow: Option<&Bitmap>) -> Vec<Cand> {
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
                s: self.store.precise_score(&q, c.id),
                id: c.id,
            })
            .collect();
        best_first(&mut out);
        out.truncate(k);
        out
    }

    /// The `k` best allowed nodes by the walk's own scores (an exact scan when the allowed
    /// nodes are few), best first.
    fn walk(&self, q: &S::Query, ep: u32, k: usize, ef: usize, allow: Option<&Bitmap>) -> Vec<Cand> {
        if let Some(a) = allow {
            // Walking the graph through rejected nodes costs about ef * M0 / s scores at
            // selectivity s; an exact scan of the allowed nodes costs s * n. Scan when cheaper.
            let est = a.count();
            if est == 0 || (est as f64).powi(2) <= (self.len() * ef * self.m0()) as f64 {
                return self.exact(q, k, allow);
            }
        }
        let mut buf = Vec::with_capacity(self.m0());
        let mut cur = Cand {
            s: self.store.score(q, ep),
            id: ep,
        };
        for layer in (1..=self.levels[ep as usize] as usize).rev() {
            cur = self.greedy(q, cur, layer, &mut buf);
        }
        let mut vis = self.take_visited();
        let found = match allow {
            Some(a) => self.search_layer::<true>(q, &[cur], 0, ef, &mut vis, |i| a.contains(i), &mut buf),
            None => self.search_layer::<false>(q, &[cur], 0, ef, &mut vis, |_| true, &mut buf),
        };
        drop(vis);
        let mut out: Vec<Cand> = found.into_sorted_vec().into_iter().map(|c| c.0).collect();
        if allow.is_some() && out.len() < k && out.len() < self.len() {
            // The walk ran out of allowed nodes before k: answer exactly instead.
            return self.exact(q, k, allow);
        }
        out.truncate(k);
        out
    }
}
