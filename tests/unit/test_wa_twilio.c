/* test_wa_twilio.c - WhatsApp through Twilio (services/whatsapp-worker/
 * wa_twilio.h): the form of a free-form and of a Content template message,
 * the endpoint and callback URLs, and Twilio's answers (the 201 example and
 * the error body from shared/oracles/twilio). */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "crm/buf.h"
#include "crm/err.h"
#include "crm/json.h"
#include "wa_twilio.h"

#define TWILIO_EXAMPLES CRM_SHARED_DIR "/oracles/twilio/webhook_and_error_examples.json"

Test(wa_twilio, free_form_and_template_forms)
{
    cmn_buf_t b = CMN_BUF_INIT;
    char err[256] = "";
    wa_twilio_msg_t m = {.to = "+14155550100", .from = "+14155552345", .body = "Bonjour Zoë & co: 50% off"};
    cr_assert_eq(wa_twilio_form(&m, &b, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(b.data, "To=whatsapp%3A%2B14155550100&From=whatsapp%3A%2B14155552345"
                             "&Body=Bonjour+Zo%C3%AB+%26+co%3A+50%25+off");

    wa_twilio_msg_t media = {.to = "+14155550100", .from = "+14155552345", .body = "Receipt",
                             .media_url = "https://cdn.example/r.pdf",
                             .status_callback = "https://hooks.example/twilio?communication_id=x"};
    cr_assert_eq(wa_twilio_form(&media, &b, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(b.data, "To=whatsapp%3A%2B14155550100&From=whatsapp%3A%2B14155552345&Body=Receipt"
                             "&MediaUrl=https%3A%2F%2Fcdn.example%2Fr.pdf"
                             "&StatusCallback=https%3A%2F%2Fhooks.example%2Ftwilio%3Fcommunication_id%3Dx");

    wa_twilio_msg_t tpl = {.to = "+14155550100", .from = "+14155552345",
                           .content_sid = "HX0123456789abcdef0123456789abcdef",
                           .content_variables = "{\"1\":\"24/11\",\"2\":\"14:30\"}"};
    cr_assert_eq(wa_twilio_form(&tpl, &b, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(b.data, "To=whatsapp%3A%2B14155550100&From=whatsapp%3A%2B14155552345"
                             "&ContentSid=HX0123456789abcdef0123456789abcdef"
                             "&ContentVariables=%7B%221%22%3A%2224%2F11%22%2C%222%22%3A%2214%3A30%22%7D");
    cmn_buf_free(&b);
}

Test(wa_twilio, refusals)
{
    cmn_buf_t b = CMN_BUF_INIT;
    char err[256] = "";
    wa_twilio_msg_t m = {.to = "14155550100", .from = "+14155552345", .body = "x"};
    cr_expect_eq(wa_twilio_form(&m, &b, err, sizeof err), CMN_ERR_INVALID);
    cr_expect_str_eq(err, "To is not an E.164 number");
    m.to = "+14155550100";
    m.body = NULL;
    cr_expect_eq(wa_twilio_form(&m, &b, err, sizeof err), CMN_ERR_INVALID);
    cr_expect_str_eq(err, "the message has no Body, MediaUrl or ContentSid");
    m.body = "x";
    m.content_sid = "HX0123456789abcdef0123456789abcdef";
    cr_expect_eq(wa_twilio_form(&m, &b, err, sizeof err), CMN_ERR_INVALID, "Body with ContentSid");
    m.content_sid = NULL;
    char big[WA_TWILIO_BODY_MAX + 2];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    m.body = big;
    cr_expect_eq(wa_twilio_form(&m, &b, err, sizeof err), CMN_ERR_INVALID, "1601 characters");
    big[WA_TWILIO_BODY_MAX] = '\0';
    cr_expect_eq(wa_twilio_form(&m, &b, err, sizeof err), 0, "1600 characters");
    cmn_buf_free(&b);
}

Test(wa_twilio, urls)
{
    cmn_buf_t b = CMN_BUF_INIT;
    cr_assert_eq(wa_twilio_url("https://api.twilio.com/", "AC0123456789abcdef0123456789abcdef", &b), 0);
    cr_expect_str_eq(b.data, "https://api.twilio.com/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json");
    cr_expect_eq(wa_twilio_url("https://api.twilio.com", "AC123", &b), CMN_ERR_INVALID);
    cr_expect_eq(wa_twilio_url("api.twilio.com", "AC0123456789abcdef0123456789abcdef", &b), CMN_ERR_INVALID);
    cr_assert_eq(wa_twilio_callback_url("https://hooks.example/t", "6f1c1c2e-5d7b-5b5e-9a55-2f3d1b1f0a01", 1, 2, &b), 0);
    cr_expect_str_eq(b.data, "https://hooks.example/t?communication_id=6f1c1c2e-5d7b-5b5e-9a55-2f3d1b1f0a01&hop=1&attempt=2");
    cr_assert_eq(wa_twilio_callback_url("https://hooks.example/t?k=v", "id", 0, 1, &b), 0);
    cr_expect_str_eq(b.data, "https://hooks.example/t?k=v&communication_id=id&hop=0&attempt=1");
    cr_expect_eq(wa_twilio_callback_url("https://hooks.example/t#x", "id", 0, 1, &b), CMN_ERR_INVALID);
    cr_expect(wa_twilio_valid_sid("HX0123456789abcdef0123456789abcdef", "HX"));
    cr_expect(!wa_twilio_valid_sid("HX0123456789abcdef0123456789abcdeg", "HX"));
    cr_expect(!wa_twilio_valid_sid("SM0123456789abcdef0123456789abcdef", "HX"));
    cmn_buf_free(&b);
}

static json_object *load(void)
{
    char err[256];
    FILE *f = fopen(TWILIO_EXAMPLES, "rb");
    cr_assert_not_null(f, "%s", TWILIO_EXAMPLES);
    cmn_buf_t b = CMN_BUF_INIT;
    char chunk[4096];
    for (;;) {
        size_t n = fread(chunk, 1, sizeof chunk, f);
        if (n == 0)
            break;
        cr_assert_eq(cmn_buf_append(&b, chunk, n), 0);
    }
    fclose(f);
    json_object *o = cmn_json_parse(b.data, b.len, err, sizeof err);
    cmn_buf_free(&b);
    cr_assert_not_null(o, "%s", err);
    return o;
}

Test(wa_twilio, answers)
{
    json_object *ex = load();
    json_object *created = cmn_json_get_object(cmn_json_get_object(cmn_json_get_object(ex, "create_message"),
                                                                   "verbatim_201_examples"),
                                               "create");
    cr_assert_not_null(created);
    const char *body = json_object_to_json_string(created);
    char sid[64], status[32];
    cr_assert_eq(wa_twilio_parse_created(body, strlen(body), sid, sizeof sid, status, sizeof status), 0);
    cr_expect_str_eq(sid, "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    cr_expect_str_eq(status, "queued");
    cr_expect_eq(wa_twilio_parse_created("{\"sid\":\"XX1\"}", 13, sid, sizeof sid, status, sizeof status),
                 CMN_ERR_PARSE);
    json_object_put(ex);

    wa_twilio_error_t e;
    const char *err63016 = "{\"code\":63016,\"message\":\"Failed to send freeform message because you are outside the "
                           "allowed window. Recipient whatsapp:+14155550100\",\"more_info\":"
                           "\"https://www.twilio.com/docs/errors/63016\",\"status\":400}";
    cr_assert_eq(wa_twilio_parse_error(err63016, strlen(err63016), &e), 0);
    cr_expect_eq(e.code, 63016);
    cr_expect_eq(e.status, 400);
    cr_expect_null(strstr(e.message, "14155550100"), "the number is redacted: %s", e.message);
    cr_expect_str_eq(e.more_info, "https://www.twilio.com/docs/errors/63016");
    const char *problem = "{\"type\":\"x\",\"title\":\"Too Many Requests\",\"status\":429,\"code\":20429}";
    cr_assert_eq(wa_twilio_parse_error(problem, strlen(problem), &e), 0);
    cr_expect_str_eq(e.message, "Too Many Requests");
    cr_expect_eq(wa_twilio_parse_error("nope", 4, &e), CMN_ERR_PARSE);
}
