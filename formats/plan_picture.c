/* paro — pictures of a plan (see plan_picture.h). */
#include "plan_picture.h"

#include <math.h>   /* floor, log10, pow */
#include <stdio.h>  /* snprintf */
#include <stdlib.h> /* malloc, free */
#include <string.h> /* strlen, memcpy */

const uint8_t paro_picture_background[3] = {18, 18, 24};
const uint8_t paro_picture_kept[3] = {238, 238, 232};
const uint8_t paro_picture_kept_text[3] = {140, 190, 240};
const uint8_t paro_picture_skipped[3] = {48, 48, 62};
static const uint8_t frame_colour[3] = {96, 96, 112};
static const uint8_t text_colour[3] = {225, 225, 225};
static const uint8_t dim_colour[3] = {150, 150, 165};

enum {
    MARGIN = 16,
    TEXT_SCALE = 2,
    LINE = 20,     /* line height at TEXT_SCALE: 7 * 2 pixels of glyph and 6 of space */
    GAP = 28,      /* between panels */
    SWATCH = 14,   /* legend squares and the height of the heat strip */
    LEVELS = 256
};

/* ---- the 5x7 font: 7 rows of 5 bits, the leftmost pixel in bit 4 ---- */

typedef struct glyph {
    char c;
    uint8_t rows[7];
} glyph;

static const glyph font[] = {
    {' ', {0, 0, 0, 0, 0, 0, 0}},
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}},
    {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}},
    {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}},
    {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}},
    {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}},
    {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
    {'A', {0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11}},
    {'B', {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E}},
    {'C', {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E}},
    {'D', {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C}},
    {'E', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}},
    {'F', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10}},
    {'G', {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F}},
    {'H', {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'I', {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'J', {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C}},
    {'K', {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}},
    {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F}},
    {'M', {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11}},
    {'N', {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}},
    {'O', {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}},
    {'P', {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10}},
    {'Q', {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D}},
    {'R', {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11}},
    {'S', {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E}},
    {'T', {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
    {'U', {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}},
    {'V', {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04}},
    {'W', {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A}},
    {'X', {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11}},
    {'Y', {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04}},
    {'Z', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F}},
    {'x', {0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11}},
    {'.', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C}},
    {',', {0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08}},
    {':', {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00}},
    {';', {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x04, 0x08}},
    {'-', {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00}},
    {'+', {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00}},
    {'/', {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00}},
    {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}},
    {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}},
    {'%', {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03}},
    {'=', {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00}},
    {'?', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04}},
    {'_', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F}},
    {'<', {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02}},
    {'>', {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08}},
    {'[', {0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E}},
    {']', {0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E}},
    {'#', {0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A}},
    {'*', {0x00, 0x04, 0x15, 0x0E, 0x15, 0x04, 0x00}},
    {'\'', {0x0C, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00}},
    {'!', {0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04}},
    {'"', {0x0A, 0x0A, 0x0A, 0x00, 0x00, 0x00, 0x00}},
};

static const glyph *find_glyph(char c)
{
    if (c >= 'a' && c <= 'z' && c != 'x')
        c = (char)(c - 'a' + 'A');
    for (size_t i = 0; i < sizeof font / sizeof font[0]; i++)
        if (font[i].c == c)
            return &font[i];
    return NULL;
}

int paro_picture_has_glyph(char c)
{
    return find_glyph(c) != NULL;
}

uint32_t paro_picture_text_width(const char *s, uint32_t scale)
{
    size_t n = strlen(s);
    return n ? (uint32_t)(n * 6 - 1) * scale : 0;
}

/* ---- drawing ---- */

void paro_picture_fill(paro_image *img, uint32_t x, uint32_t y, uint32_t w, uint32_t h,
                       const uint8_t rgb[3])
{
    for (uint32_t j = y; j < y + h && j < img->height; j++)
        for (uint32_t i = x; i < x + w && i < img->width; i++)
            memcpy(img->rgb + ((size_t)j * img->width + i) * 3, rgb, 3);
}

void paro_picture_frame(paro_image *img, uint32_t x, uint32_t y, uint32_t w, uint32_t h)
{
    paro_picture_fill(img, x - 1, y - 1, w + 2, 1, frame_colour);
    paro_picture_fill(img, x - 1, y + h, w + 2, 1, frame_colour);
    paro_picture_fill(img, x - 1, y, 1, h, frame_colour);
    paro_picture_fill(img, x + w, y, 1, h, frame_colour);
}

