/* test_router_prefs.c - the real crm-router binary with client preferences,
 * against the Kafka mock cluster and a private PostgreSQL:
 *  - an opted-out client is suppressed (opted_out), WhatsApp without consent
 *    falls to the next channel, with consent it goes; the addresses' keyed
 *    hashes land in client_contacts;
 *  - a request inside the client's quiet hours (a window built around the
 *    current time in Asia/Tokyo) is deferred: `deferred` status and the
 *    request record on crm.defer.1h with x-crm-due-at, x-crm-target,
 *    x-crm-deferral and its traceparent; a duplicate of the request is still
 *    skipped; the record coming back to crm.requests is routed with the
 *    preferences of the moment (once, a second copy is skipped), or
 *    suppressed when the client opted out meanwhile;
 *  - the router's own crm.defer.* consumer brings a deferred request back
 *    when the window ends;
 *  - the cache follows crm.preferences (records and tombstones) ahead of the
 *    projection, which no one updates here. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crm/buf.h"
#include "crm/crypto.h"
#include "crm/json.h"
#include "crm/time.h"
#include "crm/uuid.h"
#include "th_kafka.h"
#include "th_pg.h"
#include "th_proc.h"

#define TENANT "acme"
#define GROUP "router-prefs-test"
#define DATA_KEY "router-test-data-key-0123456789abcdef"
#define TRACE "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
#define CONSENT ",\"whatsapp_consent\":{\"granted\":true,\"at\":\"2025-01-01T00:00:00Z\",\"source\":\"web_form\"}"

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
    char *env[16];
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
    env[n++] = "KAFKA_SESSION_TIMEOUT_MS=6000";
    env[n++] = "ROUTER_ENABLED_CHANNELS=email,sms,whatsapp";
    env[n++] = "CRM_DATA_KEY=" DATA_KEY;
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 15; i++)
        env[n++] = (char *)extra[i];
    env[n] = NULL;
    char *const argv[] = {bin, NULL};
    cr_assert_eq(th_proc_start(&fx->proc, "crm-router", argv, env), 0);
    cr_assert_eq(th_proc_wait_ready(&fx->proc, fx->port, 60000), 0, "router not ready; see %s", fx->proc.log_path);
    fx->running = 1;
}

static void fixture_fini(fixture_t *fx)
{
    if (fx->running) {
        int status = th_proc_stop(&fx->proc, SIGTERM, 30000);
        cr_expect_eq(status, 0, "router exit status %d after SIGTERM; see %s", status, fx->proc.log_path);
        fx->running = 0;
    }
    th_kafka_stop(fx->kafka);
}

static long long qint(const fixture_t *fx, const char *sql)
{
    char out[64];
    cr_assert_eq(th_pg_query_value(fx->url, sql, out, sizeof out), 0, "query failed: %s", sql);
    return out[0] == '\0' ? -1 : strtoll(out, NULL, 10);
}

static void exec_sql(const fixture_t *fx, const char *sql)
{
    cr_assert_eq(th_pg_query_value(fx->url, sql, NULL, 0), 0, "%s", sql);
}

static void wait_claim_ms(const fixture_t *fx, const char *request_id, const char *state, int timeout_ms)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM request_claims WHERE tenant_id = '" TENANT "' AND request_id = '%s' AND state = '%s'",
             request_id, state);
    for (int waited = 0; waited <= timeout_ms; waited += 50) {
        if (qint(fx, sql) >= 1)
            return;
        sleep_ms(50);
    }
    cr_assert_fail("claim %s never reached %s (router log: %s)", request_id, state, fx->proc.log_path);
}

static void wait_claim(const fixture_t *fx, const char *request_id, const char *state)
{
    wait_claim_ms(fx, request_id, state, 60000);
}

static long long metric(const fixture_t *fx, const char *series)
{
    char url[128];
    enum { BODY = 1 << 17 };
    char *body = malloc(BODY);
    long status = 0;
    cr_assert_not_null(body);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", fx->port);
    cr_assert_eq(th_http("GET", url, NULL, NULL, &status, body, BODY), 0);
    cr_assert_eq(status, 200);
    char needle[200];
    snprintf(needle, sizeof needle, "\n%s ", series);
    const char *p = strstr(body, needle);
    long long value = p != NULL ? (long long)strtod(p + strlen(needle), NULL) : 0;
    free(body);
    return value;
}

static void wait_metric(const fixture_t *fx, const char *series, long long want)
{
    for (int waited = 0; waited <= 30000; waited += 50) {
        if (metric(fx, series) >= want)
            return;
        sleep_ms(50);
    }
    cr_assert_fail("%s never reached %lld (router log: %s)", series, want, fx->proc.log_path);
}

static void comm_id(const char *request_id, char out[CMN_UUID_STR_LEN + 1])
{
    cr_assert_eq(cmn_uuid_communication_id(TENANT, request_id, out), 0);
}

/* A request of client_id with the given channels (JSON array) and
 * addresses. */
