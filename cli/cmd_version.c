/* paro version — the tool version, the plan format it writes, build features. */
#include <cjson/cJSON.h> /* cJSON_Version */
#include <stdio.h>       /* printf */
#include <zlib.h>        /* zlibVersion */

#include "cli.h"
#include "kernels.h" /* paro_cuda_built, paro_cuda_device_count */
#include "plan.h"    /* PARO_PLAN_MAJOR, PARO_PLAN_MINOR, PARO_PLAN_SCHEMA */

static const cli_help help = {
    .usage = "paro version [-v]",
    .summary = "Show paro's version, the plan format it writes and its build features.\n"
               "With -v, also list the CUDA devices this machine has.",
    .options = "",
    .examples = "  paro version\n  paro version -v",
};

int cmd_version(int argc, char **argv)
{
    static const struct option longopts[] = {{NULL, 0, NULL, 0}};
    int c;
    while ((c = cli_getopt(argc, argv, "", longopts, "version", &help)) != -1) {
        if (c == CLI_OPT_HANDLED)
            continue;
        if (c == CLI_OPT_HELP) {
            cli_help_print(stdout, "version", &help);
            return EXIT_OK;
        }
        return EXIT_USAGE;
    }
    if (optind < argc)
        return cli_usage_error("version ", &help, "unexpected argument '%s'", argv[optind]);

    printf("paro %s\n", PARO_VERSION);
    printf("plan format %d.%d (%s)\n", PARO_PLAN_MAJOR, PARO_PLAN_MINOR, PARO_PLAN_SCHEMA);
    if (paro_cuda_built())
        printf("cuda: yes (%s)\n", PARO_CUDA_ARCH);
    else
        printf("cuda: no\n");
    printf("zlib %s, cJSON %s\n", zlibVersion(), cJSON_Version());
    if (g_verbosity >= 3 && paro_cuda_built()) {
        paro_errinfo ei;
        paro_errinfo_clear(&ei);
        int n = paro_cuda_device_count(&ei);
        if (n == 0)
            printf("cuda devices: none (%s)\n", ei.msg);
        for (int d = 0; d < n; d++) {
            char desc[256];
            paro_cuda_device_describe(d, desc, sizeof desc, NULL);
            printf("cuda device %d: %s\n", d, desc);
        }
    }
    return EXIT_OK;
}
