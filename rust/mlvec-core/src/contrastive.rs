//! Fused element-wise work on one logits tile of the tiled contrastive losses.
//!
//! The tiled losses compute a `n x m` block of logits `L = A_tile @ B_tile^T` (a GEMM) and then
//! need, per block, the row and column log-sum-exps (InfoNCE forward), the weight block
//! `exp(L - shift_r) + exp(L - shift_c)` (InfoNCE backward), `sum softplus(L)` (SigLIP value)
//! and, in the same pass when gradients are wanted, `sigmoid(L)`. Done as separate tensor
//! operations that is several passes over a block that does not fit in cache; here each is one
//! pass over row chunks small enough to stay in L2, with vectorised `exp`/`ln`, the chunks in
//! parallel through [`crate::threads::for_each_part`] (on torch's OpenMP team when loaded).
//!
//! Every function adds `bias` to the logits first (and, where it says so, writes the result back
//! into the tile), so the caller's GEMM need not make another pass for it.

use crate::{Error, Result};
use std::sync::Mutex;

/// Lanes of the explicit accumulators: wide enough for AVX-512, so LLVM vectorises the loops.
const LANES: usize = 16;
/// Target size of one row chunk (floats): 256 KiB stays in L2 across the chunk's two passes.
const CHUNK_FLOATS: usize = 1 << 16;
/// Rows per parallel part of the column statistics (a multiple of the chunk's rows).
const PART_ROWS: usize = 256;

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
    let t = xc.mul_add(LOG2E, MAGIC);
    let n = t - MAGIC;
    let r = n.mul_add(-C2, n.mul_add(-C1, xc));
    let mut p = 1.987_569_1e-4_f32;
    p = p.mul_add(r, 1.398_199_9e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 1.666_666_5e-1);
    p = p.mul_add(r, 0.5);
    p = p.mul_add(r * r, r) + 1.0;
    // The low bits of `t` hold n (two's complement): 2^n without a float-to-int conversion,
    // which keeps the loop in plain integer vector ops.
    let pow2 = f32::from_bits(t.to_bits().wrapping_sub(MAGIC.to_bits()).wrapping_add(127) << 23);
    if x < -87.3 {
        0.0
    } else {
        p * pow2
    }
}

/// `ln(u)` for `u` in `[1, 2]` (all that `log1p` below needs), to about 1 ulp, without a
/// division (a division costs as much as the whole polynomial in these loops).
#[inline(always)]
fn ln_1_2(u: f32) -> f32 {
    // ln u = e ln 2 + ln v, v = u or u / 2 in [0.707, 1.415]; ln(1 + x) = x - x^2/2 + x^3 P(x)
    // with the minimax P of the Cephes single-precision logarithm.
    let big = u > std::f32::consts::SQRT_2;
    let v = if big { u * 0.5 } else { u };
    let e = if big { 1.0_f32 } else { 0.0 };
    let x = v - 1.0;
    let z = x * x;
    let mut p = 7.037_683_6e-2_f32;
    p = p.mul_add(x, -1.151_461e-1);
    p = p.mul_add(x, 1.167_699_9e-1);
    p = p.mul_add(x, -1.242_014_1e-1);
    p = p.mul_add(x, 1.424_932_3e-1);
    p = p.mul_add(x, -1.666_805_8e-1);
    p = p.mul_add(x, 2.000_071_4e-1);
    p = p.mul_add(x, -2.499_999_4e-1);
    p = p.mul_add(x, 3.333_333e-1);
    let y = (x * z).mul_add(p, (-2.121_944_4e-4_f32).mul_add(e, -0.5 * z));
    x + y + 0.693_359_4 * e
}

/// `ln(1 + t)` for `t` in `[0, 1]`, given `r = 1 / (1 + t)`; accurate for tiny `t` too.
#[inline(always)]
fn log1p_01(t: f32, r: f32) -> f32 {
    let u = 1.0 + t;
    // ln(u) is exact for the rounded u; (t - (u - 1)) / u corrects for the rounding of 1 + t.
    ln_1_2(u) + (t - (u - 1.0)) * r
}

/// `ln(1 + e^x)`, exact in both tails (no switch to the identity).
#[inline(always)]
fn softplus(x: f32) -> f32 {
    let e = exp(-x.abs());
    x.max(0.0) + log1p_01(e, 1.0 / (1.0 + e))
}

