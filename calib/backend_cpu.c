/* paro — the CPU backend: paro_tile_stats_cpu on worker threads, one head
 * at a time. */
#include <stdlib.h> /* calloc, malloc, aligned_alloc, free */

#include "backend.h"
#include "parallel.h" /* paro_parallel_for */

typedef struct worker_space {
    void *scratch;
    double *mass, *peak; /* [n_slots][nt] */
} worker_space;

typedef struct cpu_state {
    paro_backend_shape shape;
    int threads;
    worker_space *spaces;  /* [threads] */
    float *q, *k;          /* [heads][N][D] */
    paro_block_stats *stats;
    uint32_t bucket;       /* of the sample being processed */
} cpu_state;

static void head_stats(void *ctx, uint32_t h, int worker)
{
    cpu_state *cpu = ctx;
    const paro_backend_shape *s = &cpu->shape;
    worker_space *space = &cpu->spaces[worker];
    const size_t per_head = (size_t)s->tiling->n_tokens * s->head_dim;
    paro_tile_stats_cpu(s->tiling, cpu->q + h * per_head, cpu->k + h * per_head, s->head_dim,
                        s->scale, space->mass, space->peak, space->scratch);
    /* Each head's statistics belong to one worker at a time, and samples
     * come one after another: the sums are made in the same order whatever
     * the thread count. */
    paro_block_stats_add(cpu->stats, cpu->bucket, h, space->mass, space->peak);
}

static paro_err cpu_layer_begin(paro_backend *b, paro_block_stats *stats, paro_errinfo *ei)
{
    cpu_state *cpu = b->state;
    (void)ei;
    cpu->stats = stats;
    paro_block_stats_zero(stats, cpu->threads); /* samples are added into them */
    return PARO_OK;
}

static paro_err cpu_buffers(paro_backend *b, float **q, float **k, paro_errinfo *ei)
{
    (void)ei;
    cpu_state *cpu = b->state;
    *q = cpu->q;
    *k = cpu->k;
    return PARO_OK;
}

static paro_err cpu_submit(paro_backend *b, uint32_t bucket, paro_errinfo *ei)
{
    cpu_state *cpu = b->state;
    (void)ei;
    cpu->bucket = bucket;
    paro_parallel_for(cpu->threads, cpu->shape.heads, head_stats, cpu);
    return PARO_OK;
}

/* Sealing and collecting have nothing to do: submit has added each sample
 * before it returned. */
static paro_err cpu_nothing(paro_backend *b, paro_errinfo *ei)
{
    (void)b;
    (void)ei;
    return PARO_OK;
}

static void cpu_close(paro_backend *b)
{
    cpu_state *cpu = b->state;
    if (!cpu)
        return;
    for (int i = 0; cpu->spaces && i < cpu->threads; i++) {
        free(cpu->spaces[i].scratch);
        free(cpu->spaces[i].mass);
        free(cpu->spaces[i].peak);
    }
    free(cpu->spaces);
    free(cpu->q);
    free(cpu->k);
    free(cpu);
    b->state = NULL;
}

paro_err paro_backend_cpu_open(paro_backend *b, const paro_backend_shape *s, int threads,
                               paro_errinfo *ei)
{
    b->name = "cpu";
    b->layer_begin = cpu_layer_begin;
    b->buffers = cpu_buffers;
    b->buffers_bf16 = NULL;
    b->submit = cpu_submit;
    b->seal = cpu_nothing;
    b->collect = cpu_nothing;
    b->close = cpu_close;
    cpu_state *cpu = calloc(1, sizeof *cpu);
    b->state = cpu;
    if (!cpu)
        return paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory");
    cpu->shape = *s;
    cpu->threads = threads < 1 ? 1 : threads > (int)s->heads ? (int)s->heads : threads;
    const size_t per_tensor = (size_t)s->heads * s->tiling->n_tokens * s->head_dim;
    const size_t nt = paro_tiling_tiles(s->tiling), slots = (size_t)s->tiling->n_slots;
    const size_t scratch = paro_tile_stats_scratch_bytes(s->tiling, s->head_dim);
    cpu->q = malloc(per_tensor * sizeof *cpu->q);
    cpu->k = malloc(per_tensor * sizeof *cpu->k);
    cpu->spaces = calloc((size_t)cpu->threads, sizeof *cpu->spaces);
    int ok = cpu->q && cpu->k && cpu->spaces;
    for (int i = 0; ok && i < cpu->threads; i++) {
        cpu->spaces[i].scratch = aligned_alloc(64, (scratch + 63) / 64 * 64);
        cpu->spaces[i].mass = malloc(slots * nt * sizeof(double));
        cpu->spaces[i].peak = malloc(slots * nt * sizeof(double));
        ok = cpu->spaces[i].scratch && cpu->spaces[i].mass && cpu->spaces[i].peak;
    }
    if (!ok) {
        cpu_close(b);
        return paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET,
                          "out of memory for one layer of one sample (%.1f MiB) and the "
                          "workers' scratch",
                          2.0 * (double)per_tensor * 4.0 / 1048576.0);
    }
    return PARO_OK;
}
