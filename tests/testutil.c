/* paro tests — shared helpers. */
#define _GNU_SOURCE 1
#include "testutil.h"

#include <ftw.h>      /* nftw */
#include <math.h>     /* frexp, ldexp */
#include <stdio.h>    /* fopen, fwrite, fread */
#include <stdlib.h>   /* malloc, getenv, mkdtemp */
#include <string.h>   /* strlen, memcpy, memset */
#include <sys/stat.h> /* stat */
#include <unistd.h>   /* remove */

#include "safetensors.h" /* paro_st_write */
#include "synth.h"       /* paro_synth_layer */

char *tu_mkdtemp(void)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    char *tmpl = malloc(strlen(base) + 32);
    ck_assert_ptr_nonnull(tmpl);
    sprintf(tmpl, "%s/paro-test-XXXXXX", base);
    ck_assert_msg(mkdtemp(tmpl) != NULL, "mkdtemp %s failed", tmpl);
    return tmpl;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void tu_rmtree(const char *dir)
{
    if (dir)
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

char *tu_path(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    ck_assert_ptr_nonnull(p);
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

void tu_write_file(const char *path, const void *buf, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot create %s", path);
    ck_assert_uint_eq(fwrite(buf, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

unsigned char *tu_read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(size > 0 ? (size_t)size : 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    *n = (size_t)size;
    return buf;
}

int tu_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

uint64_t tu_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double tu_uniform(uint64_t *state)
{
    return (double)(tu_rand(state) >> 11) * 0x1.0p-53;
}

double tu_normal(uint64_t *state)
{
    double s = 0.0;
    for (int i = 0; i < 12; i++)
        s += tu_uniform(state);
    return s - 6.0;
}

void tu_exact_zero(tu_exact *x)
{
    memset(x, 0, sizeof *x);
}

void tu_exact_add(tu_exact *x, double v)
{
    int e;
    double f = frexp(v, &e); /* v = f 2^e, 0.5 <= f < 1 */
    uint64_t m = (uint64_t)ldexp(f, 53);
    int pos = e - 53 + 1074; /* v = m 2^(pos - 1074) */
    if (pos < 0) {           /* a subnormal: its low bits are zero */
        m >>= -pos;
        pos = 0;
    }
    /* digit pos / 32 gets the low 32 - sh bits of m, the next ones 32 each */
    const int sh = pos % 32;
    uint64_t part = (m << sh) & 0xffffffffu, carry = 0;
    m >>= 32 - sh;
    for (int i = pos / 32; i < TU_EXACT_DIGITS && (part || m || carry); i++) {
        uint64_t t = (uint64_t)x->d[i] + part + carry;
        x->d[i] = (uint32_t)t;
        carry = t >> 32;
        part = m & 0xffffffffu;
        m >>= 32;
    }
}

void tu_exact_sub(tu_exact *x, const tu_exact *y)
{
    int64_t borrow = 0;
    for (int i = 0; i < TU_EXACT_DIGITS; i++) {
        int64_t t = (int64_t)x->d[i] - (int64_t)y->d[i] - borrow;
        borrow = t < 0;
        x->d[i] = (uint32_t)(t + (borrow << 32));
    }
}

int tu_exact_cmp(const tu_exact *a, const tu_exact *b)
{
    for (int i = TU_EXACT_DIGITS; i-- > 0;)
        if (a->d[i] != b->d[i])
            return a->d[i] > b->d[i] ? 1 : -1;
    return 0;
}

static int exact_bit(const tu_exact *x, int p)
{
    return (x->d[p / 32] >> (p % 32)) & 1;
}

double tu_exact_round(const tu_exact *x)
{
    int p = TU_EXACT_DIGITS * 32 - 1;
    while (p >= 0 && !exact_bit(x, p))
        p--;
    if (p < 0)
        return 0.0;
    if (p < 53) /* fewer bits than a double holds, all at or above 2^-1074 */
        return ldexp((double)(((uint64_t)x->d[1] << 32) | x->d[0]), -1074);
    uint64_t m = 0;
    for (int b = p; b > p - 53; b--)
        m = 2 * m + (uint64_t)exact_bit(x, b);
    int half = exact_bit(x, p - 53), sticky = 0;
    for (int b = p - 54; b >= 0 && !sticky; b--)
        sticky = exact_bit(x, b);
    if (half && (sticky || (m & 1)))
        m++; /* 2^53 is still exact */
    return ldexp((double)m, p - 52 - 1074);
}

static double double_of_bits(uint64_t b)
{
    double v;
    memcpy(&v, &b, sizeof v);
    return v;
}

void tu_masses(int kind, double *v, size_t n, uint64_t *rng)
{
    const uint64_t frac = (UINT64_C(1) << 52) - 1;
    const double same = 0.5 + tu_uniform(rng);
    static const double few[4] = {0.0, 0.25, 0.5, 3.0};
    for (size_t i = 0; i < n; i++) {
        const uint64_t r = tu_rand(rng);
        const double u = tu_uniform(rng);
        switch (kind) {
        case TU_MASS_SKEWED:
            v[i] = 64.0 * u * u * u * u;
            break;
        case TU_MASS_FLOAT:
            v[i] = (double)(float)(64.0 * exp(-20.0 * u));
            break;
        case TU_MASS_WIDE:
            v[i] = r % 17 == 0 ? 0.0 : double_of_bits((r % 2047) << 52 | (tu_rand(rng) & frac));
            break;
        case TU_MASS_NARROW:
            v[i] = 1.0 + u;
            break;
        case TU_MASS_TIES:
            v[i] = few[r % 4];
            break;
        case TU_MASS_ZEROS:
            v[i] = r % 10 ? 0.0 : u;
            break;
        case TU_MASS_EQUAL:
            v[i] = same;
            break;
        case TU_MASS_SUBNORMAL:
            v[i] = r % 5 == 0 ? 0.0 : double_of_bits(r & frac >> (r % 40));
            break;
        default: /* TU_MASS_HUGE */
            v[i] = double_of_bits((UINT64_C(2030) + r % 17) << 52 | (tu_rand(rng) & frac));
            break;
        }
    }
}

int tu_run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}

paro_err tu_mem_sink(void *user, const void *buf, size_t n, paro_errinfo *ei)
{
    (void)ei;
    tu_membuf *m = user;
    if (m->len + n > m->cap) {
        m->cap = 2 * (m->len + n);
        m->p = realloc(m->p, m->cap);
        ck_assert_ptr_nonnull(m->p);
    }
    memcpy(m->p + m->len, buf, n);
    m->len += n;
    return PARO_OK;
}

/* ---- tiny captures ---- */

char *tu_write_capture(const char *dir, const tu_capture *cs)
{
    paro_synth_config c = {.grid = {cs->grid[0], cs->grid[1], cs->grid[2]},
                           .text_tokens = cs->text,
                           .text_last = cs->text_last,
                           .layers = cs->layers,
                           .heads = cs->heads,
                           .head_dim = cs->d,
                           .samples = cs->samples,
                           .seed = cs->seed};
    const size_t n = cs->text + (size_t)cs->grid[0] * cs->grid[1] * cs->grid[2];
    const size_t per = (size_t)cs->heads * n * cs->d;
    float *buf = malloc(3 * cs->layers * per * sizeof *buf);
    char names[3 * 8][32];
    paro_st_write_tensor t[3 * 8];
    char json[4096];
    int used = snprintf(json, sizeof json,
                        "{\"format\": \"paro-capture\", \"version\": 1, \"model\": \"tiny\", "
                        "\"grid\": [%u, %u, %u], \"text_tokens\": %u, \"text_position\": \"%s\", "
                        "\"layers\": %u, \"heads\": %u, \"head_dim\": %u, \"samples\": [",
                        cs->grid[0], cs->grid[1], cs->grid[2], cs->text,
                        cs->text_last ? "last" : "first", cs->layers, cs->heads, cs->d);
    ck_assert_uint_le(cs->layers, 8);
    for (uint32_t s = 0; s < cs->samples; s++) {
        size_t nt = 0;
        for (uint32_t l = 0; l < cs->layers; l++) {
            float *q = buf + (3 * l) * per, *k = q + per, *v = k + per;
            paro_synth_layer(&c, s, l, q, k, v, 1);
            if (cs->spike)
                for (uint32_t h = 0; h < cs->heads; h++) {
                    float *qh = q + (size_t)h * n * cs->d, *kh = k + (size_t)h * n * cs->d;
                    for (size_t i = 0; i < n; i++)
                        qh[i * cs->d] = 4.0f;
                    memset(kh, 0, cs->d * sizeof *kh);
                    kh[0] = 4000.0f;
                }
            for (int kind = 0; kind < (cs->with_v ? 3 : 2); kind++) {
                snprintf(names[nt], sizeof names[nt], "layers.%u.%c", l, "qkv"[kind]);
                t[nt] = (paro_st_write_tensor){names[nt], PARO_DTYPE_F32, 3,
                                               {cs->heads, n, cs->d}, q + kind * per};
                nt++;
            }
        }
        char file[32];
        snprintf(file, sizeof file, "s%u.safetensors", s);
        char *path = tu_path(dir, file);
        paro_errinfo ei;
        paro_errinfo_clear(&ei);
        ck_assert_int_eq(paro_st_write(path, t, nt, &ei), PARO_OK);
        free(path);
        used += snprintf(json + used, sizeof json - used,
                         "%s{\"file\": \"%s\", \"prompt\": %u, \"timestep\": %.17g}",
                         s ? ", " : "", file, s, 1000.0 - (s + 0.5) * 1000.0 / cs->samples);
    }
    used += snprintf(json + used, sizeof json - used, "]}");
    char *manifest = tu_path(dir, "manifest.json");
    tu_write_file(manifest, json, (size_t)used);
    free(buf);
    return manifest;
}

paro_manifest *tu_load_manifest(const char *path)
{
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_manifest *m = NULL;
    ck_assert_msg(paro_manifest_load(path, &m, &ei) == PARO_OK, "%s", ei.msg);
    return m;
}

void tu_captured_open(tu_captured *c, const tu_capture *cs)
{
    c->dir = tu_mkdtemp();
    c->manifest_path = tu_write_capture(c->dir, cs);
    c->m = tu_load_manifest(c->manifest_path);
}

void tu_captured_close(tu_captured *c)
{
    paro_manifest_free(c->m);
    free(c->manifest_path);
    tu_rmtree(c->dir);
    free(c->dir);
    memset(c, 0, sizeof *c);
}

paro_plan *tu_calibrate(const paro_manifest *m, const paro_calib_config *cfg)
{
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_plan *p = NULL;
    ck_assert_msg(paro_calibrate(m, cfg, &p, &ei) == PARO_OK, "%s", ei.msg);
    return p;
}
