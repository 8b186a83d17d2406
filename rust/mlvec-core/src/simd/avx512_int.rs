//! AVX-512 integer kernels of the bfloat16 MaxSim pre-filter (the bounds are derived in
//! `maxsim::prefilter`).
//!
//! [`first_pass`]: each tile of 8 document rows is quantized to uint8 (`x / sd + 128`, one scale
//! per tile) and multiplied with a query chunk quantized to int8 (`[stride / 4][W][4]`) by
//! `vpdpbusd`, four times the multiply-adds of an fp32 FMA per instruction; the int32 dot
//! products are kept, and each tile's maximum per query lane raises that lane's lower bound.
//! [`second_pass`]: the rows whose upper bound reaches some lane's lower bound, as integer
//! thresholds per tile. [`dot_f32_bf16`] then scores the surviving pairs in fp32.

use super::{int8_in_range as in_range, Ahead, INT8_MAX as QMAX};
use core::arch::x86_64::*;

/// int32 lanes per vector.
const V: usize = 16;
/// Query lanes per packed chunk (as the fp32 kernel's).
pub const W: usize = 32;
/// Document rows per tile.
pub const MR: usize = 8;

/// Round to nearest (ties to even) whatever MXCSR says: the error bounds assume it.
const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

/// Mask of the first `n` (≤ 32) 16-bit lanes.
#[inline(always)]
fn lanes16(n: usize) -> __mmask32 {
    if n >= 32 {
        u32::MAX
    } else {
        (1u32 << n) - 1
    }
}

/// 32 bfloat16 bits from `p + k`, zero past `dim` (`FULL`: `dim` is a multiple of 64, no mask).
///
/// # Safety
/// `p` must be valid for `dim` elements.
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
unsafe fn load32<const FULL: bool>(p: *const u16, k: usize, dim: usize) -> __m512i {
    // SAFETY: unmasked only when the 32 elements lie inside the row; masked loads read only
    // the row's elements.
    unsafe {
        if FULL {
            _mm512_loadu_si512(p.add(k).cast())
        } else {
            let mask = if k < dim { lanes16(dim - k) } else { 0 };
            _mm512_maskz_loadu_epi16(mask, p.add(k).cast())
        }
    }
}

/// Largest `|x|` over `mr` rows of `dim` bfloat16 values, as bits with the sign cleared (the
/// order of such bits is the order of the magnitudes; `>= 0x7f80` means inf or NaN).
///
/// # Safety
/// The CPU must have AVX-512F and BW; each of the first `mr` pointers must be valid for `dim`
/// elements; `FULL` only when `dim` is a multiple of 64 (then no load is masked).
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
unsafe fn max_abs_bf16<const FULL: bool>(rows: &[*const u16; MR], mr: usize, dim: usize) -> u16 {
    let abs = _mm512_set1_epi16(0x7fff);
    let mut m = _mm512_setzero_si512();
    for &p in rows.iter().take(mr) {
        let mut k = 0;
        while k < dim {
            // SAFETY: the caller's contract.
            let x = unsafe { load32::<FULL>(p, k, dim) };
            m = _mm512_max_epu16(m, _mm512_and_si512(x, abs));
            k += 32;
        }
    }
    let hi = _mm512_extracti64x4_epi64::<1>(m);
    let m = _mm256_max_epu16(_mm512_castsi512_si256(m), hi);
    let m = _mm_max_epu16(_mm256_castsi256_si128(m), _mm256_extracti128_si256::<1>(m));
    let mut out = [0u16; 8];
    // SAFETY: 8 u16 = 16 bytes.
    unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), m) };
    out.into_iter().max().unwrap_or(0)
}

/// Element of a 64-wide block that byte `p` of [`quantize_bf16_u8`]'s output holds: the two
/// saturating packs interleave their inputs per 128-bit lane, and the query is packed in the
/// same order, so the dot products are unchanged.
pub const fn packed_position(p: usize) -> usize {
    let (lane, half, e) = (p / 16, (p / 8) % 2, p % 8);
    half * 32 + lane * 8 + e
}

