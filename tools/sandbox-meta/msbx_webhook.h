/* msbx_webhook.h - the status webhooks the Meta sandbox posts after a send:
 * which statuses a recipient gets, the payload in Meta's webhook shape, and
 * its X-Hub-Signature-256.
 *
 * The payload follows Meta's status webhook (the constructed examples in
 * shared/oracles/meta/cloud_api_examples.json, "status_sent" ... "status_failed_131026",
 * and the spec's Statuses schema: id, status, timestamp, recipient_id
 * required):
 *   {"object":"whatsapp_business_account","entry":[{"id":"<WABA id>","changes":[{"value":{
 *     "messaging_product":"whatsapp","metadata":{"display_phone_number":"...","phone_number_id":"..."},
 *     "statuses":[{"id":"wamid...","status":"sent","timestamp":"1750263773","recipient_id":"16505551234",
 *       "biz_opaque_callback_data":"<communication id>",
 *       "conversation":{"id":"...","origin":{"type":"utility"}},
 *       "pricing":{"billable":true,"pricing_model":"PMP","category":"utility"},
 *       "errors":[{"code":131026,"title":"...","message":"...","error_data":{"details":"..."},"href":"..."}]}]},
 *     "field":"messages"}]}]}
 * conversation and pricing come with sent and delivered (as in Meta's
 * examples), errors only with failed, biz_opaque_callback_data whenever the
 * send carried one (Meta echoes it in every status of the message).
 *
 * Pure: no I/O, no clock (the caller passes the timestamp). */
#ifndef MSBX_WEBHOOK_H
#define MSBX_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

#include "crm/buf.h"

/* The statuses an accepted send gets, in order, keyed by the digits at the
 * end of `to`:
 *   ...131026   failed, errors[] 131026 (message undeliverable), which Meta
 *               reports in the webhook, not in the send's answer
 *   ...00000    sent only: never a final receipt, for the receipt deadline
 *   otherwise   sent, delivered, read
 * Fills at most MSBX_RECEIPTS_MAX and returns how many. */
#define MSBX_RECEIPTS_MAX 3
typedef struct msbx_receipt {
    const char *status;  /* sent, delivered, read, failed */
    long error;          /* errors[0].code for failed, else 0 */
    const char *title;   /* errors[0].title and .message */
    const char *details; /* errors[0].error_data.details */
} msbx_receipt_t;
size_t msbx_receipts_for(const char *to, msbx_receipt_t out[MSBX_RECEIPTS_MAX]);

typedef struct msbx_status_in {
    const char *waba_id;              /* entry[0].id */
    const char *display_phone_number; /* metadata */
    const char *phone_number_id;      /* metadata */
    const char *wamid;                /* statuses[0].id */
    const char *recipient_id;         /* the `to` of the send, digits */
    const char *biz_opaque;           /* NULL or "": left out */
    int64_t timestamp_s;              /* epoch seconds, written as a string as Meta does */
    const msbx_receipt_t *receipt;
} msbx_status_in_t;

/* Writes the webhook body of one status into out (appended). Returns 0,
 * CMN_ERR_INVALID (a required member missing) or CMN_ERR_NOMEM. */
int msbx_status_payload(const msbx_status_in_t *in, cmn_buf_t *out);

/* "sha256=" and the 64 hex digits of HMAC-SHA256(secret, body), as Meta's
 * X-Hub-Signature-256 header. out must hold MSBX_SIGNATURE_LEN bytes.
 * Returns 0 or CMN_ERR_INVALID. */
#define MSBX_SIGNATURE_LEN 72
int msbx_sign(const char *secret, const char *body, size_t len, char out[MSBX_SIGNATURE_LEN]);

#endif
