/* paro — tile statistics on the GPU: the CUDA counterpart of
 * paro_tile_stats_cpu (calib/tile_stats.c), which defines the results.
 *
 * Two passes per layer-sample, in the flash-attention style (S = Q K^T is
 * computed tile by tile with tensor cores and never stored):
 *   1. row_stats_kernel: for every query row, the row maximum of scale*QK^T
 *      and the sum of exp(s - max), with the online rescaling of flash
 *      attention, over the keys in capture order;
 *   2. tile_stats_kernel: for every distinct order (blockIdx.z), every head
 *      and query block of that order, loop over the key blocks of the order,
 *      gathering the rows of Q and K through the order's permutation, and
 *      reduce p = exp(s - max) / sum over each tile to its sum (mass) and
 *      maximum (peak).  One thread block owns a query block's row of tiles,
 *      so every tile is reduced by one block in a fixed order: no atomics,
 *      results identical run to run.  The block adds them into per-layer
 *      accumulators (sum over samples), so only the layer's totals ever
 *      leave the GPU.
 * Inputs are bf16.  Captures that are not exactly bf16 (f16, f32) are split
 * into hi + lo bf16 parts and S is accumulated as hi*hi + hi*lo + lo*hi,
 * which keeps it within ~2^-16 relative of the f32 product.
 */
#include <cuda_bf16.h>    /* __nv_bfloat16, __float2bfloat16_rn */
#include <cuda_runtime.h> /* cudaMalloc, streams, events */
#include <math.h>         /* INFINITY */
#include <stdint.h>       /* uint32_t */
#include <stdlib.h>       /* calloc, free */
#include <string.h>       /* memset */

#include "cuda_check.h"
#include "kernels.h"

namespace {

constexpr int kRowKeys = 64; /* keys per step of the row-statistics pass */
constexpr size_t kChunkFloats = size_t(8) << 20; /* f32 upload staging: 32 MiB */

/* ---- PTX helpers ---------------------------------------------------- */

__device__ __forceinline__ uint32_t smem_addr(const void *p)
{
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, int src_bytes)
{
    /* src_bytes 0 fills the 16 bytes with zeros: rows past the sequence. */
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
                 "r"(src_bytes));
}

__device__ __forceinline__ void cp_async_commit()
{
    asm volatile("cp.async.commit_group;\n" ::);
}

template <int N> __device__ __forceinline__ void cp_async_wait()
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t addr, uint32_t (&r)[4])
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ float ex2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

/* ---- shared-memory tiles ------------------------------------------------- */

/* A tile is ROWS rows of D bf16 (D*2 bytes), in 16-byte chunks whose order
 * within a row is XOR-swizzled by the row so that ldmatrix's eight rows at
 * the same chunk fall in distinct banks. */
template <int D> struct Tile {
    static constexpr int kRowBytes = D * 2;
    static constexpr int kChunks = D / 8;
    __device__ static __forceinline__ int swizzle(int row, int chunk)
    {
        return kChunks >= 8 ? chunk ^ (row & 7) : chunk ^ ((row >> 1) & 3);
    }
    __device__ static __forceinline__ uint32_t at(uint32_t base, int row, int chunk)
    {
        return base + row * kRowBytes + swizzle(row, chunk) * 16;
    }
};

/* Loads ROWS rows starting at sequence position pos0 (row r holds token
 * perm[pos0 + r], or pos0 + r when perm is null); positions >= n read as 0.
 * Threads split rows rather than chunks, so each looks up one token and
 * computes one address and swizzle per row, not per 16 bytes. */
template <int D, int ROWS, int THREADS>
__device__ __forceinline__ void load_rows(uint32_t smem, const __nv_bfloat16 *src,
                                          const uint32_t *perm, int pos0, int n)
{
    constexpr int kChunks = Tile<D>::kChunks;
    constexpr int kPerRow = THREADS >= ROWS ? THREADS / ROWS : 1; /* threads per row */
    constexpr int kRowStep = THREADS / kPerRow;
    constexpr int kMine = kChunks / kPerRow;                      /* chunks per thread */
    static_assert(kChunks % kPerRow == 0, "threads per row must divide the chunks");
    const int first = (threadIdx.x % kPerRow) * kMine;
#pragma unroll
    for (int row = threadIdx.x / kPerRow; row < ROWS; row += kRowStep) {
        const int pos = pos0 + row;
        const bool valid = pos < n;
        const int token = valid ? (perm ? (int)__ldg(perm + pos) : pos) : 0;
        const __nv_bfloat16 *from = src + (size_t)token * D;
#pragma unroll
        for (int i = 0; i < kMine; i++)
            cp_async16(Tile<D>::at(smem, row, first + i), from + (first + i) * 8, valid ? 16 : 0);
    }
}

/* Each warp owns 32 query rows (two m16 tiles), so every K fragment read
 * from shared memory feeds two mma: half the shared-memory traffic of 16
 * rows per warp, which is what bounded the first version. */
constexpr int kWarpRows = 32;
#ifndef PARO_CTA_ROWS
#define PARO_CTA_ROWS 128
#endif
constexpr int kCtaRows = PARO_CTA_ROWS; /* query rows per thread block: four warps */
/* Keys whose scores a warp holds at once in the tile pass: 32 keys x 32
 * rows is 32 registers, so four blocks fit per SM without spills. */
#ifndef PARO_KEY_CHUNK
#define PARO_KEY_CHUNK 32
#endif
constexpr int kKeyChunk = PARO_KEY_CHUNK;

/* The warp's query rows as mma A operands.  Kept in registers for the whole
 * loop when they fit (bf16 inputs, d <= 64); otherwise read from shared
 * memory at each use. */
