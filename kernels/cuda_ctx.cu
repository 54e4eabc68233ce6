/* paro — the CUDA calibration backend's context (kernels.h, paro_cuda_*):
 * device and pinned host buffers, streams, the inputs' upload, and per
 * layer-sample the kernels of tile_stats.cu and pair_pass.cu, with two
 * layers in flight (kernels/README.md says how they overlap).
 */
#include <cuda_bf16.h>    /* __nv_bfloat16, __float2bfloat16_rn */
#include <cuda_runtime.h> /* cudaMalloc, streams, events */
#include <pthread.h>      /* pthread_create, pthread_join */
#include <stdint.h>       /* uint32_t */
#include <stdlib.h>       /* calloc, free */
#include <string.h>       /* memset */
#include <sys/mman.h>     /* mmap, madvise, munmap */

#include "cuda_check.h"
#include "kernels.h"
#include "mma.cuh"
#include "pair_pass.h"
#include "pair_plan.h"
#include "tile_stats.cuh"

using namespace paro_mma;
using namespace paro_tile;

namespace {

constexpr size_t kChunkFloats = size_t(8) << 20; /* f32 upload staging: 32 MiB */
/* The first pass's scratch (two floats per row and tile) is capped; with
 * more tiles per row than fit, fewer blocks stay resident. */
constexpr size_t kMaxScratchBytes = size_t(256) << 20;

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

} // namespace

/* ---- the context ------------------------------------------------------------ */

/* Page-locked ("pinned") host memory, which copies to and from the GPU run
 * asynchronously at full speed.  cudaMallocHost makes it slowly: 0.7 ms a
 * megabyte on the H100 and H200 machines measured (0.4 s for the reference
 * layer's buffers), zeroing and locking 4 KiB pages one by one under the
 * driver's lock.  Memory mapped with transparent huge pages and touched
 * first registers in 6 ms for 174 MB; the touching (0.3 ms a megabyte)
 * needs nothing of the driver's, so it runs on helper threads beside the
 * device's set-up.  Without huge pages the same works, slower. */
typedef struct pinned {
    void *p;
    size_t len; /* mapped bytes, 0 when none */
} pinned;

/* Maps and touches at least `bytes`: no CUDA call. */
static cudaError_t pinned_map(pinned *m, size_t bytes)
{
    const size_t huge = size_t(2) << 20;
    const size_t len = (bytes + huge - 1) / huge * huge;
    /* one huge page more than needed, to start on a huge-page boundary */
    void *got = mmap(nullptr, len + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0);
    if (got == MAP_FAILED)
        return cudaErrorMemoryAllocation;
    unsigned char *raw = (unsigned char *)got;
    unsigned char *p = (unsigned char *)(((uintptr_t)raw + huge - 1) & ~(uintptr_t)(huge - 1));
    if (p > raw)
        munmap(raw, (size_t)(p - raw));
    if (raw + len + huge > p + len)
        munmap(p + len, (size_t)(raw + len + huge - (p + len)));
    (void)madvise(p, len, MADV_HUGEPAGE); /* a hint */
    memset(p, 0, len);
    m->p = p;
    m->len = len;
    return cudaSuccess;
}

static cudaError_t pinned_register(pinned *m)
{
    cudaError_t err = cudaHostRegister(m->p, m->len, cudaHostRegisterDefault);
    if (err != cudaSuccess) {
        munmap(m->p, m->len);
        m->p = nullptr;
        m->len = 0;
    }
    return err;
}

static void pinned_free(pinned *m)
{
    if (!m->len)
        return;
    cudaHostUnregister(m->p);
    munmap(m->p, m->len);
    m->p = nullptr;
    m->len = 0;
}

/* A layer's sums live in one of two accumulator sets, so that the next
 * layer's samples can be computed while the previous one is downloaded and
 * scored (paro_cuda_layer_seal). */
typedef struct acc_set {
    float *mass, *peak;           /* device: [n_buckets][heads][n_slots][tiles], [heads][n_slots][tiles] */
    pinned mass_host, peak_host;  /* their copies (float), filled by the download */
    cudaEvent_t downloaded;
    cudaEvent_t *timing;          /* start/end pairs of the layer's samples */
    size_t n_timing, cap_timing;
    int state;                    /* ACC_FREE, ACC_OPEN (taking samples), ACC_SEALED */
} acc_set;

enum { ACC_FREE = 0, ACC_OPEN = 1, ACC_SEALED = 2 };

/* The first layer needs its pinned buffers one after the other: the input
 * buffers when its first sample is read, the sums' host copies only once
 * its kernels are queued.  So they are made on helper threads, one a
 * buffer, while the context sets the device up and the first sample is
 * read, and each is waited for where it is first used. */
