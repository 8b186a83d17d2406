//! Float32 vectors, scored exactly: the Flat list codec, and exact search over a whole
//! database by blocked GEMM inner products (query batches) or SIMD dot products (single queries,
//! split over the database), folded into per-query top-k heaps.

use super::{ListCodec, ListScan};
use crate::index::io::Writer;
use crate::index::ivf::list::Layout;
use crate::index::metric::Metric;
use crate::index::topk::TopK;
use crate::simd::vector::kernels;
use rayon::prelude::*;

/// The vectors themselves (normalised for cosine), in the lists, not relative to a centroid.
#[derive(Clone, Copy, Debug)]
pub struct Flat;

impl ListCodec for Flat {
    /// Nothing to prepare: entries are scored against the query itself.
    type Query = ();
    const RESIDUAL: bool = false;
    const DECODES: bool = false;

    fn layout(&self, dim: usize) -> Layout {
        Layout {
            vec_dim: dim,
            ..Layout::default()
        }
    }

    fn encode(&self, _x: &[f32], _code: &mut [u8], _aux: &mut [f32]) {}

    fn decode(&self, _code: &[u8], _out: &mut [f32]) {
        unreachable!("Flat lists hold the vectors themselves (DECODES is false)")
    }

    fn prepare(&self, _q: &[f32]) {}

    fn scan(&self, _: &(), s: &ListScan, top: &mut TopK) {
        let k = kernels();
        let d = s.q.len();
        for (pos, v) in s.list.vecs.as_slice().chunks_exact(d).enumerate() {
            s.offer(top, s.score(k.dot(s.q, v), pos), pos);
        }
    }

    fn estimate(&self, _: &(), s: &ListScan, pos: usize, _code: &mut Vec<u8>) -> (f32, f32) {
        let d = s.q.len();
        (
            kernels().dot(s.q, &s.list.vecs.as_slice()[pos * d..(pos + 1) * d]),
            0.0,
        )
    }

    fn param_bytes(&self) -> usize {
        0
    }

    fn save<'a>(&'a self, _w: &mut Writer<'a>, _dim: usize) {}
}

