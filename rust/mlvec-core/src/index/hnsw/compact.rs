//! Removing nodes for real: re-link the live nodes that pointed to removed ones, then copy the
//! live nodes (in their order) into fresh arrays, so the space is freed.

use super::build::node_locks;
use super::graph::{best_first, Cand, Graph, Visited};
use crate::index::filter::Bitmap;
use crate::index::store::VectorStore;
use crate::threads;
use rayon::prelude::*;
use std::cmp::Reverse;

/// What every list repair of one compaction shares.
struct Repair<'a> {
    gone: &'a Bitmap,
    /// Live nodes after the compaction.
    live: usize,
    /// A live node on the highest live level, where searches for missing neighbours start.
    entry: u32,
}

/// Scratch buffers of one repairing thread.
#[derive(Default)]
struct Scratch {
    buf: Vec<u32>,
    vector: Vec<f32>,
    cands: Vec<u32>,
    removed: Vec<u32>,
    links: Vec<u32>,
}

impl<S: VectorStore> Graph<S> {
    /// Drop the nodes in `gone`. First every live node that links to a removed one gets that
    /// list re-selected with the heuristic, from its live links plus the links of the removed
    /// nodes it pointed to (followed through chains of removed nodes); a node left with too few
    /// candidates searches for more from the entry point, as an insertion would. Then the live
    /// nodes are renumbered (keeping their order) and their vectors, codes and lists copied into
    /// fresh arrays. Nodes away from removed ones keep their lists as they are: cost grows with
    /// the removed nodes' neighbourhoods, not with the whole index.
    pub(crate) fn compact(&mut self, gone: &Bitmap) {
        if gone.count() == 0 {
            return;
        }
        let keep: Vec<u32> = (0..self.len() as u32).filter(|&i| !gone.contains(i)).collect();
        // The entry point must be a live node on the highest live level.
        let entry = match self.entry {
            Some(e) if !gone.contains(e) => Some(e),
            _ => keep
                .iter()
                .copied()
                .max_by_key(|&i| (self.levels[i as usize], Reverse(i))),
        };
        if let Some(entry) = entry {
            let this = &*self;
            let ctx = Repair {
                gone,
                live: keep.len(),
                entry,
            };
            threads::install(|| {
                // Each node rewrites only its own list, so this pass needs no locks...
                let added: Vec<(u32, u8, u32)> = keep
                    .par_iter()
                    .with_min_len(64)
                    .map_init(
                        || (this.take_visited(), Scratch::default()),
                        |(vis, scratch), &p| {
                            let mut added = Vec::new();
                            for layer in 0..=this.levels[p as usize] as usize {
                                this.repair_list(&ctx, p, layer, vis, scratch, &mut added);
                            }
                            added
                        },
                    )
                    .flatten()
                    .collect();
                // ...then every new link gets its reverse link, as an insertion adds them.
                let locks = node_locks(this.len());
                added
                    .par_iter()
                    .with_min_len(64)
                    .for_each_init(Vec::new, |scratch, &(p, layer, c)| {
                        this.link_back(&locks, c, p, layer as usize, scratch)
                    });
            });
        }
        let mut new_of = vec![u32::MAX; self.len()];
        for (j, &i) in keep.iter().enumerate() {
            new_of[i as usize] = j as u32;
        }
        let levels: Vec<u8> = keep.iter().map(|&i| self.levels[i as usize]).collect();
        let mut g = Graph::new(self.store.gather(&keep), self.params);
        g.append_nodes(keep.len(), Some(&levels));
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
    fn repair_list(
        &self,
        ctx: &Repair,
        p: u32,
        layer: usize,
        vis: &mut Visited,
        sc: &mut Scratch,
        added: &mut Vec<(u32, u8, u32)>,
    ) {
        let gone = ctx.gone;
        self.neighbours(p, layer, &mut sc.buf);
        if !sc.buf.iter().any(|&x| gone.contains(x)) {
            return;
        }
        let cap = self.cap(layer);
        vis.reset(self.len());
        vis.test_set(p);
        sc.cands.clear();
        sc.removed.clear();
        let sort = |x: u32, vis: &mut Visited, cands: &mut Vec<u32>, removed: &mut Vec<u32>| {
            if !vis.test_set(x) {
                if gone.contains(x) {
                    removed.push(x);
                } else {
                    cands.push(x);
                }
            }
        };
        for &x in sc.buf.iter() {
            sort(x, vis, &mut sc.cands, &mut sc.removed);
        }
        // Follow the removed neighbours' links; go further through chains of removed nodes
        // (breadth first, up to a budget) only while fewer than `cap` live candidates are found.
        let direct = sc.removed.len();
        let mut next = 0;
        while next < sc.removed.len() && (next < direct || (sc.cands.len() < cap && next < 4 * cap)) {
            let d = sc.removed[next];
            next += 1;
            if (self.levels[d as usize] as usize) < layer {
                continue;
            }
            self.neighbours(d, layer, &mut sc.links);
            for &x in &sc.links {
                sort(x, vis, &mut sc.cands, &mut sc.removed);
            }
        }
        self.store.decode(p, &mut sc.vector);
        let q = self.store.prepare(&sc.vector);
        let mut sorted: Vec<Cand> = sc
            .cands
            .iter()
            .map(|&id| Cand {
                s: self.store.score(&q, id),
                id,
            })
            .collect();
        if sorted.len() < self.params.m.min(ctx.live.saturating_sub(1)) {
            // Too few live nodes around `p`: search for neighbours from the entry point.
            let entry = ctx.entry;
            let mut cur = Cand {
                s: self.store.score(&q, entry),
                id: entry,
            };
            for l in (layer + 1..=self.levels[entry as usize] as usize).rev() {
                cur = self.greedy(&q, cur, l, &mut sc.buf);
            }
            if (self.levels[entry as usize] as usize) >= layer {
                vis.reset(self.len());
                let efc = self.params.ef_construction.max(self.params.m);
                let ok = |i: u32| i != p && !gone.contains(i);
                let found = self.search_layer::<true>(&q, &[cur], layer, efc, vis, ok, &mut sc.buf);
                sorted.extend(found.into_iter().map(|c| c.0));
            }
        }
        best_first(&mut sorted);
        sorted.dedup_by_key(|c| c.id);
        let chosen = self.select(&sorted, cap, &mut sc.vector);
        self.neighbours(p, layer, &mut sc.buf);
        added.extend(
            chosen
                .iter()
                .filter(|c| !sc.buf.contains(c))
                .map(|&c| (p, layer as u8, c)),
        );
        self.write_list(p, layer, &chosen);
    }
}
