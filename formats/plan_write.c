/* paro — the plan writer: serialises a plan into the bytes PLAN.md defines.
 * The same plan gives the same bytes (fixed section order, fixed JSON key
 * order and number formatting, zlib level 9, zero padding). */
#include "plan.h" /* the API implemented here */
#include "plan_internal.h" /* layout constants, paro_wr*, paro_plan_meta_add, checks */

#include <cjson/cJSON.h> /* cJSON_CreateObject, cJSON_PrintUnformatted */
#include <stdlib.h>      /* calloc, malloc, free */
#include <string.h>      /* memcpy, strlen */
#include <zlib.h>        /* compress2, compressBound, crc32_z */

#include "atomic_file.h" /* paro_atomic_write_file */
#include "parallel.h"    /* paro_parallel_for */

typedef struct out_section {
    uint32_t type, flags, codec, index;
    const uint8_t *data; /* stored bytes */
    uint64_t stored, raw;
    void *owned; /* freed at the end (may be data) */
    /* a section to deflate: its raw bytes, and whether that failed */
    const uint8_t *raw_data;
    void *raw_owned; /* freed at the end (may be raw_data) */
    int failed;
} out_section;

static uint64_t align64(uint64_t x)
{
    return (x + (PARO_PLAN_ALIGN - 1)) & ~(uint64_t)(PARO_PLAN_ALIGN - 1);
}

/* Little-endian f64 copy of n doubles. */
static uint8_t *encode_f64(const double *v, uint64_t n)
{
    uint8_t *b = malloc(n ? (size_t)n * 8 : 1);
    if (!b)
        return NULL;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t u;
        memcpy(&u, &v[i], 8);
        paro_wr64(b + 8 * i, u);
    }
    return b;
}

/* Marks s to be stored as a zlib stream (level 9) of raw[0..n). */
static void to_deflate(out_section *s, const uint8_t *raw, uint64_t n, void *owned)
{
    s->codec = PARO_CODEC_ZLIB;
    s->raw_data = raw;
    s->raw_owned = owned;
    s->raw = n;
}

/* Each section is its own zlib stream, so they are deflated on any number of
 * threads and the bytes are the same (level 9 is what takes a plan's time:
 * masks of a large model are megabytes of nearly random bits). */
static void deflate_section(void *ctx, uint32_t i, int worker)
{
    out_section *s = (out_section *)ctx + i;
    (void)worker;
    if (s->codec != PARO_CODEC_ZLIB)
        return;
    uLongf cap = compressBound((uLong)s->raw);
    uint8_t *z = malloc(cap);
    if (!z || compress2(z, &cap, s->raw_data, (uLong)s->raw, 9) != Z_OK) {
        free(z);
        s->failed = 1;
        return;
    }
    s->data = s->owned = z;
    s->stored = cap;
}

static void plain(out_section *s, const void *data, uint64_t n, void *owned)
{
    s->codec = PARO_CODEC_NONE;
    s->data = data;
    s->owned = owned;
    s->stored = s->raw = n;
}

