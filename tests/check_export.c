/* paro tests — what paro writes besides plans: PNG pictures of a plan, .npy
 * headers, ZIP archives (npz), and the npz/safetensors/JSON exports. */
#include <check.h>    /* START_TEST, ck_assert*, Suite, TCase */
#include <stdio.h>    /* snprintf */
#include <stdlib.h>   /* malloc, calloc, free, getenv, system */
#include <string.h>   /* memcmp, memcpy, memset, strlen, strstr */
#include <unistd.h>   /* access, X_OK */
#include <zlib.h>     /* crc32, uncompress, inflateInit2, inflate, inflateEnd */

#include "npy_write.h"     /* paro_npy_header */
#include "plan.h"          /* paro_plan_alloc, paro_plan_mask_set, paro_plan_set_tile_mass */
#include "plan_export.h"   /* paro_plan_export */
#include "plan_picture.h"  /* paro_picture_head, paro_picture_layer, paro_picture_text */
#include "png.h"           /* paro_png_encode */
#include "safetensors.h"   /* paro_st_open, paro_st_find */
#include "testutil.h"      /* tu_rand, tu_mkdtemp, tu_path, tu_read_file, tu_run_suite */
#include "zip_write.h"     /* paro_zip_* */

/* ---- a small plan: grid 1x2x3 + 2 text tokens (first), blocks of 2 ->
 * 4 x 4 tiles, 3 heads, 2 layers, 2 buckets; masks and tile masses drawn
 * from seed ---- */

static paro_plan *small_plan(uint64_t seed, int with_tile_mass, uint32_t heads)
{
    paro_plan_order orders[6];
    static const char *const names[6] = {"FHW", "FWH", "HFW", "HWF", "WFH", "WHF"};
    memset(orders, 0, sizeof orders);
    for (int o = 0; o < 6; o++) {
        memcpy(orders[o].kind, "axes", 5);
        memcpy(orders[o].name, names[o], 4);
    }
    uint32_t layers[2] = {0, 3};
    paro_plan_sample samples[2] = {{0, 0, 900.0, -1, 0}, {1, 1, 100.0, -1, 1}};
    paro_plan shape;
    memset(&shape, 0, sizeof shape);
    shape.tool = "paro 0.1.0";
    shape.model = "small";
    shape.backend = "cpu";
    shape.grid[0] = 1;
    shape.grid[1] = 2;
    shape.grid[2] = 3;
    shape.text_tokens = 2;
    shape.n_tokens = 8;
    shape.heads = heads;
    shape.head_dim = 8;
    shape.scale = 0.25;
    shape.model_layers = 4;
    shape.n_layers = 2;
    shape.layers = layers;
    shape.block_q = shape.block_k = 2;
    shape.nq = shape.nk = 4;
    shape.n_orders = 6;
    shape.orders = orders;
    shape.alpha = 0.5;
    shape.score_recall = 0.95;
    shape.target_mode = PARO_TARGET_DENSITY;
    shape.target_value = 0.5;
    shape.keep_text = 1;
    shape.n_buckets = 2;
    shape.n_samples = 2;
    shape.samples = samples;
    shape.with_tile_mass = with_tile_mass;
    paro_plan *p = NULL;
    ck_assert_int_eq(paro_plan_alloc(&p, &shape, NULL), PARO_OK);
    uint64_t st = seed;
    for (uint32_t i = 0; i < p->n_layers * p->heads; i++)
        p->head_order[i] = (uint8_t)(tu_rand(&st) % 6);
    for (size_t i = 0; i < (size_t)p->n_layers * p->n_buckets * p->heads; i++) {
        p->density[i] = tu_uniform(&st);
        p->recall[i] = tu_uniform(&st);
    }
    double mass[16];
    for (uint32_t l = 0; l < p->n_layers; l++)
        for (uint32_t b = 0; b < p->n_buckets; b++)
            for (uint32_t h = 0; h < p->heads; h++) {
                for (uint32_t t = 0; t < 16; t++) {
                    paro_plan_mask_set(p, l, b, h, t / 4, t % 4, (tu_rand(&st) & 3) != 0);
                    mass[t] = 1e-7 + tu_uniform(&st) * (t % 5 == 0 ? 1.0 : 1e-3);
                }
                paro_plan_set_tile_mass(p, l, b, h, mass);
            }
    return p;
}

