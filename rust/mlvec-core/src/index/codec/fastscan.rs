//! 4-bit PQ "fast-scan": codes of 32 vectors are interleaved so that one 16-entry u8 lookup
//! table per sub-space can be applied to 32 codes at once with a byte shuffle (`vpshufb`, AVX2),
//! accumulating in u16. The float table is quantized to u8 with one global scale
//! (`ip ≈ bias + scale · Σ_j lut_u8[j][code_j]`). With AVX-512BW four sub-spaces go through one
//! 512-bit shuffle per nibble; scores and the threshold test are then computed for the whole
//! block at once ([`block_scores`]).
//!
//! Block layout (32 vectors, `m` sub-spaces): `m × 16` bytes; byte `j·16 + i` holds the code of
//! vector `i` of the block in its low nibble and of vector `i + 16` in its high nibble.

use super::pq::Pq;
use super::{ListCodec, ListScan};
use crate::index::io::Writer;
use crate::index::ivf::list::Layout;
use crate::index::topk::TopK;

/// Vectors per block.
pub const BLOCK: usize = 32;

/// Bytes of one block.
pub fn block_bytes(m: usize) -> usize {
    m * 16
}

/// Bytes needed to store `n` codes.
pub fn bytes_for(m: usize, n: usize) -> usize {
    n.div_ceil(BLOCK) * block_bytes(m)
}

/// Write the 4-bit codes (one per byte in `code`) of vector `pos`, growing `codes` as needed.
pub fn set_code(codes: &mut Vec<u8>, m: usize, pos: usize, code: &[u8]) {
    let need = bytes_for(m, pos + 1);
    if codes.len() < need {
        codes.resize(need, 0);
    }
    let base = (pos / BLOCK) * block_bytes(m);
    let i = pos % BLOCK;
    for j in 0..m {
        let b = &mut codes[base + j * 16 + (i % 16)];
        let c = code[j] & 0x0F;
        if i < 16 {
            *b = (*b & 0xF0) | c;
        } else {
            *b = (*b & 0x0F) | (c << 4);
        }
    }
}

/// Read the codes of vector `pos` (one per byte).
pub fn get_code(codes: &[u8], m: usize, pos: usize, out: &mut [u8]) {
    let base = (pos / BLOCK) * block_bytes(m);
    let i = pos % BLOCK;
    for j in 0..m {
        let b = codes[base + j * 16 + (i % 16)];
        out[j] = if i < 16 { b & 0x0F } else { b >> 4 };
    }
}

/// A float `[m, 16]` table quantized to u8.
pub struct QuantLut {
    pub lut: Vec<u8>,
    pub bias: f32,
    pub scale: f32,
}

impl QuantLut {
    pub fn new(lut: &[f32], m: usize) -> Self {
        let mut mins = vec![0f32; m];
        let mut range = 0f32;
        for j in 0..m {
            let row = &lut[j * 16..(j + 1) * 16];
            let lo = row.iter().copied().fold(f32::INFINITY, f32::min);
            let hi = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            mins[j] = lo;
            range = range.max(hi - lo);
        }
        let scale = if range > 0.0 { range / 255.0 } else { 1.0 };
        let q = (0..m * 16)
            .map(|i| ((lut[i] - mins[i / 16]) / scale).round().clamp(0.0, 255.0) as u8)
            .collect();
        QuantLut {
            lut: q,
            bias: mins.iter().sum(),
            scale,
        }
    }
}

/// Raw u16 sums of the 32 vectors of one block.
#[inline]
pub fn scan_block(q: &QuantLut, m: usize, block: &[u8], out: &mut [u16; BLOCK]) {
    #[cfg(target_arch = "x86_64")]
    {
        if avx512bw_ok() {
            // SAFETY: AVX-512F/BW and AVX2 are present (checked at run time); `block` and the
            // table hold m·16 bytes.
            unsafe { scan_block_avx512(&q.lut, m, block, out) };
            return;
        }
        if crate::cpu::detected().avx2_fma() {
            // SAFETY: AVX2 is present (checked at run time); `block` holds m·16 bytes.
            unsafe { scan_block_avx2(&q.lut, m, block, out) };
            return;
        }
    }
    scan_block_portable(&q.lut, m, block, out);
}