void paro_picture_text(paro_image *img, uint32_t x, uint32_t y, const char *s, uint32_t scale,
                       const uint8_t rgb[3])
{
    static const glyph *unknown;
    if (!unknown)
        unknown = find_glyph('?');
    for (; *s; s++, x += 6 * scale) {
        const glyph *g = find_glyph(*s);
        if (!g)
            g = unknown;
        for (uint32_t r = 0; r < 7; r++)
            for (uint32_t c = 0; c < 5; c++)
                if (g->rows[r] >> (4 - c) & 1)
                    paro_picture_fill(img, x + c * scale, y + r * scale, scale, scale, rgb);
    }
}

/* ---- colours ---- */

/* The heat-map ramp at t = num / den in [0, 1]: dark to bright, close to
 * matplotlib's "inferno", by linear interpolation between five stops in
 * integer arithmetic (the same colours everywhere). */
void paro_picture_ramp(uint32_t num, uint32_t den, uint8_t rgb[3])
{
    static const uint8_t stops[5][3] = {
        {0, 0, 4}, {87, 16, 110}, {188, 55, 84}, {249, 142, 9}, {252, 255, 164}};
    const uint32_t seg_len = 254;
    if (den == 0 || num > den)
        num = den = 1;
    uint32_t pos = (uint32_t)(((uint64_t)num * 4 * seg_len + den / 2) / den);
    uint32_t seg = pos / seg_len;
    if (seg > 3)
        seg = 3;
    uint32_t frac = pos - seg * seg_len;
    for (int i = 0; i < 3; i++)
        rgb[i] = (uint8_t)((stops[seg][i] * (seg_len - frac) + stops[seg + 1][i] * frac +
                            seg_len / 2) /
                           seg_len);
}

void paro_picture_heat_colour(uint8_t level, uint8_t lo, uint8_t rgb[3])
{
    if (lo < 1)
        lo = 1;
    if (lo > 254)
        lo = 254;
    paro_picture_ramp(level <= lo ? 0 : (uint32_t)(level - lo), 255u - lo, rgb);
}

/* The level the heat map of head h starts from: its smallest level above 0,
 * so that the colours span the head's own range, but at least a decade
 * below the largest tile, so that a nearly uniform map stays uniform. */
static uint8_t heat_floor(const paro_plan *p, uint32_t l, uint32_t b, uint32_t h)
{
    const uint8_t decade_below_top = (uint8_t)(255 - 254 / PARO_TILE_MASS_DECADES);
    uint8_t lo = 255;
    for (uint32_t q = 0; q < p->nq; q++)
        for (uint32_t k = 0; k < p->nk; k++) {
            uint8_t v = paro_plan_tile_mass_get(p, l, b, h, q, k);
            if (v && v < lo)
                lo = v;
        }
    return lo < decade_below_top ? lo : decade_below_top;
}

/* "3E-2": the relative mass of a level, one significant digit. */
static void fmt_share(uint8_t level, char *buf, size_t size)
{
    double v = paro_tile_mass_relative(level);
    if (v >= 0.95) {
        snprintf(buf, size, "1");
        return;
    }
    int e = (int)floor(log10(v));
    int m = (int)floor(v / pow(10.0, e) + 0.5);
    if (m >= 10) {
        m = 1;
        e++;
    }
    snprintf(buf, size, "%dE%d", m, e);
}

/* a blended with b: t / n of b (0 <= t <= n). */
static void blend(const uint8_t a[3], const uint8_t b[3], uint64_t t, uint64_t n, uint8_t out[3])
{
    for (int i = 0; i < 3; i++)
        out[i] = (uint8_t)((a[i] * (n - t) + b[i] * t + n / 2) / n);
}

/* ---- panels ---- */

typedef struct panel_geom {
    uint32_t cell, pool, w, h; /* w, h: pixels */
} panel_geom;

