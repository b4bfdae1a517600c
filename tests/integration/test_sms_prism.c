/* test_sms_prism.c - contract test of crm-sms-worker's Twilio requests
 * against Twilio's official OpenAPI description, with an independent
 * validator: Stoplight Prism (`prism mock`, installed with npm by
 * tests/harness/th_prism.c).
 *
 * Prism answers a request that satisfies POST
 * /2010-04-01/Accounts/{AccountSid}/Messages.json (AccountSid pattern, basic
 * auth, form body: To required, types, enums, formats, SID patterns) with
 * the spec's 201 example, and a violating one with 401/415/422. So a `sent`
 * status for every dispatch proves the worker's requests conform; and a
 * deliberately broken request, made by the test itself, must get a 4xx,
 * proving Prism really validates.
 *
 * Not covered here: MMS. Prism (5.x) does not read a repeated form field
 * (MediaUrl=a&MediaUrl=b, the array encoding Twilio uses) as an array and
 * answers 422 "must be array" even for the spec's own example, so MediaUrl
 * is checked by the sandbox test (test_sms_worker.c) instead. */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/json.h"
#include "crm/time.h"
#include "crm/uuid.h"
#include "th_kafka.h"
#include "th_prism.h"
#include "th_proc.h"
#include "th_twilio.h"

#define TENANT "acme"
#define SPEC CRM_SHARED_DIR "/oracles/twilio/twilio_api_v2010.json"
#define ACCOUNT_SID "AC0123456789abcdef0123456789abcdef"
/* Prism checks that basic credentials are present, not what they are. */
#define AUTH_TOKEN "prism-token"
/* The sid of the spec's first 201 example, which Prism answers with. */
#define EXAMPLE_SID "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

static char *dispatch_json(const char *request_id, const char *to, const char *locale, const char *type,
                           const char *context)
{
    char cid[CMN_UUID_STR_LEN + 1], now[40];
    cr_assert_eq(cmn_uuid_communication_id(TENANT, request_id, cid), 0);
    cmn_time_format_rfc3339(cmn_now_ms(), now, sizeof now);
    json_object *o = json_object_new_object();
    json_object *rec = json_object_new_object();
    json_object_object_add(o, "v", json_object_new_int(1));
    json_object_object_add(o, "communication_id", json_object_new_string(cid));
    json_object_object_add(o, "request_id", json_object_new_string(request_id));
    json_object_object_add(o, "tenant_id", json_object_new_string(TENANT));
    json_object_object_add(o, "client_id", json_object_new_string("client-1"));
    json_object_object_add(o, "message_type", json_object_new_string(type));
    json_object_object_add(o, "urgency", json_object_new_string("high"));
    json_object_object_add(o, "channel", json_object_new_string("sms"));
    json_object_object_add(o, "attempt", json_object_new_int(1));
    json_object_object_add(o, "hop", json_object_new_int(0));
    json_object_object_add(o, "to", json_object_new_string(to));
    json_object_object_add(rec, "name", json_object_new_string("Zoë"));
    json_object_object_add(rec, "phone", json_object_new_string(to));
    json_object_object_add(rec, "locale", json_object_new_string(locale));
    json_object_object_add(o, "locale", json_object_new_string(locale));
    json_object_object_add(o, "recipient", rec);
    if (context != NULL)
        json_object_object_add(o, "context", json_tokener_parse(context));
    json_object_object_add(o, "fallback", json_object_new_array());
    json_object_object_add(o, "created_at", json_object_new_string(now));
    char *text = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
    return text;
}

static const char *str(json_object *o, const char *key)
{
    const char *s = cmn_json_get_string(o, key);
    return s != NULL ? s : "";
}

/* Runs a worker against Prism with the sender settings in sender_env,
 * sends n dispatches and checks each ends `sent` with the example's sid. */
