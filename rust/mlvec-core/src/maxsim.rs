//! Token-wise late-interaction (MaxSim) scoring and its gradient.
//!
//! For a query set `Q` and a document set `D` (valid rows only):
//! - `q2d = Σ_i max_j <Q_i, D_j>` (ColBERT; divide by the valid query count for FILIP's q→d mean);
//! - `d2q = Σ_j max_i <Q_i, D_j>` (FILIP's other direction, before its mean).
//!
//! A max over no valid rows is −∞ (so a document with no valid tokens scores −∞ against any
//! query with valid tokens); a sum over no valid rows is 0. Ties pick the first position, as
//! `torch.max` does, so gradients through the argmax match a torch reference.

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

#[inline]
fn dot<T: Element>(a: &[T], b: &[T]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x.to_f32() * y.to_f32()).sum()
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

/// Score the pairs chosen by `pairing`. Runs on the [`threads`] pool.
#[allow(clippy::needless_range_loop)] // the reference loops mirror the math
pub fn forward<T: Element>(
    q: &TokenSets<T>,
    d: &TokenSets<T>,
    pairing: Pairing,
    want: Outputs,
) -> Result<Forward> {
    check_dims(q, d)?;
    let p_total = pairing.pairs(q, d)?;
    let (lq_max, ld_max) = (q.max_len(), d.max_len());
    let want_d2q = want.d2q || want.d2q_argmax;
    let nd = d.len().max(1);

    struct Pair {
        q2d: f32,
        d2q: f32,
        q_arg: Vec<i32>,
        d_arg: Vec<i32>,
    }
    let per_pair: Vec<Pair> = threads::install(|| {
        (0..p_total)
            .into_par_iter()
            .map(|p| {
                let (qi, di) = pairing.split(p, nd);
                let (qs, ql) = q.span(qi);
                let (ds, dl) = d.span(di);
                let mut dmax = vec![f32::NEG_INFINITY; if want_d2q { dl } else { 0 }];
                let mut darg = vec![-1i32; if want_d2q { dl } else { 0 }];
                let mut q_arg = vec![-1i32; if want.q2d_argmax { lq_max } else { 0 }];
                let mut q2d = 0.0f32;
                for i in 0..ql {
                    if !q.valid(qs + i) {
                        continue;
                    }
                    let qrow = q.row(qs + i);
                    let (mut best, mut arg) = (f32::NEG_INFINITY, -1i32);
                    for j in 0..dl {
                        if !d.valid(ds + j) {
                            continue;
                        }
                        let s = dot(qrow, d.row(ds + j));
                        if s > best || arg < 0 {
                            best = s;
                            arg = j as i32;
                        }
                        if want_d2q && (s > dmax[j] || darg[j] < 0) {
                            dmax[j] = s;
                            darg[j] = i as i32;
                        }
                    }
                    q2d += best;
                    if want.q2d_argmax {
                        q_arg[i] = arg;
                    }
                }
                let mut d2q = 0.0f32;
                if want_d2q {
                    for j in 0..dl {
                        if d.valid(ds + j) {
                            d2q += dmax[j];
                        }
                    }
                }
                let mut d_arg = Vec::new();
                if want.d2q_argmax {
                    d_arg = vec![-1i32; ld_max];
                    d_arg[..dl].copy_from_slice(&darg);
                }
                Pair {
                    q2d,
                    d2q,
                    q_arg,
                    d_arg,
                }
            })
            .collect()
    });

    let mut out = Forward {
        lq_max,
        ld_max,
        ..Default::default()
    };
    out.q2d = per_pair.iter().map(|p| p.q2d).collect();
    if want.q2d_argmax {
        out.q2d_argmax = Some(per_pair.iter().flat_map(|p| p.q_arg.iter().copied()).collect());
    }
    if want.d2q {
        out.d2q = Some(per_pair.iter().map(|p| p.d2q).collect());
    }
    if want.d2q_argmax {
        out.d2q_argmax = Some(per_pair.iter().flat_map(|p| p.d_arg.iter().copied()).collect());
    }
    Ok(out)
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
    let dim = q.dim();
    let nd = d.len().max(1);
    let mut dq = vec![0f32; q.rows() * dim];
    let mut dd = vec![0f32; d.rows() * dim];
    let check = |arg: i32, len: usize, name: &'static str| -> Result<Option<usize>> {
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
    };
    // Sequential scatter: simple and deterministic. Optimised kernels may parallelise per set.
    for p in 0..p_total {
        let (qi, di) = pairing.split(p, nd);
        let (qs, ql) = q.span(qi);
        let (ds, dl) = d.span(di);
        if let Some(g) = &q2d {
            let w = g.grad[p];
            for i in 0..ql {
                if !q.valid(qs + i) {
                    continue;
                }
                if let Some(j) = check(g.argmax[p * lq_max + i], dl, "q2d_argmax")? {
                    axpy(&mut dq[(qs + i) * dim..][..dim], w, d.row(ds + j));
                    axpy(&mut dd[(ds + j) * dim..][..dim], w, q.row(qs + i));
                }
            }
        }
        if let Some(g) = &d2q {
            let w = g.grad[p];
            for j in 0..dl {
                if !d.valid(ds + j) {
                    continue;
                }
                if let Some(i) = check(g.argmax[p * ld_max + j], ql, "d2q_argmax")? {
                    axpy(&mut dq[(qs + i) * dim..][..dim], w, d.row(ds + j));
                    axpy(&mut dd[(ds + j) * dim..][..dim], w, q.row(qs + i));
                }
            }
        }
    }
    Ok((dq, dd))
}

#[inline]
fn axpy<T: Element>(y: &mut [f32], a: f32, x: &[T]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x.to_f32();
    }
}
