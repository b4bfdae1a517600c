/* Unit tests for crm/outcome.h: the planner of retries, fallback and dead
 * letters.
 *
 * The first test walks the whole matrix the planner decides on: every
 * class x a fallback plan or none x attempts left or exhausted x no
 * deadline, a far one, one the Retry-After overshoots, one already passed x
 * with or without a Retry-After larger than the backoff window. Its expected
 * values come from the rules as docs/channels.md states them, written out
 * case by case below, not from the planner's code. The other tests pin the
 * details: tiers and headers, the growing jitter window, the reason lines,
 * skipped channels and bad input. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "crm/err.h"
#include "crm/outcome.h"

#define NOW INT64_C(1795309330000) /* 2026-11-22T..., any instant works */
#define RND_500 UINT64_C(500)      /* 500 % (1000 + 1) = 500 ms at attempt 1 */

/* base 1 s, cap 8 s, 3 attempts in all. */
static const cmn_backoff_t POLICY = {.base_ms = 1000, .cap_ms = 8000, .max_attempts = 3};

static char email_addr[] = "ana@example.com";
static char phone_addr[] = "+33612345678";
static char wa_addr[] = "+33698765432";

/* An SMS dispatch to ana; with_plan adds the fallback plan [email, whatsapp]
 * and the addresses for both. Everything points at static storage: never
 * cmn_dispatch_clear it. */
static cmn_dispatch_t sms_dispatch(int attempt, int with_plan, int64_t deadline_ms)
{
    cmn_dispatch_t d;
    memset(&d, 0, sizeof d);
    d.v = 1;
    d.channel = CMN_CHANNEL_SMS;
    d.attempt = attempt;
    d.hop = 0;
    d.to = phone_addr;
    d.recipient.phone = phone_addr;
    d.deadline_ms = deadline_ms;
    if (with_plan) {
        d.recipient.email = email_addr;
        d.recipient.whatsapp = wa_addr;
        d.fallback[0] = CMN_CHANNEL_EMAIL;
        d.fallback[1] = CMN_CHANNEL_WHATSAPP;
        d.n_fallback = 2;
    }
    return d;
}

static cmn_worker_result_t result(cmn_worker_class_t cls, int64_t retry_after_ms)
{
    cmn_worker_result_t r;
    memset(&r, 0, sizeof r);
    if (cls == CMN_WORKER_SENT)
        cmn_worker_result_sent(&r, "SM123", NULL);
    else if (cls == CMN_WORKER_RETRYABLE)
        cmn_worker_result_retry(&r, "20500", retry_after_ms, "Internal Server Error");
    else
        cmn_worker_result_permanent(&r, "21610", "unsubscribed", "Attempt to send to unsubscribed recipient");
    return r;
}

/* ------------------------------------------------------------- matrix */

enum deadline_kind { DL_NONE, DL_FAR, DL_NEAR, DL_PAST };
static const char *const DL_NAMES[] = {"none", "far", "near", "past"};

static int64_t deadline_of(enum deadline_kind k)
{
    switch (k) {
    case DL_NONE:
        return 0;
    case DL_FAR:
        return NOW + 3600000;  /* an hour: every delay here fits */
    case DL_NEAR:
        return NOW + 5000;     /* the 500 ms backoff fits, a 20 s Retry-After does not */
    case DL_PAST:
        return NOW - 1000;
    }
    return 0;
}

typedef struct expect {
    cmn_outcome_action_t action;
    cmn_outcome_why_t why;
    int64_t delay_ms; /* RETRY only */
} expect_t;

