/* paro tests — calib/eval: every number of `paro eval` against a brute-force
 * fp64 computation that holds the full N x N maps (fine for tiny captures),
 * written straight from calib/EVAL.md; and the properties a correct
 * evaluation must have. */
#include <check.h>  /* START_TEST, ck_assert_* */
#include <math.h>   /* exp, sqrt, fabs, fmin, fmax, nearbyint, isnan, isfinite, INFINITY */
#include <stdio.h>  /* snprintf */
#include <stdlib.h> /* malloc, calloc, free */
#include <string.h> /* memcmp, memset, strstr */

#include "calibrate.h"   /* paro_calibrate, paro_bucket_of */
#include "eval.h"        /* paro_eval */
#include "eval_picture.h" /* paro_eval_sweep_picture */
#include "manifest.h"    /* paro_manifest_load, paro_sample_read */
#include "mask.h"        /* paro_build_mask, paro_mask_scratch_bytes */
#include "order.h"       /* paro_order_positions */
#include "safetensors.h" /* paro_st_write */
#include "synth.h"       /* paro_synth_layer */
#include "testutil.h"    /* tu_captured, tu_path, tu_write_file */
#include "tile_stats.h"  /* paro_tiling */

/* ---- tiny captures ------------------------------------------------------ */

static paro_eval_result *evaluate(const paro_manifest *m, const paro_plan *p,
                                  const paro_eval_config *cfg)
{
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_eval_result *r = NULL;
    ck_assert_msg(paro_eval(m, p, cfg, &r, &ei) == PARO_OK, "%s", ei.msg);
    return r;
}

/* ---- brute force ---------------------------------------------------------- */

/* The tensors of one layer of one sample as fp64, [heads][n][d]. */
typedef struct layer_data {
    double *q, *k, *v;
} layer_data;

static layer_data read_layer(const paro_manifest *m, uint32_t sample, uint32_t layer, int with_v)
{
    const size_t per = (size_t)m->heads * m->n_tokens * m->head_dim;
    float *f = malloc(per * sizeof *f);
    layer_data ld = {malloc(per * sizeof(double)), malloc(per * sizeof(double)),
                     with_v ? malloc(per * sizeof(double)) : NULL};
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_sample_file *sf = NULL;
    ck_assert_int_eq(paro_sample_open(m, sample, &sf, &ei), PARO_OK);
    double *dst[3] = {ld.q, ld.k, ld.v};
    for (int kind = 0; kind < (with_v ? 3 : 2); kind++) {
        ck_assert_int_eq(paro_sample_read(sf, (paro_kind)kind, layer, f, &ei), PARO_OK);
        for (size_t i = 0; i < per; i++)
            dst[kind][i] = f[i];
    }
    paro_sample_close(sf);
    free(f);
    return ld;
}

static void free_layer(layer_data *ld)
{
    free(ld->q);
    free(ld->k);
    free(ld->v);
}

/* Raw scores s[i][j] = sum_c q[i][c] k[j][c] and probabilities
 * p = exp(scale (s - max_j s)) / sum_j, the sums in index order. */
static void attention(const double *q, const double *k, size_t n, size_t d, double scale,
                      double *s, double *p)
{
    for (size_t i = 0; i < n; i++) {
        double mx = -INFINITY, z = 0.0;
        for (size_t j = 0; j < n; j++) {
            double acc = 0.0;
            for (size_t c = 0; c < d; c++)
                acc += q[i * d + c] * k[j * d + c];
            s[i * n + j] = acc;
            if (acc > mx)
                mx = acc;
        }
        for (size_t j = 0; j < n; j++) {
            p[i * n + j] = exp(scale * (s[i * n + j] - mx));
            z += p[i * n + j];
        }
        for (size_t j = 0; j < n; j++)
            p[i * n + j] /= z;
    }
}

/* Symmetric INT8 per group of tokens (pos / block), over the group x d. */
static void quantize_groups(const double *x, const uint32_t *pos, size_t n, size_t d,
                            uint32_t block, double *out)
{
    const size_t groups = (n + block - 1) / block;
    double *amax = calloc(groups, sizeof *amax);
    for (size_t i = 0; i < n; i++)
        for (size_t c = 0; c < d; c++)
            if (fabs(x[i * d + c]) > amax[pos[i] / block])
                amax[pos[i] / block] = fabs(x[i * d + c]);
    for (size_t i = 0; i < n; i++) {
        double step = amax[pos[i] / block] / 127.0;
        for (size_t c = 0; c < d; c++)
            out[i * d + c] = step > 0 ? nearbyint(x[i * d + c] / step) * step : 0.0;
    }
    free(amax);
}

static double rel(double err2, double norm2)
{
    return err2 == 0 ? 0 : sqrt(err2 / norm2);
}

/* Recall and sparse output of one mask (keep over tiles of the order with
 * positions pos) on one head of one sample: kept share of the mass, relative
 * L2 and cosine against the dense output o. */
static void sparse_ref(const double *s, const double *p, const double *v, const double *o,
                       size_t n, size_t d, double scale, const uint32_t *pos, uint32_t bq,
                       uint32_t bk, uint32_t nk, const uint8_t *keep, double *recall,
                       double *rel_l2, double *cos)
{
    double kept = 0, err2 = 0, dot = 0, nn = 0, no = 0;
    double *row = malloc(d * sizeof *row);
    for (size_t i = 0; i < n; i++) {
        double kmax = -INFINITY, z = 0;
        for (size_t j = 0; j < n; j++)
            if (keep[(size_t)(pos[i] / bq) * nk + pos[j] / bk]) {
                kept += p[i * n + j];
                if (s[i * n + j] > kmax)
                    kmax = s[i * n + j];
            }
        memset(row, 0, d * sizeof *row);
        for (size_t j = 0; j < n; j++)
            if (keep[(size_t)(pos[i] / bq) * nk + pos[j] / bk]) {
                double w = exp(scale * (s[i * n + j] - kmax));
                z += w;
                for (size_t c = 0; c < d; c++)
                    row[c] += w * v[j * d + c];
            }
        for (size_t c = 0; c < d; c++) {
            row[c] = z > 0 ? row[c] / z : 0.0; /* a row that keeps nothing outputs 0 */
            err2 += (row[c] - o[i * d + c]) * (row[c] - o[i * d + c]);
            dot += row[c] * o[i * d + c];
            nn += row[c] * row[c];
            no += o[i * d + c] * o[i * d + c];
        }
    }
    free(row);
    *recall = kept / (double)n;
    *rel_l2 = rel(err2, no);
    *cos = dot / sqrt(nn * no);
}

/* INT8 Q, K per block and INT8 / INT4 P per tile of the order with positions
 * pos; relative L2 of the outputs against o. */
