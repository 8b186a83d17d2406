// MaxSim (ColBERT sum-of-max) forward and backward on packed token sets.
//
// Token sets: a row-major [rows, dim] matrix, int64 offsets [n + 1], optional uint8 mask [rows].
// Forward, one block per pair (all-pairs query-major, or paired), writes
//   sum[out]             Σ over valid A rows of the max over valid B rows (-inf when B has none),
//   row_arg[out, la_max] the first argmax position local to B's set, -1 where undefined,
// and with the `_cols` variants also the B->A direction (col_sum, col_arg) in the same pass.
// Backward takes the argmax of one direction (A rows -> B rows) and adds
//   dA[a_row] += g[p] * B[b_row],  dB[b_row] += g[p] * A[a_row]
// into fp32 buffers: `gather` owns one A row per block (deterministic), `scatter_det` one B row
// per block, found by scanning the argmax (deterministic), `scatter_atomic` adds with atomics,
// one block per pair (summation order varies).
#include "maxsim_pair.cuh"

#define MAXSIM_FWD_PARAMS                                                                            \
    const void *a, const i64 *a_off, const unsigned char *a_mask, i64 na, const void *b,             \
        const i64 *b_off, const unsigned char *b_mask, i64 nb, int dim, int paired, int transpose,  \
        int la_max, int lb_max, float *sum, int *row_arg, float *col_sum, int *col_arg

template <typename T, bool COLS> __device__ void maxsim_fwd_impl(MAXSIM_FWD_PARAMS) {
    __shared__ PairSmem<T> sm;
    extern __shared__ float dyn[];
    PairArgs args{a, a_off, a_mask, na, b, b_off, b_mask, nb, dim, paired, transpose, la_max, lb_max};
    const i64 p = blockIdx.x;
    float* col_best = dyn;
    int* col_argbuf = reinterpret_cast<int*>(dyn + (COLS ? lb_max : 0));
    PairResult r = maxsim_pair<T, COLS>(args, p, row_arg, col_arg, sm, col_best, col_argbuf);
    if (threadIdx.x == 0) {
        sum[r.out] = r.row_sum;
        if (COLS && col_sum != nullptr) col_sum[r.out] = r.col_sum;
    }
}

#define MAXSIM_FWD_ARGS a, a_off, a_mask, na, b, b_off, b_mask, nb, dim, paired, transpose, la_max, lb_max, sum, row_arg, col_sum, col_arg

