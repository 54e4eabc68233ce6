/* paro — the calibration journal (see journal.h). */
#include "journal.h"

#include <errno.h>    /* errno, ENOENT, EINTR */
#include <fcntl.h>    /* open, O_* */
#include <stdlib.h>   /* calloc, malloc, free */
#include <string.h>   /* memcpy, memcmp, strdup, strerror */
#include <sys/stat.h> /* fstat, S_ISREG */
#include <unistd.h>   /* read, write, fsync, ftruncate, lseek, unlink, close */
#include <zlib.h>     /* crc32 */

#define MAGIC "PAROJRNL"
#define VERSION 1u
#define HEADER_BYTES 24u

struct paro_journal {
    int fd;
    char *path;
    uint32_t n_layers;
    uint8_t *loaded; /* [n_layers] */
};

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* The per-layer arrays of a plan, in payload order. */
typedef struct layer_parts {
    size_t order_bytes, score_count, bucket_count, mask_bytes, tile_mass_bytes, total;
} layer_parts;

static layer_parts parts_of(const paro_plan *p)
{
    layer_parts lp;
    lp.order_bytes = p->heads;
    lp.score_count = (size_t)p->heads * p->n_orders * PARO_N_SCORES;
    lp.bucket_count = (size_t)p->n_buckets * p->heads;
    lp.mask_bytes = paro_plan_mask_bytes(p);
    /* a resumed run must write the same plan, tile masses included */
    lp.tile_mass_bytes = p->with_tile_mass ? paro_plan_tile_mass_bytes(p) : 0;
    lp.total = 12 + lp.order_bytes + 8 * (lp.score_count + 2 * lp.bucket_count) + lp.mask_bytes +
               lp.tile_mass_bytes;
    return lp;
}

static void put_f64s(uint8_t *p, const double *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t bits;
        memcpy(&bits, &v[i], 8);
        put_u64(p + 8 * i, bits);
    }
}

static void get_f64s(const uint8_t *p, double *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t bits = get_u64(p + 8 * i);
        memcpy(&v[i], &bits, 8);
    }
}

