/* paro — .npy headers (see npy_write.h). */
#include "npy_write.h"

#include <stdio.h>  /* snprintf */
#include <string.h> /* memcpy, memset, strlen */

#define NPY_MAGIC_LEN 8     /* "\x93NUMPY" and the version bytes */
#define NPY_ALIGN 64        /* numpy's ARRAY_ALIGN */
#define NPY_GROWTH_DIGITS 21 /* numpy's GROWTH_AXIS_MAX_DIGITS */

size_t paro_npy_header(const char *descr, const uint64_t *shape, uint32_t ndim, char *buf)
{
    if (!descr || strlen(descr) > 15 || ndim > PARO_NPY_MAX_DIMS || (ndim && !shape))
        return 0;
    /* the dict as Python's repr writes it: "(2, 3)", "(4,)", "()" */
    char dict[PARO_NPY_HEADER_MAX];
    size_t n = (size_t)snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, "
                                "'shape': (", descr);
    for (uint32_t d = 0; d < ndim; d++)
        n += (size_t)snprintf(dict + n, sizeof dict - n, "%s%llu", d ? ", " : "",
                              (unsigned long long)shape[d]);
    n += (size_t)snprintf(dict + n, sizeof dict - n, "%s), }", ndim == 1 ? "," : "");
    if (ndim) {
        char first[24];
        int digits = snprintf(first, sizeof first, "%llu", (unsigned long long)shape[0]);
        for (int i = digits; i < NPY_GROWTH_DIGITS; i++)
            dict[n++] = ' ';
    }
    /* then spaces and a newline up to the next multiple of 64 (1 to 64 of
     * them, as numpy pads even a header that is already aligned) */
    size_t with_newline = NPY_MAGIC_LEN + 2 + n + 1;
    size_t pad = NPY_ALIGN - with_newline % NPY_ALIGN;
    size_t total = with_newline + pad;
    if (total > PARO_NPY_HEADER_MAX || total - NPY_MAGIC_LEN - 2 > 0xffff)
        return 0;
    memcpy(buf, "\x93NUMPY\x01\x00", NPY_MAGIC_LEN);
    size_t header_len = total - NPY_MAGIC_LEN - 2;
    buf[8] = (char)(header_len & 0xff);
    buf[9] = (char)(header_len >> 8);
    memcpy(buf + 10, dict, n);
    memset(buf + 10 + n, ' ', pad);
    buf[total - 1] = '\n';
    return total;
}
