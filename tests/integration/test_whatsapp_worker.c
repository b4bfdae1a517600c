/* test_whatsapp_worker.c - the real crm-whatsapp-worker between the Kafka
 * mock cluster, a private PostgreSQL (the conversations table, written by
 * the real `crmctl conversations set`) and the providers' sandboxes: the Meta
 * sandbox (tools/sandbox-meta, validating every body against Meta's official
 * examples) and the Twilio sandbox (tools/sandbox-twilio, validating against
 * Twilio's official OpenAPI file).
 *
 * Inside the 24-hour window free text goes out with the communication id in
 * biz_opaque_callback_data and `sent` carries the wamid; outside it the
 * approved template goes out; without a template the dispatch fails
 * (no_template_outside_window) without reaching the provider; Meta's 131047
 * is a permanent failure and 130429 a retryable one; malformed records go
 * to crm.dlq; through Twilio the same decisions become Body or
 * ContentSid/ContentVariables on whatsapp: addresses; with the database down
 * templates still go out. Phone numbers, the token and the data key never
 * reach the worker's log. */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "crm/buf.h"
#include "crm/json.h"
#include "crm/time.h"
#include "crm/uuid.h"
#include "th_kafka.h"
#include "th_pg.h"
#include "th_proc.h"
#include "th_twilio.h"
#include "th_worker.h"

#define TENANT "acme"
#define PHONE_NUMBER_ID "106540352242922"
#define ACCESS_TOKEN "EAAsandbox-7f3a9c-secret-token"
#define DATA_KEY "wa-test-data-key-1b7e5f0c9d2a4e6f8a0b"
#define TWILIO_FROM "+14155552345"
#define META_SANDBOX_BIN CRM_BINARY_DIR "/tools/sandbox-meta/crm-sandbox-meta"
#define META_EXAMPLES CRM_SHARED_DIR "/oracles/meta/cloud_api_examples.json"
#define TOPIC "crm.send.whatsapp"
#define TRACEPARENT "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

/* Recipients. The Meta sandbox fails on purpose for numbers ending in
 * 131047 (outside the window) and 130429 (throughput limit, HTTP 429); the
 * Twilio sandbox for numbers ending in 21610 (unsubscribed). */
#define P_OPEN "+14155550101"
#define P_CLOSED "+14155550102"
#define P_NONE "+14155550103"
#define P_BUTTONS "+14155550104"
#define P_131047 "+14155131047"
#define P_130429 "+14155130429"
#define P_21610 "+14155521610"

typedef struct fixture {
    th_worker_t w;
    char db_url[512];
    th_proc_t meta;
    int meta_port;
    int meta_running;
} fixture_t;

static void fixture_init(fixture_t *fx, const char *name)
{
    memset(fx, 0, sizeof *fx);
    th_worker_init(&fx->w, name, TENANT, TOPIC, TRACEPARENT);
    char db[64];
    snprintf(db, sizeof db, "wa_%s", name);
    cr_assert_eq(th_pg_database(db, fx->db_url, sizeof fx->db_url), 0, "PostgreSQL did not start");
}

static void meta_start(fixture_t *fx)
{
    char port[16];
    cr_assert_eq(access(META_SANDBOX_BIN, X_OK), 0, "%s is not built", META_SANDBOX_BIN);
    fx->meta_port = th_free_port();
    snprintf(port, sizeof port, "%d", fx->meta_port);
    char *const argv[] = {META_SANDBOX_BIN, "--phone-number-id", PHONE_NUMBER_ID, "--examples", META_EXAMPLES,
                          "--port", port, NULL};
    /* The token through the environment keeps it out of the process list. */
    char *const env[] = {"META_SANDBOX_ACCESS_TOKEN=" ACCESS_TOKEN, NULL};
    cr_assert_eq(th_proc_start(&fx->meta, "sandbox-meta", argv, env), 0);
    fx->meta_running = 1;
    cr_assert_eq(th_proc_wait_ready(&fx->meta, fx->meta_port, 20000), 0, "sandbox not ready; see %s",
                 fx->meta.log_path);
}

/* GET /_sandbox/requests of the Meta sandbox: a json-c array (caller puts). */
static json_object *meta_requests(const fixture_t *fx)
{
    static char body[1 << 20];
    char url[96], err[256];
    long status = 0;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/_sandbox/requests", fx->meta_port);
    cr_assert_eq(th_http("GET", url, NULL, NULL, &status, body, sizeof body), 0);
    cr_assert_eq(status, 200);
    json_object *arr = cmn_json_parse(body, strlen(body), err, sizeof err);
    cr_assert_not_null(arr, "%s", err);
    return arr;
}