static void quant_ref(const double *q, const double *k, const double *v, const double *o,
                      size_t n, size_t d, double scale, const uint32_t *pos, uint32_t bq,
                      uint32_t bk, uint32_t nq, uint32_t nk, double *rel8, double *rel4)
{
    double *qq = malloc(n * d * sizeof *qq), *kq = malloc(n * d * sizeof *kq);
    double *s = malloc(n * n * sizeof *s), *p = malloc(n * n * sizeof *p);
    double *tmax = calloc((size_t)nq * nk, sizeof *tmax);
    quantize_groups(q, pos, n, d, bq, qq);
    quantize_groups(k, pos, n, d, bk, kq);
    attention(qq, kq, n, d, scale, s, p);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            size_t tile = (size_t)(pos[i] / bq) * nk + pos[j] / bk;
            if (p[i * n + j] > tmax[tile])
                tmax[tile] = p[i * n + j];
        }
    double e8 = 0, e4 = 0, no = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t c = 0; c < d; c++) {
            double o8 = 0, o4 = 0;
            for (size_t j = 0; j < n; j++) {
                double t = tmax[(size_t)(pos[i] / bq) * nk + pos[j] / bk];
                double x = p[i * n + j];
                if (t > 0) { /* an all-zero tile stays zero */
                    o8 += nearbyint(x / (t / 127.0)) * (t / 127.0) * v[j * d + c];
                    o4 += nearbyint(x / (t / 7.0)) * (t / 7.0) * v[j * d + c];
                }
            }
            e8 += (o8 - o[i * d + c]) * (o8 - o[i * d + c]);
            e4 += (o4 - o[i * d + c]) * (o4 - o[i * d + c]);
            no += o[i * d + c] * o[i * d + c];
        }
    *rel8 = rel(e8, no);
    *rel4 = rel(e4, no);
    free(qq);
    free(kq);
    free(s);
    free(p);
    free(tmax);
}

/* Mean tile mass of a head in the order with positions pos over the samples
 * of `samples` that fall in `bucket` (returns 0 when none does). */
static int mean_tile_mass(const paro_manifest *m, uint32_t layer, uint32_t head,
                          const uint32_t *samples, const uint32_t *buckets, size_t n_samples,
                          uint32_t bucket, const uint32_t *pos, uint32_t bq, uint32_t bk,
                          uint32_t nk, size_t nt, double *mass)
{
    const size_t n = m->n_tokens, d = m->head_dim;
    double *s = malloc(n * n * sizeof *s), *p = malloc(n * n * sizeof *p);
    memset(mass, 0, nt * sizeof *mass);
    int count = 0;
    for (size_t si = 0; si < n_samples; si++) {
        if (buckets[si] != bucket)
            continue;
        layer_data ld = read_layer(m, samples[si], layer, 0);
        attention(ld.q + head * n * d, ld.k + head * n * d, n, d, m->scale, s, p);
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < n; j++)
                mass[(size_t)(pos[i] / bq) * nk + pos[j] / bk] += p[i * n + j];
        count++;
        free_layer(&ld);
    }
    for (size_t t = 0; t < nt; t++)
        mass[t] /= count ? count : 1;
    free(s);
    free(p);
    return count;
}

static double share(const uint8_t *keep, size_t nt)
{
    size_t k = 0;
    for (size_t i = 0; i < nt; i++)
        k += keep[i];
    return (double)k / (double)nt;
}

static void assert_close(double got, double want, const char *what, uint32_t layer,
                         uint32_t head)
{
    if (isnan(want)) {
        ck_assert_msg(isnan(got), "layer %u head %u %s: %.17g, expected NaN", layer, head, what,
                      got);
        return;
    }
    ck_assert_msg(fabs(got - want) <= 1e-9 * fmax(fabs(got), fabs(want)) + 1e-12,
                  "layer %u head %u %s: %.17g, brute force %.17g", layer, head, what, got, want);
}