/* Tuning knobs, measured in tests/bench/README.md (override with -D). */
#ifndef PARO_TILE_MIN_BLOCKS
#define PARO_TILE_MIN_BLOCKS 4 /* thread blocks per SM the register budget allows */
#endif
#ifndef PARO_Q_IN_REGS
#define PARO_Q_IN_REGS 1       /* keep Q fragments in registers when they fit */
#endif

template <int D, bool SPLIT> struct QFrags {
    static constexpr bool kInRegs = PARO_Q_IN_REGS && !SPLIT && D <= 64;
    uint32_t a[kInRegs ? 2 : 1][kInRegs ? D / 16 : 1][4];

    __device__ __forceinline__ void load(uint32_t s_q, int warp, int lane)
    {
        if constexpr (kInRegs) {
#pragma unroll
            for (int mt = 0; mt < 2; mt++)
#pragma unroll
                for (int kk = 0; kk < D / 16; kk++)
                    ldmatrix_x4(Tile<D>::at(s_q, warp * kWarpRows + mt * 16 + (lane & 15),
                                            kk * 2 + (lane >> 4)),
                                a[mt][kk]);
        }
    }

    __device__ __forceinline__ void get(uint32_t s_q, int warp, int lane, int mt, int kk,
                                        uint32_t (&out)[4]) const
    {
        if constexpr (kInRegs) {
#pragma unroll
            for (int i = 0; i < 4; i++)
                out[i] = a[mt][kk][i];
        } else {
            ldmatrix_x4(Tile<D>::at(s_q, warp * kWarpRows + mt * 16 + (lane & 15),
                                    kk * 2 + (lane >> 4)),
                        out);
        }
    }
};

/* S for one warp: its 32 query rows against the KEYS keys of the K tile that
 * start at row key0, in mma layout: s[mt][t][2*h + e] is query row
 * warp*32 + mt*16 + lane/4 + 8*h, key key0 + t*8 + 2*(lane%4) + e. */
template <int D, bool SPLIT, int KEYS>
__device__ __forceinline__ void warp_scores(float (&s)[2][KEYS / 8][4],
                                            const QFrags<D, SPLIT> &qf, uint32_t s_q,
                                            uint32_t s_q_lo, uint32_t s_k, uint32_t s_k_lo,
                                            int key0, int warp, int lane)
{
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int t = 0; t < KEYS / 8; t++)
            s[mt][t][0] = s[mt][t][1] = s[mt][t][2] = s[mt][t][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
        uint32_t a[2][4], a_lo[2][4];
#pragma unroll
        for (int mt = 0; mt < 2; mt++) {
            qf.get(s_q, warp, lane, mt, kk, a[mt]);
            if (SPLIT)
                ldmatrix_x4(Tile<D>::at(s_q_lo, warp * kWarpRows + mt * 16 + (lane & 15),
                                        kk * 2 + (lane >> 4)),
                            a_lo[mt]);
        }
#pragma unroll
        for (int np = 0; np < KEYS / 16; np++) {
            const int b_row = key0 + np * 16 + (lane & 7) + ((lane >> 4) << 3);
            const int b_chunk = kk * 2 + ((lane >> 3) & 1);
            uint32_t b[4], b_lo[4];
            ldmatrix_x4(Tile<D>::at(s_k, b_row, b_chunk), b);
            if (SPLIT)
                ldmatrix_x4(Tile<D>::at(s_k_lo, b_row, b_chunk), b_lo);
#pragma unroll
            for (int mt = 0; mt < 2; mt++) {
                mma_bf16(s[mt][2 * np], a[mt], b[0], b[1]);
                mma_bf16(s[mt][2 * np + 1], a[mt], b[2], b[3]);
                if (SPLIT) {
                    mma_bf16(s[mt][2 * np], a[mt], b_lo[0], b_lo[1]);
                    mma_bf16(s[mt][2 * np + 1], a[mt], b_lo[2], b_lo[3]);
                    mma_bf16(s[mt][2 * np], a_lo[mt], b[0], b[1]);
                    mma_bf16(s[mt][2 * np + 1], a_lo[mt], b[2], b[3]);
                }
            }
        }
    }
}

/* Query row (within the block) of the thread's row slot r = 2*mt + h. */
__device__ __forceinline__ int thread_row(int warp, int lane, int r)
{
    return warp * kWarpRows + (r >> 1) * 16 + (lane >> 2) + 8 * (r & 1);
}

/* Keys at or past n become -inf: only the last key tile has any. */
template <int KEYS>
__device__ __forceinline__ void mask_keys(float (&s)[2][KEYS / 8][4], int key0, int lane, int n)
{
    if (key0 + KEYS <= n)
        return;
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int t = 0; t < KEYS / 8; t++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                if (key0 + t * 8 + 2 * (lane & 3) + (e & 1) >= n)
                    s[mt][t][e] = -INFINITY;
}

struct HeadInputs {
    const __nv_bfloat16 *q, *k, *q_lo, *k_lo; /* [heads][n][D] */
};

/* Shared memory: Q (and Q lo), then two buffers of K (and K lo). */
template <int D, int BQ, int BK, bool SPLIT> struct Smem {
    static constexpr int kParts = SPLIT ? 2 : 1;
    static constexpr int kQ = BQ * Tile<D>::kRowBytes, kK = BK * Tile<D>::kRowBytes;
    static constexpr size_t kBytes = (size_t)kParts * (kQ + 2 * kK);
    uint32_t q, q_lo, k0;
    __device__ __forceinline__ explicit Smem(uint32_t base)
        : q(base), q_lo(base + kQ), k0(base + kParts * kQ)
    {
    }
    /* K buffer of tile b (and its lo part): arithmetic, not an array, so
     * that a run-time index cannot put it in local memory. */
    __device__ __forceinline__ uint32_t k(int b) const
    {
        return k0 + (uint32_t)(b & 1) * kParts * kK;
    }
    __device__ __forceinline__ uint32_t k_lo(int b) const
    {
        return k(b) + kK;
    }
};

