/* router_readback.c - output fences and the recovery read-back (see
 * router_readback.h). */
#include "router_readback.h"

#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/buf.h"
#include "crm/err.h"
#include "crm/json.h"
#include "crm/kafka.h"
#include "crm/time.h"

#define SEND_PREFIX CMN_TOPIC_SEND_PREFIX

struct router_readback {
    rd_kafka_t *rk;
    const cmn_log_t *log;
};

/* One partition to read: [start, end). */
typedef struct rb_range {
    char *topic; /* owned */
    int32_t partition;
    int64_t start;
    int64_t end;
    int done;
} rb_range_t;

typedef struct rb_ranges {
    rb_range_t *v;
    size_t n, cap;
} rb_ranges_t;

static void ranges_free(rb_ranges_t *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->v[i].topic);
    }
    free(r->v);
    memset(r, 0, sizeof *r);
}

/* Records that (topic, partition) must be read from start, keeping the
 * lowest start when several fences name the same partition. */
static int ranges_add(rb_ranges_t *r, const char *topic, int32_t partition, int64_t start)
{
    for (size_t i = 0; i < r->n; i++) {
        if (r->v[i].partition == partition && strcmp(r->v[i].topic, topic) == 0) {
            if (start < r->v[i].start) {
                r->v[i].start = start;
            }
            return CMN_OK;
        }
    }
    if (r->n == r->cap) {
        size_t cap = r->cap > 0 ? r->cap * 2 : 16;
        rb_range_t *v = realloc(r->v, cap * sizeof *v);
        if (v == NULL) {
            return CMN_ERR_NOMEM;
        }
        r->v = v;
        r->cap = cap;
    }
    char *copy = strdup(topic);
    if (copy == NULL) {
        return CMN_ERR_NOMEM;
    }
    r->v[r->n++] = (rb_range_t){.topic = copy, .partition = partition, .start = start, .end = -1, .done = 0};
    return CMN_OK;
}

static void kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    /* librdkafka's own chatter stays out of the JSON log stream; errors
     * surface through return codes instead. */
    (void)rk;
    (void)level;
    (void)fac;
    (void)buf;
}

router_readback_t *router_readback_new(const char *brokers, const char *const *extra, const cmn_log_t *log,
                                       char *errstr, size_t errlen)
{
    router_readback_t *rb = NULL;
    rd_kafka_conf_t *conf = NULL;
    char kerr[512];
    int ok = 0;

    if (brokers == NULL || brokers[0] == '\0') {
        snprintf(errstr, errlen, "read-back: no brokers");
        goto cleanup;
    }
    rb = calloc(1, sizeof *rb);
    conf = rd_kafka_conf_new();
    if (rb == NULL || conf == NULL) {
        snprintf(errstr, errlen, "read-back: out of memory");
        goto cleanup;
    }
    rb->log = log;
    /* The group id is never joined and nothing is committed (partitions are
     * assigned by hand); librdkafka only wants one for its consumer API. */
    const char *props[][2] = {
        {"bootstrap.servers", brokers},
        {"client.id", "crm-router-readback"},
        {"group.id", "crm-router-readback"},
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"enable.partition.eof", "true"},
        {"auto.offset.reset", "earliest"},
        {"isolation.level", "read_committed"},
    };
    for (size_t i = 0; i < sizeof props / sizeof props[0]; i++) {
        if (rd_kafka_conf_set(conf, props[i][0], props[i][1], kerr, sizeof kerr) != RD_KAFKA_CONF_OK) {
            snprintf(errstr, errlen, "read-back: %s", kerr);
            goto cleanup;
        }
    }
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++) {
        char kv[512];
        snprintf(kv, sizeof kv, "%s", extra[i]);
        char *eq = strchr(kv, '=');
        if (eq == NULL) {
            snprintf(errstr, errlen, "read-back: property \"%s\" is not key=value", extra[i]);
            goto cleanup;
        }
        *eq = '\0';
        if (rd_kafka_conf_set(conf, kv, eq + 1, kerr, sizeof kerr) != RD_KAFKA_CONF_OK) {
            snprintf(errstr, errlen, "read-back: %s", kerr);
            goto cleanup;
        }
    }
    rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
    rb->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, kerr, sizeof kerr);
    if (rb->rk == NULL) {
        snprintf(errstr, errlen, "read-back: %s", kerr);
        goto cleanup;
    }
    conf = NULL; /* owned by rk now */
    rd_kafka_poll_set_consumer(rb->rk);
    ok = 1;

