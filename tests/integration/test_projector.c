/* test_projector.c - the real crm-projector binary against the Kafka mock
 * cluster and a private PostgreSQL: statuses applied by rank, duplicates
 * stored once, bad records on crm.dlq, no double counting across a kill -9,
 * stored offsets winning over Kafka's, and riding out a database outage. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crm/buf.h"
#include "crm/status.h"
#include "crm/uuid.h"
#include "th_kafka.h"
#include "th_pg.h"
#include "th_proc.h"

#define T0 1764000000000LL /* 2025-11-24T16:00:00Z: fixed, so times can be asserted exactly */
#define TENANT "acme"

typedef struct fixture {
    th_kafka_t *kafka;
    const char *brokers;
    char url[256];
    th_proc_t proc;
    int port;
    int running;
    long produced; /* records produced to crm.status, valid or not */
} fixture_t;

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void fixture_init(fixture_t *fx, const char *db)
{
    memset(fx, 0, sizeof *fx);
    fx->kafka = th_kafka_start(1);
    cr_assert_not_null(fx->kafka, "mock cluster did not start");
    fx->brokers = th_kafka_bootstraps(fx->kafka);
    cr_assert_eq(th_pg_database(db, fx->url, sizeof fx->url), 0, "database %s", db);
}

static void start_projector(fixture_t *fx, const char *group)
{
    char bin[512], brokers[600], dburl[300], port[32], grp[96];
    cr_assert_not_null(th_bin("crm-projector", bin, sizeof bin), "crm-projector is not built");
    fx->port = th_free_port();
    snprintf(brokers, sizeof brokers, "KAFKA_BROKERS=%s", fx->brokers);
    snprintf(dburl, sizeof dburl, "DATABASE_URL=%s", fx->url);
    snprintf(port, sizeof port, "HTTP_PORT=%d", fx->port);
    snprintf(grp, sizeof grp, "PROJECTOR_GROUP_ID=%s", group);
    char *const argv[] = {bin, NULL};
    /* A short session timeout lets a restarted projector take over the
     * partitions of the one killed with -9 within seconds. Small batches make
     * a kill land between batches of one stream. */
    char *const env[] = {brokers, dburl, port, grp, "HTTP_BIND=127.0.0.1", "LOG_LEVEL=info",
                         "KAFKA_SESSION_TIMEOUT_MS=6000", "PROJECTOR_BATCH_SIZE=20", NULL};
    cr_assert_eq(th_proc_start(&fx->proc, "crm-projector", argv, env), 0);
    cr_assert_eq(th_proc_wait_ready(&fx->proc, fx->port, 30000), 0, "projector not ready; see %s",
                 fx->proc.log_path);
    fx->running = 1;
}

static void stop_projector(fixture_t *fx, int sig)
{
    if (!fx->running)
        return;
    int status = th_proc_stop(&fx->proc, sig, 20000);
    fx->running = 0;
    if (sig == SIGTERM)
        cr_expect_eq(status, 0, "projector exit status %d after SIGTERM; see %s", status, fx->proc.log_path);
}

static void fixture_fini(fixture_t *fx)
{
    stop_projector(fx, SIGTERM);
    th_kafka_stop(fx->kafka);
}

static long long qint(const char *url, const char *sql)
{
    char out[64];
    cr_assert_eq(th_pg_query_value(url, sql, out, sizeof out), 0, "query failed: %s", sql);
    return out[0] == '\0' ? -1 : strtoll(out, NULL, 10);
}

static void qstr(const char *url, const char *sql, char *out, size_t outlen)
{
    cr_assert_eq(th_pg_query_value(url, sql, out, outlen), 0, "query failed: %s", sql);
}

