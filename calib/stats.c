/* paro — additive block statistics. */
#include "stats.h"

#include <stdlib.h> /* calloc, free */
#include <string.h> /* memset */

#include "parallel.h" /* paro_parallel_for */

paro_err paro_block_stats_init(paro_block_stats *st, uint32_t heads, uint32_t n_buckets,
                               uint32_t n_slots, uint32_t nq, uint32_t nk, paro_errinfo *ei)
{
    memset(st, 0, sizeof *st);
    uint64_t nt, per_bucket, mass_n, peak_n;
    if (!paro_mul_ok(nq, nk, &nt) || !paro_mul_ok(nt, (uint64_t)heads * n_slots, &per_bucket) ||
        !paro_mul_ok(per_bucket, n_buckets, &mass_n) ||
        !paro_mul_ok(mass_n, sizeof(double), &(uint64_t){0}))
        return paro_error(ei, PARO_ERR_LIMIT, NULL, PARO_NO_OFFSET,
                          "block statistics too large to index");
    peak_n = per_bucket;
    st->heads = heads;
    st->n_buckets = n_buckets;
    st->n_slots = n_slots;
    st->nq = nq;
    st->nk = nk;
    st->count = calloc((size_t)n_buckets * heads, sizeof *st->count);
    st->mass = calloc((size_t)mass_n, sizeof *st->mass);
    st->peak = calloc((size_t)peak_n, sizeof *st->peak);
    if (!st->count || !st->mass || !st->peak) {
        paro_block_stats_free(st);
        return paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET,
                          "out of memory for block statistics (%.1f MiB)",
                          (double)(mass_n + peak_n) * 8.0 / 1048576.0);
    }
    return PARO_OK;
}

void paro_block_stats_free(paro_block_stats *st)
{
    free(st->count);
    free(st->mass);
    free(st->peak);
    memset(st, 0, sizeof *st);
}

static const double *widened(const float *from, size_t n, double *room)
{
    for (size_t i = 0; i < n; i++)
        room[i] = from[i];
    return room;
}

const double *paro_block_stats_mass_row(const paro_block_stats *st, uint32_t bucket,
                                        uint32_t head, uint32_t slot, double *room)
{
    const size_t nt = paro_block_stats_tiles(st);
    const size_t row = ((size_t)bucket * st->heads + head) * st->n_slots + slot;
    return st->mass32 ? widened(st->mass32 + row * nt, nt, room) : st->mass + row * nt;
}

const double *paro_block_stats_peak_row(const paro_block_stats *st, uint32_t head,
                                        uint32_t slot, double *room)
{
    const size_t nt = paro_block_stats_tiles(st);
    const size_t row = (size_t)head * st->n_slots + slot;
    return st->peak32 ? widened(st->peak32 + row * nt, nt, room) : st->peak + row * nt;
}

typedef struct zero_job {
    paro_block_stats *st;
    size_t head_doubles; /* per (bucket, head): n_slots * tiles */
} zero_job;

static void zero_part(void *ctx, uint32_t item, int worker)
{
    zero_job *job = ctx;
    paro_block_stats *st = job->st;
    (void)worker;
    /* items: n_buckets * heads rows of mass, then heads rows of peak */
    const uint32_t mass_rows = st->n_buckets * st->heads;
    double *row = item < mass_rows ? st->mass + (size_t)item * job->head_doubles
                                   : st->peak + (size_t)(item - mass_rows) * job->head_doubles;
    memset(row, 0, job->head_doubles * sizeof *row);
}

void paro_block_stats_zero(paro_block_stats *st, int threads)
{
    st->mass32 = st->peak32 = NULL;
    zero_job job = {st, paro_block_stats_tiles(st) * st->n_slots};
    paro_parallel_for(threads, (st->n_buckets + 1) * st->heads, zero_part, &job);
    memset(st->count, 0, (size_t)st->n_buckets * st->heads * sizeof *st->count);
}

void paro_block_stats_add(paro_block_stats *st, uint32_t bucket, uint32_t head,
                          const double *mass, const double *peak)
{
    size_t n = paro_block_stats_tiles(st) * st->n_slots;
    double *m = (double *)paro_block_stats_mass(st, bucket, head, 0);
    double *p = (double *)paro_block_stats_peak(st, head, 0);
    for (size_t i = 0; i < n; i++) {
        m[i] += mass[i];
        p[i] += peak[i];
    }
    st->count[(size_t)bucket * st->heads + head]++;
}

paro_err paro_block_stats_merge(paro_block_stats *dst, const paro_block_stats *src,
                                paro_errinfo *ei)
{
    if (dst->heads != src->heads || dst->n_buckets != src->n_buckets ||
        dst->n_slots != src->n_slots || dst->nq != src->nq || dst->nk != src->nk)
        return paro_error(ei, PARO_ERR_USAGE, NULL, PARO_NO_OFFSET,
                          "cannot merge block statistics of different shapes");
    if (dst->mass32 || src->mass32)
        return paro_error(ei, PARO_ERR_USAGE, NULL, PARO_NO_OFFSET,
                          "cannot merge block statistics a GPU lends as f32");
    size_t nt = paro_block_stats_tiles(dst) * dst->n_slots;
    size_t mass_n = nt * dst->heads * dst->n_buckets, peak_n = nt * dst->heads;
    for (size_t i = 0; i < mass_n; i++)
        dst->mass[i] += src->mass[i];
    for (size_t i = 0; i < peak_n; i++)
        dst->peak[i] += src->peak[i];
    for (size_t i = 0; i < (size_t)dst->n_buckets * dst->heads; i++)
        dst->count[i] += src->count[i];
    return PARO_OK;
}
