/* paro — the pair pass: the tiles of two orders in one sweep over the
 * attention map (kernels/pair_plan.h has the vocabulary: rows in order A,
 * keys in order B, row groups, key groups, cells).
 *
 * A thread block takes 128 row slots (four warps of 32, kernels/mma.cuh's
 * layout) and sweeps every key of the head in steps of 64.  Per step, each
 * warp computes S with tensor cores, then p' = 2^14 p = 2^(s c + bias) once
 * per element (bias folds in the row's normaliser and the 2^14), rounded to
 * f16 pairs, and from those pairs:
 *   - sums, on tensor cores: D = (sum-row indicator)^T p'^T gives each row's
 *     sum over the keys of each of the step's A key blocks and (row 15) over
 *     all its keys, then E = D x (column indicator) sums those over the rows
 *     of each of the warp's two A query blocks and six B query blocks (the
 *     indicators are 0/1 matrices; repeated rows have no 1).  An A tile's
 *     sum has one lane a step, which adds it into the warp's own f32 row of
 *     A's tiles in shared memory (no atomics; the warps' rows are added in
 *     warp order at the end); a B tile's goes to the step's staging;
 *   - maxima: each thread takes the larger of its two rows of a unit (rows
 *     g and g + 8 of an mma tile, one row group by construction) and a
 *     running maximum over the step's keys in order; at each key-group
 *     boundary (the same for all lanes) it writes its maxima to a per-warp
 *     log in the warp's own Q rows of shared memory, and at the step's end
 *     the quads combine the log into A's tiles with atomicMax (where Q stays
 *     in shared memory, each boundary takes two shuffles and the atomicMax).
 * A's tiles are kept for the whole sweep in shared memory (the block's rows
 * meet at most PARO_PAIR_MAX_QA query blocks of A), B's per step (the step
 * is inside one key block of B).  They leave the block as 64-bit fixed
 * point sums and f16 bit patterns of maxima through integer atomics: the
 * same bits whatever order the blocks add in.
 *
 * f16 keeps p' to 2^-12 relative (2^-25 absolute below 2^-14, that is
 * 2^-39 of p), and D to 2^-12 relative; both roundings are far inside the
 * 1e-3 that tests/check_cuda.c asks of every tile.
 */
#include <cuda_bf16.h> /* __nv_bfloat16 */
#include <cuda_fp16.h> /* __half2, __floats2half2_rn, __hmax2 */
#include <math.h>      /* INFINITY */
#include <stdint.h>    /* uint32_t */

#include "mma.cuh"
#include "pair_pass.h"

