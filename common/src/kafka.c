/* kafka.c - the project's Kafka producer, consumer and helpers on librdkafka.
 *
 * Threading: the producer owns one background thread that serves delivery
 * reports, so service threads never have to poll for them. The consumer is
 * single-threaded (its owner calls poll_batch/commit_batch from one thread);
 * only cmn_kafka_consumer_is_healthy() may be called from another thread,
 * which is why the health timestamp is atomic. */
#include "crm/kafka.h"

#include <errno.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crm/err.h"
#include "crm/time.h"

/* How long cmn_kafka_produce_in_batch keeps retrying a full local queue
 * before it reports CMN_ERR_UNAVAILABLE. Long enough to ride out a burst,
 * short enough that a dead cluster surfaces as an error instead of a hang. */
#define KAFKA_QUEUE_FULL_WAIT_MS 10000
/* A consumer is healthy while it heard from the cluster this recently. */
#define KAFKA_HEALTH_WINDOW_MS 30000
/* How long producer destroy waits for outstanding deliveries. */
#define KAFKA_DESTROY_FLUSH_MS 10000
/* Timeout of synchronous seeks and of the health probe's metadata request. */
#define KAFKA_SYNC_OP_TIMEOUT_MS 5000
#define KAFKA_HEALTH_PROBE_TIMEOUT_MS 2000
/* Admin request timeout for CreateTopics. */
#define KAFKA_ADMIN_TIMEOUT_MS 30000

/* ------------------------------------------------------------ topic table */

/* The delay consumers take a record's Kafka timestamp as the moment it
 * entered its tier (docs/reliability.md); LogAppendTime makes that the
 * broker's clock, monotonic along a partition, instead of each producer's. */
#define KAFKA_TIER {{"message.timestamp.type", "LogAppendTime"}}

/* Every topic of the design. 12 partitions bound the parallelism of each
 * consumer group (DESIGN.md: "parallelism is bounded by partition counts"). */
static const cmn_kafka_topic_spec_t kafka_topics[] = {
    {"crm.requests", 12, 0, {{NULL, NULL}}},
    {"crm.defer.1m", 12, 0, KAFKA_TIER},
    {"crm.defer.10m", 12, 0, KAFKA_TIER},
    {"crm.defer.1h", 12, 0, KAFKA_TIER},
    {"crm.send.email", 12, 0, {{NULL, NULL}}},
    {"crm.send.sms", 12, 0, {{NULL, NULL}}},
    {"crm.send.whatsapp", 12, 0, {{NULL, NULL}}},
    {"crm.retry.email.5s", 12, 0, KAFKA_TIER},
    {"crm.retry.email.30s", 12, 0, KAFKA_TIER},
    {"crm.retry.email.5m", 12, 0, KAFKA_TIER},
    {"crm.retry.email.30m", 12, 0, KAFKA_TIER},
    {"crm.retry.sms.5s", 12, 0, KAFKA_TIER},
    {"crm.retry.sms.30s", 12, 0, KAFKA_TIER},
    {"crm.retry.sms.5m", 12, 0, KAFKA_TIER},
    {"crm.retry.sms.30m", 12, 0, KAFKA_TIER},
    {"crm.retry.whatsapp.5s", 12, 0, KAFKA_TIER},
    {"crm.retry.whatsapp.30s", 12, 0, KAFKA_TIER},
    {"crm.retry.whatsapp.5m", 12, 0, KAFKA_TIER},
    {"crm.retry.whatsapp.30m", 12, 0, KAFKA_TIER},
    {"crm.status", 12, 0, {{NULL, NULL}}},
    {"crm.inbound", 12, 0, {{NULL, NULL}}},
    /* The latest snapshot per client: compaction keeps it (and a tombstone
     * erases it) instead of ageing it out. */
    {"crm.preferences", 12, 1, {{"cleanup.policy", "compact"}}},
    {"crm.dlq", 12, 0, {{"retention.ms", CMN_KAFKA_DLQ_RETENTION_MS}}},
};

const cmn_kafka_topic_spec_t *cmn_kafka_topics(size_t *n)
{
    if (n != NULL)
        *n = sizeof(kafka_topics) / sizeof(kafka_topics[0]);
    return kafka_topics;
}

const cmn_kafka_topic_spec_t *cmn_kafka_topic_find(const char *name)
{
    if (name == NULL)
        return NULL;
    for (size_t i = 0; i < sizeof(kafka_topics) / sizeof(kafka_topics[0]); i++) {
        if (strcmp(kafka_topics[i].name, name) == 0)
            return &kafka_topics[i];
    }
    return NULL;
}

const char *cmn_kafka_topic_config_want(const cmn_kafka_topic_spec_t *spec, const char *name)
{
    if (spec == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < CMN_KAFKA_TOPIC_MAX_CONFIGS && spec->configs[i].name != NULL; i++) {
        if (strcmp(spec->configs[i].name, name) == 0)
            return spec->configs[i].value;
    }
    return NULL;
}

const char *cmn_kafka_topic_state_name(cmn_kafka_topic_state_t s)
{
    switch (s) {
    case CMN_KAFKA_TOPIC_OK: return "ok";
    case CMN_KAFKA_TOPIC_CREATED: return "created";
    case CMN_KAFKA_TOPIC_FIXED: return "fixed";
    case CMN_KAFKA_TOPIC_MISMATCH: return "mismatch";
    case CMN_KAFKA_TOPIC_UNCHECKED: return "unchecked";
    case CMN_KAFKA_TOPIC_FAILED: return "failed";
    }
    return "unknown";
}

/* ---------------------------------------------------------- small helpers */

static void kafka_set_err(char *errstr, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void kafka_set_err(char *errstr, size_t errlen, const char *fmt, ...)
{
    if (errstr == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, errlen, fmt, ap);
    va_end(ap);
}

/* The logger is optional for callers that have none (tests, tools); every
 * log line goes through here so a NULL logger is never dereferenced. */
static void kafka_log(const cmn_log_t *log, cmn_log_level_t level, const char *const *kv, const char *msg)
{
    if (log == NULL)
        return;
    cmn_logkv(log, level, NULL, kv, "%s", msg);
}

static void kafka_count(cmn_metrics_t *m, const char *name, const char *help, const char *topic, uint64_t v)
{
    if (m == NULL)
        return;
    char labels[300];
    const char *lp = NULL;
    if (topic != NULL) {
        snprintf(labels, sizeof(labels), "topic=\"%s\"", topic);
        lp = labels;
    }
    cmn_counter_t *c = cmn_metrics_counter(m, name, help, lp);
    if (c != NULL)
        cmn_counter_add(c, v);
}

/* Monotonic deadline helper for condition variables created with
 * CLOCK_MONOTONIC. */
static struct timespec kafka_deadline(int timeout_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec += 1;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* Maps librdkafka's syslog levels onto ours. librdkafka logs a failed
 * connection at LOG_ERR although it retries by itself, and the error
 * callback reports the same event, so LOG_ERR lines become warnings. */
static cmn_log_level_t kafka_level(int syslog_level)
{
    if (syslog_level <= 2)
        return CMN_LOG_ERROR;
    if (syslog_level <= 4)
        return CMN_LOG_WARN;
    if (syslog_level <= 6)
        return CMN_LOG_INFO;
    return CMN_LOG_DEBUG;
}

/* The first member of both handle types, and the librdkafka opaque of
 * every handle, so the callbacks that only log or count treat all alike. */
typedef struct kafka_common {
    const cmn_log_t *log;
    cmn_metrics_t *metrics;
} kafka_common_t;

static void kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    const kafka_common_t *kc = rd_kafka_opaque(rk);
    if (kc == NULL)
        return;
    const char *kv[] = {"component", "librdkafka", "facility", fac, "client", rd_kafka_name(rk), NULL};
    kafka_log(kc->log, kafka_level(level), kv, buf);
}

static void kafka_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    kafka_common_t *kc = opaque;
    const char *kv[] = {"component", "librdkafka", "client", rd_kafka_name(rk), "error",
                        rd_kafka_err2name((rd_kafka_resp_err_t)err), NULL};
    /* librdkafka recovers from most errors by itself (reconnects, retries);
     * only fatal ones (idempotence violated) end the producer. */
    int fatal = (err == RD_KAFKA_RESP_ERR__FATAL);
    char fatal_reason[512];
    if (fatal) {
        rd_kafka_fatal_error(rk, fatal_reason, sizeof(fatal_reason));
        reason = fatal_reason;
    }
    kafka_log(kc->log, fatal ? CMN_LOG_ERROR : CMN_LOG_WARN, kv, reason);
    kafka_count(kc->metrics, "kafka_client_errors_total", "Errors reported by the Kafka client library.", NULL,
                1);
}

/* Builds a librdkafka configuration: the common settings, then the caller's
 * role defaults (pairs), then cfg->extra, so tests can override anything. */
static rd_kafka_conf_t *kafka_conf_new(const cmn_kafka_config_t *cfg, const char *const *defaults, void *opaque,
                                       char *errstr, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char rderr[512] = "";
    int ok = 0;
    if (conf == NULL) {
        snprintf(rderr, sizeof(rderr), "out of memory");
        goto cleanup;
    }
    if (rd_kafka_conf_set(conf, "bootstrap.servers", cfg->brokers, rderr, sizeof(rderr)) != RD_KAFKA_CONF_OK)
        goto cleanup;
    if (cfg->client_id != NULL &&
        rd_kafka_conf_set(conf, "client.id", cfg->client_id, rderr, sizeof(rderr)) != RD_KAFKA_CONF_OK)
        goto cleanup;
    for (size_t i = 0; defaults != NULL && defaults[i] != NULL; i += 2) {
        if (rd_kafka_conf_set(conf, defaults[i], defaults[i + 1], rderr, sizeof(rderr)) != RD_KAFKA_CONF_OK)
            goto cleanup;
    }
    for (size_t i = 0; cfg->extra != NULL && cfg->extra[i] != NULL; i++) {
        const char *eq = strchr(cfg->extra[i], '=');
        char key[256];
        size_t klen = eq != NULL ? (size_t)(eq - cfg->extra[i]) : 0;
        if (eq == NULL || klen == 0 || klen >= sizeof(key)) {
            snprintf(rderr, sizeof(rderr), "extra property '%s' is not key=value", cfg->extra[i]);
            goto cleanup;
        }
        memcpy(key, cfg->extra[i], klen);
        key[klen] = '\0';
        if (rd_kafka_conf_set(conf, key, eq + 1, rderr, sizeof(rderr)) != RD_KAFKA_CONF_OK)
            goto cleanup;
    }
    rd_kafka_conf_set_opaque(conf, opaque);
    rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
    rd_kafka_conf_set_error_cb(conf, kafka_error_cb);
    ok = 1;
cleanup:
    if (!ok) {
        kafka_set_err(errstr, errlen, "kafka configuration: %s", rderr);
        if (conf != NULL)
            rd_kafka_conf_destroy(conf);
        conf = NULL;
    }
    return conf;
}

static int kafka_validate_cfg(const cmn_kafka_config_t *cfg, int need_group, char *errstr, size_t errlen)
{
    if (cfg == NULL || cfg->brokers == NULL || cfg->brokers[0] == '\0') {
        kafka_set_err(errstr, errlen, "kafka configuration: brokers (KAFKA_BROKERS) is required");
        return CMN_ERR_CONFIG;
    }
    if (need_group && (cfg->group_id == NULL || cfg->group_id[0] == '\0')) {
        kafka_set_err(errstr, errlen, "kafka configuration: group_id is required for a consumer");
        return CMN_ERR_CONFIG;
    }
    return 0;
}

