/* crmctl_kafka.c - the embedded Kafka and topic administration.
 *
 * `crmctl embedded-kafka [--brokers N] [--bootstrap-file PATH]` runs
 * librdkafka's mock cluster: a real Kafka protocol server on 127.0.0.1 that
 * keeps everything in memory. It is the default Kafka of `crmctl dev up`.
 * Three brokers are the default so that partition leadership, the group
 * coordinator and the services' connections are spread as on a real
 * cluster; the mock serves all brokers from one thread, so the extra
 * brokers cost next to nothing. What the mock cluster does not do:
 *   - keep data across restarts (memory only: a restart loses every record
 *     and every committed offset);
 *   - retain more than about 5 MB or 100,000 record batches per partition
 *     (older batches are silently dropped; a consumer that far behind resets
 *     to the new start of the log);
 *   - compact crm.preferences (cleanup.policy is a broker-side setting the
 *     mock ignores) or serve the CreateTopics Admin API, which is why the
 *     topics are created here, directly on the mock.
 *
 * `crmctl topics create [--replication N]` and `crmctl topics list` manage
 * the engine's topics on the cluster named by KAFKA_BROKERS. */
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "crm/buf.h"
#include "crm/kafka.h"
#include "crm/log.h"
#include "crm/signal.h"
#include "crmctl.h"

#define EMBEDDED_DEFAULT_BROKERS 3
#define EMBEDDED_MAX_BROKERS 9
/* How often the idle main loop looks at the stop flag. */
#define EMBEDDED_TICK_MS 200

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

static void kafka_cli_log_init(cmn_log_t *log, const char *service)
{
    const char *level = getenv("LOG_LEVEL");
    if (cmn_log_init(log, service, level != NULL ? level : "info") != 0)
        cmn_log_warn(log, NULL, "LOG_LEVEL '%s' is not debug, info, warn or error; using info", level);
}

/* The mock cluster logs through the handle it lives in; route those lines
 * into our JSON log so `crmctl dev` log files stay one format. */
static void embedded_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    const cmn_log_t *log = rd_kafka_opaque(rk);
    cmn_log_level_t l = level <= 2 ? CMN_LOG_ERROR : level <= 4 ? CMN_LOG_WARN : level <= 6 ? CMN_LOG_INFO
                                                                                            : CMN_LOG_DEBUG;
    const char *kv[] = {"component", "librdkafka", "facility", fac, NULL};
    cmn_logkv(log, l, NULL, kv, "%s", buf);
}

/* Writes content to path through a temporary file and rename(), so a
 * reader polling for the file never sees it half written. */