/* Polls sql until it returns want or timeout_ms passes; fails with the last value. */
static void wait_for(const fixture_t *fx, const char *sql, long long want, int timeout_ms)
{
    long long got = -1;
    for (int waited = 0; waited <= timeout_ms; waited += 50) {
        got = qint(fx->url, sql);
        if (got == want)
            return;
        sleep_ms(50);
    }
    cr_assert_fail("%s: want %lld, got %lld (projector log: %s)", sql, want, got, fx->proc.log_path);
}

static void comm_id(int n, char out[CMN_UUID_STR_LEN + 1])
{
    char req[32];
    snprintf(req, sizeof req, "req-%d", n);
    cr_assert_eq(cmn_uuid_communication_id(TENANT, req, out), 0);
}

typedef struct ev_spec {
    int comm;
    cmn_status_t status;
    cmn_channel_t channel;
    int hop, attempt;
    int64_t at_ms;
    const char *provider, *pmid, *discriminator;
} ev_spec_t;

/* Produces one StatusEvent built the way the services build them (event id
 * from finalize), keyed by communication id. */
static void produce_event(fixture_t *fx, const ev_spec_t *s)
{
    char req[32];
    snprintf(req, sizeof req, "req-%d", s->comm);
    cmn_status_event_t ev;
    memset(&ev, 0, sizeof ev);
    comm_id(s->comm, ev.communication_id);
    ev.request_id = req;
    ev.tenant_id = TENANT;
    ev.client_id = "client-7";
    ev.message_type = "event_reminder";
    ev.channel = s->channel;
    ev.status = s->status;
    ev.hop = s->hop;
    ev.attempt = s->attempt;
    ev.provider = s->provider;
    ev.provider_message_id = s->pmid;
    ev.discriminator = s->discriminator;
    ev.occurred_at_ms = s->at_ms;
    cr_assert_eq(cmn_status_event_finalize(&ev), 0);
    cmn_buf_t json = CMN_BUF_INIT;
    cr_assert_eq(cmn_status_event_to_json(&ev, &json), 0);
    cr_assert_eq(th_kafka_produce(fx->brokers, "crm.status", ev.communication_id, json.data, NULL), 0);
    cmn_buf_free(&json);
    fx->produced++;
}

static void produce_raw(fixture_t *fx, const char *key, const char *value)
{
    cr_assert_eq(th_kafka_produce(fx->brokers, "crm.status", key, value, NULL), 0);
    fx->produced++;
}

/* The four events of a communication that went out on email at once. */
static int produce_happy_path(fixture_t *fx, int comm, int64_t t)
{
    ev_spec_t evs[] = {
        {comm, CMN_STATUS_ACCEPTED, CMN_CHANNEL_NONE, 0, 0, t, NULL, NULL, NULL},
        {comm, CMN_STATUS_ROUTED, CMN_CHANNEL_EMAIL, 0, 0, t + 1000, NULL, NULL, NULL},
        {comm, CMN_STATUS_SENDING, CMN_CHANNEL_EMAIL, 0, 1, t + 2000, "smtp", NULL, NULL},
        {comm, CMN_STATUS_SENT, CMN_CHANNEL_EMAIL, 0, 1, t + 3000, "smtp", "<m1@crm>", NULL},
    };
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
        produce_event(fx, &evs[i]);
    return (int)(sizeof evs / sizeof evs[0]);
}

static long long metric(const fixture_t *fx, const char *name)
{
    char url[128], body[65536];
    long status = 0;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", fx->port);
    cr_assert_eq(th_http("GET", url, NULL, NULL, &status, body, sizeof body), 0);
    cr_assert_eq(status, 200);
    char needle[128];
    snprintf(needle, sizeof needle, "\n%s ", name);
    const char *p = strstr(body, needle);
    cr_assert_not_null(p, "metric %s missing", name);
    return (long long)strtod(p + strlen(needle), NULL);
}

static long readyz(const fixture_t *fx)
{
    char url[128], body[256];
    long status = 0;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/readyz", fx->port);
    if (th_http("GET", url, NULL, NULL, &status, body, sizeof body) != 0)
        return -1;
    return status;
}