cleanup:
    if (conf != NULL) {
        rd_kafka_conf_destroy(conf);
    }
    if (!ok) {
        router_readback_destroy(rb);
        return NULL;
    }
    return rb;
}

void router_readback_destroy(router_readback_t *rb)
{
    if (rb == NULL) {
        return;
    }
    if (rb->rk != NULL) {
        rd_kafka_consumer_close(rb->rk);
        rd_kafka_destroy(rb->rk);
    }
    free(rb);
}

static int topic_partitions(router_readback_t *rb, const char *topic, int timeout_ms, int *count, char *errstr,
                            size_t errlen)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rb->rk, topic, NULL);
    int rc = CMN_OK;
    if (rkt == NULL) {
        snprintf(errstr, errlen, "read-back: cannot open topic %s", topic);
        return CMN_ERR_KAFKA;
    }
    rd_kafka_resp_err_t err = rd_kafka_metadata(rb->rk, 0, rkt, &md, timeout_ms);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(errstr, errlen, "read-back: metadata of %s: %s", topic, rd_kafka_err2str(err));
        rc = err == RD_KAFKA_RESP_ERR__TIMED_OUT ? CMN_ERR_TIMEOUT : CMN_ERR_KAFKA;
        goto cleanup;
    }
    if (md->topic_cnt != 1 || md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR ||
        md->topics[0].partition_cnt <= 0) {
        snprintf(errstr, errlen, "read-back: topic %s: %s", topic,
                 md->topic_cnt == 1 ? rd_kafka_err2str(md->topics[0].err) : "not found");
        rc = CMN_ERR_KAFKA;
        goto cleanup;
    }
    *count = md->topics[0].partition_cnt;

cleanup:
    if (md != NULL) {
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(rkt);
    return rc;
}

/* Fills ranges[i].end with the current end offset of each range. */
static int query_ends(router_readback_t *rb, rb_ranges_t *r, int timeout_ms, char *errstr, size_t errlen)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)r->n);
    int rc = CMN_OK;
    if (list == NULL) {
        return CMN_ERR_NOMEM;
    }
    for (size_t i = 0; i < r->n; i++) {
        /* A timestamp of RD_KAFKA_OFFSET_END asks for the end offset; one
         * ListOffsets request per broker covers every partition. */
        rd_kafka_topic_partition_list_add(list, r->v[i].topic, r->v[i].partition)->offset = RD_KAFKA_OFFSET_END;
    }
    rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(rb->rk, list, timeout_ms);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(errstr, errlen, "read-back: end offsets: %s", rd_kafka_err2str(err));
        rc = err == RD_KAFKA_RESP_ERR__TIMED_OUT ? CMN_ERR_TIMEOUT : CMN_ERR_KAFKA;
        goto cleanup;
    }
    for (int i = 0; i < list->cnt; i++) {
        const rd_kafka_topic_partition_t *p = &list->elems[i];
        if (p->err != RD_KAFKA_RESP_ERR_NO_ERROR || p->offset < 0) {
            snprintf(errstr, errlen, "read-back: end offset of %s [%" PRId32 "]: %s", p->topic, p->partition,
                     rd_kafka_err2str(p->err));
            rc = CMN_ERR_KAFKA;
            goto cleanup;
        }
        r->v[i].end = p->offset;
    }

cleanup:
    rd_kafka_topic_partition_list_destroy(list);
    return rc;
}

