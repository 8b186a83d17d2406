use super::*;
use crate::Error;

/// Gaussian-mixture data: `n` rows of `dim`, `clusters` centres, deterministic.
fn clustered(n: usize, dim: usize, clusters: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut unif = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut gauss = move || {
        let (u, v) = (unif().max(1e-12), unif());
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    };
    let centres: Vec<f32> = (0..clusters * dim).map(|_| gauss() * 2.0).collect();
    let mut out = Vec::with_capacity(n * dim);
    for i in 0..n {
        let c = (i * 7919) % clusters;
        for j in 0..dim {
            out.push(centres[c * dim + j] + gauss() * 0.6);
        }
    }
    out
}

fn exact(
    data: &[f32],
    ids: &[u64],
    q: &[f32],
    k: usize,
    metric: Metric,
    ok: impl Fn(u64) -> bool,
) -> Vec<u64> {
    let dim = q.len();
    let norm = |v: &[f32]| {
        v.iter()
            .map(|x| (*x as f64).powi(2))
            .sum::<f64>()
            .sqrt()
            .max(1e-30)
    };
    let mut s: Vec<(f64, u64)> = data
        .chunks_exact(dim)
        .zip(ids)
        .filter(|(_, &id)| ok(id))
        .map(|(x, &id)| {
            let dot: f64 = x.iter().zip(q).map(|(a, b)| *a as f64 * *b as f64).sum();
            let sc = match metric {
                Metric::Ip => dot,
                Metric::Cosine => dot / norm(x) / norm(q),
                Metric::L2 => -x
                    .iter()
                    .zip(q)
                    .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                    .sum::<f64>(),
            };
            (sc, id)
        })
        .collect();
    s.sort_by(|a, b| b.0.total_cmp(&a.0));
    s.truncate(k);
    s.into_iter().map(|x| x.1).collect()
}

fn recall(got: &[Vec<u64>], want: &[Vec<u64>]) -> f64 {
    let (mut hit, mut tot) = (0usize, 0usize);
    for (g, w) in got.iter().zip(want) {
        hit += w.iter().filter(|x| g.contains(x)).count();
        tot += w.len();
    }
    hit as f64 / tot.max(1) as f64
}

const N: usize = 2000;
const D: usize = 24;
const NQ: usize = 50;

fn build(metric: Metric, storage: Storage) -> (Hnsw, Vec<f32>, Vec<u64>, Vec<f32>) {
    let data = clustered(N, D, 40, 1);
    let queries = clustered(NQ, D, 40, 2);
    // Non-contiguous, large user ids.
    let ids: Vec<u64> = (0..N as u64).map(|i| i * 3 + (1 << 40)).collect();
    let mut h = Hnsw::new(
        D,
        metric,
        storage,
        Params {
            m: 12,
            ef_construction: 100,
            ..Default::default()
        },
    )
    .unwrap();
    // Two batches: incremental add must link the second to the first.
    h.add(&data[..N / 2 * D], Some(&ids[..N / 2])).unwrap();
    h.add(&data[N / 2 * D..], Some(&ids[N / 2..])).unwrap();
    (h, data, ids, queries)
}

fn search_all(
    h: &Hnsw,
    queries: &[f32],
    k: usize,
    ef: usize,
    f: Option<&(dyn Fn(u64) -> bool + Sync)>,
) -> Vec<Vec<u64>> {
    queries
        .chunks_exact(D)
        .map(|q| {
            h.search(q, k, Some(ef), f)
                .unwrap()
                .into_iter()
                .map(|x| x.1)
                .collect()
        })
        .collect()
}