#define SQL_EVENTS "SELECT count(*) FROM communication_events"
#define SQL_OFFSETS_SUM "SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets WHERE topic = 'crm.status'"

Test(projector, applies_statuses_by_rank_and_sends_bad_records_to_the_dlq, .timeout = 240)
{
    fixture_t fx;
    fixture_init(&fx, "projector_rank");
    start_projector(&fx, "projector-rank");
    char c1[37], c2[37], c3[37], c4[37], sql[512], val[256];
    comm_id(1, c1);
    comm_id(2, c2);
    comm_id(3, c3);
    comm_id(4, c4);
    int distinct = 0;

    /* 1: the happy path, then a late `sending` (a re-delivery from an old
     * attempt) that happened after `sent` but ranks below it. */
    distinct += produce_happy_path(&fx, 1, T0);
    /* Waiting makes the late event meet the stored row (the cross-batch
     * guard) rather than only its batch mates. */
    snprintf(sql, sizeof sql, "SELECT count(*) FROM communications WHERE communication_id = '%s' AND status = 'sent'",
             c1);
    wait_for(&fx, sql, 1, 60000);
    ev_spec_t late = {1, CMN_STATUS_SENDING, CMN_CHANNEL_EMAIL, 0, 1, T0 + 4000, "smtp", NULL, "late-copy"};
    produce_event(&fx, &late);
    distinct++;

    /* 2: the happy path, and its `sent` event produced a second time. */
    distinct += produce_happy_path(&fx, 2, T0 + 10000);
    ev_spec_t dup = {2, CMN_STATUS_SENT, CMN_CHANNEL_EMAIL, 0, 1, T0 + 13000, "smtp", "<m1@crm>", NULL};
    produce_event(&fx, &dup);

    /* Bad records: not JSON, and JSON that is not a valid StatusEvent. */
    produce_raw(&fx, "bad-1", "{this is not json");
    produce_raw(&fx, "bad-2", "{\"v\":1,\"event_id\":\"00000000-0000-4000-8000-000000000001\","
                              "\"communication_id\":\"00000000-0000-4000-8000-000000000002\","
                              "\"status\":\"teleported\",\"occurred_at\":\"2025-11-24T16:00:00Z\"}");

    /* 3: delivered arrives before sent (out of order across services). */
    ev_spec_t c3evs[] = {
        {3, CMN_STATUS_ACCEPTED, CMN_CHANNEL_NONE, 0, 0, T0 + 20000, NULL, NULL, NULL},
        {3, CMN_STATUS_DELIVERED, CMN_CHANNEL_EMAIL, 0, 1, T0 + 25000, "smtp", NULL, "dsn-1"},
        {3, CMN_STATUS_SENT, CMN_CHANNEL_EMAIL, 0, 1, T0 + 23000, "smtp", "<m3@crm>", NULL},
    };
    produce_event(&fx, &c3evs[0]);
    produce_event(&fx, &c3evs[1]);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM communications WHERE communication_id = '%s' AND status = 'delivered'", c3);
    wait_for(&fx, sql, 1, 60000);
    produce_event(&fx, &c3evs[2]);
    distinct += 3;

    /* 4: email fails over to SMS (hop 1), then a late email `failed` of hop
     * 0 arrives: a higher hop always wins, whatever the rank. */
    ev_spec_t c4evs[] = {
        {4, CMN_STATUS_ACCEPTED, CMN_CHANNEL_NONE, 0, 0, T0 + 30000, NULL, NULL, NULL},
        {4, CMN_STATUS_SENDING, CMN_CHANNEL_EMAIL, 0, 1, T0 + 31000, "smtp", NULL, NULL},
        {4, CMN_STATUS_FALLBACK, CMN_CHANNEL_EMAIL, 0, 1, T0 + 32000, "smtp", NULL, NULL},
        {4, CMN_STATUS_SENDING, CMN_CHANNEL_SMS, 1, 1, T0 + 33000, "twilio", NULL, NULL},
        {4, CMN_STATUS_SENT, CMN_CHANNEL_SMS, 1, 1, T0 + 34000, "twilio", "SM123", NULL},
        {4, CMN_STATUS_FAILED, CMN_CHANNEL_EMAIL, 0, 1, T0 + 35000, "smtp", NULL, "late-bounce"},
    };
    for (size_t i = 0; i < 5; i++)
        produce_event(&fx, &c4evs[i]);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM communications WHERE communication_id = '%s' AND hop = 1", c4);
    wait_for(&fx, sql, 1, 60000);
    produce_event(&fx, &c4evs[5]);
    distinct += 6;

    wait_for(&fx, SQL_OFFSETS_SUM, fx.produced, 60000);
    cr_assert_eq(qint(fx.url, SQL_EVENTS), distinct);
    cr_assert_eq(qint(fx.url, "SELECT count(*) FROM communications"), 4);

    snprintf(sql, sizeof sql,
             "SELECT status || ',' || hop || ',' || attempt || ',' || channel || ',' || provider || ',' ||"
             " provider_message_id FROM communications WHERE communication_id = '%s'",
             c1);
    qstr(fx.url, sql, val, sizeof val);
    cr_expect_str_eq(val, "sent,0,1,email,smtp,<m1@crm>", "communication 1 regressed: %s", val);
    snprintf(sql, sizeof sql,
             "SELECT (extract(epoch FROM sending_at) * 1000)::bigint FROM communications"
             " WHERE communication_id = '%s'",
             c1);
    cr_expect_eq(qint(fx.url, sql), T0 + 2000, "sending_at must stay the earliest sending");
    snprintf(sql, sizeof sql,
             "SELECT (extract(epoch FROM created_at) * 1000)::bigint - %lld FROM communications"
             " WHERE communication_id = '%s'",
             T0, c1);
    cr_expect_eq(qint(fx.url, sql), 0, "created_at is the first event's time");

    snprintf(sql, sizeof sql, "SELECT count(*) FROM communication_events WHERE communication_id = '%s'", c2);
    cr_expect_eq(qint(fx.url, sql), 4, "the duplicate sent must be stored once");

    snprintf(sql, sizeof sql,
             "SELECT status || ',' || (sent_at IS NOT NULL) || ',' || (delivered_at IS NOT NULL)"
             " FROM communications WHERE communication_id = '%s'",
             c3);
    qstr(fx.url, sql, val, sizeof val);
    cr_expect_str_eq(val, "delivered,true,true");

    snprintf(sql, sizeof sql,
             "SELECT status || ',' || hop || ',' || channel || ',' || provider || ',' || provider_message_id"
             " || ',' || (failed_at IS NOT NULL) FROM communications WHERE communication_id = '%s'",
             c4);
    qstr(fx.url, sql, val, sizeof val);
    cr_expect_str_eq(val, "sent,1,sms,twilio,SM123,true");

    snprintf(sql, sizeof sql,
             "SELECT tenant_id || ',' || client_id || ',' || request_id || ',' || message_type"
             " FROM communications WHERE communication_id = '%s'",
             c4);
    qstr(fx.url, sql, val, sizeof val);
    cr_expect_str_eq(val, TENANT ",client-7,req-4,event_reminder");

    /* The analysts' views see the same data. */
    cr_expect_eq(qint(fx.url, "SELECT sum(sent) FROM v_delivery_rates"), 4);
    cr_expect_eq(qint(fx.url, "SELECT sum(communications) FROM communications_daily"), 4);

    /* Both bad records are on the DLQ with the reason, and the projector kept going. */
    size_t n = 0;
    th_kafka_record_t *dlq = th_kafka_read_all(fx.brokers, "crm.dlq", 2, 20000, &n);
    cr_assert_eq(n, 2, "%zu DLQ records", n);
    int seen_json = 0, seen_status = 0;
    for (size_t i = 0; i < n; i++) {
        cr_expect_not_null(strstr(dlq[i].headers_json, "\"x-crm-dlq-reason\""), "%s", dlq[i].headers_json);
        cr_expect_not_null(strstr(dlq[i].headers_json, "\"x-crm-dlq-source-topic\":\"crm.status\""), "%s",
                           dlq[i].headers_json);
        if (strcmp(dlq[i].key, "bad-1") == 0) {
            seen_json = 1;
            cr_expect_str_eq(dlq[i].value, "{this is not json");
            cr_expect_not_null(strstr(dlq[i].headers_json, "not JSON"), "%s", dlq[i].headers_json);
        } else if (strcmp(dlq[i].key, "bad-2") == 0) {
            seen_status = 1;
            cr_expect_not_null(strstr(dlq[i].headers_json, "status"), "%s", dlq[i].headers_json);
        }
    }
    cr_expect(seen_json && seen_status);
    th_kafka_records_free(dlq, n);
    cr_expect(th_proc_alive(&fx.proc));
    cr_expect_eq(metric(&fx, "projector_dlq_total"), 2);
    cr_expect_eq(metric(&fx, "projector_events_applied_total"), distinct);

    fixture_fini(&fx);
}

