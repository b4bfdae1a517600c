/* Integration tests of the faults the chaos suite injects into the embedded
 * Kafka (librdkafka's mock cluster), through our producer (crm/kafka.h):
 * which of them a real cluster could produce without losing a write the
 * producer was told is acknowledged.
 *
 * Found by the long chaos run (docs/chaos.md, "What the suite found"): an
 * idempotent producer's ProduceRequest that gets an injected error while
 * the next request of the same partition, already in flight, succeeds
 * makes librdkafka 2.0.2 report the first request's messages as delivered
 * ("implicitly acked by subsequent batch success"). A real broker checks
 * the idempotent sequence numbers and would have refused the second
 * request (OUT_OF_ORDER_SEQUENCE_NUMBER), so the inference is sound there;
 * the mock checks sequences only for transactional producers, so the first
 * messages are acknowledged and never written. The first test pins that
 * behaviour down: if a librdkafka upgrade makes it fail, produce request
 * errors are safe to inject again. The second shows that the faults the
 * chaos suite uses instead (a slow broker, a broker down) lose nothing. */
#include <criterion/criterion.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crm/err.h"
#include "crm/kafka.h"
#include "crm/log.h"
#include "th_kafka.h"

/* Kafka protocol ApiKey of Produce requests (not exported by librdkafka). */
#define APIKEY_PRODUCE 0
#define TOPIC CMN_TOPIC_STATUS
/* One key, so every record goes to one partition, in order. */
#define KEY "communication-1"

typedef struct fixture {
    th_kafka_t *k;
    const char *brokers;
    cmn_log_t log;
    cmn_kafka_producer_t *p;
} fixture_t;

static void fixture_start(fixture_t *f)
{
    char err[512] = "";
    memset(f, 0, sizeof(*f));
    f->k = th_kafka_start(3);
    cr_assert_not_null(f->k, "mock cluster did not start");
    f->brokers = th_kafka_bootstraps(f->k);
    const char *level = getenv("TEST_KAFKA_LOG_LEVEL");
    cmn_log_init(&f->log, "test-kafka-mock-faults", level != NULL ? level : "warn");
    /* The services' producer settings (idempotent, acks=all, linger 5 ms). */
    cmn_kafka_config_t cfg = {.brokers = f->brokers, .client_id = "test-producer", .log = &f->log};
    f->p = cmn_kafka_producer_new(&cfg, err, sizeof(err));
    cr_assert_not_null(f->p, "producer: %s", err);
}

static void fixture_stop(fixture_t *f)
{
    cmn_kafka_producer_destroy(f->p);
    th_kafka_stop(f->k);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Queues value under KEY into b. */
static void produce(fixture_t *f, cmn_kafka_batch_t *b, const char *value)
{
    cr_assert_eq(cmn_kafka_produce_in_batch(f->p, b, TOPIC, KEY, strlen(KEY), value, strlen(value), NULL, 0), 0);
}

/* 1 when value is in the log of TOPIC now. */
static int in_log(const th_kafka_record_t *r, size_t n, const char *value)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(r[i].value, value) == 0)
            return 1;
    }
    return 0;
}

Test(kafka_mock_faults, produce_request_errors_lose_an_acknowledged_message, .timeout = 60)
{
    fixture_t f;
    char why[256] = "";
    fixture_start(&f);
    cmn_kafka_batch_t warm, a, b;
    /* The producer has its id and the partition's leader before the faults. */
    cr_assert_eq(cmn_kafka_batch_init(&warm), 0);
    produce(&f, &warm, "warm-up");
    cr_assert_eq(cmn_kafka_batch_wait(&warm, 20000, why, sizeof(why)), 0, "%s", why);
    cmn_kafka_batch_destroy(&warm);

    /* Two errors, as the chaos suite queued them (NOT_LEADER_FOR_PARTITION,
     * for whichever Produce requests come next). "A" gets the first; while
     * it waits out its retry backoff, "B" queues behind it. The retry sends
     * A's request again and B's right behind it: A's gets the second
     * error, B's succeeds. */
    rd_kafka_mock_push_request_errors(th_kafka_mock(f.k), APIKEY_PRODUCE, 2,
                                      RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                                      RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION);
    cr_assert_eq(cmn_kafka_batch_init(&a), 0);
    cr_assert_eq(cmn_kafka_batch_init(&b), 0);
    produce(&f, &a, "A");
    sleep_ms(30);
    produce(&f, &b, "B");
    int rc_a = cmn_kafka_batch_wait(&a, 20000, why, sizeof(why));
    int rc_b = cmn_kafka_batch_wait(&b, 20000, why, sizeof(why));
    cmn_kafka_batch_destroy(&a);
    cmn_kafka_batch_destroy(&b);

    size_t n = 0;
    th_kafka_record_t *r = th_kafka_read_to_end(f.brokers, TOPIC, 15000, &n);
    cr_assert_not_null(r);
    cr_assert_eq(rc_b, 0, "B is acknowledged");
    cr_assert(in_log(r, n, "B"), "B is in the log");
    cr_assert_eq(rc_a, 0, "A is reported acknowledged too");
    cr_assert_not(in_log(r, n, "A"),
                  "the mock cluster wrote A after all: produce request errors no longer lose acknowledged writes, "
                  "and the chaos suite may inject them again (docs/chaos.md)");
    th_kafka_records_free(r, n);
    fixture_stop(&f);
}

