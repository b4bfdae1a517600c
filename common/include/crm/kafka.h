/* kafka.h - the project's Kafka producer and consumer, on librdkafka.
 *
 * Producer: idempotent (enable.idempotence=true, acks=all), LZ4, linger 5 ms,
 * murmur2 partitioner (the Java client's, so a key maps to the same partition
 * whoever produces it), message.timeout.ms 30000 unless cfg->extra overrides
 * it; a background thread polls delivery reports and calls each message's
 * callback exactly once (also for messages purged at destroy).
 *
 * Consumer: a consumer group member with cooperative-sticky assignment. The
 * service pulls batches, does its side effects, waits for their Kafka
 * acknowledgements, and only then calls cmn_kafka_consumer_commit_batch(), so
 * an offset is committed only after the work it stands for is durable
 * (at-least-once). Rebalance callbacks run inside poll, between batches; a
 * partition revoked while a batch was being gathered is dropped from that
 * batch so its records are processed once, by the new owner.
 *
 * Both read "KAFKA_BROKERS" style bootstrap lists; extra librdkafka properties
 * can be passed as "key=value" strings (tests use them); they override the
 * defaults above.
 *
 * Metrics (when cfg->metrics is set): kafka_messages_produced_total{topic},
 * kafka_produce_errors_total{topic}, kafka_messages_consumed_total{topic},
 * kafka_consumer_errors_total, kafka_commit_errors_total,
 * kafka_commits_deferred_total, kafka_client_errors_total. Errors are logged
 * through cfg->log as JSON lines. cfg->log and cfg->metrics are borrowed and
 * must outlive the producer/consumer; cfg itself may go away after _new. */
#ifndef CRM_KAFKA_H
#define CRM_KAFKA_H

#include <stddef.h>
#include <stdint.h>

#include "crm/log.h"
#include "crm/metrics.h"

/* Topic names (DESIGN.md). */
#define CMN_TOPIC_REQUESTS "crm.requests"
#define CMN_TOPIC_STATUS "crm.status"
#define CMN_TOPIC_INBOUND "crm.inbound"
#define CMN_TOPIC_PREFERENCES "crm.preferences"
#define CMN_TOPIC_DLQ "crm.dlq"
#define CMN_TOPIC_SEND_PREFIX "crm.send."   /* + channel */
#define CMN_TOPIC_RETRY_PREFIX "crm.retry." /* + channel + "." + tier */
#define CMN_TOPIC_DEFER_PREFIX "crm.defer." /* + tier */

/* A topic-level setting the engine relies on (see the table in kafka.c). */
typedef struct cmn_kafka_topic_config {
    const char *name;  /* e.g. "cleanup.policy" */
    const char *value; /* e.g. "compact" */
} cmn_kafka_topic_config_t;

#define CMN_KAFKA_TOPIC_MAX_CONFIGS 2

/* Every topic of the design with its partition count, whether it is
 * compacted and the topic configs `crmctl topics create` sets and checks:
 * the delay tiers (crm.retry.<ch>.<tier>, crm.defer.<tier>) use
 * message.timestamp.type=LogAppendTime, crm.preferences
 * cleanup.policy=compact, crm.dlq retention.ms of CMN_KAFKA_DLQ_RETENTION_MS. */
typedef struct cmn_kafka_topic_spec {
    const char *name;
    int partitions;
    int compacted;
    cmn_kafka_topic_config_t configs[CMN_KAFKA_TOPIC_MAX_CONFIGS]; /* a NULL name ends the list */
} cmn_kafka_topic_spec_t;
/* Returns the static table and stores its length in *n. */
const cmn_kafka_topic_spec_t *cmn_kafka_topics(size_t *n);
/* The table's entry for name, or NULL when it is not an engine topic. */
const cmn_kafka_topic_spec_t *cmn_kafka_topic_find(const char *name);
/* The value spec wants for config name, or NULL when it sets none. */
const char *cmn_kafka_topic_config_want(const cmn_kafka_topic_spec_t *spec, const char *name);

