/* paro — entry point: global options, the table of subcommands, and the
 * check of stdout at exit (git's run_builtin). */
#include <errno.h>    /* errno, EPIPE */
#include <signal.h>   /* signal, SIGXFSZ */
#include <stdio.h>    /* fflush, ferror, fclose */
#include <string.h>   /* strcmp, strerror, strspn */
#include <sys/stat.h> /* fstat */
#include <unistd.h>   /* STDOUT_FILENO */

#include "cli.h"

struct cmd {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
};

static const struct cmd commands[] = {
    {"calibrate", cmd_calibrate, "choose an order per head and build block masks from a capture"},
    {"dump", cmd_dump, "show a plan as text, JSON or a picture"},
    {"eval", cmd_eval, "measure a plan's recall and output error on held-out samples"},
    {"export", cmd_export, "write a plan as arrays for runtimes (npz, safetensors, JSON)"},
    {"inspect", cmd_inspect, "check a capture's files against its manifest, with value statistics"},
    {"merge", cmd_merge, "combine plans calibrated on disjoint layers into one"},
    {"synth", cmd_synth, "write a synthetic capture with planted axis-local heads"},
    {"version", cmd_version, "show the version, plan format and build features"},
};
#define N_COMMANDS (sizeof commands / sizeof *commands)

static void main_usage(FILE *f)
{
    fputs("usage: paro [-q | -v] [--progress | --no-progress] <command> [<args>]\n"
          "\n"
          "paro calibrates sparse and quantized attention for diffusion transformers:\n"
          "from captured Q/K it picks a token order per attention head and writes\n"
          "block masks to a plan file that runtimes load.\n"
          "\n"
          "commands:\n",
          f);
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].summary);
    fputs("\n"
          "global options:\n"
          "  -q, --quiet        less output (-qq: not even errors)\n"
          "  -v, --verbose      more output (repeatable)\n"
          "      --progress     show progress even when stderr is not a terminal\n"
          "      --no-progress  never show progress\n"
          "  -h, --help         this help\n"
          "      --version      same as 'paro version'\n"
          "\n"
          "exit status: 0 ok, 1 runtime or i/o failure, 2 usage error, 3 invalid input,\n"
          "4 cuda requested but not available\n"
          "\n"
          "Run 'paro <command> --help' for the options of a command.\n",
          f);
}

/* git's rule: a command that succeeded must not exit 0 if its output could
 * not be written (a full disk, a closed pipe).  Nothing to check when stdout
 * is already closed. */
static int check_stdout(int rc)
{
    struct stat st;
    if (fstat(STDOUT_FILENO, &st) != 0)
        return rc;
    int failed = fflush(stdout) != 0 || ferror(stdout);
    int err = errno;
    if (fclose(stdout) != 0 && !failed) {
        failed = 1;
        err = errno;
    }
    if (failed && rc == EXIT_OK) {
        /* A reader that went away (EPIPE on a pipe) is not our failure to
         * report at length, but it is still not a success. */
        cli_error("writing output failed: %s", strerror(err));
        return EXIT_RUNTIME;
    }
    return rc;
}

int main(int argc, char **argv)
{
    /* A write past RLIMIT_FSIZE should fail with EFBIG and a message, not
     * kill the process before it can clean up. */
    signal(SIGXFSZ, SIG_IGN);
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            main_usage(stdout);
            return check_stdout(EXIT_OK);
        } else if (!strcmp(a, "--version")) {
            char *args[] = {(char *)"version", NULL};
            return check_stdout(cmd_version(1, args));
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            g_verbosity--;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            g_verbosity++;
        } else if (a[1] != '-' && strspn(a + 1, "qv") == strlen(a + 1)) {
            for (const char *c = a + 1; *c; c++)
                g_verbosity += *c == 'v' ? 1 : -1;
        } else if (!strcmp(a, "--progress")) {
            g_progress = 1;
        } else if (!strcmp(a, "--no-progress")) {
            g_progress = 0;
        } else {
            return cli_usage_error("", NULL, "unknown option '%s'", a);
        }
    }
    if (i >= argc) {
        main_usage(stderr);
        return EXIT_USAGE;
    }
    const char *name = argv[i];
    if (!strcmp(name, "help")) {
        /* 'paro help CMD' is 'paro CMD --help'. */
        if (i + 1 < argc) {
            for (size_t c = 0; c < N_COMMANDS; c++)
                if (!strcmp(argv[i + 1], commands[c].name)) {
                    char *args[] = {(char *)commands[c].name, (char *)"--help", NULL};
                    return check_stdout(commands[c].fn(2, args));
                }
            return cli_usage_error("", NULL, "unknown command '%s'", argv[i + 1]);
        }
        main_usage(stdout);
        return check_stdout(EXIT_OK);
    }
    for (size_t c = 0; c < N_COMMANDS; c++)
        if (!strcmp(name, commands[c].name))
            return check_stdout(commands[c].fn(argc - i, argv + i));
    return cli_usage_error("", NULL, "unknown command '%s'", name);
}
