/* paro — tensors of one sample from safetensors, .npz or a .npy folder
 * (formats/tensor_file.h). */
#include "tensor_file.h"

#include <dirent.h>   /* opendir, readdir */
#include <errno.h>    /* errno */
#include <pthread.h>  /* pthread_mutex_* */
#include <stddef.h>   /* offsetof */
#include <stdio.h>    /* snprintf, fopen */
#include <stdlib.h>   /* calloc, malloc, free, qsort, bsearch */
#include <string.h>   /* memcmp, strcmp, strlen, strerror */
#include <sys/stat.h> /* stat */

#include "mapped_file.h" /* paro_map_file */
#include "npy.h"         /* paro_npy_parse */
#include "safetensors.h" /* paro_st_open, paro_st_get, paro_st_data */
#include "zip_read.h"    /* paro_unzip_* */

/* Deflated members kept inflated beside the one just acquired while no one
 * holds them: Q, K and V of a layer read by several threads. */
#define KEEP_INFLATED 3
#define STRIPES 16

typedef struct entry {
    char *name;  /* owned, except for safetensors (the reader's) */
    char *where; /* owned */
    int parsed;  /* info is valid; set under the entry's stripe lock */
    paro_tensor info;
    const unsigned char *mapped;     /* the whole .npy, or a stored member's bytes */
    const paro_unzip_member *member; /* .npz */
    paro_mapped_file npy_map;        /* folder */
    int crc_checked;                 /* stored member */
    unsigned char *inflated;         /* deflated member: all its bytes; under lru */
    int refs;                        /* under lru */
    unsigned long stamp;             /* under lru */
} entry;

struct paro_tensor_file {
    char *path;
    paro_container container;
    paro_dtype raw16;
    paro_st_file *st;
    paro_unzip *zip;
    size_t n;
    entry *entries; /* sorted by name */
    pthread_mutex_t stripe[STRIPES];
    pthread_mutex_t lru;
    unsigned long clock;
};

const char *paro_container_name(paro_container c)
{
    switch (c) {
    case PARO_CONTAINER_SAFETENSORS: return "safetensors";
    case PARO_CONTAINER_NPZ: return "npz";
    case PARO_CONTAINER_NPY_FOLDER: return "npy folder";
    }
    return "?";
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const entry *)a)->name, ((const entry *)b)->name);
}

static char *join(const char *a, const char *sep, const char *b, size_t b_len)
{
    size_t la = strlen(a), ls = strlen(sep);
    char *s = malloc(la + ls + b_len + 1);
    if (s) {
        memcpy(s, a, la);
        memcpy(s + la, sep, ls);
        memcpy(s + la + ls, b, b_len);
        s[la + ls + b_len] = 0;
    }
    return s;
}

static int ends_npy(const char *s, size_t len)
{
    return len > 4 && !memcmp(s + len - 4, ".npy", 4);
}

static paro_err open_safetensors(paro_tensor_file *f, paro_errinfo *ei)
{
    paro_err rc = paro_st_open(f->path, &f->st, ei);
    if (rc)
        return rc;
    f->n = paro_st_count(f->st);
    f->entries = calloc(f->n ? f->n : 1, sizeof *f->entries);
    if (!f->entries)
        return paro_error(ei, PARO_ERR_NOMEM, f->path, PARO_NO_OFFSET, "out of memory");
    for (size_t i = 0; i < f->n; i++) {
        const paro_st_tensor *t = paro_st_get(f->st, i);
        entry *e = &f->entries[i];
        e->name = t->name;
        e->parsed = 1;
        e->mapped = paro_st_data(f->st, t);
        e->info.name = t->name;
        e->info.where = f->path;
        e->info.dtype = t->dtype;
        snprintf(e->info.dtype_name, sizeof e->info.dtype_name, "%s", t->dtype_name);
        e->info.ndim = t->ndim;
        memcpy(e->info.shape, t->shape, sizeof t->shape);
        e->info.data_offset = t->data_offset;
        e->info.nbytes = t->nbytes;
    }
    return PARO_OK;
}

