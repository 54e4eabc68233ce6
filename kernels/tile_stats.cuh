/* paro — the calibration kernels (tile_stats.cu), seen from the context
 * that queues them (cuda_ctx.cu): their arguments and a table of their
 * instances.  CUDA C++ only; kernels.h stays plain C.
 */
#ifndef PARO_TILE_STATS_CUH_5b1e7f20
#define PARO_TILE_STATS_CUH_5b1e7f20

#include <stddef.h> /* size_t */
#include <stdint.h> /* uint32_t */

#include "mma.cuh" /* HeadInputs */

namespace paro_tile {

using paro_mma::HeadInputs;

/* row_stats_kernel: the rows' softmax statistics alone (ROW_PASS). */
struct RowArgs {
    HeadInputs in;
    int n;
    float c;          /* scale * log2(e) */
    float *row_max;   /* [heads][n]: m, a row's reference score (log2 units) */
    float *row_inv;   /* [heads][n]: 1 / sum_j 2^(s_ij c - m) */
};

/* tile_stats_kernel: the tiles of orders whose rows' statistics are known. */
struct TileArgs {
    HeadInputs in;
    int n, nq, nk, heads, n_slots;
    int slot0;                 /* distinct order of blockIdx.z == 0 */
    float c;
    const uint32_t *perms;     /* [n_slots][n] */
    const float *row_max, *row_inv;
    float *mass;               /* [heads][n_slots][nq*nk] of the sample's bucket */
    float *peak;               /* [heads][n_slots][nq*nk] */
};

/* first_pass_kernel: the first order's tiles and the rows' statistics. */
struct FirstArgs {
    HeadInputs in;
    int n, nq, nk, heads, n_slots;
    int slot;                  /* the distinct order this pass sweeps */
    int items_per_head;        /* thread-block items of one head: ceil(nq / blocks a CTA) */
    float c;
    const uint32_t *perm;      /* [n]: that order */
    float *row_max, *row_inv;  /* [heads][n], written for the other orders' pass */
    float *mass, *peak;        /* as TileArgs */
    float2 *scratch;           /* [gridDim.x][nk][kCtaRows]: (log2 row sum, max score * c) */
    unsigned *next_item;       /* work counter, zero at launch */
};

typedef void (*row_kernel_fn)(RowArgs);
typedef void (*tile_kernel_fn)(TileArgs);
typedef void (*first_kernel_fn)(FirstArgs);

struct Kernels {
    row_kernel_fn row;
    size_t row_smem;
    tile_kernel_fn tile;
    size_t tile_smem;   /* plus tile_row_smem(nk) */
    first_kernel_fn first;
    size_t first_smem;
    int blocks_per_cta; /* query blocks of the order per thread block */
};

/* The tile kernel's rows of per-tile sums and peaks (added to tile_smem). */
size_t tile_row_smem(int blocks_per_cta, int nk);
/* The kernels for head_dim d, blocks bq x bk, inputs with lo parts or not. */
Kernels pick_kernels(int d, int bq, int bk, bool split);

} // namespace paro_tile

#endif
