use super::*;
use crate::index::{Index, SearchParams};
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

/// The `k` best rows of `data` for `q` by the fp64 metric among rows `ok` admits.
fn exact(data: &[f32], q: &[f32], k: usize, metric: Metric, ok: impl Fn(u32) -> bool) -> Vec<u32> {
    let dim = q.len();
    let norm = |v: &[f32]| {
        v.iter()
            .map(|x| (*x as f64).powi(2))
            .sum::<f64>()
            .sqrt()
            .max(1e-30)
    };
    let mut s: Vec<(f64, u32)> = data
        .chunks_exact(dim)
        .zip(0u32..)
        .filter(|(_, i)| ok(*i))
        .map(|(x, i)| {
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
            (sc, i)
        })
        .collect();
    s.sort_by(|a, b| b.0.total_cmp(&a.0));
    s.truncate(k);
    s.into_iter().map(|x| x.1).collect()
}

/// [`exact`] for every query of `queries`.
fn exact_all(
    data: &[f32],
    queries: &[f32],
    k: usize,
    metric: Metric,
    ok: impl Fn(u32) -> bool,
) -> Vec<Vec<u32>> {
    queries
        .chunks_exact(D)
        .map(|q| exact(data, q, k, metric, &ok))
        .collect()
}

fn recall(got: &[Vec<u32>], want: &[Vec<u32>]) -> f64 {
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

fn graph(metric: Metric, storage: Storage, params: Params) -> Hnsw {
    Hnsw::new(D, metric, storage, params).unwrap()
}

fn build(metric: Metric, storage: Storage) -> (Hnsw, Vec<f32>, Vec<f32>) {
    let data = clustered(N, D, 40, 1);
    let queries = clustered(NQ, D, 40, 2);
    let params = Params {
        m: 12,
        ef_construction: 100,
        ..Default::default()
    };
    let mut h = graph(metric, storage, params);
    // Two batches: incremental add must link the second to the first.
    h.add(&data[..N / 2 * D]);
    h.add(&data[N / 2 * D..]);
    (h, data, queries)
}

/// One query through the graph as the index runs it (normalised for cosine): `(score, node)`.
fn search(h: &Hnsw, q: &[f32], k: usize, ef: usize, allow: Option<&Bitmap>) -> Vec<(f32, u32)> {
    let q = h.metric().prepare_rows(h.dim(), q);
    h.search(&q, k, Some(ef), allow).remove(0)
}

fn search_all(h: &Hnsw, queries: &[f32], k: usize, ef: usize, allow: Option<&Bitmap>) -> Vec<Vec<u32>> {
    queries
        .chunks_exact(h.dim())
        .map(|q| search(h, q, k, ef, allow).into_iter().map(|x| x.1).collect())
        .collect()
}

fn bitmap(n: usize, nodes: impl Iterator<Item = u32>) -> Bitmap {
    let mut b = Bitmap::new(n);
    nodes.for_each(|i| b.insert(i));
    b
}

#[test]
fn recall_against_exact_search_for_each_metric_and_storage() {
    for storage in [Storage::F32, Storage::Sq8, Storage::Sq8F16] {
        for metric in [Metric::Ip, Metric::L2, Metric::Cosine] {
            let (h, data, queries) = build(metric, storage);
            assert_eq!(h.len(), N);
            let got = search_all(&h, &queries, 10, 64, None);
            let want: Vec<Vec<u32>> = exact_all(&data, &queries, 10, metric, |_| true);
            let r = recall(&got, &want);
            let floor = if storage == Storage::F32 { 0.95 } else { 0.85 };
            assert!(r >= floor, "{metric:?} {storage:?}: recall {r}");
            // Scores are the metric's, best first.
            let hits = search(&h, &queries[..D], 10, 64, None);
            assert!(hits.windows(2).all(|w| w[0].0 >= w[1].0));
        }
    }
}

#[test]
fn f32_scores_match_the_reference_metric() {
    let (h, data, queries) = build(Metric::Cosine, Storage::F32);
    let q = &queries[..D];
    let hits = search(&h, q, 3, 64, None);
    let nq: f64 = q.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    for (score, i) in hits {
        let x = &data[i as usize * D..][..D];
        let nx: f64 = x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
        let cos: f64 = x.iter().zip(q).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>() / nx / nq;
        assert!((score as f64 - cos).abs() < 1e-4);
    }
}

#[test]
fn round_trip_through_parts_is_exact() {
    for storage in [Storage::F32, Storage::Sq8, Storage::Sq8F16] {
        let (mut h, _, queries) = build(Metric::L2, storage);
        h.remove(&bitmap(N, 0..10));
        let p = h.to_parts();
        let h2 = Hnsw::from_parts(p.clone()).unwrap();
        assert_eq!(h2.to_parts(), p);
        assert_eq!(h2.len(), h.len());
        let a = h.search(&queries, 10, Some(50), None);
        let b = h2.search(&queries, 10, Some(50), None);
        assert_eq!(a, b);
    }
}

#[test]
fn corrupted_parts_are_rejected() {
    let (h, _, _) = build(Metric::Ip, Storage::F32);
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
    let (h, data, queries) = build(Metric::L2, Storage::F32);
    for modulus in [2u32, 10, 100, 1000] {
        let f = move |i: u32| i.is_multiple_of(modulus);
        let allow = bitmap(N, (0..N as u32).filter(|&i| f(i)));
        let got = search_all(&h, &queries, 10, 64, Some(&allow));
        for g in &got {
            assert!(g.iter().all(|&i| f(i)));
        }
        let want: Vec<Vec<u32>> = exact_all(&data, &queries, 10, Metric::L2, f);
        let r = recall(&got, &want);
        assert!(r >= 0.95, "1/{modulus} allowed: recall {r}");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(
                g.len(),
                w.len(),
                "fewer than k only where fewer than k are allowed"
            );
        }
    }
}

