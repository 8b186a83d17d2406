//! Exact pruning for bfloat16 documents met by a single query.
//!
//! A query token's maximum sits in one or a few of a document's rows, and 8-bit integer
//! arithmetic tells which at four times the fp32 multiply-add rate: each tile of 8 rows is
//! quantized to int8 (`round(x / sd)`, one scale `sd = max|x| / 127` per tile) and multiplied
//! with the query quantized to int8 (one scale per token) by `vpdpbusd`. With `ã` the
//! dequantized integer dot product and `s` any fp32 accumulation of the same pair's products,
//!
//! `|s − ã| ≤ ‖q − q̃‖₂·‖d‖₂ + ‖q̃‖₁·max|d − d̃| + γ·‖q‖₂·‖d‖₂ + (rounding of ã)`
//!
//! (`γ = 2·dim·2⁻²⁴` bounds fp32 accumulation in any order, twice over). Per tile,
//! `max|d − d̃| ≤ 0.501·sd` (the grid's half step plus the fp32 rounding of `x / sd`) and `‖d‖₂`
//! is the largest row norm, summed in fp32 while quantizing and rounded up; the query's norms
//! are computed in fp64 when it is packed. A pair whose upper bound `ã + ε` stays below the
//! lower bound `ã − ε` of another row for the same token can neither hold that token's maximum
//! nor tie with it; every other pair (a few per token) is scored in fp32, in row order, so
//! maxima and first-on-ties argmaxes are those of scoring every pair. Documents or queries with
//! a value outside `[1e-15, 1e15]` in magnitude (or inf/NaN), and dimensions past 512, are
//! scored in full.

#[cfg(target_arch = "x86_64")]
use crate::simd::avx512_int as ai;

use crate::simd::{int8_in_range, INT8_MAX as QMAX};

/// Query lanes per chunk (the fp32 kernel's `W`).
const W: usize = 32;
/// Largest dimension: the integer sums (with their +128 bias) stay exact in fp32.
const MAX_DIM: usize = 512;

/// Whether this CPU runs the pre-filter (AVX-512 F, BW, VL and VNNI).
pub(super) fn available() -> bool {
    let f = crate::cpu::detected();
    f.avx512f && f.avx512bw && f.avx512vl && f.avx512vnni
}

/// One query set's valid tokens quantized to int8, with their bound coefficients.
pub(super) struct QueryInts {
    /// fp32 rows `[nl][dim]`, for the pairs scored exactly.
    rows: Vec<f32>,
    /// `[chunks][stride / 4][W][4]` int8, each 64-dimension block in the documents' packed
    /// order; zero-padded lanes and dimensions.
    ints: Vec<i8>,
    /// Per packed lane: `128 · Σ int`, the bias the uint8 documents add to each dot product.
    corr: Vec<f32>,
    /// Per packed lane: the dequantization factor (`q ≈ int · scale`).
    scale: Vec<f32>,
    /// Per packed lane: `1 / scale` (0 where `scale` is 0), so thresholds multiply, not divide.
    inv_scale: Vec<f32>,
    /// Per packed lane: `‖q − q̃‖₂ + γ'·max(‖q‖₂, ‖q̃‖₂)`, multiplied by the tile's `‖d‖₂` bound.
    a: Vec<f32>,
    /// Per packed lane: `‖q̃‖₁`, multiplied by `max|d − d̃|`'s bound per tile.
    b: Vec<f32>,
    dim: usize,
}

/// Quantize `nl` query rows (`rows`, `[nl][dim]` fp32, in lane order); `None` when a value is
/// out of range or the dimension past [`MAX_DIM`].
pub(super) fn pack_query(rows: &[f32], nl: usize, dim: usize) -> Option<QueryInts> {
    if nl == 0 || dim == 0 || dim > MAX_DIM || rows.len() < nl * dim {
        return None;
    }
    let stride = dim.next_multiple_of(64);
    let chunks = nl.div_ceil(W);
    let mut out = QueryInts {
        rows: rows[..nl * dim].to_vec(),
        ints: vec![0; chunks * stride * W],
        corr: vec![0.0; chunks * W],
        scale: vec![0.0; chunks * W],
        inv_scale: vec![0.0; chunks * W],
        a: vec![0.0; chunks * W],
        b: vec![0.0; chunks * W],
        dim,
    };
    // Where each packed byte of a row comes from.
    let from: Vec<usize> = (0..stride).map(|p| p / 64 * 64 + pack_order(p % 64)).collect();
    // Twice the fp32 accumulation bound (so rounding in the bounds themselves is covered),
    // plus the rounding of the dequantized dot product.
    let gamma = 2.0 * dim as f64 * 2f64.powi(-24) + 2f64.powi(-20);
    let up = 1.0 + 1e-6;
    for (c, row) in rows.chunks_exact(dim).take(nl).enumerate() {
        if row.iter().any(|x| !x.is_finite()) {
            return None;
        }
        let m = row.iter().fold(0f32, |m, x| m.max(x.abs()));
        if m == 0.0 {
            continue; // all zero: exact, scale 0
        }
        if !int8_in_range(m) {
            return None;
        }
        let scale = (m as f64 / QMAX as f64) as f32;
        let inv = QMAX as f64 / m as f64;
        let q8: Vec<f64> = row
            .iter()
            .map(|&x| (x as f64 * inv).round().clamp(-(QMAX as f64), QMAX as f64))
            .collect();
        let (chunk, l) = (c / W, c % W);
        let base = &mut out.ints[chunk * stride * W..][..stride * W];
        for (p, &k) in from.iter().enumerate() {
            if k < dim {
                base[(p / 4) * 4 * W + 4 * l + p % 4] = q8[k] as i8;
            }
        }
        let (mut err2, mut qt2, mut q2, mut qt1) = (0f64, 0f64, 0f64, 0f64);
        for (&x, &v) in row.iter().zip(&q8) {
            let deq = v * scale as f64;
            err2 += (x as f64 - deq).powi(2);
            qt2 += deq * deq;
            qt1 += deq.abs();
            q2 += (x as f64).powi(2);
        }
        out.corr[c] = (128.0 * q8.iter().sum::<f64>()) as f32;
        out.scale[c] = scale;
        out.inv_scale[c] = (1.0 / scale as f64) as f32;
        out.a[c] = ((err2.sqrt() + gamma * q2.sqrt().max(qt2.sqrt())) * up) as f32;
        out.b[c] = (qt1 * up) as f32;
    }
    Some(out)
}