/* Dead letters are kept 30 days: long enough to notice a failure after a
 * holiday weekend, investigate and replay; short enough that personal data
 * in failed requests does not linger. */
#define CMN_KAFKA_DLQ_RETENTION_MS "2592000000"

typedef struct cmn_kafka_header {
    const char *name;
    const void *value;   /* not necessarily NUL-terminated */
    size_t value_len;
} cmn_kafka_header_t;

/* Standard header names. */
#define CMN_HDR_TRACEPARENT "traceparent"
#define CMN_HDR_DUE_AT "x-crm-due-at"
#define CMN_HDR_TARGET "x-crm-target"
#define CMN_HDR_DLQ_REASON "x-crm-dlq-reason"
#define CMN_HDR_DLQ_SOURCE_TOPIC "x-crm-dlq-source-topic"
#define CMN_HDR_DLQ_SOURCE_PARTITION "x-crm-dlq-source-partition"
#define CMN_HDR_DLQ_SOURCE_OFFSET "x-crm-dlq-source-offset"
#define CMN_HDR_DLQ_SERVICE "x-crm-dlq-service"
/* Every header cmn_kafka_dlq_in_batch adds starts with this; a replay drops them. */
#define CMN_HDR_DLQ_PREFIX "x-crm-dlq-"
/* Set by `crmctl dlq replay` on the copy it produces: "<dlq partition>:<dlq offset>". */
#define CMN_HDR_REPLAYED_FROM "x-crm-replayed-from"

typedef struct cmn_kafka_config {
    const char *brokers;          /* bootstrap servers, required */
    const char *client_id;        /* e.g. "crm-router" */
    const char *group_id;         /* consumers only */
    const char *const *extra;     /* NULL-terminated "key=value" librdkafka properties, or NULL */
    const cmn_log_t *log;
    cmn_metrics_t *metrics;       /* may be NULL */
} cmn_kafka_config_t;

/* ---------------------------------------------------------------- producer */

typedef struct cmn_kafka_producer cmn_kafka_producer_t;

/* Called once per produced message from the producer's poll thread.
 * err is 0 when the message is acknowledged by all in-sync replicas. */
typedef void (*cmn_kafka_delivery_fn)(void *opaque, int err, const char *errmsg);

cmn_kafka_producer_t *cmn_kafka_producer_new(const cmn_kafka_config_t *cfg, char *errstr, size_t errlen);

/* Queues one message. key/value/headers are copied. partition -1 means by key.
 * cb may be NULL. Returns 0, CMN_ERR_UNAVAILABLE when the local queue is full
 * (caller may retry after a poll), or CMN_ERR_KAFKA. */
int cmn_kafka_produce(cmn_kafka_producer_t *p, const char *topic, int32_t partition, const void *key,
                      size_t key_len, const void *value, size_t value_len,
                      const cmn_kafka_header_t *headers, size_t nheaders, cmn_kafka_delivery_fn cb,
                      void *opaque);

/* A group of produces whose acknowledgements the caller waits for together:
 * the way every service makes "offsets after side effects" simple.
 *   cmn_kafka_batch_t b; cmn_kafka_batch_init(&b);
 *   cmn_kafka_produce_in_batch(p, &b, ...); ...
 *   rc = cmn_kafka_batch_wait(&b, timeout_ms);  // 0 when all acked
 * Thread-safe; lives on the caller's stack; cmn_kafka_batch_destroy after wait. */
typedef struct cmn_kafka_batch {
    void *impl; /* mutex, condvar, counters */
} cmn_kafka_batch_t;
int cmn_kafka_batch_init(cmn_kafka_batch_t *b);
/* Like cmn_kafka_produce (partition by key; everything copied), but when the
 * local queue is full it polls and retries for up to 10 s before returning
 * CMN_ERR_UNAVAILABLE. A produce that fails here also counts as a failure of
 * the batch, so cmn_kafka_batch_wait reports it. Destroying a batch whose
 * wait timed out is safe: late delivery reports find it still alive. */
