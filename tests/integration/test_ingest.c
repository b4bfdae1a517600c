/* Integration tests of crm-ingest: the real binary (th_proc) against a
 * librdkafka mock cluster (th_kafka), over real HTTP and the real Kafka
 * protocol.
 *
 * Every test starts its own cluster and its own crm-ingest, so records on
 * crm.requests and broker faults never leak from one test into another. */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <json-c/json.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>

#include "crm/uuid.h"
#include "th_kafka.h"
#include "th_proc.h"

#define PHONE "+14155550100"
#define EMAIL "ana.secret@example.com"
#define REQ(id, client, phone)                                                                                  \
    "{\"request_id\":\"" id "\",\"client_id\":\"" client "\",\"message_type\":\"welcome\","                    \
    "\"recipient\":{\"phone\":\"" phone "\",\"email\":\"" EMAIL "\"},\"context\":{\"first_name\":\"Ana\"}}"
#define TRACEPARENT "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

typedef struct fixture {
    th_kafka_t *kafka;
    const char *brokers;
    th_proc_t proc;
    int port;
    int running;
    char base[64];
} fixture_t;

/* Starts a 1-broker cluster and crm-ingest on a free port with the given
 * extra environment (NULL-terminated, may be NULL). */
static void start(fixture_t *f, const char *const *extra_env)
{
    char bin[512], brokers_env[512], port_env[32];
    char *env[16];
    size_t n = 0;

    memset(f, 0, sizeof *f);
    f->kafka = th_kafka_start(1);
    cr_assert_not_null(f->kafka, "mock cluster did not start");
    f->brokers = th_kafka_bootstraps(f->kafka);
    cr_assert_not_null(th_bin("crm-ingest", bin, sizeof bin), "crm-ingest is not built");
    f->port = th_free_port();
    cr_assert_gt(f->port, 0);
    snprintf(f->base, sizeof f->base, "http://127.0.0.1:%d", f->port);

    snprintf(brokers_env, sizeof brokers_env, "KAFKA_BROKERS=%s", f->brokers);
    snprintf(port_env, sizeof port_env, "HTTP_PORT=%d", f->port);
    env[n++] = brokers_env;
    env[n++] = port_env;
    env[n++] = "HTTP_BIND=127.0.0.1";
    env[n++] = "HTTP_THREADS=4";
    env[n++] = "LOG_LEVEL=debug";
    for (size_t i = 0; extra_env != NULL && extra_env[i] != NULL && n < 15; i++)
        env[n++] = (char *)extra_env[i];
    env[n] = NULL;
    char *argv[] = {bin, NULL};
    cr_assert_eq(th_proc_start(&f->proc, "crm-ingest", argv, env), 0);
    f->running = 1;
    cr_assert_eq(th_proc_wait_ready(&f->proc, f->port, 15000), 0, "crm-ingest not ready; see %s", f->proc.log_path);
}

/* SIGTERM must make crm-ingest drain and exit 0. */
static void stop(fixture_t *f)
{
    if (f->running) {
        int status = th_proc_stop(&f->proc, SIGTERM, 20000);
        f->running = 0;
        cr_expect(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "crm-ingest did not exit 0 on SIGTERM (status %d); see %s", status, f->proc.log_path);
    }
    th_kafka_stop(f->kafka);
    f->kafka = NULL;
}

/* ------------------------------------------------------------ HTTP client */

typedef struct http_result {
    long status;
    char body[16384];
    size_t body_len;
    char headers[4096];
    size_t headers_len;
} http_result_t;

static size_t sink(char *ptr, size_t size, size_t nmemb, void *userdata, char *buf, size_t cap, size_t *len)
{
    size_t n = size * nmemb;
    size_t room = cap - 1 - *len;
    size_t take = n < room ? n : room;
    memcpy(buf + *len, ptr, take);
    *len += take;
    buf[*len] = '\0';
    (void)userdata;
    return n;
}

static size_t body_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    http_result_t *r = userdata;
    return sink(ptr, size, nmemb, userdata, r->body, sizeof r->body, &r->body_len);
}

static size_t header_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    http_result_t *r = userdata;
    return sink(ptr, size, nmemb, userdata, r->headers, sizeof r->headers, &r->headers_len);
}

/* method/path against the fixture; body and content_type may be NULL;
 * extra_header is one "Name: value" line or NULL. */
