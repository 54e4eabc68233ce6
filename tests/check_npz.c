/* Tests of the .npy header parser and the ZIP reader: every header form
 * numpy writes, the refusals, ZIP64 archives, deflated members, and the
 * damaged archives a strict reader must catch (bombs, overlaps, CRCs). */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "npy.h"
#include "testutil.h"
#include "zip_read.h"
#include "zip_write.h"

/* An .npy header around dict (padded as numpy pads it), version major. */
static size_t make_npy(unsigned char *out, int major, const char *dict)
{
    size_t len_bytes = major == 1 ? 2 : 4, dl = strlen(dict);
    size_t total = 8 + len_bytes + dl + 1;
    size_t pad = (64 - total % 64) % 64;
    memcpy(out, "\x93NUMPY", 6);
    out[6] = (unsigned char)major;
    out[7] = 0;
    uint32_t hl = (uint32_t)(dl + pad + 1);
    for (size_t i = 0; i < len_bytes; i++)
        out[8 + i] = (unsigned char)(hl >> (8 * i));
    memcpy(out + 8 + len_bytes, dict, dl);
    memset(out + 8 + len_bytes + dl, ' ', pad);
    out[total + pad - 1] = '\n';
    return total + pad;
}

static paro_err parse(const char *dict, int major, paro_dtype raw16, paro_npy_header *h,
                      paro_errinfo *ei)
{
    unsigned char buf[1024];
    size_t n = make_npy(buf, major, dict), need;
    paro_errinfo_clear(ei);
    paro_err rc = paro_npy_parse(buf, n, raw16, "x.npy", 0, h, &need, ei);
    ck_assert_uint_eq(need, 0);
    return rc;
}

START_TEST(npy_accepts_what_numpy_writes)
{
    paro_npy_header h;
    paro_errinfo ei;
    for (int major = 1; major <= 3; major++) {
        ck_assert_msg(parse("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), }",
                            major, PARO_DTYPE_INVALID, &h, &ei) == PARO_OK,
                      "%s", ei.msg);
        ck_assert_int_eq(h.dtype, PARO_DTYPE_F32);
        ck_assert_uint_eq(h.ndim, 3);
        ck_assert_uint_eq(h.shape[2], 4);
        ck_assert_uint_eq(h.data_bytes, 96);
        ck_assert_uint_eq(h.header_bytes % 64, 0);
    }
    ck_assert_int_eq(parse("{\"shape\": (7,), \"descr\": \"<f2\", \"fortran_order\": False}", 1,
                           PARO_DTYPE_INVALID, &h, &ei),
                     PARO_OK);
    ck_assert_int_eq(h.dtype, PARO_DTYPE_F16);
    ck_assert_uint_eq(h.data_bytes, 14);
    ck_assert_int_eq(parse("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", 1,
                           PARO_DTYPE_INVALID, &h, &ei),
                     PARO_OK);
    ck_assert_uint_eq(h.ndim, 0);
    ck_assert_uint_eq(h.data_bytes, 4);
    ck_assert_int_eq(parse("{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L), }", 1,
                           PARO_DTYPE_INVALID, &h, &ei),
                     PARO_OK); /* numpy under Python 2 */
    ck_assert_uint_eq(h.data_bytes, 24);
    /* raw 2-byte types are bf16 only when asked */
    const char *raw[3] = {"<u2", "<i2", "|V2"};
    for (int i = 0; i < 3; i++) {
        char dict[128];
        snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (5,), }",
                 raw[i]);
        ck_assert_int_eq(parse(dict, 1, PARO_DTYPE_INVALID, &h, &ei), PARO_OK);
        ck_assert_int_eq(h.dtype, PARO_DTYPE_INVALID);
        ck_assert_str_eq(h.descr, raw[i]);
        ck_assert_int_eq(parse(dict, 1, PARO_DTYPE_BF16, &h, &ei), PARO_OK);
        ck_assert_int_eq(h.dtype, PARO_DTYPE_BF16);
        ck_assert_uint_eq(h.data_bytes, 10);
    }
    /* other types parse (their size is known) but are not read */
    ck_assert_int_eq(parse("{'descr': '>f4', 'fortran_order': False, 'shape': (3,), }", 1,
                           PARO_DTYPE_BF16, &h, &ei),
                     PARO_OK);
    ck_assert_int_eq(h.dtype, PARO_DTYPE_INVALID);
    ck_assert_int_eq(parse("{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", 1,
                           PARO_DTYPE_BF16, &h, &ei),
                     PARO_OK);
    ck_assert_uint_eq(h.data_bytes, 24);
    /* Fortran order of one dimension is C order */
    ck_assert_int_eq(parse("{'descr': '<f4', 'fortran_order': True, 'shape': (1, 9), }", 1,
                           PARO_DTYPE_INVALID, &h, &ei),
                     PARO_OK);
}
END_TEST