typedef struct pin_job {
    int device;
    size_t bytes;
    pinned *dst;      /* filled once made */
    cudaError_t err;  /* sticky: every later wait fails the same way */
    pthread_t tid;
    int running, waited;
} pin_job;

static void *pin_main(void *arg)
{
    pin_job *j = (pin_job *)arg;
    pinned m = {nullptr, 0};
    j->err = pinned_map(&m, j->bytes);
    if (j->err == cudaSuccess)
        j->err = cudaSetDevice(j->device);
    if (j->err == cudaSuccess)
        j->err = pinned_register(&m);
    else if (m.len)
        munmap(m.p, m.len);
    if (j->err == cudaSuccess)
        *j->dst = m;
    return nullptr;
}

static void pin_start(pin_job *j, int device, size_t bytes, pinned *dst)
{
    j->device = device;
    j->bytes = bytes;
    j->dst = dst;
    j->running = pthread_create(&j->tid, nullptr, pin_main, j) == 0;
    if (!j->running)
        pin_main(j); /* no thread to be had: the same, in line */
}

static void pin_join(pin_job *j)
{
    if (j->running)
        pthread_join(j->tid, nullptr);
    j->running = 0;
}

enum { PIN_Q, PIN_K, PIN_SUMS, N_PINS = PIN_SUMS + 4 }; /* sums: mass, peak of set 0, of set 1 */

struct paro_cuda_ctx {
    int device;
    paro_cuda_geometry g; /* perms not kept: copied to the device */
    size_t per_tensor;    /* heads * n * d elements */
    size_t tiles;         /* nq * nk */
    cudaStream_t compute, copy, download;
    /* inputs, two sets so one sample uploads while the previous computes */
    __nv_bfloat16 *hi_q[2], *hi_k[2], *lo_q[2], *lo_k[2];
    float *chunk;            /* f32 upload staging (allocated at the first f32 sample) */
    int *needs_lo;           /* device flag */
    int *needs_lo_host;      /* pinned */
    /* [heads][n][d] f32, or bf16 in their first half; sized for the widest
     * input asked for yet */
    pinned host_q, host_k;
    int host_bf16;           /* the last next_buffers call handed out bf16 */
    uint32_t *perms;         /* device [n_slots][n] */
    float *row_max, *row_inv;
    float2 *scratch;         /* the first pass's, [blocks][nk][kCtaRows] */
    unsigned *next_item;     /* the first pass's work counter */
    int first_grid[2];       /* resident blocks of the first pass, without and with lo parts */
    /* PARO_CUDA_PAIRS: the pairs of orders swept together, the orders left
     * over, and the pair pass's integer sums (one set, cleared by each
     * pass's finish). */
    PairTables pairs[PARO_PAIR_MAX_SLOTS / 2];
    int n_pairs;
    int singles[PARO_PAIR_MAX_SLOTS], n_singles;
    /* The order the first pass sweeps with the rows' statistics: 0 under
     * ONE_PASS, PAIRS' first order left over (-1: none, the row pass runs
     * instead), -1 under ROW_PASS. */
    int first_slot;
    PairSums pair_sums;      /* in the scratch, or in pair_sums_own */
    void *pair_sums_own;
    size_t pair_sums_bytes;
    acc_set acc[2];
    int open;                /* acc set taking samples, -1 when none */
    int sealed_order[2];     /* sealed sets, oldest first */
    int n_sealed;
    cudaEvent_t uploaded[2], computed[2];
    pin_job pins[N_PINS];   /* host_q/host_k (bf16-sized), the acc sets' host copies */
    double last_layer_ms;
    int set;                 /* input set of the next sample */
    size_t device_bytes;
};