static void send_through_prism(const th_prism_t *prism, const char *name, const char *const *sender_env)
{
    th_kafka_t *kafka = th_kafka_start(1);
    cr_assert_not_null(kafka);
    const char *brokers = th_kafka_bootstraps(kafka);
    char bin[512], env_brokers[600], env_port[32], env_api[128], env_tmpl[600], env_group[128];
    char *env[32];
    size_t n = 0;
    cr_assert_not_null(th_bin("crm-sms-worker", bin, sizeof bin));
    int port = th_free_port();
    snprintf(env_brokers, sizeof env_brokers, "KAFKA_BROKERS=%s", brokers);
    snprintf(env_port, sizeof env_port, "HTTP_PORT=%d", port);
    snprintf(env_api, sizeof env_api, "TWILIO_API_URL=%s", prism->url);
    snprintf(env_tmpl, sizeof env_tmpl, "SMS_TEMPLATES_DIR=%s/templates", CRM_SOURCE_DIR);
    snprintf(env_group, sizeof env_group, "SMS_GROUP_ID=sms-prism-%s", name);
    char *fixed[] = {env_brokers, env_port, "HTTP_BIND=127.0.0.1", "LOG_LEVEL=debug", env_api,
                     "TWILIO_ACCOUNT_SID=" ACCOUNT_SID, "TWILIO_AUTH_TOKEN=" AUTH_TOKEN, env_tmpl, env_group,
                     "SMS_RATE_PER_SECOND=20", "SMS_RATE_BURST=5", "KAFKA_SESSION_TIMEOUT_MS=6000",
                     /* Callback URL with a query of its own, as a deployment may have. */
                     "SMS_STATUS_CALLBACK_URL=https://hooks.crm.example/webhooks/twilio/status?tenant=acme", NULL};
    for (size_t i = 0; fixed[i] != NULL; i++)
        env[n++] = fixed[i];
    for (size_t i = 0; sender_env[i] != NULL; i++)
        env[n++] = (char *)sender_env[i];
    env[n] = NULL;

    const char *ids[] = {"prism-fr", "prism-es", "prism-de", "prism-long"};
    static char long_ctx[512];
    char filler[301];
    memset(filler, 'Z', 300);
    filler[300] = '\0';
    snprintf(long_ctx, sizeof long_ctx, "{\"company\":{\"name\":\"%s\"},\"amount\":\"€12\"}", filler);
    char *d[4];
    d[0] = dispatch_json(ids[0], "+33612345678", "fr", "appointment_reminder",
                         "{\"appointment\":{\"date\":\"24/11/2026\",\"time\":\"14 h 30\","
                         "\"manage_url\":\"https://crm.example/a/1?x=1&y=2\"}}");
    d[1] = dispatch_json(ids[1], "+34612345678", "es", "welcome", "{\"login_url\":\"https://crm.example/l\"}");
    d[2] = dispatch_json(ids[2], "+4915112345678", "de", "event_invitation",
                         "{\"event\":{\"name\":\"Gala\",\"date\":\"05.12.2026\"}}");
    d[3] = dispatch_json(ids[3], "+14155552346", "en", "payment_receipt", long_ctx);
    for (size_t i = 0; i < 4; i++) {
        cr_assert_eq(th_kafka_produce(brokers, "crm.send.sms", "client-1", d[i], NULL), 0);
        free(d[i]);
    }

    th_proc_t proc;
    char *const argv[] = {bin, NULL};
    cr_assert_eq(th_proc_start(&proc, "crm-sms-worker", argv, env), 0);
    cr_assert_eq(th_proc_wait_ready(&proc, port, 60000), 0, "worker not ready; see %s", proc.log_path);

    size_t nst = 0;
    th_kafka_record_t *recs = th_kafka_read_all(brokers, "crm.status", 8, 60000, &nst);
    cr_assert_eq(nst, 8, "expected sending+sent for 4 dispatches, got %zu events (worker log %s, prism log %s)", nst,
                 proc.log_path, prism->proc.log_path);
    int sent = 0;
    for (size_t i = 0; i < nst; i++) {
        char why[256];
        json_object *ev = cmn_json_parse(recs[i].value, strlen(recs[i].value), why, sizeof why);
        cr_assert_not_null(ev);
        const char *status = str(ev, "status");
        cr_expect(strcmp(status, "sending") == 0 || strcmp(status, "sent") == 0,
                  "Prism refused a request: %s (see %s)", recs[i].value, prism->proc.log_path);
        if (strcmp(status, "sent") == 0) {
            sent++;
            cr_expect_str_eq(str(ev, "provider_message_id"), EXAMPLE_SID);
        }
        json_object_put(ev);
    }
    cr_expect_eq(sent, 4);
    th_kafka_records_free(recs, nst);
    cr_expect_eq(th_proc_stop(&proc, SIGTERM, 60000), 0, "see %s", proc.log_path);
    th_kafka_stop(kafka);
}

