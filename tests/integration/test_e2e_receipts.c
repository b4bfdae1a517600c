/* End-to-end receipts through the whole `crmctl dev up` fleet: the Twilio
 * and Meta sandboxes post their (signed) status webhooks to the webhook
 * receiver, which turns them into status events; the projector stores
 * them; the router's receipt guard moves a communication on when a receipt
 * says it failed or never comes.
 *   (a) an SMS and a WhatsApp message end `delivered` or `read` in
 *       PostgreSQL, and a delivered SMS does not fall back;
 *   (b) an SMS to a number the sandbox reports undelivered (...30003) with
 *       channels ["sms","email"] ends `sent` on email at hop 1 after a
 *       `fallback` with why receipt_failed;
 *   (c) a critical SMS to a number that never gets a final receipt
 *       (...00000) ends on email after its receipt deadline (why
 *       receipt_deadline);
 *   (d) an inbound STOP (signed here with tests/tools/webhook_sign.py, not
 *       with the receiver's code) from a client's number opts the client
 *       out, and the client's next SMS is suppressed (opted_out).
 * The fleet runs once for the binary (PRE_ALL), with one-second receipt
 * checks, an 8 s critical deadline, and CRM_DATA_KEY for every service
 * (the router records client_contacts, the receiver looks STOP up there):
 * the key is written to the fleet's data.key before `dev up`, so the
 * services that get it from that file and those that inherit it from the
 * environment agree. */
#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <curl/curl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "th_fleet.h"
#include "th_pg.h"
#include "th_proc.h"

#define DATA_KEY "e2e-receipts-data-key-0123456789abcdef0123456789"
#define SIGNER CRM_SOURCE_DIR "/tests/tools/webhook_sign.py"
#define DEADLINE_MS 8000

typedef struct env {
    th_fleet_t fleet;
    char ingest[256], webhook[256], db[512], maildir[700], token[128];
} env_t;

static void fleet_dir(char *out, size_t outlen)
{
    snprintf(out, outlen, "%s/test-e2e-receipts", CRM_BINARY_DIR);
}

/* The same for the runner and its forked tests: derived from the runner's
 * pid, which the tests see as their parent. */
static int port_base(int runner_pid)
{
    return 12000 + (runner_pid % 200) * 20;
}

static void fleet_init(th_fleet_t *f, int runner_pid)
{
    char dir[512], kafka[1100];
    fleet_dir(dir, sizeof dir);
    const char *ext = getenv("CRM_TEST_KAFKA_BROKERS");
    snprintf(kafka, sizeof kafka, "KAFKA_BROKERS=%s", ext != NULL ? ext : "");
    char *env[] = {kafka, "RECEIPT_CHECK_INTERVAL_MS=1000", "RECEIPT_DEADLINE_CRITICAL_MS=8000",
                   "CRM_DATA_KEY=" DATA_KEY, NULL};
    if (th_fleet_init(f, dir, port_base(runner_pid), env) != 0) {
        fprintf(stderr, "e2e receipts: cannot set up the fleet\n");
        exit(1);
    }
}

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set;
    th_fleet_t f;
    char path[600];
    fleet_init(&f, (int)getpid());
    mkdir(f.dir, 0755);
    snprintf(path, sizeof path, "%s/data.key", f.dir);
    FILE *k = fopen(path, "w");
    if (k == NULL || fputs(DATA_KEY "\n", k) < 0 || fclose(k) != 0) {
        fprintf(stderr, "e2e receipts: cannot write %s\n", path);
        exit(1);
    }
    if (th_fleet_up(&f) != 0) {
        th_fleet_down(&f);
        th_fleet_free(&f);
        exit(1);
    }
    th_fleet_free(&f);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
    (void)stats;
    th_fleet_t f;
    fleet_init(&f, (int)getpid());
    th_fleet_down(&f);
    th_fleet_free(&f);
}

static void load(env_t *e)
{
    char path[600], secrets[700];
    memset(e, 0, sizeof *e);
    fleet_init(&e->fleet, (int)getppid());
    snprintf(path, sizeof path, "%s/env", e->fleet.dir);
    cr_assert_eq(th_fleet_env_value(path, "CRM_INGEST_URL", e->ingest, sizeof e->ingest), 0, "no fleet env");
    cr_assert_eq(th_fleet_env_value(path, "CRM_WEBHOOK_URL", e->webhook, sizeof e->webhook), 0);
    cr_assert_eq(th_fleet_env_value(path, "DATABASE_URL", e->db, sizeof e->db), 0);
    cr_assert_eq(th_fleet_env_value(path, "CRM_MAILDIR", e->maildir, sizeof e->maildir), 0);
    char receiver[8] = "";
    cr_assert_eq(th_fleet_env_value(path, "CRM_WEBHOOK_RECEIVER", receiver, sizeof receiver), 0);
    cr_assert_str_eq(receiver, "1", "the webhook receiver is part of the fleet");
    cr_assert_eq(th_fleet_env_value(path, "CRM_DEV_SECRETS", secrets, sizeof secrets), 0);
    cr_assert_eq(th_fleet_env_value(secrets, "TWILIO_AUTH_TOKEN", e->token, sizeof e->token), 0);
}

