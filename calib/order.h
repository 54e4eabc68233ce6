/* paro — the six axis orders of the [F, H, W] token grid and their
 * permutations.
 *
 * An order is named outermost to innermost: in order "HWF" the token at
 * grid position (f, h, w) goes to permuted position h*W*F + w*F + f (plus the
 * text offset).  Text tokens never move: with text first they keep positions
 * 0..T-1, with text last positions F*H*W .. N-1.
 *
 * Two orders are equivalent when they give the same permutation, which
 * happens exactly when an axis has size 1.  Of equivalent orders the one with
 * the lowest code (the order of the enum below) is canonical: only it is
 * scored, and it is what a head is assigned.
 */
#ifndef PARO_ORDER_H_4e2f7d10
#define PARO_ORDER_H_4e2f7d10

#include <stdint.h> /* uint32_t */

#ifdef __cplusplus
extern "C" {
#endif

#define PARO_N_ORDERS 6

typedef enum paro_order {
    PARO_ORDER_FHW = 0, /* capture order */
    PARO_ORDER_FWH = 1,
    PARO_ORDER_HFW = 2,
    PARO_ORDER_HWF = 3,
    PARO_ORDER_WFH = 4,
    PARO_ORDER_WHF = 5
} paro_order;

enum { PARO_AXIS_F = 0, PARO_AXIS_H = 1, PARO_AXIS_W = 2 };

/* "FHW", ... */
const char *paro_order_name(int order);
/* Order code for a name, -1 when it is not one of the six. */
int paro_order_parse(const char *name);
/* Axis (PARO_AXIS_*) at position 0 (outermost) .. 2 (innermost). */
int paro_order_axis(int order, int position);

/* perm[p] = capture index of the token at permuted position p, for all
 * n = text + F*H*W positions. */
void paro_order_permutation(int order, const uint32_t grid[3], uint32_t text_tokens,
                            int text_last, uint32_t *perm);
/* pos[i] = permuted position of the token with capture index i. */
void paro_order_positions(int order, const uint32_t grid[3], uint32_t text_tokens,
                          int text_last, uint32_t *pos);

/* canonical[o] = lowest order code with the same permutation as o. */
void paro_order_canonical(const uint32_t grid[3], int canonical[PARO_N_ORDERS]);

#ifdef __cplusplus
}
#endif
#endif
