/* paro — one layer's evaluation, as both paths of `paro eval` see it
 * (calib/eval.c, the CPU reference and the driver; calib/eval_gpu.c, the
 * GPU path): the layer's context and masks, and the row and head code both
 * use (calib/eval_layer.c).  Not a public header. */
#ifndef PARO_EVAL_LAYER_H_7c2e9d41
#define PARO_EVAL_LAYER_H_7c2e9d41

#include <stddef.h> /* size_t */
#include <stdint.h> /* uint8_t, uint32_t */

#include "eval.h"       /* paro_eval_config */
#include "stats.h"      /* paro_block_stats */
#include "tile_stats.h" /* paro_tiling */

/* Sums over the rows of one head and sample, for one mask. */
typedef struct mask_sums {
    double kept;  /* sum over rows of the kept share of the row's mass */
    double err2;  /* sum of squared differences to the dense output */
    double dot;   /* sum of products with the dense output */
    double norm2; /* sum of squares of this output */
} mask_sums;

typedef struct worker_space worker_space; /* calib/eval.c's per-thread scratch */

/* Mask sets of a head: the plan's (chosen order), the baseline (capture
 * order), then per sweep density one of each. */
enum { SET_PLAN = 0, SET_CAPTURE = 1, SET_SWEEP = 2 };
#define SET_IS_CHOSEN(s) ((s) % 2 == 0)

typedef struct layer_ctx {
    const paro_plan *plan;
    const paro_tiling *t;
    const paro_eval_config *cfg;
    worker_space *spaces;   /* one per worker thread */
    uint32_t li;            /* plan layer slot */
    uint32_t heads, d, n_buckets;
    size_t n, nt, n_sets;
    double scale;
    const int *slot_of_head;/* [heads]: chosen order's slot */
    int capture_slot;
    /* statistics phase */
    paro_block_stats *stats;
    uint32_t bucket;        /* of the sample being added */
    /* masks: [heads][n_sets][n_buckets][nt], densities [heads][n_sets][n_buckets]
     * (NaN where a mask could not be built: no sample in the bucket) */
    uint8_t *masks;
    double *mask_density;
    /* evaluation phase */
    const float *q, *k, *v; /* [heads][n][d] of one sample */
    uint32_t sample_bucket;
    /* per-head sums over the evaluation samples */
    double *acc;            /* [heads][PARO_EVAL_N_METRICS] */
    double *acc_bucket;     /* [heads][n_buckets][2]: recall, chosen and capture */
    double *acc_sweep;      /* [heads][n_sweep][PARO_SWEEP_N_METRICS] */
} layer_ctx;

static inline uint8_t *mask_at(const layer_ctx *cx, uint32_t h, size_t set, uint32_t b)
{
    return cx->masks + ((((size_t)h * cx->n_sets + set) * cx->n_buckets) + b) * cx->nt;
}

static inline double *mask_density_at(const layer_ctx *cx, uint32_t h, size_t set, uint32_t b)
{
    return cx->mask_density + ((size_t)h * cx->n_sets + set) * cx->n_buckets + b;
}

/* ---- the row and head code (calib/eval_layer.c) ---- */

/* Positions [lo, hi) of key block b of an order (the last one may be short). */
static inline void paro_eval_key_block_range(const paro_tiling *t, uint32_t b, size_t *lo,
                                             size_t *hi)
{
    *lo = (size_t)b * t->block_k;
    *hi = *lo + t->block_k;
    if (*hi > t->n_tokens)
        *hi = t->n_tokens;
}

/* The output of one row with softmax over the kept entries only, from their
 * own maximum; zero for a row that keeps nothing. */
void paro_eval_kept_softmax_row(const paro_tiling *t, const uint32_t *perm, const uint8_t *row,
                                const double *s, double scale, const float *v, size_t d,
                                double *om);
/* One head's sums on one sample into its metrics. */
void paro_eval_add_head_result(layer_ctx *cx, uint32_t h, double norm_o, const mask_sums *sums,
                               const double quant_capture[2], const double quant_chosen[2]);

#endif
