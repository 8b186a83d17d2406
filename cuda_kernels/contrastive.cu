// Contrastive-loss tiles: one [BQ x BD] block of logits l = scale * <x_i, y_j> (+ bias for
// SigLIP) per thread block, recomputed in backward instead of stored. grid = (ceil(N / BD),
// ceil(M / BQ)) for x [M, dim] and y [N, dim].
//
// CLIP / InfoNCE:
//   clip_lse_partials: per tile, per row and per column, the max and Σ exp(l - max) over the
//     tile -> row_pmax/row_psum [gridDim.x, M], col_pmax/col_psum [gridDim.y, N]; the caller
//     merges them into row and column log-sum-exps (an online log-sum-exp over tiles).
//   clip_grad: gradient of Σ_i g_row[i] lse_row[i] + Σ_j g_col[j] lse_col[j]:
//     dl_ij = g_row[i] softmax_row_ij + g_col[j] softmax_col_ij, added (atomically) as
//     dx += scale * dl @ y, dy += scale * dl^T @ x, and Σ dl_ij <x_i, y_j> per tile for
//     d(scale) into dscale_part [gridDim.y * gridDim.x]. The positive-pair terms are the caller's.
// SigLIP (label z_ij = +1 when row_offset + i == col_offset + j, else -1):
//   siglip_fwd: row_part [gridDim.x, M] = Σ over the tile's columns of softplus(-z l).
//   siglip_bwd: dl_ij = g_row[i] * -z sigmoid(-z l); dx, dy as above; dscale_part, dbias_part.
#include "common.cuh"

template <typename T> struct TileSmem {
    Stage<T> stage;
    float S[BQ][BD + 1];
    float red[TILE_THREADS / 32];
};

// dx[r0 + r] += scale * Σ_c W[r][c] y[c0 + c];  dy[c0 + c] += scale * Σ_r W[r][c] x[r0 + r].
template <typename T>
__device__ void add_tile_grads(const float (*W)[BD + 1], const T* __restrict__ x, const T* __restrict__ y, i64 r0,
                               int rn, i64 c0, int cn, int dim, float scale, float* dx, float* dy) {
    for (int e = threadIdx.x; e < rn * dim; e += TILE_THREADS) {
        const int r = e / dim, k = e % dim;
        float acc = 0.0f;
        for (int c = 0; c < cn; ++c) acc = fmaf(W[r][c], to_f32(y[(c0 + c) * (i64)dim + k]), acc);
        atomicAdd(&dx[(r0 + r) * (i64)dim + k], scale * acc);
    }
    for (int e = threadIdx.x; e < cn * dim; e += TILE_THREADS) {
        const int c = e / dim, k = e % dim;
        float acc = 0.0f;
        for (int r = 0; r < rn; ++r) acc = fmaf(W[r][c], to_f32(x[(r0 + r) * (i64)dim + k]), acc);
        atomicAdd(&dy[(c0 + c) * (i64)dim + k], scale * acc);
    }
}

template <typename T>
__device__ void clip_lse_partials_impl(const void* xv, const void* yv, i64 M, i64 N, int dim, float scale,
                                       float* row_pmax, float* row_psum, float* col_pmax, float* col_psum) {
    __shared__ TileSmem<T> sm;
    const T* x = static_cast<const T*>(xv);
    const T* y = static_cast<const T*>(yv);
    const i64 r0 = (i64)blockIdx.y * BQ, c0 = (i64)blockIdx.x * BD;
    const int rn = (int)min((i64)BQ, M - r0), cn = (int)min((i64)BD, N - c0);
    score_tile<T>(x, r0, rn, y, c0, cn, dim, sm.stage, sm.S);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    for (int rr = 0; rr < BQ / 4; ++rr) {
        const int r = warp * (BQ / 4) + rr;
        if (r >= rn) break;  // warp-uniform
        float m = MLVEC_NEG_INF;
        for (int c = lane; c < cn; c += 32) m = fmaxf(m, scale * sm.S[r][c]);
        m = __shfl_sync(0xffffffffu, warp_max(m), 0);
        float s = 0.0f;
        for (int c = lane; c < cn; c += 32) s += expf(scale * sm.S[r][c] - m);
        s = warp_sum(s);
        if (lane == 0) {
            row_pmax[(i64)blockIdx.x * M + r0 + r] = m;
            row_psum[(i64)blockIdx.x * M + r0 + r] = s;
        }
    }
    if (threadIdx.x < cn) {
        const int c = threadIdx.x;
        float m = MLVEC_NEG_INF;
        for (int r = 0; r < rn; ++r) m = fmaxf(m, scale * sm.S[r][c]);
        float s = 0.0f;
        for (int r = 0; r < rn; ++r) s += expf(scale * sm.S[r][c] - m);
        col_pmax[(i64)blockIdx.y * N + c0 + c] = m;
        col_psum[(i64)blockIdx.y * N + c0 + c] = s;
    }
}

