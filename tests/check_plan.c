/* paro tests — the plan file: round trips, determinism, and a reader that
 * rejects every corruption (formats/PLAN.md). */
#include <check.h>       /* START_TEST, ck_assert*, Suite, TCase */
#include <cjson/cJSON.h> /* cJSON_Parse, cJSON_GetObjectItemCaseSensitive */
#include <dirent.h>      /* opendir, readdir, closedir */
#include <math.h>        /* NAN, INFINITY, isfinite, pow, fabs */
#include <stdio.h>       /* snprintf */
#include <stdlib.h>      /* malloc, calloc, realloc, free, strtod */
#include <string.h>      /* memcpy, memcmp, memmove, memchr, strstr, strchr, strpbrk, strlen */
#include <sys/stat.h>    /* mkfifo, stat, S_ISFIFO */
#include <zlib.h>        /* compress2, uncompress, crc32, zlibVersion */

#include "journal.h"       /* paro_journal_open, _append, _close, _discard_empty */
#include "plan.h"          /* the API under test */
#include "json_util.h"     /* paro_json_fmt_double */
#include "plan_internal.h" /* layout constants, paro_rd/wr* */
#include "testutil.h"      /* tu_rand, tu_uniform, tu_mkdtemp, tu_run_suite */

/* ---- a random plan ---- */

/* A random plan of n_layers layers (ids 1, 4, 5, 6, ...), with tile masses
 * when tile_mass is set. */
static paro_plan *make_plan_ex(uint64_t seed, int text_last, uint32_t n_layers, int tile_mass)
{
    static const char *const names[6] = {"FHW", "FWH", "HFW", "HWF", "WFH", "WHF"};
    paro_plan_order orders[6];
    memset(orders, 0, sizeof orders);
    for (int o = 0; o < 6; o++) {
        memcpy(orders[o].kind, "axes", 5);
        memcpy(orders[o].name, names[(o + 3) % 6], 4); /* not in enum order */
    }
    uint32_t layers[16];
    ck_assert_uint_le(n_layers, 16);
    for (uint32_t l = 0; l < n_layers; l++)
        layers[l] = l == 0 ? 1 : 3 + l;
    paro_plan_sample samples[3] = {
        {0, 0, 999.0, -1, 0}, {2, 7, 500.5, 10, 1}, {5, -3, 1.0 / 3.0, 0, 1}};
    paro_plan shape;
    memset(&shape, 0, sizeof shape);
    shape.tool = "paro 0.1.0";
    shape.model = "test-model \xc3\xbc \"q\"\\";
    shape.backend = "cpu";
    shape.grid[0] = 2;
    shape.grid[1] = 3;
    shape.grid[2] = 4;
    shape.text_tokens = 3;
    shape.text_last = text_last;
    shape.n_tokens = 27;
    shape.heads = 3;
    shape.head_dim = 16;
    shape.scale = 0.25;
    shape.model_layers = n_layers + 4;
    shape.n_layers = n_layers;
    shape.layers = layers;
    shape.block_q = 9;
    shape.block_k = 10;
    shape.nq = 3;
    shape.nk = 3;
    shape.n_orders = 6;
    shape.orders = orders;
    shape.alpha = 0.7;
    shape.score_recall = 0.95;
    shape.target_mode = PARO_TARGET_RECALL;
    shape.target_value = 0.9;
    shape.keep_text = 1;
    shape.n_buckets = 2;
    shape.dense_until = 0.25;
    shape.n_samples = 3;
    shape.samples = samples;
    shape.seed = 9007199254740991ull; /* 2^53 - 1 */
    shape.with_tile_mass = tile_mass;
    paro_plan *p = NULL;
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_plan_alloc(&p, &shape, &ei), PARO_OK);
    uint64_t st = seed;
    for (uint32_t l = 0; l < p->n_layers; l++)
        p->layer_crc32[l] = (uint32_t)tu_rand(&st);
    for (size_t i = 0; i < (size_t)p->n_layers * p->heads; i++)
        p->head_order[i] = (uint8_t)(tu_rand(&st) % p->n_orders);
    for (size_t i = 0; i < (size_t)p->n_layers * p->heads * p->n_orders * PARO_N_SCORES; i++)
        p->scores[i] = tu_normal(&st) * 1e3;
    for (size_t i = 0; i < (size_t)p->n_layers * p->n_buckets * p->heads; i++) {
        p->density[i] = tu_uniform(&st);
        p->recall[i] = i % 5 == 0 ? 1.0 : tu_uniform(&st);
    }
    for (uint32_t l = 0; l < p->n_layers; l++)
        for (uint32_t b = 0; b < p->n_buckets; b++)
            for (uint32_t h = 0; h < p->heads; h++)
                for (uint32_t q = 0; q < p->nq; q++)
                    for (uint32_t k = 0; k < p->nk; k++)
                        paro_plan_mask_set(p, l, b, h, q, k, (int)(tu_rand(&st) & 1));
    double mass[9];
    for (uint32_t l = 0; tile_mass && l < p->n_layers; l++)
        for (uint32_t b = 0; b < p->n_buckets; b++)
            for (uint32_t h = 0; h < p->heads; h++) {
                /* one head without any mass: all levels 0 */
                int empty = l == 0 && b == 1 && h == 2;
                for (int i = 0; i < 9; i++)
                    mass[i] = empty ? 0.0 : pow(10.0, -8.0 * tu_uniform(&st));
                paro_plan_set_tile_mass(p, l, b, h, mass);
            }
    return p;
}

static paro_plan *make_plan(uint64_t seed, int text_last)
{
    return make_plan_ex(seed, text_last, 2, 0);
}

static void plans_equal(const paro_plan *a, const paro_plan *b)
{
    ck_assert_str_eq(a->tool, b->tool);
    ck_assert_str_eq(a->model, b->model);
    ck_assert_str_eq(a->backend, b->backend);
    for (int i = 0; i < 3; i++)
        ck_assert_uint_eq(a->grid[i], b->grid[i]);
    ck_assert_uint_eq(a->text_tokens, b->text_tokens);
    ck_assert_int_eq(a->text_last, b->text_last);
    ck_assert_uint_eq(a->n_tokens, b->n_tokens);
    ck_assert_uint_eq(a->heads, b->heads);
    ck_assert_uint_eq(a->head_dim, b->head_dim);
    ck_assert(a->scale == b->scale);
    ck_assert_uint_eq(a->model_layers, b->model_layers);
    ck_assert_uint_eq(a->n_layers, b->n_layers);
    for (uint32_t l = 0; l < a->n_layers; l++) {
        ck_assert_uint_eq(a->layers[l], b->layers[l]);
        ck_assert_uint_eq(a->layer_crc32[l], b->layer_crc32[l]);
    }
    ck_assert_uint_eq(a->block_q, b->block_q);
    ck_assert_uint_eq(a->block_k, b->block_k);
    ck_assert_uint_eq(a->nq, b->nq);
    ck_assert_uint_eq(a->nk, b->nk);
    ck_assert_uint_eq(a->n_orders, b->n_orders);
    for (uint32_t o = 0; o < a->n_orders; o++) {
        ck_assert_str_eq(a->orders[o].kind, b->orders[o].kind);
        ck_assert_str_eq(a->orders[o].name, b->orders[o].name);
    }
    ck_assert(a->alpha == b->alpha);
    ck_assert(a->score_recall == b->score_recall);
    ck_assert_int_eq(a->target_mode, b->target_mode);
    ck_assert(a->target_value == b->target_value);
    ck_assert_int_eq(a->keep_text, b->keep_text);
    ck_assert_int_eq(a->keep_last, b->keep_last);
    ck_assert_uint_eq(a->n_buckets, b->n_buckets);
    ck_assert(a->dense_until == b->dense_until);
    ck_assert_uint_eq(a->n_samples, b->n_samples);
    for (size_t i = 0; i < a->n_samples; i++) {
        ck_assert_uint_eq(a->samples[i].index, b->samples[i].index);
        ck_assert_int_eq(a->samples[i].prompt, b->samples[i].prompt);
        ck_assert(a->samples[i].timestep == b->samples[i].timestep);
        ck_assert_int_eq(a->samples[i].step, b->samples[i].step);
        ck_assert_uint_eq(a->samples[i].bucket, b->samples[i].bucket);
    }
    ck_assert_uint_eq(a->seed, b->seed);
    size_t lh = (size_t)a->n_layers * a->heads;
    ck_assert_mem_eq(a->head_order, b->head_order, lh);
    ck_assert_mem_eq(a->scores, b->scores, lh * a->n_orders * PARO_N_SCORES * sizeof(double));
    ck_assert_mem_eq(a->density, b->density, lh * a->n_buckets * sizeof(double));
    ck_assert_mem_eq(a->recall, b->recall, lh * a->n_buckets * sizeof(double));
    ck_assert_uint_eq(paro_plan_mask_bytes(a), paro_plan_mask_bytes(b));
    for (uint32_t l = 0; l < a->n_layers; l++)
        ck_assert_mem_eq(a->masks[l], b->masks[l], paro_plan_mask_bytes(a));
    ck_assert_int_eq(a->with_tile_mass, b->with_tile_mass);
    for (uint32_t l = 0; a->with_tile_mass && l < a->n_layers; l++)
        ck_assert_mem_eq(a->tile_mass[l], b->tile_mass[l], paro_plan_tile_mass_bytes(a));
}

static uint8_t *serialize(const paro_plan *p, size_t *len)
{
    uint8_t *buf = NULL;
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_err e = paro_plan_serialize(p, &buf, len, &ei);
    ck_assert_msg(e == PARO_OK, "serialize: %s", ei.msg);
    return buf;
}

static paro_plan *parse_ok(const uint8_t *buf, size_t len)
{
    paro_plan *p = NULL;
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_err e = paro_plan_parse(buf, len, "t.paro", &p, &ei);
    ck_assert_msg(e == PARO_OK, "parse: %s (at byte %llu)", ei.msg,
                  (unsigned long long)ei.offset);
    return p;
}

#define ANY_OFFSET (UINT64_MAX - 1)

/* Parsing fails with code, a message holding want, at byte offset (or
 * ANY_OFFSET: some offset; PARO_NO_OFFSET: none). */
static void expect_fail(const uint8_t *buf, size_t len, paro_err code, const char *want,
                        uint64_t offset)
{
    paro_plan *p = NULL;
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_err e = paro_plan_parse(buf, len, "t.paro", &p, &ei);
    ck_assert_ptr_null(p);
    ck_assert_msg(e == code, "got %d (%s), want %d", e, ei.msg, code);
    ck_assert_int_eq(ei.code, code);
    ck_assert_msg(strstr(ei.msg, want) != NULL, "message '%s' lacks '%s'", ei.msg, want);
    size_t n = strlen(ei.msg);
    ck_assert_msg(n > 0 && ei.msg[n - 1] != '.' && !strchr(ei.msg, '\n') &&
                      !(ei.msg[0] >= 'A' && ei.msg[0] <= 'Z'),
                  "message style: '%s'", ei.msg);
    char full[1200], at[64];
    paro_errinfo_format(&ei, full, sizeof full);
    ck_assert_msg(strstr(full, "t.paro: ") == full, "%s", full);
    if (offset == PARO_NO_OFFSET)
        return;
    ck_assert_msg(ei.offset != PARO_NO_OFFSET, "no offset in '%s'", full);
    if (offset != ANY_OFFSET)
        ck_assert_msg(ei.offset == offset, "offset %llu, want %llu: %s",
                      (unsigned long long)ei.offset, (unsigned long long)offset, full);
    snprintf(at, sizeof at, "(at byte %llu)", (unsigned long long)ei.offset);
    ck_assert_msg(strstr(full, at) != NULL, "'%s' lacks '%s'", full, at);
}

/* ---- a test-side editor: split a file into its sections, change them,
 * and lay it out again with fresh CRCs (it does not share code with the
 * writer, so it also checks the layout rules independently) ---- */

typedef struct tsec {
    uint32_t type, flags, codec, index;
    uint64_t raw;
    uint8_t *data;
    size_t len;
} tsec;

typedef struct tfile {
    uint16_t major, minor;
    uint32_t required, optional, header_size, entry_size;
    uint8_t fill; /* value of header and entry bytes beyond the known fields */
    size_t n;
    tsec sec[64];
} tfile;

static uint64_t up64(uint64_t x)
{
    return (x + 63) & ~(uint64_t)63;
}

