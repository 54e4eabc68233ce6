/* paro — tile statistics on the GPU: the CUDA counterpart of
 * paro_tile_stats_cpu (calib/tile_stats.c), which defines the results.
 *
 * Per layer-sample, in the flash-attention style (S = Q K^T is computed
 * tile by tile with tensor cores, kernels/mma.cuh, and never stored):
 *   1. first_pass_kernel, for the first distinct order: every query row's
 *      softmax statistics AND that order's tiles in one sweep over the keys.
 *      A row's normaliser is known only once all its keys are seen, so each
 *      (row, tile) leaves two numbers in a per-block scratch (log2 of the
 *      row's sum over the tile, and the row's largest score in it); once
 *      the sweep ends they are normalised and reduced over the rows.  The
 *      running maximum is rescaled lazily (only when a score exceeds it by
 *      kLazyRescale in log2 units), so the common step is a plain
 *      exponential and add.  Persistent blocks take (head, query blocks)
 *      items from a counter, so the scratch is one per resident block.
 *   2. tile_stats_kernel, for every other distinct order (blockIdx.z): with
 *      the row statistics known, p = exp(s - max) / sum is reduced over each
 *      tile directly.  One thread block owns a query block's row of tiles.
 * Every tile is reduced by one thread block in a fixed order: no atomics on
 * the sums, results identical run to run.  Blocks add into per-layer
 * accumulators (sum over samples), so only the layer's totals leave the GPU.
 *
 * That is the default design (PARO_CUDA_ONE_PASS).  The others, selectable
 * through paro_cuda_geometry.design so that they can be measured against it
 * (tests/bench): row_stats_kernel for the rows' statistics alone, then
 * tile_stats_kernel for every order (ROW_PASS); or pair_pass_kernel
 * (kernels/pair_pass.cu) for the pairs of orders that share an innermost
 * axis, with the orders left over taken as above: the first by
 * first_pass_kernel, the others by tile_stats_kernel (PAIRS; the row pass
 * first instead where every order is in a pair).
 *
 * Inputs are bf16.  Captures that are not exactly bf16 (f16, f32) are split
 * into hi + lo bf16 parts and S is accumulated as hi*hi + hi*lo + lo*hi,
 * which keeps it within ~2^-16 relative of the f32 product.
 *
 * kernels/cuda_ctx.cu holds the host side (buffers, streams, what runs per
 * layer-sample); tile_stats.cuh is what it sees of these kernels.
 */
#include <cuda_bf16.h> /* __nv_bfloat16 */
#include <math.h>      /* INFINITY */
#include <stdint.h>    /* uint32_t */

#include "mma.cuh"
#include "tile_stats.cuh"

