/* paro — strict JSON helpers over cJSON (see json_util.h for what they add). */
#include "json_util.h"

#include <math.h>   /* isfinite, floor */
#include <stdio.h>  /* snprintf */
#include <stdlib.h> /* malloc, free, qsort, strtod */
#include <string.h> /* strcmp, strlen, memcpy, memcmp */
#include <strings.h> /* strcasecmp */

/* Byte offset for an error at position pos of the JSON text. */
static uint64_t text_offset(const paro_json_ctx *cx, size_t pos)
{
    uint64_t off;
    if (cx->offset == PARO_NO_OFFSET || !paro_add_ok(cx->offset, pos, &off))
        return PARO_NO_OFFSET;
    return off;
}

int paro_json_utf8_valid(const void *buf, size_t n, size_t *bad)
{
    const unsigned char *s = buf;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        /* Ranges of the second byte follow RFC 3629 §4: they exclude
         * overlong forms, UTF-16 surrogates and code points past U+10FFFF. */
        size_t len;
        unsigned lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf)
            len = 2;
        else if (c == 0xe0)
            len = 3, lo = 0xa0;
        else if ((c >= 0xe1 && c <= 0xec) || c == 0xee || c == 0xef)
            len = 3;
        else if (c == 0xed)
            len = 3, hi = 0x9f;
        else if (c == 0xf0)
            len = 4, lo = 0x90;
        else if (c >= 0xf1 && c <= 0xf3)
            len = 4;
        else if (c == 0xf4)
            len = 4, hi = 0x8f;
        else
            goto invalid;
        if (n - i < len || s[i + 1] < lo || s[i + 1] > hi)
            goto invalid;
        for (size_t k = 2; k < len; k++)
            if ((s[i + k] & 0xc0) != 0x80)
                goto invalid;
        i += len;
    }
    return 1;
invalid:
    if (bad)
        *bad = i;
    return 0;
}

