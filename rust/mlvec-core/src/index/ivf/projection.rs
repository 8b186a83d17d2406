//! Exact coarse selection through a low-rank bound, for centroids that span few directions.
//!
//! A single query scores every IVF centroid, and at 2,048 × 128 float32 that scan reads 1 MiB at
//! the L2 cache's speed: most of a single-query search. When the centroids lie close to an
//! `r`-dimensional subspace (embeddings of low intrinsic dimension), their inner products with a
//! query are nearly those of the projections: with `B` the `[r, d]` basis (top principal
//! directions of the centroids), `p = B·x` and `ρ(x) = ‖x − Bᵀp‖`,
//!
//! `|<q, c> − <p_q, p_c>| ≤ ρ(q)·ρ(c) + κ‖q‖‖c‖`
//!
//! (Cauchy–Schwarz on the residuals; `κ` covers the basis' departure from orthonormality and
//! every float32 rounding, of this estimate and of the exact dot product it stands for). Only the
//! centroids whose upper bound reaches the `nprobe`-th best lower bound are scored exactly, so the
//! lists chosen are those of the full scan, from `r/d` of its bytes.
//!
//! The projection is built only when the centroids leave under [`MAX_RESIDUAL`] of their energy
//! outside the subspace (it is a property of the data: true of the low-rank synthetic benchmark,
//! not of e5 sentence embeddings); a query whose bounds still leave too many candidates falls
//! back to the full scan.

use super::coarse::Centroids;
use crate::index::codec::flat::ip_matrix;
use crate::index::metric::Metric;
use crate::index::topk::TopK;
use crate::simd::rowdot::{dot_as_rows, dots_f32};

/// Subspace sizes tried, smallest first.
const RANKS: [usize; 3] = [16, 32, 64];
/// Largest share of the centroids' squared norm left outside the subspace.
const MAX_RESIDUAL: f64 = 1e-3;
/// Centroids the principal directions are estimated from.
const SAMPLE: usize = 4096;
/// Power iterations of the subspace estimate.
const ITERATIONS: usize = 12;
/// A query falls back to the full scan when more than `1 / FALLBACK` of the lists are candidates.
const FALLBACK: usize = 4;
/// Centroids per panel block (one AVX-512 vector of float32 lanes).
const LANES: usize = 16;

/// `nγ`: the float32 rounding bound of a length-`n` sum of products (with a little slack).
fn gamma(n: usize) -> f64 {
    1.01 * n as f64 * 2f64.powi(-24)
}

/// The low-rank view of a set of centroids.
#[derive(Clone, Debug, Default)]
pub struct Projection {
    r: usize,
    d: usize,
    /// `[r, d]`, rows nearly orthonormal.
    basis: Vec<f32>,
    /// `[d, r]`: the basis transposed, to rebuild `Bᵀp` a row at a time.
    basis_t: Vec<f32>,
    /// `B·c` per centroid, transposed in blocks of [`LANES`] centroids (`[block][r][LANES]`,
    /// zero-padded): one query scores a block with `r` broadcast multiply-adds.
    panel: Vec<f32>,
    /// `ρ(c)` per centroid (rounded up).
    rest: Vec<f32>,
    /// `‖c‖` per centroid.
    norm: Vec<f32>,
    /// The relative slack `κ`.
    kappa: f64,
}

