//! AVX2 + FMA tiles: 4 document rows × 16 query lanes (two ymm per row), 8 accumulators.

use super::{Step, MR_MAX, TILE};
use core::arch::x86_64::*;

/// fp32 lanes per vector.
const V: usize = 8;
/// Query lanes per packed chunk.
pub const W: usize = 16;
/// Document rows per tile.
pub const MR: usize = 4;
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
                    // SAFETY: r * W + n * V + 8 <= MR * W <= TILE.
                    unsafe { _mm256_storeu_ps(t.as_mut_ptr().add(r * W + n * V), a) };
                }
            }
        }
        for n in 0..nr_vecs {
            let qm = &mut step.qmax[n * V..n * V + V];
            // SAFETY: `qm` holds V floats.
            let mut m = unsafe { _mm256_loadu_ps(qm.as_ptr()) };
            match step.qarg.as_deref_mut() {
                None => {
                    for (r, row) in acc.iter().enumerate() {
                        if r < step.mr {
                            // max_ps(s, m) is `s > m ? s : m`, the reference's update.
                            m = if r == 0 && step.first {
                                row[n]
                            } else {
                                _mm256_max_ps(row[n], m)
                            };
                        }
                    }
                }
                Some(qa) => {
                    let qa = &mut qa[n * V..n * V + V];
                    // SAFETY: `qa` holds V i32.
                    let mut a = unsafe { _mm256_loadu_si256(qa.as_ptr().cast()) };
                    for (r, row) in acc.iter().enumerate() {
                        if r < step.mr {
                            // Strictly greater keeps the first row on ties (rows come in order).
                            let k = if r == 0 && step.first {
                                _mm256_castsi256_ps(_mm256_set1_epi32(-1))
                            } else {
                                _mm256_cmp_ps::<_CMP_GT_OQ>(row[n], m)
                            };
                            m = _mm256_blendv_ps(m, row[n], k);
                            a = _mm256_blendv_epi8(
                                a,
                                _mm256_set1_epi32(step.jloc[r]),
                                _mm256_castps_si256(k),
                            );
                        }
                    }
                    // SAFETY: as above.
                    unsafe { _mm256_storeu_si256(qa.as_mut_ptr().cast(), a) };
                }
            }
            // SAFETY: as above.
            unsafe { _mm256_storeu_ps(qm.as_mut_ptr(), m) };
        }
    }};
}

#[target_feature(enable = "avx2,fma")]
#[inline]
fn tile_f32_nr<const NR: usize>(q: *const f32, dim: usize, rows: &[*const f32; MR_MAX], step: &mut Step) {
    let mut acc = [[_mm256_setzero_ps(); NR]; MR];
    let ahead = step.ahead;
    for k in 0..dim {
        if k % 2 == 0 && k / 2 < ahead.lines {
            super::prefetch_line(ahead.ptr.wrapping_add(k / 2 * 64));
        }
        // SAFETY: the packed chunk holds dim * W floats; each row holds dim floats.
        unsafe {
            let qk = q.add(k * W);
            let qv: [__m256; NR] = core::array::from_fn(|n| _mm256_loadu_ps(qk.add(n * V)));
            for (r, row) in acc.iter_mut().enumerate() {
                let b = _mm256_set1_ps(*rows[r].add(k));
                for n in 0..NR {
                    row[n] = _mm256_fmadd_ps(b, qv[n], row[n]);
                }
            }
        }
    }
    finish!(acc, step, NR);
}

/// fp32 tile; `nr` is 1 or 2 vectors of query lanes.
///
/// # Safety
/// See [`super::tile`]; the CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn tile_f32(q: *const f32, dim: usize, rows: &[*const f32; MR_MAX], nr: usize, step: &mut Step) {
    if nr == 1 {
        tile_f32_nr::<1>(q, dim, rows, step)
    } else {
        tile_f32_nr::<2>(q, dim, rows, step)
    }
}

/// bfloat16 bits to fp32 (a 16-bit shift), 8 at a time.
///
/// # Safety
/// The CPU must have AVX2; `dst.len() == src.len()`.
#[target_feature(enable = "avx2")]
pub unsafe fn widen_bf16(src: &[u16], dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n for both buffers.
        unsafe {
            let v = _mm_loadu_si128(src.as_ptr().add(i).cast());
            let w = _mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(v));
            _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_castsi256_ps(w));
        }
        i += 8;
    }
    for j in i..n {
        dst[j] = f32::from_bits((src[j] as u32) << 16);
    }
}

/// float16 bits to fp32 (F16C `vcvtph2ps`), 8 at a time.
///
/// # Safety
/// The CPU must have AVX2 and F16C; `dst.len() == src.len()`.
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn widen_f16(src: &[u16], dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n for both buffers.
        unsafe {
            let v = _mm_loadu_si128(src.as_ptr().add(i).cast());
            _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_cvtph_ps(v));
        }
        i += 8;
    }
    for j in i..n {
        dst[j] = half::f16::from_bits(src[j]).to_f32();
    }
}

/// See [`super::row_argmax`]: two vectors per row, invalid lanes and NaN turned into −∞ before
/// the horizontal max, then the first lane equal to it from a compare mask.
///
/// # Safety
/// The CPU must have AVX2; `lanes` in `1..=W`, `mr <= MR`.
#[target_feature(enable = "avx2")]
pub unsafe fn row_argmax(tile: &[f32; TILE], mr: usize, lanes: usize, out: &mut [usize; MR_MAX]) {
    let idx0 = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let idx1 = _mm256_add_epi32(idx0, _mm256_set1_epi32(V as i32));
    let n = _mm256_set1_epi32(lanes as i32);
    let k0 = _mm256_castsi256_ps(_mm256_cmpgt_epi32(n, idx0));
    let k1 = _mm256_castsi256_ps(_mm256_cmpgt_epi32(n, idx1));
    let ninf = _mm256_set1_ps(f32::NEG_INFINITY);
    for (r, o) in out.iter_mut().enumerate().take(mr.min(MR)) {
        // SAFETY: r * W + W <= MR * W <= TILE.
        let (v0, v1) = unsafe {
            let p = tile.as_ptr().add(r * W);
            (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(V)))
        };
        // max_ps(x, m) returns m when x is NaN, so NaN lanes drop out like the scalar fold's.
        let a0 = _mm256_max_ps(_mm256_blendv_ps(ninf, v0, k0), ninf);
        let a1 = _mm256_max_ps(_mm256_blendv_ps(ninf, v1, k1), ninf);
        let mut m = _mm256_max_ps(a0, a1);
        m = _mm256_max_ps(m, _mm256_permute2f128_ps::<1>(m, m));
        m = _mm256_max_ps(m, _mm256_shuffle_ps::<0b0100_1110>(m, m));
        m = _mm256_max_ps(m, _mm256_shuffle_ps::<0b1011_0001>(m, m));
        let e0 = _mm256_movemask_ps(_mm256_and_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(v0, m), k0)) as u32;
        let e1 = _mm256_movemask_ps(_mm256_and_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(v1, m), k1)) as u32;
        let eq = e0 | (e1 << V);
        *o = if eq == 0 { 0 } else { eq.trailing_zeros() as usize };
    }
}