static void unload(env_t *e)
{
    th_fleet_free(&e->fleet);
}

static int tag(void)
{
    return (int)(getpid() % 1000);
}

/* POSTs a request to ingest; the communication id of the 202 into cid. */
static void send_request(const env_t *e, const char *body, char *cid, size_t cidlen)
{
    char url[512], out[8192];
    long status = 0;
    snprintf(url, sizeof url, "%s/v1/communications", e->ingest);
    cr_assert_eq(th_http("POST", url, body, "application/json", &status, out, sizeof out), 0);
    cr_assert_eq(status, 202, "ingest: %ld %s", status, out);
    json_object *j = json_tokener_parse(out);
    json_object *first = json_object_array_get_idx(json_object_object_get(j, "communications"), 0);
    const char *id = json_object_get_string(json_object_object_get(first, "communication_id"));
    cr_assert_not_null(id, "%s", out);
    snprintf(cid, cidlen, "%s", id);
    json_object_put(j);
}

static void sms_request(const env_t *e, const char *rid, const char *client, const char *phone, const char *email,
                        const char *channels, const char *urgency, char *cid, size_t cidlen)
{
    char body[2048], mail[160] = "";
    if (email != NULL)
        snprintf(mail, sizeof mail, ",\"email\":\"%s\"", email);
    snprintf(body, sizeof body,
             "{\"request_id\":\"%s\",\"client_id\":\"%s\",\"message_type\":\"password_reset\",\"urgency\":\"%s\","
             "\"channels\":%s,\"recipient\":{\"name\":\"Ana\",\"phone\":\"%s\"%s,\"locale\":\"en\"},"
             "\"context\":{\"reset_url\":\"https://app.example.com/r/1\",\"expires_in_minutes\":30}}",
             rid, client, urgency, channels, phone, mail);
    send_request(e, body, cid, cidlen);
}

static int wait_sql(const env_t *e, const char *sql, const char *const *want, int timeout_ms, char *got,
                    size_t gotlen)
{
    for (int waited = 0; waited <= timeout_ms; waited += 250) {
        if (th_pg_query_value(e->db, sql, got, gotlen) == 0) {
            for (size_t i = 0; want[i] != NULL; i++) {
                if (strcmp(got, want[i]) == 0)
                    return 0;
            }
        }
        usleep(250 * 1000);
    }
    return -1;
}

static void expect_row(const env_t *e, const char *cid, const char *const *want, const char *what)
{
    char sql[320], got[256] = "";
    snprintf(sql, sizeof sql,
             "SELECT status || '|' || coalesce(channel, '') || '|' || hop FROM communications "
             "WHERE communication_id = '%s'",
             cid);
    cr_assert_eq(wait_sql(e, sql, want, 90000, got, sizeof got), 0, "%s: the row is '%s', not %s", what, got,
                 want[0]);
}

/* The `fallback` event of cid at hop 0: details.why. */
static void expect_fallback(const env_t *e, const char *cid, const char *why)
{
    char sql[400], got[256];
    snprintf(sql, sizeof sql,
             "SELECT channel || '|' || reason FROM communication_events "
             "WHERE communication_id = '%s' AND status = 'fallback' AND hop = 0",
             cid);
    char want[64];
    snprintf(want, sizeof want, "sms|%s", why);
    const char *w[] = {want, NULL};
    cr_assert_eq(wait_sql(e, sql, w, 30000, got, sizeof got), 0, "fallback event of %s: '%s'", cid, got);
}

static int mail_count(const env_t *e, const char *addr)
{
    char script[512], out[1 << 16];
    snprintf(script, sizeof script, "%s/tests/tools/mime_inspect.py", CRM_SOURCE_DIR);
    char *argv[] = {"/usr/bin/python3", script, "find", (char *)e->maildir, (char *)addr, NULL};
    if (th_run(argv, NULL, out, sizeof out, 60000) != 0)
        return -1;
    json_object *j = json_tokener_parse(out);
    int n = j != NULL ? json_object_get_int(json_object_object_get(j, "count")) : -1;
    json_object_put(j);
    return n;
}

TestSuite(e2e_receipts, .timeout = 300);

