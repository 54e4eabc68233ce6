/* paro — a plan as arrays for runtimes: `paro export` writes them as .npz
 * (numpy), .safetensors or JSON, under the same names in all three:
 *
 *   order_names    [O]                  the order table's names ("FHW", ...); npz: '<U3'
 *                                       strings, safetensors: a JSON list in the
 *                                       __metadata__ entry "order_names", JSON: a list
 *   layers         int32 [L]            the model layer id of each layer slot
 *   orders         int8  [L, H]         each head's index into order_names
 *   perms          int32 [O, N]         per order: the capture index of the token at
 *                                       each permuted position (PLAN.md 8.1)
 *   masks          bool  [B, L, H, nq, nk]   1 = the tile is computed, in the head's order
 *   kv_num_blocks  int32 [B, L, H, nq]  kept key blocks per query block
 *   kv_indices     int32 [B, L, H, nq, nk]   their indices, ascending, then 0s up to nk
 *                                       (FlexAttention's BlockMask inputs)
 *   density        float32 [B, L, H]    kept share of the tiles
 *   recall         float32 [B, L, H]    kept share of the attention mass
 *
 * B = timestep buckets, L = layers in the plan, H = heads, O = orders, N =
 * tokens, [nq, nk] = blocks.  Arrays are C-order, little-endian.  The same
 * plan gives the same bytes.  Everything is produced a row at a time, so
 * memory stays small whatever the plan's size (safetensors aside: its
 * writer holds one whole tensor).
 */
#ifndef PARO_PLAN_EXPORT_H_7d2c9e44
#define PARO_PLAN_EXPORT_H_7d2c9e44

#include <stdint.h> /* uint64_t */

#include "error.h" /* paro_err, paro_errinfo */
#include "plan.h"  /* paro_plan */

#ifdef __cplusplus
extern "C" {
#endif

typedef enum paro_export_format {
    PARO_EXPORT_NPZ = 1,
    PARO_EXPORT_JSON = 2,
    PARO_EXPORT_SAFETENSORS = 3
} paro_export_format;

/* "npz", "json", "safetensors" -> the format; 0 when none of them. */
paro_export_format paro_export_format_parse(const char *name);

typedef struct paro_export_options {
    int compress;        /* npz: deflate the members (numpy.savez_compressed) */
    int force_zip64;     /* npz: ZIP64 records even where 4 GiB is not reached (tests) */
} paro_export_options;

/* Writes the arrays of p to path atomically.  opt may be NULL. */
paro_err paro_plan_export(const paro_plan *p, paro_export_format format, const char *path,
                          const paro_export_options *opt, paro_errinfo *ei);

#ifdef __cplusplus
}
#endif
#endif
