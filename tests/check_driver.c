/* paro tests — the calibration driver (calib/calibrate.c) against a backend
 * that lends its sums as the GPU backend does (backend.h): collect points
 * the stats at the backend's own f32 arrays, valid until the next seal.
 *
 * The driver scores layer L on its finisher thread while it reads and
 * queues layer L + 1, so two promises keep the results right, and neither
 * shows on a CPU run (the CPU backend lends nothing):
 *   - the scoring of a layer is over before the seal that may overwrite the
 *     sums it reads;
 *   - a layer is never begun into the stats a scoring still reads.
 * The stand-in backend ("lender") checks both each time it could be broken,
 * against the journal, where the finisher saves each layer it has scored:
 * by then that layer must be there.  It replays each layer's samples into
 * the CPU backend at seal, so that the driver's own steps between a collect
 * and the next seal are quick and a driver that broke a promise would be
 * seen doing so, not only in a slow run.  The plan must also match the CPU
 * backend's (the same orders; densities and recalls within f32 rounding). */
#include <check.h>  /* START_TEST, ck_assert_* */
#include <math.h>   /* fabs */
#include <stdio.h>  /* snprintf */
#include <stdlib.h> /* calloc, malloc, free */
#include <string.h> /* memcpy, memset */

#include "backend.h"   /* paro_backend, paro_backend_cpu_open */
#include "calibrate.h" /* paro_calibrate */
#include "manifest.h"  /* paro_manifest_free */
#include "testutil.h"  /* tu_captured, tu_path, tu_read_file, tu_calibrate */

#define MAX_SAMPLES 4
#define JOURNAL_HEADER 24 /* journal.h: magic, version, config crc, config length */

/* What the test reads back after the run. */
typedef struct lender_report {
    const char *journal;
    /* checks that could have failed; with three sets of stats a begin
     * never meets lent ones, so only a driver that reuses them counts any */
    int seal_checks, begin_checks;
    int violations;
    char why[200];
} lender_report;

typedef struct lender {
    lender_report *report;
    paro_backend cpu;        /* computes, at seal */
    paro_block_stats sums;   /* the CPU backend's fp64 sums of the layer sealed */
    size_t per_tensor;
    size_t mass_n, peak_n;
    /* the open layer's samples, kept until its seal */
    float *q[MAX_SAMPLES], *k[MAX_SAMPLES];
    uint32_t bucket[MAX_SAMPLES], n_samples;
    paro_block_stats *open;
    /* two sets of f32 sums, as the GPU backend keeps */
    float *mass[2], *peak[2];
    int lent[2];                  /* collect count whose sums the set lends, or -1 */
    paro_block_stats *lent_to[2]; /* and the stats they were lent through */
    paro_block_stats *sealed[2];  /* sealed layers not yet collected, oldest first */
    int sealed_set[2], n_sealed;
    int seals, collects;
} lender;

/* Whole records in the journal: the layers the finisher has scored. */
static int journal_layers(const char *path)
{
    size_t n = 0;
    unsigned char *b = tu_read_file(path, &n);
    int layers = 0;
    for (size_t at = JOURNAL_HEADER; b && at + 8 <= n; layers++) {
        uint32_t len = (uint32_t)b[at] | (uint32_t)b[at + 1] << 8 | (uint32_t)b[at + 2] << 16 |
                       (uint32_t)b[at + 3] << 24;
        if (n - at - 8 < len)
            break;
        at += 8 + (size_t)len;
    }
    free(b);
    return layers;
}

static void violation(lender *l, const char *what, int layer)
{
    if (!l->report->violations++)
        snprintf(l->report->why, sizeof l->report->why, "%s (the %d-th layer collected)", what,
                 layer + 1);
}

static paro_err lender_begin(paro_backend *b, paro_block_stats *stats, paro_errinfo *ei)
{
    lender *l = b->state;
    (void)ei;
    for (int s = 0; s < 2; s++)
        if (l->lent[s] >= 0 && l->lent_to[s] == stats) {
            l->report->begin_checks++;
            if (journal_layers(l->report->journal) <= l->lent[s])
                violation(l, "a layer was begun into stats still being scored", l->lent[s]);
        }
    stats->mass32 = stats->peak32 = NULL;
    memset(stats->count, 0, (size_t)stats->n_buckets * stats->heads * sizeof *stats->count);
    l->open = stats; /* (the driver reads a layer's first sample before it begins it) */
    return PARO_OK;
}