int router_readback_fence(router_readback_t *rb, const char *const *topics, size_t ntopics, int timeout_ms,
                          char **out_json, char *errstr, size_t errlen)
{
    rb_ranges_t r = {0};
    cmn_buf_t json = CMN_BUF_INIT;
    int rc = CMN_OK;

    *out_json = NULL;
    for (size_t t = 0; rc == CMN_OK && t < ntopics; t++) {
        int count = 0;
        rc = topic_partitions(rb, topics[t], timeout_ms, &count, errstr, errlen);
        for (int p = 0; rc == CMN_OK && p < count; p++) {
            rc = ranges_add(&r, topics[t], p, 0);
        }
    }
    if (rc == CMN_OK && r.n > 0) {
        rc = query_ends(rb, &r, timeout_ms, errstr, errlen);
    }
    /* Ranges were added topic by topic, partition by partition, so each
     * topic's partitions are consecutive and in order. */
    if (rc == CMN_OK) {
        rc = cmn_buf_putc(&json, '{');
    }
    for (size_t i = 0; rc == CMN_OK && i < r.n; i++) {
        int starts_topic = i == 0 || strcmp(r.v[i - 1].topic, r.v[i].topic) != 0;
        int ends_topic = i + 1 == r.n || strcmp(r.v[i + 1].topic, r.v[i].topic) != 0;
        if (starts_topic) {
            if (i > 0) {
                rc = cmn_buf_putc(&json, ',');
            }
            if (rc == CMN_OK) {
                rc = cmn_buf_put_json_string(&json, r.v[i].topic);
            }
            if (rc == CMN_OK) {
                rc = cmn_buf_puts(&json, ":[");
            }
        }
        if (rc == CMN_OK) {
            rc = cmn_buf_printf(&json, "%s%" PRId64, starts_topic ? "" : ",", r.v[i].end);
        }
        if (rc == CMN_OK && ends_topic) {
            rc = cmn_buf_putc(&json, ']');
        }
    }
    if (rc == CMN_OK) {
        rc = cmn_buf_putc(&json, '}');
    }
    if (rc == CMN_OK) {
        *out_json = cmn_buf_steal(&json);
    }

    cmn_buf_free(&json);
    ranges_free(&r);
    return rc;
}

static rb_range_t *find_range(rb_ranges_t *r, const char *topic, int32_t partition);

/* Adds the ranges one query needs. */
static int add_query_ranges(rb_ranges_t *r, const router_readback_query_t *q, const char *const *all_topics,
                            size_t ntopics, char *errstr, size_t errlen)
{
    int rc = CMN_OK;
    json_object *fence = NULL;

    if (q->fence == NULL) {
        /* Partition -1 stands for "every partition, from the start"; it is
         * expanded once per topic by expand_partitions(). */
        for (size_t t = 0; rc == CMN_OK && t < ntopics; t++) {
            rc = ranges_add(r, all_topics[t], -1, 0);
        }
        return rc;
    }
    char perr[128];
    fence = cmn_json_parse(q->fence, strlen(q->fence), perr, sizeof perr);
    if (fence == NULL || !json_object_is_type(fence, json_type_object)) {
        snprintf(errstr, errlen, "read-back: stored output fence is not a JSON object");
        rc = CMN_ERR_PARSE;
        goto cleanup;
    }
    /* Topics missing from the fence were not send topics of the run that
     * took it, so that run produced nothing there. */
    json_object_object_foreach(fence, topic, offsets)
    {
        if (!json_object_is_type(offsets, json_type_array)) {
            snprintf(errstr, errlen, "read-back: stored output fence: %s is not an array", topic);
            rc = CMN_ERR_PARSE;
            goto cleanup;
        }
        size_t len = json_object_array_length(offsets);
        for (size_t p = 0; rc == CMN_OK && p < len; p++) {
            int64_t start = json_object_get_int64(json_object_array_get_idx(offsets, p));
            rc = ranges_add(r, topic, (int32_t)p, start > 0 ? start : 0);
        }
        if (rc != CMN_OK) {
            goto cleanup;
        }
    }

cleanup:
    json_object_put(fence);
    return rc;
}

