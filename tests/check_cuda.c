/* paro tests — the CUDA tile-statistics kernels against the CPU reference.
 *
 * Runs without fork (CUDA must not be used across fork, see
 * style-and-formats.md §3.4) and exits 77 ("skip") when there is no device.
 * Every case draws its inputs from a seeded generator; the seed is printed.
 *
 * Tolerances (stated in kernels/README.md): per tile,
 *     |gpu - cpu| <= 1e-3 * cpu + 1e-7
 * for mass and peak (a row's mass sums to 1, so 1e-7 is far below anything a
 * mask can see); the largest relative error over tiles with mass > 1e-6 is
 * printed for each case.
 */
#include <check.h>  /* START_TEST, ck_assert_* */
#include <math.h>   /* fabs, sqrt */
#include <stdio.h>  /* printf, fprintf */
#include <stdlib.h> /* malloc, free, getenv, strtoull */
#include <string.h> /* memcmp, memcpy */

#include "dtype.h"
#include "kernels.h"
#include "mask.h"
#include "metrics.h"
#include "select.h"
#include "stats.h"
#include "synth.h"
#include "testutil.h"
#include "tile_stats.h"

static uint64_t g_seed = 20261123;

typedef enum { INPUT_BF16, INPUT_F16, INPUT_F32 } input_kind;

typedef struct gpu_case {
    const char *name;
    uint32_t grid[3], text;
    int text_last;
    uint32_t heads, d, bq, bk, samples, buckets;
    input_kind input;
    double spread;
    double offset; /* added to Q, taken from K: every score negative when large */
    int jump;      /* keys from the 65th on get the offset added instead: their
                      scores pass the first 64's by far (the row pass rescales) */
} gpu_case;

static const gpu_case cases[] = {
    {"odd grid, text first, bf16", {3, 5, 7}, 5, 0, 3, 64, 64, 64, 1, 1, INPUT_BF16, 1.0, 0.0, 0},
    {"odd grid, text last, f32 (split)", {3, 5, 7}, 5, 1, 2, 64, 64, 64, 1, 1, INPUT_F32, 1.0, 0.0, 0},
    {"f16 input (split)", {2, 9, 11}, 3, 0, 2, 64, 64, 64, 1, 1, INPUT_F16, 1.5, 0.0, 0},
    {"image 1x24x32, d32, 128x64", {1, 24, 32}, 0, 0, 2, 32, 128, 64, 1, 1, INPUT_BF16, 1.0, 0.0, 0},
    {"d128, 64x128, sharp", {4, 6, 10}, 7, 0, 2, 128, 64, 128, 1, 1, INPUT_BF16, 2.0, 0.0, 0},
    {"128x128, three samples, two buckets", {2, 12, 20}, 9, 0, 2, 64, 128, 128, 3, 2, INPUT_BF16, 1.0, 0.0, 0},
    {"every score negative", {3, 8, 12}, 4, 0, 2, 64, 64, 64, 1, 1, INPUT_BF16, 1.0, 1.5, 0},
    {"later keys far higher", {3, 8, 12}, 4, 0, 2, 64, 64, 64, 1, 1, INPUT_BF16, 1.0, 3.0, 1},
    {"pairs and single orders, 64x128", {2, 9, 11}, 3, 0, 2, 64, 64, 128, 1, 1, INPUT_BF16, 1.0, 0.0, 0},
};
#define N_CASES (sizeof cases / sizeof *cases)

/* The designs of the CUDA backend (paro_cuda_design, kernels/kernels.h). */
#define N_DESIGNS 3
static const char *const design_names[N_DESIGNS] = {"one pass", "row pass", "pairs"};