const char *paro_json_printable(char *buf, size_t size, const char *s)
{
    if (size == 0)
        return buf;
    size_t len = strlen(s), i;
    for (i = 0; i < len && i + 1 < size; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    buf[i] = 0;
    if (i < len && size >= 4) {
        /* Cut on a character boundary so the message stays valid UTF-8. */
        size_t end = size - 4;
        while (end > 0 && ((unsigned char)buf[end] & 0xc0) == 0x80)
            end--;
        memcpy(buf + end, "...", 4);
    }
    return buf;
}

/* Ends a path that snprintf cut (w = its return value) with "...", so a
 * message never shows a cut path as if it were whole. */
static const char *mark_cut(char *buf, size_t size, int w)
{
    if (w >= 0 && (size_t)w < size)
        return buf;
    if (size >= 4) {
        size_t end = strlen(buf);
        if (end > size - 4)
            end = size - 4;
        while (end > 0 && ((unsigned char)buf[end] & 0xc0) == 0x80)
            end--;
        memcpy(buf + end, "...", 4);
    }
    return buf;
}

const char *paro_json_path_key(char *buf, size_t size, const char *path, const char *key)
{
    char k[PARO_JSON_PATH_MAX];
    paro_json_printable(k, sizeof k, key);
    int w;
    if (path && *path)
        w = snprintf(buf, size, "%s.%s", path, k);
    else
        w = snprintf(buf, size, "%s", k);
    return mark_cut(buf, size, w);
}

const char *paro_json_path_index(char *buf, size_t size, const char *path, size_t index)
{
    int w = snprintf(buf, size, "%s[%zu]", path ? path : "", index);
    return mark_cut(buf, size, w);
}

const char *paro_json_type_name(const cJSON *item)
{
    if (!item)
        return "absent";
    switch (item->type & 0xff) {
    case cJSON_False:
    case cJSON_True: return "a boolean";
    case cJSON_NULL: return "null";
    case cJSON_Number: return "a number";
    case cJSON_String: return "a string";
    case cJSON_Array: return "an array";
    case cJSON_Object: return "an object";
    default: return "an unknown value";
    }
}

/* Shortest decimal that reads back as the same double, so messages show
 * "0.1" rather than "0.10000000000000001". */
static const char *fmt_double(char *buf, size_t size, double v)
{
    snprintf(buf, size, "%.15g", v);
    if (strtod(buf, NULL) != v)
        snprintf(buf, size, "%.17g", v);
    return buf;
}

/* The path as the subject of a sentence. */
static const char *subject(const char *what)
{
    return what && *what ? what : "the top-level value";
}

static int is_json_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* One pass over the raw text for what cJSON lets through: control bytes
 * (cJSON treats every byte <= 32 as whitespace and keeps raw control
 * characters in strings), non-ASCII outside strings (a BOM included),
 * \u0000 (cJSON cuts the string there), and nesting depth (cJSON recurses
 * up to 1000 levels). */
static paro_err scan_text(const paro_json_ctx *cx, const unsigned char *s, size_t n,
                          const char *what)
{
    int in_string = 0;
    size_t depth = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (in_string) {
            if (c == '"') {
                in_string = 0;
            } else if (c == '\\') {
                if (n - i >= 6 && s[i + 1] == 'u' && !memcmp(s + i + 2, "0000", 4))
                    return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, text_offset(cx, i),
                                      "%s has a string holding \\u0000 (NUL)", what);
                i++; /* the escaped character cannot end the string */
            } else if (c < 0x20) {
                return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, text_offset(cx, i),
                                  "%s has a raw control character 0x%02x inside a string",
                                  what, c);
            }
            continue;
        }
        if (c == '"') {
            in_string = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > PARO_JSON_MAX_DEPTH)
                return paro_error(cx->ei, PARO_ERR_LIMIT, cx->file, text_offset(cx, i),
                                  "%s nests arrays and objects deeper than %d levels", what,
                                  PARO_JSON_MAX_DEPTH);
        } else if (c == ']' || c == '}') {
            if (depth > 0)
                depth--;
        } else if (!is_json_space(c) && (c < 0x20 || c >= 0x7f)) {
            return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, text_offset(cx, i),
                              "%s has an unexpected byte 0x%02x outside strings", what, c);
        }
    }
    return PARO_OK;
}

paro_err paro_json_parse(const paro_json_ctx *cx, const void *buf, size_t n, const char *what,
                         cJSON **out)
{
    const unsigned char *s = buf;
    *out = NULL;
    size_t bad;
    if (!paro_json_utf8_valid(s, n, &bad))
        return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, text_offset(cx, bad),
                          "%s is not valid UTF-8 (byte 0x%02x at position %zu)", what, s[bad],
                          bad);
    paro_err rc = scan_text(cx, s, n, what);
    if (rc)
        return rc;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts((const char *)s, n, &end, 0);
    if (!root) {
        size_t pos = end && end >= (const char *)s ? (size_t)(end - (const char *)s) : 0;
        if (pos > n)
            pos = n;
        return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, text_offset(cx, pos),
                          "%s is not valid JSON", what);
    }
    size_t pos = (size_t)(end - (const char *)s);
    while (pos < n && is_json_space(s[pos]))
        pos++;
    if (pos < n) {
        cJSON_Delete(root);
        return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, text_offset(cx, pos),
                          "%s has trailing data after the JSON value", what);
    }
    *out = root;
    return PARO_OK;
}

const cJSON *paro_json_get(const cJSON *obj, const char *key)
{
    if (!cJSON_IsObject(obj))
        return NULL;
    for (const cJSON *c = obj->child; c; c = c->next)
        if (c->string && !strcmp(c->string, key))
            return c;
    return NULL;
}

paro_err paro_json_as_object(const paro_json_ctx *cx, const cJSON *item, const char *what)
{
    if (cJSON_IsObject(item))
        return PARO_OK;
    return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                      "%s is %s; it must be an object", subject(what),
                      paro_json_type_name(item));
}

