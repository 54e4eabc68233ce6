/* paro — option parsing shared by the subcommands, and help printing. */
#include <errno.h>  /* errno, ERANGE */
#include <limits.h> /* INT_MAX */
#include <math.h>   /* isfinite */
#include <stdarg.h> /* va_list */
#include <stdlib.h> /* strtoull, strtod, malloc, qsort */
#include <string.h> /* strchr, strlen, memcpy */
#include <unistd.h> /* sysconf */

#include "cli.h"

#define MAX_LONGOPTS 64

void cli_help_print(FILE *f, const char *name, const cli_help *h)
{
    fprintf(f, "usage: %s\n\n%s\n", h->usage, h->summary);
    if (h->options && *h->options)
        fprintf(f, "\noptions:\n%s\n", h->options);
    fputs("  -q, --quiet             less output (-qq: not even errors)\n"
          "  -v, --verbose           more output (repeatable)\n"
          "      --progress          show progress even when stderr is not a terminal\n"
          "      --no-progress       never show progress\n"
          "  -h, --help              this help\n",
          f);
    if (h->examples && *h->examples)
        fprintf(f, "\nexamples:\n%s\n", h->examples);
    fprintf(f, "\nexit status: 0 ok, 1 runtime or i/o failure, 2 usage error, "
               "3 invalid input, 4 cuda unavailable\n");
    (void)name;
}

int cli_usage_error(const char *name, const cli_help *h, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cli_error("%s", msg);
    if (g_verbosity >= 1) {
        if (h)
            fprintf(stderr, "usage: %s\n", h->usage);
        fprintf(stderr, "try 'paro %s--help' for more information\n",
                name && *name ? name : "");
    }
    return EXIT_USAGE;
}

/* The -h/-q/-v/--progress/--no-progress/--help options are appended to every
 * subcommand's table. */
static const struct option common_longopts[] = {
    {"quiet", no_argument, NULL, 'q'},
    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},
    {"progress", no_argument, NULL, OPT_PROGRESS},
    {"no-progress", no_argument, NULL, OPT_NO_PROGRESS},
};

int cli_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts,
               const char *name, const cli_help *help)
{
    static struct option merged[MAX_LONGOPTS];
    static char shorts[128];
    static const struct option *merged_for;
    if (merged_for != longopts) {
        /* Build the merged tables once per command. */
        size_t n = 0;
        while (longopts[n].name && n < MAX_LONGOPTS - 6) {
            merged[n] = longopts[n];
            n++;
        }
        for (size_t i = 0; i < sizeof common_longopts / sizeof *common_longopts; i++)
            merged[n++] = common_longopts[i];
        memset(&merged[n], 0, sizeof merged[n]);
        /* Leading ':' so a missing argument is told apart from an unknown option;
         * '+' so options stop at the first operand only when POSIXLY_CORRECT. */
        snprintf(shorts, sizeof shorts, ":%sqvh", shortopts);
        merged_for = longopts;
        optind = 0; /* GNU: re-initialise the scan */
    }
    opterr = 0;
    int prev = optind ? optind : 1;
    int c = getopt_long(argc, argv, shorts, merged, NULL);
    char sub[64];
    snprintf(sub, sizeof sub, "%s ", name);
    switch (c) {
    case 'q':
        g_verbosity--;
        return CLI_OPT_HANDLED;
    case 'v':
        g_verbosity++;
        return CLI_OPT_HANDLED;
    case OPT_PROGRESS:
        g_progress = 1;
        return CLI_OPT_HANDLED;
    case OPT_NO_PROGRESS:
        g_progress = 0;
        return CLI_OPT_HANDLED;
    case 'h':
        return CLI_OPT_HELP;
    case ':':
        if (optopt && optopt < 128)
            cli_usage_error(sub, help, "option '-%c' needs a value", optopt);
        else
            cli_usage_error(sub, help, "option '%s' needs a value", argv[optind - 1]);
        return '?';
    case '?':
        if (optopt && optopt < 128)
            cli_usage_error(sub, help, "unknown option '-%c'", optopt);
        else
            cli_usage_error(sub, help, "unknown option '%s'",
                            argv[prev < argc ? prev : argc - 1]);
        return '?';
    default:
        return c;
    }
}

