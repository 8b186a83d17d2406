//! SQ8: one byte per dimension, with a per-dimension minimum and step, `x_j ≈ min_j + code_j ·
//! step_j`. The one SQ8 codec of the crate: inverted lists store residuals in it, and a graph
//! stores vectors in it ([`Sq8Codes`], optionally with float16 copies, [`Sq8F16`]).
//!
//! `<q, x> ≈ <q, min> + Σ_j (q_j · step_j) · code_j`, so a query is prepared once into weights
//! `q ∘ step` and a bias, and each code costs one u8×f32 dot product. A graph walk rounds the
//! weights to i16 as well and runs an exact integer dot product ([`Sq8Query::ip_walk`]).

use super::{ListCodec, ListScan};
use crate::index::io::{Reader, Writer};
use crate::index::ivf::list::Layout;
use crate::index::metric::Metric;
use crate::index::store::{row_maybe_normalized, VectorStore};
use crate::index::topk::TopK;
use crate::simd::rowdot;
use crate::simd::vector::{i16_query_limit, kernels, Kernels};
use crate::simd::{prefetch_line, widen, Half, Isa};
use crate::Result;

/// Trained SQ8 parameters (empty before training).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sq8 {
    pub vmin: Vec<f32>,
    pub step: Vec<f32>,
}

/// Per-dimension minimum and maximum of some rows.
struct Bounds {
    lo: Vec<f32>,
    hi: Vec<f32>,
}

impl Bounds {
    fn empty(d: usize) -> Self {
        Bounds {
            lo: vec![f32::INFINITY; d],
            hi: vec![f32::NEG_INFINITY; d],
        }
    }

    /// The range a trained codec covers.
    fn covered_by(sq: &Sq8) -> Self {
        Bounds {
            lo: sq.vmin.clone(),
            hi: sq.vmin.iter().zip(&sq.step).map(|(m, s)| m + 255.0 * s).collect(),
        }
    }

    fn include(&mut self, row: &[f32]) {
        for ((lo, hi), &x) in self.lo.iter_mut().zip(&mut self.hi).zip(row) {
            *lo = lo.min(x);
            *hi = hi.max(x);
        }
    }
}

/// The code of `x` in the range starting at `min` with step `step` (clamped to 0..=255; every
/// value codes 0 in a dimension without spread).
#[inline(always)]
fn code_of(x: f32, min: f32, step: f32) -> u8 {
    let c = if step > 0.0 {
        ((x - min) / step).round()
    } else {
        0.0
    };
    c.clamp(0.0, 255.0) as u8
}

impl Sq8 {
    /// The range of the residuals `data` (`[n, d]`, `n >= 1`). A dimension without spread gets
    /// step 1, so entries added later still code their offsets from it in whole units.
    pub fn train(data: &[f32], d: usize) -> Self {
        let mut b = Bounds::empty(d);
        data.chunks_exact(d).for_each(|row| b.include(row));
        let step =
            b.lo.iter()
                .zip(&b.hi)
                .map(|(l, h)| if h > l { (h - l) / 255.0 } else { 1.0 })
                .collect();
        Sq8 { vmin: b.lo, step }
    }

    /// The codec spanning `b` exactly (step 0 where a dimension has no spread).
    fn spanning(b: Bounds) -> Self {
        let step = b.lo.iter().zip(&b.hi).map(|(l, h)| (h - l) / 255.0).collect();
        Sq8 { vmin: b.lo, step }
    }

    pub fn is_trained(&self) -> bool {
        !self.vmin.is_empty()
    }

    pub fn code_size(&self) -> usize {
        self.vmin.len()
    }

    /// Encode one vector (values outside the trained range are clamped).
    pub fn encode(&self, x: &[f32], out: &mut [u8]) {
        for (((o, &x), &m), &s) in out.iter_mut().zip(x).zip(&self.vmin).zip(&self.step) {
            *o = code_of(x, m, s);
        }
    }

    /// Decode one code.
    pub fn decode(&self, code: &[u8], out: &mut [f32]) {
        for (((o, &c), &m), &s) in out.iter_mut().zip(code).zip(&self.vmin).zip(&self.step) {
            *o = m + c as f32 * s;
        }
    }

    /// A query for inner products: weights `q ∘ step` and bias `<q, min>`; with `int`, the
    /// weights rounded to i16 too (for [`Sq8Query::ip_walk`]).
    pub fn prepare_ip(&self, q: &[f32], int: bool) -> Sq8Query {
        Sq8Query::new(
            q.iter().zip(&self.step).map(|(a, s)| a * s).collect(),
            q.iter().zip(&self.vmin).map(|(a, m)| a * m).sum(),
            int,
        )
    }

