/* paro — strict ZIP reader for .npz (formats/zip_read.h). */
#include "zip_read.h"

#include <stdlib.h> /* calloc, malloc, free, qsort, bsearch */
#include <string.h> /* memchr, memcmp, memcpy, strcmp */

#include <zlib.h> /* inflate */

#include "crc32.h"       /* paro_crc32 */
#include "mapped_file.h" /* paro_map_file */

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_END 0x06054b50u
#define SIG_END64 0x06064b50u
#define SIG_LOCATOR64 0x07064b50u
#define END_BYTES 22u
#define LOCATOR64_BYTES 20u
#define END64_BYTES 56u
#define CENTRAL_BYTES 46u
#define LOCAL_BYTES 30u

struct paro_unzip {
    char *path;
    paro_mapped_file map;
    size_t n;
    paro_unzip_member *members;
    paro_unzip_member **by_name;
};

static uint32_t u16at(const unsigned char *p) { return p[0] | (uint32_t)p[1] << 8; }
static uint32_t u32at(const unsigned char *p) { return u16at(p) | u16at(p + 2) << 16; }
static uint64_t u64at(const unsigned char *p) { return u32at(p) | (uint64_t)u32at(p + 4) << 32; }

static int cmp_member_name(const void *a, const void *b)
{
    return strcmp((*(paro_unzip_member *const *)a)->name, (*(paro_unzip_member *const *)b)->name);
}

static int cmp_member_offset(const void *a, const void *b)
{
    const paro_unzip_member *x = *(paro_unzip_member *const *)a, *y = *(paro_unzip_member *const *)b;
    return x->header_offset < y->header_offset ? -1 : x->header_offset > y->header_offset;
}

/* Where the central directory is and how many members it lists. */
typedef struct directory {
    uint64_t offset, size, count;
    uint64_t end; /* where the records after it start */
} directory;

static paro_err several_disks(const paro_unzip *z, uint64_t at, paro_errinfo *ei)
{
    return paro_error(ei, PARO_ERR_FORMAT, z->path, at,
                      "the archive spans several disks; paro reads one-file archives");
}

