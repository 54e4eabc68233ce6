/* paro — evaluating a plan on a capture (see eval.h; calib/EVAL.md defines
 * the numbers). */
#include "eval.h"

#include <math.h>    /* exp, sqrt, nearbyint, fabs, INFINITY, NAN */
#include <stdarg.h>  /* va_list, va_start, va_end */
#include <stdio.h>   /* vsnprintf */
#include <stdlib.h>  /* malloc, calloc, free, aligned_alloc */
#include <string.h>  /* memset, memcpy, memcmp, strcmp */

#include "crc32.h"      /* paro_crc32 */
#include "eval_gpu.h"   /* paro_eval_gpu, the GPU path */
#include "eval_layer.h" /* layer_ctx, mask_sums, the row and head code */
#include "kernels.h"    /* paro_cuda_eval_buffers */
#include "mask.h"       /* paro_build_mask, paro_mask_scratch_bytes */
#include "order.h"      /* paro_order_parse, PARO_ORDER_FHW */
#include "parallel.h"   /* paro_parallel_for */
#include "stats.h"      /* paro_block_stats */
#include "tile_stats.h" /* paro_tiling, paro_tile_stats_cpu */

#define PANEL_ROWS 8    /* query rows whose scores are computed together */
/* A kept sum of exponentials below this has lost precision to underflow (the
 * kept entries are far below the row's maximum): the renormalised output is
 * then recomputed from the kept entries' own maximum. */
#define TINY_KEPT_SUM 1e-250

static const char *const metric_names[PARO_EVAL_N_METRICS] = {
    "density",          "density_capture_order",     "recall",
    "recall_capture_order", "recall_worst",          "recall_worst_capture_order",
    "out_rel_l2",       "out_cosine",                "out_rel_l2_capture_order",
    "out_cosine_capture_order", "int8_rel_l2",       "int4_rel_l2",
    "int8_rel_l2_capture_order", "int4_rel_l2_capture_order",
};

static const char *const sweep_names[PARO_SWEEP_N_METRICS] = {
    "density", "density_capture_order", "recall", "recall_capture_order",
    "out_rel_l2", "out_rel_l2_capture_order",
};

const char *paro_eval_metric_name(int metric)
{
    return metric >= 0 && metric < PARO_EVAL_N_METRICS ? metric_names[metric] : "?";
}

const char *paro_eval_sweep_metric_name(int metric)
{
    return metric >= 0 && metric < PARO_SWEEP_N_METRICS ? sweep_names[metric] : "?";
}

void paro_eval_config_default(paro_eval_config *c)
{
    memset(c, 0, sizeof *c);
    c->threads = 1;
    c->device = PARO_DEVICE_AUTO;
}

void paro_eval_result_free(paro_eval_result *r)
{
    if (!r)
        return;
    free(r->layers);
    free(r->order);
    free(r->samples);
    free(r->sample_bucket);
    free(r->bucket_samples);
    free(r->basis_samples);
    free(r->metrics);
    free(r->density);
    free(r->density_capture);
    free(r->recall);
    free(r->recall_capture);
    free(r->sweep_density);
    free(r->sweep);
    free(r);
}

static void add_warning(paro_eval_result *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void add_warning(paro_eval_result *r, const char *fmt, ...)
{
    if (r->n_warnings >= PARO_EVAL_MAX_WARNINGS)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->warnings[r->n_warnings++], sizeof r->warnings[0], fmt, ap);
    va_end(ap);
}

/* ---- summaries --------------------------------------------------------- */

void paro_eval_summary(const paro_eval_result *r, int l, double out[PARO_EVAL_N_METRICS])
{
    uint32_t l0 = l < 0 ? 0 : (uint32_t)l, l1 = l < 0 ? r->n_layers : (uint32_t)l + 1;
    double count = (double)(l1 - l0) * r->heads;
    for (int m = 0; m < PARO_EVAL_N_METRICS; m++) {
        double acc = paro_eval_metric_is_worst(m) ? INFINITY : 0.0;
        for (uint32_t li = l0; li < l1; li++)
            for (uint32_t h = 0; h < r->heads; h++) {
                double x = paro_eval_head_metrics(r, li, h)[m];
                if (paro_eval_metric_is_worst(m))
                    acc = x < acc ? x : acc;
                else
                    acc += x;
            }
        out[m] = paro_eval_metric_is_worst(m) ? acc : acc / count;
    }
}

void paro_eval_sweep_summary(const paro_eval_result *r, int l, size_t d,
                             double out[PARO_SWEEP_N_METRICS])
{
    uint32_t l0 = l < 0 ? 0 : (uint32_t)l, l1 = l < 0 ? r->n_layers : (uint32_t)l + 1;
    double count = (double)(l1 - l0) * r->heads;
    for (int m = 0; m < PARO_SWEEP_N_METRICS; m++) {
        double acc = 0.0;
        for (uint32_t li = l0; li < l1; li++)
            for (uint32_t h = 0; h < r->heads; h++)
                acc += paro_eval_head_sweep(r, li, h, d)[m];
        out[m] = acc / count;
    }
}

/* ---- validation -------------------------------------------------------- */

#define BAD(...) paro_error(ei, PARO_ERR_USAGE, NULL, PARO_NO_OFFSET, __VA_ARGS__)

static paro_err check_config(const paro_manifest *m, const paro_eval_config *c,
                             paro_errinfo *ei)
{
    if (c->threads < 1)
        return BAD("threads must be >= 1");
    if (c->n_sweep > PARO_EVAL_MAX_SWEEP)
        return BAD("at most %d densities can be swept", PARO_EVAL_MAX_SWEEP);
    for (size_t i = 0; i < c->n_sweep; i++)
        if (!(c->sweep[i] >= 0.0 && c->sweep[i] <= 1.0))
            return BAD("sweep density %g is not in [0, 1]", c->sweep[i]);
    return paro_manifest_check_samples(m, c->samples, c->n_samples, ei);
}