#[test]
fn remove_hides_nodes_and_frees_space() {
    let (mut h, data, queries) = build(Metric::Ip, Storage::F32);
    let before = h.memory_usage();
    let dead = |i: u32| i.is_multiple_of(2);
    h.remove(&bitmap(N, (0..N as u32).filter(|&i| dead(i))));
    // The live rows are renumbered in order: node j is row 2j + 1.
    let row = |j: u32| 2 * j + 1;
    assert_eq!(h.len(), N / 2);
    let want: Vec<Vec<u32>> = exact_all(&data, &queries, 10, Metric::Ip, |i| !dead(i));
    // Removal re-links and compacts at once: the re-linked graph is searched as wide as it
    // always was after compaction.
    let got: Vec<Vec<u32>> = search_all(&h, &queries, 10, 128, None)
        .into_iter()
        .map(|g| g.into_iter().map(row).collect())
        .collect();
    assert!(got.iter().flatten().all(|&i| !dead(i)));
    let r = recall(&got, &want);
    assert!(r >= 0.95, "after compact {r}");
    assert!(
        h.memory_usage() < before * 3 / 4,
        "{} vs {before}",
        h.memory_usage()
    );
    // A removed vector can be added again, and is found.
    h.add(&data[..D]);
    let hit = search(&h, &data[..D], 1, 64, None);
    assert_eq!(hit[0].1 as usize, N / 2);
    // Removing everything leaves an empty, searchable graph.
    h.remove(&bitmap(h.len(), 0..h.len() as u32));
    assert_eq!(h.len(), 0);
    assert!(search(&h, &data[..D], 5, 64, None).is_empty());
}

