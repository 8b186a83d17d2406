//! Choosing the lists a query probes: the `nprobe` best of all coarse scores.
//!
//! With a handful of queries per call this pass over every centroid's score is a visible part of
//! the search, so the metric's score is computed in a loop of its own and the top-k selection
//! tests the running threshold inline (almost every list loses and costs one compare).

use crate::index::metric::Metric;
use crate::index::topk::TopK;
use crate::simd::rowdot::dots_f32;

/// `keys[l] = metric.from_ip(ip[l], qn2, cnorm[l])`, the match hoisted out of the loop.
fn keys_into(metric: Metric, ip: &[f32], qn2: f32, cnorm: &[f32], keys: &mut Vec<f32>) {
    keys.clear();
    match metric {
        Metric::L2 => keys.extend(
            ip.iter()
                .zip(cnorm)
                .map(|(&x, &cn)| Metric::L2.from_ip(x, qn2, cn)),
        ),
        Metric::Ip | Metric::Cosine => keys.extend_from_slice(ip),
    }
}

/// Select into `t` from `keys` with the threshold tested inline: after the first few, almost
/// every key loses and costs one compare.
fn select(keys: &[f32], t: &mut TopK) {
    let mut thr = t.threshold();
    for (l, &s) in keys.iter().enumerate() {
        if s >= thr {
            t.push(s, l as u32);
            thr = t.threshold();
        }
    }
}

/// The coarse centroids as the list selection sees them.
#[derive(Clone, Copy)]
pub struct Centroids<'a> {
    /// `[nl, d]`, row-major.
    pub rows: &'a [f32],
    /// `‖c_l‖²`.
    pub norms: &'a [f32],
    pub metric: Metric,
}

impl Centroids<'_> {
    /// The `n` best lists for coarse inner products `ip` (`qn2 = ‖q‖²`), best first, ties to
    /// the smaller list.
    pub fn top_lists(&self, ip: &[f32], qn2: f32, n: usize) -> Vec<usize> {
        let mut keys = Vec::new();
        keys_into(self.metric, ip, qn2, self.norms, &mut keys);
        let mut t = TopK::new(n);
        select(&keys, &mut t);
        t.into_sorted().into_iter().map(|(_, l)| l as usize).collect()
    }

    /// Score `q` against every centroid into `cip` and return its `n` best lists.
    pub fn scan_all(&self, q: &[f32], qn2: f32, n: usize, cip: &mut [f32]) -> Vec<usize> {
        dots_f32(q, self.rows, cip);
        self.top_lists(cip, qn2, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a full sort of the scores (ties to the smaller list), for every metric, with
    /// repeated scores and `n` from 1 to beyond the number of lists.
    #[test]
    fn top_lists_match_a_sort() {
        let nl = 300;
        let ip: Vec<f32> = (0..nl).map(|l| ((l * 7919) % 97) as f32 * 0.25 - 10.0).collect();
        let cnorm: Vec<f32> = (0..nl).map(|l| ((l * 31) % 13) as f32).collect();
        let qn2 = 3.5;
        for metric in [Metric::Ip, Metric::L2, Metric::Cosine] {
            let mut order: Vec<usize> = (0..nl).collect();
            let score = |l: usize| metric.from_ip(ip[l], qn2, cnorm[l]);
            order.sort_by(|&a, &b| score(b).total_cmp(&score(a)).then(a.cmp(&b)));
            for n in [1usize, 2, 7, 64, nl, nl + 5] {
                let want: Vec<usize> = order.iter().copied().take(n).collect();
                let c = Centroids {
                    rows: &[],
                    norms: &cnorm,
                    metric,
                };
                assert_eq!(c.top_lists(&ip, qn2, n), want, "{metric:?} n={n}");
            }
        }
    }
}
