/* paro tests — capture inputs: dtype conversion, strict JSON, safetensors,
 * the manifest, and reading samples. */
#include <check.h>    /* START_TEST, ck_assert_*, Suite, TCase */
#include <math.h>     /* isnan, isinf, ldexpf, nextafterf, sqrt, fabs, INFINITY, NAN, HUGE_VAL */
#include <stdio.h>    /* snprintf */
#include <stdlib.h>   /* malloc, free */
#include <string.h>   /* memcmp, memcpy, memset, strlen, strstr, strchr, strdup */
#include <sys/stat.h> /* mkdir */

#include <zlib.h> /* crc32 */

#include "dtype.h"       /* paro_f16_to_f32, paro_f32_to_f16, paro_convert_* */
#include "json_util.h"   /* paro_json_utf8_valid, paro_json_parse */
#include "manifest.h"    /* paro_manifest_load, paro_sample_open, paro_sample_read */
#include "safetensors.h" /* paro_st_open, paro_st_write */
#include "testutil.h"    /* tu_mkdtemp, tu_path, tu_write_file, tu_run_suite */

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* ------------------------------------------------------------------ dtype */

START_TEST(f16_every_pattern_round_trips)
{
    for (uint32_t h = 0; h <= 0xffff; h++) {
        float f = paro_f16_to_f32((uint16_t)h);
        uint16_t back = paro_f32_to_f16(f);
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) {
            /* NaN: stays a NaN of the same sign; the payload may change. */
            ck_assert_msg(isnan(f), "0x%04x should be NaN", h);
            ck_assert_uint_eq(back & 0x7c00, 0x7c00);
            ck_assert_uint_ne(back & 0x3ff, 0);
            ck_assert_uint_eq(back & 0x8000, h & 0x8000);
        } else {
            ck_assert_msg(back == h, "0x%04x -> %a -> 0x%04x", h, (double)f, back);
        }
    }
}
END_TEST

START_TEST(f16_known_values)
{
    ck_assert(paro_f16_to_f32(0x3c00) == 1.0f);
    ck_assert(paro_f16_to_f32(0xc000) == -2.0f);
    ck_assert(paro_f16_to_f32(0x7bff) == 65504.0f);
    ck_assert(paro_f16_to_f32(0x0001) == ldexpf(1.0f, -24));
    ck_assert(paro_f16_to_f32(0x0400) == ldexpf(1.0f, -14));
    ck_assert(isinf(paro_f16_to_f32(0x7c00)) && paro_f16_to_f32(0x7c00) > 0);
    ck_assert(isinf(paro_f16_to_f32(0xfc00)) && paro_f16_to_f32(0xfc00) < 0);
    ck_assert_uint_eq(f32_bits(paro_f16_to_f32(0x8000)), 0x80000000u);
}
END_TEST

START_TEST(f32_to_f16_boundaries)
{
    /* overflow: 65504 is the largest finite; 65520 is the midpoint to the
     * next (unrepresentable) step and ties away into infinity */
    ck_assert_uint_eq(paro_f32_to_f16(65504.0f), 0x7bff);
    ck_assert_uint_eq(paro_f32_to_f16(nextafterf(65520.0f, 0.0f)), 0x7bff);
    ck_assert_uint_eq(paro_f32_to_f16(65520.0f), 0x7c00);
    ck_assert_uint_eq(paro_f32_to_f16(-65520.0f), 0xfc00);
    ck_assert_uint_eq(paro_f32_to_f16(1e10f), 0x7c00);
    ck_assert_uint_eq(paro_f32_to_f16(INFINITY), 0x7c00);
    ck_assert_uint_eq(paro_f32_to_f16(-INFINITY), 0xfc00);
    uint16_t nan = paro_f32_to_f16(NAN);
    ck_assert_uint_eq(nan & 0x7c00, 0x7c00);
    ck_assert_uint_ne(nan & 0x3ff, 0);
    /* subnormals: 2^-24 is the smallest; 2^-25 ties to even (zero) */
    ck_assert_uint_eq(paro_f32_to_f16(ldexpf(1.0f, -24)), 0x0001);
    ck_assert_uint_eq(paro_f32_to_f16(ldexpf(1.0f, -25)), 0x0000);
    ck_assert_uint_eq(paro_f32_to_f16(-ldexpf(1.0f, -25)), 0x8000);
    ck_assert_uint_eq(paro_f32_to_f16(nextafterf(ldexpf(1.0f, -25), 1.0f)), 0x0001);
    ck_assert_uint_eq(paro_f32_to_f16(ldexpf(3.0f, -25)), 0x0002); /* 1.5 ulp: to even */
    ck_assert_uint_eq(paro_f32_to_f16(ldexpf(5.0f, -25)), 0x0002); /* 2.5 ulp: to even */
    ck_assert_uint_eq(paro_f32_to_f16(ldexpf(1023.0f, -24)), 0x03ff);
    ck_assert_uint_eq(paro_f32_to_f16(ldexpf(2047.0f, -25)), 0x0400); /* tie into normal */
    ck_assert_uint_eq(paro_f32_to_f16(ldexpf(1.0f, -14)), 0x0400);
    ck_assert_uint_eq(paro_f32_to_f16(1e-10f), 0x0000);
    ck_assert_uint_eq(paro_f32_to_f16(-0.0f), 0x8000);
    /* normal ties: 1 + 2^-11 is halfway between 1 and 1 + 2^-10 */
    ck_assert_uint_eq(paro_f32_to_f16(1.0f + ldexpf(1.0f, -11)), 0x3c00);
    ck_assert_uint_eq(paro_f32_to_f16(1.0f + ldexpf(3.0f, -11)), 0x3c02);
}
END_TEST

