/* router_service.c - the router's consume loop (see router_service.h). */
#include "router_service.h"

#include <libpq-fe.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "crm/backoff.h"
#include "crm/buf.h"
#include "crm/crypto.h"
#include "crm/delay.h"
#include "crm/delayq.h"
#include "crm/err.h"
#include "crm/http.h"
#include "crm/json.h"
#include "crm/kafka.h"
#include "crm/metrics.h"
#include "crm/pg.h"
#include "crm/request.h"
#include "crm/signal.h"
#include "crm/status.h"
#include "crm/time.h"
#include "crm/uuid.h"
#include "router_claims.h"
#include "router_config.h"
#include "router_contacts.h"
#include "router_outputs.h"
#include "router_prefs.h"
#include "router_prefs_feed.h"
#include "router_readback.h"
#include "router_receipts.h"
#include "router_strategy.h"

#ifndef CRM_ROUTER_DEFAULT_CHANNELS_FILE
#define CRM_ROUTER_DEFAULT_CHANNELS_FILE "config/routing.json"
#endif

#define SERVICE_NAME "crm-router"

/* How long a batch may wait for its produces to be acknowledged, and the
 * read-back for the log. Past these the batch is retried. */
#define PRODUCE_TIMEOUT_MS 30000
#define READBACK_TIMEOUT_MS 30000
#define KAFKA_META_TIMEOUT_MS 10000
/* An output fence may be this old; older fences only make a recovery read a
 * little more, so one query a second is plenty (router_readback.h). */
#define FENCE_MAX_AGE_MS 1000
#define PG_CONNECT_TIMEOUT_MS 5000
#define PG_HEALTH_INTERVAL_MS 5000
#define POLL_TIMEOUT_MS 500
/* PostgreSQL statements of a batch normally take milliseconds; a server
 * that hangs longer should fail the batch rather than stall it forever. */
#define PG_STATEMENT_TIMEOUT "SET statement_timeout = '30s'"

static const cmn_cfg_entry_t settings_table[] = {
    {"KAFKA_BROKERS", CMN_CFG_STRING, "localhost:9092", 0, offsetof(router_settings_t, kafka_brokers),
     "Kafka bootstrap servers, comma-separated host:port", 0, 0},
    {"DATABASE_URL", CMN_CFG_STRING, NULL, 1, offsetof(router_settings_t, database_url),
     "PostgreSQL connection URL holding the request claims", 0, 0},
    {"HTTP_BIND", CMN_CFG_STRING, "0.0.0.0", 0, offsetof(router_settings_t, http_bind),
     "Address the /metrics, /healthz and /readyz server listens on", 0, 0},
    {"HTTP_PORT", CMN_CFG_INT, "9101", 0, offsetof(router_settings_t, http_port),
     "Port of the /metrics, /healthz and /readyz server", 1, 65535},
    {"LOG_LEVEL", CMN_CFG_STRING, "info", 0, offsetof(router_settings_t, log_level),
     "debug, info, warn or error", 0, 0},
    {"ROUTER_CHANNELS_FILE", CMN_CFG_STRING, CRM_ROUTER_DEFAULT_CHANNELS_FILE, 0,
     offsetof(router_settings_t, channels_file),
     "JSON file with the default channel order per message type (docs/routing.md)", 0, 0},
    {"ROUTER_ENABLED_CHANNELS", CMN_CFG_STRING, "email", 0, offsetof(router_settings_t, enabled_channels),
     "Comma list of channels that have a provider configured (email, sms, whatsapp)", 0, 0},
    {"ROUTER_BATCH_SIZE", CMN_CFG_INT, "500", 0, offsetof(router_settings_t, batch_size),
     "Most requests claimed and routed per batch", 1, 10000},
    {"ROUTER_GROUP_ID", CMN_CFG_STRING, "crm-router", 0, offsetof(router_settings_t, group_id),
     "Kafka consumer group of the router replicas", 0, 0},
    {"KAFKA_SESSION_TIMEOUT_MS", CMN_CFG_INT, "45000", 0, offsetof(router_settings_t, session_timeout_ms),
     "Consumer group session timeout: how soon a dead replica's partitions move to a live one", 6000, 300000},
    {"ROUTER_QUIET_HOURS_CHANNELS", CMN_CFG_STRING, "sms,whatsapp", 0, offsetof(router_settings_t, quiet_channels),
     "Comma list of channels that clients' quiet hours hold back (critical messages never wait)", 0, 0},
    {"ROUTER_WHATSAPP_REQUIRE_CONSENT", CMN_CFG_BOOL, "true", 0,
     offsetof(router_settings_t, whatsapp_require_consent),
     "WhatsApp only to clients whose preferences record a granted opt-in", 0, 0},
    {"ROUTER_PREFS_CACHE_SIZE", CMN_CFG_INT, "100000", 0, offsetof(router_settings_t, prefs_cache_size),
     "Most clients whose preferences the router keeps in memory", 1, 100000000},
    {"ROUTER_PREFS_CACHE_TTL_MS", CMN_CFG_INT, "300000", 0, offsetof(router_settings_t, prefs_cache_ttl_ms),
     "How long a cached preferences snapshot is used before PostgreSQL is read again", 1000, 86400000},
    {"ROUTER_DEFER_GROUP_ID", CMN_CFG_STRING, "crm-router-defer", 0, offsetof(router_settings_t, defer_group_id),
     "Kafka consumer group of the crm.defer.* consumer that hands deferred requests back", 0, 0},
    {"CRM_DATA_KEY", CMN_CFG_STRING, "", 1, offsetof(router_settings_t, data_key),
     "Secret (32+ characters) keying the address hashes of client_contacts; empty: not recorded", 0, 0},
    {"RECEIPT_CHECK_INTERVAL_MS", CMN_CFG_INT, "15000", 0, offsetof(router_settings_t, receipt_check_interval_ms),
     "How often a receipt watch looks for its receipt (the workers' RECEIPT_CHECK_INTERVAL_MS should match)", 100,
     3600000},
    {"RECEIPT_MAX_WAIT_MS", CMN_CFG_INT, "86400000", 0, offsetof(router_settings_t, receipt_max_wait_ms),
     "A receipt watch without a deadline ends after this long without a receipt (the message stays sent)", 1000,
     604800000},
};

const cmn_cfg_entry_t *router_settings_table(size_t *n)
{
    *n = sizeof settings_table / sizeof settings_table[0];
    return settings_table;
}

/* Outcome counts of one batch, added to the metrics only once the batch is
 * committed so a retried batch is not counted twice. */
typedef struct outcome_counts {
    uint64_t routed, suppressed, duplicate, rejected, deferred;
    uint64_t prefs_hit, prefs_miss;
} outcome_counts_t;

struct router_ctx {
    const router_settings_t *settings; /* borrowed */
    const cmn_log_t *log;              /* borrowed */
    router_config_t *routing;
    unsigned enabled;
    char send_topics[CMN_CHANNEL__COUNT][64]; /* crm.send.<channel> of every enabled channel */
    const char *send_topic_ptrs[CMN_CHANNEL__COUNT];
    size_t n_send_topics;

    cmn_metrics_t *metrics;
    cmn_counter_t *requests_routed, *requests_suppressed, *requests_duplicate, *requests_rejected;
    cmn_counter_t *requests_deferred, *prefs_hit, *prefs_miss;
    cmn_histogram_t *batch_seconds;

