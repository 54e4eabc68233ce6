/* paro — the calibration journal: finished layers, saved as they finish, so
 * that an interrupted `paro calibrate` resumes where it stopped
 * (`--resume`) and still writes the same plan bytes as a run that was never
 * interrupted.
 *
 * File (little-endian):  "PAROJRNL" u32 version=1 u32 config_crc u64
 * config_len, then records  u32 payload_len, u32 crc32(payload), payload,
 * where payload is one layer slot's results (see journal.c).  A record that
 * is cut short or fails its CRC ends the journal there: what came before it
 * is kept, the rest is recomputed.  config_crc/len identify the inputs and
 * settings; a journal made with others is refused.
 */
#ifndef PARO_JOURNAL_H_31c5f8a2
#define PARO_JOURNAL_H_31c5f8a2

#include <stdint.h> /* uint32_t, uint64_t */

#include "error.h" /* paro_err, paro_errinfo */
#include "plan.h"  /* paro_plan */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct paro_journal paro_journal;

/* Opens path.  With resume and a journal of the same config there, loads the
 * layers it holds into `plan` (which must have the run's shape) and keeps
 * appending to it; *resumed gets how many.  A journal of another config is
 * PARO_ERR_USAGE with a message saying so.  Without resume, or when there is
 * none, starts a new journal. */
paro_err paro_journal_open(const char *path, uint32_t config_crc, uint64_t config_len, int resume,
                           paro_plan *plan, paro_journal **out, uint32_t *resumed,
                           paro_errinfo *ei);
/* Whether layer slot l was loaded from the journal. */
int paro_journal_has(const paro_journal *j, uint32_t l);
/* Appends layer slot l of plan and syncs it to disk. */
paro_err paro_journal_append(paro_journal *j, const paro_plan *plan, uint32_t l, paro_errinfo *ei);
/* Closes; with remove, deletes the file too (after the plan is written). */
void paro_journal_close(paro_journal *j, int remove);
/* Deletes the journal at path when it holds no whole record (a run that
 * failed or was stopped before its first layer finished leaves nothing to
 * resume, and no file behind).  Returns 1 when there is no journal at path
 * afterwards, 0 when one is kept: it holds layers, or the file is not a
 * journal (which is never touched). */
int paro_journal_discard_empty(const char *path);

#ifdef __cplusplus
}
#endif
#endif
