/* paro — `paro eval` on the GPU: the CUDA counterpart of calib/eval.c, whose
 * fp64 CPU reference (and calib/EVAL.md) defines every number.
 *
 * Per sample of a layer, for all heads at once, in f32 (inputs as captured,
 * converted to f32 as the reference reads them):
 *   row_stats     each row's maximum score and sum of exponentials;
 *   exact         per 64-row block of an order, over the order's key tiles:
 *                 the tile's exponentials E and E V, added to the dense
 *                 output and to every mask set that keeps the tile; at the
 *                 end the kept share of the mass and the sparse output's
 *                 squared error, dot product and norm against the dense one;
 *   quantize      Q and K per block of an order to INT8 levels (the level as
 *                 an integer-valued float and the block's step per token);
 *   row_stats, tile_max, quant_out   the same scores from the levels: each
 *                 tile's largest probability, then P quantized per tile to
 *                 INT8 and INT4 times V against the dense output.
 * Every reduction runs in a fixed order (the few rows whose kept sum falls
 * below f32's range are listed for the host to recompute in fp64, the list
 * sorted there), so results are the same run to run.
 *
 * The tiles are 64 query rows x 64 keys on 256 threads, each thread a 4 x 4
 * block of scores and a 4-row slice of the outputs; Q and K are held
 * transposed in shared memory so that both operands come as float4.
 */
#include <cuda_runtime.h> /* cudaMalloc, streams */
#include <math.h>         /* INFINITY, rint */
#include <stdint.h>       /* uint32_t */
#include <stdlib.h>       /* calloc, free, qsort */
#include <string.h>       /* memset */

#include "cuda_check.h"
#include "kernels.h"

namespace {

constexpr int kRows = 64, kKeys = 64, kThreads = 256;
constexpr int kMaxSets = 2;          /* mask sets one exact launch accumulates */
constexpr int kSetSums = 4;          /* kept, err2, dot, norm2 */
constexpr int kExactSums = 1 + kMaxSets * kSetSums; /* the dense norm first */
/* A kept sum of exponentials (relative to the row's largest, 1) below this
 * has lost its precision to f32 underflow: the host recomputes the row. */
constexpr float kTinyKept = 1e-20f;

enum Mode { ROW_STATS = 0, EXACT = 1, TILE_MAX = 2, QUANT_OUT = 3 };

struct EvArgs {
    int n, nq, nk, bq, bk, ctas; /* ctas: 64-row blocks of the sequence */
    float c;                     /* scale * log2(e) */
    const float *q, *k, *v;      /* [heads][n][D]: values, or INT8 levels */
    const float *sq, *sk;        /* [heads][n]: the levels' steps (quantized passes) */
    const uint32_t *perms;       /* [n_slots][n] */
    const int *slots;            /* [heads][2]: capture order's slot, the chosen one */
    int side;                    /* which of the two this launch runs in */
    float *row_max, *row_z;      /* [heads][n], by capture index */
    const uint8_t *keep;         /* [heads][n_sets][nq * nk] */
    int n_sets;
    const int *set_ids;          /* [heads][kMaxSets]: the sets of this launch, -1 none */
    float *o;                    /* [heads][n][D]: the dense output */
    int write_o;
    double *part;                /* per (head, block): kExactSums, or 2 for quant_out */
    float *tmax;                 /* [heads][ctas][ctas]: largest p per 64 x 64 tile */
    unsigned *n_flags;
    uint32_t *flags;             /* (head, set, row) per underflowing row */
    unsigned cap_flags;
};

template <int D> struct Tiles {
    float qt[D][kRows + 4];  /* Q^T, padded against bank conflicts */
    float kt[D][kKeys + 4];  /* K^T */
    float v[kKeys][D + 4];
    float e[kRows][kKeys + 4];
    float e2[kRows][kKeys + 4]; /* quant_out: the INT4 levels */
    float sq[kRows], sk[kKeys];
    float red[kRows][kExactSums];
};

__device__ __forceinline__ float ex2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

/* Over the 16 threads that share a row (lanes differing in their low four
 * bits): butterflies, so they all end with the same value. */
__device__ __forceinline__ float sum16(float x)
{
#pragma unroll
    for (int off = 1; off < 16; off <<= 1)
        x += __shfl_xor_sync(0xffffffffu, x, off);
    return x;
}

__device__ __forceinline__ float max16(float x)
{
#pragma unroll
    for (int off = 1; off < 16; off <<= 1)
        x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, off));
    return x;
}

/* 64 rows at positions pos0.. of the order perm, transposed into xt (zeros
 * past the end), and their steps when quantized. */
template <int D>
__device__ __forceinline__ void load_transposed(float (*xt)[kRows + 4], const float *x,
                                                const uint32_t *perm, int pos0, int n,
                                                const float *steps, float *s_out)
{
    for (int idx = threadIdx.x; idx < kRows * (D / 4); idx += kThreads) {
        const int r = idx / (D / 4), c4 = idx % (D / 4), pos = pos0 + r;
        float4 val = make_float4(0.f, 0.f, 0.f, 0.f);
        if (pos < n)
            val = __ldg(reinterpret_cast<const float4 *>(x + (size_t)__ldg(perm + pos) * D) + c4);
        xt[c4 * 4 + 0][r] = val.x;
        xt[c4 * 4 + 1][r] = val.y;
        xt[c4 * 4 + 2][r] = val.z;
        xt[c4 * 4 + 3][r] = val.w;
    }
    if (steps && threadIdx.x < kRows) {
        const int pos = pos0 + threadIdx.x;
        s_out[threadIdx.x] = pos < n ? __ldg(steps + __ldg(perm + pos)) : 0.f;
    }
}

