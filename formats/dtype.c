/* paro — f16/bf16/f32 conversions.
 *
 * Written out by hand rather than with _Float16 so that results do not depend
 * on the compiler or the CPU's F16C support: the plan must be byte-identical
 * on every machine. */
#include "dtype.h"

#include <math.h>   /* isnan */
#include <string.h> /* memcpy, strcmp */

size_t paro_dtype_size(paro_dtype t)
{
    switch (t) {
    case PARO_DTYPE_F32: return 4;
    case PARO_DTYPE_F16: return 2;
    case PARO_DTYPE_BF16: return 2;
    default: return 0;
    }
}

const char *paro_dtype_name(paro_dtype t)
{
    switch (t) {
    case PARO_DTYPE_F32: return "f32";
    case PARO_DTYPE_F16: return "f16";
    case PARO_DTYPE_BF16: return "bf16";
    default: return "invalid";
    }
}

paro_dtype paro_dtype_parse(const char *s)
{
    if (!strcmp(s, "f32"))
        return PARO_DTYPE_F32;
    if (!strcmp(s, "f16"))
        return PARO_DTYPE_F16;
    if (!strcmp(s, "bf16"))
        return PARO_DTYPE_BF16;
    return PARO_DTYPE_INVALID;
}

static float bits_to_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t f32_to_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

float paro_bf16_to_f32(uint16_t b)
{
    return bits_to_f32((uint32_t)b << 16);
}

float paro_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0x1f) /* inf or nan */
        return bits_to_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        if (man == 0)
            return bits_to_f32(sign);
        /* subnormal: value = man * 2^-24, exact in f32 */
        float v = (float)man * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    return bits_to_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

uint16_t paro_f32_to_bf16(float f)
{
    uint32_t u = f32_to_bits(f);
    if (isnan(f))
        return (uint16_t)((u >> 16) | 0x40u); /* keep sign, force quiet */
    uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)((u + rounding) >> 16);
}

uint16_t paro_f32_to_f16(float f)
{
    uint32_t u = f32_to_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t abs = u & 0x7fffffffu;
    if (abs >= 0x7f800000u) /* inf or nan */
        return sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u);
    if (abs >= 0x477ff000u) /* rounds to >= 65520: infinity */
        return sign | 0x7c00u;
    if (abs < 0x38800000u) { /* below 2^-14: subnormal or zero in f16 */
        if (abs < 0x33000000u) /* below 2^-25: rounds to zero */
            return sign;
        uint32_t exp = abs >> 23;
        uint32_t man = (abs & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - exp; /* 14..24 */
        uint32_t half = man >> shift;
        uint32_t rest = man & ((1u << shift) - 1u);
        uint32_t mid = 1u << (shift - 1u);
        if (rest > mid || (rest == mid && (half & 1u)))
            half++;
        return sign | (uint16_t)half;
    }
    uint32_t r = abs - 0x38000000u; /* rebias exponent 127 -> 15 */
    uint32_t rounding = 0xfffu + ((r >> 13) & 1u);
    return sign | (uint16_t)((r + rounding) >> 13);
}

static uint16_t load_u16le(const unsigned char *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

void paro_convert_to_f32(paro_dtype t, const void *src, float *dst, size_t n)
{
    const unsigned char *p = src;
    switch (t) {
    case PARO_DTYPE_F32:
        for (size_t i = 0; i < n; i++) {
            uint32_t u = (uint32_t)p[4 * i] | ((uint32_t)p[4 * i + 1] << 8) |
                         ((uint32_t)p[4 * i + 2] << 16) | ((uint32_t)p[4 * i + 3] << 24);
            dst[i] = bits_to_f32(u);
        }
        break;
    case PARO_DTYPE_F16:
        for (size_t i = 0; i < n; i++)
            dst[i] = paro_f16_to_f32(load_u16le(p + 2 * i));
        break;
    case PARO_DTYPE_BF16:
        for (size_t i = 0; i < n; i++)
            dst[i] = paro_bf16_to_f32(load_u16le(p + 2 * i));
        break;
    default:
        break;
    }
}

void paro_convert_from_f32(paro_dtype t, const float *src, void *dst, size_t n)
{
    unsigned char *p = dst;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        switch (t) {
        case PARO_DTYPE_F32:
            u = f32_to_bits(src[i]);
            p[4 * i] = (unsigned char)u;
            p[4 * i + 1] = (unsigned char)(u >> 8);
            p[4 * i + 2] = (unsigned char)(u >> 16);
            p[4 * i + 3] = (unsigned char)(u >> 24);
            break;
        case PARO_DTYPE_F16:
        case PARO_DTYPE_BF16:
            u = t == PARO_DTYPE_F16 ? paro_f32_to_f16(src[i]) : paro_f32_to_bf16(src[i]);
            p[2 * i] = (unsigned char)u;
            p[2 * i + 1] = (unsigned char)(u >> 8);
            break;
        default:
            return;
        }
    }
}
