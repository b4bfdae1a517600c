/* Integration tests of the delay-tier consumer (crm/delayq.h) against
 * librdkafka's mock cluster (th_kafka.h): real Kafka protocol, real
 * consumer groups, pauses, seeks and commits.
 *
 * Records are put on the tiers and read back with plain librdkafka (the
 * helpers below), not with the cmn_kafka_* wrappers the queue itself uses,
 * so the queue is never checked against itself. Each test starts its own
 * cluster. Nothing asserts speed: deadlines are generous and only bound how
 * long a test waits for something that must happen; what is asserted is
 * order, counts, contents and "not before due". */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "crm/buf.h"
#include "crm/delay.h"
#include "crm/delayq.h"
#include "crm/err.h"
#include "crm/kafka.h"
#include "crm/log.h"
#include "crm/metrics.h"
#include "crm/time.h"
#include "th_kafka.h"

/* Kafka protocol ApiKey of Produce requests (not exported by librdkafka). */
#define APIKEY_PRODUCE 0
#define MAX_HDRS 16

/* Group rebalances and failure detection in seconds instead of librdkafka's
 * production defaults. */
static const char *const fast_metadata[] = {"topic.metadata.refresh.interval.ms=1000", NULL};

typedef struct fixture {
    th_kafka_t *k;
    const char *brokers;
    cmn_log_t log;
    cmn_metrics_t *metrics;
} fixture_t;

static void fixture_start(fixture_t *f)
{
    memset(f, 0, sizeof(*f));
    f->k = th_kafka_start(1);
    cr_assert_not_null(f->k, "mock cluster did not start");
    f->brokers = th_kafka_bootstraps(f->k);
    const char *level = getenv("TEST_KAFKA_LOG_LEVEL");
    cmn_log_init(&f->log, "test-delayq", level != NULL ? level : "warn");
    f->metrics = cmn_metrics_new();
    cr_assert_not_null(f->metrics);
}

static void fixture_stop(fixture_t *f)
{
    th_kafka_stop(f->k);
    cmn_metrics_destroy(f->metrics);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------ plain librdkafka */

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    rd_kafka_resp_err_t *out = m->_private;
    *out = m->err;
    (void)rk;
    (void)opaque;
}

static rd_kafka_t *put_producer(const char *brokers)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    cr_assert_eq(rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof errstr), RD_KAFKA_CONF_OK);
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    cr_assert_not_null(rk, "%s", errstr);
    return rk;
}

/* Queues one record to an explicit partition, with headers (NULL-
 * terminated name/value pairs) and a CreateTime timestamp (0: now); its
 * delivery result lands in *delivered. */
static void put_queue(rd_kafka_t *rk, const char *topic, int32_t partition, const char *key, const char *value,
                      const char *const *headers, int64_t timestamp_ms, rd_kafka_resp_err_t *delivered)
{
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(8);
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i += 2)
        rd_kafka_header_add(hdrs, headers[i], -1, headers[i + 1], -1);
    *delivered = RD_KAFKA_RESP_ERR__IN_PROGRESS;
    rd_kafka_resp_err_t err = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition), RD_KAFKA_V_KEY(key, strlen(key)),
        RD_KAFKA_V_VALUE((void *)value, strlen(value)), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_TIMESTAMP(timestamp_ms), RD_KAFKA_V_OPAQUE(delivered), RD_KAFKA_V_END);
    cr_assert_eq(err, RD_KAFKA_RESP_ERR_NO_ERROR, "%s", rd_kafka_err2str(err));
}

/* Produces one record (see put_queue) and waits for its acknowledgement. */
static void put(const char *brokers, const char *topic, int32_t partition, const char *key, const char *value,
                const char *const *headers, int64_t timestamp_ms)
{
    rd_kafka_resp_err_t delivered;
    rd_kafka_t *rk = put_producer(brokers);
    put_queue(rk, topic, partition, key, value, headers, timestamp_ms, &delivered);
    rd_kafka_flush(rk, 15000);
    cr_assert_eq(delivered, RD_KAFKA_RESP_ERR_NO_ERROR, "put to %s: %s", topic, rd_kafka_err2str(delivered));
    rd_kafka_destroy(rk);
}

/* Puts a tier record for target due at due_ms, with a traceparent and a
 * custom header that must travel with it. */
static void put_due(const char *brokers, const char *topic, int32_t partition, const char *target, const char *value,
                    int64_t due_ms, int64_t timestamp_ms)
{
    char due[24];
    snprintf(due, sizeof due, "%" PRId64, due_ms);
    const char *h[] = {"traceparent", "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01", CMN_DELAY_HDR_DUE_AT,
                       due, CMN_DELAY_HDR_TARGET, target, "x-test", value, NULL};
    put(brokers, topic, partition, value, value, h, timestamp_ms);
}

typedef struct rec {
    char *key, *value;
    int64_t ts;
    rd_kafka_timestamp_type_t tstype;
    int32_t partition;
    int64_t offset;
    size_t nh;
    char *hname[MAX_HDRS], *hval[MAX_HDRS];
} rec_t;