static void tf_split(const uint8_t *b, size_t len, tfile *t)
{
    memset(t, 0, sizeof *t);
    ck_assert_uint_ge(len, 64);
    t->major = paro_rd16(b + 8);
    t->minor = paro_rd16(b + 10);
    t->header_size = paro_rd32(b + 12);
    t->required = paro_rd32(b + 16);
    t->optional = paro_rd32(b + 20);
    t->n = paro_rd32(b + 24);
    t->entry_size = paro_rd32(b + 28);
    ck_assert_uint_le(t->n, 64);
    for (size_t i = 0; i < t->n; i++) {
        const uint8_t *e = b + t->header_size + i * t->entry_size;
        tsec *s = &t->sec[i];
        s->type = paro_rd32(e);
        s->flags = paro_rd32(e + 4);
        uint64_t off = paro_rd64(e + 8);
        s->len = (size_t)paro_rd64(e + 16);
        s->raw = paro_rd64(e + 24);
        s->codec = paro_rd32(e + 32);
        s->index = paro_rd32(e + 40);
        s->data = malloc(s->len + 1);
        memcpy(s->data, b + off, s->len);
    }
}

static uint8_t *tf_build(const tfile *t, size_t *len)
{
    uint64_t table_end = t->header_size + (uint64_t)t->n * t->entry_size;
    uint64_t pos = up64(table_end), total = pos;
    for (size_t i = 0; i < t->n; i++) {
        if (i)
            pos = up64(total);
        total = pos + t->sec[i].len;
    }
    if (t->n == 0)
        total = table_end;
    uint8_t *b = calloc(total, 1);
    memcpy(b, paro_plan_magic, 8);
    paro_wr16(b + 8, t->major);
    paro_wr16(b + 10, t->minor);
    paro_wr32(b + 12, t->header_size);
    paro_wr32(b + 16, t->required);
    paro_wr32(b + 20, t->optional);
    paro_wr32(b + 24, (uint32_t)t->n);
    paro_wr32(b + 28, t->entry_size);
    paro_wr64(b + 32, t->header_size);
    paro_wr64(b + 40, total);
    memset(b + 64, t->fill, t->header_size - 64);
    pos = up64(table_end);
    for (size_t i = 0; i < t->n; i++) {
        const tsec *s = &t->sec[i];
        uint8_t *e = b + t->header_size + i * t->entry_size;
        memset(e + 48, t->fill, t->entry_size - 48);
        paro_wr32(e, s->type);
        paro_wr32(e + 4, s->flags);
        paro_wr64(e + 8, pos);
        paro_wr64(e + 16, s->len);
        paro_wr64(e + 24, s->raw);
        paro_wr32(e + 32, s->codec);
        paro_wr32(e + 36, (uint32_t)crc32(0, s->data, (uInt)s->len));
        paro_wr32(e + 40, s->index);
        memcpy(b + pos, s->data, s->len);
        pos = up64(pos + s->len);
    }
    paro_wr32(b + 48, (uint32_t)crc32(0, b, (uInt)table_end));
    *len = total;
    return b;
}

static void tf_free(tfile *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->sec[i].data);
}

static size_t tf_find(const tfile *t, uint32_t type, uint32_t index)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->sec[i].type == type && t->sec[i].index == index)
            return i;
    ck_abort_msg("no section of type %u index %u", type, index);
    return 0;
}

static void tf_insert(tfile *t, size_t at, const tsec *s)
{
    ck_assert_uint_lt(t->n, 64);
    memmove(&t->sec[at + 1], &t->sec[at], (t->n - at) * sizeof *s);
    t->sec[at] = *s;
    t->n++;
}

static void tf_remove(tfile *t, size_t at)
{
    free(t->sec[at].data);
    memmove(&t->sec[at], &t->sec[at + 1], (t->n - at - 1) * sizeof t->sec[0]);
    t->n--;
}

/* The raw bytes of a section (inflated when compressed), malloc'ed. */
static uint8_t *tf_raw(const tsec *s)
{
    uint8_t *r = malloc(s->raw + 1);
    if (s->codec == 0) {
        memcpy(r, s->data, s->len);
        return r;
    }
    uLongf n = (uLongf)s->raw;
    ck_assert_int_eq(uncompress(r, &n, s->data, (uLong)s->len), Z_OK);
    ck_assert_uint_eq(n, s->raw);
    return r;
}

/* Replaces the contents, keeping the codec. */
static void tf_set_raw(tsec *s, const uint8_t *raw, size_t n)
{
    free(s->data);
    s->raw = n;
    if (s->codec == 0) {
        s->data = malloc(n + 1);
        memcpy(s->data, raw, n);
        s->len = n;
        return;
    }
    uLongf cap = compressBound((uLong)n);
    s->data = malloc(cap);
    ck_assert_int_eq(compress2(s->data, &cap, raw, (uLong)n, 9), Z_OK);
    s->len = cap;
}

static void tf_set_json(tsec *s, const char *json)
{
    tf_set_raw(s, (const uint8_t *)json, strlen(json));
}

/* The file of a random plan, split. */
static void sample_file(tfile *t, uint8_t **buf, size_t *len)
{
    paro_plan *p = make_plan(42, 0);
    *buf = serialize(p, len);
    paro_plan_free(p);
    tf_split(*buf, *len, t);
}

/* Rebuilds t and checks that it still parses (the editor is faithful). */
static void rebuild_ok(const tfile *t)
{
    size_t n;
    uint8_t *b = tf_build(t, &n);
    paro_plan *p = parse_ok(b, n);
    paro_plan_free(p);
    free(b);
}

static void fix_header_crc(uint8_t *b)
{
    uint32_t hs = paro_rd32(b + 12), n = paro_rd32(b + 24), es = paro_rd32(b + 28);
    paro_wr32(b + 48, 0);
    paro_wr32(b + 48, (uint32_t)crc32(0, b, hs + n * es));
}

/* Replaces the first occurrence of from in META with to. */
static void meta_replace(tfile *t, const char *from, const char *to)
{
    tsec *m = &t->sec[tf_find(t, PARO_SEC_META, 0)];
    char *j = (char *)tf_raw(m);
    j[m->raw] = 0;
    char *at = strstr(j, from);
    ck_assert_msg(at != NULL, "'%s' not in META", from);
    size_t nf = strlen(from), nt = strlen(to), nj = strlen(j);
    char *out = malloc(nj - nf + nt + 1);
    memcpy(out, j, (size_t)(at - j));
    memcpy(out + (at - j), to, nt);
    memcpy(out + (at - j) + nt, at + nf, nj - (size_t)(at - j) - nf + 1);
    tf_set_json(m, out);
    free(out);
    free(j);
}

/* Builds t with META edited and expects failure. */
static void meta_fail(const char *from, const char *to, paro_err code, const char *want)
{
    tfile t;
    uint8_t *buf;
    size_t len, n;
    sample_file(&t, &buf, &len);
    meta_replace(&t, from, to);
    uint8_t *b = tf_build(&t, &n);
    uint64_t meta_off = up64(t.header_size + t.n * t.entry_size);
    expect_fail(b, n, code, want, ANY_OFFSET);
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_plan *p = NULL;
    paro_plan_parse(b, n, "t.paro", &p, &ei);
    ck_assert_uint_ge(ei.offset, meta_off); /* within META */
    ck_assert_uint_lt(ei.offset, meta_off + t.sec[0].len);
    free(b);
    tf_free(&t);
    free(buf);
}

/* ---- PLAN.md §14: the worked example, in its zlib-independent parts ---- */

/* The bytes of the hex dump in formats/PLAN.md (lines "00010    16: 00 01 ..."),
 * malloc'ed; NULL when the file is not there (the suite runs from the
 * repository root). */
static uint8_t *plan_md_example(size_t *len)
{
    FILE *f = fopen("formats/PLAN.md", "r");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    uint8_t *out = malloc(cap);
    char line[256];
    while (fgets(line, sizeof line, f)) {
        unsigned off, dec;
        int used = 0;
        if (sscanf(line, "%5x %u:%n", &off, &dec, &used) != 2 || used == 0 || off != dec ||
            off != n)
            continue;
        const char *at = line + used;
        unsigned byte;
        int k;
        /* up to 16 bytes a row; two spaces end them, before the ASCII column */
        for (int i = 0; i < 16 && at[1] != ' ' && sscanf(at, " %2x%n", &byte, &k) == 1; i++) {
            if (n == cap)
                out = realloc(out, cap *= 2);
            out[n++] = (uint8_t)byte;
            at += k;
        }
    }
    fclose(f);
    *len = n;
    return out;
}

START_TEST(test_worked_example)
{
    paro_plan_order orders[2];
    memset(orders, 0, sizeof orders);
    memcpy(orders[0].kind, "axes", 5);
    memcpy(orders[0].name, "FHW", 4);
    memcpy(orders[1].kind, "axes", 5);
    memcpy(orders[1].name, "FWH", 4);
    uint32_t layers[1] = {0};
    paro_plan_sample sample = {0, 0, 999.0, -1, 0};
    paro_plan shape;
    memset(&shape, 0, sizeof shape);
    shape.tool = "paro 0.1.0";
    shape.model = "tiny";
    shape.backend = "cpu";
    shape.grid[0] = 1;
    shape.grid[1] = 2;
    shape.grid[2] = 2;
    shape.text_tokens = 1;
    shape.n_tokens = 5;
    shape.heads = 1;
    shape.head_dim = 4;
    shape.scale = 0.5;
    shape.model_layers = 1;
    shape.n_layers = 1;
    shape.layers = layers;
    shape.block_q = shape.block_k = 2;
    shape.nq = shape.nk = 3;
    shape.n_orders = 2;
    shape.orders = orders;
    shape.alpha = 0.5;
    shape.score_recall = 0.95;
    shape.target_mode = PARO_TARGET_DENSITY;
    shape.target_value = 0.5;
    shape.keep_text = 1;
    shape.n_buckets = 1;
    shape.n_samples = 1;
    shape.samples = &sample;
    paro_plan *p = NULL;
    ck_assert_int_eq(paro_plan_alloc(&p, &shape, NULL), PARO_OK);
    p->layer_crc32[0] = 0x1234abcd;
    p->head_order[0] = 1;
    static const double scores[6] = {0.5, 1.25, 1.0, 0.25, 1.5, 0.0};
    memcpy(p->scores, scores, sizeof scores);
    p->density[0] = 6.0 / 9;
    p->recall[0] = 0.75;
    for (uint32_t q = 0; q < 3; q++)
        for (uint32_t k = 0; k <= q; k++)
            paro_plan_mask_set(p, 0, 0, 0, q, k, 1);
    size_t len;
    uint8_t *b = serialize(p, &len);
    static const char meta[] =
        "{\"tool\":\"paro 0.1.0\",\"model\":\"tiny\",\"backend\":\"cpu\",\"grid\":[1,2,2],"
        "\"text_tokens\":1,\"text_position\":\"first\",\"tokens\":5,\"num_heads\":1,"
        "\"head_dim\":4,\"scale\":0.5,\"model_layers\":1,\"layers\":[0],\"block\":[2,2],"
        "\"blocks\":[3,3],\"orders\":[{\"kind\":\"axes\",\"name\":\"FHW\"},{\"kind\":\"axes\","
        "\"name\":\"FWH\"}],\"metric\":{\"alpha\":0.5,\"score_recall\":0.95},\"target\":"
        "{\"mode\":\"density\",\"value\":0.5,\"keep_text\":true},\"buckets\":{\"count\":1,"
        "\"edges\":[0.0,1.0],\"dense_until\":0.0},\"samples\":[{\"index\":0,\"prompt\":0,"
        "\"timestep\":999.0,\"bucket\":0}],\"seed\":0,\"inputs\":{\"layer_crc32\":"
        "[\"1234abcd\"]}}";
    ck_assert_uint_eq(sizeof meta - 1, 553);
    ck_assert_uint_eq(paro_rd32(b + 24), 8);
    /* the first 1280 bytes (header aside from the table's zlib fields and CRC) */
    ck_assert_mem_eq(b + 448, meta, 553);
    static const struct { uint64_t off, len; uint32_t crc; } plain[5] = {
        {448, 553, 0x635f0f1b}, {1024, 1, 0xa505df1b}, {1088, 48, 0x7912c3fb},
        {1152, 8, 0xa672047b}, {1216, 8, 0x45e38bb0}};
    for (int i = 0; i < 5; i++) {
        const uint8_t *e = b + 64 + 48 * i;
        ck_assert_uint_eq(paro_rd64(e + 8), plain[i].off);
        ck_assert_uint_eq(paro_rd64(e + 16), plain[i].len);
        ck_assert_uint_eq(paro_rd32(e + 36), plain[i].crc);
    }
    ck_assert_uint_eq(b[1024], 1);
    ck_assert_uint_eq(paro_rd64(b + 1152), 0x3fe5555555555555ull);
    ck_assert_uint_eq(paro_rd64(b + 1216), 0x3fe8000000000000ull);
    tfile t;
    tf_split(b, len, &t);
    uint8_t *raw = tf_raw(&t.sec[6]);
    static const uint32_t fwh[5] = {0, 1, 3, 2, 4};
    for (int i = 0; i < 5; i++)
        ck_assert_uint_eq(paro_rd32(raw + 4 * i), fwh[i]);
    free(raw);
    raw = tf_raw(&t.sec[7]);
    ck_assert_uint_eq(t.sec[7].raw, 2);
    ck_assert_uint_eq(raw[0], 0xd9);
    ck_assert_uint_eq(raw[1], 0x01);
    free(raw);
    if (strcmp(zlibVersion(), "1.2.13") == 0) { /* the exact bytes of PLAN.md */
        ck_assert_uint_eq(len, 1418);
        ck_assert_uint_eq(paro_rd32(b + 48), 0x04368393);
        size_t doc_len;
        uint8_t *doc = plan_md_example(&doc_len);
        if (doc) {
            ck_assert_uint_eq(doc_len, len);
            ck_assert_mem_eq(doc, b, len);
            free(doc);
        }
    }
    tf_free(&t);
    free(b);
    paro_plan_free(p);
}
END_TEST