/* The rules of docs/channels.md, one by one. */
static expect_t expected(cmn_worker_class_t cls, int plan, int exhausted, enum deadline_kind dl, int big_ra)
{
    if (cls == CMN_WORKER_SENT)
        return (expect_t){CMN_OUTCOME_SENT, CMN_OUTCOME_WHY_NONE, 0};
    /* The wait: full jitter gives 500 ms; a 20 s Retry-After is a floor. */
    int64_t delay = big_ra ? 20000 : 500;
    cmn_outcome_why_t why = CMN_OUTCOME_WHY_PERMANENT;
    if (cls == CMN_WORKER_RETRYABLE) {
        int fits = dl == DL_NONE || dl == DL_FAR || (dl == DL_NEAR && !big_ra);
        if (!exhausted && fits)
            return (expect_t){CMN_OUTCOME_RETRY, CMN_OUTCOME_WHY_NONE, delay};
        why = exhausted ? CMN_OUTCOME_WHY_ATTEMPTS : CMN_OUTCOME_WHY_DEADLINE;
    }
    /* After the deadline nothing more goes out, on any channel. */
    if (plan && dl != DL_PAST)
        return (expect_t){CMN_OUTCOME_FALLBACK, why, 0};
    return (expect_t){cls == CMN_WORKER_PERMANENT ? CMN_OUTCOME_FAILED : CMN_OUTCOME_DEAD, why, 0};
}

Test(outcome, every_class_plan_attempt_deadline_and_retry_after)
{
    const cmn_worker_class_t classes[] = {CMN_WORKER_SENT, CMN_WORKER_RETRYABLE, CMN_WORKER_PERMANENT};
    int cases = 0;
    for (size_t c = 0; c < 3; c++) {
        for (int plan = 0; plan <= 1; plan++) {
            for (int exhausted = 0; exhausted <= 1; exhausted++) {
                for (int dl = DL_NONE; dl <= DL_PAST; dl++) {
                    for (int big_ra = 0; big_ra <= 1; big_ra++) {
                        int attempt = exhausted ? POLICY.max_attempts : 1;
                        cmn_dispatch_t d = sms_dispatch(attempt, plan, deadline_of((enum deadline_kind)dl));
                        cmn_worker_result_t r = result(classes[c], big_ra ? 20000 : 0);
                        cmn_outcome_t o;
                        expect_t e = expected(classes[c], plan, exhausted, (enum deadline_kind)dl, big_ra);
                        char label[160];
                        snprintf(label, sizeof label, "class %s, plan %d, attempt %d, deadline %s, Retry-After %s",
                                 cmn_worker_class_name(classes[c]), plan, attempt, DL_NAMES[dl],
                                 big_ra ? "20 s" : "none");
                        /* The draw only matters at attempt 1, whose
                         * window is [0, 1 s]: 500 ms. */
                        cr_assert_eq(cmn_outcome_plan(&d, &r, &POLICY, NOW, RND_500, &o), 0, "%s", label);
                        cr_expect_eq(o.action, e.action, "%s: action %s, expected %s", label,
                                     cmn_outcome_action_name(o.action), cmn_outcome_action_name(e.action));
                        cr_expect_eq(o.why, e.why, "%s: why '%s', expected '%s'", label, cmn_outcome_why_name(o.why),
                                     cmn_outcome_why_name(e.why));
                        if (e.action == CMN_OUTCOME_RETRY) {
                            cr_expect_eq(o.delay_ms, e.delay_ms, "%s: delay %lld", label, (long long)o.delay_ms);
                            cr_expect_eq(o.due_at_ms, NOW + e.delay_ms, "%s", label);
                            cr_expect_eq(o.next_attempt, attempt + 1, "%s", label);
                            cr_expect_eq(o.retry_after_ms, big_ra ? 20000 : 0, "%s", label);
                            cr_expect_eq(o.hop.direct, 0, "%s", label);
                            cr_expect_str_eq(o.hop.target, "crm.send.sms", "%s", label);
                        }
                        if (e.action == CMN_OUTCOME_FALLBACK) {
                            cr_expect_eq(o.next_channel, CMN_CHANNEL_EMAIL, "%s", label);
                            cr_expect_eq(o.next_hop, 1, "%s", label);
                            cr_expect_eq(o.next_to, email_addr, "%s: the address is borrowed from the recipient",
                                         label);
                            cr_expect_eq(o.n_plan, 1, "%s", label);
                            cr_expect_eq(o.plan[0], CMN_CHANNEL_WHATSAPP, "%s", label);
                        } else {
                            cr_expect_eq(o.next_channel, CMN_CHANNEL_NONE, "%s", label);
                            cr_expect_eq(o.n_plan, 0, "%s", label);
                        }
                        int ends = e.action == CMN_OUTCOME_FALLBACK || e.action == CMN_OUTCOME_FAILED ||
                                   e.action == CMN_OUTCOME_DEAD;
                        cr_expect_eq(o.reason[0] != '\0', ends, "%s: reason '%s'", label, o.reason);
                        cases++;
                    }
                }
            }
        }
    }
    cr_assert_eq(cases, 96);
}

