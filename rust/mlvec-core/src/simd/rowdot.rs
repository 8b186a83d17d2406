//! One query against many stored rows: `out[r] = <w, row_r>` for float32 rows (the coarse
//! quantizer of a single query) and for u8 codes (the SQ8 list scan).
//!
//! Calling a one-pair dot product per row pays a horizontal sum per row and a call per row; here
//! sixteen rows are accumulated side by side in sixteen AVX-512 registers and folded together by
//! one transpose-and-add tree, which costs about three instructions per row instead of a dozen.

use super::vector::kernels;
use super::{detect, Isa};

/// Rows accumulated side by side.
pub const ROWS: usize = 16;

/// `out[r] = <q, rows[r * d..(r + 1) * d]>` for `out.len()` rows of dimension `d = q.len()`.
pub fn dots_f32(q: &[f32], rows: &[f32], out: &mut [f32]) {
    let d = q.len();
    assert!(rows.len() >= out.len() * d, "dots_f32: rows shorter than out");
    #[cfg(target_arch = "x86_64")]
    if d > 0 && matches!(detect(), Isa::Avx512 { .. }) {
        // SAFETY: AVX-512F is present (checked at run time) and `rows` holds `out.len()` rows.
        unsafe { avx512::dots_f32(q, rows, out) };
        return;
    }
    let k = kernels();
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(d.max(1))) {
        *o = k.dot(q, row);
    }
}

/// `<q, row>` rounded exactly as [`dots_f32`] rounds it, so a centroid scored alone and in a
/// full scan gets the same value (and ties fall the same way).
pub fn dot_as_rows(q: &[f32], row: &[f32]) -> f32 {
    assert_eq!(q.len(), row.len(), "dot_as_rows: length mismatch");
    #[cfg(target_arch = "x86_64")]
    if !q.is_empty() && matches!(detect(), Isa::Avx512 { .. }) {
        let mut out = [0f32];
        // SAFETY: AVX-512F is present (checked at run time); lengths checked above.
        unsafe { avx512::dots_f32(q, row, &mut out) };
        return out[0];
    }
    kernels().dot(q, row)
}