#[test]
fn recall_against_exact_search_for_each_metric_and_storage() {
    for storage in [Storage::F32, Storage::Sq8, Storage::Sq8F16] {
        for metric in [Metric::Ip, Metric::L2, Metric::Cosine] {
            let (h, data, ids, queries) = build(metric, storage);
            assert_eq!(h.len(), N);
            let got = search_all(&h, &queries, 10, 64, None);
            let want: Vec<Vec<u64>> = queries
                .chunks_exact(D)
                .map(|q| exact(&data, &ids, q, 10, metric, |_| true))
                .collect();
            let r = recall(&got, &want);
            let floor = if storage == Storage::F32 { 0.95 } else { 0.85 };
            assert!(r >= floor, "{metric:?} {storage:?}: recall {r}");
            // Scores are the metric's, best first.
            let hits = h.search(&queries[..D], 10, Some(64), None).unwrap();
            assert!(hits.windows(2).all(|w| w[0].0 >= w[1].0));
        }
    }
}

#[test]
fn f32_scores_match_the_reference_metric() {
    let (h, data, ids, queries) = build(Metric::Cosine, Storage::F32);
    let q = &queries[..D];
    let hits = h.search(q, 3, Some(64), None).unwrap();
    let nq: f64 = q.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    for (score, id) in hits {
        let i = ids.iter().position(|&x| x == id).unwrap();
        let x = &data[i * D..][..D];
        let nx: f64 = x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
        let cos: f64 = x.iter().zip(q).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>() / nx / nq;
        assert!((score as f64 - cos).abs() < 1e-4);
    }
}

#[test]
fn round_trip_through_parts_is_exact() {
    for storage in [Storage::F32, Storage::Sq8, Storage::Sq8F16] {
        let (mut h, _, ids, queries) = build(Metric::L2, storage);
        h.remove(&ids[..10]).unwrap();
        let p = h.to_parts();
        let h2 = Hnsw::from_parts(p.clone()).unwrap();
        assert_eq!(h2.to_parts(), p);
        assert_eq!(h2.len(), h.len());
        let a = h.search_batch(&queries, 10, Some(50), None).unwrap();
        let b = h2.search_batch(&queries, 10, Some(50), None).unwrap();
        assert_eq!(a, b);
    }
}

#[test]
fn corrupted_parts_are_rejected() {
    let (h, _, _, _) = build(Metric::Ip, Storage::F32);
    let p = h.to_parts();
    let mut q = p.clone();
    q.neighbors[5] = N as u32 + 7;
    assert!(matches!(Hnsw::from_parts(q), Err(Error::Format(_))));
    let mut q = p.clone();
    q.vectors.pop();
    assert!(matches!(Hnsw::from_parts(q), Err(Error::Format(_))));
    let mut q = p.clone();
    q.offsets.pop();
    assert!(matches!(Hnsw::from_parts(q), Err(Error::Format(_))));
    let mut q = p;
    q.entry_point = Some(N as u32);
    assert!(matches!(Hnsw::from_parts(q), Err(Error::Format(_))));
}

#[test]
fn filtered_search_keeps_recall_at_every_selectivity() {
    let (h, data, ids, queries) = build(Metric::L2, Storage::F32);
    for modulus in [2u64, 10, 100, 1000] {
        let f = move |id: u64| (id / 3).is_multiple_of(modulus);
        let got = search_all(&h, &queries, 10, 64, Some(&f));
        for g in &got {
            assert!(g.iter().all(|&id| f(id)));
        }
        let want: Vec<Vec<u64>> = queries
            .chunks_exact(D)
            .map(|q| exact(&data, &ids, q, 10, Metric::L2, f))
            .collect();
        let r = recall(&got, &want);
        assert!(r >= 0.95, "1/{modulus} allowed: recall {r}");
        // The same through an id set.
        let allowed: Vec<u64> = ids.iter().copied().filter(|&i| f(i)).collect();
        let set = h.node_set(&allowed);
        let (_, got2) = h.search_batch(&queries, 10, Some(64), Some(&set)).unwrap();
        let got2: Vec<Vec<u64>> = got2
            .chunks(10)
            .map(|r| r.iter().filter(|&&x| x >= 0).map(|&x| x as u64).collect())
            .collect();
        assert!(recall(&got2, &want) >= 0.95);
        for (g, w) in got2.iter().zip(&want) {
            assert_eq!(g.len(), w.len(), "padding only where fewer than k exist");
        }
    }
}