static panel_geom geom_of(const paro_plan *p, uint32_t want_px, uint32_t max_px, uint32_t max_cell)
{
    panel_geom g;
    uint32_t tiles = p->nq > p->nk ? p->nq : p->nk;
    g.pool = tiles > max_px ? (tiles + max_px - 1) / max_px : 1;
    uint32_t shown = (tiles + g.pool - 1) / g.pool;
    g.cell = g.pool > 1 ? 1 : want_px / shown;
    if (g.cell < 1)
        g.cell = 1;
    if (g.cell > max_cell)
        g.cell = max_cell;
    g.w = (p->nk + g.pool - 1) / g.pool * g.cell;
    g.h = (p->nq + g.pool - 1) / g.pool * g.cell;
    return g;
}

/* Whether block i of size `block` (in the permuted sequence of n tokens)
 * holds a text token. */
static int block_has_text(const paro_plan *p, uint32_t i, uint32_t block)
{
    uint64_t lo = (uint64_t)i * block, hi = lo + block;
    if (hi > p->n_tokens)
        hi = p->n_tokens;
    uint64_t t0 = p->text_last ? (uint64_t)p->n_tokens - p->text_tokens : 0;
    uint64_t t1 = t0 + p->text_tokens;
    return p->text_tokens && lo < t1 && t0 < hi;
}

static void draw_mask(paro_image *img, const paro_plan *p, uint32_t l, uint32_t b, uint32_t h,
                      uint32_t x0, uint32_t y0, const panel_geom *g)
{
    for (uint32_t py = 0; py * g->pool < p->nq; py++)
        for (uint32_t px = 0; px * g->pool < p->nk; px++) {
            uint8_t rgb[3];
            if (g->pool == 1) {
                int on = paro_plan_mask_get(p, l, b, h, py, px);
                int text = block_has_text(p, py, p->block_q) || block_has_text(p, px, p->block_k);
                memcpy(rgb, !on ? paro_picture_skipped : text ? paro_picture_kept_text
                                                               : paro_picture_kept, 3);
            } else {
                uint64_t kept = 0, all = 0;
                for (uint32_t q = py * g->pool; q < (py + 1) * g->pool && q < p->nq; q++)
                    for (uint32_t k = px * g->pool; k < (px + 1) * g->pool && k < p->nk; k++) {
                        kept += (uint64_t)paro_plan_mask_get(p, l, b, h, q, k);
                        all++;
                    }
                blend(paro_picture_skipped, paro_picture_kept, kept, all, rgb);
            }
            paro_picture_fill(img, x0 + px * g->cell, y0 + py * g->cell, g->cell, g->cell, rgb);
        }
}

static void draw_heat(paro_image *img, const paro_plan *p, uint32_t l, uint32_t b, uint32_t h,
                      uint32_t x0, uint32_t y0, const panel_geom *g, uint8_t lo)
{
    for (uint32_t py = 0; py * g->pool < p->nq; py++)
        for (uint32_t px = 0; px * g->pool < p->nk; px++) {
            uint8_t top = 0, rgb[3];
            for (uint32_t q = py * g->pool; q < (py + 1) * g->pool && q < p->nq; q++)
                for (uint32_t k = px * g->pool; k < (px + 1) * g->pool && k < p->nk; k++) {
                    uint8_t v = paro_plan_tile_mass_get(p, l, b, h, q, k);
                    top = v > top ? v : top;
                }
            paro_picture_heat_colour(top, lo, rgb);
            paro_picture_fill(img, x0 + px * g->cell, y0 + py * g->cell, g->cell, g->cell, rgb);
        }
}

/* The three mask colours with their names, one per line at (x, y), or on
 * one line when across is set; returns the width used. */
static uint32_t mask_legend(paro_image *img, uint32_t x, uint32_t y, int across)
{
    static const char *const names[3] = {"KEPT", "KEPT, HOLDS TEXT", "SKIPPED"};
    const uint8_t *colours[3] = {paro_picture_kept, paro_picture_kept_text,
                                 paro_picture_skipped};
    uint32_t at = x, widest = 0;
    for (int i = 0; i < 3; i++) {
        uint32_t w = SWATCH + 8 + paro_picture_text_width(names[i], TEXT_SCALE);
        if (img) {
            uint32_t sy = across ? y : y + (uint32_t)i * LINE;
            paro_picture_fill(img, at, sy, SWATCH, SWATCH, colours[i]);
            paro_picture_frame(img, at, sy, SWATCH, SWATCH);
            paro_picture_text(img, at + SWATCH + 8, sy, names[i], TEXT_SCALE, dim_colour);
        }
        if (across)
            at += w + 20;
        widest = w > widest ? w : widest;
    }
    return across ? at - 20 - x : widest;
}