/// Quantize `mr` rows of bfloat16 bits to `round(x * inv) + 128` in uint8 (`round` saturating
/// to ±127 is the caller's scale), row `r` at `dst + r * stride`, each 64-element block in
/// [`packed_position`] order; elements from `dim` up to `stride` are zero (128 stored).
/// Also sums, per row, `x²` into `norm2[r]` (fp32; rows past `mr` get 0).
///
/// # Safety
/// The CPU must have AVX-512F and BW; each of the first `mr` pointers must be valid for `dim`
/// elements; `dst` for `mr * stride` bytes; `stride` a multiple of 64 and `>= dim`; `FULL` only
/// when `dim` is a multiple of 64.
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
unsafe fn quantize_bf16_u8<const FULL: bool>(
    rows: &[*const u16; MR],
    mr: usize,
    dim: usize,
    inv: f32,
    dst: *mut u8,
    stride: usize,
    norm2: &mut [f32; MR],
) {
    let vinv = _mm512_set1_ps(inv);
    let mut sums = [_mm512_setzero_ps(); MR];
    let bias = _mm512_set1_epi8(-128);
    for (r, &p) in rows.iter().enumerate().take(mr) {
        let mut n2 = _mm512_setzero_ps();
        let mut k = 0;
        while k < stride {
            // SAFETY: the masked loads read only the row's `dim` elements; the store writes
            // 64 bytes inside row `r` of `dst` (k + 64 <= stride).
            unsafe {
                let a0 = quantize32(load32::<FULL>(p, k, dim), vinv, &mut n2);
                let a1 = quantize32(load32::<FULL>(p, k + 32, dim), vinv, &mut n2);
                let b = _mm512_packs_epi16(a0, a1);
                _mm512_storeu_si512(dst.add(r * stride + k).cast(), _mm512_xor_si512(b, bias));
            }
            k += 64;
        }
        sums[r] = n2;
    }
    // SAFETY: 8 floats into 8.
    unsafe { _mm256_storeu_ps(norm2.as_mut_ptr(), sum8(&sums)) };
}

/// The 8 horizontal sums of 8 vectors, as one transposing tree (not 8 dependent reductions).
#[target_feature(enable = "avx512f")]
#[inline]
fn sum8(v: &[__m512; MR]) -> __m256 {
    // Per 128-bit lane: [a0+a2, b0+b2, a1+a3, b1+b3] for each pair of rows.
    // (Macros, not closures: a closure would not inherit the target features and stay a call.)
    macro_rules! pair {
        ($a:expr, $b:expr) => {
            _mm512_add_ps(_mm512_unpacklo_ps($a, $b), _mm512_unpackhi_ps($a, $b))
        };
    }
    let (t0, t1, t2, t3) = (
        pair!(v[0], v[1]),
        pair!(v[2], v[3]),
        pair!(v[4], v[5]),
        pair!(v[6], v[7]),
    );
    // Per 128-bit lane: the partial sums of rows 0..4 (u0) and 4..8 (u1).
    macro_rules! quad {
        ($a:expr, $b:expr) => {
            _mm512_add_ps(
                _mm512_shuffle_ps::<0b01_00_01_00>($a, $b),
                _mm512_shuffle_ps::<0b11_10_11_10>($a, $b),
            )
        };
    }
    let (u0, u1) = (quad!(t0, t1), quad!(t2, t3));
    // Add the four 128-bit lanes: rows 0..4 in lane 0, rows 4..8 in lane 1.
    let w = _mm512_add_ps(
        _mm512_shuffle_f32x4::<0b10_00_10_00>(u0, u1),
        _mm512_shuffle_f32x4::<0b11_01_11_01>(u0, u1),
    );
    let z = _mm512_add_ps(
        _mm512_shuffle_f32x4::<0b00_00_10_00>(w, w),
        _mm512_shuffle_f32x4::<0b00_00_11_01>(w, w),
    );
    _mm512_castps512_ps256(z)
}