/* ---- PNG: a decoder written from the spec, for the tests ---- */

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int paeth(int a, int b, int c)
{
    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/* Decodes an 8-bit RGB PNG written in one IHDR, IDATs, IEND; checks every
 * chunk's CRC.  Returns the pixels, malloc'ed; *idat_chunks counts IDATs. */
static int filters_seen[5]; /* rows per filter type, over every decode */

static uint8_t *png_decode(const uint8_t *png, size_t len, uint32_t *w, uint32_t *h,
                           int *idat_chunks)
{
    static const uint8_t sig[8] = {137, 80, 78, 71, 13, 10, 26, 10};
    ck_assert_uint_ge(len, 8);
    ck_assert_mem_eq(png, sig, 8);
    size_t at = 8, zlen = 0;
    uint8_t *z = malloc(len);
    int seen_end = 0;
    *idat_chunks = 0;
    while (at < len) {
        ck_assert_uint_le(at + 12, len);
        uint32_t n = be32(png + at);
        ck_assert_uint_le(at + 12 + n, len);
        const uint8_t *type = png + at + 4, *data = png + at + 8;
        ck_assert_uint_eq(be32(data + n), (uint32_t)crc32(0, type, n + 4));
        if (at == 8) {
            ck_assert_mem_eq(type, "IHDR", 4);
            ck_assert_uint_eq(n, 13);
            *w = be32(data);
            *h = be32(data + 4);
            ck_assert_uint_eq(data[8], 8);
            ck_assert_uint_eq(data[9], 2);
            ck_assert_uint_eq(data[10] | data[11] | data[12], 0);
        } else if (!memcmp(type, "IDAT", 4)) {
            memcpy(z + zlen, data, n);
            zlen += n;
            (*idat_chunks)++;
        } else {
            ck_assert_mem_eq(type, "IEND", 4);
            ck_assert_uint_eq(n, 0);
            seen_end = 1;
        }
        at += 12 + n;
    }
    ck_assert(seen_end);
    const size_t stride = (size_t)*w * 3;
    uLongf raw_len = (uLongf)((stride + 1) * *h);
    uint8_t *raw = malloc(raw_len), *rgb = malloc(stride * *h);
    ck_assert_int_eq(uncompress(raw, &raw_len, z, (uLong)zlen), Z_OK);
    ck_assert_uint_eq(raw_len, (stride + 1) * *h);
    for (uint32_t y = 0; y < *h; y++) {
        const uint8_t *in = raw + y * (stride + 1);
        uint8_t *out = rgb + y * stride;
        const uint8_t *up = y ? out - stride : NULL;
        ck_assert_uint_le(in[0], 4);
        filters_seen[in[0]]++;
        for (size_t i = 0; i < stride; i++) {
            int a = i >= 3 ? out[i - 3] : 0, b = up ? up[i] : 0, c = up && i >= 3 ? up[i - 3] : 0;
            int pred = in[0] == 1 ? a : in[0] == 2 ? b : in[0] == 3 ? (a + b) / 2
                       : in[0] == 4 ? paeth(a, b, c) : 0;
            out[i] = (uint8_t)(in[1 + i] + pred);
        }
    }
    free(raw);
    free(z);
    return rgb;
}

START_TEST(test_png_roundtrip)
{
    /* gradients, flat areas and noise, so that every filter gets chosen, and
     * an image large enough for several IDAT chunks */
    static const uint32_t sizes[3][2] = {{1, 1}, {37, 19}, {700, 700}};
    for (int s = 0; s < 3; s++) {
        uint32_t w = sizes[s][0], h = sizes[s][1];
        uint8_t *rgb = malloc((size_t)w * h * 3);
        uint64_t st = 5;
        for (uint32_t y = 0; y < h; y++)
            for (uint32_t x = 0; x < w; x++) {
                uint8_t *px = rgb + ((size_t)y * w + x) * 3;
                int band = s == 2 ? 3 : (int)((y / 7 + x / 11) % 4);
                px[0] = band == 0 ? (uint8_t)x : band == 1 ? 200 : (uint8_t)tu_rand(&st);
                px[1] = band == 2 ? (uint8_t)(x + y) : (uint8_t)(y * 3);
                px[2] = band == 3 ? (uint8_t)tu_rand(&st) : 17;
                if (s == 2) /* noise: incompressible, so more than one IDAT */
                    px[0] = (uint8_t)tu_rand(&st), px[1] = (uint8_t)tu_rand(&st);
            }
        uint8_t *png = NULL, *png2 = NULL;
        size_t len, len2;
        paro_errinfo ei;
        paro_errinfo_clear(&ei);
        ck_assert_int_eq(paro_png_encode(rgb, w, h, &png, &len, &ei), PARO_OK);
        ck_assert_int_eq(paro_png_encode(rgb, w, h, &png2, &len2, &ei), PARO_OK);
        ck_assert_uint_eq(len, len2);
        ck_assert_mem_eq(png, png2, len); /* deterministic */
        uint32_t gw, gh;
        int chunks;
        uint8_t *back = png_decode(png, len, &gw, &gh, &chunks);
        ck_assert_uint_eq(gw, w);
        ck_assert_uint_eq(gh, h);
        ck_assert_mem_eq(back, rgb, (size_t)w * h * 3);
        if (s == 2)
            ck_assert_int_gt(chunks, 1);
        free(back);
        free(png);
        free(png2);
        free(rgb);
    }
    for (int f = 0; f < 5; f++)
        ck_assert_msg(filters_seen[f] > 0, "filter %d never chosen", f);
    uint8_t px[3] = {0}, *png = NULL;
    size_t len;
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_png_encode(px, 0, 1, &png, &len, &ei), PARO_ERR_USAGE);
    ck_assert_ptr_null(png);
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_png_encode(px, 1, PARO_PNG_MAX_SIDE + 1, &png, &len, &ei),
                     PARO_ERR_USAGE);
    ck_assert_ptr_nonnull(strstr(ei.msg, "each side must be in [1, 65535]"));
}
END_TEST

