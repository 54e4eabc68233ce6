/* paro — the tables of a pair pass: one sweep over the attention map that
 * gives the tiles of two orders at once.  Plain C: the planner runs on the
 * host (and in the CPU tests, tests/check_pair.c); kernels/pair_pass.cu
 * reads the tables.
 *
 * Two orders A and B that share their innermost axis cut the same short
 * lines of the token grid into blocks, so a block of A and a block of B
 * meet in a run of tokens that is contiguous in both orders (a "piece").
 * The pass takes the query rows in A's order and the keys in B's order, in
 * steps of PARO_PAIR_CHUNK keys (each inside one key block of B); a step's
 * keys fall into a few runs of equal A key block ("key groups"), and a
 * warp's 32 rows into a few runs of equal (A query block, B query block)
 * ("row groups").  A row group and a key group meet in a "cell", which lies
 * in exactly one tile of A and one tile of B, so maxing the cells gives
 * both orders' tiles.  Sums need less: per step, a row's sum over the keys
 * of each distinct A key block (the "sum rows" of the step, where a key
 * group that comes back adds to the same row) and over all the step's keys;
 * then per warp those summed over the rows of each A query block and of
 * each B query block ("columns": two of A, six of B).
 *
 * Rows: each run of rows with the same (A query block, B query block) is
 * padded to an even length by repeating its last token, so that the two rows
 * a thread holds in one mma tile (rows g and g + 8) always belong to the
 * same row group; a repeated row leaves a maximum unchanged and is left out
 * of the sums (it is not "counted").  Rows are stored in the order the
 * kernel keeps them in shared memory (paro_pair_smem_row).
 */
#ifndef PARO_PAIR_PLAN_H_3c9e51a7
#define PARO_PAIR_PLAN_H_3c9e51a7

#include <stddef.h> /* size_t */
#include <stdint.h> /* uint32_t, int32_t, uint8_t, uint16_t */

#include "error.h" /* paro_err, paro_errinfo */

