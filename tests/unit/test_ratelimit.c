/* test_ratelimit.c - token bucket arithmetic and the per-sender limiter
 * (crm/ratelimit.h). Time is injected, so nothing sleeps. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>

#include "crm/err.h"
#include "crm/ratelimit.h"

Test(bucket, starts_full_and_spends_its_burst)
{
    cmn_bucket_t b;
    cmn_bucket_init(&b, 3.0, 1000);
    cr_assert_eq(cmn_bucket_take(&b, 1.0, 3.0, 1000), 0);
    cr_assert_eq(cmn_bucket_take(&b, 1.0, 3.0, 1000), 0);
    cr_assert_eq(cmn_bucket_take(&b, 1.0, 3.0, 1000), 0);
    /* Empty: the next token is one full period away. */
    cr_assert_eq(cmn_bucket_take(&b, 1.0, 3.0, 1000), 1000);
}

Test(bucket, wait_shrinks_as_time_passes_and_nothing_is_taken_meanwhile)
{
    cmn_bucket_t b;
    cmn_bucket_init(&b, 1.0, 0);
    cr_assert_eq(cmn_bucket_take(&b, 1.0, 1.0, 0), 0);
    cr_assert_eq(cmn_bucket_take(&b, 1.0, 1.0, 250), 750);
    cr_assert_eq(cmn_bucket_take(&b, 1.0, 1.0, 500), 500);
    cr_assert_eq(cmn_bucket_take(&b, 1.0, 1.0, 999), 1);
    /* Refused takes did not consume: the token is there exactly on time. */
    cr_assert_eq(cmn_bucket_take(&b, 1.0, 1.0, 1000), 0);
    cr_assert_eq(cmn_bucket_take(&b, 1.0, 1.0, 1000), 1000);
}

Test(bucket, fast_rates_round_waits_up_to_whole_milliseconds)
{
    /* Meta's 80 msg/s: one token every 12.5 ms, so a caller told 12 ms
     * would come back too early and spin. */
    cmn_bucket_t b;
    cmn_bucket_init(&b, 1.0, 0);
    cr_assert_eq(cmn_bucket_take(&b, 80.0, 1.0, 0), 0);
    cr_assert_eq(cmn_bucket_take(&b, 80.0, 1.0, 0), 13);
    cr_assert_eq(cmn_bucket_take(&b, 80.0, 1.0, 13), 0);
    /* A caller that sleeps the whole-millisecond waits it is told gets the
     * full 80 per second from a bucket of a few tokens, which banks the
     * half milliseconds it comes back late... */
    cmn_bucket_init(&b, 4.0, 0);
    int sent = 0;
    int64_t t = 0;
    while (t < 1000) {
        int64_t wait = cmn_bucket_take(&b, 80.0, 4.0, t);
        if (wait == 0)
            sent++;
        t += wait;
    }
    cr_assert(sent >= 80 + 3 && sent <= 80 + 4, "sent %d in one second at 80/s, burst 4", sent);
    /* ...while a bucket of 1 cannot bank anything, by definition, and
     * loses that lateness (why docs/channels.md advises a burst above 1 for
     * fast senders). */
    cmn_bucket_init(&b, 1.0, 0);
    sent = 0;
    t = 0;
    while (t < 1000) {
        int64_t wait = cmn_bucket_take(&b, 80.0, 1.0, t);
        if (wait == 0)
            sent++;
        t += wait;
    }
    cr_assert(sent >= 76 && sent <= 80, "sent %d in one second at 80/s, burst 1", sent);
}

Test(bucket, never_holds_more_than_burst)
{
    cmn_bucket_t b;
    cmn_bucket_init(&b, 2.0, 0);
    cr_assert_eq(cmn_bucket_take(&b, 1.0, 2.0, 0), 0);
    cr_assert_eq(cmn_bucket_take(&b, 1.0, 2.0, 0), 0);
    /* An hour idle refills to 2, not 3600. */
    int64_t t = 3600 * 1000;
    cr_assert_eq(cmn_bucket_take(&b, 1.0, 2.0, t), 0);
    cr_assert_eq(cmn_bucket_take(&b, 1.0, 2.0, t), 0);
    cr_assert_eq(cmn_bucket_take(&b, 1.0, 2.0, t), 1000);
}

Test(bucket, fractional_rate_and_burst)
{
    /* 0.5 msg/s: one every two seconds. */
    cmn_bucket_t b;
    cmn_bucket_init(&b, 1.0, 0);
    cr_assert_eq(cmn_bucket_take(&b, 0.5, 1.0, 0), 0);
    cr_assert_eq(cmn_bucket_take(&b, 0.5, 1.0, 0), 2000);
    cr_assert_eq(cmn_bucket_take(&b, 0.5, 1.0, 1500), 500);
    cr_assert_eq(cmn_bucket_take(&b, 0.5, 1.0, 2000), 0);
    /* burst 1.5 allows one at once, then a half token is already saved. */
    cmn_bucket_init(&b, 1.5, 0);
    cr_assert_eq(cmn_bucket_take(&b, 1.0, 1.5, 0), 0);
    cr_assert_eq(cmn_bucket_take(&b, 1.0, 1.5, 0), 500);
}

Test(bucket, clock_going_backwards_mints_nothing)
{
    cmn_bucket_t b;
    cmn_bucket_init(&b, 1.0, 10000);
    cr_assert_eq(cmn_bucket_take(&b, 1.0, 1.0, 10000), 0);
    /* Seen from the earlier time, the next token is further away, never
     * nearer. */
    cr_assert_eq(cmn_bucket_take(&b, 1.0, 1.0, 5000), 6000);
    cr_assert_eq(cmn_bucket_take(&b, 1.0, 1.0, 10500), 500);
    cr_assert_eq(cmn_bucket_take(&b, 1.0, 1.0, 11000), 0);
}

