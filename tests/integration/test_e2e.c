/* End-to-end tests of the whole fleet, as `crmctl dev up` starts it:
 * HTTP request -> ingest -> Kafka -> router (PostgreSQL claims) -> email
 * worker -> real SMTP server (MIME checked by Python's email parser) ->
 * status events -> projector -> a `sent` row in PostgreSQL.
 *
 * The fleet starts once for this binary (PRE_ALL hook, in the runner
 * process) and every test talks to it through the endpoints in its env file.
 * With CRM_TEST_KAFKA_BROKERS set, the fleet runs on that Kafka cluster (the
 * real-broker suite: Apache Kafka 3.9 in KRaft mode) instead of the embedded
 * mock cluster. */
#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "th_kafka.h"
#include "th_pg.h"
#include "th_proc.h"

typedef struct e2e_env {
    char dir[512];
    char ingest_url[256];
    char brokers[1024];
    char database_url[512];
    char maildir[600];
    char router_url[256];
    char twilio_url[256];
    char meta_url[256];
    char port_base[16];
} e2e_env_t;

static void e2e_dir(char *out, size_t outlen)
{
    /* The runner and the forked tests must agree on the directory, so it is
     * derived from the runner's pid, which the tests see as their parent. */
    const char *fixed = getenv("CRM_E2E_DIR");
    if (fixed && *fixed) {
        snprintf(out, outlen, "%s", fixed);
        return;
    }
    snprintf(out, outlen, "%s/test-e2e", CRM_BINARY_DIR);
}

static int read_env_value(const char *path, const char *name, char *out, size_t outlen)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[2048];
    size_t nlen = strlen(name);
    int rc = -1;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, name, nlen) != 0 || line[nlen] != '=')
            continue;
        char *v = line + nlen + 1;
        v[strcspn(v, "\n")] = '\0';
        size_t vl = strlen(v);
        if (vl >= 2 && v[0] == '\'' && v[vl - 1] == '\'') {
            v[vl - 1] = '\0';
            v++;
        }
        snprintf(out, outlen, "%s", v);
        rc = 0;
        break;
    }
    fclose(f);
    return rc;
}

static int load_env(e2e_env_t *e)
{
    memset(e, 0, sizeof(*e));
    e2e_dir(e->dir, sizeof(e->dir));
    char path[600];
    snprintf(path, sizeof(path), "%s/env", e->dir);
    if (read_env_value(path, "CRM_INGEST_URL", e->ingest_url, sizeof(e->ingest_url)) != 0 ||
        read_env_value(path, "KAFKA_BROKERS", e->brokers, sizeof(e->brokers)) != 0 ||
        read_env_value(path, "DATABASE_URL", e->database_url, sizeof(e->database_url)) != 0 ||
        read_env_value(path, "CRM_MAILDIR", e->maildir, sizeof(e->maildir)) != 0 ||
        read_env_value(path, "CRM_ROUTER_URL", e->router_url, sizeof(e->router_url)) != 0 ||
        read_env_value(path, "CRM_TWILIO_SANDBOX_URL", e->twilio_url, sizeof(e->twilio_url)) != 0 ||
        read_env_value(path, "CRM_META_SANDBOX_URL", e->meta_url, sizeof(e->meta_url)) != 0)
        return -1;
    const char *colon = strrchr(e->ingest_url, ':');
    snprintf(e->port_base, sizeof(e->port_base), "%s", colon ? colon + 1 : "");
    return 0;
}