static int bad_value(const char *opt, const char *s, const char *what)
{
    cli_error("%s: invalid value '%s': %s", opt, s, what);
    return EXIT_USAGE;
}

int cli_parse_u64(const char *opt, const char *s, uint64_t max, uint64_t *out)
{
    if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
        return bad_value(opt, s ? s : "", "expected a non-negative integer");
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || errno == ERANGE)
        return bad_value(opt, s, "expected a non-negative integer");
    if (v > max) {
        char why[64];
        snprintf(why, sizeof why, "at most %llu", (unsigned long long)max);
        return bad_value(opt, s, why);
    }
    *out = v;
    return 0;
}

int cli_parse_u32(const char *opt, const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
    uint64_t v;
    if (cli_parse_u64(opt, s, UINT64_MAX, &v))
        return EXIT_USAGE;
    if (v < min || v > max) {
        char why[64];
        snprintf(why, sizeof why, "must be in [%u, %u]", min, max);
        return bad_value(opt, s, why);
    }
    *out = (uint32_t)v;
    return 0;
}

int cli_parse_double(const char *opt, const char *s, double min, double max, double *out)
{
    if (!s || !*s)
        return bad_value(opt, "", "expected a number");
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (*end || errno == ERANGE || !isfinite(v))
        return bad_value(opt, s, "expected a number");
    if (v < min || v > max) {
        char why[64];
        snprintf(why, sizeof why, "must be in [%g, %g]", min, max);
        return bad_value(opt, s, why);
    }
    *out = v;
    return 0;
}

int cli_parse_size(const char *opt, const char *s, uint64_t *out)
{
    if (!s || !*s)
        return bad_value(opt, "", "expected a size such as 16G");
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    double unit = 1.0;
    switch (*end) {
    case 'K': case 'k': unit = 1024.0; end++; break;
    case 'M': case 'm': unit = 1024.0 * 1024.0; end++; break;
    case 'G': case 'g': unit = 1024.0 * 1024.0 * 1024.0; end++; break;
    case 'T': case 't': unit = 1024.0 * 1024.0 * 1024.0 * 1024.0; end++; break;
    default: break;
    }
    if (*end == 'B' || *end == 'b')
        end++;
    if (*end || errno == ERANGE || !isfinite(v) || v <= 0 || v * unit >= 1.8e19)
        return bad_value(opt, s, "expected a size such as 512M, 16G or 1.5T");
    *out = (uint64_t)(v * unit);
    return 0;
}

/* Splits "AxB[xC]" into up to `want` positive integers. */
static int parse_dims(const char *opt, const char *s, uint32_t *out, int want, int allow_fewer,
                      int *got)
{
    char buf[96];
    if (strlen(s) >= sizeof buf)
        return bad_value(opt, s, "too long");
    memcpy(buf, s, strlen(s) + 1);
    int n = 0;
    char *part = buf;
    for (;;) {
        char *x = strchr(part, 'x');
        if (x)
            *x = 0;
        if (n == want)
            return bad_value(opt, s, want == 3 ? "expected FxHxW" : "expected B or BQxBK");
        uint64_t v;
        if (!*part || cli_parse_u64(opt, part, UINT32_MAX, &v))
            return EXIT_USAGE;
        if (v == 0)
            return bad_value(opt, s, "sizes must be >= 1");
        out[n++] = (uint32_t)v;
        if (!x)
            break;
        part = x + 1;
    }
    if (n != want && !allow_fewer)
        return bad_value(opt, s, want == 3 ? "expected FxHxW" : "expected B or BQxBK");
    *got = n;
    return 0;
}

int cli_parse_grid(const char *opt, const char *s, uint32_t out[3])
{
    int got;
    return parse_dims(opt, s, out, 3, 0, &got);
}

