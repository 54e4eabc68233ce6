/* paro tests — calib/: orders, tilings, the CPU tile-stats reference against
 * brute force, block statistics, masks, order choice, synth. */
#include <check.h>  /* START_TEST, ck_assert_* */
#include <float.h>  /* DBL_MAX */
#include <math.h>   /* exp, fabs, INFINITY, NAN */
#include <stdlib.h> /* malloc, free */
#include <string.h> /* memcmp */

#include "calibrate.h"
#include "dtype.h"
#include "mask.h"
#include "order.h"
#include "select.h"
#include "stats.h"
#include "synth.h"
#include "testutil.h"
#include "tile_stats.h"

/* ---- orders ----------------------------------------------------------- */

/* Permuted position of grid token (f, h, w) in an order, written directly
 * from the definition: nest the axes outermost to innermost. */
static uint32_t formula_position(int order, const uint32_t g[3], uint32_t base, uint32_t f,
                                 uint32_t h, uint32_t w)
{
    const uint32_t c[3] = {f, h, w};
    int a0 = paro_order_axis(order, 0), a1 = paro_order_axis(order, 1),
        a2 = paro_order_axis(order, 2);
    return base + (c[a0] * g[a1] + c[a1]) * g[a2] + c[a2];
}

static void check_permutations(const uint32_t g[3], uint32_t text, int text_last)
{
    const uint32_t visual = g[0] * g[1] * g[2], n = visual + text;
    const uint32_t base = text_last ? 0 : text;
    uint32_t *perm = malloc(n * sizeof *perm), *pos = malloc(n * sizeof *pos);
    for (int o = 0; o < PARO_N_ORDERS; o++) {
        paro_order_permutation(o, g, text, text_last, perm);
        paro_order_positions(o, g, text, text_last, pos);
        for (uint32_t f = 0; f < g[0]; f++)
            for (uint32_t h = 0; h < g[1]; h++)
                for (uint32_t w = 0; w < g[2]; w++) {
                    uint32_t capture = base + f * g[1] * g[2] + h * g[2] + w;
                    uint32_t p = formula_position(o, g, base, f, h, w);
                    ck_assert_uint_eq(perm[p], capture);
                    ck_assert_uint_eq(pos[capture], p);
                }
        /* Text stays where it is. */
        uint32_t t0 = text_last ? visual : 0;
        for (uint32_t t = 0; t < text; t++) {
            ck_assert_uint_eq(perm[t0 + t], t0 + t);
            ck_assert_uint_eq(pos[t0 + t], t0 + t);
        }
    }
    free(perm);
    free(pos);
}

START_TEST(permutations_match_formula_on_odd_grids)
{
    const uint32_t g[3] = {3, 5, 7};
    check_permutations(g, 5, 0);
    check_permutations(g, 5, 1);
    check_permutations(g, 0, 0);
    const uint32_t g2[3] = {1, 24, 32};
    check_permutations(g2, 3, 0);
    const uint32_t g3[3] = {13, 2, 1};
    check_permutations(g3, 7, 1);
}
END_TEST

START_TEST(order_names_round_trip)
{
    for (int o = 0; o < PARO_N_ORDERS; o++)
        ck_assert_int_eq(paro_order_parse(paro_order_name(o)), o);
    ck_assert_int_eq(paro_order_parse("fhw"), -1);
    ck_assert_int_eq(paro_order_parse("FHWW"), -1);
    ck_assert_str_eq(paro_order_name(PARO_ORDER_HWF), "HWF");
}
END_TEST

/* Equivalent orders are exactly those with equal permutations; the
 * canonical one is the lowest code among them. */
START_TEST(canonical_orders_are_permutation_classes)
{
    static const uint32_t grids[][3] = {{3, 5, 7}, {1, 24, 32}, {4, 1, 6}, {5, 6, 1},
                                        {1, 1, 9}, {1, 1, 1},   {2, 2, 2}};
    for (size_t gi = 0; gi < sizeof grids / sizeof *grids; gi++) {
        const uint32_t *g = grids[gi];
        const uint32_t n = g[0] * g[1] * g[2] + 2;
        uint32_t *perm[PARO_N_ORDERS];
        int canonical[PARO_N_ORDERS];
        paro_order_canonical(g, canonical);
        for (int o = 0; o < PARO_N_ORDERS; o++) {
            perm[o] = malloc(n * sizeof(uint32_t));
            paro_order_permutation(o, g, 2, 0, perm[o]);
        }
        for (int a = 0; a < PARO_N_ORDERS; a++) {
            int lowest_equal = a;
            for (int b = 0; b < a; b++)
                if (!memcmp(perm[a], perm[b], n * sizeof(uint32_t))) {
                    lowest_equal = b;
                    break;
                }
            ck_assert_msg(canonical[a] == lowest_equal, "grid %ux%ux%u order %s: %d vs %d",
                          g[0], g[1], g[2], paro_order_name(a), canonical[a], lowest_equal);
        }
        for (int o = 0; o < PARO_N_ORDERS; o++)
            free(perm[o]);
    }
    /* An image (F = 1): two classes, {FHW, HFW, HWF} and {FWH, WFH, WHF}. */
    int c[PARO_N_ORDERS];
    paro_order_canonical((uint32_t[3]){1, 24, 32}, c);
    ck_assert_int_eq(c[PARO_ORDER_HFW], PARO_ORDER_FHW);
    ck_assert_int_eq(c[PARO_ORDER_HWF], PARO_ORDER_FHW);
    ck_assert_int_eq(c[PARO_ORDER_WFH], PARO_ORDER_FWH);
    ck_assert_int_eq(c[PARO_ORDER_WHF], PARO_ORDER_FWH);
}
END_TEST

/* ---- tile stats against brute force ------------------------------------ */

