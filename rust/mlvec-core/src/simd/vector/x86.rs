//! The AVX-512 and AVX2 + FMA bodies of the vector kernels (see [`super`]).

use super::portable;
use std::arch::x86_64::*;

// The bodies are `unsafe` (they need their instruction set); the tables in `super` hold them,
// and hand a table out only when `crate::cpu` reports the features.

#[target_feature(enable = "avx512f")]
pub(super) unsafe fn dot_u8_avx512(q: &[f32], c: &[u8]) -> f32 {
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
        t += portable::dot_u8(&q[i..n], &c[i..n]);
    }
    t
}

#[target_feature(enable = "avx512f")]
pub(super) unsafe fn l2_u8_avx512(r: &[f32], s: &[f32], c: &[u8]) -> f32 {
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
        t += portable::l2_u8(&r[i..n], &s[i..n], &c[i..n]);
    }
    t
}

// One widening multiply-add (u8 codes zero-extended to i16, times the i16 query, adjacent
// pairs summed to i32) per 32 dimensions: a third of the instructions of the f32 path.
#[target_feature(enable = "avx512f,avx512bw,avx2")]
pub(super) unsafe fn dot_i16_u8_avx512(q: &[i16], c: &[u8]) -> i32 {
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
        t += portable::dot_i16_u8(&q[i..n], &c[i..n]);
    }
    t
}

#[target_feature(enable = "avx2")]
pub(super) unsafe fn dot_i16_u8_avx2(q: &[i16], c: &[u8]) -> i32 {
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
        t += portable::dot_i16_u8(&q[i..n], &c[i..n]);
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
pub(super) unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
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
    if i + 8 <= n {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
        i += 8;
    }
    let mut t = hsum256(_mm256_add_ps(acc0, acc1));
    while i < n {
        t += *pa.add(i) * *pb.add(i);
        i += 1;
    }
    t
}

#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn l2_avx2(a: &[f32], b: &[f32]) -> f32 {
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
        t += portable::l2(&a[i..n], &b[i..n]);
    }
    t
}

#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn dot_u8_avx2(q: &[f32], c: &[u8]) -> f32 {
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
        t += portable::dot_u8(&q[i..n], &c[i..n]);
    }
    t
}

#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn l2_u8_avx2(r: &[f32], s: &[f32], c: &[u8]) -> f32 {
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
        t += portable::l2_u8(&r[i..n], &s[i..n], &c[i..n]);
    }
    t
}
