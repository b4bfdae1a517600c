/* Unit tests for crm/backoff.h. */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdint.h>

#include "crm/backoff.h"

static const cmn_backoff_t policy = {.base_ms = 1000, .cap_ms = 3600000, .max_attempts = 5};

Test(backoff, ceiling_schedule_doubles)
{
    const int64_t expected[] = {1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000,
                                256000, 512000, 1024000, 2048000};
    for (int attempt = 1; attempt <= 12; attempt++) {
        cr_assert_eq(cmn_backoff_ceiling_ms(&policy, attempt), expected[attempt - 1], "attempt %d",
                     attempt);
    }
}

Test(backoff, ceiling_is_capped)
{
    /* 1000 * 2^12 = 4096000 > 3600000. */
    cr_assert_eq(cmn_backoff_ceiling_ms(&policy, 13), 3600000);
    cr_assert_eq(cmn_backoff_ceiling_ms(&policy, 14), 3600000);
    cr_assert_eq(cmn_backoff_ceiling_ms(&policy, 100), 3600000);
    /* A cap exactly on a power of two is reached, not skipped. */
    cmn_backoff_t exact = {.base_ms = 1000, .cap_ms = 8000, .max_attempts = 10};
    cr_assert_eq(cmn_backoff_ceiling_ms(&exact, 4), 8000);
    cr_assert_eq(cmn_backoff_ceiling_ms(&exact, 5), 8000);
    /* A base above the cap is clamped from the first attempt. */
    cmn_backoff_t inverted = {.base_ms = 5000, .cap_ms = 100, .max_attempts = 3};
    cr_assert_eq(cmn_backoff_ceiling_ms(&inverted, 1), 100);
}

Test(backoff, ceiling_survives_huge_attempts)
{
    cr_assert_eq(cmn_backoff_ceiling_ms(&policy, 62), 3600000);
    cr_assert_eq(cmn_backoff_ceiling_ms(&policy, 63), 3600000);
    cr_assert_eq(cmn_backoff_ceiling_ms(&policy, 64), 3600000);
    cr_assert_eq(cmn_backoff_ceiling_ms(&policy, 1000), 3600000);
    cr_assert_eq(cmn_backoff_ceiling_ms(&policy, INT_MAX), 3600000);
    /* Without a cap the ceiling saturates instead of wrapping negative. */
    cmn_backoff_t uncapped = {.base_ms = 3, .cap_ms = 0, .max_attempts = 5};
    cr_assert_eq(cmn_backoff_ceiling_ms(&uncapped, 3), 12);
    cr_assert_eq(cmn_backoff_ceiling_ms(&uncapped, 62), INT64_C(3) << 61);
    cr_assert_eq(cmn_backoff_ceiling_ms(&uncapped, 63), INT64_MAX);
    cr_assert_eq(cmn_backoff_ceiling_ms(&uncapped, INT_MAX), INT64_MAX);
    cmn_backoff_t big = {.base_ms = INT64_MAX / 2, .cap_ms = INT64_MAX, .max_attempts = 5};
    cr_assert_eq(cmn_backoff_ceiling_ms(&big, 2), INT64_MAX - 1);
    cr_assert_eq(cmn_backoff_ceiling_ms(&big, 3), INT64_MAX);
}

Test(backoff, ceiling_odd_inputs)
{
    /* Attempts below 1 are treated as the first attempt. */
    cr_assert_eq(cmn_backoff_ceiling_ms(&policy, 0), 1000);
    cr_assert_eq(cmn_backoff_ceiling_ms(&policy, -5), 1000);
    cr_assert_eq(cmn_backoff_ceiling_ms(NULL, 3), 0);
    cmn_backoff_t zero = {.base_ms = 0, .cap_ms = 1000, .max_attempts = 3};
    cr_assert_eq(cmn_backoff_ceiling_ms(&zero, 5), 0);
}

