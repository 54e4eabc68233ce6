/* paro fuzzing — the safetensors reader (formats/safetensors.c): open,
 * list, find by name, and convert the first elements of loadable tensors. */
#include "dtype.h"
#include "error.h"
#include "fuzz_input.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_input_path(data, size);
    if (!path)
        return 0;
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_st_file *f = NULL;
    if (paro_st_open(path, &f, &ei) != PARO_OK)
        return 0;
    for (size_t i = 0; i < paro_st_count(f); i++) {
        const paro_st_tensor *t = paro_st_get(f, i);
        if (paro_st_find(f, t->name) == NULL)
            __builtin_trap(); /* a listed tensor must be found by its name */
        if (t->dtype == PARO_DTYPE_INVALID || t->nbytes == 0)
            continue;
        float first[16];
        size_t n = t->nbytes / paro_dtype_size(t->dtype);
        paro_convert_to_f32(t->dtype, paro_st_data(f, t), first, n < 16 ? n : 16);
    }
    paro_st_close(f);
    return 0;
}
