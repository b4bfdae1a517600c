/* test_sms_worker.c - the real crm-sms-worker binary between the Kafka mock
 * cluster and the Twilio sandbox (crm-sandbox-twilio, which validates every
 * request against Twilio's official OpenAPI file).
 *
 * Dispatches produced to crm.send.sms must reach the sandbox with exactly
 * the parameters Twilio expects (To, From, Body rendered from the SMS
 * template, StatusCallback carrying the communication, MediaUrl for MMS),
 * with sending + sent (the SM sid, the encoding and segment count) on
 * crm.status; numbers that cannot receive SMS and over-long bodies fail
 * without reaching Twilio; Twilio's refusals are classified (21610
 * permanent, 429 retryable with its Retry-After); malformed records go to
 * crm.dlq; a sender is rate limited; and SIGTERM finishes the request in
 * flight, reports it and exits 0. The sandbox itself is checked as an
 * oracle: it must refuse what Twilio refuses, and its status callbacks must
 * be signed the way Twilio signs them. */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crm/http.h"
#include "crm/json.h"
#include "crm/log.h"
#include "crm/time.h"
#include "crm/uuid.h"
#include "th_kafka.h"
#include "th_proc.h"
#include "th_twilio.h"
#include "th_worker.h"

#define TENANT "acme"
#define FROM_NUMBER "+14155552345"
#define SERVICE_SID "MG0123456789abcdef0123456789abcdef"
#define TRACEPARENT "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
#define CALLBACK_BASE "https://hooks.crm.example/webhooks/twilio/status"

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

/* Starts crm-sms-worker; extra is NULL or a NULL-terminated NAME=value list
 * that adds to or replaces the defaults below (and th_worker_start's). */
static void start_worker(fixture_t *fx, const char *const *extra)
{
    char api[128], tmpl[600], group[128];
    snprintf(api, sizeof api, "TWILIO_API_URL=%s", fx->sandbox.url);
    snprintf(tmpl, sizeof tmpl, "SMS_TEMPLATES_DIR=%s/templates", CRM_SOURCE_DIR);
    snprintf(group, sizeof group, "SMS_GROUP_ID=sms-test-%s", fx->w.name);
    const char *const defaults[] = {api, "TWILIO_ACCOUNT_SID=" TH_TWILIO_ACCOUNT_SID,
                                    "TWILIO_AUTH_TOKEN=" TH_TWILIO_AUTH_TOKEN, "TWILIO_PHONE_NUMBER=" FROM_NUMBER,
                                    "SMS_STATUS_CALLBACK_URL=" CALLBACK_BASE, tmpl, group, "TWILIO_TIMEOUT_MS=20000",
                                    /* Fast enough that the test does not wait on the
                                     * limiter; one test below checks the limiter. */
                                    "SMS_RATE_PER_SECOND=50", "SMS_RATE_BURST=10", NULL};
    th_worker_start(&fx->w, "crm-sms-worker", defaults, extra);
}

static void fixture_fini(fixture_t *fx)
{
    th_worker_stop(&fx->w);
    th_twilio_stop(&fx->sandbox);
    th_kafka_stop(fx->w.kafka);
}

/* ------------------------------------------------------------ dispatches */

typedef struct dspec {
    const char *request_id;
    const char *channel; /* NULL: "sms" */
    const char *to;
    const char *name;    /* recipient.name, may be NULL */
    const char *locale;
    const char *message_type;
    const char *context; /* JSON object text or NULL */
    int hop, attempt;    /* 0 and 0 mean 0 and 1 */
} dspec_t;

static void produce_dispatch(fixture_t *fx, const dspec_t *s)
{
    th_dispatch_t d = {.tenant = TENANT, .request_id = s->request_id, .channel = s->channel != NULL ? s->channel : "sms",
                       .to = s->to, .name = s->name, .locale = s->locale, .message_type = s->message_type,
                       .context = s->context, .hop = s->hop, .attempt = s->attempt};
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

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
        n += (*p & 0xc0) != 0x80;
    return n;
}


/* ----------------------------------------------------------------- tests */