paro_err paro_image_alloc(paro_image *img, uint64_t w, uint64_t h, paro_errinfo *ei)
{
    img->width = img->height = 0;
    img->rgb = NULL;
    if (w * h > PARO_PICTURE_MAX_PIXELS)
        return paro_error(ei, PARO_ERR_LIMIT, NULL, PARO_NO_OFFSET,
                          "the picture would be %llu x %llu pixels, more than the limit of %u",
                          (unsigned long long)w, (unsigned long long)h, PARO_PICTURE_MAX_PIXELS);
    img->rgb = malloc((size_t)(w * h * 3));
    if (!img->rgb)
        return paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory");
    img->width = (uint32_t)w;
    img->height = (uint32_t)h;
    for (size_t i = 0; i < (size_t)(w * h); i++)
        memcpy(img->rgb + 3 * i, paro_picture_background, 3);
    return PARO_OK;
}

void paro_image_free(paro_image *img)
{
    if (!img)
        return;
    free(img->rgb);
    img->rgb = NULL;
    img->width = img->height = 0;
}

static paro_err check_args(const paro_plan *p, uint32_t l, uint32_t b, paro_errinfo *ei)
{
    if (!p || l >= p->n_layers || b >= p->n_buckets)
        return paro_error(ei, PARO_ERR_USAGE, NULL, PARO_NO_OFFSET,
                          "no layer slot %u or bucket %u in the plan", l, b);
    return PARO_OK;
}

static double mean_of(const paro_plan *p, const double *a, uint32_t l, uint32_t b)
{
    double s = 0.0;
    for (uint32_t h = 0; h < p->heads; h++)
        s += a[paro_plan_bucket_index(p, l, b, h)];
    return s / p->heads;
}

static uint32_t max3(uint32_t a, uint32_t b, uint32_t c)
{
    uint32_t m = a > b ? a : b;
    return m > c ? m : c;
}

/* ---- one head ---- */

