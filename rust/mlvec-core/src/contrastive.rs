//! Fused element-wise work on one logits tile of the tiled contrastive losses.
//!
//! The tiled losses compute a `n x m` block of logits `L = A_tile @ B_tile^T` (a GEMM) and then
//! need, per block, the row and column log-sum-exps (InfoNCE forward), the weight block
//! `exp(L - shift_r) + exp(L - shift_c)` (InfoNCE backward), `sum softplus(L)` (SigLIP forward)
//! or `sigmoid(L)` (SigLIP backward). Done as separate tensor operations that is several passes
//! over a block that does not fit in cache; here each is one pass over row chunks small enough to
//! stay in L2, with vectorised `exp`/`ln` and rayon over the chunks on [`crate::threads`].
//!
//! Every function adds `bias` to the logits first (and, where it says so, writes the result back
//! into the tile), so the caller's GEMM need not make another pass for it.

use crate::{Error, Result};
use rayon::prelude::*;

/// Lanes of the explicit accumulators: wide enough for AVX-512, so LLVM vectorises the loops.
const LANES: usize = 16;
/// Target size of one row chunk (floats): 256 KiB stays in L2 across the chunk's two passes.
const CHUNK_FLOATS: usize = 1 << 16;

fn check_tile(tile_len: usize, n: usize, m: usize) -> Result<()> {
    if n == 0 || m == 0 {
        return Err(Error::invalid("tile", format!("empty tile ({n} x {m})")));
    }
    if n.checked_mul(m) != Some(tile_len) {
        return Err(Error::invalid(
            "tile",
            format!("holds {tile_len} values, expected {n} x {m}"),
        ));
    }
    Ok(())
}

fn check_len(arg: &'static str, len: usize, want: usize, what: &str) -> Result<()> {
    if len != want {
        return Err(Error::invalid(
            arg,
            format!("length {len}, expected {want} ({what})"),
        ));
    }
    Ok(())
}

fn chunk_rows(m: usize) -> usize {
    (CHUNK_FLOATS / m).max(1)
}

// -------------------------------------------------------------------------------------------
// Vectorisable scalar math (branch-free, so loops over it auto-vectorise)
// -------------------------------------------------------------------------------------------

/// `e^x` to about 2 ulp; exactly 0 below `-87.3` (and for `-inf`), finite up to `88.3`.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let xc = x.clamp(-87.3, 88.3);
    let t = xc * LOG2E + MAGIC;
    let n = t - MAGIC;
    let r = (xc - n * C1) - n * C2;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    p = p * (r * r) + r + 1.0;
    // The low bits of `t` hold n (two's complement): 2^n without a float-to-int conversion,
    // which keeps the loop in plain integer vector ops.
    let pow2 = f32::from_bits(t.to_bits().wrapping_sub(MAGIC.to_bits()).wrapping_add(127) << 23);
    if x < -87.3 {
        0.0
    } else {
        p * pow2
    }
}

/// `ln(u)` for `u` in `[1, 2]` (all that `log1p` below needs), to about 1 ulp.
#[inline(always)]
fn ln_1_2(u: f32) -> f32 {
    // ln u = e ln 2 + 2 atanh(s), s = (v - 1) / (v + 1), v = u or u / 2 in [0.707, 1.415].
    let big = u > std::f32::consts::SQRT_2;
    let v = if big { u * 0.5 } else { u };
    let e = if big { std::f32::consts::LN_2 } else { 0.0 };
    let s = (v - 1.0) / (v + 1.0);
    let s2 = s * s;
    let mut p = 1.0_f32 / 11.0;
    p = p * s2 + 1.0 / 9.0;
    p = p * s2 + 1.0 / 7.0;
    p = p * s2 + 1.0 / 5.0;
    p = p * s2 + 1.0 / 3.0;
    p = p * s2 + 1.0;
    e + 2.0 * s * p
}

/// `ln(1 + t)` for `t` in `[0, 1]`, accurate for tiny `t` too.
#[inline(always)]
fn log1p_01(t: f32) -> f32 {
    let u = 1.0 + t;
    let d = u - 1.0;
    // ln(u) * t / (u - 1) cancels the rounding of 1 + t.
    if d == 0.0 {
        t
    } else {
        ln_1_2(u) * (t / d)
    }
}