namespace {

using namespace paro_mma;

constexpr int kChunk = PARO_PAIR_CHUNK;   /* keys per step */
constexpr int kSub = 32;                  /* keys whose scores a warp holds at once */
constexpr float kLog2Scale = 14.f;        /* p' = 2^14 p */
constexpr float kToFixed = 2147483648.f;  /* E = 2^9 p (2^14 x the indicator's 2^-5): x 2^31 = 2^40 p */
constexpr int kTableBytes = (int)sizeof(paro_pair_chunk) + 4 * 32 * 16;
#ifndef PARO_PAIR_MIN_BLOCKS
#define PARO_PAIR_MIN_BLOCKS 4 /* thread blocks per SM the register budget allows */
#endif
static_assert(sizeof(paro_pair_chunk) == 128, "a step's table is 128 bytes");

struct PairArgs {
    HeadInputs in;
    int n, nq, nk, tiles, n_chunks;
    float c;
    const float *row_max, *row_inv;
    const int32_t *row_token;
    const uint8_t *row_info;
    const uint32_t *warp_qb, *cta_qa0, *cta_qb, *perm_b;
    const uint8_t *warp_col, *warp_qbcta;
    const unsigned char *chunk; /* paro_pair_chunk, 128 bytes each */
    const unsigned char *bind;  /* 2048 bytes a step */
    unsigned long long *sum_a, *sum_b;
    unsigned *max_a, *max_b;
};

/* Two floats as an f16 pair, the first in the lower half. */
__device__ __forceinline__ uint32_t pack_f16(float lo, float hi)
{
    const __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t *>(&h);
}

__device__ __forceinline__ uint32_t max_f16x2(uint32_t a, uint32_t b)
{
    const __half2 r = __hmax2(*reinterpret_cast<const __half2 *>(&a),
                              *reinterpret_cast<const __half2 *>(&b));
    return *reinterpret_cast<const uint32_t *>(&r);
}

/* The halves of a pair that hold keys before a cut: the pair holds keys k0
 * and k0 + 1 and x16 = 16 (cut - k0); all ones for x16 >= 32, the lower half
 * for 16, none at or below 0.  One shift that saturates at 32: 64-bit
 * 0:0xFFFFFFFF shifted right by 32 - x16 (at least 0). */
__device__ __forceinline__ uint32_t keys_before(int x16)
{
    return __funnelshift_rc(0xFFFFFFFFu, 0u, (unsigned)max(32 - x16, 0));
}

__device__ __forceinline__ unsigned long long to_fixed(float e)
{
    return __float2ull_rn(e * kToFixed);
}

/* Copies step ci's table (its paro_pair_chunk and indicator fragments). */
__device__ __forceinline__ void load_table(unsigned char *dst, const PairArgs &a, int ci)
{
    const unsigned char *bind = a.bind + (size_t)ci * (4 * 32 * 16);
    cp_async16(smem_addr(dst + sizeof(paro_pair_chunk) + threadIdx.x * 16), bind + threadIdx.x * 16,
               16);
    if (threadIdx.x < sizeof(paro_pair_chunk) / 16)
        cp_async16(smem_addr(dst + threadIdx.x * 16),
                   a.chunk + (size_t)ci * sizeof(paro_pair_chunk) + threadIdx.x * 16, 16);
}

/* Thread t < PARO_PAIR_MAX_QB: the staged B tile of the block's t-th B query
 * block and the step's key block kb_b, to the pass's sums; clears it. */
__device__ __forceinline__ void flush_stage(const PairArgs &a, unsigned *hi, unsigned *lo,
                                            unsigned *top, int cta, size_t head_tiles, int kb_b,
                                            int nk)
{
    const int t = threadIdx.x;
    const unsigned qb = __ldg(a.cta_qb + (size_t)cta * PARO_PAIR_MAX_QB + t);
    const unsigned long long sum = ((unsigned long long)hi[t] << 24) + lo[t];
    const size_t at = head_tiles + (size_t)qb * nk + kb_b;
    if (qb != 0xFFFFu && sum)
        atomicAdd(a.sum_b + at, sum);
    if (qb != 0xFFFFu && top[t])
        atomicMax(a.max_b + at, top[t]);
    hi[t] = lo[t] = top[t] = 0u;
}

/* The warp's rows' columns as mma B fragments (info: the block's row
 * slots; col: each of the warp's row groups' columns): k-step mt covers the
 * warp's rows 16 mt + k; column g is the warp's A query block g (g < 2) or B query
 * block g - 2; counted rows only. */
__device__ __forceinline__ void column_indicator(uint32_t (&rind)[2][2], const uint8_t *info,
                                                 const uint8_t *col, int warp, int g, int q)
{
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int r2 = 0; r2 < 2; r2++) {
            uint32_t bits = 0;
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const unsigned inf = __ldg(info + warp * kWarpRows + mt * 16 + 2 * q + 8 * r2 + e);
                if (inf != PARO_PAIR_NO_ROW && (inf & PARO_PAIR_COUNTED)) {
                    const unsigned c = col[inf & 7u];
                    if ((c & 15u) == (unsigned)g || 2 + (c >> 4) == (unsigned)g)
                        bits |= PARO_PAIR_ROW_ONE << (16 * e);
                }
            }
            rind[mt][r2] = bits;
        }
}

/* The step's logged key groups ([group][lane] in group_log) to A's maxima
 * in shared memory (acc_max, each unit's row at a_row, -1 none): lane
 * (g, q) takes groups q, q + 4, ... for its own units, the quad's four
 * entries in one 16-byte read.  Returns the quad's maxima over the step
 * (step_top: this lane's). */
