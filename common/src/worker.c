/* worker.c - batch loop of a sending worker. See crm/worker.h.
 *
 * This file must not learn what channel it drives: everything specific goes
 * through cmn_worker_channel_t, so the email, SMS and WhatsApp workers share
 * one implementation of batching, rate limiting, concurrency, status events
 * and offset handling. */
#include "crm/worker.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "crm/delayq.h"
#include "crm/err.h"
#include "crm/http.h"
#include "crm/json.h"
#include "crm/kafka.h"
#include "crm/outcome.h"
#include "crm/ratelimit.h"
#include "crm/signal.h"
#include "crm/status.h"
#include "crm/time.h"

#define DEFAULT_POLL_TIMEOUT_MS 500
#define DEFAULT_ACK_TIMEOUT_MS 30000
/* How long curl_multi_poll may sleep when no socket is ready; it returns at
 * once when one is, so this only bounds the wait for transfer timeouts. */
#define MULTI_POLL_MS 200
/* Longest single sleep while every remaining job waits for a token; the
 * loop re-checks the buckets after it. */
#define THROTTLE_SLEEP_MAX_MS 1000
#define TRACEPARENT_LEN 55
/* Response headers kept per transfer: provider responses carry a few
 * hundred bytes; anything beyond this is not needed to classify. */
#define HEADERS_MAX (32 * 1024)
/* librdkafka's default max.poll.interval.ms; a rate-limited batch that can
 * take longer than this (minus a margin) gets a larger interval. */
#define KAFKA_MAX_POLL_INTERVAL_MS 300000
#define MAX_POLL_MARGIN_MS 60000
#define EXTRA_MAX 40

typedef struct job {
    const cmn_kafka_message_t *rec; /* borrowed from the consumer's batch */
    cmn_dispatch_t d;
    void *msg;                      /* the channel's, until release */
    CURL *easy;                     /* owned by msg */
    cmn_worker_result_t res;
    int ready;                      /* prepared and waiting for a transfer slot */
    int64_t not_before_ms;          /* monotonic; the sender's token is not due before this */
    int64_t started_ms;             /* monotonic, when the transfer started */
    cmn_buf_t body, headers;        /* captured response (capture_response channels) */
    int body_truncated;
    char traceparent[TRACEPARENT_LEN + 1];
} job_t;

/* One batch's Kafka output: the produces whose acknowledgements gate the
 * commit, and how many outputs could not even be queued (then the batch
 * must be redelivered rather than committed). */
typedef struct batch_out {
    cmn_kafka_batch_t kb;
    int lost;
} batch_out_t;

/* The partitions of the batch in hand, paused while it waits for tokens. */
typedef struct batch_parts {
    const cmn_kafka_message_t **first; /* one record per distinct partition */
    size_t n;
    int paused;
} batch_parts_t;

struct cmn_worker {
    cmn_worker_config_t cfg;
    cmn_worker_channel_t ch;
    char topic[64];
    char session_prop[64], heartbeat_prop[64], poll_interval_prop[64];
    const char *extra[EXTRA_MAX];   /* cfg.kafka_extra plus the consumer-only settings */
    cmn_kafka_producer_t *producer;
    cmn_kafka_consumer_t *consumer;
    CURLM *multi;
    cmn_ratelimit_t *limiter;       /* NULL when rate_per_sec is 0 */
    cmn_backoff_t retry;            /* the retry policy, defaults applied */
    cmn_receipt_policy_t receipt;   /* the receipt watches' policy, defaults applied */
    uint64_t rng;                   /* splitmix64 state for the backoff jitter; this thread only */
    cmn_counter_t *sent_total;
    cmn_counter_t *failed_total[3]; /* by cmn_worker_class_t; [CMN_WORKER_SENT] unused */
    cmn_counter_t *dlq_total;
    cmn_counter_t *retries_total;
    cmn_counter_t *fallback_total;
    cmn_counter_t *dead_total;
    cmn_counter_t *watches_total;
    cmn_counter_t *throttled_total;
    cmn_histogram_t *send_seconds;
};

/* ------------------------------------------------------------- results */

const char *cmn_worker_class_name(cmn_worker_class_t c)
{
    switch (c) {
    case CMN_WORKER_SENT:
        return "sent";
    case CMN_WORKER_RETRYABLE:
        return "retryable";
    case CMN_WORKER_PERMANENT:
        return "permanent";
    }
    return "unknown";
}

static void result_failv(cmn_worker_result_t *res, cmn_worker_class_t cls, const char *code, const char *fmt,
                         va_list ap)
{
    res->cls = cls;
    snprintf(res->error_code, sizeof res->error_code, "%s", code != NULL ? code : "");
    vsnprintf(res->error_message, sizeof res->error_message, fmt, ap);
}

void cmn_worker_result_fail(cmn_worker_result_t *res, cmn_worker_class_t cls, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    result_failv(res, cls, code, fmt, ap);
    va_end(ap);
}

void cmn_worker_result_retry(cmn_worker_result_t *res, const char *code, int64_t retry_after_ms, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    result_failv(res, CMN_WORKER_RETRYABLE, code, fmt, ap);
    va_end(ap);
    res->retry_after_ms = retry_after_ms > 0 ? retry_after_ms : 0;
}

void cmn_worker_result_permanent(cmn_worker_result_t *res, const char *code, const char *reason, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    result_failv(res, CMN_WORKER_PERMANENT, code, fmt, ap);
    va_end(ap);
    snprintf(res->reason, sizeof res->reason, "%s", reason != NULL ? reason : "");
}

void cmn_worker_result_sent(cmn_worker_result_t *res, const char *provider_message_id, const char *fmt, ...)
{
    res->cls = CMN_WORKER_SENT;
    if (provider_message_id != NULL)
        snprintf(res->provider_message_id, sizeof res->provider_message_id, "%s", provider_message_id);
    res->detail[0] = '\0';
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(res->detail, sizeof res->detail, fmt, ap);
        va_end(ap);
    }
}

/* ------------------------------------------------------------ responses */

