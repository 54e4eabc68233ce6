/* paro benchmark — GPU time of the tile-statistics kernels on one
 * layer-sample of a capture, and the device memory they hold.
 *
 *   bench_cuda MANIFEST [LAYER [REPEAT [BLOCK [DESIGN]]]]
 *
 * Prints one JSON object: median and minimum kernel milliseconds over REPEAT
 * runs (row statistics + every distinct order, timed with CUDA events), the
 * device bytes held, and the shape.  DESIGN (paro_cuda_design, kernels.h)
 * picks how the orders are covered: 0 the first order with the row
 * statistics (the default), 1 a row pass then each order, 2 a row pass then
 * pairs of orders in one sweep each.  The sample goes
 * to the GPU as bf16 when the capture holds bf16.  Used by
 * tests/bench/calibrate_cuda.py. */
#include <stdio.h>  /* printf, fprintf */
#include <stdlib.h> /* atoi, qsort, malloc */
#include <math.h>   /* sqrt */

#include "kernels.h"
#include "manifest.h"
#include "tile_stats.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int fail(const paro_errinfo *ei)
{
    char buf[1200];
    fprintf(stderr, "bench_cuda: %s\n", paro_errinfo_format(ei, buf, sizeof buf));
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_cuda MANIFEST [LAYER [REPEAT [BLOCK [DESIGN]]]]\n");
        return 2;
    }
    const uint32_t layer = argc > 2 ? (uint32_t)atoi(argv[2]) : 0;
    const int repeat = argc > 3 ? atoi(argv[3]) : 10;
    const uint32_t block = argc > 4 ? (uint32_t)atoi(argv[4]) : 64;
    const int design = argc > 5 ? atoi(argv[5]) : 0;
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_manifest *m = NULL;
    if (paro_manifest_load(argv[1], &m, &ei))
        return fail(&ei);
    paro_tiling t;
    if (paro_tiling_init(&t, m->grid, m->text_tokens, m->text_last, block, block, &ei))
        return fail(&ei);
    uint32_t *perms = paro_tiling_flat_perms(&t);
    paro_cuda_geometry g = {.n_tokens = t.n_tokens, .head_dim = m->head_dim, .heads = m->heads,
                            .block_q = block, .block_k = block, .nq = t.nq, .nk = t.nk,
                            .n_slots = (uint32_t)t.n_slots, .perms = perms, .n_buckets = 1,
                            .scale = m->scale, .design = design};
    paro_cuda_ctx *ctx = NULL;
    if (paro_cuda_open(&ctx, 0, &g, &ei))
        return fail(&ei);
    paro_sample_file *sf = NULL;
    paro_dtype dtype = PARO_DTYPE_F32;
    if (paro_sample_open(m, 0, &sf, &ei) || paro_sample_dtype(sf, PARO_KIND_Q, layer, &dtype, &ei))
        return fail(&ei);
    if (dtype == PARO_DTYPE_BF16) {
        uint16_t *q, *k;
        if (paro_cuda_next_buffers_bf16(ctx, &q, &k, &ei) ||
            paro_sample_read_heads_bf16(sf, PARO_KIND_Q, layer, 0, m->heads, q, &ei) ||
            paro_sample_read_heads_bf16(sf, PARO_KIND_K, layer, 0, m->heads, k, &ei))
            return fail(&ei);
    } else {
        float *q, *k;
        if (paro_cuda_next_buffers(ctx, &q, &k, &ei) ||
            paro_sample_read(sf, PARO_KIND_Q, layer, q, &ei) ||
            paro_sample_read(sf, PARO_KIND_K, layer, k, &ei))
            return fail(&ei);
    }
    paro_sample_close(sf);
    double *ms = malloc((size_t)(repeat + 1) * sizeof *ms);
    const float *mass, *peak;
    for (int r = 0; r <= repeat; r++) { /* run 0 warms up */
        if (paro_cuda_layer_begin(ctx, &ei) || paro_cuda_submit(ctx, 0, &ei) ||
            paro_cuda_layer_end(ctx, &mass, &peak, &ei))
            return fail(&ei);
        ms[r] = paro_cuda_last_layer_ms(ctx);
    }
    qsort(ms + 1, (size_t)repeat, sizeof *ms, cmp_double);
    char desc[256];
    paro_cuda_device_describe(0, desc, sizeof desc, NULL);
    printf("{\"device\": \"%s\", \"design\": %d, \"tokens\": %u, \"heads\": %u, \"head_dim\": %u, \"block\": %u, "
           "\"slots\": %d, \"repeat\": %d, \"kernel_ms_median\": %.4f, \"kernel_ms_min\": %.4f, "
           "\"device_bytes\": %zu}\n",
           desc, design, t.n_tokens, m->heads, m->head_dim, block, t.n_slots, repeat,
           ms[1 + repeat / 2], ms[1], paro_cuda_device_bytes(ctx));
    paro_cuda_close(ctx);
    paro_manifest_free(m);
    paro_tiling_free(&t);
    free(perms);
    free(ms);
    return 0;
}