/* ------------------------------------------------------------ retries */

Test(outcome, retry_goes_through_the_tier_chosen_for_its_wait)
{
    cmn_backoff_t p = {.base_ms = 5000, .cap_ms = 1800000, .max_attempts = 5};
    cmn_dispatch_t d = sms_dispatch(1, 0, 0);
    cmn_worker_result_t r = result(CMN_WORKER_RETRYABLE, 0);
    cmn_outcome_t o;
    /* 4000 % 5001 = 4 s: shorter than every tier, so the 5s tier releases
     * it at its due time. */
    cr_assert_eq(cmn_outcome_plan(&d, &r, &p, NOW, 4000, &o), 0);
    cr_assert_eq(o.action, CMN_OUTCOME_RETRY);
    cr_expect_eq(o.next_attempt, 2);
    cr_expect_eq(o.delay_ms, 4000);
    cr_expect_str_eq(o.hop.topic, "crm.retry.sms.5s");
    cr_expect_str_eq(o.hop.target, "crm.send.sms");
    char due[32];
    snprintf(due, sizeof due, "%lld", (long long)(NOW + 4000));
    cr_expect_str_eq(o.hop.due_at, due);

    /* A 40 min Retry-After is longer than the cap and still honoured: the
     * 30m tier, cycled by the delay consumer. */
    r = result(CMN_WORKER_RETRYABLE, 2400000);
    cr_assert_eq(cmn_outcome_plan(&d, &r, &p, NOW, 4000, &o), 0);
    cr_assert_eq(o.action, CMN_OUTCOME_RETRY);
    cr_expect_eq(o.delay_ms, 2400000);
    cr_expect_eq(o.retry_after_ms, 2400000);
    cr_expect_str_eq(o.hop.topic, "crm.retry.sms.30m");

    /* A draw of 0 means "now": straight back to the send topic. */
    r = result(CMN_WORKER_RETRYABLE, 0);
    cr_assert_eq(cmn_outcome_plan(&d, &r, &p, NOW, 0, &o), 0);
    cr_assert_eq(o.action, CMN_OUTCOME_RETRY);
    cr_expect_eq(o.delay_ms, 0);
    cr_expect_eq(o.hop.direct, 1);
    cr_expect_str_eq(o.hop.topic, "crm.send.sms");

    /* Another channel's retries use that channel's tiers. */
    d.channel = CMN_CHANNEL_WHATSAPP;
    cr_assert_eq(cmn_outcome_plan(&d, &r, &p, NOW, 40000, &o), 0);
    cr_expect_eq(o.delay_ms, 40000 % 5001);
    cr_expect_str_eq(o.hop.topic, "crm.retry.whatsapp.5s");
    cr_expect_str_eq(o.hop.target, "crm.send.whatsapp");
}

