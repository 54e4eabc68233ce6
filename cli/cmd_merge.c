/* paro merge — combine plans calibrated on disjoint layers into one. */
#include <stdio.h>    /* printf */
#include <stdlib.h>   /* calloc, free */
#include <string.h>   /* strcmp */
#include <sys/stat.h> /* stat */

#include "cli.h"
#include "plan.h" /* paro_plan_read, paro_plan_merge_named, paro_plan_write */

static const cli_help help = {
    .usage = "paro merge PLAN PLAN... -o OUT",
    .summary =
        "Combine plans calibrated on disjoint sets of layers of the same capture with\n"
        "the same settings (calibrate --layers on several machines or GPUs) into one\n"
        "plan with the layers sorted: byte for byte the plan one run over all of them\n"
        "writes.  Plans whose settings differ are refused naming the first differing\n"
        "key and both values; so are plans that share a layer (exit 2).",
    .options = "  -o, --output FILE       the merged plan (written atomically)",
    .examples = "  paro calibrate -m capture/manifest.json --layers 0-19 -o a.paro\n"
                "  paro calibrate -m capture/manifest.json --layers 20-41 -o b.paro\n"
                "  paro merge a.paro b.paro -o model.paro",
};

int cmd_merge(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"output", required_argument, NULL, 'o'},
        {NULL, 0, NULL, 0},
    };
    const char *out = NULL;
    int c;
    while ((c = cli_getopt(argc, argv, "o:", longopts, "merge", &help)) != -1) {
        switch (c) {
        case CLI_OPT_HANDLED: break;
        case CLI_OPT_HELP: cli_help_print(stdout, "merge", &help); return EXIT_OK;
        case 'o': out = optarg; break;
        default: return EXIT_USAGE;
        }
    }
    if (optind >= argc)
        return cli_usage_error("merge ", &help, "plans to merge are required");
    if (!out)
        return cli_usage_error("merge ", &help, "-o FILE is required");
    if (strcmp(out, "-") == 0)
        return cli_usage_error("merge ", &help,
                               "merge writes a plan file, atomically; it cannot write to stdout");
    const size_t n = (size_t)(argc - optind);
    paro_plan **parts = calloc(n, sizeof *parts);
    if (!parts)
        return cli_error("out of memory");
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    int rc = EXIT_OK;
    for (size_t i = 0; i < n && rc == EXIT_OK; i++)
        if (paro_plan_read(argv[optind + (int)i], &parts[i], &ei))
            rc = cli_fail(&ei);
    paro_plan *merged = NULL;
    if (rc == EXIT_OK &&
        paro_plan_merge_named((const paro_plan *const *)parts, (const char *const *)argv + optind,
                              n, &merged, &ei))
        rc = cli_fail(&ei);
    if (rc == EXIT_OK && paro_plan_write(merged, out, cli_cores(), &ei))
        rc = cli_fail(&ei);
    if (rc == EXIT_OK) {
        struct stat st;
        double kib = stat(out, &st) == 0 ? (double)st.st_size / 1024.0 : 0.0;
        cli_log(2, "paro: wrote %s (%.1f KiB): %u layers x %u heads from %zu plans\n", out, kib,
                merged->n_layers, merged->heads, n);
    }
    paro_plan_free(merged);
    for (size_t i = 0; i < n; i++)
        paro_plan_free(parts[i]);
    free(parts);
    return rc;
}