Test(sms_worker, sends_through_twilio_and_classifies_outcomes, .timeout = 240)
{
    fixture_t fx;
    fixture_init(&fx, "main");
    /* One attempt each: the retryable refusals end `dead` here (their
     * retries are test_worker_retry.c's). */
    start_worker(&fx, (const char *const[]){"SMS_MAX_IN_FLIGHT=4", "RETRY_MAX_ATTEMPTS=1", NULL});

    char long_name[120];
    memset(long_name, 'X', 100);
    long_name[100] = '\0';
    char long_ctx[256];
    snprintf(long_ctx, sizeof long_ctx, "{\"company\":{\"name\":\"%s\"},\"login_url\":\"https://crm.example/login\"}",
             long_name);
    /* A company name of 1,600 characters makes a welcome body of 1,601+. */
    static char huge_ctx[2048];
    int hn = snprintf(huge_ctx, sizeof huge_ctx, "{\"company\":{\"name\":\"");
    memset(huge_ctx + hn, 'Y', 1600);
    snprintf(huge_ctx + hn + 1600, sizeof huge_ctx - (size_t)hn - 1600, "\"}}");

    dspec_t ok_fr = {"req-fr", NULL, "+33612345678", "Zoë", "fr-CA", "appointment_reminder",
                     "{\"company\":{\"name\":\"Clinique Ésope\"},\"appointment\":{\"date\":\"24/11/2026\","
                     "\"time\":\"14 h 30\",\"location\":\"Cabinet <Nord>\"}}",
                     1, 2};
    dspec_t two_parts = {"req-long", NULL, "+4915112345678", "Ana", "en", "welcome", long_ctx, 0, 0};
    dspec_t ucs2 = {"req-es", NULL, "+34612345678", "Ana", "es", "welcome", "{\"company\":{\"name\":\"Ésope\"}}", 0, 0};
    dspec_t mms = {"req-mms", NULL, "+33612345679", "Bob", "en", "payment_receipt",
                   "{\"amount\":\"€42.00\",\"media_urls\":[\"https://cdn.crm.example/r/1001.png\","
                   "\"https://cdn.crm.example/r/1001-2.png\"]}",
                   0, 0};
    dspec_t landline = {"req-landline", NULL, "+33142685300", "Carol", "fr", "welcome", NULL, 0, 0};
    dspec_t invalid = {"req-invalid", NULL, "+3361234567890", "Dan", "fr", "welcome", NULL, 0, 0};
    dspec_t stop = {"req-21610", NULL, "+33612321610", "Eve", "en", "welcome", NULL, 0, 0};
    dspec_t busy = {"req-429", NULL, "+33612320429", "Frank", "en", "welcome", NULL, 0, 0};
    dspec_t down = {"req-500", NULL, "+33612320500", "Grace", "en", "welcome", NULL, 0, 0};
    dspec_t bad_to = {"req-21211", NULL, "+33612321211", "Heidi", "en", "welcome", NULL, 0, 0};
    dspec_t too_long = {"req-toolong", NULL, "+33612345670", "Ivan", "en", "welcome", huge_ctx, 0, 0};
    dspec_t email = {"req-email", "email", "judy@example.com", "Judy", "en", "welcome", NULL, 0, 0};

    produce_dispatch(&fx, &ok_fr);
    produce_dispatch(&fx, &two_parts);
    produce_dispatch(&fx, &ucs2);
    produce_dispatch(&fx, &mms);
    produce_dispatch(&fx, &landline);
    produce_dispatch(&fx, &invalid);
    produce_dispatch(&fx, &stop);
    produce_dispatch(&fx, &busy);
    produce_dispatch(&fx, &down);
    produce_dispatch(&fx, &bad_to);
    produce_dispatch(&fx, &too_long);
    th_worker_produce(&fx.w, "client-1", "{\"v\":1, not json");
    produce_dispatch(&fx, &email);

    /* 8 reached Twilio (sending + sent/failed), 3 failed before (failed only). */
    th_statuses_t st;
    th_worker_read_statuses(&fx.w, 19, &st);
    cr_assert_eq(st.n, 19, "expected 19 status events, got %zu (worker log: %s)", st.n, fx.w.proc.log_path);
    size_t ndlq = 0;
    th_kafka_record_t *dlq = th_kafka_read_all(fx.w.brokers, "crm.dlq", 4, 30000, &ndlq);
    cr_assert_eq(ndlq, 4, "four records on crm.dlq (two unreadable, two dead), got %zu", ndlq);
    json_object *reqs = th_twilio_wait_requests(&fx.sandbox, 8, 10000);
    cr_assert_not_null(reqs);
    cr_assert_eq(json_object_array_length(reqs), 8, "the sandbox got %zu requests",
                 json_object_array_length(reqs));

    /* ---- the French reminder: exact parameters, fr-CA falls back to fr. */
    char cid[CMN_UUID_STR_LEN + 1], expect[512];
    int count = 0;
    th_worker_comm_id(TENANT, "req-fr", cid);
    json_object *r = th_twilio_find(reqs, "+33612345678", &count);
    cr_assert_eq(count, 1);
    json_object *p = cmn_json_get_object(r, "params");
    cr_expect_eq(num(r, "status"), 201);
    cr_expect_str_eq(str(r, "account_sid"), TH_TWILIO_ACCOUNT_SID);
    cr_expect_str_eq(str(r, "content_type"), "application/x-www-form-urlencoded");
    cr_expect_str_eq(str(p, "To"), "+33612345678");
    cr_expect_str_eq(str(p, "From"), FROM_NUMBER);
    const char *body_fr = "Clinique Ésope : rappel de votre rendez-vous le 24/11/2026 à 14 h 30, Cabinet <Nord>.";
    cr_expect_str_eq(str(p, "Body"), body_fr);
    snprintf(expect, sizeof expect, CALLBACK_BASE "?communication_id=%s&hop=1&attempt=2", cid);
    cr_expect_str_eq(str(p, "StatusCallback"), expect);
    cr_expect_eq(json_object_object_length(p), 4, "only To, From, Body, StatusCallback: %s",
                 json_object_to_json_string(p));
    json_object *sending = th_status_of(&st, "req-fr", "sending");
    json_object *sent = th_status_of(&st, "req-fr", "sent");
    cr_expect_str_eq(str(sent, "provider_message_id"), str(r, "sid"));
    cr_expect_eq(strncmp(str(sent, "provider_message_id"), "SM", 2), 0);
    cr_expect_eq(strlen(str(sent, "provider_message_id")), 34);
    cr_expect_str_eq(str(sent, "provider"), "twilio");
    cr_expect_str_eq(str(sent, "channel"), "sms");
    cr_expect_str_eq(str(sent, "reason"), "twilio_status: queued");
    cr_expect_eq(num(sent, "hop"), 1);
    cr_expect_eq(num(sent, "attempt"), 2);
    json_object *details = cmn_json_get_object(sent, "details");
    cr_assert_not_null(details, "sent has no details: %s", json_object_to_json_string(sent));
    cr_expect_str_eq(str(details, "encoding"), "GSM-7");
    cr_expect_eq(num(details, "segments"), 1);
    cr_expect_eq(num(details, "characters"), (int64_t)utf8_chars(body_fr));
    details = cmn_json_get_object(sending, "details");
    cr_assert_not_null(details, "sending has no details");
    cr_expect_eq(num(details, "segments"), 1);

    /* ---- two segments, and UCS-2. */
    r = th_twilio_find(reqs, "+4915112345678", &count);
    cr_assert_eq(count, 1);
    const char *body_long = str(cmn_json_get_object(r, "params"), "Body");
    cr_expect_gt(utf8_chars(body_long), 160);
    details = cmn_json_get_object(th_status_of(&st, "req-long", "sent"), "details");
    cr_expect_str_eq(str(details, "encoding"), "GSM-7");
    cr_expect_eq(num(details, "segments"), 2);
    cr_expect_eq(num(details, "characters"), (int64_t)utf8_chars(body_long));
    r = th_twilio_find(reqs, "+34612345678", &count);
    cr_assert_eq(count, 1);
    cr_expect_str_eq(str(cmn_json_get_object(r, "params"), "Body"),
                     "¡Bienvenido a Ésope, Ana! Su cuenta está lista.");
    details = cmn_json_get_object(th_status_of(&st, "req-es", "sent"), "details");
    cr_expect_str_eq(str(details, "encoding"), "UCS-2", "á is not in GSM-7");
    cr_expect_eq(num(details, "segments"), 1);

    /* ---- MMS: one MediaUrl parameter per URL, an MM sid. */
    r = th_twilio_find(reqs, "+33612345679", &count);
    cr_assert_eq(count, 1);
    json_object *media = cmn_json_get_array(cmn_json_get_object(r, "params"), "MediaUrl");
    cr_assert_not_null(media);
    cr_assert_eq(json_object_array_length(media), 2);
    cr_expect_str_eq(json_object_get_string(json_object_array_get_idx(media, 0)), "https://cdn.crm.example/r/1001.png");
    cr_expect_str_eq(json_object_get_string(json_object_array_get_idx(media, 1)),
                     "https://cdn.crm.example/r/1001-2.png");
    cr_expect_eq(strncmp(str(th_status_of(&st, "req-mms", "sent"), "provider_message_id"), "MM", 2), 0);

    /* ---- refused before Twilio: no sending, no request. */
    json_object *f = th_status_of(&st, "req-landline", "failed");
    cr_expect_str_eq(str(f, "reason"), "landline");
    cr_expect_str_eq(str(f, "error_code"), "landline");
    cr_expect_eq(th_status_count(&st, "req-landline", "sending"), 0);
    cr_expect_null(th_twilio_find(reqs, "+33142685300", &count), "a landline reached Twilio");
    f = th_status_of(&st, "req-invalid", "failed");
    cr_expect_str_eq(str(f, "reason"), "invalid_number");
    cr_expect_eq(th_status_count(&st, "req-invalid", "sending"), 0);
    cr_expect_null(th_twilio_find(reqs, "+3361234567890", &count), "an invalid number reached Twilio");
    f = th_status_of(&st, "req-toolong", "failed");
    cr_expect_str_eq(str(f, "reason"), "body_too_long");
    cr_expect_str_eq(str(f, "error_code"), "body_too_long");
    cr_expect_gt(num(cmn_json_get_object(f, "details"), "characters"), 1600);
    cr_expect_eq(th_status_count(&st, "req-toolong", "sending"), 0);
    cr_expect_null(th_twilio_find(reqs, "+33612345670", &count), "an over-long body reached Twilio");

    /* ---- Twilio's refusals. */
    f = th_status_of(&st, "req-21610", "failed");
    th_status_of(&st, "req-21610", "sending");
    cr_expect_str_eq(str(f, "error_code"), "21610");
    cr_expect_str_eq(str(f, "reason"), "unsubscribed");
    cr_expect_str_eq(str(f, "error_message"), "Attempt to send to unsubscribed recipient");
    f = th_status_of(&st, "req-429", "dead");
    cr_expect_str_eq(str(f, "reason"), "attempts_exhausted");
    cr_expect_str_eq(str(f, "error_code"), "20429");
    cr_expect_str_eq(str(f, "error_message"), "retryable: Too Many Requests");
    cr_expect_eq(num(cmn_json_get_object(f, "details"), "retry_after_ms"), 7000, "Retry-After: 7 is kept: %s",
                 json_object_to_json_string(f));
    f = th_status_of(&st, "req-500", "dead");
    cr_expect_str_eq(str(f, "error_code"), "20500");
    cr_expect_eq(strncmp(str(f, "error_message"), "retryable: ", 11), 0, "%s", str(f, "error_message"));
    f = th_status_of(&st, "req-21211", "failed");
    cr_expect_str_eq(str(f, "error_code"), "21211");
    cr_expect_str_eq(str(f, "reason"), "invalid_number");
    /* Twilio quotes the number; the event must not. */
    cr_expect_str_eq(str(f, "error_message"), "The 'To' number <phone> is not a valid phone number.");

    /* ---- the DLQ: malformed JSON, another channel's dispatch, and the two
     * dead letters. */
    const char *const reasons[] = {"malformed JSON", "wrong channel: a email dispatch",
                                   "retries exhausted: 1 attempts on sms, last error 20429",
                                   "retries exhausted: 1 attempts on sms, last error 20500", NULL};
    int seen[4];
    th_worker_check_dlq(&fx.w, dlq, ndlq, "crm-sms-worker", NULL, reasons, seen);
    for (size_t k = 0; reasons[k] != NULL; k++)
        cr_expect_eq(seen[k], 1, "%s", reasons[k]);
    th_kafka_records_free(dlq, ndlq);
    th_statuses_expect_traced(&fx.w, &st);
    th_statuses_free(&st);
    json_object_put(reqs);

    /* Metrics. */
    static char body[1 << 16];
    cr_expect_eq(th_worker_metrics(&fx.w, body, sizeof body), 200);
    cr_expect_not_null(strstr(body, "sms_sent_total 4"), "%s", body);
    cr_expect_not_null(strstr(body, "sms_failed_total{class=\"permanent\"} 5"), "%s", body);
    cr_expect_not_null(strstr(body, "sms_failed_total{class=\"retryable\"} 2"), "%s", body);

    /* SIGTERM: a clean exit. */
    cr_expect_eq(th_worker_stop(&fx.w), 0, "exit status after SIGTERM; see %s", fx.w.proc.log_path);

    /* Numbers, bodies and the token never reach the log. */
    const char *log = th_worker_log(&fx.w);
    const char *secrets[] = {"33612345678", "33142685300", "3361234567890", "33612321211", "4915112345678",
                             "rappel de votre", "Bienvenido", TH_TWILIO_AUTH_TOKEN, NULL};
    for (size_t i = 0; secrets[i] != NULL; i++)
        cr_expect_null(strstr(log, secrets[i]), "the worker log contains %s", secrets[i]);
    fixture_fini(&fx);
}

