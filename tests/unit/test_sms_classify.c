/* Unit tests of the SMS worker's outcome classification and configuration
 * checks (services/sms-worker/sms_worker.c): Twilio answers, as the worker
 * core hands them to classify, become sent / retryable / permanent results
 * with the provider's code and text; bad settings are refused by name. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "crm/err.h"
#include "crm/worker.h"
#include "sms_worker.h"

static cmn_worker_result_t classify(CURLcode code, long status, const char *body, int64_t retry_after_ms)
{
    cmn_worker_result_t res;
    memset(&res, 0, sizeof res);
    cmn_worker_response_t resp = {
        .code = code,
        .status = status,
        .body = body,
        .body_len = strlen(body),
        .headers = "",
        .headers_len = 0,
        .retry_after_ms = retry_after_ms,
    };
    sms_classify_response(&resp, &res);
    return res;
}

Test(sms_classify, created_is_sent_with_the_sid)
{
    cmn_worker_result_t r = classify(CURLE_OK, 201,
                                     "{\"sid\":\"SM0123456789abcdef0123456789abcdef\",\"status\":\"queued\","
                                     "\"num_segments\":\"2\"}",
                                     -1);
    cr_expect_eq(r.cls, CMN_WORKER_SENT);
    cr_expect_str_eq(r.provider_message_id, "SM0123456789abcdef0123456789abcdef");
    cr_expect_str_eq(r.detail, "twilio_status: queued");
    cr_expect_str_eq(r.error_code, "");
}

Test(sms_classify, created_without_sid_is_still_sent)
{
    /* Twilio has the message: a retry would send it twice. */
    cmn_worker_result_t r = classify(CURLE_OK, 201, "<html>ok</html>", -1);
    cr_expect_eq(r.cls, CMN_WORKER_SENT);
    cr_expect_str_eq(r.provider_message_id, "");
    cr_expect_not_null(strstr(r.detail, "unknown"), "%s", r.detail);
}

Test(sms_classify, unsubscribed_is_permanent)
{
    cmn_worker_result_t r = classify(CURLE_OK, 400,
                                     "{\"code\":21610,\"message\":\"Attempt to send to unsubscribed recipient\","
                                     "\"more_info\":\"https://www.twilio.com/docs/errors/21610\",\"status\":400}",
                                     -1);
    cr_expect_eq(r.cls, CMN_WORKER_PERMANENT);
    cr_expect_str_eq(r.error_code, "21610");
    cr_expect_str_eq(r.reason, "unsubscribed");
    cr_expect_str_eq(r.error_message, "Attempt to send to unsubscribed recipient");
}

Test(sms_classify, invalid_number_text_is_redacted)
{
    cmn_worker_result_t r = classify(CURLE_OK, 400,
                                     "{\"code\":21211,\"message\":\"The 'To' number +33612345678 is not a valid "
                                     "phone number.\",\"status\":400}",
                                     -1);
    cr_expect_eq(r.cls, CMN_WORKER_PERMANENT);
    cr_expect_str_eq(r.error_code, "21211");
    cr_expect_str_eq(r.reason, "invalid_number");
    cr_expect_null(strstr(r.error_message, "33612345678"), "%s", r.error_message);
}

Test(sms_classify, rate_limit_is_retryable_with_retry_after)
{
    cmn_worker_result_t r = classify(CURLE_OK, 429, "{\"code\":20429,\"message\":\"Too Many Requests\",\"status\":429}",
                                     7000);
    cr_expect_eq(r.cls, CMN_WORKER_RETRYABLE);
    cr_expect_str_eq(r.error_code, "20429");
    cr_expect_str_eq(r.error_message, "retryable: Too Many Requests");
    cr_expect_eq(r.retry_after_ms, 7000);
    /* Without a code in the body, the status decides. */
    r = classify(CURLE_OK, 429, "", -1);
    cr_expect_eq(r.cls, CMN_WORKER_RETRYABLE);
    cr_expect_str_eq(r.error_code, "http_429");
    cr_expect_eq(r.retry_after_ms, 0);
}

Test(sms_classify, server_errors_and_network_are_retryable)
{
    cmn_worker_result_t r = classify(CURLE_OK, 502, "<html>Bad Gateway</html>", -1);
    cr_expect_eq(r.cls, CMN_WORKER_RETRYABLE);
    cr_expect_str_eq(r.error_code, "http_502");
    cr_expect_str_eq(r.error_message, "retryable: HTTP 502 from the Messages API");
    r = classify(CURLE_COULDNT_CONNECT, 0, "", -1);
    cr_expect_eq(r.cls, CMN_WORKER_RETRYABLE);
    cr_expect_str_eq(r.error_code, "network_error");
    cr_expect_eq(strncmp(r.error_message, "retryable: ", 11), 0, "%s", r.error_message);
    r = classify(CURLE_OPERATION_TIMEDOUT, 0, "", -1);
    cr_expect_eq(r.cls, CMN_WORKER_RETRYABLE);
}

