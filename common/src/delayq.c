/* delayq.c - the consumer of one family of delay tiers. See crm/delayq.h.
 *
 * How a partition waits. The loop keeps, per assigned partition, whether
 * its head record is held back and until when. When a batch brings a head
 * that is not released yet, the partition is *held*: its later records in
 * the batch are dropped unread, the partition is paused and its fetch
 * position is moved back to the head with a seek. When the head's release
 * time comes, the partition is sought to the head again and resumed, so
 * the head is fetched anew and decided with the clock of that moment.
 *
 * Why the seeks. librdkafka resumes a paused partition after the last
 * record poll returned for it, and a batch may have returned records past
 * the head (prefetched before the pause). Without the seek those records
 * would be skipped on resume and their offsets committed with the next
 * record handled: lost. The seek makes the position explicit whatever
 * librdkafka prefetched, and nothing is ever kept in memory across polls,
 * so a revoked partition needs no clean-up beyond forgetting its state.
 *
 * Why commits per partition. A batch mixes partitions that progress with
 * partitions that are held; cmn_kafka_consumer_commit_offsets() commits
 * each partition's handled prefix (never past a held head), and only after
 * every produce of the batch is acknowledged. When an acknowledgement does
 * not come, nothing is committed and every partition of the batch goes
 * back to its first record of the batch, retried after DELAYQ_RETRY_MS.
 * Records already produced are then produced again: at least once. */
#include "crm/delayq.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crm/err.h"
#include "crm/json.h"
#include "crm/time.h"
#include "crm/uuid.h"

#define DEFAULT_ACK_TIMEOUT_MS 30000
#define DEFAULT_MAX_SLEEP_MS 500
/* Records taken per poll. A delay tier's records are small and mostly
 * handled by a produce each, so a batch bounds only the acknowledgement
 * round trips per record. */
#define DELAYQ_BATCH_MAX 200
/* How long a record waits before it is tried again after a failed produce
 * or a guard that could not decide: long enough not to hammer a sick
 * dependency, short enough to be invisible next to the tiers. */
#define DELAYQ_RETRY_MS 1000
/* The consumer's fetch.wait.max.ms (see cmn_delayq_new). */
#define DELAYQ_FETCH_WAIT_MS "100"
#define EXTRA_MAX 40
#define DELAYQ_MAX_TIERS 8
#define FAMILY_MAX 32
#define REASON_MAX 160

/* Outcomes counted per tier. */
enum { OUT_DELIVERED = 0, OUT_REDELAYED, OUT_DLQ, OUT_DROPPED, OUT_RECHECKED, OUT_N };
static const char *const outcome_names[OUT_N] = {"delivered", "redelayed", "dlq", "dropped", "rechecked"};

/* What the loop does with one record. */
typedef enum dq_kind {
    DQ_DELIVER = 0, /* produce to its target */
    DQ_REDELAY,     /* produce to the tier for the remaining wait */
    DQ_DLQ,         /* bad headers: produce to crm.dlq with the reason */
    DQ_DROP,        /* the guard said no: commit without producing */
    DQ_HOLD,        /* not released (or the guard cannot decide): hold the partition */
    DQ_RECHECK      /* the guard said not yet: produce it again, due later, to a tier */
} dq_kind_t;

typedef struct dq_decision {
    dq_kind_t kind;
    char topic[CMN_DELAY_TOPIC_MAX]; /* DELIVER: the target; REDELAY, RECHECK: the tier topic */
    int64_t due_at_ms;               /* 0 when the headers did not parse */
    int64_t ready_at_ms;             /* HOLD: wall clock instant to look again */
    char recheck_due[CMN_DELAY_DUE_AT_MAX]; /* RECHECK: the new x-crm-due-at */
    char reason[REASON_MAX];         /* DLQ */
    cmn_delayq_guard_out_t gout;     /* the guard's answer; DELIVER produces its extras */
} dq_decision_t;

/* One assigned partition of a tier topic. */
typedef struct dq_part {
    char topic[CMN_DELAY_TOPIC_MAX];
    int32_t partition;
    cmn_delay_topic_t src;
    int src_ok;          /* the topic parsed as a tier of this family */
    int held;            /* its head is not ready: later records are dropped until it is */
    int64_t head_offset; /* held: the offset to fetch from again */
    int64_t ready_at_ms; /* held: when to resume */
    int paused;          /* paused by this loop in librdkafka */
    int need_seek;       /* held: the fetch position must still be moved back to head_offset */
    /* This batch only. */
    int64_t first_seen; /* first record considered (not dropped); -1 when none */
    int64_t last_done;  /* last record handled (produced, dropped); -1 when none */
} dq_part_t;

/* One handled record of the batch in hand, for metrics and logs once its
 * produce is acknowledged. */
typedef struct dq_done {
    const cmn_kafka_message_t *rec; /* borrowed from the consumer's batch */
    size_t tier;                    /* source tier */
    int outcome;
    int64_t lateness_ms; /* DELIVER: decided_at - due_at */
    char to[CMN_DELAY_TOPIC_MAX];
} dq_done_t;

struct cmn_delayq {
    cmn_delayq_config_t cfg;
    char family[FAMILY_MAX]; /* "crm.retry.sms" or "crm.defer": logs and metric labels */
    char client_id[128];
    char session_prop[48];
    const char *extra[EXTRA_MAX];
    const cmn_delay_tier_t *tiers;
    size_t ntiers;
    char topic_names[DELAYQ_MAX_TIERS][CMN_DELAY_TOPIC_MAX];
    const char *topics[DELAYQ_MAX_TIERS + 1];

    cmn_kafka_producer_t *producer;
    cmn_kafka_consumer_t *consumer; /* from start to stop; guarded by mu against is_ready */
    pthread_mutex_t mu;
    pthread_t thread;
    int state; /* 0 new, 1 running, 2 stopped */
    atomic_int stop;
    atomic_int running;

