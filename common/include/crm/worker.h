/* worker.h - the channel-agnostic core of a sending worker (email, SMS,
 * WhatsApp).
 *
 * A worker consumes Dispatch records from crm.send.<channel> in batches and,
 * for each batch:
 *   1. parses every record; a malformed one, or one for another channel, is
 *      copied to crm.dlq with the reason in its headers (nothing crashes);
 *   2. asks the channel to prepare each dispatch (render, build the request);
 *      a permanent problem there becomes a `failed` status at once;
 *   3. emits `sending` for every prepared dispatch;
 *   4. takes a token from the sender's rate limiter (when the worker has a
 *      rate), then runs the transfers concurrently on one libcurl multi
 *      handle, at most max_in_flight at a time, and classifies each finished
 *      transfer through the channel's classifier;
 *   5. plans what follows each attempt with cmn_outcome_plan() (crm/outcome.h)
 *      and applies it:
 *        sent      -> `sent`, and, on a channel with delivery receipts
 *                     (SMS, WhatsApp) whose Dispatch still has a fallback
 *                     plan, a receipt watch (crm/receipt.h): the next
 *                     hop's Dispatch (hop + 1, attempt 1, the rest of the
 *                     plan) parked on crm.defer.<tier> with x-crm-due-at
 *                     (the first check), x-crm-target crm.send.<next>,
 *                     x-crm-guard and the traceparent; the router's defer
 *                     consumer sends it on after a failed receipt or a
 *                     missed receipt deadline, and drops it otherwise;
 *        retry     -> `retry_scheduled`, and the Dispatch with attempt + 1
 *                     produced to the retry tier for its due time
 *                     (crm.retry.<channel>.<tier>, headers x-crm-due-at and
 *                     x-crm-target, traceparent kept);
 *        fallback  -> `fallback` (details {"from":..,"to":..}), and the
 *                     Dispatch for the next channel of the plan (hop + 1,
 *                     attempt 1) produced to crm.send.<next>;
 *        failed    -> `failed` (permanent, nothing to fall back to);
 *        dead      -> `dead`, and a copy of the Dispatch on crm.dlq with the
 *                     reason ("retries exhausted: 5 attempts on sms, ...");
 *   6. waits until Kafka acknowledged every status, Dispatch and DLQ copy of
 *      the batch, and only then commits the batch's offsets (at-least-once).
 *      When the acknowledgements do not come, the batch is rewound and
 *      redelivered.
 * On cmn_stop_requested the loop stops polling, but the batch in hand is
 * finished first (its transfers complete, statuses are emitted and
 * acknowledged, offsets committed), so a SIGTERM never loses or repeats work.
 *
 * Rate limiting: a message whose sender has no token left is not dropped
 * and does not fail; it stays in memory with the batch and starts as soon as
 * its token is due, while messages of other senders go ahead. While a batch
 * waits for tokens, the batch's partitions are paused so librdkafka stops
 * prefetching them, and they are resumed when the batch is done. Because a
 * batch then lives longer than usual, the consumer's max.poll.interval.ms is
 * raised to cover the slowest possible batch (batch_size / rate), unless
 * kafka_extra sets it. See docs/channels.md.
 *
 * The channel plugs in through cmn_worker_channel_t:
 *   prepare  -> build the message (render, request body); may fail at once;
 *   submit   -> hand over a configured libcurl easy handle;
 *   classify -> turn the finished transfer (CURLcode, response code, body,
 *               headers, Retry-After) into a cmn_worker_result_t:
 *                 sent      (provider_message_id, detail)
 *                 retryable (error_code, error_message, retry_after_ms)
 *                 permanent (error_code, error_message, reason token);
 *   release  -> free the message.
 * Optional: sender (the rate-limit key of a message) and capture_response
 * (the core records the response body and headers for classify).
 *
 * Threading: cmn_worker_run() runs on one thread, and every channel callback
 * is called on it; only cmn_worker_is_ready() may be called from others (the
 * HTTP server's /readyz). */
