/* msbx_api.h - the WhatsApp Cloud API stand-in: authentication, the path,
 * validation against Meta's examples (msbx_shape.h), scripted failures, the
 * official success answer, and the record of every request for the tests.
 *
 * Endpoints (docs/whatsapp.md, "The Meta sandbox"):
 *   POST   /{version}/{phone-number-id}/messages   send a message
 *   GET    /_sandbox/requests   every POST received, oldest first, as a JSON
 *                               array of {seq, received_at, path, status,
 *                               error_code?, wamid?, body} (body parsed when
 *                               it is JSON); the Authorization header is
 *                               never recorded
 *   DELETE /_sandbox/requests   forget them
 *   GET    /_sandbox/accepted   how many sends were accepted (200) per
 *                               communication, read from biz_opaque_callback_data:
 *                               {"accepted":N,"by_id":{"<id>":count}}; kept
 *                               apart from the request record (never drops
 *                               old entries); the chaos tests count
 *                               provider-side duplicates from it
 *   DELETE /_sandbox/accepted   forget them
 *   GET    /_sandbox/webhooks   every status webhook posted (with a webhook
 *                               URL): {posted_at, status, wamid, body,
 *                               response_status, error?}
 *   DELETE /_sandbox/webhooks   forget them
 *
 * Checks on a send, first failure wins (answers use the Graph error
 * envelope {"error":{"message","type","code","error_subcode"?,"error_data"?:
 * {"messaging_product","details"},"fbtrace_id"}}):
 *   1. Authorization is "Bearer <configured token>"          401, code 190
 *   2. the version is the configured one                      400, code 100
 *   3. the phone-number id is the configured one              400, code 100, subcode 33
 *   4. Content-Type application/json, body is JSON            400, code 100
 *   5. msbx_check: shape and values                           400, code 100, details = the reason
 *   6. the storm, when one is configured (sbx_storm.h): 500 with code
 *      131000, 429 with code 130429 and Retry-After, or an answer held
 *      longer than the client waits and then 503 with code 131000 (a held
 *      send is never accepted, so a storm never makes a duplicate by itself)
 *   7. scripted failures by `to` (msbx_script_for)
 * After a success, with a webhook URL, the statuses of msbx_receipts_for
 * (msbx_webhook.h) are posted to it one after the other, signed with the
 * app secret (X-Hub-Signature-256), like Meta's status webhooks.
 * Success: 200 {"messaging_product":"whatsapp","contacts":[{"input","wa_id"}],
 * "messages":[{"id":"wamid...."}]}, the shape of the official example.
 *
 * Thread-safe: the HTTP server calls msbx_api_handle from its worker
 * threads; the record is guarded by a mutex, everything else is read-only. */
#ifndef MSBX_API_H
#define MSBX_API_H

#include <stddef.h>

#include "crm/http.h"
#include "crm/log.h"
#include "msbx_shape.h"
#include "sbx_storm.h"

/* What a scripted recipient gets, keyed by the digits at the end of `to`:
 *   ...131047   400, 131047 re-engagement message (outside the 24-hour window)
 * (...131026, message undeliverable, is accepted and fails in the status
 * webhook, as Meta reports it: msbx_webhook.h.)
 *   ...131056   400, 131056 (business, consumer) pair rate limit
 *   ...130429   429, 130429 rate limit hit (Cloud API throughput)
 *   ...131000   500, 131000 something went wrong
 *   ...500500   500 with a body that is not JSON (a proxy's error page)
 *   ...88DDDD   200, answered DDDD milliseconds late (e.g. ...883000: 3 s)
 * Returns 1 and fills out for a scripted number, else 0. Pure. */
typedef struct msbx_script {
    int http_status;     /* 200 for the slow success */
    long code;           /* Graph error code; 0 for none */
    const char *message; /* error.message */
    const char *details; /* error.error_data.details; NULL for none */
    int raw;             /* 1: answer a plain-text body instead of JSON */
    int delay_ms;
} msbx_script_t;
int msbx_script_for(const char *to, msbx_script_t *out);

typedef struct msbx_api_config {
    const char *access_token;    /* borrowed, secret */
    const char *api_version;     /* borrowed, e.g. "v23.0" */
    const char *phone_number_id; /* borrowed */
    int scripts;                 /* 1: scripted failures on */
    size_t record_max;           /* requests kept (oldest dropped) */
    sbx_storm_cfg_t storm;       /* no storm when every share is 0 */
    const char *webhook_url;     /* borrowed; NULL or "": no status webhooks */
    const char *app_secret;      /* borrowed, secret; signs the webhooks */
    int webhook_delay_ms;        /* between two statuses of one message */
    const char *waba_id;         /* borrowed: entry[0].id of the webhooks */
    const char *display_phone_number; /* borrowed: metadata of the webhooks */
} msbx_api_config_t;

typedef struct msbx_api msbx_api_t;

/* cfg is copied (its strings stay borrowed); ex and log are borrowed and
 * must outlive the api. Starts the webhook thread when a webhook URL is
 * set (an app secret is then required). NULL with the reason in errstr. */
msbx_api_t *msbx_api_new(const msbx_api_config_t *cfg, const msbx_examples_t *ex, const cmn_log_t *log,
                         char *errstr, size_t errlen);
/* Stops the webhook thread (pending webhooks are dropped) and frees. */
void msbx_api_destroy(msbx_api_t *api);

/* The cmn_http handler; ctx is the msbx_api_t. */
void msbx_api_handle(void *ctx, const cmn_http_request_t *req, cmn_http_response_t *resp);

#endif
