/* paro — the plan file: in-memory form, writer and reader.
 * formats/PLAN.md is the normative description of the bytes.
 *
 * A plan holds, per calibrated layer and head, the chosen order (an index into
 * the plan's order table), the per-order scores, and per timestep bucket the
 * block mask with its density and recall; plus JSON metadata describing the
 * grid, blocks, metric and target settings and the inputs.
 */
#ifndef PARO_PLAN_H_7f13e6c9
#define PARO_PLAN_H_7f13e6c9

#include <stddef.h> /* size_t */
#include <stdint.h> /* uint32_t, uint8_t */

#include "error.h" /* paro_err, paro_errinfo */

#ifdef __cplusplus
extern "C" {
#endif

#define PARO_PLAN_MAJOR 1
/* The newest minor version this code reads and writes.  A plan is written with
 * the lowest minor that holds it (paro_plan_minor_needed): one that uses no
 * 1.2 key is a 1.1 file, byte for byte, that 1.1 readers read strictly. */
#define PARO_PLAN_MINOR 2
#define PARO_PLAN_SCHEMA "paro-plan/v1"

/* Limits written in PLAN.md; the reader rejects anything beyond them. */
#define PARO_PLAN_MAX_SECTIONS 65536u
#define PARO_PLAN_MAX_JSON (16u << 20)
#define PARO_PLAN_MAX_ORDERS 255u
#define PARO_PLAN_MAX_BLOCKS 65536u  /* per axis (nq, nk) */
#define PARO_PLAN_MAX_BUCKETS 1024u

/* The three scores stored per layer, head and order. */
enum { PARO_SCORE_SPARSE = 0, PARO_SCORE_QUANT = 1, PARO_SCORE_COMBINED = 2, PARO_N_SCORES = 3 };

typedef enum paro_target_mode {
    PARO_TARGET_DENSITY = 1,   /* fraction of tiles kept per head */
    PARO_TARGET_THRESHOLD = 2, /* keep tiles with mean mass per element >= value */
    PARO_TARGET_RECALL = 3     /* fewest tiles holding >= value of the mass */
} paro_target_mode;

typedef struct paro_plan_order {
    char kind[16];  /* "axes" for the six axis orders */
    char name[8];   /* for "axes": outermost to innermost, e.g. "HWF" */
} paro_plan_order;

/* A calibration sample.  File names and container details are deliberately
 * not recorded: the same capture in any container or layout must give the
 * same plan bytes. */
typedef struct paro_plan_sample {
    uint32_t index;   /* position in the manifest's samples */
    int64_t prompt;
    double timestep;
    int64_t step;     /* -1 when none */
    uint32_t bucket;
} paro_plan_sample;

typedef struct paro_plan {
    /* metadata (the JSON section) */
    char *tool;            /* "paro X.Y.Z" */
    char *model;
    char *backend;         /* "cpu" or "cuda" */
    uint32_t grid[3];
    uint32_t text_tokens;
    int text_last;
    uint32_t n_tokens;
    uint32_t heads, head_dim;
    double scale;
    uint32_t model_layers;   /* layers in the capture */
    uint32_t n_layers;       /* layers in this plan */
    uint32_t *layers;        /* [n_layers], strictly increasing model layer ids */
    uint32_t block_q, block_k, nq, nk;
    uint32_t n_orders;
    paro_plan_order *orders; /* [n_orders] */
    double alpha;            /* combined = alpha*sparse' + (1-alpha)*quant' */
    double score_recall;     /* recall at which the sparse score is taken */
    paro_target_mode target_mode;
    double target_value;
    int keep_text;
    int keep_last;           /* the last block row and column are kept (1.2) */
    uint32_t n_buckets;
    double dense_until;
    size_t n_samples;
    paro_plan_sample *samples; /* calibration samples, manifest order */
    uint64_t seed;

    /* per layer */
    uint32_t *layer_crc32; /* [n_layers]: CRC-32 of the layer's Q and K as
                              little-endian f32 [heads][N][D], for each
                              calibration sample in order, Q then K */

    /* per head data */
    uint8_t *head_order;   /* [n_layers][heads], index into orders */
    double *scores;        /* [n_layers][heads][n_orders][PARO_N_SCORES] */
    double *density;       /* [n_layers][n_buckets][heads] */
    double *recall;        /* [n_layers][n_buckets][heads] */
    uint8_t **masks;       /* [n_layers] -> packed bits [n_buckets][heads][nq][nk] */

    /* Optional (format 1.1, section TILEMASS): per tile, the chosen order's
     * mean tile mass as a log-scale level (paro_plan_set_tile_mass), for
     * pictures.  paro_plan_alloc allocates tile_mass only when
     * with_tile_mass is set; the writer writes it only then. */
    int with_tile_mass;
    uint8_t **tile_mass;   /* [n_layers] -> [n_buckets][heads][nq][nk] or NULL */

    /* The minor version of the file a plan was read from (the reader sets
     * it; the writer writes paro_plan_minor_needed). */
    uint32_t format_minor;
} paro_plan;

/* Allocates a plan with the per-head arrays sized from the fields already
 * set in *shape (grid, text, heads, layers list, blocks, orders, buckets);
 * everything else is copied from shape.  Arrays start zeroed. */
paro_err paro_plan_alloc(paro_plan **out, const paro_plan *shape, paro_errinfo *ei);
void paro_plan_free(paro_plan *p);

/* The minor version p is written with: 2 when it uses a key of 1.2
 * (target.keep_last), otherwise 1. */
uint32_t paro_plan_minor_needed(const paro_plan *p);

/* Bytes of one layer's packed mask bitmap. */
size_t paro_plan_mask_bytes(const paro_plan *p);
/* Bit (bucket, head, qi, kj) of layer slot l (0..n_layers-1). */
int paro_plan_mask_get(const paro_plan *p, uint32_t l, uint32_t bucket, uint32_t head,
                       uint32_t qi, uint32_t kj);
void paro_plan_mask_set(paro_plan *p, uint32_t l, uint32_t bucket, uint32_t head,
                        uint32_t qi, uint32_t kj, int on);

/* Tile-mass levels (PLAN.md "TILEMASS"): for one bucket and head, with M
 * the largest mean tile mass and r = mass / M, level 0 means r < 1e-6 (or no
 * mass at all), and level 1 + round(254 * (log10(r) + 6) / 6) in [1, 255]
 * otherwise, so the largest tile is 255 and each level is 6/254 of a decade. */
#define PARO_TILE_MASS_DECADES 6
/* Bytes of one layer's tile-mass levels: n_buckets * heads * nq * nk. */
size_t paro_plan_tile_mass_bytes(const paro_plan *p);
/* Quantises mass[nq * nk] (the mean tile masses of layer slot l, bucket b,
 * head h, row-major in the head's chosen order) into p->tile_mass.  Does
 * nothing when the plan has no tile masses or an index is out of range.
 * Heads write disjoint bytes, so heads may be set from several threads. */
void paro_plan_set_tile_mass(paro_plan *p, uint32_t l, uint32_t b, uint32_t h,
                             const double *mass);
/* Level of tile (qi, kj); 0 when the plan has none or out of range. */
uint8_t paro_plan_tile_mass_get(const paro_plan *p, uint32_t l, uint32_t b, uint32_t h,
                                uint32_t qi, uint32_t kj);
/* The mass relative to the head's largest tile that a level stands for:
 * 0 for level 0, else 10^(6 * (level - 1) / 254 - 6). */
double paro_tile_mass_relative(uint8_t level);

/* Index helpers into the flat arrays. */
static inline size_t paro_plan_head_index(const paro_plan *p, uint32_t l, uint32_t h)
{
    return (size_t)l * p->heads + h;
}
static inline size_t paro_plan_bucket_index(const paro_plan *p, uint32_t l, uint32_t b,
                                            uint32_t h)
{
    return ((size_t)l * p->n_buckets + b) * p->heads + h;
}
static inline double *paro_plan_scores_at(const paro_plan *p, uint32_t l, uint32_t h,
                                         uint32_t o)
{
    return p->scores + (((size_t)l * p->heads + h) * p->n_orders + o) * PARO_N_SCORES;
}

/* Writes p to path atomically, compressing its sections on up to `threads`
 * threads (the bytes do not depend on how many). */
paro_err paro_plan_write(const paro_plan *p, const char *path, int threads, paro_errinfo *ei);
/* Serialises p into a malloc'ed buffer (what paro_plan_write writes). */
paro_err paro_plan_serialize(const paro_plan *p, uint8_t **buf, size_t *len,
                             paro_errinfo *ei);

/* Reads and verifies everything (CRCs, coverage, limits, JSON schema,
 * consistency of sections with the metadata).  name is used in messages. */
paro_err paro_plan_read(const char *path, paro_plan **out, paro_errinfo *ei);
paro_err paro_plan_parse(const uint8_t *buf, size_t len, const char *name,
                         paro_plan **out, paro_errinfo *ei);

/* The `paro dump --json` document (schema paro-plan/v1): the metadata keys in
 * their fixed order followed by a "heads" array; malloc'ed, NUL-terminated,
 * ending in a newline.  NULL when out of memory. */
char *paro_plan_to_json(const paro_plan *p);

/* The same document with, in each head, "masks": per bucket, nq arrays of
 * nk 0/1 integers (PLAN.md "The paro dump --json document"). */
char *paro_plan_to_json_full(const paro_plan *p);

/* Combines plans calibrated on disjoint sets of layers of the same capture
 * with the same settings (every metadata key but "layers" and "inputs" must
 * be equal, and all or none carry tile masses) into one plan with the layers
 * sorted: the plan a single run over all of them writes.  A difference is
 * PARO_ERR_USAGE naming the first differing key and both values; a layer in
 * two plans is PARO_ERR_USAGE naming the layer.  names[i] (or "plan i+1"
 * when names is NULL) names parts[i] in messages. */
paro_err paro_plan_merge(const paro_plan *const *parts, size_t n, paro_plan **out,
                         paro_errinfo *ei);
paro_err paro_plan_merge_named(const paro_plan *const *parts, const char *const *names,
                               size_t n, paro_plan **out, paro_errinfo *ei);

/* Name of a target mode: "density", "threshold", "recall". */
const char *paro_target_name(paro_target_mode m);

#ifdef __cplusplus
}
#endif
#endif