static int crmctl(const char *sub, char *out, size_t outlen)
{
    char bin[512], dirv[600], portv[64], kafkav[1100];
    th_bin("crmctl", bin, sizeof(bin));
    char dir[512];
    e2e_dir(dir, sizeof(dir));
    snprintf(dirv, sizeof(dirv), "CRM_DEV_DIR=%s", dir);
    /* Spread concurrent runs (normal and sanitizer builds) over port ranges. */
    snprintf(portv, sizeof(portv), "CRM_DEV_PORT_BASE=%d", 21000 + (int)(getpid() % 400) * 20);
    const char *kafka = getenv("CRM_TEST_KAFKA_BROKERS");
    snprintf(kafkav, sizeof(kafkav), "KAFKA_BROKERS=%s", kafka ? kafka : "");
    char *env[] = {dirv, portv, kafkav, NULL};
    char *argv[] = {bin, "dev", (char *)sub, NULL};
    return th_run(argv, env, out, outlen, 240000);
}

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set;
    static char out[16384];
    crmctl("down", out, sizeof(out));
    int rc = crmctl("up", out, sizeof(out));
    fprintf(stderr, "%s", out);
    if (rc != 0) {
        fprintf(stderr, "e2e: crmctl dev up failed (%d)\n", rc);
        crmctl("down", out, sizeof(out));
        exit(1);
    }
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
    (void)stats;
    static char out[16384];
    crmctl("down", out, sizeof(out));
}

static json_object *run_json(char *const argv[])
{
    static char out[1 << 20];
    int rc = th_run(argv, NULL, out, sizeof(out), 60000);
    if (rc != 0) {
        fprintf(stderr, "command failed (%d): %s\n", rc, out);
        return NULL;
    }
    return json_tokener_parse(out);
}

/* Every message the sandbox received for addr, parsed by Python's email package. */
static json_object *mails_to(const e2e_env_t *e, const char *addr)
{
    char script[512];
    snprintf(script, sizeof(script), "%s/tests/tools/mime_inspect.py", CRM_SOURCE_DIR);
    char *argv[] = {"/usr/bin/python3", script, "find", (char *)e->maildir, (char *)addr, NULL};
    return run_json(argv);
}

static int mail_count(const e2e_env_t *e, const char *addr)
{
    json_object *j = mails_to(e, addr);
    if (!j)
        return -1;
    json_object *c = NULL;
    int n = json_object_object_get_ex(j, "count", &c) ? json_object_get_int(c) : -1;
    json_object_put(j);
    return n;
}

static int wait_mail_count(const e2e_env_t *e, const char *addr, int want, int timeout_ms)
{
    int n = -1;
    for (int waited = 0; waited <= timeout_ms; waited += 250) {
        n = mail_count(e, addr);
        if (n >= want)
            return n;
        usleep(250 * 1000);
    }
    return n;
}

static int post_json(const e2e_env_t *e, const char *body, long *status, char *out, size_t outlen)
{
    char url[512];
    snprintf(url, sizeof(url), "%s/v1/communications", e->ingest_url);
    return th_http("POST", url, body, "application/json", status, out, outlen);
}

/* Extracts the first communication_id of a 202 answer. */
static int answer_communication_id(const char *answer, char *out, size_t outlen)
{
    json_object *j = json_tokener_parse(answer);
    if (!j)
        return -1;
    json_object *arr = NULL, *first = NULL, *id = NULL;
    int rc = -1;
    if (json_object_object_get_ex(j, "communications", &arr) && json_object_array_length(arr) > 0) {
        first = json_object_array_get_idx(arr, 0);
        if (json_object_object_get_ex(first, "communication_id", &id)) {
            snprintf(out, outlen, "%s", json_object_get_string(id));
            rc = 0;
        }
    }
    json_object_put(j);
    return rc;
}

static int wait_sql_value(const e2e_env_t *e, const char *sql, const char *want, int timeout_ms, char *got,
                          size_t gotlen)
{
    for (int waited = 0; waited <= timeout_ms; waited += 250) {
        if (th_pg_query_value(e->database_url, sql, got, gotlen) == 0 && strcmp(got, want) == 0)
            return 0;
        usleep(250 * 1000);
    }
    return -1;
}

