/* paro calibrate — capture in, plan out. */
#include <signal.h>   /* sigaction, SIGINT, SIGTERM */
#include <stdio.h>    /* snprintf, fopen, fgets, fscanf, fclose */
#include <stdlib.h>   /* free, malloc */
#include <string.h>   /* strcmp, strncmp, memset, strchr, strcspn, strtok */
#include <sys/stat.h> /* stat, S_ISREG, S_ISDIR */
#include <unistd.h>   /* sysconf, unlink */

#include "calibrate.h" /* paro_calibrate, paro_calib_config */
#include "cli.h"
#include "journal.h"   /* paro_journal_discard_empty */
#include "kernels.h"   /* paro_cuda_device_count */
#include "manifest.h"  /* paro_manifest_load */
#include "metrics.h"   /* PARO_DEFAULT_ALPHA */
#include "order.h"     /* paro_order_name */
#include "plan.h"      /* paro_plan_write */

static const cli_help help = {
    .usage = "paro calibrate -m MANIFEST -o PLAN [options]",
    .summary =
        "Run a capture's Q and K through reference attention, score the six orders of\n"
        "the [F, H, W] token grid for every head, pick the best, and build block masks\n"
        "from the chosen order's tile masses.  The plan is written atomically: an\n"
        "interrupted run leaves any earlier PLAN as it was.  The same inputs and options\n"
        "give a byte-identical plan whatever the thread count.",
    .options =
        "  -m, --manifest FILE     the capture's manifest.json\n"
        "  -o, --output PLAN       plan file to write\n"
        "      --density D         keep the fraction D of tiles per head [default: 0.25]\n"
        "      --recall R          keep the fewest tiles holding R of the mass\n"
        "      --threshold T       keep tiles whose mean mass per element is >= T\n"
        "      --block B           block size: B, or BQxBK for query x key [default: 64]\n"
        "      --no-keep-text      let masks drop tiles that touch text tokens\n"
        "      --keep-last         keep every tile of the last block row and column, as\n"
        "                          the PAROAttention runtime computes them anyway (they\n"
        "                          count towards --density; eval then reports what\n"
        "                          that runtime computes)\n"
        "      --alpha A           weight of the sparse score against the quant score\n"
        "                          in the combined score [default: 0.5]\n"
        "      --score-recall R    recall at which the sparse score counts skippable\n"
        "                          tiles [default: 0.95]\n"
        "      --timestep-buckets K  masks per timestep bucket, K buckets [default: 1]\n"
        "      --dense-until P     buckets entirely before denoising progress P get\n"
        "                          full masks [default: 0]\n"
        "      --tile-mass         also store each tile's mass (1 byte a tile, 8x the\n"
        "                          masks) for the heat maps of `paro dump --png`\n"
        "      --layers LIST       layers to calibrate, e.g. 0,2,5-7 [default: all]\n"
        "      --samples LIST      calibration samples, e.g. 0-3, or random:K for K\n"
        "                          picked with --seed [default: all]\n"
        "      --seed S            seed for random:K [default: 0]\n"
        "      --device DEV        auto | cpu | cuda [default: auto]\n"
        "      --gpus LIST         spread the layers over these CUDA devices, e.g.\n"
        "                          0,1 or 0-3, or all (the same plan as one GPU)\n"
        "      --max-memory SIZE   refuse up front a run that would need more host\n"
        "                          memory, e.g. 16G [default: 80% of this machine's,\n"
        "                          or of its container's (cgroup) limit if lower]\n"
        "      --resume            take the layers an interrupted run saved in\n"
        "                          PLAN.journal instead of computing them again\n"
        "  -j, --threads N         worker threads [default: all cores]",
    .examples = "  paro calibrate -m capture/manifest.json -o model.paro\n"
                "  paro calibrate -m capture/manifest.json -o model.paro --recall 0.95 "
                "--block 128x64\n"
                "  paro calibrate -m capture/manifest.json -o model.paro --keep-last   "
                "# for PAROAttention",
};

