/* paro — the largest tiles of a mass map: exact sums, and selections in O(n).
 *
 * The block-sparse score (METRICS.md) and the density and recall mask targets
 * (calib/mask.h) take tiles largest first until a count or a share of the
 * total mass is reached.  None of them needs the tiles sorted: a radix
 * selection on the bit patterns of the masses finds the tile where the count
 * or the running sum crosses the target in a few passes over the map.
 *
 * A selection meets the tiles in no particular order, so the sums it forms
 * must not depend on the order of the additions: they are exact (paro_xsum),
 * and rounded to double once, where a double is wanted.  Then "the running
 * sum of the largest tiles reaches the goal" is an exact comparison, and the
 * result depends on the multiset of masses only, not on their order.
 *
 * "Largest first" is the order of the masses' bit patterns as unsigned
 * 64-bit integers, largest first, and ties go to the lower index.  For masses
 * that are finite and >= 0 (every mass paro computes) that is the numeric
 * order with +0.0 last.  The functions never read out of bounds whatever the
 * bits, but the sums and cuts are defined for such masses only.
 *
 * Pure functions over arrays: no allocation, no I/O, no errors.
 */
#ifndef PARO_LARGEST_H_6c2e81d4
#define PARO_LARGEST_H_6c2e81d4

#include <stddef.h> /* size_t */
#include <stdint.h> /* uint8_t, uint64_t */

#ifdef __cplusplus
extern "C" {
#endif

/* ---- exact sums --------------------------------------------------------- */

/* An exact sum of finite doubles >= 0: a fixed-point number in 64-bit limbs,
 * least significant first, whose lowest bit weighs 2^-1074 (the smallest
 * double, so every double is a whole number of them) and whose 2176 bits
 * hold the sum of up to 2^32 doubles < 2^1024 without overflow. */
#define PARO_XSUM_LIMBS 34
typedef struct paro_xsum {
    uint64_t limb[PARO_XSUM_LIMBS];
} paro_xsum;

void paro_xsum_zero(paro_xsum *s);
/* s += v, exactly (v finite and >= 0; the sign bit is ignored). */
void paro_xsum_add(paro_xsum *s, double v);
/* The double nearest to s (ties to even), +inf past the largest double. */
double paro_xsum_round(const paro_xsum *s);
/* a -= b, exactly; b must not be larger than a. */
void paro_xsum_sub(paro_xsum *a, const paro_xsum *b);
/* -1, 0 or 1 as a < b, a == b or a > b. */
int paro_xsum_cmp(const paro_xsum *a, const paro_xsum *b);

/* ---- selections --------------------------------------------------------- */

/* Bytes of scratch the functions below need for n tiles; n <= 2^32 (as
 * 65536 x 65536 tiles). */
size_t paro_largest_scratch_bytes(size_t n);

typedef enum paro_cut_kind {
    PARO_CUT_EMPTY, /* the map has no mass */
    PARO_CUT_MET,   /* the goal needs no tile (goal <= the mass already kept) */
    PARO_CUT_CROSS, /* a tile crosses the goal */
    PARO_CUT_SHORT  /* all tiles together stay below the goal */
} paro_cut_kind;

/* Where taking tiles largest first reaches a share of the total mass. */
typedef struct paro_cut {
    paro_cut_kind kind;
    double total;    /* exact sum of all masses (kept ones too), rounded once */
    double goal;     /* share * total, in double (one more rounding) */
    /* PARO_CUT_CROSS only: */
    size_t whole;    /* tiles taken whole before the crossing one */
    double mass;     /* the crossing tile's mass, > 0 */
    double short_by; /* goal - (kept mass + the whole tiles' mass), exact, then
                        rounded once: in (0, mass] */
    uint64_t key;    /* the crossing tile's bit pattern, and how many tiles of */
    size_t ties;     /* that mass come up to and including it (for _mark) */
} paro_cut;

/* Tiles already kept (kept[i] != 0; none when kept is NULL) count towards the
 * goal and are not candidates.  With K the exact kept mass and S_j the exact
 * sum of the j largest candidates, the crossing tile is candidate j for the
 * smallest j with K + S_j + m_j >= goal (exact comparison; goal a double). */
void paro_largest_until(const double *mass, size_t n, const uint8_t *kept, double share,
                        paro_cut *cut, void *scratch);

/* The k-th largest candidate (1 <= k <= candidates): *key gets its bit
 * pattern and *ties how many candidates with that bit pattern the k largest
 * include.  k = 0 selects nothing (*key = UINT64_MAX, *ties = 0); k beyond
 * the candidates selects them all. */
void paro_largest_k(const double *mass, size_t n, const uint8_t *kept, size_t k,
                    uint64_t *key, size_t *ties, void *scratch);

/* Marks (keep[i] = 1) the candidates (keep[i] == 0) whose bit pattern is
 * above key, and the first `ties` of them, by index, whose bit pattern is key:
 * with the result of paro_largest_k or paro_largest_until, the largest tiles
 * by the order above. */
void paro_largest_mark(const double *mass, size_t n, uint8_t *keep, uint64_t key,
                       size_t ties);

#ifdef __cplusplus
}
#endif
#endif