/// 32 bfloat16 elements `x` as int16 `round(x * inv)`, in order within each 128-bit lane; adds
/// their `x²` to `n2`.
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
fn quantize32(x: __m512i, vinv: __m512, n2: &mut __m512) -> __m512i {
    // Zero below each bf16 gives its fp32 bits; the pack puts each element back where it came
    // from within its 128-bit lane.
    let zero = _mm512_setzero_si512();
    let lo = _mm512_castsi512_ps(_mm512_unpacklo_epi16(zero, x));
    let hi = _mm512_castsi512_ps(_mm512_unpackhi_epi16(zero, x));
    let li = _mm512_cvt_roundps_epi32::<NEAREST>(_mm512_mul_ps(lo, vinv));
    let hi_ = _mm512_cvt_roundps_epi32::<NEAREST>(_mm512_mul_ps(hi, vinv));
    *n2 = _mm512_fmadd_ps(hi, hi, _mm512_fmadd_ps(lo, lo, *n2));
    _mm512_packs_epi32(li, hi_)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
fn tile_u8_nr<const NR: usize>(
    q: *const i8,
    dim4: usize,
    rows: *const u8,
    stride: usize,
    out: *mut i32,
    tile_max: *mut i32,
    ahead: Ahead,
) {
    let mut acc = [[_mm512_setzero_si512(); NR]; MR];
    for k in 0..dim4 {
        if k < ahead.lines {
            super::prefetch_line(ahead.ptr.wrapping_add(k * 64));
        }
        // SAFETY: the packed chunk holds dim4 * W groups of 4 int8; each row 4 * dim4 bytes.
        unsafe {
            let qk = q.add(k * 4 * W);
            let mut qv = [_mm512_setzero_si512(); NR];
            for (n, v) in qv.iter_mut().enumerate() {
                *v = _mm512_loadu_si512(qk.add(n * 4 * V).cast());
            }
            // One base pointer and constant multiples of the stride: eight row pointers would
            // not fit in registers beside the loop's other state.
            let at = rows.add(4 * k);
            for (r, row) in acc.iter_mut().enumerate() {
                let b = _mm512_set1_epi32(at.add(r * stride).cast::<i32>().read_unaligned());
                for n in 0..NR {
                    row[n] = _mm512_dpbusd_epi32(row[n], b, qv[n]);
                }
            }
        }
    }
    for n in 0..NR {
        let mut m = acc[0][n];
        for (r, row) in acc.iter().enumerate() {
            m = _mm512_max_epi32(m, row[n]);
            // SAFETY: out holds MR * W int32.
            unsafe { _mm512_storeu_si512(out.add(r * W + n * V).cast(), row[n]) };
        }
        // SAFETY: tile_max holds W int32.
        unsafe { _mm512_storeu_si512(tile_max.add(n * V).cast(), m) };
    }
}

/// Integer dot products of 8 quantized rows (uint8, `x + 128`, row `r` at `rows + r * stride`)
/// with one query chunk (int8, `[dim4][W][4]`): `out[r * W + l]` for row `r` and lane `l` (each
/// sum still holds the `128 · Σ q` of the row bias), and `tile_max[l]` the largest over the 8
/// rows (rows past the real ones must repeat a real row). `nr` is 1 or 2 vectors of query lanes (lanes past
/// `16 * nr` are left as they are). Asks for `ahead.lines` lines, one per k step.
///
/// # Safety
/// The CPU must have AVX-512F, BW and VNNI; `q` holds `dim4 * W` groups of 4 int8; `rows`
/// `MR` rows of `stride >= 4 * dim4` bytes; `out` `MR * W` and `tile_max` `W` int32.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_u8(
    q: *const i8,
    dim4: usize,
    rows: *const u8,
    stride: usize,
    nr: usize,
    out: *mut i32,
    tile_max: *mut i32,
    ahead: Ahead,
) {
    if nr == 1 {
        tile_u8_nr::<1>(q, dim4, rows, stride, out, tile_max, ahead)
    } else {
        tile_u8_nr::<2>(q, dim4, rows, stride, out, tile_max, ahead)
    }
}

