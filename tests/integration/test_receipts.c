/* test_receipts.c - receipt-driven fallback through real processes: the
 * crm-sms-worker (against the Twilio sandbox), crm-router (its crm.defer.*
 * consumer and receipt guard) and crm-projector, on the Kafka mock cluster
 * and a private PostgreSQL. The webhook receiver is not running: the test
 * produces the receipts it would (StatusEvents naming communication, hop
 * and attempt) itself.
 *   - after `sent` the worker parks the email hop's Dispatch on
 *     crm.defer.1m with x-crm-target crm.send.email and x-crm-guard;
 *   - a failed receipt sends exactly one Dispatch to crm.send.email (hop 1,
 *     attempt 1) and one `fallback` status (why receipt_failed);
 *   - a delivered receipt, or a communication that already moved to a
 *     later hop, sends nothing (the watch is dropped);
 *   - a critical SMS without any receipt falls back after its short
 *     deadline (why receipt_deadline), not before.
 * Nothing asserts speed; waits only bound how long the test looks. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crm/buf.h"
#include "crm/json.h"
#include "crm/status.h"
#include "crm/time.h"
#include "th_kafka.h"
#include "th_pg.h"
#include "th_proc.h"
#include "th_twilio.h"
#include "th_worker.h"

#define TENANT "acme"
#define TRACE "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
#define FROM_NUMBER "+14155552345"
#define CONTEXT "{\"reset_url\":\"https://app.example.com/r/1\",\"expires_in_minutes\":30}"
#define DEADLINE_MS 6000

typedef struct fixture {
    th_worker_t w; /* the SMS worker and the mock cluster */
    th_twilio_t sandbox;
    char db[256];
    th_proc_t router, projector;
    int router_port, projector_port;
    int router_running, projector_running;
} fixture_t;

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void start_service(fixture_t *fx, th_proc_t *p, int *port, const char *binary, const char *const *extra)
{
    char bin[512], brokers[600], dburl[300], portv[32];
    char *env[16];
    size_t n = 0;
    cr_assert_not_null(th_bin(binary, bin, sizeof bin), "%s is not built", binary);
    *port = th_free_port();
    snprintf(brokers, sizeof brokers, "KAFKA_BROKERS=%s", fx->w.brokers);
    snprintf(dburl, sizeof dburl, "DATABASE_URL=%s", fx->db);
    snprintf(portv, sizeof portv, "HTTP_PORT=%d", *port);
    env[n++] = brokers;
    env[n++] = dburl;
    env[n++] = portv;
    env[n++] = "HTTP_BIND=127.0.0.1";
    env[n++] = "LOG_LEVEL=debug";
    env[n++] = "KAFKA_SESSION_TIMEOUT_MS=6000";
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 15; i++)
        env[n++] = (char *)extra[i];
    env[n] = NULL;
    char *const argv[] = {bin, NULL};
    cr_assert_eq(th_proc_start(p, binary, argv, env), 0);
    cr_assert_eq(th_proc_wait_ready(p, *port, 60000), 0, "%s not ready; see %s", binary, p->log_path);
}

static void fixture_init(fixture_t *fx, const char *name)
{
    memset(fx, 0, sizeof *fx);
    th_worker_init(&fx->w, name, TENANT, "crm.send.sms", TRACE);
    cr_assert_eq(th_pg_database(name, fx->db, sizeof fx->db), 0, "database %s", name);
    cr_assert_eq(th_twilio_start(&fx->sandbox, NULL), 0, "the Twilio sandbox did not start");
    const char *const projector_env[] = {"PROJECTOR_BATCH_SIZE=50", NULL};
    start_service(fx, &fx->projector, &fx->projector_port, "crm-projector", projector_env);
    fx->projector_running = 1;
    /* One-second checks keep the test short; the router and the worker
     * agree on it, as a deployment should. */
    const char *const router_env[] = {"ROUTER_ENABLED_CHANNELS=email,sms,whatsapp", "RECEIPT_CHECK_INTERVAL_MS=1000",
                                      NULL};
    start_service(fx, &fx->router, &fx->router_port, "crm-router", router_env);
    fx->router_running = 1;
    char api[128], tmpl[600], group[128], deadline[64];
    snprintf(api, sizeof api, "TWILIO_API_URL=%s", fx->sandbox.url);
    snprintf(tmpl, sizeof tmpl, "SMS_TEMPLATES_DIR=%s/templates", CRM_SOURCE_DIR);
    snprintf(group, sizeof group, "SMS_GROUP_ID=sms-receipts-%s", name);
    snprintf(deadline, sizeof deadline, "RECEIPT_DEADLINE_CRITICAL_MS=%d", DEADLINE_MS);
    const char *const defaults[] = {api, "TWILIO_ACCOUNT_SID=" TH_TWILIO_ACCOUNT_SID,
                                    "TWILIO_AUTH_TOKEN=" TH_TWILIO_AUTH_TOKEN, "TWILIO_PHONE_NUMBER=" FROM_NUMBER,
                                    tmpl, group, "SMS_RATE_PER_SECOND=50", "SMS_RATE_BURST=10",
                                    "RECEIPT_CHECK_INTERVAL_MS=1000", deadline, NULL};
    th_worker_start(&fx->w, "crm-sms-worker", defaults, NULL);
}

