/* ingest_server.c - the HTTP, Kafka and PostgreSQL adapter of the ingest
 * service.
 *
 * POST /v1/communications is answered 202 only after every request of the
 * submission is acknowledged by Kafka (acks=all), so a 202 means "durable":
 * the client may forget the request. Anything less is a 503 the client
 * retries; retrying is always safe because communication_id is derived from
 * tenant and request_id, and the router claims each id once. */
#include "ingest_server.h"

#include <errno.h>
#include <libpq-fe.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crm/err.h"
#include "crm/http.h"
#include "crm/json.h"
#include "crm/kafka.h"
#include "crm/log.h"
#include "crm/metrics.h"
#include "crm/preferences.h"
#include "crm/request.h"
#include "crm/signal.h"
#include "crm/time.h"
#include "ingest_api.h"
#include "ingest_pool.h"
#include "ingest_prefs.h"

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
    {"DATABASE_URL", CMN_CFG_STRING, "", 1, offsetof(ingest_config_t, database_url),
     "PostgreSQL of the projections, read by GET /v1/clients/{id}/preferences; empty: that GET answers 503.", 0,
     0},
    {"INGEST_DB_POOL_SIZE", CMN_CFG_INT, "4", 0, offsetof(ingest_config_t, db_pool_size),
     "PostgreSQL connections shared by the HTTP threads for reads.", 1, 256},
    {"INGEST_DB_TIMEOUT_MS", CMN_CFG_INT, "5000", 0, offsetof(ingest_config_t, db_timeout_ms),
     "How long a read waits for a PostgreSQL connection (and to connect) before answering 503.", 100, 300000},
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
    if (cfg->database_url != NULL && cfg->database_url[0] != '\0') {
        /* libpq's parse error may quote the URL (and its password): only
         * the verdict is reported. */
        PQconninfoOption *opts = PQconninfoParse(cfg->database_url, NULL);
        if (opts == NULL) {
            snprintf(errstr, errlen, "DATABASE_URL: not a valid PostgreSQL connection URL");
            return CMN_ERR_CONFIG;
        }
        PQconninfoFree(opts);
    }
    return 0;
}

struct ingest_ctx {
    const ingest_config_t *cfg; /* borrowed */
    cmn_log_t log;
    cmn_metrics_t *metrics;     /* owned */
    cmn_kafka_producer_t *producer; /* owned */
    cmn_http_server_t *http;    /* owned */
    ingest_pool_t *pool;        /* owned; NULL when DATABASE_URL is empty */
    atomic_llong last_stamp;    /* the last updated_at given to a preferences snapshot */
    atomic_int accepting;       /* 0 until serving and again once stopping: /readyz answers 503 */
    char timeout_prop[64];      /* "message.timeout.ms=N", borrowed by the producer config */
    const char *kafka_extra[2];

