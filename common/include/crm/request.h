/* request.h - CommunicationRequest v1: parsing, validation, serialisation.
 *
 * Ingest validates requests from HTTP and the router validates records that
 * upstream services produce straight to Kafka, with the same code, so both
 * paths accept exactly the same inputs. Validation collects every bad field
 * (it does not stop at the first) as {"field": "recipient.phone", "reason":
 * "must be an E.164 number like +14155550100"} objects.
 *
 * Wire format (JSON):
 * {"v":1,"request_id":"...","tenant_id":"default","client_id":"...","plan_id":"...",
 *  "message_type":"appointment_reminder","urgency":"normal",
 *  "recipient":{"name":"...","email":"...","phone":"+1...","whatsapp":"+1...",
 *               "timezone":"Europe/Paris","locale":"fr-FR","preferred_channels":["sms","email"]},
 *  "channels":["email"],"template":"...","context":{...},"attachments":[...],
 *  "send_after":"RFC3339","expires_at":"RFC3339",
 *  "communication_id":"uuid","received_at":"RFC3339"}   <- last two added by ingest/router
 */
#ifndef CRM_REQUEST_H
#define CRM_REQUEST_H

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

#include "crm/buf.h"
#include "crm/channel.h"
#include "crm/uuid.h"

/* Size limits, enforced by validation. */
#define CMN_REQ_MAX_ID 128            /* request_id, client_id, plan_id, tenant_id, message_type, template */
#define CMN_REQ_MAX_NAME 256
#define CMN_REQ_MAX_EMAIL 254
#define CMN_REQ_MAX_CONTEXT_BYTES 65536
#define CMN_REQ_MAX_ATTACHMENTS 10
#define CMN_REQ_MAX_ATTACHMENT_BYTES (10 * 1024 * 1024) /* decoded, per attachment */

typedef struct cmn_recipient {
    char *name, *email, *phone, *whatsapp, *timezone, *locale; /* owned; NULL when absent */
    cmn_channel_t preferred[CMN_CHANNEL__COUNT];
    size_t n_preferred;
} cmn_recipient_t;

typedef struct cmn_request {
    int v;
    char *request_id, *tenant_id, *client_id, *plan_id, *message_type, *template_name; /* owned */
    cmn_urgency_t urgency;
    cmn_recipient_t recipient;
    cmn_channel_t channels[CMN_CHANNEL__COUNT]; /* explicit order, n_channels == 0 when absent */
    size_t n_channels;
    json_object *context;      /* owned reference or NULL */
    json_object *attachments;  /* owned reference or NULL: [{"filename","content_type","content_base64"}] */
    int64_t send_after_ms;     /* 0 when absent */
    int64_t expires_at_ms;     /* 0 when absent */
    char communication_id[CMN_UUID_STR_LEN + 1]; /* derived from tenant_id and request_id */
    int64_t received_at_ms;    /* set by whoever accepted it first; 0 when unknown */
} cmn_request_t;

/* Validates obj and fills out (which must be zeroed). Each problem is
 * appended to errors (a json-c array the caller owns) with field names
 * prefixed by prefix (e.g. "requests[3]." or ""). Returns 0 or
 * CMN_ERR_INVALID. On error out may be partly filled: always call
 * cmn_request_clear(). Derives communication_id. Defaults: tenant_id
 * "default", urgency normal, v 1. */
int cmn_request_from_json(json_object *obj, const char *prefix, cmn_request_t *out, json_object *errors);

/* Appends the normalised request (defaults filled, including
 * communication_id and received_at when set) as compact JSON to out. r is
 * borrowed. Do not serialise the same r from two threads at once: it takes
 * references on context/attachments and json-c reference counts are not atomic. */
int cmn_request_to_json(const cmn_request_t *r, cmn_buf_t *out);

/* Frees everything r owns and zeroes it. */
void cmn_request_clear(cmn_request_t *r);

/* Validates a recipient object (the "recipient" of a request or dispatch)
 * and fills out (zeroed). prefix is the full field prefix of its members,
 * e.g. "requests[3].recipient." or "recipient."; problems are appended to
 * errors as for cmn_request_from_json (errors may be NULL to only count).
 * Returns 0, CMN_ERR_INVALID or CMN_ERR_NOMEM; always cmn_recipient_clear(). */
int cmn_recipient_from_json(json_object *obj, const char *prefix, cmn_recipient_t *out, json_object *errors);
/* A new json-c object for r (absent members omitted); the caller puts it.
 * NULL when out of memory. */
json_object *cmn_recipient_to_json_object(const cmn_recipient_t *r);

/* Writes the canonical case of a valid locale ("pt-br" -> "pt-BR",
 * "zh-hant-tw" -> "zh-Hant-TW") into out. Returns 0, or CMN_ERR_INVALID when
 * s is not a valid locale or out is too small. Templates are looked up by
 * locale, so every accepted locale is stored in this one spelling. */
int cmn_locale_normalize(const char *s, char *out, size_t outlen);

/* Field validators, exposed for reuse and unit tests: 1 when valid. */
int cmn_valid_e164(const char *s);          /* + then 2..15 digits, first digit 1-9 */
int cmn_valid_email(const char *s);         /* RFC 5321 addr-spec, pragmatic subset, <= 254 chars */
int cmn_valid_timezone(const char *s);      /* IANA id known to ICU (canonical or alias) */
int cmn_valid_locale(const char *s);        /* BCP 47 like "en", "fr-CA", "pt-BR" */
int cmn_valid_id(const char *s, size_t max);/* 1..max printable ASCII, no spaces or control chars */
int cmn_valid_message_type(const char *s);  /* [a-z0-9_.-]{1,64}, not starting with '.' (it names a directory) */
int cmn_valid_template_name(const char *s); /* [A-Za-z0-9_.-]{1,128}, not starting with '.' */

#endif