static paro_err open_npz(paro_tensor_file *f, paro_errinfo *ei)
{
    paro_err rc = paro_unzip_open(f->path, &f->zip, ei);
    if (rc)
        return rc;
    size_t members = paro_unzip_count(f->zip);
    f->entries = calloc(members ? members : 1, sizeof *f->entries);
    if (!f->entries)
        return paro_error(ei, PARO_ERR_NOMEM, f->path, PARO_NO_OFFSET, "out of memory");
    for (size_t i = 0; i < members; i++) {
        const paro_unzip_member *m = paro_unzip_get(f->zip, i);
        size_t len = strlen(m->name);
        if (!ends_npy(m->name, len))
            continue; /* numpy.load ignores them too */
        entry *e = &f->entries[f->n++];
        e->member = m;
        if (!(e->name = join("", "", m->name, len - 4)) ||
            !(e->where = join(f->path, "/", m->name, len)))
            return paro_error(ei, PARO_ERR_NOMEM, f->path, PARO_NO_OFFSET, "out of memory");
    }
    return PARO_OK;
}

static paro_err open_folder(paro_tensor_file *f, paro_errinfo *ei)
{
    DIR *dir = opendir(f->path);
    if (!dir)
        return paro_error(ei, PARO_ERR_IO, f->path, PARO_NO_OFFSET, "cannot list the folder: %s",
                          strerror(errno));
    size_t cap = 0;
    paro_err rc = PARO_OK;
    struct dirent *d;
    while (!rc && (errno = 0, d = readdir(dir))) {
        size_t len = strlen(d->d_name);
        if (!ends_npy(d->d_name, len) || d->d_name[0] == '.')
            continue;
        if (f->n == cap) {
            size_t grown = cap ? 2 * cap : 64;
            entry *more = realloc(f->entries, grown * sizeof *more);
            if (!more) {
                rc = paro_error(ei, PARO_ERR_NOMEM, f->path, PARO_NO_OFFSET, "out of memory");
                break;
            }
            memset(more + cap, 0, (grown - cap) * sizeof *more);
            f->entries = more;
            cap = grown;
        }
        entry *e = &f->entries[f->n++];
        if (!(e->name = join("", "", d->d_name, len - 4)) ||
            !(e->where = join(f->path, "/", d->d_name, len)))
            rc = paro_error(ei, PARO_ERR_NOMEM, f->path, PARO_NO_OFFSET, "out of memory");
    }
    if (!rc && errno)
        rc = paro_error(ei, PARO_ERR_IO, f->path, PARO_NO_OFFSET, "cannot list the folder: %s",
                        strerror(errno));
    closedir(dir);
    if (!rc && !f->n)
        rc = paro_error(ei, PARO_ERR_FORMAT, f->path, PARO_NO_OFFSET,
                        "is a folder without .npy files; a sample is a safetensors file, an "
                        ".npz, or a folder of .npy files");
    return rc;
}

