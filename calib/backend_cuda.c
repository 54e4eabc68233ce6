/* paro — the GPU backend: the driver's interface over kernels/kernels.h. */
#include <stdlib.h> /* calloc, malloc, free */
#include <string.h> /* memset */

#include "backend.h"
#include "kernels.h"  /* paro_cuda_* */

typedef struct cuda_state {
    paro_cuda_ctx *ctx;
    /* The stats of the open layer, then of the sealed ones, oldest first
     * (the context keeps the same order). */
    paro_block_stats *open;
    paro_block_stats *sealed[2];
    int n_sealed;
} cuda_state;

static paro_err cuda_layer_begin(paro_backend *b, paro_block_stats *stats, paro_errinfo *ei)
{
    cuda_state *cs = b->state;
    cs->open = stats;
    stats->mass32 = stats->peak32 = NULL; /* lent by the next collect */
    /* The counts are the driver's, added per sample. */
    memset(stats->count, 0, (size_t)stats->n_buckets * stats->heads * sizeof *stats->count);
    return paro_cuda_layer_begin(cs->ctx, ei);
}

static paro_err cuda_buffers(paro_backend *b, float **q, float **k, paro_errinfo *ei)
{
    return paro_cuda_next_buffers(((cuda_state *)b->state)->ctx, q, k, ei);
}

static paro_err cuda_buffers_bf16(paro_backend *b, uint16_t **q, uint16_t **k, paro_errinfo *ei)
{
    return paro_cuda_next_buffers_bf16(((cuda_state *)b->state)->ctx, q, k, ei);
}

static paro_err cuda_submit(paro_backend *b, uint32_t bucket, paro_errinfo *ei)
{
    return paro_cuda_submit(((cuda_state *)b->state)->ctx, bucket, ei);
}

static paro_err cuda_seal(paro_backend *b, paro_errinfo *ei)
{
    cuda_state *cs = b->state;
    if (!cs->open || cs->n_sealed == 2)
        return paro_error(ei, PARO_ERR_USAGE, NULL, PARO_NO_OFFSET,
                          "cuda backend: seal without an open layer");
    paro_err rc = paro_cuda_layer_seal(cs->ctx, ei);
    if (rc)
        return rc;
    cs->sealed[cs->n_sealed++] = cs->open;
    cs->open = NULL;
    return PARO_OK;
}

static paro_err cuda_collect(paro_backend *b, paro_errinfo *ei)
{
    cuda_state *cs = b->state;
    if (cs->n_sealed == 0)
        return paro_error(ei, PARO_ERR_USAGE, NULL, PARO_NO_OFFSET,
                          "cuda backend: collect without a sealed layer");
    const float *mass, *peak;
    paro_err rc = paro_cuda_layer_end(cs->ctx, &mass, &peak, ei);
    if (rc)
        return rc;
    /* The layer's whole sums, lent as they came down (pinned host memory,
     * valid until the seal after the next layer_begin, which queues the
     * download that overwrites them): widening them to fp64 here would
     * write and read back twice their size for nothing. */
    paro_block_stats *st = cs->sealed[0];
    cs->sealed[0] = cs->sealed[1];
    cs->n_sealed--;
    st->mass32 = mass;
    st->peak32 = peak;
    return PARO_OK;
}

static void cuda_close(paro_backend *b)
{
    cuda_state *cs = b->state;
    if (!cs)
        return;
    paro_cuda_close(cs->ctx);
    free(cs);
    b->state = NULL;
}

paro_err paro_backend_cuda_open(paro_backend *b, const paro_backend_shape *s, int device,
                                paro_errinfo *ei)
{
    b->name = "cuda";
    b->lends_sums = 1;
    b->layer_begin = cuda_layer_begin;
    b->buffers = cuda_buffers;
    b->buffers_bf16 = cuda_buffers_bf16;
    b->submit = cuda_submit;
    b->seal = cuda_seal;
    b->collect = cuda_collect;
    b->close = cuda_close;
    b->state = NULL;
    if (paro_cuda_device_count(ei) <= device)
        return paro_error(ei, PARO_ERR_NO_CUDA, NULL, PARO_NO_OFFSET, "no cuda device %d", device);
    /* The kernels take each distinct order's permutation once, as the
     * tiling holds them. */
    const paro_tiling *t = s->tiling;
    uint32_t *perms = paro_tiling_flat_perms(t);
    cuda_state *cs = calloc(1, sizeof *cs);
    if (!perms || !cs) {
        free(perms);
        free(cs);
        return paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory");
    }
    paro_cuda_geometry g = {.n_tokens = t->n_tokens,
                            .head_dim = s->head_dim,
                            .heads = s->heads,
                            .block_q = t->block_q,
                            .block_k = t->block_k,
                            .nq = t->nq,
                            .nk = t->nk,
                            .n_slots = (uint32_t)t->n_slots,
                            .perms = perms,
                            .n_buckets = s->n_buckets,
                            .scale = s->scale};
    paro_err rc = paro_cuda_open(&cs->ctx, device, &g, ei);
    free(perms);
    if (rc) {
        free(cs);
        return rc;
    }
    b->state = cs;
    return PARO_OK;
}
