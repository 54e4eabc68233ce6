/* paro tests — CRC-32 (formats/crc32.h) against zlib's crc32, on the fast
 * path (where this CPU has one) and on the zlib fallback.  Loop tests run
 * once per path: _i 0 is zlib, _i 1 the fast path. */
#include <check.h>  /* START_TEST, ck_assert_*, Suite, TCase */
#include <stdint.h> /* uint8_t, uint16_t, uint32_t, uint64_t */
#include <stdlib.h> /* malloc, free */
#include <string.h> /* memcpy */

#include <zlib.h> /* crc32_z */

#include "crc32.h"    /* paro_crc32, paro_crc32_bf16_as_f32, paro_crc32_xpow */
#include "dtype.h"    /* paro_convert_to_f32, paro_f32_to_bf16 */
#include "testutil.h" /* tu_rand, tu_run_suite */

#define BIG (4u << 20)

static unsigned char *random_bytes(size_t n, uint64_t *rng)
{
    unsigned char *p = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(tu_rand(rng) >> 56);
    return p;
}

static uint32_t zlib_crc(uint32_t crc, const void *buf, size_t len)
{
    return (uint32_t)crc32_z(crc, buf, len);
}

/* The path _i asks for; the fast one only where the CPU has it. */
static int use_path(int i)
{
    int fast = paro_crc32_use_fast(i);
    ck_assert_int_le(fast, i);
    return fast;
}

/* zlib's CRC of bf16 values as f32, from bytes written out one by one. */
static uint32_t zlib_crc_bf16(uint32_t crc, const uint16_t *v, size_t n)
{
    unsigned char *wide = malloc(4 * n + 1);
    ck_assert_ptr_nonnull(wide);
    for (size_t i = 0; i < n; i++) {
        wide[4 * i] = 0;
        wide[4 * i + 1] = 0;
        wide[4 * i + 2] = (unsigned char)(v[i] & 0xff);
        wide[4 * i + 3] = (unsigned char)(v[i] >> 8);
    }
    uint32_t c = zlib_crc(crc, wide, 4 * n);
    free(wide);
    return c;
}

START_TEST(xpow_is_x_to_the_n_mod_p)
{
    /* Below x^32 nothing is reduced: x^n reflected is bit 31-n. */
    for (uint64_t n = 0; n < 32; n++)
        ck_assert_uint_eq(paro_crc32_xpow(n), 0x80000000u >> n);
    /* zlib's CRC with state 0 (crc32 given ~0) of a message whose only bit
     * is bit b of byte 0 of L bytes is x^(8L-1-b) x^32 mod P. */
    unsigned char msg[300] = {0};
    for (size_t len = 1; len <= sizeof msg; len++)
        for (int b = 0; b < 8; b++) {
            msg[0] = (unsigned char)(1u << b);
            uint32_t want = ~zlib_crc(0xffffffffu, msg, len);
            uint64_t n = 8 * len + 31 - (uint64_t)b;
            ck_assert_msg(paro_crc32_xpow(n) == want, "x^%llu mod P: %08x, zlib says %08x",
                          (unsigned long long)n, paro_crc32_xpow(n), want);
        }
}
END_TEST

START_TEST(fast_path_is_there_where_the_cpu_has_it)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    int cpu = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
    ck_assert_int_eq(paro_crc32_use_fast(1), cpu);
#else
    ck_assert_int_eq(paro_crc32_use_fast(1), 0);
#endif
    ck_assert_int_eq(paro_crc32_use_fast(0), 0);
    paro_crc32_use_fast(1);
}
END_TEST

START_TEST(empty_and_null_as_zlib)
{
    use_path(_i);
    const unsigned char byte = 0x5a;
    ck_assert_uint_eq(paro_crc32(0, NULL, 0), 0);
    ck_assert_uint_eq(paro_crc32(0, &byte, 0), 0);
    ck_assert_uint_eq(paro_crc32(0x12345678u, &byte, 0), 0x12345678u);
    ck_assert_uint_eq(paro_crc32(0x12345678u, NULL, 0), zlib_crc(0x12345678u, NULL, 0));
    ck_assert_uint_eq(paro_crc32_bf16_as_f32(0x12345678u, NULL, 0), 0x12345678u);
    /* the check value of CRC-32 */
    ck_assert_uint_eq(paro_crc32(0, "123456789", 9), 0xcbf43926u);
}
END_TEST

START_TEST(every_short_length_and_alignment)
{
    use_path(_i);
    uint64_t rng = 11;
    unsigned char *buf = random_bytes(300 + 16, &rng);
    for (size_t len = 0; len <= 300; len++)
        for (size_t at = 0; at < 16; at++) {
            uint32_t crc = len % 3 == 0 ? 0 : (uint32_t)tu_rand(&rng);
            uint32_t want = zlib_crc(crc, buf + at, len);
            uint32_t got = paro_crc32(crc, buf + at, len);
            ck_assert_msg(got == want, "len %zu at +%zu from %08x: %08x, zlib %08x", len, at,
                          crc, got, want);
        }
    free(buf);
}
END_TEST