/* Recomputes every number of r from the definitions, with full maps. */
static void brute_check(const paro_manifest *m, const paro_plan *plan,
                        const paro_eval_config *cfg, const paro_eval_result *r)
{
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_tiling t;
    ck_assert_int_eq(paro_tiling_init(&t, plan->grid, plan->text_tokens, plan->text_last,
                                      plan->block_q, plan->block_k, &ei),
                     PARO_OK);
    const size_t n = m->n_tokens, d = m->head_dim, nt = paro_tiling_tiles(&t);
    const uint32_t bq = plan->block_q, bk = plan->block_k, nq = t.nq, nk = t.nk, K = plan->n_buckets;
    uint32_t *pos_c = malloc(n * sizeof *pos_c), *pos_f = malloc(n * sizeof *pos_f);
    double *mass = malloc(nt * sizeof *mass);
    uint8_t *plan_keep = malloc(K * nt), *base_keep = malloc(K * nt);
    const size_t n_sets = 2 * cfg->n_sweep;
    uint8_t *sweep_keep = malloc((n_sets + 1) * K * nt);
    double *s = malloc(n * n * sizeof *s), *p = malloc(n * n * sizeof *p);
    double *o = malloc(n * d * sizeof *o);
    uint32_t *basis_bucket = malloc((r->n_basis + 1) * sizeof *basis_bucket);
    paro_order_positions(PARO_ORDER_FHW, plan->grid, plan->text_tokens, plan->text_last, pos_f);
    for (size_t i = 0; i < r->n_basis; i++) {
        basis_bucket[i] = paro_bucket_of(paro_manifest_progress(m, r->basis_samples[i]), K);
        if (r->basis == PARO_EVAL_BASIS_CALIBRATION) {
            ck_assert_uint_eq(r->basis_samples[i], plan->samples[i].index);
            basis_bucket[i] = plan->samples[i].bucket;
        }
    }

    for (uint32_t li = 0; li < plan->n_layers; li++) {
        const uint32_t layer = plan->layers[li];
        for (uint32_t h = 0; h < plan->heads; h++) {
            const int code = paro_order_parse(
                plan->orders[plan->head_order[paro_plan_head_index(plan, li, h)]].name);
            ck_assert_int_eq(r->order[li * plan->heads + h], code);
            paro_order_positions(code, plan->grid, plan->text_tokens, plan->text_last, pos_c);
            const int same = t.slot_of_order[code] == t.slot_of_order[PARO_ORDER_FHW];
            /* masks: the plan's, the baseline, the sweep's */
            for (uint32_t b = 0; b < K; b++) {
                uint8_t *pk = plan_keep + b * nt, *fk = base_keep + b * nt;
                for (uint32_t a = 0; a < nq; a++)
                    for (uint32_t kb = 0; kb < nk; kb++)
                        pk[a * nk + kb] = (uint8_t)paro_plan_mask_get(plan, li, b, h, a, kb);
                double dens = share(pk, nt), got_d, got_r;
                void *scratch = malloc(paro_mask_scratch_bytes(nt));
                if (same) {
                    memcpy(fk, pk, nt);
                } else {
                    int cnt = mean_tile_mass(m, layer, h, r->basis_samples, basis_bucket,
                                             r->n_basis, b, pos_f, bq, bk, nk, nt, mass);
                    ck_assert_int_gt(cnt, 0);
                    paro_mask_target tg = {PARO_TARGET_DENSITY, dens, plan->keep_text,
                                           plan->keep_last};
                    paro_build_mask(&t, mass, &tg, fk, &got_d, &got_r, scratch);
                }
                assert_close(r->density[paro_eval_bucket_index(r, li, b, h)], dens, "density",
                             layer, h);
                assert_close(r->density_capture[paro_eval_bucket_index(r, li, b, h)],
                             share(fk, nt), "density_capture_order", layer, h);
                const int dense = (double)(b + 1) / K <= plan->dense_until;
                for (size_t di = 0; di < cfg->n_sweep; di++)
                    for (int side = 0; side < 2; side++) {
                        uint8_t *sk = sweep_keep + ((2 * di + side) * K + b) * nt;
                        if (dense) {
                            memset(sk, 1, nt);
                            continue;
                        }
                        mean_tile_mass(m, layer, h, r->basis_samples, basis_bucket, r->n_basis,
                                       b, side == 0 ? pos_c : pos_f, bq, bk, nk, nt, mass);
                        paro_mask_target tg = {PARO_TARGET_DENSITY, cfg->sweep[di],
                                               plan->keep_text, plan->keep_last};
                        paro_build_mask(&t, mass, &tg, sk, &got_d, &got_r, scratch);
                    }
                free(scratch);
            }

            /* every evaluation sample */
            double sum[PARO_EVAL_N_METRICS] = {0};
            sum[PARO_EVAL_RECALL_WORST] = sum[PARO_EVAL_RECALL_WORST_CAPTURE] = INFINITY;
            double *bsum = calloc(2 * K, sizeof *bsum);
            double *ssum = calloc(n_sets / 2 * PARO_SWEEP_N_METRICS + 1, sizeof *ssum);
            for (size_t si = 0; si < r->n_samples; si++) {
                const uint32_t b = paro_bucket_of(paro_manifest_progress(m, r->samples[si]), K);
                ck_assert_uint_eq(r->sample_bucket[si], b);
                layer_data ld = read_layer(m, r->samples[si], layer, 1);
                const double *qh = ld.q + h * n * d, *kh = ld.k + h * n * d,
                             *vh = ld.v + h * n * d;
                attention(qh, kh, n, d, m->scale, s, p);
                for (size_t i = 0; i < n; i++)
                    for (size_t c = 0; c < d; c++) {
                        double acc = 0;
                        for (size_t j = 0; j < n; j++)
                            acc += p[i * n + j] * vh[j * d + c];
                        o[i * d + c] = acc;
                    }
                double rc, lc, cc, rf, lf, cf, q8c, q4c, q8f, q4f;
                sparse_ref(s, p, vh, o, n, d, m->scale, pos_c, bq, bk, nk, plan_keep + b * nt,
                           &rc, &lc, &cc);
                sparse_ref(s, p, vh, o, n, d, m->scale, pos_f, bq, bk, nk, base_keep + b * nt,
                           &rf, &lf, &cf);
                quant_ref(qh, kh, vh, o, n, d, m->scale, pos_c, bq, bk, nq, nk, &q8c, &q4c);
                quant_ref(qh, kh, vh, o, n, d, m->scale, pos_f, bq, bk, nq, nk, &q8f, &q4f);
                sum[PARO_EVAL_DENSITY] += share(plan_keep + b * nt, nt);
                sum[PARO_EVAL_DENSITY_CAPTURE] += share(base_keep + b * nt, nt);
                sum[PARO_EVAL_RECALL] += rc;
                sum[PARO_EVAL_RECALL_CAPTURE] += rf;
                sum[PARO_EVAL_RECALL_WORST] = fmin(sum[PARO_EVAL_RECALL_WORST], rc);
                sum[PARO_EVAL_RECALL_WORST_CAPTURE] = fmin(sum[PARO_EVAL_RECALL_WORST_CAPTURE], rf);
                sum[PARO_EVAL_OUT_REL_L2] += lc;
                sum[PARO_EVAL_OUT_COSINE] += cc;
                sum[PARO_EVAL_OUT_REL_L2_CAPTURE] += lf;
                sum[PARO_EVAL_OUT_COSINE_CAPTURE] += cf;
                sum[PARO_EVAL_INT8_REL_L2] += q8c;
                sum[PARO_EVAL_INT4_REL_L2] += q4c;
                sum[PARO_EVAL_INT8_REL_L2_CAPTURE] += q8f;
                sum[PARO_EVAL_INT4_REL_L2_CAPTURE] += q4f;
                bsum[2 * b] += rc;
                bsum[2 * b + 1] += rf;
                for (size_t di = 0; di < cfg->n_sweep; di++) {
                    double *x = ssum + di * PARO_SWEEP_N_METRICS;
                    const uint8_t *ck = sweep_keep + ((2 * di) * K + b) * nt;
                    const uint8_t *fk = sweep_keep + ((2 * di + 1) * K + b) * nt;
                    double rr, ll, co;
                    sparse_ref(s, p, vh, o, n, d, m->scale, pos_c, bq, bk, nk, ck, &rr, &ll, &co);
                    x[PARO_SWEEP_DENSITY] += share(ck, nt);
                    x[PARO_SWEEP_RECALL] += rr;
                    x[PARO_SWEEP_OUT_REL_L2] += ll;
                    sparse_ref(s, p, vh, o, n, d, m->scale, pos_f, bq, bk, nk, fk, &rr, &ll, &co);
                    x[PARO_SWEEP_DENSITY_CAPTURE] += share(fk, nt);
                    x[PARO_SWEEP_RECALL_CAPTURE] += rr;
                    x[PARO_SWEEP_OUT_REL_L2_CAPTURE] += ll;
                }
                free_layer(&ld);
            }
            const double *got = paro_eval_head_metrics(r, li, h);
            for (int mi = 0; mi < PARO_EVAL_N_METRICS; mi++)
                assert_close(got[mi],
                             paro_eval_metric_is_worst(mi) ? sum[mi] : sum[mi] / r->n_samples,
                             paro_eval_metric_name(mi), layer, h);
            for (uint32_t b = 0; b < K; b++) {
                size_t at = paro_eval_bucket_index(r, li, b, h);
                double cnt = r->bucket_samples[b];
                assert_close(r->recall[at], cnt ? bsum[2 * b] / cnt : NAN, "bucket recall",
                             layer, h);
                assert_close(r->recall_capture[at], cnt ? bsum[2 * b + 1] / cnt : NAN,
                             "bucket recall_capture_order", layer, h);
            }
            for (size_t di = 0; di < cfg->n_sweep; di++)
                for (int mi = 0; mi < PARO_SWEEP_N_METRICS; mi++)
                    assert_close(paro_eval_head_sweep(r, li, h, di)[mi],
                                 ssum[di * PARO_SWEEP_N_METRICS + mi] / r->n_samples,
                                 paro_eval_sweep_metric_name(mi), layer, h);
            free(bsum);
            free(ssum);
        }
    }
    free(pos_c);
    free(pos_f);
    free(mass);
    free(plan_keep);
    free(base_keep);
    free(sweep_keep);
    free(s);
    free(p);
    free(o);
    free(basis_bucket);
    paro_tiling_free(&t);
}

/* ---- brute-force cases ---------------------------------------------------- */

/* Every mask of the plan keeps its last block row and column. */
static void assert_last_kept(const paro_plan *p)
{
    for (uint32_t l = 0; l < p->n_layers; l++)
        for (uint32_t b = 0; b < p->n_buckets; b++)
            for (uint32_t h = 0; h < p->heads; h++) {
                for (uint32_t kb = 0; kb < p->nk; kb++)
                    ck_assert_msg(paro_plan_mask_get(p, l, b, h, p->nq - 1, kb),
                                  "layer slot %u bucket %u head %u: tile (%u, %u) dropped", l, b,
                                  h, p->nq - 1, kb);
                for (uint32_t a = 0; a < p->nq; a++)
                    ck_assert_msg(paro_plan_mask_get(p, l, b, h, a, p->nk - 1),
                                  "layer slot %u bucket %u head %u: tile (%u, %u) dropped", l, b,
                                  h, a, p->nk - 1);
            }
}