paro_err paro_picture_head(const paro_plan *p, uint32_t l, uint32_t b, uint32_t h,
                           paro_image *img, paro_picture_layout *lay, paro_errinfo *ei)
{
    paro_picture_layout local;
    if (!lay)
        lay = &local;
    memset(lay, 0, sizeof *lay);
    paro_err err = check_args(p, l, b, ei);
    if (err)
        return err;
    if (h >= p->heads)
        return paro_error(ei, PARO_ERR_USAGE, NULL, PARO_NO_OFFSET, "no head %u in the plan", h);
    const char *order = p->orders[p->head_order[paro_plan_head_index(p, l, h)]].name;
    const size_t at = paro_plan_bucket_index(p, l, b, h);
    char title[3][160];
    int n = snprintf(title[0], sizeof title[0], "LAYER %u   HEAD %u   ORDER %s", p->layers[l], h,
                     order);
    if (p->n_buckets > 1)
        snprintf(title[0] + n, sizeof title[0] - (size_t)n, "   BUCKET %u OF %u", b,
                 p->n_buckets);
    snprintf(title[1], sizeof title[1], "DENSITY %.3f   RECALL %.3f   %ux%u TILES OF %ux%u",
             p->density[at], p->recall[at], p->nq, p->nk, p->block_q, p->block_k);
    snprintf(title[2], sizeof title[2], "ROWS: QUERY BLOCKS, COLUMNS: KEY BLOCKS, IN ORDER %s",
             order);
    static const char *const heat_caption = "TILE MASS (MEAN OVER SAMPLES)";
    static const char *const heat_legend = "SHARE OF THE LARGEST TILE";
    static const char *const no_heat[2] = {"NO TILE MASSES IN THIS PLAN:", "THE MASK ONLY"};

    const panel_geom g = geom_of(p, 512, PARO_PICTURE_MAX_PANEL, 64);
    lay->cell = g.cell;
    lay->pool = g.pool;
    lay->panel_w = g.w;
    lay->panel_h = g.h;
    lay->has_heat = p->with_tile_mass && p->tile_mass;

    /* columns: the mask with its legend; the heat map with its legend, or a note */
    const uint32_t mask_col = max3(g.w + 2, mask_legend(NULL, 0, 0, 0),
                                   paro_picture_text_width("MASK", TEXT_SCALE));
    /* the same room with or without tile masses: pictures of one plan line up */
    const uint32_t heat_col =
        max3(max3(g.w + 2, LEVELS + 2, paro_picture_text_width(no_heat[0], TEXT_SCALE)),
             paro_picture_text_width(heat_caption, TEXT_SCALE),
             paro_picture_text_width(heat_legend, TEXT_SCALE));
    uint32_t body = mask_col + GAP + heat_col;
    for (int i = 0; i < 3; i++) {
        uint32_t w = paro_picture_text_width(title[i], TEXT_SCALE);
        body = w > body ? w : body;
    }
    const uint32_t top = MARGIN + 3 * LINE + 10;           /* panel captions */
    const uint32_t panel_y = top + LINE + 1;               /* inside the frame */
    const uint32_t below = panel_y + g.h + 1 + 12;         /* legends */
    const uint32_t mask_bottom = below + 3 * LINE;
    const uint32_t heat_bottom = below + SWATCH + 6 + 2 * LINE;
    const uint64_t width = (uint64_t)MARGIN * 2 + body;
    const uint64_t height = (uint64_t)(mask_bottom > heat_bottom ? mask_bottom : heat_bottom) +
                            MARGIN;
    if ((err = paro_image_alloc(img, width, height, ei)))
        return err;

    for (int i = 0; i < 3; i++)
        paro_picture_text(img, MARGIN, MARGIN + (uint32_t)i * LINE, title[i], TEXT_SCALE,
                          i == 0 ? text_colour : dim_colour);
    const uint32_t mask_x = MARGIN + 1, heat_x = MARGIN + mask_col + GAP + 1;
    paro_picture_text(img, mask_x - 1, top, "MASK", TEXT_SCALE, text_colour);
    paro_picture_frame(img, mask_x, panel_y, g.w, g.h);
    draw_mask(img, p, l, b, h, mask_x, panel_y, &g);
    mask_legend(img, mask_x - 1, below, 0);
    lay->mask_x = mask_x;
    lay->mask_y = panel_y;
    if (lay->has_heat) {
        paro_picture_text(img, heat_x - 1, top, heat_caption, TEXT_SCALE, text_colour);
        paro_picture_frame(img, heat_x, panel_y, g.w, g.h);
        const uint8_t lo = heat_floor(p, l, b, h);
        draw_heat(img, p, l, b, h, heat_x, panel_y, &g, lo);
        /* the legend strip: column i is the ramp at i / 255, from level lo
         * (the head's smallest tile) at the left to its largest tile */
        for (uint32_t i = 0; i < LEVELS; i++) {
            uint8_t rgb[3];
            paro_picture_ramp(i, LEVELS - 1, rgb);
            paro_picture_fill(img, heat_x + i, below, 1, SWATCH, rgb);
        }
        paro_picture_frame(img, heat_x, below, LEVELS, SWATCH);
        const uint32_t ly = below + SWATCH + 6;
        char left[16], mid[16];
        fmt_share(lo, left, sizeof left);
        fmt_share((uint8_t)((lo + 255) / 2), mid, sizeof mid);
        paro_picture_text(img, heat_x - 1, ly, left, TEXT_SCALE, dim_colour);
        paro_picture_text(img, heat_x + 128 - paro_picture_text_width(mid, TEXT_SCALE) / 2, ly,
                          mid, TEXT_SCALE, dim_colour);
        paro_picture_text(img, heat_x + LEVELS - paro_picture_text_width("1", TEXT_SCALE), ly, "1",
                          TEXT_SCALE, dim_colour);
        lay->heat_lo = lo;
        paro_picture_text(img, heat_x - 1, ly + LINE, heat_legend, TEXT_SCALE, dim_colour);
        lay->heat_x = heat_x;
        lay->heat_y = panel_y;
        lay->legend_x = heat_x;
        lay->legend_y = below;
    } else {
        for (int i = 0; i < 2; i++)
            paro_picture_text(img, heat_x - 1, panel_y + (uint32_t)i * LINE, no_heat[i],
                              TEXT_SCALE, dim_colour);
    }
    return PARO_OK;
}

