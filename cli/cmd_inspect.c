/* paro inspect — check a capture (or one sample file) without calibrating:
 * what is in each file, value statistics, and every way the files and the
 * manifest disagree.  Made for CI scripts: exit 0 when the capture can be
 * calibrated and evaluated as it is, 3 when it cannot. */
#include <stdio.h>    /* printf */
#include <stdlib.h>   /* calloc, realloc, free */
#include <string.h>   /* strcmp, strlen */
#include <sys/stat.h> /* stat */

#include <cjson/cJSON.h> /* cJSON */

#include "cli.h"
#include "json_util.h"   /* paro_json_print_line */
#include "manifest.h"    /* paro_manifest_load, paro_sample_* */
#include "tensor_file.h" /* paro_tensor_file_*, paro_tensor_stats */

static const cli_help help = {
    .usage = "paro inspect MANIFEST|FILE [options]",
    .summary =
        "Check a capture without calibrating it.  Lists each sample's file (safetensors,\n"
        ".npz or a folder of .npy files), its tensors with dtype, shape, size and value\n"
        "statistics (min, max, mean |x|, NaN and infinity counts), and every problem a\n"
        "run would meet: files that are missing or damaged, layers missing Q or K,\n"
        "shapes that do not fit the manifest's grid, heads or head_dim, dtypes paro does\n"
        "not read, non-finite values in Q, K or V.  All problems are listed, not just\n"
        "the first.  Exit 0 when there are none, 3 when there are.\n"
        "MANIFEST is a manifest.json or a folder holding one; FILE is one sample's file\n"
        "(or .npy folder), listed without manifest checks.",
    .options = "      --json              one JSON object (schema paro-inspect/v1) on stdout\n"
               "      --no-stats          headers only: do not read the tensors' values",
    .examples = "  paro inspect capture/manifest.json\n"
                "  paro inspect capture/ --json | jq '.problems'\n"
                "  paro inspect capture/p0_t999.npz",
};

enum { OPT_JSON = 256, OPT_NO_STATS };

typedef struct report {
    int json, stats;
    cJSON *root, *files, *problems;
    size_t n_problems;
} report;

static void problem(report *r, const char *file, const char *msg)
{
    r->n_problems++;
    if (r->json) {
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "file", file ? file : "");
        cJSON_AddStringToObject(p, "message", msg);
        cJSON_AddItemToArray(r->problems, p);
    } else {
        printf("  problem: %s%s%s\n", file && *file ? file : "", file && *file ? ": " : "",
               msg);
    }
}

static void problem_ei(report *r, const paro_errinfo *ei)
{
    char where[64] = "";
    if (ei->offset != PARO_NO_OFFSET)
        snprintf(where, sizeof where, " (at byte %llu)", (unsigned long long)ei->offset);
    char msg[700];
    snprintf(msg, sizeof msg, "%s%s", ei->msg, where);
    problem(r, ei->file, msg);
}

/* Is name one of the manifest's Q/K/V tensors (whose values runs read)? */
static int read_by_runs(const paro_manifest *m, const char *name)
{
    if (!m)
        return 1;
    for (uint32_t l = 0; l < m->layers; l++)
        for (int k = 0; k < 3; k++) {
            char *want = paro_manifest_tensor_name(m, (paro_kind)k, l);
            int hit = want && !strcmp(want, name);
            free(want);
            if (hit)
                return 1;
        }
    return 0;
}

/* Lists one file's tensors; problems for damaged headers and non-finite
 * values of tensors runs read. */
