/* paro — plan exports (see plan_export.h).
 *
 * Every array is a sequence of rows, a row being its last axis; one function
 * fills any row of any array, and the three writers walk the rows: the npz
 * writer streams them into ZIP members behind .npy headers, the safetensors
 * writer into whole tensors, the JSON writer into nested lists.  So the
 * three files hold the same numbers by construction. */
#include "plan_export.h"

#include <cjson/cJSON.h> /* cJSON_CreateString, cJSON_PrintUnformatted, cJSON_Delete */
#include <stdio.h>       /* snprintf */
#include <stdlib.h>      /* malloc, calloc, free, strtof */
#include <string.h>      /* memcpy, memset, strcmp, strlen, strpbrk */

#include "atomic_file.h"   /* paro_atomic_open, _write, _commit, _abort */
#include "npy_write.h"     /* paro_npy_header */
#include "plan_internal.h" /* paro_wr32, paro_plan_axes_perm */
#include "safetensors.h"   /* paro_st_write_stream_meta */
#include "zip_write.h"     /* paro_zip_* */

enum elem_type { E_BOOL, E_I8, E_I32, E_F32, E_STR };

enum array_id {
    A_ORDER_NAMES,
    A_LAYERS,
    A_ORDERS,
    A_PERMS,
    A_MASKS,
    A_KV_NUM_BLOCKS,
    A_KV_INDICES,
    A_DENSITY,
    A_RECALL,
    A_COUNT
};

typedef struct ex_array {
    const char *name;
    enum elem_type type;
    uint32_t elem_size; /* bytes per element */
    uint32_t ndim;
    uint64_t shape[5];
    uint64_t rows, row_elems; /* row_elems = shape[ndim - 1] */
} ex_array;

typedef struct exporter {
    const paro_plan *p;
    ex_array a[A_COUNT];
    uint32_t name_chars; /* the longest order name: '<U%u' */
    uint32_t *perm;      /* [N] of perm_order */
    uint32_t perm_order;
    int perm_valid;
} exporter;

static const char *descr_of(const ex_array *a, char *buf, size_t size)
{
    switch (a->type) {
    case E_BOOL: return "|b1";
    case E_I8: return "|i1"; /* what numpy writes for int8 */
    case E_I32: return "<i4";
    case E_F32: return "<f4";
    case E_STR: snprintf(buf, size, "<U%u", a->elem_size / 4); return buf;
    }
    return "";
}

static void set_array(ex_array *a, const char *name, enum elem_type type, uint32_t elem_size,
                      uint32_t ndim, const uint64_t *shape)
{
    a->name = name;
    a->type = type;
    a->elem_size = elem_size;
    a->ndim = ndim;
    a->rows = 1;
    for (uint32_t d = 0; d < ndim; d++) {
        a->shape[d] = shape[d];
        if (d + 1 < ndim)
            a->rows *= shape[d];
    }
    a->row_elems = shape[ndim - 1];
}

