/* paro — exact sums and radix selections of the largest tiles (largest.h). */
#include "largest.h"

#include <float.h>  /* DBL_MAX */
#include <stdint.h> /* uint64_t, uintptr_t, UINT64_MAX */
#include <string.h> /* memcpy, memset */

/* ---- the bits of a double ------------------------------------------------ */

/* A finite double >= 0 with exponent field e and fraction f is M * 2^-1074
 * times 2^off, with M = f (e = 0) or 2^52 + f, and off = e - 1 (e >= 1) or 0:
 * M is a 53-bit integer placed at bit `off` of a paro_xsum. */
#define FRAC_MASK ((UINT64_C(1) << 52) - 1)
#define HIDDEN (UINT64_C(1) << 52)
#define N_EXP 2048 /* exponent fields */

static uint64_t bits_of(double v)
{
    uint64_t b;
    memcpy(&b, &v, sizeof b);
    return b;
}

static double double_of(uint64_t b)
{
    double v;
    memcpy(&v, &b, sizeof v);
    return v;
}

static unsigned exponent_of(uint64_t bits)
{
    return (unsigned)(bits >> 52) & (N_EXP - 1); /* the sign bit is ignored */
}

static uint64_t mantissa_of(uint64_t bits)
{
    return (bits & FRAC_MASK) | (exponent_of(bits) ? HIDDEN : 0);
}

static unsigned offset_of(unsigned e)
{
    return e ? e - 1 : 0;
}

/* Index of the highest set bit of x != 0. */
static unsigned top_bit(uint64_t x)
{
    unsigned b = 0;
    for (unsigned step = 32; step; step /= 2)
        if (x >> step) {
            x >>= step;
            b += step;
        }
    return b;
}

/* ---- 128-bit integers: sums of up to 2^32 mantissas ---------------------- */

typedef struct u128 {
    uint64_t lo, hi;
} u128;

/* A sum kept as two column sums, of the low 32 bits and of the high bits of
 * each term, so that adding a term needs no carry: neither column can
 * overflow within 2^32 terms of 64 bits. */
static u128 from_columns(uint64_t low, uint64_t high)
{
    u128 r;
    r.lo = low + (high << 32);
    r.hi = (high >> 32) + (r.lo < low);
    return r;
}

static int u128_lt(u128 a, u128 b)
{
    return a.hi != b.hi ? a.hi < b.hi : a.lo < b.lo;
}

static u128 u128_add(u128 a, u128 b)
{
    u128 r = {a.lo + b.lo, a.hi + b.hi};
    r.hi += r.lo < a.lo;
    return r;
}

static u128 u128_sub(u128 a, u128 b) /* a >= b */
{
    u128 r = {a.lo - b.lo, a.hi - b.hi};
    r.hi -= a.lo < b.lo;
    return r;
}

/* a * b for b <= 2^32: the sum of b copies of a, in columns. */
static u128 u128_mul_small(uint64_t a, uint64_t b)
{
    return from_columns((a & 0xffffffffu) * b, (a >> 32) * b);
}

/* ---- exact sums ---------------------------------------------------------- */

/* s += v * 2^off (bit off of s).  v < 2^86 and off < 2047 keep the three
 * limbs it spans inside s. */
static void xsum_add_at(paro_xsum *s, u128 v, unsigned off)
{
    const unsigned sh = off % 64;
    const uint64_t w[3] = {v.lo << sh, sh ? (v.hi << sh) | (v.lo >> (64 - sh)) : v.hi,
                           sh ? v.hi >> (64 - sh) : 0};
    unsigned l = off / 64;
    uint64_t carry = 0;
    for (unsigned i = 0; i < 3; i++, l++) {
        const uint64_t a = s->limb[l], t = a + w[i], u = t + carry;
        carry = (t < a) | (u < t);
        s->limb[l] = u;
    }
    for (; carry && l < PARO_XSUM_LIMBS; l++)
        carry = ++s->limb[l] == 0;
}

/* ceil(s / 2^off), for s < 2^(off + 128). */
static u128 xsum_ceil_shift(const paro_xsum *s, unsigned off)
{
    const unsigned l = off / 64, sh = off % 64;
    uint64_t w[3];
    for (unsigned i = 0; i < 3; i++)
        w[i] = l + i < PARO_XSUM_LIMBS ? s->limb[l + i] : 0;
    u128 q = {sh ? (w[0] >> sh) | (w[1] << (64 - sh)) : w[0],
              sh ? (w[1] >> sh) | (w[2] << (64 - sh)) : w[1]};
    int rest = sh && (w[0] << (64 - sh)) != 0;
    for (unsigned i = 0; i < l && !rest; i++)
        rest = s->limb[i] != 0;
    return rest ? u128_add(q, (u128){1, 0}) : q;
}