    /* Loop state: only the loop thread touches it (rebalance callbacks run
     * inside its polls). */
    dq_part_t *parts;
    size_t nparts, parts_cap;
    cmn_delay_partition_t *heads;
    unsigned char *pause;
    size_t plan_cap;
    dq_done_t *done;
    size_t ndone, done_cap;

    cmn_counter_t *outcomes[DELAYQ_MAX_TIERS][OUT_N];
    cmn_counter_t *polls_total;
    cmn_counter_t *ack_failures_total;
    cmn_gauge_t *paused_gauge;
    cmn_gauge_t *assigned_gauge;
    cmn_histogram_t *lateness;
};

/* Lateness of deliveries in seconds: the poll granularity is milliseconds,
 * a healthy queue stays well under a second, and the tail shows a stalled
 * consumer. */
static const double lateness_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};

/* ------------------------------------------------------------- helpers */

static void *dq_memdup(const void *p, size_t n)
{
    /* One byte more, so a copied string is also NUL-terminated. */
    char *d = malloc(n + 1);
    if (d == NULL)
        return NULL;
    if (n > 0)
        memcpy(d, p, n);
    d[n] = '\0';
    return d;
}

static void dq_extra_free(cmn_delayq_extra_t *e)
{
    free(e->topic);
    free(e->key);
    free(e->value);
    for (size_t i = 0; i < e->nheaders; i++) {
        free((void *)e->headers[i].name);
        free((void *)e->headers[i].value);
    }
    memset(e, 0, sizeof(*e));
}

int cmn_delayq_guard_add(cmn_delayq_guard_out_t *out, const char *topic, const void *key, size_t key_len,
                         const void *value, size_t value_len, const cmn_kafka_header_t *headers, size_t nheaders)
{
    if (out == NULL || topic == NULL || (headers == NULL && nheaders > 0) || (key == NULL && key_len > 0) ||
        (value == NULL && value_len > 0))
        return CMN_ERR_INVALID;
    if (out->n_extra >= CMN_DELAYQ_EXTRA_MAX || nheaders > CMN_DELAYQ_EXTRA_HEADERS_MAX)
        return CMN_ERR_OVERFLOW;
    cmn_delayq_extra_t e;
    memset(&e, 0, sizeof(e));
    e.topic = dq_memdup(topic, strlen(topic));
    e.key = key != NULL ? dq_memdup(key, key_len) : NULL;
    e.key_len = key_len;
    e.value = value != NULL ? dq_memdup(value, value_len) : NULL;
    e.value_len = value_len;
    int oom = e.topic == NULL || (key != NULL && e.key == NULL) || (value != NULL && e.value == NULL);
    for (size_t i = 0; i < nheaders && !oom; i++) {
        if (headers[i].name == NULL || (headers[i].value == NULL && headers[i].value_len > 0)) {
            dq_extra_free(&e);
            return CMN_ERR_INVALID;
        }
        cmn_kafka_header_t *h = &e.headers[e.nheaders++];
        h->name = dq_memdup(headers[i].name, strlen(headers[i].name));
        h->value = headers[i].value != NULL ? dq_memdup(headers[i].value, headers[i].value_len) : NULL;
        h->value_len = headers[i].value_len;
        oom = h->name == NULL || (headers[i].value != NULL && h->value == NULL);
    }
    if (oom) {
        dq_extra_free(&e);
        return CMN_ERR_NOMEM;
    }
    out->extra[out->n_extra++] = e;
    return 0;
}

void cmn_delayq_guard_out_clear(cmn_delayq_guard_out_t *out)
{
    if (out == NULL)
        return;
    for (size_t i = 0; i < out->n_extra && i < CMN_DELAYQ_EXTRA_MAX; i++)
        dq_extra_free(&out->extra[i]);
    memset(out, 0, sizeof(*out));
}

static void dq_count(cmn_counter_t *c, uint64_t v)
{
    if (c != NULL)
        cmn_counter_add(c, v);
}

static int dq_log_enabled(const cmn_delayq_t *q, cmn_log_level_t level)
{
    return q->cfg.log != NULL && level >= q->cfg.log->level;
}

/* The communication_id of a Dispatch or a routed request, for log lines.
 * Only looked for when the line will be written; anything that is not a
 * JSON object with a valid UUID there gives "". */
static void dq_communication_id(const cmn_kafka_message_t *rec, char out[CMN_UUID_STR_LEN + 1])
{
    out[0] = '\0';
    if (rec->value == NULL || rec->value_len == 0 || rec->value[0] != '{')
        return;
    json_object *root = cmn_json_parse(rec->value, rec->value_len, NULL, 0);
    if (root == NULL)
        return;
    const char *id = cmn_json_get_string(root, "communication_id");
    if (id != NULL && cmn_uuid_is_valid(id))
        snprintf(out, CMN_UUID_STR_LEN + 1, "%s", id);
    json_object_put(root);
}

/* Logs one line about rec with its position; extra is a NULL-terminated
 * key/value list of at most 6 pairs, or NULL. */
static void dq_log_rec(const cmn_delayq_t *q, cmn_log_level_t level, const cmn_kafka_message_t *rec,
                       const char *const *extra, const char *msg)
{
    if (!dq_log_enabled(q, level))
        return;
    char part[16], off[24], cid[CMN_UUID_STR_LEN + 1];
    const char *kv[20];
    size_t n = 0;
    snprintf(part, sizeof part, "%" PRId32, rec->partition);
    snprintf(off, sizeof off, "%" PRId64, rec->offset);
    dq_communication_id(rec, cid);
    kv[n++] = "topic";
    kv[n++] = rec->topic;
    kv[n++] = "partition";
    kv[n++] = part;
    kv[n++] = "offset";
    kv[n++] = off;
    for (size_t i = 0; extra != NULL && extra[i] != NULL && extra[i + 1] != NULL && n + 3 < 20; i += 2) {
        kv[n++] = extra[i];
        kv[n++] = extra[i + 1];
    }
    kv[n] = NULL;
    cmn_logkv(q->cfg.log, level, cid[0] != '\0' ? cid : NULL, kv, "%s", msg);
}

