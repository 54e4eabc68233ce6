/* paro benchmark — CPU time of the layer digests' CRC-32 on one thread.
 *
 *   bench_crc [REPEAT [MB [BF16_MB]]]
 *
 * Prints one JSON object with the minimum and median over REPEAT runs
 * (thread CPU time, ms) and the GB/s of the minimum for:
 *   - zlib's crc32_z and paro_crc32 over MB MiB (default 64) of random bytes,
 *     and over a 256 KiB buffer (in L2) MB * 4 times, where the CRC alone
 *     counts;
 *   - the digest of BF16_MB MiB (default 104, a reference layer-sample's Q or
 *     K is about that) of bf16 values as f32: the old way (paro_convert_to_f32
 *     in chunks of 4096 values, then crc32_z, as calibrate's read_head did)
 *     and paro_crc32_bf16_as_f32.
 * The CRCs of each pair must agree (the program fails otherwise); they are
 * printed so that two builds can be compared.  Figures are in
 * tests/bench/results/crc32-cpu.json. */
#include <stdint.h> /* uint64_t */
#include <stdio.h>  /* printf, fprintf */
#include <stdlib.h> /* atoi, malloc, qsort */
#include <time.h>   /* clock_gettime */
#include <zlib.h>   /* crc32_z */

#include "crc32.h" /* paro_crc32, paro_crc32_bf16_as_f32 */
#include "dtype.h" /* paro_convert_to_f32, paro_f32_to_bf16 */

#define HOT_BYTES (256u << 10)
#define OLD_CHUNK 4096 /* read_head's DIGEST_CHUNK */

static uint64_t rng_next(uint64_t *s) /* splitmix64 */
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); /* not the time others run */
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

enum { ZLIB, PARO, ZLIB_HOT, PARO_HOT, BF16_OLD, BF16_NEW, N_WAYS };
static const char *const way_name[N_WAYS] = {"zlib_crc32",     "paro_crc32",
                                             "zlib_crc32_hot", "paro_crc32_hot",
                                             "bf16_widen_zlib", "paro_crc32_bf16_as_f32"};

typedef struct input {
    const unsigned char *bytes;
    size_t n_bytes;
    const uint16_t *bf16;
    size_t n_bf16;
} input;

static uint32_t run_way(int way, const input *in)
{
    uLong crc = 0;
    switch (way) {
    case ZLIB:
        return (uint32_t)crc32_z(0, in->bytes, in->n_bytes);
    case PARO:
        return paro_crc32(0, in->bytes, in->n_bytes);
    case ZLIB_HOT:
        for (size_t at = 0; at < 4 * in->n_bytes; at += HOT_BYTES)
            crc = crc32_z(crc, in->bytes, HOT_BYTES);
        return (uint32_t)crc;
    case PARO_HOT:
        for (size_t at = 0; at < 4 * in->n_bytes; at += HOT_BYTES)
            crc = paro_crc32((uint32_t)crc, in->bytes, HOT_BYTES);
        return (uint32_t)crc;
    case BF16_OLD: {
        static float wide[OLD_CHUNK];
        for (size_t at = 0; at < in->n_bf16; at += OLD_CHUNK) {
            size_t len = in->n_bf16 - at < OLD_CHUNK ? in->n_bf16 - at : OLD_CHUNK;
            paro_convert_to_f32(PARO_DTYPE_BF16, in->bf16 + at, wide, len);
            crc = crc32_z(crc, (const Bytef *)wide, len * sizeof *wide);
        }
        return (uint32_t)crc;
    }
    case BF16_NEW:
        return paro_crc32_bf16_as_f32(0, in->bf16, in->n_bf16);
    default:
        return 0;
    }
}

int main(int argc, char **argv)
{
    const int repeat = argc > 1 ? atoi(argv[1]) : 9;
    const int mb = argc > 2 ? atoi(argv[2]) : 64;
    const int bf16_mb = argc > 3 ? atoi(argv[3]) : 104;
    if (repeat < 1 || mb < 1 || bf16_mb < 1) {
        fprintf(stderr, "usage: bench_crc [REPEAT [MB [BF16_MB]]]\n");
        return 2;
    }
    input in = {NULL, (size_t)mb << 20, NULL, (size_t)bf16_mb << 19};
    unsigned char *bytes = malloc(in.n_bytes);
    uint16_t *bf16 = malloc(in.n_bf16 * sizeof *bf16);
    double *ms = malloc((size_t)repeat * sizeof *ms);
    if (!bytes || !bf16 || !ms) {
        fprintf(stderr, "bench_crc: out of memory\n");
        return 1;
    }
    uint64_t rng = 1;
    for (size_t i = 0; i < in.n_bytes; i++)
        bytes[i] = (unsigned char)(rng_next(&rng) >> 56);
    for (size_t i = 0; i < in.n_bf16; i++) /* finite values in (-4, 4), as activations */
        bf16[i] = paro_f32_to_bf16((float)((double)(int64_t)rng_next(&rng) * 0x1p-61));
    in.bytes = bytes;
    in.bf16 = bf16;

    printf("{\"repeat\": %d, \"mib\": %d, \"bf16_mib\": %d, \"fast_path\": %d", repeat, mb,
           bf16_mb, paro_crc32_use_fast(1));
    uint32_t crc[N_WAYS];
    for (int w = 0; w < N_WAYS; w++) {
        for (int r = 0; r <= repeat; r++) { /* run 0 warms up */
            double t0 = now_ms();
            crc[w] = run_way(w, &in);
            if (r > 0)
                ms[r - 1] = now_ms() - t0;
        }
        qsort(ms, (size_t)repeat, sizeof *ms, cmp_double);
        const double bytes_in = w == ZLIB || w == PARO       ? (double)in.n_bytes
                                : w == ZLIB_HOT || w == PARO_HOT ? 4.0 * (double)in.n_bytes
                                                             : 2.0 * (double)in.n_bf16;
        printf(",\n \"%s\": {\"ms_min\": %.3f, \"ms_median\": %.3f, \"gb_per_s\": %.2f, "
               "\"crc\": \"%08x\"}",
               way_name[w], ms[0], ms[repeat / 2], bytes_in / ms[0] * 1e-6, (unsigned)crc[w]);
    }
    printf("}\n");
    free(bytes);
    free(bf16);
    free(ms);
    for (int w = 0; w < N_WAYS; w += 2)
        if (crc[w] != crc[w + 1]) {
            fprintf(stderr, "bench_crc: %s and %s disagree\n", way_name[w], way_name[w + 1]);
            return 1;
        }
    return 0;
}
