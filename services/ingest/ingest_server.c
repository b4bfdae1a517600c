/* ingest_server.c - the HTTP and Kafka adapter of the ingest service.
 *
 * POST /v1/communications is answered 202 only after every request of the
 * submission is acknowledged by Kafka (acks=all), so a 202 means "durable":
 * the client may forget the request. Anything less is a 503 the client
 * retries; retrying is always safe because communication_id is derived from
 * tenant and request_id, and the router claims each id once. */
#include "ingest_server.h"

#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crm/err.h"
#include "crm/http.h"
#include "crm/kafka.h"
#include "crm/log.h"
#include "crm/metrics.h"
#include "crm/request.h"
#include "crm/signal.h"
#include "crm/time.h"
#include "ingest_api.h"

#define INGEST_SERVICE "ingest"
#define INGEST_CLIENT_ID "crm-ingest"
#define INGEST_RETRY_AFTER_S 5
#define INGEST_HTTP_IDLE_TIMEOUT_S 30
#define INGEST_RUN_TICK_MS 100

static const cmn_cfg_entry_t CONFIG_TABLE[] = {
    {"KAFKA_BROKERS", CMN_CFG_STRING, "127.0.0.1:9092", 0, offsetof(ingest_config_t, kafka_brokers),
     "Kafka bootstrap servers (host:port,...).", 0, 0},
    {"HTTP_BIND", CMN_CFG_STRING, "0.0.0.0", 0, offsetof(ingest_config_t, http_bind),
     "IP address the HTTP API listens on.", 0, 0},
    {"HTTP_PORT", CMN_CFG_INT, "8080", 0, offsetof(ingest_config_t, http_port),
     "TCP port of the HTTP API (0 picks a free port).", 0, 65535},
    {"HTTP_THREADS", CMN_CFG_INT, "8", 0, offsetof(ingest_config_t, http_threads),
     "HTTP worker threads; each submission holds one while it waits for Kafka.", 1, 1024},
    {"LOG_LEVEL", CMN_CFG_STRING, "info", 0, offsetof(ingest_config_t, log_level),
     "debug, info, warn or error.", 0, 0},
    {"INGEST_MAX_BATCH", CMN_CFG_INT, "1000", 0, offsetof(ingest_config_t, max_batch),
     "Most requests accepted in one {\"requests\":[...]} submission.", 1, 10000},
    {"INGEST_MAX_BODY_BYTES", CMN_CFG_INT, "16777216", 0, offsetof(ingest_config_t, max_body_bytes),
     "Largest request body accepted (413 past it).", 1024, 1073741824},
    {"INGEST_KAFKA_TIMEOUT_MS", CMN_CFG_INT, "10000", 0, offsetof(ingest_config_t, kafka_timeout_ms),
     "How long a submission waits for Kafka acknowledgements before answering 503.", 100, 300000},
};

const cmn_cfg_entry_t *ingest_config_table(size_t *n)
{
    if (n != NULL)
        *n = sizeof CONFIG_TABLE / sizeof CONFIG_TABLE[0];
    return CONFIG_TABLE;
}

int ingest_config_check(const ingest_config_t *cfg, char *errstr, size_t errlen)
{
    cmn_log_t probe;
    if (cfg == NULL)
        return CMN_ERR_INVALID;
    if (cmn_log_init(&probe, INGEST_SERVICE, cfg->log_level) != 0) {
        snprintf(errstr, errlen, "LOG_LEVEL: must be debug, info, warn or error");
        return CMN_ERR_CONFIG;
    }
    return 0;
}

struct ingest_ctx {
    const ingest_config_t *cfg; /* borrowed */
    cmn_log_t log;
    cmn_metrics_t *metrics;     /* owned */
    cmn_kafka_producer_t *producer; /* owned */
    cmn_http_server_t *http;    /* owned */
    atomic_int accepting;       /* 0 until serving and again once stopping: /readyz answers 503 */
    char timeout_prop[64];      /* "message.timeout.ms=N", borrowed by the producer config */
    const char *kafka_extra[2];

    /* Metric handles, owned by metrics. */
    cmn_counter_t *m_accepted;
    cmn_counter_t *m_invalid;
    cmn_counter_t *m_unavailable;
    cmn_histogram_t *m_batch_size;
    cmn_histogram_t *m_latency;
};