/* ---- round trips ---- */

START_TEST(test_roundtrip)
{
    for (int text_last = 0; text_last < 2; text_last++) {
        paro_plan *p = make_plan(1 + (uint64_t)text_last, text_last);
        size_t len;
        uint8_t *buf = serialize(p, &len);
        ck_assert_uint_eq(paro_rd64(buf + 40), len);
        paro_plan *q = parse_ok(buf, len);
        plans_equal(p, q);
        /* byte-identical re-serialisation, and the same plan gives the same bytes */
        size_t len2, len3;
        uint8_t *buf2 = serialize(q, &len2);
        uint8_t *buf3 = serialize(p, &len3);
        ck_assert_uint_eq(len, len2);
        ck_assert_mem_eq(buf, buf2, len);
        ck_assert_uint_eq(len, len3);
        ck_assert_mem_eq(buf, buf3, len);
        free(buf);
        free(buf2);
        free(buf3);
        paro_plan_free(p);
        paro_plan_free(q);
    }
}
END_TEST

START_TEST(test_file_roundtrip)
{
    char *dir = tu_mkdtemp();
    char *path = tu_path(dir, "model.paro");
    paro_plan *p = make_plan(7, 0), *q = NULL;
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_plan_write(p, path, 1, &ei), PARO_OK);
    ck_assert_int_eq(paro_plan_read(path, &q, &ei), PARO_OK);
    plans_equal(p, q);
    size_t n, len;
    unsigned char *file = tu_read_file(path, &n);
    uint8_t *buf = serialize(p, &len);
    ck_assert_uint_eq(n, len);
    ck_assert_mem_eq(file, buf, n);
    /* sections deflated on several threads: the same bytes */
    char *path4 = tu_path(dir, "model4.paro");
    ck_assert_int_eq(paro_plan_write(p, path4, 4, &ei), PARO_OK);
    size_t n4;
    unsigned char *file4 = tu_read_file(path4, &n4);
    ck_assert_uint_eq(n4, n);
    ck_assert_mem_eq(file4, file, n);
    free(file4);
    free(path4);
    /* a corrupt file names the path and the offset */
    file[n - 1] ^= 1;
    tu_write_file(path, file, n);
    paro_plan *r = NULL;
    ck_assert_int_eq(paro_plan_read(path, &r, &ei), PARO_ERR_FORMAT);
    ck_assert_ptr_null(r);
    ck_assert_str_eq(ei.file, path);
    ck_assert_uint_ne(ei.offset, PARO_NO_OFFSET);
    /* a missing file is an i/o error */
    paro_errinfo_clear(&ei);
    char *missing = tu_path(dir, "missing.paro");
    ck_assert_int_eq(paro_plan_read(missing, &r, &ei), PARO_ERR_IO);
    free(missing);
    free(buf);
    free(file);
    paro_plan_free(p);
    paro_plan_free(q);
    tu_rmtree(dir);
    free(path);
    free(dir);
}
END_TEST

START_TEST(test_layout)
{
    paro_plan *p = make_plan(3, 0);
    size_t len;
    uint8_t *b = serialize(p, &len);
    static const uint8_t magic[8] = {0x97, 0x50, 0x41, 0x52, 0x0d, 0x0a, 0x1a, 0x0a};
    ck_assert_mem_eq(b, magic, 8);
    ck_assert_uint_eq(paro_rd16(b + 8), 1);
    ck_assert_uint_eq(paro_rd16(b + 10), 1); /* no 1.2 key: a 1.1 file */
    ck_assert_uint_eq(paro_rd32(b + 12), 64);
    ck_assert_uint_eq(paro_rd32(b + 24), 5 + 6 + 2);
    ck_assert_uint_eq(paro_rd32(b + 28), 48);
    ck_assert_uint_eq(paro_rd64(b + 32), 64);
    /* section order and flags */
    static const uint32_t types[13] = {1, 2, 3, 4, 5, 6, 6, 6, 6, 6, 6, 7, 7};
    static const uint32_t index[13] = {0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 1, 4};
    uint64_t want = up64(64 + 13 * 48);
    for (int i = 0; i < 13; i++) {
        const uint8_t *e = b + 64 + 48 * i;
        ck_assert_uint_eq(paro_rd32(e), types[i]);
        ck_assert_uint_eq(paro_rd32(e + 4), types[i] == 6 ? 0 : 1);
        ck_assert_uint_eq(paro_rd64(e + 8), want);
        ck_assert_uint_eq(paro_rd32(e + 32), types[i] >= 6 ? 1 : 0);
        ck_assert_uint_eq(paro_rd32(e + 40), index[i]);
        want = up64(want + paro_rd64(e + 16));
    }
    /* META is compact JSON with the keys in their order */
    const uint8_t *e0 = b + 64;
    const char *json = (const char *)b + paro_rd64(e0 + 8);
    ck_assert(memcmp(json, "{\"tool\":\"paro 0.1.0\",\"model\":", 29) == 0);
    ck_assert_ptr_null(memchr(json, '\n', paro_rd64(e0 + 16)));
    /* PERM of order HWF (index 0 here) with text first: T=3, grid 2x3x4 */
    tfile t;
    tf_split(b, len, &t);
    tsec *perm = &t.sec[tf_find(&t, PARO_SEC_PERM, 0)];
    ck_assert_str_eq(p->orders[0].name, "HWF");
    uint8_t *raw = tf_raw(perm);
    uint32_t pos = 3;
    for (uint32_t tt = 0; tt < 3; tt++)
        ck_assert_uint_eq(paro_rd32(raw + 4 * tt), tt);
    for (uint32_t h = 0; h < 3; h++)
        for (uint32_t w = 0; w < 4; w++)
            for (uint32_t f = 0; f < 2; f++, pos++)
                ck_assert_uint_eq(paro_rd32(raw + 4 * pos), 3 + f * 12 + h * 4 + w);
    free(raw);
    /* MASKS: bit order, LSB first */
    tsec *mk = &t.sec[tf_find(&t, PARO_SEC_MASKS, 4)];
    raw = tf_raw(mk);
    ck_assert_uint_eq(mk->raw, (2 * 3 * 3 * 3 + 7) / 8);
    for (uint32_t bk = 0; bk < 2; bk++)
        for (uint32_t h = 0; h < 3; h++)
            for (uint32_t q = 0; q < 3; q++)
                for (uint32_t k = 0; k < 3; k++) {
                    uint32_t i = ((bk * 3 + h) * 3 + q) * 3 + k;
                    ck_assert_int_eq((raw[i >> 3] >> (i & 7)) & 1,
                                     paro_plan_mask_get(p, 1, bk, h, q, k));
                }
    free(raw);
    tf_free(&t);
    free(b);
    paro_plan_free(p);
}
END_TEST

START_TEST(test_mask_bits)
{
    paro_plan *p = make_plan(5, 0);
    ck_assert_uint_eq(paro_plan_mask_bytes(p), 7); /* 54 bits */
    memset(p->masks[0], 0, 7);
    paro_plan_mask_set(p, 0, 1, 2, 0, 1, 1); /* bit ((1*3+2)*3+0)*3+1 = 46 */
    ck_assert_uint_eq(p->masks[0][5], 1u << 6);
    ck_assert_int_eq(paro_plan_mask_get(p, 0, 1, 2, 0, 1), 1);
    ck_assert_int_eq(paro_plan_mask_get(p, 0, 1, 2, 0, 2), 0);
    paro_plan_mask_set(p, 0, 1, 2, 0, 1, 0);
    ck_assert_uint_eq(p->masks[0][5], 0);
    /* out of range: ignored */
    paro_plan_mask_set(p, 0, 2, 0, 0, 0, 1);
    paro_plan_mask_set(p, 2, 0, 0, 0, 0, 1);
    ck_assert_int_eq(paro_plan_mask_get(p, 0, 0, 3, 0, 0), 0);
    for (int i = 0; i < 7; i++)
        ck_assert_uint_eq(p->masks[0][i], 0);
    paro_plan_free(p);
}
END_TEST

START_TEST(test_fmt_double)
{
    uint64_t st = 99;
    char buf[32];
    for (int i = 0; i < 20000; i++) {
        uint64_t bits = tu_rand(&st);
        double v;
        memcpy(&v, &bits, 8);
        if (i % 3 == 0)
            v = tu_uniform(&st);
        if (!isfinite(v))
            continue;
        paro_json_fmt_double(v, buf);
        ck_assert_msg(strtod(buf, NULL) == v, "%s", buf);
        ck_assert_msg(strpbrk(buf, ".e") != NULL, "%s", buf);
    }
    paro_json_fmt_double(1.0, buf);
    ck_assert_str_eq(buf, "1.0");
    paro_json_fmt_double(0.1, buf);
    ck_assert_str_eq(buf, "0.1");
    paro_json_fmt_double(-0.0, buf);
    ck_assert_str_eq(buf, "-0.0");
    paro_json_fmt_double(1e300, buf);
    ck_assert_str_eq(buf, "1e+300");
    paro_json_fmt_double(NAN, buf);
    ck_assert_str_eq(buf, "null");
}
END_TEST

/* ---- every corruption is detected ---- */

START_TEST(test_every_byte_flip)
{
    paro_plan *p = make_plan(11, 0);
    size_t len;
    uint8_t *b = serialize(p, &len);
    paro_plan_free(p);
    static const uint8_t flips[2] = {0x01, 0x80};
    for (size_t i = 0; i < len; i++)
        for (int f = 0; f < 2; f++) {
            b[i] ^= flips[f];
            paro_plan *q = NULL;
            paro_errinfo ei;
            paro_errinfo_clear(&ei);
            paro_err e = paro_plan_parse(b, len, "t.paro", &q, &ei);
            ck_assert_msg(e == PARO_ERR_FORMAT || e == PARO_ERR_LIMIT,
                          "flip 0x%02x at byte %zu of %zu: got %d", flips[f], i, len, e);
            ck_assert_ptr_null(q);
            ck_assert(ei.msg[0] != 0);
            ck_assert_uint_ne(ei.offset, PARO_NO_OFFSET);
            b[i] ^= flips[f];
        }
    free(b);
}
END_TEST

START_TEST(test_truncation_and_trailing)
{
    paro_plan *p = make_plan(12, 0);
    size_t len;
    uint8_t *b = serialize(p, &len);
    paro_plan_free(p);
    for (size_t n = 0; n < len; n++) {
        paro_plan *q = NULL;
        paro_errinfo ei;
        paro_errinfo_clear(&ei);
        /* a copy of exactly n bytes, so that ASan sees any read beyond */
        uint8_t *c = malloc(n ? n : 1);
        memcpy(c, b, n);
        paro_err e = paro_plan_parse(c, n, "t.paro", &q, &ei);
        free(c);
        ck_assert_msg(e == PARO_ERR_FORMAT, "length %zu: got %d", n, e);
        ck_assert_ptr_null(q);
    }
    expect_fail(b, 0, PARO_ERR_FORMAT, "empty", 0);
    expect_fail(b, 5, PARO_ERR_FORMAT, "truncated", 5);
    expect_fail(b, 40, PARO_ERR_FORMAT, "truncated", 40);
    expect_fail(b, len - 1, PARO_ERR_FORMAT, "truncated", len - 1);
    uint8_t *t = malloc(len + 1);
    memcpy(t, b, len);
    t[len] = 0;
    expect_fail(t, len + 1, PARO_ERR_FORMAT, "trailing", len);
    free(t);
    free(b);
}
END_TEST

