/* crmctl_dlq.c - `crmctl dlq list | replay` (see crmctl_dlq.h and
 * docs/operations.md).
 *
 * Both read crm.dlq with a temporary consumer: partitions are assigned by
 * hand (no group membership, so nothing rebalances and no offset is
 * committed by reading), from the start of the log or from --since through
 * offsetsForTimes, up to the end offsets taken when the command starts. The
 * consumer still names the group CRMCTL_DLQ_GROUP: that is where the
 * replayed marks live, read by both commands and committed by a replay. */
#include "crmctl_dlq.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "crm/buf.h"
#include "crm/err.h"
#include "crm/kafka.h"
#include "crm/log.h"
#include "crm/time.h"
#include "crmctl.h"

/* Timeout of one metadata, watermark, committed-offset or offsets-for-times request. */
#define DLQ_REQUEST_TIMEOUT_MS 15000
/* Reading gives up when no partition advanced for this long. */
#define DLQ_STALL_TIMEOUT_MS 30000
/* How long a replay waits for its produces to be acknowledged. */
#define DLQ_PRODUCE_TIMEOUT_MS 60000
/* Marks metadata starts with this, so foreign metadata is never misread. */
#define DLQ_MARKS_PREFIX "crmctl-dlq-replay/1 "

/* ------------------------------------------------------------ pure parts */

static int dlq_parse_long(const char *s, long lo, long hi, long *out)
{
    char *end = NULL;
    if (s == NULL || !isdigit((unsigned char)s[0]))
        return CMN_ERR_INVALID;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi)
        return CMN_ERR_INVALID;
    *out = v;
    return 0;
}

int crmctl_dlq_parse_since(const char *s, int64_t now_ms, int64_t *out_ms)
{
    if (s == NULL || s[0] == '\0' || out_ms == NULL)
        return CMN_ERR_INVALID;
    int64_t t = 0;
    if (cmn_time_parse_rfc3339(s, &t) == 0) {
        if (t <= 0)
            return CMN_ERR_INVALID;
        *out_ms = t;
        return 0;
    }
    int64_t total = 0;
    const char *p = s;
    while (*p != '\0') {
        if (!isdigit((unsigned char)*p))
            return CMN_ERR_INVALID;
        int64_t n = 0;
        while (isdigit((unsigned char)*p)) {
            n = n * 10 + (*p - '0');
            if (n > 100000000)
                return CMN_ERR_INVALID;
            p++;
        }
        int64_t unit = 0;
        switch (*p) {
        case 's': unit = 1000; break;
        case 'm': unit = 60000; break;
        case 'h': unit = 3600000; break;
        case 'd': unit = 86400000; break;
        default: return CMN_ERR_INVALID;
        }
        p++;
        total += n * unit;
        /* Ten years back is further than any retention. */
        if (total > (int64_t)3650 * 86400000)
            return CMN_ERR_INVALID;
    }
    if (total <= 0 || total >= now_ms)
        return CMN_ERR_INVALID;
    *out_ms = now_ms - total;
    return 0;
}

static int dlq_bad(char *err, size_t errlen, const char *msg)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", msg);
    return CMN_ERR_INVALID;
}

int crmctl_dlq_parse_args(int argc, char **argv, int64_t now_ms, crmctl_dlq_opts_t *o, char *err, size_t errlen)
{
    if (o == NULL || argv == NULL)
        return CMN_ERR_INVALID;
    memset(o, 0, sizeof(*o));
    if (argc < 2)
        return dlq_bad(err, errlen, "a subcommand is required: list or replay");
    if (strcmp(argv[1], "replay") == 0)
        o->replay = 1;
    else if (strcmp(argv[1], "list") != 0)
        return dlq_bad(err, errlen, "unknown subcommand: use list or replay");
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--since") == 0) {
            if (v == NULL || crmctl_dlq_parse_since(v, now_ms, &o->filter.since_ms) != 0)
                return dlq_bad(err, errlen, "--since takes an RFC 3339 time or a duration such as 90m, 2h, 7d");
            i++;
        } else if (strcmp(a, "--reason") == 0) {
            if (v == NULL || v[0] == '\0')
                return dlq_bad(err, errlen, "--reason takes a non-empty text to look for in the reason");
            o->filter.reason = v;
            i++;
        } else if (strcmp(a, "--source-topic") == 0) {
            if (v == NULL || v[0] == '\0')
                return dlq_bad(err, errlen, "--source-topic takes a topic name");
            o->filter.source_topic = v;
            i++;
        } else if (!o->replay && strcmp(a, "--limit") == 0) {
            if (v == NULL || dlq_parse_long(v, 1, 10000000, &o->limit) != 0)
                return dlq_bad(err, errlen, "--limit takes a whole number from 1 to 10000000");
            i++;
        } else if (!o->replay && strcmp(a, "--json") == 0) {
            o->json = 1;
        } else if (!o->replay && strcmp(a, "--show-value") == 0) {
            o->show_value = 1;
        } else if (o->replay && strcmp(a, "--dry-run") == 0) {
            o->dry_run = 1;
        } else if (o->replay && strcmp(a, "--all") == 0) {
            o->all = 1;
        } else {
            if (err != NULL && errlen > 0)
                snprintf(err, errlen, "unknown option for dlq %s: %s", argv[1], a);
            return CMN_ERR_INVALID;
        }
    }
    return 0;
}

