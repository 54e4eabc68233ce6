/* paro — the capture manifest and reading one layer of one sample as f32.
 * formats/CAPTURE.md is the normative description of what is accepted. */
#include "manifest.h"

#include <errno.h>    /* errno, EINTR */
#include <fcntl.h>    /* open, O_RDONLY, O_NONBLOCK, O_CLOEXEC */
#include <math.h>     /* sqrt, HUGE_VAL */
#include <stdio.h>    /* snprintf */
#include <stdlib.h>   /* malloc, calloc, free */
#include <string.h>   /* strcmp, strdup, strncmp, strlen, strchr, strrchr, strstr, memcpy, strerror */
#include <sys/stat.h> /* stat, fstat, S_ISREG, S_ISDIR */
#include <unistd.h>   /* read, close */

#include <cjson/cJSON.h> /* cJSON */
#include <zlib.h>        /* crc32 */

#include "dtype.h"       /* paro_convert_to_f32, paro_dtype_size */
#include "json_util.h"   /* paro_json_parse, paro_json_check_keys, paro_json_get_* */
#include "tensor_file.h" /* paro_tensor_file_* */

#define CAPTURE_FORMAT "paro-capture"
#define CAPTURE_VERSION 1
#define LAYER_FIELD "{layer}"
/* Longest sample file path and tensor name template accepted. */
#define MAX_FILE_PATH 4096u
#define MAX_TEMPLATE 1024u

static const char *const default_templates[3] = {"layers.{layer}.q", "layers.{layer}.k",
                                                 "layers.{layer}.v"};
static const char *const kind_keys[3] = {"q", "k", "v"};

void paro_manifest_free(paro_manifest *m)
{
    if (!m)
        return;
    free(m->path);
    free(m->dir);
    free(m->model);
    for (int k = 0; k < 3; k++)
        free(m->tensor_names[k]);
    for (size_t i = 0; i < m->n_samples; i++)
        free(m->samples[i].file);
    free(m->samples);
    free(m);
}

static paro_err read_whole(const char *path, unsigned char **out, size_t *n, paro_errinfo *ei)
{
    *out = NULL;
    /* O_NONBLOCK: a FIFO must not hang the open (it is refused below); reads
     * of a regular file ignore the flag. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return paro_error(ei, PARO_ERR_IO, path, PARO_NO_OFFSET, "cannot open: %s",
                          strerror(errno));
    struct stat st;
    paro_err rc = PARO_OK;
    if (fstat(fd, &st) != 0) {
        rc = paro_error(ei, PARO_ERR_IO, path, PARO_NO_OFFSET, "cannot stat: %s",
                        strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = paro_error(ei, PARO_ERR_IO, path, PARO_NO_OFFSET, "%s, not a manifest file",
                        S_ISDIR(st.st_mode) ? "is a folder" : "is not a regular file");
        goto out;
    }
    if ((uint64_t)st.st_size > PARO_MAX_MANIFEST_BYTES) {
        rc = paro_error(ei, PARO_ERR_LIMIT, path, PARO_NO_OFFSET,
                        "manifest is %llu bytes; paro reads manifests of at most %u",
                        (unsigned long long)st.st_size, PARO_MAX_MANIFEST_BYTES);
        goto out;
    }
    size_t size = (size_t)st.st_size, got = 0;
    unsigned char *buf = malloc(size ? size : 1);
    if (!buf) {
        rc = paro_error(ei, PARO_ERR_NOMEM, path, PARO_NO_OFFSET, "out of memory");
        goto out;
    }
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = paro_error(ei, PARO_ERR_IO, path, PARO_NO_OFFSET, "cannot read: %s",
                            strerror(errno));
            free(buf);
            goto out;
        }
        if (r == 0)
            break; /* shrank while we read: parse what is there */
        got += (size_t)r;
    }
    *out = buf;
    *n = got;
out:
    close(fd);
    return rc;
}

/* A template must name the layer exactly once and hold no other braces, so
 * that a typo such as "{layers}" fails here instead of finding no tensor. */
static paro_err check_template(const paro_json_ctx *cx, const char *where, const char *tpl)
{
    char shown[128];
    size_t fields = 0;
    for (const char *p = tpl; *p;) {
        if (!strncmp(p, LAYER_FIELD, strlen(LAYER_FIELD))) {
            fields++;
            p += strlen(LAYER_FIELD);
        } else if (*p == '{' || *p == '}') {
            fields = 99; /* any stray brace fails below */
            break;
        } else {
            p++;
        }
    }
    if (strlen(tpl) > MAX_TEMPLATE)
        return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                          "%s is %zu bytes long; at most %u", where, strlen(tpl), MAX_TEMPLATE);
    if (fields != 1)
        return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                          "%s is '%s'; it must contain '{layer}' exactly once and no other "
                          "braces",
                          where, paro_json_printable(shown, sizeof shown, tpl));
    return PARO_OK;
}