/// `ln(1 + e^x)`, exact in both tails (no switch to the identity).
#[inline(always)]
fn softplus(x: f32) -> f32 {
    x.max(0.0) + log1p_01(exp(-x.abs()))
}

/// `1 / (1 + e^-x)` without overflow on either side.
#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    let e = exp(-x.abs());
    let r = 1.0 / (1.0 + e);
    if x >= 0.0 {
        r
    } else {
        e * r
    }
}

#[inline(always)]
fn lanes_max(row: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut it = row.chunks_exact(LANES);
    for c in &mut it {
        for k in 0..LANES {
            acc[k] = if c[k] > acc[k] { c[k] } else { acc[k] };
        }
    }
    let mut best = it.remainder().iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
    for a in acc {
        best = best.max(a);
    }
    best
}

// -------------------------------------------------------------------------------------------
// Chunk bodies, generic over nothing: compiled once per instruction set by `dispatch!`
// -------------------------------------------------------------------------------------------

/// Adds `bias` in place, writes each row's log-sum-exp, and (when `cols`) returns the chunk's
/// per-column `(max, sum exp(x - max))`.
#[inline(always)]
fn softmax_stats_chunk(
    chunk: &mut [f32],
    m: usize,
    bias: f32,
    row_lse: &mut [f32],
    cols: bool,
) -> Option<(Vec<f32>, Vec<f32>)> {
    let mut cmax = if cols {
        vec![f32::NEG_INFINITY; m]
    } else {
        Vec::new()
    };
    let mut rmax = vec![0.0_f32; row_lse.len()];
    // Pass 1: bias, row max, column max.
    for (row, rm) in chunk.chunks_exact_mut(m).zip(rmax.iter_mut()) {
        if bias != 0.0 {
            for v in row.iter_mut() {
                *v += bias;
            }
        }
        *rm = lanes_max(row);
        if cols {
            for (c, &v) in cmax.iter_mut().zip(row.iter()) {
                *c = if v > *c { v } else { *c };
            }
        }
    }
    // Pass 2 (the chunk is still in cache): the sums of exponentials.
    let mut csum = if cols { vec![0.0_f32; m] } else { Vec::new() };
    for ((row, &rm), out) in chunk.chunks_exact(m).zip(rmax.iter()).zip(row_lse.iter_mut()) {
        let mut acc = [0.0_f32; LANES];
        let mut it = row.chunks_exact(LANES);
        for c in &mut it {
            for k in 0..LANES {
                acc[k] += exp(c[k] - rm);
            }
        }
        let mut s: f32 = it.remainder().iter().map(|&v| exp(v - rm)).sum();
        s += acc.iter().sum::<f32>();
        *out = rm + s.ln();
        if cols {
            for ((cs, &cm), &v) in csum.iter_mut().zip(cmax.iter()).zip(row.iter()) {
                *cs += exp(v - cm);
            }
        }
    }
    cols.then_some((cmax, csum))
}

#[inline(always)]
fn softmax_grad_chunk(chunk: &mut [f32], m: usize, bias: f32, shift_r: &[f32], shift_c: Option<&[f32]>) {
    for (row, &sr) in chunk.chunks_exact_mut(m).zip(shift_r.iter()) {
        match shift_c {
            Some(sc) => {
                for (v, &c) in row.iter_mut().zip(sc.iter()) {
                    let x = *v + bias;
                    *v = exp(x - sr) + exp(x - c);
                }
            }
            None => {
                for v in row.iter_mut() {
                    *v = exp(*v + bias - sr);
                }
            }
        }
    }
}

#[inline(always)]
fn sigmoid_loss_chunk(chunk: &[f32], m: usize, bias: f32) -> f64 {
    let mut total = 0.0_f64;
    for row in chunk.chunks_exact(m) {
        let mut acc = [0.0_f32; LANES];
        let mut it = row.chunks_exact(LANES);
        for c in &mut it {
            for k in 0..LANES {
                acc[k] += softplus(c[k] + bias);
            }
        }
        let rest: f32 = it.remainder().iter().map(|&v| softplus(v + bias)).sum();
        total += f64::from(rest) + acc.iter().map(|&a| f64::from(a)).sum::<f64>();
    }
    total
}

