//! 4-bit PQ "fast-scan": codes of 32 vectors are interleaved so that one 16-entry u8 lookup
//! table per sub-space can be applied to 32 codes at once with a byte shuffle (`vpshufb`, AVX2),
//! accumulating in u16. The float table is quantized to u8 with one global scale
//! (`ip ≈ bias + scale · Σ_j lut_u8[j][code_j]`).
//!
//! Block layout (32 vectors, `m` sub-spaces): `m × 16` bytes; byte `j·16 + i` holds the code of
//! vector `i` of the block in its low nibble and of vector `i + 16` in its high nibble.

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
        if super::metric::simd_ok() {
            // SAFETY: AVX2 is present (checked at run time); `block` holds m·16 bytes.
            unsafe { scan_block_avx2(&q.lut, m, block, out) };
            return;
        }
    }
    scan_block_portable(&q.lut, m, block, out);
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
        let c = _mm_loadu_si128(block.as_ptr().add(j * 16) as *const __m128i);
        let lo = _mm_and_si128(c, mask);
        let hi = _mm_and_si128(_mm_srli_epi16(c, 4), mask);
        let idx = _mm256_set_m128i(hi, lo);
        let t = _mm256_broadcastsi128_si256(_mm_loadu_si128(lut.as_ptr().add(j * 16) as *const __m128i));
        let r = _mm256_shuffle_epi8(t, idx);
        acc_lo = _mm256_add_epi16(acc_lo, _mm256_cvtepu8_epi16(_mm256_castsi256_si128(r)));
        acc_hi = _mm256_add_epi16(acc_hi, _mm256_cvtepu8_epi16(_mm256_extracti128_si256(r, 1)));
        j += 1;
    }
    _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, acc_lo);
    _mm256_storeu_si256(out.as_mut_ptr().add(16) as *mut __m256i, acc_hi);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simd_matches_portable_and_layout_round_trips() {
        let m = 6;
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