typedef struct brute_case {
    uint32_t grid[3], text, d, bq, bk;
    int text_last;
    double spread; /* std of q and k elements: larger means sharper attention */
} brute_case;

static const brute_case brute_cases[] = {
    {{3, 5, 7}, 5, 16, 16, 8, 0, 1.0},   /* odd grid, text first, partial blocks */
    {{3, 5, 7}, 5, 16, 16, 8, 1, 1.0},   /* text last */
    {{1, 6, 9}, 0, 8, 7, 7, 0, 2.0},     /* image, no text, sharp */
    {{2, 3, 4}, 3, 4, 5, 3, 0, 0.5},     /* tiny blocks */
    {{4, 4, 4}, 2, 32, 64, 64, 0, 1.0},  /* one block covers everything */
};

START_TEST(tile_stats_match_brute_force)
{
    const brute_case *bc = &brute_cases[_i];
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_tiling t;
    ck_assert_int_eq(paro_tiling_init(&t, bc->grid, bc->text, bc->text_last, bc->bq, bc->bk, &ei),
                     PARO_OK);
    const uint32_t n = t.n_tokens, d = bc->d;
    const double scale = 1.0 / sqrt((double)d);
    uint64_t rng = 1000 + (uint64_t)_i;
    float *q = malloc((size_t)n * d * sizeof *q), *k = malloc((size_t)n * d * sizeof *k);
    for (size_t i = 0; i < (size_t)n * d; i++) {
        q[i] = (float)(bc->spread * tu_normal(&rng));
        k[i] = (float)(bc->spread * tu_normal(&rng));
    }
    const size_t nt = paro_tiling_tiles(&t);
    double *mass = malloc(t.n_slots * nt * sizeof *mass), *peak = malloc(t.n_slots * nt * sizeof *peak);
    void *scratch = malloc(paro_tile_stats_scratch_bytes(&t, d));
    paro_tile_stats_cpu(&t, q, k, d, scale, mass, peak, scratch);

    /* The full map in fp64, straight from the definition. */
    double *p = malloc((size_t)n * n * sizeof *p);
    for (uint32_t i = 0; i < n; i++) {
        double mx = -INFINITY, sum = 0.0;
        for (uint32_t j = 0; j < n; j++) {
            double s = 0.0;
            for (uint32_t c = 0; c < d; c++)
                s += (double)q[(size_t)i * d + c] * (double)k[(size_t)j * d + c];
            p[(size_t)i * n + j] = s * scale;
            if (s * scale > mx)
                mx = s * scale;
        }
        for (uint32_t j = 0; j < n; j++) {
            p[(size_t)i * n + j] = exp(p[(size_t)i * n + j] - mx);
            sum += p[(size_t)i * n + j];
        }
        for (uint32_t j = 0; j < n; j++)
            p[(size_t)i * n + j] /= sum;
    }
    uint32_t *pos = malloc(n * sizeof *pos);
    double *bm = calloc(nt, sizeof *bm), *bp = calloc(nt, sizeof *bp);
    for (int o = 0; o < PARO_N_ORDERS; o++) {
        int slot = t.slot_of_order[o];
        paro_order_positions(o, bc->grid, bc->text, bc->text_last, pos);
        memset(bm, 0, nt * sizeof *bm);
        memset(bp, 0, nt * sizeof *bp);
        for (uint32_t i = 0; i < n; i++)
            for (uint32_t j = 0; j < n; j++) {
                size_t tile = (size_t)(pos[i] / bc->bq) * t.nk + pos[j] / bc->bk;
                double v = p[(size_t)i * n + j];
                bm[tile] += v;
                if (v > bp[tile])
                    bp[tile] = v;
            }
        double total = 0.0;
        for (size_t tile = 0; tile < nt; tile++) {
            double got_m = mass[slot * nt + tile], got_p = peak[slot * nt + tile];
            ck_assert_msg(fabs(got_m - bm[tile]) <= 1e-6 * bm[tile] + 1e-300,
                          "case %d order %s tile %zu: mass %.17g vs brute force %.17g", _i,
                          paro_order_name(o), tile, got_m, bm[tile]);
            ck_assert_msg(fabs(got_p - bp[tile]) <= 1e-6 * bp[tile] + 1e-300,
                          "case %d order %s tile %zu: peak %.17g vs brute force %.17g", _i,
                          paro_order_name(o), tile, got_p, bp[tile]);
            total += got_m;
        }
        /* Every row sums to one. */
        ck_assert_double_eq_tol(total, (double)n, 1e-9 * n);
    }
    free(q);
    free(k);
    free(mass);
    free(peak);
    free(scratch);
    free(p);
    free(pos);
    free(bm);
    free(bp);
    paro_tiling_free(&t);
}
END_TEST

START_TEST(tiling_areas_and_text_blocks)
{
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_tiling t;
    /* 226 text tokens first in blocks of 64: blocks 0..3 hold text (block 3
     * is mixed: 34 text, 30 visual); CogVideoX's 17,776 tokens make 278
     * blocks, the last one of 48. */
    ck_assert_int_eq(paro_tiling_init(&t, (uint32_t[3]){13, 30, 45}, 226, 0, 64, 64, &ei),
                     PARO_OK);
    ck_assert_uint_eq(t.n_tokens, 17776);
    ck_assert_uint_eq(t.nq, 278);
    ck_assert_uint_eq(t.nk, 278);
    for (uint32_t b = 0; b < t.nq; b++)
        ck_assert_int_eq(paro_tiling_qblock_has_text(&t, b), b < 4);
    ck_assert_double_eq(t.area[0], 64.0 * 64.0);
    ck_assert_double_eq(t.area[277], 64.0 * 48.0);
    ck_assert_double_eq(t.area[278 * 278 - 1], 48.0 * 48.0);
    ck_assert_int_eq(t.n_slots, 6);
    paro_tiling_free(&t);
    /* Text last. */
    ck_assert_int_eq(paro_tiling_init(&t, (uint32_t[3]){2, 3, 4}, 5, 1, 4, 4, &ei), PARO_OK);
    ck_assert_uint_eq(t.nq, 8); /* 29 tokens */
    for (uint32_t b = 0; b < t.nq; b++)
        ck_assert_int_eq(paro_tiling_kblock_has_text(&t, b), b >= 6); /* text at 24..28 */
    paro_tiling_free(&t);
    /* Too many blocks. */
    ck_assert_int_eq(paro_tiling_init(&t, (uint32_t[3]){300, 300, 1}, 0, 0, 1, 1, &ei),
                     PARO_ERR_LIMIT);
    paro_tiling_free(&t);
}
END_TEST

