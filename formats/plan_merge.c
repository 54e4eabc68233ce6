/* paro — merging plans calibrated on disjoint layer sets (shards from several
 * GPUs or machines) into the plan one run over all their layers writes.
 *
 * Two plans can be merged when everything but their layers agrees: the
 * comparison is made on the META JSON each would write (PLAN.md §7), key by
 * key in the fixed order, so "the same settings" means exactly what the file
 * says, and the first differing key is the one reported. */
#include "plan.h"          /* the API implemented here */
#include "plan_internal.h" /* paro_plan_meta_add, paro_plan_meta_keys */

#include <cjson/cJSON.h> /* cJSON_CreateObject, cJSON_PrintUnformatted, cJSON_Delete */
#include <stdio.h>       /* snprintf */
#include <stdlib.h>      /* calloc, malloc, free, qsort */
#include <string.h>      /* strcmp, strlen, memcpy */

/* Keys that differ between shards by design: their layers and the digests of
 * those layers' inputs. */
static int per_layer_key(int k)
{
    return k == PARO_K_LAYERS || k == PARO_K_INPUTS;
}

/* The META of p as compact JSON text per key, [PARO_K_COUNT] malloc'ed
 * strings; NULL when out of memory. */
static char **meta_texts(const paro_plan *p)
{
    char **text = calloc(PARO_K_COUNT, sizeof *text);
    cJSON *obj = cJSON_CreateObject();
    int ok = text && obj && paro_plan_meta_add(obj, p) == 0;
    int k = 0;
    for (const cJSON *c = ok ? obj->child : NULL; c && ok && k < PARO_K_COUNT; c = c->next, k++)
        ok = (text[k] = cJSON_PrintUnformatted(c)) != NULL;
    cJSON_Delete(obj);
    if (!ok || k != PARO_K_COUNT) {
        for (int i = 0; text && i < PARO_K_COUNT; i++)
            free(text[i]);
        free(text);
        return NULL;
    }
    return text;
}

static void free_texts(char **text)
{
    for (int i = 0; text && i < PARO_K_COUNT; i++)
        free(text[i]);
    free(text);
}

/* At most 60 characters of s around position at, with "..." where cut, so
 * that a long value (the samples list) shows where it differs. */
static void excerpt(const char *s, size_t at, char *out, size_t size)
{
    const size_t width = 60, before = 20;
    size_t n = strlen(s);
    size_t from = at > before ? at - before : 0;
    if (n <= width)
        from = 0;
    else if (from + width > n)
        from = n - width;
    size_t len = n - from < width ? n - from : width;
    snprintf(out, size, "%s%.*s%s", from ? "..." : "", (int)len, s + from,
             from + len < n ? "..." : "");
}

/* names[i], or "plan i+1" in buf (32 bytes) when there are no names. */
static const char *part_name(const char *const *names, size_t i, char *buf)
{
    if (names && names[i])
        return names[i];
    snprintf(buf, 32, "plan %zu", i + 1);
    return buf;
}

typedef struct layer_ref {
    uint32_t layer; /* model layer id */
    uint32_t part, slot;
} layer_ref;

static int cmp_layer_ref(const void *a, const void *b)
{
    const layer_ref *x = a, *y = b;
    if (x->layer != y->layer)
        return x->layer < y->layer ? -1 : 1;
    return x->part < y->part ? -1 : x->part > y->part;
}