template <int D>
__device__ __forceinline__ void load_rows(float (*xr)[D + 4], const float *x, const uint32_t *perm,
                                          int pos0, int n)
{
    for (int idx = threadIdx.x; idx < kKeys * (D / 4); idx += kThreads) {
        const int r = idx / (D / 4), c4 = idx % (D / 4), pos = pos0 + r;
        float4 val = make_float4(0.f, 0.f, 0.f, 0.f);
        if (pos < n)
            val = __ldg(reinterpret_cast<const float4 *>(x + (size_t)__ldg(perm + pos) * D) + c4);
        *reinterpret_cast<float4 *>(&xr[r][c4 * 4]) = val;
    }
}

/* The thread's 4 x 4 scores: rows ty*4.., keys tx*4.. */
template <int D, bool QUANT>
__device__ __forceinline__ void scores(const Tiles<D> &sm, int ty, int tx, float (&s)[4][4])
{
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
            s[i][j] = 0.f;
#pragma unroll 8
    for (int c = 0; c < D; c++) {
        const float4 a = *reinterpret_cast<const float4 *>(&sm.qt[c][ty * 4]);
        const float4 b = *reinterpret_cast<const float4 *>(&sm.kt[c][tx * 4]);
        const float av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++)
                s[i][j] = fmaf(av[i], bv[j], s[i][j]);
    }
    /* The levels' dot products are exact; the steps scale them.  Rounded
     * here (no contraction into a later fused multiply-add), so that every
     * pass sees the same score: the row's maximum is then exactly 0 below
     * itself in the exponent. */
    if (QUANT)
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++)
                s[i][j] = __fmul_rn(s[i][j], __fmul_rn(sm.sq[ty * 4 + i], sm.sk[tx * 4 + j]));
}

/* out[i][cc] = sum over the 64 keys of e[row][key] v[key][col], rows ty*4 + i,
 * columns tx*CW + cc. */
template <int D>
__device__ __forceinline__ void times_v(const Tiles<D> &sm, const float (*e)[kKeys + 4], int ty,
                                        int tx, float (&out)[4][D / 16])
{
    constexpr int CW = D / 16;
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int cc = 0; cc < CW; cc++)
            out[i][cc] = 0.f;
#pragma unroll 4
    for (int j = 0; j < kKeys; j++) {
        float vv[CW];
#pragma unroll
        for (int cc = 0; cc < CW; cc++)
            vv[cc] = sm.v[j][tx * CW + cc];
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const float w = e[ty * 4 + i][j];
#pragma unroll
            for (int cc = 0; cc < CW; cc++)
                out[i][cc] = fmaf(w, vv[cc], out[i][cc]);
        }
    }
}

/* Sums the rows' values red[0..63][k] in row order, one thread per k. */
template <int D>
__device__ __forceinline__ void block_sums(const Tiles<D> &sm, int count, double *dst)
{
    if (threadIdx.x < count) {
        double acc = 0.0;
        for (int r = 0; r < kRows; r++)
            acc += (double)sm.red[r][threadIdx.x];
        dst[threadIdx.x] = acc;
    }
}

/* One tile's probabilities p (the thread's 4 x 4) into the outputs: E V
 * added to the dense accumulator and, for exact, to every set that keeps
 * the tile; for quant_out, P quantized with the tile's largest value, INT8
 * into acc and INT4 into acc2. */
template <int D, int MODE>
__device__ __forceinline__ void accumulate_tile(
    const EvArgs &a, Tiles<D> &sm, const float (&p)[4][4], int ty, int tx, int head, int qblock,
    int kb, size_t tiles, const int (&set_id)[kMaxSets], float (&zsum)[4],
    float (&acc)[4][D / 16], float (&acc2)[4][D / 16], float (&set_o)[kMaxSets][4][D / 16],
    float (&set_z)[kMaxSets][4])
{
    constexpr int CW = D / 16;
    float row_part[4] = {0.f, 0.f, 0.f, 0.f};
    if constexpr (MODE == QUANT_OUT) {
        /* the order's tile: the maxima of its 64-row and 64-key pieces */
        const int c0 = qblock * (a.bq / kRows), s0 = kb * (a.bk / kKeys);
        float t = 0.f;
        for (int ci = c0; ci < c0 + a.bq / kRows && ci < a.ctas; ci++)
            for (int si = s0; si < s0 + a.bk / kKeys && si < a.ctas; si++)
                t = fmaxf(t, a.tmax[((size_t)head * a.ctas + ci) * a.ctas + si]);
        const float step8 = t / 127.f, step4 = t / 7.f;
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++) {
                sm.e[ty * 4 + i][tx * 4 + j] = step8 > 0.f ? rintf(p[i][j] / step8) * step8 : 0.f;
                sm.e2[ty * 4 + i][tx * 4 + j] = step4 > 0.f ? rintf(p[i][j] / step4) * step4 : 0.f;
            }
    } else {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            float part = 0.f;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                sm.e[ty * 4 + i][tx * 4 + j] = p[i][j];
                part += p[i][j];
            }
            row_part[i] = sum16(part);
            zsum[i] += row_part[i];
        }
    }
    __syncthreads();
    float ev[4][CW];
    times_v<D>(sm, sm.e, ty, tx, ev);
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int cc = 0; cc < CW; cc++)
            acc[i][cc] += ev[i][cc];
    if constexpr (MODE == QUANT_OUT) {
        times_v<D>(sm, sm.e2, ty, tx, ev);
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int cc = 0; cc < CW; cc++)
                acc2[i][cc] += ev[i][cc];
    } else {
#pragma unroll
        for (int s2 = 0; s2 < kMaxSets; s2++) {
            if (set_id[s2] < 0)
                continue;
            const uint8_t *keep = a.keep + ((size_t)head * a.n_sets + set_id[s2]) * tiles;
            if (!keep[(size_t)qblock * a.nk + kb])
                continue;
#pragma unroll
            for (int i = 0; i < 4; i++) {
                set_z[s2][i] += row_part[i];
#pragma unroll
                for (int cc = 0; cc < CW; cc++)
                    set_o[s2][i][cc] += ev[i][cc];
            }
        }
    }
}