    cmn_kafka_producer_t *producer;
    cmn_kafka_consumer_t *consumer;
    router_readback_t *readback;
    router_prefs_cache_t *prefs;
    router_prefs_feed_t *prefs_feed;
    cmn_delayq_t *delayq;
    router_receipts_t *receipts; /* the defer consumer's guard of receipt watches */
    cmn_quiet_policy_t quiet;
    PGconn *pg;
    cmn_http_server_t *http;

    /* Read by the HTTP threads for /readyz, written by the loop. */
    atomic_int pg_ok;
    int pg_session_pid; /* backend of the session statement_timeout was set on */

    char session_prop[64]; /* "session.timeout.ms=..." for the consumer */
    char heartbeat_prop[64];
    const char *consumer_extra[3];

    char *fence; /* output fence JSON, owned */
    int64_t fence_taken_ms;
    int64_t pg_checked_ms;
    int failures;      /* consecutive failed batches, for the backoff */
    uint64_t rng;      /* xorshift state for backoff jitter */
};

/* One record of a batch while it is being processed. */
typedef struct router_item {
    const cmn_kafka_message_t *msg; /* borrowed from the consumer */
    json_object *obj;               /* parsed record, owned; NULL when malformed */
    int valid;
    cmn_request_t req;              /* owned fields; meaningful when valid */
    json_object *problems;          /* owned array of {"field","reason"} when invalid */
    /* Ids of an invalid record when it carries usable ones (borrowed from obj). */
    const char *bad_tenant, *bad_request_id;
    char bad_comm_id[CMN_UUID_STR_LEN + 1];
    int has_ids;
    int oom;                        /* validation ran out of memory: fail the batch */
    long claim;                     /* index into the batch's claims, or -1 */
    router_prefs_ref_t *prefs;      /* the client's preferences (a reference), or NULL */
    cmn_channel_t found;            /* resumed claim: channel of an existing Dispatch, or NONE */
    char traceparent[56];
} router_item_t;

/* ---------------------------------------------------------------- helpers */

static uint64_t next_random(router_ctx_t *ctx)
{
    /* xorshift64: jitter only needs to differ between replicas. */
    uint64_t x = ctx->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    ctx->rng = x;
    return x;
}

/* Sleeps ms in short steps so a stop request is honoured promptly. */
static void sleep_interruptible(int64_t ms)
{
    int64_t end = cmn_monotonic_ms() + ms;
    while (!cmn_stop_requested) {
        int64_t left = end - cmn_monotonic_ms();
        if (left <= 0) {
            break;
        }
        int64_t step = left < 100 ? left : 100;
        struct timespec ts = {.tv_sec = (time_t)(step / 1000), .tv_nsec = (long)((step % 1000) * 1000000)};
        nanosleep(&ts, NULL);
    }
}

/* /readyz, from an HTTP thread: PostgreSQL as last seen by the loop, and
 * Kafka as the consumer sees it (cmn_kafka_consumer_is_healthy is
 * thread-safe). */
static int ready_fn(void *opaque)
{
    router_ctx_t *ctx = opaque;
    return atomic_load(&ctx->pg_ok) && cmn_kafka_consumer_is_healthy(ctx->consumer) &&
           router_prefs_feed_ready(ctx->prefs_feed) && cmn_delayq_is_ready(ctx->delayq);
}

/* Publishes PostgreSQL's state for /readyz, logging only the transitions so
 * an outage is one error line, not one per retry. */
static void pg_set_ok(router_ctx_t *ctx, int ok, const char *why)
{
    int was = atomic_exchange(&ctx->pg_ok, ok);
    if (was && !ok) {
        cmn_log_error(ctx->log, NULL, "PostgreSQL unavailable, not ready until it is back: %s", why);
    } else if (!was && ok) {
        cmn_log_info(ctx->log, NULL, "PostgreSQL connected");
    }
}

/* Makes sure there is a usable PostgreSQL connection, connecting or
 * reconnecting as needed, and publishes the result for /readyz. */
static int pg_ready(router_ctx_t *ctx)
{
    char err[512];
    int rc = CMN_OK;

    err[0] = '\0';
    /* Connects when there is no connection (at start, or after a failed
     * reconnect left none), reconnects when the server went away. */
    rc = cmn_pg_ensure(&ctx->pg, ctx->settings->database_url, PG_CONNECT_TIMEOUT_MS, err, sizeof err);
    /* A new session starts with the server's defaults again. */
    if (rc == CMN_OK && PQbackendPID(ctx->pg) != ctx->pg_session_pid) {
        rc = cmn_pg_exec(ctx->pg, PG_STATEMENT_TIMEOUT, err, sizeof err);
        if (rc == CMN_OK) {
            ctx->pg_session_pid = PQbackendPID(ctx->pg);
        }
    }
    ctx->pg_checked_ms = cmn_monotonic_ms();
    pg_set_ok(ctx, rc == CMN_OK, err);
    return rc == CMN_OK ? CMN_OK : CMN_ERR_UNAVAILABLE;
}

/* A cheap liveness probe so /readyz turns false while PostgreSQL is down
 * even when no requests arrive. */
static void pg_health_check(router_ctx_t *ctx)
{
    char err[256];
    if (ctx->pg != NULL && atomic_load(&ctx->pg_ok) &&
        cmn_pg_exec(ctx->pg, "SELECT 1", err, sizeof err) == CMN_OK) {
        ctx->pg_checked_ms = cmn_monotonic_ms();
        return;
    }
    (void)pg_ready(ctx);
}

/* Refreshes the output fence when it is older than FENCE_MAX_AGE_MS. */
static int fence_ready(router_ctx_t *ctx, char *errstr, size_t errlen)
{
    int64_t now = cmn_monotonic_ms();
    char *fresh = NULL;
    if (ctx->fence != NULL && now - ctx->fence_taken_ms < FENCE_MAX_AGE_MS) {
        return CMN_OK;
    }
    int rc = router_readback_fence(ctx->readback, ctx->send_topic_ptrs, ctx->n_send_topics, KAFKA_META_TIMEOUT_MS,
                                   &fresh, errstr, errlen);
    if (rc != CMN_OK) {
        return rc;
    }
    free(ctx->fence);
    ctx->fence = fresh;
    ctx->fence_taken_ms = now;
    return CMN_OK;
}

/* Produces one message into batch b with the record's traceparent. (A full
 * local queue is already waited out inside cmn_kafka_produce_in_batch.) */
static int produce(router_ctx_t *ctx, cmn_kafka_batch_t *b, const char *topic, const char *key,
                   const cmn_buf_t *value, const char *traceparent)
{
    cmn_kafka_header_t hdr = {CMN_HDR_TRACEPARENT, traceparent, strlen(traceparent)};
    return cmn_kafka_produce_in_batch(ctx->producer, b, topic, key, strlen(key), value->data, value->len, &hdr, 1);
}

static int problems_add(json_object *problems, const char *field, const char *reason)
{
    json_object *p = json_object_new_object();
    if (p == NULL) {
        return CMN_ERR_NOMEM;
    }
    cmn_json_add_string(p, "field", field);
    cmn_json_add_string(p, "reason", reason);
    json_object_array_add(problems, p);
    return CMN_OK;
}