/* The plan must describe this capture's attention: same tokens, heads and
 * softmax, and layers the capture has. */
static paro_err check_fit(const paro_manifest *m, const paro_plan *p, int *order_code,
                          paro_errinfo *ei)
{
    if (memcmp(p->grid, m->grid, sizeof p->grid) != 0 || p->text_tokens != m->text_tokens ||
        p->text_last != m->text_last)
        return BAD("the plan does not fit the capture: plan tokens %ux%ux%u + %u text (%s), "
                   "capture %ux%ux%u + %u text (%s)",
                   p->grid[0], p->grid[1], p->grid[2], p->text_tokens,
                   p->text_last ? "last" : "first", m->grid[0], m->grid[1], m->grid[2],
                   m->text_tokens, m->text_last ? "last" : "first");
    if (p->heads != m->heads || p->head_dim != m->head_dim)
        return BAD("the plan does not fit the capture: plan %u heads of dim %u, capture %u of "
                   "dim %u",
                   p->heads, p->head_dim, m->heads, m->head_dim);
    if (fabs(p->scale - m->scale) > 1e-12 * m->scale)
        return BAD("the plan does not fit the capture: plan softmax scale %.17g, capture %.17g",
                   p->scale, m->scale);
    for (uint32_t l = 0; l < p->n_layers; l++)
        if (p->layers[l] >= m->layers)
            return BAD("the plan has layer %u; the capture has layers 0..%u", p->layers[l],
                       m->layers - 1);
    for (uint32_t o = 0; o < p->n_orders; o++) {
        order_code[o] = strcmp(p->orders[o].kind, "axes") ? -1
                                                          : paro_order_parse(p->orders[o].name);
        if (order_code[o] < 0)
            return BAD("the plan's order %u (%s '%s') is not an axis order", o,
                       p->orders[o].kind, p->orders[o].name);
    }
    return PARO_OK;
}

#undef BAD

/* Whether the plan's calibration samples are this capture's samples of the
 * same index (prompt, timestep and step agree). */
static int plan_samples_match(const paro_manifest *m, const paro_plan *p)
{
    if (p->n_samples == 0)
        return 0;
    for (size_t i = 0; i < p->n_samples; i++) {
        const paro_plan_sample *ps = &p->samples[i];
        if (ps->index >= m->n_samples)
            return 0;
        const paro_sample *s = &m->samples[ps->index];
        if (s->prompt != ps->prompt || s->timestep != ps->timestep || s->step != ps->step)
            return 0;
    }
    return 1;
}

static int plan_calibrated_on(const paro_plan *p, uint32_t index)
{
    for (size_t i = 0; i < p->n_samples; i++)
        if (p->samples[i].index == index)
            return 1;
    return 0;
}

/* Headers only, before any computation: Q and K of every sample, V of the
 * evaluation samples (the one thing a calibration capture may lack). */
static paro_err check_capture(const paro_manifest *m, const paro_plan *p,
                              const uint32_t *samples, size_t n, int need_v, paro_errinfo *ei)
{
    for (size_t si = 0; si < n; si++) {
        paro_sample_file *sf = NULL;
        paro_err rc = paro_sample_open(m, samples[si], &sf, ei);
        for (uint32_t li = 0; !rc && li < p->n_layers; li++) {
            const uint32_t layer = p->layers[li];
            rc = paro_sample_check(sf, PARO_KIND_Q, layer, ei);
            if (!rc)
                rc = paro_sample_check(sf, PARO_KIND_K, layer, ei);
            if (!rc && need_v && !paro_sample_has(sf, PARO_KIND_V, layer)) {
                char *path = paro_manifest_sample_path(m, samples[si]);
                char *name = paro_manifest_tensor_name(m, PARO_KIND_V, layer);
                rc = paro_error(ei, PARO_ERR_FORMAT, path ? path : m->samples[samples[si]].file,
                                PARO_NO_OFFSET,
                                "eval needs V, and sample %u has no tensor '%s' (layer %u): "
                                "capture V too (paro synth writes it unless --no-v)",
                                samples[si], name ? name : "v", layer);
                free(path);
                free(name);
            }
            if (!rc && need_v)
                rc = paro_sample_check(sf, PARO_KIND_V, layer, ei);
        }
        paro_sample_close(sf);
        if (rc)
            return rc;
    }
    return PARO_OK;
}

/* ---- per-thread scratch ------------------------------------------------- */

/* What one head's computation needs beyond its inputs; one per thread. */
struct worker_space {
    /* statistics phase */
    void *stats_scratch;
    double *mass, *peak; /* [n_slots][nt] */
    /* masks */
    double *mean;            /* [nt] */
    void *mask_scratch;      /* paro_mask_scratch_bytes(nt) */
    /* evaluation */
    double *kt;     /* [d][n]: K (or quantized K) transposed */
    double *panel;  /* [PANEL_ROWS][n] scores */
    double *qrows;  /* [PANEL_ROWS][d] */
    double *e;      /* [n] exponentials of one row */
    double *out;    /* [n][d] dense output */
    double *zb;     /* [2][nk] per key block: sum of exponentials */
    double *ub;     /* [2][nk][d] per key block: sum of exponential x V */
    double *qh;     /* [n][d] quantized Q */
    double *tmax;   /* [nk] largest probability per tile of a query block */
    double *vec;    /* [2][d]: one row of the sparse output, or of the two
                       quantized outputs */
    mask_sums *sums;/* [n_sets] */
};

/* ---- statistics of the basis samples ------------------------------------- */

static void stats_head(void *p, uint32_t h, int worker)
{
    layer_ctx *cx = p;
    worker_space *sp = &cx->spaces[worker];
    const size_t off = (size_t)h * cx->n * cx->d;
    paro_tile_stats_cpu(cx->t, cx->q + off, cx->k + off, cx->d, cx->scale, sp->mass, sp->peak,
                        sp->stats_scratch);
    paro_block_stats_add(cx->stats, cx->bucket, h, sp->mass, sp->peak);
}

/* ---- masks --------------------------------------------------------------- */

