/* worker_core.c - batch loop of a sending worker. See worker_core.h.
 *
 * This file must not learn what channel it drives: everything specific goes
 * through worker_channel_t, so the SMS and WhatsApp workers can reuse it. */
#include "worker_core.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crm/err.h"
#include "crm/json.h"
#include "crm/kafka.h"
#include "crm/signal.h"
#include "crm/status.h"
#include "crm/time.h"

#define DEFAULT_POLL_TIMEOUT_MS 500
#define DEFAULT_ACK_TIMEOUT_MS 30000
/* How long curl_multi_poll may sleep when no socket is ready; it returns at
 * once when one is, so this only bounds the wait for transfer timeouts. */
#define MULTI_POLL_MS 200
#define TRACEPARENT_LEN 55

typedef struct job {
    const cmn_kafka_message_t *rec; /* borrowed from the consumer's batch */
    cmn_dispatch_t d;
    void *msg;                      /* the channel's, until release */
    CURL *easy;                     /* owned by msg */
    worker_result_t res;
    int ready;                      /* prepared and waiting for a transfer slot */
    int64_t started_ms;             /* monotonic, when the transfer started */
    char traceparent[TRACEPARENT_LEN + 1];
} job_t;

/* One batch's Kafka output: the produces whose acknowledgements gate the
 * commit, and how many outputs could not even be queued (then the batch
 * must be redelivered rather than committed). */
typedef struct batch_out {
    cmn_kafka_batch_t kb;
    int lost;
} batch_out_t;

struct worker {
    worker_config_t cfg;
    worker_channel_t ch;
    char topic[64];
    char session_prop[64], heartbeat_prop[64];
    const char *extra[40];          /* cfg.kafka_extra plus the session settings */
    cmn_kafka_producer_t *producer;
    cmn_kafka_consumer_t *consumer;
    CURLM *multi;
    cmn_counter_t *sent_total;
    cmn_counter_t *failed_total[3]; /* by worker_class_t; [WORKER_SENT] unused */
    cmn_counter_t *dlq_total;
    cmn_histogram_t *send_seconds;
};

const char *worker_class_name(worker_class_t c)
{
    switch (c) {
    case WORKER_SENT:
        return "sent";
    case WORKER_RETRYABLE:
        return "retryable";
    case WORKER_PERMANENT:
        return "permanent";
    }
    return "unknown";
}