/* EXACT's end: the dense output, then each set's sums against it. */
template <int D>
__device__ __forceinline__ void exact_sums(const EvArgs &a, Tiles<D> &sm, int ty, int tx, int head,
                                           int cta, size_t head_off, const int (&tok)[4],
                                           const bool (&valid)[4], const float (&zsum)[4],
                                           const float (&acc)[4][D / 16],
                                           const int (&set_id)[kMaxSets],
                                           const float (&set_o)[kMaxSets][4][D / 16],
                                           const float (&set_z)[kMaxSets][4])
{
    constexpr int CW = D / 16;
    __syncthreads(); /* red is reused */
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float o[CW], norm = 0.f;
        const float inv = valid[i] && zsum[i] > 0.f ? 1.f / zsum[i] : 0.f;
#pragma unroll
        for (int cc = 0; cc < CW; cc++) {
            o[cc] = acc[i][cc] * inv;
            norm += o[cc] * o[cc];
        }
        if (a.write_o && valid[i]) {
            float *dst = a.o + head_off + (size_t)tok[i] * D + tx * CW;
#pragma unroll
            for (int cc = 0; cc < CW; cc++)
                dst[cc] = o[cc];
        }
        norm = sum16(norm);
        float sums[kMaxSets][kSetSums];
#pragma unroll
        for (int s2 = 0; s2 < kMaxSets; s2++) {
            float err2 = 0.f, dot = 0.f, norm2 = 0.f;
            const bool tiny = set_z[s2][i] < kTinyKept;
            if (!tiny) {
                const float w = 1.f / set_z[s2][i];
#pragma unroll
                for (int cc = 0; cc < CW; cc++) {
                    const float om = set_o[s2][i][cc] * w, diff = om - o[cc];
                    err2 += diff * diff;
                    dot += om * o[cc];
                    norm2 += om * om;
                }
            }
            sums[s2][0] = valid[i] ? set_z[s2][i] * inv : 0.f;
            sums[s2][1] = sum16(err2);
            sums[s2][2] = sum16(dot);
            sums[s2][3] = sum16(norm2);
            if (tiny && tx == 0 && valid[i] && set_id[s2] >= 0) {
                const unsigned at = atomicAdd(a.n_flags, 1u);
                if (at < a.cap_flags) {
                    a.flags[3 * at] = (uint32_t)head;
                    a.flags[3 * at + 1] = (uint32_t)set_id[s2];
                    a.flags[3 * at + 2] = (uint32_t)tok[i];
                }
            }
        }
        if (tx == 0) {
            sm.red[ty * 4 + i][0] = valid[i] ? norm : 0.f;
#pragma unroll
            for (int s2 = 0; s2 < kMaxSets; s2++)
#pragma unroll
                for (int x = 0; x < kSetSums; x++)
                    sm.red[ty * 4 + i][1 + s2 * kSetSums + x] = valid[i] ? sums[s2][x] : 0.f;
        }
    }
    __syncthreads();
    block_sums<D>(sm, kExactSums, a.part + ((size_t)head * a.ctas + cta) * kExactSums);
}

template <int D, int MODE, bool QUANT>
__global__ void __launch_bounds__(kThreads) eval_kernel(EvArgs a)
{
    constexpr int CW = D / 16;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    Tiles<D> &sm = *reinterpret_cast<Tiles<D> *>(smem_raw);
    const int head = blockIdx.y, cta = blockIdx.x, n = a.n;
    const int slot = a.slots[2 * head + a.side];
    if (a.side == 1 && slot == a.slots[2 * head]) /* chosen order is capture order */
        return;
    if (MODE == EXACT && a.set_ids[head * kMaxSets] < 0 && !a.write_o)
        return; /* nothing to accumulate for this head */
    const uint32_t *perm = a.perms + (size_t)slot * n;
    const int ty = threadIdx.x >> 4, tx = threadIdx.x & 15;
    const int pos0 = cta * kRows;
    const size_t head_off = (size_t)head * n * D;
    const float *q = a.q + head_off, *k = a.k + head_off, *v = a.v + head_off;
    const float *sq = QUANT ? a.sq + (size_t)head * n : nullptr;
    const float *sk = QUANT ? a.sk + (size_t)head * n : nullptr;
    const int qblock = pos0 / a.bq; /* 64 divides the block size */

    /* the thread's four rows */
    int tok[4];
    bool valid[4];
    float m[4], z[4];
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int pos = pos0 + ty * 4 + i;
        valid[i] = pos < n;
        tok[i] = valid[i] ? (int)__ldg(perm + pos) : 0;
        if (MODE == ROW_STATS) {
            m[i] = -INFINITY;
            z[i] = 0.f;
        } else {
            m[i] = valid[i] ? a.row_max[(size_t)head * n + tok[i]] : INFINITY;
            z[i] = valid[i] ? a.row_z[(size_t)head * n + tok[i]] : 1.f;
        }
    }
    load_transposed<D>(sm.qt, q, perm, pos0, n, sq, sm.sq);

    float acc[4][CW], acc2[4][CW], zsum[4];
    float set_o[kMaxSets][4][CW], set_z[kMaxSets][4];
    int set_id[kMaxSets];