/* Inputs of one sample, rounded to what a capture of that dtype holds. */
static void make_inputs(const gpu_case *c, uint32_t n, uint64_t seed, float *q, float *k)
{
    const size_t count = (size_t)c->heads * n * c->d;
    uint64_t rng = seed;
    for (size_t i = 0; i < count; i++) {
        q[i] = (float)(c->spread * tu_normal(&rng) + c->offset);
        k[i] = (float)(c->spread * tu_normal(&rng) - c->offset);
        if (c->jump && (i / c->d) % n >= 64)
            k[i] += (float)(2 * c->offset);
    }
    if (c->input == INPUT_F32)
        return;
    paro_dtype t = c->input == INPUT_BF16 ? PARO_DTYPE_BF16 : PARO_DTYPE_F16;
    uint16_t *half = malloc(count * sizeof *half);
    paro_convert_from_f32(t, q, half, count);
    paro_convert_to_f32(t, half, q, count);
    paro_convert_from_f32(t, k, half, count);
    paro_convert_to_f32(t, half, k, count);
    free(half);
}

static paro_cuda_ctx *open_ctx(const paro_tiling *t, uint32_t heads, uint32_t d, uint32_t buckets,
                               double scale, int design)
{
    uint32_t *perms = paro_tiling_flat_perms(t);
    paro_cuda_geometry g = {.n_tokens = t->n_tokens,
                            .head_dim = d,
                            .heads = heads,
                            .block_q = t->block_q,
                            .block_k = t->block_k,
                            .nq = t->nq,
                            .nk = t->nk,
                            .n_slots = (uint32_t)t->n_slots,
                            .perms = perms,
                            .n_buckets = buckets,
                            .scale = scale,
                            .design = design};
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_cuda_ctx *ctx = NULL;
    paro_err rc = paro_cuda_open(&ctx, 0, &g, &ei);
    free(perms);
    ck_assert_msg(rc == PARO_OK, "paro_cuda_open: %s", ei.msg);
    return ctx;
}

/* layer_end, added into fp64 arrays as the backend does. */
static paro_err layer_end_into(paro_cuda_ctx *ctx, double *mass, size_t n_mass, double *peak,
                               size_t n_peak, paro_errinfo *ei)
{
    const float *m, *p;
    paro_err rc = paro_cuda_layer_end(ctx, &m, &p, ei);
    if (rc)
        return rc;
    for (size_t i = 0; i < n_mass; i++)
        mass[i] += m[i];
    for (size_t i = 0; i < n_peak; i++)
        peak[i] += p[i];
    return PARO_OK;
}

/* Compares one accumulator array; returns the worst relative error seen on
 * tiles above 1e-6. */
static double compare(const char *what, const char *name, const double *gpu, const double *cpu,
                      size_t count)
{
    double worst = 0.0;
    for (size_t i = 0; i < count; i++) {
        double err = fabs(gpu[i] - cpu[i]);
        ck_assert_msg(err <= 1e-3 * cpu[i] + 1e-7, "%s: %s[%zu] gpu %.9g cpu %.9g", name, what, i,
                      gpu[i], cpu[i]);
        if (cpu[i] > 1e-6 && err / cpu[i] > worst)
            worst = err / cpu[i];
    }
    return worst;
}

