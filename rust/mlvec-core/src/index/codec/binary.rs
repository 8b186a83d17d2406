//! Binary codes, RaBitQ-style: a vector's residual `r` is rotated by a random orthogonal matrix
//! `P` (`D = d` rounded up to 64 rows), normalised to `u = P r / ‖r‖` and stored as the signs of
//! `u` (D bits) plus three floats. With `x̄ = sign(u) / √D` and `x0 = <x̄, u>`, the estimator
//! `<u, Pq> ≈ <x̄, Pq> / x0` is unbiased, and with high probability
//! `|estimate − <u, Pq>| ≤ ‖Pq‖ · √(1 − x0²) / x0 · ε0 / √(D − 1)` (ε0 ≈ 1.9).
//!
//! Scanning: the rotated query is quantized to 4-bit unsigned levels and split into 4 bit
//! planes, so `Σ_i bit_i · q_i` is 4 AND+popcount passes over the code words.
//!
//! List layout: codes are stored in blocks of [`BLOCK`] = 16 vectors, interleaved by 32-bit
//! word (bytes `(w·16 + i)·4 ..+4` of a block hold word `w` of vector `i`), so one 512-bit load
//! brings the same word of 16 codes and the popcounts of 16 codes come out in 16 lanes with no
//! horizontal sums. Each block ends with the 16 vectors' scale factor (`aux[0]`), so a scan reads
//! one sequential stream and evaluates the estimator for 16 codes at once; the code's popcount
//! (`aux[1]`) is recomputed in the scan and the error-bound factor (`aux[2]`, needed only when
//! re-scoring) is kept apart. The last block is zero-padded.

use super::{ListCodec, ListScan};
use crate::index::io::{Reader, Writer};
use crate::index::ivf::list::Layout;
use crate::index::kmeans::Rng;
use crate::index::topk::TopK;
use crate::simd::vector::kernels;
use crate::Result;

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

/// Vectors per storage block.
pub const BLOCK: usize = 16;

/// Floats per vector kept outside the blocks: the error-bound factor `aux[2]` (`aux[0]` lives
/// in the block, next to the codes; the popcount `aux[1]` is recomputed from the code).
pub const EXTRA: usize = 1;

/// Bytes of one block: 16 codes of `code_size` bytes interleaved by 32-bit word, then the 16
/// vectors' `aux[0]` as f32.
pub fn block_bytes(code_size: usize) -> usize {
    BLOCK * (code_size + 4)
}

/// Bytes needed to store `n` codes.
pub fn bytes_for(code_size: usize, n: usize) -> usize {
    n.div_ceil(BLOCK) * block_bytes(code_size)
}

/// Store vector `pos` (its row-major code and its `AUX` floats from [`Binary::encode`]): the
/// code and `aux[0]` go into the blocked `codes` (grown as needed), `aux[2]` into `extra[pos]`.
pub fn set_entry(
    codes: &mut Vec<u8>,
    extra: &mut Vec<f32>,
    code_size: usize,
    pos: usize,
    code: &[u8],
    aux: &[f32],
) {
    let need = bytes_for(code_size, pos + 1);
    if codes.len() < need {
        codes.resize(need, 0);
    }
    let base = (pos / BLOCK) * block_bytes(code_size);
    let i = pos % BLOCK;
    for (w, c) in code[..code_size].chunks_exact(4).enumerate() {
        let o = base + (w * BLOCK + i) * 4;
        codes[o..o + 4].copy_from_slice(c);
    }
    let o = base + BLOCK * code_size + i * 4;
    codes[o..o + 4].copy_from_slice(&aux[0].to_le_bytes());
    if extra.len() <= pos {
        extra.resize(pos + 1, 0.0);
    }
    extra[pos] = aux[2];
}