START_TEST(bf16_rounds_ties_to_even)
{
    static const struct {
        uint32_t in;
        uint16_t out;
    } cases[] = {
        {0x3f800000u, 0x3f80}, /* 1.0 exact */
        {0x3f808000u, 0x3f80}, /* tie, even below */
        {0x3f818000u, 0x3f82}, /* tie, even above */
        {0x3f808001u, 0x3f81}, /* just above the tie */
        {0x3f807fffu, 0x3f80}, /* just below the tie */
        {0xbf808000u, 0xbf80}, /* negative tie */
        {0xbf818000u, 0xbf82},
        {0x7f7fffffu, 0x7f80}, /* max f32 rounds to infinity */
        {0x7f800000u, 0x7f80}, /* +inf */
        {0xff800000u, 0xff80}, /* -inf */
        {0x00000001u, 0x0000}, /* tiny subnormal to zero */
        {0x80000000u, 0x8000}, /* -0 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t got = paro_f32_to_bf16(bits_f32(cases[i].in));
        ck_assert_msg(got == cases[i].out, "0x%08x -> 0x%04x, want 0x%04x", cases[i].in, got,
                      cases[i].out);
    }
    uint16_t nan = paro_f32_to_bf16(bits_f32(0x7f800001u)); /* payload only in low bits */
    ck_assert(isnan(paro_bf16_to_f32(nan)));
    for (uint32_t b = 0; b <= 0xffff; b++)
        if (!isnan(paro_bf16_to_f32((uint16_t)b)))
            ck_assert_uint_eq(paro_f32_to_bf16(paro_bf16_to_f32((uint16_t)b)), b);
}
END_TEST

START_TEST(convert_unaligned_buffers)
{
    float src[37], back[37];
    uint64_t seed = 7;
    for (int i = 0; i < 37; i++)
        src[i] = (float)tu_normal(&seed);
    unsigned char raw[37 * 4 + 1];
    for (paro_dtype t = PARO_DTYPE_F32; t <= PARO_DTYPE_BF16; t++) {
        paro_convert_from_f32(t, src, raw + 1, 37);
        paro_convert_to_f32(t, raw + 1, back, 37);
        for (int i = 0; i < 37; i++) {
            float want = t == PARO_DTYPE_F32   ? src[i]
                         : t == PARO_DTYPE_F16 ? paro_f16_to_f32(paro_f32_to_f16(src[i]))
                                               : paro_bf16_to_f32(paro_f32_to_bf16(src[i]));
            ck_assert_uint_eq(f32_bits(back[i]), f32_bits(want));
        }
    }
    /* little-endian on disk whatever the host */
    float one = 1.0f;
    paro_convert_from_f32(PARO_DTYPE_F32, &one, raw, 1);
    ck_assert(raw[0] == 0 && raw[1] == 0 && raw[2] == 0x80 && raw[3] == 0x3f);
}
END_TEST

/* -------------------------------------------------------------- json_util */

START_TEST(utf8_validation)
{
    static const struct {
        const char *s;
        int ok;
        size_t bad;
    } cases[] = {
        {"plain", 1, 0},
        {"caf\xc3\xa9", 1, 0},
        {"\xe2\x82\xac \xf0\x9f\x98\x80", 1, 0},
        {"\xf4\x8f\xbf\xbf", 1, 0},      /* U+10FFFF */
        {"ab\xff", 0, 2},                /* never valid */
        {"\xc0\xaf", 0, 0},              /* overlong '/' */
        {"\xe0\x80\xaf", 0, 0},          /* overlong */
        {"x\xed\xa0\x80", 0, 1},         /* surrogate U+D800 */
        {"\xf4\x90\x80\x80", 0, 0},      /* above U+10FFFF */
        {"\xc3", 0, 0},                  /* truncated */
        {"ok\xe2\x82", 0, 2},            /* truncated at end */
        {"\x80", 0, 0},                  /* lone continuation */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t bad = 99;
        int ok = paro_json_utf8_valid(cases[i].s, strlen(cases[i].s), &bad);
        ck_assert_msg(ok == cases[i].ok, "case %zu", i);
        if (!ok)
            ck_assert_msg(bad == cases[i].bad, "case %zu: bad at %zu", i, bad);
    }
}
END_TEST

START_TEST(json_strict_parse)
{
    paro_errinfo ei;
    paro_json_ctx cx = {"x.json", 100, &ei};
    cJSON *root;
    paro_errinfo_clear(&ei);
    const char *padded = " {\"a\": [1, 2]}\n\t ";
    ck_assert_int_eq(paro_json_parse(&cx, padded, strlen(padded), "test", &root), PARO_OK);
    cJSON_Delete(root);

    /* depth 64 passes, 65 fails with a limit */
    char deep[200];
    for (int d = 64; d <= 65; d++) {
        memset(deep, '[', (size_t)d);
        memset(deep + d, ']', (size_t)d);
        paro_errinfo_clear(&ei);
        paro_err rc = paro_json_parse(&cx, deep, (size_t)(2 * d), "test", &root);
        if (d == 64) {
            ck_assert_int_eq(rc, PARO_OK);
            cJSON_Delete(root);
        } else {
            ck_assert_int_eq(rc, PARO_ERR_LIMIT);
        }
    }
    /* trailing data: error points at it */
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_json_parse(&cx, "{}  x", 5, "test", &root), PARO_ERR_FORMAT);
    ck_assert_uint_eq(ei.offset, 104);
    ck_assert_ptr_null(root);
    /* check_keys: case variant and its suggestion */
    static const char *const keys[] = {"grid", "layers"};
    const char *bad;
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_json_parse(&cx, "{\"GRID\": 1}", 11, "test", &root), PARO_OK);
    ck_assert_int_eq(ei.code, PARO_OK);
    ck_assert_int_eq(paro_json_check_keys(&cx, root, "", keys, 2, &bad), PARO_ERR_FORMAT);
    ck_assert_str_eq(bad, "GRID");
    ck_assert_ptr_nonnull(strstr(ei.msg, "did you mean 'grid'"));
    cJSON_Delete(root);
    /* numbers: 2^53 is the largest integer, 1.5 is not an integer */
    paro_errinfo_clear(&ei);
    const char *nums = "{\"a\": 9007199254740992, \"b\": 1.5, \"c\": 1e400}";
    ck_assert_int_eq(paro_json_parse(&cx, nums, strlen(nums), "test", &root), PARO_OK);
    uint64_t u;
    double d;
    ck_assert_int_eq(paro_json_get_uint(&cx, root, "", "a", PARO_JSON_REQUIRED, 0,
                                        PARO_JSON_MAX_INT, &u, NULL),
                     PARO_OK);
    ck_assert(u == PARO_JSON_MAX_INT);
    ck_assert_int_eq(paro_json_get_uint(&cx, root, "obj", "b", PARO_JSON_REQUIRED, 0, 10, &u,
                                        NULL),
                     PARO_ERR_FORMAT);
    ck_assert_str_eq(ei.msg, "obj.b is 1.5; it must be an integer");
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_json_get_number(&cx, root, "", "c", PARO_JSON_REQUIRED, 0, HUGE_VAL,
                                          0, &d, NULL),
                     PARO_ERR_FORMAT);
    paro_errinfo_clear(&ei);
    int found = 5;
    d = 42;
    ck_assert_int_eq(paro_json_get_number(&cx, root, "", "zz", PARO_JSON_OPTIONAL, 0, 1, 0, &d,
                                          &found),
                     PARO_OK);
    ck_assert_int_eq(found, 0);
    ck_assert(d == 42);
    cJSON_Delete(root);
}
END_TEST

/* ------------------------------------------------------------ safetensors */

START_TEST(st_round_trip)
{
    char *dir = tu_mkdtemp();
    char *path = tu_path(dir, "t.safetensors");
    float a[6] = {1, -2, 3.5f, 0, 1e-3f, -7};
    unsigned char b[8], c[16];
    float bf[4] = {0.5f, -1, 3, 65504}, cf[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    paro_convert_from_f32(PARO_DTYPE_F16, bf, b, 4);
    paro_convert_from_f32(PARO_DTYPE_BF16, cf, c, 8);
    paro_st_write_tensor in[] = {
        {"a", PARO_DTYPE_F32, 2, {2, 3}, a},
        {"b \"quoted\"\n", PARO_DTYPE_F16, 1, {4}, b},
        {"layers.0.c", PARO_DTYPE_BF16, 3, {2, 2, 2}, c},
        {"empty", PARO_DTYPE_F32, 2, {0, 5}, NULL},
        {"scalar", PARO_DTYPE_F32, 0, {0}, a},
    };
    const size_t n = sizeof in / sizeof in[0];
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_st_write(path, in, n, &ei), PARO_OK);

    paro_st_file *f;
    ck_assert_msg(paro_st_open(path, &f, &ei) == PARO_OK, "%s", ei.msg);
    ck_assert_uint_eq(paro_st_count(f), n);
    ck_assert_str_eq(paro_st_path(f), path);
    for (size_t i = 0; i < n; i++) {
        const paro_st_tensor *t = paro_st_get(f, i);
        ck_assert_str_eq(t->name, in[i].name);
        ck_assert_ptr_eq(paro_st_find(f, in[i].name), t);
        ck_assert_int_eq(t->dtype, in[i].dtype);
        ck_assert_uint_eq(t->ndim, in[i].ndim);
        uint64_t count = 1;
        for (uint32_t d = 0; d < t->ndim; d++) {
            ck_assert_uint_eq(t->shape[d], in[i].shape[d]);
            count *= t->shape[d];
        }
        ck_assert_uint_eq(t->nbytes, count * paro_dtype_size(t->dtype));
        if (t->nbytes)
            ck_assert_int_eq(memcmp(paro_st_data(f, t), in[i].data, t->nbytes), 0);
    }
    ck_assert_str_eq(paro_st_get(f, 2)->dtype_name, "BF16");
    ck_assert_str_eq(paro_st_get(f, 1)->dtype_name, "F16");
    ck_assert_uint_eq(paro_st_get(f, 0)->data_offset % 8, 0); /* header padded */
    ck_assert_ptr_null(paro_st_find(f, "A"));                 /* case-sensitive */
    ck_assert_ptr_null(paro_st_find(f, "layers.0"));
    ck_assert_ptr_null(paro_st_get(f, n));
    paro_st_close(f);

    /* same tensors, same bytes */
    size_t n1, n2;
    unsigned char *bytes1 = tu_read_file(path, &n1);
    ck_assert_int_eq(paro_st_write(path, in, n, &ei), PARO_OK);
    unsigned char *bytes2 = tu_read_file(path, &n2);
    ck_assert_uint_eq(n1, n2);
    ck_assert_int_eq(memcmp(bytes1, bytes2, n1), 0);
    free(bytes1);
    free(bytes2);
    free(path);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(st_writer_exact_bytes)
{
    char *dir = tu_mkdtemp();
    char *path = tu_path(dir, "one.safetensors");
    float one = 1.0f;
    paro_st_write_tensor t = {"a", PARO_DTYPE_F32, 1, {1}, &one};
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_st_write(path, &t, 1, &ei), PARO_OK);
    /* 54 bytes of JSON padded to 56 */
    static const unsigned char want[] =
        "\x38\0\0\0\0\0\0\0"
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}  "
        "\x00\x00\x80\x3f";
    size_t n;
    unsigned char *got = tu_read_file(path, &n);
    ck_assert_uint_eq(n, sizeof want - 1);
    ck_assert_int_eq(memcmp(got, want, n), 0);
    free(got);

    /* no tensors at all is a valid file too */
    ck_assert_int_eq(paro_st_write(path, NULL, 0, &ei), PARO_OK);
    got = tu_read_file(path, &n);
    ck_assert_uint_eq(n, 16);
    ck_assert_int_eq(memcmp(got, "\x08\0\0\0\0\0\0\0{}      ", 16), 0);
    free(got);
    paro_st_file *f;
    ck_assert_int_eq(paro_st_open(path, &f, &ei), PARO_OK);
    ck_assert_uint_eq(paro_st_count(f), 0);
    ck_assert_ptr_null(paro_st_find(f, "a"));
    paro_st_close(f);

    /* the writer refuses what the reader would refuse */
    paro_st_write_tensor dup[2] = {t, t};
    ck_assert_int_eq(paro_st_write(path, dup, 2, &ei), PARO_ERR_USAGE);
    ck_assert_ptr_nonnull(strstr(ei.msg, "'a'"));
    paro_errinfo_clear(&ei);
    paro_st_write_tensor bad = {"x", PARO_DTYPE_INVALID, 1, {1}, &one};
    ck_assert_int_eq(paro_st_write(path, &bad, 1, &ei), PARO_ERR_USAGE);
    free(path);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* Writes 8-byte length + header + data_len bytes (0x11 each). */