static int write_file_atomically(const char *path, const char *content)
{
    char tmp[4096];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return -1;
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return -1;
    int ok = fputs(content, f) >= 0 && fputc('\n', f) != EOF;
    ok = fflush(f) == 0 && ok;
    ok = fsync(fileno(f)) == 0 && ok;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

static void embedded_usage(FILE *out)
{
    fprintf(out, "usage: crmctl embedded-kafka [--brokers N] [--bootstrap-file PATH]\n"
                 "  Runs librdkafka's in-memory mock cluster (default %d brokers) with every topic\n"
                 "  created, prints {\"bootstrap_servers\":...} and runs until SIGTERM/SIGINT.\n",
                 EMBEDDED_DEFAULT_BROKERS);
}

int crmctl_kafka_main(int argc, char **argv)
{
    int nbrokers = EMBEDDED_DEFAULT_BROKERS;
    const char *bootstrap_file = NULL;
    cmn_log_t log;
    rd_kafka_t *rk = NULL;
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_mock_cluster_t *mock = NULL;
    char errstr[512];
    int wrote_file = 0;
    int rc = 1;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--brokers") == 0 && i + 1 < argc) {
            if (parse_int(argv[++i], 1, EMBEDDED_MAX_BROKERS, &nbrokers) != 0) {
                fprintf(stderr, "crmctl embedded-kafka: --brokers must be 1..%d\n", EMBEDDED_MAX_BROKERS);
                return 2;
            }
        } else if (strcmp(argv[i], "--bootstrap-file") == 0 && i + 1 < argc) {
            bootstrap_file = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            embedded_usage(stdout);
            return 0;
        } else {
            embedded_usage(stderr);
            return 2;
        }
    }
    kafka_cli_log_init(&log, "embedded-kafka");
    if (cmn_signal_install() != 0) {
        cmn_log_error(&log, NULL, "cannot install the signal handlers");
        return 1;
    }

    conf = rd_kafka_conf_new();
    rd_kafka_conf_set_opaque(conf, &log);
    rd_kafka_conf_set_log_cb(conf, embedded_log_cb);
    /* The host handle exists only to carry the mock cluster: it has no
     * bootstrap servers and never connects, so its notices are noise. */
    if (rd_kafka_conf_set(conf, "log_level", "4", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        cmn_log_error(&log, NULL, "embedded kafka: %s", errstr);
        goto cleanup;
    }
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        cmn_log_error(&log, NULL, "embedded kafka: %s", errstr);
        goto cleanup;
    }
    conf = NULL;
    mock = rd_kafka_mock_cluster_new(rk, nbrokers);
    if (mock == NULL) {
        cmn_log_error(&log, NULL, "embedded kafka: cannot start a mock cluster of %d brokers", nbrokers);
        goto cleanup;
    }
    size_t ntopics = 0;
    const cmn_kafka_topic_spec_t *topics = cmn_kafka_topics(&ntopics);
    int replication = nbrokers < 3 ? nbrokers : 3;
    for (size_t i = 0; i < ntopics; i++) {
        rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(mock, topics[i].name, topics[i].partitions, replication);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            cmn_log_error(&log, NULL, "embedded kafka: cannot create topic %s: %s", topics[i].name,
                          rd_kafka_err2str(err));
            goto cleanup;
        }
    }
    const char *bootstraps = rd_kafka_mock_cluster_bootstraps(mock);
    if (bootstrap_file != NULL) {
        if (write_file_atomically(bootstrap_file, bootstraps) != 0) {
            cmn_log_error(&log, NULL, "embedded kafka: cannot write %s: %s", bootstrap_file, strerror(errno));
            goto cleanup;
        }
        wrote_file = 1;
    }
    {
        cmn_buf_t line = CMN_BUF_INIT;
        cmn_buf_puts(&line, "{\"bootstrap_servers\":");
        cmn_buf_put_json_string(&line, bootstraps);
        cmn_buf_printf(&line, ",\"brokers\":%d,\"topics\":%zu,\"partitions_per_topic\":%d}", nbrokers, ntopics,
                       topics[0].partitions);
        if (line.data != NULL)
            printf("%s\n", line.data);
        fflush(stdout);
        cmn_buf_free(&line);
    }
    {
        const char *kv[] = {"bootstrap_servers", bootstraps, NULL};
        cmn_logkv(&log, CMN_LOG_INFO, NULL, kv, "embedded kafka running with %d broker(s) and %zu topics", nbrokers,
                  ntopics);
    }

    /* The mock cluster runs on its own thread; this one only waits. */
    while (!cmn_stop_requested) {
        struct timespec tick = {0, EMBEDDED_TICK_MS * 1000000L};
        nanosleep(&tick, NULL);
    }
    cmn_log_info(&log, NULL, "embedded kafka stopping");
    rc = 0;

cleanup:
    /* The bootstrap file names ports that die with this process; leaving
     * it would let the next `dev up` read a stale address. */
    if (wrote_file)
        unlink(bootstrap_file);
    if (mock != NULL)
        rd_kafka_mock_cluster_destroy(mock);
    if (rk != NULL)
        rd_kafka_destroy(rk);
    if (conf != NULL)
        rd_kafka_conf_destroy(conf);
    return rc;
}

/* ---------------------------------------------------------------- topics */

static int cmp_topic(const void *a, const void *b)
{
    const struct rd_kafka_metadata_topic *ta = a, *tb = b;
    return strcmp(ta->topic, tb->topic);
}

