/* paro tests — `paro eval --device cuda` against the CPU reference.
 *
 * Runs without fork (CUDA must not be used across fork) and exits 77
 * ("skip") when there is no device.  Each case writes a planted capture,
 * calibrates a plan on its first sample (CPU), and evaluates it on the
 * others on the CPU (fp64) and on the GPU (f32 kernels, the basis samples'
 * tile statistics from the calibration kernels).  Every per-head metric and
 * every sweep point must agree within
 *     |gpu - cpu| <= 1e-3 * |cpu| + 1e-5
 * (stated in kernels/README.md; the worst relative difference of each case
 * is printed), and two GPU runs must give the same bits.
 */
#include <check.h>  /* START_TEST, ck_assert_* */
#include <math.h>   /* fabs, isnan */
#include <stdio.h>  /* printf */
#include <stdlib.h> /* free */
#include <string.h> /* memcmp */

#include "calibrate.h"
#include "eval.h"
#include "kernels.h"
#include "manifest.h"
#include "testutil.h"

typedef struct eval_case {
    const char *name;
    tu_capture cap;
    uint32_t bq, bk;
    double density;
    int sweep; /* with --density-sweep 0.1,0.3,0.6 (more sets than one launch takes) */
} eval_case;

static const eval_case cases[] = {
    {"d64, 64x64", {{3, 8, 12}, 8, 0, 1, 3, 64, 3, 1, 0, 11}, 64, 64, 0.25, 0},
    {"d64, text last, sweep", {{2, 9, 16}, 5, 1, 1, 2, 64, 3, 1, 0, 12}, 64, 64, 0.3, 1},
    {"d32, 128x64", {{2, 12, 20}, 0, 0, 1, 2, 32, 2, 1, 0, 13}, 128, 64, 0.4, 0},
    {"d128, 64x128", {{4, 6, 10}, 7, 0, 1, 2, 128, 2, 1, 0, 14}, 64, 128, 0.25, 1},
    /* every query attends to key 0 so strongly that the rest underflow:
     * rows whose kept sum falls below f32's range are redone on the host */
    {"d64, spike (rows redone in fp64)", {{2, 6, 8}, 4, 0, 1, 2, 64, 2, 1, 1, 15}, 64, 64, 0.2, 0},
};

static double worst;

static void close_enough(const char *what, double gpu, double cpu)
{
    if (isnan(cpu) || isnan(gpu)) {
        ck_assert_msg(isnan(cpu) && isnan(gpu), "%s: gpu %.9g cpu %.9g", what, gpu, cpu);
        return;
    }
    const double err = fabs(gpu - cpu);
    ck_assert_msg(err <= 1e-3 * fabs(cpu) + 1e-5, "%s: gpu %.9g cpu %.9g", what, gpu, cpu);
    if (fabs(cpu) > 1e-4 && err / fabs(cpu) > worst)
        worst = err / fabs(cpu);
}

START_TEST(gpu_eval_matches_cpu)
{
    const eval_case *c = &cases[_i];
    tu_captured m_cap;
    tu_captured_open(&m_cap, &c->cap);
    paro_manifest *m = m_cap.m;
    paro_calib_config cc;
    paro_calib_config_default(&cc);
    cc.block_q = c->bq;
    cc.block_k = c->bk;
    cc.target.value = c->density;
    cc.device = PARO_DEVICE_CPU;
    cc.threads = 4;
    uint32_t calib = 0;
    cc.samples = &calib;
    cc.n_samples = 1;
    paro_plan *plan = tu_calibrate(m, &cc);

    static const double sweep[3] = {0.1, 0.3, 0.6};
    paro_eval_config ec;
    paro_eval_config_default(&ec);
    ec.threads = 4;
    if (c->sweep) {
        ec.sweep = sweep;
        ec.n_sweep = 3;
    }
    paro_eval_result *r[3] = {NULL, NULL, NULL};
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    const paro_device devices[3] = {PARO_DEVICE_CPU, PARO_DEVICE_CUDA, PARO_DEVICE_CUDA};
    for (int i = 0; i < 3; i++) {
        ec.device = devices[i];
        ck_assert_msg(paro_eval(m, plan, &ec, &r[i], &ei) == PARO_OK, "%s: %s", c->name, ei.msg);
    }
    ck_assert_str_eq(r[0]->device, "cpu");
    ck_assert_str_eq(r[1]->device, "cuda");
    worst = 0.0;
    int differs = 0; /* heads whose chosen order is not capture order */
    for (uint32_t l = 0; l < r[0]->n_layers; l++)
        for (uint32_t h = 0; h < r[0]->heads; h++) {
            const double *a = paro_eval_head_metrics(r[0], l, h);
            const double *b = paro_eval_head_metrics(r[1], l, h);
            differs += r[0]->order[l * r[0]->heads + h] != 0;
            for (int x = 0; x < PARO_EVAL_N_METRICS; x++) {
                char what[96];
                snprintf(what, sizeof what, "%s: layer %u head %u %s", c->name, l, h,
                         paro_eval_metric_name(x));
                close_enough(what, b[x], a[x]);
            }
            for (size_t d = 0; d < r[0]->n_sweep; d++) {
                const double *sa = paro_eval_head_sweep(r[0], l, h, d);
                const double *sb = paro_eval_head_sweep(r[1], l, h, d);
                for (int x = 0; x < PARO_SWEEP_N_METRICS; x++) {
                    char what[96];
                    snprintf(what, sizeof what, "%s: head %u sweep %zu %s", c->name, h, d,
                             paro_eval_sweep_metric_name(x));
                    close_enough(what, sb[x], sa[x]);
                }
            }
        }
    /* run to run, the same bits */
    const size_t lh = (size_t)r[1]->n_layers * r[1]->heads;
    ck_assert_mem_eq(r[1]->metrics, r[2]->metrics, lh * PARO_EVAL_N_METRICS * sizeof(double));
    if (r[1]->n_sweep)
        ck_assert_mem_eq(r[1]->sweep, r[2]->sweep,
                         lh * r[1]->n_sweep * PARO_SWEEP_N_METRICS * sizeof(double));
    printf("  %-34s %u heads (%d in another order than capture's): worst relative "
           "difference %.2e\n",
           c->name, r[0]->heads, differs, worst);
    for (int i = 0; i < 3; i++)
        paro_eval_result_free(r[i]);
    paro_plan_free(plan);
    tu_captured_close(&m_cap);
}
END_TEST

int main(void)
{
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    if (paro_cuda_device_count(&ei) == 0) {
        fprintf(stderr, "SKIP: no CUDA device (%s)\n", ei.msg);
        return 77;
    }
    Suite *s = suite_create("cuda_eval");
    TCase *tc = tcase_create("eval");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, gpu_eval_matches_cpu, 0, (int)(sizeof cases / sizeof *cases));
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
