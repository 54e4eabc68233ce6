/* paro tests — helpers shared by the Check suites. */
#ifndef PARO_TESTUTIL_H_0d4e7a19
#define PARO_TESTUTIL_H_0d4e7a19

#include <check.h>  /* Suite, SRunner */
#include <stddef.h> /* size_t */
#include <stdint.h> /* uint32_t, uint64_t */

#include "calibrate.h" /* paro_calib_config, paro_calibrate */
#include "error.h"     /* paro_err, paro_errinfo */
#include "manifest.h"  /* paro_manifest */
#include "plan.h"      /* paro_plan */

/* A fresh folder under $TMPDIR (or /tmp), removed by tu_rmtree. */
char *tu_mkdtemp(void);
void tu_rmtree(const char *dir);
/* dir + "/" + name, malloc'ed. */
char *tu_path(const char *dir, const char *name);
void tu_write_file(const char *path, const void *buf, size_t n);
/* Whole file, malloc'ed; *n gets the size.  Fails the test when unreadable. */
unsigned char *tu_read_file(const char *path, size_t *n);
int tu_exists(const char *path);

/* splitmix64: the same stream on every libc. */
uint64_t tu_rand(uint64_t *state);
/* Uniform in [0, 1). */
double tu_uniform(uint64_t *state);
/* Roughly standard normal (sum of 12 uniforms - 6): no libm. */
double tu_normal(uint64_t *state);

/* An exact sum of finite doubles >= 0, for test oracles: a binary number in
 * 32-bit digits whose lowest bit weighs 2^-1074.  Written apart from
 * metrics/largest.c (other digits, frexp/ldexp, rounding bit by bit) so that
 * the two check each other. */
#define TU_EXACT_DIGITS 72
typedef struct tu_exact {
    uint32_t d[TU_EXACT_DIGITS];
} tu_exact;
void tu_exact_zero(tu_exact *x);
void tu_exact_add(tu_exact *x, double v);
/* x -= y, for x >= y. */
void tu_exact_sub(tu_exact *x, const tu_exact *y);
int tu_exact_cmp(const tu_exact *a, const tu_exact *b);
/* Nearest double, ties to even (+inf past the largest double). */
double tu_exact_round(const tu_exact *x);

/* n test masses of one kind (TU_MASS_*), finite and >= 0. */
enum {
    TU_MASS_SKEWED,    /* doubles in [0, 64), most of them small */
    TU_MASS_FLOAT,     /* floats over nine decades, as the CUDA backend gives them */
    TU_MASS_WIDE,      /* any double: every exponent, subnormals, zeros */
    TU_MASS_NARROW,    /* doubles in [1, 2): one exponent, every fraction bit */
    TU_MASS_TIES,      /* a few values, many times each, zeros among them */
    TU_MASS_ZEROS,     /* nine in ten are zero */
    TU_MASS_EQUAL,     /* all the same */
    TU_MASS_SUBNORMAL, /* subnormals and zeros */
    TU_MASS_HUGE,      /* near the largest double: sums overflow */
    TU_MASS_KINDS
};
void tu_masses(int kind, double *v, size_t n, uint64_t *rng);

/* Runs one suite (fork mode unless CK_FORK=no) and returns the exit status. */
int tu_run_suite(Suite *s);

/* A growing memory buffer, and a sink (paro_zip_sink's shape) appending to
 * one: for writers that stream their output. */
typedef struct tu_membuf {
    unsigned char *p;
    size_t len, cap;
} tu_membuf;
paro_err tu_mem_sink(void *user, const void *buf, size_t n, paro_errinfo *ei);

/* ---- tiny captures ---- */

typedef struct tu_capture {
    uint32_t grid[3], text;
    int text_last;
    uint32_t layers, heads, d, samples;
    int with_v;
    /* Every query attends to key 0 so strongly that all other
     * probabilities underflow to exactly 0 (exercises the renormalisation of
     * rows whose kept entries all underflow). */
    int spike;
    uint64_t seed;
} tu_capture;

/* Writes manifest.json and one safetensors file per sample into dir, with
 * Q, K (and V) from paro synth's planted heads; sample s has progress
 * (s + 0.5) / samples.  Returns the manifest's path (malloc'ed).  At most
 * 8 layers. */
char *tu_write_capture(const char *dir, const tu_capture *cs);

/* The manifest at path, and a plan calibrated from it: a failure fails
 * the test with the library's message. */
paro_manifest *tu_load_manifest(const char *path);
paro_plan *tu_calibrate(const paro_manifest *m, const paro_calib_config *cfg);

/* A capture written into a fresh temporary folder, and its manifest. */
typedef struct tu_captured {
    char *dir, *manifest_path;
    paro_manifest *m;
} tu_captured;
void tu_captured_open(tu_captured *c, const tu_capture *cs);
/* Frees the manifest and removes the folder. */
void tu_captured_close(tu_captured *c);

#endif
