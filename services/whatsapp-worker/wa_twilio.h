/* wa_twilio.h - WhatsApp through Twilio: the Messages API request of one
 * message, and Twilio's answers.
 *
 *   POST {TWILIO_API_URL}/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}/Messages.json
 *   Authorization: Basic base64(AccountSid:AuthToken)
 *   Content-Type: application/x-www-form-urlencoded
 *
 * Inside the 24-hour window:  To=whatsapp:+E164&From=whatsapp:+E164&Body=...[&MediaUrl=...]
 * Outside it (or on request): To=...&From=...&ContentSid=HX...&ContentVariables={"1":"..."}
 * plus StatusCallback when configured (it carries communication_id, hop and
 * attempt, like the SMS worker's, so the webhook receiver needs no lookup).
 * Twilio refuses Body together with ContentSid, so the two never travel
 * together. Parameter names are those of the CreateMessageRequest schema
 * (shared/oracles/twilio/twilio_api_v2010.json).
 *
 * 201: the Message resource {"sid":"SM...","status":"queued",...}.
 * 4xx/5xx: {"code":63016,"message":"...","more_info":"...","status":400},
 * classified by cmn_provider_classify_twilio (crm/provider_errors.h).
 *
 * Everything here is pure. */
#ifndef WA_TWILIO_H
#define WA_TWILIO_H

#include <stddef.h>

#include "crm/buf.h"

/* Twilio's limit on Body for WhatsApp. */
#define WA_TWILIO_BODY_MAX 1600
#define WA_TWILIO_TEXT_MAX 400
#define WA_TWILIO_ADDR_PREFIX "whatsapp:"

/* One message; every pointer is borrowed, NULL or "" means absent. */
typedef struct wa_twilio_msg {
    const char *to;                /* E.164 with '+' (the whatsapp: prefix is added here) */
    const char *from;              /* E.164 with '+' */
    const char *body;              /* free-form text, or the caption of media */
    const char *media_url;         /* image/document link */
    const char *content_sid;       /* template: HX... */
    const char *content_variables; /* template: JSON object text */
    const char *status_callback;   /* full callback URL */
} wa_twilio_msg_t;

/* Appends s form-encoded to out: ALPHA, DIGIT and "-._~" as they are, a
 * space as '+', every other byte as %XX. Returns 0 or CMN_ERR_NOMEM. */
int wa_form_encode(cmn_buf_t *out, const char *s);

/* Writes the form body of m into out (reset first), parameters in the order
 * To, From, Body, MediaUrl, ContentSid, ContentVariables, StatusCallback.
 * Returns 0; CMN_ERR_INVALID with the reason in errstr (To or From not
 * E.164, neither Body/MediaUrl nor ContentSid, both Body and ContentSid,
 * Body longer than 1600 characters); or CMN_ERR_NOMEM. */
int wa_twilio_form(const wa_twilio_msg_t *m, cmn_buf_t *out, char *errstr, size_t errlen);

/* api_base + "/2010-04-01/Accounts/" + account_sid + "/Messages.json" into
 * out (reset first). Returns 0, CMN_ERR_INVALID (api_base not http(s), or
 * account_sid not "AC" + 32 hex digits) or CMN_ERR_NOMEM. */
int wa_twilio_url(const char *api_base, const char *account_sid, cmn_buf_t *out);

/* base + ('?' or '&') + "communication_id=<id>&hop=<hop>&attempt=<attempt>"
 * into out (reset first). Returns 0, CMN_ERR_INVALID (base not http(s) or
 * with a fragment) or CMN_ERR_NOMEM. */
int wa_twilio_callback_url(const char *base, const char *communication_id, int hop, int attempt, cmn_buf_t *out);

/* 1 when s is a Twilio SID: prefix ("AC", "HX", "SM", "MM") then 32 hex digits. */
int wa_twilio_valid_sid(const char *s, const char *prefix);

/* The message sid of a 201 body into sid and its "status" into status ("" when
 * absent). Returns 0, or CMN_ERR_PARSE when there is no well-formed sid. */
int wa_twilio_parse_created(const char *body, size_t len, char *sid, size_t sidlen, char *status,
                            size_t statuslen);

typedef struct wa_twilio_error {
    long code;                          /* Twilio error code; 0 when absent */
    long status;                        /* the body's "status"; 0 when absent */
    char message[WA_TWILIO_TEXT_MAX];   /* phone numbers redacted */
    char more_info[256];
} wa_twilio_error_t;

/* Parses an error body ({code, message, more_info, status}, or an RFC 9457
 * problem with detail/title). Returns 0 when it carries a code or a
 * message, else CMN_ERR_PARSE; out is zeroed first either way. */
int wa_twilio_parse_error(const char *body, size_t len, wa_twilio_error_t *out);

#endif
