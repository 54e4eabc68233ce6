/* paro — strict safetensors reader (mmap) and writer.
 *
 * The rules are those of the reference reader (safetensors/src/tensor.rs,
 * read_metadata and Metadata::validate) plus the ones it leaves to serde:
 * duplicate names, unknown fields, raw control bytes and invalid UTF-8 are
 * all refused here.  formats/CAPTURE.md lists every rule. */
#include "safetensors.h"

#include <stdio.h>     /* snprintf */
#include <stdlib.h>    /* malloc, calloc, realloc, free, qsort, bsearch */
#include <string.h>    /* strcmp, strdup, strlen, memcpy, strerror */

#include <cjson/cJSON.h> /* cJSON */

#include "atomic_file.h" /* paro_atomic_open, _write, _commit, _abort */
#include "json_util.h"   /* paro_json_parse, paro_json_check_keys, paro_json_as_* */
#include "mapped_file.h" /* paro_map_file, paro_unmap_file */

struct paro_st_file {
    char *path;
    const unsigned char *map;
    uint64_t size;
    uint64_t data_start; /* 8 + header length */
    size_t n;
    paro_st_tensor *tensors;          /* in header order */
    const paro_st_tensor **by_name;   /* sorted by strcmp, for bsearch */
};

/* Every dtype the reference implementation knows, with its size in bits.
 * Sub-byte types are accepted when the tensor fills whole bytes, as the
 * reference does; only the three paro converts can be loaded. */
static const struct st_dtype {
    const char *name;
    unsigned bits;
    paro_dtype dtype;
} st_dtypes[] = {
    {"F32", 32, PARO_DTYPE_F32},
    {"F16", 16, PARO_DTYPE_F16},
    {"BF16", 16, PARO_DTYPE_BF16},
    {"BOOL", 8, PARO_DTYPE_INVALID},
    {"U8", 8, PARO_DTYPE_INVALID},
    {"I8", 8, PARO_DTYPE_INVALID},
    {"F8_E5M2", 8, PARO_DTYPE_INVALID},
    {"F8_E4M3", 8, PARO_DTYPE_INVALID},
    {"F8_E8M0", 8, PARO_DTYPE_INVALID},
    {"F8_E4M3FNUZ", 8, PARO_DTYPE_INVALID},
    {"F8_E5M2FNUZ", 8, PARO_DTYPE_INVALID},
    {"F4", 4, PARO_DTYPE_INVALID},
    {"F6_E2M3", 6, PARO_DTYPE_INVALID},
    {"F6_E3M2", 6, PARO_DTYPE_INVALID},
    {"I16", 16, PARO_DTYPE_INVALID},
    {"U16", 16, PARO_DTYPE_INVALID},
    {"I32", 32, PARO_DTYPE_INVALID},
    {"U32", 32, PARO_DTYPE_INVALID},
    {"F64", 64, PARO_DTYPE_INVALID},
    {"I64", 64, PARO_DTYPE_INVALID},
    {"U64", 64, PARO_DTYPE_INVALID},
    {"C64", 64, PARO_DTYPE_INVALID},
};

#define METADATA_KEY "__metadata__"

static const struct st_dtype *find_dtype(const char *name)
{
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (!strcmp(st_dtypes[i].name, name))
            return &st_dtypes[i];
    return NULL;
}

/* The dtype a tensor is written with and its element size: the integer
 * dtype when one is given, else the float dtype; NULL when paro does not
 * write it. */
static const char *write_dtype_name(const paro_st_write_tensor *t, const char *int_dtype,
                                    uint64_t *elem_size)
{
    static const char *const ints[3] = {"I8", "I32", "BOOL"};
    if (int_dtype) {
        for (int i = 0; i < 3; i++)
            if (!strcmp(int_dtype, ints[i])) {
                *elem_size = find_dtype(ints[i])->bits / 8;
                return ints[i];
            }
        return NULL;
    }
    *elem_size = paro_dtype_size(t->dtype);
    switch (t->dtype) {
    case PARO_DTYPE_F32: return "F32";
    case PARO_DTYPE_F16: return "F16";
    case PARO_DTYPE_BF16: return "BF16";
    default: return NULL;
    }
}

