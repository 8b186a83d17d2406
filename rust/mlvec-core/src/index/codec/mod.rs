//! How inverted lists encode their vectors: one trait, [`ListCodec`], implemented by the five
//! codecs — [`flat::Flat`] (float32), [`sq8::Sq8`] (8-bit scalar), [`pq::Pq`] (8-bit product
//! quantization), [`fastscan::FastScan`] (4-bit PQ scanned with in-register look-ups) and
//! [`binary::Binary`] (RaBitQ-style bits).
//!
//! A codec trains on residuals (vectors minus their list's centroid; Flat stores the vectors
//! themselves), encodes and decodes one entry, prepares a query once, scans a whole list into a
//! top-k and estimates one entry, reports the bytes of its parameters and saves and loads them.
//! The index holds the trained codec as a [`Codec`]; `with_codec!` matches it once per query
//! (or per batch) and runs generic code, so every per-vector call in a scan is static.

pub mod binary;
pub mod fastscan;
pub mod flat;
pub mod pq;
pub mod sq8;

use super::factory::CodecSpec;
use super::filter::Bitmap;
use super::io::{Reader, Writer};
use super::ivf::list::{Layout, List};
use super::metric::Metric;
use super::topk::TopK;
use crate::Result;

/// One list scan's inputs: the list and the query as every codec needs them.
pub struct ListScan<'a> {
    /// The list, and what its entries hold.
    pub list: &'a List,
    pub lay: &'a Layout,
    /// The list's number (the top-k payload is `(list << 32) | position`).
    pub l: usize,
    /// The query (normalised for cosine) and `‖q‖²` (L2 only, else 0).
    pub q: &'a [f32],
    pub qn2: f32,
    /// `<q, centroid>` for residual codecs (the score of a residual adds it), else 0.
    pub base: f32,
    pub metric: Metric,
    /// Slots that may be returned (all when `None`).
    pub allow: Option<&'a Bitmap>,
    /// The list's slots and squared norms (empty without norms), read per entry.
    slots: &'a [u32],
    norms: &'a [f32],
}

impl<'a> ListScan<'a> {
    /// The scan of list number `l` for query `q` (see the fields).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        list: &'a List,
        lay: &'a Layout,
        l: usize,
        q: &'a [f32],
        qn2: f32,
        base: f32,
        metric: Metric,
        allow: Option<&'a Bitmap>,
    ) -> Self {
        ListScan {
            list,
            lay,
            l,
            q,
            qn2,
            base,
            metric,
            allow,
            slots: &list.slots,
            norms: if lay.norms { list.norms.as_slice() } else { &[] },
        }
    }

    /// Whether the entry holding `slot` may be returned.
    #[inline(always)]
    pub fn allowed(&self, slot: u32) -> bool {
        self.allow.is_none_or(|a| a.contains(slot))
    }

    /// The metric's score of entry `pos` from its estimated inner product (`base` included).
    #[inline(always)]
    pub fn score(&self, ip: f32, pos: usize) -> f32 {
        let norm = if self.lay.norms { self.norms[pos] } else { 0.0 };
        self.metric.from_ip(ip, self.qn2, norm)
    }

    /// The top-k payload of entry `pos`.
    #[inline(always)]
    pub fn payload(&self, pos: usize) -> u64 {
        pack(self.l, pos)
    }

    /// Offer entry `pos` with `score` to `top` when it beats the threshold and is allowed.
    #[inline(always)]
    pub fn offer(&self, top: &mut TopK, score: f32, pos: usize) {
        if score >= top.threshold() && self.allowed(self.slots[pos]) {
            top.push(score, self.payload(pos));
        }
    }
}

/// A (list, position) pair as one top-k payload.
#[inline(always)]
pub fn pack(l: usize, pos: usize) -> u64 {
    ((l as u64) << 32) | pos as u64
}

/// The (list, position) pair of a top-k payload.
#[inline(always)]
pub fn unpack(p: u64) -> (usize, usize) {
    ((p >> 32) as usize, (p & 0xFFFF_FFFF) as usize)
}

/// A trained list codec.
pub trait ListCodec: Send + Sync {
    /// A query prepared for scanning this codec's codes.
    type Query: Send + Sync;
    /// Whether codes encode residuals (the vector minus its list's centroid).
    const RESIDUAL: bool = true;
    /// Whether [`ListCodec::decode`] reconstructs vectors (their squared norms then score L2;
    /// other codecs store the vectors' own).
    const DECODES: bool = true;
    /// Whether a shortlist that is not re-scored exactly is re-ranked by
    /// [`ListCodec::estimate`] (a finer estimate than the scan's).
    const REFINES: bool = false;
    /// Whether [`ListCodec::estimate`] bounds its error (exact re-scoring then skips candidates
    /// whose upper bound cannot reach the k-th exact score).
    const BOUNDED: bool = false;