#pragma unroll
    for (int i = 0; i < 4; i++) {
        zsum[i] = 0.f;
#pragma unroll
        for (int cc = 0; cc < CW; cc++)
            acc[i][cc] = acc2[i][cc] = 0.f;
    }
#pragma unroll
    for (int s = 0; s < kMaxSets; s++) {
        set_id[s] = MODE == EXACT ? a.set_ids[head * kMaxSets + s] : -1;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            set_z[s][i] = 0.f;
#pragma unroll
            for (int cc = 0; cc < CW; cc++)
                set_o[s][i][cc] = 0.f;
        }
    }
    const size_t tiles = (size_t)a.nq * a.nk;

    for (int step = 0; step < a.ctas; step++) {
        const int kpos0 = step * kKeys, kb = kpos0 / a.bk;
        __syncthreads(); /* the previous step is done with kt, v and e */
        load_transposed<D>(sm.kt, k, perm, kpos0, n, sk, sm.sk);
        if (MODE == EXACT || MODE == QUANT_OUT)
            load_rows<D>(sm.v, v, perm, kpos0, n);
        __syncthreads();
        float s[4][4];
        scores<D, QUANT>(sm, ty, tx, s);
        bool key_ok[4];
#pragma unroll
        for (int j = 0; j < 4; j++)
            key_ok[j] = kpos0 + tx * 4 + j < n;

        if constexpr (MODE == ROW_STATS) {
#pragma unroll
            for (int i = 0; i < 4; i++) {
                float top = -INFINITY;
#pragma unroll
                for (int j = 0; j < 4; j++)
                    if (key_ok[j])
                        top = fmaxf(top, s[i][j]);
                const float m_new = fmaxf(m[i], max16(top));
                float part = 0.f;
#pragma unroll
                for (int j = 0; j < 4; j++)
                    if (key_ok[j])
                        part += ex2((s[i][j] - m_new) * a.c);
                z[i] = z[i] * ex2((m[i] - m_new) * a.c) + part;
                m[i] = m_new;
            }
        } else {
            /* probabilities (exact: unnormalised exponentials) */
            float p[4][4];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    const float x = ex2((s[i][j] - m[i]) * a.c);
                    p[i][j] = key_ok[j] && valid[i] ? (MODE == EXACT ? x : x / z[i]) : 0.f;
                }
            if constexpr (MODE == TILE_MAX) {
                float tile_top = 0.f;
#pragma unroll
                for (int i = 0; i < 4; i++)
#pragma unroll
                    for (int j = 0; j < 4; j++)
                        tile_top = fmaxf(tile_top, p[i][j]);
                tile_top = max16(tile_top);
                tile_top = fmaxf(tile_top, __shfl_xor_sync(0xffffffffu, tile_top, 16));
                if ((threadIdx.x & 31) == 0)
                    sm.red[threadIdx.x >> 5][0] = tile_top;
                __syncthreads();
                if (threadIdx.x == 0) {
                    float top = 0.f;
                    for (int w = 0; w < kThreads / 32; w++)
                        top = fmaxf(top, sm.red[w][0]);
                    a.tmax[((size_t)head * a.ctas + cta) * a.ctas + step] = top;
                }
            } else {
                accumulate_tile<D, MODE>(a, sm, p, ty, tx, head, qblock, kb, tiles, set_id, zsum,
                                         acc, acc2, set_o, set_z);
            }
        }
    }

    if constexpr (MODE == ROW_STATS) {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const float sum = sum16(z[i]);
            if (tx == 0 && valid[i]) {
                a.row_max[(size_t)head * n + tok[i]] = m[i];
                a.row_z[(size_t)head * n + tok[i]] = sum;
            }
        }
    } else if constexpr (MODE == QUANT_OUT) {
        __syncthreads(); /* red is reused */
#pragma unroll
        for (int i = 0; i < 4; i++) {
            float err8 = 0.f, err4 = 0.f;
            if (valid[i]) {
                const float *o = a.o + head_off + (size_t)tok[i] * D + tx * CW;
#pragma unroll
                for (int cc = 0; cc < CW; cc++) {
                    const float d8 = acc[i][cc] - o[cc], d4 = acc2[i][cc] - o[cc];
                    err8 += d8 * d8;
                    err4 += d4 * d4;
                }
            }
            err8 = sum16(err8);
            err4 = sum16(err4);
            if (tx == 0) {
                sm.red[ty * 4 + i][0] = err8;
                sm.red[ty * 4 + i][1] = err4;
            }
        }
        __syncthreads();
        block_sums<D>(sm, 2, a.part + ((size_t)head * a.ctas + cta) * 2);
    } else if constexpr (MODE == EXACT) {
        exact_sums<D>(a, sm, ty, tx, head, cta, head_off, tok, valid, zsum, acc, set_id, set_o,
                      set_z);
    }
}

