/* paro — the picture of an eval density sweep (see eval_picture.h). */
#include "eval_picture.h"

#include <math.h>   /* floor, log10, pow, isfinite, lround */
#include <stdio.h>  /* snprintf */
#include <stdlib.h> /* abs */

const uint8_t paro_sweep_chosen_colour[3] = {245, 150, 40};
const uint8_t paro_sweep_capture_colour[3] = {140, 190, 240};
static const uint8_t text_colour[3] = {225, 225, 225};
static const uint8_t dim_colour[3] = {150, 150, 165};
static const uint8_t grid_colour[3] = {44, 44, 56};

enum {
    MARGIN = 16,
    TEXT_SCALE = 2,
    CHAR_W = 12, /* 6 * TEXT_SCALE */
    LINE = 20,
    LABEL_W = 84, /* y tick labels: up to 6 characters and a gap */
    PLOT_W = 420,
    PLOT_H = 300,
    PANEL_GAP = 48,
    MARKER = 9,
    PEN = 3
};

uint32_t paro_sweep_px(const paro_sweep_layout *lay, uint32_t px, double x)
{
    double t = x / lay->x_max;
    t = t < 0.0 ? 0.0 : t > 1.0 ? 1.0 : t;
    return px + (uint32_t)lround(t * (lay->plot_w - 1));
}

uint32_t paro_sweep_py(const paro_sweep_layout *lay, uint32_t py, double y, double y_max)
{
    double t = y / y_max;
    t = t < 0.0 ? 0.0 : t > 1.0 ? 1.0 : t;
    return py + (uint32_t)lround((1.0 - t) * (lay->plot_h - 1));
}

/* The smallest of 1, 2, 2.5, 5 times a power of ten that is >= v, and how
 * many tick intervals divide it into round steps. */
static double nice_ceil(double v, int *intervals)
{
    static const double mant[] = {1.0, 2.0, 2.5, 5.0, 10.0};
    static const int ticks[] = {5, 4, 5, 5, 5};
    if (!(v > 0.0) || !isfinite(v)) {
        *intervals = 5;
        return 1.0;
    }
    double e = pow(10.0, floor(log10(v)));
    for (int i = 0; i < 5; i++)
        if (mant[i] * e >= v * (1.0 - 1e-12)) {
            *intervals = ticks[i];
            return mant[i] * e;
        }
    *intervals = 5;
    return 10.0 * e;
}

/* A thick segment from (x0, y0) to (x1, y1), Bresenham's walk with a
 * PEN x PEN square at every step. */
static void segment(paro_image *img, int x0, int y0, int x1, int y1, const uint8_t rgb[3])
{
    int dx = abs(x1 - x0), dy = -abs(y1 - y0);
    int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1, err = dx + dy;
    for (;;) {
        paro_picture_fill(img, (uint32_t)(x0 - PEN / 2), (uint32_t)(y0 - PEN / 2), PEN, PEN, rgb);
        if (x0 == x1 && y0 == y1)
            break;
        int e2 = 2 * err;
        if (e2 >= dy) {
            err += dy;
            x0 += sx;
        }
        if (e2 <= dx) {
            err += dx;
            y0 += sy;
        }
    }
}

typedef struct series {
    double x[PARO_EVAL_MAX_SWEEP], y[PARO_EVAL_MAX_SWEEP];
    size_t n;
} series;

static void draw_series(paro_image *img, const paro_sweep_layout *lay, uint32_t px, uint32_t py,
                        double y_max, const series *s, const uint8_t rgb[3])
{
    for (size_t i = 0; i + 1 < s->n; i++)
        segment(img, (int)paro_sweep_px(lay, px, s->x[i]),
                (int)paro_sweep_py(lay, py, s->y[i], y_max),
                (int)paro_sweep_px(lay, px, s->x[i + 1]),
                (int)paro_sweep_py(lay, py, s->y[i + 1], y_max), rgb);
    for (size_t i = 0; i < s->n; i++)
        paro_picture_fill(img, paro_sweep_px(lay, px, s->x[i]) - MARKER / 2,
                          paro_sweep_py(lay, py, s->y[i], y_max) - MARKER / 2, MARKER, MARKER,
                          rgb);
}