#[test]
fn remove_hides_ids_and_compact_frees_space() {
    let (mut h, data, ids, queries) = build(Metric::Ip, Storage::F32);
    let before = h.memory_usage();
    let gone: Vec<u64> = ids.iter().copied().step_by(2).collect();
    h.remove(&gone).unwrap();
    assert_eq!(h.len(), N - gone.len());
    let dead = |id: u64| gone.binary_search(&id).is_ok();
    let want: Vec<Vec<u64>> = queries
        .chunks_exact(D)
        .map(|q| exact(&data, &ids, q, 10, Metric::Ip, |id| !dead(id)))
        .collect();
    let got = search_all(&h, &queries, 10, 64, None);
    assert!(got.iter().flatten().all(|&id| !dead(id)));
    assert!(recall(&got, &want) >= 0.95);
    h.compact();
    assert_eq!(h.n_deleted(), 0);
    assert_eq!(h.len(), N - gone.len());
    assert!(
        h.memory_usage() < before * 3 / 4,
        "{} vs {before}",
        h.memory_usage()
    );
    let got = search_all(&h, &queries, 10, 128, None);
    let r = recall(&got, &want);
    assert!(r >= 0.95, "after compact {r}");
    // Removed ids can be added again, and are found.
    h.add(&data[..D], Some(&gone[..1])).unwrap();
    let hit = h.search(&data[..D], 1, Some(64), None).unwrap();
    assert_eq!(hit[0].1, gone[0]);
    // Removing everything leaves an empty, searchable index.
    let live: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|&i| !dead(i))
        .chain([gone[0]])
        .collect();
    h.remove(&live).unwrap();
    h.compact();
    assert_eq!(h.len(), 0);
    assert!(h.search(&data[..D], 5, None, None).unwrap().is_empty());
}

#[test]
fn bad_input_is_an_error_and_changes_nothing() {
    let (mut h, data, ids, _) = build(Metric::L2, Storage::Sq8);
    let p = h.to_parts();
    assert!(h.add(&data[..D + 1], None).is_err());
    let mut nan = data[..2 * D].to_vec();
    nan[D + 3] = f32::NAN;
    assert!(h.add(&nan, None).is_err());
    nan[D + 3] = f32::INFINITY;
    assert!(h.add(&nan, None).is_err());
    assert!(h.add(&data[..2 * D], Some(&[1, 1])).is_err());
    assert!(h.add(&data[..2 * D], Some(&[1, ids[5]])).is_err());
    assert!(h.add(&data[..2 * D], Some(&[1])).is_err());
    assert!(h.remove(&[12345]).is_err());
    assert!(h.remove(&[ids[0], ids[0]]).is_err());
    assert!(h.remove(&[ids[0], 999]).is_err());
    assert!(h.search(&data[..D - 1], 5, None, None).is_err());
    assert!(h.search(&data[..D], 0, None, None).is_err());
    assert!(h.search(&data[..D], 5, Some(0), None).is_err());
    assert!(h.search(&nan[D..2 * D], 5, None, None).is_err());
    assert!(h.search_batch(&data[..D + 2], 5, None, None).is_err());
    assert_eq!(h.to_parts(), p);
    assert!(Hnsw::new(0, Metric::L2, Storage::F32, Params::default()).is_err());
    assert!(Hnsw::new(
        4,
        Metric::L2,
        Storage::F32,
        Params {
            m: 1,
            ..Default::default()
        }
    )
    .is_err());
    assert!(Metric::parse("hamming").is_err());
    assert!(Storage::parse("pq").is_err());
}

/// fp64 score of `q` against the float16-rounded row `x` (normalised first for cosine, as the
/// store keeps it): what a re-scored result must report.
fn f16_score(x: &[f32], q: &[f32], metric: Metric) -> f64 {
    let norm = |v: &[f32]| v.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
    let (nx, nq) = match metric {
        Metric::Cosine => (norm(x), norm(q)),
        _ => (1.0, 1.0),
    };
    let h: Vec<f64> = x
        .iter()
        .map(|&a| half::f16::from_f32((a as f64 / nx) as f32).to_f64())
        .collect();
    let q: Vec<f64> = q.iter().map(|&a| a as f64 / nq).collect();
    match metric {
        Metric::L2 => -h.iter().zip(&q).map(|(a, b)| (a - b).powi(2)).sum::<f64>(),
        _ => h.iter().zip(&q).map(|(a, b)| a * b).sum(),
    }
}

