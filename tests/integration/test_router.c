/* test_router.c - the real crm-router binary against the Kafka mock cluster
 * and a private PostgreSQL: CommunicationRequests produced straight to
 * crm.requests come out as Dispatches on crm.send.<channel> with their
 * statuses on crm.status; duplicates (in one batch, in later batches, after
 * a restart) are dispatched once; bad records go to crm.dlq; suppression
 * reasons; an interrupted claim is resumed without a second Dispatch; a
 * database outage (not ready, nothing lost); and a router killed with -9
 * mid-stream neither loses nor doubles a request. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crm/buf.h"
#include "crm/dispatch.h"
#include "crm/json.h"
#include "crm/time.h"
#include "crm/uuid.h"
#include "th_kafka.h"
#include "th_pg.h"
#include "th_proc.h"

#define TENANT "acme"
#define GROUP "router-test"

typedef struct fixture {
    th_kafka_t *kafka;
    const char *brokers;
    char url[256];
    th_proc_t proc;
    int port;
    int running;
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

/* Starts crm-router; extra is NULL or a NULL-terminated list of NAME=value. */
static void start_router(fixture_t *fx, const char *const *extra)
{
    char bin[512], brokers[600], dburl[300], port[32];
    char *env[32];
    size_t n = 0;
    cr_assert_not_null(th_bin("crm-router", bin, sizeof bin), "crm-router is not built");
    fx->port = th_free_port();
    snprintf(brokers, sizeof brokers, "KAFKA_BROKERS=%s", fx->brokers);
    snprintf(dburl, sizeof dburl, "DATABASE_URL=%s", fx->url);
    snprintf(port, sizeof port, "HTTP_PORT=%d", fx->port);
    env[n++] = brokers;
    env[n++] = dburl;
    env[n++] = port;
    env[n++] = "HTTP_BIND=127.0.0.1";
    env[n++] = "LOG_LEVEL=debug";
    env[n++] = "ROUTER_GROUP_ID=" GROUP;
    /* A restarted router takes over a killed one's partitions within
     * seconds instead of the default 45. */
    env[n++] = "KAFKA_SESSION_TIMEOUT_MS=6000";
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 31; i++)
        env[n++] = (char *)extra[i];
    env[n] = NULL;
    char *const argv[] = {bin, NULL};
    cr_assert_eq(th_proc_start(&fx->proc, "crm-router", argv, env), 0);
    cr_assert_eq(th_proc_wait_ready(&fx->proc, fx->port, 60000), 0, "router not ready; see %s", fx->proc.log_path);
    fx->running = 1;
}

static void stop_router(fixture_t *fx, int sig)
{
    if (!fx->running)
        return;
    int status = th_proc_stop(&fx->proc, sig, 30000);
    fx->running = 0;
    if (sig == SIGTERM)
        cr_expect_eq(status, 0, "router exit status %d after SIGTERM; see %s", status, fx->proc.log_path);
}

static void fixture_fini(fixture_t *fx)
{
    stop_router(fx, SIGTERM);
    th_kafka_stop(fx->kafka);
}

static long long qint(const fixture_t *fx, const char *sql)
{
    char out[64];
    cr_assert_eq(th_pg_query_value(fx->url, sql, out, sizeof out), 0, "query failed: %s", sql);
    return out[0] == '\0' ? -1 : strtoll(out, NULL, 10);
}

/* Polls sql until it returns at least want or timeout_ms passes. */
static void wait_at_least(const fixture_t *fx, const char *sql, long long want, int timeout_ms)
{
    long long got = -1;
    for (int waited = 0; waited <= timeout_ms; waited += 50) {
        got = qint(fx, sql);
        if (got >= want)
            return;
        sleep_ms(50);
    }
    cr_assert_fail("%s: want >= %lld, got %lld (router log: %s)", sql, want, got, fx->proc.log_path);
}

/* Waits until the claim of request_id is done. */
static void wait_done(const fixture_t *fx, const char *request_id)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM request_claims WHERE tenant_id = '" TENANT "' AND request_id = '%s' AND state = 'done'",
             request_id);
    wait_at_least(fx, sql, 1, 60000);
}

static void comm_id(const char *request_id, char out[CMN_UUID_STR_LEN + 1])
{
    cr_assert_eq(cmn_uuid_communication_id(TENANT, request_id, out), 0);
}

