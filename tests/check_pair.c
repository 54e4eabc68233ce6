/* paro tests — the pair pass's tables (kernels/pair_plan.c), on the CPU.
 *
 * The GPU sums and maxes the attention map over the cells that the tables
 * describe (kernels/pair_pass.cu).  Here the same walk over the tables, in
 * exact arithmetic on a made-up map of integers, must give every tile of
 * both orders exactly as a direct sum over the tokens does (maxima through
 * the key groups and row groups, sums through the sum rows and columns);
 * repeated rows must be left out of the sums and may not change a maximum.
 * The mma fragments of the sum-row indicator are decoded lane by lane with the
 * layout of PTX's mma.m16n8k16 (row-major A: register r holds rows
 * g + 8 (r & 1), columns 2q + 8 (r >> 1) and the next, the lower column in
 * the lower half).
 */
#include <check.h>  /* START_TEST, ck_assert_* */
#include <stdio.h>  /* printf */
#include <stdlib.h> /* calloc, malloc, free */
#include <string.h> /* strstr */

#include "order.h"
#include "pair_plan.h"
#include "testutil.h"
#include "tile_stats.h"

/* Check writes a record for every assertion that passes: in the inner loops
 * only a failure goes through it. */
#define REQUIRE(cond)                                  \
    do {                                               \
        if (!(cond))                                   \
            ck_abort_msg("%s", "requirement failed: " #cond); \
    } while (0)

#define REQUIRE_EQ(a, b) REQUIRE((a) == (b))

/* A made-up map entry, 1..1000: an exact double, sums exact. */
static double weight(uint32_t i, uint32_t j)
{
    uint64_t s = ((uint64_t)i << 32) ^ j ^ 0x9E3779B97F4A7C15ull;
    return (double)(1 + tu_rand(&s) % 1000);
}

typedef struct tiles {
    double *sum, *top;
} tiles;

static void tiles_alloc(tiles *t, size_t n)
{
    t->sum = calloc(n, sizeof *t->sum);
    t->top = calloc(n, sizeof *t->top);
    ck_assert(t->sum && t->top);
}

static void tiles_free(tiles *t)
{
    free(t->sum);
    free(t->top);
}

/* Every tile of one order, straight from the positions. */
static void direct_tiles(const paro_tiling *t, int slot, tiles *out)
{
    const uint32_t n = t->n_tokens;
    uint32_t *pos = malloc(n * sizeof *pos);
    for (uint32_t p = 0; p < n; p++)
        pos[t->perm[slot][p]] = p;
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t j = 0; j < n; j++) {
            const size_t at = (size_t)(pos[i] / t->block_q) * t->nk + pos[j] / t->block_k;
            const double w = weight(i, j);
            out->sum[at] += w;
            if (w > out->top[at])
                out->top[at] = w;
        }
    free(pos);
}

static int group_of(const paro_pair_chunk *ch, uint32_t key)
{
    int g = 0;
    while (g + 1 < ch->n_groups && ch->cut[g] <= key)
        g++;
    return g;
}

/* The walk the kernel makes over the tables, checking each entry on the
 * way; adds the cells into the tiles of A and B. */