START_TEST(kernels_match_cpu_reference)
{
    const gpu_case *c = &cases[_i / N_DESIGNS];
    const int design = _i % N_DESIGNS;
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_tiling t;
    ck_assert_int_eq(paro_tiling_init(&t, c->grid, c->text, c->text_last, c->bq, c->bk, &ei),
                     PARO_OK);
    const uint32_t n = t.n_tokens;
    const double scale = 1.0 / sqrt((double)c->d);
    const size_t nt = paro_tiling_tiles(&t), slots = (size_t)t.n_slots;
    paro_block_stats cpu, gpu;
    ck_assert_int_eq(paro_block_stats_init(&cpu, c->heads, c->buckets, (uint32_t)slots, t.nq, t.nk,
                                           &ei), PARO_OK);
    ck_assert_int_eq(paro_block_stats_init(&gpu, c->heads, c->buckets, (uint32_t)slots, t.nq, t.nk,
                                           &ei), PARO_OK);
    paro_cuda_ctx *ctx = open_ctx(&t, c->heads, c->d, c->buckets, scale, design);
    ck_assert_int_eq(paro_cuda_layer_begin(ctx, &ei), PARO_OK);

    double *mass = malloc(slots * nt * sizeof *mass), *peak = malloc(slots * nt * sizeof *peak);
    void *scratch = malloc(paro_tile_stats_scratch_bytes(&t, c->d));
    for (uint32_t s = 0; s < c->samples; s++) {
        float *q, *k;
        ck_assert_int_eq(paro_cuda_next_buffers(ctx, &q, &k, &ei), PARO_OK);
        make_inputs(c, n, g_seed + 100 * (uint64_t)(_i / N_DESIGNS) + s, q, k);
        const uint32_t bucket = s % c->buckets;
        for (uint32_t h = 0; h < c->heads; h++) {
            size_t off = (size_t)h * n * c->d;
            paro_tile_stats_cpu(&t, q + off, k + off, c->d, scale, mass, peak, scratch);
            paro_block_stats_add(&cpu, bucket, h, mass, peak);
        }
        ck_assert_msg(paro_cuda_submit(ctx, bucket, &ei) == PARO_OK, "submit: %s", ei.msg);
    }
    const size_t per_bucket = (size_t)c->heads * slots * nt;
    ck_assert_msg(layer_end_into(ctx, gpu.mass, per_bucket * c->buckets, gpu.peak, per_bucket,
                                 &ei) == PARO_OK,
                  "layer_end: %s", ei.msg);
    double wm = compare("mass", c->name, gpu.mass, cpu.mass, per_bucket * c->buckets);
    double wp = compare("peak", c->name, gpu.peak, cpu.peak, per_bucket);
    printf("  %-36s %-8s N=%-5u tiles %ux%u slots %zu: worst relative error mass %.2e, "
           "peak %.2e\n",
           c->name, design_names[design], n, t.nq, t.nk, slots, wm, wp);

    /* Run to run: the same inputs give the same bits. */
    double *again_mass = calloc(per_bucket * c->buckets, sizeof *again_mass);
    double *again_peak = calloc(per_bucket, sizeof *again_peak);
    ck_assert_int_eq(paro_cuda_layer_begin(ctx, &ei), PARO_OK);
    for (uint32_t s = 0; s < c->samples; s++) {
        float *q, *k;
        ck_assert_int_eq(paro_cuda_next_buffers(ctx, &q, &k, &ei), PARO_OK);
        make_inputs(c, n, g_seed + 100 * (uint64_t)(_i / N_DESIGNS) + s, q, k);
        ck_assert_int_eq(paro_cuda_submit(ctx, s % c->buckets, &ei), PARO_OK);
    }
    ck_assert_int_eq(layer_end_into(ctx, again_mass, per_bucket * c->buckets, again_peak,
                                    per_bucket, &ei),
                     PARO_OK);
    ck_assert_mem_eq(again_mass, gpu.mass, per_bucket * c->buckets * sizeof(double));
    ck_assert_mem_eq(again_peak, gpu.peak, per_bucket * sizeof(double));

    free(again_mass);
    free(again_peak);
    free(mass);
    free(peak);
    free(scratch);
    paro_cuda_close(ctx);
    paro_block_stats_free(&cpu);
    paro_block_stats_free(&gpu);
    paro_tiling_free(&t);
}
END_TEST

/* Planted heads of a CogVideoX-like layer (or a smaller one with
 * PARO_CUDA_SMALL=1): the same order on every head that is not a near-tie,
 * and masks that differ on at most 0.5% of tiles. */
