/* paro — a whole regular file mapped read-only, for the tensor readers. */
#ifndef PARO_MAPPED_FILE_H_7e2c40b9
#define PARO_MAPPED_FILE_H_7e2c40b9

#include <stdint.h> /* uint64_t */

#include "error.h" /* paro_err, paro_errinfo */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct paro_mapped_file {
    const unsigned char *data; /* NULL when size is 0 */
    uint64_t size;
} paro_mapped_file;

/* Maps path read-only.  A folder or anything but a regular file is
 * PARO_ERR_IO with "is a folder, not WHAT" (what: "a safetensors file"). */
paro_err paro_map_file(const char *path, const char *what, paro_mapped_file *out,
                       paro_errinfo *ei);
void paro_unmap_file(paro_mapped_file *f);

#ifdef __cplusplus
}
#endif
#endif