/* ---- block statistics --------------------------------------------------- */

START_TEST(stats_merge_equals_adding_all)
{
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_block_stats all, part1, part2;
    const uint32_t heads = 3, buckets = 2, slots = 4, nq = 3, nk = 5;
    ck_assert_int_eq(paro_block_stats_init(&all, heads, buckets, slots, nq, nk, &ei), PARO_OK);
    ck_assert_int_eq(paro_block_stats_init(&part1, heads, buckets, slots, nq, nk, &ei), PARO_OK);
    ck_assert_int_eq(paro_block_stats_init(&part2, heads, buckets, slots, nq, nk, &ei), PARO_OK);
    const size_t n = (size_t)slots * nq * nk;
    double mass[60], peak[60];
    uint64_t rng = 7;
    for (int sample = 0; sample < 2; sample++)
        for (uint32_t b = 0; b < buckets; b++)
            for (uint32_t h = 0; h < heads; h++) {
                for (size_t i = 0; i < n; i++) {
                    mass[i] = tu_uniform(&rng);
                    peak[i] = tu_uniform(&rng);
                }
                paro_block_stats_add(&all, b, h, mass, peak);
                paro_block_stats_add(sample == 0 ? &part1 : &part2, b, h, mass, peak);
            }
    ck_assert_int_eq(paro_block_stats_merge(&part1, &part2, &ei), PARO_OK);
    ck_assert_mem_eq(part1.mass, all.mass, (size_t)buckets * heads * n * sizeof(double));
    /* Peaks are summed over buckets too, so four terms meet in another order
     * there: equal up to rounding. */
    for (size_t i = 0; i < (size_t)heads * n; i++)
        ck_assert_double_eq_tol(part1.peak[i], all.peak[i], 1e-12 * all.peak[i]);
    for (size_t i = 0; i < (size_t)buckets * heads; i++)
        ck_assert_uint_eq(part1.count[i], 2);
    /* Shapes must agree. */
    paro_block_stats other;
    ck_assert_int_eq(paro_block_stats_init(&other, heads, buckets, slots, nq, nk + 1, &ei),
                     PARO_OK);
    ck_assert_int_eq(paro_block_stats_merge(&part1, &other, &ei), PARO_ERR_USAGE);
    paro_block_stats_free(&other);
    paro_block_stats_free(&all);
    paro_block_stats_free(&part1);
    paro_block_stats_free(&part2);
}
END_TEST

/* Sums lent as f32 (a GPU backend's) score exactly as the same values held
 * as doubles, one bucket and several; merging them is refused. */
START_TEST(stats_lent_as_f32_score_like_doubles)
{
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_tiling t;
    ck_assert_int_eq(paro_tiling_init(&t, (uint32_t[3]){2, 3, 5}, 3, 0, 4, 4, &ei), PARO_OK);
    const uint32_t heads = 2, slots = (uint32_t)t.n_slots;
    const size_t nt = paro_tiling_tiles(&t);
    for (uint32_t buckets = 1; buckets <= 3; buckets += 2) {
        paro_block_stats wide, lent;
        ck_assert_int_eq(paro_block_stats_init(&wide, heads, buckets, slots, t.nq, t.nk, &ei),
                         PARO_OK);
        ck_assert_int_eq(paro_block_stats_init(&lent, heads, buckets, slots, t.nq, t.nk, &ei),
                         PARO_OK);
        const size_t n_mass = (size_t)buckets * heads * slots * nt, n_peak = heads * slots * nt;
        float *mass32 = malloc(n_mass * sizeof *mass32), *peak32 = malloc(n_peak * sizeof *peak32);
        uint64_t rng = 11 + buckets;
        for (size_t i = 0; i < n_mass; i++)
            wide.mass[i] = mass32[i] = (float)(tu_uniform(&rng) * tu_uniform(&rng));
        for (size_t i = 0; i < n_peak; i++)
            wide.peak[i] = peak32[i] = (float)tu_uniform(&rng);
        lent.mass32 = mass32;
        lent.peak32 = peak32;
        void *scratch = malloc(paro_score_scratch_bytes(nt));
        double *room = malloc(nt * sizeof *room);
        for (uint32_t h = 0; h < heads; h++) {
            paro_head_choice a, b;
            paro_score_head(&t, &wide, h, 0.5, 0.95, &a, scratch);
            paro_score_head(&t, &lent, h, 0.5, 0.95, &b, scratch);
            ck_assert_int_eq(a.order, b.order);
            ck_assert_mem_eq(a.scores, b.scores, sizeof a.scores);
            for (uint32_t bk = 0; bk < buckets; bk++)
                ck_assert_mem_eq(paro_block_stats_mass_row(&lent, bk, h, 1, room),
                                 paro_block_stats_mass(&wide, bk, h, 1), nt * sizeof(double));
        }
        ck_assert_int_eq(paro_block_stats_merge(&wide, &lent, &ei), PARO_ERR_USAGE);
        paro_block_stats_zero(&lent, 1); /* back to its own doubles */
        ck_assert_ptr_null(lent.mass32);
        free(scratch);
        free(room);
        free(mass32);
        free(peak32);
        paro_block_stats_free(&wide);
        paro_block_stats_free(&lent);
    }
    paro_tiling_free(&t);
}
END_TEST