static void request_json(char *out, size_t outlen, const char *request_id, const char *client_id,
                         const char *email, const char *name, const char *locale)
{
    snprintf(out, outlen,
             "{\"request_id\":\"%s\",\"client_id\":\"%s\",\"message_type\":\"appointment_reminder\","
             "\"urgency\":\"normal\",\"recipient\":{\"name\":\"%s\",\"email\":\"%s\",\"locale\":\"%s\","
             "\"timezone\":\"Europe/Paris\"},\"context\":{\"appointment\":{\"date\":\"2026-12-01\",\"time\":\"10:30\","
             "\"location\":\"12 rue de la Paix\",\"with\":\"Dr. Lefèvre\"},\"company\":\"Acme\"}}",
             request_id, client_id, name, email, locale);
}

TestSuite(e2e, .timeout = 300);

Test(e2e, http_request_becomes_a_real_email_and_a_sent_row)
{
    e2e_env_t e;
    cr_assert_eq(load_env(&e), 0, "the fleet's env file is readable");
    char rid[64], addr[128], body[4096], answer[4096], cid[64], got[256];
    snprintf(rid, sizeof(rid), "e2e-mime-%d", (int)getpid());
    snprintf(addr, sizeof(addr), "zoe.%d@example.com", (int)getpid());
    request_json(body, sizeof(body), rid, "client-e2e-1", addr, "Zoë Müller", "fr-FR");
    long status = 0;
    cr_assert_eq(post_json(&e, body, &status, answer, sizeof(answer)), 0);
    cr_assert_eq(status, 202, "ingest accepts the request (got %ld: %s)", status, answer);
    cr_assert_eq(answer_communication_id(answer, cid, sizeof(cid)), 0, "202 carries the id: %s", answer);

    cr_assert_eq(wait_mail_count(&e, addr, 1, 60000), 1, "exactly one email reaches the SMTP server");
    json_object *j = mails_to(&e, addr);
    cr_assert_not_null(j);
    json_object *msgs = json_object_object_get(j, "messages");
    json_object *m = json_object_array_get_idx(msgs, 0);
    const char *ctype = json_object_get_string(json_object_object_get(m, "content_type"));
    const char *subject = json_object_get_string(json_object_object_get(m, "subject"));
    const char *from_name = json_object_get_string(json_object_object_get(m, "from_name"));
    const char *message_id = json_object_get_string(json_object_object_get(m, "message_id"));
    const char *text = json_object_get_string(json_object_object_get(m, "text"));
    const char *html = json_object_get_string(json_object_object_get(m, "html"));
    json_object *parts = json_object_object_get(m, "parts");
    json_object *defects = json_object_object_get(m, "defects");
    cr_expect_str_eq(ctype, "multipart/alternative");
    cr_expect_eq(json_object_array_length(parts), 3, "alternative + text + html");
    cr_expect_str_eq(json_object_get_string(json_object_array_get_idx(parts, 1)), "text/plain");
    cr_expect_str_eq(json_object_get_string(json_object_array_get_idx(parts, 2)), "text/html");
    cr_expect_eq(json_object_array_length(defects), 0, "Python's parser finds no MIME defect");
    cr_expect_str_eq(from_name, "Acme CRM");
    cr_expect(strlen(subject) > 0, "a decoded subject");
    cr_expect(message_id[0] == '<' && strchr(message_id, '@'), "a Message-ID: %s", message_id);
    cr_expect(strstr(text, "Zoë") != NULL, "the UTF-8 name survives in the text part: %s", text);
    cr_expect(strstr(html, "Zoë") != NULL || strstr(html, "Zo&#235;") != NULL, "and in the HTML part");
    json_object_put(j);

    char sql[512];
    snprintf(sql, sizeof(sql),
             "select status from communications where communication_id = '%s'", cid);
    cr_assert_eq(wait_sql_value(&e, sql, "sent", 60000, got, sizeof(got)), 0,
                 "the communication is `sent` in PostgreSQL (last seen '%s')", got);
    snprintf(sql, sizeof(sql),
             "select string_agg(status, ',' order by occurred_at, status) from communication_events "
             "where communication_id = '%s' and status in ('accepted','routed','sending','sent')",
             cid);
    cr_assert_eq(th_pg_query_value(e.database_url, sql, got, sizeof(got)), 0);
    cr_expect(strstr(got, "accepted") && strstr(got, "routed") && strstr(got, "sending") && strstr(got, "sent"),
              "the full history is kept: %s", got);
    snprintf(sql, sizeof(sql),
             "select (sent_at is not null and accepted_at is not null and sent_at >= accepted_at)::text "
             "from communications where communication_id = '%s'",
             cid);
    cr_assert_eq(th_pg_query_value(e.database_url, sql, got, sizeof(got)), 0);
    cr_expect_str_eq(got, "true", "milestone timestamps are recorded in order");
}

