/* paro tests — metrics/: the block-sparse, quant and combined scores. */
#include <check.h>  /* START_TEST, ck_assert_* */
#include <float.h>  /* DBL_MAX */
#include <math.h>   /* fabs, ldexp, nextafter */
#include <stdlib.h> /* malloc, qsort */
#include <string.h> /* memcpy */

#include "largest.h"
#include "metrics.h"
#include "testutil.h"

START_TEST(sparse_all_mass_in_one_tile)
{
    /* 10 tiles, one holds everything: recall 0.95 needs 0.95 of that tile,
     * i.e. 0.095 of the tiles; 0.905 can be skipped. */
    double mass[10] = {0, 0, 0, 7, 0, 0, 0, 0, 0, 0};
    uint64_t scratch[8192]; /* >= paro_largest_scratch_bytes(10) */
    ck_assert_double_eq_tol(paro_metric_sparse(mass, 10, 0.95, scratch), 1.0 - 0.095, 1e-12);
}
END_TEST

START_TEST(sparse_uniform_map)
{
    /* Uniform: recall r needs exactly the fraction r of the tiles. */
    double mass[8];
    uint64_t scratch[8192]; /* >= paro_largest_scratch_bytes(10) */
    for (int i = 0; i < 8; i++)
        mass[i] = 0.5;
    ck_assert_double_eq_tol(paro_metric_sparse(mass, 8, 0.95, scratch), 0.05, 1e-12);
    ck_assert_double_eq_tol(paro_metric_sparse(mass, 8, 0.5, scratch), 0.5, 1e-12);
}
END_TEST

START_TEST(sparse_interpolates_inside_the_crossing_tile)
{
    /* Sorted masses 4, 3, 2, 1 (total 10).  Recall 0.8 = 8: the first two
     * hold 7, the third must give 1 of its 2, so 2.5 tiles of 4 are needed. */
    double mass[4] = {2, 4, 1, 3};
    uint64_t scratch[8192]; /* >= paro_largest_scratch_bytes(10) */
    ck_assert_double_eq_tol(paro_metric_sparse(mass, 4, 0.8, scratch), 1.0 - 2.5 / 4, 1e-12);
    /* Exactly on a boundary: recall 0.7 is met by two whole tiles. */
    ck_assert_double_eq_tol(paro_metric_sparse(mass, 4, 0.7, scratch), 0.5, 1e-12);
    /* Does not depend on the input order. */
    double shuffled[4] = {3, 1, 4, 2};
    ck_assert_double_eq_tol(paro_metric_sparse(shuffled, 4, 0.8, scratch), 1.0 - 2.5 / 4,
                            1e-12);
}
END_TEST

START_TEST(sparse_empty_map_scores_zero)
{
    double mass[3] = {0, 0, 0};
    uint64_t scratch[8192]; /* >= paro_largest_scratch_bytes(10) */
    ck_assert_double_eq(paro_metric_sparse(mass, 3, 0.95, scratch), 0.0);
    ck_assert_double_eq(paro_metric_sparse(mass, 0, 0.95, scratch), 0.0);
}
END_TEST

START_TEST(sparse_is_continuous_in_the_masses)
{
    /* A tiny change of the masses moves the score a tiny amount (no jumps
     * from tile counting), which keeps CPU/GPU choices stable. */
    double a[5] = {5, 3, 1, 0.6, 0.4}, b[5] = {5, 3, 1 + 1e-9, 0.6, 0.4 - 1e-9};
    uint64_t s[8192];
    double da = paro_metric_sparse(a, 5, 0.9, s), db = paro_metric_sparse(b, 5, 0.9, s);
    ck_assert_double_le(fabs(da - db), 1e-8);
}
END_TEST

START_TEST(quant_uniform_tiles_score_one)
{
    /* Tiles of area 4 with uniform values: peak = mass / area. */
    double area[3] = {4, 4, 4}, mass[3] = {0.4, 1.2, 2.0}, peak[3];
    for (int i = 0; i < 3; i++)
        peak[i] = mass[i] / area[i];
    ck_assert_double_eq_tol(paro_metric_quant(mass, peak, area, 3), 1.0, 1e-12);
}
END_TEST