static void request_json(cmn_buf_t *b, const char *request_id, const char *client_id, const char *channels)
{
    cmn_buf_reset(b);
    cmn_buf_printf(b,
                   "{\"v\":1,\"request_id\":\"%s\",\"tenant_id\":\"" TENANT "\",\"client_id\":\"%s\","
                   "\"message_type\":\"appointment_reminder\",\"channels\":%s,"
                   "\"recipient\":{\"name\":\"Ana\",\"email\":\"Ana@Example.com\",\"phone\":\"+33612345678\","
                   "\"whatsapp\":\"+33687654321\",\"locale\":\"fr-FR\"}}",
                   request_id, client_id, channels);
}

static void produce_request(const fixture_t *fx, const char *request_id, const char *client_id,
                            const char *channels)
{
    cmn_buf_t b = CMN_BUF_INIT;
    request_json(&b, request_id, client_id, channels);
    cr_assert_eq(th_kafka_produce(fx->brokers, "crm.requests", client_id, b.data,
                                  (const char *const[]){"traceparent", TRACE, NULL}),
                 0);
    cmn_buf_free(&b);
}

/* Stores a snapshot in the projection, as the projector would. members
 * follows "client_id" and "updated_at". */
static void put_prefs_row(const fixture_t *fx, const char *client_id, const char *members)
{
    char sql[2048];
    snprintf(sql, sizeof sql,
             "INSERT INTO client_preferences (tenant_id, client_id, snapshot, updated_at) VALUES ('" TENANT
             "', '%s', '{\"v\":1,\"tenant_id\":\"" TENANT "\",\"client_id\":\"%s\","
             "\"updated_at\":\"2026-01-01T00:00:00Z\"%s}', '2026-01-01T00:00:00Z')",
             client_id, client_id, members);
    exec_sql(fx, sql);
}

/* Produces a snapshot to crm.preferences, updated now. */
static void produce_prefs(const fixture_t *fx, const char *client_id, const char *members)
{
    char json[2048], key[256], updated[40];
    cr_assert_eq(cmn_time_format_rfc3339(cmn_now_ms(), updated, sizeof updated), 0);
    snprintf(json, sizeof json,
             "{\"v\":1,\"tenant_id\":\"" TENANT "\",\"client_id\":\"%s\",\"updated_at\":\"%s\"%s}", client_id,
             updated, members);
    snprintf(key, sizeof key, TENANT ":%s", client_id);
    cr_assert_eq(th_kafka_produce(fx->brokers, "crm.preferences", key, json, NULL), 0);
}

static th_kafka_record_t *read_topic(const fixture_t *fx, const char *topic, size_t expect, int timeout_ms,
                                     size_t *n)
{
    th_kafka_record_t *r = th_kafka_read_all(fx->brokers, topic, expect, timeout_ms, n);
    cr_assert_not_null(r, "cannot read %s", topic);
    return r;
}

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

/* Waits until the router's group has committed every record of
 * crm.requests: each one was processed, and what its batch produced was
 * acknowledged before the commit. After this, reading an output topic to
 * its end sees everything the router will write for these records,
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

/* The reason of comm's status `status`, or "" when there is none. */
static void status_reason(const fixture_t *fx, const char *comm, const char *status, size_t expect, char *out,
                          size_t outlen)
{
    size_t ns = 0;
    char err[128];
    th_kafka_record_t *st = read_topic(fx, "crm.status", expect, 20000, &ns);
    long i = find_where(st, ns, "communication_id", comm, "status", status);
    out[0] = '\0';
    if (i >= 0) {
        json_object *o = cmn_json_parse(st[i].value, strlen(st[i].value), err, sizeof err);
        const char *r = o != NULL ? cmn_json_get_string(o, "reason") : NULL;
        snprintf(out, outlen, "%s", r != NULL ? r : "(none)");
        json_object_put(o);
    }
    th_kafka_records_free(st, ns);
}

