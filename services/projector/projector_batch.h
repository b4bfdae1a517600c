/* projector_batch.h - the projector's pure batch logic: turning consumed
 * records into the few parameterised statements that apply a whole batch.
 *
 * A batch of StatusEvents becomes one statement with 19 array parameters
 * (one PostgreSQL array literal per column, fed to unnest()), which inserts
 * the new events into communication_events and, from the rows actually
 * inserted, upserts one row per communication in communications:
 *   - the current status is the event with the greatest (hop, status_rank,
 *     occurred_at, event_id); a row only moves to a greater key, so a late
 *     lower event (a `sending` after `sent`, a `sent` after `delivered`, an
 *     event of an earlier hop after a fallback) never regresses it;
 *   - each milestone timestamp (sent_at, delivered_at, ...) is the earliest
 *     time that status was seen: LEAST() over the row and the batch;
 *   - duplicates (same event_id, e.g. re-emitted after a crash or read twice
 *     after a rebalance) are not inserted and so never change anything.
 * The partitions' next offsets become one more statement written in the same
 * transaction (consumer_offsets), and are read back on partition assignment.
 *
 * Nothing here does I/O; projector.c runs the statements. */
#ifndef PROJECTOR_BATCH_H
#define PROJECTOR_BATCH_H

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

#include "crm/buf.h"
#include "crm/status.h"

/* ------------------------------------------------------------ status events */

/* Parameters of PROJECTOR_STATUS_APPLY_SQL, in order. */
enum projector_status_col {
    PROJECTOR_COL_EVENT_ID = 0,
    PROJECTOR_COL_COMMUNICATION_ID,
    PROJECTOR_COL_TENANT_ID,
    PROJECTOR_COL_CLIENT_ID,
    PROJECTOR_COL_REQUEST_ID,
    PROJECTOR_COL_MESSAGE_TYPE,
    PROJECTOR_COL_CHANNEL,
    PROJECTOR_COL_STATUS,
    PROJECTOR_COL_STATUS_RANK,
    PROJECTOR_COL_ATTEMPT,
    PROJECTOR_COL_HOP,
    PROJECTOR_COL_PROVIDER,
    PROJECTOR_COL_PROVIDER_MESSAGE_ID,
    PROJECTOR_COL_ERROR_CODE,
    PROJECTOR_COL_ERROR_MESSAGE,
    PROJECTOR_COL_REASON,
    PROJECTOR_COL_OCCURRED_MS,
    PROJECTOR_COL_KAFKA_PARTITION,
    PROJECTOR_COL_KAFKA_OFFSET,
    PROJECTOR_STATUS_NCOLS
};

/* The statement applying a staged batch. Parameters: the array literals of
 * projector_status_batch_params(). Returns one row: (events inserted,
 * communications inserted or updated). */
extern const char PROJECTOR_STATUS_APPLY_SQL[];

/* Status events staged for one statement. Lives by value; init before use,
 * free when done. Owns its buffers. */
typedef struct projector_status_batch {
    cmn_buf_t cols[PROJECTOR_STATUS_NCOLS]; /* "{e1,e2,..." array literals in the making */
    size_t n;                               /* events staged */
    int sealed;                             /* 1 after params(): each literal ends with '}' */
} projector_status_batch_t;

void projector_status_batch_init(projector_status_batch_t *b);
/* Empties the batch and keeps its storage for the next one. */
void projector_status_batch_reset(projector_status_batch_t *b);
void projector_status_batch_free(projector_status_batch_t *b);

/* Checks what PostgreSQL would refuse (ids that are not UUIDs, text that is
 * not UTF-8, a time outside years 1..9999) and stages ev, read at
 * partition/offset. ev and its strings are borrowed only for the call: their
 * values are copied. An empty tenant_id becomes "default" (the envelope's
 * default). Returns 0; CMN_ERR_INVALID with the reason in errstr (the record
 * belongs on the DLQ; the batch is unchanged); CMN_ERR_NOMEM. */
int projector_status_batch_add(projector_status_batch_t *b, const cmn_status_event_t *ev, int32_t partition,
                               int64_t offset, char *errstr, size_t errlen);

/* What projector_status_batch_add() checks, for events staged elsewhere
 * (receipts without a communication id: need_communication_id 0). Returns 0
 * or CMN_ERR_INVALID with "field: reason" in errstr. */