/* Sample paths stay inside the capture folder: relative, no "..". */
static paro_err check_sample_file(const paro_json_ctx *cx, const char *where, const char *file)
{
    char shown[128];
    size_t len = strlen(file);
    if (len == 0)
        return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                          "%s is empty; it must name a file", where);
    if (len > MAX_FILE_PATH)
        return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                          "%s is %zu bytes long; at most %u", where, len, MAX_FILE_PATH);
    paro_json_printable(shown, sizeof shown, file);
    if (file[0] == '/')
        return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                          "%s is '%s'; it must be relative to the manifest's folder", where,
                          shown);
    for (const char *p = file; *p;) {
        const char *slash = strchr(p, '/');
        size_t part = slash ? (size_t)(slash - p) : strlen(p);
        if (part == 2 && p[0] == '.' && p[1] == '.')
            return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                              "%s is '%s'; it must not contain '..'", where, shown);
        p += part + (slash ? 1 : 0);
    }
    return PARO_OK;
}

static paro_err parse_tensor_names(const paro_json_ctx *cx, const cJSON *root, paro_manifest *m)
{
    const cJSON *names = paro_json_get(root, "tensor_names");
    const char *tpl[3] = {default_templates[0], default_templates[1], default_templates[2]};
    char where[PARO_JSON_PATH_MAX];
    if (names) {
        paro_err rc = paro_json_check_keys(cx, names, "tensor_names", kind_keys, 3, NULL);
        if (rc)
            return rc;
        for (int k = 0; k < 3; k++) {
            rc = paro_json_get_string(cx, names, "tensor_names", kind_keys[k],
                                      PARO_JSON_OPTIONAL, &tpl[k], NULL);
            if (rc)
                return rc;
            rc = check_template(cx,
                                paro_json_path_key(where, sizeof where, "tensor_names",
                                                   kind_keys[k]),
                                tpl[k]);
            if (rc)
                return rc;
        }
    }
    for (int k = 0; k < 3; k++)
        if (!(m->tensor_names[k] = strdup(tpl[k])))
            return paro_error(cx->ei, PARO_ERR_NOMEM, cx->file, PARO_NO_OFFSET,
                              "out of memory");
    return PARO_OK;
}

static paro_err parse_samples(const paro_json_ctx *cx, const cJSON *root, paro_manifest *m)
{
    static const char *const sample_keys[] = {"file", "prompt", "timestep", "step"};
    const cJSON *samples = paro_json_get(root, "samples");
    char path[PARO_JSON_PATH_MAX], where[PARO_JSON_PATH_MAX];
    if (!samples)
        return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                          "missing key 'samples'");
    if (cJSON_IsArray(samples) && (unsigned)cJSON_GetArraySize(samples) > PARO_MAX_SAMPLES)
        return paro_error(cx->ei, PARO_ERR_LIMIT, cx->file, cx->offset,
                          "samples has %d entries; paro reads at most %u",
                          cJSON_GetArraySize(samples), PARO_MAX_SAMPLES);
    size_t n;
    paro_err rc = paro_json_as_array(cx, samples, "samples", 1, PARO_MAX_SAMPLES, &n);
    if (rc)
        return rc;
    m->samples = calloc(n, sizeof *m->samples);
    if (!m->samples)
        return paro_error(cx->ei, PARO_ERR_NOMEM, cx->file, PARO_NO_OFFSET, "out of memory");
    size_t i = 0;
    for (const cJSON *s = samples->child; s; s = s->next, i++) {
        paro_json_path_index(path, sizeof path, "samples", i);
        rc = paro_json_check_keys(cx, s, path, sample_keys, 4, NULL);
        if (rc)
            return rc;
        paro_sample *out = &m->samples[i];
        const char *file;
        rc = paro_json_get_string(cx, s, path, "file", PARO_JSON_REQUIRED, &file, NULL);
        if (!rc)
            rc = check_sample_file(cx, paro_json_path_key(where, sizeof where, path, "file"),
                                   file);
        if (rc)
            return rc;
        uint64_t prompt, step;
        rc = paro_json_get_uint(cx, s, path, "prompt", PARO_JSON_REQUIRED, 0, PARO_JSON_MAX_INT,
                                &prompt, NULL);
        if (!rc)
            rc = paro_json_get_number(cx, s, path, "timestep", PARO_JSON_REQUIRED, 0.0,
                                      m->timestep_max, 0, &out->timestep, NULL);
        if (rc)
            return rc;
        out->step = -1;
        if (paro_json_get(s, "step")) {
            paro_json_path_key(where, sizeof where, path, "step");
            if (m->steps < 0)
                return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                                  "%s is given but the manifest has no 'steps'", where);
            rc = paro_json_get_uint(cx, s, path, "step", PARO_JSON_REQUIRED, 0,
                                    (uint64_t)m->steps - 1, &step, NULL);
            if (rc)
                return rc;
            out->step = (int64_t)step;
        }
        out->prompt = (int64_t)prompt;
        if (!(out->file = strdup(file)))
            return paro_error(cx->ei, PARO_ERR_NOMEM, cx->file, PARO_NO_OFFSET,
                              "out of memory");
        m->n_samples = i + 1;
    }
    return PARO_OK;
}

