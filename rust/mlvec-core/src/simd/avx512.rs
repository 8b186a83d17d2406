//! AVX-512 tiles: 8 document rows × 32 query lanes (two zmm per row), 16 accumulators.

use super::{Step, MR_MAX, TILE};
use core::arch::x86_64::*;

/// fp32 lanes per vector.
const V: usize = 16;
/// Query lanes per packed chunk.
pub const W: usize = 32;
/// Document rows per tile.
pub const MR: usize = 8;
const _: () = assert!(MR <= MR_MAX && MR * W <= TILE);

/// Fold the accumulators into the running max/argmax of `step` (and spill them if asked).
/// A macro, not a function: the accumulators must stay in registers through the k loop,
/// which a call taking their address would prevent.
macro_rules! finish {
    ($acc:expr, $step:expr, $NR:expr) => {{
        let acc = &$acc;
        let step: &mut Step = $step;
        let nr_vecs: usize = $NR;

        if let Some(t) = step.tile.as_deref_mut() {
            for (r, row) in acc.iter().enumerate() {
                for (n, &a) in row.iter().enumerate() {
                    // SAFETY: r * W + n * V + 16 <= MR * W <= TILE.
                    unsafe { _mm512_storeu_ps(t.as_mut_ptr().add(r * W + n * V), a) };
                }
            }
        }
        for n in 0..nr_vecs {
            let qm = &mut step.qmax[n * V..n * V + V];
            // SAFETY: `qm` holds V floats.
            let mut m = unsafe { _mm512_loadu_ps(qm.as_ptr()) };
            match step.qarg.as_deref_mut() {
                None => {
                    for (r, row) in acc.iter().enumerate() {
                        if r < step.mr {
                            // max_ps(s, m) is `s > m ? s : m`, the reference's update.
                            m = if r == 0 && step.first {
                                row[n]
                            } else {
                                _mm512_max_ps(row[n], m)
                            };
                        }
                    }
                }
                Some(qa) => {
                    let qa = &mut qa[n * V..n * V + V];
                    // SAFETY: `qa` holds V i32.
                    let mut a = unsafe { _mm512_loadu_si512(qa.as_ptr().cast()) };
                    for (r, row) in acc.iter().enumerate() {
                        if r < step.mr {
                            // Strictly greater keeps the first row on ties (rows come in order).
                            let k = if r == 0 && step.first {
                                0xffff
                            } else {
                                _mm512_cmp_ps_mask::<_CMP_GT_OQ>(row[n], m)
                            };
                            m = _mm512_mask_blend_ps(k, m, row[n]);
                            a = _mm512_mask_blend_epi32(k, a, _mm512_set1_epi32(step.jloc[r]));
                        }
                    }
                    // SAFETY: as above.
                    unsafe { _mm512_storeu_si512(qa.as_mut_ptr().cast(), a) };
                }
            }
            // SAFETY: as above.
            unsafe { _mm512_storeu_ps(qm.as_mut_ptr(), m) };
        }
    }};
}

#[target_feature(enable = "avx512f")]
#[inline]
fn tile_f32_nr<const NR: usize>(q: *const f32, dim: usize, rows: &[*const f32; MR_MAX], step: &mut Step) {
    let mut acc = [[_mm512_setzero_ps(); NR]; MR];
    let ahead = step.ahead;
    for k in 0..dim {
        if k % 2 == 0 && k / 2 < ahead.lines {
            super::prefetch_line(ahead.ptr.wrapping_add(k / 2 * 64));
        }
        // SAFETY: the packed chunk holds dim * W floats; each row holds dim floats.
        unsafe {
            let qk = q.add(k * W);
            let qv: [__m512; NR] = core::array::from_fn(|n| _mm512_loadu_ps(qk.add(n * V)));
            for (r, row) in acc.iter_mut().enumerate() {
                let b = _mm512_set1_ps(*rows[r].add(k));
                for n in 0..NR {
                    row[n] = _mm512_fmadd_ps(b, qv[n], row[n]);
                }
            }
        }
    }
    finish!(acc, step, NR);
}

/// fp32 tile; `nr` is 1 or 2 vectors of query lanes.
///
/// # Safety
/// See [`super::tile`]; the CPU must have AVX-512F.
#[target_feature(enable = "avx512f")]
pub unsafe fn tile_f32(q: *const f32, dim: usize, rows: &[*const f32; MR_MAX], nr: usize, step: &mut Step) {
    if nr == 1 {
        tile_f32_nr::<1>(q, dim, rows, step)
    } else {
        tile_f32_nr::<2>(q, dim, rows, step)
    }
}