/* Parses and validates one record into it. Never fails the batch: a record
 * that cannot be understood is simply invalid. */
static void parse_record(router_item_t *it)
{
    char perr[256];
    char reason[320];
    const cmn_kafka_message_t *m = it->msg;

    it->claim = -1;
    it->found = CMN_CHANNEL_NONE;
    it->problems = json_object_new_array();
    if (it->problems == NULL) {
        return; /* process_batch fails the batch */
    }

    if (m->value == NULL || m->value_len == 0) {
        problems_add(it->problems, "", "empty record: expected a CommunicationRequest JSON object");
        return;
    }
    it->obj = cmn_json_parse(m->value, m->value_len, perr, sizeof perr);
    if (it->obj == NULL) {
        snprintf(reason, sizeof reason, "malformed JSON: %s", perr);
        problems_add(it->problems, "", reason);
        return;
    }
    int rc = cmn_request_from_json(it->obj, "", &it->req, it->problems);
    if (rc == CMN_OK) {
        it->valid = 1;
        return;
    }
    if (rc == CMN_ERR_NOMEM) {
        /* Not the record's fault: fail the batch instead of rejecting it. */
        it->oom = 1;
        return;
    }
    if (json_object_array_length(it->problems) == 0) {
        problems_add(it->problems, "", "invalid CommunicationRequest");
    }
    /* A rejected status needs a communication id, which needs the ids that
     * derive it; take them only when they would pass validation themselves
     * (a ':' in the tenant would make the derived id ambiguous). */
    const char *rid = cmn_json_get_string(it->obj, "request_id");
    const char *tenant = cmn_json_has(it->obj, "tenant_id") ? cmn_json_get_string(it->obj, "tenant_id") : "default";
    if (rid != NULL && tenant != NULL && cmn_valid_id(rid, CMN_REQ_MAX_ID) && cmn_valid_id(tenant, CMN_REQ_MAX_ID) &&
        strchr(tenant, ':') == NULL && cmn_uuid_communication_id(tenant, rid, it->bad_comm_id) == CMN_OK) {
        it->has_ids = 1;
        it->bad_tenant = tenant;
        it->bad_request_id = rid;
    }
}

static void item_clear(router_item_t *it)
{
    /* Cleared for invalid records too: from_json may have filled part of
     * req before finding the problems. */
    cmn_request_clear(&it->req);
    router_prefs_ref_release(it->prefs);
    it->prefs = NULL;
    json_object_put(it->problems);
    json_object_put(it->obj);
}

static void pick_traceparent(router_item_t *it)
{
    size_t len = 0;
    const void *tp = cmn_kafka_message_header(it->msg, CMN_HDR_TRACEPARENT, &len);
    /* Continue the upstream trace when the record carries a well-formed
     * version-00 traceparent; start a new one otherwise. */
    if (tp != NULL && len == 55 && memcmp(tp, "00-", 3) == 0) {
        memcpy(it->traceparent, tp, 55);
        it->traceparent[55] = '\0';
        return;
    }
    if (cmn_kafka_traceparent_new(it->traceparent) != CMN_OK) {
        /* A constant, valid, "unsampled" parent beats dropping the header. */
        snprintf(it->traceparent, sizeof it->traceparent, "00-%032d-%016d-00", 1, 1);
    }
}

static int emit_status(router_ctx_t *ctx, cmn_kafka_batch_t *b, cmn_status_event_t *ev, const char *traceparent)
{
    cmn_buf_t buf = CMN_BUF_INIT;
    int rc = cmn_status_event_finalize(ev);
    if (rc == CMN_OK) {
        rc = cmn_status_event_to_json(ev, &buf);
    }
    if (rc == CMN_OK) {
        rc = produce(ctx, b, CMN_TOPIC_STATUS, ev->communication_id, &buf, traceparent);
    }
    cmn_buf_free(&buf);
    return rc;
}

/* DLQ copy plus, when the record has usable ids that no accepted request
 * holds, a `rejected` status. */
static int emit_invalid(router_ctx_t *ctx, cmn_kafka_batch_t *b, router_item_t *it, const router_claim_t *claims,
                        int64_t now, outcome_counts_t *counts)
{
    cmn_buf_t reason = CMN_BUF_INIT;
    int rc = cmn_json_to_buf(it->problems, &reason);
    if (rc != CMN_OK) {
        goto cleanup;
    }
    rc = cmn_kafka_dlq_in_batch(ctx->producer, b, it->msg, SERVICE_NAME, reason.data);
    if (rc != CMN_OK) {
        goto cleanup;
    }
    counts->rejected++;
    if (!it->has_ids) {
        cmn_logkv(ctx->log, CMN_LOG_WARN, NULL,
                  (const char *[]){"topic", it->msg->topic, "reason", reason.data, NULL},
                  "invalid record without usable ids sent to %s (partition %d, offset %lld)", CMN_TOPIC_DLQ,
                  (int)it->msg->partition, (long long)it->msg->offset);
        goto cleanup;
    }
    /* A broken copy of a request that was accepted must not turn that
     * communication into `rejected`. */
    if (it->claim >= 0 && claims[it->claim].state == ROUTER_CLAIM_FOUND) {
        cmn_logkv(ctx->log, CMN_LOG_WARN, it->bad_comm_id, (const char *[]){"reason", reason.data, NULL},
                  "invalid copy of an already accepted request sent to %s; no rejected status", CMN_TOPIC_DLQ);
        goto cleanup;
    }
    cmn_status_event_t ev;
    memset(&ev, 0, sizeof ev);
    memcpy(ev.communication_id, it->bad_comm_id, sizeof ev.communication_id);
    ev.request_id = it->bad_request_id;
    ev.tenant_id = it->bad_tenant;
    ev.client_id = cmn_json_get_string(it->obj, "client_id");
    ev.message_type = cmn_json_get_string(it->obj, "message_type");
    ev.channel = CMN_CHANNEL_NONE;
    ev.status = CMN_STATUS_REJECTED;
    ev.reason = "invalid_request";
    ev.error_message = reason.data;
    ev.occurred_at_ms = now;
    rc = emit_status(ctx, b, &ev, it->traceparent);
    if (rc == CMN_OK) {
        cmn_logkv(ctx->log, CMN_LOG_WARN, it->bad_comm_id, (const char *[]){"reason", reason.data, NULL},
                  "request rejected and sent to %s", CMN_TOPIC_DLQ);
    }

cleanup:
    cmn_buf_free(&reason);
    return rc;
}

/* `deferred` (with when, why, which tier and which deferral) and the
 * request record itself, unchanged, to the defer tier for `until`, carrying
 * the deferral number the claim will hold once finished (router_claims.h). */
