/* paro — the calibration driver (see calibrate.h). */
#include "calibrate.h"

#include <math.h>     /* isfinite */
#include <pthread.h>  /* pthread_create, pthread_join */
#include <stdio.h>    /* snprintf */
#include <stdlib.h>   /* calloc, free, aligned_alloc */
#include <string.h>   /* memset, strlen */
#include <sys/stat.h> /* stat */
#include <time.h>     /* clock_gettime */
#include <zlib.h>     /* crc32, crc32_z, crc32_combine */

#include "backend.h"    /* paro_backend */
#include "crc32.h"      /* paro_crc32, paro_crc32_bf16_as_f32 */
#include "journal.h"    /* paro_journal_* */
#include "metrics.h"    /* PARO_DEFAULT_ALPHA, PARO_DEFAULT_SCORE_RECALL */
#include "order.h"      /* paro_order_name */
#include "parallel.h"   /* paro_parallel_for */
#include "select.h"     /* paro_score_head */
#include "stats.h"      /* paro_block_stats */
#include "tile_stats.h" /* paro_tiling, paro_tile_stats_cpu */

#ifndef PARO_VERSION
#define PARO_VERSION "0"
#endif

void paro_calib_config_default(paro_calib_config *c)
{
    memset(c, 0, sizeof *c);
    c->block_q = c->block_k = PARO_DEFAULT_BLOCK;
    c->target.mode = PARO_TARGET_DENSITY;
    c->target.value = PARO_DEFAULT_DENSITY;
    c->target.keep_text = 1;
    c->alpha = PARO_DEFAULT_ALPHA;
    c->score_recall = PARO_DEFAULT_SCORE_RECALL;
    c->n_buckets = 1;
    c->dense_until = 0.0;
    c->threads = 1;
    c->device = PARO_DEVICE_AUTO;
}

uint32_t paro_bucket_of(double progress, uint32_t n_buckets)
{
    if (!(progress > 0.0))
        return 0;
    double b = progress * (double)n_buckets;
    if (b >= (double)n_buckets)
        return n_buckets - 1;
    return (uint32_t)b;
}

/* ---- validation ------------------------------------------------------- */

static paro_err check_config(const paro_manifest *m, const paro_calib_config *c,
                             paro_errinfo *ei)
{
#define BAD(...) paro_error(ei, PARO_ERR_USAGE, NULL, PARO_NO_OFFSET, __VA_ARGS__)
    if (c->block_q < 1 || c->block_k < 1)
        return BAD("block sizes must be >= 1");
    if (!(c->alpha >= 0.0 && c->alpha <= 1.0))
        return BAD("alpha must be in [0, 1]");
    if (!(c->score_recall > 0.0 && c->score_recall <= 1.0))
        return BAD("score recall must be in (0, 1]");
    if (c->n_buckets < 1 || c->n_buckets > PARO_PLAN_MAX_BUCKETS)
        return BAD("timestep buckets must be in [1, %u]", PARO_PLAN_MAX_BUCKETS);
    if (!(c->dense_until >= 0.0 && c->dense_until <= 1.0))
        return BAD("dense-until must be in [0, 1]");
    if (c->threads < 1)
        return BAD("threads must be >= 1");
    if (c->gpus) {
        if (c->n_gpus < 1 || c->n_gpus > PARO_CALIB_MAX_GPUS)
            return BAD("between 1 and %d GPUs can be given", PARO_CALIB_MAX_GPUS);
        for (uint32_t i = 0; i < c->n_gpus; i++)
            if (c->gpus[i] < 0)
                return BAD("GPU %d does not exist", c->gpus[i]);
    }
    switch (c->target.mode) {
    case PARO_TARGET_DENSITY:
    case PARO_TARGET_RECALL:
        if (!(c->target.value >= 0.0 && c->target.value <= 1.0))
            return BAD("%s must be in [0, 1]", paro_target_name(c->target.mode));
        break;
    case PARO_TARGET_THRESHOLD:
        if (!(c->target.value >= 0.0) || !isfinite(c->target.value))
            return BAD("threshold must be a finite number >= 0");
        break;
    default:
        return BAD("unknown mask target");
    }
    for (uint32_t i = 0; c->layers && i < c->n_layers; i++) {
        if (c->layers[i] >= m->layers)
            return BAD("layer %u is out of range: the capture has layers 0..%u", c->layers[i],
                       m->layers - 1);
        if (i > 0 && c->layers[i] <= c->layers[i - 1])
            return BAD("layers must be listed once each, in increasing order");
    }
    if (c->layers && c->n_layers == 0)
        return BAD("no layers selected");
    return paro_manifest_check_samples(m, c->samples, c->n_samples, ei);
#undef BAD
}

/* ---- per-layer results into the plan ----------------------------------- */

/* Scores, orders and masks of one layer's heads, in parallel: each head
 * writes its own entries of the plan and its own keep[] rows; the packed
 * mask bits are set afterwards on one thread, since two heads can share a
 * byte of them. */
typedef struct layer_job {
    paro_plan *plan;
    uint32_t slot_l;
    const paro_tiling *t;
    const paro_block_stats *st;
    const paro_calib_config *cfg;
    uint8_t *keep;          /* [heads][n_buckets][nq*nk] */
    unsigned char *scratch; /* [workers][scratch_bytes] */
    size_t scratch_bytes;
} layer_job;

static size_t layer_scratch_bytes(size_t nt)
{
    size_t score = paro_score_scratch_bytes(nt);
    size_t mask = nt * sizeof(double) + paro_mask_scratch_bytes(nt);
    return ((score > mask ? score : mask) + 63) / 64 * 64;
}

