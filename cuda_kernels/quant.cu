// Quantized scans for the ANN index, and a k-smallest selection for their results.
//
// pq_scan:      dist[q, i] = Σ_s lut[q, s, codes[i, s]] for uint8 PQ codes [n, m] and fp32
//               lookup tables [nq, m, ksub] (ksub <= 256). grid (ceil(n / 256), nq).
// hamming_scan: dist[q, i] = popcount(codes[i] xor queries[q]) over `words` 64-bit words
//               per code, written as fp32 (exact below 2^24 bits). grid (ceil(n / 256), nq).
// select_k:     per row and per chunk of SELECT_CHUNK candidates, the k smallest (value, id)
//               pairs in ascending order, smaller id first on ties; ids are the caller's or the
//               column position; missing entries are (+inf, -1). grid (n_chunks, rows). The
//               caller repeats it on [rows, n_chunks * k] until one chunk remains.
#include "common.cuh"

#define SCAN_THREADS 256
#define SELECT_THREADS 256
#define SELECT_CHUNK 2048

extern "C" __global__ void __launch_bounds__(SCAN_THREADS)
    pq_scan(const unsigned char* __restrict__ codes, i64 n, int m, int ksub, const float* __restrict__ lut, i64 nq,
            float* __restrict__ dist) {
    const i64 i = (i64)blockIdx.x * SCAN_THREADS + threadIdx.x;
    const i64 q = blockIdx.y;
    if (i >= n) return;
    const float* t = lut + q * (i64)m * ksub;
    const unsigned char* code = codes + i * (i64)m;
    float acc = 0.0f;
    for (int s = 0; s < m; ++s) acc += t[(i64)s * ksub + code[s]];
    dist[q * n + i] = acc;
}

extern "C" __global__ void __launch_bounds__(SCAN_THREADS)
    hamming_scan(const unsigned long long* __restrict__ codes, i64 n, int words,
                 const unsigned long long* __restrict__ queries, i64 nq, float* __restrict__ dist) {
    const i64 i = (i64)blockIdx.x * SCAN_THREADS + threadIdx.x;
    const i64 q = blockIdx.y;
    if (i >= n) return;
    const unsigned long long* a = codes + i * (i64)words;
    const unsigned long long* b = queries + q * (i64)words;
    int acc = 0;
    for (int w = 0; w < words; ++w) acc += __popcll(a[w] ^ b[w]);
    dist[q * n + i] = (float)acc;
}

// (value, id) order of select_k: a real entry (id >= 0) beats a missing one; then the smaller
// value; then the smaller id. NaN values sort after every number.
__device__ __forceinline__ bool sel_better(float v, i64 id, float bv, i64 bid) {
    if (id < 0) return false;
    if (bid < 0) return true;
    const bool vn = isnan(v), bn = isnan(bv);
    if (vn != bn) return bn;
    if (!vn && v != bv) return v < bv;
    return id < bid;
}

extern "C" __global__ void __launch_bounds__(SELECT_THREADS)
    select_k(const float* __restrict__ vals, const i64* __restrict__ ids, i64 rows, i64 n, int k,
             float* __restrict__ out_vals, i64* __restrict__ out_ids) {
    __shared__ float sv[SELECT_CHUNK];
    __shared__ i64 sid[SELECT_CHUNK];
    __shared__ float wv[SELECT_THREADS / 32];
    __shared__ i64 wid[SELECT_THREADS / 32];
    __shared__ int wpos[SELECT_THREADS / 32];
    const i64 row = blockIdx.y, c0 = (i64)blockIdx.x * SELECT_CHUNK;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    for (int e = tid; e < SELECT_CHUNK; e += SELECT_THREADS) {
        const i64 col = c0 + e;
        if (col < n) {
            sv[e] = vals[row * n + col];
            sid[e] = ids != nullptr ? ids[row * n + col] : col;
        } else {
            sv[e] = MLVEC_POS_INF;
            sid[e] = -1;
        }
    }
    __syncthreads();
    float* ov = out_vals + (row * gridDim.x + blockIdx.x) * (i64)k;
    i64* oid = out_ids + (row * gridDim.x + blockIdx.x) * (i64)k;
    for (int r = 0; r < k; ++r) {
        float bv = MLVEC_POS_INF;
        i64 bid = -1;
        int bpos = -1;
        for (int e = tid; e < SELECT_CHUNK; e += SELECT_THREADS)
            if (sel_better(sv[e], sid[e], bv, bid)) {
                bv = sv[e];
                bid = sid[e];
                bpos = e;
            }
        for (int off = 16; off > 0; off >>= 1) {
            const float ovv = __shfl_down_sync(0xffffffffu, bv, off);
            const i64 oi = __shfl_down_sync(0xffffffffu, bid, off);
            const int op = __shfl_down_sync(0xffffffffu, bpos, off);
            if (sel_better(ovv, oi, bv, bid)) {
                bv = ovv;
                bid = oi;
                bpos = op;
            }
        }
        if (lane == 0) {
            wv[warp] = bv;
            wid[warp] = bid;
            wpos[warp] = bpos;
        }
        __syncthreads();
        if (tid == 0) {
            for (int w = 1; w < SELECT_THREADS / 32; ++w)
                if (sel_better(wv[w], wid[w], bv, bid)) {
                    bv = wv[w];
                    bid = wid[w];
                    bpos = wpos[w];
                }
            ov[r] = bid >= 0 ? bv : MLVEC_POS_INF;
            oid[r] = bid;
            if (bpos >= 0) sid[bpos] = -1;  // taken
        }
        __syncthreads();
    }
}
