/* paro eval — what a plan does to attention on held-out samples, against
 * capture order at the same density (calib/EVAL.md defines the numbers). */
#include <cjson/cJSON.h> /* cJSON_* (--json) */
#include <math.h>        /* isnan */
#include <signal.h>      /* sigaction, SIGINT, SIGTERM */
#include <stdio.h>       /* printf, snprintf */
#include <stdlib.h>      /* free, malloc */
#include <string.h>      /* strcmp, strchr, strlen, memcpy, memset */

#include "calibrate.h" /* paro_device */
#include "cli.h"
#include "eval.h"      /* paro_eval, paro_eval_result */
#include "eval_picture.h" /* paro_eval_sweep_picture */
#include "json_util.h" /* paro_json_print_line, paro_json_put, paro_json_double, … */
#include "manifest.h"  /* paro_manifest_load */
#include "order.h"     /* paro_order_name, PARO_ORDER_FHW */
#include "plan.h"      /* paro_plan_read */

static const cli_help help = {
    .usage = "paro eval -m MANIFEST -p PLAN [options]",
    .summary =
        "Measure what a plan does to attention on samples it was not calibrated on: per\n"
        "head, the recall of its masks, the error of the sparse output (softmax over the\n"
        "kept tiles) and of INT8/INT4 quantized attention, each beside capture order\n"
        "(FHW) with a mask of the same density built by the same rules from the plan's\n"
        "calibration samples.  Needs V in the capture.  Prints a row per layer (-v: per\n"
        "head); --json prints one paro-eval/v1 object.  calib/EVAL.md defines every number.",
    .options =
        "  -m, --manifest FILE     the capture's manifest.json (with V)\n"
        "  -p, --plan PLAN         the plan to evaluate\n"
        "      --samples LIST      evaluation samples, e.g. 2,5-7 [default: those the plan\n"
        "                          was not calibrated on]\n"
        "      --density-sweep L   also rebuild both orders' masks at these densities,\n"
        "                          e.g. 0.1,0.2,0.3,0.5, and report recall and error\n"
        "      --png FILE          with --density-sweep: draw recall and error against\n"
        "                          density for both orders ('-': stdout)\n"
        "      --json              print one JSON object (schema paro-eval/v1)\n"
        "      --device DEV        auto | cpu | cuda [default: auto: cuda when a device is there]\n"
        "  -j, --threads N         worker threads [default: all cores]",
    .examples = "  paro eval -m capture/manifest.json -p model.paro\n"
                "  paro eval -m capture/manifest.json -p model.paro --density-sweep "
                "0.1,0.2,0.3,0.5 --json\n"
                "  paro eval -m capture/manifest.json -p model.paro --density-sweep "
                "0.1,0.2,0.3,0.5 --png sweep.png",
};

enum { OPT_SAMPLES = 256, OPT_SWEEP, OPT_JSON, OPT_DEVICE, OPT_PNG };

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void on_progress(void *user, const paro_eval_progress *p)
{
    cli_progress *bar = user;
    char detail[64];
    /* The total is known once the library has chosen the samples. */
    bar->total = p->total;
    snprintf(detail, sizeof detail, "layer %u, sample %zu", p->layer, p->sample);
    cli_progress_update(bar, p->done, detail);
    if (!bar->enabled)
        cli_log(4, "paro: layer %u, sample %zu done (%llu/%llu)\n", p->layer, p->sample,
                (unsigned long long)p->done, (unsigned long long)p->total);
}

/* parse_densities' list so far. */
typedef struct density_list {
    double *v;
    size_t n;
} density_list;

static int density_item(char *item, void *user)
{
    density_list *d = user;
    return cli_parse_double("--density-sweep", item, 0.0, 1.0, &d->v[d->n++]);
}