/* ---- pass 1: row statistics --------------------------------------------- */

struct RowArgs {
    HeadInputs in;
    int n;
    float c;          /* scale * log2(e) */
    float *row_max;   /* [heads][n]: max_j s_ij * c */
    float *row_inv;   /* [heads][n]: 1 / sum_j 2^(s_ij c - max) */
};

template <int D, bool SPLIT>
__global__ void __launch_bounds__(kCtaRows) row_stats_kernel(RowArgs args)
{
    constexpr int BQ = kCtaRows, BK = kRowKeys, kThreads = kCtaRows;
    extern __shared__ __align__(128) unsigned char smem[];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int head = blockIdx.y, pos0 = blockIdx.x * BQ, n = args.n;
    const size_t head_off = (size_t)head * n * D;
    const __nv_bfloat16 *q = args.in.q + head_off, *k = args.in.k + head_off;
    const __nv_bfloat16 *q_lo = SPLIT ? args.in.q_lo + head_off : nullptr;
    const __nv_bfloat16 *k_lo = SPLIT ? args.in.k_lo + head_off : nullptr;
    const Smem<D, BQ, BK, SPLIT> sm(smem_addr(smem));

    load_rows<D, BQ, kThreads>(sm.q, q, nullptr, pos0, n);
    if (SPLIT)
        load_rows<D, BQ, kThreads>(sm.q_lo, q_lo, nullptr, pos0, n);
    load_rows<D, BK, kThreads>(sm.k(0), k, nullptr, 0, n);
    if (SPLIT)
        load_rows<D, BK, kThreads>(sm.k_lo(0), k_lo, nullptr, 0, n);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    QFrags<D, SPLIT> qf;
    qf.load(sm.q, warp, lane);

    const float c = args.c;
    float m[4], l[4];
#pragma unroll
    for (int r = 0; r < 4; r++) {
        m[r] = -INFINITY;
        l[r] = 0.f;
    }
    const int n_tiles = (n + BK - 1) / BK;
    for (int b = 0; b < n_tiles; b++) {
        /* One barrier a step: after it, tile b is in shared memory for
         * everyone and every warp is done with tile b-1, whose buffer the
         * load of tile b+1 then reuses while tile b is computed. */
        if (b > 0) {
            cp_async_wait<0>();
            __syncthreads();
        }
        if (b + 1 < n_tiles) {
            load_rows<D, BK, kThreads>(sm.k(b + 1), k, nullptr, (b + 1) * BK, n);
            if (SPLIT)
                load_rows<D, BK, kThreads>(sm.k_lo(b + 1), k_lo, nullptr, (b + 1) * BK, n);
            cp_async_commit();
        }
        float s[2][BK / 8][4];
        warp_scores<D, SPLIT, BK>(s, qf, sm.q, sm.q_lo, sm.k(b), sm.k_lo(b), 0, warp, lane);
        mask_keys<BK>(s, b * BK, lane, n);
#pragma unroll
        for (int r = 0; r < 4; r++) {
            const int mt = r >> 1, h = r & 1;
            float top = -INFINITY;
#pragma unroll
            for (int t = 0; t < BK / 8; t++)
                top = fmaxf(top, fmaxf(s[mt][t][2 * h], s[mt][t][2 * h + 1]));
            top = fmaxf(top, __shfl_xor_sync(0xffffffffu, top, 1));
            top = fmaxf(top, __shfl_xor_sync(0xffffffffu, top, 2));
            /* c > 0, so the largest s gives the largest s * c */
            const float m_new = fmaxf(m[r], top * c);
            float sum = 0.f;
#pragma unroll
            for (int t = 0; t < BK / 8; t++)
#pragma unroll
                for (int e = 0; e < 2; e++)
                    sum += ex2(fmaf(s[mt][t][2 * h + e], c, -m_new));
            l[r] = l[r] * ex2(m[r] - m_new) + sum;
            m[r] = m_new;
        }
    }
#pragma unroll
    for (int r = 0; r < 4; r++) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
        const int pos = pos0 + thread_row(warp, lane, r);
        if ((lane & 3) == 0 && pos < n) {
            args.row_max[(size_t)head * n + pos] = m[r];
            args.row_inv[(size_t)head * n + pos] = 1.f / l[r];
        }
    }
}

/* ---- pass 2: tile mass and peak of every order ---------------------------- */

struct TileArgs {
    HeadInputs in;
    int n, nq, nk, heads, n_slots;
    float c;
    const uint32_t *perms;     /* [n_slots][n] */
    const float *row_max, *row_inv;
    float *mass;               /* [heads][n_slots][nq*nk] of the sample's bucket */
    float *peak;               /* [heads][n_slots][nq*nk] */
};

/* One block takes kCtaRows query rows: 128 / BQ query blocks of the order,
 * so the gathered K tiles are shared by four warps whatever the block size. */