static int emit_deferred(router_ctx_t *ctx, cmn_kafka_batch_t *b, router_item_t *it, router_claim_t *claim,
                         const router_decision_t *dec, int64_t now, outcome_counts_t *counts)
{
    const cmn_request_t *r = &it->req;
    cmn_status_event_t ev;
    cmn_delay_hop_t hop;
    cmn_buf_t details = CMN_BUF_INIT;
    char until[40], seq[24], disc[40];
    size_t ntiers = 0;
    int64_t n = claim->seq + 1;

    int rc = cmn_delay_plan_hop(CMN_DELAY_DEFER, CMN_CHANNEL_NONE, now, dec->defer_until_ms, &hop);
    if (rc != CMN_OK) {
        goto cleanup;
    }
    const cmn_delay_tier_t *tiers = cmn_delay_tiers(CMN_DELAY_DEFER, &ntiers);
    const char *tier = hop.direct || hop.tier >= ntiers ? "none" : tiers[hop.tier].name;
    rc = cmn_time_format_rfc3339(dec->defer_until_ms, until, sizeof until);
    if (rc != CMN_OK) {
        goto cleanup;
    }
    snprintf(seq, sizeof seq, "%lld", (long long)n);
    rc = cmn_buf_puts(&details, "{\"until\":");
    if (rc == CMN_OK) {
        rc = cmn_buf_put_json_string(&details, until);
    }
    if (rc == CMN_OK) {
        rc = cmn_buf_printf(&details, ",\"reason\":\"%s\",\"tier\":\"%s\",\"deferral\":%lld}",
                            router_defer_name(dec->defer_reason), tier, (long long)n);
    }
    if (rc != CMN_OK) {
        goto cleanup;
    }

    /* The same record goes back to crm.requests; its key keeps the client's
     * requests on one partition. */
    const char *key = it->msg->key;
    size_t key_len = it->msg->key_len;
    if (key == NULL) {
        key = r->client_id != NULL ? r->client_id : r->communication_id;
        key_len = strlen(key);
    }
    cmn_kafka_header_t hdrs[4] = {
        {CMN_HDR_TRACEPARENT, it->traceparent, strlen(it->traceparent)},
        {CMN_DELAY_HDR_DUE_AT, hop.due_at, strlen(hop.due_at)},
        {CMN_DELAY_HDR_TARGET, hop.target, strlen(hop.target)},
        {ROUTER_HDR_DEFERRAL, seq, strlen(seq)},
    };
    rc = cmn_kafka_produce_in_batch(ctx->producer, b, hop.topic, key, key_len, it->msg->value, it->msg->value_len,
                                    hdrs, 4);
    if (rc != CMN_OK) {
        goto cleanup;
    }

    /* One event per deferral: a re-emission after a crash has the same id,
     * a second deferral of the same request does not. */
    snprintf(disc, sizeof disc, "deferral-%lld", (long long)n);
    router_status_init(&ev, r, CMN_STATUS_DEFERRED, now);
    ev.reason = router_defer_name(dec->defer_reason);
    ev.discriminator = disc;
    ev.details_json = details.data;
    rc = emit_status(ctx, b, &ev, it->traceparent);
    if (rc != CMN_OK) {
        goto cleanup;
    }
    claim->defer = 1;
    claim->defer_until_ms = dec->defer_until_ms;
    counts->deferred++;
    cmn_logkv(ctx->log, CMN_LOG_INFO, r->communication_id,
              (const char *[]){"reason", ev.reason, "until", until, "topic", hop.topic, "deferral", seq, "channel",
                               cmn_channel_name(dec->channel), NULL},
              "request deferred");

cleanup:
    cmn_buf_free(&details);
    return rc;
}

/* The outputs of a claim to route: `accepted` on first sight, then routed +
 * Dispatch, suppressed, or deferred. */
static int emit_valid(router_ctx_t *ctx, cmn_kafka_batch_t *b, router_item_t *it, router_claim_t *claim,
                      int64_t now, outcome_counts_t *counts)
{
    const cmn_request_t *r = &it->req;
    cmn_status_event_t ev;
    router_decision_t dec;
    cmn_dispatch_t d;
    cmn_buf_t buf = CMN_BUF_INIT;
    char topic[64];
    int rc = CMN_OK;

    memset(&d, 0, sizeof d);
    claim->defer = 0;
    /* A request coming back from a deferral was accepted the first time. */
    if (claim->seq == 0) {
        router_status_init(&ev, r, CMN_STATUS_ACCEPTED, now);
        rc = emit_status(ctx, b, &ev, it->traceparent);
        if (rc != CMN_OK) {
            goto cleanup;
        }
    }

    /* A resumed claim whose Dispatch is already in the log gets its statuses
     * again (the projector stores each event id once) but no second
     * Dispatch, whatever the strategy would say now: the message is out. */
    if (it->found != CMN_CHANNEL_NONE) {
        router_status_init(&ev, r, CMN_STATUS_ROUTED, now);
        ev.channel = it->found;
        ev.attempt = 1;
        rc = emit_status(ctx, b, &ev, it->traceparent);
        if (rc == CMN_OK) {
            counts->routed++;
            cmn_logkv(ctx->log, CMN_LOG_INFO, r->communication_id,
                      (const char *[]){"channel", cmn_channel_name(it->found), NULL},
                      "resumed request already dispatched before a restart; not dispatching again");
        }
        goto cleanup;
    }

    router_input_t in = {.request = r,
                         .config = ctx->routing,
                         .enabled = ctx->enabled,
                         .now_ms = now,
                         .prefs = router_prefs_get(it->prefs),
                         .quiet = &ctx->quiet,
                         .whatsapp_consent_optional = !ctx->settings->whatsapp_require_consent};
    rc = router_decide(&in, &dec);
    if (rc != CMN_OK) {
        goto cleanup;
    }
    if (dec.quiet_zone_invalid) {
        cmn_logkv(ctx->log, CMN_LOG_WARN, r->communication_id, NULL,
                  "the client's time zone is unknown to ICU; quiet hours not applied");
    }
    if (dec.suppressed) {
        router_status_init(&ev, r, CMN_STATUS_SUPPRESSED, now);
        ev.reason = router_reason_name(dec.reason);
        rc = emit_status(ctx, b, &ev, it->traceparent);
        if (rc == CMN_OK) {
            counts->suppressed++;
            cmn_logkv(ctx->log, CMN_LOG_INFO, r->communication_id,
                      (const char *[]){"reason", ev.reason, "source", router_source_name(dec.source), NULL},
                      "request suppressed");
        }
        goto cleanup;
    }
    if (dec.deferred) {
        rc = emit_deferred(ctx, b, it, claim, &dec, now, counts);
        goto cleanup;
    }

    router_status_init(&ev, r, CMN_STATUS_ROUTED, now);
    ev.channel = dec.channel;
    ev.attempt = 1;
    rc = emit_status(ctx, b, &ev, it->traceparent);
    if (rc != CMN_OK) {
        goto cleanup;
    }
    rc = router_build_dispatch(r, &dec, router_created_at(r, it->msg->timestamp_ms, now), &d);
    /* The request's own locale first (the sender may know better for this
     * message), else the client's. */
    const cmn_preferences_t *p = router_prefs_get(it->prefs);
    if (rc == CMN_OK && d.locale == NULL && p != NULL && p->locale != NULL) {
        d.locale = strdup(p->locale);
        rc = d.locale != NULL ? CMN_OK : CMN_ERR_NOMEM;
    }
    if (rc == CMN_OK) {
        rc = cmn_dispatch_to_json(&d, &buf);
    }
    if (rc == CMN_OK) {
        snprintf(topic, sizeof topic, "%s%s", CMN_TOPIC_SEND_PREFIX, cmn_channel_name(dec.channel));
        /* Keyed by client so one client's messages stay in order on a
         * partition; a request without client_id still needs a stable key. */
        rc = produce(ctx, b, topic, r->client_id != NULL ? r->client_id : r->communication_id, &buf,
                     it->traceparent);
    }
    if (rc == CMN_OK) {
        char nfb[8];
        snprintf(nfb, sizeof nfb, "%zu", dec.n_fallback);
        counts->routed++;
        cmn_logkv(ctx->log, CMN_LOG_INFO, r->communication_id,
                  (const char *[]){"channel", cmn_channel_name(dec.channel), "source", router_source_name(dec.source),
                                   "fallbacks", nfb, NULL},
                  "request routed");
    }

cleanup:
    cmn_dispatch_clear(&d);
    cmn_buf_free(&buf);
    return rc;
}

