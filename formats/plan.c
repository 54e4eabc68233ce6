/* paro — the in-memory plan: allocation, mask bits, and the validity rules
 * shared by the writer and the reader (formats/PLAN.md is normative). */
#include "plan.h" /* the API implemented here */
#include "plan_internal.h" /* paro_plan_bad, section types, meta keys */

#include <math.h>   /* isfinite, log10, pow, floor */
#include <stdarg.h> /* va_list */
#include <stdio.h>  /* vsnprintf, snprintf */
#include <stdlib.h> /* calloc, malloc, free */
#include <string.h> /* strcmp, strdup, strlen, memcpy, memchr, memset */

const uint8_t paro_plan_magic[8] = {0x97, 'P', 'A', 'R', '\r', '\n', 0x1a, '\n'};

const char *const paro_plan_meta_keys[PARO_K_COUNT] = {
    "tool",    "model",     "backend", "grid",         "text_tokens", "text_position",
    "tokens",  "num_heads", "head_dim", "scale",       "model_layers", "layers",
    "block",   "blocks",    "orders",  "metric",       "target",      "buckets",
    "samples", "seed",      "inputs",
};

const char *paro_plan_section_name(uint32_t type)
{
    switch (type) {
    case PARO_SEC_META: return "META";
    case PARO_SEC_HEAD_ORDER: return "HEAD_ORDER";
    case PARO_SEC_SCORES: return "SCORES";
    case PARO_SEC_DENSITY: return "DENSITY";
    case PARO_SEC_RECALL: return "RECALL";
    case PARO_SEC_PERM: return "PERM";
    case PARO_SEC_MASKS: return "MASKS";
    case PARO_SEC_TILEMASS: return "TILEMASS";
    default: return NULL;
    }
}

const char *paro_target_name(paro_target_mode m)
{
    switch (m) {
    case PARO_TARGET_DENSITY: return "density";
    case PARO_TARGET_THRESHOLD: return "threshold";
    case PARO_TARGET_RECALL: return "recall";
    }
    return "unknown";
}

/* ---- sizes ---- */

int paro_plan_sizes_of(const paro_plan *p, paro_plan_sizes *s)
{
    uint64_t lh, t, bits;
    memset(s, 0, sizeof *s);
    if (!paro_mul_ok(p->n_layers, p->heads, &lh))
        return 0;
    s->head_order = lh;
    if (!paro_mul_ok(lh, p->n_orders, &t) || !paro_mul_ok(t, PARO_N_SCORES * 8u, &s->scores))
        return 0;
    if (!paro_mul_ok(lh, p->n_buckets, &t) || !paro_mul_ok(t, 8u, &s->density))
        return 0;
    if (!paro_mul_ok(p->n_tokens, 4u, &s->perm))
        return 0;
    if (!paro_mul_ok(p->n_buckets, p->heads, &t) || !paro_mul_ok(t, p->nq, &t) ||
        !paro_mul_ok(t, p->nk, &bits))
        return 0;
    s->mask = bits / 8 + (bits % 8 != 0);
    s->tile_mass = bits; /* one byte per tile */
    return 1;
}

size_t paro_plan_mask_bytes(const paro_plan *p)
{
    paro_plan_sizes s;
    if (!paro_plan_sizes_of(p, &s) || s.mask > SIZE_MAX)
        return 0;
    return (size_t)s.mask;
}

size_t paro_plan_tile_mass_bytes(const paro_plan *p)
{
    paro_plan_sizes s;
    if (!paro_plan_sizes_of(p, &s) || s.tile_mass > SIZE_MAX)
        return 0;
    return (size_t)s.tile_mass;
}

/* ---- allocation ---- */

/* calloc of n*size bytes, at least one byte so that NULL means failure. */
static void *zalloc(uint64_t n, uint64_t size)
{
    uint64_t bytes;
    if (!paro_mul_ok(n, size, &bytes) || bytes > SIZE_MAX)
        return NULL;
    return calloc(bytes ? (size_t)bytes : 1, 1);
}