/* The Dispatch of comm on topic, parsed, or NULL. */
static json_object *dispatch_of(const fixture_t *fx, const char *topic, const char *comm, size_t expect)
{
    size_t n = 0;
    char err[128];
    json_object *o = NULL;
    th_kafka_record_t *d = read_topic(fx, topic, expect, 20000, &n);
    long i = find_where(d, n, "communication_id", comm, NULL, NULL);
    if (i >= 0)
        o = cmn_json_parse(d[i].value, strlen(d[i].value), err, sizeof err);
    th_kafka_records_free(d, n);
    return o;
}

static const char *header(json_object *headers, const char *name)
{
    return cmn_json_get_string(headers, name);
}

/* Produces rec (a record read from a defer topic) to crm.requests with its
 * key, value and headers unchanged, as the defer consumer does. */
static void send_back(const fixture_t *fx, const th_kafka_record_t *rec)
{
    char err[128];
    json_object *h = cmn_json_parse(rec->headers_json, strlen(rec->headers_json), err, sizeof err);
    cr_assert_not_null(h, "%s", err);
    const char *list[16];
    size_t k = 0;
    json_object_object_foreach(h, name, val)
    {
        if (k + 2 < sizeof list / sizeof list[0]) {
            list[k++] = name;
            list[k++] = json_object_get_string(val);
        }
    }
    list[k] = NULL;
    cr_assert_eq(th_kafka_produce(fx->brokers, "crm.requests", rec->key, rec->value, list), 0);
    json_object_put(h);
}

/* A quiet-hours window in Asia/Tokyo (UTC+9, no DST) that started
 * start_ago_min minutes before now and ends end_in_min minutes after the
 * current minute began; *ends_at receives the instant it ends. */
static void tokyo_window(int start_ago_min, int end_in_min, char *members, size_t len, int64_t *ends_at)
{
    int64_t now = cmn_now_ms();
    int64_t minute_start = now - now % 60000;
    int local = (int)((minute_start / 60000 + 9 * 60) % 1440);
    int start = ((local - start_ago_min) % 1440 + 1440) % 1440;
    int end = (local + end_in_min) % 1440;
    snprintf(members, len,
             ",\"timezone\":\"Asia/Tokyo\",\"quiet_hours\":{\"start\":\"%02d:%02d\",\"end\":\"%02d:%02d\"}" CONSENT,
             start / 60, start % 60, end / 60, end % 60);
    *ends_at = minute_start + (int64_t)end_in_min * 60000;
}

/* ------------------------------------------------------------------ tests */