/* ---- pictures ---- */

static const uint8_t *pixel(const paro_image *img, uint32_t x, uint32_t y)
{
    ck_assert_uint_lt(x, img->width);
    ck_assert_uint_lt(y, img->height);
    return img->rgb + ((size_t)y * img->width + x) * 3;
}

static int tile_has_text(const paro_plan *p, uint32_t i)
{
    return i * p->block_q < p->text_tokens; /* text first */
}

START_TEST(test_picture_head)
{
    paro_plan *p = small_plan(3, 1, 3);
    for (uint32_t b = 0; b < 2; b++) {
        paro_image img;
        paro_picture_layout lay;
        paro_errinfo ei;
        paro_errinfo_clear(&ei);
        ck_assert_int_eq(paro_picture_head(p, 1, b, 2, &img, &lay, &ei), PARO_OK);
        ck_assert(lay.has_heat);
        ck_assert_uint_eq(lay.pool, 1);
        ck_assert_uint_eq(lay.cell, 64); /* 4 tiles, at most 64 pixels each */
        ck_assert_uint_eq(lay.panel_w, 4 * 64);
        for (uint32_t q = 0; q < 4; q++)
            for (uint32_t k = 0; k < 4; k++) {
                const uint32_t cx = lay.cell * k + lay.cell / 2, cy = lay.cell * q + lay.cell / 2;
                const uint8_t *want =
                    !paro_plan_mask_get(p, 1, b, 2, q, k) ? paro_picture_skipped
                    : tile_has_text(p, q) || tile_has_text(p, k) ? paro_picture_kept_text
                                                                  : paro_picture_kept;
                ck_assert_mem_eq(pixel(&img, lay.mask_x + cx, lay.mask_y + cy), want, 3);
                /* the whole tile, to its last pixel */
                ck_assert_mem_eq(pixel(&img, lay.mask_x + lay.cell * (k + 1) - 1,
                                       lay.mask_y + lay.cell * (q + 1) - 1),
                                 want, 3);
                uint8_t heat[3];
                paro_picture_heat_colour(paro_plan_tile_mass_get(p, 1, b, 2, q, k), lay.heat_lo,
                                         heat);
                ck_assert_mem_eq(pixel(&img, lay.heat_x + cx, lay.heat_y + cy), heat, 3);
            }
        /* the legend strip runs through the ramp, the largest tile at its end */
        for (uint32_t i = 0; i < 256; i++) {
            uint8_t ramp[3];
            paro_picture_ramp(i, 255, ramp);
            ck_assert_mem_eq(pixel(&img, lay.legend_x + i, lay.legend_y + 3), ramp, 3);
        }
        uint8_t top[3];
        paro_picture_heat_colour(255, lay.heat_lo, top);
        ck_assert_mem_eq(pixel(&img, lay.legend_x + 255, lay.legend_y), top, 3);
        /* something is written in the title */
        size_t lit = 0;
        for (uint32_t y = 16; y < 30; y++)
            for (uint32_t x = 16; x < 200; x++)
                lit += pixel(&img, x, y)[0] > 150;
        ck_assert_uint_gt(lit, 100);
        paro_image_free(&img);
    }
    /* without tile masses: the mask only, the same geometry */
    paro_plan *q = small_plan(3, 0, 3);
    paro_image img;
    paro_picture_layout lay;
    ck_assert_int_eq(paro_picture_head(q, 1, 0, 2, &img, &lay, NULL), PARO_OK);
    ck_assert(!lay.has_heat);
    ck_assert_uint_eq(lay.heat_x, 0);
    ck_assert_mem_eq(pixel(&img, lay.mask_x + 10, lay.mask_y + 10),
                     paro_plan_mask_get(q, 1, 0, 2, 0, 0) ? paro_picture_kept_text
                                                          : paro_picture_skipped,
                     3);
    paro_image_free(&img);
    /* bad arguments */
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_picture_head(q, 2, 0, 0, &img, NULL, &ei), PARO_ERR_USAGE);
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_picture_head(q, 0, 0, 3, &img, NULL, &ei), PARO_ERR_USAGE);
    paro_plan_free(q);
    paro_plan_free(p);
}
END_TEST

