/* paro — `paro eval --device cuda`: the glue between the evaluation driver
 * (calib/eval.c) and the GPU.  The tile statistics of the basis samples come
 * from the calibration backend's kernels, every sample's numbers from the
 * evaluation kernels (kernels/eval.cu, f32); rows whose kept sum of
 * exponentials underflows f32 are redone here in fp64 by the reference's own
 * code. */
#include "eval_gpu.h"

#include <stdlib.h> /* malloc, free */
#include <string.h> /* memset, memcpy */

void paro_eval_gpu_close(paro_eval_gpu *g)
{
    if (g->stats.close)
        g->stats.close(&g->stats);
    paro_cuda_eval_close(g->ev);
    free(g->slot);
    free(g->set_side);
    free(g->keep);
    free(g->out.norm_o);
    free(g->out.sets);
    free(g->out.quant);
    free(g->out.flags);
    free(g->sums);
    free(g->row_s);
    free(g->row_e);
    memset(g, 0, sizeof *g);
}

paro_err paro_eval_gpu_open(paro_eval_gpu *g, const paro_tiling *t, const paro_plan *plan, size_t n_sets,
                         paro_errinfo *ei)
{
    memset(g, 0, sizeof *g);
    paro_errinfo why;
    paro_errinfo_clear(&why);
    if (paro_cuda_device_count(&why) < 1)
        return paro_error(ei, PARO_ERR_NO_CUDA, NULL, PARO_NO_OFFSET,
                          "eval found no cuda device (%s)", why.msg);
    const size_t n = t->n_tokens, nt = paro_tiling_tiles(t), heads = plan->heads;
    uint32_t *perms = paro_tiling_flat_perms(t);
    if (!perms)
        return paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory");
    paro_cuda_eval_geometry eg = {.n_tokens = t->n_tokens,
                                  .head_dim = plan->head_dim,
                                  .heads = plan->heads,
                                  .block_q = t->block_q,
                                  .block_k = t->block_k,
                                  .nq = t->nq,
                                  .nk = t->nk,
                                  .n_slots = (uint32_t)t->n_slots,
                                  .perms = perms,
                                  .scale = plan->scale,
                                  .n_sets = (uint32_t)n_sets};
    paro_backend_shape shape = {t, plan->heads, plan->head_dim, plan->n_buckets, plan->scale};
    paro_err rc = paro_cuda_eval_supports(&eg, ei) ? PARO_OK : PARO_ERR_USAGE;
    if (!rc)
        rc = paro_backend_cuda_open(&g->stats, &shape, 0, ei);
    if (!rc)
        rc = paro_cuda_eval_open(&g->ev, 0, &eg, ei);
    free(perms);
    if (rc) {
        paro_eval_gpu_close(g);
        return rc;
    }
    g->out.cap_flags = 1u << 16;
    g->slot = malloc(heads * 2 * sizeof *g->slot);
    g->set_side = malloc(n_sets * sizeof *g->set_side);
    g->keep = malloc(heads * n_sets * nt);
    g->out.norm_o = malloc(heads * sizeof *g->out.norm_o);
    g->out.sets = malloc(heads * n_sets * 4 * sizeof *g->out.sets);
    g->out.quant = malloc(heads * 4 * sizeof *g->out.quant);
    g->out.flags = malloc((size_t)g->out.cap_flags * 3 * sizeof *g->out.flags);
    g->sums = malloc(n_sets * sizeof *g->sums);
    g->row_s = malloc(n * sizeof *g->row_s);
    g->row_e = malloc(n * sizeof *g->row_e);
    if (!g->slot || !g->set_side || !g->keep || !g->out.norm_o || !g->out.sets ||
        !g->out.quant || !g->out.flags || !g->sums || !g->row_s || !g->row_e) {
        paro_eval_gpu_close(g);
        return paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory");
    }
    for (size_t m = 0; m < n_sets; m++)
        g->set_side[m] = SET_IS_CHOSEN(m) ? 1 : 0;
    return PARO_OK;
}

/* One row of one head redone in fp64 for one mask set (its kept sum of
 * exponentials underflowed f32): the dense output from all keys, the
 * renormalised one from the kept keys' own maximum (as the CPU reference
 * does for its own underflow), and their sums into ms. */
static void redo_row(const layer_ctx *cx, paro_eval_gpu *g, uint32_t h, size_t set, uint32_t row,
                         mask_sums *ms)
{
    const paro_tiling *t = cx->t;
    const size_t n = cx->n, d = cx->d, off = (size_t)h * n * d;
    const float *q = cx->q + off + (size_t)row * d, *k = cx->k + off, *v = cx->v + off;
    double *s = g->row_s, *e = g->row_e;
    for (size_t j = 0; j < n; j++) {
        double acc = (double)q[0] * k[j * d];
        for (size_t c = 1; c < d; c++)
            acc += (double)q[c] * k[j * d + c];
        s[j] = acc;
    }
    const double z = paro_row_exponentials(s, n, cx->scale, e);
    double o[128], om[128]; /* the eval kernels take head_dim <= 128 */
    for (size_t c = 0; c < d; c++) {
        double acc = 0.0;
        for (size_t j = 0; j < n; j++)
            acc += e[j] * v[j * d + c];
        o[c] = acc / z;
    }
    const int slot = SET_IS_CHOSEN(set) ? cx->slot_of_head[h] : cx->capture_slot;
    const uint8_t *keep =
        mask_at(cx, h, set, cx->sample_bucket) + (size_t)t->qblock[slot][row] * t->nk;
    paro_eval_kept_softmax_row(t, t->perm[slot], keep, s, cx->scale, v, d, om);
    for (size_t c = 0; c < d; c++) {
        const double diff = om[c] - o[c];
        ms->err2 += diff * diff;
        ms->dot += om[c] * o[c];
        ms->norm2 += om[c] * om[c];
    }
}

/* Evaluates the sample in cx->q, k, v (the eval context's buffers) on the
 * GPU and adds each head's metrics. */
paro_err paro_eval_gpu_sample(layer_ctx *cx, paro_eval_gpu *g, paro_errinfo *ei)
{
    const size_t nt = cx->nt, n_sets = cx->n_sets;
    for (uint32_t h = 0; h < cx->heads; h++) {
        g->slot[2 * h] = cx->capture_slot;
        g->slot[2 * h + 1] = cx->slot_of_head[h];
        for (size_t m = 0; m < n_sets; m++)
            memcpy(g->keep + ((size_t)h * n_sets + m) * nt, mask_at(cx, h, m, cx->sample_bucket),
                   nt);
    }
    paro_cuda_eval_sample smp = {g->slot, g->set_side, g->keep};
    paro_err rc = paro_cuda_eval_run(g->ev, &smp, &g->out, ei);
    if (rc)
        return rc;
    size_t f = 0; /* the flagged rows, sorted by head, set, row */
    for (uint32_t h = 0; h < cx->heads; h++) {
        for (size_t m = 0; m < n_sets; m++) {
            const double *x = g->out.sets + ((size_t)h * n_sets + m) * 4;
            g->sums[m] = (mask_sums){x[0], x[1], x[2], x[3]};
        }
        for (; f < g->out.n_flags && g->out.flags[3 * f] == h; f++)
            redo_row(cx, g, h, g->out.flags[3 * f + 1], g->out.flags[3 * f + 2],
                         &g->sums[g->out.flags[3 * f + 1]]);
        const double *qu = g->out.quant + (size_t)h * 4;
        paro_eval_add_head_result(cx, h, g->out.norm_o[h], g->sums, qu, qu + 2);
    }
    return PARO_OK;
}