static void planted_parity(const uint32_t grid[3], uint32_t text, uint32_t heads, int design)
{
    paro_synth_config sc = {.grid = {grid[0], grid[1], grid[2]},
                            .text_tokens = text,
                            .layers = 1,
                            .heads = heads,
                            .head_dim = 64,
                            .samples = 1,
                            .seed = g_seed};
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_tiling t;
    ck_assert_int_eq(paro_tiling_init(&t, sc.grid, text, 0, 64, 64, &ei), PARO_OK);
    const uint32_t n = t.n_tokens;
    const size_t nt = paro_tiling_tiles(&t), slots = (size_t)t.n_slots;
    const size_t count = (size_t)heads * n * 64;
    paro_block_stats cpu, gpu;
    ck_assert_int_eq(paro_block_stats_init(&cpu, heads, 1, (uint32_t)slots, t.nq, t.nk, &ei), PARO_OK);
    ck_assert_int_eq(paro_block_stats_init(&gpu, heads, 1, (uint32_t)slots, t.nq, t.nk, &ei), PARO_OK);
    paro_cuda_ctx *ctx = open_ctx(&t, heads, 64, 1, 0.125, design);
    ck_assert_int_eq(paro_cuda_layer_begin(ctx, &ei), PARO_OK);
    float *q, *k;
    ck_assert_int_eq(paro_cuda_next_buffers(ctx, &q, &k, &ei), PARO_OK);
    paro_synth_layer(&sc, 0, 0, q, k, NULL, 8);
    uint16_t *half = malloc(count * sizeof *half);
    paro_convert_from_f32(PARO_DTYPE_BF16, q, half, count);
    paro_convert_to_f32(PARO_DTYPE_BF16, half, q, count);
    paro_convert_from_f32(PARO_DTYPE_BF16, k, half, count);
    paro_convert_to_f32(PARO_DTYPE_BF16, half, k, count);
    free(half);
    ck_assert_int_eq(paro_cuda_submit(ctx, 0, &ei), PARO_OK);
    double *mass = malloc(slots * nt * sizeof *mass), *peak = malloc(slots * nt * sizeof *peak);
    void *scratch = malloc(paro_tile_stats_scratch_bytes(&t, 64));
    for (uint32_t h = 0; h < heads; h++) {
        paro_tile_stats_cpu(&t, q + (size_t)h * n * 64, k + (size_t)h * n * 64, 64, 0.125, mass,
                            peak, scratch);
        paro_block_stats_add(&cpu, 0, h, mass, peak);
    }
    ck_assert_int_eq(layer_end_into(ctx, gpu.mass, heads * slots * nt, gpu.peak,
                                    heads * slots * nt, &ei),
                     PARO_OK);
    for (uint32_t h = 0; h < heads; h++)
        gpu.count[h] = 1;

    void *score_scratch = malloc(paro_score_scratch_bytes(nt));
    uint8_t *keep_cpu = malloc(nt), *keep_gpu = malloc(nt);
    void *order_scratch = malloc(paro_mask_scratch_bytes(nt));
    paro_mask_target target = {PARO_TARGET_DENSITY, 0.25, 1, 0};
    size_t differing = 0, near_ties = 0;
    for (uint32_t h = 0; h < heads; h++) {
        paro_head_choice a, b;
        paro_score_head(&t, &cpu, h, 0.5, 0.95, &a, score_scratch);
        paro_score_head(&t, &gpu, h, 0.5, 0.95, &b, score_scratch);
        if (a.margin < PARO_NEAR_TIE) {
            near_ties++;
            continue;
        }
        ck_assert_msg(a.order == b.order, "head %u: cpu chose %s (margin %.2e), gpu %s", h,
                      paro_order_name(a.order), a.margin, paro_order_name(b.order));
        const uint32_t slot = (uint32_t)t.slot_of_order[a.order];
        double dens, rec;
        paro_build_mask(&t, paro_block_stats_mass(&cpu, 0, h, slot), &target, keep_cpu, &dens,
                        &rec, order_scratch);
        paro_build_mask(&t, paro_block_stats_mass(&gpu, 0, h, slot), &target, keep_gpu, &dens,
                        &rec, order_scratch);
        for (size_t i = 0; i < nt; i++)
            differing += keep_cpu[i] != keep_gpu[i];
    }
    printf("  planted %ux%ux%u+%u, %u heads, %s: %zu near-ties, masks differ on %zu of %zu tiles\n",
           grid[0], grid[1], grid[2], text, heads, design_names[design], near_ties, differing,
           nt * heads);
    ck_assert_uint_le(differing * 200, nt * heads); /* <= 0.5% */
    free(score_scratch);
    free(keep_cpu);
    free(keep_gpu);
    free(order_scratch);
    free(mass);
    free(peak);
    free(scratch);
    paro_cuda_close(ctx);
    paro_block_stats_free(&cpu);
    paro_block_stats_free(&gpu);
    paro_tiling_free(&t);
}