Test(e2e, duplicate_request_sends_one_email)
{
    e2e_env_t e;
    cr_assert_eq(load_env(&e), 0);
    char rid[64], addr[128], body[4096], answer[4096], cid1[64], cid2[64], got[64];
    snprintf(rid, sizeof(rid), "e2e-dup-%d", (int)getpid());
    snprintf(addr, sizeof(addr), "dup.%d@example.com", (int)getpid());
    request_json(body, sizeof(body), rid, "client-e2e-dup", addr, "Ana", "en");
    long status = 0;
    cr_assert_eq(post_json(&e, body, &status, answer, sizeof(answer)), 0);
    cr_assert_eq(status, 202);
    cr_assert_eq(answer_communication_id(answer, cid1, sizeof(cid1)), 0);
    cr_assert_eq(post_json(&e, body, &status, answer, sizeof(answer)), 0);
    cr_assert_eq(status, 202, "a retried request is accepted again");
    cr_assert_eq(answer_communication_id(answer, cid2, sizeof(cid2)), 0);
    cr_expect_str_eq(cid1, cid2, "the same request_id yields the same communication_id");

    cr_assert_eq(wait_mail_count(&e, addr, 1, 60000), 1);
    char sql[512];
    snprintf(sql, sizeof(sql), "select status from communications where communication_id = '%s'", cid1);
    cr_assert_eq(wait_sql_value(&e, sql, "sent", 60000, got, sizeof(got)), 0);
    /* Give a second dispatch, were there one, ample time to arrive. */
    sleep(3);
    cr_expect_eq(mail_count(&e, addr), 1, "the duplicate produced no second email");
    snprintf(sql, sizeof(sql),
             "select count(*) from communication_events where communication_id = '%s' and status = 'sent'", cid1);
    cr_assert_eq(th_pg_query_value(e.database_url, sql, got, sizeof(got)), 0);
    cr_expect_str_eq(got, "1", "one `sent` event");
}

Test(e2e, malformed_kafka_record_lands_on_the_dlq)
{
    e2e_env_t e;
    cr_assert_eq(load_env(&e), 0);
    char value[128];
    snprintf(value, sizeof(value), "{\"request_id\": \"broken-%d\", not json", (int)getpid());
    cr_assert_eq(th_kafka_produce(e.brokers, "crm.requests", "client-broken", value, NULL), 0);
    int found = 0;
    char reason[1024] = "";
    for (int round = 0; round < 60 && !found; round++) {
        size_t n = 0;
        th_kafka_record_t *recs = th_kafka_read_all(e.brokers, "crm.dlq", 1000000, 1000, &n);
        for (size_t i = 0; i < n && !found; i++) {
            if (recs[i].value && strcmp(recs[i].value, value) == 0) {
                found = 1;
                snprintf(reason, sizeof(reason), "%s", recs[i].headers_json ? recs[i].headers_json : "");
            }
        }
        th_kafka_records_free(recs, n);
    }
    cr_assert(found, "the malformed record is on crm.dlq, byte for byte");
    cr_expect(strstr(reason, "x-crm-dlq-reason") != NULL, "with its reason in the headers: %s", reason);
    cr_expect(strstr(reason, "crm.requests") != NULL, "and its source topic: %s", reason);

    /* The router keeps going: a valid request after it is still sent. */
    char rid[64], addr[128], body[4096], answer[4096];
    snprintf(rid, sizeof(rid), "e2e-after-dlq-%d", (int)getpid());
    snprintf(addr, sizeof(addr), "after.%d@example.com", (int)getpid());
    request_json(body, sizeof(body), rid, "client-broken", addr, "Ben", "de");
    long status = 0;
    cr_assert_eq(post_json(&e, body, &status, answer, sizeof(answer)), 0);
    cr_assert_eq(status, 202);
    cr_expect_eq(wait_mail_count(&e, addr, 1, 60000), 1, "the router still routes after the bad record");
}