/* 1 when the claim means "route this record now". */
static int claim_to_route(const router_claim_t *c)
{
    return c->state == ROUTER_CLAIM_NEW || c->state == ROUTER_CLAIM_RESUME || c->state == ROUTER_CLAIM_RETURN;
}

typedef struct prefs_want {
    const char *tenant, *client;
    size_t key; /* index into the distinct keys */
    router_item_t *item;
} prefs_want_t;

static int cmp_want(const void *a, const void *b)
{
    const prefs_want_t *x = a;
    const prefs_want_t *y = b;
    int c = strcmp(x->tenant, y->tenant);
    return c != 0 ? c : strcmp(x->client, y->client);
}

/* Gives every item to route its client's preferences: from the cache, else
 * from one query for all the batch's misses. */
static int load_prefs(router_ctx_t *ctx, router_item_t *items, size_t n, const router_claim_t *claims,
                      outcome_counts_t *counts, char *errstr, size_t errlen)
{
    prefs_want_t *want = NULL;
    router_prefs_key_t *keys = NULL;
    size_t nwant = 0, nkeys = 0, unreadable = 0;
    int64_t mono = cmn_monotonic_ms();
    /* Taken before the query so a feed update racing with it wins. */
    uint64_t since = router_prefs_cache_epoch(ctx->prefs);
    int rc = CMN_OK;

    want = calloc(n > 0 ? n : 1, sizeof *want);
    keys = calloc(n > 0 ? n : 1, sizeof *keys);
    if (want == NULL || keys == NULL) {
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++) {
        router_item_t *it = &items[i];
        if (!it->valid || it->claim < 0 || !claim_to_route(&claims[it->claim]) || it->req.client_id == NULL) {
            continue;
        }
        router_prefs_ref_t *ref = NULL;
        int hit = router_prefs_cache_get(ctx->prefs, it->req.tenant_id, it->req.client_id, mono, &ref);
        if (hit == 1) {
            it->prefs = ref;
            counts->prefs_hit++;
            continue;
        }
        counts->prefs_miss++;
        want[nwant++] = (prefs_want_t){.tenant = it->req.tenant_id, .client = it->req.client_id, .item = it};
    }
    if (nwant == 0) {
        goto cleanup;
    }
    qsort(want, nwant, sizeof *want, cmp_want);
    for (size_t i = 0; i < nwant; i++) {
        if (nkeys == 0 || cmp_want(&want[i], &want[i - 1]) != 0) {
            keys[nkeys++] = (router_prefs_key_t){.tenant = want[i].tenant, .client = want[i].client};
        }
        want[i].key = nkeys - 1;
    }
    rc = router_prefs_load(ctx->pg, keys, nkeys, &unreadable, errstr, errlen);
    if (rc != CMN_OK) {
        goto cleanup;
    }
    if (unreadable > 0) {
        cmn_log_error(ctx->log, NULL,
                      "%zu client_preferences row(s) are not valid snapshots; those clients are treated as opted out "
                      "of every channel",
                      unreadable);
    }
    /* The cache decides which snapshot wins (the feed's may be newer than
     * the projection); every item of a client uses the winner. */
    for (size_t k = 0; rc == CMN_OK && k < nkeys; k++) {
        router_prefs_ref_t *winner = NULL;
        rc = router_prefs_cache_put_loaded(ctx->prefs, keys[k].tenant, keys[k].client, keys[k].ref, since, mono,
                                           &winner);
        router_prefs_ref_release(keys[k].ref);
        keys[k].ref = winner;
    }
    for (size_t i = 0; rc == CMN_OK && i < nwant; i++) {
        want[i].item->prefs = router_prefs_ref_keep(keys[want[i].key].ref);
    }

cleanup:
    if (rc == CMN_ERR_NOMEM) {
        snprintf(errstr, errlen, "out of memory while reading preferences");
    }
    for (size_t k = 0; keys != NULL && k < nkeys; k++) {
        router_prefs_ref_release(keys[k].ref);
    }
    free(want);
    free(keys);
    return rc;
}

/* Records the batch's (client, address hash) pairs for inbound opt-outs;
 * only with CRM_DATA_KEY set. */
static int record_contacts(router_ctx_t *ctx, const router_item_t *items, size_t n, const router_claim_t *claims,
                           char *errstr, size_t errlen)
{
    router_contact_t *rows = NULL;
    size_t nrows = 0;
    int rc = CMN_OK;

    if (ctx->settings->data_key == NULL || ctx->settings->data_key[0] == '\0') {
        return CMN_OK;
    }
    rows = calloc(n * CMN_CHANNEL__COUNT + 1, sizeof *rows);
    if (rows == NULL) {
        snprintf(errstr, errlen, "out of memory");
        return CMN_ERR_NOMEM;
    }
    for (size_t i = 0; rc == CMN_OK && i < n; i++) {
        const router_item_t *it = &items[i];
        if (it->valid && it->claim >= 0 && claim_to_route(&claims[it->claim])) {
            rc = router_contacts_of(&it->req, ctx->settings->data_key, rows, &nrows);
        }
    }
    if (rc == CMN_OK) {
        rc = router_contacts_upsert(ctx->pg, rows, nrows, errstr, errlen);
    } else {
        snprintf(errstr, errlen, "CRM_DATA_KEY: cannot hash addresses");
    }
    free(rows);
    return rc;
}

/* Looks up the resumed claims' earlier Dispatches (router_readback.h). */
static int resolve_resumed(router_ctx_t *ctx, router_item_t *items, size_t n, const router_claim_t *claims,
                           char *errstr, size_t errlen)
{
    router_readback_query_t *q = NULL;
    size_t nq = 0;
    int rc = CMN_OK;

    for (size_t i = 0; i < n; i++) {
        if (items[i].valid && items[i].claim >= 0 && claims[items[i].claim].state == ROUTER_CLAIM_RESUME) {
            nq++;
        }
    }
    if (nq == 0) {
        return CMN_OK;
    }
    q = calloc(nq, sizeof *q);
    if (q == NULL) {
        snprintf(errstr, errlen, "out of memory");
        return CMN_ERR_NOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (items[i].valid && items[i].claim >= 0 && claims[items[i].claim].state == ROUTER_CLAIM_RESUME) {
            q[k].communication_id = items[i].req.communication_id;
            q[k].fence = claims[items[i].claim].fence;
            k++;
        }
    }
    cmn_log_info(ctx->log, NULL, "resuming %zu request(s) claimed by an unfinished earlier attempt; checking the log",
                 nq);
    rc = router_readback_find(ctx->readback, q, nq, ctx->send_topic_ptrs, ctx->n_send_topics, READBACK_TIMEOUT_MS,
                              errstr, errlen);
    if (rc == CMN_OK) {
        k = 0;
        for (size_t i = 0; i < n; i++) {
            if (items[i].valid && items[i].claim >= 0 && claims[items[i].claim].state == ROUTER_CLAIM_RESUME) {
                items[i].found = q[k++].found;
            }
        }
    }
    free(q);
    return rc;
}