static uint64_t load_u64le(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

void paro_st_close(paro_st_file *f)
{
    if (!f)
        return;
    paro_mapped_file mf = {f->map, f->size};
    paro_unmap_file(&mf);
    for (size_t i = 0; i < f->n; i++)
        free(f->tensors[i].name);
    free(f->tensors);
    free(f->by_name);
    free(f->path);
    free(f);
}

static int cmp_by_name(const void *a, const void *b)
{
    const paro_st_tensor *x = *(const paro_st_tensor *const *)a;
    const paro_st_tensor *y = *(const paro_st_tensor *const *)b;
    return strcmp(x->name, y->name);
}

/* For the contiguity walk: offsets relative to the data buffer. */
typedef struct span {
    uint64_t begin, end;
    size_t index;
} span;

static int cmp_span(const void *a, const void *b)
{
    const span *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* "__metadata__": a flat string-to-string map, validated and then ignored. */
static paro_err check_metadata(const paro_json_ctx *cx, const cJSON *meta)
{
    paro_err rc = paro_json_check_unique(cx, meta, METADATA_KEY, NULL);
    if (rc)
        return rc;
    char where[PARO_JSON_PATH_MAX];
    for (const cJSON *c = meta->child; c; c = c->next) {
        if (!cJSON_IsString(c))
            return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                              "%s is %s; metadata values must be strings",
                              paro_json_path_key(where, sizeof where, METADATA_KEY, c->string),
                              paro_json_type_name(c));
    }
    return PARO_OK;
}

/* Validates one header entry into *t (name already set); *begin and *end get the
 * offsets relative to the data buffer. */
static paro_err parse_entry(const paro_json_ctx *cx, const cJSON *entry, paro_st_tensor *t,
                            uint64_t *begin, uint64_t *end)
{
    static const char *const fields[] = {"dtype", "shape", "data_offsets"};
    char path[PARO_JSON_PATH_MAX], where[PARO_JSON_PATH_MAX], shp[200];
    paro_json_printable(path, sizeof path, t->name);
    if (!cJSON_IsObject(entry))
        return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                          "tensor '%s' is %s; it must be an object with dtype, shape and "
                          "data_offsets",
                          path, paro_json_type_name(entry));
    paro_err rc = paro_json_check_keys(cx, entry, path, fields, 3, NULL);
    if (rc)
        return rc;

    const char *dtype_name;
    rc = paro_json_get_string(cx, entry, path, "dtype", PARO_JSON_REQUIRED, &dtype_name, NULL);
    if (rc)
        return rc;
    const struct st_dtype *dt = find_dtype(dtype_name);
    if (!dt)
        return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                          "tensor '%s' has unknown dtype '%s'", path,
                          paro_json_printable(where, sizeof where, dtype_name));
    t->dtype = dt->dtype;
    snprintf(t->dtype_name, sizeof t->dtype_name, "%s", dt->name);

    const cJSON *shape = paro_json_get(entry, "shape");
    paro_json_path_key(where, sizeof where, path, "shape");
    if (!shape)
        return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset, "missing key '%s'",
                          where);
    if (cJSON_IsArray(shape) && cJSON_GetArraySize(shape) > PARO_ST_MAX_DIMS)
        return paro_error(cx->ei, PARO_ERR_LIMIT, cx->file, cx->offset,
                          "tensor '%s' has %d dimensions; paro reads at most %d", path,
                          cJSON_GetArraySize(shape), PARO_ST_MAX_DIMS);
    size_t ndim;
    rc = paro_json_get_uint_array(cx, entry, path, "shape", PARO_JSON_REQUIRED, 0,
                                  PARO_ST_MAX_DIMS, 0, PARO_JSON_MAX_INT, t->shape, &ndim, NULL);
    if (rc)
        return rc;
    t->ndim = (uint32_t)ndim;

    uint64_t offs[2];
    size_t n_offs;
    rc = paro_json_get_uint_array(cx, entry, path, "data_offsets", PARO_JSON_REQUIRED, 2, 2, 0,
                                  PARO_JSON_MAX_INT, offs, &n_offs, NULL);
    if (rc)
        return rc;
    if (offs[0] > offs[1])
        return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                          "tensor '%s' has data_offsets [%llu, %llu]; begin must not exceed end",
                          path, (unsigned long long)offs[0], (unsigned long long)offs[1]);

    uint64_t count = 1, nbits;
    for (uint32_t i = 0; i < t->ndim; i++)
        if (!paro_mul_ok(count, t->shape[i], &count))
            return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                              "tensor '%s' has shape %s, whose element count overflows 64 bits",
                              path, paro_shape_text(shp, sizeof shp, t->shape, t->ndim));
    if (!paro_mul_ok(count, dt->bits, &nbits))
        return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                          "tensor '%s' has shape %s of %s, whose size overflows 64 bits", path,
                          paro_shape_text(shp, sizeof shp, t->shape, t->ndim), dt->name);
    if (nbits % 8 != 0)
        return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                          "tensor '%s' has %llu elements of %u bits, not a whole number of bytes",
                          path, (unsigned long long)count, dt->bits);
    t->nbytes = nbits / 8;
    if (t->nbytes != offs[1] - offs[0])
        return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                          "tensor '%s' has shape %s of %s (%llu bytes) but data_offsets "
                          "[%llu, %llu] span %llu bytes",
                          path, paro_shape_text(shp, sizeof shp, t->shape, t->ndim), dt->name,
                          (unsigned long long)t->nbytes, (unsigned long long)offs[0],
                          (unsigned long long)offs[1], (unsigned long long)(offs[1] - offs[0]));
    *begin = offs[0];
    *end = offs[1];
    return PARO_OK;
}

