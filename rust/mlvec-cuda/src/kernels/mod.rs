//! Typed launches of the kernels in `cuda_kernels/`: argument checks, grid sizes, parameter
//! lists. Every pointer is a raw device address the caller owns (e.g. torch's `data_ptr()`),
//! every launch is asynchronous on the caller's stream. Outputs that accumulate (`+=`) must be
//! zeroed by the caller.
//!
//! One file per domain: [`maxsim`] (late interaction), [`contrastive`] (CLIP / SigLIP logits
//! tiles), [`scan`] (quantized-code scans and k-selection). This file holds what they share:
//! element types, launch places, token sets and argument checks.

pub mod contrastive;
pub mod maxsim;
pub mod scan;

pub use contrastive::{clip_grad, clip_lse_partials, siglip_backward, siglip_forward, Pairwise};
pub use maxsim::{filip_forward, maxsim_backward, maxsim_forward, Backward};
pub use scan::{hamming_scan, pq_scan, select_chunks, select_k};

use crate::driver::Arg;
use crate::error::{Error, Result};

/// Rows of the first operand per score tile (queries, or contrastive rows).
pub const TILE_ROWS: i64 = 32;
/// Rows of the second operand per score tile.
pub const TILE_COLS: i64 = 64;
/// Longest second-operand set the one-pass two-direction MaxSim keeps in shared memory.
pub const MAX_COLS: i64 = 2048;
/// Candidates per block of `select_k`.
pub const SELECT_CHUNK: i64 = 2048;
/// Largest k of `select_k`.
pub const MAX_K: i64 = 1024;

/// Threads per block of the score-tile kernels (MaxSim, FILIP, contrastive tiles).
const TILE_THREADS: u32 = 128;
/// The grid's y (and z) limit: launches over more rows are split into chunks.
const MAX_GRID_Y: i64 = 65_535;

/// Element type of embeddings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    BF16,
}

impl Dtype {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "float32" => Ok(Dtype::F32),
            "float16" => Ok(Dtype::F16),
            "bfloat16" => Ok(Dtype::BF16),
            _ => Err(Error::invalid(
                "dtype",
                format!("expected float32, float16 or bfloat16, got {name}"),
            )),
        }
    }
    fn size(self) -> i64 {
        match self {
            Dtype::F32 => 4,
            _ => 2,
        }
    }
}

/// Kernel names are `'static`; pick the one of a family for a dtype.
fn pick(dt: Dtype, names: [&'static str; 3]) -> &'static str {
    match dt {
        Dtype::F32 => names[0],
        Dtype::F16 => names[1],
        Dtype::BF16 => names[2],
    }
}

/// Where and on which stream to launch.
#[derive(Clone, Copy, Debug)]
pub struct Place {
    /// CUDA device ordinal.
    pub device: i32,
    /// `cudaStream_t` / `CUstream` handle (torch: `torch.cuda.current_stream().cuda_stream`).
    pub stream: u64,
}

/// Packed token sets on the device: `[rows, dim]` embeddings, int64 offsets `[n + 1]`, optional
/// uint8/bool mask `[rows]` (0 = none).
#[derive(Clone, Copy, Debug)]
pub struct Sets {
    pub data: u64,
    pub offsets: u64,
    pub mask: u64,
    pub n: i64,
}

impl Sets {
    /// The four kernel parameters of a token-set argument.
    fn args(&self) -> [Arg; 4] {
        [
            Arg::Ptr(self.data),
            Arg::Ptr(self.offsets),
            Arg::Ptr(self.mask),
            Arg::I64(self.n),
        ]
    }
}

fn need(arg: &'static str, ptr: u64) -> Result<()> {
    if ptr == 0 {
        Err(Error::invalid(arg, "a device pointer is required (got 0)"))
    } else {
        Ok(())
    }
}

fn non_negative(arg: &'static str, v: i64) -> Result<()> {
    if v < 0 {
        Err(Error::invalid(arg, format!("must be >= 0, got {v}")))
    } else {
        Ok(())
    }
}

/// A count that must be in `1..2^31` (the kernels index it with `int`).
fn positive_i32(arg: &'static str, v: i64) -> Result<i32> {
    if v < 1 || v > i32::MAX as i64 {
        return Err(Error::invalid(arg, format!("must be in 1..2^31, got {v}")));
    }
    Ok(v as i32)
}

fn dim_ok(dim: i64) -> Result<i32> {
    positive_i32("dim", dim)
}

fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

fn u32_of(arg: &'static str, v: i64) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::invalid(arg, format!("{v} is out of range for a launch")))
}

/// Bytes per element of `dt` (for callers checking buffer sizes).
pub fn element_size(dt: Dtype) -> i64 {
    dt.size()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtype_names() {
        assert_eq!(Dtype::parse("bfloat16").unwrap(), Dtype::BF16);
        assert!(matches!(Dtype::parse("int8"), Err(Error::Invalid { .. })));
    }
}
