// Shared helpers of mlvec's CUDA kernels: element types, score tiles, first-on-ties argmax.
//
// Every kernel file includes this header. Sources are compiled at run time with NVRTC, so only
// headers NVRTC can see are used: cuda_fp16.h / cuda_bf16.h (passed with -I from the CUDA runtime
// wheel); tensor-core products use inline PTX `mma.sync` rather than <mma.h>, which needs headers
// the wheels do not ship.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

typedef long long i64;

#define MLVEC_NEG_INF (-__int_as_float(0x7f800000))
#define MLVEC_POS_INF (__int_as_float(0x7f800000))

// Score tile: BQ rows of A against BD rows of B, the dot products accumulated in fp32 over K
// steps of BK. 128 threads (4 warps) per block.
#define TILE_THREADS 128
#define BQ 32
#define BD 64
#define BK 32

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T zero_of();
template <> __device__ __forceinline__ float zero_of<float>() { return 0.0f; }
template <> __device__ __forceinline__ __half zero_of<__half>() { return __float2half(0.0f); }
template <> __device__ __forceinline__ __nv_bfloat16 zero_of<__nv_bfloat16>() { return __float2bfloat16(0.0f); }

// Shared-memory staging of one K step. 16-bit rows get 8 elements of padding so the fragment
// loads of the 8 row groups of a warp fall on distinct banks.
template <typename T> struct Stage {
    static constexpr int LDK = BK + 8;
    __align__(16) T a[BQ][LDK];
    __align__(16) T b[BD][LDK];
};
template <> struct Stage<float> {
    static constexpr int LDK = BK + 1;
    __align__(16) float a[BQ][BK + 1];
    __align__(16) float b[BD][BK + 1];
};

// Copy one 16-byte vector into a staging row: 16-bit rows are 16-byte aligned (LDK = BK + 8),
// fp32 rows are padded to an odd stride against bank conflicts, so they take four scalars.
template <typename T> __device__ __forceinline__ void store16(T* dst, uint4 v) {
    if constexpr (sizeof(T) == 2) {
        *reinterpret_cast<uint4*>(dst) = v;
    } else {
        const T* s = reinterpret_cast<const T*>(&v);
#pragma unroll
        for (int i = 0; i < 4; ++i) dst[i] = s[i];
    }
}

// Copy rows [row0, row0 + BQ|BD) x cols [k0, k0 + BK) of a row-major [*, dim] matrix into shared
// memory, zero outside `rows` valid rows and outside `dim`. Zeros add nothing to the dot products.
// Whole 16-byte vectors when the rows allow it (dim a multiple of the vector, aligned base, a full
// K step), else element by element.
template <typename T, int ROWS>
__device__ __forceinline__ void stage_rows(T (*dst)[Stage<T>::LDK], const T* __restrict__ src, i64 row0,
                                           int rows, int k0, int dim) {
    constexpr int VEC = 16 / sizeof(T);
    constexpr int PER_ROW = BK / VEC;
    const bool vec_ok =
        dim % VEC == 0 && k0 + BK <= dim && (reinterpret_cast<unsigned long long>(src) & 15ull) == 0;
    if (vec_ok) {
        for (int e = threadIdx.x; e < ROWS * PER_ROW; e += TILE_THREADS) {
            const int r = e / PER_ROW, c = (e % PER_ROW) * VEC;
            uint4 v = make_uint4(0u, 0u, 0u, 0u);
            if (r < rows) v = *reinterpret_cast<const uint4*>(src + (row0 + r) * (i64)dim + k0 + c);
            store16<T>(&dst[r][c], v);
        }
        return;
    }
    for (int e = threadIdx.x; e < ROWS * BK; e += TILE_THREADS) {
        int r = e / BK, c = e % BK;
        T v = zero_of<T>();
        if (r < rows && k0 + c < dim) v = src[(row0 + r) * (i64)dim + k0 + c];
        dst[r][c] = v;
    }
}

template <typename T> struct Mma;

template <> struct Mma<__half> {
    __device__ __forceinline__ static void run(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
            "{%0,%1,%2,%3};"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    }
};
template <> struct Mma<__nv_bfloat16> {
    __device__ __forceinline__ static void run(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
            "{%0,%1,%2,%3};"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    }
};

// Per-thread accumulators of a BQ x BD tile: 16 floats per thread either way.
//  - 16-bit inputs: warp w owns the m16 row block (w >> 1) and four n8 column blocks starting at
//    ((w & 1) * 4); the fragment layout is PTX's m16n8k16 one.
//  - fp32 inputs: thread t owns row t / 4 and columns (t % 4) + 4 c, c = 0..15.
struct TileAcc {
    float v[16];
};