/* Waits for the communication's row to reach `sent` and returns its provider message id. With
 * the webhook receiver in the fleet, the sandboxes' receipts may already have taken it further
 * (delivered, read), which counts as sent too. */
static int wait_sent(const e2e_env_t *e, const char *cid, const char *channel, char *provider_id, size_t len)
{
    char sql[512], got[256];
    snprintf(sql, sizeof(sql),
             "select case when status in ('delivered', 'read') then 'sent' else status end || '|' || "
             "coalesce(channel, '') from communications where communication_id = '%s'",
             cid);
    char want[64];
    snprintf(want, sizeof(want), "sent|%s", channel);
    if (wait_sql_value(e, sql, want, 60000, got, sizeof(got)) != 0) {
        fprintf(stderr, "communication %s is '%s', not '%s'\n", cid, got, want);
        return -1;
    }
    snprintf(sql, sizeof(sql), "select provider_message_id from communications where communication_id = '%s'", cid);
    return th_pg_query_value(e->database_url, sql, provider_id, len);
}

Test(e2e, sms_request_reaches_the_twilio_sandbox_and_ends_sent)
{
    e2e_env_t e;
    cr_assert_eq(load_env(&e), 0);
    char body[2048], answer[4096], cid[64], sid[128], phone[32];
    snprintf(phone, sizeof(phone), "+3361%07d", (int)(getpid() % 10000000));
    snprintf(body, sizeof(body),
             "{\"request_id\":\"e2e-sms-%d\",\"client_id\":\"client-sms\",\"message_type\":\"password_reset\","
             "\"channels\":[\"sms\"],\"recipient\":{\"name\":\"Ana\",\"phone\":\"%s\",\"locale\":\"en\"},"
             "\"context\":{\"reset_url\":\"https://app.example.com/r/1\",\"expires_in_minutes\":30}}",
             (int)getpid(), phone);
    long status = 0;
    cr_assert_eq(post_json(&e, body, &status, answer, sizeof(answer)), 0);
    cr_assert_eq(status, 202, "%s", answer);
    cr_assert_eq(answer_communication_id(answer, cid, sizeof(cid)), 0);
    cr_assert_eq(wait_sent(&e, cid, "sms", sid, sizeof(sid)), 0, "the SMS ends `sent`");
    cr_expect(strncmp(sid, "SM", 2) == 0, "with Twilio's message sid: %s", sid);

    /* The sandbox recorded the request, validated against Twilio's spec. */
    char url[512], recorded[1 << 16];
    snprintf(url, sizeof(url), "%s/_sandbox/requests", e.twilio_url);
    cr_assert_eq(th_http("GET", url, NULL, NULL, &status, recorded, sizeof(recorded)), 0);
    cr_assert_eq(status, 200);
    cr_expect(strstr(recorded, sid) != NULL, "the sandbox answered that sid");
    cr_expect(strstr(recorded, phone) != NULL, "to that number");
    cr_expect(strstr(recorded, "choose a new password") != NULL, "with the rendered English body");
}

/* Records the client's WhatsApp opt-in through the preferences API (the
 * router suppresses WhatsApp without it) and waits for the projection. */