template <typename T>
__device__ void clip_grad_impl(const void* xv, const void* yv, i64 M, i64 N, int dim, float scale,
                               const float* row_lse, const float* col_lse, const float* g_row, const float* g_col,
                               float* dx, float* dy, float* dscale_part) {
    __shared__ TileSmem<T> sm;
    const T* x = static_cast<const T*>(xv);
    const T* y = static_cast<const T*>(yv);
    const i64 r0 = (i64)blockIdx.y * BQ, c0 = (i64)blockIdx.x * BD;
    const int rn = (int)min((i64)BQ, M - r0), cn = (int)min((i64)BD, N - c0);
    score_tile<T>(x, r0, rn, y, c0, cn, dim, sm.stage, sm.S);
    float part = 0.0f;
    for (int e = threadIdx.x; e < BQ * BD; e += TILE_THREADS) {
        const int r = e / BD, c = e % BD;
        float w = 0.0f;
        if (r < rn && c < cn) {
            const float dot = sm.S[r][c], l = scale * dot;
            if (g_row != nullptr) w += g_row[r0 + r] * expf(l - row_lse[r0 + r]);
            if (g_col != nullptr) w += g_col[c0 + c] * expf(l - col_lse[c0 + c]);
            part = fmaf(w, dot, part);
        }
        sm.S[r][c] = w;
    }
    part = block_sum(part, sm.red);  // synchronises: the weights are visible below
    if (threadIdx.x == 0) dscale_part[(i64)blockIdx.y * gridDim.x + blockIdx.x] = part;
    add_tile_grads<T>(sm.S, x, y, r0, rn, c0, cn, dim, scale, dx, dy);
}

__device__ __forceinline__ float softplus(float v) { return fmaxf(v, 0.0f) + log1pf(expf(-fabsf(v))); }
__device__ __forceinline__ float sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }

template <typename T>
__device__ void siglip_fwd_impl(const void* xv, const void* yv, i64 M, i64 N, int dim, float scale, float bias,
                                i64 row_offset, i64 col_offset, float* row_part) {
    __shared__ TileSmem<T> sm;
    const T* x = static_cast<const T*>(xv);
    const T* y = static_cast<const T*>(yv);
    const i64 r0 = (i64)blockIdx.y * BQ, c0 = (i64)blockIdx.x * BD;
    const int rn = (int)min((i64)BQ, M - r0), cn = (int)min((i64)BD, N - c0);
    score_tile<T>(x, r0, rn, y, c0, cn, dim, sm.stage, sm.S);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    for (int rr = 0; rr < BQ / 4; ++rr) {
        const int r = warp * (BQ / 4) + rr;
        if (r >= rn) break;  // warp-uniform
        float s = 0.0f;
        for (int c = lane; c < cn; c += 32) {
            const float z = (row_offset + r0 + r == col_offset + c0 + c) ? 1.0f : -1.0f;
            s += softplus(-z * (scale * sm.S[r][c] + bias));
        }
        s = warp_sum(s);
        if (lane == 0) row_part[(i64)blockIdx.x * M + r0 + r] = s;
    }
}

template <typename T>
__device__ void siglip_bwd_impl(const void* xv, const void* yv, i64 M, i64 N, int dim, float scale, float bias,
                                i64 row_offset, i64 col_offset, const float* g_row, float* dx, float* dy,
                                float* dscale_part, float* dbias_part) {
    __shared__ TileSmem<T> sm;
    const T* x = static_cast<const T*>(xv);
    const T* y = static_cast<const T*>(yv);
    const i64 r0 = (i64)blockIdx.y * BQ, c0 = (i64)blockIdx.x * BD;
    const int rn = (int)min((i64)BQ, M - r0), cn = (int)min((i64)BD, N - c0);
    score_tile<T>(x, r0, rn, y, c0, cn, dim, sm.stage, sm.S);
    float ps = 0.0f, pb = 0.0f;
    for (int e = threadIdx.x; e < BQ * BD; e += TILE_THREADS) {
        const int r = e / BD, c = e % BD;
        float w = 0.0f;
        if (r < rn && c < cn) {
            const float z = (row_offset + r0 + r == col_offset + c0 + c) ? 1.0f : -1.0f;
            const float dot = sm.S[r][c], l = scale * dot + bias;
            w = g_row[r0 + r] * -z * sigmoid(-z * l);
            ps = fmaf(w, dot, ps);
            pb += w;
        }
        sm.S[r][c] = w;
    }
    ps = block_sum(ps, sm.red);
    pb = block_sum(pb, sm.red);
    if (threadIdx.x == 0) {
        dscale_part[(i64)blockIdx.y * gridDim.x + blockIdx.x] = ps;
        dbias_part[(i64)blockIdx.y * gridDim.x + blockIdx.x] = pb;
    }
    add_tile_grads<T>(sm.S, x, y, r0, rn, c0, cn, dim, scale, dx, dy);
}