START_TEST(quant_is_mass_weighted_incoherence)
{
    /* Two tiles of area 4.  Tile 0: mass 1, peak 1 (one element holds it:
     * incoherence 4).  Tile 1: mass 3, uniform (incoherence 1).  Weighted by
     * mass: (1 * 4 + 3 * 1) / 4 = 1.75. */
    double area[2] = {4, 4}, mass[2] = {1, 3}, peak[2] = {1, 0.75};
    ck_assert_double_eq_tol(paro_metric_quant(mass, peak, area, 2), 1.75, 1e-12);
    /* With sums over two identical samples the score is unchanged. */
    double mass2[2] = {2, 6}, peak2[2] = {2, 1.5};
    ck_assert_double_eq_tol(paro_metric_quant(mass2, peak2, area, 2), 1.75, 1e-12);
}
END_TEST

START_TEST(quant_empty_map_scores_one)
{
    double area[2] = {4, 4}, mass[2] = {0, 0}, peak[2] = {0, 0};
    ck_assert_double_eq(paro_metric_quant(mass, peak, area, 2), 1.0);
}
END_TEST

START_TEST(combine_normalises_across_orders)
{
    double sparse[3] = {0.8, 0.4, 0.2}, quant[3] = {2.0, 1.0, 4.0}, combined[3];
    int valid[3] = {1, 1, 1};
    paro_metric_combine(sparse, quant, valid, 3, 0.5, combined);
    ck_assert_double_eq_tol(combined[0], 0.5 * 1.0 + 0.5 * 0.5, 1e-12);
    ck_assert_double_eq_tol(combined[1], 0.5 * 0.5 + 0.5 * 1.0, 1e-12);
    ck_assert_double_eq_tol(combined[2], 0.5 * 0.25 + 0.5 * 0.25, 1e-12);
    /* alpha 1: sparse alone decides; alpha 0: quant alone. */
    paro_metric_combine(sparse, quant, valid, 3, 1.0, combined);
    ck_assert_int_eq(paro_metric_best(combined, valid, 3), 0);
    paro_metric_combine(sparse, quant, valid, 3, 0.0, combined);
    ck_assert_int_eq(paro_metric_best(combined, valid, 3), 1);
}
END_TEST

START_TEST(combine_ignores_invalid_orders)
{
    double sparse[3] = {0.9, 0.4, 0.2}, quant[3] = {1.0, 2.0, 4.0}, combined[3];
    int valid[3] = {0, 1, 1};
    paro_metric_combine(sparse, quant, valid, 3, 0.5, combined);
    ck_assert_double_eq(combined[0], 0.0);
    ck_assert_double_eq_tol(combined[1], 1.0, 1e-12); /* best of the valid ones */
    ck_assert_int_eq(paro_metric_best(combined, valid, 3), 1);
}
END_TEST

START_TEST(combine_with_nothing_skippable)
{
    /* No order can skip anything: the sparse term counts 1 for all and the
     * quant term decides. */
    double sparse[2] = {0, 0}, quant[2] = {3.0, 1.5}, combined[2];
    int valid[2] = {1, 1};
    paro_metric_combine(sparse, quant, valid, 2, 0.5, combined);
    ck_assert_double_eq_tol(combined[0], 0.5 + 0.25, 1e-12);
    ck_assert_double_eq_tol(combined[1], 1.0, 1e-12);
}
END_TEST

START_TEST(best_breaks_ties_to_the_lowest_index)
{
    double combined[4] = {0.5, 0.9, 0.9, 0.1};
    int valid[4] = {1, 1, 1, 1};
    ck_assert_int_eq(paro_metric_best(combined, valid, 4), 1);
    ck_assert_double_eq(paro_metric_margin(combined, valid, 4), 0.0);
    int none[4] = {0, 0, 0, 0};
    ck_assert_int_eq(paro_metric_best(combined, none, 4), -1);
}
END_TEST

START_TEST(margin_is_relative_lead)
{
    double combined[3] = {0.8, 1.0, 0.5};
    int valid[3] = {1, 1, 1};
    ck_assert_double_eq_tol(paro_metric_margin(combined, valid, 3), 0.2, 1e-12);
    int one[3] = {0, 1, 0};
    ck_assert_double_eq(paro_metric_margin(combined, one, 3), 1.0);
}
END_TEST

/* ---- exact sums ----------------------------------------------------------- */