/// The documents' packed byte order within a 64-element block.
fn pack_order(p: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        ai::packed_position(p)
    }
    #[cfg(not(target_arch = "x86_64"))]
    p
}

/// Buffers reused across the documents a worker filters.
#[derive(Default)]
pub(super) struct Scratch {
    #[cfg(target_arch = "x86_64")]
    pass: ai::Pass,
    /// `(row index, chunk, lanes)` of the pairs to score exactly.
    hits: Vec<(u32, u32, u32)>,
    /// `(query lane, document position, fp32 score)` of those pairs, in row order.
    pairs: Vec<(u32, i32, f32)>,
    /// Pairs scored exactly, for the figures in tests.
    #[cfg(test)]
    pub(super) scored: usize,
}

/// Score one bfloat16 document against a query through the filter: `qmax[i]` (and `qarg[i]`,
/// the first position holding it) for the `nl` query lanes. `bits` holds the packed rows, the
/// set starting at row `s`; `valid` its valid positions (non-empty). `false` when the document
/// is out of the filter's range (nothing written): then every pair must be scored.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
pub(super) fn score(
    qi: &QueryInts,
    nl: usize,
    bits: &[u16],
    s: usize,
    valid: &[i32],
    sc: &mut Scratch,
    qmax: &mut [f32],
    mut qarg: Option<&mut [i32]>,
) -> bool {
    let dim = qi.dim;
    debug_assert!(available() && nl > 0 && !valid.is_empty());
    let q = ai::Query {
        ints: &qi.ints,
        nl,
        corr: &qi.corr,
        scale: &qi.scale,
        inv_scale: &qi.inv_scale,
        a: &qi.a,
        b: &qi.b,
    };
    let d = ai::Doc {
        bits,
        first: s,
        valid,
        dim,
    };
    // SAFETY: available() checked the CPU; `qi` was packed for `dim`; `valid` is non-empty
    // and its rows lie inside `bits` (the caller's token sets).
    unsafe {
        if !ai::first_pass(&q, &d, &mut sc.pass) {
            return false;
        }
        ai::second_pass(&q, &d, &sc.pass, &mut sc.hits);
    }
    qmax[..nl].fill(f32::NEG_INFINITY);
    if let Some(a) = qarg.as_deref_mut() {
        a[..nl].fill(-1);
    }
    // The pairs that can hold a maximum, scored first (independent dot products the core can
    // overlap), then folded in row order: strictly greater keeps the first on ties.
    sc.pairs.clear();
    for &(r, c, mut h) in &sc.hits {
        let j = valid[r as usize];
        let row = &bits[(s + j as usize) * dim..][..dim];
        while h != 0 {
            let i = c as usize * W + h.trailing_zeros() as usize;
            h &= h - 1;
            // SAFETY: available() checked the CPU; both rows hold `dim` elements.
            let v = unsafe { ai::dot_f32_bf16(&qi.rows[i * dim..(i + 1) * dim], row) };
            sc.pairs.push((i as u32, j, v));
        }
    }
    #[cfg(test)]
    {
        sc.scored += sc.pairs.len();
    }
    for &(i, j, v) in &sc.pairs {
        let i = i as usize;
        if v > qmax[i] {
            qmax[i] = v;
            if let Some(a) = qarg.as_deref_mut() {
                a[i] = j;
            }
        }
    }
    true
}

/// Without the x86-64 kernels there is nothing to filter with ([`available`] is false).
#[cfg(not(target_arch = "x86_64"))]
#[allow(clippy::too_many_arguments)]
pub(super) fn score(
    _: &QueryInts,
    _: usize,
    _: &[u16],
    _: usize,
    _: &[i32],
    _: &mut Scratch,
    _: &mut [f32],
    _: Option<&mut [i32]>,
) -> bool {
    false
}
