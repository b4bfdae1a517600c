/* Integration tests of `crmctl topics create`.
 *
 * With CRM_TEST_KAFKA_BROKERS set (tools/run-tests.sh real-kafka starts
 * Apache Kafka 3.9 and sets it), the binary runs against that broker and the
 * result is read back through the Admin API: every topic has 12 partitions,
 * crm.preferences is compacted, the delay tiers stamp LogAppendTime (checked
 * on a produced record too), crm.dlq keeps 30 days; a config changed behind
 * the tool's back is reported as a mismatch (exit 1) and repaired by --fix
 * without losing the topic's other settings.
 *
 * Without it (the normal integration run) there is no real broker, so the
 * same code runs against librdkafka's mock cluster: `crmctl embedded-kafka`
 * answers with every topic at 12 partitions and configs it cannot describe
 * (exit 0, each topic "unchecked"), and a bare mock cluster with a topic of
 * the wrong size makes the command fail naming it. */
#include <criterion/criterion.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crm/kafka.h"
#include "crm/time.h"
#include "th_proc.h"

#define ADMIN_TIMEOUT_MS 30000

static const char *real_brokers(void)
{
    const char *b = getenv("CRM_TEST_KAFKA_BROKERS");
    return b != NULL && b[0] != '\0' ? b : NULL;
}

static int topics_create(const char *brokers, char *out, size_t outlen, const char *a1, const char *a2,
                         const char *a3)
{
    char bin[512], env_brokers[600];
    th_bin("crmctl", bin, sizeof(bin));
    snprintf(env_brokers, sizeof(env_brokers), "KAFKA_BROKERS=%s", brokers);
    char *env[] = {env_brokers, NULL};
    char *argv[] = {bin, "topics", "create", (char *)a1, (char *)a2, (char *)a3, NULL};
    return th_run(argv, env, out, outlen, 180000);
}

static rd_kafka_t *admin_new(const char *brokers)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    cr_assert_eq(rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof(err)), RD_KAFKA_CONF_OK);
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    cr_assert_not_null(rk, "%s", err);
    return rk;
}

/* Partition count of topic from the cluster's metadata, -1 when missing. */
static int partitions_of(rd_kafka_t *rk, const char *topic)
{
    const struct rd_kafka_metadata *md = NULL;
    cr_assert_eq(rd_kafka_metadata(rk, 1, NULL, &md, ADMIN_TIMEOUT_MS), RD_KAFKA_RESP_ERR_NO_ERROR);
    int n = -1;
    for (int i = 0; i < md->topic_cnt; i++) {
        if (strcmp(md->topics[i].topic, topic) == 0 && md->topics[i].err == RD_KAFKA_RESP_ERR_NO_ERROR)
            n = md->topics[i].partition_cnt;
    }
    rd_kafka_metadata_destroy(md);
    return n;
}

/* The value of config name of topic through DescribeConfigs, into out. */
static void describe(rd_kafka_t *rk, const char *topic, const char *name, char *out, size_t outlen)
{
    rd_kafka_ConfigResource_t *res = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_DescribeConfigs(rk, &res, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, ADMIN_TIMEOUT_MS);
    cr_assert_not_null(ev, "DescribeConfigs %s answered", topic);
    cr_assert_eq(rd_kafka_event_error(ev), RD_KAFKA_RESP_ERR_NO_ERROR, "%s", rd_kafka_event_error_string(ev));
    size_t nres = 0, ne = 0;
    const rd_kafka_ConfigResource_t **rs =
        rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(ev), &nres);
    cr_assert_eq(nres, 1);
    cr_assert_eq(rd_kafka_ConfigResource_error(rs[0]), RD_KAFKA_RESP_ERR_NO_ERROR);
    const rd_kafka_ConfigEntry_t **es = rd_kafka_ConfigResource_configs(rs[0], &ne);
    out[0] = '\0';
    int found = 0;
    for (size_t i = 0; i < ne; i++) {
        if (strcmp(rd_kafka_ConfigEntry_name(es[i]), name) == 0) {
            const char *v = rd_kafka_ConfigEntry_value(es[i]);
            snprintf(out, outlen, "%s", v != NULL ? v : "");
            found = 1;
        }
    }
    cr_assert(found, "%s has a %s entry", topic, name);
    rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_ConfigResource_destroy(res);
}

