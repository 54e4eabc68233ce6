/* paro — a strict ZIP reader for .npz files (APPNOTE.TXT 4.3-4.5).
 *
 * The archive is mapped read-only.  Opening reads the end record (and the
 * ZIP64 end record where the archive needs it), the central directory, and
 * every member's local header, and checks that they agree: one disk, no
 * encryption, methods stored (0) or deflated (8), names unique, and every
 * member's local header and data inside the archive, before the central
 * directory, and not overlapping another member (the overlapping-member
 * bomb).  A member is inflated only into a buffer of its declared size
 * and must fill it exactly, and its CRC-32 must match: a compression bomb
 * cannot make paro allocate more than the sizes it declares, which callers
 * check against what they expect before asking for the data.
 */
#ifndef PARO_ZIP_READ_H_3f9d2a61
#define PARO_ZIP_READ_H_3f9d2a61

#include <stddef.h> /* size_t */
#include <stdint.h> /* uint32_t, uint64_t */

#include "error.h" /* paro_err, paro_errinfo */

#ifdef __cplusplus
extern "C" {
#endif

#define PARO_UNZIP_MAX_MEMBERS 1000000u

typedef struct paro_unzip_member {
    char *name;
    int method;            /* 0 stored, 8 deflated */
    uint32_t crc32;
    uint64_t packed_size;  /* bytes in the archive */
    uint64_t size;         /* bytes once inflated */
    uint64_t header_offset; /* of the local header */
    uint64_t data_offset;  /* of the packed bytes */
} paro_unzip_member;

typedef struct paro_unzip paro_unzip;

paro_err paro_unzip_open(const char *path, paro_unzip **out, paro_errinfo *ei);
void paro_unzip_close(paro_unzip *z);

size_t paro_unzip_count(const paro_unzip *z);
/* Members in central-directory order. */
const paro_unzip_member *paro_unzip_get(const paro_unzip *z, size_t i);
/* Exact lookup; NULL when absent. */
const paro_unzip_member *paro_unzip_find(const paro_unzip *z, const char *name);
const char *paro_unzip_path(const paro_unzip *z);

/* A stored member's bytes inside the mapping (no CRC check: see
 * paro_unzip_check_crc); NULL for a deflated member. */
const unsigned char *paro_unzip_stored_data(const paro_unzip *z, const paro_unzip_member *m);
/* Checks a stored member's CRC-32 over its bytes. */
paro_err paro_unzip_check_crc(const paro_unzip *z, const paro_unzip_member *m,
                              paro_errinfo *ei);
/* Inflates (or copies) the member's first n bytes into dst, n <= size.  When
 * n == size the stream must end exactly there and the CRC-32 must match. */
paro_err paro_unzip_extract(const paro_unzip *z, const paro_unzip_member *m, unsigned char *dst,
                            uint64_t n, paro_errinfo *ei);

#ifdef __cplusplus
}
#endif
#endif
