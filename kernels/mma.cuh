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

/* Tensor-core S from wgmma (sm_90a): the warpgroup's four warps multiply
 * their Q fragments, kept in registers, with a K tile that the hardware
 * reads from shared memory itself, so no K fragment is loaded and no
 * address is computed per mma.  Built for sm_90a only (CUDA_ARCH); other
 * targets keep mma.sync.  PARO_NO_WGMMA turns it off for measuring. */
#if defined(__CUDA_ARCH_FEAT_SM90_ALL) && !defined(PARO_NO_WGMMA)
#define PARO_WGMMA 1
#else
#define PARO_WGMMA 0
#endif

template <int N> __device__ __forceinline__ void cp_async_wait()
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#if PARO_WGMMA
    /* cp.async writes through the generic proxy and wgmma reads through the
     * async one: the fence orders the first before the second (the barrier
     * that follows every wait then publishes it to the other warps). */
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
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

#if PARO_WGMMA
/* A wgmma shared-memory descriptor for a K-major operand in the 128-byte
 * swizzle: rows of 128 bytes whose 16-byte chunks are XOR-ed with the row's
 * low three bits (Tile<64> below), in 1024-byte groups of eight rows.  The
 * start address (bits 0-13, in 16 bytes), the leading-dimension offset
 * (16-29; unused by this layout, 1 by convention), the stride between the
 * groups of eight rows (32-45: 1024 bytes) and the swizzle mode (62-63: 1,
 * 128 bytes).  The tile must start on a 1024-byte boundary. */
__device__ __forceinline__ uint64_t wg_desc_sw128(uint32_t smem)
{
    return (uint64_t)((smem & 0x3FFFFu) >> 4) | ((uint64_t)1 << 16) |
           ((uint64_t)(1024 >> 4) << 32) | ((uint64_t)1 << 62);
}

__device__ __forceinline__ void wg_fence()
{
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}

__device__ __forceinline__ void wg_commit_and_wait()
{
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
}

/* Keeps the compiler from moving reads of an accumulator above the wait:
 * the value is only there once wgmma.wait_group has returned. */
__device__ __forceinline__ void wg_hold(float &x)
{
    asm volatile("" : "+f"(x)::"memory");
}

/* d (+)= A B for one m64nNk16 step, A (bf16) from registers, B from shared
 * memory; accumulate is 0 for the first k step (d is overwritten). */
#define PARO_WG_ACC16(d) \
    "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]),   \
        "+f"(d[15])
__device__ __forceinline__ void wg_mma_n32(float (&d)[16], const uint32_t (&a)[4], uint64_t desc,
                                           int accumulate)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %21, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 "
                 "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15}, "
                 "{%16,%17,%18,%19}, %20, p, 1, 1, 0;\n}\n"
                 : PARO_WG_ACC16(d)
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(accumulate));
}
__device__ __forceinline__ void wg_mma_n64(float (&d)[32], const uint32_t (&a)[4], uint64_t desc,
                                           int accumulate)
{
    float(&lo)[16] = *reinterpret_cast<float(*)[16]>(&d[0]);
    float(&hi)[16] = *reinterpret_cast<float(*)[16]>(&d[16]);
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
                 "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
                 "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, "
                 "{%32,%33,%34,%35}, %36, p, 1, 1, 0;\n}\n"
                 : PARO_WG_ACC16(lo), PARO_WG_ACC16(hi)
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(accumulate));
}
#undef PARO_WG_ACC16
#endif

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

/* Copies ROWS rows of a [tokens][D] bf16 tensor into a Tile<D> in shared
 * memory with cp.async, THREADS threads sharing the work.  Which tokens is
 * read first (fetch: positions pos0.. of a permutation; fetch_positions:
 * the positions themselves; fetch_listed: a list of tokens), into registers,
 * and the copies start later (load).  A sweep fetches a key tile one step
 * ahead, so no step waits on a global read to form its copies' addresses.
 * Rows past the end (token -1) are zero-filled.  Threads split rows rather
 * than chunks, so each looks up one token and forms one address and swizzle
 * per row, not per 16 bytes. */
template <int D, int ROWS, int THREADS> struct RowGather {
    static constexpr int kPerRow = THREADS >= ROWS ? THREADS / ROWS : 1; /* threads per row */
    static constexpr int kRowStep = THREADS / kPerRow;
    static constexpr int kMine = Tile<D>::kChunks / kPerRow;            /* chunks per thread */
    static constexpr int kRows = ROWS / kRowStep;                       /* rows per thread */
    static_assert(Tile<D>::kChunks % kPerRow == 0 && ROWS % kRowStep == 0,
                  "threads must split the tile evenly");
    int token[kRows]; /* capture index; -1 past the end */

    __device__ __forceinline__ static int row(int i) { return (int)threadIdx.x / kPerRow + i * kRowStep; }

    /* perm: not null (a test per step costs the sweeps 1%, measured). */
    __device__ __forceinline__ void fetch(const uint32_t *perm, int pos0, int n)
    {
#pragma unroll
        for (int i = 0; i < kRows; i++) {
            const int pos = pos0 + row(i);
            token[i] = pos < n ? (int)__ldg(perm + pos) : -1;
        }
    }
    /* The positions themselves (no permutation). */
    __device__ __forceinline__ void fetch_positions(int pos0, int n)
    {
#pragma unroll
        for (int i = 0; i < kRows; i++) {
            const int pos = pos0 + row(i);
            token[i] = pos < n ? pos : -1;
        }
    }
    /* tokens: ROWS entries, negative for none. */
    __device__ __forceinline__ void fetch_listed(const int32_t *tokens)
    {
#pragma unroll
        for (int i = 0; i < kRows; i++)
            token[i] = __ldg(tokens + row(i));
    }
    /* A row's threads take every kPerRow-th chunk, so that one copy
     * instruction reads whole 32-byte sectors (adjacent lanes, adjacent
     * chunks) and the chunks' addresses differ by constants. */
    __device__ __forceinline__ void load(uint32_t smem, const __nv_bfloat16 *src) const
    {
        const int first = threadIdx.x % kPerRow;
#pragma unroll
        for (int i = 0; i < kRows; i++) {
            const __nv_bfloat16 *from = src + (size_t)(token[i] >= 0 ? token[i] : 0) * D + first * 8;
#pragma unroll
            for (int j = 0; j < kMine; j++)
                cp_async16(Tile<D>::at(smem, row(i), first + j * kPerRow), from + j * kPerRow * 8,
                           token[i] >= 0 ? 16 : 0);
        }
    }
};