/* ---- masks ------------------------------------------------------------- */

/* 2 text tokens first + grid 1x2x3: 8 tokens in blocks of 2 -> 4x4 tiles;
 * query/key block 0 holds the text. */
static void small_tiling(paro_tiling *t)
{
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_tiling_init(t, (uint32_t[3]){1, 2, 3}, 2, 0, 2, 2, &ei), PARO_OK);
}

static const double small_mass[16] = {
    /* row 0 (text) */ 0.5, 0.1, 0.1, 0.1,
    /* row 1 */ 0.2, 0.9, 0.05, 0.0,
    /* row 2 */ 0.1, 0.05, 0.7, 0.3,
    /* row 3 */ 0.1, 0.0, 0.01, 0.02,
};

START_TEST(mask_density_keeps_text_then_largest)
{
    paro_tiling t;
    small_tiling(&t);
    uint8_t keep[16];
    uint64_t scratch[8192]; /* >= paro_mask_scratch_bytes(16) */
    ck_assert_uint_le(paro_mask_scratch_bytes(16), sizeof scratch);
    double density, recall;
    paro_mask_target tg = {PARO_TARGET_DENSITY, 0.5, 1, 0};
    paro_build_mask(&t, small_mass, &tg, keep, &density, &recall, scratch);
    /* Text: row 0 and column 0 = 7 tiles; then the largest: (1,1) 0.9. */
    static const uint8_t want[16] = {1, 1, 1, 1, 1, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0};
    ck_assert_mem_eq(keep, want, 16);
    ck_assert_double_eq_tol(density, 0.5, 1e-12);
    /* Row 2 was left without a non-text tile but column 0 covers it; row 3 too. */
    paro_mask_target no_text = {PARO_TARGET_DENSITY, 0.25, 0, 0};
    paro_build_mask(&t, small_mass, &no_text, keep, &density, &recall, scratch);
    /* 4 tiles: 0.9 (1,1), 0.7 (2,2), 0.5 (0,0), 0.3 (2,3); row 3 gets its max (3,0). */
    static const uint8_t want2[16] = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0};
    ck_assert_mem_eq(keep, want2, 16);
    ck_assert_double_eq_tol(density, 5.0 / 16, 1e-12);
    double total = 0;
    for (int i = 0; i < 16; i++)
        total += small_mass[i];
    ck_assert_double_eq_tol(recall, (0.9 + 0.7 + 0.5 + 0.3 + 0.1) / total, 1e-12);
    paro_tiling_free(&t);
}
END_TEST

START_TEST(mask_recall_and_threshold)
{
    paro_tiling t;
    small_tiling(&t);
    uint8_t keep[16];
    uint64_t scratch[8192]; /* >= paro_mask_scratch_bytes(16) */
    ck_assert_uint_le(paro_mask_scratch_bytes(16), sizeof scratch);
    double density, recall, total = 0;
    for (int i = 0; i < 16; i++)
        total += small_mass[i];
    /* Recall 0.6 without text forcing: 0.9 + 0.7 + 0.5 = 2.1 of 3.23 < 0.6*3.23
     * = 1.938?  0.9 + 0.7 = 1.6 < 1.938, + 0.5 = 2.1 >= 1.938: three tiles. */
    paro_mask_target tg = {PARO_TARGET_RECALL, 0.6, 0, 0};
    paro_build_mask(&t, small_mass, &tg, keep, &density, &recall, scratch);
    ck_assert_double_ge(recall, 0.6);
    /* plus row 3's largest */
    ck_assert_double_eq_tol(density, 4.0 / 16, 1e-12);
    /* Recall 1 keeps every tile with mass, and only those (+ nothing else). */
    tg.value = 1.0;
    paro_build_mask(&t, small_mass, &tg, keep, &density, &recall, scratch);
    ck_assert_double_eq_tol(recall, 1.0, 1e-12);
    ck_assert_double_eq_tol(density, 14.0 / 16, 1e-12);
    /* Threshold on mass per element (tile area 4): >= 0.1 means mass >= 0.4. */
    paro_mask_target th = {PARO_TARGET_THRESHOLD, 0.1, 0, 0};
    paro_build_mask(&t, small_mass, &th, keep, &density, &recall, scratch);
    static const uint8_t want[16] = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0};
    ck_assert_mem_eq(keep, want, 16);
    (void)total;
    paro_tiling_free(&t);
}
END_TEST

/* keep_last: the last query block row and key block column are kept first,
 * as the text tiles are, and count towards the density target. */