paro_err paro_tensor_file_open(const char *path, paro_dtype raw16, paro_tensor_file **out,
                               paro_errinfo *ei)
{
    *out = NULL;
    paro_tensor_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return paro_error(ei, PARO_ERR_NOMEM, path, PARO_NO_OFFSET, "out of memory");
    }
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_init(&f->stripe[i], NULL);
    pthread_mutex_init(&f->lru, NULL);
    f->raw16 = raw16;
    paro_err rc;
    struct stat st;
    if (stat(path, &st) != 0) {
        rc = paro_error(ei, PARO_ERR_IO, path, PARO_NO_OFFSET, "cannot open: %s",
                        strerror(errno));
    } else if (S_ISDIR(st.st_mode)) {
        f->container = PARO_CONTAINER_NPY_FOLDER;
        rc = open_folder(f, ei);
    } else if (!S_ISREG(st.st_mode)) { /* a FIFO would hang the sniffing below */
        rc = paro_error(ei, PARO_ERR_IO, path, PARO_NO_OFFSET,
                        "is neither a regular file nor a folder; a sample is a safetensors "
                        "file, an .npz, or a folder of .npy files");
    } else {
        /* The first bytes say which container it is; names can lie. */
        unsigned char head[6] = {0};
        FILE *fp = fopen(path, "rb");
        size_t got = fp ? fread(head, 1, sizeof head, fp) : 0;
        if (fp)
            fclose(fp);
        if (got >= 4 && head[0] == 'P' && head[1] == 'K' &&
            ((head[2] == 3 && head[3] == 4) || (head[2] == 5 && head[3] == 6))) {
            f->container = PARO_CONTAINER_NPZ;
            rc = open_npz(f, ei);
        } else if (got == 6 && !memcmp(head, "\x93NUMPY", 6)) {
            rc = paro_error(ei, PARO_ERR_FORMAT, path, 0,
                            "is a single .npy array; a sample is a folder of .npy files "
                            "(one per tensor) or an .npz");
        } else {
            f->container = PARO_CONTAINER_SAFETENSORS;
            rc = open_safetensors(f, ei);
        }
    }
    if (!rc) {
        qsort(f->entries, f->n, sizeof *f->entries, cmp_entry);
        for (size_t i = 1; i < f->n && !rc; i++)
            if (!strcmp(f->entries[i - 1].name, f->entries[i].name))
                rc = paro_error(ei, PARO_ERR_FORMAT, path, PARO_NO_OFFSET,
                                "holds the tensor '%s' twice", f->entries[i].name);
    }
    if (rc) {
        paro_tensor_file_close(f);
        return rc;
    }
    *out = f;
    return PARO_OK;
}

void paro_tensor_file_close(paro_tensor_file *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n; i++) {
        entry *e = &f->entries[i];
        if (f->container != PARO_CONTAINER_SAFETENSORS)
            free(e->name);
        free(e->where);
        free(e->inflated);
        paro_unmap_file(&e->npy_map);
    }
    free(f->entries);
    paro_st_close(f->st);
    paro_unzip_close(f->zip);
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_destroy(&f->stripe[i]);
    pthread_mutex_destroy(&f->lru);
    free(f->path);
    free(f);
}

paro_container paro_tensor_file_container(const paro_tensor_file *f) { return f->container; }
size_t paro_tensor_file_count(const paro_tensor_file *f) { return f->n; }
const char *paro_tensor_file_name(const paro_tensor_file *f, size_t i)
{
    return i < f->n ? f->entries[i].name : NULL;
}

/* Fills e->info from an .npy header and checks the bytes it describes are
 * exactly the bytes there are. */
static paro_err take_header(entry *e, const paro_npy_header *h, uint64_t total, paro_errinfo *ei)
{
    if (total - h->header_bytes != h->data_bytes)
        return paro_error(ei, PARO_ERR_FORMAT, e->where, h->header_bytes,
                          "%llu bytes follow the .npy header, but shape x '%s' is %llu bytes",
                          (unsigned long long)(total - h->header_bytes), h->descr,
                          (unsigned long long)h->data_bytes);
    e->info.name = e->name;
    e->info.where = e->where;
    e->info.dtype = h->dtype;
    snprintf(e->info.dtype_name, sizeof e->info.dtype_name, "%s", h->descr);
    e->info.ndim = h->ndim;
    memcpy(e->info.shape, h->shape, sizeof h->shape);
    e->info.data_offset = h->header_bytes;
    e->info.nbytes = h->data_bytes;
    return PARO_OK;
}