typedef struct brute_case {
    tu_capture cap;
    uint32_t bq, bk, buckets;
    double dense_until;
    paro_target_mode mode;
    double target;
    uint32_t calib[4];
    size_t n_calib;
    int one_layer; /* calibrate layer 1 only */
    double sweep[3];
    size_t n_sweep;
    int keep_last;
} brute_case;

static const brute_case brute_cases[] = {
    /* odd grid, text first, partial blocks, a sweep */
    {{{3, 5, 7}, 5, 0, 1, 3, 16, 3, 1, 0, 21}, 16, 8, 1, 0.0, PARO_TARGET_DENSITY, 0.3,
     {0}, 1, 0, {0.2, 0.6}, 2, 0},
    /* text last, 2 buckets, the first dense, a sweep */
    {{{3, 5, 7}, 5, 1, 1, 2, 16, 4, 1, 0, 22}, 8, 16, 2, 0.5, PARO_TARGET_DENSITY, 0.4,
     {0, 2}, 2, 0, {0.5}, 1, 0},
    /* text first, 2 buckets, recall target, no sweep */
    {{{2, 4, 6}, 3, 0, 1, 3, 8, 4, 1, 0, 23}, 8, 8, 2, 0.0, PARO_TARGET_RECALL, 0.7,
     {1, 3}, 2, 0, {0}, 0, 0},
    /* image (F = 1), no text, threshold target, a plan of layer 1 only */
    {{{1, 6, 9}, 0, 0, 2, 2, 8, 3, 1, 0, 26}, 7, 5, 1, 0.0, PARO_TARGET_THRESHOLD, 0.002,
     {0, 1}, 2, 1, {0.3}, 1, 0},
    /* --keep-last: 2 buckets, partial last blocks, a sweep (the baseline and
     * the sweep keep the last row and column too) */
    {{{3, 4, 6}, 5, 0, 1, 2, 16, 3, 1, 0, 27}, 8, 16, 2, 0.0, PARO_TARGET_DENSITY, 0.3,
     {0, 2}, 2, 0, {0.4}, 1, 1},
};

START_TEST(eval_matches_brute_force)
{
    const brute_case *bc = &brute_cases[_i];
    tu_captured m_cap;
    tu_captured_open(&m_cap, &bc->cap);
    paro_manifest *m = m_cap.m;
    paro_calib_config cc;
    paro_calib_config_default(&cc);
    cc.block_q = bc->bq;
    cc.block_k = bc->bk;
    cc.n_buckets = bc->buckets;
    cc.dense_until = bc->dense_until;
    cc.target.mode = bc->mode;
    cc.target.value = bc->target;
    cc.samples = bc->calib;
    cc.n_samples = bc->n_calib;
    cc.target.keep_last = bc->keep_last;
    uint32_t layer1 = 1;
    if (bc->one_layer) {
        cc.layers = &layer1;
        cc.n_layers = 1;
    }
    paro_plan *plan = tu_calibrate(m, &cc);
    if (bc->keep_last)
        assert_last_kept(plan);
    paro_eval_config ec;
    paro_eval_config_default(&ec);
    ec.sweep = bc->sweep;
    ec.n_sweep = bc->n_sweep;
    ec.threads = 2;
    paro_eval_result *r = evaluate(m, plan, &ec);
    ck_assert_int_eq(r->basis, PARO_EVAL_BASIS_CALIBRATION);
    ck_assert_int_eq(r->held_out, 1);
    ck_assert_int_eq(r->n_warnings, 0);
    ck_assert_uint_eq(r->n_samples, m->n_samples - bc->n_calib);
    brute_check(m, plan, &ec, r);
    /* The cases must exercise the baseline built from statistics: some head
     * chose another order than capture order. */
    int other = 0;
    for (size_t i = 0; i < (size_t)r->n_layers * r->heads; i++)
        other |= r->order[i] != PARO_ORDER_FHW;
    ck_assert(other);
    paro_eval_result_free(r);
    paro_plan_free(plan);
    tu_captured_close(&m_cap);
}
END_TEST

/* Rows whose kept entries all underflow are renormalised from their own
 * maximum, not divided by zero. */
START_TEST(underflowing_rows_are_renormalised)
{
    tu_capture cs = {{2, 3, 4}, 4, 0, 1, 2, 16, 2, 1, 1, 31};
    tu_captured m_cap;
    tu_captured_open(&m_cap, &cs);
    paro_manifest *m = m_cap.m;
    paro_calib_config cc;
    paro_calib_config_default(&cc);
    cc.block_q = cc.block_k = 8;
    cc.target.keep_text = 0;
    uint32_t calib = 0;
    cc.samples = &calib;
    cc.n_samples = 1;
    paro_plan *plan = tu_calibrate(m, &cc);
    /* Query blocks 1 and 2 lose key block 0, where all the mass is; head 1's
     * query block 3 keeps nothing at all. */
    for (uint32_t h = 0; h < plan->heads; h++)
        for (uint32_t a = 1; a < 3; a++) {
            paro_plan_mask_set(plan, 0, 0, h, a, 0, 0);
            paro_plan_mask_set(plan, 0, 0, h, a, 2, 1);
        }
    for (uint32_t kb = 0; kb < plan->nk; kb++)
        paro_plan_mask_set(plan, 0, 0, 1, 3, kb, 0);
    paro_eval_config ec;
    paro_eval_config_default(&ec);
    paro_eval_result *r = evaluate(m, plan, &ec);
    brute_check(m, plan, &ec, r);
    for (uint32_t h = 0; h < plan->heads; h++) {
        const double *x = paro_eval_head_metrics(r, 0, h);
        ck_assert(isfinite(x[PARO_EVAL_OUT_REL_L2]) && x[PARO_EVAL_OUT_REL_L2] > 0.1);
        ck_assert_double_lt(x[PARO_EVAL_RECALL], 0.9);
    }
    paro_eval_result_free(r);
    paro_plan_free(plan);
    tu_captured_close(&m_cap);
}
END_TEST

/* ---- properties ---------------------------------------------------------- */

static const tu_capture small_cap = {{2, 4, 5}, 6, 0, 2, 3, 16, 3, 1, 0, 41};