template <typename T> struct TileOps {
    __device__ __forceinline__ static void mac(TileAcc& acc, const Stage<T>& s) {
        const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
        const int g = lane >> 2, t = lane & 3;
        const int m0 = (warp >> 1) * 16, n_base = (warp & 1) * 32;
#pragma unroll
        for (int kk = 0; kk < BK; kk += 16) {
            unsigned a[4];
            a[0] = *reinterpret_cast<const unsigned*>(&s.a[m0 + g][kk + 2 * t]);
            a[1] = *reinterpret_cast<const unsigned*>(&s.a[m0 + g + 8][kk + 2 * t]);
            a[2] = *reinterpret_cast<const unsigned*>(&s.a[m0 + g][kk + 2 * t + 8]);
            a[3] = *reinterpret_cast<const unsigned*>(&s.a[m0 + g + 8][kk + 2 * t + 8]);
#pragma unroll
            for (int nb = 0; nb < 4; ++nb) {
                const int n0 = n_base + nb * 8;
                unsigned b[2];
                b[0] = *reinterpret_cast<const unsigned*>(&s.b[n0 + g][kk + 2 * t]);
                b[1] = *reinterpret_cast<const unsigned*>(&s.b[n0 + g][kk + 2 * t + 8]);
                float(&d)[4] = *reinterpret_cast<float(*)[4]>(&acc.v[nb * 4]);
                Mma<T>::run(d, a, b);
            }
        }
    }
    // Write the accumulators to a [BQ][BD + 1] fp32 tile.
    __device__ __forceinline__ static void store(const TileAcc& acc, float (*out)[BD + 1]) {
        const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
        const int g = lane >> 2, t = lane & 3;
        const int m0 = (warp >> 1) * 16, n_base = (warp & 1) * 32;
#pragma unroll
        for (int nb = 0; nb < 4; ++nb) {
            const int n0 = n_base + nb * 8;
            out[m0 + g][n0 + 2 * t] = acc.v[nb * 4 + 0];
            out[m0 + g][n0 + 2 * t + 1] = acc.v[nb * 4 + 1];
            out[m0 + g + 8][n0 + 2 * t] = acc.v[nb * 4 + 2];
            out[m0 + g + 8][n0 + 2 * t + 1] = acc.v[nb * 4 + 3];
        }
    }
};

template <> struct TileOps<float> {
    __device__ __forceinline__ static void mac(TileAcc& acc, const Stage<float>& s) {
        const int r = threadIdx.x >> 2, c0 = threadIdx.x & 3;
#pragma unroll 4
        for (int k = 0; k < BK; ++k) {
            const float a = s.a[r][k];
#pragma unroll
            for (int c = 0; c < 16; ++c) acc.v[c] = fmaf(a, s.b[c0 + 4 * c][k], acc.v[c]);
        }
    }
    __device__ __forceinline__ static void store(const TileAcc& acc, float (*out)[BD + 1]) {
        const int r = threadIdx.x >> 2, c0 = threadIdx.x & 3;
#pragma unroll
        for (int c = 0; c < 16; ++c) out[r][c0 + 4 * c] = acc.v[c];
    }
};

// S[r][c] = <A[a_row0 + r], B[b_row0 + c]> for r < a_rows, c < b_rows (0 elsewhere), fp32.
// All TILE_THREADS threads must call it; it synchronises before returning.
template <typename T>
__device__ void score_tile(const T* __restrict__ A, i64 a_row0, int a_rows, const T* __restrict__ B, i64 b_row0,
                           int b_rows, int dim, Stage<T>& stage, float (*S)[BD + 1]) {
    TileAcc acc;
#pragma unroll
    for (int i = 0; i < 16; ++i) acc.v[i] = 0.0f;
    for (int k0 = 0; k0 < dim; k0 += BK) {
        stage_rows<T, BQ>(stage.a, A, a_row0, a_rows, k0, dim);
        stage_rows<T, BD>(stage.b, B, b_row0, b_rows, k0, dim);
        __syncthreads();
        TileOps<T>::mac(acc, stage);
        __syncthreads();
    }
    TileOps<T>::store(acc, S);
    __syncthreads();
}

// (value, position) candidates of a max: position < 0 means "none"; larger value wins, then the
// smaller position (torch.max's first-on-ties rule).
__device__ __forceinline__ bool arg_better(float v, int i, float bv, int bi) {
    if (i < 0) return false;
    if (bi < 0) return true;
    if (v > bv) return true;
    if (v < bv) return false;
    return i < bi;
}

__device__ __forceinline__ void warp_argmax(float& v, int& i) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        float ov = __shfl_down_sync(0xffffffffu, v, off);
        int oi = __shfl_down_sync(0xffffffffu, i, off);
        if (arg_better(ov, oi, v, i)) {
            v = ov;
            i = oi;
        }
    }
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, off));
    return v;
}

__device__ __forceinline__ bool row_valid(const unsigned char* __restrict__ mask, i64 row) {
    return mask == nullptr || mask[row] != 0;
}

// Which sets a pair joins, and where its outputs go. All-pairs: p = a * nb + b; with `transpose`
// the outputs are written at b * na + a (used when the roles of queries and documents are swapped).
__device__ __forceinline__ void pair_sets(i64 p, i64 na, i64 nb, int paired, int transpose, i64& a, i64& b,
                                          i64& out) {
    if (paired) {
        a = p;
        b = p;
        out = p;
    } else {
        a = p / nb;
        b = p % nb;
        out = transpose ? b * na + a : p;
    }
}

// Sum of one float per thread over the block (TILE_THREADS threads); `red` holds 4 floats.
// Every thread gets the total. Synchronises.
__device__ __forceinline__ float block_sum(float v, float* red) {
    v = warp_sum(v);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    float t = 0.0f;
#pragma unroll
    for (int w = 0; w < TILE_THREADS / 32; ++w) t += red[w];
    return t;
}
