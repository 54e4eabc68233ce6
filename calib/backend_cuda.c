/* paro — the GPU backend: the driver's interface over kernels/kernels.h. */
#include <stdlib.h> /* calloc, malloc, free */
#include <string.h> /* memset */

#include "backend.h"
#include "kernels.h"  /* paro_cuda_* */
#include "parallel.h" /* paro_parallel_for */

typedef struct cuda_state {
    paro_cuda_ctx *ctx;
    int threads;
    /* The stats of the open layer, then of the sealed ones, oldest first
     * (the context keeps the same order). */
    paro_block_stats *open;
    paro_block_stats *sealed[2];
    int n_sealed;
    paro_block_stats *stats;  /* the layer being collected */
    const float *mass, *peak; /* its sums, from layer_end */
} cuda_state;

/* One head's rows of the GPU's f32 sums into the fp64 statistics: they are
 * the layer's whole sums, so they replace what the stats held (no clearing
 * pass is needed). */
static void add_head(void *arg, uint32_t item, int worker)
{
    cuda_state *cs = arg;
    paro_block_stats *st = cs->stats;
    const size_t row = paro_block_stats_tiles(st) * st->n_slots;
    (void)worker;
    /* items: n_buckets * heads rows of mass, then heads rows of peak */
    const uint32_t mass_rows = st->n_buckets * st->heads;
    const float *from = item < mass_rows ? cs->mass + (size_t)item * row
                                         : cs->peak + (size_t)(item - mass_rows) * row;
    double *to = item < mass_rows ? st->mass + (size_t)item * row
                                  : st->peak + (size_t)(item - mass_rows) * row;
    for (size_t i = 0; i < row; i++)
        to[i] = from[i];
}

static paro_err cuda_layer_begin(paro_backend *b, paro_block_stats *stats, paro_errinfo *ei)
{
    cuda_state *cs = b->state;
    cs->open = stats;
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
    paro_err rc = paro_cuda_layer_end(cs->ctx, &cs->mass, &cs->peak, ei);
    if (rc)
        return rc;
    cs->stats = cs->sealed[0];
    cs->sealed[0] = cs->sealed[1];
    cs->n_sealed--;
    paro_block_stats *st = cs->stats;
    paro_parallel_for(cs->threads, (st->n_buckets + 1) * st->heads, add_head, cs);
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
                                int threads, paro_errinfo *ei)
{
    b->name = "cuda";
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
    cs->threads = threads;
    b->state = cs;
    return PARO_OK;
}
