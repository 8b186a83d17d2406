//! Where the graph's vectors live, and how a query is compared with them.
//!
//! The graph only needs "distance from a prepared query to stored vector `i`" (lower is closer)
//! and "the stored vector `i` as f32" (to compare two stored vectors). Three stores implement it:
//! plain f32 rows; SQ8 codes (one byte per dimension, per-dimension min/max) with asymmetric
//! distances (the query stays f32); and SQ8 codes with float16 copies of the vectors, which the
//! walk does not touch and the final candidates are re-scored with.

use super::Metric;
use crate::simd::prefetch_line;
use crate::simd::vector::{self, i16_query_limit, kernels, Kernels};

/// A vector store the HNSW graph runs over. Distances are "lower is closer": `-<q, x>` for inner
/// product (and cosine, whose vectors are normalised before they get here), `|q - x|²` for L2.
pub trait VectorStore: Send + Sync {
    /// A query in the form the distance kernel wants (e.g. pre-scaled for SQ8).
    type Query: Send + Sync;
    fn dim(&self) -> usize;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Prepare an f32 query (already normalised when the metric is cosine).
    fn prepare(&self, q: &[f32]) -> Self::Query;
    /// Distance from a prepared query to stored vector `i`.
    fn dist(&self, q: &Self::Query, i: u32) -> f32;
    /// Whether [`VectorStore::dist_stored`] is as cheap as a query distance (then the build
    /// compares stored vectors directly instead of preparing one as a query).
    const DIRECT_PAIRS: bool;
    /// Distance between stored vectors `a` and `b`.
    fn dist_stored(&self, a: u32, b: u32) -> f32;
    /// The stored vector `i` as f32 (exact for f32 rows, decoded for SQ8), written to `out`.
    fn decode(&self, i: u32, out: &mut Vec<f32>);
    /// Start loading vector `i` into cache.
    fn prefetch(&self, i: u32);
    /// Append vectors (rows of `dim`), each scaled to unit norm first when `normalize`.
    fn extend(&mut self, rows: &[f32], normalize: bool);
    /// A new store with the rows `keep` of this one, bit for bit (codes are copied, not re-encoded).
    fn gather(&self, keep: &[u32]) -> Self;
    /// Bytes held by the stored vectors and the store's parameters.
    fn memory_usage(&self) -> usize;
    /// Whether [`VectorStore::precise_dist`] is more precise than [`VectorStore::dist`]; the
    /// search then re-scores its final candidate list with it.
    const RESCORES: bool = false;
    /// Distance from a prepared query to stored vector `i` from the most precise copy held.
    fn precise_dist(&self, q: &Self::Query, i: u32) -> f32 {
        self.dist(q, i)
    }
}

/// Full-precision rows.
pub struct F32Store {
    pub(crate) dim: usize,
    pub(crate) metric: Metric,
    pub(crate) data: Vec<f32>,
    k: Kernels,
}

impl F32Store {
    pub fn new(dim: usize, metric: Metric) -> Self {
        Self {
            dim,
            metric,
            data: Vec::new(),
            k: *kernels(),
        }
    }

    pub fn from_data(dim: usize, metric: Metric, data: Vec<f32>) -> Self {
        Self {
            dim,
            metric,
            data,
            k: *kernels(),
        }
    }

    #[inline(always)]
    fn row(&self, i: u32) -> &[f32] {
        let s = i as usize * self.dim;
        &self.data[s..s + self.dim]
    }
}

impl VectorStore for F32Store {
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
    fn dist(&self, q: &Vec<f32>, i: u32) -> f32 {
        match self.metric {
            Metric::L2 => (self.k.l2sq)(q, self.row(i)),
            Metric::Ip | Metric::Cosine => -(self.k.dot)(q, self.row(i)),
        }
    }

    const DIRECT_PAIRS: bool = true;

    #[inline(always)]
    fn dist_stored(&self, a: u32, b: u32) -> f32 {
        match self.metric {
            Metric::L2 => (self.k.l2sq)(self.row(a), self.row(b)),
            Metric::Ip | Metric::Cosine => -(self.k.dot)(self.row(a), self.row(b)),
        }
    }

    fn decode(&self, i: u32, out: &mut Vec<f32>) {
        out.clear();
        out.extend_from_slice(self.row(i));
    }

    #[inline(always)]
    fn prefetch(&self, i: u32) {
        let p = self.data.as_ptr().wrapping_add(i as usize * self.dim);
        // The first few cache lines are what matters; the hardware prefetcher streams the rest.
        for line in 0..(self.dim * 4).div_ceil(64).min(4) {
            prefetch_line(p.wrapping_add(line * 16).cast());
        }
    }