static double mask_share(const uint8_t *keep, size_t nt)
{
    size_t kept = 0;
    for (size_t i = 0; i < nt; i++)
        kept += keep[i];
    return (double)kept / (double)nt;
}

/* Builds a mask from the mean tile mass of (bucket, head, slot) by the plan's
 * rules at density `density`; returns 0 when the bucket has no sample. */
static int build_from_stats(const layer_ctx *cx, worker_space *sp, uint32_t b, uint32_t h,
                            int slot, double density, uint8_t *keep)
{
    const paro_block_stats *st = cx->stats;
    const uint64_t count = st->count[(size_t)b * st->heads + h];
    if (count == 0) {
        memset(keep, 0, cx->nt); /* never applied: no sample falls in the bucket */
        return 0;
    }
    const double *sum = paro_block_stats_mass_row(st, b, h, (uint32_t)slot, sp->mean);
    for (size_t i = 0; i < cx->nt; i++)
        sp->mean[i] = sum[i] / (double)count;
    paro_mask_target tg = {PARO_TARGET_DENSITY, density, cx->plan->keep_text,
                           cx->plan->keep_last};
    double got_density, got_recall;
    paro_build_mask(cx->t, sp->mean, &tg, keep, &got_density, &got_recall, sp->mask_scratch);
    return 1;
}

static void masks_head(void *p, uint32_t h, int worker)
{
    layer_ctx *cx = p;
    worker_space *sp = &cx->spaces[worker];
    const paro_plan *plan = cx->plan;
    const paro_tiling *t = cx->t;
    const int chosen = cx->slot_of_head[h];
    for (uint32_t b = 0; b < cx->n_buckets; b++) {
        uint8_t *keep = mask_at(cx, h, SET_PLAN, b);
        for (uint32_t a = 0; a < t->nq; a++)
            for (uint32_t kb = 0; kb < t->nk; kb++)
                keep[(size_t)a * t->nk + kb] =
                    (uint8_t)paro_plan_mask_get(plan, cx->li, b, h, a, kb);
        const double plan_density = mask_share(keep, cx->nt);
        *mask_density_at(cx, h, SET_PLAN, b) = plan_density;

        /* A head whose order is capture order is its own baseline. */
        uint8_t *base = mask_at(cx, h, SET_CAPTURE, b);
        int built = 1;
        if (chosen == cx->capture_slot)
            memcpy(base, keep, cx->nt);
        else
            built = build_from_stats(cx, sp, b, h, cx->capture_slot, plan_density, base);
        *mask_density_at(cx, h, SET_CAPTURE, b) = built ? mask_share(base, cx->nt) : NAN;

        /* Buckets the plan keeps dense (--dense-until) stay dense. */
        const int dense = (double)(b + 1) / (double)cx->n_buckets <= plan->dense_until;
        for (size_t di = 0; di < cx->cfg->n_sweep; di++)
            for (size_t side = 0; side < 2; side++) {
                size_t set = SET_SWEEP + 2 * di + side;
                uint8_t *sk = mask_at(cx, h, set, b);
                int ok = 1;
                if (dense)
                    memset(sk, 1, cx->nt);
                else
                    ok = build_from_stats(cx, sp, b, h, side == 0 ? chosen : cx->capture_slot,
                                          cx->cfg->sweep[di], sk);
                *mask_density_at(cx, h, set, b) = ok ? mask_share(sk, cx->nt) : NAN;
            }
    }
}

/* ---- one head on one evaluation sample ---------------------------------- */

/* s[r][j] = sum over c of q[r][c] * kt[c][j], c in increasing order (the
 * same sums as tile_stats.c; the loop over j vectorises without
 * reassociating). */
static void panel_scores(const double *qrows, size_t rows, const double *kt, size_t n,
                         size_t d, double *panel)
{
    for (size_t r = 0; r < rows; r++) {
        double *s = panel + r * n;
        const double *qi = qrows + r * d;
        const double q0 = qi[0];
        for (size_t j = 0; j < n; j++)
            s[j] = q0 * kt[j];
        for (size_t c = 1; c < d; c++) {
            const double qc = qi[c];
            const double *kc = kt + c * n;
            for (size_t j = 0; j < n; j++)
                s[j] += qc * kc[j];
        }
    }
}

/* Per key block of an order: the sum of the row's exponentials and of
 * exponential x V. */
static void block_sums(const paro_tiling *t, const uint32_t *perm, const double *e,
                       const float *v, size_t d, double *zb, double *ub)
{
    for (uint32_t b = 0; b < t->nk; b++) {
        size_t lo, hi;
        paro_eval_key_block_range(t, b, &lo, &hi);
        double z = 0.0;
        double *u = ub + (size_t)b * d;
        memset(u, 0, d * sizeof *u);
        for (size_t p = lo; p < hi; p++) {
            const uint32_t j = perm[p];
            const double w = e[j];
            const float *vj = v + (size_t)j * d;
            z += w;
            for (size_t c = 0; c < d; c++)
                u[c] += w * vj[c];
        }
        zb[b] = z;
    }
}

typedef struct head_view {
    const paro_tiling *t;
    size_t n, d;
    double scale;
    const float *q, *k, *v; /* [n][d] of this head */
    int slot[2];            /* 0: capture order, 1: chosen order */
    int n_u;                /* 1 when both are the same order, else 2 */
    const uint8_t *const *keep; /* [n_sets]: mask of the sample's bucket */
    size_t n_sets;
} head_view;

/* Dense output (into sp->out) and, for every mask, recall and sparse-output
 * sums; returns the squared norm of the dense output. */