/* Readiness. The producer handle is opaque, so whether it has reached a
 * broker cannot be asked; "producer created and not stopping" is the
 * signal. A broker outage shows up as 503 answers (with Retry-After) on the
 * submissions themselves instead, which is what a client needs to see. */
static int ingest_ready(void *arg)
{
    ingest_ctx_t *ctx = arg;
    return ctx->producer != NULL && atomic_load(&ctx->accepting) ? 1 : 0;
}

/* Produces every request of batch to crm.requests keyed by client_id and
 * waits for all acknowledgements. Returns 0 only when all were acknowledged.
 * An empty traceparent lets the producer start a trace per record. */
static int produce_batch(ingest_ctx_t *ctx, const ingest_batch_t *batch, const char *traceparent, char *errstr,
                         size_t errlen)
{
    cmn_kafka_batch_t kb;
    cmn_buf_t value = CMN_BUF_INIT;
    cmn_kafka_header_t hdr = {CMN_HDR_TRACEPARENT, traceparent, strlen(traceparent)};
    int rc = cmn_kafka_batch_init(&kb);
    if (rc != 0) {
        snprintf(errstr, errlen, "%s", cmn_strerror(rc));
        return rc;
    }
    for (size_t i = 0; i < batch->n; i++) {
        const cmn_request_t *r = &batch->requests[i];
        cmn_buf_reset(&value);
        rc = cmn_request_to_json(r, &value);
        if (rc == 0)
            rc = cmn_kafka_produce_in_batch(ctx->producer, &kb, CMN_TOPIC_REQUESTS, r->client_id,
                                            strlen(r->client_id), value.data, value.len, &hdr,
                                            traceparent[0] != '\0' ? 1 : 0);
        if (rc != 0) {
            snprintf(errstr, errlen, "produce: %s", cmn_strerror(rc));
            goto cleanup;
        }
    }
    rc = cmn_kafka_batch_wait(&kb, (int)ctx->cfg->kafka_timeout_ms, errstr, errlen);

cleanup:
    /* Safe even with messages still in flight: the batch is reference
     * counted and their delivery reports release it. */
    cmn_kafka_batch_destroy(&kb);
    cmn_buf_free(&value);
    return rc;
}

static void submit(ingest_ctx_t *ctx, const cmn_http_request_t *req, cmn_http_response_t *resp)
{
    int64_t started = cmn_monotonic_ms();
    ingest_batch_t batch;
    ingest_problem_t problem;
    char traceparent[56];
    char err[320];
    memset(&batch, 0, sizeof batch);
    memset(&problem, 0, sizeof problem);

    if (!ingest_api_content_type_ok(cmn_http_request_header(req, "Content-Type"))) {
        cmn_counter_add(ctx->m_invalid, 1);
        cmn_http_problem(resp, 415, NULL, "The body must be sent as Content-Type: application/json.", NULL);
        goto out;
    }

    int rc = ingest_api_parse(req->body, req->body_len, (size_t)ctx->cfg->max_batch, cmn_now_ms(), &batch,
                              &problem);
    if (rc == CMN_ERR_INVALID) {
        char nerr[16];
        snprintf(nerr, sizeof nerr, "%zu", problem.errors != NULL ? json_object_array_length(problem.errors) : 0);
        cmn_counter_add(ctx->m_invalid, 1);
        /* Field names and counts only: reasons and values stay out of logs. */
        cmn_logkv(&ctx->log, CMN_LOG_INFO, NULL, (const char *[]){"errors", nerr, NULL}, "submission refused: %s",
                  problem.title);
        cmn_http_problem(resp, problem.status, problem.title, problem.detail, problem.errors);
        goto out;
    }
    if (rc != 0) {
        cmn_log_error(&ctx->log, NULL, "cannot parse a submission: %s", cmn_strerror(rc));
        cmn_http_problem(resp, 500, NULL, "The server could not process the request.", NULL);
        goto out;
    }
    cmn_histogram_observe(ctx->m_batch_size, (double)batch.n);

    /* One trace per submission: continue the caller's when it sent a valid
     * one, else start one that all of the batch's records share. */
    const char *incoming = cmn_http_request_header(req, CMN_HDR_TRACEPARENT);
    if (ingest_api_traceparent_ok(incoming))
        snprintf(traceparent, sizeof traceparent, "%s", incoming);
    else if (cmn_kafka_traceparent_new(traceparent) != 0)
        traceparent[0] = '\0';

    err[0] = '\0';
    rc = produce_batch(ctx, &batch, traceparent, err, sizeof err);
    if (rc != 0) {
        char n[16];
        snprintf(n, sizeof n, "%zu", batch.n);
        cmn_counter_add(ctx->m_unavailable, 1);
        cmn_logkv(&ctx->log, CMN_LOG_WARN, NULL, (const char *[]){"requests", n, "error", err, NULL},
                  "kafka did not acknowledge a submission; answering 503");
        cmn_http_problem(resp, 503, NULL,
                         "The requests could not be stored in time. Retry later with the same request_id values; "
                         "a retry never creates a second communication.",
                         NULL);
        snprintf(resp->extra_headers, sizeof resp->extra_headers, "Retry-After: %d\r\n", INGEST_RETRY_AFTER_S);
        goto out;
    }

    rc = ingest_api_accepted_body(&batch, &resp->body);
    if (rc != 0) {
        /* Already durable in Kafka; a retry by the client is harmless. */
        cmn_http_problem(resp, 500, NULL, "The requests were stored but the answer could not be built.", NULL);
        goto out;
    }
    resp->status = 202;
    snprintf(resp->content_type, sizeof resp->content_type, "application/json");
    cmn_counter_add(ctx->m_accepted, 1);
    for (size_t i = 0; i < batch.n; i++)
        cmn_log_debug(&ctx->log, batch.requests[i].communication_id, "request accepted");

out:
    cmn_histogram_observe(ctx->m_latency, (double)(cmn_monotonic_ms() - started) / 1000.0);
    ingest_batch_clear(&batch);
    ingest_problem_clear(&problem);
}

