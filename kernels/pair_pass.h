/* paro — the pair pass, seen from the calibration context
 * (kernels/cuda_ctx.cu).  CUDA C++ only; kernels.h stays plain C.
 *
 * A pair pass computes, for every head of a layer-sample, the tiles of two
 * orders in one sweep (kernels/pair_plan.h says how the map is cut), given
 * the rows' softmax statistics.  Its sums leave the kernel as 2^-40 fixed
 * point in 64-bit integers and its maxima as f16 bit patterns of 2^14 p, so
 * that blocks can add them in any order and get the same bits; the finish
 * kernel then adds them to the layer's sums (and clears them for the next
 * pass).
 */
#ifndef PARO_PAIR_PASS_H_71d0c2e4
#define PARO_PAIR_PASS_H_71d0c2e4

#include <cuda_runtime.h> /* cudaStream_t, cudaError_t */
#include <stdint.h>       /* uint32_t, int32_t, uint8_t */

#include "pair_plan.h" /* paro_pair_chunk */

/* A pair plan's tables on the device. */
struct PairTables {
    int32_t *row_token;
    uint8_t *row_info;
    uint32_t *warp_qb, *cta_qa0, *cta_qb, *perm_b, *bind;
    uint8_t *warp_col, *warp_qbcta;
    paro_pair_chunk *chunk;
    uint32_t n_ctas, n_chunks;
    int slot_a, slot_b;
};

/* The pass's accumulators: [heads][nq * nk] for each of the two orders. */
struct PairSums {
    unsigned long long *sum_a, *sum_b;
    unsigned *max_a, *max_b;
};

struct PairLaunch {
    const void *q, *k, *q_lo, *k_lo; /* bf16 [heads][n][d]; lo parts when split */
    int n, d, heads, nq, nk, n_slots;
    float c;                         /* scale * log2(e) */
    const float *row_max, *row_inv;  /* [heads][n] */
    float *mass, *peak;              /* the layer's sums: [heads][n_slots][nq * nk] (mass of the bucket) */
};

/* Dynamic shared memory the pass asks for. */
size_t paro_pair_smem_bytes(int d, bool split, int nk);
/* Raises the kernels' shared-memory limit; once per device and shape. */
cudaError_t paro_pair_prepare(int d, int nk);
/* Queues the pass and its finish on stream. */
cudaError_t paro_pair_run(const PairLaunch &l, const PairTables &t, const PairSums &s,
                          bool split, cudaStream_t stream);

#endif
