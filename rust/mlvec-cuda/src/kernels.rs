//! Typed launches of the kernels in `cuda_kernels/`: argument checks, grid sizes, parameter
//! lists. Every pointer is a raw device address the caller owns (e.g. torch's `data_ptr()`),
//! every launch is asynchronous on the caller's stream. Outputs that accumulate (`+=`) must be
//! zeroed by the caller.

use crate::driver::{launch, Arg, Grid};
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

const TILE_THREADS: u32 = 128;
const BWD_THREADS: u32 = 128;
const SCAN_THREADS: u32 = 256;
const SELECT_THREADS: u32 = 256;
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

fn dim_ok(dim: i64) -> Result<i32> {
    if dim < 1 || dim > i32::MAX as i64 {
        return Err(Error::invalid("dim", format!("must be in 1..2^31, got {dim}")));
    }
    Ok(dim as i32)
}

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

fn sets_args(s: &Sets) -> [Arg; 4] {
    [
        Arg::Ptr(s.data),
        Arg::Ptr(s.offsets),
        Arg::Ptr(s.mask),
        Arg::I64(s.n),
    ]
}

fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

fn u32_of(arg: &'static str, v: i64) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::invalid(arg, format!("{v} is out of range for a launch")))
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
    args.extend(sets_args(a));
    args.extend(sets_args(b));
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
    let shared = if cols { (lb_max * 8) as u32 } else { 0 };
    launch(
        at.device,
        at.stream,
        name,
        Grid {
            grid: (u32_of("pairs", p)?, 1, 1),
            block: TILE_THREADS,
            shared,
        },
        &args,
    )
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
    args.extend(sets_args(a));
    args.extend(sets_args(b));
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
        Grid {
            grid: (u32_of("pairs", p)?, 1, 1),
            block: TILE_THREADS,
            shared: (lb_max * 8) as u32,
        },
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
    let Some(grid) = pw.grid()? else {
        return Ok(());
    };
    for (arg, p) in [
        ("row_pmax", row_pmax),
        ("row_psum", row_psum),
        ("col_pmax", col_pmax),
        ("col_psum", col_psum),
    ] {
        need(arg, p)?;
    }
    let mut args = pw.head(scale).to_vec();
    args.extend([
        Arg::Ptr(row_pmax),
        Arg::Ptr(row_psum),
        Arg::Ptr(col_pmax),
        Arg::Ptr(col_psum),
    ]);
    launch(
        at.device,
        at.stream,
        pick(
            dt,
            [
                "clip_lse_partials_f32",
                "clip_lse_partials_f16",
                "clip_lse_partials_bf16",
            ],
        ),
        grid,
        &args,
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
    let Some(grid) = pw.grid()? else {
        return Ok(());
    };
    if (g_row != 0 && row_lse == 0) || (g_col != 0 && col_lse == 0) {
        return Err(Error::invalid("row_lse", "a gradient side needs its log-sum-exp"));
    }
    need("dx", dx)?;
    need("dy", dy)?;
    need("dscale_part", dscale_part)?;
    let mut args = pw.head(scale).to_vec();
    args.extend([
        Arg::Ptr(row_lse),
        Arg::Ptr(col_lse),
        Arg::Ptr(g_row),
        Arg::Ptr(g_col),
        Arg::Ptr(dx),
        Arg::Ptr(dy),
        Arg::Ptr(dscale_part),
    ]);
    launch(
        at.device,
        at.stream,
        pick(dt, ["clip_grad_f32", "clip_grad_f16", "clip_grad_bf16"]),
        grid,
        &args,
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
    let Some(grid) = pw.grid()? else {
        return Ok(());
    };
    need("row_part", row_part)?;
    let mut args = pw.head(scale).to_vec();
    args.extend([
        Arg::F32(bias),
        Arg::I64(row_offset),
        Arg::I64(col_offset),
        Arg::Ptr(row_part),
    ]);
    launch(
        at.device,
        at.stream,
        pick(dt, ["siglip_fwd_f32", "siglip_fwd_f16", "siglip_fwd_bf16"]),
        grid,
        &args,
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
    let Some(grid) = pw.grid()? else {
        return Ok(());
    };
    for (arg, p) in [
        ("g_row", g_row),
        ("dx", dx),
        ("dy", dy),
        ("dscale_part", dscale_part),
        ("dbias_part", dbias_part),
    ] {
        need(arg, p)?;
    }
    let mut args = pw.head(scale).to_vec();
    args.extend([
        Arg::F32(bias),
        Arg::I64(row_offset),
        Arg::I64(col_offset),
        Arg::Ptr(g_row),
        Arg::Ptr(dx),
        Arg::Ptr(dy),
        Arg::Ptr(dscale_part),
        Arg::Ptr(dbias_part),
    ]);
    launch(
        at.device,
        at.stream,
        pick(dt, ["siglip_bwd_f32", "siglip_bwd_f16", "siglip_bwd_bf16"]),
        grid,
        &args,
    )
}

/// Launch over query rows in chunks of at most 65,535 (the grid's y limit), offsetting the
/// query-indexed pointers.
fn by_query_chunks(nq: i64, mut f: impl FnMut(i64, i64) -> Result<()>) -> Result<()> {
    let mut q0 = 0;
    while q0 < nq {
        let qn = (nq - q0).min(MAX_GRID_Y);
        f(q0, qn)?;
        q0 += qn;
    }
    Ok(())
}

/// PQ lookup-table scan: `dist[q, i] = Σ_s lut[q, s, codes[i, s]]` for uint8 `codes [n, m]`,
/// fp32 `lut [nq, m, ksub]`, fp32 `dist [nq, n]`.
#[allow(clippy::too_many_arguments)]
pub fn pq_scan(at: Place, codes: u64, n: i64, m: i64, ksub: i64, lut: u64, nq: i64, dist: u64) -> Result<()> {
    non_negative("n", n)?;
    non_negative("nq", nq)?;
    if !(1..=256).contains(&ksub) {
        return Err(Error::invalid(
            "ksub",
            format!("uint8 codes address 1..=256 centroids, got {ksub}"),
        ));
    }
    if m < 1 || m > i32::MAX as i64 {
        return Err(Error::invalid("m", format!("must be >= 1, got {m}")));
    }
    if n == 0 || nq == 0 {
        return Ok(());
    }
    need("codes", codes)?;
    need("lut", lut)?;
    need("dist", dist)?;
    let gx = u32_of("n", ceil_div(n, SCAN_THREADS as i64))?;
    by_query_chunks(nq, |q0, qn| {
        launch(
            at.device,
            at.stream,
            "pq_scan",
            Grid {
                grid: (gx, qn as u32, 1),
                block: SCAN_THREADS,
                shared: 0,
            },
            &[
                Arg::Ptr(codes),
                Arg::I64(n),
                Arg::I32(m as i32),
                Arg::I32(ksub as i32),
                Arg::Ptr(lut + (q0 * m * ksub * 4) as u64),
                Arg::I64(qn),
                Arg::Ptr(dist + (q0 * n * 4) as u64),
            ],
        )
    })
}

/// Binary Hamming scan: `dist[q, i] = popcount(codes[i] ^ queries[q])` over `words` uint64 words
/// per code, written as fp32.
#[allow(clippy::too_many_arguments)]
pub fn hamming_scan(
    at: Place,
    codes: u64,
    n: i64,
    words: i64,
    queries: u64,
    nq: i64,
    dist: u64,
) -> Result<()> {
    non_negative("n", n)?;
    non_negative("nq", nq)?;
    if words < 1 || words > i32::MAX as i64 {
        return Err(Error::invalid("words", format!("must be >= 1, got {words}")));
    }
    if n == 0 || nq == 0 {
        return Ok(());
    }
    need("codes", codes)?;
    need("queries", queries)?;
    need("dist", dist)?;
    let gx = u32_of("n", ceil_div(n, SCAN_THREADS as i64))?;
    by_query_chunks(nq, |q0, qn| {
        launch(
            at.device,
            at.stream,
            "hamming_scan",
            Grid {
                grid: (gx, qn as u32, 1),
                block: SCAN_THREADS,
                shared: 0,
            },
            &[
                Arg::Ptr(codes),
                Arg::I64(n),
                Arg::I32(words as i32),
                Arg::Ptr(queries + (q0 * words * 8) as u64),
                Arg::I64(qn),
                Arg::Ptr(dist + (q0 * n * 4) as u64),
            ],
        )
    })
}

/// Number of chunks `select_k` splits `n` candidates into: its outputs are `[rows, chunks, k]`.
pub fn select_chunks(n: i64) -> i64 {
    ceil_div(n.max(0), SELECT_CHUNK).max(1)
}

/// One round of k-smallest selection: for fp32 `vals [rows, n]` with int64 `ids [rows, n]`
/// (0: ids are the column positions), writes the `k` smallest `(value, id)` of each chunk of
/// `SELECT_CHUNK` columns, ascending, to `out_vals`, `out_ids [rows, select_chunks(n), k]`.
#[allow(clippy::too_many_arguments)]
pub fn select_k(
    at: Place,
    vals: u64,
    ids: u64,
    rows: i64,
    n: i64,
    k: i64,
    out_vals: u64,
    out_ids: u64,
) -> Result<()> {
    non_negative("rows", rows)?;
    non_negative("n", n)?;
    if !(1..=MAX_K).contains(&k) {
        return Err(Error::invalid("k", format!("must be in 1..={MAX_K}, got {k}")));
    }
    if rows == 0 {
        return Ok(());
    }
    if n > 0 {
        need("vals", vals)?;
    }
    need("out_vals", out_vals)?;
    need("out_ids", out_ids)?;
    let chunks = select_chunks(n);
    by_query_chunks(rows, |r0, rn| {
        launch(
            at.device,
            at.stream,
            "select_k",
            Grid {
                grid: (u32_of("n", chunks)?, rn as u32, 1),
                block: SELECT_THREADS,
                shared: 0,
            },
            &[
                Arg::Ptr(if n > 0 { vals + (r0 * n * 4) as u64 } else { vals }),
                Arg::Ptr(if ids != 0 { ids + (r0 * n * 8) as u64 } else { 0 }),
                Arg::I64(rn),
                Arg::I64(n),
                Arg::I32(k as i32),
                Arg::Ptr(out_vals + (r0 * chunks * k * 4) as u64),
                Arg::Ptr(out_ids + (r0 * chunks * k * 8) as u64),
            ],
        )
    })
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

    #[test]
    fn argument_errors_come_before_any_driver_call() {
        let at = Place { device: 0, stream: 0 };
        let s = |n| Sets {
            data: 1,
            offsets: 1,
            mask: 0,
            n,
        };
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
        let e = select_k(at, 1, 0, 1, 10, 0, 1, 1);
        assert!(matches!(e, Err(Error::Invalid { arg: "k", .. })));
        let e = pq_scan(at, 1, 10, 4, 300, 1, 1, 1);
        assert!(matches!(e, Err(Error::Invalid { arg: "ksub", .. })));
    }

    #[test]
    fn select_chunk_count() {
        assert_eq!(select_chunks(0), 1);
        assert_eq!(select_chunks(SELECT_CHUNK), 1);
        assert_eq!(select_chunks(SELECT_CHUNK + 1), 2);
    }
}