START_TEST(mask_keep_last_counts_towards_the_target)
{
    paro_tiling t;
    small_tiling(&t);
    uint8_t keep[16];
    uint64_t scratch[8192]; /* >= paro_mask_scratch_bytes(16) */
    double density, recall, total = 0;
    for (int i = 0; i < 16; i++)
        total += small_mass[i];
    /* text (row 0, column 0) and last (row 3, column 3): 12 tiles, more than
     * the 8 of density 0.5, so nothing else */
    paro_mask_target tg = {PARO_TARGET_DENSITY, 0.5, 1, 1};
    paro_build_mask(&t, small_mass, &tg, keep, &density, &recall, scratch);
    static const uint8_t want[16] = {1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1, 1};
    ck_assert_mem_eq(keep, want, 16);
    ck_assert_double_eq_tol(density, 12.0 / 16, 1e-12);
    /* without text: row 3 and column 3 are 7 tiles; the 8th is the largest,
     * (1,1) 0.9 */
    paro_mask_target last = {PARO_TARGET_DENSITY, 0.5, 0, 1};
    paro_build_mask(&t, small_mass, &last, keep, &density, &recall, scratch);
    static const uint8_t want2[16] = {0, 0, 0, 1, 0, 1, 0, 1, 0, 0, 0, 1, 1, 1, 1, 1};
    ck_assert_mem_eq(keep, want2, 16);
    ck_assert_double_eq_tol(density, 8.0 / 16, 1e-12);
    ck_assert_double_eq_tol(recall, (0.1 + 0.9 + 0.0 + 0.3 + 0.1 + 0.0 + 0.01 + 0.02) / total,
                            1e-12);
    /* recall and threshold targets keep them too */
    const paro_mask_target others[2] = {{PARO_TARGET_RECALL, 0.6, 0, 1},
                                        {PARO_TARGET_THRESHOLD, 0.1, 0, 1}};
    for (int o = 0; o < 2; o++) {
        paro_build_mask(&t, small_mass, &others[o], keep, &density, &recall, scratch);
        for (uint32_t i = 0; i < 4; i++)
            ck_assert_msg(keep[3 * 4 + i] && keep[i * 4 + 3],
                          "target %d: tile %u of the last row or column is dropped", o, i);
        if (o == 0)
            ck_assert_double_ge(recall, 0.6);
    }
    paro_tiling_free(&t);
}
END_TEST

START_TEST(mask_every_query_block_keeps_a_tile)
{
    paro_tiling t;
    small_tiling(&t);
    uint8_t keep[16];
    uint64_t scratch[8192]; /* >= paro_mask_scratch_bytes(16) */
    ck_assert_uint_le(paro_mask_scratch_bytes(16), sizeof scratch);
    double density, recall;
    paro_mask_target tg = {PARO_TARGET_DENSITY, 0.0, 0, 0};
    paro_build_mask(&t, small_mass, &tg, keep, &density, &recall, scratch);
    for (uint32_t a = 0; a < 4; a++) {
        int any = 0;
        for (uint32_t b = 0; b < 4; b++)
            any |= keep[a * 4 + b];
        ck_assert_msg(any, "query block %u has no tile", a);
    }
    ck_assert_double_eq_tol(density, 4.0 / 16, 1e-12);
    paro_tiling_free(&t);
}
END_TEST

/* ---- masks against references ------------------------------------------ */

/* The mask builder as it was before selection replaced its sort, kept here
 * as the oracle: its density and threshold masks are the definition, and
 * must come out the same, bit for bit.  Its recall target summed in double;
 * with exact_recall the sums are exact (tu_exact), as mask.h now defines. */
#define OLD_RADIX_BITS 11
#define OLD_RADIX (1u << OLD_RADIX_BITS)

static void old_sort_desc(const double *values, size_t n, uint32_t *order)
{
    uint64_t *key = malloc((2 * n + 1) * sizeof *key), *key_tmp = key + n;
    uint32_t *idx_tmp = malloc((n + 1) * sizeof *idx_tmp);
    size_t *count = malloc(OLD_RADIX * sizeof *count);
    for (size_t i = 0; i < n; i++) {
        uint64_t bits;
        memcpy(&bits, &values[i], sizeof bits);
        key[i] = ~bits;
        order[i] = (uint32_t)i;
    }
    for (unsigned shift = 0; shift < 64; shift += OLD_RADIX_BITS) {
        memset(count, 0, OLD_RADIX * sizeof *count);
        for (size_t i = 0; i < n; i++)
            count[(key[i] >> shift) & (OLD_RADIX - 1)]++;
        if (n && count[(key[0] >> shift) & (OLD_RADIX - 1)] == n)
            continue;
        size_t sum = 0;
        for (unsigned d = 0; d < OLD_RADIX; d++) {
            size_t c = count[d];
            count[d] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++) {
            size_t at = count[(key[i] >> shift) & (OLD_RADIX - 1)]++;
            key_tmp[at] = key[i];
            idx_tmp[at] = order[i];
        }
        memcpy(key, key_tmp, n * sizeof *key);
        memcpy(order, idx_tmp, n * sizeof *order);
    }
    free(key);
    free(idx_tmp);
    free(count);
}

static uint64_t old_tiles_for_density(double d, uint64_t nt)
{
    double x = d * (double)nt;
    uint64_t k = (uint64_t)x;
    if (x - (double)k > 1e-9)
        k++;
    return k > nt ? nt : k;
}

