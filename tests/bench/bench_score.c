/* paro benchmark — CPU time of scoring a layer's heads and building their
 * masks, on one thread, at the reference shape (48 heads, grid 13x30x45 plus
 * 226 text tokens, blocks 64: 278 x 278 tiles, 6 distinct orders).
 *
 *   bench_score [float|double [REPEAT [HEADS [THREADS]]]]
 *
 * Tile masses are random but shaped like attention (mass falls off with the
 * distance from the diagonal, log-normal noise, some empty tiles): `float`
 * makes them exactly representable as float, as the CUDA backend gives
 * them, `double` general doubles, as the CPU reference gives them.  Prints
 * one JSON object: per head, the minimum and median over REPEAT runs of the
 * milliseconds (thread CPU time) paro_score_head (all orders) and paro_build_mask (density
 * 0.25, text kept) take, and a checksum of the results so that two builds
 * can be compared.  With THREADS > 1, also the wall-clock milliseconds of the
 * whole layer (every head scored and masked) on that many threads, heads
 * handed out as paro calibrate does. */
#include <math.h>   /* exp, fabs */
#include <stdint.h> /* uint64_t */
#include <stdio.h>  /* printf, fprintf */
#include <stdlib.h> /* atoi, malloc, qsort */
#include <string.h> /* strcmp */
#include <time.h>   /* clock_gettime */

#include "mask.h"
#include "parallel.h"
#include "select.h"
#include "stats.h"
#include "tile_stats.h"

static uint64_t rng_next(uint64_t *s) /* splitmix64 */
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static double rng_uniform(uint64_t *s)
{
    return (double)(rng_next(s) >> 11) * 0x1p-53;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); /* not the time others run */
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static double wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* One head of the layer on a worker: its scores, then its mask. */
typedef struct layer_ctx {
    const paro_tiling *t;
    const paro_block_stats *st;
    const paro_mask_target *tg;
    uint8_t *keep;
    unsigned char *scratch; /* [workers][bytes] */
    size_t bytes;
} layer_ctx;

