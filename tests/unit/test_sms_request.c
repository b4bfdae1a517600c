/* Unit tests of the Twilio request building of the SMS worker
 * (services/sms-worker/sms_request.c): form encoding, the Messages URL, the
 * StatusCallback URL and the context's media URLs. */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "crm/buf.h"
#include "crm/err.h"
#include "sms_request.h"

#define SID "AC0123456789abcdef0123456789abcdef"
#define CID "6f1c2d9e-5b7a-5c3e-9f00-0123456789ab"

static char *encoded(const char *s)
{
    static char out[1024];
    cmn_buf_t b = CMN_BUF_INIT;
    cr_assert_eq(sms_form_encode(&b, s), 0);
    snprintf(out, sizeof out, "%s", b.data != NULL ? b.data : "");
    cmn_buf_free(&b);
    return out;
}

Test(sms_request, form_encoding_keeps_unreserved_and_escapes_the_rest)
{
    cr_expect_str_eq(encoded("AZaz09-._~"), "AZaz09-._~");
    cr_expect_str_eq(encoded("+33612345678"), "%2B33612345678");
    cr_expect_str_eq(encoded("a b&c=d"), "a+b%26c%3Dd");
    cr_expect_str_eq(encoded("100%/?#"), "100%25%2F%3F%23");
    /* UTF-8 goes byte for byte, upper-case hex. */
    cr_expect_str_eq(encoded("é👍"), "%C3%A9%F0%9F%91%8D");
    cr_expect_str_eq(encoded("line1\nline2\r"), "line1%0Aline2%0D");
    cr_expect_str_eq(encoded(""), "");
}

Test(sms_request, form_add_skips_absent_values_and_joins_with_ampersands)
{
    cmn_buf_t b = CMN_BUF_INIT;
    cr_assert_eq(sms_form_add(&b, "To", "+1"), 0);
    cr_assert_eq(sms_form_add(&b, "From", NULL), 0);
    cr_assert_eq(sms_form_add(&b, "Body", ""), 0);
    cr_assert_eq(sms_form_add(&b, "Body", "hi there"), 0);
    cr_expect_str_eq(b.data, "To=%2B1&Body=hi+there");
    cmn_buf_free(&b);
}

Test(sms_request, form_has_every_parameter_in_order)
{
    const char *media[] = {"https://cdn.example/a.jpg", "https://cdn.example/b c.png?x=1&y=2"};
    sms_request_t r = {
        .to = "+33612345678",
        .from = "+14155552345",
        .body = "Bonjour Zoë & Co: 50% off!",
        .status_callback = "https://hooks.example/twilio/status?communication_id=" CID "&hop=0&attempt=1",
        .media_urls = media,
        .n_media = 2,
    };
    cmn_buf_t b = CMN_BUF_INIT;
    cr_assert_eq(sms_request_form(&r, &b), 0);
    cr_expect_str_eq(b.data, "To=%2B33612345678&From=%2B14155552345"
                             "&Body=Bonjour+Zo%C3%AB+%26+Co%3A+50%25+off%21"
                             "&StatusCallback=https%3A%2F%2Fhooks.example%2Ftwilio%2Fstatus%3Fcommunication_id%3D" CID
                             "%26hop%3D0%26attempt%3D1"
                             "&MediaUrl=https%3A%2F%2Fcdn.example%2Fa.jpg"
                             "&MediaUrl=https%3A%2F%2Fcdn.example%2Fb+c.png%3Fx%3D1%26y%3D2");
    cmn_buf_free(&b);
}