#define LSE_PARAMS                                                                                  \
    const void *x, const void *y, i64 M, i64 N, int dim, float scale, float *row_pmax, float *row_psum, \
        float *col_pmax, float *col_psum
#define LSE_ARGS x, y, M, N, dim, scale, row_pmax, row_psum, col_pmax, col_psum
#define CLIP_GRAD_PARAMS                                                                          \
    const void *x, const void *y, i64 M, i64 N, int dim, float scale, const float *row_lse,        \
        const float *col_lse, const float *g_row, const float *g_col, float *dx, float *dy, float *dscale_part
#define CLIP_GRAD_ARGS x, y, M, N, dim, scale, row_lse, col_lse, g_row, g_col, dx, dy, dscale_part
#define SIGLIP_FWD_PARAMS                                                                         \
    const void *x, const void *y, i64 M, i64 N, int dim, float scale, float bias, i64 row_offset,  \
        i64 col_offset, float *row_part
#define SIGLIP_FWD_ARGS x, y, M, N, dim, scale, bias, row_offset, col_offset, row_part
#define SIGLIP_BWD_PARAMS                                                                           \
    const void *x, const void *y, i64 M, i64 N, int dim, float scale, float bias, i64 row_offset,    \
        i64 col_offset, const float *g_row, float *dx, float *dy, float *dscale_part, float *dbias_part
#define SIGLIP_BWD_ARGS x, y, M, N, dim, scale, bias, row_offset, col_offset, g_row, dx, dy, dscale_part, dbias_part

#define TILE_KERNEL(name, impl, T, PARAMS, ARGS) \
    extern "C" __global__ void __launch_bounds__(TILE_THREADS) name(PARAMS) { impl<T>(ARGS); }

TILE_KERNEL(clip_lse_partials_f32, clip_lse_partials_impl, float, LSE_PARAMS, LSE_ARGS)
TILE_KERNEL(clip_lse_partials_f16, clip_lse_partials_impl, __half, LSE_PARAMS, LSE_ARGS)
TILE_KERNEL(clip_lse_partials_bf16, clip_lse_partials_impl, __nv_bfloat16, LSE_PARAMS, LSE_ARGS)
TILE_KERNEL(clip_grad_f32, clip_grad_impl, float, CLIP_GRAD_PARAMS, CLIP_GRAD_ARGS)
TILE_KERNEL(clip_grad_f16, clip_grad_impl, __half, CLIP_GRAD_PARAMS, CLIP_GRAD_ARGS)
TILE_KERNEL(clip_grad_bf16, clip_grad_impl, __nv_bfloat16, CLIP_GRAD_PARAMS, CLIP_GRAD_ARGS)
TILE_KERNEL(siglip_fwd_f32, siglip_fwd_impl, float, SIGLIP_FWD_PARAMS, SIGLIP_FWD_ARGS)
TILE_KERNEL(siglip_fwd_f16, siglip_fwd_impl, __half, SIGLIP_FWD_PARAMS, SIGLIP_FWD_ARGS)
TILE_KERNEL(siglip_fwd_bf16, siglip_fwd_impl, __nv_bfloat16, SIGLIP_FWD_PARAMS, SIGLIP_FWD_ARGS)
TILE_KERNEL(siglip_bwd_f32, siglip_bwd_impl, float, SIGLIP_BWD_PARAMS, SIGLIP_BWD_ARGS)
TILE_KERNEL(siglip_bwd_f16, siglip_bwd_impl, __half, SIGLIP_BWD_PARAMS, SIGLIP_BWD_ARGS)
TILE_KERNEL(siglip_bwd_bf16, siglip_bwd_impl, __nv_bfloat16, SIGLIP_BWD_PARAMS, SIGLIP_BWD_ARGS)