Test(router_prefs, opt_out_consent_and_contacts, .timeout = 180)
{
    fixture_t fx;
    fixture_init(&fx, "router_prefs_optout");
    put_prefs_row(&fx, "c-out", ",\"opt_out\":{\"email\":true,\"sms\":true}");
    put_prefs_row(&fx, "c-consent", CONSENT);
    start_router(&fx, NULL);

    produce_request(&fx, "out-1", "c-out", "[\"email\",\"sms\"]");
    produce_request(&fx, "noconsent-1", "c-none", "[\"whatsapp\",\"sms\",\"email\"]");
    produce_request(&fx, "consent-1", "c-consent", "[\"whatsapp\",\"sms\",\"email\"]");
    wait_claim(&fx, "out-1", "done");
    wait_claim(&fx, "noconsent-1", "done");
    wait_claim(&fx, "consent-1", "done");

    char out[CMN_UUID_STR_LEN + 1], none[CMN_UUID_STR_LEN + 1], consent[CMN_UUID_STR_LEN + 1], reason[64];
    comm_id("out-1", out);
    comm_id("noconsent-1", none);
    comm_id("consent-1", consent);
    status_reason(&fx, out, "suppressed", 6, reason, sizeof reason);
    cr_expect_str_eq(reason, "opted_out", "an opted-out client is suppressed as opted_out");

    json_object *d = dispatch_of(&fx, "crm.send.sms", none, 1);
    cr_assert_not_null(d, "without consent WhatsApp is skipped and SMS goes");
    json_object *fb = NULL;
    cr_assert(json_object_object_get_ex(d, "fallback", &fb));
    cr_expect_eq(json_object_array_length(fb), 1);
    cr_expect_str_eq(json_object_get_string(json_object_array_get_idx(fb, 0)), "email",
                     "WhatsApp is not in the fallback plan either");
    json_object_put(d);
    d = dispatch_of(&fx, "crm.send.whatsapp", consent, 1);
    cr_assert_not_null(d, "with consent WhatsApp goes first");
    json_object_put(d);

    settle(&fx);
    size_t n = 0;
    th_kafka_record_t *wa = read_to_end(&fx, "crm.send.whatsapp", &n);
    cr_expect_eq(n, 1, "nothing else on WhatsApp");
    th_kafka_records_free(wa, n);

    /* client_contacts: one row per (client, channel, address), keyed hashes
     * only, the same as the webhook receiver computes. */
    cr_expect_eq(qint(&fx, "SELECT count(*) FROM client_contacts WHERE tenant_id = '" TENANT "'"), 9);
    unsigned char h[CMN_ADDRESS_HASH_LEN];
    char hex[2 * CMN_ADDRESS_HASH_LEN + 1], sql[512];
    cr_assert_eq(cmn_crypto_address_hash(DATA_KEY, "+33612345678", h), 0);
    cmn_crypto_hex(h, hex);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM client_contacts WHERE channel = 'sms' AND client_id = 'c-out'"
             " AND encode(address_hash, 'hex') = '%s'",
             hex);
    cr_expect_eq(qint(&fx, sql), 1, "the opted-out client's number is indexed (for a later START)");
    cr_assert_eq(cmn_crypto_address_hash(DATA_KEY, "ana@example.com", h), 0);
    cmn_crypto_hex(h, hex);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM client_contacts WHERE channel = 'email' AND encode(address_hash, 'hex') = '%s'",
             hex);
    cr_expect_eq(qint(&fx, sql), 3, "emails are hashed lower-cased");
    cr_expect_eq(metric(&fx, "router_prefs_lookups_total{result=\"miss\"}"), 3);
    fixture_fini(&fx);
}