static void finish_head(void *ctx, uint32_t h, int worker)
{
    layer_job *job = ctx;
    paro_plan *plan = job->plan;
    const paro_tiling *t = job->t;
    const paro_block_stats *st = job->st;
    const size_t nt = paro_tiling_tiles(t);
    unsigned char *scratch = job->scratch + (size_t)worker * job->scratch_bytes;
    paro_head_choice choice;
    paro_score_head(t, st, h, job->cfg->alpha, job->cfg->score_recall, &choice, scratch);
    plan->head_order[paro_plan_head_index(plan, job->slot_l, h)] = (uint8_t)choice.order;
    for (int o = 0; o < PARO_N_ORDERS; o++)
        memcpy(paro_plan_scores_at(plan, job->slot_l, h, (uint32_t)o), choice.scores[o],
               sizeof choice.scores[o]);
    const uint32_t slot = (uint32_t)t->slot_of_order[choice.order];
    double *mean = (double *)scratch;
    for (uint32_t b = 0; b < plan->n_buckets; b++) {
        uint8_t *keep = job->keep + ((size_t)h * plan->n_buckets + b) * nt;
        size_t at = paro_plan_bucket_index(plan, job->slot_l, b, h);
        double density, recall;
        const double *sum = paro_block_stats_mass_row(st, b, h, slot, mean);
        double count = (double)st->count[(size_t)b * st->heads + h];
        for (size_t i = 0; i < nt; i++)
            mean[i] = count > 0 ? sum[i] / count : 0.0;
        /* the picture shows what the mask was made from, dense buckets too */
        paro_plan_set_tile_mass(plan, job->slot_l, b, h, mean);
        if ((double)(b + 1) / (double)plan->n_buckets <= job->cfg->dense_until) {
            memset(keep, 1, nt);
            density = recall = 1.0;
        } else {
            paro_build_mask(t, mean, &job->cfg->target, keep, &density, &recall, mean + nt);
        }
        plan->density[at] = density;
        plan->recall[at] = recall;
    }
}

/* The buffers finish_layer needs, kept from one layer to the next. */
typedef struct layer_space {
    uint8_t *keep;
    unsigned char *scratch;
} layer_space;

static void layer_space_free(layer_space *sp)
{
    free(sp->keep);
    free(sp->scratch);
    sp->keep = NULL;
    sp->scratch = NULL;
}

/* Sets bit (at + i) of bits (LSB first) for every keep[i] != 0, i < n; the
 * bits are clear to begin with.  Whole bytes take eight flags at once: each
 * flag byte folded to its lowest bit, then one multiply gathers the eight. */
static void pack_bits(uint8_t *bits, uint64_t at, const uint8_t *keep, size_t n)
{
    size_t i = 0;
    for (; i < n && ((at + i) & 7); i++)
        if (keep[i])
            bits[(at + i) >> 3] |= (uint8_t)(1u << ((at + i) & 7));
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, keep + i, 8); /* hosts are little-endian (x86-64, arm64) */
        x |= x >> 4;
        x |= x >> 2;
        x |= x >> 1;
        x &= 0x0101010101010101u;
        bits[(at + i) >> 3] = (uint8_t)((x * 0x0102040810204080u) >> 56);
    }
    for (; i < n; i++)
        if (keep[i])
            bits[(at + i) >> 3] |= (uint8_t)(1u << ((at + i) & 7));
}

static paro_err finish_layer(paro_plan *plan, uint32_t slot_l, const paro_tiling *t,
                             const paro_block_stats *st, const paro_calib_config *cfg,
                             layer_space *sp, paro_errinfo *ei)
{
    const size_t nt = paro_tiling_tiles(t);
    const int workers = cfg->threads < (int)plan->heads ? cfg->threads : (int)plan->heads;
    layer_job job = {plan, slot_l, t, st, cfg, sp->keep, sp->scratch, layer_scratch_bytes(nt)};
    if (!job.keep)
        job.keep = sp->keep = malloc((size_t)plan->heads * plan->n_buckets * nt);
    if (!job.scratch)
        job.scratch = sp->scratch = aligned_alloc(64, (size_t)workers * job.scratch_bytes);
    if (!job.keep || !job.scratch)
        return paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET,
                          "out of memory for the masks of a layer");
    paro_parallel_for(workers, plan->heads, finish_head, &job);
    /* Pack the kept tiles: bit ((b*heads + h)*nq*nk + tile), LSB first
     * (PLAN.md's MASKS), one (bucket, head) run after the other. */
    uint8_t *bits = plan->masks[slot_l];
    memset(bits, 0, paro_plan_mask_bytes(plan));
    for (uint32_t b = 0; b < plan->n_buckets; b++)
        for (uint32_t h = 0; h < plan->heads; h++)
            pack_bits(bits, ((uint64_t)b * plan->heads + h) * nt,
                      job.keep + ((size_t)h * plan->n_buckets + b) * nt, nt);
    return PARO_OK;
}

/* Scoring a finished layer on its own thread, while the next one is read
 * and computed. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct finisher {
    double seconds;        /* spent scoring, all layers */
    double journal_seconds; /* of which appending to the journal */
    layer_space space;
    pthread_t tid;
    int running;
    paro_journal *journal; /* finished layers are saved here (may be NULL) */
    pthread_mutex_t *journal_lock; /* held while appending (lanes share the journal) */
    paro_plan *plan;
    uint32_t slot_l;
    const paro_tiling *t;
    const paro_block_stats *st;
    const paro_calib_config *cfg;
    paro_err rc;
    paro_errinfo ei;
} finisher;

