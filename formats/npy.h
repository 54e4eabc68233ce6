/* paro — the header of a NumPy .npy array (format versions 1.0, 2.0, 3.0).
 *
 * A .npy file is the magic "\x93NUMPY", a major and minor version byte, the
 * header length (u16 little-endian in 1.0, u32 in 2.0 and 3.0), and the
 * header: a Python dict literal with exactly the keys 'descr',
 * 'fortran_order' and 'shape', padded with spaces and ended by a newline
 * (3.0 allows UTF-8 in it; 1.0 and 2.0 are latin-1).  The array's bytes
 * follow.  paro reads C-order arrays of little-endian f4 and f2, and 2-byte
 * raw types ('<u2', '<i2', '|V2') as bfloat16 when the capture says so.
 */
#ifndef PARO_NPY_H_51f0c2e8
#define PARO_NPY_H_51f0c2e8

#include <stddef.h> /* size_t */
#include <stdint.h> /* uint64_t */

#include "dtype.h" /* paro_dtype */
#include "error.h" /* paro_err, paro_errinfo */

#ifdef __cplusplus
extern "C" {
#endif

#define PARO_NPY_MAX_HEADER (1u << 20) /* bytes of dict; numpy writes < 10 000 */
#define PARO_NPY_MAX_DIMS 8

typedef struct paro_npy_header {
    uint64_t header_bytes;   /* magic + version + length field + dict: data starts here */
    paro_dtype dtype;        /* PARO_DTYPE_INVALID when not one paro reads */
    char descr[16];          /* as written, e.g. "<f4" (printable, cut if longer) */
    uint32_t itemsize;       /* from descr; 0 when unknown */
    uint32_t ndim;
    uint64_t shape[PARO_NPY_MAX_DIMS];
    uint64_t data_bytes;     /* product of shape x itemsize (checked) */
} paro_npy_header;

/* Bytes of the fixed prefix needed to know the whole header's length. */
#define PARO_NPY_PREFIX 12u

/* Parses the header at buf[0, avail).  When avail is too short to hold the
 * whole header, returns PARO_OK with *need set to the bytes required (the
 * caller reads more and calls again); otherwise *need is 0.  raw16 is the
 * dtype that '<u2', '<i2' and '|V2' stand for (PARO_DTYPE_BF16), or
 * PARO_DTYPE_INVALID to treat them as types paro does not read.  path and
 * base_offset (the header's offset in path) are for messages. */
paro_err paro_npy_parse(const unsigned char *buf, size_t avail, paro_dtype raw16,
                        const char *path, uint64_t base_offset, paro_npy_header *out,
                        size_t *need, paro_errinfo *ei);

#ifdef __cplusplus
}
#endif
#endif