static char *dupn(const void *p, size_t n)
{
    if (p == NULL)
        return NULL;
    char *s = malloc(n + 1);
    cr_assert_not_null(s);
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

/* Reads topic from the beginning (every partition, no group) until expect
 * records came or timeout_ms passed. */
static rec_t *take(const char *brokers, const char *topic, size_t expect, int timeout_ms, size_t *n)
{
    char errstr[512], group[64];
    rec_t *out = calloc(expect + 1, sizeof(*out));
    cr_assert_not_null(out);
    *n = 0;
    snprintf(group, sizeof group, "test-reader-%d-%" PRId64, (int)getpid(), cmn_monotonic_ms());
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    cr_assert_eq(rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof errstr), RD_KAFKA_CONF_OK);
    cr_assert_eq(rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof errstr), RD_KAFKA_CONF_OK);
    cr_assert_eq(rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof errstr), RD_KAFKA_CONF_OK);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    cr_assert_not_null(rk, "%s", errstr);
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    cr_assert_eq(rd_kafka_metadata(rk, 0, rkt, &md, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    cr_assert_eq(md->topic_cnt, 1);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
    for (int i = 0; i < md->topics[0].partition_cnt; i++)
        rd_kafka_topic_partition_list_add(parts, topic, md->topics[0].partitions[i].id)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_metadata_destroy(md);
    cr_assert_eq(rd_kafka_assign(rk, parts), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(parts);
    int64_t deadline = cmn_monotonic_ms() + timeout_ms;
    while (*n < expect && cmn_monotonic_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            rec_t *r = &out[(*n)++];
            r->key = dupn(m->key, m->key_len);
            r->value = dupn(m->payload, m->len);
            r->ts = rd_kafka_message_timestamp(m, &r->tstype);
            r->partition = m->partition;
            r->offset = m->offset;
            rd_kafka_headers_t *hdrs = NULL;
            const char *name;
            const void *val;
            size_t size;
            if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
                for (size_t i = 0; i < MAX_HDRS && rd_kafka_header_get_all(hdrs, i, &name, &val, &size) == 0; i++) {
                    r->hname[i] = strdup(name);
                    r->hval[i] = dupn(val, size);
                    r->nh++;
                }
            }
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_topic_destroy(rkt);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return out;
}

static void recs_free(rec_t *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(r[i].key);
        free(r[i].value);
        for (size_t j = 0; j < r[i].nh; j++) {
            free(r[i].hname[j]);
            free(r[i].hval[j]);
        }
    }
    free(r);
}

static const char *hdr(const rec_t *r, const char *name)
{
    for (size_t i = 0; i < r->nh; i++) {
        if (strcmp(r->hname[i], name) == 0)
            return r->hval[i];
    }
    return NULL;
}

static const rec_t *find_value(const rec_t *r, size_t n, const char *value)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(r[i].value, value) == 0)
            return &r[i];
    }
    return NULL;
}

static size_t count_value(const rec_t *r, size_t n, const char *value)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += strcmp(r[i].value, value) == 0;
    return c;
}

/* ----------------------------------------------------------- the queue */

/* The value of one sample of the registry (name with its labels), or -1
 * when it is not there. */
static double metric(fixture_t *f, const char *sample)
{
    cmn_buf_t b = CMN_BUF_INIT;
    double v = -1;
    cr_assert_eq(cmn_metrics_render(f->metrics, &b), 0);
    size_t len = strlen(sample);
    for (const char *line = b.data; line != NULL && *line != '\0';) {
        if (strncmp(line, sample, len) == 0 && line[len] == ' ') {
            v = strtod(line + len + 1, NULL);
            break;
        }
        line = strchr(line, '\n');
        if (line != NULL)
            line++;
    }
    cmn_buf_free(&b);
    return v;
}

static double outcome(fixture_t *f, const char *family, const char *tier, const char *what)
{
    char s[200];
    snprintf(s, sizeof s, "delay_records_total{family=\"%s\",tier=\"%s\",outcome=\"%s\"}", family, tier, what);
    return metric(f, s);
}

/* Waits until the gauge name{family} reads want. */
static void wait_gauge(fixture_t *f, const char *name, const char *family, double want, int timeout_ms)
{
    char s[120];
    snprintf(s, sizeof s, "%s{family=\"%s\"}", name, family);
    int64_t deadline = cmn_monotonic_ms() + timeout_ms;
    double v = -1;
    while (cmn_monotonic_ms() < deadline) {
        v = metric(f, s);
        if (v == want)
            return;
        sleep_ms(50);
    }
    cr_assert_fail("%s stayed at %g, wanted %g", s, v, want);
}

static void wait_paused(fixture_t *f, const char *family, double want, int timeout_ms)
{
    wait_gauge(f, "delay_paused_partitions", family, want, timeout_ms);
}

static cmn_delayq_t *queue(fixture_t *f, const char *group, cmn_delay_kind_t kind, cmn_delayq_guard_fn guard,
                           void *guard_ctx)
{
    char err[512] = "";
    cmn_delayq_config_t cfg = {
        .service = "test-delayq",
        .brokers = f->brokers,
        .group_id = group,
        .kafka_extra = fast_metadata,
        .kind = kind,
        .channel = kind == CMN_DELAY_RETRY ? CMN_CHANNEL_SMS : CMN_CHANNEL_NONE,
        .session_timeout_ms = 6000,
        .guard = guard,
        .guard_ctx = guard_ctx,
        .log = &f->log,
        .metrics = f->metrics,
    };
    cmn_delayq_t *q = cmn_delayq_new(&cfg, err, sizeof err);
    cr_assert_not_null(q, "delayq: %s", err);
    cr_assert_eq(cmn_delayq_start(q), 0);
    /* The group's first join takes a few seconds on the mock cluster;
     * records put before it would be due before they are ever seen. */
    const char *family = kind == CMN_DELAY_RETRY ? "crm.retry.sms" : "crm.defer";
    size_t ntiers = 0;
    cmn_delay_tiers(kind, &ntiers);
    wait_gauge(f, "delay_assigned_partitions", family, (double)(ntiers * 12), 30000);
    cr_assert(cmn_delayq_is_ready(q));
    return q;
}

