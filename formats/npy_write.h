/* paro — the header of a NumPy .npy file (format version 1.0), written
 * exactly as numpy.save writes it, so that numpy.load reads our arrays
 * without warnings and the bytes can be compared with numpy's own.
 *
 * numpy/lib/format.py is the reference: magic "\x93NUMPY", version 1.0, a
 * u16 little-endian header length, then a Python dict literal with the keys
 * in sorted order ('descr', 'fortran_order', 'shape'), 21 - len(str(shape[0]))
 * spaces of room to grow the first axis, and spaces up to a newline that
 * ends the header on a multiple of 64 bytes.
 */
#ifndef PARO_NPY_WRITE_H_9b3f5e21
#define PARO_NPY_WRITE_H_9b3f5e21

#include <stddef.h> /* size_t */
#include <stdint.h> /* uint32_t, uint64_t */

#ifdef __cplusplus
extern "C" {
#endif

#define PARO_NPY_MAX_DIMS 8
/* Large enough for any header of up to PARO_NPY_MAX_DIMS axes. */
#define PARO_NPY_HEADER_MAX 512

/* Writes the header for a C-order array of dtype descr ("|b1", "|i1", "<i4",
 * "<f4", "<U3", ...; at most 15 characters) and the given shape into buf
 * (PARO_NPY_HEADER_MAX bytes); returns its length, a multiple of 64, or 0
 * when the arguments are out of range. */
size_t paro_npy_header(const char *descr, const uint64_t *shape, uint32_t ndim, char *buf);

#ifdef __cplusplus
}
#endif
#endif