    /// A query for squared distances: `q − min` (see [`Sq8Query::l2sq`]).
    pub fn prepare_l2(&self, q: &[f32]) -> Sq8Query {
        Sq8Query::new(q.iter().zip(&self.vmin).map(|(x, m)| x - m).collect(), 0.0, false)
    }

    /// The parameters `save` wrote (`sq8_min`, `sq8_step`, `dim` values each).
    pub fn load(r: &Reader, dim: usize) -> Result<Self> {
        Ok(Sq8 {
            vmin: r.array::<f32>("sq8_min", Some(dim))?.as_slice().to_vec(),
            step: r.array::<f32>("sq8_step", Some(dim))?.as_slice().to_vec(),
        })
    }
}

/// A query prepared against SQ8 codes: inner product `bias + <w, code>` with `w = q ∘ step`,
/// `bias = <q, min>`; or squared distance `‖w − step ∘ code‖²` with `w = q − min`.
///
/// For a graph walk's inner products `w` is also rounded to i16 (`w ≈ wi_scale · wi`, `|wi|` up
/// to [`i16_query_limit`]) so `<w, code>` runs as an exact integer dot product: three times fewer
/// instructions than widening codes to f32, and the rounding (relative 1/20,000 of the largest
/// `|w_j|` at 384 dimensions) is far below the 8-bit code's own error.
pub struct Sq8Query {
    w: Vec<f32>,
    bias: f32,
    wi: Vec<i16>,
    wi_scale: f32,
}

/// Dimensions up to which the i16 query path is used (its step stays below 1/1,000 of the range).
const I16_MAX_DIM: usize = 8192;

impl Sq8Query {
    fn new(w: Vec<f32>, bias: f32, int: bool) -> Self {
        let wmax = w.iter().fold(0f32, |m, x| m.max(x.abs()));
        if !int || wmax == 0.0 || w.len() > I16_MAX_DIM {
            return Self {
                w,
                bias,
                wi: Vec::new(),
                wi_scale: 0.0,
            };
        }
        let lim = i16_query_limit(w.len()) as f32;
        let wi_scale = wmax / lim;
        let inv = lim / wmax;
        // Round half away from zero by hand: `f32::round` is a library call here, and this
        // runs for every node inserted and every link list re-selected while building.
        let wi = w
            .iter()
            .map(|x| {
                let v = (x * inv).clamp(-lim, lim);
                (v + 0.5f32.copysign(v)) as i16
            })
            .collect();
        Self {
            w,
            bias,
            wi,
            wi_scale,
        }
    }

    /// Estimated `<q, x>` of `out.len()` consecutive codes (sixteen rows per kernel step).
    #[inline]
    pub fn ips(&self, codes: &[u8], out: &mut [f32]) {
        rowdot::dots_u8(&self.w, codes, out);
        for o in out.iter_mut() {
            *o += self.bias;
        }
    }

    /// Estimated `<q, x>` of one code, rounded exactly as [`Sq8Query::ips`] rounds it (so an
    /// entry scores the same alone and in a list scan).
    #[inline]
    pub fn ip(&self, code: &[u8]) -> f32 {
        let mut out = [0f32];
        self.ips(code, &mut out);
        out[0]
    }

    /// Estimated `<q, x>` of one code by the fastest one-pair kernel (the integer one when the
    /// query was prepared with it), for a graph walk.
    #[inline(always)]
    pub fn ip_walk(&self, k: &Kernels, code: &[u8]) -> f32 {
        if self.wi.is_empty() {
            self.bias + k.dot_u8(&self.w, code)
        } else {
            self.bias + self.wi_scale * k.dot_i16_u8(&self.wi, code) as f32
        }
    }

    /// Squared distance to one code (a query from [`Sq8::prepare_l2`], `step` the codec's).
    #[inline(always)]
    pub fn l2sq(&self, k: &Kernels, step: &[f32], code: &[u8]) -> f32 {
        k.l2sq_u8(&self.w, step, code)
    }
}

impl ListCodec for Sq8 {
    type Query = Sq8Query;

    fn layout(&self, _dim: usize) -> Layout {
        Layout {
            code_size: self.code_size(),
            ..Layout::default()
        }
    }

    fn encode(&self, x: &[f32], code: &mut [u8], _aux: &mut [f32]) {
        Sq8::encode(self, x, code)
    }

    fn decode(&self, code: &[u8], out: &mut [f32]) {
        Sq8::decode(self, code, out)
    }

    fn prepare(&self, q: &[f32]) -> Sq8Query {
        self.prepare_ip(q, false)
    }