/// Per-lane bound coefficients of one query chunk (`W` lanes each): the dot products' bias
/// `corr`, the dequantization factor `scale` (and `1 / scale`) and the error coefficients `a`
/// and `b` (see `maxsim::prefilter`).
struct Lanes<'a> {
    corr: &'a [f32],
    scale: &'a [f32],
    inv_scale: &'a [f32],
    a: &'a [f32],
    b: &'a [f32],
}

/// A tile's scalars: the dequantization factor `sd` (and the quantization factor `inv ≈ 1 / sd`),
/// and over its rows the bounds `dm ≥ ‖d‖₂ + ‖d − d̃‖₂` and `ed ≥ max|d − d̃|`.
#[derive(Clone, Copy)]
struct TileBounds {
    sd: f32,
    inv: f32,
    dm: f32,
    ed: f32,
}

/// Lane vector `n`'s `(corr, f = scale · sd)`.
#[target_feature(enable = "avx512f")]
#[inline]
fn lane_factors(l: &Lanes, n: usize, sd: f32) -> (__m512, __m512) {
    // SAFETY: every slice of `l` holds W = 2 * V floats (n < 2).
    unsafe {
        let (corr, scale) = (
            _mm512_loadu_ps(l.corr.as_ptr().add(n * V)),
            _mm512_loadu_ps(l.scale.as_ptr().add(n * V)),
        );
        (corr, _mm512_mul_ps(scale, _mm512_set1_ps(sd)))
    }
}

/// Lane vector `n`'s `ε = (a · dm + b · ed)(1 + 2⁻¹⁰)` for one row's `dm`, `ed`.
#[target_feature(enable = "avx512f")]
#[inline]
fn lane_eps(l: &Lanes, n: usize, dm: f32, ed: f32) -> __m512 {
    // SAFETY: every slice of `l` holds W = 2 * V floats (n < 2).
    unsafe {
        let (a, b) = (
            _mm512_loadu_ps(l.a.as_ptr().add(n * V)),
            _mm512_loadu_ps(l.b.as_ptr().add(n * V)),
        );
        let e = _mm512_fmadd_ps(a, _mm512_set1_ps(dm), _mm512_mul_ps(b, _mm512_set1_ps(ed)));
        _mm512_mul_ps(e, _mm512_set1_ps(1.0 + 1.0 / 1024.0))
    }
}

/// Raise the running lower bounds `low` (W lanes) to `(tile_max − corr) · f − ε` (a lower bound
/// for whichever row holds the maximum, `ε` covering every row of the tile).
///
/// # Safety
/// The CPU must have AVX-512F; `low` and `tile_max` hold `W` entries.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn raise_lower(low: &mut [f32], tile_max: &[i32], l: &Lanes, tb: TileBounds) {
    for n in 0..W / V {
        let (corr, f) = lane_factors(l, n, tb.sd);
        let e = lane_eps(l, n, tb.dm, tb.ed);
        // SAFETY: low and tile_max hold W >= (n + 1) * V entries.
        unsafe {
            let m = _mm512_cvtepi32_ps(_mm512_loadu_si512(tile_max.as_ptr().add(n * V).cast()));
            let lb = _mm512_fmsub_ps(_mm512_sub_ps(m, corr), f, e);
            let lo = _mm512_loadu_ps(low.as_ptr().add(n * V));
            _mm512_storeu_ps(low.as_mut_ptr().add(n * V), _mm512_max_ps(lo, lb));
        }
    }
}