Test(outcome, jitter_window_doubles_per_attempt_up_to_the_cap)
{
    /* rnd = ceiling draws the top of the window: 1, 2, 4, 8, 8 s. */
    cmn_backoff_t p = {.base_ms = 1000, .cap_ms = 8000, .max_attempts = 6};
    const int64_t top[] = {1000, 2000, 4000, 8000, 8000};
    for (int attempt = 1; attempt <= 5; attempt++) {
        cmn_dispatch_t d = sms_dispatch(attempt, 0, 0);
        cmn_worker_result_t r = result(CMN_WORKER_RETRYABLE, 0);
        cmn_outcome_t o;
        cr_assert_eq(cmn_outcome_plan(&d, &r, &p, NOW, (uint64_t)top[attempt - 1], &o), 0);
        cr_assert_eq(o.action, CMN_OUTCOME_RETRY, "attempt %d", attempt);
        cr_expect_eq(o.delay_ms, top[attempt - 1], "attempt %d: %lld", attempt, (long long)o.delay_ms);
        cr_expect_eq(o.next_attempt, attempt + 1);
        /* And one more than the ceiling wraps to 0: the window is inclusive. */
        cr_assert_eq(cmn_outcome_plan(&d, &r, &p, NOW, (uint64_t)top[attempt - 1] + 1, &o), 0);
        cr_expect_eq(o.delay_ms, 0, "attempt %d", attempt);
    }
    /* Whatever the draw, never above the ceiling. */
    cmn_dispatch_t d = sms_dispatch(2, 0, 0);
    cmn_worker_result_t r = result(CMN_WORKER_RETRYABLE, 0);
    for (uint64_t i = 0; i < 5000; i++) {
        uint64_t rnd = UINT64_MAX - i * 997;
        cmn_outcome_t o;
        cr_assert_eq(cmn_outcome_plan(&d, &r, &p, NOW, rnd, &o), 0);
        cr_assert(o.delay_ms >= 0 && o.delay_ms <= 2000, "rnd %llu: %lld", (unsigned long long)rnd,
                  (long long)o.delay_ms);
    }
}

Test(outcome, retry_after_is_a_floor_not_a_ceiling)
{
    cmn_dispatch_t d = sms_dispatch(1, 0, 0);
    cmn_outcome_t o;
    /* A hint below the draw changes nothing. */
    cmn_worker_result_t r = result(CMN_WORKER_RETRYABLE, 100);
    cr_assert_eq(cmn_outcome_plan(&d, &r, &POLICY, NOW, RND_500, &o), 0);
    cr_expect_eq(o.delay_ms, 500);
    cr_expect_eq(o.retry_after_ms, 100);
    /* A hint above it is the wait. */
    r = result(CMN_WORKER_RETRYABLE, 7000);
    cr_assert_eq(cmn_outcome_plan(&d, &r, &POLICY, NOW, RND_500, &o), 0);
    cr_expect_eq(o.delay_ms, 7000);
    cr_expect_eq(o.due_at_ms, NOW + 7000);
    /* A negative hint (a channel's bug) is no hint. */
    r = result(CMN_WORKER_RETRYABLE, 0);
    r.retry_after_ms = -5;
    cr_assert_eq(cmn_outcome_plan(&d, &r, &POLICY, NOW, RND_500, &o), 0);
    cr_expect_eq(o.delay_ms, 500);
    cr_expect_eq(o.retry_after_ms, 0);
}