/// `(softplus(x), sigmoid(x))` sharing one `exp` and one division.
#[inline(always)]
fn softplus_sigmoid(x: f32) -> (f32, f32) {
    let e = exp(-x.abs());
    let r = 1.0 / (1.0 + e);
    let sp = x.max(0.0) + log1p_01(e, r);
    (sp, if x >= 0.0 { r } else { e * r })
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

/// Running per-column `(max, sum exp(x - max))` of the rows seen so far.
struct ColStats {
    max: Vec<f32>,
    sum: Vec<f32>,
    /// Scratch: the maxima before the current chunk.
    prev: Vec<f32>,
}

impl ColStats {
    fn new(m: usize) -> Self {
        Self {
            max: vec![f32::NEG_INFINITY; m],
            sum: vec![0.0; m],
            prev: vec![f32::NEG_INFINITY; m],
        }
    }
}

/// `e^(old - new)`, the factor that moves a sum of exponentials from max `old` to max `new`;
/// 1 when they are equal (also when both are `-inf`, where the subtraction would give NaN).
#[inline(always)]
fn rescale(old: f32, new: f32) -> f32 {
    if old == new {
        1.0
    } else {
        exp(old - new)
    }
}

/// Adds `bias` to a chunk of rows in place, writes each row's log-sum-exp, and (when `cols`)
/// folds the chunk into the running column statistics.
#[inline(always)]
fn softmax_stats_chunk(
    chunk: &mut [f32],
    m: usize,
    bias: f32,
    row_lse: &mut [f32],
    cols: Option<&mut ColStats>,
) {
    let mut rmax = vec![0.0_f32; row_lse.len()];
    let mut cols = cols;
    if let Some(c) = cols.as_deref_mut() {
        c.prev.copy_from_slice(&c.max);
    }
    // Pass 1: bias, row max, column max.
    for (row, rm) in chunk.chunks_exact_mut(m).zip(rmax.iter_mut()) {
        if bias != 0.0 {
            for v in row.iter_mut() {
                *v += bias;
            }
        }
        *rm = lanes_max(row);
        if let Some(c) = cols.as_deref_mut() {
            for (cm, &v) in c.max.iter_mut().zip(row.iter()) {
                *cm = if v > *cm { v } else { *cm };
            }
        }
    }
    if let Some(c) = cols.as_deref_mut() {
        for ((s, &p), &mx) in c.sum.iter_mut().zip(c.prev.iter()).zip(c.max.iter()) {
            *s *= rescale(p, mx);
        }
    }
    // Pass 2 (the chunk is still in cache): the sums of exponentials, rows and columns in one
    // sweep over explicit lanes so that both vectorise.
    for ((row, &rm), out) in chunk.chunks_exact(m).zip(rmax.iter()).zip(row_lse.iter_mut()) {
        let mut acc = [0.0_f32; LANES];
        let mut tail = 0.0_f32;
        match cols.as_deref_mut() {
            Some(c) => {
                let mut xs = row.chunks_exact(LANES);
                let mut ms = c.max.chunks_exact(LANES);
                let mut ss = c.sum.chunks_exact_mut(LANES);
                for ((x, cm), cs) in (&mut xs).zip(&mut ms).zip(&mut ss) {
                    for k in 0..LANES {
                        acc[k] += exp(x[k] - rm);
                        cs[k] += exp(x[k] - cm[k]);
                    }
                }
                for ((&x, &cm), cs) in xs.remainder().iter().zip(ms.remainder()).zip(ss.into_remainder()) {
                    tail += exp(x - rm);
                    *cs += exp(x - cm);
                }
            }
            None => {
                let mut xs = row.chunks_exact(LANES);
                for x in &mut xs {
                    for k in 0..LANES {
                        acc[k] += exp(x[k] - rm);
                    }
                }
                tail = xs.remainder().iter().map(|&x| exp(x - rm)).sum();
            }
        }
        *out = rm + (tail + acc.iter().sum::<f32>()).ln();
    }
}

/// Folds one part's column statistics into the running total (`a`), in place.
#[inline(always)]
fn merge_col_stats(a_max: &mut [f32], a_sum: &mut [f32], b_max: &[f32], b_sum: &[f32]) {
    for ((am, asum), (&bm, &bs)) in a_max
        .iter_mut()
        .zip(a_sum.iter_mut())
        .zip(b_max.iter().zip(b_sum))
    {
        let mx = if bm > *am { bm } else { *am };
        *asum = *asum * rescale(*am, mx) + bs * rescale(bm, mx);
        *am = mx;
    }
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

/// SigLIP forward and backward of a chunk in one sweep: writes `factor * sigmoid(x + bias)` in
/// place and returns `(sum softplus(x + bias), sum of what it wrote)`.
#[inline(always)]
fn sigmoid_loss_grad_chunk(chunk: &mut [f32], m: usize, bias: f32, factor: f32) -> (f64, f64) {
    let (mut loss, mut gsum) = (0.0_f64, 0.0_f64);
    for row in chunk.chunks_exact_mut(m) {
        let (mut la, mut ga) = ([0.0_f32; LANES], [0.0_f32; LANES]);
        let mut it = row.chunks_exact_mut(LANES);
        for c in &mut it {
            for k in 0..LANES {
                let (sp, sg) = softplus_sigmoid(c[k] + bias);
                let g = sg * factor;
                c[k] = g;
                la[k] += sp;
                ga[k] += g;
            }
        }
        let (mut lr, mut gr) = (0.0_f32, 0.0_f32);
        for v in it.into_remainder() {
            let (sp, sg) = softplus_sigmoid(*v + bias);
            *v = sg * factor;
            lr += sp;
            gr += *v;
        }
        loss += f64::from(lr) + la.iter().map(|&a| f64::from(a)).sum::<f64>();
        gsum += f64::from(gr) + ga.iter().map(|&a| f64::from(a)).sum::<f64>();
    }
    (loss, gsum)
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
    Avx512,
    Avx2,
    Base,
}

fn isa() -> Isa {
    let f = crate::cpu::detected();
    if f.avx512f && f.avx512vl && f.avx2_fma() {
        Isa::Avx512
    } else if f.avx2_fma() {
        Isa::Avx2
    } else {
        Isa::Base
    }
}

dispatch!(softmax_stats_simd, softmax_stats_chunk,
    (chunk: &mut [f32], m: usize, bias: f32, row_lse: &mut [f32], cols: Option<&mut ColStats>) -> ());
dispatch!(merge_col_stats_simd, merge_col_stats,
    (a_max: &mut [f32], a_sum: &mut [f32], b_max: &[f32], b_sum: &[f32]) -> ());
dispatch!(sigmoid_loss_grad_simd, sigmoid_loss_grad_chunk,
    (chunk: &mut [f32], m: usize, bias: f32, factor: f32) -> (f64, f64));
dispatch!(softmax_grad_simd, softmax_grad_chunk,
    (chunk: &mut [f32], m: usize, bias: f32, shift_r: &[f32], shift_c: Option<&[f32]>) -> ());
dispatch!(sigmoid_loss_simd, sigmoid_loss_chunk, (chunk: &[f32], m: usize, bias: f32) -> f64);

/// `f` on every item, in parallel ([`crate::threads::for_each_part`]: on torch's OpenMP team
/// when it is loaded, else on the mlvec pool); the items come back in their order.
fn par_each<T: Send>(items: Vec<T>, f: impl Fn(&mut T) + Sync) -> Vec<T> {
    // Each slot is locked only by the one thread running its part (never contended); a lock
    // can only be poisoned by a panic, which for_each_part re-raises anyway.
    let slots: Vec<Mutex<T>> = items.into_iter().map(Mutex::new).collect();
    crate::threads::for_each_part(slots.len(), &|i| {
        f(&mut slots[i].lock().unwrap_or_else(|e| e.into_inner()))
    });
    slots
        .into_iter()
        .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect()
}

// -------------------------------------------------------------------------------------------
// Public entry points
// -------------------------------------------------------------------------------------------

/// InfoNCE forward statistics of one `n x m` row-major logits tile.
///
/// Adds `bias` to every logit in place (so the caller can read positive logits afterwards),
/// writes `row_lse[i] = ln sum_j e^{L_ij}` and, when given, `col_lse[j] = ln sum_i e^{L_ij}`.
/// One pass over row chunks that stay in cache, in parallel ([`crate::threads::for_each_part`]).
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
    // A fixed number of rows per parallel part (not one part per thread): the column sums are
    // then added in the same order whatever the thread count, so results are reproducible.
    let part = rows * (PART_ROWS / rows).max(1);
    let blocks = tile.chunks_mut(part * m).zip(row_lse.chunks_mut(part));
    let parts = par_each(
        blocks.map(|(b, l)| (b, l, None)).collect(),
        |(block, lse, stats)| {
            let stats: &mut Option<ColStats> = stats;
            *stats = cols.then(|| ColStats::new(m));
            for (chunk, l) in block.chunks_mut(rows * m).zip(lse.chunks_mut(rows)) {
                softmax_stats_simd(chunk, m, bias, l, stats.as_mut());
            }
        },
    );
    if let Some(out) = col_lse {
        let mut total = ColStats::new(m);
        for p in parts.iter().filter_map(|(_, _, p)| p.as_ref()) {
            merge_col_stats_simd(&mut total.max, &mut total.sum, &p.max, &p.sum);
        }
        for ((o, &mx), &s) in out.iter_mut().zip(total.max.iter()).zip(total.sum.iter()) {
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
    par_each(
        tile.chunks_mut(rows * m).zip(shift_r.chunks(rows)).collect(),
        |(chunk, sr)| softmax_grad_simd(chunk, m, bias, sr, shift_c),
    );
    Ok(())
}

/// SigLIP forward: `sum_ij softplus(L_ij + bias)`, accumulated in f64 across rows.
pub fn sigmoid_loss(tile: &[f32], n: usize, m: usize, bias: f32) -> Result<f64> {
    check_tile(tile.len(), n, m)?;
    let rows = chunk_rows(m);
    let parts = par_each(
        tile.chunks(rows * m).map(|c| (c, 0.0)).collect(),
        |(chunk, sum)| *sum = sigmoid_loss_simd(chunk, m, bias),
    );
    // Summed in chunk order: the same result whatever the thread count.
    Ok(parts.iter().map(|&(_, s)| s).sum())
}

/// SigLIP forward and backward of one tile in a single pass: writes
/// `W_ij = factor * sigmoid(L_ij + bias)` in place and returns
/// `(sum_ij softplus(L_ij + bias), sum_ij W_ij)`.
pub fn sigmoid_loss_grad(tile: &mut [f32], n: usize, m: usize, bias: f32, factor: f32) -> Result<(f64, f64)> {
    check_tile(tile.len(), n, m)?;
    let rows = chunk_rows(m);
    let parts = par_each(
        tile.chunks_mut(rows * m).map(|c| (c, (0.0, 0.0))).collect(),
        |(chunk, sums)| *sums = sigmoid_loss_grad_simd(chunk, m, bias, factor),
    );
    // Summed in chunk order: the same result whatever the thread count.
    Ok(parts
        .iter()
        .fold((0.0, 0.0), |(l, g), &(_, (a, b))| (l + a, g + b)))
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
            let (sp2, sg2) = softplus_sigmoid(x);
            close(f64::from(sg2), sg, 3e-7, 1e-37);
            assert_eq!(sp2, softplus(x));
            x += 0.0137;
        }
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-1000.0), 0.0);
        assert!(exp(1000.0).is_finite());
        close(f64::from(log1p_01(1e-10, 1.0 / (1.0 + 1e-10))), 1e-10, 1e-7, 0.0);
        for i in 0..=1000 {
            let t = i as f32 / 1000.0;
            close(
                f64::from(log1p_01(t, 1.0 / (1.0 + t))),
                f64::from(t).ln_1p(),
                3e-7,
                1e-30,
            );
        }
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
        let (_, s) = sigmoid_loss_grad(&mut t, n, m, bias, 0.5).unwrap();
        let mut want_sum = 0.0;
        for (g, &v) in t.iter().zip(orig.iter()) {
            let w = 0.5 / (1.0 + (-f64::from(v + bias)).exp());
            close(f64::from(*g), w, 1e-6, 1e-30);
            want_sum += w;
        }
        close(s, want_sum, 1e-6, 0.0);
    }

    #[test]
    fn sigmoid_fused_matches_separate_passes() {
        let (n, m, bias) = (301, 517, 1.5_f32);
        let orig = tile(n, m, 40.0, 5);
        let mut fused = orig.clone();
        let (loss, gsum) = sigmoid_loss_grad(&mut fused, n, m, bias, 0.25).unwrap();
        let mut want_loss = 0.0;
        let mut want_sum = 0.0;
        for (g, &v) in fused.iter().zip(orig.iter()) {
            let x = f64::from(v + bias);
            want_loss += x.max(0.0) + (-x.abs()).exp().ln_1p();
            let w = 0.25 / (1.0 + (-x).exp());
            close(f64::from(*g), w, 1e-6, 1e-30);
            want_sum += w;
        }
        close(loss, want_loss, 1e-6, 0.0);
        close(gsum, want_sum, 1e-6, 0.0);
    }

    #[test]
    fn softmax_stats_do_not_depend_on_thread_count() {
        let (n, m) = (1100, 300);
        let orig = tile(n, m, 50.0, 9);
        let before = crate::threads::num_threads();
        let run = |threads: usize| {
            crate::threads::set_num_threads(threads).unwrap();
            let mut t = orig.clone();
            let (mut rl, mut cl) = (vec![0.0; n], vec![0.0; m]);
            softmax_stats(&mut t, n, m, 0.0, &mut rl, Some(&mut cl)).unwrap();
            (rl, cl)
        };
        let (one, three) = (run(1), run(3));
        crate::threads::set_num_threads(before).unwrap();
        assert_eq!(one, three);
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
        assert!(sigmoid_loss_grad(&mut t, 4, 2, 0.0, 1.0).is_err());
    }
}