int cmn_kafka_traceparent_new(char out[56])
{
    unsigned char rnd[24];
    if (out == NULL)
        return CMN_ERR_INVALID;
    /* W3C forbids an all-zero trace id or parent id; with 128 random bits
     * that never happens in practice, but the loop makes it impossible. */
    for (;;) {
        if (RAND_bytes(rnd, (int)sizeof(rnd)) != 1)
            return CMN_ERR_IO;
        int zero_trace = 1, zero_parent = 1;
        for (size_t i = 0; i < 16; i++)
            zero_trace &= rnd[i] == 0;
        for (size_t i = 16; i < 24; i++)
            zero_parent &= rnd[i] == 0;
        if (!zero_trace && !zero_parent)
            break;
    }
    static const char hex[] = "0123456789abcdef";
    char *o = out;
    memcpy(o, "00-", 3);
    o += 3;
    for (size_t i = 0; i < 16; i++) {
        *o++ = hex[rnd[i] >> 4];
        *o++ = hex[rnd[i] & 0xf];
    }
    *o++ = '-';
    for (size_t i = 16; i < 24; i++) {
        *o++ = hex[rnd[i] >> 4];
        *o++ = hex[rnd[i] & 0xf];
    }
    memcpy(o, "-01", 4); /* includes the NUL: 55 characters + NUL = 56 */
    return 0;
}

/* --------------------------------------------------------------- producer */

struct cmn_kafka_producer {
    kafka_common_t common; /* first: the librdkafka opaque points here */
    rd_kafka_t *rk;
    pthread_t poller;
    int poller_started;
    atomic_int stop;
};

/* Per-message state travelling through librdkafka as the message opaque. */
typedef struct kafka_msg_ctx {
    cmn_kafka_delivery_fn cb;
    void *opaque;
} kafka_msg_ctx_t;

static void kafka_dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    cmn_kafka_producer_t *p = opaque;
    kafka_msg_ctx_t *mc = m->_private;
    const char *topic = rd_kafka_topic_name(m->rkt);
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        char part[16];
        snprintf(part, sizeof(part), "%" PRId32, m->partition);
        const char *kv[] = {"topic", topic, "partition", part, "error", rd_kafka_err2name(m->err), NULL};
        kafka_log(p->common.log, CMN_LOG_ERROR, kv, "kafka delivery failed");
        kafka_count(p->common.metrics, "kafka_produce_errors_total", "Kafka messages that could not be delivered.",
                    topic, 1);
    } else {
        kafka_count(p->common.metrics, "kafka_messages_produced_total", "Kafka messages acknowledged by the cluster.",
                    topic, 1);
        if (p->common.log != NULL && p->common.log->level <= CMN_LOG_DEBUG) {
            /* Where each acknowledged message landed, so a record missing
             * from a topic can be told apart from one never acknowledged.
             * librdkafka reports no offset (-1001) for a message it counts
             * as written without the broker saying so: acknowledged by a
             * later batch's success (the broker's sequence check vouches
             * for it) or answered DUPLICATE_SEQUENCE_NUMBER. */
            char part[16];
            char off[32];
            snprintf(part, sizeof(part), "%" PRId32, m->partition);
            snprintf(off, sizeof(off), "%" PRId64, m->offset);
            const char *kv[] = {"topic", topic, "partition", part, "offset", off, NULL};
            kafka_log(p->common.log, CMN_LOG_DEBUG, kv,
                      m->offset < 0 ? "kafka message acknowledged without an offset (implicitly, by a later batch)"
                                    : "kafka message acknowledged");
        }
    }
    if (mc != NULL) {
        if (mc->cb != NULL)
            mc->cb(mc->opaque, m->err != RD_KAFKA_RESP_ERR_NO_ERROR ? CMN_ERR_KAFKA : 0,
                   m->err != RD_KAFKA_RESP_ERR_NO_ERROR ? rd_kafka_err2str(m->err) : NULL);
        free(mc);
    }
    (void)rk;
}

static void *kafka_poll_thread(void *arg)
{
    cmn_kafka_producer_t *p = arg;
    while (!atomic_load(&p->stop))
        rd_kafka_poll(p->rk, 100);
    return NULL;
}

cmn_kafka_producer_t *cmn_kafka_producer_new(const cmn_kafka_config_t *cfg, char *errstr, size_t errlen)
{
    cmn_kafka_producer_t *p = NULL;
    rd_kafka_conf_t *conf = NULL;
    char rderr[512];
    /* acks=all plus idempotence gives exactly-once-per-partition writes
     * from retries; murmur2_random matches the Java client's partitioner so
     * a key lands on the same partition whichever language produced it. */
    static const char *const defaults[] = {
        "enable.idempotence", "true",
        "acks", "all",
        "compression.type", "lz4",
        "linger.ms", "5",
        "message.timeout.ms", "30000",
        "partitioner", "murmur2_random",
        NULL,
    };

    if (kafka_validate_cfg(cfg, 0, errstr, errlen) != 0)
        goto cleanup;
    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        kafka_set_err(errstr, errlen, "out of memory");
        goto cleanup;
    }
    p->common.log = cfg->log;
    p->common.metrics = cfg->metrics;
    atomic_init(&p->stop, 0);
    conf = kafka_conf_new(cfg, defaults, &p->common, errstr, errlen);
    if (conf == NULL)
        goto cleanup;
    rd_kafka_conf_set_dr_msg_cb(conf, kafka_dr_msg_cb);
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, rderr, sizeof(rderr));
    if (p->rk == NULL) {
        kafka_set_err(errstr, errlen, "kafka producer: %s", rderr);
        goto cleanup;
    }
    conf = NULL; /* owned by rk now */
    if (pthread_create(&p->poller, NULL, kafka_poll_thread, p) != 0) {
        kafka_set_err(errstr, errlen, "kafka producer: cannot start the poll thread");
        goto cleanup;
    }
    p->poller_started = 1;
    return p;

cleanup:
    if (conf != NULL)
        rd_kafka_conf_destroy(conf);
    if (p != NULL) {
        if (p->rk != NULL)
            rd_kafka_destroy(p->rk);
        free(p);
    }
    return NULL;
}

static int kafka_has_header(const cmn_kafka_header_t *headers, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (headers[i].name != NULL && strcmp(headers[i].name, name) == 0)
            return 1;
    }
    return 0;
}

int cmn_kafka_produce(cmn_kafka_producer_t *p, const char *topic, int32_t partition, const void *key,
                      size_t key_len, const void *value, size_t value_len,
                      const cmn_kafka_header_t *headers, size_t nheaders, cmn_kafka_delivery_fn cb,
                      void *opaque)
{
    rd_kafka_headers_t *hdrs = NULL;
    kafka_msg_ctx_t *mc = NULL;
    int rc = 0;

    if (p == NULL || topic == NULL || topic[0] == '\0' || (headers == NULL && nheaders > 0))
        return CMN_ERR_INVALID;
    hdrs = rd_kafka_headers_new(nheaders + 1);
    if (hdrs == NULL) {
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    for (size_t i = 0; i < nheaders; i++) {
        if (headers[i].name == NULL) {
            rc = CMN_ERR_INVALID;
            goto cleanup;
        }
        rd_kafka_header_add(hdrs, headers[i].name, -1, headers[i].value, (ssize_t)headers[i].value_len);
    }
    /* DESIGN.md: every message carries a traceparent. A message that starts
     * a trace gets a fresh one; continuing messages pass theirs in. */
    if (!kafka_has_header(headers, nheaders, CMN_HDR_TRACEPARENT)) {
        char tp[56];
        rc = cmn_kafka_traceparent_new(tp);
        if (rc != 0)
            goto cleanup;
        rd_kafka_header_add(hdrs, CMN_HDR_TRACEPARENT, -1, tp, (ssize_t)strlen(tp));
    }
    if (cb != NULL) {
        mc = malloc(sizeof(*mc));
        if (mc == NULL) {
            rc = CMN_ERR_NOMEM;
            goto cleanup;
        }
        mc->cb = cb;
        mc->opaque = opaque;
    }
    rd_kafka_resp_err_t err = rd_kafka_producev(
        p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition < 0 ? RD_KAFKA_PARTITION_UA : partition),
        RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_VALUE((void *)value, value_len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(mc),
        RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        /* librdkafka owns the headers and the message context now. */
        hdrs = NULL;
        mc = NULL;
        goto cleanup;
    }
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        rc = CMN_ERR_UNAVAILABLE;
        goto cleanup;
    }
    {
        const char *kv[] = {"topic", topic, "error", rd_kafka_err2name(err), NULL};
        kafka_log(p->common.log, CMN_LOG_ERROR, kv, "kafka produce rejected");
        kafka_count(p->common.metrics, "kafka_produce_errors_total", "Kafka messages that could not be delivered.",
                    topic, 1);
    }
    rc = CMN_ERR_KAFKA;

cleanup:
    if (hdrs != NULL)
        rd_kafka_headers_destroy(hdrs);
    free(mc);
    return rc;
}

