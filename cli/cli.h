/* paro — what the subcommands share: the command table entry, exit codes,
 * messages, verbosity, progress and option parsing helpers.
 *
 * Adding a subcommand, in three steps:
 *  1. write cli/cmd_NAME.c with `int cmd_NAME(int argc, char **argv)`; argv[0]
 *     is the subcommand's name; parse with cli_getopt so the common options
 *     (-q, -v, --progress, --no-progress, -h/--help) work everywhere;
 *  2. give it a `const cli_help` and print it with cli_help_print on --help;
 *  3. add a row to commands[] in cli/main.c and declare cmd_NAME below.
 * Only cli/ prints or exits; return an exit code from cmd_NAME.
 */
#ifndef PARO_CLI_H_57b3e0d1
#define PARO_CLI_H_57b3e0d1

#include <getopt.h> /* struct option */
#include <stdint.h> /* uint32_t, uint64_t */
#include <stdio.h>  /* FILE */

#include "error.h"        /* paro_err, paro_errinfo */
#include "plan_picture.h" /* paro_image */

/* Exit codes (DESIGN.md "CLI contract"). */
enum {
    EXIT_OK = 0,
    EXIT_RUNTIME = 1, /* runtime or I/O failure */
    EXIT_USAGE = 2,   /* bad command line */
    EXIT_INPUT = 3,   /* invalid or corrupt input */
    EXIT_NO_CUDA = 4, /* CUDA requested but not available */
    EXIT_SIGINT = 130, /* 128 + SIGINT: stopped by Ctrl-C */
    EXIT_SIGTERM = 143 /* 128 + SIGTERM */
};

/* Verbosity: 0 silent, 1 errors, 2 warnings and results (default),
 * 3 progress and info, 4 details, 5 debug. */
extern int g_verbosity;
/* Progress bar: -1 auto (stderr is a TTY and verbosity >= 2), 0 off, 1 on. */
extern int g_progress;

typedef struct cli_help {
    const char *usage;       /* "paro dump [options] PLAN" */
    const char *summary;     /* one sentence */
    const char *options;     /* aligned option lines, "\n"-separated */
    const char *examples;    /* lines of examples, may be NULL */
} cli_help;

void cli_help_print(FILE *f, const char *name, const cli_help *h);

/* Messages on stderr, by level. */
void cli_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "paro: error: ..." at level >= 1; returns EXIT_RUNTIME for convenience. */
int cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints a library error and returns the exit code it maps to. */
int cli_fail(const paro_errinfo *ei);
int cli_exit_code(paro_err code);
/* A usage error: the message, the usage line and a hint; returns EXIT_USAGE. */
int cli_usage_error(const char *name, const cli_help *h, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* --png: 1 when out is "-" and stdout is a terminal (the caller refuses it);
 * cli_write_png encodes img and writes it to out ("-": stdout), atomically,
 * returning an exit code. */
int cli_png_to_terminal(const char *out);
int cli_write_png(const paro_image *img, const char *out);

/* Option parsing: getopt_long with the common options added to `longopts`
 * (which must end with a zero entry) and to `shortopts`.  Returns the option
 * character like getopt_long, handles the common options itself (returning
 * CLI_OPT_HANDLED), CLI_OPT_HELP for -h/--help, '?' on an unknown option or
 * missing argument (message already printed).  Call with argv[0] being the
 * subcommand name. */
enum { CLI_OPT_HANDLED = 0x7f000001, CLI_OPT_HELP = 0x7f000002 };
int cli_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts,
               const char *name, const cli_help *help);
/* Long options 256+ are free for commands; below are the common ones. */
enum { OPT_PROGRESS = 200, OPT_NO_PROGRESS, OPT_COMMON_LAST };

/* Value parsers: 0 on success, otherwise print a usage error naming the
 * option and return EXIT_USAGE. */
int cli_parse_u32(const char *opt, const char *s, uint32_t min, uint32_t max, uint32_t *out);
int cli_parse_u64(const char *opt, const char *s, uint64_t max, uint64_t *out);
int cli_parse_double(const char *opt, const char *s, double min, double max, double *out);
/* "512M", "16G", "1.5T", or bytes; binary units (K = 1024). */
int cli_parse_size(const char *opt, const char *s, uint64_t *out);
/* "5x12x16" */
int cli_parse_grid(const char *opt, const char *s, uint32_t out[3]);
/* "64" or "128x64" (query x key) */
int cli_parse_block(const char *opt, const char *s, uint32_t *bq, uint32_t *bk);
/* Calls item_fn on each comma-separated item of s (a writable copy), in
 * order, until one returns nonzero: that value.  An empty item is refused
 * as a bad value of opt. */
int cli_each_item(const char *opt, const char *s, int (*item_fn)(char *item, void *user),
                  void *user);
/* One item of a list, "N" or "A-B" (A <= B), each below limit; item is
 * written to and restored. */
int cli_parse_range(const char *opt, char *item, uint32_t limit, uint32_t *lo, uint32_t *hi);
/* "0,2,5-7" into a sorted list of distinct values < limit; malloc'ed. */
int cli_parse_list(const char *opt, const char *s, uint32_t limit, uint32_t **out, uint32_t *n);

/* The cores online: the default of -j (at least 1). */
int cli_cores(void);
/* -j / --threads N, 1 <= N <= 1024, into *threads; nonzero after a message. */
int cli_parse_threads(const char *s, int *threads);

/* Progress bar on stderr (only when enabled: see g_progress). */
typedef struct cli_progress {
    int enabled;
    int tty;
    const char *label;
    uint64_t total;
    double start, last_draw;
    int drawn;
} cli_progress;
void cli_progress_start(cli_progress *p, const char *label, uint64_t total);
void cli_progress_update(cli_progress *p, uint64_t done, const char *detail);
void cli_progress_end(cli_progress *p);

double cli_now(void); /* monotonic seconds */

/* Subcommands. */
int cmd_calibrate(int argc, char **argv);
int cmd_dump(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_version(int argc, char **argv);

#endif