/* ---------------------------------------------------------------- tests */

Test(delayq, due_record_is_delivered_unchanged_not_before_due, .timeout = 120)
{
    fixture_t f;
    fixture_start(&f);
    cmn_delayq_t *q = queue(&f, "dq-deliver", CMN_DELAY_RETRY, NULL, NULL);

    int64_t due = cmn_now_ms() + 300;
    put_due(f.brokers, "crm.retry.sms.5s", 3, "crm.send.sms", "msg-1", due, 0);

    size_t n = 0;
    rec_t *r = take(f.brokers, "crm.send.sms", 1, 30000, &n);
    cr_assert_eq(n, 1, "the record was not delivered");
    cr_assert_str_eq(r[0].key, "msg-1");
    cr_assert_str_eq(r[0].value, "msg-1");
    cr_assert_geq(r[0].ts, due, "delivered at %" PRId64 ", %" PRId64 " ms before its due time", r[0].ts, due - r[0].ts);
    /* Every header, in order, unchanged. */
    char due_s[24];
    snprintf(due_s, sizeof due_s, "%" PRId64, due);
    const char *want[][2] = {{"traceparent", "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01"},
                             {CMN_DELAY_HDR_DUE_AT, due_s},
                             {CMN_DELAY_HDR_TARGET, "crm.send.sms"},
                             {"x-test", "msg-1"}};
    cr_assert_eq(r[0].nh, 4, "headers: %zu", r[0].nh);
    for (size_t i = 0; i < 4; i++) {
        cr_assert_str_eq(r[0].hname[i], want[i][0]);
        cr_assert_str_eq(r[0].hval[i], want[i][1]);
    }
    recs_free(r, n);
    cmn_delayq_stop(q);
    cr_assert_eq(outcome(&f, "crm.retry.sms", "5s", "delivered"), 1);
    cr_assert_eq(outcome(&f, "crm.retry.sms", "5s", "redelayed"), 0);
    cr_assert_eq(metric(&f, "delay_lateness_seconds_count{family=\"crm.retry.sms\"}"), 1);
    cmn_delayq_destroy(q);

    /* Exactly once: nothing more arrives on the target. */
    r = take(f.brokers, "crm.send.sms", 2, 2000, &n);
    cr_assert_eq(n, 1);
    recs_free(r, n);
    fixture_stop(&f);
}

Test(delayq, far_head_holds_up_no_other_tier_or_partition, .timeout = 120)
{
    fixture_t f;
    fixture_start(&f);
    cmn_delayq_t *q = queue(&f, "dq-hol", CMN_DELAY_RETRY, NULL, NULL);

    /* A far record (30 s tier, due in a minute) is consumed and held... */
    put_due(f.brokers, "crm.retry.sms.30s", 0, "crm.send.sms", "far", cmn_now_ms() + 60000, 0);
    wait_paused(&f, "crm.retry.sms", 1, 30000);
    /* ...then near records on another tier and on another partition of
     * the same tier go through while it waits. */
    put_due(f.brokers, "crm.retry.sms.5s", 0, "crm.send.sms", "near-other-tier", cmn_now_ms() + 300, 0);
    put_due(f.brokers, "crm.retry.sms.30s", 1, "crm.send.sms", "near-other-partition", cmn_now_ms() + 400, 0);

    size_t n = 0;
    rec_t *r = take(f.brokers, "crm.send.sms", 2, 20000, &n);
    cr_assert_eq(n, 2, "only %zu near record(s) delivered while a far head waited", n);
    cr_assert_not_null(find_value(r, n, "near-other-tier"));
    cr_assert_not_null(find_value(r, n, "near-other-partition"));
    recs_free(r, n);
    cr_assert_eq(outcome(&f, "crm.retry.sms", "30s", "delivered"), 1);
    cr_assert_eq(outcome(&f, "crm.retry.sms", "5s", "delivered"), 1);
    /* The far head is still held, not delivered early. */
    cr_assert_eq(metric(&f, "delay_paused_partitions{family=\"crm.retry.sms\"}"), 1);
    cmn_delayq_destroy(q);
    fixture_stop(&f);
}

