/* paro — atomic file replacement (temp file + fsync + rename). */
#include "atomic_file.h"

#include <errno.h>    /* errno */
#include <fcntl.h>    /* open, O_RDONLY */
#include <stdio.h>    /* rename, snprintf */
#include <stdlib.h>   /* malloc, free, mkstemp */
#include <string.h>   /* strdup, strlen, strerror, strrchr, memcpy */
#include <sys/stat.h> /* stat, S_ISREG, S_ISDIR, fchmod */
#include <unistd.h>   /* write, fsync, close, unlink */

paro_err paro_atomic_open(paro_atomic_file *af, const char *path, paro_errinfo *ei)
{
    af->fd = -1;
    af->path = af->tmp_path = NULL;
    /* The rename would replace a device or a FIFO (-o /dev/null run as root
     * would leave a plain file in its place) and fails on a folder. */
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return paro_error(ei, PARO_ERR_IO, path, PARO_NO_OFFSET, "%s, not a file to replace",
                          S_ISDIR(st.st_mode) ? "is a folder" : "is not a regular file");
    af->path = strdup(path);
    size_t n = strlen(path) + sizeof ".tmp.XXXXXX";
    af->tmp_path = malloc(n);
    if (!af->path || !af->tmp_path) {
        free(af->path);
        free(af->tmp_path);
        af->path = af->tmp_path = NULL;
        return paro_error(ei, PARO_ERR_NOMEM, path, PARO_NO_OFFSET, "out of memory");
    }
    snprintf(af->tmp_path, n, "%s.tmp.XXXXXX", path);
    af->fd = mkstemp(af->tmp_path);
    if (af->fd < 0) {
        int e = errno;
        free(af->path);
        free(af->tmp_path);
        af->path = af->tmp_path = NULL;
        return paro_error(ei, PARO_ERR_IO, path, PARO_NO_OFFSET,
                          "cannot create a temporary file beside it: %s", strerror(e));
    }
    /* mkstemp makes the file 0600; a plan is an ordinary output file, so
     * give it the permissions a plain creat() would (0666 & ~umask). */
    mode_t mask = umask(0);
    umask(mask);
    (void)fchmod(af->fd, 0666 & ~mask);
    return PARO_OK;
}

paro_err paro_atomic_write(paro_atomic_file *af, const void *buf, size_t n,
                           paro_errinfo *ei)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(af->fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = w < 0 ? errno : ENOSPC;
            return paro_error(ei, PARO_ERR_IO, af->path, PARO_NO_OFFSET,
                              "cannot write: %s", strerror(e));
        }
        p += w;
        n -= (size_t)w;
    }
    return PARO_OK;
}

static void fsync_parent(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir;
    if (!slash)
        dir = strdup(".");
    else if (slash == path)
        dir = strdup("/");
    else {
        dir = malloc((size_t)(slash - path) + 1);
        if (dir) {
            memcpy(dir, path, (size_t)(slash - path));
            dir[slash - path] = 0;
        }
    }
    if (!dir)
        return;
    int fd = open(dir, O_RDONLY);
    if (fd >= 0) {
        (void)fsync(fd); /* best effort: some filesystems refuse it on folders */
        close(fd);
    }
    free(dir);
}

paro_err paro_atomic_commit(paro_atomic_file *af, paro_errinfo *ei)
{
    paro_err rc = PARO_OK;
    if (fsync(af->fd) != 0)
        rc = paro_error(ei, PARO_ERR_IO, af->path, PARO_NO_OFFSET, "cannot sync: %s",
                        strerror(errno));
    if (close(af->fd) != 0 && rc == PARO_OK)
        rc = paro_error(ei, PARO_ERR_IO, af->path, PARO_NO_OFFSET, "cannot close: %s",
                        strerror(errno));
    af->fd = -1;
    if (rc == PARO_OK && rename(af->tmp_path, af->path) != 0)
        rc = paro_error(ei, PARO_ERR_IO, af->path, PARO_NO_OFFSET, "cannot rename %s: %s",
                        af->tmp_path, strerror(errno));
    if (rc != PARO_OK)
        unlink(af->tmp_path);
    else
        fsync_parent(af->path);
    free(af->path);
    free(af->tmp_path);
    af->path = af->tmp_path = NULL;
    return rc;
}

void paro_atomic_abort(paro_atomic_file *af)
{
    if (af->fd >= 0)
        close(af->fd);
    af->fd = -1;
    if (af->tmp_path)
        unlink(af->tmp_path);
    free(af->path);
    free(af->tmp_path);
    af->path = af->tmp_path = NULL;
}

paro_err paro_atomic_write_file(const char *path, const void *buf, size_t n,
                                paro_errinfo *ei)
{
    paro_atomic_file af;
    paro_err rc = paro_atomic_open(&af, path, ei);
    if (rc)
        return rc;
    rc = paro_atomic_write(&af, buf, n, ei);
    if (rc) {
        paro_atomic_abort(&af);
        return rc;
    }
    return paro_atomic_commit(&af, ei);
}