Test(e2e_receipts, sms_and_whatsapp_end_delivered_or_read)
{
    env_t e;
    load(&e);
    char rid[64], phone[32], mail[96], cid[64];
    snprintf(rid, sizeof rid, "rx-sms-%d", tag());
    snprintf(phone, sizeof phone, "+3361%02d12345", tag() % 100);
    snprintf(mail, sizeof mail, "rx-sms-%d@example.com", tag());
    sms_request(&e, rid, "client-rx-sms", phone, mail, "[\"sms\",\"email\"]", "normal", cid, sizeof cid);
    const char *sms_done[] = {"delivered|sms|0", "read|sms|0", NULL};
    expect_row(&e, cid, sms_done, "the SMS");

    /* WhatsApp needs the client's opt-in. */
    char url[512], out[4096], sql[256], got[64];
    long status = 0;
    snprintf(url, sizeof url, "%s/v1/clients/client-rx-wa/preferences", e.ingest);
    cr_assert_eq(th_http("PUT", url,
                         "{\"whatsapp_consent\":{\"granted\":true,\"at\":\"2026-03-01T10:00:00Z\",\"source\":\"web_form\"}}",
                         "application/json", &status, out, sizeof out),
                 0);
    cr_assert_eq(status, 200, "%s", out);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM client_preferences WHERE client_id = 'client-rx-wa'");
    const char *one[] = {"1", NULL};
    cr_assert_eq(wait_sql(&e, sql, one, 60000, got, sizeof got), 0);
    sleep(2); /* the router reads preferences through a short cache */
    char wa_body[2048], wa_cid[64], wa_phone[32];
    snprintf(wa_phone, sizeof wa_phone, "+3361%02d22345", tag() % 100);
    snprintf(wa_body, sizeof wa_body,
             "{\"request_id\":\"rx-wa-%d\",\"client_id\":\"client-rx-wa\",\"message_type\":\"appointment_reminder\","
             "\"channels\":[\"whatsapp\"],\"recipient\":{\"name\":\"Inès\",\"whatsapp\":\"%s\",\"locale\":\"fr\"},"
             "\"context\":{\"appointment\":{\"date\":\"2026-12-01\",\"time\":\"10:30\"}}}",
             tag(), wa_phone);
    send_request(&e, wa_body, wa_cid, sizeof wa_cid);
    const char *wa_done[] = {"read|whatsapp|0", "delivered|whatsapp|0", NULL};
    expect_row(&e, wa_cid, wa_done, "the WhatsApp message");
    /* The receipt was tied to its hop through the webhook (Meta's
     * biz_opaque_callback_data or Twilio's callback URL). */
    snprintf(sql, sizeof sql,
             "SELECT count(*) > 0 FROM communication_events WHERE communication_id = '%s' AND hop = 0 "
             "AND status IN ('delivered', 'read') AND provider = 'meta'",
             wa_cid);
    const char *yes[] = {"t", NULL};
    cr_assert_eq(wait_sql(&e, sql, yes, 10000, got, sizeof got), 0);

    /* The delivered SMS had a fallback plan: its watch ended, nothing was
     * sent on (a few check intervals later). */
    sleep(4);
    cr_expect_eq(mail_count(&e, mail), 0, "a delivered SMS fell back to email");
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM communication_events WHERE communication_id = '%s' AND status = 'fallback'", cid);
    cr_assert_eq(th_pg_query_value(e.db, sql, got, sizeof got), 0);
    cr_expect_str_eq(got, "0");
    unload(&e);
}

Test(e2e_receipts, undelivered_sms_falls_back_to_email)
{
    env_t e;
    load(&e);
    char rid[64], phone[32], mail[96], cid[64];
    snprintf(rid, sizeof rid, "rx-undelivered-%d", tag());
    snprintf(phone, sizeof phone, "+3361%02d30003", tag() % 100);
    snprintf(mail, sizeof mail, "rx-undelivered-%d@example.com", tag());
    sms_request(&e, rid, "client-rx-undelivered", phone, mail, "[\"sms\",\"email\"]", "normal", cid, sizeof cid);
    const char *done[] = {"sent|email|1", NULL};
    expect_row(&e, cid, done, "the undelivered SMS's email");
    expect_fallback(&e, cid, "receipt_failed");
    char sql[320], got[64];
    snprintf(sql, sizeof sql,
             "SELECT error_code FROM communication_events WHERE communication_id = '%s' AND hop = 0 AND status = 'failed'",
             cid);
    cr_assert_eq(th_pg_query_value(e.db, sql, got, sizeof got), 0);
    cr_expect_str_eq(got, "30003", "the receipt that caused it is stored");
    cr_expect_eq(mail_count(&e, mail), 1, "one email reached the SMTP server");
    unload(&e);
}

