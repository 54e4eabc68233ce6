/* paro — the plan reader: verifies everything PLAN.md requires and rejects
 * everything it forbids, naming the byte offset of the offending field or
 * section.  It never reads outside the buffer and sizes every allocation
 * from what the file can hold before making it.
 *
 * Order of checks (the first failure is reported, so this order decides how
 * precise the message is): header fields, section table entries and
 * coverage (offsets, padding, end of file), the header CRC-32 and the section
 * CRC-32s, section types and their order, the META JSON (syntax, then keys
 * and types, then the rules between values), section lengths against the
 * metadata, and last the contents.
 */
#include "plan.h" /* the API implemented here */
#include "plan_internal.h" /* layout constants, paro_rd*, checks, meta keys */

#include <cjson/cJSON.h> /* cJSON_ParseWithLength, cJSON_Is*, cJSON_Delete */
#include <errno.h>       /* errno */
#include <fcntl.h>       /* open, O_NONBLOCK */
#include <math.h>        /* isfinite, floor */
#include <stdarg.h>      /* va_list */
#include <stdio.h>       /* fdopen, fread, fgetc, ferror, fileno, fclose, vsnprintf, snprintf */
#include <stdlib.h>      /* calloc, malloc, free, qsort, strtod */
#include <string.h>      /* memcmp, memcpy, memset, strcmp, strdup, strlen, strerror */
#include <sys/stat.h>    /* fstat, S_ISREG */
#include <unistd.h>      /* close */
#include <zlib.h>        /* inflate*, crc32_z */

typedef struct in_section {
    uint32_t type, flags, codec, crc, index;
    uint64_t offset, stored, raw;
    uint64_t entry; /* byte offset of the table entry */
} in_section;