Test(delayq, long_wait_cycles_through_the_tier_and_is_delivered_once, .timeout = 120)
{
    fixture_t f;
    fixture_start(&f);
    /* The record entered crm.defer.1m 59 s ago (CreateTime) and is due in
     * 2 s: the tier releases it in about 1 s, before it is due, so the
     * queue must re-delay it once, and deliver the copy at its due time. */
    cmn_delayq_t *q = queue(&f, "dq-cycle", CMN_DELAY_DEFER, NULL, NULL);
    int64_t now = cmn_now_ms();
    int64_t entered = now - 59000;
    int64_t due = now + 2000;
    put_due(f.brokers, "crm.defer.1m", 5, "crm.requests", "deferred-1", due, entered);

    size_t n = 0;
    rec_t *r = take(f.brokers, "crm.requests", 1, 30000, &n);
    cr_assert_eq(n, 1, "the deferred request did not come back");
    cr_assert_geq(r[0].ts, due);
    cr_assert_str_eq(hdr(&r[0], "x-test"), "deferred-1");
    recs_free(r, n);

    /* The tier holds the original and the re-delayed copy, headers kept;
     * the original's timestamp is the one it was produced with: the mock
     * cluster keeps CreateTime (see docs/reliability.md). */
    r = take(f.brokers, "crm.defer.1m", 2, 10000, &n);
    cr_assert_eq(n, 2, "%zu records on crm.defer.1m", n);
    /* The copy is keyed like the original, so it may land on another
     * partition and be read first. */
    const rec_t *orig = r[0].partition == 5 && r[0].offset == 0 ? &r[0] : &r[1];
    const rec_t *copy = orig == &r[0] ? &r[1] : &r[0];
    cr_assert_eq(orig->partition, 5);
    cr_assert_eq(orig->tstype, RD_KAFKA_TIMESTAMP_CREATE_TIME);
    cr_assert_eq(orig->ts, entered);
    cr_assert_gt(copy->ts, entered + 50000, "the copy entered the tier anew");
    cr_assert_str_eq(copy->key, "deferred-1");
    cr_assert_str_eq(copy->value, "deferred-1");
    char due_s[24];
    snprintf(due_s, sizeof due_s, "%" PRId64, due);
    cr_assert_eq(copy->nh, orig->nh);
    for (size_t i = 0; i < orig->nh; i++) {
        cr_assert_str_eq(copy->hname[i], orig->hname[i]);
        cr_assert_str_eq(copy->hval[i], orig->hval[i]);
    }
    cr_assert_str_eq(hdr(copy, CMN_DELAY_HDR_DUE_AT), due_s);
    cr_assert_str_eq(hdr(copy, CMN_DELAY_HDR_TARGET), "crm.requests");
    recs_free(r, n);

    cmn_delayq_stop(q);
    cr_assert_eq(outcome(&f, "crm.defer", "1m", "redelayed"), 1);
    cr_assert_eq(outcome(&f, "crm.defer", "1m", "delivered"), 1);
    cmn_delayq_destroy(q);
    r = take(f.brokers, "crm.requests", 2, 2000, &n);
    cr_assert_eq(n, 1, "delivered %zu times", n);
    recs_free(r, n);
    fixture_stop(&f);
}

Test(delayq, bad_headers_go_to_the_dlq_with_the_reason, .timeout = 120)
{
    fixture_t f;
    fixture_start(&f);
    int64_t due = cmn_now_ms() + 200;
    char due_s[24];
    snprintf(due_s, sizeof due_s, "%" PRId64, due);
    /* Same partition: the good record after the bad ones still goes. */
    const char *no_due[] = {CMN_DELAY_HDR_TARGET, "crm.send.sms", NULL};
    put(f.brokers, "crm.retry.sms.5s", 2, "bad-1", "no-due-at", no_due, 0);
    const char *other_channel[] = {CMN_DELAY_HDR_DUE_AT, due_s, CMN_DELAY_HDR_TARGET, "crm.send.email", NULL};
    put(f.brokers, "crm.retry.sms.5s", 2, "bad-2", "other-channel", other_channel, 0);
    put_due(f.brokers, "crm.retry.sms.5s", 2, "crm.send.sms", "good", due, 0);
    cmn_delayq_t *q = queue(&f, "dq-bad", CMN_DELAY_RETRY, NULL, NULL);

    size_t n = 0;
    rec_t *r = take(f.brokers, CMN_TOPIC_DLQ, 2, 30000, &n);
    cr_assert_eq(n, 2);
    const rec_t *a = find_value(r, n, "no-due-at");
    const rec_t *b = find_value(r, n, "other-channel");
    cr_assert_not_null(a);
    cr_assert_not_null(b);
    cr_assert_str_eq(hdr(a, CMN_HDR_DLQ_REASON), "x-crm-due-at: is missing");
    cr_assert_eq(strncmp(hdr(b, CMN_HDR_DLQ_REASON), "x-crm-target:", 13), 0, "%s", hdr(b, CMN_HDR_DLQ_REASON));
    cr_assert_str_eq(hdr(a, CMN_HDR_DLQ_SOURCE_TOPIC), "crm.retry.sms.5s");
    cr_assert_str_eq(hdr(a, CMN_HDR_DLQ_SERVICE), "test-delayq");
    cr_assert_str_eq(a->key, "bad-1");
    recs_free(r, n);

    r = take(f.brokers, "crm.send.sms", 1, 10000, &n);
    cr_assert_eq(n, 1, "%zu records on the target", n);
    cr_assert_str_eq(r[0].value, "good");
    recs_free(r, n);
    r = take(f.brokers, "crm.send.email", 1, 1000, &n);
    cr_assert_eq(n, 0, "a header steered a record onto another channel");
    recs_free(r, n);
    cmn_delayq_stop(q);
    cr_assert_eq(outcome(&f, "crm.retry.sms", "5s", "dlq"), 2);
    cmn_delayq_destroy(q);
    fixture_stop(&f);
}

