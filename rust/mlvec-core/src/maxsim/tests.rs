//! The fast kernels against the scalar reference, for every kernel variant this CPU runs.

use super::*;
use crate::simd;
use half::{bf16, f16};
use proptest::prelude::*;

/// A small deterministic generator, so one proptest seed describes a whole case.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub(super) fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

/// Token sets with unused rows before and after them, and an optional mask that sometimes
/// masks a whole set out.
struct Sets {
    data: Vec<f32>,
    offsets: Vec<i64>,
    mask: Option<Vec<bool>>,
}

fn make_sets(rng: &mut Rng, n: usize, max_len: usize, dim: usize, integer: bool, masked: bool) -> Sets {
    let lead = rng.below(3);
    let mut offsets = vec![lead as i64];
    for _ in 0..n {
        let len = match rng.below(6) {
            0 => 0,
            1 => 1,
            _ => rng.below(max_len + 1),
        };
        offsets.push(offsets.last().unwrap() + len as i64);
    }
    let rows = *offsets.last().unwrap() as usize + rng.below(3);
    let data = (0..rows * dim)
        .map(|_| {
            if integer {
                rng.below(7) as f32 - 3.0
            } else {
                rng.unit()
            }
        })
        .collect();
    let mask = masked.then(|| {
        let mut m: Vec<bool> = (0..rows).map(|_| rng.below(4) != 0).collect();
        // Mask one whole set out now and then.
        if n > 0 && rng.below(2) == 0 {
            let i = rng.below(n);
            m[offsets[i] as usize..offsets[i + 1] as usize].fill(false);
        }
        m
    });
    Sets { data, offsets, mask }
}

fn convert<T: Element>(xs: &[f32], f: impl Fn(f32) -> T) -> Vec<T> {
    xs.iter().map(|&x| f(x)).collect()
}

const ALL: Outputs = Outputs {
    q2d_argmax: true,
    d2q: true,
    d2q_argmax: true,
    check_finite: false,
};

pub(super) fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y || (x.is_nan() && y.is_nan()))
}

/// Integer-valued inputs: every dot product is exact in every variant, so scores and argmaxes
/// (first on ties) must agree exactly with the reference.
fn check_exact<T: Element>(qs: &Sets, ds: &Sets, dim: usize, pairing: Pairing, f: impl Fn(f32) -> T + Copy) {
    let (qd, dd) = (convert(&qs.data, f), convert(&ds.data, f));
    let q = TokenSets::new("queries", &qd, dim, &qs.offsets, qs.mask.as_deref()).unwrap();
    let d = TokenSets::new("documents", &dd, dim, &ds.offsets, ds.mask.as_deref()).unwrap();
    let want = reference::forward(&q, &d, pairing, ALL);
    for isa in simd::available() {
        let got = forward_with(isa, &q, &d, pairing, ALL);
        match (&want, got) {
            (Err(_), Err(_)) => {}
            (Ok(w), Ok(g)) => {
                let ctx = format!("{} {} {:?} dim {dim}", isa.name(), T::NAME, pairing);
                assert!(same_bits(&w.q2d, &g.q2d), "q2d {ctx}: {:?} vs {:?}", w.q2d, g.q2d);
                assert_eq!(w.q2d_argmax, g.q2d_argmax, "q2d_argmax {ctx}");
                assert!(
                    same_bits(w.d2q.as_ref().unwrap(), g.d2q.as_ref().unwrap()),
                    "d2q {ctx}"
                );
                assert_eq!(w.d2q_argmax, g.d2q_argmax, "d2q_argmax {ctx}");
                assert_eq!((w.lq_max, w.ld_max), (g.lq_max, g.ld_max));
            }
            (w, g) => panic!(
                "reference {:?} but {} gave {:?}",
                w.is_ok(),
                isa.name(),
                g.is_ok()
            ),
        }
        // Asking for less gives the same numbers.
        let only = forward_with(isa, &q, &d, pairing, Outputs::default());
        if let (Ok(w), Ok(o)) = (&want, only) {
            assert!(same_bits(&w.q2d, &o.q2d));
            assert!(o.q2d_argmax.is_none() && o.d2q.is_none() && o.d2q_argmax.is_none());
        }
    }
}