    fn scan(&self, sq: &Sq8Query, s: &ListScan, top: &mut TopK) {
        let cs = s.lay.code_size;
        // Codes are scored a chunk at a time (sixteen rows per kernel step), then tested.
        const CHUNK: usize = 4 * rowdot::ROWS;
        let mut ips = [0f32; CHUNK];
        for (c, codes) in s.list.codes.as_slice().chunks(CHUNK * cs).enumerate() {
            let ips = &mut ips[..codes.len() / cs];
            sq.ips(codes, ips);
            for (i, &ip) in ips.iter().enumerate() {
                let pos = c * CHUNK + i;
                s.offer(top, s.score(s.base + ip, pos), pos);
            }
        }
    }

    fn estimate(&self, sq: &Sq8Query, s: &ListScan, pos: usize, code: &mut Vec<u8>) -> (f32, f32) {
        s.list.code(s.lay, pos, code);
        (sq.ip(code), 0.0)
    }

    fn param_bytes(&self) -> usize {
        8 * self.vmin.len()
    }

    fn save<'a>(&'a self, w: &mut Writer<'a>, _dim: usize) {
        w.add("sq8_min", vec![self.vmin.len()], &self.vmin);
        w.add("sq8_step", vec![self.step.len()], &self.step);
    }
}

/// A graph's vectors as SQ8 codes (no residuals): the range is trained on the first batch and
/// widened by later ones that exceed it (re-encoding what is stored), so a small first batch
/// does not clamp everything added after it.
pub struct Sq8Codes {
    pub(crate) dim: usize,
    pub(crate) metric: Metric,
    pub(crate) sq: Sq8,
    pub(crate) codes: Vec<u8>,
    k: Kernels,
}

impl Sq8Codes {
    pub fn new(dim: usize, metric: Metric, sq: Sq8, codes: Vec<u8>) -> Self {
        Self {
            dim,
            metric,
            sq,
            codes,
            k: *kernels(),
        }
    }

    /// Set the range from the rows of `rows` (each scaled to unit norm first when `normalize`).
    pub fn train(&mut self, rows: &[f32], normalize: bool) {
        let mut b = Bounds::empty(self.dim);
        let mut buf = Vec::with_capacity(self.dim);
        for r in rows.chunks_exact(self.dim) {
            b.include(row_maybe_normalized(r, normalize, &mut buf));
        }
        if rows.is_empty() {
            b.lo.fill(0.0);
            b.hi.fill(0.0);
        }
        self.sq = Sq8::spanning(b);
    }

    /// Grow the trained range to cover `rows`, re-encoding the codes already stored in the
    /// wider range.
    fn widen(&mut self, rows: &[f32], normalize: bool) {
        let d = self.dim;
        let mut b = Bounds::covered_by(&self.sq);
        let mut buf = Vec::with_capacity(d);
        for r in rows.chunks_exact(d) {
            b.include(row_maybe_normalized(r, normalize, &mut buf));
        }
        let wider = Sq8::spanning(b);
        if wider == self.sq {
            return;
        }
        let mut x = vec![0f32; d];
        for c in self.codes.chunks_exact_mut(d) {
            self.sq.decode(c, &mut x);
            wider.encode(&x, c);
        }
        self.sq = wider;
    }

    #[inline(always)]
    fn code(&self, i: u32) -> &[u8] {
        let s = i as usize * self.dim;
        &self.codes[s..s + self.dim]
    }
}

impl VectorStore for Sq8Codes {
    type Query = Sq8Query;

    fn dim(&self) -> usize {
        self.dim
    }

    fn len(&self) -> usize {
        self.codes.len() / self.dim.max(1)
    }

    fn prepare(&self, q: &[f32]) -> Sq8Query {
        match self.metric {
            Metric::L2 => self.sq.prepare_l2(q),
            Metric::Ip | Metric::Cosine => self.sq.prepare_ip(q, true),
        }
    }

    #[inline(always)]
    fn score(&self, q: &Sq8Query, i: u32) -> f32 {
        match self.metric {
            Metric::L2 => -q.l2sq(&self.k, &self.sq.step, self.code(i)),
            Metric::Ip | Metric::Cosine => q.ip_walk(&self.k, self.code(i)),
        }
    }

    const DIRECT_PAIRS: bool = false;

    fn score_pair(&self, a: u32, b: u32) -> f32 {
        let (ca, cb) = (self.code(a), self.code(b));
        let mut t = 0f32;
        for j in 0..self.dim {
            let (m, s) = (self.sq.vmin[j], self.sq.step[j]);
            let (x, y) = (m + s * ca[j] as f32, m + s * cb[j] as f32);
            t += match self.metric {
                Metric::L2 => -((x - y) * (x - y)),
                Metric::Ip | Metric::Cosine => x * y,
            };
        }
        t
    }

