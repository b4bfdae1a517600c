/* test_backoff_schedule.c - the full-jitter retry schedule end to end
 * (crm/backoff.h), checked statistically over many random values, and fed
 * through the retry delay tiers (crm/delay.h) the way a worker will use it.
 *
 * The random values come from a fixed-seed splitmix64 generator, so the
 * statistics are reproducible: a failure is a real change of behaviour, not
 * bad luck. The tolerances are still wide enough to hold for any seed (each
 * is more than ten standard deviations). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "crm/backoff.h"
#include "crm/delay.h"

#define SAMPLES 100000

/* splitmix64: a tiny, well-mixed 64-bit generator (Steele, Lea, Flood 2014). */
static uint64_t next_rnd(uint64_t *state)
{
    *state += UINT64_C(0x9e3779b97f4a7c15);
    uint64_t z = *state;
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* The worker's policy in the design: 1 s doubling to a 1 h cap, 8 attempts. */
static const cmn_backoff_t policy = {.base_ms = 1000, .cap_ms = 3600000, .max_attempts = 8};

Test(backoff_schedule, full_jitter_statistics_per_attempt)
{
    uint64_t state = 42;
    for (int attempt = 1; attempt <= 16; attempt++) {
        const int64_t ceiling = cmn_backoff_ceiling_ms(&policy, attempt);
        double sum = 0;
        int64_t lo = INT64_MAX, hi = -1;
        long quarter[4] = {0, 0, 0, 0};
        for (int i = 0; i < SAMPLES; i++) {
            int64_t d = cmn_backoff_delay_ms(&policy, attempt, next_rnd(&state), 0);
            cr_assert_geq(d, 0, "attempt %d", attempt);
            cr_assert_leq(d, ceiling, "attempt %d: %lld above the ceiling %lld", attempt, (long long)d,
                          (long long)ceiling);
            sum += (double)d;
            if (d < lo)
                lo = d;
            if (d > hi)
                hi = d;
            int q = (int)((double)d / ((double)ceiling + 1) * 4);
            quarter[q]++;
        }
        /* Uniform on [0, C]: mean C/2, standard deviation of the mean
         * C / sqrt(12 n) ~ 0.0009 C; 1% of C is over ten of those. */
        double mean = sum / SAMPLES;
        cr_expect(fabs(mean - (double)ceiling / 2) <= 0.01 * (double)ceiling,
                  "attempt %d: mean %.1f, want about %.1f", attempt, mean, (double)ceiling / 2);
        /* The whole window is used: both ends are approached... */
        cr_expect_leq(lo, ceiling / 100, "attempt %d: smallest %lld", attempt, (long long)lo);
        cr_expect_geq(hi, ceiling - ceiling / 100, "attempt %d: largest %lld", attempt, (long long)hi);
        /* ...and evenly: each quarter holds 25% +- 1.5% (sd is 0.14%). */
        for (int q = 0; q < 4; q++) {
            double share = (double)quarter[q] / SAMPLES;
            cr_expect(fabs(share - 0.25) < 0.015, "attempt %d quarter %d: %.4f", attempt, q, share);
        }
    }
}

Test(backoff_schedule, ceiling_doubles_then_stays_at_cap)
{
    int64_t prev = 0;
    int reached_cap_at = 0;
    for (int attempt = 1; attempt <= 40; attempt++) {
        int64_t c = cmn_backoff_ceiling_ms(&policy, attempt);
        cr_assert_leq(c, policy.cap_ms);
        if (prev > 0 && prev < policy.cap_ms)
            cr_assert(c == 2 * prev || c == policy.cap_ms, "attempt %d: %lld after %lld", attempt, (long long)c,
                      (long long)prev);
        if (c == policy.cap_ms && reached_cap_at == 0)
            reached_cap_at = attempt;
        if (reached_cap_at > 0)
            cr_assert_eq(c, policy.cap_ms, "attempt %d fell below the cap", attempt);
        prev = c;
    }
    /* 1000 * 2^12 = 4096000 is the first power above 3600000. */
    cr_assert_eq(reached_cap_at, 13);
}

Test(backoff_schedule, retry_after_is_a_floor_under_every_draw)
{
    uint64_t state = 7;
    const int64_t retry_after[] = {1, 500, 2000, 30000, 7200000};
    for (size_t k = 0; k < sizeof retry_after / sizeof retry_after[0]; k++) {
        for (int attempt = 1; attempt <= 14; attempt++) {
            const int64_t ceiling = cmn_backoff_ceiling_ms(&policy, attempt);
            const int64_t ra = retry_after[k];
            long at_floor = 0;
            for (int i = 0; i < SAMPLES / 10; i++) {
                int64_t d = cmn_backoff_delay_ms(&policy, attempt, next_rnd(&state), ra);
                cr_assert_geq(d, ra, "attempt %d Retry-After %lld: %lld", attempt, (long long)ra, (long long)d);
                /* Above the floor the draw is the plain jittered one. */
                cr_assert_leq(d, ceiling > ra ? ceiling : ra);
                if (d == ra)
                    at_floor++;
            }
            /* When Retry-After exceeds the window every delay is exactly it;
             * otherwise the floor catches the draws below it, about
             * ra / (C + 1) of them. */
            double share = (double)at_floor / (SAMPLES / 10);
            double want = ra >= ceiling ? 1.0 : (double)(ra + 1) / (double)(ceiling + 1);
            cr_expect(fabs(share - want) < 0.02, "attempt %d Retry-After %lld: %.4f at the floor, want %.4f",
                      attempt, (long long)ra, share, want);
        }
    }
}

/* Runs one message's retries from t0 with a given deadline (0 = none) and
 * random stream; returns the number of attempts made and the instant of the
 * last one in *last. Every retry wait is also planned through the retry
 * tiers and must land in a real tier topic targeting crm.send.sms. */
static int run_schedule(const cmn_backoff_t *b, int64_t t0, int64_t deadline, uint64_t *state, int64_t *last)
{
    int64_t now = t0;
    int attempt = 1;
    for (;;) {
        int64_t delay = cmn_backoff_delay_ms(b, attempt, next_rnd(state), 0);
        if (!cmn_backoff_should_retry(b, attempt, now, delay, deadline))
            break;
        cmn_delay_hop_t hop;
        cr_assert_eq(cmn_delay_plan_hop(CMN_DELAY_RETRY, CMN_CHANNEL_SMS, now, now + delay, &hop), 0);
        cr_assert_str_eq(hop.target, "crm.send.sms");
        if (!hop.direct) {
            cr_assert_eq(strncmp(hop.topic, "crm.retry.sms.", 14), 0, "%s", hop.topic);
        }
        now += delay;
        attempt++;
        if (deadline > 0) {
            cr_assert_leq(now, deadline, "attempt %d scheduled past the deadline", attempt);
        }
    }
    *last = now;
    return attempt;
}

Test(backoff_schedule, attempts_and_deadline_cutoff)
{
    uint64_t state = 2026;
    const int64_t t0 = INT64_C(1795309323000);
    int64_t last = 0;
    /* Without a deadline every message gets exactly max_attempts attempts,
     * and the expected total wait is the sum of half-ceilings. */
    double total = 0;
    for (int i = 0; i < 2000; i++) {
        cr_assert_eq(run_schedule(&policy, t0, 0, &state, &last), policy.max_attempts);
        total += (double)(last - t0);
    }
    double want = 0;
    for (int a = 1; a < policy.max_attempts; a++)
        want += (double)cmn_backoff_ceiling_ms(&policy, a) / 2;
    cr_expect(fabs(total / 2000 - want) < 0.05 * want, "mean total wait %.0f, want about %.0f", total / 2000, want);

    /* With a deadline 20 s out the schedule stops early (the expected
     * total for 8 attempts is 63.5 s) and never schedules past it. */
    int cut = 0;
    for (int i = 0; i < 2000; i++) {
        int attempts = run_schedule(&policy, t0, t0 + 20000, &state, &last);
        cr_assert_leq(last, t0 + 20000);
        cr_assert_geq(attempts, 1);
        cr_assert_leq(attempts, policy.max_attempts);
        if (attempts < policy.max_attempts)
            cut++;
    }
    cr_expect_gt(cut, 1000, "the deadline should cut most schedules short, cut %d of 2000", cut);

    /* A deadline already past: no retry at all. */
    cr_assert_eq(run_schedule(&policy, t0, t0 - 1, &state, &last), 1);
    cr_assert_eq(last, t0);
}

Test(backoff_schedule, capped_waits_cycle_through_the_largest_retry_tier)
{
    /* Late attempts draw up to an hour; the tiers stop at 30 minutes, so
     * such a wait is planned into the 30m tier and cycles (crm/delay.h). */
    uint64_t state = 99;
    int long_waits = 0;
    for (int i = 0; i < SAMPLES / 10; i++) {
        int64_t d = cmn_backoff_delay_ms(&policy, 20, next_rnd(&state), 0);
        size_t tier = 0;
        cr_assert_eq(cmn_delay_choose_tier(CMN_DELAY_RETRY, d, &tier), 0);
        if (d >= 1800000 - CMN_DELAY_SLACK_MS) {
            cr_assert_eq(tier, 3, "%lld ms", (long long)d);
            long_waits++;
        }
    }
    /* Half of the draws on [0, 1 h] are at least 30 min. */
    cr_expect(fabs((double)long_waits / (SAMPLES / 10) - 0.5) < 0.02, "%d long waits", long_waits);
}