__device__ __forceinline__ uint32_t close_group_log(const uint32_t *group_log,
                                                   const paro_pair_chunk *ch, int n_groups,
                                                   unsigned *acc_max, const int (&a_row)[2],
                                                   uint32_t step_top, int g, int q)
{
    __syncwarp();
    for (int gl = q; gl < n_groups; gl += 4) {
        const uint4 v = *reinterpret_cast<const uint4 *>(group_log + gl * 32 + 4 * g);
        const uint32_t both = max_f16x2(max_f16x2(v.x, v.y), max_f16x2(v.z, v.w));
        const int kb = ch->kb_a[gl];
        if (a_row[0] >= 0)
            atomicMax(acc_max + a_row[0] + kb, both & 0xFFFFu);
        if (a_row[1] >= 0)
            atomicMax(acc_max + a_row[1] + kb, both >> 16);
    }
    step_top = max_f16x2(step_top, __shfl_xor_sync(0xffffffffu, step_top, 1));
    return max_f16x2(step_top, __shfl_xor_sync(0xffffffffu, step_top, 2));
}

/* The step's sums out of D (dsum: each row's sum over each sum row's keys)
 * by E = D x column indicator, E[sum row][column]: e[0], e[1] at row g,
 * columns 2q and 2q + 1; e[2], e[3] at row g + 8.  A's tiles go to the
 * warp's own row of sums in acc_sum, B's to the step's staging (slot: each
 * of the warp's B columns' index there, 0xFF none). */
__device__ __forceinline__ void add_step_sums(const float (&dsum)[2][2][4], const uint32_t (&rind)[2][2],
                                              const paro_pair_chunk *ch, float *acc_sum, int nk,
                                              const uint8_t *slot, unsigned *stage_hi,
                                              unsigned *stage_lo, int warp, int g, int q)
{
    float e[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int mt = 0; mt < 2; mt++) {
        const uint32_t a[4] = {pack_f16(dsum[mt][0][0], dsum[mt][0][1]),
                               pack_f16(dsum[mt][0][2], dsum[mt][0][3]),
                               pack_f16(dsum[mt][1][0], dsum[mt][1][1]),
                               pack_f16(dsum[mt][1][2], dsum[mt][1][3])};
        mma_f16(e, a, rind[mt][0], rind[mt][1]);
    }
    if (q == 0) {
        /* A: columns 0 and 1, the warp's A query blocks; row m is one of
         * the step's distinct A key blocks, so each tile has one lane: a
         * plain add into the warp's own sums. */
        const int n_sums = ch->n_sums;
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int m = g + 8 * h;
            if (m < n_sums) {
                float *at = acc_sum + warp * PARO_PAIR_WARP_QA * nk + ch->kb_sum[m];
                at[0] += e[2 * h];
                at[nk] += e[2 * h + 1];
            }
        }
    } else if (g == PARO_PAIR_SUM_ROWS - 8) {
        /* B: row 15 (every key of the step), columns 2q and 2q + 1, the
         * warp's B query blocks 2q - 2 and 2q - 1. */
#pragma unroll
        for (int i = 0; i < 2; i++) {
            const unsigned at = slot[2 * q - 2 + i];
            const float v = e[2 + i];
            if (at != 0xFFu && v > 0.f) {
                const unsigned long long f = to_fixed(v);
                atomicAdd(&stage_hi[at], (unsigned)(f >> 24));
                atomicAdd(&stage_lo[at], (unsigned)(f & 0xFFFFFFu));
            }
        }
    }
}

/* The block's share of A's tiles, to the pass's sums: the warps' sums
 * (warp_sum: [warp][A column][key block]; a warp's first A query block is
 * its first row group's in group_qb) added in warp order, and the maxima
 * ([A query block - qa0][key block]). */