/* Q (which 0) or K (1) of one head in INT8 levels per block of the head's
 * order on `side`: step = largest |x| over the block / 127, level =
 * round-half-even(x / step), in fp64 as the reference does. */
template <int D>
__global__ void __launch_bounds__(kThreads) quantize_kernel(const float *x, float *levels,
                                                             float *steps, const uint32_t *perms,
                                                             const int *slots, int side, int n,
                                                             int block)
{
    __shared__ float red[kThreads / 32];
    const int head = blockIdx.y, slot = slots[2 * head + side];
    if (side == 1 && slot == slots[2 * head])
        return;
    const uint32_t *perm = perms + (size_t)slot * n;
    const int lo = blockIdx.x * block, hi = lo + block < n ? lo + block : n;
    const size_t off = (size_t)head * n * D;
    float amax = 0.f;
    for (int idx = threadIdx.x; idx < (hi - lo) * D; idx += kThreads)
        amax = fmaxf(amax, fabsf(x[off + (size_t)perm[lo + idx / D] * D + idx % D]));
    for (int w = 16; w > 0; w >>= 1)
        amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, w));
    if ((threadIdx.x & 31) == 0)
        red[threadIdx.x >> 5] = amax;
    __syncthreads();
    amax = 0.f;
    for (int w = 0; w < kThreads / 32; w++)
        amax = fmaxf(amax, red[w]);
    const double step = (double)amax / 127.0;
    for (int idx = threadIdx.x; idx < (hi - lo) * D; idx += kThreads) {
        const size_t at = off + (size_t)perm[lo + idx / D] * D + idx % D;
        levels[at] = step > 0.0 ? (float)rint((double)x[at] / step) : 0.f;
    }
    for (int p = lo + (int)threadIdx.x; p < hi; p += kThreads)
        steps[(size_t)head * n + perm[p]] = (float)step;
}

} // namespace

/* ---- the context ------------------------------------------------------------ */

struct paro_cuda_eval {
    int device;
    paro_cuda_eval_geometry g;
    size_t per_tensor;
    int ctas;
    cudaStream_t stream;
    float *q, *k, *v, *o, *qq, *kq, *sq, *sk, *row_max, *row_z;
    float *host_q, *host_k, *host_v; /* pinned */
    uint32_t *perms;
    int *slots;
    uint8_t *keep;
    int *set_ids;
    double *part;      /* [heads][ctas][kExactSums] */
    double *part_host; /* pinned */
    float *tmax;
    unsigned *n_flags;
    uint32_t *flags;
    unsigned cap_flags;
    int *set_ids_host;
    int *next_set;     /* [heads]: run()'s scratch */
};

extern "C" int paro_cuda_eval_supports(const paro_cuda_eval_geometry *g, paro_errinfo *ei)
{
    if (g->head_dim != 32 && g->head_dim != 64 && g->head_dim != 128) {
        paro_error(ei, PARO_ERR_USAGE, NULL, PARO_NO_OFFSET,
                   "the cuda eval kernels handle head_dim 32, 64 and 128, not %u", g->head_dim);
        return 0;
    }
    if ((g->block_q != 64 && g->block_q != 128) || (g->block_k != 64 && g->block_k != 128)) {
        paro_error(ei, PARO_ERR_USAGE, NULL, PARO_NO_OFFSET,
                   "the cuda eval kernels handle blocks of 64 or 128 tokens, not %ux%u",
                   g->block_q, g->block_k);
        return 0;
    }
    if (g->n_tokens >= (1u << 28)) {
        paro_error(ei, PARO_ERR_USAGE, NULL, PARO_NO_OFFSET,
                   "too many tokens for the cuda eval kernels");
        return 0;
    }
    return 1;
}

extern "C" void paro_cuda_eval_close(paro_cuda_eval *ev)
{
    if (!ev)
        return;
    cudaSetDevice(ev->device);
    if (ev->stream)
        cudaStreamSynchronize(ev->stream);
    void *dev_ptrs[] = {ev->q,     ev->k,    ev->v,     ev->o,       ev->qq,    ev->kq,
                        ev->sq,    ev->sk,   ev->row_max, ev->row_z, ev->perms, ev->slots,
                        ev->keep,  ev->set_ids, ev->part, ev->tmax,  ev->n_flags, ev->flags};
    for (size_t i = 0; i < sizeof dev_ptrs / sizeof *dev_ptrs; i++)
        cudaFree(dev_ptrs[i]);
    cudaFreeHost(ev->host_q);
    cudaFreeHost(ev->host_k);
    cudaFreeHost(ev->host_v);
    cudaFreeHost(ev->part_host);
    free(ev->set_ids_host);
    free(ev->next_set);
    if (ev->stream)
        cudaStreamDestroy(ev->stream);
    free(ev);
}

typedef void (*eval_fn)(EvArgs);

template <int D> eval_fn pick_mode(int mode, bool quant)
{
    switch (mode) {
    case ROW_STATS:
        return quant ? eval_kernel<D, ROW_STATS, true> : eval_kernel<D, ROW_STATS, false>;
    case EXACT:
        return eval_kernel<D, EXACT, false>;
    case TILE_MAX:
        return eval_kernel<D, TILE_MAX, true>;
    default:
        return eval_kernel<D, QUANT_OUT, true>;
    }
}

static eval_fn pick_eval(int d, int mode, bool quant)
{
    return d == 32 ? pick_mode<32>(mode, quant) : d == 64 ? pick_mode<64>(mode, quant)
                                                           : pick_mode<128>(mode, quant);
}