static paro_err exporter_init(exporter *x, const paro_plan *p, const char *path, paro_errinfo *ei)
{
    memset(x, 0, sizeof *x);
    x->p = p;
    /* int32 holds every token index, layer id and block index */
    if (p->n_tokens > INT32_MAX)
        return paro_error(ei, PARO_ERR_LIMIT, path, PARO_NO_OFFSET,
                          "cannot export: %u tokens do not fit the int32 perms", p->n_tokens);
    if (p->layers[p->n_layers - 1] > INT32_MAX)
        return paro_error(ei, PARO_ERR_LIMIT, path, PARO_NO_OFFSET,
                          "cannot export: layer id %u does not fit int32",
                          p->layers[p->n_layers - 1]);
    x->name_chars = 1;
    for (uint32_t o = 0; o < p->n_orders; o++) {
        uint32_t n = (uint32_t)strlen(p->orders[o].name);
        x->name_chars = n > x->name_chars ? n : x->name_chars;
    }
    const uint64_t B = p->n_buckets, L = p->n_layers, H = p->heads, O = p->n_orders;
    const uint64_t N = p->n_tokens, nq = p->nq, nk = p->nk;
    const uint64_t s_names[1] = {O}, s_layers[1] = {L}, s_orders[2] = {L, H}, s_perms[2] = {O, N};
    const uint64_t s_masks[5] = {B, L, H, nq, nk}, s_num[4] = {B, L, H, nq}, s_bucketed[3] = {B, L, H};
    set_array(&x->a[A_ORDER_NAMES], "order_names", E_STR, 4 * x->name_chars, 1, s_names);
    set_array(&x->a[A_LAYERS], "layers", E_I32, 4, 1, s_layers);
    set_array(&x->a[A_ORDERS], "orders", E_I8, 1, 2, s_orders);
    set_array(&x->a[A_PERMS], "perms", E_I32, 4, 2, s_perms);
    set_array(&x->a[A_MASKS], "masks", E_BOOL, 1, 5, s_masks);
    set_array(&x->a[A_KV_NUM_BLOCKS], "kv_num_blocks", E_I32, 4, 4, s_num);
    set_array(&x->a[A_KV_INDICES], "kv_indices", E_I32, 4, 5, s_masks);
    set_array(&x->a[A_DENSITY], "density", E_F32, 4, 3, s_bucketed);
    set_array(&x->a[A_RECALL], "recall", E_F32, 4, 3, s_bucketed);
    for (int i = 0; i < A_COUNT; i++) {
        uint64_t bytes;
        if (!paro_mul_ok(x->a[i].rows, x->a[i].row_elems, &bytes) ||
            !paro_mul_ok(bytes, x->a[i].elem_size, &bytes) || bytes > (UINT64_MAX >> 2) ||
            x->a[i].row_elems * x->a[i].elem_size > SIZE_MAX)
            return paro_error(ei, PARO_ERR_LIMIT, path, PARO_NO_OFFSET,
                              "cannot export: \"%s\" would be too large", x->a[i].name);
    }
    if (!(x->perm = malloc((size_t)N * sizeof *x->perm)))
        return paro_error(ei, PARO_ERR_NOMEM, path, PARO_NO_OFFSET, "out of memory");
    return PARO_OK;
}

static uint64_t array_bytes(const ex_array *a)
{
    return a->rows * a->row_elems * a->elem_size; /* checked by exporter_init */
}

static size_t row_bytes(const ex_array *a)
{
    return (size_t)(a->row_elems * a->elem_size);
}

static void put_f32(uint8_t *dst, double v)
{
    float f = (float)v;
    uint32_t u;
    memcpy(&u, &f, 4);
    paro_wr32(dst, u);
}

/* Fills row r of array id (row_bytes of it) at dst. */
static void fill_row(exporter *x, int id, uint64_t r, uint8_t *dst)
{
    const paro_plan *p = x->p;
    const uint32_t L = p->n_layers, H = p->heads;
    switch ((enum array_id)id) {
    case A_ORDER_NAMES: /* UTF-32LE, padded with NULs as numpy pads 'U' strings */
        memset(dst, 0, 4 * (size_t)x->name_chars * p->n_orders);
        for (uint32_t o = 0; o < p->n_orders; o++)
            for (size_t i = 0; p->orders[o].name[i]; i++)
                dst[4 * ((size_t)o * x->name_chars + i)] = (uint8_t)p->orders[o].name[i];
        break;
    case A_LAYERS:
        for (uint32_t l = 0; l < L; l++)
            paro_wr32(dst + 4 * (size_t)l, p->layers[l]);
        break;
    case A_ORDERS:
        memcpy(dst, p->head_order + r * H, H);
        break;
    case A_PERMS:
        if (!x->perm_valid || x->perm_order != r) {
            paro_plan_axes_perm(p, p->orders[r].name, x->perm);
            x->perm_order = (uint32_t)r;
            x->perm_valid = 1;
        }
        for (uint32_t i = 0; i < p->n_tokens; i++)
            paro_wr32(dst + 4 * (size_t)i, x->perm[i]);
        break;
    case A_MASKS:
    case A_KV_INDICES: {
        /* r = ((b * L + l) * H + h) * nq + q */
        const uint32_t q = (uint32_t)(r % p->nq);
        const uint64_t blh = r / p->nq;
        const uint32_t h = (uint32_t)(blh % H), l = (uint32_t)(blh / H % L);
        const uint32_t b = (uint32_t)(blh / H / L);
        if (id == A_MASKS) {
            for (uint32_t k = 0; k < p->nk; k++)
                dst[k] = (uint8_t)paro_plan_mask_get(p, l, b, h, q, k);
        } else {
            uint32_t n = 0;
            for (uint32_t k = 0; k < p->nk; k++)
                if (paro_plan_mask_get(p, l, b, h, q, k))
                    paro_wr32(dst + 4 * (size_t)n++, k);
            memset(dst + 4 * (size_t)n, 0, 4 * (size_t)(p->nk - n));
        }
        break;
    }
    case A_KV_NUM_BLOCKS: {
        /* r = (b * L + l) * H + h */
        const uint32_t h = (uint32_t)(r % H), l = (uint32_t)(r / H % L), b = (uint32_t)(r / H / L);
        for (uint32_t q = 0; q < p->nq; q++) {
            uint32_t n = 0;
            for (uint32_t k = 0; k < p->nk; k++)
                n += (uint32_t)paro_plan_mask_get(p, l, b, h, q, k);
            paro_wr32(dst + 4 * (size_t)q, n);
        }
        break;
    }
    case A_DENSITY:
    case A_RECALL: {
        /* r = b * L + l */
        const uint32_t l = (uint32_t)(r % L), b = (uint32_t)(r / L);
        const double *v = id == A_DENSITY ? p->density : p->recall;
        for (uint32_t h = 0; h < H; h++)
            put_f32(dst + 4 * (size_t)h, v[paro_plan_bucket_index(p, l, b, h)]);
        break;
    }
    case A_COUNT: break;
    }
}