/// The integer dot product each lane's raw sum (bias included) must reach for its upper bound
/// `(dot − corr) · f + ε` to reach the lane's lower bound `low`: `⌊corr + (low − ε) / f⌋`, less
/// a margin for the rounding of that expression (`1 / f` is taken as `(1 / scale) · inv`: with
/// the division, addition and conversion, at most 7 roundings of 2⁻²⁴ relative to
/// `|t| + |corr|`, well inside the margin's 2⁻²⁰) (`i32::MIN`, every row, when `f` is 0 and
/// `ε ≥ low`, or when the value is out of range; `i32::MAX` when `f` is 0 and `ε < low`).
/// `ε` covers every row of the tile.
///
/// # Safety
/// The CPU must have AVX-512F; `low` holds `W` entries.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn thresholds(l: &Lanes, tb: TileBounds, low: &[f32], out: &mut [i32; W]) {
    let margin = _mm512_set1_ps(1.0 / (1u32 << 20) as f32);
    for n in 0..W / V {
        let (corr, f) = lane_factors(l, n, tb.sd);
        let e = lane_eps(l, n, tb.dm, tb.ed);
        // SAFETY: low and out hold W >= (n + 1) * V entries.
        unsafe {
            let lv = _mm512_loadu_ps(low.as_ptr().add(n * V));
            let gap = _mm512_sub_ps(lv, e);
            let inv_f = _mm512_mul_ps(
                _mm512_loadu_ps(l.inv_scale.as_ptr().add(n * V)),
                _mm512_set1_ps(tb.inv),
            );
            let t = _mm512_fmadd_ps(gap, inv_f, corr);
            let size = _mm512_add_ps(_mm512_abs_ps(t), _mm512_abs_ps(corr));
            let slack = _mm512_fmadd_ps(size, margin, _mm512_set1_ps(1.0));
            // Out-of-range (and NaN) conversions give i32::MIN: every row, the safe side.
            let thr = _mm512_cvt_roundps_epi32::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(
                _mm512_sub_ps(t, slack),
            );
            let zero_f = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(f, _mm512_setzero_ps());
            let reach = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(gap, _mm512_setzero_ps());
            let flat =
                _mm512_mask_blend_epi32(reach, _mm512_set1_epi32(i32::MAX), _mm512_set1_epi32(i32::MIN));
            _mm512_storeu_si512(
                out.as_mut_ptr().add(n * V).cast(),
                _mm512_mask_blend_epi32(zero_f, thr, flat),
            );
        }
    }
}

/// Lanes (among `lanes`) where `dots[l] >= thr[l]`, for `W` int32.
///
/// # Safety
/// The CPU must have AVX-512F; `dots` holds `W` entries.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn reaching(dots: &[i32], thr: &[i32; W], lanes: u32) -> u32 {
    // SAFETY: both hold W = 2 * V int32.
    unsafe {
        let (d0, d1) = (
            _mm512_loadu_si512(dots.as_ptr().cast()),
            _mm512_loadu_si512(dots.as_ptr().add(V).cast()),
        );
        let (t0, t1) = (
            _mm512_loadu_si512(thr.as_ptr().cast()),
            _mm512_loadu_si512(thr.as_ptr().add(V).cast()),
        );
        let a = _mm512_mask_cmpge_epi32_mask(lanes as u16, d0, t0) as u32;
        let b = _mm512_mask_cmpge_epi32_mask((lanes >> 16) as u16, d1, t1);
        a | (b as u32) << 16
    }
}