/// `out[r] = <w, codes[r * d..(r + 1) * d]>` (codes widened to float) for `out.len()` rows.
pub fn dots_u8(w: &[f32], codes: &[u8], out: &mut [f32]) {
    let d = w.len();
    assert!(codes.len() >= out.len() * d, "dots_u8: codes shorter than out");
    #[cfg(target_arch = "x86_64")]
    if d > 0 && matches!(detect(), Isa::Avx512 { .. }) {
        // SAFETY: AVX-512F is present (checked at run time) and `codes` holds `out.len()` rows.
        unsafe { avx512::dots_u8(w, codes, out) };
        return;
    }
    let k = kernels();
    for (o, code) in out.iter_mut().zip(codes.chunks_exact(d.max(1))) {
        *o = k.dot_u8(w, code);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::ROWS;
    use core::arch::x86_64::*;

    /// The sixteen lane-sums of `a` as one vector: lane `r` holds `sum(a[r])`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn fold16(a: &[__m512; ROWS]) -> __m512 {
        // 16 -> 8: pairs interleaved, each 128-bit lane holds partial sums of two rows.
        let mut b = [_mm512_setzero_ps(); 8];
        for i in 0..8 {
            let (x, y) = (a[2 * i], a[2 * i + 1]);
            b[i] = _mm512_add_ps(_mm512_unpacklo_ps(x, y), _mm512_unpackhi_ps(x, y));
        }
        // 8 -> 4: each 128-bit lane holds partial sums of four rows.
        let mut c = [_mm512_setzero_ps(); 4];
        for i in 0..4 {
            let (x, y) = (_mm512_castps_pd(b[2 * i]), _mm512_castps_pd(b[2 * i + 1]));
            c[i] = _mm512_add_ps(
                _mm512_castpd_ps(_mm512_unpacklo_pd(x, y)),
                _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)),
            );
        }
        // 4 -> 2 -> 1: add 128-bit lanes pairwise across vectors.
        let lanes = |x: __m512, y: __m512| {
            _mm512_add_ps(
                _mm512_shuffle_f32x4::<0b10_00_10_00>(x, y),
                _mm512_shuffle_f32x4::<0b11_01_11_01>(x, y),
            )
        };
        let e0 = lanes(c[0], c[1]);
        let e1 = lanes(c[2], c[3]);
        lanes(e0, e1)
    }

    /// `N` rows (`N ≤ 16`, `d` apart from `rows`) against `w`, one accumulator each, folded:
    /// lane `r` of the result is row `r`'s dot product. `load` widens 16 elements to float32,
    /// `load_part` the first `n < 16` (zeros after, nothing past them read). A single row goes
    /// through the same sums as a full block (its other accumulators are zero, and adding zero
    /// changes nothing), so a row scores the same alone and inside a block.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn fold_rows<T, const N: usize>(
        w: &[f32],
        rows: *const T,
        load: impl Fn(*const T) -> __m512,
        load_part: impl Fn(*const T, usize) -> __m512,
    ) -> __m512 {
        let d = w.len();
        let (full, tail) = (d / 16, d % 16);
        let mut acc = [_mm512_setzero_ps(); ROWS];
        for c in 0..full {
            let wv = _mm512_loadu_ps(w.as_ptr().add(c * 16));
            for (r, a) in acc.iter_mut().enumerate().take(N) {
                *a = _mm512_fmadd_ps(wv, load(rows.add(r * d + c * 16)), *a);
            }
        }
        if tail > 0 {
            let wv = _mm512_maskz_loadu_ps(((1u32 << tail) - 1) as __mmask16, w.as_ptr().add(full * 16));
            for (r, a) in acc.iter_mut().enumerate().take(N) {
                *a = _mm512_fmadd_ps(wv, load_part(rows.add(r * d + full * 16), tail), *a);
            }
        }
        fold16(&acc)
    }

    /// Every row of `rows` (`out.len()` of them) against `w`: blocks of sixteen, then the rest
    /// one at a time through the same sums.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn dots<T>(
        w: &[f32],
        rows: &[T],
        out: &mut [f32],
        load: impl Fn(*const T) -> __m512,
        load_part: impl Fn(*const T, usize) -> __m512,
    ) {
        let d = w.len();
        let n = out.len();
        let mut r0 = 0;
        while r0 + ROWS <= n {
            let v = fold_rows::<T, ROWS>(w, rows.as_ptr().add(r0 * d), &load, &load_part);
            _mm512_storeu_ps(out.as_mut_ptr().add(r0), v);
            r0 += ROWS;
        }
        for (r, o) in out.iter_mut().enumerate().skip(r0) {
            let v = fold_rows::<T, 1>(w, rows.as_ptr().add(r * d), &load, &load_part);
            *o = _mm_cvtss_f32(_mm512_castps512_ps128(v));
        }
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn dots_f32(q: &[f32], rows: &[f32], out: &mut [f32]) {
        dots(
            q,
            rows,
            out,
            |p| _mm512_loadu_ps(p),
            |p, n| _mm512_maskz_loadu_ps(((1u32 << n) - 1) as __mmask16, p),
        );
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn dots_u8(w: &[f32], codes: &[u8], out: &mut [f32]) {
        let widen =
            |p: *const u8| _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(p as *const __m128i)));
        let widen_part = |p: *const u8, n: usize| {
            // Through a zeroed buffer: no byte past the row is read.
            let mut buf = [0u8; 16];
            core::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n);
            widen(buf.as_ptr())
        };
        dots(w, codes, out, widen, widen_part);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows_f32(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        (0..n * d)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn dots_match_f64_for_every_row_and_tail() {
        for d in [1usize, 5, 16, 17, 31, 128, 384] {
            for n in [0usize, 1, 15, 16, 17, 40, 2048 / 16] {
                let q = rows_f32(1, d, 3 + d as u64);
                let rows = rows_f32(n, d, 7 + n as u64);
                let codes: Vec<u8> = (0..n * d).map(|i| (i * 37 % 256) as u8).collect();
                let mut got = vec![0f32; n];
                let mut got8 = vec![0f32; n];
                dots_f32(&q, &rows, &mut got);
                for r in 0..n {
                    // Alone or in a block, a row rounds the same way.
                    assert_eq!(
                        dot_as_rows(&q, &rows[r * d..(r + 1) * d]).to_bits(),
                        got[r].to_bits()
                    );
                }
                dots_u8(&q, &codes, &mut got8);
                for r in 0..n {
                    let mut one = [0f32];
                    dots_u8(&q, &codes[r * d..(r + 1) * d], &mut one);
                    assert_eq!(one[0].to_bits(), got8[r].to_bits(), "u8 alone vs in a block");
                }
                for r in 0..n {
                    let want: f64 = (0..d).map(|j| q[j] as f64 * rows[r * d + j] as f64).sum();
                    assert!(
                        (got[r] as f64 - want).abs() < 1e-4 * (d as f64).sqrt(),
                        "f32 d={d} n={n} r={r}"
                    );
                    let want8: f64 = (0..d).map(|j| q[j] as f64 * codes[r * d + j] as f64).sum();
                    assert!(
                        (got8[r] as f64 - want8).abs() < 1e-5 * (1.0 + want8.abs()) * d as f64,
                        "u8 d={d} n={n} r={r}"
                    );
                }
            }
        }
    }
}