static void xsum_add_bits(paro_xsum *s, uint64_t bits)
{
    xsum_add_at(s, (u128){mantissa_of(bits), 0}, offset_of(exponent_of(bits)));
}

void paro_xsum_zero(paro_xsum *s)
{
    memset(s, 0, sizeof *s);
}

void paro_xsum_add(paro_xsum *s, double v)
{
    xsum_add_bits(s, bits_of(v));
}

void paro_xsum_sub(paro_xsum *a, const paro_xsum *b)
{
    uint64_t borrow = 0;
    for (unsigned i = 0; i < PARO_XSUM_LIMBS; i++) {
        const uint64_t x = a->limb[i], t = x - b->limb[i], u = t - borrow;
        borrow = (x < b->limb[i]) | (t < borrow);
        a->limb[i] = u;
    }
}

int paro_xsum_cmp(const paro_xsum *a, const paro_xsum *b)
{
    for (unsigned i = PARO_XSUM_LIMBS; i-- > 0;)
        if (a->limb[i] != b->limb[i])
            return a->limb[i] > b->limb[i] ? 1 : -1;
    return 0;
}

/* Bit p of s. */
static unsigned xsum_bit(const paro_xsum *s, unsigned p)
{
    return (unsigned)(s->limb[p / 64] >> (p % 64)) & 1;
}

double paro_xsum_round(const paro_xsum *s)
{
    unsigned top = PARO_XSUM_LIMBS;
    while (top > 0 && !s->limb[top - 1])
        top--;
    if (top == 0)
        return 0.0;
    const unsigned p = (top - 1) * 64 + top_bit(s->limb[top - 1]); /* highest set bit */
    if (p < 53)
        /* At most 53 bits, all at or above 2^-1074: exact.  As a double's
         * bits this integer is the subnormal (p < 52) or the normal with
         * exponent field 1 (p = 52) of the same value. */
        return double_of(s->limb[0]);
    /* The 53 bits from p down, rounded to nearest on the bits below, ties to
     * even; exponent field p - 51 (a value in [2^(p-1074), 2^(p-1073))). */
    const unsigned lo = p - 52, l = lo / 64, sh = lo % 64;
    uint64_t m = s->limb[l] >> sh;
    if (sh && l + 1 < PARO_XSUM_LIMBS)
        m |= s->limb[l + 1] << (64 - sh);
    m &= (HIDDEN << 1) - 1;
    const unsigned half = xsum_bit(s, lo - 1);
    int sticky = 0;
    const unsigned below = lo - 1; /* bits [0, below) */
    if (below % 64 && (s->limb[below / 64] & ((UINT64_C(1) << (below % 64)) - 1)))
        sticky = 1;
    for (unsigned i = 0; i < below / 64 && !sticky; i++)
        sticky = s->limb[i] != 0;
    if (half && (sticky || (m & 1)))
        m++;
    const uint64_t e = p - 51;
    if (e >= N_EXP - 1)
        return double_of(UINT64_C(0x7ff0000000000000)); /* +inf */
    /* a carry out of the 53 bits moves into the exponent field (2^53 is
     * 2^52 at the next exponent), up to +inf */
    return double_of((e << 52) + (m - HIDDEN));
}

/* ---- scratch ------------------------------------------------------------- */

#define NARROW_BITS 8
#define NARROW (1u << NARROW_BITS)

typedef struct scratch_layout {
    uint64_t *count, *low, *high;       /* per exponent field (rank: per top 12 bits) */
    uint64_t *ncount, *nlow, *nhigh;    /* per digit of a narrowing pass */
    uint64_t *buf;                      /* the values of the crossing bucket */
} scratch_layout;

size_t paro_largest_scratch_bytes(size_t n)
{
    return (3 * N_EXP + 3 * NARROW + n) * sizeof(uint64_t) + 8;
}

static scratch_layout layout(void *scratch)
{
    uint64_t *p = (uint64_t *)(((uintptr_t)scratch + 7) & ~(uintptr_t)7);
    scratch_layout s = {p, p + N_EXP, p + 2 * N_EXP, p + 3 * N_EXP, p + 3 * N_EXP + NARROW,
                        p + 3 * N_EXP + 2 * NARROW, p + 3 * N_EXP + 3 * NARROW};
    return s;
}

/* ---- narrowing a bucket -------------------------------------------------- */

/* x[0..c) agree on their bits from 52 up.  Narrows them down to the run of
 * equal values at which a scan from the largest meets the target, by radix
 * passes over the bits where they still differ (or_all ^ and_all), highest
 * first, NARROW_BITS at a time:
 *   sums:  the first value at which the running sum of x reaches *need
 *          (0 < *need <= the sum of x);
 *   ranks: the value of 0-based rank *rank (< c).
 * The run is gathered at x[0..*run); the values above it are counted into
 * *above and taken off *need or *rank, which are then what is left of the
 * target inside the run. */