Test(projector, kill_9_mid_stream_never_double_counts, .timeout = 300)
{
    fixture_t fx;
    fixture_init(&fx, "projector_crash");
    start_projector(&fx, "projector-crash");
    enum { FIRST = 60, SECOND = 40 };
    int distinct = 0;

    /* Kill it as soon as it has committed something while records keep
     * coming: in the middle of the stream, possibly inside a batch or
     * between its PostgreSQL and Kafka commits. */
    for (int c = 0; c < FIRST; c++) {
        distinct += produce_happy_path(&fx, 100 + c, T0 + c * 1000LL);
        if (fx.running && qint(fx.url, SQL_OFFSETS_SUM) > 0)
            stop_projector(&fx, SIGKILL);
    }
    for (int waited = 0; fx.running && waited < 60000; waited += 50) {
        if (qint(fx.url, SQL_OFFSETS_SUM) > 0)
            stop_projector(&fx, SIGKILL);
        else
            sleep_ms(50);
    }
    cr_assert_not(fx.running, "the projector never committed anything");
    long long stored = qint(fx.url, SQL_OFFSETS_SUM);
    long long events_at_kill = qint(fx.url, SQL_EVENTS);
    cr_log_info("killed after %lld of %ld records (%lld events)", stored, fx.produced, events_at_kill);
    /* Offsets and events are committed together. */
    cr_assert_eq(stored, events_at_kill);

    for (int c = 0; c < SECOND; c++)
        distinct += produce_happy_path(&fx, 1000 + c, T0 + c * 1000LL);
    start_projector(&fx, "projector-crash");
    wait_for(&fx, SQL_OFFSETS_SUM, fx.produced, 120000);

    cr_assert_eq(qint(fx.url, SQL_EVENTS), distinct, "events stored more or less than once");
    cr_assert_eq(qint(fx.url, "SELECT count(*) FROM communications"), FIRST + SECOND);
    cr_assert_eq(qint(fx.url, "SELECT count(*) FROM communications WHERE status = 'sent'"), FIRST + SECOND);
    cr_assert_eq(qint(fx.url, "SELECT count(*) FROM (SELECT kafka_partition, kafka_offset FROM communication_events"
                              " GROUP BY 1, 2 HAVING count(*) > 1) d"),
                 0);
    /* The restarted projector resumed at the offsets stored with the data:
     * it read exactly the records the first one had not committed. */
    cr_assert_eq(metric(&fx, "projector_records_total"), fx.produced - stored);
    cr_assert_eq(metric(&fx, "projector_events_applied_total"), distinct - events_at_kill);
    fixture_fini(&fx);
}

