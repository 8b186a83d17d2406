//! Late-interaction launches: MaxSim forward (one or both directions), the FILIP pair tile and
//! the MaxSim backward's gather and scatters.

use super::{ceil_div, dim_ok, need, non_negative, pick, u32_of, Dtype, Place, Sets, MAX_COLS, TILE_THREADS};
use crate::driver::{launch, Arg, Grid};
use crate::error::{Error, Result};

const BWD_THREADS: u32 = 128;

/// Number of scored pairs: `a.n` when `paired` (which needs `a.n == b.n`), else `a.n * b.n`.
fn pairs(a: &Sets, b: &Sets, paired: bool) -> Result<i64> {
    non_negative("a.n", a.n)?;
    non_negative("b.n", b.n)?;
    if paired {
        if a.n != b.n {
            return Err(Error::invalid(
                "documents",
                format!(
                    "paired scoring needs as many documents as queries, got {} queries and {} documents",
                    a.n, b.n
                ),
            ));
        }
        Ok(a.n)
    } else {
        a.n.checked_mul(b.n)
            .ok_or_else(|| Error::invalid("shape", "too many pairs"))
    }
}

/// One block per pair, `shared` bytes of dynamic shared memory.
fn per_pair(p: i64, shared: i64) -> Result<Grid> {
    Ok(Grid {
        grid: (u32_of("pairs", p)?, 1, 1),
        block: TILE_THREADS,
        shared: shared as u32,
    })
}

/// MaxSim forward, one block per pair. Writes `sum[P]` (Σ over valid A rows of the max over
/// valid B rows) and, when non-zero, `row_arg[P, la_max]`; with `col_sum` or `col_arg` non-zero
/// also the B->A direction in the same pass (needs `lb_max <= MAX_COLS`). `transpose` writes
/// all-pairs outputs at `b * na + a` (for running the B->A direction with swapped roles).
#[allow(clippy::too_many_arguments)]
pub fn maxsim_forward(
    at: Place,
    dt: Dtype,
    a: &Sets,
    b: &Sets,
    dim: i64,
    paired: bool,
    transpose: bool,
    la_max: i64,
    lb_max: i64,
    sum: u64,
    row_arg: u64,
    col_sum: u64,
    col_arg: u64,
) -> Result<()> {
    let p = pairs(a, b, paired)?;
    let dim = dim_ok(dim)?;
    non_negative("la_max", la_max)?;
    non_negative("lb_max", lb_max)?;
    if p == 0 {
        return Ok(());
    }
    need("sum", sum)?;
    let cols = col_sum != 0 || col_arg != 0;
    if cols && lb_max > MAX_COLS {
        return Err(Error::invalid(
            "lb_max",
            format!("the one-pass two-direction kernel holds at most {MAX_COLS} rows per document set, got {lb_max}; run the other direction with swapped roles"),
        ));
    }
    let name = if cols {
        pick(
            dt,
            [
                "maxsim_fwd_cols_f32",
                "maxsim_fwd_cols_f16",
                "maxsim_fwd_cols_bf16",
            ],
        )
    } else {
        pick(dt, ["maxsim_fwd_f32", "maxsim_fwd_f16", "maxsim_fwd_bf16"])
    };
    let mut args = Vec::with_capacity(17);
    args.extend(a.args());
    args.extend(b.args());
    args.extend([
        Arg::I32(dim),
        Arg::I32(paired as i32),
        Arg::I32(transpose as i32),
        Arg::I32(la_max as i32),
        Arg::I32(lb_max as i32),
        Arg::Ptr(sum),
        Arg::Ptr(row_arg),
        Arg::Ptr(col_sum),
        Arg::Ptr(col_arg),
    ]);
    let shared = if cols { lb_max * 8 } else { 0 };
    launch(at.device, at.stream, name, per_pair(p, shared)?, &args)
}

/// FILIP pair tile: both directions' mean-of-max in one pass (`a_mean[P]`, `b_mean[P]`) and,
/// when non-zero, the argmax positions `a_arg[P, la_max]`, `b_arg[P, lb_max]`.
#[allow(clippy::too_many_arguments)]
pub fn filip_forward(
    at: Place,
    dt: Dtype,
    a: &Sets,
    b: &Sets,
    dim: i64,
    paired: bool,
    la_max: i64,
    lb_max: i64,
    a_mean: u64,
    b_mean: u64,
    a_arg: u64,
    b_arg: u64,
) -> Result<()> {
    let p = pairs(a, b, paired)?;
    let dim = dim_ok(dim)?;
    if p == 0 {
        return Ok(());
    }
    need("a_mean", a_mean)?;
    need("b_mean", b_mean)?;
    if !(0..=MAX_COLS).contains(&lb_max) || la_max < 0 {
        return Err(Error::invalid(
            "lb_max",
            format!("the FILIP tile holds at most {MAX_COLS} rows per second-side set, got {lb_max}"),
        ));
    }
    let mut args = Vec::with_capacity(16);
    args.extend(a.args());
    args.extend(b.args());
    args.extend([
        Arg::I32(dim),
        Arg::I32(paired as i32),
        Arg::I32(la_max as i32),
        Arg::I32(lb_max as i32),
        Arg::Ptr(a_mean),
        Arg::Ptr(b_mean),
        Arg::Ptr(a_arg),
        Arg::Ptr(b_arg),
    ]);
    launch(
        at.device,
        at.stream,
        pick(dt, ["filip_fwd_f32", "filip_fwd_f16", "filip_fwd_bf16"]),
        per_pair(p, lb_max * 8)?,
        &args,
    )
}