static void write_st_raw(const char *path, const char *header, size_t header_len,
                         uint64_t len_field, size_t data_len)
{
    size_t total = 8 + header_len + data_len;
    unsigned char *buf = malloc(total);
    ck_assert_ptr_nonnull(buf);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(len_field >> (8 * i));
    memcpy(buf + 8, header, header_len);
    memset(buf + 8 + header_len, 0x11, data_len);
    tu_write_file(path, buf, total);
    free(buf);
}

START_TEST(st_accepts_edge_cases)
{
    static const struct {
        const char *header;
        size_t data_len;
        size_t count;
    } cases[] = {
        {"   {}   ", 0, 0},
        {"\n{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}} \t", 4, 1},
        {"{\"__metadata__\":{\"format\":\"pt\",\"x\":\"y\"},"
         "\"a\":{\"shape\":[2],\"data_offsets\":[0,4],\"dtype\":\"BF16\"}}",
         4, 1},
        /* offsets need not follow header order; sub-byte dtypes whole bytes */
        {"{\"b\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[4,5]},"
         "\"a\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"z\":{\"dtype\":\"F16\",\"shape\":[0,3],\"data_offsets\":[5,5]}}",
         5, 3},
        /* case-variant tensor names are different tensors */
        {"{\"q\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
         "\"Q\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
         2, 2},
    };
    char *dir = tu_mkdtemp();
    char *path = tu_path(dir, "e.safetensors");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t hl = strlen(cases[i].header);
        write_st_raw(path, cases[i].header, hl, hl, cases[i].data_len);
        paro_errinfo ei;
        paro_errinfo_clear(&ei);
        paro_st_file *f;
        ck_assert_msg(paro_st_open(path, &f, &ei) == PARO_OK, "case %zu: %s", i, ei.msg);
        ck_assert_uint_eq(paro_st_count(f), cases[i].count);
        if (i == 3) {
            const paro_st_tensor *t = paro_st_find(f, "a");
            ck_assert_int_eq(t->dtype, PARO_DTYPE_INVALID);
            ck_assert_str_eq(t->dtype_name, "I32");
            ck_assert_uint_eq(t->data_offset, 8 + hl);
            ck_assert_str_eq(paro_st_get(f, 0)->name, "b"); /* header order */
        }
        if (i == 4)
            ck_assert_ptr_ne(paro_st_find(f, "q"), paro_st_find(f, "Q"));
        paro_st_close(f);
    }
    free(path);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

enum st_special { RAW = 0, SHORT_FILE, LEN_PAST_EOF, LEN_HUGE, LEN_ALL_ONES };

/* One header entry for tensor "a" or "b". */
#define T_A(dt, shape, offs)                                                                  \
    "\"a\":{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":" offs "}"
#define T_B(dt, shape, offs)                                                                  \
    "\"b\":{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":" offs "}"