#ifdef __cplusplus
extern "C" {
#endif

#define PARO_PAIR_WARP_ROWS 32
#define PARO_PAIR_CTA_ROWS 128      /* four warps */
#define PARO_PAIR_CHUNK 64          /* keys per step */
#define PARO_PAIR_MAX_ROW_GROUPS 8  /* per warp: the n of an mma tile */
#define PARO_PAIR_MAX_KEY_GROUPS 16 /* per step: runs of equal A key block */
#define PARO_PAIR_SUM_ROWS 15       /* distinct A key blocks a step; row 15 of the mma tile: all keys */
#define PARO_PAIR_WARP_QA 2         /* A query blocks in a warp's 32 rows (the columns 0, 1) */
#define PARO_PAIR_WARP_QB 6         /* B query blocks in them (the columns 2..7) */
#define PARO_PAIR_MAX_QA 4          /* A query blocks per thread block */
#define PARO_PAIR_MAX_NK 1024       /* A's row of tiles is kept in shared memory */
#define PARO_PAIR_MAX_QB 32         /* distinct B query blocks in a thread block */
#define PARO_PAIR_MAX_SLOTS 6       /* distinct orders paro_pair_choose looks at */

/* row_info: the row group (0..7), PARO_PAIR_COUNTED for the first copy of a
 * token, or PARO_PAIR_NO_ROW for a slot past the last row. */
#define PARO_PAIR_COUNTED 0x08u
#define PARO_PAIR_NO_ROW 0xFFu
/* warp_qb of a row group the warp does not have */
#define PARO_PAIR_NO_GROUP 0xFFFFFFFFu
/* f16 bit patterns of the indicator entries: 2^-5 (key groups; keeps a
 * group's sum of 2^14-scaled probabilities below f16's 65504) and 1. */
#define PARO_PAIR_KEY_ONE 0x2800u
#define PARO_PAIR_ROW_ONE 0x3C00u

/* What a step of the sweep needs besides its keys: 128 bytes. */
typedef struct paro_pair_chunk {
    uint8_t n_groups;                              /* key groups, 1..16 */
    uint8_t cut[PARO_PAIR_MAX_KEY_GROUPS - 1];     /* where groups 1.. start (1..63) */
    uint16_t kb_a[PARO_PAIR_MAX_KEY_GROUPS];       /* A key block of each group */
    uint16_t kb_b;                                 /* the B key block of every key */
    uint16_t n_keys;                               /* keys in the step (64 but the last) */
    uint16_t kb_sum[PARO_PAIR_SUM_ROWS];           /* A key block of each sum row */
    uint8_t n_sums;                                /* sum rows, 1..15 */
    uint8_t reserved[45];
} paro_pair_chunk;

typedef struct paro_pair_plan {
    uint32_t n_tokens, block_q, block_k, nq, nk;
    uint32_t n_row_slots;   /* rows after padding, a multiple of PARO_PAIR_CTA_ROWS */
    uint32_t n_ctas, n_warps, n_chunks;
    int32_t *row_token;     /* [n_row_slots], shared-memory order: capture index, -1 none */
    uint8_t *row_info;      /* [n_row_slots], the same order */
    uint32_t *warp_qb;      /* [n_warps][8]: qa | qb << 16 per row group */
    uint32_t *cta_qa0;      /* [n_ctas]: the thread block's first A query block */
    uint32_t *cta_qb;       /* [n_ctas][PARO_PAIR_MAX_QB]: its B query blocks, 0xFFFF unused */
    /* [n_warps][8]: each row group's columns, its A query block's (0 or 1:
     * paro_pair_warp_qa0 + column) | its B query block's (0..5) << 4; the
     * row group's index in cta_qb is warp_qbcta[its B column] */
    uint8_t *warp_col;
    uint8_t *warp_qbcta;    /* [n_warps][6]: each B column's index in cta_qb, 0xFF none */
    paro_pair_chunk *chunk; /* [n_chunks] */
    /* [n_chunks][4 k-steps][32 lanes][4]: the mma A fragments of the
     * transposed sum-row indicator (row m x key k of the k-step),
     * PARO_PAIR_KEY_ONE where key k's A key block is kb_sum[m] (m <
     * n_sums) or, in row 15, wherever there is a key. */
    uint32_t *bind;
    /* For choosing pairs: repeated rows over real rows, and group
     * boundaries inside steps per step. */
    double row_padding, cuts_per_chunk;
} paro_pair_plan;

/* Shared-memory row (within its warp's 32) of slot s of a warp: the two
 * slots 2u, 2u+1 of a unit become rows u and u + 8 of an mma tile. */
static inline uint32_t paro_pair_smem_row(uint32_t s)
{
    return (s & 16u) + ((s & 15u) >> 1) + ((s & 1u) << 3);
}

/* A warp's first A query block, from its warp_qb row: its first row
 * group's (0xFFFF for a warp without rows, which has no columns). */
static inline uint32_t paro_pair_warp_qa0(const uint32_t *warp_qb)
{
    return warp_qb[0] & 0xFFFFu;
}

/* Builds the tables for rows in order perm_a and keys in order perm_b
 * (capture index at each position, n tokens each).  PARO_ERR_LIMIT, with
 * the reason, when the pair does not fit the kernel's limits above. */
paro_err paro_pair_plan_build(paro_pair_plan *p, const uint32_t *perm_a, const uint32_t *perm_b,
                              uint32_t n, uint32_t block_q, uint32_t block_k, paro_errinfo *ei);
void paro_pair_plan_free(paro_pair_plan *p);

/* Relative cost of the pass, in single-order passes: the planner's guess
 * from its repeated rows and group boundaries, fitted to measured passes
 * (kernels/README.md); a pair is worth taking below 2. */
double paro_pair_plan_cost(const paro_pair_plan *p);

/* Which distinct orders to take in pairs.  perms: [n_slots][n], n_slots at
 * most PARO_PAIR_MAX_SLOTS.  Fills pairs[k][0] (rows, A) and pairs[k][1]
 * (keys, B) and returns the number of pairs; the slots in no pair go into
 * singles (*n_singles of them).  A pair
 * is taken when its plan builds and costs less than two single passes;
 * pairs with the lowest cost go first. */
int paro_pair_choose(const uint32_t *perms, uint32_t n_slots, uint32_t n, uint32_t block_q,
                     uint32_t block_k, int pairs[][2], int *singles, int *n_singles);

#ifdef __cplusplus
}
#endif
#endif
