//! Binary codes, RaBitQ-style: a vector's residual `r` is rotated by a random orthogonal matrix
//! `P` (`D = d` rounded up to 64 rows), normalised to `u = P r / ‖r‖` and stored as the signs of
//! `u` (D bits) plus three floats. With `x̄ = sign(u) / √D` and `x0 = <x̄, u>`, the estimator
//! `<u, Pq> ≈ <x̄, Pq> / x0` is unbiased, and with high probability
//! `|estimate − <u, Pq>| ≤ ‖Pq‖ · √(1 − x0²) / x0 · ε0 / √(D − 1)` (ε0 ≈ 1.9).
//!
//! Scanning: the rotated query is quantized to 4-bit unsigned levels and split into 4 bit
//! planes, so `Σ_i bit_i · q_i` is 4 AND+popcount passes over the code words.

use super::kmeans::Rng;
use super::metric::dot;

/// Confidence multiplier of the error bound.
pub const EPS0: f32 = 1.9;
/// Floats stored per vector: `‖r‖ / (x0 √D)`, popcount of the code, `‖r‖ √(1−x0²) / (x0 √(D−1))`.
pub const AUX: usize = 3;

/// The trained rotation.
#[derive(Clone, Debug)]
pub struct Binary {
    pub d: usize,
    /// Padded dimension (multiple of 64).
    pub dp: usize,
    /// `[dp, d]` rotation (orthonormal columns).
    pub rot: Vec<f32>,
}

/// A query prepared for popcount scans.
pub struct BinaryQuery {
    /// `[4, words]` bit planes of the quantized rotated query.
    planes: Vec<u64>,
    lo: f32,
    delta: f32,
    sum: f32,
    norm: f32,
    words: usize,
    sqrt_dp: f32,
}

impl Binary {
    /// A random rotation for dimension `d` (Gram–Schmidt on a Gaussian matrix, in f64).
    pub fn new(d: usize, seed: u64) -> Self {
        let dp = d.div_ceil(64) * 64;
        let mut rng = Rng::new(seed);
        let mut m: Vec<f64> = (0..dp * dp).map(|_| rng.normal()).collect();
        for i in 0..dp {
            for j in 0..i {
                let p: f64 = (0..dp).map(|t| m[i * dp + t] * m[j * dp + t]).sum();
                for t in 0..dp {
                    m[i * dp + t] -= p * m[j * dp + t];
                }
            }
            let n: f64 = (0..dp).map(|t| m[i * dp + t] * m[i * dp + t]).sum::<f64>().sqrt();
            for t in 0..dp {
                m[i * dp + t] /= n;
            }
        }
        // Rows of an orthogonal matrix, restricted to the first d columns: norm preserving.
        let rot = (0..dp)
            .flat_map(|i| (0..d).map(move |t| (i, t)))
            .map(|(i, t)| m[i * dp + t] as f32)
            .collect();
        Binary { d, dp, rot }
    }

    pub fn words(&self) -> usize {
        self.dp / 64
    }

    pub fn code_size(&self) -> usize {
        self.dp / 8
    }

    fn rotate(&self, x: &[f32]) -> Vec<f32> {
        self.rot.chunks_exact(self.d).map(|row| dot(row, x)).collect()
    }

    /// Encode a residual into `code_size()` bytes and `AUX` floats.
    pub fn encode(&self, r: &[f32], code: &mut [u8], aux: &mut [f32]) {
        let u = self.rotate(r);
        let nr = u.iter().map(|v| v * v).sum::<f32>().sqrt();
        code.fill(0);
        let mut l1 = 0f32;
        let mut pop = 0u32;
        for (i, &v) in u.iter().enumerate() {
            if v > 0.0 {
                code[i / 8] |= 1 << (i % 8);
                pop += 1;
            }
            l1 += v.abs();
        }
        let dpf = self.dp as f32;
        if nr > 0.0 && l1 > 0.0 {
            let x0 = (l1 / nr / dpf.sqrt()).clamp(1e-6, 1.0);
            aux[0] = nr / (x0 * dpf.sqrt());
            aux[2] = nr * (1.0 - x0 * x0).max(0.0).sqrt() / x0 / (dpf - 1.0).max(1.0).sqrt();
        } else {
            aux[0] = 0.0;
            aux[2] = 0.0;
        }
        aux[1] = pop as f32;
    }

    /// Rotate and quantize a query.
    pub fn prepare(&self, q: &[f32]) -> BinaryQuery {
        let qp = self.rotate(q);
        let lo = qp.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = qp.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let delta = if hi > lo { (hi - lo) / 15.0 } else { 1.0 };
        let words = self.words();
        let mut planes = vec![0u64; 4 * words];
        let mut sum = 0f32;
        for (i, &v) in qp.iter().enumerate() {
            let l = ((v - lo) / delta).round().clamp(0.0, 15.0) as u32;
            for (b, plane) in planes.chunks_exact_mut(words).enumerate() {
                if (l >> b) & 1 == 1 {
                    plane[i / 64] |= 1 << (i % 64);
                }
            }
            sum += v;
        }
        BinaryQuery {
            planes,
            lo,
            delta,
            sum,
            norm: qp.iter().map(|v| v * v).sum::<f32>().sqrt(),
            words,
            sqrt_dp: (self.dp as f32).sqrt(),
        }
    }
}