int cmn_kafka_producer_flush(cmn_kafka_producer_t *p, int timeout_ms)
{
    if (p == NULL)
        return CMN_ERR_INVALID;
    return rd_kafka_flush(p->rk, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : CMN_ERR_TIMEOUT;
}

void cmn_kafka_producer_destroy(cmn_kafka_producer_t *p)
{
    if (p == NULL)
        return;
    if (rd_kafka_flush(p->rk, KAFKA_DESTROY_FLUSH_MS) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        /* Purging makes librdkafka report the undelivered messages as
         * failed, so every delivery callback still runs exactly once and
         * no batch waits forever on a message that was dropped. */
        const char *kv[] = {"outq", "pending", NULL};
        kafka_log(p->common.log, CMN_LOG_WARN, kv, "kafka producer closing with undelivered messages; purging them");
        rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(p->rk, 1000);
    }
    atomic_store(&p->stop, 1);
    if (p->poller_started)
        pthread_join(p->poller, NULL);
    rd_kafka_destroy(p->rk);
    free(p);
}

/* ------------------------------------------------------------------ batch */

/* Shared between the batch owner and every in-flight message of the batch.
 * It is reference counted (one reference for the owner plus one per pending
 * message) so that destroying a batch whose wait timed out cannot free
 * memory a later delivery report still writes to. */
typedef struct kafka_batch_impl {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t refs;
    size_t pending;
    size_t acked;
    size_t failed;
    char first_err[256];
} kafka_batch_impl_t;

static void kafka_batch_unref_locked(kafka_batch_impl_t *bi)
{
    bi->refs--;
    if (bi->refs == 0) {
        pthread_mutex_unlock(&bi->mu);
        pthread_mutex_destroy(&bi->mu);
        pthread_cond_destroy(&bi->cv);
        free(bi);
        return;
    }
    pthread_mutex_unlock(&bi->mu);
}

static void kafka_batch_record_failure_locked(kafka_batch_impl_t *bi, const char *errmsg)
{
    bi->failed++;
    if (bi->first_err[0] == '\0')
        snprintf(bi->first_err, sizeof(bi->first_err), "%s", errmsg != NULL ? errmsg : "unknown error");
}

int cmn_kafka_batch_init(cmn_kafka_batch_t *b)
{
    pthread_condattr_t ca;
    kafka_batch_impl_t *bi = NULL;
    if (b == NULL)
        return CMN_ERR_INVALID;
    b->impl = NULL;
    bi = calloc(1, sizeof(*bi));
    if (bi == NULL)
        return CMN_ERR_NOMEM;
    if (pthread_mutex_init(&bi->mu, NULL) != 0) {
        free(bi);
        return CMN_ERR_NOMEM;
    }
    /* A monotonic condvar clock keeps batch timeouts correct across wall
     * clock jumps (NTP steps on a fresh pod). */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (pthread_cond_init(&bi->cv, &ca) != 0) {
        pthread_condattr_destroy(&ca);
        pthread_mutex_destroy(&bi->mu);
        free(bi);
        return CMN_ERR_NOMEM;
    }
    pthread_condattr_destroy(&ca);
    bi->refs = 1;
    b->impl = bi;
    return 0;
}

static void kafka_batch_delivery(void *opaque, int err, const char *errmsg)
{
    kafka_batch_impl_t *bi = opaque;
    pthread_mutex_lock(&bi->mu);
    if (err != 0)
        kafka_batch_record_failure_locked(bi, errmsg);
    else
        bi->acked++;
    bi->pending--;
    pthread_cond_broadcast(&bi->cv);
    kafka_batch_unref_locked(bi);
}

int cmn_kafka_produce_in_batch(cmn_kafka_producer_t *p, cmn_kafka_batch_t *b, const char *topic,
                               const void *key, size_t key_len, const void *value, size_t value_len,
                               const cmn_kafka_header_t *headers, size_t nheaders)
{
    if (p == NULL || b == NULL || b->impl == NULL || topic == NULL)
        return CMN_ERR_INVALID;
    kafka_batch_impl_t *bi = b->impl;
    int64_t give_up = cmn_monotonic_ms() + KAFKA_QUEUE_FULL_WAIT_MS;
    int rc;

    /* Count the message before it is queued: its delivery report may run on
     * the poll thread before rd_kafka_producev() has even returned here. */
    pthread_mutex_lock(&bi->mu);
    bi->pending++;
    bi->refs++;
    pthread_mutex_unlock(&bi->mu);
    for (;;) {
        rc = cmn_kafka_produce(p, topic, -1, key, key_len, value, value_len, headers, nheaders,
                               kafka_batch_delivery, bi);
        if (rc != CMN_ERR_UNAVAILABLE || cmn_monotonic_ms() >= give_up)
            break;
        /* The local queue is full: give the poll thread and the brokers a
         * moment to drain it. Polling here too serves delivery reports
         * sooner; every callback is thread-safe. */
        rd_kafka_poll(p->rk, 50);
    }
    if (rc != 0) {
        /* The batch itself remembers the failure, so a caller that only
         * checks cmn_kafka_batch_wait() still learns the batch is incomplete. */
        pthread_mutex_lock(&bi->mu);
        kafka_batch_record_failure_locked(bi, rc == CMN_ERR_UNAVAILABLE ? "local produce queue full"
                                                                        : cmn_strerror(rc));
        bi->pending--;
        pthread_cond_broadcast(&bi->cv);
        kafka_batch_unref_locked(bi);
    }
    return rc;
}

int cmn_kafka_batch_wait(cmn_kafka_batch_t *b, int timeout_ms, char *errstr, size_t errlen)
{
    if (b == NULL || b->impl == NULL)
        return CMN_ERR_INVALID;
    kafka_batch_impl_t *bi = b->impl;
    struct timespec deadline = kafka_deadline(timeout_ms < 0 ? 0 : timeout_ms);
    int rc = 0;

    pthread_mutex_lock(&bi->mu);
    while (bi->pending > 0) {
        int w = pthread_cond_timedwait(&bi->cv, &bi->mu, &deadline);
        if (w == ETIMEDOUT && bi->pending > 0) {
            kafka_set_err(errstr, errlen, "%zu of the batch's messages still unacknowledged", bi->pending);
            rc = CMN_ERR_TIMEOUT;
            goto cleanup;
        }
    }
    if (bi->failed > 0) {
        kafka_set_err(errstr, errlen, "%zu message(s) failed; first: %s", bi->failed, bi->first_err);
        rc = CMN_ERR_KAFKA;
    }
cleanup:
    pthread_mutex_unlock(&bi->mu);
    return rc;
}

void cmn_kafka_batch_destroy(cmn_kafka_batch_t *b)
{
    if (b == NULL || b->impl == NULL)
        return;
    kafka_batch_impl_t *bi = b->impl;
    b->impl = NULL;
    pthread_mutex_lock(&bi->mu);
    kafka_batch_unref_locked(bi);
}

/* --------------------------------------------------------------- consumer */

/* The next offset to read on one partition, as this member last knew it. */
typedef struct kafka_progress {
    char *topic;
    int32_t partition;
    int64_t next;
} kafka_progress_t;

struct cmn_kafka_consumer {
    kafka_common_t common; /* first: the librdkafka opaque points here */
    rd_kafka_t *rk;
    cmn_kafka_assign_fn on_assign;
    cmn_kafka_revoke_fn on_revoke;
    void *ctx;
    /* The batch: raw librdkafka messages (owned), the views handed to the
     * caller, and one arena holding NUL-terminated copies of keys/values. */
    rd_kafka_message_t **raw;
    cmn_kafka_message_t *msgs;
    size_t n;
    size_t cap;
    char *arena;
    size_t arena_cap;
    /* Offsets whose records were processed (commit_batch was called) but
     * whose commit did not reach the group: see kafka_progress_apply(). */
    kafka_progress_t *progress;
    size_t nprogress;
    size_t progress_cap;
    int fatal;                 /* negative code once on_assign failed */
    _Atomic int64_t last_ok_ms; /* monotonic time of the last sign of a live cluster */
};

static void kafka_consumer_release_batch(cmn_kafka_consumer_t *c)
{
    for (size_t i = 0; i < c->n; i++)
        rd_kafka_message_destroy(c->raw[i]);
    c->n = 0;
}

static void kafka_mark_ok(cmn_kafka_consumer_t *c)
{
    atomic_store(&c->last_ok_ms, cmn_monotonic_ms());
}

/* Removes from the batch being gathered every record of a revoked
 * partition: the partition's new owner will read them again from the
 * committed offset, so processing them here too would duplicate work. */
static void kafka_drop_revoked(cmn_kafka_consumer_t *c, const rd_kafka_topic_partition_list_t *parts)
{
    size_t keep = 0;
    for (size_t i = 0; i < c->n; i++) {
        rd_kafka_message_t *m = c->raw[i];
        if (rd_kafka_topic_partition_list_find(parts, rd_kafka_topic_name(m->rkt), m->partition) != NULL) {
            rd_kafka_message_destroy(m);
            continue;
        }
        c->raw[keep++] = m;
    }
    c->n = keep;
}

static void kafka_rebalance_log(cmn_kafka_consumer_t *c, const char *what,
                                const rd_kafka_topic_partition_list_t *parts, const char *protocol)
{
    char count[16];
    snprintf(count, sizeof(count), "%d", parts->cnt);
    const char *kv[] = {"partitions", count, "protocol", protocol != NULL ? protocol : "unknown", NULL};
    kafka_log(c->common.log, CMN_LOG_INFO, kv, what);
}

static int kafka_call_on_assign(cmn_kafka_consumer_t *c, rd_kafka_topic_partition_list_t *parts)
{
    size_t n = (size_t)parts->cnt;
    int rc = 0;
    const char **topics = NULL;
    int32_t *partitions = NULL;
    int64_t *offsets = NULL;

    if (c->on_assign == NULL || n == 0)
        return 0;
    topics = calloc(n, sizeof(*topics));
    partitions = calloc(n, sizeof(*partitions));
    offsets = calloc(n, sizeof(*offsets));
    if (topics == NULL || partitions == NULL || offsets == NULL) {
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++) {
        topics[i] = parts->elems[i].topic;
        partitions[i] = parts->elems[i].partition;
        offsets[i] = -1;
    }
    rc = c->on_assign(c->ctx, topics, partitions, offsets, n);
    if (rc != 0)
        goto cleanup;
    /* An offset supplied by the service (stored next to its data) wins over
     * the group's committed offset. */
    for (size_t i = 0; i < n; i++) {
        if (offsets[i] >= 0)
            parts->elems[i].offset = offsets[i];
    }
cleanup:
    free(topics);
    free(partitions);
    free(offsets);
    return rc;
}

static void kafka_call_on_revoke(cmn_kafka_consumer_t *c, const rd_kafka_topic_partition_list_t *parts)
{
    size_t n = (size_t)parts->cnt;
    if (c->on_revoke == NULL || n == 0)
        return;
    const char **topics = calloc(n, sizeof(*topics));
    int32_t *partitions = calloc(n, sizeof(*partitions));
    if (topics != NULL && partitions != NULL) {
        for (size_t i = 0; i < n; i++) {
            topics[i] = parts->elems[i].topic;
            partitions[i] = parts->elems[i].partition;
        }
        c->on_revoke(c->ctx, topics, partitions, n);
    } else {
        kafka_log(c->common.log, CMN_LOG_ERROR, NULL, "out of memory while reporting revoked partitions");
    }
    free(topics);
    free(partitions);
}

static void kafka_report_rdk_error(cmn_kafka_consumer_t *c, const char *what, rd_kafka_error_t *error)
{
    if (error == NULL)
        return;
    const char *kv[] = {"error", rd_kafka_error_name(error), NULL};
    char msg[512];
    snprintf(msg, sizeof(msg), "%s: %s", what, rd_kafka_error_string(error));
    kafka_log(c->common.log, CMN_LOG_ERROR, kv, msg);
    rd_kafka_error_destroy(error);
}

/* ---- uncommitted progress
 *
 * librdkafka 2.0.2 has a known flaw (librdkafka issue #4059, fixed in
 * 2.10): a commit that is queued on the coordinator connection behind this
 * member's own JoinGroup fails with ILLEGAL_GENERATION once the group moves
 * to the next generation, and librdkafka then declares the whole assignment
 * lost. The partitions usually come straight back to this member, but
 * positioned at the last *committed* offset, so records already processed
 * would be processed again (a second email). To prevent that, the consumer
 * remembers how far it got on every partition whose commit failed, and when
 * such a partition is assigned again it resumes from the later of that
 * position and the committed offset. That is safe because commit_batch is
 * only called once the batch's side effects are durable; and if another
 * member processed the partition meanwhile, its commit is the later one. */

static kafka_progress_t *kafka_progress_find(cmn_kafka_consumer_t *c, const char *topic, int32_t partition)
{
    for (size_t i = 0; i < c->nprogress; i++) {
        if (c->progress[i].partition == partition && strcmp(c->progress[i].topic, topic) == 0)
            return &c->progress[i];
    }
    return NULL;
}

static void kafka_progress_remove(cmn_kafka_consumer_t *c, kafka_progress_t *e)
{
    free(e->topic);
    *e = c->progress[--c->nprogress];
}

/* Records "next" for every partition of parts, keeping the larger value. */
static void kafka_progress_remember(cmn_kafka_consumer_t *c, const rd_kafka_topic_partition_list_t *parts)
{
    for (int i = 0; i < parts->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &parts->elems[i];
        kafka_progress_t *e = kafka_progress_find(c, tp->topic, tp->partition);
        if (e != NULL) {
            if (tp->offset > e->next)
                e->next = tp->offset;
            continue;
        }
        if (c->nprogress == c->progress_cap) {
            size_t ncap = c->progress_cap ? c->progress_cap * 2 : 16;
            kafka_progress_t *np = realloc(c->progress, ncap * sizeof(*np));
            if (np == NULL)
                return; /* only an optimisation: at-least-once still holds */
            c->progress = np;
            c->progress_cap = ncap;
        }
        char *topic = strdup(tp->topic);
        if (topic == NULL)
            return;
        c->progress[c->nprogress++] = (kafka_progress_t){topic, tp->partition, tp->offset};
    }
}

/* Forgets the partitions of parts: their offsets are committed now. */
static void kafka_progress_forget(cmn_kafka_consumer_t *c, const rd_kafka_topic_partition_list_t *parts)
{
    for (int i = 0; i < parts->cnt; i++) {
        kafka_progress_t *e = kafka_progress_find(c, parts->elems[i].topic, parts->elems[i].partition);
        if (e != NULL)
            kafka_progress_remove(c, e);
    }
}

/* Called on assignment, after on_assign: for partitions without a service
 * supplied offset but with remembered progress, start at the later of the
 * remembered and the committed offset. Returns the partitions adjusted (to
 * store and commit once assigned), or NULL when there are none. */
static rd_kafka_topic_partition_list_t *kafka_progress_apply(cmn_kafka_consumer_t *c,
                                                             rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_topic_partition_list_t *want = NULL;
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &parts->elems[i];
        if (tp->offset >= 0 || kafka_progress_find(c, tp->topic, tp->partition) == NULL)
            continue;
        if (want == NULL)
            want = rd_kafka_topic_partition_list_new(parts->cnt);
        rd_kafka_topic_partition_list_add(want, tp->topic, tp->partition);
    }
    if (want == NULL)
        return NULL;
    rd_kafka_resp_err_t err = rd_kafka_committed(c->rk, want, KAFKA_SYNC_OP_TIMEOUT_MS);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        /* Without the committed offsets the comparison is impossible; the
         * committed offsets apply as usual (at-least-once). */
        const char *kv[] = {"error", rd_kafka_err2name(err), NULL};
        kafka_log(c->common.log, CMN_LOG_WARN, kv, "cannot read committed offsets of regained partitions");
        rd_kafka_topic_partition_list_destroy(want);
        return NULL;
    }
    for (int i = 0; i < want->cnt; i++) {
        rd_kafka_topic_partition_t *w = &want->elems[i];
        kafka_progress_t *e = kafka_progress_find(c, w->topic, w->partition);
        if (w->err == RD_KAFKA_RESP_ERR_NO_ERROR && e->next > w->offset) {
            rd_kafka_topic_partition_list_find(parts, w->topic, w->partition)->offset = e->next;
            w->offset = e->next;
            char part[16], next[24];
            snprintf(part, sizeof(part), "%" PRId32, w->partition);
            snprintf(next, sizeof(next), "%" PRId64, e->next);
            const char *kv[] = {"topic", w->topic, "partition", part, "offset", next, NULL};
            kafka_log(c->common.log, CMN_LOG_INFO, kv,
                      "resuming a regained partition after the records this member already processed");
        } else {
            w->offset = RD_KAFKA_OFFSET_INVALID; /* nothing to store for this one */
        }
        kafka_progress_remove(c, e);
    }
    return want;
}