/// Read vector `pos`: its row-major code into `out`, and its `AUX` floats.
pub fn get_entry(codes: &[u8], extra: &[f32], code_size: usize, pos: usize, out: &mut [u8]) -> [f32; AUX] {
    let base = (pos / BLOCK) * block_bytes(code_size);
    let i = pos % BLOCK;
    let mut pop = 0u32;
    for (w, c) in out[..code_size].chunks_exact_mut(4).enumerate() {
        let o = base + (w * BLOCK + i) * 4;
        c.copy_from_slice(&codes[o..o + 4]);
        pop += u32::from_le_bytes((&*c).try_into().expect("4 bytes")).count_ones();
    }
    let o = base + BLOCK * code_size + i * 4;
    let a0 = f32::from_le_bytes(codes[o..o + 4].try_into().expect("4 bytes"));
    [a0, pop as f32, extra[pos]]
}

/// Convert format-version-1 storage (codes and `AUX` floats one vector after another) to the
/// blocked codes and the per-vector extra floats.
pub fn from_flat(codes: &[u8], aux: &[f32], code_size: usize) -> (Vec<u8>, Vec<f32>) {
    let n = codes.len() / code_size;
    let mut out = Vec::with_capacity(bytes_for(code_size, n));
    let mut extra = Vec::with_capacity(n * EXTRA);
    for (pos, (c, a)) in codes
        .chunks_exact(code_size)
        .zip(aux.chunks_exact(AUX))
        .enumerate()
    {
        set_entry(&mut out, &mut extra, code_size, pos, c, a);
    }
    (out, extra)
}

