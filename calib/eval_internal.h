/* paro — what calib/eval.c (the CPU reference and driver of `paro eval`)
 * shares with calib/eval_gpu.c (its GPU path).  Not a public header. */
#ifndef PARO_EVAL_INTERNAL_H_7c2e9d41
#define PARO_EVAL_INTERNAL_H_7c2e9d41

#include <stddef.h> /* size_t */
#include <stdint.h> /* uint8_t, uint32_t */

#include "backend.h"    /* paro_backend */
#include "eval.h"       /* paro_eval_config */
#include "kernels.h"    /* paro_cuda_eval */
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

/* e[j] = exp(scale * (s[j] - max s)); returns their sum (in j order). */
double paro_eval_row_exponentials(const double *s, size_t n, double scale, double *e);
/* The output of one row with softmax over the kept entries only, from their
 * own maximum; zero for a row that keeps nothing. */
void paro_eval_kept_softmax_row(const paro_tiling *t, const uint32_t *perm, const uint8_t *row,
                                const double *s, double scale, const float *v, size_t d,
                                double *om);
/* One head's sums on one sample into its metrics. */
void paro_eval_add_head_result(layer_ctx *cx, uint32_t h, double norm_o, const mask_sums *sums,
                               const double quant_capture[2], const double quant_chosen[2]);

/* ---- the GPU path (calib/eval_gpu.c) ---- */

/* What `--device cuda` adds: the tile statistics of the basis samples from
 * the calibration backend's kernels, and the evaluation kernels for the
 * samples (kernels/eval.cu, f32); rows whose kept sum of exponentials
 * underflows f32 are redone here in fp64 by the reference's own code. */
typedef struct paro_eval_gpu {
    paro_backend stats;      /* the CUDA calibration backend */
    paro_cuda_eval *ev;
    int *slot;               /* [heads][2] */
    int *set_side;           /* [n_sets] */
    uint8_t *keep;           /* [heads][n_sets][nt]: the sample's bucket */
    paro_cuda_eval_out out;
    mask_sums *sums;         /* [n_sets], one head's */
    double *row_s, *row_e;   /* [n]: one row's scores and exponentials */
} paro_eval_gpu;

/* PARO_ERR_NO_CUDA without a device, PARO_ERR_USAGE when the kernels do not
 * take the shape. */
paro_err paro_eval_gpu_open(paro_eval_gpu *g, const paro_tiling *t, const paro_plan *plan,
                            size_t n_sets, paro_errinfo *ei);
void paro_eval_gpu_close(paro_eval_gpu *g);
/* Evaluates the sample in cx->q, k, v (the context's buffers, from
 * paro_cuda_eval_buffers) and adds each head's metrics. */
paro_err paro_eval_gpu_sample(layer_ctx *cx, paro_eval_gpu *g, paro_errinfo *ei);

#endif
