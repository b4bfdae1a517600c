/* sbx_api.h - the Twilio Messages API stand-in: authentication, validation
 * against the official schema, scripted failures, the 201 answer, and the
 * record of every request the tests read back.
 *
 * Endpoints (see docs/sms.md, "The Twilio sandbox"):
 *   POST   /2010-04-01/Accounts/{AccountSid}/Messages.json  create a message
 *   GET    /_sandbox/requests    every request received on the endpoint above,
 *                                as a JSON array, oldest first
 *   DELETE /_sandbox/requests    forget them
 *   GET    /_sandbox/callbacks   every status callback posted (with --callbacks)
 *   DELETE /_sandbox/callbacks   forget them
 *   GET    /_sandbox/accepted    how many sends were accepted (201) per
 *                                communication and hop, read from the
 *                                StatusCallback URL's communication_id and hop:
 *                                {"accepted":N,"by_id":{"<id>/<hop>":count}}
 *                                (kept apart from the request record, so it
 *                                never drops old entries); the chaos tests count
 *                                provider-side duplicates from it
 *   DELETE /_sandbox/accepted    forget them
 *
 * Checks on a create, in the order Twilio applies them (first failure wins):
 *   1. HTTP basic auth is the configured AccountSid:AuthToken      401 / 20003
 *   2. the path's AccountSid matches the spec's pattern and the     401 / 20003
 *      authenticated account (pattern: 404 / 20404)
 *   3. Content-Type is application/x-www-form-urlencoded            400 / 20001
 *      and the body decodes (escapes, UTF-8)
 *   4. every parameter is a property of CreateMessageRequest        400 / 20001
 *      ("Unknown parameter"), non-array ones appear once
 *   5. each value satisfies its property's type, enum, pattern,
 *      length and format: To 21211, From 21212, StatusCallback
 *      21609, MediaUrl 21620, anything else 20001                   400
 *   6. To is present (required by the spec)                         400 / 21604
 *      From or MessagingServiceSid is present (Twilio's docs)       400 / 21603
 *      Body, MediaUrl or ContentSid is present                      400 / 21602
 *      Body has at most 1600 characters                             400 / 21617
 *      at most 10 MediaUrl                                          400 / 21623
 *   7. the storm, when one is configured (sbx_storm.h): 500 / 20500,
 *      429 / 20429 with Retry-After, or an answer held longer than the
 *      client waits and then 503 / 20503 (a held send is never accepted, so
 *      a storm never makes a provider-side duplicate by itself)
 *   8. scripted failures by the To number (sbx_script_for)
 * Errors are Twilio's error body {code, message, more_info, status}.
 *
 * Thread-safe: the HTTP server calls sbx_api_handle from its worker threads;
 * the record is guarded by a mutex, everything else is read-only. */
#ifndef SBX_API_H
#define SBX_API_H

#include <stddef.h>

#include "crm/http.h"
#include "crm/log.h"
#include "sbx_form.h"
#include "sbx_spec.h"
#include "sbx_storm.h"

/* The longest Body Twilio accepts, in characters. */
#define SBX_BODY_MAX_CHARS 1600
#define SBX_MEDIA_MAX 10

typedef struct sbx_error {
    int http_status;
    long code;
    char message[512];
} sbx_error_t;

/* Validates a decoded form against schema (steps 4 to 6 above). Returns 0,
 * or -1 with err filled. Pure. */
int sbx_validate(const sbx_schema_t *schema, const sbx_form_t *form, sbx_error_t *err);

/* What a scripted recipient gets, keyed by the digits at the end of To:
 *   ...21211   400, 21211 invalid 'To' number
 *   ...21610   400, 21610 unsubscribed recipient (replied STOP)
 *   ...21614   400, 21614 'To' number is not a valid mobile number
 *   ...20429   429, 20429 too many requests, Retry-After: 7
 *   ...20500   500, 20500 internal server error
 *   ...20503   503, 20503 service unavailable, Retry-After: 2
 *   ...30006   201 accepted; with callbacks, delivery ends "undelivered"
 *              with ErrorCode 30006 (landline or unreachable carrier),
 *              which Twilio only ever reports asynchronously
 *   ...63016   201 accepted; with callbacks, a free-form (Body) WhatsApp
 *              message ends "failed" with ErrorCode 63016 (outside the
 *              24-hour window), reported asynchronously as Twilio does; a
 *              ContentSid template to the same number is delivered
 *   ...88DDDD  201, answered DDDD milliseconds late (e.g. ...883000: 3 s)
 * Returns 1 and fills out for a scripted number, else 0. Pure. */
typedef struct sbx_script {
    int http_status;     /* 201 for the accepted kinds */
    long code;           /* Twilio error code; 0 for none */
    const char *message; /* printf format with one %s for the To number, or a plain text */
    int retry_after_s;   /* 0: no Retry-After header */
    int delay_ms;        /* answer this late */
    long async_error;    /* 30006, 63016: fail in the status callbacks */
} sbx_script_t;
int sbx_script_for(const char *to, sbx_script_t *out);

/* The status callbacks an accepted message gets (with --callbacks), in
 * order, keyed by the digits at the end of To like the scripts:
 *   ...30003   queued, sent, undelivered 30003 (unreachable handset)
 *   ...30006   sent, undelivered 30006 (landline or unreachable carrier)
 *   ...30008   failed 30008 (unknown error)
 *   ...63016   free-form (no ContentSid): sent, failed 63016; a template
 *              (ContentSid) gets the default below
 *   ...00000   sent only: never a final receipt, for the receipt deadline
 *   otherwise  sent, delivered, and read for a whatsapp: address
 * Fills at most SBX_RECEIPTS_MAX and returns how many. Pure. */
#define SBX_RECEIPTS_MAX 4
typedef struct sbx_receipt {
    const char *status; /* MessageStatus: queued, sent, delivered, read, undelivered, failed */
    long error;         /* ErrorCode, 0 for none */
} sbx_receipt_t;
size_t sbx_receipts_for(const char *to, int has_content_sid, sbx_receipt_t out[SBX_RECEIPTS_MAX]);

/* Reads communication_id and hop from the query of a StatusCallback URL
 * ("...?communication_id=<uuid>&hop=1&attempt=2", as the workers write it).
 * id gets "" and *hop -1 when absent. Returns 1 when an id was found. Pure. */
int sbx_callback_ids(const char *url, char *id, size_t idlen, int *hop);

typedef struct sbx_api_config {
    const char *account_sid; /* borrowed */
    const char *auth_token;  /* borrowed, secret */
    int scripts;             /* 1: scripted failures on */
    int callbacks;           /* 1: post status callbacks to StatusCallback URLs */
    int callback_delay_ms;   /* between two callbacks of one message */
    size_t record_max;       /* requests kept for /_sandbox/requests (oldest dropped) */
    sbx_storm_cfg_t storm;   /* no storm when every share is 0 */
} sbx_api_config_t;

typedef struct sbx_api sbx_api_t;

/* cfg is copied (its strings stay borrowed); schema is borrowed and must
 * outlive the api; log is borrowed. Starts the callback thread when
 * callbacks are on. NULL with the reason in errstr. */
sbx_api_t *sbx_api_new(const sbx_api_config_t *cfg, const sbx_schema_t *schema, const cmn_log_t *log, char *errstr,
                       size_t errlen);
/* Stops the callback thread (pending callbacks are dropped) and frees. */
void sbx_api_destroy(sbx_api_t *api);

/* The cmn_http handler; ctx is the sbx_api_t. */
void sbx_api_handle(void *ctx, const cmn_http_request_t *req, cmn_http_response_t *resp);

#endif
