/* paro — the GPU path of `paro eval` (calib/eval_gpu.c), as calib/eval.c
 * drives it.  Not a public header. */
#ifndef PARO_EVAL_GPU_H_3b81f0e6
#define PARO_EVAL_GPU_H_3b81f0e6

#include "backend.h"    /* paro_backend */
#include "eval_layer.h" /* layer_ctx, mask_sums */
#include "kernels.h"    /* paro_cuda_eval */

/* What `--device cuda` adds: the tile statistics of the basis samples from
 * the calibration backend's kernels, and the evaluation kernels for the
 * samples (kernels/eval.cu, f32); rows whose kept sum of exponentials
 * underflows f32 are redone here in fp64 by the reference's own code. */
typedef struct paro_eval_gpu {
    paro_backend stats;      /* the CUDA calibration backend */
    paro_cuda_eval *ev;
    int *slot;               /* [heads][2] */
    int *set_side;           /* [n_sets] */
    uint8_t *keep;           /* [heads][n_sets][nt]: the sample's bucket */
    paro_cuda_eval_out out;
    mask_sums *sums;         /* [n_sets], one head's */
    double *row_s, *row_e;   /* [n]: one row's scores and exponentials */
} paro_eval_gpu;

/* PARO_ERR_NO_CUDA without a device, PARO_ERR_USAGE when the kernels do not
 * take the shape. */
paro_err paro_eval_gpu_open(paro_eval_gpu *g, const paro_tiling *t, const paro_plan *plan,
                            size_t n_sets, paro_errinfo *ei);
void paro_eval_gpu_close(paro_eval_gpu *g);
/* Evaluates the sample in cx->q, k, v (the context's buffers, from
 * paro_cuda_eval_buffers) and adds each head's metrics. */
paro_err paro_eval_gpu_sample(layer_ctx *cx, paro_eval_gpu *g, paro_errinfo *ei);

#endif
