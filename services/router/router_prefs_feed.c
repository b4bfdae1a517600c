/* router_prefs_feed.c - the crm.preferences reader behind the preferences
 * cache (see router_prefs_feed.h). */
#include "router_prefs_feed.h"

#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crm/err.h"
#include "crm/kafka.h"
#include "crm/request.h"
#include "crm/time.h"

#define FEED_POLL_MS 200
#define FEED_META_TIMEOUT_MS 5000
#define FEED_RETRY_MS 1000

struct router_prefs_feed {
    rd_kafka_t *rk;
    router_prefs_cache_t *cache; /* borrowed */
    const cmn_log_t *log;        /* borrowed */
    cmn_counter_t *n_snapshot, *n_tombstone, *n_invalid, *n_stale;
    pthread_t thread;
    int thread_started;
    atomic_int stop;
    atomic_int ready;
};

static void kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    /* librdkafka's chatter stays out of the JSON log stream; failures show
     * up as readiness and as the errors this module logs itself. */
    (void)rk;
    (void)level;
    (void)fac;
    (void)buf;
}

static void count(cmn_counter_t *c)
{
    if (c != NULL) {
        cmn_counter_add(c, 1);
    }
}

/* Assigns every partition of crm.preferences at its current end offset. */
static int assign_from_end(router_prefs_feed_t *f, char *errstr, size_t errlen)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_partition_list_t *list = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(f->rk, CMN_TOPIC_PREFERENCES, NULL);
    int rc = CMN_OK;

    if (rkt == NULL) {
        snprintf(errstr, errlen, "cannot open topic %s", CMN_TOPIC_PREFERENCES);
        return CMN_ERR_KAFKA;
    }
    rd_kafka_resp_err_t err = rd_kafka_metadata(f->rk, 0, rkt, &md, FEED_META_TIMEOUT_MS);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(errstr, errlen, "metadata of %s: %s", CMN_TOPIC_PREFERENCES, rd_kafka_err2str(err));
        rc = CMN_ERR_KAFKA;
        goto cleanup;
    }
    if (md->topic_cnt != 1 || md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR || md->topics[0].partition_cnt <= 0) {
        snprintf(errstr, errlen, "topic %s: %s", CMN_TOPIC_PREFERENCES,
                 md->topic_cnt == 1 ? rd_kafka_err2str(md->topics[0].err) : "not found");
        rc = CMN_ERR_KAFKA;
        goto cleanup;
    }
    int nparts = md->topics[0].partition_cnt;
    list = rd_kafka_topic_partition_list_new(nparts);
    if (list == NULL) {
        rc = CMN_ERR_NOMEM;
        goto cleanup;
    }
    for (int p = 0; p < nparts; p++) {
        /* RD_KAFKA_OFFSET_END as the "timestamp" asks for the end offset. */
        rd_kafka_topic_partition_list_add(list, CMN_TOPIC_PREFERENCES, p)->offset = RD_KAFKA_OFFSET_END;
    }
    /* Concrete offsets rather than a logical "end": a record produced after
     * the feed says it is ready must be read, however late the first fetch. */
    err = rd_kafka_offsets_for_times(f->rk, list, FEED_META_TIMEOUT_MS);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(errstr, errlen, "end offsets of %s: %s", CMN_TOPIC_PREFERENCES, rd_kafka_err2str(err));
        rc = CMN_ERR_KAFKA;
        goto cleanup;
    }
    for (int i = 0; i < list->cnt; i++) {
        if (list->elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR || list->elems[i].offset < 0) {
            snprintf(errstr, errlen, "end offset of %s [%" PRId32 "]: %s", CMN_TOPIC_PREFERENCES,
                     list->elems[i].partition, rd_kafka_err2str(list->elems[i].err));
            rc = CMN_ERR_KAFKA;
            goto cleanup;
        }
    }
    err = rd_kafka_assign(f->rk, list);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(errstr, errlen, "assign %s: %s", CMN_TOPIC_PREFERENCES, rd_kafka_err2str(err));
        rc = CMN_ERR_KAFKA;
    }

cleanup:
    if (list != NULL) {
        rd_kafka_topic_partition_list_destroy(list);
    }
    if (md != NULL) {
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(rkt);
    return rc;
}

static void handle_record(router_prefs_feed_t *f, const rd_kafka_message_t *m)
{
    char tenant[CMN_REQ_MAX_ID + 1], client[CMN_REQ_MAX_ID + 1];
    router_prefs_ref_t *ref = NULL;
    int64_t now = cmn_monotonic_ms();
    int rc;

    if (m->payload == NULL || m->len == 0) {
        /* A tombstone carries only its key. */
        if (m->key == NULL ||
            cmn_preferences_key_parse(m->key, m->key_len, tenant, sizeof tenant, client, sizeof client) != CMN_OK) {
            count(f->n_invalid);
            cmn_log_warn(f->log, NULL, "%s: tombstone with an unusable key at partition %d, offset %lld; ignored",
                         CMN_TOPIC_PREFERENCES, (int)m->partition, (long long)m->offset);
            return;
        }
        rc = router_prefs_cache_apply(f->cache, tenant, client, NULL, now);
        count(rc == 1 ? f->n_tombstone : f->n_invalid);
        return;
    }
    rc = router_prefs_parse(m->payload, m->len, &ref);
    if (rc != CMN_OK) {
        count(f->n_invalid);
        cmn_log_warn(f->log, NULL,
                     "%s: record at partition %d, offset %lld is not a valid ClientPreferences snapshot; ignored",
                     CMN_TOPIC_PREFERENCES, (int)m->partition, (long long)m->offset);
        return;
    }
    rc = router_prefs_cache_apply(f->cache, NULL, NULL, ref, now);
    count(rc == 1 ? f->n_snapshot : rc == 0 ? f->n_stale : f->n_invalid);
    router_prefs_ref_release(ref);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void *feed_main(void *arg)
{
    router_prefs_feed_t *f = arg;
    char err[512];
    int assigned = 0;
    int warned = 0;

    while (!atomic_load(&f->stop)) {
        if (!assigned) {
            err[0] = '\0';
            if (assign_from_end(f, err, sizeof err) != CMN_OK) {
                if (!warned) {
                    cmn_log_warn(f->log, NULL, "preferences feed not started, retrying: %s", err);
                    warned = 1;
                }
                for (int waited = 0; waited < FEED_RETRY_MS && !atomic_load(&f->stop); waited += 100) {
                    sleep_ms(100);
                }
                continue;
            }
            assigned = 1;
            atomic_store(&f->ready, 1);
            cmn_log_info(f->log, NULL, "preferences feed reading %s from its end", CMN_TOPIC_PREFERENCES);
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(f->rk, FEED_POLL_MS);
        if (m == NULL) {
            continue;
        }
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            handle_record(f, m);
        } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            /* Fetch errors are retried by librdkafka itself. */
            cmn_log_debug(f->log, NULL, "preferences feed: %s", rd_kafka_message_errstr(m));
        }
        rd_kafka_message_destroy(m);
    }
    atomic_store(&f->ready, 0);
    return NULL;
}