Test(outcome, deadline_boundaries)
{
    cmn_outcome_t o;
    cmn_worker_result_t r = result(CMN_WORKER_RETRYABLE, 0);
    /* Due exactly at the deadline: still allowed. */
    cmn_dispatch_t d = sms_dispatch(1, 0, NOW + 500);
    cr_assert_eq(cmn_outcome_plan(&d, &r, &POLICY, NOW, RND_500, &o), 0);
    cr_expect_eq(o.action, CMN_OUTCOME_RETRY);
    /* One millisecond later: dead, and the reason says by how much. */
    d = sms_dispatch(1, 0, NOW + 499);
    cr_assert_eq(cmn_outcome_plan(&d, &r, &POLICY, NOW, RND_500, &o), 0);
    cr_expect_eq(o.action, CMN_OUTCOME_DEAD);
    cr_expect_eq(o.why, CMN_OUTCOME_WHY_DEADLINE);
    cr_expect_str_eq(o.reason,
                     "deadline exceeded: attempt 1 on sms failed and the next would be due 1 ms after the deadline, "
                     "last error 20500: Internal Server Error");
    /* At the deadline itself a fallback still goes (it is sent now)... */
    d = sms_dispatch(1, 1, NOW);
    r = result(CMN_WORKER_PERMANENT, 0);
    cr_assert_eq(cmn_outcome_plan(&d, &r, &POLICY, NOW, RND_500, &o), 0);
    cr_expect_eq(o.action, CMN_OUTCOME_FALLBACK);
    /* ...one millisecond after it, nothing does. */
    cr_assert_eq(cmn_outcome_plan(&d, &r, &POLICY, NOW + 1, RND_500, &o), 0);
    cr_expect_eq(o.action, CMN_OUTCOME_FAILED);
    cr_expect_eq(o.why, CMN_OUTCOME_WHY_PERMANENT);
    cr_expect_str_eq(o.reason,
                     "permanent failure on sms at attempt 1, error 21610: Attempt to send to unsubscribed recipient; "
                     "no fallback to email: the deadline has passed");
    /* A retryable failure after the deadline is dead, whatever attempts are left. */
    r = result(CMN_WORKER_RETRYABLE, 0);
    cr_assert_eq(cmn_outcome_plan(&d, &r, &POLICY, NOW + 1, RND_500, &o), 0);
    cr_expect_eq(o.action, CMN_OUTCOME_DEAD);
    cr_expect_eq(o.why, CMN_OUTCOME_WHY_DEADLINE);
    cr_expect_str_eq(o.reason,
                     "deadline exceeded: attempt 1 on sms failed after the deadline, last error 20500: Internal "
                     "Server Error; no fallback to email: the deadline has passed");
}

Test(outcome, one_attempt_policy_never_retries)
{
    cmn_backoff_t p = {.base_ms = 1000, .cap_ms = 1000, .max_attempts = 1};
    cmn_dispatch_t d = sms_dispatch(1, 0, 0);
    cmn_worker_result_t r = result(CMN_WORKER_RETRYABLE, 0);
    cmn_outcome_t o;
    cr_assert_eq(cmn_outcome_plan(&d, &r, &p, NOW, RND_500, &o), 0);
    cr_expect_eq(o.action, CMN_OUTCOME_DEAD);
    cr_expect_eq(o.why, CMN_OUTCOME_WHY_ATTEMPTS);
    cr_expect_str_eq(o.reason, "retries exhausted: 1 attempts on sms, last error 20500: Internal Server Error");
}

Test(outcome, a_dispatch_beyond_max_attempts_is_not_retried)
{
    /* A policy lowered while records were waiting in the tiers. */
    cmn_dispatch_t d = sms_dispatch(7, 0, 0);
    cmn_worker_result_t r = result(CMN_WORKER_RETRYABLE, 0);
    cmn_outcome_t o;
    cr_assert_eq(cmn_outcome_plan(&d, &r, &POLICY, NOW, RND_500, &o), 0);
    cr_expect_eq(o.action, CMN_OUTCOME_DEAD);
    cr_expect_eq(o.why, CMN_OUTCOME_WHY_ATTEMPTS);
}

Test(outcome, due_time_never_overflows)
{
    /* A wait that would pass the largest due time the tiers accept is not
     * planned as a retry. */
    cmn_dispatch_t d = sms_dispatch(1, 0, 0);
    cmn_worker_result_t r = result(CMN_WORKER_RETRYABLE, 86400000);
    cmn_outcome_t o;
    cr_assert_eq(cmn_outcome_plan(&d, &r, &POLICY, CMN_DELAY_MAX_DUE_AT_MS - 1000, RND_500, &o), 0);
    cr_expect_eq(o.action, CMN_OUTCOME_DEAD);
}

/* ----------------------------------------------------------- fallback */