/// Bad input through the index a graph serves: an error, and the graph unchanged.
#[test]
fn bad_input_is_an_error_and_changes_nothing() {
    let data = clustered(N, D, 40, 1);
    let mut idx = Index::new(D, "HNSW12_100,SQ8", Metric::L2, 0).unwrap();
    idx.train(&data).unwrap();
    let ids: Vec<i64> = (0..N as i64).map(|i| i * 3 + (1 << 40)).collect();
    idx.add(&data, Some(&ids)).unwrap();
    let parts = |idx: &Index| (idx.graph().unwrap().to_parts(), idx.ids().to_vec());
    let p = parts(&idx);
    assert!(idx.add(&data[..D + 1], None).is_err());
    let mut nan = data[..2 * D].to_vec();
    nan[D + 3] = f32::NAN;
    assert!(idx.add(&nan, None).is_err());
    nan[D + 3] = f32::INFINITY;
    assert!(idx.add(&nan, None).is_err());
    assert!(idx.add(&data[..2 * D], Some(&[1, 1])).is_err());
    assert!(idx.add(&data[..2 * D], Some(&[1, ids[5]])).is_err());
    assert!(idx.add(&data[..2 * D], Some(&[1])).is_err());
    assert!(idx.remove(&[12345]).is_err());
    assert!(idx.remove(&[ids[0], ids[0]]).is_err());
    assert!(idx.remove(&[ids[0], 999]).is_err());
    let sp = SearchParams::default();
    assert!(idx.search(&data[..D - 1], 5, &sp, None).is_err());
    assert!(idx.search(&data[..D], 0, &sp, None).is_err());
    let ef0 = SearchParams {
        ef_search: Some(0),
        ..sp
    };
    assert!(idx.search(&data[..D], 5, &ef0, None).is_err());
    assert!(idx.search(&nan[D..2 * D], 5, &sp, None).is_err());
    assert!(idx.search(&data[..D + 2], 5, &sp, None).is_err());
    assert_eq!(parts(&idx), p);
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
    assert!(Index::new(4, "HNSW1", Metric::L2, 0).is_err());
    assert!(Metric::parse("hamming").is_err());
    assert!(Index::new(4, "HNSW8,PQ4", Metric::L2, 0).is_err());
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
        let (mut sq, data, queries) = build(metric, Storage::Sq8);
        // Remove the first tenth: node j is then row N / 10 + j.
        sq.remove(&bitmap(N, 0..N as u32 / 10));
        let row = |j: u32| &data[(N / 10 + j as usize) * D..][..D];
        // The same graph and codes with float16 copies beside them: the walk is identical, so
        // the re-scored result must be the fp64 top-k of the SQ8 walk's ef candidates.
        let mut p = sq.to_parts();
        p.storage = Storage::Sq8F16;
        p.half = (0..sq.len() as u32)
            .flat_map(|j| {
                let x = row(j);
                let norm = if metric == Metric::Cosine {
                    x.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt()
                } else {
                    1.0
                };
                x.iter()
                    .map(move |&a| half::f16::from_f32((a as f64 / norm) as f32).to_bits())
            })
            .collect();
        let h = Hnsw::from_parts(p).unwrap();
        let (ef, k) = (24, 5);
        let (mut better, mut worse) = (0, 0);
        for q in queries.chunks_exact(D) {
            let cands = search(&sq, q, ef, ef, None);
            let mut want: Vec<(f64, u32)> = cands
                .iter()
                .map(|&(_, j)| (f16_score(row(j), q, metric), j))
                .collect();
            want.sort_by(|a, b| b.0.total_cmp(&a.0));
            let got = search(&h, q, k, ef, None);
            assert_eq!(got.len(), k);
            for ((gs, gj), (ws, wj)) in got.iter().zip(&want) {
                let tol = 1e-4 * ws.abs().max(1.0);
                assert!((*gs as f64 - ws).abs() <= tol, "{metric:?}: score {gs} vs {ws}");
                // Equal nodes, unless two candidates tie within the f32 rounding.
                if gj != wj {
                    assert!((f16_score(row(*gj), q, metric) - ws).abs() <= tol);
                }
            }
            // Against the exact fp64 top-k of all live rows, re-scoring never loses hits here.
            let truth: Vec<u32> = exact(&data, q, k, metric, |i| i as usize >= N / 10)
                .into_iter()
                .map(|i| i - N as u32 / 10)
                .collect();
            let hits = |r: &[(f32, u32)]| truth.iter().filter(|t| r[..k].iter().any(|x| x.1 == **t)).count();
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
    let (mut h, data, queries) = build(Metric::L2, Storage::Sq8F16);
    let gone = |i: u32| i.is_multiple_of(3);
    h.remove(&bitmap(N, (0..N as u32).filter(|&i| gone(i))));
    let live: Vec<u32> = (0..N as u32).filter(|&i| !gone(i)).collect();
    for q in queries.chunks_exact(D) {
        for (score, j) in search(&h, q, 10, 64, None) {
            let i = live[j as usize] as usize;
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
    h.add(&data);
    let q = &clustered(1, dim, 5, 9)[..];
    for (score, i) in search(&h, q, 5, 32, None) {
        let want = f16_score(&data[i as usize * dim..][..dim], q, Metric::L2);
        assert!(
            (score as f64 - want).abs() <= 1e-4 * want.abs().max(1.0),
            "{score} vs {want}"
        );
    }
}

#[test]
fn sq8_f16_rejects_values_beyond_float16() {
    let (h, data, _) = build(Metric::Ip, Storage::Sq8F16);
    let mut big = data[..2 * D].to_vec();
    big[D + 5] = 70000.0;
    let e = h.check_rows(&big).unwrap_err().to_string();
    assert!(
        e.contains("row 1") && e.contains("column 5") && e.contains("float16"),
        "{e}"
    );
    // Through an index, the rows are refused before anything changes.
    let mut idx = Index::new(D, "HNSW8,SQ8,rescore16", Metric::Ip, 0).unwrap();
    idx.train(&data).unwrap();
    idx.add(&data[..4 * D], None).unwrap();
    let p = idx.graph().unwrap().to_parts();
    assert!(idx.add(&big, None).unwrap_err().to_string().contains("float16"));
    assert_eq!(idx.graph().unwrap().to_parts(), p);
    assert_eq!(idx.len(), 4);
    // Cosine rows are normalised first, so any finite magnitude fits.
    let mut c = Hnsw::new(D, Metric::Cosine, Storage::Sq8F16, Params::default()).unwrap();
    c.check_rows(&big).unwrap();
    c.add(&big);
    assert_eq!(c.len(), 2);
}

#[test]
fn fewer_points_than_k_pad() {
    let mut idx = Index::new(3, "HNSW16", Metric::Ip, 0).unwrap();
    let p = SearchParams::default();
    let (s, i) = idx.search(&[1.0, 0.0, 0.0], 4, &p, None).unwrap();
    assert_eq!(i, vec![-1; 4]);
    assert!(s.iter().all(|x| *x == f32::NEG_INFINITY));
    idx.add(&[1.0, 0.0, 0.0, 0.0, 1.0, 0.0], None).unwrap();
    assert_eq!(idx.ids().as_ref(), [0, 1]);
    let (s, i) = idx.search(&[1.0, 0.0, 0.0], 4, &p, None).unwrap();
    assert_eq!(i, vec![0, 1, -1, -1]);
    assert_eq!(&s[..2], &[1.0, 0.0]);
    // Automatic ids continue after the largest id seen.
    idx.add(&[0.0, 0.0, 1.0], Some(&[41])).unwrap();
    idx.add(&[0.0, 1.0, 1.0], None).unwrap();
    assert_eq!(idx.ids().as_ref(), [0, 1, 41, 42]);
}

#[test]
fn parallel_build_matches_recall_of_serial_build() {
    let data = clustered(N, D, 40, 5);
    let queries = clustered(NQ, D, 40, 6);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap();
    let mut h = graph(Metric::L2, Storage::F32, Params::default());
    // Oversubscribed threads interleave inserts and exercise the per-node locks.
    pool.install(|| h.add(&data));
    let got = search_all(&h, &queries, 10, 64, None);
    let want: Vec<Vec<u32>> = exact_all(&data, &queries, 10, Metric::L2, |_| true);
    assert!(recall(&got, &want) >= 0.95);
    // Graph invariants: every list within capacity, no self-links, ids in range.
    let p = h.to_parts();
    let mut j = 0;
    for i in 0..N {
        for layer in 0..=p.levels[i] as usize {
            let l = &p.neighbors[p.offsets[j] as usize..p.offsets[j + 1] as usize];
            assert!(l.len() <= if layer == 0 { 32 } else { 16 });
            assert!(!l.contains(&(i as u32)));
            assert!(l.iter().all(|&x| (x as usize) < N));
            j += 1;
        }
    }
}

#[test]
fn sq8_range_grows_when_later_batches_exceed_it() {
    let data = clustered(N, D, 40, 1);
    let queries = clustered(NQ, D, 40, 2);
    let mut h = graph(Metric::L2, Storage::Sq8, Params::default());
    // A one-vector first batch trains a degenerate range; the next batch must widen it.
    h.add(&data[..D]);
    h.add(&data[D..]);
    let got = search_all(&h, &queries, 10, 64, None);
    let want: Vec<Vec<u32>> = exact_all(&data, &queries, 10, Metric::L2, |_| true);
    let r = recall(&got, &want);
    assert!(r >= 0.85, "recall {r}");
}

#[test]
fn sq8_inner_product_matches_decoded_fp64_reference() {
    use crate::index::codec::sq8::{Sq8, Sq8Codes};
    use crate::index::store::VectorStore;
    // The i16-query path must agree with the inner product of the query and the decoded codes.
    for dim in [3usize, 64, 100, 384] {
        let data = clustered(200, dim, 5, dim as u64);
        let mut st = Sq8Codes::new(dim, Metric::Ip, Sq8::default(), Vec::new());
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
                let got = st.score(&pq, i) as f64;
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
        let (mut h, data, queries) = build(Metric::L2, storage);
        // Remove 70 % of the points, in a pattern that empties whole neighbourhoods.
        let dead = |i: u32| (i * 7) % 10 < 7;
        h.remove(&bitmap(N, (0..N as u32).filter(|&i| dead(i))));
        let live: Vec<u32> = (0..N as u32).filter(|&i| !dead(i)).collect();
        assert_eq!(h.len(), live.len());
        let want: Vec<Vec<u32>> = exact_all(&data, &queries, 10, Metric::L2, |i| !dead(i));
        let got: Vec<Vec<u32>> = search_all(&h, &queries, 10, 128, None)
            .into_iter()
            .map(|g| g.into_iter().map(|j| live[j as usize]).collect())
            .collect();
        assert!(got.iter().flatten().all(|&i| !dead(i)));
        let r = recall(&got, &want);
        assert!(r >= 0.9, "{storage:?}: recall after compact {r}");
        // Every remaining point is still reachable: searching for its own vector finds it.
        let found = live
            .iter()
            .enumerate()
            .filter(|&(j, &i)| {
                let hits = search(&h, &data[i as usize * D..][..D], 3, 64, None);
                hits.iter().any(|x| x.1 == j as u32)
            })
            .count();
        assert!(
            found as f64 >= 0.99 * live.len() as f64,
            "{storage:?}: {found} of {} found",
            live.len()
        );
        // The compacted graph still takes inserts that link into it.
        h.add(&data[..D]);
        let hit = search(&h, &data[..D], 1, 64, None);
        assert_eq!(hit[0].1 as usize, live.len());
    }
}