Test(router_prefs, quiet_hours_defer_and_the_return_is_routed_once, .timeout = 240)
{
    fixture_t fx;
    char members[512];
    int64_t ends_at = 0;
    fixture_init(&fx, "router_prefs_quiet");
    tokyo_window(60, 120, members, sizeof members, &ends_at);
    put_prefs_row(&fx, "c-night", members);
    put_prefs_row(&fx, "c-night2", members);
    start_router(&fx, NULL);

    produce_request(&fx, "night-1", "c-night", "[\"sms\",\"email\"]");
    produce_request(&fx, "night-2", "c-night2", "[\"sms\",\"email\"]");
    wait_claim(&fx, "night-1", "deferred");
    wait_claim(&fx, "night-2", "deferred");
    cr_expect_eq(qint(&fx, "SELECT deferral_seq FROM request_claims WHERE request_id = 'night-1'"), 1);
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT (extract(epoch FROM deferred_until) * 1000)::bigint - %" PRId64
             " FROM request_claims WHERE request_id = 'night-1'",
             ends_at);
    cr_expect_eq(qint(&fx, sql), 0, "deferred until the window's end");

    char c1[CMN_UUID_STR_LEN + 1], c2[CMN_UUID_STR_LEN + 1], reason[64];
    comm_id("night-1", c1);
    comm_id("night-2", c2);
    status_reason(&fx, c1, "deferred", 4, reason, sizeof reason);
    cr_expect_str_eq(reason, "quiet_hours");

    /* The deferred records: the requests unchanged, with the plan in headers. */
    size_t nd = 0;
    th_kafka_record_t *def = read_topic(&fx, "crm.defer.1h", 2, 20000, &nd);
    cr_assert_eq(nd, 2, "both requests wait in crm.defer.1h (a two-hour wait)");
    long i1 = find_where(def, nd, "request_id", "night-1", NULL, NULL);
    long i2 = find_where(def, nd, "request_id", "night-2", NULL, NULL);
    cr_assert(i1 >= 0 && i2 >= 0);
    cmn_buf_t orig = CMN_BUF_INIT;
    request_json(&orig, "night-1", "c-night", "[\"sms\",\"email\"]");
    cr_expect_str_eq(def[i1].value, orig.data, "the value is the original record");
    cr_expect_str_eq(def[i1].key, "c-night");
    char err[128], due[32];
    json_object *h = cmn_json_parse(def[i1].headers_json, strlen(def[i1].headers_json), err, sizeof err);
    cr_assert_not_null(h);
    snprintf(due, sizeof due, "%" PRId64, ends_at);
    cr_expect_str_eq(header(h, "x-crm-due-at"), due);
    cr_expect_str_eq(header(h, "x-crm-target"), "crm.requests");
    cr_expect_str_eq(header(h, "x-crm-deferral"), "1");
    cr_expect_str_eq(header(h, "traceparent"), TRACE, "the trace continues");
    json_object_put(h);

    /* The deferred status says until when, why and where it waits. */
    size_t ns = 0;
    th_kafka_record_t *st = read_topic(&fx, "crm.status", 4, 20000, &ns);
    long di = find_where(st, ns, "communication_id", c1, "status", "deferred");
    cr_assert_geq(di, 0);
    json_object *ev = cmn_json_parse(st[di].value, strlen(st[di].value), err, sizeof err);
    json_object *details = NULL;
    cr_assert(json_object_object_get_ex(ev, "details", &details), "%s", st[di].value);
    char until[40];
    cmn_time_format_rfc3339(ends_at, until, sizeof until);
    cr_expect_str_eq(cmn_json_get_string(details, "until"), until);
    cr_expect_str_eq(cmn_json_get_string(details, "reason"), "quiet_hours");
    cr_expect_str_eq(cmn_json_get_string(details, "tier"), "1h");
    json_object_put(ev);
    th_kafka_records_free(st, ns);

    /* A duplicate of the original request is still a duplicate. */
    produce_request(&fx, "night-1", "c-night", "[\"sms\",\"email\"]");
    wait_metric(&fx, "router_requests_total{outcome=\"duplicate\"}", 1);

    /* The client turns quiet hours off (through crm.preferences only: the
     * projection keeps the old row), the other one opts out of everything. */
    produce_prefs(&fx, "c-night", CONSENT);
    produce_prefs(&fx, "c-night2", ",\"opt_out\":{\"email\":true,\"sms\":true,\"whatsapp\":true}");
    wait_metric(&fx, "router_prefs_feed_records_total{kind=\"snapshot\"}", 2);

    /* Both come back, as the defer consumer would hand them back. */
    send_back(&fx, &def[i1]);
    send_back(&fx, &def[i2]);
    wait_claim(&fx, "night-1", "done");
    wait_claim(&fx, "night-2", "done");
    json_object *d = dispatch_of(&fx, "crm.send.sms", c1, 1);
    cr_assert_not_null(d, "the returning request is routed with the new preferences");
    json_object_put(d);
    status_reason(&fx, c2, "suppressed", 6, reason, sizeof reason);
    cr_expect_str_eq(reason, "opted_out", "re-checked on return: the client opted out meanwhile");
    cr_expect_eq(qint(&fx, "SELECT deferral_seq FROM request_claims WHERE request_id = 'night-1'"), 1);

    /* A second copy of the deferred record, and the original again: both
     * skipped. A sentinel behind them on the same partition proves they were
     * read. */
    send_back(&fx, &def[i1]);
    produce_request(&fx, "night-1", "c-night", "[\"sms\",\"email\"]");
    produce_request(&fx, "sentinel", "c-night", "[\"email\"]");
    wait_claim(&fx, "sentinel", "done");
    wait_metric(&fx, "router_requests_total{outcome=\"duplicate\"}", 3);
    settle(&fx);

    size_t n = 0;
    th_kafka_record_t *sms = read_to_end(&fx, "crm.send.sms", &n);
    cr_expect_eq(count_where(sms, n, "communication_id", c1, NULL, NULL), 1, "routed exactly once");
    cr_expect_eq(count_where(sms, n, "communication_id", c2, NULL, NULL), 0);
    th_kafka_records_free(sms, n);
    st = read_to_end(&fx, "crm.status", &ns);
    cr_expect_eq(count_where(st, ns, "communication_id", c1, "status", "accepted"), 1,
                 "accepted once: a returning request is not accepted again");
    cr_expect_eq(count_where(st, ns, "communication_id", c1, "status", "routed"), 1);
    th_kafka_records_free(st, ns);
    cr_expect_eq(metric(&fx, "router_requests_total{outcome=\"deferred\"}"), 2);

    cmn_buf_free(&orig);
    th_kafka_records_free(def, nd);
    fixture_fini(&fx);
}