router_prefs_feed_t *router_prefs_feed_start(const char *brokers, const char *const *extra,
                                             router_prefs_cache_t *cache, const cmn_log_t *log,
                                             cmn_metrics_t *metrics, char *errstr, size_t errlen)
{
    router_prefs_feed_t *f = NULL;
    rd_kafka_conf_t *conf = NULL;
    char kerr[512];
    int ok = 0;

    if (brokers == NULL || brokers[0] == '\0' || cache == NULL) {
        snprintf(errstr, errlen, "preferences feed: no brokers");
        goto cleanup;
    }
    f = calloc(1, sizeof *f);
    conf = rd_kafka_conf_new();
    if (f == NULL || conf == NULL) {
        snprintf(errstr, errlen, "preferences feed: out of memory");
        goto cleanup;
    }
    f->cache = cache;
    f->log = log;
    atomic_init(&f->stop, 0);
    atomic_init(&f->ready, 0);
    /* librdkafka's consumer API wants a group id; it is never joined
     * (partitions are assigned by hand) and nothing is committed. */
    const char *props[][2] = {
        {"bootstrap.servers", brokers},
        {"client.id", "crm-router-prefs"},
        {"group.id", "crm-router-prefs"},
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"enable.partition.eof", "false"},
        {"auto.offset.reset", "latest"},
    };
    for (size_t i = 0; i < sizeof props / sizeof props[0]; i++) {
        if (rd_kafka_conf_set(conf, props[i][0], props[i][1], kerr, sizeof kerr) != RD_KAFKA_CONF_OK) {
            snprintf(errstr, errlen, "preferences feed: %s", kerr);
            goto cleanup;
        }
    }
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++) {
        char kv[512];
        snprintf(kv, sizeof kv, "%s", extra[i]);
        char *eq = strchr(kv, '=');
        if (eq == NULL) {
            snprintf(errstr, errlen, "preferences feed: property \"%s\" is not key=value", extra[i]);
            goto cleanup;
        }
        *eq = '\0';
        if (rd_kafka_conf_set(conf, kv, eq + 1, kerr, sizeof kerr) != RD_KAFKA_CONF_OK) {
            snprintf(errstr, errlen, "preferences feed: %s", kerr);
            goto cleanup;
        }
    }
    rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
    f->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, kerr, sizeof kerr);
    if (f->rk == NULL) {
        snprintf(errstr, errlen, "preferences feed: %s", kerr);
        goto cleanup;
    }
    conf = NULL; /* owned by rk now */
    rd_kafka_poll_set_consumer(f->rk);

    if (metrics != NULL) {
        static const char help[] = "crm.preferences records applied to the router's preferences cache, by kind";
        f->n_snapshot = cmn_metrics_counter(metrics, "router_prefs_feed_records_total", help, "kind=\"snapshot\"");
        f->n_tombstone = cmn_metrics_counter(metrics, "router_prefs_feed_records_total", help, "kind=\"tombstone\"");
        f->n_stale = cmn_metrics_counter(metrics, "router_prefs_feed_records_total", help, "kind=\"stale\"");
        f->n_invalid = cmn_metrics_counter(metrics, "router_prefs_feed_records_total", help, "kind=\"invalid\"");
    }
    if (pthread_create(&f->thread, NULL, feed_main, f) != 0) {
        snprintf(errstr, errlen, "preferences feed: cannot start its thread");
        goto cleanup;
    }
    f->thread_started = 1;
    ok = 1;

cleanup:
    if (conf != NULL) {
        rd_kafka_conf_destroy(conf);
    }
    if (!ok) {
        router_prefs_feed_stop(f);
        return NULL;
    }
    return f;
}

int router_prefs_feed_ready(const router_prefs_feed_t *f)
{
    return f != NULL && atomic_load(&((router_prefs_feed_t *)f)->ready);
}

void router_prefs_feed_stop(router_prefs_feed_t *f)
{
    if (f == NULL) {
        return;
    }
    atomic_store(&f->stop, 1);
    if (f->thread_started) {
        pthread_join(f->thread, NULL);
    }
    if (f->rk != NULL) {
        rd_kafka_assign(f->rk, NULL);
        rd_kafka_consumer_close(f->rk);
        rd_kafka_destroy(f->rk);
    }
    free(f);
}
