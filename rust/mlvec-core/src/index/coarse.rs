//! Choosing the lists a query probes: the `nprobe` best of all coarse scores.
//!
//! With a handful of queries per call this pass over every centroid's score is a visible part of
//! the search, so the metric's score is computed in a loop of its own and the top-k selection
//! tests the running threshold inline (almost every list loses and costs one compare).

use super::metric::Metric;
use super::topk::TopK;

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

/// The `n` best lists for coarse inner products `ip` (`cnorm[l] = ‖c_l‖²`, `qn2 = ‖q‖²`), best
/// first, ties to the smaller list.
pub fn top_lists(metric: Metric, ip: &[f32], qn2: f32, cnorm: &[f32], n: usize) -> Vec<usize> {
    let mut keys = Vec::new();
    keys_into(metric, ip, qn2, cnorm, &mut keys);
    let mut t = TopK::new(n);
    select(&keys, &mut t);
    t.into_sorted().into_iter().map(|(_, l)| l as usize).collect()
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
                assert_eq!(top_lists(metric, &ip, qn2, &cnorm, n), want, "{metric:?} n={n}");
            }
        }
    }
}