/* The data buffer must be covered exactly: sorted by offset, each tensor
 * starts where the previous one ended, and the last ends at the file's end
 * (no holes for a polyglot file to hide in, no overlaps for a DoS). */
static paro_err check_coverage(const paro_json_ctx *cx, paro_st_file *f, span *spans)
{
    char name[PARO_JSON_PATH_MAX];
    uint64_t data_size = f->size - f->data_start, pos = 0;
    qsort(spans, f->n, sizeof *spans, cmp_span);
    for (size_t i = 0; i < f->n; i++) {
        const span *s = &spans[i];
        paro_json_printable(name, sizeof name, f->tensors[s->index].name);
        if (s->begin > pos)
            return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, f->data_start + pos,
                              "%llu unused bytes before tensor '%s' (its data begins at %llu, "
                              "the previous data ends at %llu)",
                              (unsigned long long)(s->begin - pos), name,
                              (unsigned long long)s->begin, (unsigned long long)pos);
        if (s->begin < pos)
            return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, f->data_start + s->begin,
                              "tensor '%s' (data_offsets [%llu, %llu]) overlaps data that "
                              "ends at %llu",
                              name, (unsigned long long)s->begin, (unsigned long long)s->end,
                              (unsigned long long)pos);
        if (s->end > data_size)
            return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, f->data_start + s->begin,
                              "tensor '%s' ends at data offset %llu but the file holds only "
                              "%llu bytes of data",
                              name, (unsigned long long)s->end, (unsigned long long)data_size);
        pos = s->end;
    }
    if (pos != data_size)
        return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, f->data_start + pos,
                          "%llu trailing bytes after the last tensor's data",
                          (unsigned long long)(data_size - pos));
    return PARO_OK;
}

