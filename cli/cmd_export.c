/* paro export — a plan's orders, masks and permutations as arrays for
 * runtimes (.npz, .safetensors or JSON). */
#include <stdio.h>    /* printf */
#include <string.h>   /* strcmp, strrchr */
#include <sys/stat.h> /* stat */

#include "cli.h"
#include "plan.h"        /* paro_plan_read, paro_plan_free */
#include "plan_export.h" /* paro_plan_export, paro_export_format_parse */

static const cli_help help = {
    .usage = "paro export PLAN --to npz|json|safetensors -o FILE [--compress]",
    .summary =
        "Write a plan as arrays that runtimes load directly: layers, order_names and the\n"
        "order of each head (orders [layers, heads]), the permutation of every order\n"
        "(perms [orders, tokens]), and per timestep bucket the masks\n"
        "(masks [buckets, layers, heads, nq, nk]), FlexAttention's block-sparse inputs\n"
        "(kv_num_blocks [buckets, layers, heads, nq], kv_indices [..., nq, nk], kept\n"
        "key blocks ascending, padded with 0) and density and recall\n"
        "([buckets, layers, heads]).  The same names in all three formats; the file is\n"
        "written atomically.",
    .options = "      --to FORMAT         npz | json | safetensors [default: from the FILE's\n"
               "                          extension]\n"
               "  -o, --output FILE       where to write (a file; not stdout)\n"
               "      --compress          npz: deflate the arrays (numpy.savez_compressed)",
    .examples = "  paro export model.paro -o model.npz\n"
                "  paro export model.paro --to safetensors -o model.safetensors\n"
                "  python3 -c 'import numpy; print(numpy.load(\"model.npz\")[\"masks\"].shape)'",
};

enum { OPT_TO = 256, OPT_COMPRESS };

/* The format named by path's extension, 0 when it names none. */
static paro_export_format format_of_path(const char *path)
{
    const char *dot = strrchr(path, '.');
    return dot ? paro_export_format_parse(dot + 1) : (paro_export_format)0;
}

int cmd_export(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"to", required_argument, NULL, OPT_TO},
        {"output", required_argument, NULL, 'o'},
        {"compress", no_argument, NULL, OPT_COMPRESS},
        {NULL, 0, NULL, 0},
    };
    const char *to = NULL, *out = NULL;
    paro_export_options opt = {0, 0};
    int c;
    while ((c = cli_getopt(argc, argv, "o:", longopts, "export", &help)) != -1) {
        switch (c) {
        case CLI_OPT_HANDLED: break;
        case CLI_OPT_HELP: cli_help_print(stdout, "export", &help); return EXIT_OK;
        case OPT_TO: to = optarg; break;
        case 'o': out = optarg; break;
        case OPT_COMPRESS: opt.compress = 1; break;
        default: return EXIT_USAGE;
        }
    }
    if (optind >= argc)
        return cli_usage_error("export ", &help, "a plan file is required");
    if (optind + 1 < argc)
        return cli_usage_error("export ", &help, "unexpected argument '%s'", argv[optind + 1]);
    if (!out)
        return cli_usage_error("export ", &help, "-o FILE is required");
    if (strcmp(out, "-") == 0)
        return cli_usage_error("export ", &help,
                               "export writes a file, atomically; it cannot write to stdout");
    paro_export_format format = to ? paro_export_format_parse(to) : format_of_path(out);
    if (!format)
        return to ? cli_usage_error("export ", &help,
                                    "--to %s: the formats are npz, json and safetensors", to)
                  : cli_usage_error("export ", &help,
                                    "cannot tell the format from '%s'; give --to npz, json or "
                                    "safetensors",
                                    out);
    if (opt.compress && format != PARO_EXPORT_NPZ)
        return cli_usage_error("export ", &help, "--compress applies to npz only");
    const char *path = argv[optind];

    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_plan *plan = NULL;
    if (paro_plan_read(path, &plan, &ei))
        return cli_fail(&ei);
    int rc = EXIT_OK;
    if (paro_plan_export(plan, format, out, &opt, &ei)) {
        rc = cli_fail(&ei);
    } else {
        struct stat st;
        double kib = stat(out, &st) == 0 ? (double)st.st_size / 1024.0 : 0.0;
        cli_log(2, "paro: wrote %s (%.1f KiB): %u buckets x %u layers x %u heads x %ux%u tiles\n",
                out, kib, plan->n_buckets, plan->n_layers, plan->heads, plan->nq, plan->nk);
    }
    paro_plan_free(plan);
    return rc;
}