static paro_err find_directory(const paro_unzip *z, directory *dir, paro_errinfo *ei)
{
    const unsigned char *p = z->map.data;
    const uint64_t size = z->map.size;
    if (size < END_BYTES)
        return paro_error(ei, PARO_ERR_FORMAT, z->path, 0,
                          "file is %llu bytes, too short for a ZIP archive's end record",
                          (unsigned long long)size);
    /* The end record is the last 22 bytes plus a comment of the length it
     * states: the first candidate from the end whose comment reaches
     * exactly the end of the file. */
    uint64_t lowest = size - END_BYTES > 0xffff ? size - END_BYTES - 0xffff : 0;
    uint64_t end_at = UINT64_MAX;
    for (uint64_t at = size - END_BYTES + 1; at-- > lowest;)
        if (u32at(p + at) == SIG_END && at + END_BYTES + u16at(p + at + 20) == size) {
            end_at = at;
            break;
        }
    if (end_at == UINT64_MAX)
        return paro_error(ei, PARO_ERR_FORMAT, z->path, size,
                          "no ZIP end record: not an .npz (ZIP) file, or a truncated one");
    const unsigned char *e = p + end_at;
    /* disk numbers 0 and all entries on this disk, unless deferred to ZIP64 */
    if (u16at(e + 4) != 0xffff &&
        (u16at(e + 4) != 0 || u16at(e + 6) != 0 || u16at(e + 8) != u16at(e + 10)))
        return several_disks(z, end_at, ei);
    dir->count = u16at(e + 10);
    dir->size = u32at(e + 12);
    dir->offset = u32at(e + 16);
    dir->end = end_at;
    if (end_at >= LOCATOR64_BYTES && u32at(p + end_at - LOCATOR64_BYTES) == SIG_LOCATOR64) {
        const unsigned char *loc = p + end_at - LOCATOR64_BYTES;
        uint64_t at = u64at(loc + 8);
        if (u32at(loc + 4) != 0 || u32at(loc + 16) != 1)
            return several_disks(z, end_at - LOCATOR64_BYTES, ei);
        if (at > end_at - LOCATOR64_BYTES || end_at - LOCATOR64_BYTES - at < END64_BYTES ||
            u32at(p + at) != SIG_END64)
            return paro_error(ei, PARO_ERR_FORMAT, z->path, end_at - LOCATOR64_BYTES,
                              "the ZIP64 locator points to %llu, where no ZIP64 end record is",
                              (unsigned long long)at);
        const unsigned char *e64 = p + at;
        if (u32at(e64 + 16) != 0 || u32at(e64 + 20) != 0 || u64at(e64 + 24) != u64at(e64 + 32))
            return several_disks(z, at, ei);
        dir->count = u64at(e64 + 32);
        dir->size = u64at(e64 + 40);
        dir->offset = u64at(e64 + 48);
        dir->end = at;
    } else if (dir->count == 0xffff || dir->size == 0xffffffffu || dir->offset == 0xffffffffu) {
        return paro_error(ei, PARO_ERR_FORMAT, z->path, end_at,
                          "the end record defers to a ZIP64 record that is not there");
    }
    if (dir->offset > dir->end || dir->end - dir->offset != dir->size)
        return paro_error(ei, PARO_ERR_FORMAT, z->path, end_at,
                          "the central directory (%llu bytes at %llu) does not end where the "
                          "end records start (%llu)",
                          (unsigned long long)dir->size, (unsigned long long)dir->offset,
                          (unsigned long long)dir->end);
    if (dir->count > PARO_UNZIP_MAX_MEMBERS)
        return paro_error(ei, PARO_ERR_LIMIT, z->path, end_at,
                          "the archive lists %llu members; paro reads at most %u",
                          (unsigned long long)dir->count, PARO_UNZIP_MAX_MEMBERS);
    if (dir->count > dir->size / CENTRAL_BYTES)
        return paro_error(ei, PARO_ERR_FORMAT, z->path, end_at,
                          "the archive lists %llu members but its central directory is only "
                          "%llu bytes",
                          (unsigned long long)dir->count, (unsigned long long)dir->size);
    return PARO_OK;
}

/* Replaces 0xffffffff fields by their values from the ZIP64 extra field. */
static paro_err apply_zip64(const paro_unzip *z, uint64_t at, const unsigned char *extra,
                            uint32_t extra_len, paro_unzip_member *m, int disk_big,
                            paro_errinfo *ei)
{
    uint64_t *fields[3] = {&m->size, &m->packed_size, &m->header_offset};
    int wanted = (m->size == 0xffffffffu) + (m->packed_size == 0xffffffffu) +
                 (m->header_offset == 0xffffffffu) + disk_big;
    if (!wanted)
        return PARO_OK;
    for (uint32_t pos = 0; pos + 4 <= extra_len;) {
        uint32_t tag = u16at(extra + pos), len = u16at(extra + pos + 2);
        if (pos + 4 + len > extra_len)
            break;
        if (tag == 0x0001) {
            uint32_t used = 0;
            for (int i = 0; i < 3; i++)
                if (*fields[i] == 0xffffffffu) {
                    if (used + 8 > len)
                        return paro_error(ei, PARO_ERR_FORMAT, z->path, at,
                                          "member '%s': its ZIP64 field is too short", m->name);
                    *fields[i] = u64at(extra + pos + 4 + used);
                    used += 8;
                }
            return PARO_OK;
        }
        pos += 4 + len;
    }
    return paro_error(ei, PARO_ERR_FORMAT, z->path, at,
                      "member '%s': sizes are deferred to a ZIP64 field that is not there",
                      m->name);
}