static void old_build_mask(const paro_tiling *t, const double *mass, const paro_mask_target *tg,
                           uint8_t *keep, double *density, double *recall, int exact_recall)
{
    const size_t nt = paro_tiling_tiles(t);
    uint32_t *scratch = malloc((nt + 1) * sizeof *scratch);
    memset(keep, 0, nt);
    size_t kept = 0;
    double kept_mass = 0.0, total = 0.0;
    tu_exact kept_x, total_x, goal_x;
    tu_exact_zero(&kept_x);
    tu_exact_zero(&total_x);
    for (size_t i = 0; i < nt; i++) {
        total += mass[i];
        tu_exact_add(&total_x, mass[i]);
    }
    for (uint32_t a = 0; a < t->nq; a++) {
        int row = (tg->keep_text && paro_tiling_qblock_has_text(t, a)) ||
                  (tg->keep_last && a + 1 == t->nq);
        for (uint32_t b = 0; b < t->nk; b++)
            if (row || (tg->keep_text && paro_tiling_kblock_has_text(t, b)) ||
                (tg->keep_last && b + 1 == t->nk)) {
                size_t i = (size_t)a * t->nk + b;
                keep[i] = 1;
                kept++;
                kept_mass += mass[i];
                tu_exact_add(&kept_x, mass[i]);
            }
    }
    old_sort_desc(mass, nt, scratch);
    if (tg->mode == PARO_TARGET_DENSITY) {
        uint64_t want = old_tiles_for_density(tg->value, nt);
        for (size_t r = 0; r < nt && kept < want; r++)
            if (!keep[scratch[r]]) {
                keep[scratch[r]] = 1;
                kept++;
            }
    } else if (tg->mode == PARO_TARGET_RECALL && !exact_recall) {
        double goal = tg->value * total;
        for (size_t r = 0; r < nt && kept_mass < goal; r++) {
            uint32_t i = scratch[r];
            if (!(mass[i] > 0.0))
                break;
            if (!keep[i]) {
                keep[i] = 1;
                kept++;
                kept_mass += mass[i];
            }
        }
    } else if (tg->mode == PARO_TARGET_RECALL) {
        /* total rounded once, goal = R * total; add while kept < goal */
        const double goal = tg->value * tu_exact_round(&total_x);
        const int finite = goal <= DBL_MAX;
        tu_exact_zero(&goal_x);
        if (finite && goal > 0.0)
            tu_exact_add(&goal_x, goal);
        for (size_t r = 0; r < nt && goal > 0.0 && (!finite || tu_exact_cmp(&kept_x, &goal_x) < 0);
             r++) {
            uint32_t i = scratch[r];
            if (!(mass[i] > 0.0))
                break;
            if (!keep[i]) {
                keep[i] = 1;
                tu_exact_add(&kept_x, mass[i]);
            }
        }
    } else {
        for (size_t i = 0; i < nt; i++)
            if (!keep[i] && mass[i] / t->area[i] >= tg->value)
                keep[i] = 1;
    }
    for (uint32_t a = 0; a < t->nq; a++) {
        const size_t row = (size_t)a * t->nk;
        int any = 0;
        size_t best = row;
        for (uint32_t b = 0; b < t->nk; b++) {
            any |= keep[row + b];
            if (mass[row + b] > mass[best])
                best = row + b;
        }
        if (!any)
            keep[best] = 1;
    }
    paro_mask_measure(t, mass, keep, density, recall);
    free(scratch);
}

/* Tilings with text first and last, none, partial blocks, one-token blocks. */
static const struct mask_shape {
    uint32_t grid[3], text;
    int text_last;
    uint32_t block_q, block_k;
} mask_shapes[] = {
    {{1, 2, 3}, 2, 0, 2, 2},  {{2, 3, 5}, 5, 0, 4, 3},  {{3, 4, 5}, 7, 1, 5, 8},
    {{1, 1, 40}, 0, 0, 8, 8}, {{2, 5, 7}, 3, 0, 1, 1},  {{4, 6, 8}, 16, 1, 7, 16},
    {{1, 3, 3}, 0, 0, 9, 9},  {{2, 2, 9}, 30, 0, 6, 5},
};
#define N_MASK_SHAPES (sizeof mask_shapes / sizeof *mask_shapes)

/* Masses for the masks: the kinds of tu_masses, and (kind TU_MASS_KINDS)
 * bit patterns outside the domain, -0.0, +inf and NaN among ordinary ones,
 * for which the density target must still match its old sort. */
static void mask_masses(int kind, double *v, size_t n, uint64_t *rng)
{
    if (kind < TU_MASS_KINDS) {
        tu_masses(kind, v, n, rng);
        return;
    }
    static const double odd[4] = {-0.0, INFINITY, NAN, 0.0};
    for (size_t i = 0; i < n; i++) {
        uint64_t r = tu_rand(rng);
        v[i] = r % 3 == 0 ? odd[(r >> 8) % 4] : tu_uniform(rng);
    }
}

static void assert_masks_equal(const paro_tiling *t, const double *mass,
                               const paro_mask_target *tg, int exact_recall, const char *what)
{
    const size_t nt = paro_tiling_tiles(t);
    uint8_t *got = malloc(nt), *want = malloc(nt);
    void *scratch = malloc(paro_mask_scratch_bytes(nt));
    double gd, gr, wd, wr;
    paro_build_mask(t, mass, tg, got, &gd, &gr, scratch);
    old_build_mask(t, mass, tg, want, &wd, &wr, exact_recall);
    size_t first = 0;
    while (first < nt && got[first] == want[first])
        first++;
    ck_assert_msg(first == nt,
                  "%s: %ux%u tiles, target %d %g, text %d, last %d: tile %zu differs (%d, want %d)",
                  what, t->nq, t->nk, (int)tg->mode, tg->value, tg->keep_text, tg->keep_last,
                  first, first < nt ? got[first] : 0, first < nt ? want[first] : 0);
    ck_assert_msg(memcmp(&gd, &wd, sizeof gd) == 0 && memcmp(&gr, &wr, sizeof gr) == 0,
                  "%s: density %a recall %a, want %a %a", what, gd, gr, wd, wr);
    free(got);
    free(want);
    free(scratch);
}

