/* th_kafka.h - Kafka for the tests: librdkafka's mock cluster, in process.
 *
 * The mock cluster is a real Kafka protocol server on 127.0.0.1 ports, so
 * service binaries started by the test connect to it like to any broker. */
#ifndef TH_KAFKA_H
#define TH_KAFKA_H

#include <stddef.h>
#include <stdint.h>

typedef struct th_kafka th_kafka_t;

/* Starts a cluster of nbrokers with every topic of cmn_kafka_topics()
 * created (partitions as configured). */
th_kafka_t *th_kafka_start(int nbrokers);
const char *th_kafka_bootstraps(th_kafka_t *k);
/* The mock cluster handle (rd_kafka_mock_cluster_t *) for fault injection. */
void *th_kafka_mock(th_kafka_t *k);
void th_kafka_stop(th_kafka_t *k);

/* Produces one record and waits for its acknowledgement. headers is NULL or
 * a NULL-terminated list of "name", "value" pairs. Returns 0 or -1. */
int th_kafka_produce(const char *brokers, const char *topic, const char *key, const char *value,
                     const char *const *headers);

typedef struct th_kafka_record {
    char *key;
    char *value;
    char *headers_json; /* {"name":"value",...} */
    int32_t partition;
    int64_t offset;
} th_kafka_record_t;

/* Reads topic from the beginning (all partitions, no group) until `expect`
 * records were read or timeout_ms passed. Returns a malloc'd array the caller
 * frees with th_kafka_records_free, and the count in *n. */
th_kafka_record_t *th_kafka_read_all(const char *brokers, const char *topic, size_t expect, int timeout_ms,
                                     size_t *n);
void th_kafka_records_free(th_kafka_record_t *r, size_t n);

/* Reads every record topic holds now: the end (high watermark) of each
 * partition is taken first and the partition is read up to it, so the call
 * returns as soon as that is done and never waits for records that may
 * come later. Use it once what the test waits for is known to be in the log
 * (a sentinel behind it was processed, the group committed everything).
 * Returns a malloc'd array (free with th_kafka_records_free) and the count
 * in *n, or NULL when the topic could not be read to its end in timeout_ms. */
th_kafka_record_t *th_kafka_read_to_end(const char *brokers, const char *topic, int timeout_ms, size_t *n);

/* How many records of topic consumer group `group` has not committed: the
 * sum over the partitions of the end of the log minus the committed offset
 * (the start of the log where nothing is committed). It asks the group
 * coordinator without joining the group. 0 means the group has processed
 * and committed everything produced so far. Returns 0 with *lag, or -1. */
int th_kafka_group_lag(const char *brokers, const char *group, const char *topic, int timeout_ms, int64_t *lag);

#endif