paro_err paro_json_as_array(const paro_json_ctx *cx, const cJSON *item, const char *what,
                            size_t min_len, size_t max_len, size_t *n)
{
    if (!cJSON_IsArray(item))
        return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                          "%s is %s; it must be an array", subject(what),
                          paro_json_type_name(item));
    size_t len = 0;
    for (const cJSON *c = item->child; c; c = c->next)
        len++;
    if (len < min_len || len > max_len) {
        if (min_len == max_len)
            return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                              "%s has %zu elements; it must have %zu", subject(what), len,
                              min_len);
        if (len < min_len)
            return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                              "%s has %zu elements; it must have at least %zu", subject(what),
                              len, min_len);
        return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                          "%s has %zu elements; it must have at most %zu", subject(what), len,
                          max_len);
    }
    if (n)
        *n = len;
    return PARO_OK;
}

paro_err paro_json_check_keys(const paro_json_ctx *cx, const cJSON *obj, const char *path,
                              const char *const *allowed, size_t n_allowed,
                              const char **bad_key)
{
    char where[PARO_JSON_PATH_MAX];
    if (bad_key)
        *bad_key = NULL;
    paro_err rc = paro_json_as_object(cx, obj, path);
    if (rc)
        return rc;
    if (n_allowed > 64)
        return paro_error(cx->ei, PARO_ERR_INTERNAL, cx->file, PARO_NO_OFFSET,
                          "paro_json_check_keys takes at most 64 keys, got %zu", n_allowed);
    uint64_t seen = 0;
    for (const cJSON *c = obj->child; c; c = c->next) {
        const char *key = c->string ? c->string : "";
        size_t exact = n_allowed, folded = n_allowed;
        for (size_t i = 0; i < n_allowed; i++) {
            if (!strcmp(key, allowed[i]))
                exact = i;
            else if (!strcasecmp(key, allowed[i]))
                folded = i;
        }
        paro_json_path_key(where, sizeof where, path, key);
        if (bad_key)
            *bad_key = key;
        if (exact < n_allowed) {
            if (seen & (UINT64_C(1) << exact))
                return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                                  "duplicate key '%s'", where);
            seen |= UINT64_C(1) << exact;
            continue;
        }
        if (folded < n_allowed)
            return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                              "unknown key '%s'; keys are case-sensitive: did you mean '%s'?",
                              where, allowed[folded]);
        char list[256];
        size_t used = 0;
        list[0] = 0;
        for (size_t i = 0; i < n_allowed && used < sizeof list; i++) {
            int w = snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "",
                             allowed[i]);
            if (w < 0)
                break;
            used += (size_t)w;
        }
        return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                          "unknown key '%s'; expected one of: %s", where, list);
    }
    if (bad_key)
        *bad_key = NULL;
    return PARO_OK;
}

static int cmp_key(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

paro_err paro_json_check_unique(const paro_json_ctx *cx, const cJSON *obj, const char *path,
                                const char **bad_key)
{
    if (bad_key)
        *bad_key = NULL;
    paro_err rc = paro_json_as_object(cx, obj, path);
    if (rc)
        return rc;
    size_t n = 0;
    for (const cJSON *c = obj->child; c; c = c->next)
        n++;
    if (n < 2)
        return PARO_OK;
    const char **keys = malloc(n * sizeof *keys);
    if (!keys)
        return paro_error(cx->ei, PARO_ERR_NOMEM, cx->file, PARO_NO_OFFSET,
                          "out of memory checking %zu keys", n);
    size_t i = 0;
    for (const cJSON *c = obj->child; c; c = c->next)
        keys[i++] = c->string ? c->string : "";
    qsort(keys, n, sizeof *keys, cmp_key);
    for (i = 1; i < n; i++) {
        if (!strcmp(keys[i - 1], keys[i])) {
            /* Point *bad_key into the tree, not at the array about to go. */
            const cJSON *dup = paro_json_get(obj, keys[i]);
            char where[PARO_JSON_PATH_MAX];
            paro_json_path_key(where, sizeof where, path, keys[i]);
            free(keys);
            if (bad_key)
                *bad_key = dup->string;
            return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                              "duplicate key '%s'", where);
        }
    }
    free(keys);
    return PARO_OK;
}