static size_t eval_smem(int d)
{
    return d == 32 ? sizeof(Tiles<32>) : d == 64 ? sizeof(Tiles<64>) : sizeof(Tiles<128>);
}

typedef void (*quant_fn)(const float *, float *, float *, const uint32_t *, const int *, int, int,
                         int);

static quant_fn pick_quantize(int d)
{
    return d == 32 ? quantize_kernel<32> : d == 64 ? quantize_kernel<64> : quantize_kernel<128>;
}

static paro_err eval_alloc(paro_cuda_eval *ev, void **p, size_t bytes, paro_errinfo *ei)
{
    CUDA_TRY(ei, ev->device, cudaMalloc(p, bytes));
    return PARO_OK;
}

extern "C" paro_err paro_cuda_eval_open(paro_cuda_eval **out, int device,
                                        const paro_cuda_eval_geometry *g, paro_errinfo *ei)
{
    *out = NULL;
    if (!paro_cuda_eval_supports(g, ei))
        return PARO_ERR_USAGE;
    paro_cuda_eval *ev = (paro_cuda_eval *)calloc(1, sizeof *ev);
    if (!ev)
        return paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory");
    ev->device = device;
    ev->g = *g;
    ev->g.perms = NULL;
    const size_t n = g->n_tokens, heads = g->heads;
    ev->per_tensor = heads * n * g->head_dim;
    ev->ctas = (int)((n + kRows - 1) / kRows);
    ev->cap_flags = 1u << 16;
    const size_t rows = heads * n, tiles = (size_t)g->nq * g->nk;
    const size_t parts = heads * (size_t)ev->ctas * kExactSums;
    paro_err rc = PARO_OK;
    cudaError_t err = cudaSetDevice(device);
    if (err == cudaSuccess)
        err = cudaStreamCreateWithFlags(&ev->stream, cudaStreamNonBlocking);
    if (err != cudaSuccess) {
        rc = paro_cuda_fail(ei, device, err, "open the eval context", __FILE__, __LINE__);
        paro_cuda_eval_close(ev);
        return rc;
    }
    const size_t tensor_bytes = ev->per_tensor * sizeof(float);
    if ((rc = eval_alloc(ev, (void **)&ev->q, tensor_bytes, ei)) ||
        (rc = eval_alloc(ev, (void **)&ev->k, tensor_bytes, ei)) ||
        (rc = eval_alloc(ev, (void **)&ev->v, tensor_bytes, ei)) ||
        (rc = eval_alloc(ev, (void **)&ev->o, tensor_bytes, ei)) ||
        (rc = eval_alloc(ev, (void **)&ev->qq, tensor_bytes, ei)) ||
        (rc = eval_alloc(ev, (void **)&ev->kq, tensor_bytes, ei)) ||
        (rc = eval_alloc(ev, (void **)&ev->sq, rows * sizeof(float), ei)) ||
        (rc = eval_alloc(ev, (void **)&ev->sk, rows * sizeof(float), ei)) ||
        (rc = eval_alloc(ev, (void **)&ev->row_max, rows * sizeof(float), ei)) ||
        (rc = eval_alloc(ev, (void **)&ev->row_z, rows * sizeof(float), ei)) ||
        (rc = eval_alloc(ev, (void **)&ev->perms, (size_t)g->n_slots * n * 4, ei)) ||
        (rc = eval_alloc(ev, (void **)&ev->slots, heads * 2 * sizeof(int), ei)) ||
        (rc = eval_alloc(ev, (void **)&ev->keep, heads * g->n_sets * tiles, ei)) ||
        (rc = eval_alloc(ev, (void **)&ev->set_ids, heads * kMaxSets * sizeof(int), ei)) ||
        (rc = eval_alloc(ev, (void **)&ev->part, parts * sizeof(double), ei)) ||
        (rc = eval_alloc(ev, (void **)&ev->tmax,
                         heads * (size_t)ev->ctas * ev->ctas * sizeof(float), ei)) ||
        (rc = eval_alloc(ev, (void **)&ev->n_flags, sizeof(unsigned), ei)) ||
        (rc = eval_alloc(ev, (void **)&ev->flags, 3 * (size_t)ev->cap_flags * 4, ei))) {
        paro_cuda_eval_close(ev);
        return rc;
    }
    ev->set_ids_host = (int *)malloc(heads * kMaxSets * sizeof(int));
    ev->next_set = (int *)malloc(heads * sizeof(int));
    if (!ev->set_ids_host || !ev->next_set) {
        paro_cuda_eval_close(ev);
        return paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory");
    }
    err = cudaMallocHost((void **)&ev->host_q, tensor_bytes);
    if (err == cudaSuccess)
        err = cudaMallocHost((void **)&ev->host_k, tensor_bytes);
    if (err == cudaSuccess)
        err = cudaMallocHost((void **)&ev->host_v, tensor_bytes);
    if (err == cudaSuccess)
        err = cudaMallocHost((void **)&ev->part_host, parts * sizeof(double));
    if (err == cudaSuccess)
        err = cudaMemcpy(ev->perms, g->perms, (size_t)g->n_slots * n * 4, cudaMemcpyHostToDevice);
    const int d = (int)g->head_dim;
    for (int mode = ROW_STATS; err == cudaSuccess && mode <= QUANT_OUT; mode++)
        for (int quant = 0; err == cudaSuccess && quant < 2; quant++)
            err = cudaFuncSetAttribute(pick_eval(d, mode, quant), cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       (int)eval_smem(d));
    if (err != cudaSuccess) {
        rc = paro_cuda_fail(ei, device, err, "set up the eval context", __FILE__, __LINE__);
        paro_cuda_eval_close(ev);
        return rc;
    }
    *out = ev;
    return PARO_OK;
}