/* ---- one layer, all heads ---- */

paro_err paro_picture_layer(const paro_plan *p, uint32_t l, uint32_t b, paro_image *img,
                            paro_picture_layout *lay, paro_errinfo *ei)
{
    paro_picture_layout local;
    if (!lay)
        lay = &local;
    memset(lay, 0, sizeof *lay);
    paro_err err = check_args(p, l, b, ei);
    if (err)
        return err;
    char title[2][160];
    int n = snprintf(title[0], sizeof title[0], "LAYER %u   %u HEADS", p->layers[l], p->heads);
    if (p->n_buckets > 1)
        snprintf(title[0] + n, sizeof title[0] - (size_t)n, "   BUCKET %u OF %u", b,
                 p->n_buckets);
    snprintf(title[1], sizeof title[1],
             "MEAN DENSITY %.3f   RECALL %.3f   %ux%u TILES OF %ux%u", mean_of(p, p->density, l, b),
             mean_of(p, p->recall, l, b), p->nq, p->nk, p->block_q, p->block_k);

    const panel_geom g = geom_of(p, 192, PARO_PICTURE_MAX_THUMB, 32);
    lay->cell = g.cell;
    lay->pool = g.pool;
    lay->panel_w = g.w;
    lay->panel_h = g.h;
    /* eight heads a row up to 64 heads, then a square */
    uint32_t cols = p->heads <= 8 ? p->heads : 8;
    if (p->heads > 64)
        while ((uint64_t)cols * cols < p->heads)
            cols++;
    const uint32_t rows = (p->heads + cols - 1) / cols;
    const uint32_t caption_w = paro_picture_text_width("D 0.000 R 0.000", TEXT_SCALE);
    const uint32_t step_x = (g.w + 2 > caption_w ? g.w + 2 : caption_w) + 20;
    const uint32_t step_y = g.h + 2 + 6 + 2 * LINE + 14;
    uint32_t body = cols * step_x - 20;
    body = max3(body, paro_picture_text_width(title[0], TEXT_SCALE),
                paro_picture_text_width(title[1], TEXT_SCALE));
    const uint32_t legend_w = mask_legend(NULL, 0, 0, 1);
    body = legend_w > body ? legend_w : body;
    const uint32_t grid_y = MARGIN + 3 * LINE + 12 + 1;
    const uint64_t width = (uint64_t)MARGIN * 2 + body;
    const uint64_t height = (uint64_t)grid_y + (uint64_t)rows * step_y - 14 + MARGIN;
    if ((err = paro_image_alloc(img, width, height, ei)))
        return err;
    paro_picture_text(img, MARGIN, MARGIN, title[0], TEXT_SCALE, text_colour);
    paro_picture_text(img, MARGIN, MARGIN + LINE, title[1], TEXT_SCALE, dim_colour);
    mask_legend(img, MARGIN, MARGIN + 2 * LINE + 2, 1);
    lay->cols = cols;
    lay->grid_x = MARGIN + 1;
    lay->grid_y = grid_y;
    lay->step_x = step_x;
    lay->step_y = step_y;
    for (uint32_t h = 0; h < p->heads; h++) {
        const uint32_t x = lay->grid_x + h % cols * step_x, y = grid_y + h / cols * step_y;
        paro_picture_frame(img, x, y, g.w, g.h);
        draw_mask(img, p, l, b, h, x, y, &g);
        const size_t at = paro_plan_bucket_index(p, l, b, h);
        char line[2][64];
        snprintf(line[0], sizeof line[0], "HEAD %u  %s", h,
                 p->orders[p->head_order[paro_plan_head_index(p, l, h)]].name);
        snprintf(line[1], sizeof line[1], "D %.3f R %.3f", p->density[at], p->recall[at]);
        paro_picture_text(img, x - 1, y + g.h + 1 + 6, line[0], TEXT_SCALE, text_colour);
        paro_picture_text(img, x - 1, y + g.h + 1 + 6 + LINE, line[1], TEXT_SCALE, dim_colour);
    }
    return PARO_OK;
}