/// A query prepared for popcount scans.
pub struct BinaryQuery {
    /// `[4, words]` bit planes of the quantized rotated query.
    planes: Vec<u64>,
    /// The same planes as `[4, 2·words]` 32-bit words (for the blocked scan).
    planes32: Vec<u32>,
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
        let k = kernels();
        self.rot.chunks_exact(self.d).map(|row| k.dot(row, x)).collect()
    }

    /// The rotation `save` wrote.
    pub fn load(r: &Reader, d: usize) -> Result<Self> {
        let dp = d.div_ceil(64) * 64;
        let rot = r.array::<f32>("rotation", Some(dp * d))?.as_slice().to_vec();
        Ok(Binary { d, dp, rot })
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
        let planes32 = planes
            .iter()
            .flat_map(|&p| [p as u32, (p >> 32) as u32])
            .collect();
        BinaryQuery {
            planes,
            planes32,
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

    /// Scan `n` blocked codes (`codes` in the list layout; `norms` per vector for L2). Each
    /// vector's score is `base + estimate`, or for L2 `2·(base + estimate) − qn2 − norm`,
    /// computed exactly as [`BinaryQuery::ip`] and [`crate::index::metric::Metric::from_ip`] do. Every
    /// vector scoring at least the current threshold (initially `thr`) is handed to
    /// `hit(pos, score)`, which returns the new threshold.
    #[allow(clippy::too_many_arguments)]
    pub fn scan(
        &self,
        codes: &[u8],
        norms: Option<&[f32]>,
        n: usize,
        base: f32,
        qn2: f32,
        thr: f32,
        hit: &mut dyn FnMut(usize, f32) -> f32,
    ) {
        assert!(codes.len() >= bytes_for(self.words * 8, n));
        assert!(norms.is_none_or(|v| v.len() >= n));
        #[cfg(target_arch = "x86_64")]
        {
            if has_vpopcntdq() {
                // SAFETY: AVX-512F and VPOPCNTDQ are present (checked at run time); `codes`
                // holds every block read (asserted above; the last block is padded).
                unsafe { self.scan_avx512(codes, norms, n, base, qn2, thr, hit) };
                return;
            }
        }
        self.scan_portable(codes, norms, n, base, qn2, thr, hit);
    }

    #[allow(clippy::too_many_arguments)]
    fn scan_portable(
        &self,
        codes: &[u8],
        norms: Option<&[f32]>,
        n: usize,
        base: f32,
        qn2: f32,
        mut thr: f32,
        hit: &mut dyn FnMut(usize, f32) -> f32,
    ) {
        let w32 = self.words * 2;
        let bb = block_bytes(w32 * 4);
        for pos in 0..n {
            let (blk, i) = (pos / BLOCK, pos % BLOCK);
            let block = &codes[blk * bb..(blk + 1) * bb];
            let (mut w, mut pop) = (0u32, 0u32);
            for k in 0..w32 {
                let o = (k * BLOCK + i) * 4;
                let c = u32::from_le_bytes(block[o..o + 4].try_into().expect("4 bytes"));
                pop += c.count_ones();
                for b in 0..4 {
                    w += (c & self.planes32[b * w32 + k]).count_ones() << b;
                }
            }
            let o = (w32 * BLOCK + i) * 4;
            let a0 = f32::from_le_bytes(block[o..o + 4].try_into().expect("4 bytes"));
            let sel = self.lo * pop as f32 + self.delta * w as f32;
            let ip = base + a0 * (2.0 * sel - self.sum);
            let s = match norms {
                Some(nr) => 2.0 * ip - qn2 - nr[pos],
                None => ip,
            };
            if s >= thr {
                thr = hit(pos, s);
            }
        }
    }

    /// 16 codes per step: for each 32-bit word, one load, 4 AND with the broadcast query
    /// planes and 5 VPOPCNTD (the planes and the code's own popcount); the estimator and the
    /// threshold test run on all 16 lanes, so only vectors that beat the current threshold
    /// leave the registers.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512vpopcntdq")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn scan_avx512(
        &self,
        codes: &[u8],
        norms: Option<&[f32]>,
        n: usize,
        base: f32,
        qn2: f32,
        mut thr: f32,
        hit: &mut dyn FnMut(usize, f32) -> f32,
    ) {
        use std::arch::x86_64::*;
        let w32 = self.words * 2;
        let bb = block_bytes(w32 * 4);
        let p = self.planes32.as_ptr();
        let (lo, delta, sum) = (
            _mm512_set1_ps(self.lo),
            _mm512_set1_ps(self.delta),
            _mm512_set1_ps(self.sum),
        );
        let (two, basev, qn2v) = (_mm512_set1_ps(2.0), _mm512_set1_ps(base), _mm512_set1_ps(qn2));
        let mut scores = [0f32; BLOCK];
        for blk in 0..n.div_ceil(BLOCK) {
            let c = codes.as_ptr().add(blk * bb);
            let (mut a0, mut a1, mut a2, mut a3, mut pop) = (
                _mm512_setzero_si512(),
                _mm512_setzero_si512(),
                _mm512_setzero_si512(),
                _mm512_setzero_si512(),
                _mm512_setzero_si512(),
            );
            for k in 0..w32 {
                let v = _mm512_loadu_si512(c.add(k * 64) as *const _);
                let pl = |b: usize| _mm512_set1_epi32(*p.add(b * w32 + k) as i32);
                pop = _mm512_add_epi32(pop, _mm512_popcnt_epi32(v));
                a0 = _mm512_add_epi32(a0, _mm512_popcnt_epi32(_mm512_and_si512(v, pl(0))));
                a1 = _mm512_add_epi32(a1, _mm512_popcnt_epi32(_mm512_and_si512(v, pl(1))));
                a2 = _mm512_add_epi32(a2, _mm512_popcnt_epi32(_mm512_and_si512(v, pl(2))));
                a3 = _mm512_add_epi32(a3, _mm512_popcnt_epi32(_mm512_and_si512(v, pl(3))));
            }
            let w = _mm512_add_epi32(
                _mm512_add_epi32(a0, _mm512_slli_epi32::<1>(a1)),
                _mm512_add_epi32(_mm512_slli_epi32::<2>(a2), _mm512_slli_epi32::<3>(a3)),
            );
            // Same operations, in the same order, as `ip` and `Metric::from_ip` (no FMA).
            let x0 = _mm512_loadu_ps(c.add(w32 * 64) as *const f32);
            let sel = _mm512_add_ps(
                _mm512_mul_ps(lo, _mm512_cvtepu32_ps(pop)),
                _mm512_mul_ps(delta, _mm512_cvtepu32_ps(w)),
            );
            let est = _mm512_mul_ps(x0, _mm512_sub_ps(_mm512_mul_ps(two, sel), sum));
            let mut s = _mm512_add_ps(basev, est);
            let lim = (n - blk * BLOCK).min(BLOCK);
            let valid: __mmask16 = if lim == BLOCK { 0xFFFF } else { (1u16 << lim) - 1 };
            if let Some(nr) = norms {
                let nv = _mm512_maskz_loadu_ps(valid, nr.as_ptr().add(blk * BLOCK));
                s = _mm512_sub_ps(_mm512_sub_ps(_mm512_mul_ps(two, s), qn2v), nv);
            }
            let mut m = _mm512_mask_cmp_ps_mask::<_CMP_GE_OQ>(valid, s, _mm512_set1_ps(thr));
            if m != 0 {
                _mm512_storeu_ps(scores.as_mut_ptr(), s);
                while m != 0 {
                    let i = m.trailing_zeros() as usize;
                    m &= m - 1;
                    if scores[i] >= thr {
                        thr = hit(blk * BLOCK + i, scores[i]);
                    }
                }
            }
        }
    }
}