#[inline(always)]
fn sigmoid_grad_chunk(chunk: &mut [f32], m: usize, bias: f32, factor: f32) -> f64 {
    let mut total = 0.0_f64;
    for row in chunk.chunks_exact_mut(m) {
        let mut acc = [0.0_f32; LANES];
        let mut it = row.chunks_exact_mut(LANES);
        for c in &mut it {
            for k in 0..LANES {
                let g = sigmoid(c[k] + bias) * factor;
                c[k] = g;
                acc[k] += g;
            }
        }
        let mut rest = 0.0_f32;
        for v in it.into_remainder() {
            *v = sigmoid(*v + bias) * factor;
            rest += *v;
        }
        total += f64::from(rest) + acc.iter().map(|&a| f64::from(a)).sum::<f64>();
    }
    total
}

/// Defines `$name` that runs `$body` (an `#[inline(always)]` chunk function) compiled for
/// AVX-512, AVX2+FMA or the baseline, whichever this CPU has (detected once).
macro_rules! dispatch {
    ($name:ident, $body:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        #[inline]
        fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) -> $ret { $body($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) -> $ret { $body($($arg),*) }
                match isa() {
                    // SAFETY: `isa()` reported these features on this CPU.
                    Isa::Avx512 => return unsafe { avx512($($arg),*) },
                    Isa::Avx2 => return unsafe { avx2($($arg),*) },
                    Isa::Base => {}
                }
            }
            $body($($arg),*)
        }
    };
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Isa {
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Avx512,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Avx2,
    Base,
}

fn isa() -> Isa {
    static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *ISA.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f") && has!("avx512vl") && has!("avx2") && has!("fma") {
                return Isa::Avx512;
            }
            if has!("avx2") && has!("fma") {
                return Isa::Avx2;
            }
        }
        Isa::Base
    })
}

type ColStats = Option<(Vec<f32>, Vec<f32>)>;
dispatch!(softmax_stats_simd, softmax_stats_chunk,
    (chunk: &mut [f32], m: usize, bias: f32, row_lse: &mut [f32], cols: bool) -> ColStats);
dispatch!(softmax_grad_simd, softmax_grad_chunk,
    (chunk: &mut [f32], m: usize, bias: f32, shift_r: &[f32], shift_c: Option<&[f32]>) -> ());
dispatch!(sigmoid_loss_simd, sigmoid_loss_chunk, (chunk: &[f32], m: usize, bias: f32) -> f64);
dispatch!(sigmoid_grad_simd, sigmoid_grad_chunk,
    (chunk: &mut [f32], m: usize, bias: f32, factor: f32) -> f64);

// -------------------------------------------------------------------------------------------
// Public entry points
// -------------------------------------------------------------------------------------------

/// InfoNCE forward statistics of one `n x m` row-major logits tile.
///
/// Adds `bias` to every logit in place (so the caller can read positive logits afterwards),
/// writes `row_lse[i] = ln sum_j e^{L_ij}` and, when given, `col_lse[j] = ln sum_i e^{L_ij}`.
/// One pass over row chunks that stay in cache; rows in parallel on the mlvec pool.
pub fn softmax_stats(
    tile: &mut [f32],
    n: usize,
    m: usize,
    bias: f32,
    row_lse: &mut [f32],
    col_lse: Option<&mut [f32]>,
) -> Result<()> {
    check_tile(tile.len(), n, m)?;
    check_len("row_lse", row_lse.len(), n, "one per tile row")?;
    if let Some(c) = &col_lse {
        check_len("col_lse", c.len(), m, "one per tile column")?;
    }
    let cols = col_lse.is_some();
    let rows = chunk_rows(m);
    let parts: Vec<ColStats> = crate::threads::install(|| {
        tile.par_chunks_mut(rows * m)
            .zip(row_lse.par_chunks_mut(rows))
            .map(|(chunk, lse)| softmax_stats_simd(chunk, m, bias, lse, cols))
            .collect()
    });
    if let Some(out) = col_lse {
        // Merge the chunks' (max, sum) pairs: sum_k s_k e^{max_k - M}.
        let mut gmax = vec![f32::NEG_INFINITY; m];
        for (cm, _) in parts.iter().flatten() {
            for (g, &c) in gmax.iter_mut().zip(cm.iter()) {
                *g = g.max(c);
            }
        }
        let mut gsum = vec![0.0_f32; m];
        for (cm, cs) in parts.iter().flatten() {
            for ((g, (&c, &s)), &mx) in gsum.iter_mut().zip(cm.iter().zip(cs.iter())).zip(gmax.iter()) {
                *g += s * (c - mx).exp();
            }
        }
        for ((o, &mx), &s) in out.iter_mut().zip(gmax.iter()).zip(gsum.iter()) {
            *o = mx + s.ln();
        }
    }
    Ok(())
}

