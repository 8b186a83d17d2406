//! Where vectors live and how a query meets them: the one storage interface of the family. A
//! graph walks any [`VectorStore`]; the lists re-score their candidates with [`FullVectors`].
//!
//! Three stores implement it: float32 rows ([`FullVectors`], owned or memory-mapped), SQ8 codes
//! ([`super::codec::sq8::Sq8Codes`]) and SQ8 codes with float16 copies that re-score a walk's
//! final candidates ([`super::codec::sq8::Sq8F16`]). Scores are the [`Metric`]'s, higher is
//! better.

use super::io::Buf;
use super::metric::Metric;
use crate::simd::vector::{self, kernels, Kernels};

/// Stored vectors a query is scored against, by row number.
pub trait VectorStore: Send + Sync + Sized {
    /// A query in the form the store's kernel wants (e.g. pre-scaled for SQ8 codes).
    type Query: Send + Sync;
    fn dim(&self) -> usize;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Prepare a query (already normalised when the metric is cosine).
    fn prepare(&self, q: &[f32]) -> Self::Query;
    /// The score of a prepared query and stored vector `i` (estimated, for codes).
    fn score(&self, q: &Self::Query, i: u32) -> f32;
    /// Whether [`VectorStore::score_pair`] is as cheap as a query's score (then a graph build
    /// compares stored vectors directly instead of preparing one as a query).
    const DIRECT_PAIRS: bool;
    /// The score of stored vectors `a` and `b`.
    fn score_pair(&self, a: u32, b: u32) -> f32;
    /// The stored vector `i` as f32 (exact for f32 rows, decoded for codes), written to `out`.
    fn decode(&self, i: u32, out: &mut Vec<f32>);
    /// Start loading vector `i` into cache.
    fn prefetch(&self, i: u32);
    /// Append rows of `dim` values, each scaled to unit norm first when `normalize`.
    fn extend(&mut self, rows: &[f32], normalize: bool);
    /// A new store with the rows `keep` of this one, bit for bit (codes are copied, not
    /// re-encoded).
    fn gather(&self, keep: &[u32]) -> Self;
    /// Bytes held by the stored vectors and the store's parameters.
    fn memory_usage(&self) -> usize;
    /// Whether [`VectorStore::precise_score`] is more precise than [`VectorStore::score`]; a
    /// search then re-scores its final candidate list with it.
    const RESCORES: bool = false;
    /// The score of a prepared query and stored vector `i` from the most precise copy held.
    fn precise_score(&self, q: &Self::Query, i: u32) -> f32 {
        self.score(q, i)
    }
}

/// `r` itself, or a unit-norm copy of it in `buf` when `normalize`.
pub fn row_maybe_normalized<'a>(r: &'a [f32], normalize: bool, buf: &'a mut Vec<f32>) -> &'a [f32] {
    if normalize {
        buf.clear();
        buf.extend_from_slice(r);
        vector::normalize(buf);
        buf
    } else {
        r
    }
}

/// Row-major float32 vectors (owned or memory-mapped), scored exactly.
#[derive(Clone, Debug)]
pub struct FullVectors {
    pub dim: usize,
    pub metric: Metric,
    pub data: Buf<f32>,
    k: Kernels,
}

impl FullVectors {
    pub fn new(dim: usize, metric: Metric, data: Buf<f32>) -> Self {
        FullVectors {
            dim,
            metric,
            data,
            k: *kernels(),
        }
    }

    #[inline(always)]
    pub fn row(&self, i: u32) -> &[f32] {
        let s = i as usize * self.dim;
        &self.data.as_slice()[s..s + self.dim]
    }

    /// The exact score of query `q` (normalised for cosine) and row `i`.
    #[inline(always)]
    pub fn score_row(&self, q: &[f32], i: u32) -> f32 {
        self.metric.score(&self.k, q, self.row(i))
    }
}

impl VectorStore for FullVectors {
    type Query = Vec<f32>;

    fn dim(&self) -> usize {
        self.dim
    }

    fn len(&self) -> usize {
        self.data.len() / self.dim.max(1)
    }

    fn prepare(&self, q: &[f32]) -> Vec<f32> {
        q.to_vec()
    }

    #[inline(always)]
    fn score(&self, q: &Vec<f32>, i: u32) -> f32 {
        self.score_row(q, i)
    }

    const DIRECT_PAIRS: bool = true;

    #[inline(always)]
    fn score_pair(&self, a: u32, b: u32) -> f32 {
        self.metric.score(&self.k, self.row(a), self.row(b))
    }

    fn decode(&self, i: u32, out: &mut Vec<f32>) {
        out.clear();
        out.extend_from_slice(self.row(i));
    }

    #[inline(always)]
    fn prefetch(&self, i: u32) {
        let p = self.data.as_slice().as_ptr().wrapping_add(i as usize * self.dim);
        // The first few cache lines are what matters; the hardware prefetcher streams the rest.
        for line in 0..(self.dim * 4).div_ceil(64).min(4) {
            crate::simd::prefetch_line(p.wrapping_add(line * 16).cast());
        }
    }

    fn extend(&mut self, rows: &[f32], normalize: bool) {
        let data = self.data.to_mut();
        let start = data.len();
        data.reserve_exact(rows.len());
        data.extend_from_slice(rows);
        if normalize {
            // In place, so no normalised copy of the batch is ever held beside the store.
            data[start..]
                .chunks_exact_mut(self.dim)
                .for_each(vector::normalize);
        }
    }

    fn gather(&self, keep: &[u32]) -> Self {
        let mut data = Vec::with_capacity(keep.len() * self.dim);
        for &i in keep {
            data.extend_from_slice(self.row(i));
        }
        Self::new(self.dim, self.metric, Buf::Owned(data))
    }

    fn memory_usage(&self) -> usize {
        self.data.held_bytes()
    }
}
