/* paro — the PNG writer (see png.h; PNG spec "File Structure", RFC 2083). */
#include "png.h"

#include <stdlib.h> /* malloc, free, abs */
#include <string.h> /* memcpy */
#include <zlib.h>   /* compress2, compressBound, crc32_z */

static const uint8_t png_signature[8] = {137, 'P', 'N', 'G', '\r', '\n', 26, '\n'};

enum { FILTER_NONE, FILTER_SUB, FILTER_UP, FILTER_AVERAGE, FILTER_PAETH, N_FILTERS };

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint8_t paeth(int a, int b, int c)
{
    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    if (pa <= pb && pa <= pc)
        return (uint8_t)a;
    return (uint8_t)(pb <= pc ? b : c);
}

/* Filters row (prev: the row above, NULL for the first) with filter f into
 * out; returns the sum of the bytes read as signed values, libpng's measure. */
static uint64_t filter_row(int f, const uint8_t *row, const uint8_t *prev, size_t n,
                           uint8_t *out)
{
    const size_t bpp = 3;
    uint64_t cost = 0;
    for (size_t i = 0; i < n; i++) {
        int a = i >= bpp ? row[i - bpp] : 0;
        int b = prev ? prev[i] : 0;
        int c = prev && i >= bpp ? prev[i - bpp] : 0;
        uint8_t pred = f == FILTER_SUB       ? (uint8_t)a
                       : f == FILTER_UP      ? (uint8_t)b
                       : f == FILTER_AVERAGE ? (uint8_t)((a + b) / 2)
                       : f == FILTER_PAETH   ? paeth(a, b, c)
                                             : 0;
        out[i] = (uint8_t)(row[i] - pred);
        cost += (uint64_t)abs((int8_t)out[i]);
    }
    return cost;
}

/* Appends one chunk (length, type, data, CRC of type and data) at *at. */
static void put_chunk(uint8_t **at, const char type[4], const uint8_t *data, uint32_t n)
{
    uint8_t *p = *at;
    put_be32(p, n);
    memcpy(p + 4, type, 4);
    if (n)
        memcpy(p + 8, data, n);
    put_be32(p + 8 + n, (uint32_t)crc32_z(0, p + 4, (z_size_t)n + 4));
    *at = p + 12 + n;
}

paro_err paro_png_encode(const uint8_t *rgb, uint32_t width, uint32_t height, uint8_t **png,
                         size_t *len, paro_errinfo *ei)
{
    *png = NULL;
    *len = 0;
    if (!rgb || width < 1 || height < 1 || width > PARO_PNG_MAX_SIDE ||
        height > PARO_PNG_MAX_SIDE)
        return paro_error(ei, PARO_ERR_USAGE, NULL, PARO_NO_OFFSET,
                          "cannot write a %u x %u picture: each side must be in [1, %u]", width,
                          height, PARO_PNG_MAX_SIDE);
    /* both sides are below 2^16, so these products fit in 64 bits */
    const size_t row_bytes = (size_t)width * 3;
    const uint64_t raw_len = (uint64_t)(row_bytes + 1) * height;
    if (raw_len > SIZE_MAX || raw_len > (uLong)-1)
        return paro_error(ei, PARO_ERR_LIMIT, NULL, PARO_NO_OFFSET,
                          "a %u x %u picture is too large for this machine", width, height);
    uint8_t *raw = malloc((size_t)raw_len);
    uint8_t *trial = malloc(row_bytes * 2);
    uLongf zcap = compressBound((uLong)raw_len);
    uint8_t *z = malloc(zcap);
    paro_err err = PARO_OK;
    if (!raw || !trial || !z) {
        err = paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory");
        goto done;
    }
    for (uint32_t y = 0; y < height; y++) {
        const uint8_t *row = rgb + (size_t)y * row_bytes;
        const uint8_t *prev = y ? row - row_bytes : NULL;
        uint8_t *out = raw + (size_t)y * (row_bytes + 1);
        uint64_t best = UINT64_MAX;
        /* the winner so far stays in out; each trial is made in trial[] */
        for (int f = 0; f < N_FILTERS; f++) {
            uint64_t cost = filter_row(f, row, prev, row_bytes, trial);
            if (cost < best) {
                best = cost;
                out[0] = (uint8_t)f;
                memcpy(out + 1, trial, row_bytes);
            }
        }
    }
    if (compress2(z, &zcap, raw, (uLong)raw_len, 9) != Z_OK) {
        err = paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory compressing a "
                         "picture");
        goto done;
    }
    const uint64_t n_idat = zcap / PARO_PNG_IDAT_CHUNK + (zcap % PARO_PNG_IDAT_CHUNK != 0);
    const uint64_t total = 8 + (12 + 13) + n_idat * 12 + zcap + 12;
    uint8_t *file = total <= SIZE_MAX ? malloc((size_t)total) : NULL;
    if (!file) {
        err = paro_error(ei, PARO_ERR_NOMEM, NULL, PARO_NO_OFFSET, "out of memory");
        goto done;
    }
    uint8_t ihdr[13];
    put_be32(ihdr, width);
    put_be32(ihdr + 4, height);
    ihdr[8] = 8;  /* bits per sample */
    ihdr[9] = 2;  /* colour type: RGB */
    ihdr[10] = 0; /* compression: deflate */
    ihdr[11] = 0; /* filter method 0: the five per-row filters */
    ihdr[12] = 0; /* no interlacing */
    uint8_t *at = file;
    memcpy(at, png_signature, 8);
    at += 8;
    put_chunk(&at, "IHDR", ihdr, sizeof ihdr);
    for (uint64_t done_bytes = 0; done_bytes < zcap; done_bytes += PARO_PNG_IDAT_CHUNK) {
        uint64_t n = zcap - done_bytes < PARO_PNG_IDAT_CHUNK ? zcap - done_bytes
                                                             : PARO_PNG_IDAT_CHUNK;
        put_chunk(&at, "IDAT", z + done_bytes, (uint32_t)n);
    }
    put_chunk(&at, "IEND", NULL, 0);
    *png = file;
    *len = (size_t)(at - file);
done:
    free(raw);
    free(trial);
    free(z);
    return err;
}