static int grant_whatsapp_consent(const e2e_env_t *e, const char *client_id)
{
    char url[512], out[4096], sql[256], got[16];
    long status = 0;
    snprintf(url, sizeof(url), "%s/v1/clients/%s/preferences", e->ingest_url, client_id);
    const char *body = "{\"whatsapp_consent\":{\"granted\":true,\"at\":\"2026-03-01T10:00:00Z\","
                       "\"source\":\"web_form\"}}";
    if (th_http("PUT", url, body, "application/json", &status, out, sizeof(out)) != 0 || status != 200) {
        fprintf(stderr, "PUT %s: %ld %s\n", url, status, out);
        return -1;
    }
    snprintf(sql, sizeof(sql), "select count(*) from client_preferences where client_id = '%s'", client_id);
    int rc = wait_sql_value(e, sql, "1", 60000, got, sizeof(got));
    /* The router reads preferences through a short cache. */
    sleep(2);
    return rc;
}

Test(e2e, whatsapp_request_reaches_the_meta_sandbox_and_ends_sent)
{
    e2e_env_t e;
    cr_assert_eq(load_env(&e), 0);
    cr_assert_eq(grant_whatsapp_consent(&e, "client-wa"), 0, "the client's WhatsApp consent is recorded");
    char body[2048], answer[4096], cid[64], wamid[256], phone[32];
    snprintf(phone, sizeof(phone), "+3362%07d", (int)(getpid() % 10000000));
    snprintf(body, sizeof(body),
             "{\"request_id\":\"e2e-wa-%d\",\"client_id\":\"client-wa\",\"message_type\":\"appointment_reminder\","
             "\"channels\":[\"whatsapp\"],\"recipient\":{\"name\":\"Inès\",\"whatsapp\":\"%s\",\"locale\":\"fr\"},"
             "\"context\":{\"appointment\":{\"date\":\"2026-12-01\",\"time\":\"10:30\"}}}",
             (int)getpid(), phone);
    long status = 0;
    cr_assert_eq(post_json(&e, body, &status, answer, sizeof(answer)), 0);
    cr_assert_eq(status, 202, "%s", answer);
    cr_assert_eq(answer_communication_id(answer, cid, sizeof(cid)), 0);
    cr_assert_eq(wait_sent(&e, cid, "whatsapp", wamid, sizeof(wamid)), 0, "the WhatsApp message ends `sent`");
    cr_expect(strncmp(wamid, "wamid.", 6) == 0, "with Meta's message id: %s", wamid);

    /* No conversation is open, so the approved template went out, carrying
     * the communication id for Meta's status webhooks. */
    char url[512], recorded[1 << 17];
    snprintf(url, sizeof(url), "%s/_sandbox/requests", e.meta_url);
    cr_assert_eq(th_http("GET", url, NULL, NULL, &status, recorded, sizeof(recorded)), 0);
    cr_assert_eq(status, 200);
    const char *mine = strstr(recorded, cid);
    cr_assert_not_null(mine, "biz_opaque_callback_data carries the communication id");
    cr_expect(strstr(recorded, "\"template\"") != NULL, "outside the 24 h window a template is sent");
}

/* Runs last (suites run in name order): it replaces the fleet's router. */
TestSuite(zz_chaos, .timeout = 300);