static void fixture_fini(fixture_t *fx)
{
    th_worker_stop(&fx->w);
    if (fx->router_running)
        cr_expect_eq(th_proc_stop(&fx->router, SIGTERM, 30000), 0, "router exit; see %s", fx->router.log_path);
    if (fx->projector_running)
        cr_expect_eq(th_proc_stop(&fx->projector, SIGTERM, 30000), 0, "projector exit; see %s",
                     fx->projector.log_path);
    th_twilio_stop(&fx->sandbox);
    th_kafka_stop(fx->w.kafka);
}

/* Produces an SMS Dispatch of request_id to phone with the plan ["email"]
 * (and the recipient's email for it), urgency as given. */
static void produce_sms(fixture_t *fx, const char *request_id, const char *phone, const char *urgency)
{
    char email[128];
    snprintf(email, sizeof email, "%s@example.com", request_id);
    th_dispatch_t d = {.tenant = TENANT, .request_id = request_id, .channel = "sms", .to = phone, .name = "Ana",
                       .locale = "en", .message_type = "password_reset", .context = CONTEXT,
                       .fallback = "[\"email\"]", .also_email = email};
    char *text = th_worker_dispatch_json(&d);
    json_object *o = json_tokener_parse(text);
    cr_assert_not_null(o);
    json_object_object_add(o, "urgency", json_object_new_string(urgency));
    th_worker_produce(&fx->w, "client-1", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
    free(text);
}

/* The value of header name in a record's headers_json, into out ("" when
 * absent). */
static const char *header(const th_kafka_record_t *r, const char *name, char *out, size_t outlen)
{
    out[0] = '\0';
    json_object *h = r->headers_json != NULL ? json_tokener_parse(r->headers_json) : NULL;
    const char *v = h != NULL ? cmn_json_get_string(h, name) : NULL;
    if (v != NULL)
        snprintf(out, outlen, "%s", v);
    json_object_put(h);
    return out;
}

/* How many records of topic belong to communication cid (their value's
 * communication_id), optionally with status `status` (NULL: any). The
 * index of the last one goes to *last. */
static int count_for(const th_kafka_record_t *recs, size_t n, const char *cid, const char *status, size_t *last)
{
    int count = 0;
    for (size_t i = 0; i < n; i++) {
        json_object *o = recs[i].value != NULL ? json_tokener_parse(recs[i].value) : NULL;
        const char *id = o != NULL ? cmn_json_get_string(o, "communication_id") : NULL;
        const char *st = o != NULL ? cmn_json_get_string(o, "status") : NULL;
        if (id != NULL && strcmp(id, cid) == 0 && (status == NULL || (st != NULL && strcmp(st, status) == 0))) {
            count++;
            if (last != NULL)
                *last = i;
        }
        json_object_put(o);
    }
    return count;
}

/* Reads topic until a record of cid (and status) shows up or timeout_ms
 * passes. Returns the records (free them) with their count in *n. */
static th_kafka_record_t *wait_for(const fixture_t *fx, const char *topic, const char *cid, const char *status,
                                   int timeout_ms, size_t *n)
{
    int64_t end = cmn_monotonic_ms() + timeout_ms;
    for (;;) {
        th_kafka_record_t *r = th_kafka_read_all(fx->w.brokers, topic, 100000, 1000, n);
        if (count_for(r, *n, cid, status, NULL) > 0 || cmn_monotonic_ms() >= end)
            return r;
        th_kafka_records_free(r, *n);
    }
}

static void wait_sql(const fixture_t *fx, const char *sql, const char *want, int timeout_ms)
{
    char got[256] = "";
    for (int waited = 0; waited <= timeout_ms; waited += 200) {
        if (th_pg_query_value(fx->db, sql, got, sizeof got) == 0 && strcmp(got, want) == 0)
            return;
        sleep_ms(200);
    }
    cr_assert_fail("%s: '%s', not '%s'", sql, got, want);
}

static void wait_status(const fixture_t *fx, const char *cid, int hop, const char *status)
{
    char sql[320];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM communication_events WHERE communication_id = '%s' AND hop = %d AND status = '%s'",
             cid, hop, status);
    wait_sql(fx, sql, "1", 60000);
}