START_TEST(mask_density_and_threshold_are_unchanged)
{
    /* _i: the shape.  Every kind of masses, text and last kept or not, and
     * densities from 0 to 1, at and between whole tiles. */
    paro_tiling t;
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    const struct mask_shape *sh = &mask_shapes[_i];
    ck_assert_int_eq(paro_tiling_init(&t, sh->grid, sh->text, sh->text_last, sh->block_q,
                                      sh->block_k, &ei),
                     PARO_OK);
    const size_t nt = paro_tiling_tiles(&t);
    double *mass = malloc(nt * sizeof *mass);
    uint64_t rng = 31 + (uint64_t)_i;
    const double densities[] = {0.0, 1.0, 0.25, 0.5, 1.0 / (double)nt, 3.0 / (double)nt,
                                0.999, 0.1, 0.7};
    for (int kind = 0; kind <= TU_MASS_KINDS; kind++)
        for (int rep = 0; rep < 3; rep++) {
            mask_masses(kind, mass, nt, &rng);
            for (int flags = 0; flags < 4; flags++) {
                for (size_t d = 0; d < sizeof densities / sizeof *densities; d++) {
                    paro_mask_target tg = {PARO_TARGET_DENSITY, densities[d], flags & 1,
                                           flags >> 1};
                    assert_masks_equal(&t, mass, &tg, 0, "density");
                }
                paro_mask_target th = {PARO_TARGET_THRESHOLD, tu_uniform(&rng) * 0.02,
                                       flags & 1, flags >> 1};
                assert_masks_equal(&t, mass, &th, 0, "threshold");
            }
        }
    free(mass);
    paro_tiling_free(&t);
}
END_TEST

START_TEST(mask_recall_matches_exact_sums)
{
    /* _i: the shape.  The exact-sum reference on every kind of masses; and
     * the old implementation where its sums in double are exact (masses
     * that are a few multiples of 1/4). */
    paro_tiling t;
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    const struct mask_shape *sh = &mask_shapes[_i];
    ck_assert_int_eq(paro_tiling_init(&t, sh->grid, sh->text, sh->text_last, sh->block_q,
                                      sh->block_k, &ei),
                     PARO_OK);
    const size_t nt = paro_tiling_tiles(&t);
    double *mass = malloc(nt * sizeof *mass);
    uint64_t rng = 37 + (uint64_t)_i;
    const double recalls[] = {0.0, 1e-300, 0.3, 0.6, 0.95, 0.999999, 1.0, 1.5};
    for (int kind = 0; kind < TU_MASS_KINDS; kind++)
        for (int rep = 0; rep < 3; rep++) {
            mask_masses(kind, mass, nt, &rng);
            for (int flags = 0; flags < 4; flags++)
                for (size_t r = 0; r < sizeof recalls / sizeof *recalls; r++) {
                    paro_mask_target tg = {PARO_TARGET_RECALL, recalls[r], flags & 1,
                                           flags >> 1};
                    assert_masks_equal(&t, mass, &tg, 1, "recall");
                    if (kind == TU_MASS_TIES)
                        assert_masks_equal(&t, mass, &tg, 0, "recall, old sums");
                }
        }
    free(mass);
    paro_tiling_free(&t);
}
END_TEST

START_TEST(masks_at_the_reference_shape)
{
    /* 278 x 278 tiles of a CogVideoX-5B layer at blocks of 64, 226 text
     * tokens first. */
    paro_tiling t;
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_tiling_init(&t, (uint32_t[3]){13, 30, 45}, 226, 0, 64, 64, &ei),
                     PARO_OK);
    const size_t nt = paro_tiling_tiles(&t);
    double *mass = malloc(nt * sizeof *mass);
    uint64_t rng = 41;
    const int kinds[] = {TU_MASS_FLOAT, TU_MASS_SKEWED, TU_MASS_TIES};
    for (int k = 0; k < 3; k++) {
        mask_masses(kinds[k], mass, nt, &rng);
        for (int flags = 0; flags < 4; flags += 3) {
            paro_mask_target tg = {PARO_TARGET_DENSITY, 0.25, flags & 1, flags >> 1};
            assert_masks_equal(&t, mass, &tg, 0, "density");
            tg.mode = PARO_TARGET_RECALL;
            tg.value = 0.9;
            assert_masks_equal(&t, mass, &tg, 1, "recall");
        }
    }
    free(mass);
    paro_tiling_free(&t);
}
END_TEST

/* ---- order choice on planted heads -------------------------------------- */

/* Calibrates a synth capture in memory and counts heads whose chosen order
 * has the planted axis innermost. */
static void planted_recovery(paro_dtype dtype, uint32_t grid0, uint32_t grid1, uint32_t grid2,
                             uint32_t text, int min_percent)
{
    paro_synth_config c = {.grid = {grid0, grid1, grid2},
                           .text_tokens = text,
                           .layers = 2,
                           .heads = 8,
                           .head_dim = 64,
                           .samples = 2,
                           .seed = 11};
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_synth_check(&c, &ei), PARO_OK);
    paro_tiling t;
    ck_assert_int_eq(paro_tiling_init(&t, c.grid, c.text_tokens, 0, 64, 64, &ei), PARO_OK);
    const size_t per = (size_t)c.heads * t.n_tokens * c.head_dim, nt = paro_tiling_tiles(&t);
    float *q = malloc(per * sizeof *q), *k = malloc(per * sizeof *k);
    double *mass = malloc(t.n_slots * nt * sizeof *mass), *peak = malloc(t.n_slots * nt * sizeof *peak);
    void *scratch2 = malloc(paro_score_scratch_bytes(nt));
    void *scratch = malloc(paro_tile_stats_scratch_bytes(&t, c.head_dim));
    uint16_t *half = malloc(per * sizeof *half);
    int hits = 0, total = 0;
    for (uint32_t l = 0; l < c.layers; l++) {
        paro_block_stats st;
        ck_assert_int_eq(paro_block_stats_init(&st, c.heads, 1, (uint32_t)t.n_slots, t.nq, t.nk, &ei),
                         PARO_OK);
        for (uint32_t s = 0; s < c.samples; s++) {
            paro_synth_layer(&c, s, l, q, k, NULL, 1);
            if (dtype != PARO_DTYPE_F32) { /* what a bf16/f16 capture holds */
                paro_convert_from_f32(dtype, q, half, per);
                paro_convert_to_f32(dtype, half, q, per);
                paro_convert_from_f32(dtype, k, half, per);
                paro_convert_to_f32(dtype, half, k, per);
            }
            for (uint32_t h = 0; h < c.heads; h++) {
                size_t off = (size_t)h * t.n_tokens * c.head_dim;
                paro_tile_stats_cpu(&t, q + off, k + off, c.head_dim, 1.0 / 8.0, mass, peak,
                                    scratch);
                paro_block_stats_add(&st, 0, h, mass, peak);
            }
        }
        for (uint32_t h = 0; h < c.heads; h++) {
            paro_head_choice choice;
            paro_score_head(&t, &st, h, 0.5, 0.95, &choice, scratch2);
            int planted = paro_synth_planted_axis(&c, l, h);
            hits += paro_order_axis(choice.order, 2) == planted;
            total++;
        }
        paro_block_stats_free(&st);
    }
    ck_assert_msg(hits * 100 >= min_percent * total, "%s: planted axis recovered for %d of %d heads",
                  paro_dtype_name(dtype), hits, total);
    free(q);
    free(k);
    free(mass);
    free(peak);
    free(scratch);
    free(scratch2);
    free(half);
    paro_tiling_free(&t);
}