static void layer_head(void *p, uint32_t h, int worker)
{
    layer_ctx *cx = p;
    const size_t nt = paro_tiling_tiles(cx->t);
    void *scratch = cx->scratch + (size_t)worker * cx->bytes;
    paro_head_choice c;
    paro_score_head(cx->t, cx->st, h, 0.5, 0.95, &c, scratch);
    double density, recall;
    paro_build_mask(cx->t,
                    paro_block_stats_mass(cx->st, 0, h, (uint32_t)cx->t->slot_of_order[c.order]),
                    cx->tg, cx->keep + h * nt, &density, &recall, scratch);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    const int as_float = argc < 2 || strcmp(argv[1], "double") != 0;
    const int repeat = argc > 2 ? atoi(argv[2]) : 5;
    const uint32_t heads = argc > 3 ? (uint32_t)atoi(argv[3]) : 48;
    const int threads = argc > 4 ? atoi(argv[4]) : 1;
    if (repeat < 1 || heads < 1 || threads < 1) {
        fprintf(stderr, "usage: bench_score [float|double [REPEAT [HEADS [THREADS]]]]\n");
        return 2;
    }
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_tiling t;
    if (paro_tiling_init(&t, (uint32_t[3]){13, 30, 45}, 226, 0, 64, 64, &ei)) {
        fprintf(stderr, "bench_score: %s\n", ei.msg);
        return 1;
    }
    const size_t nt = paro_tiling_tiles(&t);
    paro_block_stats st;
    if (paro_block_stats_init(&st, heads, 1, (uint32_t)t.n_slots, t.nq, t.nk, &ei)) {
        fprintf(stderr, "bench_score: %s\n", ei.msg);
        return 1;
    }
    uint64_t rng = 1;
    for (uint32_t h = 0; h < heads; h++)
        for (int s = 0; s < t.n_slots; s++) {
            double *mass = (double *)paro_block_stats_mass(&st, 0, h, (uint32_t)s);
            double *peak = (double *)paro_block_stats_peak(&st, h, (uint32_t)s);
            const double rate = 0.02 + 0.1 * rng_uniform(&rng);
            for (uint32_t a = 0; a < t.nq; a++)
                for (uint32_t b = 0; b < t.nk; b++) {
                    size_t i = (size_t)a * t.nk + b;
                    double u = rng_uniform(&rng), noise = 0.0;
                    for (int j = 0; j < 4; j++)
                        noise += rng_uniform(&rng) - 0.5;
                    double m = u < 0.03 ? 0.0
                                        : 64.0 * exp(-rate * fabs((double)a - (double)b) +
                                                     3.0 * noise);
                    if (as_float)
                        m = (double)(float)m;
                    mass[i] = m;
                    peak[i] = as_float ? (double)(float)(m / 64.0 * (1.0 + u))
                                       : m / 64.0 * (1.0 + u);
                }
        }
    for (uint32_t h = 0; h < heads; h++)
        st.count[h] = 1;

    void *score_scratch = malloc(paro_score_scratch_bytes(nt));
    void *mask_scratch = malloc(paro_mask_scratch_bytes(nt));
    uint8_t *keep = malloc(heads * nt);
    double *score_ms = malloc((size_t)repeat * sizeof *score_ms);
    double *mask_ms = malloc((size_t)repeat * sizeof *mask_ms);
    int *chosen = malloc(heads * sizeof *chosen);
    const paro_mask_target tg = {PARO_TARGET_DENSITY, 0.25, 1, 0};
    double checksum = 0.0;
    for (int r = 0; r <= repeat; r++) { /* run 0 warms up */
        double sum_check = 0.0;
        double t0 = now_ms();
        for (uint32_t h = 0; h < heads; h++) {
            paro_head_choice c;
            paro_score_head(&t, &st, h, 0.5, 0.95, &c, score_scratch);
            chosen[h] = c.order;
            for (int o = 0; o < PARO_N_ORDERS; o++)
                sum_check += c.scores[o][0] + c.scores[o][1] + c.scores[o][2];
        }
        double t1 = now_ms();
        for (uint32_t h = 0; h < heads; h++) {
            double density, recall;
            const double *mass =
                paro_block_stats_mass(&st, 0, h, (uint32_t)t.slot_of_order[chosen[h]]);
            paro_build_mask(&t, mass, &tg, keep + h * nt, &density, &recall, mask_scratch);
            sum_check += density + recall;
        }
        double t2 = now_ms();
        for (size_t i = 0; i < heads * nt; i++)
            sum_check += keep[i] ? (double)(i % 7) : 0.0;
        if (r > 0) {
            score_ms[r - 1] = (t1 - t0) / heads;
            mask_ms[r - 1] = (t2 - t1) / heads;
        }
        checksum = sum_check;
    }
    qsort(score_ms, (size_t)repeat, sizeof *score_ms, cmp_double);
    qsort(mask_ms, (size_t)repeat, sizeof *mask_ms, cmp_double);
    printf("{\"masses\": \"%s\", \"heads\": %u, \"tiles\": %zu, \"slots\": %d, \"repeat\": %d, "
           "\"score_ms_min\": %.4f, \"score_ms_median\": %.4f, "
           "\"mask_ms_min\": %.4f, \"mask_ms_median\": %.4f, \"checksum\": %.17g",
           as_float ? "float" : "double", heads, nt, t.n_slots, repeat, score_ms[0],
           score_ms[repeat / 2], mask_ms[0], mask_ms[repeat / 2], checksum);
    if (threads > 1) {
        const size_t score_bytes = paro_score_scratch_bytes(nt),
                     mask_bytes = paro_mask_scratch_bytes(nt);
        layer_ctx cx = {&t, &st, &tg, keep, NULL,
                        ((score_bytes > mask_bytes ? score_bytes : mask_bytes) + 63) / 64 * 64};
        cx.scratch = malloc((size_t)threads * cx.bytes);
        double *layer_ms = malloc((size_t)repeat * sizeof *layer_ms);
        for (int r = 0; r <= repeat; r++) {
            double t0 = wall_ms();
            paro_parallel_for(threads, heads, layer_head, &cx);
            if (r > 0)
                layer_ms[r - 1] = wall_ms() - t0;
        }
        qsort(layer_ms, (size_t)repeat, sizeof *layer_ms, cmp_double);
        printf(", \"threads\": %d, \"layer_ms_min\": %.4f, \"layer_ms_median\": %.4f", threads,
               layer_ms[0], layer_ms[repeat / 2]);
        free(layer_ms);
        free(cx.scratch);
    }
    printf("}\n");
    free(score_scratch);
    free(mask_scratch);
    free(keep);
    free(score_ms);
    free(mask_ms);
    free(chosen);
    paro_block_stats_free(&st);
    paro_tiling_free(&t);
    return 0;
}
