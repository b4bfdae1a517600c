/* status.h - StatusEvent v1 on crm.status, and the status ranking the
 * projector uses so that a late event never regresses a communication.
 *
 * {"v":1,"event_id":"uuid","communication_id":"uuid","request_id":"...","tenant_id":"...",
 *  "client_id":"...","message_type":"...","channel":"email","status":"sent","attempt":1,"hop":0,
 *  "provider":"smtp","provider_message_id":"...","error_code":"550","error_message":"...",
 *  "reason":"no_address","details":{"segments":2},"occurred_at":"RFC3339"}
 *
 * "details" is an optional JSON object of channel-specific facts (an SMS's
 * segment count and encoding, a provider's Retry-After); consumers that do
 * not know a member ignore it. It is not part of event_id: it describes the
 * event, it does not distinguish two events.
 *
 * event_id is UUIDv5(CMN_UUID_NS_EVENT, communication_id|status|channel|hop|attempt|discriminator),
 * so an event re-emitted after a crash has the same id and is stored once.
 *
 * Provider receipts (the webhook receiver): communication_id may be "" when
 * provider_message_id is set, for a receipt that carries no id of ours (a
 * Meta status without biz_opaque_callback_data that the receiver could not
 * look up either). Such an event is keyed on crm.status by its
 * provider_message_id, and consumers tie it to the communication whose
 * `sent` event has that provider_message_id. Receipt event ids are
 * UUIDv5(CMN_UUID_NS_EVENT, "receipt|"provider|provider_message_id|status|error_code)
 * (set by the receiver, not by cmn_status_event_finalize), so a webhook the
 * provider retries gives the same event_id whatever the receiver resolved. */
#ifndef CRM_STATUS_H
#define CRM_STATUS_H

#include <json-c/json.h>
#include <stdint.h>

#include "crm/buf.h"
#include "crm/channel.h"
#include "crm/uuid.h"

typedef enum cmn_status {
    CMN_STATUS_ACCEPTED = 0,
    CMN_STATUS_REJECTED,
    CMN_STATUS_ROUTED,
    CMN_STATUS_DEFERRED,
    CMN_STATUS_SUPPRESSED,
    CMN_STATUS_SENDING,
    CMN_STATUS_SENT,
    CMN_STATUS_DELIVERED,
    CMN_STATUS_READ,
    CMN_STATUS_OPENED,
    CMN_STATUS_CLICKED,
    CMN_STATUS_RETRY_SCHEDULED,
    CMN_STATUS_FALLBACK,
    CMN_STATUS_FAILED,
    CMN_STATUS_DEAD,
    CMN_STATUS__COUNT
} cmn_status_t;

const char *cmn_status_name(cmn_status_t s);
int cmn_status_parse(const char *s, cmn_status_t *out); /* 0 or CMN_ERR_INVALID */
/* Order within one hop: accepted 10 < deferred 15 < routed 20 < sending 30 <
 * retry_scheduled 35 < sent 40 < delivered 50 < opened 55 < read 60 <
 * clicked 65 < fallback 80 < failed 90 = suppressed 90 = rejected 90 < dead 95.
 * Across hops, a higher hop always wins. */
int cmn_status_rank(cmn_status_t s);
/* 1 when the communication has reached an end state: rejected, suppressed,
 * sent, delivered, read, opened, clicked, failed or dead. (A sent email may
 * still be opened later; "terminal" means no more sending will happen.) */
int cmn_status_is_terminal(cmn_status_t s);

typedef struct cmn_status_event {
    char event_id[CMN_UUID_STR_LEN + 1];
    char communication_id[CMN_UUID_STR_LEN + 1];
    const char *request_id, *tenant_id, *client_id, *message_type; /* borrowed */
    cmn_channel_t channel;         /* CMN_CHANNEL_NONE before routing */
    cmn_status_t status;
    int attempt, hop;
    const char *provider, *provider_message_id, *error_code, *error_message, *reason; /* borrowed, may be NULL */
    const char *discriminator;     /* extra input to event_id (e.g. provider event id), may be NULL */
    /* Borrowed, may be NULL: the text of a JSON object written as "details".
     * to_json refuses anything but an object (CMN_ERR_INVALID); from_json
     * points it at the compact text of the parsed member, owned by obj. */
    const char *details_json;
    int64_t occurred_at_ms;
} cmn_status_event_t;

/* Computes ev->event_id from its fields (call after filling them). */
int cmn_status_event_finalize(cmn_status_event_t *ev);
int cmn_status_event_to_json(const cmn_status_event_t *ev, cmn_buf_t *out);
/* Parses into ev; string fields borrow from obj, which must outlive ev.
 * communication_id absent or "" is accepted only with a non-empty
 * provider_message_id (ev->communication_id is then ""). */
int cmn_status_event_from_json(json_object *obj, cmn_status_event_t *ev, char *errstr, size_t errlen);

#endif