static void walk_plan(const paro_tiling *t, int slot_a, int slot_b, const paro_pair_plan *p,
                      tiles *a, tiles *b)
{
    const uint32_t n = t->n_tokens, nk = t->nk;
    const uint32_t *perm_b = t->perm[slot_b];
    uint32_t *pos_a = malloc(n * sizeof *pos_a), *pos_b = malloc(n * sizeof *pos_b);
    uint32_t *counted = calloc(n, sizeof *counted);
    for (uint32_t q = 0; q < n; q++) {
        pos_a[t->perm[slot_a][q]] = q;
        pos_b[t->perm[slot_b][q]] = q;
    }
    REQUIRE_EQ(p->n_row_slots % PARO_PAIR_CTA_ROWS, 0);
    REQUIRE_EQ(p->n_chunks, (n + PARO_PAIR_CHUNK - 1) / PARO_PAIR_CHUNK);
    for (uint32_t w = 0; w < p->n_warps; w++) {
        const int32_t *tok = p->row_token + (size_t)w * PARO_PAIR_WARP_ROWS;
        const uint8_t *info = p->row_info + (size_t)w * PARO_PAIR_WARP_ROWS;
        const uint32_t *qab = p->warp_qb + (size_t)w * PARO_PAIR_MAX_ROW_GROUPS;
        const uint32_t qa0 = p->cta_qa0[w / (PARO_PAIR_CTA_ROWS / PARO_PAIR_WARP_ROWS)];
        const uint32_t *qbs = p->cta_qb + (size_t)(w / (PARO_PAIR_CTA_ROWS / PARO_PAIR_WARP_ROWS)) *
                                              PARO_PAIR_MAX_QB;
        const uint8_t *col = p->warp_col + (size_t)w * PARO_PAIR_MAX_ROW_GROUPS;
        const uint8_t *qbcta = p->warp_qbcta + (size_t)w * PARO_PAIR_WARP_QB;
        for (uint32_t row = 0; row < PARO_PAIR_WARP_ROWS; row++) {
            if (info[row] == PARO_PAIR_NO_ROW) {
                REQUIRE(tok[row] < 0);
                continue;
            }
            const uint32_t r = info[row] & 7u, i = (uint32_t)tok[row];
            REQUIRE(i < n);
            REQUIRE(qab[r] != PARO_PAIR_NO_GROUP);
            REQUIRE_EQ(qab[r] & 0xFFFFu, pos_a[i] / t->block_q);
            REQUIRE_EQ(qab[r] >> 16, pos_b[i] / t->block_q);
            REQUIRE((qab[r] & 0xFFFFu) - qa0 < PARO_PAIR_MAX_QA);
            /* the columns its sums go to */
            REQUIRE((col[r] & 15u) < PARO_PAIR_WARP_QA && (col[r] >> 4) < PARO_PAIR_WARP_QB);
            REQUIRE_EQ(paro_pair_warp_qa0(qab) + (col[r] & 15u), pos_a[i] / t->block_q);
            REQUIRE(qbcta[col[r] >> 4] < PARO_PAIR_MAX_QB);
            REQUIRE_EQ(qbs[qbcta[col[r] >> 4]], pos_b[i] / t->block_q);
            counted[i] += (info[row] & PARO_PAIR_COUNTED) != 0;
        }
        /* a unit: rows u and u + 8 of each m tile, one row group */
        for (uint32_t row = 0; row < PARO_PAIR_WARP_ROWS; row++)
            if ((row & 15) < 8)
                REQUIRE_EQ(info[row] == PARO_PAIR_NO_ROW ? 99u : info[row] & 7u,
                                  info[row + 8] == PARO_PAIR_NO_ROW ? 99u : info[row + 8] & 7u);
        for (uint32_t c = 0; c < p->n_chunks; c++) {
            const paro_pair_chunk *ch = &p->chunk[c];
            const uint32_t k0 = c * PARO_PAIR_CHUNK;
            REQUIRE_EQ(ch->n_keys, n - k0 < PARO_PAIR_CHUNK ? n - k0 : PARO_PAIR_CHUNK);
            REQUIRE(ch->n_sums >= 1 && ch->n_sums <= PARO_PAIR_SUM_ROWS);
            for (uint32_t m = 0; m < ch->n_sums; m++)
                for (uint32_t m2 = 0; m2 < m; m2++)
                    REQUIRE(ch->kb_sum[m] != ch->kb_sum[m2]);
            for (uint32_t row = 0; row < PARO_PAIR_WARP_ROWS; row++) {
                if (info[row] == PARO_PAIR_NO_ROW)
                    continue;
                const uint32_t r = info[row] & 7u, i = (uint32_t)tok[row];
                const int count = (info[row] & PARO_PAIR_COUNTED) != 0;
                for (uint32_t key = 0; key < ch->n_keys; key++) {
                    const uint32_t j = perm_b[k0 + key];
                    const int m = group_of(ch, key);
                    REQUIRE_EQ(ch->kb_a[m], pos_a[j] / t->block_k);
                    REQUIRE_EQ(ch->kb_b, pos_b[j] / t->block_k);
                    const double v = weight(i, j);
                    const size_t at_a = (size_t)(qab[r] & 0xFFFFu) * nk + ch->kb_a[m];
                    const size_t at_b = (size_t)(qab[r] >> 16) * nk + ch->kb_b;
                    if (count) { /* the sums: sum row of the key, columns of the row */
                        uint32_t sr = 0;
                        while (sr < ch->n_sums && ch->kb_sum[sr] != pos_a[j] / t->block_k)
                            sr++;
                        REQUIRE(sr < ch->n_sums);
                        const uint32_t qa = paro_pair_warp_qa0(qab) + (col[r] & 15u);
                        a->sum[(size_t)qa * nk + ch->kb_sum[sr]] += v;
                        b->sum[(size_t)qbs[qbcta[col[r] >> 4]] * nk + ch->kb_b] += v;
                    }
                    if (v > a->top[at_a])
                        a->top[at_a] = v;
                    if (v > b->top[at_b])
                        b->top[at_b] = v;
                }
            }
        }
    }
    for (uint32_t i = 0; i < n; i++)
        REQUIRE(counted[i] == 1);
    /* the indicator fragments */
    for (uint32_t c = 0; c < p->n_chunks; c++) {
        const paro_pair_chunk *ch = &p->chunk[c];
        const uint32_t k0 = c * PARO_PAIR_CHUNK;
        for (uint32_t j = 0; j < 4; j++)
            for (uint32_t lane = 0; lane < 32; lane++)
                for (uint32_t r = 0; r < 4; r++)
                    for (uint32_t e = 0; e < 2; e++) {
                        const uint32_t frag = p->bind[(((size_t)c * 4 + j) * 32 + lane) * 4 + r];
                        const uint32_t half = (frag >> (16 * e)) & 0xFFFFu;
                        const uint32_t m = lane / 4 + 8 * (r & 1);
                        const uint32_t key = 16 * j + 2 * (lane % 4) + 8 * (r >> 1) + e;
                        const int in =
                            key < ch->n_keys &&
                            (m == PARO_PAIR_SUM_ROWS ||
                             (m < ch->n_sums &&
                              ch->kb_sum[m] == pos_a[perm_b[k0 + key]] / t->block_k));
                        REQUIRE_EQ(half, in ? PARO_PAIR_KEY_ONE : 0u);
                    }
    }
    free(pos_a);
    free(pos_b);
    free(counted);
}