static void *finisher_main(void *arg)
{
    finisher *f = arg;
    double start = now_s();
    f->rc = finish_layer(f->plan, f->slot_l, f->t, f->st, f->cfg, &f->space, &f->ei);
    if (!f->rc && f->journal) {
        double at = now_s();
        pthread_mutex_lock(f->journal_lock);
        f->rc = paro_journal_append(f->journal, f->plan, f->slot_l, &f->ei);
        pthread_mutex_unlock(f->journal_lock);
        f->journal_seconds += now_s() - at;
    }
    f->seconds += now_s() - start;
    return NULL;
}

static void finisher_start(finisher *f, paro_plan *plan, uint32_t slot_l, const paro_tiling *t,
                           const paro_block_stats *st, const paro_calib_config *cfg)
{
    f->plan = plan;
    f->slot_l = slot_l;
    f->t = t;
    f->st = st;
    f->cfg = cfg;
    f->rc = PARO_OK;
    paro_errinfo_clear(&f->ei);
    f->running = pthread_create(&f->tid, NULL, finisher_main, f) == 0;
    if (!f->running)
        finisher_main(f); /* no thread to be had: the same work, in line */
}

static paro_err finisher_join(finisher *f, paro_errinfo *ei)
{
    if (f->running)
        pthread_join(f->tid, NULL);
    f->running = 0;
    paro_err rc = f->rc;
    if (rc && ei)
        *ei = f->ei;
    f->rc = PARO_OK;
    return rc;
}

/* Reading a sample's Q and K on worker threads, a (tensor, head) per item,
 * each item also taking the CRC-32 of what it wrote while it is in cache.
 * The per-item CRCs are combined in order afterwards: the same value as one
 * crc32() over Q and then K. */
typedef struct read_job {
    paro_sample_file *sf;
    uint32_t layer, heads;
    size_t head_floats;
    float *q, *k;       /* f32 buffers, or */
    uint16_t *q16, *k16; /* bf16 ones (a bf16 sample for a backend that takes it) */
    uLong *part;       /* [2 * heads] */
    paro_err *rc;      /* [2 * heads] */
    paro_errinfo *ei;  /* [2 * heads] */
} read_job;

static void read_head(void *ctx, uint32_t item, int worker)
{
    read_job *job = ctx;
    (void)worker;
    const int is_k = item >= job->heads;
    const uint32_t h = item % job->heads;
    const paro_kind kind = is_k ? PARO_KIND_K : PARO_KIND_Q;
    paro_errinfo_clear(&job->ei[item]);
    uint32_t crc = 0;
    if (job->q16) {
        uint16_t *dst = (is_k ? job->k16 : job->q16) + h * job->head_floats;
        job->rc[item] =
            paro_sample_read_heads_bf16(job->sf, kind, job->layer, h, h + 1,
                                        is_k ? job->k16 : job->q16, &job->ei[item]);
        /* The digest covers the values as f32 whatever the buffers hold. */
        if (!job->rc[item])
            crc = paro_crc32_bf16_as_f32(crc, dst, job->head_floats);
    } else {
        float *dst = is_k ? job->k : job->q;
        job->rc[item] = paro_sample_read_heads(job->sf, kind, job->layer, h, h + 1, dst,
                                               &job->ei[item]);
        if (!job->rc[item])
            crc = paro_crc32(crc, dst + h * job->head_floats, job->head_floats * sizeof *dst);
    }
    job->part[item] = crc;
}

/* Whether a sample's Q and K of a layer can go to the backend as bf16. */
static int sample_is_bf16(const paro_backend *backend, paro_sample_file *sf, uint32_t layer)
{
    if (!backend->buffers_bf16)
        return 0;
    paro_dtype dq, dk;
    return paro_sample_dtype(sf, PARO_KIND_Q, layer, &dq, NULL) == PARO_OK &&
           paro_sample_dtype(sf, PARO_KIND_K, layer, &dk, NULL) == PARO_OK &&
           dq == PARO_DTYPE_BF16 && dk == PARO_DTYPE_BF16;
}

/* Reads one sample's Q and K of a layer into the backend's buffers and adds
 * them to the layer's digest.  The digest covers the values as f32, not the
 * file's bytes, so the same capture in another container or layout gives
 * the same plan.  (Hosts are little-endian: x86-64 and arm64.) */
static paro_err read_sample(paro_backend *backend, const paro_manifest *m, uint32_t sample,
                            uint32_t layer, int threads, uLong *crc, paro_errinfo *ei)
{
    paro_sample_file *sf = NULL;
    paro_err rc = paro_sample_open(m, sample, &sf, ei);
    if (rc)
        return rc;
    const uint32_t items = 2 * m->heads;
    read_job job = {sf, layer, m->heads, (size_t)m->n_tokens * m->head_dim, NULL, NULL,
                    NULL, NULL, malloc(items * sizeof(uLong)), malloc(items * sizeof(paro_err)),
                    malloc(items * sizeof(paro_errinfo))};
    if (sample_is_bf16(backend, sf, layer))
        rc = backend->buffers_bf16(backend, &job.q16, &job.k16, ei);
    else
        rc = backend->buffers(backend, &job.q, &job.k, ei);
    if (!rc && (!job.part || !job.rc || !job.ei)) {
        rc = paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory");
    } else if (!rc) {
        paro_parallel_for(threads, items, read_head, &job);
        /* The first failure in (tensor, head) order: the same message
         * whatever the thread count. */
        for (uint32_t i = 0; i < items && !rc; i++)
            if (job.rc[i]) {
                rc = job.rc[i];
                if (ei && ei->code == PARO_OK)
                    *ei = job.ei[i];
            }
        for (uint32_t i = 0; i < items && !rc; i++)
            *crc = crc32_combine(*crc, job.part[i],
                                 (z_off_t)(job.head_floats * sizeof(float)));
    }
    free(job.part);
    free(job.rc);
    free(job.ei);
    paro_sample_close(sf);
    return rc;
}

