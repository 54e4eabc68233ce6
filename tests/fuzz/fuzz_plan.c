/* paro fuzzing — the plan reader (formats/plan_read.c).  A plan that parses
 * must serialise back to bytes that parse again to the same bytes, and its
 * dump JSON must be producible. */
#include <stdlib.h> /* free */
#include <string.h> /* memcmp */

#include "error.h"
#include "fuzz_input.h"
#include "plan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_plan *p = NULL;
    if (paro_plan_parse(data, size, "fuzz", &p, &ei) != PARO_OK)
        return 0;
    free(paro_plan_to_json(p));
    uint8_t *once = NULL, *twice = NULL;
    size_t n1 = 0, n2 = 0;
    paro_plan *again = NULL;
    if (paro_plan_serialize(p, &once, &n1, &ei) == PARO_OK &&
        paro_plan_parse(once, n1, "fuzz-again", &again, &ei) == PARO_OK &&
        paro_plan_serialize(again, &twice, &n2, &ei) == PARO_OK &&
        (n1 != n2 || memcmp(once, twice, n1) != 0))
        __builtin_trap(); /* re-serialisation must be stable */
    free(once);
    free(twice);
    paro_plan_free(again);
    paro_plan_free(p);
    return 0;
}