int cmn_kafka_produce_in_batch(cmn_kafka_producer_t *p, cmn_kafka_batch_t *b, const char *topic,
                               const void *key, size_t key_len, const void *value, size_t value_len,
                               const cmn_kafka_header_t *headers, size_t nheaders);
/* Waits until every produce of the batch is acknowledged or failed. Returns 0
 * when all succeeded, CMN_ERR_KAFKA when any failed (first error in errstr),
 * CMN_ERR_TIMEOUT when timeout_ms passed first. */
int cmn_kafka_batch_wait(cmn_kafka_batch_t *b, int timeout_ms, char *errstr, size_t errlen);
void cmn_kafka_batch_destroy(cmn_kafka_batch_t *b);

/* Waits for everything queued to be delivered. */
int cmn_kafka_producer_flush(cmn_kafka_producer_t *p, int timeout_ms);
/* Flushes (up to 10 s) and frees. */
void cmn_kafka_producer_destroy(cmn_kafka_producer_t *p);

/* ---------------------------------------------------------------- consumer */

typedef struct cmn_kafka_consumer cmn_kafka_consumer_t;

/* One consumed record. All pointers are borrowed from the batch and valid
 * until the next poll_batch or consumer destroy. key and value are copies
 * with a NUL after their last byte; key is NULL when the record has none and
 * value is NULL (value_len 0) for a tombstone. */
typedef struct cmn_kafka_message {
    const char *topic;
    int32_t partition;
    int64_t offset;
    int64_t timestamp_ms;
    const char *key;  size_t key_len;
    const char *value; size_t value_len;  /* value is NUL-terminated for convenience */
    void *internal;
} cmn_kafka_message_t;

/* Borrowed header value, NULL when absent. */
const void *cmn_kafka_message_header(const cmn_kafka_message_t *m, const char *name, size_t *len);

/* The idx-th header of m (0-based, in record order, repeated names kept):
 * name and value are borrowed like the record (valid until the next
 * poll_batch); value is not NUL-terminated and may be NULL for a header
 * without a value. Returns 0, CMN_ERR_NOTFOUND past the last header, or
 * CMN_ERR_INVALID. */
int cmn_kafka_message_header_at(const cmn_kafka_message_t *m, size_t idx, const char **name, const void **value,
                                size_t *len);

/* Produces src's key, value and every header (in order, unchanged) to topic
 * as part of batch b, like cmn_kafka_produce_in_batch: the way a record
 * moves between topics untouched (delay tiers). A source without a
 * traceparent gets a fresh one, as every produce does. src is only read;
 * everything is copied. */
int cmn_kafka_forward_in_batch(cmn_kafka_producer_t *p, cmn_kafka_batch_t *b, const char *topic,
                               const cmn_kafka_message_t *src);

/* Called on partition assignment so a service can supply stored offsets (the
 * projector reads them from PostgreSQL). For each i, set offsets[i] to the
 * next offset to read or leave it at -1 (committed offset / auto.offset.reset).
 * Return 0, or a negative code to fail the consumer. */
typedef int (*cmn_kafka_assign_fn)(void *ctx, const char *const *topics, const int32_t *partitions,
                                   int64_t *offsets, size_t n);
typedef void (*cmn_kafka_revoke_fn)(void *ctx, const char *const *topics, const int32_t *partitions,
                                    size_t n);

typedef struct cmn_kafka_consumer_opts {
    const char *const *topics;     /* NULL-terminated */
    const char *auto_offset_reset; /* "earliest" (default) or "latest" */
    cmn_kafka_assign_fn on_assign; /* may be NULL */
    cmn_kafka_revoke_fn on_revoke; /* may be NULL */
    void *ctx;
} cmn_kafka_consumer_opts_t;

