//! Searching inverted lists: choose the lists each query probes, scan them with the codec, then
//! re-score or re-rank the shortlist; a filter that leaves few vectors is answered exactly.

use super::coarse::Centroids;
use super::Ivf;
use crate::index::codec::flat::{self, ip_matrix};
use crate::index::codec::{unpack, with_codec, ListCodec, ListScan};
use crate::index::factory::CodecSpec;
use crate::index::filter::Bitmap;
use crate::index::metric::Metric;
use crate::index::topk::TopK;
use crate::index::SearchParams;
use rayon::prelude::*;

/// The entries of a slot-keyed selection, best first.
fn slots_of(t: TopK) -> Vec<(f32, u32)> {
    t.into_sorted()
        .into_iter()
        .map(|(sc, s)| (sc, s as u32))
        .collect()
}

impl Ivf {
    fn default_nprobe(&self) -> usize {
        let nl = self.lists.len();
        nl.min((nl / 32).max(8))
    }

    /// The `k` best `(score, slot)` of each of the queries `q` (`[nq, dim]`, normalised for
    /// cosine), best first.
    pub fn search(
        &self,
        q: &[f32],
        k: usize,
        params: &SearchParams,
        allow: Option<&Bitmap>,
    ) -> Vec<Vec<(f32, u32)>> {
        let d = self.dim;
        let nq = q.len() / d;
        let qn2: Vec<f32> = if self.metric == Metric::L2 {
            q.chunks_exact(d).map(crate::simd::vector::norm2).collect()
        } else {
            vec![0.0; nq]
        };
        let nl = self.lists.len();
        let nprobe = params.nprobe.unwrap_or_else(|| self.default_nprobe()).min(nl);
        // Small calls on lists run on the calling thread: concurrent single-query callers then
        // scale with their own threads instead of queueing on the shared pool.
        let flat_all = self.spec.codec == CodecSpec::Flat && nl == 1;
        let inline = nq < 4 && !flat_all && self.count * nprobe / nl < 200_000;
        let map_queries = |f: &(dyn Fn(usize) -> Vec<(f32, u32)> + Sync)| -> Vec<Vec<(f32, u32)>> {
            if inline {
                (0..nq).map(f).collect()
            } else {
                (0..nq).into_par_iter().map(f).collect()
            }
        };
        let body = || {
            // Exact scan of the allowed set when the filter leaves fewer vectors than the
            // probed lists would hold, or too few to fill k from them (recall never collapses).
            if let Some(a) = allow {
                let scanned = self.count * nprobe / nl;
                let hits = a.count() * nprobe / nl;
                if a.count() <= scanned || hits < 16 * k {
                    return map_queries(&|i| {
                        self.exact_allowed(&q[i * d..(i + 1) * d], qn2[i], k, params, a)
                    });
                }
            }
            if flat_all {
                let l = &self.lists[0];
                let allow_pos = |pos: u32| allow.is_none_or(|a| a.contains(l.slots[pos as usize]));
                return flat::search(
                    q,
                    &qn2,
                    l.vecs.as_slice(),
                    l.norms.as_slice(),
                    d,
                    self.metric,
                    k,
                    &allow_pos,
                )
                .into_iter()
                .map(|t| {
                    t.into_sorted()
                        .into_iter()
                        .map(|(s, p)| (s, l.slots[p as usize]))
                        .collect()
                })
                .collect();
            }
            // Each query picks its lists by itself (through the low-rank bounds where the
            // centroids allow, else a scan of all of them) unless a batch has no bounds to use:
            // then one GEMM scores every query against every centroid, in parallel blocks.
            let per_query = nl > 1 && (nq < 8 || self.projection.is_some());
            let mut cip = vec![0f32; if per_query { 0 } else { nq * nl }];
            if nl > 1 && !per_query {
                const QB: usize = 64;
                cip.par_chunks_mut(QB * nl)
                    .zip(q.par_chunks(QB * d))
                    .for_each(|(out, qb)| ip_matrix(qb, &self.centroids, d, out));
            } else if nl == 1 && self.residual_codec() {
                for i in 0..nq {
                    cip[i] = self.centroid_dot(&q[i * d..(i + 1) * d], 0);
                }
            }
            let inner = !inline && nq < crate::threads::num_threads();
            map_queries(&|i| {
                let qi = &q[i * d..(i + 1) * d];
                let mut own = Vec::new();
                let cents = Centroids {
                    rows: &self.centroids,
                    norms: &self.cnorm,
                    metric: self.metric,
                };
                let (row, probe) = if per_query {
                    own.resize(nl, 0f32);
                    let picked = self
                        .projection
                        .as_ref()
                        .and_then(|p| p.probe(&cents, qi, qn2[i], nprobe, &mut own));
                    let probe = picked.unwrap_or_else(|| cents.scan_all(qi, qn2[i], nprobe, &mut own));
                    (&own[..], probe)
                } else if nl == 1 {
                    (&cip[i..i + 1], vec![0])
                } else {
                    let row = &cip[i * nl..(i + 1) * nl];
                    (row, cents.top_lists(row, qn2[i], nprobe))
                };
                let probed = Probed {
                    q: qi,
                    qn2: qn2[i],
                    cip: row,
                    lists: &probe,
                };
                with_codec!(&self.codec, |c| self
                    .search_one(c, &probed, k, params, allow, inner))
            })
        };
        if inline {
            body()
        } else {
            crate::threads::install(body)
        }
    }

