/* test_ingest_prefs.c - the preferences API end to end: the real crm-ingest
 * and crm-projector binaries against the Kafka mock cluster and a private
 * PostgreSQL.
 *
 * PUT -> the canonical snapshot on crm.preferences under "<tenant>:<client>"
 * -> the projected client_preferences row -> GET gives the same bytes back;
 * bad PUTs are refused naming every field and produce nothing; an older
 * snapshot never overwrites a newer one; DELETE's tombstone erases the row;
 * a bad crm.preferences record goes to crm.dlq. */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "th_kafka.h"
#include "th_pg.h"
#include "th_proc.h"

#define PREFS_PATH "/v1/clients/c-42/preferences?tenant_id=acme"
#define SQL_PREFS_OFFSETS                                                                                       \
    "SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets WHERE topic = 'crm.preferences'"

typedef struct fixture {
    th_kafka_t *kafka;
    const char *brokers;
    char url[256];
    th_proc_t ingest, projector;
    int ingest_port, projector_port;
    long produced; /* records on crm.preferences */
} fixture_t;

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void start(fixture_t *fx, const char *db)
{
    char bin[512], brokers[600], dburl[300], iport[32], pport[32];
    memset(fx, 0, sizeof *fx);
    fx->kafka = th_kafka_start(1);
    cr_assert_not_null(fx->kafka, "mock cluster did not start");
    fx->brokers = th_kafka_bootstraps(fx->kafka);
    cr_assert_eq(th_pg_database(db, fx->url, sizeof fx->url), 0, "database %s", db);
    snprintf(brokers, sizeof brokers, "KAFKA_BROKERS=%s", fx->brokers);
    snprintf(dburl, sizeof dburl, "DATABASE_URL=%s", fx->url);

    cr_assert_not_null(th_bin("crm-projector", bin, sizeof bin), "crm-projector is not built");
    fx->projector_port = th_free_port();
    snprintf(pport, sizeof pport, "HTTP_PORT=%d", fx->projector_port);
    char *const pargv[] = {bin, NULL};
    char *const penv[] = {brokers, dburl, pport, "HTTP_BIND=127.0.0.1", "LOG_LEVEL=debug",
                          "PROJECTOR_GROUP_ID=prefs-test", "KAFKA_SESSION_TIMEOUT_MS=6000", NULL};
    cr_assert_eq(th_proc_start(&fx->projector, "crm-projector", pargv, penv), 0);
    cr_assert_eq(th_proc_wait_ready(&fx->projector, fx->projector_port, 30000), 0, "projector not ready; see %s",
                 fx->projector.log_path);

    cr_assert_not_null(th_bin("crm-ingest", bin, sizeof bin), "crm-ingest is not built");
    fx->ingest_port = th_free_port();
    snprintf(iport, sizeof iport, "HTTP_PORT=%d", fx->ingest_port);
    char *const iargv[] = {bin, NULL};
    char *const ienv[] = {brokers, dburl, iport, "HTTP_BIND=127.0.0.1", "LOG_LEVEL=debug", "HTTP_THREADS=4", NULL};
    cr_assert_eq(th_proc_start(&fx->ingest, "crm-ingest", iargv, ienv), 0);
    cr_assert_eq(th_proc_wait_ready(&fx->ingest, fx->ingest_port, 15000), 0, "ingest not ready; see %s",
                 fx->ingest.log_path);
}

static void stop(fixture_t *fx)
{
    cr_expect_eq(th_proc_stop(&fx->ingest, SIGTERM, 20000), 0, "ingest exit; see %s", fx->ingest.log_path);
    cr_expect_eq(th_proc_stop(&fx->projector, SIGTERM, 20000), 0, "projector exit; see %s",
                 fx->projector.log_path);
    th_kafka_stop(fx->kafka);
}

/* ------------------------------------------------------------ HTTP client */

typedef struct http_result {
    long status;
    char body[16384];
    size_t body_len;
    char headers[4096];
    size_t headers_len;
} http_result_t;

static size_t append(char *buf, size_t cap, size_t *len, const char *ptr, size_t n)
{
    size_t take = n < cap - 1 - *len ? n : cap - 1 - *len;
    memcpy(buf + *len, ptr, take);
    *len += take;
    buf[*len] = '\0';
    return n;
}

static size_t body_cb(char *ptr, size_t size, size_t nmemb, void *ud)
{
    http_result_t *r = ud;
    return append(r->body, sizeof r->body, &r->body_len, ptr, size * nmemb);
}

static size_t header_cb(char *ptr, size_t size, size_t nmemb, void *ud)
{
    http_result_t *r = ud;
    return append(r->headers, sizeof r->headers, &r->headers_len, ptr, size * nmemb);
}