static paro_err read_member(paro_unzip *z, uint64_t *pos, const directory *dir,
                            paro_unzip_member *m, paro_errinfo *ei)
{
    const unsigned char *p = z->map.data;
    const uint64_t at = *pos;
    if (dir->end - at < CENTRAL_BYTES || u32at(p + at) != SIG_CENTRAL)
        return paro_error(ei, PARO_ERR_FORMAT, z->path, at,
                          "expected a central directory entry here");
    const unsigned char *c = p + at;
    uint32_t flags = u16at(c + 8), name_len = u16at(c + 28), extra_len = u16at(c + 30),
             comment_len = u16at(c + 32);
    if (dir->end - at - CENTRAL_BYTES < (uint64_t)name_len + extra_len + comment_len)
        return paro_error(ei, PARO_ERR_FORMAT, z->path, at,
                          "a central directory entry runs past the directory's end");
    if (!name_len || memchr(c + CENTRAL_BYTES, 0, name_len))
        return paro_error(ei, PARO_ERR_FORMAT, z->path, at,
                          "a member's name is empty or holds a NUL byte");
    if (!(m->name = malloc(name_len + 1u)))
        return paro_error(ei, PARO_ERR_NOMEM, z->path, at, "out of memory");
    memcpy(m->name, c + CENTRAL_BYTES, name_len);
    m->name[name_len] = 0;
    if (flags & 0x41u)
        return paro_error(ei, PARO_ERR_FORMAT, z->path, at,
                          "member '%s' is encrypted; paro reads plain archives", m->name);
    m->method = (int)u16at(c + 10);
    if (m->method != 0 && m->method != 8)
        return paro_error(ei, PARO_ERR_FORMAT, z->path, at,
                          "member '%s' uses compression method %d; paro reads stored (0) and "
                          "deflated (8) members",
                          m->name, m->method);
    m->crc32 = u32at(c + 16);
    m->packed_size = u32at(c + 20);
    m->size = u32at(c + 24);
    m->header_offset = u32at(c + 42);
    paro_err rc = apply_zip64(z, at, c + CENTRAL_BYTES + name_len, extra_len, m,
                              u16at(c + 34) == 0xffff, ei);
    if (rc)
        return rc;
    if (u16at(c + 34) != 0 && u16at(c + 34) != 0xffff)
        return paro_error(ei, PARO_ERR_FORMAT, z->path, at,
                          "member '%s' starts on another disk", m->name);
    if (m->method == 0 && m->packed_size != m->size)
        return paro_error(ei, PARO_ERR_FORMAT, z->path, at,
                          "stored member '%s' declares %llu bytes packed but %llu unpacked",
                          m->name, (unsigned long long)m->packed_size,
                          (unsigned long long)m->size);
    /* The local header must agree with the central entry. */
    uint64_t h = m->header_offset;
    if (h > dir->offset || dir->offset - h < LOCAL_BYTES || u32at(p + h) != SIG_LOCAL)
        return paro_error(ei, PARO_ERR_FORMAT, z->path, at,
                          "member '%s': no local header at offset %llu", m->name,
                          (unsigned long long)h);
    const unsigned char *l = p + h;
    uint32_t local_name = u16at(l + 26), local_extra = u16at(l + 28);
    if (local_name != name_len || dir->offset - h - LOCAL_BYTES < local_name + local_extra ||
        memcmp(l + LOCAL_BYTES, m->name, name_len))
        return paro_error(ei, PARO_ERR_FORMAT, z->path, h,
                          "member '%s': the local header names another member", m->name);
    if ((int)u16at(l + 8) != m->method)
        return paro_error(ei, PARO_ERR_FORMAT, z->path, h,
                          "member '%s': the local header and the directory disagree on the "
                          "compression method",
                          m->name);
    m->data_offset = h + LOCAL_BYTES + local_name + local_extra;
    if (m->packed_size > dir->offset - m->data_offset)
        return paro_error(ei, PARO_ERR_FORMAT, z->path, m->data_offset,
                          "member '%s': %llu packed bytes run past the central directory",
                          m->name, (unsigned long long)m->packed_size);
    *pos = at + CENTRAL_BYTES + name_len + extra_len + comment_len;
    return PARO_OK;
}

