/* paro — the CUDA entry points of a build without CUDA (HAVE_CUDA=0). */
#include <stdio.h> /* snprintf */

#include "kernels.h"

int paro_cuda_built(void)
{
    return 0;
}

int paro_cuda_device_count(paro_errinfo *ei)
{
    paro_error(ei, PARO_ERR_NO_CUDA, NULL, PARO_NO_OFFSET,
               "this paro was built without cuda (nvcc was not found at build time)");
    return 0;
}

paro_err paro_cuda_device_describe(int device, char *buf, size_t size, paro_errinfo *ei)
{
    (void)device;
    if (size)
        snprintf(buf, size, "none");
    return paro_error(ei, PARO_ERR_NO_CUDA, NULL, PARO_NO_OFFSET,
                      "this paro was built without cuda");
}