paro_err paro_json_as_uint(const paro_json_ctx *cx, const cJSON *item, const char *what,
                           uint64_t lo, uint64_t hi, uint64_t *out)
{
    char num[40];
    if (!cJSON_IsNumber(item))
        return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                          "%s is %s; it must be an integer", subject(what),
                          paro_json_type_name(item));
    double v = item->valuedouble;
    if (!isfinite(v) || v != floor(v))
        return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                          "%s is %s; it must be an integer", subject(what),
                          fmt_double(num, sizeof num, v));
    if (v < 0)
        return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                          "%s is %s; it must be a non-negative integer", subject(what),
                          fmt_double(num, sizeof num, v));
    if (v > (double)PARO_JSON_MAX_INT)
        return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                          "%s is %s; integers above 2^53 are not accepted", subject(what),
                          fmt_double(num, sizeof num, v));
    uint64_t u = (uint64_t)v;
    if (u < lo || u > hi) {
        if (hi >= PARO_JSON_MAX_INT)
            return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                              "%s is %llu; it must be >= %llu", subject(what),
                              (unsigned long long)u, (unsigned long long)lo);
        return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                          "%s is %llu; it must be in [%llu, %llu]", subject(what),
                          (unsigned long long)u, (unsigned long long)lo,
                          (unsigned long long)hi);
    }
    *out = u;
    return PARO_OK;
}

paro_err paro_json_as_number(const paro_json_ctx *cx, const cJSON *item, const char *what,
                             double lo, double hi, unsigned flags, double *out)
{
    char num[40], a[40], b[40];
    if (!cJSON_IsNumber(item))
        return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                          "%s is %s; it must be a number", subject(what),
                          paro_json_type_name(item));
    double v = item->valuedouble;
    if (!isfinite(v))
        return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                          "%s is too large to be a finite number", subject(what));
    int lo_open = (flags & PARO_JSON_LO_OPEN) != 0, hi_open = (flags & PARO_JSON_HI_OPEN) != 0;
    int below = lo_open ? !(v > lo) : !(v >= lo);
    int above = hi_open ? !(v < hi) : !(v <= hi);
    if (!below && !above) {
        *out = v;
        return PARO_OK;
    }
    fmt_double(num, sizeof num, v);
    if (!isfinite(hi))
        return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                          "%s is %s; it must be %s %s", subject(what), num,
                          lo_open ? ">" : ">=", fmt_double(a, sizeof a, lo));
    if (!isfinite(lo))
        return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                          "%s is %s; it must be %s %s", subject(what), num,
                          hi_open ? "<" : "<=", fmt_double(b, sizeof b, hi));
    return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                      "%s is %s; it must be in %c%s, %s%c", subject(what), num,
                      lo_open ? '(' : '[', fmt_double(a, sizeof a, lo),
                      fmt_double(b, sizeof b, hi), hi_open ? ')' : ']');
}

paro_err paro_json_as_string(const paro_json_ctx *cx, const cJSON *item, const char *what,
                             const char **out)
{
    if (!cJSON_IsString(item) || !item->valuestring)
        return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                          "%s is %s; it must be a string", subject(what),
                          paro_json_type_name(item));
    *out = item->valuestring;
    return PARO_OK;
}

/* Shared front half of the keyed getters: NULL *item with PARO_OK means an
 * optional key is absent. */
static paro_err lookup(const paro_json_ctx *cx, const cJSON *obj, const char *path,
                       const char *key, paro_json_need need, char *where, size_t size,
                       const cJSON **item, int *found)
{
    paro_json_path_key(where, size, path, key);
    *item = paro_json_get(obj, key);
    if (found)
        *found = *item != NULL;
    if (!*item && need == PARO_JSON_REQUIRED)
        return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset, "missing key '%s'",
                          where);
    return PARO_OK;
}

