/* th_worker.h - what the channel-worker integration suites share: a worker
 * binary between the Kafka mock cluster and a provider sandbox.
 *
 * A th_worker_t holds the mock cluster, one worker process and the names the
 * suite works under (tenant, the worker's input topic, the traceparent put
 * on every record produced). The suite keeps its own fixture for the
 * provider's sandbox and embeds a th_worker_t in it.
 *
 * Every function fails the running Criterion test (cr_assert) on a setup
 * error; check helpers report with cr_expect so a test goes on. */
#ifndef TH_WORKER_H
#define TH_WORKER_H

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

#include "crm/uuid.h"
#include "th_kafka.h"
#include "th_proc.h"

typedef struct th_worker {
    th_kafka_t *kafka;      /* owned: th_worker_init starts it, the suite stops it with th_kafka_stop */
    const char *brokers;    /* borrowed from kafka; valid until th_kafka_stop */
    const char *tenant;     /* borrowed (a literal); the tenant of communication ids */
    const char *topic;      /* borrowed (a literal); the worker's input topic */
    const char *traceparent; /* borrowed (a literal); header of every record produced */
    th_proc_t proc;         /* the worker process while running */
    int port;               /* its HTTP port (health, /metrics) */
    int running;
    char name[64];          /* the test's name: group ids, databases */
} th_worker_t;

/* Clears *w, copies name and starts a one-broker mock cluster. tenant, topic
 * and traceparent are kept as pointers: pass string literals. */
void th_worker_init(th_worker_t *w, const char *name, const char *tenant, const char *topic,
                    const char *traceparent);

/* 1 when extra (NULL or a NULL-terminated "NAME=value" list) sets the
 * variable of setting ("NAME=value"). Reads both; owns nothing. */
int th_worker_env_overridden(const char *const *extra, const char *setting);

/* Starts the built binary `binary` (its name in the build tree, also the
 * process name) on a fresh HTTP port and waits until it is ready. Its
 * environment: KAFKA_BROKERS, HTTP_PORT, HTTP_BIND=127.0.0.1,
 * LOG_LEVEL=debug, then `defaults` (NULL-terminated NAME=value list), then
 * KAFKA_SESSION_TIMEOUT_MS=6000 (a restarted worker takes over the
 * partitions within seconds instead of librdkafka's 45) - each unless
 * `extra` sets the same variable - then every entry of `extra`. defaults
 * and extra are only read during the call; the caller keeps them. */
void th_worker_start(th_worker_t *w, const char *binary, const char *const *defaults, const char *const *extra);

/* SIGTERM and wait up to 60 s; the exit status (0 when not running). */
int th_worker_stop(th_worker_t *w);

/* The communication id of request_id under tenant, into out. */
void th_worker_comm_id(const char *tenant, const char *request_id, char out[CMN_UUID_STR_LEN + 1]);

/* ------------------------------------------------------------ dispatches */

typedef struct th_dispatch {
    const char *tenant;        /* tenant_id and the communication id's tenant */
    const char *request_id;
    const char *channel;       /* written as given */
    const char *to;
    const char *name;          /* recipient.name, may be NULL */
    const char *locale;        /* may be NULL */
    const char *message_type;
    const char *context;       /* JSON object text or NULL; must parse */
    const char *attachments;   /* JSON array text or NULL */
    const char *recipient_key; /* recipient.<key> = to; NULL: "phone" when to starts with '+', else "email" */
    int hop, attempt;          /* 0 and 0 mean 0 and 1 */
    const char *fallback;      /* JSON array text of channel names (the plan); NULL: [] */
    const char *also_email;    /* recipient.email besides the key of `to` (a fallback's address), may be NULL */
    int64_t deadline_ms;       /* "deadline", epoch ms; 0: none */
} th_dispatch_t;

/* A Dispatch v1 as the router writes it (crm/dispatch.h), built with json-c
 * so names with quotes or control characters are encoded exactly. The
 * caller frees the returned text. */
char *th_worker_dispatch_json(const th_dispatch_t *d);

/* Produces value (NULL: a tombstone) under key to w->topic with the
 * traceparent header; asserts "produce failed". */
void th_worker_produce(const th_worker_t *w, const char *key, const char *value);

/* th_worker_dispatch_json of d, produced under the key "client-1". */
void th_worker_produce_dispatch(const th_worker_t *w, const th_dispatch_t *d);

/* ------------------------------------------------------------- statuses */

typedef struct th_statuses {
    th_kafka_record_t *recs; /* owned: every record read from crm.status */
    size_t n;
    json_object **objs;      /* owned: recs[i].value parsed */
    const char *tenant;      /* borrowed from the worker */
} th_statuses_t;

/* Reads crm.status from the beginning until `expect` records or 60 s;
 * every record must be JSON. Free with th_statuses_free. */
void th_worker_read_statuses(const th_worker_t *w, size_t expect, th_statuses_t *st);
void th_statuses_free(th_statuses_t *st);

/* How many events of request_id have `status` (NULL: any status). */
int th_status_count(const th_statuses_t *st, const char *request_id, const char *status);

/* The status event `status` of request_id; fails unless exactly one
 * exists. Borrowed from st: valid until th_statuses_free. */
json_object *th_status_of(const th_statuses_t *st, const char *request_id, const char *status);

/* Expects every status record to carry the trace id of w->traceparent in
 * its headers ("trace lost: <headers>"). */
void th_statuses_expect_traced(const th_worker_t *w, const th_statuses_t *st);

/* ------------------------------------------------------------------ DLQ */

/* Checks the DLQ headers of every record: x-crm-dlq-service is `service`,
 * x-crm-dlq-source-topic is w->topic and, when key is not NULL, the record
 * kept it ("the DLQ keeps the original key"). For each entry k of reasons
 * (NULL-terminated), seen[k] becomes the number of records whose
 * x-crm-dlq-reason contains it. dlq stays the caller's. */
void th_worker_check_dlq(const th_worker_t *w, const th_kafka_record_t *dlq, size_t n, const char *service,
                         const char *key, const char *const *reasons, int *seen);

/* ----------------------------------------------------- metrics and logs */

/* GET /metrics of the running worker into body (asserts the request went
 * through); returns the HTTP status for the caller to check. */
long th_worker_metrics(const th_worker_t *w, char *body, size_t len);

/* The worker's log (the first 2 MiB), NUL-terminated, in a static buffer
 * that the next call overwrites: do not free. */
const char *th_worker_log(const th_worker_t *w);

/* Expects none of forbidden (NULL-terminated) in the worker's log. */
void th_worker_expect_clean_log(const th_worker_t *w, const char *const *forbidden);

#endif