static void list_file(report *r, paro_tensor_file *tf, const char *path, const paro_manifest *m,
                      long sample)
{
    size_t n = paro_tensor_file_count(tf), width = 4;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(paro_tensor_file_name(tf, i));
        width = len > width ? len : width;
    }
    cJSON *file = NULL, *tensors = NULL;
    if (r->json) {
        file = cJSON_CreateObject();
        cJSON_AddStringToObject(file, "path", path);
        if (sample >= 0)
            cJSON_AddNumberToObject(file, "sample", (double)sample);
        cJSON_AddStringToObject(file, "container",
                                paro_container_name(paro_tensor_file_container(tf)));
        tensors = cJSON_AddArrayToObject(file, "tensors");
        cJSON_AddItemToArray(r->files, file);
    } else {
        if (sample >= 0)
            printf("sample %ld: ", sample);
        printf("%s (%s, %zu tensors)\n", path,
               paro_container_name(paro_tensor_file_container(tf)), n);
        if (n)
            printf("  %-*s  %-5s %-18s %12s%s\n", (int)width, "name", "dtype", "shape", "bytes",
                   r->stats ? "  min        max        mean|x|    nan  inf" : "");
    }
    for (size_t i = 0; i < n; i++) {
        const char *name = paro_tensor_file_name(tf, i);
        const paro_tensor *t;
        paro_errinfo ei;
        paro_errinfo_clear(&ei);
        if (paro_tensor_file_find(tf, name, &t, &ei)) {
            problem_ei(r, &ei);
            continue;
        }
        paro_tensor_stats st;
        int have_stats = 0;
        if (r->stats && t->dtype != PARO_DTYPE_INVALID) {
            if (paro_tensor_file_stats(tf, t, &st, &ei)) {
                problem_ei(r, &ei);
                continue;
            }
            have_stats = 1;
        }
        char shape[200];
        paro_shape_text(shape, sizeof shape, t->shape, t->ndim);
        if (r->json) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", name);
            cJSON_AddStringToObject(o, "dtype", t->dtype_name);
            cJSON *dims = cJSON_AddArrayToObject(o, "shape");
            for (uint32_t d = 0; d < t->ndim; d++)
                cJSON_AddItemToArray(dims, cJSON_CreateNumber((double)t->shape[d]));
            cJSON_AddNumberToObject(o, "bytes", (double)t->nbytes);
            if (have_stats) {
                cJSON_AddNumberToObject(o, "min", st.min);
                cJSON_AddNumberToObject(o, "max", st.max);
                cJSON_AddNumberToObject(o, "mean_abs", st.mean_abs);
                cJSON_AddNumberToObject(o, "nan", (double)st.nan);
                cJSON_AddNumberToObject(o, "inf", (double)st.inf);
            }
            cJSON_AddItemToArray(tensors, o);
        } else if (have_stats) {
            printf("  %-*s  %-5s %-18s %12llu  %-10.4g %-10.4g %-10.4g %-4llu %llu\n",
                   (int)width, name, t->dtype_name, shape, (unsigned long long)t->nbytes,
                   st.min, st.max, st.mean_abs, (unsigned long long)st.nan,
                   (unsigned long long)st.inf);
        } else {
            printf("  %-*s  %-5s %-18s %12llu\n", (int)width, name, t->dtype_name, shape,
                   (unsigned long long)t->nbytes);
        }
        if (have_stats && (st.nan || st.inf) && read_by_runs(m, name)) {
            char msg[400];
            snprintf(msg, sizeof msg,
                     "tensor '%s' holds %llu NaN and %llu infinite values; calibrate and eval "
                     "refuse non-finite values",
                     name, (unsigned long long)st.nan, (unsigned long long)st.inf);
            problem(r, t->where, msg);
        }
    }
}

static void describe_manifest(report *r, const paro_manifest *m)
{
    const char *layout = m->layout == PARO_LAYOUT_NHD ? "NHD" : "HND";
    if (r->json) {
        cJSON *o = cJSON_AddObjectToObject(r->root, "manifest");
        cJSON_AddStringToObject(o, "path", m->path);
        cJSON_AddStringToObject(o, "model", m->model);
        cJSON *grid = cJSON_AddArrayToObject(o, "grid");
        for (int a = 0; a < 3; a++)
            cJSON_AddItemToArray(grid, cJSON_CreateNumber(m->grid[a]));
        cJSON_AddNumberToObject(o, "text_tokens", m->text_tokens);
        cJSON_AddStringToObject(o, "text_position", m->text_last ? "last" : "first");
        cJSON_AddNumberToObject(o, "tokens", m->n_tokens);
        cJSON_AddNumberToObject(o, "layers", m->layers);
        cJSON_AddNumberToObject(o, "heads", m->heads);
        cJSON_AddNumberToObject(o, "head_dim", m->head_dim);
        cJSON_AddStringToObject(o, "layout", layout);
        if (m->dtype != PARO_DTYPE_INVALID)
            cJSON_AddStringToObject(o, "dtype", paro_dtype_name(m->dtype));
        cJSON_AddNumberToObject(o, "scale", m->scale);
        cJSON_AddNumberToObject(o, "samples", (double)m->n_samples);
        return;
    }
    printf("capture %s: model %s\n", m->path, m->model);
    printf("  grid %ux%ux%u, %u text tokens %s, N = %u; %u layers x %u heads x %u dims; "
           "layout %s%s%s; scale %.6g; %zu samples\n",
           m->grid[0], m->grid[1], m->grid[2], m->text_tokens, m->text_last ? "last" : "first",
           m->n_tokens, m->layers, m->heads, m->head_dim, layout,
           m->dtype != PARO_DTYPE_INVALID ? ", dtype " : "",
           m->dtype != PARO_DTYPE_INVALID ? paro_dtype_name(m->dtype) : "", m->scale,
           m->n_samples);
}