/* The recorded request to `to` (digits, no '+'), or NULL; *count how many. */
static json_object *meta_find(json_object *arr, const char *to, int *count)
{
    json_object *found = NULL;
    *count = 0;
    for (size_t i = 0; i < json_object_array_length(arr); i++) {
        json_object *r = json_object_array_get_idx(arr, i);
        const char *rto = cmn_json_get_string(cmn_json_get_object(r, "body"), "to");
        if (rto != NULL && strcmp(rto, to) == 0) {
            found = r;
            (*count)++;
        }
    }
    return found;
}

/* `crmctl conversations set`: the real CLI, so the test also proves that it
 * and the worker hash numbers the same way. */
static void set_window(fixture_t *fx, const char *tenant, const char *phone, const char *last_inbound)
{
    char bin[512], out[2048], db[600];
    cr_assert_not_null(th_bin("crmctl", bin, sizeof bin), "crmctl is not built");
    snprintf(db, sizeof db, "DATABASE_URL=%s", fx->db_url);
    char *const argv[] = {bin, "conversations", "set", "--tenant", (char *)tenant, "--phone", (char *)phone,
                          "--last-inbound", (char *)last_inbound, NULL};
    char *const env[] = {db, "CRM_DATA_KEY=" DATA_KEY, NULL};
    int rc = th_run(argv, env, out, sizeof out, 60000);
    cr_assert_eq(rc, 0, "crmctl conversations set: %s", out);
    cr_expect_null(strstr(out, phone + 1), "crmctl printed the number: %s", out);
}

/* The documented phone hash, computed here independently of the worker and
 * crmctl: lowercase hex of HMAC-SHA256(CRM_DATA_KEY, E.164 with its '+'). */
static void phone_hash_hex(const char *e164, char hex[65])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    cr_assert_not_null(HMAC(EVP_sha256(), DATA_KEY, (int)strlen(DATA_KEY), (const unsigned char *)e164,
                            strlen(e164), mac, &len));
    cr_assert_eq(len, 32);
    for (unsigned int i = 0; i < len; i++)
        snprintf(hex + 2 * i, 3, "%02x", mac[i]);
}

static void hours_ago(int hours, char *out, size_t outlen)
{
    cmn_time_format_rfc3339(cmn_now_ms() - (int64_t)hours * 3600 * 1000, out, outlen);
}

static void start_worker(fixture_t *fx, const char *const *extra)
{
    char api[64], db[600], tmpl[600], file[600], group[128];
    snprintf(api, sizeof api, "WHATSAPP_API_URL=http://127.0.0.1:%d", fx->meta_port);
    snprintf(db, sizeof db, "DATABASE_URL=%s", fx->db_url);
    snprintf(tmpl, sizeof tmpl, "WHATSAPP_TEMPLATES_DIR=%s/templates", CRM_SOURCE_DIR);
    snprintf(file, sizeof file, "WHATSAPP_TEMPLATES_FILE=%s/config/whatsapp_templates.json", CRM_SOURCE_DIR);
    snprintf(group, sizeof group, "WHATSAPP_GROUP_ID=wa-test-%s", fx->w.name);
    const char *const defaults[] = {"WHATSAPP_PROVIDER=meta", api, "WHATSAPP_API_VERSION=v23.0",
                                    "WHATSAPP_PHONE_NUMBER_ID=" PHONE_NUMBER_ID, "WHATSAPP_ACCESS_TOKEN=" ACCESS_TOKEN,
                                    db, "CRM_DATA_KEY=" DATA_KEY, tmpl, file, group, "WHATSAPP_TIMEOUT_MS=20000",
                                    /* One attempt: a retryable refusal ends `dead` here
                                     * (retries are test_worker_retry.c's). */
                                    "RETRY_MAX_ATTEMPTS=1", NULL};
    th_worker_start(&fx->w, "crm-whatsapp-worker", defaults, extra);
}

static void fixture_fini(fixture_t *fx)
{
    th_worker_stop(&fx->w);
    if (fx->meta_running)
        cr_expect_eq(th_proc_stop(&fx->meta, SIGTERM, 20000), 0, "the Meta sandbox did not exit cleanly; see %s",
                     fx->meta.log_path);
    th_kafka_stop(fx->w.kafka);
}