Test(outcome, exhausted_retries_with_a_plan_fall_back)
{
    cmn_dispatch_t d = sms_dispatch(3, 1, 0);
    d.hop = 1; /* already a fallback hop */
    cmn_worker_result_t r = result(CMN_WORKER_RETRYABLE, 0);
    cmn_outcome_t o;
    cr_assert_eq(cmn_outcome_plan(&d, &r, &POLICY, NOW, RND_500, &o), 0);
    cr_assert_eq(o.action, CMN_OUTCOME_FALLBACK);
    cr_expect_eq(o.why, CMN_OUTCOME_WHY_ATTEMPTS);
    cr_expect_eq(o.next_channel, CMN_CHANNEL_EMAIL);
    cr_expect_eq(o.next_hop, 2);
    cr_expect_str_eq(o.next_to, "ana@example.com");
    cr_expect_eq(o.n_plan, 1);
    cr_expect_eq(o.plan[0], CMN_CHANNEL_WHATSAPP);
    cr_expect_eq(o.n_skipped, 0);
    cr_expect_str_eq(o.reason, "retries exhausted: 3 attempts on sms, last error 20500: Internal Server Error; "
                               "falling back to email");
}

Test(outcome, permanent_failure_falls_back_to_the_first_addressable_channel)
{
    /* Plan [whatsapp, email] for a recipient without a WhatsApp address:
     * WhatsApp is passed over (a phone number is not a WhatsApp opt-in),
     * email is next and nothing is left after it. */
    cmn_dispatch_t d = sms_dispatch(2, 0, 0);
    d.recipient.email = email_addr;
    d.fallback[0] = CMN_CHANNEL_WHATSAPP;
    d.fallback[1] = CMN_CHANNEL_EMAIL;
    d.n_fallback = 2;
    cmn_worker_result_t r = result(CMN_WORKER_PERMANENT, 0);
    cmn_outcome_t o;
    cr_assert_eq(cmn_outcome_plan(&d, &r, &POLICY, NOW, RND_500, &o), 0);
    cr_assert_eq(o.action, CMN_OUTCOME_FALLBACK);
    cr_expect_eq(o.why, CMN_OUTCOME_WHY_PERMANENT);
    cr_expect_eq(o.next_channel, CMN_CHANNEL_EMAIL);
    cr_expect_eq(o.next_to, email_addr);
    cr_expect_eq(o.n_plan, 0);
    cr_expect_eq(o.n_skipped, 1);
    cr_expect_eq(o.skipped[0], CMN_CHANNEL_WHATSAPP);
    cr_expect_str_eq(o.reason, "permanent failure on sms at attempt 2, error 21610: Attempt to send to unsubscribed "
                               "recipient; falling back to email");

    /* An empty address counts as none. */
    char empty[] = "";
    d.recipient.email = empty;
    cr_assert_eq(cmn_outcome_plan(&d, &r, &POLICY, NOW, RND_500, &o), 0);
    cr_expect_eq(o.action, CMN_OUTCOME_FAILED);
    cr_expect_eq(o.n_skipped, 2);
    cr_expect_str_eq(o.reason,
                     "permanent failure on sms at attempt 2, error 21610: Attempt to send to unsubscribed recipient");
}

Test(outcome, plan_without_any_address_is_dead_for_retryable)
{
    cmn_dispatch_t d = sms_dispatch(3, 0, 0);
    d.fallback[0] = CMN_CHANNEL_EMAIL;
    d.n_fallback = 1;
    cmn_worker_result_t r = result(CMN_WORKER_RETRYABLE, 0);
    cmn_outcome_t o;
    cr_assert_eq(cmn_outcome_plan(&d, &r, &POLICY, NOW, RND_500, &o), 0);
    cr_expect_eq(o.action, CMN_OUTCOME_DEAD);
    cr_expect_eq(o.why, CMN_OUTCOME_WHY_ATTEMPTS);
    cr_expect_eq(o.n_skipped, 1);
    cr_expect_eq(o.next_channel, CMN_CHANNEL_NONE);
    cr_expect_null(o.next_to);
}

