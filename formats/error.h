/* paro — error codes shared by the library parts (formats/, calib/, metrics/,
 * kernels/).
 *
 * The library never prints, exits or aborts on bad input: every fallible
 * function returns a paro_err and, when given one, fills a paro_errinfo with a
 * one-line message in git style (lowercase, no final period, what failed
 * first), the file it concerns and, for format errors, the byte offset.
 * Only cli/ turns these into text on stderr and an exit code.
 *
 * The numeric values are stable: scripts and tests may rely on them.
 */
#ifndef PARO_ERROR_H_5d8c2a71
#define PARO_ERROR_H_5d8c2a71

#include <stdint.h> /* uint64_t */
#include <stddef.h> /* size_t */

#ifdef __cplusplus
extern "C" {
#endif

typedef enum paro_err {
    PARO_OK = 0,
    PARO_ERR_USAGE = 1,     /* a bad argument from the caller (CLI exit 2) */
    PARO_ERR_IO = 2,        /* open/read/write/mmap failed (exit 1) */
    PARO_ERR_FORMAT = 3,    /* invalid or corrupt input file (exit 3) */
    PARO_ERR_NOMEM = 4,     /* allocation failed (exit 1) */
    PARO_ERR_NO_CUDA = 5,   /* CUDA requested but not available (exit 4) */
    PARO_ERR_CUDA = 6,      /* a CUDA call failed (exit 1) */
    PARO_ERR_LIMIT = 7,     /* input exceeds a documented limit (exit 3) */
    PARO_ERR_INTERNAL = 8,  /* a bug: an invariant did not hold (exit 1) */
    PARO_ERR_INTERRUPTED = 9, /* stopped on request (exit 1) */
    PARO_ERR_MAX_ = 10
} paro_err;

/* Where no byte offset applies. */
#define PARO_NO_OFFSET UINT64_MAX

typedef struct paro_errinfo {
    paro_err code;
    char msg[512];   /* one line, no trailing newline */
    char file[512];  /* the file concerned, "" when none */
    uint64_t offset; /* byte offset in file, PARO_NO_OFFSET when none */
} paro_errinfo;

/* Short name of a code, e.g. "invalid input". */
const char *paro_strerror(paro_err code);

/* Records an error in *ei (when ei is not NULL) and returns code, so callers
 * can write `return paro_error(ei, PARO_ERR_FORMAT, path, off, "...", ...)`.
 * A later call does not overwrite an earlier message unless the earlier one
 * was cleared: the first, most precise, message wins. */
paro_err paro_error(paro_errinfo *ei, paro_err code, const char *file,
                    uint64_t offset, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;

void paro_errinfo_clear(paro_errinfo *ei);

/* Formats the full message: "FILE: MSG (at byte N)" or "MSG"; returns buf. */
const char *paro_errinfo_format(const paro_errinfo *ei, char *buf, size_t size);

/* A tensor shape for messages: "[8, 984, 64]", "[]" for a scalar; cut to
 * fit buf (200 bytes hold 8 dimensions of 20 digits).  Returns buf. */
const char *paro_shape_text(char *buf, size_t size, const uint64_t *shape, uint32_t ndim);

/* Checked size arithmetic: return 0 on overflow (and leave *out undefined). */
static inline int paro_mul_ok(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}
static inline int paro_add_ok(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

#ifdef __cplusplus
}
#endif
#endif
