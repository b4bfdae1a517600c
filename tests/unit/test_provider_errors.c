/* test_provider_errors.c - provider error classification
 * (crm/provider_errors.h) against the project's reference file
 * ../shared/oracles/error_codes.json: every Twilio and Meta code listed
 * there must be classified with exactly the file's class, whatever the
 * HTTP status it arrives with. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "crm/json.h"
#include "crm/provider_errors.h"

#define ORACLE CRM_SHARED_DIR "/oracles/error_codes.json"

typedef cmn_provider_outcome_t (*classify_fn)(int http_status, long code);

/* The file's class is its first word: some entries add a remark, as in
 * "retry_backoff (limited; repeated failures may indicate filtering)". */
static void class_token(const char *cls, char *out, size_t outlen)
{
    size_t n = strcspn(cls, " (");
    snprintf(out, outlen, "%.*s", (int)n, cls);
}

static int check_list(json_object *root, const char *list, classify_fn fn)
{
    json_object *arr = NULL;
    cr_assert(json_object_object_get_ex(root, list, &arr), "%s missing from %s", list, ORACLE);
    size_t n = json_object_array_length(arr);
    cr_assert_gt(n, 0);
    /* 400: a synchronous refusal; 200 and 0: a status webhook. The code
     * decides in every case. */
    const int statuses[] = {400, 200, 0};
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(arr, i);
        json_object *code = NULL, *cls = NULL;
        cr_assert(json_object_object_get_ex(e, "code", &code) && json_object_object_get_ex(e, "class", &cls));
        char want[64];
        class_token(json_object_get_string(cls), want, sizeof want);
        long c = (long)json_object_get_int64(code);
        for (size_t k = 0; k < sizeof statuses / sizeof statuses[0]; k++) {
            cmn_provider_outcome_t o = fn(statuses[k], c);
            cr_expect_str_eq(cmn_provider_class_name(o.cls), want, "%s code %ld (HTTP %d)", list, c, statuses[k]);
            cr_expect_eq(o.known, 1, "%s code %ld should be in the table", list, c);
            cr_expect_eq(o.action,
                         strncmp(want, "retry", 5) == 0 ? CMN_PROVIDER_ACTION_RETRY : CMN_PROVIDER_ACTION_FALLBACK,
                         "%s code %ld action", list, c);
            cr_expect(o.reason != NULL && o.reason[0] != '\0');
        }
    }
    return (int)n;
}

Test(provider_errors, every_code_of_the_reference_file)
{
    json_object *root = json_object_from_file(ORACLE);
    cr_assert_not_null(root, "cannot read %s", ORACLE);
    int twilio = check_list(root, "twilio", cmn_provider_classify_twilio);
    int meta = check_list(root, "meta_whatsapp_cloud_api", cmn_provider_classify_meta);
    cr_log_info("checked %d Twilio and %d Meta codes", twilio, meta);
    json_object_put(root);
}

Test(provider_errors, named_cases_of_the_design)
{
    cmn_provider_outcome_t o = cmn_provider_classify_twilio(400, 21610);
    cr_expect_eq(o.cls, CMN_PROVIDER_PERMANENT_RECIPIENT);
    cr_expect_str_eq(o.reason, "unsubscribed");
    cr_expect_eq(o.action, CMN_PROVIDER_ACTION_FALLBACK);
    o = cmn_provider_classify_twilio(0, 30006);
    cr_expect_str_eq(o.reason, "landline");
    cr_expect_eq(o.cls, CMN_PROVIDER_PERMANENT_RECIPIENT);
    o = cmn_provider_classify_meta(400, 131047);
    cr_expect_str_eq(o.reason, "outside_window");
    cr_expect_eq(o.cls, CMN_PROVIDER_PERMANENT_FIX_REQUEST);
    o = cmn_provider_classify_twilio(0, 63016);
    cr_expect_str_eq(o.reason, "outside_window");
    /* Meta answers its throughput limits with HTTP 400; the code wins. */
    o = cmn_provider_classify_meta(400, 130429);
    cr_expect_eq(o.action, CMN_PROVIDER_ACTION_RETRY);
    cr_expect_eq(o.cls, CMN_PROVIDER_RETRY_BACKOFF);
    o = cmn_provider_classify_meta(400, 131056);
    cr_expect_eq(o.action, CMN_PROVIDER_ACTION_RETRY);
    cr_expect_eq(o.cls, CMN_PROVIDER_RETRY_LATER_PER_RECIPIENT);
}