/* The rows at positions pos0.. of perm (nullptr: the identity), at once. */
template <int D, int ROWS, int THREADS>
__device__ __forceinline__ void load_rows(uint32_t smem, const __nv_bfloat16 *src,
                                          const uint32_t *perm, int pos0, int n)
{
    RowGather<D, ROWS, THREADS> rows;
    if (perm)
        rows.fetch(perm, pos0, n);
    else
        rows.fetch_positions(pos0, n);
    rows.load(smem, src);
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
 * start at row key0, in mma layout (see the top of this file); mma.sync. */
template <int D, bool SPLIT, int KEYS>
__device__ __forceinline__ void warp_scores_mma(float (&s)[2][KEYS / 8][4],
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

#if PARO_WGMMA
/* The same with wgmma, for what it covers (wg_covers below): d = 64, whose
 * Tile<64> is the 128-byte swizzle, and bf16 inputs, whose Q fragments stay
 * in registers as the A operand.  wgmma m64 takes warp w's fragments as rows
 * 16w.. of the 64 and gives its accumulators back in the mma.sync C layout
 * of those rows, so each warp gets its own scores, laid out as above, from
 * two wgmma chains (one per m tile).  Every warp of the warpgroup must call
 * it with the same K tile and key0. */
template <int KEYS>
__device__ __forceinline__ void warp_scores_wg(float (&s)[2][KEYS / 8][4],
                                               const uint32_t (&qa)[2][4][4], uint32_t s_k,
                                               int key0)
{
    const uint64_t desc = wg_desc_sw128(s_k + key0 * Tile<64>::kRowBytes);
    wg_fence();
#pragma unroll
    for (int mt = 0; mt < 2; mt++) {
        float(&d)[KEYS / 2] = *reinterpret_cast<float(*)[KEYS / 2]>(&s[mt][0][0]);
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
            /* k step kk: the next 32 bytes of every row (the hardware
             * applies the swizzle to the address it forms). */
            if constexpr (KEYS == 32)
                wg_mma_n32(d, qa[mt][kk], desc + 2 * kk, kk > 0);
            else
                wg_mma_n64(d, qa[mt][kk], desc + 2 * kk, kk > 0);
        }
    }
    wg_commit_and_wait();
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int t = 0; t < KEYS / 8; t++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                wg_hold(s[mt][t][e]);
}
#endif

template <int D, bool SPLIT, int KEYS>
constexpr bool wg_covers = PARO_WGMMA && D == 64 && !SPLIT && QFrags<D, SPLIT>::kInRegs &&
                           (KEYS == 32 || KEYS == 64) && kCtaRows % 128 == 0; /* whole warpgroups */

/* S for one warp: its 32 query rows against the KEYS keys of the K tile that
 * start at row key0, in mma layout (see the top of this file).  With wgmma,
 * every warp of the thread block must call it alike (it does: the kernels
 * step through keys in lockstep, one barrier a step). */
template <int D, bool SPLIT, int KEYS>
__device__ __forceinline__ void warp_scores(float (&s)[2][KEYS / 8][4],
                                            const QFrags<D, SPLIT> &qf, uint32_t s_q,
                                            uint32_t s_q_lo, uint32_t s_k, uint32_t s_k_lo,
                                            int key0, int warp, int lane)
{
#if PARO_WGMMA
    if constexpr (wg_covers<D, SPLIT, KEYS>)
        warp_scores_wg<KEYS>(s, qf.a, s_k, key0);
    else
#endif
        warp_scores_mma<D, SPLIT, KEYS>(s, qf, s_q, s_q_lo, s_k, s_k_lo, key0, warp, lane);
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

/* Dynamic shared memory rounded up to 1024 bytes, where wgmma's swizzled
 * tiles must start (static shared arrays come first and leave it anywhere);
 * the host asks for kSmemSlack more bytes than the kernel lays out. */
constexpr int kSmemSlack = 1024;
__device__ __forceinline__ unsigned char *aligned_smem(unsigned char *p)
{
    return p + ((kSmemSlack - (smem_addr(p) & (kSmemSlack - 1))) & (kSmemSlack - 1));
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
