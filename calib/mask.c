/* paro — building block masks (rules in mask.h). */
#include "mask.h"

#include <stdint.h> /* uintptr_t */
#include <string.h> /* memset */

#include "metrics.h" /* paro_sort_desc */

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
    return tiles * sizeof(uint32_t) + paro_sort_scratch_bytes(tiles) + 16;
}

void paro_build_mask(const paro_tiling *t, const double *mass, const paro_mask_target *tg,
                     uint8_t *keep, double *density, double *recall, void *workspace)
{
    uint32_t *scratch = workspace; /* tiles, largest mass first */
    const size_t nt = paro_tiling_tiles(t);
    memset(keep, 0, nt);
    size_t kept = 0;
    double kept_mass = 0.0, total = 0.0;
    for (size_t i = 0; i < nt; i++)
        total += mass[i];

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
            }
    }

    paro_sort_desc(mass, nt, scratch,
                   (void *)(((uintptr_t)(scratch + nt) + 7) & ~(uintptr_t)7));

    if (tg->mode == PARO_TARGET_DENSITY) {
        uint64_t want = tiles_for_density(tg->value, nt);
        for (size_t r = 0; r < nt && kept < want; r++)
            if (!keep[scratch[r]]) {
                keep[scratch[r]] = 1;
                kept++;
            }
    } else if (tg->mode == PARO_TARGET_RECALL) {
        double goal = tg->value * total;
        for (size_t r = 0; r < nt && kept_mass < goal; r++) {
            uint32_t i = scratch[r];
            if (!(mass[i] > 0.0))
                break; /* nothing left to gain */
            if (!keep[i]) {
                keep[i] = 1;
                kept++;
                kept_mass += mass[i];
            }
        }
    } else { /* threshold on the mean mass per element */
        for (size_t i = 0; i < nt; i++)
            if (!keep[i] && mass[i] / t->area[i] >= tg->value)
                keep[i] = 1;
    }

    /* Every query block keeps at least one tile: its largest. */
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
}
