//! The one metric of every index kind (lists and graph alike).
//!
//! Scores are always "higher is better": inner product for `Ip`, cosine similarity for `Cosine`
//! (vectors are L2-normalised on the way in, then compared by inner product) and
//! `-‖q − x‖²` for `L2`. The kernels behind them are [`crate::simd::vector`]'s.

use crate::simd::vector::{self, Kernels};
use crate::{Error, Result};
use rayon::prelude::*;
use std::borrow::Cow;

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
    /// Parse `"ip"`, `"l2"` or `"cosine"` (also `"inner_product"`, `"dot"`, `"euclidean"`, `"cos"`).
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

    /// Whether vectors are scaled to unit length before they are stored or compared.
    pub fn normalizes(self) -> bool {
        self == Metric::Cosine
    }

    /// Rows (`[n, dim]`) as they are scored: unit-normalised copies for cosine (in parallel
    /// for large batches; a few queries stay on the calling thread), else the rows themselves.
    pub fn prepare_rows(self, dim: usize, x: &[f32]) -> Cow<'_, [f32]> {
        if !self.normalizes() {
            return Cow::Borrowed(x);
        }
        let mut v = x.to_vec();
        if v.len() < 1 << 16 {
            v.chunks_exact_mut(dim).for_each(vector::normalize);
        } else {
            v.par_chunks_mut(dim).for_each(vector::normalize);
        }
        Cow::Owned(v)
    }

    /// Turn an inner product into this metric's score given both squared norms.
    #[inline]
    pub fn from_ip(self, ip: f32, q_norm2: f32, x_norm2: f32) -> f32 {
        match self {
            Metric::L2 => 2.0 * ip - q_norm2 - x_norm2,
            _ => ip,
        }
    }

    /// The score of two full-precision vectors (the query normalised already for cosine).
    #[inline(always)]
    pub fn score(self, k: &Kernels, q: &[f32], x: &[f32]) -> f32 {
        match self {
            Metric::L2 => -k.l2sq(q, x),
            Metric::Ip | Metric::Cosine => k.dot(q, x),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_name() {
        for (s, m) in [
            ("IP", Metric::Ip),
            ("dot", Metric::Ip),
            ("L2", Metric::L2),
            ("cos", Metric::Cosine),
        ] {
            assert_eq!(Metric::parse(s).unwrap(), m);
            assert_eq!(Metric::parse(m.name()).unwrap(), m);
        }
        let e = Metric::parse("manhattan").unwrap_err().to_string();
        assert!(e.starts_with("metric:") && e.contains("manhattan"), "{e}");
    }

    #[test]
    fn scores_are_higher_is_better() {
        let k = crate::simd::vector::kernels();
        let (q, near, far) = ([1.0f32, 0.0], [0.9f32, 0.1], [-1.0f32, 0.5]);
        for m in [Metric::Ip, Metric::L2, Metric::Cosine] {
            assert!(m.score(k, &q, &near) > m.score(k, &q, &far), "{m:?}");
        }
        assert!((Metric::L2.score(k, &q, &near) + 0.02).abs() < 1e-6);
        assert_eq!(Metric::L2.from_ip(2.0, 3.0, 4.0), -3.0);
    }
}