/* ---- npz ---- */

typedef struct member_source {
    exporter *x;
    int id;
    char header[PARO_NPY_HEADER_MAX];
    size_t header_len;
    uint8_t *row;
    uint64_t row_at; /* the row held in row[], UINT64_MAX when none */
} member_source;

static paro_err member_read(void *user, uint64_t offset, uint8_t *buf, size_t n,
                            paro_errinfo *ei)
{
    (void)ei;
    member_source *m = user;
    const size_t rb = row_bytes(&m->x->a[m->id]);
    while (n) {
        size_t got;
        if (offset < m->header_len) {
            got = m->header_len - (size_t)offset < n ? m->header_len - (size_t)offset : n;
            memcpy(buf, m->header + offset, got);
        } else {
            uint64_t data = offset - m->header_len, r = data / rb;
            size_t in_row = (size_t)(data % rb);
            if (r != m->row_at) {
                fill_row(m->x, m->id, r, m->row);
                m->row_at = r;
            }
            got = rb - in_row < n ? rb - in_row : n;
            memcpy(buf, m->row + in_row, got);
        }
        buf += got;
        offset += got;
        n -= got;
    }
    return PARO_OK;
}

static paro_err atomic_sink(void *user, const void *buf, size_t n, paro_errinfo *ei)
{
    return paro_atomic_write(user, buf, n, ei);
}

static paro_err write_npz(exporter *x, const char *path, const paro_export_options *opt,
                          paro_errinfo *ei)
{
    paro_atomic_file af;
    paro_err err = paro_atomic_open(&af, path, ei);
    if (err)
        return err;
    paro_zip *z = NULL;
    err = paro_zip_open(&z, atomic_sink, &af, opt->force_zip64 ? 0 : UINT64_MAX, ei);
    for (int id = 0; id < A_COUNT && !err; id++) {
        const ex_array *a = &x->a[id];
        member_source m;
        memset(&m, 0, sizeof m);
        m.x = x;
        m.id = id;
        m.row_at = UINT64_MAX;
        char descr[16], name[64];
        m.header_len = paro_npy_header(descr_of(a, descr, sizeof descr), a->shape, a->ndim,
                                       m.header);
        snprintf(name, sizeof name, "%s.npy", a->name);
        if (!(m.row = malloc(row_bytes(a) ? row_bytes(a) : 1))) {
            err = paro_error(ei, PARO_ERR_NOMEM, path, PARO_NO_OFFSET, "out of memory");
            break;
        }
        err = paro_zip_add(z, name, m.header_len + array_bytes(a),
                           opt->compress ? PARO_ZIP_DEFLATE : PARO_ZIP_STORE, member_read, &m,
                           ei);
        free(m.row);
    }
    if (!err)
        err = paro_zip_finish(z, ei);
    paro_zip_free(z);
    if (err) {
        paro_atomic_abort(&af);
        return err;
    }
    return paro_atomic_commit(&af, ei);
}

/* ---- safetensors ---- */

static const int st_ids[] = {A_LAYERS,        A_ORDERS,     A_PERMS,   A_MASKS,
                             A_KV_NUM_BLOCKS, A_KV_INDICES, A_DENSITY, A_RECALL};
#define N_ST_IDS (sizeof st_ids / sizeof st_ids[0])

