/* paro — the CUDA side, seen from C.  No CUDA types appear here, so every
 * part of paro can include it without nvcc; a build without CUDA links
 * kernels/stub.c, whose functions report PARO_ERR_NO_CUDA.
 *
 * The tile-statistics backend computes, on the GPU, exactly what
 * paro_tile_stats_cpu (calib/tile_stats.h) defines, for every head and
 * distinct order of one layer-sample, and adds the results into per-layer
 * accumulators kept on the device:
 *
 *     ctx = paro_cuda_open(...)            once per run (one device)
 *     for each layer:
 *         paro_cuda_layer_begin(ctx)       zero the layer's accumulators
 *         for each sample:
 *             paro_cuda_next_buffers(ctx, &q, &k)   pinned host buffers to fill
 *             ... read the sample's Q and K into q, k ([heads][N][D] f32,
 *                 or bf16 through paro_cuda_next_buffers_bf16) ...
 *             paro_cuda_submit(ctx, bucket)    upload and queue; returns at once
 *         paro_cuda_layer_seal(ctx)        queue the download of the sums
 *         paro_cuda_layer_end(ctx, &mass, &peak)  wait for the oldest sealed
 *                                          layer and point at its sums
 *     paro_cuda_close(ctx)
 *
 * While the GPU works on one sample the host reads the next one into the
 * other pair of buffers.  Two layers can be in flight: a sealed one whose
 * sums are downloaded (and then scored on the host) while the next one's
 * samples are computed.  All reductions run in a fixed order (no float
 * atomics), so results are the same run to run.
 */
#ifndef PARO_KERNELS_H_e81b4d07
#define PARO_KERNELS_H_e81b4d07

#include <stddef.h> /* size_t */
#include <stdint.h> /* uint16_t, uint32_t */

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

/* What the tile-statistics kernels are asked to compute. */
typedef struct paro_cuda_geometry {
    uint32_t n_tokens, head_dim, heads;
    uint32_t block_q, block_k, nq, nk;
    uint32_t n_slots;        /* distinct orders */
    const uint32_t *perms;   /* host: [n_slots][n_tokens], capture index at each position */
    uint32_t n_buckets;
    double scale;            /* softmax scale */
    int design;              /* paro_cuda_design; 0 is the default */
} paro_cuda_geometry;

/* How the kernels cover the distinct orders.  All give the same numbers
 * within the tolerances of tests/check_cuda.c; kernels/README.md compares
 * their speed, and the fastest measured is the default:
 *   ONE_PASS  the first order with the rows' statistics, then one sweep
 *             per other order (the default);
 *   ROW_PASS  the rows' statistics, then one sweep per order;
 *   PAIRS     the rows' statistics, then one sweep for each pair of orders
 *             that share their innermost axis (kernels/pair_plan.h), one
 *             per order left over. */
typedef enum paro_cuda_design {
    PARO_CUDA_ONE_PASS = 0,
    PARO_CUDA_ROW_PASS = 1,
    PARO_CUDA_PAIRS = 2
} paro_cuda_design;

/* Whether the kernels handle this geometry (block sizes 64 or 128 on each
 * axis, head_dim 32, 64 or 128, at most 2048 blocks per axis); when not, a
 * one-line reason goes into *ei (PARO_ERR_USAGE). */
int paro_cuda_supports(const paro_cuda_geometry *g, paro_errinfo *ei);

typedef struct paro_cuda_ctx paro_cuda_ctx;

paro_err paro_cuda_open(paro_cuda_ctx **out, int device, const paro_cuda_geometry *g,
                        paro_errinfo *ei);
void paro_cuda_close(paro_cuda_ctx *ctx);

paro_err paro_cuda_layer_begin(paro_cuda_ctx *ctx, paro_errinfo *ei);
/* Pinned host buffers ([heads][N][D] f32 each) for the next sample; waits
 * until the GPU no longer needs them. */
paro_err paro_cuda_next_buffers(paro_cuda_ctx *ctx, float **q, float **k, paro_errinfo *ei);
/* The same as bf16 bit patterns ([heads][N][D] uint16 each): a sample that
 * is exactly bf16 (a bf16 capture) goes to the GPU as it is, half the bytes
 * and no conversion. */
paro_err paro_cuda_next_buffers_bf16(paro_cuda_ctx *ctx, uint16_t **q, uint16_t **k,
                                     paro_errinfo *ei);