cmn_kafka_consumer_t *cmn_kafka_consumer_new(const cmn_kafka_config_t *cfg,
                                             const cmn_kafka_consumer_opts_t *opts, char *errstr,
                                             size_t errlen);

/* Gathers up to max records, waiting at most timeout_ms for the first one and
 * then taking whatever is already fetched. *msgs points at an array owned by
 * the consumer. Returns the count (0 on timeout) or a negative code. */
int cmn_kafka_consumer_poll_batch(cmn_kafka_consumer_t *c, int max, int timeout_ms,
                                  cmn_kafka_message_t **msgs);

/* Marks every record of the last batch as processed and commits synchronously.
 * Returns 0 also when a group rebalance makes the coordinator refuse the
 * commit: the offsets stay stored and are committed by the next commit, or
 * before their partitions are revoked, and if librdkafka declares the
 * assignment lost and hands the partitions back, the consumer resumes after
 * the records already marked (see kafka.c). CMN_ERR_KAFKA for other errors
 * (the offsets stay stored and are retried by the next commit). */
int cmn_kafka_consumer_commit_batch(cmn_kafka_consumer_t *c);
/* Rewinds each partition of the last batch to its first record there, so the
 * batch is delivered again (used when its side effects could not be made durable). */
int cmn_kafka_consumer_rewind_batch(cmn_kafka_consumer_t *c);

/* One partition's position for cmn_kafka_consumer_commit_offsets(): next is
 * the next offset to read (the last processed record's offset + 1). topic is
 * borrowed. */
typedef struct cmn_kafka_offset {
    const char *topic;
    int32_t partition;
    int64_t next;
} cmn_kafka_offset_t;

/* Commits exactly these positions, for a consumer that finishes records
 * partition by partition rather than a whole batch at a time (the delay
 * tiers hold a partition's head back while later partitions go on).
 * Partitions no longer assigned are skipped; the rest behaves and returns
 * like cmn_kafka_consumer_commit_batch() (a rebalance defers the commit,
 * progress is remembered for a regained partition). offsets is borrowed. */
int cmn_kafka_consumer_commit_offsets(cmn_kafka_consumer_t *c, const cmn_kafka_offset_t *offsets, size_t n);

/* Moves an assigned partition's fetch position to offset and waits for the
 * seek to take effect: the partition's next record from poll_batch is the
 * one at offset, and records fetched beyond it are discarded. Works on a
 * paused partition (fetching starts there on resume). A paused partition
 * otherwise resumes after the last record poll_batch returned for it, so a
 * consumer that holds a record back must seek to it. Returns 0 or
 * CMN_ERR_KAFKA (e.g. the partition is not assigned), CMN_ERR_INVALID. */
int cmn_kafka_consumer_seek(cmn_kafka_consumer_t *c, const char *topic, int32_t partition, int64_t offset);

/* Pause/resume one partition (delay topics, backpressure). Resume only a
 * partition this consumer paused: librdkafka resets a partition's fetch
 * state on every pause or resume call, even one that changes nothing. */
int cmn_kafka_consumer_pause(cmn_kafka_consumer_t *c, const char *topic, int32_t partition);
int cmn_kafka_consumer_resume(cmn_kafka_consumer_t *c, const char *topic, int32_t partition);

/* 1 while the consumer has an assignment or has talked to the cluster recently:
 * a rebalance, a record or a commit in the last 30 s, else a metadata request
 * (up to 2 s) decides. Safe to call from another thread (health endpoints). */
int cmn_kafka_consumer_is_healthy(cmn_kafka_consumer_t *c);

/* Leaves the group cleanly (commits nothing new) and frees. */
void cmn_kafka_consumer_destroy(cmn_kafka_consumer_t *c);

/* ----------------------------------------------------------------- helpers */