__device__ __forceinline__ void write_a_tiles(const PairArgs &a, const float *warp_sum,
                                              const unsigned *acc_max,
                                              const uint32_t (*group_qb)[PARO_PAIR_MAX_ROW_GROUPS],
                                              int qa0, size_t head_tiles, int nk)
{
    for (int i = threadIdx.x; i < PARO_PAIR_MAX_QA * nk; i += kCtaRows) {
        const int qa = qa0 + i / nk, kb = i % nk;
        if (qa >= a.nq)
            break;
        float e = 0.f;
#pragma unroll
        for (int w = 0; w < kCtaWarps; w++) {
            const int col = qa - (int)(group_qb[w][0] & 0xFFFFu); /* paro_pair_warp_qa0 */
            if (col >= 0 && col < PARO_PAIR_WARP_QA)
                e += warp_sum[(w * PARO_PAIR_WARP_QA + col) * nk + kb];
        }
        const size_t at = head_tiles + (size_t)qa * nk + kb;
        const unsigned long long sum = to_fixed(e);
        if (sum)
            atomicAdd(a.sum_a + at, sum);
        if (acc_max[i])
            atomicMax(a.max_a + at, acc_max[i]);
    }
}

template <int D, bool SPLIT>
__global__ void __launch_bounds__(kCtaRows, PARO_PAIR_MIN_BLOCKS) pair_pass_kernel(PairArgs args)
{
    static_assert(kCtaRows == PARO_PAIR_CTA_ROWS && kWarpRows == PARO_PAIR_WARP_ROWS,
                  "the plan's thread block is the kernels'");
    using Sm = Smem<D, kCtaRows, kChunk, SPLIT>;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    unsigned char *const smem = aligned_smem(smem_raw);
    __shared__ uint32_t group_qb[kCtaWarps][PARO_PAIR_MAX_ROW_GROUPS];
    __shared__ uint8_t group_col[kCtaWarps][PARO_PAIR_MAX_ROW_GROUPS];
    __shared__ uint8_t col_slot[kCtaWarps][PARO_PAIR_WARP_QB]; /* B column -> cta_qb index */
    /* B's tiles of the step, by B query block of the thread block: fixed-point
     * sum (bits 24 and up, low 24 bits) and maximum; two steps' worth, one
     * filled while the other goes to global memory. */
    __shared__ unsigned stage_hi[2][PARO_PAIR_MAX_QB], stage_lo[2][PARO_PAIR_MAX_QB],
        stage_max[2][PARO_PAIR_MAX_QB];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
    const int cta = blockIdx.x, head = blockIdx.y, n = args.n, nk = args.nk;
    const size_t head_off = (size_t)head * n * D;
    const __nv_bfloat16 *qp = args.in.q + head_off, *kp = args.in.k + head_off;
    const __nv_bfloat16 *q_lo = SPLIT ? args.in.q_lo + head_off : nullptr;
    const __nv_bfloat16 *k_lo = SPLIT ? args.in.k_lo + head_off : nullptr;
    const Sm sm(smem_addr(smem));
    unsigned char *tables = smem + Sm::kBytes;
    /* A's tiles: each warp's sums, [warp][A column][key block], which only
     * that warp adds to, in step order (deterministic without atomics), and
     * the block's maxima, [A query block - qa0][key block]. */
    float *acc_sum = reinterpret_cast<float *>(tables + 2 * kTableBytes);
    unsigned *acc_max = reinterpret_cast<unsigned *>(acc_sum + kCtaWarps * PARO_PAIR_WARP_QA * nk);
    const int32_t *tokens = args.row_token + (size_t)cta * kCtaRows;
    const uint8_t *info = args.row_info + (size_t)cta * kCtaRows;

    {
        RowGather<D, kCtaRows, kCtaRows> rows;
        rows.fetch_listed(tokens);
        rows.load(sm.q, qp);
        if (SPLIT)
            rows.load(sm.q_lo, q_lo);
    }
    RowGather<D, kChunk, kCtaRows> keys;
    keys.fetch(args.perm_b, 0, n);
    keys.load(sm.k(0), kp);
    if (SPLIT)
        keys.load(sm.k_lo(0), k_lo);
    load_table(tables, args, 0);
    cp_async_commit();
    keys.fetch(args.perm_b, kChunk, n);
    for (int i = threadIdx.x; i < kCtaWarps * PARO_PAIR_WARP_QA * nk; i += kCtaRows)
        acc_sum[i] = 0.f;
    for (int i = threadIdx.x; i < PARO_PAIR_MAX_QA * nk; i += kCtaRows)
        acc_max[i] = 0u;
    const size_t warp_at = (size_t)cta * kCtaWarps + warp;
    if (lane < PARO_PAIR_MAX_ROW_GROUPS) {
        const size_t at = warp_at * PARO_PAIR_MAX_ROW_GROUPS + lane;
        group_qb[warp][lane] = __ldg(args.warp_qb + at);
        group_col[warp][lane] = __ldg(args.warp_col + at);
    }
    if (lane < PARO_PAIR_WARP_QB)
        col_slot[warp][lane] = __ldg(args.warp_qbcta + warp_at * PARO_PAIR_WARP_QB + lane);
    if (threadIdx.x < 2 * PARO_PAIR_MAX_QB) {
        (&stage_hi[0][0])[threadIdx.x] = 0u;
        (&stage_lo[0][0])[threadIdx.x] = 0u;
        (&stage_max[0][0])[threadIdx.x] = 0u;
    }

    /* The thread's rows r = 2 mt + h: p' = 2^(s c + bias), bias = 14 - max +
     * log2(1 / sum); a slot without a row gets p' = 0. */
    float bias[4];
#pragma unroll
    for (int r = 0; r < 4; r++) {
        const int token = __ldg(tokens + thread_row(warp, lane, r));
        bias[r] = -INFINITY;
        if (token >= 0) {
            const size_t at = (size_t)head * n + token;
            bias[r] = kLog2Scale - __ldg(args.row_max + at) + lg2(__ldg(args.row_inv + at));
        }
    }
    /* The thread's two units (rows g and g + 8 of m tile mt) and their row
     * groups (8: no row). */
    int ugroup[2];
#pragma unroll
    for (int mt = 0; mt < 2; mt++) {
        const unsigned inf = __ldg(info + warp * kWarpRows + mt * 16 + g);
        ugroup[mt] = inf == PARO_PAIR_NO_ROW ? PARO_PAIR_MAX_ROW_GROUPS : (int)(inf & 7u);
    }
    const int qa0 = (int)__ldg(args.cta_qa0 + cta);
    const size_t head_tiles = (size_t)head * args.tiles;
    cp_async_wait<0>();
    __syncthreads();
    uint32_t rind[2][2];
    column_indicator(rind, info, group_col[warp], warp, g, q);
    /* Where each unit's maxima go: its row of A's tiles in acc_max, its B
     * query block's slot in the staging; -1 for a unit without rows. */
    int a_row[2], b_slot[2];
#pragma unroll
    for (int mt = 0; mt < 2; mt++) {
        const bool valid = ugroup[mt] < PARO_PAIR_MAX_ROW_GROUPS;
        a_row[mt] = valid ? ((int)(group_qb[warp][ugroup[mt]] & 0xFFFFu) - qa0) * nk : -1;
        b_slot[mt] = valid ? col_slot[warp][group_col[warp][ugroup[mt]] >> 4] : -1;
    }
    int kb_b_prev = 0;
    QFrags<D, SPLIT> qf;
    qf.load(sm.q, warp, lane);
    /* With Q in registers, the warp's own 32 rows of Q in shared memory are
     * free from here on: they hold the step's key-group maxima per lane
     * ([group][lane], rewritten every step after the block's barrier). */
    constexpr bool kLog = QFrags<D, SPLIT>::kInRegs;
    static_assert(!kLog || PARO_PAIR_MAX_KEY_GROUPS * 32 * 4 <= kWarpRows * Tile<D>::kRowBytes,
                  "the group log fits a warp's Q rows");
    uint32_t *const group_log =
        reinterpret_cast<uint32_t *>(smem) + warp * (kWarpRows * Tile<D>::kRowBytes / 4);
    __syncwarp();
    const float c = args.c;

    for (int ci = 0; ci < args.n_chunks; ci++) {
        /* One barrier a step: after it, step ci's keys and table are in
         * shared memory and every warp is done with step ci - 1, whose
         * buffers the next loads reuse. */
        if (ci > 0) {
            cp_async_wait<0>();
            __syncthreads();
            if (threadIdx.x < PARO_PAIR_MAX_QB)
                flush_stage(args, stage_hi[(ci - 1) & 1], stage_lo[(ci - 1) & 1],
                            stage_max[(ci - 1) & 1], cta, head_tiles, kb_b_prev, nk);
        }
        if (ci + 1 < args.n_chunks) {
            keys.load(sm.k(ci + 1), kp);
            if (SPLIT)
                keys.load(sm.k_lo(ci + 1), k_lo);
            load_table(tables + ((ci + 1) & 1) * kTableBytes, args, ci + 1);
            cp_async_commit();
            keys.fetch(args.perm_b, (ci + 2) * kChunk, n);
        }
        const unsigned char *table = tables + (ci & 1) * kTableBytes;
        const paro_pair_chunk *ch = reinterpret_cast<const paro_pair_chunk *>(table);
        const uint4 *bind = reinterpret_cast<const uint4 *>(table + sizeof(paro_pair_chunk));
        const int n_groups = ch->n_groups, kb_b = ch->kb_b, buf = ci & 1;
        kb_b_prev = kb_b;

        float dsum[2][2][4]; /* D for the row tiles (mt, h): key group x row */
#pragma unroll
        for (int mt = 0; mt < 2; mt++)
#pragma unroll
            for (int h = 0; h < 2; h++)
                dsum[mt][h][0] = dsum[mt][h][1] = dsum[mt][h][2] = dsum[mt][h][3] = 0.f;
        uint32_t cur[2] = {0u, 0u}; /* running maxima of the open key group */
        uint32_t step_top = 0u;     /* the units' maxima over the step (f16 pair) */
        int gi = 0, next_cut = n_groups > 1 ? ch->cut[0] : kChunk;

        /* Closes key group gi: each unit's maximum over its lane's keys of
         * the group, one f16 each, unit 0 in the lower half.  With the group
         * log, the lane writes it there and the step's end combines the
         * quads; without, the quad's lanes (which hold the same rows)
         * combine now and the first adds it to A's tile.  atomicMax: the same
         * result in any order. */
        auto flush = [&](uint32_t v0, uint32_t v1) {
            uint32_t both = max_f16x2(__byte_perm(v0, v1, 0x5410), __byte_perm(v0, v1, 0x7632));
            if constexpr (kLog) {
                group_log[gi * 32 + lane] = both;
                step_top = max_f16x2(step_top, both);
                return;
            }
            both = max_f16x2(both, __shfl_xor_sync(0xffffffffu, both, 1));
            both = max_f16x2(both, __shfl_xor_sync(0xffffffffu, both, 2));
            step_top = max_f16x2(step_top, both);
            if (q == 0) {
                const int kb = ch->kb_a[gi];
                if (a_row[0] >= 0)
                    atomicMax(acc_max + a_row[0] + kb, both & 0xFFFFu);
                if (a_row[1] >= 0)
                    atomicMax(acc_max + a_row[1] + kb, both >> 16);
            }
        };

#pragma unroll
        for (int sub = 0; sub < kChunk / kSub; sub++) {
            float s[2][kSub / 8][4];
            warp_scores<D, SPLIT, kSub>(s, qf, sm.q, sm.q_lo, sm.k(ci), sm.k_lo(ci), sub * kSub,
                                        warp, lane);
            mask_keys<kSub>(s, ci * kChunk + sub * kSub, lane, n);
            uint32_t pp[2][kSub / 8][2]; /* p' of rows (mt, h), keys 8t + 2q and + 1 */
#pragma unroll
            for (int mt = 0; mt < 2; mt++)
#pragma unroll
                for (int t = 0; t < kSub / 8; t++)
#pragma unroll
                    for (int h = 0; h < 2; h++)
                        pp[mt][t][h] = pack_f16(ex2(fmaf(s[mt][t][2 * h], c, bias[2 * mt + h])),
                                                ex2(fmaf(s[mt][t][2 * h + 1], c, bias[2 * mt + h])));
            /* Sums: D += indicator^T x p'^T over the sub-step's k-steps. */
#pragma unroll
            for (int jj = 0; jj < kSub / 16; jj++) {
                const uint4 a4 = bind[(sub * (kSub / 16) + jj) * 32 + lane];
                const uint32_t a[4] = {a4.x, a4.y, a4.z, a4.w};
#pragma unroll
                for (int mt = 0; mt < 2; mt++)
#pragma unroll
                    for (int h = 0; h < 2; h++)
                        mma_f16(dsum[mt][h], a, pp[mt][2 * jj][h], pp[mt][2 * jj + 1][h]);
            }
            /* Maxima: unit by unit, key group by key group, 16 keys at a
             * time: a lane's keys 2q, 2q + 1 of two 8-key tiles, taken in the
             * same pairs as the sums' mma takes them (no register copies). */
#pragma unroll
            for (int jj = 0; jj < kSub / 16; jj++) {
                const int span = sub * (kSub / 16) + jj, s_end = 16 * span + 16;
                if (next_cut >= s_end) { /* the same for every lane */
#pragma unroll
                    for (int mt = 0; mt < 2; mt++)
                        cur[mt] = max_f16x2(cur[mt],
                                            max_f16x2(max_f16x2(pp[mt][2 * jj][0], pp[mt][2 * jj + 1][0]),
                                                      max_f16x2(pp[mt][2 * jj][1], pp[mt][2 * jj + 1][1])));
                } else {
                    uint32_t ta[2], tb[2]; /* per unit, tile a and tile b over both rows */
#pragma unroll
                    for (int mt = 0; mt < 2; mt++) {
                        ta[mt] = max_f16x2(pp[mt][2 * jj][0], pp[mt][2 * jj][1]);
                        tb[mt] = max_f16x2(pp[mt][2 * jj + 1][0], pp[mt][2 * jj + 1][1]);
                    }
                    /* Each cut: the keys before it close group gi and are
                     * cleared, so the next group sees only those after. */
                    do {
                        const int x16 = 16 * (next_cut - 16 * span) - 32 * q; /* tile a: keys 2q, 2q + 1 */
                        const uint32_t ma = keys_before(x16), mb = keys_before(x16 - 128);
                        flush(max_f16x2(cur[0], max_f16x2(ta[0] & ma, tb[0] & mb)),
                              max_f16x2(cur[1], max_f16x2(ta[1] & ma, tb[1] & mb)));
#pragma unroll
                        for (int mt = 0; mt < 2; mt++) {
                            ta[mt] &= ~ma;
                            tb[mt] &= ~mb;
                        }
                        cur[0] = cur[1] = 0u;
                        gi++;
                        next_cut = gi < n_groups - 1 ? ch->cut[gi] : kChunk;
                    } while (next_cut < s_end);
                    cur[0] = max_f16x2(ta[0], tb[0]);
                    cur[1] = max_f16x2(ta[1], tb[1]);
                }
            }
        }
        flush(cur[0], cur[1]);
        if constexpr (kLog)
            step_top = close_group_log(group_log, ch, n_groups, acc_max, a_row, step_top, g, q);
        /* B: the step is inside one key block; each unit's maximum goes to
         * its B query block's staged tile. */
        if (q == 0) {
            if (b_slot[0] >= 0)
                atomicMax(&stage_max[buf][b_slot[0]], step_top & 0xFFFFu);
            if (b_slot[1] >= 0)
                atomicMax(&stage_max[buf][b_slot[1]], step_top >> 16);
        }

        add_step_sums(dsum, rind, ch, acc_sum, nk, col_slot[warp],
                      stage_hi[buf], stage_lo[buf], warp, g, q);
    }
    __syncthreads();
    if (threadIdx.x < PARO_PAIR_MAX_QB)
        flush_stage(args, stage_hi[(args.n_chunks - 1) & 1], stage_lo[(args.n_chunks - 1) & 1],
                    stage_max[(args.n_chunks - 1) & 1], cta, head_tiles, kb_b_prev, nk);
    write_a_tiles(args, acc_sum, acc_max, group_qb, qa0, head_tiles, nk);
}

