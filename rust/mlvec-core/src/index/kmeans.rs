//! k-means for the coarse quantizer and the product-quantizer codebooks.
//!
//! Initialisation picks distinct random training points; assignment is one GEMM per block of
//! points (`argmax 2<x, c> − ‖c‖²`); empty clusters are re-seeded by splitting the largest
//! cluster, which keeps list sizes balanced. Training uses at most `max_per_centroid` points per
//! centroid (a random sample), like faiss.

use super::codec::flat::ip_matrix;
use crate::simd::vector::norm2;
use crate::{Error, Result};
use rayon::prelude::*;

/// A small deterministic generator (SplitMix64), enough for sampling and rotations.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, n)`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    /// `m` distinct indices of `0..n` (partial Fisher–Yates), `m <= n`.
    pub fn sample(&mut self, n: usize, m: usize) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..n).collect();
        for i in 0..m.min(n) {
            let j = i + self.below(n - i);
            idx.swap(i, j);
        }
        idx.truncate(m.min(n));
        idx
    }
}

/// Index of the nearest centroid (by L2) of every row of `data`.
pub fn assign(data: &[f32], centroids: &[f32], d: usize) -> Vec<u32> {
    let k = centroids.len() / d;
    let cn: Vec<f32> = centroids.chunks_exact(d).map(norm2).collect();
    let block = 256;
    let n = data.len() / d;
    let mut out = vec![0u32; n];
    out.par_chunks_mut(block).enumerate().for_each(|(b, dst)| {
        let rows = &data[b * block * d..(b * block + dst.len()) * d];
        let mut ip = vec![0f32; dst.len() * k];
        ip_matrix(rows, centroids, d, &mut ip);
        for (i, o) in dst.iter_mut().enumerate() {
            let row = &ip[i * k..(i + 1) * k];
            let mut best = (f32::NEG_INFINITY, 0u32);
            for (j, (&v, &c)) in row.iter().zip(&cn).enumerate() {
                let s = 2.0 * v - c;
                if s > best.0 {
                    best = (s, j as u32);
                }
            }
            *o = best.1;
        }
    });
    out
}

/// Train `k` centroids on the rows of `data` (`[n, d]`).
pub fn train(
    data: &[f32],
    d: usize,
    k: usize,
    iters: usize,
    max_per_centroid: usize,
    seed: u64,
) -> Result<Vec<f32>> {
    let n = data.len() / d;
    if n < k {
        return Err(Error::invalid(
            "x",
            format!("training needs at least {k} vectors (one per centroid), got {n}"),
        ));
    }
    let mut rng = Rng::new(seed);
    let sample: Vec<f32>;
    let data = if n > k * max_per_centroid {
        let idx = rng.sample(n, k * max_per_centroid);
        sample = idx
            .iter()
            .flat_map(|&i| data[i * d..(i + 1) * d].iter().copied())
            .collect();
        &sample[..]
    } else {
        data
    };
    let n = data.len() / d;
    let mut cent: Vec<f32> = rng
        .sample(n, k)
        .iter()
        .flat_map(|&i| data[i * d..(i + 1) * d].iter().copied())
        .collect();
    for _ in 0..iters {
        let a = assign(data, &cent, d);
        let mut sums = vec![0f64; k * d];
        let mut counts = vec![0usize; k];
        for (i, &c) in a.iter().enumerate() {
            counts[c as usize] += 1;
            let s = &mut sums[c as usize * d..(c as usize + 1) * d];
            for (x, &v) in s.iter_mut().zip(&data[i * d..(i + 1) * d]) {
                *x += v as f64;
            }
        }
        for c in 0..k {
            if counts[c] > 0 {
                for j in 0..d {
                    cent[c * d + j] = (sums[c * d + j] / counts[c] as f64) as f32;
                }
            }
        }
        // Re-seed empty clusters by splitting a large one in two (symmetric perturbation).
        for c in 0..k {
            if counts[c] > 0 {
                continue;
            }
            let mut big = 0;
            loop {
                // Pick a cluster with probability proportional to its size.
                let r = rng.uniform() * n as f64;
                let mut acc = 0.0;
                for (j, &cnt) in counts.iter().enumerate() {
                    acc += cnt as f64;
                    if acc > r {
                        big = j;
                        break;
                    }
                }
                if counts[big] > 0 {
                    break;
                }
            }
            for j in 0..d {
                let v = cent[big * d + j];
                let eps = 1.0 / 1024.0 * if j % 2 == 0 { 1.0 } else { -1.0 };
                cent[c * d + j] = v * (1.0 + eps);
                cent[big * d + j] = v * (1.0 - eps);
            }
            counts[c] = counts[big] / 2;
            counts[big] -= counts[c];
        }
    }
    Ok(cent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_separated_clusters() {
        let d = 4;
        let mut rng = Rng::new(1);
        let centers = [
            [10.0f32, 0.0, 0.0, 0.0],
            [0.0, 10.0, 0.0, 0.0],
            [0.0, 0.0, 10.0, 0.0],
        ];
        let mut data = Vec::new();
        for i in 0..300 {
            for c in centers[i % 3] {
                data.push(c + rng.normal() as f32 * 0.1);
            }
        }
        let c = train(&data, d, 3, 10, 256, 7).unwrap();
        let a = assign(&data, &c, d);
        for i in 0..300 {
            assert_eq!(a[i], a[i % 3], "same cluster for point {i}");
        }
        assert_ne!(a[0], a[1]);
        assert_ne!(a[1], a[2]);
    }
}