/* A valid request JSON for request_id with an email and a phone. */
static void request_json(cmn_buf_t *b, const char *request_id, const char *client_id)
{
    cmn_buf_reset(b);
    cmn_buf_printf(b,
                   "{\"v\":1,\"request_id\":\"%s\",\"tenant_id\":\"" TENANT "\",\"client_id\":\"%s\","
                   "\"message_type\":\"welcome\",\"recipient\":{\"name\":\"Ana\",\"email\":\"ana@example.com\","
                   "\"phone\":\"+14155550100\",\"locale\":\"fr-FR\"}}",
                   request_id, client_id);
}

static void produce(const fixture_t *fx, const char *key, const char *value)
{
    cr_assert_eq(th_kafka_produce(fx->brokers, "crm.requests", key, value, NULL), 0);
}

static void produce_request(const fixture_t *fx, const char *request_id, const char *client_id)
{
    cmn_buf_t b = CMN_BUF_INIT;
    request_json(&b, request_id, client_id);
    produce(fx, client_id, b.data);
    cmn_buf_free(&b);
}

/* Reads a whole topic: waits up to timeout_ms for `expect` records, then
 * returns what is there. */
static th_kafka_record_t *read_topic(const fixture_t *fx, const char *topic, size_t expect, int timeout_ms,
                                     size_t *n)
{
    th_kafka_record_t *r = th_kafka_read_all(fx->brokers, topic, expect, timeout_ms, n);
    cr_assert_not_null(r, "cannot read %s", topic);
    return r;
}

/* Waits until the router's group has committed every record of
 * crm.requests: each one was processed, and what its batch produced was
 * acknowledged before the commit. After this, reading an output topic to
 * its end sees everything the router will ever write for these requests,
 * doubles included, without waiting out a timeout. */
static void settle(const fixture_t *fx)
{
    int64_t lag = -1;
    for (int waited = 0; waited <= 60000; waited += 50) {
        cr_assert_eq(th_kafka_group_lag(fx->brokers, GROUP, "crm.requests", 10000, &lag), 0,
                     "cannot read the offsets of " GROUP);
        if (lag == 0)
            return;
        sleep_ms(50);
    }
    cr_assert_fail("the router left %lld records of crm.requests uncommitted (router log: %s)", (long long)lag,
                   fx->proc.log_path);
}

/* Everything topic holds now (see settle). */
static th_kafka_record_t *read_to_end(const fixture_t *fx, const char *topic, size_t *n)
{
    th_kafka_record_t *r = th_kafka_read_to_end(fx->brokers, topic, 20000, n);
    cr_assert_not_null(r, "cannot read %s to its end", topic);
    return r;
}

/* Counts the records of recs whose JSON value has field == value (and, when
 * field2 is not NULL, field2 == value2). */
static size_t count_where(const th_kafka_record_t *recs, size_t n, const char *field, const char *value,
                          const char *field2, const char *value2)
{
    size_t count = 0;
    char err[128];
    for (size_t i = 0; i < n; i++) {
        json_object *o = cmn_json_parse(recs[i].value, strlen(recs[i].value), err, sizeof err);
        if (o == NULL)
            continue;
        const char *v = cmn_json_get_string(o, field);
        const char *v2 = field2 != NULL ? cmn_json_get_string(o, field2) : NULL;
        if (v != NULL && strcmp(v, value) == 0 && (field2 == NULL || (v2 != NULL && strcmp(v2, value2) == 0)))
            count++;
        json_object_put(o);
    }
    return count;
}

/* Returns the index of the record with field == value, or -1. */
static long find_where(const th_kafka_record_t *recs, size_t n, const char *field, const char *value,
                       const char *field2, const char *value2)
{
    char err[128];
    for (size_t i = 0; i < n; i++) {
        json_object *o = cmn_json_parse(recs[i].value, strlen(recs[i].value), err, sizeof err);
        if (o == NULL)
            continue;
        const char *v = cmn_json_get_string(o, field);
        const char *v2 = field2 != NULL ? cmn_json_get_string(o, field2) : NULL;
        int hit = v != NULL && strcmp(v, value) == 0 && (field2 == NULL || (v2 != NULL && strcmp(v2, value2) == 0));
        json_object_put(o);
        if (hit)
            return (long)i;
    }
    return -1;
}

