//! Token-wise late-interaction (MaxSim) scoring and its gradient.
//!
//! For a query set `Q` and a document set `D` (valid rows only):
//! - `q2d = Σ_i max_j <Q_i, D_j>` (ColBERT; divide by the valid query count for FILIP's q→d mean);
//! - `d2q = Σ_j max_i <Q_i, D_j>` (FILIP's other direction, before its mean).
//!
//! A max over no valid rows is −∞ (so a document with no valid tokens scores −∞ against any
//! query with valid tokens); a sum over no valid rows is 0. Ties pick the first position, as
//! `torch.max` does, so gradients through the argmax match a torch reference.

mod kernel;
mod prefilter;
pub mod reference;

use crate::simd::{self, Isa};
use crate::threads;
use crate::tokens::{Element, TokenSets};
use crate::{Error, Result};
use rayon::prelude::*;

/// Which (query, document) pairs to score.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pairing {
    /// Every query against every document: `P = nq * nd` pairs, query-major.
    AllPairs,
    /// Query `i` against document `i`: `P = n` pairs.
    Paired,
}

impl Pairing {
    fn pairs<T: Element>(self, q: &TokenSets<T>, d: &TokenSets<T>) -> Result<usize> {
        match self {
            Pairing::AllPairs => Ok(q.len() * d.len()),
            Pairing::Paired if q.len() == d.len() => Ok(q.len()),
            Pairing::Paired => Err(Error::invalid(
                "documents",
                format!(
                    "paired scoring needs as many documents as queries, got {} queries and {} documents",
                    q.len(),
                    d.len()
                ),
            )),
        }
    }

    #[inline]
    fn split(self, p: usize, nd: usize) -> (usize, usize) {
        match self {
            Pairing::AllPairs => (p / nd, p % nd),
            Pairing::Paired => (p, p),
        }
    }
}

/// What the forward pass should produce beyond `q2d`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Outputs {
    /// Argmax document position per query token (for the q→d gradient).
    pub q2d_argmax: bool,
    /// The d→q sums (FILIP).
    pub d2q: bool,
    /// Argmax query position per document token (for the d→q gradient).
    pub d2q_argmax: bool,
    /// Fail with [`Error::InvalidArgument`] (naming `queries` or `documents`, the first packed
    /// row and its set) when a valid row of any set holds NaN or ±inf. Masked rows and rows
    /// outside every set are not checked. The kernel scans each row while it reads it (every
    /// valid row is checked even when the other side has no sets or no valid rows).
    pub check_finite: bool,
}

/// Result of [`forward`]. Argmax arrays hold positions local to the set (0-based within the
/// other side's set), −1 for masked/padding positions or when the other side has no valid row.
#[derive(Debug, Default)]
pub struct Forward {
    /// `[P]` Σ over valid query tokens of the max over valid document tokens.
    pub q2d: Vec<f32>,
    /// `[P, lq_max]` when requested.
    pub q2d_argmax: Option<Vec<i32>>,
    /// `[P]` Σ over valid document tokens of the max over valid query tokens, when requested.
    pub d2q: Option<Vec<f32>>,
    /// `[P, ld_max]` when requested.
    pub d2q_argmax: Option<Vec<i32>>,
    pub lq_max: usize,
    pub ld_max: usize,
}

fn check_dims<T: Element>(q: &TokenSets<T>, d: &TokenSets<T>) -> Result<()> {
    if q.dim() != d.dim() {
        return Err(Error::invalid(
            "documents",
            format!(
                "embedding dimension {} does not match the queries' {}",
                d.dim(),
                q.dim()
            ),
        ));
    }
    Ok(())
}

/// The error for a NaN/inf found in packed row `row` of `sets` (set index from the offsets).
fn nonfinite_error<T: Element>(arg: &'static str, sets: &TokenSets<T>, row: usize) -> Error {
    // The last set starting at or before `row`: with empty sets sharing an offset, the one
    // that actually holds the row.
    let set = sets.offsets().partition_point(|&o| o <= row).saturating_sub(1);
    Error::invalid(
        arg,
        format!("token row {row} (packed) holds NaN or inf, in set {set}"),
    )
}

/// Score the pairs chosen by `pairing`. Runs on the [`threads`] pool with the best SIMD
/// kernel this CPU supports (see [`crate::simd`]).
pub fn forward<T: Element>(
    q: &TokenSets<T>,
    d: &TokenSets<T>,
    pairing: Pairing,
    want: Outputs,
) -> Result<Forward> {
    forward_with(simd::detect(), q, d, pairing, want)
}