START_TEST(npy_refusals_are_precise)
{
    static const struct {
        const char *dict, *msg;
    } cases[] = {
        {"{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", "Fortran order"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3), }", "\"(n,)\""},
        {"{'descr': '<f4', 'fortran_order': False, }", "no 'shape' key"},
        {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (3,)}", "twice"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'x': 1}", "unknown key"},
        {"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,)}", "structured"},
        {"{'descr': '|O', 'fortran_order': False, 'shape': (3,)}", "not a plain numeric"},
        {"{'descr': '<f4', 'fortran_order': 0, 'shape': (3,)}", "True or False"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (-3,)}", "non-negative"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,2,3,4,5,6,7,8,9)}", "8 dim"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}",
         "64 bits"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296)}",
         "overflows"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3,)} x", "after the dict"},
        {"['descr']", "not a dict"},
        {"{'descr': '<f\\x34', 'fortran_order': False, 'shape': (3,)}", "escape"},
    };
    paro_npy_header h;
    paro_errinfo ei;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        paro_err rc = parse(cases[i].dict, 1, PARO_DTYPE_BF16, &h, &ei);
        ck_assert_msg(rc == PARO_ERR_FORMAT || rc == PARO_ERR_LIMIT, "case %zu accepted", i);
        ck_assert_msg(strstr(ei.msg, cases[i].msg), "case %zu: %s", i, ei.msg);
    }
    /* prefix handling: short buffers ask for more, bad magic and versions fail */
    unsigned char buf[256];
    size_t n = make_npy(buf, 2, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }"),
           need;
    for (size_t have = 0; have < n; have++) {
        paro_errinfo_clear(&ei);
        ck_assert_int_eq(paro_npy_parse(buf, have, PARO_DTYPE_INVALID, "x", 0, &h, &need, &ei),
                         PARO_OK);
        ck_assert_uint_gt(need, have);
        ck_assert_uint_le(need, n);
    }
    buf[6] = 4;
    ck_assert_int_eq(paro_npy_parse(buf, n, PARO_DTYPE_INVALID, "x", 0, &h, &need, &ei),
                     PARO_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(ei.msg, "version 4.0"));
    buf[6] = 2;
    buf[11] = 0x7f; /* a 2 GB header */
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_npy_parse(buf, n, PARO_DTYPE_INVALID, "x", 0, &h, &need, &ei),
                     PARO_ERR_LIMIT);
    buf[0] = 'X';
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_npy_parse(buf, n, PARO_DTYPE_INVALID, "x", 0, &h, &need, &ei),
                     PARO_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(ei.msg, "NUMPY"));
}
END_TEST

/* ---- ZIP ---- */


static paro_err pattern(void *user, uint64_t offset, uint8_t *buf, size_t n, paro_errinfo *ei)
{
    (void)ei;
    for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)((offset + i) * (user ? 0 : 7) + (offset + i) / 300);
    return PARO_OK;
}

