/* dispatch.h - Dispatch v1: one attempt on one channel, with the fallback plan.
 *
 * Produced by the router to crm.send.<channel>, consumed by that channel's
 * worker. It carries the whole recipient so a fallback hop can address the
 * next channel without a lookup.
 * {"v":1,"communication_id":"...","request_id":"...","tenant_id":"...","client_id":"...",
 *  "message_type":"...","urgency":"normal","channel":"email","attempt":1,"hop":0,
 *  "to":"ana@example.com","recipient":{...as in the request...},"template":"...",
 *  "locale":"fr-FR","context":{...},"attachments":[...],"fallback":["sms"],
 *  "deadline":"RFC3339","created_at":"RFC3339"}
 */
#ifndef CRM_DISPATCH_H
#define CRM_DISPATCH_H

#include <json-c/json.h>
#include <stdint.h>

#include "crm/buf.h"
#include "crm/channel.h"
#include "crm/request.h"

typedef struct cmn_dispatch {
    int v;
    char communication_id[CMN_UUID_STR_LEN + 1];
    char *request_id, *tenant_id, *client_id, *message_type, *template_name, *locale, *to; /* owned */
    cmn_urgency_t urgency;
    cmn_channel_t channel;
    int attempt;   /* 1-based, per channel */
    int hop;       /* 0 for the first channel, +1 per fallback */
    cmn_recipient_t recipient;
    json_object *context;      /* owned reference or NULL */
    json_object *attachments;  /* owned reference or NULL */
    cmn_channel_t fallback[CMN_CHANNEL__COUNT];
    size_t n_fallback;
    int64_t deadline_ms;       /* 0 = none */
    int64_t created_at_ms;
} cmn_dispatch_t;

/* Parses and checks required fields; on error returns CMN_ERR_INVALID with
 * the reason in errstr. d must be zeroed; call cmn_dispatch_clear() always. */
int cmn_dispatch_from_json(json_object *obj, cmn_dispatch_t *d, char *errstr, size_t errlen);
int cmn_dispatch_to_json(const cmn_dispatch_t *d, cmn_buf_t *out);
void cmn_dispatch_clear(cmn_dispatch_t *d);

/* Returns the recipient's address for channel c (borrowed) or NULL. */
const char *cmn_recipient_address(const cmn_recipient_t *r, cmn_channel_t c);
/* Deep copy of a recipient into dst (zeroed); free with cmn_recipient_clear. */
int cmn_recipient_copy(cmn_recipient_t *dst, const cmn_recipient_t *src);
void cmn_recipient_clear(cmn_recipient_t *r);

#endif