Test(router_prefs, the_defer_consumer_brings_the_request_back, .timeout = 300)
{
    fixture_t fx;
    char members[512];
    int64_t ends_at = 0;
    fixture_init(&fx, "router_prefs_delayq");
    /* The router first: its two groups join together (the mock's 3 s), and
     * once its crm.defer.* consumer has its 36 partitions, a request
     * produced now is read at once. The window then only needs to leave
     * room for the deferral itself, instead of the start and the joins too:
     * the wait for it to end is shorter by that much. */
    start_router(&fx, NULL);
    wait_metric(&fx, "delay_assigned_partitions{family=\"crm.defer\"}", 36);
    /* Quiet until the start of the next minute (or the one after, when the
     * next one is less than 8 s away, so the window cannot end before the
     * request is even read). */
    int64_t now = cmn_now_ms();
    tokyo_window(30, now % 60000 > 52000 ? 2 : 1, members, sizeof members, &ends_at);
    put_prefs_row(&fx, "c-soon", members);

    produce_request(&fx, "soon-1", "c-soon", "[\"sms\",\"email\"]");
    wait_claim(&fx, "soon-1", "deferred");
    cr_expect_lt(cmn_now_ms(), ends_at, "deferred while the window lasts");

    /* No one but the router's own crm.defer.* consumer moves it now. */
    wait_claim_ms(&fx, "soon-1", "done", 200000);
    cr_expect_geq(cmn_now_ms(), ends_at, "routed only once the window ended");
    char c[CMN_UUID_STR_LEN + 1];
    comm_id("soon-1", c);
    json_object *d = dispatch_of(&fx, "crm.send.sms", c, 1);
    cr_assert_not_null(d, "routed on SMS after quiet hours");
    json_object_put(d);
    size_t n = 0;
    th_kafka_record_t *req = read_topic(&fx, "crm.requests", 2, 10000, &n);
    cr_expect_eq(n, 2, "the request and its return");
    cr_expect_eq(count_where(req, n, "request_id", "soon-1", NULL, NULL), 2);
    th_kafka_records_free(req, n);
    fixture_fini(&fx);
}