START_TEST(planted_orders_and_masks_agree)
{
    planted_parity((uint32_t[3]){5, 12, 16}, 24, 8, _i);
}
END_TEST

START_TEST(planted_reference_layer)
{
    /* The reference shape of DESIGN.md (13x30x45 + 226 text); the CPU side
     * is the slow part, so a few heads. */
    planted_parity((uint32_t[3]){13, 30, 45}, 226, 2, _i ? PARO_CUDA_PAIRS : PARO_CUDA_ONE_PASS);
}
END_TEST

/* Two layers in flight (the second begun before the first is collected),
 * the second read through bf16 buffers: both match the CPU, and the bf16
 * buffers give the bits the f32 ones give for the same values. */
START_TEST(pipelined_layers_and_bf16_buffers)
{
    const gpu_case *c = &cases[0];
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_tiling t;
    ck_assert_int_eq(paro_tiling_init(&t, c->grid, c->text, c->text_last, c->bq, c->bk, &ei),
                     PARO_OK);
    const uint32_t n = t.n_tokens;
    const double scale = 1.0 / sqrt((double)c->d);
    const size_t nt = paro_tiling_tiles(&t), slots = (size_t)t.n_slots;
    const size_t count = (size_t)c->heads * n * c->d, acc = (size_t)c->heads * slots * nt;
    float *inputs[2][2]; /* [layer][q, k] */
    for (int l = 0; l < 2; l++) {
        inputs[l][0] = malloc(count * sizeof(float));
        inputs[l][1] = malloc(count * sizeof(float));
        make_inputs(c, n, g_seed + 7000 + (uint64_t)l, inputs[l][0], inputs[l][1]);
    }
    paro_cuda_ctx *ctx = open_ctx(&t, c->heads, c->d, 1, scale, 0);
    for (int l = 0; l < 2; l++) {
        ck_assert_int_eq(paro_cuda_layer_begin(ctx, &ei), PARO_OK);
        if (l == 0) {
            float *q, *k;
            ck_assert_int_eq(paro_cuda_next_buffers(ctx, &q, &k, &ei), PARO_OK);
            memcpy(q, inputs[l][0], count * sizeof(float));
            memcpy(k, inputs[l][1], count * sizeof(float));
        } else {
            uint16_t *q, *k;
            ck_assert_int_eq(paro_cuda_next_buffers_bf16(ctx, &q, &k, &ei), PARO_OK);
            paro_convert_from_f32(PARO_DTYPE_BF16, inputs[l][0], q, count);
            paro_convert_from_f32(PARO_DTYPE_BF16, inputs[l][1], k, count);
        }
        ck_assert_msg(paro_cuda_submit(ctx, 0, &ei) == PARO_OK, "submit: %s", ei.msg);
        ck_assert_msg(paro_cuda_layer_seal(ctx, &ei) == PARO_OK, "seal: %s", ei.msg);
    }
    /* a third layer cannot begin while two wait */
    ck_assert_int_eq(paro_cuda_layer_begin(ctx, &ei), PARO_ERR_USAGE);
    paro_errinfo_clear(&ei);
    double *gpu[2][2], *cpu_mass = calloc(acc, sizeof(double)), *cpu_peak = calloc(acc, sizeof(double));
    double *mass = malloc(slots * nt * sizeof *mass), *peak = malloc(slots * nt * sizeof *peak);
    void *scratch = malloc(paro_tile_stats_scratch_bytes(&t, c->d));
    for (int l = 0; l < 2; l++) {
        gpu[l][0] = calloc(acc, sizeof(double));
        gpu[l][1] = calloc(acc, sizeof(double));
        ck_assert_msg(layer_end_into(ctx, gpu[l][0], acc, gpu[l][1], acc, &ei) == PARO_OK,
                      "layer_end: %s", ei.msg);
    }
    for (int l = 0; l < 2; l++) {
        memset(cpu_mass, 0, acc * sizeof(double));
        memset(cpu_peak, 0, acc * sizeof(double));
        for (uint32_t h = 0; h < c->heads; h++) {
            size_t off = (size_t)h * n * c->d;
            paro_tile_stats_cpu(&t, inputs[l][0] + off, inputs[l][1] + off, c->d, scale, mass,
                                peak, scratch);
            for (size_t i = 0; i < slots * nt; i++) {
                cpu_mass[h * slots * nt + i] = mass[i];
                cpu_peak[h * slots * nt + i] = peak[i];
            }
        }
        compare("mass", l ? "pipelined, bf16 buffers" : "pipelined", gpu[l][0], cpu_mass, acc);
        compare("peak", l ? "pipelined, bf16 buffers" : "pipelined", gpu[l][1], cpu_peak, acc);
    }
    /* the second layer again through f32 buffers */
    double *again_mass = calloc(acc, sizeof(double)), *again_peak = calloc(acc, sizeof(double));
    float *q, *k;
    ck_assert_int_eq(paro_cuda_layer_begin(ctx, &ei), PARO_OK);
    ck_assert_int_eq(paro_cuda_next_buffers(ctx, &q, &k, &ei), PARO_OK);
    memcpy(q, inputs[1][0], count * sizeof(float));
    memcpy(k, inputs[1][1], count * sizeof(float));
    ck_assert_int_eq(paro_cuda_submit(ctx, 0, &ei), PARO_OK);
    ck_assert_int_eq(layer_end_into(ctx, again_mass, acc, again_peak, acc, &ei), PARO_OK);
    ck_assert_mem_eq(again_mass, gpu[1][0], acc * sizeof(double));
    ck_assert_mem_eq(again_peak, gpu[1][1], acc * sizeof(double));
    for (int l = 0; l < 2; l++) {
        free(inputs[l][0]);
        free(inputs[l][1]);
        free(gpu[l][0]);
        free(gpu[l][1]);
    }
    free(again_mass);
    free(again_peak);
    free(cpu_mass);
    free(cpu_peak);
    free(mass);
    free(peak);
    free(scratch);
    paro_cuda_close(ctx);
    paro_tiling_free(&t);
}
END_TEST

