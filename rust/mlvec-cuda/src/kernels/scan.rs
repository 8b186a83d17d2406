//! Quantized-code scans and k-selection: PQ look-up-table distances, binary Hamming distances
//! and the chunked k-smallest selection that turns either into top-k lists.

use super::{ceil_div, need, non_negative, positive_i32, u32_of, Place, MAX_GRID_Y, MAX_K, SELECT_CHUNK};
use crate::driver::{launch, Arg, Grid};
use crate::error::{Error, Result};

const SCAN_THREADS: u32 = 256;
const SELECT_THREADS: u32 = 256;

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

/// A scan writing fp32 `dist [nq, n]`: one thread per code, one grid row per query. `head` are
/// the kernel parameters before the query-indexed ones, `query(q0)` the query input of the chunk
/// starting at query `q0`.
#[allow(clippy::too_many_arguments)]
fn scan(
    at: Place,
    kernel: &'static str,
    n: i64,
    nq: i64,
    head: &[Arg],
    query: impl Fn(i64) -> u64,
    dist: u64,
) -> Result<()> {
    let gx = u32_of("n", ceil_div(n, SCAN_THREADS as i64))?;
    by_query_chunks(nq, |q0, qn| {
        let mut args = head.to_vec();
        args.extend([
            Arg::Ptr(query(q0)),
            Arg::I64(qn),
            Arg::Ptr(dist + (q0 * n * 4) as u64),
        ]);
        launch(
            at.device,
            at.stream,
            kernel,
            Grid {
                grid: (gx, qn as u32, 1),
                block: SCAN_THREADS,
                shared: 0,
            },
            &args,
        )
    })
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
    let m32 = positive_i32("m", m)?;
    if n == 0 || nq == 0 {
        return Ok(());
    }
    need("codes", codes)?;
    need("lut", lut)?;
    need("dist", dist)?;
    let head = [Arg::Ptr(codes), Arg::I64(n), Arg::I32(m32), Arg::I32(ksub as i32)];
    scan(
        at,
        "pq_scan",
        n,
        nq,
        &head,
        |q0| lut + (q0 * m * ksub * 4) as u64,
        dist,
    )
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
    let words32 = positive_i32("words", words)?;
    if n == 0 || nq == 0 {
        return Ok(());
    }
    need("codes", codes)?;
    need("queries", queries)?;
    need("dist", dist)?;
    let head = [Arg::Ptr(codes), Arg::I64(n), Arg::I32(words32)];
    scan(
        at,
        "hamming_scan",
        n,
        nq,
        &head,
        |q0| queries + (q0 * words * 8) as u64,
        dist,
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_errors_come_before_any_driver_call() {
        let at = Place { device: 0, stream: 0 };
        let e = select_k(at, 1, 0, 1, 10, 0, 1, 1);
        assert!(matches!(e, Err(Error::Invalid { arg: "k", .. })));
        let e = pq_scan(at, 1, 10, 4, 300, 1, 1, 1);
        assert!(matches!(e, Err(Error::Invalid { arg: "ksub", .. })));
        let e = hamming_scan(at, 1, 10, 0, 1, 1, 1);
        assert!(matches!(e, Err(Error::Invalid { arg: "words", .. })));
    }

    #[test]
    fn select_chunk_count() {
        assert_eq!(select_chunks(0), 1);
        assert_eq!(select_chunks(SELECT_CHUNK), 1);
        assert_eq!(select_chunks(SELECT_CHUNK + 1), 2);
    }

    #[test]
    fn query_chunks_cover_every_row_once() {
        let mut seen = Vec::new();
        by_query_chunks(2 * MAX_GRID_Y + 3, |q0, qn| {
            seen.push((q0, qn));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            seen,
            [(0, MAX_GRID_Y), (MAX_GRID_Y, MAX_GRID_Y), (2 * MAX_GRID_Y, 3)]
        );
    }
}