/// [`forward`] with an explicit kernel variant (`isa` must be one of [`simd::available`]).
pub fn forward_with<T: Element>(
    isa: Isa,
    q: &TokenSets<T>,
    d: &TokenSets<T>,
    pairing: Pairing,
    want: Outputs,
) -> Result<Forward> {
    forward_checked(isa, q, d, pairing, want, true)
}

/// [`forward_with`] scoring every pair in fp32, without the bfloat16 pre-filter (which must
/// agree with it up to fp32 summation order).
#[cfg(test)]
fn forward_unfiltered<T: Element>(
    isa: Isa,
    q: &TokenSets<T>,
    d: &TokenSets<T>,
    pairing: Pairing,
    want: Outputs,
) -> Result<Forward> {
    forward_checked(isa, q, d, pairing, want, false)
}

fn forward_checked<T: Element>(
    isa: Isa,
    q: &TokenSets<T>,
    d: &TokenSets<T>,
    pairing: Pairing,
    want: Outputs,
    filter: bool,
) -> Result<Forward> {
    check_dims(q, d)?;
    let p_total = pairing.pairs(q, d)?;
    if !simd::available().contains(&isa) {
        return Err(Error::invalid(
            "isa",
            format!("kernel variant {} is not supported by this CPU", isa.name()),
        ));
    }
    kernel::forward(isa, q, d, pairing, p_total, want, filter)
}

/// Upstream gradients and the argmax positions saved by [`forward`], for one direction.
pub struct DirectionGrad<'a> {
    /// `[P]` gradient of the loss with respect to each pair's sum.
    pub grad: &'a [f32],
    /// `[P, l_max]` argmax positions from the forward pass.
    pub argmax: &'a [i32],
}

/// Gradient of `Σ_p g_q2d[p]·q2d[p] + g_d2q[p]·d2q[p]` with respect to the token rows.
/// Returns `(dq [q.rows() * dim], dd [d.rows() * dim])` in `f32`; rows outside every set or
/// masked get zero.
pub fn backward<T: Element>(
    q: &TokenSets<T>,
    d: &TokenSets<T>,
    pairing: Pairing,
    q2d: Option<DirectionGrad>,
    d2q: Option<DirectionGrad>,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let (_, lq_max, ld_max) = check_upstream(q, d, pairing, &q2d, &d2q)?;
    let up = Upstream {
        q2d,
        d2q,
        lq_max,
        ld_max,
    };
    let dim = q.dim();
    let (nq, nd) = (q.len(), d.len());
    let mut dq = vec![0f32; q.rows() * dim];
    let mut dd = vec![0f32; d.rows() * dim];
    // Pairs that involve query set `qi` / document set `di`, in increasing pair order.
    let pairs_of_q = |qi: usize| -> std::ops::Range<usize> {
        match pairing {
            Pairing::AllPairs => qi * nd..qi * nd + nd,
            Pairing::Paired => qi..qi + 1,
        }
    };
    let pairs_of_d = |di: usize| -> (usize, usize, usize) {
        // (first pair, step, count)
        match pairing {
            Pairing::AllPairs => (di, nd, nq),
            Pairing::Paired => (di, 1, 1),
        }
    };
    // Each task owns the gradient rows of one set and adds its contributions in increasing pair
    // order, then q→d before d→q, then by position: the same order as the sequential
    // reference, so the result is deterministic and bit-identical to it.
    threads::install(|| -> Result<()> {
        set_slices(&mut dq, q.offsets(), dim)
            .into_par_iter()
            .try_for_each(|(qi, out)| -> Result<()> {
                for p in pairs_of_q(qi) {
                    let di = pairing.split(p, nd.max(1)).1;
                    let ds = d.span(di).0;
                    up.each_match((q, d), (p, qi, di), |i, j, w| {
                        axpy(&mut out[i * dim..][..dim], w, d.row(ds + j))
                    })?;
                }
                Ok(())
            })?;
        set_slices(&mut dd, d.offsets(), dim)
            .into_par_iter()
            .try_for_each(|(di, out)| -> Result<()> {
                let (first, step, count) = pairs_of_d(di);
                for p in (0..count).map(|c| first + c * step) {
                    let qi = pairing.split(p, nd.max(1)).0;
                    let qs = q.span(qi).0;
                    up.each_match((q, d), (p, qi, di), |i, j, w| {
                        axpy(&mut out[j * dim..][..dim], w, q.row(qs + i))
                    })?;
                }
                Ok(())
            })
    })?;
    Ok((dq, dd))
}

