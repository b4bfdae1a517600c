/* preferences.h - ClientPreferences v1: a client's channel preferences,
 * opt-outs, WhatsApp consent, quiet hours, time zone and locale.
 *
 * The snapshot lives on the compacted topic crm.preferences under the key
 * "<tenant_id>:<client_id>" (latest value wins; a tombstone erases the
 * client). Ingest and the webhook receiver produce it, the projector stores
 * it and the router reads it to route. Every record is a full snapshot, not
 * a patch, so a compacted topic alone can rebuild every client's state.
 *
 * Wire format (JSON):
 * {"v":1,"tenant_id":"default","client_id":"c-42",
 *  "preferred_channels":["whatsapp","email"],
 *  "timezone":"Europe/Paris",
 *  "quiet_hours":{"start":"21:00","end":"08:00"},
 *  "opt_out":{"email":false,"sms":true,"whatsapp":false},
 *  "whatsapp_consent":{"granted":true,"at":"2026-03-01T10:00:00Z","source":"web_form"},
 *  "locale":"fr-FR",
 *  "updated_at":"2026-03-01T10:00:00Z"}
 *
 * Rules (validation collects every problem, each as {"field","reason"} with
 * a JSON-path-like field name, exactly like cmn_request_from_json()):
 *  - v: optional, must be the integer 1.
 *  - tenant_id: optional (default "default"), an id without ':' (it is the
 *    first half of the key). client_id: required id (1-128 printable ASCII).
 *  - preferred_channels: optional array of distinct channel names; [] and
 *    absent both mean "no preference".
 *  - timezone: optional IANA id known to ICU; required when quiet_hours is
 *    set, since quiet hours cannot be honoured without it.
 *  - quiet_hours: optional {"start","end"}, both required "HH:MM" (see
 *    crm/quiet_hours.h; start == end means none).
 *  - opt_out: optional object of optional booleans email/sms/whatsapp;
 *    missing members mean "not opted out".
 *  - whatsapp_consent: optional {"granted": bool (required), "at": RFC 3339,
 *    "source": id of 1-64 printable ASCII}; at and source are required when
 *    granted is true, because an opt-in without when and how it was given is
 *    not proof of consent (WhatsApp Business policy).
 *  - locale: optional BCP 47 tag, stored in canonical case ("pt-br" -> "pt-BR").
 *  - updated_at: required RFC 3339; consumers keep the newest snapshot.
 *  - unknown members are refused everywhere (a typo is reported, not
 *    silently ignored).
 * JSON null counts as absent for optional members.
 */
#ifndef CRM_PREFERENCES_H
#define CRM_PREFERENCES_H

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

#include "crm/buf.h"
#include "crm/channel.h"
#include "crm/quiet_hours.h"
#include "crm/request.h"

/* Longest key plus NUL: two ids of CMN_REQ_MAX_ID and the ':'. */
#define CMN_PREFS_KEY_MAX (CMN_REQ_MAX_ID + 1 + CMN_REQ_MAX_ID + 1)
#define CMN_PREFS_MAX_SOURCE 64

typedef struct cmn_whatsapp_consent {
    int present;    /* 0: no consent record at all (treated as not granted) */
    int granted;
    int64_t at_ms;  /* 0 when absent */
    char *source;   /* owned; NULL when absent */
} cmn_whatsapp_consent_t;

typedef struct cmn_preferences {
    int v;
    char *tenant_id, *client_id;       /* owned */
    cmn_channel_t preferred[CMN_CHANNEL__COUNT];
    size_t n_preferred;
    char *timezone;                    /* owned; NULL when absent */
    int has_quiet_hours;
    cmn_quiet_window_t quiet_hours;    /* meaningful when has_quiet_hours */
    unsigned char opt_out[CMN_CHANNEL__COUNT]; /* 1: opted out of that channel */
    cmn_whatsapp_consent_t whatsapp_consent;
    char *locale;                      /* owned, canonical case; NULL when absent */
    int64_t updated_at_ms;
} cmn_preferences_t;

/* Validates obj and fills out (which must be zeroed). Each problem is
 * appended to errors (a json-c array the caller owns; may be NULL to only get
 * the verdict) with field names prefixed by prefix (e.g. "items[3]." or "";
 * NULL means ""). obj is borrowed; out owns copies of every string. Returns
 * 0, CMN_ERR_INVALID or CMN_ERR_NOMEM. On error out may be partly filled:
 * always call cmn_preferences_clear(). */
int cmn_preferences_from_json(json_object *obj, const char *prefix, cmn_preferences_t *out, json_object *errors);

/* Appends p as compact JSON to out, with every default made explicit
 * (tenant_id, v, all three opt_out members, preferred_channels even when
 * empty), so a snapshot read back is the same snapshot. p is borrowed.
 * Returns 0, CMN_ERR_INVALID (NULL argument) or CMN_ERR_NOMEM. */
int cmn_preferences_to_json(const cmn_preferences_t *p, cmn_buf_t *out);

/* Frees everything p owns and zeroes it. NULL is fine. */
void cmn_preferences_clear(cmn_preferences_t *p);

/* Writes the crm.preferences key "<tenant_id>:<client_id>" into out
 * (CMN_PREFS_KEY_MAX bytes always suffice). tenant_id NULL means "default".
 * Returns 0; CMN_ERR_INVALID when either id is not a valid id or the tenant
 * contains ':' (the key would be ambiguous); CMN_ERR_OVERFLOW when outlen is
 * too small. */
int cmn_preferences_key(const char *tenant_id, const char *client_id, char *out, size_t outlen);

/* Splits a key (len bytes, not NUL-terminated, borrowed) at its first ':'
 * into tenant and client, each NUL-terminated into buffers of at least
 * CMN_REQ_MAX_ID + 1 bytes given by their lengths. Meant for tombstones,
 * which carry only the key. Returns 0, CMN_ERR_INVALID (no ':' or an invalid
 * id) or CMN_ERR_OVERFLOW. */
int cmn_preferences_key_parse(const void *key, size_t len, char *tenant, size_t tenantlen, char *client,
                              size_t clientlen);

/* 1 when the client opted out of channel c. 0 for NULL or an unknown channel. */
int cmn_preferences_opted_out(const cmn_preferences_t *p, cmn_channel_t c);

/* 1 when the snapshot records a WhatsApp opt-in that is granted. */
int cmn_preferences_whatsapp_consented(const cmn_preferences_t *p);

#endif