/* Queues the sample held in the buffers of the last next_buffers call. */
paro_err paro_cuda_submit(paro_cuda_ctx *ctx, uint32_t bucket, paro_errinfo *ei);
/* Closes the open layer: its sums are downloaded once its kernels are done,
 * beside the next layer's work.  Returns at once.  At most two layers may
 * be sealed and not yet ended. */
paro_err paro_cuda_layer_seal(paro_cuda_ctx *ctx, paro_errinfo *ei);
/* Waits for the oldest sealed layer (sealing the open one first when none
 * is) and points *mass ([n_buckets][heads][n_slots][nq*nk]) and *peak
 * ([heads][n_slots][nq*nk], the layout of paro_block_stats) at its sums in
 * host memory, valid until the next layer_seal (which queues the download
 * that may overwrite them) or close. */
paro_err paro_cuda_layer_end(paro_cuda_ctx *ctx, const float **mass, const float **peak,
                             paro_errinfo *ei);

/* Device memory the context holds, in bytes (for benchmarks). */
size_t paro_cuda_device_bytes(const paro_cuda_ctx *ctx);
/* Milliseconds the GPU spent in the kernels of the layer the last
 * layer_end returned (events around each sample's passes, summed). */
double paro_cuda_last_layer_ms(const paro_cuda_ctx *ctx);

/* ---- the evaluation kernels (paro eval --device cuda, kernels/eval.cu) ----
 *
 * For one sample of one layer, every head at once: the dense attention
 * output, and per mask set the kept share of the attention mass and the
 * sparse output's sums against the dense one, and the squared errors of the
 * quantized outputs, all as calib/EVAL.md defines them (calib/eval.c is the
 * fp64 reference; these run in f32).  Rows whose kept sum of exponentials
 * falls below f32's range are left out of a set's error sums and listed, for
 * the caller to compute in fp64. */

typedef struct paro_cuda_eval_geometry {
    uint32_t n_tokens, head_dim, heads;
    uint32_t block_q, block_k, nq, nk;
    uint32_t n_slots;
    const uint32_t *perms; /* host: [n_slots][n_tokens], capture index at each position */
    double scale;
    uint32_t n_sets;       /* mask sets per head */
} paro_cuda_eval_geometry;

/* What one sample is evaluated with. */
typedef struct paro_cuda_eval_sample {
    const int *slot;     /* [heads][2]: the slot of capture order, of the chosen order */
    const int *set_side; /* [n_sets]: 0 a set's mask is in capture order, 1 in the chosen */
    const uint8_t *keep; /* [heads][n_sets][nq*nk]: 0/1, the sample's bucket */
} paro_cuda_eval_sample;

typedef struct paro_cuda_eval_out {
    double *norm_o;  /* [heads]: sum of the dense output's squares */
    double *sets;    /* [heads][n_sets][4]: sum over rows of the kept share, and of the
                        squared error, dot product and squared norm of the sparse output */
    double *quant;   /* [heads][2][2]: [capture, chosen order][INT8, INT4] squared error */
    uint32_t *flags; /* [cap_flags][3]: (head, set, capture index) left to the caller, sorted */
    uint32_t n_flags, cap_flags;
} paro_cuda_eval_out;

typedef struct paro_cuda_eval paro_cuda_eval;

/* Whether the eval kernels handle the geometry (head_dim 32/64/128, blocks
 * of 64 or 128); when not, a one-line reason (PARO_ERR_USAGE). */
int paro_cuda_eval_supports(const paro_cuda_eval_geometry *g, paro_errinfo *ei);
paro_err paro_cuda_eval_open(paro_cuda_eval **out, int device, const paro_cuda_eval_geometry *g,
                             paro_errinfo *ei);
void paro_cuda_eval_close(paro_cuda_eval *ev);
/* Pinned host buffers ([heads][N][D] f32 each) for the next sample's Q, K, V. */
paro_err paro_cuda_eval_buffers(paro_cuda_eval *ev, float **q, float **k, float **v,
                                paro_errinfo *ei);
/* Evaluates the sample in the buffers; returns when the results are in out. */
paro_err paro_cuda_eval_run(paro_cuda_eval *ev, const paro_cuda_eval_sample *s,
                            paro_cuda_eval_out *out, paro_errinfo *ei);

#ifdef __cplusplus
}
#endif
#endif