    fn decode(&self, i: u32, out: &mut Vec<f32>) {
        out.clear();
        out.resize(self.dim, 0.0);
        self.sq.decode(self.code(i), out);
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
        if !self.sq.is_trained() {
            self.train(rows, normalize);
        } else {
            self.widen(rows, normalize);
        }
        self.codes.reserve_exact(rows.len());
        let mut buf = Vec::with_capacity(self.dim);
        let mut code = vec![0u8; self.dim];
        for r in rows.chunks_exact(self.dim) {
            self.sq
                .encode(row_maybe_normalized(r, normalize, &mut buf), &mut code);
            self.codes.extend_from_slice(&code);
        }
    }

    fn gather(&self, keep: &[u32]) -> Self {
        let mut codes = Vec::with_capacity(keep.len() * self.dim);
        for &i in keep {
            codes.extend_from_slice(self.code(i));
        }
        Self::new(self.dim, self.metric, self.sq.clone(), codes)
    }

    fn memory_usage(&self) -> usize {
        self.codes.capacity() + (self.sq.vmin.capacity() + self.sq.step.capacity()) * 4
    }
}

/// The largest finite float16 value: vectors beyond it cannot be kept by [`Sq8F16`].
pub const F16_MAX: f32 = 65504.0;

/// SQ8 codes for a graph walk plus float16 copies of the vectors (2 bytes per dimension) that
/// re-score the final candidates: the 8-bit scores steer the search, and the returned order and
/// scores come from the float16 vectors (relative error about 1/2,000 per value, far below the
/// 8-bit code's), at half the memory of float32 copies.
pub struct Sq8F16 {
    pub(crate) sq: Sq8Codes,
    /// float16 bits, `[n, dim]` (normalised rows for cosine).
    pub(crate) half: Vec<u16>,
    isa: Isa,
}

/// A query against [`Sq8F16`]: the SQ8 form for the walk and the f32 one for re-scoring.
pub struct Sq8F16Query {
    sq: Sq8Query,
    q: Vec<f32>,
}

impl Sq8F16 {
    pub fn new(sq: Sq8Codes, half: Vec<u16>) -> Self {
        Self {
            sq,
            half,
            isa: crate::simd::detect(),
        }
    }
}

impl VectorStore for Sq8F16 {
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
    fn score(&self, q: &Sq8F16Query, i: u32) -> f32 {
        self.sq.score(&q.sq, i)
    }

    const DIRECT_PAIRS: bool = false;

    fn score_pair(&self, a: u32, b: u32) -> f32 {
        self.sq.score_pair(a, b)
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
        Self::new(self.sq.gather(keep), half)
    }

    fn memory_usage(&self) -> usize {
        self.sq.memory_usage() + self.half.capacity() * 2
    }

    const RESCORES: bool = true;

    fn precise_score(&self, q: &Sq8F16Query, i: u32) -> f32 {
        // Widened a stack-sized chunk at a time; inner products and squared distances add up
        // over chunks of dimensions.
        const CHUNK: usize = 512;
        let dim = self.sq.dim;
        let row = &self.half[i as usize * dim..][..dim];
        let mut buf = [0f32; CHUNK];
        let mut total = 0f32;
        for (h, qc) in row.chunks(CHUNK).zip(q.q.chunks(CHUNK)) {
            let x = &mut buf[..h.len()];
            widen(self.isa, Half::F16, h, x);
            total += self.sq.metric.score(&self.sq.k, qc, x);
        }
        total
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
            assert!((sq.prepare_ip(&q, false).ip(&code) - exact).abs() < 1e-3);
        }
    }

    #[test]
    fn a_dimension_without_spread_codes_offsets_in_lists_and_its_value_in_a_graph() {
        // Lists: step 1, so a later value codes its whole-unit offset.
        let sq = Sq8::train(&[1.0, 2.0, 1.0, 4.0], 2);
        assert_eq!(sq.step, [1.0, 2.0 / 255.0]);
        let mut code = [0u8; 2];
        sq.encode(&[4.0, 4.0], &mut code);
        assert_eq!(code, [3, 255]);
        // A graph: step 0, every value codes 0 until a batch widens the range.
        let mut g = Sq8Codes::new(2, Metric::L2, Sq8::default(), Vec::new());
        g.extend(&[1.0, 2.0, 1.0, 4.0], false);
        assert_eq!(g.sq.step, [0.0, 2.0 / 255.0]);
        assert_eq!(g.codes, [0, 0, 0, 255]);
        g.extend(&[3.0, 4.0], false);
        assert_eq!(g.sq.vmin, [1.0, 2.0]);
        assert_eq!(g.codes[4..], [255, 255]);
        let mut out = Vec::new();
        g.decode(2, &mut out);
        assert!(
            (out[0] - 3.0).abs() < 1e-5 && (out[1] - 4.0).abs() < 1e-5,
            "{out:?}"
        );
        g.decode(0, &mut out);
        assert!(
            (out[0] - 1.0).abs() < 1e-5 && (out[1] - 2.0).abs() < 1e-5,
            "{out:?}"
        );
    }
}