/* A size that must be >= 1 and within a limit: beyond the limit is
 * PARO_ERR_LIMIT, the rest PARO_ERR_FORMAT. */
static paro_err get_size(const paro_json_ctx *cx, const cJSON *root, const char *key,
                         uint32_t limit, uint32_t *out)
{
    uint64_t v;
    paro_err rc = paro_json_get_uint(cx, root, "", key, PARO_JSON_REQUIRED, 1, PARO_JSON_MAX_INT,
                                     &v, NULL);
    if (rc)
        return rc;
    if (v > limit)
        return paro_error(cx->ei, PARO_ERR_LIMIT, cx->file, cx->offset,
                          "%s is %llu; paro handles at most %u", key, (unsigned long long)v,
                          limit);
    *out = (uint32_t)v;
    return PARO_OK;
}

static paro_err parse_root(const paro_json_ctx *cx, const cJSON *root, paro_manifest *m)
{
    static const char *const keys[] = {
        "format", "version", "model", "grid", "text_tokens", "text_position",
        "layers", "heads", "head_dim", "scale", "layout", "dtype", "tensor_names",
        "steps", "timestep_max", "samples"};
    char shown[128];
    paro_err rc = paro_json_as_object(cx, root, "the manifest");
    if (rc)
        return rc;

    /* format and version first: a newer manifest should say so rather than
     * fail on a key this version does not know. */
    const char *s;
    uint64_t u;
    rc = paro_json_get_string(cx, root, "", "format", PARO_JSON_REQUIRED, &s, NULL);
    if (rc)
        return rc;
    if (strcmp(s, CAPTURE_FORMAT))
        return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                          "format is '%s'; it must be '%s'",
                          paro_json_printable(shown, sizeof shown, s), CAPTURE_FORMAT);
    rc = paro_json_get_uint(cx, root, "", "version", PARO_JSON_REQUIRED, 0, PARO_JSON_MAX_INT,
                            &u, NULL);
    if (rc)
        return rc;
    if (u != CAPTURE_VERSION)
        return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                          "version is %llu; this paro reads version %d", (unsigned long long)u,
                          CAPTURE_VERSION);
    rc = paro_json_check_keys(cx, root, "", keys, sizeof keys / sizeof keys[0], NULL);
    if (rc)
        return rc;

    rc = paro_json_get_string(cx, root, "", "model", PARO_JSON_REQUIRED, &s, NULL);
    if (rc)
        return rc;
    if (!(m->model = strdup(s)))
        return paro_error(cx->ei, PARO_ERR_NOMEM, cx->file, PARO_NO_OFFSET, "out of memory");

    uint64_t grid[3], text;
    size_t n;
    rc = paro_json_get_uint_array(cx, root, "", "grid", PARO_JSON_REQUIRED, 3, 3, 1,
                                  PARO_JSON_MAX_INT, grid, &n, NULL);
    if (!rc)
        rc = paro_json_get_uint(cx, root, "", "text_tokens", PARO_JSON_REQUIRED, 0,
                                PARO_JSON_MAX_INT, &text, NULL);
    if (rc)
        return rc;
    uint64_t tokens;
    if (!paro_mul_ok(grid[0], grid[1], &tokens) || !paro_mul_ok(tokens, grid[2], &tokens) ||
        !paro_add_ok(tokens, text, &tokens) || tokens > PARO_MAX_TOKENS)
        return paro_error(cx->ei, PARO_ERR_LIMIT, cx->file, cx->offset,
                          "grid [%llu, %llu, %llu] with text_tokens %llu makes more than %u "
                          "tokens, the most paro handles",
                          (unsigned long long)grid[0], (unsigned long long)grid[1],
                          (unsigned long long)grid[2], (unsigned long long)text,
                          PARO_MAX_TOKENS);
    for (int a = 0; a < 3; a++)
        m->grid[a] = (uint32_t)grid[a];
    m->text_tokens = (uint32_t)text;
    m->n_tokens = (uint32_t)tokens;

    rc = paro_json_get_string(cx, root, "", "text_position", PARO_JSON_REQUIRED, &s, NULL);
    if (rc)
        return rc;
    if (strcmp(s, "first") && strcmp(s, "last"))
        return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                          "text_position is '%s'; it must be 'first' or 'last'",
                          paro_json_printable(shown, sizeof shown, s));
    m->text_last = !strcmp(s, "last");

    rc = get_size(cx, root, "layers", PARO_MAX_LAYERS, &m->layers);
    if (!rc)
        rc = get_size(cx, root, "heads", PARO_MAX_HEADS, &m->heads);
    if (!rc)
        rc = get_size(cx, root, "head_dim", PARO_MAX_HEAD_DIM, &m->head_dim);
    if (rc)
        return rc;

    m->scale = 1.0 / sqrt((double)m->head_dim);
    rc = paro_json_get_number(cx, root, "", "scale", PARO_JSON_OPTIONAL, 0.0, HUGE_VAL,
                              PARO_JSON_LO_OPEN, &m->scale, &m->scale_given);
    if (rc)
        return rc;

    int found;
    m->layout = PARO_LAYOUT_HND;
    rc = paro_json_get_string(cx, root, "", "layout", PARO_JSON_OPTIONAL, &s, &found);
    if (rc)
        return rc;
    if (found) {
        if (!strcmp(s, "NHD"))
            m->layout = PARO_LAYOUT_NHD;
        else if (strcmp(s, "HND"))
            return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                              "layout is '%s'; it must be 'HND' or 'NHD'",
                              paro_json_printable(shown, sizeof shown, s));
    }

    m->dtype = PARO_DTYPE_INVALID;
    rc = paro_json_get_string(cx, root, "", "dtype", PARO_JSON_OPTIONAL, &s, &found);
    if (rc)
        return rc;
    if (found && (m->dtype = paro_dtype_parse(s)) == PARO_DTYPE_INVALID)
        return paro_error(cx->ei, PARO_ERR_FORMAT, cx->file, cx->offset,
                          "dtype is '%s'; it must be 'f32', 'f16' or 'bf16'",
                          paro_json_printable(shown, sizeof shown, s));

    rc = parse_tensor_names(cx, root, m);
    if (rc)
        return rc;

    rc = paro_json_get_uint(cx, root, "", "steps", PARO_JSON_OPTIONAL, 1, PARO_JSON_MAX_INT, &u,
                            &found);
    if (rc)
        return rc;
    m->steps = found ? (int64_t)u : -1;
    m->timestep_max = 1000.0;
    rc = paro_json_get_number(cx, root, "", "timestep_max", PARO_JSON_OPTIONAL, 0.0, HUGE_VAL,
                              PARO_JSON_LO_OPEN, &m->timestep_max, NULL);
    if (rc)
        return rc;
    return parse_samples(cx, root, m);
}

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    size_t len = slash == path ? 1 : (size_t)(slash - path);
    char *d = malloc(len + 1);
    if (d) {
        memcpy(d, path, len);
        d[len] = 0;
    }
    return d;
}

