/* paro — the plan's JSON: the META object (shared by the writer and the dump)
 * and the `paro dump --json` document (schema paro-plan/v1).
 *
 * Numbers are raw items from json_util.h's writers (paro_json_double,
 * paro_json_uint), not cJSON's: they read back exactly.
 */
#include "plan.h" /* the API implemented here */
#include "json_util.h"     /* paro_json_print_line, paro_json_put, paro_json_double, … */
#include "plan_internal.h" /* paro_plan_meta_add, meta keys */

#include <cjson/cJSON.h> /* cJSON_Create*, cJSON_AddItemTo*, cJSON_Print */
#include <stdio.h>       /* snprintf */
#include <stdlib.h>      /* malloc, free */

static cJSON *uint_array(const uint32_t *v, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++)
        if (paro_json_put(a, NULL, paro_json_uint(v[i])) < 0) {
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
        if (paro_json_put(a, NULL, e) < 0 || paro_json_put(e, "kind", cJSON_CreateString(p->orders[o].kind)) < 0 ||
            paro_json_put(e, "name", cJSON_CreateString(p->orders[o].name)) < 0) {
            cJSON_Delete(a);
            return NULL;
        }
    }
    return a;
}

static cJSON *meta_buckets(const paro_plan *p)
{
    cJSON *o = cJSON_CreateObject(), *edges = NULL;
    if (!o || paro_json_put(o, "count", paro_json_uint(p->n_buckets)) < 0 ||
        paro_json_put(o, "edges", edges = cJSON_CreateArray()) < 0) {
        cJSON_Delete(o);
        return NULL;
    }
    for (uint32_t i = 0; i <= p->n_buckets; i++)
        if (paro_json_put(edges, NULL, paro_json_double((double)i / p->n_buckets)) < 0) {
            cJSON_Delete(o);
            return NULL;
        }
    if (paro_json_put(o, "dense_until", paro_json_double(p->dense_until)) < 0) {
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
        if (paro_json_put(a, NULL, e) < 0 || paro_json_put(e, "index", paro_json_uint(s->index)) < 0 ||
            paro_json_put(e, "prompt", paro_json_int(s->prompt)) < 0 ||
            paro_json_put(e, "timestep", paro_json_double(s->timestep)) < 0 ||
            (s->step >= 0 && paro_json_put(e, "step", paro_json_int(s->step)) < 0) ||
            paro_json_put(e, "bucket", paro_json_uint(s->bucket)) < 0) {
            cJSON_Delete(a);
            return NULL;
        }
    }
    return a;
}

static cJSON *meta_inputs(const paro_plan *p)
{
    cJSON *o = cJSON_CreateObject(), *a = NULL;
    if (!o || paro_json_put(o, "layer_crc32", a = cJSON_CreateArray()) < 0) {
        cJSON_Delete(o);
        return NULL;
    }
    for (uint32_t l = 0; l < p->n_layers; l++) {
        char hex[9];
        snprintf(hex, sizeof hex, "%08x", (unsigned)p->layer_crc32[l]);
        if (paro_json_put(a, NULL, cJSON_CreateString(hex)) < 0) {
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
        case PARO_K_TEXT_TOKENS: v = paro_json_uint(p->text_tokens); break;
        case PARO_K_TEXT_POSITION: v = cJSON_CreateString(p->text_last ? "last" : "first"); break;
        case PARO_K_TOKENS: v = paro_json_uint(p->n_tokens); break;
        case PARO_K_HEADS: v = paro_json_uint(p->heads); break;
        case PARO_K_HEAD_DIM: v = paro_json_uint(p->head_dim); break;
        case PARO_K_SCALE: v = paro_json_double(p->scale); break;
        case PARO_K_MODEL_LAYERS: v = paro_json_uint(p->model_layers); break;
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
            if (v && (paro_json_put(v, "alpha", paro_json_double(p->alpha)) < 0 ||
                      paro_json_put(v, "score_recall", paro_json_double(p->score_recall)) < 0)) {
                cJSON_Delete(v);
                v = NULL;
            }
            break;
        case PARO_K_TARGET:
            v = cJSON_CreateObject();
            if (v && (paro_json_put(v, "mode", cJSON_CreateString(paro_target_name(p->target_mode))) < 0 ||
                      paro_json_put(v, "value", paro_json_double(p->target_value)) < 0 ||
                      paro_json_put(v, "keep_text", cJSON_CreateBool(p->keep_text != 0)) < 0 ||
                      /* written only when set, so that other plans stay 1.1 files */
                      (p->keep_last && paro_json_put(v, "keep_last", cJSON_CreateBool(1)) < 0))) {
                cJSON_Delete(v);
                v = NULL;
            }
            break;
        case PARO_K_BUCKETS: v = meta_buckets(p); break;
        case PARO_K_SAMPLES: v = meta_samples(p); break;
        case PARO_K_SEED: v = paro_json_uint(p->seed); break;
        case PARO_K_INPUTS: v = meta_inputs(p); break;
        case PARO_K_COUNT: break;
        }
        if (paro_json_put(obj, paro_plan_meta_keys[k], v) < 0)
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
    if (!e || paro_json_put(e, "layer", paro_json_uint(p->layers[l])) < 0 || paro_json_put(e, "head", paro_json_uint(h)) < 0 ||
        paro_json_put(e, "order", cJSON_CreateString(oi < p->n_orders ? p->orders[oi].name : "?")) < 0 ||
        paro_json_put(e, "density", dens = cJSON_CreateArray()) < 0 ||
        paro_json_put(e, "recall", rec = cJSON_CreateArray()) < 0 ||
        paro_json_put(e, "scores", sc = cJSON_CreateObject()) < 0) {
        cJSON_Delete(e);
        return NULL;
    }
    for (uint32_t b = 0; b < p->n_buckets; b++) {
        size_t i = paro_plan_bucket_index(p, l, b, h);
        if (paro_json_put(dens, NULL, paro_json_double(p->density[i])) < 0 ||
            paro_json_put(rec, NULL, paro_json_double(p->recall[i])) < 0) {
            cJSON_Delete(e);
            return NULL;
        }
    }
    for (uint32_t o = 0; o < p->n_orders; o++) {
        const double *s = paro_plan_scores_at(p, l, h, o);
        cJSON *so = NULL;
        if (paro_json_put(sc, p->orders[o].name, so = cJSON_CreateObject()) < 0 ||
            paro_json_put(so, "sparse", paro_json_double(s[PARO_SCORE_SPARSE])) < 0 ||
            paro_json_put(so, "quant", paro_json_double(s[PARO_SCORE_QUANT])) < 0 ||
            paro_json_put(so, "combined", paro_json_double(s[PARO_SCORE_COMBINED])) < 0) {
            cJSON_Delete(e);
            return NULL;
        }
    }
    if (with_masks && paro_json_put(e, "masks", head_masks(p, l, h)) < 0) {
        cJSON_Delete(e);
        return NULL;
    }
    return e;
}

static char *to_json(const paro_plan *p, int with_masks)
{
    cJSON *root = cJSON_CreateObject(), *heads = NULL;
    int bad = !root || paro_json_put(root, "schema", cJSON_CreateString(PARO_PLAN_SCHEMA)) < 0 ||
              paro_plan_meta_add(root, p) < 0 ||
              paro_json_put(root, "heads", heads = cJSON_CreateArray()) < 0;
    for (uint32_t l = 0; !bad && l < p->n_layers; l++)
        for (uint32_t h = 0; !bad && h < p->heads; h++)
            bad = paro_json_put(heads, NULL, head_entry(p, l, h, with_masks)) < 0;
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