/* "0.1,0.2,0.5" into a malloc'ed list of densities in [0, 1]. */
static int parse_densities(const char *s, double **out, size_t *n)
{
    size_t cap = 1;
    for (const char *c = s; *c; c++)
        cap += *c == ',';
    if (cap > PARO_EVAL_MAX_SWEEP) {
        cli_error("--density-sweep: at most %d densities", PARO_EVAL_MAX_SWEEP);
        return EXIT_USAGE;
    }
    density_list d = {malloc(cap * sizeof *d.v), 0};
    if (!d.v)
        return cli_error("out of memory");
    if (cli_each_item("--density-sweep", s, density_item, &d)) {
        free(d.v);
        return EXIT_USAGE;
    }
    *out = d.v;
    *n = d.n;
    return 0;
}

/* "0-3,5" from a sorted list, cut with "..." beyond the buffer. */
static const char *format_list(const uint32_t *v, size_t n, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j + 1 < n && v[j + 1] == v[j] + 1)
            j++;
        char item[32];
        if (j > i)
            snprintf(item, sizeof item, "%s%u-%u", i ? "," : "", v[i], v[j]);
        else
            snprintf(item, sizeof item, "%s%u", i ? "," : "", v[i]);
        if (used + strlen(item) + 4 >= size) {
            snprintf(buf + used, size - used, ",...");
            break;
        }
        used += (size_t)snprintf(buf + used, size - used, "%s", item);
        i = j + 1;
    }
    return buf;
}

/* ---- text ---------------------------------------------------------------- */

static void print_row(const char *label, const double *x)
{
    printf("%-9s %7.3f   %7.4f %7.4f %7.4f   %8.5f %8.5f   %8.5f %8.5f   %8.5f %8.5f\n", label,
           x[PARO_EVAL_DENSITY], x[PARO_EVAL_RECALL], x[PARO_EVAL_RECALL_WORST],
           x[PARO_EVAL_RECALL_CAPTURE], x[PARO_EVAL_OUT_REL_L2], x[PARO_EVAL_OUT_REL_L2_CAPTURE],
           x[PARO_EVAL_INT4_REL_L2], x[PARO_EVAL_INT4_REL_L2_CAPTURE], x[PARO_EVAL_INT8_REL_L2],
           x[PARO_EVAL_INT8_REL_L2_CAPTURE]);
}

static void print_buckets(const paro_eval_result *r)
{
    printf("\nbucket  progress        samples  density     FHW   recall     FHW\n");
    for (uint32_t b = 0; b < r->n_buckets; b++) {
        double sum[4] = {0, 0, 0, 0};
        double heads = (double)r->n_layers * r->heads;
        for (uint32_t l = 0; l < r->n_layers; l++)
            for (uint32_t h = 0; h < r->heads; h++) {
                size_t at = paro_eval_bucket_index(r, l, b, h);
                sum[0] += r->density[at];
                sum[1] += r->density_capture[at];
                sum[2] += r->recall[at];
                sum[3] += r->recall_capture[at];
            }
        char range[32];
        snprintf(range, sizeof range, "[%.3g, %.3g%c", (double)b / r->n_buckets,
                 (double)(b + 1) / r->n_buckets, b + 1 == r->n_buckets ? ']' : ')');
        printf("%6u  %-14s %8u  ", b, range, r->bucket_samples[b]);
        for (int i = 0; i < 4; i++) {
            double x = sum[i] / heads;
            if (isnan(x))
                printf(i < 2 ? "%7s " : "%8s", "-");
            else
                printf(i < 2 ? "%7.3f " : "%8.4f", x);
        }
        printf("\n");
    }
}

static void print_sweep(const paro_eval_result *r)
{
    printf("\ndensity sweep: both orders' masks rebuilt at each density from the %s samples\n",
           r->basis == PARO_EVAL_BASIS_CALIBRATION ? "calibration" : "evaluation");
    printf("               density        ------ recall ------   --- out_rel_l2 ----\n");
    printf(" target    chosen     FHW       chosen      FHW       chosen      FHW\n");
    for (size_t di = 0; di < r->n_sweep; di++) {
        double x[PARO_SWEEP_N_METRICS];
        paro_eval_sweep_summary(r, -1, di, x);
        printf("%7.3f   %7.3f %7.3f     %8.4f %8.4f     %8.5f %8.5f\n", r->sweep_density[di],
               x[PARO_SWEEP_DENSITY], x[PARO_SWEEP_DENSITY_CAPTURE], x[PARO_SWEEP_RECALL],
               x[PARO_SWEEP_RECALL_CAPTURE], x[PARO_SWEEP_OUT_REL_L2],
               x[PARO_SWEEP_OUT_REL_L2_CAPTURE]);
    }
}

