/* paro — CUDA device discovery. */
#include <cuda_runtime.h> /* cudaGetDeviceCount, cudaGetDeviceProperties */
#include <stdio.h>        /* snprintf */

#include "kernels.h"

extern "C" int paro_cuda_built(void)
{
    return 1;
}

extern "C" int paro_cuda_device_count(paro_errinfo *ei)
{
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0) {
        paro_error(ei, PARO_ERR_NO_CUDA, NULL, PARO_NO_OFFSET, "no cuda device: %s",
                   err != cudaSuccess ? cudaGetErrorString(err) : "none found");
        return 0;
    }
    return count;
}

extern "C" paro_err paro_cuda_device_describe(int device, char *buf, size_t size,
                                              paro_errinfo *ei)
{
    cudaDeviceProp prop;
    cudaError_t err = cudaGetDeviceProperties(&prop, device);
    if (err != cudaSuccess) {
        if (size)
            snprintf(buf, size, "unknown");
        return paro_error(ei, PARO_ERR_CUDA, NULL, PARO_NO_OFFSET,
                          "cuda device %d: %s (kernels/device.cu: cudaGetDeviceProperties)",
                          device, cudaGetErrorString(err));
    }
    snprintf(buf, size, "%s (sm_%d%d, %d SMs, %.1f GiB)", prop.name, prop.major, prop.minor,
             prop.multiProcessorCount, (double)prop.totalGlobalMem / (1024.0 * 1024 * 1024));
    return PARO_OK;
}