paro_err paro_manifest_load(const char *path, paro_manifest **out, paro_errinfo *ei)
{
    *out = NULL;
    unsigned char *buf;
    size_t n = 0;
    paro_err rc = read_whole(path, &buf, &n, ei);
    if (rc)
        return rc;
    paro_manifest *m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(path)) || !(m->dir = dir_of(path))) {
        free(buf);
        paro_manifest_free(m);
        return paro_error(ei, PARO_ERR_NOMEM, path, PARO_NO_OFFSET, "out of memory");
    }
    m->crc32 = (uint32_t)crc32(0L, buf, (uInt)n); /* n <= 64 MiB fits uInt */
    m->steps = -1;

    /* Parse errors carry a byte offset; cJSON keeps none for the values, so
     * semantic errors name the JSON path instead. */
    paro_json_ctx parse_cx = {path, 0, ei};
    paro_json_ctx cx = {path, PARO_NO_OFFSET, ei};
    cJSON *root;
    rc = paro_json_parse(&parse_cx, buf, n, "manifest", &root);
    free(buf);
    if (!rc) {
        rc = parse_root(&cx, root, m);
        cJSON_Delete(root);
    }
    if (rc) {
        paro_manifest_free(m);
        return rc;
    }
    *out = m;
    return PARO_OK;
}

