//! Variable-length sets of token embeddings, as the kernels see them.
//!
//! Both public layouts reduce to one view: a row-major `[rows, dim]` buffer, `n + 1` offsets
//! (set `i` is rows `offsets[i]..offsets[i + 1]`) and an optional per-row validity mask.
//! Padded `[N, L, d]` + mask is `offsets = [0, L, 2L, ...]`; packed is the caller's offsets.

use crate::{Error, Result};
use half::{bf16, f16};

/// An element type the kernels read. Arithmetic is always in `f32`.
pub trait Element: Copy + Send + Sync + 'static {
    /// Name used in error messages.
    const NAME: &'static str;
    fn to_f32(self) -> f32;
}

impl Element for f32 {
    const NAME: &'static str = "float32";
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
}

impl Element for f16 {
    const NAME: &'static str = "float16";
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
}

impl Element for bf16 {
    const NAME: &'static str = "bfloat16";
    #[inline(always)]
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
}

/// A borrowed view of `n` variable-length token sets.
#[derive(Clone, Debug)]
pub struct TokenSets<'a, T> {
    data: &'a [T],
    dim: usize,
    offsets: Vec<usize>,
    mask: Option<&'a [bool]>,
}

impl<'a, T: Element> TokenSets<'a, T> {
    /// Validate and wrap. `arg` names the argument in error messages (e.g. `"queries"`).
    pub fn new(
        arg: &'static str,
        data: &'a [T],
        dim: usize,
        offsets: &[i64],
        mask: Option<&'a [bool]>,
    ) -> Result<Self> {
        if dim == 0 {
            return Err(Error::invalid(arg, "embedding dimension must be at least 1"));
        }
        if !data.len().is_multiple_of(dim) {
            return Err(Error::invalid(
                arg,
                format!(
                    "buffer of {} elements is not a whole number of rows of dim {dim}",
                    data.len()
                ),
            ));
        }
        let rows = data.len() / dim;
        if offsets.is_empty() {
            return Err(Error::invalid(
                arg,
                "offsets must hold at least one entry (n + 1 for n sets)",
            ));
        }
        let mut out = Vec::with_capacity(offsets.len());
        for (i, &o) in offsets.iter().enumerate() {
            if o < 0 || o as usize > rows {
                return Err(Error::invalid(
                    arg,
                    format!("offsets[{i}] = {o} is outside the {rows} token rows"),
                ));
            }
            if i > 0 && o < offsets[i - 1] {
                return Err(Error::invalid(
                    arg,
                    format!(
                        "offsets must be non-decreasing, but offsets[{}] = {} > offsets[{i}] = {o}",
                        i - 1,
                        offsets[i - 1]
                    ),
                ));
            }
            out.push(o as usize);
        }
        if let Some(m) = mask {
            if m.len() != rows {
                return Err(Error::invalid(
                    arg,
                    format!("mask has {} entries but there are {rows} token rows", m.len()),
                ));
            }
        }
        Ok(Self {
            data,
            dim,
            offsets: out,
            mask,
        })
    }

    /// Number of sets.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Total rows in the underlying buffer.
    pub fn rows(&self) -> usize {
        self.data.len() / self.dim
    }

    /// First row and number of rows of set `i` (masked rows included).
    #[inline]
    pub fn span(&self, i: usize) -> (usize, usize) {
        (self.offsets[i], self.offsets[i + 1] - self.offsets[i])
    }

    /// Longest set, in rows.
    pub fn max_len(&self) -> usize {
        (0..self.len()).map(|i| self.span(i).1).max().unwrap_or(0)
    }

    /// Row `r` of the buffer.
    #[inline(always)]
    pub fn row(&self, r: usize) -> &'a [T] {
        &self.data[r * self.dim..(r + 1) * self.dim]
    }

    /// Whether row `r` takes part (true when there is no mask).
    #[inline(always)]
    pub fn valid(&self, r: usize) -> bool {
        self.mask.is_none_or(|m| m[r])
    }

    pub fn data(&self) -> &'a [T] {
        self.data
    }

    pub fn mask(&self) -> Option<&'a [bool]> {
        self.mask
    }

    pub fn offsets(&self) -> &[usize] {
        &self.offsets
    }

    /// Number of valid rows in set `i`.
    pub fn valid_count(&self, i: usize) -> usize {
        let (s, n) = self.span(i);
        match self.mask {
            None => n,
            Some(m) => m[s..s + n].iter().filter(|&&v| v).count(),
        }
    }
}