Test(outcome, next_channel_alone)
{
    cmn_dispatch_t d = sms_dispatch(1, 1, 0);
    cmn_channel_t next, rest[CMN_CHANNEL__COUNT];
    const char *to = NULL;
    size_t n_rest = 9;
    cr_assert_eq(cmn_outcome_next_channel(&d, &next, &to, rest, &n_rest, NULL, NULL), 1);
    cr_expect_eq(next, CMN_CHANNEL_EMAIL);
    cr_expect_eq(to, email_addr);
    cr_expect_eq(n_rest, 1);
    cr_expect_eq(rest[0], CMN_CHANNEL_WHATSAPP);
    /* A plan that names the dispatch's own channel (a corrupted record)
     * never loops back to it. */
    d = sms_dispatch(1, 0, 0);
    d.fallback[0] = CMN_CHANNEL_SMS;
    d.n_fallback = 1;
    cr_expect_eq(cmn_outcome_next_channel(&d, &next, &to, rest, &n_rest, NULL, NULL), 0);
    cr_expect_eq(next, CMN_CHANNEL_NONE);
    cr_expect_null(to);
    cr_expect_eq(n_rest, 0);
    cr_expect_eq(cmn_outcome_next_channel(NULL, &next, &to, rest, &n_rest, NULL, NULL), 0);
}

/* --------------------------------------------------------- misc, errors */

Test(outcome, reason_without_code_or_message)
{
    cmn_dispatch_t d = sms_dispatch(3, 0, 0);
    cmn_worker_result_t r;
    memset(&r, 0, sizeof r);
    r.cls = CMN_WORKER_RETRYABLE;
    cmn_outcome_t o;
    cr_assert_eq(cmn_outcome_plan(&d, &r, &POLICY, NOW, RND_500, &o), 0);
    cr_expect_str_eq(o.reason, "retries exhausted: 3 attempts on sms, last error unknown");
    snprintf(r.error_message, sizeof r.error_message, "connection refused");
    cr_assert_eq(cmn_outcome_plan(&d, &r, &POLICY, NOW, RND_500, &o), 0);
    cr_expect_str_eq(o.reason, "retries exhausted: 3 attempts on sms, last error connection refused");
}

Test(outcome, a_long_provider_message_is_cut_not_overflowed)
{
    cmn_dispatch_t d = sms_dispatch(3, 1, 0);
    cmn_worker_result_t r = result(CMN_WORKER_RETRYABLE, 0);
    memset(r.error_message, 'x', sizeof r.error_message - 1);
    r.error_message[sizeof r.error_message - 1] = '\0';
    cmn_outcome_t o;
    cr_assert_eq(cmn_outcome_plan(&d, &r, &POLICY, NOW, RND_500, &o), 0);
    cr_expect_eq(o.action, CMN_OUTCOME_FALLBACK);
    cr_expect_lt(strlen(o.reason), sizeof o.reason);
    cr_expect_not_null(strstr(o.reason, "; falling back to email"), "%s", o.reason);
}