/// `out[i * n + j] = <a_i, b_j>` for `a` `[m, d]` and `b` `[n, d]`, row-major (one sgemm).
pub fn ip_matrix(a: &[f32], b: &[f32], d: usize, out: &mut [f32]) {
    let m = a.len() / d;
    let n = b.len() / d;
    debug_assert_eq!(out.len(), m * n);
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the slices have the lengths the strides imply (checked above by construction).
    unsafe {
        matrixmultiply::sgemm(
            m,
            d,
            n,
            1.0,
            a.as_ptr(),
            d as isize,
            1,
            b.as_ptr(),
            1,
            d as isize,
            0.0,
            out.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// Rows of the database per GEMM block: the block of scores stays in L2 cache.
const DB_BLOCK: usize = 2048;
/// Queries per GEMM block.
const Q_BLOCK: usize = 64;

/// Exact top-k of every query against `db` (`[n, d]`), scores by `metric` from inner products.
///
/// `db_norm2` are the rows' squared norms (needed for L2 only), `q_norm2` the queries'.
/// `allow(slot)` filters rows. Returns one selection per query.
#[allow(clippy::too_many_arguments)]
pub fn search(
    queries: &[f32],
    q_norm2: &[f32],
    db: &[f32],
    db_norm2: &[f32],
    d: usize,
    metric: Metric,
    k: usize,
    allow: &(dyn Fn(u32) -> bool + Sync),
) -> Vec<TopK> {
    let nq = queries.len() / d;
    let n = db.len() / d;
    let threads = rayon::current_num_threads();
    if nq >= 4 {
        // Batches: GEMM on (query block × database block) tiles, parallel over query blocks and,
        // when there are few query blocks, over database blocks too (heaps merged afterwards).
        let qblocks: Vec<usize> = (0..nq).step_by(Q_BLOCK).collect();
        let split = if qblocks.len() >= threads {
            1
        } else {
            threads.min(n.div_ceil(DB_BLOCK)).max(1)
        };
        let per = n.div_ceil(split);
        let parts: Vec<(usize, usize)> = qblocks
            .iter()
            .flat_map(|&q0| (0..split).map(move |s| (q0, s)))
            .collect();
        let partial: Vec<(usize, Vec<TopK>)> = parts
            .into_par_iter()
            .map(|(q0, s)| {
                let q1 = (q0 + Q_BLOCK).min(nq);
                let (lo, hi) = (s * per, ((s + 1) * per).min(n));
                let mut tops: Vec<TopK> = (q0..q1).map(|_| TopK::new(k)).collect();
                let mut buf = vec![0f32; (q1 - q0) * DB_BLOCK];
                let mut b0 = lo;
                while b0 < hi {
                    let b1 = (b0 + DB_BLOCK).min(hi);
                    let nb = b1 - b0;
                    let out = &mut buf[..(q1 - q0) * nb];
                    ip_matrix(&queries[q0 * d..q1 * d], &db[b0 * d..b1 * d], d, out);
                    for (qi, top) in tops.iter_mut().enumerate() {
                        let row = &out[qi * nb..(qi + 1) * nb];
                        let qn = q_norm2.get(q0 + qi).copied().unwrap_or(0.0);
                        for (j, &ip) in row.iter().enumerate() {
                            let slot = (b0 + j) as u32;
                            let s = metric.from_ip(ip, qn, db_norm2.get(b0 + j).copied().unwrap_or(0.0));
                            if s >= top.threshold() && allow(slot) {
                                top.push(s, slot);
                            }
                        }
                    }
                    b0 = b1;
                }
                (q0, tops)
            })
            .collect();
        let mut out: Vec<TopK> = (0..nq).map(|_| TopK::new(k)).collect();
        for (q0, tops) in partial {
            for (i, t) in tops.into_iter().enumerate() {
                out[q0 + i].merge(t);
            }
        }
        out
    } else {
        let kern = kernels();
        (0..nq)
            .map(|qi| {
                let q = &queries[qi * d..(qi + 1) * d];
                let qn = q_norm2.get(qi).copied().unwrap_or(0.0);
                let chunk = 4096usize;
                (0..n.div_ceil(chunk))
                    .into_par_iter()
                    .map(|c| {
                        let mut top = TopK::new(k);
                        for j in c * chunk..((c + 1) * chunk).min(n) {
                            let ip = kern.dot(q, &db[j * d..(j + 1) * d]);
                            let s = metric.from_ip(ip, qn, db_norm2.get(j).copied().unwrap_or(0.0));
                            if s >= top.threshold() && allow(j as u32) {
                                top.push(s, j as u32);
                            }
                        }
                        top
                    })
                    .reduce(
                        || TopK::new(k),
                        |mut a, b| {
                            a.merge(b);
                            a
                        },
                    )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::vector::dot;

    #[test]
    fn gemm_matches_dots() {
        let d = 13;
        let a: Vec<f32> = (0..5 * d).map(|i| (i as f32 * 0.3).sin()).collect();
        let b: Vec<f32> = (0..7 * d).map(|i| (i as f32 * 0.7).cos()).collect();
        let mut out = vec![0f32; 35];
        ip_matrix(&a, &b, d, &mut out);
        for i in 0..5 {
            for j in 0..7 {
                let r = dot(&a[i * d..(i + 1) * d], &b[j * d..(j + 1) * d]);
                assert!((out[i * 7 + j] - r).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn batch_and_single_agree() {
        let d = 8;
        let n = 5000;
        let db: Vec<f32> = (0..n * d)
            .map(|i| ((i * 7919) % 1013) as f32 / 1013.0 - 0.5)
            .collect();
        let q: Vec<f32> = (0..6 * d).map(|i| ((i * 31) % 17) as f32 / 17.0 - 0.5).collect();
        let all = |_: u32| true;
        let batch = search(&q, &[], &db, &[], d, Metric::Ip, 5, &all);
        for qi in 0..6 {
            let one = search(&q[qi * d..(qi + 1) * d], &[], &db, &[], d, Metric::Ip, 5, &all);
            let a: Vec<u64> = batch[qi].clone().into_sorted().iter().map(|x| x.1).collect();
            let b: Vec<u64> = one[0].clone().into_sorted().iter().map(|x| x.1).collect();
            assert_eq!(a, b);
        }
    }
}
