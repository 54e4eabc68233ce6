/* paro — a minimal PNG writer: 8-bit RGB, no interlacing, chunks IHDR, IDAT
 * and IEND with their CRC-32s, zlib at level 9.  The same pixels always give
 * the same bytes (with the same zlib), so pictures can be compared in tests.
 */
#ifndef PARO_PNG_H_c4d1e8a7
#define PARO_PNG_H_c4d1e8a7

#include <stddef.h> /* size_t */
#include <stdint.h> /* uint8_t, uint32_t */

#include "error.h" /* paro_err, paro_errinfo */

#ifdef __cplusplus
extern "C" {
#endif

/* Largest width or height written: PNG allows 2^31-1, but an image this
 * tall or wide is already far beyond any picture paro draws. */
#define PARO_PNG_MAX_SIDE 65535u
/* IDAT data is cut into chunks of at most this many bytes. */
#define PARO_PNG_IDAT_CHUNK (1u << 20)

/* Encodes rgb (height rows of width * 3 bytes, R G B per pixel, top row
 * first) into a malloc'ed PNG file in *png (*len bytes).  Each row gets the
 * filter (None, Sub, Up, Average, Paeth) with the smallest sum of absolute
 * values, as libpng chooses by default. */
paro_err paro_png_encode(const uint8_t *rgb, uint32_t width, uint32_t height, uint8_t **png,
                         size_t *len, paro_errinfo *ei);

#ifdef __cplusplus
}
#endif
#endif
