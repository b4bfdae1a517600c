/* delayq.h - the consumer of one family of delay tiers (crm.retry.<ch>.* or
 * crm.defer.*), running on its own thread inside a service.
 *
 * It subscribes to every tier topic of its family (its own consumer group),
 * and for the head record of each assigned partition asks
 * cmn_delay_next_step() what to do:
 *   DELIVER  - produce the record to its x-crm-target (key, value and every
 *              header unchanged), then commit;
 *   REDELAY  - produce it again, unchanged, to the tier chosen for the
 *              remaining wait, then commit (a long wait cycles);
 *   PAUSE    - pause the partition until the head is released, and sleep in
 *              poll until the earliest paused head is ready (no busy polling;
 *              other partitions and tiers go on).
 * A record whose headers fail cmn_delay_headers_parse() goes to crm.dlq with
 * the reason; offsets are committed only after the produce is acknowledged,
 * so a crash re-delivers (at least once), never loses.
 *
 * An optional guard lets the owner decide about a due record at delivery
 * time (the receipt watches of receipt-driven fallback, crm/receipt.h): it
 * is called for a due record that carries the header x-crm-guard and
 * answers
 *   DELIVER  - produce it to its target, together with the extra records
 *              the guard added to *out (e.g. a `fallback` status), all in
 *              the same acknowledged batch, before the commit;
 *   DROP     - commit it without producing anything;
 *   RETRY    - cannot decide now (database down): hold the partition and
 *              ask again about a second later;
 *   RECHECK  - not yet: produce the record again, unchanged but for
 *              x-crm-due-at = out->recheck_at_ms, through the tier chosen
 *              for that wait (as a REDELAY does), then commit;
 *   REJECT   - the record is malformed (its guard header or value): copy
 *              it to crm.dlq with out->reason, then commit.
 * A record whose x-crm-target is not its family's default target (a
 * crm.defer.* record bound for crm.send.<channel>, cmn_delay_headers_t
 * .alternate) must carry x-crm-guard, and the queue must have a guard;
 * otherwise it goes to crm.dlq with the reason, never to its target.
 *
 * A partition whose head is held is paused and its fetch position moved
 * back to the head (a seek), so records librdkafka fetched past the head
 * are read again after it, never skipped; when the head is released the
 * partition is sought to it again and resumed, and the head is decided
 * anew. Offsets are committed per partition, up to the last record handled,
 * never past a held head. When a batch's produces are not acknowledged
 * within ack_timeout_ms nothing of it is committed and each of its
 * partitions goes back to its first record of the batch, tried again about
 * a second later (the records already produced are produced again: at
 * least once). A guard that answers RETRY holds the partition the same way.
 *
 * Metrics (when cfg.metrics is set), labelled family="crm.retry.<ch>" or
 * family="crm.defer": delay_records_total{family,tier,outcome} with outcome
 * delivered | redelayed | dlq | dropped | rechecked (tier = the tier the record was
 * read from), delay_paused_partitions and delay_assigned_partitions
 * (gauges), delay_lateness_seconds
 * (histogram of delivery time - x-crm-due-at), delay_polls_total and
 * delay_ack_failures_total.
 *
 * Threading: cmn_delayq_start() runs the loop on a thread of its own, with
 * its own producer and consumer; every callback runs on that thread.
 * cmn_delayq_is_ready() may be called from any thread. */
#ifndef CRM_DELAYQ_H
#define CRM_DELAYQ_H

#include <stddef.h>
#include <stdint.h>

#include "crm/channel.h"
#include "crm/delay.h"
#include "crm/kafka.h"
#include "crm/log.h"
#include "crm/metrics.h"

#define CMN_HDR_GUARD "x-crm-guard"

typedef enum cmn_delayq_verdict {
    CMN_DELAYQ_DELIVER = 0, /* produce to the target, and the guard's extra records */
    CMN_DELAYQ_DROP = 1,    /* commit without producing (the guard's condition no longer holds) */
    CMN_DELAYQ_RETRY = 2,   /* cannot decide now (e.g. database down): keep the record, try again shortly */
    CMN_DELAYQ_RECHECK = 3, /* not yet: back into the tiers, due at out->recheck_at_ms */
    CMN_DELAYQ_REJECT = 4   /* malformed: to crm.dlq with out->reason */
} cmn_delayq_verdict_t;

#define CMN_DELAYQ_EXTRA_MAX 4
#define CMN_DELAYQ_EXTRA_HEADERS_MAX 4

/* One extra record a guard asks for; everything owned by the out struct. */
typedef struct cmn_delayq_extra {
    char *topic;
    void *key;
    size_t key_len;
    void *value;
    size_t value_len;
    cmn_kafka_header_t headers[CMN_DELAYQ_EXTRA_HEADERS_MAX]; /* names and values owned */
    size_t nheaders;
} cmn_delayq_extra_t;

