//! The scalar reference kernels: one dot product at a time, a sequential gradient scatter.
//! Slow but obviously right; the fast kernels are tested against them.

use super::{check_dims, DirectionGrad, Forward, Outputs, Pairing};
use crate::threads;
use crate::tokens::{Element, TokenSets};
use crate::Result;
use rayon::prelude::*;

#[inline]
fn dot<T: Element>(a: &[T], b: &[T]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x.to_f32() * y.to_f32()).sum()
}

/// Reference forward: the same contract as [`super::forward`].
#[allow(clippy::needless_range_loop)] // the reference loops mirror the math
pub fn forward<T: Element>(
    q: &TokenSets<T>,
    d: &TokenSets<T>,
    pairing: Pairing,
    want: Outputs,
) -> Result<Forward> {
    check_dims(q, d)?;
    let p_total = pairing.pairs(q, d)?;
    if want.check_finite {
        for (arg, sets) in [("queries", q), ("documents", d)] {
            let bad = (0..sets.len())
                .flat_map(|i| {
                    let (s, n) = sets.span(i);
                    s..s + n
                })
                .find(|&r| sets.valid(r) && sets.row(r).iter().any(|x| !x.to_f32().is_finite()));
            if let Some(r) = bad {
                return Err(super::nonfinite_error(arg, sets, r));
            }
        }
    }
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

/// Reference backward: the same contract as [`super::backward`].
///
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
    let (p_total, lq_max, ld_max) = super::check_upstream(q, d, pairing, &q2d, &d2q)?;
    let dim = q.dim();
    let nd = d.len().max(1);
    let mut dq = vec![0f32; q.rows() * dim];
    let mut dd = vec![0f32; d.rows() * dim];
    // Argmax positions are validated as the kernels validate them (the same contract).
    let check = super::check_arg;
    // Sequential scatter: simple and deterministic.
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