static void handle(void *arg, const cmn_http_request_t *req, cmn_http_response_t *resp)
{
    ingest_ctx_t *ctx = arg;
    switch (ingest_api_route(req->method, req->path)) {
    case INGEST_ROUTE_SUBMIT:
        submit(ctx, req, resp);
        break;
    case INGEST_ROUTE_METHOD_NOT_ALLOWED:
        cmn_http_problem(resp, 405, NULL, "Use POST on this resource.", NULL);
        snprintf(resp->extra_headers, sizeof resp->extra_headers, "Allow: %s\r\n", INGEST_ALLOW_COMMUNICATIONS);
        break;
    default:
        cmn_http_problem(resp, 404, NULL, "No such resource.", NULL);
        break;
    }
}

static const double BATCH_BUCKETS[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000};

static int register_metrics(ingest_ctx_t *ctx)
{
    static const char help[] = "Submissions to POST /v1/communications, by outcome.";
    ctx->m_accepted = cmn_metrics_counter(ctx->metrics, "ingest_requests_total", help, "result=\"accepted\"");
    ctx->m_invalid = cmn_metrics_counter(ctx->metrics, "ingest_requests_total", help, "result=\"invalid\"");
    ctx->m_unavailable = cmn_metrics_counter(ctx->metrics, "ingest_requests_total", help, "result=\"unavailable\"");
    ctx->m_batch_size = cmn_metrics_histogram(ctx->metrics, "ingest_batch_size",
                                              "Requests per valid submission.", NULL, BATCH_BUCKETS,
                                              sizeof BATCH_BUCKETS / sizeof BATCH_BUCKETS[0]);
    ctx->m_latency = cmn_metrics_histogram(ctx->metrics, "ingest_request_duration_seconds",
                                           "Time to answer a submission, Kafka acknowledgements included.", NULL,
                                           CMN_METRICS_LATENCY_BUCKETS, CMN_METRICS_LATENCY_BUCKETS_N);
    if (ctx->m_accepted == NULL || ctx->m_invalid == NULL || ctx->m_unavailable == NULL ||
        ctx->m_batch_size == NULL || ctx->m_latency == NULL)
        return CMN_ERR_NOMEM;
    return 0;
}