int cli_parse_block(const char *opt, const char *s, uint32_t *bq, uint32_t *bk)
{
    uint32_t v[2];
    int got;
    if (parse_dims(opt, s, v, 2, 1, &got))
        return EXIT_USAGE;
    *bq = v[0];
    *bk = got == 2 ? v[1] : v[0];
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

int cli_each_item(const char *opt, const char *s, int (*item_fn)(char *item, void *user),
                  void *user)
{
    const size_t bytes = strlen(s) + 1;
    char *copy = malloc(bytes);
    if (!copy)
        return cli_error("out of memory");
    memcpy(copy, s, bytes);
    int rc = 0;
    for (char *item = copy; item && !rc;) {
        char *comma = strchr(item, ',');
        if (comma)
            *comma = 0;
        rc = *item ? item_fn(item, user)
                   : bad_value(opt, s, "an empty item (two commas, or a comma at an end)");
        item = comma ? comma + 1 : NULL;
    }
    free(copy);
    return rc;
}

/* cli_parse_list's state between its items. */
typedef struct list_items {
    const char *opt;
    uint32_t limit;
    uint32_t *v;
    size_t len, cap;
} list_items;

int cli_parse_range(const char *opt, char *item, uint32_t limit, uint32_t *lo, uint32_t *hi)
{
    char *dash = strchr(item, '-');
    uint64_t a, b;
    int rc;
    if (dash && (dash == item || !dash[1]))
        return bad_value(opt, item, "a range needs both ends (A-B)");
    if (dash) {
        *dash = 0;
        rc = cli_parse_u64(opt, item, UINT32_MAX, &a) || cli_parse_u64(opt, dash + 1, UINT32_MAX, &b);
        *dash = '-'; /* the whole item again, for the messages below */
        if (!rc && b < a)
            rc = bad_value(opt, item, "a range must run upwards (A-B with A <= B)");
    } else {
        rc = cli_parse_u64(opt, item, UINT32_MAX, &a);
        b = a;
    }
    if (!rc && b >= limit) {
        char why[80];
        snprintf(why, sizeof why, "%llu is out of range: there are %u (0..%u)",
                 (unsigned long long)b, limit, limit ? limit - 1 : 0);
        rc = bad_value(opt, item, why);
    }
    if (!rc) {
        *lo = (uint32_t)a;
        *hi = (uint32_t)b;
    }
    return rc;
}

/* One item of a list: "N" or "A-B". */
static int list_item(char *item, void *user)
{
    list_items *l = user;
    uint32_t lo, hi;
    int rc = cli_parse_range(l->opt, item, l->limit, &lo, &hi);
    for (uint64_t x = lo; !rc && x <= hi; x++) {
        if (l->len == l->cap) {
            uint32_t *grown = realloc(l->v, 2 * l->cap * sizeof *grown);
            if (!grown)
                return cli_error("out of memory");
            l->v = grown;
            l->cap *= 2;
        }
        l->v[l->len++] = (uint32_t)x;
    }
    return rc;
}

int cli_parse_list(const char *opt, const char *s, uint32_t limit, uint32_t **out, uint32_t *n)
{
    list_items l = {opt, limit, malloc(16 * sizeof *l.v), 0, 16};
    if (!l.v)
        return cli_error("out of memory");
    if (cli_each_item(opt, s, list_item, &l)) {
        free(l.v);
        return EXIT_USAGE;
    }
    uint32_t *v = l.v;
    const size_t len = l.len;
    qsort(v, len, sizeof *v, cmp_u32);
    size_t w = 0;
    for (size_t i = 0; i < len; i++)
        if (w == 0 || v[i] != v[w - 1])
            v[w++] = v[i];
    *out = v;
    *n = (uint32_t)w;
    return 0;
}

int cli_cores(void)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    return cores > 0 && cores < INT_MAX ? (int)cores : 1;
}

int cli_parse_threads(const char *s, int *threads)
{
    uint32_t n;
    if (cli_parse_u32("--threads", s, 1, 1024, &n))
        return EXIT_USAGE;
    *threads = (int)n;
    return 0;
}