static paro_err parse_header(paro_st_file *f, const paro_json_ctx *cx, uint64_t header_len)
{
    cJSON *root;
    paro_err rc = paro_json_parse(cx, f->map + 8, (size_t)header_len, "header", &root);
    if (rc)
        return rc;
    span *spans = NULL;
    rc = paro_json_as_object(cx, root, "header");
    if (!rc)
        rc = paro_json_check_unique(cx, root, "", NULL);
    if (rc)
        goto out;

    size_t n = 0;
    for (const cJSON *c = root->child; c; c = c->next)
        if (strcmp(c->string, METADATA_KEY))
            n++;
    if (n > PARO_ST_MAX_TENSORS) {
        rc = paro_error(cx->ei, PARO_ERR_LIMIT, cx->file, cx->offset,
                        "header lists %zu tensors; paro reads at most %u", n,
                        PARO_ST_MAX_TENSORS);
        goto out;
    }
    /* calloc(0) may return NULL: allocate at least one of each. */
    f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
    f->by_name = calloc(n ? n : 1, sizeof *f->by_name);
    spans = calloc(n ? n : 1, sizeof *spans);
    if (!f->tensors || !f->by_name || !spans) {
        rc = paro_error(cx->ei, PARO_ERR_NOMEM, cx->file, PARO_NO_OFFSET,
                        "out of memory for %zu tensors", n);
        goto out;
    }

    for (const cJSON *c = root->child; c; c = c->next) {
        if (!strcmp(c->string, METADATA_KEY)) {
            rc = check_metadata(cx, c);
            if (rc)
                goto out;
            continue;
        }
        paro_st_tensor *t = &f->tensors[f->n];
        t->name = strdup(c->string);
        if (!t->name) {
            rc = paro_error(cx->ei, PARO_ERR_NOMEM, cx->file, PARO_NO_OFFSET, "out of memory");
            goto out;
        }
        f->n++; /* counted now so that close frees the name */
        uint64_t begin = 0, end = 0;
        rc = parse_entry(cx, c, t, &begin, &end);
        if (rc)
            goto out;
        t->data_offset = f->data_start + begin; /* both below 2^54: no overflow */
        spans[f->n - 1] = (span){begin, end, f->n - 1};
        f->by_name[f->n - 1] = t;
    }
    rc = check_coverage(cx, f, spans);
    if (rc)
        goto out;
    qsort(f->by_name, f->n, sizeof *f->by_name, cmp_by_name);
out:
    free(spans);
    cJSON_Delete(root);
    return rc;
}

paro_err paro_st_open(const char *path, paro_st_file **out, paro_errinfo *ei)
{
    *out = NULL;
    paro_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return paro_error(ei, PARO_ERR_NOMEM, path, PARO_NO_OFFSET, "out of memory");
    }
    paro_mapped_file mf;
    paro_err rc = paro_map_file(path, "a safetensors file", &mf, ei);
    if (rc)
        goto fail;
    f->map = mf.data;
    f->size = mf.size;
    if (f->size < 8) {
        rc = paro_error(ei, PARO_ERR_FORMAT, path, 0,
                        "file is %llu bytes; a safetensors file starts with an 8-byte header "
                        "size",
                        (unsigned long long)f->size);
        goto fail;
    }

    uint64_t header_len = load_u64le(f->map);
    if (header_len > PARO_ST_MAX_HEADER) {
        rc = paro_error(ei, PARO_ERR_LIMIT, path, 0,
                        "header size field says %llu bytes; paro reads headers of at most %u",
                        (unsigned long long)header_len, PARO_ST_MAX_HEADER);
        goto fail;
    }
    if (header_len > f->size - 8) {
        rc = paro_error(ei, PARO_ERR_FORMAT, path, 0,
                        "header size field says %llu bytes but only %llu follow it",
                        (unsigned long long)header_len, (unsigned long long)(f->size - 8));
        goto fail;
    }
    f->data_start = 8 + header_len;
    paro_json_ctx cx = {path, 8, ei};
    rc = parse_header(f, &cx, header_len);
    if (rc)
        goto fail;
    *out = f;
    return PARO_OK;