/* The guard answers by its header's value; "retry-once" cannot decide the
 * first time it is asked. */
typedef struct guard_ctx {
    pthread_mutex_t mu;
    int calls_retry_once;
    int calls;
} guard_ctx_t;

static cmn_delayq_verdict_t test_guard(void *vctx, const cmn_kafka_message_t *rec, const char *value, size_t len,
                                       cmn_delayq_guard_out_t *out)
{
    (void)out;
    guard_ctx_t *g = vctx;
    cmn_delayq_verdict_t v = CMN_DELAYQ_DELIVER;
    pthread_mutex_lock(&g->mu);
    g->calls++;
    if (len == 4 && memcmp(value, "drop", 4) == 0) {
        v = CMN_DELAYQ_DROP;
    } else if (len == 10 && memcmp(value, "retry-once", 10) == 0) {
        g->calls_retry_once++;
        v = g->calls_retry_once == 1 ? CMN_DELAYQ_RETRY : CMN_DELAYQ_DELIVER;
    }
    pthread_mutex_unlock(&g->mu);
    (void)rec;
    return v;
}

Test(delayq, guard_drops_delivers_and_retries, .timeout = 120)
{
    fixture_t f;
    fixture_start(&f);
    guard_ctx_t g = {.calls = 0};
    pthread_mutex_init(&g.mu, NULL);
    int64_t due = cmn_now_ms() + 200;
    char due_s[24];
    snprintf(due_s, sizeof due_s, "%" PRId64, due);
    const char *verdicts[] = {"drop", "deliver", "retry-once"};
    for (int i = 0; i < 3; i++) {
        const char *h[] = {CMN_DELAY_HDR_DUE_AT, due_s, CMN_DELAY_HDR_TARGET, "crm.send.sms", CMN_HDR_GUARD,
                           verdicts[i], NULL};
        put(f.brokers, "crm.retry.sms.5s", i, verdicts[i], verdicts[i], h, 0);
    }
    /* Without the guard header the guard is not asked. */
    put_due(f.brokers, "crm.retry.sms.5s", 3, "crm.send.sms", "unguarded", due, 0);
    cmn_delayq_t *q = queue(&f, "dq-guard", CMN_DELAY_RETRY, test_guard, &g);

    size_t n = 0;
    rec_t *r = take(f.brokers, "crm.send.sms", 3, 30000, &n);
    cr_assert_eq(n, 3);
    cr_assert_not_null(find_value(r, n, "deliver"));
    cr_assert_not_null(find_value(r, n, "retry-once"));
    cr_assert_not_null(find_value(r, n, "unguarded"));
    recs_free(r, n);
    cmn_delayq_stop(q);
    cr_assert_eq(outcome(&f, "crm.retry.sms", "5s", "dropped"), 1);
    cr_assert_eq(outcome(&f, "crm.retry.sms", "5s", "delivered"), 3);
    cr_assert_eq(g.calls_retry_once, 2, "the undecided record is asked again");
    cr_assert_eq(g.calls, 4);
    cmn_delayq_destroy(q);
    r = take(f.brokers, "crm.send.sms", 4, 1500, &n);
    cr_assert_eq(n, 3, "the dropped record was delivered after all");
    recs_free(r, n);
    pthread_mutex_destroy(&g.mu);
    fixture_stop(&f);
}

/* A guard like the router's receipt guard: "recheck-then-deliver" is not
 * ready the first time (RECHECK at recheck_at) and is delivered the second
 * time with an extra record; "drop-with-extra" asks for an extra record
 * but drops, so the extra must not appear. */
typedef struct recheck_ctx {
    pthread_mutex_t mu;
    int calls;
    int64_t recheck_at;
    int64_t first_call_at, second_call_at;
} recheck_ctx_t;

static cmn_delayq_verdict_t recheck_guard(void *vctx, const cmn_kafka_message_t *rec, const char *value, size_t len,
                                          cmn_delayq_guard_out_t *out)
{
    recheck_ctx_t *g = vctx;
    cmn_delayq_verdict_t v = CMN_DELAYQ_DELIVER;
    cmn_kafka_header_t h[] = {{"x-extra", "yes", 3}};
    pthread_mutex_lock(&g->mu);
    if (len == 6 && memcmp(value, "reject", 6) == 0) {
        cr_assert_eq(cmn_delayq_guard_add(out, "crm.status", "k", 1, "rejected-extra", 14, h, 1), 0);
        snprintf(out->reason, sizeof out->reason, "x-crm-guard: test says malformed");
        v = CMN_DELAYQ_REJECT;
    } else if (len == 15 && memcmp(value, "drop-with-extra", 15) == 0) {
        cr_assert_eq(cmn_delayq_guard_add(out, "crm.status", "k", 1, "dropped-extra", 13, h, 1), 0);
        v = CMN_DELAYQ_DROP;
    } else {
        g->calls++;
        if (g->calls == 1) {
            g->first_call_at = cmn_now_ms();
            g->recheck_at = g->first_call_at + 2500;
            out->recheck_at_ms = g->recheck_at;
            v = CMN_DELAYQ_RECHECK;
        } else {
            g->second_call_at = cmn_now_ms();
            cr_assert_eq(cmn_delayq_guard_add(out, "crm.status", rec->key, rec->key_len, "extra-1", 7, h, 1), 0);
            v = CMN_DELAYQ_DELIVER;
        }
    }
    pthread_mutex_unlock(&g->mu);
    return v;
}