char *paro_manifest_sample_path(const paro_manifest *m, size_t i)
{
    if (i >= m->n_samples)
        return NULL;
    const char *file = m->samples[i].file;
    /* A bare "manifest.json" gives bare sample names, which read better in
     * messages than "./s000.safetensors". */
    if (!strchr(m->path, '/'))
        return strdup(file);
    size_t a = strlen(m->dir), b = strlen(file);
    int sep = a > 0 && m->dir[a - 1] != '/';
    char *p = malloc(a + (size_t)sep + b + 1);
    if (!p)
        return NULL;
    memcpy(p, m->dir, a);
    if (sep)
        p[a] = '/';
    memcpy(p + a + (size_t)sep, file, b + 1);
    return p;
}

char *paro_manifest_tensor_name(const paro_manifest *m, paro_kind kind, uint32_t layer)
{
    if ((unsigned)kind > PARO_KIND_V)
        return NULL;
    const char *tpl = m->tensor_names[kind];
    const char *at = strstr(tpl, LAYER_FIELD);
    if (!at)
        return NULL;
    char num[16];
    int digits = snprintf(num, sizeof num, "%u", layer);
    size_t head = (size_t)(at - tpl), tail = strlen(at + strlen(LAYER_FIELD));
    char *name = malloc(head + (size_t)digits + tail + 1);
    if (!name)
        return NULL;
    memcpy(name, tpl, head);
    memcpy(name + head, num, (size_t)digits);
    memcpy(name + head + (size_t)digits, at + strlen(LAYER_FIELD), tail + 1);
    return name;
}

double paro_manifest_progress(const paro_manifest *m, size_t i)
{
    if (i >= m->n_samples)
        return 0.0;
    const paro_sample *s = &m->samples[i];
    double p = (s->step >= 0 && m->steps > 0) ? (double)s->step / (double)m->steps
                                              : 1.0 - s->timestep / m->timestep_max;
    return p < 0.0 ? 0.0 : p > 1.0 ? 1.0 : p;
}

/* ---- sample files */

struct paro_sample_file {
    const paro_manifest *m; /* must outlive the sample file */
    size_t index;
    char *path;
    paro_tensor_file *tf;
};

paro_err paro_sample_open(const paro_manifest *m, size_t sample, paro_sample_file **out,
                          paro_errinfo *ei)
{
    *out = NULL;
    if (sample >= m->n_samples)
        return paro_error(ei, PARO_ERR_USAGE, m->path, PARO_NO_OFFSET,
                          "sample %zu does not exist; the manifest has %zu", sample,
                          m->n_samples);
    paro_sample_file *sf = calloc(1, sizeof *sf);
    if (!sf || !(sf->path = paro_manifest_sample_path(m, sample))) {
        free(sf);
        return paro_error(ei, PARO_ERR_NOMEM, m->path, PARO_NO_OFFSET, "out of memory");
    }
    sf->m = m;
    sf->index = sample;
    struct stat st;
    paro_err rc;
    if (stat(sf->path, &st) != 0)
        rc = paro_error(ei, PARO_ERR_IO, sf->path, PARO_NO_OFFSET,
                        "cannot open the file of samples[%zu]: %s", sample, strerror(errno));
    else if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
        rc = paro_error(ei, PARO_ERR_IO, sf->path, PARO_NO_OFFSET,
                        "samples[%zu].file is neither a regular file nor a folder", sample);
    else
        rc = paro_tensor_file_open(sf->path,
                                   m->dtype == PARO_DTYPE_BF16 ? PARO_DTYPE_BF16
                                                               : PARO_DTYPE_INVALID,
                                   &sf->tf, ei);
    if (rc) {
        free(sf->path);
        free(sf);
        return rc;
    }
    *out = sf;
    return PARO_OK;
}

void paro_sample_close(paro_sample_file *sf)
{
    if (!sf)
        return;
    paro_tensor_file_close(sf->tf);
    free(sf->path);
    free(sf);
}

/* Index of the first NaN or infinity in x[0, n), or n.  Tests the exponent
 * bits so that the common all-finite case is one branch-free pass the
 * compiler vectorises. */
static size_t first_nonfinite(const float *x, size_t n)
{
    uint32_t any = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], sizeof u);
        any |= (uint32_t)((u & 0x7f800000u) == 0x7f800000u);
    }
    if (!any)
        return n;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], sizeof u);
        if ((u & 0x7f800000u) == 0x7f800000u)
            return i;
    }
    return n;
}

/* The same for bf16 bit patterns. */
static size_t first_nonfinite_bf16(const uint16_t *x, size_t n)
{
    uint32_t any = 0;
    for (size_t i = 0; i < n; i++)
        any |= (uint32_t)((x[i] & 0x7f80u) == 0x7f80u);
    if (!any)
        return n;
    for (size_t i = 0; i < n; i++)
        if ((x[i] & 0x7f80u) == 0x7f80u)
            return i;
    return n;
}

