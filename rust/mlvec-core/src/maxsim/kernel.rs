//! The fast forward pass: packed queries, streamed documents, SIMD tiles, rayon over blocks of
//! (query, document) pairs.
//!
//! Each query set's valid tokens are packed once, transposed into chunks of `W` lanes
//! (`[dim][W]` fp32, or `[dim/2][W][2]` bf16 bits for the `vdpbf16ps` kernel) that stay in L1.
//! Each document's valid rows are streamed once per block of queries, `MR` rows at a time; a
//! tile's scores fold straight into the per-query-token running max, so the `[Lq, Ld]` score
//! matrix is never stored. The document→query direction keeps one running max per document row.
//!
//! A bfloat16 document met by a single query (rerank, one query against many documents,
//! paired scoring), when only the query→document direction is wanted, first goes through
//! [`prefilter`]: integer bounds find the few pairs that can hold each query token's maximum,
//! and only those are scored in fp32.

use super::{nonfinite_error, prefilter, Forward, Outputs, Pairing};
use crate::simd::{self, finite, Isa, Step, TileRows, MR_MAX, TILE};
use crate::threads;
use crate::tokens::{Element, TokenSets};
use crate::Result;
use half::{bf16, f16};
use rayon::prelude::*;
use std::any::TypeId;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    F32,
    F16,
    Bf16,
}

fn kind<T: Element>() -> Kind {
    let t = TypeId::of::<T>();
    if t == TypeId::of::<f32>() {
        Kind::F32
    } else if t == TypeId::of::<f16>() {
        Kind::F16
    } else if t == TypeId::of::<bf16>() {
        Kind::Bf16
    } else {
        unreachable!("Element is implemented for f32, f16 and bf16 only")
    }
}

/// `xs` as the raw type `U` it is made of.
///
/// # Safety
/// `T` and `U` must have the same size and every bit pattern of `T` must be a valid `U`.
unsafe fn reinterpret<T, U>(xs: &[T]) -> &[U] {
    debug_assert_eq!(std::mem::size_of::<T>(), std::mem::size_of::<U>());
    // SAFETY: same length in elements of equal size; validity is the caller's contract.
    unsafe { std::slice::from_raw_parts(xs.as_ptr().cast::<U>(), xs.len()) }
}

/// Convert rows of `T` to fp32 (`dst.len() == src.len()`).
fn to_f32<T: Element>(isa: Isa, src: &[T], dst: &mut [f32]) {
    match kind::<T>() {
        // SAFETY: T is f32 (checked by TypeId).
        Kind::F32 => dst.copy_from_slice(unsafe { reinterpret::<T, f32>(src) }),
        // SAFETY: T is f16, a transparent wrapper of its u16 bits.
        Kind::F16 => simd::widen(isa, simd::Half::F16, unsafe { reinterpret::<T, u16>(src) }, dst),
        // SAFETY: T is bf16, a transparent wrapper of its u16 bits.
        Kind::Bf16 => simd::widen(isa, simd::Half::Bf16, unsafe { reinterpret::<T, u16>(src) }, dst),
    }
}

/// The first of `rows` (packed row indices of `sets`, in increasing order) holding NaN or ±inf.
fn first_nonfinite<T: Element>(
    isa: Isa,
    sets: &TokenSets<T>,
    rows: &mut dyn Iterator<Item = usize>,
) -> Option<usize> {
    let (data, dim) = (sets.data(), sets.dim());
    match kind::<T>() {
        // SAFETY: T is f32 (checked by TypeId); every f32 bit pattern is a valid u32.
        Kind::F32 => finite::first_nonfinite(
            isa,
            unsafe { reinterpret::<T, u32>(data) },
            dim,
            finite::F32,
            rows,
        ),
        // SAFETY: T is f16, a transparent wrapper of its u16 bits.
        Kind::F16 => finite::first_nonfinite(
            isa,
            unsafe { reinterpret::<T, u16>(data) },
            dim,
            finite::F16,
            rows,
        ),
        // SAFETY: T is bf16, a transparent wrapper of its u16 bits.
        Kind::Bf16 => finite::first_nonfinite(
            isa,
            unsafe { reinterpret::<T, u16>(data) },
            dim,
            finite::BF16,
            rows,
        ),
    }
}