const char *cmn_worker_response_header(const cmn_worker_response_t *r, const char *name, char *buf, size_t buflen)
{
    if (buf == NULL || buflen == 0)
        return NULL;
    buf[0] = '\0';
    if (r == NULL || r->headers == NULL || name == NULL)
        return NULL;
    size_t nlen = strlen(name);
    const char *p = r->headers;
    const char *end = r->headers + r->headers_len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = eol != NULL ? eol : end;
        if ((size_t)(line_end - p) > nlen && p[nlen] == ':' && strncasecmp(p, name, nlen) == 0) {
            const char *v = p + nlen + 1;
            const char *ve = line_end;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            size_t len = (size_t)(ve - v);
            if (len >= buflen)
                len = buflen - 1;
            memcpy(buf, v, len);
            buf[len] = '\0';
            return buf;
        }
        p = line_end + 1;
    }
    return NULL;
}

int64_t cmn_worker_parse_retry_after(const char *value, int64_t now_ms)
{
    if (value == NULL)
        return -1;
    while (*value == ' ' || *value == '\t')
        value++;
    if (isdigit((unsigned char)*value)) {
        /* delay-seconds; a day is far more than any provider asks for, and
         * capping keeps the multiplication away from overflow. */
        int64_t secs = 0;
        const char *p = value;
        for (; isdigit((unsigned char)*p); p++) {
            if (secs < 86400)
                secs = secs * 10 + (*p - '0');
        }
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p != '\0')
            return -1;
        return (secs > 86400 ? 86400 : secs) * 1000;
    }
    /* IMF-fixdate, e.g. "Wed, 21 Oct 2015 07:28:00 GMT", the only date
     * form senders may generate (RFC 9110 5.6.7). Parsed by hand so the
     * result cannot depend on the process locale. */
    static const char MONTHS[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    char wday[4], mon[4], zone[4];
    int day = 0, year = 0, hh = 0, mm = 0, ss = 0, used = 0;
    if (sscanf(value, "%3[A-Za-z], %2d %3[A-Za-z] %4d %2d:%2d:%2d %3[A-Z]%n", wday, &day, mon, &year, &hh, &mm, &ss,
               zone, &used) != 8 ||
        strcmp(zone, "GMT") != 0)
        return -1;
    const char *rest = value + used;
    while (*rest == ' ' || *rest == '\t')
        rest++;
    const char *m = strlen(mon) == 3 ? strstr(MONTHS, mon) : NULL;
    if (*rest != '\0' || m == NULL || (m - MONTHS) % 3 != 0 || day < 1 || day > 31 || hh < 0 || hh > 23 ||
        mm < 0 || mm > 59 || ss < 0 || ss > 60 || year < 1970)
        return -1;
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = year - 1900;
    tm.tm_mon = (int)((m - MONTHS) / 3);
    tm.tm_mday = day;
    tm.tm_hour = hh;
    tm.tm_min = mm;
    tm.tm_sec = ss;
    time_t at = timegm(&tm);
    if (at == (time_t)-1)
        return -1;
    int64_t ms = (int64_t)at * 1000 - now_ms;
    return ms > 0 ? ms : 0;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    job_t *j = userdata;
    size_t len = size * nmemb;
    size_t room = j->body.len < CMN_WORKER_BODY_MAX ? CMN_WORKER_BODY_MAX - j->body.len : 0;
    size_t take = len < room ? len : room;
    /* Always report the whole chunk as consumed: a short count would abort
     * a transfer the provider already acted on, and turn a sent message
     * into a failed one. What is not kept is flagged instead. */
    if (take < len || (take > 0 && cmn_buf_append(&j->body, ptr, take) != 0))
        j->body_truncated = 1;
    return len;
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *userdata)
{
    job_t *j = userdata;
    size_t len = size * nitems;
    /* A status line starts a new response (after 100 Continue or an
     * authentication round): only the last response's headers count. */
    if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0)
        cmn_buf_reset(&j->headers);
    if (j->headers.len + len <= HEADERS_MAX)
        (void)cmn_buf_append(&j->headers, buf, len); /* a missing header only weakens classification */
    return len;
}

/* ------------------------------------------------------------ lifecycle */

/* A seed that differs between replicas and restarts, so that workers that
 * failed together do not retry in step (the point of the jitter). */
static uint64_t seed_rng(const cmn_worker_t *w)
{
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed)
        seed = (uint64_t)cmn_now_ms() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)w;
    return seed;
}

/* splitmix64: small, fast and well distributed; the jitter needs nothing
 * stronger. */
static uint64_t next_random(cmn_worker_t *w)
{
    w->rng += UINT64_C(0x9e3779b97f4a7c15);
    uint64_t z = w->rng;
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static int register_metrics(cmn_worker_t *w, char *errstr, size_t errlen)
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
    w->failed_total[CMN_WORKER_RETRYABLE] = cmn_metrics_counter(w->cfg.metrics, name, help, "class=\"retryable\"");
    w->failed_total[CMN_WORKER_PERMANENT] = cmn_metrics_counter(w->cfg.metrics, name, help, "class=\"permanent\"");
    snprintf(name, sizeof name, "%s_dlq_total", ch);
    snprintf(help, sizeof help, "Records of crm.send.%s that went to crm.dlq.", ch);
    w->dlq_total = cmn_metrics_counter(w->cfg.metrics, name, help, NULL);
    snprintf(name, sizeof name, "%s_retries_total", ch);
    snprintf(help, sizeof help, "%s attempts that failed retryably and were scheduled again.", ch);
    w->retries_total = cmn_metrics_counter(w->cfg.metrics, name, help, NULL);
    snprintf(name, sizeof name, "%s_fallback_total", ch);
    snprintf(help, sizeof help, "%s dispatches handed to the next channel of their plan.", ch);
    w->fallback_total = cmn_metrics_counter(w->cfg.metrics, name, help, NULL);
    snprintf(name, sizeof name, "%s_dead_total", ch);
    snprintf(help, sizeof help, "%s messages given up after their last attempt (copied to crm.dlq).", ch);
    w->dead_total = cmn_metrics_counter(w->cfg.metrics, name, help, NULL);
    snprintf(name, sizeof name, "%s_receipt_watches_total", ch);
    snprintf(help, sizeof help, "Sent %s messages whose next channel waits on crm.defer.* for their receipt.", ch);
    w->watches_total = cmn_metrics_counter(w->cfg.metrics, name, help, NULL);
    snprintf(name, sizeof name, "%s_send_seconds", ch);
    snprintf(help, sizeof help, "Duration of one %s transfer, connection included.", ch);
    w->send_seconds = cmn_metrics_histogram(w->cfg.metrics, name, help, NULL, CMN_METRICS_LATENCY_BUCKETS,
                                            CMN_METRICS_LATENCY_BUCKETS_N);
    if (w->sent_total == NULL || w->failed_total[CMN_WORKER_RETRYABLE] == NULL ||
        w->failed_total[CMN_WORKER_PERMANENT] == NULL || w->dlq_total == NULL || w->retries_total == NULL ||
        w->fallback_total == NULL || w->dead_total == NULL || w->watches_total == NULL || w->send_seconds == NULL) {
        snprintf(errstr, errlen, "cannot register metrics");
        return CMN_ERR_NOMEM;
    }
    if (w->limiter == NULL)
        return 0;
    snprintf(name, sizeof name, "%s_rate_limited_total", ch);
    snprintf(help, sizeof help, "%s messages that waited for their sender's rate limit.", ch);
    w->throttled_total = cmn_metrics_counter(w->cfg.metrics, name, help, NULL);
    if (w->throttled_total == NULL) {
        snprintf(errstr, errlen, "cannot register metrics");
        return CMN_ERR_NOMEM;
    }
    return 0;
}