enum {
    OPT_DENSITY = 256,
    OPT_RECALL,
    OPT_THRESHOLD,
    OPT_BLOCK,
    OPT_NO_KEEP_TEXT,
    OPT_KEEP_LAST,
    OPT_TILE_MASS,
    OPT_GPUS,
    OPT_ALPHA,
    OPT_SCORE_RECALL,
    OPT_BUCKETS,
    OPT_DENSE_UNTIL,
    OPT_LAYERS,
    OPT_SAMPLES,
    OPT_SEED,
    OPT_DEVICE,
    OPT_RESUME,
    OPT_MAX_MEMORY
};

static volatile sig_atomic_t stop_requested; /* the signal that asked, or 0 */

static void on_signal(int sig)
{
    stop_requested = sig;
}

typedef struct progress_state {
    cli_progress bar;
    uint32_t n_layers;
    size_t n_samples;
    const char *journal;
} progress_state;

static void on_progress(void *user, const paro_calib_progress *p)
{
    progress_state *ps = user;
    if (p->done == 0) {
        if (p->resumed)
            cli_log(2, "paro: resuming: %u of %u layers are in %s\n", p->resumed, ps->n_layers,
                    ps->journal);
        ps->bar.total = p->total;
        return;
    }
    char detail[96];
    uint64_t layer_no = ps->n_samples ? (p->done - 1) / ps->n_samples + 1 : 0;
    snprintf(detail, sizeof detail, "layer %llu/%u (model layer %u)", (unsigned long long)layer_no,
             ps->n_layers, p->layer);
    cli_progress_update(&ps->bar, p->done, detail);
    if (!ps->bar.enabled)
        cli_log(4, "paro: layer %u, sample %zu done (%llu/%llu)\n", p->layer, p->sample,
                (unsigned long long)p->done, (unsigned long long)p->total);
}

/* splitmix64, for random:K sample selection. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* K distinct indices out of n, sorted: a partial Fisher-Yates shuffle. */
static int pick_random(uint32_t n, uint32_t k, uint64_t seed, uint32_t **out)
{
    uint32_t *all = malloc((size_t)n * sizeof *all);
    if (!all)
        return cli_error("out of memory");
    for (uint32_t i = 0; i < n; i++)
        all[i] = i;
    uint64_t state = seed;
    for (uint32_t i = 0; i < k; i++) {
        uint32_t j = i + (uint32_t)(next_random(&state) % (n - i));
        uint32_t t = all[i];
        all[i] = all[j];
        all[j] = t;
    }
    /* insertion sort of the k picked */
    for (uint32_t i = 1; i < k; i++)
        for (uint32_t j = i; j > 0 && all[j - 1] > all[j]; j--) {
            uint32_t t = all[j];
            all[j] = all[j - 1];
            all[j - 1] = t;
        }
    *out = all;
    return 0;
}

static void summarize(const paro_plan *plan, const char *path, double seconds)
{
    unsigned hist[PARO_N_ORDERS] = {0};
    double density = 0.0, recall = 0.0;
    size_t n_heads = (size_t)plan->n_layers * plan->heads;
    size_t n_bucketed = n_heads * plan->n_buckets;
    for (size_t i = 0; i < n_heads; i++)
        hist[plan->head_order[i]]++;
    for (size_t i = 0; i < n_bucketed; i++) {
        density += plan->density[i];
        recall += plan->recall[i];
    }
    char orders[128] = "";
    size_t used = 0;
    for (int o = 0; o < PARO_N_ORDERS; o++)
        if (hist[o])
            used += (size_t)snprintf(orders + used, sizeof orders - used, "%s%s %u",
                                     used ? ", " : "", paro_order_name(o), hist[o]);
    struct stat st;
    double kib = stat(path, &st) == 0 ? (double)st.st_size / 1024.0 : 0.0;
    cli_log(2,
            "paro: wrote %s (%.1f KiB): %u layers x %u heads in %.1f s; orders: %s; "
            "mean density %.3f, recall %.3f\n",
            path, kib, plan->n_layers, plan->heads, seconds, orders, density / n_bucketed,
            recall / n_bucketed);
}