/* What a journal must have been made with to be resumed: the plan's
 * metadata as it starts (every setting, the samples, the tool and the
 * backend; --keep-last among them, as target.keep_last), the manifest's
 * bytes, whether tile masses are kept, and each calibration sample file's
 * size and modification time, to the nanosecond (a file that changed
 * invalidates the journal). */
static paro_err config_digest(const paro_manifest *m, const paro_plan *plan,
                              const uint32_t *samples, size_t n_samples, uint32_t *crc_out,
                              uint64_t *len_out, paro_errinfo *ei)
{
    char *meta = paro_plan_to_json(plan);
    if (!meta)
        return paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory");
    size_t len = strlen(meta);
    uLong crc = crc32_z(crc32(0L, Z_NULL, 0), (const Bytef *)meta, len);
    free(meta);
    unsigned char word[8];
    for (int i = 0; i < 4; i++)
        word[i] = (unsigned char)(m->crc32 >> (8 * i));
    crc = crc32(crc, word, 4);
    len += 4;
    /* records with tile masses are longer: --tile-mass must match too */
    word[0] = (unsigned char)(plan->with_tile_mass != 0);
    crc = crc32(crc, word, 1);
    len += 1;
    for (size_t i = 0; i < n_samples; i++) {
        char *path = paro_manifest_sample_path(m, samples[i]);
        struct stat st;
        int ok = path && stat(path, &st) == 0;
        free(path);
        if (!ok)
            return paro_error(ei, PARO_ERR_IO, NULL, PARO_NO_OFFSET,
                              "cannot stat the file of samples[%u]", samples[i]);
        /* nanoseconds too: a file rewritten within the same second at the
         * same size must not resume */
        uint64_t facts[3] = {(uint64_t)st.st_size, (uint64_t)st.st_mtim.tv_sec,
                             (uint64_t)st.st_mtim.tv_nsec};
        for (int f = 0; f < 3; f++) {
            for (int b = 0; b < 8; b++)
                word[b] = (unsigned char)(facts[f] >> (8 * b));
            crc = crc32(crc, word, 8);
            len += 8;
        }
    }
    *crc_out = (uint32_t)crc;
    *len_out = len;
    return PARO_OK;
}

/* "1.5 GiB", "12.0 MiB", "900 KiB" into buf (32 bytes). */
static const char *human_bytes(double bytes, char *buf)
{
    const double kib = 1024.0, mib = kib * 1024.0, gib = mib * 1024.0;
    if (bytes >= gib)
        snprintf(buf, 32, "%.2f GiB", bytes / gib);
    else if (bytes >= mib)
        snprintf(buf, 32, "%.1f MiB", bytes / mib);
    else
        snprintf(buf, 32, "%.0f KiB", bytes / kib);
    return buf;
}

/* Host memory a run holds at once, estimated before anything big is
 * allocated, so that a layer that cannot fit is refused with the numbers
 * rather than killed half-way. */
static paro_err check_memory(const paro_tiling *t, const paro_manifest *m,
                             const paro_calib_config *cfg, uint32_t lanes, paro_errinfo *ei)
{
    if (cfg->max_memory == 0)
        return PARO_OK;
    const double nt = (double)paro_tiling_tiles(t), slots = (double)t->n_slots;
    const double heads = (double)m->heads;
    const double workers = (double)(cfg->threads < (int)m->heads ? cfg->threads : (int)m->heads);
    /* per lane (GPU): Q and K of one layer-sample, as f32 */
    const double inputs = lanes * 2.0 * heads * m->n_tokens * m->head_dim * 4.0;
    /* per lane: two sets of fp64 block statistics, the layer read and the
     * one scored */
    const double stats = lanes * 2.0 * (cfg->n_buckets + 1.0) * heads * slots * nt * 8.0;
    /* per worker: the CPU kernel's scratch and one head's tile stats, or the
     * scoring scratch (the larger) */
    const double per_worker = (double)paro_tile_stats_scratch_bytes(t, m->head_dim) +
                              2.0 * slots * nt * 8.0 + 8.0 * nt * 4.0;
    const double keep = lanes * heads * cfg->n_buckets * nt;
    const double need = inputs + stats + workers * per_worker + keep;
    if (need <= (double)cfg->max_memory)
        return PARO_OK;
    char a[32], b[32], c[32], d[32], e[32];
    return paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET,
                      "a layer needs about %s of memory (Q and K of a sample %s, block "
                      "statistics %s, %d workers %s) but --max-memory allows %s; use fewer "
                      "threads, larger blocks or fewer timestep buckets",
                      human_bytes(need, a), human_bytes(inputs, b), human_bytes(stats, c),
                      (int)workers, human_bytes(workers * per_worker, d),
                      human_bytes((double)cfg->max_memory, e));
}

/* ---- the driver -------------------------------------------------------- */

/* auto: the GPU when this build has CUDA, a device is there and the kernels
 * handle the shape; otherwise the CPU.  cuda: the GPU or an error. */
