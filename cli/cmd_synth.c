/* paro synth — write a capture with planted axis-local heads. */
#include <cjson/cJSON.h> /* cJSON_* (manifest and --json output) */
#include <errno.h>       /* errno, EEXIST */
#include <stdio.h>       /* printf, snprintf */
#include <stdlib.h>      /* malloc, free */
#include <string.h>      /* strcmp, strlen, strerror */
#include <sys/stat.h>    /* mkdir, stat */
#include <time.h>        /* time */
#include <unistd.h>      /* getpid */

#include "atomic_file.h" /* paro_atomic_write_file */
#include "cli.h"
#include "dtype.h"       /* paro_dtype, paro_convert_from_f32 */
#include "json_util.h"   /* paro_json_print_line */
#include "manifest.h"    /* PARO_LAYOUT_*, PARO_MAX_* */
#include "order.h"       /* PARO_AXIS_* */
#include "safetensors.h" /* paro_st_write */
#include "synth.h"       /* paro_synth_* */

static const cli_help help = {
    .usage = "paro synth -o DIR [options]",
    .summary = "Write a capture (manifest.json and one safetensors file per sample) whose\n"
               "heads attend along a planted axis of the token grid, with noise.  Each head's\n"
               "planted axis is drawn among the axes of size > 1.  The same options and seed\n"
               "give the same bytes.",
    .options =
        "  -o, --output DIR        folder to write (created, with its parents, if missing)\n"
        "      --grid FxHxW        visual token grid [default: 5x12x16]\n"
        "      --text T            text tokens [default: 24]\n"
        "      --text-position P   first | last [default: first]\n"
        "      --layers L          layers [default: 2]\n"
        "      --heads H           heads per layer [default: 8]\n"
        "      --head-dim D        head dimension [default: 64]\n"
        "      --samples S         samples (prompt x timestep) [default: 2]\n"
        "      --dtype T           f32 | f16 | bf16 [default: bf16]\n"
        "      --layout L          HND | NHD [default: HND]\n"
        "      --no-v              leave V out (eval needs it; calibrate does not)\n"
        "      --model NAME        model name in the manifest [default: paro-synth]\n"
        "      --seed S            random seed [default: a new one, printed]\n"
        "  -f, --force             overwrite an existing capture in DIR\n"
        "      --json              print the planted axis of every head as JSON\n"
        "  -j, --threads N         worker threads [default: all cores]; the bytes are\n"
        "                          the same for any N",
    .examples = "  paro synth -o capture --seed 1\n"
                "  paro synth -o big --grid 13x30x45 --text 226 --heads 48 --samples 1",
};

enum {
    OPT_GRID = 256,
    OPT_TEXT,
    OPT_TEXT_POSITION,
    OPT_LAYERS,
    OPT_HEADS,
    OPT_HEAD_DIM,
    OPT_SAMPLES,
    OPT_DTYPE,
    OPT_LAYOUT,
    OPT_NO_V,
    OPT_MODEL,
    OPT_SEED,
    OPT_JSON
};

static const char axis_names[3] = {'F', 'H', 'W'};

/* Transposes [heads][N][D] into [N][heads][D]. */
static void to_nhd(const float *src, float *dst, uint32_t heads, uint32_t n, uint32_t d)
{
    for (uint32_t h = 0; h < heads; h++)
        for (uint32_t t = 0; t < n; t++)
            memcpy(dst + ((size_t)t * heads + h) * d, src + ((size_t)h * n + t) * d,
                   d * sizeof *dst);
}

/* Produces the tensors of one sample file in order: layer by layer, q, k
 * (and v); a layer is generated when its first tensor is asked for. */
typedef struct fill_state {
    const paro_synth_config *c;
    uint32_t sample, n_tokens;
    size_t per_tensor;
    paro_dtype dtype;
    int kinds, nhd, threads;
    float *f32[3], *transposed;
} fill_state;

