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

/* Structure-aware mutations, for libFuzzer builds only: after a random edit
 * the CRC-32s are made right again (each section's over its stored bytes,
 * then the header's), so that edits reach the checks behind them (lengths,
 * JSON, contents) instead of all failing at the first checksum. */
#ifdef PARO_FUZZ_MUTATOR
#include <zlib.h> /* crc32 */

size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed);

static uint64_t le(const uint8_t *p, int bytes)
{
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
    size = LLVMFuzzerMutate(data, size, max_size);
    if ((seed & 3) == 0 || size < 64)
        return size; /* keep some raw mutations: bad CRCs must be caught too */
    const uint64_t header = le(data + 12, 4), n = le(data + 24, 4), entry = le(data + 28, 4);
    if (header < 64 || entry < 48 || n > 4096 || header + n * entry > size)
        return size;
    for (uint64_t i = 0; i < n; i++) {
        uint8_t *e = data + header + i * entry;
        uint64_t off = le(e + 8, 8), len = le(e + 16, 8);
        if (off <= size && len <= size - off)
            put32(e + 36, (uint32_t)crc32(crc32(0L, Z_NULL, 0), data + off, (uInt)len));
    }
    put32(data + 48, 0);
    uLong crc = crc32(crc32(0L, Z_NULL, 0), data, (uInt)header);
    crc = crc32(crc, data + header, (uInt)(n * entry));
    put32(data + 48, (uint32_t)crc);
    return size;
}
#endif