#[target_feature(enable = "avx512f,avx512bf16")]
#[inline]
fn tile_bf16_nr<const NR: usize>(q: *const u16, dim2: usize, rows: &[*const u16; MR_MAX], step: &mut Step) {
    let mut acc = [[_mm512_setzero_ps(); NR]; MR];
    let ahead = step.ahead;
    for k in 0..dim2 {
        if k % 2 == 0 && k / 2 < ahead.lines {
            super::prefetch_line(ahead.ptr.wrapping_add(k / 2 * 64));
        }
        // SAFETY: the packed chunk holds dim2 * W pairs of bf16; each row holds 2 * dim2 bf16.
        // __m512i and __m512bh are both 64 plain bytes, so transmuting between them is sound.
        unsafe {
            let qk = q.add(k * 2 * W);
            let qv: [__m512bh; NR] = core::array::from_fn(|n| {
                core::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(qk.add(n * 2 * V).cast()))
            });
            for (r, row) in acc.iter_mut().enumerate() {
                let pair = rows[r].add(2 * k).cast::<i32>().read_unaligned();
                let b = core::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(pair));
                for n in 0..NR {
                    row[n] = _mm512_dpbf16_ps(row[n], qv[n], b);
                }
            }
        }
    }
    finish!(acc, step, NR);
}

/// bfloat16 tile with `vdpbf16ps`: pairs of dimensions per instruction, fp32 accumulation.
///
/// # Safety
/// See [`super::tile`]; the CPU must have AVX-512F and AVX-512 BF16.
#[target_feature(enable = "avx512f,avx512bf16")]
pub unsafe fn tile_bf16(q: *const u16, dim2: usize, rows: &[*const u16; MR_MAX], nr: usize, step: &mut Step) {
    if nr == 1 {
        tile_bf16_nr::<1>(q, dim2, rows, step)
    } else {
        tile_bf16_nr::<2>(q, dim2, rows, step)
    }
}

/// bfloat16 bits to fp32 (a 16-bit shift), 16 at a time.
///
/// # Safety
/// The CPU must have AVX-512F; `dst.len() == src.len()`.
#[target_feature(enable = "avx512f")]
pub unsafe fn widen_bf16(src: &[u16], dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: i + 16 <= n for both buffers.
        unsafe {
            let v = _mm256_loadu_si256(src.as_ptr().add(i).cast());
            let w = _mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(v));
            _mm512_storeu_ps(dst.as_mut_ptr().add(i), _mm512_castsi512_ps(w));
        }
        i += 16;
    }
    for j in i..n {
        dst[j] = f32::from_bits((src[j] as u32) << 16);
    }
}

/// float16 bits to fp32 (`vcvtph2ps`), 16 at a time.
///
/// # Safety
/// The CPU must have AVX-512F; `dst.len() == src.len()`.
#[target_feature(enable = "avx512f")]
pub unsafe fn widen_f16(src: &[u16], dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: i + 16 <= n for both buffers.
        unsafe {
            let v = _mm256_loadu_si256(src.as_ptr().add(i).cast());
            _mm512_storeu_ps(dst.as_mut_ptr().add(i), _mm512_cvtph_ps(v));
        }
        i += 16;
    }
    for j in i..n {
        dst[j] = half::f16::from_bits(src[j]).to_f32();
    }
}

/// See [`super::row_argmax`]: two vectors per row, invalid lanes and NaN turned into −∞ before
/// the horizontal max, then the first lane equal to it from a compare mask.
///
/// # Safety
/// The CPU must have AVX-512F; `lanes` in `1..=W`, `mr <= MR`.
#[target_feature(enable = "avx512f")]
pub unsafe fn row_argmax(tile: &[f32; TILE], mr: usize, lanes: usize, out: &mut [usize; MR_MAX]) {
    let valid: u32 = if lanes >= W { u32::MAX } else { (1u32 << lanes) - 1 };
    let (k0, k1) = (valid as u16, (valid >> 16) as u16);
    let ninf = _mm512_set1_ps(f32::NEG_INFINITY);
    for (r, o) in out.iter_mut().enumerate().take(mr.min(MR)) {
        // SAFETY: r * W + W <= MR * W <= TILE.
        let (v0, v1) = unsafe {
            let p = tile.as_ptr().add(r * W);
            (_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(V)))
        };
        // max_ps(x, m) returns m when x is NaN, so NaN lanes drop out like the scalar fold's.
        let a0 = _mm512_max_ps(_mm512_mask_blend_ps(k0, ninf, v0), ninf);
        let a1 = _mm512_max_ps(_mm512_mask_blend_ps(k1, ninf, v1), ninf);
        let best = _mm512_set1_ps(_mm512_reduce_max_ps(_mm512_max_ps(a0, a1)));
        let e0 = _mm512_mask_cmp_ps_mask::<_CMP_EQ_OQ>(k0, v0, best) as u32;
        let e1 = _mm512_mask_cmp_ps_mask::<_CMP_EQ_OQ>(k1, v1, best) as u32;
        let eq = e0 | (e1 << 16);
        *o = if eq == 0 { 0 } else { eq.trailing_zeros() as usize };
    }
}