START_TEST(test_picture_layer)
{
    paro_plan *p = small_plan(4, 0, 11);
    paro_image img;
    paro_picture_layout lay;
    ck_assert_int_eq(paro_picture_layer(p, 0, 1, &img, &lay, NULL), PARO_OK);
    ck_assert_uint_eq(lay.cols, 8);
    for (uint32_t h = 0; h < 11; h++)
        for (uint32_t t = 0; t < 16; t++) {
            const uint32_t q = t / 4, k = t % 4;
            const uint32_t x = lay.grid_x + h % lay.cols * lay.step_x + k * lay.cell + 1;
            const uint32_t y = lay.grid_y + h / lay.cols * lay.step_y + q * lay.cell + 1;
            const uint8_t *want =
                !paro_plan_mask_get(p, 0, 1, h, q, k) ? paro_picture_skipped
                : tile_has_text(p, q) || tile_has_text(p, k) ? paro_picture_kept_text
                                                              : paro_picture_kept;
            ck_assert_mem_eq(pixel(&img, x, y), want, 3);
        }
    ck_assert_uint_ge(img.height, lay.grid_y + lay.step_y + lay.panel_h);
    paro_image_free(&img);
    paro_plan_free(p);
    /* too many heads for one picture */
    p = small_plan(4, 0, 4096);
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_picture_layer(p, 0, 0, &img, &lay, &ei), PARO_ERR_LIMIT);
    ck_assert_ptr_nonnull(strstr(ei.msg, "more than the limit"));
    ck_assert_ptr_null(img.rgb);
    paro_plan_free(p);
}
END_TEST

/* A plan of one head with n x n tiles of one token: kept when (q + k) % 4
 * is 0, so every 2 x 2 square of tiles keeps exactly one; tile masses
 * largest on the diagonal. */
static paro_plan *square_plan(uint32_t n, uint32_t heads)
{
    paro_plan_order order;
    memset(&order, 0, sizeof order);
    memcpy(order.kind, "axes", 5);
    memcpy(order.name, "FHW", 4);
    uint32_t layer = 0;
    paro_plan shape;
    memset(&shape, 0, sizeof shape);
    shape.tool = "paro 0.1.0";
    shape.model = "square";
    shape.backend = "cpu";
    shape.grid[0] = shape.grid[1] = 1;
    shape.grid[2] = n;
    shape.n_tokens = n;
    shape.heads = heads;
    shape.head_dim = 8;
    shape.scale = 0.25;
    shape.model_layers = 1;
    shape.n_layers = 1;
    shape.layers = &layer;
    shape.block_q = shape.block_k = 1;
    shape.nq = shape.nk = n;
    shape.n_orders = 1;
    shape.orders = &order;
    shape.alpha = 0.5;
    shape.score_recall = 0.95;
    shape.target_mode = PARO_TARGET_DENSITY;
    shape.target_value = 0.25;
    shape.n_buckets = 1;
    shape.with_tile_mass = 1;
    paro_plan *p = NULL;
    ck_assert_int_eq(paro_plan_alloc(&p, &shape, NULL), PARO_OK);
    double *mass = malloc((size_t)n * n * sizeof *mass);
    for (uint32_t h = 0; h < heads; h++) {
        for (uint32_t q = 0; q < n; q++)
            for (uint32_t k = 0; k < n; k++) {
                paro_plan_mask_set(p, 0, 0, h, q, k, (q + k) % 4 == 0);
                mass[(size_t)q * n + k] = q == k ? 1.0 : 1e-4;
            }
        paro_plan_set_tile_mass(p, 0, 0, h, mass);
        p->density[h] = 0.25;
        p->recall[h] = 0.5;
    }
    free(mass);
    return p;
}

START_TEST(test_picture_pooled)
{
    /* 600 tiles a side: thumbnails show 2 x 2 tiles a pixel, a quarter kept */
    uint8_t quarter[3];
    for (int i = 0; i < 3; i++)
        quarter[i] = (uint8_t)((paro_picture_skipped[i] * 3 + paro_picture_kept[i] + 2) / 4);
    paro_plan *p = square_plan(600, 2);
    paro_image img;
    paro_picture_layout lay;
    ck_assert_int_eq(paro_picture_layer(p, 0, 0, &img, &lay, NULL), PARO_OK);
    ck_assert_uint_eq(lay.pool, 2);
    ck_assert_uint_eq(lay.cell, 1);
    ck_assert_uint_eq(lay.panel_w, 300);
    for (uint32_t h = 0; h < 2; h++)
        for (uint32_t y = 0; y < 300; y += 37)
            for (uint32_t x = 0; x < 300; x += 41)
                ck_assert_mem_eq(pixel(&img, lay.grid_x + h * lay.step_x + x, lay.grid_y + y),
                                 quarter, 3);
    paro_image_free(&img);
    paro_plan_free(p);
    /* 2100 tiles a side: the head picture shows 2 x 2 tiles a pixel, the
     * largest mass of each square in the heat map */
    p = square_plan(2100, 1);
    ck_assert_int_eq(paro_picture_head(p, 0, 0, 0, &img, &lay, NULL), PARO_OK);
    ck_assert_uint_eq(lay.pool, 2);
    ck_assert_uint_eq(lay.panel_w, 1050);
    uint8_t diag[3], off[3];
    paro_picture_heat_colour(255, lay.heat_lo, diag);
    paro_picture_heat_colour(paro_plan_tile_mass_get(p, 0, 0, 0, 0, 1), lay.heat_lo, off);
    ck_assert(memcmp(diag, off, 3) != 0);
    for (uint32_t i = 0; i < 1050; i += 53) {
        ck_assert_mem_eq(pixel(&img, lay.mask_x + i, lay.mask_y + i), quarter, 3);
        ck_assert_mem_eq(pixel(&img, lay.heat_x + i, lay.heat_y + i), diag, 3);
        ck_assert_mem_eq(pixel(&img, lay.heat_x + (i + 5) % 1050, lay.heat_y + i), off, 3);
    }
    paro_image_free(&img);
    paro_plan_free(p);
}
END_TEST