static paro_err open_backend(paro_backend *b, const paro_tiling *t, const paro_manifest *m,
                             const paro_calib_config *cfg, int gpu, int threads,
                             paro_errinfo *ei)
{
    paro_backend_shape shape = {t, m->heads, m->head_dim, cfg->n_buckets, m->scale};
    if (cfg->open_backend)
        return cfg->open_backend(cfg->open_backend_user, b, &shape, gpu, threads, ei);
    if (cfg->device != PARO_DEVICE_CPU) {
        paro_errinfo why;
        paro_errinfo_clear(&why);
        paro_err rc = paro_backend_cuda_open(b, &shape, gpu, &why);
        if (rc == PARO_OK)
            return PARO_OK;
        if (cfg->device == PARO_DEVICE_CUDA || cfg->gpus) {
            if (ei)
                *ei = why;
            return rc;
        }
        if (b->close)
            b->close(b);
        memset(b, 0, sizeof *b);
    }
    return paro_backend_cpu_open(b, &shape, threads, ei);
}

/* Checks every tensor the run will read before the first one is computed on:
 * a capture with a bad file at layer 39 should fail in a second, not after
 * an hour.  Headers only. */
static paro_err check_capture(const paro_manifest *m, const uint32_t *samples, size_t n_samples,
                              const uint32_t *layers, uint32_t n_layers, paro_errinfo *ei)
{
    for (size_t si = 0; si < n_samples; si++) {
        paro_sample_file *sf = NULL;
        paro_err rc = paro_sample_open(m, samples[si], &sf, ei);
        for (uint32_t li = 0; !rc && li < n_layers; li++) {
            rc = paro_sample_check(sf, PARO_KIND_Q, layers[li], ei);
            if (!rc)
                rc = paro_sample_check(sf, PARO_KIND_K, layers[li], ei);
        }
        paro_sample_close(sf);
        if (rc)
            return rc;
    }
    return PARO_OK;
}

static paro_err check_buckets(const paro_manifest *m, const uint32_t *samples, size_t n,
                              uint32_t n_buckets, uint32_t *bucket, paro_errinfo *ei)
{
    uint32_t *seen = calloc(n_buckets, sizeof *seen);
    if (!seen)
        return paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory");
    for (size_t i = 0; i < n; i++) {
        bucket[i] = paro_bucket_of(paro_manifest_progress(m, samples[i]), n_buckets);
        seen[bucket[i]]++;
    }
    char list[400] = "";
    size_t used = 0, empty = 0;
    for (uint32_t b = 0; b < n_buckets; b++) {
        if (seen[b])
            continue;
        empty++;
        if (used < sizeof list - 60)
            used += (size_t)snprintf(list + used, sizeof list - used, "%s%u [%.4g, %.4g)",
                                     used ? ", " : "", b, (double)b / n_buckets,
                                     (double)(b + 1) / n_buckets);
    }
    free(seen);
    if (empty)
        return paro_error(ei, PARO_ERR_USAGE, NULL, PARO_NO_OFFSET,
                          "%zu of %u timestep buckets have no calibration sample: %s%s", empty,
                          n_buckets, list, used >= sizeof list - 60 ? ", ..." : "");
    return PARO_OK;
}

/* ---- lanes: one GPU (or the CPU) working through its share of the layers */

/* What the lanes share.  Each layer is computed by one lane, which writes
 * only that layer's entries of the plan, so the plan is the same whatever
 * the number of lanes. */
typedef struct calib_shared {
    const paro_manifest *m;
    const paro_calib_config *cfg;
    const paro_tiling *tiling;
    paro_plan *plan;
    const uint32_t *layers;  /* [plan layers]: model layer ids */
    const uint32_t *samples; /* manifest indices */
    const uint32_t *bucket;  /* [n_samples] */
    size_t n_samples;
    paro_journal *journal;
    pthread_mutex_t journal_lock;
    /* progress, under lock: the steps done and the latest one, and whether
     * some lane failed (the others then stop at their next step) */
    pthread_mutex_t lock;
    pthread_cond_t stepped;
    paro_calib_progress prog;
    int failed, running;
} calib_shared;

typedef struct lane {
    calib_shared *sh;
    paro_calib_config cfg; /* the run's, with this lane's share of threads */
    int gpu;
    paro_backend backend;
    /* The layer being read, the one being scored, and (for a backend that
     * lends its sums) the one whose stats the scoring may still read while
     * the next is read and queued. */
    paro_block_stats stats[3];
    int n_stats;
    finisher fin;
    const uint32_t *todo; /* plan layer slots this lane computes */
    uint32_t n_todo;
    paro_calib_timing timing;
    double first_queued_at; /* clock when its first sample was queued, 0 before */
    paro_err rc;
    paro_errinfo ei;
    pthread_t tid;
    int threaded;
} lane;

/* After each (layer, sample) step: the progress callback when the lane runs
 * on the calling thread, else a count the calling thread reports.  Non-zero
 * when the run must stop. */
static int lane_step(lane *ln, uint32_t layer, size_t sample)
{
    calib_shared *sh = ln->sh;
    pthread_mutex_lock(&sh->lock);
    sh->prog.done++;
    sh->prog.layer = layer;
    sh->prog.sample = sample;
    paro_calib_progress now = sh->prog;
    int failed = sh->failed;
    pthread_cond_signal(&sh->stepped);
    pthread_mutex_unlock(&sh->lock);
    if (!ln->threaded && sh->cfg->progress)
        sh->cfg->progress(sh->cfg->progress_user, &now);
    return failed;
}

