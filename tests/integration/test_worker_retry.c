/* test_worker_retry.c - retries, fallback and dead letters, end to end: the
 * real crm-sms-worker binary (its batch loop and its retry-tier consumer)
 * between the Kafka mock cluster and the Twilio sandbox, which fails on
 * purpose by the To number's last digits (...20503: 503 with Retry-After: 2,
 * ...20500: 500, ...20429: 429 with Retry-After: 7, ...21610: unsubscribed).
 *
 * Checked here, on the topics themselves:
 * - a retryable failure is scheduled (`retry_scheduled`, details with the
 *   plan), waits on crm.retry.sms.5s with x-crm-due-at / x-crm-target /
 *   traceparent, comes back to crm.send.sms when due and is tried again
 *   (the sandbox sees attempt 2 no earlier than its due time), until
 *   RETRY_MAX_ATTEMPTS: then `dead` and a copy on crm.dlq with the reason;
 * - the same exhaustion with a fallback plan is a `fallback` instead, and a
 *   permanent 21610 falls back at once: the Dispatch for email (hop 1,
 *   attempt 1, the recipient's email) on crm.send.email;
 * - a deadline already passed, or one the next attempt would overshoot,
 *   means no retry;
 * - a 429's Retry-After is honoured even when it outlasts the 5s tier (the
 *   record cycles through it). */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/json.h"
#include "crm/time.h"
#include "crm/uuid.h"
#include "th_kafka.h"
#include "th_proc.h"
#include "th_twilio.h"
#include "th_worker.h"

#define TENANT "acme"
#define FROM_NUMBER "+14155552345"
#define TRACEPARENT "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
#define TRACE_ID "4bf92f3577b34da6a3ce929d0e0e4736"

typedef struct fixture {
    th_worker_t w;
    th_twilio_t sandbox;
} fixture_t;

static void fixture_init(fixture_t *fx, const char *name)
{
    memset(fx, 0, sizeof *fx);
    th_worker_init(&fx->w, name, TENANT, "crm.send.sms", TRACEPARENT);
    cr_assert_eq(th_twilio_start(&fx->sandbox, NULL), 0, "the Twilio sandbox did not start");
}

/* Starts crm-sms-worker with max_attempts attempts per message and a
 * backoff window of 200-400 ms, so the waits are the providers' Retry-After. */
static void start_worker(fixture_t *fx, const char *max_attempts)
{
    char api[128], tmpl[600], group[128], attempts[64];
    snprintf(api, sizeof api, "TWILIO_API_URL=%s", fx->sandbox.url);
    snprintf(tmpl, sizeof tmpl, "SMS_TEMPLATES_DIR=%s/templates", CRM_SOURCE_DIR);
    snprintf(group, sizeof group, "SMS_GROUP_ID=retry-test-%s", fx->w.name);
    snprintf(attempts, sizeof attempts, "RETRY_MAX_ATTEMPTS=%s", max_attempts);
    const char *const defaults[] = {api,
                                    "TWILIO_ACCOUNT_SID=" TH_TWILIO_ACCOUNT_SID,
                                    "TWILIO_AUTH_TOKEN=" TH_TWILIO_AUTH_TOKEN,
                                    "TWILIO_PHONE_NUMBER=" FROM_NUMBER,
                                    tmpl,
                                    group,
                                    "SMS_RATE_PER_SECOND=50",
                                    "SMS_RATE_BURST=10",
                                    attempts,
                                    "RETRY_BASE_MS=200",
                                    "RETRY_CAP_MS=400",
                                    NULL};
    th_worker_start(&fx->w, "crm-sms-worker", defaults, NULL);
}

static void fixture_fini(fixture_t *fx)
{
    cr_expect_eq(th_worker_stop(&fx->w), 0, "the worker exits 0 on SIGTERM (log: %s)", fx->w.proc.log_path);
    th_twilio_stop(&fx->sandbox);
    th_kafka_stop(fx->w.kafka);
}