START_TEST(test_font)
{
    static const char all[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;-+/()%=?_<>[]#*'!\"x";
    for (const char *c = all; *c; c++)
        ck_assert_msg(paro_picture_has_glyph(*c), "no glyph for '%c'", *c);
    ck_assert(paro_picture_has_glyph('q')); /* drawn as 'Q' */
    ck_assert(!paro_picture_has_glyph('~'));
    ck_assert(!paro_picture_has_glyph('\t'));
    ck_assert_uint_eq(paro_picture_text_width("", 2), 0);
    ck_assert_uint_eq(paro_picture_text_width("AB", 2), 22);
    /* distinct glyphs look distinct; a missing one is drawn as '?'; lower
     * case as upper case */
    uint8_t *buf = calloc(40 * 20 * 3, 1);
    paro_image img = {40, 20, buf};
    static const uint8_t white[3] = {255, 255, 255};
    uint8_t shots[5][40 * 20 * 3];
    const char *texts[5] = {"0", "O", "~", "?", "o"};
    for (int i = 0; i < 5; i++) {
        memset(buf, 0, 40 * 20 * 3);
        paro_picture_text(&img, 1, 1, texts[i], 2, white);
        memcpy(shots[i], buf, sizeof shots[i]);
    }
    ck_assert(memcmp(shots[0], shots[1], sizeof shots[0]) != 0);
    ck_assert_mem_eq(shots[2], shots[3], sizeof shots[0]);
    ck_assert_mem_eq(shots[4], shots[1], sizeof shots[0]);
    /* glyphs never leave their 5 x 7 cell */
    for (uint32_t y = 0; y < 20; y++)
        for (uint32_t x = 0; x < 40; x++)
            if (shots[1][(y * 40 + x) * 3])
                ck_assert(x >= 1 && x < 11 && y >= 1 && y < 15);
    free(buf);
}
END_TEST

/* ---- npy headers ---- */

START_TEST(test_npy_header)
{
    /* the bytes numpy 1.24 writes (numpy.save) for these arrays */
    static const struct {
        const char *descr;
        uint32_t ndim;
        uint64_t shape[5];
        const char *dict;
    } cases[] = {
        {"|i1", 2, {2, 3}, "{'descr': '|i1', 'fortran_order': False, 'shape': (2, 3), }"},
        {"|b1", 1, {1}, "{'descr': '|b1', 'fortran_order': False, 'shape': (1,), }"},
        {"<U3", 1, {2}, "{'descr': '<U3', 'fortran_order': False, 'shape': (2,), }"},
        {"<f4", 3, {4, 5, 6}, "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 5, 6), }"},
        {"<i4", 0, {0}, "{'descr': '<i4', 'fortran_order': False, 'shape': (), }"},
        {"<i4", 5, {10, 42, 48, 278, 278},
         "{'descr': '<i4', 'fortran_order': False, 'shape': (10, 42, 48, 278, 278), }"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[PARO_NPY_HEADER_MAX];
        size_t n = paro_npy_header(cases[i].descr, cases[i].shape, cases[i].ndim, buf);
        ck_assert_uint_eq(n % 64, 0);
        ck_assert_mem_eq(buf, "\x93NUMPY\x01\x00", 8);
        ck_assert_uint_eq((uint8_t)buf[8] | (uint8_t)buf[9] << 8, n - 10);
        size_t dl = strlen(cases[i].dict);
        ck_assert_mem_eq(buf + 10, cases[i].dict, dl);
        /* room for the first axis to grow to 21 digits, then padding */
        char first[24];
        int digits = cases[i].ndim ? snprintf(first, sizeof first, "%llu",
                                              (unsigned long long)cases[i].shape[0])
                                   : 21;
        ck_assert_uint_ge(n - 10 - dl - 1, (size_t)(21 - digits) + 1);
        ck_assert_uint_le(n - 10 - dl - 1, (size_t)(21 - digits) + 64);
        for (size_t k = 10 + dl; k < n - 1; k++)
            ck_assert_int_eq(buf[k], ' ');
        ck_assert_int_eq(buf[n - 1], '\n');
        if (i < 4) /* these four are exactly 128 bytes in numpy's output */
            ck_assert_uint_eq(n, 128);
    }
    char buf[PARO_NPY_HEADER_MAX];
    uint64_t shape[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    ck_assert_uint_eq(paro_npy_header("<i4", shape, 9, buf), 0);
    ck_assert_uint_eq(paro_npy_header("<a-very-long-descr", shape, 1, buf), 0);
}
END_TEST

/* ---- ZIP ---- */


/* A member of `size` bytes: byte i is (i * 7 + i / 300) & 0xff. */
static paro_err pattern_source(void *user, uint64_t offset, uint8_t *buf, size_t n,
                               paro_errinfo *ei)
{
    (void)user;
    (void)ei;
    for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)((offset + i) * 7 + (offset + i) / 300);
    return PARO_OK;
}

static uint16_t le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
    return le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* Reads the archive back from its central directory, as unzip does, and
 * checks each member against pattern_source. */
static void check_zip(const tu_membuf *m, const char *const *names, const uint64_t *sizes,
                      const int *methods, size_t n, int zip64)
{
    const uint8_t *end = m->p + m->len - 22;
    ck_assert_uint_eq(le32(end), 0x06054b50);
    uint64_t count = le16(end + 10), cd_size = le32(end + 12), cd_off = le32(end + 16);
    if (zip64) {
        const uint8_t *loc = end - 20;
        ck_assert_uint_eq(le32(loc), 0x07064b50);
        const uint8_t *rec = m->p + le64(loc + 8);
        ck_assert_uint_eq(le32(rec), 0x06064b50);
        ck_assert_uint_eq(le64(rec + 4), 44);
        count = le64(rec + 32);
        cd_size = le64(rec + 40);
        cd_off = le64(rec + 48);
        ck_assert_uint_eq(le32(end + 12), 0xffffffffu);
    }
    ck_assert_uint_eq(count, n);
    const uint8_t *c = m->p + cd_off;
    for (size_t i = 0; i < n; i++) {
        ck_assert_uint_eq(le32(c), 0x02014b50);
        uint32_t name_len = le16(c + 28), extra_len = le16(c + 30);
        uint64_t csize = le32(c + 20), usize = le32(c + 24), off = le32(c + 42);
        ck_assert_uint_eq(le16(c + 10), methods[i]);
        ck_assert_mem_eq(c + 46, names[i], strlen(names[i]));
        if (zip64) {
            const uint8_t *x = c + 46 + name_len;
            ck_assert_uint_eq(le16(x), 1);
            ck_assert_uint_eq(le16(x + 2), 24);
            ck_assert_uint_eq(usize, 0xffffffffu);
            usize = le64(x + 4);
            csize = le64(x + 12);
            off = le64(x + 20);
        }
        ck_assert_uint_eq(usize, sizes[i]);
        const uint8_t *lh = m->p + off;
        ck_assert_uint_eq(le32(lh), 0x04034b50);
        ck_assert_uint_eq(le32(lh + 14), le32(c + 16)); /* the CRC, in both headers */
        ck_assert_uint_eq(le16(lh + 12), 0x0021);      /* 1980-01-01 */
        const uint8_t *data = lh + 30 + le16(lh + 26) + le16(lh + 28);
        uint8_t *want = malloc(usize + 1), *got = malloc(usize + 1);
        pattern_source(NULL, 0, want, usize, NULL);
        if (methods[i] == PARO_ZIP_STORE) {
            ck_assert_uint_eq(csize, usize);
            memcpy(got, data, usize);
        } else {
            z_stream zs;
            memset(&zs, 0, sizeof zs);
            ck_assert_int_eq(inflateInit2(&zs, -15), Z_OK);
            zs.next_in = (Bytef *)(uintptr_t)data;
            zs.avail_in = (uInt)csize;
            zs.next_out = got;
            zs.avail_out = (uInt)usize + 1;
            ck_assert_int_eq(inflate(&zs, Z_FINISH), Z_STREAM_END);
            ck_assert_uint_eq(zs.total_out, usize);
            inflateEnd(&zs);
        }
        ck_assert_mem_eq(got, want, usize);
        ck_assert_uint_eq((uint32_t)crc32(0, got, (uInt)usize), le32(c + 16));
        free(want);
        free(got);
        c += 46 + name_len + extra_len + le16(c + 32);
    }
    ck_assert_uint_eq((uint64_t)(c - (m->p + cd_off)), cd_size);
}

START_TEST(test_zip)
{
    const char *names[4] = {"a.npy", "b.npy", "empty.npy", "big.npy"};
    const uint64_t sizes[4] = {1000, 5000, 0, 3u << 20};
    const int methods[4] = {PARO_ZIP_STORE, PARO_ZIP_DEFLATE, PARO_ZIP_DEFLATE, PARO_ZIP_DEFLATE};
    for (int zip64 = 0; zip64 < 2; zip64++) {
        tu_membuf m = {0};
        paro_zip *z = NULL;
        paro_errinfo ei;
        paro_errinfo_clear(&ei);
        ck_assert_int_eq(paro_zip_open(&z, tu_mem_sink, &m, zip64 ? 0 : UINT64_MAX, &ei), PARO_OK);
        for (int i = 0; i < 4; i++)
            ck_assert_int_eq(
                paro_zip_add(z, names[i], sizes[i], methods[i], pattern_source, NULL, &ei),
                PARO_OK);
        ck_assert_int_eq(paro_zip_finish(z, &ei), PARO_OK);
        paro_zip_free(z);
        check_zip(&m, names, sizes, methods, 4, zip64);
        free(m.p);
    }
    paro_zip *z = NULL;
    tu_membuf m = {0};
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_zip_open(&z, tu_mem_sink, &m, UINT64_MAX, &ei), PARO_OK);
    ck_assert_int_eq(paro_zip_add(z, "", 1, PARO_ZIP_STORE, pattern_source, NULL, &ei),
                     PARO_ERR_USAGE);
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_zip_add(z, "x", 1, 12, pattern_source, NULL, &ei), PARO_ERR_USAGE);
    paro_zip_free(z);
    free(m.p);
}
END_TEST