/// Binary codes keep no vectors to decode: L2 scores use the stored vectors' own norms, and the
/// estimator's error bound lets exact re-scoring skip candidates.
impl ListCodec for Binary {
    type Query = BinaryQuery;
    const DECODES: bool = false;
    const BOUNDED: bool = true;

    fn layout(&self, _dim: usize) -> Layout {
        Layout {
            code_size: self.code_size(),
            aux: AUX,
            binary: true,
            ..Layout::default()
        }
    }

    fn encode(&self, x: &[f32], code: &mut [u8], aux: &mut [f32]) {
        Binary::encode(self, x, code, aux)
    }

    fn decode(&self, _code: &[u8], _out: &mut [f32]) {
        unreachable!("binary codes are not decoded (DECODES is false)")
    }

    fn prepare(&self, q: &[f32]) -> BinaryQuery {
        Binary::prepare(self, q)
    }

    fn scan(&self, bq: &BinaryQuery, s: &ListScan, top: &mut TopK) {
        // Vectorized over 16-code blocks; only vectors beating the current k-th score reach the
        // filter and the heap.
        let list = s.list;
        bq.scan(
            list.codes.as_slice(),
            s.lay.norms.then_some(list.norms.as_slice()),
            list.len(),
            s.base,
            s.qn2,
            top.threshold(),
            &mut |pos, score| {
                if s.allowed(list.slots[pos]) {
                    top.push(score, s.payload(pos));
                }
                top.threshold()
            },
        );
    }

    fn estimate(&self, bq: &BinaryQuery, s: &ListScan, pos: usize, code: &mut Vec<u8>) -> (f32, f32) {
        code.resize(s.lay.code_size, 0);
        let aux = s.list.binary_entry(s.lay, pos, code);
        bq.ip(code, &aux)
    }

    /// Four times the usual shortlist when re-scoring: the estimates are coarse, and the error
    /// bound prunes most of them before they are scored exactly.
    fn shortlist(&self, k: usize, rescore: Option<usize>) -> usize {
        rescore.map_or(k, |r| 4 * (k * r).max(32))
    }

    fn param_bytes(&self) -> usize {
        4 * self.rot.len()
    }

    fn save<'a>(&'a self, w: &mut Writer<'a>, _dim: usize) {
        w.add("rotation", vec![self.dp, self.d], &self.rot);
    }
}

#[cfg(target_arch = "x86_64")]
fn has_vpopcntdq() -> bool {
    let f = crate::cpu::detected();
    f.avx512f && f.avx512vpopcntdq
}

