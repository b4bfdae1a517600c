/* test_worker.c - the pure parts of the worker core (crm/worker.h): result
 * helpers, response header lookup, Retry-After parsing. The batch loop
 * itself runs against real Kafka in tests/integration/test_worker_core.c. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "crm/worker.h"

/* 2015-10-21T07:28:00Z */
#define OCT21_2015_MS 1445412480000LL

Test(worker, class_names)
{
    cr_expect_str_eq(cmn_worker_class_name(CMN_WORKER_SENT), "sent");
    cr_expect_str_eq(cmn_worker_class_name(CMN_WORKER_RETRYABLE), "retryable");
    cr_expect_str_eq(cmn_worker_class_name(CMN_WORKER_PERMANENT), "permanent");
    cr_expect_str_eq(cmn_worker_class_name((cmn_worker_class_t)7), "unknown");
}

Test(worker, result_helpers)
{
    cmn_worker_result_t r;
    memset(&r, 0, sizeof r);
    cmn_worker_result_retry(&r, "20429", 7000, "Too Many Requests (%d)", 429);
    cr_expect_eq(r.cls, CMN_WORKER_RETRYABLE);
    cr_expect_str_eq(r.error_code, "20429");
    cr_expect_str_eq(r.error_message, "Too Many Requests (429)");
    cr_expect_eq(r.retry_after_ms, 7000);
    cmn_worker_result_retry(&r, "20429", -5, "x");
    cr_expect_eq(r.retry_after_ms, 0);

    memset(&r, 0, sizeof r);
    cmn_worker_result_permanent(&r, "21610", "unsubscribed", "Attempt to send to unsubscribed recipient");
    cr_expect_eq(r.cls, CMN_WORKER_PERMANENT);
    cr_expect_str_eq(r.reason, "unsubscribed");
    cr_expect_str_eq(r.error_code, "21610");

    memset(&r, 0, sizeof r);
    snprintf(r.provider_message_id, sizeof r.provider_message_id, "from-prepare");
    cmn_worker_result_sent(&r, NULL, NULL);
    cr_expect_eq(r.cls, CMN_WORKER_SENT);
    cr_expect_str_eq(r.provider_message_id, "from-prepare");
    cr_expect_str_eq(r.detail, "");
    cmn_worker_result_sent(&r, "SM0123456789abcdef0123456789abcdef", "status: %s", "queued");
    cr_expect_str_eq(r.provider_message_id, "SM0123456789abcdef0123456789abcdef");
    cr_expect_str_eq(r.detail, "status: queued");

    cmn_worker_result_fail(&r, CMN_WORKER_PERMANENT, "no_template", "%s", "no sms template for reminder");
    cr_expect_eq(r.cls, CMN_WORKER_PERMANENT);
    cr_expect_str_eq(r.error_message, "no sms template for reminder");
}

Test(worker, response_header_lookup)
{
    const char *block = "HTTP/2 429\r\n"
                        "content-type: application/json\r\n"
                        "Retry-After:   7  \r\n"
                        "X-Twilio-Request-Id: RQ123\r\n"
                        "x-empty:\r\n"
                        "\r\n";
    cmn_worker_response_t r = {.headers = block, .headers_len = strlen(block)};
    char buf[64];
    cr_expect_str_eq(cmn_worker_response_header(&r, "retry-after", buf, sizeof buf), "7");
    cr_expect_str_eq(cmn_worker_response_header(&r, "Content-Type", buf, sizeof buf), "application/json");
    cr_expect_str_eq(cmn_worker_response_header(&r, "x-twilio-request-id", buf, sizeof buf), "RQ123");
    cr_expect_str_eq(cmn_worker_response_header(&r, "x-empty", buf, sizeof buf), "");
    cr_expect_null(cmn_worker_response_header(&r, "retry", buf, sizeof buf), "a prefix is not the header");
    cr_expect_str_eq(buf, "");
    cr_expect_null(cmn_worker_response_header(&r, "location", buf, sizeof buf));
    /* A value longer than the buffer is cut, never overflowed. */
    char small[4];
    cr_expect_str_eq(cmn_worker_response_header(&r, "content-type", small, sizeof small), "app");
    /* No headers captured (SMTP channel): nothing found. */
    cmn_worker_response_t none = {.headers = "", .headers_len = 0};
    cr_expect_null(cmn_worker_response_header(&none, "retry-after", buf, sizeof buf));
    cr_expect_null(cmn_worker_response_header(NULL, "retry-after", buf, sizeof buf));
}

Test(worker, retry_after_seconds)
{
    cr_expect_eq(cmn_worker_parse_retry_after("0", 0), 0);
    cr_expect_eq(cmn_worker_parse_retry_after("7", 0), 7000);
    cr_expect_eq(cmn_worker_parse_retry_after(" 120 ", 0), 120000);
    /* Absurd values are capped at a day rather than overflowing. */
    cr_expect_eq(cmn_worker_parse_retry_after("99999999999999999999999", 0), 86400000);
    cr_expect_eq(cmn_worker_parse_retry_after("-1", 0), -1);
    cr_expect_eq(cmn_worker_parse_retry_after("1.5", 0), -1);
    cr_expect_eq(cmn_worker_parse_retry_after("7s", 0), -1);
    cr_expect_eq(cmn_worker_parse_retry_after("", 0), -1);
    cr_expect_eq(cmn_worker_parse_retry_after(NULL, 0), -1);
}

Test(worker, retry_after_http_date)
{
    const char *date = "Wed, 21 Oct 2015 07:28:00 GMT";
    cr_expect_eq(cmn_worker_parse_retry_after(date, OCT21_2015_MS - 30000), 30000);
    cr_expect_eq(cmn_worker_parse_retry_after(date, OCT21_2015_MS), 0);
    cr_expect_eq(cmn_worker_parse_retry_after(date, OCT21_2015_MS + 5000), 0, "a past date means now");
    cr_expect_eq(cmn_worker_parse_retry_after("Wed, 21 Oct 2015 07:28:00 UTC", 0), -1);
    cr_expect_eq(cmn_worker_parse_retry_after("Wed, 21 Foo 2015 07:28:00 GMT", 0), -1);
    cr_expect_eq(cmn_worker_parse_retry_after("Wed, 32 Oct 2015 07:28:00 GMT", 0), -1);
    cr_expect_eq(cmn_worker_parse_retry_after("Wed, 21 Oct 2015 25:28:00 GMT", 0), -1);
    cr_expect_eq(cmn_worker_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT trailing", 0), -1);
    cr_expect_eq(cmn_worker_parse_retry_after("2015-10-21T07:28:00Z", 0), -1);
}
