/* provider_errors.c - provider error code classification. See
 * crm/provider_errors.h.
 *
 * The tables mirror ../shared/oracles/error_codes.json (source URLs there);
 * a code added here without being added there, or the other way round, is
 * caught by tests/unit/test_provider_errors.c for the codes the file lists. */
#include "crm/provider_errors.h"

#include <stddef.h>

typedef struct code_entry {
    long code;
    cmn_provider_class_t cls;
    const char *reason;
} code_entry_t;

static const code_entry_t TWILIO_CODES[] = {
    {21211, CMN_PROVIDER_PERMANENT_FIX_REQUEST, "invalid_number"},
    {21610, CMN_PROVIDER_PERMANENT_RECIPIENT, "unsubscribed"},
    {21614, CMN_PROVIDER_PERMANENT_RECIPIENT, "not_mobile"},
    {21408, CMN_PROVIDER_PERMANENT_ACCOUNT, "region_not_enabled"},
    {20429, CMN_PROVIDER_RETRY_BACKOFF, "rate_limited"},
    /* Handset off or out of coverage; retried a bounded number of times,
     * since repeated 30003s can also mean carrier filtering. */
    {30003, CMN_PROVIDER_RETRY_BACKOFF, "unreachable"},
    {30005, CMN_PROVIDER_PERMANENT_RECIPIENT, "unknown_number"},
    {30006, CMN_PROVIDER_PERMANENT_RECIPIENT, "landline"},
    /* Carrier filtering: the same content would be filtered again. */
    {30007, CMN_PROVIDER_PERMANENT_FIX_REQUEST, "filtered"},
    /* WhatsApp through Twilio, free text outside the 24 h window: only a
     * template (ContentSid) can go out now. */
    {63016, CMN_PROVIDER_PERMANENT_FIX_REQUEST, "outside_window"},
    {63018, CMN_PROVIDER_RETRY_BACKOFF, "rate_limited"},
    {14107, CMN_PROVIDER_RETRY_LATER_PER_RECIPIENT, "recipient_rate_limited"},
    {30036, CMN_PROVIDER_RETRY_BACKOFF, "validity_expired"},
};

static const code_entry_t META_CODES[] = {
    /* Free text more than 24 h after the customer's last message. */
    {131047, CMN_PROVIDER_PERMANENT_FIX_REQUEST, "outside_window"},
    {131026, CMN_PROVIDER_PERMANENT_RECIPIENT, "undeliverable"},
    {130429, CMN_PROVIDER_RETRY_BACKOFF, "rate_limited"},
    {131056, CMN_PROVIDER_RETRY_LATER_PER_RECIPIENT, "recipient_rate_limited"},
    /* Spam rate limit: the phone number's quality must improve first. */
    {131048, CMN_PROVIDER_PERMANENT_ACCOUNT, "spam_rate_limited"},
    {131049, CMN_PROVIDER_RETRY_LATER_PER_RECIPIENT, "marketing_limited"},
    {190, CMN_PROVIDER_PERMANENT_ACCOUNT, "access_token_invalid"},
    {368, CMN_PROVIDER_PERMANENT_ACCOUNT, "policy_blocked"},
    {132000, CMN_PROVIDER_PERMANENT_FIX_REQUEST, "template_params_mismatch"},
    {131051, CMN_PROVIDER_PERMANENT_FIX_REQUEST, "unsupported_message_type"},
    {4, CMN_PROVIDER_RETRY_BACKOFF, "app_rate_limited"},
    {80007, CMN_PROVIDER_RETRY_BACKOFF, "waba_rate_limited"},
    {131000, CMN_PROVIDER_RETRY_BACKOFF, "provider_error"},
    {2, CMN_PROVIDER_RETRY_BACKOFF, "service_unavailable"},
};

static const code_entry_t *find(const code_entry_t *table, size_t n, long code)
{
    for (size_t i = 0; i < n; i++) {
        if (table[i].code == code)
            return &table[i];
    }
    return NULL;
}

static cmn_provider_outcome_t make(cmn_provider_class_t cls, const char *reason, int known)
{
    cmn_provider_outcome_t o = {
        .cls = cls,
        .action = cmn_provider_class_is_retryable(cls) ? CMN_PROVIDER_ACTION_RETRY : CMN_PROVIDER_ACTION_FALLBACK,
        .reason = reason,
        .known = known,
    };
    return o;
}

/* Rules 2 and 3 of the header, for a code the table does not know. */
static cmn_provider_outcome_t by_status(int http_status, long code)
{
    if (http_status == 429)
        return make(CMN_PROVIDER_RETRY_BACKOFF, "rate_limited", 0);
    if (http_status >= 500 && http_status <= 599)
        return make(CMN_PROVIDER_RETRY_BACKOFF, "provider_error", 0);
    if (http_status == 401 || http_status == 403)
        return make(CMN_PROVIDER_PERMANENT_ACCOUNT, "auth", 0);
    if (http_status >= 400 && http_status <= 499)
        return make(CMN_PROVIDER_PERMANENT_FIX_REQUEST, "rejected", 0);
    if (code != 0)
        return make(CMN_PROVIDER_RETRY_BACKOFF, "unknown_error", 0);
    /* No status and no code: the request never got an answer. Any other
     * status (1xx, 2xx, 3xx without a code) is an answer we did not expect
     * from a send, and a later attempt is the safe reading of it. */
    return make(CMN_PROVIDER_RETRY_BACKOFF, http_status == 0 ? "network_error" : "unexpected_response", 0);
}

static cmn_provider_outcome_t classify(const code_entry_t *table, size_t n, int http_status, long code)
{
    const code_entry_t *e = code != 0 ? find(table, n, code) : NULL;
    if (e != NULL)
        return make(e->cls, e->reason, 1);
    return by_status(http_status, code);
}

cmn_provider_outcome_t cmn_provider_classify_twilio(int http_status, long code)
{
    return classify(TWILIO_CODES, sizeof TWILIO_CODES / sizeof TWILIO_CODES[0], http_status, code);
}

cmn_provider_outcome_t cmn_provider_classify_meta(int http_status, long code)
{
    return classify(META_CODES, sizeof META_CODES / sizeof META_CODES[0], http_status, code);
}

const char *cmn_provider_class_name(cmn_provider_class_t c)
{
    switch (c) {
    case CMN_PROVIDER_RETRY_BACKOFF:
        return "retry_backoff";
    case CMN_PROVIDER_RETRY_LATER_PER_RECIPIENT:
        return "retry_later_per_recipient";
    case CMN_PROVIDER_PERMANENT_FIX_REQUEST:
        return "permanent_fix_request";
    case CMN_PROVIDER_PERMANENT_RECIPIENT:
        return "permanent_recipient";
    case CMN_PROVIDER_PERMANENT_ACCOUNT:
        return "permanent_account";
    }
    return "unknown";
}

const char *cmn_provider_action_name(cmn_provider_action_t a)
{
    return a == CMN_PROVIDER_ACTION_RETRY ? "retry" : "fallback";
}

int cmn_provider_class_is_retryable(cmn_provider_class_t c)
{
    return c == CMN_PROVIDER_RETRY_BACKOFF || c == CMN_PROVIDER_RETRY_LATER_PER_RECIPIENT;
}