/* Adds the pass's fixed-point sums and f16 maxima to the layer's sums and
 * clears them for the next pass. */
__global__ void pair_finish_kernel(PairSums s, float *mass, float *peak, int heads, int n_slots,
                                   int tiles, int slot_a, int slot_b)
{
    const size_t total = (size_t)heads * tiles;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        const size_t head = i / tiles, tile = i % tiles;
        const size_t at_a = (head * n_slots + slot_a) * tiles + tile;
        const size_t at_b = (head * n_slots + slot_b) * tiles + tile;
        mass[at_a] += (float)((double)s.sum_a[i] * 0x1p-40);
        mass[at_b] += (float)((double)s.sum_b[i] * 0x1p-40);
        peak[at_a] += __half2float(__ushort_as_half((unsigned short)s.max_a[i])) * 0x1p-14f;
        peak[at_b] += __half2float(__ushort_as_half((unsigned short)s.max_b[i])) * 0x1p-14f;
        s.sum_a[i] = s.sum_b[i] = 0;
        s.max_a[i] = s.max_b[i] = 0;
    }
}

typedef void (*pair_kernel_fn)(PairArgs);

template <int D> pair_kernel_fn pick_split(bool split)
{
    return split ? pair_pass_kernel<D, true> : pair_pass_kernel<D, false>;
}

