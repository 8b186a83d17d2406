//! Index files written by earlier versions of mlvec load to the search results they gave when
//! they were written, and saving them again reproduces them byte for byte.
//!
//! `tests/fixtures/*.mlvec` were written by `cargo test -p mlvec-core --test legacy_files --
//! --ignored write_fixtures` at the version named in `tests/fixtures/README.md`; each
//! `<name>.json` beside a file records the queries, the search settings and what the writing
//! version returned. Never regenerate them to make this test pass: they stand for files that
//! users already have.

use mlvec_core::index::{metric::Metric, Index, SearchParams};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// A fixture: file name, kind, metric, vectors, dimension.
struct Fixture {
    name: &'static str,
    kind: &'static str,
    metric: Metric,
    n: usize,
    dim: usize,
}

const FIXTURES: &[Fixture] = &[
    Fixture {
        name: "hnsw_sq8_ip",
        kind: "HNSW12_60,SQ8",
        metric: Metric::Ip,
        n: 600,
        dim: 24,
    },
    Fixture {
        name: "hnsw_sq8_f16_cosine",
        kind: "HNSW8_40,SQ8,rescore16",
        metric: Metric::Cosine,
        n: 400,
        dim: 20,
    },
    Fixture {
        name: "hnsw_f32_l2",
        kind: "HNSW8_40",
        metric: Metric::L2,
        n: 400,
        dim: 16,
    },
    Fixture {
        name: "ivf_pq_l2",
        kind: "IVF8,PQ8",
        metric: Metric::L2,
        n: 1000,
        dim: 32,
    },
    Fixture {
        name: "ivf_pq4_rescore_ip",
        kind: "IVF4,PQ8x4,rescore",
        metric: Metric::Ip,
        n: 600,
        dim: 16,
    },
    Fixture {
        name: "ivf_sq8_cosine",
        kind: "IVF4,SQ8",
        metric: Metric::Cosine,
        n: 500,
        dim: 24,
    },
];

const K: usize = 10;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Clustered Gaussian rows (xorshift + Box-Muller), the same on every platform.
fn mixture(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut unif = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let mut gauss = move || {
        let (u, v) = (unif(), unif());
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    };
    let centres: Vec<f32> = (0..8 * dim).map(|_| 2.0 * gauss()).collect();
    (0..n)
        .flat_map(|i| (0..dim).map(move |j| (i, j)))
        .map(|(i, j)| centres[(i * 5 % 8) * dim + j] + 0.5 * gauss())
        .collect()
}

fn params() -> SearchParams {
    SearchParams {
        nprobe: Some(3),
        rescore: 4,
        ef_search: Some(32),
    }
}

/// Unfiltered results, then results restricted to every third stored id.
fn searches(idx: &Index, queries: &[f32]) -> [(Vec<f32>, Vec<i64>); 2] {
    let some: Vec<i64> = idx.ids().iter().copied().step_by(3).collect();
    let allow = idx.allow_ids(&some);
    [
        idx.search(queries, K, &params(), None).unwrap(),
        idx.search(queries, K, &params(), Some(&allow)).unwrap(),
    ]
}

#[test]
#[ignore = "writes the fixtures; run only to add a new one, never to refresh an existing one"]
fn write_fixtures() {
    std::fs::create_dir_all(dir()).unwrap();
    for (i, f) in FIXTURES.iter().enumerate() {
        let path = dir().join(format!("{}.mlvec", f.name));
        if path.exists() {
            continue;
        }
        let seed = 100 + i as u64;
        let x = mixture(f.n, f.dim, seed);
        let queries = mixture(12, f.dim, seed + 50);
        let mut idx = Index::new(f.dim, f.kind, f.metric, 7).unwrap();
        idx.train(&x).unwrap();
        let ids: Vec<i64> = (0..f.n as i64).map(|i| 3 * i + 5).collect();
        idx.add(&x, Some(&ids)).unwrap();
        // Removal leaves compacted storage with ids that are not slot numbers.
        let gone: Vec<i64> = ids.iter().copied().skip(1).step_by(7).collect();
        idx.remove(&gone).unwrap();
        idx.save(&path).unwrap();
        let [plain, filtered] = searches(&idx, &queries);
        let record = json!({
            "kind": f.kind,
            "metric": f.metric.name(),
            "k": K,
            "queries": queries,
            "scores": plain.0,
            "ids": plain.1,
            "filtered_scores": filtered.0,
            "filtered_ids": filtered.1,
        });
        let json_path = dir().join(format!("{}.json", f.name));
        std::fs::write(json_path, serde_json::to_string(&record).unwrap()).unwrap();
    }
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

#[test]
fn files_of_earlier_versions_load_to_the_same_results() {
    for f in FIXTURES {
        let path = dir().join(format!("{}.mlvec", f.name));
        let rec: Value =
            serde_json::from_str(&std::fs::read_to_string(dir().join(format!("{}.json", f.name))).unwrap())
                .unwrap();
        let queries = floats(&rec["queries"]);
        for mmap in [false, true] {
            let idx = Index::load(&path, mmap).unwrap();
            assert_eq!(idx.spec().to_string(), f.kind);
            assert_eq!(idx.metric(), f.metric);
            let got = searches(&idx, &queries);
            for (g, (s, i)) in got
                .iter()
                .zip([("scores", "ids"), ("filtered_scores", "filtered_ids")])
            {
                let what = format!("{} mmap={mmap} {i}", f.name);
                assert_eq!(g.1, ints(&rec[i]), "{what}");
                // Scores may differ only in the last bits of a kernel's summation order.
                for (a, b) in g.0.iter().zip(floats(&rec[s])) {
                    assert!(
                        (a == &b) || (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                        "{what}: score {a} vs {b}"
                    );
                }
            }
        }
        // Saving a loaded file writes it back unchanged: same arrays, same header.
        let again =
            std::env::temp_dir().join(format!("mlvec-legacy-{}-{}.mlvec", f.name, std::process::id()));
        Index::load(&path, false).unwrap().save(&again).unwrap();
        let same = std::fs::read(&again).unwrap() == std::fs::read(&path).unwrap();
        std::fs::remove_file(&again).ok();
        assert!(same, "{}: re-saved file differs from the original", f.name);
    }
}
