/* test_crmctl_testsend.c - `crmctl test-email`, `test-sms` and
 * `test-whatsapp` run as real subprocesses against the real sandboxes: the
 * SMTP sandbox (aiosmtpd with STARTTLS, AUTH and a test CA), the Twilio
 * sandbox (validating against Twilio's OpenAPI file) and the Meta sandbox
 * (validating against Meta's official request examples).
 *
 * What is asserted is what an operator relies on: the exit status, the
 * provider's answer on success (queue id, SM sid, wamid), the provider's
 * error and a hint naming what to fix on failure, that nothing is sent when
 * the command refuses locally, and that secrets never appear in the output. */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "crm/json.h"
#include "th_proc.h"
#include "th_smtp.h"
#include "th_twilio.h"

#define OUT_MAX 16384
#define RUN_TIMEOUT_MS 60000

#define FROM_EMAIL "noreply@crm.example"
#define SMS_FROM "+14155552345"
#define PHONE_NUMBER_ID "106540352242922"
#define META_TOKEN "EAAsandbox-testsend-9c1e-secret-token"
#define META_SANDBOX_BIN CRM_BINARY_DIR "/tools/sandbox-meta/crm-sandbox-meta"
#define META_EXAMPLES CRM_SHARED_DIR "/oracles/meta/cloud_api_examples.json"

/* Runs `crmctl <argv...>` with env overrides; returns the exit code and the
 * combined output in out. */