/* Errors with which the group coordinator refuses a commit because a
 * rebalance is under way or has just moved to a new generation. */
static int kafka_commit_deferrable(rd_kafka_resp_err_t err)
{
    return err == RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS || err == RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION ||
           err == RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID;
}

/* Commits the offsets stored so far (librdkafka remembers which ones are
 * not committed yet). Returns the librdkafka error. */
static rd_kafka_resp_err_t kafka_commit_stored(cmn_kafka_consumer_t *c, const char *when)
{
    rd_kafka_resp_err_t err = rd_kafka_commit(c->rk, NULL, 0);
    if (err == RD_KAFKA_RESP_ERR__NO_OFFSET)
        return RD_KAFKA_RESP_ERR_NO_ERROR;
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char *kv[] = {"error", rd_kafka_err2name(err), "when", when, NULL};
        int deferred = kafka_commit_deferrable(err);
        kafka_log(c->common.log, deferred ? CMN_LOG_INFO : CMN_LOG_WARN, kv,
                  deferred ? "kafka commit deferred until the rebalance completes" : "kafka commit failed");
    }
    return err;
}

/* Stores the offsets of parts that are >= 0 (the rest are skipped). */
static void kafka_store_valid(cmn_kafka_consumer_t *c, const rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_topic_partition_list_t *store = rd_kafka_topic_partition_list_new(parts->cnt > 0 ? parts->cnt : 1);
    for (int i = 0; i < parts->cnt; i++) {
        if (parts->elems[i].offset >= 0)
            rd_kafka_topic_partition_list_add(store, parts->elems[i].topic, parts->elems[i].partition)->offset =
                parts->elems[i].offset;
    }
    if (store->cnt > 0) {
        rd_kafka_resp_err_t err = rd_kafka_offsets_store(c->rk, store);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            const char *kv[] = {"error", rd_kafka_err2name(err), NULL};
            kafka_log(c->common.log, CMN_LOG_WARN, kv, "kafka offsets store failed for some partitions");
        }
    }
    rd_kafka_topic_partition_list_destroy(store);
}

static void kafka_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
                               void *opaque)
{
    cmn_kafka_consumer_t *c = opaque;
    const char *protocol = rd_kafka_rebalance_protocol(rk);
    int cooperative = protocol != NULL && strcmp(protocol, "COOPERATIVE") == 0;

    kafka_mark_ok(c);
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        kafka_rebalance_log(c, "kafka partitions assigned", parts, protocol);
        int rc = kafka_call_on_assign(c, parts);
        if (rc != 0) {
            /* The assignment still goes through so librdkafka's group state
             * stays consistent; poll_batch reports the failure and the
             * service stops. */
            const char *kv[] = {"error", cmn_strerror(rc), NULL};
            kafka_log(c->common.log, CMN_LOG_ERROR, kv, "on_assign failed; the consumer stops");
            c->fatal = rc < 0 ? rc : CMN_ERR_STATE;
        }
        rd_kafka_topic_partition_list_t *regained = kafka_progress_apply(c, parts);
        if (cooperative)
            kafka_report_rdk_error(c, "incremental assign", rd_kafka_incremental_assign(rk, parts));
        else if (rd_kafka_assign(rk, parts) != RD_KAFKA_RESP_ERR_NO_ERROR)
            kafka_log(c->common.log, CMN_LOG_ERROR, NULL, "kafka assign failed");
        if (regained != NULL) {
            /* Commit the skipped-over position at once, so the group's
             * record catches up with the work this member had done. */
            kafka_store_valid(c, regained);
            kafka_commit_stored(c, "on regained partitions");
            rd_kafka_topic_partition_list_destroy(regained);
        }
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        kafka_rebalance_log(c, rd_kafka_assignment_lost(rk) ? "kafka partitions lost" : "kafka partitions revoked",
                            parts, protocol);
        kafka_call_on_revoke(c, parts);
        kafka_drop_revoked(c, parts);
        /* A commit_batch that met a rebalance left its offsets stored but
         * uncommitted; commit them now, while this member still owns the
         * partitions, so the new owner does not repeat that work. A lost
         * assignment belongs to someone else already: nothing to commit. */
        if (!rd_kafka_assignment_lost(rk) && kafka_commit_stored(c, "on revoke") == RD_KAFKA_RESP_ERR_NO_ERROR)
            kafka_progress_forget(c, parts);
        if (cooperative)
            kafka_report_rdk_error(c, "incremental unassign", rd_kafka_incremental_unassign(rk, parts));
        else
            rd_kafka_assign(rk, NULL);
        return;
    }
    {
        const char *kv[] = {"error", rd_kafka_err2name(err), NULL};
        kafka_log(c->common.log, CMN_LOG_ERROR, kv, "kafka rebalance error");
    }
    if (cooperative)
        kafka_report_rdk_error(c, "incremental unassign", rd_kafka_incremental_unassign(rk, parts));
    else
        rd_kafka_assign(rk, NULL);
}

cmn_kafka_consumer_t *cmn_kafka_consumer_new(const cmn_kafka_config_t *cfg, const cmn_kafka_consumer_opts_t *opts,
                                             char *errstr, size_t errlen)
{
    cmn_kafka_consumer_t *c = NULL;
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_topic_partition_list_t *subs = NULL;
    char rderr[512];
    const char *reset = "earliest";

    if (kafka_validate_cfg(cfg, 1, errstr, errlen) != 0)
        goto cleanup;
    if (opts == NULL || opts->topics == NULL || opts->topics[0] == NULL) {
        kafka_set_err(errstr, errlen, "kafka consumer: at least one topic is required");
        goto cleanup;
    }
    if (opts->auto_offset_reset != NULL) {
        if (strcmp(opts->auto_offset_reset, "earliest") != 0 && strcmp(opts->auto_offset_reset, "latest") != 0) {
            kafka_set_err(errstr, errlen, "kafka consumer: auto_offset_reset must be earliest or latest, not '%s'",
                          opts->auto_offset_reset);
            goto cleanup;
        }
        reset = opts->auto_offset_reset;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        kafka_set_err(errstr, errlen, "out of memory");
        goto cleanup;
    }
    c->common.log = cfg->log;
    c->common.metrics = cfg->metrics;
    c->on_assign = opts->on_assign;
    c->on_revoke = opts->on_revoke;
    c->ctx = opts->ctx;
    atomic_init(&c->last_ok_ms, 0);
    /* Offsets are stored and committed only by commit_batch, after the
     * batch's side effects are durable: that is the at-least-once contract. */
    const char *const defaults[] = {
        "group.id", cfg->group_id,
        "partition.assignment.strategy", "cooperative-sticky",
        "enable.auto.commit", "false",
        "enable.auto.offset.store", "false",
        "auto.offset.reset", reset,
        NULL,
    };
    conf = kafka_conf_new(cfg, defaults, &c->common, errstr, errlen);
    if (conf == NULL)
        goto cleanup;
    rd_kafka_conf_set_rebalance_cb(conf, kafka_rebalance_cb);
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, rderr, sizeof(rderr));
    if (c->rk == NULL) {
        kafka_set_err(errstr, errlen, "kafka consumer: %s", rderr);
        goto cleanup;
    }
    conf = NULL;
    /* Error events are then served by rd_kafka_consumer_poll() in the
     * owner's thread instead of piling up on an unpolled main queue. */
    rd_kafka_poll_set_consumer(c->rk);
    size_t ntopics = 0;
    while (opts->topics[ntopics] != NULL)
        ntopics++;
    subs = rd_kafka_topic_partition_list_new((int)ntopics);
    for (size_t i = 0; i < ntopics; i++)
        rd_kafka_topic_partition_list_add(subs, opts->topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(c->rk, subs);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        kafka_set_err(errstr, errlen, "kafka subscribe: %s", rd_kafka_err2str(err));
        goto cleanup;
    }
    rd_kafka_topic_partition_list_destroy(subs);
    return c;

cleanup:
    if (subs != NULL)
        rd_kafka_topic_partition_list_destroy(subs);
    if (conf != NULL)
        rd_kafka_conf_destroy(conf);
    if (c != NULL) {
        if (c->rk != NULL)
            rd_kafka_destroy(c->rk);
        free(c);
    }
    return NULL;
}

static int kafka_consumer_reserve(cmn_kafka_consumer_t *c, size_t want)
{
    if (want <= c->cap)
        return 0;
    rd_kafka_message_t **raw = realloc(c->raw, want * sizeof(*raw));
    if (raw == NULL)
        return CMN_ERR_NOMEM;
    c->raw = raw;
    cmn_kafka_message_t *msgs = realloc(c->msgs, want * sizeof(*msgs));
    if (msgs == NULL)
        return CMN_ERR_NOMEM;
    c->msgs = msgs;
    c->cap = want;
    return 0;
}

static void kafka_consumer_event(cmn_kafka_consumer_t *c, const rd_kafka_message_t *m)
{
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        kafka_mark_ok(c);
        return;
    }
    const char *topic = m->rkt != NULL ? rd_kafka_topic_name(m->rkt) : "";
    char part[16];
    snprintf(part, sizeof(part), "%" PRId32, m->partition);
    const char *kv[] = {"topic", topic, "partition", part, "error", rd_kafka_err2name(m->err), NULL};
    kafka_log(c->common.log, CMN_LOG_WARN, kv, rd_kafka_message_errstr(m));
    kafka_count(c->common.metrics, "kafka_consumer_errors_total", "Errors seen by Kafka consumers.", NULL, 1);
}