extern "C" paro_err paro_cuda_eval_buffers(paro_cuda_eval *ev, float **q, float **k, float **v,
                                           paro_errinfo *ei)
{
    (void)ei; /* run() returns only once the GPU is done with them */
    *q = ev->host_q;
    *k = ev->host_k;
    *v = ev->host_v;
    return PARO_OK;
}

static EvArgs base_args(const paro_cuda_eval *ev)
{
    const paro_cuda_eval_geometry *g = &ev->g;
    EvArgs a;
    memset(&a, 0, sizeof a);
    a.n = (int)g->n_tokens;
    a.nq = (int)g->nq;
    a.nk = (int)g->nk;
    a.bq = (int)g->block_q;
    a.bk = (int)g->block_k;
    a.ctas = ev->ctas;
    a.c = (float)(g->scale * 1.4426950408889634);
    a.q = ev->q;
    a.k = ev->k;
    a.v = ev->v;
    a.perms = ev->perms;
    a.slots = ev->slots;
    a.row_max = ev->row_max;
    a.row_z = ev->row_z;
    a.keep = ev->keep;
    a.n_sets = (int)g->n_sets;
    a.set_ids = ev->set_ids;
    a.o = ev->o;
    a.part = ev->part;
    a.tmax = ev->tmax;
    a.n_flags = ev->n_flags;
    a.flags = ev->flags;
    a.cap_flags = ev->cap_flags;
    return a;
}

static paro_err launch(paro_cuda_eval *ev, int mode, bool quant, const EvArgs &a, paro_errinfo *ei)
{
    dim3 grid((unsigned)ev->ctas, ev->g.heads);
    pick_eval((int)ev->g.head_dim, mode, quant)<<<grid, kThreads, eval_smem((int)ev->g.head_dim),
                                                  ev->stream>>>(a);
    CUDA_TRY(ei, ev->device, cudaGetLastError());
    return PARO_OK;
}

/* Downloads the per-block partial sums (`count` numbers per head and
 * block) into part_host, for the caller to add up block by block. */
static paro_err fetch_parts(paro_cuda_eval *ev, int count, paro_errinfo *ei)
{
    const size_t n_parts = (size_t)ev->g.heads * ev->ctas * count;
    CUDA_TRY(ei, ev->device, cudaMemcpyAsync(ev->part_host, ev->part, n_parts * sizeof(double),
                                             cudaMemcpyDeviceToHost, ev->stream));
    CUDA_TRY(ei, ev->device, cudaStreamSynchronize(ev->stream));
    return PARO_OK;
}

static int cmp_flag(const void *x, const void *y)
{
    const uint32_t *a = (const uint32_t *)x, *b = (const uint32_t *)y;
    for (int i = 0; i < 3; i++)
        if (a[i] != b[i])
            return a[i] < b[i] ? -1 : 1;
    return 0;
}