static void http(const fixture_t *f, const char *method, const char *path, const char *body, size_t body_len,
                 const char *content_type, const char *extra_header, http_result_t *r)
{
    char url[256], ct[128];
    struct curl_slist *hdrs = NULL;
    CURL *c = curl_easy_init();
    cr_assert_not_null(c);
    memset(r, 0, sizeof *r);
    snprintf(url, sizeof url, "%s%s", f->base, path);
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
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    /* curl adds its own form content type to POSTs unless told otherwise. */
    snprintf(ct, sizeof ct, "Content-Type: %s", content_type != NULL ? content_type : "");
    hdrs = curl_slist_append(hdrs, ct);
    hdrs = curl_slist_append(hdrs, "Expect:");
    if (extra_header != NULL)
        hdrs = curl_slist_append(hdrs, extra_header);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    CURLcode cc = curl_easy_perform(c);
    cr_assert_eq(cc, CURLE_OK, "%s %s: %s", method, url, curl_easy_strerror(cc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
}

static void post_json(const fixture_t *f, const char *body, const char *extra_header, http_result_t *r)
{
    http(f, "POST", "/v1/communications", body, strlen(body), "application/json", extra_header, r);
}

/* The value of response header name (case-insensitive) into out, or "". */
static const char *header(const http_result_t *r, const char *name, char *out, size_t outlen)
{
    size_t nlen = strlen(name);
    out[0] = '\0';
    for (const char *line = r->headers; line != NULL && *line != '\0';) {
        const char *eol = strstr(line, "\r\n");
        size_t len = eol != NULL ? (size_t)(eol - line) : strlen(line);
        if (len > nlen && strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
            const char *v = line + nlen + 1;
            while (*v == ' ')
                v++;
            snprintf(out, outlen, "%.*s", (int)(len - (size_t)(v - line)), v);
            return out;
        }
        line = eol != NULL ? eol + 2 : NULL;
    }
    return out;
}

static json_object *parse(const char *s)
{
    json_object *o = json_tokener_parse(s);
    cr_assert_not_null(o, "not JSON: %s", s);
    return o;
}

static const char *jstr(json_object *o, const char *key)
{
    json_object *v = NULL;
    return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : NULL;
}

static int has_error_field(json_object *problem, const char *field)
{
    json_object *errs = json_object_object_get(problem, "errors");
    for (size_t i = 0; errs != NULL && i < json_object_array_length(errs); i++) {
        if (strcmp(jstr(json_object_array_get_idx(errs, i), "field"), field) == 0)
            return 1;
    }
    return 0;
}

static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "r");
    if (fp == NULL)
        return NULL;
    char *buf = calloc(1, 1 << 20);
    size_t n = buf != NULL ? fread(buf, 1, (1 << 20) - 1, fp) : 0;
    (void)n;
    fclose(fp);
    return buf;
}

/* ------------------------------------------------------------------ tests */