/* What a guard answers besides its verdict. The queue zeroes it before the
 * call and frees it after (cmn_delayq_guard_out_clear). */
typedef struct cmn_delayq_guard_out {
    /* RECHECK: when the record is due again (epoch ms). A time not after
     * now is taken as now + about a second, so a guard cannot make the
     * queue spin. */
    int64_t recheck_at_ms;
    /* REJECT: the DLQ reason ("" gives a generic one). */
    char reason[160];
    /* DELIVER: records produced with the delivered one (ignored for any
     * other verdict). */
    cmn_delayq_extra_t extra[CMN_DELAYQ_EXTRA_MAX];
    size_t n_extra;
} cmn_delayq_guard_out_t;

/* Adds one extra record to out, copying topic, key, value and headers.
 * Returns 0, CMN_ERR_INVALID (NULL topic/out, headers NULL with n > 0),
 * CMN_ERR_OVERFLOW (more than CMN_DELAYQ_EXTRA_MAX records or
 * CMN_DELAYQ_EXTRA_HEADERS_MAX headers) or CMN_ERR_NOMEM; out is unchanged
 * on error. */
int cmn_delayq_guard_add(cmn_delayq_guard_out_t *out, const char *topic, const void *key, size_t key_len,
                         const void *value, size_t value_len, const cmn_kafka_header_t *headers, size_t nheaders);

/* Frees what out owns and zeroes it. NULL is a no-op. */
void cmn_delayq_guard_out_clear(cmn_delayq_guard_out_t *out);

/* guard: called on the delay thread for a due record with an x-crm-guard
 * header; value is the header's bytes (borrowed, not NUL-terminated); out
 * is zeroed, for RECHECK's time and DELIVER's extra records. */
typedef cmn_delayq_verdict_t (*cmn_delayq_guard_fn)(void *guard_ctx, const cmn_kafka_message_t *rec,
                                                    const char *value, size_t value_len,
                                                    cmn_delayq_guard_out_t *out);

typedef struct cmn_delayq_config {
    const char *service;            /* e.g. "crm-sms-worker": client id prefix and DLQ header */
    const char *brokers;
    const char *group_id;           /* e.g. "crm-sms-worker-retry", "crm-router-defer" */
    const char *const *kafka_extra; /* NULL-terminated "key=value" librdkafka properties, or NULL */
    cmn_delay_kind_t kind;          /* CMN_DELAY_RETRY or CMN_DELAY_DEFER */
    cmn_channel_t channel;          /* the channel of a RETRY family; CMN_CHANNEL_NONE for DEFER */
    int ack_timeout_ms;             /* wait for produce acknowledgements; 0 means 30000 */
    int session_timeout_ms;         /* 0 keeps librdkafka's */
    int max_sleep_ms;               /* longest poll, so a stop is noticed; 0 means 500 */
    cmn_delayq_guard_fn guard;      /* may be NULL: every due record bound for the default target is delivered */
    void *guard_ctx;
    const cmn_log_t *log;           /* borrowed, required */
    cmn_metrics_t *metrics;         /* borrowed, may be NULL; registers the delay_* series above */
} cmn_delayq_config_t;

typedef struct cmn_delayq cmn_delayq_t;

/* Validates cfg and creates the producer; the consumer is created (and
 * subscribed) by cmn_delayq_start(). cfg is copied; its pointers are
 * borrowed and must outlive the queue. The client id is
 * "<service>-<family>". NULL with the reason in errstr. */
cmn_delayq_t *cmn_delayq_new(const cmn_delayq_config_t *cfg, char *errstr, size_t errlen);

/* Creates the consumer (group cfg.group_id, every tier topic of the family,
 * from the earliest offset when the group has none) and starts the thread.
 * Returns 0, CMN_ERR_KAFKA (consumer refused; logged), or CMN_ERR_STATE
 * when already started or stopped (a queue is started once). */
int cmn_delayq_start(cmn_delayq_t *q);

/* Asks the thread to stop, waits for it (the record in hand is finished:
 * produced, acknowledged, committed), closes the consumer and flushes the
 * producer. Safe to call twice or on a queue never started. */
void cmn_delayq_stop(cmn_delayq_t *q);

/* 1 while the thread runs and the consumer is healthy; safe from any
 * thread (void * to fit cmn_http_config_t.ready). */
int cmn_delayq_is_ready(void *q);

/* Stops (if needed) and frees. NULL is a no-op. */
void cmn_delayq_destroy(cmn_delayq_t *q);

#endif
