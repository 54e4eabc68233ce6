/* paro — CRC-32 by carry-less multiplication (see crc32.h).
 *
 * The method is the folding one published by Intel (Gopal et al., "Fast CRC
 * Computation for Generic Polynomials Using PCLMULQDQ Instruction", 2009),
 * written here from the algebra below; the constants are computed at first
 * use from the polynomial, not copied.
 *
 * Notation.  A message is a polynomial over GF(2) whose first bit (bit 0 of
 * byte 0: the CRC is reflected) has the highest degree.  With state S (zlib's
 * running value, inverted: ~crc) before a message M of L bytes, the state
 * after it is  S x^(8L) + M x^32  mod P.  So S may be added to the message's
 * first 4 bytes instead, and a 16-byte block loaded little-endian into a
 * 128-bit register holds, at bit k, the coefficient of x^(127-k) of its
 * block: its low 64-bit half is X_H, its high half X_L, X = X_H x^64 + X_L.
 *
 * PCLMULQDQ of 64-bit a and b gives, at bit k, the sum over i + j = k of
 * a_i b_j.  If bit i of a is the coefficient of x^(ea-i) of A and bit j of
 * b that of x^(eb-j) of B, bit k of the product is the coefficient of
 * x^(ea+eb-k) of AB: reading the degrees off the bit positions is all the
 * bookkeeping there is.  Constants K (degree < 32) are kept with eb = 32:
 * bit j is the coefficient of x^(32-j), i.e. K reflected and shifted left by
 * one (rev33 below).
 *
 * Folding.  A block X that lies F bits before a later block adds X x^F to
 * it, and X x^F = X_H x^(F+64) + X_L x^F.  X_H (ea = 63) times
 * x^(F+32) mod P (eb = 32) has at bit k the degree 95-k, which in a block
 * register is degree 127-k of the product times x^32: X_H x^(F+64).  Likewise
 * X_L times x^(F-32) mod P.  The two products (bits < 96) are added to the
 * later block, which then stands for both.  Four lanes of 16 bytes fold 64
 * bytes ahead (F = 512) so that the multiplications of a round do not wait
 * for each other; at the end the lanes fold into one (F = 128).
 *
 * Reduction.  The last block X, everything before folded in, leaves the
 * state  X x^32 mod P:
 *   1. X x^32 = X_H x^96 + X_L x^32 == X_H (x^96 mod P) + X_L x^32 =: Y,
 *      with bit k of the register the degree 95-k: the product of X_H with
 *      x^96 mod P lands there as it is, X_L moves down 64 bits.
 *   2. Y = Y_H x^64 + Y_L (Y_H: bits 0..31) == Y_H (x^64 mod P) + Y_L =: Z,
 *      bit k the degree 63-k: Y_H (ea = 31) times x^64 mod P lands there,
 *      Y_L moves down 32 bits.
 *   3. Barrett: with mu = x^64 div P (degree 32), Z div P = ((Z div x^32)
 *      mu) div x^32 exactly in GF(2), and Z mod P = Z + (Z div P) P, whose
 *      degrees >= 32 cancel.  Z div x^32 is bits 0..31 of Z (ea = 31); times
 *      mu (eb = 32) bit k is the degree 63-k, so the quotient is bits 0..31
 *      again; times P the degrees 31..0 are bits 32..63, where Z's own
 *      degrees 31..0 are: the state is bits 32..63 of their sum.
 */
#include "crc32.h"

#include <pthread.h>   /* pthread_once */
#include <stdatomic.h> /* atomic_int, atomic_load_explicit */
#include <zlib.h>      /* crc32_z */

#if defined(__x86_64__)
#include <smmintrin.h> /* _mm_extract_epi32 (SSE4.1), _mm_loadu_si128, _mm_xor_si128 */
#include <wmmintrin.h> /* _mm_clmulepi64_si128 */
#define PARO_CRC32_FAST 1
#else
#define PARO_CRC32_FAST 0
#endif

/* P reflected: bit i is the coefficient of x^(31-i); x^32 is implied. */
#define POLY_REFLECTED 0xedb88320u

/* Shorter buffers go to zlib: the setup and the reduction cost about what
 * zlib takes for 64 bytes. */
#define FAST_MIN 64

/* bf16 values widened at a time where the fast path cannot take them: 16 KiB
 * of f32, in L1 beside the input. */
#define WIDEN_CHUNK 4096

uint32_t paro_crc32_xpow(uint64_t n)
{
    uint32_t r = 0x80000000u; /* x^0 */
    for (uint64_t i = 0; i < n; i++)
        /* times x: each degree moves up one (a bit down); x^31 becomes x^32,
         * which is P's lower terms */
        r = (r >> 1) ^ ((r & 1u) ? POLY_REFLECTED : 0u);
    return r;
}

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int cpu_has_fast;      /* set once, by init() */
static atomic_int use_fast;   /* cpu_has_fast unless a test said otherwise */

