/* paro — where the tile statistics of a layer are computed: the CPU
 * reference (calib/backend_cpu.c, worker threads over heads) or the GPU
 * (calib/backend_cuda.c over kernels/).  The driver (calibrate.c) sees only
 * this interface:
 *
 *     layer_begin(stats)            stats (whatever they hold) to be filled
 *                                   for one layer: the backend clears them
 *     for each sample:
 *         buffers(&q, &k)           where to read the sample's Q and K
 *         ... read them ...         (buffers_bf16 for a bf16 sample, when
 *                                   the backend has it)
 *         submit(bucket)            add the sample's tile stats (possibly
 *                                   asynchronously)
 *     seal()                        the layer's samples are all submitted
 *     ... the next layer may begin (into other stats) ...
 *     collect()                     the oldest sealed layer's stats hold
 *                                   every sample's sums
 *
 * At most one sealed layer is left uncollected when the next one begins, so
 * a backend needs two layers in flight at most.
 *
 * A backend that lends its sums (lends_sums: collect points the stats at its
 * own memory, see paro_block_stats.mass32) keeps them valid until the seal
 * after the next layer_begin, not just until that layer_begin: the driver
 * scores layer L while layer L + 1 is read and queued, and waits for the
 * scoring only before sealing L + 1.
 */
#ifndef PARO_BACKEND_H_d2c81f6e
#define PARO_BACKEND_H_d2c81f6e

#include <stdint.h> /* uint16_t, uint32_t */

#include "error.h"      /* paro_err, paro_errinfo */
#include "stats.h"      /* paro_block_stats */
#include "tile_stats.h" /* paro_tiling */

typedef struct paro_backend paro_backend;
struct paro_backend {
    const char *name; /* recorded in the plan: "cpu" or "cuda" */
    int lends_sums;   /* collect lends the sums (see above) */
    void *state;
    paro_err (*layer_begin)(paro_backend *b, paro_block_stats *stats, paro_errinfo *ei);
    paro_err (*buffers)(paro_backend *b, float **q, float **k, paro_errinfo *ei);
    /* NULL when the backend takes f32 only; else buffers of bf16 bit
     * patterns for a sample stored as bf16, kept as it is. */
    paro_err (*buffers_bf16)(paro_backend *b, uint16_t **q, uint16_t **k, paro_errinfo *ei);
    paro_err (*submit)(paro_backend *b, uint32_t bucket, paro_errinfo *ei);
    paro_err (*seal)(paro_backend *b, paro_errinfo *ei);
    paro_err (*collect)(paro_backend *b, paro_errinfo *ei);
    void (*close)(paro_backend *b);
};

typedef struct paro_backend_shape {
    const paro_tiling *tiling;
    uint32_t heads, head_dim, n_buckets;
    double scale;
} paro_backend_shape;

paro_err paro_backend_cpu_open(paro_backend *b, const paro_backend_shape *s, int threads,
                               paro_errinfo *ei);
/* PARO_ERR_NO_CUDA when there is no device (or no CUDA in this build),
 * PARO_ERR_USAGE when the kernels do not handle this shape. */
paro_err paro_backend_cuda_open(paro_backend *b, const paro_backend_shape *s, int device,
                                paro_errinfo *ei);

#endif