typedef struct pair_case {
    uint32_t grid[3], text;
    int text_last;
    uint32_t bq, bk;
    int min_pairs; /* pairs that must build */
} pair_case;

static const pair_case cases[] = {
    {{3, 5, 7}, 5, 0, 64, 64, 1},
    {{3, 5, 7}, 5, 1, 64, 64, 1},
    {{2, 9, 11}, 3, 0, 64, 128, 1},
    {{1, 24, 32}, 0, 0, 128, 64, 0},
    {{4, 6, 10}, 7, 0, 128, 128, 1},
    {{5, 12, 16}, 24, 0, 64, 64, 2},
    {{13, 6, 9}, 26, 0, 64, 64, 0},
    {{2, 12, 20}, 9, 1, 128, 64, 1},
};
#define N_CASES (sizeof cases / sizeof *cases)

START_TEST(tables_give_both_orders_tiles)
{
    const pair_case *pc = &cases[_i];
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_tiling t;
    ck_assert_int_eq(paro_tiling_init(&t, pc->grid, pc->text, pc->text_last, pc->bq, pc->bk, &ei),
                     PARO_OK);
    const size_t nt = paro_tiling_tiles(&t);
    tiles direct[PARO_N_ORDERS];
    for (int s = 0; s < t.n_slots; s++) {
        tiles_alloc(&direct[s], nt);
        direct_tiles(&t, s, &direct[s]);
    }
    int built = 0, refused = 0;
    for (int sa = 0; sa < t.n_slots; sa++)
        for (int sb = 0; sb < t.n_slots; sb++) {
            if (sa == sb)
                continue;
            paro_pair_plan p;
            paro_errinfo_clear(&ei);
            paro_err rc = paro_pair_plan_build(&p, t.perm[sa], t.perm[sb], t.n_tokens, pc->bq,
                                               pc->bk, &ei);
            if (rc) {
                ck_assert_int_eq(rc, PARO_ERR_LIMIT);
                ck_assert_ptr_nonnull(strstr(ei.msg, "pair pass: "));
                refused++;
                continue;
            }
            tiles a, b;
            tiles_alloc(&a, nt);
            tiles_alloc(&b, nt);
            walk_plan(&t, sa, sb, &p, &a, &b);
            for (size_t i = 0; i < nt; i++) {
                if (!(a.sum[i] == direct[sa].sum[i] && a.top[i] == direct[sa].top[i]))
                    ck_abort_msg("A=%s B=%s tile %zu: sum %.0f/%.0f max %.0f/%.0f",
                                 paro_order_name(t.slot_order[sa]),
                                 paro_order_name(t.slot_order[sb]), i, a.sum[i],
                                 direct[sa].sum[i], a.top[i], direct[sa].top[i]);
                if (!(b.sum[i] == direct[sb].sum[i] && b.top[i] == direct[sb].top[i]))
                    ck_abort_msg("B=%s tile %zu", paro_order_name(t.slot_order[sb]), i);
            }
            tiles_free(&a);
            tiles_free(&b);
            paro_pair_plan_free(&p);
            built++;
        }
    int pairs[PARO_N_ORDERS][2], singles[PARO_N_ORDERS], n_singles = 0;
    uint32_t *perms = paro_tiling_flat_perms(&t);
    const int n_pairs = paro_pair_choose(perms, (uint32_t)t.n_slots, t.n_tokens, pc->bq, pc->bk,
                                         pairs, singles, &n_singles);
    free(perms);
    ck_assert_int_eq(2 * n_pairs + n_singles, t.n_slots);
    ck_assert_int_ge(n_pairs, pc->min_pairs);
    printf("  %ux%ux%u+%u%s %ux%u: %d slots, %d ordered pairs build, %d refused; chosen:",
           pc->grid[0], pc->grid[1], pc->grid[2], pc->text, pc->text_last ? " (last)" : "",
           pc->bq, pc->bk, t.n_slots, built, refused);
    for (int k = 0; k < n_pairs; k++)
        printf(" %s+%s", paro_order_name(t.slot_order[pairs[k][0]]),
               paro_order_name(t.slot_order[pairs[k][1]]));
    printf("\n");
    for (int s = 0; s < t.n_slots; s++)
        tiles_free(&direct[s]);
    paro_tiling_free(&t);
}
END_TEST