#if PARO_CRC32_FAST
/* rev33 as in the notes above: bit j of the result is the coefficient of
 * x^(32-j), for a polynomial given reflected in 32 bits (degree < 32). */
static uint64_t rev33(uint32_t reflected)
{
    return (uint64_t)reflected << 1;
}

/* The fold and reduction constants, each in the half of its register that
 * the PCLMULQDQ selector reaching it picks. */
static struct {
    uint64_t fold512[2]; /* x^544, x^480 mod P: four lanes, 64 bytes on */
    uint64_t fold128[2]; /* x^160, x^96 mod P: one lane, 16 bytes on */
    uint64_t reduce[2];  /* x^96, x^64 mod P: 128 bits to 64 */
    uint64_t barrett[2]; /* mu = x^64 div P, and P, both rev33 */
} k;

static void make_constants(void)
{
    k.fold512[0] = rev33(paro_crc32_xpow(512 + 32));
    k.fold512[1] = rev33(paro_crc32_xpow(512 - 32));
    k.fold128[0] = rev33(paro_crc32_xpow(128 + 32));
    k.fold128[1] = rev33(paro_crc32_xpow(128 - 32));
    k.reduce[0] = rev33(paro_crc32_xpow(96));
    k.reduce[1] = rev33(paro_crc32_xpow(64));
    /* x^64 div P by long division, in the ordinary order (bit d is the
     * coefficient of x^d); P = x^32 + (the reflected constant reversed). */
    uint64_t p = (uint64_t)1 << 32;
    for (int i = 0; i < 32; i++)
        if (POLY_REFLECTED >> i & 1u)
            p |= (uint64_t)1 << (31 - i);
    uint64_t rem = 0, mu = 0;
    for (int d = 64; d >= 0; d--) {
        rem = rem << 1 | (d == 64); /* the next bit of x^64 */
        if (rem >> 32 & 1u) {
            rem ^= p;
            mu |= (uint64_t)1 << d; /* d <= 32: rem reaches x^32 only then */
        }
    }
    uint64_t mu33 = 0, p33 = 0; /* bit j: the coefficient of x^(32-j) */
    for (int j = 0; j <= 32; j++) {
        mu33 |= (mu >> (32 - j) & 1u) << j;
        p33 |= (p >> (32 - j) & 1u) << j;
    }
    k.barrett[0] = mu33;
    k.barrett[1] = p33;
}

#define FAST_TARGET __attribute__((target("pclmul,sse4.1")))

static FAST_TARGET __m128i load_pair(const uint64_t pair[2])
{
    return _mm_set_epi64x((long long)pair[1], (long long)pair[0]);
}

/* x folded by the distance whose constants are kc, added to next. */
static FAST_TARGET __m128i fold(__m128i x, __m128i kc, __m128i next)
{
    __m128i hi = _mm_clmulepi64_si128(x, kc, 0x00); /* X_H times kc's low half */
    __m128i lo = _mm_clmulepi64_si128(x, kc, 0x11); /* X_L times its high half */
    return _mm_xor_si128(_mm_xor_si128(hi, lo), next);
}

/* The state after the message whose last block is x (the blocks before it
 * folded in), as zlib returns it. */
static FAST_TARGET uint32_t reduce(__m128i x)
{
    const __m128i kr = load_pair(k.reduce), kb = load_pair(k.barrett);
    const __m128i low32 = _mm_set_epi32(0, 0, 0, -1);
    /* 1. Y = X_H (x^96 mod P) + X_L x^32 */
    __m128i y = _mm_xor_si128(_mm_clmulepi64_si128(x, kr, 0x00), _mm_srli_si128(x, 8));
    /* 2. Z = Y_H (x^64 mod P) + Y_L */
    __m128i z = _mm_xor_si128(_mm_clmulepi64_si128(_mm_and_si128(y, low32), kr, 0x10),
                              _mm_srli_si128(y, 4));
    /* 3. Z + ((Z div x^32) mu div x^32) P */
    __m128i q = _mm_clmulepi64_si128(_mm_and_si128(z, low32), kb, 0x00);
    __m128i qp = _mm_clmulepi64_si128(_mm_and_si128(q, low32), kb, 0x10);
    return ~(uint32_t)_mm_extract_epi32(_mm_xor_si128(z, qp), 1);
}

/* zlib's crc32 of the first len & ~15 bytes at p, len >= 64. */
static FAST_TARGET uint32_t crc_fold(uint32_t crc, const unsigned char *p, size_t len)
{
    const __m128i k512 = load_pair(k.fold512), k128 = load_pair(k.fold128);
    __m128i x0 = _mm_loadu_si128((const __m128i *)p);
    __m128i x1 = _mm_loadu_si128((const __m128i *)(p + 16));
    __m128i x2 = _mm_loadu_si128((const __m128i *)(p + 32));
    __m128i x3 = _mm_loadu_si128((const __m128i *)(p + 48));
    x0 = _mm_xor_si128(x0, _mm_cvtsi32_si128((int)~crc)); /* the state, onto the first bytes */
    p += 64;
    len -= 64;
    for (; len >= 64; len -= 64, p += 64) {
        x0 = fold(x0, k512, _mm_loadu_si128((const __m128i *)p));
        x1 = fold(x1, k512, _mm_loadu_si128((const __m128i *)(p + 16)));
        x2 = fold(x2, k512, _mm_loadu_si128((const __m128i *)(p + 32)));
        x3 = fold(x3, k512, _mm_loadu_si128((const __m128i *)(p + 48)));
    }
    __m128i x = fold(fold(fold(x0, k128, x1), k128, x2), k128, x3);
    for (; len >= 16; len -= 16, p += 16)
        x = fold(x, k128, _mm_loadu_si128((const __m128i *)p));
    return reduce(x);
}

