/* paro — checking CUDA calls without aborting.
 *
 * As ggml's CUDA_CHECK, but the failure becomes a paro_err with the failed
 * statement, file:line and device in the message, and control returns to the
 * caller (only cli/ decides to exit):
 *
 *     CUDA_TRY(ei, dev, cudaMalloc(&p, n));   // returns on failure
 */
#ifndef PARO_CUDA_CHECK_H_4a7d2b90
#define PARO_CUDA_CHECK_H_4a7d2b90

#include <cuda_runtime.h> /* cudaError_t, cudaGetErrorString */

#include "error.h" /* paro_error */

static inline paro_err paro_cuda_fail(paro_errinfo *ei, int device, cudaError_t err,
                                      const char *stmt, const char *file, int line)
{
    paro_err code = err == cudaErrorMemoryAllocation ? PARO_ERR_NOMEM : PARO_ERR_CUDA;
    return paro_error(ei, code, NULL, PARO_NO_OFFSET, "cuda: %s (device %d, %s:%d: %s)",
                      err == cudaErrorMemoryAllocation ? "out of memory"
                                                       : cudaGetErrorString(err),
                      device, file, line, stmt);
}

#define CUDA_TRY(ei, device, stmt)                                                           \
    do {                                                                                     \
        cudaError_t cuda_try_err_ = (stmt);                                                  \
        if (cuda_try_err_ != cudaSuccess)                                                    \
            return paro_cuda_fail((ei), (device), cuda_try_err_, #stmt, __FILE__, __LINE__); \
    } while (0)

#endif