/* Builds the caller's views over the gathered raw messages. Keys and values
 * are copied once into the arena so both can be NUL-terminated. */
static int kafka_consumer_fill_views(cmn_kafka_consumer_t *c)
{
    size_t need = 0;
    for (size_t i = 0; i < c->n; i++)
        need += c->raw[i]->key_len + 1 + c->raw[i]->len + 1;
    if (need > c->arena_cap) {
        char *a = realloc(c->arena, need);
        if (a == NULL)
            return CMN_ERR_NOMEM;
        c->arena = a;
        c->arena_cap = need;
    }
    char *at = c->arena;
    for (size_t i = 0; i < c->n; i++) {
        const rd_kafka_message_t *m = c->raw[i];
        cmn_kafka_message_t *v = &c->msgs[i];
        rd_kafka_timestamp_type_t tstype;
        v->topic = rd_kafka_topic_name(m->rkt);
        v->partition = m->partition;
        v->offset = m->offset;
        v->timestamp_ms = rd_kafka_message_timestamp(m, &tstype);
        v->internal = (void *)m;
        v->key = NULL;
        v->key_len = 0;
        if (m->key != NULL) {
            memcpy(at, m->key, m->key_len);
            at[m->key_len] = '\0';
            v->key = at;
            v->key_len = m->key_len;
            at += m->key_len + 1;
        }
        v->value = NULL;
        v->value_len = 0;
        if (m->payload != NULL) {
            memcpy(at, m->payload, m->len);
            at[m->len] = '\0';
            v->value = at;
            v->value_len = m->len;
            at += m->len + 1;
        }
    }
    /* One registry lookup per run of same-topic records rather than per
     * record: the lookup takes the registry lock. */
    for (size_t i = 0; i < c->n;) {
        size_t j = i + 1;
        while (j < c->n && strcmp(c->msgs[j].topic, c->msgs[i].topic) == 0)
            j++;
        kafka_count(c->common.metrics, "kafka_messages_consumed_total", "Kafka messages consumed.", c->msgs[i].topic,
                    j - i);
        i = j;
    }
    return 0;
}

int cmn_kafka_consumer_poll_batch(cmn_kafka_consumer_t *c, int max, int timeout_ms, cmn_kafka_message_t **msgs)
{
    if (c == NULL || max <= 0 || msgs == NULL)
        return CMN_ERR_INVALID;
    *msgs = NULL;
    kafka_consumer_release_batch(c);
    if (c->fatal != 0)
        return c->fatal;
    int rc = kafka_consumer_reserve(c, (size_t)max);
    if (rc != 0)
        return rc;

    int64_t deadline = cmn_monotonic_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    while (c->n < (size_t)max) {
        int64_t left = deadline - cmn_monotonic_ms();
        /* Wait only for the first record; after that take what is already
         * fetched so a batch never adds latency to records in hand. */
        int wait = c->n == 0 && left > 0 ? (int)left : 0;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, wait);
        if (c->fatal != 0) {
            if (m != NULL)
                rd_kafka_message_destroy(m);
            kafka_consumer_release_batch(c);
            return c->fatal;
        }
        if (m == NULL) {
            /* A rebalance may have emptied the batch; keep waiting for the
             * rest of the timeout in that case. */
            if (c->n > 0 || left <= 0)
                break;
            continue;
        }
        if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            kafka_consumer_event(c, m);
            rd_kafka_message_destroy(m);
            continue;
        }
        c->raw[c->n++] = m;
        kafka_mark_ok(c);
    }
    rc = kafka_consumer_fill_views(c);
    if (rc != 0) {
        /* The records were consumed from the local queue but cannot be
         * handed out; rewinding makes them come back on the next poll. */
        cmn_kafka_consumer_rewind_batch(c);
        kafka_consumer_release_batch(c);
        return rc;
    }
    *msgs = c->msgs;
    return (int)c->n;
}

/* Collects one entry per partition of the batch: the highest offset + 1
 * (use_min == 0, for commits) or the lowest offset (use_min == 1, for
 * rewinds), restricted to partitions this consumer still owns. */
static rd_kafka_topic_partition_list_t *kafka_batch_partitions(cmn_kafka_consumer_t *c, int use_min, int *rc)
{
    rd_kafka_topic_partition_list_t *all = rd_kafka_topic_partition_list_new(16);
    rd_kafka_topic_partition_list_t *assigned = NULL;
    rd_kafka_topic_partition_list_t *out = NULL;

    *rc = 0;
    for (size_t i = 0; i < c->n; i++) {
        const rd_kafka_message_t *m = c->raw[i];
        const char *topic = rd_kafka_topic_name(m->rkt);
        int64_t want = use_min ? m->offset : m->offset + 1;
        rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find(all, topic, m->partition);
        if (tp == NULL) {
            tp = rd_kafka_topic_partition_list_add(all, topic, m->partition);
            tp->offset = want;
        } else if (use_min ? want < tp->offset : want > tp->offset) {
            tp->offset = want;
        }
    }
    rd_kafka_resp_err_t err = rd_kafka_assignment(c->rk, &assigned);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char *kv[] = {"error", rd_kafka_err2name(err), NULL};
        kafka_log(c->common.log, CMN_LOG_ERROR, kv, "cannot read the consumer's assignment");
        *rc = CMN_ERR_KAFKA;
        goto cleanup;
    }
    out = rd_kafka_topic_partition_list_new(all->cnt > 0 ? all->cnt : 1);
    for (int i = 0; i < all->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &all->elems[i];
        if (rd_kafka_topic_partition_list_find(assigned, tp->topic, tp->partition) == NULL)
            continue;
        rd_kafka_topic_partition_list_add(out, tp->topic, tp->partition)->offset = tp->offset;
    }
cleanup:
    rd_kafka_topic_partition_list_destroy(all);
    if (assigned != NULL)
        rd_kafka_topic_partition_list_destroy(assigned);
    return out;
}

/* Stores and commits parts (next offsets of assigned partitions): the
 * common tail of commit_batch and commit_offsets. */
static int kafka_commit_parts(cmn_kafka_consumer_t *c, rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_resp_err_t err = rd_kafka_offsets_store(c->rk, parts);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        /* A partition revoked in the meantime reports _STATE here; the
         * others were stored and are committed below. */
        const char *kv[] = {"error", rd_kafka_err2name(err), NULL};
        kafka_log(c->common.log, CMN_LOG_WARN, kv, "kafka offsets store failed for some partitions");
    }
    err = kafka_commit_stored(c, "commit batch");
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        kafka_progress_forget(c, parts);
    else
        kafka_progress_remember(c, parts);
    if (kafka_commit_deferrable(err)) {
        /* The group coordinator refuses commits while a rebalance is under
         * way. The offsets stay stored: the next commit_batch commits them,
         * or the revoke callback does before a partition moves, so the
         * caller need not redo any work. (Should the partition have been
         * lost meanwhile, its new owner re-reads from the last committed
         * offset: at-least-once, as everywhere.) */
        kafka_count(c->common.metrics, "kafka_commits_deferred_total",
                    "Kafka offset commits deferred by a group rebalance.", NULL, 1);
        return 0;
    }
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        kafka_count(c->common.metrics, "kafka_commit_errors_total", "Failed Kafka offset commits.", NULL, 1);
        return CMN_ERR_KAFKA;
    }
    kafka_mark_ok(c);
    return 0;
}

int cmn_kafka_consumer_commit_batch(cmn_kafka_consumer_t *c)
{
    int rc = 0;
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (c == NULL)
        return CMN_ERR_INVALID;
    if (c->n == 0)
        return 0;
    parts = kafka_batch_partitions(c, 0, &rc);
    if (rc != 0 || parts->cnt == 0)
        goto cleanup;
    rc = kafka_commit_parts(c, parts);
cleanup:
    if (parts != NULL)
        rd_kafka_topic_partition_list_destroy(parts);
    return rc;
}

int cmn_kafka_consumer_commit_offsets(cmn_kafka_consumer_t *c, const cmn_kafka_offset_t *offsets, size_t n)
{
    int rc = 0;
    rd_kafka_topic_partition_list_t *assigned = NULL;
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (c == NULL || (offsets == NULL && n > 0))
        return CMN_ERR_INVALID;
    for (size_t i = 0; i < n; i++) {
        if (offsets[i].topic == NULL || offsets[i].partition < 0 || offsets[i].next < 0)
            return CMN_ERR_INVALID;
    }
    if (n == 0)
        return 0;
    rd_kafka_resp_err_t err = rd_kafka_assignment(c->rk, &assigned);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char *kv[] = {"error", rd_kafka_err2name(err), NULL};
        kafka_log(c->common.log, CMN_LOG_ERROR, kv, "cannot read the consumer's assignment");
        rc = CMN_ERR_KAFKA;
        goto cleanup;
    }
    /* Storing an offset for a partition this member no longer owns would
     * fail anyway; its new owner starts from the last committed offset. */
    parts = rd_kafka_topic_partition_list_new((int)n);
    for (size_t i = 0; i < n; i++) {
        if (rd_kafka_topic_partition_list_find(assigned, offsets[i].topic, offsets[i].partition) == NULL)
            continue;
        rd_kafka_topic_partition_list_add(parts, offsets[i].topic, offsets[i].partition)->offset = offsets[i].next;
    }
    if (parts->cnt > 0)
        rc = kafka_commit_parts(c, parts);
cleanup:
    if (assigned != NULL)
        rd_kafka_topic_partition_list_destroy(assigned);
    if (parts != NULL)
        rd_kafka_topic_partition_list_destroy(parts);
    return rc;
}

int cmn_kafka_consumer_seek(cmn_kafka_consumer_t *c, const char *topic, int32_t partition, int64_t offset)
{
    if (c == NULL || topic == NULL || partition < 0 || offset < 0)
        return CMN_ERR_INVALID;
    int rc = 0;
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(parts, topic, partition)->offset = offset;
    /* With a timeout the call returns once the partition's fetcher has
     * taken the new position, so no record fetched before the seek can be
     * returned by a later poll. */
    rd_kafka_error_t *error = rd_kafka_seek_partitions(c->rk, parts, KAFKA_SYNC_OP_TIMEOUT_MS);
    if (error != NULL) {
        kafka_report_rdk_error(c, "kafka seek failed", error);
        rc = CMN_ERR_KAFKA;
        goto cleanup;
    }
    if (parts->elems[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        char part[16];
        snprintf(part, sizeof(part), "%" PRId32, partition);
        const char *kv[] = {"topic", topic, "partition", part, "error", rd_kafka_err2name(parts->elems[0].err), NULL};
        kafka_log(c->common.log, CMN_LOG_WARN, kv, "kafka seek failed for a partition");
        rc = CMN_ERR_KAFKA;
    }
cleanup:
    rd_kafka_topic_partition_list_destroy(parts);
    return rc;
}

int cmn_kafka_consumer_rewind_batch(cmn_kafka_consumer_t *c)
{
    int rc = 0;
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (c == NULL)
        return CMN_ERR_INVALID;
    if (c->n == 0)
        return 0;
    parts = kafka_batch_partitions(c, 1, &rc);
    if (rc != 0 || parts->cnt == 0)
        goto cleanup;
    rd_kafka_error_t *error = rd_kafka_seek_partitions(c->rk, parts, KAFKA_SYNC_OP_TIMEOUT_MS);
    if (error != NULL) {
        kafka_report_rdk_error(c, "kafka seek failed", error);
        rc = CMN_ERR_KAFKA;
        goto cleanup;
    }
    for (int i = 0; i < parts->cnt; i++) {
        if (parts->elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            const char *kv[] = {"topic", parts->elems[i].topic, "error", rd_kafka_err2name(parts->elems[i].err),
                                NULL};
            kafka_log(c->common.log, CMN_LOG_ERROR, kv, "kafka seek failed for a partition");
            rc = CMN_ERR_KAFKA;
        }
    }
cleanup:
    if (parts != NULL)
        rd_kafka_topic_partition_list_destroy(parts);
    return rc;
}

static int kafka_pause_resume(cmn_kafka_consumer_t *c, const char *topic, int32_t partition, int pause)
{
    if (c == NULL || topic == NULL || partition < 0)
        return CMN_ERR_INVALID;
    int rc = 0;
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(parts, topic, partition);
    rd_kafka_resp_err_t err =
        pause ? rd_kafka_pause_partitions(c->rk, parts) : rd_kafka_resume_partitions(c->rk, parts);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        err = parts->elems[0].err;
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char *kv[] = {"topic", topic, "error", rd_kafka_err2name(err), NULL};
        kafka_log(c->common.log, CMN_LOG_WARN, kv, pause ? "kafka pause failed" : "kafka resume failed");
        rc = CMN_ERR_KAFKA;
    }
    rd_kafka_topic_partition_list_destroy(parts);
    return rc;
}