static paro_err parse_member(paro_tensor_file *f, entry *e, paro_errinfo *ei)
{
    const paro_unzip_member *m = e->member;
    paro_npy_header h;
    size_t need = 0;
    const unsigned char *stored = paro_unzip_stored_data(f->zip, m);
    if (stored) {
        paro_err rc = paro_npy_parse(stored, (size_t)m->size, f->raw16, e->where, 0, &h, &need,
                                     ei);
        if (!rc && need)
            rc = paro_error(ei, PARO_ERR_FORMAT, e->where, m->size,
                            "the member ends inside its .npy header");
        if (!rc)
            e->mapped = stored;
        return rc ? rc : take_header(e, &h, m->size, ei);
    }
    /* Deflated: inflate the header only, growing to the length it states. */
    size_t have = m->size < 128 ? (size_t)m->size : 128;
    unsigned char *buf = NULL;
    paro_err rc = PARO_OK;
    for (;;) {
        unsigned char *grown = realloc(buf, have ? have : 1);
        if (!grown) {
            rc = paro_error(ei, PARO_ERR_NOMEM, e->where, PARO_NO_OFFSET, "out of memory");
            break;
        }
        buf = grown;
        if ((rc = paro_unzip_extract(f->zip, m, buf, have, ei)) ||
            (rc = paro_npy_parse(buf, have, f->raw16, e->where, 0, &h, &need, ei)) || !need)
            break;
        if (need > m->size) {
            rc = paro_error(ei, PARO_ERR_FORMAT, e->where, m->size,
                            "the member ends inside its .npy header");
            break;
        }
        have = need;
    }
    free(buf);
    return rc ? rc : take_header(e, &h, m->size, ei);
}

static paro_err parse_npy_file(entry *e, paro_dtype raw16, paro_errinfo *ei)
{
    paro_err rc = paro_map_file(e->where, "an .npy file", &e->npy_map, ei);
    if (rc)
        return rc;
    paro_npy_header h;
    size_t need = 0;
    static const unsigned char none[1];
    const unsigned char *p = e->npy_map.data ? e->npy_map.data : none;
    rc = paro_npy_parse(p, (size_t)e->npy_map.size, raw16, e->where, 0, &h, &need, ei);
    if (!rc && need)
        rc = paro_error(ei, PARO_ERR_FORMAT, e->where, e->npy_map.size,
                        "the file ends inside its .npy header (%llu bytes)",
                        (unsigned long long)e->npy_map.size);
    if (!rc)
        rc = take_header(e, &h, e->npy_map.size, ei);
    if (rc)
        paro_unmap_file(&e->npy_map);
    else
        e->mapped = e->npy_map.data;
    return rc;
}

static pthread_mutex_t *stripe_of(paro_tensor_file *f, const entry *e)
{
    return &f->stripe[(size_t)(e - f->entries) % STRIPES];
}

paro_err paro_tensor_file_find(paro_tensor_file *f, const char *name, const paro_tensor **t,
                               paro_errinfo *ei)
{
    *t = NULL;
    entry key = {.name = (char *)name};
    entry *e = bsearch(&key, f->entries, f->n, sizeof *f->entries, cmp_entry);
    if (!e)
        return PARO_OK;
    paro_err rc = PARO_OK;
    pthread_mutex_t *lock = stripe_of(f, e);
    pthread_mutex_lock(lock);
    if (!e->parsed) {
        rc = f->container == PARO_CONTAINER_NPZ ? parse_member(f, e, ei)
                                                : parse_npy_file(e, f->raw16, ei);
        e->parsed = !rc;
    }
    pthread_mutex_unlock(lock);
    if (!rc)
        *t = &e->info;
    return rc;
}

static entry *entry_of(const paro_tensor *t)
{
    return (entry *)((char *)t - offsetof(entry, info));
}

/* Frees inflated members no one holds, but the KEEP_INFLATED newest.
 * Called with f->lru held. */
static void evict(paro_tensor_file *f, const entry *keep)
{
    for (;;) {
        size_t idle = 0;
        entry *oldest = NULL;
        for (size_t i = 0; i < f->n; i++) {
            entry *e = &f->entries[i];
            if (e == keep || !e->inflated || e->refs)
                continue;
            idle++;
            if (!oldest || e->stamp < oldest->stamp)
                oldest = e;
        }
        if (idle <= KEEP_INFLATED)
            return;
        free(oldest->inflated);
        oldest->inflated = NULL;
    }
}