Test(sms_worker, messaging_service_without_callback, .timeout = 120)
{
    fixture_t fx;
    fixture_init(&fx, "mss");
    start_worker(&fx, (const char *const[]){"TWILIO_PHONE_NUMBER=", "TWILIO_MESSAGING_SERVICE_SID=" SERVICE_SID,
                                            "SMS_STATUS_CALLBACK_URL=", NULL});
    dspec_t d = {"mss-1", NULL, "+33612345678", "Ana", "de", "password_reset",
                 "{\"reset_url\":\"https://crm.example/r?t=1&u=2\",\"expires_in_minutes\":30}", 0, 0};
    produce_dispatch(&fx, &d);
    th_statuses_t st;
    th_worker_read_statuses(&fx.w, 2, &st);
    th_status_of(&st, "mss-1", "sent");
    json_object *reqs = th_twilio_wait_requests(&fx.sandbox, 1, 10000);
    int count = 0;
    json_object *r = th_twilio_find(reqs, "+33612345678", &count);
    cr_assert_eq(count, 1);
    json_object *p = cmn_json_get_object(r, "params");
    cr_expect_str_eq(str(p, "MessagingServiceSid"), SERVICE_SID);
    cr_expect_not(cmn_json_has(p, "From"), "no From with only a Messaging Service");
    cr_expect_not(cmn_json_has(p, "StatusCallback"), "no StatusCallback when none is configured");
    cr_expect_str_eq(str(p, "Body"), "Um ein neues Passwort zu wählen, öffnen Sie https://crm.example/r?t=1&u=2 "
                                     "(gültig für 30 Minuten). Falls Sie das nicht angefordert haben, ignorieren "
                                     "Sie diese Nachricht.");
    json_object_put(reqs);
    th_statuses_free(&st);
    cr_expect_eq(th_worker_stop(&fx.w), 0);
    fixture_fini(&fx);
}

