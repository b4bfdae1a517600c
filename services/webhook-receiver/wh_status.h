/* wh_status.h - provider receipts (delivery callbacks) and the StatusEvents
 * they become.
 *
 * Mapping (docs/webhooks.md, "Statuses"):
 *   Twilio MessageStatus      Meta status   -> StatusEvent
 *   queued, accepted, scheduled, sending   -> none (the worker's `sent`
 *                                             already says the provider
 *                                             has the message)
 *   sent                      sent          -> sent
 *   delivered                 delivered     -> delivered
 *   read                      read          -> read
 *   undelivered                             -> failed, reason "undelivered", error_code = ErrorCode
 *   failed                    failed        -> failed, error_code = ErrorCode / errors[0].code
 *   canceled                                -> failed, reason "canceled"
 *   anything else (receiving, received, partially_delivered, deleted,
 *   warning, values added later)           -> none, counted as ignored
 *
 * event_id = UUIDv5(CMN_UUID_NS_EVENT, "receipt|<provider>|<provider_message_id>|<provider status>|<error_code>"):
 * it depends only on what the provider sends, so a webhook delivered twice
 * (providers retry) gives the same event_id whatever the receiver could
 * resolve, and the projector stores it once. Pure. */
#ifndef WH_STATUS_H
#define WH_STATUS_H

#include <stddef.h>
#include <stdint.h>

#include "crm/buf.h"
#include "crm/channel.h"
#include "crm/status.h"
#include "crm/uuid.h"

#define WH_PROVIDER_TWILIO "twilio"
#define WH_PROVIDER_META "meta"

/* One delivery receipt as the provider reported it. Strings are borrowed
 * from the parsed webhook. */
typedef struct wh_receipt {
    const char *provider;                        /* WH_PROVIDER_* */
    const char *provider_message_id;             /* required */
    const char *provider_status;                 /* required: the provider's word */
    cmn_channel_t channel;
    char communication_id[CMN_UUID_STR_LEN + 1]; /* "" when the webhook carried none */
    int hop, attempt;                            /* -1 when the webhook carried none */
    const char *error_code, *error_message;      /* may be NULL */
    int64_t occurred_at_ms;                      /* the provider's time, else the receipt time */
} wh_receipt_t;

/* Clears r: no ids, hop and attempt -1, channel NONE. */
void wh_receipt_init(wh_receipt_t *r);

/* What provider_status becomes: returns 1 with *status and *reason (static,
 * may be NULL) when it is an event, 0 when it is ignored. */
int wh_status_map(const char *provider_status, cmn_status_t *status, const char **reason);

/* The receipt's event_id. Returns 0 or CMN_ERR_INVALID (no provider,
 * provider message id or status). */
int wh_status_event_id(const wh_receipt_t *r, char out[CMN_UUID_STR_LEN + 1]);

/* Fills ev (zeroed first) from r for tenant: status and reason by
 * wh_status_map, event_id by wh_status_event_id, hop and attempt 0 when
 * unknown, details {"provider_status": ...} appended to details (a buffer
 * the caller owns and frees; ev->details_json points into it). ev borrows
 * from r and details. Returns 1 when there is an event, 0 when the status
 * is ignored, or a negative code. */
int wh_status_build(const wh_receipt_t *r, const char *tenant_id, cmn_status_event_t *ev, cmn_buf_t *details);

/* The crm.status key of ev: its communication_id, or its provider message
 * id when the receipt could not be tied to one. Borrowed from ev. */
const char *wh_status_key(const cmn_status_event_t *ev);

#endif