Test(sms_classify, auth_and_unknown_refusals_are_permanent)
{
    cmn_worker_result_t r = classify(CURLE_OK, 401, "{\"code\":20003,\"message\":\"Authenticate\",\"status\":401}", -1);
    cr_expect_eq(r.cls, CMN_WORKER_PERMANENT);
    cr_expect_str_eq(r.error_code, "20003");
    cr_expect_str_eq(r.reason, "auth");
    r = classify(CURLE_OK, 400, "{\"code\":29999,\"message\":\"Something new\",\"status\":400}", -1);
    cr_expect_eq(r.cls, CMN_WORKER_PERMANENT, "a refused request is not hammered again");
    cr_expect_str_eq(r.error_code, "29999");
}

Test(sms_classify, senders)
{
    cr_expect(sms_valid_sender("+14155552345"));
    cr_expect(sms_valid_sender("12345"));
    cr_expect(sms_valid_sender("123456"));
    cr_expect(sms_valid_sender("Clinique"));
    cr_expect(sms_valid_sender("CRM 24"));
    cr_expect_not(sms_valid_sender(""));
    cr_expect_not(sms_valid_sender("1234"));
    cr_expect_not(sms_valid_sender("0612345678"));
    cr_expect_not(sms_valid_sender("TwelveLetter"));
    cr_expect_not(sms_valid_sender("Café"));
    cr_expect_not(sms_valid_sender("+1"));
    cr_expect_not(sms_valid_sender(NULL));
}

static sms_worker_config_t good_config(void)
{
    sms_worker_config_t c;
    memset(&c, 0, sizeof c);
    c.twilio_api_url = "https://api.twilio.com";
    c.twilio_account_sid = "AC0123456789abcdef0123456789abcdef";
    c.twilio_auth_token = "token";
    c.twilio_phone_number = "+14155552345";
    c.twilio_messaging_service_sid = "";
    c.status_callback_url = "";
    c.fallback_locale = "en";
    return c;
}

Test(sms_classify, config_check)
{
    char why[256];
    sms_worker_config_t c = good_config();
    cr_expect_eq(sms_worker_config_check(&c, why, sizeof why), 0, "%s", why);
    c.twilio_phone_number = "";
    c.twilio_messaging_service_sid = "MG0123456789abcdef0123456789abcdef";
    c.status_callback_url = "https://hooks.example/twilio/status?tenant=acme";
    cr_expect_eq(sms_worker_config_check(&c, why, sizeof why), 0, "%s", why);

    c = good_config();
    c.twilio_account_sid = "AC12";
    cr_expect_eq(sms_worker_config_check(&c, why, sizeof why), CMN_ERR_CONFIG);
    cr_expect_not_null(strstr(why, "TWILIO_ACCOUNT_SID"), "%s", why);
    c = good_config();
    c.twilio_phone_number = "";
    cr_expect_eq(sms_worker_config_check(&c, why, sizeof why), CMN_ERR_CONFIG);
    cr_expect_not_null(strstr(why, "TWILIO_PHONE_NUMBER"), "%s", why);
    c = good_config();
    c.twilio_messaging_service_sid = "MGnothex0000000000000000000000000z";
    cr_expect_eq(sms_worker_config_check(&c, why, sizeof why), CMN_ERR_CONFIG);
    cr_expect_not_null(strstr(why, "TWILIO_MESSAGING_SERVICE_SID"), "%s", why);
    c = good_config();
    c.twilio_api_url = "https://api.twilio.com?x=1";
    cr_expect_eq(sms_worker_config_check(&c, why, sizeof why), CMN_ERR_CONFIG);
    cr_expect_not_null(strstr(why, "TWILIO_API_URL"), "%s", why);
    c = good_config();
    c.status_callback_url = "https://hooks.example/s#x";
    cr_expect_eq(sms_worker_config_check(&c, why, sizeof why), CMN_ERR_CONFIG);
    cr_expect_not_null(strstr(why, "SMS_STATUS_CALLBACK_URL"), "%s", why);
    c = good_config();
    c.fallback_locale = "not a locale";
    cr_expect_eq(sms_worker_config_check(&c, why, sizeof why), CMN_ERR_CONFIG);
    cr_expect_not_null(strstr(why, "TEMPLATE_FALLBACK_LOCALE"), "%s", why);
    c = good_config();
    c.twilio_auth_token = "";
    cr_expect_eq(sms_worker_config_check(&c, why, sizeof why), CMN_ERR_CONFIG);
    cr_expect_not_null(strstr(why, "TWILIO_AUTH_TOKEN"), "%s", why);
}
