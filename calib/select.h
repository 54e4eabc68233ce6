/* paro — scoring the orders of a head and choosing one (metrics/METRICS.md
 * gives the formulas). */
#ifndef PARO_SELECT_H_91e7c4a2
#define PARO_SELECT_H_91e7c4a2

#include <stddef.h> /* size_t */
#include <stdint.h> /* uint32_t */

#include "order.h"      /* PARO_N_ORDERS */
#include "plan.h"       /* PARO_N_SCORES */
#include "stats.h"      /* paro_block_stats */
#include "tile_stats.h" /* paro_tiling */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct paro_head_choice {
    int order;                                  /* chosen order code (canonical) */
    double scores[PARO_N_ORDERS][PARO_N_SCORES]; /* equivalent orders share scores */
    double margin;  /* relative lead of the chosen order's combined score */
} paro_head_choice;

/* Bytes of scratch paro_score_head needs for this many tiles. */
size_t paro_score_scratch_bytes(size_t tiles);

/* Scores every order of `head` from the statistics of all buckets together.
 * scratch: paro_score_scratch_bytes(nq * nk) bytes, 8-aligned. */
void paro_score_head(const paro_tiling *t, const paro_block_stats *st, uint32_t head,
                     double alpha, double score_recall, paro_head_choice *choice,
                     void *scratch);

#ifdef __cplusplus
}
#endif
#endif