static paro_err lender_buffers(paro_backend *b, float **q, float **k, paro_errinfo *ei)
{
    lender *l = b->state;
    if (l->n_samples == MAX_SAMPLES)
        return paro_error(ei, PARO_ERR_USAGE, NULL, PARO_NO_OFFSET, "lender: too many samples");
    *q = l->q[l->n_samples];
    *k = l->k[l->n_samples];
    return PARO_OK;
}

static paro_err lender_submit(paro_backend *b, uint32_t bucket, paro_errinfo *ei)
{
    lender *l = b->state;
    (void)ei;
    l->bucket[l->n_samples++] = bucket;
    return PARO_OK;
}

/* The GPU backend queues the download that may overwrite a set here; this
 * one computes the layer and writes the set at once. */
static paro_err lender_seal(paro_backend *b, paro_errinfo *ei)
{
    lender *l = b->state;
    const int set = l->seals % 2;
    if (l->lent[set] >= 0) {
        l->report->seal_checks++;
        if (journal_layers(l->report->journal) <= l->lent[set])
            violation(l, "sealing overwrote sums still being scored", l->lent[set]);
    }
    paro_err rc = l->cpu.layer_begin(&l->cpu, &l->sums, ei);
    for (uint32_t i = 0; !rc && i < l->n_samples; i++) {
        float *q, *k;
        if (!(rc = l->cpu.buffers(&l->cpu, &q, &k, ei))) {
            memcpy(q, l->q[i], l->per_tensor * sizeof *q);
            memcpy(k, l->k[i], l->per_tensor * sizeof *k);
            rc = l->cpu.submit(&l->cpu, l->bucket[i], ei);
        }
    }
    if (rc)
        return rc;
    for (size_t i = 0; i < l->mass_n; i++)
        l->mass[set][i] = (float)l->sums.mass[i];
    for (size_t i = 0; i < l->peak_n; i++)
        l->peak[set][i] = (float)l->sums.peak[i];
    l->lent[set] = -1;
    l->sealed[l->n_sealed] = l->open;
    l->sealed_set[l->n_sealed++] = set;
    l->open = NULL;
    l->n_samples = 0;
    l->seals++;
    return PARO_OK;
}

static paro_err lender_collect(paro_backend *b, paro_errinfo *ei)
{
    lender *l = b->state;
    if (l->n_sealed == 0)
        return paro_error(ei, PARO_ERR_USAGE, NULL, PARO_NO_OFFSET, "lender: nothing sealed");
    paro_block_stats *st = l->sealed[0];
    const int set = l->sealed_set[0];
    l->sealed[0] = l->sealed[1];
    l->sealed_set[0] = l->sealed_set[1];
    l->n_sealed--;
    st->mass32 = l->mass[set];
    st->peak32 = l->peak[set];
    l->lent[set] = l->collects++;
    l->lent_to[set] = st;
    return PARO_OK;
}

static void lender_close(paro_backend *b)
{
    lender *l = b->state;
    if (!l)
        return;
    if (l->cpu.close)
        l->cpu.close(&l->cpu);
    paro_block_stats_free(&l->sums);
    for (int i = 0; i < MAX_SAMPLES; i++) {
        free(l->q[i]);
        free(l->k[i]);
    }
    for (int s = 0; s < 2; s++) {
        free(l->mass[s]);
        free(l->peak[s]);
    }
    free(l);
    b->state = NULL;
}

