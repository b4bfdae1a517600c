/* wh_meta.h - Meta's WhatsApp Cloud API webhooks: the GET subscription
 * check and the POSTed event batches (statuses and messages).
 *
 * One POST may carry several entries, each with several changes, each with
 * statuses[] and messages[]; the receiver handles all of them or none: a
 * malformed member anywhere refuses the whole batch with 400 naming it.
 * Meta retries a refused delivery for a while and then drops it, which is
 * the right end for a payload the receiver can never read.
 *
 * What becomes what (docs/webhooks.md):
 *   statuses[i]  -> a receipt; communication id from biz_opaque_callback_data
 *                   ("<uuid>" as the WhatsApp worker sets it, or
 *                   "<uuid>:<hop>:<attempt>"), recipient_id ignored;
 *                   errors[0].code / title / error_data.details -> error code and message.
 *   messages[i]  -> an InboundMessage: text.body; image/video/audio/document/
 *                   sticker -> caption as body and media {"url":"meta-media:<id>",
 *                   "content_type": mime_type}; button (template quick reply) -> body
 *                   button.text, keyword from button.payload; interactive
 *                   replies -> body = the reply's title, never a keyword (their
 *                   ids belong to the app's own flows: a "Cancel" button cancels
 *                   an appointment, not the subscription); location -> body
 *                   "lat,long"; unsupported -> no body. System messages
 *                   (user_changed_number, ...) are notices from WhatsApp, not
 *                   from the person: ignored, counted.
 * Pure: no I/O. */
#ifndef WH_META_H
#define WH_META_H

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

#include "crm/inbound.h"
#include "wh_status.h"

#define WH_META_MAX_ITEMS 1000 /* statuses plus messages in one POST */

typedef struct wh_meta_batch {
    json_object *root;           /* owned: the receipts borrow from it */
    wh_receipt_t *receipts;      /* owned array */
    size_t n_receipts;
    cmn_inbound_t *messages;     /* owned array, each owning its strings */
    size_t n_messages;
    size_t n_ignored;            /* system messages, changes of other fields */
} wh_meta_batch_t;

/* Parses a POST body (len bytes). Returns 0, CMN_ERR_INVALID with
 * "field: reason" in errstr (field as a JSON path such as
 * "entry[0].changes[0].value.statuses[1].id"), or CMN_ERR_NOMEM. out is
 * zeroed first and cleared on error. */
int wh_meta_parse(const char *body, size_t len, const char *tenant_id, wh_meta_batch_t *out, char *errstr,
                  size_t errlen);

void wh_meta_batch_clear(wh_meta_batch_t *b);

/* The GET verification. Returns 200 (then *challenge_out = challenge, to be
 * echoed as text/plain), 403 (mode is not "subscribe" or the token does not
 * match, compared in constant time), or 400 with the missing or malformed
 * parameter's name in *field. */
int wh_meta_verify(const char *mode, const char *token, const char *challenge, const char *expected_token,
                   const char **challenge_out, const char **field);

/* Reads biz_opaque_callback_data: "<uuid>" or "<uuid>:<hop>:<attempt>".
 * Fills r->communication_id (and hop/attempt). Returns 0, or
 * CMN_ERR_INVALID for anything else (the receipt then goes on without). */
int wh_meta_opaque_parse(const char *s, wh_receipt_t *r);

#endif
