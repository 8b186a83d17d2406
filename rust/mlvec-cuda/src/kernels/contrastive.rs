//! Contrastive logits tiles: CLIP (InfoNCE) log-sum-exp partials and gradient, SigLIP loss rows
//! and gradient, over `[m, dim] x [n, dim]` problems tiled `TILE_ROWS x TILE_COLS`.

use super::{
    ceil_div, dim_ok, need, non_negative, pick, u32_of, Dtype, Place, MAX_GRID_Y, TILE_COLS, TILE_ROWS,
    TILE_THREADS,
};
use crate::driver::{launch, Arg, Grid};
use crate::error::{Error, Result};

/// A `[m, dim]` x `[n, dim]` logits problem, tiled `TILE_ROWS x TILE_COLS`.
#[derive(Clone, Copy, Debug)]
pub struct Pairwise {
    pub x: u64,
    pub y: u64,
    pub m: i64,
    pub n: i64,
    pub dim: i64,
}

impl Pairwise {
    /// `(column tiles, row tiles)`: the partial buffers are `[col_tiles, m]` and `[row_tiles, n]`.
    pub fn tiles(&self) -> (i64, i64) {
        (ceil_div(self.n, TILE_COLS), ceil_div(self.m, TILE_ROWS))
    }
    fn grid(&self) -> Result<Option<Grid>> {
        non_negative("m", self.m)?;
        non_negative("n", self.n)?;
        dim_ok(self.dim)?;
        need("x", self.x)?;
        need("y", self.y)?;
        if self.m == 0 || self.n == 0 {
            return Ok(None);
        }
        let (gx, gy) = self.tiles();
        if gy > MAX_GRID_Y {
            return Err(Error::invalid(
                "x",
                format!(
                    "at most {} rows per launch, got {}",
                    MAX_GRID_Y * TILE_ROWS,
                    self.m
                ),
            ));
        }
        Ok(Some(Grid {
            grid: (u32_of("n", gx)?, gy as u32, 1),
            block: TILE_THREADS,
            shared: 0,
        }))
    }
    fn head(&self, scale: f32) -> [Arg; 6] {
        [
            Arg::Ptr(self.x),
            Arg::Ptr(self.y),
            Arg::I64(self.m),
            Arg::I64(self.n),
            Arg::I32(self.dim as i32),
            Arg::F32(scale),
        ]
    }