START_TEST(planted_axis_recovered_f32)
{
    planted_recovery(PARO_DTYPE_F32, 5, 12, 16, 24, 95);
}
END_TEST

START_TEST(planted_axis_recovered_bf16)
{
    planted_recovery(PARO_DTYPE_BF16, 5, 12, 16, 24, 95);
}
END_TEST

START_TEST(planted_axis_recovered_image)
{
    /* F = 1: only H and W can be planted. */
    planted_recovery(PARO_DTYPE_F32, 1, 24, 20, 8, 95);
}
END_TEST

START_TEST(synth_is_deterministic_and_plants_only_real_axes)
{
    paro_synth_config c = {.grid = {1, 4, 6}, .text_tokens = 3, .layers = 3, .heads = 16,
                           .head_dim = 8, .samples = 2, .seed = 5};
    const size_t per = (size_t)c.heads * 27 * 8;
    float *a = malloc(per * 4), *b = malloc(per * 4);
    paro_synth_layer(&c, 1, 2, a, NULL, NULL, 1);
    paro_synth_layer(&c, 1, 2, b, NULL, NULL, 1);
    ck_assert_mem_eq(a, b, per * 4);
    memset(b, 0, per * 4);
    paro_synth_layer(&c, 1, 2, b, NULL, NULL, 5); /* heads over threads: the same values */
    ck_assert_mem_eq(a, b, per * 4);
    paro_synth_layer(&c, 0, 2, b, NULL, NULL, 1);
    ck_assert_int_ne(memcmp(a, b, per * 4), 0); /* samples differ */
    int seen[3] = {0, 0, 0};
    for (uint32_t l = 0; l < c.layers; l++)
        for (uint32_t h = 0; h < c.heads; h++)
            seen[paro_synth_planted_axis(&c, l, h)]++;
    ck_assert_int_eq(seen[PARO_AXIS_F], 0);
    ck_assert_int_gt(seen[PARO_AXIS_H], 0);
    ck_assert_int_gt(seen[PARO_AXIS_W], 0);
    free(a);
    free(b);
}
END_TEST

START_TEST(bucket_of_progress)
{
    ck_assert_uint_eq(paro_bucket_of(0.0, 4), 0);
    ck_assert_uint_eq(paro_bucket_of(0.2499, 4), 0);
    ck_assert_uint_eq(paro_bucket_of(0.25, 4), 1);
    ck_assert_uint_eq(paro_bucket_of(0.999, 4), 3);
    ck_assert_uint_eq(paro_bucket_of(1.0, 4), 3);
    ck_assert_uint_eq(paro_bucket_of(0.7, 1), 0);
}
END_TEST

static Suite *calib_suite(void)
{
    Suite *s = suite_create("calib");
    TCase *tc = tcase_create("orders");
    tcase_add_test(tc, permutations_match_formula_on_odd_grids);
    tcase_add_test(tc, order_names_round_trip);
    tcase_add_test(tc, canonical_orders_are_permutation_classes);
    suite_add_tcase(s, tc);

    tc = tcase_create("tile_stats");
    tcase_add_loop_test(tc, tile_stats_match_brute_force, 0,
                        (int)(sizeof brute_cases / sizeof *brute_cases));
    tcase_add_test(tc, tiling_areas_and_text_blocks);
    tcase_add_test(tc, stats_merge_equals_adding_all);
    tcase_add_test(tc, stats_lent_as_f32_score_like_doubles);
    suite_add_tcase(s, tc);

    tc = tcase_create("masks");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, mask_density_keeps_text_then_largest);
    tcase_add_test(tc, mask_recall_and_threshold);
    tcase_add_test(tc, mask_keep_last_counts_towards_the_target);
    tcase_add_test(tc, mask_every_query_block_keeps_a_tile);
    tcase_add_loop_test(tc, mask_density_and_threshold_are_unchanged, 0, (int)N_MASK_SHAPES);
    tcase_add_loop_test(tc, mask_recall_matches_exact_sums, 0, (int)N_MASK_SHAPES);
    tcase_add_test(tc, masks_at_the_reference_shape);
    tcase_add_test(tc, bucket_of_progress);
    suite_add_tcase(s, tc);

    tc = tcase_create("planted");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, synth_is_deterministic_and_plants_only_real_axes);
    tcase_add_test(tc, planted_axis_recovered_f32);
    tcase_add_test(tc, planted_axis_recovered_bf16);
    tcase_add_test(tc, planted_axis_recovered_image);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(calib_suite());
}