static int has_property(const char *const *props, const char *key)
{
    size_t klen = strlen(key);
    for (size_t i = 0; props != NULL && props[i] != NULL; i++) {
        if (strncmp(props[i], key, klen) == 0 && props[i][klen] == '=')
            return 1;
    }
    return 0;
}

/* The longest a batch can wait for tokens when every record has the same
 * sender: the burst goes at once, the rest at rate per second. */
static int64_t worst_throttle_ms(const cmn_worker_config_t *cfg)
{
    if (cfg->rate_per_sec <= 0.0)
        return 0;
    double queued = (double)cfg->batch_size - cfg->rate_burst;
    return queued > 0.0 ? (int64_t)(queued * 1000.0 / cfg->rate_per_sec) + 1 : 0;
}

/* Builds w->extra: the caller's properties plus the consumer-only ones. */
static int build_consumer_props(cmn_worker_t *w, char *errstr, size_t errlen)
{
    const cmn_worker_config_t *cfg = &w->cfg;
    size_t nextra = 0;
    for (size_t i = 0; cfg->kafka_extra != NULL && cfg->kafka_extra[i] != NULL; i++) {
        if (nextra + 4 >= EXTRA_MAX) {
            snprintf(errstr, errlen, "worker: too many Kafka properties");
            return CMN_ERR_CONFIG;
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
    /* The consumer is polled between batches only. A batch held back by a
     * slow sender (Twilio long codes send 1 msg/s) can outlast librdkafka's
     * default max.poll.interval.ms, after which the member would be thrown
     * out of the group and its batch processed twice; so the interval grows
     * with the slowest possible batch. */
    int64_t need = worst_throttle_ms(cfg) + cfg->ack_timeout_ms + MAX_POLL_MARGIN_MS;
    if (need > KAFKA_MAX_POLL_INTERVAL_MS && !has_property(cfg->kafka_extra, "max.poll.interval.ms")) {
        if (need > 86400000)
            need = 86400000; /* librdkafka's upper bound */
        snprintf(w->poll_interval_prop, sizeof w->poll_interval_prop, "max.poll.interval.ms=%lld", (long long)need);
        w->extra[nextra++] = w->poll_interval_prop;
    }
    w->extra[nextra] = NULL;
    return 0;
}

cmn_worker_t *cmn_worker_new(const cmn_worker_config_t *cfg, const cmn_worker_channel_t *ch, char *errstr,
                             size_t errlen)
{
    cmn_worker_t *w = NULL;
    if (cfg == NULL || ch == NULL || cfg->log == NULL || cfg->brokers == NULL || cfg->group_id == NULL ||
        cfg->batch_size < 1 || cfg->max_in_flight < 1 || ch->name == NULL || ch->prepare == NULL ||
        ch->submit == NULL || ch->classify == NULL || ch->release == NULL || cfg->rate_per_sec < 0.0 ||
        (cfg->rate_per_sec > 0.0 && cfg->rate_burst < 1.0)) {
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
    cmn_outcome_policy_default(&w->retry);
    if (cfg->retry_max_attempts > 0)
        w->retry.max_attempts = cfg->retry_max_attempts;
    if (cfg->retry_base_ms > 0)
        w->retry.base_ms = cfg->retry_base_ms;
    if (cfg->retry_cap_ms > 0)
        w->retry.cap_ms = cfg->retry_cap_ms;
    if (cfg->receipt_policy != NULL)
        w->receipt = *cfg->receipt_policy;
    else
        cmn_receipt_policy_default(&w->receipt);
    w->cfg.receipt_policy = NULL; /* the copy above is what counts */
    char why[128] = "";
    if (w->cfg.receipt_fallback) {
        cmn_receipt_guard_t probe;
        int64_t first = 0;
        /* cmn_receipt_watch() checks the policy; a fixed id and time
         * stand in for a real message. */
        if (cmn_receipt_watch(&w->receipt, "00000000-0000-4000-8000-000000000000", 0, CMN_URGENCY_NORMAL,
                              INT64_C(1700000000000), &probe, &first) != 0) {
            snprintf(errstr, errlen, "worker: receipt policy: deadlines must be >= 0, check interval and max wait > 0");
            goto fail;
        }
    }
    if (cmn_outcome_policy_check(&w->retry, why, sizeof why) != 0) {
        snprintf(errstr, errlen, "worker: retry policy: %s", why);
        goto fail;
    }
    w->rng = seed_rng(w);
    int n = snprintf(w->topic, sizeof w->topic, CMN_TOPIC_SEND_PREFIX "%s", ch->name);
    if (n < 0 || (size_t)n >= sizeof w->topic) {
        snprintf(errstr, errlen, "worker: channel name too long");
        goto fail;
    }
    if (cfg->rate_per_sec > 0.0) {
        w->limiter = cmn_ratelimit_new(cfg->rate_per_sec, cfg->rate_burst, errstr, errlen);
        if (w->limiter == NULL)
            goto fail;
    }
    if (register_metrics(w, errstr, errlen) != 0)
        goto fail;
    if (build_consumer_props(w, errstr, errlen) != 0)
        goto fail;

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
    kc.extra = w->extra; /* the session and poll settings are the consumer's only */
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
    cmn_worker_destroy(w);
    return NULL;
}

void cmn_worker_destroy(cmn_worker_t *w)
{
    if (w == NULL)
        return;
    /* The consumer leaves the group first so its partitions move on while
     * the producer still flushes. */
    cmn_kafka_consumer_destroy(w->consumer);
    cmn_kafka_producer_destroy(w->producer);
    if (w->multi != NULL)
        curl_multi_cleanup(w->multi);
    cmn_ratelimit_destroy(w->limiter);
    free(w);
}

int cmn_worker_is_ready(void *ctx)
{
    cmn_worker_t *w = ctx;
    return w != NULL && w->consumer != NULL && cmn_kafka_consumer_is_healthy(w->consumer);
}

/* --------------------------------------------------------------- output */

/* The channel's details_json of j as a new object, or NULL when it has
 * none. A channel's invalid details are dropped with a log line, so that a
 * bug there never costs the status event itself. */
static json_object *channel_details(cmn_worker_t *w, const job_t *j)
{
    const cmn_worker_result_t *r = &j->res;
    if (r->details_json[0] == '\0')
        return NULL;
    char why[128] = "";
    json_object *o = cmn_json_parse(r->details_json, strlen(r->details_json), why, sizeof why);
    if (o == NULL || !json_object_is_type(o, json_type_object)) {
        cmn_log_error(w->cfg.log, j->d.communication_id, "%s channel gave invalid status details (%s); dropped",
                      w->ch.name, o == NULL ? why : "not an object");
        json_object_put(o);
        return NULL;
    }
    return o;
}

static void add_str(json_object *o, const char *key, const char *value)
{
    json_object_object_add(o, key, json_object_new_string(value));
}

static void add_int(json_object *o, const char *key, int64_t value)
{
    json_object_object_add(o, key, json_object_new_int64(value));
}

/* Adds what the outcome o says about status to the details object det
 * (see crm/worker.h for the members). */
static void outcome_details(const job_t *j, cmn_status_t status, const cmn_outcome_t *o, json_object *det)
{
    if (status == CMN_STATUS_RETRY_SCHEDULED) {
        char due[40];
        cmn_time_format_rfc3339(o->due_at_ms, due, sizeof due);
        add_int(det, "next_attempt", o->next_attempt);
        add_str(det, "due_at", due);
        add_int(det, "delay_ms", o->delay_ms);
        add_str(det, "topic", o->hop.topic);
    } else if (status == CMN_STATUS_FALLBACK) {
        add_str(det, "from", cmn_channel_name(j->d.channel));
        add_str(det, "to", cmn_channel_name(o->next_channel));
        add_str(det, "why", cmn_outcome_why_name(o->why));
        if (o->n_skipped > 0) {
            json_object *skipped = json_object_new_array();
            for (size_t i = 0; skipped != NULL && i < o->n_skipped; i++)
                json_object_array_add(skipped, json_object_new_string(cmn_channel_name(o->skipped[i])));
            json_object_object_add(det, "skipped", skipped);
        }
    } else if (status == CMN_STATUS_DEAD) {
        add_int(det, "attempts", j->d.attempt);
    }
    /* The provider's hint stays on whichever event ends the attempt. */
    if (j->res.cls == CMN_WORKER_RETRYABLE && j->res.retry_after_ms > 0)
        add_int(det, "retry_after_ms", j->res.retry_after_ms);
}

/* The "details" text of j's status event, or NULL for none: the channel's
 * details_json plus what the outcome o (NULL for sending and sent) adds.
 * *owner (to json_object_put after use) holds the built object. */
static const char *status_details(cmn_worker_t *w, const job_t *j, cmn_status_t status, const cmn_outcome_t *o,
                                  json_object **owner)
{
    json_object *det = channel_details(w, j);
    int adds = o != NULL && (status == CMN_STATUS_RETRY_SCHEDULED || status == CMN_STATUS_FALLBACK ||
                             status == CMN_STATUS_DEAD);
    if (adds && det == NULL)
        det = json_object_new_object();
    if (adds && det != NULL)
        outcome_details(j, status, o, det);
    *owner = det;
    if (det == NULL)
        return NULL;
    return json_object_to_json_string_ext(det, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}

/* The reason token of j's status event, or NULL. */
static const char *status_reason(const job_t *j, cmn_status_t status, const cmn_outcome_t *o)
{
    const cmn_worker_result_t *r = &j->res;
    const char *token = r->reason[0] != '\0' ? r->reason : NULL;
    switch (status) {
    case CMN_STATUS_SENT:
        return r->detail[0] != '\0' ? r->detail : NULL;
    case CMN_STATUS_FAILED:
        return r->cls == CMN_WORKER_PERMANENT ? token : NULL;
    case CMN_STATUS_FALLBACK:
        if (r->cls == CMN_WORKER_PERMANENT && token != NULL)
            return token;
        return o != NULL ? cmn_outcome_why_name(o->why) : NULL;
    case CMN_STATUS_DEAD:
        return o != NULL ? cmn_outcome_why_name(o->why) : NULL;
    default:
        return NULL;
    }
}

/* Queues one status event for j on crm.status as part of the batch. o is
 * the planned outcome (NULL for sending and sent). */
static void emit_status(cmn_worker_t *w, batch_out_t *bo, const job_t *j, cmn_status_t status,
                        const cmn_outcome_t *o)
{
    const cmn_worker_result_t *r = &j->res;
    cmn_status_event_t ev;
    cmn_buf_t json = CMN_BUF_INIT;
    json_object *details = NULL;
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
    if (status != CMN_STATUS_SENDING && status != CMN_STATUS_SENT) {
        /* Every ending but success names the failed attempt's error. */
        ev.error_code = r->error_code[0] != '\0' ? r->error_code : NULL;
        ev.error_message = r->error_message[0] != '\0' ? r->error_message : NULL;
    }
    ev.reason = status_reason(j, status, o);
    ev.details_json = status_details(w, j, status, o, &details);
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
    json_object_put(details);
    cmn_buf_free(&json);
}

static void to_dlq(cmn_worker_t *w, batch_out_t *bo, const cmn_kafka_message_t *rec, const char *reason)
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

/* Produces next (a Dispatch derived from j's) to topic under j's key, with
 * j's traceparent, for a tier the tier headers of hop (NULL for none) and
 * an x-crm-guard header (NULL for none). Part of the batch: its acknowledgement gates the commit. */
static void produce_dispatch(cmn_worker_t *w, batch_out_t *bo, const job_t *j, const cmn_dispatch_t *next,
                             const char *topic, const cmn_delay_hop_t *hop, const char *guard)
{
    cmn_buf_t json = CMN_BUF_INIT;
    cmn_kafka_header_t h[4] = {{CMN_HDR_TRACEPARENT, j->traceparent, strlen(j->traceparent)}};
    size_t nh = 1;
    if (hop != NULL && !hop->direct) {
        h[nh++] = (cmn_kafka_header_t){CMN_DELAY_HDR_DUE_AT, hop->due_at, strlen(hop->due_at)};
        h[nh++] = (cmn_kafka_header_t){CMN_DELAY_HDR_TARGET, hop->target, strlen(hop->target)};
    }
    if (guard != NULL)
        h[nh++] = (cmn_kafka_header_t){CMN_HDR_GUARD, guard, strlen(guard)};
    /* The record's own key (the client id) keeps the client's messages on
     * one partition wherever they go; a record without one gets the
     * client id the router would have used. */
    const void *key = j->rec->key != NULL ? (const void *)j->rec->key : (const void *)next->client_id;
    size_t key_len = j->rec->key != NULL ? j->rec->key_len : strlen(next->client_id);
    int rc = cmn_dispatch_to_json(next, &json);
    if (rc == 0)
        rc = cmn_kafka_produce_in_batch(w->producer, &bo->kb, topic, key, key_len, json.data, json.len, h, nh);
    if (rc != 0) {
        bo->lost++;
        cmn_log_error(w->cfg.log, j->d.communication_id, "cannot queue the dispatch for %s: %s", topic,
                      cmn_strerror(rc));
    }
    cmn_buf_free(&json);
}

/* RETRY: the same Dispatch, attempt + 1, through the retry tier. */
static void apply_retry(cmn_worker_t *w, batch_out_t *bo, const job_t *j, const cmn_outcome_t *o)
{
    /* A shallow copy: it borrows every pointer of j->d and is never
     * cleared. */
    cmn_dispatch_t next = j->d;
    next.attempt = o->next_attempt;
    produce_dispatch(w, bo, j, &next, o->hop.topic, &o->hop, NULL);
    if (w->retries_total != NULL)
        cmn_counter_add(w->retries_total, 1);
    char delay[32], attempt[16];
    snprintf(delay, sizeof delay, "%lld", (long long)o->delay_ms);
    snprintf(attempt, sizeof attempt, "%d", o->next_attempt);
    const char *kv[] = {"error_code", j->res.error_code, "next_attempt", attempt, "delay_ms", delay,
                        "topic", o->hop.topic, NULL};
    cmn_logkv(w->cfg.log, CMN_LOG_INFO, j->d.communication_id, kv, "%s attempt %d failed; retry scheduled",
              w->ch.name, j->d.attempt);
    emit_status(w, bo, j, CMN_STATUS_RETRY_SCHEDULED, o);
}

/* FALLBACK: a new Dispatch for the next channel of the plan. */
static void apply_fallback(cmn_worker_t *w, batch_out_t *bo, const job_t *j, const cmn_outcome_t *o)
{
    char topic[64];
    char *to = strdup(o->next_to);
    if (to == NULL) {
        bo->lost++; /* the batch comes back and the fallback is planned again */
        return;
    }
    cmn_dispatch_t next = j->d; /* shallow, like apply_retry's */
    next.channel = o->next_channel;
    next.hop = o->next_hop;
    next.attempt = 1;
    next.to = to;
    memcpy(next.fallback, o->plan, sizeof next.fallback);
    next.n_fallback = o->n_plan;
    snprintf(topic, sizeof topic, CMN_TOPIC_SEND_PREFIX "%s", cmn_channel_name(o->next_channel));
    produce_dispatch(w, bo, j, &next, topic, NULL, NULL);
    free(to);
    if (w->fallback_total != NULL)
        cmn_counter_add(w->fallback_total, 1);
    const char *kv[] = {"error_code", j->res.error_code, "why", cmn_outcome_why_name(o->why), "to",
                        cmn_channel_name(o->next_channel), NULL};
    cmn_logkv(w->cfg.log, CMN_LOG_WARN, j->d.communication_id, kv, "%s gave up; falling back to %s", w->ch.name,
              cmn_channel_name(o->next_channel));
    emit_status(w, bo, j, CMN_STATUS_FALLBACK, o);
}

/* SENT on a channel with receipts: park the next hop's Dispatch on the
 * defer tiers as a receipt watch (crm/receipt.h), in the same batch as the
 * `sent` event, so both or neither survive a crash. Nothing when receipt
 * fallback is off, the channel gives no receipts (email) or the plan has no
 * channel left with an address. */
static void watch_receipt(cmn_worker_t *w, batch_out_t *bo, const job_t *j, int64_t sent_at_ms)
{
    cmn_channel_t next_ch = CMN_CHANNEL_NONE;
    const char *to = NULL;
    cmn_channel_t rest[CMN_CHANNEL__COUNT];
    size_t n_rest = 0;
    cmn_receipt_guard_t g;
    int64_t first_check = 0;
    char guard[CMN_RECEIPT_GUARD_MAX];
    cmn_delay_hop_t hop;

    if (!w->cfg.receipt_fallback || !cmn_receipt_channel_has_receipts(w->ch.channel))
        return;
    if (!cmn_outcome_next_channel(&j->d, &next_ch, &to, rest, &n_rest, NULL, NULL))
        return;
    int rc = cmn_receipt_watch(&w->receipt, j->d.communication_id, j->d.hop, j->d.urgency, sent_at_ms, &g,
                               &first_check);
    if (rc == 0)
        rc = cmn_receipt_guard_format(&g, guard, sizeof guard);
    if (rc == 0)
        rc = cmn_delay_plan_watch(cmn_now_ms(), first_check, next_ch, &hop);
    if (rc != 0) {
        /* Only a hop beyond the guard's range gets here; the message is
         * sent, it just has no receipt-driven fallback. */
        cmn_log_error(w->cfg.log, j->d.communication_id, "no receipt watch: %s", cmn_strerror(rc));
        return;
    }
    char *to_copy = strdup(to);
    if (to_copy == NULL) {
        bo->lost++; /* the batch comes back and the watch is planned again */
        return;
    }
    cmn_dispatch_t next = j->d; /* shallow, like apply_retry's */
    next.channel = next_ch;
    next.hop = j->d.hop + 1;
    next.attempt = 1;
    next.to = to_copy;
    memcpy(next.fallback, rest, sizeof next.fallback);
    next.n_fallback = n_rest;
    produce_dispatch(w, bo, j, &next, hop.topic, &hop, guard);
    free(to_copy);
    if (w->watches_total != NULL)
        cmn_counter_add(w->watches_total, 1);
    const char *kv[] = {"next", cmn_channel_name(next_ch), "topic", hop.topic, "due_at", hop.due_at, NULL};
    cmn_logkv(w->cfg.log, CMN_LOG_DEBUG, j->d.communication_id, kv, "%s sent; watching for its receipt",
              w->ch.name);
}

/* DEAD: `dead`, and the Dispatch as consumed copied to crm.dlq. */
static void apply_dead(cmn_worker_t *w, batch_out_t *bo, const job_t *j, const cmn_outcome_t *o)
{
    /* Counted apart from <channel>_dlq_total, which stays the count of
     * records nobody could read: that one points at a producer's bug, this
     * one at a provider or an address. */
    if (w->dead_total != NULL)
        cmn_counter_add(w->dead_total, 1);
    if (cmn_kafka_dlq_in_batch(w->producer, &bo->kb, j->rec, w->cfg.service, o->reason) != 0)
        bo->lost++;
    /* The reason line may quote the provider's text, which can hold an
     * address; the log gets the code and the cause only. */
    char attempts[16];
    snprintf(attempts, sizeof attempts, "%d", j->d.attempt);
    const char *kv[] = {"error_code", j->res.error_code, "why", cmn_outcome_why_name(o->why), "attempts", attempts,
                        NULL};
    cmn_logkv(w->cfg.log, CMN_LOG_WARN, j->d.communication_id, kv, "%s dead; copied to " CMN_TOPIC_DLQ,
              w->ch.name);
    emit_status(w, bo, j, CMN_STATUS_DEAD, o);
}

/* Records the outcome of j: metrics, the planned action (crm/outcome.h)
 * with its status event and produces, a log line without personal data,
 * and the release of the channel message. */
static void finish_job(cmn_worker_t *w, batch_out_t *bo, job_t *j)
{
    const cmn_worker_result_t *r = &j->res;
    cmn_outcome_t o;
    if (j->started_ms > 0 && w->send_seconds != NULL)
        cmn_histogram_observe(w->send_seconds, (double)(cmn_monotonic_ms() - j->started_ms) / 1000.0);
    if (r->cls != CMN_WORKER_SENT && w->failed_total[r->cls] != NULL)
        cmn_counter_add(w->failed_total[r->cls], 1);
    int rc = cmn_outcome_plan(&j->d, r, &w->retry, cmn_now_ms(), next_random(w), &o);
    if (rc != 0) {
        /* Cannot happen for a dispatch that passed intake; if it does, the
         * message is kept on crm.dlq rather than dropped. */
        memset(&o, 0, sizeof o);
        o.action = r->cls == CMN_WORKER_SENT ? CMN_OUTCOME_SENT : CMN_OUTCOME_DEAD;
        snprintf(o.reason, sizeof o.reason, "cannot plan the outcome of attempt %d: %s", j->d.attempt,
                 cmn_strerror(rc));
        cmn_log_error(w->cfg.log, j->d.communication_id, "%s", o.reason);
    }
    switch (o.action) {
    case CMN_OUTCOME_SENT:
        if (w->sent_total != NULL)
            cmn_counter_add(w->sent_total, 1);
        cmn_log_info(w->cfg.log, j->d.communication_id, "%s sent", w->ch.name);
        emit_status(w, bo, j, CMN_STATUS_SENT, NULL);
        watch_receipt(w, bo, j, cmn_now_ms());
        break;
    case CMN_OUTCOME_RETRY:
        apply_retry(w, bo, j, &o);
        break;
    case CMN_OUTCOME_FALLBACK:
        apply_fallback(w, bo, j, &o);
        break;
    case CMN_OUTCOME_DEAD:
        apply_dead(w, bo, j, &o);
        break;
    case CMN_OUTCOME_FAILED: {
        /* The reason token only when there is one, so that channels
         * without tokens (email) log exactly what they always did. */
        const char *kv[] = {"class", cmn_worker_class_name(r->cls), "error_code", r->error_code,
                            r->reason[0] != '\0' ? "reason" : NULL, r->reason, NULL};
        cmn_logkv(w->cfg.log, CMN_LOG_WARN, j->d.communication_id, kv, "%s failed", w->ch.name);
        emit_status(w, bo, j, CMN_STATUS_FAILED, &o);
        break;
    }
    }
    if (j->msg != NULL)
        w->ch.release(w->ch.impl, j->msg);
    j->msg = NULL;
    j->easy = NULL;
    j->ready = 0;
    cmn_buf_free(&j->body);
    cmn_buf_free(&j->headers);
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
static void intake(cmn_worker_t *w, batch_out_t *bo, job_t *j)
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
        if (j->res.cls == CMN_WORKER_SENT) /* a channel that forgot to classify its failure */
            cmn_worker_result_fail(&j->res, CMN_WORKER_RETRYABLE, "prepare_failed", "%s", cmn_strerror(rc));
        finish_job(w, bo, j);
        return;
    }
    j->ready = 1;
    emit_status(w, bo, j, CMN_STATUS_SENDING, NULL);
}

/* Takes a token for j's sender. Returns 0 when j may start now, else the
 * wait in ms (and remembers it in j so the next scans skip j cheaply). */
static int64_t take_token(cmn_worker_t *w, job_t *j, int64_t now)
{
    if (w->limiter == NULL)
        return 0;
    if (j->not_before_ms > now)
        return j->not_before_ms - now;
    const char *key = w->ch.sender != NULL ? w->ch.sender(w->ch.impl, j->msg) : NULL;
    int64_t wait = cmn_ratelimit_take(w->limiter, key, now);
    if (wait < 0) {
        /* Only an allocation failure gets here; holding the message back
         * could stall the batch forever, and the provider's own limit
         * (429, retried through the tiers) is the backstop. */
        cmn_log_warn(w->cfg.log, j->d.communication_id, "rate limiter: %s; sending unthrottled",
                     cmn_strerror((int)wait));
        return 0;
    }
    if (wait > 0) {
        if (j->not_before_ms == 0 && w->throttled_total != NULL)
            cmn_counter_add(w->throttled_total, 1);
        j->not_before_ms = now + wait;
    }
    return wait;
}

/* Starts job j's transfer; on failure finishes it as retryable. */
static int start_transfer(cmn_worker_t *w, batch_out_t *bo, job_t *j)
{
    int rc = w->ch.submit(w->ch.impl, j->msg, &j->easy);
    if (rc == 0 && j->easy != NULL) {
        curl_easy_setopt(j->easy, CURLOPT_PRIVATE, (void *)j);
        if (w->ch.capture_response) {
            curl_easy_setopt(j->easy, CURLOPT_WRITEFUNCTION, on_body);
            curl_easy_setopt(j->easy, CURLOPT_WRITEDATA, (void *)j);
            curl_easy_setopt(j->easy, CURLOPT_HEADERFUNCTION, on_header);
            curl_easy_setopt(j->easy, CURLOPT_HEADERDATA, (void *)j);
        }
        if (curl_multi_add_handle(w->multi, j->easy) == CURLM_OK) {
            j->ready = 0;
            j->started_ms = cmn_monotonic_ms();
            return 1;
        }
    }
    cmn_worker_result_fail(&j->res, CMN_WORKER_RETRYABLE, "submit_failed", "the transfer could not be started");
    finish_job(w, bo, j);
    return 0;
}

/* Hands the finished transfer of j to the channel's classifier. */
static void classify_job(cmn_worker_t *w, job_t *j, CURL *easy, CURLcode code)
{
    char value[128];
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    cmn_worker_response_t resp = {
        .code = code,
        .status = status,
        .body = j->body.data != NULL ? j->body.data : "",
        .body_len = j->body.len,
        .body_truncated = j->body_truncated,
        .headers = j->headers.data != NULL ? j->headers.data : "",
        .headers_len = j->headers.len,
        .retry_after_ms = -1,
    };
    if (cmn_worker_response_header(&resp, "Retry-After", value, sizeof value) != NULL)
        resp.retry_after_ms = cmn_worker_parse_retry_after(value, cmn_now_ms());
    w->ch.classify(w->ch.impl, j->msg, &resp, &j->res);
    /* Retry-After is the provider telling us when to come back; a channel
     * that classified the failure as retryable but left the hint out still
     * passes it on. */
    if (j->res.cls == CMN_WORKER_RETRYABLE && j->res.retry_after_ms == 0 && resp.retry_after_ms > 0)
        j->res.retry_after_ms = resp.retry_after_ms;
}

/* Pauses every partition of the batch: while the batch waits for tokens,
 * librdkafka must not keep prefetching records that would only pile up in
 * memory behind it. */
static void pause_batch(cmn_worker_t *w, batch_parts_t *bp)
{
    if (bp->paused)
        return;
    bp->paused = 1;
    for (size_t i = 0; i < bp->n; i++)
        (void)cmn_kafka_consumer_pause(w->consumer, bp->first[i]->topic, bp->first[i]->partition);
    cmn_log_debug(w->cfg.log, NULL, "rate limited: %zu partitions paused until the batch is done", bp->n);
}

static void resume_batch(cmn_worker_t *w, batch_parts_t *bp)
{
    if (!bp->paused)
        return;
    /* A partition revoked meanwhile fails to resume with a logged warning;
     * its new owner starts it unpaused, so nothing is lost. */
    for (size_t i = 0; i < bp->n; i++)
        (void)cmn_kafka_consumer_resume(w->consumer, bp->first[i]->topic, bp->first[i]->partition);
    bp->paused = 0;
}

/* Runs every READY job's transfer, at most max_in_flight at once and each
 * only when its sender has a token, and finishes each as it completes.
 * Jobs of a throttled sender wait in order while other senders go ahead.
 * Returns when none is left. */
static void run_transfers(cmn_worker_t *w, batch_out_t *bo, job_t *jobs, size_t n, batch_parts_t *bp)
{
    size_t first = 0; /* every job before this one is started or finished */
    int active = 0;
    for (;;) {
        int64_t now = cmn_monotonic_ms();
        int64_t wait_ms = -1; /* the nearest token among throttled jobs */
        for (size_t i = first; i < n && active < w->cfg.max_in_flight; i++) {
            job_t *j = &jobs[i];
            if (!j->ready) {
                if (i == first)
                    first++;
                continue;
            }
            int64_t wait = take_token(w, j, now);
            if (wait > 0) {
                if (wait_ms < 0 || wait < wait_ms)
                    wait_ms = wait;
                continue;
            }
            active += start_transfer(w, bo, j);
            if (i == first)
                first++;
        }
        if (wait_ms > 0)
            pause_batch(w, bp);
        if (active == 0) {
            /* With nothing in flight the scan saw every job: none is ready
             * unless it waits for a token. */
            if (wait_ms < 0)
                break;
            /* Every remaining job waits for a token: sleep until the
             * nearest one is due. */
            curl_multi_poll(w->multi, NULL, 0, (int)(wait_ms < THROTTLE_SLEEP_MAX_MS ? wait_ms : THROTTLE_SLEEP_MAX_MS),
                            NULL);
            continue;
        }
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
            job_t *j = priv;
            curl_multi_remove_handle(w->multi, easy);
            classify_job(w, j, easy, code);
            finish_job(w, bo, j);
            active--;
        }
        if (active > 0 && running > 0) {
            int timeout = wait_ms > 0 && wait_ms < MULTI_POLL_MS ? (int)wait_ms : MULTI_POLL_MS;
            curl_multi_poll(w->multi, NULL, 0, timeout, NULL);
        }
    }
}

/* Collects one record per distinct partition of the batch. */
static int collect_parts(const cmn_kafka_message_t *recs, size_t n, batch_parts_t *bp)
{
    bp->first = calloc(n, sizeof *bp->first);
    if (bp->first == NULL)
        return CMN_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        size_t k = 0;
        while (k < bp->n && !(bp->first[k]->partition == recs[i].partition &&
                              strcmp(bp->first[k]->topic, recs[i].topic) == 0))
            k++;
        if (k == bp->n)
            bp->first[bp->n++] = &recs[i];
    }
    return 0;
}

static void process_batch(cmn_worker_t *w, cmn_kafka_message_t *recs, size_t n)
{
    batch_out_t bo = {.lost = 0};
    batch_parts_t bp = {.first = NULL, .n = 0, .paused = 0};
    char why[256] = "";
    job_t *jobs = calloc(n, sizeof *jobs);
    int kb_ready = cmn_kafka_batch_init(&bo.kb) == 0;
    if (jobs == NULL || !kb_ready || collect_parts(recs, n, &bp) != 0) {
        /* Nothing was done for these records; let them come again. */
        cmn_log_error(w->cfg.log, NULL, "out of memory for a batch of %zu; rewinding", n);
        cmn_kafka_consumer_rewind_batch(w->consumer);
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++) {
        jobs[i].rec = &recs[i];
        intake(w, &bo, &jobs[i]);
    }
    run_transfers(w, &bo, jobs, n, &bp);

    int rc = cmn_kafka_batch_wait(&bo.kb, w->cfg.ack_timeout_ms, why, sizeof why);
    if (rc == 0 && bo.lost == 0) {
        rc = cmn_kafka_consumer_commit_batch(w->consumer);
        if (rc != 0)
            cmn_log_error(w->cfg.log, NULL, "commit failed (%s); the batch may be delivered again",
                          cmn_strerror(rc));
    } else {
        /* The outcomes are not durable, so the offsets must not move: the
         * records come back and are attempted again (at-least-once; the
         * channel's message ids stay the same, so receivers can drop the
         * copy). */
        if (rc != 0)
            cmn_log_error(w->cfg.log, NULL, "batch output not acknowledged (%s); rewinding", why);
        else
            cmn_log_error(w->cfg.log, NULL, "%d outputs of the batch could not be queued; rewinding", bo.lost);
        cmn_kafka_consumer_rewind_batch(w->consumer);
    }
cleanup:
    /* After the commit or rewind, so fetching restarts from the right place. */
    resume_batch(w, &bp);
    free(bp.first);
    if (kb_ready)
        cmn_kafka_batch_destroy(&bo.kb);
    for (size_t i = 0; jobs != NULL && i < n; i++) {
        if (jobs[i].msg != NULL)
            w->ch.release(w->ch.impl, jobs[i].msg);
        cmn_dispatch_clear(&jobs[i].d);
        cmn_buf_free(&jobs[i].body);
        cmn_buf_free(&jobs[i].headers);
    }
    free(jobs);
}

int cmn_worker_run(cmn_worker_t *w)
{
    if (w == NULL)
        return CMN_ERR_INVALID;
    if (w->limiter != NULL)
        cmn_log_info(w->cfg.log, NULL, "consuming %s (batch %d, %d in flight, %.3g msg/s per sender, burst %.3g)",
                     w->topic, w->cfg.batch_size, w->cfg.max_in_flight, w->cfg.rate_per_sec, w->cfg.rate_burst);
    else
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

/* What /readyz looks at while cmn_worker_serve runs: both consumers. */
typedef struct serve_ready {
    cmn_worker_t *w;
    cmn_delayq_t *retry;
} serve_ready_t;

static int serve_is_ready(void *ctx)
{
    const serve_ready_t *sr = ctx;
    return cmn_worker_is_ready(sr->w) && cmn_delayq_is_ready(sr->retry);
}

/* The consumer of crm.retry.<channel>.*: it hands each retry back to
 * crm.send.<channel> when due. It runs inside every worker replica, in a
 * group of its own, so retries need no extra deployment and scale with the
 * workers. */
static cmn_delayq_t *retry_queue_new(const cmn_worker_config_t *cfg, const cmn_worker_channel_t *ch, char *group,
                                     size_t grouplen, char *errstr, size_t errlen)
{
    int n = snprintf(group, grouplen, "%s-retry", cfg->group_id);
    if (n < 0 || (size_t)n >= grouplen) {
        snprintf(errstr, errlen, "worker: group id too long");
        return NULL;
    }
    cmn_delayq_config_t qc = {
        .service = cfg->service,
        .brokers = cfg->brokers,
        .group_id = group,
        .kafka_extra = cfg->kafka_extra,
        .kind = CMN_DELAY_RETRY,
        .channel = ch->channel,
        .ack_timeout_ms = cfg->ack_timeout_ms,
        .session_timeout_ms = cfg->session_timeout_ms,
        .log = cfg->log,
        .metrics = cfg->metrics,
    };
    return cmn_delayq_new(&qc, errstr, errlen);
}

int cmn_worker_serve(const cmn_worker_config_t *cfg, const cmn_worker_channel_t *ch, const char *http_bind,
                     int http_port, const char *started_msg)
{
    char errstr[1024] = "";
    char group[256];
    cmn_http_server_t *http = NULL;
    cmn_delayq_t *retry = NULL;
    int rc = 0;

    cmn_worker_t *w = cmn_worker_new(cfg, ch, errstr, sizeof errstr);
    if (w == NULL) {
        cmn_log_error(cfg->log, NULL, "cannot start the worker: %s", errstr);
        return CMN_ERR_UNAVAILABLE;
    }
    retry = retry_queue_new(cfg, ch, group, sizeof group, errstr, sizeof errstr);
    if (retry == NULL) {
        cmn_log_error(cfg->log, NULL, "cannot create the retry consumer: %s", errstr);
        rc = CMN_ERR_UNAVAILABLE;
        goto out;
    }
    rc = cmn_delayq_start(retry);
    if (rc != 0) {
        cmn_log_error(cfg->log, NULL, "cannot start the retry consumer: %s", cmn_strerror(rc));
        goto out;
    }
    serve_ready_t ready = {.w = w, .retry = retry};
    cmn_http_config_t hc = {
        .bind_address = http_bind,
        .port = http_port,
        /* Two, so a /readyz that waits on a Kafka metadata request (up to
         * 2 s) never holds up a /metrics scrape. */
        .threads = 2,
        .max_body_bytes = 4096,
        .max_header_bytes = 8192,
        .timeout_seconds = 10,
        .ready = serve_is_ready,
        .ctx = &ready,
        .metrics = cfg->metrics,
        .log = cfg->log,
    };
    http = cmn_http_server_new(&hc, errstr, sizeof errstr);
    if (http == NULL) {
        cmn_log_error(cfg->log, NULL, "cannot start the HTTP server: %s", errstr);
        rc = CMN_ERR_HTTP;
        goto out;
    }
    cmn_log_info(cfg->log, NULL, "%s%shttp port %d, retries through " CMN_TOPIC_RETRY_PREFIX "%s.* (group %s)",
                 started_msg ? started_msg : "started", started_msg ? ", " : ": ", cmn_http_server_port(http),
                 ch->name, group);
    rc = cmn_worker_run(w);
out:
    /* The HTTP server first (its /readyz reads both), then the retry
     * consumer (it finishes the record in hand), then the worker. */
    cmn_http_server_destroy(http);
    cmn_delayq_destroy(retry);
    cmn_worker_destroy(w);
    return rc;
}
