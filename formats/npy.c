/* paro — parsing a .npy header (formats/npy.h).
 *
 * numpy reads the dict with ast.literal_eval; paro accepts the subset numpy
 * and hand-written files use: keys and descr as '...' or "..." strings,
 * True/False, and a tuple of decimal integers (a trailing comma allowed, as
 * in "(3,)" and "{..., }"; Python 2's "3L" too).  Everything else is refused
 * with the offset of the byte where it goes wrong.
 */
#include "npy.h"

#include <stdio.h>  /* snprintf */
#include <string.h> /* memcmp, memcpy, strcmp */

typedef struct cursor {
    const unsigned char *p;
    size_t pos, end;
    const char *path;
    uint64_t base; /* file offset of p[0] */
    paro_errinfo *ei;
} cursor;

static paro_err bad(cursor *c, const char *what)
{
    return paro_error(c->ei, PARO_ERR_FORMAT, c->path, c->base + c->pos,
                      "npy header: %s", what);
}

static void skip_ws(cursor *c)
{
    while (c->pos < c->end && (c->p[c->pos] == ' ' || c->p[c->pos] == '\t' ||
                               c->p[c->pos] == '\n' || c->p[c->pos] == '\r'))
        c->pos++;
}

static int take(cursor *c, char ch)
{
    skip_ws(c);
    if (c->pos < c->end && c->p[c->pos] == (unsigned char)ch) {
        c->pos++;
        return 1;
    }
    return 0;
}

/* A quoted string of printable ASCII without escapes, into buf. */
static paro_err read_string(cursor *c, char *buf, size_t size)
{
    skip_ws(c);
    if (c->pos >= c->end || (c->p[c->pos] != '\'' && c->p[c->pos] != '"'))
        return bad(c, "expected a quoted string");
    unsigned char quote = c->p[c->pos++];
    size_t len = 0;
    while (c->pos < c->end && c->p[c->pos] != quote) {
        unsigned char ch = c->p[c->pos];
        if (ch < 0x20 || ch > 0x7e || ch == '\\')
            return bad(c, "string holds a character paro does not read (control, escape "
                          "or non-ASCII)");
        if (len + 1 < size)
            buf[len++] = (char)ch;
        c->pos++;
    }
    if (c->pos >= c->end)
        return bad(c, "string is not closed");
    c->pos++;
    buf[len] = 0;
    return PARO_OK;
}

static int match_word(cursor *c, const char *word)
{
    size_t n = strlen(word);
    skip_ws(c);
    if (c->end - c->pos >= n && !memcmp(c->p + c->pos, word, n)) {
        c->pos += n;
        return 1;
    }
    return 0;
}

static paro_err read_shape(cursor *c, paro_npy_header *h)
{
    if (!take(c, '('))
        return bad(c, "'shape' is not a tuple");
    h->ndim = 0;
    for (;;) {
        if (take(c, ')'))
            return PARO_OK;
        skip_ws(c);
        if (c->pos >= c->end || c->p[c->pos] < '0' || c->p[c->pos] > '9')
            return bad(c, "'shape' holds something other than a non-negative integer");
        uint64_t v = 0;
        while (c->pos < c->end && c->p[c->pos] >= '0' && c->p[c->pos] <= '9') {
            unsigned digit = c->p[c->pos] - '0';
            if (v > (UINT64_MAX - digit) / 10)
                return bad(c, "a dimension of 'shape' does not fit in 64 bits");
            v = v * 10 + digit;
            c->pos++;
        }
        if (c->pos < c->end && c->p[c->pos] == 'L') /* numpy under Python 2 */
            c->pos++;
        if (h->ndim == PARO_NPY_MAX_DIMS)
            return bad(c, "'shape' has more than 8 dimensions");
        h->shape[h->ndim++] = v;
        if (take(c, ')')) {
            /* "(3)" is the integer 3, not a tuple: numpy writes "(3,)". */
            if (h->ndim == 1)
                return bad(c, "'shape' of one dimension must be written \"(n,)\"");
            return PARO_OK;
        }
        if (!take(c, ','))
            return bad(c, "expected ',' or ')' in 'shape'");
    }
}

/* Itemsize and paro dtype of a descr string such as "<f4". */
static void classify_descr(paro_npy_header *h, paro_dtype raw16)
{
    const char *d = h->descr;
    h->dtype = PARO_DTYPE_INVALID;
    h->itemsize = 0;
    size_t n = strlen(d);
    if (n < 3 || !strchr("<>|=", d[0]) || !strchr("biufcVSUmM", d[1]))
        return;
    uint32_t size = 0;
    for (size_t i = 2; i < n; i++) {
        if (d[i] < '0' || d[i] > '9' || size > 100000)
            return;
        size = size * 10 + (uint32_t)(d[i] - '0');
    }
    if (d[1] == 'U')
        size *= 4; /* UCS-4 characters */
    h->itemsize = size;
    if (!strcmp(d, "<f4") || !strcmp(d, "=f4"))
        h->dtype = PARO_DTYPE_F32;
    else if (!strcmp(d, "<f2") || !strcmp(d, "=f2"))
        h->dtype = PARO_DTYPE_F16;
    else if ((!strcmp(d + 1, "u2") || !strcmp(d + 1, "i2") || !strcmp(d + 1, "V2")) &&
             d[0] != '>') /* '<', '=' or '|' */
        h->dtype = raw16;
}