/* Processes one polled batch up to (not including) the offset commit.
 * Returns 0 when every output is acknowledged and the claims are done. */
static int process_batch(router_ctx_t *ctx, cmn_kafka_message_t *msgs, size_t n, outcome_counts_t *counts,
                         char *errstr, size_t errlen)
{
    router_item_t *items = calloc(n, sizeof *items);
    router_claim_t *claims = calloc(n, sizeof *claims);
    cmn_kafka_batch_t kb;
    int kb_live = 0;
    size_t nclaims = 0;
    size_t nvalid = 0;
    int rc = CMN_OK;
    int64_t now = cmn_now_ms();

    if (items == NULL || claims == NULL) {
        snprintf(errstr, errlen, "out of memory");
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++) {
        items[i].msg = &msgs[i];
        parse_record(&items[i]);
        pick_traceparent(&items[i]);
        router_item_t *it = &items[i];
        if (it->oom || it->problems == NULL) {
            snprintf(errstr, errlen, "out of memory while validating a record");
            rc = CMN_ERR_NOMEM;
            goto cleanup;
        }
        if (it->valid) {
            size_t hlen = 0;
            const void *h = cmn_kafka_message_header(it->msg, ROUTER_HDR_DEFERRAL, &hlen);
            int64_t deferral = 0;
            if (h != NULL && router_deferral_parse(h, hlen, &deferral) != CMN_OK) {
                /* Without a usable number the record is treated as a plain
                 * request: a duplicate if the request is known, which can
                 * never send anything twice. */
                cmn_logkv(ctx->log, CMN_LOG_WARN, it->req.communication_id, NULL,
                          "malformed %s header ignored", ROUTER_HDR_DEFERRAL);
            }
            claims[nclaims] = (router_claim_t){.tenant_id = it->req.tenant_id,
                                               .request_id = it->req.request_id,
                                               .communication_id = it->req.communication_id,
                                               .source_topic = it->msg->topic,
                                               .source_partition = it->msg->partition,
                                               .source_offset = it->msg->offset,
                                               .deferral = deferral};
            it->claim = (long)nclaims++;
            nvalid++;
        } else if (it->has_ids) {
            claims[nclaims] = (router_claim_t){.tenant_id = it->bad_tenant,
                                               .request_id = it->bad_request_id,
                                               .communication_id = it->bad_comm_id,
                                               .source_topic = it->msg->topic,
                                               .source_partition = it->msg->partition,
                                               .source_offset = it->msg->offset,
                                               .lookup_only = 1};
            it->claim = (long)nclaims++;
        }
    }

    if (nclaims > 0) {
        rc = pg_ready(ctx);
        if (rc != CMN_OK) {
            snprintf(errstr, errlen, "PostgreSQL unavailable");
            goto cleanup;
        }
        /* The fence must predate every produce of this batch; it is stored
         * with the new claims so a later recovery knows where to look. */
        if (nvalid > 0) {
            rc = fence_ready(ctx, errstr, errlen);
            if (rc != CMN_OK) {
                goto cleanup;
            }
        }
        rc = router_claims_acquire(ctx->pg, claims, nclaims, ctx->fence, errstr, errlen);
        if (rc != CMN_OK) {
            if (rc == CMN_ERR_UNAVAILABLE || PQstatus(ctx->pg) != CONNECTION_OK) {
                pg_set_ok(ctx, 0, errstr);
            }
            goto cleanup;
        }
        rc = resolve_resumed(ctx, items, n, claims, errstr, errlen);
        if (rc == CMN_OK) {
            rc = load_prefs(ctx, items, n, claims, counts, errstr, errlen);
        }
        if (rc == CMN_OK) {
            rc = record_contacts(ctx, items, n, claims, errstr, errlen);
        }
        if (rc != CMN_OK) {
            if (rc == CMN_ERR_UNAVAILABLE || PQstatus(ctx->pg) != CONNECTION_OK) {
                pg_set_ok(ctx, 0, errstr);
            }
            goto cleanup;
        }
    }

    rc = cmn_kafka_batch_init(&kb);
    if (rc != CMN_OK) {
        snprintf(errstr, errlen, "cannot start a produce batch");
        goto cleanup;
    }
    kb_live = 1;
    for (size_t i = 0; rc == CMN_OK && i < n; i++) {
        router_item_t *it = &items[i];
        if (!it->valid) {
            rc = emit_invalid(ctx, &kb, it, claims, now, counts);
            continue;
        }
        router_claim_t *c = &claims[it->claim];
        if (claim_to_route(c)) {
            rc = emit_valid(ctx, &kb, it, c, now, counts);
            continue;
        }
        counts->duplicate++;
        cmn_logkv(ctx->log, CMN_LOG_DEBUG, it->req.communication_id,
                  (const char *[]){"claim", router_claim_state_name(c->state), NULL},
                  "duplicate request skipped");
    }
    if (rc != CMN_OK) {
        snprintf(errstr, errlen, "producing outputs: %s", cmn_strerror(rc));
    }
    /* Wait even after a failed produce: the ones already queued must be
     * resolved before the batch is rewound and read back. */
    char werr[512];
    int wrc = cmn_kafka_batch_wait(&kb, PRODUCE_TIMEOUT_MS, werr, sizeof werr);
    if (rc == CMN_OK && wrc != CMN_OK) {
        rc = wrc;
        snprintf(errstr, errlen, "waiting for acknowledgements: %s", werr);
    }
    if (rc != CMN_OK) {
        goto cleanup;
    }

    rc = router_claims_finish(ctx->pg, claims, nclaims, errstr, errlen);
    if (rc != CMN_OK && (rc == CMN_ERR_UNAVAILABLE || PQstatus(ctx->pg) != CONNECTION_OK)) {
        pg_set_ok(ctx, 0, errstr);
    }

cleanup:
    if (kb_live) {
        if (rc != CMN_OK) {
            /* The retry's read-back must see every earlier produce settled
             * (delivered or failed for good), or it could miss a Dispatch
             * that lands after it looked. message.timeout.ms bounds this. */
            while (!cmn_stop_requested && cmn_kafka_producer_flush(ctx->producer, PRODUCE_TIMEOUT_MS) != CMN_OK) {
                cmn_log_warn(ctx->log, NULL, "waiting for earlier produces to settle before retrying");
            }
        }
        cmn_kafka_batch_destroy(&kb);
    }
    if (items != NULL) {
        for (size_t i = 0; i < n; i++) {
            item_clear(&items[i]);
        }
    }
    if (claims != NULL) {
        router_claims_release(claims, nclaims);
    }
    free(items);
    free(claims);
    return rc;
}

static void add_counts(router_ctx_t *ctx, const outcome_counts_t *c)
{
    cmn_counter_add(ctx->requests_routed, c->routed);
    cmn_counter_add(ctx->requests_suppressed, c->suppressed);
    cmn_counter_add(ctx->requests_duplicate, c->duplicate);
    cmn_counter_add(ctx->requests_rejected, c->rejected);
    cmn_counter_add(ctx->requests_deferred, c->deferred);
    cmn_counter_add(ctx->prefs_hit, c->prefs_hit);
    cmn_counter_add(ctx->prefs_miss, c->prefs_miss);
}