Test(projector, offsets_stored_in_postgres_win_over_kafka, .timeout = 240)
{
    fixture_t fx;
    fixture_init(&fx, "projector_seek");
    start_projector(&fx, "projector-seek-a");
    int distinct = 0;
    for (int c = 0; c < 10; c++)
        distinct += produce_happy_path(&fx, 200 + c, T0 + c * 1000LL);
    wait_for(&fx, SQL_OFFSETS_SUM, fx.produced, 60000);
    stop_projector(&fx, SIGTERM);

    /* A new group has no committed offsets in Kafka and would start from the
     * beginning (auto.offset.reset=earliest); given the first group's stored
     * offsets in PostgreSQL it must start where those say. */
    cr_assert_eq(th_pg_query_value(fx.url,
                                   "INSERT INTO consumer_offsets (group_id, topic, partition, next_offset)"
                                   " SELECT 'projector-seek-b', topic, partition, next_offset FROM consumer_offsets"
                                   " WHERE group_id = 'projector-seek-a'",
                                   NULL, 0),
                 0);
    long before = fx.produced;
    for (int c = 0; c < 5; c++)
        distinct += produce_happy_path(&fx, 300 + c, T0 + c * 1000LL);
    start_projector(&fx, "projector-seek-b");
    wait_for(&fx, "SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets WHERE group_id = 'projector-seek-b'",
             fx.produced, 60000);
    cr_assert_eq(metric(&fx, "projector_records_total"), fx.produced - before);
    cr_assert_eq(qint(fx.url, SQL_EVENTS), distinct);
    fixture_fini(&fx);
}

