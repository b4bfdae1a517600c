/* inbound.h - InboundMessage v1: a message a person sent us (an SMS or a
 * WhatsApp reply), as the webhook receiver produces it to crm.inbound (key
 * "<tenant_id>:<from>") and the projector stores it.
 *
 * {"v":1,"event_id":"<uuid>","tenant_id":"default","channel":"sms",
 *  "provider":"twilio","provider_message_id":"SM...","from":"+33612345678",
 *  "to":"+15005550006","body":"STOP","keyword":"stop",
 *  "media":[{"url":"https://...","content_type":"image/jpeg"}],
 *  "profile_name":"Ana","received_at":"2026-11-22T10:00:00.000Z"}
 *
 * event_id is UUIDv5 of (provider, provider_message_id), so a webhook the
 * provider delivers twice becomes the same event and is stored once.
 * keyword is the recognised command (opt-out / opt-in / help) or absent.
 * The record carries personal data in clear on Kafka (like requests do); the
 * projector encrypts body, from and profile_name before they reach
 * PostgreSQL (crm/crypto.h). */
#ifndef CRM_INBOUND_H
#define CRM_INBOUND_H

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

#include "crm/buf.h"
#include "crm/channel.h"
#include "crm/uuid.h"

typedef enum cmn_inbound_keyword {
    CMN_KEYWORD_NONE = 0,
    CMN_KEYWORD_STOP,  /* STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT */
    CMN_KEYWORD_START, /* START, YES, UNSTOP */
    CMN_KEYWORD_HELP   /* HELP (and INFO) */
} cmn_inbound_keyword_t;

/* "stop", "start", "help"; NULL for NONE. */
const char *cmn_inbound_keyword_name(cmn_inbound_keyword_t k);

/* Recognises a command the way carriers and Twilio do: the whole body,
 * trimmed of surrounding white space and punctuation, case-insensitive
 * ("Stop", " STOP. " are STOP; "stop sending me this" is not). Pure. */
cmn_inbound_keyword_t cmn_inbound_keyword_parse(const char *body);

#define CMN_INBOUND_MEDIA_MAX 10

typedef struct cmn_inbound_media {
    char *url;          /* owned */
    char *content_type; /* owned, may be NULL */
} cmn_inbound_media_t;

typedef struct cmn_inbound {
    int v;
    char event_id[CMN_UUID_STR_LEN + 1];
    char *tenant_id, *provider, *provider_message_id, *from, *to, *body, *profile_name; /* owned; body/profile_name may be NULL */
    cmn_channel_t channel;              /* SMS or WHATSAPP */
    cmn_inbound_keyword_t keyword;
    cmn_inbound_media_t media[CMN_INBOUND_MEDIA_MAX];
    size_t n_media;
    int64_t received_at_ms;
} cmn_inbound_t;

/* Fills event_id from provider and provider_message_id (both required).
 * Returns 0 or CMN_ERR_INVALID. */
int cmn_inbound_set_event_id(cmn_inbound_t *m);

/* Parses and validates (v == 1, required: event_id, channel, provider,
 * provider_message_id, from, received_at; tenant_id defaults to "default").
 * On error returns CMN_ERR_INVALID with a one-line reason naming the field
 * in errstr; *m is then cleared. */
int cmn_inbound_from_json(json_object *obj, cmn_inbound_t *m, char *errstr, size_t errlen);

/* Appends the canonical JSON to out. Returns 0 or a negative code. */
int cmn_inbound_to_json(const cmn_inbound_t *m, cmn_buf_t *out);

/* The crm.inbound key "<tenant_id>:<from>" into out. Returns 0 or
 * CMN_ERR_OVERFLOW. */
int cmn_inbound_key(const cmn_inbound_t *m, char *out, size_t outlen);

/* Frees the owned strings and zeroes *m. NULL is a no-op. */
void cmn_inbound_clear(cmn_inbound_t *m);

#endif
