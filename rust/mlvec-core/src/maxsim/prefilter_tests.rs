//! The bfloat16 pre-filter against fp64 dot products and against scoring every pair.
//!
//! The filter scores its surviving pairs with its own fp32 order of additions, so it is held to
//! what any fp32 accumulation guarantees: each query token's reported argmax is a document row
//! whose fp64 score is within the fp32 rounding bound of the true maximum (and is the true one
//! when the maximum is unique by more than that), the first of identical rows, and the sum is
//! that of the fp64 scores of the reported rows within the same bound. Inputs it must not
//! filter (out of range, inf/NaN) give exactly what scoring every pair gives. These hold for
//! scoring every pair too, so the tests run on every CPU; on one without the filter they check
//! the fp32 kernel alone.

use super::tests::Rng;
use super::*;
use half::bf16;

const Q2D_ARG: Outputs = Outputs {
    q2d_argmax: true,
    d2q: false,
    d2q_argmax: false,
    check_finite: false,
};

/// Roughly normal values (a sum of uniforms), rounded to bfloat16.
fn normal(rng: &mut Rng) -> f32 {
    bf16::from_f32((0..4).map(|_| rng.unit()).sum::<f32>()).to_f32()
}

/// A query of `lq` rows and `rows` document rows of bfloat16 values (the documents as bits).
fn random_bf16(rng: &mut Rng, dim: usize, lq: usize, rows: usize) -> (Vec<f32>, Vec<u16>) {
    let q = (0..lq * dim).map(|_| normal(rng)).collect();
    let bits = (0..rows * dim)
        .map(|_| bf16::from_f32(normal(rng)).to_bits())
        .collect();
    (q, bits)
}

fn to_bf16(xs: &[f32]) -> Vec<bf16> {
    xs.iter().map(|&x| bf16::from_f32(x)).collect()
}

/// `bits` as bfloat16 values.
fn as_bf16(bits: &[u16]) -> &[bf16] {
    // SAFETY: bf16 is a transparent wrapper of its u16 bits.
    unsafe { std::slice::from_raw_parts(bits.as_ptr().cast(), bits.len()) }
}

/// `len` values repeating `bits`, one low bit flipped in every other copy, so a stream of
/// documents longer than the caches shares no cache line with another copy.
fn distinct_copies(bits: &[u16], len: usize) -> Vec<u16> {
    (0..len)
        .map(|i| bits[i % bits.len()] ^ ((i / bits.len()) as u16 & 1))
        .collect()
}

/// Median of measurements.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// The filter set up for one query of `lq` rows against documents of `ld` rows, all valid.
struct Filter {
    qi: prefilter::QueryInts,
    lq: usize,
    valid: Vec<i32>,
    sc: prefilter::Scratch,
    qmax: Vec<f32>,
    qarg: Vec<i32>,
}

impl Filter {
    fn new(q: &[f32], lq: usize, ld: usize, dim: usize) -> Self {
        Filter {
            qi: prefilter::pack_query(q, lq, dim).unwrap(),
            lq,
            valid: (0..ld as i32).collect(),
            sc: prefilter::Scratch::default(),
            qmax: vec![0.0; lq],
            qarg: vec![0; lq],
        }
    }

    /// Filter the document starting at row `first` of `bits`; whether the filter took it.
    fn score(&mut self, bits: &[u16], first: usize) -> bool {
        prefilter::score(
            &self.qi,
            self.lq,
            bits,
            first,
            &self.valid,
            &mut self.sc,
            &mut self.qmax,
            Some(&mut self.qarg),
        )
    }
}