namespace paro_tile {
namespace {

using namespace paro_mma;

constexpr int kRowKeys = 64; /* keys per step of the row-statistics pass */
/* The first pass keeps a row's exponentials relative to a running maximum
 * that it raises only when a score exceeds it by this much (log2 units):
 * values stay below 2^8, far from overflow, and the rescale (an exponential
 * and a quad reduction) is rare after the first keys. */
constexpr float kLazyRescale = 8.0f;

/* ---- the rows' softmax statistics ---------------------------------------- */

/* Each row's sum of 2^(s c - m), with m the largest score of its first 64
 * keys rather than of all of them: any m gives the same probabilities, and
 * this one costs no maximum per element, so a score is an FFMA, an
 * exponential and an add.  Later keys may score higher than m; a row whose
 * terms pass 2^64 (far from f32's 2^128) raises m to that step's maximum and
 * rescales its sum, which the synthetic and real maps here never needed
 * after the first step. */
template <int D, bool SPLIT>
__global__ void __launch_bounds__(kCtaRows, 4) row_stats_kernel(RowArgs args)
{
    constexpr int BQ = kCtaRows, BK = kRowKeys, kThreads = kCtaRows;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    unsigned char *const smem = aligned_smem(smem_raw);
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
        /* The row slot's largest s c over this step (c > 0: the largest s
         * gives the largest s c), and its sum of 2^(s c - m). */
        auto step_top = [&](int r) {
            float top = -INFINITY;
#pragma unroll
            for (int t = 0; t < BK / 8; t++)
                top = fmaxf(top, fmaxf(s[r >> 1][t][2 * (r & 1)], s[r >> 1][t][2 * (r & 1) + 1]));
            return quad_max(top) * c;
        };
        auto step_sum = [&](int r, float m_row) {
            float u = 0.f;
#pragma unroll
            for (int t = 0; t < BK / 8; t++)
#pragma unroll
                for (int e = 0; e < 2; e++)
                    u += ex2(fmaf(s[r >> 1][t][2 * (r & 1) + e], c, -m_row));
            return u;
        };
        if (b == 0) {
#pragma unroll
            for (int r = 0; r < 4; r++) {
                m[r] = step_top(r);
                l[r] = 0.f;
            }
        }
        float u[4];
        bool big = false;
#pragma unroll
        for (int r = 0; r < 4; r++) {
            u[r] = step_sum(r, m[r]);
            big |= !(u[r] < 0x1p64f); /* also inf */
        }
        if (__any_sync(0xffffffffu, big)) { /* warp-uniform: the shuffles see every lane */
#pragma unroll
            for (int r = 0; r < 4; r++) {
                const float m_new = fmaxf(m[r], step_top(r));
                l[r] *= ex2(m[r] - m_new);
                u[r] = step_sum(r, m_new);
                m[r] = m_new;
            }
        }
#pragma unroll
        for (int r = 0; r < 4; r++)
            l[r] += u[r];
    }
#pragma unroll
    for (int r = 0; r < 4; r++) {
        l[r] = quad_sum(l[r]);
        const int pos = pos0 + thread_row(warp, lane, r);
        if ((lane & 3) == 0 && pos < n) {
            args.row_max[(size_t)head * n + pos] = m[r];
            args.row_inv[(size_t)head * n + pos] = 1.f / l[r];
        }
    }
}

/* ---- the tiles of an order whose row statistics are known ------------------ */

/* One block takes kCtaRows query rows: 128 / BQ query blocks of the order,
 * so the gathered K tiles are shared by four warps whatever the block size. */
template <int D, int BQ, int BK, bool SPLIT>
__global__ void __launch_bounds__(kCtaRows, PARO_TILE_MIN_BLOCKS * 128 / kCtaRows)
    tile_stats_kernel(TileArgs args)
{
    constexpr int kWarps = kCtaWarps, kThreads = kCtaRows;
    constexpr int kBlocks = kCtaRows / BQ;          /* query blocks per thread block */
    constexpr int kWarpsPerBlock = BQ / kWarpRows;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    unsigned char *const smem = aligned_smem(smem_raw);
    __shared__ float red_sum[2][kWarps], red_max[2][kWarps];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int qblock0 = blockIdx.x * kBlocks, head = blockIdx.y, slot = args.slot0 + blockIdx.z;
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
    RowGather<D, BK, kThreads> keys;
    keys.fetch(perm, 0, n);
    keys.load(sm.k(0), k);
    if (SPLIT)
        keys.load(sm.k_lo(0), k_lo);
    cp_async_commit();
    keys.fetch(perm, BK, n);

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
        /* One barrier a step, as in the row pass. */
        if (b > 0) {
            cp_async_wait<0>();
            __syncthreads();
        }
        if (b + 1 < nk) {
            keys.load(sm.k(b + 1), k);
            if (SPLIT)
                keys.load(sm.k_lo(b + 1), k_lo);
            cp_async_commit();
            keys.fetch(perm, (b + 2) * BK, n);
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
        float sum[4] = {0.f, 0.f, 0.f, 0.f};
        float top[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
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

/* ---- the first order with its row statistics, in one sweep ------------------ */

template <int D, int BQ, int BK, bool SPLIT>
__global__ void __launch_bounds__(kCtaRows, PARO_TILE_MIN_BLOCKS * 128 / kCtaRows)
    first_pass_kernel(FirstArgs args)
{
    constexpr int kThreads = kCtaRows, kBlocks = kCtaRows / BQ;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    unsigned char *const smem = aligned_smem(smem_raw);
    __shared__ float log_norm[kCtaRows]; /* per row: max + log2(sum); +inf past the end */
    __shared__ int item_s;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int n = args.n, nk = args.nk;
    const int items = args.heads * args.items_per_head;
    const float c = args.c;
    const uint32_t *perm = args.perm;
    const Smem<D, kCtaRows, BK, SPLIT> sm(smem_addr(smem));
    float2 *scratch = args.scratch + (size_t)blockIdx.x * nk * kCtaRows;
    const size_t tiles = (size_t)args.nq * nk;

    for (;;) {
        if (threadIdx.x == 0)
            item_s = (int)atomicAdd(args.next_item, 1u);
        __syncthreads();
        const int item = item_s;
        if (item >= items)
            break;
        const int head = item / args.items_per_head;
        const int qblock0 = (item % args.items_per_head) * kBlocks;
        const size_t head_off = (size_t)head * n * D;
        const __nv_bfloat16 *q = args.in.q + head_off, *k = args.in.k + head_off;
        const __nv_bfloat16 *q_lo = SPLIT ? args.in.q_lo + head_off : nullptr;
        const __nv_bfloat16 *k_lo = SPLIT ? args.in.k_lo + head_off : nullptr;

        load_rows<D, kCtaRows, kThreads>(sm.q, q, perm, qblock0 * BQ, n);
        if (SPLIT)
            load_rows<D, kCtaRows, kThreads>(sm.q_lo, q_lo, perm, qblock0 * BQ, n);
        RowGather<D, BK, kThreads> keys;
        keys.fetch(perm, 0, n);
        keys.load(sm.k(0), k);
        if (SPLIT)
            keys.load(sm.k_lo(0), k_lo);
        cp_async_commit();
        keys.fetch(perm, BK, n);
        cp_async_wait<0>();
        __syncthreads();
        QFrags<D, SPLIT> qf;
        qf.load(sm.q, warp, lane);

        /* Per row slot: the running maximum (quad-uniform) and this
         * thread's share of the row sum relative to it. */
        float m[4], l[4];
#pragma unroll
        for (int r = 0; r < 4; r++) {
            m[r] = -INFINITY;
            l[r] = 0.f;
        }
        for (int b = 0; b < nk; b++) {
            if (b > 0) {
                cp_async_wait<0>();
                __syncthreads();
            }
            if (b + 1 < nk) {
                keys.load(sm.k(b + 1), k);
                if (SPLIT)
                    keys.load(sm.k_lo(b + 1), k_lo);
                cp_async_commit();
                keys.fetch(perm, (b + 2) * BK, n);
            }
            float u[4] = {0.f, 0.f, 0.f, 0.f};
            float top[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
#pragma unroll
            for (int key0 = 0; key0 < BK; key0 += kKeyChunk) {
                float s[2][kKeyChunk / 8][4];
                warp_scores<D, SPLIT, kKeyChunk>(s, qf, sm.q, sm.q_lo, sm.k(b), sm.k_lo(b),
                                                 key0, warp, lane);
                mask_keys<kKeyChunk>(s, b * BK + key0, lane, n);
                float cmax[4];
                bool grow = false;
#pragma unroll
                for (int r = 0; r < 4; r++) {
                    cmax[r] = -INFINITY;
#pragma unroll
                    for (int t = 0; t < kKeyChunk / 8; t++)
                        cmax[r] = fmaxf(cmax[r], fmaxf(s[r >> 1][t][2 * (r & 1)],
                                                       s[r >> 1][t][2 * (r & 1) + 1]));
                    top[r] = fmaxf(top[r], cmax[r]);
                    grow |= cmax[r] * c > m[r] + kLazyRescale;
                }
                /* Warp-uniform, so the shuffles inside see every lane. */
                if (__any_sync(0xffffffffu, grow)) {
#pragma unroll
                    for (int r = 0; r < 4; r++) {
                        const float x = quad_max(cmax[r]) * c;
                        if (x > m[r] + kLazyRescale) { /* quad-uniform */
                            const float f = ex2(m[r] - x);
                            l[r] *= f;
                            u[r] *= f;
                            m[r] = x;
                        }
                    }
                }
#pragma unroll
                for (int r = 0; r < 4; r++)
#pragma unroll
                    for (int t = 0; t < kKeyChunk / 8; t++)
#pragma unroll
                        for (int e = 0; e < 2; e++)
                            u[r] += ex2(fmaf(s[r >> 1][t][2 * (r & 1) + e], c, -m[r]));
            }
            /* The tile's row sums and maxima, quad-reduced; one thread of
             * each quad keeps them, as absolute log2 values, until the row's
             * sum is known. */
#pragma unroll
            for (int r = 0; r < 4; r++) {
                l[r] += u[r];
                const float row_sum = quad_sum(u[r]);
                const float row_top = quad_max(top[r]);
                if ((lane & 3) == 0)
                    scratch[(size_t)b * kCtaRows + thread_row(warp, lane, r)] =
                        make_float2(lg2(row_sum) + m[r], row_top * c);
            }
        }
        /* The rows' statistics: for the other orders' pass, and log2 of the
         * normaliser for the reduction below. */
#pragma unroll
        for (int r = 0; r < 4; r++) {
            const float sum = quad_sum(l[r]);
            const int row = thread_row(warp, lane, r);
            const int pos = qblock0 * BQ + row;
            if ((lane & 3) == 0) {
                if (pos < n) {
                    const size_t at = (size_t)head * n + __ldg(perm + pos);
                    args.row_max[at] = m[r];
                    args.row_inv[at] = 1.f / sum;
                    log_norm[row] = m[r] + lg2(sum);
                } else {
                    log_norm[row] = INFINITY; /* contributes exactly 0 */
                }
            }
        }
        __syncthreads(); /* scratch and log_norm complete */
        /* Each thread reduces whole tiles over their rows, in row order:
         * the loads of successive rows are independent, so many are in
         * flight, and no shuffles are needed. */
        float *mass = args.mass + ((size_t)head * args.n_slots + args.slot) * tiles;
        float *peak = args.peak + ((size_t)head * args.n_slots + args.slot) * tiles;
        for (int task = threadIdx.x; task < kBlocks * nk; task += kThreads) {
            const int blk = task / nk, j = task % nk, qblock = qblock0 + blk;
            if (qblock >= args.nq)
                break; /* tasks are in block order: the rest are past the end too */
            const float2 *col = scratch + (size_t)j * kCtaRows + blk * BQ;
            const float *norm = log_norm + blk * BQ;
            float sum = 0.f, top = 0.f;
#pragma unroll 8
            for (int i = 0; i < BQ; i++) {
                const float2 v = col[i];
                sum += ex2(v.x - norm[i]);
                top = fmaxf(top, ex2(v.y - norm[i]));
            }
            mass[(size_t)qblock * nk + j] += sum;
            peak[(size_t)qblock * nk + j] += top;
        }
        __syncthreads(); /* before the next item reuses shared memory and scratch */
    }
}

template <int D, int BQ, int BK, bool SPLIT> Kernels make_kernels()
{
    /* Q, two K buffers (each twice with lo parts); the row pass's keys per
     * step are its own.  kSmemSlack: room to start them on 1024 bytes. */
    return {row_stats_kernel<D, SPLIT>,
            Smem<D, kCtaRows, kRowKeys, SPLIT>::kBytes + kSmemSlack,
            tile_stats_kernel<D, BQ, BK, SPLIT>,
            Smem<D, kCtaRows, BK, SPLIT>::kBytes + kSmemSlack,
            first_pass_kernel<D, BQ, BK, SPLIT>,
            Smem<D, kCtaRows, BK, SPLIT>::kBytes + kSmemSlack,
            kCtaRows / BQ};
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

} // namespace

size_t tile_row_smem(int blocks_per_cta, int nk)
{
    return 2 * sizeof(float) * (size_t)blocks_per_cta * nk;
}

Kernels pick_kernels(int d, int bq, int bk, bool split)
{
    if (d == 32)
        return pick_blocks<32>(bq, bk, split);
    if (d == 64)
        return pick_blocks<64>(bq, bk, split);
    return pick_blocks<128>(bq, bk, split);
}

} // namespace paro_tile