Test(ingest, single_request_is_acknowledged_and_on_crm_requests)
{
    fixture_t f;
    http_result_t r;
    char v[128];
    start(&f, NULL);

    post_json(&f, REQ("order-1", "client-7", PHONE), "traceparent: " TRACEPARENT, &r);
    cr_assert_eq(r.status, 202, "status %ld: %s", r.status, r.body);
    cr_expect_str_eq(header(&r, "Content-Type", v, sizeof v), "application/json");
    json_object *resp = parse(r.body);
    char want[CMN_UUID_STR_LEN + 1];
    cmn_uuid_communication_id("default", "order-1", want);
    cr_expect_str_eq(jstr(resp, "communication_id"), want);
    json_object *items = json_object_object_get(resp, "communications");
    cr_assert_eq(json_object_array_length(items), 1);
    cr_expect_str_eq(jstr(json_object_array_get_idx(items, 0), "request_id"), "order-1");
    cr_expect_str_eq(jstr(json_object_array_get_idx(items, 0), "communication_id"), want);

    /* 202 means acknowledged: the record is already there. */
    size_t n = 0;
    th_kafka_record_t *recs = th_kafka_read_all(f.brokers, "crm.requests", 1, 10000, &n);
    cr_assert_not_null(recs);
    cr_assert_eq(n, 1);
    cr_expect_str_eq(recs[0].key, "client-7");
    json_object *rec = parse(recs[0].value);
    cr_expect_str_eq(jstr(rec, "communication_id"), want);
    cr_expect_str_eq(jstr(rec, "request_id"), "order-1");
    cr_expect_str_eq(jstr(rec, "tenant_id"), "default");
    cr_expect_str_eq(jstr(rec, "urgency"), "normal");
    cr_expect_not_null(jstr(rec, "received_at"), "ingest stamps received_at: %s", recs[0].value);
    json_object *hdrs = parse(recs[0].headers_json);
    cr_expect_str_eq(jstr(hdrs, "traceparent"), TRACEPARENT, "the caller's trace continues: %s", recs[0].headers_json);
    json_object_put(hdrs);
    json_object_put(rec);
    json_object_put(resp);
    th_kafka_records_free(recs, n);

    /* The outcome is counted. */
    http(&f, "GET", "/metrics", NULL, 0, NULL, NULL, &r);
    cr_expect_eq(r.status, 200);
    cr_expect_not_null(strstr(r.body, "ingest_requests_total{result=\"accepted\"} 1"), "%s", r.body);
    cr_expect_not_null(strstr(r.body, "ingest_batch_size"), "%s", r.body);

    stop(&f);
    /* Even at debug level, addresses never reach the log; ids do. */
    char *log = slurp(f.proc.log_path);
    cr_assert_not_null(log);
    cr_expect_null(strstr(log, PHONE), "the phone number leaked into %s", f.proc.log_path);
    cr_expect_null(strstr(log, EMAIL), "the email address leaked into %s", f.proc.log_path);
    cr_expect_not_null(strstr(log, want), "accepted requests are logged by communication_id");
    free(log);
}

Test(ingest, batch_of_three_produces_three_records)
{
    fixture_t f;
    http_result_t r;
    start(&f, NULL);
    post_json(&f,
              "{\"requests\":[" REQ("b-1", "client-1", "+14155550101") "," REQ("b-2", "client-2", "+14155550102") "," REQ(
                  "b-3", "client-1", "+14155550103") "]}",
              NULL, &r);
    cr_assert_eq(r.status, 202, "status %ld: %s", r.status, r.body);
    json_object *resp = parse(r.body);
    json_object *items = json_object_object_get(resp, "communications");
    cr_assert_eq(json_object_array_length(items), 3);
    cr_expect_null(jstr(resp, "communication_id"), "no top-level id in the batch form");

    size_t n = 0;
    th_kafka_record_t *recs = th_kafka_read_all(f.brokers, "crm.requests", 3, 10000, &n);
    cr_assert_not_null(recs);
    cr_assert_eq(n, 3);
    int seen[3] = {0};
    for (size_t i = 0; i < n; i++) {
        json_object *rec = parse(recs[i].value);
        const char *rid = jstr(rec, "request_id");
        cr_expect_str_eq(recs[i].key, jstr(rec, "client_id"), "records are keyed by client_id");
        json_object *hdrs = parse(recs[i].headers_json);
        cr_expect_not_null(jstr(hdrs, "traceparent"), "every record carries a traceparent");
        json_object_put(hdrs);
        for (size_t k = 0; k < 3; k++) {
            json_object *item = json_object_array_get_idx(items, k);
            if (strcmp(jstr(item, "request_id"), rid) == 0) {
                seen[k]++;
                cr_expect_str_eq(jstr(item, "communication_id"), jstr(rec, "communication_id"));
            }
        }
        json_object_put(rec);
    }
    cr_expect(seen[0] == 1 && seen[1] == 1 && seen[2] == 1);
    th_kafka_records_free(recs, n);
    json_object_put(resp);
    stop(&f);
}