template <int D, int BQ, int BK, bool SPLIT>
__global__ void __launch_bounds__(kCtaRows, PARO_TILE_MIN_BLOCKS * 128 / kCtaRows) tile_stats_kernel(TileArgs args)
{
    constexpr int kWarps = kCtaRows / kWarpRows, kThreads = kCtaRows;
    constexpr int kBlocks = kCtaRows / BQ;          /* query blocks per thread block */
    constexpr int kWarpsPerBlock = BQ / kWarpRows;
    extern __shared__ __align__(128) unsigned char smem[];
    __shared__ float red_sum[2][kWarps], red_max[2][kWarps];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int qblock0 = blockIdx.x * kBlocks, head = blockIdx.y, slot = blockIdx.z;
    const int n = args.n, nk = args.nk;
    const size_t head_off = (size_t)head * n * D;
    const __nv_bfloat16 *q = args.in.q + head_off, *k = args.in.k + head_off;
    const __nv_bfloat16 *q_lo = SPLIT ? args.in.q_lo + head_off : nullptr;
    const __nv_bfloat16 *k_lo = SPLIT ? args.in.k_lo + head_off : nullptr;
    const uint32_t *perm = args.perms + (size_t)slot * n;
    const Smem<D, kCtaRows, BK, SPLIT> sm(smem_addr(smem));
    /* Each query block's row of tile sums and peaks: written by thread 0 one
     * tile behind the others, added to the layer's sums at the end. */
    float *acc_sum = reinterpret_cast<float *>(smem + Smem<D, kCtaRows, BK, SPLIT>::kBytes);
    float *acc_max = acc_sum + kBlocks * nk;

    load_rows<D, kCtaRows, kThreads>(sm.q, q, perm, qblock0 * BQ, n);
    if (SPLIT)
        load_rows<D, kCtaRows, kThreads>(sm.q_lo, q_lo, perm, qblock0 * BQ, n);
    load_rows<D, BK, kThreads>(sm.k(0), k, perm, 0, n);
    if (SPLIT)
        load_rows<D, BK, kThreads>(sm.k_lo(0), k_lo, perm, 0, n);
    cp_async_commit();

    /* This thread's four rows: their softmax statistics.  A row past the end
     * gets max +inf and 1/l 0, so all its p are exactly 0. */
    float row_max[4], row_inv[4];
#pragma unroll
    for (int r = 0; r < 4; r++) {
        const int pos = qblock0 * BQ + thread_row(warp, lane, r);
        if (pos < n) {
            const size_t at = (size_t)head * n + __ldg(perm + pos);
            row_max[r] = __ldg(args.row_max + at);
            row_inv[r] = __ldg(args.row_inv + at);
        } else {
            row_max[r] = INFINITY;
            row_inv[r] = 0.f;
        }
    }
    cp_async_wait<0>();
    __syncthreads();
    QFrags<D, SPLIT> qf;
    qf.load(sm.q, warp, lane);
    const float c = args.c;

    for (int b = 0; b < nk; b++) {
        /* One barrier a step: after it, tile b is in shared memory for
         * everyone and every warp is done with tile b-1, whose buffer the
         * load of tile b+1 then reuses while tile b is computed. */
        if (b > 0) {
            cp_async_wait<0>();
            __syncthreads();
        }
        if (b + 1 < nk) {
            load_rows<D, BK, kThreads>(sm.k(b + 1), k, perm, (b + 1) * BK, n);
            if (SPLIT)
                load_rows<D, BK, kThreads>(sm.k_lo(b + 1), k_lo, perm, (b + 1) * BK, n);
            cp_async_commit();
        }
        if (threadIdx.x < kBlocks && b > 0) {
            float sum = 0.f, top = 0.f;
            for (int w = 0; w < kWarpsPerBlock; w++) { /* fixed order */
                sum += red_sum[(b - 1) & 1][threadIdx.x * kWarpsPerBlock + w];
                top = fmaxf(top, red_max[(b - 1) & 1][threadIdx.x * kWarpsPerBlock + w]);
            }
            acc_sum[threadIdx.x * nk + b - 1] = sum;
            acc_max[threadIdx.x * nk + b - 1] = top;
        }
        /* Row sums and maxima of 2^(s c - max), unnormalised: the row's 1/l
         * is applied once per tile. */
        float sum[4] = {0.f, 0.f, 0.f, 0.f}, top[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int key0 = 0; key0 < BK; key0 += kKeyChunk) {
            float s[2][kKeyChunk / 8][4];
            warp_scores<D, SPLIT, kKeyChunk>(s, qf, sm.q, sm.q_lo, sm.k(b), sm.k_lo(b), key0,
                                             warp, lane);
            mask_keys<kKeyChunk>(s, b * BK + key0, lane, n);
#pragma unroll
            for (int r = 0; r < 4; r++)
#pragma unroll
                for (int t = 0; t < kKeyChunk / 8; t++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const float x = s[r >> 1][t][2 * (r & 1) + e];
                        sum[r] += ex2(fmaf(x, c, -row_max[r]));
                        top[r] = fmaxf(top[r], x);
                    }
        }
        /* The peak of a row is at its largest score: one exponential per
         * row instead of a max over every p. */
        float tile_sum = 0.f, tile_top = 0.f;
#pragma unroll
        for (int r = 0; r < 4; r++) {
            tile_sum += sum[r] * row_inv[r];
            tile_top = fmaxf(tile_top, ex2(fmaf(top[r], c, -row_max[r])) * row_inv[r]);
        }
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) {
            tile_sum += __shfl_xor_sync(0xffffffffu, tile_sum, off);
            tile_top = fmaxf(tile_top, __shfl_xor_sync(0xffffffffu, tile_top, off));
        }
        if (lane == 0) {
            red_sum[b & 1][warp] = tile_sum;
            red_max[b & 1][warp] = tile_top;
        }
    }
    __syncthreads();
    if (threadIdx.x < kBlocks) {
        float sum = 0.f, top = 0.f;
        for (int w = 0; w < kWarpsPerBlock; w++) {
            sum += red_sum[(nk - 1) & 1][threadIdx.x * kWarpsPerBlock + w];
            top = fmaxf(top, red_max[(nk - 1) & 1][threadIdx.x * kWarpsPerBlock + w]);
        }
        acc_sum[threadIdx.x * nk + nk - 1] = sum;
        acc_max[threadIdx.x * nk + nk - 1] = top;
    }
    __syncthreads();
    /* Add the rows of tiles into the layer's sums, coalesced; each tile has
     * one writer (this block), so no atomics. */
    const size_t tiles = (size_t)args.nq * nk;
    float *mass = args.mass + ((size_t)head * args.n_slots + slot) * tiles;
    float *peak = args.peak + ((size_t)head * args.n_slots + slot) * tiles;
    for (int i = threadIdx.x; i < kBlocks * nk; i += kThreads) {
        const int qblock = qblock0 + i / nk;
        if (qblock < args.nq) {
            mass[(size_t)qblock * nk + i % nk] += acc_sum[i];
            peak[(size_t)qblock * nk + i % nk] += acc_max[i];
        }
    }
}

