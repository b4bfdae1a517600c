/* th_kafka.c - Kafka for the tests: librdkafka's mock cluster, in process.
 *
 * The helpers talk to the cluster with plain librdkafka rather than the
 * project's cmn_kafka_* wrappers, so a test of those wrappers never checks
 * them against themselves. */
#include "th_kafka.h"

#include <errno.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "crm/buf.h"
#include "crm/kafka.h"

struct th_kafka {
    rd_kafka_t *rk; /* the handle the mock cluster lives in; never produces */
    rd_kafka_mock_cluster_t *mock;
};

static int64_t th_kafka_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void th_kafka_sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

th_kafka_t *th_kafka_start(int nbrokers)
{
    char errstr[512];
    th_kafka_t *k = NULL;
    rd_kafka_conf_t *conf = NULL;
    size_t ntopics = 0;
    const cmn_kafka_topic_spec_t *topics = cmn_kafka_topics(&ntopics);

    if (nbrokers < 1)
        nbrokers = 1;
    k = calloc(1, sizeof(*k));
    if (k == NULL)
        goto cleanup;
    conf = rd_kafka_conf_new();
    /* The host handle has no bootstrap servers and never connects anywhere;
     * silence its "no bootstrap.servers" notice so test logs stay readable. */
    rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr));
    k->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (k->rk == NULL) {
        fprintf(stderr, "th_kafka_start: %s\n", errstr);
        goto cleanup;
    }
    conf = NULL;
    k->mock = rd_kafka_mock_cluster_new(k->rk, nbrokers);
    if (k->mock == NULL) {
        fprintf(stderr, "th_kafka_start: cannot create a mock cluster of %d brokers\n", nbrokers);
        goto cleanup;
    }
    /* Every topic is created up front: the mock cluster would otherwise
     * auto-create a topic on first use with its default partition count. */
    for (size_t i = 0; i < ntopics; i++) {
        rd_kafka_resp_err_t err =
            rd_kafka_mock_topic_create(k->mock, topics[i].name, topics[i].partitions, nbrokers < 3 ? nbrokers : 3);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "th_kafka_start: topic %s: %s\n", topics[i].name, rd_kafka_err2str(err));
            goto cleanup;
        }
        /* The mock thread answers a request before it drains its wake-up
         * pipe; a request queued in between loses its wake-up (librdkafka
         * 2.0) and waits for the thread's 1 s poll timeout. Back-to-back
         * creations hit that window often (seconds per cluster); a pause
         * lets the thread go back to sleep first. */
        th_kafka_sleep_ms(1);
    }
    return k;

cleanup:
    if (conf != NULL)
        rd_kafka_conf_destroy(conf);
    th_kafka_stop(k);
    return NULL;
}

const char *th_kafka_bootstraps(th_kafka_t *k)
{
    return k != NULL && k->mock != NULL ? rd_kafka_mock_cluster_bootstraps(k->mock) : NULL;
}

void *th_kafka_mock(th_kafka_t *k)
{
    return k != NULL ? k->mock : NULL;
}

void th_kafka_stop(th_kafka_t *k)
{
    if (k == NULL)
        return;
    if (k->mock != NULL)
        rd_kafka_mock_cluster_destroy(k->mock);
    if (k->rk != NULL)
        rd_kafka_destroy(k->rk);
    free(k);
}

/* The delivery report of th_kafka_produce's single message lands here
 * through the message opaque (a stack variable of the caller). */
static void th_kafka_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    rd_kafka_resp_err_t *out = m->_private;
    if (out != NULL)
        *out = m->err;
    (void)rk;
    (void)opaque;
}

