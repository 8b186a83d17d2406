//! Metrics and the small vector kernels every index kind shares.
//!
//! Scores are always "higher is better": inner product for `Ip`, cosine similarity for `Cosine`
//! (vectors are L2-normalised on the way in, then compared by inner product) and
//! `-‖q − x‖²` for `L2`.

use crate::{Error, Result};

/// How two vectors are compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Inner product `<q, x>`.
    Ip,
    /// Negated squared Euclidean distance `-‖q − x‖²`.
    L2,
    /// Cosine similarity (inputs are normalised, then compared by inner product).
    Cosine,
}

impl Metric {
    /// Parse `"ip"`, `"l2"` or `"cosine"`.
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "ip" | "inner_product" | "dot" => Ok(Metric::Ip),
            "l2" | "euclidean" => Ok(Metric::L2),
            "cosine" | "cos" => Ok(Metric::Cosine),
            _ => Err(Error::invalid(
                "metric",
                format!("unknown metric {s:?}; expected \"ip\", \"l2\" or \"cosine\""),
            )),
        }
    }

    /// The canonical name.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Ip => "ip",
            Metric::L2 => "l2",
            Metric::Cosine => "cosine",
        }
    }

    /// Turn an inner product into this metric's score given both squared norms.
    #[inline]
    pub fn from_ip(self, ip: f32, q_norm2: f32, x_norm2: f32) -> f32 {
        match self {
            Metric::L2 => 2.0 * ip - q_norm2 - x_norm2,
            _ => ip,
        }
    }
}

/// Inner product of two equally long slices (AVX2+FMA when present, portable otherwise).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    {
        if simd_ok() {
            // SAFETY: the CPU supports AVX2 and FMA (checked at run time).
            return unsafe { dot_avx2(a, b) };
        }
    }
    dot_portable(a, b)
}

/// Squared Euclidean distance.
#[inline]
pub fn l2sq(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = x - y;
            d * d
        })
        .sum()
}

/// Squared norm.
#[inline]
pub fn norm2(a: &[f32]) -> f32 {
    dot(a, a)
}

/// Scale `a` to unit length in place (zero vectors stay zero).
pub fn normalize(a: &mut [f32]) {
    let n = norm2(a).sqrt();
    if n > 0.0 {
        let inv = 1.0 / n;
        a.iter_mut().for_each(|x| *x *= inv);
    }
}

fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent partial sums so the compiler can vectorise without reassociation.
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8;
    for c in 0..chunks {
        for l in 0..8 {
            acc[l] += a[c * 8 + l] * b[c * 8 + l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for i in chunks * 8..a.len() {
        s += a[i] * b[i];
    }
    s
}

#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn simd_ok() -> bool {
    use std::sync::OnceLock;
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut s0 = _mm256_setzero_ps();
    let mut s1 = _mm256_setzero_ps();
    let mut i = 0;
    while i + 16 <= n {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 8)), _mm256_loadu_ps(pb.add(i + 8)), s1);
        i += 16;
    }
    if i + 8 <= n {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), s0);
        i += 8;
    }
    let s = _mm256_add_ps(s0, s1);
    let hi = _mm256_extractf128_ps(s, 1);
    let lo = _mm256_castps256_ps128(s);
    let q = _mm_add_ps(hi, lo);
    let q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    let q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 1));
    let mut out = _mm_cvtss_f32(q);
    while i < n {
        out += *pa.add(i) * *pb.add(i);
        i += 1;
    }
    out
}

/// `sum_i w[i] * codes[i]` for u8 codes (the SQ8 scan kernel).
#[inline]
pub fn dot_u8(w: &[f32], codes: &[u8]) -> f32 {
    debug_assert_eq!(w.len(), codes.len());
    #[cfg(target_arch = "x86_64")]
    {
        if simd_ok() {
            // SAFETY: AVX2 and FMA are present (checked at run time).
            return unsafe { dot_u8_avx2(w, codes) };
        }
    }
    w.iter().zip(codes).map(|(a, &c)| a * c as f32).sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_u8_avx2(w: &[f32], codes: &[u8]) -> f32 {
    use std::arch::x86_64::*;
    let n = w.len();
    let mut s0 = _mm256_setzero_ps();
    let mut s1 = _mm256_setzero_ps();
    let mut i = 0;
    while i + 16 <= n {
        let c = _mm_loadu_si128(codes.as_ptr().add(i) as *const __m128i);
        let c0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(c));
        let c1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(c, 8)));
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(w.as_ptr().add(i)), c0, s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(w.as_ptr().add(i + 8)), c1, s1);
        i += 16;
    }
    let s = _mm256_add_ps(s0, s1);
    let mut buf = [0f32; 8];
    _mm256_storeu_ps(buf.as_mut_ptr(), s);
    let mut out: f32 = buf.iter().sum();
    while i < n {
        out += w[i] * codes[i] as f32;
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_f64() {
        for n in [1usize, 7, 8, 15, 16, 17, 33, 384] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let r: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!((dot(&a, &b) as f64 - r).abs() < 1e-4, "n={n}");
            let c: Vec<u8> = (0..n).map(|i| (i * 37 % 256) as u8).collect();
            let r: f64 = a.iter().zip(&c).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!(
                (dot_u8(&a, &c) as f64 - r).abs() < 1e-2 * (1.0 + r.abs()),
                "n={n}"
            );
        }
    }

    #[test]
    fn metric_parse() {
        assert_eq!(Metric::parse("IP").unwrap(), Metric::Ip);
        assert!(Metric::parse("manhattan").is_err());
    }
}