/// Every valid row of set `i`, as packed row indices.
fn valid_rows<'s, T: Element>(sets: &'s TokenSets<T>, i: usize) -> impl Iterator<Item = usize> + 's {
    let (s, n) = sets.span(i);
    (s..s + n).filter(move |&r| sets.valid(r))
}

/// Scan every valid row of every set (used when no pair reads them); the first bad row, if any.
fn scan_all<T: Element>(isa: Isa, sets: &TokenSets<T>) -> Option<usize> {
    (0..sets.len())
        .into_par_iter()
        .filter_map(|i| first_nonfinite(isa, sets, &mut valid_rows(sets, i)))
        .min()
}

/// Fewest valid rows a document needs for the pre-filter to pay for its integer pass.
const MIN_FILTERED: usize = 16;

/// One query set, packed for the kernel.
struct PackedQuery {
    /// Position within the set of each valid token, in order (the packed lanes).
    lanes: Vec<u32>,
    /// fp32 chunks `[chunks][dim][W]`, zero-padded lanes.
    f32s: Vec<f32>,
    /// bf16 chunks `[chunks][dim/2][W][2]` for the paired-dot-product kernel.
    bf16s: Vec<u16>,
    /// The tokens quantized for [`prefilter`], when bfloat16 documents are filtered.
    ints: Option<prefilter::QueryInts>,
}

fn pack_query<T: Element>(
    isa: Isa,
    q: &TokenSets<T>,
    qi: usize,
    bf16_dot: bool,
    filter: bool,
) -> PackedQuery {
    let (w, dim) = (isa.lanes(), q.dim());
    let (qs, ql) = q.span(qi);
    let lanes: Vec<u32> = (0..ql).filter(|&i| q.valid(qs + i)).map(|i| i as u32).collect();
    let chunks = lanes.len().div_ceil(w);
    let mut out = PackedQuery {
        lanes,
        f32s: Vec::new(),
        bf16s: Vec::new(),
        ints: None,
    };
    if bf16_dot {
        out.bf16s = vec![0u16; chunks * dim * w];
        for (c, &i) in out.lanes.iter().enumerate() {
            let (chunk, l) = (c / w, c % w);
            // SAFETY: bf16_dot is only chosen for bf16 elements.
            let row = unsafe { reinterpret::<T, u16>(q.row(qs + i as usize)) };
            let base = &mut out.bf16s[chunk * dim * w..][..dim * w];
            for (k2, pair) in row.chunks_exact(2).enumerate() {
                base[k2 * 2 * w + 2 * l] = pair[0];
                base[k2 * 2 * w + 2 * l + 1] = pair[1];
            }
        }
    } else {
        out.f32s = vec![0f32; chunks * dim * w];
        let mut rows32 = vec![0f32; out.lanes.len() * dim];
        for (c, &i) in out.lanes.iter().enumerate() {
            let (chunk, l) = (c / w, c % w);
            let row32 = &mut rows32[c * dim..(c + 1) * dim];
            to_f32(isa, q.row(qs + i as usize), row32);
            let base = &mut out.f32s[chunk * dim * w..][..dim * w];
            for (k, &x) in row32.iter().enumerate() {
                base[k * w + l] = x;
            }
        }
        if filter {
            out.ints = prefilter::pack_query(&rows32, out.lanes.len(), dim);
        }
    }
    out
}

/// One document's valid rows, ready for the kernel.
struct PreparedDoc {
    /// Position within the set of each valid row.
    valid: Vec<i32>,
    /// Set length (valid or not).
    len: usize,
    /// Valid rows converted to fp32 when the input is not fp32 (`[valid][dim]`).
    conv: Vec<f32>,
}

