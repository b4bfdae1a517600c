/* Unit tests of the reading of Twilio's answers (services/sms-worker/
 * sms_twilio.c): the 201 Message resource, the error body in its legacy and
 * RFC 9457 shapes, and the redaction of phone numbers from provider texts.
 * The bodies are the official examples from shared/oracles/twilio where
 * one exists. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "crm/err.h"
#include "sms_twilio.h"

/* The "create" 201 example of the OpenAPI description, verbatim. */
static const char CREATED[] =
    "{\"account_sid\":\"ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"api_version\":\"2010-04-01\",\"body\":\"Hello! 👍\","
    "\"date_created\":\"Thu, 24 Aug 2023 05:01:45 +0000\",\"date_sent\":\"Thu, 24 Aug 2023 05:01:45 +0000\","
    "\"date_updated\":\"Thu, 24 Aug 2023 05:01:45 +0000\",\"direction\":\"outbound-api\",\"error_code\":null,"
    "\"error_message\":null,\"from\":\"+14155552345\",\"num_media\":\"0\",\"num_segments\":\"1\",\"price\":null,"
    "\"price_unit\":null,\"messaging_service_sid\":\"MGaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\","
    "\"sid\":\"SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"status\":\"queued\",\"subresource_uris\":{\"media\":"
    "\"/2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Messages/SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Media.json\"},"
    "\"to\":\"+14155552345\",\"uri\":\"/2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Messages/"
    "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.json\"}";