/* ---- handcrafted files ---- */

START_TEST(test_header_cases)
{
    paro_plan *p = make_plan(13, 0);
    size_t len;
    uint8_t *b = serialize(p, &len);
    paro_plan_free(p);
    uint8_t *c = malloc(len);
#define RESET() memcpy(c, b, len)
    RESET();
    c[1] = 'X';
    expect_fail(c, len, PARO_ERR_FORMAT, "bad magic", 0);
    RESET();
    c[0] = 0x17; /* high bit stripped */
    expect_fail(c, len, PARO_ERR_FORMAT, "text-mode transfer", 0);
    RESET();
    paro_wr16(c + 8, 2);
    expect_fail(c, len, PARO_ERR_FORMAT, "unsupported plan version 2.1", 8);
    RESET();
    paro_wr16(c + 8, 0);
    expect_fail(c, len, PARO_ERR_FORMAT, "unsupported plan version 0.1", 8);
    RESET();
    c[8] = 0; /* major and minor written big-endian */
    c[9] = 1;
    c[10] = 0;
    c[11] = 1;
    expect_fail(c, len, PARO_ERR_FORMAT,
                "version 256.256: byte-swapped file? plans are little-endian", 8);
    RESET();
    paro_wr32(c + 12, 32);
    expect_fail(c, len, PARO_ERR_FORMAT, "header_size 32", 12);
    RESET();
    paro_wr32(c + 24, 70000);
    expect_fail(c, len, PARO_ERR_LIMIT, "sections exceed the limit", 24);
    RESET();
    paro_wr32(c + 28, 40);
    expect_fail(c, len, PARO_ERR_FORMAT, "section_entry_size 40", 28);
    RESET();
    paro_wr64(c + 32, 128);
    expect_fail(c, len, PARO_ERR_FORMAT, "section_table_offset", 32);
    RESET();
    paro_wr64(c + 40, len - 64);
    expect_fail(c, len, PARO_ERR_FORMAT, "trailing", len - 64);
    RESET();
    c[60] = 1;
    expect_fail(c, len, PARO_ERR_FORMAT, "header checksum mismatch", 48);
    fix_header_crc(c);
    expect_fail(c, len, PARO_ERR_FORMAT, "reserved header byte", 60);
    RESET();
    paro_wr32(c + 16, 1u << 3);
    fix_header_crc(c);
    expect_fail(c, len, PARO_ERR_FORMAT, "requires feature bit 3 which this reader does not know",
                16);
    /* unknown optional flags are ignored */
    RESET();
    paro_wr32(c + 20, 0xffffffffu);
    fix_header_crc(c);
    paro_plan_free(parse_ok(c, len));
    /* the table: reserved field, flags, codec, index */
    RESET();
    c[64 + 48 + 44] = 1;
    fix_header_crc(c);
    expect_fail(c, len, PARO_ERR_FORMAT, "reserved field", 64 + 48 + 44);
    RESET();
    c[64 + 48 + 4] |= 2;
    fix_header_crc(c);
    expect_fail(c, len, PARO_ERR_FORMAT, "unknown flag bits", 64 + 48 + 4);
    RESET();
    c[64 + 4] = 0; /* META without the required flag */
    fix_header_crc(c);
    expect_fail(c, len, PARO_ERR_FORMAT, "must have the required flag", 64 + 4);
    RESET();
    c[64 + 5 * 48 + 4] = 1; /* PERM with the required flag */
    fix_header_crc(c);
    expect_fail(c, len, PARO_ERR_FORMAT, "must not have the required flag", 64 + 5 * 48 + 4);
    RESET();
    c[64 + 2 * 48 + 40] = 1; /* SCORES index */
    fix_header_crc(c);
    expect_fail(c, len, PARO_ERR_FORMAT, "index must be 0", 64 + 2 * 48 + 40);
    RESET();
    c[64 + 2 * 48 + 32] = 7; /* SCORES codec */
    fix_header_crc(c);
    expect_fail(c, len, PARO_ERR_FORMAT, "codec", ANY_OFFSET);
    /* a section CRC */
    RESET();
    uint64_t scores_off = paro_rd64(c + 64 + 2 * 48 + 8);
    c[scores_off + 3] ^= 4;
    expect_fail(c, len, PARO_ERR_FORMAT, "section 2 (SCORES) checksum mismatch", scores_off);
    free(c);
    free(b);
#undef RESET
}
END_TEST

START_TEST(test_coverage_cases)
{
    paro_plan *p = make_plan(14, 0);
    size_t len;
    uint8_t *b = serialize(p, &len);
    paro_plan_free(p);
    uint8_t *c = malloc(len);
    const uint64_t e1 = 64 + 48, e2 = 64 + 96;
    /* misaligned offset */
    memcpy(c, b, len);
    paro_wr64(c + e1 + 8, paro_rd64(c + e1 + 8) + 8);
    fix_header_crc(c);
    expect_fail(c, len, PARO_ERR_FORMAT, "not a multiple of 64", e1 + 8);
    /* overlapping: section 2 starts where section 1 does */
    memcpy(c, b, len);
    paro_wr64(c + e2 + 8, paro_rd64(c + e1 + 8));
    fix_header_crc(c);
    expect_fail(c, len, PARO_ERR_FORMAT, "overlaps the previous section", e2 + 8);
    /* overlapping the table */
    memcpy(c, b, len);
    paro_wr64(c + 64 + 8, 64);
    fix_header_crc(c);
    expect_fail(c, len, PARO_ERR_FORMAT, "overlaps the section table", 64 + 8);
    /* a gap of one block */
    memcpy(c, b, len);
    paro_wr64(c + e2 + 8, paro_rd64(c + e2 + 8) + 64);
    fix_header_crc(c);
    expect_fail(c, len, PARO_ERR_FORMAT, "but must start at", e2 + 8);
    /* stored_len runs past the end */
    memcpy(c, b, len);
    paro_wr64(c + e1 + 16, len);
    fix_header_crc(c);
    expect_fail(c, len, PARO_ERR_FORMAT, "runs past the end", e1 + 16);
    /* uncompressed but raw_len != stored_len */
    memcpy(c, b, len);
    paro_wr64(c + e1 + 24, paro_rd64(c + e1 + 24) + 1);
    fix_header_crc(c);
    expect_fail(c, len, PARO_ERR_FORMAT, "differs from stored_len", e1 + 24);
    /* a zlib section claiming more than deflate can give */
    const uint64_t ep = 64 + 5 * 48;
    memcpy(c, b, len);
    paro_wr64(c + ep + 24, paro_rd64(c + ep + 16) * 1033);
    fix_header_crc(c);
    expect_fail(c, len, PARO_ERR_FORMAT, "more than zlib can inflate", ep + 24);
    /* nonzero padding: after META (its length is not a multiple of 64) */
    memcpy(c, b, len);
    uint64_t meta_end = paro_rd64(c + 64 + 8) + paro_rd64(c + 64 + 16);
    ck_assert_uint_ne(meta_end % 64, 0);
    c[meta_end] = 0x20;
    expect_fail(c, len, PARO_ERR_FORMAT, "padding byte", meta_end);
    /* and between the table and the first section */
    memcpy(c, b, len);
    uint64_t tend = 64 + 13 * 48;
    ck_assert_uint_ne(tend % 64, 0);
    c[tend + 1] = 1;
    expect_fail(c, len, PARO_ERR_FORMAT, "padding byte", tend + 1);
    free(c);
    free(b);
}
END_TEST