/// `Σ_k q[k] · x[k]` for fp32 `q` and bfloat16 bits `x` (fp32 multiply-adds in four
/// accumulators of 16 lanes, then a tree sum).
///
/// # Safety
/// The CPU must have AVX-512F, BW and VL; `q.len() == x.len()`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub unsafe fn dot_f32_bf16(q: &[f32], x: &[u16]) -> f32 {
    let dim = q.len().min(x.len());
    let (qp, xp) = (q.as_ptr(), x.as_ptr());
    let (mut a0, mut a1, mut a2, mut a3) = (
        _mm512_setzero_ps(),
        _mm512_setzero_ps(),
        _mm512_setzero_ps(),
        _mm512_setzero_ps(),
    );
    let mut k = 0;
    // SAFETY: every load is inside the first `dim` elements (masked at the tail).
    unsafe {
        macro_rules! term {
            ($k:expr) => {
                (
                    _mm512_loadu_ps(qp.add($k)),
                    _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(
                        _mm256_loadu_si256(xp.add($k).cast()),
                    ))),
                )
            };
        }
        while k + 64 <= dim {
            let (q0, x0) = term!(k);
            let (q1, x1) = term!(k + 16);
            let (q2, x2) = term!(k + 32);
            let (q3, x3) = term!(k + 48);
            a0 = _mm512_fmadd_ps(q0, x0, a0);
            a1 = _mm512_fmadd_ps(q1, x1, a1);
            a2 = _mm512_fmadd_ps(q2, x2, a2);
            a3 = _mm512_fmadd_ps(q3, x3, a3);
            k += 64;
        }
        while k < dim {
            let mask = if dim - k >= 16 {
                0xffff
            } else {
                (1u16 << (dim - k)) - 1
            };
            let xv = _mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(
                mask,
                xp.add(k).cast(),
            )));
            a0 = _mm512_fmadd_ps(
                _mm512_maskz_loadu_ps(mask, qp.add(k)),
                _mm512_castsi512_ps(xv),
                a0,
            );
            k += 16;
        }
    }
    _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)))
}

/// One query set quantized for the filter (see `maxsim::prefilter`).
pub struct Query<'a> {
    /// `[chunks][stride / 4][W][4]` int8.
    pub ints: &'a [i8],
    /// Valid query lanes.
    pub nl: usize,
    /// Per packed lane (`chunks * W`): bias, dequantization factor, error coefficients.
    pub corr: &'a [f32],
    pub scale: &'a [f32],
    pub inv_scale: &'a [f32],
    pub a: &'a [f32],
    pub b: &'a [f32],
}

impl Query<'_> {
    fn lanes(&self, c: usize) -> Lanes<'_> {
        let r = c * W..(c + 1) * W;
        Lanes {
            corr: &self.corr[r.clone()],
            scale: &self.scale[r.clone()],
            inv_scale: &self.inv_scale[r.clone()],
            a: &self.a[r.clone()],
            b: &self.b[r],
        }
    }
    fn chunks(&self) -> usize {
        self.nl.div_ceil(W)
    }
    /// Mask of chunk `c`'s valid lanes.
    fn mask(&self, c: usize) -> u32 {
        let lanes = W.min(self.nl - c * W);
        if lanes >= 32 {
            u32::MAX
        } else {
            (1u32 << lanes) - 1
        }
    }
}

/// One bfloat16 document: its set's first packed row `first` of `bits` (rows of `dim`), and
/// its valid positions.
pub struct Doc<'a> {
    pub bits: &'a [u16],
    pub first: usize,
    pub valid: &'a [i32],
    pub dim: usize,
}

impl Doc<'_> {
    /// Tile `t`'s row pointers (rows past the real ones repeat the last) and real row count.
    #[inline(always)]
    fn tile_rows(&self, t: usize) -> ([*const u16; MR], usize) {
        let (tb, mr) = (t * MR, MR.min(self.valid.len() - t * MR));
        let rows = core::array::from_fn(|r| {
            let j = self.valid[tb + r.min(mr - 1)] as usize;
            self.bits[(self.first + j) * self.dim..][..self.dim].as_ptr()
        });
        (rows, mr)
    }
}

