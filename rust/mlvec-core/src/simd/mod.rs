//! SIMD micro-kernels, chosen at run time for the CPU we run on.
//!
//! The MaxSim forward pass is a small GEMM per (query, document) pair followed by a running max:
//! a query chunk of `W` tokens is packed transposed (`[dim][W]`, zero-padded) so that each
//! document element is broadcast once and multiplied into `W` query lanes at a time. A tile is
//! `MR` document rows × `W` query lanes of fp32 accumulators kept in registers; after the dot
//! products the tile folds into the per-query-token running max (and argmax) in registers too,
//! and is spilled to memory only when the document→query direction is wanted.
//!
//! Variants: AVX-512F (+ AVX-512 BF16 `vdpbf16ps` for bfloat16 with an even dimension),
//! AVX2 + FMA, and a portable fallback that any target compiles (aarch64 included).
//! [`avx512_int`] holds the int8 (`vpdpbusd`) kernels of the bfloat16 pre-filter.
//!
//! The vector indexes' kernels live here too: [`vector`] (one query against one row: dot
//! products, L2 distances, SQ8 codes, normalisation) and [`rowdot`] (one query against many
//! rows). Every variant is chosen from [`crate::cpu`], the one feature detection.

#[cfg(target_arch = "x86_64")]
pub mod avx2;
#[cfg(target_arch = "x86_64")]
pub mod avx512;
#[cfg(target_arch = "x86_64")]
pub mod avx512_int;
pub mod finite;
pub mod portable;
pub mod rowdot;
pub mod vector;

/// Largest |int8| the bfloat16 pre-filter quantizes an element to (`maxsim::prefilter`).
pub const INT8_MAX: f32 = 127.0;

/// Whether the pre-filter's bounds stay finite and normal for elements of magnitude up to `m`
/// (`m` is 0, or within `[1e-15, 1e15]`).
#[inline]
pub fn int8_in_range(m: f32) -> bool {
    m == 0.0 || (1e-15..=1e15).contains(&m)
}

/// Largest tile any variant uses: `MR * W` scores.
pub const TILE: usize = 8 * 32;
/// Most document rows a tile holds.
pub const MR_MAX: usize = 8;

/// An instruction-set level the kernels are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512F; `bf16` when the CPU also has AVX-512 BF16 (`vdpbf16ps`).
    Avx512 { bf16: bool },
    /// AVX2 + FMA + F16C.
    Avx2,
    /// Plain Rust, auto-vectorised for the compile-time target only.
    Portable,
}

impl Isa {
    /// Query lanes per chunk (`NR` vectors of the variant's width).
    pub const fn lanes(self) -> usize {
        match self {
            Isa::Avx512 { .. } => avx512_consts::W,
            Isa::Avx2 | Isa::Portable => 16,
        }
    }

    /// Document rows per tile.
    pub const fn rows(self) -> usize {
        match self {
            Isa::Avx512 { .. } => 8,
            Isa::Avx2 | Isa::Portable => 4,
        }
    }

    /// Whether bfloat16 inputs of dimension `dim` use the paired-dot-product kernel.
    pub fn bf16_dot(self, dim: usize) -> bool {
        matches!(self, Isa::Avx512 { bf16: true }) && dim.is_multiple_of(2)
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 { bf16: true } => "avx512+bf16",
            Isa::Avx512 { bf16: false } => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Portable => "portable",
        }
    }
}

mod avx512_consts {
    pub const W: usize = 32;
}

/// The best level this CPU supports (from [`crate::cpu`]).
#[inline]
pub fn detect() -> Isa {
    let f = crate::cpu::detected();
    if f.avx512f && f.fma && f.f16c {
        // Widening bf16 to fp32 and using two-port fp32 FMAs measured faster than `vdpbf16ps`
        // on the Sapphire Rapids machines we build on, cache-resident (32x128 query vs 300x128
        // documents, one thread: 133 vs 78 GFLOP/s) and streaming 1,000 documents from memory
        // with both kernels prefetching the next tile (2 threads, `variant_streaming`: 36k vs
        // 21k docs/s), so the paired-dot-product variant is not the default.
        Isa::Avx512 { bf16: false }
    } else if f.avx2_fma() && f.f16c {
        Isa::Avx2
    } else {
        Isa::Portable
    }
}

/// Every level this CPU can run, best first (tests compare all of them with the reference).
pub fn available() -> Vec<Isa> {
    let f = crate::cpu::detected();
    let mut out = vec![detect()];
    if matches!(out[0], Isa::Avx512 { .. }) {
        if f.avx512bf16 {
            out.push(Isa::Avx512 { bf16: true });
        }
        if f.avx2_fma() {
            out.push(Isa::Avx2);
        }
    }
    if out[0] != Isa::Portable {
        out.push(Isa::Portable);
    }
    out
}

/// What a tile folds into after its dot products: the running q→d max of one query chunk.
pub struct Step<'a> {
    /// Rows of the tile that are real (the rest repeat the last row and are ignored).
    pub mr: usize,
    /// Position of each row within its document (the argmax value).
    pub jloc: [i32; MR_MAX],
    /// Row 0 is the document's first valid row: it is taken whatever its score (as the
    /// reference does with its "no argmax yet" rule, which matters for −∞ and ties).
    pub first: bool,
    /// `W` running maxima of this chunk's query lanes.
    pub qmax: &'a mut [f32],
    /// `W` running argmaxes, when wanted.
    pub qarg: Option<&'a mut [i32]>,
    /// Receives the raw `[MR][W]` scores when the document→query direction is wanted.
    pub tile: Option<&'a mut [f32; TILE]>,
    /// Memory the tile asks for while it computes (the rows of a later tile).
    pub ahead: Ahead,
}