#[test]
fn sq8_f16_reranks_the_walks_candidates_with_f16_vectors() {
    for metric in [Metric::Ip, Metric::L2, Metric::Cosine] {
        let (mut sq, data, ids, queries) = build(metric, Storage::Sq8);
        sq.remove(&ids[..N / 10]).unwrap();
        sq.compact();
        // The same graph and codes with float16 copies beside them: the walk is identical, so
        // the re-scored result must be the fp64 top-k of the SQ8 walk's ef candidates.
        let mut p = sq.to_parts();
        p.storage = Storage::Sq8F16;
        p.half = p
            .ids
            .iter()
            .flat_map(|id| {
                let i = ids.iter().position(|x| x == id).unwrap();
                let norm = if metric == Metric::Cosine {
                    data[i * D..][..D]
                        .iter()
                        .map(|a| (*a as f64).powi(2))
                        .sum::<f64>()
                        .sqrt()
                } else {
                    1.0
                };
                data[i * D..][..D]
                    .iter()
                    .map(move |&a| half::f16::from_f32((a as f64 / norm) as f32).to_bits())
            })
            .collect();
        let h = Hnsw::from_parts(p).unwrap();
        let row = |id: u64| {
            let i = ids.iter().position(|&x| x == id).unwrap();
            &data[i * D..][..D]
        };
        let (ef, k) = (24, 5);
        let (mut better, mut worse) = (0, 0);
        for q in queries.chunks_exact(D) {
            let cands = sq.search(q, ef, Some(ef), None).unwrap();
            let mut want: Vec<(f64, u64)> = cands
                .iter()
                .map(|&(_, id)| (f16_score(row(id), q, metric), id))
                .collect();
            want.sort_by(|a, b| b.0.total_cmp(&a.0));
            let got = h.search(q, k, Some(ef), None).unwrap();
            assert_eq!(got.len(), k);
            for ((gs, gid), (ws, wid)) in got.iter().zip(&want) {
                let tol = 1e-4 * ws.abs().max(1.0);
                assert!((*gs as f64 - ws).abs() <= tol, "{metric:?}: score {gs} vs {ws}");
                // Equal ids, unless two candidates tie within the f32 rounding.
                if gid != wid {
                    assert!((f16_score(row(*gid), q, metric) - ws).abs() <= tol);
                }
            }
            // Against the exact fp64 top-k of all live rows, re-scoring never loses hits here.
            let live: std::collections::HashSet<u64> = ids[N / 10..].iter().copied().collect();
            let truth = exact(&data, &ids, q, k, metric, |id| live.contains(&id));
            let hits = |r: &[(f32, u64)]| truth.iter().filter(|t| r[..k].iter().any(|x| x.1 == **t)).count();
            let (a, b) = (hits(&got), hits(&cands[..k]));
            better += (a > b) as usize;
            worse += (a < b) as usize;
        }
        assert!(
            better >= worse,
            "{metric:?}: re-scoring helped {better} queries, hurt {worse}"
        );
    }
}

#[test]
fn sq8_f16_copies_follow_their_nodes_through_compaction() {
    let (mut h, data, ids, queries) = build(Metric::L2, Storage::Sq8F16);
    let gone: Vec<u64> = ids.iter().copied().step_by(3).collect();
    h.remove(&gone).unwrap();
    h.compact();
    for q in queries.chunks_exact(D) {
        for (score, id) in h.search(q, 10, Some(64), None).unwrap() {
            assert!(gone.binary_search(&id).is_err());
            let i = ids.iter().position(|&x| x == id).unwrap();
            let want = f16_score(&data[i * D..][..D], q, Metric::L2);
            assert!(
                (score as f64 - want).abs() <= 1e-4 * want.abs().max(1.0),
                "{score} vs {want}"
            );
        }
    }
}