int projector_status_check(const cmn_status_event_t *ev, int need_communication_id, char *errstr, size_t errlen);

/* Points values[0..PROJECTOR_STATUS_NCOLS-1] at the finished array literals.
 * They are borrowed from b and valid until the next add, reset or free.
 * Returns 0 or CMN_ERR_NOMEM. */
int projector_status_batch_params(projector_status_batch_t *b, const char *values[PROJECTOR_STATUS_NCOLS]);

/* Parses one crm.status record value (len bytes, no NUL needed) into ev.
 * On success *obj holds the parsed JSON, which ev's strings borrow from: the
 * caller json_object_put()s it after using ev. On failure *obj is NULL and
 * errstr says why (for the DLQ reason header). Returns 0, CMN_ERR_PARSE
 * (not JSON) or CMN_ERR_INVALID (not a valid StatusEvent). */
int projector_status_parse(const char *value, size_t len, json_object **obj, cmn_status_event_t *ev,
                           char *errstr, size_t errlen);

/* ---------------------------------------------------------------- offsets */

/* Upserts (group_id $1, topics $2, partitions $3, next offsets $4). An offset
 * only moves forward, so a consumer that lost its partition in a rebalance
 * but still finishes its batch can never move the new owner back. */
extern const char PROJECTOR_OFFSETS_UPSERT_SQL[];
/* Reads the stored offsets of (group_id $1, topics $2, partitions $3);
 * returns rows (index into the arrays, 1-based; next_offset). */
extern const char PROJECTOR_OFFSETS_SELECT_SQL[];

/* The next offset to read per topic partition seen in a batch. Lives by
 * value; zero-initialise (or reset) before use; free when done. */
typedef struct projector_offset {
    char topic[256]; /* Kafka topic names are at most 249 bytes */
    int32_t partition;
    int64_t next_offset;
} projector_offset_t;

typedef struct projector_offsets {
    projector_offset_t *items; /* owned */
    size_t n, cap;
} projector_offsets_t;

/* Records that offset was read from topic/partition: the partition's next
 * offset becomes at least offset + 1. Returns 0, CMN_ERR_INVALID (topic name
 * too long, negative offset) or CMN_ERR_NOMEM. */
int projector_offsets_note(projector_offsets_t *o, const char *topic, int32_t partition, int64_t offset);
void projector_offsets_reset(projector_offsets_t *o);
void projector_offsets_free(projector_offsets_t *o);

/* Appends the array literals of the upsert's $2, $3, $4 to the (empty)
 * buffers. Returns 0 or CMN_ERR_NOMEM. */
int projector_offsets_params(const projector_offsets_t *o, cmn_buf_t *topics, cmn_buf_t *partitions,
                             cmn_buf_t *offsets);

/* Appends the array literals of the select's $2 and $3 for n partitions. */
int projector_partitions_params(const char *const *topics, const int32_t *partitions, size_t n,
                                cmn_buf_t *topics_out, cmn_buf_t *partitions_out);

/* ---------------------------------------------------------------- helpers */

/* 1 when the NUL-terminated s is well-formed UTF-8 (no overlong forms, no
 * surrogates, nothing above U+10FFFF), else 0. */
int projector_utf8_valid(const char *s);

/* Appends s as one element of a PostgreSQL array literal: NULL for a NULL
 * pointer, else a double-quoted string with '"' and '\' escaped. */
int projector_pg_array_append_text(cmn_buf_t *b, const char *s);

/* Building an array literal in an initially empty buffer: each call adds one
 * element ('{' before the first, ',' before the others); close adds '}' (or
 * writes "{}" when nothing was added). Return 0 or CMN_ERR_NOMEM. */
int projector_pg_array_text(cmn_buf_t *b, const char *s);
int projector_pg_array_int(cmn_buf_t *b, int64_t v);
int projector_pg_array_close(cmn_buf_t *b);

/* Parses a record value (len bytes, no NUL needed) that must be exactly one
 * JSON document; what names the expected envelope in the reason. On success
 * *obj is the caller's to json_object_put(). Returns 0, CMN_ERR_PARSE with
 * the reason in errstr ("value: not JSON (...)"), or CMN_ERR_NOMEM. */
int projector_json_parse(const char *value, size_t len, const char *what, json_object **obj, char *errstr,
                         size_t errlen);

#endif