/// Where a document's valid row `t` lies, in the element type the kernel reads.
enum DocRows<'a> {
    /// fp32 input rows, read in place (`first row of the set`).
    InPlace32(&'a [f32], usize),
    /// Converted fp32 rows (`[valid][dim]`).
    Converted(&'a [f32]),
    /// bf16 bits read in place for the paired-dot-product kernel.
    InPlace16(&'a [u16], usize),
    /// f16/bf16 bits widened `MR` rows at a time into an L1-sized buffer, just before their
    /// tile: used when a document meets a single query, so the widened copy never leaves L1.
    Widen(&'a [u16], usize, simd::Half),
}

/// Scratch reused across the pairs of one work unit.
struct Scratch {
    qmax: Vec<f32>,
    qarg: Vec<i32>,
    dmax: Vec<f32>,
    darg: Vec<i32>,
    tile: Box<[f32; TILE]>,
    /// `MR_MAX` widened document rows for [`DocRows::Widen`].
    rows: Vec<f32>,
    filter: prefilter::Scratch,
}

/// Results of one pair, written into the caller's output rows.
struct PairOut<'a> {
    q2d: &'a mut f32,
    q_arg: Option<&'a mut [i32]>,
    d2q: Option<&'a mut f32>,
    d_arg: Option<&'a mut [i32]>,
}

#[allow(clippy::too_many_arguments)]
fn score_pair(
    isa: Isa,
    dim: usize,
    pq: &PackedQuery,
    doc: &PreparedDoc,
    rows: &DocRows,
    want: Outputs,
    sc: &mut Scratch,
    out: PairOut,
) -> bool {
    let w = isa.lanes();
    let mr_isa = isa.rows();
    let nl = pq.lanes.len();
    let nv = doc.valid.len();
    let chunks = nl.div_ceil(w);
    let want_d = want.d2q || want.d2q_argmax;
    sc.qmax.clear();
    sc.qmax.resize(chunks * w, f32::NEG_INFINITY);
    sc.qarg.clear();
    if want.q2d_argmax {
        sc.qarg.resize(chunks * w, -1);
    }
    if want_d {
        sc.dmax.clear();
        sc.dmax.resize(doc.len, f32::NEG_INFINITY);
        sc.darg.clear();
        sc.darg.resize(doc.len, -1);
    }
    let chunk_elems = dim * w;
    // A bfloat16 document met by one query: integer bounds pick the few pairs that can hold
    // each query token's maximum (the document→query direction needs every pair).
    let filtered = match (rows, &pq.ints) {
        (DocRows::Widen(bits, s, simd::Half::Bf16), Some(qi)) if !want_d && nl > 0 && nv >= MIN_FILTERED => {
            prefilter::score(
                qi,
                nl,
                bits,
                *s,
                &doc.valid,
                &mut sc.filter,
                &mut sc.qmax,
                want.q2d_argmax.then_some(&mut sc.qarg[..]),
            )
        }
        _ => false,
    };
    let list: &[i32] = if filtered { &[] } else { &doc.valid };
    if nl > 0 {
        for tb in (0..list.len()).step_by(mr_isa) {
            let mr = mr_isa.min(list.len() - tb);
            let mut jloc = [0i32; MR_MAX];
            for (r, j) in jloc.iter_mut().enumerate().take(mr_isa) {
                *j = list[tb + r.min(mr - 1)];
            }
            // Rows past `mr` repeat the last real row: computed, then ignored.
            let ptr32 = |base: &[f32], first: usize| -> [*const f32; MR_MAX] {
                std::array::from_fn(|r| base[(first + r.min(mr - 1)) * dim..].as_ptr())
            };
            let (p32, p16): ([*const f32; MR_MAX], [*const u16; MR_MAX]) = match rows {
                DocRows::InPlace32(base, s) => {
                    let p =
                        std::array::from_fn(|r| base[(s + jloc[r.min(mr - 1)] as usize) * dim..].as_ptr());
                    (p, [std::ptr::null(); MR_MAX])
                }
                DocRows::Converted(buf) => (ptr32(buf, tb), [std::ptr::null(); MR_MAX]),
                DocRows::InPlace16(base, s) => {
                    let p =
                        std::array::from_fn(|r| base[(s + jloc[r.min(mr - 1)] as usize) * dim..].as_ptr());
                    ([std::ptr::null(); MR_MAX], p)
                }
                DocRows::Widen(bits, s, half) => {
                    sc.rows.resize(MR_MAX * dim, 0.0);
                    let (j0, jl) = (jloc[0] as usize, jloc[mr - 1] as usize);
                    if jl - j0 == mr - 1 {
                        // Consecutive rows (the common case): one call widens them all.
                        let src = &bits[(s + j0) * dim..][..mr * dim];
                        simd::widen(isa, *half, src, &mut sc.rows[..mr * dim]);
                    } else {
                        for (r, &j) in jloc.iter().enumerate().take(mr) {
                            let src = &bits[(s + j as usize) * dim..][..dim];
                            simd::widen(isa, *half, src, &mut sc.rows[r * dim..(r + 1) * dim]);
                        }
                    }
                    (ptr32(&sc.rows, 0), [std::ptr::null(); MR_MAX])
                }
            };
            // The next tile's rows, asked for while this tile computes: streaming documents
            // from memory, the hardware prefetchers alone left the kernel waiting on misses at
            // each tile's start. The next tile is taken in memory order (the packed rows are in
            // set order), so at a document's end it is the next document's first rows. Each
            // tile asks for the lines from its region's first line boundary on: with rows not
            // aligned to lines, the line it starts in is the previous region's last.
            let ahead = |base: *const u8, s: usize, bytes: usize| {
                let p = base.wrapping_add((s + jloc[0] as usize + mr_isa) * dim * bytes);
                simd::Ahead {
                    ptr: p.wrapping_add((64 - p as usize % 64) % 64),
                    lines: (mr_isa * dim * bytes).div_ceil(64),
                }
            };
            let ahead = match rows {
                DocRows::InPlace32(base, s) => ahead(base.as_ptr().cast(), *s, 4),
                DocRows::InPlace16(base, s) | DocRows::Widen(base, s, _) => {
                    ahead(base.as_ptr().cast(), *s, 2)
                }
                DocRows::Converted(_) => simd::Ahead::NONE,
            };
            for c in 0..chunks {
                let lanes_c = w.min(nl - c * w);
                let nr = if lanes_c <= w / 2 { 1 } else { 2 };
                let mut step = Step {
                    mr,
                    jloc,
                    first: tb == 0,
                    qmax: &mut sc.qmax[c * w..c * w + w],
                    qarg: if want.q2d_argmax {
                        Some(&mut sc.qarg[c * w..c * w + w])
                    } else {
                        None
                    },
                    tile: if want_d { Some(&mut *sc.tile) } else { None },
                    // Asked for once per tile, by its first chunk.
                    ahead: if c == 0 { ahead } else { simd::Ahead::NONE },
                };
                let (qptr, trows) = match rows {
                    DocRows::InPlace16(..) => (
                        pq.bf16s[c * chunk_elems..].as_ptr().cast::<u8>(),
                        TileRows::Bf16(&p16),
                    ),
                    _ => (
                        pq.f32s[c * chunk_elems..].as_ptr().cast::<u8>(),
                        TileRows::F32(&p32),
                    ),
                };
                // SAFETY: `isa` was checked against the CPU by the caller; the packed chunk
                // holds `dim * w` elements from `qptr`; every row pointer starts a full row of
                // `dim` elements inside its buffer; qmax/qarg slices hold `w` entries.
                unsafe { simd::tile(isa, qptr, dim, trows, nr, &mut step) };
                if want_d {
                    // First lane holding each row's max (the reference's first-on-ties), then
                    // the running max over chunks: strictly greater, or the first chunk.
                    let mut best = [0usize; MR_MAX];
                    simd::row_argmax(isa, &sc.tile, mr, lanes_c, &mut best);
                    for (r, (&jr, &l)) in jloc.iter().zip(&best).enumerate().take(mr) {
                        let j = jr as usize;
                        // The reference takes a row's first lane unconditionally; a NaN taken
                        // there is never beaten (nothing compares greater than NaN).
                        let l = if sc.darg[j] < 0 && sc.tile[r * w].is_nan() {
                            0
                        } else {
                            l
                        };
                        let s = sc.tile[r * w + l];
                        if s > sc.dmax[j] || sc.darg[j] < 0 {
                            sc.dmax[j] = s;
                            sc.darg[j] = (c * w + l) as i32;
                        }
                    }
                }
            }
        }
    }
    // Sums in position order, like the reference; −∞ maxima stay −∞ in the sums.
    *out.q2d = sc.qmax[..nl].iter().fold(0f32, |a, &m| a + m);
    if let Some(qa) = out.q_arg {
        qa.fill(-1);
        for (c, &i) in pq.lanes.iter().enumerate() {
            qa[i as usize] = sc.qarg[c];
        }
    }
    if let Some(d2q) = out.d2q {
        *d2q = doc.valid.iter().fold(0f32, |a, &j| a + sc.dmax[j as usize]);
    }
    if let Some(da) = out.d_arg {
        da.fill(-1);
        for &j in &doc.valid {
            let a = sc.darg[j as usize];
            da[j as usize] = if a < 0 { -1 } else { pq.lanes[a as usize] as i32 };
        }
    }
    filtered
}

/// A raw output pointer shared by the work units; each unit writes only its own pairs' entries.
#[derive(Clone, Copy)]
struct Shared<T>(*mut T);
// SAFETY: units write disjoint elements (one pair each), and the buffers outlive the parallel
// section that writes them.
unsafe impl<T> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// # Safety
    /// `[i, i + n)` must be in bounds and written by one unit only.
    unsafe fn slice<'a>(self, i: usize, n: usize) -> &'a mut [T] {
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(i), n) }
    }
}

