/* paro — tilings of the permuted attention map and the CPU reference of the
 * tile-statistics kernel. */
#include "tile_stats.h"

#include <math.h>   /* exp */
#include <stdlib.h> /* calloc, malloc, free */
#include <string.h> /* memset, memcpy */

#include "plan.h" /* PARO_PLAN_MAX_BLOCKS */

#define PANEL_ROWS 8 /* query rows whose scores are computed together */

void paro_tiling_free(paro_tiling *t)
{
    for (int s = 0; s < PARO_N_ORDERS; s++) {
        free(t->perm[s]);
        free(t->qblock[s]);
        t->perm[s] = t->qblock[s] = NULL;
    }
    free(t->area);
    t->area = NULL;
}

paro_err paro_tiling_init(paro_tiling *t, const uint32_t grid[3], uint32_t text_tokens,
                          int text_last, uint32_t block_q, uint32_t block_k,
                          paro_errinfo *ei)
{
    memset(t, 0, sizeof *t);
    uint64_t visual = (uint64_t)grid[0] * grid[1] * grid[2];
    uint64_t n = visual + text_tokens;
    if (grid[0] == 0 || grid[1] == 0 || grid[2] == 0)
        return paro_error(ei, PARO_ERR_USAGE, NULL, PARO_NO_OFFSET, "grid has a zero axis");
    if (n >= (1u << 31))
        return paro_error(ei, PARO_ERR_LIMIT, NULL, PARO_NO_OFFSET,
                          "too many tokens (%llu)", (unsigned long long)n);
    if (block_q == 0 || block_k == 0)
        return paro_error(ei, PARO_ERR_USAGE, NULL, PARO_NO_OFFSET, "block size must be >= 1");
    t->grid[0] = grid[0];
    t->grid[1] = grid[1];
    t->grid[2] = grid[2];
    t->text_tokens = text_tokens;
    t->text_last = text_last;
    t->n_tokens = (uint32_t)n;
    t->block_q = block_q;
    t->block_k = block_k;
    t->nq = (uint32_t)((n + block_q - 1) / block_q);
    t->nk = (uint32_t)((n + block_k - 1) / block_k);
    if (t->nq > PARO_PLAN_MAX_BLOCKS || t->nk > PARO_PLAN_MAX_BLOCKS)
        return paro_error(ei, PARO_ERR_LIMIT, NULL, PARO_NO_OFFSET,
                          "blocks %ux%u cut %u tokens into %u x %u tiles; at most %u blocks "
                          "per axis are allowed",
                          block_q, block_k, t->n_tokens, t->nq, t->nk, PARO_PLAN_MAX_BLOCKS);
    t->text_begin = text_last ? (uint32_t)visual : 0;
    t->text_end = t->text_begin + text_tokens;

    int canonical[PARO_N_ORDERS];
    paro_order_canonical(grid, canonical);
    t->n_slots = 0;
    for (int o = 0; o < PARO_N_ORDERS; o++) {
        if (canonical[o] == o) {
            t->slot_order[t->n_slots] = o;
            t->slot_of_order[o] = t->n_slots++;
        } else {
            t->slot_of_order[o] = t->slot_of_order[canonical[o]];
        }
    }
    size_t nt = (size_t)t->nq * t->nk;
    t->area = malloc(nt * sizeof *t->area);
    for (int s = 0; s < t->n_slots; s++) {
        t->perm[s] = malloc((size_t)n * sizeof(uint32_t));
        t->qblock[s] = malloc((size_t)n * sizeof(uint32_t));
        if (!t->perm[s] || !t->qblock[s])
            break;
        paro_order_permutation(t->slot_order[s], grid, text_tokens, text_last, t->perm[s]);
        for (uint32_t p = 0; p < n; p++)
            t->qblock[s][t->perm[s][p]] = p / block_q;
    }
    for (int s = 0; s < t->n_slots; s++)
        if (!t->perm[s] || !t->qblock[s] || !t->area) {
            paro_tiling_free(t);
            return paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET,
                              "out of memory for the order maps");
        }
    for (uint32_t a = 0; a < t->nq; a++) {
        uint32_t rows = a + 1 < t->nq ? block_q : t->n_tokens - a * block_q;
        for (uint32_t b = 0; b < t->nk; b++) {
            uint32_t cols = b + 1 < t->nk ? block_k : t->n_tokens - b * block_k;
            t->area[(size_t)a * t->nk + b] = (double)rows * (double)cols;
        }
    }
    return PARO_OK;
}