/* Case-insensitive search of needle in a text that is not NUL-terminated. */
static int dlq_contains_ci(const char *hay, size_t hlen, const char *needle)
{
    size_t nlen = strlen(needle);
    if (nlen == 0)
        return 1;
    for (size_t i = 0; hay != NULL && i + nlen <= hlen; i++) {
        if (strncasecmp(hay + i, needle, nlen) == 0)
            return 1;
    }
    return 0;
}

int crmctl_dlq_matches(const crmctl_dlq_filter_t *f, const char *reason, size_t reason_len, const char *source_topic,
                       size_t source_topic_len, int64_t timestamp_ms)
{
    if (f == NULL)
        return 1;
    /* offsetsForTimes already starts at --since, but with CreateTime a
     * later record can carry an earlier timestamp. */
    if (f->since_ms > 0 && timestamp_ms >= 0 && timestamp_ms < f->since_ms)
        return 0;
    if (f->reason != NULL && (reason == NULL || !dlq_contains_ci(reason, reason_len, f->reason)))
        return 0;
    if (f->source_topic != NULL &&
        (source_topic == NULL || source_topic_len != strlen(f->source_topic) ||
         memcmp(source_topic, f->source_topic, source_topic_len) != 0))
        return 0;
    return 1;
}

int crmctl_dlq_target_ok(const char *topic, size_t len)
{
    char name[256];
    if (topic == NULL || len == 0 || len >= sizeof(name))
        return 0;
    memcpy(name, topic, len);
    name[len] = '\0';
    /* Replaying into crm.dlq would only move the dead letter in a circle. */
    if (strcmp(name, CMN_TOPIC_DLQ) == 0)
        return 0;
    return cmn_kafka_topic_find(name) != NULL;
}

void crmctl_dlq_communication_id(const char *value, size_t len, char *out, size_t outlen)
{
    if (out == NULL || outlen == 0)
        return;
    out[0] = '\0';
    if (value == NULL || len == 0 || len > 16 * 1024 * 1024)
        return;
    json_tokener *tok = json_tokener_new();
    if (tok == NULL)
        return;
    json_object *obj = json_tokener_parse_ex(tok, value, (int)len);
    json_object *id = NULL;
    if (obj != NULL && json_object_is_type(obj, json_type_object) &&
        json_object_object_get_ex(obj, "communication_id", &id) && json_object_is_type(id, json_type_string))
        snprintf(out, outlen, "%s", json_object_get_string(id));
    json_object_put(obj);
    json_tokener_free(tok);
}

int crmctl_dlq_marks_contains(const crmctl_dlq_marks_t *m, int64_t offset)
{
    if (m == NULL)
        return 0;
    if (offset < m->next)
        return 1;
    for (size_t i = 0; i < m->n; i++) {
        if (offset >= m->ranges[i].lo && offset <= m->ranges[i].hi)
            return 1;
    }
    return 0;
}

/* Folds ranges that reach next into next. */
static void dlq_marks_settle(crmctl_dlq_marks_t *m)
{
    size_t drop = 0;
    while (drop < m->n && m->ranges[drop].lo <= m->next) {
        if (m->ranges[drop].hi + 1 > m->next)
            m->next = m->ranges[drop].hi + 1;
        drop++;
    }
    if (drop > 0) {
        memmove(m->ranges, m->ranges + drop, (m->n - drop) * sizeof(*m->ranges));
        m->n -= drop;
    }
}

int crmctl_dlq_marks_add(crmctl_dlq_marks_t *m, int64_t offset)
{
    if (m == NULL || offset < 0)
        return CMN_ERR_INVALID;
    if (crmctl_dlq_marks_contains(m, offset))
        return 0;
    size_t i = 0;
    while (i < m->n && m->ranges[i].hi < offset)
        i++;
    /* Extends the range before it, the range after it, or both (joining them). */
    int joins_prev = i > 0 && m->ranges[i - 1].hi + 1 == offset;
    int joins_next = i < m->n && m->ranges[i].lo == offset + 1;
    if (joins_prev && joins_next) {
        m->ranges[i - 1].hi = m->ranges[i].hi;
        memmove(m->ranges + i, m->ranges + i + 1, (m->n - i - 1) * sizeof(*m->ranges));
        m->n--;
    } else if (joins_prev) {
        m->ranges[i - 1].hi = offset;
    } else if (joins_next) {
        m->ranges[i].lo = offset;
    } else {
        if (m->n == m->cap) {
            size_t cap = m->cap > 0 ? m->cap * 2 : 8;
            crmctl_dlq_range_t *r = realloc(m->ranges, cap * sizeof(*r));
            if (r == NULL)
                return CMN_ERR_NOMEM;
            m->ranges = r;
            m->cap = cap;
        }
        memmove(m->ranges + i + 1, m->ranges + i, (m->n - i) * sizeof(*m->ranges));
        m->ranges[i].lo = offset;
        m->ranges[i].hi = offset;
        m->n++;
    }
    dlq_marks_settle(m);
    return 0;
}