/* The memory limit of this process's cgroup (a container's --memory), or 0
 * when there is none: cgroup v2's memory.max, else v1's
 * memory.limit_in_bytes, of the cgroup named in /proc/self/cgroup, or at the
 * root of the mount (where a container sees its own). */
static uint64_t cgroup_memory_limit(void)
{
    char line[512], path[700], v2[512] = "", v1[512] = "";
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (f) {
        while (fgets(line, sizeof line, f)) {
            line[strcspn(line, "\n")] = 0;
            char *ctl = strchr(line, ':'), *where = ctl ? strchr(ctl + 1, ':') : NULL;
            if (!where)
                continue;
            *where++ = 0;
            ctl++;
            if (!strcmp(line, "0") && !*ctl)
                snprintf(v2, sizeof v2, "%s", where);
            for (char *c = strtok(ctl, ","); c; c = strtok(NULL, ","))
                if (!strcmp(c, "memory"))
                    snprintf(v1, sizeof v1, "%s", where);
        }
        fclose(f);
    }
    const char *tries[4][2] = {{"/sys/fs/cgroup", v2},
                               {"/sys/fs/cgroup", ""},
                               {"/sys/fs/cgroup/memory", v1},
                               {"/sys/fs/cgroup/memory", ""}};
    const char *files[2] = {"memory.max", "memory.limit_in_bytes"};
    uint64_t limit = 0;
    for (int i = 0; i < 4; i++) {
        if (i % 2 == 0 && !*tries[i][1])
            continue;
        snprintf(path, sizeof path, "%s%s/%s", tries[i][0],
                 !strcmp(tries[i][1], "/") ? "" : tries[i][1], files[i / 2]);
        unsigned long long v;
        if (!(f = fopen(path, "r")))
            continue;
        /* "max", or v1's 2^63 rounded to pages, mean no limit */
        if (fscanf(f, "%llu", &v) == 1 && v > 0 && v < (1ull << 62) && (!limit || v < limit))
            limit = v;
        fclose(f);
    }
    return limit;
}

/* --gpus' devices in the order given, repeats kept (two host threads may
 * share a GPU: tests/cuda/cli_parity.sh runs "--gpus 0,0"). */
typedef struct gpu_list {
    int *dev, n;
} gpu_list;

static int gpu_item(char *item, void *user)
{
    gpu_list *l = user;
    uint32_t lo, hi;
    if (cli_parse_range("--gpus", item, UINT32_MAX, &lo, &hi))
        return EXIT_USAGE;
    if (hi - lo >= (uint32_t)(PARO_CALIB_MAX_GPUS - l->n))
        return cli_usage_error("calibrate ", &help, "--gpus: at most %d GPUs", PARO_CALIB_MAX_GPUS);
    for (uint64_t d = lo; d <= hi; d++)
        l->dev[l->n++] = (int)d;
    return 0;
}

/* --gpus: "all", or device numbers and ranges ("0,1", "0-3") into out.  The
 * count, -2 for "all", -1 after a usage error. */
static int parse_gpus(const char *arg, int out[PARO_CALIB_MAX_GPUS])
{
    if (!strcmp(arg, "all"))
        return -2;
    gpu_list l = {out, 0};
    return cli_each_item("--gpus", arg, gpu_item, &l) ? -1 : l.n;
}