pair_kernel_fn pick(int d, bool split)
{
    return d == 32 ? pick_split<32>(split) : d == 64 ? pick_split<64>(split) : pick_split<128>(split);
}

size_t base_bytes(int d, bool split)
{
    if (d == 32)
        return split ? Smem<32, kCtaRows, kChunk, true>::kBytes : Smem<32, kCtaRows, kChunk, false>::kBytes;
    if (d == 64)
        return split ? Smem<64, kCtaRows, kChunk, true>::kBytes : Smem<64, kCtaRows, kChunk, false>::kBytes;
    return split ? Smem<128, kCtaRows, kChunk, true>::kBytes : Smem<128, kCtaRows, kChunk, false>::kBytes;
}

} // namespace

size_t paro_pair_smem_bytes(int d, bool split, int nk)
{
    return base_bytes(d, split) + kSmemSlack + 2 * kTableBytes +
           (size_t)kCtaWarps * PARO_PAIR_WARP_QA * nk * sizeof(float) +
           (size_t)PARO_PAIR_MAX_QA * nk * sizeof(unsigned);
}

cudaError_t paro_pair_prepare(int d, int nk)
{
    for (int split = 0; split < 2; split++) {
        cudaError_t err = cudaFuncSetAttribute(pick(d, split != 0),
                                               cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               (int)paro_pair_smem_bytes(d, split != 0, nk));
        if (err != cudaSuccess)
            return err;
    }
    return cudaSuccess;
}