START_TEST(full_masks_lose_nothing_and_int8_beats_int4)
{
    tu_captured m_cap;
    tu_captured_open(&m_cap, &small_cap);
    paro_manifest *m = m_cap.m;
    paro_calib_config cc;
    paro_calib_config_default(&cc);
    cc.block_q = cc.block_k = 8;
    cc.target.value = 1.0;
    uint32_t calib = 0;
    cc.samples = &calib;
    cc.n_samples = 1;
    paro_plan *plan = tu_calibrate(m, &cc);
    paro_eval_config ec;
    paro_eval_config_default(&ec);
    paro_eval_result *r = evaluate(m, plan, &ec);
    for (uint32_t l = 0; l < r->n_layers; l++)
        for (uint32_t h = 0; h < r->heads; h++) {
            const double *x = paro_eval_head_metrics(r, l, h);
            ck_assert_double_eq(x[PARO_EVAL_DENSITY], 1.0);
            ck_assert_double_eq_tol(x[PARO_EVAL_RECALL], 1.0, 1e-12);
            ck_assert_double_eq_tol(x[PARO_EVAL_RECALL_WORST], 1.0, 1e-12);
            ck_assert_double_eq_tol(x[PARO_EVAL_RECALL_CAPTURE], 1.0, 1e-12);
            ck_assert_double_le(x[PARO_EVAL_OUT_REL_L2], 1e-12);
            ck_assert_double_le(x[PARO_EVAL_OUT_REL_L2_CAPTURE], 1e-12);
            ck_assert_double_eq_tol(x[PARO_EVAL_OUT_COSINE], 1.0, 1e-12);
            ck_assert_double_gt(x[PARO_EVAL_INT8_REL_L2], 0.0);
            ck_assert_double_lt(x[PARO_EVAL_INT8_REL_L2], x[PARO_EVAL_INT4_REL_L2]);
            ck_assert_double_lt(x[PARO_EVAL_INT8_REL_L2_CAPTURE],
                                x[PARO_EVAL_INT4_REL_L2_CAPTURE]);
        }
    paro_eval_result_free(r);
    paro_plan_free(plan);
    tu_captured_close(&m_cap);
}
END_TEST

/* On the sample it was calibrated on, a plan's recall is the one it records. */
START_TEST(recall_on_the_calibration_sample_is_the_plans)
{
    tu_captured m_cap;
    tu_captured_open(&m_cap, &small_cap);
    paro_manifest *m = m_cap.m;
    paro_calib_config cc;
    paro_calib_config_default(&cc);
    cc.block_q = 8;
    cc.block_k = 6;
    uint32_t calib = 1;
    cc.samples = &calib;
    cc.n_samples = 1;
    paro_plan *plan = tu_calibrate(m, &cc);
    paro_eval_config ec;
    paro_eval_config_default(&ec);
    ec.samples = &calib;
    ec.n_samples = 1;
    paro_eval_result *r = evaluate(m, plan, &ec);
    ck_assert_int_eq(r->held_out, 0);
    for (uint32_t l = 0; l < r->n_layers; l++)
        for (uint32_t h = 0; h < r->heads; h++) {
            size_t at = paro_plan_bucket_index(plan, l, 0, h);
            assert_close(paro_eval_head_metrics(r, l, h)[PARO_EVAL_RECALL], plan->recall[at],
                         "recall", l, h);
            assert_close(paro_eval_head_metrics(r, l, h)[PARO_EVAL_DENSITY], plan->density[at],
                         "density", l, h);
        }
    paro_eval_result_free(r);
    paro_plan_free(plan);
    tu_captured_close(&m_cap);
}
END_TEST

START_TEST(results_do_not_depend_on_threads)
{
    tu_captured m_cap;
    tu_captured_open(&m_cap, &small_cap);
    paro_manifest *m = m_cap.m;
    paro_calib_config cc;
    paro_calib_config_default(&cc);
    cc.block_q = cc.block_k = 8;
    uint32_t calib = 0;
    cc.samples = &calib;
    cc.n_samples = 1;
    paro_plan *plan = tu_calibrate(m, &cc);
    const double sweep[] = {0.1, 0.5};
    paro_eval_config ec;
    paro_eval_config_default(&ec);
    ec.sweep = sweep;
    ec.n_sweep = 2;
    paro_eval_result *one = evaluate(m, plan, &ec);
    ec.threads = 3;
    paro_eval_result *three = evaluate(m, plan, &ec);
    const size_t lh = (size_t)one->n_layers * one->heads;
    ck_assert_mem_eq(one->metrics, three->metrics, lh * PARO_EVAL_N_METRICS * sizeof(double));
    ck_assert_mem_eq(one->recall, three->recall, lh * one->n_buckets * sizeof(double));
    ck_assert_mem_eq(one->sweep, three->sweep, lh * 2 * PARO_SWEEP_N_METRICS * sizeof(double));
    paro_eval_result_free(one);
    paro_eval_result_free(three);
    paro_plan_free(plan);
    tu_captured_close(&m_cap);
}
END_TEST

/* The default samples, the fallback when none is held out, and the baseline
 * when the capture is not the plan's. */
START_TEST(sample_choice_and_warnings)
{
    tu_captured m_cap;
    tu_captured_open(&m_cap, &small_cap);
    paro_manifest *m = m_cap.m;
    paro_calib_config cc;
    paro_calib_config_default(&cc);
    cc.block_q = cc.block_k = 8;
    paro_plan *all = tu_calibrate(m, &cc); /* on every sample */
    paro_eval_config ec;
    paro_eval_config_default(&ec);
    paro_eval_result *r = evaluate(m, all, &ec);
    ck_assert_uint_eq(r->n_samples, 3);
    ck_assert_int_eq(r->held_out, 0);
    ck_assert_int_eq(r->n_warnings, 1);
    ck_assert_ptr_nonnull(strstr(r->warnings[0], "calibrated on every sample"));
    paro_eval_result_free(r);

    /* A changed capture: the layer digest no longer matches. */
    all->layer_crc32[1] ^= 1;
    r = evaluate(m, all, &ec);
    ck_assert_int_eq(r->n_warnings, 2);
    ck_assert_ptr_nonnull(strstr(r->warnings[1], "layer 1 of this capture differs"));
    paro_eval_result_free(r);

    /* Another capture: the plan's samples are not this manifest's. */
    all->samples[0].timestep += 1;
    r = evaluate(m, all, &ec);
    ck_assert_int_eq(r->basis, PARO_EVAL_BASIS_EVALUATION);
    ck_assert_int_eq(r->held_out, 1);
    ck_assert_uint_eq(r->n_samples, 3);
    ck_assert_uint_eq(r->n_basis, 3);
    ck_assert_int_eq(r->n_warnings, 1);
    ck_assert_ptr_nonnull(strstr(r->warnings[0], "not samples of this capture"));
    brute_check(m, all, &ec, r);
    paro_eval_result_free(r);

    /* --samples overrides; the plan made on 0 and 2 holds out 1. */
    uint32_t calib[] = {0, 2}, pick[] = {1, 2};
    cc.samples = calib;
    cc.n_samples = 2;
    paro_plan *p02 = tu_calibrate(m, &cc);
    r = evaluate(m, p02, &ec);
    ck_assert_uint_eq(r->n_samples, 1);
    ck_assert_uint_eq(r->samples[0], 1);
    ck_assert_int_eq(r->held_out, 1);
    ck_assert_uint_eq(r->n_basis, 2);
    paro_eval_result_free(r);
    ec.samples = pick;
    ec.n_samples = 2;
    r = evaluate(m, p02, &ec);
    ck_assert_uint_eq(r->n_samples, 2);
    ck_assert_int_eq(r->held_out, 0);
    paro_eval_result_free(r);

    paro_plan_free(all);
    paro_plan_free(p02);
    tu_captured_close(&m_cap);
}
END_TEST

/* A bucket with evaluation samples but no calibration sample gets its
 * baseline from the evaluation samples, with a warning. */