int router_service_run(router_ctx_t *ctx)
{
    const cmn_backoff_t backoff = {.base_ms = 200, .cap_ms = 10000, .max_attempts = 0};
    char err[1024];

    cmn_log_info(ctx->log, NULL, "router running (group %s, batch size %ld)", ctx->settings->group_id,
                 ctx->settings->batch_size);
    while (!cmn_stop_requested) {
        cmn_kafka_message_t *msgs = NULL;
        int n = cmn_kafka_consumer_poll_batch(ctx->consumer, (int)ctx->settings->batch_size, POLL_TIMEOUT_MS, &msgs);
        if (n < 0) {
            cmn_log_error(ctx->log, NULL, "polling %s failed: %s", CMN_TOPIC_REQUESTS, cmn_strerror(n));
            sleep_interruptible(1000);
            continue;
        }
        if (n == 0) {
            if (ctx->pg == NULL || !atomic_load(&ctx->pg_ok) ||
                cmn_monotonic_ms() - ctx->pg_checked_ms >= PG_HEALTH_INTERVAL_MS) {
                pg_health_check(ctx);
            }
            continue;
        }

        int64_t started = cmn_monotonic_ms();
        outcome_counts_t counts = {0};
        err[0] = '\0';
        int rc = process_batch(ctx, msgs, (size_t)n, &counts, err, sizeof err);
        if (rc == CMN_OK) {
            rc = cmn_kafka_consumer_commit_batch(ctx->consumer);
            if (rc != CMN_OK) {
                /* The outputs are durable and the claims done: a redelivery
                 * of this batch only finds duplicates, so carry on. */
                cmn_log_warn(ctx->log, NULL, "committing offsets failed (%s); the batch will be seen again as duplicates",
                             cmn_strerror(rc));
            }
            add_counts(ctx, &counts);
            cmn_histogram_observe(ctx->batch_seconds, (double)(cmn_monotonic_ms() - started) / 1000.0);
            cmn_log_debug(ctx->log, NULL,
                          "batch of %d: %llu routed, %llu deferred, %llu suppressed, %llu duplicate, %llu rejected"
                          " in %lld ms",
                          n, (unsigned long long)counts.routed, (unsigned long long)counts.deferred,
                          (unsigned long long)counts.suppressed,
                          (unsigned long long)counts.duplicate, (unsigned long long)counts.rejected,
                          (long long)(cmn_monotonic_ms() - started));
            ctx->failures = 0;
            continue;
        }

        ctx->failures++;
        int64_t delay = cmn_backoff_delay_ms(&backoff, ctx->failures < 30 ? ctx->failures : 30, next_random(ctx), 0);
        cmn_log_error(ctx->log, NULL, "batch of %d failed (%s: %s); rewinding and retrying in %lld ms", n,
                      cmn_strerror(rc), err, (long long)delay);
        int rrc = cmn_kafka_consumer_rewind_batch(ctx->consumer);
        if (rrc != CMN_OK) {
            cmn_log_error(ctx->log, NULL, "rewinding the batch failed: %s", cmn_strerror(rrc));
        }
        sleep_interruptible(delay);
        if (!atomic_load(&ctx->pg_ok)) {
            pg_health_check(ctx);
        }
    }
    cmn_log_info(ctx->log, NULL, "stop requested; router stopping");
    return CMN_OK;
}

/* ------------------------------------------------------------- lifecycle */

static int register_metrics(router_ctx_t *ctx)
{
    static const char help[] = "CommunicationRequests processed by the router, by outcome";
    ctx->metrics = cmn_metrics_new();
    if (ctx->metrics == NULL) {
        return CMN_ERR_NOMEM;
    }
    ctx->requests_routed = cmn_metrics_counter(ctx->metrics, "router_requests_total", help, "outcome=\"routed\"");
    ctx->requests_suppressed =
        cmn_metrics_counter(ctx->metrics, "router_requests_total", help, "outcome=\"suppressed\"");
    ctx->requests_duplicate = cmn_metrics_counter(ctx->metrics, "router_requests_total", help, "outcome=\"duplicate\"");
    ctx->requests_rejected = cmn_metrics_counter(ctx->metrics, "router_requests_total", help, "outcome=\"rejected\"");
    ctx->requests_deferred = cmn_metrics_counter(ctx->metrics, "router_requests_total", help, "outcome=\"deferred\"");
    static const char phelp[] = "Preferences lookups of routed requests, by where the snapshot came from";
    ctx->prefs_hit = cmn_metrics_counter(ctx->metrics, "router_prefs_lookups_total", phelp, "result=\"hit\"");
    ctx->prefs_miss = cmn_metrics_counter(ctx->metrics, "router_prefs_lookups_total", phelp, "result=\"miss\"");
    ctx->batch_seconds = cmn_metrics_histogram(ctx->metrics, "router_batch_seconds",
                                               "Time to process one batch, from poll to claims done", NULL,
                                               CMN_METRICS_LATENCY_BUCKETS, CMN_METRICS_LATENCY_BUCKETS_N);
    if (ctx->requests_routed == NULL || ctx->requests_suppressed == NULL || ctx->requests_duplicate == NULL ||
        ctx->requests_rejected == NULL || ctx->requests_deferred == NULL || ctx->prefs_hit == NULL ||
        ctx->prefs_miss == NULL || ctx->batch_seconds == NULL) {
        return CMN_ERR_NOMEM;
    }
    return CMN_OK;
}