/* crc_fold over the f32 bytes of the first n & ~3 bf16 values at s, n >= 16,
 * widening as it loads: interleaving each value with 16 zero bits below it
 * (00 00 lo hi) is what the f32 bytes are.  A quarter faster than widening
 * into a buffer and folding that (measured: tests/bench/results/crc32-cpu.json). */
static FAST_TARGET uint32_t crc_fold_bf16(uint32_t crc, const uint16_t *s, size_t n)
{
    const __m128i k512 = load_pair(k.fold512), k128 = load_pair(k.fold128);
    const __m128i zero = _mm_setzero_si128();
    __m128i a = _mm_loadu_si128((const __m128i *)s), b = _mm_loadu_si128((const __m128i *)(s + 8));
    __m128i x0 = _mm_unpacklo_epi16(zero, a), x1 = _mm_unpackhi_epi16(zero, a);
    __m128i x2 = _mm_unpacklo_epi16(zero, b), x3 = _mm_unpackhi_epi16(zero, b);
    x0 = _mm_xor_si128(x0, _mm_cvtsi32_si128((int)~crc));
    s += 16;
    n -= 16;
    for (; n >= 16; n -= 16, s += 16) {
        a = _mm_loadu_si128((const __m128i *)s);
        b = _mm_loadu_si128((const __m128i *)(s + 8));
        x0 = fold(x0, k512, _mm_unpacklo_epi16(zero, a));
        x1 = fold(x1, k512, _mm_unpackhi_epi16(zero, a));
        x2 = fold(x2, k512, _mm_unpacklo_epi16(zero, b));
        x3 = fold(x3, k512, _mm_unpackhi_epi16(zero, b));
    }
    __m128i x = fold(fold(fold(x0, k128, x1), k128, x2), k128, x3);
    for (; n >= 4; n -= 4, s += 4)
        x = fold(x, k128, _mm_unpacklo_epi16(zero, _mm_loadl_epi64((const __m128i *)s)));
    return reduce(x);
}
#endif

static void init(void)
{
#if PARO_CRC32_FAST
    __builtin_cpu_init();
    cpu_has_fast = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
    if (cpu_has_fast)
        make_constants();
#endif
    atomic_store(&use_fast, cpu_has_fast);
}

int paro_crc32_use_fast(int on)
{
    pthread_once(&once, init);
    atomic_store(&use_fast, on && cpu_has_fast);
    return atomic_load(&use_fast);
}

uint32_t paro_crc32(uint32_t crc, const void *buf, size_t len)
{
#if PARO_CRC32_FAST
    pthread_once(&once, init);
    if (len >= FAST_MIN && atomic_load_explicit(&use_fast, memory_order_relaxed)) {
        size_t body = len & ~(size_t)15;
        crc = crc_fold(crc, buf, len);
        buf = (const unsigned char *)buf + body;
        len -= body;
    }
#endif
    return (uint32_t)crc32_z(crc, buf, len);
}

/* Written for the compiler to vectorize: whole uint32 shifts, no bytes, and
 * groups of 8 so that -O2 (GCC's "very cheap" vectorizer, which will not
 * vectorize a loop of unknown count) turns each group into a few vector
 * instructions. */
static void widen_bf16(uint32_t *restrict dst, const uint16_t *restrict src, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (size_t j = 0; j < 8; j++)
            dst[i + j] = (uint32_t)src[i + j] << 16;
    for (; i < n; i++)
        dst[i] = (uint32_t)src[i] << 16;
}

uint32_t paro_crc32_bf16_as_f32(uint32_t crc, const uint16_t *bf16, size_t n)
{
#if PARO_CRC32_FAST
    pthread_once(&once, init);
    if (n >= FAST_MIN / 4 && atomic_load_explicit(&use_fast, memory_order_relaxed)) {
        size_t body = n & ~(size_t)3;
        crc = crc_fold_bf16(crc, bf16, n);
        bf16 += body;
        n -= body;
    }
#endif
    uint32_t wide[WIDEN_CHUNK];
    while (n) {
        size_t m = n < WIDEN_CHUNK ? n : WIDEN_CHUNK;
        widen_bf16(wide, bf16, m);
        crc = paro_crc32(crc, wide, m * sizeof *wide);
        bf16 += m;
        n -= m;
    }
    return crc;
}