START_TEST(test_section_cases)
{
    tfile t;
    uint8_t *buf, *b;
    size_t len, n;
    sample_file(&t, &buf, &len);
    rebuild_ok(&t);

    /* unknown optional section: skipped, wherever it is */
    tsec extra = {99, 0, 0, 5, 3, NULL, 3};
    extra.data = malloc(3);
    memcpy(extra.data, "abc", 3);
    tf_insert(&t, 3, &extra);
    b = tf_build(&t, &n);
    paro_plan *q = parse_ok(b, n), *p0 = parse_ok(buf, len);
    plans_equal(p0, q);
    paro_plan_free(q);
    free(b);
    /* the same, marked required: rejected */
    t.sec[3].flags = 1;
    b = tf_build(&t, &n);
    expect_fail(b, n, PARO_ERR_FORMAT, "type 99, which this reader does not know",
                64 + 3 * 48);
    free(b);
    /* an unknown codec in an unknown optional section is skipped too */
    t.sec[3].flags = 0;
    t.sec[3].codec = 9;
    b = tf_build(&t, &n);
    paro_plan_free(parse_ok(b, n));
    free(b);
    tf_remove(&t, 3);

    /* order of sections */
    tsec tmp = t.sec[1];
    t.sec[1] = t.sec[2];
    t.sec[2] = tmp;
    b = tf_build(&t, &n);
    expect_fail(b, n, PARO_ERR_FORMAT, "out of order", 64 + 2 * 48);
    free(b);
    t.sec[2] = t.sec[1];
    t.sec[1] = tmp;
    /* a missing required section */
    tsec saved = t.sec[4];
    memmove(&t.sec[4], &t.sec[5], (t.n - 5) * sizeof tmp);
    t.n--;
    b = tf_build(&t, &n);
    expect_fail(b, n, PARO_ERR_FORMAT, "no RECALL section", 64);
    free(b);
    tf_insert(&t, 4, &saved);
    /* a second SCORES */
    tsec dup = t.sec[2];
    dup.data = malloc(dup.len);
    memcpy(dup.data, t.sec[2].data, dup.len);
    tf_insert(&t, 3, &dup);
    b = tf_build(&t, &n);
    expect_fail(b, n, PARO_ERR_FORMAT, "second SCORES", 64 + 3 * 48);
    free(b);
    tf_remove(&t, 3);
    /* PERM sections out of index order */
    size_t p1 = tf_find(&t, PARO_SEC_PERM, 1);
    t.sec[p1].index = 0;
    b = tf_build(&t, &n);
    expect_fail(b, n, PARO_ERR_FORMAT, "indices must increase", 64 + p1 * 48 + 40);
    free(b);
    t.sec[p1].index = 1;
    /* PERM for an order that does not exist */
    size_t p5 = tf_find(&t, PARO_SEC_PERM, 5);
    t.sec[p5].index = 6;
    b = tf_build(&t, &n);
    expect_fail(b, n, PARO_ERR_FORMAT, "there are 6 orders", 64 + p5 * 48 + 40);
    free(b);
    t.sec[p5].index = 5;
    /* PERM may be left out */
    saved = t.sec[p1];
    memmove(&t.sec[p1], &t.sec[p1 + 1], (t.n - p1 - 1) * sizeof tmp);
    t.n--;
    b = tf_build(&t, &n);
    paro_plan_free(parse_ok(b, n));
    free(b);
    tf_insert(&t, p1, &saved);
    /* a PERM that is not the order's permutation */
    uint8_t *raw = tf_raw(&t.sec[p1]);
    uint8_t keep[4];
    memcpy(keep, raw + 4 * 5, 4);
    memcpy(raw + 4 * 5, raw + 4 * 6, 4);
    memcpy(raw + 4 * 6, keep, 4);
    uint8_t *orig = t.sec[p1].data;
    size_t orig_len = t.sec[p1].len;
    uint64_t orig_raw = t.sec[p1].raw;
    t.sec[p1].data = NULL;
    tf_set_raw(&t.sec[p1], raw, (size_t)orig_raw);
    b = tf_build(&t, &n);
    expect_fail(b, n, PARO_ERR_FORMAT, "position 5 holds token", ANY_OFFSET);
    free(b);
    memcpy(raw + 4 * 6, raw + 4 * 5, 4); /* a repeated token */
    tf_set_raw(&t.sec[p1], raw, (size_t)orig_raw);
    b = tf_build(&t, &n);
    expect_fail(b, n, PARO_ERR_FORMAT, "is not a permutation", ANY_OFFSET);
    free(b);
    free(raw);
    free(t.sec[p1].data);
    t.sec[p1].data = orig;
    t.sec[p1].len = orig_len;
    t.sec[p1].raw = orig_raw;
    rebuild_ok(&t);

    /* MASKS: a layer missing, a layer not in the plan, wrong raw length */
    size_t m4 = tf_find(&t, PARO_SEC_MASKS, 4);
    t.sec[m4].index = 5;
    b = tf_build(&t, &n);
    expect_fail(b, n, PARO_ERR_FORMAT, "no MASKS section for layer 4", 64 + m4 * 48 + 40);
    free(b);
    t.sec[m4].index = 3;
    b = tf_build(&t, &n);
    expect_fail(b, n, PARO_ERR_FORMAT, "layer 3, which is not in the plan", 64 + m4 * 48 + 40);
    free(b);
    t.sec[m4].index = 4;
    saved = t.sec[m4];
    t.n--;
    b = tf_build(&t, &n);
    expect_fail(b, n, PARO_ERR_FORMAT, "no MASKS section for layer 4", 64);
    free(b);
    t.n++;
    raw = tf_raw(&t.sec[m4]);
    orig = t.sec[m4].data;
    orig_len = t.sec[m4].len;
    orig_raw = t.sec[m4].raw;
    t.sec[m4].data = NULL;
    tf_set_raw(&t.sec[m4], raw, (size_t)orig_raw - 1);
    b = tf_build(&t, &n);
    expect_fail(b, n, PARO_ERR_FORMAT, "holds 6 bytes, but 2 buckets x 3 heads x 3 x 3 blocks",
                64 + m4 * 48 + 24);
    free(b);
    /* raw_len says 7 but the stream gives 6, or gives 7 but raw_len says 6 */
    t.sec[m4].raw = orig_raw;
    b = tf_build(&t, &n);
    expect_fail(b, n, PARO_ERR_FORMAT, "inflates to 6 bytes, but its raw_len is 7", ANY_OFFSET);
    free(b);
    /* mask padding bit set (54 bits: the top 2 bits of byte 6) */
    raw[6] |= 0x80;
    tf_set_raw(&t.sec[m4], raw, (size_t)orig_raw);
    b = tf_build(&t, &n);
    expect_fail(b, n, PARO_ERR_FORMAT, "padding bits set", ANY_OFFSET);
    free(b);
    /* bytes after the zlib stream */
    raw[6] &= 0x3f;
    tf_set_raw(&t.sec[m4], raw, (size_t)orig_raw);
    t.sec[m4].data = realloc(t.sec[m4].data, t.sec[m4].len + 1);
    t.sec[m4].data[t.sec[m4].len++] = 0;
    b = tf_build(&t, &n);
    expect_fail(b, n, PARO_ERR_FORMAT, "bytes after the end of the zlib stream", ANY_OFFSET);
    free(b);
    /* a stream cut short */
    t.sec[m4].len -= 3;
    b = tf_build(&t, &n);
    expect_fail(b, n, PARO_ERR_FORMAT, "cut short", ANY_OFFSET);
    free(b);
    /* not zlib at all */
    memset(t.sec[m4].data, 0x55, t.sec[m4].len);
    b = tf_build(&t, &n);
    expect_fail(b, n, PARO_ERR_FORMAT, "corrupt zlib stream", ANY_OFFSET);
    free(b);
    free(t.sec[m4].data);
    free(raw);
    t.sec[m4].data = orig;
    t.sec[m4].len = orig_len;
    t.sec[m4].raw = orig_raw;
    rebuild_ok(&t);

    /* contents of uncompressed sections, named at the byte */
    uint64_t first = up64(64 + t.n * 48), off[5];
    off[0] = first;
    for (int i = 1; i < 5; i++)
        off[i] = up64(off[i - 1] + t.sec[i - 1].len);
    uint8_t save1 = t.sec[1].data[4];
    t.sec[1].data[4] = 6; /* head_order: order index 6 of 6 */
    b = tf_build(&t, &n);
    expect_fail(b, n, PARO_ERR_FORMAT, "has order index 6, but there are 6 orders", off[1] + 4);
    free(b);
    t.sec[1].data[4] = save1;
    double v = 1.5;
    uint64_t u;
    memcpy(&u, &v, 8);
    uint8_t save8[8];
    memcpy(save8, t.sec[3].data + 8 * 5, 8);
    paro_wr64(t.sec[3].data + 8 * 5, u); /* density [0][1][2] */
    b = tf_build(&t, &n);
    expect_fail(b, n, PARO_ERR_FORMAT, "density of layer 1 bucket 1 head 2 is 1.5", off[3] + 40);
    free(b);
    v = NAN;
    memcpy(&u, &v, 8);
    paro_wr64(t.sec[3].data + 8 * 5, u);
    b = tf_build(&t, &n);
    expect_fail(b, n, PARO_ERR_FORMAT, "outside [0, 1]", off[3] + 40);
    free(b);
    memcpy(t.sec[3].data + 8 * 5, save8, 8);
    v = INFINITY;
    memcpy(&u, &v, 8);
    memcpy(save8, t.sec[2].data + 8 * 7, 8);
    paro_wr64(t.sec[2].data + 8 * 7, u); /* scores [0][0][2][1] */
    b = tf_build(&t, &n);
    expect_fail(b, n, PARO_ERR_FORMAT, "quant score is not finite", off[2] + 56);
    free(b);
    memcpy(t.sec[2].data + 8 * 7, save8, 8);
    /* the data sections may be compressed */
    for (int i = 1; i < 5; i++) {
        raw = tf_raw(&t.sec[i]);
        t.sec[i].codec = 1;
        tf_set_raw(&t.sec[i], raw, (size_t)t.sec[i].raw);
        free(raw);
    }
    b = tf_build(&t, &n);
    q = parse_ok(b, n);
    plans_equal(p0, q);
    paro_plan_free(q);
    free(b);
    /* but META may not */
    raw = tf_raw(&t.sec[0]);
    t.sec[0].codec = 1;
    tf_set_raw(&t.sec[0], raw, (size_t)t.sec[0].raw);
    free(raw);
    b = tf_build(&t, &n);
    expect_fail(b, n, PARO_ERR_FORMAT, "(META): codec 1 is not allowed", 64 + 32);
    free(b);
    paro_plan_free(p0);
    tf_free(&t);
    free(buf);
}
END_TEST

START_TEST(test_forward_compat)
{
    /* a newer minor with a longer header and longer entries (unknown bytes
     * set), an unknown optional section, unknown flags and unknown JSON keys:
     * this reader reads it */
    tfile t;
    uint8_t *buf, *b;
    size_t len, n;
    sample_file(&t, &buf, &len);
    t.minor = PARO_PLAN_MINOR + 1;
    t.header_size = 100;
    t.entry_size = 56;
    t.fill = 0xab;
    t.optional = 0x10;
    tsec extra = {1000, 0, 0, 0, 0, NULL, 0};
    extra.data = malloc(1);
    tf_insert(&t, t.n, &extra);
    meta_replace(&t, "\"tool\":", "\"future\":{\"x\":[1,2]},\"tool\":");
    meta_replace(&t, "\"keep_text\":", "\"later\":null,\"keep_text\":");
    b = tf_build(&t, &n);
    paro_plan *q = parse_ok(b, n), *p0 = parse_ok(buf, len);
    plans_equal(p0, q);
    paro_plan_free(q);
    free(b);
    /* the same unknown keys in a file of our minor or an older one are errors */
    t.minor = PARO_PLAN_MINOR;
    b = tf_build(&t, &n);
    expect_fail(b, n, PARO_ERR_FORMAT, "unknown key \"future\"", ANY_OFFSET);
    free(b);
    t.minor = 0;
    b = tf_build(&t, &n);
    expect_fail(b, n, PARO_ERR_FORMAT, "unknown key \"future\"", ANY_OFFSET);
    free(b);
    /* and unknown header bytes must be zero up to byte 64 only */
    paro_plan_free(p0);
    tf_free(&t);
    free(buf);
}
END_TEST

/* target.keep_last (1.2): written only when set, in a file of minor 2;
 * a 1.1 file must not have it; a newer file may say false. */
START_TEST(test_keep_last)
{
    paro_plan *p = make_plan(44, 0);
    p->keep_last = 1;
    size_t len, len2;
    uint8_t *b = serialize(p, &len);
    ck_assert_uint_eq(paro_rd16(b + 10), 2);
    paro_plan *q = parse_ok(b, len);
    char *doc = paro_plan_to_json(q); /* keep_last after keep_text, last in target */
    const char *kt = strstr(doc, "\"keep_text\":"), *kl = strstr(doc, "\"keep_last\":\ttrue\n");
    ck_assert(kt && kl && kt < kl && strchr(kt, '}') > kl);
    free(doc);
    plans_equal(p, q);
    ck_assert_uint_eq(q->format_minor, 2);
    uint8_t *b2 = serialize(q, &len2);
    ck_assert_uint_eq(len, len2);
    ck_assert_mem_eq(b, b2, len);
    free(b);
    free(b2);
    paro_plan_free(q);
    p->keep_last = 2;
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_plan_serialize(p, &b, &len, &ei), PARO_ERR_INTERNAL);
    ck_assert_ptr_nonnull(strstr(ei.msg, "\"keep_last\" must be 0 or 1"));
    paro_plan_free(p);

    tfile t;
    uint8_t *buf;
    size_t n;
    sample_file(&t, &buf, &len);
    ck_assert_uint_eq(t.minor, 1);
    meta_replace(&t, "\"keep_text\":true", "\"keep_text\":true,\"keep_last\":true");
    b = tf_build(&t, &n);
    expect_fail(b, n, PARO_ERR_FORMAT, "unknown key \"keep_last\" in \"target\"", ANY_OFFSET);
    free(b);
    t.minor = 3; /* newer: read, and understood */
    b = tf_build(&t, &n);
    q = parse_ok(b, n);
    ck_assert_int_eq(q->keep_last, 1);
    paro_plan_free(q);
    free(b);
    t.minor = 2;
    meta_replace(&t, "\"keep_last\":true", "\"keep_last\":false");
    b = tf_build(&t, &n);
    q = parse_ok(b, n);
    ck_assert_int_eq(q->keep_last, 0);
    paro_plan_free(q);
    free(b);
    meta_replace(&t, "\"keep_last\":false", "\"keep_last\":1");
    b = tf_build(&t, &n);
    expect_fail(b, n, PARO_ERR_FORMAT, "target \"keep_last\" must be true or false",
                ANY_OFFSET);
    free(b);
    tf_free(&t);
    free(buf);
}
END_TEST

START_TEST(test_json_cases)
{
    /* syntax */
    meta_fail("{\"tool\"", "{\"tool\"\x01", PARO_ERR_FORMAT, "not valid json");
    meta_fail("\"cpu\"", "\"cp\xff\"", PARO_ERR_FORMAT, "invalid utf-8");
    meta_fail("\"cpu\"", "\"cp\xc0\xb5\"", PARO_ERR_FORMAT, "invalid utf-8"); /* overlong */
    meta_fail("\"cpu\"", "\"cp\\u0000\"", PARO_ERR_FORMAT, "\\u0000");
    meta_fail("\"cpu\"", "\"cp\\ud800\"", PARO_ERR_FORMAT, "unpaired surrogate");
    meta_fail("\"cpu\"", "\"cp\tu\"", PARO_ERR_FORMAT, "control character");
    meta_fail("\"head_dim\":16", "\"head_dim\":016", PARO_ERR_FORMAT, "not valid json");
    meta_fail("\"head_dim\":16", "\"head_dim\":16.", PARO_ERR_FORMAT, "bad number");
    meta_fail("\"head_dim\":16", "\"head_dim\":NaN", PARO_ERR_FORMAT, "unexpected character");
    meta_fail("\"head_dim\":16", "\"head_dim\":+16", PARO_ERR_FORMAT, "unexpected character");
    meta_fail("\"inputs\"",
              "\"x\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
              "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],\"inputs\"",
              PARO_ERR_FORMAT, "nested deeper than 32");
    meta_fail("{", "[", PARO_ERR_FORMAT, "must be a json object");
}
END_TEST

START_TEST(test_json_whitespace_ok)
{
    /* readers accept any valid JSON text: whitespace, key order */
    tfile t;
    uint8_t *buf, *b;
    size_t len, n;
    sample_file(&t, &buf, &len);
    meta_replace(&t, "{\"tool\"", " \n{ \"tool\" ");
    meta_replace(&t, "\"model\":", "\"seed\":9007199254740991,\"model\":");
    meta_replace(&t, ",\"seed\":9007199254740991,\"inputs\"", ",\"inputs\"");
    meta_replace(&t, "\"head_dim\":16", "\"head_dim\":1.6e1");
    b = tf_build(&t, &n);
    paro_plan *q = parse_ok(b, n), *p0 = parse_ok(buf, len);
    plans_equal(p0, q);
    paro_plan_free(q);
    paro_plan_free(p0);
    free(b);
    tf_free(&t);
    free(buf);
}
END_TEST