router_ctx_t *router_service_new(const router_settings_t *settings, const cmn_log_t *log, int *exit_code,
                                 char *errstr, size_t errlen)
{
    router_ctx_t *ctx = NULL;
    char err[1024];
    int ok = 0;
    static const char *const request_topics[] = {CMN_TOPIC_REQUESTS, NULL};

    *exit_code = 2;
    ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL) {
        snprintf(errstr, errlen, "out of memory");
        *exit_code = 1;
        goto cleanup;
    }
    ctx->settings = settings;
    ctx->log = log;
    ctx->rng = ((uint64_t)cmn_now_ms() << 16) ^ (uint64_t)getpid() ^ 0x9e3779b97f4a7c15ull;
    atomic_init(&ctx->pg_ok, 0);

    /* Settings first: a bad deployment should say so before connecting. */
    if (router_channels_parse_list(settings->enabled_channels, &ctx->enabled, err, sizeof err) != CMN_OK) {
        snprintf(errstr, errlen, "ROUTER_ENABLED_CHANNELS: %s", err);
        goto cleanup;
    }
    ctx->routing = router_config_load(settings->channels_file, err, sizeof err);
    if (ctx->routing == NULL) {
        snprintf(errstr, errlen, "ROUTER_CHANNELS_FILE: %s", err);
        goto cleanup;
    }
    if (cmn_quiet_policy_parse(settings->quiet_channels, &ctx->quiet) != CMN_OK) {
        snprintf(errstr, errlen,
                 "ROUTER_QUIET_HOURS_CHANNELS: expected a comma list of email, sms, whatsapp without spaces or "
                 "repeats (\"\" for none)");
        goto cleanup;
    }
    if (settings->data_key != NULL && settings->data_key[0] != '\0' && strlen(settings->data_key) < CMN_DATA_KEY_MIN) {
        snprintf(errstr, errlen, "CRM_DATA_KEY: must be at least %d characters (e.g. openssl rand -hex 32)",
                 CMN_DATA_KEY_MIN);
        goto cleanup;
    }
    for (int c = 0; c < CMN_CHANNEL__COUNT; c++) {
        if (ctx->enabled & ROUTER_CHANNEL_BIT(c)) {
            snprintf(ctx->send_topics[ctx->n_send_topics], sizeof ctx->send_topics[0], "%s%s",
                     CMN_TOPIC_SEND_PREFIX, cmn_channel_name((cmn_channel_t)c));
            ctx->send_topic_ptrs[ctx->n_send_topics] = ctx->send_topics[ctx->n_send_topics];
            ctx->n_send_topics++;
        }
    }

    *exit_code = 1;
    if (register_metrics(ctx) != CMN_OK) {
        snprintf(errstr, errlen, "out of memory");
        goto cleanup;
    }
    cmn_kafka_config_t kcfg = {.brokers = settings->kafka_brokers,
                               .client_id = SERVICE_NAME,
                               .group_id = settings->group_id,
                               .extra = NULL,
                               .log = log,
                               .metrics = ctx->metrics};
    ctx->producer = cmn_kafka_producer_new(&kcfg, err, sizeof err);
    if (ctx->producer == NULL) {
        snprintf(errstr, errlen, "KAFKA_BROKERS: producer: %s", err);
        goto cleanup;
    }
    /* The session settings are consumer properties; the producer would only
     * warn about them. */
    snprintf(ctx->session_prop, sizeof ctx->session_prop, "session.timeout.ms=%ld", settings->session_timeout_ms);
    snprintf(ctx->heartbeat_prop, sizeof ctx->heartbeat_prop, "heartbeat.interval.ms=%ld",
             settings->session_timeout_ms / 3);
    ctx->consumer_extra[0] = ctx->session_prop;
    ctx->consumer_extra[1] = ctx->heartbeat_prop;
    ctx->consumer_extra[2] = NULL;
    kcfg.extra = ctx->consumer_extra;
    cmn_kafka_consumer_opts_t copts = {.topics = request_topics, .auto_offset_reset = "earliest", .ctx = ctx};
    ctx->consumer = cmn_kafka_consumer_new(&kcfg, &copts, err, sizeof err);
    if (ctx->consumer == NULL) {
        snprintf(errstr, errlen, "KAFKA_BROKERS: consumer: %s", err);
        goto cleanup;
    }
    ctx->readback = router_readback_new(settings->kafka_brokers, NULL, log, err, sizeof err);
    if (ctx->readback == NULL) {
        snprintf(errstr, errlen, "KAFKA_BROKERS: %s", err);
        goto cleanup;
    }
    ctx->prefs = router_prefs_cache_new((size_t)settings->prefs_cache_size, settings->prefs_cache_ttl_ms);
    if (ctx->prefs == NULL) {
        snprintf(errstr, errlen, "ROUTER_PREFS_CACHE_SIZE: out of memory");
        goto cleanup;
    }
    ctx->prefs_feed = router_prefs_feed_start(settings->kafka_brokers, NULL, ctx->prefs, log, ctx->metrics, err,
                                              sizeof err);
    if (ctx->prefs_feed == NULL) {
        snprintf(errstr, errlen, "KAFKA_BROKERS: %s", err);
        goto cleanup;
    }
    /* Only the interval and max wait matter here: each watch carries its
     * own sent time and deadline. */
    cmn_receipt_policy_t receipt_policy;
    cmn_receipt_policy_default(&receipt_policy);
    receipt_policy.check_interval_ms = settings->receipt_check_interval_ms;
    receipt_policy.max_wait_ms = settings->receipt_max_wait_ms;
    ctx->receipts = router_receipts_new(&receipt_policy, settings->database_url, log, ctx->metrics, err, sizeof err);
    if (ctx->receipts == NULL) {
        snprintf(errstr, errlen, "RECEIPT_CHECK_INTERVAL_MS: %s", err);
        goto cleanup;
    }
    cmn_delayq_config_t dcfg = {.service = SERVICE_NAME,
                                .brokers = settings->kafka_brokers,
                                .group_id = settings->defer_group_id,
                                .kafka_extra = NULL,
                                .kind = CMN_DELAY_DEFER,
                                .channel = CMN_CHANNEL_NONE,
                                .session_timeout_ms = (int)settings->session_timeout_ms,
                                .guard = router_receipts_guard,
                                .guard_ctx = ctx->receipts,
                                .log = log,
                                .metrics = ctx->metrics};
    ctx->delayq = cmn_delayq_new(&dcfg, err, sizeof err);
    if (ctx->delayq == NULL) {
        snprintf(errstr, errlen, "KAFKA_BROKERS: defer consumer: %s", err);
        goto cleanup;
    }
    if (cmn_delayq_start(ctx->delayq) != CMN_OK) {
        snprintf(errstr, errlen, "KAFKA_BROKERS: defer consumer did not start");
        goto cleanup;
    }
    /* Not fatal: the loop keeps trying, and /readyz says false meanwhile. */
    (void)pg_ready(ctx);

    cmn_http_config_t hcfg = {.bind_address = settings->http_bind,
                              .port = (int)settings->http_port,
                              .threads = 2,
                              .max_body_bytes = 4096,
                              .max_header_bytes = 8192,
                              .timeout_seconds = 10,
                              .handler = NULL,
                              .ready = ready_fn,
                              .ctx = ctx,
                              .metrics = ctx->metrics,
                              .log = log};
    ctx->http = cmn_http_server_new(&hcfg, err, sizeof err);
    if (ctx->http == NULL) {
        snprintf(errstr, errlen, "HTTP_PORT: %s", err);
        goto cleanup;
    }
    ok = 1;

cleanup:
    if (!ok) {
        router_service_destroy(ctx);
        return NULL;
    }
    *exit_code = 0;
    return ctx;
}

void router_service_destroy(router_ctx_t *ctx)
{
    if (ctx == NULL) {
        return;
    }
    /* HTTP first: its threads read the context. */
    if (ctx->http != NULL) {
        cmn_http_server_destroy(ctx->http);
    }
    /* The defer consumer finishes the record in hand (produced, committed)
     * before it returns. */
    cmn_delayq_destroy(ctx->delayq);
    router_receipts_destroy(ctx->receipts); /* after its queue: the guard runs on the queue's thread */
    router_prefs_feed_stop(ctx->prefs_feed);
    if (ctx->consumer != NULL) {
        cmn_kafka_consumer_destroy(ctx->consumer);
    }
    if (ctx->producer != NULL) {
        cmn_kafka_producer_destroy(ctx->producer);
    }
    router_readback_destroy(ctx->readback);
    if (ctx->pg != NULL) {
        PQfinish(ctx->pg);
    }
    if (ctx->metrics != NULL) {
        cmn_metrics_destroy(ctx->metrics);
    }
    router_config_destroy(ctx->routing);
    router_prefs_cache_destroy(ctx->prefs);
    free(ctx->fence);
    free(ctx);
}