START_TEST(exact_sums_match_integer_sums)
{
    /* Doubles that are whole multiples of 2^-60 below 2^-7: their sums are
     * integers in __int128, whose conversion to double is correctly
     * rounded.  Both exact sums (the library's and the tests') must round to
     * it, and compare as the integers do. */
    uint64_t rng = 5;
    for (int round = 0; round < 300; round++) {
        const size_t n = 1 + tu_rand(&rng) % 3000;
        paro_xsum a, b;
        tu_exact ta;
        paro_xsum_zero(&a);
        paro_xsum_zero(&b);
        tu_exact_zero(&ta);
        __int128 sa = 0, sb = 0;
        for (size_t i = 0; i < n; i++) {
            const uint64_t k = tu_rand(&rng) >> (11 + tu_rand(&rng) % 53); /* < 2^53 */
            const double v = ldexp((double)k, -60);
            if (i % 2) {
                paro_xsum_add(&b, v);
                sb += k;
            } else {
                paro_xsum_add(&a, v);
                tu_exact_add(&ta, v);
                sa += k;
            }
        }
        const double want = ldexp((double)sa, -60);
        ck_assert_msg(paro_xsum_round(&a) == want, "round %d: %a, want %a", round,
                      paro_xsum_round(&a), want);
        ck_assert_msg(tu_exact_round(&ta) == want, "round %d: oracle %a, want %a", round,
                      tu_exact_round(&ta), want);
        ck_assert_int_eq(paro_xsum_cmp(&a, &b), (sa > sb) - (sa < sb));
        ck_assert_int_eq(paro_xsum_cmp(&a, &a), 0);
    }
}
END_TEST

static double bits_double(uint64_t b)
{
    double v;
    memcpy(&v, &b, sizeof v);
    return v;
}

START_TEST(exact_sums_round_like_the_hardware)
{
    /* a + b in double is the correctly rounded exact sum: over every
     * exponent, subnormals and overflow included. */
    static const double edge[][2] = {
        {DBL_MAX, 0x1p970},               /* a tie at the top: rounds to +inf */
        {DBL_MAX, 0x1.fffffffffffffp969}, /* just below the tie */
        {0x1p-1074, 0x1p-1074},
        {0x0.fffffffffffffp-1022, 0x1p-1074}, /* largest subnormal + smallest */
        {1.0, 0x1p-53},                       /* tie, to even: 1 */
        {0x1.0000000000001p0, 0x1p-53},       /* tie, to even: up */
        {0x1p-1074, 0.0},
        {0.0, 0.0},
        {DBL_MAX, DBL_MAX},
    };
    uint64_t rng = 9;
    for (int i = 0; i < 200000 + (int)(sizeof edge / sizeof *edge); i++) {
        double a, b;
        if (i < (int)(sizeof edge / sizeof *edge)) {
            a = edge[i][0];
            b = edge[i][1];
        } else {
            /* random bit patterns; near exponents now and then, where the
             * rounding has the most to do */
            const uint64_t ea = tu_rand(&rng) % 2047;
            const uint64_t eb = i % 3 ? tu_rand(&rng) % 2047
                                      : (ea + tu_rand(&rng) % 60) % 2047;
            a = bits_double(ea << 52 | (tu_rand(&rng) >> 12));
            b = bits_double(eb << 52 | (tu_rand(&rng) >> 12));
        }
        paro_xsum x;
        tu_exact t;
        paro_xsum_zero(&x);
        tu_exact_zero(&t);
        paro_xsum_add(&x, a);
        paro_xsum_add(&x, b);
        tu_exact_add(&t, a);
        tu_exact_add(&t, b);
        ck_assert_msg(paro_xsum_round(&x) == a + b, "%a + %a: %a, want %a", a, b,
                      paro_xsum_round(&x), a + b);
        ck_assert_msg(tu_exact_round(&t) == a + b, "%a + %a: oracle %a, want %a", a, b,
                      tu_exact_round(&t), a + b);
    }
}
END_TEST