Test(delayq, guard_rechecks_later_and_delivers_with_extra_records, .timeout = 120)
{
    fixture_t f;
    fixture_start(&f);
    recheck_ctx_t g = {.calls = 0};
    pthread_mutex_init(&g.mu, NULL);
    int64_t due = cmn_now_ms() + 200;
    char due_s[24];
    snprintf(due_s, sizeof due_s, "%" PRId64, due);
    /* A watch: a defer tier record bound for a send topic. */
    const char *h1[] = {"traceparent", "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01", CMN_DELAY_HDR_DUE_AT,
                        due_s, CMN_DELAY_HDR_TARGET, "crm.send.email", CMN_HDR_GUARD, "recheck-then-deliver", NULL};
    put(f.brokers, "crm.defer.1m", 2, "client-1", "watch-1", h1, 0);
    const char *h2[] = {CMN_DELAY_HDR_DUE_AT, due_s, CMN_DELAY_HDR_TARGET, "crm.send.sms", CMN_HDR_GUARD,
                        "drop-with-extra", NULL};
    put(f.brokers, "crm.defer.1m", 3, "client-2", "watch-2", h2, 0);
    const char *h3[] = {CMN_DELAY_HDR_DUE_AT, due_s, CMN_DELAY_HDR_TARGET, "crm.send.sms", CMN_HDR_GUARD, "reject",
                        NULL};
    put(f.brokers, "crm.defer.1m", 4, "client-3", "watch-3", h3, 0);
    cmn_delayq_t *q = queue(&f, "dq-recheck", CMN_DELAY_DEFER, recheck_guard, &g);

    size_t n = 0;
    rec_t *r = take(f.brokers, "crm.send.email", 1, 30000, &n);
    cr_assert_eq(n, 1, "the watch was not delivered after its recheck");
    cr_assert_str_eq(r[0].value, "watch-1");
    pthread_mutex_lock(&g.mu);
    int64_t recheck_at = g.recheck_at;
    pthread_mutex_unlock(&g.mu);
    cr_assert_gt(recheck_at, 0, "the guard was asked");
    cr_assert_geq(r[0].ts, recheck_at, "delivered before the recheck time");
    char recheck_s[24];
    snprintf(recheck_s, sizeof recheck_s, "%" PRId64, recheck_at);
    /* Delivered as re-produced: every header kept, the due time moved. */
    cr_assert_str_eq(hdr(&r[0], CMN_DELAY_HDR_DUE_AT), recheck_s);
    cr_assert_str_eq(hdr(&r[0], CMN_DELAY_HDR_TARGET), "crm.send.email");
    cr_assert_str_eq(hdr(&r[0], CMN_HDR_GUARD), "recheck-then-deliver");
    cr_assert_str_eq(hdr(&r[0], "traceparent"), "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01");
    recs_free(r, n);

    r = take(f.brokers, "crm.status", 2, 5000, &n);
    cr_assert_eq(n, 1, "exactly the delivered record's extra, none of the dropped or rejected (%zu records)", n);
    cr_assert_str_eq(r[0].value, "extra-1");
    cr_assert_str_eq(r[0].key, "client-1");
    cr_assert_str_eq(hdr(&r[0], "x-extra"), "yes");
    recs_free(r, n);

    /* The tier holds the original and one copy, due at the recheck time. */
    r = take(f.brokers, "crm.defer.1m", 5, 5000, &n);
    cr_assert_eq(n, 4, "%zu records on crm.defer.1m (3 watches and one copy)", n);
    cr_assert_eq(count_value(r, n, "watch-1"), 2);
    size_t copies = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(r[i].value, "watch-1") == 0 && strcmp(hdr(&r[i], CMN_DELAY_HDR_DUE_AT), recheck_s) == 0)
            copies++;
    }
    cr_assert_eq(copies, 1, "one copy with the new due time");
    recs_free(r, n);

    cmn_delayq_stop(q);
    cr_assert_eq(g.calls, 2, "asked once, and once more at the recheck");
    cr_assert_geq(g.second_call_at, recheck_at);
    cr_assert_eq(outcome(&f, "crm.defer", "1m", "rechecked"), 1);
    cr_assert_eq(outcome(&f, "crm.defer", "1m", "delivered"), 1);
    cr_assert_eq(outcome(&f, "crm.defer", "1m", "dropped"), 1);
    cr_assert_eq(outcome(&f, "crm.defer", "1m", "dlq"), 1);
    cmn_delayq_destroy(q);
    r = take(f.brokers, CMN_TOPIC_DLQ, 1, 5000, &n);
    cr_assert_eq(n, 1, "the rejected watch is on crm.dlq");
    cr_assert_str_eq(r[0].value, "watch-3");
    cr_assert_str_eq(hdr(&r[0], CMN_HDR_DLQ_REASON), "x-crm-guard: test says malformed");
    recs_free(r, n);
    r = take(f.brokers, "crm.send.sms", 1, 1000, &n);
    cr_assert_eq(n, 0, "the dropped watch was delivered");
    recs_free(r, n);
    pthread_mutex_destroy(&g.mu);
    fixture_stop(&f);
}

