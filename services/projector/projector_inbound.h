/* projector_inbound.h - the crm.inbound projection's pure batch logic: an
 * InboundMessage batch becomes one statement that
 *   - stores each new message in inbound_messages (ON CONFLICT (event_id)
 *     DO NOTHING: a webhook delivered twice is stored once), with the
 *     sender as HMAC-SHA256(CRM_DATA_KEY, E.164) and the sender, body and
 *     profile name sealed (crm/crypto.h), and the client resolved through
 *     client_contacts when exactly one client of the tenant has that number;
 *   - from the rows actually inserted only, upserts conversations:
 *     last_inbound_at = greatest(stored, batch), window_expires_at = that +
 *     24 h for WhatsApp, unread_count + the number of new messages;
 *   - records senders no client_contacts row knows (tenant and number) in
 *     contacts with status 'unknown' (an existing row keeps its status).
 * So a replayed message changes nothing, and counts are exact.
 *
 * Staging seals with a random nonce but does no I/O; projector.c runs the
 * statement. */
#ifndef PROJECTOR_INBOUND_H
#define PROJECTOR_INBOUND_H

#include <stddef.h>
#include <stdint.h>

#include "crm/buf.h"

enum projector_inbound_col {
    PROJECTOR_ICOL_EVENT_ID = 0,
    PROJECTOR_ICOL_TENANT_ID,
    PROJECTOR_ICOL_CHANNEL,
    PROJECTOR_ICOL_PROVIDER,
    PROJECTOR_ICOL_PROVIDER_MESSAGE_ID,
    PROJECTOR_ICOL_FROM_HASH,        /* lower-case hex of the 32-byte hash */
    PROJECTOR_ICOL_FROM_SEALED,
    PROJECTOR_ICOL_TO,
    PROJECTOR_ICOL_BODY_SEALED,
    PROJECTOR_ICOL_PROFILE_SEALED,
    PROJECTOR_ICOL_KEYWORD,
    PROJECTOR_ICOL_MEDIA,            /* JSON array text */
    PROJECTOR_ICOL_RECEIVED_MS,
    PROJECTOR_ICOL_KAFKA_PARTITION,
    PROJECTOR_ICOL_KAFKA_OFFSET,
    PROJECTOR_INBOUND_NCOLS
};

/* The statement applying a staged batch; returns one row: (messages
 * inserted, conversations upserted, contacts newly created). */
extern const char PROJECTOR_INBOUND_APPLY_SQL[];

/* Messages staged for one statement. Zero-initialise; reset between
 * batches; free when done. */
typedef struct projector_inbound_batch {
    cmn_buf_t cols[PROJECTOR_INBOUND_NCOLS];
    size_t n;
    int sealed;
} projector_inbound_batch_t;

/* Parses and validates one crm.inbound record value (len bytes; NULL is a
 * tombstone, which crm.inbound never carries), hashes and seals its
 * personal data with data_key (borrowed; at least CMN_DATA_KEY_MIN
 * characters) and stages it. Returns 0; CMN_ERR_PARSE or CMN_ERR_INVALID
 * with a one-line reason naming the field (the record belongs on the DLQ;
 * the batch is unchanged); CMN_ERR_NOMEM. */
int projector_inbound_add(projector_inbound_batch_t *b, const char *data_key, const char *value, size_t len,
                          int32_t partition, int64_t offset, char *errstr, size_t errlen);

/* Points values[] at the finished array literals (borrowed from b until
 * the next add, reset or free). Returns 0 or CMN_ERR_NOMEM (then reset
 * before staging again). */
int projector_inbound_params(projector_inbound_batch_t *b, const char *values[PROJECTOR_INBOUND_NCOLS]);

void projector_inbound_reset(projector_inbound_batch_t *b);
void projector_inbound_free(projector_inbound_batch_t *b);

#endif