#ifndef CRM_WORKER_H
#define CRM_WORKER_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>

#include "crm/dispatch.h"
#include "crm/log.h"
#include "crm/metrics.h"
#include "crm/receipt.h"

typedef enum cmn_worker_class {
    CMN_WORKER_SENT = 0,      /* the provider accepted the message */
    CMN_WORKER_RETRYABLE = 1, /* a later attempt may succeed (network, timeout, 429, 5xx, SMTP 4xx) */
    CMN_WORKER_PERMANENT = 2  /* no attempt on this channel will succeed (bad address, unsubscribed) */
} cmn_worker_class_t;

/* "sent", "retryable", "permanent" (also the metrics label values). */
const char *cmn_worker_class_name(cmn_worker_class_t c);

#define CMN_WORKER_ID_MAX 320
#define CMN_WORKER_CODE_MAX 64
#define CMN_WORKER_TEXT_MAX 512
#define CMN_WORKER_REASON_MAX 64
#define CMN_WORKER_DETAILS_MAX 1024

/* The outcome of one attempt, filled by the channel. All strings are
 * NUL-terminated and empty when unused; the core zeroes the struct before
 * prepare. How the core maps it onto status events:
 *   every status: provider_message_id when set, details_json when set;
 *   sent:   reason = detail;
 *   retry_scheduled, fallback, failed, dead: error_code and error_message
 *           of the failed attempt;
 *   retry_scheduled, fallback, dead after a retryable failure: details
 *           also hold retry_after_ms when the provider gave one;
 *   retry_scheduled: details also hold next_attempt, due_at (RFC 3339),
 *           delay_ms and topic (the tier);
 *   fallback: reason = reason (permanent) or why the retries ended
 *           ("attempts_exhausted", "deadline_exceeded"); details also hold
 *           from, to, why, and skipped (plan channels without an address);
 *   failed: reason = reason;
 *   dead:   reason = "attempts_exhausted" or "deadline_exceeded"; details
 *           also hold attempts. */
typedef struct cmn_worker_result {
    cmn_worker_class_t cls;
    char provider_message_id[CMN_WORKER_ID_MAX]; /* the provider's id for the message (Twilio SM..., wamid....) */
    char error_code[CMN_WORKER_CODE_MAX];        /* failed: the provider's code ("21610", "550") or ours ("no_template") */
    char error_message[CMN_WORKER_TEXT_MAX];     /* failed: the provider's text or our reason */
    char detail[CMN_WORKER_TEXT_MAX];            /* sent: provider detail kept with the event ("smtp_reply: 250 ...") */
    char reason[CMN_WORKER_REASON_MAX];          /* permanent: short token ("unsubscribed", "landline") */
    int64_t retry_after_ms;                      /* retryable: the provider's wait hint; 0 when none */
    /* A JSON object with extra facts for the status events of this message
     * (e.g. {"segments":2,"encoding":"GSM-7"}); "" when none. prepare may set
     * it (it then appears on sending too) and classify may replace it. An
     * invalid text makes the status unproducible, so keep it well-formed. */
    char details_json[CMN_WORKER_DETAILS_MAX];
} cmn_worker_result_t;

