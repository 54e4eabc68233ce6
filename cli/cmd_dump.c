/* paro dump — show a plan as text (people) or JSON (scripts). */
#include <stdio.h>  /* printf */
#include <stdlib.h> /* free */
#include <string.h> /* strlen */

#include "cli.h"
#include "plan.h" /* paro_plan_read, paro_plan_to_json */

static const cli_help help = {
    .usage = "paro dump [options] PLAN",
    .summary = "Show a plan: its settings and, per layer, how many heads chose each order and\n"
               "the mean density and recall of the masks (per head with -v).  --json prints\n"
               "the paro-plan/v1 document that scripts should read instead of the text.\n"
               "Every read verifies the whole file (CRCs, layout, limits); a bad plan exits 3.",
    .options = "      --json              print the plan as one JSON object (schema paro-plan/v1)\n"
               "      --verify            only check the file; print 'PLAN: ok' and exit 0, or\n"
               "                          exit 3 with the problem and its byte offset",
    .examples = "  paro dump model.paro\n"
                "  paro dump -v model.paro\n"
                "  paro dump --json model.paro | python3 -c 'import json,sys; "
                "print(json.load(sys.stdin)[\"heads\"][0])'",
};

enum { OPT_JSON = 256, OPT_VERIFY };

static double mean_over_buckets(const paro_plan *p, const double *arr, uint32_t l, uint32_t h)
{
    double s = 0.0;
    for (uint32_t b = 0; b < p->n_buckets; b++)
        s += arr[paro_plan_bucket_index(p, l, b, h)];
    return s / p->n_buckets;
}

static void print_text(const paro_plan *p, const char *path)
{
    printf("plan        %s (paro-plan %d.%d, %s, backend %s)\n", path, PARO_PLAN_MAJOR,
           PARO_PLAN_MINOR, p->tool, p->backend);
    printf("model       %s\n", p->model);
    printf("grid        %ux%ux%u + %u text tokens (%s) = %u tokens\n", p->grid[0], p->grid[1],
           p->grid[2], p->text_tokens, p->text_last ? "last" : "first", p->n_tokens);
    printf("heads       %u (head dim %u, scale %g)\n", p->heads, p->head_dim, p->scale);
    printf("blocks      %ux%u: %u x %u tiles per head\n", p->block_q, p->block_k, p->nq, p->nk);
    printf("target      %s %g, text tiles %s\n", paro_target_name(p->target_mode),
           p->target_value, p->keep_text ? "kept" : "not forced");
    printf("metric      alpha %g, sparse score at recall %g\n", p->alpha, p->score_recall);
    printf("buckets     %u", p->n_buckets);
    if (p->dense_until > 0)
        printf(", dense until progress %g", p->dense_until);
    printf("\nsamples     %zu (seed %llu)\n", p->n_samples, (unsigned long long)p->seed);
    printf("layers      %u of %u\n\n", p->n_layers, p->model_layers);

    printf("layer");
    for (uint32_t o = 0; o < p->n_orders; o++)
        printf(" %4s", p->orders[o].name);
    printf("  density  recall\n");
    unsigned *total = calloc(p->n_orders, sizeof *total);
    double all_density = 0.0, all_recall = 0.0;
    for (uint32_t l = 0; l < p->n_layers; l++) {
        printf("%5u", p->layers[l]);
        double density = 0.0, recall = 0.0;
        for (uint32_t o = 0; o < p->n_orders; o++) {
            unsigned count = 0;
            for (uint32_t h = 0; h < p->heads; h++)
                count += p->head_order[paro_plan_head_index(p, l, h)] == o;
            if (total)
                total[o] += count;
            if (count)
                printf(" %4u", count);
            else
                printf("    .");
        }
        for (uint32_t h = 0; h < p->heads; h++) {
            density += mean_over_buckets(p, p->density, l, h);
            recall += mean_over_buckets(p, p->recall, l, h);
        }
        all_density += density;
        all_recall += recall;
        printf("  %7.3f  %6.3f\n", density / p->heads, recall / p->heads);

        if (g_verbosity >= 3) {
            for (uint32_t h = 0; h < p->heads; h++) {
                uint8_t o = p->head_order[paro_plan_head_index(p, l, h)];
                const double *sc = paro_plan_scores_at(p, l, h, o);
                printf("        head %3u  %s  sparse %.4f quant %.3f combined %.4f  density",
                       h, p->orders[o].name, sc[PARO_SCORE_SPARSE], sc[PARO_SCORE_QUANT],
                       sc[PARO_SCORE_COMBINED]);
                for (uint32_t b = 0; b < p->n_buckets; b++)
                    printf(" %.3f", p->density[paro_plan_bucket_index(p, l, b, h)]);
                printf("  recall");
                for (uint32_t b = 0; b < p->n_buckets; b++)
                    printf(" %.3f", p->recall[paro_plan_bucket_index(p, l, b, h)]);
                printf("\n");
            }
        }
    }
    if (p->n_layers > 1 && total) {
        printf("  all");
        for (uint32_t o = 0; o < p->n_orders; o++)
            if (total[o])
                printf(" %4u", total[o]);
            else
                printf("    .");
        double heads = (double)p->n_layers * p->heads;
        printf("  %7.3f  %6.3f\n", all_density / heads, all_recall / heads);
    }
    free(total);
}

int cmd_dump(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"json", no_argument, NULL, OPT_JSON},
        {"verify", no_argument, NULL, OPT_VERIFY},
        {NULL, 0, NULL, 0},
    };
    int json = 0, verify = 0, opt;
    while ((opt = cli_getopt(argc, argv, "", longopts, "dump", &help)) != -1) {
        switch (opt) {
        case CLI_OPT_HANDLED: break;
        case CLI_OPT_HELP: cli_help_print(stdout, "dump", &help); return EXIT_OK;
        case OPT_JSON: json = 1; break;
        case OPT_VERIFY: verify = 1; break;
        default: return EXIT_USAGE;
        }
    }
    if (optind >= argc)
        return cli_usage_error("dump ", &help, "a plan file is required");
    if (optind + 1 < argc)
        return cli_usage_error("dump ", &help, "unexpected argument '%s'", argv[optind + 1]);
    if (json && verify)
        return cli_usage_error("dump ", &help, "--json and --verify exclude each other");
    const char *path = argv[optind];

    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_plan *plan = NULL;
    if (paro_plan_read(path, &plan, &ei))
        return cli_fail(&ei);
    int rc = EXIT_OK;
    if (verify) {
        printf("%s: ok\n", path);
    } else if (json) {
        char *text = paro_plan_to_json(plan);
        if (!text)
            rc = cli_error("out of memory");
        else
            fwrite(text, 1, strlen(text), stdout);
        free(text);
    } else {
        print_text(plan, path);
    }
    paro_plan_free(plan);
    return rc;
}