START_TEST(long_buffers)
{
    use_path(_i);
    uint64_t rng = 12;
    unsigned char *buf = random_bytes(BIG + 16, &rng);
    /* around the folding steps (16, 64 bytes), powers of two, and any */
    static const size_t fixed[] = {1023,  1024,  1025,  4095,   4096,   4097,    65535,
                                   65536, 65537, 65599, 1 << 20, (1 << 20) + 15, BIG};
    for (size_t t = 0; t < sizeof fixed / sizeof fixed[0] + 40; t++) {
        size_t len = t < sizeof fixed / sizeof fixed[0] ? fixed[t] : tu_rand(&rng) % BIG;
        size_t at = tu_rand(&rng) % 16;
        uint32_t crc = (uint32_t)tu_rand(&rng);
        uint32_t want = zlib_crc(crc, buf + at, len);
        uint32_t got = paro_crc32(crc, buf + at, len);
        ck_assert_msg(got == want, "len %zu at +%zu from %08x: %08x, zlib %08x", len, at, crc,
                      got, want);
    }
    /* every byte counts: one flipped bit anywhere changes the CRC as zlib's */
    for (int t = 0; t < 20; t++) {
        size_t pos = tu_rand(&rng) % (1 << 16);
        buf[pos] ^= (unsigned char)(1u << (t % 8));
        ck_assert_uint_eq(paro_crc32(0, buf, 1 << 16), zlib_crc(0, buf, 1 << 16));
        buf[pos] ^= (unsigned char)(1u << (t % 8));
    }
    free(buf);
}
END_TEST

START_TEST(pieces_continue_the_crc)
{
    use_path(_i);
    uint64_t rng = 13;
    const size_t n = 1 << 20;
    unsigned char *buf = random_bytes(n, &rng);
    const uint32_t whole = zlib_crc(0, buf, n);
    for (int t = 0; t < 30; t++) {
        /* cuts of every size, small ones (below the fast path's minimum)
         * among them */
        uint32_t crc = 0;
        for (size_t at = 0; at < n;) {
            uint64_t r = tu_rand(&rng);
            size_t piece = r % 4 == 0 ? (r >> 8) % 70 : r % 4 == 1 ? (r >> 8) % 5000
                                                                 : (r >> 8) % 200000;
            piece = piece > n - at ? n - at : piece;
            crc = paro_crc32(crc, buf + at, piece);
            at += piece;
        }
        ck_assert_uint_eq(crc, whole);
    }
    free(buf);
}
END_TEST

START_TEST(bf16_as_f32)
{
    use_path(_i);
    uint64_t rng = 14;
    const size_t max = 1 << 20;
    uint16_t *v = malloc((max + 8) * sizeof *v);
    ck_assert_ptr_nonnull(v);
    for (size_t i = 0; i < max + 8; i++)
        v[i] = (uint16_t)(tu_rand(&rng) >> 48); /* any bits: NaNs and infinities too */
    for (size_t n = 0; n <= 300; n++)
        for (size_t at = 0; at < 8; at++) {
            uint32_t crc = n % 3 == 0 ? 0 : (uint32_t)tu_rand(&rng);
            uint32_t want = zlib_crc_bf16(crc, v + at, n);
            uint32_t got = paro_crc32_bf16_as_f32(crc, v + at, n);
            ck_assert_msg(got == want, "%zu values at +%zu from %08x: %08x, zlib %08x", n, at,
                          crc, got, want);
        }
    for (int t = 0; t < 12; t++) {
        size_t n = t == 0 ? max : t == 1 ? 4096 * 3 + 1 : tu_rand(&rng) % max;
        size_t at = tu_rand(&rng) % 8;
        uint32_t crc = (uint32_t)tu_rand(&rng);
        ck_assert_uint_eq(paro_crc32_bf16_as_f32(crc, v + at, n), zlib_crc_bf16(crc, v + at, n));
    }
    /* in pieces, and continuing paro_crc32 */
    uint32_t want = zlib_crc_bf16(0, v, max), crc = 0;
    for (size_t at = 0; at < max;) {
        size_t piece = (size_t)(tu_rand(&rng) % 20000);
        piece = piece > max - at ? max - at : piece;
        crc = paro_crc32_bf16_as_f32(crc, v + at, piece);
        at += piece;
    }
    ck_assert_uint_eq(crc, want);
    free(v);
}
END_TEST

/* The digest as calibrate computed it before: paro_convert_to_f32, then
 * zlib over the floats. */
START_TEST(bf16_as_the_old_digest)
{
    use_path(_i);
    uint64_t rng = 15;
    const size_t n = 100003;
    uint16_t *v = malloc(n * sizeof *v);
    float *f = malloc(n * sizeof *f);
    ck_assert(v && f);
    for (size_t i = 0; i < n; i++)
        v[i] = paro_f32_to_bf16((float)(tu_normal(&rng) * 3.0));
    paro_convert_to_f32(PARO_DTYPE_BF16, v, f, n);
    ck_assert_uint_eq(paro_crc32_bf16_as_f32(0, v, n), zlib_crc(0, f, n * sizeof *f));
    ck_assert_uint_eq(paro_crc32(0, f, n * sizeof *f), zlib_crc(0, f, n * sizeof *f));
    free(v);
    free(f);
}
END_TEST

static Suite *crc_suite(void)
{
    Suite *s = suite_create("crc");
    TCase *tc = tcase_create("crc32");
    tcase_add_test(tc, xpow_is_x_to_the_n_mod_p);
    tcase_add_test(tc, fast_path_is_there_where_the_cpu_has_it);
    tcase_add_loop_test(tc, empty_and_null_as_zlib, 0, 2);
    tcase_add_loop_test(tc, every_short_length_and_alignment, 0, 2);
    tcase_add_loop_test(tc, long_buffers, 0, 2);
    tcase_add_loop_test(tc, pieces_continue_the_crc, 0, 2);
    tcase_add_loop_test(tc, bf16_as_f32, 0, 2);
    tcase_add_loop_test(tc, bf16_as_the_old_digest, 0, 2);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(crc_suite());
}