/* On the reference shape (DESIGN.md), the pairs of orders that share an
 * innermost axis all build with little padding; those the cost model takes
 * are among them (with the measured constants: W and H, not F, whose short
 * lines make more group boundaries than two single passes cost). */
START_TEST(reference_shape_pairs_share_an_axis)
{
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_tiling t;
    ck_assert_int_eq(paro_tiling_init(&t, (uint32_t[3]){13, 30, 45}, 226, 0, 64, 64, &ei), PARO_OK);
    uint32_t *perms = paro_tiling_flat_perms(&t);
    int slot[3] = {-1, -1, -1}; /* per innermost axis F, H, W: its first order's slot */
    for (int a = 0; a < t.n_slots; a++) {
        const char *name = paro_order_name(t.slot_order[a]);
        const int axis = name[2] == 'F' ? 0 : name[2] == 'H' ? 1 : 2;
        if (slot[axis] < 0) {
            slot[axis] = a;
            continue;
        }
        paro_pair_plan p;
        ck_assert_int_eq(paro_pair_plan_build(&p, perms + (size_t)slot[axis] * t.n_tokens,
                                              perms + (size_t)a * t.n_tokens, t.n_tokens, 64, 64,
                                              &ei),
                         PARO_OK);
        printf("  reference %s+%s: %u row slots for %u rows (%.1f%% repeated), %.2f key-group "
               "boundaries a step, cost %.2f single passes\n",
               paro_order_name(t.slot_order[slot[axis]]), name, p.n_row_slots, t.n_tokens,
               100 * p.row_padding, p.cuts_per_chunk, paro_pair_plan_cost(&p));
        ck_assert(p.row_padding < 0.1);
        paro_pair_plan_free(&p);
    }
    int pairs[PARO_N_ORDERS][2], singles[PARO_N_ORDERS], n_singles = 0;
    const int n_pairs = paro_pair_choose(perms, (uint32_t)t.n_slots, t.n_tokens, 64, 64, pairs,
                                         singles, &n_singles);
    ck_assert_int_eq(n_pairs, 2);
    ck_assert_int_eq(n_singles, 2);
    for (int k = 0; k < n_pairs; k++) {
        const char *a = paro_order_name(t.slot_order[pairs[k][0]]);
        const char *b = paro_order_name(t.slot_order[pairs[k][1]]);
        ck_assert_int_eq(a[2], b[2]);
        ck_assert_int_ne(a[2], 'F');
    }
    free(perms);
    paro_tiling_free(&t);
}
END_TEST