/* ------------------------------------------------------------ dispatches */

typedef struct dspec {
    const char *request_id;
    const char *channel;      /* NULL: whatsapp */
    const char *to;
    const char *name;
    const char *locale;
    const char *message_type;
    const char *context;      /* JSON object text or NULL */
    const char *tenant;       /* NULL: TENANT */
} dspec_t;

static void produce_dispatch(fixture_t *fx, const dspec_t *s)
{
    th_dispatch_t d = {.tenant = s->tenant != NULL ? s->tenant : TENANT, .request_id = s->request_id,
                       .channel = s->channel != NULL ? s->channel : "whatsapp", .to = s->to, .name = s->name,
                       .locale = s->locale, .message_type = s->message_type, .context = s->context,
                       .recipient_key = "whatsapp"};
    th_worker_produce_dispatch(&fx->w, &d);
}

/* ------------------------------------------------------------- statuses */

static const char *str(json_object *o, const char *key)
{
    const char *s = cmn_json_get_string(o, key);
    return s != NULL ? s : "";
}

static const char *detail(json_object *ev, const char *key)
{
    return str(cmn_json_get_object(ev, "details"), key);
}

/* ------------------------------------------------------------------ tests */

#define APPT_CTX "{\"appointment\":{\"date\":\"24/11/2026\",\"time\":\"14:30\"},\"company\":{\"name\":\"Clinique\"}}"