Test(zz_chaos, router_sigkill_mid_run_loses_and_doubles_nothing)
{
    e2e_env_t e;
    cr_assert_eq(load_env(&e), 0);
    char pids_path[600];
    snprintf(pids_path, sizeof(pids_path), "%s/pids", e.dir);
    FILE *f = fopen(pids_path, "r");
    cr_assert_not_null(f);
    char name[32];
    int pid = 0, router_pid = 0;
    while (fscanf(f, "%31s %d", name, &pid) == 2) {
        if (strcmp(name, "router") == 0)
            router_pid = pid;
    }
    fclose(f);
    cr_assert(router_pid > 0, "the fleet's router is running");

    /* 300 requests in batches of 50, the router killed while they flow. */
    enum { total = 300, per_batch = 50 };
    int tag = (int)getpid();
    char *body = malloc(per_batch * 1024 + 64);
    cr_assert_not_null(body);
    char answer[65536];
    for (int b = 0; b < total / per_batch; b++) {
        size_t off = (size_t)sprintf(body, "{\"requests\":[");
        for (int i = 0; i < per_batch; i++) {
            int k = b * per_batch + i;
            off += (size_t)sprintf(body + off,
                                   "%s{\"request_id\":\"kill-%d-%d\",\"client_id\":\"kc-%d\","
                                   "\"message_type\":\"welcome\",\"recipient\":{\"name\":\"K %d\","
                                   "\"email\":\"k%d@kill-%d.example.com\",\"locale\":\"en\"}}",
                                   i ? "," : "", tag, k, k % 37, k, k, tag);
        }
        sprintf(body + off, "]}");
        long status = 0;
        cr_assert_eq(post_json(&e, body, &status, answer, sizeof(answer)), 0);
        cr_assert_eq(status, 202, "batch %d accepted: %s", b, answer);
        if (b == 2)
            cr_assert_eq(kill(router_pid, SIGKILL), 0, "SIGKILL the router mid-run");
    }
    free(body);

    /* Restart the router with the environment dev up gave it. */
    char bin[512], kafka_env[1100], db_env[600], port_env[64];
    th_bin("crm-router", bin, sizeof(bin));
    int router_port = atoi(strrchr(e.router_url, ':') + 1);
    snprintf(kafka_env, sizeof(kafka_env), "KAFKA_BROKERS=%s", e.brokers);
    snprintf(db_env, sizeof(db_env), "DATABASE_URL=%s", e.database_url);
    snprintf(port_env, sizeof(port_env), "HTTP_PORT=%d", router_port);
    char *env[] = {kafka_env, db_env, port_env, "HTTP_BIND=127.0.0.1", "ROUTER_ENABLED_CHANNELS=email", NULL};
    char *argv[] = {bin, NULL};
    th_proc_t router;
    sleep(1);
    cr_assert_eq(th_proc_start(&router, "router-restarted", argv, env), 0);
    cr_assert_eq(th_proc_wait_ready(&router, router_port, 60000), 0, "the restarted router becomes ready");

    char sql[512], got[64];
    snprintf(sql, sizeof(sql),
             "select count(*) from communications where request_id like 'kill-%d-%%' and status = 'sent'", tag);
    int ok = wait_sql_value(&e, sql, "300", 180000, got, sizeof(got));
    cr_expect_eq(ok, 0, "all 300 communications end `sent` (got %s)", got);

    snprintf(sql, sizeof(sql),
             "select count(*) from communication_events where status = 'sent' and communication_id in "
             "(select communication_id from communications where request_id like 'kill-%d-%%')",
             tag);
    cr_assert_eq(th_pg_query_value(e.database_url, sql, got, sizeof(got)), 0);
    cr_expect_str_eq(got, "300", "exactly one `sent` event per communication");

    /* Count what the SMTP server actually received: each address once. */
    char script[512], pattern[64];
    snprintf(script, sizeof(script), "%s/tests/tools/mime_inspect.py", CRM_SOURCE_DIR);
    snprintf(pattern, sizeof(pattern), "@kill-%d.example.com", tag);
    char *pargv[] = {"/usr/bin/python3", script, "find", e.maildir, pattern, NULL};
    json_object *j = run_json(pargv);
    cr_assert_not_null(j);
    int count = json_object_get_int(json_object_object_get(j, "count"));
    json_object_put(j);
    cr_expect_eq(count, total, "the SMTP server received exactly %d emails (got %d)", total, count);

    th_proc_stop(&router, SIGTERM, 15000);
}