static void *dup_mem(const void *src, uint64_t n, uint64_t size)
{
    void *d = zalloc(n, size);
    if (d && src && n)
        memcpy(d, src, (size_t)(n * size));
    return d;
}

paro_err paro_plan_alloc(paro_plan **out, const paro_plan *shape, paro_errinfo *ei)
{
    *out = NULL;
    if (!shape || (shape->n_layers && !shape->layers) || (shape->n_orders && !shape->orders) ||
        (shape->n_samples && !shape->samples))
        return paro_error(ei, PARO_ERR_USAGE, NULL, PARO_NO_OFFSET,
                          "plan shape is missing its layers, orders or samples");
    paro_plan_sizes s;
    if (!paro_plan_sizes_of(shape, &s) || s.scores > SIZE_MAX || s.density > SIZE_MAX ||
        s.mask > SIZE_MAX || (shape->with_tile_mass && s.tile_mass > SIZE_MAX))
        return paro_error(ei, PARO_ERR_LIMIT, NULL, PARO_NO_OFFSET,
                          "plan of %u layers x %u heads x %u x %u blocks is too large",
                          shape->n_layers, shape->heads, shape->nq, shape->nk);

    paro_plan *p = calloc(1, sizeof *p);
    if (!p)
        return paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory");
    *p = *shape;
    p->tool = p->model = p->backend = NULL;
    p->layers = NULL;
    p->orders = NULL;
    p->samples = NULL;
    p->layer_crc32 = NULL;
    p->head_order = NULL;
    p->scores = p->density = p->recall = NULL;
    p->masks = NULL;
    p->tile_mass = NULL;
    p->with_tile_mass = shape->with_tile_mass != 0;

    int ok = 1;
    if (shape->tool && !(p->tool = strdup(shape->tool)))
        ok = 0;
    if (shape->model && !(p->model = strdup(shape->model)))
        ok = 0;
    if (shape->backend && !(p->backend = strdup(shape->backend)))
        ok = 0;
    ok = ok && (p->layers = dup_mem(shape->layers, p->n_layers, sizeof *p->layers));
    ok = ok && (p->orders = dup_mem(shape->orders, p->n_orders, sizeof *p->orders));
    ok = ok && (p->samples = dup_mem(shape->samples, p->n_samples, sizeof *p->samples));
    ok = ok && (p->layer_crc32 = dup_mem(shape->layer_crc32, p->n_layers, sizeof *p->layer_crc32));
    ok = ok && (p->head_order = zalloc(s.head_order, 1));
    ok = ok && (p->scores = zalloc(s.scores, 1));
    ok = ok && (p->density = zalloc(s.density, 1));
    ok = ok && (p->recall = zalloc(s.density, 1));
    ok = ok && (p->masks = zalloc(p->n_layers, sizeof *p->masks));
    for (uint32_t l = 0; ok && l < p->n_layers; l++)
        ok = (p->masks[l] = zalloc(s.mask, 1)) != NULL;
    if (ok && p->with_tile_mass) {
        ok = (p->tile_mass = zalloc(p->n_layers, sizeof *p->tile_mass)) != NULL;
        for (uint32_t l = 0; ok && l < p->n_layers; l++)
            ok = (p->tile_mass[l] = zalloc(s.tile_mass, 1)) != NULL;
    }
    if (!ok) {
        paro_plan_free(p);
        return paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory");
    }
    *out = p;
    return PARO_OK;
}

uint32_t paro_plan_minor_needed(const paro_plan *p)
{
    return p->keep_last ? 2 : 1;
}

void paro_plan_free(paro_plan *p)
{
    if (!p)
        return;
    free(p->tool);
    free(p->model);
    free(p->backend);
    free(p->layers);
    free(p->orders);
    free(p->samples);
    free(p->layer_crc32);
    free(p->head_order);
    free(p->scores);
    free(p->density);
    free(p->recall);
    if (p->masks)
        for (uint32_t l = 0; l < p->n_layers; l++)
            free(p->masks[l]);
    free(p->masks);
    if (p->tile_mass)
        for (uint32_t l = 0; l < p->n_layers; l++)
            free(p->tile_mass[l]);
    free(p->tile_mass);
    free(p);
}