Test(projector, rides_out_a_database_outage, .timeout = 240)
{
    fixture_t fx;
    fixture_init(&fx, "projector_outage");
    start_projector(&fx, "projector-outage");
    int distinct = produce_happy_path(&fx, 400, T0);
    wait_for(&fx, SQL_EVENTS, distinct, 60000);

    /* Make the database unreachable for the projector: refuse new
     * connections and end the existing ones. */
    char admin[256];
    snprintf(admin, sizeof admin, "%s", fx.url);
    char *slash = strrchr(admin, '/');
    cr_assert_not_null(slash);
    snprintf(slash, sizeof admin - (size_t)(slash - admin), "/postgres");
    cr_assert_eq(th_pg_query_value(admin, "ALTER DATABASE projector_outage WITH ALLOW_CONNECTIONS false", NULL, 0),
                 0);
    cr_assert_eq(th_pg_query_value(admin,
                                   "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                                   " WHERE datname = 'projector_outage'",
                                   NULL, 0),
                 0);
    for (int c = 0; c < 3; c++)
        distinct += produce_happy_path(&fx, 401 + c, T0 + c * 1000LL);

    long status = 200;
    for (int waited = 0; waited < 30000 && status == 200; waited += 200) {
        status = readyz(&fx);
        sleep_ms(200);
    }
    cr_assert_eq(status, 503, "readyz answered %ld while PostgreSQL was unreachable", status);
    /* It stays unready and alive, retrying, for as long as the outage lasts. */
    sleep_ms(3000);
    cr_assert_eq(readyz(&fx), 503);
    cr_assert(th_proc_alive(&fx.proc), "the projector died during the outage; see %s", fx.proc.log_path);

    cr_assert_eq(th_pg_query_value(admin, "ALTER DATABASE projector_outage WITH ALLOW_CONNECTIONS true", NULL, 0),
                 0);
    wait_for(&fx, SQL_OFFSETS_SUM, fx.produced, 60000);
    cr_assert_eq(qint(fx.url, SQL_EVENTS), distinct);
    for (int waited = 0; waited < 15000 && status != 200; waited += 200) {
        status = readyz(&fx);
        sleep_ms(200);
    }
    cr_assert_eq(status, 200);
    fixture_fini(&fx);
}
