//! Distance kernels of the HNSW index: f32·f32 and f32·u8 (SQ8 codes), selected once at run time
//! from the CPU's features (AVX-512F, AVX2+FMA) with a portable fallback.
//!
//! All kernels take slices of equal length; callers guarantee it (checked in debug builds).

use std::sync::OnceLock;

/// `Σ a_i b_i`.
pub type DotFn = fn(&[f32], &[f32]) -> f32;
/// `Σ (a_i - b_i)²`.
pub type L2Fn = fn(&[f32], &[f32]) -> f32;
/// `Σ q_i c_i` with `c` u8 codes.
pub type DotU8Fn = fn(&[f32], &[u8]) -> f32;
/// `Σ (r_i - s_i c_i)²` with `c` u8 codes.
pub type L2U8Fn = fn(&[f32], &[f32], &[u8]) -> f32;
/// `Σ q_i c_i` in exact integer arithmetic, `q` i16 and `c` u8 codes. The caller keeps
/// `Σ |q_i| * 255` below `2^31` (see [`i16_query_limit`]), so no partial sum overflows.
pub type DotI16U8Fn = fn(&[i16], &[u8]) -> i32;

/// The kernels chosen for this CPU.
#[derive(Clone, Copy)]
pub struct Kernels {
    pub dot: DotFn,
    pub l2: L2Fn,
    pub dot_u8: DotU8Fn,
    pub l2_u8: L2U8Fn,
    pub dot_i16_u8: DotI16U8Fn,
    /// Which implementation was chosen ("avx512f", "avx2", "scalar").
    pub name: &'static str,
}

/// The best kernels this CPU supports (detected once).
pub fn kernels() -> &'static Kernels {
    static K: OnceLock<Kernels> = OnceLock::new();
    K.get_or_init(detect)
}

/// The portable kernels (also the reference the SIMD ones are tested against).
pub fn scalar_kernels() -> Kernels {
    Kernels {
        dot: scalar::dot,
        l2: scalar::l2,
        dot_u8: scalar::dot_u8,
        l2_u8: scalar::l2_u8,
        dot_i16_u8: scalar::dot_i16_u8,
        name: "scalar",
    }
}

fn detect() -> Kernels {
    #[cfg(target_arch = "x86_64")]
    {
        if std::env::var_os("MLVEC_NO_AVX512").is_none()
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            return Kernels {
                dot: x86::dot_avx512,
                l2: x86::l2_avx512,
                dot_u8: x86::dot_u8_avx512,
                l2_u8: x86::l2_u8_avx512,
                dot_i16_u8: x86::dot_i16_u8_avx512,
                name: "avx512f",
            };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return Kernels {
                dot: x86::dot_avx2,
                l2: x86::l2_avx2,
                dot_u8: x86::dot_u8_avx2,
                l2_u8: x86::l2_u8_avx2,
                dot_i16_u8: x86::dot_i16_u8_avx2,
                name: "avx2",
            };
        }
    }
    scalar_kernels()
}

/// The largest `|q_i|` an i16 query of `dim` values may have for [`DotI16U8Fn`] to be exact:
/// `dim * 255 * limit < 2^31`, capped at `i16::MAX`. Below about 1,000 (dim > 8,000) an i16
/// query would be too coarse, and callers use the f32 kernel instead.
pub fn i16_query_limit(dim: usize) -> i32 {
    ((i32::MAX as usize - 1) / (255 * dim.max(1))).min(i16::MAX as usize) as i32
}

/// Hint the CPU to start loading the cache line at `p` (no-op where unsupported).
#[inline(always)]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