static void produce(fixture_t *fx, const char *request_id, const char *to, const char *fallback, const char *email,
                    int64_t deadline_ms)
{
    th_dispatch_t d = {.tenant = TENANT,
                       .request_id = request_id,
                       .channel = "sms",
                       .to = to,
                       .name = "Ana",
                       .locale = "en",
                       .message_type = "welcome",
                       .fallback = fallback,
                       .also_email = email,
                       .deadline_ms = deadline_ms};
    th_worker_produce_dispatch(&fx->w, &d);
}

/* ----------------------------------------------------------- inspection */

static const char *str(json_object *o, const char *key)
{
    const char *s = cmn_json_get_string(o, key);
    return s != NULL ? s : "";
}

static int64_t num(json_object *o, const char *key)
{
    int64_t v = -1;
    cmn_json_get_int64(o, key, &v);
    return v;
}

static int64_t time_of(json_object *o, const char *key)
{
    int64_t ms = 0;
    cr_assert_eq(cmn_time_parse_rfc3339(str(o, key), &ms), 0, "%s: '%s' is not RFC 3339", key, str(o, key));
    return ms;
}

/* The event `status` of request_id at attempt, or NULL. */
static json_object *event_at(const th_statuses_t *st, const char *request_id, const char *status, int attempt)
{
    char cid[CMN_UUID_STR_LEN + 1];
    th_worker_comm_id(TENANT, request_id, cid);
    for (size_t i = 0; i < st->n; i++) {
        json_object *ev = st->objs[i];
        if (strcmp(str(ev, "communication_id"), cid) == 0 && strcmp(str(ev, "status"), status) == 0 &&
            num(ev, "attempt") == attempt)
            return ev;
    }
    return NULL;
}

/* The received_at (epoch ms) of every sandbox request to `to`, in order;
 * returns how many (at most max). */
static int request_times(json_object *reqs, const char *to, int64_t *at, int max)
{
    int n = 0;
    for (size_t i = 0; i < json_object_array_length(reqs) && n < max; i++) {
        json_object *r = json_object_array_get_idx(reqs, i);
        if (strcmp(str(cmn_json_get_object(r, "params"), "To"), to) == 0)
            at[n++] = time_of(r, "received_at");
    }
    /* Recorded in arrival order already; sort anyway so the test does not
     * depend on the sandbox's listing order. */
    for (int i = 1; i < n; i++) {
        for (int k = i; k > 0 && at[k] < at[k - 1]; k--) {
            int64_t t = at[k];
            at[k] = at[k - 1];
            at[k - 1] = t;
        }
    }
    return n;
}

/* The record of recs (parsed into vals) for communication cid at attempt,
 * or -1. */
static int record_at(json_object **vals, size_t n, const char *cid, int attempt)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(str(vals[i], "communication_id"), cid) == 0 && num(vals[i], "attempt") == attempt)
            return (int)i;
    }
    return -1;
}

static json_object **parse_values(const th_kafka_record_t *recs, size_t n)
{
    json_object **vals = calloc(n + 1, sizeof *vals);
    cr_assert_not_null(vals);
    for (size_t i = 0; i < n; i++) {
        vals[i] = json_tokener_parse(recs[i].value);
        cr_assert_not_null(vals[i], "record %zu is not JSON: %s", i, recs[i].value);
    }
    return vals;
}

static void free_values(json_object **vals, size_t n)
{
    for (size_t i = 0; i < n; i++)
        json_object_put(vals[i]);
    free(vals);
}

/* Checks one retry of request_id: the retry_scheduled event of attempt
 * `attempt`, its record on crm.retry.sms.5s (tier recs/vals) with the tier
 * headers, and that the next attempt reached the sandbox (next_at, epoch
 * ms) no earlier than it was due. */