impl Projection {
    /// The projection of `centroids` (`[nl, d]`, finite), or `None` when they are not close
    /// enough to any subspace of the sizes tried, or too few to be worth it.
    pub fn new(centroids: &[f32], d: usize) -> Option<Self> {
        let nl = centroids.len().checked_div(d).unwrap_or(0);
        if nl < 256 || d < 2 * RANKS[0] {
            return None;
        }
        let rmax = RANKS.iter().copied().filter(|&r| 2 * r <= d).max()?;
        let basis = principal_directions(centroids, d, rmax);
        // Energy left outside the top-r directions, for each r tried.
        let mut proj = vec![0f32; nl * rmax];
        ip_matrix(centroids, &basis, d, &mut proj);
        let total: f64 = centroids.iter().map(|&v| v as f64 * v as f64).sum();
        if total <= 0.0 {
            return None;
        }
        let r = RANKS.iter().copied().filter(|&r| r <= rmax).find(|&r| {
            let kept: f64 = proj
                .chunks_exact(rmax)
                .map(|p| p[..r].iter().map(|&v| v as f64 * v as f64).sum::<f64>())
                .sum();
            1.0 - kept / total <= MAX_RESIDUAL
        })?;
        let basis = basis[..r * d].to_vec();
        let proj: Vec<f32> = proj.chunks_exact(rmax).flat_map(|p| p[..r].to_vec()).collect();
        // Residuals against the reconstruction as stored (f32 GEMM, so each element may be off by
        // γ_r‖p‖, which the last term adds back in norm).
        let mut recon = vec![0f32; nl * d];
        let mut basis_t = vec![0f32; d * r];
        for i in 0..r {
            for j in 0..d {
                basis_t[j * r + i] = basis[i * d + j];
            }
        }
        ip_matrix(&proj, &basis_t, r, &mut recon);
        let mut rest = Vec::with_capacity(nl);
        let mut norm = Vec::with_capacity(nl);
        for ((c, x), p) in centroids
            .chunks_exact(d)
            .zip(recon.chunks_exact(d))
            .zip(proj.chunks_exact(r))
        {
            let res: f64 = c
                .iter()
                .zip(x)
                .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
                .sum();
            let pn: f64 = p.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
            rest.push((res.sqrt() * 1.001 + gamma(r) * (d as f64).sqrt() * pn) as f32);
            norm.push(c.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt() as f32);
        }
        // ‖BBᵀ − I‖_F of the stored basis, in f64.
        let mut e2 = 0f64;
        for i in 0..r {
            for j in 0..r {
                let g: f64 = (0..d)
                    .map(|t| basis[i * d + t] as f64 * basis[j * d + t] as f64)
                    .sum();
                e2 += (g - if i == j { 1.0 } else { 0.0 }).powi(2);
            }
        }
        let e = e2.sqrt();
        let (sr, sd) = ((r as f64).sqrt(), (d as f64).sqrt());
        // Cross terms of the non-orthonormal basis, both projections' rounding (f32 GEMM and
        // f32 dot products), the estimate's own sum, the exact dot product's, and ρ(q)'s.
        let kappa = 1.1 * (3.0 * e * (1.0 + e).powi(2) + gamma(d) * (2.0 * sr + 2.0) + gamma(r) * (1.0 + sd));
        let mut panel = vec![0f32; nl.div_ceil(LANES) * r * LANES];
        for (l, p) in proj.chunks_exact(r).enumerate() {
            let (b, lane) = (l / LANES, l % LANES);
            for (i, &v) in p.iter().enumerate() {
                panel[(b * r + i) * LANES + lane] = v;
            }
        }
        Some(Projection {
            r,
            d,
            basis,
            basis_t,
            panel,
            rest,
            norm,
            kappa,
        })
    }

    /// The subspace size used.
    pub fn rank(&self) -> usize {
        self.r
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        4 * (self.basis.len() + self.basis_t.len() + self.panel.len() + self.rest.len() + self.norm.len())
    }

    /// `approx[l] ≈ <q, c_l>` (written to `approx`), and the two factors of its error bound:
    /// `|approx[l] − <q, c_l>| ≤ rq·ρ(c_l) + kq·‖c_l‖` for any float32 dot product `<q, c_l>`.
    fn approx(&self, q: &[f32], approx: &mut [f32]) -> (f32, f32) {
        let (r, d) = (self.r, self.d);
        assert!(
            q.len() == d && approx.len() == self.rest.len(),
            "Projection: shape mismatch"
        );
        let mut pq = [0f32; RANKS[RANKS.len() - 1]];
        let pq = &mut pq[..r];
        dots_f32(q, &self.basis, pq);
        // ρ(q) from the reconstruction Bᵀp_q (each element off by at most γ_r‖p_q‖).
        let mut recon = vec![0f32; d];
        dots_f32(pq, &self.basis_t, &mut recon);
        let rq: f64 = q
            .iter()
            .zip(&recon)
            .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
            .sum();
        let qn = q.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
        let rq = (rq.sqrt() * 1.001 + gamma(r) * (d as f64).sqrt() * qn) as f32;
        panel_dots(&self.panel, r, pq, approx);
        (rq * 1.0001, (self.kappa * qn) as f32 * 1.0001)
    }

