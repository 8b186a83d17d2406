//! Finite-value scans of token rows, for the kernels' fused NaN/inf check.
//!
//! A value is NaN or ±inf exactly when all its exponent bits are set, i.e. when its bits without
//! the sign are at least those of +inf. A row is scanned as one unsigned max over those bits: no
//! branch per element, and the loop vectorises for the instruction set the wrapper enables.

use super::Isa;

/// Bits of +inf without the sign, per element width: a value is non-finite iff `bits & abs >= inf`.
#[derive(Clone, Copy)]
pub struct Limit {
    abs: u32,
    inf: u32,
}

/// float32.
pub const F32: Limit = Limit {
    abs: 0x7fff_ffff,
    inf: 0x7f80_0000,
};
/// float16.
pub const F16: Limit = Limit {
    abs: 0x7fff,
    inf: 0x7c00,
};
/// bfloat16.
pub const BF16: Limit = Limit {
    abs: 0x7fff,
    inf: 0x7f80,
};

/// Raw bits of one element (`u32` for float32, `u16` for float16/bfloat16).
pub trait Bits: Copy + Send + Sync + 'static {
    fn widen(self) -> u32;
}
impl Bits for u32 {
    #[inline(always)]
    fn widen(self) -> u32 {
        self
    }
}
impl Bits for u16 {
    #[inline(always)]
    fn widen(self) -> u32 {
        self as u32
    }
}

#[inline(always)]
fn scan<B: Bits>(data: &[B], dim: usize, lim: Limit, rows: &mut dyn Iterator<Item = usize>) -> Option<usize> {
    for r in rows {
        let row = &data[r * dim..(r + 1) * dim];
        let m = row.iter().fold(0u32, |m, &b| m.max(b.widen() & lim.abs));
        if m >= lim.inf {
            return Some(r);
        }
    }
    None
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn scan_avx512<B: Bits>(
    data: &[B],
    dim: usize,
    lim: Limit,
    rows: &mut dyn Iterator<Item = usize>,
) -> Option<usize> {
    scan(data, dim, lim, rows)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn scan_avx2<B: Bits>(
    data: &[B],
    dim: usize,
    lim: Limit,
    rows: &mut dyn Iterator<Item = usize>,
) -> Option<usize> {
    scan(data, dim, lim, rows)
}

/// The first of `rows` (row indices into `data`, `dim` elements each, in the order given) that
/// holds a NaN or ±inf, if any.
pub fn first_nonfinite<B: Bits>(
    isa: Isa,
    data: &[B],
    dim: usize,
    lim: Limit,
    rows: &mut dyn Iterator<Item = usize>,
) -> Option<usize> {
    match isa {
        // SAFETY: `isa` is only ever one that `available` reported for this CPU; AVX-512BW is
        // part of every AVX-512 CPU we dispatch to, checked there.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 { .. } if crate::cpu::detected().avx512bw => unsafe { scan_avx512(data, dim, lim, rows) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 { .. } | Isa::Avx2 => unsafe { scan_avx2(data, dim, lim, rows) },
        _ => scan(data, dim, lim, rows),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_bad_row_with_every_variant() {
        for isa in super::super::available() {
            let dim = 37;
            let mut x = vec![1.0e30f32; 6 * dim];
            assert_eq!(first_nonfinite(isa, bits32(&x), dim, F32, &mut (0..6)), None);
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -f32::NAN] {
                x[4 * dim + 36] = bad;
                x[2 * dim] = bad;
                assert_eq!(first_nonfinite(isa, bits32(&x), dim, F32, &mut (0..6)), Some(2));
                assert_eq!(
                    first_nonfinite(isa, bits32(&x), dim, F32, &mut [5, 4, 2].into_iter()),
                    Some(4)
                );
                assert_eq!(
                    first_nonfinite(isa, bits32(&x), dim, F32, &mut [0, 1, 3, 5].into_iter()),
                    None
                );
                x[4 * dim + 36] = f32::MAX;
                x[2 * dim] = -f32::MAX;
            }
            let h = |v: f32| half::f16::from_f32(v).to_bits();
            let b = |v: f32| half::bf16::from_f32(v).to_bits();
            let mut y16: Vec<u16> = vec![h(65504.0); 3 * dim];
            let mut yb: Vec<u16> = vec![b(3.0e38); 3 * dim];
            assert_eq!(first_nonfinite(isa, &y16, dim, F16, &mut (0..3)), None);
            assert_eq!(first_nonfinite(isa, &yb, dim, BF16, &mut (0..3)), None);
            y16[dim + 5] = h(f32::NEG_INFINITY);
            yb[2 * dim + 1] = b(f32::NAN);
            assert_eq!(first_nonfinite(isa, &y16, dim, F16, &mut (0..3)), Some(1));
            assert_eq!(first_nonfinite(isa, &yb, dim, BF16, &mut (0..3)), Some(2));
        }
    }

    fn bits32(x: &[f32]) -> &[u32] {
        // SAFETY: f32 and u32 have the same size and every bit pattern is a valid u32.
        unsafe { std::slice::from_raw_parts(x.as_ptr().cast(), x.len()) }
    }
}
