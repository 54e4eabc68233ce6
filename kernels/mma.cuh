/* paro — what the attention-map kernels share: PTX helpers, swizzled
 * shared-memory tiles of bf16 rows gathered through a permutation, and the
 * warp-level S = Q K^T on tensor cores (mma.sync m16n8k16, bf16 in, f32
 * accumulate), with an optional lo part for inputs that are not exactly
 * bf16 (S = hi*hi + hi*lo + lo*hi, within ~2^-16 of the f32 product).
 *
 * Layout conventions (every kernel of kernels/ uses them):
 *  - a thread block takes kCtaRows query rows, four warps of kWarpRows;
 *  - a warp's scores live in mma C layout: s[mt][t][2*h + e] is query row
 *    warp*32 + mt*16 + lane/4 + 8*h and key key0 + t*8 + 2*(lane%4) + e;
 *  - thread_row(warp, lane, r) names the row of the thread's row slot
 *    r = 2*mt + h (four slots a thread).
 * Included by .cu files only (CUDA types); kernels.h stays plain C.
 */
#ifndef PARO_MMA_CUH_5e1c7a20
#define PARO_MMA_CUH_5e1c7a20

#include <cuda_bf16.h> /* __nv_bfloat16 */
#include <math.h>      /* INFINITY */
#include <stdint.h>    /* uint32_t */

namespace paro_mma {

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

/* C += A B, m16n8k16, f32 accumulators; bf16 or f16 operands. */
#define PARO_MMA_16816(name, type)                                                               \
    __device__ __forceinline__ void name(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,    \
                                         uint32_t b1)                                            \
    {                                                                                            \
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." type "." type ".f32 "              \
                     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"                   \
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])                             \
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));              \
    }
PARO_MMA_16816(mma_bf16, "bf16")
PARO_MMA_16816(mma_f16, "f16")
#undef PARO_MMA_16816

__device__ __forceinline__ float ex2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

__device__ __forceinline__ float lg2(float x)
{
    float y;
    asm("lg2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
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

/* As load_rows, for ROWS rows listed by token (capture index; negative:
 * no row, read as 0). */
template <int D, int ROWS, int THREADS>
__device__ __forceinline__ void load_listed_rows(uint32_t smem, const __nv_bfloat16 *src,
                                                 const int32_t *tokens)
{
    constexpr int kChunks = Tile<D>::kChunks;
    constexpr int kPerRow = THREADS >= ROWS ? THREADS / ROWS : 1;
    constexpr int kRowStep = THREADS / kPerRow;
    constexpr int kMine = kChunks / kPerRow;
    static_assert(kChunks % kPerRow == 0, "threads per row must divide the chunks");
    const int first = (threadIdx.x % kPerRow) * kMine;
#pragma unroll
    for (int row = threadIdx.x / kPerRow; row < ROWS; row += kRowStep) {
        const int token = __ldg(tokens + row);
        const __nv_bfloat16 *from = src + (size_t)(token >= 0 ? token : 0) * D;
#pragma unroll
        for (int i = 0; i < kMine; i++)
            cp_async16(Tile<D>::at(smem, row, first + i), from + (first + i) * 8,
                       token >= 0 ? 16 : 0);
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
constexpr int kCtaWarps = kCtaRows / kWarpRows;
/* Keys whose scores a warp holds at once in the tile pass: 32 keys x 32
 * rows is 32 registers, so four blocks fit per SM without spills. */
#ifndef PARO_KEY_CHUNK
#define PARO_KEY_CHUNK 32
#endif
constexpr int kKeyChunk = PARO_KEY_CHUNK;

/* Tuning knobs, measured in kernels/README.md (override with -D). */
#ifndef PARO_TILE_MIN_BLOCKS
#define PARO_TILE_MIN_BLOCKS 4 /* thread blocks per SM the register budget allows */
#endif
#ifndef PARO_Q_IN_REGS
#define PARO_Q_IN_REGS 1       /* keep Q fragments in registers when they fit */
#endif

/* The warp's query rows as mma A operands.  Kept in registers for the whole
 * loop when they fit (bf16 inputs, d <= 64); otherwise read from shared
 * memory at each use. */
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
 * start at row key0, in mma layout (see the top of this file). */
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

/* Sum and maximum over the four threads of a quad (the threads that hold
 * one query row): butterflies, so every thread of the quad ends with the
 * same bits (addition is commutative, and each step adds the same pair). */
__device__ __forceinline__ float quad_sum(float x)
{
    x += __shfl_xor_sync(0xffffffffu, x, 1);
    return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

__device__ __forceinline__ float quad_max(float x)
{
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
    return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
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

} // namespace paro_mma

#endif
