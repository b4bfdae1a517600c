/* sms_request.h - the Twilio Messages API request of one SMS: its URL, its
 * application/x-www-form-urlencoded body and its StatusCallback URL.
 *
 *   POST {TWILIO_API_URL}/2010-04-01/Accounts/{AccountSid}/Messages.json
 *   Authorization: Basic base64(AccountSid:AuthToken)
 *   To=%2B33612345678&From=%2B14155552345&Body=...&StatusCallback=...&MediaUrl=...&MediaUrl=...
 *
 * Parameter names and shapes follow the CreateMessageRequest schema of
 * Twilio's OpenAPI description (twilio_api_v2010.json): MediaUrl is an array
 * sent as one repeated parameter per item, at most 10 items.
 *
 * Everything here is pure: no I/O, no clock, no global state. */
#ifndef SMS_REQUEST_H
#define SMS_REQUEST_H

#include <json-c/json.h>
#include <stddef.h>

#include "crm/buf.h"

/* Twilio accepts up to ten MediaUrl parameters per message. */
#define SMS_MAX_MEDIA 10
/* Longest URL accepted for a media item or the status callback. */
#define SMS_URL_MAX 2048
/* The context member that turns an SMS into an MMS: an array of URLs. */
#define SMS_CONTEXT_MEDIA_URLS "media_urls"

/* One message. Every pointer is borrowed for the call; NULL and "" both mean
 * "absent". */
typedef struct sms_request {
    const char *to;                    /* recipient, E.164; required */
    const char *from;                  /* sender number or alphanumeric id */
    const char *messaging_service_sid; /* MG...; From or this is required (both allowed) */
    const char *body;                  /* text; required unless there is media */
    const char *status_callback;       /* full callback URL */
    const char *const *media_urls;     /* n_media URLs */
    size_t n_media;
} sms_request_t;

/* Appends s form-encoded to out: ALPHA, DIGIT and "-._~" stay as they are,
 * a space becomes '+', every other byte %XX (upper-case hex), so UTF-8 text
 * travels byte for byte. Returns 0 or CMN_ERR_NOMEM. */
int sms_form_encode(cmn_buf_t *out, const char *s);

/* Appends "name=value" (both encoded), preceded by '&' when out is not
 * empty. A NULL or empty value appends nothing. Returns 0 or CMN_ERR_NOMEM. */
int sms_form_add(cmn_buf_t *out, const char *name, const char *value);

/* Writes the form body of r into out (reset first), parameters in the order
 * To, From, MessagingServiceSid, Body, StatusCallback, MediaUrl... Returns 0,
 * CMN_ERR_INVALID when r lacks To, lacks both From and MessagingServiceSid,
 * has neither Body nor media, or has more than SMS_MAX_MEDIA media, or
 * CMN_ERR_NOMEM. */
int sms_request_form(const sms_request_t *r, cmn_buf_t *out);

/* Writes api_base + "/2010-04-01/Accounts/" + account_sid + "/Messages.json"
 * into out (reset first); trailing slashes of api_base are dropped. Returns
 * 0, CMN_ERR_INVALID (api_base not an http(s) URL, or account_sid not an
 * "AC" + 32 hex SID) or CMN_ERR_NOMEM. */
int sms_request_url(const char *api_base, const char *account_sid, cmn_buf_t *out);

/* Writes the StatusCallback URL of one attempt into out (reset first):
 * base + ('?' or '&' when base already has a query) +
 * "communication_id=<id>&hop=<hop>&attempt=<attempt>". The webhook receiver
 * reads these three back, so the callback needs no lookup. Returns 0,
 * CMN_ERR_INVALID (base not an http(s) URL, or it has a fragment, or the
 * id is not a UUID), CMN_ERR_OVERFLOW (longer than SMS_URL_MAX) or
 * CMN_ERR_NOMEM. */
int sms_request_callback_url(const char *base, const char *communication_id, int hop, int attempt,
                             cmn_buf_t *out);

/* 1 when s is an absolute http:// or https:// URL with a host, at most
 * SMS_URL_MAX bytes, without spaces, control characters or a fragment. */
int sms_valid_http_url(const char *s);

/* 1 when s is a Twilio SID: the two-letter prefix then 32 hex digits. */
int sms_valid_sid(const char *s, const char *prefix);

/* Reads context.media_urls (context borrowed, may be NULL) into urls (at
 * most max entries, borrowed from context) and their count into *n. Absent
 * or an empty array gives *n = 0. Returns 0, or CMN_ERR_INVALID with a
 * one-line reason in errstr when it is not an array of http(s) URLs or has
 * more than max (or SMS_MAX_MEDIA) items. */
int sms_request_media_urls(json_object *context, const char **urls, size_t max, size_t *n, char *errstr,
                           size_t errlen);

#endif