Test(provider_errors, http_status_rules_without_a_known_code)
{
    classify_fn fns[] = {cmn_provider_classify_twilio, cmn_provider_classify_meta};
    for (size_t i = 0; i < 2; i++) {
        cmn_provider_outcome_t o = fns[i](429, 0);
        cr_expect_eq(o.cls, CMN_PROVIDER_RETRY_BACKOFF);
        cr_expect_str_eq(o.reason, "rate_limited");
        cr_expect_eq(o.known, 0);
        for (int s = 500; s <= 599; s += 1) {
            o = fns[i](s, 0);
            cr_expect_eq(o.action, CMN_PROVIDER_ACTION_RETRY, "HTTP %d", s);
            o = fns[i](s, 999999); /* unknown code: the status decides */
            cr_expect_eq(o.action, CMN_PROVIDER_ACTION_RETRY, "HTTP %d", s);
        }
        o = fns[i](0, 0);
        cr_expect_eq(o.cls, CMN_PROVIDER_RETRY_BACKOFF);
        cr_expect_str_eq(o.reason, "network_error");
        o = fns[i](401, 0);
        cr_expect_eq(o.cls, CMN_PROVIDER_PERMANENT_ACCOUNT);
        o = fns[i](403, 12345);
        cr_expect_eq(o.cls, CMN_PROVIDER_PERMANENT_ACCOUNT);
        cr_expect_str_eq(o.reason, "auth");
    }
}

Test(provider_errors, unknown_codes_take_the_documented_defaults)
{
    /* A refused request with a code we do not know: not hammered again,
     * falls back to the next channel. */
    cmn_provider_outcome_t o = cmn_provider_classify_twilio(400, 21999);
    cr_expect_eq(o.cls, CMN_PROVIDER_PERMANENT_FIX_REQUEST);
    cr_expect_eq(o.action, CMN_PROVIDER_ACTION_FALLBACK);
    cr_expect_str_eq(o.reason, "rejected");
    cr_expect_eq(o.known, 0);
    o = cmn_provider_classify_meta(404, 100);
    cr_expect_eq(o.cls, CMN_PROVIDER_PERMANENT_FIX_REQUEST);
    /* An unexplained failure reported by a webhook after acceptance: retried
     * a bounded number of times. */
    o = cmn_provider_classify_twilio(0, 30008);
    cr_expect_eq(o.cls, CMN_PROVIDER_RETRY_BACKOFF);
    cr_expect_str_eq(o.reason, "unknown_error");
    o = cmn_provider_classify_meta(200, 135000);
    cr_expect_eq(o.cls, CMN_PROVIDER_RETRY_BACKOFF);
    cr_expect_eq(o.known, 0);
    /* Codes are per provider: Twilio's 21610 means nothing to Meta. */
    o = cmn_provider_classify_meta(0, 21610);
    cr_expect_eq(o.known, 0);
    o = cmn_provider_classify_twilio(400, 131047);
    cr_expect_eq(o.known, 0);
}

Test(provider_errors, names)
{
    cr_expect_str_eq(cmn_provider_class_name(CMN_PROVIDER_RETRY_BACKOFF), "retry_backoff");
    cr_expect_str_eq(cmn_provider_class_name(CMN_PROVIDER_RETRY_LATER_PER_RECIPIENT), "retry_later_per_recipient");
    cr_expect_str_eq(cmn_provider_class_name(CMN_PROVIDER_PERMANENT_FIX_REQUEST), "permanent_fix_request");
    cr_expect_str_eq(cmn_provider_class_name(CMN_PROVIDER_PERMANENT_RECIPIENT), "permanent_recipient");
    cr_expect_str_eq(cmn_provider_class_name(CMN_PROVIDER_PERMANENT_ACCOUNT), "permanent_account");
    cr_expect_str_eq(cmn_provider_action_name(CMN_PROVIDER_ACTION_RETRY), "retry");
    cr_expect_str_eq(cmn_provider_action_name(CMN_PROVIDER_ACTION_FALLBACK), "fallback");
    cr_expect_eq(cmn_provider_class_is_retryable(CMN_PROVIDER_RETRY_LATER_PER_RECIPIENT), 1);
    cr_expect_eq(cmn_provider_class_is_retryable(CMN_PROVIDER_PERMANENT_RECIPIENT), 0);
}
