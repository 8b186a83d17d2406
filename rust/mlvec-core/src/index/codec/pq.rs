//! Product quantization with 8-bit codes: `m` sub-spaces of `d / m` dimensions, 256 centroids
//! each (k-means per sub-space). A query becomes an `m × 256` table of sub-inner-products; a code
//! costs `m` table look-ups.

use super::{ListCodec, ListScan};
use crate::index::io::{Reader, Writer};
use crate::index::ivf::list::Layout;
use crate::index::kmeans;
use crate::index::topk::TopK;
use crate::simd::vector::kernels;
use crate::{Error, Result};

/// Trained product-quantizer codebooks (`nbits` = 8 here, 4 for fast-scan).
#[derive(Clone, Debug)]
pub struct Pq {
    pub m: usize,
    pub dsub: usize,
    pub ksub: usize,
    /// `[m, ksub, dsub]` centroids.
    pub codebooks: Vec<f32>,
}

impl Pq {
    /// Check that `d` splits into `m` sub-spaces.
    pub fn check(d: usize, m: usize) -> Result<()> {
        if m == 0 || !d.is_multiple_of(m) {
            return Err(Error::invalid(
                "index_kind",
                format!("PQ{m}: the dimension {d} must be a multiple of the number of sub-quantizers {m}"),
            ));
        }
        Ok(())
    }

    /// Train `m` codebooks of `ksub` centroids on `data` (`[n, d]`).
    pub fn train(data: &[f32], d: usize, m: usize, ksub: usize, seed: u64) -> Result<Self> {
        Self::check(d, m)?;
        let dsub = d / m;
        let n = data.len() / d;
        let mut codebooks = Vec::with_capacity(m * ksub * dsub);
        for j in 0..m {
            let sub: Vec<f32> = (0..n)
                .flat_map(|i| data[i * d + j * dsub..i * d + (j + 1) * dsub].iter().copied())
                .collect();
            codebooks.extend(kmeans::train(
                &sub,
                dsub,
                ksub,
                12,
                256,
                seed.wrapping_add(j as u64),
            )?);
        }
        Ok(Pq {
            m,
            dsub,
            ksub,
            codebooks,
        })
    }

    /// One code byte per sub-space (the nearest centroid's index).
    pub fn encode(&self, x: &[f32], out: &mut [u8]) {
        for j in 0..self.m {
            let xs = &x[j * self.dsub..(j + 1) * self.dsub];
            let mut best = (f32::INFINITY, 0u8);
            for c in 0..self.ksub {
                let cb =
                    &self.codebooks[(j * self.ksub + c) * self.dsub..(j * self.ksub + c + 1) * self.dsub];
                let dist: f32 = xs.iter().zip(cb).map(|(a, b)| (a - b) * (a - b)).sum();
                if dist < best.0 {
                    best = (dist, c as u8);
                }
            }
            out[j] = best.1;
        }
    }

    /// Reconstruct a vector from its per-sub-space codes.
    pub fn decode(&self, code: &[u8], out: &mut [f32]) {
        for j in 0..self.m {
            let c = code[j] as usize;
            out[j * self.dsub..(j + 1) * self.dsub].copy_from_slice(
                &self.codebooks[(j * self.ksub + c) * self.dsub..(j * self.ksub + c + 1) * self.dsub],
            );
        }
    }

    /// The `[m, ksub]` table of `<q_j, centroid_jc>`.
    pub fn lut(&self, q: &[f32]) -> Vec<f32> {
        let k = kernels();
        let mut t = Vec::with_capacity(self.m * self.ksub);
        for j in 0..self.m {
            let qs = &q[j * self.dsub..(j + 1) * self.dsub];
            for c in 0..self.ksub {
                t.push(k.dot(
                    qs,
                    &self.codebooks[(j * self.ksub + c) * self.dsub..(j * self.ksub + c + 1) * self.dsub],
                ));
            }
        }
        t
    }