/// InfoNCE backward weight block, in place: `W_ij = e^{L_ij + bias - shift_r[i]}`
/// `(+ e^{L_ij + bias - shift_c[j]})`. A `+inf` shift gives exactly 0 (a row or column with
/// zero weight).
pub fn softmax_grad(
    tile: &mut [f32],
    n: usize,
    m: usize,
    bias: f32,
    shift_r: &[f32],
    shift_c: Option<&[f32]>,
) -> Result<()> {
    check_tile(tile.len(), n, m)?;
    check_len("shift_r", shift_r.len(), n, "one per tile row")?;
    if let Some(c) = shift_c {
        check_len("shift_c", c.len(), m, "one per tile column")?;
    }
    let rows = chunk_rows(m);
    crate::threads::install(|| {
        tile.par_chunks_mut(rows * m)
            .zip(shift_r.par_chunks(rows))
            .for_each(|(chunk, sr)| softmax_grad_simd(chunk, m, bias, sr, shift_c))
    });
    Ok(())
}

/// SigLIP forward: `sum_ij softplus(L_ij + bias)`, accumulated in f64 across rows.
pub fn sigmoid_loss(tile: &[f32], n: usize, m: usize, bias: f32) -> Result<f64> {
    check_tile(tile.len(), n, m)?;
    let rows = chunk_rows(m);
    Ok(crate::threads::install(|| {
        tile.par_chunks(rows * m)
            .map(|chunk| sigmoid_loss_simd(chunk, m, bias))
            .sum()
    }))
}