static void print_text(const paro_eval_result *r, const paro_plan *plan, const char *plan_path,
                       const paro_manifest *m)
{
    char list[256];
    printf("plan        %s: %u layer%s x %u heads, blocks %ux%u, %u timestep bucket%s\n",
           plan_path, r->n_layers, r->n_layers == 1 ? "" : "s", r->heads, plan->block_q,
           plan->block_k, r->n_buckets, r->n_buckets == 1 ? "" : "s");
    printf("samples     %zu of %zu%s: %s\n", r->n_samples, m->n_samples,
           r->held_out ? " (held out)" : " (not held out)",
           format_list(r->samples, r->n_samples, list, sizeof list));
    printf("baseline    capture order (FHW), with masks at each head's density built from\n"
           "            the %s samples %s\n",
           r->basis == PARO_EVAL_BASIS_CALIBRATION ? "plan's calibration" : "evaluation",
           format_list(r->basis_samples, r->n_basis, list, sizeof list));
    printf("\n                    ------ recall -------   -- out_rel_l2 ---   -- int4_rel_l2 --"
           "   -- int8_rel_l2 --\n");
    printf("layer     density    chosen   worst     FHW     chosen      FHW     chosen      FHW"
           "     chosen      FHW\n");
    double x[PARO_EVAL_N_METRICS];
    for (uint32_t l = 0; l < r->n_layers; l++) {
        char label[16];
        snprintf(label, sizeof label, "%u", r->layers[l]);
        paro_eval_summary(r, (int)l, x);
        print_row(label, x);
        if (g_verbosity >= 3)
            for (uint32_t h = 0; h < r->heads; h++) {
                snprintf(label, sizeof label, "  %u %s", h,
                         paro_order_name(r->order[(size_t)l * r->heads + h]));
                print_row(label, paro_eval_head_metrics(r, l, h));
            }
    }
    paro_eval_summary(r, -1, x);
    if (r->n_layers > 1)
        print_row("all", x);
    printf("\nchosen orders vs capture order, mean over %u heads: density %.3f vs %.3f, "
           "recall %.4f vs %.4f,\nout_rel_l2 %.5f vs %.5f, int4_rel_l2 %.5f vs %.5f\n",
           r->n_layers * r->heads, x[PARO_EVAL_DENSITY], x[PARO_EVAL_DENSITY_CAPTURE],
           x[PARO_EVAL_RECALL], x[PARO_EVAL_RECALL_CAPTURE], x[PARO_EVAL_OUT_REL_L2],
           x[PARO_EVAL_OUT_REL_L2_CAPTURE], x[PARO_EVAL_INT4_REL_L2],
           x[PARO_EVAL_INT4_REL_L2_CAPTURE]);
    if (r->n_buckets > 1)
        print_buckets(r);
    if (r->n_sweep)
        print_sweep(r);
}

/* ---- JSON ---------------------------------------------------------------- */

/* The per-bucket values of (layer slot l, head h) from a [L][B][H] array. */
static cJSON *bucket_array(const paro_eval_result *r, const double *arr, uint32_t l, uint32_t h)
{
    cJSON *a = cJSON_CreateArray();
    for (uint32_t b = 0; a && b < r->n_buckets; b++)
        if (paro_json_put(a, NULL, paro_json_double(arr[paro_eval_bucket_index(r, l, b, h)])) < 0) {
            cJSON_Delete(a);
            return NULL;
        }
    return a;
}

static int is_bucketed(int m)
{
    return m == PARO_EVAL_DENSITY || m == PARO_EVAL_DENSITY_CAPTURE || m == PARO_EVAL_RECALL ||
           m == PARO_EVAL_RECALL_CAPTURE;
}