static void dq_log_part(const cmn_delayq_t *q, cmn_log_level_t level, const dq_part_t *p, const char *msg)
{
    if (!dq_log_enabled(q, level))
        return;
    char part[16], off[24];
    snprintf(part, sizeof part, "%" PRId32, p->partition);
    snprintf(off, sizeof off, "%" PRId64, p->head_offset);
    const char *kv[] = {"topic", p->topic, "partition", part, "offset", off, NULL};
    cmn_logkv(q->cfg.log, level, NULL, kv, "%s", msg);
}

/* ---------------------------------------------------------- partitions */

static dq_part_t *dq_part_find(cmn_delayq_t *q, const char *topic, int32_t partition)
{
    for (size_t i = 0; i < q->nparts; i++) {
        if (q->parts[i].partition == partition && strcmp(q->parts[i].topic, topic) == 0)
            return &q->parts[i];
    }
    return NULL;
}

/* Resets or adds the state of a partition, unheld. NULL when out of
 * memory or when the name does not fit (never for the family's topics). */
static dq_part_t *dq_part_add(cmn_delayq_t *q, const char *topic, int32_t partition)
{
    dq_part_t *p = dq_part_find(q, topic, partition);
    if (p == NULL) {
        if (strlen(topic) >= CMN_DELAY_TOPIC_MAX)
            return NULL;
        if (q->nparts == q->parts_cap) {
            size_t ncap = q->parts_cap ? q->parts_cap * 2 : 64;
            dq_part_t *np = realloc(q->parts, ncap * sizeof(*np));
            if (np == NULL)
                return NULL;
            q->parts = np;
            q->parts_cap = ncap;
        }
        p = &q->parts[q->nparts++];
    }
    memset(p, 0, sizeof(*p));
    snprintf(p->topic, sizeof p->topic, "%s", topic);
    p->partition = partition;
    p->src_ok = cmn_delay_topic_parse(topic, &p->src) == 0 && p->src.kind == q->cfg.kind &&
                p->src.channel == (q->cfg.kind == CMN_DELAY_RETRY ? q->cfg.channel : CMN_CHANNEL_NONE) &&
                p->src.tier < q->ntiers;
    p->first_seen = -1;
    p->last_done = -1;
    return p;
}

static int dq_on_assign(void *ctx, const char *const *topics, const int32_t *partitions, int64_t *offsets,
                        size_t n)
{
    cmn_delayq_t *q = ctx;
    (void)offsets; /* the group's committed offsets are the truth here */
    for (size_t i = 0; i < n; i++) {
        /* A partition regained after a lost assignment starts fresh: its
         * position is the committed offset, which never passes a held head. */
        if (dq_part_add(q, topics[i], partitions[i]) == NULL) {
            /* A partition without state is added on its first record;
             * failing the consumer over it would be worse. */
            const char *kv[] = {"topic", topics[i], NULL};
            cmn_logkv(q->cfg.log, CMN_LOG_WARN, NULL, kv, "delay queue: no memory for a partition's state yet");
        }
    }
    if (q->assigned_gauge != NULL)
        cmn_gauge_set(q->assigned_gauge, (double)q->nparts);
    return 0;
}

static void dq_on_revoke(void *ctx, const char *const *topics, const int32_t *partitions, size_t n)
{
    cmn_delayq_t *q = ctx;
    for (size_t i = 0; i < n; i++) {
        dq_part_t *p = dq_part_find(q, topics[i], partitions[i]);
        if (p == NULL)
            continue;
        /* librdkafka keeps an application pause on a partition object
         * across a revoke, so a partition regained later would stay paused
         * with no state here to ever resume it. The next owner reads from
         * the committed offset, which is at or before the held head. (When
         * cmn_delayq_stop() closes the consumer it is already detached from
         * q, and the pause ends with the handle.) */
        if (p->paused && q->consumer != NULL)
            (void)cmn_kafka_consumer_resume(q->consumer, p->topic, p->partition);
        *p = q->parts[--q->nparts];
    }
    if (q->assigned_gauge != NULL)
        cmn_gauge_set(q->assigned_gauge, (double)q->nparts);
}

/* ------------------------------------------------------------ decisions */

static void dq_dlq(dq_decision_t *d, const char *reason)
{
    d->kind = DQ_DLQ;
    snprintf(d->reason, sizeof d->reason, "%s", reason);
}