static const struct st_case {
    const char *label;
    const char *header;
    size_t data_len;
    enum st_special special;
    paro_err expect;
    const char *in_msg; /* must appear in the message */
} st_cases[] = {
    {"short file", "", 0, SHORT_FILE, PARO_ERR_FORMAT, "5 bytes"},
    {"header length past EOF", "{}", 0, LEN_PAST_EOF, PARO_ERR_FORMAT, "only 2 follow"},
    {"huge header length", "{}", 0, LEN_HUGE, PARO_ERR_LIMIT, "at most"},
    {"header length 2^64-1", "{}", 0, LEN_ALL_ONES, PARO_ERR_LIMIT, "18446744073709551615"},
    {"empty header", "", 0, RAW, PARO_ERR_FORMAT, "not valid JSON"},
    {"bad utf-8", "{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     RAW, PARO_ERR_FORMAT, "UTF-8"},
    {"not an object", "[1,2]", 0, RAW, PARO_ERR_FORMAT, "header is an array"},
    {"not json", "{\"a\":", 0, RAW, PARO_ERR_FORMAT, "not valid JSON"},
    {"garbage after json", "{} x", 0, RAW, PARO_ERR_FORMAT, "trailing data"},
    {"byte order mark", "\xef\xbb\xbf{}", 0, RAW, PARO_ERR_FORMAT, "0xef"},
    {"raw control char", "{\"a\x01\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
     4, RAW, PARO_ERR_FORMAT, "0x01"},
    {"escaped nul in name",
     "{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, RAW,
     PARO_ERR_FORMAT, "\\u0000"},
    {"entry not an object", "{\"a\":5}", 0, RAW, PARO_ERR_FORMAT, "tensor 'a' is a number"},
    {"unknown dtype", "{" T_A("F33", "[1]", "[0,4]") "}", 4, RAW, PARO_ERR_FORMAT, "'F33'"},
    {"lowercase dtype", "{" T_A("f32", "[1]", "[0,4]") "}", 4, RAW, PARO_ERR_FORMAT, "'f32'"},
    {"dtype not a string", "{\"a\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, RAW,
     PARO_ERR_FORMAT, "a.dtype"},
    {"negative shape", "{" T_A("F32", "[-1]", "[0,4]") "}", 4, RAW,
     PARO_ERR_FORMAT, "a.shape[0] is -1"},
    {"fractional shape", "{" T_A("F32", "[1.5]", "[0,4]") "}", 4, RAW,
     PARO_ERR_FORMAT, "a.shape[0] is 1.5"},
    {"shape not an array", "{" T_A("F32", "4", "[0,16]") "}", 16, RAW, PARO_ERR_FORMAT, "a.shape"},
    {"too many dims", "{" T_A("F32", "[1,1,1,1,1,1,1,1,1]", "[0,4]") "}", 4, RAW,
     PARO_ERR_LIMIT, "9 dimensions"},
    {"shape product overflows",
     "{" T_A("F32", "[4294967296,4294967296,16]", "[0,4]") "}", 4, RAW,
     PARO_ERR_FORMAT, "element count overflows"},
    {"shape times dtype overflows", "{" T_A("F64", "[4503599627370496,128]", "[0,4]") "}", 4,
     RAW, PARO_ERR_FORMAT, "size overflows"},
    {"non-integer offset", "{" T_A("F32", "[1]", "[0,4.5]") "}", 4, RAW,
     PARO_ERR_FORMAT, "a.data_offsets[1] is 4.5"},
    {"offset above 2^53", "{" T_A("U8", "[1]", "[0,18014398509481984]") "}", 4, RAW,
     PARO_ERR_FORMAT, "2^53"},
    {"three offsets", "{" T_A("F32", "[1]", "[0,4,4]") "}", 4, RAW, PARO_ERR_FORMAT, "3 elements"},
    {"begin after end", "{" T_A("F32", "[1]", "[8,4]") "}", 8, RAW, PARO_ERR_FORMAT, "[8, 4]"},
    {"missing data_offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, RAW,
     PARO_ERR_FORMAT, "'a.data_offsets'"},
    {"missing dtype", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, RAW,
     PARO_ERR_FORMAT, "'a.dtype'"},
    {"extra field",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"stride\":[1]}}", 4, RAW,
     PARO_ERR_FORMAT, "'a.stride'"},
    {"case-variant field", "{\"a\":{\"DTYPE\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     RAW, PARO_ERR_FORMAT, "'a.DTYPE'"},
    {"duplicate field",
     "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, RAW,
     PARO_ERR_FORMAT, "duplicate key 'a.dtype'"},
    {"duplicate tensor name", "{" T_A("F32", "[1]", "[0,4]") "," T_A("F32", "[1]", "[4,8]") "}",
     8, RAW, PARO_ERR_FORMAT, "duplicate key 'a'"},
    {"shape x dtype != bytes", "{" T_A("F32", "[2]", "[0,4]") "}", 4, RAW,
     PARO_ERR_FORMAT, "span 4 bytes"},
    {"sub-byte dtype not whole bytes", "{" T_A("F4", "[3]", "[0,1]") "}", 1, RAW,
     PARO_ERR_FORMAT, "4 bits"},
    {"gap between tensors", "{" T_A("F32", "[1]", "[0,4]") "," T_B("F32", "[1]", "[8,12]") "}",
     12, RAW, PARO_ERR_FORMAT, "unused bytes before tensor 'b'"},
    {"gap at start", "{" T_A("F32", "[1]", "[4,8]") "}", 8, RAW,
     PARO_ERR_FORMAT, "unused bytes before tensor 'a'"},
    {"overlap", "{" T_A("F32", "[2]", "[0,8]") "," T_B("F32", "[2]", "[4,12]") "}", 12, RAW,
     PARO_ERR_FORMAT, "tensor 'b'"},
    {"same bytes twice", "{" T_A("F32", "[2]", "[0,8]") "," T_B("F32", "[2]", "[0,8]") "}", 8,
     RAW, PARO_ERR_FORMAT, "overlaps"},
    {"trailing bytes", "{" T_A("F32", "[1]", "[0,4]") "}", 8, RAW,
     PARO_ERR_FORMAT, "4 trailing bytes"},
    {"data truncated", "{" T_A("F32", "[2]", "[0,8]") "}", 4, RAW,
     PARO_ERR_FORMAT, "holds only 4 bytes"},
    {"metadata value not a string", "{\"__metadata__\":{\"k\":1}}", 0, RAW,
     PARO_ERR_FORMAT, "__metadata__.k"},
    {"metadata not an object", "{\"__metadata__\":\"x\"}", 0, RAW,
     PARO_ERR_FORMAT, "__metadata__ is a string"},
    {"metadata twice", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, RAW,
     PARO_ERR_FORMAT, "'__metadata__'"},
    {"deep nesting",
     "{\"__metadata__\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
     "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
     0, RAW, PARO_ERR_LIMIT, "64 levels"},
};

START_TEST(st_rejects_corruption)
{
    const struct st_case *c = &st_cases[_i];
    char *dir = tu_mkdtemp();
    char *path = tu_path(dir, "bad.safetensors");
    size_t hl = strlen(c->header);
    switch (c->special) {
    case SHORT_FILE: tu_write_file(path, "\x08\0\0\0\0", 5); break;
    case LEN_PAST_EOF: write_st_raw(path, c->header, hl, hl + 100, 0); break;
    case LEN_HUGE: write_st_raw(path, c->header, hl, UINT64_C(1) << 40, 0); break;
    case LEN_ALL_ONES: write_st_raw(path, c->header, hl, UINT64_MAX, 0); break;
    case RAW: write_st_raw(path, c->header, hl, hl, c->data_len); break;
    }
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_st_file *f = (paro_st_file *)&ei; /* must be reset to NULL */
    paro_err rc = paro_st_open(path, &f, &ei);
    ck_assert_msg(rc == c->expect, "%s: got %d (%s), want %d", c->label, rc, ei.msg, c->expect);
    ck_assert_ptr_null(f);
    ck_assert_msg(strstr(ei.msg, c->in_msg) != NULL, "%s: '%s' not in '%s'", c->label,
                  c->in_msg, ei.msg);
    ck_assert_msg(!strchr(ei.msg, '\n'), "%s: message has a newline", c->label);
    ck_assert_str_eq(ei.file, path);
    ck_assert_msg(ei.offset != PARO_NO_OFFSET, "%s: no offset", c->label);
    free(path);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(st_messages_are_precise)
{
    char *dir = tu_mkdtemp();
    char *path = tu_path(dir, "m.safetensors");
    const char *h = "{" T_A("F32", "[1]", "[0,4]") "," T_B("F32", "[1]", "[8,12]") "}";
    size_t hl = strlen(h);
    write_st_raw(path, h, hl, hl, 12);
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_st_file *f;
    ck_assert_int_eq(paro_st_open(path, &f, &ei), PARO_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(ei.msg, "'b'"));
    ck_assert_uint_eq(ei.offset, 8 + hl + 4); /* where the hole starts */

    h = "{" T_A("F32", "[3]", "[0,8]") "}";
    hl = strlen(h);
    write_st_raw(path, h, hl, hl, 8);
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_st_open(path, &f, &ei), PARO_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(ei.msg, "[3]"));
    ck_assert_ptr_nonnull(strstr(ei.msg, "12 bytes"));

    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_st_open(dir, &f, &ei), PARO_ERR_IO);
    ck_assert_ptr_nonnull(strstr(ei.msg, "folder"));
    char *missing = tu_path(dir, "nope.safetensors");
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_st_open(missing, &f, &ei), PARO_ERR_IO);
    free(missing);
    free(path);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* --------------------------------------------------------------- manifest */

static const char base_manifest[] =
    "{\"format\": \"paro-capture\", \"version\": 1, \"model\": \"m\", \"grid\": [2, 3, 4], "
    "\"text_tokens\": 5, \"text_position\": \"first\", \"layers\": 2, \"heads\": 2, "
    "\"head_dim\": 8, \"samples\": [{\"file\": \"s0.safetensors\", \"prompt\": 0, "
    "\"timestep\": 999}]}";

/* base_manifest with the first `find` replaced by `repl` (malloc'ed). */
static char *edit_manifest(const char *find, const char *repl)
{
    const char *at = strstr(base_manifest, find);
    ck_assert_msg(at != NULL, "'%s' not in the base manifest", find);
    size_t head = (size_t)(at - base_manifest), fl = strlen(find), rl = strlen(repl);
    size_t tail = strlen(at + fl);
    char *s = malloc(head + rl + tail + 1);
    ck_assert_ptr_nonnull(s);
    memcpy(s, base_manifest, head);
    memcpy(s + head, repl, rl);
    memcpy(s + head + rl, at + fl, tail + 1);
    return s;
}

START_TEST(manifest_minimal_defaults)
{
    char *dir = tu_mkdtemp();
    char *path = tu_path(dir, "manifest.json");
    tu_write_file(path, base_manifest, strlen(base_manifest));
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_manifest *m;
    ck_assert_msg(paro_manifest_load(path, &m, &ei) == PARO_OK, "%s", ei.msg);
    ck_assert_str_eq(m->path, path);
    ck_assert_str_eq(m->dir, dir);
    ck_assert_str_eq(m->model, "m");
    ck_assert_uint_eq(m->grid[0], 2);
    ck_assert_uint_eq(m->grid[1], 3);
    ck_assert_uint_eq(m->grid[2], 4);
    ck_assert_uint_eq(m->text_tokens, 5);
    ck_assert_int_eq(m->text_last, 0);
    ck_assert_uint_eq(m->n_tokens, 29);
    ck_assert_uint_eq(m->layers, 2);
    ck_assert_uint_eq(m->heads, 2);
    ck_assert_uint_eq(m->head_dim, 8);
    ck_assert(m->scale == 1.0 / sqrt(8.0));
    ck_assert_int_eq(m->scale_given, 0);
    ck_assert_int_eq(m->layout, PARO_LAYOUT_HND);
    ck_assert_str_eq(m->tensor_names[PARO_KIND_Q], "layers.{layer}.q");
    ck_assert_str_eq(m->tensor_names[PARO_KIND_V], "layers.{layer}.v");
    ck_assert_int_eq(m->steps, -1);
    ck_assert(m->timestep_max == 1000.0);
    ck_assert_uint_eq(m->n_samples, 1);
    ck_assert_str_eq(m->samples[0].file, "s0.safetensors");
    ck_assert_int_eq(m->samples[0].step, -1);
    ck_assert(m->samples[0].timestep == 999.0);
    ck_assert_uint_eq(m->crc32, crc32(0L, (const Bytef *)base_manifest,
                                      (uInt)strlen(base_manifest)));
    ck_assert(fabs(paro_manifest_progress(m, 0) - 0.001) < 1e-12);
    char *sp = paro_manifest_sample_path(m, 0);
    char *want = tu_path(dir, "s0.safetensors");
    ck_assert_str_eq(sp, want);
    free(sp);
    free(want);
    char *name = paro_manifest_tensor_name(m, PARO_KIND_K, 17);
    ck_assert_str_eq(name, "layers.17.k");
    free(name);
    paro_manifest_free(m);
    free(path);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(manifest_full)
{
    static const char text[] =
        "\n{\"format\": \"paro-capture\", \"version\": 1, \"model\": \"caf\xc3\xa9\",\n"
        " \"grid\": [13, 30, 45], \"text_tokens\": 226, \"text_position\": \"last\",\n"
        " \"layers\": 42, \"heads\": 48, \"head_dim\": 64, \"scale\": 0.125, \"layout\": \"NHD\",\n"
        " \"tensor_names\": {\"q\": \"blocks.{layer}.attn.q\", \"k\": \"{layer}/k\"},\n"
        " \"steps\": 50, \"timestep_max\": 999.0,\n"
        " \"samples\": [{\"file\": \"caps/p0.safetensors\", \"prompt\": 0, \"timestep\": 999, "
        "\"step\": 0},\n"
        "             {\"file\": \"./caps/p1.safetensors\", \"prompt\": 3, \"timestep\": 0.5, "
        "\"step\": 49},\n"
        "             {\"file\": \"p2.safetensors\", \"prompt\": 1, \"timestep\": 499.5}]}\n";
    char *dir = tu_mkdtemp();
    char *path = tu_path(dir, "manifest.json");
    tu_write_file(path, text, strlen(text));
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_manifest *m;
    ck_assert_msg(paro_manifest_load(path, &m, &ei) == PARO_OK, "%s", ei.msg);
    ck_assert_str_eq(m->model, "caf\xc3\xa9");
    ck_assert_uint_eq(m->n_tokens, 226 + 13 * 30 * 45);
    ck_assert_int_eq(m->text_last, 1);
    ck_assert(m->scale == 0.125);
    ck_assert_int_eq(m->scale_given, 1);
    ck_assert_int_eq(m->layout, PARO_LAYOUT_NHD);
    ck_assert_str_eq(m->tensor_names[PARO_KIND_Q], "blocks.{layer}.attn.q");
    ck_assert_str_eq(m->tensor_names[PARO_KIND_V], "layers.{layer}.v");
    ck_assert_int_eq(m->steps, 50);
    ck_assert(m->timestep_max == 999.0);
    ck_assert_uint_eq(m->n_samples, 3);
    ck_assert_int_eq(m->samples[1].prompt, 3);
    ck_assert_int_eq(m->samples[1].step, 49);
    ck_assert_int_eq(m->samples[2].step, -1);
    ck_assert(paro_manifest_progress(m, 0) == 0.0);
    ck_assert(paro_manifest_progress(m, 1) == 49.0 / 50.0);
    ck_assert(paro_manifest_progress(m, 2) == 0.5);
    char *name = paro_manifest_tensor_name(m, PARO_KIND_Q, 3);
    ck_assert_str_eq(name, "blocks.3.attn.q");
    free(name);
    name = paro_manifest_tensor_name(m, PARO_KIND_K, 0);
    ck_assert_str_eq(name, "0/k");
    free(name);

    /* Sample selections: all, in range and increasing, or refused saying why. */
    static const uint32_t fine[] = {0, 2}, past[] = {1, 3}, twice[] = {1, 1}, down[] = {2, 0};
    ck_assert_int_eq(paro_manifest_check_samples(m, NULL, 0, &ei), PARO_OK);
    ck_assert_int_eq(paro_manifest_check_samples(m, fine, 2, &ei), PARO_OK);
    const struct {
        const uint32_t *list;
        size_t n;
        const char *why;
    } bad[] = {{past, 2, "sample 3 is out of range: the capture has samples 0..2"},
               {twice, 2, "samples must be listed once each, in increasing order"},
               {down, 2, "samples must be listed once each, in increasing order"},
               {fine, 0, "no samples selected"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        paro_errinfo_clear(&ei);
        ck_assert_int_eq(paro_manifest_check_samples(m, bad[i].list, bad[i].n, &ei),
                         PARO_ERR_USAGE);
        ck_assert_str_eq(ei.msg, bad[i].why);
    }
    paro_manifest_free(m);
    free(path);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

static const struct manifest_case {
    const char *find, *repl; /* NULL find: repl is the whole file */
    paro_err expect;
    const char *in_msg; /* must appear in the message */
} manifest_cases[] = {
    {"\"model\": \"m\"", "\"model\": \"m\", \"modle\": 1", PARO_ERR_FORMAT, "modle"},
    {"\"grid\"", "\"Grid\"", PARO_ERR_FORMAT, "Grid"},
    {"\"model\": \"m\"", "\"model\": \"m\", \"Grid\": [1, 1, 1]", PARO_ERR_FORMAT, "Grid"},
    {"\"model\": \"m\"", "\"model\": \"m\", \"GRID\": [1, 1, 1]", PARO_ERR_FORMAT, "GRID"},
    {"\"layers\": 2", "\"layers\": 2, \"layers\": 2", PARO_ERR_FORMAT, "layers"},
    {"\"heads\": 2", "\"heads\": \"2\"", PARO_ERR_FORMAT, "heads"},
    {"\"heads\": 2", "\"heads\": 2.5", PARO_ERR_FORMAT, "heads"},
    {"\"heads\": 2", "\"heads\": 0", PARO_ERR_FORMAT, "heads"},
    {"\"head_dim\": 8", "\"head_dim\": true", PARO_ERR_FORMAT, "head_dim"},
    {"[2, 3, 4]", "[2, 0, 4]", PARO_ERR_FORMAT, "grid[1]"},
    {"[2, 3, 4]", "[2, 3]", PARO_ERR_FORMAT, "grid"},
    {"[2, 3, 4]", "\"2x3x4\"", PARO_ERR_FORMAT, "grid"},
    {"[2, 3, 4]", "[65536, 65536, 65536]", PARO_ERR_LIMIT, "grid"},
    {"[2, 3, 4]", "[4294967296, 4294967296, 4294967296]", PARO_ERR_LIMIT, "grid"},
    {"[2, 3, 4]", "[4096, 4096, 1]", PARO_ERR_LIMIT, "grid"},
    {"\"text_tokens\": 5", "\"text_tokens\": -1", PARO_ERR_FORMAT, "text_tokens"},
    {"\"text_tokens\": 5", "\"text_tokens\": 9007199254740994", PARO_ERR_FORMAT, "text_tokens"},
    {"\"version\": 1", "\"version\": 2", PARO_ERR_FORMAT, "version"},
    {"\"version\": 1", "\"version\": \"1\"", PARO_ERR_FORMAT, "version"},
    {"\"paro-capture\"", "\"paro-plan\"", PARO_ERR_FORMAT, "format"},
    {"\"format\": \"paro-capture\", ", "", PARO_ERR_FORMAT, "format"},
    {"\"model\": \"m\", ", "", PARO_ERR_FORMAT, "model"},
    {"\"first\"", "\"middle\"", PARO_ERR_FORMAT, "text_position"},
    {"\"first\"", "\"First\"", PARO_ERR_FORMAT, "text_position"},
    {"\"model\": \"m\"", "\"model\": \"m\", \"layout\": \"HDN\"", PARO_ERR_FORMAT, "layout"},
    {"\"layers\": 2", "\"layers\": 5000", PARO_ERR_LIMIT, "layers"},
    {"\"heads\": 2", "\"heads\": 1025", PARO_ERR_LIMIT, "heads"},
    {"\"model\": \"m\"", "\"model\": \"m\", \"scale\": 0", PARO_ERR_FORMAT, "scale"},
    {"\"model\": \"m\"", "\"model\": \"m\", \"scale\": -0.5", PARO_ERR_FORMAT, "scale"},
    {"\"model\": \"m\"", "\"model\": \"m\", \"scale\": 1e999", PARO_ERR_FORMAT, "scale"},
    {"\"model\": \"m\"", "\"model\": \"m\", \"timestep_max\": 0", PARO_ERR_FORMAT,
     "timestep_max"},
    {"\"model\": \"m\"", "\"model\": \"m\", \"steps\": 0", PARO_ERR_FORMAT, "steps"},
    {"\"model\": \"m\"", "\"model\": \"m\", \"tensor_names\": {\"q\": \"layers.q\"}",
     PARO_ERR_FORMAT, "tensor_names.q"},
    {"\"model\": \"m\"", "\"model\": \"m\", \"tensor_names\": {\"k\": \"{layer}.{layer}\"}",
     PARO_ERR_FORMAT, "tensor_names.k"},
    {"\"model\": \"m\"", "\"model\": \"m\", \"tensor_names\": {\"v\": \"{layer}.{kind}\"}",
     PARO_ERR_FORMAT, "tensor_names.v"},
    {"\"model\": \"m\"", "\"model\": \"m\", \"tensor_names\": {\"v\": \"{Layer}\"}",
     PARO_ERR_FORMAT, "tensor_names.v"},
    {"\"model\": \"m\"", "\"model\": \"m\", \"tensor_names\": {\"o\": \"{layer}.o\"}",
     PARO_ERR_FORMAT, "tensor_names.o"},
    {"\"model\": \"m\"", "\"model\": \"m\", \"tensor_names\": [\"{layer}\"]", PARO_ERR_FORMAT,
     "tensor_names"},
    {"\"s0.safetensors\"", "\"/tmp/s0.safetensors\"", PARO_ERR_FORMAT, "samples[0].file"},
    {"\"s0.safetensors\"", "\"../s0.safetensors\"", PARO_ERR_FORMAT, "samples[0].file"},
    {"\"s0.safetensors\"", "\"a/../../s0.safetensors\"", PARO_ERR_FORMAT, "samples[0].file"},
    {"\"s0.safetensors\"", "\"a/..\"", PARO_ERR_FORMAT, "samples[0].file"},
    {"\"s0.safetensors\"", "\"\"", PARO_ERR_FORMAT, "samples[0].file"},
    {"\"s0.safetensors\"", "\"s0\\u0000.safetensors\"", PARO_ERR_FORMAT, "\\u0000"},
    {"\"timestep\": 999", "\"timestep\": 1200", PARO_ERR_FORMAT,
     "samples[0].timestep is 1200; it must be in [0, 1000]"},
    {"\"timestep\": 999", "\"timestep\": -1", PARO_ERR_FORMAT, "samples[0].timestep"},
    {"\"timestep\": 999", "\"timestep\": 999, \"step\": 3", PARO_ERR_FORMAT,
     "samples[0].step"},
    {"\"model\": \"m\"", "\"model\": \"m\", \"steps\": 10", PARO_OK, NULL},
    {"\"timestep\": 999", "\"timestep\": 999, \"seed\": 3", PARO_ERR_FORMAT, "samples[0].seed"},
    {"\"timestep\": 999", "\"timestep\": 999, \"File\": \"x\"", PARO_ERR_FORMAT, "File"},
    {"\"prompt\": 0", "\"prompt\": -1", PARO_ERR_FORMAT, "samples[0].prompt"},
    {"\"prompt\": 0", "\"prompt\": 1e300", PARO_ERR_FORMAT, "samples[0].prompt"},
    {"\"prompt\": 0, ", "", PARO_ERR_FORMAT, "samples[0].prompt"},
    {"[{\"file\": \"s0.safetensors\", \"prompt\": 0, \"timestep\": 999}]", "[]",
     PARO_ERR_FORMAT, "samples"},
    {"[{\"file\": \"s0.safetensors\", \"prompt\": 0, \"timestep\": 999}]", "[1]",
     PARO_ERR_FORMAT, "samples[0]"},
    {", \"samples\": [{\"file\": \"s0.safetensors\", \"prompt\": 0, \"timestep\": 999}]", "",
     PARO_ERR_FORMAT, "samples"},
    {"999}]}", "999}]} x", PARO_ERR_FORMAT, "trailing"},
    {"999}]}", "999}]}}", PARO_ERR_FORMAT, "trailing"},
    {"999}]}", "999}]", PARO_ERR_FORMAT, "JSON"},
    {"\"model\": \"m\"", "\"model\": \"m\xff\"", PARO_ERR_FORMAT, "UTF-8"},
    {"\"model\": \"m\"", "\"model\": \"\xed\xa0\x80\"", PARO_ERR_FORMAT, "UTF-8"},
    {NULL, "[]", PARO_ERR_FORMAT, "manifest"},
    {NULL, "", PARO_ERR_FORMAT, "JSON"},
    {NULL, "\xef\xbb\xbf{}", PARO_ERR_FORMAT, "0xef"},
};

START_TEST(manifest_rejects_invalid)
{
    const struct manifest_case *c = &manifest_cases[_i];
    char *text = c->find ? edit_manifest(c->find, c->repl) : strdup(c->repl);
    char *dir = tu_mkdtemp();
    char *path = tu_path(dir, "manifest.json");
    tu_write_file(path, text, strlen(text));
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_manifest *m = (paro_manifest *)&ei;
    paro_err rc = paro_manifest_load(path, &m, &ei);
    ck_assert_msg(rc == c->expect, "case %d (%s): got %d: %s", _i, text, rc, ei.msg);
    if (c->expect == PARO_OK) {
        paro_manifest_free(m);
    } else {
        ck_assert_ptr_null(m);
        ck_assert_str_eq(ei.file, path);
        ck_assert_msg(strstr(ei.msg, c->in_msg) != NULL, "case %d: '%s' not in '%s'", _i,
                      c->in_msg, ei.msg);
        ck_assert_msg(!strchr(ei.msg, '\n'), "case %d: newline in message", _i);
    }
    free(text);
    free(path);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(manifest_step_range_and_io)
{
    char *dir = tu_mkdtemp();
    char *path = tu_path(dir, "manifest.json");
    char *text = edit_manifest("\"timestep\": 999", "\"timestep\": 999, \"step\": 10");
    char *with_steps = malloc(strlen(text) + 32);
    ck_assert_ptr_nonnull(with_steps);
    snprintf(with_steps, strlen(text) + 32, "{\"steps\": 10, %s", text + 1);
    tu_write_file(path, with_steps, strlen(with_steps));
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_manifest *m;
    ck_assert_int_eq(paro_manifest_load(path, &m, &ei), PARO_ERR_FORMAT);
    ck_assert_str_eq(ei.msg, "samples[0].step is 10; it must be in [0, 9]");
    free(text);
    free(with_steps);

    /* missing file and folder: I/O errors, not format errors */
    char *missing = tu_path(dir, "none.json");
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_manifest_load(missing, &m, &ei), PARO_ERR_IO);
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_manifest_load(dir, &m, &ei), PARO_ERR_IO);
    free(missing);
    free(path);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* ---------------------------------------------------------------- samples */

enum { S_LAYERS = 2, S_HEADS = 3, S_D = 4, S_T = 2, S_F = 2, S_H = 2, S_W = 3 };
#define S_N (S_T + S_F * S_H * S_W) /* 14 */
#define S_COUNT (S_HEADS * S_N * S_D)

/* A capture folder with manifest.json and sample files; data[layer][kind]
 * holds the reference values as [heads][N][D]. */
typedef struct capture {
    char *dir, *manifest;
    float data[S_LAYERS][3][S_COUNT];
} capture;

static void fill_capture(capture *c)
{
    uint64_t seed = 42;
    for (int l = 0; l < S_LAYERS; l++)
        for (int k = 0; k < 3; k++)
            for (int i = 0; i < S_COUNT; i++)
                c->data[l][k][i] = (float)tu_normal(&seed);
}

/* HND [h][n][d] -> NHD [n][h][d] */
static void to_nhd(const float *hnd, float *nhd)
{
    for (int h = 0; h < S_HEADS; h++)
        for (int n = 0; n < S_N; n++)
            memcpy(nhd + ((size_t)n * S_HEADS + h) * S_D, hnd + ((size_t)h * S_N + n) * S_D,
                   S_D * sizeof(float));
}

/* Writes one sample file of dtype t and layout; V only for layer 0. */
static void write_sample(const capture *c, const char *name, paro_dtype t, paro_layout layout,
                         const char *const *templates)
{
    static const char *const default_names[3] = {"layers.%d.q", "layers.%d.k", "layers.%d.v"};
    paro_st_write_tensor w[S_LAYERS * 3];
    char names[S_LAYERS * 3][64];
    unsigned char *bufs[S_LAYERS * 3];
    size_t n = 0;
    for (int l = 0; l < S_LAYERS; l++) {
        for (int k = 0; k < 3; k++) {
            if (k == PARO_KIND_V && l > 0)
                continue;
            if (templates) {
                const char *at = strstr(templates[k], "{layer}");
                snprintf(names[n], sizeof names[n], "%.*s%d%s", (int)(at - templates[k]),
                         templates[k], l, at + 7);
            } else {
                snprintf(names[n], sizeof names[n], default_names[k], l);
            }
            float tmp[S_COUNT];
            const float *src = c->data[l][k];
            if (layout == PARO_LAYOUT_NHD) {
                to_nhd(src, tmp);
                src = tmp;
            }
            bufs[n] = malloc(S_COUNT * 4);
            ck_assert_ptr_nonnull(bufs[n]);
            paro_convert_from_f32(t, src, bufs[n], S_COUNT);
            w[n] = (paro_st_write_tensor){names[n], t, 3, {S_HEADS, S_N, S_D}, bufs[n]};
            if (layout == PARO_LAYOUT_NHD) {
                w[n].shape[0] = S_N;
                w[n].shape[1] = S_HEADS;
            }
            n++;
        }
    }
    char *path = tu_path(c->dir, name);
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    ck_assert_msg(paro_st_write(path, w, n, &ei) == PARO_OK, "%s", ei.msg);
    for (size_t i = 0; i < n; i++)
        free(bufs[i]);
    free(path);
}

static void write_manifest(capture *c, const char *layout, const char *extra,
                           const char *const *files, int n_files)
{
    char text[4096];
    int used = snprintf(text, sizeof text,
                        "{\"format\": \"paro-capture\", \"version\": 1, \"model\": \"t\", "
                        "\"grid\": [%d, %d, %d], \"text_tokens\": %d, \"text_position\": "
                        "\"first\", \"layers\": %d, \"heads\": %d, \"head_dim\": %d, "
                        "\"layout\": \"%s\"%s, \"samples\": [",
                        S_F, S_H, S_W, S_T, S_LAYERS, S_HEADS, S_D, layout, extra);
    for (int i = 0; i < n_files; i++)
        used += snprintf(text + used, sizeof text - (size_t)used,
                         "%s{\"file\": \"%s\", \"prompt\": %d, \"timestep\": 500}", i ? ", " : "",
                         files[i], i);
    snprintf(text + used, sizeof text - (size_t)used, "]}");
    tu_write_file(c->manifest, text, strlen(text));
}

static capture *new_capture(void)
{
    capture *c = malloc(sizeof *c);
    ck_assert_ptr_nonnull(c);
    c->dir = tu_mkdtemp();
    c->manifest = tu_path(c->dir, "manifest.json");
    fill_capture(c);
    return c;
}

static void free_capture(capture *c)
{
    tu_rmtree(c->dir);
    free(c->dir);
    free(c->manifest);
    free(c);
}

/* Loads the manifest and reads kind/layer of sample i into out. */
static paro_err read_one(const capture *c, size_t i, paro_kind kind, uint32_t layer, float *out,
                         paro_errinfo *ei)
{
    paro_manifest *m;
    paro_errinfo_clear(ei);
    ck_assert_msg(paro_manifest_load(c->manifest, &m, ei) == PARO_OK, "%s", ei->msg);
    paro_sample_file *sf;
    paro_err rc = paro_sample_open(m, i, &sf, ei);
    if (rc == PARO_OK) {
        rc = paro_sample_read(sf, kind, layer, out, ei);
        paro_sample_close(sf);
    }
    paro_manifest_free(m);
    return rc;
}

START_TEST(sample_hnd_and_nhd_agree)
{
    capture *c = new_capture();
    write_sample(c, "hnd.safetensors", PARO_DTYPE_F32, PARO_LAYOUT_HND, NULL);
    write_sample(c, "nhd.safetensors", PARO_DTYPE_F32, PARO_LAYOUT_NHD, NULL);
    float got[S_COUNT];
    paro_errinfo ei;
    for (int layout = 0; layout < 2; layout++) {
        const char *file = layout ? "nhd.safetensors" : "hnd.safetensors";
        write_manifest(c, layout ? "NHD" : "HND", "", &file, 1);
        for (uint32_t l = 0; l < S_LAYERS; l++) {
            for (int k = 0; k < 2; k++) {
                memset(got, 0xff, sizeof got);
                ck_assert_msg(read_one(c, 0, (paro_kind)k, l, got, &ei) == PARO_OK, "%s",
                              ei.msg);
                ck_assert_int_eq(memcmp(got, c->data[l][k], sizeof got), 0);
            }
        }
    }
    free_capture(c);
}
END_TEST

START_TEST(sample_half_precision)
{
    capture *c = new_capture();
    const char *files[2] = {"f16.safetensors", "bf16.safetensors"};
    write_sample(c, files[0], PARO_DTYPE_F16, PARO_LAYOUT_NHD, NULL);
    write_sample(c, files[1], PARO_DTYPE_BF16, PARO_LAYOUT_NHD, NULL);
    write_manifest(c, "NHD", "", files, 2);
    float got[S_COUNT];
    paro_errinfo ei;
    for (size_t s = 0; s < 2; s++) {
        ck_assert_msg(read_one(c, s, PARO_KIND_K, 1, got, &ei) == PARO_OK, "%s", ei.msg);
        for (int i = 0; i < S_COUNT; i++) {
            float x = c->data[1][PARO_KIND_K][i];
            float want = s == 0 ? paro_f16_to_f32(paro_f32_to_f16(x))
                                : paro_bf16_to_f32(paro_f32_to_bf16(x));
            ck_assert_uint_eq(f32_bits(got[i]), f32_bits(want));
        }
    }
    free_capture(c);
}
END_TEST

START_TEST(sample_custom_names_and_missing_v)
{
    static const char *const tpl[3] = {"blk/{layer}/q", "blk/{layer}/k", "{layer}-v"};
    capture *c = new_capture();
    write_sample(c, "s.safetensors", PARO_DTYPE_F32, PARO_LAYOUT_HND, tpl);
    const char *file = "s.safetensors";
    write_manifest(c, "HND",
                   ", \"tensor_names\": {\"q\": \"blk/{layer}/q\", \"k\": \"blk/{layer}/k\", "
                   "\"v\": \"{layer}-v\"}",
                   &file, 1);
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_manifest *m;
    ck_assert_int_eq(paro_manifest_load(c->manifest, &m, &ei), PARO_OK);
    paro_sample_file *sf;
    ck_assert_msg(paro_sample_open(m, 0, &sf, &ei) == PARO_OK, "%s", ei.msg);
    ck_assert_int_eq(paro_sample_has(sf, PARO_KIND_Q, 1), 1);
    ck_assert_int_eq(paro_sample_has(sf, PARO_KIND_V, 0), 1);
    ck_assert_int_eq(paro_sample_has(sf, PARO_KIND_V, 1), 0);
    ck_assert_int_eq(paro_sample_has(sf, PARO_KIND_Q, S_LAYERS), 0);
    float got[S_COUNT];
    ck_assert_int_eq(paro_sample_read(sf, PARO_KIND_V, 0, got, &ei), PARO_OK);
    ck_assert_int_eq(memcmp(got, c->data[0][PARO_KIND_V], sizeof got), 0);
    ck_assert_int_eq(paro_sample_read(sf, PARO_KIND_V, 1, got, &ei), PARO_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(ei.msg, "'1-v'"));
    ck_assert_ptr_nonnull(strstr(ei.msg, "missing"));
    ck_assert_ptr_nonnull(strstr(ei.file, "s.safetensors"));
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_sample_read(sf, PARO_KIND_Q, S_LAYERS, got, &ei), PARO_ERR_USAGE);
    paro_sample_close(sf);

    /* sample index out of range, a folder, a missing file */
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_sample_open(m, 1, &sf, &ei), PARO_ERR_USAGE);
    paro_manifest_free(m);
    const char *others[2] = {"sub", "gone.safetensors"};
    char *sub = tu_path(c->dir, "sub");
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    free(sub);
    write_manifest(c, "HND", "", others, 2);
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_manifest_load(c->manifest, &m, &ei), PARO_OK);
    ck_assert_int_eq(paro_sample_open(m, 0, &sf, &ei), PARO_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(ei.msg, "folder without .npy files"));
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_sample_open(m, 1, &sf, &ei), PARO_ERR_IO);
    paro_manifest_free(m);
    free_capture(c);
}
END_TEST