/* Where a tensor's bytes come from, for conversion and messages. */
typedef struct tensor_src {
    const unsigned char *data;
    paro_dtype dtype;
    size_t esize;
    uint64_t data_offset; /* in the file */
    const char *name;
    const char *path;
} tensor_src;

static paro_err nonfinite_error(const tensor_src *src, const paro_manifest *m, float v,
                                size_t elem, paro_errinfo *ei)
{
    size_t nh = m->heads, nt = m->n_tokens, d = m->head_dim;
    size_t head, token, dim = elem % d;
    if (m->layout == PARO_LAYOUT_HND) {
        head = elem / (nt * d);
        token = (elem / d) % nt;
    } else {
        token = elem / (nh * d);
        head = (elem / d) % nh;
    }
    char shown[PARO_JSON_PATH_MAX];
    return paro_error(ei, PARO_ERR_FORMAT, src->path,
                      src->data_offset + (uint64_t)elem * src->esize,
                      "tensor '%s' holds %s at head %zu, token %zu, dim %zu; paro refuses "
                      "non-finite values",
                      paro_json_printable(shown, sizeof shown, src->name),
                      v != v ? "NaN" : v > 0 ? "+inf" : "-inf", head, token, dim);
}

/* What the caller wants the elements as: f32, or (bf16 tensors only) the
 * bf16 bit patterns as they are. */
typedef enum { OUT_F32 = 0, OUT_BF16 = 1 } out_kind;

static size_t out_size(out_kind out)
{
    return out == OUT_BF16 ? sizeof(uint16_t) : sizeof(float);
}

/* Moves len elements from element `elem` of the tensor to element `at` of
 * dst and checks them; non-finite ones are refused naming their place. */
static paro_err move_checked(const tensor_src *src, const paro_manifest *m, size_t elem,
                             size_t len, out_kind out, void *dst, size_t at, paro_errinfo *ei)
{
    const unsigned char *from = src->data + elem * src->esize;
    size_t bad;
    float value = 0.0f;
    if (out == OUT_BF16) {
        uint16_t *to = (uint16_t *)dst + at;
        memcpy(to, from, len * sizeof *to); /* little-endian file, little-endian host */
        bad = first_nonfinite_bf16(to, len);
        if (bad < len)
            value = paro_bf16_to_f32(to[bad]);
    } else {
        float *to = (float *)dst + at;
        paro_convert_to_f32(src->dtype, from, to, len);
        bad = first_nonfinite(to, len);
        if (bad < len)
            value = to[bad];
    }
    return bad < len ? nonfinite_error(src, m, value, elem + bad, ei) : PARO_OK;
}

/* Elements converted per step: small enough to stay in L2 for the check. */
#define CONVERT_CHUNK 16384u

/* Heads [h0, h1) of a [NH][N][D] tensor: one contiguous range. */
static paro_err convert_hnd(const tensor_src *src, const paro_manifest *m, uint32_t h0,
                            uint32_t h1, out_kind out, void *dst, paro_errinfo *ei)
{
    const size_t per_head = (size_t)m->n_tokens * m->head_dim;
    const size_t begin = h0 * per_head, end = h1 * per_head;
    for (size_t start = begin; start < end; start += CONVERT_CHUNK) {
        size_t len = end - start < CONVERT_CHUNK ? end - start : CONVERT_CHUNK;
        paro_err rc = move_checked(src, m, start, len, out, dst, start, ei);
        if (rc)
            return rc;
    }
    return PARO_OK;
}

/* Heads [h0, h1) of a [N][NH][D] tensor into [NH][N][D].  A run of tokens'
 * rows for those heads is converted and checked in one call into a scratch
 * buffer, then each head's rows (contiguous in dst) are copied out: long
 * sequential reads and writes instead of one call per D-element row. */
static paro_err convert_nhd(const tensor_src *src, const paro_manifest *m, uint32_t h0,
                            uint32_t h1, out_kind out, void *dst, paro_errinfo *ei)
{
    size_t nh = m->heads, nt = m->n_tokens, d = m->head_dim, es = out_size(out);
    size_t row = (h1 - h0) * d; /* one token, the heads asked for */
    size_t run = CONVERT_CHUNK / row ? CONVERT_CHUNK / row : 1;
    unsigned char *scratch = malloc(run * row * es);
    if (!scratch)
        return paro_error(ei, PARO_ERR_NOMEM, src->path, PARO_NO_OFFSET,
                          "out of memory for %zu elements", run * row);
    paro_err rc = PARO_OK;
    for (size_t t0 = 0; t0 < nt && !rc; t0 += run) {
        size_t tokens = nt - t0 < run ? nt - t0 : run;
        for (size_t t = 0; t < tokens && !rc; t++) {
            const size_t first = ((t0 + t) * nh + h0) * d; /* element in the file */
            rc = move_checked(src, m, first, row, out, scratch, t * row, ei);
        }
        for (size_t head = h0; head < h1 && !rc; head++)
            for (size_t t = 0; t < tokens; t++)
                memcpy((unsigned char *)dst + (head * nt + t0 + t) * d * es,
                       scratch + (t * row + (head - h0) * d) * es, d * es);
    }
    free(scratch);
    return rc;
}