impl BinaryQuery {
    /// `(estimated <q, r>, error bound)` of one code.
    #[inline]
    pub fn ip(&self, code: &[u8], aux: &[f32]) -> (f32, f32) {
        let w = weighted_popcount(&self.planes, code, self.words);
        // Σ_i bit_i · q_i, then <x̄, Pq>·√D = 2 Σ bit_i q_i − Σ q_i.
        let sel = self.lo * aux[1] + self.delta * w as f32;
        let est = aux[0] * (2.0 * sel - self.sum);
        let _ = self.sqrt_dp;
        (est, aux[2] * self.norm * EPS0)
    }
}

#[cfg(target_arch = "x86_64")]
fn has_vpopcntdq() -> bool {
    use std::sync::OnceLock;
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vpopcntdq"))
}

#[inline]
fn weighted_popcount(planes: &[u64], code: &[u8], words: usize) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        if words <= 8 && has_vpopcntdq() {
            // SAFETY: AVX-512F and VPOPCNTDQ are present (checked at run time); at most 8 words.
            return unsafe { weighted_popcount_vpopcntdq(planes, code, words) };
        }
        static POPCNT: OnceLock<bool> = OnceLock::new();
        if *POPCNT.get_or_init(|| is_x86_feature_detected!("popcnt")) {
            // SAFETY: the CPU has POPCNT (checked at run time).
            return unsafe { weighted_popcount_hw(planes, code, words) };
        }
    }
    weighted_popcount_sw(planes, code, words)
}

#[inline(always)]
fn word(code: &[u8], w: usize) -> u64 {
    u64::from_le_bytes(code[w * 8..w * 8 + 8].try_into().expect("8 bytes"))
}

#[inline(always)]
fn weighted_popcount_sw(planes: &[u64], code: &[u8], words: usize) -> u32 {
    let mut acc = 0u32;
    for w in 0..words {
        let c = word(code, w);
        for b in 0..4 {
            acc += (c & planes[b * words + w]).count_ones() << b;
        }
    }
    acc
}

/// All (up to 8) code words in one register: 4 AND + 4 VPOPCNTQ, shifts by plane weight.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vpopcntdq")]
unsafe fn weighted_popcount_vpopcntdq(planes: &[u64], code: &[u8], words: usize) -> u32 {
    use std::arch::x86_64::*;
    let mask: __mmask8 = if words >= 8 { 0xFF } else { (1u8 << words) - 1 };
    let c = _mm512_maskz_loadu_epi64(mask, code.as_ptr() as *const i64);
    let p = |b: usize| _mm512_maskz_loadu_epi64(mask, planes.as_ptr().add(b * words) as *const i64);
    let c0 = _mm512_popcnt_epi64(_mm512_and_si512(c, p(0)));
    let c1 = _mm512_popcnt_epi64(_mm512_and_si512(c, p(1)));
    let c2 = _mm512_popcnt_epi64(_mm512_and_si512(c, p(2)));
    let c3 = _mm512_popcnt_epi64(_mm512_and_si512(c, p(3)));
    let s = _mm512_add_epi64(
        _mm512_add_epi64(c0, _mm512_slli_epi64::<1>(c1)),
        _mm512_add_epi64(_mm512_slli_epi64::<2>(c2), _mm512_slli_epi64::<3>(c3)),
    );
    _mm512_reduce_add_epi64(s) as u32
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
unsafe fn weighted_popcount_hw(planes: &[u64], code: &[u8], words: usize) -> u32 {
    weighted_popcount_sw(planes, code, words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn popcount_kernels_agree() {
        let mut rng = Rng::new(4);
        for words in [1usize, 3, 6, 8, 12] {
            let planes: Vec<u64> = (0..4 * words).map(|_| rng.next_u64()).collect();
            let code: Vec<u8> = (0..8 * words).map(|_| rng.next_u64() as u8).collect();
            assert_eq!(
                weighted_popcount(&planes, &code, words),
                weighted_popcount_sw(&planes, &code, words),
                "{words} words"
            );
        }
    }

    #[test]
    fn rotation_preserves_norms_and_estimator_is_close() {
        let d = 100;
        let b = Binary::new(d, 5);
        let mut rng = Rng::new(9);
        let mut errs = Vec::new();
        let mut within = 0;
        let trials = 200;
        for _ in 0..trials {
            let x: Vec<f32> = (0..d).map(|_| rng.normal() as f32).collect();
            let q: Vec<f32> = (0..d).map(|_| rng.normal() as f32).collect();
            let u = b.rotate(&x);
            let nx = x.iter().map(|v| v * v).sum::<f32>();
            let nu = u.iter().map(|v| v * v).sum::<f32>();
            assert!((nx - nu).abs() < 1e-3 * nx);
            let mut code = vec![0u8; b.code_size()];
            let mut aux = [0f32; AUX];
            b.encode(&x, &mut code, &mut aux);
            let (est, bound) = b.prepare(&q).ip(&code, &aux);
            let exact = dot(&q, &x);
            errs.push((est - exact).abs() / (nx.sqrt() * q.iter().map(|v| v * v).sum::<f32>().sqrt()));
            if (est - exact).abs() <= bound * 1.2 {
                within += 1;
            }
        }
        let mean: f32 = errs.iter().sum::<f32>() / errs.len() as f32;
        assert!(mean < 0.1, "mean relative error {mean}");
        assert!(
            within as f32 >= 0.9 * trials as f32,
            "bound held {within}/{trials}"
        );
    }
}
