//! The one-pair vector kernels every index kind shares: f32·f32 dot product and squared L2
//! distance, f32·u8 (SQ8 codes) dot product and squared distance, the exact i16·u8 dot product,
//! the squared norm and normalisation.
//!
//! Each kernel has an AVX-512, an AVX2 + FMA and a portable body; [`kernels`] is the single
//! dispatch point, choosing one table of them from [`crate::cpu`]. Hot loops take the table (or
//! one of its functions) once, outside the loop. All kernels take equally long slices (checked
//! in debug builds).

#[cfg(target_arch = "x86_64")]
mod x86;

use crate::cpu;

/// One instruction set's kernels. The functions are reached through the methods, which call
/// the instruction set's bodies directly (one indirect call, no wrapper in between).
#[derive(Clone, Copy)]
pub struct Kernels {
    dot: unsafe fn(&[f32], &[f32]) -> f32,
    l2sq: unsafe fn(&[f32], &[f32]) -> f32,
    dot_u8: unsafe fn(&[f32], &[u8]) -> f32,
    l2sq_u8: unsafe fn(&[f32], &[f32], &[u8]) -> f32,
    dot_i16_u8: unsafe fn(&[i16], &[u8]) -> i32,
    /// `"avx512"`, `"avx2"` or `"portable"`.
    pub name: &'static str,
}

// SAFETY (every method below): a table is handed out only by `kernels` and `variants`, and
// only when `crate::cpu` reports the features its bodies were compiled for.
impl Kernels {
    /// `Σ a_i b_i`.
    #[inline(always)]
    pub fn dot(&self, a: &[f32], b: &[f32]) -> f32 {
        debug_assert_eq!(a.len(), b.len());
        unsafe { (self.dot)(a, b) }
    }

    /// `Σ (a_i - b_i)²`.
    #[inline(always)]
    pub fn l2sq(&self, a: &[f32], b: &[f32]) -> f32 {
        debug_assert_eq!(a.len(), b.len());
        unsafe { (self.l2sq)(a, b) }
    }

    /// `Σ w_i c_i` with `c` u8 codes.
    #[inline(always)]
    pub fn dot_u8(&self, w: &[f32], c: &[u8]) -> f32 {
        debug_assert_eq!(w.len(), c.len());
        unsafe { (self.dot_u8)(w, c) }
    }

    /// `Σ (r_i - s_i c_i)²` with `c` u8 codes.
    #[inline(always)]
    pub fn l2sq_u8(&self, r: &[f32], s: &[f32], c: &[u8]) -> f32 {
        debug_assert!(r.len() == c.len() && s.len() == c.len());
        unsafe { (self.l2sq_u8)(r, s, c) }
    }

    /// `Σ q_i c_i` in exact integer arithmetic, `q` i16 and `c` u8 codes. The caller keeps
    /// `Σ |q_i| * 255` below `2^31` (see [`i16_query_limit`]), so no partial sum overflows.
    #[inline(always)]
    pub fn dot_i16_u8(&self, q: &[i16], c: &[u8]) -> i32 {
        debug_assert_eq!(q.len(), c.len());
        unsafe { (self.dot_i16_u8)(q, c) }
    }
}

impl std::fmt::Debug for Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// The f32·f32 kernels are the AVX2 bodies here too: 512-bit versions (two accumulators, masked
/// tails, `reduce_add`) measured 2-8 % slower on the Xeons we build on, in list scans
/// (IVF-Flat and Flat single queries, d = 96 and 384) and in graph walks (L2 and inner
/// product, same dimensions); the byte kernels gain from 512 bits.
#[cfg(target_arch = "x86_64")]
static AVX512: Kernels = Kernels {
    dot: x86::dot_avx2,
    l2sq: x86::l2_avx2,
    dot_u8: x86::dot_u8_avx512,
    l2sq_u8: x86::l2_u8_avx512,
    dot_i16_u8: x86::dot_i16_u8_avx512,
    name: "avx512",
};

#[cfg(target_arch = "x86_64")]
static AVX2: Kernels = Kernels {
    dot: x86::dot_avx2,
    l2sq: x86::l2_avx2,
    dot_u8: x86::dot_u8_avx2,
    l2sq_u8: x86::l2_u8_avx2,
    dot_i16_u8: x86::dot_i16_u8_avx2,
    name: "avx2",
};

static PORTABLE: Kernels = Kernels {
    dot: portable::dot,
    l2sq: portable::l2,
    dot_u8: portable::dot_u8,
    l2sq_u8: portable::l2_u8,
    dot_i16_u8: portable::dot_i16_u8,
    name: "portable",
};

