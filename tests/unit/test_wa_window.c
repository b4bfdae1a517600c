/* test_wa_window.c - the 24-hour window and the send decision
 * (services/whatsapp-worker/wa_window.h): the exact 24 h boundary, the
 * safety margin, timestamps in the future (clock skew and bogus data), a
 * missing conversation, and every branch of the decision table. */
#include <criterion/criterion.h>
#include <stdint.h>

#include "wa_window.h"

#define HOUR (60LL * 60 * 1000)
#define MIN (60LL * 1000)
#define NOW 1795300000000LL /* 2026-11-22, any fixed instant will do */

Test(wa_window, exactly_24_hours_is_closed)
{
    cr_expect_eq(wa_window_state(1, NOW - 24 * HOUR, NOW, 0), WA_WINDOW_CLOSED);
    cr_expect_eq(wa_window_state(1, NOW - 24 * HOUR + 1, NOW, 0), WA_WINDOW_OPEN, "1 ms before the end");
    cr_expect_eq(wa_window_state(1, NOW - 24 * HOUR - 1, NOW, 0), WA_WINDOW_CLOSED);
    cr_expect_eq(wa_window_state(1, NOW - 30 * 24 * HOUR, NOW, 0), WA_WINDOW_CLOSED);
    cr_expect_eq(wa_window_state(1, NOW, NOW, 0), WA_WINDOW_OPEN, "a message this very instant");
    cr_expect_eq(wa_window_state(1, NOW - HOUR, NOW, 0), WA_WINDOW_OPEN);
    cr_expect_eq(WA_WINDOW_MS, 24 * HOUR);
}

Test(wa_window, margin_closes_the_window_early)
{
    int64_t margin = 60 * 1000;
    cr_expect_eq(wa_window_state(1, NOW - 24 * HOUR + margin, NOW, margin), WA_WINDOW_CLOSED,
                 "at 24 h minus the margin the window is already closed");
    cr_expect_eq(wa_window_state(1, NOW - 24 * HOUR + margin + 1, NOW, margin), WA_WINDOW_OPEN);
    cr_expect_eq(wa_window_state(1, NOW - 23 * HOUR, NOW, margin), WA_WINDOW_OPEN);
    /* A negative margin is a configuration slip, not a longer window. */
    cr_expect_eq(wa_window_state(1, NOW - 24 * HOUR, NOW, -5 * MIN), WA_WINDOW_CLOSED);
    cr_expect_eq(wa_window_state(1, NOW - 24 * HOUR + 1, NOW, -5 * MIN), WA_WINDOW_OPEN);
}

Test(wa_window, future_timestamps)
{
    /* A little ahead: the clock of whoever stored it runs fast; "just now". */
    cr_expect_eq(wa_window_state(1, NOW + 1, NOW, 0), WA_WINDOW_OPEN);
    cr_expect_eq(wa_window_state(1, NOW + 30 * 1000, NOW, 60 * 1000), WA_WINDOW_OPEN);
    cr_expect_eq(wa_window_state(1, NOW + WA_WINDOW_MAX_SKEW_MS, NOW, 0), WA_WINDOW_OPEN, "the skew bound itself");
    /* Beyond the skew bound the value is not trusted: it would otherwise
     * keep the window open for up to a day longer than allowed. */
    cr_expect_eq(wa_window_state(1, NOW + WA_WINDOW_MAX_SKEW_MS + 1, NOW, 0), WA_WINDOW_CLOSED);
    cr_expect_eq(wa_window_state(1, NOW + 12 * HOUR, NOW, 0), WA_WINDOW_CLOSED);
    cr_expect_eq(wa_window_state(1, NOW + 365 * 24 * HOUR, NOW, 0), WA_WINDOW_CLOSED);
    cr_expect_eq(wa_window_state(1, INT64_MAX, NOW, 0), WA_WINDOW_CLOSED, "no overflow");
}

Test(wa_window, missing_conversation)
{
    cr_expect_eq(wa_window_state(0, 0, NOW, 0), WA_WINDOW_NONE);
    /* last_inbound_ms is meaningless without a conversation. */
    cr_expect_eq(wa_window_state(0, NOW, NOW, 0), WA_WINDOW_NONE);
    cr_expect_eq(wa_window_state(1, 0, NOW, 0), WA_WINDOW_CLOSED, "an inbound message in 1970");
    cr_expect_eq(wa_window_state(1, INT64_MIN / 2, NOW, 0), WA_WINDOW_CLOSED, "far past, no overflow");
}

Test(wa_window, state_names)
{
    cr_expect_str_eq(wa_window_state_name(WA_WINDOW_UNKNOWN), "unknown");
    cr_expect_str_eq(wa_window_state_name(WA_WINDOW_NONE), "none");
    cr_expect_str_eq(wa_window_state_name(WA_WINDOW_OPEN), "open");
    cr_expect_str_eq(wa_window_state_name(WA_WINDOW_CLOSED), "closed");
    cr_expect_str_eq(wa_window_state_name((wa_window_state_t)42), "unknown");
}

Test(wa_window, inside_the_window_free_form_goes_out)
{
    cr_expect_eq(wa_window_decide(WA_WINDOW_OPEN, 0, 1, 1), WA_SEND_FREEFORM);
    cr_expect_eq(wa_window_decide(WA_WINDOW_OPEN, 0, 1, 0), WA_SEND_FREEFORM, "no template needed inside");
    /* No free text for the type: the template is allowed inside too. */
    cr_expect_eq(wa_window_decide(WA_WINDOW_OPEN, 0, 0, 1), WA_SEND_TEMPLATE);
    cr_expect_eq(wa_window_decide(WA_WINDOW_OPEN, 0, 0, 0), WA_SEND_FAIL_NOTHING);
}

Test(wa_window, outside_the_window_only_templates)
{
    for (int st = WA_WINDOW_NONE; st <= WA_WINDOW_CLOSED; st += 2) { /* NONE and CLOSED */
        cr_expect_eq(wa_window_decide((wa_window_state_t)st, 0, 1, 1), WA_SEND_TEMPLATE, "%d", st);
        cr_expect_eq(wa_window_decide((wa_window_state_t)st, 0, 0, 1), WA_SEND_TEMPLATE, "%d", st);
        cr_expect_eq(wa_window_decide((wa_window_state_t)st, 0, 1, 0), WA_SEND_FAIL_NO_TEMPLATE, "%d", st);
        cr_expect_eq(wa_window_decide((wa_window_state_t)st, 0, 0, 0), WA_SEND_FAIL_NO_TEMPLATE, "%d", st);
    }
}

Test(wa_window, unknown_window_uses_the_template_or_retries)
{
    cr_expect_eq(wa_window_decide(WA_WINDOW_UNKNOWN, 0, 1, 1), WA_SEND_TEMPLATE);
    cr_expect_eq(wa_window_decide(WA_WINDOW_UNKNOWN, 0, 1, 0), WA_SEND_RETRY_UNKNOWN);
    cr_expect_eq(wa_window_decide(WA_WINDOW_UNKNOWN, 0, 0, 0), WA_SEND_RETRY_UNKNOWN);
}

Test(wa_window, an_explicit_template_request_ignores_the_window)
{
    for (int st = WA_WINDOW_UNKNOWN; st <= WA_WINDOW_CLOSED; st++) {
        cr_expect_eq(wa_window_decide((wa_window_state_t)st, 1, 1, 1), WA_SEND_TEMPLATE, "%d", st);
        cr_expect_eq(wa_window_decide((wa_window_state_t)st, 1, 1, 0), WA_SEND_FAIL_NOTHING, "%d", st);
    }
}
