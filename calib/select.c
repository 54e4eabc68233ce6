/* paro — per-head order scores and choice. */
#include "select.h"

#include <string.h> /* memcpy */

#include "largest.h" /* paro_largest_scratch_bytes */
#include "metrics.h" /* paro_metric_* */

size_t paro_score_scratch_bytes(size_t tiles)
{
    /* the buckets' sum of mass, a widened row, the peaks, the selection's */
    return 3 * tiles * sizeof(double) + paro_largest_scratch_bytes(tiles);
}

void paro_score_head(const paro_tiling *t, const paro_block_stats *st, uint32_t head,
                     double alpha, double score_recall, paro_head_choice *choice,
                     void *scratch)
{
    const size_t nt = paro_tiling_tiles(t);
    double *mass = scratch, *row = mass + nt, *peak_room = row + nt;
    void *select_space = peak_room + nt;
    double sparse[PARO_N_ORDERS], quant[PARO_N_ORDERS], combined[PARO_N_ORDERS];
    int valid[PARO_N_ORDERS];

    for (int slot = 0; slot < t->n_slots; slot++) {
        /* Orders are chosen from all samples: sum the buckets (one bucket
         * is its own sum). */
        const double *all = paro_block_stats_mass_row(st, 0, head, (uint32_t)slot, mass);
        if (st->n_buckets > 1) {
            if (all != mass)
                memcpy(mass, all, nt * sizeof *mass);
            for (uint32_t b = 1; b < st->n_buckets; b++) {
                const double *mb = paro_block_stats_mass_row(st, b, head, (uint32_t)slot, row);
                for (size_t i = 0; i < nt; i++)
                    mass[i] += mb[i];
            }
            all = mass;
        }
        sparse[slot] = paro_metric_sparse(all, nt, score_recall, select_space);
        quant[slot] = paro_metric_quant(
            all, paro_block_stats_peak_row(st, head, (uint32_t)slot, peak_room), t->area, nt);
        valid[slot] = 1;
    }
    paro_metric_combine(sparse, quant, valid, (size_t)t->n_slots, alpha, combined);
    int best = paro_metric_best(combined, valid, (size_t)t->n_slots);
    choice->order = t->slot_order[best];
    choice->margin = paro_metric_margin(combined, valid, (size_t)t->n_slots);
    for (int o = 0; o < PARO_N_ORDERS; o++) {
        int slot = t->slot_of_order[o];
        choice->scores[o][PARO_SCORE_SPARSE] = sparse[slot];
        choice->scores[o][PARO_SCORE_QUANT] = quant[slot];
        choice->scores[o][PARO_SCORE_COMBINED] = combined[slot];
    }
}
