/* provider_errors.h - what to do about a provider's refusal (pure).
 *
 * Twilio and Meta (WhatsApp Cloud API) report failures as an HTTP status
 * plus their own numeric error code, either synchronously (the answer to
 * the send request) or later in a status webhook. This module maps the pair
 * to one of the classes of the project's error-code reference
 * (../shared/oracles/error_codes.json, mirrored here as a C table because
 * the engine never reads ../shared at run time; tests/unit/
 * test_provider_errors.c checks that the two agree code for code):
 *
 *   retry_backoff              transient: the same request may succeed later
 *   retry_later_per_recipient  this recipient is rate limited; others are not
 *   permanent_fix_request      this request can never succeed as it is
 *                              (invalid number, free text outside the 24 h
 *                              window: another channel or a template may)
 *   permanent_recipient        stop sending to this address on this channel
 *                              (unsubscribed, landline, not on WhatsApp)
 *   permanent_account          our account or configuration is at fault
 *                              (expired token, region not enabled)
 *
 * and the action the worker takes: RETRY (the retry tiers, honouring
 * Retry-After, bounded by attempts and the deadline) for the two retry
 * classes, FALLBACK (next channel of the plan, else `failed`) for the three
 * permanent ones.
 *
 * Rules, in order:
 *   1. a code in the table decides, whatever the HTTP status (Meta answers
 *      400 for its throughput limit 130429; the code is the precise fact);
 *   2. otherwise the HTTP status: 429 -> retry_backoff "rate_limited";
 *      5xx -> retry_backoff "provider_error"; 0 (no response: network
 *      error, timeout) -> retry_backoff "network_error"; 401/403 ->
 *      permanent_account "auth"; other 4xx -> permanent_fix_request
 *      "rejected";
 *   3. an unknown code reported after acceptance (status webhook: HTTP 2xx
 *      or 0 with a code) -> retry_backoff "unknown_error".
 * The defaults for unknown codes are conservative in the way that matters
 * for a client: a refused request (4xx) is not hammered again but falls
 * back to another channel, while an unexplained delivery failure is retried
 * a bounded number of times before it falls back. known = 0 marks them so
 * they can be logged and added to the table. */
#ifndef CRM_PROVIDER_ERRORS_H
#define CRM_PROVIDER_ERRORS_H

typedef enum cmn_provider_class {
    CMN_PROVIDER_RETRY_BACKOFF = 0,
    CMN_PROVIDER_RETRY_LATER_PER_RECIPIENT,
    CMN_PROVIDER_PERMANENT_FIX_REQUEST,
    CMN_PROVIDER_PERMANENT_RECIPIENT,
    CMN_PROVIDER_PERMANENT_ACCOUNT
} cmn_provider_class_t;

typedef enum cmn_provider_action {
    CMN_PROVIDER_ACTION_RETRY = 0,   /* through the retry tiers */
    CMN_PROVIDER_ACTION_FALLBACK = 1 /* permanent on this channel: next channel, else failed */
} cmn_provider_action_t;

typedef struct cmn_provider_outcome {
    cmn_provider_class_t cls;
    cmn_provider_action_t action;
    const char *reason; /* static short token: "unsubscribed", "landline", "outside_window", ... */
    int known;          /* 1 when the provider code was in the table */
} cmn_provider_outcome_t;

/* http_status: the send request's HTTP status, or 0 when there was no
 * response or the error came from a status webhook. code: Twilio's
 * ErrorCode / error "code", 0 when none. */
cmn_provider_outcome_t cmn_provider_classify_twilio(int http_status, long code);

/* code: Meta's error.code (sync) or statuses[].errors[].code (webhook), 0
 * when none. */
cmn_provider_outcome_t cmn_provider_classify_meta(int http_status, long code);

/* The class's name as in error_codes.json ("retry_backoff", ...). */
const char *cmn_provider_class_name(cmn_provider_class_t c);
/* "retry" or "fallback". */
const char *cmn_provider_action_name(cmn_provider_action_t a);
/* 1 for the retry_* classes. */
int cmn_provider_class_is_retryable(cmn_provider_class_t c);

#endif