/* Waits for pins [first, first + n); the first failure is reported. */
static paro_err pin_wait(paro_cuda_ctx *ctx, int first, int n, paro_errinfo *ei)
{
    for (int i = first; i < first + n; i++) {
        pin_job *j = &ctx->pins[i];
        pin_join(j);
        if (j->err != cudaSuccess)
            return paro_cuda_fail(ei, ctx->device, j->err,
                                  "pinning host memory (mmap, cudaHostRegister)", __FILE__,
                                  __LINE__);
        j->waited = 1;
    }
    return PARO_OK;
}

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
    for (int i = 0; i < N_PINS; i++)
        pin_join(&ctx->pins[i]);
    cudaSetDevice(ctx->device);
    if (ctx->compute)
        cudaStreamSynchronize(ctx->compute);
    if (ctx->copy)
        cudaStreamSynchronize(ctx->copy);
    if (ctx->download)
        cudaStreamSynchronize(ctx->download);
    for (int s = 0; s < 2; s++) {
        cudaFree(ctx->hi_q[s]);
        cudaFree(ctx->hi_k[s]);
        cudaFree(ctx->lo_q[s]);
        cudaFree(ctx->lo_k[s]);
        if (ctx->uploaded[s])
            cudaEventDestroy(ctx->uploaded[s]);
        if (ctx->computed[s])
            cudaEventDestroy(ctx->computed[s]);
        acc_set *a = &ctx->acc[s];
        cudaFree(a->mass);
        cudaFree(a->peak);
        pinned_free(&a->mass_host);
        pinned_free(&a->peak_host);
        if (a->downloaded)
            cudaEventDestroy(a->downloaded);
        for (size_t i = 0; i < a->n_timing; i++)
            cudaEventDestroy(a->timing[i]);
        free(a->timing);
    }
    cudaFree(ctx->chunk);
    cudaFree(ctx->needs_lo);
    cudaFree(ctx->perms);
    cudaFree(ctx->row_max);
    cudaFree(ctx->row_inv);
    cudaFree(ctx->scratch);
    cudaFree(ctx->next_item);
    for (int p = 0; p < ctx->n_pairs; p++) {
        PairTables *t = &ctx->pairs[p];
        cudaFree(t->row_token);
        cudaFree(t->row_info);
        cudaFree(t->warp_qb);
        cudaFree(t->cta_qa0);
        cudaFree(t->cta_qb);
        cudaFree(t->warp_col);
        cudaFree(t->warp_qbcta);
        cudaFree(t->bind);
        cudaFree(t->chunk);
    }
    cudaFree(ctx->pair_sums_own);
    cudaFreeHost(ctx->needs_lo_host);
    pinned_free(&ctx->host_q);
    pinned_free(&ctx->host_k);
    if (ctx->compute)
        cudaStreamDestroy(ctx->compute);
    if (ctx->copy)
        cudaStreamDestroy(ctx->copy);
    if (ctx->download)
        cudaStreamDestroy(ctx->download);
    free(ctx);
}

static size_t tile_smem_bytes(const Kernels &kn, int nk)
{
    return kn.tile_smem + tile_row_smem(kn.blocks_per_cta, nk);
}

/* One array of a pair plan, copied to the device. */
static paro_err upload_table(paro_cuda_ctx *ctx, void **dst, const void *src, size_t bytes,
                             paro_errinfo *ei)
{
    paro_err rc = dev_alloc(ctx, dst, bytes, ei);
    if (rc)
        return rc;
    CUDA_TRY(ei, ctx->device, cudaMemcpy(*dst, src, bytes, cudaMemcpyHostToDevice));
    return PARO_OK;
}

/* PARO_CUDA_PAIRS: which orders go in pairs and their plans on the device
 * (alloc_pair_sums, later, gives their sums).  Needs ctx->perms on the
 * device. */
static paro_err open_pairs(paro_cuda_ctx *ctx, const paro_cuda_geometry *g, paro_errinfo *ei)
{
    int chosen[PARO_PAIR_MAX_SLOTS / 2][2];
    const int found = paro_pair_choose(g->perms, g->n_slots, g->n_tokens, g->block_q, g->block_k,
                                       chosen, ctx->singles, &ctx->n_singles);
    paro_err rc = PARO_OK;
    for (int p = 0; p < found && !rc; p++) {
        paro_pair_plan plan;
        const size_t n = g->n_tokens;
        if ((rc = paro_pair_plan_build(&plan, g->perms + (size_t)chosen[p][0] * n,
                                       g->perms + (size_t)chosen[p][1] * n, g->n_tokens,
                                       g->block_q, g->block_k, ei)))
            return rc;
        PairTables *t = &ctx->pairs[ctx->n_pairs++];
        t->slot_a = chosen[p][0];
        t->slot_b = chosen[p][1];
        t->n_ctas = plan.n_ctas;
        t->n_chunks = plan.n_chunks;
        t->perm_b = ctx->perms + (size_t)t->slot_b * n;
        const size_t warps = plan.n_warps, ctas = plan.n_ctas, chunks = plan.n_chunks;
        const struct {
            void **dst;
            const void *src;
            size_t bytes;
        } tables[] = {
            {(void **)&t->row_token, plan.row_token, plan.n_row_slots * sizeof *plan.row_token},
            {(void **)&t->row_info, plan.row_info, plan.n_row_slots * sizeof *plan.row_info},
            {(void **)&t->warp_qb, plan.warp_qb, warps * PARO_PAIR_MAX_ROW_GROUPS * sizeof *plan.warp_qb},
            {(void **)&t->cta_qa0, plan.cta_qa0, ctas * sizeof *plan.cta_qa0},
            {(void **)&t->cta_qb, plan.cta_qb, ctas * PARO_PAIR_MAX_QB * sizeof *plan.cta_qb},
            {(void **)&t->warp_col, plan.warp_col, warps * PARO_PAIR_MAX_ROW_GROUPS * sizeof *plan.warp_col},
            {(void **)&t->warp_qbcta, plan.warp_qbcta, warps * PARO_PAIR_WARP_QB * sizeof *plan.warp_qbcta},
            {(void **)&t->chunk, plan.chunk, chunks * sizeof *plan.chunk},
            {(void **)&t->bind, plan.bind, chunks * 4 * 32 * 4 * sizeof *plan.bind},
        };
        for (size_t i = 0; i < sizeof tables / sizeof *tables && !rc; i++)
            rc = upload_table(ctx, tables[i].dst, tables[i].src, tables[i].bytes, ei);
        paro_pair_plan_free(&plan);
    }
    if (rc || ctx->n_pairs == 0)
        return rc;
    CUDA_TRY(ei, ctx->device, paro_pair_prepare((int)g->head_dim, (int)g->nk));
    return PARO_OK;
}