/* Completes the ranges topic by topic from the cluster's metadata: a topic
 * marked with partition -1 is read whole from the start, and partitions a
 * fence does not list (added to the topic after the fence was taken) are read
 * from the start too, since the interrupted attempt may have written there. */
static int expand_partitions(router_readback_t *rb, rb_ranges_t *r, int timeout_ms, char *errstr, size_t errlen)
{
    int rc = CMN_OK;
    size_t n_before = r->n;
    for (size_t i = 0; rc == CMN_OK && i < n_before; i++) {
        int first_of_topic = 1;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(r->v[j].topic, r->v[i].topic) == 0) {
                first_of_topic = 0;
                break;
            }
        }
        if (!first_of_topic) {
            continue;
        }
        char topic[256];
        snprintf(topic, sizeof topic, "%s", r->v[i].topic);
        int whole = find_range(r, topic, -1) != NULL;
        int count = 0;
        rc = topic_partitions(rb, topic, timeout_ms, &count, errstr, errlen);
        for (int p = 0; rc == CMN_OK && p < count; p++) {
            rb_range_t *known = find_range(r, topic, p);
            if (whole && known != NULL) {
                known->start = 0;
            } else if (known == NULL) {
                rc = ranges_add(r, topic, p, 0);
            }
        }
    }
    /* Drop the -1 markers now that their topics are spelled out. */
    size_t k = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (r->v[i].partition < 0) {
            free(r->v[i].topic);
            continue;
        }
        r->v[k++] = r->v[i];
    }
    r->n = k;
    return rc;
}

static int cmp_query_ptr(const void *a, const void *b)
{
    const router_readback_query_t *x = *(const router_readback_query_t *const *)a;
    const router_readback_query_t *y = *(const router_readback_query_t *const *)b;
    return strcmp(x->communication_id, y->communication_id);
}

static int cmp_id_query(const void *key, const void *elem)
{
    const router_readback_query_t *q = *(const router_readback_query_t *const *)elem;
    return strcmp(key, q->communication_id);
}

/* Looks at one consumed Dispatch and answers every query it matches. */
static void match_record(const rd_kafka_message_t *m, const char *topic, router_readback_query_t **sorted,
                         size_t n)
{
    char perr[64];
    int64_t hop = 0;
    json_object *obj = NULL;

    if (m->payload == NULL || m->len == 0) {
        return;
    }
    obj = cmn_json_parse(m->payload, m->len, perr, sizeof perr);
    if (obj == NULL) {
        return; /* not a Dispatch of ours: nothing to learn from it */
    }
    const char *id = cmn_json_get_string(obj, "communication_id");
    if (id == NULL || (cmn_json_get_int64(obj, "hop", &hop) == CMN_OK && hop != 0)) {
        goto cleanup;
    }
    router_readback_query_t **hit = bsearch(id, sorted, n, sizeof *sorted, cmp_id_query);
    if (hit == NULL) {
        goto cleanup;
    }
    cmn_channel_t c = cmn_channel_parse(cmn_json_get_string(obj, "channel"));
    if (c == CMN_CHANNEL_NONE && topic != NULL && strncmp(topic, SEND_PREFIX, strlen(SEND_PREFIX)) == 0) {
        c = cmn_channel_parse(topic + strlen(SEND_PREFIX));
    }
    /* Several queries may carry the same id (a retried batch); answer all. */
    while (hit > sorted && strcmp((*(hit - 1))->communication_id, id) == 0) {
        hit--;
    }
    for (; hit < sorted + n && strcmp((*hit)->communication_id, id) == 0; hit++) {
        (*hit)->found = c;
    }

cleanup:
    json_object_put(obj);
}

static rb_range_t *find_range(rb_ranges_t *r, const char *topic, int32_t partition)
{
    for (size_t i = 0; i < r->n; i++) {
        if (r->v[i].partition == partition && strcmp(r->v[i].topic, topic) == 0) {
            return &r->v[i];
        }
    }
    return NULL;
}

