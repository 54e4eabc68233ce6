/* paro — the tables of a pair pass (kernels/pair_plan.h). */
#include "pair_plan.h"

#include <stdlib.h> /* calloc, malloc, free */
#include <string.h> /* memset */

void paro_pair_plan_free(paro_pair_plan *p)
{
    free(p->row_token);
    free(p->row_info);
    free(p->warp_qb);
    free(p->cta_qa0);
    free(p->cta_qb);
    free(p->warp_col);
    free(p->warp_qbcta);
    free(p->chunk);
    free(p->bind);
    memset(p, 0, sizeof *p);
}

static paro_err too_big(paro_pair_plan *p, paro_errinfo *ei, const char *what, uint32_t have,
                        uint32_t most)
{
    paro_pair_plan_free(p);
    return paro_error(ei, PARO_ERR_LIMIT, NULL, PARO_NO_OFFSET,
                      "pair pass: %u %s, at most %u", have, what, most);
}

/* The rows in A's order, each run of equal (A, B) query block padded to an
 * even length; returns the number of slots used (before the tail). */
static uint32_t plan_rows(const uint32_t *perm_a, const uint32_t *pos_b, uint32_t n,
                          uint32_t block_q, int32_t *token, uint8_t *counted, uint32_t *qab)
{
    uint32_t slots = 0;
    for (uint32_t p = 0; p < n;) {
        const uint32_t qa = p / block_q, qb = pos_b[perm_a[p]] / block_q;
        uint32_t q = p;
        while (q < n && q / block_q == qa && pos_b[perm_a[q]] / block_q == qb) {
            token[slots] = (int32_t)perm_a[q];
            counted[slots] = 1;
            qab[slots++] = qa | qb << 16;
            q++;
        }
        if ((q - p) & 1) { /* repeat the last row: same maxima, left out of the sums */
            token[slots] = (int32_t)perm_a[q - 1];
            counted[slots] = 0;
            qab[slots++] = qa | qb << 16;
        }
        p = q;
    }
    return slots;
}

