/* paro fuzzing — the capture manifest parser (formats/manifest.c).  Only
 * parsing: sample files named by a fuzzed manifest are never opened. */
#include <stdlib.h> /* free */

#include "error.h"
#include "fuzz_input.h"
#include "manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_input_path(data, size);
    if (!path)
        return 0;
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_manifest *m = NULL;
    if (paro_manifest_load(path, &m, &ei) == PARO_OK) {
        /* What the driver derives from a manifest must be safe too. */
        for (size_t i = 0; i < m->n_samples; i++) {
            (void)paro_manifest_progress(m, i);
            free(paro_manifest_sample_path(m, i));
        }
        for (uint32_t l = 0; l < m->layers && l < 4; l++)
            for (int k = 0; k < 3; k++)
                free(paro_manifest_tensor_name(m, (paro_kind)k, l));
        paro_manifest_free(m);
    }
    return 0;
}
