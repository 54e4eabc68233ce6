/* paro — building block masks (rules in mask.h). */
#include "mask.h"

#include <string.h> /* memchr, memcpy, memset */

#include "largest.h" /* paro_largest_* */

static uint64_t tiles_for_density(double d, uint64_t nt)
{
    double x = d * (double)nt;
    uint64_t k = (uint64_t)x;
    if (x - (double)k > 1e-9)
        k++;
    return k > nt ? nt : k;
}

void paro_mask_measure(const paro_tiling *t, const double *mass, const uint8_t *keep,
                       double *density, double *recall)
{
    size_t nt = paro_tiling_tiles(t), kept = 0;
    double total = 0.0, kept_mass = 0.0;
    for (size_t i = 0; i < nt; i++) {
        total += mass[i];
        if (keep[i]) {
            kept++;
            kept_mass += mass[i];
        }
    }
    *density = nt ? (double)kept / (double)nt : 0.0;
    *recall = total > 0.0 ? kept_mass / total : 1.0;
    if (*recall > 1.0)
        *recall = 1.0;
}

size_t paro_mask_scratch_bytes(size_t tiles)
{
    return paro_largest_scratch_bytes(tiles);
}

void paro_build_mask(const paro_tiling *t, const double *mass, const paro_mask_target *tg,
                     uint8_t *keep, double *density, double *recall, void *scratch)
{
    const size_t nt = paro_tiling_tiles(t);
    /* Rule 1: the kept columns, the same in every row, are worked out once
     * (in row 0), then each row is either whole or a copy of that row. */
    size_t in_columns = 0, kept = 0;
    for (uint32_t b = 0; b < t->nk; b++) {
        keep[b] = (tg->keep_text && paro_tiling_kblock_has_text(t, b)) ||
                  (tg->keep_last && b + 1 == t->nk);
        in_columns += keep[b];
    }
    for (uint32_t a = t->nq; a-- > 0;) { /* row 0 last: the others copy it */
        uint8_t *row = keep + (size_t)a * t->nk;
        if ((tg->keep_text && paro_tiling_qblock_has_text(t, a)) ||
            (tg->keep_last && a + 1 == t->nq)) {
            memset(row, 1, t->nk);
            kept += t->nk;
        } else {
            if (a > 0)
                memcpy(row, keep, t->nk);
            kept += in_columns;
        }
    }

    /* The targets add the largest tiles not kept yet; a selection finds the
     * last one to add, a pass marks them (no sort). */
    if (tg->mode == PARO_TARGET_DENSITY) {
        uint64_t want = tiles_for_density(tg->value, nt);
        if (want > kept) {
            uint64_t key;
            size_t ties;
            paro_largest_k(mass, nt, keep, (size_t)(want - kept), &key, &ties, scratch);
            paro_largest_mark(mass, nt, keep, key, ties);
        }
    } else if (tg->mode == PARO_TARGET_RECALL) {
        paro_cut cut;
        paro_largest_until(mass, nt, keep, tg->value, &cut, scratch);
        if (cut.kind == PARO_CUT_CROSS)
            paro_largest_mark(mass, nt, keep, cut.key, cut.ties);
        else if (cut.kind == PARO_CUT_SHORT) /* every tile with mass, and still short */
            paro_largest_mark(mass, nt, keep, 0, 0);
    } else { /* threshold on the mean mass per element */
        for (size_t i = 0; i < nt; i++)
            if (!keep[i] && mass[i] / t->area[i] >= tg->value)
                keep[i] = 1;
    }

    /* Every query block keeps at least one tile: its largest. */
    for (uint32_t a = 0; a < t->nq; a++) {
        const size_t row = (size_t)a * t->nk;
        if (memchr(keep + row, 1, t->nk))
            continue;
        size_t best = row;
        for (uint32_t b = 0; b < t->nk; b++)
            if (mass[row + b] > mass[best])
                best = row + b;
        keep[best] = 1;
    }
    paro_mask_measure(t, mass, keep, density, recall);
}
