// FILIP pair tile: token-wise max both ways inside one pair, in one pass over the [la, lb] tile.
//
// For pair p (all-pairs query-major, or paired) writes
//   a_mean[p] = (Σ over valid A rows of the max over valid B rows) / (valid A rows)
//   b_mean[p] = (Σ over valid B rows of the max over valid A rows) / (valid B rows)
// (0 when the side has no valid row, -inf when the other side has none), plus the argmax
// positions of both directions ([P, la_max], [P, lb_max], -1 where undefined) when non-null, for
// the backward pass (maxsim.cu's backward kernels, with the gradient divided by the counts).
// Needs lb_max * 8 bytes of dynamic shared memory.
#include "maxsim_pair.cuh"

#define FILIP_PARAMS                                                                                 \
    const void *a, const i64 *a_off, const unsigned char *a_mask, i64 na, const void *b,             \
        const i64 *b_off, const unsigned char *b_mask, i64 nb, int dim, int paired, int la_max,      \
        int lb_max, float *a_mean, float *b_mean, int *a_arg, int *b_arg

template <typename T> __device__ void filip_fwd_impl(FILIP_PARAMS) {
    __shared__ PairSmem<T> sm;
    extern __shared__ float dyn[];
    PairArgs args{a, a_off, a_mask, na, b, b_off, b_mask, nb, dim, paired, 0, la_max, lb_max};
    PairResult r = maxsim_pair<T, true>(args, blockIdx.x, a_arg, b_arg, sm, dyn,
                                        reinterpret_cast<int*>(dyn + lb_max));
    if (threadIdx.x == 0) {
        a_mean[r.out] = r.row_count > 0.0f ? r.row_sum / r.row_count : 0.0f;
        b_mean[r.out] = r.col_count > 0.0f ? r.col_sum / r.col_count : 0.0f;
    }
}

#define FILIP_ARGS a, a_off, a_mask, na, b, b_off, b_mask, nb, dim, paired, la_max, lb_max, a_mean, b_mean, a_arg, b_arg

extern "C" __global__ void __launch_bounds__(TILE_THREADS) filip_fwd_f32(FILIP_PARAMS) {
    filip_fwd_impl<float>(FILIP_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS) filip_fwd_f16(FILIP_PARAMS) {
    filip_fwd_impl<__half>(FILIP_ARGS);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS) filip_fwd_bf16(FILIP_PARAMS) {
    filip_fwd_impl<__nv_bfloat16>(FILIP_ARGS);
}
