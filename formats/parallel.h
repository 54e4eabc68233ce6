/* paro — a parallel loop over independent items on pthreads.
 *
 * Items are handed out one at a time from a shared counter, so a slow item
 * does not hold up the others; which worker runs which item varies from run
 * to run, so an item's work must not depend on it except for scratch. */
#ifndef PARO_PARALLEL_H_7b1e0c53
#define PARO_PARALLEL_H_7b1e0c53

#include <stdint.h> /* uint32_t */

/* Calls fn(ctx, item, worker) for every item in [0, n), on up to `threads`
 * threads (the caller's among them); worker is in [0, threads) and tells
 * which scratch to use.  Returns when all are done. */
void paro_parallel_for(int threads, uint32_t n, void (*fn)(void *ctx, uint32_t item, int worker),
                       void *ctx);

#endif