    fn extend(&mut self, rows: &[f32], normalize: bool) {
        let start = self.data.len();
        self.data.reserve_exact(rows.len());
        self.data.extend_from_slice(rows);
        if normalize {
            // In place, so no normalised copy of the batch is ever held beside the store.
            for r in self.data[start..].chunks_exact_mut(self.dim) {
                vector::normalize(r);
            }
        }
    }

    fn gather(&self, keep: &[u32]) -> Self {
        let mut data = Vec::with_capacity(keep.len() * self.dim);
        for &i in keep {
            data.extend_from_slice(self.row(i));
        }
        Self::from_data(self.dim, self.metric, data)
    }

    fn memory_usage(&self) -> usize {
        self.data.capacity() * 4
    }
}

/// SQ8 codes: `x_j ≈ min_j + scale_j * code_j`, `scale_j = (max_j - min_j) / 255`. The range is
/// trained on the first batch added; later values outside it are clamped.
pub struct Sq8Store {
    pub(crate) dim: usize,
    pub(crate) metric: Metric,
    pub(crate) min: Vec<f32>,
    pub(crate) scale: Vec<f32>,
    pub(crate) codes: Vec<u8>,
    k: Kernels,
}

/// A query against SQ8 codes: inner product `= c + <a, code>` with `a = q ∘ scale`,
/// `c = <q, min>`; L2 `= |a - scale ∘ code|²` with `a = q - min`.
///
/// For inner products `a` is also rounded to i16 (`a ≈ a_scale * ai`, `|ai|` up to
/// [`i16_query_limit`]) so `<a, code>` runs as an exact integer dot product: three times fewer
/// instructions than widening codes to f32, and the rounding (relative 1/20,000 of the largest
/// `|a_j|` at 384 dimensions) is far below the 8-bit code's own error.
pub struct Sq8Query {
    a: Vec<f32>,
    c: f32,
    ai: Vec<i16>,
    a_scale: f32,
}

/// Dimensions up to which the i16 query path is used (its step stays below 1/1,000 of the range).
const I16_MAX_DIM: usize = 8192;

impl Sq8Query {
    fn new(a: Vec<f32>, c: f32, int: bool) -> Self {
        let amax = a.iter().fold(0f32, |m, x| m.max(x.abs()));
        if !int || amax == 0.0 || a.len() > I16_MAX_DIM {
            return Self {
                a,
                c,
                ai: Vec::new(),
                a_scale: 0.0,
            };
        }
        let lim = i16_query_limit(a.len()) as f32;
        let a_scale = amax / lim;
        let inv = lim / amax;
        // Round half away from zero by hand: `f32::round` is a library call here, and this
        // runs for every node inserted and every link list re-selected while building.
        let ai = a
            .iter()
            .map(|x| {
                let v = (x * inv).clamp(-lim, lim);
                (v + 0.5f32.copysign(v)) as i16
            })
            .collect();
        Self { a, c, ai, a_scale }
    }
}

impl Sq8Store {
    pub fn new(dim: usize, metric: Metric) -> Self {
        Self {
            dim,
            metric,
            min: Vec::new(),
            scale: Vec::new(),
            codes: Vec::new(),
            k: *kernels(),
        }
    }

    pub fn from_parts(dim: usize, metric: Metric, min: Vec<f32>, scale: Vec<f32>, codes: Vec<u8>) -> Self {
        Self {
            dim,
            metric,
            min,
            scale,
            codes,
            k: *kernels(),
        }
    }

    pub fn trained(&self) -> bool {
        self.min.len() == self.dim
    }

    /// Set the per-dimension range from the rows of `rows` (min/max over them, after scaling
    /// each row to unit norm when `normalize`).
    pub fn train(&mut self, rows: &[f32], normalize: bool) {
        let d = self.dim;
        let mut lo = vec![f32::INFINITY; d];
        let mut hi = vec![f32::NEG_INFINITY; d];
        let mut buf = Vec::with_capacity(d);
        for r in rows.chunks_exact(d) {
            let r = row_maybe_normalized(r, normalize, &mut buf);
            for j in 0..d {
                lo[j] = lo[j].min(r[j]);
                hi[j] = hi[j].max(r[j]);
            }
        }
        if rows.is_empty() {
            lo.fill(0.0);
            hi.fill(0.0);
        }
        self.scale = lo.iter().zip(&hi).map(|(l, h)| (h - l) / 255.0).collect();
        self.min = lo;
    }