START_TEST(test_json_schema_cases)
{
    const paro_err F = PARO_ERR_FORMAT;
    meta_fail("\"model\":", "\"tool\":\"x\",\"model\":", F, "duplicate key \"tool\"");
    meta_fail("\"alpha\":", "\"alpha\":1.0,\"alpha\":", F, "duplicate key \"alpha\" in \"metric\"");
    meta_fail("\"model\":", "\"Tool\":\"x\",\"model\":", F, "unknown key \"Tool\"");
    meta_fail("\"alpha\":", "\"beta\":1.0,\"alpha\":", F, "unknown key \"beta\" in \"metric\"");
    meta_fail("\"head_dim\":16,", "", F, "required key \"head_dim\" is missing");
    meta_fail("\"backend\":\"cpu\"", "\"backend\":\"gpu\"", F, "\"backend\" must be");
    meta_fail("\"backend\":\"cpu\"", "\"backend\":1", F, "\"backend\" must be a string");
    meta_fail("\"grid\":[2,3,4]", "\"grid\":[2,3]", F, "\"grid\" must be an array of 3");
    meta_fail("\"grid\":[2,3,4]", "\"grid\":[2,0,4]", F, "\"grid\" sizes must be >= 1");
    meta_fail("\"grid\":[2,3,4]", "\"grid\":[2,3,4.5]", F, "\"grid\" must be an array of 3");
    meta_fail("\"tokens\":27", "\"tokens\":26",
              F, "\"tokens\" is 26, but text_tokens + F*H*W is 27");
    meta_fail("\"text_position\":\"first\"", "\"text_position\":\"middle\"",
              F, "\"text_position\"");
    meta_fail("\"num_heads\":3", "\"num_heads\":-3", F, "\"num_heads\" must be an integer");
    meta_fail("\"scale\":0.25", "\"scale\":0.0", F, "\"scale\" must be a finite number > 0");
    meta_fail("\"scale\":0.25", "\"scale\":1e999", F, "number out of the range of a binary64");
    meta_fail("\"scale\":0.25", "\"scale\":-1e-999", F, "\"scale\" must be a finite number > 0");
    meta_fail("\"layers\":[1,4]", "\"layers\":[4,1]", F, "strictly increasing");
    meta_fail("\"layers\":[1,4]", "\"layers\":[1,6]", F, "not below model_layers 6");
    meta_fail("\"layers\":[1,4]", "\"layers\":[]", F, "\"layers\" must not be empty");
    meta_fail("\"blocks\":[3,3]", "\"blocks\":[3,4]", F, "\"blocks\" is [3, 4]");
    meta_fail("\"block\":[9,10]", "\"block\":[0,10]", F, "\"block\" sizes must be >= 1");
    meta_fail("{\"kind\":\"axes\",\"name\":\"HWF\"}", "{\"kind\":\"tiled\",\"name\":\"HWF\"}", F,
              "knows only \"axes\"");
    meta_fail("\"name\":\"HWF\"", "\"name\":\"HWX\"", F, "is not one of FHW");
    meta_fail("\"name\":\"HWF\"", "\"name\":\"WFH\"", F, "order WFH is listed twice");
    meta_fail("\"name\":\"HWF\"}", "\"name\":\"HWF\",\"extra\":1}",
              F, "unknown key \"extra\" in an order");
    meta_fail("\"alpha\":0.7", "\"alpha\":1.5", F, "\"alpha\" must be in [0, 1]");
    meta_fail("\"score_recall\":0.95", "\"score_recall\":0.0",
              F, "\"score_recall\" must be in (0, 1]");
    meta_fail("\"mode\":\"recall\"", "\"mode\":\"best\"", F, "target \"mode\" must be");
    meta_fail("\"value\":0.9", "\"value\":1.5", F, "of a recall target must be in [0, 1]");
    meta_fail("\"keep_text\":true", "\"keep_text\":1", F, "\"keep_text\" must be true or false");
    meta_fail("\"count\":2", "\"count\":3", F, "\"edges\" must be an array of count + 1 = 4");
    meta_fail("\"edges\":[0.0,0.5,1.0]", "\"edges\":[0.0,0.25,1.0]", F, "\"edges\"[1] must be 1/2");
    meta_fail("\"count\":2", "\"count\":2000", PARO_ERR_LIMIT, "buckets exceed the limit");
    meta_fail("\"dense_until\":0.25", "\"dense_until\":2.0",
              F, "\"dense_until\" must be in [0, 1]");
    meta_fail("\"index\":2,", "\"index\":0,", F, "sample indices must be strictly increasing");
    meta_fail("\"step\":10,", "\"step\":-1,", F, "\"step\" must be an integer in [0, 2^53]");
    meta_fail("\"step\":10,\"bucket\":1", "\"step\":10,\"bucket\":2", F, "bucket 2 is not below 2");
    meta_fail("\"timestep\":999.0", "\"timestep\":\"999\"", F, "\"timestep\" must be a number");
    meta_fail("\"timestep\":999.0,", "", F, "a sample lacks the key \"timestep\"");
    meta_fail("\"seed\":9007199254740991", "\"seed\":9007199254740994",
              F, "\"seed\" must be an integer");
    meta_fail("\"seed\":9007199254740991", "\"seed\":-1", F, "\"seed\" must be an integer");
    meta_fail("\"layer_crc32\":[\"", "\"layer_crc32\":[\"A", F, "8 lowercase hex digits");
    meta_fail("\"layer_crc32\":[", "\"layer_crc32\":[\"00000000\",", F, "array of 2 strings");
    meta_fail("\"model_layers\":6", "\"model_layers\":6.5",
              F, "\"model_layers\" must be an integer");
}
END_TEST

START_TEST(test_json_offsets)
{
    /* a META error names the offending top-level key's position */
    tfile t;
    uint8_t *buf, *b;
    size_t len, n;
    sample_file(&t, &buf, &len);
    meta_replace(&t, "\"tokens\":27", "\"tokens\":28");
    b = tf_build(&t, &n);
    uint64_t meta_off = up64(64 + t.n * 48);
    char *json = (char *)tf_raw(&t.sec[0]);
    json[t.sec[0].raw] = 0;
    uint64_t key = meta_off + (uint64_t)(strstr(json, "\"tokens\"") - json);
    expect_fail(b, n, PARO_ERR_FORMAT, "\"tokens\" is 28", key);
    free(json);
    free(b);
    tf_free(&t);
    free(buf);
}
END_TEST

/* ---- the writer refuses what the reader would refuse ---- */

START_TEST(test_writer_refuses)
{
    paro_plan *p = make_plan(21, 0);
    uint8_t *buf = NULL;
    size_t len = 0;
    paro_errinfo ei;

    p->scores[4] = NAN;
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_plan_serialize(p, &buf, &len, &ei), PARO_ERR_INTERNAL);
    ck_assert_ptr_null(buf);
    ck_assert_ptr_nonnull(strstr(ei.msg, "score is not finite"));
    p->scores[4] = 0;

    p->scale = INFINITY;
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_plan_serialize(p, &buf, &len, &ei), PARO_ERR_INTERNAL);
    ck_assert_ptr_nonnull(strstr(ei.msg, "\"scale\""));
    p->scale = 0.25;

    p->density[2] = 1.0000001;
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_plan_serialize(p, &buf, &len, &ei), PARO_ERR_INTERNAL);
    ck_assert_ptr_nonnull(strstr(ei.msg, "outside [0, 1]"));
    p->density[2] = 1.0;

    p->masks[1][6] |= 0x40; /* padding bit */
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_plan_serialize(p, &buf, &len, &ei), PARO_ERR_INTERNAL);
    ck_assert_ptr_nonnull(strstr(ei.msg, "padding bits"));
    p->masks[1][6] &= 0x3f;

    p->head_order[0] = 6;
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_plan_serialize(p, &buf, &len, &ei), PARO_ERR_INTERNAL);
    p->head_order[0] = 5;

    p->seed = (1ull << 53) + 1;
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_plan_serialize(p, &buf, &len, &ei), PARO_ERR_INTERNAL);
    p->seed = 1ull << 53;

    p->nq = 4;
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_plan_serialize(p, &buf, &len, &ei), PARO_ERR_INTERNAL);
    ck_assert_ptr_nonnull(strstr(ei.msg, "\"blocks\""));
    p->nq = 3;

    char bad_utf8[] = "x\xff";
    char *model = p->model;
    p->model = bad_utf8;
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_plan_serialize(p, &buf, &len, &ei), PARO_ERR_INTERNAL);
    p->model = model;

    /* a failed write leaves no file */
    char *dir = tu_mkdtemp();
    char *path = tu_path(dir, "x.paro");
    p->recall[0] = -0.5;
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_plan_write(p, path, 1, &ei), PARO_ERR_INTERNAL);
    ck_assert_int_eq(tu_exists(path), 0);
    p->recall[0] = 0.5;

    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_plan_serialize(p, &buf, &len, &ei), PARO_OK);
    free(buf);
    tu_rmtree(dir);
    free(path);
    free(dir);
    paro_plan_free(p);
}
END_TEST

/* ---- a failed run leaves nothing behind ---- */

/* The writer will not replace what is not a regular file (a folder fails the
 * rename; a device or FIFO would be replaced by a plain file). */
START_TEST(test_writer_refuses_non_files)
{
    paro_plan *p = make_plan(22, 0);
    char *dir = tu_mkdtemp();
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_plan_write(p, dir, 2, &ei), PARO_ERR_IO);
    ck_assert_ptr_nonnull(strstr(ei.msg, "is a folder"));
    char *fifo = tu_path(dir, "fifo.paro");
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_plan_write(p, fifo, 2, &ei), PARO_ERR_IO);
    ck_assert_ptr_nonnull(strstr(ei.msg, "is not a regular file"));
    struct stat st;
    ck_assert_int_eq(stat(fifo, &st), 0);
    ck_assert(S_ISFIFO(st.st_mode));
    DIR *d = opendir(dir); /* and no temporary file */
    int entries = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        entries += e->d_name[0] != '.';
    closedir(d);
    ck_assert_int_eq(entries, 1);
    tu_rmtree(dir);
    free(fifo);
    free(dir);
    paro_plan_free(p);
}
END_TEST

/* A journal without a whole record is removed; one with a layer, or a file
 * that is not a journal, is kept. */
START_TEST(test_journal_discard_empty)
{
    paro_plan *p = make_plan(23, 0);
    char *dir = tu_mkdtemp();
    char *path = tu_path(dir, "x.journal");
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_journal_discard_empty(path), 1); /* none there */

    paro_journal *j = NULL;
    uint32_t resumed = 9;
    ck_assert_int_eq(paro_journal_open(path, 1234, 56, 0, p, &j, &resumed, &ei), PARO_OK);
    paro_journal_close(j, 0);
    size_t n = 0;
    free(tu_read_file(path, &n));
    ck_assert_uint_eq(n, 24); /* the header alone */
    ck_assert_int_eq(paro_journal_discard_empty(path), 1);
    ck_assert_int_eq(tu_exists(path), 0);

    ck_assert_int_eq(paro_journal_open(path, 1234, 56, 0, p, &j, &resumed, &ei), PARO_OK);
    ck_assert_int_eq(paro_journal_append(j, p, 0, &ei), PARO_OK);
    paro_journal_close(j, 0);
    unsigned char *whole = tu_read_file(path, &n);
    ck_assert_uint_gt(n, 32);
    ck_assert_int_eq(paro_journal_discard_empty(path), 0); /* a layer: kept */
    ck_assert_int_eq(tu_exists(path), 1);
    tu_write_file(path, whole, n - 1); /* the record cut short: nothing whole */
    ck_assert_int_eq(paro_journal_discard_empty(path), 1);
    ck_assert_int_eq(tu_exists(path), 0);
    for (size_t cut = 0; cut < 32; cut++) { /* a header cut anywhere */
        tu_write_file(path, whole, cut);
        ck_assert_int_eq(paro_journal_discard_empty(path), 1);
        ck_assert_int_eq(tu_exists(path), 0);
    }
    tu_write_file(path, "PAROJRNX", 8); /* not ours */
    ck_assert_int_eq(paro_journal_discard_empty(path), 0);
    ck_assert_int_eq(tu_exists(path), 1);
    free(whole);
    tu_rmtree(dir);
    free(path);
    free(dir);
    paro_plan_free(p);
}
END_TEST

/* ---- the dump document ---- */