/// How the MaxSim backward writes its gradients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backward {
    /// dA only, one block per A set (deterministic).
    GatherA,
    /// dB only, one block per B set, fixed order (deterministic).
    ScatterBDeterministic,
    /// dB only, one block per pair, atomic adds (order varies run to run).
    ScatterBAtomic,
}

impl Backward {
    /// `"gather_a"`, `"scatter_b"` (deterministic) or `"scatter_b_atomic"`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "gather_a" => Ok(Backward::GatherA),
            "scatter_b" => Ok(Backward::ScatterBDeterministic),
            "scatter_b_atomic" => Ok(Backward::ScatterBAtomic),
            other => Err(Error::invalid(
                "kind",
                format!("expected 'gather_a', 'scatter_b' or 'scatter_b_atomic', got {other:?}"),
            )),
        }
    }
}

/// One direction of the MaxSim backward: with `argmax[P, la_max]` (positions in B's sets) and
/// `grad[P]`, adds `grad[p] * B[b_row]` to `da[a_row]` (GatherA) or `grad[p] * A[a_row]` to
/// `db[b_row]` (the scatters). `da` / `db` are fp32 `[rows, dim]`, accumulated into. `lb_max`
/// (the longest B set) sizes the deterministic scatter's grid; set lengths above 65,535 need
/// the atomic scatter.
#[allow(clippy::too_many_arguments)]
pub fn maxsim_backward(
    at: Place,
    dt: Dtype,
    kind: Backward,
    a: &Sets,
    b: &Sets,
    dim: i64,
    paired: bool,
    transpose: bool,
    la_max: i64,
    lb_max: i64,
    grad: u64,
    argmax: u64,
    da: u64,
    db: u64,
) -> Result<()> {
    let p = pairs(a, b, paired)?;
    let dimi = dim_ok(dim)?;
    non_negative("la_max", la_max)?;
    non_negative("lb_max", lb_max)?;
    if p == 0 {
        return Ok(());
    }
    need("grad", grad)?;
    need("argmax", argmax)?;
    let (name, blocks, rows) = match kind {
        Backward::GatherA => {
            need("da", da)?;
            (
                pick(
                    dt,
                    [
                        "maxsim_bwd_gather_f32",
                        "maxsim_bwd_gather_f16",
                        "maxsim_bwd_gather_bf16",
                    ],
                ),
                a.n,
                la_max,
            )
        }
        Backward::ScatterBDeterministic => {
            need("db", db)?;
            (
                pick(
                    dt,
                    [
                        "maxsim_bwd_scatter_det_f32",
                        "maxsim_bwd_scatter_det_f16",
                        "maxsim_bwd_scatter_det_bf16",
                    ],
                ),
                b.n,
                lb_max,
            )
        }
        Backward::ScatterBAtomic => {
            need("db", db)?;
            (
                pick(
                    dt,
                    [
                        "maxsim_bwd_scatter_atomic_f32",
                        "maxsim_bwd_scatter_atomic_f16",
                        "maxsim_bwd_scatter_atomic_bf16",
                    ],
                ),
                p,
                1,
            )
        }
    };
    // B's mask is not needed: the argmax positions only ever point at valid B rows.
    let args = [
        Arg::Ptr(a.data),
        Arg::Ptr(a.offsets),
        Arg::Ptr(a.mask),
        Arg::I64(a.n),
        Arg::Ptr(b.data),
        Arg::Ptr(b.offsets),
        Arg::I64(b.n),
        Arg::I32(dimi),
        Arg::I32(paired as i32),
        Arg::I32(transpose as i32),
        Arg::I32(la_max as i32),
        Arg::Ptr(grad),
        Arg::Ptr(argmax),
        Arg::Ptr(da),
        Arg::Ptr(db),
    ];
    launch(
        at.device,
        at.stream,
        name,
        Grid {
            grid: (
                u32_of("sets", blocks)?,
                u32_of("dim", ceil_div(dim, BWD_THREADS as i64))?,
                u32_of("set length", rows)?,
            ),
            block: BWD_THREADS,
            shared: 0,
        },
        &args,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sets(n: i64) -> Sets {
        Sets {
            data: 1,
            offsets: 1,
            mask: 0,
            n,
        }
    }

    #[test]
    fn argument_errors_come_before_any_driver_call() {
        let at = Place { device: 0, stream: 0 };
        let s = sets;
        let e = maxsim_forward(at, Dtype::F32, &s(2), &s(3), 8, true, false, 1, 1, 1, 0, 0, 0);
        assert!(matches!(e, Err(Error::Invalid { arg: "documents", .. })));
        let e = maxsim_forward(at, Dtype::F32, &s(2), &s(3), 0, false, false, 1, 1, 1, 0, 0, 0);
        assert!(matches!(e, Err(Error::Invalid { arg: "dim", .. })));
        let e = maxsim_forward(
            at,
            Dtype::F32,
            &s(1),
            &s(1),
            8,
            false,
            false,
            1,
            MAX_COLS + 1,
            1,
            0,
            1,
            0,
        );
        assert!(matches!(e, Err(Error::Invalid { arg: "lb_max", .. })));
        // No pairs: nothing to launch, no driver needed.
        assert!(maxsim_forward(at, Dtype::F32, &s(0), &s(3), 8, false, false, 0, 1, 0, 0, 0, 0).is_ok());
    }

    #[test]
    fn backward_kinds() {
        assert_eq!(
            Backward::parse("scatter_b").unwrap(),
            Backward::ScatterBDeterministic
        );
        assert!(matches!(
            Backward::parse("sideways"),
            Err(Error::Invalid { arg: "kind", .. })
        ));
    }
}
