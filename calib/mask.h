/* paro — block masks from a head's mean tile mass in its chosen order.
 *
 * Rules (the CPU reference defines them; DESIGN.md "Calibration semantics"):
 *  1. with keep_text, every tile whose query or key block holds a text token
 *     is kept; with keep_last, every tile of the last query block (row) and of
 *     the last key block (column), which the PAROAttention runtime computes
 *     whatever the mask says, so that density, recall and `paro eval` describe
 *     what that runtime does;
 *  2. the target adds tiles (those of rule 1 count towards it), largest mean
 *     mass first (ties: lower tile index, row-major over (query block, key
 *     block)):
 *       density D:   until ceil(D * tiles) tiles are kept;
 *       recall R:    until the kept tiles hold >= R of the total mass, or no
 *                    tile with mass is left;
 *       threshold T: every tile whose mean mass per element is >= T;
 *  3. a query block left with no tile keeps its largest tile.
 * The recall target uses exact sums, as the block-sparse score does
 * (metrics/METRICS.md): total = the exact sum of all tile masses, rounded
 * once to double; goal = R * total in double; then, with K the exact mass of
 * the tiles kept so far, a tile is added while K < goal (an exact
 * comparison).  So the mask depends on the masses alone, not on the order in
 * which they are summed, and is found by selection in O(tiles), not by a
 * sort (metrics/largest.h).
 * density = kept tiles / tiles; recall = kept mass / total mass (1 when the
 * map has no mass), both summed in double in tile order.
 */
#ifndef PARO_MASK_H_b2a9f0c4
#define PARO_MASK_H_b2a9f0c4

#include <stddef.h> /* size_t */
#include <stdint.h> /* uint8_t, uint32_t */

#include "plan.h"       /* paro_target_mode */
#include "tile_stats.h" /* paro_tiling */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct paro_mask_target {
    paro_target_mode mode;
    double value;
    int keep_text;
    int keep_last; /* rule 1: the last block row and column are kept */
} paro_mask_target;

/* Bytes of scratch paro_build_mask needs for this many tiles. */
size_t paro_mask_scratch_bytes(size_t tiles);

/* mass: mean tile mass [nq*nk] of the chosen order (finite, >= 0).  keep:
 * [nq*nk], set to 0/1.  scratch: paro_mask_scratch_bytes(nq * nk) bytes. */
void paro_build_mask(const paro_tiling *t, const double *mass, const paro_mask_target *tg,
                     uint8_t *keep, double *density, double *recall, void *scratch);

/* Density and recall of an existing mask over a mass map. */
void paro_mask_measure(const paro_tiling *t, const double *mass, const uint8_t *keep,
                       double *density, double *recall);

#ifdef __cplusplus
}
#endif
#endif