/* ---- f32 -> bf16 hi (+ lo) ----------------------------------------------- */

__global__ void split_kernel(const float *x, __nv_bfloat16 *hi, __nv_bfloat16 *lo, size_t n,
                             int *needs_lo)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const float v = x[i];
        const __nv_bfloat16 h = __float2bfloat16_rn(v);
        const float rest = v - __bfloat162float(h);
        hi[i] = h;
        if (lo)
            lo[i] = __float2bfloat16_rn(rest);
        if (rest != 0.f)
            *needs_lo = 1; /* every writer writes the same value */
    }
}

/* ---- launch table ---------------------------------------------------------- */

template <int D, bool SPLIT> size_t row_smem()
{
    return Smem<D, kCtaRows, kRowKeys, SPLIT>::kBytes;
}

/* Q, two K buffers (each twice with lo parts), then the row of tiles' sums
 * and peaks. */
template <int D, int BQ, int BK, bool SPLIT> size_t tile_smem()
{
    return Smem<D, kCtaRows, BK, SPLIT>::kBytes;
}

typedef void (*row_kernel_fn)(RowArgs);
typedef void (*tile_kernel_fn)(TileArgs);

struct Kernels {
    row_kernel_fn row;
    size_t row_smem;
    tile_kernel_fn tile;
    size_t tile_smem; /* plus tile_row_smem(nk) */
    int blocks_per_cta; /* query blocks of the order per thread block */
};

/* The tile kernel's rows of per-tile sums and peaks. */
size_t tile_row_smem(int blocks_per_cta, int nk)
{
    return 2 * sizeof(float) * (size_t)blocks_per_cta * nk;
}

template <int D, int BQ, int BK, bool SPLIT> Kernels make_kernels()
{
    return {row_stats_kernel<D, SPLIT>, row_smem<D, SPLIT>(), tile_stats_kernel<D, BQ, BK, SPLIT>,
            tile_smem<D, BQ, BK, SPLIT>(), kCtaRows / BQ};
}

template <int D, int BQ, int BK> Kernels pick_split(bool split)
{
    return split ? make_kernels<D, BQ, BK, true>() : make_kernels<D, BQ, BK, false>();
}

template <int D> Kernels pick_blocks(int bq, int bk, bool split)
{
    if (bq == 64 && bk == 64)
        return pick_split<D, 64, 64>(split);
    if (bq == 64 && bk == 128)
        return pick_split<D, 64, 128>(split);
    if (bq == 128 && bk == 64)
        return pick_split<D, 128, 64>(split);
    return pick_split<D, 128, 128>(split);
}

Kernels pick_kernels(int d, int bq, int bk, bool split)
{
    if (d == 32)
        return pick_blocks<32>(bq, bk, split);
    if (d == 64)
        return pick_blocks<64>(bq, bk, split);
    return pick_blocks<128>(bq, bk, split);
}

} // namespace

/* ---- the context ------------------------------------------------------------ */

struct paro_cuda_ctx {
    int device;
    paro_cuda_geometry g; /* perms not kept: copied to the device */
    size_t per_tensor;    /* heads * n * d elements */
    size_t tiles;         /* nq * nk */
    cudaStream_t compute, copy;
    /* inputs, two sets so one sample uploads while the previous computes */
    __nv_bfloat16 *hi_q[2], *hi_k[2], *lo_q[2], *lo_k[2];
    int lo_used[2];          /* whether the set's sample needs lo */
    float *chunk;            /* f32 upload staging */
    int *needs_lo;           /* device flag */
    int *needs_lo_host;      /* pinned */
    float *host_q, *host_k;  /* pinned, [heads][n][d] */
    uint32_t *perms;         /* device [n_slots][n] */
    float *row_max, *row_inv;
    float *mass, *peak;      /* accumulators: [n_buckets][heads][n_slots][tiles], [heads][n_slots][tiles] */
    float *mass_host, *peak_host; /* pinned, for layer_end */
    cudaEvent_t uploaded[2], computed[2];
    cudaEvent_t *timing;     /* start/end pairs of the layer's samples */
    size_t n_timing, cap_timing;
    double last_layer_ms;
    int set;                 /* input set of the next sample */
    size_t device_bytes;
};

static paro_err dev_alloc(paro_cuda_ctx *ctx, void **p, size_t bytes, paro_errinfo *ei)
{
    CUDA_TRY(ei, ctx->device, cudaMalloc(p, bytes));
    ctx->device_bytes += bytes;
    return PARO_OK;
}