START_TEST(uncovered_bucket_uses_evaluation_samples)
{
    tu_capture cs = small_cap;
    cs.samples = 4;
    tu_captured m_cap;
    tu_captured_open(&m_cap, &cs);
    paro_manifest *m = m_cap.m;
    paro_calib_config cc;
    paro_calib_config_default(&cc);
    cc.block_q = cc.block_k = 8;
    cc.n_buckets = 2;
    uint32_t calib[] = {0, 2};
    cc.samples = calib;
    cc.n_samples = 2;
    paro_plan *plan = tu_calibrate(m, &cc);
    /* Pretend the plan saw bucket 0 only. */
    plan->samples[1].bucket = 0;
    paro_eval_config ec;
    paro_eval_config_default(&ec);
    paro_eval_result *r = evaluate(m, plan, &ec);
    ck_assert_int_eq(r->basis, PARO_EVAL_BASIS_EVALUATION);
    ck_assert_int_eq(r->n_warnings, 1);
    ck_assert_ptr_nonnull(strstr(r->warnings[0], "timestep bucket 1"));
    ck_assert_uint_eq(r->bucket_samples[0], 1);
    ck_assert_uint_eq(r->bucket_samples[1], 1);
    brute_check(m, plan, &ec, r);
    paro_eval_result_free(r);
    paro_plan_free(plan);
    tu_captured_close(&m_cap);
}
END_TEST

START_TEST(bad_inputs_are_refused)
{
    tu_captured m_cap;
    tu_captured_open(&m_cap, &small_cap);
    paro_manifest *m = m_cap.m;
    paro_calib_config cc;
    paro_calib_config_default(&cc);
    cc.block_q = cc.block_k = 8;
    uint32_t calib = 0;
    cc.samples = &calib;
    cc.n_samples = 1;
    paro_plan *plan = tu_calibrate(m, &cc);
    paro_eval_config ec;
    paro_eval_config_default(&ec);
    paro_errinfo ei;
    paro_eval_result *r = NULL;

    paro_errinfo_clear(&ei);
    ec.device = PARO_DEVICE_CUDA;
    ck_assert_int_eq(paro_eval(m, plan, &ec, &r, &ei), PARO_ERR_NO_CUDA); /* hidden, see main */
    ck_assert_ptr_nonnull(strstr(ei.msg, "eval found no cuda device"));
    ec.device = PARO_DEVICE_CPU;

    const double bad_sweep = 1.5;
    ec.sweep = &bad_sweep;
    ec.n_sweep = 1;
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_eval(m, plan, &ec, &r, &ei), PARO_ERR_USAGE);
    ec.n_sweep = 0;

    uint32_t twice[] = {1, 1};
    ec.samples = twice;
    ec.n_samples = 2;
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_eval(m, plan, &ec, &r, &ei), PARO_ERR_USAGE);
    ec.samples = NULL;
    ec.n_samples = 0;

    volatile sig_atomic_t stop = 1;
    ec.stop = &stop;
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_eval(m, plan, &ec, &r, &ei), PARO_ERR_INTERRUPTED);
    ec.stop = NULL;
    ck_assert_ptr_null(r);

    /* A capture of another shape. */
    tu_capture other = small_cap;
    other.grid[2] = 6;
    tu_captured other_cap;
    tu_captured_open(&other_cap, &other);
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_eval(other_cap.m, plan, &ec, &r, &ei), PARO_ERR_USAGE);
    ck_assert_ptr_nonnull(strstr(ei.msg, "does not fit the capture"));
    tu_captured_close(&other_cap);

    /* A capture without V. */
    other = small_cap;
    other.with_v = 0;
    tu_captured_open(&other_cap, &other);
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_eval(other_cap.m, plan, &ec, &r, &ei), PARO_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(ei.msg, "eval needs V"));
    ck_assert_ptr_nonnull(strstr(ei.file, "s1.safetensors"));
    tu_captured_close(&other_cap);

    paro_plan_free(plan);
    tu_captured_close(&m_cap);
}
END_TEST

START_TEST(summaries_average_heads)
{
    tu_captured m_cap;
    tu_captured_open(&m_cap, &small_cap);
    paro_manifest *m = m_cap.m;
    paro_calib_config cc;
    paro_calib_config_default(&cc);
    cc.block_q = cc.block_k = 8;
    uint32_t calib = 2;
    cc.samples = &calib;
    cc.n_samples = 1;
    paro_plan *plan = tu_calibrate(m, &cc);
    const double sweep = 0.4;
    paro_eval_config ec;
    paro_eval_config_default(&ec);
    ec.sweep = &sweep;
    ec.n_sweep = 1;
    paro_eval_result *r = evaluate(m, plan, &ec);
    double all[PARO_EVAL_N_METRICS], layer[PARO_EVAL_N_METRICS];
    double sw_all[PARO_SWEEP_N_METRICS], sw_layer[PARO_SWEEP_N_METRICS];
    paro_eval_summary(r, -1, all);
    paro_eval_sweep_summary(r, -1, 0, sw_all);
    double sum[PARO_EVAL_N_METRICS] = {0}, sw_sum[PARO_SWEEP_N_METRICS] = {0};
    double worst = INFINITY;
    for (uint32_t l = 0; l < r->n_layers; l++) {
        paro_eval_summary(r, (int)l, layer);
        paro_eval_sweep_summary(r, (int)l, 0, sw_layer);
        double lsum = 0, lworst = INFINITY;
        for (uint32_t h = 0; h < r->heads; h++) {
            const double *x = paro_eval_head_metrics(r, l, h);
            for (int mi = 0; mi < PARO_EVAL_N_METRICS; mi++)
                sum[mi] += x[mi];
            lsum += x[PARO_EVAL_OUT_REL_L2];
            lworst = fmin(lworst, x[PARO_EVAL_RECALL_WORST]);
            for (int mi = 0; mi < PARO_SWEEP_N_METRICS; mi++)
                sw_sum[mi] += paro_eval_head_sweep(r, l, h, 0)[mi];
        }
        worst = fmin(worst, lworst);
        assert_close(layer[PARO_EVAL_OUT_REL_L2], lsum / r->heads, "layer out_rel_l2", l, 0);
        ck_assert_double_eq(layer[PARO_EVAL_RECALL_WORST], lworst);
        ck_assert(sw_layer[PARO_SWEEP_RECALL] > 0);
    }
    const double heads = (double)r->n_layers * r->heads;
    for (int mi = 0; mi < PARO_EVAL_N_METRICS; mi++)
        if (!paro_eval_metric_is_worst(mi))
            assert_close(all[mi], sum[mi] / heads, paro_eval_metric_name(mi), 0, 0);
    ck_assert_double_eq(all[PARO_EVAL_RECALL_WORST], worst);
    for (int mi = 0; mi < PARO_SWEEP_N_METRICS; mi++)
        assert_close(sw_all[mi], sw_sum[mi] / heads, paro_eval_sweep_metric_name(mi), 0, 0);
    ck_assert_str_eq(paro_eval_metric_name(PARO_EVAL_INT4_REL_L2_CAPTURE),
                     "int4_rel_l2_capture_order");
    ck_assert_str_eq(paro_eval_sweep_metric_name(PARO_SWEEP_OUT_REL_L2), "out_rel_l2");
    ck_assert_str_eq(paro_eval_metric_name(PARO_EVAL_N_METRICS), "?");
    paro_eval_result_free(r);
    paro_plan_free(plan);
    tu_captured_close(&m_cap);
}
END_TEST


/* The sweep picture: every point's marker sits where the layout says, in its
 * series' colour; the error axis is the next 1/2/2.5/5 step above the
 * largest error; the same result gives the same pixels; no sweep, no
 * picture. */
