/* paro — the plan's JSON: the META object (shared by the writer and the dump)
 * and the `paro dump --json` document (schema paro-plan/v1).
 *
 * Numbers are cJSON raw items formatted here rather than by cJSON: cJSON
 * prints doubles with %1.15g and accepts the result when it is within an
 * epsilon of the value, which loses the last bit, and prints integers beyond
 * 2^31 in floating form.  Doubles here always read back exactly (strtod,
 * Python's float()) and always carry a '.' or an exponent; integers never do.
 */
#include "plan.h" /* the API implemented here */
#include "json_util.h"     /* paro_json_print_line */
#include "plan_internal.h" /* paro_plan_meta_add, paro_plan_fmt_double, meta keys */

#include <cjson/cJSON.h> /* cJSON_Create*, cJSON_AddItemTo*, cJSON_Print */
#include <math.h>        /* isfinite */
#include <stdio.h>       /* snprintf */
#include <stdlib.h>      /* strtod, malloc, free */
#include <string.h>      /* strpbrk, strlen, memcpy */

void paro_plan_fmt_double(double v, char *buf)
{
    if (!isfinite(v)) {
        memcpy(buf, "null", 5);
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, 32, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    if (!strpbrk(buf, ".eE"))
        memcpy(buf + strlen(buf), ".0", 3);
}

cJSON *paro_plan_json_double(double v)
{
    char buf[32];
    paro_plan_fmt_double(v, buf);
    return cJSON_CreateRaw(buf);
}

static cJSON *json_uint(uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
    return cJSON_CreateRaw(buf);
}

static cJSON *json_int(int64_t v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    return cJSON_CreateRaw(buf);
}

/* Adds item under key (to an object) or at the end (key NULL, to an array);
 * deletes it on failure.  Returns 0, or -1 when out of memory. */
static int put(cJSON *to, const char *key, cJSON *item)
{
    if (!item)
        return -1;
    cJSON_bool ok = key ? cJSON_AddItemToObject(to, key, item) : cJSON_AddItemToArray(to, item);
    if (!ok) {
        cJSON_Delete(item);
        return -1;
    }
    return 0;
}

static cJSON *uint_array(const uint32_t *v, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++)
        if (put(a, NULL, json_uint(v[i])) < 0) {
            cJSON_Delete(a);
            return NULL;
        }
    return a;
}

static cJSON *meta_orders(const paro_plan *p)
{
    cJSON *a = cJSON_CreateArray();
    for (uint32_t o = 0; a && o < p->n_orders; o++) {
        cJSON *e = cJSON_CreateObject();
        if (put(a, NULL, e) < 0 || put(e, "kind", cJSON_CreateString(p->orders[o].kind)) < 0 ||
            put(e, "name", cJSON_CreateString(p->orders[o].name)) < 0) {
            cJSON_Delete(a);
            return NULL;
        }
    }
    return a;
}

static cJSON *meta_buckets(const paro_plan *p)
{
    cJSON *o = cJSON_CreateObject(), *edges = NULL;
    if (!o || put(o, "count", json_uint(p->n_buckets)) < 0 ||
        put(o, "edges", edges = cJSON_CreateArray()) < 0) {
        cJSON_Delete(o);
        return NULL;
    }
    for (uint32_t i = 0; i <= p->n_buckets; i++)
        if (put(edges, NULL, paro_plan_json_double((double)i / p->n_buckets)) < 0) {
            cJSON_Delete(o);
            return NULL;
        }
    if (put(o, "dense_until", paro_plan_json_double(p->dense_until)) < 0) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static cJSON *meta_samples(const paro_plan *p)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < p->n_samples; i++) {
        const paro_plan_sample *s = &p->samples[i];
        cJSON *e = cJSON_CreateObject();
        if (put(a, NULL, e) < 0 || put(e, "index", json_uint(s->index)) < 0 ||
            put(e, "prompt", json_int(s->prompt)) < 0 ||
            put(e, "timestep", paro_plan_json_double(s->timestep)) < 0 ||
            (s->step >= 0 && put(e, "step", json_int(s->step)) < 0) ||
            put(e, "bucket", json_uint(s->bucket)) < 0) {
            cJSON_Delete(a);
            return NULL;
        }
    }
    return a;
}