/* Produces the StatusEvent the webhook receiver would for a receipt (or
 * any other event of cid at hop on channel). */
static void produce_status(fixture_t *fx, const char *request_id, const char *cid, int hop, const char *channel,
                           cmn_status_t status, const char *error_code, const char *reason)
{
    cmn_status_event_t ev;
    cmn_buf_t json = CMN_BUF_INIT;
    memset(&ev, 0, sizeof ev);
    snprintf(ev.communication_id, sizeof ev.communication_id, "%s", cid);
    ev.request_id = request_id;
    ev.tenant_id = TENANT;
    ev.client_id = "client-1";
    ev.message_type = "password_reset";
    ev.channel = cmn_channel_parse(channel);
    ev.status = status;
    ev.hop = hop;
    ev.attempt = 1;
    ev.provider = strcmp(channel, "sms") == 0 ? "twilio" : "smtp";
    ev.error_code = error_code;
    ev.reason = reason;
    ev.discriminator = "test-receipt";
    ev.occurred_at_ms = cmn_now_ms();
    cr_assert_eq(cmn_status_event_finalize(&ev), 0);
    cr_assert_eq(cmn_status_event_to_json(&ev, &json), 0);
    const char *headers[] = {"traceparent", TRACE, NULL};
    cr_assert_eq(th_kafka_produce(fx->w.brokers, "crm.status", cid, json.data, headers), 0);
    cmn_buf_free(&json);
}

static long long router_metric(const fixture_t *fx, const char *series)
{
    char url[128];
    enum { BODY = 1 << 18 };
    char *body = malloc(BODY);
    long status = 0;
    cr_assert_not_null(body);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", fx->router_port);
    cr_assert_eq(th_http("GET", url, NULL, NULL, &status, body, BODY), 0);
    long long v = 0;
    const char *p = strstr(body, series);
    if (p != NULL)
        v = strtoll(p + strlen(series) + 1, NULL, 10);
    free(body);
    return v;
}

/* Checks a watch record of cid on crm.defer.*: headers and the parked
 * Dispatch. Returns the guard's deadline_at (0 for none). */
static int64_t check_watch(const fixture_t *fx, const char *cid)
{
    size_t n = 0;
    th_kafka_record_t *r = wait_for(fx, "crm.defer.1m", cid, NULL, 60000, &n);
    size_t at = 0;
    cr_assert_geq(count_for(r, n, cid, NULL, &at), 1, "no watch of %s on crm.defer.1m", cid);
    char v[256], want[128];
    cr_assert_str_eq(header(&r[at], "x-crm-target", v, sizeof v), "crm.send.email");
    cr_assert_str_eq(header(&r[at], "traceparent", v, sizeof v), TRACE, "the trace goes on with the watch");
    header(&r[at], "x-crm-due-at", v, sizeof v);
    cr_assert(v[0] >= '1' && v[0] <= '9', "x-crm-due-at: %s", v);
    header(&r[at], "x-crm-guard", v, sizeof v);
    snprintf(want, sizeof want, "r1:%s:0:", cid);
    cr_assert_eq(strncmp(v, want, strlen(want)), 0, "x-crm-guard: %s", v);
    long long sent_at = 0, deadline_at = -1;
    cr_assert_eq(sscanf(v + strlen(want), "%lld:%lld", &sent_at, &deadline_at), 2, "%s", v);
    json_object *d = json_tokener_parse(r[at].value);
    cr_assert_not_null(d);
    cr_assert_str_eq(cmn_json_get_string(d, "channel"), "email");
    cr_assert_eq(json_object_get_int(json_object_object_get(d, "hop")), 1);
    cr_assert_eq(json_object_get_int(json_object_object_get(d, "attempt")), 1);
    cr_assert_eq(json_object_array_length(json_object_object_get(d, "fallback")), 0, "the plan is used up");
    json_object_put(d);
    th_kafka_records_free(r, n);
    return deadline_at;
}