/* The fault timeline, on its own thread so that a producer waiting for
 * acknowledgements does not hold it up: broker 1 slow (every answer 500 ms
 * late) from 1 s to 3 s, down from 4 s to 6 s. */
typedef struct timeline {
    rd_kafka_mock_cluster_t *mock;
    atomic_int done;
} timeline_t;

static void *fault_timeline(void *arg)
{
    timeline_t *tl = arg;
    rd_kafka_mock_cluster_t *mock = tl->mock;
    sleep_ms(1000);
    rd_kafka_mock_broker_set_rtt(mock, 1, 500);
    sleep_ms(2000);
    rd_kafka_mock_broker_set_rtt(mock, 1, 0);
    sleep_ms(1000);
    rd_kafka_mock_broker_set_down(mock, 1);
    sleep_ms(2000);
    rd_kafka_mock_broker_set_up(mock, 1);
    atomic_store(&tl->done, 1);
    return NULL;
}

Test(kafka_mock_faults, slow_and_down_brokers_lose_no_acknowledged_message, .timeout = 120)
{
    fixture_t f;
    fixture_start(&f);
    rd_kafka_mock_cluster_t *mock = th_kafka_mock(f.k);
    const cmn_kafka_topic_spec_t *spec = cmn_kafka_topic_find(TOPIC);
    cr_assert_not_null(spec);
    /* Broker 1 leads every partition, so its faults hit the producer. */
    for (int p = 0; p < spec->partitions; p++)
        cr_assert_eq(rd_kafka_mock_partition_set_leader(mock, TOPIC, p, 1), RD_KAFKA_RESP_ERR_NO_ERROR);

    /* Batches of 20, one every 20 ms, as a worker produces its outcomes,
     * through the faults and once more after them. A batch that fails is
     * produced again, as the worker redoes a rewound batch. */
    enum { MAX_ROUNDS = 2000, PER = 20 };
    static char acked[MAX_ROUNDS * PER];
    memset(acked, 0, sizeof(acked));
    timeline_t tl = {.mock = mock};
    atomic_init(&tl.done, 0);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, fault_timeline, &tl), 0);
    int failed_batches = 0, rounds = 0, after = 0;
    while (rounds < MAX_ROUNDS && after < 2) {
        /* The batch after the one that saw the timeline finished starts
         * with every broker up and fast. */
        if (atomic_load(&tl.done))
            after++;
        for (;;) {
            cmn_kafka_batch_t b;
            char why[256] = "";
            cr_assert_eq(cmn_kafka_batch_init(&b), 0);
            for (int i = 0; i < PER; i++) {
                char v[32];
                snprintf(v, sizeof(v), "m-%d", rounds * PER + i);
                produce(&f, &b, v);
            }
            int rc = cmn_kafka_batch_wait(&b, 40000, why, sizeof(why));
            cmn_kafka_batch_destroy(&b);
            if (rc == 0)
                break;
            failed_batches++;
            cr_assert_lt(failed_batches, 5, "batches keep failing: %s", why);
        }
        for (int i = 0; i < PER; i++)
            acked[rounds * PER + i] = 1;
        rounds++;
        sleep_ms(20);
    }
    cr_assert_eq(pthread_join(th, NULL), 0);
    cr_assert_eq(after, 2, "batches were produced until the faults were over (%d batches)", rounds);

    size_t n = 0;
    th_kafka_record_t *r = th_kafka_read_to_end(f.brokers, TOPIC, 30000, &n);
    cr_assert_not_null(r);
    static char seen[MAX_ROUNDS * PER];
    memset(seen, 0, sizeof(seen));
    for (size_t i = 0; i < n; i++) {
        int id = -1;
        if (sscanf(r[i].value, "m-%d", &id) == 1 && id >= 0 && id < MAX_ROUNDS * PER)
            seen[id] = 1;
    }
    int lost = 0, first_lost = -1;
    for (int i = 0; i < rounds * PER; i++) {
        if (acked[i] && !seen[i]) {
            if (first_lost < 0)
                first_lost = i;
            lost++;
        }
    }
    cr_assert_eq(lost, 0, "%d acknowledged messages are not in the log (first m-%d)", lost, first_lost);
    th_kafka_records_free(r, n);
    fixture_stop(&f);
}