static paro_err read_directory(paro_unzip *z, const directory *dir, paro_errinfo *ei)
{
    z->members = calloc(dir->count ? (size_t)dir->count : 1, sizeof *z->members);
    z->by_name = calloc(dir->count ? (size_t)dir->count : 1, sizeof *z->by_name);
    if (!z->members || !z->by_name)
        return paro_error(ei, PARO_ERR_NOMEM, z->path, PARO_NO_OFFSET, "out of memory");
    uint64_t pos = dir->offset;
    for (uint64_t i = 0; i < dir->count; i++) {
        paro_err rc = read_member(z, &pos, dir, &z->members[i], ei);
        z->n = (size_t)i + 1; /* so close frees the name */
        if (rc)
            return rc;
        z->by_name[i] = &z->members[i];
    }
    if (pos != dir->end)
        return paro_error(ei, PARO_ERR_FORMAT, z->path, pos,
                          "%llu bytes of the central directory follow its last entry",
                          (unsigned long long)(dir->end - pos));
    /* No two members share bytes: overlapping members are how small
     * archives inflate to huge sizes. */
    qsort(z->by_name, z->n, sizeof *z->by_name, cmp_member_offset);
    for (size_t i = 1; i < z->n; i++) {
        const paro_unzip_member *a = z->by_name[i - 1], *b = z->by_name[i];
        if (b->header_offset < a->data_offset + a->packed_size)
            return paro_error(ei, PARO_ERR_FORMAT, z->path, b->header_offset,
                              "members '%s' and '%s' overlap", a->name, b->name);
    }
    qsort(z->by_name, z->n, sizeof *z->by_name, cmp_member_name);
    for (size_t i = 1; i < z->n; i++)
        if (!strcmp(z->by_name[i - 1]->name, z->by_name[i]->name))
            return paro_error(ei, PARO_ERR_FORMAT, z->path, PARO_NO_OFFSET,
                              "the archive holds two members named '%s'", z->by_name[i]->name);
    return PARO_OK;
}

paro_err paro_unzip_open(const char *path, paro_unzip **out, paro_errinfo *ei)
{
    *out = NULL;
    paro_unzip *z = calloc(1, sizeof *z);
    if (!z || !(z->path = strdup(path))) {
        free(z);
        return paro_error(ei, PARO_ERR_NOMEM, path, PARO_NO_OFFSET, "out of memory");
    }
    directory dir = {0, 0, 0, 0};
    paro_err rc = paro_map_file(path, "an .npz file", &z->map, ei);
    if (!rc)
        rc = find_directory(z, &dir, ei);
    if (!rc)
        rc = read_directory(z, &dir, ei);
    if (rc) {
        paro_unzip_close(z);
        return rc;
    }
    *out = z;
    return PARO_OK;
}

void paro_unzip_close(paro_unzip *z)
{
    if (!z)
        return;
    for (size_t i = 0; i < z->n; i++)
        free(z->members[i].name);
    free(z->members);
    free(z->by_name);
    paro_unmap_file(&z->map);
    free(z->path);
    free(z);
}

size_t paro_unzip_count(const paro_unzip *z) { return z->n; }

const paro_unzip_member *paro_unzip_get(const paro_unzip *z, size_t i)
{
    return i < z->n ? &z->members[i] : NULL;
}

const paro_unzip_member *paro_unzip_find(const paro_unzip *z, const char *name)
{
    paro_unzip_member key = {.name = (char *)name}, *keyp = &key;
    paro_unzip_member **hit = bsearch(&keyp, z->by_name, z->n, sizeof *z->by_name,
                                      cmp_member_name);
    return hit ? *hit : NULL;
}

const char *paro_unzip_path(const paro_unzip *z) { return z->path; }

const unsigned char *paro_unzip_stored_data(const paro_unzip *z, const paro_unzip_member *m)
{
    return m->method == 0 ? z->map.data + m->data_offset : NULL;
}

/* CRC-32 of a member's bytes: a capture's tensors, read on the hot path. */
static uint32_t crc_of(const unsigned char *p, uint64_t n)
{
    return paro_crc32(0, p, (size_t)n); /* n is mapped: it fits a size_t */
}