typedef struct reader {
    const uint8_t *buf;
    size_t len;
    const char *name;
    paro_errinfo *ei;
    uint16_t major, minor;
    uint32_t header_size, n_sec, entry_size;
    uint64_t table_end;
    in_section *sec;
    int lenient; /* the file's minor version is newer than ours */
} reader;

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static paro_err fail(reader *r, paro_err code, uint64_t off, const char *fmt, ...)
{
    char msg[sizeof r->ei->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return paro_error(r->ei, code, r->name, off, "%s", msg);
}
#define FMT PARO_ERR_FORMAT

static uint64_t align64(uint64_t x)
{
    return (x + (PARO_PLAN_ALIGN - 1)) & ~(uint64_t)(PARO_PLAN_ALIGN - 1);
}

static const char *sec_name(uint32_t type)
{
    const char *n = paro_plan_section_name(type);
    return n ? n : "unknown";
}

/* ---- header ---- */

static paro_err read_header(reader *r)
{
    const uint8_t *b = r->buf;
    if (r->len == 0)
        return fail(r, FMT, 0, "file is empty");
    if (r->len < 8 || memcmp(b, paro_plan_magic, 8) != 0) {
        if (r->len < 8 && memcmp(b, paro_plan_magic, r->len) == 0)
            return fail(r, FMT, r->len, "file is truncated: %zu bytes, shorter than the header",
                        r->len);
        if (r->len >= 4 && (b[0] & 0x7f) == 0x17 && memcmp(b + 1, "PAR", 3) == 0)
            return fail(r, FMT, 0,
                        "bad magic: the file was damaged by a text-mode transfer "
                        "(newline or 7-bit conversion)");
        return fail(r, FMT, 0, "not a paro plan (bad magic)");
    }
    if (r->len < PARO_PLAN_HEADER_SIZE)
        return fail(r, FMT, r->len, "file is truncated: %zu bytes, shorter than the %u-byte header",
                    r->len, PARO_PLAN_HEADER_SIZE);
    r->major = paro_rd16(b + PARO_H_MAJOR);
    r->minor = paro_rd16(b + PARO_H_MINOR);
    if (r->major != PARO_PLAN_MAJOR) {
        if (r->major != 0 && (r->major & 0xff) == 0)
            return fail(r, FMT, PARO_H_MAJOR,
                        "version %u.%u: byte-swapped file? plans are little-endian", r->major,
                        r->minor);
        return fail(r, FMT, PARO_H_MAJOR,
                    "unsupported plan version %u.%u: this reader reads version %d.x", r->major,
                    r->minor, PARO_PLAN_MAJOR);
    }
    r->lenient = r->minor > PARO_PLAN_MINOR;
    r->header_size = paro_rd32(b + PARO_H_HEADER_SIZE);
    if (r->header_size < PARO_PLAN_HEADER_SIZE || r->header_size > PARO_PLAN_MAX_HEADER_SIZE)
        return fail(r, FMT, PARO_H_HEADER_SIZE, "header_size %u is not in [%u, %u]",
                    r->header_size, PARO_PLAN_HEADER_SIZE, PARO_PLAN_MAX_HEADER_SIZE);
    r->n_sec = paro_rd32(b + PARO_H_NSECTIONS);
    if (r->n_sec > PARO_PLAN_MAX_SECTIONS)
        return fail(r, PARO_ERR_LIMIT, PARO_H_NSECTIONS,
                    "%u sections exceed the limit of %u", r->n_sec, PARO_PLAN_MAX_SECTIONS);
    r->entry_size = paro_rd32(b + PARO_H_ENTRY_SIZE);
    if (r->entry_size < PARO_PLAN_ENTRY_SIZE || r->entry_size > PARO_PLAN_MAX_HEADER_SIZE)
        return fail(r, FMT, PARO_H_ENTRY_SIZE, "section_entry_size %u is not in [%u, %u]",
                    r->entry_size, PARO_PLAN_ENTRY_SIZE, PARO_PLAN_MAX_HEADER_SIZE);
    uint64_t table = paro_rd64(b + PARO_H_TABLE_OFFSET);
    if (table != r->header_size)
        return fail(r, FMT, PARO_H_TABLE_OFFSET,
                    "section_table_offset %llu differs from header_size %u",
                    (unsigned long long)table, r->header_size);
    uint64_t fsize = paro_rd64(b + PARO_H_FILE_SIZE);
    if (fsize > r->len)
        return fail(r, FMT, r->len, "file is truncated: the header says %llu bytes, found %zu",
                    (unsigned long long)fsize, r->len);
    if (fsize < r->len)
        return fail(r, FMT, fsize, "%llu trailing bytes after the %llu bytes the header declares",
                    (unsigned long long)(r->len - fsize), (unsigned long long)fsize);
    /* both factors are at most 2^16, so no overflow */
    r->table_end = table + (uint64_t)r->n_sec * r->entry_size;
    if (r->header_size > r->len || r->table_end > r->len)
        return fail(r, FMT, table, "section table (%u entries of %u bytes) runs past the end of "
                    "the file", r->n_sec, r->entry_size);
    uint32_t stored = paro_rd32(b + PARO_H_CRC);
    static const uint8_t zero4[4] = {0, 0, 0, 0};
    uLong crc = crc32_z(0, b, PARO_H_CRC);
    crc = crc32_z(crc, zero4, 4);
    crc = crc32_z(crc, b + PARO_H_CRC + 4, (z_size_t)(r->table_end - (PARO_H_CRC + 4)));
    if ((uint32_t)crc != stored)
        return fail(r, FMT, PARO_H_CRC,
                    "header checksum mismatch: stored %08x, computed %08x",
                    (unsigned)stored, (unsigned)crc);
    for (uint32_t i = PARO_H_RESERVED; i < PARO_PLAN_HEADER_SIZE; i++)
        if (b[i])
            return fail(r, FMT, i, "reserved header byte is 0x%02x, must be 0", b[i]);
    uint32_t req = paro_rd32(b + PARO_H_REQUIRED);
    if (req) {
        int bit = 0;
        while (!(req >> bit & 1))
            bit++;
        return fail(r, FMT, PARO_H_REQUIRED,
                    "requires feature bit %d which this reader does not know", bit);
    }
    return PARO_OK;
}

/* ---- section table and coverage ---- */

static paro_err check_zero(reader *r, uint64_t from, uint64_t to, const char *what)
{
    for (uint64_t i = from; i < to; i++)
        if (r->buf[i])
            return fail(r, FMT, i, "padding byte %s is 0x%02x, must be 0", what, r->buf[i]);
    return PARO_OK;
}

static paro_err read_table(reader *r)
{
    if (r->n_sec) {
        r->sec = calloc(r->n_sec, sizeof *r->sec);
        if (!r->sec)
            return fail(r, PARO_ERR_NOMEM, PARO_NO_OFFSET, "out of memory");
    }
    uint64_t end = r->table_end; /* end of what precedes the next section */
    for (uint32_t i = 0; i < r->n_sec; i++) {
        in_section *s = &r->sec[i];
        const uint64_t e = (uint64_t)r->header_size + (uint64_t)i * r->entry_size;
        const uint8_t *b = r->buf + e;
        s->entry = e;
        s->type = paro_rd32(b + PARO_E_TYPE);
        s->flags = paro_rd32(b + PARO_E_FLAGS);
        s->offset = paro_rd64(b + PARO_E_OFFSET);
        s->stored = paro_rd64(b + PARO_E_STORED);
        s->raw = paro_rd64(b + PARO_E_RAW);
        s->codec = paro_rd32(b + PARO_E_CODEC);
        s->crc = paro_rd32(b + PARO_E_CRC);
        s->index = paro_rd32(b + PARO_E_INDEX);
        if (paro_rd32(b + PARO_E_RESERVED))
            return fail(r, FMT, e + PARO_E_RESERVED, "section %u: reserved field is not 0", i);
        if (s->flags & ~PARO_SEC_FLAG_REQUIRED)
            return fail(r, FMT, e + PARO_E_FLAGS, "section %u: unknown flag bits 0x%x", i,
                        s->flags & ~PARO_SEC_FLAG_REQUIRED);
        if (s->offset % PARO_PLAN_ALIGN)
            return fail(r, FMT, e + PARO_E_OFFSET,
                        "section %u: offset %llu is not a multiple of %u", i,
                        (unsigned long long)s->offset, PARO_PLAN_ALIGN);
        uint64_t want = align64(end);
        if (s->offset < want)
            return fail(r, FMT, e + PARO_E_OFFSET,
                        "section %u at byte %llu overlaps the %s, which ends at byte %llu", i,
                        (unsigned long long)s->offset, i ? "previous section" : "section table",
                        (unsigned long long)end);
        if (s->offset > want)
            return fail(r, FMT, e + PARO_E_OFFSET,
                        "section %u starts at byte %llu, but must start at %llu (sections are "
                        "contiguous, each at the next multiple of %u)",
                        i, (unsigned long long)s->offset, (unsigned long long)want,
                        PARO_PLAN_ALIGN);
        if (s->offset > r->len)
            return fail(r, FMT, e + PARO_E_OFFSET, "section %u starts past the end of the file",
                        i);
        paro_err err = check_zero(r, end, s->offset, "before a section");
        if (err)
            return err;
        if (s->stored > r->len - s->offset)
            return fail(r, FMT, e + PARO_E_STORED,
                        "section %u (%llu bytes at byte %llu) runs past the end of the file", i,
                        (unsigned long long)s->stored, (unsigned long long)s->offset);
        end = s->offset + s->stored;
        if (s->codec == PARO_CODEC_NONE && s->stored != s->raw)
            return fail(r, FMT, e + PARO_E_RAW,
                        "section %u is not compressed, but its raw_len %llu differs from "
                        "stored_len %llu",
                        i, (unsigned long long)s->raw, (unsigned long long)s->stored);
        uint64_t most;
        if (s->codec == PARO_CODEC_ZLIB &&
            (!paro_mul_ok(s->stored, PARO_PLAN_ZLIB_MAX_RATIO, &most) || s->raw > most))
            return fail(r, FMT, e + PARO_E_RAW,
                        "section %u: raw_len %llu is more than zlib can inflate from %llu bytes",
                        i, (unsigned long long)s->raw, (unsigned long long)s->stored);
    }
    if (end != r->len)
        return fail(r, FMT, end, "the %s ends at byte %llu, but the file is %zu bytes",
                    r->n_sec ? "last section" : "section table", (unsigned long long)end,
                    r->len);
    for (uint32_t i = 0; i < r->n_sec; i++) {
        const in_section *s = &r->sec[i];
        uint32_t c = (uint32_t)crc32_z(0, r->buf + s->offset, (z_size_t)s->stored);
        if (c != s->crc)
            return fail(r, FMT, s->offset,
                        "section %u (%s) checksum mismatch: stored %08x, computed %08x", i,
                        sec_name(s->type), (unsigned)s->crc, (unsigned)c);
    }
    return PARO_OK;
}

/* Section types, flags, codecs, indices and their order. */
static paro_err check_types(reader *r, int *meta_at)
{
    uint32_t last = 0, last_index = 0;
    int seen[PARO_SEC_KNOWN_MAX + 1] = {0};
    for (uint32_t i = 0; i < r->n_sec; i++) {
        const in_section *s = &r->sec[i];
        const uint64_t e = s->entry;
        if (s->type < 1 || s->type > PARO_SEC_KNOWN_MAX) {
            if (s->flags & PARO_SEC_FLAG_REQUIRED)
                return fail(r, FMT, e + PARO_E_TYPE,
                            "section %u has type %u, which this reader does not know, and is "
                            "marked required (a newer reader is needed)",
                            i, s->type);
            continue; /* optional and unknown: skipped */
        }
        const char *nm = sec_name(s->type);
        const uint32_t want_req =
            s->type == PARO_SEC_PERM || s->type == PARO_SEC_TILEMASS ? 0 : PARO_SEC_FLAG_REQUIRED;
        if ((s->flags & PARO_SEC_FLAG_REQUIRED) != want_req)
            return fail(r, FMT, e + PARO_E_FLAGS, "section %u (%s) must %shave the required flag",
                        i, nm, want_req ? "" : "not ");
        if (s->codec != PARO_CODEC_NONE &&
            (s->codec != PARO_CODEC_ZLIB || s->type == PARO_SEC_META))
            return fail(r, FMT, e + PARO_E_CODEC, "section %u (%s): codec %u is not allowed", i,
                        nm, s->codec);
        if (s->type < PARO_SEC_PERM && s->index != 0)
            return fail(r, FMT, e + PARO_E_INDEX, "section %u (%s): index must be 0, not %u", i,
                        nm, s->index);
        if (s->type < last)
            return fail(r, FMT, e + PARO_E_TYPE,
                        "section %u (%s) is out of order: it must come before %s", i, nm,
                        sec_name(last));
        if (s->type == last && s->type < PARO_SEC_PERM)
            return fail(r, FMT, e + PARO_E_TYPE, "section %u is a second %s section", i, nm);
        if (s->type == last && s->index <= last_index)
            return fail(r, FMT, e + PARO_E_INDEX,
                        "section %u (%s): index %u after %u (indices must increase)", i, nm,
                        s->index, last_index);
        if (s->type == PARO_SEC_META)
            *meta_at = (int)i;
        last = s->type;
        last_index = s->index;
        seen[s->type] = 1;
    }
    for (uint32_t t = PARO_SEC_META; t <= PARO_SEC_RECALL; t++)
        if (!seen[t])
            return fail(r, FMT, r->header_size, "the plan has no %s section", sec_name(t));
    return PARO_OK;
}

/* ---- strict JSON syntax (RFC 8259) with UTF-8 validation; cJSON is more
 * lenient (leading zeros, raw control characters, invalid UTF-8), so the
 * text is checked here first and only then handed to cJSON ---- */

#define MAX_KEY_OFFSETS 256
typedef struct jscan {
    const uint8_t *s;
    size_t n, i;
    int depth;
    const char *err;
    size_t nkeys;
    size_t keyoff[MAX_KEY_OFFSETS]; /* positions of the top-level keys */
} jscan;

static int js_fail(jscan *j, const char *msg)
{
    if (!j->err)
        j->err = msg;
    return -1;
}

static void js_ws(jscan *j)
{
    while (j->i < j->n &&
           (j->s[j->i] == ' ' || j->s[j->i] == '\t' || j->s[j->i] == '\n' || j->s[j->i] == '\r'))
        j->i++;
}

static int js_hex4(jscan *j, uint32_t *u)
{
    if (j->n - j->i < 4)
        return -1;
    *u = 0;
    for (int k = 0; k < 4; k++) {
        uint8_t c = j->s[j->i + k];
        int v = c >= '0' && c <= '9' ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (v < 0)
            return -1;
        *u = *u << 4 | (uint32_t)v;
    }
    j->i += 4;
    return 0;
}

static int js_string(jscan *j)
{
    j->i++; /* opening quote */
    for (;;) {
        if (j->i >= j->n)
            return js_fail(j, "unterminated string");
        uint8_t c = j->s[j->i];
        if (c == '"') {
            j->i++;
            return 0;
        }
        if (c < 0x20)
            return js_fail(j, "control character in a string");
        if (c != '\\') {
            size_t len = paro_plan_utf8_char(j->s + j->i, j->n - j->i);
            if (!len)
                return js_fail(j, "invalid utf-8");
            j->i += len;
            continue;
        }
        if (++j->i >= j->n)
            return js_fail(j, "unterminated string");
        c = j->s[j->i];
        if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' ||
            c == 't') {
            j->i++;
            continue;
        }
        if (c != 'u')
            return js_fail(j, "bad escape in a string");
        j->i++;
        uint32_t u, lo;
        if (js_hex4(j, &u) < 0)
            return js_fail(j, "bad \\u escape");
        if (u == 0)
            return js_fail(j, "\\u0000 in a string");
        if (u >= 0xdc00 && u <= 0xdfff)
            return js_fail(j, "unpaired surrogate in a \\u escape");
        if (u >= 0xd800 && u <= 0xdbff) {
            if (j->n - j->i < 2 || j->s[j->i] != '\\' || j->s[j->i + 1] != 'u')
                return js_fail(j, "unpaired surrogate in a \\u escape");
            j->i += 2;
            if (js_hex4(j, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
                return js_fail(j, "unpaired surrogate in a \\u escape");
        }
    }
}

static int js_digits(jscan *j)
{
    size_t st = j->i;
    while (j->i < j->n && j->s[j->i] >= '0' && j->s[j->i] <= '9')
        j->i++;
    return j->i > st ? 0 : -1;
}

static int js_number(jscan *j)
{
    size_t st = j->i;
    if (j->s[j->i] == '-')
        j->i++;
    if (j->i < j->n && j->s[j->i] == '0')
        j->i++;
    else if (js_digits(j) < 0)
        return js_fail(j, "bad number");
    if (j->i < j->n && j->s[j->i] == '.') {
        j->i++;
        if (js_digits(j) < 0)
            return js_fail(j, "bad number");
    }
    if (j->i < j->n && (j->s[j->i] == 'e' || j->s[j->i] == 'E')) {
        j->i++;
        if (j->i < j->n && (j->s[j->i] == '+' || j->s[j->i] == '-'))
            j->i++;
        if (js_digits(j) < 0)
            return js_fail(j, "bad number");
    }
    if (j->i - st > 63) {
        j->i = st;
        return js_fail(j, "number longer than 63 characters");
    }
    char tok[64];
    memcpy(tok, j->s + st, j->i - st);
    tok[j->i - st] = 0;
    if (!isfinite(strtod(tok, NULL))) {
        j->i = st;
        return js_fail(j, "number out of the range of a binary64");
    }
    return 0;
}

static int js_value(jscan *j);

static int js_container(jscan *j, int object)
{
    if (++j->depth > PARO_PLAN_MAX_JSON_DEPTH)
        return js_fail(j, "nested deeper than 32 levels");
    const uint8_t close = object ? '}' : ']';
    j->i++;
    js_ws(j);
    if (j->i < j->n && j->s[j->i] == close) {
        j->i++;
        j->depth--;
        return 0;
    }
    for (;;) {
        js_ws(j);
        if (object) {
            if (j->i >= j->n || j->s[j->i] != '"')
                return js_fail(j, "expected a key string");
            if (j->depth == 1 && j->nkeys < MAX_KEY_OFFSETS)
                j->keyoff[j->nkeys] = j->i;
            if (j->depth == 1)
                j->nkeys++;
            if (js_string(j) < 0)
                return -1;
            js_ws(j);
            if (j->i >= j->n || j->s[j->i] != ':')
                return js_fail(j, "expected ':'");
            j->i++;
        }
        if (js_value(j) < 0)
            return -1;
        js_ws(j);
        if (j->i < j->n && j->s[j->i] == ',') {
            j->i++;
            continue;
        }
        if (j->i < j->n && j->s[j->i] == close) {
            j->i++;
            j->depth--;
            return 0;
        }
        return js_fail(j, object ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static int js_literal(jscan *j, const char *lit)
{
    size_t n = strlen(lit);
    if (j->n - j->i < n || memcmp(j->s + j->i, lit, n) != 0)
        return js_fail(j, "unexpected character");
    j->i += n;
    return 0;
}

static int js_value(jscan *j)
{
    js_ws(j);
    if (j->i >= j->n)
        return js_fail(j, "unexpected end of the json text");
    uint8_t c = j->s[j->i];
    switch (c) {
    case '{': return js_container(j, 1);
    case '[': return js_container(j, 0);
    case '"': return js_string(j);
    case 't': return js_literal(j, "true");
    case 'f': return js_literal(j, "false");
    case 'n': return js_literal(j, "null");
    default:
        if (c == '-' || (c >= '0' && c <= '9'))
            return js_number(j);
        return js_fail(j, "unexpected character");
    }
}

/* ---- META: keys and types ---- */

typedef struct meta_ctx {
    reader *r;
    uint64_t off;                  /* the META section */
    uint64_t keyoff[PARO_K_COUNT]; /* each known key, in the file */
    const cJSON *item[PARO_K_COUNT];
} meta_ctx;

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static paro_err mfail(meta_ctx *m, paro_err code, int key, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return fail(m->r, code, key >= 0 ? m->keyoff[key] : m->off, "metadata: %s", msg);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A key that occurs twice in object obj itself, NULL when none (or when out
 * of memory: *oom is set). */
static const char *dup_here(const cJSON *obj, int *oom)
{
    size_t n = 0;
    for (const cJSON *c = obj->child; c; c = c->next)
        n++;
    if (n <= 16) {
        for (const cJSON *a = obj->child; a; a = a->next)
            for (const cJSON *b = a->next; b; b = b->next)
                if (strcmp(a->string, b->string) == 0)
                    return b->string;
        return NULL;
    }
    const char **keys = malloc(n * sizeof *keys);
    if (!keys) {
        *oom = 1;
        return NULL;
    }
    size_t i = 0;
    for (const cJSON *c = obj->child; c; c = c->next)
        keys[i++] = c->string;
    qsort(keys, n, sizeof *keys, cmp_str);
    const char *d = NULL;
    for (i = 1; i < n && !d; i++)
        if (strcmp(keys[i - 1], keys[i]) == 0)
            d = keys[i];
    free(keys);
    return d;
}

/* 1 when an earlier member of obj has the same key as c. */
static int dup_pos_second(const cJSON *obj, const cJSON *c)
{
    for (const cJSON *o = obj->child; o != c; o = o->next)
        if (strcmp(o->string, c->string) == 0)
            return 1;
    return 0;
}

/* A key that occurs twice in some object at or below node. */
static const char *find_dup(const cJSON *node, int *oom)
{
    const char *d = NULL;
    if (cJSON_IsObject(node) && (d = dup_here(node, oom)) != NULL)
        return d;
    if (cJSON_IsObject(node) || cJSON_IsArray(node))
        for (const cJSON *c = node->child; c && !*oom; c = c->next)
            if ((d = find_dup(c, oom)) != NULL)
                return d;
    return NULL;
}

/* Rejects members of obj not in known[] (unless the file is newer). */
static paro_err only_keys(meta_ctx *m, int key, const cJSON *obj, const char *what,
                          const char *const *known, int n_known, const char *optional)
{
    for (const cJSON *c = obj->child; c; c = c->next) {
        int k = 0;
        while (k < n_known && strcmp(c->string, known[k]) != 0)
            k++;
        if (k == n_known && !m->r->lenient)
            return mfail(m, FMT, key, "unknown key \"%s\" in %s", c->string, what);
    }
    for (int k = 0; k < n_known; k++) {
        const cJSON *c = obj->child;
        while (c && strcmp(c->string, known[k]) != 0)
            c = c->next;
        if (!c && !(optional && strcmp(known[k], optional) == 0))
            return mfail(m, FMT, key, "%s lacks the key \"%s\"", what, known[k]);
    }
    return PARO_OK;
}

static const cJSON *member(const cJSON *obj, const char *key)
{
    for (const cJSON *c = obj->child; c; c = c->next)
        if (strcmp(c->string, key) == 0)
            return c;
    return NULL;
}

static size_t count(const cJSON *a)
{
    size_t n = 0;
    for (const cJSON *c = a->child; c; c = c->next)
        n++;
    return n;
}

/* An integer in [lo, hi] (both within +-2^53). */
static int get_int(const cJSON *v, double lo, double hi, double *out)
{
    if (!cJSON_IsNumber(v))
        return -1;
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d) || d < lo || d > hi)
        return -1;
    *out = d;
    return 0;
}

static int get_u32(const cJSON *v, uint32_t *out)
{
    double d;
    if (get_int(v, 0, UINT32_MAX, &d) < 0)
        return -1;
    *out = (uint32_t)d;
    return 0;
}

static int get_num(const cJSON *v, double *out)
{
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return -1;
    *out = v->valuedouble;
    return 0;
}

static int get_u32_array(const cJSON *v, uint32_t *out, size_t n)
{
    if (!cJSON_IsArray(v) || count(v) != n)
        return -1;
    size_t i = 0;
    for (const cJSON *c = v->child; c; c = c->next)
        if (get_u32(c, &out[i++]) < 0)
            return -1;
    return 0;
}

static paro_err meta_orders(meta_ctx *m, paro_plan *p)
{
    const int K = PARO_K_ORDERS;
    const cJSON *a = m->item[K];
    if (!cJSON_IsArray(a))
        return mfail(m, FMT, K, "\"orders\" must be an array");
    size_t n = count(a);
    if (n > PARO_PLAN_MAX_ORDERS)
        return mfail(m, PARO_ERR_LIMIT, K, "%zu orders exceed the limit of %u", n,
                     PARO_PLAN_MAX_ORDERS);
    p->n_orders = (uint32_t)n;
    p->orders = calloc(n ? n : 1, sizeof *p->orders);
    if (!p->orders)
        return fail(m->r, PARO_ERR_NOMEM, PARO_NO_OFFSET, "out of memory");
    static const char *const keys[] = {"kind", "name"};
    uint32_t o = 0;
    for (const cJSON *e = a->child; e; e = e->next, o++) {
        if (!cJSON_IsObject(e))
            return mfail(m, FMT, K, "order %u is not an object", o);
        paro_err err = only_keys(m, K, e, "an order", keys, 2, NULL);
        if (err)
            return err;
        const cJSON *kind = member(e, "kind"), *name = member(e, "name");
        if (!cJSON_IsString(kind) || !cJSON_IsString(name))
            return mfail(m, FMT, K, "order %u: \"kind\" and \"name\" must be strings", o);
        if (strcmp(kind->valuestring, "axes") != 0)
            return mfail(m, FMT, K,
                         "order %u has kind \"%.40s\", but version %d.%d knows only \"axes\"", o,
                         kind->valuestring, PARO_PLAN_MAJOR, PARO_PLAN_MINOR);
        if (!paro_plan_axes_name_ok(name->valuestring))
            return mfail(m, FMT, K,
                         "order %u: name \"%.40s\" is not one of FHW FWH HFW HWF WFH WHF", o,
                         name->valuestring);
        memcpy(p->orders[o].kind, "axes", 5);
        memcpy(p->orders[o].name, name->valuestring, 4);
    }
    return PARO_OK;
}

static paro_err meta_buckets(meta_ctx *m, paro_plan *p)
{
    const int K = PARO_K_BUCKETS;
    const cJSON *o = m->item[K];
    static const char *const keys[] = {"count", "edges", "dense_until"};
    if (!cJSON_IsObject(o))
        return mfail(m, FMT, K, "\"buckets\" must be an object");
    paro_err err = only_keys(m, K, o, "\"buckets\"", keys, 3, NULL);
    if (err)
        return err;
    if (get_u32(member(o, "count"), &p->n_buckets) < 0 || p->n_buckets < 1)
        return mfail(m, FMT, K, "buckets \"count\" must be an integer >= 1");
    if (p->n_buckets > PARO_PLAN_MAX_BUCKETS)
        return mfail(m, PARO_ERR_LIMIT, K, "%u buckets exceed the limit of %u", p->n_buckets,
                     PARO_PLAN_MAX_BUCKETS);
    const cJSON *edges = member(o, "edges");
    if (!cJSON_IsArray(edges) || count(edges) != (size_t)p->n_buckets + 1)
        return mfail(m, FMT, K, "buckets \"edges\" must be an array of count + 1 = %u numbers",
                     p->n_buckets + 1);
    uint32_t i = 0;
    for (const cJSON *c = edges->child; c; c = c->next, i++) {
        double want = (double)i / p->n_buckets, got;
        if (get_num(c, &got) < 0 || got != want)
            return mfail(m, FMT, K, "buckets \"edges\"[%u] must be %u/%u", i, i, p->n_buckets);
    }
    if (get_num(member(o, "dense_until"), &p->dense_until) < 0)
        return mfail(m, FMT, K, "buckets \"dense_until\" must be a number");
    return PARO_OK;
}

static paro_err meta_samples(meta_ctx *m, paro_plan *p)
{
    const int K = PARO_K_SAMPLES;
    const cJSON *a = m->item[K];
    if (!cJSON_IsArray(a))
        return mfail(m, FMT, K, "\"samples\" must be an array");
    size_t n = count(a);
    p->n_samples = n;
    p->samples = calloc(n ? n : 1, sizeof *p->samples);
    if (!p->samples)
        return fail(m->r, PARO_ERR_NOMEM, PARO_NO_OFFSET, "out of memory");
    static const char *const keys[] = {"index", "prompt", "timestep", "step", "bucket"};
    size_t i = 0;
    for (const cJSON *e = a->child; e; e = e->next, i++) {
        paro_plan_sample *s = &p->samples[i];
        if (!cJSON_IsObject(e))
            return mfail(m, FMT, K, "sample %zu is not an object", i);
        paro_err err = only_keys(m, K, e, "a sample", keys, 5, "step");
        if (err)
            return err;
        double d;
        if (get_u32(member(e, "index"), &s->index) < 0)
            return mfail(m, FMT, K, "sample %zu: \"index\" must be an integer in [0, 2^32)", i);
        if (get_int(member(e, "prompt"), -PARO_PLAN_MAX_JSON_INT, PARO_PLAN_MAX_JSON_INT, &d) < 0)
            return mfail(m, FMT, K, "sample %zu: \"prompt\" must be an integer within +-2^53", i);
        s->prompt = (int64_t)d;
        if (get_num(member(e, "timestep"), &s->timestep) < 0)
            return mfail(m, FMT, K, "sample %zu: \"timestep\" must be a number", i);
        const cJSON *step = member(e, "step");
        s->step = -1;
        if (step) {
            if (get_int(step, 0, PARO_PLAN_MAX_JSON_INT, &d) < 0)
                return mfail(m, FMT, K, "sample %zu: \"step\" must be an integer in [0, 2^53]",
                             i);
            s->step = (int64_t)d;
        }
        if (get_u32(member(e, "bucket"), &s->bucket) < 0)
            return mfail(m, FMT, K, "sample %zu: \"bucket\" must be an integer >= 0", i);
    }
    return PARO_OK;
}

static int hex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static paro_err meta_inputs(meta_ctx *m, paro_plan *p)
{
    const int K = PARO_K_INPUTS;
    const cJSON *o = m->item[K];
    static const char *const keys[] = {"layer_crc32"};
    if (!cJSON_IsObject(o))
        return mfail(m, FMT, K, "\"inputs\" must be an object");
    paro_err err = only_keys(m, K, o, "\"inputs\"", keys, 1, NULL);
    if (err)
        return err;
    const cJSON *a = member(o, "layer_crc32");
    if (!cJSON_IsArray(a) || count(a) != p->n_layers)
        return mfail(m, FMT, K, "inputs \"layer_crc32\" must be an array of %u strings (one per "
                     "layer)", p->n_layers);
    p->layer_crc32 = calloc(p->n_layers ? p->n_layers : 1, sizeof *p->layer_crc32);
    if (!p->layer_crc32)
        return fail(m->r, PARO_ERR_NOMEM, PARO_NO_OFFSET, "out of memory");
    uint32_t l = 0;
    for (const cJSON *c = a->child; c; c = c->next, l++) {
        const char *s = cJSON_IsString(c) ? c->valuestring : "";
        uint32_t v = 0;
        int ok = strlen(s) == 8;
        for (int k = 0; ok && k < 8; k++) {
            int d = hex_digit(s[k]);
            ok = d >= 0;
            v = v << 4 | (uint32_t)(d & 15);
        }
        if (!ok)
            return mfail(m, FMT, K,
                         "inputs \"layer_crc32\"[%u] must be 8 lowercase hex digits", l);
        p->layer_crc32[l] = v;
    }
    return PARO_OK;
}

/* Decodes the META keys into p (strings, arrays, numbers), type by type. */
static paro_err meta_decode(meta_ctx *m, paro_plan *p)
{
    const cJSON *const *it = m->item;
    for (int k = PARO_K_TOOL; k <= PARO_K_BACKEND; k++)
        if (!cJSON_IsString(it[k]))
            return mfail(m, FMT, k, "\"%s\" must be a string", paro_plan_meta_keys[k]);
    if (!(p->tool = strdup(it[PARO_K_TOOL]->valuestring)) ||
        !(p->model = strdup(it[PARO_K_MODEL]->valuestring)) ||
        !(p->backend = strdup(it[PARO_K_BACKEND]->valuestring)))
        return fail(m->r, PARO_ERR_NOMEM, PARO_NO_OFFSET, "out of memory");
    if (get_u32_array(it[PARO_K_GRID], p->grid, 3) < 0)
        return mfail(m, FMT, PARO_K_GRID, "\"grid\" must be an array of 3 integers [F, H, W]");
    if (get_u32(it[PARO_K_TEXT_TOKENS], &p->text_tokens) < 0)
        return mfail(m, FMT, PARO_K_TEXT_TOKENS, "\"text_tokens\" must be an integer >= 0");
    const cJSON *tp = it[PARO_K_TEXT_POSITION];
    if (!cJSON_IsString(tp) ||
        (strcmp(tp->valuestring, "first") != 0 && strcmp(tp->valuestring, "last") != 0))
        return mfail(m, FMT, PARO_K_TEXT_POSITION,
                     "\"text_position\" must be \"first\" or \"last\"");
    p->text_last = strcmp(tp->valuestring, "last") == 0;
    static const int u32_keys[] = {PARO_K_TOKENS, PARO_K_HEADS, PARO_K_HEAD_DIM,
                                   PARO_K_MODEL_LAYERS};
    uint32_t *const u32_dst[] = {&p->n_tokens, &p->heads, &p->head_dim, &p->model_layers};
    for (int i = 0; i < 4; i++)
        if (get_u32(it[u32_keys[i]], u32_dst[i]) < 0)
            return mfail(m, FMT, u32_keys[i], "\"%s\" must be an integer in [0, 2^32)",
                         paro_plan_meta_keys[u32_keys[i]]);
    if (get_num(it[PARO_K_SCALE], &p->scale) < 0)
        return mfail(m, FMT, PARO_K_SCALE, "\"scale\" must be a number");
    const cJSON *layers = it[PARO_K_LAYERS];
    if (!cJSON_IsArray(layers))
        return mfail(m, FMT, PARO_K_LAYERS, "\"layers\" must be an array of integers");
    size_t nl = count(layers);
    if (nl > UINT32_MAX)
        return mfail(m, PARO_ERR_LIMIT, PARO_K_LAYERS, "too many layers");
    if (nl == 0)
        return mfail(m, FMT, PARO_K_LAYERS, "\"layers\" must not be empty");
    p->n_layers = (uint32_t)nl;
    p->layers = calloc(nl ? nl : 1, sizeof *p->layers);
    if (!p->layers)
        return fail(m->r, PARO_ERR_NOMEM, PARO_NO_OFFSET, "out of memory");
    if (get_u32_array(layers, p->layers, nl) < 0)
        return mfail(m, FMT, PARO_K_LAYERS, "\"layers\" must be an array of integers");
    uint32_t bl[2];
    if (get_u32_array(it[PARO_K_BLOCK], bl, 2) < 0)
        return mfail(m, FMT, PARO_K_BLOCK, "\"block\" must be an array of 2 integers [Bq, Bk]");
    p->block_q = bl[0];
    p->block_k = bl[1];
    if (get_u32_array(it[PARO_K_BLOCKS], bl, 2) < 0)
        return mfail(m, FMT, PARO_K_BLOCKS, "\"blocks\" must be an array of 2 integers [nq, nk]");
    p->nq = bl[0];
    p->nk = bl[1];
    paro_err err = meta_orders(m, p);
    if (err)
        return err;

    const cJSON *metric = it[PARO_K_METRIC];
    static const char *const metric_keys[] = {"alpha", "score_recall"};
    if (!cJSON_IsObject(metric))
        return mfail(m, FMT, PARO_K_METRIC, "\"metric\" must be an object");
    if ((err = only_keys(m, PARO_K_METRIC, metric, "\"metric\"", metric_keys, 2, NULL)))
        return err;
    if (get_num(member(metric, "alpha"), &p->alpha) < 0 ||
        get_num(member(metric, "score_recall"), &p->score_recall) < 0)
        return mfail(m, FMT, PARO_K_METRIC,
                     "metric \"alpha\" and \"score_recall\" must be numbers");

    const cJSON *target = it[PARO_K_TARGET];
    /* keep_last is a 1.2 key: optional there, unknown to a 1.1 file */
    static const char *const target_keys[] = {"mode", "value", "keep_text", "keep_last"};
    if (!cJSON_IsObject(target))
        return mfail(m, FMT, PARO_K_TARGET, "\"target\" must be an object");
    if ((err = only_keys(m, PARO_K_TARGET, target, "\"target\"", target_keys,
                         m->r->minor >= 2 ? 4 : 3, "keep_last")))
        return err;
    const cJSON *mode = member(target, "mode");
    const char *ms = cJSON_IsString(mode) ? mode->valuestring : "";
    p->target_mode = strcmp(ms, "density") == 0     ? PARO_TARGET_DENSITY
                     : strcmp(ms, "threshold") == 0 ? PARO_TARGET_THRESHOLD
                     : strcmp(ms, "recall") == 0    ? PARO_TARGET_RECALL
                                                    : (paro_target_mode)0;
    if (!p->target_mode)
        return mfail(m, FMT, PARO_K_TARGET,
                     "target \"mode\" must be \"density\", \"threshold\" or \"recall\"");
    if (get_num(member(target, "value"), &p->target_value) < 0)
        return mfail(m, FMT, PARO_K_TARGET, "target \"value\" must be a number");
    const cJSON *kt = member(target, "keep_text");
    if (!cJSON_IsBool(kt))
        return mfail(m, FMT, PARO_K_TARGET, "target \"keep_text\" must be true or false");
    p->keep_text = cJSON_IsTrue(kt);
    const cJSON *kl = m->r->minor >= 2 ? member(target, "keep_last") : NULL;
    if (kl && !cJSON_IsBool(kl))
        return mfail(m, FMT, PARO_K_TARGET, "target \"keep_last\" must be true or false");
    p->keep_last = cJSON_IsTrue(kl);

    if ((err = meta_buckets(m, p)) || (err = meta_samples(m, p)))
        return err;
    double seed;
    if (get_int(it[PARO_K_SEED], 0, PARO_PLAN_MAX_JSON_INT, &seed) < 0)
        return mfail(m, FMT, PARO_K_SEED, "\"seed\" must be an integer in [0, 2^53]");
    p->seed = (uint64_t)seed;
    return meta_inputs(m, p);
}

static paro_err read_meta(reader *r, const in_section *s, paro_plan *p)
{
    meta_ctx m;
    memset(&m, 0, sizeof m);
    m.r = r;
    m.off = s->offset;
    for (int k = 0; k < PARO_K_COUNT; k++)
        m.keyoff[k] = s->offset;
    if (s->stored > PARO_PLAN_MAX_JSON)
        return fail(r, PARO_ERR_LIMIT, s->entry + PARO_E_STORED,
                    "metadata is %llu bytes, over the limit of %u",
                    (unsigned long long)s->stored, PARO_PLAN_MAX_JSON);
    jscan *j = calloc(1, sizeof *j);
    if (!j)
        return fail(r, PARO_ERR_NOMEM, PARO_NO_OFFSET, "out of memory");
    j->s = r->buf + s->offset;
    j->n = (size_t)s->stored;
    js_ws(j);
    int bad = 0;
    if (j->i >= j->n || j->s[j->i] != '{')
        bad = js_fail(j, "metadata must be a json object");
    else if (js_container(j, 1) < 0)
        bad = 1;
    else {
        js_ws(j);
        if (j->i != j->n)
            bad = js_fail(j, "data after the json object");
    }
    if (bad) {
        paro_err e = fail(r, FMT, s->offset + j->i, "metadata is not valid json: %s", j->err);
        free(j);
        return e;
    }
    cJSON *root = cJSON_ParseWithLength((const char *)r->buf + s->offset, (size_t)s->stored);
    if (!root) {
        free(j);
        return fail(r, PARO_ERR_NOMEM, s->offset, "metadata json could not be parsed (out of "
                    "memory?)");
    }
    paro_err err = PARO_OK;
    int oom = 0;
    /* duplicate keys: at the top level (named at the second occurrence),
     * then inside each member (named at the member) */
    const char *d = dup_here(root, &oom);
    size_t ci = 0;
    for (const cJSON *c = root->child; c && !err && !oom; c = c->next, ci++) {
        uint64_t off = ci < MAX_KEY_OFFSETS && ci < j->nkeys ? s->offset + j->keyoff[ci]
                                                             : s->offset;
        const char *dd;
        if (d && strcmp(c->string, d) == 0) {
            if (dup_pos_second(root, c))
                err = fail(r, FMT, off, "metadata: duplicate key \"%.60s\"", d);
        } else if (!d && (dd = find_dup(c, &oom)) != NULL) {
            err = fail(r, FMT, off, "metadata: duplicate key \"%.60s\" in \"%.60s\"", dd,
                       c->string);
        }
    }
    /* known keys, unknown keys */
    ci = 0;
    for (const cJSON *c = root->child; c && !err && !oom; c = c->next, ci++) {
        uint64_t off = ci < MAX_KEY_OFFSETS && ci < j->nkeys ? s->offset + j->keyoff[ci]
                                                             : s->offset;
        int k = 0;
        while (k < PARO_K_COUNT && strcmp(c->string, paro_plan_meta_keys[k]) != 0)
            k++;
        if (k < PARO_K_COUNT) {
            m.item[k] = c;
            m.keyoff[k] = off;
        } else if (!r->lenient) {
            err = fail(r, FMT, off,
                       "metadata: unknown key \"%.60s\" (not defined by plan version %u.%u)",
                       c->string, r->major, r->minor);
        }
    }
    if (!err && oom)
        err = fail(r, PARO_ERR_NOMEM, PARO_NO_OFFSET, "out of memory");
    free(j);
    for (int k = 0; k < PARO_K_COUNT && !err; k++)
        if (!m.item[k])
            err = fail(r, FMT, s->offset, "metadata: required key \"%s\" is missing",
                       paro_plan_meta_keys[k]);
    if (!err)
        err = meta_decode(&m, p);
    paro_plan_bad b;
    if (!err && paro_plan_check_meta(p, &b))
        err = mfail(&m, b.code, b.key, "%s", b.msg);
    cJSON_Delete(root);
    return err;
}

/* ---- sections against the metadata, and their contents ---- */

/* Inflates exactly s->raw bytes of section s into dst. */
static paro_err load(reader *r, uint32_t i, const in_section *s, uint8_t *dst)
{
    const uint8_t *in = r->buf + s->offset;
    if (s->codec == PARO_CODEC_NONE) {
        if (s->raw)
            memcpy(dst, in, (size_t)s->raw);
        return PARO_OK;
    }
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit(&zs) != Z_OK)
        return fail(r, PARO_ERR_NOMEM, PARO_NO_OFFSET, "out of memory");
    const uint64_t chunk = 1u << 30;
    uint64_t in_left = s->stored, out_left = s->raw;
    uint8_t *out = dst, extra;
    int extra_given = 0;
    paro_err err = PARO_OK;
    for (;;) {
        if (zs.avail_in == 0 && in_left) {
            uInt n = (uInt)(in_left < chunk ? in_left : chunk);
            zs.next_in = (Bytef *)(uintptr_t)in;
            zs.avail_in = n;
            in += n;
            in_left -= n;
        }
        if (zs.avail_out == 0) {
            if (out_left) {
                uInt n = (uInt)(out_left < chunk ? out_left : chunk);
                zs.next_out = out;
                zs.avail_out = n;
                out += n;
                out_left -= n;
            } else if (!extra_given) {
                zs.next_out = &extra; /* to see whether the stream wants to give more */
                zs.avail_out = 1;
                extra_given = 1;
            }
        }
        int ret = inflate(&zs, Z_NO_FLUSH);
        if (ret == Z_STREAM_END)
            break;
        if (ret == Z_OK)
            continue;
        if (ret == Z_BUF_ERROR && zs.avail_out == 0)
            err = fail(r, FMT, s->offset,
                       "section %u (%s) inflates to more than its raw_len of %llu bytes", i,
                       sec_name(s->type), (unsigned long long)s->raw);
        else if (ret == Z_BUF_ERROR)
            err = fail(r, FMT, s->offset, "section %u (%s): zlib stream is cut short", i,
                       sec_name(s->type));
        else if (ret == Z_MEM_ERROR)
            err = fail(r, PARO_ERR_NOMEM, PARO_NO_OFFSET, "out of memory");
        else
            err = fail(r, FMT, s->offset, "section %u (%s): corrupt zlib stream: %s", i,
                       sec_name(s->type), ret == Z_NEED_DICT ? "needs a preset dictionary"
                                          : zs.msg         ? zs.msg
                                                           : "error");
        break;
    }
    if (!err && zs.total_out != s->raw)
        err = fail(r, FMT, s->offset,
                   "section %u (%s) inflates to %llu bytes, but its raw_len is %llu", i,
                   sec_name(s->type), (unsigned long long)zs.total_out,
                   (unsigned long long)s->raw);
    if (!err && (zs.avail_in || in_left))
        err = fail(r, FMT, s->offset, "section %u (%s): bytes after the end of the zlib stream",
                   i, sec_name(s->type));
    inflateEnd(&zs);
    return err;
}

static paro_err want_raw(reader *r, uint32_t i, const in_section *s, uint64_t want,
                         const char *why)
{
    if (s->raw != want)
        return fail(r, FMT, s->entry + PARO_E_RAW,
                    "section %u (%s) holds %llu bytes, but %s need %llu", i, sec_name(s->type),
                    (unsigned long long)s->raw, why, (unsigned long long)want);
    return PARO_OK;
}

/* In place: little-endian f64 bytes to doubles. */
static void decode_f64(double *v, uint64_t n)
{
    uint8_t *b = (uint8_t *)v;
    for (uint64_t k = 0; k < n; k++) {
        uint64_t u = paro_rd64(b + 8 * k);
        memcpy(&v[k], &u, 8);
    }
}

static paro_err check_perm(reader *r, uint32_t i, const in_section *s, const paro_plan *p,
                           const uint8_t *raw, uint32_t *want, uint8_t *seen)
{
    const uint32_t n = p->n_tokens;
    const char *oname = p->orders[s->index].name;
    memset(seen, 0, n / 8 + 1);
    for (uint32_t k = 0; k < n; k++) {
        uint32_t v = paro_rd32(raw + 4 * (size_t)k);
        uint64_t at = s->codec == PARO_CODEC_NONE ? s->offset + 4 * (uint64_t)k : s->offset;
        if (v >= n || (seen[v >> 3] >> (v & 7) & 1))
            return fail(r, FMT, at,
                        "section %u (PERM of order %s) is not a permutation: position %u holds "
                        "%u",
                        i, oname, k, v);
        seen[v >> 3] |= (uint8_t)(1u << (v & 7));
    }
    paro_plan_axes_perm(p, oname, want);
    for (uint32_t k = 0; k < n; k++) {
        uint32_t v = paro_rd32(raw + 4 * (size_t)k);
        if (v != want[k])
            return fail(r, FMT,
                        s->codec == PARO_CODEC_NONE ? s->offset + 4 * (uint64_t)k : s->offset,
                        "section %u (PERM of order %s): position %u holds token %u, but the "
                        "order puts token %u there",
                        i, oname, k, v, want[k]);
    }
    return PARO_OK;
}

/* Lengths of the data sections against the metadata in m; sets
 * m->with_tile_mass when the file has TILEMASS sections. */
static paro_err check_lengths(reader *r, paro_plan *m, const paro_plan_sizes *sz)
{
    uint32_t n_masks = 0, n_tile_mass = 0;
    char why[160];
    for (uint32_t i = 0; i < r->n_sec; i++) {
        const in_section *s = &r->sec[i];
        paro_err err = PARO_OK;
        switch (s->type) {
        case PARO_SEC_HEAD_ORDER:
            snprintf(why, sizeof why, "%u layers x %u heads", m->n_layers, m->heads);
            err = want_raw(r, i, s, sz->head_order, why);
            break;
        case PARO_SEC_SCORES:
            snprintf(why, sizeof why, "%u layers x %u heads x %u orders x 3 f64", m->n_layers,
                     m->heads, m->n_orders);
            err = want_raw(r, i, s, sz->scores, why);
            break;
        case PARO_SEC_DENSITY:
        case PARO_SEC_RECALL:
            snprintf(why, sizeof why, "%u layers x %u buckets x %u heads f64", m->n_layers,
                     m->n_buckets, m->heads);
            err = want_raw(r, i, s, sz->density, why);
            break;
        case PARO_SEC_PERM:
            if (s->index >= m->n_orders)
                return fail(r, FMT, s->entry + PARO_E_INDEX,
                            "section %u (PERM) is for order %u, but there are %u orders", i,
                            s->index, m->n_orders);
            snprintf(why, sizeof why, "%u tokens x u32", m->n_tokens);
            err = want_raw(r, i, s, sz->perm, why);
            break;
        case PARO_SEC_MASKS:
            if (n_masks >= m->n_layers || s->index != m->layers[n_masks]) {
                if (n_masks < m->n_layers && s->index > m->layers[n_masks])
                    return fail(r, FMT, s->entry + PARO_E_INDEX,
                                "the plan has no MASKS section for layer %u",
                                m->layers[n_masks]);
                return fail(r, FMT, s->entry + PARO_E_INDEX,
                            "section %u (MASKS) is for layer %u, which is not in the plan's "
                            "\"layers\"",
                            i, s->index);
            }
            n_masks++;
            snprintf(why, sizeof why, "%u buckets x %u heads x %u x %u blocks, 1 bit each",
                     m->n_buckets, m->heads, m->nq, m->nk);
            err = want_raw(r, i, s, sz->mask, why);
            break;
        case PARO_SEC_TILEMASS:
            /* all layers or none: a picture of one layer should not depend
             * on which others were kept */
            if (n_tile_mass >= m->n_layers || s->index != m->layers[n_tile_mass]) {
                if (n_tile_mass < m->n_layers && s->index > m->layers[n_tile_mass])
                    return fail(r, FMT, s->entry + PARO_E_INDEX,
                                "the plan has TILEMASS sections, but none for layer %u",
                                m->layers[n_tile_mass]);
                return fail(r, FMT, s->entry + PARO_E_INDEX,
                            "section %u (TILEMASS) is for layer %u, which is not in the plan's "
                            "\"layers\"",
                            i, s->index);
            }
            n_tile_mass++;
            snprintf(why, sizeof why, "%u buckets x %u heads x %u x %u blocks, 1 byte each",
                     m->n_buckets, m->heads, m->nq, m->nk);
            err = want_raw(r, i, s, sz->tile_mass, why);
            break;
        default: break;
        }
        if (err)
            return err;
    }
    if (n_masks < m->n_layers)
        return fail(r, FMT, r->header_size, "the plan has no MASKS section for layer %u",
                    m->layers[n_masks]);
    if (n_tile_mass && n_tile_mass < m->n_layers)
        return fail(r, FMT, r->header_size,
                    "the plan has TILEMASS sections, but none for layer %u",
                    m->layers[n_tile_mass]);
    m->with_tile_mass = n_tile_mass > 0;
    return PARO_OK;
}

static paro_err read_data(reader *r, paro_plan *p, const paro_plan_sizes *sz)
{
    uint8_t *perm_raw = NULL, *seen = NULL;
    uint32_t *want = NULL;
    int sec_of[PARO_SEC_KNOWN_MAX + 1] = {0};
    uint32_t slot = 0, tm_slot = 0;
    paro_err err = PARO_OK;
    for (uint32_t i = 0; i < r->n_sec && !err; i++) {
        const in_section *s = &r->sec[i];
        switch (s->type) {
        case PARO_SEC_HEAD_ORDER:
            err = load(r, i, s, p->head_order);
            break;
        case PARO_SEC_SCORES:
            if (!(err = load(r, i, s, (uint8_t *)p->scores)))
                decode_f64(p->scores, sz->scores / 8);
            break;
        case PARO_SEC_DENSITY:
            if (!(err = load(r, i, s, (uint8_t *)p->density)))
                decode_f64(p->density, sz->density / 8);
            break;
        case PARO_SEC_RECALL:
            if (!(err = load(r, i, s, (uint8_t *)p->recall)))
                decode_f64(p->recall, sz->density / 8);
            break;
        case PARO_SEC_PERM:
            if (!perm_raw) {
                perm_raw = malloc((size_t)sz->perm);
                want = malloc((size_t)sz->perm);
                seen = malloc(p->n_tokens / 8 + 1);
                if (!perm_raw || !want || !seen) {
                    err = fail(r, PARO_ERR_NOMEM, PARO_NO_OFFSET, "out of memory");
                    break;
                }
            }
            if (!(err = load(r, i, s, perm_raw)))
                err = check_perm(r, i, s, p, perm_raw, want, seen);
            break;
        case PARO_SEC_MASKS:
            err = load(r, i, s, p->masks[slot++]);
            break;
        case PARO_SEC_TILEMASS:
            err = load(r, i, s, p->tile_mass[tm_slot++]);
            break;
        default: break;
        }
        if (s->type >= 1 && s->type <= PARO_SEC_KNOWN_MAX && s->type != PARO_SEC_MASKS &&
            s->type != PARO_SEC_TILEMASS)
            sec_of[s->type] = (int)i;
    }
    free(perm_raw);
    free(want);
    free(seen);
    if (err)
        return err;

    paro_plan_bad b;
    if (!paro_plan_check_data(p, &b))
        return PARO_OK;
    /* the offending element's byte in the file */
    const in_section *s = NULL;
    uint64_t size = b.section == PARO_SEC_HEAD_ORDER ? 1 : 8;
    if (b.section == PARO_SEC_MASKS || b.section == PARO_SEC_TILEMASS) {
        size = 1;
        for (uint32_t i = 0, k = 0; i < r->n_sec; i++)
            if (r->sec[i].type == b.section && k++ == b.slot)
                s = &r->sec[i];
    } else if (b.section >= 1 && b.section <= PARO_SEC_KNOWN_MAX) {
        s = &r->sec[sec_of[b.section]];
    }
    if (!s)
        return fail(r, b.code, PARO_NO_OFFSET, "%s", b.msg);
    if (s->codec == PARO_CODEC_NONE)
        return fail(r, b.code, s->offset + b.elem * size, "%s", b.msg);
    return fail(r, b.code, s->offset, "%s (byte %llu of the inflated %s section)", b.msg,
                (unsigned long long)(b.elem * size), sec_name(s->type));
}

paro_err paro_plan_parse(const uint8_t *buf, size_t len, const char *name, paro_plan **out,
                         paro_errinfo *ei)
{
    *out = NULL;
    reader r;
    memset(&r, 0, sizeof r);
    r.buf = buf;
    r.len = buf ? len : 0;
    r.name = name && *name ? name : "<plan>";
    r.ei = ei;
    paro_errinfo local;
    if (!ei) {
        paro_errinfo_clear(&local);
        r.ei = &local;
    }
    paro_plan *meta = calloc(1, sizeof *meta), *p = NULL;
    int meta_at = -1;
    paro_plan_sizes sz;
    paro_err err = PARO_OK;
    if (!meta)
        err = fail(&r, PARO_ERR_NOMEM, PARO_NO_OFFSET, "out of memory");
    if (!err)
        err = read_header(&r);
    if (!err)
        err = read_table(&r);
    if (!err)
        err = check_types(&r, &meta_at);
    if (!err)
        err = read_meta(&r, &r.sec[meta_at], meta);
    if (!err && !paro_plan_sizes_of(meta, &sz))
        err = fail(&r, PARO_ERR_LIMIT, r.sec[meta_at].offset,
                   "metadata: the plan's arrays would overflow 64-bit sizes");
    if (!err)
        err = check_lengths(&r, meta, &sz);
    if (!err) {
        paro_errinfo aei;
        paro_errinfo_clear(&aei);
        if (paro_plan_alloc(&p, meta, &aei) != PARO_OK)
            err = fail(&r, aei.code, PARO_NO_OFFSET, "%s", aei.msg);
    }
    if (!err) {
        p->format_minor = r.minor;
        err = read_data(&r, p, &sz);
    }
    paro_plan_free(meta);
    free(r.sec);
    if (err) {
        paro_plan_free(p);
        return err;
    }
    *out = p;
    return PARO_OK;
}

paro_err paro_plan_read(const char *path, paro_plan **out, paro_errinfo *ei)
{
    *out = NULL;
    /* O_NONBLOCK: a FIFO must not hang the open (it is refused below); reads
     * of a regular file ignore the flag. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    FILE *f = fd >= 0 ? fdopen(fd, "rb") : NULL;
    if (!f) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return paro_error(ei, PARO_ERR_IO, path, PARO_NO_OFFSET, "cannot open: %s",
                          strerror(e));
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        int e = errno;
        fclose(f);
        return paro_error(ei, PARO_ERR_IO, path, PARO_NO_OFFSET, "cannot read: %s",
                          strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        fclose(f);
        return paro_error(ei, PARO_ERR_IO, path, PARO_NO_OFFSET, "not a regular file");
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        fclose(f);
        return paro_error(ei, PARO_ERR_LIMIT, path, PARO_NO_OFFSET, "file is too large");
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        fclose(f);
        return paro_error(ei, PARO_ERR_NOMEM, path, PARO_NO_OFFSET, "out of memory");
    }
    size_t got = fread(buf, 1, n, f);
    int rerr = ferror(f) ? errno : 0;
    /* a file that grows while we read: one more byte would be trailing data */
    int more = got == n && fgetc(f) != EOF;
    fclose(f);
    if (got != n || rerr || more) {
        free(buf);
        return paro_error(ei, PARO_ERR_IO, path, PARO_NO_OFFSET, "cannot read: %s",
                          rerr ? strerror(rerr) : "the file changed while it was read");
    }
    paro_err err = paro_plan_parse(buf, n, path, out, ei);
    free(buf);
    return err;
}