fn dot64(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

fn norm64(a: &[f32]) -> f64 {
    dot64(a, a).sqrt()
}

/// One query set (all rows valid) and documents (`offsets`, optional mask), values already
/// exact in bfloat16.
struct Case {
    dim: usize,
    q: Vec<f32>,
    docs: Vec<f32>,
    offsets: Vec<i64>,
    mask: Option<Vec<bool>>,
}

impl Case {
    fn valid_rows(&self, i: usize) -> Vec<usize> {
        (self.offsets[i] as usize..self.offsets[i + 1] as usize)
            .filter(|&r| self.mask.as_ref().is_none_or(|m| m[r]))
            .collect()
    }
}

/// Score `c` with and without the filter (one query against all documents, and the query
/// repeated and paired with each document) and hold the filtered result to fp64.
fn check(c: &Case) {
    let dim = c.dim;
    let lq = c.q.len() / dim;
    let nd = c.offsets.len() - 1;
    let (qb, db) = (to_bf16(&c.q), to_bf16(&c.docs));
    let d = TokenSets::new("documents", &db, dim, &c.offsets, c.mask.as_deref()).unwrap();
    let q_one = TokenSets::new("queries", &qb, dim, &[0, lq as i64], None).unwrap();
    let q_rep: Vec<bf16> = (0..nd).flat_map(|_| qb.iter().copied()).collect();
    let rep_offsets: Vec<i64> = (0..=nd).map(|i| (i * lq) as i64).collect();
    let q_paired = TokenSets::new("queries", &q_rep, dim, &rep_offsets, None).unwrap();
    let isa = simd::detect();
    for (q, pairing) in [(&q_one, Pairing::AllPairs), (&q_paired, Pairing::Paired)] {
        let got = forward_with(isa, q, &d, pairing, Q2D_ARG).unwrap();
        let full = forward_unfiltered(isa, q, &d, pairing, Q2D_ARG).unwrap();
        let (ga, fa) = (
            got.q2d_argmax.as_ref().unwrap(),
            full.q2d_argmax.as_ref().unwrap(),
        );
        for di in 0..nd {
            let rows = c.valid_rows(di);
            let ctx = format!("{pairing:?} dim {dim} lq {lq} doc {di} ({} rows)", rows.len());
            let arg = &ga[di * lq..(di + 1) * lq];
            if rows.is_empty() || lq == 0 {
                assert!(
                    got.q2d[di] == full.q2d[di] && arg == &fa[di * lq..(di + 1) * lq],
                    "{ctx}"
                );
                continue;
            }
            let dmax = rows
                .iter()
                .map(|&r| norm64(&c.docs[r * dim..(r + 1) * dim]))
                .fold(0.0, f64::max);
            let (mut sum64, mut slack) = (0f64, 0f64);
            for (i, &a) in arg.iter().enumerate() {
                let qi = &c.q[i * dim..(i + 1) * dim];
                let scores: Vec<f64> = rows
                    .iter()
                    .map(|&r| dot64(qi, &c.docs[r * dim..(r + 1) * dim]))
                    .collect();
                let best = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                // Two fp32 accumulations (the filter's and any other) each within γ‖q‖‖d‖.
                let tol = 2.0 * (dim + 2) as f64 * 2f64.powi(-24) * norm64(qi) * dmax;
                let pos = rows
                    .iter()
                    .position(|&r| r as i64 - c.offsets[di] == a as i64)
                    .unwrap_or_else(|| panic!("{ctx}: token {i} argmax {a} is not a valid row"));
                assert!(
                    scores[pos] >= best - tol,
                    "{ctx}: token {i} took row {a} scoring {} but the best is {best} (tol {tol})",
                    scores[pos]
                );
                let second = scores
                    .iter()
                    .enumerate()
                    .filter(|&(k, _)| k != scores.iter().position(|&s| s == best).unwrap())
                    .map(|(_, &s)| s)
                    .fold(f64::NEG_INFINITY, f64::max);
                if best - second > 2.0 * tol {
                    assert_eq!(scores[pos], best, "{ctx}: token {i} missed the unique maximum");
                }
                // The first of identical rows: no earlier valid row has the same values.
                let row = &c.docs[rows[pos] * dim..(rows[pos] + 1) * dim];
                assert!(
                    rows[..pos]
                        .iter()
                        .all(|&r| &c.docs[r * dim..(r + 1) * dim] != row),
                    "{ctx}: token {i} took a later copy of a row"
                );
                sum64 += scores[pos];
                slack += tol;
            }
            let g = got.q2d[di] as f64;
            assert!(
                (g - sum64).abs() <= slack + 1e-6 * sum64.abs(),
                "{ctx}: q2d {g} vs fp64 sum of the chosen rows {sum64}"
            );
            let f = full.q2d[di] as f64;
            assert!(
                (g - f).abs() <= 2.0 * slack + 2e-6 * f.abs(),
                "{ctx}: q2d {g} vs every pair {f}"
            );
        }
    }
}

/// Documents of the given lengths (rows from `row`), every fourth row masked when `masked`.
fn case(
    rng: &mut Rng,
    dim: usize,
    lq: usize,
    lens: &[usize],
    masked: bool,
    row: impl Fn(&mut Rng, usize) -> Vec<f32>,
) -> Case {
    let q: Vec<f32> = (0..lq * dim).map(|_| normal(rng)).collect();
    let mut offsets = vec![0i64];
    let mut docs = Vec::new();
    for &n in lens {
        for j in 0..n {
            docs.extend(row(rng, j));
        }
        offsets.push(offsets.last().unwrap() + n as i64);
    }
    let rows = docs.len() / dim;
    let mask = masked.then(|| (0..rows).map(|_| rng.below(4) != 0).collect());
    Case {
        dim,
        q,
        docs,
        offsets,
        mask,
    }
}

#[test]
fn random_documents_keep_their_maxima() {
    let mut rng = Rng(11);
    for &(dim, lq) in &[
        (128, 32),
        (96, 5),
        (130, 33),
        (2, 1),
        (64, 70),
        (512, 8),
        (513, 4),
        (24, 17),
    ] {
        let lens = [0, 1, 15, 16, 17, 40, 301];
        for masked in [false, true] {
            let c = case(&mut rng, dim, lq, &lens, masked, |rng, _| {
                (0..dim).map(|_| normal(rng)).collect()
            });
            check(&c);
        }
    }
}

/// Rows that differ from one vector in a few coordinates: every pair of rows scores close to
/// the others, inside the int8 error or near it, so many rows stay in play and the fp32 scores
/// decide. With the bound scaled down (to 0.3 of itself), the true maximum is dropped and this
/// fails.
#[test]
fn near_ties_keep_their_maxima() {
    let mut rng = Rng(12);
    // Changes of 1/32, 1/8 and 1/2 put the gaps below, at and above the bound's size.
    // A large value in every eighth row coarsens the grid of the rows sharing its tile, so
    // their quantization errors come near the bound.
    for (dim, step, outlier) in [
        (128, 32.0f32, 1.0f32),
        (64, 32.0, 1.0),
        (40, 32.0, 1.0),
        (128, 8.0, 1.0),
        (128, 2.0, 1.0),
        (96, 8.0, 1.0),
        (128, 32.0, 40.0),
        (128, 8.0, 40.0),
        (64, 2.0, 40.0),
    ] {
        let base: Vec<f32> = (0..dim).map(|_| normal(&mut rng)).collect();
        let c = case(&mut rng, dim, 32, &[64, 200, 33, 300], false, |rng, j| {
            let mut r = base.clone();
            if j % 8 == 7 {
                let k = rng.below(dim);
                r[k] = bf16::from_f32(r[k].signum() * outlier * 4.0).to_f32();
            }
            for _ in 0..3 {
                let k = rng.below(dim);
                let f = if rng.below(2) == 0 {
                    1.0 + 1.0 / step
                } else {
                    1.0 - 1.0 / step
                };
                r[k] = bf16::from_f32(r[k] * f).to_f32();
            }
            r
        });
        check(&c);
    }
}

/// Exact copies of rows later in the document: the first copy is the argmax.
#[test]
fn copies_resolve_to_the_first() {
    let mut rng = Rng(13);
    let dim = 128;
    let pool: Vec<Vec<f32>> = (0..6)
        .map(|_| (0..dim).map(|_| normal(&mut rng)).collect())
        .collect();
    let c = case(&mut rng, dim, 32, &[48, 100], true, |rng, _| {
        pool[rng.below(pool.len())].clone()
    });
    check(&c);
}

/// Rows and query tokens of very different sizes in one tile, zero rows and tokens, and
/// subnormal values: the shared tile scale and the per-token scales must still bound every
/// error.
#[test]
fn mixed_scales_and_zeros_keep_their_maxima() {
    let mut rng = Rng(14);
    let dim = 128;
    let scales = [1.0f32, 1e-3, 1e3, 0.0, 1e-38, 3e-7];
    let mut c = case(&mut rng, dim, 32, &[80, 64], false, |rng, _| {
        let s = scales[rng.below(scales.len())];
        (0..dim)
            .map(|_| bf16::from_f32(normal(rng) * s).to_f32())
            .collect()
    });
    for i in [3, 9] {
        c.q[i * dim..(i + 1) * dim].fill(0.0);
    }
    for v in &mut c.q[20 * dim..21 * dim] {
        *v = bf16::from_f32(*v * 1e-4).to_f32();
    }
    check(&c);
}

/// Values the bounds do not cover (out of range, inf, NaN): scored in full, bit for bit.
#[test]
fn out_of_range_inputs_are_scored_in_full() {
    let mut rng = Rng(15);
    let dim = 64;
    for bad in [1e20f32, 1e-20, f32::INFINITY, f32::NAN] {
        for in_query in [false, true] {
            let mut c = case(&mut rng, dim, 8, &[40, 40], false, |rng, _| {
                (0..dim).map(|_| normal(rng)).collect()
            });
            if in_query {
                c.q[dim + 3] = bad;
            } else if bad == 1e-20 {
                // A whole tile that small (one element alone would only round to zero).
                c.docs[8 * dim..16 * dim].iter_mut().for_each(|v| *v *= 1e-20);
            } else {
                c.docs[10 * dim + 5] = bad;
            }
            let (qb, db) = (to_bf16(&c.q), to_bf16(&c.docs));
            let d = TokenSets::new("documents", &db, dim, &c.offsets, None).unwrap();
            let q = TokenSets::new("queries", &qb, dim, &[0, 8], None).unwrap();
            let isa = simd::detect();
            let got = forward_with(isa, &q, &d, Pairing::AllPairs, Q2D_ARG).unwrap();
            let full = forward_unfiltered(isa, &q, &d, Pairing::AllPairs, Q2D_ARG).unwrap();
            // A bad query is never filtered; a bad document alone (the other one may be).
            let n = if in_query { 2 } else { 1 };
            let (ga, fa) = (got.q2d_argmax.unwrap(), full.q2d_argmax.unwrap());
            assert!(
                super::tests::same_bits(&got.q2d[..n], &full.q2d[..n]),
                "{bad} in query {in_query}"
            );
            assert_eq!(ga[..8 * n], fa[..8 * n], "{bad} in query {in_query}");
        }
    }
}

/// On random documents the filter scores a small share of the pairs (else it would be slower
/// than scoring them all).
#[test]
fn random_documents_are_mostly_pruned() {
    if !prefilter::available() {
        // Only a CPU without AVX-512 BW/VL/VNNI has no filter to measure.
        let f = crate::cpu::detected();
        assert!(!(f.avx512f && f.avx512bw && f.avx512vl && f.avx512vnni));
        return;
    }
    let (dim, lq, ld, nd) = (128, 32, 300, 20);
    let (q, bits) = random_bf16(&mut Rng(16), dim, lq, nd * ld);
    let mut f = Filter::new(&q, lq, ld, dim);
    for di in 0..nd {
        assert!(f.score(&bits, di * ld));
    }
    let share = f.sc.scored as f64 / (nd * ld * lq) as f64;
    assert!(
        share > 0.0 && share < 0.1,
        "{:.1}% of the pairs scored",
        100.0 * share
    );
}

/// The bound where Cauchy–Schwarz is tight: quantization errors all aligned with the query.
/// Row 0 (`1.484375` in every scored coordinate) rounds to 1 everywhere, losing 61.52 of its
/// true score 188.52; row 1 (exact integers) scores 188 and loses nothing. The integer scores
/// put row 1 ahead by 61, so row 0 survives only if `ε ≥ 30.5`; the bound gives ≈ 64 (the
/// error itself is 61.52). Scaled below half, the filter would report row 1.
#[test]
fn aligned_errors_meet_the_bound() {
    let dim = 128;
    let mut q = vec![1f32; dim];
    q[0] = 0.0; // coordinate 0 holds each row's 127, which fixes the tile's scale at 1
    let mut docs = vec![0f32; 16 * dim];
    for r in 0..16 {
        docs[r * dim] = 127.0;
    }
    docs[1..dim].fill(1.484375);
    for k in 1..dim {
        docs[dim + k] = if k <= 61 { 2.0 } else { 1.0 };
    }
    let c = Case {
        dim,
        q: q.clone(),
        docs: docs.clone(),
        offsets: vec![0, 16],
        mask: None,
    };
    let (qb, db) = (to_bf16(&q), to_bf16(&docs));
    assert!(
        qb.iter().zip(&q).all(|(b, &x)| b.to_f32() == x)
            && db.iter().zip(&docs).all(|(b, &x)| b.to_f32() == x)
    );
    let qs = TokenSets::new("queries", &qb, dim, &[0, 1], None).unwrap();
    let ds = TokenSets::new("documents", &db, dim, &c.offsets, None).unwrap();
    let got = forward_with(simd::detect(), &qs, &ds, Pairing::AllPairs, Q2D_ARG).unwrap();
    assert_eq!(got.q2d_argmax.unwrap(), vec![0]);
    assert_eq!(got.q2d, vec![127.0 * 1.484375]);
    check(&c);
}

/// The bfloat16 pre-filter's own cost: cache-resident on one thread (4 documents of 300 rows,
/// d=128, against a 32-token query, scored over and over: pairs scored in fp32 and ns per
/// document, median of 7 rounds); the same streamed from memory (8,000 documents) on one
/// thread; and through `forward` on every thread, with and without the filter, alternating
/// (`cargo test --release -p mlvec-core -- --ignored --nocapture prefilter_throughput`).
/// Prints, asserts nothing.
#[test]
#[ignore]
fn prefilter_throughput() {
    if !prefilter::available() {
        println!("this CPU lacks AVX-512 BW/VL/VNNI: no pre-filter");
        return;
    }
    let (dim, lq, ld, nd) = (128, 32, 300, 4);
    let (q, bits) = random_bf16(&mut Rng(5), dim, lq, nd * ld);
    let mut f = Filter::new(&q, lq, ld, dim);
    let reps = 2000;
    let ns = median(
        (0..7)
            .map(|_| {
                let t = std::time::Instant::now();
                for rep in 0..reps {
                    f.score(&bits, rep % nd * ld);
                }
                t.elapsed().as_secs_f64() * 1e9 / reps as f64
            })
            .collect(),
    );
    println!(
        "{:.1} of {} pairs scored in fp32 per document; {ns:.0} ns per document",
        f.sc.scored as f64 / (7 * reps) as f64,
        lq * ld,
    );
    // The same documents streamed from memory: 8,000 of them (615 MB, past this machine's
    // 260 MiB last-level cache), and a plain read of the same bytes for comparison.
    let big = 8000;
    let stream = distinct_copies(&bits, big * ld * dim);
    let mut times = Vec::new();
    for _ in 0..3 {
        let t = std::time::Instant::now();
        for di in 0..big {
            f.score(&stream, di * ld);
        }
        let filt = t.elapsed().as_secs_f64() * 1e9 / big as f64;
        let t = std::time::Instant::now();
        let x = stream
            .chunks(1 << 12)
            .fold(0u16, |a, c| c.iter().fold(a, |a, &x| a ^ x));
        std::hint::black_box(x);
        let read = t.elapsed().as_secs_f64() * 1e9 / big as f64;
        times.push((filt, read));
    }
    for (f, r) in times {
        println!("streaming: {f:.0} ns per document; a plain read {r:.0} ns per document");
    }
    // And through `forward` on every thread, with and without the filter, alternating.
    let qb = to_bf16(&q);
    let db = as_bf16(&stream);
    let d_o: Vec<i64> = (0..=big).map(|i| (i * ld) as i64).collect();
    let qt = TokenSets::new("q", &qb, dim, &[0, lq as i64], None).unwrap();
    let dt = TokenSets::new("d", db, dim, &d_o, None).unwrap();
    let isa = simd::detect();
    let (mut tf, mut tu) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let t = std::time::Instant::now();
        forward_with(isa, &qt, &dt, Pairing::AllPairs, Outputs::default()).unwrap();
        tf.push(big as f64 / t.elapsed().as_secs_f64());
        let t = std::time::Instant::now();
        forward_unfiltered(isa, &qt, &dt, Pairing::AllPairs, Outputs::default()).unwrap();
        tu.push(big as f64 / t.elapsed().as_secs_f64());
    }
    println!(
        "{} threads, streaming: filtered {:.0} docs/s, every pair {:.0} docs/s (medians of 5)",
        crate::threads::num_threads(),
        median(tf),
        median(tu)
    );
}