Test(sms_worker, one_sender_is_rate_limited, .timeout = 120)
{
    enum { N = 5 };
    fixture_t fx;
    fixture_init(&fx, "rate");
    for (int i = 0; i < N; i++) {
        char rid[32], to[32];
        snprintf(rid, sizeof rid, "rate-%d", i);
        snprintf(to, sizeof to, "+3361234560%d", i);
        dspec_t d = {rid, NULL, to, "Ana", "en", "welcome", NULL, 0, 0};
        produce_dispatch(&fx, &d);
    }
    /* 2 per second, burst 1: five messages need at least 2 s between the
     * first and the last request, however many may be in flight. */
    start_worker(&fx, (const char *const[]){"SMS_RATE_PER_SECOND=2", "SMS_RATE_BURST=1", "SMS_MAX_IN_FLIGHT=8", NULL});
    json_object *reqs = th_twilio_wait_requests(&fx.sandbox, N, 60000);
    cr_assert_not_null(reqs);
    cr_assert_eq(json_object_array_length(reqs), N);
    int64_t first = 0, last = 0;
    cr_assert_eq(cmn_time_parse_rfc3339(str(json_object_array_get_idx(reqs, 0), "received_at"), &first), 0);
    cr_assert_eq(cmn_time_parse_rfc3339(str(json_object_array_get_idx(reqs, N - 1), "received_at"), &last), 0);
    cr_expect_geq(last - first, 1800, "5 messages at 2/s went out in %lld ms", (long long)(last - first));
    cr_log_info("5 messages at 2/s spread over %lld ms", (long long)(last - first));
    json_object_put(reqs);
    th_statuses_t st;
    th_worker_read_statuses(&fx.w, 2 * N, &st);
    cr_expect_eq(st.n, 2 * N);
    th_statuses_free(&st);
    cr_expect_eq(th_worker_stop(&fx.w), 0);
    fixture_fini(&fx);
}