extern "C" paro_err paro_cuda_eval_run(paro_cuda_eval *ev, const paro_cuda_eval_sample *s,
                                       paro_cuda_eval_out *out, paro_errinfo *ei)
{
    const paro_cuda_eval_geometry *g = &ev->g;
    const int dev = ev->device, heads = (int)g->heads, n_sets = (int)g->n_sets;
    const size_t tiles = (size_t)g->nq * g->nk, bytes = ev->per_tensor * sizeof(float);
    CUDA_TRY(ei, dev, cudaSetDevice(dev));
    CUDA_TRY(ei, dev, cudaMemcpyAsync(ev->q, ev->host_q, bytes, cudaMemcpyHostToDevice, ev->stream));
    CUDA_TRY(ei, dev, cudaMemcpyAsync(ev->k, ev->host_k, bytes, cudaMemcpyHostToDevice, ev->stream));
    CUDA_TRY(ei, dev, cudaMemcpyAsync(ev->v, ev->host_v, bytes, cudaMemcpyHostToDevice, ev->stream));
    CUDA_TRY(ei, dev, cudaMemcpyAsync(ev->slots, s->slot, (size_t)heads * 2 * sizeof(int),
                                      cudaMemcpyHostToDevice, ev->stream));
    CUDA_TRY(ei, dev, cudaMemcpyAsync(ev->keep, s->keep, (size_t)heads * n_sets * tiles,
                                      cudaMemcpyHostToDevice, ev->stream));
    CUDA_TRY(ei, dev, cudaMemsetAsync(ev->n_flags, 0, sizeof(unsigned), ev->stream));
    memset(out->norm_o, 0, (size_t)heads * sizeof *out->norm_o);
    memset(out->sets, 0, (size_t)heads * n_sets * 4 * sizeof *out->sets);
    memset(out->quant, 0, (size_t)heads * 4 * sizeof *out->quant);

    paro_err rc;
    EvArgs a = base_args(ev);
    /* the rows' statistics, in capture order's blocks (any order would do) */
    a.side = 0;
    if ((rc = launch(ev, ROW_STATS, false, a, ei)))
        return rc;
    /* exact passes: capture order first (it writes the dense output), then
     * the chosen orders; each launch takes up to kMaxSets sets per head */
    for (int side = 0; side < 2; side++) {
        int *next = ev->next_set; /* per head: the next set to take */
        memset(next, 0, (size_t)heads * sizeof *next);
        for (int round = 0;; round++) {
            int any = 0;
            for (int h = 0; h < heads; h++) {
                const int same = s->slot[2 * h] == s->slot[2 * h + 1];
                for (int x = 0; x < kMaxSets; x++) {
                    int id = -1;
                    while (next[h] < n_sets) {
                        const int set = next[h]++;
                        /* a head whose chosen order is capture order does
                         * all its sets in the capture pass */
                        if (same ? side == 0 : s->set_side[set] == side) {
                            id = set;
                            break;
                        }
                    }
                    ev->set_ids_host[h * kMaxSets + x] = id;
                    any |= id >= 0;
                }
            }
            const int write_o = side == 0 && round == 0;
            if (!any && !write_o)
                break;
            CUDA_TRY(ei, dev, cudaMemcpyAsync(ev->set_ids, ev->set_ids_host,
                                              (size_t)heads * kMaxSets * sizeof(int),
                                              cudaMemcpyHostToDevice, ev->stream));
            a.side = side;
            a.write_o = write_o;
            CUDA_TRY(ei, dev, cudaMemsetAsync(ev->part, 0,
                                              (size_t)heads * ev->ctas * kExactSums * sizeof(double),
                                              ev->stream));
            if ((rc = launch(ev, EXACT, false, a, ei)) || (rc = fetch_parts(ev, kExactSums, ei)))
                return rc;
            for (int h = 0; h < heads; h++)
                for (int c = 0; c < ev->ctas; c++) { /* blocks in order */
                    const double *p = ev->part_host + ((size_t)h * ev->ctas + c) * kExactSums;
                    if (write_o)
                        out->norm_o[h] += p[0];
                    for (int x = 0; x < kMaxSets; x++) {
                        const int id = ev->set_ids_host[h * kMaxSets + x];
                        if (id < 0)
                            continue;
                        double *dst = out->sets + ((size_t)h * n_sets + id) * 4;
                        for (int y = 0; y < kSetSums; y++)
                            dst[y] += p[1 + x * kSetSums + y];
                    }
                }
            if (!any)
                break;
        }
    }
    /* quantized outputs, capture order then the chosen ones */
    for (int side = 0; side < 2; side++) {
        quant_fn qf = pick_quantize((int)g->head_dim);
        dim3 qgrid(g->nq, g->heads), kgrid(g->nk, g->heads);
        qf<<<qgrid, kThreads, 0, ev->stream>>>(ev->q, ev->qq, ev->sq, ev->perms, ev->slots, side,
                                               (int)g->n_tokens, (int)g->block_q);
        CUDA_TRY(ei, dev, cudaGetLastError());
        qf<<<kgrid, kThreads, 0, ev->stream>>>(ev->k, ev->kq, ev->sk, ev->perms, ev->slots, side,
                                               (int)g->n_tokens, (int)g->block_k);
        CUDA_TRY(ei, dev, cudaGetLastError());
        EvArgs b = base_args(ev);
        b.q = ev->qq;
        b.k = ev->kq;
        b.sq = ev->sq;
        b.sk = ev->sk;
        b.side = side;
        b.row_max = ev->row_max; /* the quantized scores' own statistics replace the exact ones */
        b.row_z = ev->row_z;
        CUDA_TRY(ei, dev, cudaMemsetAsync(ev->part, 0, (size_t)heads * ev->ctas * 2 * sizeof(double),
                                          ev->stream));
        if ((rc = launch(ev, ROW_STATS, true, b, ei)) || (rc = launch(ev, TILE_MAX, true, b, ei)) ||
            (rc = launch(ev, QUANT_OUT, true, b, ei)) || (rc = fetch_parts(ev, 2, ei)))
            return rc;
        for (int h = 0; h < heads; h++) {
            const int same = s->slot[2 * h] == s->slot[2 * h + 1];
            double *dst = out->quant + (size_t)h * 4 + side * 2;
            if (side == 1 && same) {
                dst[0] = out->quant[(size_t)h * 4];
                dst[1] = out->quant[(size_t)h * 4 + 1];
                continue;
            }
            for (int c = 0; c < ev->ctas; c++) {
                const double *p = ev->part_host + ((size_t)h * ev->ctas + c) * 2;
                dst[0] += p[0];
                dst[1] += p[1];
            }
        }
    }
    /* rows for the host to redo, in a fixed order */
    unsigned n_flags = 0;
    CUDA_TRY(ei, dev, cudaMemcpyAsync(&n_flags, ev->n_flags, sizeof n_flags, cudaMemcpyDeviceToHost,
                                      ev->stream));
    CUDA_TRY(ei, dev, cudaStreamSynchronize(ev->stream));
    if (n_flags > ev->cap_flags || n_flags > out->cap_flags)
        return paro_error(ei, PARO_ERR_LIMIT, NULL, PARO_NO_OFFSET,
                          "%u rows keep sums of exponentials below f32's range: more than "
                          "the cuda eval can hand back (%u); use --device cpu",
                          n_flags, out->cap_flags < ev->cap_flags ? out->cap_flags : ev->cap_flags);
    CUDA_TRY(ei, dev, cudaMemcpy(out->flags, ev->flags, (size_t)n_flags * 3 * sizeof(uint32_t),
                                 cudaMemcpyDeviceToHost));
    qsort(out->flags, n_flags, 3 * sizeof(uint32_t), cmp_flag);
    out->n_flags = n_flags;
    return PARO_OK;
}
