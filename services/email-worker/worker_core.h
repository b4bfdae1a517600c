/* worker_core.h - the channel-agnostic half of a sending worker.
 *
 * A worker consumes Dispatch records from crm.send.<channel> in batches and,
 * for each batch:
 *   1. parses every record; a malformed one, or one for another channel, is
 *      copied to crm.dlq with the reason in its headers (nothing crashes);
 *   2. asks the channel to prepare each dispatch (render, build the request);
 *      a permanent problem there becomes a `failed` status at once;
 *   3. emits `sending` for every prepared dispatch;
 *   4. runs all transfers concurrently on one libcurl multi handle, at most
 *      max_in_flight at a time, and turns each finished transfer into `sent`
 *      or `failed` through the channel's classifier;
 *   5. waits until Kafka acknowledged every status and DLQ copy of the batch,
 *      and only then commits the batch's offsets (at-least-once). When the
 *      acknowledgements do not come, the batch is rewound and redelivered.
 * On cmn_stop_requested the loop stops polling, but the batch in hand is
 * finished first (its transfers complete, statuses are emitted and
 * acknowledged, offsets committed), so a SIGTERM never loses or repeats work.
 *
 * The channel (email today, SMS and WhatsApp next) plugs in through
 * worker_channel_t. Nothing in this file knows what the channel is; it is
 * meant to move to common/ once a second channel uses it.
 *
 * Threading: worker_run() runs on one thread; only worker_is_ready() may be
 * called from others (the HTTP server's /readyz). */
#ifndef WORKER_CORE_H
#define WORKER_CORE_H

#include <curl/curl.h>
#include <stddef.h>

#include "crm/dispatch.h"
#include "crm/log.h"
#include "crm/metrics.h"

typedef enum worker_class {
    WORKER_SENT = 0,      /* the provider accepted the message */
    WORKER_RETRYABLE = 1, /* a later attempt may succeed (network, timeout, 4xx-style refusals) */
    WORKER_PERMANENT = 2  /* no attempt on this channel will succeed (bad address, no template) */
} worker_class_t;

/* "sent", "retryable", "permanent" (also the metrics label values). */
const char *worker_class_name(worker_class_t c);

#define WORKER_ID_MAX 320
#define WORKER_CODE_MAX 64
#define WORKER_TEXT_MAX 512

/* The outcome of one attempt, filled by the channel. All strings are
 * NUL-terminated and empty when unused. */
typedef struct worker_result {
    worker_class_t cls;
    char provider_message_id[WORKER_ID_MAX]; /* the provider's id for the message */
    char error_code[WORKER_CODE_MAX];        /* failed: the provider's code ("550") or ours ("no_template") */
    char error_message[WORKER_TEXT_MAX];     /* failed: the provider's reply text or our reason */
    char reason[WORKER_TEXT_MAX];            /* sent: provider detail kept with the event */
} worker_result_t;

/* Fills res as a failure of class cls with code and a printf message. */
void worker_result_fail(worker_result_t *res, worker_class_t cls, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A channel implementation. impl is the channel's own context, passed back
 * to every call; all calls happen on the worker's thread. */
typedef struct worker_channel {
    const char *name;     /* wire name: consumes crm.send.<name>; metrics are <name>_* */
    cmn_channel_t channel;/* dispatches for any other channel go to the DLQ */
    const char *provider; /* the status events' "provider", e.g. "smtp" */
    void *impl;

    /* Builds the channel message for d (borrowed for the call). Returns 0
     * with *msg set (owned by the channel until release) and may fill
     * res->provider_message_id when the id is known before sending. On
     * failure returns a negative code with res filled (cls PERMANENT or
     * RETRYABLE); nothing is sent and *msg stays NULL. */
    int (*prepare)(void *impl, const cmn_dispatch_t *d, void **msg, worker_result_t *res);

    /* Creates the transfer for msg and returns its easy handle in *easy
     * (owned by msg). The core sets CURLOPT_PRIVATE and adds the handle to
     * its multi handle, and removes it again before classify. Returns 0 or a
     * negative code (the attempt then fails as retryable). */
    int (*submit)(void *impl, void *msg, CURL **easy);

    /* Turns the finished transfer (code is its CURLcode) into res. res still
     * holds what prepare filled in. */
    void (*classify)(void *impl, void *msg, CURLcode code, worker_result_t *res);

    /* Frees msg, its easy handle included. Called once per prepared msg. */
    void (*release)(void *impl, void *msg);
} worker_channel_t;

typedef struct worker_config {
    const char *service;            /* e.g. "crm-<channel>-worker": Kafka client id, DLQ header */
    const char *brokers;            /* Kafka bootstrap servers */
    const char *group_id;           /* consumer group */
    const char *const *kafka_extra; /* NULL-terminated "key=value" librdkafka properties, or NULL */
    int batch_size;                 /* records per batch, >= 1 */
    int max_in_flight;              /* concurrent transfers, >= 1 */
    int poll_timeout_ms;            /* wait for the first record of a batch; 0 means 500 */
    int ack_timeout_ms;             /* wait for a batch's Kafka acknowledgements; 0 means 30000 */
    int session_timeout_ms;         /* consumer group session timeout; 0 keeps librdkafka's (45 s) */
    const cmn_log_t *log;           /* borrowed, required */
    cmn_metrics_t *metrics;         /* borrowed, may be NULL */
} worker_config_t;

typedef struct worker worker_t;

/* Creates the Kafka producer and consumer (subscribed to crm.send.<name>)
 * and the multi handle. cfg and ch are copied; the pointers inside them are
 * borrowed and must outlive the worker. NULL with the reason in errstr. */
worker_t *worker_new(const worker_config_t *cfg, const worker_channel_t *ch, char *errstr, size_t errlen);

/* Runs batches until cmn_stop_requested is set, then finishes the batch in
 * hand. Returns 0 after a clean stop or a negative code when the consumer
 * failed for good (the process should exit non-zero and be restarted). */
int worker_run(worker_t *w);

/* 1 when the consumer is healthy (for /readyz); safe from any thread. */
int worker_is_ready(void *w);

/* Leaves the consumer group, flushes the producer and frees everything. */
void worker_destroy(worker_t *w);

#endif