int th_kafka_produce(const char *brokers, const char *topic, const char *key, const char *value,
                     const char *const *headers)
{
    char errstr[512];
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_t *rk = NULL;
    rd_kafka_headers_t *hdrs = NULL;
    /* Stays _IN_PROGRESS until the delivery report arrives. */
    rd_kafka_resp_err_t delivered = RD_KAFKA_RESP_ERR__IN_PROGRESS;
    int rc = -1;

    if (brokers == NULL || topic == NULL)
        return -1;
    conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "acks", "all", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "partitioner", "murmur2_random", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "message.timeout.ms", "10000", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "th_kafka_produce: %s\n", errstr);
        goto cleanup;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, th_kafka_dr_cb);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        fprintf(stderr, "th_kafka_produce: %s\n", errstr);
        goto cleanup;
    }
    conf = NULL;
    hdrs = rd_kafka_headers_new(8);
    for (size_t i = 0; headers != NULL && headers[i] != NULL && headers[i + 1] != NULL; i += 2)
        rd_kafka_header_add(hdrs, headers[i], -1, headers[i + 1], -1);
    size_t key_len = key != NULL ? strlen(key) : 0;
    size_t value_len = value != NULL ? strlen(value) : 0;
    rd_kafka_resp_err_t err = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_VALUE((void *)value, value_len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(&delivered), RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "th_kafka_produce: %s\n", rd_kafka_err2str(err));
        goto cleanup;
    }
    hdrs = NULL; /* owned by the message now */
    rd_kafka_flush(rk, 15000);
    if (delivered != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "th_kafka_produce: delivery to %s failed: %s\n", topic, rd_kafka_err2str(delivered));
        goto cleanup;
    }
    rc = 0;

cleanup:
    if (hdrs != NULL)
        rd_kafka_headers_destroy(hdrs);
    if (conf != NULL)
        rd_kafka_conf_destroy(conf);
    if (rk != NULL)
        rd_kafka_destroy(rk);
    return rc;
}

static char *th_kafka_strndup(const void *p, size_t len)
{
    if (p == NULL)
        return NULL;
    char *s = malloc(len + 1);
    if (s == NULL)
        return NULL;
    memcpy(s, p, len);
    s[len] = '\0';
    return s;
}

/* Renders a record's headers as {"name":"value",...}; a header without a
 * value becomes null. */
static char *th_kafka_headers_json(const rd_kafka_message_t *m)
{
    cmn_buf_t b = CMN_BUF_INIT;
    rd_kafka_headers_t *hdrs = NULL;
    const char *name;
    const void *val;
    size_t size;

    cmn_buf_putc(&b, '{');
    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &val, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
             i++) {
            if (i > 0)
                cmn_buf_putc(&b, ',');
            cmn_buf_put_json_string(&b, name);
            cmn_buf_putc(&b, ':');
            char *v = th_kafka_strndup(val, size);
            if (v != NULL)
                cmn_buf_put_json_string(&b, v);
            else
                cmn_buf_puts(&b, "null");
            free(v);
        }
    }
    cmn_buf_putc(&b, '}');
    return cmn_buf_steal(&b);
}

/* A consumer for reading and for looking at offsets. librdkafka only lets
 * a consumer with a group.id assign partitions, so readers get a private,
 * random one (group NULL); they never subscribe (never join the group) and
 * commit nothing, so they cannot disturb the consumer groups under test.
 * With enable_eof the consumer reports the end of each partition. */
static rd_kafka_t *th_kafka_reader_new(const char *brokers, const char *group, int enable_eof, const char *who)
{
    char errstr[512], own[64];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (group == NULL) {
        snprintf(own, sizeof(own), "th-kafka-reader-%ld-%lld", (long)getpid(), (long long)th_kafka_now_ms());
        group = own;
    }
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.partition.eof", enable_eof ? "true" : "false", errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK) {
        fprintf(stderr, "%s: %s\n", who, errstr);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        fprintf(stderr, "%s: %s\n", who, errstr);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

static void th_kafka_reader_destroy(rd_kafka_t *rk)
{
    if (rk == NULL)
        return;
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

/* The partition count of topic, or -1 (with the reason on stderr). */
static int th_kafka_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms, const char *who)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    int count = -1;
    if (rkt == NULL)
        return -1;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms > 5000 ? timeout_ms : 5000);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR || md->topic_cnt != 1 || md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR)
        fprintf(stderr, "%s: no metadata for %s: %s\n", who, topic,
                rd_kafka_err2str(err != RD_KAFKA_RESP_ERR_NO_ERROR ? err
                                 : md->topic_cnt == 1                ? md->topics[0].err
                                                                     : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART));
    else
        count = md->topics[0].partition_cnt;
    if (md != NULL)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return count;
}