Test(ingest, invalid_batch_is_refused_and_nothing_is_produced)
{
    fixture_t f;
    http_result_t r;
    char v[128];
    start(&f, NULL);
    post_json(&f,
              "{\"requests\":[" REQ("bad-1", "client-1", "+14155550101") "," REQ("bad-2", "client-2", "555-0102") "," REQ(
                  "bad-3", "client-3", "+14155550103") "]}",
              NULL, &r);
    cr_assert_eq(r.status, 400, "status %ld: %s", r.status, r.body);
    cr_expect_str_eq(header(&r, "Content-Type", v, sizeof v), "application/problem+json");
    json_object *problem = parse(r.body);
    cr_expect_eq(json_object_get_int(json_object_object_get(problem, "status")), 400);
    cr_expect(has_error_field(problem, "requests[1].recipient.phone"), "%s", r.body);
    cr_expect_eq(json_object_array_length(json_object_object_get(problem, "errors")), 1, "%s", r.body);
    cr_expect_null(strstr(r.body, "555-0102"), "the problem does not echo submitted values");
    json_object_put(problem);

    /* A valid marker afterwards proves records do reach the topic; ingest
     * answers 202 only once Kafka acknowledged (docs/api.md), so reading
     * every partition to its end then finds only the marker. */
    post_json(&f, REQ("marker", "client-1", PHONE), NULL, &r);
    cr_assert_eq(r.status, 202, "%s", r.body);
    size_t n = 0;
    th_kafka_record_t *recs = th_kafka_read_to_end(f.brokers, "crm.requests", 15000, &n);
    cr_assert_not_null(recs);
    cr_expect_eq(n, 1, "only the marker is on crm.requests, got %zu records", n);
    for (size_t i = 0; i < n; i++)
        cr_expect_null(strstr(recs[i].value, "\"bad-"), "%s", recs[i].value);
    th_kafka_records_free(recs, n);
    stop(&f);
}

Test(ingest, same_request_id_gives_same_communication_id)
{
    fixture_t f;
    http_result_t r1, r2, r3;
    start(&f, NULL);
    post_json(&f, REQ("retry-me", "client-1", PHONE), NULL, &r1);
    post_json(&f, REQ("retry-me", "client-1", PHONE), NULL, &r2);
    post_json(&f,
              "{\"request_id\":\"retry-me\",\"tenant_id\":\"other\",\"client_id\":\"client-1\",\"message_type\":\"welcome\","
              "\"recipient\":{\"phone\":\"" PHONE "\"}}",
              NULL, &r3);
    cr_assert_eq(r1.status, 202);
    cr_assert_eq(r2.status, 202);
    cr_assert_eq(r3.status, 202);
    json_object *a = parse(r1.body), *b = parse(r2.body), *c = parse(r3.body);
    cr_expect_str_eq(jstr(a, "communication_id"), jstr(b, "communication_id"));
    cr_expect_str_neq(jstr(a, "communication_id"), jstr(c, "communication_id"), "tenants never share ids");
    json_object_put(a);
    json_object_put(b);
    json_object_put(c);
    stop(&f);
}

Test(ingest, http_errors)
{
    fixture_t f;
    http_result_t r;
    char v[128];
    const char *const env[] = {"INGEST_MAX_BODY_BYTES=4096", NULL};
    start(&f, env);

    /* 413: larger than INGEST_MAX_BODY_BYTES. */
    size_t big_len = 8192;
    char *big = malloc(big_len + 1);
    cr_assert_not_null(big);
    memset(big, ' ', big_len);
    memcpy(big, "{\"requests\":[", 13);
    big[big_len - 2] = ']';
    big[big_len - 1] = '}';
    big[big_len] = '\0';
    http(&f, "POST", "/v1/communications", big, big_len, "application/json", NULL, &r);
    cr_expect_eq(r.status, 413, "%s", r.body);
    cr_expect_str_eq(header(&r, "Content-Type", v, sizeof v), "application/problem+json");
    free(big);

    /* 415: not JSON. */
    const char *body = REQ("ct", "client-1", PHONE);
    http(&f, "POST", "/v1/communications", body, strlen(body), "text/plain", NULL, &r);
    cr_expect_eq(r.status, 415, "%s", r.body);
    http(&f, "POST", "/v1/communications", body, strlen(body), "application/x-www-form-urlencoded", NULL, &r);
    cr_expect_eq(r.status, 415, "%s", r.body);

    /* 400 naming the position for broken JSON. */
    post_json(&f, "{\"request_id\":\"x\",", NULL, &r);
    cr_expect_eq(r.status, 400);
    cr_expect_not_null(strstr(r.body, "offset"), "%s", r.body);

    /* 405 with Allow, 404 as a problem. */
    http(&f, "GET", "/v1/communications", NULL, 0, NULL, NULL, &r);
    cr_expect_eq(r.status, 405);
    cr_expect_str_eq(header(&r, "Allow", v, sizeof v), "POST");
    http(&f, "DELETE", "/v1/communications", NULL, 0, NULL, NULL, &r);
    cr_expect_eq(r.status, 405);
    http(&f, "GET", "/v1/nothing-here", NULL, 0, NULL, NULL, &r);
    cr_expect_eq(r.status, 404);
    cr_expect_str_eq(header(&r, "Content-Type", v, sizeof v), "application/problem+json");

    /* None of that produced anything: after the marker's 202, the whole
     * topic holds only the marker. */
    post_json(&f, REQ("marker", "client-1", PHONE), NULL, &r);
    cr_assert_eq(r.status, 202);
    size_t n = 0;
    th_kafka_record_t *recs = th_kafka_read_to_end(f.brokers, "crm.requests", 15000, &n);
    cr_assert_not_null(recs);
    cr_expect_eq(n, 1);
    th_kafka_records_free(recs, n);

    http(&f, "GET", "/metrics", NULL, 0, NULL, NULL, &r);
    cr_expect_not_null(strstr(r.body, "ingest_requests_total{result=\"invalid\"} 3"), "%s", r.body);
    stop(&f);
}