uint32_t *paro_tiling_flat_perms(const paro_tiling *t)
{
    const size_t n = t->n_tokens;
    uint32_t *perms = malloc((size_t)t->n_slots * n * sizeof *perms);
    for (int slot = 0; perms && slot < t->n_slots; slot++)
        memcpy(perms + (size_t)slot * n, t->perm[slot], n * sizeof *perms);
    return perms;
}

static int range_meets_text(const paro_tiling *t, uint64_t lo, uint64_t hi)
{
    return lo < t->text_end && t->text_begin < hi;
}

int paro_tiling_qblock_has_text(const paro_tiling *t, uint32_t a)
{
    return range_meets_text(t, (uint64_t)a * t->block_q, (uint64_t)(a + 1) * t->block_q);
}

int paro_tiling_kblock_has_text(const paro_tiling *t, uint32_t b)
{
    return range_meets_text(t, (uint64_t)b * t->block_k, (uint64_t)(b + 1) * t->block_k);
}

/* Scratch layout: K transposed [D][N], the score panel [PANEL_ROWS][N] and
 * one row of exponentials [N], all fp64. */
size_t paro_tile_stats_scratch_bytes(const paro_tiling *t, uint32_t head_dim)
{
    size_t n = t->n_tokens;
    return (size_t)head_dim * n * sizeof(double) + (PANEL_ROWS + 1) * n * sizeof(double);
}

void paro_tile_stats_cpu(const paro_tiling *t, const float *q, const float *k,
                         uint32_t head_dim, double scale, double *mass, double *peak,
                         void *scratch)
{
    const size_t n = t->n_tokens, d = head_dim, nk = t->nk;
    const size_t nt = paro_tiling_tiles(t);
    double *kt = scratch;                 /* [d][n] */
    double *panel = kt + d * n;           /* [PANEL_ROWS][n] */
    double *e = panel + PANEL_ROWS * n;   /* [n] */

    for (size_t j = 0; j < n; j++)
        for (size_t c = 0; c < d; c++)
            kt[c * n + j] = k[j * d + c];
    memset(mass, 0, (size_t)t->n_slots * nt * sizeof *mass);
    memset(peak, 0, (size_t)t->n_slots * nt * sizeof *peak);

    for (size_t i0 = 0; i0 < n; i0 += PANEL_ROWS) {
        size_t rows = n - i0 < PANEL_ROWS ? n - i0 : PANEL_ROWS;
        /* Scores of the panel: each s_ij sums its d products in order c =
         * 0..d-1 (the loop over j vectorises without reassociating). */
        for (size_t r = 0; r < rows; r++) {
            double *s = panel + r * n;
            const float *qi = q + (i0 + r) * d;
            double q0 = qi[0];
            for (size_t j = 0; j < n; j++)
                s[j] = q0 * kt[j];
            for (size_t c = 1; c < d; c++) {
                double qc = qi[c];
                const double *kc = kt + c * n;
                for (size_t j = 0; j < n; j++)
                    s[j] += qc * kc[j];
            }
        }
        for (size_t r = 0; r < rows; r++) {
            const size_t i = i0 + r;
            const double inv = 1.0 / paro_row_exponentials(panel + r * n, n, scale, e);
            for (int slot = 0; slot < t->n_slots; slot++) {
                const uint32_t *perm = t->perm[slot];
                double *mrow = mass + (size_t)slot * nt + (size_t)t->qblock[slot][i] * nk;
                double *prow = peak + (size_t)slot * nt + (size_t)t->qblock[slot][i] * nk;
                for (size_t b = 0; b < nk; b++) {
                    size_t lo = b * t->block_k, hi = lo + t->block_k;
                    if (hi > n)
                        hi = n;
                    double sum = 0.0;
                    double top = 0.0;
                    for (size_t p = lo; p < hi; p++) {
                        double v = e[perm[p]];
                        sum += v;
                        if (v > top)
                            top = v;
                    }
                    mrow[b] += sum * inv;
                    double pk = top * inv;
                    if (pk > prow[b])
                        prow[b] = pk;
                }
            }
        }
    }
}