int router_readback_find(router_readback_t *rb, router_readback_query_t *q, size_t n,
                         const char *const *all_topics, size_t ntopics, int timeout_ms, char *errstr,
                         size_t errlen)
{
    rb_ranges_t r = {0};
    router_readback_query_t **sorted = NULL;
    rd_kafka_topic_partition_list_t *assign = NULL;
    int assigned = 0;
    int rc = CMN_OK;
    size_t remaining = 0;

    for (size_t i = 0; i < n; i++) {
        q[i].found = CMN_CHANNEL_NONE;
    }
    if (n == 0) {
        return CMN_OK;
    }
    sorted = malloc(n * sizeof *sorted);
    if (sorted == NULL) {
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++) {
        sorted[i] = &q[i];
    }
    qsort(sorted, n, sizeof *sorted, cmp_query_ptr);

    for (size_t i = 0; rc == CMN_OK && i < n; i++) {
        rc = add_query_ranges(&r, &q[i], all_topics, ntopics, errstr, errlen);
    }
    if (rc == CMN_OK) {
        rc = expand_partitions(rb, &r, timeout_ms, errstr, errlen);
    }
    if (rc != CMN_OK || r.n == 0) {
        goto cleanup;
    }
    rc = query_ends(rb, &r, timeout_ms, errstr, errlen);
    if (rc != CMN_OK) {
        goto cleanup;
    }
    assign = rd_kafka_topic_partition_list_new((int)r.n);
    if (assign == NULL) {
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    for (size_t i = 0; i < r.n; i++) {
        if (r.v[i].start >= r.v[i].end) {
            r.v[i].done = 1; /* nothing was written there since the fence */
            continue;
        }
        rd_kafka_topic_partition_list_add(assign, r.v[i].topic, r.v[i].partition)->offset = r.v[i].start;
        remaining++;
    }
    if (remaining == 0) {
        goto cleanup;
    }
    rd_kafka_resp_err_t err = rd_kafka_assign(rb->rk, assign);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(errstr, errlen, "read-back: assign: %s", rd_kafka_err2str(err));
        rc = CMN_ERR_KAFKA;
        goto cleanup;
    }
    assigned = 1;

    int64_t deadline = cmn_monotonic_ms() + timeout_ms;
    while (remaining > 0) {
        int64_t left = deadline - cmn_monotonic_ms();
        if (left <= 0) {
            snprintf(errstr, errlen, "read-back: %zu partition(s) not read to their end in %d ms", remaining,
                     timeout_ms);
            rc = CMN_ERR_TIMEOUT;
            goto cleanup;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rb->rk, left < 100 ? (int)left : 100);
        if (m == NULL) {
            continue;
        }
        rb_range_t *range = m->rkt != NULL ? find_range(&r, rd_kafka_topic_name(m->rkt), m->partition) : NULL;
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            match_record(m, m->rkt != NULL ? rd_kafka_topic_name(m->rkt) : NULL, sorted, n);
        } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            /* Transient fetch errors are retried by librdkafka; the deadline
             * bounds how long that may take. */
            cmn_log_debug(rb->log, NULL, "read-back: %s", rd_kafka_message_errstr(m));
            range = NULL;
        }
        /* A partition is finished once a record at end - 1 or the end of the
         * partition has been seen (the offset of an EOF event is the end). */
        if (range != NULL && !range->done &&
            (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF ? m->offset >= range->end : m->offset >= range->end - 1)) {
            range->done = 1;
            remaining--;
        }
        rd_kafka_message_destroy(m);
    }

cleanup:
    if (assigned) {
        rd_kafka_assign(rb->rk, NULL);
    }
    if (assign != NULL) {
        rd_kafka_topic_partition_list_destroy(assign);
    }
    if (rc == CMN_ERR_NOMEM) {
        snprintf(errstr, errlen, "read-back: out of memory");
    }
    free(sorted);
    ranges_free(&r);
    return rc;
}