/* ---- the safetensors writer's integer dtypes and metadata ---- */

static paro_err bytes_fill(void *user, size_t index, void *dst, paro_errinfo *ei)
{
    (void)ei;
    static const size_t sizes[4] = {3, 8, 2, 4};
    uint8_t *out = dst;
    for (size_t i = 0; i < sizes[index]; i++)
        out[i] = (uint8_t)(user ? (i + index) & 1 : 0);
    return PARO_OK;
}

START_TEST(test_safetensors_ext)
{
    char *dir = tu_mkdtemp(), *path = tu_path(dir, "t.safetensors");
    paro_st_write_tensor t[4];
    memset(t, 0, sizeof t);
    const char *names[4] = {"i8", "i32", "bool", "f16"};
    for (int i = 0; i < 4; i++) {
        t[i].name = names[i];
        t[i].ndim = 1;
        t[i].dtype = PARO_DTYPE_F16;
    }
    t[0].shape[0] = 3;
    t[1].shape[0] = 2;
    t[2].shape[0] = 2;
    t[3].shape[0] = 2;
    const char *ints[4] = {"I8", "I32", "BOOL", NULL};
    const char *meta[4] = {"order_names", "[\"FHW\"]", "k\xc3\xbc", "v"};
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    ck_assert_msg(paro_st_write_stream_meta(path, t, ints, 4, bytes_fill, path, meta, 2, &ei) ==
                      PARO_OK,
                  "%s", ei.msg);
    paro_st_file *f = NULL;
    ck_assert_msg(paro_st_open(path, &f, &ei) == PARO_OK, "%s", ei.msg);
    static const char *const dtypes[4] = {"I8", "I32", "BOOL", "F16"};
    static const uint64_t nbytes[4] = {3, 8, 2, 4};
    for (int i = 0; i < 4; i++) {
        const paro_st_tensor *x = paro_st_find(f, names[i]);
        ck_assert_str_eq(x->dtype_name, dtypes[i]);
        ck_assert_uint_eq(x->nbytes, nbytes[i]);
    }
    paro_st_close(f);
    size_t n;
    unsigned char *b = tu_read_file(path, &n);
    static const char want[] =
        "{\"__metadata__\":{\"order_names\":\"[\\\"FHW\\\"]\",\"k\xc3\xbc\":\"v\"},\"i8\":";
    ck_assert_mem_eq(b + 8, want, sizeof want - 1);
    free(b);
    /* refused: a dtype paro does not write, a repeated or invalid key */
    const char *bad_ints[4] = {"I8", "F64", NULL, NULL};
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_st_write_stream_meta(path, t, bad_ints, 4, bytes_fill, NULL, meta, 2,
                                               &ei),
                     PARO_ERR_USAGE);
    ck_assert_ptr_nonnull(strstr(ei.msg, "I8, I32, BOOL"));
    const char *dup[4] = {"a", "1", "a", "2"}, *bad_utf8[2] = {"a", "\xff"};
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_st_write_stream_meta(path, t, ints, 4, bytes_fill, NULL, dup, 2, &ei),
                     PARO_ERR_USAGE);
    ck_assert_ptr_nonnull(strstr(ei.msg, "given twice"));
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(
        paro_st_write_stream_meta(path, t, ints, 4, bytes_fill, NULL, bad_utf8, 1, &ei),
        PARO_ERR_USAGE);
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_st_write_stream_meta(path, t, ints, 4, bytes_fill, NULL, NULL, 1, &ei),
                     PARO_ERR_USAGE);
    tu_rmtree(dir);
    free(path);
    free(dir);
}
END_TEST