static void http(const fixture_t *fx, const char *method, const char *path, const char *body,
                 const char *content_type, http_result_t *r)
{
    char url[512], ct[128];
    struct curl_slist *hdrs = NULL;
    CURL *c = curl_easy_init();
    cr_assert_not_null(c);
    memset(r, 0, sizeof *r);
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", fx->ingest_port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    snprintf(ct, sizeof ct, "Content-Type: %s", content_type != NULL ? content_type : "");
    hdrs = curl_slist_append(hdrs, ct);
    hdrs = curl_slist_append(hdrs, "Expect:");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    CURLcode cc = curl_easy_perform(c);
    cr_assert_eq(cc, CURLE_OK, "%s %s: %s", method, url, curl_easy_strerror(cc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
}

static void put(fixture_t *fx, const char *path, const char *body, http_result_t *r)
{
    http(fx, "PUT", path, body, "application/json", r);
    if (r->status == 200)
        fx->produced++;
}

/* 1 when a response header line starts with line (case-insensitive). */
static int has_header(const http_result_t *r, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = r->headers; *p != '\0'; p++) {
        if ((p == r->headers || p[-1] == '\n') && strncasecmp(p, line, n) == 0)
            return 1;
    }
    return 0;
}

static int has_error_field(const char *problem, const char *field)
{
    json_object *o = json_tokener_parse(problem);
    json_object *errs = o != NULL ? json_object_object_get(o, "errors") : NULL;
    int found = 0;
    for (size_t i = 0; errs != NULL && i < json_object_array_length(errs); i++) {
        json_object *f = json_object_object_get(json_object_array_get_idx(errs, i), "field");
        if (f != NULL && strcmp(json_object_get_string(f), field) == 0)
            found = 1;
    }
    json_object_put(o);
    return found;
}

static const char *jstr(json_object *o, const char *key)
{
    json_object *v = NULL;
    return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : "";
}

/* ---------------------------------------------------------------- SQL */

static long long qint(const fixture_t *fx, const char *sql)
{
    char out[64];
    cr_assert_eq(th_pg_query_value(fx->url, sql, out, sizeof out), 0, "query failed: %s", sql);
    return out[0] == '\0' ? -1 : strtoll(out, NULL, 10);
}

static void wait_for(const fixture_t *fx, const char *sql, long long want, int timeout_ms)
{
    long long got = -1;
    for (int waited = 0; waited <= timeout_ms; waited += 50) {
        got = qint(fx, sql);
        if (got == want)
            return;
        sleep_ms(50);
    }
    cr_assert_fail("%s: want %lld, got %lld (projector log: %s)", sql, want, got, fx->projector.log_path);
}

/* Waits until the projector has committed every record produced so far. */
static void wait_projected(const fixture_t *fx)
{
    wait_for(fx, SQL_PREFS_OFFSETS, fx->produced, 60000);
}

/* ---------------------------------------------------------------- tests */

Test(ingest_prefs, put_is_on_the_topic_projected_and_read_back, .timeout = 240)
{
    fixture_t fx;
    http_result_t r;
    start(&fx, "ingest_prefs_roundtrip");

    http(&fx, "GET", PREFS_PATH, NULL, NULL, &r);
    cr_expect_eq(r.status, 404, "%s", r.body);
    cr_expect(has_header(&r, "Content-Type: application/problem+json"), "%s", r.headers);

    put(&fx, PREFS_PATH,
        "{\"preferred_channels\":[\"whatsapp\",\"email\"],\"timezone\":\"Europe/Paris\","
        "\"quiet_hours\":{\"start\":\"21:00\",\"end\":\"08:00\"},\"opt_out\":{\"sms\":true},"
        "\"whatsapp_consent\":{\"granted\":true,\"at\":\"2026-03-01T10:00:00Z\",\"source\":\"web_form\"},"
        "\"locale\":\"fr-fr\"}",
        &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    char stored[sizeof r.body];
    snprintf(stored, sizeof stored, "%s", r.body);
    json_object *snap = json_tokener_parse(stored);
    cr_assert_not_null(snap);
    cr_expect_str_eq(jstr(snap, "tenant_id"), "acme");
    cr_expect_str_eq(jstr(snap, "client_id"), "c-42");
    cr_expect_str_eq(jstr(snap, "locale"), "fr-FR");
    cr_expect_eq(strlen(jstr(snap, "updated_at")), 24, "updated_at with milliseconds: %s", stored);
    json_object_put(snap);

    /* 200 means acknowledged: the canonical snapshot is already on the topic. */
    size_t n = 0;
    th_kafka_record_t *recs = th_kafka_read_all(fx.brokers, "crm.preferences", 1, 10000, &n);
    cr_assert_eq(n, 1);
    cr_expect_str_eq(recs[0].key, "acme:c-42");
    cr_expect_str_eq(recs[0].value, stored);
    cr_expect_not_null(strstr(recs[0].headers_json, "traceparent"), "%s", recs[0].headers_json);
    th_kafka_records_free(recs, n);

    wait_for(&fx, "SELECT count(*) FROM client_preferences WHERE tenant_id = 'acme' AND client_id = 'c-42'", 1,
             60000);
    cr_expect_eq(qint(&fx, "SELECT count(*) FROM client_preferences WHERE snapshot->'opt_out'->>'sms' = 'true'"
                           " AND kafka_offset IS NOT NULL AND kafka_partition IS NOT NULL"),
                 1);
    http(&fx, "GET", PREFS_PATH, NULL, NULL, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_expect_str_eq(r.body, stored, "GET gives back the bytes PUT answered");

    /* Another tenant is another client. */
    http(&fx, "GET", "/v1/clients/c-42/preferences", NULL, NULL, &r);
    cr_expect_eq(r.status, 404, "%s", r.body);

    /* Two PUTs in a row: updated_at strictly increases and the second wins. */
    char first_at[64], second_at[64];
    put(&fx, PREFS_PATH, "{\"locale\":\"de\"}", &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    snap = json_tokener_parse(r.body);
    snprintf(first_at, sizeof first_at, "%s", jstr(snap, "updated_at"));
    json_object_put(snap);
    put(&fx, PREFS_PATH, "{\"locale\":\"it\"}", &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    snprintf(stored, sizeof stored, "%s", r.body);
    snap = json_tokener_parse(r.body);
    snprintf(second_at, sizeof second_at, "%s", jstr(snap, "updated_at"));
    json_object_put(snap);
    cr_expect_gt(strcmp(second_at, first_at), 0, "%s then %s", first_at, second_at);
    wait_projected(&fx);
    http(&fx, "GET", PREFS_PATH, NULL, NULL, &r);
    cr_assert_eq(r.status, 200);
    cr_expect_str_eq(r.body, stored);
    stop(&fx);
}

Test(ingest_prefs, bad_puts_name_every_field_and_produce_nothing, .timeout = 240)
{
    fixture_t fx;
    http_result_t r;
    start(&fx, "ingest_prefs_bad");

    put(&fx, PREFS_PATH,
        "{\"client_id\":\"someone-else\",\"preferred_channels\":[\"fax\"],"
        "\"quiet_hours\":{\"start\":\"25:00\",\"end\":\"08:00\"},\"whatsapp_consent\":{\"granted\":true},"
        "\"colour\":\"blue\"}",
        &r);
    cr_assert_eq(r.status, 400, "%s", r.body);
    cr_expect(has_header(&r, "Content-Type: application/problem+json"), "%s", r.headers);
    const char *fields[] = {"client_id", "preferred_channels[0]", "quiet_hours.start", "timezone",
                            "whatsapp_consent.at", "whatsapp_consent.source", "colour"};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        cr_expect(has_error_field(r.body, fields[i]), "%s not named: %s", fields[i], r.body);

    http(&fx, "PUT", "/v1/clients/has%20space/preferences", "{}", "application/json", &r);
    cr_expect_eq(r.status, 400, "%s", r.body);
    cr_expect(has_error_field(r.body, "client_id"), "%s", r.body);
    http(&fx, "GET", "/v1/clients/c-1/preferences?tenant_id=a:b", NULL, NULL, &r);
    cr_expect_eq(r.status, 400, "%s", r.body);
    cr_expect(has_error_field(r.body, "tenant_id"), "%s", r.body);
    http(&fx, "PUT", PREFS_PATH, "{\"opt_out\":", "application/json", &r);
    cr_expect_eq(r.status, 400, "%s", r.body);
    http(&fx, "PUT", PREFS_PATH, "{}", "text/plain", &r);
    cr_expect_eq(r.status, 415, "%s", r.body);
    http(&fx, "POST", PREFS_PATH, "{}", "application/json", &r);
    cr_expect_eq(r.status, 405, "%s", r.body);
    cr_expect(has_header(&r, "Allow: GET, PUT, DELETE"), "%s", r.headers);

    /* Then one valid PUT, answered once Kafka acknowledged it: it is the
     * only record on the whole topic, so none of the refused ones was
     * produced. */
    put(&fx, PREFS_PATH, "{}", &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    size_t n = 0;
    th_kafka_record_t *recs = th_kafka_read_to_end(fx.brokers, "crm.preferences", 15000, &n);
    cr_assert_not_null(recs);
    cr_expect_eq(n, 1, "%zu records on crm.preferences", n);
    th_kafka_records_free(recs, n);
    stop(&fx);
}

/* A snapshot produced straight to the topic, as another producer (the
 * webhook receiver) would. */
static void produce_snapshot(fixture_t *fx, const char *key, const char *locale, const char *updated_at)
{
    char value[512];
    snprintf(value, sizeof value,
             "{\"v\":1,\"tenant_id\":\"acme\",\"client_id\":\"c-42\",\"locale\":\"%s\",\"updated_at\":\"%s\"}", locale,
             updated_at);
    cr_assert_eq(th_kafka_produce(fx->brokers, "crm.preferences", key, value, NULL), 0);
    fx->produced++;
}

Test(ingest_prefs, older_snapshots_lose_and_tombstones_erase, .timeout = 240)
{
    fixture_t fx;
    http_result_t r;
    start(&fx, "ingest_prefs_order");
#define SQL_LOCALE "SELECT coalesce((SELECT snapshot->>'locale' FROM client_preferences), 'none')"
    char val[64];

    put(&fx, PREFS_PATH, "{\"locale\":\"fr\"}", &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    wait_projected(&fx);

    /* Older than the PUT (which is stamped now): ignored, even though it is
     * the later record. */
    produce_snapshot(&fx, "acme:c-42", "de", "2020-01-01T00:00:00Z");
    wait_projected(&fx);
    cr_assert_eq(th_pg_query_value(fx.url, SQL_LOCALE, val, sizeof val), 0);
    cr_expect_str_eq(val, "fr", "an older snapshot overwrote a newer one");

    /* Newer: applied. The same updated_at again at a later offset: applied
     * too (the later write of the partition wins a tie). */
    produce_snapshot(&fx, "acme:c-42", "it", "2099-01-01T00:00:00Z");
    produce_snapshot(&fx, "acme:c-42", "es", "2099-01-01T00:00:00Z");
    wait_projected(&fx);
    cr_assert_eq(th_pg_query_value(fx.url, SQL_LOCALE, val, sizeof val), 0);
    cr_expect_str_eq(val, "es");

    /* DELETE: a tombstone under the key, and the row is gone. */
    http(&fx, "DELETE", PREFS_PATH, NULL, NULL, &r);
    cr_assert_eq(r.status, 204, "%s", r.body);
    fx.produced++;
    size_t n = 0;
    th_kafka_record_t *recs = th_kafka_read_all(fx.brokers, "crm.preferences", (size_t)fx.produced, 10000, &n);
    cr_assert_eq(n, (size_t)fx.produced);
    cr_expect_str_eq(recs[n - 1].key, "acme:c-42");
    cr_expect_null(recs[n - 1].value, "a DELETE produces a tombstone");
    th_kafka_records_free(recs, n);
    wait_projected(&fx);
    cr_expect_eq(qint(&fx, "SELECT count(*) FROM client_preferences"), 0);
    http(&fx, "GET", PREFS_PATH, NULL, NULL, &r);
    cr_expect_eq(r.status, 404, "%s", r.body);

    /* After an erase, any snapshot starts the client again. */
    produce_snapshot(&fx, "acme:c-42", "pt", "2021-01-01T00:00:00Z");
    wait_projected(&fx);
    cr_assert_eq(th_pg_query_value(fx.url, SQL_LOCALE, val, sizeof val), 0);
    cr_expect_str_eq(val, "pt");

    /* Bad records go to crm.dlq with the reason, and nothing changes. */
    cr_assert_eq(th_kafka_produce(fx.brokers, "crm.preferences", "acme:c-42", "{not json", NULL), 0);
    fx.produced++;
    produce_snapshot(&fx, "acme:someone-else", "nl", "2100-01-01T00:00:00Z");
    cr_assert_eq(th_kafka_produce(fx.brokers, "crm.preferences", "no-colon", NULL, NULL), 0);
    fx.produced++;
    wait_projected(&fx);
    recs = th_kafka_read_all(fx.brokers, "crm.dlq", 3, 20000, &n);
    cr_assert_eq(n, 3, "%zu DLQ records", n);
    int json = 0, mismatch = 0, key = 0;
    for (size_t i = 0; i < n; i++) {
        cr_expect_not_null(strstr(recs[i].headers_json, "\"x-crm-dlq-source-topic\":\"crm.preferences\""), "%s",
                           recs[i].headers_json);
        if (strstr(recs[i].headers_json, "not JSON") != NULL)
            json = 1;
        if (strstr(recs[i].headers_json, "does not match") != NULL)
            mismatch = 1;
        if (strcmp(recs[i].key, "no-colon") == 0 && strstr(recs[i].headers_json, "key:") != NULL)
            key = 1;
    }
    cr_expect(json && mismatch && key);
    th_kafka_records_free(recs, n);
    cr_assert_eq(th_pg_query_value(fx.url, SQL_LOCALE, val, sizeof val), 0);
    cr_expect_str_eq(val, "pt");
    stop(&fx);
}