START_TEST(sweep_picture_puts_points_where_they_belong)
{
    enum { L = 1, H = 2, D = 3 };
    /* per head, per density: density, density FHW, recall, recall FHW,
     * error, error FHW; head 1 adds 0.02 to every value so means differ
     * from either head.  Targets out of order: the picture sorts them. */
    const double target[D] = {0.5, 0.1, 0.3};
    double sweep[L * H * D * PARO_SWEEP_N_METRICS];
    for (int h = 0; h < H; h++)
        for (int d = 0; d < D; d++) {
            double *x = sweep + ((size_t)h * D + d) * PARO_SWEEP_N_METRICS;
            double t = target[d], k = 0.02 * h;
            x[PARO_SWEEP_DENSITY] = t + k;
            x[PARO_SWEEP_DENSITY_CAPTURE] = t + 0.01 + k;
            x[PARO_SWEEP_RECALL] = 0.9 - (0.5 - t) + k;
            x[PARO_SWEEP_RECALL_CAPTURE] = 0.6 - (0.5 - t) + k;
            x[PARO_SWEEP_OUT_REL_L2] = 0.5 * (0.6 - t) + k;
            x[PARO_SWEEP_OUT_REL_L2_CAPTURE] = 1.2 * (0.6 - t) + k;
        }
    paro_eval_result r;
    memset(&r, 0, sizeof r);
    r.n_layers = L;
    r.heads = H;
    r.n_samples = 1;
    r.n_sweep = D;
    r.sweep_density = (double *)target;
    r.sweep = sweep;
    paro_image img = {0, 0, NULL}, again = {0, 0, NULL};
    paro_sweep_layout lay;
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_eval_sweep_picture(&r, &img, &lay, &ei), PARO_OK);
    /* largest error: 1.2 * 0.5 + 0.02 = 0.62 -> 1; densities up to 0.53 -> 0.6 */
    ck_assert(lay.error_max == 1.0);
    ck_assert(fabs(lay.x_max - 0.6) < 1e-12);
    for (int d = 0; d < D; d++) {
        double m[PARO_SWEEP_N_METRICS];
        paro_eval_sweep_summary(&r, -1, (size_t)d, m);
        struct {
            double x, y, top;
            uint32_t px, py;
            const uint8_t *rgb;
        } pts[4] = {
            {m[PARO_SWEEP_DENSITY], m[PARO_SWEEP_RECALL], 1.0, lay.recall_x, lay.recall_y,
             paro_sweep_chosen_colour},
            {m[PARO_SWEEP_DENSITY_CAPTURE], m[PARO_SWEEP_RECALL_CAPTURE], 1.0, lay.recall_x,
             lay.recall_y, paro_sweep_capture_colour},
            {m[PARO_SWEEP_DENSITY], m[PARO_SWEEP_OUT_REL_L2], lay.error_max, lay.error_x,
             lay.error_y, paro_sweep_chosen_colour},
            {m[PARO_SWEEP_DENSITY_CAPTURE], m[PARO_SWEEP_OUT_REL_L2_CAPTURE], lay.error_max,
             lay.error_x, lay.error_y, paro_sweep_capture_colour},
        };
        for (int i = 0; i < 4; i++) {
            uint32_t x = paro_sweep_px(&lay, pts[i].px, pts[i].x);
            uint32_t y = paro_sweep_py(&lay, pts[i].py, pts[i].y, pts[i].top);
            ck_assert_uint_lt(x, img.width);
            ck_assert_uint_lt(y, img.height);
            ck_assert_msg(!memcmp(img.rgb + ((size_t)y * img.width + x) * 3, pts[i].rgb, 3),
                          "density %d, point %d: wrong colour at (%u, %u)", d, i, x, y);
        }
    }
    ck_assert_int_eq(paro_eval_sweep_picture(&r, &again, NULL, &ei), PARO_OK);
    ck_assert_uint_eq(again.width, img.width);
    ck_assert_uint_eq(again.height, img.height);
    ck_assert(!memcmp(again.rgb, img.rgb, (size_t)img.width * img.height * 3));
    paro_image_free(&again);
    paro_image_free(&img);
    r.n_sweep = 0;
    ck_assert_int_eq(paro_eval_sweep_picture(&r, &img, NULL, &ei), PARO_ERR_USAGE);
    ck_assert_ptr_null(img.rgb);
}
END_TEST

/* ---- calibrate's lanes (here for tu_write_capture) ------------------------- */

typedef struct progress_log {
    uint64_t calls, last_done, total;
    int backwards;
} progress_log;

static void log_progress(void *user, const paro_calib_progress *p)
{
    progress_log *log = user;
    if (log->calls && p->done < log->last_done)
        log->backwards = 1;
    log->calls++;
    log->last_done = p->done;
    log->total = p->total;
}

static void plan_bytes(const paro_plan *p, uint8_t **buf, size_t *len)
{
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    ck_assert_msg(paro_plan_serialize(p, buf, len, &ei) == PARO_OK, "%s", ei.msg);
}

/* Spreading the layers over several lanes (what --gpus does, here with CPU
 * lanes) writes the bytes of one lane, with more lanes than layers too; the
 * progress runs forward to the total; a journal written by lanes resumes
 * into the same plan. */
START_TEST(calibrate_lanes_give_the_same_plan)
{
    tu_capture cs = {{2, 4, 4}, 4, 0, 5, 2, 16, 2, 0, 0, 21};
    tu_captured m_cap;
    tu_captured_open(&m_cap, &cs);
    paro_manifest *m = m_cap.m;
    paro_calib_config cfg;
    paro_calib_config_default(&cfg);
    cfg.block_q = cfg.block_k = 8;
    cfg.device = PARO_DEVICE_CPU;
    cfg.threads = 3;
    paro_plan *one = tu_calibrate(m, &cfg);
    uint8_t *want, *got;
    size_t want_len, got_len;
    plan_bytes(one, &want, &want_len);
    static const int gpus[7] = {0, 0, 0, 0, 0, 0, 0};
    const uint32_t lane_counts[3] = {2, 3, 7};
    for (int i = 0; i < 3; i++) {
        progress_log log = {0, 0, 0, 0};
        cfg.gpus = gpus;
        cfg.n_gpus = lane_counts[i];
        cfg.progress = log_progress;
        cfg.progress_user = &log;
        paro_plan *p = tu_calibrate(m, &cfg);
        plan_bytes(p, &got, &got_len);
        ck_assert_msg(got_len == want_len && !memcmp(got, want, want_len),
                      "%u lanes: the plan differs from one lane's", lane_counts[i]);
        ck_assert_uint_eq(log.total, 5 * 2);
        ck_assert_uint_eq(log.last_done, log.total);
        ck_assert_int_eq(log.backwards, 0);
        ck_assert_uint_ge(log.calls, 2);
        free(got);
        paro_plan_free(p);
    }
    /* the journal lanes write (appends from several threads) resumes whole */
    char *journal = tu_path(m_cap.dir, "plan.journal");
    cfg.progress = NULL;
    cfg.n_gpus = 3;
    cfg.journal = journal;
    paro_plan *p = tu_calibrate(m, &cfg);
    paro_plan_free(p);
    cfg.resume = 1;
    cfg.gpus = NULL;
    progress_log log = {0, 0, 0, 0};
    cfg.progress = log_progress;
    cfg.progress_user = &log;
    p = tu_calibrate(m, &cfg);
    ck_assert_uint_eq(log.total, 0); /* every layer came from the journal */
    plan_bytes(p, &got, &got_len);
    ck_assert(got_len == want_len && !memcmp(got, want, want_len));
    free(got);
    paro_plan_free(p);
    /* a bad device number is refused before anything runs */
    static const int bad[1] = {-1};
    cfg.gpus = bad;
    cfg.n_gpus = 1;
    cfg.journal = NULL;
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_calibrate(m, &cfg, &p, &ei), PARO_ERR_USAGE);
    /* and so is a sample listed twice */
    cfg.gpus = NULL;
    cfg.n_gpus = 0;
    static const uint32_t twice[2] = {1, 1};
    cfg.samples = twice;
    cfg.n_samples = 2;
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_calibrate(m, &cfg, &p, &ei), PARO_ERR_USAGE);
    ck_assert_str_eq(ei.msg, "samples must be listed once each, in increasing order");
    free(want);
    free(journal);
    paro_plan_free(one);
    tu_captured_close(&m_cap);
}
END_TEST