static paro_err crc_mismatch(const paro_unzip *z, const paro_unzip_member *m, uint32_t got,
                             paro_errinfo *ei)
{
    return paro_error(ei, PARO_ERR_FORMAT, z->path, m->data_offset,
                      "member '%s' is damaged: CRC-32 %08x, the directory says %08x", m->name,
                      got, m->crc32);
}

paro_err paro_unzip_check_crc(const paro_unzip *z, const paro_unzip_member *m, paro_errinfo *ei)
{
    if (m->method != 0)
        return PARO_OK; /* checked as it is inflated */
    uint32_t got = crc_of(z->map.data + m->data_offset, m->size);
    return got == m->crc32 ? PARO_OK : crc_mismatch(z, m, got, ei);
}

paro_err paro_unzip_extract(const paro_unzip *z, const paro_unzip_member *m, unsigned char *dst,
                            uint64_t n, paro_errinfo *ei)
{
    if (n > m->size)
        return paro_error(ei, PARO_ERR_INTERNAL, z->path, m->data_offset,
                          "asked for %llu bytes of member '%s', which has %llu",
                          (unsigned long long)n, m->name, (unsigned long long)m->size);
    const unsigned char *src = z->map.data + m->data_offset;
    if (m->method == 0) {
        memcpy(dst, src, (size_t)n);
        return n == m->size ? paro_unzip_check_crc(z, m, ei) : PARO_OK;
    }
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, -15) != Z_OK)
        return paro_error(ei, PARO_ERR_NOMEM, z->path, m->data_offset,
                          "cannot start inflating member '%s'", m->name);
    uint64_t in_left = m->packed_size, out_left = n;
    unsigned char spare;
    int status = Z_OK;
    zs.next_in = (Bytef *)src;
    zs.next_out = dst;
    while (status == Z_OK && out_left) {
        if (!zs.avail_in && in_left) {
            zs.avail_in = in_left > (1u << 30) ? (1u << 30) : (uInt)in_left;
            in_left -= zs.avail_in;
        }
        uInt room = out_left > (1u << 30) ? (1u << 30) : (uInt)out_left;
        zs.avail_out = room;
        status = inflate(&zs, Z_NO_FLUSH);
        out_left -= room - zs.avail_out;
        if (status == Z_BUF_ERROR && (zs.avail_in || in_left))
            status = Z_OK; /* no progress possible this round only */
    }
    /* All of the member wanted: its stream must end here, not later. */
    if (n == m->size && status == Z_OK) {
        for (;;) {
            if (!zs.avail_in && in_left) {
                zs.avail_in = in_left > (1u << 30) ? (1u << 30) : (uInt)in_left;
                in_left -= zs.avail_in;
            }
            zs.next_out = &spare;
            zs.avail_out = 1;
            status = inflate(&zs, Z_NO_FLUSH);
            if (status != Z_OK || !zs.avail_out)
                break;
        }
        if (status == Z_OK || (status == Z_STREAM_END && !zs.avail_out))
            status = Z_DATA_ERROR + 1000; /* more data than declared */
    }
    inflateEnd(&zs);
    if (out_left)
        return paro_error(ei, PARO_ERR_FORMAT, z->path, m->data_offset,
                          "member '%s' is damaged: its deflate data %s after %llu of %llu "
                          "bytes",
                          m->name, status == Z_DATA_ERROR ? "is invalid" : "ends",
                          (unsigned long long)(n - out_left), (unsigned long long)m->size);
    if (n < m->size)
        return PARO_OK;
    if (status != Z_STREAM_END)
        return paro_error(ei, PARO_ERR_FORMAT, z->path, m->data_offset,
                          "member '%s' is damaged: %s", m->name,
                          status == Z_DATA_ERROR ? "its deflate data is invalid"
                          : status == Z_BUF_ERROR
                              ? "its deflate stream is cut short"
                              : "it inflates to more bytes than it declares");
    uint32_t got = crc_of(dst, n);
    return got == m->crc32 ? PARO_OK : crc_mismatch(z, m, got, ei);
}