static double exact_pass(const head_view *hv, worker_space *sp)
{
    const paro_tiling *t = hv->t;
    const size_t n = hv->n, d = hv->d, nk = t->nk;
    double *kt = sp->kt, *om = sp->vec;
    for (size_t j = 0; j < n; j++)
        for (size_t c = 0; c < d; c++)
            kt[c * n + j] = hv->k[j * d + c];
    memset(sp->sums, 0, hv->n_sets * sizeof *sp->sums);
    double norm_o = 0.0;
    for (size_t i0 = 0; i0 < n; i0 += PANEL_ROWS) {
        const size_t rows = n - i0 < PANEL_ROWS ? n - i0 : PANEL_ROWS;
        for (size_t r = 0; r < rows; r++)
            for (size_t c = 0; c < d; c++)
                sp->qrows[r * d + c] = hv->q[(i0 + r) * d + c];
        panel_scores(sp->qrows, rows, kt, n, d, sp->panel);
        for (size_t r = 0; r < rows; r++) {
            const size_t i = i0 + r;
            const double *s = sp->panel + r * n;
            const double z = paro_row_exponentials(s, n, hv->scale, sp->e);
            for (int u = 0; u < hv->n_u; u++)
                block_sums(t, t->perm[hv->slot[u]], sp->e, hv->v, d, sp->zb + u * nk,
                           sp->ub + (size_t)u * nk * d);
            /* The dense output from capture order's blocks, which run over
             * the keys in their order. */
            double *o = sp->out + i * d;
            for (size_t c = 0; c < d; c++) {
                double acc = 0.0;
                for (size_t b = 0; b < nk; b++)
                    acc += sp->ub[b * d + c];
                o[c] = acc / z;
                norm_o += o[c] * o[c];
            }
            for (size_t m = 0; m < hv->n_sets; m++) {
                const int u = hv->n_u == 1 ? 0 : SET_IS_CHOSEN(m);
                const int slot = hv->slot[u];
                const uint8_t *row = hv->keep[m] + (size_t)t->qblock[slot][i] * nk;
                const double *zb = sp->zb + u * nk, *ub = sp->ub + (size_t)u * nk * d;
                double zm = 0.0;
                for (size_t b = 0; b < nk; b++)
                    if (row[b])
                        zm += zb[b];
                mask_sums *ms = &sp->sums[m];
                ms->kept += zm / z;
                if (zm >= TINY_KEPT_SUM) {
                    for (size_t c = 0; c < d; c++) {
                        double acc = 0.0;
                        for (size_t b = 0; b < nk; b++)
                            if (row[b])
                                acc += ub[b * d + c];
                        om[c] = acc / zm;
                    }
                } else {
                    paro_eval_kept_softmax_row(t, t->perm[slot], row, s, hv->scale, hv->v, d, om);
                }
                for (size_t c = 0; c < d; c++) {
                    const double diff = om[c] - o[c];
                    ms->err2 += diff * diff;
                    ms->dot += om[c] * o[c];
                    ms->norm2 += om[c] * om[c];
                }
            }
        }
    }
    return norm_o;
}

/* Symmetric quantization to the nearest multiple of step (ties to even):
 * step = block max / 127 (INT8) or / 7 (INT4). */
static double quantize(double x, double step)
{
    return step > 0.0 ? nearbyint(x / step) * step : 0.0;
}

/* Rows of x ([n][d], capture order) quantized per block of `block` positions
 * of the order perm, over the whole block x d, into xq: transposed ([d][n])
 * when `transposed`, else [n][d]. */
static void quantize_blocks(const float *x, const uint32_t *perm, size_t n, size_t d,
                            uint32_t block, int transposed, double *xq)
{
    for (size_t lo = 0; lo < n; lo += block) {
        const size_t hi = lo + block < n ? lo + block : n;
        double amax = 0.0;
        for (size_t p = lo; p < hi; p++)
            for (size_t c = 0; c < d; c++) {
                const double a = fabs((double)x[(size_t)perm[p] * d + c]);
                if (a > amax)
                    amax = a;
            }
        const double step = amax / 127.0;
        for (size_t p = lo; p < hi; p++) {
            const size_t i = perm[p];
            for (size_t c = 0; c < d; c++) {
                const double v = quantize(x[i * d + c], step);
                if (transposed)
                    xq[c * n + i] = v;
                else
                    xq[i * d + c] = v;
            }
        }
    }
}

/* The dense output with Q, K in INT8 per block and P in INT8 and INT4 per
 * tile of one order, against sp->out: squared errors into err2[0] (INT8) and
 * err2[1] (INT4). */
static void quant_pass(const head_view *hv, worker_space *sp, int slot, double err2[2])
{
    const paro_tiling *t = hv->t;
    const size_t n = hv->n, d = hv->d;
    const uint32_t *perm = t->perm[slot];
    double *o8 = sp->vec, *o4 = sp->vec + d;
    quantize_blocks(hv->q, perm, n, d, t->block_q, 0, sp->qh);
    quantize_blocks(hv->k, perm, n, d, t->block_k, 1, sp->kt);
    err2[0] = err2[1] = 0.0;
    for (uint32_t a = 0; a < t->nq; a++) {
        const size_t lo = (size_t)a * t->block_q;
        const size_t hi = lo + t->block_q < n ? lo + t->block_q : n;
        /* Pass 0 finds each tile's largest probability, pass 1 quantizes
         * with it: the scores are computed twice rather than holding the
         * block's rows. */
        for (int pass = 0; pass < 2; pass++) {
            if (pass == 0)
                for (uint32_t b = 0; b < t->nk; b++)
                    sp->tmax[b] = 0.0;
            for (size_t p0 = lo; p0 < hi; p0 += PANEL_ROWS) {
                const size_t rows = hi - p0 < PANEL_ROWS ? hi - p0 : PANEL_ROWS;
                for (size_t r = 0; r < rows; r++)
                    memcpy(sp->qrows + r * d, sp->qh + (size_t)perm[p0 + r] * d,
                           d * sizeof *sp->qrows);
                panel_scores(sp->qrows, rows, sp->kt, n, d, sp->panel);
                for (size_t r = 0; r < rows; r++) {
                    const size_t i = perm[p0 + r];
                    const double z = paro_row_exponentials(sp->panel + r * n, n, hv->scale, sp->e);
                    if (pass == 1) {
                        memset(o8, 0, d * sizeof *o8);
                        memset(o4, 0, d * sizeof *o4);
                    }
                    for (uint32_t b = 0; b < t->nk; b++) {
                        size_t klo, khi;
                        paro_eval_key_block_range(t, b, &klo, &khi);
                        if (pass == 0) {
                            double top = sp->tmax[b];
                            for (size_t p = klo; p < khi; p++) {
                                const double x = sp->e[perm[p]] / z;
                                if (x > top)
                                    top = x;
                            }
                            sp->tmax[b] = top;
                            continue;
                        }
                        const double step8 = sp->tmax[b] / 127.0, step4 = sp->tmax[b] / 7.0;
                        for (size_t p = klo; p < khi; p++) {
                            const uint32_t j = perm[p];
                            const double x = sp->e[j] / z;
                            const double x8 = quantize(x, step8), x4 = quantize(x, step4);
                            const float *vj = hv->v + (size_t)j * d;
                            for (size_t c = 0; c < d; c++) {
                                o8[c] += x8 * vj[c];
                                o4[c] += x4 * vj[c];
                            }
                        }
                    }
                    if (pass == 1) {
                        const double *o = sp->out + i * d;
                        for (size_t c = 0; c < d; c++) {
                            err2[0] += (o8[c] - o[c]) * (o8[c] - o[c]);
                            err2[1] += (o4[c] - o[c]) * (o4[c] - o[c]);
                        }
                    }
                }
            }
        }
    }
}