/* Produces value to crm.dlq keyed by the original key, with reason, source
 * topic/partition/offset and service headers, as part of batch b. The
 * source's own headers follow (its traceparent, a delay tier's plan, ...;
 * x-crm-dlq-* ones of an earlier dead-lettering are dropped), so `crmctl dlq
 * replay` can restore the record as it was; a source without traceparent
 * gets a new one. src is only read; everything is copied. */
int cmn_kafka_dlq_in_batch(cmn_kafka_producer_t *p, cmn_kafka_batch_t *b, const cmn_kafka_message_t *src,
                           const char *service, const char *reason);

/* What cmn_kafka_ensure_topics() found for one topic. */
typedef enum cmn_kafka_topic_state {
    CMN_KAFKA_TOPIC_OK,        /* exists with the wanted partitions and configs */
    CMN_KAFKA_TOPIC_CREATED,   /* was missing and has been created */
    CMN_KAFKA_TOPIC_FIXED,     /* differed and has been altered (opts.fix) */
    CMN_KAFKA_TOPIC_MISMATCH,  /* differs and was left as it is */
    CMN_KAFKA_TOPIC_UNCHECKED, /* exists, partitions fine, but the cluster cannot describe configs */
    CMN_KAFKA_TOPIC_FAILED     /* creating or altering it failed */
} cmn_kafka_topic_state_t;

const char *cmn_kafka_topic_state_name(cmn_kafka_topic_state_t s);

/* Called once per engine topic (in table order) and possibly once more with
 * a detail line per difference; detail is "" or says what differs, e.g.
 * "retention.ms is 604800000, want 2592000000". Strings are borrowed for the
 * call only. */
typedef void (*cmn_kafka_topic_report_fn)(void *ctx, const char *topic, cmn_kafka_topic_state_t state,
                                          const char *detail);

typedef struct cmn_kafka_topics_opts {
    int replication;   /* replication factor of new topics; 0: min(3, brokers in the cluster) */
    int partitions;    /* 0: each topic's table count; else this count for every topic */
    int fix;           /* 1: alter configs that differ and add missing partitions */
    cmn_kafka_topic_report_fn report; /* may be NULL */
    void *ctx;
    const cmn_log_t *log;             /* may be NULL; borrowed */
} cmn_kafka_topics_opts_t;

/* Makes the cluster at brokers hold every topic of cmn_kafka_topics() as the
 * table wants it, through the Admin API:
 *   - a missing topic is created with its partitions, configs and the
 *     replication factor;
 *   - an existing topic with fewer partitions than wanted is a mismatch
 *     (grown with CreatePartitions under opts.fix: the key-to-partition
 *     mapping changes for new records); more partitions than wanted are
 *     reported in the detail and accepted;
 *   - an existing topic's configs are read with DescribeConfigs; a config
 *     that differs is a mismatch, or with opts.fix is altered (AlterConfigs,
 *     keeping the topic's other dynamic configs).
 * A cluster that does not serve DescribeConfigs (librdkafka's mock cluster)
 * reports existing topics UNCHECKED and that is not an error.
 * Returns 0 when every topic exists afterwards and none is a mismatch,
 * CMN_ERR_CONFIG when some topic differs and was not (or could not be)
 * fixed, CMN_ERR_UNAVAILABLE when the cluster cannot be reached or has no
 * controller (a mock cluster lacking topics: it has no CreateTopics API),
 * CMN_ERR_KAFKA when a request was refused; errstr names the first problem. */
int cmn_kafka_ensure_topics(const char *brokers, const cmn_kafka_topics_opts_t *opts, char *errstr,
                            size_t errlen);

/* cmn_kafka_ensure_topics() with the given replication factor, the table's
 * partition counts, no fixing and no report: creates what is missing and
 * fails on a mismatch. log may be NULL. */
int cmn_kafka_create_topics(const char *brokers, int replication, const cmn_log_t *log, char *errstr,
                            size_t errlen);

/* A fresh W3C traceparent ("00-<32 hex>-<16 hex>-01") into out (56 bytes). */
int cmn_kafka_traceparent_new(char out[56]);

#endif