cudaError_t paro_pair_run(const PairLaunch &l, const PairTables &t, const PairSums &s, bool split,
                          cudaStream_t stream)
{
    PairArgs a;
    a.in = {static_cast<const __nv_bfloat16 *>(l.q), static_cast<const __nv_bfloat16 *>(l.k),
            static_cast<const __nv_bfloat16 *>(l.q_lo), static_cast<const __nv_bfloat16 *>(l.k_lo)};
    a.n = l.n;
    a.nq = l.nq;
    a.nk = l.nk;
    a.tiles = l.nq * l.nk;
    a.n_chunks = (int)t.n_chunks;
    a.c = l.c;
    a.row_max = l.row_max;
    a.row_inv = l.row_inv;
    a.row_token = t.row_token;
    a.row_info = t.row_info;
    a.warp_qb = t.warp_qb;
    a.cta_qa0 = t.cta_qa0;
    a.cta_qb = t.cta_qb;
    a.warp_col = t.warp_col;
    a.warp_qbcta = t.warp_qbcta;
    a.perm_b = t.perm_b;
    a.chunk = reinterpret_cast<const unsigned char *>(t.chunk);
    a.bind = reinterpret_cast<const unsigned char *>(t.bind);
    a.sum_a = s.sum_a;
    a.sum_b = s.sum_b;
    a.max_a = s.max_a;
    a.max_b = s.max_b;
    dim3 grid(t.n_ctas, (unsigned)l.heads);
    pick(l.d, split)<<<grid, kCtaRows, paro_pair_smem_bytes(l.d, split, l.nk), stream>>>(a);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess)
        return err;
    const size_t total = (size_t)l.heads * a.tiles;
    const unsigned blocks = (unsigned)((total + 255) / 256 < 4096 ? (total + 255) / 256 : 4096);
    pair_finish_kernel<<<blocks, 256, 0, stream>>>(s, l.mass, l.peak, l.heads, l.n_slots, a.tiles,
                                                   t.slot_a, t.slot_b);
    return cudaGetLastError();
}
