/* paro — synthetic captures with planted axis-local heads (see synth.h). */
#include "synth.h"

#include <math.h>   /* sqrt, log, floor */
#include <string.h> /* memset */

#include "manifest.h" /* PARO_MAX_* */
#include "order.h"    /* PARO_AXIS_* */
#include "parallel.h" /* paro_parallel_for */

/* Fraction of a visual query's mass meant to stay on its own line, as the
 * ratio line : rest = LINE_WEIGHT : 1 (4 : 1, so about 80%). */
#define LINE_WEIGHT 4.0
#define NOISE 0.5       /* std of the per-element noise, relative to a unit code */
#define TEXT_QUERY 0.5  /* std of text query elements: weak, so attention is broad */

enum { STREAM_AXIS = 1, STREAM_CODE, STREAM_QNOISE, STREAM_KNOISE, STREAM_V, STREAM_TEXTK };

static uint64_t mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t key(uint64_t seed, uint64_t stream, uint64_t layer, uint64_t head,
                    uint64_t sample)
{
    return mix(mix(mix(mix(mix(seed) ^ stream) ^ layer) ^ head) ^ sample);
}

/* The i-th uniform in [0, 1) of a keyed stream. */
static double uniform_at(uint64_t k, uint64_t i)
{
    return (double)(mix(k ^ mix(i)) >> 11) * 0x1.0p-53;
}

/* Approximately standard normal: sum of 12 uniforms minus 6 (no libm, so the
 * same bits everywhere). */
static double normal_at(uint64_t k, uint64_t i)
{
    double s = 0.0;
    for (uint64_t j = 0; j < 12; j++)
        s += uniform_at(k, i * 12 + j);
    return s - 6.0;
}

paro_err paro_synth_check(const paro_synth_config *c, paro_errinfo *ei)
{
#define BAD(...) paro_error(ei, PARO_ERR_USAGE, NULL, PARO_NO_OFFSET, __VA_ARGS__)
    uint64_t visual = (uint64_t)c->grid[0] * c->grid[1] * c->grid[2];
    if (!c->grid[0] || !c->grid[1] || !c->grid[2])
        return BAD("grid axes must be >= 1");
    if (visual + c->text_tokens > PARO_MAX_TOKENS)
        return BAD("grid and text make %llu tokens; at most %u are allowed",
                   (unsigned long long)(visual + c->text_tokens), PARO_MAX_TOKENS);
    if (!c->layers || c->layers > PARO_MAX_LAYERS)
        return BAD("layers must be in [1, %u]", PARO_MAX_LAYERS);
    if (!c->heads || c->heads > PARO_MAX_HEADS)
        return BAD("heads must be in [1, %u]", PARO_MAX_HEADS);
    if (!c->head_dim || c->head_dim > PARO_MAX_HEAD_DIM)
        return BAD("head dim must be in [1, %u]", PARO_MAX_HEAD_DIM);
    if (!c->samples || c->samples > PARO_MAX_SAMPLES)
        return BAD("samples must be in [1, %u]", PARO_MAX_SAMPLES);
    if (c->seed > (1ull << 53))
        return BAD("seed must be at most 2^53");
    return PARO_OK;
#undef BAD
}

int paro_synth_planted_axis(const paro_synth_config *c, uint32_t layer, uint32_t head)
{
    int candidates[3], n = 0;
    for (int a = 0; a < 3; a++)
        if (c->grid[a] > 1)
            candidates[n++] = a;
    if (n == 0)
        return PARO_AXIS_W;
    uint64_t r = mix(key(c->seed, STREAM_AXIS, layer, head, 0));
    return candidates[r % (uint64_t)n];
}

double paro_synth_timestep(const paro_synth_config *c, uint32_t sample)
{
    /* Whole timesteps, as schedulers use: the middle of each sample's share
     * of [0, 1000], rounded down. */
    return floor(1000.0 * (1.0 - ((double)sample + 0.5) / (double)c->samples));
}

typedef struct synth_job {
    const paro_synth_config *c;
    uint32_t sample, layer;
    float *q, *k, *v;
} synth_job;