/// What the first pass leaves for the second.
#[derive(Default)]
pub struct Pass {
    /// Two tiles of quantized rows, `2 × MR × stride`.
    ints: Vec<u8>,
    /// Integer dot products, `[tile][chunk][MR][W]`.
    dots: Vec<i32>,
    /// Their maximum over each tile's rows, `[tile][chunk][W]`.
    tile_max: Vec<i32>,
    /// Per tile: its scale and norm bounds.
    bounds: Vec<TileBounds>,
    /// Per tile row: its sum of squares (0 past the real rows), `[tile][MR]`.
    norms: Vec<f32>,
    /// Per chunk: the running lower bound of each lane's maximum.
    low: Vec<f32>,
}

/// How far ahead (in tiles of 8 rows) the first pass asks for document rows.
const PREFETCH_TILES: usize = 8;

/// Rounding slack on a norm summed in fp32 (≤ 512 squares: far below 2⁻¹⁰ relative).
const NORM_UP: f32 = 1.0 + 1.0 / 1024.0;

/// Quantize every tile of `d`, take its integer dot products with `q`, and raise the lower
/// bounds; `false` (and `p` unusable) when a tile holds inf/NaN or a value out of range.
///
/// # Safety
/// The CPU must have AVX-512F, BW and VNNI; `q` is `d.dim`'s packing (stride
/// `d.dim.next_multiple_of(64)`), `d.valid` non-empty with every row inside `d.bits`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub unsafe fn first_pass(q: &Query, d: &Doc, p: &mut Pass) -> bool {
    // SAFETY: forwarded; rows of a multiple of 64 elements need no masked loads.
    unsafe {
        if d.dim.is_multiple_of(64) {
            first_pass_::<true>(q, d, p)
        } else {
            first_pass_::<false>(q, d, p)
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
unsafe fn first_pass_<const FULL: bool>(q: &Query, d: &Doc, p: &mut Pass) -> bool {
    let (dim, nv, chunks) = (d.dim, d.valid.len(), q.chunks());
    let stride = dim.next_multiple_of(64);
    let tiles = nv.div_ceil(MR);
    // Two tile buffers, alternating: quantizing the next tile does not wait on the loads of
    // the one before.
    p.ints.resize(2 * MR * stride, 0);
    p.dots.resize(tiles * chunks * MR * W, 0);
    p.tile_max.resize(tiles * chunks * W, 0);
    p.norms.resize(tiles * MR, 0.0);
    p.bounds.clear();
    p.low.clear();
    p.low.resize(chunks * W, f32::NEG_INFINITY);
    let root = (dim as f32).sqrt();
    // The integer pass first; the bounds after, in their own loop, so their short dependent
    // chains do not hold up the next tile.
    for t in 0..tiles {
        let (rows16, mr) = d.tile_rows(t);
        // SAFETY: each pointer starts a full row of `dim` (tile_rows sliced it).
        let max_bits = unsafe { max_abs_bf16::<FULL>(&rows16, mr, dim) };
        let max_d = f32::from_bits((max_bits as u32) << 16);
        if max_bits >= 0x7f80 || !in_range(max_d) {
            return false; // inf, NaN, or out of range
        }
        let inv = if max_d == 0.0 { 0.0 } else { QMAX / max_d };
        let sd = max_d / QMAX;
        let buf = (t % 2) * MR * stride;
        let n2: &mut [f32; MR] = (&mut p.norms[t * MR..(t + 1) * MR]).try_into().unwrap();
        // SAFETY: as above; each buffer holds MR rows of `stride` (a multiple of 64, >= dim).
        unsafe { quantize_bf16_u8::<FULL>(&rows16, mr, dim, inv, p.ints.as_mut_ptr().add(buf), stride, n2) };
        // Rows past the real ones repeat the last (a row of zeros would feed its 0 into the
        // tile's maximum); their norms are 0.
        for r in mr..MR {
            p.ints
                .copy_within(buf + (mr - 1) * stride..buf + mr * stride, buf + r * stride);
        }
        // Rows `PREFETCH_TILES` tiles ahead in memory order (the next document's near this
        // one's end), asked for while this tile computes: one tile ahead left the pass waiting
        // on memory when documents stream from DRAM.
        let next = rows16[0].wrapping_add(MR * dim * PREFETCH_TILES).cast::<u8>();
        let ahead = Ahead {
            ptr: next.wrapping_add((64 - next as usize % 64) % 64),
            lines: (MR * dim * 2).div_ceil(64),
        };
        for c in 0..chunks {
            let at = (t * chunks + c) * W;
            // SAFETY: the chunk holds stride / 4 * W groups of 4 int8; each quantized row
            // `stride` bytes; dots and tile_max have room for this tile and chunk.
            unsafe {
                let dots = p.dots.as_mut_ptr().add(at * MR);
                let tmax = p.tile_max.as_mut_ptr().add(at);
                let nr = if q.mask(c) >> 16 == 0 { 1 } else { 2 };
                let ahead = if c == 0 { ahead } else { Ahead::NONE };
                tile_u8(
                    q.ints[c * stride * W..].as_ptr(),
                    stride / 4,
                    p.ints.as_ptr().add(buf),
                    stride,
                    nr,
                    dots,
                    tmax,
                    ahead,
                );
            }
        }
        // Each element is off by at most 0.501·sd (rounding to the grid, plus the fp32
        // rounding of x·inv and of sd itself); `dm` (set below) bounds both ‖d‖ and ‖d̃‖.
        p.bounds.push(TileBounds {
            sd,
            inv,
            ed: 0.501 * sd,
            dm: 0.0,
        });
    }
    for (t, tb) in p.bounds.iter_mut().enumerate() {
        let n2max = p.norms[t * MR..(t + 1) * MR]
            .iter()
            .fold(0f32, |a, &x| if x > a { x } else { a });
        tb.dm = n2max.sqrt() * NORM_UP + root * tb.ed;
        for c in 0..chunks {
            let at = (t * chunks + c) * W;
            // SAFETY: every slice holds W entries.
            unsafe {
                raise_lower(
                    &mut p.low[c * W..(c + 1) * W],
                    &p.tile_max[at..at + W],
                    &q.lanes(c),
                    *tb,
                )
            };
        }
    }
    true
}

/// After [`first_pass`]: for each tile row whose upper bound reaches some lane's lower bound,
/// `(row index in d.valid, chunk, lane mask)`, rows in order.
///
/// # Safety
/// The CPU must have AVX-512F; `p` is what [`first_pass`] left for these `q` and `d`.
#[target_feature(enable = "avx512f")]
pub unsafe fn second_pass(q: &Query, d: &Doc, p: &Pass, hits: &mut Vec<(u32, u32, u32)>) {
    let (nv, chunks) = (d.valid.len(), q.chunks());
    let mut thr = [0i32; W];
    hits.clear();
    for (t, &tb) in p.bounds.iter().enumerate() {
        let mr = MR.min(nv - t * MR);
        for c in 0..chunks {
            let mask = q.mask(c);
            let at = (t * chunks + c) * W;
            // SAFETY: every slice holds W entries.
            unsafe {
                thresholds(&q.lanes(c), tb, &p.low[c * W..(c + 1) * W], &mut thr);
                if reaching(&p.tile_max[at..at + W], &thr, mask) == 0 {
                    continue; // no row of this tile reaches any lane
                }
                // Written whether or not it hits, kept only if it does: no branch to mispredict.
                let n = hits.len();
                hits.resize(n + mr, (0, 0, 0));
                let mut kept = n;
                for r in 0..mr {
                    let h = reaching(&p.dots[at * MR + r * W..][..W], &thr, mask);
                    hits[kept] = ((t * MR + r) as u32, c as u32, h);
                    kept += (h != 0) as usize;
                }
                hits.truncate(kept);
            }
        }
    }
}