static cJSON *meta_inputs(const paro_plan *p)
{
    cJSON *o = cJSON_CreateObject(), *a = NULL;
    if (!o || put(o, "layer_crc32", a = cJSON_CreateArray()) < 0) {
        cJSON_Delete(o);
        return NULL;
    }
    for (uint32_t l = 0; l < p->n_layers; l++) {
        char hex[9];
        snprintf(hex, sizeof hex, "%08x", (unsigned)p->layer_crc32[l]);
        if (put(a, NULL, cJSON_CreateString(hex)) < 0) {
            cJSON_Delete(o);
            return NULL;
        }
    }
    return o;
}

int paro_plan_meta_add(cJSON *obj, const paro_plan *p)
{
    for (int k = 0; k < PARO_K_COUNT; k++) {
        cJSON *v = NULL;
        switch ((enum paro_meta_key)k) {
        case PARO_K_TOOL: v = cJSON_CreateString(p->tool ? p->tool : ""); break;
        case PARO_K_MODEL: v = cJSON_CreateString(p->model ? p->model : ""); break;
        case PARO_K_BACKEND: v = cJSON_CreateString(p->backend ? p->backend : ""); break;
        case PARO_K_GRID: v = uint_array(p->grid, 3); break;
        case PARO_K_TEXT_TOKENS: v = json_uint(p->text_tokens); break;
        case PARO_K_TEXT_POSITION: v = cJSON_CreateString(p->text_last ? "last" : "first"); break;
        case PARO_K_TOKENS: v = json_uint(p->n_tokens); break;
        case PARO_K_HEADS: v = json_uint(p->heads); break;
        case PARO_K_HEAD_DIM: v = json_uint(p->head_dim); break;
        case PARO_K_SCALE: v = paro_plan_json_double(p->scale); break;
        case PARO_K_MODEL_LAYERS: v = json_uint(p->model_layers); break;
        case PARO_K_LAYERS: v = uint_array(p->layers, p->n_layers); break;
        case PARO_K_BLOCK: {
            const uint32_t bl[2] = {p->block_q, p->block_k};
            v = uint_array(bl, 2);
            break;
        }
        case PARO_K_BLOCKS: {
            const uint32_t bl[2] = {p->nq, p->nk};
            v = uint_array(bl, 2);
            break;
        }
        case PARO_K_ORDERS: v = meta_orders(p); break;
        case PARO_K_METRIC:
            v = cJSON_CreateObject();
            if (v && (put(v, "alpha", paro_plan_json_double(p->alpha)) < 0 ||
                      put(v, "score_recall", paro_plan_json_double(p->score_recall)) < 0)) {
                cJSON_Delete(v);
                v = NULL;
            }
            break;
        case PARO_K_TARGET:
            v = cJSON_CreateObject();
            if (v && (put(v, "mode", cJSON_CreateString(paro_target_name(p->target_mode))) < 0 ||
                      put(v, "value", paro_plan_json_double(p->target_value)) < 0 ||
                      put(v, "keep_text", cJSON_CreateBool(p->keep_text != 0)) < 0 ||
                      /* written only when set, so that other plans stay 1.1 files */
                      (p->keep_last && put(v, "keep_last", cJSON_CreateBool(1)) < 0))) {
                cJSON_Delete(v);
                v = NULL;
            }
            break;
        case PARO_K_BUCKETS: v = meta_buckets(p); break;
        case PARO_K_SAMPLES: v = meta_samples(p); break;
        case PARO_K_SEED: v = json_uint(p->seed); break;
        case PARO_K_INPUTS: v = meta_inputs(p); break;
        case PARO_K_COUNT: break;
        }
        if (put(obj, paro_plan_meta_keys[k], v) < 0)
            return -1;
    }
    return 0;
}

/* The "masks" of --json-full for layer slot l, head h: per bucket, nq rows
 * of nk 0/1 integers, as one raw item laid out the way cJSON prints nested
 * arrays ("[[[1, 0], [0, 1]]]"): one node per head instead of one per tile. */