/* Replaces topic's dynamic configs with the given name/value pairs. */
static void alter(rd_kafka_t *rk, const char *topic, const char *const *pairs)
{
    rd_kafka_ConfigResource_t *res = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
    for (size_t i = 0; pairs[i] != NULL; i += 2)
        cr_assert_eq(rd_kafka_ConfigResource_set_config(res, pairs[i], pairs[i + 1]), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AlterConfigs(rk, &res, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, ADMIN_TIMEOUT_MS);
    cr_assert_not_null(ev);
    cr_assert_eq(rd_kafka_event_error(ev), RD_KAFKA_RESP_ERR_NO_ERROR, "%s", rd_kafka_event_error_string(ev));
    size_t nres = 0;
    const rd_kafka_ConfigResource_t **rs =
        rd_kafka_AlterConfigs_result_resources(rd_kafka_event_AlterConfigs_result(ev), &nres);
    cr_assert_eq(nres, 1);
    cr_assert_eq(rd_kafka_ConfigResource_error(rs[0]), RD_KAFKA_RESP_ERR_NO_ERROR, "%s",
                 rd_kafka_ConfigResource_error_string(rs[0]));
    rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_ConfigResource_destroy(res);
}

static void assert_every_topic_has_12_partitions(rd_kafka_t *rk)
{
    size_t n = 0;
    const cmn_kafka_topic_spec_t *t = cmn_kafka_topics(&n);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(partitions_of(rk, t[i].name), 12, "%s", t[i].name);
}

/* The timestamp type the broker gives a record produced to topic now. */
static rd_kafka_timestamp_type_t produced_timestamp_type(const char *brokers, const char *topic)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof(err));
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
    rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    cr_assert_not_null(p, "%s", err);
    char key[64];
    snprintf(key, sizeof(key), "topics-real-%d", (int)getpid());
    cr_assert_eq(rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0), RD_KAFKA_V_KEY(key, strlen(key)),
                                   RD_KAFKA_V_VALUE("x", 1), RD_KAFKA_V_END),
                 RD_KAFKA_RESP_ERR_NO_ERROR);
    cr_assert_eq(rd_kafka_flush(p, ADMIN_TIMEOUT_MS), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(p);

    conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof(err));
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
    /* librdkafka assigns partitions only in a consumer with a group id;
     * nothing is committed. */
    rd_kafka_conf_set(conf, "group.id", "crm-test-topics-real", err, sizeof(err));
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err));
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    cr_assert_not_null(c, "%s", err);
    rd_kafka_poll_set_consumer(c);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    cr_assert_eq(rd_kafka_assign(c, l), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_timestamp_type_t type = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
    int64_t deadline = cmn_monotonic_ms() + 30000;
    int found = 0;
    while (!found && cmn_monotonic_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 500);
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && m->key_len == strlen(key) && memcmp(m->key, key, m->key_len) == 0) {
            rd_kafka_message_timestamp(m, &type);
            found = 1;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    cr_assert(found, "the record produced to %s came back", topic);
    return type;
}

/* ------------------------------------------------------------ real Kafka */