/* Decides what to do with rec, the head of partition p, at now_ms. */
static void dq_decide(cmn_delayq_t *q, const dq_part_t *p, const cmn_kafka_message_t *rec, int64_t now_ms,
                      dq_decision_t *d)
{
    cmn_delay_headers_t h;
    cmn_delay_step_t step;
    size_t due_len = 0, target_len = 0;

    memset(d, 0, sizeof(*d));
    if (!p->src_ok) {
        /* Only the family's own tier topics are subscribed; this guards
         * against a misconfigured subscription, not against data. */
        dq_dlq(d, "topic: not a delay tier of this consumer");
        return;
    }
    const void *due = cmn_kafka_message_header(rec, CMN_DELAY_HDR_DUE_AT, &due_len);
    const void *target = cmn_kafka_message_header(rec, CMN_DELAY_HDR_TARGET, &target_len);
    if (cmn_delay_headers_parse(&p->src, due, due_len, target, target_len, &h, d->reason, sizeof d->reason) != 0) {
        d->kind = DQ_DLQ;
        return;
    }
    d->due_at_ms = h.due_at_ms;
    if (cmn_delay_next_step(&p->src, rec->timestamp_ms, h.due_at_ms, now_ms, &step) != 0) {
        dq_dlq(d, CMN_DELAY_HDR_DUE_AT ": cannot be planned");
        return;
    }
    if (step.action == CMN_DELAY_PAUSE) {
        d->kind = DQ_HOLD;
        d->ready_at_ms = step.resume_at_ms;
        return;
    }
    if (step.action == CMN_DELAY_REDELAY) {
        d->kind = DQ_REDELAY;
        if (cmn_delay_topic_name(p->src.kind, p->src.channel, step.tier, d->topic, sizeof d->topic) != 0)
            dq_dlq(d, CMN_DELAY_HDR_DUE_AT ": no tier for the remaining wait");
        return;
    }
    d->kind = DQ_DELIVER;
    snprintf(d->topic, sizeof d->topic, "%s", h.target);
    size_t guard_len = 0;
    const void *guard = cmn_kafka_message_header(rec, CMN_HDR_GUARD, &guard_len);
    if (h.alternate && guard == NULL) {
        /* Only a guard may hand a record to anything but the family's own
         * target: without one a crafted header could send anything to any
         * channel. */
        snprintf(d->reason, sizeof d->reason, CMN_HDR_GUARD ": is missing, and %s is not %s's own target", h.target,
                 q->family);
        d->kind = DQ_DLQ;
        return;
    }
    if (h.alternate && q->cfg.guard == NULL) {
        snprintf(d->reason, sizeof d->reason,
                 CMN_HDR_GUARD ": this consumer has no guard, so it cannot deliver a record bound for %s", h.target);
        d->kind = DQ_DLQ;
        return;
    }
    if (guard == NULL || q->cfg.guard == NULL)
        return;
    cmn_delayq_verdict_t v = q->cfg.guard(q->cfg.guard_ctx, rec, guard, guard_len, &d->gout);
    if (v != CMN_DELAYQ_DELIVER) {
        /* Extras go only with a delivery; what else the guard said is in
         * plain members, which the clear keeps. */
        int64_t at = d->gout.recheck_at_ms;
        char why[sizeof d->gout.reason];
        memcpy(why, d->gout.reason, sizeof why);
        cmn_delayq_guard_out_clear(&d->gout);
        d->gout.recheck_at_ms = at;
        memcpy(d->gout.reason, why, sizeof why);
        d->gout.reason[sizeof d->gout.reason - 1] = '\0';
    }
    if (v == CMN_DELAYQ_REJECT) {
        dq_dlq(d, d->gout.reason[0] != '\0' ? d->gout.reason : CMN_HDR_GUARD ": the guard refused the record");
    } else if (v == CMN_DELAYQ_DROP) {
        d->kind = DQ_DROP;
    } else if (v == CMN_DELAYQ_RETRY) {
        d->kind = DQ_HOLD;
        d->ready_at_ms = now_ms + DELAYQ_RETRY_MS;
    } else if (v == CMN_DELAYQ_RECHECK) {
        int64_t at = d->gout.recheck_at_ms;
        /* A recheck not in the future (or not a real instant) would come
         * straight back; it is taken as "in a second". */
        if (at <= now_ms || at > CMN_DELAY_MAX_DUE_AT_MS)
            at = now_ms + DELAYQ_RETRY_MS;
        size_t tier = 0;
        d->kind = DQ_RECHECK;
        snprintf(d->recheck_due, sizeof d->recheck_due, "%" PRId64, at);
        if (cmn_delay_choose_tier(p->src.kind, at - now_ms, &tier) != 0 ||
            cmn_delay_topic_name(p->src.kind, p->src.channel, tier, d->topic, sizeof d->topic) != 0) {
            /* Cannot happen for a parsed tier topic; holding is safe. */
            d->kind = DQ_HOLD;
            d->ready_at_ms = now_ms + DELAYQ_RETRY_MS;
        }
    } else if (v != CMN_DELAYQ_DELIVER) {
        d->kind = DQ_HOLD;
        d->ready_at_ms = now_ms + DELAYQ_RETRY_MS;
    }
}

/* Produces rec again to topic, key, value and headers unchanged but for
 * x-crm-due-at, which becomes due (a RECHECK). */
static int dq_forward_due(cmn_delayq_t *q, cmn_kafka_batch_t *kb, const char *topic, const cmn_kafka_message_t *rec,
                          const char *due)
{
    cmn_kafka_header_t *h = NULL;
    size_t nh = 0;
    const char *name;
    const void *val;
    size_t len;
    int rc = 0;
    while (cmn_kafka_message_header_at(rec, nh, &name, &val, &len) == 0)
        nh++;
    h = calloc(nh + 1, sizeof(*h));
    if (h == NULL)
        return CMN_ERR_NOMEM;
    int replaced = 0;
    for (size_t i = 0; i < nh; i++) {
        rc = cmn_kafka_message_header_at(rec, i, &h[i].name, &h[i].value, &h[i].value_len);
        if (rc != 0)
            goto cleanup;
        if (strcmp(h[i].name, CMN_DELAY_HDR_DUE_AT) == 0) {
            h[i].value = due;
            h[i].value_len = strlen(due);
            replaced = 1;
        }
    }
    /* A record due now always had the header (it parsed); kept for safety. */
    if (!replaced)
        h[nh++] = (cmn_kafka_header_t){CMN_DELAY_HDR_DUE_AT, due, strlen(due)};
    rc = cmn_kafka_produce_in_batch(q->producer, kb, topic, rec->key, rec->key_len, rec->value, rec->value_len, h, nh);
cleanup:
    free(h);
    return rc;
}