START_TEST(exact_sums_do_not_depend_on_the_order)
{
    uint64_t rng = 13;
    for (int kind = 0; kind < TU_MASS_KINDS; kind++) {
        const size_t n = 5000;
        double *v = malloc(n * sizeof *v);
        tu_masses(kind, v, n, &rng);
        paro_xsum a, b;
        tu_exact ta;
        paro_xsum_zero(&a);
        paro_xsum_zero(&b);
        tu_exact_zero(&ta);
        for (size_t i = 0; i < n; i++) {
            paro_xsum_add(&a, v[i]);
            paro_xsum_add(&b, v[n - 1 - (i * 7919) % n]); /* 7919 is prime to 5000 */
            tu_exact_add(&ta, v[i]);
        }
        ck_assert_mem_eq(a.limb, b.limb, sizeof a.limb);
        ck_assert_msg(paro_xsum_round(&a) == tu_exact_round(&ta), "kind %d: %a, oracle %a",
                      kind, paro_xsum_round(&a), tu_exact_round(&ta));
        free(v);
    }
}
END_TEST

START_TEST(exact_differences_round_like_the_hardware)
{
    /* a - b in double (a >= b) is the correctly rounded exact difference;
     * far apart exponents borrow through many limbs. */
    uint64_t rng = 11;
    for (int i = 0; i < 200000; i++) {
        const uint64_t ea = tu_rand(&rng) % 2047;
        const uint64_t eb = i % 3 ? tu_rand(&rng) % 2047 : (ea + 2047 - tu_rand(&rng) % 60) % 2047;
        double a = bits_double(ea << 52 | (tu_rand(&rng) >> 12));
        double b = i % 5 == 0 ? a : bits_double(eb << 52 | (tu_rand(&rng) >> 12));
        if (a < b) {
            const double c = a;
            a = b;
            b = c;
        }
        paro_xsum x, y;
        tu_exact tx, ty;
        paro_xsum_zero(&x);
        paro_xsum_zero(&y);
        tu_exact_zero(&tx);
        tu_exact_zero(&ty);
        paro_xsum_add(&x, a);
        paro_xsum_add(&y, b);
        tu_exact_add(&tx, a);
        tu_exact_add(&ty, b);
        ck_assert_int_eq(paro_xsum_cmp(&x, &y), (a > b) - (a < b));
        paro_xsum_sub(&x, &y);
        tu_exact_sub(&tx, &ty);
        ck_assert_msg(paro_xsum_round(&x) == a - b, "%a - %a: %a, want %a", a, b,
                      paro_xsum_round(&x), a - b);
        ck_assert_msg(tu_exact_round(&tx) == a - b, "%a - %a: oracle %a, want %a", a, b,
                      tu_exact_round(&tx), a - b);
    }
}
END_TEST

START_TEST(exact_sums_carry_through_whole_limbs)
{
    /* Twenty doubles of 53 one bits, end to end from 2^-1074 up, make 1060
     * one bits; one more 2^-1074 carries through all of them to 2^-14. */
    paro_xsum x, want;
    tu_exact tx, twant;
    paro_xsum_zero(&x);
    tu_exact_zero(&tx);
    for (int k = 0; k < 20; k++) {
        const double ones = ldexp(0x1p53 - 1.0, 53 * k - 1074);
        paro_xsum_add(&x, ones);
        tu_exact_add(&tx, ones);
    }
    paro_xsum_add(&x, 0x1p-1074);
    tu_exact_add(&tx, 0x1p-1074);
    paro_xsum_zero(&want);
    paro_xsum_add(&want, 0x1p-14);
    tu_exact_zero(&twant);
    tu_exact_add(&twant, 0x1p-14);
    ck_assert_int_eq(paro_xsum_cmp(&x, &want), 0);
    ck_assert_int_eq(tu_exact_cmp(&tx, &twant), 0);
    /* and back: 2^-14 - 2^-1074 borrows through them */
    paro_xsum unit;
    paro_xsum_zero(&unit);
    paro_xsum_add(&unit, 0x1p-1074);
    paro_xsum_sub(&want, &unit);
    paro_xsum_sub(&x, &unit);
    ck_assert_int_eq(paro_xsum_cmp(&x, &want), 0);
    ck_assert_double_eq(paro_xsum_round(&want), 0x1p-14); /* 1060 ones round up */
}
END_TEST