static const char *const names[3] = {"a.npy", "b.npy", "empty.npy"};
static const uint64_t sizes[3] = {1000, 300000, 0};

static tu_membuf make_zip(uint64_t zip64_from, int method)
{
    tu_membuf m = {0};
    paro_zip *z = NULL;
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_zip_open(&z, tu_mem_sink, &m, zip64_from, &ei), PARO_OK);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(paro_zip_add(z, names[i], sizes[i], i == 0 ? PARO_ZIP_STORE : method,
                                      pattern, i == 1 ? (void *)1 : NULL, &ei),
                         PARO_OK);
    ck_assert_int_eq(paro_zip_finish(z, &ei), PARO_OK);
    paro_zip_free(z);
    return m;
}

static paro_err open_bytes(const char *dir, const tu_membuf *m, paro_unzip **z, paro_errinfo *ei)
{
    char *path = tu_path(dir, "t.npz");
    tu_write_file(path, m->p, m->len);
    paro_errinfo_clear(ei);
    paro_err rc = paro_unzip_open(path, z, ei);
    free(path);
    return rc;
}

START_TEST(zip_round_trip)
{
    char *dir = tu_mkdtemp();
    for (int zip64 = 0; zip64 < 2; zip64++)
        for (int method = 0; method <= 8; method += 8) {
            tu_membuf m = make_zip(zip64 ? 0 : UINT64_MAX, method);
            paro_unzip *z;
            paro_errinfo ei;
            ck_assert_msg(open_bytes(dir, &m, &z, &ei) == PARO_OK, "%s", ei.msg);
            ck_assert_uint_eq(paro_unzip_count(z), 3);
            for (int i = 0; i < 3; i++) {
                const paro_unzip_member *mb = paro_unzip_find(z, names[i]);
                ck_assert_ptr_nonnull(mb);
                ck_assert_uint_eq(mb->size, sizes[i]);
                unsigned char *want = malloc(sizes[i] + 1), *got = malloc(sizes[i] + 1);
                pattern(i == 1 ? (void *)1 : NULL, 0, want, sizes[i], NULL);
                ck_assert_msg(paro_unzip_extract(z, mb, got, sizes[i], &ei) == PARO_OK, "%s",
                              ei.msg);
                ck_assert_mem_eq(got, want, sizes[i]);
                if (sizes[i] > 10) { /* a prefix only */
                    memset(got, 0, 10);
                    ck_assert_int_eq(paro_unzip_extract(z, mb, got, 10, &ei), PARO_OK);
                    ck_assert_mem_eq(got, want, 10);
                }
                free(want);
                free(got);
            }
            ck_assert_ptr_null(paro_unzip_find(z, "A.npy"));
            paro_unzip_close(z);
            free(m.p);
        }
    tu_rmtree(dir);
    free(dir);
}
END_TEST

