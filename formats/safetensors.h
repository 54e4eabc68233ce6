/* paro — strict safetensors reader (mmap) and a small writer.
 *
 * The reader follows the reference implementation's rules and adds the ones
 * it leaves out (formats/CAPTURE.md lists them all): 8-byte little-endian
 * header size, header at most PARO_ST_MAX_HEADER bytes and inside the file,
 * valid UTF-8 JSON object, no duplicate or case-variant keys, dtype known,
 * shape entries non-negative integers, data_offsets contiguous from 0 in
 * offset order with no gaps, overlaps or trailing bytes, and
 * shape x dtype size == END - BEGIN, all with checked arithmetic.
 * Only F32, F16 and BF16 tensors can be read as data; tensors of other dtypes
 * are listed (dtype PARO_DTYPE_INVALID, dtype_name set) but cannot be loaded.
 */
#ifndef PARO_SAFETENSORS_H_2b7e91d4
#define PARO_SAFETENSORS_H_2b7e91d4

#include <stddef.h> /* size_t */
#include <stdint.h> /* uint64_t */

#include "dtype.h" /* paro_dtype */
#include "error.h" /* paro_err, paro_errinfo */

#ifdef __cplusplus
extern "C" {
#endif

#define PARO_ST_MAX_HEADER (100u * 1000u * 1000u) /* bytes, as safetensors */
#define PARO_ST_MAX_DIMS 8
#define PARO_ST_MAX_TENSORS 1000000u

typedef struct paro_st_tensor {
    char *name;
    paro_dtype dtype;      /* PARO_DTYPE_INVALID for dtypes we do not load */
    char dtype_name[12];   /* as written in the file, e.g. "BF16" */
    uint32_t ndim;
    uint64_t shape[PARO_ST_MAX_DIMS];
    uint64_t data_offset;  /* absolute byte offset in the file */
    uint64_t nbytes;
} paro_st_tensor;

typedef struct paro_st_file paro_st_file;

/* Opens and validates path; on success *out owns an mmap of the file. */
paro_err paro_st_open(const char *path, paro_st_file **out, paro_errinfo *ei);
void paro_st_close(paro_st_file *f);

size_t paro_st_count(const paro_st_file *f);
const paro_st_tensor *paro_st_get(const paro_st_file *f, size_t i);
/* Exact (case-sensitive) lookup; NULL when absent. */
const paro_st_tensor *paro_st_find(const paro_st_file *f, const char *name);
/* Pointer to the tensor's bytes inside the mapping (valid until close). */
const void *paro_st_data(const paro_st_file *f, const paro_st_tensor *t);
const char *paro_st_path(const paro_st_file *f);
uint64_t paro_st_file_size(const paro_st_file *f);

/* Writer: tensors are written in the given order, header padded with spaces
 * to a multiple of 8.  data[i] holds nbytes of little-endian elements. */
typedef struct paro_st_write_tensor {
    const char *name;
    paro_dtype dtype;
    uint32_t ndim;
    uint64_t shape[PARO_ST_MAX_DIMS];
    const void *data;
} paro_st_write_tensor;

/* Writes atomically (temp file, fsync, rename). */
paro_err paro_st_write(const char *path, const paro_st_write_tensor *tensors,
                       size_t n, paro_errinfo *ei);

/* The same file, but the data of tensor i comes from fill(user, i, dst),
 * called in order with a buffer of that tensor's size, so a file larger
 * than memory can be written one tensor at a time (tensors[i].data is
 * ignored). */
typedef paro_err (*paro_st_fill_fn)(void *user, size_t index, void *dst, paro_errinfo *ei);
paro_err paro_st_write_stream(const char *path, const paro_st_write_tensor *tensors,
                              size_t n, paro_st_fill_fn fill, void *user, paro_errinfo *ei);
/* paro_st_write_stream, with two additions for plan exports:
 *  - int_dtypes (NULL, or one entry per tensor): where an entry is not NULL,
 *    the tensor is written as that integer dtype instead of its float dtype:
 *    "I8", "I32" or "BOOL" (one byte, 0 or 1);
 *  - a "__metadata__" object first in the header: n_pairs string pairs,
 *    meta[2i] the key and meta[2i+1] the value (valid UTF-8, keys
 *    distinct), in the given order. */
paro_err paro_st_write_stream_meta(const char *path, const paro_st_write_tensor *tensors,
                                   const char *const *int_dtypes, size_t n, paro_st_fill_fn fill,
                                   void *user, const char *const *meta, size_t n_pairs,
                                   paro_errinfo *ei);

#ifdef __cplusplus
}
#endif
#endif