    /// Check the problem and the required `outputs`, then launch one kernel of `family`
    /// (`[f32, f16, bf16]` names) with the problem's parameters followed by `tail`.
    fn launch(
        &self,
        at: Place,
        dt: Dtype,
        family: [&'static str; 3],
        scale: f32,
        outputs: &[(&'static str, u64)],
        tail: &[Arg],
    ) -> Result<()> {
        let Some(grid) = self.grid()? else {
            return Ok(());
        };
        for &(arg, p) in outputs {
            need(arg, p)?;
        }
        let mut args = self.head(scale).to_vec();
        args.extend_from_slice(tail);
        launch(at.device, at.stream, pick(dt, family), grid, &args)
    }
}

/// CLIP forward tile pass: per-tile max and Σexp of `scale * x @ y.T` per row (`[col_tiles, m]`)
/// and per column (`[row_tiles, n]`).
#[allow(clippy::too_many_arguments)]
pub fn clip_lse_partials(
    at: Place,
    dt: Dtype,
    pw: &Pairwise,
    scale: f32,
    row_pmax: u64,
    row_psum: u64,
    col_pmax: u64,
    col_psum: u64,
) -> Result<()> {
    pw.launch(
        at,
        dt,
        [
            "clip_lse_partials_f32",
            "clip_lse_partials_f16",
            "clip_lse_partials_bf16",
        ],
        scale,
        &[
            ("row_pmax", row_pmax),
            ("row_psum", row_psum),
            ("col_pmax", col_pmax),
            ("col_psum", col_psum),
        ],
        &[
            Arg::Ptr(row_pmax),
            Arg::Ptr(row_psum),
            Arg::Ptr(col_pmax),
            Arg::Ptr(col_psum),
        ],
    )
}

/// CLIP backward tile pass: gradient of `Σ g_row * lse_row + Σ g_col * lse_col` (either side may
/// be absent: pass 0 for its `g` and `lse`), added into fp32 `dx [m, dim]`, `dy [n, dim]`;
/// `dscale_part [row_tiles * col_tiles]` gets each tile's `Σ dl * <x, y>`.
#[allow(clippy::too_many_arguments)]
pub fn clip_grad(
    at: Place,
    dt: Dtype,
    pw: &Pairwise,
    scale: f32,
    row_lse: u64,
    col_lse: u64,
    g_row: u64,
    g_col: u64,
    dx: u64,
    dy: u64,
    dscale_part: u64,
) -> Result<()> {
    if pw.grid()?.is_some() && ((g_row != 0 && row_lse == 0) || (g_col != 0 && col_lse == 0)) {
        return Err(Error::invalid("row_lse", "a gradient side needs its log-sum-exp"));
    }
    pw.launch(
        at,
        dt,
        ["clip_grad_f32", "clip_grad_f16", "clip_grad_bf16"],
        scale,
        &[("dx", dx), ("dy", dy), ("dscale_part", dscale_part)],
        &[
            Arg::Ptr(row_lse),
            Arg::Ptr(col_lse),
            Arg::Ptr(g_row),
            Arg::Ptr(g_col),
            Arg::Ptr(dx),
            Arg::Ptr(dy),
            Arg::Ptr(dscale_part),
        ],
    )
}

/// SigLIP forward tile pass: `row_part [col_tiles, m]` = Σ over each tile's columns of
/// `softplus(-z * (scale <x, y> + bias))`, `z = +1` where `row_offset + i == col_offset + j`.
#[allow(clippy::too_many_arguments)]
pub fn siglip_forward(
    at: Place,
    dt: Dtype,
    pw: &Pairwise,
    scale: f32,
    bias: f32,
    row_offset: i64,
    col_offset: i64,
    row_part: u64,
) -> Result<()> {
    pw.launch(
        at,
        dt,
        ["siglip_fwd_f32", "siglip_fwd_f16", "siglip_fwd_bf16"],
        scale,
        &[("row_part", row_part)],
        &[
            Arg::F32(bias),
            Arg::I64(row_offset),
            Arg::I64(col_offset),
            Arg::Ptr(row_part),
        ],
    )
}

/// SigLIP backward tile pass with per-row upstream gradients `g_row [m]`: adds into fp32 `dx`,
/// `dy`; `dscale_part`, `dbias_part [row_tiles * col_tiles]`.
#[allow(clippy::too_many_arguments)]
pub fn siglip_backward(
    at: Place,
    dt: Dtype,
    pw: &Pairwise,
    scale: f32,
    bias: f32,
    row_offset: i64,
    col_offset: i64,
    g_row: u64,
    dx: u64,
    dy: u64,
    dscale_part: u64,
    dbias_part: u64,
) -> Result<()> {
    pw.launch(
        at,
        dt,
        ["siglip_bwd_f32", "siglip_bwd_f16", "siglip_bwd_bf16"],
        scale,
        &[
            ("g_row", g_row),
            ("dx", dx),
            ("dy", dy),
            ("dscale_part", dscale_part),
            ("dbias_part", dbias_part),
        ],
        &[
            Arg::F32(bias),
            Arg::I64(row_offset),
            Arg::I64(col_offset),
            Arg::Ptr(g_row),
            Arg::Ptr(dx),
            Arg::Ptr(dy),
            Arg::Ptr(dscale_part),
            Arg::Ptr(dbias_part),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_counts_round_up() {
        let pw = Pairwise {
            x: 1,
            y: 1,
            m: TILE_ROWS + 1,
            n: TILE_COLS,
            dim: 8,
        };
        assert_eq!(pw.tiles(), (1, 2));
    }

    #[test]
    fn argument_errors_come_before_any_driver_call() {
        let at = Place { device: 0, stream: 0 };
        let pw = Pairwise {
            x: 1,
            y: 1,
            m: 4,
            n: 4,
            dim: 8,
        };
        let e = siglip_forward(at, Dtype::F32, &pw, 1.0, 0.0, 0, 0, 0);
        assert!(matches!(e, Err(Error::Invalid { arg: "row_part", .. })));
        let e = clip_grad(at, Dtype::F32, &pw, 1.0, 0, 0, 1, 0, 1, 1, 1);
        assert!(matches!(e, Err(Error::Invalid { arg: "row_lse", .. })));
        // An empty problem launches nothing, whatever the outputs.
        let empty = Pairwise { m: 0, ..pw };
        assert!(siglip_forward(at, Dtype::F32, &empty, 1.0, 0.0, 0, 0, 0).is_ok());
    }
}
