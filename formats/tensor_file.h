/* paro — one sample's tensors, whatever holds them: a safetensors file, an
 * .npz archive (stored or deflated .npy members) or a folder of .npy files.
 *
 * Tensors are looked up by name ("layers.3.q"; in .npz and folders the
 * member or file is that name plus ".npy").  Looking a tensor up validates
 * its header; acquiring it gives its bytes: a pointer into a read-only map
 * for safetensors, stored members and .npy files, an inflated buffer for
 * deflated members (inflated once, CRC-checked, freed when at most a few
 * newer ones are held, so memory stays bounded by a layer's tensors).
 * Lookups and acquisitions may run on several threads at once.
 */
#ifndef PARO_TENSOR_FILE_H_c81e5d02
#define PARO_TENSOR_FILE_H_c81e5d02

#include <stddef.h> /* size_t */
#include <stdint.h> /* uint32_t, uint64_t */

#include "dtype.h" /* paro_dtype */
#include "error.h" /* paro_err, paro_errinfo */

#ifdef __cplusplus
extern "C" {
#endif

#define PARO_TENSOR_MAX_DIMS 8

typedef enum paro_container {
    PARO_CONTAINER_SAFETENSORS = 0,
    PARO_CONTAINER_NPZ = 1,
    PARO_CONTAINER_NPY_FOLDER = 2
} paro_container;

typedef struct paro_tensor {
    const char *name;
    const char *where;     /* the file for messages: "x.npz/layers.0.q.npy" for a member */
    paro_dtype dtype;      /* PARO_DTYPE_INVALID when paro does not read the type */
    char dtype_name[16];   /* as the file writes it: "BF16", "<f4" */
    uint32_t ndim;
    uint64_t shape[PARO_TENSOR_MAX_DIMS];
    uint64_t data_offset;  /* of the first element, in `where` */
    uint64_t nbytes;
} paro_tensor;

typedef struct paro_tensor_file paro_tensor_file;

/* Opens path: a folder is read as .npy files, a file starting with a ZIP
 * signature as .npz, a single .npy is refused (a sample holds many
 * tensors), anything else is read as safetensors.  raw16: the type that
 * 2-byte raw .npy types ('<u2', '<i2', '|V2') stand for, PARO_DTYPE_BF16
 * when the capture says its tensors are bf16, else PARO_DTYPE_INVALID. */
paro_err paro_tensor_file_open(const char *path, paro_dtype raw16, paro_tensor_file **out,
                               paro_errinfo *ei);
void paro_tensor_file_close(paro_tensor_file *f);

paro_container paro_tensor_file_container(const paro_tensor_file *f);
/* "safetensors", "npz", "npy folder" */
const char *paro_container_name(paro_container c);

/* Tensors in name order (byte-wise); names only, headers not yet read. */
size_t paro_tensor_file_count(const paro_tensor_file *f);
const char *paro_tensor_file_name(const paro_tensor_file *f, size_t i);

/* Looks name up and validates its header.  Absent: PARO_OK with *t NULL. */
paro_err paro_tensor_file_find(paro_tensor_file *f, const char *name, const paro_tensor **t,
                               paro_errinfo *ei);
/* The tensor's bytes (nbytes of them, any alignment) until released. */
paro_err paro_tensor_file_acquire(paro_tensor_file *f, const paro_tensor *t,
                                  const unsigned char **data, paro_errinfo *ei);
void paro_tensor_file_release(paro_tensor_file *f, const paro_tensor *t);

/* Values of one float tensor (F32, F16, BF16): min, max and mean |x| over
 * its finite elements, and how many are NaN or infinite. */
typedef struct paro_tensor_stats {
    uint64_t count, finite, nan, inf;
    double min, max, mean_abs; /* 0 when no element is finite */
} paro_tensor_stats;

/* PARO_ERR_USAGE for a tensor paro does not read as floats. */
paro_err paro_tensor_file_stats(paro_tensor_file *f, const paro_tensor *t,
                                paro_tensor_stats *out, paro_errinfo *ei);

#ifdef __cplusplus
}
#endif
#endif