static uint64_t narrow(uint64_t *x, size_t c, uint64_t or_all, uint64_t and_all, int sums,
                       u128 *need, size_t *rank, size_t *above, size_t *run,
                       const scratch_layout *sp)
{
    uint64_t *count = sp->ncount, *low = sp->nlow, *high = sp->nhigh;
    while (c > 1 && (or_all ^ and_all)) {
        const unsigned hb = top_bit(or_all ^ and_all);
        const unsigned shift = hb >= NARROW_BITS - 1 ? hb - (NARROW_BITS - 1) : 0;
        memset(count, 0, NARROW * sizeof *count);
        if (sums) {
            memset(low, 0, NARROW * sizeof *low);
            memset(high, 0, NARROW * sizeof *high);
            for (size_t i = 0; i < c; i++) {
                const unsigned d = (unsigned)(x[i] >> shift) & (NARROW - 1);
                count[d]++;
                low[d] += x[i] & 0xffffffffu;
                high[d] += x[i] >> 32;
            }
        } else {
            for (size_t i = 0; i < c; i++)
                count[(x[i] >> shift) & (NARROW - 1)]++;
        }
        /* The digit holding the target; the invariants put it at or above
         * the lowest non-empty digit, so the scan stops there at the latest. */
        unsigned d = NARROW - 1;
        for (; d > 0; d--) {
            if (!count[d])
                continue;
            if (sums) {
                const u128 s = from_columns(low[d], high[d]);
                if (!u128_lt(s, *need))
                    break;
                *need = u128_sub(*need, s);
            } else {
                if (count[d] > *rank)
                    break;
                *rank -= count[d];
            }
            *above += count[d];
        }
        size_t m = 0;
        or_all = 0;
        and_all = UINT64_MAX;
        for (size_t i = 0; i < c; i++)
            if (((x[i] >> shift) & (NARROW - 1)) == d) {
                or_all |= x[i];
                and_all &= x[i];
                x[m++] = x[i];
            }
        c = m;
    }
    *run = c;
    return x[0];
}

/* The bit patterns of the candidates in one bucket, into buf; returns how
 * many.  by_exponent: the bucket of the exponent field, else of the top 12
 * bits.  Without branches, since whether a tile is in is random. */
static size_t gather(const double *mass, size_t n, const uint8_t *kept, unsigned bucket,
                     int by_exponent, uint64_t *buf)
{
    const unsigned mask = by_exponent ? N_EXP - 1 : 2 * N_EXP - 1;
    size_t c = 0;
    if (kept)
        for (size_t i = 0; i < n; i++) {
            const uint64_t bits = bits_of(mass[i]);
            buf[c] = bits;
            c += (((unsigned)(bits >> 52) & mask) == bucket) & !kept[i];
        }
    else
        for (size_t i = 0; i < n; i++) {
            const uint64_t bits = bits_of(mass[i]);
            buf[c] = bits;
            c += ((unsigned)(bits >> 52) & mask) == bucket;
        }
    return c;
}

/* ---- largest until a share of the mass ----------------------------------- */

