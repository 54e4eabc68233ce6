/* paro — the tiling of the attention map in each order, and the CPU reference
 * of the tile-statistics kernel: for one head of one sample, the mass (sum of
 * post-softmax probabilities) and peak (largest probability) of every tile,
 * in every distinct order, without ever holding the N x N map.
 *
 * This function defines what the CUDA kernel must compute (kernels/ compares
 * against it).  Semantics, for query row i and key j in capture order:
 *     s_ij = scale * sum_d q_id k_jd           (fp64)
 *     p_ij = exp(s_ij - max_j s_ij) / sum_j exp(s_ij - max_j s_ij)
 * and tile (a, b) of order o holds the rows i with pos_o(i) / block_q == a and
 * the keys j with pos_o(j) / block_k == b, where pos_o is the permuted
 * position (text tokens fixed).  Blocks are cut over the whole permuted
 * sequence, text included; the last block of each axis may be partial.
 */
#ifndef PARO_TILE_STATS_H_8a60d3f5
#define PARO_TILE_STATS_H_8a60d3f5

#include <math.h>   /* exp */
#include <stddef.h> /* size_t */
#include <stdint.h> /* uint32_t */

#include "error.h" /* paro_err, paro_errinfo */
#include "order.h" /* PARO_N_ORDERS */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct paro_tiling {
    uint32_t grid[3];
    uint32_t text_tokens;
    int text_last;
    uint32_t n_tokens;
    uint32_t block_q, block_k;
    uint32_t nq, nk;          /* ceil(N / block) */
    /* Distinct orders ("slots"): equivalent orders share a slot. */
    int n_slots;
    int slot_order[PARO_N_ORDERS];   /* canonical order code of each slot */
    int slot_of_order[PARO_N_ORDERS];/* slot of each order code */
    uint32_t *perm[PARO_N_ORDERS];   /* per slot: capture index at each position */
    uint32_t *qblock[PARO_N_ORDERS]; /* per slot: query block of each capture index */
    double *area;                    /* [nq * nk] elements per tile */
    /* Text occupies permuted positions [text_begin, text_end) in every order. */
    uint32_t text_begin, text_end;
} paro_tiling;

/* Validates the sizes (block >= 1, nq and nk <= 65536, N within limits) and
 * builds the maps. */
paro_err paro_tiling_init(paro_tiling *t, const uint32_t grid[3], uint32_t text_tokens,
                          int text_last, uint32_t block_q, uint32_t block_k,
                          paro_errinfo *ei);
void paro_tiling_free(paro_tiling *t);

static inline size_t paro_tiling_tiles(const paro_tiling *t)
{
    return (size_t)t->nq * t->nk;
}

/* Every distinct order's permutation in one array, [n_slots][n_tokens]
 * (capture index at each position), as the GPU kernels take them;
 * malloc'ed, NULL when out of memory. */
uint32_t *paro_tiling_flat_perms(const paro_tiling *t);

/* Whether query block a / key block b holds at least one text token. */
int paro_tiling_qblock_has_text(const paro_tiling *t, uint32_t a);
int paro_tiling_kblock_has_text(const paro_tiling *t, uint32_t b);

/* Scratch bytes paro_tile_stats_cpu needs for this tiling and head_dim. */
size_t paro_tile_stats_scratch_bytes(const paro_tiling *t, uint32_t head_dim);

/* A row's softmax numerators as the CPU references take them (calibration
 * here, `paro eval` in calib/eval.c): e[j] = exp(scale * (s[j] - max s));
 * returns their sum, added in j order. */
static inline double paro_row_exponentials(const double *s, size_t n, double scale, double *e)
{
    double smax = s[0];
    for (size_t j = 1; j < n; j++)
        if (s[j] > smax)
            smax = s[j];
    double sum = 0.0;
    for (size_t j = 0; j < n; j++) {
        e[j] = exp(scale * (s[j] - smax));
        sum += e[j];
    }
    return sum;
}

/* q, k: [N][head_dim] f32 of one head.  mass, peak: [n_slots][nq * nk],
 * overwritten.  scratch: paro_tile_stats_scratch_bytes() bytes, 16-aligned. */
void paro_tile_stats_cpu(const paro_tiling *t, const float *q, const float *k,
                         uint32_t head_dim, double scale, double *mass, double *peak,
                         void *scratch);

#ifdef __cplusplus
}
#endif
#endif