static paro_err serialize(const paro_plan *p, const char *name, int threads, uint8_t **buf,
                          size_t *len, paro_errinfo *ei)
{
    *buf = NULL;
    *len = 0;
    paro_plan_bad bad;
    if (!p)
        return paro_error(ei, PARO_ERR_INTERNAL, name, PARO_NO_OFFSET, "no plan to write");
    if (paro_plan_check_meta(p, &bad))
        return paro_error(ei, bad.code == PARO_ERR_LIMIT ? PARO_ERR_LIMIT : PARO_ERR_INTERNAL,
                          name, PARO_NO_OFFSET, "cannot write plan: %s", bad.msg);
    paro_plan_sizes sz;
    if (!paro_plan_sizes_of(p, &sz) || sz.mask > SIZE_MAX || sz.scores > SIZE_MAX ||
        sz.perm > SIZE_MAX)
        return paro_error(ei, PARO_ERR_LIMIT, name, PARO_NO_OFFSET,
                          "cannot write plan: it is too large for this machine");
    if (!p->head_order || !p->scores || !p->density || !p->recall || !p->masks)
        return paro_error(ei, PARO_ERR_INTERNAL, name, PARO_NO_OFFSET,
                          "cannot write plan: its data arrays are not allocated");
    for (uint32_t l = 0; l < p->n_layers; l++)
        if (!p->masks[l] || (p->with_tile_mass && (!p->tile_mass || !p->tile_mass[l])))
            return paro_error(ei, PARO_ERR_INTERNAL, name, PARO_NO_OFFSET,
                              "cannot write plan: mask or tile masses of layer slot %u are not "
                              "allocated",
                              l);
    if (p->with_tile_mass && sz.tile_mass > SIZE_MAX)
        return paro_error(ei, PARO_ERR_LIMIT, name, PARO_NO_OFFSET,
                          "cannot write plan: it is too large for this machine");
    if (paro_plan_check_data(p, &bad))
        return paro_error(ei, PARO_ERR_INTERNAL, name, PARO_NO_OFFSET, "cannot write plan: %s",
                          bad.msg);

    const uint64_t sections =
        5 + (uint64_t)p->n_orders + (uint64_t)p->n_layers * (p->with_tile_mass ? 2u : 1u);
    if (sections > PARO_PLAN_MAX_SECTIONS)
        return paro_error(ei, PARO_ERR_LIMIT, name, PARO_NO_OFFSET,
                          "cannot write plan: %llu sections exceed the limit of %u",
                          (unsigned long long)sections, PARO_PLAN_MAX_SECTIONS);
    const uint32_t n_sec = (uint32_t)sections;
    out_section *sec = calloc(n_sec, sizeof *sec);
    uint32_t *perm = malloc(sz.perm ? (size_t)sz.perm : 1);
    paro_err err = PARO_OK;
    if (!sec || !perm) {
        err = paro_error(ei, PARO_ERR_NOMEM, name, PARO_NO_OFFSET, "out of memory");
        goto done;
    }

    /* META */
    cJSON *meta = cJSON_CreateObject();
    char *json = NULL;
    if (meta && paro_plan_meta_add(meta, p) == 0)
        json = cJSON_PrintUnformatted(meta);
    cJSON_Delete(meta);
    if (!json) {
        err = paro_error(ei, PARO_ERR_NOMEM, name, PARO_NO_OFFSET, "out of memory");
        goto done;
    }
    sec[0].type = PARO_SEC_META;
    plain(&sec[0], json, strlen(json), json);
    if (sec[0].stored > PARO_PLAN_MAX_JSON) {
        err = paro_error(ei, PARO_ERR_LIMIT, name, PARO_NO_OFFSET,
                         "cannot write plan: its metadata is %llu bytes, over the limit of %u",
                         (unsigned long long)sec[0].stored, PARO_PLAN_MAX_JSON);
        goto done;
    }

    /* HEAD_ORDER, SCORES, DENSITY, RECALL */
    sec[1].type = PARO_SEC_HEAD_ORDER;
    plain(&sec[1], p->head_order, sz.head_order, NULL);
    const double *arrays[3] = {p->scores, p->density, p->recall};
    const uint64_t counts[3] = {sz.scores / 8, sz.density / 8, sz.density / 8};
    for (int i = 0; i < 3; i++) {
        uint8_t *b = encode_f64(arrays[i], counts[i]);
        if (!b) {
            err = paro_error(ei, PARO_ERR_NOMEM, name, PARO_NO_OFFSET, "out of memory");
            goto done;
        }
        sec[2 + i].type = (uint32_t)(PARO_SEC_SCORES + i);
        plain(&sec[2 + i], b, counts[i] * 8, b);
    }

    /* PERM per order, MASKS per layer, TILEMASS per layer */
    uint32_t k = 5;
    for (uint32_t o = 0; o < p->n_orders; o++, k++) {
        uint8_t *perm_le = malloc(sz.perm ? (size_t)sz.perm : 1);
        if (!perm_le) {
            err = paro_error(ei, PARO_ERR_NOMEM, name, PARO_NO_OFFSET, "out of memory");
            goto done;
        }
        paro_plan_axes_perm(p, p->orders[o].name, perm);
        for (uint32_t i = 0; i < p->n_tokens; i++)
            paro_wr32(perm_le + 4 * (size_t)i, perm[i]);
        sec[k].type = PARO_SEC_PERM;
        sec[k].index = o;
        to_deflate(&sec[k], perm_le, sz.perm, perm_le);
    }
    for (uint32_t l = 0; l < p->n_layers; l++, k++) {
        sec[k].type = PARO_SEC_MASKS;
        sec[k].index = p->layers[l];
        to_deflate(&sec[k], p->masks[l], sz.mask, NULL);
    }
    for (uint32_t l = 0; p->with_tile_mass && l < p->n_layers; l++, k++) {
        sec[k].type = PARO_SEC_TILEMASS;
        sec[k].index = p->layers[l];
        to_deflate(&sec[k], p->tile_mass[l], sz.tile_mass, NULL);
    }
    paro_parallel_for(threads, n_sec, deflate_section, sec);
    for (uint32_t i = 0; i < n_sec; i++)
        if (sec[i].failed) {
            err = paro_error(ei, PARO_ERR_NOMEM, name, PARO_NO_OFFSET, "out of memory");
            goto done;
        }

    /* layout */
    const uint64_t table_off = PARO_PLAN_HEADER_SIZE;
    uint64_t pos = align64(table_off + (uint64_t)n_sec * PARO_PLAN_ENTRY_SIZE);
    uint64_t total = pos;
    for (uint32_t i = 0; i < n_sec; i++) {
        /* PERM and TILEMASS are optional: a reader may do without them */
        if (sec[i].type != PARO_SEC_PERM && sec[i].type != PARO_SEC_TILEMASS)
            sec[i].flags = PARO_SEC_FLAG_REQUIRED;
        if (i > 0)
            pos = align64(total);
        if (!paro_add_ok(pos, sec[i].stored, &total)) {
            err = paro_error(ei, PARO_ERR_LIMIT, name, PARO_NO_OFFSET, "plan is too large");
            goto done;
        }
    }
    if (total > SIZE_MAX) {
        err = paro_error(ei, PARO_ERR_LIMIT, name, PARO_NO_OFFSET, "plan is too large");
        goto done;
    }
    uint8_t *b = calloc((size_t)total, 1);
    if (!b) {
        err = paro_error(ei, PARO_ERR_NOMEM, name, PARO_NO_OFFSET, "out of memory");
        goto done;
    }
    memcpy(b, paro_plan_magic, 8);
    paro_wr16(b + PARO_H_MAJOR, PARO_PLAN_MAJOR);
    paro_wr16(b + PARO_H_MINOR, (uint16_t)paro_plan_minor_needed(p));
    paro_wr32(b + PARO_H_HEADER_SIZE, PARO_PLAN_HEADER_SIZE);
    paro_wr32(b + PARO_H_NSECTIONS, n_sec);
    paro_wr32(b + PARO_H_ENTRY_SIZE, PARO_PLAN_ENTRY_SIZE);
    paro_wr64(b + PARO_H_TABLE_OFFSET, table_off);
    paro_wr64(b + PARO_H_FILE_SIZE, total);
    pos = align64(table_off + (uint64_t)n_sec * PARO_PLAN_ENTRY_SIZE);
    for (uint32_t i = 0; i < n_sec; i++) {
        uint8_t *e = b + table_off + (size_t)i * PARO_PLAN_ENTRY_SIZE;
        paro_wr32(e + PARO_E_TYPE, sec[i].type);
        paro_wr32(e + PARO_E_FLAGS, sec[i].flags);
        paro_wr64(e + PARO_E_OFFSET, pos);
        paro_wr64(e + PARO_E_STORED, sec[i].stored);
        paro_wr64(e + PARO_E_RAW, sec[i].raw);
        paro_wr32(e + PARO_E_CODEC, sec[i].codec);
        paro_wr32(e + PARO_E_CRC,
                  (uint32_t)crc32_z(0, sec[i].data, (z_size_t)sec[i].stored));
        paro_wr32(e + PARO_E_INDEX, sec[i].index);
        if (sec[i].stored)
            memcpy(b + pos, sec[i].data, (size_t)sec[i].stored);
        pos = align64(pos + sec[i].stored);
    }
    /* header CRC: header (CRC field zero) + section table */
    uint32_t crc = (uint32_t)crc32_z(
        0, b, (z_size_t)(PARO_PLAN_HEADER_SIZE + (uint64_t)n_sec * PARO_PLAN_ENTRY_SIZE));
    paro_wr32(b + PARO_H_CRC, crc);
    *buf = b;
    *len = (size_t)total;

done:
    if (sec)
        for (uint32_t i = 0; i < n_sec; i++) {
            free(sec[i].owned);
            free(sec[i].raw_owned);
        }
    free(sec);
    free(perm);
    return err;
}

paro_err paro_plan_serialize(const paro_plan *p, uint8_t **buf, size_t *len, paro_errinfo *ei)
{
    return serialize(p, NULL, 1, buf, len, ei);
}

paro_err paro_plan_write(const paro_plan *p, const char *path, int threads, paro_errinfo *ei)
{
    uint8_t *buf;
    size_t len;
    paro_err err = serialize(p, path, threads, &buf, &len, ei);
    if (err != PARO_OK)
        return err;
    err = paro_atomic_write_file(path, buf, len, ei);
    free(buf);
    return err;
}
