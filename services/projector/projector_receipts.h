/* projector_receipts.h - provider receipts that name their message only by
 * the provider's id (StatusEvents with an empty communication_id, see
 * crm/status.h), and how the projector ties them to a communication.
 *
 * A receipt belongs to the communication whose `sent` event carries the
 * same provider_message_id (and provider, when both say). That `sent` event
 * may not be projected yet: a provider's webhook can beat the worker's own
 * status event. So, inside the batch's transaction and after the batch's
 * ordinary events are stored:
 *   1. every receipt of the batch is parked in receipts_unmatched
 *      (idempotent on event_id);
 *   2. the parked receipts whose provider_message_id occurs in this batch
 *      (as a receipt or on any event, the `sent` among them) are joined with
 *      the `sent` events of communication_events; each match becomes an
 *      ordinary StatusEvent of that communication (its hop, attempt,
 *      tenant, client, request and message type; the receipt's status,
 *      time, provider and error) applied with the usual statement, and the
 *      parked row is deleted.
 * A receipt thus waits exactly until its `sent` is projected, and the
 * order in which the two arrive does not matter. Taking hop and attempt
 * from the `sent` event (not from the communication's current row) keeps a
 * late receipt of an earlier hop from counting for a fallback channel.
 *
 * Nothing here does I/O; projector.c runs the statements. */
#ifndef PROJECTOR_RECEIPTS_H
#define PROJECTOR_RECEIPTS_H

#include <stddef.h>
#include <stdint.h>

#include "crm/buf.h"
#include "crm/status.h"

/* Columns of PROJECTOR_RECEIPTS_PARK_SQL's parameters, in order. */
enum projector_receipt_col {
    PROJECTOR_RCOL_EVENT_ID = 0,
    PROJECTOR_RCOL_TENANT_ID,
    PROJECTOR_RCOL_CHANNEL,
    PROJECTOR_RCOL_STATUS,
    PROJECTOR_RCOL_PROVIDER,
    PROJECTOR_RCOL_PROVIDER_MESSAGE_ID,
    PROJECTOR_RCOL_ERROR_CODE,
    PROJECTOR_RCOL_ERROR_MESSAGE,
    PROJECTOR_RCOL_OCCURRED_MS,
    PROJECTOR_RCOL_KAFKA_PARTITION,
    PROJECTOR_RCOL_KAFKA_OFFSET,
    PROJECTOR_RECEIPT_NCOLS
};

/* Parks receipts: parameters are the array literals of
 * projector_receipts_params(). */
extern const char PROJECTOR_RECEIPTS_PARK_SQL[];

/* Finds the parked receipts that can now be matched. $1: text[] of provider
 * message ids (projector_receipts_pmids()). Returns one row per matched
 * receipt with the columns of enum projector_resolved_col. */
extern const char PROJECTOR_RECEIPTS_MATCH_SQL[];

/* Deletes parked receipts by event id ($1 uuid[]). */
extern const char PROJECTOR_RECEIPTS_DELETE_SQL[];

enum projector_resolved_col {
    PROJECTOR_MCOL_EVENT_ID = 0,
    PROJECTOR_MCOL_COMMUNICATION_ID,
    PROJECTOR_MCOL_TENANT_ID,
    PROJECTOR_MCOL_CLIENT_ID,
    PROJECTOR_MCOL_REQUEST_ID,
    PROJECTOR_MCOL_MESSAGE_TYPE,
    PROJECTOR_MCOL_CHANNEL,
    PROJECTOR_MCOL_STATUS,
    PROJECTOR_MCOL_HOP,
    PROJECTOR_MCOL_ATTEMPT,
    PROJECTOR_MCOL_PROVIDER,
    PROJECTOR_MCOL_PROVIDER_MESSAGE_ID,
    PROJECTOR_MCOL_ERROR_CODE,
    PROJECTOR_MCOL_ERROR_MESSAGE,
    PROJECTOR_MCOL_OCCURRED_MS,
    PROJECTOR_MCOL_KAFKA_PARTITION,
    PROJECTOR_MCOL_KAFKA_OFFSET,
    PROJECTOR_RESOLVED_NCOLS
};

/* Receipts and provider message ids staged for one batch. Lives by value;
 * zero-initialise; reset between batches; free when done. */
typedef struct projector_receipts {
    cmn_buf_t cols[PROJECTOR_RECEIPT_NCOLS]; /* array literals in the making */
    size_t n;                                /* receipts staged */
    cmn_buf_t pmids;                         /* every provider message id seen in the batch */
    size_t npmids;
    int sealed;
} projector_receipts_t;

/* Stages a receipt (ev->communication_id is "" and provider_message_id is
 * set), read at partition/offset. ev is borrowed for the call. Returns 0;
 * CMN_ERR_INVALID with the reason (the record belongs on the DLQ); or
 * CMN_ERR_NOMEM. An empty tenant_id becomes "default". */
int projector_receipts_add(projector_receipts_t *r, const cmn_status_event_t *ev, int32_t partition,
                           int64_t offset, char *errstr, size_t errlen);

/* Notes the provider message id of an ordinary event of the batch (NULL or
 * "" is ignored), so receipts parked earlier for it are looked for. */
int projector_receipts_note_pmid(projector_receipts_t *r, const char *pmid);

/* Points values[] at the finished array literals of the park statement,
 * and *pmids at the $1 of the match statement. Borrowed from r until the
 * next add, note, reset or free. Returns 0 or CMN_ERR_NOMEM (then the
 * staged literals are unusable: reset before staging again). */
int projector_receipts_params(projector_receipts_t *r, const char *values[PROJECTOR_RECEIPT_NCOLS],
                              const char **pmids);

/* Fills ev from one row of the match statement (vals[i] is column i as
 * text, NULL for SQL NULL; borrowed: ev's strings point into them). Returns
 * 0 or CMN_ERR_INVALID when a value cannot be read back. */
int projector_receipts_event(const char *const vals[PROJECTOR_RESOLVED_NCOLS], cmn_status_event_t *ev);

void projector_receipts_reset(projector_receipts_t *r);
void projector_receipts_free(projector_receipts_t *r);

#endif
