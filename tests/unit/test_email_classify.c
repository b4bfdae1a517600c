/* Unit tests of SMTP outcome classification and sender settings
 * (services/email-worker/email_smtp.c). The network side is covered by
 * tests/integration/test_email_worker.c against a real SMTP server. */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <string.h>

#include "email_smtp.h"
#include "crm/worker.h"

Test(email_classify, smtp_codes)
{
    struct {
        CURLcode code;
        long smtp;
        cmn_worker_class_t want;
    } cases[] = {
        {CURLE_OK, 250, CMN_WORKER_SENT},
        {CURLE_OK, 0, CMN_WORKER_SENT},
        /* 5xx: permanent whatever libcurl reports alongside. */
        {CURLE_SEND_ERROR, 550, CMN_WORKER_PERMANENT}, /* RCPT refused */
        {CURLE_SEND_ERROR, 553, CMN_WORKER_PERMANENT},
        {CURLE_WEIRD_SERVER_REPLY, 554, CMN_WORKER_PERMANENT},
        {CURLE_LOGIN_DENIED, 535, CMN_WORKER_PERMANENT},
        {CURLE_SEND_ERROR, 530, CMN_WORKER_PERMANENT},
        {CURLE_SEND_ERROR, 599, CMN_WORKER_PERMANENT},
        /* 4xx: the server asks to come back later. */
        {CURLE_SEND_ERROR, 451, CMN_WORKER_RETRYABLE},
        {CURLE_SEND_ERROR, 452, CMN_WORKER_RETRYABLE},
        {CURLE_WEIRD_SERVER_REPLY, 421, CMN_WORKER_RETRYABLE},
        {CURLE_LOGIN_DENIED, 454, CMN_WORKER_RETRYABLE},
        {CURLE_SEND_ERROR, 400, CMN_WORKER_RETRYABLE},
        {CURLE_SEND_ERROR, 499, CMN_WORKER_RETRYABLE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        cr_assert_eq(email_smtp_classify(cases[i].code, cases[i].smtp), cases[i].want, "case %zu (%d, %ld)", i,
                     (int)cases[i].code, cases[i].smtp);
}

Test(email_classify, transport_failures_are_retryable)
{
    CURLcode codes[] = {CURLE_COULDNT_CONNECT,     CURLE_COULDNT_RESOLVE_HOST, CURLE_OPERATION_TIMEDOUT,
                        CURLE_SSL_CONNECT_ERROR,   CURLE_PEER_FAILED_VERIFICATION, CURLE_USE_SSL_FAILED,
                        CURLE_RECV_ERROR,          CURLE_SEND_ERROR,           CURLE_GOT_NOTHING,
                        CURLE_SSL_CACERT_BADFILE};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        cr_assert_eq(email_smtp_classify(codes[i], 0), CMN_WORKER_RETRYABLE, "%s", curl_easy_strerror(codes[i]));
        /* A 2xx/3xx seen before the failure (greeting, STARTTLS 220) does not make it sent. */
        cr_assert_eq(email_smtp_classify(codes[i], 220), CMN_WORKER_RETRYABLE);
        cr_assert_eq(email_smtp_classify(codes[i], 354), CMN_WORKER_RETRYABLE);
    }
}

Test(email_classify, class_names)
{
    cr_assert_str_eq(cmn_worker_class_name(CMN_WORKER_SENT), "sent");
    cr_assert_str_eq(cmn_worker_class_name(CMN_WORKER_RETRYABLE), "retryable");
    cr_assert_str_eq(cmn_worker_class_name(CMN_WORKER_PERMANENT), "permanent");
}

Test(email_classify, result_fail_fills_fields)
{
    cmn_worker_result_t r;
    memset(&r, 0, sizeof r);
    cmn_worker_result_fail(&r, CMN_WORKER_PERMANENT, "550", "%s", "5.1.1 Mailbox unavailable");
    cr_assert_eq(r.cls, CMN_WORKER_PERMANENT);
    cr_assert_str_eq(r.error_code, "550");
    cr_assert_str_eq(r.error_message, "5.1.1 Mailbox unavailable");
}

static email_smtp_config_t base_cfg(void)
{
    email_smtp_config_t c = {
        .host = "smtp.example.com",
        .port = 587,
        .username = "user",
        .password = "secret",
        .from_email = "noreply@crm.example",
        .use_tls = 1,
        .ca_file = "",
        .timeout_ms = 30000,
    };
    return c;
}

Test(email_classify, url_and_tls_mode)
{
    char err[256] = "";
    email_smtp_config_t c = base_cfg();
    email_smtp_t *s = email_smtp_new(&c, err, sizeof err);
    cr_assert_not_null(s, "%s", err);
    /* The path is the EHLO name: the sender's domain. */
    cr_assert_str_eq(email_smtp_url(s), "smtp://smtp.example.com:587/crm.example");
    email_smtp_destroy(s);

    c.port = 465;
    s = email_smtp_new(&c, err, sizeof err);
    cr_assert_str_eq(email_smtp_url(s), "smtps://smtp.example.com:465/crm.example");
    email_smtp_destroy(s);

    c = base_cfg();
    c.host = "::1";
    s = email_smtp_new(&c, err, sizeof err);
    cr_assert_str_eq(email_smtp_url(s), "smtp://[::1]:587/crm.example");
    email_smtp_destroy(s);
}

Test(email_classify, password_never_in_clear)
{
    char err[256] = "";
    email_smtp_config_t c = base_cfg();
    c.use_tls = 0;
    cr_assert_null(email_smtp_new(&c, err, sizeof err), "AUTH without TLS must be refused");
    cr_assert_not_null(strstr(err, "SMTP_USE_TLS"));
    cr_assert_null(strstr(err, "secret"), "the password must not appear in messages");
    c.port = 465; /* implicit TLS is fine */
    email_smtp_t *s = email_smtp_new(&c, err, sizeof err);
    cr_assert_not_null(s);
    email_smtp_destroy(s);
    c = base_cfg();
    c.use_tls = 0;
    c.username = ""; /* a local relay without AUTH may be plain */
    s = email_smtp_new(&c, err, sizeof err);
    cr_assert_not_null(s);
    email_smtp_destroy(s);
}

Test(email_classify, bad_settings_refused)
{
    char err[256] = "";
    email_smtp_config_t c = base_cfg();
    c.host = "";
    cr_assert_null(email_smtp_new(&c, err, sizeof err));
    c = base_cfg();
    c.host = "evil.example/path";
    cr_assert_null(email_smtp_new(&c, err, sizeof err));
    c = base_cfg();
    c.port = 0;
    cr_assert_null(email_smtp_new(&c, err, sizeof err));
    c = base_cfg();
    c.from_email = "no-at-sign";
    cr_assert_null(email_smtp_new(&c, err, sizeof err));
}

Test(email_classify, transfer_before_any_reply)
{
    char err[256] = "";
    email_smtp_config_t c = base_cfg();
    email_smtp_t *s = email_smtp_new(&c, err, sizeof err);
    char *data = strdup("Subject: x\r\n\r\nbody\r\n");
    email_smtp_transfer_t *t = email_smtp_transfer_new(s, "ana@example.com", data, strlen(data));
    cr_assert_not_null(t);
    cr_assert_str_eq(email_smtp_transfer_reply(t, 250), "");
    cr_assert_not_null(email_smtp_transfer_easy(t));
    cr_assert_eq(email_smtp_transfer_easy(t), email_smtp_transfer_easy(t), "one easy handle per transfer");
    cmn_worker_result_t r;
    memset(&r, 0, sizeof r);
    /* A connection that never happened: retryable, with a transport code. */
    email_smtp_transfer_result(t, CURLE_COULDNT_CONNECT, &r);
    cr_assert_eq(r.cls, CMN_WORKER_RETRYABLE);
    cr_assert_str_eq(r.error_code, "connect_error");
    cr_assert(strncmp(r.error_message, "retryable: ", 11) == 0, "%s", r.error_message);
    memset(&r, 0, sizeof r);
    email_smtp_transfer_result(t, CURLE_OPERATION_TIMEDOUT, &r);
    cr_assert_str_eq(r.error_code, "timeout");
    memset(&r, 0, sizeof r);
    email_smtp_transfer_result(t, CURLE_PEER_FAILED_VERIFICATION, &r);
    cr_assert_str_eq(r.error_code, "tls_error");
    email_smtp_transfer_free(t);
    email_smtp_destroy(s);
}