/* --keep-last: every mask keeps its last block row and column, with each
 * target; the forced tiles count in the density, which is never below the
 * plan's without them (text first and kept, so no query block is ever left
 * empty); the plan is the same bytes for 1 and 4 threads, is written as
 * version 1.2 and reads back with keep_last; eval reports the density of the
 * masks as stored. */
START_TEST(keep_last_keeps_the_last_block_row_and_column)
{
    tu_capture cs = {{2, 5, 6}, 6, 0, 2, 3, 16, 3, 1, 0, 43};
    tu_captured m_cap;
    tu_captured_open(&m_cap, &cs);
    paro_manifest *m = m_cap.m;
    static const struct {
        paro_target_mode mode;
        double value;
        uint32_t buckets;
    } targets[] = {{PARO_TARGET_DENSITY, 0.2, 1},
                   {PARO_TARGET_DENSITY, 0.6, 3},
                   {PARO_TARGET_RECALL, 0.8, 1},
                   {PARO_TARGET_THRESHOLD, 0.002, 1}};
    for (size_t i = 0; i < sizeof targets / sizeof *targets; i++) {
        paro_calib_config cc;
        paro_calib_config_default(&cc);
        cc.block_q = 8;
        cc.block_k = 16;
        cc.device = PARO_DEVICE_CPU;
        cc.target.mode = targets[i].mode;
        cc.target.value = targets[i].value;
        cc.n_buckets = targets[i].buckets;
        cc.threads = 1;
        paro_plan *plain = tu_calibrate(m, &cc);
        cc.target.keep_last = 1;
        paro_plan *last = tu_calibrate(m, &cc);
        cc.threads = 4;
        paro_plan *last4 = tu_calibrate(m, &cc);
        uint8_t *b1, *b4;
        size_t n1, n4;
        plan_bytes(last, &b1, &n1);
        plan_bytes(last4, &b4, &n4);
        ck_assert_msg(n1 == n4 && !memcmp(b1, b4, n1), "target %zu: 4 threads differ", i);
        ck_assert_uint_eq(b1[10] | b1[11] << 8, 2); /* the minor version */
        paro_errinfo ei;
        paro_errinfo_clear(&ei);
        paro_plan *back = NULL;
        ck_assert_msg(paro_plan_parse(b1, n1, "mem", &back, &ei) == PARO_OK, "%s", ei.msg);
        ck_assert_int_eq(back->keep_last, 1);
        ck_assert_uint_eq(back->format_minor, 2);
        paro_plan_free(back);
        free(b1);
        free(b4);

        assert_last_kept(last);
        ck_assert_uint_eq(last->heads, plain->heads);
        for (uint32_t l = 0; l < last->n_layers; l++) {
            ck_assert_mem_eq(last->head_order + (size_t)l * last->heads,
                             plain->head_order + (size_t)l * plain->heads, last->heads);
            for (uint32_t b = 0; b < last->n_buckets; b++)
                for (uint32_t h = 0; h < last->heads; h++) {
                    size_t at = paro_plan_bucket_index(last, l, b, h);
                    size_t kept = 0;
                    for (uint32_t a = 0; a < last->nq; a++)
                        for (uint32_t kb = 0; kb < last->nk; kb++)
                            kept += (size_t)paro_plan_mask_get(last, l, b, h, a, kb);
                    ck_assert_double_eq(last->density[at],
                                        (double)kept / ((double)last->nq * last->nk));
                    ck_assert_double_ge(last->density[at], plain->density[at]);
                    /* a density target holds when the forced tiles fit in
                     * it: the 6 text tokens are in block 0 of each axis, so
                     * rows 0 and nq-1 and columns 0 and nk-1 are forced */
                    const double forced = 2.0 * last->nq + 2.0 * last->nk - 4.0;
                    if (targets[i].mode == PARO_TARGET_DENSITY &&
                        targets[i].value * last->nq * last->nk >= forced)
                        ck_assert_double_eq(last->density[at], plain->density[at]);
                }
        }
        /* eval takes the masks as they are stored */
        paro_eval_config ec;
        paro_eval_config_default(&ec);
        paro_eval_result *r = evaluate(m, last, &ec);
        for (uint32_t l = 0; l < r->n_layers; l++)
            for (uint32_t b = 0; b < r->n_buckets; b++)
                for (uint32_t h = 0; h < r->heads; h++)
                    assert_close(r->density[paro_eval_bucket_index(r, l, b, h)],
                                 last->density[paro_plan_bucket_index(last, l, b, h)],
                                 "density", l, h);
        paro_eval_result_free(r);
        paro_plan_free(plain);
        paro_plan_free(last);
        paro_plan_free(last4);
    }
    tu_captured_close(&m_cap);
}
END_TEST

static Suite *eval_suite(void)
{
    Suite *s = suite_create("eval");
    TCase *tc = tcase_create("brute_force");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, eval_matches_brute_force, 0,
                        (int)(sizeof brute_cases / sizeof *brute_cases));
    tcase_add_test(tc, underflowing_rows_are_renormalised);
    suite_add_tcase(s, tc);

    tc = tcase_create("properties");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, full_masks_lose_nothing_and_int8_beats_int4);
    tcase_add_test(tc, recall_on_the_calibration_sample_is_the_plans);
    tcase_add_test(tc, results_do_not_depend_on_threads);
    tcase_add_test(tc, sample_choice_and_warnings);
    tcase_add_test(tc, uncovered_bucket_uses_evaluation_samples);
    tcase_add_test(tc, bad_inputs_are_refused);
    tcase_add_test(tc, summaries_average_heads);
    tcase_add_test(tc, sweep_picture_puts_points_where_they_belong);
    suite_add_tcase(s, tc);

    tc = tcase_create("calibrate_lanes");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, calibrate_lanes_give_the_same_plan);
    tcase_add_test(tc, keep_last_keeps_the_last_block_row_and_column);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    /* These suites test the CPU reference: where a GPU is, --device auto
     * would take it (the CUDA suite compares the two). */
    setenv("CUDA_VISIBLE_DEVICES", "", 1);
    return tu_run_suite(eval_suite());
}