Test(whatsapp_worker, window_decides_text_or_template_and_failures_are_classified, .timeout = 300)
{
    fixture_t fx;
    char ago[40];
    fixture_init(&fx, "main");
    meta_start(&fx);
    set_window(&fx, TENANT, P_OPEN, "now");
    set_window(&fx, TENANT, P_BUTTONS, "now");
    set_window(&fx, TENANT, P_131047, "now");
    set_window(&fx, TENANT, P_130429, "now");
    hours_ago(25, ago, sizeof ago);
    set_window(&fx, TENANT, P_CLOSED, ago);
    /* Another tenant's open window with the same person is not acme's. */
    set_window(&fx, "beta", P_CLOSED, "now");
    start_worker(&fx, NULL);

    /* The table holds the documented hash, never the number. */
    char hex[65], sql[512], val[64];
    phone_hash_hex(P_OPEN, hex);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM conversations WHERE tenant_id = 'acme' AND channel = 'whatsapp'"
             " AND phone_hash = decode('%s', 'hex') AND window_expires_at = last_inbound_at + interval '24 hours'",
             hex);
    cr_assert_eq(th_pg_query_value(fx.db_url, sql, val, sizeof val), 0);
    cr_expect_str_eq(val, "1", "no row under HMAC-SHA256(CRM_DATA_KEY, number)");
    cr_assert_eq(th_pg_query_value(fx.db_url,
                                   "SELECT count(*) FROM conversations c WHERE c::text LIKE '%4155550101%'"
                                   " OR encode(c.phone_hash, 'escape') LIKE '%4155550101%'",
                                   val, sizeof val),
                 0);
    cr_expect_str_eq(val, "0", "a plain number is stored");
    cr_assert_eq(th_pg_query_value(fx.db_url, "SELECT count(*) FROM conversations", val, sizeof val), 0);
    cr_expect_str_eq(val, "6");

    dspec_t text = {"wa-text", NULL, P_OPEN, "Zoë", "en", "appointment_reminder", APPT_CTX, NULL};
    dspec_t tpl = {"wa-template", NULL, P_CLOSED, "Zoë", "fr-CA", "appointment_reminder", APPT_CTX, NULL};
    dspec_t none = {"wa-none", NULL, P_NONE, "Bob", "en", "welcome", NULL, NULL};
    dspec_t buttons = {"wa-buttons", NULL, P_BUTTONS, "Eve", "de", "appointment_reminder",
                       "{\"appointment\":{\"date\":\"24.11.2026\",\"time\":\"14:30\"},\"whatsapp\":{\"type\":"
                       "\"interactive\",\"interactive\":{\"type\":\"button\",\"buttons\":[{\"id\":\"confirm\","
                       "\"title\":\"Bestätigen\"},{\"id\":\"cancel\",\"title\":\"Absagen\"}]}}}",
                       NULL};
    dspec_t reengage = {"wa-131047", NULL, P_131047, "Dan", "en", "welcome", NULL, NULL};
    dspec_t throttled = {"wa-130429", NULL, P_130429, "Fay", "en", "welcome", NULL, NULL};
    dspec_t sms = {"wa-sms", "sms", P_OPEN, "Gus", "en", "welcome", NULL, NULL};
    produce_dispatch(&fx, &text);
    produce_dispatch(&fx, &tpl);
    produce_dispatch(&fx, &none);
    produce_dispatch(&fx, &buttons);
    produce_dispatch(&fx, &reengage);
    produce_dispatch(&fx, &throttled);
    th_worker_produce(&fx.w, "client-1", "{\"v\":1,\"communication_id\":");
    produce_dispatch(&fx, &sms);

    /* sending + outcome for the five that reach Meta, one failed for none. */
    th_statuses_t st;
    th_worker_read_statuses(&fx.w, 11, &st);
    size_t ndlq = 0;
    th_kafka_record_t *dlq = th_kafka_read_all(fx.w.brokers, "crm.dlq", 3, 30000, &ndlq);
    json_object *reqs = meta_requests(&fx);
    int count = 0;
    char cid[CMN_UUID_STR_LEN + 1], opaque[CMN_UUID_STR_LEN + 32];

    /* ---- inside the window: free text, the communication id in biz_opaque_callback_data. */
    json_object *r = meta_find(reqs, P_OPEN + 1, &count);
    cr_assert_not_null(r, "the text message did not reach the sandbox");
    cr_expect_eq(count, 1);
    cr_expect_eq(json_object_get_int(json_object_object_get(r, "status")), 200, "the sandbox refused it: %s",
                 json_object_to_json_string(r));
    json_object *body = cmn_json_get_object(r, "body");
    th_worker_comm_id(TENANT, "wa-text", cid);
    cr_expect_str_eq(str(body, "type"), "text");
    snprintf(opaque, sizeof opaque, "%s:0:1", cid); /* <communication id>:<hop>:<attempt> */
    cr_expect_str_eq(str(body, "biz_opaque_callback_data"), opaque);
    cr_expect_str_eq(str(body, "messaging_product"), "whatsapp");
    const char *text_body = str(cmn_json_get_object(body, "text"), "body");
    cr_expect_not_null(strstr(text_body, "Hello Zoë,"), "%s", text_body);
    cr_expect_not_null(strstr(text_body, "*24/11/2026* at *14:30*"), "%s", text_body);
    json_object *sent = th_status_of(&st, "wa-text", "sent");
    th_status_of(&st, "wa-text", "sending");
    cr_expect_str_eq(str(sent, "provider_message_id"), str(r, "wamid"));
    cr_expect(strncmp(str(sent, "provider_message_id"), "wamid.", 6) == 0);
    cr_expect_str_eq(str(sent, "provider"), "meta");
    cr_expect_str_eq(str(sent, "channel"), "whatsapp");
    cr_expect_str_eq(detail(sent, "window"), "open");
    cr_expect_str_eq(detail(sent, "kind"), "text");

    /* ---- outside the window: the approved template, in the recipient's language. */
    r = meta_find(reqs, P_CLOSED + 1, &count);
    cr_assert_not_null(r, "the template message did not reach the sandbox");
    cr_expect_eq(json_object_get_int(json_object_object_get(r, "status")), 200, "%s", json_object_to_json_string(r));
    body = cmn_json_get_object(r, "body");
    cr_expect_str_eq(str(body, "type"), "template");
    json_object *t = cmn_json_get_object(body, "template");
    cr_expect_str_eq(str(t, "name"), "appointment_reminder");
    cr_expect_str_eq(str(cmn_json_get_object(t, "language"), "code"), "fr");
    json_object *comps = cmn_json_get_array(t, "components");
    cr_assert_not_null(comps);
    json_object *bparams = cmn_json_get_array(json_object_array_get_idx(comps, 0), "parameters");
    cr_assert_eq(json_object_array_length(bparams), 3);
    cr_expect_str_eq(str(json_object_array_get_idx(bparams, 0), "text"), "24/11/2026");
    cr_expect_str_eq(str(json_object_array_get_idx(bparams, 1), "text"), "14:30");
    th_worker_comm_id(TENANT, "wa-template", cid);
    snprintf(opaque, sizeof opaque, "%s:0:1", cid); /* <communication id>:<hop>:<attempt> */
    cr_expect_str_eq(str(body, "biz_opaque_callback_data"), opaque);
    sent = th_status_of(&st, "wa-template", "sent");
    cr_expect_str_eq(str(sent, "provider_message_id"), str(r, "wamid"));
    cr_expect_str_eq(detail(sent, "window"), "closed");
    cr_expect_str_eq(detail(sent, "kind"), "template");
    cr_expect_str_eq(detail(sent, "template"), "appointment_reminder");
    cr_expect_str_eq(detail(sent, "language"), "fr");

    /* ---- no window and no template: failed at once, Meta never asked. */
    json_object *f = th_status_of(&st, "wa-none", "failed");
    cr_expect_str_eq(str(f, "reason"), "no_template_outside_window");
    cr_expect_str_eq(str(f, "error_code"), "no_template_outside_window");
    cr_expect_eq(th_status_count(&st, "wa-none", "sending"), 0);
    cr_expect_null(meta_find(reqs, P_NONE + 1, &count), "a message without a template reached Meta");

    /* ---- interactive reply buttons. */
    r = meta_find(reqs, P_BUTTONS + 1, &count);
    cr_assert_not_null(r);
    cr_expect_eq(json_object_get_int(json_object_object_get(r, "status")), 200, "%s", json_object_to_json_string(r));
    json_object *inter = cmn_json_get_object(cmn_json_get_object(r, "body"), "interactive");
    cr_expect_str_eq(str(inter, "type"), "button");
    cr_expect_not_null(strstr(str(cmn_json_get_object(inter, "body"), "text"), "*24.11.2026* um *14:30*"));
    th_status_of(&st, "wa-buttons", "sent");

    /* ---- 131047 from Meta: permanent, with Meta's code and reason. */
    f = th_status_of(&st, "wa-131047", "failed");
    th_status_of(&st, "wa-131047", "sending");
    cr_expect_str_eq(str(f, "error_code"), "131047");
    cr_expect_str_eq(str(f, "reason"), "outside_window");
    cr_expect_not_null(strstr(str(f, "error_message"), "Re-engagement message"), "%s", str(f, "error_message"));
    cr_expect_str_eq(detail(f, "provider_class"), "permanent_fix_request");
    cr_expect_null(cmn_json_get_string(f, "provider_message_id"));

    /* ---- 130429 with HTTP 429: retryable; with one attempt allowed, dead. */
    f = th_status_of(&st, "wa-130429", "dead");
    cr_expect_str_eq(str(f, "reason"), "attempts_exhausted");
    cr_expect_str_eq(str(f, "error_code"), "130429");
    cr_expect(strncmp(str(f, "error_message"), "retryable: (#130429) Rate limit hit", 35) == 0, "%s",
              str(f, "error_message"));
    cr_expect_str_eq(detail(f, "provider_class"), "retry_backoff");
    cr_expect_eq(json_object_get_int(json_object_object_get(cmn_json_get_object(f, "details"), "http_status")), 429);

    /* Every body that reached the sandbox passed its check against Meta's
     * examples (a refused one is recorded with status 400 and code 100). */
    for (size_t i = 0; i < json_object_array_length(reqs); i++) {
        json_object *rec = json_object_array_get_idx(reqs, i);
        cr_expect_neq(json_object_get_int(json_object_object_get(rec, "error_code")), 100, "refused: %s",
                      json_object_to_json_string(rec));
    }
    cr_expect_eq(json_object_array_length(reqs), 5);
    json_object_put(reqs);

    /* ---- the DLQ: malformed JSON, an SMS dispatch on the WhatsApp topic,
     * and the dead 130429. */
    cr_expect_eq(ndlq, 3);
    const char *const reasons[] = {"malformed JSON", "wrong channel: a sms dispatch",
                                   "retries exhausted: 1 attempts on whatsapp, last error 130429", NULL};
    int seen[3];
    th_worker_check_dlq(&fx.w, dlq, ndlq, "crm-whatsapp-worker", NULL, reasons, seen);
    for (size_t k = 0; reasons[k] != NULL; k++)
        cr_expect_eq(seen[k], 1, "%s", reasons[k]);
    th_kafka_records_free(dlq, ndlq);
    cr_expect_eq(th_status_count(&st, "wa-sms", NULL), 0);
    th_statuses_expect_traced(&fx.w, &st);
    th_statuses_free(&st);

    static char metrics[1 << 16];
    cr_assert_eq(th_worker_metrics(&fx.w, metrics, sizeof metrics), 200);
    cr_expect_not_null(strstr(metrics, "whatsapp_sent_total 3"), "%s", metrics);
    cr_expect_not_null(strstr(metrics, "whatsapp_failed_total{class=\"permanent\"} 2"), "%s", metrics);
    cr_expect_not_null(strstr(metrics, "whatsapp_failed_total{class=\"retryable\"} 1"), "%s", metrics);
    cr_expect_not_null(strstr(metrics, "whatsapp_dlq_total 2"), "%s", metrics);
    cr_expect_not_null(strstr(metrics, "whatsapp_window_checks_total{window=\"open\"} 4"), "%s", metrics);
    cr_expect_not_null(strstr(metrics, "whatsapp_window_checks_total{window=\"closed\"} 1"), "%s", metrics);
    cr_expect_not_null(strstr(metrics, "whatsapp_window_checks_total{window=\"none\"} 1"), "%s", metrics);
    cr_expect_not_null(strstr(metrics, "whatsapp_prepared_total{form=\"template\"} 1"), "%s", metrics);

    cr_expect_eq(th_worker_stop(&fx.w), 0, "exit status after SIGTERM; see %s", fx.w.proc.log_path);
    const char *forbidden[] = {P_OPEN + 2, P_CLOSED + 2, P_NONE + 2, P_BUTTONS + 2, P_131047 + 2, P_130429 + 2,
                               ACCESS_TOKEN, DATA_KEY, "Zoë", NULL};
    th_worker_expect_clean_log(&fx.w, forbidden);
    fixture_fini(&fx);
}