ingest_ctx_t *ingest_ctx_new(const ingest_config_t *cfg, char *errstr, size_t errlen)
{
    ingest_ctx_t *ctx = NULL;
    ingest_ctx_t *result = NULL;
    char why[256] = "";

    if (cfg == NULL || ingest_config_check(cfg, errstr, errlen) != 0)
        goto cleanup;
    ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL) {
        snprintf(errstr, errlen, "out of memory");
        goto cleanup;
    }
    ctx->cfg = cfg;
    atomic_init(&ctx->accepting, 0);
    cmn_log_init(&ctx->log, INGEST_SERVICE, cfg->log_level);

    ctx->metrics = cmn_metrics_new();
    if (ctx->metrics == NULL || register_metrics(ctx) != 0) {
        snprintf(errstr, errlen, "metrics: out of memory");
        goto cleanup;
    }

    /* A message Kafka cannot store within the submission's timeout is
     * failed by librdkafka at about the time the client gets its 503, so it
     * is not left to land minutes later behind the client's retry. */
    snprintf(ctx->timeout_prop, sizeof ctx->timeout_prop, "message.timeout.ms=%ld", cfg->kafka_timeout_ms);
    ctx->kafka_extra[0] = ctx->timeout_prop;
    ctx->kafka_extra[1] = NULL;
    cmn_kafka_config_t kcfg = {
        .brokers = cfg->kafka_brokers,
        .client_id = INGEST_CLIENT_ID,
        .group_id = NULL,
        .extra = ctx->kafka_extra,
        .log = &ctx->log,
        .metrics = ctx->metrics,
    };
    ctx->producer = cmn_kafka_producer_new(&kcfg, why, sizeof why);
    if (ctx->producer == NULL) {
        snprintf(errstr, errlen, "kafka: %s", why);
        goto cleanup;
    }

    cmn_http_config_t hcfg = {
        .bind_address = cfg->http_bind,
        .port = (int)cfg->http_port,
        .threads = (int)cfg->http_threads,
        .max_body_bytes = (size_t)cfg->max_body_bytes,
        .max_header_bytes = 0,
        .timeout_seconds = INGEST_HTTP_IDLE_TIMEOUT_S,
        .handler = handle,
        .ready = ingest_ready,
        .ctx = ctx,
        .metrics = ctx->metrics,
        .log = &ctx->log,
    };
    ctx->http = cmn_http_server_new(&hcfg, why, sizeof why);
    if (ctx->http == NULL) {
        snprintf(errstr, errlen, "%s", why);
        goto cleanup;
    }
    atomic_store(&ctx->accepting, 1);
    cmn_logkv(&ctx->log, CMN_LOG_INFO, NULL, (const char *[]){"brokers", cfg->kafka_brokers, NULL},
              "ingest ready on port %d", cmn_http_server_port(ctx->http));
    result = ctx;
    ctx = NULL;

cleanup:
    ingest_ctx_destroy(ctx);
    return result;
}

int ingest_ctx_port(const ingest_ctx_t *ctx)
{
    return ctx != NULL ? cmn_http_server_port(ctx->http) : -1;
}

int ingest_run(ingest_ctx_t *ctx)
{
    if (ctx == NULL)
        return CMN_ERR_INVALID;
    /* All the work happens on the HTTP and Kafka threads; this thread only
     * waits for the stop signal, so a short sleep is all it needs. */
    while (!cmn_stop_requested) {
        struct timespec ts = {0, INGEST_RUN_TICK_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    cmn_log_info(&ctx->log, NULL, "stop requested; draining");
    return 0;
}

void ingest_ctx_destroy(ingest_ctx_t *ctx)
{
    if (ctx == NULL)
        return;
    atomic_store(&ctx->accepting, 0);
    /* Intake first: the server finishes submissions in flight, and those
     * still need the producer to get their acknowledgements. */
    cmn_http_server_destroy(ctx->http);
    ctx->http = NULL;
    if (ctx->producer != NULL) {
        if (cmn_kafka_producer_flush(ctx->producer, (int)ctx->cfg->kafka_timeout_ms) != 0)
            cmn_log_warn(&ctx->log, NULL, "kafka flush did not complete before shutdown");
        cmn_kafka_producer_destroy(ctx->producer);
        ctx->producer = NULL;
    }
    cmn_metrics_destroy(ctx->metrics);
    if (ctx->log.service != NULL)
        cmn_log_info(&ctx->log, NULL, "ingest stopped");
    free(ctx);
}