static void real_creates_topics_with_their_configs(const char *brokers)
{
    static char out[1 << 16];
    int rc = topics_create(brokers, out, sizeof(out), NULL, NULL, NULL);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_not_null(strstr(out, " 0 unchecked, 0 mismatch, 0 failed"), "a real broker describes configs: %s", out);
    rd_kafka_t *rk = admin_new(brokers);
    assert_every_topic_has_12_partitions(rk);
    char v[128];
    describe(rk, CMN_TOPIC_PREFERENCES, "cleanup.policy", v, sizeof(v));
    cr_assert_str_eq(v, "compact");
    describe(rk, CMN_TOPIC_DLQ, "retention.ms", v, sizeof(v));
    cr_assert_str_eq(v, "2592000000");
    size_t n = 0, tiers = 0;
    const cmn_kafka_topic_spec_t *t = cmn_kafka_topics(&n);
    for (size_t i = 0; i < n; i++) {
        describe(rk, t[i].name, "message.timestamp.type", v, sizeof(v));
        int tier = strncmp(t[i].name, "crm.retry.", 10) == 0 || strncmp(t[i].name, "crm.defer.", 10) == 0;
        tiers += tier;
        cr_assert_str_eq(v, tier ? "LogAppendTime" : "CreateTime", "%s", t[i].name);
    }
    cr_assert_eq(tiers, 15);
    rd_kafka_destroy(rk);
    /* The broker stamps a tier's records with its own clock. */
    cr_assert_eq(produced_timestamp_type(brokers, "crm.retry.sms.5s"), RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME);
    cr_assert_eq(produced_timestamp_type(brokers, CMN_TOPIC_STATUS), RD_KAFKA_TIMESTAMP_CREATE_TIME);

    /* A second run finds everything as wanted. */
    rc = topics_create(brokers, out, sizeof(out), NULL, NULL, NULL);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_not_null(strstr(out, ": 23 ok, 0 created"), "%s", out);
}

static void real_reports_and_fixes_a_changed_config(const char *brokers)
{
    static char out[1 << 16];
    cr_assert_eq(topics_create(brokers, out, sizeof(out), NULL, NULL, NULL), 0, "%s", out);
    rd_kafka_t *rk = admin_new(brokers);
    /* Someone shortened the DLQ's retention and set a size limit of their own. */
    const char *const changed[] = {"retention.ms", "604800000", "max.message.bytes", "2000000", NULL};
    alter(rk, CMN_TOPIC_DLQ, changed);
    int rc = topics_create(brokers, out, sizeof(out), NULL, NULL, NULL);
    cr_assert_eq(rc, 1, "a mismatch exits 1: %s", out);
    cr_assert_not_null(strstr(out, "retention.ms is 604800000, want 2592000000"), "%s", out);
    cr_assert_not_null(strstr(out, "--fix"), "%s", out);
    char v[128];
    describe(rk, CMN_TOPIC_DLQ, "retention.ms", v, sizeof(v));
    cr_assert_str_eq(v, "604800000", "without --fix nothing changes");

    rc = topics_create(brokers, out, sizeof(out), "--fix", NULL, NULL);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_not_null(strstr(out, "fixed"), "%s", out);
    describe(rk, CMN_TOPIC_DLQ, "retention.ms", v, sizeof(v));
    cr_assert_str_eq(v, "2592000000");
    describe(rk, CMN_TOPIC_DLQ, "max.message.bytes", v, sizeof(v));
    cr_assert_str_eq(v, "2000000", "the operator's own setting is kept");

    /* Leave the topic as the table wants it for whatever runs next. */
    const char *const table[] = {"retention.ms", "2592000000", NULL};
    alter(rk, CMN_TOPIC_DLQ, table);
    rd_kafka_destroy(rk);
    cr_assert_eq(topics_create(brokers, out, sizeof(out), NULL, NULL, NULL), 0, "%s", out);
}

/* ------------------------------------------------------------ mock cluster */

typedef struct embedded {
    th_proc_t proc;
    char dir[400];
    char bootstrap_file[440];
    char brokers[512];
} embedded_t;