paro_err paro_pair_plan_build(paro_pair_plan *p, const uint32_t *perm_a, const uint32_t *perm_b,
                              uint32_t n, uint32_t block_q, uint32_t block_k, paro_errinfo *ei)
{
    memset(p, 0, sizeof *p);
    if (n == 0 || (block_q != 64 && block_q != 128) || (block_k != 64 && block_k != 128))
        return paro_error(ei, PARO_ERR_USAGE, NULL, PARO_NO_OFFSET,
                          "pair pass: blocks of 64 or 128 tokens and at least one token");
    p->n_tokens = n;
    p->block_q = block_q;
    p->block_k = block_k;
    p->nq = (n + block_q - 1) / block_q;
    p->nk = (n + block_k - 1) / block_k;
    if (p->nk > PARO_PAIR_MAX_NK || p->nq > 0xFFFFu)
        return too_big(p, ei, "key blocks", p->nk, PARO_PAIR_MAX_NK);

    /* At most one repeated row per real one (runs of one), then the tail. */
    const size_t most = 2 * (size_t)n + PARO_PAIR_CTA_ROWS;
    uint32_t *pos_a = malloc((size_t)n * sizeof *pos_a), *pos_b = malloc((size_t)n * sizeof *pos_b);
    int32_t *token = malloc(most * sizeof *token);
    uint8_t *counted = malloc(most);
    uint32_t *qab = malloc(most * sizeof *qab);
    if (!pos_a || !pos_b || !token || !counted || !qab) {
        free(pos_a), free(pos_b), free(token), free(counted), free(qab);
        return paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory");
    }
    for (uint32_t i = 0; i < n; i++) {
        pos_a[perm_a[i]] = i;
        pos_b[perm_b[i]] = i;
    }
    const uint32_t used = plan_rows(perm_a, pos_b, n, block_q, token, counted, qab);
    p->row_padding = (double)(used - n) / n;
    p->n_row_slots = (used + PARO_PAIR_CTA_ROWS - 1) / PARO_PAIR_CTA_ROWS * PARO_PAIR_CTA_ROWS;
    p->n_ctas = p->n_row_slots / PARO_PAIR_CTA_ROWS;
    p->n_warps = p->n_row_slots / PARO_PAIR_WARP_ROWS;
    p->n_chunks = (n + PARO_PAIR_CHUNK - 1) / PARO_PAIR_CHUNK;
    p->row_token = malloc((size_t)p->n_row_slots * sizeof *p->row_token);
    p->row_info = malloc(p->n_row_slots);
    p->warp_qb = malloc((size_t)p->n_warps * PARO_PAIR_MAX_ROW_GROUPS * sizeof *p->warp_qb);
    p->cta_qa0 = malloc((size_t)p->n_ctas * sizeof *p->cta_qa0);
    p->cta_qb = malloc((size_t)p->n_ctas * PARO_PAIR_MAX_QB * sizeof *p->cta_qb);
    p->warp_col = calloc((size_t)p->n_warps * PARO_PAIR_MAX_ROW_GROUPS, 1);
    p->warp_qbcta = malloc((size_t)p->n_warps * PARO_PAIR_WARP_QB);
    p->chunk = calloc(p->n_chunks, sizeof *p->chunk);
    p->bind = calloc((size_t)p->n_chunks * 4 * 32 * 4, sizeof *p->bind);
    paro_err rc = PARO_OK;
    if (!p->row_token || !p->row_info || !p->warp_qb || !p->cta_qa0 || !p->cta_qb ||
        !p->warp_col || !p->warp_qbcta || !p->chunk || !p->bind) {
        paro_pair_plan_free(p);
        rc = paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory");
        goto out;
    }

    /* Rows: per warp, the runs of equal (qa, qb) are its row groups. */
    for (uint32_t w = 0; w < p->n_warps; w++) {
        uint32_t *groups = p->warp_qb + (size_t)w * PARO_PAIR_MAX_ROW_GROUPS;
        uint32_t n_groups = 0;
        for (uint32_t i = 0; i < PARO_PAIR_MAX_ROW_GROUPS; i++)
            groups[i] = PARO_PAIR_NO_GROUP;
        for (uint32_t s = 0; s < PARO_PAIR_WARP_ROWS; s++) {
            const uint32_t slot = w * PARO_PAIR_WARP_ROWS + s;
            const uint32_t at = w * PARO_PAIR_WARP_ROWS + paro_pair_smem_row(s);
            if (slot >= used) {
                p->row_token[at] = -1;
                p->row_info[at] = PARO_PAIR_NO_ROW;
                continue;
            }
            if (n_groups == 0 || groups[n_groups - 1] != qab[slot]) {
                if (n_groups == PARO_PAIR_MAX_ROW_GROUPS) {
                    rc = too_big(p, ei, "row groups in 32 rows", n_groups + 1,
                                 PARO_PAIR_MAX_ROW_GROUPS);
                    goto out;
                }
                groups[n_groups++] = qab[slot];
            }
            p->row_token[at] = token[slot];
            p->row_info[at] = (uint8_t)((n_groups - 1) | (counted[slot] ? PARO_PAIR_COUNTED : 0));
        }
    }
    const uint32_t warps_per_cta = PARO_PAIR_CTA_ROWS / PARO_PAIR_WARP_ROWS;
    for (uint32_t c = 0; c < p->n_ctas; c++) {
        uint32_t lo = UINT32_MAX, hi = 0, n_qb = 0;
        uint32_t *qbs = p->cta_qb + (size_t)c * PARO_PAIR_MAX_QB;
        for (uint32_t i = 0; i < PARO_PAIR_MAX_QB; i++)
            qbs[i] = 0xFFFFu;
        for (uint32_t w = c * warps_per_cta; w < (c + 1) * warps_per_cta; w++)
            for (uint32_t r = 0; r < PARO_PAIR_MAX_ROW_GROUPS; r++) {
                const uint32_t g = p->warp_qb[(size_t)w * PARO_PAIR_MAX_ROW_GROUPS + r];
                if (g == PARO_PAIR_NO_GROUP)
                    continue;
                const uint32_t qa = g & 0xFFFFu, qb = g >> 16;
                lo = qa < lo ? qa : lo;
                hi = qa > hi ? qa : hi;
                uint32_t slot = 0;
                while (slot < n_qb && qbs[slot] != qb)
                    slot++;
                if (slot == n_qb) {
                    if (n_qb == PARO_PAIR_MAX_QB) {
                        rc = too_big(p, ei, "B query blocks in 128 rows", n_qb + 1,
                                     PARO_PAIR_MAX_QB);
                        goto out;
                    }
                    qbs[n_qb++] = qb;
                }
            }
        if (lo == UINT32_MAX)
            lo = hi = 0;
        if (hi - lo + 1 > PARO_PAIR_MAX_QA) {
            rc = too_big(p, ei, "A query blocks in 128 rows", hi - lo + 1, PARO_PAIR_MAX_QA);
            goto out;
        }
        p->cta_qa0[c] = lo;
    }
    /* Per warp, the columns of the sums: its A query blocks (at most two in
     * 32 rows, as a block has at least 64) and its B query blocks. */
    for (uint32_t w = 0; w < p->n_warps; w++) {
        const uint32_t *groups = p->warp_qb + (size_t)w * PARO_PAIR_MAX_ROW_GROUPS;
        const uint32_t *cta_qbs = p->cta_qb + (size_t)(w / warps_per_cta) * PARO_PAIR_MAX_QB;
        uint8_t *col = p->warp_col + (size_t)w * PARO_PAIR_MAX_ROW_GROUPS;
        uint8_t *qbcta = p->warp_qbcta + (size_t)w * PARO_PAIR_WARP_QB;
        uint32_t qbs[PARO_PAIR_WARP_QB], n_qb = 0;
        memset(qbcta, 0xFF, PARO_PAIR_WARP_QB);
        const uint32_t qa0 = paro_pair_warp_qa0(groups);
        for (uint32_t r = 0; r < PARO_PAIR_MAX_ROW_GROUPS && groups[r] != PARO_PAIR_NO_GROUP; r++) {
            const uint32_t qa = groups[r] & 0xFFFFu, qb = groups[r] >> 16;
            if (qa - qa0 >= PARO_PAIR_WARP_QA) {
                rc = too_big(p, ei, "A query blocks in 32 rows", qa - qa0 + 1,
                             PARO_PAIR_WARP_QA);
                goto out;
            }
            uint32_t b = 0;
            while (b < n_qb && qbs[b] != qb)
                b++;
            if (b == n_qb) {
                if (n_qb == PARO_PAIR_WARP_QB) {
                    rc = too_big(p, ei, "B query blocks in 32 rows", n_qb + 1, PARO_PAIR_WARP_QB);
                    goto out;
                }
                qbs[n_qb++] = qb;
                uint32_t slot = 0; /* the thread block's list has it (above) */
                while (cta_qbs[slot] != qb)
                    slot++;
                qbcta[b] = (uint8_t)slot;
            }
            col[r] = (uint8_t)((qa - qa0) | b << 4);
        }
    }

    /* Keys: per step, the runs of equal A key block are its key groups. */
    uint32_t cuts = 0;
    for (uint32_t c = 0; c < p->n_chunks; c++) {
        paro_pair_chunk *ch = &p->chunk[c];
        const uint32_t k0 = c * PARO_PAIR_CHUNK;
        const uint32_t keys = n - k0 < PARO_PAIR_CHUNK ? n - k0 : PARO_PAIR_CHUNK;
        uint8_t sum_row[PARO_PAIR_CHUNK];
        uint32_t n_groups = 0, n_sums = 0;
        for (uint32_t i = 0; i < keys; i++) {
            const uint32_t kb = pos_a[perm_b[k0 + i]] / block_k;
            uint32_t m = 0;
            while (m < n_sums && ch->kb_sum[m] != kb)
                m++;
            if (m == n_sums) {
                if (n_sums == PARO_PAIR_SUM_ROWS) {
                    rc = too_big(p, ei, "A key blocks in 64 keys", n_sums + 1, PARO_PAIR_SUM_ROWS);
                    goto out;
                }
                ch->kb_sum[n_sums++] = (uint16_t)kb;
            }
            sum_row[i] = (uint8_t)m;
            if (n_groups == 0 || ch->kb_a[n_groups - 1] != kb) {
                if (n_groups == PARO_PAIR_MAX_KEY_GROUPS) {
                    rc = too_big(p, ei, "key groups in 64 keys", n_groups + 1,
                                 PARO_PAIR_MAX_KEY_GROUPS);
                    goto out;
                }
                if (n_groups > 0)
                    ch->cut[n_groups - 1] = (uint8_t)i;
                ch->kb_a[n_groups++] = (uint16_t)kb;
            }
        }
        ch->n_groups = (uint8_t)n_groups;
        ch->n_sums = (uint8_t)n_sums;
        ch->kb_b = (uint16_t)(k0 / block_k);
        ch->n_keys = (uint16_t)keys;
        cuts += n_groups - 1;
        /* mma A fragments (m16n8k16, row major): register 0 holds rows g,
         * columns 2q and 2q+1; 1 rows g+8; 2 and 3 the same at columns +8;
         * the lower column in the lower half. */
        for (uint32_t j = 0; j < 4; j++)
            for (uint32_t lane = 0; lane < 32; lane++) {
                uint32_t *frag = p->bind + (((size_t)c * 4 + j) * 32 + lane) * 4;
                const uint32_t g = lane / 4, q = lane % 4;
                for (uint32_t r = 0; r < 4; r++) {
                    const uint32_t m = g + 8 * (r & 1), kcol = 2 * q + 8 * (r >> 1);
                    uint32_t bits = 0;
                    for (uint32_t e = 0; e < 2; e++) {
                        const uint32_t key = 16 * j + kcol + e;
                        if (key < keys && (m == PARO_PAIR_SUM_ROWS || sum_row[key] == m))
                            bits |= PARO_PAIR_KEY_ONE << (16 * e);
                    }
                    frag[r] = bits;
                }
            }
    }
    p->cuts_per_chunk = (double)cuts / p->n_chunks;

out:
    free(pos_a);
    free(pos_b);
    free(token);
    free(counted);
    free(qab);
    return rc;
}