void worker_result_fail(worker_result_t *res, worker_class_t cls, const char *code, const char *fmt, ...)
{
    va_list ap;
    res->cls = cls;
    snprintf(res->error_code, sizeof res->error_code, "%s", code);
    va_start(ap, fmt);
    vsnprintf(res->error_message, sizeof res->error_message, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------ lifecycle */

static int register_metrics(worker_t *w, char *errstr, size_t errlen)
{
    char name[128], help[160];
    if (w->cfg.metrics == NULL)
        return 0;
    const char *ch = w->ch.name;
    snprintf(name, sizeof name, "%s_sent_total", ch);
    snprintf(help, sizeof help, "Messages the %s provider accepted.", ch);
    w->sent_total = cmn_metrics_counter(w->cfg.metrics, name, help, NULL);
    snprintf(name, sizeof name, "%s_failed_total", ch);
    snprintf(help, sizeof help, "Failed %s attempts by class (retryable or permanent).", ch);
    w->failed_total[WORKER_RETRYABLE] = cmn_metrics_counter(w->cfg.metrics, name, help, "class=\"retryable\"");
    w->failed_total[WORKER_PERMANENT] = cmn_metrics_counter(w->cfg.metrics, name, help, "class=\"permanent\"");
    snprintf(name, sizeof name, "%s_dlq_total", ch);
    snprintf(help, sizeof help, "Records of crm.send.%s that went to crm.dlq.", ch);
    w->dlq_total = cmn_metrics_counter(w->cfg.metrics, name, help, NULL);
    snprintf(name, sizeof name, "%s_send_seconds", ch);
    snprintf(help, sizeof help, "Duration of one %s transfer, connection included.", ch);
    w->send_seconds = cmn_metrics_histogram(w->cfg.metrics, name, help, NULL, CMN_METRICS_LATENCY_BUCKETS,
                                            CMN_METRICS_LATENCY_BUCKETS_N);
    if (w->sent_total == NULL || w->failed_total[WORKER_RETRYABLE] == NULL ||
        w->failed_total[WORKER_PERMANENT] == NULL || w->dlq_total == NULL || w->send_seconds == NULL) {
        snprintf(errstr, errlen, "cannot register metrics");
        return CMN_ERR_NOMEM;
    }
    return 0;
}

worker_t *worker_new(const worker_config_t *cfg, const worker_channel_t *ch, char *errstr, size_t errlen)
{
    worker_t *w = NULL;
    if (cfg == NULL || ch == NULL || cfg->log == NULL || cfg->brokers == NULL || cfg->group_id == NULL ||
        cfg->batch_size < 1 || cfg->max_in_flight < 1 || ch->name == NULL || ch->prepare == NULL ||
        ch->submit == NULL || ch->classify == NULL || ch->release == NULL) {
        snprintf(errstr, errlen, "worker: invalid configuration");
        return NULL;
    }
    w = calloc(1, sizeof *w);
    if (w == NULL) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    w->cfg = *cfg;
    w->ch = *ch;
    if (w->cfg.poll_timeout_ms <= 0)
        w->cfg.poll_timeout_ms = DEFAULT_POLL_TIMEOUT_MS;
    if (w->cfg.ack_timeout_ms <= 0)
        w->cfg.ack_timeout_ms = DEFAULT_ACK_TIMEOUT_MS;
    int n = snprintf(w->topic, sizeof w->topic, CMN_TOPIC_SEND_PREFIX "%s", ch->name);
    if (n < 0 || (size_t)n >= sizeof w->topic) {
        snprintf(errstr, errlen, "worker: channel name too long");
        goto fail;
    }
    if (register_metrics(w, errstr, errlen) != 0)
        goto fail;

    size_t nextra = 0;
    for (size_t i = 0; cfg->kafka_extra != NULL && cfg->kafka_extra[i] != NULL; i++) {
        if (nextra + 3 >= sizeof w->extra / sizeof w->extra[0]) {
            snprintf(errstr, errlen, "worker: too many Kafka properties");
            goto fail;
        }
        w->extra[nextra++] = cfg->kafka_extra[i];
    }
    if (cfg->session_timeout_ms > 0) {
        /* A shorter session moves a crashed replica's partitions sooner;
         * heartbeats at a third of it keep a live one in the group. */
        snprintf(w->session_prop, sizeof w->session_prop, "session.timeout.ms=%d", cfg->session_timeout_ms);
        snprintf(w->heartbeat_prop, sizeof w->heartbeat_prop, "heartbeat.interval.ms=%d",
                 cfg->session_timeout_ms / 3);
        w->extra[nextra++] = w->session_prop;
        w->extra[nextra++] = w->heartbeat_prop;
    }
    w->extra[nextra] = NULL;

    cmn_kafka_config_t kc = {
        .brokers = cfg->brokers,
        .client_id = cfg->service,
        .group_id = cfg->group_id,
        .extra = cfg->kafka_extra,
        .log = cfg->log,
        .metrics = cfg->metrics,
    };
    w->producer = cmn_kafka_producer_new(&kc, errstr, errlen);
    if (w->producer == NULL)
        goto fail;
    kc.extra = w->extra; /* the session settings are the consumer's only */
    const char *topics[] = {w->topic, NULL};
    cmn_kafka_consumer_opts_t co = {.topics = topics, .auto_offset_reset = "earliest"};
    w->consumer = cmn_kafka_consumer_new(&kc, &co, errstr, errlen);
    if (w->consumer == NULL)
        goto fail;

    w->multi = curl_multi_init();
    if (w->multi == NULL) {
        snprintf(errstr, errlen, "curl_multi_init failed");
        goto fail;
    }
    /* One connection per transfer in flight, and as many kept for reuse, so
     * a steady stream does not reconnect (and renegotiate TLS) per message. */
    curl_multi_setopt(w->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)cfg->max_in_flight);
    curl_multi_setopt(w->multi, CURLMOPT_MAXCONNECTS, (long)cfg->max_in_flight);
    return w;
fail:
    worker_destroy(w);
    return NULL;
}

void worker_destroy(worker_t *w)
{
    if (w == NULL)
        return;
    /* The consumer leaves the group first so its partitions move on while
     * the producer still flushes. */
    cmn_kafka_consumer_destroy(w->consumer);
    cmn_kafka_producer_destroy(w->producer);
    if (w->multi != NULL)
        curl_multi_cleanup(w->multi);
    free(w);
}

int worker_is_ready(void *ctx)
{
    worker_t *w = ctx;
    return w != NULL && w->consumer != NULL && cmn_kafka_consumer_is_healthy(w->consumer);
}

/* --------------------------------------------------------------- output */

/* Queues one status event for j on crm.status as part of the batch. */
static void emit_status(worker_t *w, batch_out_t *bo, const job_t *j, cmn_status_t status)
{
    const worker_result_t *r = &j->res;
    cmn_status_event_t ev;
    cmn_buf_t json = CMN_BUF_INIT;
    memset(&ev, 0, sizeof ev);
    memcpy(ev.communication_id, j->d.communication_id, sizeof ev.communication_id);
    ev.request_id = j->d.request_id;
    ev.tenant_id = j->d.tenant_id;
    ev.client_id = j->d.client_id;
    ev.message_type = j->d.message_type;
    ev.channel = w->ch.channel;
    ev.status = status;
    ev.attempt = j->d.attempt;
    ev.hop = j->d.hop;
    ev.provider = w->ch.provider;
    ev.provider_message_id = r->provider_message_id[0] != '\0' ? r->provider_message_id : NULL;
    if (status == CMN_STATUS_FAILED) {
        ev.error_code = r->error_code[0] != '\0' ? r->error_code : NULL;
        ev.error_message = r->error_message[0] != '\0' ? r->error_message : NULL;
    } else if (status == CMN_STATUS_SENT) {
        ev.reason = r->reason[0] != '\0' ? r->reason : NULL;
    }
    ev.occurred_at_ms = cmn_now_ms();

    int rc = cmn_status_event_finalize(&ev);
    if (rc == 0)
        rc = cmn_status_event_to_json(&ev, &json);
    if (rc == 0) {
        cmn_kafka_header_t h[] = {{CMN_HDR_TRACEPARENT, j->traceparent, strlen(j->traceparent)}};
        rc = cmn_kafka_produce_in_batch(w->producer, &bo->kb, CMN_TOPIC_STATUS, ev.communication_id,
                                        strlen(ev.communication_id), json.data, json.len, h, 1);
    }
    if (rc != 0) {
        bo->lost++;
        cmn_log_error(w->cfg.log, j->d.communication_id, "cannot queue %s status: %s", cmn_status_name(status),
                      cmn_strerror(rc));
    }
    cmn_buf_free(&json);
}

static void to_dlq(worker_t *w, batch_out_t *bo, const cmn_kafka_message_t *rec, const char *reason)
{
    char offset[32];
    snprintf(offset, sizeof offset, "%lld", (long long)rec->offset);
    const char *kv[] = {"topic", rec->topic, "offset", offset, "reason", reason, NULL};
    cmn_logkv(w->cfg.log, CMN_LOG_WARN, NULL, kv, "record sent to " CMN_TOPIC_DLQ);
    if (w->dlq_total != NULL)
        cmn_counter_add(w->dlq_total, 1);
    if (cmn_kafka_dlq_in_batch(w->producer, &bo->kb, rec, w->cfg.service, reason) != 0)
        bo->lost++;
}

/* Records the outcome of j: metrics, a log line without personal data, the
 * sent/failed status, and the release of the channel message. */
static void finish_job(worker_t *w, batch_out_t *bo, job_t *j)
{
    const worker_result_t *r = &j->res;
    if (j->started_ms > 0 && w->send_seconds != NULL)
        cmn_histogram_observe(w->send_seconds, (double)(cmn_monotonic_ms() - j->started_ms) / 1000.0);
    if (r->cls == WORKER_SENT) {
        if (w->sent_total != NULL)
            cmn_counter_add(w->sent_total, 1);
        cmn_log_info(w->cfg.log, j->d.communication_id, "%s sent", w->ch.name);
    } else {
        if (w->failed_total[r->cls] != NULL)
            cmn_counter_add(w->failed_total[r->cls], 1);
        const char *kv[] = {"class", worker_class_name(r->cls), "error_code", r->error_code, NULL};
        cmn_logkv(w->cfg.log, CMN_LOG_WARN, j->d.communication_id, kv, "%s failed", w->ch.name);
    }
    emit_status(w, bo, j, r->cls == WORKER_SENT ? CMN_STATUS_SENT : CMN_STATUS_FAILED);
    if (j->msg != NULL)
        w->ch.release(w->ch.impl, j->msg);
    j->msg = NULL;
    j->easy = NULL;
    j->ready = 0;
}

/* ---------------------------------------------------------------- batch */

static void take_traceparent(job_t *j)
{
    size_t len = 0;
    const void *v = cmn_kafka_message_header(j->rec, CMN_HDR_TRACEPARENT, &len);
    if (v != NULL && len == TRACEPARENT_LEN) {
        memcpy(j->traceparent, v, len);
        j->traceparent[len] = '\0';
        return;
    }
    char fresh[56];
    if (cmn_kafka_traceparent_new(fresh) == 0)
        snprintf(j->traceparent, sizeof j->traceparent, "%s", fresh);
}

/* Parses, checks and prepares one record; DLQ or failed on problems. */
static void intake(worker_t *w, batch_out_t *bo, job_t *j)
{
    char why[256] = "";
    char reason[320];
    if (j->rec->value == NULL) {
        to_dlq(w, bo, j->rec, "empty record: a tombstone is not a dispatch");
        return;
    }
    json_object *obj = cmn_json_parse(j->rec->value, j->rec->value_len, why, sizeof why);
    if (obj == NULL) {
        snprintf(reason, sizeof reason, "malformed JSON: %s", why);
        to_dlq(w, bo, j->rec, reason);
        return;
    }
    int rc = cmn_dispatch_from_json(obj, &j->d, why, sizeof why);
    json_object_put(obj); /* the dispatch holds its own references */
    if (rc != 0) {
        snprintf(reason, sizeof reason, "invalid dispatch: %s", why);
        to_dlq(w, bo, j->rec, reason);
        return;
    }
    if (j->d.channel != w->ch.channel) {
        snprintf(reason, sizeof reason, "wrong channel: a %s dispatch on %s", cmn_channel_name(j->d.channel),
                 w->topic);
        to_dlq(w, bo, j->rec, reason);
        return;
    }
    take_traceparent(j);
    rc = w->ch.prepare(w->ch.impl, &j->d, &j->msg, &j->res);
    if (rc != 0) {
        j->msg = NULL;
        if (j->res.cls == WORKER_SENT) /* a channel that forgot to classify its failure */
            worker_result_fail(&j->res, WORKER_RETRYABLE, "prepare_failed", "retryable: %s", cmn_strerror(rc));
        finish_job(w, bo, j);
        return;
    }
    j->ready = 1;
    emit_status(w, bo, j, CMN_STATUS_SENDING);
}

/* Starts job j's transfer; on failure finishes it as retryable. */
static int start_transfer(worker_t *w, batch_out_t *bo, job_t *j)
{
    int rc = w->ch.submit(w->ch.impl, j->msg, &j->easy);
    if (rc == 0 && j->easy != NULL) {
        curl_easy_setopt(j->easy, CURLOPT_PRIVATE, (void *)j);
        if (curl_multi_add_handle(w->multi, j->easy) == CURLM_OK) {
            j->ready = 0;
            j->started_ms = cmn_monotonic_ms();
            return 1;
        }
    }
    worker_result_fail(&j->res, WORKER_RETRYABLE, "submit_failed", "retryable: the transfer could not be started");
    finish_job(w, bo, j);
    return 0;
}

/* Runs every READY job's transfer, at most max_in_flight at once, and
 * finishes each as it completes. Returns when none is left. */
static void run_transfers(worker_t *w, batch_out_t *bo, job_t *jobs, size_t n)
{
    size_t next = 0;
    int active = 0;
    for (;;) {
        while (active < w->cfg.max_in_flight && next < n) {
            job_t *j = &jobs[next++];
            if (j->ready)
                active += start_transfer(w, bo, j);
        }
        if (active == 0)
            break;
        int running = 0;
        CURLMcode mc = curl_multi_perform(w->multi, &running);
        if (mc != CURLM_OK)
            cmn_log_error(w->cfg.log, NULL, "curl_multi_perform: %s", curl_multi_strerror(mc));
        for (;;) {
            int left = 0;
            CURLMsg *m = curl_multi_info_read(w->multi, &left);
            if (m == NULL)
                break;
            if (m->msg != CURLMSG_DONE)
                continue;
            CURL *easy = m->easy_handle;
            CURLcode code = m->data.result; /* m is invalid once the handle is removed */
            void *priv = NULL;
            curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
            curl_multi_remove_handle(w->multi, easy);
            job_t *j = priv;
            w->ch.classify(w->ch.impl, j->msg, code, &j->res);
            finish_job(w, bo, j);
            active--;
        }
        if (active > 0 && running > 0)
            curl_multi_poll(w->multi, NULL, 0, MULTI_POLL_MS, NULL);
    }
}

static void process_batch(worker_t *w, cmn_kafka_message_t *recs, size_t n)
{
    batch_out_t bo = {.lost = 0};
    char why[256] = "";
    job_t *jobs = calloc(n, sizeof *jobs);
    int kb_ready = cmn_kafka_batch_init(&bo.kb) == 0;
    if (jobs == NULL || !kb_ready) {
        /* Nothing was done for these records; let them come again. */
        cmn_log_error(w->cfg.log, NULL, "out of memory for a batch of %zu; rewinding", n);
        cmn_kafka_consumer_rewind_batch(w->consumer);
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++) {
        jobs[i].rec = &recs[i];
        intake(w, &bo, &jobs[i]);
    }
    run_transfers(w, &bo, jobs, n);

    int rc = cmn_kafka_batch_wait(&bo.kb, w->cfg.ack_timeout_ms, why, sizeof why);
    if (rc == 0 && bo.lost == 0) {
        rc = cmn_kafka_consumer_commit_batch(w->consumer);
        if (rc != 0)
            cmn_log_error(w->cfg.log, NULL, "commit failed (%s); the batch may be delivered again",
                          cmn_strerror(rc));
    } else {
        /* The outcomes are not durable, so the offsets must not move: the
         * records come back and are attempted again (at-least-once; the
         * Message-ID stays the same, so receivers can drop the copy). */
        if (rc != 0)
            cmn_log_error(w->cfg.log, NULL, "batch output not acknowledged (%s); rewinding", why);
        else
            cmn_log_error(w->cfg.log, NULL, "%d outputs of the batch could not be queued; rewinding", bo.lost);
        cmn_kafka_consumer_rewind_batch(w->consumer);
    }
cleanup:
    if (kb_ready)
        cmn_kafka_batch_destroy(&bo.kb);
    for (size_t i = 0; jobs != NULL && i < n; i++) {
        if (jobs[i].msg != NULL)
            w->ch.release(w->ch.impl, jobs[i].msg);
        cmn_dispatch_clear(&jobs[i].d);
    }
    free(jobs);
}

int worker_run(worker_t *w)
{
    if (w == NULL)
        return CMN_ERR_INVALID;
    cmn_log_info(w->cfg.log, NULL, "consuming %s (batch %d, %d in flight)", w->topic, w->cfg.batch_size,
                 w->cfg.max_in_flight);
    while (!cmn_stop_requested) {
        cmn_kafka_message_t *recs = NULL;
        int n = cmn_kafka_consumer_poll_batch(w->consumer, w->cfg.batch_size, w->cfg.poll_timeout_ms, &recs);
        if (n < 0) {
            cmn_log_error(w->cfg.log, NULL, "consumer failed: %s", cmn_strerror(n));
            return n;
        }
        if (n > 0)
            process_batch(w, recs, (size_t)n);
    }
    cmn_log_info(w->cfg.log, NULL, "stop requested; in-flight work finished");
    return 0;
}
