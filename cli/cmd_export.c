/* paro export — a plan's orders, masks and permutations as arrays for
 * runtimes (.npz, .safetensors or JSON), or as the two .pth files of the
 * PAROAttention runtime (written by formats/python/paro_paroattn.py, since
 * .pth needs torch and paro itself never needs Python). */
#include <errno.h>     /* errno, EINTR */
#include <fcntl.h>     /* O_WRONLY */
#include <limits.h>    /* PATH_MAX */
#include <signal.h>    /* SIGINT, SIGTERM */
#include <spawn.h>     /* posix_spawn, posix_spawn_file_actions_* */
#include <stdio.h>     /* printf, snprintf */
#include <stdlib.h>    /* getenv, realpath, free */
#include <string.h>    /* strcmp, strrchr, strerror */
#include <sys/stat.h>  /* stat */
#include <sys/wait.h>  /* waitpid, WIFEXITED, WEXITSTATUS, WIFSIGNALED, WTERMSIG */
#include <unistd.h>    /* readlink, access, STDOUT_FILENO, STDERR_FILENO */

#include "cli.h"
#include "plan.h"        /* paro_plan_read, paro_plan_free */
#include "plan_export.h" /* paro_plan_export, paro_export_format_parse */

extern char **environ;

static const cli_help help = {
    .usage = "paro export PLAN --to npz|json|safetensors|paroattn -o FILE|DIR [options]",
    .summary =
        "Write a plan as arrays that runtimes load directly: layers, order_names and the\n"
        "order of each head (orders [layers, heads]), the permutation of every order\n"
        "(perms [orders, tokens]), and per timestep bucket the masks\n"
        "(masks [buckets, layers, heads, nq, nk]), FlexAttention's block-sparse inputs\n"
        "(kv_num_blocks [buckets, layers, heads, nq], kv_indices [..., nq, nk], kept\n"
        "key blocks ascending, padded with 0) and density and recall\n"
        "([buckets, layers, heads]).  The same names in all three formats; the file is\n"
        "written atomically.\n"
        "\n"
        "--to paroattn writes into the folder DIR the permute_plan.pth and\n"
        "sparse_plan.pth that the PAROAttention runtime loads, by running\n"
        "formats/python/paro_paroattn.py with Python and torch ($PARO_PYTHON, else\n"
        "python3 on PATH).  That runtime needs 64x64 blocks, text first, and as many\n"
        "text blocks as its loader pads (--text-blocks); other plans exit 2.  Calibrate\n"
        "with --keep-last so that eval reports what it computes.",
    .options = "      --to FORMAT         npz | json | safetensors | paroattn [default: from\n"
               "                          the FILE's extension]\n"
               "  -o, --output FILE|DIR   where to write (a file, or for paroattn a folder;\n"
               "                          not stdout)\n"
               "      --compress          npz: deflate the arrays (numpy.savez_compressed)\n"
               "      --text-blocks N     paroattn: the leading text blocks the target loader\n"
               "                          pads [default: 4, as for CogVideoX]",
    .examples = "  paro export model.paro -o model.npz\n"
                "  paro export model.paro --to safetensors -o model.safetensors\n"
                "  python3 -c 'import numpy; print(numpy.load(\"model.npz\")[\"masks\"].shape)'\n"
                "  PARO_PYTHON=/usr/bin/python3 paro export model.paro --to paroattn -o plans/",
};

enum { OPT_TO = 256, OPT_COMPRESS, OPT_TEXT_BLOCKS };

#define PAROATTN_SCRIPT "paro_paroattn.py"

/* The format named by path's extension, 0 when it names none. */
static paro_export_format format_of_path(const char *path)
{
    const char *dot = strrchr(path, '.');
    return dot ? paro_export_format_parse(dot + 1) : (paro_export_format)0;
}

/* PAROATTN_SCRIPT beside this executable: in the source tree (build/paro,
 * or the copy ./paro at its top) or where `make install` puts it
 * (PREFIX/bin/paro -> PREFIX/share/paro/); malloc'ed, NULL when none is
 * there (*exe_dir gets the folder looked from). */
static char *find_script(char *exe_dir, size_t size)
{
    static const char *const places[] = {"/../formats/python/", "/formats/python/",
                                         "/../share/paro/"};
    ssize_t n = readlink("/proc/self/exe", exe_dir, size - 1);
    if (n <= 0) {
        snprintf(exe_dir, size, "(unknown: /proc/self/exe is unreadable)");
        return NULL;
    }
    exe_dir[n] = '\0';
    char *slash = strrchr(exe_dir, '/');
    if (slash)
        *slash = '\0';
    char path[PATH_MAX + 64];
    for (size_t i = 0; i < sizeof places / sizeof *places; i++) {
        snprintf(path, sizeof path, "%s%s%s", exe_dir, places[i], PAROATTN_SCRIPT);
        if (access(path, R_OK) == 0)
            return realpath(path, NULL); /* without the "..": for messages */
    }
    return NULL;
}

/* Finds program as execvp would (a path as it is, a bare name in PATH) and
 * writes the file to run into full; 0, or an errno when there is none.
 * Looked up here, and spawned by path, because where posix_spawn is
 * emulated with fork (valgrind, some libcs) a missing program shows only
 * as the child's exit status 127. */
static int find_program(const char *program, char *full, size_t size)
{
    if (strchr(program, '/')) {
        snprintf(full, size, "%s", program);
        return access(program, X_OK) == 0 ? 0 : errno;
    }
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    for (const char *dir = path; dir;) {
        const char *end = strchr(dir, ':');
        size_t len = end ? (size_t)(end - dir) : strlen(dir);
        int n = snprintf(full, size, "%.*s%s%s", (int)len, dir, len ? "/" : "", program);
        struct stat st;
        if (n > 0 && (size_t)n < size && stat(full, &st) == 0 && S_ISREG(st.st_mode) &&
            access(full, X_OK) == 0)
            return 0;
        dir = end ? end + 1 : NULL;
    }
    return ENOENT;
}