Test(outcome, bad_arguments)
{
    cmn_dispatch_t d = sms_dispatch(1, 0, 0);
    cmn_worker_result_t r = result(CMN_WORKER_RETRYABLE, 0);
    cmn_outcome_t o;
    cr_expect_eq(cmn_outcome_plan(NULL, &r, &POLICY, NOW, 0, &o), CMN_ERR_INVALID);
    cr_expect_eq(cmn_outcome_plan(&d, NULL, &POLICY, NOW, 0, &o), CMN_ERR_INVALID);
    cr_expect_eq(cmn_outcome_plan(&d, &r, NULL, NOW, 0, &o), CMN_ERR_INVALID);
    cr_expect_eq(cmn_outcome_plan(&d, &r, &POLICY, NOW, 0, NULL), CMN_ERR_INVALID);
    cr_expect_eq(cmn_outcome_plan(&d, &r, &POLICY, 0, 0, &o), CMN_ERR_INVALID);
    cr_expect_eq(cmn_outcome_plan(&d, &r, &POLICY, CMN_DELAY_MAX_DUE_AT_MS + 1, 0, &o), CMN_ERR_INVALID);
    d.attempt = 0;
    cr_expect_eq(cmn_outcome_plan(&d, &r, &POLICY, NOW, 0, &o), CMN_ERR_INVALID);
    d.attempt = 1;
    d.channel = CMN_CHANNEL_NONE;
    cr_expect_eq(cmn_outcome_plan(&d, &r, &POLICY, NOW, 0, &o), CMN_ERR_INVALID);
    cr_expect_eq(o.action, CMN_OUTCOME_SENT, "zeroed on error");
    d.channel = CMN_CHANNEL_SMS;
    cmn_backoff_t bad = {.base_ms = 0, .cap_ms = 1000, .max_attempts = 3};
    cr_expect_eq(cmn_outcome_plan(&d, &r, &bad, NOW, 0, &o), CMN_ERR_INVALID);
}

Test(outcome, policy_defaults_and_checks)
{
    cmn_backoff_t p;
    char why[128] = "";
    cmn_outcome_policy_default(&p);
    cr_expect_eq(p.max_attempts, 5);
    cr_expect_eq(p.base_ms, 5000);
    cr_expect_eq(p.cap_ms, 1800000);
    cr_expect_eq(cmn_outcome_policy_check(&p, why, sizeof why), 0);
    const struct {
        cmn_backoff_t p;
        const char *why;
    } bad[] = {
        {{.base_ms = 1000, .cap_ms = 2000, .max_attempts = 0}, "max_attempts must be 1..50"},
        {{.base_ms = 1000, .cap_ms = 2000, .max_attempts = 51}, "max_attempts must be 1..50"},
        {{.base_ms = 0, .cap_ms = 2000, .max_attempts = 3}, "base_ms must be positive"},
        {{.base_ms = 3000, .cap_ms = 2000, .max_attempts = 3}, "cap_ms must not be below base_ms"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_expect_eq(cmn_outcome_policy_check(&bad[i].p, why, sizeof why), CMN_ERR_INVALID, "case %zu", i);
        cr_expect_str_eq(why, bad[i].why);
    }
    cr_expect_eq(cmn_outcome_policy_check(NULL, NULL, 0), CMN_ERR_INVALID);
    cmn_backoff_t edge = {.base_ms = 1, .cap_ms = 1, .max_attempts = 50};
    cr_expect_eq(cmn_outcome_policy_check(&edge, NULL, 0), 0);
}

Test(outcome, names)
{
    cr_expect_str_eq(cmn_outcome_action_name(CMN_OUTCOME_SENT), "sent");
    cr_expect_str_eq(cmn_outcome_action_name(CMN_OUTCOME_RETRY), "retry");
    cr_expect_str_eq(cmn_outcome_action_name(CMN_OUTCOME_FALLBACK), "fallback");
    cr_expect_str_eq(cmn_outcome_action_name(CMN_OUTCOME_FAILED), "failed");
    cr_expect_str_eq(cmn_outcome_action_name(CMN_OUTCOME_DEAD), "dead");
    cr_expect_str_eq(cmn_outcome_action_name((cmn_outcome_action_t)42), "unknown");
    cr_expect_str_eq(cmn_outcome_why_name(CMN_OUTCOME_WHY_NONE), "");
    cr_expect_str_eq(cmn_outcome_why_name(CMN_OUTCOME_WHY_PERMANENT), "permanent");
    cr_expect_str_eq(cmn_outcome_why_name(CMN_OUTCOME_WHY_ATTEMPTS), "attempts_exhausted");
    cr_expect_str_eq(cmn_outcome_why_name(CMN_OUTCOME_WHY_DEADLINE), "deadline_exceeded");
}