Test(delayq, send_target_on_a_defer_tier_needs_a_guard, .timeout = 120)
{
    fixture_t f;
    fixture_start(&f);
    int64_t due = cmn_now_ms() + 200;
    char due_s[24];
    snprintf(due_s, sizeof due_s, "%" PRId64, due);
    /* Without the guard header, even with a guard configured. */
    recheck_ctx_t g = {.calls = 0};
    pthread_mutex_init(&g.mu, NULL);
    const char *h[] = {CMN_DELAY_HDR_DUE_AT, due_s, CMN_DELAY_HDR_TARGET, "crm.send.sms", NULL};
    put(f.brokers, "crm.defer.1m", 1, "k1", "unguarded-watch", h, 0);
    put_due(f.brokers, "crm.defer.1m", 1, "crm.requests", "plain-deferral", due, 0);
    cmn_delayq_t *q = queue(&f, "dq-needguard", CMN_DELAY_DEFER, recheck_guard, &g);
    size_t n = 0;
    rec_t *r = take(f.brokers, CMN_TOPIC_DLQ, 1, 30000, &n);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(r[0].value, "unguarded-watch");
    cr_assert_str_eq(hdr(&r[0], CMN_HDR_DLQ_REASON),
                     "x-crm-guard: is missing, and crm.send.sms is not crm.defer's own target");
    recs_free(r, n);
    r = take(f.brokers, "crm.requests", 1, 10000, &n);
    cr_assert_eq(n, 1, "a deferral on the same partition still goes");
    recs_free(r, n);
    cmn_delayq_destroy(q);
    cr_assert_eq(g.calls, 0, "the guard is never asked about an unguarded record");

    /* With the guard header, on a queue without a guard. */
    const char *hg[] = {CMN_DELAY_HDR_DUE_AT, due_s, CMN_DELAY_HDR_TARGET, "crm.send.whatsapp", CMN_HDR_GUARD,
                        "anything", NULL};
    put(f.brokers, "crm.defer.10m", 0, "k2", "guarded-no-guard", hg, 0);
    /* A new group reads the tiers from the start, so the unguarded watch
     * goes to crm.dlq a second time. */
    q = queue(&f, "dq-noguard", CMN_DELAY_DEFER, NULL, NULL);
    r = take(f.brokers, CMN_TOPIC_DLQ, 3, 30000, &n);
    cr_assert_eq(n, 3);
    cr_assert_eq(count_value(r, n, "unguarded-watch"), 2);
    const rec_t *b = find_value(r, n, "guarded-no-guard");
    cr_assert_not_null(b);
    cr_assert_str_eq(hdr(b, CMN_HDR_DLQ_REASON),
                     "x-crm-guard: this consumer has no guard, so it cannot deliver a record bound for crm.send.whatsapp");
    recs_free(r, n);
    cmn_delayq_destroy(q);
    r = take(f.brokers, "crm.send.sms", 1, 1000, &n);
    cr_assert_eq(n, 0);
    recs_free(r, n);
    r = take(f.brokers, "crm.send.whatsapp", 1, 1000, &n);
    cr_assert_eq(n, 0);
    recs_free(r, n);
    pthread_mutex_destroy(&g.mu);
    fixture_stop(&f);
}

Test(delayq, restart_before_due_delivers_exactly_once, .timeout = 120)
{
    fixture_t f;
    fixture_start(&f);
    cmn_delayq_t *a = queue(&f, "dq-restart", CMN_DELAY_RETRY, NULL, NULL);
    /* Far enough that the first member surely holds the record, and is
     * gone, before it is due (checked below, so a slow machine cannot turn
     * this into a test of something else). */
    int64_t due = cmn_now_ms() + 6000;
    put_due(f.brokers, "crm.retry.sms.5s", 7, "crm.send.sms", "survivor", due, 0);
    wait_paused(&f, "crm.retry.sms", 1, 30000);
    /* The first member consumed the record and holds it; it stops before
     * the record is due, having committed nothing for it. */
    cmn_delayq_destroy(a);
    cr_assert_eq(outcome(&f, "crm.retry.sms", "5s", "delivered"), 0);
    cr_assert_lt(cmn_now_ms(), due, "the test was too slow to stop before the due time");

    cmn_delayq_t *b = queue(&f, "dq-restart", CMN_DELAY_RETRY, NULL, NULL);
    size_t n = 0;
    rec_t *r = take(f.brokers, "crm.send.sms", 1, 30000, &n);
    cr_assert_eq(n, 1, "the record was lost across the restart");
    cr_assert_geq(r[0].ts, due);
    recs_free(r, n);
    cmn_delayq_destroy(b);
    r = take(f.brokers, "crm.send.sms", 2, 2000, &n);
    cr_assert_eq(n, 1, "delivered %zu times", n);
    recs_free(r, n);
    fixture_stop(&f);
}

Test(delayq, paused_queue_does_not_busy_poll, .timeout = 120)
{
    fixture_t f;
    fixture_start(&f);
    cmn_delayq_t *q = queue(&f, "dq-idle", CMN_DELAY_RETRY, NULL, NULL);
    put_due(f.brokers, "crm.retry.sms.30s", 4, "crm.send.sms", "far", cmn_now_ms() + 60000, 0);
    wait_paused(&f, "crm.retry.sms", 1, 30000);
    const char *polls = "delay_polls_total{family=\"crm.retry.sms\"}";
    double before = metric(&f, polls);
    sleep_ms(2000);
    double after = metric(&f, polls);
    cr_assert_gt(after, before, "the loop is alive");
    cr_assert_lt(after - before, 20, "%g polls in 2 s with one far head", after - before);
    cmn_delayq_destroy(q);
    fixture_stop(&f);
}

