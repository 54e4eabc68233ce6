/* paro — element types of captured tensors and their conversion to f32. */
#ifndef PARO_DTYPE_H_9a41c0e3
#define PARO_DTYPE_H_9a41c0e3

#include <stddef.h> /* size_t */
#include <stdint.h> /* uint16_t */

#ifdef __cplusplus
extern "C" {
#endif

typedef enum paro_dtype {
    PARO_DTYPE_F32 = 0,
    PARO_DTYPE_F16 = 1,
    PARO_DTYPE_BF16 = 2,
    PARO_DTYPE_INVALID = -1
} paro_dtype;

/* Bytes per element (4, 2, 2); 0 for an invalid type. */
size_t paro_dtype_size(paro_dtype t);
/* Lowercase name as the CLI spells it: "f32", "f16", "bf16". */
const char *paro_dtype_name(paro_dtype t);
/* Parses "f32"/"f16"/"bf16" (CLI spelling); PARO_DTYPE_INVALID otherwise. */
paro_dtype paro_dtype_parse(const char *s);

float paro_f16_to_f32(uint16_t h);
float paro_bf16_to_f32(uint16_t b);
/* Round to nearest even; NaN stays NaN, overflow becomes infinity. */
uint16_t paro_f32_to_f16(float f);
uint16_t paro_f32_to_bf16(float f);

/* Converts n little-endian elements of type t at src (any alignment) to f32. */
void paro_convert_to_f32(paro_dtype t, const void *src, float *dst, size_t n);
/* Converts n f32 values to type t, little-endian, at dst (any alignment). */
void paro_convert_from_f32(paro_dtype t, const float *src, void *dst, size_t n);

#ifdef __cplusplus
}
#endif
#endif