#[inline]
fn weighted_popcount(planes: &[u64], code: &[u8], words: usize) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if words <= 8 && has_vpopcntdq() {
            // SAFETY: AVX-512F and VPOPCNTDQ are present (checked at run time); at most 8 words.
            return unsafe { weighted_popcount_vpopcntdq(planes, code, words) };
        }
        if crate::cpu::detected().popcnt {
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
    use crate::simd::vector::dot;

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

    /// The blocked scan (AVX-512 or portable) gives bit-identical scores to the per-code
    /// estimator followed by `Metric::from_ip`, and reports exactly the vectors at or above the
    /// running threshold.
    #[test]
    fn blocked_scan_matches_per_code_estimates() {
        use crate::index::metric::Metric;
        let mut rng = Rng::new(11);
        for d in [20usize, 64, 100, 128, 384, 700] {
            let b = Binary::new(d, 3);
            let cs = b.code_size();
            for n in [0usize, 1, 15, 16, 17, 50] {
                let mut codes = Vec::new();
                let mut extra = Vec::new();
                let mut flat = Vec::new();
                let mut flat_aux = Vec::new();
                let norms: Vec<f32> = (0..n).map(|_| rng.normal().abs() as f32 * 3.0).collect();
                for pos in 0..n {
                    let x: Vec<f32> = (0..d).map(|_| rng.normal() as f32).collect();
                    let mut c = vec![0u8; cs];
                    let mut a = [0f32; AUX];
                    b.encode(&x, &mut c, &mut a);
                    set_entry(&mut codes, &mut extra, cs, pos, &c, &a);
                    flat.extend_from_slice(&c);
                    flat_aux.extend_from_slice(&a);
                }
                assert_eq!(codes.len(), bytes_for(cs, n));
                assert_eq!((codes.clone(), extra.clone()), from_flat(&flat, &flat_aux, cs));
                let q: Vec<f32> = (0..d).map(|_| rng.normal() as f32).collect();
                let bq = b.prepare(&q);
                let (base, qn2) = (0.25f32, 7.5f32);
                for l2 in [false, true] {
                    let metric = if l2 { Metric::L2 } else { Metric::Ip };
                    let want: Vec<f32> = (0..n)
                        .map(|pos| {
                            let mut c = vec![0u8; cs];
                            let a = get_entry(&codes, &extra, cs, pos, &mut c);
                            assert_eq!(c, flat[pos * cs..(pos + 1) * cs]);
                            assert_eq!(a[..], flat_aux[pos * AUX..(pos + 1) * AUX]);
                            let (e, _) = bq.ip(&c, &a);
                            metric.from_ip(base + e, qn2, norms[pos])
                        })
                        .collect();
                    let nr = l2.then_some(&norms[..]);
                    // Threshold -inf: every vector is reported, with the exact same score.
                    for portable in [false, true] {
                        let mut got = vec![f32::NAN; n];
                        let mut hit = |pos: usize, s: f32| {
                            got[pos] = s;
                            f32::NEG_INFINITY
                        };
                        if portable {
                            bq.scan_portable(&codes, nr, n, base, qn2, f32::NEG_INFINITY, &mut hit);
                        } else {
                            bq.scan(&codes, nr, n, base, qn2, f32::NEG_INFINITY, &mut hit);
                        }
                        assert_eq!(
                            got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                            want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                            "d={d} n={n} l2={l2} portable={portable}"
                        );
                    }
                    // A running maximum as threshold: reported exactly when >= the best so far.
                    let mut best = f32::NEG_INFINITY;
                    let mut expect = Vec::new();
                    for (pos, &s) in want.iter().enumerate() {
                        if s >= best {
                            expect.push(pos);
                            best = s;
                        }
                    }
                    let mut seen = Vec::new();
                    bq.scan(&codes, nr, n, base, qn2, f32::NEG_INFINITY, &mut |pos, s| {
                        seen.push(pos);
                        s
                    });
                    assert_eq!(seen, expect, "d={d} n={n} l2={l2}");
                }
            }
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
