/* paro — the ZIP writer (see zip_write.h; PKWARE APPNOTE.TXT). */
#include "zip_write.h"

#include <stdlib.h> /* calloc, malloc, realloc, free */
#include <string.h> /* strlen, memcpy, strdup */
#include <zlib.h>   /* deflateInit2, deflate, deflateEnd, crc32_z */

#define CHUNK (1u << 20)
#define MAX32 0xffffffffu
#define MAX16 0xffffu
#define DOS_DATE_1980_01_01 0x0021u /* (1980 - 1980) << 9 | 1 << 5 | 1 */
#define VERSION_DEFAULT 20u         /* 2.0: deflate */
#define VERSION_ZIP64 45u           /* 4.5: ZIP64 records */
#define DEFLATE_LEVEL 6             /* zlib's default, as Python's zipfile uses */

typedef struct zip_entry {
    char *name;
    uint64_t offset, csize, usize;
    uint32_t crc;
    int method, sizes64; /* sizes64: the sizes are in a ZIP64 extra field */
} zip_entry;

struct paro_zip {
    paro_zip_sink sink;
    void *sink_user;
    uint64_t limit; /* sizes and offsets from here on go to ZIP64 fields */
    uint64_t pos;
    zip_entry *entries;
    size_t n, cap;
    uint8_t *chunk;
};

static void le16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static paro_err emit(paro_zip *z, const void *buf, size_t n, paro_errinfo *ei)
{
    if (n == 0)
        return PARO_OK;
    paro_err err = z->sink(z->sink_user, buf, n, ei);
    if (!err)
        z->pos += n;
    return err;
}

paro_err paro_zip_open(paro_zip **out, paro_zip_sink sink, void *sink_user, uint64_t zip64_from,
                       paro_errinfo *ei)
{
    *out = NULL;
    paro_zip *z = calloc(1, sizeof *z);
    if (!z || !(z->chunk = malloc(CHUNK))) {
        free(z);
        return paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory");
    }
    z->sink = sink;
    z->sink_user = sink_user;
    z->limit = zip64_from < MAX32 ? zip64_from : MAX32;
    *out = z;
    return PARO_OK;
}

void paro_zip_free(paro_zip *z)
{
    if (!z)
        return;
    for (size_t i = 0; i < z->n; i++)
        free(z->entries[i].name);
    free(z->entries);
    free(z->chunk);
    free(z);
}

/* The member's data deflated (raw deflate, as ZIP method 8 wants) into a
 * malloc'ed buffer, with the CRC of the uncompressed bytes. */
static paro_err deflate_member(paro_zip *z, uint64_t size, paro_zip_source src, void *user,
                               uint8_t **out, uint64_t *out_len, uint32_t *crc,
                               paro_errinfo *ei)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, DEFLATE_LEVEL, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory");
    size_t cap = CHUNK, len = 0;
    uint8_t *buf = malloc(cap);
    uLong c = crc32_z(0, NULL, 0);
    paro_err err = buf ? PARO_OK
                       : paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory");
    for (uint64_t at = 0; !err;) {
        size_t n = size - at < CHUNK ? (size_t)(size - at) : CHUNK;
        if (n && (err = src(user, at, z->chunk, n, ei)))
            break;
        c = crc32_z(c, z->chunk, n);
        at += n;
        zs.next_in = z->chunk;
        zs.avail_in = (uInt)n;
        const int flush = at == size ? Z_FINISH : Z_NO_FLUSH;
        int ret = Z_OK;
        /* zlib's own pattern (zpipe.c): deflate until it leaves output room */
        do {
            if (cap - len < CHUNK) {
                uint8_t *grown = cap <= SIZE_MAX / 2 ? realloc(buf, cap * 2) : NULL;
                if (!grown) {
                    err = paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory");
                    break;
                }
                buf = grown;
                cap *= 2;
            }
            zs.next_out = buf + len;
            zs.avail_out = CHUNK;
            ret = deflate(&zs, flush);
            len += CHUNK - zs.avail_out;
        } while (zs.avail_out == 0);
        if (!err && flush == Z_FINISH) {
            if (ret != Z_STREAM_END)
                err = paro_error(ei, PARO_ERR_INTERNAL, NULL, PARO_NO_OFFSET,
                                 "deflate did not finish (zlib error %d)", ret);
            break;
        }
    }
    deflateEnd(&zs);
    if (err) {
        free(buf);
        return err;
    }
    *out = buf;
    *out_len = len;
    *crc = (uint32_t)c;
    return PARO_OK;
}