    /// The `nprobe` best lists for `q` under `metric`, best first, exactly those a full scan
    /// picks; `cip[l]` then holds the exact inner product of each of them. `None` when the
    /// bounds leave too many candidates (the caller scans in full).
    pub fn probe(
        &self,
        c: &Centroids,
        q: &[f32],
        qn2: f32,
        nprobe: usize,
        cip: &mut [f32],
    ) -> Option<Vec<usize>> {
        let (d, nl, metric, cnorm) = (self.d, cip.len(), c.metric, c.norms);
        let (rq, kq) = self.approx(q, cip);
        // Scores go through `metric.from_ip`, as in the full scan's selection; it is monotone
        // in the inner product, rounding included.
        let cand = match metric {
            Metric::L2 => self.candidates(cip, rq, kq, nprobe, |ip, l| Metric::L2.from_ip(ip, qn2, cnorm[l])),
            Metric::Ip | Metric::Cosine => self.candidates(cip, rq, kq, nprobe, |ip, _| ip),
        };
        if cand.len() * FALLBACK > nl {
            return None;
        }
        let mut best = TopK::new(nprobe);
        for &l in &cand {
            let ip = dot_as_rows(q, &c.rows[l * d..(l + 1) * d]);
            cip[l] = ip;
            best.push(metric.from_ip(ip, qn2, cnorm[l]), l as u32);
        }
        Some(best.into_sorted().into_iter().map(|(_, l)| l as usize).collect())
    }

    /// Lists whose upper bound reaches the `nprobe`-th best lower bound, in one pass: the lower
    /// bounds feed a top-`nprobe` selection, and every list whose upper bound reaches the
    /// running threshold (never above the final one) is kept, then filtered by the final one.
    fn candidates(
        &self,
        approx: &[f32],
        rq: f32,
        kq: f32,
        nprobe: usize,
        key: impl Fn(f32, usize) -> f32,
    ) -> Vec<usize> {
        let mut t = TopK::new(nprobe.max(1));
        let mut thr = f32::NEG_INFINITY;
        let mut maybe: Vec<(f32, u32)> = Vec::with_capacity(4 * nprobe + 16);
        for (l, ((&a, &rc), &cn)) in approx.iter().zip(&self.rest).zip(&self.norm).enumerate() {
            let b = rq * rc + kq * cn + f32::MIN_POSITIVE;
            let hi = key(a + b, l);
            if hi >= thr {
                maybe.push((hi, l as u32));
                let lo = key(a - b, l);
                if lo >= thr {
                    t.push(lo, l as u32);
                    thr = t.threshold();
                }
            }
        }
        let tau = t.threshold();
        maybe
            .into_iter()
            .filter(|&(hi, _)| hi >= tau)
            .map(|(_, l)| l as usize)
            .collect()
    }
}