paro_err paro_npy_parse(const unsigned char *buf, size_t avail, paro_dtype raw16,
                        const char *path, uint64_t base_offset, paro_npy_header *out,
                        size_t *need, paro_errinfo *ei)
{
    static const unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
    memset(out, 0, sizeof *out);
    out->dtype = PARO_DTYPE_INVALID;
    *need = 0;
    /* A prefix of the magic may just be short: ask for more. */
    size_t have_magic = avail < sizeof magic ? avail : sizeof magic;
    if (memcmp(buf, magic, have_magic))
        return paro_error(ei, PARO_ERR_FORMAT, path, base_offset,
                          "not a .npy array: it does not start with \"\\x93NUMPY\"");
    if (avail < 8) {
        *need = PARO_NPY_PREFIX;
        return PARO_OK;
    }
    unsigned major = buf[6], minor = buf[7];
    if (major < 1 || major > 3 || minor != 0)
        return paro_error(ei, PARO_ERR_FORMAT, path, base_offset + 6,
                          ".npy format version %u.%u; paro reads 1.0, 2.0 and 3.0", major,
                          minor);
    size_t len_bytes = major == 1 ? 2 : 4;
    if (avail < 8 + len_bytes) {
        *need = 8 + len_bytes;
        return PARO_OK;
    }
    uint64_t dict_len = buf[8] | (uint64_t)buf[9] << 8;
    if (len_bytes == 4)
        dict_len |= (uint64_t)buf[10] << 16 | (uint64_t)buf[11] << 24;
    if (dict_len > PARO_NPY_MAX_HEADER)
        return paro_error(ei, PARO_ERR_LIMIT, path, base_offset + 8,
                          ".npy header length is %llu bytes; paro reads headers of at most %u",
                          (unsigned long long)dict_len, PARO_NPY_MAX_HEADER);
    out->header_bytes = 8 + len_bytes + dict_len;
    if (avail < out->header_bytes) {
        *need = (size_t)out->header_bytes;
        return PARO_OK;
    }

    cursor c = {buf, 8 + len_bytes, (size_t)out->header_bytes, path, base_offset, ei};
    if (!take(&c, '{'))
        return bad(&c, "the header is not a dict");
    int seen_descr = 0, seen_fortran = 0, seen_shape = 0, fortran = 0;
    paro_err rc;
    while (!take(&c, '}')) {
        char key[32];
        size_t key_pos = c.pos;
        if ((rc = read_string(&c, key, sizeof key)))
            return rc;
        if (!take(&c, ':'))
            return bad(&c, "expected ':' after a key");
        int *seen = !strcmp(key, "descr")           ? &seen_descr
                    : !strcmp(key, "fortran_order") ? &seen_fortran
                    : !strcmp(key, "shape")         ? &seen_shape
                                                    : NULL;
        if (!seen || *seen) {
            c.pos = key_pos;
            skip_ws(&c);
            return bad(&c, seen ? "a key appears twice"
                                : "unknown key; a header has 'descr', 'fortran_order' and "
                                  "'shape'");
        }
        *seen = 1;
        if (seen == &seen_descr) {
            skip_ws(&c);
            if (c.pos < c.end && c.p[c.pos] == '[')
                return bad(&c, "structured dtype (a list of fields); paro reads plain arrays");
            if ((rc = read_string(&c, out->descr, sizeof out->descr)))
                return rc;
        } else if (seen == &seen_fortran) {
            if (match_word(&c, "True"))
                fortran = 1;
            else if (!match_word(&c, "False"))
                return bad(&c, "'fortran_order' is not True or False");
        } else if ((rc = read_shape(&c, out))) {
            return rc;
        }
        if (!take(&c, ',')) {
            if (!take(&c, '}'))
                return bad(&c, "expected ',' or '}' in the dict");
            break;
        }
    }
    skip_ws(&c);
    if (c.pos != c.end)
        return bad(&c, "bytes after the dict other than spaces and a newline");
    if (!seen_descr || !seen_fortran || !seen_shape)
        return bad(&c, !seen_descr     ? "no 'descr' key"
                       : !seen_fortran ? "no 'fortran_order' key"
                                       : "no 'shape' key");
    classify_descr(out, raw16);
    if (!out->itemsize)
        return paro_error(ei, PARO_ERR_FORMAT, path, base_offset + 8 + len_bytes,
                          "npy header: descr '%s' is not a plain numeric type", out->descr);
    uint64_t count = 1, multi = 0;
    for (uint32_t i = 0; i < out->ndim; i++) {
        if (out->shape[i] > 1)
            multi++;
        if (out->shape[i] && count > UINT64_MAX / out->shape[i])
            return paro_error(ei, PARO_ERR_LIMIT, path, base_offset + 8 + len_bytes,
                              "npy header: the element count overflows 64 bits");
        count *= out->shape[i];
    }
    if (count > UINT64_MAX / out->itemsize)
        return paro_error(ei, PARO_ERR_LIMIT, path, base_offset + 8 + len_bytes,
                          "npy header: the array's size overflows 64 bits");
    out->data_bytes = count * out->itemsize;
    if (fortran && multi > 1)
        return paro_error(ei, PARO_ERR_FORMAT, path, base_offset + 8 + len_bytes,
                          "the array is stored in Fortran order; paro reads C order (save "
                          "numpy.ascontiguousarray(x) instead)");
    return PARO_OK;
}