/// With `check_finite`, a document the filter takes is checked by the filter's own read (no
/// separate scan): inf/NaN anywhere in its valid rows is still reported, naming the same first
/// bad row as the reference, and finite values the filter does not cover (1e20) are no error.
#[test]
fn check_finite_still_finds_every_bad_row() {
    let dim = 64;
    let mut rng = Rng(17);
    let check = Outputs {
        check_finite: true,
        ..Q2D_ARG
    };
    for (bad, at_row) in [
        (f32::NAN, 0),
        (f32::INFINITY, 17),
        (f32::NEG_INFINITY, 39),
        (f32::NAN, 63),
        (1e20, 30),
    ] {
        let mut c = case(&mut rng, dim, 8, &[40, 24, 50], false, |rng, _| {
            (0..dim).map(|_| normal(rng)).collect()
        });
        c.docs[at_row * dim + 7] = bad;
        // A NaN in a masked row is not an error.
        let mut mask = vec![true; c.docs.len() / dim];
        mask[5] = false;
        c.docs[5 * dim] = f32::NAN;
        let db = to_bf16(&c.docs);
        let d = TokenSets::new("documents", &db, dim, &c.offsets, Some(&mask)).unwrap();
        let qb = to_bf16(&c.q);
        let one = TokenSets::new("queries", &qb, dim, &[0, 8], None).unwrap();
        let rep: Vec<bf16> = (0..3).flat_map(|_| qb.iter().copied()).collect();
        let three = TokenSets::new("queries", &rep, dim, &[0, 8, 16, 24], None).unwrap();
        for (q, pairing) in [(&one, Pairing::AllPairs), (&three, Pairing::Paired)] {
            let want = reference::forward(q, &d, pairing, check)
                .map(|_| ())
                .map_err(|e| e.to_string());
            let got = forward_with(simd::detect(), q, &d, pairing, check)
                .map(|_| ())
                .map_err(|e| e.to_string());
            assert_eq!(got, want, "{bad} at row {at_row}, {pairing:?}");
            assert_eq!(want.is_err(), !bad.is_finite(), "{bad}");
        }
    }
}