static int lane_should_stop(lane *ln)
{
    if (ln->cfg.stop && *ln->cfg.stop)
        return 1;
    pthread_mutex_lock(&ln->sh->lock);
    int failed = ln->sh->failed;
    pthread_mutex_unlock(&ln->sh->lock);
    return failed;
}

/* Collects the sealed layer li (its sums into stats[pending]) and starts its
 * scoring on the finisher thread, which must be idle. */
static paro_err lane_collect(lane *ln, int pending, uint32_t li, paro_errinfo *ei)
{
    const double t0 = now_s();
    paro_err rc = ln->backend.collect(&ln->backend, ei);
    ln->timing.collect += now_s() - t0;
    if (!rc)
        finisher_start(&ln->fin, ln->sh->plan, li, ln->sh->tiling, &ln->stats[pending], &ln->cfg);
    return rc;
}

/* Reads every sample of each layer of the lane's share and hands them to its
 * backend.  A layer is collected once the next one's samples are queued, so
 * a GPU computes layer L+1 while the host collects layer L and scores it on
 * the finisher thread, and reads layer L+2.  The driver waits for the
 * scoring of a layer as late as it can: before it reuses the layer's stats
 * (two sets), or, when the backend lends its sums and the lane keeps three
 * sets, before the seal that may overwrite the lent sums, so that the next
 * layer is already queued on the GPU while the host still scores. */
static paro_err lane_run(lane *ln, paro_errinfo *ei)
{
    calib_shared *sh = ln->sh;
    const paro_manifest *m = sh->m;
    const paro_calib_config *cfg = &ln->cfg;
    paro_calib_timing *timing = &ln->timing;
    paro_backend *be = &ln->backend;
    paro_err rc = PARO_OK;
    int cur = 0;      /* stats[cur] takes the layer being read */
    int pending = -1; /* stats of the sealed, not yet collected layer, or -1 */
    uint32_t pending_li = 0;
    double t0;
    /* waits for the finisher, timed */
#define JOIN_FINISHER()                                                                    \
    do {                                                                                   \
        t0 = now_s();                                                                      \
        rc = finisher_join(&ln->fin, ei);                                                  \
        timing->wait_score += now_s() - t0;                                                \
        if (rc)                                                                            \
            return rc;                                                                     \
    } while (0)
    for (uint32_t ti = 0; ti < ln->n_todo; ti++) {
        const uint32_t li = ln->todo[ti], layer = sh->layers[li];
        uLong crc = crc32(0L, Z_NULL, 0);
        for (size_t si = 0; si < sh->n_samples; si++) {
            if (lane_should_stop(ln))
                return paro_error(ei, PARO_ERR_INTERRUPTED, NULL, PARO_NO_OFFSET,
                                  "interrupted");
            t0 = now_s();
            rc = read_sample(be, m, sh->samples[si], layer, cfg->threads, &crc, ei);
            timing->read += now_s() - t0;
            if (rc)
                return rc;
            if (si == 0) {
                /* With two sets, the finisher may be scoring from
                 * stats[cur], which this layer takes over. */
                if (ln->n_stats == 2)
                    JOIN_FINISHER();
                if ((rc = be->layer_begin(be, &ln->stats[cur], ei)))
                    return rc;
            }
            t0 = now_s();
            rc = be->submit(be, sh->bucket[si], ei);
            timing->submit += now_s() - t0;
            if (ln->first_queued_at == 0.0)
                ln->first_queued_at = now_s();
            if (rc)
                return rc;
            for (uint32_t h = 0; h < m->heads; h++)
                ln->stats[cur].count[(size_t)sh->bucket[si] * ln->stats[cur].heads + h]++;
            if (lane_step(ln, layer, sh->samples[si]))
                return paro_error(ei, PARO_ERR_INTERRUPTED, NULL, PARO_NO_OFFSET,
                                  "interrupted");
        }
        sh->plan->layer_crc32[li] = (uint32_t)crc;
        /* Sealing queues the download that may overwrite lent sums. */
        JOIN_FINISHER();
        if ((rc = be->seal(be, ei)))
            return rc;
        if (pending >= 0 && (rc = lane_collect(ln, pending, pending_li, ei)))
            return rc;
        pending = cur;
        pending_li = li;
        cur = (cur + 1) % ln->n_stats;
    }
    if (pending >= 0) {
        JOIN_FINISHER();
        if ((rc = lane_collect(ln, pending, pending_li, ei)))
            return rc;
        JOIN_FINISHER();
    }
#undef JOIN_FINISHER
    return rc;
}

static void *lane_main(void *arg)
{
    lane *ln = arg;
    ln->rc = lane_run(ln, &ln->ei);
    calib_shared *sh = ln->sh;
    pthread_mutex_lock(&sh->lock);
    if (ln->rc && ln->rc != PARO_ERR_INTERRUPTED)
        sh->failed = 1;
    sh->running--;
    pthread_cond_signal(&sh->stepped);
    pthread_mutex_unlock(&sh->lock);
    return NULL;
}

static void lane_free(lane *ln)
{
    finisher_join(&ln->fin, NULL);
    layer_space_free(&ln->fin.space);
    for (int k = 0; k < 3; k++)
        paro_block_stats_free(&ln->stats[k]);
    double t0 = now_s();
    if (ln->backend.close)
        ln->backend.close(&ln->backend);
    ln->timing.close += now_s() - t0;
}