int cmn_kafka_consumer_pause(cmn_kafka_consumer_t *c, const char *topic, int32_t partition)
{
    return kafka_pause_resume(c, topic, partition, 1);
}

int cmn_kafka_consumer_resume(cmn_kafka_consumer_t *c, const char *topic, int32_t partition)
{
    return kafka_pause_resume(c, topic, partition, 0);
}

int cmn_kafka_consumer_is_healthy(cmn_kafka_consumer_t *c)
{
    if (c == NULL)
        return 0;
    int64_t now = cmn_monotonic_ms();
    int64_t last = atomic_load(&c->last_ok_ms);
    if (last != 0 && now - last < KAFKA_HEALTH_WINDOW_MS)
        return 1;
    /* An idle consumer sees no records and no rebalances, so silence alone
     * does not mean the cluster is gone: ask it for metadata. librdkafka
     * handles are thread-safe, so a health endpoint thread may do this. */
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(c->rk, 0, NULL, &md, KAFKA_HEALTH_PROBE_TIMEOUT_MS);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    int healthy = md->broker_cnt > 0;
    rd_kafka_metadata_destroy(md);
    if (healthy)
        atomic_store(&c->last_ok_ms, cmn_monotonic_ms());
    return healthy;
}

void cmn_kafka_consumer_destroy(cmn_kafka_consumer_t *c)
{
    if (c == NULL)
        return;
    kafka_consumer_release_batch(c);
    /* close() leaves the group (revoke callbacks run, partitions move to the
     * other members at once instead of after the session timeout). */
    rd_kafka_resp_err_t err = rd_kafka_consumer_close(c->rk);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char *kv[] = {"error", rd_kafka_err2name(err), NULL};
        kafka_log(c->common.log, CMN_LOG_WARN, kv, "kafka consumer close failed");
    }
    kafka_consumer_release_batch(c);
    rd_kafka_destroy(c->rk);
    for (size_t i = 0; i < c->nprogress; i++)
        free(c->progress[i].topic);
    free(c->progress);
    free(c->raw);
    free(c->msgs);
    free(c->arena);
    free(c);
}