paro_err paro_tensor_file_acquire(paro_tensor_file *f, const paro_tensor *t,
                                  const unsigned char **data, paro_errinfo *ei)
{
    entry *e = entry_of(t);
    *data = NULL;
    if (e->mapped) {
        if (e->member && !e->crc_checked) { /* stored member: check once */
            pthread_mutex_t *lock = stripe_of(f, e);
            paro_err rc = PARO_OK;
            pthread_mutex_lock(lock);
            if (!e->crc_checked) {
                rc = paro_unzip_check_crc(f->zip, e->member, ei);
                e->crc_checked = !rc;
            }
            pthread_mutex_unlock(lock);
            if (rc)
                return rc;
        }
        *data = e->mapped + (f->container == PARO_CONTAINER_SAFETENSORS ? 0 : t->data_offset);
        return PARO_OK;
    }
    pthread_mutex_lock(&f->lru);
    if (e->inflated) {
        e->refs++;
        e->stamp = ++f->clock;
        *data = e->inflated + t->data_offset;
        pthread_mutex_unlock(&f->lru);
        return PARO_OK;
    }
    pthread_mutex_unlock(&f->lru);

    /* Inflate outside the bookkeeping lock, so that Q and K inflate at the
     * same time; the stripe lock keeps one thread per member doing it. */
    pthread_mutex_t *lock = stripe_of(f, e);
    pthread_mutex_lock(lock);
    pthread_mutex_lock(&f->lru);
    unsigned char *ready = e->inflated;
    if (ready) {
        e->refs++;
        e->stamp = ++f->clock;
    }
    pthread_mutex_unlock(&f->lru);
    paro_err rc = PARO_OK;
    if (!ready) {
        const uint64_t size = e->member->size;
        unsigned char *buf = size <= SIZE_MAX ? malloc(size ? (size_t)size : 1) : NULL;
        if (!buf)
            rc = paro_error(ei, PARO_ERR_NOMEM, e->where, PARO_NO_OFFSET,
                            "out of memory for the %llu bytes of the member",
                            (unsigned long long)size);
        else
            rc = paro_unzip_extract(f->zip, e->member, buf, size, ei);
        if (rc) {
            free(buf);
        } else {
            pthread_mutex_lock(&f->lru);
            e->inflated = ready = buf;
            e->refs++;
            e->stamp = ++f->clock;
            evict(f, e);
            pthread_mutex_unlock(&f->lru);
        }
    }
    pthread_mutex_unlock(lock);
    if (!rc)
        *data = ready + t->data_offset;
    return rc;
}

void paro_tensor_file_release(paro_tensor_file *f, const paro_tensor *t)
{
    entry *e = entry_of(t);
    if (e->mapped)
        return;
    pthread_mutex_lock(&f->lru);
    if (e->refs > 0)
        e->refs--;
    pthread_mutex_unlock(&f->lru);
}

paro_err paro_tensor_file_stats(paro_tensor_file *f, const paro_tensor *t,
                                paro_tensor_stats *out, paro_errinfo *ei)
{
    memset(out, 0, sizeof *out);
    size_t esize = paro_dtype_size(t->dtype);
    if (!esize)
        return paro_error(ei, PARO_ERR_USAGE, t->where, PARO_NO_OFFSET,
                          "tensor '%s' (%s) is not a float tensor paro reads", t->name,
                          t->dtype_name);
    const unsigned char *data;
    paro_err rc = paro_tensor_file_acquire(f, t, &data, ei);
    if (rc)
        return rc;
    enum { CHUNK = 4096 };
    float buf[CHUNK];
    double sum_abs = 0.0, lo = 0.0, hi = 0.0;
    out->count = t->nbytes / esize;
    for (uint64_t start = 0; start < out->count; start += CHUNK) {
        size_t len = out->count - start < CHUNK ? (size_t)(out->count - start) : CHUNK;
        paro_convert_to_f32(t->dtype, data + start * esize, buf, len);
        for (size_t i = 0; i < len; i++) {
            float x = buf[i];
            if (x != x) {
                out->nan++;
            } else if (x - x != 0.0f) {
                out->inf++;
            } else {
                if (!out->finite++)
                    lo = hi = x;
                lo = x < lo ? x : lo;
                hi = x > hi ? x : hi;
                sum_abs += x < 0 ? -x : x;
            }
        }
    }
    paro_tensor_file_release(f, t);
    out->min = lo;
    out->max = hi;
    out->mean_abs = out->finite ? sum_abs / (double)out->finite : 0.0;
    return PARO_OK;
}
