/* paro fuzzing — the .npy header parser (formats/npy.c), fed the way the
 * readers feed it: a prefix first, then as many bytes as it asks for. */
#include "error.h"
#include "fuzz_input.h"
#include "npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    paro_npy_header h;
    paro_errinfo ei;
    size_t have = size < PARO_NPY_PREFIX ? size : PARO_NPY_PREFIX;
    for (;;) {
        size_t need = 0;
        paro_errinfo_clear(&ei);
        if (paro_npy_parse(data, have, PARO_DTYPE_BF16, "fuzz.npy", 0, &h, &need, &ei) !=
            PARO_OK)
            return 0;
        if (!need) {
            if (h.header_bytes > have || h.ndim > PARO_NPY_MAX_DIMS)
                __builtin_trap(); /* a parsed header lies inside what was given */
            return 0;
        }
        if (need <= have || need > size)
            return 0; /* asked for more than there is: the caller's error */
        have = need;
    }
}