/* Each head is computed by one thread alone, summing over samples in
 * manifest order: the results do not depend on the thread count. */
static void eval_head(void *p, uint32_t h, int worker)
{
    layer_ctx *cx = p;
    worker_space *sp = &cx->spaces[worker];
    const size_t off = (size_t)h * cx->n * cx->d;
    const uint32_t b = cx->sample_bucket;
    const uint8_t *keep[2 + 2 * PARO_EVAL_MAX_SWEEP];
    for (size_t m = 0; m < cx->n_sets; m++)
        keep[m] = mask_at(cx, h, m, b);
    head_view hv = {.t = cx->t,
                    .n = cx->n,
                    .d = cx->d,
                    .scale = cx->scale,
                    .q = cx->q + off,
                    .k = cx->k + off,
                    .v = cx->v + off,
                    .slot = {cx->capture_slot, cx->slot_of_head[h]},
                    .n_u = cx->slot_of_head[h] == cx->capture_slot ? 1 : 2,
                    .keep = keep,
                    .n_sets = cx->n_sets};
    const double norm_o = exact_pass(&hv, sp);
    double quant_capture[2], quant_chosen[2];
    quant_pass(&hv, sp, hv.slot[0], quant_capture);
    if (hv.n_u == 2)
        quant_pass(&hv, sp, hv.slot[1], quant_chosen);
    else
        memcpy(quant_chosen, quant_capture, sizeof quant_chosen);
    paro_eval_add_head_result(cx, h, norm_o, sp->sums, quant_capture, quant_chosen);
}

/* ---- the driver ---------------------------------------------------------- */

static void free_spaces(worker_space *spaces, int threads)
{
    for (int i = 0; spaces && i < threads; i++) {
        worker_space *s = &spaces[i];
        free(s->stats_scratch);
        free(s->mass);
        free(s->peak);
        free(s->mean);
        free(s->mask_scratch);
        free(s->kt);
        free(s->panel);
        free(s->qrows);
        free(s->e);
        free(s->out);
        free(s->zb);
        free(s->ub);
        free(s->qh);
        free(s->tmax);
        free(s->vec);
        free(s->sums);
    }
    free(spaces);
}

static paro_err alloc_spaces(worker_space **out, int threads, const paro_tiling *t, size_t d,
                             size_t n_sets, paro_errinfo *ei)
{
    const size_t n = t->n_tokens, nt = paro_tiling_tiles(t), nk = t->nk;
    worker_space *spaces = calloc((size_t)threads, sizeof *spaces);
    if (!spaces)
        return paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory");
    const size_t stats_bytes = (paro_tile_stats_scratch_bytes(t, (uint32_t)d) + 63) / 64 * 64;
    int ok = 1;
    for (int i = 0; i < threads; i++) {
        worker_space *s = &spaces[i];
        s->stats_scratch = aligned_alloc(64, stats_bytes);
        s->mass = malloc((size_t)t->n_slots * nt * sizeof(double));
        s->peak = malloc((size_t)t->n_slots * nt * sizeof(double));
        s->mean = malloc(nt * sizeof(double));
        s->mask_scratch = malloc(paro_mask_scratch_bytes(nt));
        s->kt = malloc(d * n * sizeof(double));
        s->panel = malloc(PANEL_ROWS * n * sizeof(double));
        s->qrows = malloc(PANEL_ROWS * d * sizeof(double));
        s->e = malloc(n * sizeof(double));
        s->out = malloc(n * d * sizeof(double));
        s->zb = malloc(2 * nk * sizeof(double));
        s->ub = malloc(2 * nk * d * sizeof(double));
        s->qh = malloc(n * d * sizeof(double));
        s->tmax = malloc(nk * sizeof(double));
        s->vec = malloc(2 * d * sizeof(double));
        s->sums = malloc(n_sets * sizeof(mask_sums));
        ok = ok && s->stats_scratch && s->mass && s->peak && s->mean && s->mask_scratch &&
             s->kt && s->panel && s->qrows && s->e && s->out && s->zb && s->ub && s->qh &&
             s->tmax && s->vec && s->sums;
    }
    if (!ok) {
        free_spaces(spaces, threads);
        return paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET,
                          "out of memory for worker scratch");
    }
    *out = spaces;
    return PARO_OK;
}