START_TEST(largest_until_counts_kept_mass_exactly)
{
    /* A kept tile of 3 * 2^-53 and candidates 1.5, 1.25, 1: the exact total
     * 3.75 + 3 * 2^-53 rounds to 3.75 + 2^-51; with the share that makes the
     * goal 2.75 + 2^-51, the candidates must bring 2.75 + 2^-53, half a unit
     * of their exponent more than 1.5 + 1.25: the tile 1 crosses, and 2^-53
     * of it is needed.  Scaled by 4, the candidates' unit 2^-50 falls on a
     * limb boundary of paro_xsum, and the half unit below it in the limb
     * underneath. */
    for (int scale = 1; scale <= 4; scale *= 4) {
        const double mass[4] = {scale * 3 * 0x1p-53, scale * 1.5, scale * 1.25, scale * 1.0};
        const uint8_t kept[4] = {1, 0, 0, 0};
        const double total = scale * (3.75 + 0x1p-51), goal = scale * (2.75 + 0x1p-51);
        double share = goal / total;
        for (int step = 0; step < 64 && share * total != goal; step++)
            share = nextafter(share, share * total < goal ? 1.0 : 0.0);
        ck_assert_double_eq(share * total, goal);
        uint64_t scratch[8192];
        ck_assert_uint_le(paro_largest_scratch_bytes(4), sizeof scratch);
        paro_cut cut;
        paro_largest_until(mass, 4, kept, share, &cut, scratch);
        ck_assert_int_eq(cut.kind, PARO_CUT_CROSS);
        ck_assert_double_eq(cut.total, total);
        ck_assert_double_eq(cut.goal, goal);
        ck_assert_uint_eq(cut.whole, 2);
        ck_assert_double_eq(cut.mass, scale * 1.0);
        ck_assert_double_eq(cut.short_by, scale * 0x1p-53);
        ck_assert_uint_eq(cut.ties, 1);
        /* The kept tile alone meets a goal at or below it. */
        paro_largest_until(mass, 4, kept, mass[0] / total, &cut, scratch);
        ck_assert_int_eq(cut.kind, PARO_CUT_MET);
    }
}
END_TEST

/* ---- the block-sparse score against its definition -------------------------- */

static int by_value_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

/* METRICS.md's definition, written out: sort, then walk largest first with
 * exact sums (tu_exact), rounding where a double is wanted. */
static double sparse_reference(const double *mass, size_t n, double recall)
{
    if (n == 0)
        return 0.0;
    double *v = malloc(n * sizeof *v);
    memcpy(v, mass, n * sizeof *v);
    qsort(v, n, sizeof *v, by_value_desc);
    tu_exact total, goal_x, kept, next;
    tu_exact_zero(&total);
    for (size_t i = 0; i < n; i++)
        tu_exact_add(&total, v[i]);
    const double sum = tu_exact_round(&total), goal = recall * sum;
    double score = 0.0; /* the goal out of reach: every tile is needed */
    if (!(sum > 0.0)) {
        score = 0.0; /* no mass */
    } else if (!(goal > 0.0)) {
        score = 1.0; /* the first tile crosses, and none of it is needed */
    } else if (goal <= DBL_MAX) {
        tu_exact_zero(&goal_x);
        tu_exact_add(&goal_x, goal);
        tu_exact_zero(&kept);
        for (size_t k = 0; k < n; k++) {
            next = kept;
            tu_exact_add(&next, v[k]);
            if (tu_exact_cmp(&next, &goal_x) >= 0) {
                tu_exact d = goal_x;
                tu_exact_sub(&d, &kept);
                score = 1.0 - ((double)k + tu_exact_round(&d) / v[k]) / (double)n;
                break;
            }
            kept = next;
        }
    }
    free(v);
    return score;
}

START_TEST(largest_until_carries_between_columns)
{
    /* N equal tiles of mantissa M = 0x1ffc00 * 2^32 + 0xffffffff: per
     * exponent the low and high 32-bit columns of the mantissas sum to
     * N * 0xffffffff and N * 0x1ffc00, and joining them carries (the high
     * column's low 32 bits, shifted, plus the low column, pass 2^64). */
    enum { N = 2049 };
    const uint64_t high = UINT64_C(0x1ffc00);
    ck_assert_uint_ge((N * high) % (UINT64_C(1) << 32), (UINT64_C(1) << 32) - N + 1);
    const double v = ldexp((double)(high << 32 | 0xffffffffu), -52);
    double *mass = malloc(N * sizeof *mass);
    tu_exact t;
    tu_exact_zero(&t);
    for (int i = 0; i < N; i++) {
        mass[i] = v;
        tu_exact_add(&t, v);
    }
    void *scratch = malloc(paro_largest_scratch_bytes(N));
    paro_cut cut;
    paro_largest_until(mass, N, NULL, 0.5, &cut, scratch);
    ck_assert_double_eq(cut.total, tu_exact_round(&t));
    /* high recalls put the crossing beyond 2^64 / M tiles into the run */
    static const double recalls[] = {0.95, 0.9999, 0.99995, 1.0};
    for (int r = 0; r < 4; r++)
        ck_assert_double_eq(paro_metric_sparse(mass, N, recalls[r], scratch),
                            sparse_reference(mass, N, recalls[r]));
    free(mass);
    free(scratch);
}
END_TEST