/* Looks up kind/layer in the open file; NULL *t with PARO_OK is "absent". */
static paro_err find_tensor(paro_sample_file *sf, paro_kind kind, uint32_t layer,
                            const paro_tensor **t, paro_errinfo *ei)
{
    const paro_manifest *m = sf->m;
    *t = NULL;
    if ((unsigned)kind > PARO_KIND_V || layer >= m->layers)
        return paro_error(ei, PARO_ERR_USAGE, sf->path, PARO_NO_OFFSET,
                          "no tensor kind %d of layer %u; the capture has %u layers",
                          (int)kind, layer, m->layers);
    char *name = paro_manifest_tensor_name(m, kind, layer);
    if (!name)
        return paro_error(ei, PARO_ERR_NOMEM, sf->path, PARO_NO_OFFSET, "out of memory");
    paro_err rc = paro_tensor_file_find(sf->tf, name, t, ei);
    free(name);
    return rc;
}

int paro_sample_has(paro_sample_file *sf, paro_kind kind, uint32_t layer)
{
    const paro_tensor *t;
    paro_err rc = find_tensor(sf, kind, layer, &t, NULL);
    return rc == PARO_OK && t != NULL;
}

paro_err paro_sample_check_tensor(const paro_manifest *m, const paro_tensor *t,
                                  paro_errinfo *ei)
{
    char shown[PARO_JSON_PATH_MAX], have[200], want[200];
    paro_json_printable(shown, sizeof shown, t->name);
    if (t->dtype == PARO_DTYPE_INVALID) {
        if (!strchr("<>|=", t->dtype_name[0])) /* safetensors names its types */
            return paro_error(ei, PARO_ERR_FORMAT, t->where, PARO_NO_OFFSET,
                              "tensor '%s' has dtype %s; paro reads F32, F16 and BF16", shown,
                              t->dtype_name);
        return paro_error(ei, PARO_ERR_FORMAT, t->where, PARO_NO_OFFSET,
                          "array '%s' has dtype '%s'; paro reads '<f4' and '<f2', and bfloat16 "
                          "stored as '<u2', '<i2' or '|V2' when the manifest says \"dtype\": "
                          "\"bf16\"",
                          shown, t->dtype_name);
    }
    if (m->dtype != PARO_DTYPE_INVALID && t->dtype != m->dtype)
        return paro_error(ei, PARO_ERR_FORMAT, t->where, PARO_NO_OFFSET,
                          "tensor '%s' has dtype %s; the manifest says \"dtype\": \"%s\"",
                          shown, t->dtype_name, paro_dtype_name(m->dtype));
    uint64_t expect[3] = {m->heads, m->n_tokens, m->head_dim};
    if (m->layout == PARO_LAYOUT_NHD) {
        expect[0] = m->n_tokens;
        expect[1] = m->heads;
    }
    /* A leading batch dimension of 1 is what hooks record: accepted. */
    const uint64_t *dims = t->ndim == 4 && t->shape[0] == 1 ? t->shape + 1 : t->shape;
    uint32_t ndim = dims == t->shape ? t->ndim : 3;
    if (ndim != 3 || dims[0] != expect[0] || dims[1] != expect[1] || dims[2] != expect[2])
        return paro_error(ei, PARO_ERR_FORMAT, t->where, PARO_NO_OFFSET,
                          "tensor '%s' has shape %s; the manifest wants %s (%s)",
                          shown, paro_shape_text(have, sizeof have, t->shape, t->ndim),
                          paro_shape_text(want, sizeof want, expect, 3),
                          m->layout == PARO_LAYOUT_HND ? "HND" : "NHD");
    return PARO_OK;
}