/* The result's arrays, sized from its counts. */
static paro_err alloc_result(paro_eval_result *r, paro_errinfo *ei)
{
    const size_t lh = (size_t)r->n_layers * r->heads;
    const size_t lbh = lh * r->n_buckets;
    r->order = calloc(lh, 1);
    r->metrics = calloc(lh * PARO_EVAL_N_METRICS, sizeof *r->metrics);
    r->density = calloc(lbh, sizeof *r->density);
    r->density_capture = calloc(lbh, sizeof *r->density_capture);
    r->recall = calloc(lbh, sizeof *r->recall);
    r->recall_capture = calloc(lbh, sizeof *r->recall_capture);
    r->sweep_density = calloc(r->n_sweep + 1, sizeof *r->sweep_density);
    r->sweep = calloc(lh * r->n_sweep + 1, PARO_SWEEP_N_METRICS * sizeof *r->sweep);
    r->bucket_samples = calloc(r->n_buckets, sizeof *r->bucket_samples);
    r->layers = calloc(r->n_layers, sizeof *r->layers);
    if (!r->order || !r->metrics || !r->density || !r->density_capture || !r->recall ||
        !r->recall_capture || !r->sweep_density || !r->sweep || !r->bucket_samples ||
        !r->layers)
        return paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory");
    return PARO_OK;
}

/* Chooses the evaluation samples and the basis of the baseline masks. */
static paro_err pick_samples(const paro_manifest *m, const paro_plan *plan,
                             const paro_eval_config *cfg, paro_eval_result *r,
                             uint32_t **basis_bucket, paro_errinfo *ei)
{
    const int same_capture = plan_samples_match(m, plan);
    size_t n = 0;
    r->samples = malloc((m->n_samples + 1) * sizeof *r->samples);
    r->sample_bucket = malloc((m->n_samples + 1) * sizeof *r->sample_bucket);
    r->basis_samples = malloc((m->n_samples + plan->n_samples + 1) * sizeof *r->basis_samples);
    *basis_bucket = malloc((m->n_samples + plan->n_samples + 1) * sizeof **basis_bucket);
    if (!r->samples || !r->sample_bucket || !r->basis_samples || !*basis_bucket)
        return paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory");
    if (cfg->samples) {
        memcpy(r->samples, cfg->samples, cfg->n_samples * sizeof *r->samples);
        n = cfg->n_samples;
    } else {
        for (size_t i = 0; i < m->n_samples; i++)
            if (!same_capture || !plan_calibrated_on(plan, (uint32_t)i))
                r->samples[n++] = (uint32_t)i;
        if (n == 0) {
            for (size_t i = 0; i < m->n_samples; i++)
                r->samples[n++] = (uint32_t)i;
            add_warning(r,
                        "the plan was calibrated on every sample of the capture; evaluating "
                        "on all %zu of them, which are not held out",
                        n);
        }
    }
    r->n_samples = n;
    r->held_out = 1;
    for (size_t i = 0; i < n; i++) {
        r->sample_bucket[i] =
            paro_bucket_of(paro_manifest_progress(m, r->samples[i]), r->n_buckets);
        r->bucket_samples[r->sample_bucket[i]]++;
        if (same_capture && plan_calibrated_on(plan, r->samples[i]))
            r->held_out = 0;
    }

    /* The baseline comes from the calibration samples when they are in this
     * capture and cover every bucket that is evaluated. */
    int covered = same_capture;
    for (uint32_t b = 0; covered && b < r->n_buckets; b++) {
        int has = 0;
        for (size_t i = 0; i < plan->n_samples; i++)
            has |= plan->samples[i].bucket == b;
        if (r->bucket_samples[b] && !has) {
            covered = 0;
            add_warning(r,
                        "timestep bucket %u has evaluation samples but none of the plan's "
                        "calibration samples; capture-order masks are built from the "
                        "evaluation samples",
                        b);
        }
    }
    if (covered) {
        r->basis = PARO_EVAL_BASIS_CALIBRATION;
        r->n_basis = plan->n_samples;
        for (size_t i = 0; i < plan->n_samples; i++) {
            r->basis_samples[i] = plan->samples[i].index;
            (*basis_bucket)[i] = plan->samples[i].bucket;
        }
    } else {
        if (!same_capture)
            add_warning(r,
                        "the plan's calibration samples are not samples of this capture; "
                        "every sample counts as held out, and capture-order masks are built "
                        "from the evaluation samples");
        r->basis = PARO_EVAL_BASIS_EVALUATION;
        r->n_basis = n;
        memcpy(r->basis_samples, r->samples, n * sizeof *r->samples);
        memcpy(*basis_bucket, r->sample_bucket, n * sizeof *r->sample_bucket);
    }
    return PARO_OK;
}

static paro_err read_layer(const paro_manifest *m, uint32_t sample, uint32_t layer, float *q,
                           float *k, float *v, paro_errinfo *ei)
{
    paro_sample_file *sf = NULL;
    paro_err rc = paro_sample_open(m, sample, &sf, ei);
    if (!rc)
        rc = paro_sample_read(sf, PARO_KIND_Q, layer, q, ei);
    if (!rc)
        rc = paro_sample_read(sf, PARO_KIND_K, layer, k, ei);
    if (!rc && v)
        rc = paro_sample_read(sf, PARO_KIND_V, layer, v, ei);
    paro_sample_close(sf);
    return rc;
}

static void finish_layer(const layer_ctx *cx, paro_eval_result *r)
{
    const uint32_t li = cx->li;
    const double n = (double)r->n_samples;
    for (uint32_t h = 0; h < cx->heads; h++) {
        const double *acc = cx->acc + (size_t)h * PARO_EVAL_N_METRICS;
        double *dst = r->metrics + ((size_t)li * r->heads + h) * PARO_EVAL_N_METRICS;
        for (int m = 0; m < PARO_EVAL_N_METRICS; m++)
            dst[m] = paro_eval_metric_is_worst(m) ? acc[m] : acc[m] / n;
        for (uint32_t b = 0; b < r->n_buckets; b++) {
            const size_t at = paro_eval_bucket_index(r, li, b, h);
            const double *ab = cx->acc_bucket + ((size_t)h * r->n_buckets + b) * 2;
            const double cnt = (double)r->bucket_samples[b];
            r->density[at] = *mask_density_at(cx, h, SET_PLAN, b);
            r->density_capture[at] = *mask_density_at(cx, h, SET_CAPTURE, b);
            r->recall[at] = cnt > 0 ? ab[0] / cnt : NAN;
            r->recall_capture[at] = cnt > 0 ? ab[1] / cnt : NAN;
        }
        for (size_t di = 0; di < r->n_sweep; di++) {
            const size_t at = ((size_t)h * r->n_sweep + di) * PARO_SWEEP_N_METRICS;
            double *sw = r->sweep + ((size_t)li * r->heads * r->n_sweep) * PARO_SWEEP_N_METRICS;
            for (int m = 0; m < PARO_SWEEP_N_METRICS; m++)
                sw[at + m] = cx->acc_sweep[at + m] / n;
        }
    }
}