/// A saved argmax position: `None` when undefined (−1), an error when outside the set.
/// Check the inputs of a backward pass: matching dimensions, and upstream gradients and argmax
/// arrays sized for the pairs. Returns the number of pairs and the longest query and document
/// sets (the argmax arrays' row strides).
pub(crate) fn check_upstream<T: Element>(
    q: &TokenSets<T>,
    d: &TokenSets<T>,
    pairing: Pairing,
    q2d: &Option<DirectionGrad>,
    d2q: &Option<DirectionGrad>,
) -> Result<(usize, usize, usize)> {
    check_dims(q, d)?;
    let p_total = pairing.pairs(q, d)?;
    let (lq_max, ld_max) = (q.max_len(), d.max_len());
    for (name, g, l) in [("q2d", &q2d, lq_max), ("d2q", &d2q, ld_max)] {
        if let Some(g) = g {
            if g.grad.len() != p_total || g.argmax.len() != p_total * l {
                return Err(Error::invalid(
                    name,
                    format!(
                        "expected grad of length {p_total} and argmax of length {} ({p_total} pairs x {l}), got {} and {}",
                        p_total * l,
                        g.grad.len(),
                        g.argmax.len()
                    ),
                ));
            }
        }
    }
    Ok((p_total, lq_max, ld_max))
}

/// The upstream gradients of both directions, with the row strides of their argmax arrays.
struct Upstream<'a> {
    q2d: Option<DirectionGrad<'a>>,
    d2q: Option<DirectionGrad<'a>>,
    lq_max: usize,
    ld_max: usize,
}

impl Upstream<'_> {
    /// Every (query row `i`, document row `j`, weight) that pair `p` (query set `qi`, document
    /// set `di`) sends gradient through, rows counted within their sets: each valid query row to
    /// its argmax document row (q→d), then each valid document row to its argmax query row
    /// (d→q), by position.
    fn each_match<T: Element>(
        &self,
        (q, d): (&TokenSets<T>, &TokenSets<T>),
        (p, qi, di): (usize, usize, usize),
        mut f: impl FnMut(usize, usize, f32),
    ) -> Result<()> {
        let ((qs, ql), (ds, dl)) = (q.span(qi), d.span(di));
        if let Some(g) = &self.q2d {
            let w = g.grad[p];
            for i in (0..ql).filter(|&i| q.valid(qs + i)) {
                if let Some(j) = check_arg(g.argmax[p * self.lq_max + i], dl, "q2d_argmax")? {
                    f(i, j, w);
                }
            }
        }
        if let Some(g) = &self.d2q {
            let w = g.grad[p];
            for j in (0..dl).filter(|&j| d.valid(ds + j)) {
                if let Some(i) = check_arg(g.argmax[p * self.ld_max + j], ql, "d2q_argmax")? {
                    f(i, j, w);
                }
            }
        }
        Ok(())
    }
}

/// An argmax position of a set of `len` rows: `None` for -1 (no row), an error past the set.
pub(crate) fn check_arg(arg: i32, len: usize, name: &'static str) -> Result<Option<usize>> {
    if arg < 0 {
        Ok(None)
    } else if (arg as usize) < len {
        Ok(Some(arg as usize))
    } else {
        Err(Error::invalid(
            name,
            format!("argmax position {arg} is outside a set of {len} rows"),
        ))
    }
}

/// The rows of each set as its own mutable slice (sets are disjoint: offsets never decrease).
fn set_slices<'a>(buf: &'a mut [f32], offsets: &[usize], dim: usize) -> Vec<(usize, &'a mut [f32])> {
    let mut out = Vec::with_capacity(offsets.len().saturating_sub(1));
    let mut rest = buf;
    let mut cursor = 0;
    for (i, w) in offsets.windows(2).enumerate() {
        let (s, e) = (w[0], w[1]);
        let tail = std::mem::take(&mut rest);
        let (_, tail) = tail.split_at_mut((s - cursor) * dim);
        let (set, tail) = tail.split_at_mut((e - s) * dim);
        out.push((i, set));
        rest = tail;
        cursor = e;
    }
    out
}

#[inline]
fn axpy<T: Element>(y: &mut [f32], a: f32, x: &[T]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x.to_f32();
    }
}

#[cfg(test)]
mod prefilter_tests;
#[cfg(test)]
mod tests;