static cJSON *head_masks(const paro_plan *p, uint32_t l, uint32_t h)
{
    /* at most 4 characters per tile ("1, "), per row and per bucket ("[], "),
     * plus "[]" and the NUL; the plan's limits keep the sum far from 2^64 */
    uint64_t rows = (uint64_t)p->n_buckets * p->nq, tiles, chars;
    if (!paro_mul_ok(rows, p->nk, &tiles) ||
        !paro_mul_ok(tiles + rows + p->n_buckets + 1, 4, &chars) || chars > SIZE_MAX)
        return NULL;
    char *buf = malloc((size_t)chars), *w = buf;
    if (!buf)
        return NULL;
    *w++ = '[';
    for (uint32_t b = 0; b < p->n_buckets; b++) {
        if (b) {
            *w++ = ',';
            *w++ = ' ';
        }
        *w++ = '[';
        for (uint32_t q = 0; q < p->nq; q++) {
            if (q) {
                *w++ = ',';
                *w++ = ' ';
            }
            *w++ = '[';
            for (uint32_t k = 0; k < p->nk; k++) {
                if (k) {
                    *w++ = ',';
                    *w++ = ' ';
                }
                *w++ = paro_plan_mask_get(p, l, b, h, q, k) ? '1' : '0';
            }
            *w++ = ']';
        }
        *w++ = ']';
    }
    *w++ = ']';
    *w = 0;
    cJSON *raw = cJSON_CreateRaw(buf);
    free(buf);
    return raw;
}

/* One entry of the "heads" array: layer slot l, head h. */
static cJSON *head_entry(const paro_plan *p, uint32_t l, uint32_t h, int with_masks)
{
    cJSON *e = cJSON_CreateObject(), *dens = NULL, *rec = NULL, *sc = NULL;
    uint8_t oi = p->head_order[paro_plan_head_index(p, l, h)];
    if (!e || put(e, "layer", json_uint(p->layers[l])) < 0 || put(e, "head", json_uint(h)) < 0 ||
        put(e, "order", cJSON_CreateString(oi < p->n_orders ? p->orders[oi].name : "?")) < 0 ||
        put(e, "density", dens = cJSON_CreateArray()) < 0 ||
        put(e, "recall", rec = cJSON_CreateArray()) < 0 ||
        put(e, "scores", sc = cJSON_CreateObject()) < 0) {
        cJSON_Delete(e);
        return NULL;
    }
    for (uint32_t b = 0; b < p->n_buckets; b++) {
        size_t i = paro_plan_bucket_index(p, l, b, h);
        if (put(dens, NULL, paro_plan_json_double(p->density[i])) < 0 ||
            put(rec, NULL, paro_plan_json_double(p->recall[i])) < 0) {
            cJSON_Delete(e);
            return NULL;
        }
    }
    for (uint32_t o = 0; o < p->n_orders; o++) {
        const double *s = paro_plan_scores_at(p, l, h, o);
        cJSON *so = NULL;
        if (put(sc, p->orders[o].name, so = cJSON_CreateObject()) < 0 ||
            put(so, "sparse", paro_plan_json_double(s[PARO_SCORE_SPARSE])) < 0 ||
            put(so, "quant", paro_plan_json_double(s[PARO_SCORE_QUANT])) < 0 ||
            put(so, "combined", paro_plan_json_double(s[PARO_SCORE_COMBINED])) < 0) {
            cJSON_Delete(e);
            return NULL;
        }
    }
    if (with_masks && put(e, "masks", head_masks(p, l, h)) < 0) {
        cJSON_Delete(e);
        return NULL;
    }
    return e;
}

static char *to_json(const paro_plan *p, int with_masks)
{
    cJSON *root = cJSON_CreateObject(), *heads = NULL;
    int bad = !root || put(root, "schema", cJSON_CreateString(PARO_PLAN_SCHEMA)) < 0 ||
              paro_plan_meta_add(root, p) < 0 ||
              put(root, "heads", heads = cJSON_CreateArray()) < 0;
    for (uint32_t l = 0; !bad && l < p->n_layers; l++)
        for (uint32_t h = 0; !bad && h < p->heads; h++)
            bad = put(heads, NULL, head_entry(p, l, h, with_masks)) < 0;
    char *out = bad ? NULL : paro_json_print_line(root);
    cJSON_Delete(root);
    return out;
}

char *paro_plan_to_json(const paro_plan *p)
{
    return to_json(p, 0);
}

char *paro_plan_to_json_full(const paro_plan *p)
{
    return to_json(p, 1);
}