START_TEST(largest_k_breaks_ties_to_the_lower_index)
{
    /* Candidates (tile 2 is kept): 3 (tile 0), 3 (4), 2 (3), 1 (1), 0 (5). */
    const double mass[6] = {3, 1, 3, 2, 3, 0};
    const uint8_t kept[6] = {0, 0, 1, 0, 0, 0};
    static const struct {
        size_t k;
        double key;
        size_t ties;
        uint8_t keep[6];
    } cases[] = {
        {1, 3, 1, {1, 0, 1, 0, 0, 0}}, {2, 3, 2, {1, 0, 1, 0, 1, 0}},
        {3, 2, 1, {1, 0, 1, 1, 1, 0}}, {5, 0, 1, {1, 1, 1, 1, 1, 1}},
        {99, 0, 1, {1, 1, 1, 1, 1, 1}}, /* beyond the candidates: all of them */
    };
    uint64_t scratch[8192];
    ck_assert_uint_le(paro_largest_scratch_bytes(6), sizeof scratch);
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        uint64_t key, want_key;
        size_t ties;
        paro_largest_k(mass, 6, kept, cases[c].k, &key, &ties, scratch);
        memcpy(&want_key, &cases[c].key, sizeof want_key);
        ck_assert_uint_eq(key, want_key);
        ck_assert_uint_eq(ties, cases[c].ties);
        uint8_t keep[6];
        memcpy(keep, kept, sizeof keep);
        paro_largest_mark(mass, 6, keep, key, ties);
        ck_assert_mem_eq(keep, cases[c].keep, sizeof keep);
    }
    /* k = 0 selects nothing */
    uint64_t key;
    size_t ties;
    paro_largest_k(mass, 6, kept, 0, &key, &ties, scratch);
    ck_assert_uint_eq(key, UINT64_MAX);
    ck_assert_uint_eq(ties, 0);
}
END_TEST

static const char *const mass_kinds[TU_MASS_KINDS] = {
    "skewed", "float", "wide", "narrow", "ties", "zeros", "equal", "subnormal", "huge"};

START_TEST(sparse_matches_its_definition)
{
    /* _i: the kind of masses; every size and recall, including one tile,
     * recall 1, tiny recalls and recalls that cannot be met. */
    static const size_t sizes[] = {1, 2, 3, 10, 257, 1000, 4099};
    static const double recalls[] = {0.95, 0.5, 1.0, 0.999999999, 1e-12, 1e-300, 0.0, 1.5};
    uint64_t rng = 17 + (uint64_t)_i;
    void *scratch = malloc(paro_largest_scratch_bytes(4099));
    double *v = malloc(4099 * sizeof *v);
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++)
        for (int rep = 0; rep < 3; rep++) {
            const size_t n = sizes[si];
            tu_masses(_i, v, n, &rng);
            for (size_t ri = 0; ri < sizeof recalls / sizeof *recalls; ri++) {
                const double got = paro_metric_sparse(v, n, recalls[ri], scratch);
                const double want = sparse_reference(v, n, recalls[ri]);
                ck_assert_msg(got == want, "%s masses, %zu tiles, recall %g: %a, want %a",
                              mass_kinds[_i], n, recalls[ri], got, want);
            }
        }
    free(v);
    free(scratch);
}
END_TEST

START_TEST(sparse_matches_its_definition_at_the_reference_shape)
{
    /* 278 x 278 tiles, as a CogVideoX-5B layer has at blocks of 64. */
    const size_t n = 278 * 278;
    void *scratch = malloc(paro_largest_scratch_bytes(n));
    double *v = malloc(n * sizeof *v);
    uint64_t rng = 23;
    const int kinds[] = {TU_MASS_FLOAT, TU_MASS_SKEWED, TU_MASS_WIDE};
    for (int k = 0; k < 3; k++) {
        tu_masses(kinds[k], v, n, &rng);
        const double got = paro_metric_sparse(v, n, 0.95, scratch);
        const double want = sparse_reference(v, n, 0.95);
        ck_assert_msg(got == want, "%s masses: %a, want %a", mass_kinds[kinds[k]], got, want);
    }
    free(v);
    free(scratch);
}
END_TEST