START_TEST(bad_blocks_are_refused)
{
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_pair_plan p;
    uint32_t perm[4] = {0, 1, 2, 3};
    ck_assert_int_eq(paro_pair_plan_build(&p, perm, perm, 4, 32, 64, &ei), PARO_ERR_USAGE);
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_pair_plan_build(&p, perm, perm, 0, 64, 64, &ei), PARO_ERR_USAGE);
    /* the same order twice: one key group a step, one row group a block */
    ck_assert_int_eq(paro_pair_plan_build(&p, perm, perm, 4, 64, 64, &ei), PARO_OK);
    ck_assert_uint_eq(p.chunk[0].n_groups, 1);
    ck_assert_uint_eq(p.n_row_slots, PARO_PAIR_CTA_ROWS);
    paro_pair_plan_free(&p);
}
END_TEST

/* The kernel's column sums limit a step to 15 distinct key blocks of A and
 * a warp's 32 rows to 6 query blocks of B; a pair beyond either is refused
 * by name (its orders then go single). */
START_TEST(column_limits_are_refused_by_name)
{
    enum { N = 1024 };
    static uint32_t ident[N], perm_b[N];
    for (uint32_t i = 0; i < N; i++)
        ident[i] = i;
    paro_errinfo ei;
    paro_pair_plan p;
    /* The last 64 keys of B take the last 4 tokens of each of A's 16 key
     * blocks; the others keep A's order. */
    uint32_t at = 0;
    for (uint32_t t = 0; t < N; t++)
        if (t % 64 < 60)
            perm_b[at++] = t;
    for (uint32_t t = 0; t < N; t++)
        if (t % 64 >= 60)
            perm_b[at++] = t;
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_pair_plan_build(&p, ident, perm_b, N, 64, 64, &ei), PARO_ERR_LIMIT);
    ck_assert_ptr_nonnull(strstr(ei.msg, "16 A key blocks in 64 keys, at most 15"));
    /* Of 15 of them (A's first key block twice over): the plan builds. */
#define WIDE(t) ((t) < 960 && ((t) % 64 >= 60 || ((t) >= 56 && (t) < 60)))
    at = 0;
    for (uint32_t t = 0; t < N; t++)
        if (!WIDE(t))
            perm_b[at++] = t;
    for (uint32_t t = 0; t < N; t++)
        if (WIDE(t))
            perm_b[at++] = t;
#undef WIDE
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_pair_plan_build(&p, ident, perm_b, N, 64, 64, &ei), PARO_OK);
    paro_pair_plan_free(&p);
    /* The first 32 rows in runs of 4, each run in its own key block of B:
     * 8 row groups (allowed), 8 query blocks of B (not: refused at the
     * seventh). */
    enum { M = 512 };
    uint32_t *pos = calloc(M, sizeof *pos);
    unsigned char *used = calloc(M, 1);
    for (uint32_t t = 0; t < 32; t++) {
        pos[t] = (t / 4) * 64 + t % 4;
        used[pos[t]] = 1;
    }
    uint32_t free_at = 0;
    for (uint32_t t = 32; t < M; t++) {
        while (used[free_at])
            free_at++;
        pos[t] = free_at;
        used[free_at] = 1;
    }
    for (uint32_t t = 0; t < M; t++)
        perm_b[pos[t]] = t;
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_pair_plan_build(&p, ident, perm_b, M, 64, 64, &ei), PARO_ERR_LIMIT);
    ck_assert_ptr_nonnull(strstr(ei.msg, "7 B query blocks in 32 rows, at most 6"));
    free(pos);
    free(used);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pair");
    TCase *tc = tcase_create("plan");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, tables_give_both_orders_tiles, 0, (int)N_CASES);
    tcase_add_test(tc, reference_shape_pairs_share_an_axis);
    tcase_add_test(tc, bad_blocks_are_refused);
    tcase_add_test(tc, column_limits_are_refused_by_name);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
