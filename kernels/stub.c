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

static paro_err no_cuda(paro_errinfo *ei)
{
    return paro_error(ei, PARO_ERR_NO_CUDA, NULL, PARO_NO_OFFSET,
                      "this paro was built without cuda");
}

int paro_cuda_supports(const paro_cuda_geometry *g, paro_errinfo *ei)
{
    (void)g;
    no_cuda(ei);
    return 0;
}

paro_err paro_cuda_open(paro_cuda_ctx **out, int device, const paro_cuda_geometry *g,
                        paro_errinfo *ei)
{
    (void)device;
    (void)g;
    *out = NULL;
    return no_cuda(ei);
}

void paro_cuda_close(paro_cuda_ctx *ctx)
{
    (void)ctx;
}

paro_err paro_cuda_layer_begin(paro_cuda_ctx *ctx, paro_errinfo *ei)
{
    (void)ctx;
    return no_cuda(ei);
}

paro_err paro_cuda_next_buffers(paro_cuda_ctx *ctx, float **q, float **k, paro_errinfo *ei)
{
    (void)ctx;
    *q = *k = NULL;
    return no_cuda(ei);
}

paro_err paro_cuda_next_buffers_bf16(paro_cuda_ctx *ctx, uint16_t **q, uint16_t **k,
                                     paro_errinfo *ei)
{
    (void)ctx;
    *q = *k = NULL;
    return no_cuda(ei);
}

paro_err paro_cuda_layer_seal(paro_cuda_ctx *ctx, paro_errinfo *ei)
{
    (void)ctx;
    return no_cuda(ei);
}

paro_err paro_cuda_submit(paro_cuda_ctx *ctx, uint32_t bucket, paro_errinfo *ei)
{
    (void)ctx;
    (void)bucket;
    return no_cuda(ei);
}

paro_err paro_cuda_layer_end(paro_cuda_ctx *ctx, const float **mass, const float **peak,
                             paro_errinfo *ei)
{
    (void)ctx;
    *mass = *peak = NULL;
    return no_cuda(ei);
}

size_t paro_cuda_device_bytes(const paro_cuda_ctx *ctx)
{
    (void)ctx;
    return 0;
}

double paro_cuda_last_layer_ms(const paro_cuda_ctx *ctx)
{
    (void)ctx;
    return 0.0;
}

int paro_cuda_eval_supports(const paro_cuda_eval_geometry *g, paro_errinfo *ei)
{
    (void)g;
    no_cuda(ei);
    return 0;
}

paro_err paro_cuda_eval_open(paro_cuda_eval **out, int device, const paro_cuda_eval_geometry *g,
                             paro_errinfo *ei)
{
    (void)device;
    (void)g;
    *out = NULL;
    return no_cuda(ei);
}

void paro_cuda_eval_close(paro_cuda_eval *ev)
{
    (void)ev;
}

paro_err paro_cuda_eval_buffers(paro_cuda_eval *ev, float **q, float **k, float **v,
                                paro_errinfo *ei)
{
    (void)ev;
    *q = *k = *v = NULL;
    return no_cuda(ei);
}

paro_err paro_cuda_eval_run(paro_cuda_eval *ev, const paro_cuda_eval_sample *s,
                            paro_cuda_eval_out *out, paro_errinfo *ei)
{
    (void)ev;
    (void)s;
    (void)out;
    return no_cuda(ei);
}