/// `out[l] = <pq, p_l>` for every centroid of the panel.
fn panel_dots(panel: &[f32], r: usize, pq: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if matches!(crate::simd::detect(), crate::simd::Isa::Avx512 { .. }) {
        // SAFETY: AVX-512F is present (checked at run time); the panel holds every block.
        unsafe { avx512::panel_dots(panel, r, pq, out) };
        return;
    }
    for (b, chunk) in out.chunks_mut(LANES).enumerate() {
        let mut acc = [0f32; LANES];
        for (i, &x) in pq.iter().enumerate() {
            for (a, &v) in acc
                .iter_mut()
                .zip(&panel[(b * r + i) * LANES..(b * r + i + 1) * LANES])
            {
                *a += x * v;
            }
        }
        chunk.copy_from_slice(&acc[..chunk.len()]);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::LANES;
    use core::arch::x86_64::*;

    /// `G` blocks at a time: independent accumulator chains hide the multiply-add latency.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn group<const G: usize>(panel: &[f32], r: usize, pq: &[f32], b0: usize, out: &mut [f32]) {
        let mut acc = [_mm512_setzero_ps(); G];
        let base = panel.as_ptr().add(b0 * r * LANES);
        for (i, &x) in pq.iter().enumerate() {
            let xv = _mm512_set1_ps(x);
            for (g, a) in acc.iter_mut().enumerate() {
                *a = _mm512_fmadd_ps(xv, _mm512_loadu_ps(base.add((g * r + i) * LANES)), *a);
            }
        }
        for (g, a) in acc.iter().enumerate() {
            let l0 = (b0 + g) * LANES;
            let m = (out.len() - l0).min(LANES);
            _mm512_mask_storeu_ps(out.as_mut_ptr().add(l0), ((1u32 << m) - 1) as __mmask16, *a);
        }
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn panel_dots(panel: &[f32], r: usize, pq: &[f32], out: &mut [f32]) {
        const G: usize = 4;
        let blocks = out.len().div_ceil(LANES);
        let mut b = 0;
        while b + G <= blocks {
            group::<G>(panel, r, pq, b, out);
            b += G;
        }
        while b < blocks {
            group::<1>(panel, r, pq, b, out);
            b += 1;
        }
    }
}

/// The top `r` principal directions (uncentred) of up to [`SAMPLE`] rows of `x` (`[n, d]`), as
/// `[r, d]` orthonormal rows, strongest first: subspace iteration, then Rayleigh–Ritz.
fn principal_directions(x: &[f32], d: usize, r: usize) -> Vec<f32> {
    let n = x.len() / d;
    let step = n.div_ceil(SAMPLE).max(1);
    let rows: Vec<f32> = x.chunks_exact(d).step_by(step).flatten().copied().collect();
    let m = rows.len() / d;
    // Second-moment matrix M = XᵀX (d × d) as a GEMM of the transposed rows.
    let mut xt = vec![0f32; d * m];
    for i in 0..m {
        for j in 0..d {
            xt[j * m + i] = rows[i * d + j];
        }
    }
    let mut mm = vec![0f32; d * d];
    ip_matrix(&xt, &xt, m, &mut mm);
    // Deterministic start: row i of the basis is e_i plus a small fixed pattern.
    let mut basis: Vec<f64> = (0..r * d)
        .map(|t| {
            let (i, j) = (t / d, t % d);
            (if i == j { 1.0 } else { 0.0 }) + 0.01 * (((t * 7919) % 101) as f64 / 101.0 - 0.5)
        })
        .collect();
    orthonormalize(&mut basis, d);
    let mut next = vec![0f32; r * d];
    for _ in 0..ITERATIONS {
        let b32: Vec<f32> = basis.iter().map(|&v| v as f32).collect();
        ip_matrix(&b32, &mm, d, &mut next); // M is symmetric: row i of next = M·b_i
        basis = next.iter().map(|&v| v as f64).collect();
        orthonormalize(&mut basis, d);
    }
    // Rayleigh–Ritz: eigenvectors of H = B M Bᵀ order the directions inside the subspace.
    let b32: Vec<f32> = basis.iter().map(|&v| v as f32).collect();
    ip_matrix(&b32, &mm, d, &mut next);
    let mut h = vec![0f64; r * r];
    for i in 0..r {
        for j in 0..r {
            h[i * r + j] = (0..d).map(|t| basis[i * d + t] * next[j * d + t] as f64).sum();
        }
    }
    let (vals, vecs) = jacobi_eigen(&mut h, r);
    let mut order: Vec<usize> = (0..r).collect();
    order.sort_by(|&a, &b| vals[b].total_cmp(&vals[a]));
    let mut out = vec![0f64; r * d];
    for (k, &e) in order.iter().enumerate() {
        for i in 0..r {
            let w = vecs[i * r + e];
            for t in 0..d {
                out[k * d + t] += w * basis[i * d + t];
            }
        }
    }
    orthonormalize(&mut out, d);
    out.iter().map(|&v| v as f32).collect()
}

/// Modified Gram–Schmidt on the rows of `b` (`[r, d]`); a row that vanishes is replaced by a
/// unit vector orthogonal to the earlier rows.
fn orthonormalize(b: &mut [f64], d: usize) {
    let r = b.len() / d;
    for i in 0..r {
        for attempt in 0..=d {
            for j in 0..i {
                let p: f64 = (0..d).map(|t| b[i * d + t] * b[j * d + t]).sum();
                for t in 0..d {
                    b[i * d + t] -= p * b[j * d + t];
                }
            }
            let n: f64 = (0..d).map(|t| b[i * d + t].powi(2)).sum::<f64>().sqrt();
            if n > 1e-12 {
                for t in 0..d {
                    b[i * d + t] /= n;
                }
                break;
            }
            // Degenerate: restart the row from a coordinate vector and orthogonalise again.
            for t in 0..d {
                b[i * d + t] = if t == (i + attempt) % d { 1.0 } else { 0.0 };
            }
        }
    }
}

/// Eigenvalues and eigenvectors (columns of the returned `[r, r]`) of the symmetric `a`, by
/// cyclic Jacobi rotations.
fn jacobi_eigen(a: &mut [f64], r: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0f64; r * r];
    for i in 0..r {
        v[i * r + i] = 1.0;
    }
    for _sweep in 0..50 {
        let off: f64 = (0..r)
            .flat_map(|i| (0..r).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * r + j].powi(2))
            .sum();
        let diag: f64 = (0..r).map(|i| a[i * r + i].powi(2)).sum();
        if off <= 1e-24 * diag.max(f64::MIN_POSITIVE) {
            break;
        }
        for p in 0..r {
            for q in p + 1..r {
                let apq = a[p * r + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * r + q] - a[p * r + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..r {
                    let (akp, akq) = (a[k * r + p], a[k * r + q]);
                    a[k * r + p] = c * akp - s * akq;
                    a[k * r + q] = s * akp + c * akq;
                }
                for k in 0..r {
                    let (apk, aqk) = (a[p * r + k], a[q * r + k]);
                    a[p * r + k] = c * apk - s * aqk;
                    a[q * r + k] = s * apk + c * aqk;
                }
                for k in 0..r {
                    let (vkp, vkq) = (v[k * r + p], v[k * r + q]);
                    v[k * r + p] = c * vkp - s * vkq;
                    v[k * r + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..r).map(|i| a[i * r + i]).collect(), v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::vector::dot;

    struct Rng(u64);
    impl Rng {
        fn uniform(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
        fn normal(&mut self) -> f64 {
            let (u, v) = (self.uniform().max(1e-300), self.uniform());
            (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
        }
    }

    /// `n` rows of dimension `d` on a `k`-dimensional subspace plus isotropic `noise`, scaled.
    fn low_rank(
        rng: &mut Rng,
        n: usize,
        d: usize,
        k: usize,
        noise: f64,
        scale: f64,
        offset: f64,
    ) -> Vec<f32> {
        let basis: Vec<f64> = (0..k * d).map(|_| rng.normal() / (k as f64).sqrt()).collect();
        (0..n)
            .flat_map(|_| {
                let z: Vec<f64> = (0..k).map(|_| 2.0 * rng.normal()).collect();
                (0..d)
                    .map(|j| {
                        let v: f64 = (0..k).map(|i| z[i] * basis[i * d + j]).sum::<f64>();
                        ((v + noise * rng.normal() + offset) * scale) as f32
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// On low-rank centroids (several scales, an offset mean, near-duplicate rows that make
    /// near-ties) the bound holds against fp64 inner products for queries on and off the
    /// subspace, and `probe` returns exactly the full scan's lists with exact inner products.
    #[test]
    fn bound_holds_and_probes_equal_the_full_scan() {
        let mut rng = Rng(7);
        let cases = [
            (128usize, 12usize, 0.05, 1.0, 0.0),
            (96, 20, 1e-4, 1e-4, 0.3),
            (64, 8, 1e-4, 1e5, -1.0),
        ];
        for (d, k, noise, scale, offset) in cases {
            let nl = 600;
            let mut cents = low_rank(&mut rng, nl, d, k, noise, scale, offset);
            for l in (1..nl).step_by(7) {
                let prev = cents[(l - 1) * d..l * d].to_vec();
                cents[l * d..(l + 1) * d].copy_from_slice(&prev);
            }
            let p = Projection::new(&cents, d).expect("low-rank centroids get a projection");
            assert!(p.rank() <= 32, "rank {}", p.rank());
            let cnorm: Vec<f32> = cents.chunks_exact(d).map(|c| dot(c, c)).collect();
            let on = low_rank(&mut rng, 20, d, k, 1e-3, scale, offset);
            let off: Vec<f32> = (0..20 * d).map(|_| (rng.normal() * scale) as f32).collect();
            // Queries whose residual is parallel to a centroid's: there Cauchy–Schwarz is tight
            // and the bound has no room to spare.
            let (r, b) = (p.r, &p.basis);
            let along: Vec<f32> = (0..10)
                .flat_map(|t| {
                    let c = &cents[t * 37 * d..(t * 37 + 1) * d];
                    let pc: Vec<f64> = (0..r)
                        .map(|i| (0..d).map(|j| b[i * d + j] as f64 * c[j] as f64).sum())
                        .collect();
                    (0..d)
                        .map(|j| {
                            let rec: f64 = (0..r).map(|i| pc[i] * b[i * d + j] as f64).sum();
                            (c[j] as f64 + 5.0 * (c[j] as f64 - rec)) as f32
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            for q in on
                .chunks_exact(d)
                .chain(off.chunks_exact(d))
                .chain(along.chunks_exact(d))
            {
                let mut a = vec![0f32; nl];
                let (rq, kq) = p.approx(q, &mut a);
                for l in 0..nl {
                    let exact: f64 = (0..d).map(|j| q[j] as f64 * cents[l * d + j] as f64).sum();
                    let b = rq as f64 * p.rest[l] as f64 + kq as f64 * p.norm[l] as f64;
                    assert!((a[l] as f64 - exact).abs() <= b, "d={d} l={l}");
                }
                let qn2 = dot(q, q);
                for metric in [Metric::Ip, Metric::L2] {
                    for nprobe in [1usize, 3, 16] {
                        let mut full = vec![0f32; nl];
                        let c = Centroids {
                            rows: &cents,
                            norms: &cnorm,
                            metric,
                        };
                        let want = c.scan_all(q, qn2, nprobe, &mut full);
                        let mut cip = vec![0f32; nl];
                        if let Some(got) = p.probe(&c, q, qn2, nprobe, &mut cip) {
                            assert_eq!(got, want, "d={d} nprobe={nprobe} {metric:?}");
                            for &l in &got {
                                assert_eq!(cip[l], full[l]);
                            }
                        }
                    }
                }
            }
            // Queries on the subspace are pruned, not sent to the fallback.
            let q = &on[..d];
            let mut cip = vec![0f32; nl];
            let c = Centroids {
                rows: &cents,
                norms: &cnorm,
                metric: Metric::L2,
            };
            assert!(p.probe(&c, q, dot(q, q), 4, &mut cip).is_some());
        }
    }

    #[test]
    fn full_rank_centroids_get_no_projection() {
        let mut rng = Rng(3);
        let cents: Vec<f32> = (0..512 * 64).map(|_| rng.normal() as f32).collect();
        assert!(Projection::new(&cents, 64).is_none());
        assert!(Projection::new(&cents[..100 * 64], 64).is_none(), "too few lists");
    }

    #[test]
    fn principal_directions_are_orthonormal_and_find_the_subspace() {
        let mut rng = Rng(5);
        let (d, k) = (48, 6);
        let x = low_rank(&mut rng, 800, d, k, 0.0, 1.0, 0.0);
        let b = principal_directions(&x, d, 16);
        for i in 0..16 {
            for j in 0..16 {
                let g: f64 = (0..d).map(|t| b[i * d + t] as f64 * b[j * d + t] as f64).sum();
                assert!((g - if i == j { 1.0 } else { 0.0 }).abs() < 1e-5);
            }
        }
        // Every row is reproduced by its projection on the first k directions.
        for row in x.chunks_exact(d).take(50) {
            let p: Vec<f64> = (0..k)
                .map(|i| (0..d).map(|t| b[i * d + t] as f64 * row[t] as f64).sum())
                .collect();
            let res: f64 = (0..d)
                .map(|t| (row[t] as f64 - (0..k).map(|i| p[i] * b[i * d + t] as f64).sum::<f64>()).powi(2))
                .sum();
            let n2: f64 = row.iter().map(|&v| v as f64 * v as f64).sum();
            assert!(res <= 1e-8 * n2, "residual {res} of {n2}");
        }
    }
}