/* One head of a layer: its slices of q, k and v and nothing else. */
static void synth_head(void *ctx, uint32_t h, int worker)
{
    const synth_job *job = ctx;
    const paro_synth_config *c = job->c;
    const uint32_t layer = job->layer, sample = job->sample;
    float *q = job->q, *k = job->k, *v = job->v;
    (void)worker;
    const uint32_t F = c->grid[0], H = c->grid[1], W = c->grid[2];
    const uint32_t visual = F * H * W, n = visual + c->text_tokens, d = c->head_dim;
    const uint32_t base = c->text_last ? 0 : c->text_tokens;
    const uint32_t text0 = c->text_last ? visual : 0;
    const double sqrt_d = sqrt((double)d);

    const int axis = paro_synth_planted_axis(c, layer, h);
    const uint32_t len = c->grid[axis];
    /* scale * a^2 = log(LINE_WEIGHT * N / len) with scale = 1/sqrt(d):
     * then a line's len keys outweigh the N others LINE_WEIGHT to 1. */
    double logit = log(LINE_WEIGHT * (double)n / (double)len);
    if (logit < 1.0)
        logit = 1.0;
    const double a = sqrt(logit * sqrt_d);
    const uint64_t code_key = key(c->seed, STREAM_CODE, layer, h, 0);
    const uint64_t qn = key(c->seed, STREAM_QNOISE, layer, h, sample);
    const uint64_t kn = key(c->seed, STREAM_KNOISE, layer, h, sample);
    const uint64_t vk = key(c->seed, STREAM_V, layer, h, sample);
    const uint64_t tk = key(c->seed, STREAM_TEXTK, layer, h, 0);
    float *qh = q ? q + (size_t)h * n * d : NULL;
    float *kh = k ? k + (size_t)h * n * d : NULL;
    float *vh = v ? v + (size_t)h * n * d : NULL;

    for (uint32_t f = 0; f < F; f++)
        for (uint32_t y = 0; y < H; y++)
            for (uint32_t x = 0; x < W; x++) {
                const uint32_t coord[3] = {f, y, x};
                /* The line: coordinates on the two other axes. */
                uint64_t line = 0;
                for (int other = 0; other < 3; other++)
                    if (other != axis)
                        line = line * c->grid[other] + coord[other];
                const size_t tok = base + (size_t)f * H * W + (size_t)y * W + x;
                /* Unit code of the line (same for every sample). */
                double code[PARO_MAX_HEAD_DIM];
                double norm = 0.0;
                for (uint32_t e = 0; e < d; e++) {
                    code[e] = normal_at(code_key, line * d + e);
                    norm += code[e] * code[e];
                }
                norm = norm > 0.0 ? sqrt(norm) : 1.0;
                for (uint32_t e = 0; e < d; e++) {
                    double shared = a * code[e] / norm;
                    if (qh)
                        qh[tok * d + e] =
                            (float)(shared + NOISE * normal_at(qn, tok * d + e));
                    if (kh)
                        kh[tok * d + e] =
                            (float)(shared + NOISE * normal_at(kn, tok * d + e));
                }
            }
    for (uint32_t t = 0; t < c->text_tokens; t++) {
        const size_t tok = text0 + t;
        for (uint32_t e = 0; e < d; e++) {
            if (qh)
                qh[tok * d + e] = (float)(TEXT_QUERY * normal_at(qn, tok * d + e));
            if (kh)
                kh[tok * d + e] = (float)(NOISE * normal_at(tk, (uint64_t)t * d + e) +
                                          NOISE * normal_at(kn, tok * d + e));
        }
    }
    if (vh)
        for (size_t i = 0; i < (size_t)n * d; i++)
            vh[i] = (float)normal_at(vk, i);
}

void paro_synth_layer(const paro_synth_config *c, uint32_t sample, uint32_t layer,
                      float *q, float *k, float *v, int threads)
{
    synth_job job = {c, sample, layer, q, k, v};
    paro_parallel_for(threads, c->heads, synth_head, &job);
}