Test(delayq, records_behind_a_held_head_are_neither_skipped_nor_repeated, .timeout = 120)
{
    fixture_t f;
    fixture_start(&f);
    cmn_delayq_t *q = queue(&f, "dq-seq", CMN_DELAY_RETRY, NULL, NULL);
    /* Three records of one client on one partition, produced (and so
     * fetched) together: the first is held, so the two behind it were
     * fetched past the head. One key keeps them in order on the target. */
    int64_t due = cmn_now_ms() + 1500;
    rd_kafka_t *rk = put_producer(f.brokers);
    rd_kafka_resp_err_t delivered[3];
    for (int i = 0; i < 3; i++) {
        char v[16], due_s[24];
        snprintf(v, sizeof v, "seq-%d", i);
        snprintf(due_s, sizeof due_s, "%" PRId64, due + i * 150);
        const char *h[] = {CMN_DELAY_HDR_DUE_AT, due_s, CMN_DELAY_HDR_TARGET, "crm.send.sms", NULL};
        put_queue(rk, "crm.retry.sms.5s", 9, "client-9", v, h, 0, &delivered[i]);
    }
    rd_kafka_flush(rk, 15000);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(delivered[i], RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(rk);
    size_t n = 0;
    rec_t *r = take(f.brokers, "crm.send.sms", 3, 30000, &n);
    cr_assert_eq(n, 3, "%zu of 3 delivered", n);
    for (int i = 0; i < 3; i++) {
        char v[16];
        snprintf(v, sizeof v, "seq-%d", i);
        cr_assert_str_eq(r[i].value, v, "order kept on the partition");
        cr_assert_geq(r[i].ts, due + i * 150);
    }
    recs_free(r, n);
    cmn_delayq_destroy(q);
    r = take(f.brokers, "crm.send.sms", 4, 2000, &n);
    cr_assert_eq(n, 3);
    for (int i = 0; i < 3; i++) {
        char v[16];
        snprintf(v, sizeof v, "seq-%d", i);
        cr_assert_eq(count_value(r, n, v), 1);
    }
    recs_free(r, n);
    fixture_stop(&f);
}

Test(delayq, unacknowledged_produce_is_retried_not_committed, .timeout = 120)
{
    fixture_t f;
    fixture_start(&f);
    cmn_delayq_t *q = queue(&f, "dq-ack", CMN_DELAY_RETRY, NULL, NULL);
    int64_t due = cmn_now_ms() + 4000;
    put_due(f.brokers, "crm.retry.sms.5s", 6, "crm.send.sms", "retried", due, 0);
    wait_paused(&f, "crm.retry.sms", 1, 30000);
    /* The next Produce requests are refused with a non-retriable error:
     * the delivery fails, nothing may be committed, and the queue tries
     * again until the cluster accepts it. */
    rd_kafka_resp_err_t errs[2] = {RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
                                   RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED};
    rd_kafka_mock_push_request_errors_array(th_kafka_mock(f.k), APIKEY_PRODUCE, 2, errs);

    size_t n = 0;
    rec_t *r = take(f.brokers, "crm.send.sms", 1, 30000, &n);
    cr_assert_eq(n, 1, "the record was lost after a failed produce");
    recs_free(r, n);
    cmn_delayq_stop(q);
    cr_assert_geq(metric(&f, "delay_ack_failures_total{family=\"crm.retry.sms\"}"), 1);
    cmn_delayq_destroy(q);
    r = take(f.brokers, "crm.send.sms", 2, 2000, &n);
    cr_assert_eq(n, 1, "delivered %zu times", n);
    recs_free(r, n);
    fixture_stop(&f);
}

Test(delayq, config_is_validated)
{
    cmn_log_t log;
    char err[256] = "";
    cmn_log_init(&log, "test-delayq", "error");
    cmn_delayq_config_t cfg = {.service = "s", .brokers = "127.0.0.1:1", .group_id = "g",
                               .kind = CMN_DELAY_RETRY, .channel = CMN_CHANNEL_NONE, .log = &log};
    cr_assert_null(cmn_delayq_new(&cfg, err, sizeof err), "a retry family needs a channel");
    cr_assert_not_null(strstr(err, "channel"), "%s", err);
    cfg.channel = CMN_CHANNEL_EMAIL;
    cfg.group_id = NULL;
    cr_assert_null(cmn_delayq_new(&cfg, err, sizeof err));
    cfg.group_id = "g";
    cmn_delayq_t *q = cmn_delayq_new(&cfg, err, sizeof err);
    cr_assert_not_null(q, "%s", err);
    cr_assert_eq(cmn_delayq_is_ready(q), 0, "not ready before start");
    cmn_delayq_stop(q); /* never started: a no-op */
    cmn_delayq_stop(q);
    cr_assert_eq(cmn_delayq_start(q), CMN_ERR_STATE, "a stopped queue does not start again");
    cmn_delayq_destroy(q);
    cmn_delayq_destroy(NULL);
}