START_TEST(test_to_json)
{
    paro_plan *p = make_plan(31, 0);
    char *txt = paro_plan_to_json(p);
    ck_assert_ptr_nonnull(txt);
    size_t n = strlen(txt);
    ck_assert(n > 2 && txt[n - 1] == '\n' && txt[n - 2] == '}');
    cJSON *root = cJSON_Parse(txt);
    ck_assert_ptr_nonnull(root);
    /* key order: schema, the META keys, heads */
    const cJSON *c = root->child;
    ck_assert_str_eq(c->string, "schema");
    ck_assert_str_eq(c->valuestring, "paro-plan/v1");
    c = c->next;
    for (int k = 0; k < PARO_K_COUNT; k++, c = c->next)
        ck_assert_str_eq(c->string, paro_plan_meta_keys[k]);
    ck_assert_str_eq(c->string, "heads");
    ck_assert_ptr_null(c->next);
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(root, "seed");
    ck_assert(seed->valuedouble == 9007199254740991.0);
    ck_assert_ptr_nonnull(strstr(txt, "9007199254740991"));
    const cJSON *heads = cJSON_GetObjectItemCaseSensitive(root, "heads");
    ck_assert_int_eq(cJSON_GetArraySize(heads), (int)(p->n_layers * p->heads));
    int i = 0;
    for (const cJSON *h = heads->child; h; h = h->next, i++) {
        uint32_t l = (uint32_t)i / p->heads, hh = (uint32_t)i % p->heads;
        ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(h, "layer")->valueint,
                         (int)p->layers[l]);
        ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(h, "head")->valueint, (int)hh);
        ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(h, "order")->valuestring,
                         p->orders[p->head_order[paro_plan_head_index(p, l, hh)]].name);
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(h, "density");
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(h, "recall");
        ck_assert_int_eq(cJSON_GetArraySize(d), (int)p->n_buckets);
        for (uint32_t b = 0; b < p->n_buckets; b++) {
            ck_assert(cJSON_GetArrayItem(d, (int)b)->valuedouble ==
                      p->density[paro_plan_bucket_index(p, l, b, hh)]);
            ck_assert(cJSON_GetArrayItem(r, (int)b)->valuedouble ==
                      p->recall[paro_plan_bucket_index(p, l, b, hh)]);
        }
        const cJSON *sc = cJSON_GetObjectItemCaseSensitive(h, "scores");
        ck_assert_int_eq(cJSON_GetArraySize(sc), (int)p->n_orders);
        for (uint32_t o = 0; o < p->n_orders; o++) {
            const cJSON *so = cJSON_GetObjectItemCaseSensitive(sc, p->orders[o].name);
            const double *s = paro_plan_scores_at(p, l, hh, o);
            ck_assert(cJSON_GetObjectItemCaseSensitive(so, "sparse")->valuedouble == s[0]);
            ck_assert(cJSON_GetObjectItemCaseSensitive(so, "quant")->valuedouble == s[1]);
            ck_assert(cJSON_GetObjectItemCaseSensitive(so, "combined")->valuedouble == s[2]);
        }
    }
    cJSON_Delete(root);
    /* the META keys carry the same text as the file's META section */
    size_t len;
    uint8_t *buf = serialize(p, &len);
    const char *meta = (const char *)buf + paro_rd64(buf + 64 + 8);
    cJSON *m = cJSON_ParseWithLength(meta, paro_rd64(buf + 64 + 16));
    root = cJSON_Parse(txt);
    for (const cJSON *mk = m->child; mk; mk = mk->next) {
        char *a = cJSON_PrintUnformatted(mk);
        char *b = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(root, mk->string));
        ck_assert_str_eq(a, b);
        free(a);
        free(b);
    }
    cJSON_Delete(m);
    cJSON_Delete(root);
    free(buf);
    free(txt);
    paro_plan_free(p);
}
END_TEST

START_TEST(test_alloc)
{
    paro_plan *p = make_plan(41, 0), *q = NULL;
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    /* a plan is a valid shape for another: deep copies */
    ck_assert_int_eq(paro_plan_alloc(&q, p, &ei), PARO_OK);
    ck_assert_ptr_ne(q->tool, p->tool);
    ck_assert_str_eq(q->model, p->model);
    ck_assert_ptr_ne(q->layers, p->layers);
    ck_assert_uint_eq(q->layer_crc32[1], p->layer_crc32[1]);
    ck_assert_uint_eq(q->samples[2].step, 0);
    for (size_t i = 0; i < (size_t)q->n_layers * q->n_buckets * q->heads; i++)
        ck_assert(q->density[i] == 0.0);
    ck_assert_uint_eq(q->masks[1][0], 0);
    paro_plan_free(q);
    /* too large */
    paro_plan big = *p;
    big.heads = 1u << 31;
    big.nq = big.nk = 65536;
    big.n_buckets = 1024;
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_plan_alloc(&q, &big, &ei), PARO_ERR_LIMIT);
    ck_assert_ptr_null(q);
    paro_plan_free(p);
    paro_plan_free(NULL);
    ck_assert_str_eq(paro_target_name(PARO_TARGET_THRESHOLD), "threshold");
}
END_TEST

/* ---- tile masses (TILEMASS, format 1.1) ---- */

START_TEST(test_tile_mass_levels)
{
    ck_assert_uint_eq(paro_plan_tile_mass_level(2.5, 2.5), 255);
    ck_assert_uint_eq(paro_plan_tile_mass_level(2.5e-6, 2.5), 1);
    ck_assert_uint_eq(paro_plan_tile_mass_level(2.49e-6, 2.5), 0);
    ck_assert_uint_eq(paro_plan_tile_mass_level(1e-3, 1.0), 128);
    ck_assert_uint_eq(paro_plan_tile_mass_level(0.0, 1.0), 0);
    ck_assert_uint_eq(paro_plan_tile_mass_level(NAN, 1.0), 0);
    ck_assert(paro_tile_mass_relative(0) == 0.0);
    ck_assert(paro_tile_mass_relative(255) == 1.0);
    ck_assert(fabs(paro_tile_mass_relative(1) - 1e-6) < 1e-21);
    ck_assert(fabs(paro_tile_mass_relative(128) - 1e-3) < 1e-18);
    /* every level stands for a mass that quantises back to it */
    for (int q = 1; q < 256; q++)
        ck_assert_uint_eq(paro_plan_tile_mass_level(paro_tile_mass_relative((uint8_t)q), 1.0), q);
    /* levels are 6/254 of a decade apart */
    for (int q = 2; q < 256; q++)
        ck_assert(fabs(log10(paro_tile_mass_relative((uint8_t)q) /
                             paro_tile_mass_relative((uint8_t)(q - 1))) - 6.0 / 254) < 1e-12);

    paro_plan *p = make_plan_ex(3, 0, 2, 1);
    const double mass[9] = {1e-9, 0.5, 2.0, 0.002, 0.0, 4e-6, 3.9e-6, 1.0, 4.0};
    paro_plan_set_tile_mass(p, 1, 0, 2, mass);
    /* 1 + round(254 * (log10(mass / 4) + 6) / 6), 0 below 1e-6 of 4 */
    static const uint8_t want[9] = {0, 217, 242, 115, 0, 1, 0, 230, 255};
    for (uint32_t i = 0; i < 9; i++)
        ck_assert_uint_eq(paro_plan_tile_mass_get(p, 1, 0, 2, i / 3, i % 3), want[i]);
    /* no mass, or a largest mass that is not finite: all levels 0 */
    const double zero[9] = {0}, inf[9] = {1.0, INFINITY, 0, 0, 0, 0, 0, 0, 0};
    paro_plan_set_tile_mass(p, 1, 0, 2, zero);
    for (uint32_t i = 0; i < 9; i++)
        ck_assert_uint_eq(paro_plan_tile_mass_get(p, 1, 0, 2, i / 3, i % 3), 0);
    paro_plan_set_tile_mass(p, 1, 0, 2, inf);
    ck_assert_uint_eq(paro_plan_tile_mass_get(p, 1, 0, 2, 0, 0), 0);
    /* out of range: ignored, 0 */
    paro_plan_set_tile_mass(p, 2, 0, 0, mass);
    paro_plan_set_tile_mass(p, 0, 2, 0, mass);
    paro_plan_set_tile_mass(p, 0, 0, 3, mass);
    ck_assert_uint_eq(paro_plan_tile_mass_get(p, 0, 0, 0, 3, 0), 0);
    ck_assert_uint_eq(paro_plan_tile_mass_bytes(p), 2 * 3 * 9);
    paro_plan_free(p);
    /* a plan without tile masses ignores them */
    p = make_plan(3, 0);
    ck_assert_ptr_null(p->tile_mass);
    paro_plan_set_tile_mass(p, 0, 0, 0, mass);
    ck_assert_uint_eq(paro_plan_tile_mass_get(p, 0, 0, 0, 0, 2), 0);
    paro_plan_free(p);
}
END_TEST

START_TEST(test_tile_mass_file)
{
    for (int text_last = 0; text_last < 2; text_last++) {
        paro_plan *p = make_plan_ex(21 + (uint64_t)text_last, text_last, 2, 1);
        size_t len, len2;
        uint8_t *b = serialize(p, &len);
        ck_assert_uint_eq(paro_rd16(b + 10), 1);
        ck_assert_uint_eq(paro_rd32(b + 24), 5 + 6 + 2 + 2);
        /* TILEMASS per layer after MASKS: optional, zlib, index = layer id */
        for (int i = 13; i < 15; i++) {
            const uint8_t *e = b + 64 + 48 * i;
            ck_assert_uint_eq(paro_rd32(e), PARO_SEC_TILEMASS);
            ck_assert_uint_eq(paro_rd32(e + 4), 0);
            ck_assert_uint_eq(paro_rd32(e + 32), 1);
            ck_assert_uint_eq(paro_rd64(e + 24), 2 * 3 * 3 * 3);
            ck_assert_uint_eq(paro_rd32(e + 40), i == 13 ? 1 : 4);
        }
        paro_plan *q = parse_ok(b, len);
        ck_assert_uint_eq(q->format_minor, 1);
        plans_equal(p, q);
        uint8_t *b2 = serialize(q, &len2);
        ck_assert_uint_eq(len, len2);
        ck_assert_mem_eq(b, b2, len);
        /* the head without mass is all 0, the others peak at 255 */
        ck_assert_uint_eq(q->tile_mass[0][(1 * 3 + 2) * 9 + 4], 0);
        free(b);
        free(b2);
        paro_plan_free(p);
        paro_plan_free(q);
    }
    /* without: no TILEMASS section */
    paro_plan *p = make_plan(21, 0);
    size_t len;
    uint8_t *b = serialize(p, &len);
    for (uint32_t i = 0; i < paro_rd32(b + 24); i++)
        ck_assert_uint_ne(paro_rd32(b + 64 + 48 * i), PARO_SEC_TILEMASS);
    paro_plan *q = parse_ok(b, len);
    ck_assert_int_eq(q->with_tile_mass, 0);
    ck_assert_ptr_null(q->tile_mass);
    free(b);
    paro_plan_free(p);
    paro_plan_free(q);
}
END_TEST

START_TEST(test_tile_mass_section_limit)
{
    /* TILEMASS doubles the sections per layer: 32766 layers then need more
     * than the 65536 sections a plan may have */
    paro_plan *p = make_plan(27, 0);
    const uint32_t n = 32766;
    uint32_t *layers = malloc(n * sizeof *layers), *crc = calloc(n, sizeof *crc);
    for (uint32_t l = 0; l < n; l++)
        layers[l] = l;
    paro_plan shape = *p, *big = NULL;
    shape.n_layers = n;
    shape.layers = layers;
    shape.layer_crc32 = crc;
    shape.model_layers = n;
    shape.with_tile_mass = 1;
    ck_assert_int_eq(paro_plan_alloc(&big, &shape, NULL), PARO_OK);
    uint8_t *buf = NULL;
    size_t len;
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_plan_serialize(big, &buf, &len, &ei), PARO_ERR_LIMIT);
    ck_assert_ptr_nonnull(strstr(ei.msg, "65543 sections exceed the limit of 65536"));
    ck_assert_ptr_null(buf);
    paro_plan_free(big);
    paro_plan_free(p);
    free(layers);
    free(crc);
}
END_TEST

START_TEST(test_tile_mass_every_byte_flip)
{
    paro_plan *p = make_plan_ex(23, 1, 2, 1);
    size_t len;
    uint8_t *b = serialize(p, &len);
    paro_plan_free(p);
    for (size_t i = 0; i < len; i++) {
        b[i] ^= 0x04;
        paro_plan *q = NULL;
        paro_errinfo ei;
        paro_errinfo_clear(&ei);
        paro_err e = paro_plan_parse(b, len, "t.paro", &q, &ei);
        ck_assert_msg(e == PARO_ERR_FORMAT || e == PARO_ERR_LIMIT, "flip at byte %zu: got %d",
                      i, e);
        ck_assert_ptr_null(q);
        ck_assert_uint_ne(ei.offset, PARO_NO_OFFSET);
        b[i] ^= 0x04;
    }
    free(b);
}
END_TEST