/* ---- mask bits: bit i = ((bucket*heads + head)*nq + qi)*nk + kj lives in
 * byte i >> 3 at bit i & 7 (LSB first) ---- */

static int mask_bit(const paro_plan *p, uint32_t l, uint32_t bucket, uint32_t head,
                    uint32_t qi, uint32_t kj, uint64_t *bit)
{
    if (!p || !p->masks || l >= p->n_layers || bucket >= p->n_buckets || head >= p->heads ||
        qi >= p->nq || kj >= p->nk || !p->masks[l])
        return 0;
    *bit = (((uint64_t)bucket * p->heads + head) * p->nq + qi) * p->nk + kj;
    return 1;
}

int paro_plan_mask_get(const paro_plan *p, uint32_t l, uint32_t bucket, uint32_t head,
                       uint32_t qi, uint32_t kj)
{
    uint64_t i;
    if (!mask_bit(p, l, bucket, head, qi, kj, &i))
        return 0;
    return (p->masks[l][i >> 3] >> (i & 7)) & 1;
}

void paro_plan_mask_set(paro_plan *p, uint32_t l, uint32_t bucket, uint32_t head, uint32_t qi,
                        uint32_t kj, int on)
{
    uint64_t i;
    if (!mask_bit(p, l, bucket, head, qi, kj, &i))
        return;
    uint8_t m = (uint8_t)(1u << (i & 7));
    if (on)
        p->masks[l][i >> 3] |= m;
    else
        p->masks[l][i >> 3] &= (uint8_t)~m;
}

/* ---- tile-mass levels (PLAN.md "TILEMASS") ---- */

uint8_t paro_plan_tile_mass_level(double m, double top)
{
    double r = m / top;
    /* NaN fails the comparison too: no mass known */
    if (!(r >= 1e-6))
        return 0;
    double x = 254.0 * (log10(r) + PARO_TILE_MASS_DECADES) / PARO_TILE_MASS_DECADES;
    double level = 1.0 + floor(x + 0.5);
    return level >= 255.0 ? 255 : level <= 1.0 ? 1 : (uint8_t)level;
}

double paro_tile_mass_relative(uint8_t level)
{
    if (level == 0)
        return 0.0;
    return pow(10.0, PARO_TILE_MASS_DECADES * (level - 1) / 254.0 - PARO_TILE_MASS_DECADES);
}

void paro_plan_set_tile_mass(paro_plan *p, uint32_t l, uint32_t b, uint32_t h,
                             const double *mass)
{
    if (!p || !p->with_tile_mass || !p->tile_mass || l >= p->n_layers || b >= p->n_buckets ||
        h >= p->heads || !p->tile_mass[l] || !mass)
        return;
    const size_t tiles = (size_t)p->nq * p->nk;
    uint8_t *out = p->tile_mass[l] + ((size_t)b * p->heads + h) * tiles;
    double top = 0.0;
    for (size_t i = 0; i < tiles; i++)
        if (mass[i] > top)
            top = mass[i];
    if (!(top > 0.0) || !isfinite(top)) {
        memset(out, 0, tiles);
        return;
    }
    for (size_t i = 0; i < tiles; i++)
        out[i] = paro_plan_tile_mass_level(mass[i], top);
}

uint8_t paro_plan_tile_mass_get(const paro_plan *p, uint32_t l, uint32_t b, uint32_t h,
                                uint32_t qi, uint32_t kj)
{
    if (!p || !p->with_tile_mass || !p->tile_mass || l >= p->n_layers || b >= p->n_buckets ||
        h >= p->heads || qi >= p->nq || kj >= p->nk || !p->tile_mass[l])
        return 0;
    return p->tile_mass[l][(((size_t)b * p->heads + h) * p->nq + qi) * p->nk + kj];
}