pub(super) fn forward<T: Element>(
    isa: Isa,
    q: &TokenSets<T>,
    d: &TokenSets<T>,
    pairing: Pairing,
    p_total: usize,
    want: Outputs,
    filter: bool,
) -> Result<Forward> {
    let dim = q.dim();
    let (lq_max, ld_max) = (q.max_len(), d.max_len());
    let bf16_dot = kind::<T>() == Kind::Bf16 && isa.bf16_dot(dim);
    // The integer pre-filter runs beside the AVX-512 fp32 kernel on widened bfloat16 rows.
    let filter = filter
        && kind::<T>() == Kind::Bf16
        && !bf16_dot
        && matches!(isa, Isa::Avx512 { .. })
        && prefilter::available();
    let (nq, nd) = (q.len(), d.len());

    let mut out = Forward {
        q2d: vec![0f32; p_total],
        q2d_argmax: want.q2d_argmax.then(|| vec![-1i32; p_total * lq_max]),
        d2q: want.d2q.then(|| vec![0f32; p_total]),
        d2q_argmax: want.d2q_argmax.then(|| vec![-1i32; p_total * ld_max]),
        lq_max,
        ld_max,
    };
    if p_total == 0 {
        // No pair reads any row: scan them here so the check does not depend on the other side.
        if want.check_finite {
            let bad = threads::install(|| (scan_all(isa, q), scan_all(isa, d)));
            match bad {
                (Some(r), _) => return Err(nonfinite_error("queries", q, r)),
                (None, Some(r)) => return Err(nonfinite_error("documents", d, r)),
                (None, None) => {}
            }
        }
        return Ok(out);
    }
    // First bad packed row of each side (usize::MAX: none), kept as a minimum across threads.
    let bad_q = AtomicUsize::new(usize::MAX);
    let bad_d = AtomicUsize::new(usize::MAX);
    let o_q2d = Shared(out.q2d.as_mut_ptr());
    let o_qarg = out.q2d_argmax.as_mut().map(|v| Shared(v.as_mut_ptr()));
    let o_d2q = out.d2q.as_mut().map(|v| Shared(v.as_mut_ptr()));
    let o_darg = out.d2q_argmax.as_mut().map(|v| Shared(v.as_mut_ptr()));

    threads::install(|| {
        let nthreads = rayon::current_num_threads().max(1);
        let packed: Vec<PackedQuery> = (0..nq)
            .into_par_iter()
            .map(|qi| {
                // Scanned just before packing, which reads the same rows again from L1.
                if want.check_finite {
                    if let Some(r) = first_nonfinite(isa, q, &mut valid_rows(q, qi)) {
                        bad_q.fetch_min(r, Ordering::Relaxed);
                    }
                }
                pack_query(isa, q, qi, bf16_dot, filter)
            })
            .collect();
        // Work units: rectangles of (query block x document block) for all-pairs, so a document
        // read from memory serves a block of queries while it sits in L2; runs of pairs for paired.
        let target = 8 * nthreads;
        let units: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)> = match pairing {
            Pairing::AllPairs => {
                let qb = nq.clamp(1, 32);
                let nqb = nq.div_ceil(qb);
                let db = (nd * nqb / target).clamp(1, 16);
                (0..nqb)
                    .flat_map(|a| {
                        (0..nd.div_ceil(db))
                            .map(move |b| (a * qb..(a * qb + qb).min(nq), b * db..(b * db + db).min(nd)))
                    })
                    .collect()
            }
            Pairing::Paired => {
                let pb = (p_total / target).clamp(1, 64);
                (0..p_total.div_ceil(pb))
                    .map(|b| {
                        let r = b * pb..(b * pb + pb).min(p_total);
                        (r.clone(), r)
                    })
                    .collect()
            }
        };
        // Scratch (incl. the widened copy of a document, ~150 KB) is reused across the units a
        // worker runs: allocating it per unit costs page faults and zeroing on every unit.
        let init = || {
            let sc = Scratch {
                qmax: Vec::new(),
                qarg: Vec::new(),
                dmax: Vec::new(),
                darg: Vec::new(),
                tile: Box::new([0f32; TILE]),
                rows: Vec::new(),
                filter: prefilter::Scratch::default(),
            };
            let doc = PreparedDoc {
                valid: Vec::new(),
                len: 0,
                conv: Vec::new(),
            };
            (sc, doc)
        };
        units.into_par_iter().for_each_init(init, |(sc, doc), (qr, dr)| {
            for di in dr.clone() {
                let (ds, dl) = d.span(di);
                doc.valid.clear();
                doc.valid
                    .extend((0..dl).filter(|&j| d.valid(ds + j)).map(|j| j as i32));
                doc.len = dl;
                // A document that meets one query here is widened tile by tile (in L1); one that
                // meets a block of queries is widened once, whole.
                let single = pairing == Pairing::Paired || qr.len() == 1;
                // Each document is scanned once (by the unit holding the first block of queries
                // for all-pairs), just before the kernel reads it: the scan brings it into
                // cache and the kernel then reads it from there, so memory traffic is unchanged.
                // One the bfloat16 pre-filter may take is left to it (it stops at any inf/NaN)
                // and scanned only if the filter did not take it.
                let scan = want.check_finite && (pairing == Pairing::Paired || qr.start == 0);
                let scan_doc = |doc: &PreparedDoc| {
                    let rows = &mut doc.valid.iter().map(|&j| ds + j as usize);
                    if let Some(r) = first_nonfinite(isa, d, rows) {
                        bad_d.fetch_min(r, Ordering::Relaxed);
                    }
                };
                let defer = scan && single && filter;
                if scan && !defer {
                    scan_doc(doc);
                }
                let convert = kind::<T>() != Kind::F32 && !bf16_dot && !single;
                if convert {
                    doc.conv.resize(doc.valid.len() * dim, 0.0);
                    for (t, &j) in doc.valid.iter().enumerate() {
                        to_f32(isa, d.row(ds + j as usize), &mut doc.conv[t * dim..(t + 1) * dim]);
                    }
                }
                let rows = match kind::<T>() {
                    // SAFETY: T is f32 (checked by TypeId).
                    Kind::F32 => DocRows::InPlace32(unsafe { reinterpret::<T, f32>(d.data()) }, ds),
                    // SAFETY: T is bf16, a transparent wrapper of its u16 bits.
                    Kind::Bf16 if bf16_dot => {
                        DocRows::InPlace16(unsafe { reinterpret::<T, u16>(d.data()) }, ds)
                    }
                    // SAFETY: T is f16 or bf16, transparent wrappers of their u16 bits.
                    Kind::F16 if single => {
                        DocRows::Widen(unsafe { reinterpret::<T, u16>(d.data()) }, ds, simd::Half::F16)
                    }
                    // SAFETY: as above.
                    Kind::Bf16 if single => {
                        DocRows::Widen(unsafe { reinterpret::<T, u16>(d.data()) }, ds, simd::Half::Bf16)
                    }
                    _ => DocRows::Converted(&doc.conv),
                };
                let qis = match pairing {
                    Pairing::AllPairs => qr.clone(),
                    Pairing::Paired => di..di + 1,
                };
                for qi in qis {
                    let p = match pairing {
                        Pairing::AllPairs => qi * nd + di,
                        Pairing::Paired => di,
                    };
                    // SAFETY: pair `p` belongs to this unit only; every index is below the
                    // buffer lengths (p < p_total, rows of lq_max / ld_max per pair).
                    let po = unsafe {
                        PairOut {
                            q2d: &mut o_q2d.slice(p, 1)[0],
                            q_arg: o_qarg.map(|s| s.slice(p * lq_max, lq_max)),
                            d2q: o_d2q.map(|s| &mut s.slice(p, 1)[0]),
                            d_arg: o_darg.map(|s| s.slice(p * ld_max, ld_max)),
                        }
                    };
                    let filtered = score_pair(isa, dim, &packed[qi], doc, &rows, want, sc, po);
                    if defer && !filtered {
                        scan_doc(doc);
                    }
                }
            }
        });
    });
    match (bad_q.into_inner(), bad_d.into_inner()) {
        (r, _) if r != usize::MAX => Err(nonfinite_error("queries", q, r)),
        (_, r) if r != usize::MAX => Err(nonfinite_error("documents", d, r)),
        _ => Ok(out),
    }
}