/* Frame, grid lines and tick labels of one panel; its caption above. */
static void draw_axes(paro_image *img, const paro_sweep_layout *lay, uint32_t px, uint32_t py,
                      const char *caption, double y_max, int y_intervals, int x_intervals)
{
    paro_picture_text(img, px - 1, py - LINE - 2, caption, TEXT_SCALE, text_colour);
    char label[32];
    for (int i = 0; i <= y_intervals; i++) {
        double v = y_max * i / y_intervals;
        uint32_t y = paro_sweep_py(lay, py, v, y_max);
        if (i > 0 && i < y_intervals)
            paro_picture_fill(img, px, y, lay->plot_w, 1, grid_colour);
        snprintf(label, sizeof label, "%g", v);
        uint32_t w = paro_picture_text_width(label, TEXT_SCALE);
        paro_picture_text(img, px - 8 - w, y - 7, label, TEXT_SCALE, dim_colour);
    }
    for (int i = 0; i <= x_intervals; i++) {
        double v = lay->x_max * i / x_intervals;
        uint32_t x = paro_sweep_px(lay, px, v);
        if (i > 0 && i < x_intervals)
            paro_picture_fill(img, x, py, 1, lay->plot_h, grid_colour);
        snprintf(label, sizeof label, "%g", v);
        uint32_t w = paro_picture_text_width(label, TEXT_SCALE);
        paro_picture_text(img, x - w / 2, py + lay->plot_h + 8, label, TEXT_SCALE, dim_colour);
    }
    paro_picture_frame(img, px, py, lay->plot_w, lay->plot_h);
    const char *x_caption = "MEAN DENSITY";
    paro_picture_text(img, px + (lay->plot_w - paro_picture_text_width(x_caption, TEXT_SCALE)) / 2,
                      py + lay->plot_h + 8 + LINE, x_caption, TEXT_SCALE, dim_colour);
}