fail:
    paro_st_close(f);
    return rc;
}

size_t paro_st_count(const paro_st_file *f)
{
    return f->n;
}

const paro_st_tensor *paro_st_get(const paro_st_file *f, size_t i)
{
    return i < f->n ? &f->tensors[i] : NULL;
}

static int cmp_name_key(const void *key, const void *elem)
{
    return strcmp(key, (*(const paro_st_tensor *const *)elem)->name);
}

const paro_st_tensor *paro_st_find(const paro_st_file *f, const char *name)
{
    if (f->n == 0)
        return NULL;
    const paro_st_tensor *const *hit =
        bsearch(name, f->by_name, f->n, sizeof *f->by_name, cmp_name_key);
    return hit ? *hit : NULL;
}

const void *paro_st_data(const paro_st_file *f, const paro_st_tensor *t)
{
    return f->map + t->data_offset;
}

const char *paro_st_path(const paro_st_file *f)
{
    return f->path;
}

uint64_t paro_st_file_size(const paro_st_file *f)
{
    return f->size;
}

/* ---- writer */

typedef struct strbuf {
    char *p;
    size_t len, cap;
    int oom;
} strbuf;

static void sb_add(strbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->cap - b->len < n + 1) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n + 1) {
            if (cap > SIZE_MAX / 2) {
                b->oom = 1;
                return;
            }
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_str(strbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static void sb_u64(strbuf *b, uint64_t v)
{
    char num[24];
    int w = snprintf(num, sizeof num, "%llu", (unsigned long long)v);
    sb_add(b, num, (size_t)w);
}

/* A JSON string literal; s is valid UTF-8 (checked by the caller). */
static void sb_json_string(strbuf *b, const char *s)
{
    sb_add(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            sb_add(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            sb_add(b, esc, 6);
        } else {
            sb_add(b, s, 1);
        }
    }
    sb_add(b, "\"", 1);
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Refuses what would make a file our own reader rejects. */
static paro_err check_write_args(const char *path, const paro_st_write_tensor *tensors,
                                 const char *const *int_dtypes, size_t n, int streamed,
                                 uint64_t *nbytes, paro_errinfo *ei)
{
    char name[PARO_JSON_PATH_MAX];
    if (n > PARO_ST_MAX_TENSORS)
        return paro_error(ei, PARO_ERR_LIMIT, path, PARO_NO_OFFSET,
                          "cannot write %zu tensors; the limit is %u", n, PARO_ST_MAX_TENSORS);
    for (size_t i = 0; i < n; i++) {
        const paro_st_write_tensor *t = &tensors[i];
        if (!t->name || !paro_json_utf8_valid(t->name, strlen(t->name), NULL))
            return paro_error(ei, PARO_ERR_USAGE, path, PARO_NO_OFFSET,
                              "tensor %zu has no name or a name that is not valid UTF-8", i);
        paro_json_printable(name, sizeof name, t->name);
        if (!strcmp(t->name, METADATA_KEY))
            return paro_error(ei, PARO_ERR_USAGE, path, PARO_NO_OFFSET,
                              "a tensor cannot be named '%s'", METADATA_KEY);
        uint64_t elem_size;
        if (!write_dtype_name(t, int_dtypes ? int_dtypes[i] : NULL, &elem_size))
            return paro_error(ei, PARO_ERR_USAGE, path, PARO_NO_OFFSET,
                              "tensor '%s' has no dtype paro writes (F32, F16, BF16, I8, I32, "
                              "BOOL)",
                              name);
        if (t->ndim > PARO_ST_MAX_DIMS)
            return paro_error(ei, PARO_ERR_USAGE, path, PARO_NO_OFFSET,
                              "tensor '%s' has %u dimensions; at most %d", name, t->ndim,
                              PARO_ST_MAX_DIMS);
        uint64_t count = 1;
        for (uint32_t d = 0; d < t->ndim; d++)
            if (t->shape[d] > PARO_JSON_MAX_INT || !paro_mul_ok(count, t->shape[d], &count))
                return paro_error(ei, PARO_ERR_USAGE, path, PARO_NO_OFFSET,
                                  "tensor '%s' is too large to describe", name);
        if (!paro_mul_ok(count, elem_size, &nbytes[i]) ||
            nbytes[i] > PARO_JSON_MAX_INT || nbytes[i] > SIZE_MAX)
            return paro_error(ei, PARO_ERR_USAGE, path, PARO_NO_OFFSET,
                              "tensor '%s' is too large to describe", name);
        if (nbytes[i] && !t->data && !streamed)
            return paro_error(ei, PARO_ERR_USAGE, path, PARO_NO_OFFSET,
                              "tensor '%s' has no data", name);
    }
    if (n < 2)
        return PARO_OK;
    const char **names = malloc(n * sizeof *names);
    if (!names)
        return paro_error(ei, PARO_ERR_NOMEM, path, PARO_NO_OFFSET, "out of memory");
    for (size_t i = 0; i < n; i++)
        names[i] = tensors[i].name;
    qsort(names, n, sizeof *names, cmp_str_ptr);
    paro_err rc = PARO_OK;
    for (size_t i = 1; i < n && !rc; i++)
        if (!strcmp(names[i - 1], names[i]))
            rc = paro_error(ei, PARO_ERR_USAGE, path, PARO_NO_OFFSET,
                            "two tensors are named '%s'",
                            paro_json_printable(name, sizeof name, names[i]));
    free(names);
    return rc;
}

/* Writes the header from `tensors`, then each tensor's bytes: from its data
 * pointer, or, when fill is given, from fill() into one reused buffer. */
static paro_err write_tensors(const char *path, const paro_st_write_tensor *tensors,
                              const char *const *int_dtypes, size_t n, paro_st_fill_fn fill,
                              void *user, const char *const *meta, size_t n_pairs,
                              paro_errinfo *ei)
{
    uint64_t *nbytes = calloc(n ? n : 1, sizeof *nbytes);
    if (!nbytes)
        return paro_error(ei, PARO_ERR_NOMEM, path, PARO_NO_OFFSET, "out of memory");
    strbuf h = {0};
    void *buf = NULL;
    paro_err rc = check_write_args(path, tensors, int_dtypes, n, fill != NULL, nbytes, ei);
    for (size_t i = 0; i < 2 * n_pairs && !rc; i++)
        if (!meta || !meta[i] || !paro_json_utf8_valid(meta[i], strlen(meta[i]), NULL))
            rc = paro_error(ei, PARO_ERR_USAGE, path, PARO_NO_OFFSET,
                            "metadata entry %zu is missing or not valid UTF-8", i / 2);
    for (size_t i = 1; i < n_pairs && !rc; i++)
        for (size_t j = 0; j < i && !rc; j++)
            if (!strcmp(meta[2 * i], meta[2 * j]))
                rc = paro_error(ei, PARO_ERR_USAGE, path, PARO_NO_OFFSET,
                                "metadata key '%s' is given twice", meta[2 * i]);
    if (rc)
        goto out;

    /* Fixed key order and no whitespace: the same tensors give the same bytes. */
    uint64_t offset = 0;
    sb_str(&h, "{");
    if (n_pairs) {
        sb_str(&h, "\"" METADATA_KEY "\":{");
        for (size_t i = 0; i < n_pairs; i++) {
            if (i)
                sb_str(&h, ",");
            sb_json_string(&h, meta[2 * i]);
            sb_str(&h, ":");
            sb_json_string(&h, meta[2 * i + 1]);
        }
        sb_str(&h, n ? "}," : "}");
    }
    for (size_t i = 0; i < n; i++) {
        const paro_st_write_tensor *t = &tensors[i];
        if (i)
            sb_str(&h, ",");
        sb_json_string(&h, t->name);
        sb_str(&h, ":{\"dtype\":\"");
        uint64_t elem_size;
        sb_str(&h, write_dtype_name(t, int_dtypes ? int_dtypes[i] : NULL, &elem_size));
        sb_str(&h, "\",\"shape\":[");
        for (uint32_t d = 0; d < t->ndim; d++) {
            if (d)
                sb_str(&h, ",");
            sb_u64(&h, t->shape[d]);
        }
        sb_str(&h, "],\"data_offsets\":[");
        sb_u64(&h, offset);
        sb_str(&h, ",");
        if (!paro_add_ok(offset, nbytes[i], &offset) || offset > PARO_JSON_MAX_INT) {
            rc = paro_error(ei, PARO_ERR_USAGE, path, PARO_NO_OFFSET,
                            "the tensors hold more than 2^53 bytes");
            goto out;
        }
        sb_u64(&h, offset);
        sb_str(&h, "]}");
    }
    sb_str(&h, "}");
    /* Spaces up to a multiple of 8 put the data 8-byte aligned, as the
     * reference writer does. */
    while (!h.oom && h.len % 8 != 0)
        sb_str(&h, " ");
    if (h.oom) {
        rc = paro_error(ei, PARO_ERR_NOMEM, path, PARO_NO_OFFSET,
                        "out of memory building the header");
        goto out;
    }
    if (h.len > PARO_ST_MAX_HEADER) {
        rc = paro_error(ei, PARO_ERR_LIMIT, path, PARO_NO_OFFSET,
                        "header would be %zu bytes; the limit is %u", h.len,
                        PARO_ST_MAX_HEADER);
        goto out;
    }

    unsigned char len_le[8];
    for (int i = 0; i < 8; i++)
        len_le[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
    paro_atomic_file af;
    rc = paro_atomic_open(&af, path, ei);
    if (rc)
        goto out;
    rc = paro_atomic_write(&af, len_le, 8, ei);
    if (!rc)
        rc = paro_atomic_write(&af, h.p, h.len, ei);
    if (!rc && fill) {
        uint64_t largest = 0;
        for (size_t i = 0; i < n; i++)
            largest = nbytes[i] > largest ? nbytes[i] : largest;
        if (!(buf = malloc(largest ? (size_t)largest : 1)))
            rc = paro_error(ei, PARO_ERR_NOMEM, path, PARO_NO_OFFSET,
                            "out of memory for a %llu-byte tensor", (unsigned long long)largest);
    }
    for (size_t i = 0; i < n && !rc; i++) {
        if (!nbytes[i])
            continue;
        const void *data = tensors[i].data;
        if (fill) {
            rc = fill(user, i, buf, ei);
            data = buf;
        }
        if (!rc)
            rc = paro_atomic_write(&af, data, (size_t)nbytes[i], ei);
    }
    if (rc)
        paro_atomic_abort(&af);
    else
        rc = paro_atomic_commit(&af, ei);
out:
    free(buf);
    free(h.p);
    free(nbytes);
    return rc;
}

paro_err paro_st_write(const char *path, const paro_st_write_tensor *tensors, size_t n,
                       paro_errinfo *ei)
{
    return write_tensors(path, tensors, NULL, n, NULL, NULL, NULL, 0, ei);
}

paro_err paro_st_write_stream(const char *path, const paro_st_write_tensor *tensors, size_t n,
                              paro_st_fill_fn fill, void *user, paro_errinfo *ei)
{
    return write_tensors(path, tensors, NULL, n, fill, user, NULL, 0, ei);
}

paro_err paro_st_write_stream_meta(const char *path, const paro_st_write_tensor *tensors,
                                   const char *const *int_dtypes, size_t n, paro_st_fill_fn fill,
                                   void *user, const char *const *meta, size_t n_pairs,
                                   paro_errinfo *ei)
{
    return write_tensors(path, tensors, int_dtypes, n, fill, user, meta, n_pairs, ei);
}