extern "C" int paro_cuda_supports(const paro_cuda_geometry *g, paro_errinfo *ei)
{
    if (g->head_dim != 32 && g->head_dim != 64 && g->head_dim != 128) {
        paro_error(ei, PARO_ERR_USAGE, NULL, PARO_NO_OFFSET,
                   "the cuda kernels handle head_dim 32, 64 and 128, not %u", g->head_dim);
        return 0;
    }
    if ((g->block_q != 64 && g->block_q != 128) || (g->block_k != 64 && g->block_k != 128)) {
        paro_error(ei, PARO_ERR_USAGE, NULL, PARO_NO_OFFSET,
                   "the cuda kernels handle blocks of 64 or 128 tokens, not %ux%u", g->block_q,
                   g->block_k);
        return 0;
    }
    if (g->nq > 2048 || g->nk > 2048) {
        paro_error(ei, PARO_ERR_USAGE, NULL, PARO_NO_OFFSET,
                   "the cuda kernels handle at most 2048 blocks per axis, not %ux%u", g->nq, g->nk);
        return 0;
    }
    if (g->n_tokens >= (1u << 30)) {
        paro_error(ei, PARO_ERR_USAGE, NULL, PARO_NO_OFFSET, "too many tokens for the cuda kernels");
        return 0;
    }
    return 1;
}

extern "C" void paro_cuda_close(paro_cuda_ctx *ctx)
{
    if (!ctx)
        return;
    cudaSetDevice(ctx->device);
    if (ctx->compute)
        cudaStreamSynchronize(ctx->compute);
    if (ctx->copy)
        cudaStreamSynchronize(ctx->copy);
    for (int s = 0; s < 2; s++) {
        cudaFree(ctx->hi_q[s]);
        cudaFree(ctx->hi_k[s]);
        cudaFree(ctx->lo_q[s]);
        cudaFree(ctx->lo_k[s]);
        if (ctx->uploaded[s])
            cudaEventDestroy(ctx->uploaded[s]);
        if (ctx->computed[s])
            cudaEventDestroy(ctx->computed[s]);
    }
    for (size_t i = 0; i < ctx->n_timing; i++)
        cudaEventDestroy(ctx->timing[i]);
    free(ctx->timing);
    cudaFree(ctx->chunk);
    cudaFree(ctx->needs_lo);
    cudaFree(ctx->perms);
    cudaFree(ctx->row_max);
    cudaFree(ctx->row_inv);
    cudaFree(ctx->mass);
    cudaFree(ctx->peak);
    cudaFreeHost(ctx->needs_lo_host);
    cudaFreeHost(ctx->host_q);
    cudaFreeHost(ctx->host_k);
    cudaFreeHost(ctx->mass_host);
    cudaFreeHost(ctx->peak_host);
    if (ctx->compute)
        cudaStreamDestroy(ctx->compute);
    if (ctx->copy)
        cudaStreamDestroy(ctx->copy);
    free(ctx);
}

static paro_err open_ctx(paro_cuda_ctx *ctx, const paro_cuda_geometry *g, paro_errinfo *ei)
{
    const int dev = ctx->device;
    CUDA_TRY(ei, dev, cudaSetDevice(dev));
    CUDA_TRY(ei, dev, cudaStreamCreateWithFlags(&ctx->compute, cudaStreamNonBlocking));
    CUDA_TRY(ei, dev, cudaStreamCreateWithFlags(&ctx->copy, cudaStreamNonBlocking));
    for (int s = 0; s < 2; s++) {
        CUDA_TRY(ei, dev, cudaEventCreateWithFlags(&ctx->uploaded[s], cudaEventDisableTiming));
        CUDA_TRY(ei, dev, cudaEventCreateWithFlags(&ctx->computed[s], cudaEventDisableTiming));
    }
    const size_t input_bytes = ctx->per_tensor * sizeof(__nv_bfloat16);
    paro_err rc;
    for (int s = 0; s < 2; s++) {
        if ((rc = dev_alloc(ctx, (void **)&ctx->hi_q[s], input_bytes, ei)) ||
            (rc = dev_alloc(ctx, (void **)&ctx->hi_k[s], input_bytes, ei)))
            return rc;
    }
    const size_t chunk = ctx->per_tensor < kChunkFloats ? ctx->per_tensor : kChunkFloats;
    const size_t rows = (size_t)g->heads * g->n_tokens;
    const size_t acc = (size_t)g->heads * g->n_slots * ctx->tiles;
    if ((rc = dev_alloc(ctx, (void **)&ctx->chunk, chunk * sizeof(float), ei)) ||
        (rc = dev_alloc(ctx, (void **)&ctx->needs_lo, sizeof(int), ei)) ||
        (rc = dev_alloc(ctx, (void **)&ctx->perms, (size_t)g->n_slots * g->n_tokens * 4, ei)) ||
        (rc = dev_alloc(ctx, (void **)&ctx->row_max, rows * sizeof(float), ei)) ||
        (rc = dev_alloc(ctx, (void **)&ctx->row_inv, rows * sizeof(float), ei)) ||
        (rc = dev_alloc(ctx, (void **)&ctx->mass, acc * g->n_buckets * sizeof(float), ei)) ||
        (rc = dev_alloc(ctx, (void **)&ctx->peak, acc * sizeof(float), ei)))
        return rc;
    CUDA_TRY(ei, dev, cudaMallocHost((void **)&ctx->needs_lo_host, sizeof(int)));
    CUDA_TRY(ei, dev, cudaMallocHost((void **)&ctx->host_q, ctx->per_tensor * sizeof(float)));
    CUDA_TRY(ei, dev, cudaMallocHost((void **)&ctx->host_k, ctx->per_tensor * sizeof(float)));
    CUDA_TRY(ei, dev, cudaMallocHost((void **)&ctx->mass_host, acc * g->n_buckets * sizeof(float)));
    CUDA_TRY(ei, dev, cudaMallocHost((void **)&ctx->peak_host, acc * sizeof(float)));
    CUDA_TRY(ei, dev, cudaMemcpy(ctx->perms, g->perms, (size_t)g->n_slots * g->n_tokens * 4,
                                 cudaMemcpyHostToDevice));
    /* Kernels that want more than 48 KiB of shared memory must say so. */
    for (int split = 0; split < 2; split++) {
        Kernels kn = pick_kernels((int)g->head_dim, (int)g->block_q, (int)g->block_k, split);
        CUDA_TRY(ei, dev, cudaFuncSetAttribute(kn.row, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               (int)kn.row_smem));
        CUDA_TRY(ei, dev, cudaFuncSetAttribute(kn.tile, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               (int)(kn.tile_smem + tile_row_smem(kn.blocks_per_cta, (int)g->nk))));
    }
    return PARO_OK;
}