int cmd_calibrate(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"manifest", required_argument, NULL, 'm'},
        {"output", required_argument, NULL, 'o'},
        {"density", required_argument, NULL, OPT_DENSITY},
        {"recall", required_argument, NULL, OPT_RECALL},
        {"threshold", required_argument, NULL, OPT_THRESHOLD},
        {"block", required_argument, NULL, OPT_BLOCK},
        {"no-keep-text", no_argument, NULL, OPT_NO_KEEP_TEXT},
        {"keep-last", no_argument, NULL, OPT_KEEP_LAST},
        {"alpha", required_argument, NULL, OPT_ALPHA},
        {"score-recall", required_argument, NULL, OPT_SCORE_RECALL},
        {"timestep-buckets", required_argument, NULL, OPT_BUCKETS},
        {"dense-until", required_argument, NULL, OPT_DENSE_UNTIL},
        {"tile-mass", no_argument, NULL, OPT_TILE_MASS},
        {"gpus", required_argument, NULL, OPT_GPUS},
        {"layers", required_argument, NULL, OPT_LAYERS},
        {"samples", required_argument, NULL, OPT_SAMPLES},
        {"seed", required_argument, NULL, OPT_SEED},
        {"device", required_argument, NULL, OPT_DEVICE},
        {"resume", no_argument, NULL, OPT_RESUME},
        {"max-memory", required_argument, NULL, OPT_MAX_MEMORY},
        {"threads", required_argument, NULL, 'j'},
        {NULL, 0, NULL, 0},
    };
    paro_calib_config cfg;
    paro_calib_config_default(&cfg);
    cfg.threads = cli_cores();
    /* 80% of the memory this process may use: the machine's, or its
     * container's when that is less */
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    uint64_t host = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
    uint64_t cgroup = cgroup_memory_limit();
    if (cgroup && (!host || cgroup < host))
        host = cgroup;
    cfg.max_memory = (uint64_t)((double)host * 0.8);
    const char *manifest_path = NULL, *out_path = NULL, *layers_arg = NULL,
               *samples_arg = NULL, *gpus_arg = NULL;
    int targets = 0;
    int opt;
    while ((opt = cli_getopt(argc, argv, "m:o:j:", longopts, "calibrate", &help)) != -1) {
        int bad = 0;
        switch (opt) {
        case CLI_OPT_HANDLED: break;
        case CLI_OPT_HELP: cli_help_print(stdout, "calibrate", &help); return EXIT_OK;
        case 'm': manifest_path = optarg; break;
        case 'o': out_path = optarg; break;
        case OPT_DENSITY:
            cfg.target.mode = PARO_TARGET_DENSITY;
            bad = cli_parse_double("--density", optarg, 0.0, 1.0, &cfg.target.value);
            targets++;
            break;
        case OPT_RECALL:
            cfg.target.mode = PARO_TARGET_RECALL;
            bad = cli_parse_double("--recall", optarg, 0.0, 1.0, &cfg.target.value);
            targets++;
            break;
        case OPT_THRESHOLD:
            cfg.target.mode = PARO_TARGET_THRESHOLD;
            bad = cli_parse_double("--threshold", optarg, 0.0, 1.0, &cfg.target.value);
            targets++;
            break;
        case OPT_BLOCK: bad = cli_parse_block("--block", optarg, &cfg.block_q, &cfg.block_k); break;
        case OPT_NO_KEEP_TEXT: cfg.target.keep_text = 0; break;
        case OPT_KEEP_LAST: cfg.target.keep_last = 1; break;
        case OPT_ALPHA: bad = cli_parse_double("--alpha", optarg, 0.0, 1.0, &cfg.alpha); break;
        case OPT_SCORE_RECALL:
            bad = cli_parse_double("--score-recall", optarg, 1e-9, 1.0, &cfg.score_recall);
            break;
        case OPT_BUCKETS:
            bad = cli_parse_u32("--timestep-buckets", optarg, 1, PARO_PLAN_MAX_BUCKETS,
                                &cfg.n_buckets);
            break;
        case OPT_DENSE_UNTIL:
            bad = cli_parse_double("--dense-until", optarg, 0.0, 1.0, &cfg.dense_until);
            break;
        case OPT_TILE_MASS: cfg.tile_mass = 1; break;
        case OPT_GPUS: gpus_arg = optarg; break;
        case OPT_LAYERS: layers_arg = optarg; break;
        case OPT_SAMPLES: samples_arg = optarg; break;
        case OPT_SEED: bad = cli_parse_u64("--seed", optarg, 1ull << 53, &cfg.seed); break;
        case OPT_DEVICE:
            if (!strcmp(optarg, "auto"))
                cfg.device = PARO_DEVICE_AUTO;
            else if (!strcmp(optarg, "cpu"))
                cfg.device = PARO_DEVICE_CPU;
            else if (!strcmp(optarg, "cuda"))
                cfg.device = PARO_DEVICE_CUDA;
            else
                bad = cli_usage_error("calibrate ", &help,
                                      "--device must be auto, cpu or cuda, not '%s'", optarg);
            break;
        case OPT_RESUME: cfg.resume = 1; break;
        case OPT_MAX_MEMORY: bad = cli_parse_size("--max-memory", optarg, &cfg.max_memory); break;
        case 'j': bad = cli_parse_threads(optarg, &cfg.threads); break;
        default: return EXIT_USAGE;
        }
        if (bad)
            return EXIT_USAGE;
    }
    if (optind < argc)
        return cli_usage_error("calibrate ", &help, "unexpected argument '%s'", argv[optind]);
    if (!manifest_path)
        return cli_usage_error("calibrate ", &help, "a manifest is required (-m MANIFEST)");
    if (!out_path)
        return cli_usage_error("calibrate ", &help, "an output plan is required (-o PLAN)");
    if (targets > 1)
        return cli_usage_error("calibrate ", &help,
                               "--density, --recall and --threshold exclude each other");
    /* A folder in the plan's place would fail the rename at the end, and a
     * device (-o /dev/null) would be replaced: refuse both before the run. */
    struct stat out_st;
    if (stat(out_path, &out_st) == 0 && !S_ISREG(out_st.st_mode))
        return cli_error("%s: %s, not a plan file", out_path,
                         S_ISDIR(out_st.st_mode) ? "is a folder" : "is not a regular file");

    const double cmd_start = cli_now();
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    if (cfg.device == PARO_DEVICE_CUDA && paro_cuda_device_count(&ei) == 0)
        return cli_fail(&ei);
    paro_errinfo_clear(&ei);
    int gpus[PARO_CALIB_MAX_GPUS];
    if (gpus_arg) {
        if (cfg.device == PARO_DEVICE_CPU)
            return cli_usage_error("calibrate ", &help, "--gpus and --device cpu exclude each other");
        int n_gpus = parse_gpus(gpus_arg, gpus);
        if (n_gpus == -1)
            return EXIT_USAGE;
        int have = paro_cuda_device_count(&ei);
        if (have == 0)
            return cli_fail(&ei);
        if (n_gpus == -2) { /* all */
            n_gpus = have < PARO_CALIB_MAX_GPUS ? have : PARO_CALIB_MAX_GPUS;
            for (int i = 0; i < n_gpus; i++)
                gpus[i] = i;
        }
        for (int i = 0; i < n_gpus; i++)
            if (gpus[i] >= have)
                return cli_usage_error("calibrate ", &help,
                                       "--gpus: there is no GPU %d (this machine has %d: 0..%d)",
                                       gpus[i], have, have - 1);
        cfg.gpus = gpus;
        cfg.n_gpus = (uint32_t)n_gpus;
        cfg.device = PARO_DEVICE_CUDA;
    }

    paro_manifest *m = NULL;
    if (paro_manifest_load(manifest_path, &m, &ei))
        return cli_fail(&ei);

    int rc = EXIT_OK;
    uint32_t *layers = NULL, *samples = NULL, n;
    char *journal = NULL;
    if (layers_arg) {
        if (cli_parse_list("--layers", layers_arg, m->layers, &layers, &n)) {
            rc = EXIT_USAGE;
            goto done;
        }
        cfg.layers = layers;
        cfg.n_layers = n;
    }
    if (samples_arg) {
        const uint32_t total = (uint32_t)m->n_samples;
        if (!strncmp(samples_arg, "random:", 7)) {
            uint32_t k;
            if (cli_parse_u32("--samples", samples_arg + 7, 1, total, &k) ||
                pick_random(total, k, cfg.seed, &samples)) {
                rc = EXIT_USAGE;
                goto done;
            }
            n = k;
        } else if (cli_parse_list("--samples", samples_arg, total, &samples, &n)) {
            rc = EXIT_USAGE;
            goto done;
        }
        cfg.samples = samples;
        cfg.n_samples = n;
    }

    /* Finished layers are journalled beside the plan, so an interrupted run
     * can go on with --resume; the journal goes once the plan is written. */
    journal = malloc(strlen(out_path) + sizeof ".journal");
    if (!journal) {
        rc = cli_error("out of memory");
        goto done;
    }
    sprintf(journal, "%s.journal", out_path);
    cfg.journal = journal;

    progress_state ps;
    memset(&ps, 0, sizeof ps);
    ps.journal = journal;
    ps.n_layers = cfg.layers ? cfg.n_layers : m->layers;
    ps.n_samples = cfg.samples ? cfg.n_samples : m->n_samples;
    cli_progress_start(&ps.bar, "calibrate", (uint64_t)ps.n_layers * ps.n_samples);
    cfg.progress = on_progress;
    cfg.progress_user = &ps;
    cfg.stop = &stop_requested;
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND; /* a second Ctrl-C stops at once */
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);

    paro_calib_timing timing;
    cfg.timing = &timing;
    double start = cli_now();
    paro_plan *plan = NULL;
    paro_err err = paro_calibrate(m, &cfg, &plan, &ei);
    cli_progress_end(&ps.bar);
    const double write_start = cli_now();
    if (!err)
        err = paro_plan_write(plan, out_path, cfg.threads, &ei);
    const double write_s = cli_now() - write_start;
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    /* A journal that holds no finished layer is removed, so that a run that
     * fails or stops early leaves nothing behind. */
    if (err == PARO_ERR_INTERRUPTED) {
        if (paro_journal_discard_empty(journal))
            cli_error("interrupted before the first layer finished");
        else
            cli_error("interrupted; the layers finished so far are in %s: rerun with --resume "
                      "to go on from there", journal);
        rc = stop_requested == SIGTERM ? EXIT_SIGTERM : EXIT_SIGINT;
    } else if (err) {
        rc = cli_fail(&ei);
        if (!paro_journal_discard_empty(journal) && (ei.code != PARO_ERR_USAGE || !cfg.resume))
            cli_log(3, "paro: the layers finished before the error are in %s (--resume)\n",
                    journal);
    } else {
        unlink(journal);
        summarize(plan, out_path, cli_now() - start);
        /* Where the time went, for whoever tunes a run: the first line on
         * the driving thread, the second beside it. */
        cli_log(4, "paro: time: before the run %.2f s, opening the %s backend %.2f s, first "
                   "sample queued at %.2f s; reading %.2f s, %s %.2f s, collecting layers "
                   "%.2f s, waiting for scoring %.2f s; closing the backend %.2f s, writing "
                   "the plan %.2f s\n",
                start - cmd_start, plan->backend, timing.open, timing.first, timing.read,
                strcmp(plan->backend, "cuda") ? "computing" : "uploading", timing.submit,
                timing.collect, timing.wait_score, timing.close, write_s);
        cli_log(4, "paro: time: scoring %.2f s beside them, of which saving layers to the "
                   "journal %.2f s\n",
                timing.score, timing.journal);
    }
    paro_plan_free(plan);
done:
    free(journal);
    free(layers);
    free(samples);
    paro_manifest_free(m);
    return rc;
}