static long long metric(const fixture_t *fx, const char *series)
{
    char url[128];
    enum { BODY = 65536 };
    char *body = malloc(BODY);
    long status = 0;
    cr_assert_not_null(body);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", fx->port);
    cr_assert_eq(th_http("GET", url, NULL, NULL, &status, body, BODY), 0);
    cr_assert_eq(status, 200);
    char needle[160];
    snprintf(needle, sizeof needle, "\n%s ", series);
    const char *p = strstr(body, needle);
    cr_assert_not_null(p, "metric %s missing", series);
    long long value = (long long)strtod(p + strlen(needle), NULL);
    free(body);
    return value;
}

/* ------------------------------------------------------------------ tests */

Test(router, routes_a_request_to_email_with_statuses, .timeout = 180)
{
    fixture_t fx;
    fixture_init(&fx, "router_routes");
    start_router(&fx, (const char *const[]){"ROUTER_ENABLED_CHANNELS=email,sms", NULL});

    /* Channels are explicit so the fallback plan is known: email, then sms. */
    const char *req =
        "{\"v\":1,\"request_id\":\"route-1\",\"tenant_id\":\"" TENANT "\",\"client_id\":\"client-9\","
        "\"message_type\":\"appointment_reminder\",\"urgency\":\"normal\",\"channels\":[\"email\",\"sms\"],"
        "\"recipient\":{\"name\":\"Ana Lima\",\"email\":\"ana@example.com\",\"phone\":\"+14155550100\","
        "\"timezone\":\"Europe/Paris\",\"locale\":\"fr-FR\"},\"template\":\"reminder\","
        "\"context\":{\"when\":\"demain\"},\"expires_at\":\"2099-01-01T00:00:00Z\"}";
    int64_t before = cmn_now_ms();
    cr_assert_eq(th_kafka_produce(fx.brokers, "crm.requests", "client-9", req,
                                  (const char *const[]){"traceparent",
                                                        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                                                        NULL}),
                 0);
    wait_done(&fx, "route-1");

    char id[CMN_UUID_STR_LEN + 1];
    comm_id("route-1", id);
    size_t n = 0;
    th_kafka_record_t *d = read_topic(&fx, "crm.send.email", 1, 20000, &n);
    cr_assert_eq(n, 1, "one Dispatch on crm.send.email");
    cr_expect_str_eq(d[0].key, "client-9", "Dispatches are keyed by client_id");
    cr_expect(strstr(d[0].headers_json, "0af7651916cd43dd8448eb211c80319c") != NULL,
              "the upstream trace continues: %s", d[0].headers_json);

    char err[256];
    json_object *obj = cmn_json_parse(d[0].value, strlen(d[0].value), err, sizeof err);
    cr_assert_not_null(obj, "%s", err);
    cmn_dispatch_t disp;
    memset(&disp, 0, sizeof disp);
    cr_assert_eq(cmn_dispatch_from_json(obj, &disp, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(disp.communication_id, id);
    cr_expect_str_eq(disp.request_id, "route-1");
    cr_expect_str_eq(disp.tenant_id, TENANT);
    cr_expect_str_eq(disp.client_id, "client-9");
    cr_expect_str_eq(disp.message_type, "appointment_reminder");
    cr_expect_eq(disp.channel, CMN_CHANNEL_EMAIL);
    cr_expect_eq(disp.attempt, 1);
    cr_expect_eq(disp.hop, 0);
    cr_expect_str_eq(disp.to, "ana@example.com");
    cr_expect_str_eq(disp.template_name, "reminder");
    cr_expect_str_eq(disp.locale, "fr-FR");
    cr_expect_str_eq(disp.recipient.name, "Ana Lima");
    cr_expect_str_eq(disp.recipient.phone, "+14155550100");
    cr_expect_str_eq(disp.recipient.timezone, "Europe/Paris");
    cr_assert_eq(disp.n_fallback, 1);
    cr_expect_eq(disp.fallback[0], CMN_CHANNEL_SMS);
    int64_t deadline = 0;
    cmn_time_parse_rfc3339("2099-01-01T00:00:00Z", &deadline);
    cr_expect_eq(disp.deadline_ms, deadline);
    /* No received_at in the request: created_at is when it was produced. */
    cr_expect(disp.created_at_ms >= before - 1000 && disp.created_at_ms <= cmn_now_ms(), "created_at %" PRId64,
              disp.created_at_ms);
    cr_assert_not_null(disp.context);
    cr_expect_str_eq(cmn_json_get_string(disp.context, "when"), "demain");
    cmn_dispatch_clear(&disp);
    json_object_put(obj);

    size_t ns = 0;
    th_kafka_record_t *st = read_topic(&fx, "crm.status", 2, 20000, &ns);
    cr_expect_eq(ns, 2, "accepted and routed");
    long acc = find_where(st, ns, "communication_id", id, "status", "accepted");
    long rt = find_where(st, ns, "communication_id", id, "status", "routed");
    cr_assert_geq(acc, 0, "accepted status");
    cr_assert_geq(rt, 0, "routed status");
    cr_expect_str_eq(st[acc].key, id, "statuses are keyed by communication_id");
    cr_expect_str_eq(st[rt].key, id);
    cr_expect(strstr(st[rt].value, "\"channel\":\"email\"") != NULL, "%s", st[rt].value);
    cr_expect(strstr(st[rt].value, "\"hop\":0") != NULL, "%s", st[rt].value);
    cr_expect(strstr(st[rt].value, "ana@example.com") == NULL, "no address in status events");

    /* The claim is done and remembers its record and output fence. */
    cr_expect_eq(qint(&fx, "SELECT count(*) FROM request_claims WHERE request_id = 'route-1' AND state = 'done'"
                           " AND source_topic = 'crm.requests' AND source_offset >= 0"
                           " AND output_fence ? 'crm.send.email' AND output_fence ? 'crm.send.sms'"
                           " AND communication_id IS NOT NULL AND done_at IS NOT NULL"),
                 1);
    cr_expect_eq(metric(&fx, "router_requests_total{outcome=\"routed\"}"), 1);
    cr_expect_eq(metric(&fx, "router_batch_seconds_count"), 1);

    th_kafka_records_free(d, n);
    th_kafka_records_free(st, ns);
    fixture_fini(&fx);
}

Test(router, duplicates_are_dispatched_once, .timeout = 240)
{
    fixture_t fx;
    fixture_init(&fx, "router_duplicates");
    char id[CMN_UUID_STR_LEN + 1];
    comm_id("dup-1", id);

    /* Twice before the router runs: both land in its first batch. */
    produce_request(&fx, "dup-1", "client-1");
    produce_request(&fx, "dup-1", "client-1");
    start_router(&fx, NULL);
    wait_done(&fx, "dup-1");

    /* Again in a later batch; the sentinel has the same key, so it sits
     * behind the duplicate on the same partition. */
    produce_request(&fx, "dup-1", "client-1");
    produce_request(&fx, "sentinel-1", "client-1");
    wait_done(&fx, "sentinel-1");
    cr_expect_eq(metric(&fx, "router_requests_total{outcome=\"duplicate\"}"), 2);
    cr_expect_eq(metric(&fx, "router_requests_total{outcome=\"routed\"}"), 2);

    /* And after a restart (a clean one: SIGTERM commits and exits 0). */
    stop_router(&fx, SIGTERM);
    produce_request(&fx, "dup-1", "client-1");
    produce_request(&fx, "sentinel-2", "client-1");
    start_router(&fx, NULL);
    wait_done(&fx, "sentinel-2");
    settle(&fx);

    size_t n = 0;
    th_kafka_record_t *d = read_to_end(&fx, "crm.send.email", &n);
    cr_expect_eq(n, 3, "dup-1, sentinel-1 and sentinel-2 once each");
    cr_expect_eq(count_where(d, n, "communication_id", id, NULL, NULL), 1, "dup-1 dispatched once");
    size_t ns = 0;
    th_kafka_record_t *st = read_to_end(&fx, "crm.status", &ns);
    cr_expect_eq(count_where(st, ns, "communication_id", id, "status", "accepted"), 1,
                 "a duplicate produces no status");
    cr_expect_eq(ns, 6, "accepted + routed for three requests");
    th_kafka_records_free(d, n);
    th_kafka_records_free(st, ns);
    fixture_fini(&fx);
}

Test(router, bad_records_go_to_the_dlq_and_routing_goes_on, .timeout = 180)
{
    fixture_t fx;
    fixture_init(&fx, "router_dlq");
    start_router(&fx, NULL);

    /* An accepted request, so that a broken copy of it can be sent later. */
    produce_request(&fx, "good-1", "client-3");
    wait_done(&fx, "good-1");

    produce(&fx, "client-3", "{\"request_id\": \"x\", oops");
    produce(&fx, "client-3", "{\"v\":1,\"message_type\":\"welcome\",\"recipient\":{\"email\":\"ana@example.com\"}}");
    produce(&fx, "client-3",
            "{\"v\":1,\"request_id\":\"bad-1\",\"tenant_id\":\"" TENANT "\",\"client_id\":\"client-3\","
            "\"message_type\":\"welcome\",\"recipient\":{\"email\":\"not-an-email\"}}");
    produce(&fx, "client-3",
            "{\"v\":1,\"request_id\":\"good-1\",\"tenant_id\":\"" TENANT "\",\"client_id\":\"client-3\","
            "\"message_type\":\"welcome\",\"urgency\":\"urgent\",\"recipient\":{\"email\":\"ana@example.com\"}}");
    produce_request(&fx, "good-2", "client-3");
    wait_done(&fx, "good-2");
    settle(&fx);

    size_t n = 0;
    th_kafka_record_t *dlq = read_to_end(&fx, "crm.dlq", &n);
    cr_assert_eq(n, 4, "four bad records on crm.dlq");
    char err[256];
    for (size_t i = 0; i < n; i++) {
        json_object *h = cmn_json_parse(dlq[i].headers_json, strlen(dlq[i].headers_json), err, sizeof err);
        cr_assert_not_null(h, "headers: %s", err);
        const char *reason = cmn_json_get_string(h, "x-crm-dlq-reason");
        cr_assert_not_null(reason, "reason header on record %zu: %s", i, dlq[i].headers_json);
        json_object *problems = cmn_json_parse(reason, strlen(reason), err, sizeof err);
        cr_assert_not_null(problems, "the reason is the problem list as JSON: %s", reason);
        cr_expect(json_object_is_type(problems, json_type_array) && json_object_array_length(problems) > 0, "%s",
                  reason);
        cr_expect_str_eq(cmn_json_get_string(h, "x-crm-dlq-source-topic"), "crm.requests");
        cr_expect_str_eq(cmn_json_get_string(h, "x-crm-dlq-service"), "crm-router");
        cr_expect_str_eq(dlq[i].key, "client-3", "the DLQ keeps the original key");
        json_object_put(problems);
        json_object_put(h);
    }
    cr_expect(strstr(dlq[0].headers_json, "malformed JSON") != NULL, "%s", dlq[0].headers_json);
    cr_expect_str_eq(dlq[0].value, "{\"request_id\": \"x\", oops", "the original value is kept");
    cr_expect(strstr(dlq[1].headers_json, "request_id") != NULL, "%s", dlq[1].headers_json);
    cr_expect(strstr(dlq[2].headers_json, "recipient.email") != NULL, "%s", dlq[2].headers_json);
    cr_expect(strstr(dlq[3].headers_json, "urgency") != NULL, "%s", dlq[3].headers_json);

    char bad[CMN_UUID_STR_LEN + 1], good[CMN_UUID_STR_LEN + 1];
    comm_id("bad-1", bad);
    comm_id("good-1", good);
    size_t ns = 0;
    th_kafka_record_t *st = read_to_end(&fx, "crm.status", &ns);
    long rej = find_where(st, ns, "communication_id", bad, "status", "rejected");
    cr_assert_geq(rej, 0, "invalid request with ids gets a rejected status");
    cr_expect(strstr(st[rej].value, "\"reason\":\"invalid_request\"") != NULL, "%s", st[rej].value);
    cr_expect(strstr(st[rej].value, "recipient.email") != NULL, "%s", st[rej].value);
    cr_expect_eq(count_where(st, ns, "communication_id", good, "status", "rejected"), 0,
                 "a broken copy of an accepted request does not reject it");
    cr_expect_eq(count_where(st, ns, "status", "rejected", NULL, NULL), 1);
    cr_expect_eq(ns, 5, "good-1 and good-2 accepted + routed, bad-1 rejected");

    size_t nd = 0;
    th_kafka_record_t *d = read_to_end(&fx, "crm.send.email", &nd);
    cr_expect_eq(nd, 2, "routing went on after the bad records");
    cr_expect_eq(metric(&fx, "router_requests_total{outcome=\"rejected\"}"), 4);
    cr_expect_eq(qint(&fx, "SELECT count(*) FROM request_claims WHERE request_id = 'bad-1'"), 0,
                 "a rejected request claims nothing");
    th_kafka_records_free(dlq, n);
    th_kafka_records_free(st, ns);
    th_kafka_records_free(d, nd);
    fixture_fini(&fx);
}

Test(router, suppressions_carry_their_reason, .timeout = 180)
{
    fixture_t fx;
    fixture_init(&fx, "router_suppressed");
    start_router(&fx, NULL); /* ROUTER_ENABLED_CHANNELS defaults to email */

    /* Only a phone while only email has a provider: reachable, but not on a
     * channel this deployment can send on. */
    produce(&fx, "client-5",
            "{\"request_id\":\"phone-only\",\"tenant_id\":\"" TENANT "\",\"client_id\":\"client-5\","
            "\"message_type\":\"appointment_reminder\",\"recipient\":{\"phone\":\"+14155550100\"}}");
    /* Every candidate lacks an address. */
    produce(&fx, "client-5",
            "{\"request_id\":\"no-address\",\"tenant_id\":\"" TENANT "\",\"client_id\":\"client-5\","
            "\"message_type\":\"welcome\",\"channels\":[\"whatsapp\"],\"recipient\":{\"phone\":\"+14155550100\"}}");
    produce(&fx, "client-5",
            "{\"request_id\":\"expired\",\"tenant_id\":\"" TENANT "\",\"client_id\":\"client-5\","
            "\"message_type\":\"welcome\",\"expires_at\":\"2020-01-01T00:00:00Z\","
            "\"recipient\":{\"email\":\"ana@example.com\"}}");
    wait_done(&fx, "phone-only");
    wait_done(&fx, "no-address");
    wait_done(&fx, "expired");

    const char *cases[][2] = {{"phone-only", "no_channel"}, {"no-address", "no_address"}, {"expired", "expired"}};
    size_t ns = 0;
    th_kafka_record_t *st = read_topic(&fx, "crm.status", 6, 20000, &ns);
    cr_expect_eq(ns, 6, "accepted + suppressed for each");
    for (size_t i = 0; i < 3; i++) {
        char id[CMN_UUID_STR_LEN + 1];
        comm_id(cases[i][0], id);
        long s = find_where(st, ns, "communication_id", id, "status", "suppressed");
        cr_assert_geq(s, 0, "%s suppressed", cases[i][0]);
        const char *reason = NULL;
        char err[128];
        json_object *o = cmn_json_parse(st[s].value, strlen(st[s].value), err, sizeof err);
        cr_assert_not_null(o);
        reason = cmn_json_get_string(o, "reason");
        cr_expect(reason != NULL && strcmp(reason, cases[i][1]) == 0, "%s: reason %s, want %s", cases[i][0],
                  reason != NULL ? reason : "(none)", cases[i][1]);
        json_object_put(o);
    }
    settle(&fx);
    size_t nd = 0;
    th_kafka_record_t *d = read_to_end(&fx, "crm.send.email", &nd);
    cr_expect_eq(nd, 0, "nothing dispatched");
    cr_expect_eq(metric(&fx, "router_requests_total{outcome=\"suppressed\"}"), 3);
    th_kafka_records_free(st, ns);
    th_kafka_records_free(d, nd);
    fixture_fini(&fx);
}

/* The recovery path, made deterministic: claims left 'claimed' by an
 * "earlier run", one of which already has its Dispatch in the log. */
Test(router, resumed_claims_are_not_dispatched_twice, .timeout = 180)
{
    fixture_t fx;
    fixture_init(&fx, "router_resume");
    const char *ids[] = {"resume-sent", "resume-unsent", "copy-of-inflight", "legacy-sent"};
    enum { NIDS = 4 };
    for (size_t i = 0; i < NIDS; i++)
        produce_request(&fx, ids[i], "client-6");

    size_t nr = 0;
    th_kafka_record_t *reqs = read_topic(&fx, "crm.requests", NIDS, 20000, &nr);
    cr_assert_eq(nr, NIDS);

    /* The fence an earlier run took before producing: every partition of
     * crm.send.email at offset 0 (it was empty). */
    char fence[256] = "{\"crm.send.email\":[";
    for (int p = 0; p < 12; p++)
        strcat(fence, p ? ",0" : "0");
    strcat(fence, "]}");

    char cids[NIDS][CMN_UUID_STR_LEN + 1];
    for (size_t i = 0; i < NIDS; i++)
        comm_id(ids[i], cids[i]);
    const char *sent = cids[0], *unsent = cids[1], *inflight = cids[2], *legacy = cids[3];

    /* What that run managed to produce before it died: two Dispatches (one
     * on another partition than the router would pick: the read-back must
     * not depend on the partitioner). */
    for (size_t i = 0; i < NIDS; i += 3) {
        char earlier[512];
        snprintf(earlier, sizeof earlier,
                 "{\"v\":1,\"communication_id\":\"%s\",\"request_id\":\"%s\",\"tenant_id\":\"" TENANT
                 "\",\"client_id\":\"client-6\",\"message_type\":\"welcome\",\"channel\":\"email\","
                 "\"attempt\":1,\"hop\":0,\"to\":\"ana@example.com\"}",
                 cids[i], ids[i]);
        cr_assert_eq(th_kafka_produce(fx.brokers, "crm.send.email", i == 0 ? "client-6" : "elsewhere", earlier, NULL),
                     0);
    }

    /* Its claims: resume-sent and resume-unsent by their own records;
     * copy-of-inflight by some other record (offset 999999) that has not
     * finished; legacy-sent by its own record but without a fence (written
     * before fences existed: read back from the start of the topics). */
    for (size_t i = 0; i < NIDS; i++) {
        char sql[1024], fence_sql[300];
        snprintf(fence_sql, sizeof fence_sql, i == 3 ? "NULL" : "'%s'", fence);
        snprintf(sql, sizeof sql,
                 "INSERT INTO request_claims (tenant_id, request_id, communication_id, state, source_topic,"
                 " source_partition, source_offset, output_fence) VALUES ('" TENANT "', '%s', '%s', 'claimed',"
                 " 'crm.requests', %d, %lld, %s)",
                 ids[i], cids[i], (int)reqs[i].partition, i == 2 ? 999999LL : (long long)reqs[i].offset, fence_sql);
        char out[8];
        cr_assert_eq(th_pg_query_value(fx.url, sql, out, sizeof out), 0, "%s", sql);
    }

    start_router(&fx, NULL);
    wait_done(&fx, "resume-sent");
    wait_done(&fx, "resume-unsent");
    wait_done(&fx, "legacy-sent");
    /* A sentinel behind them on the same partition proves the third record
     * was processed (and skipped) too. */
    produce_request(&fx, "sentinel", "client-6");
    wait_done(&fx, "sentinel");
    settle(&fx);

    size_t n = 0;
    th_kafka_record_t *d = read_to_end(&fx, "crm.send.email", &n);
    cr_expect_eq(count_where(d, n, "communication_id", sent, NULL, NULL), 1,
                 "the Dispatch already in the log is not produced again");
    cr_expect_eq(count_where(d, n, "communication_id", legacy, NULL, NULL), 1,
                 "nor is one found without a fence");
    cr_expect_eq(count_where(d, n, "communication_id", unsent, NULL, NULL), 1,
                 "the one that never made it is produced now");
    cr_expect_eq(count_where(d, n, "communication_id", inflight, NULL, NULL), 0,
                 "a copy of a request claimed by another record is a duplicate");
    cr_expect_eq(n, 4);
    cr_expect_eq(qint(&fx, "SELECT count(*) FROM request_claims WHERE request_id = 'copy-of-inflight'"
                           " AND state = 'claimed'"),
                 1, "the owner record finishes that claim, not its copy");

    size_t ns = 0;
    th_kafka_record_t *st = read_topic(&fx, "crm.status", 8, 20000, &ns);
    cr_expect_geq(count_where(st, ns, "communication_id", sent, "status", "routed"), 1,
                  "the resumed request still reports routed");
    th_kafka_records_free(reqs, nr);
    th_kafka_records_free(d, n);
    th_kafka_records_free(st, ns);
    fixture_fini(&fx);
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

Test(router, rides_out_a_database_outage, .timeout = 240)
{
    fixture_t fx;
    fixture_init(&fx, "router_outage");
    start_router(&fx, NULL);
    produce_request(&fx, "before", "client-8");
    wait_done(&fx, "before");

    /* Make the database unreachable for the router: refuse new connections
     * and end the existing ones. */
    char admin[256];
    snprintf(admin, sizeof admin, "%s", fx.url);
    char *slash = strrchr(admin, '/');
    cr_assert_not_null(slash);
    snprintf(slash, sizeof admin - (size_t)(slash - admin), "/postgres");
    cr_assert_eq(th_pg_query_value(admin, "ALTER DATABASE router_outage WITH ALLOW_CONNECTIONS false", NULL, 0), 0);
    cr_assert_eq(th_pg_query_value(admin,
                                   "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                                   " WHERE datname = 'router_outage'",
                                   NULL, 0),
                 0);
    char rid[32];
    for (int i = 0; i < 5; i++) {
        snprintf(rid, sizeof rid, "during-%d", i);
        produce_request(&fx, rid, "client-8");
    }

    long status = 200;
    for (int waited = 0; waited < 30000 && status == 200; waited += 200) {
        status = readyz(&fx);
        sleep_ms(200);
    }
    cr_assert_eq(status, 503, "readyz answered %ld while PostgreSQL was unreachable", status);
    sleep_ms(3000);
    cr_assert_eq(readyz(&fx), 503, "stays unready for as long as the outage lasts");
    cr_assert(th_proc_alive(&fx.proc), "the router died during the outage; see %s", fx.proc.log_path);
    /* The requests were polled before the router turned unready, and it
     * has been unready for 3 s since: a Dispatch without a claim would be
     * in the log by now. */
    size_t n = 0;
    th_kafka_record_t *d = read_to_end(&fx, "crm.send.email", &n);
    cr_expect_eq(n, 1, "nothing is dispatched without a claim");
    th_kafka_records_free(d, n);

    cr_assert_eq(th_pg_query_value(admin, "ALTER DATABASE router_outage WITH ALLOW_CONNECTIONS true", NULL, 0), 0);
    wait_at_least(&fx, "SELECT count(*) FROM request_claims WHERE state = 'done'", 6, 60000);
    for (int waited = 0; waited < 15000 && status != 200; waited += 200) {
        status = readyz(&fx);
        sleep_ms(200);
    }
    cr_assert_eq(status, 200);
    settle(&fx);
    d = read_to_end(&fx, "crm.send.email", &n);
    cr_expect_eq(n, 6, "every request dispatched once after the outage");
    for (int i = 0; i < 5; i++) {
        char id[CMN_UUID_STR_LEN + 1];
        snprintf(rid, sizeof rid, "during-%d", i);
        comm_id(rid, id);
        cr_expect_eq(count_where(d, n, "communication_id", id, NULL, NULL), 1, "%s", rid);
    }
    th_kafka_records_free(d, n);
    fixture_fini(&fx);
}

#define STREAM 300

Test(router, kill_9_mid_stream_loses_and_doubles_nothing, .timeout = 400)
{
    fixture_t fx;
    fixture_init(&fx, "router_kill");
    char rid[32], client[32];

    for (int i = 0; i < STREAM; i++) {
        snprintf(rid, sizeof rid, "kill-%03d", i);
        snprintf(client, sizeof client, "client-%d", i % 17);
        produce_request(&fx, rid, client);
    }
    /* Small batches so every kill lands inside a stream of batches. */
    const char *const env[] = {"ROUTER_BATCH_SIZE=20", NULL};
    const char *done = "SELECT count(*) FROM request_claims WHERE state = 'done'";
    const long long kill_at[] = {60, 170};
    for (size_t k = 0; k < sizeof kill_at / sizeof kill_at[0]; k++) {
        start_router(&fx, env);
        wait_at_least(&fx, done, kill_at[k], 120000);
        stop_router(&fx, SIGKILL);
        fprintf(stderr, "kill -9 #%zu with %lld claims done, %lld claimed\n", k + 1, qint(&fx, done),
                qint(&fx, "SELECT count(*) FROM request_claims WHERE state = 'claimed'"));
    }
    start_router(&fx, env);
    wait_at_least(&fx, done, STREAM, 180000);

    /* Once every record of crm.requests is committed (the replays of
     * partitions taken over after a kill included), read everything there
     * is to catch any double. */
    settle(&fx);
    size_t n = 0;
    th_kafka_record_t *d = read_to_end(&fx, "crm.send.email", &n);
    cr_expect_eq(n, STREAM, "%zu Dispatches for %d requests", n, STREAM);
    for (int i = 0; i < STREAM; i++) {
        char id[CMN_UUID_STR_LEN + 1];
        snprintf(rid, sizeof rid, "kill-%03d", i);
        comm_id(rid, id);
        size_t c = count_where(d, n, "communication_id", id, NULL, NULL);
        cr_expect_eq(c, 1, "%s dispatched %zu times", rid, c);
    }
    cr_expect_eq(qint(&fx, "SELECT count(*) FROM request_claims"), STREAM);
    th_kafka_records_free(d, n);
    fixture_fini(&fx);
}