Test(whatsapp_worker, twilio_body_inside_content_template_outside, .timeout = 300)
{
    fixture_t fx;
    th_twilio_t tw;
    char ago[40], api[96];
    fixture_init(&fx, "twilio");
    cr_assert_eq(th_twilio_start(&tw, NULL), 0, "Twilio sandbox did not start");
    set_window(&fx, TENANT, P_OPEN, "now");
    set_window(&fx, TENANT, P_21610, "now");
    hours_ago(30, ago, sizeof ago);
    set_window(&fx, TENANT, P_CLOSED, ago);
    snprintf(api, sizeof api, "TWILIO_API_URL=%s", tw.url);
    start_worker(&fx, (const char *const[]){"WHATSAPP_PROVIDER=twilio", api,
                                            "TWILIO_ACCOUNT_SID=" TH_TWILIO_ACCOUNT_SID,
                                            "TWILIO_AUTH_TOKEN=" TH_TWILIO_AUTH_TOKEN,
                                            "TWILIO_WHATSAPP_NUMBER=" TWILIO_FROM,
                                            "TWILIO_STATUS_CALLBACK_URL=https://hooks.crm.example/twilio/status",
                                            "WHATSAPP_RATE_PER_SECOND=20", NULL});

    dspec_t text = {"tw-text", NULL, P_OPEN, "Zoë", "es", "payment_receipt",
                    "{\"amount\":\"42,00 €\",\"receipt\":{\"number\":\"R-1001\"}}", NULL};
    dspec_t tpl = {"tw-template", NULL, P_CLOSED, "Zoë", "de", "payment_receipt",
                   "{\"amount\":\"42,00 €\",\"receipt\":{\"number\":\"R-1001\"}}", NULL};
    dspec_t stop = {"tw-21610", NULL, P_21610, "Ian", "en", "welcome", NULL, NULL};
    dspec_t none = {"tw-none", NULL, P_NONE, "Bob", "en", "welcome", NULL, NULL};
    produce_dispatch(&fx, &text);
    produce_dispatch(&fx, &tpl);
    produce_dispatch(&fx, &stop);
    produce_dispatch(&fx, &none);

    th_statuses_t st;
    th_worker_read_statuses(&fx.w, 7, &st);
    json_object *reqs = th_twilio_wait_requests(&tw, 3, 30000);
    cr_assert_not_null(reqs);
    int count = 0;
    char cid[CMN_UUID_STR_LEN + 1];

    json_object *r = th_twilio_find(reqs, "whatsapp:" P_OPEN, &count);
    cr_assert_not_null(r, "the free-form message did not reach Twilio: %s", json_object_to_json_string(reqs));
    cr_expect_eq(count, 1);
    json_object *params = cmn_json_get_object(r, "params");
    cr_expect_str_eq(str(params, "From"), "whatsapp:" TWILIO_FROM);
    cr_expect_not_null(strstr(str(params, "Body"), "Gracias: hemos recibido su pago de *42,00 €*"), "%s",
                       str(params, "Body"));
    cr_expect(!cmn_json_has(params, "ContentSid"));
    th_worker_comm_id(TENANT, "tw-text", cid);
    cr_expect_not_null(strstr(str(params, "StatusCallback"), cid), "%s", str(params, "StatusCallback"));
    json_object *sent = th_status_of(&st, "tw-text", "sent");
    cr_expect_str_eq(str(sent, "provider_message_id"), str(r, "sid"));
    cr_expect(strncmp(str(sent, "provider_message_id"), "SM", 2) == 0);
    cr_expect_str_eq(str(sent, "provider"), "twilio");

    r = th_twilio_find(reqs, "whatsapp:" P_CLOSED, &count);
    cr_assert_not_null(r, "the template message did not reach Twilio");
    params = cmn_json_get_object(r, "params");
    cr_expect_str_eq(str(params, "ContentSid"), "HX00000000000000000000000000000c04", "the German Content SID");
    cr_expect_str_eq(str(params, "ContentVariables"), "{\"1\":\"42,00 €\",\"2\":\"R-1001\"}");
    cr_expect(!cmn_json_has(params, "Body"), "Twilio refuses Body with ContentSid");
    sent = th_status_of(&st, "tw-template", "sent");
    cr_expect_str_eq(detail(sent, "kind"), "template");
    cr_expect_str_eq(detail(sent, "content_sid"), "HX00000000000000000000000000000c04");

    json_object *f = th_status_of(&st, "tw-21610", "failed");
    cr_expect_str_eq(str(f, "error_code"), "21610");
    cr_expect_str_eq(str(f, "reason"), "unsubscribed");

    f = th_status_of(&st, "tw-none", "failed");
    cr_expect_str_eq(str(f, "reason"), "no_template_outside_window");
    cr_expect_null(th_twilio_find(reqs, "whatsapp:" P_NONE, &count));
    json_object_put(reqs);
    th_statuses_free(&st);

    cr_expect_eq(th_worker_stop(&fx.w), 0, "see %s", fx.w.proc.log_path);
    const char *forbidden[] = {P_OPEN + 2, P_CLOSED + 2, P_21610 + 2, TH_TWILIO_AUTH_TOKEN, DATA_KEY, NULL};
    th_worker_expect_clean_log(&fx.w, forbidden);
    th_twilio_stop(&tw);
    fixture_fini(&fx);
}