/// Cache lines a tile asks for while it computes: line `i` from `ptr` at k step `2 i`, so the
/// requests are spread between the FMAs instead of queueing up in one burst (which measured no
/// better than no prefetch at all when streaming documents from memory).
#[derive(Clone, Copy)]
pub struct Ahead {
    /// First byte; any address (a prefetch never faults), so it may run past the data.
    pub ptr: *const u8,
    /// Lines to ask for; those past half the tile's k steps are not asked for.
    pub lines: usize,
}

impl Ahead {
    pub const NONE: Ahead = Ahead {
        ptr: std::ptr::null(),
        lines: 0,
    };
}

/// Ask for the 64-byte line at `p` in L1 (a no-op off x86-64).
#[inline(always)]
pub fn prefetch_line(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Document rows of one tile, in the element type the kernel reads.
pub enum TileRows<'a> {
    /// fp32 rows of `dim` elements.
    F32(&'a [*const f32; MR_MAX]),
    /// bfloat16 bit rows of `dim` (even) elements, for the paired-dot-product kernel.
    Bf16(&'a [*const u16; MR_MAX]),
}

/// Whether `u16` bits are bfloat16 (else float16), for [`widen`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Half {
    F16,
    Bf16,
}

/// Widen float16/bfloat16 bits to fp32 with the best instructions of `isa`.
pub fn widen(isa: Isa, kind: Half, src: &[u16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len());
    match (isa, kind) {
        // SAFETY: `isa` is only ever one that `available` reported for this CPU.
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512 { .. }, Half::Bf16) => unsafe { avx512::widen_bf16(src, dst) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512 { .. }, Half::F16) => unsafe { avx512::widen_f16(src, dst) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2, Half::Bf16) => unsafe { avx2::widen_bf16(src, dst) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2, Half::F16) => unsafe { avx2::widen_f16(src, dst) },
        (_, Half::Bf16) => {
            for (d, &b) in dst.iter_mut().zip(src) {
                *d = f32::from_bits((b as u32) << 16);
            }
        }
        (_, Half::F16) => {
            for (d, &b) in dst.iter_mut().zip(src) {
                *d = half::f16::from_bits(b).to_f32();
            }
        }
    }
}

/// One tile: `step.mr` document rows against one packed query chunk of `nr * V` lanes.
///
/// # Safety
/// `isa` must be supported by this CPU ([`available`]); `q` must point to a packed chunk of
/// `dim * isa.lanes()` fp32 (or `dim / 2 * isa.lanes() * 2` bf16 bits for [`TileRows::Bf16`]);
/// every row pointer must be valid for `dim` elements; `step.qmax`/`qarg` hold `isa.lanes()`.
#[inline]
pub unsafe fn tile(isa: Isa, q: *const u8, dim: usize, rows: TileRows, nr: usize, step: &mut Step) {
    match (isa, rows) {
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512 { .. }, TileRows::F32(r)) => {
            // SAFETY: forwarded from the caller's contract.
            unsafe { avx512::tile_f32(q.cast(), dim, r, nr, step) }
        }
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512 { bf16: true }, TileRows::Bf16(r)) => {
            // SAFETY: forwarded from the caller's contract; the CPU has AVX-512 BF16.
            unsafe { avx512::tile_bf16(q.cast(), dim / 2, r, nr, step) }
        }
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2, TileRows::F32(r)) => {
            // SAFETY: forwarded from the caller's contract.
            unsafe { avx2::tile_f32(q.cast(), dim, r, nr, step) }
        }
        (Isa::Portable, TileRows::F32(r)) => {
            // SAFETY: forwarded from the caller's contract.
            unsafe { portable::tile_f32(q.cast(), dim, r, nr, step) }
        }
        _ => unreachable!("no such kernel variant: the caller packs rows for the kernel it picks"),
    }
}

/// For each of the first `mr` rows of a spilled tile (`[MR][W]`, row stride `isa.lanes()`), the
/// first lane among `0..lanes` that holds the row's maximum: a NaN never wins, ties go to the
/// lowest lane, and lane 0 is reported when every lane is NaN. This is the document→query
/// direction's reduction over one query chunk.
///
/// `lanes` must be in `1..=isa.lanes()` and `mr <= isa.rows()`.
#[inline]
pub fn row_argmax(isa: Isa, tile: &[f32; TILE], mr: usize, lanes: usize, out: &mut [usize; MR_MAX]) {
    debug_assert!(lanes >= 1 && lanes <= isa.lanes() && mr <= isa.rows());
    match isa {
        // SAFETY: `isa` is only ever one that `available` reported for this CPU.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 { .. } => unsafe { avx512::row_argmax(tile, mr, lanes, out) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { avx2::row_argmax(tile, mr, lanes, out) },
        _ => portable::row_argmax(tile, isa.lanes(), mr, lanes, out),
    }
}