START_TEST(sample_wrong_shape_and_dtype)
{
    capture *c = new_capture();
    const char *file = "s.safetensors";
    /* q of layer 0 is one token short; k of layer 0 is I32 */
    float q[S_HEADS * (S_N - 1) * S_D];
    memset(q, 0, sizeof q);
    int32_t k[S_COUNT];
    memset(k, 0, sizeof k);
    char *path = tu_path(c->dir, file);
    paro_st_write_tensor w = {"layers.0.q", PARO_DTYPE_F32, 3, {S_HEADS, S_N - 1, S_D}, q};
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_st_write(path, &w, 1, &ei), PARO_OK);
    /* append an I32 tensor by hand: the writer only writes float types */
    size_t n;
    unsigned char *bytes = tu_read_file(path, &n);
    char header[256];
    int hl = snprintf(header, sizeof header,
                      "{\"layers.0.q\":{\"dtype\":\"F32\",\"shape\":[%d,%d,%d],"
                      "\"data_offsets\":[0,%zu]},\"layers.0.k\":{\"dtype\":\"I32\","
                      "\"shape\":[%d,%d,%d],\"data_offsets\":[%zu,%zu]}}",
                      S_HEADS, S_N - 1, S_D, sizeof q, S_HEADS, S_N, S_D, sizeof q,
                      sizeof q + sizeof k);
    unsigned char *out = malloc(8 + (size_t)hl + sizeof q + sizeof k);
    ck_assert_ptr_nonnull(out);
    for (int i = 0; i < 8; i++)
        out[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(out + 8, header, (size_t)hl);
    memcpy(out + 8 + hl, bytes + n - sizeof q, sizeof q);
    memcpy(out + 8 + hl + sizeof q, k, sizeof k);
    tu_write_file(path, out, 8 + (size_t)hl + sizeof q + sizeof k);
    free(out);
    free(bytes);
    free(path);

    write_manifest(c, "HND", "", &file, 1);
    float got[S_COUNT];
    ck_assert_int_eq(read_one(c, 0, PARO_KIND_Q, 0, got, &ei), PARO_ERR_FORMAT);
    ck_assert_str_eq(ei.msg, "tensor 'layers.0.q' has shape [3, 13, 4]; the manifest wants "
                             "[3, 14, 4] (HND)");
    ck_assert_int_eq(read_one(c, 0, PARO_KIND_K, 0, got, &ei), PARO_ERR_FORMAT);
    ck_assert_str_eq(ei.msg, "tensor 'layers.0.k' has dtype I32; paro reads F32, F16 and BF16");
    write_manifest(c, "NHD", "", &file, 1);
    ck_assert_int_eq(read_one(c, 0, PARO_KIND_Q, 0, got, &ei), PARO_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(ei.msg, "[14, 3, 4] (NHD)"));
    free_capture(c);
}
END_TEST