mod scalar {
    // Four partial sums so the compiler can vectorise without reassociation flags.
    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        debug_assert_eq!(a.len(), b.len());
        let mut s = [0f32; 8];
        let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
        let (ra, rb) = (ca.remainder(), cb.remainder());
        for (x, y) in ca.zip(cb) {
            for i in 0..8 {
                s[i] += x[i] * y[i];
            }
        }
        let mut t: f32 = s.iter().sum();
        for (x, y) in ra.iter().zip(rb) {
            t += x * y;
        }
        t
    }

    pub fn l2(a: &[f32], b: &[f32]) -> f32 {
        debug_assert_eq!(a.len(), b.len());
        let mut s = [0f32; 8];
        let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
        let (ra, rb) = (ca.remainder(), cb.remainder());
        for (x, y) in ca.zip(cb) {
            for i in 0..8 {
                let d = x[i] - y[i];
                s[i] += d * d;
            }
        }
        let mut t: f32 = s.iter().sum();
        for (x, y) in ra.iter().zip(rb) {
            t += (x - y) * (x - y);
        }
        t
    }

    pub fn dot_u8(q: &[f32], c: &[u8]) -> f32 {
        debug_assert_eq!(q.len(), c.len());
        let mut s = [0f32; 8];
        let (ca, cb) = (q.chunks_exact(8), c.chunks_exact(8));
        let (ra, rb) = (ca.remainder(), cb.remainder());
        for (x, y) in ca.zip(cb) {
            for i in 0..8 {
                s[i] += x[i] * y[i] as f32;
            }
        }
        let mut t: f32 = s.iter().sum();
        for (x, y) in ra.iter().zip(rb) {
            t += x * *y as f32;
        }
        t
    }

    pub fn dot_i16_u8(q: &[i16], c: &[u8]) -> i32 {
        debug_assert_eq!(q.len(), c.len());
        q.iter().zip(c).map(|(&x, &y)| x as i32 * y as i32).sum()
    }

    pub fn l2_u8(r: &[f32], sc: &[f32], c: &[u8]) -> f32 {
        debug_assert!(r.len() == c.len() && sc.len() == c.len());
        let mut t = 0f32;
        for i in 0..c.len() {
            let d = r[i] - sc[i] * c[i] as f32;
            t += d * d;
        }
        t
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::scalar;
    use std::arch::x86_64::*;

    // Each public fn is only reachable through `detect()`, which checked the feature first.
    macro_rules! safe {
        ($name:ident, $imp:ident, ($($a:ident: $t:ty),*)) => {
            pub fn $name($($a: $t),*) -> f32 {
                // SAFETY: selected by `detect()` only when the CPU has the feature.
                unsafe { $imp($($a),*) }
            }
        };
    }
    macro_rules! safe_i {
        ($name:ident, $imp:ident) => {
            pub fn $name(q: &[i16], c: &[u8]) -> i32 {
                // SAFETY: selected by `detect()` only when the CPU has the features.
                unsafe { $imp(q, c) }
            }
        };
    }
    safe!(dot_avx512, dot512, (a: &[f32], b: &[f32]));
    safe!(l2_avx512, l2512, (a: &[f32], b: &[f32]));
    safe!(dot_u8_avx512, dotu8_512, (a: &[f32], b: &[u8]));
    safe!(l2_u8_avx512, l2u8_512, (r: &[f32], s: &[f32], c: &[u8]));
    safe!(dot_avx2, dot256, (a: &[f32], b: &[f32]));
    safe_i!(dot_i16_u8_avx512, dot_i16_u8_512);
    safe_i!(dot_i16_u8_avx2, dot_i16_u8_256);
    safe!(l2_avx2, l2256, (a: &[f32], b: &[f32]));
    safe!(dot_u8_avx2, dotu8_256, (a: &[f32], b: &[u8]));
    safe!(l2_u8_avx2, l2u8_256, (r: &[f32], s: &[f32], c: &[u8]));

    #[target_feature(enable = "avx512f")]
    unsafe fn dot512(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm512_setzero_ps();
        let mut acc1 = _mm512_setzero_ps();
        let mut i = 0;
        while i + 32 <= n {
            acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), acc0);
            acc1 = _mm512_fmadd_ps(
                _mm512_loadu_ps(pa.add(i + 16)),
                _mm512_loadu_ps(pb.add(i + 16)),
                acc1,
            );
            i += 32;
        }
        if i + 16 <= n {
            acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), acc0);
            i += 16;
        }
        if i < n {
            let m: __mmask16 = (1u32 << (n - i)) as u16 - 1;
            let x = _mm512_maskz_loadu_ps(m, pa.add(i));
            let y = _mm512_maskz_loadu_ps(m, pb.add(i));
            acc1 = _mm512_fmadd_ps(x, y, acc1);
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn l2512(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm512_setzero_ps();
        let mut acc1 = _mm512_setzero_ps();
        let mut i = 0;
        while i + 32 <= n {
            let d0 = _mm512_sub_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)));
            let d1 = _mm512_sub_ps(_mm512_loadu_ps(pa.add(i + 16)), _mm512_loadu_ps(pb.add(i + 16)));
            acc0 = _mm512_fmadd_ps(d0, d0, acc0);
            acc1 = _mm512_fmadd_ps(d1, d1, acc1);
            i += 32;
        }
        if i + 16 <= n {
            let d0 = _mm512_sub_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)));
            acc0 = _mm512_fmadd_ps(d0, d0, acc0);
            i += 16;
        }
        if i < n {
            let m: __mmask16 = (1u32 << (n - i)) as u16 - 1;
            let d = _mm512_sub_ps(
                _mm512_maskz_loadu_ps(m, pa.add(i)),
                _mm512_maskz_loadu_ps(m, pb.add(i)),
            );
            acc1 = _mm512_fmadd_ps(d, d, acc1);
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn dotu8_512(q: &[f32], c: &[u8]) -> f32 {
        let n = q.len().min(c.len());
        let (pq, pc) = (q.as_ptr(), c.as_ptr());
        let mut acc0 = _mm512_setzero_ps();
        let mut acc1 = _mm512_setzero_ps();
        let mut i = 0;
        while i + 32 <= n {
            let c0 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(pc.add(i).cast())));
            let c1 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(pc.add(i + 16).cast())));
            acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(pq.add(i)), c0, acc0);
            acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(pq.add(i + 16)), c1, acc1);
            i += 32;
        }
        let mut t = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
        if i < n {
            t += scalar::dot_u8(&q[i..n], &c[i..n]);
        }
        t
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn l2u8_512(r: &[f32], s: &[f32], c: &[u8]) -> f32 {
        let n = r.len().min(s.len()).min(c.len());
        let (pr, ps, pc) = (r.as_ptr(), s.as_ptr(), c.as_ptr());
        let mut acc0 = _mm512_setzero_ps();
        let mut acc1 = _mm512_setzero_ps();
        let mut i = 0;
        while i + 32 <= n {
            let c0 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(pc.add(i).cast())));
            let c1 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(pc.add(i + 16).cast())));
            // r - s*c as one fused op: fnmadd(s, c, r) = -(s*c) + r.
            let d0 = _mm512_fnmadd_ps(_mm512_loadu_ps(ps.add(i)), c0, _mm512_loadu_ps(pr.add(i)));
            let d1 = _mm512_fnmadd_ps(
                _mm512_loadu_ps(ps.add(i + 16)),
                c1,
                _mm512_loadu_ps(pr.add(i + 16)),
            );
            acc0 = _mm512_fmadd_ps(d0, d0, acc0);
            acc1 = _mm512_fmadd_ps(d1, d1, acc1);
            i += 32;
        }
        let mut t = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
        if i < n {
            t += scalar::l2_u8(&r[i..n], &s[i..n], &c[i..n]);
        }
        t
    }

    // One widening multiply-add (u8 codes zero-extended to i16, times the i16 query, adjacent
    // pairs summed to i32) per 32 dimensions: a third of the instructions of the f32 path.
    #[target_feature(enable = "avx512f,avx512bw,avx2")]
    unsafe fn dot_i16_u8_512(q: &[i16], c: &[u8]) -> i32 {
        let n = q.len().min(c.len());
        let (pq, pc) = (q.as_ptr(), c.as_ptr());
        let mut acc0 = _mm512_setzero_si512();
        let mut acc1 = _mm512_setzero_si512();
        let mut i = 0;
        while i + 64 <= n {
            let c0 = _mm512_cvtepu8_epi16(_mm256_loadu_si256(pc.add(i).cast()));
            let c1 = _mm512_cvtepu8_epi16(_mm256_loadu_si256(pc.add(i + 32).cast()));
            acc0 = _mm512_add_epi32(acc0, _mm512_madd_epi16(c0, _mm512_loadu_si512(pq.add(i).cast())));
            acc1 = _mm512_add_epi32(
                acc1,
                _mm512_madd_epi16(c1, _mm512_loadu_si512(pq.add(i + 32).cast())),
            );
            i += 64;
        }
        while i + 32 <= n {
            let c0 = _mm512_cvtepu8_epi16(_mm256_loadu_si256(pc.add(i).cast()));
            acc0 = _mm512_add_epi32(acc0, _mm512_madd_epi16(c0, _mm512_loadu_si512(pq.add(i).cast())));
            i += 32;
        }
        let mut t = _mm512_reduce_add_epi32(_mm512_add_epi32(acc0, acc1));
        if i < n {
            t += scalar::dot_i16_u8(&q[i..n], &c[i..n]);
        }
        t
    }

    #[target_feature(enable = "avx2")]
    unsafe fn dot_i16_u8_256(q: &[i16], c: &[u8]) -> i32 {
        let n = q.len().min(c.len());
        let (pq, pc) = (q.as_ptr(), c.as_ptr());
        let mut acc0 = _mm256_setzero_si256();
        let mut acc1 = _mm256_setzero_si256();
        let mut i = 0;
        while i + 32 <= n {
            let c0 = _mm256_cvtepu8_epi16(_mm_loadu_si128(pc.add(i).cast()));
            let c1 = _mm256_cvtepu8_epi16(_mm_loadu_si128(pc.add(i + 16).cast()));
            acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(c0, _mm256_loadu_si256(pq.add(i).cast())));
            acc1 = _mm256_add_epi32(
                acc1,
                _mm256_madd_epi16(c1, _mm256_loadu_si256(pq.add(i + 16).cast())),
            );
            i += 32;
        }
        let s = _mm256_add_epi32(acc0, acc1);
        let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
        let mut t = _mm_cvtsi128_si32(s);
        if i < n {
            t += scalar::dot_i16_u8(&q[i..n], &c[i..n]);
        }
        t
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum256(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps::<1>(v);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
        _mm_cvtss_f32(s)
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot256(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        while i + 16 <= n {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            acc1 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 8)),
                _mm256_loadu_ps(pb.add(i + 8)),
                acc1,
            );
            i += 16;
        }
        let mut t = hsum256(_mm256_add_ps(acc0, acc1));
        if i < n {
            t += scalar::dot(&a[i..n], &b[i..n]);
        }
        t
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn l2256(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        while i + 16 <= n {
            let d0 = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
            let d1 = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i + 8)), _mm256_loadu_ps(pb.add(i + 8)));
            acc0 = _mm256_fmadd_ps(d0, d0, acc0);
            acc1 = _mm256_fmadd_ps(d1, d1, acc1);
            i += 16;
        }
        let mut t = hsum256(_mm256_add_ps(acc0, acc1));
        if i < n {
            t += scalar::l2(&a[i..n], &b[i..n]);
        }
        t
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn dotu8_256(q: &[f32], c: &[u8]) -> f32 {
        let n = q.len().min(c.len());
        let (pq, pc) = (q.as_ptr(), c.as_ptr());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        while i + 16 <= n {
            let c0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(pc.add(i).cast())));
            let c1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(pc.add(i + 8).cast())));
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pq.add(i)), c0, acc0);
            acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(pq.add(i + 8)), c1, acc1);
            i += 16;
        }
        let mut t = hsum256(_mm256_add_ps(acc0, acc1));
        if i < n {
            t += scalar::dot_u8(&q[i..n], &c[i..n]);
        }
        t
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn l2u8_256(r: &[f32], s: &[f32], c: &[u8]) -> f32 {
        let n = r.len().min(s.len()).min(c.len());
        let (pr, ps, pc) = (r.as_ptr(), s.as_ptr(), c.as_ptr());
        let mut acc0 = _mm256_setzero_ps();
        let mut i = 0;
        while i + 8 <= n {
            let c0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(pc.add(i).cast())));
            let d0 = _mm256_fnmadd_ps(_mm256_loadu_ps(ps.add(i)), c0, _mm256_loadu_ps(pr.add(i)));
            acc0 = _mm256_fmadd_ps(d0, d0, acc0);
            i += 8;
        }
        let mut t = hsum256(acc0);
        if i < n {
            t += scalar::l2_u8(&r[i..n], &s[i..n], &c[i..n]);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    #[test]
    fn simd_kernels_match_fp64_reference() {
        let k = kernels();
        for n in [
            1usize, 7, 8, 15, 16, 17, 31, 33, 63, 64, 65, 97, 100, 128, 384, 385, 1000,
        ] {
            let a = data(n, 1);
            let b = data(n, 2);
            let c: Vec<u8> = data(n, 3).iter().map(|x| ((x + 0.5) * 255.0) as u8).collect();
            let dot: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            let l2: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
                .sum();
            let du8: f64 = a.iter().zip(&c).map(|(x, y)| *x as f64 * *y as f64).sum();
            let lu8: f64 = (0..n)
                .map(|i| (a[i] as f64 - b[i] as f64 * c[i] as f64).powi(2))
                .sum();
            let lim = i16_query_limit(n) as i64;
            let qi: Vec<i16> = a.iter().map(|x| (x * 2.0 * lim as f32) as i16).collect();
            let di: i64 = qi.iter().zip(&c).map(|(&x, &y)| x as i64 * y as i64).sum();
            let worst: Vec<i16> = vec![lim as i16; n];
            let wc: Vec<u8> = vec![255; n];
            for kk in [*k, scalar_kernels()] {
                assert_eq!((kk.dot_i16_u8)(&qi, &c) as i64, di, "{} dot_i16_u8 {n}", kk.name);
                assert_eq!(
                    (kk.dot_i16_u8)(&worst, &wc) as i64,
                    lim * 255 * n as i64,
                    "{} dot_i16_u8 at the limit {n}",
                    kk.name
                );
                assert!(
                    ((kk.dot)(&a, &b) as f64 - dot).abs() < 1e-4 * (1.0 + dot.abs()),
                    "{} dot {n}",
                    kk.name
                );
                assert!(
                    ((kk.l2)(&a, &b) as f64 - l2).abs() < 1e-4 * (1.0 + l2),
                    "{} l2 {n}",
                    kk.name
                );
                assert!(
                    ((kk.dot_u8)(&a, &c) as f64 - du8).abs() < 1e-3 * (1.0 + du8.abs()),
                    "{} dot_u8 {n}",
                    kk.name
                );
                assert!(
                    ((kk.l2_u8)(&a, &b, &c) as f64 - lu8).abs() < 1e-3 * (1.0 + lu8),
                    "{} l2_u8 {n}",
                    kk.name
                );
            }
        }
    }
}