/* Fills res as a failure of class cls with code and a printf message. */
void cmn_worker_result_fail(cmn_worker_result_t *res, cmn_worker_class_t cls, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* A retryable failure; retry_after_ms is the provider's hint (0 for none). */
void cmn_worker_result_retry(cmn_worker_result_t *res, const char *code, int64_t retry_after_ms, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* A permanent failure with its short reason token (may be NULL). */
void cmn_worker_result_permanent(cmn_worker_result_t *res, const char *code, const char *reason, const char *fmt,
                                 ...) __attribute__((format(printf, 4, 5)));
/* Success: provider_message_id (NULL keeps what prepare set) and a printf
 * detail (fmt NULL for none). */
void cmn_worker_result_sent(cmn_worker_result_t *res, const char *provider_message_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* What the core knows about a finished transfer, for classify. Everything is
 * borrowed for the duration of the call. */
typedef struct cmn_worker_response {
    CURLcode code;          /* the transfer's result */
    long status;            /* CURLINFO_RESPONSE_CODE: HTTP status or SMTP reply code; 0 when none */
    /* Only with capture_response (else "" and 0): the last response's body
     * (NUL-terminated, at most CMN_WORKER_BODY_MAX bytes kept) and raw header
     * block ("HTTP/2 429\r\nretry-after: 7\r\n..."). */
    const char *body;
    size_t body_len;
    int body_truncated;     /* 1 when the body was longer than CMN_WORKER_BODY_MAX */
    const char *headers;
    size_t headers_len;
    int64_t retry_after_ms; /* the Retry-After header in ms (seconds or HTTP-date), -1 when absent or unusable */
} cmn_worker_response_t;

#define CMN_WORKER_BODY_MAX (64 * 1024)

/* Copies the value of header name (case-insensitive, surrounding blanks
 * trimmed) of r's header block into buf. Returns buf, or NULL when the
 * header is absent (buf is then ""). A value longer than buflen is cut. */
const char *cmn_worker_response_header(const cmn_worker_response_t *r, const char *name, char *buf, size_t buflen);

/* Retry-After (RFC 9110 10.2.3) in milliseconds from now_ms (epoch ms):
 * delay-seconds or an IMF-fixdate. A date in the past gives 0. Returns -1
 * for NULL or unparseable text. Pure. */
int64_t cmn_worker_parse_retry_after(const char *value, int64_t now_ms);

/* A channel implementation. impl is the channel's own context, passed back
 * to every call; all calls happen on the worker's thread. */
typedef struct cmn_worker_channel {
    const char *name;      /* wire name: consumes crm.send.<name>; metrics are <name>_* */
    cmn_channel_t channel; /* dispatches for any other channel go to the DLQ */
    const char *provider;  /* the status events' "provider", e.g. "smtp", "twilio", "meta" */
    void *impl;
    /* 1: the core installs CURLOPT_WRITEFUNCTION/HEADERFUNCTION on the easy
     * handle after submit and hands body and headers to classify (HTTP
     * providers). 0: the core never touches those options (SMTP). */
    int capture_response;

    /* Builds the channel message for d (borrowed for the call). Returns 0
     * with *msg set (owned by the channel until release) and may fill
     * res->provider_message_id and res->details_json. On failure returns a
     * negative code with res filled (cls PERMANENT or RETRYABLE); nothing is
     * sent and *msg stays NULL. */
    int (*prepare)(void *impl, const cmn_dispatch_t *d, void **msg, cmn_worker_result_t *res);

    /* Optional (NULL: every message shares one limiter bucket). The
     * rate-limit key of msg, e.g. the From number or the phone-number id;
     * borrowed from msg, valid until release. NULL also means the shared
     * bucket "". */
    const char *(*sender)(void *impl, const void *msg);

    /* Creates the transfer for msg and returns its easy handle in *easy
     * (owned by msg). The core sets CURLOPT_PRIVATE (and, with
     * capture_response, the write and header callbacks) and adds the handle
     * to its multi handle, and removes it again before classify. Returns 0
     * or a negative code (the attempt then fails as retryable). */
    int (*submit)(void *impl, void *msg, CURL **easy);

    /* Turns the finished transfer into res. res still holds what prepare
     * filled in. */
    void (*classify)(void *impl, void *msg, const cmn_worker_response_t *resp, cmn_worker_result_t *res);

    /* Frees msg, its easy handle included. Called once per prepared msg. */
    void (*release)(void *impl, void *msg);
} cmn_worker_channel_t;

typedef struct cmn_worker_config {
    const char *service;            /* e.g. "crm-<channel>-worker": Kafka client id, DLQ header */
    const char *brokers;            /* Kafka bootstrap servers */
    const char *group_id;           /* consumer group */
    const char *const *kafka_extra; /* NULL-terminated "key=value" librdkafka properties, or NULL */
    int batch_size;                 /* records per batch, >= 1 */
    int max_in_flight;              /* concurrent transfers, >= 1 */
    int poll_timeout_ms;            /* wait for the first record of a batch; 0 means 500 */
    int ack_timeout_ms;             /* wait for a batch's Kafka acknowledgements; 0 means 30000 */
    int session_timeout_ms;         /* consumer group session timeout; 0 keeps librdkafka's (45 s) */
    /* Per-sender token bucket: messages per second and burst (bucket size,
     * >= 1 when rate > 0). rate 0 disables rate limiting. */
    double rate_per_sec;
    double rate_burst;
    /* Retries (crm/outcome.h, docs/channels.md): attempts per channel in
     * all, first one included (1..50), and the backoff's first and largest
     * jitter window. 0 means the default: 5 attempts, 5000 ms, 1800000 ms. */
    int retry_max_attempts;
    int64_t retry_base_ms;
    int64_t retry_cap_ms;
    /* Receipt-driven fallback (crm/receipt.h, docs/webhooks.md): 1 = after
     * `sent` on a channel with receipts, park a watch for the next channel
     * of the plan (RECEIPT_FALLBACK, on by default in the services). */
    int receipt_fallback;
    /* The watches' deadlines and check interval; NULL means
     * cmn_receipt_policy_default(). Copied by cmn_worker_new. */
    const cmn_receipt_policy_t *receipt_policy;
    const cmn_log_t *log;           /* borrowed, required */
    cmn_metrics_t *metrics;         /* borrowed, may be NULL */
} cmn_worker_config_t;

typedef struct cmn_worker cmn_worker_t;

/* Creates the Kafka producer and consumer (subscribed to crm.send.<name>),
 * the multi handle and the rate limiter. Only the batch loop: the retry
 * tiers' consumer is cmn_worker_serve()'s. cfg and ch are copied; the pointers
 * inside them are borrowed and must outlive the worker. NULL with the reason
 * in errstr. */
cmn_worker_t *cmn_worker_new(const cmn_worker_config_t *cfg, const cmn_worker_channel_t *ch, char *errstr,
                             size_t errlen);

/* Runs batches until cmn_stop_requested is set, then finishes the batch in
 * hand. Returns 0 after a clean stop or a negative code when the consumer
 * failed for good (the process should exit non-zero and be restarted). */
int cmn_worker_run(cmn_worker_t *w);

/* 1 when the consumer is healthy (for /readyz); safe from any thread. The
 * argument is a cmn_worker_t (void * to fit cmn_http_config_t.ready). */
int cmn_worker_is_ready(void *w);

/* Leaves the consumer group, flushes the producer and frees everything.
 * NULL is a no-op. */
void cmn_worker_destroy(cmn_worker_t *w);

/* The whole life of a worker service after its configuration and channel
 * exist: creates the worker and the consumer of its retry tiers (crm/delayq.h:
 * crm.retry.<channel>.* back to crm.send.<channel>, consumer group
 * "<group_id>-retry", on its own thread), serves /metrics, /healthz and
 * /readyz (ready when both consumers are) on http_bind:http_port, runs until
 * SIGTERM, then stops the HTTP server, then the retry consumer, then the
 * worker (so /readyz never looks at anything being torn down). started_msg
 * (may be NULL) is logged once serving, with ", http port N, retries
 * through crm.retry.<channel>.* (group G)" appended.
 * Everything is borrowed. Returns 0 after a clean stop, or a negative code
 * when the worker or the server could not start or the consumer failed. */
int cmn_worker_serve(const cmn_worker_config_t *cfg, const cmn_worker_channel_t *ch, const char *http_bind,
                     int http_port, const char *started_msg);

#endif