#[cfg(target_arch = "x86_64")]
fn avx512bw_ok() -> bool {
    let f = crate::cpu::detected();
    f.avx512f && f.avx512bw && f.avx2_fma()
}

/// One sub-space of a block with 256-bit shuffles: the 32 codes' low and high nibbles look up
/// their table bytes, widened and added to the u16 sums (16 vectors in `$lo`, 16 in `$hi`).
/// A macro so that it inlines into each `target_feature` function that uses it.
#[cfg(target_arch = "x86_64")]
macro_rules! avx2_step {
    ($lut:expr, $block:expr, $j:expr, $mask:expr, $lo:ident, $hi:ident) => {{
        let c = _mm_loadu_si128($block.as_ptr().add($j * 16) as *const __m128i);
        let lo = _mm_and_si128(c, $mask);
        let hi = _mm_and_si128(_mm_srli_epi16(c, 4), $mask);
        let idx = _mm256_set_m128i(hi, lo);
        let t = _mm256_broadcastsi128_si256(_mm_loadu_si128($lut.as_ptr().add($j * 16) as *const __m128i));
        let r = _mm256_shuffle_epi8(t, idx);
        $lo = _mm256_add_epi16($lo, _mm256_cvtepu8_epi16(_mm256_castsi256_si128(r)));
        $hi = _mm256_add_epi16($hi, _mm256_cvtepu8_epi16(_mm256_extracti128_si256(r, 1)));
    }};
}

/// Four sub-spaces per step: one 64-byte load brings their codes for the 32 vectors and one
/// 64-byte load their four tables (each 128-bit lane shuffles with its own table), so the
/// low and high nibbles give 4 × 16 u8 look-ups each; they are widened to u16 and summed, and
/// the partial sums of the four lanes are folded at the end (exact integer sums, so the result
/// equals the one-sub-space-at-a-time kernel).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx2")]
unsafe fn scan_block_avx512(lut: &[u8], m: usize, block: &[u8], out: &mut [u16; BLOCK]) {
    use std::arch::x86_64::*;
    debug_assert!(block.len() >= m * 16 && lut.len() >= m * 16);
    let mask = _mm512_set1_epi8(0x0F);
    let (mut lo_a, mut hi_a) = (_mm512_setzero_si512(), _mm512_setzero_si512());
    let mut j = 0;
    while j + 4 <= m {
        let c = _mm512_loadu_si512(block.as_ptr().add(j * 16) as *const _);
        let t = _mm512_loadu_si512(lut.as_ptr().add(j * 16) as *const _);
        let lo = _mm512_shuffle_epi8(t, _mm512_and_si512(c, mask));
        let hi = _mm512_shuffle_epi8(t, _mm512_and_si512(_mm512_srli_epi16::<4>(c), mask));
        // u16 lanes: [sub-space j, j+1] and [j+2, j+3] halves, 16 vectors each.
        lo_a = _mm512_add_epi16(lo_a, _mm512_cvtepu8_epi16(_mm512_castsi512_si256(lo)));
        lo_a = _mm512_add_epi16(lo_a, _mm512_cvtepu8_epi16(_mm512_extracti64x4_epi64::<1>(lo)));
        hi_a = _mm512_add_epi16(hi_a, _mm512_cvtepu8_epi16(_mm512_castsi512_si256(hi)));
        hi_a = _mm512_add_epi16(hi_a, _mm512_cvtepu8_epi16(_mm512_extracti64x4_epi64::<1>(hi)));
        j += 4;
    }
    // Fold the two 16-vector halves of each accumulator.
    let mut acc_lo = _mm256_add_epi16(_mm512_castsi512_si256(lo_a), _mm512_extracti64x4_epi64::<1>(lo_a));
    let mut acc_hi = _mm256_add_epi16(_mm512_castsi512_si256(hi_a), _mm512_extracti64x4_epi64::<1>(hi_a));
    let mask = _mm_set1_epi8(0x0F);
    while j < m {
        avx2_step!(lut, block, j, mask, acc_lo, acc_hi);
        j += 1;
    }
    _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, acc_lo);
    _mm256_storeu_si256(out.as_mut_ptr().add(16) as *mut __m256i, acc_hi);
}

