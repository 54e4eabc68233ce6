/* paro — plan file internals shared by plan.c, plan_write.c, plan_read.c and
 * plan_json.c.  Not part of the public API: only formats/plan*.c include it.
 * formats/PLAN.md is the normative description of the bytes.
 */
#ifndef PARO_PLAN_INTERNAL_H_3a91c5e0
#define PARO_PLAN_INTERNAL_H_3a91c5e0

#include <stddef.h> /* size_t */
#include <stdint.h> /* uint8_t, uint32_t, uint64_t */

#include <cjson/cJSON.h> /* cJSON */

#include "plan.h" /* paro_plan, paro_err */

/* ---- fixed layout (PLAN.md "Header", "Section table") ---- */
#define PARO_PLAN_HEADER_SIZE 64u
#define PARO_PLAN_ENTRY_SIZE 48u
#define PARO_PLAN_ALIGN 64u
#define PARO_PLAN_MAX_HEADER_SIZE 65536u /* header_size and section_entry_size */
#define PARO_PLAN_ZLIB_MAX_RATIO 1032u   /* deflate cannot expand more than this */
#define PARO_PLAN_MAX_JSON_DEPTH 32

extern const uint8_t paro_plan_magic[8];

/* header field offsets */
enum {
    PARO_H_MAGIC = 0,
    PARO_H_MAJOR = 8,
    PARO_H_MINOR = 10,
    PARO_H_HEADER_SIZE = 12,
    PARO_H_REQUIRED = 16,
    PARO_H_OPTIONAL = 20,
    PARO_H_NSECTIONS = 24,
    PARO_H_ENTRY_SIZE = 28,
    PARO_H_TABLE_OFFSET = 32,
    PARO_H_FILE_SIZE = 40,
    PARO_H_CRC = 48,
    PARO_H_RESERVED = 52
};

/* section table entry field offsets */
enum {
    PARO_E_TYPE = 0,
    PARO_E_FLAGS = 4,
    PARO_E_OFFSET = 8,
    PARO_E_STORED = 16,
    PARO_E_RAW = 24,
    PARO_E_CODEC = 32,
    PARO_E_CRC = 36,
    PARO_E_INDEX = 40,
    PARO_E_RESERVED = 44
};

/* section types */
enum {
    PARO_SEC_META = 1,
    PARO_SEC_HEAD_ORDER = 2,
    PARO_SEC_SCORES = 3,
    PARO_SEC_DENSITY = 4,
    PARO_SEC_RECALL = 5,
    PARO_SEC_PERM = 6,
    PARO_SEC_MASKS = 7,
    PARO_SEC_TILEMASS = 8, /* 1.1, optional */
    PARO_SEC_KNOWN_MAX = 8
};
#define PARO_SEC_FLAG_REQUIRED 1u
enum { PARO_CODEC_NONE = 0, PARO_CODEC_ZLIB = 1 };

/* "META", ... for messages; "type N" is not returned (NULL when unknown). */
const char *paro_plan_section_name(uint32_t type);

/* ---- little-endian access ---- */
static inline uint16_t paro_rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t paro_rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t paro_rd64(const uint8_t *p)
{
    return (uint64_t)paro_rd32(p) | (uint64_t)paro_rd32(p + 4) << 32;
}
static inline void paro_wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void paro_wr32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline void paro_wr64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* ---- metadata: the top-level META keys, in the order they are written ---- */
enum paro_meta_key {
    PARO_K_TOOL,
    PARO_K_MODEL,
    PARO_K_BACKEND,
    PARO_K_GRID,
    PARO_K_TEXT_TOKENS,
    PARO_K_TEXT_POSITION,
    PARO_K_TOKENS,
    PARO_K_HEADS,
    PARO_K_HEAD_DIM,
    PARO_K_SCALE,
    PARO_K_MODEL_LAYERS,
    PARO_K_LAYERS,
    PARO_K_BLOCK,
    PARO_K_BLOCKS,
    PARO_K_ORDERS,
    PARO_K_METRIC,
    PARO_K_TARGET,
    PARO_K_BUCKETS,
    PARO_K_SAMPLES,
    PARO_K_SEED,
    PARO_K_INPUTS,
    PARO_K_COUNT
};
extern const char *const paro_plan_meta_keys[PARO_K_COUNT];

/* Largest integer a JSON number is allowed to carry (2^53). */
#define PARO_PLAN_MAX_JSON_INT 9007199254740992.0
#define PARO_PLAN_MAX_INT INT64_C(9007199254740992)

/* What a validity check found wrong: the message, the code (FORMAT or
 * LIMIT), and where: a META key (key >= 0) or an element of a data section
 * (section = PARO_SEC_*, slot = layer slot for MASKS, elem = element index,
 * or byte index for MASKS). */
typedef struct paro_plan_bad {
    paro_err code;
    int key;          /* enum paro_meta_key, -1 when none */
    uint32_t section; /* PARO_SEC_*, 0 when none */
    uint32_t slot;
    uint64_t elem;
    char msg[320];
} paro_plan_bad;

/* The metadata rules of PLAN.md "META" on the decoded struct (shared by the
 * writer, which refuses to write a plan breaking them, and the reader).
 * Returns 0 when they hold, else fills *bad and returns 1. */
int paro_plan_check_meta(const paro_plan *p, paro_plan_bad *bad);
/* The content rules of the data sections (order indices, finite scores,
 * density and recall in [0, 1], zero mask padding).  p must pass
 * paro_plan_check_meta first. */
int paro_plan_check_data(const paro_plan *p, paro_plan_bad *bad);

/* Sizes in bytes of the raw data sections of a plan that passed
 * paro_plan_check_meta; 0 on overflow (never a valid size for these). */
typedef struct paro_plan_sizes {
    uint64_t head_order, scores, density, perm, mask;
    uint64_t tile_mass; /* one layer's TILEMASS section */
} paro_plan_sizes;
int paro_plan_sizes_of(const paro_plan *p, paro_plan_sizes *s);

/* The tile-mass level of mass m relative to the head's largest mass top
 * (PLAN.md "TILEMASS"); top must be finite and > 0. */
uint8_t paro_plan_tile_mass_level(double m, double top);

/* 1 when name is one of the six axis orders. */
int paro_plan_axes_name_ok(const char *name);
/* perm[p] = capture index of the token at permuted position p, for the axis
 * order name (PLAN.md "PERM"); perm has p->n_tokens entries. */
void paro_plan_axes_perm(const paro_plan *p, const char *name, uint32_t *perm);

/* Length (1-4) of the UTF-8 character at s[0..n), 0 when it is not valid
 * (overlong, surrogate, beyond U+10FFFF, cut short) or is a NUL byte. */
size_t paro_plan_utf8_char(const uint8_t *s, size_t n);
/* 1 when s[0..n) is valid UTF-8 without NUL bytes. */
int paro_plan_utf8_ok(const char *s, size_t n);

/* Adds the META keys of p to obj, in their fixed order.  Numbers are raw
 * items printed by paro_json_double / paro_json_uint (json_util.h), so the
 * text is the same on every platform.  Returns 0, or -1 when out of memory. */
int paro_plan_meta_add(cJSON *obj, const paro_plan *p);

#endif