    /// Grow the trained range to cover `rows`, re-encoding the codes already stored in the wider
    /// range (so a small first batch does not clamp everything added later).
    #[allow(clippy::needless_range_loop)] // three parallel per-dimension arrays
    fn widen(&mut self, rows: &[f32], normalize: bool) {
        let d = self.dim;
        let mut lo = self.min.clone();
        let mut hi: Vec<f32> = self
            .min
            .iter()
            .zip(&self.scale)
            .map(|(m, s)| m + 255.0 * s)
            .collect();
        let mut buf = Vec::with_capacity(d);
        for r in rows.chunks_exact(d) {
            let r = row_maybe_normalized(r, normalize, &mut buf);
            for j in 0..d {
                lo[j] = lo[j].min(r[j]);
                hi[j] = hi[j].max(r[j]);
            }
        }
        let scale: Vec<f32> = lo.iter().zip(&hi).map(|(l, h)| (h - l) / 255.0).collect();
        if lo == self.min && scale == self.scale {
            return;
        }
        for c in self.codes.chunks_exact_mut(d) {
            for j in 0..d {
                let x = self.min[j] + self.scale[j] * c[j] as f32;
                c[j] = encode(x, lo[j], scale[j]);
            }
        }
        self.min = lo;
        self.scale = scale;
    }

    #[inline(always)]
    fn code(&self, i: u32) -> &[u8] {
        let s = i as usize * self.dim;
        &self.codes[s..s + self.dim]
    }
}

impl VectorStore for Sq8Store {
    type Query = Sq8Query;

    fn dim(&self) -> usize {
        self.dim
    }

    fn len(&self) -> usize {
        self.codes.len() / self.dim.max(1)
    }

    fn prepare(&self, q: &[f32]) -> Sq8Query {
        match self.metric {
            Metric::L2 => Sq8Query::new(q.iter().zip(&self.min).map(|(x, m)| x - m).collect(), 0.0, false),
            Metric::Ip | Metric::Cosine => Sq8Query::new(
                q.iter().zip(&self.scale).map(|(x, s)| x * s).collect(),
                q.iter().zip(&self.min).map(|(x, m)| x * m).sum(),
                true,
            ),
        }
    }

    #[inline(always)]
    fn dist(&self, q: &Sq8Query, i: u32) -> f32 {
        match self.metric {
            Metric::L2 => (self.k.l2sq_u8)(&q.a, &self.scale, self.code(i)),
            Metric::Ip | Metric::Cosine if !q.ai.is_empty() => {
                -(q.c + q.a_scale * (self.k.dot_i16_u8)(&q.ai, self.code(i)) as f32)
            }
            Metric::Ip | Metric::Cosine => -(q.c + (self.k.dot_u8)(&q.a, self.code(i))),
        }
    }

    const DIRECT_PAIRS: bool = false;

    fn dist_stored(&self, a: u32, b: u32) -> f32 {
        let (ca, cb) = (self.code(a), self.code(b));
        let mut t = 0f32;
        for j in 0..self.dim {
            let (m, s) = (self.min[j], self.scale[j]);
            let (x, y) = (m + s * ca[j] as f32, m + s * cb[j] as f32);
            t += match self.metric {
                Metric::L2 => (x - y) * (x - y),
                Metric::Ip | Metric::Cosine => -x * y,
            };
        }
        t
    }

    fn decode(&self, i: u32, out: &mut Vec<f32>) {
        out.clear();
        let c = self.code(i);
        out.extend((0..self.dim).map(|j| self.min[j] + self.scale[j] * c[j] as f32));
    }

    #[inline(always)]
    fn prefetch(&self, i: u32) {
        let p = self.codes.as_ptr().wrapping_add(i as usize * self.dim);
        for line in 0..self.dim.div_ceil(64).min(8) {
            prefetch_line(p.wrapping_add(line * 64));
        }
    }

    fn extend(&mut self, rows: &[f32], normalize: bool) {
        if rows.is_empty() {
            return;
        }
        if !self.trained() {
            self.train(rows, normalize);
        } else {
            self.widen(rows, normalize);
        }
        self.codes.reserve_exact(rows.len());
        let mut buf = Vec::with_capacity(self.dim);
        for r in rows.chunks_exact(self.dim) {
            let r = row_maybe_normalized(r, normalize, &mut buf);
            for ((x, m), sc) in r.iter().zip(&self.min).zip(&self.scale) {
                self.codes.push(encode(*x, *m, *sc));
            }
        }
    }

    fn gather(&self, keep: &[u32]) -> Self {
        let mut codes = Vec::with_capacity(keep.len() * self.dim);
        for &i in keep {
            codes.extend_from_slice(self.code(i));
        }
        Self::from_parts(self.dim, self.metric, self.min.clone(), self.scale.clone(), codes)
    }

