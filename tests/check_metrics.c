/* paro tests — metrics/: the block-sparse, quant and combined scores. */
#include <check.h> /* START_TEST, ck_assert_* */
#include <math.h>  /* fabs */
#include <stdlib.h> /* malloc, qsort */

#include "metrics.h"
#include "testutil.h"

START_TEST(sparse_all_mass_in_one_tile)
{
    /* 10 tiles, one holds everything: recall 0.95 needs 0.95 of that tile,
     * i.e. 0.095 of the tiles; 0.905 can be skipped. */
    double mass[10] = {0, 0, 0, 7, 0, 0, 0, 0, 0, 0};
    uint64_t scratch[4096];
    ck_assert_double_eq_tol(paro_metric_sparse(mass, 10, 0.95, scratch), 1.0 - 0.095, 1e-12);
}
END_TEST

START_TEST(sparse_uniform_map)
{
    /* Uniform: recall r needs exactly the fraction r of the tiles. */
    double mass[8];
    uint64_t scratch[4096];
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
    uint64_t scratch[4096];
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
    uint64_t scratch[4096];
    ck_assert_double_eq(paro_metric_sparse(mass, 3, 0.95, scratch), 0.0);
    ck_assert_double_eq(paro_metric_sparse(mass, 0, 0.95, scratch), 0.0);
}
END_TEST

START_TEST(sparse_is_continuous_in_the_masses)
{
    /* A tiny change of the masses moves the score a tiny amount (no jumps
     * from tile counting), which keeps CPU/GPU choices stable. */
    double a[5] = {5, 3, 1, 0.6, 0.4}, b[5] = {5, 3, 1 + 1e-9, 0.6, 0.4 - 1e-9};
    uint64_t s[4096];
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

static const double *sort_values;

static int by_value_desc_then_index(const void *a, const void *b)
{
    uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    if (sort_values[i] != sort_values[j])
        return sort_values[i] > sort_values[j] ? -1 : 1;
    return (i > j) - (i < j);
}

START_TEST(sort_desc_matches_a_comparison_sort)
{
    /* Random masses with many ties and zeros, of sizes around the radix
     * digit; the order must equal a comparison sort's, ties by index. */
    static const size_t sizes[] = {0, 1, 2, 7, 100, 2047, 2048, 2049, 50000};
    uint64_t rng = 3;
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        size_t n = sizes[si];
        double *v = malloc((n + 1) * sizeof *v);
        uint32_t *got = malloc((n + 1) * sizeof *got), *want = malloc((n + 1) * sizeof *want);
        void *scratch = malloc(paro_sort_scratch_bytes(n));
        for (size_t i = 0; i < n; i++) {
            uint64_t r = tu_rand(&rng);
            v[i] = r % 5 == 0 ? 0.0 : r % 7 == 0 ? 0.25 : tu_uniform(&rng) * 64.0;
            want[i] = (uint32_t)i;
        }
        sort_values = v;
        qsort(want, n, sizeof *want, by_value_desc_then_index);
        paro_sort_desc(v, n, got, scratch);
        ck_assert_mem_eq(got, want, n * sizeof *got);
        free(v);
        free(got);
        free(want);
        free(scratch);
    }
}
END_TEST

static Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("scores");
    tcase_add_test(tc, sort_desc_matches_a_comparison_sort);
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
    return s;
}

int main(void)
{
    return tu_run_suite(metrics_suite());
}