void paro_largest_until(const double *mass, size_t n, const uint8_t *kept, double share,
                        paro_cut *cut, void *scratch)
{
    const scratch_layout sp = layout(scratch);
    uint64_t *count = sp.count, *low = sp.low, *high = sp.high;
    memset(cut, 0, sizeof *cut);
    memset(count, 0, N_EXP * sizeof *count);
    memset(low, 0, N_EXP * sizeof *low);
    memset(high, 0, N_EXP * sizeof *high);

    /* One pass: per exponent, the count and the exact sum of the mantissas
     * of the candidates (all at one scale); the kept mass on the side. */
    paro_xsum have;
    paro_xsum_zero(&have);
    for (size_t i = 0; i < n; i++) {
        const uint64_t bits = bits_of(mass[i]);
        if (kept && kept[i]) {
            xsum_add_bits(&have, bits);
            continue;
        }
        const unsigned e = exponent_of(bits);
        const uint64_t m = mantissa_of(bits);
        count[e]++;
        low[e] += m & 0xffffffffu;
        high[e] += m >> 32;
    }
    paro_xsum total = have;
    for (unsigned e = 0; e < N_EXP; e++)
        if (count[e])
            xsum_add_at(&total, from_columns(low[e], high[e]), offset_of(e));
    cut->total = paro_xsum_round(&total);
    if (cut->total == 0.0) {
        cut->kind = PARO_CUT_EMPTY;
        return;
    }
    cut->goal = share * cut->total;
    if (!(cut->goal > 0.0)) {
        cut->kind = PARO_CUT_MET;
        return;
    }
    if (!(cut->goal <= DBL_MAX)) {
        cut->kind = PARO_CUT_SHORT; /* no sum of doubles reaches +inf */
        return;
    }
    paro_xsum goal;
    paro_xsum_zero(&goal);
    paro_xsum_add(&goal, cut->goal);
    if (paro_xsum_cmp(&have, &goal) >= 0) {
        cut->kind = PARO_CUT_MET;
        return;
    }

    /* The exponent whose tiles take the running sum to the goal. */
    size_t above = 0;
    unsigned e = N_EXP;
    while (e-- > 0) {
        if (!count[e])
            continue;
        paro_xsum next = have;
        xsum_add_at(&next, from_columns(low[e], high[e]), offset_of(e));
        if (paro_xsum_cmp(&next, &goal) >= 0)
            break;
        have = next;
        above += count[e];
    }
    if (e >= N_EXP) {
        cut->kind = PARO_CUT_SHORT;
        return;
    }
    /* Inside it every sum is a whole number of 2^off: a running sum of
     * mantissas reaches need = goal - have exactly when it reaches
     * ceil(need / 2^off). */
    const unsigned off = offset_of(e);
    paro_xsum need = goal;
    paro_xsum_sub(&need, &have);
    const u128 target = xsum_ceil_shift(&need, off);
    uint64_t *buf = sp.buf;
    const size_t c = gather(mass, n, kept, e, 1, buf);
    uint64_t or_all = 0, and_all = UINT64_MAX;
    for (size_t i = 0; i < c; i++) {
        buf[i] = mantissa_of(buf[i]);
        or_all |= buf[i];
        and_all &= buf[i];
    }
    u128 left = target;
    size_t run, rank_unused = 0;
    const uint64_t m = narrow(buf, c, or_all, and_all, 1, &left, &rank_unused, &above, &run, &sp);
    /* A run of `run` tiles of mantissa m holds what is left (0 < left <=
     * run * m): the crossing one is the first j + 1 with (j + 1) m >= left. */
    size_t lo = 1, hi = run;
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        if (u128_lt(u128_mul_small(m, mid), left))
            lo = mid + 1;
        else
            hi = mid;
    }
    const size_t j = lo - 1;
    /* add what the tiles of this exponent before the crossing one hold */
    xsum_add_at(&have, u128_add(u128_sub(target, left), u128_mul_small(m, j)), off);
    paro_xsum_sub(&goal, &have);
    cut->kind = PARO_CUT_CROSS;
    cut->whole = above + j;
    cut->key = ((uint64_t)e << 52) | (m & FRAC_MASK);
    cut->mass = double_of(cut->key);
    cut->short_by = paro_xsum_round(&goal);
    cut->ties = j + 1;
}

/* ---- the k largest ------------------------------------------------------- */

void paro_largest_k(const double *mass, size_t n, const uint8_t *kept, size_t k,
                    uint64_t *key, size_t *ties, void *scratch)
{
    const scratch_layout sp = layout(scratch);
    uint64_t *count = sp.count; /* 2 * N_EXP entries: per top 12 bits (sign too) */
    memset(count, 0, 2 * N_EXP * sizeof *count);
    size_t candidates = 0;
    for (size_t i = 0; i < n; i++)
        if (!kept || !kept[i]) {
            count[bits_of(mass[i]) >> 52]++;
            candidates++;
        }
    if (k > candidates)
        k = candidates;
    if (k == 0) {
        *key = UINT64_MAX;
        *ties = 0;
        return;
    }
    size_t rank = k - 1; /* of the k-th largest, from 0 */
    unsigned top = 2 * N_EXP - 1;
    for (; top > 0; top--) {
        if (count[top] > rank)
            break;
        rank -= count[top];
    }
    uint64_t *buf = sp.buf, or_all = 0, and_all = UINT64_MAX;
    const size_t c = gather(mass, n, kept, top, 0, buf);
    for (size_t i = 0; i < c; i++) {
        or_all |= buf[i];
        and_all &= buf[i];
    }
    u128 need_unused = {0, 0};
    size_t run, above_unused = 0;
    *key = narrow(buf, c, or_all, and_all, 0, &need_unused, &rank, &above_unused, &run, &sp);
    *ties = rank + 1;
}

void paro_largest_mark(const double *mass, size_t n, uint8_t *keep, uint64_t key, size_t ties)
{
    for (size_t i = 0; i < n; i++) {
        if (keep[i])
            continue;
        const uint64_t bits = bits_of(mass[i]);
        if (bits > key || (bits == key && ties > 0)) {
            ties -= bits == key;
            keep[i] = 1;
        }
    }
}