/* Produces the guard's extra records of a delivery. */
static int dq_produce_extras(cmn_delayq_t *q, cmn_kafka_batch_t *kb, const cmn_delayq_guard_out_t *gout)
{
    for (size_t i = 0; i < gout->n_extra; i++) {
        const cmn_delayq_extra_t *e = &gout->extra[i];
        int rc = cmn_kafka_produce_in_batch(q->producer, kb, e->topic, e->key, e->key_len, e->value, e->value_len,
                                            e->headers, e->nheaders);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* --------------------------------------------------------------- batch */

static int dq_done_add(cmn_delayq_t *q, const cmn_kafka_message_t *rec, const dq_part_t *p, int outcome,
                       const dq_decision_t *d, int64_t now_ms)
{
    if (q->ndone == q->done_cap) {
        size_t ncap = q->done_cap ? q->done_cap * 2 : DELAYQ_BATCH_MAX;
        dq_done_t *nd = realloc(q->done, ncap * sizeof(*nd));
        if (nd == NULL)
            return CMN_ERR_NOMEM;
        q->done = nd;
        q->done_cap = ncap;
    }
    dq_done_t *e = &q->done[q->ndone++];
    e->rec = rec;
    e->tier = p->src_ok ? p->src.tier : 0;
    e->outcome = outcome;
    e->lateness_ms = outcome == OUT_DELIVERED ? now_ms - d->due_at_ms : 0;
    snprintf(e->to, sizeof e->to, "%s", outcome == OUT_DLQ ? CMN_TOPIC_DLQ : d->topic);
    return 0;
}

static void dq_hold(dq_part_t *p, int64_t offset, int64_t ready_at_ms)
{
    p->held = 1;
    p->head_offset = offset;
    p->ready_at_ms = ready_at_ms;
    p->need_seek = 1;
}

/* Puts every partition of the failed batch back to its first record of the
 * batch, to be tried again after DELAYQ_RETRY_MS. */
static void dq_batch_failed(cmn_delayq_t *q, int64_t now_ms)
{
    for (size_t i = 0; i < q->nparts; i++) {
        dq_part_t *p = &q->parts[i];
        if (p->first_seen < 0)
            continue;
        dq_hold(p, p->first_seen, now_ms + DELAYQ_RETRY_MS);
        dq_log_part(q, CMN_LOG_WARN, p, "delay queue: batch not acknowledged; the partition is retried");
    }
}

static void dq_report_done(cmn_delayq_t *q)
{
    for (size_t i = 0; i < q->ndone; i++) {
        const dq_done_t *e = &q->done[i];
        if (e->tier < q->ntiers)
            dq_count(q->outcomes[e->tier][e->outcome], 1);
        const char *tier = e->tier < q->ntiers ? q->tiers[e->tier].name : "";
        switch (e->outcome) {
        case OUT_DELIVERED: {
            if (q->lateness != NULL)
                cmn_histogram_observe(q->lateness, (double)(e->lateness_ms > 0 ? e->lateness_ms : 0) / 1000.0);
            char late[24];
            snprintf(late, sizeof late, "%" PRId64, e->lateness_ms);
            const char *kv[] = {"target", e->to, "tier", tier, "lateness_ms", late, NULL};
            dq_log_rec(q, CMN_LOG_DEBUG, e->rec, kv, "delay queue: delivered");
            break;
        }
        case OUT_REDELAYED: {
            const char *kv[] = {"to", e->to, "tier", tier, NULL};
            dq_log_rec(q, CMN_LOG_DEBUG, e->rec, kv, "delay queue: re-delayed for the remaining wait");
            break;
        }
        case OUT_DROPPED: {
            const char *kv[] = {"tier", tier, NULL};
            dq_log_rec(q, CMN_LOG_INFO, e->rec, kv, "delay queue: dropped by the guard");
            break;
        }
        case OUT_RECHECKED: {
            const char *kv[] = {"to", e->to, "tier", tier, NULL};
            dq_log_rec(q, CMN_LOG_DEBUG, e->rec, kv, "delay queue: the guard asked to look again later");
            break;
        }
        default:
            break; /* DLQ records were logged with their reason when queued */
        }
    }
}

static void dq_handle_batch(cmn_delayq_t *q, const cmn_kafka_message_t *msgs, int n)
{
    cmn_kafka_batch_t kb;
    char err[256] = "";
    int failed = 0;
    int produced = 0;

    q->ndone = 0;
    for (size_t i = 0; i < q->nparts; i++) {
        q->parts[i].first_seen = -1;
        q->parts[i].last_done = -1;
    }
    if (cmn_kafka_batch_init(&kb) != 0) {
        /* Nothing was looked at: dropping the batch unhandled would move
         * the positions past it, so every partition goes back. */
        for (int i = 0; i < n; i++) {
            dq_part_t *p = dq_part_find(q, msgs[i].topic, msgs[i].partition);
            if (p != NULL && !p->held && p->first_seen < 0)
                p->first_seen = msgs[i].offset;
        }
        cmn_logkv(q->cfg.log, CMN_LOG_ERROR, NULL, NULL, "delay queue: out of memory for a produce batch");
        dq_batch_failed(q, cmn_now_ms());
        return;
    }
    for (int i = 0; i < n && !failed; i++) {
        const cmn_kafka_message_t *rec = &msgs[i];
        dq_part_t *p = dq_part_find(q, rec->topic, rec->partition);
        if (p == NULL)
            p = dq_part_add(q, rec->topic, rec->partition);
        if (p == NULL) {
            /* Without state the record cannot be held back; the batch is
             * retried as a whole rather than skipped. */
            failed = 1;
            snprintf(err, sizeof err, "out of memory for a partition's state");
            break;
        }
        if (p->held)
            continue; /* fetched again from the held head on resume */
        if (p->first_seen < 0)
            p->first_seen = rec->offset;
        int64_t now = cmn_now_ms();
        dq_decision_t d;
        dq_decide(q, p, rec, now, &d);
        int rc = 0, outcome = OUT_DROPPED;
        switch (d.kind) {
        case DQ_HOLD:
            dq_hold(p, rec->offset, d.ready_at_ms);
            if (dq_log_enabled(q, CMN_LOG_DEBUG)) {
                char wait[24];
                snprintf(wait, sizeof wait, "%" PRId64, d.ready_at_ms - now);
                const char *kv[] = {"wait_ms", wait, NULL};
                dq_log_rec(q, CMN_LOG_DEBUG, rec, kv, "delay queue: head not released; partition held");
            }
            continue;
        case DQ_DELIVER:
            outcome = OUT_DELIVERED;
            rc = cmn_kafka_forward_in_batch(q->producer, &kb, d.topic, rec);
            if (rc == 0)
                rc = dq_produce_extras(q, &kb, &d.gout);
            break;
        case DQ_RECHECK:
            outcome = OUT_RECHECKED;
            rc = dq_forward_due(q, &kb, d.topic, rec, d.recheck_due);
            break;
        case DQ_REDELAY:
            outcome = OUT_REDELAYED;
            rc = cmn_kafka_forward_in_batch(q->producer, &kb, d.topic, rec);
            break;
        case DQ_DLQ: {
            outcome = OUT_DLQ;
            const char *kv[] = {"reason", d.reason, NULL};
            dq_log_rec(q, CMN_LOG_WARN, rec, kv, "delay queue: bad record to crm.dlq");
            rc = cmn_kafka_dlq_in_batch(q->producer, &kb, rec, q->cfg.service, d.reason);
            break;
        }
        case DQ_DROP:
            break;
        }
        cmn_delayq_guard_out_clear(&d.gout);
        if (rc != 0) {
            failed = 1;
            snprintf(err, sizeof err, "cannot queue a produce: %s", cmn_strerror(rc));
            break;
        }
        produced += d.kind != DQ_DROP;
        if (dq_done_add(q, rec, p, outcome, &d, now) != 0) {
            failed = 1;
            snprintf(err, sizeof err, "out of memory for the batch's bookkeeping");
            break;
        }
        p->last_done = rec->offset;
    }
    if (!failed && q->ndone == 0)
        goto cleanup;
    /* Wait even after a failure: the produces already queued must settle
     * before their records are read again, or they could overtake them. */
    int wrc = produced > 0 ? cmn_kafka_batch_wait(&kb, q->cfg.ack_timeout_ms, failed ? NULL : err, sizeof err) : 0;
    if (failed || wrc != 0) {
        dq_count(q->ack_failures_total, 1);
        const char *kv[] = {"family", q->family, "error", err, NULL};
        cmn_logkv(q->cfg.log, CMN_LOG_ERROR, NULL, kv, "delay queue: produces not acknowledged; nothing committed");
        dq_batch_failed(q, cmn_now_ms());
        goto cleanup;
    }
    cmn_kafka_offset_t offs[DELAYQ_BATCH_MAX];
    size_t noffs = 0;
    for (size_t i = 0; i < q->nparts && noffs < DELAYQ_BATCH_MAX; i++) {
        if (q->parts[i].last_done < 0)
            continue;
        offs[noffs++] = (cmn_kafka_offset_t){q->parts[i].topic, q->parts[i].partition, q->parts[i].last_done + 1};
    }
    int crc = cmn_kafka_consumer_commit_offsets(q->consumer, offs, noffs);
    if (crc != 0) {
        /* The offsets stay stored and go with the next commit; at worst a
         * restart produces these records once more. */
        const char *kv[] = {"family", q->family, "error", cmn_strerror(crc), NULL};
        cmn_logkv(q->cfg.log, CMN_LOG_WARN, NULL, kv, "delay queue: commit failed; retried with the next one");
    }
    dq_report_done(q);
cleanup:
    cmn_kafka_batch_destroy(&kb);
}

/* ---------------------------------------------------------------- loop */

/* Pauses the partitions whose head is not ready, resumes (after a seek
 * back to the head) those whose head is, and returns the poll timeout. */
static int dq_apply_plan(cmn_delayq_t *q, int64_t now_ms)
{
    if (q->nparts > q->plan_cap) {
        cmn_delay_partition_t *nh = realloc(q->heads, q->nparts * sizeof(*nh));
        if (nh != NULL)
            q->heads = nh;
        unsigned char *np = realloc(q->pause, q->nparts);
        if (np != NULL)
            q->pause = np;
        if (nh == NULL || np == NULL)
            return DELAYQ_RETRY_MS / 10; /* try again soon; nothing moves meanwhile */
        q->plan_cap = q->nparts;
    }
    for (size_t i = 0; i < q->nparts; i++)
        q->heads[i] = (cmn_delay_partition_t){q->parts[i].held, q->parts[i].ready_at_ms};
    cmn_delay_pause_plan_t plan;
    if (cmn_delay_pause_plan(q->heads, q->nparts, now_ms, q->pause, &plan) != 0)
        return q->cfg.max_sleep_ms;
    for (size_t i = 0; i < q->nparts; i++) {
        dq_part_t *p = &q->parts[i];
        if (q->pause[i]) {
            if (!p->paused && cmn_kafka_consumer_pause(q->consumer, p->topic, p->partition) == 0)
                p->paused = 1;
            /* After the pause: a pause sets the resume position to just
             * after the last record returned, which may be past the head. */
            if (p->need_seek && cmn_kafka_consumer_seek(q->consumer, p->topic, p->partition, p->head_offset) == 0)
                p->need_seek = 0;
            continue;
        }
        if (!p->held)
            continue;
        /* The head is ready: fetch from it again. The seek comes first and
         * must succeed, or records after the head would be read instead. */
        if (cmn_kafka_consumer_seek(q->consumer, p->topic, p->partition, p->head_offset) != 0) {
            p->ready_at_ms = now_ms + DELAYQ_RETRY_MS;
            p->need_seek = 1;
            dq_log_part(q, CMN_LOG_WARN, p, "delay queue: cannot seek back to a held head; retrying");
            continue;
        }
        if (p->paused && cmn_kafka_consumer_resume(q->consumer, p->topic, p->partition) != 0) {
            p->ready_at_ms = now_ms + DELAYQ_RETRY_MS;
            dq_log_part(q, CMN_LOG_WARN, p, "delay queue: cannot resume a partition; retrying");
            continue;
        }
        p->paused = 0;
        p->held = 0;
        p->need_seek = 0;
    }
    /* Recount: a failed seek or resume above re-held a partition. */
    size_t npaused = 0;
    int64_t earliest = 0;
    for (size_t i = 0; i < q->nparts; i++) {
        npaused += q->parts[i].paused;
        if (q->parts[i].held && (earliest == 0 || q->parts[i].ready_at_ms < earliest))
            earliest = q->parts[i].ready_at_ms;
    }
    if (q->paused_gauge != NULL)
        cmn_gauge_set(q->paused_gauge, (double)npaused);
    cmn_delay_pause_plan_t sleep_plan = {earliest != 0, earliest};
    return (int)cmn_delay_poll_timeout_ms(&sleep_plan, now_ms, q->cfg.max_sleep_ms);
}

static void *dq_thread(void *arg)
{
    cmn_delayq_t *q = arg;
    while (!atomic_load(&q->stop)) {
        int timeout = dq_apply_plan(q, cmn_now_ms());
        cmn_kafka_message_t *msgs = NULL;
        int n = cmn_kafka_consumer_poll_batch(q->consumer, DELAYQ_BATCH_MAX, timeout, &msgs);
        dq_count(q->polls_total, 1);
        if (n < 0) {
            const char *kv[] = {"family", q->family, "error", cmn_strerror(n), NULL};
            cmn_logkv(q->cfg.log, CMN_LOG_ERROR, NULL, kv, "delay queue: poll failed");
            /* Such failures are out of memory or a broken assignment; a
             * pause keeps the loop from spinning on them. */
            struct timespec ts = {DELAYQ_RETRY_MS / 1000, (long)(DELAYQ_RETRY_MS % 1000) * 1000000L};
            nanosleep(&ts, NULL);
            continue;
        }
        if (n > 0)
            dq_handle_batch(q, msgs, n);
    }
    atomic_store(&q->running, 0);
    return NULL;
}

/* ----------------------------------------------------------- lifecycle */

static int dq_register_metrics(cmn_delayq_t *q)
{
    cmn_metrics_t *m = q->cfg.metrics;
    char labels[160];
    if (m == NULL)
        return 0;
    for (size_t t = 0; t < q->ntiers; t++) {
        for (int o = 0; o < OUT_N; o++) {
            snprintf(labels, sizeof labels, "family=\"%s\",tier=\"%s\",outcome=\"%s\"", q->family, q->tiers[t].name,
                     outcome_names[o]);
            q->outcomes[t][o] = cmn_metrics_counter(
                m, "delay_records_total",
                "Delay-tier records by outcome: delivered, redelayed (cycled through a tier again), dlq, dropped "
                "(guard).",
                labels);
            if (q->outcomes[t][o] == NULL)
                return CMN_ERR_NOMEM;
        }
    }
    snprintf(labels, sizeof labels, "family=\"%s\"", q->family);
    q->polls_total = cmn_metrics_counter(m, "delay_polls_total", "Polls of the delay-tier consumer.", labels);
    q->ack_failures_total = cmn_metrics_counter(
        m, "delay_ack_failures_total", "Delay-tier batches whose produces were not acknowledged (retried).", labels);
    q->paused_gauge =
        cmn_metrics_gauge(m, "delay_paused_partitions", "Tier partitions paused until their head is due.", labels);
    q->assigned_gauge =
        cmn_metrics_gauge(m, "delay_assigned_partitions", "Tier partitions assigned to this consumer.", labels);
    q->lateness = cmn_metrics_histogram(m, "delay_lateness_seconds",
                                        "Delivery time minus x-crm-due-at of delivered delay-tier records.", labels,
                                        lateness_bounds, sizeof lateness_bounds / sizeof lateness_bounds[0]);
    if (q->polls_total == NULL || q->ack_failures_total == NULL || q->paused_gauge == NULL ||
        q->assigned_gauge == NULL || q->lateness == NULL)
        return CMN_ERR_NOMEM;
    return 0;
}

cmn_delayq_t *cmn_delayq_new(const cmn_delayq_config_t *cfg, char *errstr, size_t errlen)
{
    cmn_delayq_t *q = NULL;
    char target[CMN_DELAY_TOPIC_MAX];
    size_t nextra = 0;

    if (cfg == NULL || cfg->log == NULL || cfg->brokers == NULL || cfg->brokers[0] == '\0' ||
        cfg->group_id == NULL || cfg->group_id[0] == '\0' || cfg->service == NULL || cfg->service[0] == '\0') {
        snprintf(errstr, errlen, "delay queue: service, brokers, group_id and log are required");
        return NULL;
    }
    if (cfg->kind != CMN_DELAY_RETRY && cfg->kind != CMN_DELAY_DEFER) {
        snprintf(errstr, errlen, "delay queue: kind must be CMN_DELAY_RETRY or CMN_DELAY_DEFER");
        return NULL;
    }
    if (cmn_delay_target_name(cfg->kind, cfg->channel, target, sizeof target) != 0) {
        snprintf(errstr, errlen, "delay queue: a retry family needs a real channel");
        return NULL;
    }
    if (cfg->ack_timeout_ms < 0 || cfg->session_timeout_ms < 0 || cfg->max_sleep_ms < 0) {
        snprintf(errstr, errlen, "delay queue: timeouts must not be negative");
        return NULL;
    }
    q = calloc(1, sizeof(*q));
    if (q == NULL) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    q->cfg = *cfg;
    if (q->cfg.ack_timeout_ms == 0)
        q->cfg.ack_timeout_ms = DEFAULT_ACK_TIMEOUT_MS;
    if (q->cfg.max_sleep_ms == 0)
        q->cfg.max_sleep_ms = DEFAULT_MAX_SLEEP_MS;
    if (q->cfg.kind == CMN_DELAY_DEFER)
        q->cfg.channel = CMN_CHANNEL_NONE;
    atomic_init(&q->stop, 0);
    atomic_init(&q->running, 0);
    pthread_mutex_init(&q->mu, NULL);
    if (cfg->kind == CMN_DELAY_RETRY)
        snprintf(q->family, sizeof q->family, "%s%s", CMN_TOPIC_RETRY_PREFIX, cmn_channel_name(cfg->channel));
    else
        snprintf(q->family, sizeof q->family, "crm.defer");
    snprintf(q->client_id, sizeof q->client_id, "%s-%s", cfg->service, q->family);
    q->tiers = cmn_delay_tiers(cfg->kind, &q->ntiers);
    if (q->tiers == NULL || q->ntiers == 0 || q->ntiers > DELAYQ_MAX_TIERS) {
        snprintf(errstr, errlen, "delay queue: no tiers for this family");
        goto cleanup;
    }
    for (size_t t = 0; t < q->ntiers; t++) {
        if (cmn_delay_topic_name(cfg->kind, q->cfg.channel, t, q->topic_names[t], CMN_DELAY_TOPIC_MAX) != 0) {
            snprintf(errstr, errlen, "delay queue: cannot name tier %zu", t);
            goto cleanup;
        }
        q->topics[t] = q->topic_names[t];
    }
    q->topics[q->ntiers] = NULL;
    /* A released head is fetched again after its seek, and the fetch waits
     * for the broker's long poll on the other (empty) partitions to end:
     * librdkafka's 500 ms default would be added to every release. The
     * caller's properties come after, so they can override it. */
    q->extra[nextra++] = "fetch.wait.max.ms=" DELAYQ_FETCH_WAIT_MS;
    for (size_t i = 0; cfg->kafka_extra != NULL && cfg->kafka_extra[i] != NULL; i++) {
        if (nextra + 2 >= EXTRA_MAX) {
            snprintf(errstr, errlen, "delay queue: too many kafka_extra properties");
            goto cleanup;
        }
        q->extra[nextra++] = cfg->kafka_extra[i];
    }
    if (cfg->session_timeout_ms > 0) {
        snprintf(q->session_prop, sizeof q->session_prop, "session.timeout.ms=%d", cfg->session_timeout_ms);
        q->extra[nextra++] = q->session_prop;
    }
    q->extra[nextra] = NULL;
    if (dq_register_metrics(q) != 0) {
        snprintf(errstr, errlen, "delay queue: cannot register metrics");
        goto cleanup;
    }
    /* The producer gets the caller's properties only: session.timeout.ms
     * means nothing to it and librdkafka would warn. */
    cmn_kafka_config_t kc = {.brokers = cfg->brokers, .client_id = q->client_id, .extra = cfg->kafka_extra,
                             .log = cfg->log, .metrics = cfg->metrics};
    q->producer = cmn_kafka_producer_new(&kc, errstr, errlen);
    if (q->producer == NULL)
        goto cleanup;
    return q;

cleanup:
    pthread_mutex_destroy(&q->mu);
    free(q);
    return NULL;
}

int cmn_delayq_start(cmn_delayq_t *q)
{
    char errstr[512] = "";
    if (q == NULL)
        return CMN_ERR_INVALID;
    if (q->state != 0)
        return CMN_ERR_STATE;
    cmn_kafka_config_t kc = {.brokers = q->cfg.brokers, .client_id = q->client_id, .group_id = q->cfg.group_id,
                             .extra = q->extra, .log = q->cfg.log, .metrics = q->cfg.metrics};
    cmn_kafka_consumer_opts_t opts = {.topics = q->topics, .auto_offset_reset = "earliest",
                                      .on_assign = dq_on_assign, .on_revoke = dq_on_revoke, .ctx = q};
    cmn_kafka_consumer_t *c = cmn_kafka_consumer_new(&kc, &opts, errstr, sizeof errstr);
    if (c == NULL) {
        const char *kv[] = {"family", q->family, "error", errstr, NULL};
        cmn_logkv(q->cfg.log, CMN_LOG_ERROR, NULL, kv, "delay queue: cannot create the consumer");
        return CMN_ERR_KAFKA;
    }
    pthread_mutex_lock(&q->mu);
    q->consumer = c;
    pthread_mutex_unlock(&q->mu);
    atomic_store(&q->running, 1);
    if (pthread_create(&q->thread, NULL, dq_thread, q) != 0) {
        atomic_store(&q->running, 0);
        pthread_mutex_lock(&q->mu);
        q->consumer = NULL;
        pthread_mutex_unlock(&q->mu);
        cmn_kafka_consumer_destroy(c);
        return CMN_ERR_STATE;
    }
    q->state = 1;
    const char *kv[] = {"family", q->family, "group", q->cfg.group_id, NULL};
    cmn_logkv(q->cfg.log, CMN_LOG_INFO, NULL, kv, "delay queue started");
    return 0;
}

void cmn_delayq_stop(cmn_delayq_t *q)
{
    if (q == NULL || q->state == 2)
        return;
    int was_running = q->state == 1;
    q->state = 2;
    if (!was_running)
        return;
    atomic_store(&q->stop, 1);
    pthread_join(q->thread, NULL);
    pthread_mutex_lock(&q->mu);
    cmn_kafka_consumer_t *c = q->consumer;
    q->consumer = NULL;
    pthread_mutex_unlock(&q->mu);
    /* Closing leaves the group at once, so another member takes the
     * partitions from their committed offsets without waiting for the
     * session to time out. */
    cmn_kafka_consumer_destroy(c);
    if (q->producer != NULL && cmn_kafka_producer_flush(q->producer, q->cfg.ack_timeout_ms) != 0) {
        const char *kv[] = {"family", q->family, NULL};
        cmn_logkv(q->cfg.log, CMN_LOG_WARN, NULL, kv, "delay queue: producer not flushed before the timeout");
    }
    q->nparts = 0;
    if (q->paused_gauge != NULL)
        cmn_gauge_set(q->paused_gauge, 0);
    if (q->assigned_gauge != NULL)
        cmn_gauge_set(q->assigned_gauge, 0);
    const char *kv[] = {"family", q->family, NULL};
    cmn_logkv(q->cfg.log, CMN_LOG_INFO, NULL, kv, "delay queue stopped");
}

int cmn_delayq_is_ready(void *arg)
{
    cmn_delayq_t *q = arg;
    int ready = 0;
    if (q == NULL || !atomic_load(&q->running))
        return 0;
    pthread_mutex_lock(&q->mu);
    if (q->consumer != NULL)
        ready = cmn_kafka_consumer_is_healthy(q->consumer);
    pthread_mutex_unlock(&q->mu);
    return ready;
}

void cmn_delayq_destroy(cmn_delayq_t *q)
{
    if (q == NULL)
        return;
    cmn_delayq_stop(q);
    cmn_kafka_producer_destroy(q->producer);
    pthread_mutex_destroy(&q->mu);
    free(q->parts);
    free(q->heads);
    free(q->pause);
    free(q->done);
    free(q);
}