static uint32_t get32(const unsigned char *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* Offset of the central entry of member i (archives without ZIP64). */
static size_t central_entry(const tu_membuf *m, int i)
{
    size_t end = m->len - 22, at = get32(m->p + end + 16);
    for (int k = 0; k < i; k++)
        at += 46 + (m->p[at + 28] | m->p[at + 29] << 8) + (m->p[at + 30] | m->p[at + 31] << 8) +
              (m->p[at + 32] | m->p[at + 33] << 8);
    return at;
}

START_TEST(zip_damage_is_caught)
{
    char *dir = tu_mkdtemp();
    paro_unzip *z;
    paro_errinfo ei;
    static unsigned char buf[300016];
    tu_membuf m = make_zip(UINT64_MAX, 8);
    /* declared smaller than what the stream inflates to: a bomb */
    tu_membuf b = {malloc(m.len), m.len, m.len};
    memcpy(b.p, m.p, m.len);
    put32(b.p + central_entry(&b, 1) + 24, 1000);
    ck_assert_int_eq(open_bytes(dir, &b, &z, &ei), PARO_OK);
    ck_assert_int_eq(paro_unzip_extract(z, paro_unzip_find(z, "b.npy"), buf, 1000, &ei),
                     PARO_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(ei.msg, "more bytes than it declares"));
    paro_unzip_close(z);
    /* declared larger: the stream is cut short */
    memcpy(b.p, m.p, m.len);
    put32(b.p + central_entry(&b, 1) + 24, 300001);
    ck_assert_int_eq(open_bytes(dir, &b, &z, &ei), PARO_OK);
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_unzip_extract(z, paro_unzip_find(z, "b.npy"), buf, 300001, &ei),
                     PARO_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(ei.msg, "ends after 300000 of 300001"));
    paro_unzip_close(z);
    /* a flipped CRC */
    memcpy(b.p, m.p, m.len);
    b.p[central_entry(&b, 1) + 16] ^= 1;
    ck_assert_int_eq(open_bytes(dir, &b, &z, &ei), PARO_OK);
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_unzip_extract(z, paro_unzip_find(z, "b.npy"), buf, 300000, &ei),
                     PARO_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(ei.msg, "CRC-32"));
    paro_unzip_close(z);
    /* two members pointing at the same bytes */
    memcpy(b.p, m.p, m.len);
    memcpy(b.p + central_entry(&b, 1) + 42, b.p + central_entry(&b, 0) + 42, 4);
    ck_assert_int_eq(open_bytes(dir, &b, &z, &ei), PARO_ERR_FORMAT);
    ck_assert_msg(strstr(ei.msg, "local header names another") || strstr(ei.msg, "overlap"),
                  "%s", ei.msg);
    /* encrypted, unknown method, duplicate names, truncation at every end */
    memcpy(b.p, m.p, m.len);
    b.p[central_entry(&b, 0) + 8] |= 1;
    ck_assert_int_eq(open_bytes(dir, &b, &z, &ei), PARO_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(ei.msg, "encrypted"));
    memcpy(b.p, m.p, m.len);
    b.p[central_entry(&b, 0) + 10] = 12;
    ck_assert_int_eq(open_bytes(dir, &b, &z, &ei), PARO_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(ei.msg, "method 12"));
    memcpy(b.p, m.p, m.len);
    size_t e0 = central_entry(&b, 0), e1 = central_entry(&b, 1);
    b.p[e1 + 46] = 'a'; /* "b.npy" -> "a.npy" in the directory and its local header */
    b.p[get32(b.p + e1 + 42) + 30] = 'a';
    (void)e0;
    ck_assert_int_eq(open_bytes(dir, &b, &z, &ei), PARO_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(ei.msg, "two members named 'a.npy'"));
    for (size_t cut = 0; cut < m.len; cut += (cut < 64 || m.len - cut < 200) ? 1 : 997) {
        tu_membuf t = {m.p, cut, cut};
        paro_err rc = open_bytes(dir, &t, &z, &ei);
        if (rc == PARO_OK) { /* only a cut inside data can open; the data then fails */
            int bad = 0;
            for (int i = 0; i < 3; i++) {
                const paro_unzip_member *mb = paro_unzip_find(z, names[i]);
                paro_errinfo_clear(&ei);
                bad |= !mb || paro_unzip_extract(z, mb, buf, mb->size, &ei) != PARO_OK;
            }
            ck_assert_msg(bad, "archive cut at %zu of %zu reads whole", cut, m.len);
            paro_unzip_close(z);
        } else {
            ck_assert_int_eq(rc, PARO_ERR_FORMAT);
        }
    }
    free(b.p);
    free(m.p);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("npz");
    TCase *tc = tcase_create("npy");
    tcase_add_test(tc, npy_accepts_what_numpy_writes);
    tcase_add_test(tc, npy_refusals_are_precise);
    suite_add_tcase(s, tc);
    tc = tcase_create("zip");
    tcase_add_test(tc, zip_round_trip);
    tcase_add_test(tc, zip_damage_is_caught);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