static paro_err fill_tensor(void *user, size_t index, void *dst, paro_errinfo *ei)
{
    fill_state *fs = user;
    const uint32_t layer = (uint32_t)(index / (size_t)fs->kinds);
    const int kind = (int)(index % (size_t)fs->kinds);
    (void)ei;
    if (kind == 0)
        paro_synth_layer(fs->c, fs->sample, layer, fs->f32[0], fs->f32[1], fs->f32[2],
                         fs->threads);
    const float *src = fs->f32[kind];
    if (fs->nhd) {
        to_nhd(src, fs->transposed, fs->c->heads, fs->n_tokens, fs->c->head_dim);
        src = fs->transposed;
    }
    paro_convert_from_f32(fs->dtype, src, dst, fs->per_tensor);
    return PARO_OK;
}

static char *manifest_json(const paro_synth_config *c, const char *model, paro_layout layout)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "format", "paro-capture");
    cJSON_AddNumberToObject(root, "version", 1);
    cJSON_AddStringToObject(root, "model", model);
    int grid[3] = {(int)c->grid[0], (int)c->grid[1], (int)c->grid[2]};
    cJSON_AddItemToObject(root, "grid", cJSON_CreateIntArray(grid, 3));
    cJSON_AddNumberToObject(root, "text_tokens", c->text_tokens);
    cJSON_AddStringToObject(root, "text_position", c->text_last ? "last" : "first");
    cJSON_AddNumberToObject(root, "layers", c->layers);
    cJSON_AddNumberToObject(root, "heads", c->heads);
    cJSON_AddNumberToObject(root, "head_dim", c->head_dim);
    cJSON_AddStringToObject(root, "layout", layout == PARO_LAYOUT_NHD ? "NHD" : "HND");
    cJSON *samples = cJSON_AddArrayToObject(root, "samples");
    for (uint32_t s = 0; s < c->samples; s++) {
        cJSON *item = cJSON_CreateObject();
        char file[32];
        snprintf(file, sizeof file, "s%03u.safetensors", s);
        cJSON_AddStringToObject(item, "file", file);
        cJSON_AddNumberToObject(item, "prompt", s);
        cJSON_AddNumberToObject(item, "timestep", paro_synth_timestep(c, s));
        cJSON_AddItemToArray(samples, item);
    }
    char *text = paro_json_print_line(root);
    cJSON_Delete(root);
    return text;
}

static int print_planted(const paro_synth_config *c)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "schema", "paro-synth/v1");
    cJSON_AddNumberToObject(root, "seed", (double)c->seed);
    cJSON *layers = cJSON_AddArrayToObject(root, "planted");
    for (uint32_t l = 0; l < c->layers; l++) {
        cJSON *row = cJSON_CreateArray();
        for (uint32_t h = 0; h < c->heads; h++) {
            char axis[2] = {axis_names[paro_synth_planted_axis(c, l, h)], 0};
            cJSON_AddItemToArray(row, cJSON_CreateString(axis));
        }
        cJSON_AddItemToArray(layers, row);
    }
    char *text = paro_json_print_line(root);
    cJSON_Delete(root);
    if (!text)
        return cli_error("out of memory");
    fputs(text, stdout);
    free(text);
    return EXIT_OK;
}

/* mkdir -p: the folder and any missing parents. */
static int make_dir(const char *dir)
{
    char *path = strdup(dir);
    if (!path)
        return cli_error("out of memory");
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(path, 0777) != 0 && errno != EEXIST) {
            int e = errno;
            cli_error("cannot create folder '%s': %s", path, strerror(e));
            free(path);
            return EXIT_RUNTIME;
        }
        *p = '/';
    }
    free(path);
    if (mkdir(dir, 0777) == 0 || errno == EEXIST) {
        struct stat st;
        if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
            return 0;
        cli_error("cannot use '%s' as the output folder: it exists and is not a folder", dir);
        return EXIT_RUNTIME;
    }
    cli_error("cannot create folder '%s': %s", dir, strerror(errno));
    return EXIT_RUNTIME;
}