double paro_pair_plan_cost(const paro_pair_plan *p)
{
    /* Fitted to the passes measured on an H100 (kernels/README.md): with no
     * repeated rows and 2.84 group boundaries a step, 1.78 single-order
     * passes; with 7.8% repeated rows and 5.68 boundaries, 2.26. */
    return (1.0 + p->row_padding) * (1.46 + 0.113 * p->cuts_per_chunk);
}

int paro_pair_choose(const uint32_t *perms, uint32_t n_slots, uint32_t n, uint32_t block_q,
                     uint32_t block_k, int pairs[][2], int *singles, int *n_singles)
{
    double cost[PARO_PAIR_MAX_SLOTS][PARO_PAIR_MAX_SLOTS];
    for (uint32_t a = 0; a < n_slots && a < PARO_PAIR_MAX_SLOTS; a++)
        for (uint32_t b = 0; b < n_slots && b < PARO_PAIR_MAX_SLOTS; b++) {
            cost[a][b] = 1e30;
            if (a == b)
                continue;
            paro_pair_plan plan;
            if (paro_pair_plan_build(&plan, perms + (size_t)a * n, perms + (size_t)b * n, n,
                                     block_q, block_k, NULL) == PARO_OK) {
                cost[a][b] = paro_pair_plan_cost(&plan);
                paro_pair_plan_free(&plan);
            }
        }
    int taken[PARO_PAIR_MAX_SLOTS] = {0}, n_pairs = 0;
    for (;;) {
        int best_a = -1, best_b = -1;
        double best = 2.0; /* two single passes */
        for (uint32_t a = 0; a < n_slots && a < PARO_PAIR_MAX_SLOTS; a++)
            for (uint32_t b = 0; b < n_slots && b < PARO_PAIR_MAX_SLOTS; b++)
                if (!taken[a] && !taken[b] && cost[a][b] < best) {
                    best = cost[a][b];
                    best_a = (int)a;
                    best_b = (int)b;
                }
        if (best_a < 0)
            break;
        taken[best_a] = taken[best_b] = 1;
        pairs[n_pairs][0] = best_a;
        pairs[n_pairs][1] = best_b;
        n_pairs++;
    }
    *n_singles = 0;
    for (uint32_t s = 0; s < n_slots; s++)
        if (s >= PARO_PAIR_MAX_SLOTS || !taken[s])
            singles[(*n_singles)++] = (int)s;
    return n_pairs;
}
