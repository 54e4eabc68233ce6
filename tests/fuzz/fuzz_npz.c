/* paro fuzzing — .npz archives through the sample reader
 * (formats/tensor_file.c over zip_read.c and npy.c): open, look every
 * array up, read it whole (inflating and CRC-checking) and take its
 * statistics, as `paro inspect` does. */
#include <string.h> /* memcmp */

#include "error.h"
#include "fuzz_input.h"
#include "tensor_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Other inputs would be read as safetensors, which has its own target. */
    if (size < 4 || memcmp(data, "PK", 2))
        return 0;
    const char *path = fuzz_input_path(data, size);
    if (!path)
        return 0;
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_tensor_file *f = NULL;
    if (paro_tensor_file_open(path, PARO_DTYPE_BF16, &f, &ei) != PARO_OK)
        return 0;
    for (size_t i = 0; i < paro_tensor_file_count(f); i++) {
        const paro_tensor *t = NULL;
        paro_errinfo_clear(&ei);
        if (paro_tensor_file_find(f, paro_tensor_file_name(f, i), &t, &ei) != PARO_OK)
            continue;
        if (!t)
            __builtin_trap(); /* a listed tensor must be found by its name */
        paro_tensor_stats st;
        if (t->dtype != PARO_DTYPE_INVALID && t->nbytes <= (64u << 20))
            paro_tensor_file_stats(f, t, &st, &ei);
    }
    paro_tensor_file_close(f);
    return 0;
}