static void expect_retry(const th_statuses_t *st, const th_kafka_record_t *recs, json_object **vals, size_t n,
                         const char *request_id, int attempt, int64_t retry_after_ms, int64_t next_at)
{
    char cid[CMN_UUID_STR_LEN + 1];
    th_worker_comm_id(TENANT, request_id, cid);
    json_object *ev = event_at(st, request_id, "retry_scheduled", attempt);
    cr_assert_not_null(ev, "%s: no retry_scheduled at attempt %d", request_id, attempt);
    json_object *det = cmn_json_get_object(ev, "details");
    cr_assert_not_null(det, "%s: retry_scheduled without details", request_id);
    cr_expect_eq(num(ev, "hop"), 0);
    cr_expect_eq(num(det, "next_attempt"), attempt + 1, "%s", request_id);
    cr_expect_str_eq(str(det, "topic"), "crm.retry.sms.5s", "%s", request_id);
    cr_expect_eq(num(det, "retry_after_ms"), retry_after_ms, "%s: the provider's hint is kept", request_id);
    cr_expect_geq(num(det, "delay_ms"), retry_after_ms, "%s: the wait is at least Retry-After", request_id);
    cr_expect_leq(num(det, "delay_ms"), retry_after_ms, "%s: a 200-400 ms window never outlasts the hint",
                  request_id);
    const char *text = retry_after_ms == 7000 ? "Too Many Requests" : "Service Unavailable";
    const char *msg = str(ev, "error_message");
    cr_expect(strlen(msg) >= strlen(text) && strcmp(msg + strlen(msg) - strlen(text), text) == 0,
              "%s: the failed attempt's error, got '%s'", request_id, msg);
    int64_t due = time_of(det, "due_at");

    int k = record_at(vals, n, cid, attempt + 1);
    cr_assert_geq(k, 0, "%s: no Dispatch with attempt %d on crm.retry.sms.5s", request_id, attempt + 1);
    cr_expect_str_eq(recs[k].key, "client-1", "the tier record keeps the client's key");
    json_object *h = json_tokener_parse(recs[k].headers_json);
    cr_assert_not_null(h);
    char due_text[32];
    snprintf(due_text, sizeof due_text, "%lld", (long long)due);
    cr_expect_str_eq(str(h, "x-crm-due-at"), due_text, "%s: x-crm-due-at is the event's due_at", request_id);
    cr_expect_str_eq(str(h, "x-crm-target"), "crm.send.sms");
    cr_expect_not_null(strstr(str(h, "traceparent"), TRACE_ID), "%s: trace lost: %s", request_id,
                       recs[k].headers_json);
    json_object_put(h);
    cr_expect_str_eq(str(vals[k], "channel"), "sms");
    cr_expect_eq(num(vals[k], "hop"), 0);

    cr_expect_geq(next_at, due, "%s: attempt %d reached the provider %lld ms before it was due", request_id,
                  attempt + 1, (long long)(due - next_at));
}

/* ----------------------------------------------------------------- tests */