START_TEST(unsupported_shapes_are_refused)
{
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_cuda_geometry g = {.n_tokens = 100, .head_dim = 48, .heads = 1, .block_q = 64,
                            .block_k = 64, .nq = 2, .nk = 2, .n_slots = 1, .n_buckets = 1};
    ck_assert_int_eq(paro_cuda_supports(&g, &ei), 0);
    ck_assert_ptr_nonnull(strstr(ei.msg, "head_dim"));
    paro_errinfo_clear(&ei);
    g.head_dim = 64;
    g.block_k = 32;
    ck_assert_int_eq(paro_cuda_supports(&g, &ei), 0);
    ck_assert_ptr_nonnull(strstr(ei.msg, "blocks"));
    g.block_k = 128;
    ck_assert_int_eq(paro_cuda_supports(&g, &ei), 1);
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
    const char *seed = getenv("PARO_TEST_SEED");
    if (seed)
        g_seed = strtoull(seed, NULL, 10);
    char desc[256];
    paro_cuda_device_describe(0, desc, sizeof desc, NULL);
    printf("device %s, seed %llu (PARO_TEST_SEED to repeat)\n", desc, (unsigned long long)g_seed);

    Suite *s = suite_create("cuda");
    TCase *tc = tcase_create("kernels");
    tcase_add_loop_test(tc, kernels_match_cpu_reference, 0, N_DESIGNS * (int)N_CASES);
    tcase_add_test(tc, pipelined_layers_and_bf16_buffers);
    tcase_add_test(tc, unsupported_shapes_are_refused);
    tcase_add_loop_test(tc, planted_orders_and_masks_agree, 0, N_DESIGNS);
    if (!getenv("PARO_CUDA_SMALL"))
        tcase_add_loop_test(tc, planted_reference_layer, 0, 2);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
