/* paro — evaluating a plan on a capture (`paro eval`): what its masks and
 * orders do to attention on samples it was not calibrated on, against the
 * capture order (FHW) at the same density.  calib/EVAL.md defines every
 * number; this CPU reference computes them in fp64, one head at a time, in
 * row panels (never an N x N map), and is the oracle a CUDA version must match.
 *
 * Per plan layer, head and evaluation sample (placed in a timestep bucket by
 * paro_bucket_of(paro_manifest_progress()), as calibration does):
 *  - recall: attention mass inside the kept tiles of the bucket's mask;
 *  - sparse output error: softmax renormalised over the kept entries, times
 *    V, against the dense output (relative L2 and cosine);
 *  - quantization error: Q and K in INT8 per block, P in INT8 or INT4 per
 *    tile, times V, against the dense output (relative L2);
 * for the plan's chosen order and mask, and for capture order with a mask
 * built by the plan's rules at the same density from the plan's calibration
 * samples (the "baseline").  Optionally a density sweep rebuilds the masks of
 * both orders at other densities.
 *
 * Results are byte-identical for any thread count: heads are independent and
 * each head's sums run over samples in manifest order.
 */
#ifndef PARO_EVAL_H_d5a3f816
#define PARO_EVAL_H_d5a3f816

#include <signal.h> /* sig_atomic_t */
#include <stddef.h> /* size_t */
#include <stdint.h> /* uint8_t, uint32_t, uint64_t */

#include "calibrate.h" /* paro_device */
#include "error.h"     /* paro_err, paro_errinfo */
#include "manifest.h"  /* paro_manifest */
#include "plan.h"      /* paro_plan */

