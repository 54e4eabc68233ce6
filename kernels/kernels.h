/* paro — the CUDA side, seen from C.  No CUDA types appear here, so every
 * part of paro can include it without nvcc; a build without CUDA links
 * kernels/stub.c, whose functions report PARO_ERR_NO_CUDA. */
#ifndef PARO_KERNELS_H_e81b4d07
#define PARO_KERNELS_H_e81b4d07

#include <stddef.h> /* size_t */

#include "error.h" /* paro_err, paro_errinfo */

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when this paro was built with CUDA, 0 otherwise. */
int paro_cuda_built(void);

/* Number of CUDA devices.  0 (and PARO_ERR_NO_CUDA in *ei, with the driver's
 * reason) when there is none, when the driver is missing, or in a build
 * without CUDA. */
int paro_cuda_device_count(paro_errinfo *ei);

/* "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 79.1 GiB)" into buf. */
paro_err paro_cuda_device_describe(int device, char *buf, size_t size, paro_errinfo *ei);

#ifdef __cplusplus
}
#endif
#endif