/* Appends m to *recs (growing it). Returns 0 or -1 when out of memory. */
static int th_kafka_records_add(th_kafka_record_t **recs, size_t *count, size_t *cap, const rd_kafka_message_t *m)
{
    if (*count == *cap) {
        size_t ncap = *cap == 0 ? 16 : *cap * 2;
        th_kafka_record_t *nr = realloc(*recs, ncap * sizeof(*nr));
        if (nr == NULL)
            return -1;
        *recs = nr;
        *cap = ncap;
    }
    th_kafka_record_t *r = &(*recs)[(*count)++];
    r->key = th_kafka_strndup(m->key, m->key_len);
    r->value = th_kafka_strndup(m->payload, m->len);
    r->headers_json = th_kafka_headers_json(m);
    r->partition = m->partition;
    r->offset = m->offset;
    return 0;
}

th_kafka_record_t *th_kafka_read_all(const char *brokers, const char *topic, size_t expect, int timeout_ms,
                                     size_t *n)
{
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_partition_list_t *parts = NULL;
    th_kafka_record_t *recs = NULL;
    size_t count = 0, cap = 0;
    int ok = 0;

    *n = 0;
    rk = th_kafka_reader_new(brokers, NULL, 0, "th_kafka_read_all");
    if (rk == NULL)
        goto cleanup;
    int nparts = th_kafka_partition_count(rk, topic, timeout_ms, "th_kafka_read_all");
    if (nparts < 0)
        goto cleanup;
    parts = rd_kafka_topic_partition_list_new(nparts);
    for (int i = 0; i < nparts; i++)
        rd_kafka_topic_partition_list_add(parts, topic, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
    if (rd_kafka_assign(rk, parts) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "th_kafka_read_all: assign failed\n");
        goto cleanup;
    }
    int64_t deadline = th_kafka_now_ms() + timeout_ms;
    while (count < expect) {
        int64_t left = deadline - th_kafka_now_ms();
        if (left <= 0)
            break;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, (int)(left < 100 ? left : 100));
        if (m == NULL)
            continue;
        int added = m->err == RD_KAFKA_RESP_ERR_NO_ERROR ? th_kafka_records_add(&recs, &count, &cap, m) : 0;
        rd_kafka_message_destroy(m);
        if (added != 0)
            goto cleanup;
    }
    ok = 1;

cleanup:
    if (parts != NULL)
        rd_kafka_topic_partition_list_destroy(parts);
    th_kafka_reader_destroy(rk);
    if (!ok) {
        th_kafka_records_free(recs, count);
        return NULL;
    }
    *n = count;
    if (recs == NULL)
        recs = calloc(1, sizeof(*recs)); /* a valid, empty array for "nothing yet" */
    return recs;
}