/* ---- orders ---- */

static const char *const axes_names[6] = {"FHW", "FWH", "HFW", "HWF", "WFH", "WHF"};

int paro_plan_axes_name_ok(const char *name)
{
    for (int i = 0; i < 6; i++)
        if (strcmp(name, axes_names[i]) == 0)
            return 1;
    return 0;
}

static int axis_of(char c)
{
    return c == 'F' ? 0 : c == 'H' ? 1 : 2;
}

void paro_plan_axes_perm(const paro_plan *p, const char *name, uint32_t *perm)
{
    const uint32_t F = p->grid[0], H = p->grid[1], W = p->grid[2], T = p->text_tokens;
    const uint32_t size[3] = {F, H, W};
    const uint32_t stride[3] = {H * W, W, 1}; /* capture-order strides of f, h, w */
    int a0 = axis_of(name[0]), a1 = axis_of(name[1]), a2 = axis_of(name[2]);
    uint32_t base = p->text_last ? 0 : T;
    uint32_t pos = 0;
    if (!p->text_last)
        for (; pos < T; pos++)
            perm[pos] = pos;
    for (uint32_t i = 0; i < size[a0]; i++)
        for (uint32_t j = 0; j < size[a1]; j++)
            for (uint32_t k = 0; k < size[a2]; k++)
                perm[pos++] = base + i * stride[a0] + j * stride[a1] + k * stride[a2];
    if (p->text_last)
        for (uint32_t t = 0; t < T; t++, pos++)
            perm[pos] = pos;
}

/* ---- UTF-8 ---- */

size_t paro_plan_utf8_char(const uint8_t *s, size_t n)
{
    if (n == 0 || s[0] == 0)
        return 0;
    uint8_t c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    uint32_t cp, min;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, cp = c & 0x1f, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, cp = c & 0x0f, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, cp = c & 0x07, min = 0x10000;
    else
        return 0;
    if (n < len)
        return 0;
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

int paro_plan_utf8_ok(const char *str, size_t n)
{
    const uint8_t *s = (const uint8_t *)str;
    for (size_t i = 0; i < n;) {
        size_t len = paro_plan_utf8_char(s + i, n - i);
        if (!len)
            return 0;
        i += len;
    }
    return 1;
}

/* ---- validity rules ---- */

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static int bad_key(paro_plan_bad *b, paro_err code, int key, const char *fmt, ...)
{
    b->code = code;
    b->key = key;
    b->section = 0;
    b->slot = 0;
    b->elem = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->msg, sizeof b->msg, fmt, ap);
    va_end(ap);
    return 1;
}

static int str_ok(const char *s)
{
    return s && paro_plan_utf8_ok(s, strlen(s));
}

/* NaN fails every comparison, so the range tests below refuse it too. */
static int in01(double x)
{
    return x >= 0.0 && x <= 1.0;
}