int cmd_synth(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"output", required_argument, NULL, 'o'},
        {"grid", required_argument, NULL, OPT_GRID},
        {"text", required_argument, NULL, OPT_TEXT},
        {"text-position", required_argument, NULL, OPT_TEXT_POSITION},
        {"layers", required_argument, NULL, OPT_LAYERS},
        {"heads", required_argument, NULL, OPT_HEADS},
        {"head-dim", required_argument, NULL, OPT_HEAD_DIM},
        {"samples", required_argument, NULL, OPT_SAMPLES},
        {"dtype", required_argument, NULL, OPT_DTYPE},
        {"layout", required_argument, NULL, OPT_LAYOUT},
        {"no-v", no_argument, NULL, OPT_NO_V},
        {"model", required_argument, NULL, OPT_MODEL},
        {"seed", required_argument, NULL, OPT_SEED},
        {"force", no_argument, NULL, 'f'},
        {"json", no_argument, NULL, OPT_JSON},
        {"threads", required_argument, NULL, 'j'},
        {NULL, 0, NULL, 0},
    };
    paro_synth_config c = {.grid = {5, 12, 16},
                           .text_tokens = 24,
                           .layers = 2,
                           .heads = 8,
                           .head_dim = 64,
                           .samples = 2};
    const char *dir = NULL, *model = "paro-synth";
    paro_dtype dtype = PARO_DTYPE_BF16;
    paro_layout layout = PARO_LAYOUT_HND;
    int with_v = 1, force = 0, json = 0, seed_given = 0, threads = cli_cores();
    int opt;
    while ((opt = cli_getopt(argc, argv, "o:fj:", longopts, "synth", &help)) != -1) {
        int bad = 0;
        switch (opt) {
        case CLI_OPT_HANDLED: break;
        case CLI_OPT_HELP: cli_help_print(stdout, "synth", &help); return EXIT_OK;
        case 'o': dir = optarg; break;
        case 'f': force = 1; break;
        case OPT_GRID: bad = cli_parse_grid("--grid", optarg, c.grid); break;
        case OPT_TEXT:
            bad = cli_parse_u32("--text", optarg, 0, PARO_MAX_TOKENS, &c.text_tokens);
            break;
        case OPT_TEXT_POSITION:
            if (!strcmp(optarg, "first") || !strcmp(optarg, "last"))
                c.text_last = !strcmp(optarg, "last");
            else
                bad = cli_usage_error("synth ", &help,
                                      "--text-position must be 'first' or 'last', not '%s'",
                                      optarg);
            break;
        case OPT_LAYERS: bad = cli_parse_u32("--layers", optarg, 1, PARO_MAX_LAYERS, &c.layers); break;
        case OPT_HEADS: bad = cli_parse_u32("--heads", optarg, 1, PARO_MAX_HEADS, &c.heads); break;
        case OPT_HEAD_DIM:
            bad = cli_parse_u32("--head-dim", optarg, 1, PARO_MAX_HEAD_DIM, &c.head_dim);
            break;
        case OPT_SAMPLES:
            bad = cli_parse_u32("--samples", optarg, 1, PARO_MAX_SAMPLES, &c.samples);
            break;
        case OPT_DTYPE:
            dtype = paro_dtype_parse(optarg);
            if (dtype == PARO_DTYPE_INVALID)
                bad = cli_usage_error("synth ", &help,
                                      "--dtype must be f32, f16 or bf16, not '%s'", optarg);
            break;
        case OPT_LAYOUT:
            if (!strcmp(optarg, "HND") || !strcmp(optarg, "NHD"))
                layout = !strcmp(optarg, "NHD") ? PARO_LAYOUT_NHD : PARO_LAYOUT_HND;
            else
                bad = cli_usage_error("synth ", &help, "--layout must be HND or NHD, not '%s'",
                                      optarg);
            break;
        case OPT_NO_V: with_v = 0; break;
        case OPT_MODEL: model = optarg; break;
        case OPT_SEED:
            bad = cli_parse_u64("--seed", optarg, 1ull << 53, &c.seed);
            seed_given = 1;
            break;
        case OPT_JSON: json = 1; break;
        case 'j': bad = cli_parse_threads(optarg, &threads); break;
        default: return EXIT_USAGE;
        }
        if (bad)
            return EXIT_USAGE;
    }
    if (optind < argc)
        return cli_usage_error("synth ", &help, "unexpected argument '%s'", argv[optind]);
    if (!dir)
        return cli_usage_error("synth ", &help, "an output folder is required (-o DIR)");
    if (!seed_given) {
        c.seed = ((uint64_t)time(NULL) * 2654435761u ^ (uint64_t)getpid()) & ((1ull << 32) - 1);
        cli_log(2, "paro: synth seed %llu (pass --seed %llu to make the same capture again)\n",
                (unsigned long long)c.seed, (unsigned long long)c.seed);
    }
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    if (paro_synth_check(&c, &ei))
        return cli_fail(&ei);

    if (make_dir(dir))
        return EXIT_RUNTIME;
    char *manifest_path = malloc(strlen(dir) + 32);
    if (!manifest_path)
        return cli_error("out of memory");
    sprintf(manifest_path, "%s/manifest.json", dir);
    struct stat st;
    if (!force && stat(manifest_path, &st) == 0) {
        cli_error("'%s' already holds a capture; pass --force to overwrite it", dir);
        free(manifest_path);
        return EXIT_RUNTIME;
    }

    const uint32_t n = c.text_tokens + c.grid[0] * c.grid[1] * c.grid[2];
    const size_t per_tensor = (size_t)c.heads * n * c.head_dim;
    fill_state fs = {.c = &c, .n_tokens = n, .per_tensor = per_tensor, .dtype = dtype,
                     .kinds = with_v ? 3 : 2, .nhd = layout == PARO_LAYOUT_NHD,
                     .threads = threads};
    for (int kind = 0; kind < fs.kinds; kind++)
        fs.f32[kind] = malloc(per_tensor * sizeof(float));
    fs.transposed = fs.nhd ? malloc(per_tensor * sizeof(float)) : NULL;
    const size_t n_tensors = (size_t)c.layers * fs.kinds;
    paro_st_write_tensor *tensors = calloc(n_tensors, sizeof *tensors);
    char (*names)[64] = calloc(n_tensors, sizeof *names);
    char *path = malloc(strlen(dir) + 32);
    int rc = EXIT_OK;
    if (!fs.f32[0] || !fs.f32[1] || (with_v && !fs.f32[2]) || (fs.nhd && !fs.transposed) ||
        !tensors || !names || !path) {
        rc = cli_error("out of memory for one layer (%.1f MiB)",
                       (double)per_tensor * 4 * (fs.kinds + fs.nhd) / 1048576.0);
        goto done;
    }
    static const char kind_names[3] = {'q', 'k', 'v'};
    for (size_t t = 0; t < n_tensors; t++) {
        snprintf(names[t], sizeof names[t], "layers.%zu.%c", t / fs.kinds,
                 kind_names[t % fs.kinds]);
        tensors[t].name = names[t];
        tensors[t].dtype = dtype;
        tensors[t].ndim = 3;
        tensors[t].shape[0] = fs.nhd ? n : c.heads;
        tensors[t].shape[1] = fs.nhd ? c.heads : n;
        tensors[t].shape[2] = c.head_dim;
    }

    cli_progress prog;
    cli_progress_start(&prog, "synth", c.samples);
    for (uint32_t s = 0; s < c.samples && rc == EXIT_OK; s++) {
        fs.sample = s;
        sprintf(path, "%s/s%03u.safetensors", dir, s);
        paro_errinfo_clear(&ei);
        if (paro_st_write_stream(path, tensors, n_tensors, fill_tensor, &fs, &ei))
            rc = cli_fail(&ei);
        cli_progress_update(&prog, s + 1, "");
    }
    cli_progress_end(&prog);
    if (rc == EXIT_OK) {
        /* The manifest last: a capture is only complete once it names its files. */
        char *text = manifest_json(&c, model, layout);
        paro_errinfo_clear(&ei);
        if (!text)
            rc = cli_error("out of memory");
        else if (paro_atomic_write_file(manifest_path, text, strlen(text), &ei))
            rc = cli_fail(&ei);
        free(text);
    }
    if (rc == EXIT_OK) {
        cli_log(3, "paro: wrote %s: %u samples x %u layers x %u heads, %u tokens, %s\n",
                manifest_path, c.samples, c.layers, c.heads, n, paro_dtype_name(dtype));
        if (json)
            rc = print_planted(&c);
    }
done:
    for (int kind = 0; kind < 3; kind++)
        free(fs.f32[kind]);
    free(fs.transposed);
    free(path);
    free(tensors);
    free(names);
    free(manifest_path);
    return rc;
}