/// bfloat16 against fp32 documents at a sustained rate: one 32-token query against 1,000
/// documents of 300 tokens (d = 128) per call, calls back to back over 8 distinct sets (1.2 GB
/// of fp32, 615 MB of bf16: past the last-level cache, so every call streams from memory),
/// all threads, alternating blocks of 8 calls after a pause; medians of 49 calls each
/// (`cargo test --release -p mlvec-core -- --ignored --nocapture bf16_vs_fp32_sustained`).
/// Prints, asserts nothing.
#[test]
#[ignore]
fn bf16_vs_fp32_sustained() {
    let (dim, lq, ld, nd, sets) = (128, 32, 300, 1000, 8);
    let (q, bits) = random_bf16(&mut Rng(5), dim, lq, 4 * ld);
    let all = distinct_copies(&bits, sets * nd * ld * dim);
    let all16 = as_bf16(&all);
    let all32: Vec<f32> = all16.iter().map(|x| x.to_f32()).collect();
    let qb = to_bf16(&q);
    let q32: Vec<f32> = qb.iter().map(|x| x.to_f32()).collect();
    let d_o: Vec<i64> = (0..=nd).map(|i| (i * ld) as i64).collect();
    let n = nd * ld * dim;
    let q16 = TokenSets::new("q", &qb, dim, &[0, lq as i64], None).unwrap();
    let q32 = TokenSets::new("q", &q32, dim, &[0, lq as i64], None).unwrap();
    let d16: Vec<_> = (0..sets)
        .map(|s| TokenSets::new("d", &all16[s * n..(s + 1) * n], dim, &d_o, None).unwrap())
        .collect();
    let d32: Vec<_> = (0..sets)
        .map(|s| TokenSets::new("d", &all32[s * n..(s + 1) * n], dim, &d_o, None).unwrap())
        .collect();
    let isa = simd::detect();
    let (mut r16, mut r32) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        for bf in [true, false] {
            std::thread::sleep(std::time::Duration::from_millis(50));
            for s in 0..sets {
                let t = std::time::Instant::now();
                if bf {
                    forward_with(isa, &q16, &d16[s], Pairing::AllPairs, Outputs::default()).unwrap();
                } else {
                    forward_with(isa, &q32, &d32[s], Pairing::AllPairs, Outputs::default()).unwrap();
                }
                // The first call of a block wakes the threads; the rest run back to back.
                if s > 0 {
                    let rate = nd as f64 / t.elapsed().as_secs_f64();
                    if bf {
                        r16.push(rate)
                    } else {
                        r32.push(rate)
                    }
                }
            }
        }
    }
    let (b, f) = (median(r16), median(r32));
    println!(
        "{} threads, sustained: bf16 {b:.0} docs/s ({:.1} GB/s), fp32 {f:.0} docs/s ({:.1} GB/s): bf16/fp32 {:.2}x",
        crate::threads::num_threads(),
        b * (ld * dim * 2) as f64 / 1e9,
        f * (ld * dim * 4) as f64 / 1e9,
        b / f
    );
}
