/* paro — the picture of an eval density sweep (`paro eval --density-sweep
 * LIST --png FILE`): what a user looks at to pick a density.
 *
 * Two panels share the x axis, the mean achieved density over all heads:
 * the recall (attention mass inside the kept tiles) and the sparse output's
 * relative L2 error against dense attention.  Each holds two lines: the
 * plan's chosen orders and capture order (FHW), with a square marker at
 * every density of the sweep.  Drawn with plan_picture.h's primitives, so
 * the same result always gives the same pixels.
 */
#ifndef PARO_EVAL_PICTURE_H_5b9e2c11
#define PARO_EVAL_PICTURE_H_5b9e2c11

#include "error.h"        /* paro_err, paro_errinfo */
#include "eval.h"         /* paro_eval_result */
#include "plan_picture.h" /* paro_image */

#ifdef __cplusplus
extern "C" {
#endif

extern const uint8_t paro_sweep_chosen_colour[3];  /* the chosen orders' line */
extern const uint8_t paro_sweep_capture_colour[3]; /* capture order's line */

/* Where the panels were drawn, so that tests can find a value's pixel. */
typedef struct paro_sweep_layout {
    uint32_t plot_w, plot_h;          /* pixels of each panel's plot area */
    uint32_t recall_x, recall_y;      /* top left pixel of the recall plot */
    uint32_t error_x, error_y;        /* top left pixel of the error plot */
    double x_max;                     /* density at the right edge (0 at the left) */
    double error_max;                 /* error at the top (recall: 1 at the top) */
} paro_sweep_layout;

/* The pixel column of density x, and the row of value y on an axis whose
 * top is y_max, inside a plot at (px, py): what the drawing uses. */
uint32_t paro_sweep_px(const paro_sweep_layout *lay, uint32_t px, double x);
uint32_t paro_sweep_py(const paro_sweep_layout *lay, uint32_t py, double y, double y_max);

/* Draws r's sweep (r->n_sweep >= 1; PARO_ERR_USAGE otherwise).  lay may be
 * NULL. */
paro_err paro_eval_sweep_picture(const paro_eval_result *r, paro_image *img,
                                 paro_sweep_layout *lay, paro_errinfo *ei);

#ifdef __cplusplus
}
#endif

#endif
