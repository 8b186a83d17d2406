// One MaxSim pair per block: the [la, lb] similarity of a pair lives only in shared-memory tiles,
// never in global memory.
//
// Rows: for each valid A row, the max over valid B rows and its first position (the q->d sum).
// Columns (COLS): for each valid B row, the max over valid A rows (the d->q sum, FILIP's other
// direction), kept in dynamic shared memory of lb_max (value, position) entries.
#pragma once

#include "common.cuh"

struct PairArgs {
    const void* a;
    const i64* a_off;
    const unsigned char* a_mask;  // [rows_a] or null
    i64 na;
    const void* b;
    const i64* b_off;
    const unsigned char* b_mask;
    i64 nb;
    int dim;
    int paired;
    int transpose;
    int la_max;
    int lb_max;
};

struct PairResult {
    float row_sum, col_sum;  // valid in thread 0
    float row_count, col_count;
    i64 out;
};

template <typename T> struct PairSmem {
    Stage<T> stage;
    float S[BQ][BD + 1];
    float row_best[BQ];
    int row_arg[BQ];
    unsigned char rvalid[BQ];
    unsigned char cvalid[BD];
    float red[TILE_THREADS / 32];
};

// row_arg_out: [P, la_max] or null; col_arg_out: [P, lb_max] or null (only with COLS).
template <typename T, bool COLS>
__device__ PairResult maxsim_pair(const PairArgs& args, i64 p, int* __restrict__ row_arg_out,
                                  int* __restrict__ col_arg_out, PairSmem<T>& sm, float* col_best, int* col_arg) {
    const T* A = static_cast<const T*>(args.a);
    const T* B = static_cast<const T*>(args.b);
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    i64 a, b, out;
    pair_sets(p, args.na, args.nb, args.paired, args.transpose, a, b, out);
    const i64 as = args.a_off[a], bs = args.b_off[b];
    const int la = (int)(args.a_off[a + 1] - as), lb = (int)(args.b_off[b + 1] - bs);

    if (COLS) {
        for (int j = tid; j < lb; j += TILE_THREADS) {
            col_best[j] = MLVEC_NEG_INF;
            col_arg[j] = -1;
        }
    }
    float row_sum = 0.0f;  // meaningful in thread 0
    for (int q0 = 0; q0 < la; q0 += BQ) {
        const int qn = min(BQ, la - q0);
        if (tid < BQ) {
            sm.row_best[tid] = MLVEC_NEG_INF;
            sm.row_arg[tid] = -1;
            sm.rvalid[tid] = tid < qn && row_valid(args.a_mask, as + q0 + tid);
        }
        for (int d0 = 0; d0 < lb; d0 += BD) {
            const int dn = min(BD, lb - d0);
            if (tid < BD) sm.cvalid[tid] = tid < dn && row_valid(args.b_mask, bs + d0 + tid);
            // score_tile synchronises before anyone reads rvalid / cvalid / S.
            score_tile<T>(A, as + q0, qn, B, bs + d0, dn, args.dim, sm.stage, sm.S);
            for (int rr = 0; rr < BQ / 4; ++rr) {
                const int r = warp * (BQ / 4) + rr;
                float v = MLVEC_NEG_INF;
                int i = -1;
                for (int c = lane; c < BD; c += 32)
                    if (sm.cvalid[c] && arg_better(sm.S[r][c], d0 + c, v, i)) {
                        v = sm.S[r][c];
                        i = d0 + c;
                    }
                warp_argmax(v, i);
                if (lane == 0 && sm.rvalid[r] && arg_better(v, i, sm.row_best[r], sm.row_arg[r])) {
                    sm.row_best[r] = v;
                    sm.row_arg[r] = i;
                }
            }
            if (COLS && tid < BD && sm.cvalid[tid]) {
                const int j = d0 + tid;
                float best = col_best[j];
                int arg = col_arg[j];
                for (int r = 0; r < qn; ++r)
                    if (sm.rvalid[r] && arg_better(sm.S[r][tid], q0 + r, best, arg)) {
                        best = sm.S[r][tid];
                        arg = q0 + r;
                    }
                col_best[j] = best;
                col_arg[j] = arg;
            }
            __syncthreads();  // S, cvalid and the row state are rewritten next
        }
        __syncthreads();  // the row state is complete (also when B's set is empty)
        if (warp == 0) {
            const bool ok = lane < qn && sm.rvalid[lane];
            const float s = warp_sum(ok ? sm.row_best[lane] : 0.0f);
            if (lane == 0) row_sum += s;
            if (row_arg_out != nullptr && lane < qn)
                row_arg_out[out * args.la_max + q0 + lane] = ok ? sm.row_arg[lane] : -1;
        }
        __syncthreads();
    }
    if (row_arg_out != nullptr)
        for (int i = la + tid; i < args.la_max; i += TILE_THREADS) row_arg_out[out * args.la_max + i] = -1;

    PairResult res;
    res.out = out;
    res.row_sum = row_sum;
    float cnt = 0.0f;
    for (int i = tid; i < la; i += TILE_THREADS) cnt += row_valid(args.a_mask, as + i) ? 1.0f : 0.0f;
    res.row_count = block_sum(cnt, sm.red);
    res.col_sum = 0.0f;
    res.col_count = 0.0f;
    if (COLS) {
        float s = 0.0f, c = 0.0f;
        for (int j = tid; j < lb; j += TILE_THREADS) {
            const bool ok = row_valid(args.b_mask, bs + j);
            if (ok) {
                s += col_best[j];
                c += 1.0f;
            }
            if (col_arg_out != nullptr) col_arg_out[out * args.lb_max + j] = ok ? col_arg[j] : -1;
        }
        if (col_arg_out != nullptr)
            for (int j = lb + tid; j < args.lb_max; j += TILE_THREADS) col_arg_out[out * args.lb_max + j] = -1;
        res.col_sum = block_sum(s, sm.red);
        res.col_count = block_sum(c, sm.red);
    }
    return res;
}