int crmctl_dlq_marks_load(crmctl_dlq_marks_t *m, int64_t committed, const char *metadata, size_t metadata_len,
                          int64_t log_start)
{
    if (m == NULL)
        return CMN_ERR_INVALID;
    memset(m, 0, sizeof(*m));
    m->next = committed > 0 ? committed : 0;
    if (log_start > m->next)
        m->next = log_start;
    size_t plen = strlen(DLQ_MARKS_PREFIX);
    if (metadata == NULL || metadata_len <= plen || memcmp(metadata, DLQ_MARKS_PREFIX, plen) != 0)
        return 0;
    /* Parse "lo-hi,lo-hi"; anything malformed ends the list, which at
     * worst offers a dead letter for replay again (the router's claims
     * still drop a duplicate request). */
    const char *p = metadata + plen, *end = metadata + metadata_len;
    while (p < end) {
        int64_t lo = 0, hi = 0;
        int digits = 0;
        while (p < end && isdigit((unsigned char)*p) && digits++ < 18)
            lo = lo * 10 + (*p++ - '0');
        if (digits == 0 || p >= end || *p != '-')
            break;
        p++;
        digits = 0;
        while (p < end && isdigit((unsigned char)*p) && digits++ < 18)
            hi = hi * 10 + (*p++ - '0');
        if (digits == 0 || hi < lo || hi - lo > 100000000)
            break;
        for (int64_t o = lo; o <= hi; o++) {
            if (crmctl_dlq_marks_add(m, o) != 0)
                return CMN_ERR_NOMEM;
        }
        if (p < end && *p == ',')
            p++;
        else
            break;
    }
    return 0;
}

int crmctl_dlq_marks_format(const crmctl_dlq_marks_t *m, char *out, size_t outlen)
{
    if (m == NULL || out == NULL || outlen == 0)
        return CMN_ERR_INVALID;
    size_t limit = outlen - 1 < CRMCTL_DLQ_MARKS_MAX ? outlen - 1 : CRMCTL_DLQ_MARKS_MAX;
    int n = snprintf(out, outlen, "%s", DLQ_MARKS_PREFIX);
    size_t used = (size_t)n;
    for (size_t i = 0; i < m->n; i++) {
        char part[48];
        int k = snprintf(part, sizeof(part), "%s%" PRId64 "-%" PRId64, i > 0 ? "," : "", m->ranges[i].lo,
                         m->ranges[i].hi);
        if (used + (size_t)k > limit) {
            out[0] = '\0';
            return CMN_ERR_OVERFLOW;
        }
        memcpy(out + used, part, (size_t)k + 1);
        used += (size_t)k;
    }
    return 0;
}

int crmctl_dlq_marks_copy(crmctl_dlq_marks_t *dst, const crmctl_dlq_marks_t *src)
{
    if (dst == NULL || src == NULL)
        return CMN_ERR_INVALID;
    memset(dst, 0, sizeof(*dst));
    dst->next = src->next;
    if (src->n == 0)
        return 0;
    dst->ranges = malloc(src->n * sizeof(*dst->ranges));
    if (dst->ranges == NULL)
        return CMN_ERR_NOMEM;
    memcpy(dst->ranges, src->ranges, src->n * sizeof(*dst->ranges));
    dst->n = dst->cap = src->n;
    return 0;
}

void crmctl_dlq_marks_free(crmctl_dlq_marks_t *m)
{
    if (m == NULL)
        return;
    free(m->ranges);
    memset(m, 0, sizeof(*m));
}

/* ------------------------------------------------------------- reading */

/* One dead letter read from crm.dlq. Strings are copies, NUL-terminated. */
typedef struct dlq_entry {
    int32_t partition;
    int64_t offset;
    int64_t timestamp_ms;
    char *key;                 /* NULL when the record has none */
    size_t key_len;
    char *value;               /* NULL for a tombstone */
    size_t value_len;
    rd_kafka_headers_t *headers; /* detached from the message; may be NULL */
    int replayed;              /* covered by the replayed marks */
} dlq_entry_t;

/* Per-partition reading state. */
typedef struct dlq_part {
    int64_t low, high;         /* watermarks when the command started */
    int64_t start;             /* first offset to read */
    int done;
    crmctl_dlq_marks_t marks;
    crmctl_dlq_marks_t before; /* the marks as loaded, to see what changed */
} dlq_part_t;

typedef struct dlq_run {
    const crmctl_dlq_opts_t *o;
    const char *brokers;
    cmn_log_t log;
    rd_kafka_t *rk;            /* the temporary consumer */
    int32_t nparts;
    dlq_part_t *parts;
    dlq_entry_t *entries;
    size_t n, cap;
} dlq_run_t;

static const char *dlq_header(const dlq_entry_t *e, const char *name, size_t *len)
{
    const void *v = NULL;
    size_t sz = 0;
    *len = 0;
    if (e->headers == NULL || rd_kafka_header_get_last(e->headers, name, &v, &sz) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return NULL;
    *len = sz;
    return v;
}

/* A header as a NUL-terminated string in out ("" when absent). */
static const char *dlq_header_str(const dlq_entry_t *e, const char *name, char *out, size_t outlen)
{
    size_t len = 0;
    const char *v = dlq_header(e, name, &len);
    if (v == NULL)
        len = 0;
    if (len >= outlen)
        len = outlen - 1;
    if (len > 0)
        memcpy(out, v, len);
    out[len] = '\0';
    return out;
}

static void dlq_entries_free(dlq_run_t *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->entries[i].key);
        free(r->entries[i].value);
        if (r->entries[i].headers != NULL)
            rd_kafka_headers_destroy(r->entries[i].headers);
    }
    free(r->entries);
    r->entries = NULL;
    r->n = r->cap = 0;
}

static char *dlq_dup(const void *p, size_t len)
{
    char *s = malloc(len + 1);
    if (s == NULL)
        return NULL;
    if (len > 0)
        memcpy(s, p, len);
    s[len] = '\0';
    return s;
}