Test(router_prefs, the_cache_follows_crm_preferences, .timeout = 180)
{
    fixture_t fx;
    fixture_init(&fx, "router_prefs_feed");
    put_prefs_row(&fx, "c-feed", CONSENT);
    start_router(&fx, NULL);

    produce_request(&fx, "feed-1", "c-feed", "[\"sms\",\"email\"]");
    wait_claim(&fx, "feed-1", "done");

    /* Opt out of SMS through crm.preferences: the projection is not updated
     * in this test, so only the feed can tell the router. */
    produce_prefs(&fx, "c-feed", ",\"opt_out\":{\"sms\":true}" CONSENT);
    wait_metric(&fx, "router_prefs_feed_records_total{kind=\"snapshot\"}", 1);
    produce_request(&fx, "feed-2", "c-feed", "[\"sms\",\"email\"]");
    wait_claim(&fx, "feed-2", "done");

    /* A tombstone erases the client: no preferences at all, so SMS again. */
    cr_assert_eq(th_kafka_produce(fx.brokers, "crm.preferences", TENANT ":c-feed", NULL, NULL), 0);
    wait_metric(&fx, "router_prefs_feed_records_total{kind=\"tombstone\"}", 1);
    produce_request(&fx, "feed-3", "c-feed", "[\"sms\",\"email\"]");
    wait_claim(&fx, "feed-3", "done");

    char c1[CMN_UUID_STR_LEN + 1], c2[CMN_UUID_STR_LEN + 1], c3[CMN_UUID_STR_LEN + 1];
    comm_id("feed-1", c1);
    comm_id("feed-2", c2);
    comm_id("feed-3", c3);
    json_object *d = dispatch_of(&fx, "crm.send.sms", c1, 2);
    cr_expect_not_null(d, "before the change: SMS");
    json_object_put(d);
    d = dispatch_of(&fx, "crm.send.email", c2, 1);
    cr_expect_not_null(d, "after the opt-out: email");
    json_object_put(d);
    d = dispatch_of(&fx, "crm.send.sms", c3, 2);
    cr_expect_not_null(d, "after the tombstone: SMS again");
    json_object_put(d);
    cr_expect_eq(qint(&fx, "SELECT count(*) FROM client_preferences WHERE client_id = 'c-feed'"
                           " AND snapshot->'opt_out' IS NULL"),
                 1, "the projection still has the old row");
    cr_expect_eq(metric(&fx, "router_prefs_lookups_total{result=\"miss\"}"), 1,
                 "one database read; the rest came from the cache");
    fixture_fini(&fx);
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

static void wait_count(const fixture_t *fx, const char *sql, long long want, int timeout_ms)
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

/* Claims left by an "earlier run", made deterministic: a claim deferred
 * twice meets a copy from its first deferral (a duplicate) and its current
 * one (routed); a claim taken back by a returning copy that then died is
 * resumed by that copy without a second `accepted`. */
Test(router_prefs, stale_deferral_copies_are_duplicates_and_returns_resume, .timeout = 180)
{
    fixture_t fx;
    fixture_init(&fx, "router_prefs_stale");
    char c1[CMN_UUID_STR_LEN + 1], c2[CMN_UUID_STR_LEN + 1];
    comm_id("twice", c1);
    comm_id("taken", c2);

    cmn_buf_t b = CMN_BUF_INIT;
    request_json(&b, "twice", "c-s", "[\"sms\",\"email\"]");
    cr_assert_eq(th_kafka_produce(fx.brokers, "crm.requests", "c-s", b.data,
                                  (const char *const[]){"x-crm-deferral", "1", NULL}),
                 0);
    cr_assert_eq(th_kafka_produce(fx.brokers, "crm.requests", "c-s", b.data,
                                  (const char *const[]){"x-crm-deferral", "2", NULL}),
                 0);
    request_json(&b, "taken", "c-s", "[\"sms\",\"email\"]");
    cr_assert_eq(th_kafka_produce(fx.brokers, "crm.requests", "c-s", b.data,
                                  (const char *const[]){"x-crm-deferral", "1", NULL}),
                 0);
    size_t nr = 0;
    th_kafka_record_t *reqs = read_topic(&fx, "crm.requests", 3, 20000, &nr);
    cr_assert_eq(nr, 3);

    char sql[1024];
    snprintf(sql, sizeof sql,
             "INSERT INTO request_claims (tenant_id, request_id, communication_id, state, deferral_seq,"
             " deferred_until, source_topic, source_partition, source_offset) VALUES"
             " ('" TENANT "', 'twice', '%s', 'deferred', 2, now(), 'crm.requests', %d, 999999),"
             " ('" TENANT "', 'taken', '%s', 'claimed', 1, NULL, 'crm.requests', %d, %lld)",
             c1, (int)reqs[0].partition, c2, (int)reqs[2].partition, (long long)reqs[2].offset);
    exec_sql(&fx, sql);
    start_router(&fx, NULL);
    wait_claim(&fx, "twice", "done");
    wait_claim(&fx, "taken", "done");
    settle(&fx);

    size_t n = 0;
    th_kafka_record_t *sms = read_to_end(&fx, "crm.send.sms", &n);
    cr_expect_eq(count_where(sms, n, "communication_id", c1, NULL, NULL), 1, "the current deferral is routed once");
    cr_expect_eq(count_where(sms, n, "communication_id", c2, NULL, NULL), 1, "the resumed return is routed");
    cr_expect_eq(n, 2);
    size_t ns = 0;
    th_kafka_record_t *st = read_to_end(&fx, "crm.status", &ns);
    cr_expect_eq(count_where(st, ns, "status", "accepted", NULL, NULL), 0, "returning requests are not accepted again");
    cr_expect_eq(ns, 2, "routed twice, nothing else");
    cr_expect_eq(metric(&fx, "router_requests_total{outcome=\"duplicate\"}"), 1, "the copy of deferral 1");
    th_kafka_records_free(sms, n);
    th_kafka_records_free(st, ns);
    th_kafka_records_free(reqs, nr);
    cmn_buf_free(&b);
    fixture_fini(&fx);
}

#define KSTREAM 150
#define KCLIENTS 10

/* kill -9 while deferring a stream of requests, and again while their
 * deferred records come back (every copy the defer topic holds, duplicates
 * included): each request is deferred, then routed, exactly once. */
Test(router_prefs, kill_9_while_deferring_and_returning, .timeout = 600)
{
    fixture_t fx;
    char members[512], client[32], rid[32], sql[1024];
    int64_t ends_at = 0;
    fixture_init(&fx, "router_prefs_kill");
    tokyo_window(60, 120, members, sizeof members, &ends_at);
    for (int c = 0; c < KCLIENTS; c++) {
        snprintf(client, sizeof client, "c-k%d", c);
        put_prefs_row(&fx, client, members);
    }
    for (int i = 0; i < KSTREAM; i++) {
        snprintf(rid, sizeof rid, "kd-%03d", i);
        snprintf(client, sizeof client, "c-k%d", i % KCLIENTS);
        produce_request(&fx, rid, client, "[\"sms\",\"email\"]");
    }
    /* Small batches so every kill lands inside a stream of batches. */
    static const char *const env[] = {"ROUTER_BATCH_SIZE=10", NULL};
    const char *deferred = "SELECT count(*) FROM request_claims WHERE state = 'deferred'";
    const char *done = "SELECT count(*) FROM request_claims WHERE state = 'done'";

    start_router(&fx, env);
    wait_count(&fx, deferred, 50, 120000);
    stop_router(&fx, SIGKILL);
    start_router(&fx, env);
    wait_count(&fx, deferred, KSTREAM, 180000);
    stop_router(&fx, SIGTERM);

    /* The router has exited after its produces were acknowledged: the log
     * holds every copy it will ever write. */
    size_t nd = 0;
    th_kafka_record_t *def = read_to_end(&fx, "crm.defer.1h", &nd);
    cr_assert_geq(nd, KSTREAM, "every request waits in crm.defer.1h");
    fprintf(stderr, "%zu deferred records for %d requests\n", nd, KSTREAM);

    /* Quiet hours end for everyone (the projector's job; done by hand). */
    snprintf(sql, sizeof sql,
             "UPDATE client_preferences SET updated_at = '2026-02-01T00:00:00Z', snapshot ="
             " jsonb_set(snapshot - 'quiet_hours', '{updated_at}', '\"2026-02-01T00:00:00Z\"')");
    exec_sql(&fx, sql);

    start_router(&fx, env);
    for (size_t i = 0; i < nd; i++)
        send_back(&fx, &def[i]);
    wait_count(&fx, done, 40, 120000);
    stop_router(&fx, SIGKILL);
    start_router(&fx, env);
    wait_count(&fx, done, KSTREAM, 180000);
    settle(&fx);

    size_t n = 0;
    th_kafka_record_t *sms = read_to_end(&fx, "crm.send.sms", &n);
    cr_expect_eq(n, KSTREAM, "%zu Dispatches for %d requests", n, KSTREAM);
    for (int i = 0; i < KSTREAM; i++) {
        char id[CMN_UUID_STR_LEN + 1];
        snprintf(rid, sizeof rid, "kd-%03d", i);
        comm_id(rid, id);
        size_t c = count_where(sms, n, "communication_id", id, NULL, NULL);
        cr_expect_eq(c, 1, "%s dispatched %zu times", rid, c);
    }
    cr_expect_eq(qint(&fx, "SELECT count(*) FROM request_claims WHERE deferral_seq = 1"), KSTREAM);
    th_kafka_records_free(sms, n);
    th_kafka_records_free(def, nd);
    fixture_fini(&fx);
}
