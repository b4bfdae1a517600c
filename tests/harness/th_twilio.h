/* th_twilio.h - the Twilio sandbox (tools/sandbox-twilio, crm-sandbox-twilio)
 * for the tests: a Messages API stand-in that validates requests against
 * Twilio's official OpenAPI file, fails on purpose for scripted numbers and
 * records every request it received (see docs/sms.md).
 *
 * Scripted recipients (the digits at the end of To): ...21211 invalid
 * number (400), ...21610 unsubscribed (400), ...21614 not a mobile number
 * (400), ...20429 429 with Retry-After: 7, ...20500 500, ...20503 503 with
 * Retry-After: 2, ...30006 accepted then undelivered 30006 in the
 * callbacks, ...88DDDD answered DDDD ms late. */
#ifndef TH_TWILIO_H
#define TH_TWILIO_H

#include <json-c/json.h>
#include <stddef.h>

#include "th_proc.h"

/* The account the sandbox accepts: a SID of the spec's shape and a token. */
#define TH_TWILIO_ACCOUNT_SID "AC0123456789abcdef0123456789abcdef"
#define TH_TWILIO_AUTH_TOKEN "sandbox-token-5f1d2c"

typedef struct th_twilio {
    th_proc_t proc;
    int port;
    char url[64]; /* "http://127.0.0.1:<port>": the worker's TWILIO_API_URL */
    int running;
} th_twilio_t;

/* Starts the sandbox on a free port with the official spec from shared/.
 * extra_args is NULL or a NULL-terminated list of more options (e.g.
 * "--callbacks"). Returns 0 once it answers, or -1. */
int th_twilio_start(th_twilio_t *t, const char *const *extra_args);
void th_twilio_stop(th_twilio_t *t);

/* GET /_sandbox/requests: a new json-c array (the caller puts it), or NULL. */
json_object *th_twilio_requests(const th_twilio_t *t);
/* Waits until at least n requests were recorded (or timeout_ms) and returns
 * them as th_twilio_requests does. */
json_object *th_twilio_wait_requests(const th_twilio_t *t, size_t n, int timeout_ms);
/* DELETE /_sandbox/requests. Returns 0 or -1. */
int th_twilio_reset(const th_twilio_t *t);

/* The recorded request whose params.To is to (borrowed from arr), or NULL;
 * *count gets how many there are. */
json_object *th_twilio_find(json_object *arr, const char *to, int *count);

/* POSTs body to url with basic auth user:password (user NULL: no auth) and
 * the given Content-Type (NULL: form). Fills *status, the response body into
 * out and the Retry-After header value into retry_after (may be NULL).
 * Returns 0 or -1 when no HTTP answer came. */
int th_twilio_post(const char *url, const char *user, const char *password, const char *content_type,
                   const char *body, long *status, char *out, size_t outlen, char *retry_after,
                   size_t retry_after_len);

/* The Messages.json URL of account sid at base. Static buffer per call site: copy it. */
const char *th_twilio_messages_url(const char *base, const char *sid, char *out, size_t outlen);

#endif