static int dlq_consumer_new(dlq_run_t *r, char *err, size_t errlen)
{
    char rderr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* Reading never commits: the group exists only to hold the replayed
     * marks, which a replay commits explicitly. */
    const char *props[] = {
        "bootstrap.servers", r->brokers,          "group.id",           CRMCTL_DLQ_GROUP,
        "client.id",         "crmctl-dlq",        "enable.auto.commit", "false",
        "enable.auto.offset.store", "false",      "enable.partition.eof", "true",
        "auto.offset.reset", "earliest",          "log_level",          "3",
        NULL,
    };
    for (size_t i = 0; props[i] != NULL; i += 2) {
        if (rd_kafka_conf_set(conf, props[i], props[i + 1], rderr, sizeof(rderr)) != RD_KAFKA_CONF_OK) {
            snprintf(err, errlen, "kafka configuration: %s", rderr);
            rd_kafka_conf_destroy(conf);
            return CMN_ERR_CONFIG;
        }
    }
    r->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, rderr, sizeof(rderr));
    if (r->rk == NULL) {
        snprintf(err, errlen, "kafka consumer: %s", rderr);
        rd_kafka_conf_destroy(conf);
        return CMN_ERR_KAFKA;
    }
    rd_kafka_poll_set_consumer(r->rk);
    return 0;
}

/* Partition count, watermarks, replayed marks and start offsets. */
static int dlq_plan(dlq_run_t *r, char *err, size_t errlen)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(r->rk, CMN_TOPIC_DLQ, NULL);
    rd_kafka_topic_partition_list_t *committed = NULL, *times = NULL;
    int rc = 0;

    if (rkt == NULL) {
        snprintf(err, errlen, "cannot open %s", CMN_TOPIC_DLQ);
        return CMN_ERR_KAFKA;
    }
    rd_kafka_resp_err_t kerr = rd_kafka_metadata(r->rk, 0, rkt, &md, DLQ_REQUEST_TIMEOUT_MS);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR || md->topic_cnt != 1 ||
        md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "no metadata for %s from %s: %s", CMN_TOPIC_DLQ, r->brokers,
                 rd_kafka_err2str(kerr != RD_KAFKA_RESP_ERR_NO_ERROR ? kerr : md->topics[0].err));
        rc = CMN_ERR_UNAVAILABLE;
        goto cleanup;
    }
    r->nparts = md->topics[0].partition_cnt;
    r->parts = calloc((size_t)r->nparts + 1, sizeof(*r->parts));
    committed = rd_kafka_topic_partition_list_new(r->nparts);
    times = rd_kafka_topic_partition_list_new(r->nparts);
    if (r->parts == NULL || committed == NULL || times == NULL) {
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    for (int32_t p = 0; p < r->nparts; p++) {
        kerr = rd_kafka_query_watermark_offsets(r->rk, CMN_TOPIC_DLQ, p, &r->parts[p].low, &r->parts[p].high,
                                                DLQ_REQUEST_TIMEOUT_MS);
        if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(err, errlen, "end offsets of %s [%d]: %s", CMN_TOPIC_DLQ, (int)p, rd_kafka_err2str(kerr));
            rc = CMN_ERR_KAFKA;
            goto cleanup;
        }
        rd_kafka_topic_partition_list_add(committed, CMN_TOPIC_DLQ, p);
        rd_kafka_topic_partition_list_add(times, CMN_TOPIC_DLQ, p)->offset = r->o->filter.since_ms;
    }
    kerr = rd_kafka_committed(r->rk, committed, DLQ_REQUEST_TIMEOUT_MS);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "replayed marks of group %s: %s", CRMCTL_DLQ_GROUP, rd_kafka_err2str(kerr));
        rc = CMN_ERR_KAFKA;
        goto cleanup;
    }
    /* librdkafka's mock cluster answers every timestamp lookup with "end of
     * the log", so there --since reads each partition from its start and
     * the timestamp filter alone decides. */
    int lookup_times = r->o->filter.since_ms > 0;
    char *cluster_id = lookup_times ? rd_kafka_clusterid(r->rk, DLQ_REQUEST_TIMEOUT_MS) : NULL;
    if (cluster_id != NULL && strncmp(cluster_id, "mockCluster", 11) == 0)
        lookup_times = 0;
    if (cluster_id != NULL)
        rd_kafka_mem_free(r->rk, cluster_id);
    if (lookup_times) {
        kerr = rd_kafka_offsets_for_times(r->rk, times, DLQ_REQUEST_TIMEOUT_MS);
        if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(err, errlen, "offsets for --since: %s", rd_kafka_err2str(kerr));
            rc = CMN_ERR_KAFKA;
            goto cleanup;
        }
    }
    for (int32_t p = 0; p < r->nparts; p++) {
        dlq_part_t *dp = &r->parts[p];
        const rd_kafka_topic_partition_t *c = &committed->elems[p];
        if (crmctl_dlq_marks_load(&dp->marks, c->err == RD_KAFKA_RESP_ERR_NO_ERROR ? c->offset : -1, c->metadata,
                                  c->metadata_size, dp->low) != 0 ||
            crmctl_dlq_marks_copy(&dp->before, &dp->marks) != 0) {
            rc = CMN_ERR_NOMEM;
            goto cleanup;
        }
        dp->start = dp->low;
        if (lookup_times) {
            /* -1 (end): nothing in this partition is as recent as --since. */
            int64_t t = times->elems[p].offset;
            dp->start = t >= 0 ? t : dp->high;
        }
        /* A replay reads the same records as a list and skips the ones
         * the marks cover, so its summary can say how many it skipped. */
        if (dp->start < dp->low)
            dp->start = dp->low;
        dp->done = dp->start >= dp->high;
    }