Test(ingest, kafka_unavailable_answers_503_with_retry_after)
{
    fixture_t f;
    http_result_t r;
    char v[64];
    const char *const env[] = {"INGEST_KAFKA_TIMEOUT_MS=2000", NULL};
    start(&f, env);

    /* Connected and working first, so the 503 below is the outage's. */
    post_json(&f, REQ("before", "client-1", PHONE), NULL, &r);
    cr_assert_eq(r.status, 202, "%s", r.body);

    rd_kafka_mock_cluster_t *mock = th_kafka_mock(f.kafka);
    cr_assert_eq(rd_kafka_mock_broker_set_down(mock, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    post_json(&f, REQ("during", "client-1", PHONE), NULL, &r);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    cr_expect_eq(r.status, 503, "%s", r.body);
    cr_expect_str_eq(header(&r, "Retry-After", v, sizeof v), "5");
    cr_expect_str_eq(header(&r, "Content-Type", v, sizeof v), "application/problem+json");
    double waited = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    cr_expect_lt(waited, 8.0, "the answer comes after about INGEST_KAFKA_TIMEOUT_MS, took %.1f s", waited);

    http(&f, "GET", "/metrics", NULL, 0, NULL, NULL, &r);
    cr_expect_not_null(strstr(r.body, "ingest_requests_total{result=\"unavailable\"} 1"), "%s", r.body);

    /* The broker comes back: submissions succeed again without a restart. */
    cr_assert_eq(rd_kafka_mock_broker_set_up(mock, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    int ok = 0;
    for (int i = 0; i < 15 && !ok; i++) {
        post_json(&f, REQ("after", "client-1", PHONE), NULL, &r);
        ok = r.status == 202;
    }
    cr_expect(ok, "no 202 after the broker came back: %ld %s", r.status, r.body);
    stop(&f);
}

Test(ingest, sigterm_exits_zero)
{
    fixture_t f;
    start(&f, NULL);
    cr_assert(th_proc_alive(&f.proc));
    int status = th_proc_stop(&f.proc, SIGTERM, 20000);
    f.running = 0;
    cr_expect(WIFEXITED(status), "crm-ingest was killed (status %d)", status);
    cr_expect_eq(WEXITSTATUS(status), 0);
    stop(&f);
}

Test(ingest, bad_configuration_exits_2_naming_the_variable)
{
    char bin[512], out[2048];
    cr_assert_not_null(th_bin("crm-ingest", bin, sizeof bin));
    char *argv[] = {bin, NULL};
    char *env[] = {"INGEST_MAX_BATCH=20000", NULL};
    int rc = th_run(argv, env, out, sizeof out, 10000);
    cr_expect_eq(rc, 2, "%s", out);
    cr_expect_not_null(strstr(out, "INGEST_MAX_BATCH"), "%s", out);
    char *env2[] = {"LOG_LEVEL=chatty", NULL};
    rc = th_run(argv, env2, out, sizeof out, 10000);
    cr_expect_eq(rc, 2, "%s", out);
    cr_expect_not_null(strstr(out, "LOG_LEVEL"), "%s", out);
}
