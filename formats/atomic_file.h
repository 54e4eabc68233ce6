/* paro — write a file so that readers see either the old file or the whole
 * new one: write to a temporary file in the same folder, fsync it, rename it
 * over the target, fsync the folder.  An interrupted or failed write leaves
 * the target untouched. */
#ifndef PARO_ATOMIC_FILE_H_63f0b1e2
#define PARO_ATOMIC_FILE_H_63f0b1e2

#include <stddef.h> /* size_t */

#include "error.h" /* paro_err, paro_errinfo */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct paro_atomic_file {
    int fd;           /* -1 when closed */
    char *path;       /* the target */
    char *tmp_path;   /* PATH.tmp.XXXXXX beside it */
} paro_atomic_file;

paro_err paro_atomic_open(paro_atomic_file *af, const char *path, paro_errinfo *ei);
paro_err paro_atomic_write(paro_atomic_file *af, const void *buf, size_t n,
                           paro_errinfo *ei);
/* fsync + rename + fsync of the folder; the temp file is gone afterwards,
 * whether it succeeds or not. */
paro_err paro_atomic_commit(paro_atomic_file *af, paro_errinfo *ei);
/* Removes the temp file; safe to call after commit or on a closed file. */
void paro_atomic_abort(paro_atomic_file *af);

/* Whole buffer in one go. */
paro_err paro_atomic_write_file(const char *path, const void *buf, size_t n,
                                paro_errinfo *ei);

#ifdef __cplusplus
}
#endif
#endif