Test(e2e_receipts, critical_sms_without_receipt_falls_back_after_the_deadline)
{
    env_t e;
    load(&e);
    char rid[64], phone[32], mail[96], cid[64];
    snprintf(rid, sizeof rid, "rx-silent-%d", tag());
    snprintf(phone, sizeof phone, "+3361%02d00000", tag() % 100);
    snprintf(mail, sizeof mail, "rx-silent-%d@example.com", tag());
    sms_request(&e, rid, "client-rx-silent", phone, mail, "[\"sms\",\"email\"]", "critical", cid, sizeof cid);
    const char *done[] = {"sent|email|1", NULL};
    expect_row(&e, cid, done, "the silent SMS's email");
    expect_fallback(&e, cid, "receipt_deadline");
    /* Not before the deadline: the fallback follows the SMS's `sent` by at
     * least RECEIPT_DEADLINE_CRITICAL_MS (both stamped on this machine). */
    char sql[512], got[64];
    snprintf(sql, sizeof sql,
             "SELECT (f.occurred_at - s.occurred_at >= interval '%d milliseconds')::text "
             "FROM communication_events f JOIN communication_events s USING (communication_id) "
             "WHERE f.communication_id = '%s' AND f.status = 'fallback' AND s.status = 'sent' AND s.hop = 0",
             DEADLINE_MS, cid);
    cr_assert_eq(th_pg_query_value(e.db, sql, got, sizeof got), 0);
    cr_expect_str_eq(got, "true", "the fallback came before the deadline");
    unload(&e);
}

/* POSTs form to the receiver's path, signed over the public URL. */
static long post_signed(const env_t *e, const char *path, const char *form, char *out, size_t outlen)
{
    char url[512], sig[128] = "", hdr[200];
    snprintf(url, sizeof url, "%s%s", e->webhook, path);
    char *argv[] = {"python3", SIGNER, "twilio", (char *)e->token, url, (char *)form, NULL};
    cr_assert_eq(th_run(argv, NULL, sig, sizeof sig, 30000), 0, "signer: %s", sig);
    sig[strcspn(sig, "\n")] = '\0';
    snprintf(hdr, sizeof hdr, "X-Twilio-Signature: %s", sig);
    CURL *c = curl_easy_init();
    cr_assert_not_null(c);
    struct curl_slist *h = curl_slist_append(NULL, hdr);
    h = curl_slist_append(h, "Content-Type: application/x-www-form-urlencoded");
    FILE *sink = fmemopen(out, outlen, "w");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, form);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, sink);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    long status = 0;
    CURLcode rc = curl_easy_perform(c);
    fclose(sink);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

Test(e2e_receipts, stop_reply_blocks_the_next_sms)
{
    env_t e;
    load(&e);
    char client[64], rid[64], phone[32], cid[64], out[4096];
    snprintf(client, sizeof client, "client-rx-stop-%d", tag());
    snprintf(rid, sizeof rid, "rx-stop-1-%d", tag());
    snprintf(phone, sizeof phone, "+3361%02d54321", tag() % 100);
    /* A first SMS: the router records the number as the client's. */
    sms_request(&e, rid, client, phone, NULL, "[\"sms\"]", "normal", cid, sizeof cid);
    const char *done[] = {"delivered|sms|0", "read|sms|0", NULL};
    expect_row(&e, cid, done, "the first SMS");

    /* The person answers STOP. */
    char form[512], from[64];
    snprintf(from, sizeof from, "%%2B%s", phone + 1);
    snprintf(form, sizeof form,
             "MessageSid=SM%032d&AccountSid=AC0123456789abcdef0123456789abcdef&From=%s&To=%%2B14155550100"
             "&Body=STOP&NumMedia=0",
             tag(), from);
    long status = post_signed(&e, "/twilio/inbound", form, out, sizeof out);
    cr_assert_eq(status, 200, "the receiver took the STOP: %ld %s", status, out);
    char sql[400], got[64];
    snprintf(sql, sizeof sql,
             "SELECT coalesce(snapshot->'opt_out'->>'sms', '') FROM client_preferences WHERE client_id = '%s'",
             client);
    const char *yes[] = {"true", NULL};
    cr_assert_eq(wait_sql(&e, sql, yes, 60000, got, sizeof got), 0, "the opt-out is stored: '%s'", got);

    /* The client's next SMS is suppressed. */
    snprintf(rid, sizeof rid, "rx-stop-2-%d", tag());
    sms_request(&e, rid, client, phone, NULL, "[\"sms\"]", "normal", cid, sizeof cid);
    snprintf(sql, sizeof sql,
             "SELECT status || '|' || coalesce(reason, '') FROM communications WHERE communication_id = '%s'", cid);
    const char *suppressed[] = {"suppressed|opted_out", NULL};
    cr_assert_eq(wait_sql(&e, sql, suppressed, 60000, got, sizeof got), 0, "the next SMS is '%s'", got);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM communication_events WHERE communication_id = '%s' AND status = 'sent'", cid);
    cr_assert_eq(th_pg_query_value(e.db, sql, got, sizeof got), 0);
    cr_expect_str_eq(got, "0", "nothing was sent");
    unload(&e);
}
