/* paro — axis orders of the token grid and their permutations. */
#include "order.h"

#include <string.h> /* strcmp */

static const char *const order_names[PARO_N_ORDERS] = {"FHW", "FWH", "HFW",
                                                       "HWF", "WFH", "WHF"};
/* Axis at positions outermost..innermost, per order. */
static const int order_axes[PARO_N_ORDERS][3] = {
    {PARO_AXIS_F, PARO_AXIS_H, PARO_AXIS_W}, {PARO_AXIS_F, PARO_AXIS_W, PARO_AXIS_H},
    {PARO_AXIS_H, PARO_AXIS_F, PARO_AXIS_W}, {PARO_AXIS_H, PARO_AXIS_W, PARO_AXIS_F},
    {PARO_AXIS_W, PARO_AXIS_F, PARO_AXIS_H}, {PARO_AXIS_W, PARO_AXIS_H, PARO_AXIS_F},
};

const char *paro_order_name(int order)
{
    return order >= 0 && order < PARO_N_ORDERS ? order_names[order] : "?";
}

int paro_order_parse(const char *name)
{
    for (int o = 0; o < PARO_N_ORDERS; o++)
        if (!strcmp(name, order_names[o]))
            return o;
    return -1;
}

int paro_order_axis(int order, int position)
{
    return order_axes[order][position];
}

void paro_order_permutation(int order, const uint32_t grid[3], uint32_t text_tokens,
                            int text_last, uint32_t *perm)
{
    const uint32_t F = grid[0], H = grid[1], W = grid[2];
    const uint32_t visual = F * H * W;
    const uint32_t base = text_last ? 0 : text_tokens;
    const int *ax = order_axes[order];
    const uint32_t stride[3] = {H * W, W, 1};
    const uint32_t n0 = grid[ax[0]], n1 = grid[ax[1]], n2 = grid[ax[2]];
    uint32_t p = base;
    for (uint32_t a = 0; a < n0; a++)
        for (uint32_t b = 0; b < n1; b++)
            for (uint32_t c = 0; c < n2; c++)
                perm[p++] = base + a * stride[ax[0]] + b * stride[ax[1]] + c * stride[ax[2]];
    uint32_t text_start = text_last ? visual : 0;
    for (uint32_t t = 0; t < text_tokens; t++)
        perm[text_start + t] = text_start + t;
}

void paro_order_positions(int order, const uint32_t grid[3], uint32_t text_tokens,
                          int text_last, uint32_t *pos)
{
    /* Built from the permutation, inverted in place cycle by cycle; the top
     * bit marks entries already inverted (n < 2^31 by the manifest limits). */
    const uint32_t n = text_tokens + grid[0] * grid[1] * grid[2];
    const uint32_t done = 0x80000000u;
    paro_order_permutation(order, grid, text_tokens, text_last, pos);
    for (uint32_t start = 0; start < n; start++) {
        if (pos[start] & done)
            continue;
        uint32_t p = start, next = pos[start];
        for (;;) {
            uint32_t after = pos[next];
            pos[next] = p | done; /* pos[perm[p]] = p */
            if (next == start)
                break;
            p = next;
            next = after;
        }
    }
    for (uint32_t i = 0; i < n; i++)
        pos[i] &= 0x7fffffffu;
}

void paro_order_canonical(const uint32_t grid[3], int canonical[PARO_N_ORDERS])
{
    /* Two orders give the same permutation exactly when they agree after
     * dropping the axes of size 1 (a size-1 axis contributes nothing to any
     * index, and the relative nesting of the other axes is all that is left). */
    int key[PARO_N_ORDERS][3];
    for (int o = 0; o < PARO_N_ORDERS; o++) {
        int n = 0;
        for (int i = 0; i < 3; i++)
            if (grid[order_axes[o][i]] > 1)
                key[o][n++] = order_axes[o][i];
        while (n < 3)
            key[o][n++] = -1;
    }
    for (int o = 0; o < PARO_N_ORDERS; o++) {
        canonical[o] = o;
        for (int c = 0; c < o; c++)
            if (key[c][0] == key[o][0] && key[c][1] == key[o][1] && key[c][2] == key[o][2]) {
                canonical[o] = c;
                break;
            }
    }
}