extern "C" paro_err paro_cuda_open(paro_cuda_ctx **out, int device, const paro_cuda_geometry *g,
                                   paro_errinfo *ei)
{
    *out = NULL;
    if (!paro_cuda_supports(g, ei))
        return PARO_ERR_USAGE;
    paro_cuda_ctx *ctx = (paro_cuda_ctx *)calloc(1, sizeof *ctx);
    if (!ctx)
        return paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory");
    ctx->device = device;
    ctx->g = *g;
    ctx->g.perms = NULL;
    ctx->per_tensor = (size_t)g->heads * g->n_tokens * g->head_dim;
    ctx->tiles = (size_t)g->nq * g->nk;
    paro_err rc = open_ctx(ctx, g, ei);
    if (rc) {
        paro_cuda_close(ctx);
        return rc;
    }
    *out = ctx;
    return PARO_OK;
}

extern "C" paro_err paro_cuda_layer_begin(paro_cuda_ctx *ctx, paro_errinfo *ei)
{
    const paro_cuda_geometry *g = &ctx->g;
    const size_t acc = (size_t)g->heads * g->n_slots * ctx->tiles;
    CUDA_TRY(ei, ctx->device, cudaSetDevice(ctx->device));
    CUDA_TRY(ei, ctx->device,
             cudaMemsetAsync(ctx->mass, 0, acc * g->n_buckets * sizeof(float), ctx->compute));
    CUDA_TRY(ei, ctx->device, cudaMemsetAsync(ctx->peak, 0, acc * sizeof(float), ctx->compute));
    for (size_t i = 0; i < ctx->n_timing; i++)
        cudaEventDestroy(ctx->timing[i]);
    ctx->n_timing = 0;
    return PARO_OK;
}

extern "C" paro_err paro_cuda_next_buffers(paro_cuda_ctx *ctx, float **q, float **k,
                                           paro_errinfo *ei)
{
    /* submit() returns only once its upload is done, so the pinned buffers
     * are always free here. */
    (void)ei;
    *q = ctx->host_q;
    *k = ctx->host_k;
    return PARO_OK;
}

/* Uploads host f32 through the staging chunk and splits it into bf16 parts. */
static paro_err upload(paro_cuda_ctx *ctx, const float *host, __nv_bfloat16 *hi,
                       __nv_bfloat16 *lo, paro_errinfo *ei)
{
    const size_t chunk = ctx->per_tensor < kChunkFloats ? ctx->per_tensor : kChunkFloats;
    for (size_t off = 0; off < ctx->per_tensor; off += chunk) {
        const size_t len = ctx->per_tensor - off < chunk ? ctx->per_tensor - off : chunk;
        CUDA_TRY(ei, ctx->device, cudaMemcpyAsync(ctx->chunk, host + off, len * sizeof(float),
                                                  cudaMemcpyHostToDevice, ctx->copy));
        const unsigned blocks = (unsigned)((len + 255) / 256 < 4096 ? (len + 255) / 256 : 4096);
        split_kernel<<<blocks, 256, 0, ctx->copy>>>(ctx->chunk, hi + off, lo ? lo + off : nullptr,
                                                    len, ctx->needs_lo);
        CUDA_TRY(ei, ctx->device, cudaGetLastError());
    }
    return PARO_OK;
}

static paro_err upload_sample(paro_cuda_ctx *ctx, int set, int with_lo, paro_errinfo *ei)
{
    const int dev = ctx->device;
    CUDA_TRY(ei, dev, cudaMemsetAsync(ctx->needs_lo, 0, sizeof(int), ctx->copy));
    paro_err rc = upload(ctx, ctx->host_q, ctx->hi_q[set], with_lo ? ctx->lo_q[set] : nullptr, ei);
    if (!rc)
        rc = upload(ctx, ctx->host_k, ctx->hi_k[set], with_lo ? ctx->lo_k[set] : nullptr, ei);
    if (rc)
        return rc;
    CUDA_TRY(ei, dev, cudaMemcpyAsync(ctx->needs_lo_host, ctx->needs_lo, sizeof(int),
                                      cudaMemcpyDeviceToHost, ctx->copy));
    CUDA_TRY(ei, dev, cudaEventRecord(ctx->uploaded[set], ctx->copy));
    CUDA_TRY(ei, dev, cudaEventSynchronize(ctx->uploaded[set]));
    return PARO_OK;
}