#ifdef __cplusplus
extern "C" {
#endif

/* Per-head numbers, averaged over the evaluation samples except the two
 * "worst" ones (lowest over the samples).  "CAPTURE" is the baseline:
 * capture order with its own mask at the same density. */
typedef enum paro_eval_metric {
    PARO_EVAL_DENSITY = 0, /* density of the plan's mask applied to each sample */
    PARO_EVAL_DENSITY_CAPTURE,
    PARO_EVAL_RECALL,
    PARO_EVAL_RECALL_CAPTURE,
    PARO_EVAL_RECALL_WORST,
    PARO_EVAL_RECALL_WORST_CAPTURE,
    PARO_EVAL_OUT_REL_L2,
    PARO_EVAL_OUT_COSINE,
    PARO_EVAL_OUT_REL_L2_CAPTURE,
    PARO_EVAL_OUT_COSINE_CAPTURE,
    PARO_EVAL_INT8_REL_L2,
    PARO_EVAL_INT4_REL_L2,
    PARO_EVAL_INT8_REL_L2_CAPTURE,
    PARO_EVAL_INT4_REL_L2_CAPTURE,
    PARO_EVAL_N_METRICS
} paro_eval_metric;

/* Per density of a sweep, per head, averaged over the evaluation samples. */
typedef enum paro_eval_sweep_metric {
    PARO_SWEEP_DENSITY = 0, /* achieved: the "every query block keeps a tile"
                               and text rules can add tiles */
    PARO_SWEEP_DENSITY_CAPTURE,
    PARO_SWEEP_RECALL,
    PARO_SWEEP_RECALL_CAPTURE,
    PARO_SWEEP_OUT_REL_L2,
    PARO_SWEEP_OUT_REL_L2_CAPTURE,
    PARO_SWEEP_N_METRICS
} paro_eval_sweep_metric;

/* JSON key of a metric in summaries ("recall_capture_order", ...). */
const char *paro_eval_metric_name(int metric);
const char *paro_eval_sweep_metric_name(int metric);
/* 1 for the metrics summarised by their minimum (the worst recalls). */
int paro_eval_metric_is_worst(int metric);

/* Which samples the baseline's capture-order masks (and the sweep's masks)
 * are built from. */
typedef enum paro_eval_basis {
    /* The plan's calibration samples, found in this capture: both orders are
     * judged on the same held-out data with masks made the same way. */
    PARO_EVAL_BASIS_CALIBRATION = 0,
    /* The evaluation samples themselves: the capture is not the one the plan
     * records, so its calibration samples are not available. */
    PARO_EVAL_BASIS_EVALUATION = 1
} paro_eval_basis;

typedef struct paro_eval_progress {
    uint64_t done, total; /* (layer, sample) steps, baseline samples included */
    uint32_t layer;       /* model layer id being worked on */
    size_t sample;        /* manifest index of the sample just finished */
} paro_eval_progress;

#define PARO_EVAL_MAX_SWEEP 64

typedef struct paro_eval_config {
    /* Manifest sample indices, strictly increasing; NULL = the samples the
     * plan was not calibrated on (all of them, with a warning, when none is
     * left). */
    const uint32_t *samples;
    size_t n_samples;
    /* Densities in [0, 1] at which to rebuild both orders' masks; n_sweep = 0
     * for none, at most PARO_EVAL_MAX_SWEEP. */
    const double *sweep;
    size_t n_sweep;
    int threads; /* worker threads (>= 1) */
    paro_device device;
    /* Called on the calling thread after every (layer, sample) step. */
    void (*progress)(void *user, const paro_eval_progress *p);
    void *progress_user;
    /* Polled between steps; non-zero stops the run with PARO_ERR_INTERRUPTED. */
    volatile sig_atomic_t *stop;
} paro_eval_config;

#define PARO_EVAL_MAX_WARNINGS 4

typedef struct paro_eval_result {
    uint32_t n_layers, heads, n_buckets;
    uint32_t *layers;         /* [n_layers]: the plan's model layer ids */
    uint8_t *order;           /* [n_layers][heads]: chosen order code (order.h) */
    size_t n_samples;
    uint32_t *samples;        /* [n_samples]: manifest indices evaluated on */
    uint32_t *sample_bucket;  /* [n_samples] */
    uint32_t *bucket_samples; /* [n_buckets]: evaluation samples per bucket */
    int held_out;             /* 1 when no evaluation sample calibrated the plan */
    paro_eval_basis basis;
    size_t n_basis;
    uint32_t *basis_samples;  /* [n_basis]: manifest indices the masks came from */
    double *metrics;          /* [n_layers][heads][PARO_EVAL_N_METRICS] */
    /* [n_layers][n_buckets][heads]: the masks' densities, and the recall
     * averaged over the bucket's evaluation samples (NaN when it has none). */
    double *density, *density_capture, *recall, *recall_capture;
    size_t n_sweep;
    double *sweep_density;    /* [n_sweep]: the requested densities */
    double *sweep;            /* [n_layers][heads][n_sweep][PARO_SWEEP_N_METRICS] */
    int n_warnings;
    char warnings[PARO_EVAL_MAX_WARNINGS][256]; /* one line each, no newline */
    const char *device;       /* where the samples were computed: "cpu" or "cuda" */
} paro_eval_result;

void paro_eval_config_default(paro_eval_config *c);

/* Evaluates plan on the capture m.  The plan must fit the capture (grid,
 * text, heads, head dim, scale, layers): PARO_ERR_USAGE otherwise.  Every
 * evaluation sample needs V for every plan layer: PARO_ERR_FORMAT naming the
 * file otherwise.  device CUDA: the GPU (kernels/eval.cu, f32), or
 * PARO_ERR_NO_CUDA / PARO_ERR_USAGE when there is none or the kernels do not
 * take the shape; AUTO: the GPU when it can, else the CPU. */
paro_err paro_eval(const paro_manifest *m, const paro_plan *plan, const paro_eval_config *cfg,
                   paro_eval_result **out, paro_errinfo *ei);
void paro_eval_result_free(paro_eval_result *r);

static inline const double *paro_eval_head_metrics(const paro_eval_result *r, uint32_t l,
                                                   uint32_t h)
{
    return r->metrics + ((size_t)l * r->heads + h) * PARO_EVAL_N_METRICS;
}
static inline size_t paro_eval_bucket_index(const paro_eval_result *r, uint32_t l, uint32_t b,
                                            uint32_t h)
{
    return ((size_t)l * r->n_buckets + b) * r->heads + h;
}
static inline const double *paro_eval_head_sweep(const paro_eval_result *r, uint32_t l,
                                                 uint32_t h, size_t d)
{
    return r->sweep + (((size_t)l * r->heads + h) * r->n_sweep + d) * PARO_SWEEP_N_METRICS;
}

/* Means over the heads of layer slot l (or of every layer when l < 0); the
 * worst metrics take the minimum instead. */
void paro_eval_summary(const paro_eval_result *r, int l, double out[PARO_EVAL_N_METRICS]);
void paro_eval_sweep_summary(const paro_eval_result *r, int l, size_t d,
                             double out[PARO_SWEEP_N_METRICS]);

#ifdef __cplusplus
}
#endif
#endif