const void *cmn_kafka_message_header(const cmn_kafka_message_t *m, const char *name, size_t *len)
{
    rd_kafka_headers_t *hdrs = NULL;
    const void *val = NULL;
    size_t size = 0;
    if (len != NULL)
        *len = 0;
    if (m == NULL || m->internal == NULL || name == NULL)
        return NULL;
    if (rd_kafka_message_headers((const rd_kafka_message_t *)m->internal, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return NULL;
    if (rd_kafka_header_get_last(hdrs, name, &val, &size) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return NULL;
    if (len != NULL)
        *len = size;
    return val;
}

int cmn_kafka_message_header_at(const cmn_kafka_message_t *m, size_t idx, const char **name, const void **value,
                                size_t *len)
{
    rd_kafka_headers_t *hdrs = NULL;
    const char *n = NULL;
    const void *val = NULL;
    size_t size = 0;
    if (m == NULL || m->internal == NULL || name == NULL || value == NULL || len == NULL)
        return CMN_ERR_INVALID;
    *name = NULL;
    *value = NULL;
    *len = 0;
    if (rd_kafka_message_headers((const rd_kafka_message_t *)m->internal, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return CMN_ERR_NOTFOUND;
    if (rd_kafka_header_get_all(hdrs, idx, &n, &val, &size) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return CMN_ERR_NOTFOUND;
    *name = n;
    *value = val;
    *len = size;
    return 0;
}

int cmn_kafka_forward_in_batch(cmn_kafka_producer_t *p, cmn_kafka_batch_t *b, const char *topic,
                               const cmn_kafka_message_t *src)
{
    cmn_kafka_header_t *h = NULL;
    size_t nh = 0;
    const char *name;
    const void *val;
    size_t len;
    int rc;
    if (p == NULL || b == NULL || topic == NULL || src == NULL)
        return CMN_ERR_INVALID;
    while (cmn_kafka_message_header_at(src, nh, &name, &val, &len) == 0)
        nh++;
    if (nh > 0) {
        h = calloc(nh, sizeof(*h));
        if (h == NULL)
            return CMN_ERR_NOMEM;
        for (size_t i = 0; i < nh; i++) {
            rc = cmn_kafka_message_header_at(src, i, &h[i].name, &h[i].value, &h[i].value_len);
            if (rc != 0)
                goto cleanup;
        }
    }
    rc = cmn_kafka_produce_in_batch(p, b, topic, src->key, src->key_len, src->value, src->value_len, h, nh);
cleanup:
    free(h);
    return rc;
}

/* ---------------------------------------------------------------- helpers */

int cmn_kafka_dlq_in_batch(cmn_kafka_producer_t *p, cmn_kafka_batch_t *b, const cmn_kafka_message_t *src,
                           const char *service, const char *reason)
{
    if (p == NULL || b == NULL || src == NULL || src->topic == NULL)
        return CMN_ERR_INVALID;
    char part[16], off[24];
    snprintf(part, sizeof(part), "%" PRId32, src->partition);
    snprintf(off, sizeof(off), "%" PRId64, src->offset);
    const char *why = reason != NULL ? reason : "unspecified";
    const char *svc = service != NULL ? service : "unknown";
    rd_kafka_headers_t *sh = NULL;
    size_t nsrc = 0;
    if (src->internal != NULL &&
        rd_kafka_message_headers((const rd_kafka_message_t *)src->internal, &sh) == RD_KAFKA_RESP_ERR_NO_ERROR)
        nsrc = rd_kafka_header_cnt(sh);
    cmn_kafka_header_t *h = calloc(nsrc + 5, sizeof(*h));
    if (h == NULL)
        return CMN_ERR_NOMEM;
    h[0] = (cmn_kafka_header_t){CMN_HDR_DLQ_REASON, why, strlen(why)};
    h[1] = (cmn_kafka_header_t){CMN_HDR_DLQ_SOURCE_TOPIC, src->topic, strlen(src->topic)};
    h[2] = (cmn_kafka_header_t){CMN_HDR_DLQ_SOURCE_PARTITION, part, strlen(part)};
    h[3] = (cmn_kafka_header_t){CMN_HDR_DLQ_SOURCE_OFFSET, off, strlen(off)};
    h[4] = (cmn_kafka_header_t){CMN_HDR_DLQ_SERVICE, svc, strlen(svc)};
    size_t nh = 5;
    /* The source's own headers come along: its traceparent lets an operator
     * follow a dead record back through every service that touched it, and
     * `crmctl dlq replay` restores them all (a delay tier's x-crm-due-at and
     * x-crm-target are its plan). Dead-letter headers of an earlier trip
     * through crm.dlq are dropped so the reason is always this one. */
    size_t plen = strlen(CMN_HDR_DLQ_PREFIX);
    for (size_t i = 0; i < nsrc; i++) {
        const char *name = NULL;
        const void *val = NULL;
        size_t size = 0;
        if (rd_kafka_header_get_all(sh, i, &name, &val, &size) != RD_KAFKA_RESP_ERR_NO_ERROR)
            break;
        if (strncmp(name, CMN_HDR_DLQ_PREFIX, plen) == 0)
            continue;
        h[nh++] = (cmn_kafka_header_t){name, val, size};
    }
    int rc = cmn_kafka_produce_in_batch(p, b, CMN_TOPIC_DLQ, src->key, src->key_len, src->value, src->value_len, h,
                                        nh);
    free(h);
    return rc;
}

/* ------------------------------------------------------ topic administration */

/* One engine topic during cmn_kafka_ensure_topics(). */
typedef struct kafka_topic_run {
    const cmn_kafka_topic_spec_t *spec;
    int want_partitions;
    int have_partitions;          /* -1 while the topic is missing */
    int created;                  /* created by this run: its configs are ours */
    int configs_differ;
    cmn_kafka_topic_state_t state;
    char detail[768];
} kafka_topic_run_t;

/* How bad a state is, so that one topic with several findings reports the
 * worst of them. */
static int kafka_state_rank(cmn_kafka_topic_state_t s)
{
    switch (s) {
    case CMN_KAFKA_TOPIC_OK: return 0;
    case CMN_KAFKA_TOPIC_CREATED: return 1;
    case CMN_KAFKA_TOPIC_UNCHECKED: return 2;
    case CMN_KAFKA_TOPIC_FIXED: return 3;
    case CMN_KAFKA_TOPIC_MISMATCH: return 4;
    case CMN_KAFKA_TOPIC_FAILED: return 5;
    }
    return 5;
}

static void kafka_run_mark(kafka_topic_run_t *r, cmn_kafka_topic_state_t state, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void kafka_run_mark(kafka_topic_run_t *r, cmn_kafka_topic_state_t state, const char *fmt, ...)
{
    if (kafka_state_rank(state) > kafka_state_rank(r->state))
        r->state = state;
    if (fmt == NULL)
        return;
    size_t used = strlen(r->detail);
    if (used > 0 && used + 2 < sizeof(r->detail)) {
        memcpy(r->detail + used, "; ", 3);
        used += 2;
    }
    if (used + 1 >= sizeof(r->detail))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->detail + used, sizeof(r->detail) - used, fmt, ap);
    va_end(ap);
}

/* Sends one admin request already queued on q's handle and waits for its
 * event. Returns the event (caller destroys) or NULL with errstr set. */
static rd_kafka_event_t *kafka_admin_wait(rd_kafka_queue_t *q, const char *what, const char *brokers, char *errstr,
                                          size_t errlen, int *rc)
{
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, KAFKA_ADMIN_TIMEOUT_MS + 5000);
    if (ev == NULL) {
        kafka_set_err(errstr, errlen, "%s: no answer from %s within %d s", what, brokers,
                      (KAFKA_ADMIN_TIMEOUT_MS + 5000) / 1000);
        *rc = CMN_ERR_TIMEOUT;
    }
    return ev;
}

static rd_kafka_AdminOptions_t *kafka_admin_opts(rd_kafka_t *rk, rd_kafka_admin_op_t op)
{
    char rderr[256];
    rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(rk, op);
    if (o == NULL)
        return NULL;
    rd_kafka_AdminOptions_set_request_timeout(o, KAFKA_ADMIN_TIMEOUT_MS, rderr, sizeof(rderr));
    if (op == RD_KAFKA_ADMIN_OP_CREATETOPICS || op == RD_KAFKA_ADMIN_OP_CREATEPARTITIONS)
        rd_kafka_AdminOptions_set_operation_timeout(o, KAFKA_ADMIN_TIMEOUT_MS, rderr, sizeof(rderr));
    return o;
}

/* Reads the cluster's metadata: which engine topics exist with how many
 * partitions, how many brokers there are and whether the controller is one
 * of them. The admin requests go to the controller, and librdkafka would
 * wait for one until the request times out; librdkafka's mock cluster names
 * a controller id that is none of its brokers. So a missing topic without a
 * controller is an error here, and without one configs are not described. */
static int kafka_topics_survey(rd_kafka_t *rk, const char *brokers, kafka_topic_run_t *runs, size_t n,
                               int *nbrokers, size_t *nmissing, int *has_controller, char *errstr, size_t errlen)
{
    const struct rd_kafka_metadata *md = NULL;
    char *cluster_id = NULL;
    int rc = 0;

    *nmissing = 0;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, NULL, &md, KAFKA_ADMIN_TIMEOUT_MS);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        kafka_set_err(errstr, errlen, "topics: no metadata from %s: %s", brokers, rd_kafka_err2str(err));
        rc = CMN_ERR_UNAVAILABLE;
        goto cleanup;
    }
    *nbrokers = md->broker_cnt;
    for (size_t i = 0; i < n; i++) {
        runs[i].have_partitions = -1;
        for (int j = 0; j < md->topic_cnt; j++) {
            if (md->topics[j].err == RD_KAFKA_RESP_ERR_NO_ERROR && strcmp(md->topics[j].topic, runs[i].spec->name) == 0)
                runs[i].have_partitions = md->topics[j].partition_cnt;
        }
        *nmissing += runs[i].have_partitions < 0;
    }
    int32_t controller = rd_kafka_controllerid(rk, KAFKA_SYNC_OP_TIMEOUT_MS);
    *has_controller = 0;
    for (int i = 0; i < md->broker_cnt; i++)
        *has_controller |= md->brokers[i].id == controller;
    if (*nmissing == 0 || *has_controller)
        goto cleanup;
    cluster_id = rd_kafka_clusterid(rk, KAFKA_SYNC_OP_TIMEOUT_MS);
    if (cluster_id != NULL && strncmp(cluster_id, "mockCluster", 11) == 0)
        kafka_set_err(errstr, errlen,
                      "create topics: %s is librdkafka's mock cluster, which lacks %zu of the engine's topics "
                      "and does not support the CreateTopics API; run the embedded cluster with "
                      "`crmctl embedded-kafka`, which creates every topic itself",
                      brokers, *nmissing);
    else
        kafka_set_err(errstr, errlen, "create topics: the cluster at %s reports no reachable controller (id %d)",
                      brokers, (int)controller);
    rc = CMN_ERR_UNAVAILABLE;
cleanup:
    if (cluster_id != NULL)
        rd_kafka_mem_free(rk, cluster_id);
    if (md != NULL)
        rd_kafka_metadata_destroy(md);
    return rc;
}

/* Creates the missing topics with their partitions and configs. A topic
 * that another operator (or a second `dev up`) created in the meantime is
 * the state we want, not an error. */
static int kafka_topics_create_missing(rd_kafka_t *rk, rd_kafka_queue_t *q, const char *brokers,
                                       kafka_topic_run_t *runs, size_t n, int replication, char *errstr,
                                       size_t errlen)
{
    rd_kafka_NewTopic_t **nts = calloc(n, sizeof(*nts));
    rd_kafka_AdminOptions_t *aopts = NULL;
    rd_kafka_event_t *ev = NULL;
    size_t nnew = 0;
    char rderr[512];
    int rc = 0;

    if (nts == NULL)
        return CMN_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        if (runs[i].have_partitions >= 0)
            continue;
        const cmn_kafka_topic_spec_t *sp = runs[i].spec;
        nts[nnew] = rd_kafka_NewTopic_new(sp->name, runs[i].want_partitions, replication, rderr, sizeof(rderr));
        if (nts[nnew] == NULL) {
            kafka_set_err(errstr, errlen, "create topics: %s: %s", sp->name, rderr);
            rc = CMN_ERR_INVALID;
            goto cleanup;
        }
        nnew++;
        for (size_t c = 0; c < CMN_KAFKA_TOPIC_MAX_CONFIGS && sp->configs[c].name != NULL; c++) {
            if (rd_kafka_NewTopic_set_config(nts[nnew - 1], sp->configs[c].name, sp->configs[c].value) !=
                RD_KAFKA_RESP_ERR_NO_ERROR) {
                kafka_set_err(errstr, errlen, "create topics: cannot set %s on %s", sp->configs[c].name, sp->name);
                rc = CMN_ERR_INVALID;
                goto cleanup;
            }
        }
    }
    aopts = kafka_admin_opts(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_CreateTopics(rk, nts, nnew, aopts, q);
    ev = kafka_admin_wait(q, "create topics", brokers, errstr, errlen, &rc);
    if (ev == NULL)
        goto cleanup;
    if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        kafka_set_err(errstr, errlen, "create topics: %s", rd_kafka_event_error_string(ev));
        rc = CMN_ERR_KAFKA;
        goto cleanup;
    }
    size_t nres = 0;
    const rd_kafka_topic_result_t **trs =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &nres);
    for (size_t i = 0; i < nres; i++) {
        const char *name = rd_kafka_topic_result_name(trs[i]);
        rd_kafka_resp_err_t terr = rd_kafka_topic_result_error(trs[i]);
        for (size_t j = 0; j < n; j++) {
            if (strcmp(runs[j].spec->name, name) != 0)
                continue;
            if (terr == RD_KAFKA_RESP_ERR_NO_ERROR) {
                runs[j].created = 1;
                runs[j].have_partitions = runs[j].want_partitions;
                kafka_run_mark(&runs[j], CMN_KAFKA_TOPIC_CREATED, "%d partitions, replication %d",
                               runs[j].want_partitions, replication);
            } else if (terr == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
                /* Someone else's creation: check it like any existing topic. */
                runs[j].have_partitions = runs[j].want_partitions;
            } else {
                const char *terrstr = rd_kafka_topic_result_error_string(trs[i]);
                kafka_run_mark(&runs[j], CMN_KAFKA_TOPIC_FAILED, "create refused: %s",
                               terrstr != NULL ? terrstr : rd_kafka_err2str(terr));
            }
        }
    }
cleanup:
    if (ev != NULL)
        rd_kafka_event_destroy(ev);
    if (aopts != NULL)
        rd_kafka_AdminOptions_destroy(aopts);
    for (size_t i = 0; i < nnew; i++)
        rd_kafka_NewTopic_destroy(nts[i]);
    free(nts);
    return rc;
}

/* Grows topics that have fewer partitions than wanted (fix), or records the
 * mismatch. Fewer partitions cap a consumer group's parallelism; more are an
 * operator's choice and only noted. */
static int kafka_topics_partitions(rd_kafka_t *rk, rd_kafka_queue_t *q, const char *brokers,
                                   kafka_topic_run_t *runs, size_t n, int fix, int has_controller, char *errstr,
                                   size_t errlen)
{
    rd_kafka_NewPartitions_t **nps = calloc(n, sizeof(*nps));
    rd_kafka_AdminOptions_t *aopts = NULL;
    rd_kafka_event_t *ev = NULL;
    size_t nnew = 0;
    char rderr[512];
    int rc = 0;

    if (nps == NULL)
        return CMN_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        kafka_topic_run_t *r = &runs[i];
        if (r->have_partitions < 0 || r->created)
            continue;
        if (r->have_partitions > r->want_partitions) {
            kafka_run_mark(r, CMN_KAFKA_TOPIC_OK, "%d partitions, more than the %d wanted (kept)", r->have_partitions,
                           r->want_partitions);
            continue;
        }
        if (r->have_partitions == r->want_partitions)
            continue;
        if (!fix || !has_controller) {
            kafka_run_mark(r, CMN_KAFKA_TOPIC_MISMATCH, "has %d partitions, want %d%s", r->have_partitions,
                           r->want_partitions, fix ? " (cannot grow: the cluster has no controller)" : "");
            continue;
        }
        nps[nnew] = rd_kafka_NewPartitions_new(r->spec->name, (size_t)r->want_partitions, rderr, sizeof(rderr));
        if (nps[nnew] == NULL) {
            kafka_run_mark(r, CMN_KAFKA_TOPIC_FAILED, "cannot grow partitions: %s", rderr);
            continue;
        }
        nnew++;
    }
    if (nnew == 0)
        goto cleanup;
    aopts = kafka_admin_opts(rk, RD_KAFKA_ADMIN_OP_CREATEPARTITIONS);
    rd_kafka_CreatePartitions(rk, nps, nnew, aopts, q);
    ev = kafka_admin_wait(q, "create partitions", brokers, errstr, errlen, &rc);
    if (ev == NULL)
        goto cleanup;
    if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        kafka_set_err(errstr, errlen, "create partitions: %s", rd_kafka_event_error_string(ev));
        rc = CMN_ERR_KAFKA;
        goto cleanup;
    }
    size_t nres = 0;
    const rd_kafka_topic_result_t **trs =
        rd_kafka_CreatePartitions_result_topics(rd_kafka_event_CreatePartitions_result(ev), &nres);
    for (size_t i = 0; i < nres; i++) {
        const char *name = rd_kafka_topic_result_name(trs[i]);
        rd_kafka_resp_err_t terr = rd_kafka_topic_result_error(trs[i]);
        for (size_t j = 0; j < n; j++) {
            if (strcmp(runs[j].spec->name, name) != 0)
                continue;
            if (terr == RD_KAFKA_RESP_ERR_NO_ERROR) {
                kafka_run_mark(&runs[j], CMN_KAFKA_TOPIC_FIXED, "partitions grown from %d to %d",
                               runs[j].have_partitions, runs[j].want_partitions);
                runs[j].have_partitions = runs[j].want_partitions;
            } else {
                const char *terrstr = rd_kafka_topic_result_error_string(trs[i]);
                kafka_run_mark(&runs[j], CMN_KAFKA_TOPIC_FAILED, "cannot grow partitions: %s",
                               terrstr != NULL ? terrstr : rd_kafka_err2str(terr));
            }
        }
    }
cleanup:
    if (ev != NULL)
        rd_kafka_event_destroy(ev);
    if (aopts != NULL)
        rd_kafka_AdminOptions_destroy(aopts);
    for (size_t i = 0; i < nnew; i++)
        rd_kafka_NewPartitions_destroy(nps[i]);
    free(nps);
    return rc;
}

static kafka_topic_run_t *kafka_run_by_name(kafka_topic_run_t *runs, size_t n, const char *name)
{
    for (size_t i = 0; name != NULL && i < n; i++) {
        if (strcmp(runs[i].spec->name, name) == 0)
            return &runs[i];
    }
    return NULL;
}

/* Compares one described topic with its spec. With fix, returns a new
 * AlterConfigs resource holding the topic's own dynamic configs plus the
 * wanted ones (AlterConfigs replaces the whole set, so leaving out an
 * operator's setting would reset it); else NULL. */
