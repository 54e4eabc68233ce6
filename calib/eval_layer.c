/* paro — what both paths of `paro eval` share (calib/eval.c, the fp64
 * reference on the CPU, and calib/eval_gpu.c, which redoes rows the f32
 * kernels cannot hold in the same code): a row's softmax over its kept
 * blocks only, and a head's sums on a sample into its metrics.  (A row's
 * exponentials are the calibration reference's, paro_row_exponentials.) */
#include "eval_layer.h"

#include <math.h>   /* exp, sqrt, INFINITY */
#include <string.h> /* memset */

/* The output of one row with softmax over the kept entries only, from their
 * own maximum (for rows whose kept sum underflowed); zero for a row that
 * keeps nothing (a plan written by hand may have one). */
void paro_eval_kept_softmax_row(const paro_tiling *t, const uint32_t *perm, const uint8_t *row,
                                const double *s, double scale, const float *v, size_t d,
                                double *om)
{
    double kmax = -INFINITY;
    for (uint32_t b = 0; b < t->nk; b++) {
        if (!row[b])
            continue;
        size_t lo, hi;
        paro_eval_key_block_range(t, b, &lo, &hi);
        for (size_t p = lo; p < hi; p++)
            if (s[perm[p]] > kmax)
                kmax = s[perm[p]];
    }
    double z = 0.0;
    memset(om, 0, d * sizeof *om);
    for (uint32_t b = 0; b < t->nk; b++) {
        if (!row[b])
            continue;
        size_t lo, hi;
        paro_eval_key_block_range(t, b, &lo, &hi);
        for (size_t p = lo; p < hi; p++) {
            const uint32_t j = perm[p];
            const double w = exp(scale * (s[j] - kmax));
            z += w;
            for (size_t c = 0; c < d; c++)
                om[c] += w * v[(size_t)j * d + c];
        }
    }
    for (size_t c = 0; c < d; c++)
        om[c] = z > 0.0 ? om[c] / z : 0.0;
}

/* Worst-of metrics take the smallest value over samples, the others the mean. */
int paro_eval_metric_is_worst(int metric)
{
    return metric == PARO_EVAL_RECALL_WORST || metric == PARO_EVAL_RECALL_WORST_CAPTURE;
}

static double rel_l2(double err2, double norm2)
{
    if (err2 == 0.0)
        return 0.0;
    return norm2 > 0.0 ? sqrt(err2 / norm2) : INFINITY;
}

static double cosine(double dot, double a2, double b2)
{
    if (a2 > 0.0 && b2 > 0.0)
        return dot / sqrt(a2 * b2);
    return a2 == 0.0 && b2 == 0.0 ? 1.0 : 0.0;
}

/* One head's sums on one sample into its metrics, summed over samples in
 * manifest order.  sums: [n_sets]; quant: INT8 and INT4 squared errors in
 * capture order and in the chosen one. */
void paro_eval_add_head_result(layer_ctx *cx, uint32_t h, double norm_o, const mask_sums *sums,
                               const double quant_capture[2], const double quant_chosen[2])
{
    const uint32_t b = cx->sample_bucket;
    const double n = (double)cx->n;
    const mask_sums *plan_s = &sums[SET_PLAN], *cap_s = &sums[SET_CAPTURE];
    double x[PARO_EVAL_N_METRICS];
    x[PARO_EVAL_DENSITY] = *mask_density_at(cx, h, SET_PLAN, b);
    x[PARO_EVAL_DENSITY_CAPTURE] = *mask_density_at(cx, h, SET_CAPTURE, b);
    x[PARO_EVAL_RECALL] = x[PARO_EVAL_RECALL_WORST] = plan_s->kept / n;
    x[PARO_EVAL_RECALL_CAPTURE] = x[PARO_EVAL_RECALL_WORST_CAPTURE] = cap_s->kept / n;
    x[PARO_EVAL_OUT_REL_L2] = rel_l2(plan_s->err2, norm_o);
    x[PARO_EVAL_OUT_COSINE] = cosine(plan_s->dot, plan_s->norm2, norm_o);
    x[PARO_EVAL_OUT_REL_L2_CAPTURE] = rel_l2(cap_s->err2, norm_o);
    x[PARO_EVAL_OUT_COSINE_CAPTURE] = cosine(cap_s->dot, cap_s->norm2, norm_o);
    x[PARO_EVAL_INT8_REL_L2] = rel_l2(quant_chosen[0], norm_o);
    x[PARO_EVAL_INT4_REL_L2] = rel_l2(quant_chosen[1], norm_o);
    x[PARO_EVAL_INT8_REL_L2_CAPTURE] = rel_l2(quant_capture[0], norm_o);
    x[PARO_EVAL_INT4_REL_L2_CAPTURE] = rel_l2(quant_capture[1], norm_o);

    double *acc = cx->acc + (size_t)h * PARO_EVAL_N_METRICS;
    for (int m = 0; m < PARO_EVAL_N_METRICS; m++) {
        if (paro_eval_metric_is_worst(m))
            acc[m] = x[m] < acc[m] ? x[m] : acc[m];
        else
            acc[m] += x[m];
    }
    double *ab = cx->acc_bucket + ((size_t)h * cx->n_buckets + b) * 2;
    ab[0] += x[PARO_EVAL_RECALL];
    ab[1] += x[PARO_EVAL_RECALL_CAPTURE];
    for (size_t di = 0; di < cx->cfg->n_sweep; di++) {
        const size_t sc = SET_SWEEP + 2 * di, sf = sc + 1;
        double *as = cx->acc_sweep + ((size_t)h * cx->cfg->n_sweep + di) * PARO_SWEEP_N_METRICS;
        as[PARO_SWEEP_DENSITY] += *mask_density_at(cx, h, sc, b);
        as[PARO_SWEEP_DENSITY_CAPTURE] += *mask_density_at(cx, h, sf, b);
        as[PARO_SWEEP_RECALL] += sums[sc].kept / n;
        as[PARO_SWEEP_RECALL_CAPTURE] += sums[sf].kept / n;
        as[PARO_SWEEP_OUT_REL_L2] += rel_l2(sums[sc].err2, norm_o);
        as[PARO_SWEEP_OUT_REL_L2_CAPTURE] += rel_l2(sums[sf].err2, norm_o);
    }
}