/* The pair pass's sums, cleared: [heads][tiles] of each array, one block.
 * Where the first pass runs first and its scratch is large enough, they
 * live in the scratch, which is free once that pass has ended (the compute
 * stream orders them): launch_sample clears them after it. */
static paro_err alloc_pair_sums(paro_cuda_ctx *ctx, size_t scratch_bytes, paro_errinfo *ei)
{
    const size_t sums = (size_t)ctx->g.heads * ctx->tiles;
    const size_t bytes = sums * (2 * sizeof(unsigned long long) + 2 * sizeof(unsigned));
    unsigned char *base;
    ctx->pair_sums_bytes = bytes;
    if (ctx->first_slot >= 0 && scratch_bytes >= bytes) {
        base = reinterpret_cast<unsigned char *>(ctx->scratch);
    } else {
        paro_err rc = dev_alloc(ctx, (void **)&ctx->pair_sums_own, bytes, ei);
        if (rc)
            return rc;
        base = reinterpret_cast<unsigned char *>(ctx->pair_sums_own);
    }
    PairSums *s = &ctx->pair_sums;
    s->sum_a = reinterpret_cast<unsigned long long *>(base);
    s->sum_b = s->sum_a + sums;
    s->max_a = reinterpret_cast<unsigned *>(s->sum_b + sums);
    s->max_b = s->max_a + sums;
    CUDA_TRY(ei, ctx->device, cudaMemset(base, 0, bytes));
    return PARO_OK;
}