extern "C" __global__ void __launch_bounds__(TILE_THREADS) maxsim_fwd_f32(MAXSIM_FWD_PARAMS) {
    maxsim_fwd_impl<float, false>(MAXSIM_FWD_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS) maxsim_fwd_f16(MAXSIM_FWD_PARAMS) {
    maxsim_fwd_impl<__half, false>(MAXSIM_FWD_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS) maxsim_fwd_bf16(MAXSIM_FWD_PARAMS) {
    maxsim_fwd_impl<__nv_bfloat16, false>(MAXSIM_FWD_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS) maxsim_fwd_cols_f32(MAXSIM_FWD_PARAMS) {
    maxsim_fwd_impl<float, true>(MAXSIM_FWD_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS) maxsim_fwd_cols_f16(MAXSIM_FWD_PARAMS) {
    maxsim_fwd_impl<__half, true>(MAXSIM_FWD_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS) maxsim_fwd_cols_bf16(MAXSIM_FWD_PARAMS) {
    maxsim_fwd_impl<__nv_bfloat16, true>(MAXSIM_FWD_ARGS);
}

// ---- backward ---------------------------------------------------------------------------------

#define MAXSIM_BWD_PARAMS                                                                           \
    const void *a, const i64 *a_off, const unsigned char *a_mask, i64 na, const void *b,            \
        const i64 *b_off, i64 nb, int dim, int paired, int transpose, int la_max, const float *grad, \
        const int *argmax, float *da, float *db
#define MAXSIM_BWD_ARGS a, a_off, a_mask, na, b, b_off, nb, dim, paired, transpose, la_max, grad, argmax, da, db

#define BWD_THREADS 128

__device__ __forceinline__ i64 out_index(i64 a, i64 b, i64 na, i64 nb, int paired, int transpose) {
    if (paired) return a;
    return transpose ? b * na + a : a * nb + b;
}

// grid (na, ceil(dim / BWD_THREADS), la_max): block owns row blockIdx.z of A's set blockIdx.x,
// thread a column. Pairs are visited in a fixed order, so the result is deterministic.
template <typename T> __device__ void maxsim_bwd_gather_impl(MAXSIM_BWD_PARAMS) {
    const T* B = static_cast<const T*>(b);
    const i64 set = blockIdx.x;
    const int c = blockIdx.y * BWD_THREADS + threadIdx.x;
    const int i = blockIdx.z;
    const i64 as = a_off[set];
    const int la = (int)(a_off[set + 1] - as);
    if (c >= dim || i >= la || !row_valid(a_mask, as + i)) return;
    const i64 b_first = paired ? set : 0, b_last = paired ? set + 1 : nb;
    float acc = 0.0f;
    for (i64 bb = b_first; bb < b_last; ++bb) {
        const i64 p = out_index(set, bb, na, nb, paired, transpose);
        const int j = argmax[p * la_max + i];
        const i64 bs = b_off[bb];
        if (j < 0 || j >= (int)(b_off[bb + 1] - bs)) continue;
        acc = fmaf(grad[p], to_f32(B[(bs + j) * (i64)dim + c]), acc);
    }
    da[(as + i) * (i64)dim + c] += acc;
}

// grid (nb, ceil(dim / BWD_THREADS), lb_max): block owns row blockIdx.z of B's set blockIdx.x,
// thread a column; it finds the (pair, A row) entries whose argmax is that row, in a fixed order
// (deterministic, one write per element).
template <typename T> __device__ void maxsim_bwd_scatter_det_impl(MAXSIM_BWD_PARAMS) {
    const T* A = static_cast<const T*>(a);
    const i64 set = blockIdx.x;
    const int c = blockIdx.y * BWD_THREADS + threadIdx.x;
    const int j = blockIdx.z;
    const i64 bs = b_off[set];
    const int lb = (int)(b_off[set + 1] - bs);
    if (c >= dim || j >= lb) return;
    const i64 a_first = paired ? set : 0, a_last = paired ? set + 1 : na;
    float acc = 0.0f;
    for (i64 aa = a_first; aa < a_last; ++aa) {
        const i64 p = out_index(aa, set, na, nb, paired, transpose);
        const float g = grad[p];
        const i64 as = a_off[aa];
        const int la = (int)(a_off[aa + 1] - as);
        for (int i = 0; i < la; ++i)
            if (argmax[p * la_max + i] == j && row_valid(a_mask, as + i))
                acc = fmaf(g, to_f32(A[(as + i) * (i64)dim + c]), acc);
    }
    db[(bs + j) * (i64)dim + c] += acc;
}

// grid (P, ceil(dim / BWD_THREADS)): one block per pair, atomics into dB.
template <typename T> __device__ void maxsim_bwd_scatter_atomic_impl(MAXSIM_BWD_PARAMS) {
    const T* A = static_cast<const T*>(a);
    const i64 p = blockIdx.x;
    const int c = blockIdx.y * BWD_THREADS + threadIdx.x;
    if (c >= dim) return;
    i64 aa, bb, out;
    pair_sets(p, na, nb, paired, transpose, aa, bb, out);
    const i64 as = a_off[aa], bs = b_off[bb];
    const int la = (int)(a_off[aa + 1] - as), lb = (int)(b_off[bb + 1] - bs);
    const float g = grad[out];
    for (int i = 0; i < la; ++i) {
        const int j = argmax[out * la_max + i];
        if (j < 0 || j >= lb || !row_valid(a_mask, as + i)) continue;
        atomicAdd(&db[(bs + j) * (i64)dim + c], g * to_f32(A[(as + i) * (i64)dim + c]));
    }
}

#define BWD_KERNEL(name, impl, T) \
    extern "C" __global__ void __launch_bounds__(BWD_THREADS) name(MAXSIM_BWD_PARAMS) { impl<T>(MAXSIM_BWD_ARGS); }

BWD_KERNEL(maxsim_bwd_gather_f32, maxsim_bwd_gather_impl, float)
BWD_KERNEL(maxsim_bwd_gather_f16, maxsim_bwd_gather_impl, __half)
BWD_KERNEL(maxsim_bwd_gather_bf16, maxsim_bwd_gather_impl, __nv_bfloat16)
BWD_KERNEL(maxsim_bwd_scatter_det_f32, maxsim_bwd_scatter_det_impl, float)
BWD_KERNEL(maxsim_bwd_scatter_det_f16, maxsim_bwd_scatter_det_impl, __half)
BWD_KERNEL(maxsim_bwd_scatter_det_bf16, maxsim_bwd_scatter_det_impl, __nv_bfloat16)
BWD_KERNEL(maxsim_bwd_scatter_atomic_f32, maxsim_bwd_scatter_atomic_impl, float)
BWD_KERNEL(maxsim_bwd_scatter_atomic_f16, maxsim_bwd_scatter_atomic_impl, __half)
BWD_KERNEL(maxsim_bwd_scatter_atomic_bf16, maxsim_bwd_scatter_atomic_impl, __nv_bfloat16)