    /// What a list stores per entry for this codec (the metric adds the norms).
    fn layout(&self, dim: usize) -> Layout;
    /// Encode one vector (a residual for residual codecs) into `code` and its per-entry
    /// floats `aux` (sized by [`ListCodec::layout`]).
    fn encode(&self, x: &[f32], code: &mut [u8], aux: &mut [f32]);
    /// Reconstruct one code into `out` (codecs with [`ListCodec::DECODES`]).
    fn decode(&self, code: &[u8], out: &mut [f32]);
    /// Prepare a query (normalised for cosine).
    fn prepare(&self, q: &[f32]) -> Self::Query;
    /// Offer every allowed entry of a list to `top` (payloads from [`ListScan::payload`]).
    fn scan(&self, query: &Self::Query, s: &ListScan, top: &mut TopK);
    /// The estimated inner product of entry `pos` (relative to the list's centroid for residual
    /// codecs) and a bound on its error (0 when none is known); `code` is scratch.
    fn estimate(&self, query: &Self::Query, s: &ListScan, pos: usize, code: &mut Vec<u8>) -> (f32, f32);
    /// Candidates a list scan keeps for `k` results, re-scored exactly `rescore` times over
    /// when the full-precision vectors are kept.
    fn shortlist(&self, k: usize, rescore: Option<usize>) -> usize {
        rescore.map_or(k, |r| (k * r).max(32))
    }
    /// Bytes of the trained parameters.
    fn param_bytes(&self) -> usize;
    /// Add the trained parameters to a file being written.
    fn save<'a>(&'a self, w: &mut Writer<'a>, dim: usize);
}

/// The trained codec of an index.
#[derive(Clone, Debug)]
pub enum Codec {
    Flat(flat::Flat),
    Sq8(sq8::Sq8),
    Pq8(pq::Pq),
    Pq4(fastscan::FastScan),
    Binary(binary::Binary),
}

/// Run `$body` with `$c` bound to the concrete codec inside `$codec` (a `&Codec`): one match,
/// then monomorphic code.
macro_rules! with_codec {
    ($codec:expr, |$c:ident| $body:expr) => {
        match $codec {
            $crate::index::codec::Codec::Flat($c) => $body,
            $crate::index::codec::Codec::Sq8($c) => $body,
            $crate::index::codec::Codec::Pq8($c) => $body,
            $crate::index::codec::Codec::Pq4($c) => $body,
            $crate::index::codec::Codec::Binary($c) => $body,
        }
    };
}
pub(crate) use with_codec;

impl Codec {
    /// Train the codec of `spec` on `x` (`[n, dim]` residuals; the vectors for Flat).
    pub fn train(spec: CodecSpec, x: &[f32], dim: usize, seed: u64) -> Result<Self> {
        Ok(match spec {
            CodecSpec::Flat => Codec::Flat(flat::Flat),
            CodecSpec::Sq8 => Codec::Sq8(sq8::Sq8::train(x, dim)),
            CodecSpec::Pq8 { m } => Codec::Pq8(pq::Pq::train(x, dim, m, 256, seed)?),
            CodecSpec::Pq4 { m } => Codec::Pq4(fastscan::FastScan(pq::Pq::train(x, dim, m, 16, seed)?)),
            CodecSpec::Binary => Codec::Binary(binary::Binary::new(dim, seed)),
        })
    }

    /// The trained codec of `spec` as [`ListCodec::save`] wrote it.
    pub fn load(spec: CodecSpec, r: &Reader, dim: usize) -> Result<Self> {
        Ok(match spec {
            CodecSpec::Flat => Codec::Flat(flat::Flat),
            CodecSpec::Sq8 => Codec::Sq8(sq8::Sq8::load(r, dim)?),
            CodecSpec::Pq8 { m } => Codec::Pq8(pq::Pq::load(r, dim, m, 256)?),
            CodecSpec::Pq4 { m } => Codec::Pq4(fastscan::FastScan(pq::Pq::load(r, dim, m, 16)?)),
            CodecSpec::Binary => Codec::Binary(binary::Binary::load(r, dim)?),
        })
    }

    /// What a list stores per entry (norms for L2).
    pub fn layout(&self, dim: usize, metric: Metric) -> Layout {
        let mut lay = with_codec!(self, |c| c.layout(dim));
        lay.norms = metric == Metric::L2;
        lay
    }

    pub fn param_bytes(&self) -> usize {
        with_codec!(self, |c| c.param_bytes())
    }

    pub fn save<'a>(&'a self, w: &mut Writer<'a>, dim: usize) {
        with_codec!(self, |c| c.save(w, dim))
    }
}