static paro_err open_ctx(paro_cuda_ctx *ctx, const paro_cuda_geometry *g, paro_errinfo *ei)
{
    const int dev = ctx->device;
    CUDA_TRY(ei, dev, cudaSetDevice(dev));
    CUDA_TRY(ei, dev, cudaStreamCreateWithFlags(&ctx->compute, cudaStreamNonBlocking));
    CUDA_TRY(ei, dev, cudaStreamCreateWithFlags(&ctx->copy, cudaStreamNonBlocking));
    CUDA_TRY(ei, dev, cudaStreamCreateWithFlags(&ctx->download, cudaStreamNonBlocking));
    /* The host waits on uploads and downloads asleep (blocking sync), not
     * spinning on a core that reading and scoring need meanwhile. */
    const unsigned waited = cudaEventDisableTiming | cudaEventBlockingSync;
    for (int s = 0; s < 2; s++) {
        CUDA_TRY(ei, dev, cudaEventCreateWithFlags(&ctx->uploaded[s], waited));
        CUDA_TRY(ei, dev, cudaEventCreateWithFlags(&ctx->computed[s], cudaEventDisableTiming));
        CUDA_TRY(ei, dev, cudaEventCreateWithFlags(&ctx->acc[s].downloaded, waited));
    }
    const size_t input_bytes = ctx->per_tensor * sizeof(__nv_bfloat16);
    const size_t rows = (size_t)g->heads * g->n_tokens;
    const size_t acc = (size_t)g->heads * g->n_slots * ctx->tiles;
    /* The pinning threads, first (see pin_job). */
    pin_start(&ctx->pins[PIN_Q], dev, input_bytes, &ctx->host_q);
    pin_start(&ctx->pins[PIN_K], dev, input_bytes, &ctx->host_k);
    for (int s = 0; s < 2; s++) {
        acc_set *a = &ctx->acc[s];
        pin_start(&ctx->pins[PIN_SUMS + 2 * s], dev, acc * g->n_buckets * sizeof(float),
                  &a->mass_host);
        pin_start(&ctx->pins[PIN_SUMS + 2 * s + 1], dev, acc * sizeof(float), &a->peak_host);
    }
    paro_err rc;
    for (int s = 0; s < 2; s++) {
        if ((rc = dev_alloc(ctx, (void **)&ctx->hi_q[s], input_bytes, ei)) ||
            (rc = dev_alloc(ctx, (void **)&ctx->hi_k[s], input_bytes, ei)))
            return rc;
    }
    if ((rc = dev_alloc(ctx, (void **)&ctx->needs_lo, sizeof(int), ei)) ||
        (rc = dev_alloc(ctx, (void **)&ctx->perms, (size_t)g->n_slots * g->n_tokens * 4, ei)) ||
        (rc = dev_alloc(ctx, (void **)&ctx->row_max, rows * sizeof(float), ei)) ||
        (rc = dev_alloc(ctx, (void **)&ctx->row_inv, rows * sizeof(float), ei)) ||
        (rc = dev_alloc(ctx, (void **)&ctx->next_item, sizeof(unsigned), ei)))
        return rc;
    for (int s = 0; s < 2; s++) {
        acc_set *a = &ctx->acc[s];
        if ((rc = dev_alloc(ctx, (void **)&a->mass, acc * g->n_buckets * sizeof(float), ei)) ||
            (rc = dev_alloc(ctx, (void **)&a->peak, acc * sizeof(float), ei)))
            return rc;
    }
    CUDA_TRY(ei, dev, cudaMallocHost((void **)&ctx->needs_lo_host, sizeof(int)));
    CUDA_TRY(ei, dev, cudaMemcpy(ctx->perms, g->perms, (size_t)g->n_slots * g->n_tokens * 4,
                                 cudaMemcpyHostToDevice));
    /* Kernels that want more than 48 KiB of shared memory must say so; the
     * first pass's grid is what stays resident, its scratch one per block. */
    int per_sm[2] = {0, 0}, sms = 0;
    CUDA_TRY(ei, dev, cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    for (int split = 0; split < 2; split++) {
        Kernels kn = pick_kernels((int)g->head_dim, (int)g->block_q, (int)g->block_k, split);
        CUDA_TRY(ei, dev, cudaFuncSetAttribute(kn.row, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               (int)kn.row_smem));
        CUDA_TRY(ei, dev, cudaFuncSetAttribute(kn.tile, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               (int)tile_smem_bytes(kn, (int)g->nk)));
        CUDA_TRY(ei, dev, cudaFuncSetAttribute(kn.first,
                                               cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               (int)kn.first_smem));
        CUDA_TRY(ei, dev, cudaOccupancyMaxActiveBlocksPerMultiprocessor(
                              &per_sm[split], kn.first, kCtaRows, kn.first_smem));
    }
    if (g->design == PARO_CUDA_PAIRS && (rc = open_pairs(ctx, g, ei)))
        return rc;
    ctx->first_slot = g->design == PARO_CUDA_ONE_PASS ? 0
                      : g->design == PARO_CUDA_PAIRS && ctx->n_singles > 0 ? ctx->singles[0]
                                                                          : -1;
    size_t scratch_bytes = 0;
    if (ctx->first_slot >= 0) {
        /* As many blocks as stay resident (inputs with lo parts need more
         * shared memory, so fewer of them), within the scratch cap. */
        const size_t per_block = (size_t)g->nk * kCtaRows * sizeof(float2);
        const int blocks_per_cta = kCtaRows / (int)g->block_q;
        const size_t items = (size_t)g->heads * ((g->nq + blocks_per_cta - 1) / blocks_per_cta);
        size_t most = 1;
        for (int split = 0; split < 2; split++) {
            size_t grid = (size_t)(per_sm[split] > 0 ? per_sm[split] : 1) * (size_t)sms;
            if (grid > kMaxScratchBytes / per_block)
                grid = kMaxScratchBytes / per_block;
            if (grid > items)
                grid = items;
            if (grid < 1)
                grid = 1;
            ctx->first_grid[split] = (int)grid;
            most = grid > most ? grid : most;
        }
        if ((rc = dev_alloc(ctx, (void **)&ctx->scratch, most * per_block, ei)))
            return rc;
        scratch_bytes = most * per_block;
    }
    if (ctx->n_pairs > 0 && (rc = alloc_pair_sums(ctx, scratch_bytes, ei)))
        return rc;
    ctx->open = -1;
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

static paro_err usage(paro_errinfo *ei, const char *what)
{
    return paro_error(ei, PARO_ERR_USAGE, NULL, PARO_NO_OFFSET, "cuda backend: %s", what);
}

extern "C" paro_err paro_cuda_layer_begin(paro_cuda_ctx *ctx, paro_errinfo *ei)
{
    const paro_cuda_geometry *g = &ctx->g;
    if (ctx->open >= 0)
        return usage(ei, "a layer is already open");
    int s = ctx->acc[0].state == ACC_FREE ? 0 : ctx->acc[1].state == ACC_FREE ? 1 : -1;
    if (s < 0)
        return usage(ei, "two layers are waiting for layer_end");
    acc_set *a = &ctx->acc[s];
    const size_t acc = (size_t)g->heads * g->n_slots * ctx->tiles;
    CUDA_TRY(ei, ctx->device, cudaSetDevice(ctx->device));
    /* The set's last download must be done before its sums are cleared. */
    CUDA_TRY(ei, ctx->device, cudaStreamWaitEvent(ctx->compute, a->downloaded, 0));
    CUDA_TRY(ei, ctx->device,
             cudaMemsetAsync(a->mass, 0, acc * g->n_buckets * sizeof(float), ctx->compute));
    CUDA_TRY(ei, ctx->device, cudaMemsetAsync(a->peak, 0, acc * sizeof(float), ctx->compute));
    for (size_t i = 0; i < a->n_timing; i++)
        cudaEventDestroy(a->timing[i]);
    a->n_timing = 0;
    a->state = ACC_OPEN;
    ctx->open = s;
    return PARO_OK;
}

/* The pinned input buffers, at least `bytes` each.  Pinning takes time
 * (about as long as reading the bytes), so a bf16 capture never pays for
 * f32-sized ones.  submit() returns only once its upload is done, so the
 * buffers are always free here. */
static paro_err host_buffers(paro_cuda_ctx *ctx, size_t bytes, paro_errinfo *ei)
{
    /* The bf16-sized ones made at open; waits stop at the first failure, so
     * the last one waited for means all of them are there. */
    if (!ctx->pins[PIN_K].waited) {
        paro_err rc = pin_wait(ctx, PIN_Q, 2, ei);
        if (rc)
            return rc;
    }
    pinned *inputs[2] = {&ctx->host_q, &ctx->host_k};
    if (inputs[0]->len >= bytes && inputs[1]->len >= bytes)
        return PARO_OK;
    /* Both freed first, so that the old and new ones are never all held;
     * after a failure both are asked for again next time. */
    CUDA_TRY(ei, ctx->device, cudaSetDevice(ctx->device));
    for (pinned *m : inputs)
        pinned_free(m);
    for (pinned *m : inputs) {
        CUDA_TRY(ei, ctx->device, pinned_map(m, bytes));
        CUDA_TRY(ei, ctx->device, pinned_register(m));
    }
    return PARO_OK;
}

static paro_err hand_out(paro_cuda_ctx *ctx, int bf16, void **q, void **k, paro_errinfo *ei)
{
    paro_err rc = host_buffers(ctx, ctx->per_tensor * (bf16 ? 2 : 4), ei);
    if (rc)
        return rc;
    *q = ctx->host_q.p;
    *k = ctx->host_k.p;
    ctx->host_bf16 = bf16;
    return PARO_OK;
}

extern "C" paro_err paro_cuda_next_buffers(paro_cuda_ctx *ctx, float **q, float **k,
                                           paro_errinfo *ei)
{
    return hand_out(ctx, 0, (void **)q, (void **)k, ei);
}

extern "C" paro_err paro_cuda_next_buffers_bf16(paro_cuda_ctx *ctx, uint16_t **q, uint16_t **k,
                                                paro_errinfo *ei)
{
    return hand_out(ctx, 1, (void **)q, (void **)k, ei);
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
    if (ctx->host_bf16) {
        /* Exactly bf16: straight into the hi parts, no lo. */
        const size_t bytes = ctx->per_tensor * sizeof(__nv_bfloat16);
        CUDA_TRY(ei, dev, cudaMemcpyAsync(ctx->hi_q[set], ctx->host_q.p, bytes,
                                          cudaMemcpyHostToDevice, ctx->copy));
        CUDA_TRY(ei, dev, cudaMemcpyAsync(ctx->hi_k[set], ctx->host_k.p, bytes,
                                          cudaMemcpyHostToDevice, ctx->copy));
        *ctx->needs_lo_host = 0;
    } else {
        if (!ctx->chunk) {
            const size_t chunk = ctx->per_tensor < kChunkFloats ? ctx->per_tensor : kChunkFloats;
            paro_err rc = dev_alloc(ctx, (void **)&ctx->chunk, chunk * sizeof(float), ei);
            if (rc)
                return rc;
        }
        CUDA_TRY(ei, dev, cudaMemsetAsync(ctx->needs_lo, 0, sizeof(int), ctx->copy));
        paro_err rc = upload(ctx, (const float *)ctx->host_q.p, ctx->hi_q[set],
                             with_lo ? ctx->lo_q[set] : nullptr, ei);
        if (!rc)
            rc = upload(ctx, (const float *)ctx->host_k.p, ctx->hi_k[set],
                        with_lo ? ctx->lo_k[set] : nullptr, ei);
        if (rc)
            return rc;
        CUDA_TRY(ei, dev, cudaMemcpyAsync(ctx->needs_lo_host, ctx->needs_lo, sizeof(int),
                                          cudaMemcpyDeviceToHost, ctx->copy));
    }
    CUDA_TRY(ei, dev, cudaEventRecord(ctx->uploaded[set], ctx->copy));
    CUDA_TRY(ei, dev, cudaEventSynchronize(ctx->uploaded[set]));
    return PARO_OK;
}

static paro_err push_timing(paro_cuda_ctx *ctx, acc_set *a, cudaEvent_t *start, cudaEvent_t *end,
                            paro_errinfo *ei)
{
    if (a->n_timing + 2 > a->cap_timing) {
        size_t cap = a->cap_timing ? 2 * a->cap_timing : 16;
        cudaEvent_t *grown = (cudaEvent_t *)realloc(a->timing, cap * sizeof *grown);
        if (!grown)
            return paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory");
        a->timing = grown;
        a->cap_timing = cap;
    }
    CUDA_TRY(ei, ctx->device, cudaEventCreate(&a->timing[a->n_timing]));
    a->n_timing++;
    CUDA_TRY(ei, ctx->device, cudaEventCreate(&a->timing[a->n_timing]));
    a->n_timing++;
    *start = a->timing[a->n_timing - 2];
    *end = a->timing[a->n_timing - 1];
    return PARO_OK;
}

/* Queues the kernels of one sample held in input set `set`. */
static paro_err launch_sample(paro_cuda_ctx *ctx, int set, int split, uint32_t bucket,
                              acc_set *a, paro_errinfo *ei)
{
    const paro_cuda_geometry *g = &ctx->g;
    const int dev = ctx->device;
    const int n = (int)g->n_tokens;
    const float c = (float)(g->scale * 1.4426950408889634);
    HeadInputs in = {ctx->hi_q[set], ctx->hi_k[set], ctx->lo_q[set], ctx->lo_k[set]};
    Kernels kn = pick_kernels((int)g->head_dim, (int)g->block_q, (int)g->block_k, split != 0);
    const size_t acc = (size_t)g->heads * g->n_slots * ctx->tiles;
    float *mass = a->mass + (size_t)bucket * acc;
    const unsigned ctas = (g->nq + kn.blocks_per_cta - 1) / kn.blocks_per_cta;
    /* The orders the tile kernel takes, one launch each (ONE_PASS and
     * ROW_PASS: a run of slots, one launch). */
    int slot0 = 0, slots = (int)g->n_slots;
    if (ctx->first_slot >= 0) {
        CUDA_TRY(ei, dev, cudaMemsetAsync(ctx->next_item, 0, sizeof(unsigned), ctx->compute));
        const int fs = ctx->first_slot;
        FirstArgs fa = {in,           n,          (int)g->nq,    (int)g->nk,
                        (int)g->heads, (int)g->n_slots, fs, (int)ctas, c,
                        ctx->perms + (size_t)fs * n, ctx->row_max, ctx->row_inv, mass,
                        a->peak,      ctx->scratch, ctx->next_item};
        kn.first<<<ctx->first_grid[split != 0], kCtaRows, kn.first_smem, ctx->compute>>>(fa);
        CUDA_TRY(ei, dev, cudaGetLastError());
        slot0 = 1;
        slots -= 1;
    } else {
        RowArgs ra = {in, n, c, ctx->row_max, ctx->row_inv};
        dim3 row_grid((unsigned)((n + kCtaRows - 1) / kCtaRows), g->heads);
        kn.row<<<row_grid, kCtaRows, kn.row_smem, ctx->compute>>>(ra);
        CUDA_TRY(ei, dev, cudaGetLastError());
    }
    /* count orders from slot first, one sweep each */
    auto tiles = [&](int first, int count) {
        TileArgs ta = {in,    n, (int)g->nq,   (int)g->nk,   (int)g->heads, (int)g->n_slots,
                       first, c, ctx->perms,   ctx->row_max, ctx->row_inv,  mass,
                       a->peak};
        dim3 tile_grid(ctas, g->heads, (unsigned)count);
        kn.tile<<<tile_grid, kCtaRows, tile_smem_bytes(kn, (int)g->nk), ctx->compute>>>(ta);
        return cudaGetLastError();
    };
    if (g->design != PARO_CUDA_PAIRS) {
        if (slots > 0)
            CUDA_TRY(ei, dev, tiles(slot0, slots));
        return PARO_OK;
    }
    if (ctx->n_pairs > 0 && ctx->pair_sums_own == nullptr) /* the first pass wrote over them */
        CUDA_TRY(ei, dev, cudaMemsetAsync(ctx->pair_sums.sum_a, 0, ctx->pair_sums_bytes,
                                          ctx->compute));
    PairLaunch pl = {in.q, in.k, in.q_lo, in.k_lo, n, (int)g->head_dim, (int)g->heads,
                     (int)g->nq, (int)g->nk, (int)g->n_slots, c, ctx->row_max, ctx->row_inv,
                     mass, a->peak};
    for (int p = 0; p < ctx->n_pairs; p++)
        CUDA_TRY(ei, dev, paro_pair_run(pl, ctx->pairs[p], ctx->pair_sums, split != 0,
                                        ctx->compute));
    for (int i = ctx->first_slot >= 0 ? 1 : 0; i < ctx->n_singles; i++)
        CUDA_TRY(ei, dev, tiles(ctx->singles[i], 1));
    return PARO_OK;
}

extern "C" paro_err paro_cuda_submit(paro_cuda_ctx *ctx, uint32_t bucket, paro_errinfo *ei)
{
    const paro_cuda_geometry *g = &ctx->g;
    const int dev = ctx->device, set = ctx->set;
    if (ctx->open < 0)
        return usage(ei, "submit without layer_begin");
    if (bucket >= g->n_buckets)
        return usage(ei, "bucket out of range");
    acc_set *a = &ctx->acc[ctx->open];
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

    cudaEvent_t start = nullptr, end = nullptr;
    if ((rc = push_timing(ctx, a, &start, &end, ei)))
        return rc;
    CUDA_TRY(ei, dev, cudaStreamWaitEvent(ctx->compute, ctx->uploaded[set], 0));
    CUDA_TRY(ei, dev, cudaEventRecord(start, ctx->compute));
    if ((rc = launch_sample(ctx, set, needs_lo, bucket, a, ei)))
        return rc;
    CUDA_TRY(ei, dev, cudaEventRecord(end, ctx->compute));
    CUDA_TRY(ei, dev, cudaEventRecord(ctx->computed[set], ctx->compute));
    return PARO_OK;
}

extern "C" paro_err paro_cuda_layer_seal(paro_cuda_ctx *ctx, paro_errinfo *ei)
{
    const paro_cuda_geometry *g = &ctx->g;
    const int dev = ctx->device;
    if (ctx->open < 0)
        return usage(ei, "seal without layer_begin");
    const int s = ctx->open;
    acc_set *a = &ctx->acc[s];
    const size_t acc = (size_t)g->heads * g->n_slots * ctx->tiles;
    if (!ctx->pins[PIN_SUMS + 3].waited) { /* as in host_buffers */
        paro_err rc = pin_wait(ctx, PIN_SUMS, 4, ei);
        if (rc)
            return rc;
    }
    CUDA_TRY(ei, dev, cudaSetDevice(dev));
    /* The download runs on its own stream, beside the next layer's uploads
     * and kernels. */
    cudaEvent_t kernels_done = nullptr;
    CUDA_TRY(ei, dev, cudaEventCreateWithFlags(&kernels_done, cudaEventDisableTiming));
    cudaError_t err = cudaEventRecord(kernels_done, ctx->compute);
    if (err == cudaSuccess)
        err = cudaStreamWaitEvent(ctx->download, kernels_done, 0);
    cudaEventDestroy(kernels_done); /* released once the wait is satisfied */
    if (err != cudaSuccess)
        return paro_cuda_fail(ei, dev, err, "record the end of a layer", __FILE__, __LINE__);
    CUDA_TRY(ei, dev, cudaMemcpyAsync(a->mass_host.p, a->mass, acc * g->n_buckets * sizeof(float),
                                      cudaMemcpyDeviceToHost, ctx->download));
    CUDA_TRY(ei, dev, cudaMemcpyAsync(a->peak_host.p, a->peak, acc * sizeof(float),
                                      cudaMemcpyDeviceToHost, ctx->download));
    CUDA_TRY(ei, dev, cudaEventRecord(a->downloaded, ctx->download));
    a->state = ACC_SEALED;
    ctx->sealed_order[ctx->n_sealed++] = s;
    ctx->open = -1;
    return PARO_OK;
}

extern "C" paro_err paro_cuda_layer_end(paro_cuda_ctx *ctx, const float **mass,
                                        const float **peak, paro_errinfo *ei)
{
    const int dev = ctx->device;
    paro_err rc;
    if (ctx->n_sealed == 0 && ctx->open >= 0 && (rc = paro_cuda_layer_seal(ctx, ei)))
        return rc;
    if (ctx->n_sealed == 0)
        return usage(ei, "layer_end without a layer");
    const int s = ctx->sealed_order[0];
    ctx->sealed_order[0] = ctx->sealed_order[1];
    ctx->n_sealed--;
    acc_set *a = &ctx->acc[s];
    CUDA_TRY(ei, dev, cudaSetDevice(dev));
    CUDA_TRY(ei, dev, cudaEventSynchronize(a->downloaded));
    double ms = 0.0;
    for (size_t i = 0; i + 1 < a->n_timing; i += 2) {
        float part = 0.f;
        CUDA_TRY(ei, dev, cudaEventElapsedTime(&part, a->timing[i], a->timing[i + 1]));
        ms += part;
    }
    ctx->last_layer_ms = ms;
    /* The host copies stay valid until the next paro_cuda_layer_seal. */
    a->state = ACC_FREE;
    *mass = (float *)a->mass_host.p;
    *peak = (float *)a->peak_host.p;
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