fn scan_block_portable(lut: &[u8], m: usize, block: &[u8], out: &mut [u16; BLOCK]) {
    out.fill(0);
    for j in 0..m {
        let t = &lut[j * 16..(j + 1) * 16];
        let b = &block[j * 16..(j + 1) * 16];
        for i in 0..16 {
            out[i] += t[(b[i] & 0x0F) as usize] as u16;
            out[i + 16] += t[(b[i] >> 4) as usize] as u16;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn scan_block_avx2(lut: &[u8], m: usize, block: &[u8], out: &mut [u16; BLOCK]) {
    use std::arch::x86_64::*;
    debug_assert!(block.len() >= m * 16 && lut.len() >= m * 16);
    let mask = _mm_set1_epi8(0x0F);
    let mut acc_lo = _mm256_setzero_si256();
    let mut acc_hi = _mm256_setzero_si256();
    // Two sub-spaces per step: their tables share one 256-bit register lane-wise.
    let mut j = 0;
    while j < m {
        avx2_step!(lut, block, j, mask, acc_lo, acc_hi);
        j += 1;
    }
    _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, acc_lo);
    _mm256_storeu_si256(out.as_mut_ptr().add(16) as *mut __m256i, acc_hi);
}

/// Scores of one block's vectors from their u16 sums, `c0 + scale · a` (`c0` = list base + table
/// bias), for L2 `2·ip − qn2 − norm` with `norms` = `(qn2, the block's norms)`. Returns the mask of
/// the first `lim` vectors whose sum is at least `amin` and whose score is at least `thr`, and
/// writes every score to `out`. Same operations, in the same order, as the per-vector path.
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn block_scores(
    acc: &[u16; BLOCK],
    lim: usize,
    amin: u16,
    c0: f32,
    scale: f32,
    norms: Option<(f32, &[f32])>,
    thr: f32,
    out: &mut [f32; BLOCK],
) -> u32 {
    debug_assert!(lim <= BLOCK && norms.is_none_or(|(_, v)| v.len() >= lim));
    #[cfg(target_arch = "x86_64")]
    {
        if avx512_ok() {
            // SAFETY: AVX-512F is present (checked at run time); norm loads are masked to `lim`.
            return unsafe { block_scores_avx512(acc, lim, amin, c0, scale, norms, thr, out) };
        }
    }
    block_scores_portable(acc, lim, amin, c0, scale, norms, thr, out)
}

#[allow(clippy::too_many_arguments)]
fn block_scores_portable(
    acc: &[u16; BLOCK],
    lim: usize,
    amin: u16,
    c0: f32,
    scale: f32,
    norms: Option<(f32, &[f32])>,
    thr: f32,
    out: &mut [f32; BLOCK],
) -> u32 {
    let mut m = 0u32;
    for i in 0..lim {
        let ip = c0 + scale * acc[i] as f32;
        out[i] = match norms {
            Some((qn2, nr)) => 2.0 * ip - qn2 - nr[i],
            None => ip,
        };
        if acc[i] >= amin && out[i] >= thr {
            m |= 1 << i;
        }
    }
    m
}

#[cfg(target_arch = "x86_64")]
fn avx512_ok() -> bool {
    crate::cpu::detected().avx512f
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn block_scores_avx512(
    acc: &[u16; BLOCK],
    lim: usize,
    amin: u16,
    c0: f32,
    scale: f32,
    norms: Option<(f32, &[f32])>,
    thr: f32,
    out: &mut [f32; BLOCK],
) -> u32 {
    use std::arch::x86_64::*;
    let mut m = 0u32;
    for h in 0..2 {
        let n = lim.saturating_sub(h * 16).min(16);
        if n == 0 {
            break;
        }
        let valid: __mmask16 = if n == 16 { 0xFFFF } else { (1u16 << n) - 1 };
        let a = _mm512_cvtepu16_epi32(_mm256_loadu_si256(acc.as_ptr().add(h * 16) as *const __m256i));
        let mut s = _mm512_add_ps(
            _mm512_set1_ps(c0),
            _mm512_mul_ps(_mm512_set1_ps(scale), _mm512_cvtepi32_ps(a)),
        );
        if let Some((qn2, nr)) = norms {
            let nv = _mm512_maskz_loadu_ps(valid, nr.as_ptr().add(h * 16));
            s = _mm512_sub_ps(
                _mm512_sub_ps(_mm512_mul_ps(_mm512_set1_ps(2.0), s), _mm512_set1_ps(qn2)),
                nv,
            );
        }
        _mm512_storeu_ps(out.as_mut_ptr().add(h * 16), s);
        let ok_a = _mm512_mask_cmpge_epu32_mask(valid, a, _mm512_set1_epi32(amin as i32));
        let ok_s = _mm512_mask_cmp_ps_mask::<_CMP_GE_OQ>(ok_a, s, _mm512_set1_ps(thr));
        m |= (ok_s as u32) << (h * 16);
    }
    m
}

/// 4-bit PQ scanned 32 entries at a time (the codebooks are [`Pq`]'s, with 16 centroids).
#[derive(Clone, Debug)]
pub struct FastScan(pub Pq);

/// A query against 4-bit codes: the u8 table the scan uses and the float table it stands for
/// (which re-ranks the shortlist).
pub struct FastScanQuery {
    quant: QuantLut,
    lut: Vec<f32>,
}

impl ListCodec for FastScan {
    type Query = FastScanQuery;
    const REFINES: bool = true;

    fn layout(&self, _dim: usize) -> Layout {
        Layout {
            fastscan_m: Some(self.0.m),
            ..Layout::default()
        }
    }

    fn encode(&self, x: &[f32], code: &mut [u8], _aux: &mut [f32]) {
        self.0.encode(x, code)
    }

    fn decode(&self, code: &[u8], out: &mut [f32]) {
        self.0.decode(code, out)
    }

    fn prepare(&self, q: &[f32]) -> FastScanQuery {
        let lut = self.0.lut(q);
        FastScanQuery {
            quant: QuantLut::new(&lut, self.0.m),
            lut,
        }
    }

    fn scan(&self, query: &FastScanQuery, s: &ListScan, top: &mut TopK) {
        let ql = &query.quant;
        let (lay, list) = (s.lay, s.list);
        let mq = self.0.m;
        let bb = block_bytes(mq);
        let n = list.len();
        let norms = list.norms.as_slice();
        let mut acc = [0u16; BLOCK];
        let mut scores = [0f32; BLOCK];
        for (b, block) in list.codes.as_slice().chunks_exact(bb).enumerate() {
            scan_block(ql, mq, block, &mut acc);
            let lim = (n - b * BLOCK).min(BLOCK);
            // Without per-vector norms the score is monotone in the u16 sum: reject in the
            // integer domain before any float work.
            let amin = if lay.norms || top.len() < top.capacity() {
                0u16
            } else {
                ((top.threshold() - s.base - ql.bias) / ql.scale)
                    .floor()
                    .clamp(0.0, 65535.0) as u16
            };
            // Scores and the threshold test for the whole block at once; only vectors that pass
            // reach the filter and the heap.
            let p0 = b * BLOCK;
            let nr = lay.norms.then(|| (s.qn2, &norms[p0..p0 + lim]));
            let mut m = block_scores(
                &acc,
                lim,
                amin,
                s.base + ql.bias,
                ql.scale,
                nr,
                top.threshold(),
                &mut scores,
            );
            while m != 0 {
                let i = m.trailing_zeros() as usize;
                m &= m - 1;
                s.offer(top, scores[i], p0 + i);
            }
        }
    }

    fn estimate(&self, query: &FastScanQuery, s: &ListScan, pos: usize, code: &mut Vec<u8>) -> (f32, f32) {
        s.list.code(s.lay, pos, code);
        let ip = code
            .iter()
            .enumerate()
            .map(|(j, &c)| query.lut[j * 16 + c as usize])
            .sum();
        (ip, 0.0)
    }

    /// Four times `k` without exact re-scoring: the float table re-ranks them.
    fn shortlist(&self, k: usize, rescore: Option<usize>) -> usize {
        rescore.map_or(4 * k, |r| (k * r).max(32))
    }

    fn param_bytes(&self) -> usize {
        self.0.param_bytes()
    }

    fn save<'a>(&'a self, w: &mut Writer<'a>, _dim: usize) {
        self.0.save_codebooks(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simd_matches_portable_and_layout_round_trips() {
        for m in [1usize, 3, 4, 6, 16, 48, 65] {
            check_m(m);
        }
    }

    fn check_m(m: usize) {
        let n = 70;
        let mut codes = Vec::new();
        let all: Vec<Vec<u8>> = (0..n)
            .map(|i| (0..m).map(|j| ((i * 7 + j * 3) % 16) as u8).collect())
            .collect();
        for (i, c) in all.iter().enumerate() {
            set_code(&mut codes, m, i, c);
        }
        let mut back = vec![0u8; m];
        for (i, c) in all.iter().enumerate() {
            get_code(&codes, m, i, &mut back);
            assert_eq!(&back, c);
        }
        let lutf: Vec<f32> = (0..m * 16).map(|i| ((i * 37) % 29) as f32 * 0.1 - 1.0).collect();
        let q = QuantLut::new(&lutf, m);
        let mut a = [0u16; BLOCK];
        let mut b = [0u16; BLOCK];
        for blk in codes.chunks_exact(block_bytes(m)) {
            scan_block(&q, m, blk, &mut a);
            scan_block_portable(&q.lut, m, blk, &mut b);
            assert_eq!(a, b);
        }
        // Vectorized block scores equal the per-vector formula, bit for bit, and the mask
        // selects exactly the vectors passing both thresholds.
        let norms: Vec<f32> = (0..BLOCK).map(|i| i as f32 * 0.37).collect();
        for lim in [1usize, 7, 16, 17, 32] {
            for nr in [None, Some((1.25f32, &norms[..]))] {
                for (amin, thr) in [(0u16, f32::NEG_INFINITY), (300, 10.0), (600, -5.0)] {
                    let (mut x, mut y) = ([0f32; BLOCK], [0f32; BLOCK]);
                    let m1 = block_scores(&a, lim, amin, 0.5, 0.03, nr, thr, &mut x);
                    let m2 = block_scores_portable(&a, lim, amin, 0.5, 0.03, nr, thr, &mut y);
                    assert_eq!(m1, m2);
                    assert_eq!(
                        x[..lim].iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                        y[..lim].iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                    );
                    for i in 0..lim {
                        let ip = 0.5f32 + 0.03 * a[i] as f32;
                        let s = nr.map_or(ip, |(q, v)| 2.0 * ip - q - v[i]);
                        assert_eq!(y[i].to_bits(), s.to_bits());
                        assert_eq!(m1 >> i & 1 == 1, a[i] >= amin && s >= thr);
                    }
                    assert_eq!(m1 >> lim.min(31) >> (lim / 32), 0);
                }
            }
        }
        // Quantized estimate is close to the float sum.
        let mut out = [0u16; BLOCK];
        scan_block(&q, m, &codes[..block_bytes(m)], &mut out);
        for i in 0..BLOCK {
            let f: f32 = (0..m).map(|j| lutf[j * 16 + all[i][j] as usize]).sum();
            let est = q.bias + q.scale * out[i] as f32;
            assert!((f - est).abs() <= q.scale * m as f32 * 0.5 + 1e-4);
        }
    }
}
