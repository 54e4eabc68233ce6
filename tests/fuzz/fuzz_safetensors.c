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

/* Structure-aware mutations, for libFuzzer builds only: most random byte
 * edits break the JSON header or its length field and never get past the
 * first checks, so half of the time the mutator instead rewrites one number
 * of the header (an offset, a shape entry) with a hostile value or swaps a
 * dtype name, and fixes the length field, keeping the file well-formed
 * enough to reach the offset, size and coverage checks. */
#ifdef PARO_FUZZ_MUTATOR
#include <stdio.h>  /* snprintf */
#include <string.h> /* memcpy, memmove, strlen */

size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed);

static const char *const hostile[] = {"0", "1", "-1", "7", "4294967295", "4294967296",
                                      "9007199254740992", "18446744073709551615", "1e30",
                                      "2.5", "65536"};
static const char *const dtypes[] = {"\"F32\"", "\"F16\"", "\"BF16\"", "\"I8\"", "\"F8_E4M3\"",
                                     "\"BOOL\"", "\"F4\"", "\"C64\"", "\"XX\""};

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
    uint64_t n = 0;
    if (size >= 8)
        for (int i = 7; i >= 0; i--)
            n = n << 8 | data[i];
    if ((seed & 1) || size < 8 || n == 0 || n > size - 8)
        return LLVMFuzzerMutate(data, size, max_size);
    uint8_t *header = data + 8;
    /* pick the k-th number (or dtype string) of the header */
    size_t starts[256], lens[256], count = 0;
    for (size_t i = 0; i < n && count < 256; i++) {
        if ((header[i] >= '0' && header[i] <= '9') || header[i] == '-') {
            size_t j = i;
            while (j < n && ((header[j] >= '0' && header[j] <= '9') || header[j] == '-'))
                j++;
            starts[count] = i;
            lens[count++] = j - i;
            i = j;
        } else if (header[i] == '"' && i + 1 < n && header[i + 1] >= 'A' && header[i + 1] <= 'Z') {
            size_t j = i + 1;
            while (j < n && header[j] != '"')
                j++;
            if (j < n && j - i <= 10) {
                starts[count] = i;
                lens[count++] = j - i + 1;
            }
            i = j;
        }
    }
    if (count == 0)
        return LLVMFuzzerMutate(data, size, max_size);
    size_t k = (seed >> 1) % count;
    const char *rep = header[starts[k]] == '"' ? dtypes[(seed >> 9) % 9] : hostile[(seed >> 9) % 11];
    size_t rep_len = strlen(rep), old_len = lens[k];
    if (size - old_len + rep_len > max_size)
        return LLVMFuzzerMutate(data, size, max_size);
    uint8_t *at = header + starts[k];
    memmove(at + rep_len, at + old_len, size - (size_t)(at - data) - old_len);
    memcpy(at, rep, rep_len);
    size = size - old_len + rep_len;
    n = n - old_len + rep_len;
    for (int i = 0; i < 8; i++)
        data[i] = (uint8_t)(n >> (8 * i));
    return size;
}
#endif