th_kafka_record_t *th_kafka_read_to_end(const char *brokers, const char *topic, int timeout_ms, size_t *n)
{
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_partition_list_t *parts = NULL;
    int64_t *high = NULL;
    th_kafka_record_t *recs = NULL;
    size_t count = 0, cap = 0;
    int ok = 0, pending = 0;
    int64_t deadline = th_kafka_now_ms() + timeout_ms;

    *n = 0;
    rk = th_kafka_reader_new(brokers, NULL, 1, "th_kafka_read_to_end");
    if (rk == NULL)
        goto cleanup;
    int nparts = th_kafka_partition_count(rk, topic, timeout_ms, "th_kafka_read_to_end");
    if (nparts < 0)
        goto cleanup;
    high = calloc((size_t)nparts + 1, sizeof(*high));
    parts = rd_kafka_topic_partition_list_new(nparts);
    if (high == NULL || parts == NULL)
        goto cleanup;
    /* The end of each partition is fixed before reading, so a record
     * produced meanwhile is left out rather than waited for. */
    for (int i = 0; i < nparts; i++) {
        int64_t low = 0;
        rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(rk, topic, i, &low, &high[i], timeout_ms);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "th_kafka_read_to_end: %s [%d] watermarks: %s\n", topic, i, rd_kafka_err2str(err));
            goto cleanup;
        }
        if (high[i] > low) {
            rd_kafka_topic_partition_list_add(parts, topic, i)->offset = low;
            pending++;
        }
    }
    if (pending > 0 && rd_kafka_assign(rk, parts) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "th_kafka_read_to_end: assign failed\n");
        goto cleanup;
    }
    while (pending > 0) {
        int64_t left = deadline - th_kafka_now_ms();
        if (left <= 0) {
            fprintf(stderr, "th_kafka_read_to_end: %s not read to its end in %d ms (%d partitions left)\n", topic,
                    timeout_ms, pending);
            goto cleanup;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, (int)(left < 100 ? left : 100));
        if (m == NULL)
            continue;
        int32_t p = m->partition;
        int64_t next = -1; /* the offset this event shows the partition has reached */
        int added = 0;
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && p >= 0 && p < nparts && m->offset < high[p]) {
            added = th_kafka_records_add(&recs, &count, &cap, m);
            next = m->offset + 1;
        } else if ((m->err == RD_KAFKA_RESP_ERR_NO_ERROR || m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) && p >= 0 &&
                   p < nparts) {
            next = m->offset; /* a record past the mark, or the end of the partition */
            if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
                next++;
        }
        rd_kafka_message_destroy(m);
        if (added != 0)
            goto cleanup;
        if (next >= 0 && high[p] >= 0 && next >= high[p]) {
            high[p] = -1; /* done: later events of this partition are ignored */
            pending--;
        }
    }
    ok = 1;

cleanup:
    free(high);
    if (parts != NULL)
        rd_kafka_topic_partition_list_destroy(parts);
    th_kafka_reader_destroy(rk);
    if (!ok) {
        th_kafka_records_free(recs, count);
        return NULL;
    }
    *n = count;
    if (recs == NULL)
        recs = calloc(1, sizeof(*recs));
    return recs;
}

int th_kafka_group_lag(const char *brokers, const char *group, const char *topic, int timeout_ms, int64_t *lag)
{
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_partition_list_t *parts = NULL;
    int rc = -1;

    *lag = 0;
    /* A consumer with the group's id that never subscribes only asks the
     * coordinator for the committed offsets: it does not join. */
    rk = th_kafka_reader_new(brokers, group, 0, "th_kafka_group_lag");
    if (rk == NULL)
        goto cleanup;
    int nparts = th_kafka_partition_count(rk, topic, timeout_ms, "th_kafka_group_lag");
    if (nparts < 0)
        goto cleanup;
    parts = rd_kafka_topic_partition_list_new(nparts);
    for (int i = 0; i < nparts; i++)
        rd_kafka_topic_partition_list_add(parts, topic, i);
    rd_kafka_resp_err_t err = rd_kafka_committed(rk, parts, timeout_ms);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "th_kafka_group_lag: committed offsets of %s: %s\n", group, rd_kafka_err2str(err));
        goto cleanup;
    }
    for (int i = 0; i < parts->cnt; i++) {
        int64_t low = 0, high = 0;
        err = rd_kafka_query_watermark_offsets(rk, topic, parts->elems[i].partition, &low, &high, timeout_ms);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR && parts->elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR)
            err = parts->elems[i].err;
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "th_kafka_group_lag: %s [%d]: %s\n", topic, (int)parts->elems[i].partition,
                    rd_kafka_err2str(err));
            goto cleanup;
        }
        int64_t committed = parts->elems[i].offset >= 0 ? parts->elems[i].offset : low;
        *lag += high > committed ? high - committed : 0;
    }
    rc = 0;

cleanup:
    if (parts != NULL)
        rd_kafka_topic_partition_list_destroy(parts);
    th_kafka_reader_destroy(rk);
    return rc;
}

void th_kafka_records_free(th_kafka_record_t *r, size_t n)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        free(r[i].key);
        free(r[i].value);
        free(r[i].headers_json);
    }
    free(r);
}