/* The one `fallback` event of cid on crm.status: hop 0, sms -> email, why. */
static void check_fallback_event(const fixture_t *fx, const char *cid, const char *why)
{
    size_t n = 0, at = 0;
    th_kafka_record_t *r = wait_for(fx, "crm.status", cid, "fallback", 30000, &n);
    cr_assert_eq(count_for(r, n, cid, "fallback", &at), 1, "one fallback event of %s", cid);
    json_object *o = json_tokener_parse(r[at].value);
    cr_assert_eq(json_object_get_int(json_object_object_get(o, "hop")), 0);
    cr_assert_str_eq(cmn_json_get_string(o, "channel"), "sms");
    cr_assert_str_eq(cmn_json_get_string(o, "reason"), why);
    json_object *det = json_object_object_get(o, "details");
    cr_assert_str_eq(cmn_json_get_string(det, "from"), "sms");
    cr_assert_str_eq(cmn_json_get_string(det, "to"), "email");
    cr_assert_str_eq(cmn_json_get_string(det, "why"), why);
    char v[128];
    cr_assert_str_eq(header(&r[at], "traceparent", v, sizeof v), TRACE);
    json_object_put(o);
    th_kafka_records_free(r, n);
}

Test(receipts, failed_receipt_falls_back_once_delivered_and_moved_on_do_not, .timeout = 300)
{
    fixture_t fx;
    fixture_init(&fx, "receipts_failed");
    char failed[40], delivered[40], moved[40];
    th_worker_comm_id(TENANT, "rc-failed", failed);
    th_worker_comm_id(TENANT, "rc-delivered", delivered);
    th_worker_comm_id(TENANT, "rc-moved", moved);
    produce_sms(&fx, "rc-failed", "+33612340001", "normal");
    produce_sms(&fx, "rc-delivered", "+33612340002", "normal");
    produce_sms(&fx, "rc-moved", "+33612340003", "normal");

    /* Each sent SMS has its watch; no deadline for normal urgency. */
    cr_assert_eq(check_watch(&fx, failed), 0);
    cr_assert_eq(check_watch(&fx, delivered), 0);
    cr_assert_eq(check_watch(&fx, moved), 0);
    wait_status(&fx, failed, 0, "sent");
    wait_status(&fx, delivered, 0, "sent");
    wait_status(&fx, moved, 0, "sent");

    /* The receipts, as the webhook receiver produces them. */
    produce_status(&fx, "rc-failed", failed, 0, "sms", CMN_STATUS_FAILED, "30003", "undelivered");
    produce_status(&fx, "rc-delivered", delivered, 0, "sms", CMN_STATUS_DELIVERED, NULL, NULL);
    /* This one already went on to its next hop by another way. */
    produce_status(&fx, "rc-moved", moved, 1, "email", CMN_STATUS_SENDING, NULL, NULL);
    produce_status(&fx, "rc-moved", moved, 0, "sms", CMN_STATUS_FAILED, "30008", NULL);

    size_t n = 0, at = 0;
    th_kafka_record_t *r = wait_for(&fx, "crm.send.email", failed, NULL, 60000, &n);
    cr_assert_eq(count_for(r, n, failed, NULL, &at), 1, "the failed SMS's email hop was sent on");
    json_object *d = json_tokener_parse(r[at].value);
    cr_assert_str_eq(cmn_json_get_string(d, "channel"), "email");
    cr_assert_str_eq(cmn_json_get_string(d, "to"), "rc-failed@example.com");
    cr_assert_eq(json_object_get_int(json_object_object_get(d, "hop")), 1);
    json_object_put(d);
    th_kafka_records_free(r, n);
    check_fallback_event(&fx, failed, "receipt_failed");
    wait_status(&fx, failed, 0, "fallback");

    /* The other two watches end without sending (the router says why). */
    for (int waited = 0; waited < 60000; waited += 250) {
        if (router_metric(&fx, "router_receipt_watches_total{why=\"delivered\"}") >= 1 &&
            router_metric(&fx, "router_receipt_watches_total{why=\"moved_on\"}") >= 1)
            break;
        sleep_ms(250);
    }
    cr_assert_geq(router_metric(&fx, "router_receipt_watches_total{why=\"delivered\"}"), 1);
    cr_assert_geq(router_metric(&fx, "router_receipt_watches_total{why=\"moved_on\"}"), 1);
    /* A few more check intervals: nothing else moves. */
    sleep_ms(4000);
    r = th_kafka_read_all(fx.w.brokers, "crm.send.email", 100000, 2000, &n);
    cr_expect_eq(count_for(r, n, failed, NULL, NULL), 1, "the fallback was sent exactly once");
    cr_expect_eq(count_for(r, n, delivered, NULL, NULL), 0, "a delivered SMS fell back");
    cr_expect_eq(count_for(r, n, moved, NULL, NULL), 0, "a communication at a later hop fell back");
    th_kafka_records_free(r, n);
    r = th_kafka_read_all(fx.w.brokers, "crm.status", 100000, 2000, &n);
    cr_expect_eq(count_for(r, n, failed, "fallback", NULL), 1);
    cr_expect_eq(count_for(r, n, delivered, "fallback", NULL), 0);
    cr_expect_eq(count_for(r, n, moved, "fallback", NULL), 0);
    th_kafka_records_free(r, n);
    cr_expect_eq(router_metric(&fx, "router_receipt_watches_total{why=\"receipt_failed\"}"), 1);

    /* The worker counted its watches. */
    char body[1 << 16];
    cr_assert_eq(th_worker_metrics(&fx.w, body, sizeof body), 200);
    cr_expect_not_null(strstr(body, "sms_receipt_watches_total 3"), "watches counted");
    fixture_fini(&fx);
}