/* Runs the lanes: the only one on this thread, or each on its own thread
 * while this one reports their progress.  The error returned is that of the
 * first lane that failed on its own (not stopped by another's failure). */
static paro_err run_lanes(lane *lanes, uint32_t n, paro_errinfo *ei)
{
    calib_shared *sh = lanes[0].sh;
    if (n == 1) {
        paro_err rc = lane_run(&lanes[0], ei);
        return rc;
    }
    uint32_t started = 0;
    pthread_mutex_lock(&sh->lock);
    for (; started < n; started++) {
        lanes[started].threaded = 1;
        if (pthread_create(&lanes[started].tid, NULL, lane_main, &lanes[started]) != 0)
            break;
        sh->running++;
    }
    if (started < n)
        sh->failed = 1; /* the started lanes stop at their next step */
    uint64_t reported = sh->prog.done;
    while (sh->running > 0) {
        pthread_cond_wait(&sh->stepped, &sh->lock);
        if (sh->prog.done != reported && sh->cfg->progress) {
            paro_calib_progress now = sh->prog;
            reported = now.done;
            pthread_mutex_unlock(&sh->lock);
            sh->cfg->progress(sh->cfg->progress_user, &now);
            pthread_mutex_lock(&sh->lock);
        }
        if (sh->cfg->stop && *sh->cfg->stop)
            sh->failed = 1;
    }
    pthread_mutex_unlock(&sh->lock);
    for (uint32_t i = 0; i < started; i++)
        pthread_join(lanes[i].tid, NULL);
    if (started < n)
        return paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET,
                          "cannot start a thread for each GPU");
    for (uint32_t i = 0; i < n; i++)
        if (lanes[i].rc && lanes[i].rc != PARO_ERR_INTERRUPTED) {
            if (ei)
                *ei = lanes[i].ei;
            return lanes[i].rc;
        }
    for (uint32_t i = 0; i < n; i++)
        if (lanes[i].rc) {
            if (ei)
                *ei = lanes[i].ei;
            return lanes[i].rc;
        }
    return PARO_OK;
}