Test(bucket, wait_only_looks)
{
    cmn_bucket_t b;
    cmn_bucket_init(&b, 1.0, 0);
    cr_assert_eq(cmn_bucket_wait(&b, 1.0, 1.0, 0), 0);
    cr_assert_eq(cmn_bucket_wait(&b, 1.0, 1.0, 0), 0);
    cr_assert_eq(cmn_bucket_take(&b, 1.0, 1.0, 0), 0);
    cr_assert_eq(cmn_bucket_wait(&b, 1.0, 1.0, 400), 600);
    cr_assert_eq(cmn_bucket_wait(&b, 1.0, 1.0, 400), 600);
}

Test(bucket, rejects_bad_parameters)
{
    cmn_bucket_t b;
    cmn_bucket_init(&b, 1.0, 0);
    cr_assert_eq(cmn_bucket_take(&b, 0.0, 1.0, 0), -1);
    cr_assert_eq(cmn_bucket_take(&b, -1.0, 1.0, 0), -1);
    cr_assert_eq(cmn_bucket_take(&b, 1.0, 0.5, 0), -1);
    cr_assert_eq(cmn_bucket_take(NULL, 1.0, 1.0, 0), -1);
    cr_assert_eq(cmn_bucket_wait(&b, 1.0, 0.0, 0), -1);
    /* Nothing was spent by the refused calls. */
    cr_assert_eq(cmn_bucket_take(&b, 1.0, 1.0, 0), 0);
}

Test(ratelimit, keys_are_independent)
{
    char err[128];
    cmn_ratelimit_t *rl = cmn_ratelimit_new(1.0, 1.0, err, sizeof err);
    cr_assert_not_null(rl, "%s", err);
    cr_assert_eq(cmn_ratelimit_take(rl, "+15005550006", 0), 0);
    cr_assert_eq(cmn_ratelimit_take(rl, "+15005550006", 0), 1000);
    cr_assert_eq(cmn_ratelimit_take(rl, "+15005550001", 0), 0, "another sender has its own bucket");
    cr_assert_eq(cmn_ratelimit_take(rl, "+15005550001", 100), 900);
    /* NULL is the shared "" bucket. */
    cr_assert_eq(cmn_ratelimit_take(rl, NULL, 0), 0);
    cr_assert_eq(cmn_ratelimit_take(rl, "", 0), 1000);
    cr_assert_eq(cmn_ratelimit_size(rl), 3);
    cmn_ratelimit_destroy(rl);
}

Test(ratelimit, many_keys_keep_their_state_and_idle_ones_are_forgotten)
{
    char err[128], key[32];
    cmn_ratelimit_t *rl = cmn_ratelimit_new(1.0, 1.0, err, sizeof err);
    cr_assert_not_null(rl, "%s", err);
    /* 5000 senders each spend their token at t=0: the table grows and
     * every one of them stays empty (none may be forgotten while empty). */
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "sender-%d", i);
        cr_assert_eq(cmn_ratelimit_take(rl, key, 0), 0);
    }
    cr_assert_eq(cmn_ratelimit_size(rl), 5000);
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "sender-%d", i);
        cr_assert_eq(cmn_ratelimit_take(rl, key, 10), 990, "%s", key);
    }
    /* Much later, everyone has refilled; new senders arriving make the
     * table sweep the full buckets instead of growing for ever. */
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "later-%d", i);
        cr_assert_eq(cmn_ratelimit_take(rl, key, 60000), 0);
    }
    cr_assert_lt(cmn_ratelimit_size(rl), 10000);
    cr_assert_geq(cmn_ratelimit_size(rl), 5000);
    /* A forgotten sender comes back with a full bucket, as it should. */
    cr_assert_eq(cmn_ratelimit_take(rl, "sender-1", 60000), 0);
    cmn_ratelimit_destroy(rl);
}

Test(ratelimit, constructor_validates)
{
    char err[128] = "";
    cr_assert_null(cmn_ratelimit_new(0.0, 1.0, err, sizeof err));
    cr_assert(err[0] != '\0');
    cr_assert_null(cmn_ratelimit_new(1.0, 0.0, err, sizeof err));
    cr_assert_eq(cmn_ratelimit_take(NULL, "x", 0), CMN_ERR_INVALID);
    cr_assert_eq(cmn_ratelimit_size(NULL), 0);
    cmn_ratelimit_destroy(NULL);
}

typedef struct taker {
    cmn_ratelimit_t *rl;
    int granted;
} taker_t;

static void *take_many(void *p)
{
    taker_t *t = p;
    for (int i = 0; i < 1000; i++) {
        if (cmn_ratelimit_take(t->rl, "shared", 0) == 0)
            t->granted++;
    }
    return NULL;
}

Test(ratelimit, threads_never_get_more_than_the_burst)
{
    char err[128];
    cmn_ratelimit_t *rl = cmn_ratelimit_new(10.0, 50.0, err, sizeof err);
    cr_assert_not_null(rl, "%s", err);
    taker_t t[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        t[i].rl = rl;
        t[i].granted = 0;
        cr_assert_eq(pthread_create(&th[i], NULL, take_many, &t[i]), 0);
    }
    int total = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        total += t[i].granted;
    }
    /* Time stands still at 0, so exactly the burst is handed out. */
    cr_assert_eq(total, 50);
    cmn_ratelimit_destroy(rl);
}