static paro_err push_timing(paro_cuda_ctx *ctx, cudaEvent_t *start, cudaEvent_t *end,
                            paro_errinfo *ei)
{
    if (ctx->n_timing + 2 > ctx->cap_timing) {
        size_t cap = ctx->cap_timing ? 2 * ctx->cap_timing : 16;
        cudaEvent_t *grown = (cudaEvent_t *)realloc(ctx->timing, cap * sizeof *grown);
        if (!grown)
            return paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory");
        ctx->timing = grown;
        ctx->cap_timing = cap;
    }
    CUDA_TRY(ei, ctx->device, cudaEventCreate(&ctx->timing[ctx->n_timing]));
    ctx->n_timing++;
    CUDA_TRY(ei, ctx->device, cudaEventCreate(&ctx->timing[ctx->n_timing]));
    ctx->n_timing++;
    *start = ctx->timing[ctx->n_timing - 2];
    *end = ctx->timing[ctx->n_timing - 1];
    return PARO_OK;
}

extern "C" paro_err paro_cuda_submit(paro_cuda_ctx *ctx, uint32_t bucket, paro_errinfo *ei)
{
    const paro_cuda_geometry *g = &ctx->g;
    const int dev = ctx->device, set = ctx->set;
    ctx->set ^= 1;
    CUDA_TRY(ei, dev, cudaSetDevice(dev));
    /* The set's last sample must be done before its inputs are overwritten. */
    CUDA_TRY(ei, dev, cudaStreamWaitEvent(ctx->copy, ctx->computed[set], 0));
    paro_err rc = upload_sample(ctx, set, ctx->lo_q[set] != nullptr, ei);
    if (rc)
        return rc;
    const int needs_lo = *ctx->needs_lo_host;
    if (needs_lo && !ctx->lo_q[set]) {
        /* First sample that is not exactly bf16: make room for lo parts
         * and upload again (the host buffers still hold it). */
        const size_t bytes = ctx->per_tensor * sizeof(__nv_bfloat16);
        if ((rc = dev_alloc(ctx, (void **)&ctx->lo_q[set], bytes, ei)) ||
            (rc = dev_alloc(ctx, (void **)&ctx->lo_k[set], bytes, ei)) ||
            (rc = upload_sample(ctx, set, 1, ei)))
            return rc;
    }
    ctx->lo_used[set] = needs_lo;

    cudaEvent_t start = nullptr, end = nullptr;
    if ((rc = push_timing(ctx, &start, &end, ei)))
        return rc;
    CUDA_TRY(ei, dev, cudaStreamWaitEvent(ctx->compute, ctx->uploaded[set], 0));
    CUDA_TRY(ei, dev, cudaEventRecord(start, ctx->compute));
    const int n = (int)g->n_tokens;
    const float c = (float)(g->scale * 1.4426950408889634);
    HeadInputs in = {ctx->hi_q[set], ctx->hi_k[set], ctx->lo_q[set], ctx->lo_k[set]};
    Kernels kn = pick_kernels((int)g->head_dim, (int)g->block_q, (int)g->block_k, needs_lo != 0);

    RowArgs ra = {in, n, c, ctx->row_max, ctx->row_inv};
    dim3 row_grid((unsigned)((n + kCtaRows - 1) / kCtaRows), g->heads);
    kn.row<<<row_grid, kCtaRows, kn.row_smem, ctx->compute>>>(ra);
    CUDA_TRY(ei, dev, cudaGetLastError());

    const size_t acc = (size_t)g->heads * g->n_slots * ctx->tiles;
    TileArgs ta = {in, n, (int)g->nq, (int)g->nk, (int)g->heads, (int)g->n_slots, c, ctx->perms,
                   ctx->row_max, ctx->row_inv, ctx->mass + (size_t)bucket * acc, ctx->peak};
    const unsigned ctas = (g->nq + kn.blocks_per_cta - 1) / kn.blocks_per_cta;
    dim3 tile_grid(ctas, g->heads, g->n_slots);
    kn.tile<<<tile_grid, kCtaRows, kn.tile_smem + tile_row_smem(kn.blocks_per_cta, (int)g->nk),
              ctx->compute>>>(ta);
    CUDA_TRY(ei, dev, cudaGetLastError());
    CUDA_TRY(ei, dev, cudaEventRecord(end, ctx->compute));
    CUDA_TRY(ei, dev, cudaEventRecord(ctx->computed[set], ctx->compute));
    return PARO_OK;
}

extern "C" paro_err paro_cuda_layer_end(paro_cuda_ctx *ctx, const float **mass,
                                        const float **peak, paro_errinfo *ei)
{
    const paro_cuda_geometry *g = &ctx->g;
    const int dev = ctx->device;
    const size_t acc = (size_t)g->heads * g->n_slots * ctx->tiles;
    CUDA_TRY(ei, dev, cudaSetDevice(dev));
    CUDA_TRY(ei, dev, cudaMemcpyAsync(ctx->mass_host, ctx->mass, acc * g->n_buckets * sizeof(float),
                                      cudaMemcpyDeviceToHost, ctx->compute));
    CUDA_TRY(ei, dev, cudaMemcpyAsync(ctx->peak_host, ctx->peak, acc * sizeof(float),
                                      cudaMemcpyDeviceToHost, ctx->compute));
    CUDA_TRY(ei, dev, cudaStreamSynchronize(ctx->compute));
    double ms = 0.0;
    for (size_t i = 0; i + 1 < ctx->n_timing; i += 2) {
        float part = 0.f;
        CUDA_TRY(ei, dev, cudaEventElapsedTime(&part, ctx->timing[i], ctx->timing[i + 1]));
        ms += part;
    }
    ctx->last_layer_ms = ms;
    *mass = ctx->mass_host;
    *peak = ctx->peak_host;
    return PARO_OK;
}

extern "C" size_t paro_cuda_device_bytes(const paro_cuda_ctx *ctx)
{
    return ctx->device_bytes;
}

extern "C" double paro_cuda_last_layer_ms(const paro_cuda_ctx *ctx)
{
    return ctx->last_layer_ms;
}
