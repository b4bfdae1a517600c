/* projector_prefs.h - the pure part of the crm.preferences projection:
 * turning a batch of ClientPreferences snapshots and tombstones into the two
 * statements that apply it to client_preferences.
 *
 * Rules (docs/analytics.md, "client_preferences"):
 *   - a snapshot replaces the stored one only when it is newer: a greater
 *     updated_at, or the same updated_at at a later Kafka offset (one key
 *     always lives on one partition, so the later offset is the later write);
 *   - a tombstone (NULL value) deletes the client's row.
 * Within a batch the records of one client are folded in offset order: after
 * a tombstone only the snapshots that follow it count, so the batch becomes
 * at most one delete and one upsert per client, and the delete runs first.
 * Replaying records (a rebalance, a fallback to Kafka's committed offsets)
 * therefore converges to the same row.
 *
 * Nothing here does I/O; projector.c runs the statements. */
#ifndef PROJECTOR_PREFS_H
#define PROJECTOR_PREFS_H

#include <stddef.h>
#include <stdint.h>

#include "crm/buf.h"
#include "crm/request.h"

/* Deletes the rows of ($1 tenants, $2 clients), text arrays. Returns the
 * deleted rows' count as the command tag. */
extern const char PROJECTOR_PREFS_DELETE_SQL[];
/* Upserts ($1 tenants, $2 clients, $3 snapshots as JSON text, $4 updated_at
 * in epoch ms, $5 partitions, $6 offsets) where newer; the affected count
 * is the command tag. */
extern const char PROJECTOR_PREFS_UPSERT_SQL[];

typedef struct projector_prefs_entry {
    char tenant_id[CMN_REQ_MAX_ID + 1];
    char client_id[CMN_REQ_MAX_ID + 1];
    int deleted;      /* 1: a tombstone was seen in this batch */
    char *snapshot;   /* owned canonical JSON of the newest snapshot after the last tombstone, or NULL */
    int64_t updated_ms;
    int32_t partition;
    int64_t offset;
} projector_prefs_entry_t;

/* The staged records of one batch. Zero-initialise; reset between batches;
 * free when done. Owns its entries. */
typedef struct projector_prefs_batch {
    projector_prefs_entry_t *items;
    size_t n, cap;
    size_t records; /* records staged, tombstones included */
} projector_prefs_batch_t;

/* Validates one crm.preferences record and stages it. key (key_len bytes)
 * and value (value_len bytes; NULL for a tombstone) are borrowed for the
 * call. A snapshot must be a valid ClientPreferences record whose
 * "<tenant_id>:<client_id>" equals the key; it is stored in canonical form.
 * Returns 0; CMN_ERR_INVALID or CMN_ERR_PARSE with a one-line reason naming
 * the field in errstr (the record belongs on the DLQ; the batch is
 * unchanged); CMN_ERR_NOMEM. */
int projector_prefs_stage(projector_prefs_batch_t *b, const char *key, size_t key_len, const char *value,
                          size_t value_len, int32_t partition, int64_t offset, char *errstr, size_t errlen);

/* The delete statement's $1 and $2 (clients whose batch had a tombstone),
 * and the upsert's $1..$6 (clients with a snapshot left), appended to the
 * given empty buffers as PostgreSQL array literals. *ndel and *nup get the
 * counts. Returns 0 or CMN_ERR_NOMEM. */
int projector_prefs_delete_params(const projector_prefs_batch_t *b, cmn_buf_t *tenants, cmn_buf_t *clients,
                                  size_t *ndel);
int projector_prefs_upsert_params(const projector_prefs_batch_t *b, cmn_buf_t cols[6], size_t *nup);

void projector_prefs_reset(projector_prefs_batch_t *b);
void projector_prefs_free(projector_prefs_batch_t *b);

#endif