START_TEST(sample_rejects_non_finite)
{
    capture *c = new_capture();
    /* layer 1 q: NaN at head 2, token 5, dim 1; layer 0 k: -inf at head 1,
     * token 13, dim 3 */
    c->data[1][PARO_KIND_Q][(2 * S_N + 5) * S_D + 1] = NAN;
    c->data[0][PARO_KIND_K][(1 * S_N + 13) * S_D + 3] = -INFINITY;
    const char *files[3] = {"hnd.safetensors", "nhd.safetensors", "bf16.safetensors"};
    write_sample(c, files[0], PARO_DTYPE_F32, PARO_LAYOUT_HND, NULL);
    write_sample(c, files[1], PARO_DTYPE_F32, PARO_LAYOUT_NHD, NULL);
    write_sample(c, files[2], PARO_DTYPE_BF16, PARO_LAYOUT_NHD, NULL);
    float got[S_COUNT];
    paro_errinfo ei;
    for (int layout = 0; layout < 2; layout++) {
        write_manifest(c, layout ? "NHD" : "HND", "", files + layout, layout ? 2 : 1);
        for (size_t s = 0; s < (layout ? 2u : 1u); s++) {
            paro_manifest *m;
            paro_errinfo_clear(&ei);
            ck_assert_int_eq(paro_manifest_load(c->manifest, &m, &ei), PARO_OK);
            paro_sample_file *sf;
            ck_assert_int_eq(paro_sample_open(m, s, &sf, &ei), PARO_OK);
            ck_assert_int_eq(paro_sample_read(sf, PARO_KIND_Q, 1, got, &ei), PARO_ERR_FORMAT);
            ck_assert_msg(strstr(ei.msg, "NaN at head 2, token 5, dim 1") != NULL, "%s", ei.msg);
            ck_assert_ptr_nonnull(strstr(ei.msg, "layers.1.q"));
            /* the offset is the element's first byte in the file */
            size_t elem = layout ? (5 * S_HEADS + 2) * S_D + 1 : (2 * S_N + 5) * S_D + 1;
            size_t esize = s == 1 ? 2 : 4;
            char *spath = paro_manifest_sample_path(m, s);
            paro_st_file *st;
            ck_assert_int_eq(paro_st_open(spath, &st, &ei), PARO_OK);
            const paro_st_tensor *t = paro_st_find(st, "layers.1.q");
            ck_assert_uint_eq(ei.offset, t->data_offset + elem * esize);
            ck_assert_str_eq(ei.file, spath);
            paro_st_close(st);
            free(spath);
            paro_errinfo_clear(&ei);
            ck_assert_int_eq(paro_sample_read(sf, PARO_KIND_K, 0, got, &ei), PARO_ERR_FORMAT);
            ck_assert_msg(strstr(ei.msg, "-inf at head 1, token 13, dim 3") != NULL, "%s",
                          ei.msg);
            paro_errinfo_clear(&ei);
            ck_assert_int_eq(paro_sample_read(sf, PARO_KIND_K, 1, got, &ei), PARO_OK);
            paro_sample_close(sf);
            paro_manifest_free(m);
        }
    }
    free_capture(c);
}
END_TEST