/* The file of a random plan with tile masses, split. */
static void tile_mass_file(tfile *t, uint8_t **buf, size_t *len)
{
    paro_plan *p = make_plan_ex(25, 0, 2, 1);
    *buf = serialize(p, len);
    paro_plan_free(p);
    tf_split(*buf, *len, t);
}

START_TEST(test_tile_mass_cases)
{
    tfile t;
    uint8_t *buf, *b;
    size_t len, n;
    const size_t first = 13; /* the TILEMASS of layer 1; layer 4 follows */
#define CASE(edit, code, want)                                                                 \
    do {                                                                                       \
        tile_mass_file(&t, &buf, &len);                                                        \
        edit;                                                                                  \
        b = tf_build(&t, &n);                                                                  \
        expect_fail(b, n, code, want, ANY_OFFSET);                                             \
        free(b);                                                                               \
        tf_free(&t);                                                                           \
        free(buf);                                                                             \
    } while (0)
    CASE(tf_remove(&t, first + 1), PARO_ERR_FORMAT,
         "has TILEMASS sections, but none for layer 4");
    CASE(tf_remove(&t, first), PARO_ERR_FORMAT, "has TILEMASS sections, but none for layer 1");
    CASE(t.sec[first].flags = 1, PARO_ERR_FORMAT, "(TILEMASS) must not have the required flag");
    CASE(t.sec[first + 1].index = 3, PARO_ERR_FORMAT, "layer 3, which is not in the plan");
    CASE(t.sec[first + 1].index = 5, PARO_ERR_FORMAT, "none for layer 4");
    CASE(t.sec[first].raw -= 1, PARO_ERR_FORMAT, "1 byte each");
    CASE(t.sec[first].codec = 2, PARO_ERR_FORMAT, "codec 2 is not allowed");
    {
        tsec moved;
        CASE((moved = t.sec[first], t.sec[first] = t.sec[first - 1], t.sec[first - 1] = moved),
             PARO_ERR_FORMAT, "out of order");
    }
    /* a head whose largest level is not 255 */
    tile_mass_file(&t, &buf, &len);
    uint8_t *raw = tf_raw(&t.sec[first]);
    for (int i = 0; i < 9; i++)
        if (raw[i] == 255)
            raw[i] = 254;
    tf_set_raw(&t.sec[first], raw, (size_t)t.sec[first].raw);
    b = tf_build(&t, &n);
    expect_fail(b, n, PARO_ERR_FORMAT, "layer 1 bucket 0 head 0 peak at level 254", ANY_OFFSET);
    free(b);
    /* stored without zlib, the offset is that of the byte itself */
    t.sec[first].codec = 0;
    tf_set_raw(&t.sec[first], raw, (size_t)t.sec[first].raw);
    b = tf_build(&t, &n);
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_plan *q = NULL;
    ck_assert_int_eq(paro_plan_parse(b, n, "t.paro", &q, &ei), PARO_ERR_FORMAT);
    size_t at = 0;
    while (raw[at] != 254)
        at++;
    ck_assert_uint_eq(ei.offset, paro_rd64(b + 64 + 48 * first + 8) + at);
    free(b);
    /* and a valid stored one is read */
    for (int i = 0; i < 9; i++)
        if (raw[i] == 254)
            raw[i] = 255;
    tf_set_raw(&t.sec[first], raw, (size_t)t.sec[first].raw);
    rebuild_ok(&t);
    free(raw);
    tf_free(&t);
    free(buf);
#undef CASE
}
END_TEST

/* ---- dump --json-full ---- */

START_TEST(test_json_full)
{
    paro_plan *p = make_plan(5, 1);
    char *full = paro_plan_to_json_full(p), *plain = paro_plan_to_json(p);
    ck_assert_ptr_nonnull(full);
    ck_assert_ptr_null(strstr(plain, "\"masks\""));
    cJSON *root = cJSON_Parse(full);
    ck_assert_ptr_nonnull(root);
    const cJSON *heads = cJSON_GetObjectItemCaseSensitive(root, "heads");
    uint32_t i = 0;
    for (cJSON *h = heads->child; h; h = h->next, i++) {
        const uint32_t l = i / p->heads, hd = i % p->heads;
        cJSON *m = cJSON_DetachItemFromObjectCaseSensitive(h, "masks");
        ck_assert_int_eq(cJSON_GetArraySize(m), (int)p->n_buckets);
        for (uint32_t b = 0; b < p->n_buckets; b++) {
            const cJSON *rows = cJSON_GetArrayItem(m, (int)b);
            ck_assert_int_eq(cJSON_GetArraySize(rows), (int)p->nq);
            for (uint32_t q = 0; q < p->nq; q++) {
                const cJSON *row = cJSON_GetArrayItem(rows, (int)q);
                ck_assert_int_eq(cJSON_GetArraySize(row), (int)p->nk);
                for (uint32_t k = 0; k < p->nk; k++) {
                    const cJSON *v = cJSON_GetArrayItem(row, (int)k);
                    ck_assert(cJSON_IsNumber(v));
                    ck_assert_int_eq(v->valueint, paro_plan_mask_get(p, l, b, hd, q, k));
                }
            }
        }
        cJSON_Delete(m);
    }
    ck_assert_uint_eq(i, p->n_layers * p->heads);
    /* without the masks, the same document as --json */
    cJSON *other = cJSON_Parse(plain);
    ck_assert(cJSON_Compare(root, other, 1));
    cJSON_Delete(other);
    cJSON_Delete(root);
    free(full);
    free(plain);
    paro_plan_free(p);
}
END_TEST

/* ---- merge ---- */

/* The plan made of layer slots slots[0..n) of p, in that order (the test's
 * own splitter, the inverse of a merge). */
static paro_plan *subset(const paro_plan *p, const uint32_t *slots, uint32_t n)
{
    uint32_t layers[16], crc[16];
    for (uint32_t i = 0; i < n; i++) {
        layers[i] = p->layers[slots[i]];
        crc[i] = p->layer_crc32[slots[i]];
    }
    paro_plan shape = *p, *q = NULL;
    shape.n_layers = n;
    shape.layers = layers;
    shape.layer_crc32 = crc;
    ck_assert_int_eq(paro_plan_alloc(&q, &shape, NULL), PARO_OK);
    const size_t H = p->heads, S = H * p->n_orders * PARO_N_SCORES, B = H * p->n_buckets;
    for (uint32_t i = 0; i < n; i++) {
        const size_t s = slots[i];
        memcpy(q->head_order + i * H, p->head_order + s * H, H);
        memcpy(q->scores + i * S, p->scores + s * S, S * sizeof(double));
        memcpy(q->density + i * B, p->density + s * B, B * sizeof(double));
        memcpy(q->recall + i * B, p->recall + s * B, B * sizeof(double));
        memcpy(q->masks[i], p->masks[s], paro_plan_mask_bytes(p));
        if (p->with_tile_mass)
            memcpy(q->tile_mass[i], p->tile_mass[s], paro_plan_tile_mass_bytes(p));
    }
    return q;
}

static paro_err merge_fail(const paro_plan *a, const paro_plan *b, const char *want)
{
    const paro_plan *parts[2] = {a, b};
    const char *names[2] = {"a.paro", "b.paro"};
    paro_plan *out = NULL;
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_err e = paro_plan_merge_named(parts, names, 2, &out, &ei);
    ck_assert_ptr_null(out);
    ck_assert_msg(strstr(ei.msg, want) != NULL, "'%s' lacks '%s'", ei.msg, want);
    return e;
}

START_TEST(test_merge)
{
    for (int tm = 0; tm < 2; tm++) {
        paro_plan *whole = make_plan_ex(31 + (uint64_t)tm, tm, 4, tm);
        size_t len, mlen;
        uint8_t *want = serialize(whole, &len);
        /* three shards in a scrambled order */
        static const uint32_t s0[1] = {2}, s1[2] = {0, 3}, s2[1] = {1};
        paro_plan *a = subset(whole, s0, 1), *b = subset(whole, s1, 2), *c = subset(whole, s2, 1);
        const paro_plan *parts[3] = {a, b, c};
        paro_plan *m = NULL;
        paro_errinfo ei;
        paro_errinfo_clear(&ei);
        ck_assert_int_eq(paro_plan_merge(parts, 3, &m, &ei), PARO_OK);
        uint8_t *got = serialize(m, &mlen);
        ck_assert_uint_eq(mlen, len);
        ck_assert_mem_eq(got, want, len);
        paro_plan_free(m);
        free(got);
        /* one plan merges into itself */
        const paro_plan *alone[1] = {whole};
        ck_assert_int_eq(paro_plan_merge(alone, 1, &m, &ei), PARO_OK);
        got = serialize(m, &mlen);
        ck_assert_mem_eq(got, want, len);
        free(got);
        paro_plan_free(m);
        /* a layer twice */
        ck_assert_int_eq(merge_fail(b, b, "layer 1 is in both a.paro and b.paro"),
                         PARO_ERR_USAGE);
        paro_plan_free(a);
        paro_plan_free(b);
        paro_plan_free(c);
        paro_plan_free(whole);
        free(want);
    }
    /* settings that differ: the first differing key, both values, both names */
    paro_plan *p = make_plan_ex(35, 0, 2, 0);
    static const uint32_t first[1] = {0}, second[1] = {1};
    paro_plan *a = subset(p, first, 1), *b = subset(p, second, 1);
    b->block_q = 2; /* and then blocks differ too: "block" comes first */
    b->nq = 14;
    ck_assert_int_eq(merge_fail(a, b, "cannot merge: \"block\" differs: [9,10] in a.paro, [2,10] "
                                      "in b.paro"),
                     PARO_ERR_USAGE);
    b->block_q = 9;
    b->nq = 3;
    b->seed = 7;
    merge_fail(a, b, "\"seed\" differs: 9007199254740991 in a.paro, 7 in b.paro");
    b->seed = a->seed;
    b->samples[2].timestep = 2.0;
    merge_fail(a, b, "\"samples\" differs: ...");
    b->samples[2].timestep = a->samples[2].timestep;
    b->with_tile_mass = 1; /* only the flag matters to the comparison */
    merge_fail(a, b, "b.paro has tile masses (TILEMASS sections), a.paro has none");
    b->with_tile_mass = 0;
    /* without names */
    const paro_plan *parts[2] = {b, b};
    paro_plan *m = NULL;
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_plan_merge(parts, 2, &m, &ei), PARO_ERR_USAGE);
    ck_assert_str_eq(ei.msg, "cannot merge: layer 4 is in both plan 1 and plan 2");
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_plan_merge(parts, 0, &m, &ei), PARO_ERR_USAGE);
    ck_assert_ptr_null(m);
    paro_plan_free(a);
    paro_plan_free(b);
    paro_plan_free(p);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("plan");
    TCase *tc = tcase_create("roundtrip");
    tcase_add_test(tc, test_roundtrip);
    tcase_add_test(tc, test_file_roundtrip);
    tcase_add_test(tc, test_layout);
    tcase_add_test(tc, test_mask_bits);
    tcase_add_test(tc, test_fmt_double);
    tcase_add_test(tc, test_to_json);
    tcase_add_test(tc, test_alloc);
    tcase_add_test(tc, test_worked_example);
    tcase_add_test(tc, test_tile_mass_levels);
    tcase_add_test(tc, test_tile_mass_file);
    tcase_add_test(tc, test_tile_mass_section_limit);
    tcase_add_test(tc, test_json_full);
    tcase_add_test(tc, test_merge);
    suite_add_tcase(s, tc);
    tc = tcase_create("reader");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_every_byte_flip);
    tcase_add_test(tc, test_truncation_and_trailing);
    tcase_add_test(tc, test_header_cases);
    tcase_add_test(tc, test_coverage_cases);
    tcase_add_test(tc, test_section_cases);
    tcase_add_test(tc, test_forward_compat);
    tcase_add_test(tc, test_keep_last);
    tcase_add_test(tc, test_json_cases);
    tcase_add_test(tc, test_json_whitespace_ok);
    tcase_add_test(tc, test_json_schema_cases);
    tcase_add_test(tc, test_json_offsets);
    tcase_add_test(tc, test_tile_mass_every_byte_flip);
    tcase_add_test(tc, test_tile_mass_cases);
    suite_add_tcase(s, tc);
    tc = tcase_create("writer");
    tcase_add_test(tc, test_writer_refuses);
    tcase_add_test(tc, test_writer_refuses_non_files);
    tcase_add_test(tc, test_journal_discard_empty);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(suite());
}
