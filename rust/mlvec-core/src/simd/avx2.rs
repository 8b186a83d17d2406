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

#[target_feature(enable = "avx2,fma")]
#[inline]
fn finish<const NR: usize>(acc: &[[__m256; NR]; MR], step: &mut Step) {
    if let Some(t) = step.tile.as_deref_mut() {
        for (r, row) in acc.iter().enumerate() {
            for (n, &a) in row.iter().enumerate() {
                // SAFETY: r * W + n * V + 8 <= MR * W <= TILE.
                unsafe { _mm256_storeu_ps(t.as_mut_ptr().add(r * W + n * V), a) };
            }
        }
    }
    for n in 0..NR {
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
                        a = _mm256_blendv_epi8(a, _mm256_set1_epi32(step.jloc[r]), _mm256_castps_si256(k));
                    }
                }
                // SAFETY: as above.
                unsafe { _mm256_storeu_si256(qa.as_mut_ptr().cast(), a) };
            }
        }
        // SAFETY: as above.
        unsafe { _mm256_storeu_ps(qm.as_mut_ptr(), m) };
    }
}

#[target_feature(enable = "avx2,fma")]
#[inline]
fn tile_f32_nr<const NR: usize>(q: *const f32, dim: usize, rows: &[*const f32; MR_MAX], step: &mut Step) {
    let mut acc = [[_mm256_setzero_ps(); NR]; MR];
    for k in 0..dim {
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
    finish(&acc, step);
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
