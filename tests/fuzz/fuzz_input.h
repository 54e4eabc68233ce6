/* paro fuzzing — helpers shared by the targets.
 *
 * A target is `int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)`,
 * built either with libFuzzer (`make fuzz`) or with replay.c, which calls it
 * on every file of the regression corpus (`make test`).  Readers that take a
 * path get the bytes through a memory file (memfd), so no input touches the
 * disk. */
#ifndef PARO_FUZZ_INPUT_H_8c2e47d1
#define PARO_FUZZ_INPUT_H_8c2e47d1

#include <stddef.h> /* size_t */
#include <stdint.h> /* uint8_t */

/* Path of a memory file holding exactly data[0, size); valid until the next
 * call.  Returns NULL when the memory file cannot be made or written. */
const char *fuzz_input_path(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