    /// The scan of list `l` for one query.
    fn list_scan<'a>(
        &'a self,
        p: &Probed<'a>,
        l: usize,
        lay: &'a crate::index::ivf::list::Layout,
        allow: Option<&'a Bitmap>,
    ) -> ListScan<'a> {
        let base = if self.residual_codec() { p.cip[l] } else { 0.0 };
        ListScan::new(&self.lists[l], lay, l, p.q, p.qn2, base, self.metric, allow)
    }

    /// One query against its probed lists with codec `c`: scan into a shortlist, then re-score
    /// it exactly (with the stored vectors), re-rank it (codecs that refine), or return it.
    fn search_one<C: ListCodec>(
        &self,
        c: &C,
        p: &Probed,
        k: usize,
        params: &SearchParams,
        allow: Option<&Bitmap>,
        inner: bool,
    ) -> Vec<(f32, u32)> {
        let prep = c.prepare(p.q);
        let lay = self.layout();
        let rescore = self.raw.is_some() && params.rescore > 0;
        let ks = c.shortlist(k, rescore.then_some(params.rescore));
        let top = if inner && p.lists.len() > 1 {
            p.lists
                .par_iter()
                .map(|&l| {
                    let mut t = TopK::new(ks);
                    c.scan(&prep, &self.list_scan(p, l, &lay, allow), &mut t);
                    t
                })
                .reduce(
                    || TopK::new(ks),
                    |mut a, b| {
                        a.merge(b);
                        a
                    },
                )
        } else {
            let mut t = TopK::new(ks);
            for &l in p.lists {
                c.scan(&prep, &self.list_scan(p, l, &lay, allow), &mut t);
            }
            t
        };
        let short: Vec<(f32, usize, usize)> = top
            .into_sorted()
            .into_iter()
            .map(|(s, lp)| {
                let (l, pos) = unpack(lp);
                (s, l, pos)
            })
            .collect();
        let slot = |l: usize, pos: usize| self.lists[l].slots[pos];
        if rescore {
            let raw = self.raw.as_ref().expect("rescore needs vectors");
            let mut out = TopK::new(k);
            let mut code = Vec::new();
            for &(_, l, pos) in &short {
                if C::BOUNDED && out.len() == k {
                    // Skip candidates whose upper bound cannot reach the k-th exact score.
                    let s = self.list_scan(p, l, &lay, allow);
                    let (e, b) = c.estimate(&prep, &s, pos, &mut code);
                    if s.score(s.base + e + b, pos) < out.threshold() {
                        continue;
                    }
                }
                let s = slot(l, pos);
                out.push(raw.score_row(p.q, s), s);
            }
            slots_of(out)
        } else if C::REFINES {
            // Re-rank the shortlist with the codec's finer estimate.
            let mut out = TopK::new(k);
            let mut code = Vec::new();
            for &(_, l, pos) in &short {
                let s = self.list_scan(p, l, &lay, allow);
                let (e, _) = c.estimate(&prep, &s, pos, &mut code);
                out.push(s.score(s.base + e, pos), slot(l, pos));
            }
            slots_of(out)
        } else {
            short.into_iter().map(|(sc, l, pos)| (sc, slot(l, pos))).collect()
        }
    }

    /// Exact top-k over the allowed slots: full-precision vectors when stored, else every
    /// allowed code is scored (no list is skipped).
    fn exact_allowed(
        &self,
        q: &[f32],
        qn2: f32,
        k: usize,
        params: &SearchParams,
        a: &Bitmap,
    ) -> Vec<(f32, u32)> {
        let mut top = TopK::new(k);
        if let (Some(raw), true) = (&self.raw, params.rescore > 0) {
            for s in a.iter() {
                top.push(raw.score_row(q, s), s);
            }
            return slots_of(top);
        }
        with_codec!(&self.codec, |c| self.score_allowed(c, q, qn2, a, &mut top));
        slots_of(top)
    }

    /// Offer every allowed entry of every list to `top`, scored by the codec's estimate.
    fn score_allowed<C: ListCodec>(&self, c: &C, q: &[f32], qn2: f32, a: &Bitmap, top: &mut TopK) {
        let lay = self.layout();
        let prep = c.prepare(q);
        let mut code = Vec::new();
        for l in 0..self.lists.len() {
            let base = if self.residual_codec() {
                self.centroid_dot(q, l)
            } else {
                0.0
            };
            let s = ListScan::new(&self.lists[l], &lay, l, q, qn2, base, self.metric, Some(a));
            for (pos, &slot) in s.list.slots.iter().enumerate() {
                if a.contains(slot) {
                    let (e, _) = c.estimate(&prep, &s, pos, &mut code);
                    top.push(s.score(base + e, pos), slot);
                }
            }
        }
    }
}

/// One query and the lists it probes.
struct Probed<'a> {
    q: &'a [f32],
    qn2: f32,
    /// `<q, centroid l>` by list (the probed ones at least; one value without lists).
    cip: &'a [f32],
    lists: &'a [usize],
}