int paro_plan_check_meta(const paro_plan *p, paro_plan_bad *b)
{
    const paro_err F = PARO_ERR_FORMAT;
    if (!str_ok(p->tool))
        return bad_key(b, F, PARO_K_TOOL, "\"tool\" is missing or not valid utf-8");
    if (!str_ok(p->model))
        return bad_key(b, F, PARO_K_MODEL, "\"model\" is missing or not valid utf-8");
    if (!p->backend || (strcmp(p->backend, "cpu") != 0 && strcmp(p->backend, "cuda") != 0))
        return bad_key(b, F, PARO_K_BACKEND, "\"backend\" must be \"cpu\" or \"cuda\"");
    for (int i = 0; i < 3; i++)
        if (p->grid[i] < 1)
            return bad_key(b, F, PARO_K_GRID, "\"grid\" sizes must be >= 1");
    if (p->text_last != 0 && p->text_last != 1)
        return bad_key(b, F, PARO_K_TEXT_POSITION, "text position must be first or last");
    uint64_t vis, n;
    if (!paro_mul_ok(p->grid[0], p->grid[1], &vis) || !paro_mul_ok(vis, p->grid[2], &vis) ||
        !paro_add_ok(vis, p->text_tokens, &n) || n > UINT32_MAX)
        return bad_key(b, PARO_ERR_LIMIT, PARO_K_GRID,
                       "grid %ux%ux%u with %u text tokens has more than 2^32-1 tokens",
                       p->grid[0], p->grid[1], p->grid[2], p->text_tokens);
    if (p->n_tokens != n)
        return bad_key(b, F, PARO_K_TOKENS,
                       "\"tokens\" is %u, but text_tokens + F*H*W is %llu", p->n_tokens,
                       (unsigned long long)n);
    if (p->heads < 1)
        return bad_key(b, F, PARO_K_HEADS, "\"num_heads\" must be >= 1");
    if (p->head_dim < 1)
        return bad_key(b, F, PARO_K_HEAD_DIM, "\"head_dim\" must be >= 1");
    if (!(p->scale > 0.0) || !isfinite(p->scale))
        return bad_key(b, F, PARO_K_SCALE, "\"scale\" must be a finite number > 0");
    if (p->model_layers < 1)
        return bad_key(b, F, PARO_K_MODEL_LAYERS, "\"model_layers\" must be >= 1");
    if (p->n_layers < 1 || !p->layers)
        return bad_key(b, F, PARO_K_LAYERS, "\"layers\" must not be empty");
    for (uint32_t i = 0; i < p->n_layers; i++) {
        if (p->layers[i] >= p->model_layers)
            return bad_key(b, F, PARO_K_LAYERS, "layer %u is not below model_layers %u",
                           p->layers[i], p->model_layers);
        if (i > 0 && p->layers[i] <= p->layers[i - 1])
            return bad_key(b, F, PARO_K_LAYERS,
                           "\"layers\" must be strictly increasing (%u after %u)",
                           p->layers[i], p->layers[i - 1]);
    }
    if (p->block_q < 1 || p->block_k < 1)
        return bad_key(b, F, PARO_K_BLOCK, "\"block\" sizes must be >= 1");
    uint32_t nq = (uint32_t)((n + p->block_q - 1) / p->block_q);
    uint32_t nk = (uint32_t)((n + p->block_k - 1) / p->block_k);
    if (p->nq != nq || p->nk != nk)
        return bad_key(b, F, PARO_K_BLOCKS,
                       "\"blocks\" is [%u, %u], but %u tokens in blocks of [%u, %u] make "
                       "[%u, %u]",
                       p->nq, p->nk, p->n_tokens, p->block_q, p->block_k, nq, nk);
    if (nq > PARO_PLAN_MAX_BLOCKS || nk > PARO_PLAN_MAX_BLOCKS)
        return bad_key(b, PARO_ERR_LIMIT, PARO_K_BLOCKS,
                       "%u x %u blocks exceed the limit of %u per axis", nq, nk,
                       PARO_PLAN_MAX_BLOCKS);
    if (p->n_orders < 1 || !p->orders)
        return bad_key(b, F, PARO_K_ORDERS, "\"orders\" must not be empty");
    if (p->n_orders > PARO_PLAN_MAX_ORDERS)
        return bad_key(b, PARO_ERR_LIMIT, PARO_K_ORDERS,
                       "%u orders exceed the limit of %u", p->n_orders, PARO_PLAN_MAX_ORDERS);
    for (uint32_t o = 0; o < p->n_orders; o++) {
        const paro_plan_order *od = &p->orders[o];
        if (!memchr(od->kind, 0, sizeof od->kind) || strcmp(od->kind, "axes") != 0)
            return bad_key(b, F, PARO_K_ORDERS,
                           "order %u has an unknown kind (version 1.0 knows only \"axes\")", o);
        if (!memchr(od->name, 0, sizeof od->name) || !paro_plan_axes_name_ok(od->name))
            return bad_key(b, F, PARO_K_ORDERS,
                           "order %u: name must be one of FHW FWH HFW HWF WFH WHF", o);
        for (uint32_t q = 0; q < o; q++)
            if (strcmp(p->orders[q].name, od->name) == 0)
                return bad_key(b, F, PARO_K_ORDERS, "order %s is listed twice", od->name);
    }
    if (!in01(p->alpha))
        return bad_key(b, F, PARO_K_METRIC, "metric \"alpha\" must be in [0, 1]");
    if (!(p->score_recall > 0.0 && p->score_recall <= 1.0))
        return bad_key(b, F, PARO_K_METRIC, "metric \"score_recall\" must be in (0, 1]");
    if (p->target_mode != PARO_TARGET_DENSITY && p->target_mode != PARO_TARGET_THRESHOLD &&
        p->target_mode != PARO_TARGET_RECALL)
        return bad_key(b, F, PARO_K_TARGET,
                       "target \"mode\" must be \"density\", \"threshold\" or \"recall\"");
    if (!(p->target_value >= 0.0) || !isfinite(p->target_value))
        return bad_key(b, F, PARO_K_TARGET, "target \"value\" must be a finite number >= 0");
    if (p->target_mode != PARO_TARGET_THRESHOLD && !in01(p->target_value))
        return bad_key(b, F, PARO_K_TARGET, "target \"value\" of a %s target must be in [0, 1]",
                       paro_target_name(p->target_mode));
    if (p->keep_text != 0 && p->keep_text != 1)
        return bad_key(b, F, PARO_K_TARGET, "target \"keep_text\" must be 0 or 1");
    if (p->keep_last != 0 && p->keep_last != 1)
        return bad_key(b, F, PARO_K_TARGET, "target \"keep_last\" must be 0 or 1");
    if (p->n_buckets < 1)
        return bad_key(b, F, PARO_K_BUCKETS, "buckets \"count\" must be >= 1");
    if (p->n_buckets > PARO_PLAN_MAX_BUCKETS)
        return bad_key(b, PARO_ERR_LIMIT, PARO_K_BUCKETS,
                       "%u buckets exceed the limit of %u", p->n_buckets,
                       PARO_PLAN_MAX_BUCKETS);
    if (!in01(p->dense_until))
        return bad_key(b, F, PARO_K_BUCKETS, "buckets \"dense_until\" must be in [0, 1]");
    if (p->n_samples && !p->samples)
        return bad_key(b, F, PARO_K_SAMPLES, "samples are missing");
    for (size_t i = 0; i < p->n_samples; i++) {
        const paro_plan_sample *s = &p->samples[i];
        if (i > 0 && s->index <= p->samples[i - 1].index)
            return bad_key(b, F, PARO_K_SAMPLES,
                           "sample indices must be strictly increasing (%u after %u)",
                           s->index, p->samples[i - 1].index);
        if (s->prompt > PARO_PLAN_MAX_INT || s->prompt < -PARO_PLAN_MAX_INT)
            return bad_key(b, F, PARO_K_SAMPLES, "sample %u: prompt is beyond +-2^53",
                           s->index);
        if (!isfinite(s->timestep))
            return bad_key(b, F, PARO_K_SAMPLES, "sample %u: timestep is not finite",
                           s->index);
        if (s->step < -1 || s->step > PARO_PLAN_MAX_INT)
            return bad_key(b, F, PARO_K_SAMPLES, "sample %u: step must be in [0, 2^53] or -1",
                           s->index);
        if (s->bucket >= p->n_buckets)
            return bad_key(b, F, PARO_K_SAMPLES, "sample %u: bucket %u is not below %u",
                           s->index, s->bucket, p->n_buckets);
    }
    if (p->seed > (uint64_t)PARO_PLAN_MAX_INT)
        return bad_key(b, F, PARO_K_SEED, "\"seed\" must be at most 2^53");
    if (!p->layer_crc32)
        return bad_key(b, F, PARO_K_INPUTS, "layer crc32s are missing");
    return 0;
}