Test(receipts, critical_without_receipt_falls_back_after_its_deadline_not_before, .timeout = 300)
{
    fixture_t fx;
    fixture_init(&fx, "receipts_deadline");
    char cid[40], calm[40];
    th_worker_comm_id(TENANT, "rc-critical", cid);
    th_worker_comm_id(TENANT, "rc-normal", calm);
    produce_sms(&fx, "rc-critical", "+33612340010", "critical");
    produce_sms(&fx, "rc-normal", "+33612340011", "normal");

    int64_t deadline_at = check_watch(&fx, cid);
    cr_assert_gt(deadline_at, 0, "a critical watch has a deadline");
    cr_assert_eq(check_watch(&fx, calm), 0, "a normal one has none");
    /* Before the deadline (when the test is early enough to look), the
     * watch has been checked and kept, not sent. */
    if (cmn_now_ms() < deadline_at - 1500) {
        while (cmn_now_ms() < deadline_at - 1000)
            sleep_ms(100);
        size_t n = 0;
        th_kafka_record_t *r = th_kafka_read_all(fx.w.brokers, "crm.send.email", 100000, 500, &n);
        cr_assert_eq(count_for(r, n, cid, NULL, NULL), 0, "fell back before the deadline");
        th_kafka_records_free(r, n);
    }
    size_t n = 0;
    th_kafka_record_t *r = wait_for(&fx, "crm.send.email", cid, NULL, 60000, &n);
    cr_assert_eq(count_for(r, n, cid, NULL, NULL), 1, "the critical SMS went on to email once");
    th_kafka_records_free(r, n);
    check_fallback_event(&fx, cid, "receipt_deadline");
    /* The decision was taken at or after the deadline (the router's clock
     * on the event, the same machine's as the worker's). */
    char sql[320], got[64];
    snprintf(sql, sizeof sql,
             "SELECT (extract(epoch FROM occurred_at) * 1000)::bigint >= %" PRId64
             " FROM communication_events WHERE communication_id = '%s' AND status = 'fallback'",
             deadline_at, cid);
    wait_status(&fx, cid, 0, "fallback");
    cr_assert_eq(th_pg_query_value(fx.db, sql, got, sizeof got), 0);
    cr_assert_str_eq(got, "t", "the fallback came before the deadline");
    cr_expect_geq(router_metric(&fx, "router_receipt_watches_total{why=\"waiting\"}"), 1,
                  "the watches were looked at before they were decided");
    /* The normal-urgency SMS without a receipt keeps waiting. */
    r = th_kafka_read_all(fx.w.brokers, "crm.send.email", 100000, 1000, &n);
    cr_expect_eq(count_for(r, n, calm, NULL, NULL), 0);
    th_kafka_records_free(r, n);
    fixture_fini(&fx);
}