cleanup:
    if (committed != NULL)
        rd_kafka_topic_partition_list_destroy(committed);
    if (times != NULL)
        rd_kafka_topic_partition_list_destroy(times);
    if (md != NULL)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return rc;
}

static int dlq_keep(dlq_run_t *r, rd_kafka_message_t *m)
{
    if (r->n == r->cap) {
        size_t cap = r->cap > 0 ? r->cap * 2 : 64;
        dlq_entry_t *e = realloc(r->entries, cap * sizeof(*e));
        if (e == NULL)
            return CMN_ERR_NOMEM;
        r->entries = e;
        r->cap = cap;
    }
    dlq_entry_t *e = &r->entries[r->n];
    memset(e, 0, sizeof(*e));
    e->partition = m->partition;
    e->offset = m->offset;
    e->timestamp_ms = rd_kafka_message_timestamp(m, NULL);
    if (m->key != NULL) {
        e->key = dlq_dup(m->key, m->key_len);
        e->key_len = m->key_len;
    }
    if (m->payload != NULL) {
        e->value = dlq_dup(m->payload, m->len);
        e->value_len = m->len;
    }
    if ((m->key != NULL && e->key == NULL) || (m->payload != NULL && e->value == NULL)) {
        free(e->key);
        free(e->value);
        return CMN_ERR_NOMEM;
    }
    rd_kafka_message_detach_headers(m, &e->headers);
    r->n++;
    return 0;
}

static int dlq_transient(rd_kafka_resp_err_t e)
{
    return e == RD_KAFKA_RESP_ERR__TRANSPORT || e == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN ||
           e == RD_KAFKA_RESP_ERR__RESOLVE || e == RD_KAFKA_RESP_ERR__TIMED_OUT ||
           e == RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION || e == RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT ||
           e == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE;
}

/* Reads every partition from its start up to the end offset taken in
 * dlq_plan, keeping the records that pass the filter. */
static int dlq_read(dlq_run_t *r, char *err, size_t errlen)
{
    rd_kafka_topic_partition_list_t *assign = rd_kafka_topic_partition_list_new(r->nparts);
    int rc = 0, remaining = 0;
    if (assign == NULL)
        return CMN_ERR_NOMEM;
    for (int32_t p = 0; p < r->nparts; p++) {
        if (r->parts[p].done)
            continue;
        rd_kafka_topic_partition_list_add(assign, CMN_TOPIC_DLQ, p)->offset = r->parts[p].start;
        remaining++;
    }
    if (remaining == 0)
        goto cleanup;
    rd_kafka_resp_err_t kerr = rd_kafka_assign(r->rk, assign);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "assign %s: %s", CMN_TOPIC_DLQ, rd_kafka_err2str(kerr));
        rc = CMN_ERR_KAFKA;
        goto cleanup;
    }
    int64_t last_progress = cmn_monotonic_ms();
    while (remaining > 0) {
        if (cmn_monotonic_ms() - last_progress > DLQ_STALL_TIMEOUT_MS) {
            snprintf(err, errlen, "reading %s stalled for %d s with %d partition(s) unfinished", CMN_TOPIC_DLQ,
                     DLQ_STALL_TIMEOUT_MS / 1000, remaining);
            rc = CMN_ERR_TIMEOUT;
            break;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(r->rk, 500);
        if (m == NULL)
            continue;
        int32_t p = m->partition;
        if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            /* Connection trouble is retried by librdkafka (and the stall
             * timeout ends a real outage); anything else is final. */
            if (!dlq_transient(m->err)) {
                snprintf(err, errlen, "reading %s [%d]: %s", CMN_TOPIC_DLQ, (int)p, rd_kafka_message_errstr(m));
                rc = CMN_ERR_KAFKA;
                rd_kafka_message_destroy(m);
                break;
            }
            rd_kafka_message_destroy(m);
            continue;
        }
        if (p < 0 || p >= r->nparts || r->parts[p].done) {
            rd_kafka_message_destroy(m);
            continue;
        }
        dlq_part_t *dp = &r->parts[p];
        last_progress = cmn_monotonic_ms();
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && m->offset < dp->high) {
            dlq_entry_t probe = {.headers = NULL};
            rd_kafka_headers_t *h = NULL;
            rd_kafka_message_headers(m, &h);
            probe.headers = h;
            size_t rlen = 0, slen = 0;
            const char *reason = dlq_header(&probe, CMN_HDR_DLQ_REASON, &rlen);
            const char *src = dlq_header(&probe, CMN_HDR_DLQ_SOURCE_TOPIC, &slen);
            if (crmctl_dlq_matches(&r->o->filter, reason, rlen, src, slen, rd_kafka_message_timestamp(m, NULL))) {
                rc = dlq_keep(r, m);
                if (rc != 0) {
                    rd_kafka_message_destroy(m);
                    break;
                }
                r->entries[r->n - 1].replayed = crmctl_dlq_marks_contains(&dp->marks, m->offset);
            }
        }
        /* The end offset may belong to a transaction marker that is never
         * delivered, so EOF (whose offset is the next position) also ends
         * a partition. */
        if ((m->err == RD_KAFKA_RESP_ERR_NO_ERROR && m->offset + 1 >= dp->high) ||
            (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF && m->offset >= dp->high)) {
            dp->done = 1;
            remaining--;
        }
        rd_kafka_message_destroy(m);
    }

