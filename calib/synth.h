/* paro — synthetic captures with planted axis-local heads (`paro synth`).
 *
 * Each (layer, head) gets one planted axis, drawn among the axes of size > 1.
 * A visual token's query and key carry a "line code": a random unit vector
 * shared by all tokens that agree on the two other axes, so a query attends
 * mostly to the tokens of its own line along the planted axis.  Its strength
 * is chosen so that about 80% of a query's mass stays in its line whatever N.
 * Text queries are weak and attend broadly; text keys are weak random
 * vectors.  Gaussian noise is added everywhere.
 *
 * Every value comes from a counter-based generator keyed by (seed, layer,
 * head, sample, token, ...), and only +, -, *, / and sqrt are used, so the
 * output is the same on every machine and thread count.
 */
#ifndef PARO_SYNTH_H_c47a2e19
#define PARO_SYNTH_H_c47a2e19

#include <stdint.h> /* uint32_t, uint64_t */

#include "error.h" /* paro_err, paro_errinfo */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct paro_synth_config {
    uint32_t grid[3];
    uint32_t text_tokens;
    int text_last;
    uint32_t layers, heads, head_dim, samples;
    uint64_t seed;
} paro_synth_config;

/* Validates sizes (each >= 1 but text, within the manifest limits). */
paro_err paro_synth_check(const paro_synth_config *c, paro_errinfo *ei);

/* Planted axis (PARO_AXIS_F/H/W) of (layer, head). */
int paro_synth_planted_axis(const paro_synth_config *c, uint32_t layer, uint32_t head);

/* Q, K and V of one layer of one sample, [heads][N][D] f32 each (any may be
 * NULL to skip it), the heads on up to `threads` threads: each writes its
 * own heads, so the values are the same whatever the count. */
void paro_synth_layer(const paro_synth_config *c, uint32_t sample, uint32_t layer,
                      float *q, float *k, float *v, int threads);

/* Diffusion timestep of a sample: whole numbers spread evenly over (0, 1000). */
double paro_synth_timestep(const paro_synth_config *c, uint32_t sample);

#ifdef __cplusplus
}
#endif
#endif
