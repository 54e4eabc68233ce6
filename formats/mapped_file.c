/* paro — mapping a whole file read-only (formats/mapped_file.h). */
#include "mapped_file.h"

#include <errno.h>    /* errno */
#include <fcntl.h>    /* open, O_NONBLOCK */
#include <stdint.h>   /* SIZE_MAX */
#include <string.h>   /* strerror */
#include <sys/mman.h> /* mmap, munmap */
#include <sys/stat.h> /* fstat */
#include <unistd.h>   /* close */

paro_err paro_map_file(const char *path, const char *what, paro_mapped_file *out,
                       paro_errinfo *ei)
{
    out->data = NULL;
    out->size = 0;
    /* O_NONBLOCK: a FIFO in a file's place must not hang the open (it is
     * refused below); on a regular file the flag changes nothing. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return paro_error(ei, PARO_ERR_IO, path, PARO_NO_OFFSET, "cannot open: %s",
                          strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return paro_error(ei, PARO_ERR_IO, path, PARO_NO_OFFSET, "cannot stat: %s",
                          strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return paro_error(ei, PARO_ERR_IO, path, PARO_NO_OFFSET, "%s, not %s",
                          S_ISDIR(st.st_mode) ? "is a folder" : "is not a regular file", what);
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        close(fd);
        return paro_error(ei, PARO_ERR_LIMIT, path, PARO_NO_OFFSET,
                          "file is %llu bytes, too large to map on this machine",
                          (unsigned long long)st.st_size);
    }
    out->size = (uint64_t)st.st_size;
    if (out->size == 0) { /* mmap refuses empty mappings; callers see 0 bytes */
        close(fd);
        return PARO_OK;
    }
    void *map = mmap(NULL, (size_t)out->size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);
    if (map == MAP_FAILED) {
        out->size = 0;
        return paro_error(ei, PARO_ERR_IO, path, PARO_NO_OFFSET, "cannot map %llu bytes: %s",
                          (unsigned long long)st.st_size, strerror(map_errno));
    }
    out->data = map;
    return PARO_OK;
}

void paro_unmap_file(paro_mapped_file *f)
{
    if (f->data)
        munmap((void *)f->data, (size_t)f->size);
    f->data = NULL;
    f->size = 0;
}