#[test]
fn sq8_f16_scores_wide_vectors_chunk_by_chunk() {
    // Wider than the re-scoring's stack chunk (512 dimensions).
    let dim = 600;
    let data = clustered(300, dim, 5, 8);
    let mut h = Hnsw::new(dim, Metric::L2, Storage::Sq8F16, Params::default()).unwrap();
    h.add(&data, None).unwrap();
    let q = &clustered(1, dim, 5, 9)[..];
    for (score, id) in h.search(q, 5, Some(32), None).unwrap() {
        let want = f16_score(&data[id as usize * dim..][..dim], q, Metric::L2);
        assert!(
            (score as f64 - want).abs() <= 1e-4 * want.abs().max(1.0),
            "{score} vs {want}"
        );
    }
}

#[test]
fn sq8_f16_rejects_values_beyond_float16() {
    let (mut h, data, _, _) = build(Metric::Ip, Storage::Sq8F16);
    let p = h.to_parts();
    let mut big = data[..2 * D].to_vec();
    big[D + 5] = 70000.0;
    let e = h.add(&big, None).unwrap_err().to_string();
    assert!(
        e.contains("row 1") && e.contains("column 5") && e.contains("float16"),
        "{e}"
    );
    assert_eq!(h.to_parts(), p);
    // Cosine rows are normalised first, so any finite magnitude fits.
    let mut c = Hnsw::new(D, Metric::Cosine, Storage::Sq8F16, Params::default()).unwrap();
    c.add(&big, None).unwrap();
    assert_eq!(c.len(), 2);
}

#[test]
fn fewer_points_than_k_pad() {
    let mut h = Hnsw::new(3, Metric::Ip, Storage::F32, Params::default()).unwrap();
    let (s, i) = h.search_batch(&[1.0, 0.0, 0.0], 4, None, None).unwrap();
    assert_eq!(i, vec![-1; 4]);
    assert!(s.iter().all(|x| *x == f32::NEG_INFINITY));
    assert_eq!(h.add(&[1.0, 0.0, 0.0, 0.0, 1.0, 0.0], None).unwrap(), vec![0, 1]);
    let (s, i) = h.search_batch(&[1.0, 0.0, 0.0], 4, None, None).unwrap();
    assert_eq!(i, vec![0, 1, -1, -1]);
    assert_eq!(&s[..2], &[1.0, 0.0]);
    // Automatic ids continue after the largest id seen.
    assert_eq!(h.add(&[0.0, 0.0, 1.0], Some(&[41])).unwrap(), vec![41]);
    assert_eq!(h.add(&[0.0, 1.0, 1.0], None).unwrap(), vec![42]);
}

#[test]
fn parallel_build_matches_recall_of_serial_build() {
    let data = clustered(N, D, 40, 5);
    let queries = clustered(NQ, D, 40, 6);
    let ids: Vec<u64> = (0..N as u64).collect();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap();
    let mut h = Hnsw::new(D, Metric::L2, Storage::F32, Params::default()).unwrap();
    // Oversubscribed threads interleave inserts and exercise the per-node locks.
    pool.install(|| h.add(&data, None)).unwrap();
    let got = search_all(&h, &queries, 10, 64, None);
    let want: Vec<Vec<u64>> = queries
        .chunks_exact(D)
        .map(|q| exact(&data, &ids, q, 10, Metric::L2, |_| true))
        .collect();
    assert!(recall(&got, &want) >= 0.95);
    // Graph invariants: every list within capacity, no self-links, ids in range.
    let p = h.to_parts();
    let mut j = 0;
    for i in 0..N {
        for layer in 0..=p.levels[i] as usize {
            let l = &p.neighbors[p.offsets[j] as usize..p.offsets[j + 1] as usize];
            assert!(l.len() <= if layer == 0 { 32 } else { 16 });
            assert!(!l.contains(&(i as u32)));
            j += 1;
        }
    }
}