Test(sms_request, messaging_service_replaces_from_and_optional_parts_are_left_out)
{
    sms_request_t r = {.to = "+4915112345678", .messaging_service_sid = "MG0123456789abcdef0123456789abcdef",
                       .body = "Hallo"};
    cmn_buf_t b = CMN_BUF_INIT;
    cr_assert_eq(sms_request_form(&r, &b), 0);
    cr_expect_str_eq(b.data, "To=%2B4915112345678&MessagingServiceSid=MG0123456789abcdef0123456789abcdef&Body=Hallo");
    /* Reusing the buffer starts over. */
    r.from = "+14155552345";
    cr_assert_eq(sms_request_form(&r, &b), 0);
    cr_expect_str_eq(b.data, "To=%2B4915112345678&From=%2B14155552345"
                             "&MessagingServiceSid=MG0123456789abcdef0123456789abcdef&Body=Hallo");
    cmn_buf_free(&b);
}

Test(sms_request, form_refuses_incomplete_requests)
{
    const char *media[SMS_MAX_MEDIA + 1];
    for (size_t i = 0; i <= SMS_MAX_MEDIA; i++)
        media[i] = "https://cdn.example/x.jpg";
    cmn_buf_t b = CMN_BUF_INIT;
    sms_request_t no_to = {.from = "+14155552345", .body = "x"};
    sms_request_t no_sender = {.to = "+33612345678", .body = "x"};
    sms_request_t no_body = {.to = "+33612345678", .from = "+14155552345", .body = ""};
    sms_request_t media_only = {.to = "+33612345678", .from = "+14155552345", .media_urls = media, .n_media = 1};
    sms_request_t too_much = {.to = "+33612345678", .from = "+14155552345", .body = "x", .media_urls = media,
                              .n_media = SMS_MAX_MEDIA + 1};
    cr_expect_eq(sms_request_form(&no_to, &b), CMN_ERR_INVALID);
    cr_expect_eq(sms_request_form(&no_sender, &b), CMN_ERR_INVALID);
    cr_expect_eq(sms_request_form(&no_body, &b), CMN_ERR_INVALID);
    cr_expect_eq(sms_request_form(&too_much, &b), CMN_ERR_INVALID);
    cr_expect_eq(sms_request_form(&media_only, &b), 0, "an MMS needs no body");
    cr_expect_str_eq(b.data, "To=%2B33612345678&From=%2B14155552345&MediaUrl=https%3A%2F%2Fcdn.example%2Fx.jpg");
    cmn_buf_free(&b);
}

Test(sms_request, messages_url)
{
    cmn_buf_t b = CMN_BUF_INIT;
    cr_assert_eq(sms_request_url("https://api.twilio.com", SID, &b), 0);
    cr_expect_str_eq(b.data, "https://api.twilio.com/2010-04-01/Accounts/" SID "/Messages.json");
    cr_assert_eq(sms_request_url("http://127.0.0.1:4010//", SID, &b), 0);
    cr_expect_str_eq(b.data, "http://127.0.0.1:4010/2010-04-01/Accounts/" SID "/Messages.json");
    cr_expect_eq(sms_request_url("ftp://api.twilio.com", SID, &b), CMN_ERR_INVALID);
    cr_expect_eq(sms_request_url("https://api.twilio.com?x=1", SID, &b), CMN_ERR_INVALID);
    cr_expect_eq(sms_request_url("https://api.twilio.com", "AC123", &b), CMN_ERR_INVALID);
    cr_expect_eq(sms_request_url("https://api.twilio.com", "XX0123456789abcdef0123456789abcdef", &b), CMN_ERR_INVALID);
    cr_expect_eq(sms_request_url("https://api.twilio.com", "AC0123456789abcdef0123456789abcdeg", &b), CMN_ERR_INVALID);
    cmn_buf_free(&b);
}