Test(whatsapp_worker, database_down_templates_still_go_out, .timeout = 300)
{
    fixture_t fx;
    char db[64];
    fixture_init(&fx, "nodb");
    meta_start(&fx);
    /* Nothing listens there: every window is unknown. */
    snprintf(db, sizeof db, "DATABASE_URL=postgresql://crm@127.0.0.1:%d/crm", th_free_port());
    start_worker(&fx, (const char *const[]){db, NULL});
    dspec_t tpl = {"db-template", NULL, P_OPEN, "Zoë", "en", "appointment_reminder", APPT_CTX, NULL};
    dspec_t none = {"db-none", NULL, P_NONE, "Bob", "en", "welcome", NULL, NULL};
    produce_dispatch(&fx, &tpl);
    produce_dispatch(&fx, &none);
    th_statuses_t st;
    th_worker_read_statuses(&fx.w, 3, &st);
    /* A template is allowed in and out of the window: it goes out. */
    json_object *sent = th_status_of(&st, "db-template", "sent");
    cr_expect_str_eq(detail(sent, "window"), "unknown");
    cr_expect_str_eq(detail(sent, "kind"), "template");
    /* Free text without a fallback template: retry later, not a verdict. */
    json_object *f = th_status_of(&st, "db-none", "dead");
    cr_expect_str_eq(str(f, "error_code"), "window_unknown");
    cr_expect(strncmp(str(f, "error_message"), "retryable: ", 11) == 0, "%s", str(f, "error_message"));
    th_statuses_free(&st);
    int count = 0;
    json_object *reqs = meta_requests(&fx);
    cr_expect_not_null(meta_find(reqs, P_OPEN + 1, &count));
    cr_expect_null(meta_find(reqs, P_NONE + 1, &count));
    json_object_put(reqs);
    cr_expect_eq(th_worker_stop(&fx.w), 0, "see %s", fx.w.proc.log_path);
    fixture_fini(&fx);
}