paro_err paro_eval(const paro_manifest *m, const paro_plan *plan, const paro_eval_config *cfg,
                   paro_eval_result **out, paro_errinfo *ei)
{
    *out = NULL;
    int order_code[PARO_PLAN_MAX_ORDERS];
    paro_err rc = check_config(m, cfg, ei);
    if (!rc)
        rc = check_fit(m, plan, order_code, ei);
    if (rc)
        return rc;
    paro_eval_result *r = calloc(1, sizeof *r);
    paro_tiling tiling;
    memset(&tiling, 0, sizeof tiling);
    paro_block_stats stats;
    memset(&stats, 0, sizeof stats);
    uint32_t *basis_bucket = NULL;
    worker_space *spaces = NULL;
    float *q = NULL, *k = NULL, *v = NULL;
    int *slot_of_head = NULL;
    uint8_t *masks = NULL;
    double *mask_density = NULL, *acc = NULL, *acc_bucket = NULL, *acc_sweep = NULL;
    paro_eval_gpu gpu;
    memset(&gpu, 0, sizeof gpu);
    int use_gpu = 0;
    const size_t n_sets = 2 + 2 * cfg->n_sweep;
    int threads = cfg->threads;
    if ((uint32_t)threads > plan->heads)
        threads = (int)plan->heads;
    if (!r)
        return paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory");
    r->n_layers = plan->n_layers;
    r->heads = plan->heads;
    r->n_buckets = plan->n_buckets;
    r->n_sweep = cfg->n_sweep;
    rc = alloc_result(r, ei);
    if (!rc)
        rc = pick_samples(m, plan, cfg, r, &basis_bucket, ei);
    if (rc)
        goto done;
    memcpy(r->layers, plan->layers, plan->n_layers * sizeof *r->layers);
    for (size_t i = 0; i < cfg->n_sweep; i++)
        r->sweep_density[i] = cfg->sweep[i];

    rc = paro_tiling_init(&tiling, plan->grid, plan->text_tokens, plan->text_last,
                          plan->block_q, plan->block_k, ei);
    if (rc)
        goto done;
    const size_t n = tiling.n_tokens, d = plan->head_dim, nt = paro_tiling_tiles(&tiling);
    const int capture_slot = tiling.slot_of_order[PARO_ORDER_FHW];

    /* The baseline's statistics are needed unless every head already uses
     * capture order and nothing is swept. */
    slot_of_head = malloc((size_t)plan->heads * sizeof *slot_of_head);
    if (!slot_of_head) {
        rc = paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory");
        goto done;
    }
    int need_stats = cfg->n_sweep > 0;
    for (uint32_t li = 0; li < plan->n_layers; li++)
        for (uint32_t h = 0; h < plan->heads; h++) {
            const int code = order_code[plan->head_order[paro_plan_head_index(plan, li, h)]];
            r->order[paro_plan_head_index(plan, li, h)] = (uint8_t)code;
            need_stats |= tiling.slot_of_order[code] != capture_slot;
        }
    /* The calibration samples are read even when nothing is computed from
     * them, to check that they are the data the plan was made from. */
    const size_t n_basis_read =
        need_stats || r->basis == PARO_EVAL_BASIS_CALIBRATION ? r->n_basis : 0;

    rc = check_capture(m, plan, r->samples, r->n_samples, 1, ei);
    if (!rc)
        rc = check_capture(m, plan, r->basis_samples, n_basis_read, 0, ei);
    if (rc)
        goto done;

    /* auto: the GPU when there is one and the kernels take the shape */
    if (cfg->device != PARO_DEVICE_CPU) {
        paro_errinfo why;
        paro_errinfo_clear(&why);
        rc = paro_eval_gpu_open(&gpu, &tiling, plan, n_sets, &why);
        if (rc == PARO_OK) {
            use_gpu = 1;
        } else if (cfg->device == PARO_DEVICE_CUDA) {
            if (ei)
                *ei = why;
            goto done;
        }
        rc = PARO_OK;
    }
    r->device = use_gpu ? "cuda" : "cpu";

    const size_t per_tensor = (size_t)plan->heads * n * d;
    q = malloc(per_tensor * sizeof *q);
    k = malloc(per_tensor * sizeof *k);
    v = malloc(per_tensor * sizeof *v);
    masks = malloc((size_t)plan->heads * n_sets * plan->n_buckets * nt);
    mask_density = malloc((size_t)plan->heads * n_sets * plan->n_buckets * sizeof *mask_density);
    acc = malloc((size_t)plan->heads * PARO_EVAL_N_METRICS * sizeof *acc);
    acc_bucket = malloc((size_t)plan->heads * plan->n_buckets * 2 * sizeof *acc_bucket);
    acc_sweep = malloc(((size_t)plan->heads * cfg->n_sweep + 1) * PARO_SWEEP_N_METRICS *
                       sizeof *acc_sweep);
    if (!q || !k || !v || !masks || !mask_density || !acc || !acc_bucket || !acc_sweep) {
        rc = paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET,
                        "out of memory for one layer of one sample and its masks");
        goto done;
    }
    rc = alloc_spaces(&spaces, threads, &tiling, d, n_sets, ei);
    if (rc)
        goto done;

    layer_ctx cx = {.plan = plan,
                    .t = &tiling,
                    .cfg = cfg,
                    .spaces = spaces,
                    .heads = plan->heads,
                    .d = (uint32_t)d,
                    .n_buckets = plan->n_buckets,
                    .n = n,
                    .nt = nt,
                    .n_sets = n_sets,
                    .scale = m->scale,
                    .slot_of_head = slot_of_head,
                    .capture_slot = capture_slot,
                    .stats = &stats,
                    .masks = masks,
                    .mask_density = mask_density,
                    .q = q,
                    .k = k,
                    .v = v,
                    .acc = acc,
                    .acc_bucket = acc_bucket,
                    .acc_sweep = acc_sweep};
    paro_eval_progress prog = {0, (uint64_t)plan->n_layers * (n_basis_read + r->n_samples), 0,
                               0};
    int crc_warned = 0;
    for (uint32_t li = 0; li < plan->n_layers; li++) {
        const uint32_t layer = plan->layers[li];
        cx.li = li;
        for (uint32_t h = 0; h < plan->heads; h++)
            slot_of_head[h] = tiling.slot_of_order[r->order[paro_plan_head_index(plan, li, h)]];
        rc = paro_block_stats_init(&stats, plan->heads, plan->n_buckets,
                                   (uint32_t)tiling.n_slots, tiling.nq, tiling.nk, ei);
        if (rc)
            goto done;

        /* Statistics of the basis samples, for the baseline and sweep masks. */
        uint32_t crc = 0;
        for (size_t si = 0; si < n_basis_read; si++) {
            if (cfg->stop && *cfg->stop) {
                rc = paro_error(ei, PARO_ERR_INTERRUPTED, NULL, PARO_NO_OFFSET, "interrupted");
                goto done;
            }
            float *bq = q, *bk = k;
            if (use_gpu && need_stats) {
                if (si == 0 && (rc = gpu.stats.layer_begin(&gpu.stats, &stats, ei)))
                    goto done;
                if ((rc = gpu.stats.buffers(&gpu.stats, &bq, &bk, ei)))
                    goto done;
            }
            rc = read_layer(m, r->basis_samples[si], layer, bq, bk, NULL, ei);
            if (rc)
                goto done;
            crc = paro_crc32(crc, bq, per_tensor * sizeof *bq);
            crc = paro_crc32(crc, bk, per_tensor * sizeof *bk);
            cx.bucket = basis_bucket[si];
            if (use_gpu && need_stats) {
                if ((rc = gpu.stats.submit(&gpu.stats, cx.bucket, ei)))
                    goto done;
                for (uint32_t h = 0; h < plan->heads; h++)
                    stats.count[(size_t)cx.bucket * stats.heads + h]++;
            } else if (need_stats) {
                paro_parallel_for(threads, plan->heads, stats_head, &cx);
            }
            prog.done++;
            prog.layer = layer;
            prog.sample = r->basis_samples[si];
            if (cfg->progress)
                cfg->progress(cfg->progress_user, &prog);
        }
        if (use_gpu && need_stats && n_basis_read &&
            ((rc = gpu.stats.seal(&gpu.stats, ei)) || (rc = gpu.stats.collect(&gpu.stats, ei))))
            goto done;
        if (n_basis_read && r->basis == PARO_EVAL_BASIS_CALIBRATION && !crc_warned &&
            crc != plan->layer_crc32[li]) {
            crc_warned = 1;
            add_warning(r,
                        "layer %u of this capture differs from the one the plan was "
                        "calibrated on (crc32 %08x, the plan records %08x)",
                        layer, (unsigned)crc, (unsigned)plan->layer_crc32[li]);
        }
        paro_parallel_for(threads, plan->heads, masks_head, &cx);

        for (size_t i = 0; i < (size_t)plan->heads * PARO_EVAL_N_METRICS; i++)
            acc[i] = paro_eval_metric_is_worst((int)(i % PARO_EVAL_N_METRICS)) ? INFINITY : 0.0;
        memset(acc_bucket, 0, (size_t)plan->heads * plan->n_buckets * 2 * sizeof *acc_bucket);
        memset(acc_sweep, 0,
               (size_t)plan->heads * cfg->n_sweep * PARO_SWEEP_N_METRICS * sizeof *acc_sweep);
        for (size_t si = 0; si < r->n_samples; si++) {
            if (cfg->stop && *cfg->stop) {
                rc = paro_error(ei, PARO_ERR_INTERRUPTED, NULL, PARO_NO_OFFSET, "interrupted");
                goto done;
            }
            if (use_gpu && (rc = paro_cuda_eval_buffers(gpu.ev, (float **)&cx.q, (float **)&cx.k,
                                                        (float **)&cx.v, ei)))
                goto done;
            rc = read_layer(m, r->samples[si], layer, (float *)cx.q, (float *)cx.k,
                            (float *)cx.v, ei);
            if (rc)
                goto done;
            cx.sample_bucket = r->sample_bucket[si];
            if (use_gpu)
                rc = paro_eval_gpu_sample(&cx, &gpu, ei);
            else
                paro_parallel_for(threads, plan->heads, eval_head, &cx);
            if (rc)
                goto done;
            prog.done++;
            prog.layer = layer;
            prog.sample = r->samples[si];
            if (cfg->progress)
                cfg->progress(cfg->progress_user, &prog);
        }
        finish_layer(&cx, r);
        paro_block_stats_free(&stats);
    }
    *out = r;
    r = NULL;

done:
    paro_eval_gpu_close(&gpu);
    paro_block_stats_free(&stats);
    free_spaces(spaces, threads);
    free(q);
    free(k);
    free(v);
    free(masks);
    free(mask_density);
    free(acc);
    free(acc_bucket);
    free(acc_sweep);
    free(slot_of_head);
    free(basis_bucket);
    paro_tiling_free(&tiling);
    paro_eval_result_free(r);
    return rc;
}