static rd_kafka_ConfigResource_t *kafka_topic_compare(kafka_topic_run_t *r, const rd_kafka_ConfigResource_t *res,
                                                      int fix)
{
    size_t ne = 0;
    const rd_kafka_ConfigEntry_t **entries = rd_kafka_ConfigResource_configs(res, &ne);
    const cmn_kafka_topic_spec_t *sp = r->spec;
    rd_kafka_ConfigResource_t *alter = NULL;

    for (size_t c = 0; c < CMN_KAFKA_TOPIC_MAX_CONFIGS && sp->configs[c].name != NULL; c++) {
        const char *have = NULL;
        for (size_t e = 0; e < ne; e++) {
            if (strcmp(rd_kafka_ConfigEntry_name(entries[e]), sp->configs[c].name) == 0)
                have = rd_kafka_ConfigEntry_value(entries[e]);
        }
        if (have != NULL && strcmp(have, sp->configs[c].value) == 0)
            continue;
        r->configs_differ = 1;
        kafka_run_mark(r, fix ? r->state : CMN_KAFKA_TOPIC_MISMATCH, "%s is %s, want %s", sp->configs[c].name,
                       have != NULL ? have : "(unset)", sp->configs[c].value);
    }
    if (!fix || !r->configs_differ)
        return NULL;
    alter = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, sp->name);
    if (alter == NULL)
        return NULL;
    for (size_t e = 0; e < ne; e++) {
        const char *name = rd_kafka_ConfigEntry_name(entries[e]);
        const char *value = rd_kafka_ConfigEntry_value(entries[e]);
        if (rd_kafka_ConfigEntry_source(entries[e]) != RD_KAFKA_CONFIG_SOURCE_DYNAMIC_TOPIC_CONFIG || value == NULL ||
            cmn_kafka_topic_config_want(sp, name) != NULL)
            continue;
        rd_kafka_ConfigResource_set_config(alter, name, value);
    }
    for (size_t c = 0; c < CMN_KAFKA_TOPIC_MAX_CONFIGS && sp->configs[c].name != NULL; c++)
        rd_kafka_ConfigResource_set_config(alter, sp->configs[c].name, sp->configs[c].value);
    return alter;
}

/* Checks the configs of every topic that existed before this run (the
 * created ones got theirs in CreateTopics) and alters them under fix. */
static int kafka_topics_configs(rd_kafka_t *rk, rd_kafka_queue_t *q, const char *brokers, kafka_topic_run_t *runs,
                                size_t n, int fix, int has_controller, char *errstr, size_t errlen)
{
    rd_kafka_ConfigResource_t **desc = calloc(n, sizeof(*desc));
    rd_kafka_ConfigResource_t **alter = calloc(n, sizeof(*alter));
    rd_kafka_AdminOptions_t *aopts = NULL;
    rd_kafka_event_t *ev = NULL;
    size_t ndesc = 0, nalter = 0;
    int rc = 0;

    if (desc == NULL || alter == NULL) {
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++) {
        if (runs[i].have_partitions < 0 || runs[i].created)
            continue;
        desc[ndesc] = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, runs[i].spec->name);
        if (desc[ndesc] == NULL) {
            rc = CMN_ERR_NOMEM;
            goto cleanup;
        }
        ndesc++;
    }
    if (ndesc == 0)
        goto cleanup;
    if (!has_controller) {
        /* librdkafka's mock cluster: no controller and no DescribeConfigs.
         * The topics exist with the right partitions, and that is all it
         * can tell. */
        for (size_t i = 0; i < n; i++) {
            if (runs[i].have_partitions >= 0 && !runs[i].created)
                kafka_run_mark(&runs[i], CMN_KAFKA_TOPIC_UNCHECKED,
                               "configs not checked: the cluster has no controller to describe them");
        }
        goto cleanup;
    }
    aopts = kafka_admin_opts(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
    rd_kafka_DescribeConfigs(rk, desc, ndesc, aopts, q);
    ev = kafka_admin_wait(q, "describe configs", brokers, errstr, errlen, &rc);
    if (ev == NULL)
        goto cleanup;
    rd_kafka_resp_err_t err = rd_kafka_event_error(ev);
    if (err == RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE) {
        /* A cluster whose brokers do not serve DescribeConfigs. */
        for (size_t i = 0; i < n; i++) {
            if (runs[i].have_partitions >= 0 && !runs[i].created)
                kafka_run_mark(&runs[i], CMN_KAFKA_TOPIC_UNCHECKED,
                               "configs not checked: the cluster does not serve DescribeConfigs");
        }
        goto cleanup;
    }
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        kafka_set_err(errstr, errlen, "describe configs: %s", rd_kafka_event_error_string(ev));
        rc = CMN_ERR_KAFKA;
        goto cleanup;
    }
    size_t nres = 0;
    const rd_kafka_ConfigResource_t **res =
        rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(ev), &nres);
    for (size_t i = 0; i < nres; i++) {
        kafka_topic_run_t *r = kafka_run_by_name(runs, n, rd_kafka_ConfigResource_name(res[i]));
        if (r == NULL)
            continue;
        rd_kafka_resp_err_t rerr = rd_kafka_ConfigResource_error(res[i]);
        if (rerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
            const char *rerrstr = rd_kafka_ConfigResource_error_string(res[i]);
            kafka_run_mark(r, CMN_KAFKA_TOPIC_FAILED, "describe configs refused: %s",
                           rerrstr != NULL ? rerrstr : rd_kafka_err2str(rerr));
            continue;
        }
        rd_kafka_ConfigResource_t *a = kafka_topic_compare(r, res[i], fix);
        if (a != NULL)
            alter[nalter++] = a;
        else if (r->configs_differ && fix)
            kafka_run_mark(r, CMN_KAFKA_TOPIC_FAILED, "out of memory building the alteration");
    }
    if (nalter == 0)
        goto cleanup;
    rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(aopts);
    aopts = kafka_admin_opts(rk, RD_KAFKA_ADMIN_OP_ALTERCONFIGS);
    rd_kafka_AlterConfigs(rk, alter, nalter, aopts, q);
    ev = kafka_admin_wait(q, "alter configs", brokers, errstr, errlen, &rc);
    if (ev == NULL)
        goto cleanup;
    if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        kafka_set_err(errstr, errlen, "alter configs: %s", rd_kafka_event_error_string(ev));
        rc = CMN_ERR_KAFKA;
        goto cleanup;
    }
    res = rd_kafka_AlterConfigs_result_resources(rd_kafka_event_AlterConfigs_result(ev), &nres);
    for (size_t i = 0; i < nres; i++) {
        kafka_topic_run_t *r = kafka_run_by_name(runs, n, rd_kafka_ConfigResource_name(res[i]));
        if (r == NULL)
            continue;
        rd_kafka_resp_err_t rerr = rd_kafka_ConfigResource_error(res[i]);
        if (rerr == RD_KAFKA_RESP_ERR_NO_ERROR) {
            kafka_run_mark(r, CMN_KAFKA_TOPIC_FIXED, "configs altered");
        } else {
            const char *rerrstr = rd_kafka_ConfigResource_error_string(res[i]);
            kafka_run_mark(r, CMN_KAFKA_TOPIC_FAILED, "alter configs refused: %s",
                           rerrstr != NULL ? rerrstr : rd_kafka_err2str(rerr));
        }
    }
cleanup:
    if (ev != NULL)
        rd_kafka_event_destroy(ev);
    if (aopts != NULL)
        rd_kafka_AdminOptions_destroy(aopts);
    for (size_t i = 0; desc != NULL && i < ndesc; i++)
        rd_kafka_ConfigResource_destroy(desc[i]);
    for (size_t i = 0; alter != NULL && i < nalter; i++)
        rd_kafka_ConfigResource_destroy(alter[i]);
    free(desc);
    free(alter);
    return rc;
}

int cmn_kafka_ensure_topics(const char *brokers, const cmn_kafka_topics_opts_t *opts, char *errstr,
                            size_t errlen)
{
    size_t ntopics = 0;
    const cmn_kafka_topic_spec_t *specs = cmn_kafka_topics(&ntopics);
    rd_kafka_t *rk = NULL;
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_queue_t *q = NULL;
    kafka_topic_run_t *runs = NULL;
    size_t nmissing = 0;
    int nbrokers = 0, has_controller = 0;
    char rderr[512];
    int rc = 0;

    if (brokers == NULL || brokers[0] == '\0' || opts == NULL || opts->replication < 0 || opts->partitions < 0) {
        kafka_set_err(errstr, errlen, "topics: brokers and non-negative replication and partitions are required");
        return CMN_ERR_INVALID;
    }
    kafka_common_t kc = {opts->log, NULL};
    cmn_kafka_config_t cfg = {.brokers = brokers, .client_id = "crm-admin", .log = opts->log};
    conf = kafka_conf_new(&cfg, NULL, &kc, errstr, errlen);
    if (conf == NULL) {
        rc = CMN_ERR_CONFIG;
        goto cleanup;
    }
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, rderr, sizeof(rderr));
    if (rk == NULL) {
        kafka_set_err(errstr, errlen, "topics: %s", rderr);
        rc = CMN_ERR_KAFKA;
        goto cleanup;
    }
    conf = NULL;
    runs = calloc(ntopics, sizeof(*runs));
    q = rd_kafka_queue_new(rk);
    if (runs == NULL || q == NULL) {
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    for (size_t i = 0; i < ntopics; i++) {
        runs[i].spec = &specs[i];
        runs[i].want_partitions = opts->partitions > 0 ? opts->partitions : specs[i].partitions;
        runs[i].state = CMN_KAFKA_TOPIC_OK;
    }
    rc = kafka_topics_survey(rk, brokers, runs, ntopics, &nbrokers, &nmissing, &has_controller, errstr, errlen);
    if (rc != 0)
        goto cleanup;
    /* Three replicas survive one broker down with min.insync.replicas 2;
     * a smaller cluster cannot place more replicas than it has brokers. */
    int replication = opts->replication > 0 ? opts->replication : (nbrokers < 3 ? nbrokers : 3);
    if (replication < 1)
        replication = 1;
    if (nmissing > 0)
        rc = kafka_topics_create_missing(rk, q, brokers, runs, ntopics, replication, errstr, errlen);
    if (rc == 0)
        rc = kafka_topics_partitions(rk, q, brokers, runs, ntopics, opts->fix, has_controller, errstr, errlen);
    if (rc == 0)
        rc = kafka_topics_configs(rk, q, brokers, runs, ntopics, opts->fix, has_controller, errstr, errlen);
    if (rc != 0)
        goto cleanup;

    int failed = 0, mismatched = 0;
    for (size_t i = 0; i < ntopics; i++) {
        kafka_topic_run_t *r = &runs[i];
        const char *kv[] = {"topic", r->spec->name, "state", cmn_kafka_topic_state_name(r->state), NULL};
        kafka_log(opts->log,
                  r->state == CMN_KAFKA_TOPIC_FAILED || r->state == CMN_KAFKA_TOPIC_MISMATCH ? CMN_LOG_WARN
                                                                                             : CMN_LOG_INFO,
                  kv, r->detail[0] != '\0' ? r->detail : "as wanted");
        if (opts->report != NULL)
            opts->report(opts->ctx, r->spec->name, r->state, r->detail);
        if (r->state == CMN_KAFKA_TOPIC_FAILED && failed++ == 0)
            kafka_set_err(errstr, errlen, "topic %s: %s", r->spec->name, r->detail);
        if (r->state == CMN_KAFKA_TOPIC_MISMATCH && mismatched++ == 0 && failed == 0)
            kafka_set_err(errstr, errlen, "topic %s differs: %s", r->spec->name, r->detail);
    }
    rc = failed > 0 ? CMN_ERR_KAFKA : mismatched > 0 ? CMN_ERR_CONFIG : 0;

cleanup:
    if (q != NULL)
        rd_kafka_queue_destroy(q);
    free(runs);
    if (conf != NULL)
        rd_kafka_conf_destroy(conf);
    if (rk != NULL)
        rd_kafka_destroy(rk);
    return rc;
}

int cmn_kafka_create_topics(const char *brokers, int replication, const cmn_log_t *log, char *errstr,
                            size_t errlen)
{
    if (replication < 1) {
        kafka_set_err(errstr, errlen, "create topics: brokers and a replication factor >= 1 are required");
        return CMN_ERR_INVALID;
    }
    cmn_kafka_topics_opts_t o = {.replication = replication, .log = log};
    return cmn_kafka_ensure_topics(brokers, &o, errstr, errlen);
}