Test(whatsapp_worker, bad_configuration_stops_at_start)
{
    char bin[512], out[4096];
    cr_assert_not_null(th_bin("crm-whatsapp-worker", bin, sizeof bin));
    char *const argv[] = {bin, NULL};
    static const struct {
        const char *env[6];
        const char *variable;
    } CASES[] = {
        {{"DATABASE_URL=postgresql://x@127.0.0.1/db", "CRM_DATA_KEY=" DATA_KEY, "WHATSAPP_ACCESS_TOKEN=t", NULL},
         "WHATSAPP_PHONE_NUMBER_ID"},
        {{"DATABASE_URL=postgresql://x@127.0.0.1/db", "CRM_DATA_KEY=" DATA_KEY, "WHATSAPP_PHONE_NUMBER_ID=123", NULL},
         "WHATSAPP_ACCESS_TOKEN"},
        {{"DATABASE_URL=postgresql://x@127.0.0.1/db", "CRM_DATA_KEY=short", "WHATSAPP_PHONE_NUMBER_ID=123",
          "WHATSAPP_ACCESS_TOKEN=t", NULL},
         "CRM_DATA_KEY"},
        {{"DATABASE_URL=postgresql://x@127.0.0.1/db", "CRM_DATA_KEY=" DATA_KEY, "WHATSAPP_PROVIDER=telegram", NULL},
         "WHATSAPP_PROVIDER"},
        {{"DATABASE_URL=postgresql://x@127.0.0.1/db", "CRM_DATA_KEY=" DATA_KEY, "WHATSAPP_PROVIDER=twilio",
          "TWILIO_ACCOUNT_SID=AC123", NULL},
         "TWILIO_ACCOUNT_SID"},
        {{"CRM_DATA_KEY=" DATA_KEY, "WHATSAPP_PHONE_NUMBER_ID=123", "WHATSAPP_ACCESS_TOKEN=t", NULL}, "DATABASE_URL"},
        {{"DATABASE_URL=postgresql://x@127.0.0.1/db", "CRM_DATA_KEY=" DATA_KEY, "WHATSAPP_PHONE_NUMBER_ID=123",
          "WHATSAPP_ACCESS_TOKEN=t", "WHATSAPP_TEMPLATES_FILE=/nonexistent.json", NULL},
         "WHATSAPP_TEMPLATES_FILE"},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        /* Start from an environment without the test runner's settings. */
        static const char *const base[] = {"WHATSAPP_PHONE_NUMBER_ID=", "WHATSAPP_ACCESS_TOKEN=",
                                           "WHATSAPP_PROVIDER=meta", "KAFKA_BROKERS=127.0.0.1:1", NULL};
        char *env[12];
        size_t n = 0;
        for (size_t k = 0; base[k] != NULL; k++) {
            if (!th_worker_env_overridden(CASES[i].env, base[k]))
                env[n++] = (char *)base[k];
        }
        for (size_t k = 0; CASES[i].env[k] != NULL; k++)
            env[n++] = (char *)CASES[i].env[k];
        env[n] = NULL;
        int rc = th_run(argv, env, out, sizeof out, 30000);
        cr_expect_eq(rc, 2, "case %zu: exit code %d: %s", i, rc, out);
        cr_expect_not_null(strstr(out, CASES[i].variable), "case %zu: %s", i, out);
    }
    char *const argv_print[] = {bin, "--print-config", NULL};
    char *const env[] = {"WHATSAPP_ACCESS_TOKEN=" ACCESS_TOKEN, "CRM_DATA_KEY=" DATA_KEY,
                         "DATABASE_URL=postgresql://crm:pg-secret-pw@db/crm", NULL};
    int rc = th_run(argv_print, env, out, sizeof out, 30000);
    cr_expect_eq(rc, 0, "%s", out);
    cr_expect_not_null(strstr(out, "HTTP_PORT=9105"), "%s", out);
    cr_expect_not_null(strstr(out, "WHATSAPP_API_VERSION=v23.0"), "%s", out);
    cr_expect_null(strstr(out, ACCESS_TOKEN), "the token was printed");
    cr_expect_null(strstr(out, DATA_KEY), "the data key was printed");
    cr_expect_null(strstr(out, "pg-secret-pw"), "the database password was printed");
}