Test(sms_twilio, created_message)
{
    sms_twilio_created_t c;
    cr_assert_eq(sms_twilio_parse_created(CREATED, strlen(CREATED), &c), 0);
    cr_expect_str_eq(c.sid, "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    cr_expect_str_eq(c.status, "queued");
    cr_expect_eq(c.num_segments, 1);

    const char mms[] = "{\"sid\":\"MM0123456789abcdef0123456789ABCDEF\",\"status\":\"accepted\",\"num_segments\":2}";
    cr_assert_eq(sms_twilio_parse_created(mms, strlen(mms), &c), 0);
    cr_expect_str_eq(c.sid, "MM0123456789abcdef0123456789ABCDEF");
    cr_expect_eq(c.num_segments, 2);

    const char no_segments[] = "{\"sid\":\"SM0123456789abcdef0123456789abcdef\"}";
    cr_assert_eq(sms_twilio_parse_created(no_segments, strlen(no_segments), &c), 0);
    cr_expect_str_eq(c.status, "");
    cr_expect_eq(c.num_segments, -1);
}

Test(sms_twilio, created_without_a_valid_sid_is_refused)
{
    sms_twilio_created_t c;
    const char *bad[] = {"", "not json", "[]", "{\"status\":\"queued\"}", "{\"sid\":\"SM123\"}",
                         "{\"sid\":\"XX0123456789abcdef0123456789abcdef\"}", "{\"sid\":42}",
                         "{\"sid\":\"SM0123456789abcdef0123456789abcdef\"} trailing"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_expect_eq(sms_twilio_parse_created(bad[i], strlen(bad[i]), &c), CMN_ERR_PARSE, "%s", bad[i]);
        cr_expect_str_eq(c.sid, "");
    }
    cr_expect_eq(sms_twilio_parse_created(NULL, 0, &c), CMN_ERR_PARSE);
}

Test(sms_twilio, legacy_error_body)
{
    /* webhook_and_error_examples.json: error_body.typical_21211_body_constructed */
    const char body[] = "{\"code\": 21211, \"message\": \"The 'To' number 5551234567 is not a valid phone number.\", "
                        "\"more_info\": \"https://www.twilio.com/docs/errors/21211\", \"status\": 400}";
    sms_twilio_error_t e;
    cr_assert_eq(sms_twilio_parse_error(body, strlen(body), &e), 0);
    cr_expect_eq(e.code, 21211);
    cr_expect_eq(e.status, 400);
    cr_expect_str_eq(e.message, "The 'To' number <phone> is not a valid phone number.");
    cr_expect_str_eq(e.more_info, "https://www.twilio.com/docs/errors/21211");
}

Test(sms_twilio, sdk_test_body_with_details)
{
    /* error_body.verbatim_sdk_test_body (twilio-python) */
    const char body[] = "{\"code\": 20001, \"message\": \"Bad request\", \"more_info\": "
                        "\"https://www.twilio.com/docs/errors/20001\", \"status\": 400, \"details\": {\"foo\": \"bar\"}}";
    sms_twilio_error_t e;
    cr_assert_eq(sms_twilio_parse_error(body, strlen(body), &e), 0);
    cr_expect_eq(e.code, 20001);
    cr_expect_str_eq(e.message, "Bad request");
}

Test(sms_twilio, problem_json_body)
{
    const char body[] = "{\"type\":\"https://www.twilio.com/docs/errors/20429\",\"title\":\"Too Many Requests\","
                        "\"status\":429,\"code\":20429,\"detail\":\"Rate limit exceeded\\nslow down\"}";
    sms_twilio_error_t e;
    cr_assert_eq(sms_twilio_parse_error(body, strlen(body), &e), 0);
    cr_expect_eq(e.code, 20429);
    cr_expect_eq(e.status, 429);
    cr_expect_str_eq(e.message, "Rate limit exceeded slow down", "control characters become spaces");
    const char title_only[] = "{\"title\":\"Service Unavailable\",\"status\":\"503\"}";
    cr_assert_eq(sms_twilio_parse_error(title_only, strlen(title_only), &e), 0);
    cr_expect_eq(e.code, 0);
    cr_expect_eq(e.status, 503);
    cr_expect_str_eq(e.message, "Service Unavailable");
}

Test(sms_twilio, unusable_error_bodies)
{
    sms_twilio_error_t e;
    const char *bad[] = {"", "<html>502 Bad Gateway</html>", "{}", "{\"more_info\":\"x\"}", "[1]", "null"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_expect_eq(sms_twilio_parse_error(bad[i], strlen(bad[i]), &e), CMN_ERR_PARSE, "%s", bad[i]);
        cr_expect_eq(e.code, 0);
        cr_expect_str_eq(e.message, "");
    }
    /* A huge message is cut, not overflowed. */
    char big[4096];
    int n = snprintf(big, sizeof big, "{\"code\":30001,\"message\":\"");
    memset(big + n, 'x', 3000);
    snprintf(big + n + 3000, sizeof big - (size_t)n - 3000, "\"}");
    cr_assert_eq(sms_twilio_parse_error(big, strlen(big), &e), 0);
    cr_expect_eq(strlen(e.message), SMS_TWILIO_TEXT_MAX - 1);
}

static const char *redacted(const char *s)
{
    static char buf[512];
    snprintf(buf, sizeof buf, "%s", s);
    sms_twilio_redact_numbers(buf);
    return buf;
}

Test(sms_twilio, phone_numbers_are_redacted)
{
    cr_expect_str_eq(redacted("The 'To' number +33612345678 is not valid"), "The 'To' number <phone> is not valid");
    cr_expect_str_eq(redacted("number (555) 123-4567."), "number <phone>.");
    cr_expect_str_eq(redacted("+1 415 555 2345, +44.7700.900123"), "<phone>, <phone>");
    cr_expect_str_eq(redacted("5551234567"), "<phone>");
    /* Codes, counts and ids stay. */
    cr_expect_str_eq(redacted("error 21610 after 3 tries"), "error 21610 after 3 tries");
    cr_expect_str_eq(redacted("limit 1600 characters (160 per segment)"), "limit 1600 characters (160 per segment)");
    cr_expect_str_eq(redacted("sid SM0123456789abcdef0123456789abcdef"), "sid SM0123456789abcdef0123456789abcdef");
    cr_expect_str_eq(redacted("Account AC12345678901234567890123456789012"),
                     "Account AC12345678901234567890123456789012");
    cr_expect_str_eq(redacted(""), "");
    sms_twilio_redact_numbers(NULL);
}