static cJSON *summary_object(const paro_eval_result *r, int l)
{
    double x[PARO_EVAL_N_METRICS];
    paro_eval_summary(r, l, x);
    cJSON *o = cJSON_CreateObject();
    int bad = !o;
    if (!bad && l >= 0)
        bad = paro_json_put(o, "layer", paro_json_uint(r->layers[l])) < 0;
    if (!bad)
        bad = paro_json_put(o, "heads", paro_json_uint(l >= 0 ? r->heads : (uint64_t)r->n_layers * r->heads));
    for (int m = 0; !bad && m < PARO_EVAL_N_METRICS; m++)
        bad = paro_json_put(o, paro_eval_metric_name(m), paro_json_double(x[m])) < 0;
    if (bad) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static cJSON *head_object(const paro_eval_result *r, uint32_t l, uint32_t h)
{
    cJSON *o = cJSON_CreateObject();
    const double *x = paro_eval_head_metrics(r, l, h);
    int bad = !o;
    bad = bad || paro_json_put(o, "layer", paro_json_uint(r->layers[l])) < 0;
    bad = bad || paro_json_put(o, "head", paro_json_uint(h)) < 0;
    bad = bad ||
          paro_json_put(o, "order", cJSON_CreateString(paro_order_name(r->order[(size_t)l * r->heads + h]))) <
              0;
    bad = bad || paro_json_put(o, "density", bucket_array(r, r->density, l, h)) < 0;
    bad = bad || paro_json_put(o, "density_capture_order", bucket_array(r, r->density_capture, l, h)) < 0;
    bad = bad || paro_json_put(o, "recall", bucket_array(r, r->recall, l, h)) < 0;
    bad = bad || paro_json_put(o, "recall_capture_order", bucket_array(r, r->recall_capture, l, h)) < 0;
    for (int m = 0; !bad && m < PARO_EVAL_N_METRICS; m++) {
        char key[64];
        snprintf(key, sizeof key, "%s%s", paro_eval_metric_name(m), is_bucketed(m) ? "_mean" : "");
        bad = paro_json_put(o, key, paro_json_double(x[m])) < 0;
    }
    if (bad) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static cJSON *sample_object(const paro_manifest *m, uint32_t index, uint32_t bucket)
{
    const paro_sample *s = &m->samples[index];
    cJSON *o = cJSON_CreateObject();
    int bad = !o;
    bad = bad || paro_json_put(o, "index", paro_json_uint(index)) < 0;
    bad = bad || paro_json_put(o, "prompt", paro_json_int(s->prompt)) < 0;
    bad = bad || paro_json_put(o, "timestep", paro_json_double(s->timestep)) < 0;
    if (s->step >= 0)
        bad = bad || paro_json_put(o, "step", paro_json_int(s->step)) < 0;
    bad = bad || paro_json_put(o, "bucket", paro_json_uint(bucket)) < 0;
    if (bad) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static char *eval_json(const paro_eval_result *r, const paro_plan *plan, const char *plan_path,
                       const paro_manifest *m)
{
    cJSON *root = cJSON_CreateObject(), *a;
    int bad = !root;
    bad = bad || paro_json_put(root, "schema", cJSON_CreateString("paro-eval/v1")) < 0;
    bad = bad || paro_json_put(root, "plan", cJSON_CreateString(plan_path)) < 0;
    bad = bad || paro_json_put(root, "manifest", cJSON_CreateString(m->path)) < 0;
    bad = bad || paro_json_put(root, "model", cJSON_CreateString(plan->model)) < 0;
    if (!bad && paro_json_put(root, "block", a = cJSON_CreateArray()) == 0) {
        bad = paro_json_put(a, NULL, paro_json_uint(plan->block_q)) < 0 ||
              paro_json_put(a, NULL, paro_json_uint(plan->block_k)) < 0;
    } else {
        bad = 1;
    }
    bad = bad || paro_json_put(root, "buckets", paro_json_uint(r->n_buckets)) < 0;
    bad = bad || paro_json_put(root, "held_out", cJSON_CreateBool(r->held_out)) < 0;
    bad = bad || paro_json_put(root, "capture_order_masks_from",
                     cJSON_CreateString(r->basis == PARO_EVAL_BASIS_CALIBRATION ? "calibration"
                                                                               : "evaluation")) <
                     0;
    if (!bad && paro_json_put(root, "basis_samples", a = cJSON_CreateArray()) == 0) {
        for (size_t i = 0; !bad && i < r->n_basis; i++)
            bad = paro_json_put(a, NULL, paro_json_uint(r->basis_samples[i])) < 0;
    } else {
        bad = 1;
    }
    if (!bad && paro_json_put(root, "samples", a = cJSON_CreateArray()) == 0) {
        for (size_t i = 0; !bad && i < r->n_samples; i++)
            bad = paro_json_put(a, NULL, sample_object(m, r->samples[i], r->sample_bucket[i])) < 0;
    } else {
        bad = 1;
    }
    if (!bad && paro_json_put(root, "warnings", a = cJSON_CreateArray()) == 0) {
        for (int i = 0; !bad && i < r->n_warnings; i++)
            bad = paro_json_put(a, NULL, cJSON_CreateString(r->warnings[i])) < 0;
    } else {
        bad = 1;
    }
    if (!bad && paro_json_put(root, "heads", a = cJSON_CreateArray()) == 0) {
        for (uint32_t l = 0; !bad && l < r->n_layers; l++)
            for (uint32_t h = 0; !bad && h < r->heads; h++)
                bad = paro_json_put(a, NULL, head_object(r, l, h)) < 0;
    } else {
        bad = 1;
    }
    if (!bad && paro_json_put(root, "layers", a = cJSON_CreateArray()) == 0) {
        for (uint32_t l = 0; !bad && l < r->n_layers; l++)
            bad = paro_json_put(a, NULL, summary_object(r, (int)l)) < 0;
    } else {
        bad = 1;
    }
    bad = bad || paro_json_put(root, "summary", summary_object(r, -1)) < 0;
    if (!bad && r->n_sweep) {
        if (paro_json_put(root, "sweep", a = cJSON_CreateArray()) == 0) {
            for (size_t di = 0; !bad && di < r->n_sweep; di++) {
                double x[PARO_SWEEP_N_METRICS];
                paro_eval_sweep_summary(r, -1, di, x);
                cJSON *o = cJSON_CreateObject();
                bad = paro_json_put(a, NULL, o) < 0 || paro_json_put(o, "target", paro_json_double(r->sweep_density[di])) < 0;
                for (int mi = 0; !bad && mi < PARO_SWEEP_N_METRICS; mi++)
                    bad = paro_json_put(o, paro_eval_sweep_metric_name(mi), paro_json_double(x[mi])) < 0;
            }
        } else {
            bad = 1;
        }
    }
    char *text = bad ? NULL : paro_json_print_line(root);
    cJSON_Delete(root);
    return text;
}

/* ---- the command --------------------------------------------------------- */

int cmd_eval(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"manifest", required_argument, NULL, 'm'},
        {"plan", required_argument, NULL, 'p'},
        {"samples", required_argument, NULL, OPT_SAMPLES},
        {"density-sweep", required_argument, NULL, OPT_SWEEP},
        {"json", no_argument, NULL, OPT_JSON},
        {"device", required_argument, NULL, OPT_DEVICE},
        {"png", required_argument, NULL, OPT_PNG},
        {"threads", required_argument, NULL, 'j'},
        {NULL, 0, NULL, 0},
    };
    paro_eval_config cfg;
    paro_eval_config_default(&cfg);
    cfg.threads = cli_cores();
    const char *manifest_path = NULL, *plan_path = NULL, *samples_arg = NULL, *png = NULL;
    double *sweep = NULL;
    int json = 0, opt;
    while ((opt = cli_getopt(argc, argv, "m:p:j:", longopts, "eval", &help)) != -1) {
        int bad = 0;
        switch (opt) {
        case CLI_OPT_HANDLED: break;
        case CLI_OPT_HELP:
            free(sweep);
            cli_help_print(stdout, "eval", &help);
            return EXIT_OK;
        case 'm': manifest_path = optarg; break;
        case 'p': plan_path = optarg; break;
        case OPT_SAMPLES: samples_arg = optarg; break;
        case OPT_SWEEP:
            free(sweep);
            sweep = NULL;
            bad = parse_densities(optarg, &sweep, &cfg.n_sweep);
            break;
        case OPT_JSON: json = 1; break;
        case OPT_PNG: png = optarg; break;
        case OPT_DEVICE:
            if (!strcmp(optarg, "auto"))
                cfg.device = PARO_DEVICE_AUTO;
            else if (!strcmp(optarg, "cpu"))
                cfg.device = PARO_DEVICE_CPU;
            else if (!strcmp(optarg, "cuda"))
                cfg.device = PARO_DEVICE_CUDA;
            else
                bad = cli_usage_error("eval ", &help, "--device must be auto, cpu or cuda, not '%s'",
                                      optarg);
            break;
        case 'j': bad = cli_parse_threads(optarg, &cfg.threads); break;
        default: bad = EXIT_USAGE; break;
        }
        if (bad) {
            free(sweep);
            return EXIT_USAGE;
        }
    }
    cfg.sweep = sweep;
    int rc = EXIT_OK;
    if (optind < argc)
        rc = cli_usage_error("eval ", &help, "unexpected argument '%s'", argv[optind]);
    else if (!manifest_path)
        rc = cli_usage_error("eval ", &help, "a manifest is required (-m MANIFEST)");
    else if (!plan_path)
        rc = cli_usage_error("eval ", &help, "a plan is required (-p PLAN)");
    else if (png && cfg.n_sweep == 0)
        rc = cli_usage_error("eval ", &help, "--png draws the density sweep: give --density-sweep");
    else if (png && cli_png_to_terminal(png))
        rc = cli_usage_error("eval ", &help,
                             "refusing to write a picture to a terminal; redirect stdout or "
                             "give --png a file name");
    else if (png && json && strcmp(png, "-") == 0)
        rc = cli_usage_error("eval ", &help, "--json and --png - would share stdout");
    if (rc) {
        free(sweep);
        return rc;
    }

    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_manifest *m = NULL;
    paro_plan *plan = NULL;
    uint32_t *samples = NULL;
    paro_eval_result *res = NULL;
    if (paro_manifest_load(manifest_path, &m, &ei) || paro_plan_read(plan_path, &plan, &ei)) {
        rc = cli_fail(&ei);
        goto done;
    }
    if (samples_arg) {
        uint32_t n;
        if (cli_parse_list("--samples", samples_arg, (uint32_t)m->n_samples, &samples, &n)) {
            rc = EXIT_USAGE;
            goto done;
        }
        cfg.samples = samples;
        cfg.n_samples = n;
    }

    cli_progress bar;
    cli_progress_start(&bar, "eval", 0);
    cfg.progress = on_progress;
    cfg.progress_user = &bar;
    cfg.stop = &stop_requested;
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    paro_err err = paro_eval(m, plan, &cfg, &res, &ei);
    cli_progress_end(&bar);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (err) {
        rc = cli_fail(&ei);
        goto done;
    }
    cli_log(4, "paro: eval ran on the %s\n", res->device);
    for (int i = 0; i < res->n_warnings; i++)
        cli_warn("%s", res->warnings[i]);
    if (png) {
        paro_image img = {0, 0, NULL};
        if (paro_eval_sweep_picture(res, &img, NULL, &ei))
            rc = cli_fail(&ei);
        else
            rc = cli_write_png(&img, png);
        paro_image_free(&img);
        if (rc || strcmp(png, "-") == 0)
            goto done;
    }
    if (json) {
        char *text = eval_json(res, plan, plan_path, m);
        if (!text)
            rc = cli_error("out of memory");
        else
            fwrite(text, 1, strlen(text), stdout);
        free(text);
    } else {
        print_text(res, plan, plan_path, m);
    }

done:
    paro_eval_result_free(res);
    paro_plan_free(plan);
    paro_manifest_free(m);
    free(samples);
    free(sweep);
    return rc;
}