/// Random floats: scores within tolerance, and each argmax points at a score within
/// tolerance of the maximum (rounding may break near-ties differently).
fn check_close(qs: &Sets, ds: &Sets, dim: usize, pairing: Pairing) {
    let q = TokenSets::new("queries", &qs.data, dim, &qs.offsets, qs.mask.as_deref()).unwrap();
    let d = TokenSets::new("documents", &ds.data, dim, &ds.offsets, ds.mask.as_deref()).unwrap();
    let Ok(want) = reference::forward(&q, &d, pairing, ALL) else {
        return;
    };
    let tol = 1e-4 * (dim as f32) * 64.0;
    let close = |a: f32, b: f32| (a == b) || (a - b).abs() <= tol;
    for isa in simd::available() {
        let got = forward_with(isa, &q, &d, pairing, ALL).unwrap();
        for (a, b) in want.q2d.iter().zip(&got.q2d) {
            assert!(close(*a, *b), "{} q2d {a} vs {b}", isa.name());
        }
        for (a, b) in want.d2q.as_ref().unwrap().iter().zip(got.d2q.as_ref().unwrap()) {
            assert!(close(*a, *b), "{} d2q {a} vs {b}", isa.name());
        }
        let (wa, ga) = (
            want.q2d_argmax.as_ref().unwrap(),
            got.q2d_argmax.as_ref().unwrap(),
        );
        let nd = d.len().max(1);
        for p in 0..want.q2d.len() {
            let (qi, di) = pairing.split(p, nd);
            let (qs0, _) = q.span(qi);
            let (ds0, _) = d.span(di);
            for i in 0..want.lq_max {
                let (a, b) = (wa[p * want.lq_max + i], ga[p * want.lq_max + i]);
                assert_eq!(a < 0, b < 0, "{} argmax defined-ness", isa.name());
                if a >= 0 {
                    let sa = dot(q.row(qs0 + i), d.row(ds0 + a as usize));
                    let sb = dot(q.row(qs0 + i), d.row(ds0 + b as usize));
                    assert!(close(sa, sb), "{} argmax {a} ({sa}) vs {b} ({sb})", isa.name());
                }
            }
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The parallel backward adds in the reference's order: bit-identical gradients.
fn check_backward<T: Element>(
    qs: &Sets,
    ds: &Sets,
    dim: usize,
    pairing: Pairing,
    f: impl Fn(f32) -> T + Copy,
) {
    let (qd, dd) = (convert(&qs.data, f), convert(&ds.data, f));
    let q = TokenSets::new("queries", &qd, dim, &qs.offsets, qs.mask.as_deref()).unwrap();
    let d = TokenSets::new("documents", &dd, dim, &ds.offsets, ds.mask.as_deref()).unwrap();
    let Ok(fw) = reference::forward(&q, &d, pairing, ALL) else {
        return;
    };
    let p = fw.q2d.len();
    let g1: Vec<f32> = (0..p).map(|i| 0.5 + i as f32 * 0.37).collect();
    let g2: Vec<f32> = (0..p).map(|i| 1.25 - i as f32 * 0.11).collect();
    let (a1, a2) = (fw.q2d_argmax.unwrap(), fw.d2q_argmax.unwrap());
    for (use1, use2) in [(true, false), (false, true), (true, true)] {
        let mk = |on: bool, g: &'static str| -> Option<DirectionGrad> {
            match (on, g) {
                (false, _) => None,
                (true, "q2d") => Some(DirectionGrad {
                    grad: &g1,
                    argmax: &a1,
                }),
                (true, _) => Some(DirectionGrad {
                    grad: &g2,
                    argmax: &a2,
                }),
            }
        };
        let want = reference::backward(&q, &d, pairing, mk(use1, "q2d"), mk(use2, "d2q")).unwrap();
        let got = backward(&q, &d, pairing, mk(use1, "q2d"), mk(use2, "d2q")).unwrap();
        assert!(same_bits(&want.0, &got.0), "dq differs");
        assert!(same_bits(&want.1, &got.1), "dd differs");
    }
}

fn case(seed: u64, integer: bool) -> (Sets, Sets, usize) {
    let mut rng = Rng(seed | 1);
    let dim = 1 + rng.below(40);
    let masked = rng.below(2) == 0;
    let nq = rng.below(4);
    let nd = rng.below(5);
    let qs = make_sets(&mut rng, nq, 70, dim, integer, masked);
    let dm = rng.below(2) == 0;
    let ds = make_sets(&mut rng, nd, 40, dim, integer, dm);
    (qs, ds, dim)
}

fn paired_case(seed: u64, integer: bool) -> (Sets, Sets, usize) {
    let mut rng = Rng(seed | 1);
    let dim = 1 + rng.below(40);
    let n = rng.below(5);
    let (qm, dm) = (rng.below(2) == 0, rng.below(2) == 0);
    let qs = make_sets(&mut rng, n, 40, dim, integer, qm);
    let ds = make_sets(&mut rng, n, 40, dim, integer, dm);
    (qs, ds, dim)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn exact_on_integers_all_pairs(seed in any::<u64>()) {
        let (qs, ds, dim) = case(seed, true);
        check_exact(&qs, &ds, dim, Pairing::AllPairs, |x| x);
        check_exact(&qs, &ds, dim, Pairing::AllPairs, f16::from_f32);
        check_exact(&qs, &ds, dim, Pairing::AllPairs, bf16::from_f32);
    }

    #[test]
    fn exact_on_integers_paired(seed in any::<u64>()) {
        let (qs, ds, dim) = paired_case(seed, true);
        check_exact(&qs, &ds, dim, Pairing::Paired, |x| x);
        check_exact(&qs, &ds, dim, Pairing::Paired, f16::from_f32);
        check_exact(&qs, &ds, dim, Pairing::Paired, bf16::from_f32);
    }

    #[test]
    fn close_on_random_floats(seed in any::<u64>()) {
        let (qs, ds, dim) = case(seed, false);
        check_close(&qs, &ds, dim, Pairing::AllPairs);
        let (qs, ds, dim) = paired_case(seed, false);
        check_close(&qs, &ds, dim, Pairing::Paired);
    }

    #[test]
    fn backward_matches_reference(seed in any::<u64>()) {
        let (qs, ds, dim) = case(seed, false);
        check_backward(&qs, &ds, dim, Pairing::AllPairs, |x| x);
        check_backward(&qs, &ds, dim, Pairing::AllPairs, bf16::from_f32);
        let (qs, ds, dim) = paired_case(seed, false);
        check_backward(&qs, &ds, dim, Pairing::Paired, f16::from_f32);
    }
}

#[test]
fn every_variant_is_exercised_here() {
    // On the x86-64 machines we build on, at least AVX2 and the portable fallback run.
    let names: Vec<_> = simd::available().iter().map(|i| i.name()).collect();
    assert!(names.contains(&"portable"), "{names:?}");
}

#[test]
fn large_sets_many_chunks_and_ties() {
    // 100 query tokens (several chunks of lanes), documents with repeated rows (ties) and
    // a fully masked document; all-pairs and both directions, every variant.
    let dim = 33;
    let mut rng = Rng(7);
    let mut qs = make_sets(&mut rng, 2, 0, dim, true, false);
    qs.offsets = vec![0, 100, 130];
    qs.data = (0..130 * dim).map(|_| rng.below(5) as f32 - 2.0).collect();
    let mut ds = make_sets(&mut rng, 3, 0, dim, true, true);
    ds.offsets = vec![0, 50, 53, 90];
    let base: Vec<f32> = (0..10 * dim).map(|_| rng.below(3) as f32 - 1.0).collect();
    ds.data = (0..90)
        .flat_map(|r| base[(r % 10) * dim..(r % 10 + 1) * dim].to_vec())
        .collect();
    let mut m = vec![true; 90];
    m[50..53].fill(false);
    m[7] = false;
    ds.mask = Some(m);
    check_exact(&qs, &ds, dim, Pairing::AllPairs, |x| x);
    check_exact(&qs, &ds, dim, Pairing::AllPairs, bf16::from_f32);
    ds.data.truncate(90 * dim);
    let dim2 = 32;
    let q2: Vec<f32> = (0..130 * dim2).map(|_| rng.below(5) as f32 - 2.0).collect();
    let d2: Vec<f32> = (0..90 * dim2).map(|_| rng.below(3) as f32 - 1.0).collect();
    let qs2 = Sets {
        data: q2,
        offsets: qs.offsets.clone(),
        mask: None,
    };
    let ds2 = Sets {
        data: d2,
        offsets: ds.offsets.clone(),
        mask: ds.mask.clone(),
    };
    check_exact(&qs2, &ds2, dim2, Pairing::AllPairs, bf16::from_f32);
    check_exact(&qs2, &ds2, dim2, Pairing::AllPairs, f16::from_f32);
}

#[test]
fn infinities_follow_the_reference_first_row_rule() {
    // A row whose scores are all −∞ still becomes the argmax when it is the first valid row.
    let dim = 2;
    let q = [1.0f32, 0.0, 1.0, 0.0];
    let d = [f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY, 0.0];
    let qt = TokenSets::new("queries", &q, dim, &[0, 2], None).unwrap();
    let dt = TokenSets::new("documents", &d, dim, &[0, 2], None).unwrap();
    let want = reference::forward(&qt, &dt, Pairing::AllPairs, ALL).unwrap();
    for isa in simd::available() {
        let got = forward_with(isa, &qt, &dt, Pairing::AllPairs, ALL).unwrap();
        assert_eq!(want.q2d, got.q2d, "{}", isa.name());
        assert_eq!(want.q2d_argmax, got.q2d_argmax, "{}", isa.name());
        assert_eq!(want.d2q_argmax, got.d2q_argmax, "{}", isa.name());
    }
}

#[test]
fn backward_rejects_out_of_range_argmax() {
    let q = [1.0f32; 4];
    let d = [1.0f32; 6];
    let qt = TokenSets::new("queries", &q, 2, &[0, 2], None).unwrap();
    let dt = TokenSets::new("documents", &d, 2, &[0, 3], None).unwrap();
    let g = [1.0f32];
    let bad = [0, 3];
    let err = backward(
        &qt,
        &dt,
        Pairing::AllPairs,
        Some(DirectionGrad {
            grad: &g,
            argmax: &bad,
        }),
        None,
    );
    assert!(err.unwrap_err().to_string().contains("q2d_argmax"));
}

/// Throughput of each kernel variant on cache-resident data (`cargo test --release -p
/// mlvec-core -- --ignored --nocapture variant_throughput`); prints, asserts nothing.
#[test]
#[ignore]
fn variant_throughput() {
    let (dim, lq, ld, nd) = (128, 32, 300, 8);
    let mut rng = Rng(3);
    let q: Vec<f32> = (0..lq * dim).map(|_| rng.unit()).collect();
    let d: Vec<f32> = (0..nd * ld * dim).map(|_| rng.unit()).collect();
    let qo = [0, lq as i64];
    let d_o: Vec<i64> = (0..=nd).map(|i| (i * ld) as i64).collect();
    let flops = (2 * lq * ld * nd * dim) as f64;
    fn time(f: impl Fn()) -> f64 {
        let mut ts: Vec<f64> = (0..40)
            .map(|_| {
                let t = std::time::Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect();
        ts.sort_by(|a, b| a.partial_cmp(b).unwrap());
        ts[ts.len() / 4]
    }
    crate::threads::set_num_threads(1).unwrap();
    let qb: Vec<bf16> = q.iter().map(|&x| bf16::from_f32(x)).collect();
    let db: Vec<bf16> = d.iter().map(|&x| bf16::from_f32(x)).collect();
    let filip = Outputs {
        d2q: true,
        ..Outputs::default()
    };
    let checked = Outputs {
        check_finite: true,
        ..Outputs::default()
    };
    for isa in simd::available() {
        let qt = TokenSets::new("q", &q, dim, &qo, None).unwrap();
        let dt = TokenSets::new("d", &d, dim, &d_o, None).unwrap();
        let t = time(|| {
            forward_with(isa, &qt, &dt, Pairing::AllPairs, Outputs::default()).unwrap();
        });
        let tf = time(|| {
            forward_with(isa, &qt, &dt, Pairing::AllPairs, filip).unwrap();
        });
        let tc = time(|| {
            forward_with(isa, &qt, &dt, Pairing::AllPairs, checked).unwrap();
        });
        let qt = TokenSets::new("q", &qb, dim, &qo, None).unwrap();
        let dt = TokenSets::new("d", &db, dim, &d_o, None).unwrap();
        let tb = time(|| {
            forward_with(isa, &qt, &dt, Pairing::AllPairs, Outputs::default()).unwrap();
        });
        println!(
            "{:12} f32 {:6.1} GFLOP/s (FILIP {:5.2}x the time, check_finite {:5.2}x)   bf16 {:6.1} GFLOP/s",
            isa.name(),
            flops / t / 1e9,
            tf / t,
            tc / t,
            flops / tb / 1e9
        );
    }
}

/// The d→q lane reduction alone: each variant's [`simd::row_argmax`] against the scalar one on
/// the same tiles (`cargo test --release -p mlvec-core -- --ignored --nocapture row_argmax_throughput`).
#[test]
#[ignore]
fn row_argmax_throughput() {
    let mut rng = Rng(9);
    let tiles: Vec<Box<[f32; simd::TILE]>> = (0..256)
        .map(|_| Box::new(std::array::from_fn(|_| rng.unit())))
        .collect();
    for isa in simd::available() {
        let (mr, w) = (isa.rows(), isa.lanes());
        let run = |scalar: bool| {
            let t = std::time::Instant::now();
            let mut sink = 0usize;
            for _ in 0..2000 {
                for tile in &tiles {
                    let mut out = [0usize; simd::MR_MAX];
                    if scalar {
                        simd::portable::row_argmax(tile, w, mr, w, &mut out);
                    } else {
                        simd::row_argmax(isa, tile, mr, w, &mut out);
                    }
                    sink = sink.wrapping_add(std::hint::black_box(out)[0]);
                }
            }
            std::hint::black_box(sink);
            t.elapsed().as_secs_f64()
        };
        let (ts, tv) = (run(true), run(false));
        println!(
            "{:12} scalar {:.3} s, {} {:.3} s: {:.1}x",
            isa.name(),
            ts,
            isa.name(),
            tv,
            ts / tv
        );
    }
}

/// Documents/s of one 32x128 query against 1,000 documents of 300 tokens streamed from memory
/// (`cargo test --release -p mlvec-core -- --ignored --nocapture streaming_throughput`).
#[test]
#[ignore]
fn streaming_throughput() {
    let (dim, lq, ld, nd) = (128, 32, 300, 1000);
    let mut rng = Rng(5);
    let q: Vec<f32> = (0..lq * dim).map(|_| rng.unit()).collect();
    let d: Vec<f32> = (0..nd * ld * dim).map(|_| rng.unit()).collect();
    let db: Vec<bf16> = d.iter().map(|&x| bf16::from_f32(x)).collect();
    let qb: Vec<bf16> = q.iter().map(|&x| bf16::from_f32(x)).collect();
    let qo = [0, lq as i64];
    let d_o: Vec<i64> = (0..=nd).map(|i| (i * ld) as i64).collect();
    let (mut t32, mut t16) = (Vec::new(), Vec::new());
    for _ in 0..9 {
        let qt = TokenSets::new("q", &q, dim, &qo, None).unwrap();
        let dt = TokenSets::new("d", &d, dim, &d_o, None).unwrap();
        let t = std::time::Instant::now();
        forward(&qt, &dt, Pairing::AllPairs, Outputs::default()).unwrap();
        t32.push(t.elapsed().as_secs_f64());
        let qt = TokenSets::new("q", &qb, dim, &qo, None).unwrap();
        let dt = TokenSets::new("d", &db, dim, &d_o, None).unwrap();
        let t = std::time::Instant::now();
        forward(&qt, &dt, Pairing::AllPairs, Outputs::default()).unwrap();
        t16.push(t.elapsed().as_secs_f64());
    }
    t32.sort_by(|a, b| a.partial_cmp(b).unwrap());
    t16.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let (a, b) = (t32[4], t16[4]);
    println!(
        "fp32 {:.0} docs/s ({:.1} GB/s)   bf16 {:.0} docs/s ({:.1} GB/s)",
        nd as f64 / a,
        (d.len() * 4) as f64 / a / 1e9,
        nd as f64 / b,
        (d.len() * 2) as f64 / b / 1e9
    );
}

/// Put NaN / ±inf into a few rows of `s` (valid or masked, inside sets or not).
fn poison(rng: &mut Rng, s: &mut Sets) {
    if s.data.is_empty() {
        return;
    }
    for _ in 0..rng.below(3) {
        let i = rng.below(s.data.len());
        s.data[i] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][rng.below(3)];
    }
}

/// Non-finite inputs: without the check every variant gives the reference's numbers (NaN and
/// ±inf propagate the same way, the d→q lane reduction skips NaN like the scalar one); with
/// it every variant fails exactly when the reference does, with the same message.
fn check_nonfinite<T: Element>(
    qs: &Sets,
    ds: &Sets,
    dim: usize,
    pairing: Pairing,
    f: impl Fn(f32) -> T + Copy,
) {
    check_exact(qs, ds, dim, pairing, f);
    let (qd, dd) = (convert(&qs.data, f), convert(&ds.data, f));
    let q = TokenSets::new("queries", &qd, dim, &qs.offsets, qs.mask.as_deref()).unwrap();
    let d = TokenSets::new("documents", &dd, dim, &ds.offsets, ds.mask.as_deref()).unwrap();
    let want_out = Outputs {
        check_finite: true,
        ..ALL
    };
    let want = reference::forward(&q, &d, pairing, want_out).map_err(|e| e.to_string());
    for isa in simd::available() {
        for w in [
            want_out,
            Outputs {
                check_finite: true,
                ..Outputs::default()
            },
        ] {
            let got = forward_with(isa, &q, &d, pairing, w).map_err(|e| e.to_string());
            match (&want, &got) {
                (Err(a), Err(b)) => assert_eq!(a, b, "{} {}", isa.name(), T::NAME),
                (Ok(_), Ok(_)) => {}
                _ => panic!(
                    "{} {}: reference {want:?}, kernel {:?}",
                    isa.name(),
                    T::NAME,
                    got.map(|_| ())
                ),
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn non_finite_inputs(seed in any::<u64>()) {
        let (mut qs, mut ds, dim) = case(seed, true);
        let mut rng = Rng(seed.rotate_left(17) | 1);
        poison(&mut rng, &mut qs);
        poison(&mut rng, &mut ds);
        check_nonfinite(&qs, &ds, dim, Pairing::AllPairs, |x| x);
        check_nonfinite(&qs, &ds, dim, Pairing::AllPairs, f16::from_f32);
        check_nonfinite(&qs, &ds, dim, Pairing::AllPairs, bf16::from_f32);
        let (mut qs, mut ds, dim) = paired_case(seed, true);
        poison(&mut rng, &mut qs);
        poison(&mut rng, &mut ds);
        check_nonfinite(&qs, &ds, dim, Pairing::Paired, |x| x);
        check_nonfinite(&qs, &ds, dim, Pairing::Paired, bf16::from_f32);
    }
}

/// A bad row in a set that no pair reads (no sets on the other side) is still reported, with
/// its set; a bad masked row is not.
#[test]
fn check_finite_without_pairs_and_in_masked_rows() {
    let dim = 3;
    let mut data = vec![1.0f32; 5 * dim];
    data[3 * dim + 1] = f32::NAN;
    let q = TokenSets::new("queries", &data, dim, &[0, 2, 2, 5], None).unwrap();
    let empty: [f32; 0] = [];
    let d = TokenSets::new("documents", &empty, dim, &[0], None).unwrap();
    let want = Outputs {
        check_finite: true,
        ..Outputs::default()
    };
    for isa in simd::available() {
        let e = forward_with(isa, &q, &d, Pairing::AllPairs, want)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "queries: token row 3 (packed) holds NaN or inf, in set 2");
        let e = forward_with(isa, &d, &q, Pairing::AllPairs, want)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "documents: token row 3 (packed) holds NaN or inf, in set 2");
        let mask = [true, true, true, false, true];
        let qm = TokenSets::new("queries", &data, dim, &[0, 2, 2, 5], Some(&mask)).unwrap();
        assert!(forward_with(isa, &qm, &d, Pairing::AllPairs, want).is_ok());
        let one = TokenSets::new("documents", &data[..dim], dim, &[0, 1], None).unwrap();
        assert!(forward_with(isa, &qm, &one, Pairing::AllPairs, want).is_ok());
        let e = forward_with(isa, &q, &one, Pairing::AllPairs, want)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("queries: token row 3"), "{e}");
    }
}

/// Throughput of each kernel variant streaming documents from memory: one 32-token query
/// against 1,000 documents of 300 tokens (154 MB in fp32, far more than the caches), on the
/// default pool, next to the read bandwidth of a plain parallel pass over the same bytes
/// (`cargo test --release -p mlvec-core -- --ignored --nocapture variant_streaming`); prints,
/// asserts nothing.
#[test]
#[ignore]
fn variant_streaming() {
    let (dim, lq, ld, nd) = (128, 32, 300, 1000);
    let mut rng = Rng(5);
    let q: Vec<f32> = (0..lq * dim).map(|_| rng.unit()).collect();
    let d: Vec<f32> = (0..nd * ld * dim).map(|_| rng.unit()).collect();
    let qb: Vec<bf16> = q.iter().map(|&x| bf16::from_f32(x)).collect();
    let db: Vec<bf16> = d.iter().map(|&x| bf16::from_f32(x)).collect();
    let qo = [0, lq as i64];
    let d_o: Vec<i64> = (0..=nd).map(|i| (i * ld) as i64).collect();
    let bits: Vec<u32> = d.iter().map(|x| x.to_bits()).collect();
    let (qt, dt) = (
        TokenSets::new("q", &q, dim, &qo, None).unwrap(),
        TokenSets::new("d", &d, dim, &d_o, None).unwrap(),
    );
    let (qbt, dbt) = (
        TokenSets::new("q", &qb, dim, &qo, None).unwrap(),
        TokenSets::new("d", &db, dim, &d_o, None).unwrap(),
    );
    let isas = simd::available();
    // Round-robin: the read pass, then each variant on fp32 and on bf16; medians.
    let mut runs: Vec<Box<dyn Fn()>> = vec![Box::new(|| {
        let x = crate::threads::install(|| {
            bits.par_chunks(1 << 16)
                .map(|c| c.iter().fold(0u32, |a, &x| a ^ x))
                .reduce(|| 0, |a, b| a ^ b)
        });
        std::hint::black_box(x);
    })];
    for &isa in &isas {
        let (qt, dt, qbt, dbt) = (&qt, &dt, &qbt, &dbt);
        runs.push(Box::new(move || {
            forward_with(isa, qt, dt, Pairing::AllPairs, Outputs::default()).unwrap();
        }));
        runs.push(Box::new(move || {
            forward_with(isa, qbt, dbt, Pairing::AllPairs, Outputs::default()).unwrap();
        }));
    }
    let mut times = vec![Vec::new(); runs.len()];
    for rep in 0..12 {
        for (f, ts) in runs.iter().zip(&mut times) {
            let t = std::time::Instant::now();
            f();
            if rep > 0 {
                ts.push(t.elapsed().as_secs_f64());
            }
        }
    }
    let med: Vec<f64> = times
        .into_iter()
        .map(|mut v| {
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v[v.len() / 2]
        })
        .collect();
    let gb = (d.len() * 4) as f64 / 1e9;
    println!(
        "{} threads, plain read pass {:.1} GB/s",
        crate::threads::num_threads(),
        gb / med[0]
    );
    for (i, isa) in isas.iter().enumerate() {
        let (t32, t16) = (med[1 + 2 * i], med[2 + 2 * i]);
        println!(
            "{:12} f32 {:7.0} docs/s ({:4.1} GB/s)   bf16 {:7.0} docs/s ({:4.1} GB/s, {:.2}x f32)",
            isa.name(),
            nd as f64 / t32,
            gb / t32,
            nd as f64 / t16,
            gb / 2.0 / t16,
            t32 / t16
        );
    }
}

/// The arithmetic ceiling behind the bf16/fp32 ratio: one thread's peak fp32 FMA rate
/// (`vfmadd` on 512-bit registers) and peak `vdpbf16ps` rate (bf16 pairs, fp32 accumulation),
/// 12 independent accumulators each, no memory traffic, and the documents per second they
/// allow for the benchmark's case (one 32-token query against 300-token documents, d=128) on
/// all threads (`cargo test --release -p mlvec-core -- --ignored --nocapture arithmetic_peak`).
/// A bf16 document costs the same multiply-adds as an fp32 one (widened to fp32, or in pairs at
/// the `vdpbf16ps` rate), so once fp32 documents stream at the memory's speed, bf16 ones can be
/// faster only up to this ceiling, whatever the bytes saved. Prints, asserts nothing.
#[cfg(target_arch = "x86_64")]
#[test]
#[ignore]
fn arithmetic_peak() {
    use core::arch::x86_64::*;
    const ACC: usize = 12;
    const ITERS: usize = 20_000_000;

    /// Keep the accumulators in registers yet opaque to the optimiser (no memory round trip).
    #[target_feature(enable = "avx512f")]
    fn opaque(acc: &mut [__m512; ACC]) {
        for a in acc.iter_mut() {
            // SAFETY: an empty asm block that only claims to read and write the register.
            unsafe {
                core::arch::asm!(
                    "/* {0} */",
                    inout(zmm_reg) * a,
                    options(nomem, nostack, preserves_flags)
                )
            };
        }
    }

    /// A function timing `ITERS` rounds of `$op` on every accumulator; returns GFLOP/s given
    /// the flops one `$op` does per fp32 lane.
    macro_rules! peak_fn {
        ($name:ident, $features:literal, $flops_per_lane:expr, |$a:ident| $op:expr) => {
            #[target_feature(enable = $features)]
            fn $name() -> f64 {
                let mut acc = [_mm512_set1_ps(1e-9); ACC];
                let t = std::time::Instant::now();
                for _ in 0..ITERS {
                    for $a in acc.iter_mut() {
                        *$a = $op;
                    }
                    opaque(&mut acc);
                }
                let s = t.elapsed().as_secs_f64();
                std::hint::black_box(acc);
                (ITERS * ACC * 16 * $flops_per_lane) as f64 / s / 1e9
            }
        };
    }
    peak_fn!(fma_peak, "avx512f", 2, |a| _mm512_fmadd_ps(
        *a,
        _mm512_set1_ps(1.000_000_1),
        _mm512_set1_ps(0.999_999_9)
    ));
    // SAFETY (transmute): __m512i and __m512bh are both 64 plain bytes.
    peak_fn!(dpbf16_peak, "avx512f,avx512bf16", 4, |a| {
        let x = unsafe { core::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(0x3f80_3f80)) };
        _mm512_dpbf16_ps(*a, x, x)
    });

    if !(crate::cpu::detected().avx512f && crate::cpu::detected().avx512bf16) {
        println!("this CPU lacks AVX-512F or AVX-512 BF16: nothing to measure");
        return;
    }
    let median = |f: &dyn Fn() -> f64| {
        let mut v: Vec<f64> = (0..5).map(|_| f()).collect();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[2]
    };
    // SAFETY: the features were checked above.
    let fma = median(&|| unsafe { fma_peak() });
    let dp = median(&|| unsafe { dpbf16_peak() });
    println!(
        "one thread: fp32 FMA {fma:.1} GFLOP/s, vdpbf16ps {dp:.1} GFLOP/s ({:.2}x)",
        dp / fma
    );
    let threads = crate::threads::num_threads() as f64;
    let per_doc = (2 * 32 * 300 * 128) as f64;
    println!(
        "{threads} threads at the FMA peak: at most {:.0} docs/s (1 x 32 query tokens, 300-token documents, d=128)",
        threads * fma * 1e9 / per_doc
    );
}