static int bad_elem(paro_plan_bad *b, uint32_t section, uint32_t slot, uint64_t elem)
{
    b->code = PARO_ERR_FORMAT;
    b->key = -1;
    b->section = section;
    b->slot = slot;
    b->elem = elem;
    return 1;
}

int paro_plan_check_data(const paro_plan *p, paro_plan_bad *b)
{
    const uint32_t L = p->n_layers, H = p->heads, O = p->n_orders, B = p->n_buckets;
    for (uint32_t l = 0; l < L; l++)
        for (uint32_t h = 0; h < H; h++) {
            size_t i = paro_plan_head_index(p, l, h);
            if (p->head_order[i] >= O) {
                snprintf(b->msg, sizeof b->msg,
                         "layer %u head %u has order index %u, but there are %u orders",
                         p->layers[l], h, p->head_order[i], O);
                return bad_elem(b, PARO_SEC_HEAD_ORDER, 0, i);
            }
            for (uint32_t o = 0; o < O; o++)
                for (uint32_t k = 0; k < PARO_N_SCORES; k++) {
                    const double *sc = paro_plan_scores_at(p, l, h, o);
                    if (!isfinite(sc[k])) {
                        snprintf(b->msg, sizeof b->msg,
                                 "layer %u head %u order %s: %s score is not finite",
                                 p->layers[l], h, p->orders[o].name,
                                 k == 0 ? "sparse" : k == 1 ? "quant" : "combined");
                        return bad_elem(b, PARO_SEC_SCORES, 0,
                                        (uint64_t)(sc + k - p->scores));
                    }
                }
        }
    for (int which = 0; which < 2; which++) {
        const double *a = which ? p->recall : p->density;
        for (uint32_t l = 0; l < L; l++)
            for (uint32_t bk = 0; bk < B; bk++)
                for (uint32_t h = 0; h < H; h++) {
                    size_t i = paro_plan_bucket_index(p, l, bk, h);
                    if (!in01(a[i])) {
                        snprintf(b->msg, sizeof b->msg,
                                 "%s of layer %u bucket %u head %u is %.17g, outside [0, 1]",
                                 which ? "recall" : "density", p->layers[l], bk, h, a[i]);
                        return bad_elem(b, which ? PARO_SEC_RECALL : PARO_SEC_DENSITY, 0, i);
                    }
                }
    }
    uint64_t bits = (uint64_t)B * H * p->nq * p->nk; /* checked by paro_plan_sizes_of */
    size_t bytes = paro_plan_mask_bytes(p);
    if (bits % 8)
        for (uint32_t l = 0; l < L; l++) {
            uint8_t pad = (uint8_t)(0xffu << (bits % 8));
            if (p->masks[l][bytes - 1] & pad) {
                snprintf(b->msg, sizeof b->msg,
                         "mask of layer %u has padding bits set in its last byte (raw byte %zu)",
                         p->layers[l], bytes - 1);
                return bad_elem(b, PARO_SEC_MASKS, l, bytes - 1);
            }
        }
    if (p->with_tile_mass) {
        /* the largest tile of a head is level 255 by definition, unless the
         * head had no mass at all */
        const size_t tiles = (size_t)p->nq * p->nk;
        for (uint32_t l = 0; l < L; l++)
            for (uint32_t bk = 0; bk < B; bk++)
                for (uint32_t h = 0; h < H; h++) {
                    size_t at = ((size_t)bk * H + h) * tiles;
                    const uint8_t *lv = p->tile_mass[l] + at;
                    uint8_t top = 0;
                    size_t top_at = 0;
                    for (size_t i = 0; i < tiles; i++)
                        if (lv[i] > top) {
                            top = lv[i];
                            top_at = i;
                        }
                    if (top != 0 && top != 255) {
                        snprintf(b->msg, sizeof b->msg,
                                 "tile masses of layer %u bucket %u head %u peak at level %u, "
                                 "but the largest tile of a head is level 255",
                                 p->layers[l], bk, h, top);
                        return bad_elem(b, PARO_SEC_TILEMASS, l, at + top_at);
                    }
                }
    }
    return 0;
}