paro_err paro_zip_add(paro_zip *z, const char *name, uint64_t size, int method,
                      paro_zip_source src, void *src_user, paro_errinfo *ei)
{
    size_t name_len = name ? strlen(name) : 0;
    if (name_len == 0 || name_len > MAX16 || (method != PARO_ZIP_STORE && method != PARO_ZIP_DEFLATE))
        return paro_error(ei, PARO_ERR_USAGE, NULL, PARO_NO_OFFSET,
                          "zip member: a name of 1 to 65535 bytes and method store or deflate "
                          "are needed");
    if (z->n == z->cap) {
        size_t cap = z->cap ? 2 * z->cap : 16;
        zip_entry *grown = realloc(z->entries, cap * sizeof *grown);
        if (!grown)
            return paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory");
        z->entries = grown;
        z->cap = cap;
    }
    zip_entry e;
    memset(&e, 0, sizeof e);
    e.method = method;
    e.offset = z->pos;
    e.usize = size;
    uint8_t *packed = NULL;
    paro_err err = PARO_OK;
    if (method == PARO_ZIP_DEFLATE) {
        err = deflate_member(z, size, src, src_user, &packed, &e.csize, &e.crc, ei);
    } else {
        /* a first pass for the CRC, which the local header carries */
        uLong c = crc32_z(0, NULL, 0);
        for (uint64_t at = 0; at < size && !err; at += CHUNK) {
            size_t n = size - at < CHUNK ? (size_t)(size - at) : CHUNK;
            if (!(err = src(src_user, at, z->chunk, n, ei)))
                c = crc32_z(c, z->chunk, n);
        }
        e.crc = (uint32_t)c;
        e.csize = size;
    }
    if (err)
        return err;
    e.sizes64 = e.usize >= z->limit || e.csize >= z->limit;
    if (!(e.name = strdup(name))) {
        free(packed);
        return paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory");
    }

    uint8_t h[30 + 20];
    le32(h, 0x04034b50);
    le16(h + 4, e.sizes64 ? VERSION_ZIP64 : VERSION_DEFAULT);
    le16(h + 6, 0);                   /* flags */
    le16(h + 8, (uint32_t)method);
    le16(h + 10, 0);                  /* 00:00:00 */
    le16(h + 12, DOS_DATE_1980_01_01);
    le32(h + 14, e.crc);
    le32(h + 18, e.sizes64 ? MAX32 : (uint32_t)e.csize);
    le32(h + 22, e.sizes64 ? MAX32 : (uint32_t)e.usize);
    le16(h + 26, (uint32_t)name_len);
    le16(h + 28, e.sizes64 ? 20 : 0);
    if (e.sizes64) { /* the local ZIP64 field holds both sizes */
        le16(h + 30, 0x0001);
        le16(h + 32, 16);
        le64(h + 34, e.usize);
        le64(h + 42, e.csize);
    }
    err = emit(z, h, 30, ei);
    if (!err)
        err = emit(z, name, name_len, ei);
    if (!err && e.sizes64)
        err = emit(z, h + 30, 20, ei);
    if (!err && packed) {
        for (uint64_t at = 0; at < e.csize && !err; at += CHUNK)
            err = emit(z, packed + at, e.csize - at < CHUNK ? (size_t)(e.csize - at) : CHUNK, ei);
    } else {
        for (uint64_t at = 0; at < size && !err; at += CHUNK) {
            size_t n = size - at < CHUNK ? (size_t)(size - at) : CHUNK;
            if (!(err = src(src_user, at, z->chunk, n, ei)))
                err = emit(z, z->chunk, n, ei);
        }
    }
    free(packed);
    if (err) {
        free(e.name);
        return err;
    }
    z->entries[z->n++] = e;
    return PARO_OK;
}

