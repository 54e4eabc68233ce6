/* Writing a picture for --png options: one place that encodes, refuses a
 * terminal, and writes atomically (or to stdout for "-"). */
#include <stdio.h>  /* fwrite, stdout */
#include <stdlib.h> /* free */
#include <string.h> /* strcmp */
#include <unistd.h> /* isatty, STDOUT_FILENO */

#include "atomic_file.h" /* paro_atomic_write_file */
#include "cli.h"
#include "png.h"         /* paro_png_encode */

int cli_png_to_terminal(const char *out)
{
    return strcmp(out, "-") == 0 && isatty(STDOUT_FILENO);
}

int cli_write_png(const paro_image *img, const char *out)
{
    paro_errinfo ei;
    paro_errinfo_clear(&ei);
    uint8_t *png = NULL;
    size_t len = 0;
    int rc = EXIT_OK;
    if (paro_png_encode(img->rgb, img->width, img->height, &png, &len, &ei)) {
        rc = cli_fail(&ei);
    } else if (strcmp(out, "-") == 0) {
        if (fwrite(png, 1, len, stdout) != len)
            rc = cli_error("writing the picture to stdout failed");
    } else if (paro_atomic_write_file(out, png, len, &ei)) {
        rc = cli_fail(&ei);
    } else {
        cli_log(3, "paro: wrote %s (%u x %u pixels, %zu bytes)\n", out, img->width, img->height,
                len);
    }
    free(png);
    return rc;
}
