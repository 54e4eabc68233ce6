/* paro — block statistics of one layer, accumulated over samples.
 *
 * Kept apart from scoring and mask building because they are additive: stats
 * from disjoint sample sets (other ranks, other machines, or accumulated
 * inside a model while it generates) merge by adding, and the plan made from
 * the merged stats is the plan made from all samples at once.
 *
 * For each head and distinct order ("slot", see paro_tiling) it holds the
 * per-tile sum over samples of the tile mass, per timestep bucket (masks are
 * made per bucket), and the per-tile sum over samples of the tile peak, which
 * the quant score needs (orders are chosen over all buckets together).
 */
#ifndef PARO_STATS_H_3c71e9b8
#define PARO_STATS_H_3c71e9b8

#include <stddef.h> /* size_t */
#include <stdint.h> /* uint32_t, uint64_t */

#include "error.h" /* paro_err, paro_errinfo */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct paro_block_stats {
    uint32_t heads, n_buckets, n_slots, nq, nk;
    uint64_t *count; /* [n_buckets][heads]: samples added */
    double *mass;    /* [n_buckets][heads][n_slots][nq*nk]: sum of tile mass */
    double *peak;    /* [heads][n_slots][nq*nk]: sum of tile peak */
    /* When not NULL, the sums are these f32 arrays instead (the same
     * layouts), lent by the GPU backend until its next seal: they are
     * read where they lie rather than widened into mass and peak, whose
     * pages are then never touched.  Read them through the _row functions. */
    const float *mass32, *peak32;
} paro_block_stats;

paro_err paro_block_stats_init(paro_block_stats *st, uint32_t heads, uint32_t n_buckets,
                               uint32_t n_slots, uint32_t nq, uint32_t nk, paro_errinfo *ei);
void paro_block_stats_free(paro_block_stats *st);

/* Back to zero (for the next layer), on up to `threads` threads. */
void paro_block_stats_zero(paro_block_stats *st, int threads);

/* Adds one sample's tile stats of one head (mass and peak: [n_slots][nq*nk],
 * as paro_tile_stats_cpu writes them). */
void paro_block_stats_add(paro_block_stats *st, uint32_t bucket, uint32_t head,
                          const double *mass, const double *peak);

/* dst += src; the shapes must agree and both hold doubles (PARO_ERR_USAGE
 * otherwise). */
paro_err paro_block_stats_merge(paro_block_stats *dst, const paro_block_stats *src,
                                paro_errinfo *ei);

static inline size_t paro_block_stats_tiles(const paro_block_stats *st)
{
    return (size_t)st->nq * st->nk;
}

/* The sums of tile mass of (bucket, head, slot), or of tile peak of (head,
 * slot), as nq*nk doubles: where they lie, or widened from the f32 ones into
 * room (nq*nk doubles), which is then what is returned. */
const double *paro_block_stats_mass_row(const paro_block_stats *st, uint32_t bucket,
                                        uint32_t head, uint32_t slot, double *room);
const double *paro_block_stats_peak_row(const paro_block_stats *st, uint32_t head,
                                        uint32_t slot, double *room);

/* Sum of tile mass of (bucket, head, slot); the stats must hold doubles
 * (mass32 NULL). */
static inline const double *paro_block_stats_mass(const paro_block_stats *st,
                                                  uint32_t bucket, uint32_t head,
                                                  uint32_t slot)
{
    return st->mass + (((size_t)bucket * st->heads + head) * st->n_slots + slot) *
                          paro_block_stats_tiles(st);
}
static inline const double *paro_block_stats_peak(const paro_block_stats *st,
                                                  uint32_t head, uint32_t slot)
{
    return st->peak + ((size_t)head * st->n_slots + slot) * paro_block_stats_tiles(st);
}

#ifdef __cplusplus
}
#endif
#endif