/* Runs PYTHON -B SCRIPT PLAN -o DIR [--text-blocks N] and returns its exit
 * status: 0 written, 1 no torch or numpy or a write failed, 2 the plan does
 * not fit that runtime, 3 a bad plan (the script prints the one-line
 * reason).  The child's stdout goes to our stderr (stdout carries results
 * only; -q silences it), its stderr is ours. */
static int run_paroattn(const char *plan, const char *dir, const char *text_blocks)
{
    char exe_dir[PATH_MAX];
    char *script = find_script(exe_dir, sizeof exe_dir);
    if (!script)
        return cli_error("cannot find %s: looked in %s/../formats/python, %s/formats/python "
                         "and %s/../share/paro",
                         PAROATTN_SCRIPT, exe_dir, exe_dir, exe_dir);
    const char *python = getenv("PARO_PYTHON");
    if (!python || !*python)
        python = "python3";
    /* -B: no __pycache__ left in the source tree or an installed folder */
    char *args[] = {(char *)python, (char *)"-B", script, (char *)plan, (char *)"-o",
                    (char *)dir, text_blocks ? (char *)"--text-blocks" : NULL,
                    (char *)text_blocks, NULL};
    posix_spawn_file_actions_t fa;
    int rc = posix_spawn_file_actions_init(&fa);
    if (rc == 0)
        rc = g_verbosity >= 2
                 ? posix_spawn_file_actions_adddup2(&fa, STDERR_FILENO, STDOUT_FILENO)
                 : posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    pid_t pid = 0;
    char program[PATH_MAX];
    if (rc == 0)
        rc = find_program(python, program, sizeof program);
    if (rc == 0)
        rc = posix_spawn(&pid, program, &fa, NULL, args, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        cli_error("cannot run %s: %s; writing .pth files needs Python 3 with torch and numpy "
                  "(set PARO_PYTHON to such an interpreter)",
                  python, strerror(rc));
        free(script);
        return EXIT_RUNTIME;
    }
    cli_log(4, "paro: running %s -B %s %s -o %s%s%s\n", python, script, plan, dir,
            text_blocks ? " --text-blocks " : "", text_blocks ? text_blocks : "");
    int status = 0;
    pid_t w;
    while ((w = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
        ;
    if (w < 0) {
        rc = cli_error("waiting for %s %s: %s", python, PAROATTN_SCRIPT, strerror(errno));
    } else if (WIFEXITED(status)) {
        rc = WEXITSTATUS(status);
        /* 0..3 are the script's own codes, already explained on stderr;
         * anything else is a crash of the interpreter */
        if (rc > EXIT_INPUT)
            rc = cli_error("%s %s failed with exit status %d", python, PAROATTN_SCRIPT, rc);
    } else if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        cli_error("%s %s was killed by signal %d", python, PAROATTN_SCRIPT, sig);
        rc = sig == SIGINT ? EXIT_SIGINT : sig == SIGTERM ? EXIT_SIGTERM : EXIT_RUNTIME;
    } else {
        rc = cli_error("%s %s stopped unexpectedly", python, PAROATTN_SCRIPT);
    }
    free(script);
    return rc;
}

int cmd_export(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"to", required_argument, NULL, OPT_TO},
        {"output", required_argument, NULL, 'o'},
        {"compress", no_argument, NULL, OPT_COMPRESS},
        {"text-blocks", required_argument, NULL, OPT_TEXT_BLOCKS},
        {NULL, 0, NULL, 0},
    };
    const char *to = NULL, *out = NULL, *text_blocks = NULL;
    paro_export_options opt = {0, 0};
    int c;
    while ((c = cli_getopt(argc, argv, "o:", longopts, "export", &help)) != -1) {
        switch (c) {
        case CLI_OPT_HANDLED: break;
        case CLI_OPT_HELP: cli_help_print(stdout, "export", &help); return EXIT_OK;
        case OPT_TO: to = optarg; break;
        case 'o': out = optarg; break;
        case OPT_COMPRESS: opt.compress = 1; break;
        case OPT_TEXT_BLOCKS: {
            uint32_t n;
            if (cli_parse_u32("--text-blocks", optarg, 0, PARO_PLAN_MAX_BLOCKS, &n))
                return EXIT_USAGE;
            text_blocks = optarg;
            break;
        }
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
    const int paroattn = to && strcmp(to, "paroattn") == 0;
    paro_export_format format = paroattn ? (paro_export_format)0
                                : to     ? paro_export_format_parse(to)
                                         : format_of_path(out);
    if (!format && !paroattn)
        return to ? cli_usage_error("export ", &help,
                                    "--to %s: the formats are npz, json, safetensors and "
                                    "paroattn",
                                    to)
                  : cli_usage_error("export ", &help,
                                    "cannot tell the format from '%s'; give --to npz, json, "
                                    "safetensors or paroattn",
                                    out);
    if (opt.compress && format != PARO_EXPORT_NPZ)
        return cli_usage_error("export ", &help, "--compress applies to npz only");
    if (text_blocks && !paroattn)
        return cli_usage_error("export ", &help, "--text-blocks applies to paroattn only");
    const char *path = argv[optind];

    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    paro_plan *plan = NULL;
    /* the whole plan is verified here, as by every command, so that a bad
     * one gets paro's own message before any interpreter is started */
    if (paro_plan_read(path, &plan, &ei))
        return cli_fail(&ei);
    if (paroattn) {
        paro_plan_free(plan);
        return run_paroattn(path, out, text_blocks);
    }
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
