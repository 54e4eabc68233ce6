/* paro — error codes and messages of the library. */
#include "error.h"

#include <stdarg.h> /* va_list */
#include <stdio.h>  /* vsnprintf, snprintf */
#include <string.h> /* memset */

const char *paro_strerror(paro_err code)
{
    switch (code) {
    case PARO_OK: return "ok";
    case PARO_ERR_USAGE: return "bad argument";
    case PARO_ERR_IO: return "i/o error";
    case PARO_ERR_FORMAT: return "invalid input";
    case PARO_ERR_NOMEM: return "out of memory";
    case PARO_ERR_NO_CUDA: return "cuda not available";
    case PARO_ERR_CUDA: return "cuda error";
    case PARO_ERR_LIMIT: return "limit exceeded";
    case PARO_ERR_INTERNAL: return "internal error";
    case PARO_ERR_INTERRUPTED: return "interrupted";
    case PARO_ERR_MAX_: break;
    }
    return "unknown error";
}

void paro_errinfo_clear(paro_errinfo *ei)
{
    if (!ei)
        return;
    memset(ei, 0, sizeof *ei);
    ei->offset = PARO_NO_OFFSET;
}

paro_err paro_error(paro_errinfo *ei, paro_err code, const char *file,
                    uint64_t offset, const char *fmt, ...)
{
    if (!ei || ei->code != PARO_OK)
        return code;
    ei->code = code;
    ei->offset = offset;
    snprintf(ei->file, sizeof ei->file, "%s", file ? file : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ei->msg, sizeof ei->msg, fmt, ap);
    va_end(ap);
    return code;
}

const char *paro_errinfo_format(const paro_errinfo *ei, char *buf, size_t size)
{
    const char *msg = ei->msg[0] ? ei->msg : paro_strerror(ei->code);
    if (ei->file[0] && ei->offset != PARO_NO_OFFSET)
        snprintf(buf, size, "%s: %s (at byte %llu)", ei->file, msg,
                 (unsigned long long)ei->offset);
    else if (ei->file[0])
        snprintf(buf, size, "%s: %s", ei->file, msg);
    else
        snprintf(buf, size, "%s", msg);
    return buf;
}

const char *paro_shape_text(char *buf, size_t size, const uint64_t *shape, uint32_t ndim)
{
    size_t used = 0;
    buf[0] = 0;
    for (uint32_t i = 0; i <= ndim && used < size; i++) {
        int w = i < ndim ? snprintf(buf + used, size - used, "%s%llu", i ? ", " : "[",
                                    (unsigned long long)shape[i])
                         : snprintf(buf + used, size - used, "%s]", ndim ? "" : "[");
        if (w < 0)
            break;
        used += (size_t)w;
    }
    return buf;
}