static int crmctl(char *const args[], char *const env[], char *out)
{
    char bin[512];
    char *argv[16];
    size_t n = 0;
    cr_assert_not_null(th_bin("crmctl", bin, sizeof bin));
    argv[n++] = bin;
    for (size_t i = 0; args[i] != NULL && n < 15; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    out[0] = '\0';
    return th_run(argv, env, out, OUT_MAX, RUN_TIMEOUT_MS);
}

/* ------------------------------------------------------------------ email */

typedef struct smtp_env {
    char port[32], user[96], pass[96], ca[700];
} smtp_env_t;

static void smtp_env_init(smtp_env_t *e, const th_smtp_t *s)
{
    snprintf(e->port, sizeof e->port, "SMTP_PORT=%d", s->port);
    snprintf(e->user, sizeof e->user, "SMTP_USERNAME=%s", s->username);
    snprintf(e->pass, sizeof e->pass, "SMTP_PASSWORD=%s", s->password);
    snprintf(e->ca, sizeof e->ca, "SMTP_CA_FILE=%s", s->ca_file);
}

Test(crmctl_testsend, email_success_and_refusals, .timeout = 240)
{
    th_smtp_t smtp;
    smtp_env_t e;
    char out[OUT_MAX];
    cr_assert_eq(th_smtp_start(&smtp, "crmctl-testsend"), 0, "SMTP sandbox did not start");
    smtp_env_init(&e, &smtp);

    /* Success: the server's final reply with its queue id. */
    char *const ok_env[] = {"SMTP_HOST=127.0.0.1", e.port, e.user, e.pass, "SMTP_FROM_EMAIL=" FROM_EMAIL,
                            "SMTP_FROM_NAME=CRM Test", "SMTP_USE_TLS=true", e.ca, "SMTP_TIMEOUT_MS=20000", NULL};
    char *const ok_args[] = {"test-email", "--to", "ana@example.com", "--subject", "Réglages SMTP", NULL};
    int rc = crmctl(ok_args, ok_env, out);
    cr_expect_eq(rc, 0, "%s", out);
    cr_expect_not_null(strstr(out, "250"), "%s", out);
    cr_expect_not_null(strstr(out, "queued as"), "the queue id is missing: %s", out);
    cr_expect_not_null(strstr(out, "ana@example.com"), "%s", out);
    cr_expect_eq(th_smtp_wait(&smtp, 1, 10000), 1, "the message did not arrive");
    char *msg = th_smtp_message(&smtp, 0);
    cr_assert_not_null(msg);
    cr_expect_not_null(strstr(msg, "To: ana@example.com"), "%s", msg);
    cr_expect_not_null(strstr(msg, "Subject: =?UTF-8?"), "the subject is not RFC 2047-encoded: %s", msg);
    free(msg);
    cr_expect_null(strstr(out, smtp.password), "the password was printed: %s", out);

    /* Wrong password: the server's 535, exit 1, a hint, and no secret. */
    char *const bad_pass_env[] = {"SMTP_HOST=127.0.0.1", e.port, e.user, "SMTP_PASSWORD=wrong-password-7f2c",
                                  "SMTP_FROM_EMAIL=" FROM_EMAIL, e.ca, NULL};
    char *const args_bo[] = {"test-email", "--to", "bob@example.com", NULL};
    rc = crmctl(args_bo, bad_pass_env, out);
    cr_expect_eq(rc, 1, "%s", out);
    cr_expect_not_null(strstr(out, "authentication failed"), "%s", out);
    cr_expect_not_null(strstr(out, "535"), "%s", out);
    cr_expect_not_null(strstr(out, "SMTP_PASSWORD"), "no hint: %s", out);
    cr_expect_null(strstr(out, "wrong-password-7f2c"), "the password was printed: %s", out);

    /* No CA: verification stays on and fails, with the hint. */
    char *const no_ca_env[] = {"SMTP_HOST=127.0.0.1", e.port, e.user, e.pass, "SMTP_FROM_EMAIL=" FROM_EMAIL,
                               "SMTP_CA_FILE=", NULL};
    rc = crmctl(args_bo, no_ca_env, out);
    cr_expect_eq(rc, 1, "%s", out);
    cr_expect_not_null(strstr(out, "TLS verification failed"), "%s", out);
    cr_expect_not_null(strstr(out, "SMTP_CA_FILE"), "no hint: %s", out);

    /* A scripted 550 at RCPT: the recipient is named as the refused party. */
    char *const args_550[] = {"test-email", "--to", "fail550-carol@example.com", NULL};
    rc = crmctl(args_550, ok_env, out);
    cr_expect_eq(rc, 1, "%s", out);
    cr_expect_not_null(strstr(out, "recipient refused"), "%s", out);
    cr_expect_not_null(strstr(out, "550 5.1.1"), "the server's text is missing: %s", out);

    cr_expect_eq(th_smtp_count(&smtp), 1, "only the first message may be delivered");
    th_smtp_stop(&smtp);

    /* Nothing listening: connection refused, pointing at host and port. */
    char dead_port[32];
    snprintf(dead_port, sizeof dead_port, "SMTP_PORT=%d", th_free_port());
    char *const dead_env[] = {"SMTP_HOST=127.0.0.1", dead_port, "SMTP_FROM_EMAIL=" FROM_EMAIL, NULL};
    rc = crmctl(args_bo, dead_env, out);
    cr_expect_eq(rc, 1, "%s", out);
    cr_expect_not_null(strstr(out, "connection refused"), "%s", out);
    cr_expect_not_null(strstr(out, "SMTP_HOST and SMTP_PORT"), "%s", out);
}

Test(crmctl_testsend, usage_and_config_errors_exit_2)
{
    char out[OUT_MAX];
    /* The env overrides replace the test's own environment only for the
     * variables named; empty values count as unset for required ones. */
    char *const no_host[] = {"SMTP_HOST=", "SMTP_FROM_EMAIL=" FROM_EMAIL, NULL};
    char *const args[] = {"test-email", "--to", "ana@example.com", NULL};
    cr_expect_eq(crmctl(args, no_host, out), 2, "%s", out);
    cr_expect_not_null(strstr(out, "SMTP_HOST"), "%s", out);

    char *const no_to[] = {"test-email", NULL};
    cr_expect_eq(crmctl(no_to, no_host, out), 2, "%s", out);
    cr_expect_not_null(strstr(out, "--to is required"), "%s", out);
    cr_expect_not_null(strstr(out, "usage:"), "%s", out);

    char *const bad_sid[] = {"TWILIO_ACCOUNT_SID=not-a-sid", "TWILIO_AUTH_TOKEN=secret-token-4471",
                             "TWILIO_PHONE_NUMBER=" SMS_FROM, NULL};
    char *const sms_args[] = {"test-sms", "--to", "+33612345678", NULL};
    cr_expect_eq(crmctl(sms_args, bad_sid, out), 2, "%s", out);
    cr_expect_not_null(strstr(out, "TWILIO_ACCOUNT_SID"), "%s", out);
    cr_expect_null(strstr(out, "secret-token-4471"), "%s", out);

    /* WhatsApp needs no database for a test send, but its provider settings. */
    char *const wa_env[] = {"WHATSAPP_PROVIDER=meta", "WHATSAPP_PHONE_NUMBER_ID=" PHONE_NUMBER_ID,
                            "WHATSAPP_ACCESS_TOKEN=", "DATABASE_URL=", "CRM_DATA_KEY=", NULL};
    char *const wa_args[] = {"test-whatsapp", "--to", "+14155550100", NULL};
    cr_expect_eq(crmctl(wa_args, wa_env, out), 2, "%s", out);
    cr_expect_not_null(strstr(out, "WHATSAPP_ACCESS_TOKEN"), "%s", out);
    cr_expect_null(strstr(out, "DATABASE_URL"), "a test send must not need the database: %s", out);

    char *const wa_both[] = {"test-whatsapp", "--to", "+14155550100", "--text", "hi", "--template", "x", NULL};
    cr_expect_eq(crmctl(wa_both, wa_env, out), 2, "%s", out);
    cr_expect_not_null(strstr(out, "exclude each other"), "%s", out);
}

/* -------------------------------------------------------------------- SMS */

Test(crmctl_testsend, sms_against_the_twilio_sandbox, .timeout = 240)
{
    th_twilio_t tw;
    char out[OUT_MAX], api[96];
    cr_assert_eq(th_twilio_start(&tw, NULL), 0, "Twilio sandbox did not start");
    snprintf(api, sizeof api, "TWILIO_API_URL=%s", tw.url);
    char *const env[] = {api, "TWILIO_ACCOUNT_SID=" TH_TWILIO_ACCOUNT_SID, "TWILIO_AUTH_TOKEN=" TH_TWILIO_AUTH_TOKEN,
                         "TWILIO_PHONE_NUMBER=" SMS_FROM, "TWILIO_MESSAGING_SERVICE_SID=", NULL};

    /* Success: the message sid. The number is echoed as typed. */
    char *const ok[] = {"test-sms", "--to", "+33 6 12 34 56 78", "--body", "Bonjour, ceci est un test", NULL};
    int rc = crmctl(ok, env, out);
    cr_expect_eq(rc, 0, "%s", out);
    cr_expect_not_null(strstr(out, "sid:      SM"), "%s", out);
    cr_expect_not_null(strstr(out, "+33 6 12 34 56 78"), "%s", out);
    json_object *reqs = th_twilio_wait_requests(&tw, 1, 10000);
    cr_assert_not_null(reqs);
    int count = 0;
    json_object *r = th_twilio_find(reqs, "+33612345678", &count);
    cr_expect_not_null(r, "the SMS did not reach the sandbox: %s", json_object_to_json_string(reqs));
    cr_expect_eq(count, 1);
    const char *sid = cmn_json_get_string(r, "sid");
    cr_expect(sid != NULL && strstr(out, sid) != NULL, "the printed sid is not the sandbox's: %s", out);
    size_t before = json_object_array_length(reqs);
    json_object_put(reqs);

    /* Wrong token: Twilio's 20003 with the credentials hint, token not printed. */
    char *const bad_env[] = {api, "TWILIO_ACCOUNT_SID=" TH_TWILIO_ACCOUNT_SID, "TWILIO_AUTH_TOKEN=wrong-token-93be",
                             "TWILIO_PHONE_NUMBER=" SMS_FROM, "TWILIO_MESSAGING_SERVICE_SID=", NULL};
    char *const ok2[] = {"test-sms", "--to", "+33612345679", NULL};
    rc = crmctl(ok2, bad_env, out);
    cr_expect_eq(rc, 1, "%s", out);
    cr_expect_not_null(strstr(out, "20003"), "%s", out);
    cr_expect_not_null(strstr(out, "TWILIO_AUTH_TOKEN"), "no hint: %s", out);
    cr_expect_null(strstr(out, "wrong-token-93be"), "the token was printed: %s", out);

    /* Scripted 21610: Twilio's message, more_info and the unsubscribe hint. */
    char *const stop[] = {"test-sms", "--to", "+33612321610", NULL};
    rc = crmctl(stop, env, out);
    cr_expect_eq(rc, 1, "%s", out);
    cr_expect_not_null(strstr(out, "code:      21610"), "%s", out);
    cr_expect_not_null(strstr(out, "message:"), "%s", out);
    cr_expect_not_null(strstr(out, "more_info:"), "%s", out);
    cr_expect_not_null(strstr(out, "START"), "no hint: %s", out);

    /* A landline and an invalid number are refused before sending. */
    reqs = th_twilio_requests(&tw);
    cr_assert_not_null(reqs);
    before = json_object_array_length(reqs);
    json_object_put(reqs);
    char *const landline[] = {"test-sms", "--to", "+33142685300", NULL};
    rc = crmctl(landline, env, out);
    cr_expect_eq(rc, 1, "%s", out);
    cr_expect_not_null(strstr(out, "fixed line"), "%s", out);
    cr_expect_not_null(strstr(out, "nothing was sent"), "%s", out);
    char *const invalid[] = {"test-sms", "--to", "+3361234567890", NULL};
    rc = crmctl(invalid, env, out);
    cr_expect_eq(rc, 1, "%s", out);
    cr_expect_not_null(strstr(out, "not a valid phone number"), "%s", out);
    reqs = th_twilio_requests(&tw);
    cr_assert_not_null(reqs);
    cr_expect_eq(json_object_array_length(reqs), before, "a refused number reached Twilio");
    json_object_put(reqs);
    th_twilio_stop(&tw);
}

/* --------------------------------------------------------------- WhatsApp */

typedef struct meta_sandbox {
    th_proc_t proc;
    int port;
    char url[96]; /* WHATSAPP_API_URL=... */
} meta_sandbox_t;

static void meta_start(meta_sandbox_t *m)
{
    char port[16];
    cr_assert_eq(access(META_SANDBOX_BIN, X_OK), 0, "%s is not built", META_SANDBOX_BIN);
    m->port = th_free_port();
    snprintf(port, sizeof port, "%d", m->port);
    snprintf(m->url, sizeof m->url, "WHATSAPP_API_URL=http://127.0.0.1:%d", m->port);
    char *const argv[] = {META_SANDBOX_BIN, "--phone-number-id", PHONE_NUMBER_ID, "--examples", META_EXAMPLES,
                          "--port", port, NULL};
    /* The token through the environment keeps it out of the process list. */
    char *const env[] = {"META_SANDBOX_ACCESS_TOKEN=" META_TOKEN, NULL};
    cr_assert_eq(th_proc_start(&m->proc, "sandbox-meta", argv, env), 0);
    cr_assert_eq(th_proc_wait_ready(&m->proc, m->port, 20000), 0, "sandbox not ready; see %s", m->proc.log_path);
}

/* The number of requests the Meta sandbox recorded for `to` (digits); the
 * HTTP status it answered the last of them in *status (0 when none). */
static int meta_count(const meta_sandbox_t *m, const char *to, int *status)
{
    static char body[1 << 20];
    char url[96], err[256];
    long http = 0;
    int count = 0;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/_sandbox/requests", m->port);
    cr_assert_eq(th_http("GET", url, NULL, NULL, &http, body, sizeof body), 0);
    cr_assert_eq(http, 200);
    json_object *arr = cmn_json_parse(body, strlen(body), err, sizeof err);
    cr_assert_not_null(arr, "%s", err);
    *status = 0;
    for (size_t i = 0; i < json_object_array_length(arr); i++) {
        json_object *r = json_object_array_get_idx(arr, i);
        const char *rto = cmn_json_get_string(cmn_json_get_object(r, "body"), "to");
        if (rto != NULL && strcmp(rto, to) == 0) {
            *status = json_object_get_int(json_object_object_get(r, "status"));
            count++;
        }
    }
    json_object_put(arr);
    return count;
}

Test(crmctl_testsend, whatsapp_against_the_meta_sandbox, .timeout = 240)
{
    meta_sandbox_t m;
    char out[OUT_MAX];
    meta_start(&m);
    /* No DATABASE_URL nor CRM_DATA_KEY: a test send does not need them. */
    char *const env[] = {"WHATSAPP_PROVIDER=meta", m.url, "WHATSAPP_PHONE_NUMBER_ID=" PHONE_NUMBER_ID,
                         "WHATSAPP_ACCESS_TOKEN=" META_TOKEN, "DATABASE_URL=", "CRM_DATA_KEY=", NULL};

    char *const text[] = {"test-whatsapp", "--to", "+1 415 555 0100", "--text", "Hello from the test", NULL};
    int rc = crmctl(text, env, out);
    cr_expect_eq(rc, 0, "%s", out);
    cr_expect_not_null(strstr(out, "wamid:  wamid."), "%s", out);
    cr_expect_not_null(strstr(out, "+1 415 555 0100"), "%s", out);
    int status = 0;
    cr_expect_eq(meta_count(&m, "14155550100", &status), 1);
    cr_expect_eq(status, 200, "the sandbox did not accept the body as one of Meta's shapes");

    char *const tpl[] = {"test-whatsapp", "--to", "+14155550101", "--template", "hello_world", "--language", "en_US",
                         NULL};
    rc = crmctl(tpl, env, out);
    cr_expect_eq(rc, 0, "%s", out);
    cr_expect_not_null(strstr(out, "wamid:  wamid."), "%s", out);
    cr_expect_eq(meta_count(&m, "14155550101", &status), 1);
    cr_expect_eq(status, 200, "the sandbox did not accept the template body");

    /* Scripted 131047: Meta's error fields and the hint to use a template. */
    char *const closed[] = {"test-whatsapp", "--to", "+14155131047", NULL};
    rc = crmctl(closed, env, out);
    cr_expect_eq(rc, 1, "%s", out);
    cr_expect_not_null(strstr(out, "131047"), "%s", out);
    cr_expect_not_null(strstr(out, "fbtrace_id:"), "%s", out);
    cr_expect_not_null(strstr(out, "--template NAME --language CODE"), "no hint: %s", out);

    /* A wrong token: Graph's 190 and the token hint, without the token. */
    char *const bad_env[] = {"WHATSAPP_PROVIDER=meta", m.url, "WHATSAPP_PHONE_NUMBER_ID=" PHONE_NUMBER_ID,
                             "WHATSAPP_ACCESS_TOKEN=EAAwrong-token-55d1", NULL};
    rc = crmctl(text, bad_env, out);
    cr_expect_eq(rc, 1, "%s", out);
    cr_expect_not_null(strstr(out, "190"), "%s", out);
    cr_expect_not_null(strstr(out, "WHATSAPP_ACCESS_TOKEN"), "no hint: %s", out);
    cr_expect_null(strstr(out, "EAAwrong-token-55d1"), "the token was printed: %s", out);
    cr_expect_null(strstr(out, META_TOKEN), "%s", out);

    /* An invalid number never reaches Meta. */
    char *const invalid[] = {"test-whatsapp", "--to", "+1415", NULL};
    rc = crmctl(invalid, env, out);
    cr_expect_eq(rc, 1, "%s", out);
    cr_expect_not_null(strstr(out, "not a valid phone number"), "%s", out);
    cr_expect_eq(meta_count(&m, "1415", &status), 0);
    th_proc_stop(&m.proc, SIGTERM, 20000);
}

Test(crmctl_testsend, whatsapp_through_twilio, .timeout = 240)
{
    th_twilio_t tw;
    char out[OUT_MAX], api[96];
    cr_assert_eq(th_twilio_start(&tw, NULL), 0, "Twilio sandbox did not start");
    snprintf(api, sizeof api, "TWILIO_API_URL=%s", tw.url);
    char *const env[] = {"WHATSAPP_PROVIDER=twilio", api, "TWILIO_ACCOUNT_SID=" TH_TWILIO_ACCOUNT_SID,
                         "TWILIO_AUTH_TOKEN=" TH_TWILIO_AUTH_TOKEN, "TWILIO_WHATSAPP_NUMBER=" SMS_FROM, NULL};
    char *const text[] = {"test-whatsapp", "--to", "+14155550100", NULL};
    int rc = crmctl(text, env, out);
    cr_expect_eq(rc, 0, "%s", out);
    cr_expect_not_null(strstr(out, "sid:    SM"), "%s", out);
    json_object *reqs = th_twilio_wait_requests(&tw, 1, 10000);
    cr_assert_not_null(reqs);
    int count = 0;
    cr_expect_not_null(th_twilio_find(reqs, "whatsapp:+14155550100", &count), "%s", json_object_to_json_string(reqs));
    json_object_put(reqs);

    /* A Meta template name is not a Content SID. */
    char *const tpl[] = {"test-whatsapp", "--to", "+14155550100", "--template", "hello_world", NULL};
    cr_expect_eq(crmctl(tpl, env, out), 2, "%s", out);
    cr_expect_not_null(strstr(out, "Content SID"), "%s", out);
    th_twilio_stop(&tw);
}