/// Every table this CPU can run, best first; the portable one is always last.
pub fn variants() -> Vec<&'static Kernels> {
    #[allow(unused_mut)]
    let mut out: Vec<&'static Kernels> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        let f = cpu::detected();
        // The i16·u8 kernel widens bytes to words (AVX-512BW); the rest needs F.
        if f.avx512f && f.avx512bw && f.avx2_fma() {
            out.push(&AVX512);
        }
        if f.avx2_fma() {
            out.push(&AVX2);
        }
    }
    out.push(&PORTABLE);
    out
}

/// The best kernels this CPU runs.
#[inline]
pub fn kernels() -> &'static Kernels {
    #[cfg(target_arch = "x86_64")]
    {
        let f = cpu::detected();
        if f.avx512f && f.avx512bw && f.avx2_fma() {
            return &AVX512;
        }
        if f.avx2_fma() {
            return &AVX2;
        }
    }
    &PORTABLE
}

/// Inner product.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    kernels().dot(a, b)
}

/// Squared Euclidean distance.
#[inline]
pub fn l2sq(a: &[f32], b: &[f32]) -> f32 {
    kernels().l2sq(a, b)
}

/// Squared norm.
#[inline]
pub fn norm2(a: &[f32]) -> f32 {
    kernels().dot(a, a)
}

/// `Σ w_i c_i` for u8 codes `c`.
#[inline]
pub fn dot_u8(w: &[f32], c: &[u8]) -> f32 {
    kernels().dot_u8(w, c)
}

/// Scale `v` to unit L2 norm in place (a zero vector stays zero). The norm is summed in f64, so
/// the unit vector does not depend on the kernel that would have summed it.
pub fn normalize(v: &mut [f32]) {
    let mut acc = [0f64; 4];
    let chunks = v.chunks_exact(4);
    let tail: f64 = chunks.remainder().iter().map(|&x| x as f64 * x as f64).sum();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x as f64 * x as f64;
        }
    }
    let n = (acc.iter().sum::<f64>() + tail).sqrt();
    if n > 0.0 {
        let inv = (1.0 / n) as f32;
        v.iter_mut().for_each(|x| *x *= inv);
    }
}

/// The largest `|q_i|` an i16 query of `dim` values may have for [`Kernels::dot_i16_u8`] to be exact:
/// `dim * 255 * limit < 2^31`, capped at `i16::MAX`. Below about 1,000 (dim > 8,000) an i16
/// query would be too coarse, and callers use the f32 kernel instead.
pub fn i16_query_limit(dim: usize) -> i32 {
    ((i32::MAX as usize - 1) / (255 * dim.max(1))).min(i16::MAX as usize) as i32
}

/// Plain Rust bodies: eight partial sums, so the compiler vectorises without reassociating.
mod portable {
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

    /// Every kernel of every table this CPU runs (the portable one included) against an fp64
    /// reference, over lengths that hit each body's full steps and tails.
    #[test]
    fn every_variant_matches_the_fp64_reference() {
        let tables = variants();
        assert_eq!(tables.last().unwrap().name, "portable");
        assert_eq!(
            kernels().name,
            tables[0].name,
            "the dispatch picks the best table"
        );
        for n in [
            1usize, 7, 8, 15, 16, 17, 24, 31, 33, 63, 64, 65, 97, 100, 128, 384, 385, 1000,
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
            for k in &tables {
                assert_eq!(k.dot_i16_u8(&qi, &c) as i64, di, "{k:?} dot_i16_u8 {n}");
                assert_eq!(
                    k.dot_i16_u8(&worst, &wc) as i64,
                    lim * 255 * n as i64,
                    "{k:?} dot_i16_u8 at the limit {n}"
                );
                assert!(
                    (k.dot(&a, &b) as f64 - dot).abs() < 1e-4 * (1.0 + dot.abs()),
                    "{k:?} dot {n}"
                );
                assert!(
                    (k.l2sq(&a, &b) as f64 - l2).abs() < 1e-4 * (1.0 + l2),
                    "{k:?} l2sq {n}"
                );
                assert!(
                    (k.dot_u8(&a, &c) as f64 - du8).abs() < 1e-3 * (1.0 + du8.abs()),
                    "{k:?} dot_u8 {n}"
                );
                assert!(
                    (k.l2sq_u8(&a, &b, &c) as f64 - lu8).abs() < 1e-3 * (1.0 + lu8),
                    "{k:?} l2sq_u8 {n}"
                );
            }
            let norm: f64 = a.iter().map(|x| *x as f64 * *x as f64).sum();
            assert!((norm2(&a) as f64 - norm).abs() < 1e-4 * (1.0 + norm), "norm2 {n}");
            let mut u = a.clone();
            normalize(&mut u);
            for (x, y) in u.iter().zip(&a) {
                assert!(
                    (*x as f64 - *y as f64 / norm.sqrt()).abs() < 1e-6,
                    "normalize {n}"
                );
            }
        }
        let mut zero = [0f32; 5];
        normalize(&mut zero);
        assert_eq!(zero, [0.0; 5]);
    }
}