paro_err paro_plan_merge_named(const paro_plan *const *parts, const char *const *names,
                               size_t n, paro_plan **out, paro_errinfo *ei)
{
    *out = NULL;
    if (!parts || n == 0)
        return paro_error(ei, PARO_ERR_USAGE, NULL, PARO_NO_OFFSET, "no plans to merge");
    char name_a[32], name_b[32];

    /* the same settings: compare each key of the META every plan would write */
    char **first = meta_texts(parts[0]);
    if (!first)
        return paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory");
    paro_err err = PARO_OK;
    for (size_t i = 1; i < n && !err; i++) {
        char **other = meta_texts(parts[i]);
        if (!other) {
            err = paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory");
            break;
        }
        for (int k = 0; k < PARO_K_COUNT && !err; k++) {
            if (per_layer_key(k) || strcmp(first[k], other[k]) == 0)
                continue;
            size_t at = 0;
            while (first[k][at] && first[k][at] == other[k][at])
                at++;
            char a[80], b[80];
            excerpt(first[k], at, a, sizeof a);
            excerpt(other[k], at, b, sizeof b);
            err = paro_error(ei, PARO_ERR_USAGE, NULL, PARO_NO_OFFSET,
                             "cannot merge: \"%s\" differs: %s in %s, %s in %s",
                             paro_plan_meta_keys[k], a, part_name(names, 0, name_a), b,
                             part_name(names, i, name_b));
        }
        free_texts(other);
        if (!err && (parts[i]->with_tile_mass != 0) != (parts[0]->with_tile_mass != 0)) {
            size_t with = parts[0]->with_tile_mass ? 0 : i, without = with ? 0 : i;
            err = paro_error(ei, PARO_ERR_USAGE, NULL, PARO_NO_OFFSET,
                             "cannot merge: %s has tile masses (TILEMASS sections), %s has none",
                             part_name(names, with, name_a), part_name(names, without, name_b));
        }
    }
    free_texts(first);
    if (err)
        return err;

    /* the layers: all of them, sorted, none twice */
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        if (!paro_add_ok(total, parts[i]->n_layers, &total) || total > UINT32_MAX)
            return paro_error(ei, PARO_ERR_LIMIT, NULL, PARO_NO_OFFSET,
                              "cannot merge: more than 2^32-1 layers in all");
    layer_ref *refs = malloc((size_t)total * sizeof *refs);
    uint32_t *layers = malloc((size_t)total * sizeof *layers);
    uint32_t *crc = malloc((size_t)total * sizeof *crc);
    if (!refs || !layers || !crc) {
        free(refs);
        free(layers);
        free(crc);
        return paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory");
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        for (uint32_t l = 0; l < parts[i]->n_layers; l++)
            refs[m++] = (layer_ref){parts[i]->layers[l], (uint32_t)i, l};
    qsort(refs, m, sizeof *refs, cmp_layer_ref);
    for (size_t j = 1; j < m && !err; j++)
        if (refs[j].layer == refs[j - 1].layer)
            err = paro_error(ei, PARO_ERR_USAGE, NULL, PARO_NO_OFFSET,
                             "cannot merge: layer %u is in both %s and %s", refs[j].layer,
                             part_name(names, refs[j - 1].part, name_a),
                             part_name(names, refs[j].part, name_b));
    for (size_t j = 0; j < m; j++) {
        layers[j] = refs[j].layer;
        crc[j] = parts[refs[j].part]->layer_crc32[refs[j].slot];
    }

    paro_plan *p = NULL;
    if (!err) {
        paro_plan shape = *parts[0];
        shape.n_layers = (uint32_t)m;
        shape.layers = layers;
        shape.layer_crc32 = crc;
        err = paro_plan_alloc(&p, &shape, ei);
    }
    /* every per-layer array is indexed by layer slot first */
    const size_t heads = p ? p->heads : 0;
    const size_t scores = heads * (p ? p->n_orders : 0) * PARO_N_SCORES;
    const size_t bucketed = heads * (p ? p->n_buckets : 0);
    const size_t mask_bytes = p ? paro_plan_mask_bytes(p) : 0;
    const size_t tm_bytes = p && p->with_tile_mass ? paro_plan_tile_mass_bytes(p) : 0;
    for (size_t j = 0; !err && j < m; j++) {
        const paro_plan *src = parts[refs[j].part];
        const size_t s = refs[j].slot;
        memcpy(p->head_order + j * heads, src->head_order + s * heads, heads);
        memcpy(p->scores + j * scores, src->scores + s * scores, scores * sizeof *p->scores);
        memcpy(p->density + j * bucketed, src->density + s * bucketed,
               bucketed * sizeof *p->density);
        memcpy(p->recall + j * bucketed, src->recall + s * bucketed,
               bucketed * sizeof *p->recall);
        memcpy(p->masks[j], src->masks[s], mask_bytes);
        if (tm_bytes)
            memcpy(p->tile_mass[j], src->tile_mass[s], tm_bytes);
    }
    free(refs);
    free(layers);
    free(crc);
    if (err) {
        paro_plan_free(p);
        return err;
    }
    *out = p;
    return PARO_OK;
}

paro_err paro_plan_merge(const paro_plan *const *parts, size_t n, paro_plan **out,
                         paro_errinfo *ei)
{
    return paro_plan_merge_named(parts, NULL, n, out, ei);
}