static paro_err lender_open(void *user, paro_backend *b, const paro_backend_shape *s, int gpu,
                            int threads, paro_errinfo *ei)
{
    (void)gpu;
    memset(b, 0, sizeof *b);
    b->name = "cpu"; /* what the plan records: the sums are the CPU's */
    b->lends_sums = 1;
    b->layer_begin = lender_begin;
    b->buffers = lender_buffers;
    b->submit = lender_submit;
    b->seal = lender_seal;
    b->collect = lender_collect;
    b->close = lender_close;
    lender *l = calloc(1, sizeof *l);
    if (!l)
        return paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory");
    b->state = l;
    l->report = user;
    l->lent[0] = l->lent[1] = -1;
    const paro_tiling *t = s->tiling;
    l->per_tensor = (size_t)s->heads * t->n_tokens * s->head_dim;
    const size_t nt = paro_tiling_tiles(t);
    l->peak_n = (size_t)s->heads * t->n_slots * nt;
    l->mass_n = l->peak_n * s->n_buckets;
    paro_err rc = paro_backend_cpu_open(&l->cpu, s, threads, ei);
    if (!rc)
        rc = paro_block_stats_init(&l->sums, s->heads, s->n_buckets, (uint32_t)t->n_slots,
                                   t->nq, t->nk, ei);
    for (int i = 0; !rc && i < MAX_SAMPLES; i++)
        if (!(l->q[i] = malloc(l->per_tensor * sizeof(float))) ||
            !(l->k[i] = malloc(l->per_tensor * sizeof(float))))
            rc = paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory");
    for (int set = 0; !rc && set < 2; set++)
        if (!(l->mass[set] = malloc(l->mass_n * sizeof(float))) ||
            !(l->peak[set] = malloc(l->peak_n * sizeof(float))))
            rc = paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory");
    return rc;
}

/* Six layers, two samples each in two buckets: every seal from the third
 * layer on writes over a set lent before, and the lane cycles through its
 * three sets of stats twice.  Blocks of one token make scoring a layer
 * (10,816 tiles a head and order) slower than reading the next one's
 * samples, so that a driver which broke a promise is caught: waiting for
 * the scoring after the seal instead of before it, or two sets of stats
 * without waiting before layer_begin, each failed 20 runs of 20. */
START_TEST(lent_sums_outlive_their_scoring)
{
    tu_capture cs = {{2, 6, 8}, 8, 0, 6, 8, 16, 2, 0, 0, 5};
    tu_captured cap;
    tu_captured_open(&cap, &cs);
    char *journal = tu_path(cap.dir, "plan.journal");
    const paro_manifest *m = cap.m;

    paro_calib_config cfg;
    paro_calib_config_default(&cfg);
    cfg.block_q = cfg.block_k = 1;
    cfg.n_buckets = 2;
    cfg.threads = 2;
    cfg.device = PARO_DEVICE_CPU;
    paro_plan *ref = tu_calibrate(m, &cfg);

    lender_report report = {journal, 0, 0, 0, ""};
    cfg.journal = journal;
    cfg.open_backend = lender_open;
    cfg.open_backend_user = &report;
    paro_plan *lent = tu_calibrate(m, &cfg);
    ck_assert_msg(report.violations == 0, "%d broken promises, the first: %s", report.violations,
                  report.why);
    ck_assert_int_eq(report.seal_checks, (int)cs.layers - 2);

    /* The CPU backend's choices, but for the sums' f32 rounding: the same
     * order wherever the best combined score leads the next distinct one by
     * 1e-3 or more (a near-tie otherwise, metrics/METRICS.md). */
    ck_assert_uint_eq(lent->n_layers, ref->n_layers);
    int compared = 0;
    for (uint32_t l = 0; l < ref->n_layers; l++)
        for (uint32_t h = 0; h < ref->heads; h++) {
            double best = -1.0, next = -1.0;
            for (uint32_t o = 0; o < ref->n_orders; o++) {
                double c = paro_plan_scores_at(ref, l, h, o)[2];
                best = c > best ? c : best;
            }
            for (uint32_t o = 0; o < ref->n_orders; o++) {
                double c = paro_plan_scores_at(ref, l, h, o)[2];
                next = c < best && c > next ? c : next;
            }
            if (best - next < 1e-3 * best)
                continue;
            const size_t i = paro_plan_head_index(ref, l, h);
            ck_assert_double_eq(paro_plan_scores_at(ref, l, h, lent->head_order[i])[2], best);
            compared++;
        }
    ck_assert_int_ge(compared, (int)(ref->n_layers * ref->heads / 2));
    paro_plan_free(ref);
    paro_plan_free(lent);
    free(journal);
    tu_captured_close(&cap);
}
END_TEST

static Suite *driver_suite(void)
{
    Suite *s = suite_create("driver");
    TCase *tc = tcase_create("lent sums");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, lent_sums_outlive_their_scoring);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(driver_suite());
}