paro_err paro_zip_finish(paro_zip *z, paro_errinfo *ei)
{
    const uint64_t cd_offset = z->pos;
    int any64 = 0;
    paro_err err = PARO_OK;
    for (size_t i = 0; i < z->n && !err; i++) {
        const zip_entry *e = &z->entries[i];
        const int offset64 = e->offset >= z->limit;
        const size_t name_len = strlen(e->name);
        uint8_t h[46], x[4 + 24];
        size_t xlen = 0;
        if (e->sizes64 || offset64) {
            /* only the fields the header marks 0xffffffff, in this order */
            xlen = 4;
            if (e->sizes64) {
                le64(x + xlen, e->usize);
                le64(x + xlen + 8, e->csize);
                xlen += 16;
            }
            if (offset64) {
                le64(x + xlen, e->offset);
                xlen += 8;
            }
            le16(x, 0x0001);
            le16(x + 2, (uint32_t)(xlen - 4));
            any64 = 1;
        }
        const uint32_t version = xlen ? VERSION_ZIP64 : VERSION_DEFAULT;
        le32(h, 0x02014b50);
        le16(h + 4, version); /* made by: MS-DOS attributes, this version */
        le16(h + 6, version);
        le16(h + 8, 0);
        le16(h + 10, (uint32_t)e->method);
        le16(h + 12, 0);
        le16(h + 14, DOS_DATE_1980_01_01);
        le32(h + 16, e->crc);
        le32(h + 20, e->sizes64 ? MAX32 : (uint32_t)e->csize);
        le32(h + 24, e->sizes64 ? MAX32 : (uint32_t)e->usize);
        le16(h + 28, (uint32_t)name_len);
        le16(h + 30, (uint32_t)xlen);
        le16(h + 32, 0); /* comment */
        le16(h + 34, 0); /* disk */
        le16(h + 36, 0); /* internal attributes */
        le32(h + 38, 0); /* external attributes */
        le32(h + 42, offset64 ? MAX32 : (uint32_t)e->offset);
        err = emit(z, h, sizeof h, ei);
        if (!err)
            err = emit(z, e->name, name_len, ei);
        if (!err)
            err = emit(z, x, xlen, ei);
    }
    if (err)
        return err;
    const uint64_t cd_size = z->pos - cd_offset;
    const int count64 = z->n > MAX16, size64 = cd_size >= z->limit, offset64 = cd_offset >= z->limit;
    if (any64 || count64 || size64 || offset64) {
        const uint64_t end64 = z->pos;
        uint8_t r[56 + 20];
        le32(r, 0x06064b50);
        le64(r + 4, 44); /* the size of the rest of this record */
        le16(r + 12, VERSION_ZIP64);
        le16(r + 14, VERSION_ZIP64);
        le32(r + 16, 0);
        le32(r + 20, 0);
        le64(r + 24, z->n);
        le64(r + 32, z->n);
        le64(r + 40, cd_size);
        le64(r + 48, cd_offset);
        le32(r + 56, 0x07064b50); /* the locator */
        le32(r + 60, 0);
        le64(r + 64, end64);
        le32(r + 72, 1);
        err = emit(z, r, sizeof r, ei);
    }
    uint8_t end[22];
    le32(end, 0x06054b50);
    le16(end + 4, 0);
    le16(end + 6, 0);
    le16(end + 8, count64 ? MAX16 : (uint32_t)z->n);
    le16(end + 10, count64 ? MAX16 : (uint32_t)z->n);
    le32(end + 12, size64 ? MAX32 : (uint32_t)cd_size);
    le32(end + 16, offset64 ? MAX32 : (uint32_t)cd_offset);
    le16(end + 20, 0);
    if (!err)
        err = emit(z, end, sizeof end, ei);
    return err;
}
