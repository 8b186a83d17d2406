//! Portable tiles in plain Rust: 4 document rows × 16 query lanes. The compiler vectorises the
//! lane loops for whatever the build target has (SSE2 on x86-64, NEON on aarch64).

use super::{Step, MR_MAX, TILE};

/// Query lanes per packed chunk.
pub const W: usize = 16;
/// Document rows per tile.
pub const MR: usize = 4;
const _: () = assert!(MR <= MR_MAX && MR * W <= TILE);

/// fp32 tile; `nr` (lanes / 8) only bounds the work, all 16 lanes are computed.
///
/// # Safety
/// See [`super::tile`].
pub unsafe fn tile_f32(q: *const f32, dim: usize, rows: &[*const f32; MR_MAX], _nr: usize, step: &mut Step) {
    let mut acc = [[0f32; W]; MR];
    for k in 0..dim {
        // SAFETY: the packed chunk holds dim * W floats; each row holds dim floats.
        let qk = unsafe { &*q.add(k * W).cast::<[f32; W]>() };
        for (r, row) in acc.iter_mut().enumerate() {
            // SAFETY: as above.
            let b = unsafe { *rows[r].add(k) };
            for (a, &x) in row.iter_mut().zip(qk) {
                *a += b * x;
            }
        }
    }
    if let Some(t) = step.tile.as_deref_mut() {
        for (r, row) in acc.iter().enumerate() {
            t[r * W..r * W + W].copy_from_slice(row);
        }
    }
    for (r, row) in acc.iter().enumerate().take(step.mr) {
        let take_all = r == 0 && step.first;
        let j = step.jloc[r];
        match step.qarg.as_deref_mut() {
            None => {
                for (m, &s) in step.qmax.iter_mut().zip(row) {
                    if take_all || s > *m {
                        *m = s;
                    }
                }
            }
            Some(qa) => {
                for ((m, a), &s) in step.qmax.iter_mut().zip(qa.iter_mut()).zip(row) {
                    if take_all || s > *m {
                        *m = s;
                        *a = j;
                    }
                }
            }
        }
    }
}

/// See [`super::row_argmax`]; `w` is the tile's row stride.
pub fn row_argmax(tile: &[f32; TILE], w: usize, mr: usize, lanes: usize, out: &mut [usize; MR_MAX]) {
    for (r, o) in out.iter_mut().enumerate().take(mr) {
        let s = &tile[r * w..r * w + lanes];
        let best = s
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, |m, x| if x > m { x } else { m });
        *o = s.iter().position(|&x| x == best).unwrap_or(0);
    }
}