    /* Metric handles, owned by metrics. */
    cmn_counter_t *m_accepted;
    cmn_counter_t *m_invalid;
    cmn_counter_t *m_unavailable;
    cmn_histogram_t *m_batch_size;
    cmn_histogram_t *m_latency;
    cmn_counter_t *m_prefs_stored, *m_prefs_erased, *m_prefs_found, *m_prefs_not_found, *m_prefs_invalid,
        *m_prefs_unavailable;
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

/* ------------------------------------------------- preferences resource */

#define PREFS_SELECT_SQL "SELECT snapshot::text FROM client_preferences WHERE tenant_id = $1 AND client_id = $2"

/* The incoming traceparent when valid, else a new one ("" if even that fails). */
static void pick_traceparent(const cmn_http_request_t *req, char out[56])
{
    const char *incoming = cmn_http_request_header(req, CMN_HDR_TRACEPARENT);
    if (ingest_api_traceparent_ok(incoming))
        snprintf(out, 56, "%s", incoming);
    else if (cmn_kafka_traceparent_new(out) != 0)
        out[0] = '\0';
}

/* Produces one crm.preferences record (value NULL: a tombstone) and waits
 * for its acknowledgement. */
static int produce_preferences(ingest_ctx_t *ctx, const char *key, const cmn_buf_t *value, const char *traceparent,
                               char *errstr, size_t errlen)
{
    cmn_kafka_batch_t kb;
    cmn_kafka_header_t hdr = {CMN_HDR_TRACEPARENT, traceparent, strlen(traceparent)};
    int rc = cmn_kafka_batch_init(&kb);
    if (rc != 0) {
        snprintf(errstr, errlen, "%s", cmn_strerror(rc));
        return rc;
    }
    rc = cmn_kafka_produce_in_batch(ctx->producer, &kb, CMN_TOPIC_PREFERENCES, key, strlen(key),
                                    value != NULL ? value->data : NULL, value != NULL ? value->len : 0, &hdr,
                                    traceparent[0] != '\0' ? 1 : 0);
    if (rc != 0)
        snprintf(errstr, errlen, "produce: %s", cmn_strerror(rc));
    else
        rc = cmn_kafka_batch_wait(&kb, (int)ctx->cfg->kafka_timeout_ms, errstr, errlen);
    cmn_kafka_batch_destroy(&kb);
    return rc;
}

/* Answers a refused preferences request and counts it. */
static void prefs_refused(ingest_ctx_t *ctx, const ingest_problem_t *problem, cmn_http_response_t *resp)
{
    char nerr[16];
    snprintf(nerr, sizeof nerr, "%zu", problem->errors != NULL ? json_object_array_length(problem->errors) : 0);
    cmn_counter_add(ctx->m_prefs_invalid, 1);
    cmn_logkv(&ctx->log, CMN_LOG_INFO, NULL, (const char *[]){"errors", nerr, NULL},
              "preferences request refused: %s", problem->title);
    cmn_http_problem(resp, problem->status, problem->title, problem->detail, problem->errors);
}

static void prefs_kafka_unavailable(ingest_ctx_t *ctx, const char *err, cmn_http_response_t *resp)
{
    cmn_counter_add(ctx->m_prefs_unavailable, 1);
    cmn_logkv(&ctx->log, CMN_LOG_WARN, NULL, (const char *[]){"error", err, NULL},
              "kafka did not acknowledge a preferences change; answering 503");
    cmn_http_problem(resp, 503, NULL, "The preferences could not be stored in time. Retry later; nothing changed.",
                     NULL);
    snprintf(resp->extra_headers, sizeof resp->extra_headers, "Retry-After: %d\r\n", INGEST_RETRY_AFTER_S);
}

/* A strictly increasing updated_at for this process (see
 * ingest_prefs_next_stamp): the compare-and-swap makes two threads never
 * hand out the same millisecond. */
static int64_t prefs_stamp(ingest_ctx_t *ctx)
{
    long long last = atomic_load(&ctx->last_stamp);
    long long next = 0;
    do {
        next = (long long)ingest_prefs_next_stamp((int64_t)last, cmn_now_ms());
    } while (!atomic_compare_exchange_weak(&ctx->last_stamp, &last, next));
    return (int64_t)next;
}

static void prefs_put(ingest_ctx_t *ctx, const cmn_http_request_t *req, const char *client,
                      cmn_http_response_t *resp)
{
    cmn_preferences_t prefs;
    ingest_problem_t problem;
    cmn_buf_t value = CMN_BUF_INIT;
    char key[CMN_PREFS_KEY_MAX], traceparent[56], err[320] = "";
    memset(&prefs, 0, sizeof prefs);
    memset(&problem, 0, sizeof problem);

    if (!ingest_api_content_type_ok(cmn_http_request_header(req, "Content-Type"))) {
        cmn_counter_add(ctx->m_prefs_invalid, 1);
        cmn_http_problem(resp, 415, NULL, "The body must be sent as Content-Type: application/json.", NULL);
        goto out;
    }
    int rc = ingest_prefs_parse(req->body, req->body_len, client, cmn_http_request_query(req, "tenant_id"),
                                prefs_stamp(ctx), &prefs, &problem);
    if (rc == CMN_ERR_INVALID) {
        prefs_refused(ctx, &problem, resp);
        goto out;
    }
    if (rc == 0)
        rc = cmn_preferences_key(prefs.tenant_id, prefs.client_id, key, sizeof key);
    if (rc == 0)
        rc = cmn_preferences_to_json(&prefs, &value);
    if (rc != 0) {
        cmn_log_error(&ctx->log, NULL, "cannot build a preferences snapshot: %s", cmn_strerror(rc));
        cmn_http_problem(resp, 500, NULL, "The server could not process the request.", NULL);
        goto out;
    }
    pick_traceparent(req, traceparent);
    rc = produce_preferences(ctx, key, &value, traceparent, err, sizeof err);
    if (rc != 0) {
        prefs_kafka_unavailable(ctx, err, resp);
        goto out;
    }
    /* The answer is the snapshot exactly as stored on crm.preferences, so
     * the caller learns the updated_at it will later read back. */
    if (cmn_buf_append(&resp->body, value.data, value.len) != 0) {
        cmn_http_problem(resp, 500, NULL, "The preferences were stored but the answer could not be built.", NULL);
        goto out;
    }
    resp->status = 200;
    snprintf(resp->content_type, sizeof resp->content_type, "application/json");
    cmn_counter_add(ctx->m_prefs_stored, 1);
    cmn_logkv(&ctx->log, CMN_LOG_DEBUG, NULL, (const char *[]){"key", key, NULL}, "preferences stored");
out:
    cmn_buf_free(&value);
    cmn_preferences_clear(&prefs);
    ingest_problem_clear(&problem);
}

static void prefs_delete(ingest_ctx_t *ctx, const cmn_http_request_t *req, const char *client,
                         cmn_http_response_t *resp)
{
    ingest_prefs_target_t target;
    ingest_problem_t problem;
    char key[CMN_PREFS_KEY_MAX], traceparent[56], err[320] = "";
    memset(&problem, 0, sizeof problem);

    int rc = ingest_prefs_target(client, cmn_http_request_query(req, "tenant_id"), &target, &problem);
    if (rc == CMN_ERR_INVALID) {
        prefs_refused(ctx, &problem, resp);
        goto out;
    }
    if (rc == 0)
        rc = cmn_preferences_key(target.tenant_id, target.client_id, key, sizeof key);
    if (rc != 0) {
        cmn_http_problem(resp, 500, NULL, "The server could not process the request.", NULL);
        goto out;
    }
    pick_traceparent(req, traceparent);
    /* A tombstone: compaction then removes every older snapshot of the
     * client from crm.preferences, and the projector deletes the row. */
    rc = produce_preferences(ctx, key, NULL, traceparent, err, sizeof err);
    if (rc != 0) {
        prefs_kafka_unavailable(ctx, err, resp);
        goto out;
    }
    resp->status = 204;
    cmn_counter_add(ctx->m_prefs_erased, 1);
    cmn_logkv(&ctx->log, CMN_LOG_INFO, NULL, (const char *[]){"key", key, NULL}, "preferences erased");
out:
    ingest_problem_clear(&problem);
}

/* Reads the projected snapshot into out (canonical JSON). Returns 0, 1 when
 * there is none, or a negative code with the reason in errstr. */
static int prefs_read(ingest_ctx_t *ctx, const ingest_prefs_target_t *t, cmn_buf_t *out, char *errstr,
                      size_t errlen)
{
    ingest_pool_lease_t lease;
    PGresult *res = NULL;
    json_object *obj = NULL;
    cmn_preferences_t prefs;
    memset(&prefs, 0, sizeof prefs);

    int rc = ingest_pool_acquire(ctx->pool, (int)ctx->cfg->db_timeout_ms, &lease, errstr, errlen);
    if (rc != 0)
        return rc;
    const char *params[2] = {t->tenant_id, t->client_id};
    res = PQexecParams(lease.conn, PREFS_SELECT_SQL, 2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        snprintf(errstr, errlen, "%s", PQresultErrorMessage(res));
        rc = CMN_ERR_DB;
        goto cleanup;
    }
    if (PQntuples(res) == 0) {
        rc = 1;
        goto cleanup;
    }
    /* The column is jsonb, which reorders members; parsing and writing it
     * again gives back the canonical bytes that were PUT. */
    const char *text = PQgetvalue(res, 0, 0);
    obj = cmn_json_parse(text, strlen(text), errstr, errlen);
    if (obj == NULL || cmn_preferences_from_json(obj, "", &prefs, NULL) != 0) {
        snprintf(errstr, errlen, "the stored snapshot is not a valid ClientPreferences record");
        rc = CMN_ERR_INVALID;
        goto cleanup;
    }
    rc = cmn_preferences_to_json(&prefs, out);
cleanup:
    json_object_put(obj);
    cmn_preferences_clear(&prefs);
    PQclear(res);
    ingest_pool_release(ctx->pool, &lease);
    return rc;
}

static void prefs_get(ingest_ctx_t *ctx, const cmn_http_request_t *req, const char *client,
                      cmn_http_response_t *resp)
{
    ingest_prefs_target_t target;
    ingest_problem_t problem;
    char err[512] = "";
    memset(&problem, 0, sizeof problem);

    int rc = ingest_prefs_target(client, cmn_http_request_query(req, "tenant_id"), &target, &problem);
    if (rc == CMN_ERR_INVALID) {
        prefs_refused(ctx, &problem, resp);
        goto out;
    }
    if (rc != 0) {
        cmn_http_problem(resp, 500, NULL, "The server could not process the request.", NULL);
        goto out;
    }
    if (ctx->pool == NULL) {
        cmn_counter_add(ctx->m_prefs_unavailable, 1);
        cmn_http_problem(resp, 503, NULL, "Reading preferences is not configured on this server (DATABASE_URL).",
                         NULL);
        goto out;
    }
    rc = prefs_read(ctx, &target, &resp->body, err, sizeof err);
    if (rc == 1) {
        cmn_counter_add(ctx->m_prefs_not_found, 1);
        cmn_http_problem(resp, 404, NULL,
                         "No preferences are stored for this client (or a PUT is not projected yet).", NULL);
        goto out;
    }
    if (rc != 0) {
        cmn_buf_reset(&resp->body);
        cmn_counter_add(ctx->m_prefs_unavailable, 1);
        cmn_logkv(&ctx->log, CMN_LOG_WARN, NULL, (const char *[]){"error", err, NULL},
                  "cannot read preferences; answering 503");
        cmn_http_problem(resp, 503, NULL, "The preferences could not be read. Retry later.", NULL);
        snprintf(resp->extra_headers, sizeof resp->extra_headers, "Retry-After: %d\r\n", INGEST_RETRY_AFTER_S);
        goto out;
    }
    resp->status = 200;
    snprintf(resp->content_type, sizeof resp->content_type, "application/json");
    cmn_counter_add(ctx->m_prefs_found, 1);
out:
    ingest_problem_clear(&problem);
}

static void handle(void *arg, const cmn_http_request_t *req, cmn_http_response_t *resp)
{
    ingest_ctx_t *ctx = arg;
    char client[CMN_REQ_MAX_ID + 1];
    const char *allow = NULL;
    switch (ingest_api_route(req->method, req->path)) {
    case INGEST_ROUTE_SUBMIT:
        submit(ctx, req, resp);
        break;
    case INGEST_ROUTE_PREFS_GET:
        ingest_prefs_path(req->path, client, sizeof client);
        prefs_get(ctx, req, client, resp);
        break;
    case INGEST_ROUTE_PREFS_PUT:
        ingest_prefs_path(req->path, client, sizeof client);
        prefs_put(ctx, req, client, resp);
        break;
    case INGEST_ROUTE_PREFS_DELETE:
        ingest_prefs_path(req->path, client, sizeof client);
        prefs_delete(ctx, req, client, resp);
        break;
    case INGEST_ROUTE_METHOD_NOT_ALLOWED:
        allow = ingest_api_allow(req->path);
        cmn_http_problem(resp, 405, NULL, "This method is not allowed on this resource; see the Allow header.",
                         NULL);
        snprintf(resp->extra_headers, sizeof resp->extra_headers, "Allow: %s\r\n",
                 allow != NULL ? allow : INGEST_ALLOW_COMMUNICATIONS);
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
    static const char phelp[] = "Requests to /v1/clients/{client_id}/preferences, by outcome.";
    static const char pname[] = "ingest_preferences_requests_total";
    ctx->m_prefs_stored = cmn_metrics_counter(ctx->metrics, pname, phelp, "result=\"stored\"");
    ctx->m_prefs_erased = cmn_metrics_counter(ctx->metrics, pname, phelp, "result=\"erased\"");
    ctx->m_prefs_found = cmn_metrics_counter(ctx->metrics, pname, phelp, "result=\"found\"");
    ctx->m_prefs_not_found = cmn_metrics_counter(ctx->metrics, pname, phelp, "result=\"not_found\"");
    ctx->m_prefs_invalid = cmn_metrics_counter(ctx->metrics, pname, phelp, "result=\"invalid\"");
    ctx->m_prefs_unavailable = cmn_metrics_counter(ctx->metrics, pname, phelp, "result=\"unavailable\"");
    if (ctx->m_accepted == NULL || ctx->m_invalid == NULL || ctx->m_unavailable == NULL ||
        ctx->m_batch_size == NULL || ctx->m_latency == NULL || ctx->m_prefs_stored == NULL ||
        ctx->m_prefs_erased == NULL || ctx->m_prefs_found == NULL || ctx->m_prefs_not_found == NULL ||
        ctx->m_prefs_invalid == NULL || ctx->m_prefs_unavailable == NULL)
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
    atomic_init(&ctx->last_stamp, 0);
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

    /* No connection is opened here: writes must work while PostgreSQL is
     * down, so the pool connects on the first read. */
    if (cfg->database_url != NULL && cfg->database_url[0] != '\0') {
        ctx->pool = ingest_pool_new(cfg->database_url, (size_t)cfg->db_pool_size, why, sizeof why);
        if (ctx->pool == NULL) {
            snprintf(errstr, errlen, "postgresql: %s", why);
            goto cleanup;
        }
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
    ingest_pool_destroy(ctx->pool);
    cmn_metrics_destroy(ctx->metrics);
    if (ctx->log.service != NULL)
        cmn_log_info(&ctx->log, NULL, "ingest stopped");
    free(ctx);
}