cleanup:
    rd_kafka_topic_partition_list_destroy(assign);
    return rc;
}

static int dlq_cmp_time(const void *a, const void *b)
{
    const dlq_entry_t *x = a, *y = b;
    if (x->timestamp_ms != y->timestamp_ms)
        return x->timestamp_ms < y->timestamp_ms ? -1 : 1;
    if (x->partition != y->partition)
        return x->partition < y->partition ? -1 : 1;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int dlq_cmp_offset(const void *a, const void *b)
{
    const dlq_entry_t *x = a, *y = b;
    if (x->partition != y->partition)
        return x->partition < y->partition ? -1 : 1;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* ------------------------------------------------------------------ list */

/* Appends a possibly binary, not NUL-terminated text as a JSON string:
 * printable and safe on a terminal whatever the bytes are. */
static void dlq_put_json_bytes(cmn_buf_t *b, const char *s, size_t len)
{
    char *copy = dlq_dup(s != NULL ? s : "", s != NULL ? len : 0);
    if (copy == NULL)
        return;
    /* Embedded NULs would end the string early; show them as spaces. */
    for (size_t i = 0; i < len; i++) {
        if (copy[i] == '\0')
            copy[i] = ' ';
    }
    cmn_buf_put_json_string(b, copy);
    free(copy);
}

static void dlq_print_entry(const crmctl_dlq_opts_t *o, const dlq_entry_t *e)
{
    char ts[40] = "-", src[256], sp[24], so[24], svc[128], reason[1024], cid[128];
    cmn_buf_t b = CMN_BUF_INIT;
    if (e->timestamp_ms >= 0)
        cmn_time_format_rfc3339(e->timestamp_ms, ts, sizeof(ts));
    dlq_header_str(e, CMN_HDR_DLQ_SOURCE_TOPIC, src, sizeof(src));
    dlq_header_str(e, CMN_HDR_DLQ_SOURCE_PARTITION, sp, sizeof(sp));
    dlq_header_str(e, CMN_HDR_DLQ_SOURCE_OFFSET, so, sizeof(so));
    dlq_header_str(e, CMN_HDR_DLQ_SERVICE, svc, sizeof(svc));
    dlq_header_str(e, CMN_HDR_DLQ_REASON, reason, sizeof(reason));
    crmctl_dlq_communication_id(e->value, e->value_len, cid, sizeof(cid));
    if (o->json) {
        cmn_buf_puts(&b, "{\"timestamp\":");
        cmn_buf_put_json_string(&b, ts);
        cmn_buf_printf(&b, ",\"partition\":%d,\"offset\":%" PRId64 ",\"source_topic\":", (int)e->partition,
                       e->offset);
        cmn_buf_put_json_string(&b, src);
        cmn_buf_printf(&b, ",\"source_partition\":%s,\"source_offset\":%s,\"service\":", sp[0] ? sp : "null",
                       so[0] ? so : "null");
        cmn_buf_put_json_string(&b, svc);
        cmn_buf_puts(&b, ",\"reason\":");
        cmn_buf_put_json_string(&b, reason);
        cmn_buf_puts(&b, ",\"communication_id\":");
        if (cid[0] != '\0')
            cmn_buf_put_json_string(&b, cid);
        else
            cmn_buf_puts(&b, "null");
        cmn_buf_puts(&b, ",\"key\":");
        if (e->key != NULL)
            dlq_put_json_bytes(&b, e->key, e->key_len);
        else
            cmn_buf_puts(&b, "null");
        cmn_buf_printf(&b, ",\"replayed\":%s", e->replayed ? "true" : "false");
        if (o->show_value) {
            cmn_buf_puts(&b, ",\"value\":");
            if (e->value != NULL)
                dlq_put_json_bytes(&b, e->value, e->value_len);
            else
                cmn_buf_puts(&b, "null");
        }
        cmn_buf_putc(&b, '}');
    } else {
        cmn_buf_printf(&b, "%s  dlq %d:%" PRId64 "  from %s/%s:%s  service=%s  reason=", ts, (int)e->partition,
                       e->offset, src[0] ? src : "?", sp[0] ? sp : "?", so[0] ? so : "?", svc[0] ? svc : "?");
        cmn_buf_put_json_string(&b, reason);
        if (cid[0] != '\0')
            cmn_buf_printf(&b, "  communication_id=%s", cid);
        cmn_buf_puts(&b, "  key=");
        if (e->key != NULL)
            dlq_put_json_bytes(&b, e->key, e->key_len);
        else
            cmn_buf_puts(&b, "-");
        if (e->replayed)
            cmn_buf_puts(&b, "  [replayed]");
        if (o->show_value) {
            cmn_buf_puts(&b, "\n    value=");
            if (e->value != NULL)
                dlq_put_json_bytes(&b, e->value, e->value_len);
            else
                cmn_buf_puts(&b, "(tombstone)");
        }
    }
    if (b.data != NULL)
        printf("%s\n", b.data);
    cmn_buf_free(&b);
}

static int dlq_list(dlq_run_t *r)
{
    if (r->n > 1)
        qsort(r->entries, r->n, sizeof(*r->entries), dlq_cmp_time);
    size_t shown = r->n;
    if (r->o->limit > 0 && (size_t)r->o->limit < shown)
        shown = (size_t)r->o->limit;
    for (size_t i = 0; i < shown; i++)
        dlq_print_entry(r->o, &r->entries[i]);
    if (!r->o->json)
        fprintf(stderr, "crmctl dlq: %zu dead letter(s) match%s\n", r->n,
                shown < r->n ? " (--limit cut the list)" : "");
    return 0;
}

/* ---------------------------------------------------------------- replay */

typedef struct dlq_tally {
    size_t replayed, already, refused, deferred;
} dlq_tally_t;

/* The headers of the copy: the original's minus the dead-letter ones (and
 * a previous replay's mark), plus where this copy comes from. Header names
 * and values are borrowed from e. */
static size_t dlq_copy_headers(const dlq_entry_t *e, cmn_kafka_header_t *out, size_t max, const char *from)
{
    size_t n = 0, plen = strlen(CMN_HDR_DLQ_PREFIX);
    const char *name = NULL;
    const void *val = NULL;
    size_t size = 0;
    for (size_t i = 0; e->headers != NULL && n + 1 < max &&
                       rd_kafka_header_get_all(e->headers, i, &name, &val, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
         i++) {
        if (strncmp(name, CMN_HDR_DLQ_PREFIX, plen) == 0 || strcmp(name, CMN_HDR_REPLAYED_FROM) == 0)
            continue;
        out[n].name = name;
        out[n].value = val;
        out[n].value_len = size;
        n++;
    }
    out[n].name = CMN_HDR_REPLAYED_FROM;
    out[n].value = from;
    out[n].value_len = strlen(from);
    return n + 1;
}

/* Commits the marks of every partition whose marks changed. */
static int dlq_commit_marks(dlq_run_t *r, char *err, size_t errlen)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(r->nparts);
    char meta[CRMCTL_DLQ_MARKS_MAX + 64];
    int rc = 0;
    if (l == NULL)
        return CMN_ERR_NOMEM;
    for (int32_t p = 0; p < r->nparts; p++) {
        dlq_part_t *dp = &r->parts[p];
        if (dp->marks.next == dp->before.next && dp->marks.n == dp->before.n &&
            (dp->marks.n == 0 ||
             memcmp(dp->marks.ranges, dp->before.ranges, dp->marks.n * sizeof(*dp->marks.ranges)) == 0))
            continue;
        if (crmctl_dlq_marks_format(&dp->marks, meta, sizeof(meta)) != 0)
            continue; /* cannot happen: replay stopped before the marks outgrew the limit */
        rd_kafka_topic_partition_t *t = rd_kafka_topic_partition_list_add(l, CMN_TOPIC_DLQ, p);
        t->offset = dp->marks.next;
        t->metadata = dlq_dup(meta, strlen(meta));
        t->metadata_size = t->metadata != NULL ? strlen(meta) : 0;
    }
    if (l->cnt == 0)
        goto cleanup;
    rd_kafka_resp_err_t kerr = rd_kafka_commit(r->rk, l, 0);
    for (int i = 0; kerr == RD_KAFKA_RESP_ERR_NO_ERROR && i < l->cnt; i++)
        kerr = l->elems[i].err;
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "the replay went out, but its marks could not be committed to group %s: %s",
                 CRMCTL_DLQ_GROUP, rd_kafka_err2str(kerr));
        rc = CMN_ERR_KAFKA;
    }
cleanup:
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

static int dlq_replay(dlq_run_t *r, char *err, size_t errlen)
{
    cmn_kafka_producer_t *prod = NULL;
    cmn_kafka_batch_t batch;
    int batch_init = 0;
    dlq_tally_t t = {0};
    char meta[CRMCTL_DLQ_MARKS_MAX + 64];
    int rc = 0;

    if (r->n > 1)
        qsort(r->entries, r->n, sizeof(*r->entries), dlq_cmp_offset);
    if (!r->o->dry_run) {
        cmn_kafka_config_t kc = {.brokers = r->brokers, .client_id = "crmctl-dlq-replay", .log = &r->log};
        prod = cmn_kafka_producer_new(&kc, err, errlen);
        if (prod == NULL)
            return CMN_ERR_KAFKA;
        if (cmn_kafka_batch_init(&batch) != 0) {
            rc = CMN_ERR_NOMEM;
            goto cleanup;
        }
        batch_init = 1;
    }
    for (size_t i = 0; i < r->n; i++) {
        dlq_entry_t *e = &r->entries[i];
        dlq_part_t *dp = &r->parts[e->partition];
        char target[256], from[48];
        dlq_header_str(e, CMN_HDR_DLQ_SOURCE_TOPIC, target, sizeof(target));
        snprintf(from, sizeof(from), "%d:%" PRId64, (int)e->partition, e->offset);
        if (e->replayed && !r->o->all) {
            t.already++;
            continue;
        }
        if (!crmctl_dlq_target_ok(target, strlen(target))) {
            printf("refused   dlq %s  source topic \"%s\" is not an engine topic\n", from, target);
            t.refused++;
            continue;
        }
        /* Marking first tells whether the marks still fit in the commit
         * metadata; a replay that would outgrow them stops in this
         * partition and the next run goes on from there. */
        crmctl_dlq_marks_t trial;
        if (crmctl_dlq_marks_copy(&trial, &dp->marks) != 0 || crmctl_dlq_marks_add(&trial, e->offset) != 0) {
            crmctl_dlq_marks_free(&trial);
            rc = CMN_ERR_NOMEM;
            goto cleanup;
        }
        if (crmctl_dlq_marks_format(&trial, meta, sizeof(meta)) != 0) {
            crmctl_dlq_marks_free(&trial);
            t.deferred++;
            continue;
        }
        crmctl_dlq_marks_free(&dp->marks);
        dp->marks = trial;
        if (r->o->dry_run) {
            printf("would replay dlq %s -> %s\n", from, target);
            t.replayed++;
            continue;
        }
        cmn_kafka_header_t hdrs[64];
        size_t nh = dlq_copy_headers(e, hdrs, sizeof(hdrs) / sizeof(hdrs[0]), from);
        rc = cmn_kafka_produce_in_batch(prod, &batch, target, e->key, e->key != NULL ? e->key_len : 0, e->value,
                                        e->value != NULL ? e->value_len : 0, hdrs, nh);
        if (rc != 0) {
            snprintf(err, errlen, "producing dlq %s to %s: %s", from, target, cmn_strerror(rc));
            goto cleanup;
        }
        printf("replayed  dlq %s -> %s\n", from, target);
        t.replayed++;
    }
    if (!r->o->dry_run) {
        char berr[256] = "";
        rc = cmn_kafka_batch_wait(&batch, DLQ_PRODUCE_TIMEOUT_MS, berr, sizeof(berr));
        if (rc != 0) {
            /* Nothing is marked: what did go out is replayed again by the
             * next run, and the router's claims drop the duplicates. */
            snprintf(err, errlen, "not every replayed record was acknowledged (%s); no marks committed",
                     berr[0] ? berr : cmn_strerror(rc));
            goto cleanup;
        }
        rc = dlq_commit_marks(r, err, errlen);
        if (rc != 0)
            goto cleanup;
    }
    printf("replay%s: %zu replayed, %zu already replayed (skipped; --all replays them), %zu refused, %zu left for "
           "the next run\n",
           r->o->dry_run ? " (dry run)" : "", t.replayed, t.already, t.refused, t.deferred);
    if (t.refused > 0) {
        snprintf(err, errlen, "%zu dead letter(s) name a source topic that is not an engine topic", t.refused);
        rc = CMN_ERR_INVALID;
    }

cleanup:
    if (batch_init)
        cmn_kafka_batch_destroy(&batch);
    if (prod != NULL)
        cmn_kafka_producer_destroy(prod);
    return rc;
}

/* ------------------------------------------------------------------ main */

static void dlq_usage(FILE *out)
{
    fprintf(out,
            "usage: crmctl dlq list [--since RFC3339|DURATION] [--reason TEXT] [--source-topic T] [--limit N]\n"
            "                       [--json] [--show-value]\n"
            "       crmctl dlq replay [--since RFC3339|DURATION] [--reason TEXT] [--source-topic T] [--dry-run]\n"
            "                         [--all]\n"
            "  Reads crm.dlq on KAFKA_BROKERS. DURATION is e.g. 90m, 2h, 7d. replay re-produces each\n"
            "  dead letter's key, value and headers to its source topic and remembers what it replayed\n"
            "  in consumer group " CRMCTL_DLQ_GROUP "; --all replays those again. See docs/operations.md.\n");
}

int crmctl_dlq_main(int argc, char **argv)
{
    crmctl_dlq_opts_t o;
    dlq_run_t r;
    char err[1024] = "";
    int rc = 0;

    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        dlq_usage(stdout);
        return 0;
    }
    if (crmctl_dlq_parse_args(argc, argv, cmn_now_ms(), &o, err, sizeof(err)) != 0) {
        fprintf(stderr, "crmctl dlq: %s\n", err);
        dlq_usage(stderr);
        return 2;
    }
    const char *brokers = getenv("KAFKA_BROKERS");
    if (brokers == NULL || brokers[0] == '\0') {
        fprintf(stderr, "crmctl dlq: KAFKA_BROKERS is not set (host:port[,host:port...])\n");
        return 1;
    }
    memset(&r, 0, sizeof(r));
    r.o = &o;
    r.brokers = brokers;
    const char *level = getenv("LOG_LEVEL");
    if (cmn_log_init(&r.log, "crmctl", level != NULL ? level : "warn") != 0)
        cmn_log_init(&r.log, "crmctl", "warn");

    rc = dlq_consumer_new(&r, err, sizeof(err));
    if (rc == 0)
        rc = dlq_plan(&r, err, sizeof(err));
    if (rc == 0)
        rc = dlq_read(&r, err, sizeof(err));
    if (rc == 0)
        rc = o.replay ? dlq_replay(&r, err, sizeof(err)) : dlq_list(&r);
    if (rc != 0)
        fprintf(stderr, "crmctl dlq: %s\n", err[0] ? err : cmn_strerror(rc));

    dlq_entries_free(&r);
    for (int32_t p = 0; r.parts != NULL && p < r.nparts; p++) {
        crmctl_dlq_marks_free(&r.parts[p].marks);
        crmctl_dlq_marks_free(&r.parts[p].before);
    }
    free(r.parts);
    if (r.rk != NULL) {
        rd_kafka_consumer_close(r.rk);
        rd_kafka_destroy(r.rk);
    }
    return rc == 0 ? 0 : 1;
}
