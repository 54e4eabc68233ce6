/* paro — a small ZIP writer for .npz files (numpy.savez writes a ZIP of .npy
 * members): local headers, member data stored or deflated, a central
 * directory and the end record, with CRC-32s; ZIP64 records for members and
 * archives beyond 4 GiB (APPNOTE.TXT 4.3, 4.4, 4.5.3).
 *
 * Output is sequential, through a sink callback, so it can go to an atomic
 * file or any stream: a stored member's CRC is computed in a first pass over
 * its source, a deflated member is compressed into memory first.  Timestamps
 * are fixed (1980-01-01 00:00), so the same members give the same bytes.
 */
#ifndef PARO_ZIP_WRITE_H_5a0c7d34
#define PARO_ZIP_WRITE_H_5a0c7d34

#include <stddef.h> /* size_t */
#include <stdint.h> /* uint8_t, uint64_t */

#include "error.h" /* paro_err, paro_errinfo */

#ifdef __cplusplus
extern "C" {
#endif

/* Receives the archive's bytes in order. */
typedef paro_err (*paro_zip_sink)(void *user, const void *buf, size_t n, paro_errinfo *ei);
/* Fills buf with n bytes of a member from byte offset on.  Calls come in
 * order of offset; offset 0 starts the member over (a second pass). */
typedef paro_err (*paro_zip_source)(void *user, uint64_t offset, uint8_t *buf, size_t n,
                                    paro_errinfo *ei);

enum { PARO_ZIP_STORE = 0, PARO_ZIP_DEFLATE = 8 };

typedef struct paro_zip paro_zip;

/* zip64_from: members and offsets of at least this many bytes get ZIP64
 * records (UINT64_MAX: only where ZIP needs them, at 4 GiB; tests pass 0 to
 * exercise them on small files). */
paro_err paro_zip_open(paro_zip **out, paro_zip_sink sink, void *sink_user, uint64_t zip64_from,
                       paro_errinfo *ei);
/* Adds member `name` (ASCII, 1..65535 bytes) of size bytes read from src. */
paro_err paro_zip_add(paro_zip *z, const char *name, uint64_t size, int method,
                      paro_zip_source src, void *src_user, paro_errinfo *ei);
/* Writes the central directory and the end records. */
paro_err paro_zip_finish(paro_zip *z, paro_errinfo *ei);
void paro_zip_free(paro_zip *z);

#ifdef __cplusplus
}
#endif
#endif