paro_err paro_json_get_uint(const paro_json_ctx *cx, const cJSON *obj, const char *path,
                            const char *key, paro_json_need need, uint64_t lo, uint64_t hi,
                            uint64_t *out, int *found)
{
    char where[PARO_JSON_PATH_MAX];
    const cJSON *item;
    paro_err rc = lookup(cx, obj, path, key, need, where, sizeof where, &item, found);
    if (rc || !item)
        return rc;
    return paro_json_as_uint(cx, item, where, lo, hi, out);
}

paro_err paro_json_get_number(const paro_json_ctx *cx, const cJSON *obj, const char *path,
                              const char *key, paro_json_need need, double lo, double hi,
                              unsigned flags, double *out, int *found)
{
    char where[PARO_JSON_PATH_MAX];
    const cJSON *item;
    paro_err rc = lookup(cx, obj, path, key, need, where, sizeof where, &item, found);
    if (rc || !item)
        return rc;
    return paro_json_as_number(cx, item, where, lo, hi, flags, out);
}

paro_err paro_json_get_string(const paro_json_ctx *cx, const cJSON *obj, const char *path,
                              const char *key, paro_json_need need, const char **out,
                              int *found)
{
    char where[PARO_JSON_PATH_MAX];
    const cJSON *item;
    paro_err rc = lookup(cx, obj, path, key, need, where, sizeof where, &item, found);
    if (rc || !item)
        return rc;
    return paro_json_as_string(cx, item, where, out);
}

paro_err paro_json_get_bool(const paro_json_ctx *cx, const cJSON *obj, const char *path,
                            const char *key, paro_json_need need, int *out, int *found)
{
    char where[PARO_JSON_PATH_MAX];
    const cJSON *item;
    paro_err rc = lookup(cx, obj, path, key, need, where, sizeof where, &item, found);
    if (rc || !item)
        return rc;
    if (!cJSON_IsBool(item))
        return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                          "%s is %s; it must be true or false", where,
                          paro_json_type_name(item));
    *out = cJSON_IsTrue(item) ? 1 : 0;
    return PARO_OK;
}

paro_err paro_json_get_uint_array(const paro_json_ctx *cx, const cJSON *obj, const char *path,
                                  const char *key, paro_json_need need, size_t min_len,
                                  size_t max_len, uint64_t lo, uint64_t hi, uint64_t *out,
                                  size_t *n, int *found)
{
    char where[PARO_JSON_PATH_MAX], elem[PARO_JSON_PATH_MAX];
    const cJSON *item;
    paro_err rc = lookup(cx, obj, path, key, need, where, sizeof where, &item, found);
    if (rc || !item)
        return rc;
    size_t len;
    rc = paro_json_as_array(cx, item, where, min_len, max_len, &len);
    if (rc)
        return rc;
    size_t i = 0;
    for (const cJSON *c = item->child; c; c = c->next, i++) {
        rc = paro_json_as_uint(cx, c, paro_json_path_index(elem, sizeof elem, where, i), lo, hi,
                               &out[i]);
        if (rc)
            return rc;
    }
    *n = len;
    return PARO_OK;
}

char *paro_json_print_line(const cJSON *item)
{
    char *text = cJSON_Print(item);
    if (!text)
        return NULL;
    size_t n = strlen(text);
    char *out = malloc(n + 2);
    if (out) {
        memcpy(out, text, n);
        out[n] = '\n';
        out[n + 1] = 0;
    }
    cJSON_free(text);
    return out;
}

/* ---- writing ---------------------------------------------------------------- */

void paro_json_fmt_double(double v, char *buf)
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

cJSON *paro_json_double(double v)
{
    char buf[32];
    paro_json_fmt_double(v, buf);
    return cJSON_CreateRaw(buf);
}

cJSON *paro_json_uint(uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
    return cJSON_CreateRaw(buf);
}

cJSON *paro_json_int(int64_t v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    return cJSON_CreateRaw(buf);
}

int paro_json_put(cJSON *to, const char *key, cJSON *item)
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