Test(backoff, delay_is_full_jitter_within_window)
{
    /* rnd selects a point in [0, ceiling], both ends included. */
    cr_assert_eq(cmn_backoff_delay_ms(&policy, 1, 0, 0), 0);
    cr_assert_eq(cmn_backoff_delay_ms(&policy, 1, 1000, 0), 1000);
    cr_assert_eq(cmn_backoff_delay_ms(&policy, 1, 1001, 0), 0);
    cr_assert_eq(cmn_backoff_delay_ms(&policy, 3, 2500, 0), 2500);
    cr_assert_eq(cmn_backoff_delay_ms(&policy, 3, 4001 + 17, 0), 17);
    for (uint64_t rnd = 0; rnd < 100000; rnd += 997) {
        for (int attempt = 1; attempt <= 20; attempt++) {
            int64_t d = cmn_backoff_delay_ms(&policy, attempt, rnd * 2654435761u, 0);
            cr_assert_geq(d, 0);
            cr_assert_leq(d, cmn_backoff_ceiling_ms(&policy, attempt));
        }
    }
    /* Extreme random values and a saturated ceiling stay in range. */
    cr_assert_leq(cmn_backoff_delay_ms(&policy, 30, UINT64_MAX, 0), 3600000);
    cmn_backoff_t uncapped = {.base_ms = 1, .cap_ms = 0, .max_attempts = 5};
    int64_t d = cmn_backoff_delay_ms(&uncapped, 100, UINT64_MAX, 0);
    cr_assert_geq(d, 0);
}

Test(backoff, retry_after_is_a_floor)
{
    cr_assert_eq(cmn_backoff_delay_ms(&policy, 1, 10, 30000), 30000);
    /* A Retry-After below the jittered delay changes nothing. */
    cr_assert_eq(cmn_backoff_delay_ms(&policy, 3, 2500, 1000), 2500);
    /* It may exceed the cap: the provider's instruction wins. */
    cr_assert_eq(cmn_backoff_delay_ms(&policy, 30, 5, 7200000), 7200000);
    /* Negative means "none". */
    cr_assert_eq(cmn_backoff_delay_ms(&policy, 3, 2500, -1), 2500);
}

Test(backoff, max_attempts)
{
    /* max_attempts = 5 counts the first attempt: retries after 1..4 only. */
    for (int attempt = 1; attempt <= 4; attempt++) {
        cr_assert(cmn_backoff_should_retry(&policy, attempt, 1000, 500, 0), "attempt %d", attempt);
    }
    cr_assert_not(cmn_backoff_should_retry(&policy, 5, 1000, 500, 0));
    cr_assert_not(cmn_backoff_should_retry(&policy, 6, 1000, 500, 0));
    cmn_backoff_t once = {.base_ms = 1000, .cap_ms = 1000, .max_attempts = 1};
    cr_assert_not(cmn_backoff_should_retry(&once, 1, 0, 0, 0));
    cmn_backoff_t none = {.base_ms = 1000, .cap_ms = 1000, .max_attempts = 0};
    cr_assert_not(cmn_backoff_should_retry(&none, 1, 0, 0, 0));
    cr_assert_not(cmn_backoff_should_retry(NULL, 1, 0, 0, 0));
}

Test(backoff, deadline)
{
    const int64_t now = INT64_C(1795309323000);
    /* Due before or exactly at the deadline: allowed. */
    cr_assert(cmn_backoff_should_retry(&policy, 1, now, 1000, now + 5000));
    cr_assert(cmn_backoff_should_retry(&policy, 1, now, 5000, now + 5000));
    /* Due after it, or the deadline already passed: not allowed. */
    cr_assert_not(cmn_backoff_should_retry(&policy, 1, now, 5001, now + 5000));
    cr_assert_not(cmn_backoff_should_retry(&policy, 1, now, 0, now - 1));
    /* 0 means no deadline, however long the delay. */
    cr_assert(cmn_backoff_should_retry(&policy, 1, now, INT64_MAX, 0));
    /* A huge delay does not overflow now + delay into the past. */
    cr_assert_not(cmn_backoff_should_retry(&policy, 1, now, INT64_MAX, now + 1));
    /* A negative delay counts as "now". */
    cr_assert(cmn_backoff_should_retry(&policy, 1, now, -10, now));
}