    fn memory_usage(&self) -> usize {
        self.codes.capacity() + (self.min.capacity() + self.scale.capacity()) * 4
    }
}

/// The largest finite float16 value: vectors beyond it cannot be kept by [`Sq8F16Store`].
pub const F16_MAX: f32 = 65504.0;

/// SQ8 codes for the walk plus float16 copies of the vectors (2 bytes per dimension) for
/// re-scoring the final candidates: the 8-bit distances steer the search, and the returned
/// order and scores come from the float16 vectors (relative error about 1/2,000 per value, far
/// below the 8-bit code's), at half the memory of float32 copies.
pub struct Sq8F16Store {
    pub(crate) sq: Sq8Store,
    /// float16 bits, `[n, dim]` (normalised rows for cosine).
    pub(crate) half: Vec<u16>,
    isa: crate::simd::Isa,
}

/// A query against [`Sq8F16Store`]: the SQ8 form for the walk and the f32 one for re-scoring.
pub struct Sq8F16Query {
    sq: Sq8Query,
    q: Vec<f32>,
}

impl Sq8F16Store {
    pub fn new(dim: usize, metric: Metric) -> Self {
        Self::from_parts(Sq8Store::new(dim, metric), Vec::new())
    }

    pub fn from_parts(sq: Sq8Store, half: Vec<u16>) -> Self {
        Self {
            sq,
            half,
            isa: crate::simd::detect(),
        }
    }
}

impl VectorStore for Sq8F16Store {
    type Query = Sq8F16Query;

    fn dim(&self) -> usize {
        self.sq.dim
    }

    fn len(&self) -> usize {
        self.sq.len()
    }

    fn prepare(&self, q: &[f32]) -> Sq8F16Query {
        Sq8F16Query {
            sq: self.sq.prepare(q),
            q: q.to_vec(),
        }
    }

    #[inline(always)]
    fn dist(&self, q: &Sq8F16Query, i: u32) -> f32 {
        self.sq.dist(&q.sq, i)
    }

    const DIRECT_PAIRS: bool = false;

    fn dist_stored(&self, a: u32, b: u32) -> f32 {
        self.sq.dist_stored(a, b)
    }

    fn decode(&self, i: u32, out: &mut Vec<f32>) {
        self.sq.decode(i, out)
    }

    #[inline(always)]
    fn prefetch(&self, i: u32) {
        self.sq.prefetch(i)
    }

    fn extend(&mut self, rows: &[f32], normalize: bool) {
        self.sq.extend(rows, normalize);
        let dim = self.sq.dim;
        self.half.reserve_exact(rows.len());
        let mut buf = Vec::with_capacity(dim);
        for r in rows.chunks_exact(dim) {
            let r = row_maybe_normalized(r, normalize, &mut buf);
            self.half
                .extend(r.iter().map(|&x| half::f16::from_f32(x).to_bits()));
        }
    }

    fn gather(&self, keep: &[u32]) -> Self {
        let dim = self.sq.dim;
        let mut half = Vec::with_capacity(keep.len() * dim);
        for &i in keep {
            half.extend_from_slice(&self.half[i as usize * dim..][..dim]);
        }
        Self::from_parts(self.sq.gather(keep), half)
    }

    fn memory_usage(&self) -> usize {
        self.sq.memory_usage() + self.half.capacity() * 2
    }

    const RESCORES: bool = true;

    fn precise_dist(&self, q: &Sq8F16Query, i: u32) -> f32 {
        // Widened a stack-sized chunk at a time; dot products and squared distances add up
        // over chunks of dimensions.
        const CHUNK: usize = 512;
        let dim = self.sq.dim;
        let row = &self.half[i as usize * dim..][..dim];
        let mut buf = [0f32; CHUNK];
        let mut total = 0f32;
        for (h, qc) in row.chunks(CHUNK).zip(q.q.chunks(CHUNK)) {
            let x = &mut buf[..h.len()];
            crate::simd::widen(self.isa, crate::simd::Half::F16, h, x);
            total += match self.sq.metric {
                Metric::L2 => (self.sq.k.l2sq)(qc, x),
                Metric::Ip | Metric::Cosine => -(self.sq.k.dot)(qc, x),
            };
        }
        total
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

/// The SQ8 code of `x` in the range starting at `min` with step `scale` (clamped to 0..=255).
#[inline(always)]
fn encode(x: f32, min: f32, scale: f32) -> u8 {
    let c = if scale > 0.0 {
        ((x - min) / scale).round()
    } else {
        0.0
    };
    c.clamp(0.0, 255.0) as u8
}