Test(worker_retry, retries_then_dead_or_fallback, .timeout = 300)
{
    fixture_t fx;
    fixture_init(&fx, "main");
    start_worker(&fx, "3");

    int64_t now = cmn_now_ms();
    /* 503 + Retry-After: 2 three times, nothing to fall back to: dead. */
    produce(&fx, "rt-dead", "+33612320503", NULL, NULL, 0);
    /* Unsubscribed: permanent, falls back to email at once. */
    produce(&fx, "rt-stop", "+33612321610", "[\"email\"]", "ana@example.com", 0);
    /* 503 three times with a plan: the exhausted channel falls back. */
    produce(&fx, "rt-tired", "+33612420503", "[\"email\"]", "bob@example.com", 0);
    /* 500 after the deadline: no retry, dead. */
    produce(&fx, "rt-late", "+33612420500", NULL, NULL, now - 60000);
    /* 429 whose Retry-After (7 s) would overshoot a deadline 5 s away. */
    produce(&fx, "rt-soon", "+33612520429", NULL, NULL, now + 5000);
    /* A control that goes through. */
    produce(&fx, "rt-ok", "+33612345678", NULL, NULL, 0);

    /* sending x3 + retry_scheduled x2 + dead, sending + fallback,
     * sending x3 + retry_scheduled x2 + fallback, sending + dead,
     * sending + dead, sending + sent. */
    th_statuses_t st;
    th_worker_read_statuses(&fx.w, 20, &st);
    cr_assert_eq(st.n, 20, "expected 20 status events, got %zu (worker log: %s)", st.n, fx.w.proc.log_path);
    th_statuses_expect_traced(&fx.w, &st);
    cr_expect_eq(th_status_count(&st, "rt-dead", "sending"), 3);
    cr_expect_eq(th_status_count(&st, "rt-dead", "retry_scheduled"), 2);
    cr_expect_eq(th_status_count(&st, "rt-tired", "sending"), 3);
    cr_expect_eq(th_status_count(&st, "rt-tired", "retry_scheduled"), 2);
    for (size_t i = 0; i < st.n; i++)
        cr_expect_str_neq(str(st.objs[i], "status"), "failed", "nothing here is a plain failure: %s",
                          json_object_to_json_string(st.objs[i]));

    json_object *reqs = th_twilio_wait_requests(&fx.sandbox, 10, 30000);
    cr_assert_not_null(reqs);
    cr_expect_eq(json_object_array_length(reqs), 10, "the sandbox got %zu requests",
                 json_object_array_length(reqs));
    int64_t dead_at[4], tired_at[4], other[4];
    cr_assert_eq(request_times(reqs, "+33612320503", dead_at, 4), 3, "rt-dead is tried RETRY_MAX_ATTEMPTS times");
    cr_assert_eq(request_times(reqs, "+33612420503", tired_at, 4), 3);
    cr_expect_eq(request_times(reqs, "+33612321610", other, 4), 1, "a permanent failure is not retried");
    cr_expect_eq(request_times(reqs, "+33612420500", other, 4), 1, "no retry after the deadline");
    cr_expect_eq(request_times(reqs, "+33612520429", other, 4), 1, "no retry past the deadline");

    /* ---- the retry tier: each retry once, with its headers. */
    size_t ntier = 0;
    th_kafka_record_t *tier = th_kafka_read_all(fx.w.brokers, "crm.retry.sms.5s", 4, 30000, &ntier);
    cr_assert_eq(ntier, 4, "four retries went through crm.retry.sms.5s, got %zu", ntier);
    json_object **tv = parse_values(tier, ntier);
    expect_retry(&st, tier, tv, ntier, "rt-dead", 1, 2000, dead_at[1]);
    expect_retry(&st, tier, tv, ntier, "rt-dead", 2, 2000, dead_at[2]);
    expect_retry(&st, tier, tv, ntier, "rt-tired", 1, 2000, tired_at[1]);
    expect_retry(&st, tier, tv, ntier, "rt-tired", 2, 2000, tired_at[2]);

    /* ---- dead after the last attempt. */
    json_object *ev = th_status_of(&st, "rt-dead", "dead");
    cr_expect_eq(num(ev, "attempt"), 3);
    cr_expect_str_eq(str(ev, "reason"), "attempts_exhausted");
    cr_expect_str_eq(str(ev, "error_code"), "20503");
    cr_expect_eq(num(cmn_json_get_object(ev, "details"), "attempts"), 3);
    cr_expect_eq(num(cmn_json_get_object(ev, "details"), "retry_after_ms"), 2000, "the last hint is kept");
    ev = th_status_of(&st, "rt-late", "dead");
    cr_expect_eq(num(ev, "attempt"), 1);
    cr_expect_str_eq(str(ev, "reason"), "deadline_exceeded");
    cr_expect_str_eq(str(ev, "error_code"), "20500");
    ev = th_status_of(&st, "rt-soon", "dead");
    cr_expect_eq(num(ev, "attempt"), 1);
    cr_expect_str_eq(str(ev, "reason"), "deadline_exceeded");
    cr_expect_eq(th_status_count(&st, "rt-ok", "sent"), 1);

    /* ---- crm.dlq: the three dead Dispatches as last consumed. */
    size_t ndlq = 0;
    th_kafka_record_t *dlq = th_kafka_read_all(fx.w.brokers, "crm.dlq", 3, 30000, &ndlq);
    cr_assert_eq(ndlq, 3, "three dead letters, got %zu", ndlq);
    const char *const reasons[] = {"retries exhausted: 3 attempts on sms, last error 20503: ",
                                   "deadline exceeded: attempt 1 on sms failed after the deadline, last error 20500",
                                   "deadline exceeded: attempt 1 on sms failed and the next would be due", NULL};
    int seen[3];
    th_worker_check_dlq(&fx.w, dlq, ndlq, "crm-sms-worker", "client-1", reasons, seen);
    for (int k = 0; k < 3; k++)
        cr_expect_eq(seen[k], 1, "reason '%s' seen %d times", reasons[k], seen[k]);
    json_object **dv = parse_values(dlq, ndlq);
    char cid[CMN_UUID_STR_LEN + 1];
    th_worker_comm_id(TENANT, "rt-dead", cid);
    cr_expect_geq(record_at(dv, ndlq, cid, 3), 0, "the DLQ copy is the Dispatch of the last attempt");
    for (size_t i = 0; i < ndlq; i++)
        cr_expect_not_null(strstr(dlq[i].headers_json, TRACE_ID), "trace lost on the DLQ: %s", dlq[i].headers_json);
    free_values(dv, ndlq);

    /* ---- fallback: the status names both channels, and email gets hop 1. */
    ev = th_status_of(&st, "rt-stop", "fallback");
    json_object *det = cmn_json_get_object(ev, "details");
    cr_expect_str_eq(str(ev, "channel"), "sms");
    cr_expect_eq(num(ev, "hop"), 0);
    cr_expect_eq(num(ev, "attempt"), 1);
    cr_expect_str_eq(str(ev, "error_code"), "21610");
    cr_expect_str_eq(str(ev, "reason"), "unsubscribed");
    cr_expect_str_eq(str(det, "from"), "sms");
    cr_expect_str_eq(str(det, "to"), "email");
    cr_expect_str_eq(str(det, "why"), "permanent");
    ev = th_status_of(&st, "rt-tired", "fallback");
    det = cmn_json_get_object(ev, "details");
    cr_expect_eq(num(ev, "attempt"), 3);
    cr_expect_str_eq(str(ev, "reason"), "attempts_exhausted");
    cr_expect_str_eq(str(ev, "error_code"), "20503");
    cr_expect_str_eq(str(det, "from"), "sms");
    cr_expect_str_eq(str(det, "to"), "email");

    size_t nemail = 0;
    th_kafka_record_t *email = th_kafka_read_all(fx.w.brokers, "crm.send.email", 2, 30000, &nemail);
    cr_assert_eq(nemail, 2, "two Dispatches on crm.send.email, got %zu", nemail);
    json_object **ev_email = parse_values(email, nemail);
    const char *const rids[] = {"rt-stop", "rt-tired"};
    const char *const addrs[] = {"ana@example.com", "bob@example.com"};
    for (int r = 0; r < 2; r++) {
        th_worker_comm_id(TENANT, rids[r], cid);
        int k = record_at(ev_email, nemail, cid, 1);
        cr_assert_geq(k, 0, "%s: no email Dispatch", rids[r]);
        json_object *d = ev_email[k];
        cr_expect_str_eq(str(d, "channel"), "email");
        cr_expect_eq(num(d, "hop"), 1);
        cr_expect_eq(num(d, "attempt"), 1);
        cr_expect_str_eq(str(d, "to"), addrs[r]);
        cr_expect_str_eq(str(d, "request_id"), rids[r]);
        cr_expect_str_eq(str(d, "message_type"), "welcome");
        cr_expect_str_eq(str(cmn_json_get_object(d, "recipient"), "email"), addrs[r]);
        json_object *plan = json_object_object_get(d, "fallback");
        cr_expect(plan == NULL || json_object_array_length(plan) == 0, "nothing left of the plan: %s",
                  email[k].value);
        cr_expect_str_eq(email[k].key, "client-1");
        cr_expect_not_null(strstr(email[k].headers_json, TRACE_ID), "trace lost: %s", email[k].headers_json);
        cr_expect_null(strstr(email[k].headers_json, "x-crm-due-at"), "a fallback goes now: %s",
                       email[k].headers_json);
    }
    free_values(ev_email, nemail);

    /* Nothing more happens after dead or fallback. */
    size_t nlater = 0;
    th_kafka_record_t *later = th_kafka_read_all(fx.w.brokers, "crm.status", 21, 4000, &nlater);
    cr_expect_eq(nlater, 20, "no event after the last one expected, got %zu", nlater);
    th_kafka_records_free(later, nlater);

    char metrics[65536];
    cr_expect_eq(th_worker_metrics(&fx.w, metrics, sizeof metrics), 200);
    cr_expect_not_null(strstr(metrics, "sms_retries_total 4"), "%s", metrics);
    cr_expect_not_null(strstr(metrics, "sms_fallback_total 2"), "%s", metrics);
    cr_expect_not_null(strstr(metrics, "sms_dead_total 3"), "%s", metrics);
    cr_expect_not_null(strstr(metrics, "sms_dlq_total 0"), "dead letters are not unreadable records: %s", metrics);

    /* Addresses stay out of the log even though reasons quote providers. */
    const char *const forbidden[] = {"ana@example.com", "bob@example.com", "+33612320503", "+33612420503", NULL};
    th_worker_expect_clean_log(&fx.w, forbidden);

    free_values(tv, ntier);
    th_kafka_records_free(tier, ntier);
    th_kafka_records_free(dlq, ndlq);
    th_kafka_records_free(email, nemail);
    json_object_put(reqs);
    th_statuses_free(&st);
    fixture_fini(&fx);
}