paro_err paro_calibrate(const paro_manifest *m, const paro_calib_config *cfg,
                        paro_plan **out, paro_errinfo *ei)
{
    *out = NULL;
    paro_err rc = check_config(m, cfg, ei);
    if (rc)
        return rc;

    /* Layers and samples selected. */
    uint32_t n_layers = cfg->layers ? cfg->n_layers : m->layers;
    size_t n_samples = cfg->samples ? cfg->n_samples : m->n_samples;
    uint32_t *layers = malloc(n_layers * sizeof *layers);
    uint32_t *samples = malloc(n_samples * sizeof *samples);
    uint32_t *bucket = malloc(n_samples * sizeof *bucket);
    paro_plan *plan = NULL;
    paro_tiling tiling;
    memset(&tiling, 0, sizeof tiling);
    paro_journal *journal = NULL;
    uint32_t *todo = NULL;
    paro_calib_timing timing;
    memset(&timing, 0, sizeof timing);
    const double start = now_s();
    /* one lane per GPU of --gpus, else one */
    const uint32_t n_lanes = cfg->gpus && cfg->n_gpus > 0 ? cfg->n_gpus : 1;
    lane *lanes = calloc(n_lanes, sizeof *lanes);
    calib_shared sh;
    memset(&sh, 0, sizeof sh);
    pthread_mutex_init(&sh.journal_lock, NULL);
    pthread_mutex_init(&sh.lock, NULL);
    pthread_cond_init(&sh.stepped, NULL);
    paro_plan_sample *plan_samples = NULL;
    paro_plan_order orders[PARO_N_ORDERS];

    if (!layers || !samples || !bucket || !lanes) {
        rc = paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory");
        goto done;
    }
    for (uint32_t i = 0; i < n_layers; i++)
        layers[i] = cfg->layers ? cfg->layers[i] : i;
    for (size_t i = 0; i < n_samples; i++)
        samples[i] = cfg->samples ? cfg->samples[i] : (uint32_t)i;
    /* The cheap refusals first: a run that cannot fit in memory is told so
     * before every sample file is opened. */
    rc = check_buckets(m, samples, n_samples, cfg->n_buckets, bucket, ei);
    if (!rc)
        rc = paro_tiling_init(&tiling, m->grid, m->text_tokens, m->text_last, cfg->block_q,
                              cfg->block_k, ei);
    if (!rc)
        rc = check_memory(&tiling, m, cfg, n_lanes, ei);
    if (!rc)
        rc = check_capture(m, samples, n_samples, layers, n_layers, ei);
    /* The cores are shared out between the lanes for reading and scoring. */
    for (uint32_t i = 0; !rc && i < n_lanes; i++) {
        lane *ln = &lanes[i];
        ln->sh = &sh;
        ln->cfg = *cfg;
        ln->cfg.threads = cfg->threads / (int)n_lanes + ((int)i < cfg->threads % (int)n_lanes);
        if (ln->cfg.threads < 1)
            ln->cfg.threads = 1;
        ln->gpu = cfg->gpus ? cfg->gpus[i] : 0;
        ln->fin.journal_lock = &sh.journal_lock;
        double t0 = now_s();
        rc = open_backend(&ln->backend, &tiling, m, cfg, ln->gpu, ln->cfg.threads, ei);
        timing.open += now_s() - t0;
        /* A third set costs nothing but counts when the sums are lent:
         * their mass and peak pages are never touched. */
        ln->n_stats = !rc && ln->backend.lends_sums ? 3 : 2;
        for (int k = 0; k < ln->n_stats && !rc; k++)
            rc = paro_block_stats_init(&ln->stats[k], m->heads, cfg->n_buckets,
                                       (uint32_t)tiling.n_slots, tiling.nq, tiling.nk, ei);
    }
    if (rc)
        goto done;

    /* The plan's shape. */
    plan_samples = calloc(n_samples, sizeof *plan_samples);
    if (!plan_samples) {
        rc = paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n_samples; i++) {
        const paro_sample *s = &m->samples[samples[i]];
        plan_samples[i].index = samples[i];
        plan_samples[i].prompt = s->prompt;
        plan_samples[i].timestep = s->timestep;
        plan_samples[i].step = s->step;
        plan_samples[i].bucket = bucket[i];
    }
    for (int o = 0; o < PARO_N_ORDERS; o++) {
        memset(&orders[o], 0, sizeof orders[o]);
        snprintf(orders[o].kind, sizeof orders[o].kind, "axes");
        snprintf(orders[o].name, sizeof orders[o].name, "%s", paro_order_name(o));
    }
    {
        paro_plan shape;
        memset(&shape, 0, sizeof shape);
        shape.tool = (char *)"paro " PARO_VERSION;
        shape.model = m->model;
        shape.backend = (char *)lanes[0].backend.name;
        memcpy(shape.grid, m->grid, sizeof shape.grid);
        shape.text_tokens = m->text_tokens;
        shape.text_last = m->text_last;
        shape.n_tokens = m->n_tokens;
        shape.heads = m->heads;
        shape.head_dim = m->head_dim;
        shape.scale = m->scale;
        shape.model_layers = m->layers;
        shape.n_layers = n_layers;
        shape.layers = layers;
        shape.block_q = cfg->block_q;
        shape.block_k = cfg->block_k;
        shape.nq = tiling.nq;
        shape.nk = tiling.nk;
        shape.n_orders = PARO_N_ORDERS;
        shape.orders = orders;
        shape.alpha = cfg->alpha;
        shape.score_recall = cfg->score_recall;
        shape.target_mode = cfg->target.mode;
        shape.target_value = cfg->target.value;
        shape.keep_text = cfg->target.keep_text;
        shape.keep_last = cfg->target.keep_last != 0;
        shape.n_buckets = cfg->n_buckets;
        shape.dense_until = cfg->dense_until;
        shape.with_tile_mass = cfg->tile_mass;
        shape.n_samples = n_samples;
        shape.samples = plan_samples;
        shape.seed = cfg->seed;
        rc = paro_plan_alloc(&plan, &shape, ei);
        if (rc)
            goto done;
    }

    /* Layers an earlier, interrupted run finished come from the journal. */
    todo = malloc(n_layers * sizeof *todo);
    if (!todo) {
        rc = paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory");
        goto done;
    }
    uint32_t resumed = 0;
    if (cfg->journal) {
        uint32_t config_crc = 0;
        uint64_t config_len = 0;
        rc = config_digest(m, plan, samples, n_samples, &config_crc, &config_len, ei);
        if (!rc)
            rc = paro_journal_open(cfg->journal, config_crc, config_len, cfg->resume, plan,
                                   &journal, &resumed, ei);
        if (rc)
            goto done;
    }
    uint32_t n_todo = 0;
    for (uint32_t li = 0; li < n_layers; li++)
        if (!paro_journal_has(journal, li))
            todo[n_todo++] = li;
    /* Lane i takes the i-th share of the layers in order (contiguous, so
     * each lane reads its files front to back). */
    for (uint32_t i = 0, at = 0; i < n_lanes; i++) {
        lanes[i].fin.journal = journal;
        lanes[i].todo = todo + at;
        lanes[i].n_todo = n_todo / n_lanes + (i < n_todo % n_lanes);
        at += lanes[i].n_todo;
    }
    sh.m = m;
    sh.cfg = cfg;
    sh.tiling = &tiling;
    sh.plan = plan;
    sh.layers = layers;
    sh.samples = samples;
    sh.bucket = bucket;
    sh.n_samples = n_samples;
    sh.journal = journal;
    sh.prog = (paro_calib_progress){0, (uint64_t)n_todo * n_samples, 0, 0, resumed};
    if (cfg->progress)
        cfg->progress(cfg->progress_user, &sh.prog);
    rc = run_lanes(lanes, n_lanes, ei);
    if (rc)
        goto done;
    *out = plan;
    plan = NULL;

done:
    for (uint32_t i = 0; lanes && i < n_lanes; i++) {
        lane_free(&lanes[i]);
        const paro_calib_timing *lt = &lanes[i].timing;
        const double first = lanes[i].first_queued_at - start;
        if (lanes[i].first_queued_at > 0.0 && (timing.first == 0.0 || first < timing.first))
            timing.first = first;
        timing.read += lt->read;
        timing.submit += lt->submit;
        timing.collect += lt->collect;
        timing.wait_score += lt->wait_score;
        timing.close += lt->close;
        timing.score += lanes[i].fin.seconds;
        timing.journal += lanes[i].fin.journal_seconds;
    }
    free(lanes);
    pthread_cond_destroy(&sh.stepped);
    pthread_mutex_destroy(&sh.lock);
    pthread_mutex_destroy(&sh.journal_lock);
    if (cfg->timing)
        *cfg->timing = timing;
    paro_journal_close(journal, 0);
    free(todo);
    free(plan_samples);
    paro_tiling_free(&tiling);
    paro_plan_free(plan);
    free(layers);
    free(samples);
    free(bucket);
    return rc;
}