    /// Codebooks of `m` sub-quantizers with `ksub` centroids each, as `save` wrote them.
    pub fn load(r: &Reader, dim: usize, m: usize, ksub: usize) -> Result<Self> {
        let codebooks = r
            .array::<f32>("pq_codebooks", Some(ksub * dim))?
            .as_slice()
            .to_vec();
        Ok(Pq {
            m,
            dsub: dim / m,
            ksub,
            codebooks,
        })
    }

    /// Write the codebooks (`[m, ksub, dim / m]`).
    pub fn save_codebooks<'a>(&'a self, w: &mut Writer<'a>) {
        w.add(
            "pq_codebooks",
            vec![self.m, self.ksub, self.dsub],
            &self.codebooks,
        );
    }
}

/// 8-bit PQ: a query is an `m × 256` table; an entry costs `m` look-ups.
impl ListCodec for Pq {
    type Query = Vec<f32>;

    fn layout(&self, _dim: usize) -> Layout {
        Layout {
            code_size: self.m,
            ..Layout::default()
        }
    }

    fn encode(&self, x: &[f32], code: &mut [u8], _aux: &mut [f32]) {
        Pq::encode(self, x, code)
    }

    fn decode(&self, code: &[u8], out: &mut [f32]) {
        Pq::decode(self, code, out)
    }

    fn prepare(&self, q: &[f32]) -> Vec<f32> {
        self.lut(q)
    }

    fn scan(&self, lut: &Vec<f32>, s: &ListScan, top: &mut TopK) {
        for (pos, code) in s.list.codes.as_slice().chunks_exact(s.lay.code_size).enumerate() {
            s.offer(top, s.score(s.base + lut_ip8(lut, code), pos), pos);
        }
    }

    fn estimate(&self, lut: &Vec<f32>, s: &ListScan, pos: usize, code: &mut Vec<u8>) -> (f32, f32) {
        s.list.code(s.lay, pos, code);
        (lut_ip8(lut, code), 0.0)
    }

    fn param_bytes(&self) -> usize {
        4 * self.codebooks.len()
    }

    fn save<'a>(&'a self, w: &mut Writer<'a>, _dim: usize) {
        self.save_codebooks(w)
    }
}

/// Estimated `<q, x>` of an 8-bit code from the table (four independent sums for ILP).
#[inline]
pub fn lut_ip8(lut: &[f32], code: &[u8]) -> f32 {
    let m = code.len();
    let mut s = [0f32; 4];
    let mut j = 0;
    while j + 4 <= m {
        s[0] += lut[j * 256 + code[j] as usize];
        s[1] += lut[(j + 1) * 256 + code[j + 1] as usize];
        s[2] += lut[(j + 2) * 256 + code[j + 2] as usize];
        s[3] += lut[(j + 3) * 256 + code[j + 3] as usize];
        j += 4;
    }
    while j < m {
        s[0] += lut[j * 256 + code[j] as usize];
        j += 1;
    }
    s[0] + s[1] + s[2] + s[3]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::kmeans::Rng;
    use crate::simd::vector::dot;

    #[test]
    fn lut_matches_decoded_dot() {
        let (d, m, n) = (16, 4, 600);
        let mut rng = Rng::new(3);
        let data: Vec<f32> = (0..n * d).map(|_| rng.normal() as f32).collect();
        let pq = Pq::train(&data, d, m, 256, 1).unwrap();
        let q: Vec<f32> = (0..d).map(|_| rng.normal() as f32).collect();
        let lut = pq.lut(&q);
        let mut code = vec![0u8; m];
        let mut back = vec![0f32; d];
        for row in data.chunks_exact(d).take(50) {
            pq.encode(row, &mut code);
            pq.decode(&code, &mut back);
            assert!((lut_ip8(&lut, &code) - dot(&q, &back)).abs() < 1e-3);
        }
    }
}
