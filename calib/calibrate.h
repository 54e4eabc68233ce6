/* paro — the calibration driver: capture in, plan out.
 *
 * For each selected layer: stream the selected samples' Q and K (one sample
 * at a time, never the whole capture), accumulate block statistics of every
 * distinct order per head, score the orders, pick one per head, and build the
 * masks of each timestep bucket from that bucket's samples.
 *
 * The plan is byte-identical for any thread count: heads are independent, and
 * each head's statistics are summed over samples in manifest order.
 */
#ifndef PARO_CALIBRATE_H_6f0a2c8d
#define PARO_CALIBRATE_H_6f0a2c8d

#include <signal.h> /* sig_atomic_t */
#include <stddef.h> /* size_t */
#include <stdint.h> /* uint32_t, uint64_t */

#include "backend.h"  /* paro_backend, paro_backend_shape */
#include "error.h"    /* paro_err, paro_errinfo */
#include "manifest.h" /* paro_manifest */
#include "mask.h"     /* paro_mask_target */
#include "plan.h"     /* paro_plan */

#ifdef __cplusplus
extern "C" {
#endif

#define PARO_DEFAULT_BLOCK 64
#define PARO_DEFAULT_DENSITY 0.25

typedef enum paro_device { PARO_DEVICE_AUTO = 0, PARO_DEVICE_CPU = 1, PARO_DEVICE_CUDA = 2 } paro_device;

typedef struct paro_calib_progress {
    uint64_t done, total;  /* (layer, sample) steps of this run */
    uint32_t layer;        /* model layer id being worked on */
    size_t sample;         /* manifest index of the sample just finished */
    uint32_t resumed;      /* layers taken from the journal */
} paro_calib_progress;

/* Where the time of a run went (seconds, wall clock on the driving thread;
 * scoring runs beside it on its own thread; with several GPUs, the sums
 * over their threads). */
typedef struct paro_calib_timing {
    double open;     /* opening the backend (for CUDA: the device, its memory) */
    double first;    /* from the start of the run until its first sample is
                        queued (the earliest lane's) */
    double read;     /* reading samples (and their digest) */
    double submit;   /* handing them to the backend: the CPU's compute, or
                        the GPU's upload */
    double collect;  /* waiting for a layer's results and taking them */
    double wait_score; /* waiting for the scoring thread */
    double score;    /* scoring and masks, on the scoring thread */
    double journal;  /* of which saving finished layers to the journal */
    double close;    /* closing the backend (for CUDA: freeing its memory) */
} paro_calib_timing;

#define PARO_CALIB_MAX_GPUS 64

typedef struct paro_calib_config {
    uint32_t block_q, block_k;
    paro_mask_target target;
    double alpha;         /* weight of the sparse score in the combined score */
    double score_recall;  /* recall at which the sparse score is taken */
    uint32_t n_buckets;   /* timestep buckets (>= 1) */
    double dense_until;   /* buckets entirely before this progress are dense */
    int tile_mass;        /* also store each tile's mass level (TILEMASS) */
    int threads;          /* worker threads (>= 1) */
    paro_device device;
    /* CUDA devices to spread the layers over, one host thread ("lane")
     * each, in contiguous shares of the layers (--gpus; a device may appear
     * twice).  NULL: one lane, on device 0 or the CPU as `device` says.
     * With device CPU only the count matters: that many CPU lanes (tests
     * run the lanes this way without a GPU).  The plan is the same bytes
     * whatever the list. */
    const int *gpus;
    uint32_t n_gpus;
    const uint32_t *layers; /* model layer ids, strictly increasing; NULL = all */
    uint32_t n_layers;
    const uint32_t *samples; /* manifest sample indices, strictly increasing; NULL = all */
    size_t n_samples;
    uint64_t seed;           /* recorded in the plan */
    uint64_t max_memory;     /* host bytes a run may hold; 0 = no limit */
    /* Journal of finished layers (NULL: none); with resume, layers already
     * in it are not computed again.  The caller removes the file once the
     * plan is written. */
    const char *journal;
    int resume;
    /* Called on the calling thread once at the start (done = 0) and after
     * every (layer, sample) step. */
    void (*progress)(void *user, const paro_calib_progress *p);
    void *progress_user;
    /* Polled between steps; when it becomes non-zero the run stops with
     * PARO_ERR_INTERRUPTED.  May be NULL. */
    volatile sig_atomic_t *stop;
    /* Filled with where the time went, when not NULL. */
    paro_calib_timing *timing;
    /* When not NULL, opens each lane's backend instead of the CPU or CUDA
     * one `device` picks (tests stand in backends of their own this way). */
    paro_err (*open_backend)(void *user, paro_backend *b, const paro_backend_shape *s, int gpu,
                             int threads, paro_errinfo *ei);
    void *open_backend_user;
} paro_calib_config;

void paro_calib_config_default(paro_calib_config *c);

/* Bucket of a sample with progress p in [0, 1]: floor(p * K), clamped to K-1. */
uint32_t paro_bucket_of(double progress, uint32_t n_buckets);

paro_err paro_calibrate(const paro_manifest *m, const paro_calib_config *cfg,
                        paro_plan **out, paro_errinfo *ei);

#ifdef __cplusplus
}
#endif
#endif
