/* paro — scores of an order from its block statistics.
 * metrics/METRICS.md gives the formulas, their sources and the defaults.
 *
 * Pure functions over arrays: no allocation, no I/O, no errors.
 */
#ifndef PARO_METRICS_H_1b9d6f22
#define PARO_METRICS_H_1b9d6f22

#include <stddef.h> /* size_t */

#ifdef __cplusplus
extern "C" {
#endif

#define PARO_DEFAULT_ALPHA 0.5
#define PARO_DEFAULT_SCORE_RECALL 0.95

/* Block-sparse score in [0, 1], higher is better: the fraction of tiles that
 * can be skipped while the kept ones still hold `recall` of the total mass,
 * taking the largest tiles first and interpolating linearly inside the tile
 * that crosses the target (so the score moves continuously with the masses).
 * Sums are exact and rounded once (METRICS.md), so the score depends on the
 * masses only, not on their order, and takes O(nt) time.
 * mass: tile masses (finite, >= 0, any scale), nt tiles.  scratch:
 * paro_largest_scratch_bytes(nt) bytes.  A map with no mass scores 0. */
double paro_metric_sparse(const double *mass, size_t nt, double recall, void *scratch);

/* Quant score >= 1, lower is better: the mass-weighted mean incoherence
 * (peak / mean element) of the tiles, over tiles and samples:
 *     sum_t area_t * peak_sum_t / sum_t mass_sum_t
 * where mass_sum and peak_sum are the per-tile sums over samples of the tile
 * mass and tile peak.  1 means every tile is uniform.  Returns 1 for a map
 * with no mass. */
double paro_metric_quant(const double *mass_sum, const double *peak_sum,
                         const double *area, size_t nt);

/* Combined score in [0, 1], higher is better, over the n candidate orders
 * whose valid[i] is non-zero (invalid entries get combined[i] = 0):
 *     combined = alpha * sparse / max(sparse) + (1 - alpha) * min(quant) / quant
 * A term whose normaliser is 0 (no order has any skippable tile) counts as 1
 * for every order, so it cannot decide. */
void paro_metric_combine(const double *sparse, const double *quant, const int *valid,
                         size_t n, double alpha, double *combined);

/* Index of the best valid order: highest combined score, ties to the lowest
 * index.  -1 when none is valid. */
int paro_metric_best(const double *combined, const int *valid, size_t n);

/* Relative margin of the best order over the runner-up,
 * (best - second) / best, or 1 when only one order is valid.  Heads whose
 * margin is below PARO_NEAR_TIE are near-ties: two correct implementations
 * may pick different orders for them. */
double paro_metric_margin(const double *combined, const int *valid, size_t n);
#define PARO_NEAR_TIE 1e-3

#ifdef __cplusplus
}
#endif
#endif
