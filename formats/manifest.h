/* paro — the capture manifest (formats/CAPTURE.md is normative) and reading
 * one layer of one sample as f32.
 *
 * A capture is a folder with manifest.json and one tensor file per sample;
 * each file holds, per layer, Q and K (V optional) of shape [NH, N, D] (HND)
 * or [N, NH, D] (NHD).  Readers are strict: the manifest's shape and every
 * tensor's shape must agree exactly, or the read fails with PARO_ERR_FORMAT
 * naming the file and the problem.
 */
#ifndef PARO_MANIFEST_H_0c3d58aa
#define PARO_MANIFEST_H_0c3d58aa

#include <stddef.h> /* size_t */
#include <stdint.h> /* uint32_t, int64_t */

#include "dtype.h"       /* paro_dtype */
#include "error.h"       /* paro_err, paro_errinfo */
#include "tensor_file.h" /* paro_tensor, paro_tensor_file */

#ifdef __cplusplus
extern "C" {
#endif

/* Limits written in CAPTURE.md. */
#define PARO_MAX_MANIFEST_BYTES (64u << 20)
#define PARO_MAX_LAYERS 4096u
#define PARO_MAX_HEADS 1024u
#define PARO_MAX_HEAD_DIM 1024u
#define PARO_MAX_TOKENS (1u << 24) /* N = T + F*H*W */
#define PARO_MAX_SAMPLES 100000u

typedef enum paro_layout { PARO_LAYOUT_HND = 0, PARO_LAYOUT_NHD = 1 } paro_layout;

typedef enum paro_kind { PARO_KIND_Q = 0, PARO_KIND_K = 1, PARO_KIND_V = 2 } paro_kind;

typedef struct paro_sample {
    char *file;       /* as written in the manifest, relative to its folder */
    int64_t prompt;
    double timestep;
    int64_t step;     /* -1 when the sample has no "step" */
} paro_sample;

typedef struct paro_manifest {
    char *path;        /* manifest.json as given */
    char *dir;         /* its folder, "." when none */
    char *model;
    uint32_t grid[3];  /* F, H, W */
    uint32_t text_tokens;
    int text_last;     /* 0: text first, 1: text last */
    uint32_t n_tokens; /* T + F*H*W */
    uint32_t layers, heads, head_dim;
    double scale;      /* given, or 1/sqrt(head_dim) */
    int scale_given;
    paro_layout layout;
    paro_dtype dtype;      /* the "dtype" key; PARO_DTYPE_INVALID when absent */
    char *tensor_names[3]; /* templates with "{layer}", by paro_kind */
    int64_t steps;         /* -1 when absent */
    double timestep_max;   /* default 1000 */
    size_t n_samples;
    paro_sample *samples;
    uint32_t crc32;        /* of the manifest's bytes */
} paro_manifest;

paro_err paro_manifest_load(const char *path, paro_manifest **out, paro_errinfo *ei);
void paro_manifest_free(paro_manifest *m);

/* A selection of samples given by the user (NULL: all of them): each in
 * range, listed once, in increasing order, and not none.  PARO_ERR_USAGE
 * says which rule a list breaks. */
paro_err paro_manifest_check_samples(const paro_manifest *m, const uint32_t *samples, size_t n,
                                     paro_errinfo *ei);

/* Path of sample i's file (manifest folder + file); caller frees. */
char *paro_manifest_sample_path(const paro_manifest *m, size_t i);
/* Tensor name for kind and layer, e.g. "layers.3.q"; caller frees. */
char *paro_manifest_tensor_name(const paro_manifest *m, paro_kind kind, uint32_t layer);
/* Denoising progress of sample i in [0, 1]: step/steps when both are given,
 * else 1 - timestep/timestep_max. */
double paro_manifest_progress(const paro_manifest *m, size_t i);

/* One open sample file.  Opening maps the file and validates its container
 * once; reading a layer checks that tensor's dtype and shape. */
typedef struct paro_sample_file paro_sample_file;

paro_err paro_sample_open(const paro_manifest *m, size_t sample, paro_sample_file **out,
                          paro_errinfo *ei);
void paro_sample_close(paro_sample_file *sf);

/* Reads one tensor of one layer into dst as f32 in HND order
 * ([heads][N][D], contiguous), whatever the file's layout and dtype.
 * Non-finite values (NaN, infinity) are refused with PARO_ERR_FORMAT naming
 * the tensor, head and token.  A missing tensor is PARO_ERR_FORMAT too;
 * callers that can do without V check paro_sample_has first. */
paro_err paro_sample_read(paro_sample_file *sf, paro_kind kind, uint32_t layer, float *dst,
                          paro_errinfo *ei);
/* The same for heads [h0, h1) only, written at their place in dst (which
 * still has room for every head).  Calls on one open file may run on
 * several threads at once, for disjoint heads. */
paro_err paro_sample_read_heads(paro_sample_file *sf, paro_kind kind, uint32_t layer,
                                uint32_t h0, uint32_t h1, float *dst, paro_errinfo *ei);
/* The same as paro_sample_read_heads for a bf16 tensor, keeping the bf16
 * bit patterns ([heads][N][D] uint16, little-endian); PARO_ERR_USAGE when
 * the tensor is not bf16.  Same checks, same messages. */
paro_err paro_sample_read_heads_bf16(paro_sample_file *sf, paro_kind kind, uint32_t layer,
                                     uint32_t h0, uint32_t h1, uint16_t *dst, paro_errinfo *ei);
/* The stored element type of one layer's tensor (after the checks of
 * paro_sample_check). */
paro_err paro_sample_dtype(paro_sample_file *sf, paro_kind kind, uint32_t layer,
                           paro_dtype *dtype, paro_errinfo *ei);
int paro_sample_has(paro_sample_file *sf, paro_kind kind, uint32_t layer);
/* The checks of paro_sample_read without reading the data: the tensor is
 * there, with a dtype paro reads and the manifest's shape.  Cheap (headers
 * only), so a run can check a whole capture before it starts. */
paro_err paro_sample_check(paro_sample_file *sf, paro_kind kind, uint32_t layer,
                           paro_errinfo *ei);

/* Checks one tensor's dtype and shape against the manifest (what reading
 * it as Q, K or V needs); messages name t->where. */
paro_err paro_sample_check_tensor(const paro_manifest *m, const paro_tensor *t,
                                  paro_errinfo *ei);
/* The open sample's tensors, for listing them (paro inspect). */
paro_tensor_file *paro_sample_tensors(paro_sample_file *sf);

#ifdef __cplusplus
}
#endif
#endif
