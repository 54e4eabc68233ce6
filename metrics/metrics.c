/* paro — block-sparse, quant and combined scores (see METRICS.md). */
#include "metrics.h"

#include <stdint.h> /* uint32_t, uint64_t, uintptr_t */
#include <string.h> /* memcpy, memset */

#include "largest.h" /* paro_largest_until */

/* ---- sorting tile masses ------------------------------------------------ */

#define RADIX_BITS 11
#define RADIX (1u << RADIX_BITS)

size_t paro_sort_scratch_bytes(size_t n)
{
    /* keys and their ping-pong copy, the index ping-pong buffer, a histogram */
    return 2 * n * sizeof(uint64_t) + n * sizeof(uint32_t) + RADIX * sizeof(size_t) + 8;
}

void paro_sort_desc(const double *values, size_t n, uint32_t *order, void *scratch)
{
    uint64_t *key = scratch, *key_tmp = key + n;
    uint32_t *idx_tmp = (uint32_t *)(key_tmp + n);
    size_t *count = (size_t *)(((uintptr_t)(idx_tmp + n) + 7) & ~(uintptr_t)7);
    for (size_t i = 0; i < n; i++) {
        uint64_t bits;
        memcpy(&bits, &values[i], sizeof bits);
        key[i] = ~bits; /* non-negative doubles: larger value, larger bits */
        order[i] = (uint32_t)i;
    }
    /* LSD radix sort, ascending on ~bits (descending on the value); each pass
     * is stable, so equal values keep their index order. */
    for (unsigned shift = 0; shift < 64; shift += RADIX_BITS) {
        memset(count, 0, RADIX * sizeof *count);
        for (size_t i = 0; i < n; i++)
            count[(key[i] >> shift) & (RADIX - 1)]++;
        if (n && count[(key[0] >> shift) & (RADIX - 1)] == n)
            continue; /* every key has the same digit here */
        size_t sum = 0;
        for (unsigned d = 0; d < RADIX; d++) {
            size_t c = count[d];
            count[d] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++) {
            size_t at = count[(key[i] >> shift) & (RADIX - 1)]++;
            key_tmp[at] = key[i];
            idx_tmp[at] = order[i];
        }
        memcpy(key, key_tmp, n * sizeof *key);
        memcpy(order, idx_tmp, n * sizeof *order);
    }
}

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
