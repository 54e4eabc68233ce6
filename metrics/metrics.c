/* paro — block-sparse, quant and combined scores (see METRICS.md). */
#include "metrics.h"

#include "largest.h" /* paro_largest_until */

double paro_metric_sparse(const double *mass, size_t nt, double recall, void *scratch)
{
    if (nt == 0)
        return 0.0;
    paro_cut cut;
    paro_largest_until(mass, nt, NULL, recall, &cut, scratch);
    switch (cut.kind) {
    case PARO_CUT_EMPTY: /* no mass: nothing to rank the tiles by */
    case PARO_CUT_SHORT: /* the goal is above the total (recall > 1, or the
                            rounding of the total): every tile is needed */
        return 0.0;
    case PARO_CUT_MET: /* goal <= 0: no tile is needed */
        return 1.0;
    case PARO_CUT_CROSS:
        break;
    }
    /* The crossing tile counts with the part of it that is needed, in
     * (0, 1] since 0 < short_by <= mass. */
    const double part = cut.short_by / cut.mass;
    return 1.0 - ((double)cut.whole + part) / (double)nt;
}

double paro_metric_quant(const double *mass_sum, const double *peak_sum,
                         const double *area, size_t nt)
{
    double weighted_peak = 0.0, mass = 0.0;
    for (size_t t = 0; t < nt; t++) {
        weighted_peak += area[t] * peak_sum[t];
        mass += mass_sum[t];
    }
    if (!(mass > 0.0))
        return 1.0;
    return weighted_peak / mass;
}

void paro_metric_combine(const double *sparse, const double *quant, const int *valid,
                         size_t n, double alpha, double *combined)
{
    double max_sparse = 0.0, min_quant = 0.0;
    int first = 1;
    for (size_t i = 0; i < n; i++) {
        if (!valid[i])
            continue;
        if (sparse[i] > max_sparse)
            max_sparse = sparse[i];
        if (first || quant[i] < min_quant)
            min_quant = quant[i];
        first = 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (!valid[i]) {
            combined[i] = 0.0;
            continue;
        }
        double s = max_sparse > 0.0 ? sparse[i] / max_sparse : 1.0;
        double q = quant[i] > 0.0 && min_quant > 0.0 ? min_quant / quant[i] : 1.0;
        combined[i] = alpha * s + (1.0 - alpha) * q;
    }
}

int paro_metric_best(const double *combined, const int *valid, size_t n)
{
    int best = -1;
    for (size_t i = 0; i < n; i++)
        if (valid[i] && (best < 0 || combined[i] > combined[best]))
            best = (int)i;
    return best;
}

double paro_metric_margin(const double *combined, const int *valid, size_t n)
{
    int best = paro_metric_best(combined, valid, n);
    if (best < 0)
        return 0.0;
    int second = -1;
    for (size_t i = 0; i < n; i++)
        if (valid[i] && (int)i != best && (second < 0 || combined[i] > combined[second]))
            second = (int)i;
    if (second < 0)
        return 1.0;
    if (!(combined[best] > 0.0))
        return 0.0;
    return (combined[best] - combined[second]) / combined[best];
}