static Suite *formats_suite(void)
{
    Suite *s = suite_create("formats");
    TCase *tc = tcase_create("dtype");
    tcase_add_test(tc, f16_every_pattern_round_trips);
    tcase_add_test(tc, f16_known_values);
    tcase_add_test(tc, f32_to_f16_boundaries);
    tcase_add_test(tc, bf16_rounds_ties_to_even);
    tcase_add_test(tc, convert_unaligned_buffers);
    suite_add_tcase(s, tc);

    tc = tcase_create("json");
    tcase_add_test(tc, utf8_validation);
    tcase_add_test(tc, json_strict_parse);
    suite_add_tcase(s, tc);

    tc = tcase_create("safetensors");
    tcase_add_test(tc, st_round_trip);
    tcase_add_test(tc, st_writer_exact_bytes);
    tcase_add_test(tc, st_accepts_edge_cases);
    tcase_add_loop_test(tc, st_rejects_corruption, 0,
                        (int)(sizeof st_cases / sizeof st_cases[0]));
    tcase_add_test(tc, st_messages_are_precise);
    suite_add_tcase(s, tc);

    tc = tcase_create("manifest");
    tcase_add_test(tc, manifest_minimal_defaults);
    tcase_add_test(tc, manifest_full);
    tcase_add_loop_test(tc, manifest_rejects_invalid, 0,
                        (int)(sizeof manifest_cases / sizeof manifest_cases[0]));
    tcase_add_test(tc, manifest_step_range_and_io);
    suite_add_tcase(s, tc);

    tc = tcase_create("sample");
    tcase_add_test(tc, sample_hnd_and_nhd_agree);
    tcase_add_test(tc, sample_half_precision);
    tcase_add_test(tc, sample_custom_names_and_missing_v);
    tcase_add_test(tc, sample_wrong_shape_and_dtype);
    tcase_add_test(tc, sample_rejects_non_finite);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(formats_suite());
}