Test(sms_worker, bad_configuration_stops_at_start)
{
    char bin[512], out[4096];
    cr_assert_not_null(th_bin("crm-sms-worker", bin, sizeof bin));
    char *const argv[] = {bin, NULL};
    struct {
        const char *var;
        char *env[6];
    } cases[] = {
        {"TWILIO_ACCOUNT_SID", {"TWILIO_ACCOUNT_SID=AC123", "TWILIO_AUTH_TOKEN=t", "TWILIO_PHONE_NUMBER=" FROM_NUMBER, NULL}},
        {"TWILIO_AUTH_TOKEN", {"TWILIO_ACCOUNT_SID=" TH_TWILIO_ACCOUNT_SID, "TWILIO_PHONE_NUMBER=" FROM_NUMBER, NULL}},
        {"TWILIO_PHONE_NUMBER", {"TWILIO_ACCOUNT_SID=" TH_TWILIO_ACCOUNT_SID, "TWILIO_AUTH_TOKEN=t", NULL}},
        {"TWILIO_PHONE_NUMBER", {"TWILIO_ACCOUNT_SID=" TH_TWILIO_ACCOUNT_SID, "TWILIO_AUTH_TOKEN=t",
                                 "TWILIO_PHONE_NUMBER=0612345678", NULL}},
        {"TWILIO_MESSAGING_SERVICE_SID", {"TWILIO_ACCOUNT_SID=" TH_TWILIO_ACCOUNT_SID, "TWILIO_AUTH_TOKEN=t",
                                          "TWILIO_MESSAGING_SERVICE_SID=MG1", NULL}},
        {"SMS_STATUS_CALLBACK_URL", {"TWILIO_ACCOUNT_SID=" TH_TWILIO_ACCOUNT_SID, "TWILIO_AUTH_TOKEN=t",
                                     "TWILIO_PHONE_NUMBER=" FROM_NUMBER, "SMS_STATUS_CALLBACK_URL=hooks.example/x", NULL}},
        {"TWILIO_API_URL", {"TWILIO_ACCOUNT_SID=" TH_TWILIO_ACCOUNT_SID, "TWILIO_AUTH_TOKEN=t",
                            "TWILIO_PHONE_NUMBER=" FROM_NUMBER, "TWILIO_API_URL=ftp://api.twilio.com", NULL}},
        {"SMS_RATE_BURST", {"TWILIO_ACCOUNT_SID=" TH_TWILIO_ACCOUNT_SID, "TWILIO_AUTH_TOKEN=t",
                            "TWILIO_PHONE_NUMBER=" FROM_NUMBER, "SMS_RATE_BURST=0", NULL}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = th_run(argv, cases[i].env, out, sizeof out, 30000);
        cr_expect_eq(rc, 2, "case %zu: exit code %d: %s", i, rc, out);
        cr_expect_not_null(strstr(out, cases[i].var), "case %zu: %s", i, out);
    }
    char *const env_ok[] = {"TWILIO_ACCOUNT_SID=" TH_TWILIO_ACCOUNT_SID, "TWILIO_AUTH_TOKEN=hunter2-secret",
                            "TWILIO_PHONE_NUMBER=" FROM_NUMBER, NULL};
    char *const argv_print[] = {bin, "--print-config", NULL};
    int rc = th_run(argv_print, env_ok, out, sizeof out, 30000);
    cr_expect_eq(rc, 0, "%s", out);
    cr_expect_not_null(strstr(out, "HTTP_PORT=9104"), "%s", out);
    cr_expect_not_null(strstr(out, "TWILIO_API_URL=https://api.twilio.com"), "%s", out);
    cr_expect_not_null(strstr(out, "SMS_RATE_PER_SECOND=1"), "%s", out);
    cr_expect_not_null(strstr(out, "SMS_RATE_BURST=1"), "%s", out);
    cr_expect_null(strstr(out, "hunter2-secret"), "the auth token was printed");
}

/* The sandbox is the oracle of the tests above, so it must itself refuse
 * what Twilio refuses and answer like Twilio. */
Test(sms_worker, sandbox_validates_like_twilio, .timeout = 60)
{
    th_twilio_t sb;
    char url[200], out[8192], retry[32];
    long status = 0;
    cr_assert_eq(th_twilio_start(&sb, NULL), 0);
    th_twilio_messages_url(sb.url, TH_TWILIO_ACCOUNT_SID, url, sizeof url);
    const char *ok = "To=%2B33612345678&From=%2B14155552345&Body=Hello%21+%F0%9F%91%8D"
                     "&StatusCallback=https%3A%2F%2Fhooks.crm.example%2Fs%3Fcommunication_id%3Dx";
    const char *A = TH_TWILIO_ACCOUNT_SID, *T = TH_TWILIO_AUTH_TOKEN;

    /* 201 shaped like the official example: the same members. */
    cr_assert_eq(th_twilio_post(url, A, T, NULL, ok, &status, out, sizeof out, NULL, 0), 0);
    cr_assert_eq(status, 201, "%s", out);
    char why[256];
    json_object *got = cmn_json_parse(out, strlen(out), why, sizeof why);
    cr_assert_not_null(got, "%s", why);
    FILE *f = fopen(CRM_SHARED_DIR "/oracles/twilio/webhook_and_error_examples.json", "r");
    cr_assert_not_null(f);
    static char oracle_text[1 << 16];
    size_t on = fread(oracle_text, 1, sizeof oracle_text - 1, f);
    oracle_text[on] = '\0';
    fclose(f);
    json_object *oracle = cmn_json_parse(oracle_text, on, why, sizeof why);
    cr_assert_not_null(oracle, "%s", why);
    json_object *example = cmn_json_get_object(
        cmn_json_get_object(cmn_json_get_object(oracle, "create_message"), "verbatim_201_examples"), "create");
    cr_assert_not_null(example);
    cr_expect_eq(json_object_object_length(got), json_object_object_length(example));
    json_object_object_foreach(example, key, val)
    {
        (void)val;
        cr_expect(cmn_json_has(got, key), "the 201 body lacks %s", key);
    }
    cr_expect_str_eq(str(got, "status"), "queued");
    cr_expect_str_eq(str(got, "body"), "Hello! 👍");
    cr_expect_str_eq(str(got, "num_segments"), "1");
    cr_expect_eq(strncmp(str(got, "sid"), "SM", 2), 0);
    json_object_put(got);
    json_object_put(oracle);

    struct {
        const char *what, *user, *pass, *ctype, *body;
        long status, code;
    } cases[] = {
        {"no auth", NULL, NULL, NULL, ok, 401, 20003},
        {"wrong token", A, "wrong", NULL, ok, 401, 20003},
        {"json body", A, T, "application/json", "{\"To\":\"+33612345678\"}", 400, 20001},
        {"unknown parameter", A, T, NULL, "To=%2B33612345678&From=%2B14155552345&Body=x&Tags=y", 400, 20001},
        {"missing To", A, T, NULL, "From=%2B14155552345&Body=x", 400, 21604},
        {"no sender", A, T, NULL, "To=%2B33612345678&Body=x", 400, 21603},
        {"no body", A, T, NULL, "To=%2B33612345678&From=%2B14155552345", 400, 21602},
        {"To not E.164", A, T, NULL, "To=0612345678&From=%2B14155552345&Body=x", 400, 21211},
        {"callback not a URL", A, T, NULL, "To=%2B33612345678&From=%2B14155552345&Body=x&StatusCallback=nope", 400,
         21609},
        {"underscore host", A, T, NULL,
         "To=%2B33612345678&From=%2B14155552345&Body=x&StatusCallback=https%3A%2F%2Fmy_host%2Fs", 400, 21609},
        {"enum", A, T, NULL, "To=%2B33612345678&From=%2B14155552345&Body=x&RiskCheck=maybe", 400, 20001},
        {"sid pattern", A, T, NULL, "To=%2B33612345678&MessagingServiceSid=MG12&Body=x", 400, 20001},
        {"repeated To", A, T, NULL, "To=%2B33612345678&To=%2B33612345679&From=%2B14155552345&Body=x", 400, 20001},
        {"bad escape", A, T, NULL, "To=%2B33612345678&From=%2B14155552345&Body=%E9t%C3", 400, 20001},
        {"scripted 21610", A, T, NULL, "To=%2B33612321610&From=%2B14155552345&Body=x", 400, 21610},
        {"scripted 500", A, T, NULL, "To=%2B33612320500&From=%2B14155552345&Body=x", 500, 20500},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert_eq(th_twilio_post(url, cases[i].user, cases[i].pass, cases[i].ctype, cases[i].body, &status, out,
                                    sizeof out, NULL, 0),
                     0);
        cr_expect_eq(status, cases[i].status, "%s: HTTP %ld %s", cases[i].what, status, out);
        json_object *e = cmn_json_parse(out, strlen(out), why, sizeof why);
        cr_assert_not_null(e, "%s: %s", cases[i].what, out);
        cr_expect_eq(num(e, "code"), cases[i].code, "%s: %s", cases[i].what, out);
        cr_expect_eq(num(e, "status"), cases[i].status, "%s: %s", cases[i].what, out);
        cr_expect_neq(str(e, "message")[0], '\0');
        json_object_put(e);
    }
    /* 1,601 characters are one too many (Twilio 21617). */
    static char long_body[2048];
    int n = snprintf(long_body, sizeof long_body, "To=%%2B33612345678&From=%%2B14155552345&Body=");
    memset(long_body + n, 'a', 1601);
    long_body[n + 1601] = '\0';
    cr_assert_eq(th_twilio_post(url, A, T, NULL, long_body, &status, out, sizeof out, NULL, 0), 0);
    cr_expect_eq(status, 400);
    cr_expect_not_null(strstr(out, "21617"), "%s", out);
    /* The account in the path must be the authenticated one. */
    char other[200];
    th_twilio_messages_url(sb.url, "AC0123456789abcdef0123456789abcdee", other, sizeof other);
    cr_assert_eq(th_twilio_post(other, A, T, NULL, ok, &status, out, sizeof out, NULL, 0), 0);
    cr_expect_eq(status, 401, "%s", out);
    /* 429 carries Retry-After. */
    cr_assert_eq(th_twilio_post(url, A, T, NULL, "To=%2B33612320429&From=%2B14155552345&Body=x", &status, out,
                                sizeof out, retry, sizeof retry),
                 0);
    cr_expect_eq(status, 429);
    cr_expect_str_eq(retry, "7");
    /* Every request was recorded, refused ones included; DELETE forgets. */
    json_object *reqs = th_twilio_requests(&sb);
    cr_assert_not_null(reqs);
    cr_expect_eq(json_object_array_length(reqs), 1 + sizeof cases / sizeof cases[0] + 3);
    json_object_put(reqs);
    cr_expect_eq(th_twilio_reset(&sb), 0);
    reqs = th_twilio_requests(&sb);
    cr_expect_eq(json_object_array_length(reqs), 0);
    json_object_put(reqs);
    th_twilio_stop(&sb);
}

/* ------------------------------------------------- sandbox status callbacks */

typedef struct callback_sink {
    pthread_mutex_t lock;
    int n;
    char url[8][256];
    char form[8][1024];
    char signature[8][64];
} callback_sink_t;

static void on_callback(void *ctx, const cmn_http_request_t *req, cmn_http_response_t *resp)
{
    callback_sink_t *s = ctx;
    const char *sig = cmn_http_request_header(req, "X-Twilio-Signature");
    const char *cid = cmn_http_request_query(req, "communication_id");
    pthread_mutex_lock(&s->lock);
    if (s->n < 8) {
        snprintf(s->url[s->n], sizeof s->url[0], "%s?communication_id=%s", req->path, cid != NULL ? cid : "");
        snprintf(s->form[s->n], sizeof s->form[0], "%.*s", (int)req->body_len, req->body);
        snprintf(s->signature[s->n], sizeof s->signature[0], "%s", sig != NULL ? sig : "");
        s->n++;
    }
    pthread_mutex_unlock(&s->lock);
    resp->status = 204;
}

/* Decodes one form-encoded component in place ('+' and %XX). */
static void form_decode(char *s)
{
    char *w = s;
    for (char *r = s; *r != '\0'; r++) {
        if (*r == '+') {
            *w++ = ' ';
        } else if (*r == '%' && r[1] != '\0' && r[2] != '\0') {
            char hex[3] = {r[1], r[2], '\0'};
            *w++ = (char)strtol(hex, NULL, 16);
            r += 2;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Twilio's X-Twilio-Signature of a form post: base64(HMAC-SHA1(token, URL
 * followed by every name and value, sorted by name)), computed here
 * independently of the sandbox. */
static void twilio_signature(const char *token, const char *url, const char *form, char out[64])
{
    char copy[1024], *pairs[16], data[2048];
    size_t n = 0;
    snprintf(copy, sizeof copy, "%s", form);
    for (char *save = NULL, *tok = strtok_r(copy, "&", &save); tok != NULL && n < 16; tok = strtok_r(NULL, "&", &save))
        pairs[n++] = tok;
    qsort(pairs, n, sizeof pairs[0], cmp_str);
    size_t len = (size_t)snprintf(data, sizeof data, "%s", url);
    for (size_t i = 0; i < n; i++) {
        char *eq = strchr(pairs[i], '=');
        *eq = '\0';
        form_decode(pairs[i]);
        form_decode(eq + 1);
        len += (size_t)snprintf(data + len, sizeof data - len, "%s%s", pairs[i], eq + 1);
    }
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    HMAC(EVP_sha1(), token, (int)strlen(token), (const unsigned char *)data, len, mac, &maclen);
    EVP_EncodeBlock((unsigned char *)out, mac, (int)maclen);
}

Test(sms_worker, sandbox_posts_signed_status_callbacks, .timeout = 60)
{
    callback_sink_t sink;
    memset(&sink, 0, sizeof sink);
    pthread_mutex_init(&sink.lock, NULL);
    cmn_log_t log;
    cmn_log_init(&log, "test-callbacks", "warn");
    char errstr[256];
    cmn_http_config_t hc = {.bind_address = "127.0.0.1", .port = 0, .threads = 2, .max_body_bytes = 8192,
                            .max_header_bytes = 8192, .timeout_seconds = 10, .handler = on_callback, .ctx = &sink,
                            .log = &log};
    cmn_http_server_t *srv = cmn_http_server_new(&hc, errstr, sizeof errstr);
    cr_assert_not_null(srv, "%s", errstr);
    th_twilio_t sb;
    cr_assert_eq(th_twilio_start(&sb, (const char *const[]){"--callbacks", "--callback-delay-ms", "50", NULL}), 0);
    char url[200], body[600], out[4096], cb[128];
    long status = 0;
    th_twilio_messages_url(sb.url, TH_TWILIO_ACCOUNT_SID, url, sizeof url);
    snprintf(cb, sizeof cb, "http://127.0.0.1:%d/twilio/status", cmn_http_server_port(srv));
    const char *to[] = {"%2B33612345678", "%2B33612330006"};
    const char *cid[] = {"ok", "landline"};
    for (int i = 0; i < 2; i++) {
        snprintf(body, sizeof body, "To=%s&From=%%2B14155552345&Body=hi&StatusCallback=%s%%3Fcommunication_id%%3D%s",
                 to[i], cb, cid[i]);
        cr_assert_eq(th_twilio_post(url, TH_TWILIO_ACCOUNT_SID, TH_TWILIO_AUTH_TOKEN, NULL, body, &status, out,
                                    sizeof out, NULL, 0),
                     0);
        cr_assert_eq(status, 201, "%s", out);
    }
    for (int i = 0; i < 100; i++) {
        pthread_mutex_lock(&sink.lock);
        int n = sink.n;
        pthread_mutex_unlock(&sink.lock);
        if (n >= 4)
            break;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    cmn_http_server_destroy(srv); /* no more posts land in sink after this */
    cr_assert_eq(sink.n, 4, "%d callbacks", sink.n);
    int delivered = 0, undelivered = 0, sent = 0;
    for (int i = 0; i < sink.n; i++) {
        char expect[64];
        /* The URL Twilio signs is the StatusCallback exactly as given. */
        char signed_url[300];
        snprintf(signed_url, sizeof signed_url, "%s?communication_id=%s", cb,
                 strstr(sink.url[i], "communication_id=") + strlen("communication_id="));
        twilio_signature(TH_TWILIO_AUTH_TOKEN, signed_url, sink.form[i], expect);
        cr_expect_str_eq(sink.signature[i], expect, "callback %d: %s", i, sink.form[i]);
        cr_expect_not_null(strstr(sink.form[i], "AccountSid=" TH_TWILIO_ACCOUNT_SID), "%s", sink.form[i]);
        cr_expect_not_null(strstr(sink.form[i], "MessageSid=SM"), "%s", sink.form[i]);
        sent += strstr(sink.form[i], "MessageStatus=sent") != NULL;
        delivered += strstr(sink.form[i], "MessageStatus=delivered") != NULL;
        if (strstr(sink.form[i], "MessageStatus=undelivered") != NULL) {
            undelivered++;
            cr_expect_not_null(strstr(sink.form[i], "ErrorCode=30006"), "%s", sink.form[i]);
            cr_expect_not_null(strstr(sink.url[i], "communication_id=landline"), "%s", sink.url[i]);
        }
    }
    cr_expect_eq(sent, 2);
    cr_expect_eq(delivered, 1);
    cr_expect_eq(undelivered, 1);
    th_twilio_stop(&sb);
    pthread_mutex_destroy(&sink.lock);
}

Test(sms_worker, sigterm_finishes_the_request_in_flight, .timeout = 120)
{
    fixture_t fx;
    fixture_init(&fx, "sigterm");
    start_worker(&fx, NULL);
    /* The sandbox answers ...883000 three seconds late, so the signal lands
     * while the request is in flight. */
    dspec_t slow = {"term-slow", NULL, "+33612883000", "Ana", "en", "welcome", NULL, 0, 0};
    produce_dispatch(&fx, &slow);
    th_statuses_t st;
    th_worker_read_statuses(&fx.w, 1, &st);
    cr_assert_eq(st.n, 1, "no sending before the signal");
    th_statuses_free(&st);
    int64_t signalled_at = cmn_now_ms();
    cr_expect_eq(th_worker_stop(&fx.w), 0, "exit status after SIGTERM; see %s", fx.w.proc.log_path);
    th_worker_read_statuses(&fx.w, 2, &st);
    json_object *sent = th_status_of(&st, "term-slow", "sent");
    int64_t sent_at = 0;
    cr_assert_eq(cmn_time_parse_rfc3339(str(sent, "occurred_at"), &sent_at), 0);
    cr_expect_geq(sent_at, signalled_at, "the slow message should have completed after the signal");
    th_statuses_free(&st);
    fixture_fini(&fx);
}