Test(sms_prism, worker_requests_conform_to_the_official_spec, .timeout = 600)
{
    th_prism_t prism;
    char errstr[2048] = "";
    int rc = th_prism_start(&prism, SPEC, errstr, sizeof errstr);
    cr_assert_eq(rc, 0, "%s", errstr);

    /* Prism validates: a request without To, one with a StatusCallback that
     * is not a URI, one with a bad AccountSid and one without credentials
     * all get 4xx; the same request made well gets 201. */
    char url[200], out[8192];
    long status = 0;
    th_twilio_messages_url(prism.url, ACCOUNT_SID, url, sizeof url);
    cr_assert_eq(th_twilio_post(url, ACCOUNT_SID, AUTH_TOKEN, NULL, "From=%2B14155552345&Body=hi", &status, out,
                                sizeof out, NULL, 0),
                 0);
    cr_expect(status >= 400 && status < 500, "missing To: HTTP %ld %s", status, out);
    cr_expect_not_null(strstr(out, "To"), "%s", out);
    cr_assert_eq(th_twilio_post(url, ACCOUNT_SID, AUTH_TOKEN, NULL,
                                "To=%2B33612345678&From=%2B14155552345&Body=hi&StatusCallback=not+a+url", &status, out,
                                sizeof out, NULL, 0),
                 0);
    cr_expect(status >= 400 && status < 500, "bad StatusCallback: HTTP %ld %s", status, out);
    char bad_sid[200];
    th_twilio_messages_url(prism.url, "AC123", bad_sid, sizeof bad_sid);
    cr_assert_eq(th_twilio_post(bad_sid, "AC123", AUTH_TOKEN, NULL, "To=%2B33612345678&From=%2B14155552345&Body=hi",
                                &status, out, sizeof out, NULL, 0),
                 0);
    cr_expect(status >= 400 && status < 500, "bad AccountSid: HTTP %ld %s", status, out);
    cr_assert_eq(th_twilio_post(url, NULL, NULL, NULL, "To=%2B33612345678&From=%2B14155552345&Body=hi", &status, out,
                                sizeof out, NULL, 0),
                 0);
    cr_expect_eq(status, 401, "no credentials: HTTP %ld %s", status, out);
    cr_assert_eq(th_twilio_post(url, ACCOUNT_SID, AUTH_TOKEN, NULL, "To=%2B33612345678&From=%2B14155552345&Body=hi",
                                &status, out, sizeof out, NULL, 0),
                 0);
    cr_expect_eq(status, 201, "a good request: HTTP %ld %s", status, out);

    /* The worker's own requests, with a From number and with a Messaging
     * Service (whose SID must match the spec's ^MG[0-9a-fA-F]{32}$). */
    send_through_prism(&prism, "from", (const char *const[]){"TWILIO_PHONE_NUMBER=+14155552345", NULL});
    send_through_prism(&prism, "mss",
                       (const char *const[]){"TWILIO_MESSAGING_SERVICE_SID=MG0123456789abcdef0123456789abcdef", NULL});
    th_prism_stop(&prism);
}
