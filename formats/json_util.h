/* paro — strict JSON helpers over cJSON, shared by the manifest parser, the
 * safetensors header reader and the plan reader.
 *
 * cJSON alone is lenient in ways that matter for file formats: it does not
 * validate UTF-8, keeps duplicate keys, matches keys case-insensitively in
 * cJSON_GetObjectItem, truncates strings at an escaped \u0000, and stores
 * every number as a double.  These helpers close those gaps so that every
 * reader rejects the same things with the same kind of message.
 *
 * Messages name a JSON path: the caller passes the path of the object it
 * reads ("" for the top level, "samples[3]", "tensor_names") and the helpers
 * append the key, e.g. "samples[3].timestep is 1200; it must be in
 * [0, 1000]".  All errors are PARO_ERR_FORMAT unless a limit says otherwise.
 */
#ifndef PARO_JSON_UTIL_H_4e9b7c15
#define PARO_JSON_UTIL_H_4e9b7c15

#include <stddef.h> /* size_t */
#include <stdint.h> /* uint64_t */

#include <cjson/cJSON.h> /* cJSON */

#include "error.h" /* paro_err, paro_errinfo */

#ifdef __cplusplus
extern "C" {
#endif

/* Deepest nesting of arrays and objects paro_json_parse accepts. */
#define PARO_JSON_MAX_DEPTH 64
/* Largest integer a JSON number may hold: above it doubles skip integers. */
#define PARO_JSON_MAX_INT (UINT64_C(1) << 53)
/* Longest JSON path kept in messages (longer ones are cut). */
#define PARO_JSON_PATH_MAX 256

/* Where errors go: the file they concern and the byte offset every semantic
 * error reports (cJSON keeps no positions, so readers pass the start of the
 * JSON text, or PARO_NO_OFFSET). */
typedef struct paro_json_ctx {
    const char *file;
    uint64_t offset;
    paro_errinfo *ei;
} paro_json_ctx;

/* Returns 1 when buf[0, n) is valid UTF-8 (shortest forms only, no
 * surrogates, nothing above U+10FFFF); else 0 with *bad (when not NULL) set
 * to the offset of the first byte of the bad sequence. */
int paro_json_utf8_valid(const void *buf, size_t n, size_t *bad);

/* Parses buf[0, n) (no NUL terminator needed) into *out, which the caller
 * frees with cJSON_Delete.  Rejects invalid UTF-8, nesting deeper than
 * PARO_JSON_MAX_DEPTH, a string holding \u0000, and anything but whitespace
 * after the value.  Errors report cx->offset + the position of the problem.
 * `what` names the text in messages ("manifest", "header"). */
paro_err paro_json_parse(const paro_json_ctx *cx, const void *buf, size_t n, const char *what,
                         cJSON **out);

/* Exact (case-sensitive) member lookup: NULL when absent.  Use only on
 * objects already checked for duplicates, or it returns the first. */
const cJSON *paro_json_get(const cJSON *obj, const char *key);

/* Checks that obj is an object whose keys are all in allowed[0, n_allowed),
 * each at most once.  A key that matches an allowed one only when case is
 * ignored ("Grid", "GRID") is reported as such.  On failure *bad_key (when not
 * NULL) points at the offending key inside obj. */
paro_err paro_json_check_keys(const paro_json_ctx *cx, const cJSON *obj, const char *path,
                              const char *const *allowed, size_t n_allowed,
                              const char **bad_key);

/* Checks that no two members of obj have the same key (exactly), in
 * O(n log n): for objects with free-form keys, such as tensor names. */
paro_err paro_json_check_unique(const paro_json_ctx *cx, const cJSON *obj, const char *path,
                                const char **bad_key);

/* Whether a getter fails on an absent key.  An optional absent key leaves
 * *out untouched (set the default first) and sets *found to 0. */
typedef enum paro_json_need { PARO_JSON_OPTIONAL = 0, PARO_JSON_REQUIRED = 1 } paro_json_need;

/* Interval ends for paro_json_get_number: closed unless flagged open. */
enum { PARO_JSON_LO_OPEN = 1, PARO_JSON_HI_OPEN = 2 };

/* Keyed getters: look up key in obj (the object at `path`), check the type
 * and range, store the value.  found may be NULL. */
paro_err paro_json_get_uint(const paro_json_ctx *cx, const cJSON *obj, const char *path,
                            const char *key, paro_json_need need, uint64_t lo, uint64_t hi,
                            uint64_t *out, int *found);
/* A finite number in [lo, hi] (ends open per flags); lo/hi may be +-HUGE_VAL. */
paro_err paro_json_get_number(const paro_json_ctx *cx, const cJSON *obj, const char *path,
                              const char *key, paro_json_need need, double lo, double hi,
                              unsigned flags, double *out, int *found);
/* *out points into the cJSON tree (valid until it is deleted). */
paro_err paro_json_get_string(const paro_json_ctx *cx, const cJSON *obj, const char *path,
                              const char *key, paro_json_need need, const char **out,
                              int *found);
paro_err paro_json_get_bool(const paro_json_ctx *cx, const cJSON *obj, const char *path,
                            const char *key, paro_json_need need, int *out, int *found);
/* An array of min_len..max_len integers, each in [lo, hi], into
 * out[0, max_len); *n gets the length. */
paro_err paro_json_get_uint_array(const paro_json_ctx *cx, const cJSON *obj, const char *path,
                                  const char *key, paro_json_need need, size_t min_len,
                                  size_t max_len, uint64_t lo, uint64_t hi, uint64_t *out,
                                  size_t *n, int *found);

/* Value-level forms for array elements and values already looked up: `what`
 * is the full JSON path of the value, used as is in messages. */
paro_err paro_json_as_uint(const paro_json_ctx *cx, const cJSON *item, const char *what,
                           uint64_t lo, uint64_t hi, uint64_t *out);
paro_err paro_json_as_number(const paro_json_ctx *cx, const cJSON *item, const char *what,
                             double lo, double hi, unsigned flags, double *out);
paro_err paro_json_as_string(const paro_json_ctx *cx, const cJSON *item, const char *what,
                             const char **out);
/* Checks that item is an object (or an array), for messages like
 * "samples[2] is a string; it must be an object". */
paro_err paro_json_as_object(const paro_json_ctx *cx, const cJSON *item, const char *what);
paro_err paro_json_as_array(const paro_json_ctx *cx, const cJSON *item, const char *what,
                            size_t min_len, size_t max_len, size_t *n);

/* Joins a path and a key ("samples[3]" + "file" -> "samples[3].file"; "" +
 * "grid" -> "grid") or an index ("samples" + 3 -> "samples[3]") into buf
 * (cut to size); returns buf. */
const char *paro_json_path_key(char *buf, size_t size, const char *path, const char *key);
const char *paro_json_path_index(char *buf, size_t size, const char *path, size_t index);

/* Names a value's JSON type for messages: "a string", "an object", … */
const char *paro_json_type_name(const cJSON *item);

/* Copies s into buf for a one-line message: control characters become '?'
 * and a string too long for buf is cut with "...".  Returns buf. */
const char *paro_json_printable(char *buf, size_t size, const char *s);

/* cJSON_Print(item) followed by a newline, in a malloc'ed string (free with
 * free()); NULL when out of memory. */
char *paro_json_print_line(const cJSON *item);

/* ---- writing ----
 * Numbers go out as cJSON raw items formatted here: cJSON prints doubles
 * with %1.15g, accepting the result within an epsilon (the last bit lost),
 * and integers beyond 2^31 in floating form.  These read back exactly
 * (strtod, Python's float()); doubles always carry a '.' or an exponent,
 * integers never do. */

/* The shortest of %.15g, %.16g, %.17g that reads back as exactly v, with
 * ".0" appended when it would look like an integer; "null" when v is not
 * finite.  buf needs 32 bytes. */
void paro_json_fmt_double(double v, char *buf);
/* Raw number items (paro_json_fmt_double; integers in decimal); NULL when
 * out of memory. */
cJSON *paro_json_double(double v);
cJSON *paro_json_uint(uint64_t v);
cJSON *paro_json_int(int64_t v);
/* Adds item under key (to an object) or at the end (key NULL, to an array);
 * deletes it on failure.  Returns 0, or -1 when out of memory (item NULL
 * counts as that, so a failed constructor can be passed straight in). */
int paro_json_put(cJSON *to, const char *key, cJSON *item);

#ifdef __cplusplus
}
#endif
#endif