#[test]
fn sq8_range_grows_when_later_batches_exceed_it() {
    let data = clustered(N, D, 40, 1);
    let queries = clustered(NQ, D, 40, 2);
    let ids: Vec<u64> = (0..N as u64).collect();
    let mut h = Hnsw::new(D, Metric::L2, Storage::Sq8, Params::default()).unwrap();
    // A one-vector first batch trains a degenerate range; the next batch must widen it.
    h.add(&data[..D], None).unwrap();
    h.add(&data[D..], None).unwrap();
    let got = search_all(&h, &queries, 10, 64, None);
    let want: Vec<Vec<u64>> = queries
        .chunks_exact(D)
        .map(|q| exact(&data, &ids, q, 10, Metric::L2, |_| true))
        .collect();
    let r = recall(&got, &want);
    assert!(r >= 0.85, "recall {r}");
}

#[test]
fn sq8_inner_product_matches_decoded_fp64_reference() {
    use store::VectorStore;
    // The i16-query path must agree with the inner product of the query and the decoded codes.
    for dim in [3usize, 64, 100, 384] {
        let data = clustered(200, dim, 5, dim as u64);
        let mut st = Sq8Store::new(dim, Metric::Ip);
        st.extend(&data, false);
        let mut dec = Vec::new();
        for qi in 0..5 {
            let q = &data[qi * 7 * dim..][..dim];
            let pq = st.prepare(q);
            for i in 0..200u32 {
                st.decode(i, &mut dec);
                let want: f64 = q.iter().zip(&dec).map(|(a, b)| *a as f64 * *b as f64).sum();
                let scale: f64 = q
                    .iter()
                    .zip(&dec)
                    .map(|(a, b)| (*a as f64 * *b as f64).abs())
                    .sum();
                let got = -st.dist(&pq, i) as f64;
                assert!(
                    (got - want).abs() <= 1e-3 * (1.0 + scale),
                    "dim {dim}, query {qi}, row {i}: {got} vs {want}"
                );
            }
        }
    }
}

#[test]
fn compact_after_heavy_removal_keeps_recall_and_reachability() {
    for storage in [Storage::F32, Storage::Sq8] {
        let (mut h, data, ids, queries) = build(Metric::L2, storage);
        // Remove 70 % of the points, in a pattern that empties whole neighbourhoods.
        let gone: Vec<u64> = ids
            .iter()
            .enumerate()
            .filter(|(i, _)| (i * 7) % 10 < 7)
            .map(|(_, &id)| id)
            .collect();
        h.remove(&gone).unwrap();
        h.compact();
        assert_eq!((h.len(), h.n_deleted()), (N - gone.len(), 0));
        let dead = |id: u64| gone.binary_search(&id).is_ok();
        let want: Vec<Vec<u64>> = queries
            .chunks_exact(D)
            .map(|q| exact(&data, &ids, q, 10, Metric::L2, |id| !dead(id)))
            .collect();
        let got = search_all(&h, &queries, 10, 128, None);
        assert!(got.iter().flatten().all(|&id| !dead(id)));
        let r = recall(&got, &want);
        assert!(r >= 0.9, "{storage:?}: recall after compact {r}");
        // Every remaining point is still reachable: searching for its own vector finds it.
        let live: Vec<usize> = (0..N).filter(|&i| !dead(ids[i])).collect();
        let found = live
            .iter()
            .filter(|&&i| {
                let hits = h.search(&data[i * D..(i + 1) * D], 3, Some(64), None).unwrap();
                hits.iter().any(|x| x.1 == ids[i])
            })
            .count();
        assert!(
            found as f64 >= 0.99 * live.len() as f64,
            "{storage:?}: {found} of {} found",
            live.len()
        );
        // The compacted graph still takes inserts that link into it.
        h.add(&data[..D], Some(&gone[..1])).unwrap();
        let hit = h.search(&data[..D], 1, Some(64), None).unwrap();
        assert_eq!(hit[0].1, gone[0]);
    }
}