static int topics_list(const char *brokers, cmn_log_t *log)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk = NULL;
    const struct rd_kafka_metadata *md = NULL;
    struct rd_kafka_metadata_topic *sorted = NULL;
    int rc = 1;

    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "crmctl topics: KAFKA_BROKERS: %s\n", errstr);
        goto cleanup;
    }
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        fprintf(stderr, "crmctl topics: %s\n", errstr);
        goto cleanup;
    }
    conf = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, NULL, &md, 15000);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "crmctl topics: no metadata from %s: %s\n", brokers, rd_kafka_err2str(err));
        goto cleanup;
    }
    sorted = calloc((size_t)md->topic_cnt + 1, sizeof(*sorted));
    if (sorted == NULL)
        goto cleanup;
    memcpy(sorted, md->topics, (size_t)md->topic_cnt * sizeof(*sorted));
    qsort(sorted, (size_t)md->topic_cnt, sizeof(*sorted), cmp_topic);
    for (int i = 0; i < md->topic_cnt; i++)
        printf("%s\t%d\n", sorted[i].topic, sorted[i].partition_cnt);

    /* Name what the engine needs but the cluster lacks, so `topics list`
     * doubles as a check before deploying. */
    size_t ntopics = 0;
    const cmn_kafka_topic_spec_t *specs = cmn_kafka_topics(&ntopics);
    int missing = 0;
    for (size_t i = 0; i < ntopics; i++) {
        int found = 0;
        for (int j = 0; j < md->topic_cnt && !found; j++)
            found = strcmp(md->topics[j].topic, specs[i].name) == 0 && md->topics[j].err == RD_KAFKA_RESP_ERR_NO_ERROR;
        if (!found) {
            fprintf(stderr, "crmctl topics: missing topic %s (run `crmctl topics create`)\n", specs[i].name);
            missing++;
        }
    }
    rc = missing > 0 ? 1 : 0;
    (void)log;

cleanup:
    free(sorted);
    if (md != NULL)
        rd_kafka_metadata_destroy(md);
    if (conf != NULL)
        rd_kafka_conf_destroy(conf);
    if (rk != NULL)
        rd_kafka_destroy(rk);
    return rc;
}

static void topics_usage(FILE *out)
{
    fprintf(out, "usage: crmctl topics create [--replication N]   create the engine's topics on KAFKA_BROKERS\n"
                 "       crmctl topics list                       topics and partition counts on KAFKA_BROKERS\n");
}

int crmctl_topics_main(int argc, char **argv)
{
    cmn_log_t log;
    int replication = 1;

    if (argc < 2) {
        topics_usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        topics_usage(stdout);
        return 0;
    }
    int create = strcmp(argv[1], "create") == 0;
    if (!create && strcmp(argv[1], "list") != 0) {
        topics_usage(stderr);
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        if (create && strcmp(argv[i], "--replication") == 0 && i + 1 < argc) {
            if (parse_int(argv[++i], 1, 32, &replication) != 0) {
                fprintf(stderr, "crmctl topics: --replication must be 1..32\n");
                return 2;
            }
        } else {
            topics_usage(stderr);
            return 2;
        }
    }
    const char *brokers = getenv("KAFKA_BROKERS");
    if (brokers == NULL || brokers[0] == '\0') {
        fprintf(stderr, "crmctl topics: KAFKA_BROKERS is not set (host:port[,host:port...])\n");
        return 1;
    }
    kafka_cli_log_init(&log, "crmctl");
    if (!create)
        return topics_list(brokers, &log);

    char errstr[512] = "";
    int rc = cmn_kafka_create_topics(brokers, replication, &log, errstr, sizeof(errstr));
    if (rc != 0) {
        fprintf(stderr, "crmctl topics: %s\n", errstr);
        return 1;
    }
    size_t ntopics = 0;
    cmn_kafka_topics(&ntopics);
    printf("%zu topics present on %s\n", ntopics, brokers);
    return 0;
}