/* ---- exports ---- */

/* Debian's python3 with numpy, when it is there (run-all passes PYTHON). */
static const char *python(void)
{
    const char *py = getenv("PYTHON");
    if (py && *py)
        return py;
    return access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : NULL;
}

START_TEST(test_export_files)
{
    char *dir = tu_mkdtemp();
    paro_plan *p = small_plan(9, 1, 3);
    static const char *const files[5] = {"a.npz", "a.json", "a.safetensors", "c.npz", "z.npz"};
    static const paro_export_format formats[5] = {PARO_EXPORT_NPZ, PARO_EXPORT_JSON,
                                                  PARO_EXPORT_SAFETENSORS, PARO_EXPORT_NPZ,
                                                  PARO_EXPORT_NPZ};
    static const paro_export_options opts[5] = {{0, 0}, {0, 0}, {0, 0}, {1, 0}, {0, 1}};
    for (int i = 0; i < 5; i++) {
        char *path = tu_path(dir, files[i]), *again = tu_path(dir, "again");
        paro_errinfo ei;
        paro_errinfo_clear(&ei);
        ck_assert_msg(paro_plan_export(p, formats[i], path, &opts[i], &ei) == PARO_OK, "%s",
                      ei.msg);
        ck_assert_int_eq(paro_plan_export(p, formats[i], again, &opts[i], &ei), PARO_OK);
        size_t n1, n2;
        unsigned char *b1 = tu_read_file(path, &n1), *b2 = tu_read_file(again, &n2);
        ck_assert_uint_eq(n1, n2);
        ck_assert_mem_eq(b1, b2, n1); /* the same plan, the same bytes */
        free(b1);
        free(b2);
        free(path);
        free(again);
    }
    /* the safetensors file passes paro's own strict reader, with our dtypes */
    char *path = tu_path(dir, "a.safetensors");
    paro_st_file *st = NULL;
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    ck_assert_msg(paro_st_open(path, &st, &ei) == PARO_OK, "%s", ei.msg);
    ck_assert_uint_eq(paro_st_count(st), 8);
    const paro_st_tensor *t = paro_st_find(st, "kv_indices");
    ck_assert_str_eq(t->dtype_name, "I32");
    ck_assert_uint_eq(t->ndim, 5);
    ck_assert_uint_eq(t->shape[0], 2);
    ck_assert_uint_eq(t->shape[4], 4);
    ck_assert_str_eq(paro_st_find(st, "masks")->dtype_name, "BOOL");
    ck_assert_str_eq(paro_st_find(st, "orders")->dtype_name, "I8");
    ck_assert_str_eq(paro_st_find(st, "density")->dtype_name, "F32");
    /* kv_indices: kept key blocks ascending, then zeros; kv_num_blocks counts them */
    const uint8_t *kv = paro_st_data(st, t);
    const uint8_t *num = paro_st_data(st, paro_st_find(st, "kv_num_blocks"));
    for (uint32_t b = 0; b < 2; b++)
        for (uint32_t l = 0; l < 2; l++)
            for (uint32_t h = 0; h < 3; h++)
                for (uint32_t q = 0; q < 4; q++) {
                    const size_t row = ((b * 2 + l) * 3 + h) * 4 + q;
                    uint32_t kept = 0;
                    for (uint32_t k = 0; k < 4; k++)
                        if (paro_plan_mask_get(p, l, b, h, q, k))
                            ck_assert_uint_eq(le32(kv + 4 * (row * 4 + kept++)), k);
                    ck_assert_uint_eq(le32(num + 4 * row), kept);
                    for (uint32_t k = kept; k < 4; k++)
                        ck_assert_uint_eq(le32(kv + 4 * (row * 4 + k)), 0);
                }
    paro_st_close(st);
    free(path);
    /* the ZIP64 and the deflated npz hold the same arrays as the plain one */
    const char *py = python();
    if (py) {
        char cmd[4096];
        snprintf(cmd, sizeof cmd,
                 "%s -W error -c 'import numpy, sys\n"
                 "a, c, z = (numpy.load(sys.argv[1] + n, allow_pickle=False) "
                 "for n in (\"/a.npz\", \"/c.npz\", \"/z.npz\"))\n"
                 "assert a.files == c.files == z.files, (a.files, z.files)\n"
                 "for k in a.files:\n"
                 "    assert (a[k] == c[k]).all() and (a[k] == z[k]).all(), k\n"
                 "    assert a[k].dtype == z[k].dtype and a[k].shape == z[k].shape, k\n"
                 "' %s",
                 py, dir);
        ck_assert_int_eq(system(cmd), 0);
    }
    /* errors: an unknown format, a folder that does not exist */
    path = tu_path(dir, "missing/x.npz");
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_plan_export(p, PARO_EXPORT_NPZ, path, NULL, &ei), PARO_ERR_IO);
    paro_errinfo_clear(&ei);
    ck_assert_int_eq(paro_plan_export(p, (paro_export_format)0, path, NULL, &ei), PARO_ERR_USAGE);
    ck_assert_int_eq(paro_export_format_parse("npz"), PARO_EXPORT_NPZ);
    ck_assert_int_eq(paro_export_format_parse("pth"), 0);
    free(path);
    paro_plan_free(p);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("export");
    TCase *tc = tcase_create("png");
    tcase_add_test(tc, test_png_roundtrip);
    tcase_add_test(tc, test_picture_head);
    tcase_add_test(tc, test_picture_layer);
    tcase_add_test(tc, test_picture_pooled);
    tcase_add_test(tc, test_font);
    suite_add_tcase(s, tc);
    tc = tcase_create("arrays");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_npy_header);
    tcase_add_test(tc, test_zip);
    tcase_add_test(tc, test_safetensors_ext);
    tcase_add_test(tc, test_export_files);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(suite());
}