static void inspect_capture(report *r, const paro_manifest *m)
{
    describe_manifest(r, m);
    for (size_t s = 0; s < m->n_samples; s++) {
        paro_sample_file *sf = NULL;
        paro_errinfo ei;
        paro_errinfo_clear(&ei);
        if (paro_sample_open(m, s, &sf, &ei)) {
            if (!r->json)
                printf("sample %zu: %s\n", s, m->samples[s].file);
            problem_ei(r, &ei);
            continue;
        }
        char *path = paro_manifest_sample_path(m, s);
        list_file(r, paro_sample_tensors(sf), path ? path : "?", m, (long)s);
        free(path);
        /* Q and K of every layer, with the shape and dtype the manifest
         * implies; V is optional (eval needs it), so only its form is checked. */
        uint32_t with_v = 0;
        for (uint32_t l = 0; l < m->layers; l++) {
            for (int k = 0; k < 3; k++) {
                if (k == PARO_KIND_V && !paro_sample_has(sf, PARO_KIND_V, l))
                    continue;
                with_v += k == PARO_KIND_V;
                paro_errinfo_clear(&ei);
                if (paro_sample_check(sf, (paro_kind)k, l, &ei))
                    problem_ei(r, &ei);
            }
        }
        if (!r->json && with_v != m->layers)
            printf("  note: V is in %u of %u layers; paro eval needs it in every layer it "
                   "reads\n",
                   with_v, m->layers);
        paro_sample_close(sf);
    }
}

/* MANIFEST (a .json, or a folder with manifest.json) or a sample file. */
static char *manifest_of(const char *arg)
{
    struct stat st;
    size_t n = strlen(arg);
    if (stat(arg, &st) == 0 && S_ISDIR(st.st_mode)) {
        char *p = malloc(n + sizeof "/manifest.json");
        if (!p)
            return NULL;
        snprintf(p, n + sizeof "/manifest.json", "%s/manifest.json", arg);
        if (stat(p, &st) == 0)
            return p;
        free(p);
        return NULL;
    }
    return n >= 5 && !strcmp(arg + n - 5, ".json") ? strdup(arg) : NULL;
}

int cmd_inspect(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"json", no_argument, NULL, OPT_JSON},
        {"no-stats", no_argument, NULL, OPT_NO_STATS},
        {NULL, 0, NULL, 0},
    };
    report r = {0, 1, NULL, NULL, NULL, 0};
    int c;
    while ((c = cli_getopt(argc, argv, "", longopts, "inspect", &help)) != -1) {
        switch (c) {
        case CLI_OPT_HANDLED: break;
        case CLI_OPT_HELP: cli_help_print(stdout, "inspect", &help); return EXIT_OK;
        case OPT_JSON: r.json = 1; break;
        case OPT_NO_STATS: r.stats = 0; break;
        default: return EXIT_USAGE;
        }
    }
    if (optind >= argc)
        return cli_usage_error("inspect ", &help, "a manifest or a sample file is required");
    if (optind + 1 < argc)
        return cli_usage_error("inspect ", &help, "one capture at a time; '%s' is extra",
                               argv[optind + 1]);
    const char *arg = argv[optind];
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    if (r.json) {
        r.root = cJSON_CreateObject();
        cJSON_AddStringToObject(r.root, "schema", "paro-inspect/v1");
        r.files = cJSON_AddArrayToObject(r.root, "files");
        r.problems = cJSON_AddArrayToObject(r.root, "problems");
    }
    char *manifest_path = manifest_of(arg);
    int rc = EXIT_OK;
    if (manifest_path) {
        paro_manifest *m = NULL;
        if (paro_manifest_load(manifest_path, &m, &ei))
            rc = cli_fail(&ei);
        else
            inspect_capture(&r, m);
        paro_manifest_free(m);
        free(manifest_path);
    } else {
        /* One sample file: bf16 raw arrays are listed as they are. */
        paro_tensor_file *tf = NULL;
        if (paro_tensor_file_open(arg, PARO_DTYPE_INVALID, &tf, &ei))
            rc = cli_fail(&ei);
        else
            list_file(&r, tf, arg, NULL, -1);
        paro_tensor_file_close(tf);
    }
    if (rc == EXIT_OK && r.json) {
        cJSON_AddBoolToObject(r.root, "ok", r.n_problems == 0);
        char *text = paro_json_print_line(r.root);
        if (!text)
            rc = cli_error("out of memory");
        else
            fputs(text, stdout);
        free(text);
    } else if (rc == EXIT_OK) {
        printf("%zu problem%s\n", r.n_problems, r.n_problems == 1 ? "" : "s");
    }
    cJSON_Delete(r.root);
    if (rc == EXIT_OK && r.n_problems) {
        cli_error("the capture has %zu problem%s (listed above)", r.n_problems,
                  r.n_problems == 1 ? "" : "s");
        rc = EXIT_INPUT;
    }
    return rc;
}
