//! SQ8: one byte per dimension, with per-dimension minimum and step trained on the data.
//!
//! `x_d ≈ min_d + code_d · step_d`, so `<q, x> ≈ <q, min> + Σ_d (q_d · step_d) · code_d`: a query
//! is prepared once into weights `q · step` and a bias, and each code costs one u8×f32 dot.

/// Trained SQ8 parameters.
#[derive(Clone, Debug)]
pub struct Sq8 {
    pub vmin: Vec<f32>,
    pub step: Vec<f32>,
}

/// A query prepared for scanning SQ8 codes.
pub struct Sq8Query {
    w: Vec<f32>,
    bias: f32,
}

impl Sq8 {
    /// Per-dimension range of `data` (`[n, d]`).
    pub fn train(data: &[f32], d: usize) -> Self {
        let mut lo = vec![f32::INFINITY; d];
        let mut hi = vec![f32::NEG_INFINITY; d];
        for row in data.chunks_exact(d) {
            for j in 0..d {
                lo[j] = lo[j].min(row[j]);
                hi[j] = hi[j].max(row[j]);
            }
        }
        let step = lo
            .iter()
            .zip(&hi)
            .map(|(l, h)| if h > l { (h - l) / 255.0 } else { 1.0 })
            .collect();
        Sq8 { vmin: lo, step }
    }

    pub fn code_size(&self) -> usize {
        self.vmin.len()
    }

    /// Encode one vector (values outside the trained range are clamped).
    pub fn encode(&self, x: &[f32], out: &mut [u8]) {
        for j in 0..x.len() {
            out[j] = ((x[j] - self.vmin[j]) / self.step[j]).round().clamp(0.0, 255.0) as u8;
        }
    }

    /// Decode one code.
    pub fn decode(&self, code: &[u8], out: &mut [f32]) {
        for j in 0..code.len() {
            out[j] = self.vmin[j] + code[j] as f32 * self.step[j];
        }
    }

    pub fn prepare(&self, q: &[f32]) -> Sq8Query {
        Sq8Query {
            w: q.iter().zip(&self.step).map(|(a, s)| a * s).collect(),
            bias: q.iter().zip(&self.vmin).map(|(a, m)| a * m).sum(),
        }
    }
}

impl Sq8Query {
    /// Estimated `<q, x>` of one code.
    #[inline]
    pub fn ip(&self, code: &[u8]) -> f32 {
        // Through the list scan's kernel, so a code scores the same alone and in a scan.
        let mut out = [0f32];
        self.ips(code, &mut out);
        out[0]
    }

    /// Estimated `<q, x>` of `out.len()` consecutive codes.
    #[inline]
    pub fn ips(&self, codes: &[u8], out: &mut [f32]) {
        crate::simd::rowdot::dots_u8(&self.w, codes, out);
        for o in out.iter_mut() {
            *o += self.bias;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_error_is_within_half_a_step() {
        let d = 16;
        let data: Vec<f32> = (0..100 * d)
            .map(|i| ((i * 13) % 101) as f32 / 10.0 - 5.0)
            .collect();
        let sq = Sq8::train(&data, d);
        let mut code = vec![0u8; d];
        let mut back = vec![0f32; d];
        for row in data.chunks_exact(d) {
            sq.encode(row, &mut code);
            sq.decode(&code, &mut back);
            for j in 0..d {
                assert!((row[j] - back[j]).abs() <= sq.step[j] * 0.5 + 1e-5);
            }
            let q: Vec<f32> = (0..d).map(|i| i as f32 * 0.1).collect();
            let exact: f32 = q.iter().zip(&back).map(|(a, b)| a * b).sum();
            assert!((sq.prepare(&q).ip(&code) - exact).abs() < 1e-3);
        }
    }
}
