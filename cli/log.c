/* paro — messages, verbosity and the progress bar (stderr only). */
#include <stdarg.h> /* va_list */
#include <stdio.h>  /* fprintf, vfprintf */
#include <string.h> /* strlen */
#include <time.h>   /* clock_gettime */
#include <unistd.h> /* isatty */

#include "cli.h"

int g_verbosity = 2;
int g_progress = -1;

#define REDRAW_SECONDS (1.0 / 6.0) /* as zstd: at most six redraws a second */
#define LOG_LINE_SECONDS 5.0       /* forced progress into a log: a line per 5 s */

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void cli_log(int level, const char *fmt, ...)
{
    if (g_verbosity < level)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

int cli_error(const char *fmt, ...)
{
    if (g_verbosity >= 1) {
        va_list ap;
        va_start(ap, fmt);
        fputs("paro: error: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
    return EXIT_RUNTIME;
}

void cli_warn(const char *fmt, ...)
{
    if (g_verbosity < 2)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("paro: warning: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cli_exit_code(paro_err code)
{
    switch (code) {
    case PARO_OK: return EXIT_OK;
    case PARO_ERR_USAGE: return EXIT_USAGE;
    case PARO_ERR_FORMAT:
    case PARO_ERR_LIMIT: return EXIT_INPUT;
    case PARO_ERR_NO_CUDA: return EXIT_NO_CUDA;
    case PARO_ERR_INTERRUPTED: return EXIT_SIGINT;
    default: return EXIT_RUNTIME;
    }
}

int cli_fail(const paro_errinfo *ei)
{
    char buf[1200];
    cli_error("%s", paro_errinfo_format(ei, buf, sizeof buf));
    return cli_exit_code(ei->code);
}

/* ---- progress ---------------------------------------------------------- */

void cli_progress_start(cli_progress *p, const char *label, uint64_t total)
{
    memset(p, 0, sizeof *p);
    p->label = label;
    p->total = total;
    p->start = cli_now();
    p->tty = isatty(STDERR_FILENO);
    if (g_progress == 1)
        p->enabled = g_verbosity >= 1;
    else if (g_progress == 0)
        p->enabled = 0;
    else
        p->enabled = g_verbosity >= 2 && isatty(STDERR_FILENO);
}

static void format_duration(double s, char *buf, size_t n)
{
    if (s < 0 || s > 360000)
        snprintf(buf, n, "--");
    else if (s >= 3600)
        snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
    else if (s >= 60)
        snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else
        snprintf(buf, n, "%.0fs", s);
}

void cli_progress_update(cli_progress *p, uint64_t done, const char *detail)
{
    if (!p->enabled)
        return;
    double now = cli_now();
    double every = p->tty ? REDRAW_SECONDS : LOG_LINE_SECONDS;
    if (done < p->total && p->drawn && now - p->last_draw < every)
        return;
    p->last_draw = now;
    p->drawn = 1;
    enum { WIDTH = 24 };
    char bar[WIDTH + 1];
    double frac = p->total ? (double)done / (double)p->total : 1.0;
    int fill = (int)(frac * WIDTH);
    for (int i = 0; i < WIDTH; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[WIDTH] = 0;
    char eta[16] = "--";
    double elapsed = now - p->start;
    if (done > 0 && done < p->total)
        format_duration(elapsed * (double)(p->total - done) / (double)done, eta, sizeof eta);
    else if (done >= p->total)
        format_duration(elapsed, eta, sizeof eta);
    /* On a terminal, redraw in place (\r, clear to end of line); into a
     * file or pipe (--progress in CI), whole lines.  Never on stdout. */
    fprintf(stderr, "%s%s [%s] %3.0f%% %s %s%s%s", p->tty ? "\r" : "", p->label, bar,
            frac * 100.0, detail ? detail : "", done < p->total ? "eta " : "in ", eta,
            p->tty ? "\033[K" : "\n");
    fflush(stderr);
}

void cli_progress_end(cli_progress *p)
{
    if (p->enabled && p->drawn && p->tty) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
    }
    p->drawn = 0;
}