/// SigLIP backward, in place: `W_ij = factor * sigmoid(L_ij + bias)`; returns `sum_ij W_ij`.
pub fn sigmoid_grad(tile: &mut [f32], n: usize, m: usize, bias: f32, factor: f32) -> Result<f64> {
    check_tile(tile.len(), n, m)?;
    let rows = chunk_rows(m);
    Ok(crate::threads::install(|| {
        tile.par_chunks_mut(rows * m)
            .map(|chunk| sigmoid_grad_simd(chunk, m, bias, factor))
            .sum()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random logits in `[-span, span]`.
    fn tile(n: usize, m: usize, span: f64, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n * m)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32 * span as f32
            })
            .collect()
    }

    fn lse(v: impl Iterator<Item = f64> + Clone) -> f64 {
        let mx = v.clone().fold(f64::NEG_INFINITY, f64::max);
        mx + v.map(|x| (x - mx).exp()).sum::<f64>().ln()
    }

    fn close(got: f64, want: f64, rtol: f64, atol: f64) {
        assert!(
            (got - want).abs() <= atol + rtol * want.abs(),
            "got {got}, want {want}"
        );
    }

    #[test]
    fn math_matches_libm() {
        let mut x = -120.0_f32;
        while x < 88.0 {
            let want = f64::from(x).exp();
            close(f64::from(exp(x)), want, 3e-7, 1e-37);
            let sp = (-f64::from(x).abs()).exp().ln_1p() + f64::from(x).max(0.0);
            close(f64::from(softplus(x)), sp, 3e-7, 1e-30);
            let sg = 1.0 / (1.0 + (-f64::from(x)).exp());
            close(f64::from(sigmoid(x)), sg, 3e-7, 1e-37);
            x += 0.0137;
        }
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-1000.0), 0.0);
        assert!(exp(1000.0).is_finite());
        close(f64::from(log1p_01(1e-10)), 1e-10, 1e-7, 0.0);
    }

    #[test]
    fn softmax_stats_match_naive() {
        // Odd sizes: chunk and lane remainders, more rows than one chunk.
        for &(n, m, span, bias) in &[(1, 1, 3.0, 0.0), (37, 19, 20.0, -1.5), (300, 517, 60.0, 2.0)] {
            let orig = tile(n, m, span, (n * m) as u64);
            let mut t = orig.clone();
            let (mut rl, mut cl) = (vec![0.0; n], vec![0.0; m]);
            softmax_stats(&mut t, n, m, bias, &mut rl, Some(&mut cl)).unwrap();
            let at = |i: usize, j: usize| f64::from(orig[i * m + j]) + f64::from(bias);
            for i in 0..n {
                close(f64::from(rl[i]), lse((0..m).map(|j| at(i, j))), 1e-6, 1e-5);
                for j in 0..m {
                    assert_eq!(t[i * m + j], orig[i * m + j] + bias, "bias added in place");
                }
            }
            for (j, &c) in cl.iter().enumerate() {
                close(f64::from(c), lse((0..n).map(|i| at(i, j))), 1e-6, 1e-5);
            }
            // Rows only.
            let mut t2 = orig.clone();
            let mut rl2 = vec![0.0; n];
            softmax_stats(&mut t2, n, m, bias, &mut rl2, None).unwrap();
            assert_eq!(rl, rl2);
        }
    }

    #[test]
    fn softmax_grad_matches_naive() {
        let (n, m, bias) = (70, 1029, 0.25_f32);
        let orig = tile(n, m, 30.0, 7);
        let sr: Vec<f32> = (0..n)
            .map(|i| {
                if i == 3 {
                    f32::INFINITY
                } else {
                    25.0 + i as f32 * 0.1
                }
            })
            .collect();
        let sc: Vec<f32> = (0..m).map(|j| 28.0 - j as f32 * 0.01).collect();
        for both in [false, true] {
            let mut t = orig.clone();
            softmax_grad(&mut t, n, m, bias, &sr, both.then_some(&sc[..])).unwrap();
            for i in 0..n {
                for j in 0..m {
                    // The exponent is rounded to f32 as the kernel's (and torch's) is.
                    let x = orig[i * m + j] + bias;
                    let mut want = f64::from(x - sr[i]).exp();
                    if both {
                        want += f64::from(x - sc[j]).exp();
                    }
                    close(f64::from(t[i * m + j]), want, 1e-6, 1e-30);
                }
            }
        }
    }

    #[test]
    fn sigmoid_match_naive() {
        let (n, m, bias) = (53, 611, -3.0_f32);
        let orig = tile(n, m, 40.0, 11);
        let got = sigmoid_loss(&orig, n, m, bias).unwrap();
        let want: f64 = orig
            .iter()
            .map(|&v| {
                let x = f64::from(v + bias);
                x.max(0.0) + (-x.abs()).exp().ln_1p()
            })
            .sum();
        close(got, want, 1e-6, 0.0);
        let mut t = orig.clone();
        let s = sigmoid_grad(&mut t, n, m, bias, 0.5).unwrap();
        let mut want_sum = 0.0;
        for (g, &v) in t.iter().zip(orig.iter()) {
            let w = 0.5 / (1.0 + (-f64::from(v + bias)).exp());
            close(f64::from(*g), w, 1e-6, 1e-30);
            want_sum += w;
        }
        close(s, want_sum, 1e-6, 0.0);
    }

    #[test]
    fn bad_shapes_are_errors() {
        let mut t = vec![0.0_f32; 6];
        let mut r = vec![0.0_f32; 2];
        assert!(softmax_stats(&mut t, 2, 4, 0.0, &mut r, None).is_err());
        assert!(softmax_stats(&mut t, 3, 2, 0.0, &mut r, None).is_err());
        let mut c = vec![0.0_f32; 2];
        assert!(softmax_stats(&mut t, 2, 3, 0.0, &mut r, Some(&mut c)).is_err());
        assert!(softmax_grad(&mut t, 2, 3, 0.0, &r, Some(&c)).is_err());
        assert!(sigmoid_loss(&t, 0, 6, 0.0).is_err());
        assert!(sigmoid_grad(&mut t, 6, 2, 0.0, 1.0).is_err());
    }
}