static paro_err st_fill(void *user, size_t index, void *dst, paro_errinfo *ei)
{
    (void)ei;
    exporter *x = user;
    const ex_array *a = &x->a[st_ids[index]];
    uint8_t *out = dst;
    for (uint64_t r = 0; r < a->rows; r++, out += row_bytes(a))
        fill_row(x, st_ids[index], r, out);
    return PARO_OK;
}

static paro_err write_safetensors(exporter *x, const char *path, paro_errinfo *ei)
{
    paro_st_write_tensor t[N_ST_IDS];
    const char *int_dtypes[N_ST_IDS];
    memset(t, 0, sizeof t);
    for (size_t i = 0; i < N_ST_IDS; i++) {
        const ex_array *a = &x->a[st_ids[i]];
        t[i].name = a->name;
        t[i].ndim = a->ndim;
        memcpy(t[i].shape, a->shape, sizeof a->shape);
        t[i].dtype = PARO_DTYPE_F32;
        int_dtypes[i] = a->type == E_BOOL ? "BOOL" : a->type == E_I8 ? "I8"
                        : a->type == E_I32 ? "I32" : NULL;
    }
    /* safetensors holds numbers only: the names go to the metadata, as JSON */
    cJSON *names = cJSON_CreateArray();
    for (uint32_t o = 0; names && o < x->p->n_orders; o++) {
        cJSON *s = cJSON_CreateString(x->p->orders[o].name);
        if (!s || !cJSON_AddItemToArray(names, s)) {
            cJSON_Delete(s);
            cJSON_Delete(names);
            names = NULL;
        }
    }
    char *names_json = names ? cJSON_PrintUnformatted(names) : NULL;
    cJSON_Delete(names);
    if (!names_json)
        return paro_error(ei, PARO_ERR_NOMEM, path, PARO_NO_OFFSET, "out of memory");
    const char *meta[2] = {"order_names", names_json};
    paro_err err =
        paro_st_write_stream_meta(path, t, int_dtypes, N_ST_IDS, st_fill, x, meta, 1, ei);
    free(names_json);
    return err;
}

/* ---- JSON ---- */

/* A buffered writer onto the atomic file; the first error sticks. */
typedef struct jw {
    paro_atomic_file *af;
    char buf[1 << 16];
    size_t len;
    paro_err err;
    paro_errinfo *ei;
} jw;

static void jw_flush(jw *w)
{
    if (!w->err && w->len)
        w->err = paro_atomic_write(w->af, w->buf, w->len, w->ei);
    w->len = 0;
}

static void jw_put(jw *w, const char *s, size_t n)
{
    while (n && !w->err) {
        if (w->len == sizeof w->buf)
            jw_flush(w);
        size_t k = sizeof w->buf - w->len < n ? sizeof w->buf - w->len : n;
        memcpy(w->buf + w->len, s, k);
        w->len += k;
        s += k;
        n -= k;
    }
}

static void jw_str(jw *w, const char *s)
{
    jw_put(w, s, strlen(s));
}

/* The shortest decimal that reads back as the same float32, with ".0" when
 * it would read as an integer (as PLAN.md writes binary64 numbers). */
static void fmt_f32(float f, char *buf, size_t size)
{
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, size, "%.*g", prec, (double)f);
        if (strtof(buf, NULL) == f)
            break;
    }
    if (!strpbrk(buf, ".eEn"))
        snprintf(buf + strlen(buf), size - strlen(buf), ".0");
}

static void jw_elem(jw *w, enum elem_type type, const uint8_t *e)
{
    char num[40];
    uint32_t u = paro_rd32(e);
    switch (type) {
    case E_BOOL: jw_str(w, e[0] ? "true" : "false"); return;
    case E_I8: snprintf(num, sizeof num, "%d", (int)(int8_t)e[0]); break;
    case E_I32: snprintf(num, sizeof num, "%d", (int)(int32_t)u); break;
    case E_F32: {
        float f;
        memcpy(&f, &u, 4);
        fmt_f32(f, num, sizeof num);
        break;
    }
    case E_STR: return; /* order_names: written by write_json */
    }
    jw_str(w, num);
}

/* Nested lists, a row (the last axis) at a time: before row r, "[" for each
 * outer axis whose index starts over; after it, "]" for each that ends. */