static void embedded_start(embedded_t *e)
{
    char logs[300];
    snprintf(logs, sizeof(logs), "%s/test-logs", CRM_BINARY_DIR);
    mkdir(logs, 0755);
    snprintf(e->dir, sizeof(e->dir), "%s/topics-XXXXXX", logs);
    cr_assert_not_null(mkdtemp(e->dir));
    snprintf(e->bootstrap_file, sizeof(e->bootstrap_file), "%s/kafka.bootstrap", e->dir);
    char bin[512];
    th_bin("crmctl", bin, sizeof(bin));
    char *argv[] = {bin, "embedded-kafka", "--bootstrap-file", e->bootstrap_file, NULL};
    cr_assert_eq(th_proc_start(&e->proc, "embedded-kafka", argv, NULL), 0);
    int64_t deadline = cmn_monotonic_ms() + 60000;
    for (;;) {
        FILE *f = fopen(e->bootstrap_file, "r");
        if (f != NULL) {
            int ok = fgets(e->brokers, sizeof(e->brokers), f) != NULL;
            fclose(f);
            e->brokers[strcspn(e->brokers, "\n")] = '\0';
            if (ok && e->brokers[0] != '\0')
                break;
        }
        cr_assert(th_proc_alive(&e->proc), "see %s", e->proc.log_path);
        cr_assert_lt(cmn_monotonic_ms(), deadline);
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static void embedded_stop(embedded_t *e)
{
    th_proc_stop(&e->proc, SIGTERM, 20000);
    rmdir(e->dir);
}

static void mock_embedded_cluster_has_every_topic(void)
{
    static char out[1 << 16];
    embedded_t e;
    embedded_start(&e);
    int rc = topics_create(e.brokers, out, sizeof(out), NULL, NULL, NULL);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_not_null(strstr(out, ": 0 ok, 0 created, 0 fixed, 23 unchecked, 0 mismatch, 0 failed"), "%s", out);
    cr_assert_not_null(strstr(out, "note: topic configs could not be read"), "%s", out);
    rd_kafka_t *rk = admin_new(e.brokers);
    assert_every_topic_has_12_partitions(rk);
    rd_kafka_destroy(rk);
    embedded_stop(&e);
}

static void mock_wrong_partition_count_is_a_mismatch(void)
{
    static char out[1 << 16];
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
    rd_kafka_t *host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    cr_assert_not_null(host, "%s", err);
    rd_kafka_mock_cluster_t *mock = rd_kafka_mock_cluster_new(host, 1);
    cr_assert_not_null(mock);
    size_t n = 0;
    const cmn_kafka_topic_spec_t *t = cmn_kafka_topics(&n);
    for (size_t i = 0; i < n; i++) {
        int parts = strcmp(t[i].name, CMN_TOPIC_DLQ) == 0 ? 3 : t[i].partitions;
        cr_assert_eq(rd_kafka_mock_topic_create(mock, t[i].name, parts, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    const char *brokers = rd_kafka_mock_cluster_bootstraps(mock);

    int rc = topics_create(brokers, out, sizeof(out), NULL, NULL, NULL);
    cr_assert_eq(rc, 1, "%s", out);
    cr_assert_not_null(strstr(out, "crm.dlq                  mismatch  has 3 partitions, want 12"), "%s", out);
    cr_assert_not_null(strstr(out, "1 mismatch"), "%s", out);
    /* --fix cannot grow it without a controller, and says so. */
    rc = topics_create(brokers, out, sizeof(out), "--fix", NULL, NULL);
    cr_assert_eq(rc, 1, "%s", out);
    cr_assert_not_null(strstr(out, "cannot grow"), "%s", out);
    /* Asking for 3 partitions everywhere: crm.dlq fits, the others have
     * more than asked, which is accepted and noted. */
    rc = topics_create(brokers, out, sizeof(out), "--partitions", "3", NULL);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_not_null(strstr(out, "12 partitions, more than the 3 wanted (kept)"), "%s", out);
    rd_kafka_mock_cluster_destroy(mock);
    rd_kafka_destroy(host);
}

Test(topics_real, create_sets_partitions_and_configs, .timeout = 400)
{
    const char *brokers = real_brokers();
    if (brokers != NULL)
        real_creates_topics_with_their_configs(brokers);
    else
        mock_embedded_cluster_has_every_topic();
}

Test(topics_real, a_topic_that_differs_is_reported, .timeout = 400)
{
    const char *brokers = real_brokers();
    if (brokers != NULL)
        real_reports_and_fixes_a_changed_config(brokers);
    else
        mock_wrong_partition_count_is_a_mismatch();
}