Test(sms_request, callback_url_carries_the_attempt)
{
    cmn_buf_t b = CMN_BUF_INIT;
    cr_assert_eq(sms_request_callback_url("https://hooks.example/twilio/status", CID, 1, 3, &b), 0);
    cr_expect_str_eq(b.data, "https://hooks.example/twilio/status?communication_id=" CID "&hop=1&attempt=3");
    cr_assert_eq(sms_request_callback_url("https://hooks.example/s?tenant=acme", CID, 0, 1, &b), 0);
    cr_expect_str_eq(b.data, "https://hooks.example/s?tenant=acme&communication_id=" CID "&hop=0&attempt=1");
    cr_assert_eq(sms_request_callback_url("https://hooks.example/s?", CID, 0, 1, &b), 0);
    cr_expect_str_eq(b.data, "https://hooks.example/s?communication_id=" CID "&hop=0&attempt=1");
    cr_expect_eq(sms_request_callback_url("https://hooks.example/s#frag", CID, 0, 1, &b), CMN_ERR_INVALID);
    cr_expect_eq(sms_request_callback_url("hooks.example/s", CID, 0, 1, &b), CMN_ERR_INVALID);
    cr_expect_eq(sms_request_callback_url("https://hooks.example/s", "not-a-uuid", 0, 1, &b), CMN_ERR_INVALID);
    cmn_buf_free(&b);
}

Test(sms_request, http_urls_and_sids)
{
    cr_expect(sms_valid_http_url("https://a.example"));
    cr_expect(sms_valid_http_url("HTTP://127.0.0.1:8080/x?y=1"));
    cr_expect_not(sms_valid_http_url("https://"));
    cr_expect_not(sms_valid_http_url("https:///path"));
    cr_expect_not(sms_valid_http_url("https://a.example/with space"));
    cr_expect_not(sms_valid_http_url("https://a.example/\n"));
    cr_expect_not(sms_valid_http_url("javascript:alert(1)"));
    cr_expect_not(sms_valid_http_url(NULL));
    cr_expect(sms_valid_sid(SID, "AC"));
    cr_expect(sms_valid_sid("MG0123456789ABCDEF0123456789ABCDEF", "MG"));
    cr_expect_not(sms_valid_sid(SID, "MG"));
    cr_expect_not(sms_valid_sid("AC0123", "AC"));
}

Test(sms_request, media_urls_from_the_context)
{
    const char *urls[SMS_MAX_MEDIA];
    size_t n = 99;
    char why[256] = "";
    json_object *ctx = json_tokener_parse("{\"media_urls\":[\"https://cdn.example/a.jpg\",\"http://cdn.example/b.gif\"]}");
    cr_assert_eq(sms_request_media_urls(ctx, urls, SMS_MAX_MEDIA, &n, why, sizeof why), 0, "%s", why);
    cr_expect_eq(n, 2);
    cr_expect_str_eq(urls[0], "https://cdn.example/a.jpg");
    cr_expect_str_eq(urls[1], "http://cdn.example/b.gif");
    json_object_put(ctx);

    cr_expect_eq(sms_request_media_urls(NULL, urls, SMS_MAX_MEDIA, &n, why, sizeof why), 0);
    cr_expect_eq(n, 0);
    ctx = json_tokener_parse("{\"name\":\"x\"}");
    cr_expect_eq(sms_request_media_urls(ctx, urls, SMS_MAX_MEDIA, &n, why, sizeof why), 0);
    cr_expect_eq(n, 0);
    json_object_put(ctx);

    const char *bad[] = {"{\"media_urls\":\"https://cdn.example/a.jpg\"}", "{\"media_urls\":[42]}",
                         "{\"media_urls\":[\"file:///etc/passwd\"]}",
                         "{\"media_urls\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\",\"10\",\"11\"]}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ctx = json_tokener_parse(bad[i]);
        cr_assert_not_null(ctx);
        why[0] = '\0';
        cr_expect_eq(sms_request_media_urls(ctx, urls, SMS_MAX_MEDIA, &n, why, sizeof why), CMN_ERR_INVALID, "%s",
                     bad[i]);
        cr_expect_eq(n, 0);
        cr_expect_not_null(strstr(why, "media_urls"), "%s", why);
        json_object_put(ctx);
    }
}