static void jw_array(jw *w, exporter *x, int id, uint8_t *row)
{
    const ex_array *a = &x->a[id];
    const uint32_t outer = a->ndim - 1;
    for (uint64_t r = 0; r < a->rows && !w->err; r++) {
        uint64_t idx = r;
        uint32_t opens = 0;
        for (uint32_t d = outer; d-- > 0;) { /* innermost outer axis first */
            if (idx % a->shape[d] != 0)
                break;
            opens++;
            idx /= a->shape[d];
        }
        if (r)
            jw_str(w, ", ");
        for (uint32_t i = 0; i < opens; i++)
            jw_str(w, "[");
        fill_row(x, id, r, row);
        jw_str(w, "[");
        for (uint64_t i = 0; i < a->row_elems; i++) {
            if (i)
                jw_str(w, ", ");
            jw_elem(w, a->type, row + i * a->elem_size);
        }
        jw_str(w, "]");
        idx = r;
        for (uint32_t d = outer; d-- > 0;) {
            if (idx % a->shape[d] != a->shape[d] - 1)
                break;
            jw_str(w, "]");
            idx /= a->shape[d];
        }
    }
}

static paro_err write_json(exporter *x, const char *path, paro_errinfo *ei)
{
    paro_atomic_file af;
    paro_err err = paro_atomic_open(&af, path, ei);
    if (err)
        return err;
    jw *w = calloc(1, sizeof *w);
    size_t largest = 0;
    for (int id = 0; id < A_COUNT; id++)
        largest = row_bytes(&x->a[id]) > largest ? row_bytes(&x->a[id]) : largest;
    uint8_t *row = malloc(largest ? largest : 1);
    if (!w || !row) {
        free(w);
        free(row);
        paro_atomic_abort(&af);
        return paro_error(ei, PARO_ERR_NOMEM, path, PARO_NO_OFFSET, "out of memory");
    }
    w->af = &af;
    w->ei = ei;
    /* numbers are formatted here, a row at a time, since a plan's masks can
     * be gigabytes; cJSON escapes the strings */
    jw_str(w, "{");
    for (int id = 0; id < A_COUNT && !w->err; id++) {
        jw_str(w, id ? ",\n\"" : "\"");
        jw_str(w, x->a[id].name);
        jw_str(w, "\": ");
        if (x->a[id].type != E_STR) {
            jw_array(w, x, id, row);
            continue;
        }
        jw_str(w, "[");
        for (uint32_t o = 0; o < x->p->n_orders && !w->err; o++) {
            cJSON *s = cJSON_CreateString(x->p->orders[o].name);
            char *text = s ? cJSON_PrintUnformatted(s) : NULL;
            if (!text)
                w->err = paro_error(ei, PARO_ERR_NOMEM, path, PARO_NO_OFFSET, "out of memory");
            else {
                jw_str(w, o ? ", " : "");
                jw_str(w, text);
            }
            free(text);
            cJSON_Delete(s);
        }
        jw_str(w, "]");
    }
    jw_str(w, "}\n");
    jw_flush(w);
    err = w->err;
    free(w);
    free(row);
    if (err) {
        paro_atomic_abort(&af);
        return err;
    }
    return paro_atomic_commit(&af, ei);
}

/* ---- entry points ---- */

paro_export_format paro_export_format_parse(const char *name)
{
    if (!name)
        return (paro_export_format)0;
    if (!strcmp(name, "npz"))
        return PARO_EXPORT_NPZ;
    if (!strcmp(name, "json"))
        return PARO_EXPORT_JSON;
    if (!strcmp(name, "safetensors"))
        return PARO_EXPORT_SAFETENSORS;
    return (paro_export_format)0;
}

paro_err paro_plan_export(const paro_plan *p, paro_export_format format, const char *path,
                          const paro_export_options *opt, paro_errinfo *ei)
{
    static const paro_export_options defaults = {0, 0};
    if (!opt)
        opt = &defaults;
    if (!p || !path)
        return paro_error(ei, PARO_ERR_USAGE, path, PARO_NO_OFFSET, "no plan or no output");
    exporter x;
    paro_err err = exporter_init(&x, p, path, ei);
    if (!err) {
        switch (format) {
        case PARO_EXPORT_NPZ: err = write_npz(&x, path, opt, ei); break;
        case PARO_EXPORT_JSON: err = write_json(&x, path, ei); break;
        case PARO_EXPORT_SAFETENSORS: err = write_safetensors(&x, path, ei); break;
        default:
            err = paro_error(ei, PARO_ERR_USAGE, path, PARO_NO_OFFSET,
                             "unknown export format %d", (int)format);
        }
    }
    free(x.perm);
    return err;
}