paro_err paro_eval_sweep_picture(const paro_eval_result *r, paro_image *img,
                                 paro_sweep_layout *lay_out, paro_errinfo *ei)
{
    if (!r || r->n_sweep == 0 || r->n_sweep > PARO_EVAL_MAX_SWEEP)
        return paro_error(ei, PARO_ERR_USAGE, NULL, PARO_NO_OFFSET,
                          "the picture needs a density sweep");
    /* the points, in increasing target density */
    size_t idx[PARO_EVAL_MAX_SWEEP];
    for (size_t i = 0; i < r->n_sweep; i++) {
        size_t j = i;
        while (j > 0 && r->sweep_density[idx[j - 1]] > r->sweep_density[i]) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = i;
    }
    series recall[2] = {{{0}, {0}, 0}, {{0}, {0}, 0}}, error[2] = {{{0}, {0}, 0}, {{0}, {0}, 0}};
    double x_top = 0.0, error_top = 0.0;
    for (size_t i = 0; i < r->n_sweep; i++) {
        double m[PARO_SWEEP_N_METRICS];
        paro_eval_sweep_summary(r, -1, idx[i], m);
        const double x[2] = {m[PARO_SWEEP_DENSITY], m[PARO_SWEEP_DENSITY_CAPTURE]};
        const double rc[2] = {m[PARO_SWEEP_RECALL], m[PARO_SWEEP_RECALL_CAPTURE]};
        const double er[2] = {m[PARO_SWEEP_OUT_REL_L2], m[PARO_SWEEP_OUT_REL_L2_CAPTURE]};
        for (int s = 0; s < 2; s++) {
            if (!isfinite(x[s]))
                continue;
            x_top = x[s] > x_top ? x[s] : x_top;
            if (isfinite(rc[s])) {
                recall[s].x[recall[s].n] = x[s];
                recall[s].y[recall[s].n++] = rc[s];
            }
            if (isfinite(er[s])) {
                error[s].x[error[s].n] = x[s];
                error[s].y[error[s].n++] = er[s];
                error_top = er[s] > error_top ? er[s] : error_top;
            }
        }
    }

    paro_sweep_layout lay;
    lay.plot_w = PLOT_W;
    lay.plot_h = PLOT_H;
    /* density axis: up to the next tenth above the largest density */
    double tenths = ceil(x_top * 10.0 - 1e-9);
    tenths = tenths < 1.0 ? 1.0 : tenths > 10.0 ? 10.0 : tenths;
    lay.x_max = tenths / 10.0;
    int x_intervals = (int)tenths <= 5 ? (int)tenths : ((int)tenths % 2 ? (int)tenths : (int)tenths / 2);
    int error_intervals;
    lay.error_max = nice_ceil(error_top, &error_intervals);

    const uint32_t top = MARGIN + 3 * LINE + 8 + LINE;
    lay.recall_x = MARGIN + LABEL_W;
    lay.recall_y = top;
    lay.error_x = lay.recall_x + PLOT_W + PANEL_GAP + LABEL_W;
    lay.error_y = top;
    const uint32_t width = lay.error_x + PLOT_W + MARGIN + 8;
    const uint32_t height = top + PLOT_H + 8 + 2 * LINE + MARGIN;
    paro_err err = paro_image_alloc(img, width, height, ei);
    if (err)
        return err;

    char line[160];
    snprintf(line, sizeof line, "DENSITY SWEEP: %u LAYER%s X %u HEADS, %zu SAMPLE%s", r->n_layers,
             r->n_layers == 1 ? "" : "S", r->heads, r->n_samples, r->n_samples == 1 ? "" : "S");
    paro_picture_text(img, MARGIN, MARGIN, line, TEXT_SCALE, text_colour);
    snprintf(line, sizeof line, "MASKS REBUILT AT EACH DENSITY FROM THE %s SAMPLES",
             r->basis == PARO_EVAL_BASIS_CALIBRATION ? "CALIBRATION" : "EVALUATION");
    paro_picture_text(img, MARGIN, MARGIN + LINE, line, TEXT_SCALE, dim_colour);
    /* the legend */
    uint32_t lx = MARGIN, ly = MARGIN + 2 * LINE + 4;
    paro_picture_fill(img, lx, ly + 2, 24, PEN, paro_sweep_chosen_colour);
    paro_picture_fill(img, lx + 12 - MARKER / 2, ly + 3 - MARKER / 2, MARKER, MARKER,
                      paro_sweep_chosen_colour);
    const char *chosen = "CHOSEN ORDERS", *capture = "CAPTURE ORDER (FHW)";
    paro_picture_text(img, lx + 32, ly - 4, chosen, TEXT_SCALE, text_colour);
    lx += 32 + paro_picture_text_width(chosen, TEXT_SCALE) + 28;
    paro_picture_fill(img, lx, ly + 2, 24, PEN, paro_sweep_capture_colour);
    paro_picture_fill(img, lx + 12 - MARKER / 2, ly + 3 - MARKER / 2, MARKER, MARKER,
                      paro_sweep_capture_colour);
    paro_picture_text(img, lx + 32, ly - 4, capture, TEXT_SCALE, text_colour);

    draw_axes(img, &lay, lay.recall_x, lay.recall_y, "RECALL (MASS KEPT)", 1.0, 5, x_intervals);
    draw_axes(img, &lay, lay.error_x, lay.error_y, "OUTPUT ERROR (REL. L2)", lay.error_max,
              error_intervals, x_intervals);
    /* capture order first, so the chosen orders' line is on top */
    for (int s = 1; s >= 0; s--) {
        const uint8_t *rgb = s ? paro_sweep_capture_colour : paro_sweep_chosen_colour;
        draw_series(img, &lay, lay.recall_x, lay.recall_y, 1.0, &recall[s], rgb);
        draw_series(img, &lay, lay.error_x, lay.error_y, lay.error_max, &error[s], rgb);
    }
    if (lay_out)
        *lay_out = lay;
    return PARO_OK;
}