Test(worker_retry, retry_after_longer_than_a_tier_is_honoured, .timeout = 240)
{
    fixture_t fx;
    fixture_init(&fx, "429");
    start_worker(&fx, "2");

    /* 429 with Retry-After: 7 twice: one retry, then dead. */
    produce(&fx, "rt-429", "+33612320429", NULL, NULL, 0);
    th_statuses_t st;
    th_worker_read_statuses(&fx.w, 4, &st);
    cr_assert_eq(st.n, 4, "sending, retry_scheduled, sending, dead; got %zu (log: %s)", st.n, fx.w.proc.log_path);
    json_object *reqs = th_twilio_wait_requests(&fx.sandbox, 2, 30000);
    cr_assert_not_null(reqs);
    int64_t at[3];
    cr_assert_eq(request_times(reqs, "+33612320429", at, 3), 2);

    json_object *ev = event_at(&st, "rt-429", "retry_scheduled", 1);
    cr_assert_not_null(ev);
    json_object *det = cmn_json_get_object(ev, "details");
    int64_t due = time_of(det, "due_at");
    cr_expect_geq(due - time_of(ev, "occurred_at"), 7000 - 1000, "due_at is the Retry-After from now");
    /* Attempt 1 was answered before the worker planned the retry, so a
     * wait of at least Retry-After puts attempt 2 7 s or more after it. */
    cr_expect_geq(at[1] - at[0], 7000, "attempt 2 came %lld ms after attempt 1, before Retry-After: 7",
                  (long long)(at[1] - at[0]));
    cr_expect_geq(at[1], due);

    /* A 7 s wait takes the 5s tier and is re-delayed through it once more
     * when released early: every copy keeps the same headers. */
    size_t ntier = 0;
    th_kafka_record_t *tier = th_kafka_read_all(fx.w.brokers, "crm.retry.sms.5s", 2, 20000, &ntier);
    cr_assert_geq(ntier, 1);
    json_object **tv = parse_values(tier, ntier);
    expect_retry(&st, tier, tv, ntier, "rt-429", 1, 7000, at[1]);
    char due_text[32];
    snprintf(due_text, sizeof due_text, "%lld", (long long)due);
    for (size_t i = 0; i < ntier; i++)
        cr_expect_not_null(strstr(tier[i].headers_json, due_text), "copy %zu: %s", i, tier[i].headers_json);
    free_values(tv, ntier);

    ev = th_status_of(&st, "rt-429", "dead");
    cr_expect_eq(num(ev, "attempt"), 2);
    cr_expect_str_eq(str(ev, "reason"), "attempts_exhausted");
    cr_expect_str_eq(str(ev, "error_code"), "20429");

    th_kafka_records_free(tier, ntier);
    json_object_put(reqs);
    th_statuses_free(&st);
    fixture_fini(&fx);
}