static paro_err write_all(paro_journal *j, const void *buf, size_t n, paro_errinfo *ei)
{
    const uint8_t *p = buf;
    while (n > 0) {
        ssize_t w = write(j->fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return paro_error(ei, PARO_ERR_IO, j->path, PARO_NO_OFFSET, "cannot write: %s",
                              strerror(w < 0 ? errno : ENOSPC));
        p += w;
        n -= (size_t)w;
    }
    return PARO_OK;
}

/* Reads what the journal holds into plan; returns the offset where the valid
 * part ends. */
static uint64_t load_records(paro_journal *j, const uint8_t *buf, uint64_t size, paro_plan *plan,
                             uint32_t *count)
{
    const layer_parts lp = parts_of(plan);
    uint64_t at = HEADER_BYTES;
    *count = 0;
    while (size - at >= 8) {
        uint32_t len = get_u32(buf + at), crc = get_u32(buf + at + 4);
        if (len != lp.total || size - at - 8 < len)
            break;
        const uint8_t *p = buf + at + 8;
        if (crc32(crc32(0L, Z_NULL, 0), p, len) != crc)
            break;
        uint32_t l = get_u32(p);
        if (l >= plan->n_layers || get_u32(p + 4) != plan->layers[l] || j->loaded[l])
            break;
        plan->layer_crc32[l] = get_u32(p + 8);
        p += 12;
        memcpy(plan->head_order + (size_t)l * plan->heads, p, lp.order_bytes);
        p += lp.order_bytes;
        get_f64s(p, plan->scores + (size_t)l * lp.score_count, lp.score_count);
        p += 8 * lp.score_count;
        get_f64s(p, plan->density + (size_t)l * lp.bucket_count, lp.bucket_count);
        p += 8 * lp.bucket_count;
        get_f64s(p, plan->recall + (size_t)l * lp.bucket_count, lp.bucket_count);
        p += 8 * lp.bucket_count;
        memcpy(plan->masks[l], p, lp.mask_bytes);
        p += lp.mask_bytes;
        if (lp.tile_mass_bytes)
            memcpy(plan->tile_mass[l], p, lp.tile_mass_bytes);
        j->loaded[l] = 1;
        (*count)++;
        at += 8 + (uint64_t)len;
    }
    return at;
}

static paro_err start_new(paro_journal *j, uint32_t config_crc, uint64_t config_len,
                          paro_errinfo *ei)
{
    uint8_t header[HEADER_BYTES];
    memcpy(header, MAGIC, 8);
    put_u32(header + 8, VERSION);
    put_u32(header + 12, config_crc);
    put_u64(header + 16, config_len);
    if (ftruncate(j->fd, 0) != 0 || lseek(j->fd, 0, SEEK_SET) != 0)
        return paro_error(ei, PARO_ERR_IO, j->path, PARO_NO_OFFSET, "cannot reset: %s",
                          strerror(errno));
    paro_err rc = write_all(j, header, sizeof header, ei);
    if (!rc && fsync(j->fd) != 0)
        rc = paro_error(ei, PARO_ERR_IO, j->path, PARO_NO_OFFSET, "cannot sync: %s",
                        strerror(errno));
    return rc;
}

paro_err paro_journal_open(const char *path, uint32_t config_crc, uint64_t config_len, int resume,
                           paro_plan *plan, paro_journal **out, uint32_t *resumed,
                           paro_errinfo *ei)
{
    *out = NULL;
    *resumed = 0;
    paro_journal *j = calloc(1, sizeof *j);
    if (!j || !(j->path = strdup(path)) ||
        !(j->loaded = calloc(plan->n_layers ? plan->n_layers : 1, 1))) {
        if (j)
            free(j->path);
        free(j);
        return paro_error(ei, PARO_ERR_NOMEM, path, PARO_NO_OFFSET, "out of memory");
    }
    j->n_layers = plan->n_layers;
    j->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (j->fd < 0) {
        paro_err rc = paro_error(ei, PARO_ERR_IO, path, PARO_NO_OFFSET,
                                 "cannot open the journal: %s", strerror(errno));
        paro_journal_close(j, 0);
        return rc;
    }
    paro_err rc = PARO_OK;
    struct stat st;
    if (resume && fstat(j->fd, &st) == 0 && st.st_size >= (off_t)HEADER_BYTES) {
        uint64_t size = (uint64_t)st.st_size;
        uint8_t *buf = malloc(size);
        ssize_t got = buf ? read(j->fd, buf, size) : -1;
        if (got != (ssize_t)size) {
            rc = paro_error(ei, buf ? PARO_ERR_IO : PARO_ERR_NOMEM, path, PARO_NO_OFFSET,
                            "cannot read the journal");
        } else if (memcmp(buf, MAGIC, 8) != 0 || get_u32(buf + 8) != VERSION) {
            rc = paro_error(ei, PARO_ERR_USAGE, path, 0,
                            "is not a paro journal of this version; move it away to start over");
        } else if (get_u32(buf + 12) != config_crc || get_u64(buf + 16) != config_len) {
            rc = paro_error(ei, PARO_ERR_USAGE, path, 12,
                            "was made with other inputs or settings, so it cannot be resumed; "
                            "rerun without --resume to start over");
        } else {
            uint64_t end = load_records(j, buf, size, plan, resumed);
            /* Cut off a record that was being written when the run stopped. */
            if (ftruncate(j->fd, (off_t)end) != 0 || lseek(j->fd, (off_t)end, SEEK_SET) < 0)
                rc = paro_error(ei, PARO_ERR_IO, path, PARO_NO_OFFSET, "cannot truncate: %s",
                                strerror(errno));
        }
        free(buf);
    } else {
        rc = start_new(j, config_crc, config_len, ei);
    }
    if (rc) {
        paro_journal_close(j, 0);
        return rc;
    }
    *out = j;
    return PARO_OK;
}

int paro_journal_has(const paro_journal *j, uint32_t l)
{
    return j && l < j->n_layers && j->loaded[l];
}

paro_err paro_journal_append(paro_journal *j, const paro_plan *plan, uint32_t l, paro_errinfo *ei)
{
    const layer_parts lp = parts_of(plan);
    uint8_t *rec = malloc(8 + lp.total);
    if (!rec)
        return paro_error(ei, PARO_ERR_NOMEM, j->path, PARO_NO_OFFSET, "out of memory");
    uint8_t *p = rec + 8;
    put_u32(p, l);
    put_u32(p + 4, plan->layers[l]);
    put_u32(p + 8, plan->layer_crc32[l]);
    p += 12;
    memcpy(p, plan->head_order + (size_t)l * plan->heads, lp.order_bytes);
    p += lp.order_bytes;
    put_f64s(p, plan->scores + (size_t)l * lp.score_count, lp.score_count);
    p += 8 * lp.score_count;
    put_f64s(p, plan->density + (size_t)l * lp.bucket_count, lp.bucket_count);
    p += 8 * lp.bucket_count;
    put_f64s(p, plan->recall + (size_t)l * lp.bucket_count, lp.bucket_count);
    p += 8 * lp.bucket_count;
    memcpy(p, plan->masks[l], lp.mask_bytes);
    p += lp.mask_bytes;
    if (lp.tile_mass_bytes)
        memcpy(p, plan->tile_mass[l], lp.tile_mass_bytes);
    put_u32(rec, (uint32_t)lp.total);
    put_u32(rec + 4, (uint32_t)crc32(crc32(0L, Z_NULL, 0), rec + 8, (uInt)lp.total));
    paro_err rc = write_all(j, rec, 8 + lp.total, ei);
    free(rec);
    if (!rc && fsync(j->fd) != 0)
        rc = paro_error(ei, PARO_ERR_IO, j->path, PARO_NO_OFFSET, "cannot sync: %s",
                        strerror(errno));
    return rc;
}

void paro_journal_close(paro_journal *j, int remove)
{
    if (!j)
        return;
    if (j->fd >= 0)
        close(j->fd);
    if (remove)
        unlink(j->path);
    free(j->path);
    free(j->loaded);
    free(j);
}

int paro_journal_discard_empty(const char *path)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT;
    uint8_t head[HEADER_BYTES + 4]; /* the header, the first record's length */
    struct stat st;
    ssize_t got = -1;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
        do
            got = read(fd, head, sizeof head);
        while (got < 0 && errno == EINTR);
    close(fd);
    const uint64_t size = got < 0 ? 0 : (uint64_t)st.st_size;
    if (got < 0 || (uint64_t)got != (size < sizeof head ? size : sizeof head))
        return 0;
    /* ours: the header, or as much of it as a failed write left */
    uint8_t want[12];
    memcpy(want, MAGIC, 8);
    put_u32(want + 8, VERSION);
    if (memcmp(head, want, (size_t)got < sizeof want ? (size_t)got : sizeof want) != 0)
        return 0;
    const uint64_t first = HEADER_BYTES + 8; /* where the first record's payload starts */
    int whole_record = size >= first && size - first >= get_u32(head + HEADER_BYTES);
    return !whole_record && unlink(path) == 0;
}