START_TEST(sparse_does_not_depend_on_the_order)
{
    uint64_t rng = 29;
    const size_t n = 3000;
    void *scratch = malloc(paro_largest_scratch_bytes(n));
    double *v = malloc(n * sizeof *v), *w = malloc(n * sizeof *w);
    for (int kind = 0; kind < TU_MASS_KINDS; kind++) {
        tu_masses(kind, v, n, &rng);
        for (size_t i = 0; i < n; i++)
            w[i] = v[(i * 1009) % n]; /* 1009 is prime to 3000 */
        ck_assert_double_eq(paro_metric_sparse(v, n, 0.9, scratch),
                            paro_metric_sparse(w, n, 0.9, scratch));
    }
    free(v);
    free(w);
    free(scratch);
}
END_TEST

START_TEST(sparse_sums_are_exact)
{
    /* Tiles 1, 2^-53, 2^-53 and seven empty ones; recall 1.  In double,
     * 1 + 2^-53 rounds back to 1, so a running sum in double never reaches
     * the total 1 + 2^-52 and would skip nothing; exactly, the third tile
     * completes it: 3 of 10 tiles are needed. */
    double mass[10] = {0x1p-53, 0, 0, 1.0, 0, 0x1p-53, 0, 0, 0, 0};
    uint64_t scratch[8192];
    ck_assert_uint_le(paro_largest_scratch_bytes(10), sizeof scratch);
    ck_assert_double_eq(paro_metric_sparse(mass, 10, 1.0, scratch), 1.0 - 3.0 / 10.0);
    /* Recall 0.5 of a single tile: half of it.  The goal is a double: half
     * of the smallest subnormal rounds to 0, and then no tile is needed. */
    double one[1] = {1.0};
    ck_assert_double_eq(paro_metric_sparse(one, 1, 0.5, scratch), 0.5);
    one[0] = 0x1p-1074;
    ck_assert_double_eq(paro_metric_sparse(one, 1, 0.5, scratch), 1.0);
}
END_TEST

static Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("scores");
    tcase_add_test(tc, sparse_all_mass_in_one_tile);
    tcase_add_test(tc, sparse_uniform_map);
    tcase_add_test(tc, sparse_interpolates_inside_the_crossing_tile);
    tcase_add_test(tc, sparse_empty_map_scores_zero);
    tcase_add_test(tc, sparse_is_continuous_in_the_masses);
    tcase_add_test(tc, quant_uniform_tiles_score_one);
    tcase_add_test(tc, quant_is_mass_weighted_incoherence);
    tcase_add_test(tc, quant_empty_map_scores_one);
    tcase_add_test(tc, combine_normalises_across_orders);
    tcase_add_test(tc, combine_ignores_invalid_orders);
    tcase_add_test(tc, combine_with_nothing_skippable);
    tcase_add_test(tc, best_breaks_ties_to_the_lowest_index);
    tcase_add_test(tc, margin_is_relative_lead);
    suite_add_tcase(s, tc);
    tc = tcase_create("exact");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, exact_sums_match_integer_sums);
    tcase_add_test(tc, exact_sums_round_like_the_hardware);
    tcase_add_test(tc, exact_sums_do_not_depend_on_the_order);
    tcase_add_test(tc, exact_differences_round_like_the_hardware);
    tcase_add_test(tc, exact_sums_carry_through_whole_limbs);
    tcase_add_test(tc, largest_until_counts_kept_mass_exactly);
    tcase_add_test(tc, largest_until_carries_between_columns);
    tcase_add_test(tc, largest_k_breaks_ties_to_the_lower_index);
    tcase_add_loop_test(tc, sparse_matches_its_definition, 0, TU_MASS_KINDS);
    tcase_add_test(tc, sparse_matches_its_definition_at_the_reference_shape);
    tcase_add_test(tc, sparse_does_not_depend_on_the_order);
    tcase_add_test(tc, sparse_sums_are_exact);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(metrics_suite());
}