/* Finds the tensor and checks its dtype and shape against the manifest. */
static paro_err checked_tensor(paro_sample_file *sf, paro_kind kind, uint32_t layer,
                               const paro_tensor **out, paro_errinfo *ei)
{
    const paro_tensor *t;
    *out = NULL;
    paro_err rc = find_tensor(sf, kind, layer, &t, ei);
    if (rc)
        return rc;
    if (!t) {
        char *name = paro_manifest_tensor_name(sf->m, kind, layer);
        char shown[PARO_JSON_PATH_MAX];
        rc = paro_error(ei, PARO_ERR_FORMAT, sf->path, PARO_NO_OFFSET,
                        "tensor '%s' (layer %u %s) is missing from this sample %s",
                        paro_json_printable(shown, sizeof shown, name ? name : "?"), layer,
                        kind_keys[kind],
                        paro_tensor_file_container(sf->tf) == PARO_CONTAINER_NPY_FOLDER
                            ? "folder"
                            : "file");
        free(name);
        return rc;
    }
    rc = paro_sample_check_tensor(sf->m, t, ei);
    if (!rc)
        *out = t;
    return rc;
}

paro_err paro_sample_check(paro_sample_file *sf, paro_kind kind, uint32_t layer,
                           paro_errinfo *ei)
{
    const paro_tensor *t;
    return checked_tensor(sf, kind, layer, &t, ei);
}

static paro_err read_heads(paro_sample_file *sf, paro_kind kind, uint32_t layer, uint32_t h0,
                           uint32_t h1, out_kind out, void *dst, paro_errinfo *ei)
{
    const paro_manifest *m = sf->m;
    if (h0 >= h1 || h1 > m->heads)
        return paro_error(ei, PARO_ERR_USAGE, sf->path, PARO_NO_OFFSET,
                          "heads %u..%u are not a range of the capture's %u heads", h0, h1,
                          m->heads);
    const paro_tensor *t;
    const unsigned char *data;
    paro_err rc = checked_tensor(sf, kind, layer, &t, ei);
    if (rc)
        return rc;
    if (out == OUT_BF16 && t->dtype != PARO_DTYPE_BF16)
        return paro_error(ei, PARO_ERR_USAGE, sf->path, PARO_NO_OFFSET,
                          "tensor of layer %u %s is %s, not bf16", layer, kind_keys[kind],
                          paro_dtype_name(t->dtype));
    rc = paro_tensor_file_acquire(sf->tf, t, &data, ei);
    if (rc)
        return rc;
    tensor_src src = {data, t->dtype, paro_dtype_size(t->dtype), t->data_offset, t->name,
                      t->where};
    rc = m->layout == PARO_LAYOUT_HND ? convert_hnd(&src, m, h0, h1, out, dst, ei)
                                      : convert_nhd(&src, m, h0, h1, out, dst, ei);
    paro_tensor_file_release(sf->tf, t);
    return rc;
}

paro_err paro_sample_read_heads(paro_sample_file *sf, paro_kind kind, uint32_t layer,
                                uint32_t h0, uint32_t h1, float *dst, paro_errinfo *ei)
{
    return read_heads(sf, kind, layer, h0, h1, OUT_F32, dst, ei);
}

paro_err paro_sample_read_heads_bf16(paro_sample_file *sf, paro_kind kind, uint32_t layer,
                                     uint32_t h0, uint32_t h1, uint16_t *dst, paro_errinfo *ei)
{
    return read_heads(sf, kind, layer, h0, h1, OUT_BF16, dst, ei);
}

paro_err paro_sample_dtype(paro_sample_file *sf, paro_kind kind, uint32_t layer,
                           paro_dtype *dtype, paro_errinfo *ei)
{
    const paro_tensor *t;
    paro_err rc = checked_tensor(sf, kind, layer, &t, ei);
    if (!rc)
        *dtype = t->dtype;
    return rc;
}

paro_err paro_sample_read(paro_sample_file *sf, paro_kind kind, uint32_t layer, float *dst,
                          paro_errinfo *ei)
{
    return paro_sample_read_heads(sf, kind, layer, 0, sf->m->heads, dst, ei);
}

paro_tensor_file *paro_sample_tensors(paro_sample_file *sf) { return sf->tf; }

paro_err paro_manifest_check_samples(const paro_manifest *m, const uint32_t *samples, size_t n,
                                     paro_errinfo *ei)
{
    if (!samples)
        return PARO_OK;
    if (n == 0)
        return paro_error(ei, PARO_ERR_USAGE, NULL, PARO_NO_OFFSET, "no samples selected");
    for (size_t i = 0; i < n; i++) {
        if (samples[i] >= m->n_samples)
            return paro_error(ei, PARO_ERR_USAGE, NULL, PARO_NO_OFFSET,
                              "sample %u is out of range: the capture has samples 0..%zu",
                              samples[i], m->n_samples - 1);
        if (i > 0 && samples[i] <= samples[i - 1])
            return paro_error(ei, PARO_ERR_USAGE, NULL, PARO_NO_OFFSET,
                              "samples must be listed once each, in increasing order");
    }
    return PARO_OK;
}
