/* paro — pictures of a plan's masks, drawn into an RGB image (png.h writes
 * it).  Kept tiles are light on a dark ground; tile mass is a heat map on a
 * log scale with a legend strip; text is drawn with a built-in 5x7 font.
 *
 * Two pictures:
 *  - one head: its mask in its chosen order beside the heat map of its
 *    tile masses (when the plan has them: TILEMASS, format 1.1), with the
 *    order, density and recall written above.  The heat map's colours span
 *    the head's own range (from its smallest tile, or a decade below its
 *    largest when that is narrower), and the legend says which range;
 *  - one layer: the masks of all its heads in a grid, each with its head
 *    number, order, density and recall written under it.
 * A panel of more than PARO_PICTURE_MAX_PANEL tiles on a side shows several
 * tiles per pixel: the share of them kept, the largest mass.
 */
#ifndef PARO_PLAN_PICTURE_H_e1b7a05d
#define PARO_PLAN_PICTURE_H_e1b7a05d

#include <stdint.h> /* uint8_t, uint32_t */

#include "error.h" /* paro_err, paro_errinfo */
#include "plan.h"  /* paro_plan */

#ifdef __cplusplus
extern "C" {
#endif

#define PARO_PICTURE_MAX_PANEL 2048u        /* head picture: pixels per panel side */
#define PARO_PICTURE_MAX_THUMB 512u         /* layer picture: pixels per head */
#define PARO_PICTURE_MAX_PIXELS (64u << 20) /* width x height */

typedef struct paro_image {
    uint32_t width, height;
    uint8_t *rgb; /* height rows of width * 3 bytes */
} paro_image;

/* Colours, for tests and the legend. */
extern const uint8_t paro_picture_background[3];
extern const uint8_t paro_picture_kept[3];      /* a kept tile */
extern const uint8_t paro_picture_kept_text[3]; /* a kept tile holding text tokens */
extern const uint8_t paro_picture_skipped[3];   /* a tile the mask skips */
/* The heat-map ramp, dark to bright, at t = num / den in [0, 1]. */
void paro_picture_ramp(uint32_t num, uint32_t den, uint8_t rgb[3]);
/* The colour of a tile-mass level (0 = no mass or below 1e-6 of the
 * largest tile, 255 = the largest) on a map whose colours start at level lo:
 * the ramp at (level - lo) / (255 - lo), its darkest end at or below lo. */
void paro_picture_heat_colour(uint8_t level, uint8_t lo, uint8_t rgb[3]);

/* Where things were drawn, so that tests can find them. */
typedef struct paro_picture_layout {
    uint32_t cell;        /* pixels per tile side (1 when pooled) */
    uint32_t pool;        /* tiles per pixel side (1 unless the panel is too large) */
    uint32_t panel_w, panel_h; /* pixels of one panel (thumbnail), without frame */
    /* head picture */
    uint32_t mask_x, mask_y;     /* top left pixel of tile (0, 0) of the mask */
    uint32_t heat_x, heat_y;     /* same for the heat map (0, 0 when not drawn) */
    uint32_t legend_x, legend_y; /* the legend strip: the ramp at i / 255 at column legend_x + i */
    uint8_t heat_lo;             /* the level the heat map's colours start from */
    int has_heat;
    /* layer picture: head h at column h % cols, row h / cols */
    uint32_t cols, grid_x, grid_y, step_x, step_y; /* thumbnail (h) at grid + (col, row) * step */
} paro_picture_layout;

/* Draws one head (layer slot l, bucket b, head h).  lay may be NULL. */
paro_err paro_picture_head(const paro_plan *p, uint32_t l, uint32_t b, uint32_t h,
                           paro_image *img, paro_picture_layout *lay, paro_errinfo *ei);
/* Draws every head of layer slot l for bucket b.  lay may be NULL. */
paro_err paro_picture_layer(const paro_plan *p, uint32_t l, uint32_t b, paro_image *img,
                            paro_picture_layout *lay, paro_errinfo *ei);
/* Allocates a w x h image filled with paro_picture_background;
 * PARO_ERR_LIMIT beyond PARO_PICTURE_MAX_PIXELS. */
paro_err paro_image_alloc(paro_image *img, uint64_t w, uint64_t h, paro_errinfo *ei);
void paro_image_free(paro_image *img);

/* Drawing, clipped to the image: a filled rectangle, and a one-pixel frame
 * just outside the w x h area at (x, y) (x, y >= 1). */
void paro_picture_fill(paro_image *img, uint32_t x, uint32_t y, uint32_t w, uint32_t h,
                       const uint8_t rgb[3]);
void paro_picture_frame(paro_image *img, uint32_t x, uint32_t y, uint32_t w, uint32_t h);

/* Text in the built-in 5x7 font, each font pixel a scale x scale square,
 * glyphs 6 * scale apart: letters (lower case drawn as upper case, except
 * 'x', a small times sign), digits, space and . , : ; - + / ( ) % = ? _ < > [ ]
 * # * ' ! "; any other character is drawn as '?'. */
uint32_t paro_picture_text_width(const char *s, uint32_t scale);
void paro_picture_text(paro_image *img, uint32_t x, uint32_t y, const char *s, uint32_t scale,
                       const uint8_t rgb[3]);
/* 1 when c has a glyph of its own (not drawn as '?'). */
int paro_picture_has_glyph(char c);

#ifdef __cplusplus
}
#endif
#endif
