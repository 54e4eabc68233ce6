/* paro — CRC-32 for the large buffers: the layer digests (calibrate, eval)
 * and .npz members.
 *
 * The values are zlib's crc32 (the standard CRC-32, polynomial 0xEDB88320
 * reflected) bit for bit; only the speed differs.  On x86-64 CPUs with
 * PCLMULQDQ and SSE4.1 the buffer is folded by carry-less multiplication,
 * elsewhere zlib does the work.  zlib's crc32_combine still joins CRCs of
 * pieces.
 */
#ifndef PARO_CRC32_H_c4f1e62d
#define PARO_CRC32_H_c4f1e62d

#include <stddef.h> /* size_t */
#include <stdint.h> /* uint16_t, uint32_t, uint64_t */

#ifdef __cplusplus
extern "C" {
#endif

/* zlib's crc32(crc, buf, len): the CRC of len bytes at buf (any alignment)
 * continued from crc, which is 0 to start.  len 0 returns crc unchanged,
 * and buf NULL returns 0, as zlib does. */
uint32_t paro_crc32(uint32_t crc, const void *buf, size_t len);

/* The CRC, continued from crc, of n bf16 values as f32: paro_crc32 of each
 * value's four little-endian f32 bytes (00 00 lo hi), as paro_convert_to_f32
 * writes them, without making the f32s first.  (Hosts are little-endian, as
 * for every digest of values in memory.) */
uint32_t paro_crc32_bf16_as_f32(uint32_t crc, const uint16_t *bf16, size_t n);

/* ---- for tests */

/* x^n mod P in GF(2), reflected as zlib's CRCs are (bit 31 is x^0): the
 * fast path's constants are made from it. */
uint32_t paro_crc32_xpow(uint64_t n);

/* on 0 makes both functions above use zlib; on 1 (the default) the fast
 * path where this CPU has one.  Returns whether the fast path is in use now.
 * It holds for every thread. */
int paro_crc32_use_fast(int on);

#ifdef __cplusplus
}
#endif
#endif
