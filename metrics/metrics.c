/* paro — block-sparse, quant and combined scores (see METRICS.md). */
#include "metrics.h"

#include <stdlib.h> /* qsort */
#include <string.h> /* memcpy */

static int cmp_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

double paro_metric_sparse(const double *mass, size_t nt, double recall, double *scratch)
{
    if (nt == 0)
        return 0.0;
    memcpy(scratch, mass, nt * sizeof *scratch);
    qsort(scratch, nt, sizeof *scratch, cmp_desc);
    double total = 0.0;
    for (size_t i = nt; i-- > 0;) /* smallest first: less rounding */
        total += scratch[i];
    if (!(total > 0.0))
        return 0.0;
    double goal = recall * total;
    double kept = 0.0;
    for (size_t i = 0; i < nt; i++) {
        if (kept + scratch[i] >= goal) {
            /* Tile i crosses the goal: count the part of it that is needed. */
            double part = scratch[i] > 0.0 ? (goal - kept) / scratch[i] : 0.0;
            if (part < 0.0)
                part = 0.0;
            double needed = ((double)i + part) / (double)nt;
            return 1.0 - needed;
        }
        kept += scratch[i];
    }
    return 0.0; /* rounding left the goal just out of reach: nothing to skip */
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
