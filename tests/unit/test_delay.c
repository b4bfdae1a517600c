/* test_delay.c - delay tiers (crm/delay.h): tier choice, topic names,
 * headers, the tier consumer's decisions and the partition pause plan. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "crm/channel.h"
#include "crm/delay.h"
#include "crm/err.h"

#define SEC INT64_C(1000)
#define MIN (60 * SEC)
#define HOUR (60 * MIN)

static const int64_t NOW = INT64_C(1795309323000); /* 2026-11-22T... */

static size_t tier_for(cmn_delay_kind_t kind, int64_t wait)
{
    size_t t = 99;
    cr_assert_eq(cmn_delay_choose_tier(kind, wait, &t), 0);
    return t;
}

/* ---------------------------------------------------------------- tiers */

Test(delay, tier_tables)
{
    size_t n = 0;
    const cmn_delay_tier_t *r = cmn_delay_tiers(CMN_DELAY_RETRY, &n);
    cr_assert_eq(n, 4);
    cr_assert_str_eq(r[0].name, "5s");
    cr_assert_eq(r[0].ms, 5 * SEC);
    cr_assert_str_eq(r[1].name, "30s");
    cr_assert_eq(r[1].ms, 30 * SEC);
    cr_assert_str_eq(r[2].name, "5m");
    cr_assert_eq(r[2].ms, 5 * MIN);
    cr_assert_str_eq(r[3].name, "30m");
    cr_assert_eq(r[3].ms, 30 * MIN);
    const cmn_delay_tier_t *d = cmn_delay_tiers(CMN_DELAY_DEFER, &n);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(d[0].name, "1m");
    cr_assert_eq(d[0].ms, MIN);
    cr_assert_str_eq(d[1].name, "10m");
    cr_assert_eq(d[1].ms, 10 * MIN);
    cr_assert_str_eq(d[2].name, "1h");
    cr_assert_eq(d[2].ms, HOUR);
    n = 7;
    cr_assert_null(cmn_delay_tiers((cmn_delay_kind_t)5, &n));
    cr_assert_eq(n, 0);
}

Test(delay, tier_choice_at_boundaries)
{
    /* The largest tier no longer than the wait plus the 1 s slack. */
    const int64_t S = CMN_DELAY_SLACK_MS;
    cr_assert_eq(tier_for(CMN_DELAY_RETRY, 1), 0, "shorter than every tier: the smallest");
    cr_assert_eq(tier_for(CMN_DELAY_RETRY, 5 * SEC), 0);
    cr_assert_eq(tier_for(CMN_DELAY_RETRY, 30 * SEC - S - 1), 0);
    cr_assert_eq(tier_for(CMN_DELAY_RETRY, 30 * SEC - S), 1);
    cr_assert_eq(tier_for(CMN_DELAY_RETRY, 30 * SEC), 1);
    cr_assert_eq(tier_for(CMN_DELAY_RETRY, 5 * MIN - S - 1), 1);
    cr_assert_eq(tier_for(CMN_DELAY_RETRY, 5 * MIN - S), 2);
    cr_assert_eq(tier_for(CMN_DELAY_RETRY, 5 * MIN), 2);
    cr_assert_eq(tier_for(CMN_DELAY_RETRY, 30 * MIN - S - 1), 2);
    cr_assert_eq(tier_for(CMN_DELAY_RETRY, 30 * MIN - S), 3);
    cr_assert_eq(tier_for(CMN_DELAY_RETRY, 30 * MIN), 3);
    cr_assert_eq(tier_for(CMN_DELAY_RETRY, 3 * HOUR), 3, "longer than every tier: the largest");
    cr_assert_eq(tier_for(CMN_DELAY_RETRY, INT64_MAX), 3);
    cr_assert_eq(tier_for(CMN_DELAY_RETRY, 0), 0);
    cr_assert_eq(tier_for(CMN_DELAY_RETRY, INT64_MIN), 0);

    cr_assert_eq(tier_for(CMN_DELAY_DEFER, 20 * SEC), 0);
    cr_assert_eq(tier_for(CMN_DELAY_DEFER, MIN), 0);
    cr_assert_eq(tier_for(CMN_DELAY_DEFER, 10 * MIN - S - 1), 0);
    cr_assert_eq(tier_for(CMN_DELAY_DEFER, 10 * MIN - S), 1);
    cr_assert_eq(tier_for(CMN_DELAY_DEFER, HOUR - S - 1), 1);
    cr_assert_eq(tier_for(CMN_DELAY_DEFER, HOUR - S), 2);
    cr_assert_eq(tier_for(CMN_DELAY_DEFER, 11 * HOUR), 2);

    size_t t = 0;
    cr_assert_eq(cmn_delay_choose_tier((cmn_delay_kind_t)9, 1000, &t), CMN_ERR_INVALID);
    cr_assert_eq(cmn_delay_choose_tier(CMN_DELAY_RETRY, 1000, NULL), CMN_ERR_INVALID);
}

/* --------------------------------------------------------------- topics */

Test(delay, topic_and_target_names)
{
    char buf[CMN_DELAY_TOPIC_MAX];
    cr_assert_eq(cmn_delay_topic_name(CMN_DELAY_RETRY, CMN_CHANNEL_SMS, 0, buf, sizeof buf), 0);
    cr_assert_str_eq(buf, "crm.retry.sms.5s");
    cr_assert_eq(cmn_delay_topic_name(CMN_DELAY_RETRY, CMN_CHANNEL_WHATSAPP, 3, buf, sizeof buf), 0);
    cr_assert_str_eq(buf, "crm.retry.whatsapp.30m");
    cr_assert_eq(cmn_delay_topic_name(CMN_DELAY_RETRY, CMN_CHANNEL_EMAIL, 2, buf, sizeof buf), 0);
    cr_assert_str_eq(buf, "crm.retry.email.5m");
    cr_assert_eq(cmn_delay_topic_name(CMN_DELAY_DEFER, CMN_CHANNEL_NONE, 1, buf, sizeof buf), 0);
    cr_assert_str_eq(buf, "crm.defer.10m");
    /* The channel does not matter for deferrals: there is one defer family. */
    cr_assert_eq(cmn_delay_topic_name(CMN_DELAY_DEFER, CMN_CHANNEL_SMS, 2, buf, sizeof buf), 0);
    cr_assert_str_eq(buf, "crm.defer.1h");

    cr_assert_eq(cmn_delay_topic_name(CMN_DELAY_RETRY, CMN_CHANNEL_NONE, 0, buf, sizeof buf), CMN_ERR_INVALID);
    cr_assert_eq(cmn_delay_topic_name(CMN_DELAY_RETRY, CMN_CHANNEL_SMS, 4, buf, sizeof buf), CMN_ERR_INVALID);
    cr_assert_eq(cmn_delay_topic_name(CMN_DELAY_DEFER, CMN_CHANNEL_NONE, 3, buf, sizeof buf), CMN_ERR_INVALID);
    cr_assert_eq(cmn_delay_topic_name(CMN_DELAY_RETRY, CMN_CHANNEL_SMS, 0, buf, 16), CMN_ERR_OVERFLOW);
    cr_assert_eq(cmn_delay_topic_name(CMN_DELAY_RETRY, CMN_CHANNEL_SMS, 0, buf, 17), 0);

    cr_assert_eq(cmn_delay_target_name(CMN_DELAY_RETRY, CMN_CHANNEL_EMAIL, buf, sizeof buf), 0);
    cr_assert_str_eq(buf, "crm.send.email");
    cr_assert_eq(cmn_delay_target_name(CMN_DELAY_DEFER, CMN_CHANNEL_NONE, buf, sizeof buf), 0);
    cr_assert_str_eq(buf, "crm.requests");
    cr_assert_eq(cmn_delay_target_name(CMN_DELAY_RETRY, CMN_CHANNEL_NONE, buf, sizeof buf), CMN_ERR_INVALID);
    cr_assert_eq(cmn_delay_target_name((cmn_delay_kind_t)3, CMN_CHANNEL_SMS, buf, sizeof buf), CMN_ERR_INVALID);

    /* Every topic the names produce fits the documented buffer. */
    for (int c = 0; c < CMN_CHANNEL__COUNT; c++) {
        for (size_t t = 0; t < 4; t++) {
            cr_assert_eq(cmn_delay_topic_name(CMN_DELAY_RETRY, (cmn_channel_t)c, t, buf, sizeof buf), 0);
        }
    }
}

Test(delay, topic_parse_round_trip)
{
    char buf[CMN_DELAY_TOPIC_MAX];
    cmn_delay_topic_t t;
    for (int c = 0; c < CMN_CHANNEL__COUNT; c++) {
        for (size_t i = 0; i < 4; i++) {
            cr_assert_eq(cmn_delay_topic_name(CMN_DELAY_RETRY, (cmn_channel_t)c, i, buf, sizeof buf), 0);
            cr_assert_eq(cmn_delay_topic_parse(buf, &t), 0, "%s", buf);
            cr_assert_eq(t.kind, CMN_DELAY_RETRY);
            cr_assert_eq(t.channel, (cmn_channel_t)c);
            cr_assert_eq(t.tier, i);
            cr_assert_eq(t.tier_ms, cmn_delay_tiers(CMN_DELAY_RETRY, NULL)[i].ms);
        }
    }
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(cmn_delay_topic_name(CMN_DELAY_DEFER, CMN_CHANNEL_NONE, i, buf, sizeof buf), 0);
        cr_assert_eq(cmn_delay_topic_parse(buf, &t), 0, "%s", buf);
        cr_assert_eq(t.kind, CMN_DELAY_DEFER);
        cr_assert_eq(t.channel, CMN_CHANNEL_NONE);
        cr_assert_eq(t.tier, i);
    }
    const char *bad[] = {"crm.defer.5s",        "crm.retry.sms.1h", "crm.retry.fax.5s", "crm.retry.sms",
                         "crm.retry.sms.5s.x", "crm.defer.1m ",    "crm.send.sms",     "crm.retry..5s",
                         "crm.defer.",          "",                 "crm.retry.SMS.5s",
                         "crm.retry.whatsapp_long_name.5s"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_expect_eq(cmn_delay_topic_parse(bad[i], &t), CMN_ERR_INVALID, "\"%s\" should be refused", bad[i]);
    }
    cr_assert_eq(cmn_delay_topic_parse(NULL, &t), CMN_ERR_INVALID);
}

/* ------------------------------------------------------------------ hop */

Test(delay, plan_hop)
{
    cmn_delay_hop_t h;
    cr_assert_eq(cmn_delay_plan_hop(CMN_DELAY_RETRY, CMN_CHANNEL_SMS, NOW, NOW + 7 * SEC, &h), 0);
    cr_assert_eq(h.direct, 0);
    cr_assert_eq(h.tier, 0);
    cr_assert_str_eq(h.topic, "crm.retry.sms.5s");
    cr_assert_str_eq(h.target, "crm.send.sms");
    cr_assert_str_eq(h.due_at, "1795309330000");

    cr_assert_eq(cmn_delay_plan_hop(CMN_DELAY_DEFER, CMN_CHANNEL_NONE, NOW, NOW + 9 * HOUR, &h), 0);
    cr_assert_str_eq(h.topic, "crm.defer.1h");
    cr_assert_str_eq(h.target, "crm.requests");

    /* Already due (or due exactly now): straight to the target, no tier. */
    cr_assert_eq(cmn_delay_plan_hop(CMN_DELAY_RETRY, CMN_CHANNEL_EMAIL, NOW, NOW, &h), 0);
    cr_assert_eq(h.direct, 1);
    cr_assert_str_eq(h.topic, "crm.send.email");
    cr_assert_str_eq(h.target, "crm.send.email");
    cr_assert_eq(cmn_delay_plan_hop(CMN_DELAY_DEFER, CMN_CHANNEL_NONE, NOW, NOW - HOUR, &h), 0);
    cr_assert_eq(h.direct, 1);
    cr_assert_str_eq(h.topic, "crm.requests");

    /* Invalid: no channel for a retry, absurd due times. The output is zeroed. */
    cr_assert_eq(cmn_delay_plan_hop(CMN_DELAY_RETRY, CMN_CHANNEL_NONE, NOW, NOW + SEC, &h), CMN_ERR_INVALID);
    cr_assert_str_eq(h.topic, "");
    cr_assert_eq(cmn_delay_plan_hop(CMN_DELAY_DEFER, CMN_CHANNEL_NONE, NOW, 0, &h), CMN_ERR_INVALID);
    cr_assert_eq(cmn_delay_plan_hop(CMN_DELAY_DEFER, CMN_CHANNEL_NONE, NOW, -5, &h), CMN_ERR_INVALID);
    cr_assert_eq(cmn_delay_plan_hop(CMN_DELAY_DEFER, CMN_CHANNEL_NONE, NOW, CMN_DELAY_MAX_DUE_AT_MS + 1, &h),
                 CMN_ERR_INVALID);
    cr_assert_eq(cmn_delay_plan_hop(CMN_DELAY_DEFER, CMN_CHANNEL_NONE, NOW, CMN_DELAY_MAX_DUE_AT_MS, &h), 0);
    cr_assert_str_eq(h.due_at, "253402300799999");
    cr_assert_eq(cmn_delay_plan_hop(CMN_DELAY_DEFER, CMN_CHANNEL_NONE, NOW, NOW + 1, NULL), CMN_ERR_INVALID);
}

/* -------------------------------------------------------------- headers */

static cmn_delay_topic_t topic(const char *name)
{
    cmn_delay_topic_t t;
    cr_assert_eq(cmn_delay_topic_parse(name, &t), 0, "%s", name);
    return t;
}

static int parse_hdrs(const char *source, const char *due, const char *target, cmn_delay_headers_t *out,
                      char *reason, size_t reasonlen)
{
    cmn_delay_topic_t t = topic(source);
    return cmn_delay_headers_parse(&t, due, due != NULL ? strlen(due) : 0, target,
                                   target != NULL ? strlen(target) : 0, out, reason, reasonlen);
}

Test(delay, header_round_trip)
{
    cmn_delay_hop_t h;
    cmn_delay_headers_t got;
    char reason[160];
    const int64_t waits[] = {1, 5 * SEC, 42 * MIN, 3 * HOUR, 400 * 24 * HOUR};
    for (size_t i = 0; i < sizeof waits / sizeof waits[0]; i++) {
        for (int kind = 0; kind < 2; kind++) {
            cmn_channel_t ch = kind == CMN_DELAY_RETRY ? CMN_CHANNEL_WHATSAPP : CMN_CHANNEL_NONE;
            cr_assert_eq(cmn_delay_plan_hop((cmn_delay_kind_t)kind, ch, NOW, NOW + waits[i], &h), 0);
            cr_assert_eq(parse_hdrs(h.topic, h.due_at, h.target, &got, reason, sizeof reason), 0, "%s: %s",
                         h.topic, reason);
            cr_assert_eq(got.due_at_ms, NOW + waits[i]);
            cr_assert_str_eq(got.target, h.target);
            cr_assert_str_eq(reason, "");
        }
    }
}

Test(delay, bad_headers)
{
    cmn_delay_headers_t got;
    char reason[160];
    struct {
        const char *source, *due, *target, *reason;
    } cases[] = {
        {"crm.retry.sms.5s", NULL, "crm.send.sms", "x-crm-due-at: is missing"},
        {"crm.retry.sms.5s", "", "crm.send.sms", "x-crm-due-at: is empty"},
        {"crm.retry.sms.5s", "soon", "crm.send.sms", "x-crm-due-at: must be epoch milliseconds as decimal digits"},
        {"crm.retry.sms.5s", "-1795309323000", "crm.send.sms",
         "x-crm-due-at: must be epoch milliseconds as decimal digits"},
        {"crm.retry.sms.5s", "+1795309323000", "crm.send.sms",
         "x-crm-due-at: must be epoch milliseconds as decimal digits"},
        {"crm.retry.sms.5s", " 1795309323000", "crm.send.sms",
         "x-crm-due-at: must be epoch milliseconds as decimal digits"},
        {"crm.retry.sms.5s", "1795309323000.5", "crm.send.sms",
         "x-crm-due-at: must be epoch milliseconds as decimal digits"},
        {"crm.retry.sms.5s", "2026-11-22T10:00:00Z", "crm.send.sms",
         "x-crm-due-at: must be epoch milliseconds as decimal digits"},
        {"crm.retry.sms.5s", "0", "crm.send.sms", "x-crm-due-at: must be a positive number without leading zeros"},
        {"crm.retry.sms.5s", "01795309323000", "crm.send.sms",
         "x-crm-due-at: must be a positive number without leading zeros"},
        {"crm.retry.sms.5s", "253402300800000", "crm.send.sms", "x-crm-due-at: is after year 9999"},
        {"crm.retry.sms.5s", "99999999999999999999999", "crm.send.sms", "x-crm-due-at: is after year 9999"},
        {"crm.retry.sms.5s", "1795309323000", NULL, "x-crm-target: is missing"},
        {"crm.retry.sms.5s", "1795309323000", "", "x-crm-target: must be crm.send.sms for a record on this topic"},
        /* A retry of an SMS cannot be steered to WhatsApp or back to the router. */
        {"crm.retry.sms.5s", "1795309323000", "crm.send.whatsapp",
         "x-crm-target: must be crm.send.sms for a record on this topic"},
        {"crm.retry.sms.30m", "1795309323000", "crm.requests",
         "x-crm-target: must be crm.send.sms for a record on this topic"},
        /* A defer tier also takes crm.send.<channel> (a receipt watch), but
         * only a real channel's exact spelling. */
        {"crm.defer.1h", "1795309323000", "crm.send.fax",
         "x-crm-target: must be crm.requests or crm.send.<channel> for a record on this topic"},
        {"crm.defer.1h", "1795309323000", "crm.send.SMS",
         "x-crm-target: must be crm.requests or crm.send.<channel> for a record on this topic"},
        {"crm.defer.1h", "1795309323000", "crm.send.sms ",
         "x-crm-target: must be crm.requests or crm.send.<channel> for a record on this topic"},
        {"crm.defer.1h", "1795309323000", "crm.send.",
         "x-crm-target: must be crm.requests or crm.send.<channel> for a record on this topic"},
        {"crm.defer.1h", "1795309323000", "crm.retry.sms.5s",
         "x-crm-target: must be crm.requests or crm.send.<channel> for a record on this topic"},
        {"crm.defer.10m", "1795309323000", "crm.dlq",
         "x-crm-target: must be crm.requests or crm.send.<channel> for a record on this topic"},
        {"crm.defer.1m", "1795309323000", "crm.requests ",
         "x-crm-target: must be crm.requests or crm.send.<channel> for a record on this topic"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        got.due_at_ms = 77;
        int rc = parse_hdrs(cases[i].source, cases[i].due, cases[i].target, &got, reason, sizeof reason);
        cr_expect_eq(rc, CMN_ERR_INVALID, "case %zu should fail", i);
        cr_expect_str_eq(reason, cases[i].reason, "case %zu", i);
        cr_expect_eq(got.due_at_ms, 0, "case %zu: output zeroed", i);
    }
    /* The largest accepted value, and values are bytes, not C strings: a NUL
     * inside the header is garbage, and the length is what counts. */
    cr_assert_eq(parse_hdrs("crm.defer.1m", "253402300799999", "crm.requests", &got, reason, sizeof reason), 0);
    cmn_delay_topic_t t = topic("crm.defer.1m");
    cr_assert_eq(cmn_delay_headers_parse(&t, "17\0" "95", 5, "crm.requests", 12, &got, reason, sizeof reason),
                 CMN_ERR_INVALID);
    cr_assert_eq(cmn_delay_headers_parse(&t, "1795309323000xyz", 13, "crm.requestsXYZ", 12, &got, reason,
                                         sizeof reason),
                 0);
    cr_assert_eq(got.due_at_ms, NOW);
    /* A small reason buffer truncates instead of overflowing; NULL is fine. */
    char tiny[8];
    cr_assert_eq(parse_hdrs("crm.defer.1m", NULL, "crm.requests", &got, tiny, sizeof tiny), CMN_ERR_INVALID);
    cr_assert_str_eq(tiny, "x-crm-d");
    cr_assert_eq(parse_hdrs("crm.defer.1m", NULL, "crm.requests", &got, NULL, 0), CMN_ERR_INVALID);
    cr_assert_eq(cmn_delay_headers_parse(NULL, "1", 1, "crm.requests", 12, &got, reason, sizeof reason),
                 CMN_ERR_INVALID);
}

Test(delay, defer_tiers_take_send_targets_as_alternates)
{
    cmn_delay_headers_t got;
    char reason[160];
    cr_assert_eq(parse_hdrs("crm.defer.1m", "1795309323000", "crm.requests", &got, reason, sizeof reason), 0);
    cr_assert_eq(got.alternate, 0, "the family's own target is not an alternate");
    const char *targets[] = {"crm.send.email", "crm.send.sms", "crm.send.whatsapp"};
    for (size_t i = 0; i < 3; i++) {
        got.alternate = 0;
        cr_assert_eq(parse_hdrs("crm.defer.10m", "1795309323000", targets[i], &got, reason, sizeof reason), 0, "%s: %s",
                     targets[i], reason);
        cr_assert_eq(got.alternate, 1, "%s", targets[i]);
        cr_assert_str_eq(got.target, targets[i]);
        cr_assert_eq(got.due_at_ms, NOW);
    }
    /* Retry tiers stay strict: their channel's send topic only. */
    cr_assert_eq(parse_hdrs("crm.retry.sms.5s", "1795309323000", "crm.send.sms", &got, reason, sizeof reason), 0);
    cr_assert_eq(got.alternate, 0);
    cr_assert_eq(parse_hdrs("crm.retry.sms.5s", "1795309323000", "crm.send.email", &got, reason, sizeof reason),
                 CMN_ERR_INVALID);
    cr_assert_eq(got.alternate, 0, "output zeroed");
}

Test(delay, plan_watch_always_goes_through_a_defer_tier)
{
    cmn_delay_hop_t h;
    cmn_delay_headers_t got;
    char reason[160];
    struct {
        int64_t wait;
        const char *topic;
    } cases[] = {
        {-5 * SEC, "crm.defer.1m"}, /* already due: still through a tier, never direct */
        {0, "crm.defer.1m"},
        {15 * SEC, "crm.defer.1m"},
        {2 * MIN, "crm.defer.1m"},
        {10 * MIN, "crm.defer.10m"},
        {24 * HOUR, "crm.defer.1h"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert_eq(cmn_delay_plan_watch(NOW, NOW + cases[i].wait, CMN_CHANNEL_EMAIL, &h), 0);
        cr_assert_eq(h.direct, 0, "case %zu", i);
        cr_assert_str_eq(h.topic, cases[i].topic, "case %zu", i);
        cr_assert_str_eq(h.target, "crm.send.email");
        /* What it plans, the consumer accepts (as an alternate). */
        cr_assert_eq(parse_hdrs(h.topic, h.due_at, h.target, &got, reason, sizeof reason), 0, "%s", reason);
        cr_assert_eq(got.due_at_ms, NOW + cases[i].wait);
        cr_assert_eq(got.alternate, 1);
    }
    cr_assert_eq(cmn_delay_plan_watch(NOW, NOW + SEC, CMN_CHANNEL_WHATSAPP, &h), 0);
    cr_assert_str_eq(h.target, "crm.send.whatsapp");
    cr_assert_eq(cmn_delay_plan_watch(NOW, NOW + SEC, CMN_CHANNEL_NONE, &h), CMN_ERR_INVALID);
    cr_assert_str_eq(h.topic, "", "zeroed on error");
    cr_assert_eq(cmn_delay_plan_watch(NOW, 0, CMN_CHANNEL_SMS, &h), CMN_ERR_INVALID);
    cr_assert_eq(cmn_delay_plan_watch(NOW, CMN_DELAY_MAX_DUE_AT_MS + 1, CMN_CHANNEL_SMS, &h), CMN_ERR_INVALID);
    cr_assert_eq(cmn_delay_plan_watch(NOW, NOW, CMN_CHANNEL_SMS, NULL), CMN_ERR_INVALID);
}

/* ------------------------------------------------------ consumer steps */

Test(delay, next_step_decisions)
{
    cmn_delay_topic_t t5m = topic("crm.retry.email.5m");
    cmn_delay_step_t s;

    /* Due: deliver, whatever the tier and timestamp. */
    cr_assert_eq(cmn_delay_next_step(&t5m, NOW, NOW, NOW, &s), 0);
    cr_assert_eq(s.action, CMN_DELAY_DELIVER);
    cr_assert_eq(cmn_delay_next_step(&t5m, NOW - HOUR, NOW - MIN, NOW, &s), 0);
    cr_assert_eq(s.action, CMN_DELAY_DELIVER);

    /* Entered just now, due in 5 min 20 s: held for the tier (5 min). */
    cr_assert_eq(cmn_delay_next_step(&t5m, NOW, NOW + 5 * MIN + 20 * SEC, NOW, &s), 0);
    cr_assert_eq(s.action, CMN_DELAY_PAUSE);
    cr_assert_eq(s.resume_at_ms, NOW + 5 * MIN);

    /* Due sooner than the tier would hold it: released at its due time. */
    cr_assert_eq(cmn_delay_next_step(&t5m, NOW, NOW + 2 * MIN, NOW + SEC, &s), 0);
    cr_assert_eq(s.action, CMN_DELAY_PAUSE);
    cr_assert_eq(s.resume_at_ms, NOW + 2 * MIN);

    /* Held for the tier and still 20 s to go: the remaining wait is longer
     * than the tier held it, so it is re-delayed, into the 5s tier (the 30s
     * tier would need at least 29 s left). */
    cr_assert_eq(cmn_delay_next_step(&t5m, NOW, NOW + 5 * MIN + 20 * SEC, NOW + 5 * MIN, &s), 0);
    cr_assert_eq(s.action, CMN_DELAY_REDELAY);
    cr_assert_eq(s.tier, 0);
    cr_assert_eq(cmn_delay_next_step(&t5m, NOW, NOW + 40 * MIN, NOW + 5 * MIN + 30, &s), 0);
    cr_assert_eq(s.action, CMN_DELAY_REDELAY);
    cr_assert_eq(s.tier, 3, "35 min left: the 30m tier");

    /* Unknown timestamp: released at once, re-delayed so the copy gets one. */
    cr_assert_eq(cmn_delay_next_step(&t5m, -1, NOW + 7 * MIN, NOW, &s), 0);
    cr_assert_eq(s.action, CMN_DELAY_REDELAY);
    cr_assert_eq(s.tier, 2);

    /* A producer clock far ahead: never held past the due time. */
    cr_assert_eq(cmn_delay_next_step(&t5m, NOW + 10 * HOUR, NOW + 6 * MIN, NOW, &s), 0);
    cr_assert_eq(s.action, CMN_DELAY_PAUSE);
    cr_assert_eq(s.resume_at_ms, NOW + 6 * MIN);

    cr_assert_eq(cmn_delay_next_step(NULL, NOW, NOW, NOW, &s), CMN_ERR_INVALID);
    cr_assert_eq(cmn_delay_next_step(&t5m, NOW, NOW, NOW, NULL), CMN_ERR_INVALID);
    cr_assert_eq(cmn_delay_next_step(&t5m, NOW, 0, NOW, &s), CMN_ERR_INVALID);
}

/* Simulates a message through the tiers the way the consumers will move it:
 * produce to the planned topic at `now` (its Kafka timestamp), pause until
 * the step says, spend `lag` ms handling it, re-delay or deliver. Returns the
 * number of tier hops and writes the topics taken into path (comma list) and
 * the delivery instant into *delivered. */
static int simulate(cmn_delay_kind_t kind, cmn_channel_t ch, int64_t start, int64_t due, int64_t lag, char *path,
                    size_t pathlen, int64_t *delivered)
{
    cmn_delay_hop_t h;
    int64_t now = start;
    int hops = 0;
    path[0] = '\0';
    cr_assert_eq(cmn_delay_plan_hop(kind, ch, now, due, &h), 0);
    while (!h.direct) {
        cmn_delay_topic_t t = topic(h.topic);
        cmn_delay_headers_t hd;
        char reason[128];
        int64_t entered = now;
        hops++;
        cr_assert_lt(hops, 1000, "runaway cycle");
        snprintf(path + strlen(path), pathlen - strlen(path), "%s%s", path[0] != '\0' ? "," : "",
                 cmn_delay_tiers(kind, NULL)[t.tier].name);
        cr_assert_eq(cmn_delay_headers_parse(&t, h.due_at, strlen(h.due_at), h.target, strlen(h.target), &hd,
                                             reason, sizeof reason),
                     0, "%s", reason);
        cmn_delay_step_t s;
        cr_assert_eq(cmn_delay_next_step(&t, entered, hd.due_at_ms, now, &s), 0);
        if (s.action == CMN_DELAY_PAUSE) {
            /* Never held longer than the tier, never past the due time. */
            cr_assert_leq(s.resume_at_ms, entered + t.tier_ms);
            cr_assert_leq(s.resume_at_ms, hd.due_at_ms);
            now = s.resume_at_ms;
        }
        now += lag;
        cr_assert_eq(cmn_delay_next_step(&t, entered, hd.due_at_ms, now, &s), 0);
        cr_assert_neq(s.action, CMN_DELAY_PAUSE, "a released record is never paused again");
        if (s.action == CMN_DELAY_DELIVER)
            break;
        cr_assert_eq(cmn_delay_plan_hop(kind, ch, now, hd.due_at_ms, &h), 0);
        cr_assert_eq(h.tier, s.tier, "plan_hop and next_step agree on the tier");
    }
    *delivered = now;
    return hops;
}

Test(delay, three_hour_waits_cycle_through_the_largest_tier)
{
    char path[512];
    int64_t delivered = 0;
    /* A deferral of 3 h: three times through crm.defer.1h, delivered on time. */
    cr_assert_eq(simulate(CMN_DELAY_DEFER, CMN_CHANNEL_NONE, NOW, NOW + 3 * HOUR, 0, path, sizeof path, &delivered),
                 3);
    cr_assert_str_eq(path, "1h,1h,1h");
    cr_assert_eq(delivered, NOW + 3 * HOUR);
    /* The same with 40 ms of handling per hop: the slack keeps it at three
     * hops instead of dropping to 10m and 1m tiers for the last few ms. */
    cr_assert_eq(
        simulate(CMN_DELAY_DEFER, CMN_CHANNEL_NONE, NOW, NOW + 3 * HOUR, 40, path, sizeof path, &delivered), 3);
    cr_assert_str_eq(path, "1h,1h,1h");
    cr_assert_geq(delivered, NOW + 3 * HOUR);
    cr_assert_leq(delivered, NOW + 3 * HOUR + 3 * 40);
    /* A retry wait of 3 h: six times through the 30m tier. */
    cr_assert_eq(simulate(CMN_DELAY_RETRY, CMN_CHANNEL_SMS, NOW, NOW + 3 * HOUR, 25, path, sizeof path, &delivered),
                 6);
    cr_assert_str_eq(path, "30m,30m,30m,30m,30m,30m");
    cr_assert_leq(delivered, NOW + 3 * HOUR + 6 * 25);
    /* 1 h 25 min: 1h, then 10m twice, then 1m five times. */
    cr_assert_eq(simulate(CMN_DELAY_DEFER, CMN_CHANNEL_NONE, NOW, NOW + HOUR + 25 * MIN, 0, path, sizeof path,
                          &delivered),
                 8);
    cr_assert_str_eq(path, "1h,10m,10m,1m,1m,1m,1m,1m");
    cr_assert_eq(delivered, NOW + HOUR + 25 * MIN);
    /* A 7 s retry: the 5s tier, then (2 s left) the 5s tier again, released
     * at its due time. */
    cr_assert_eq(simulate(CMN_DELAY_RETRY, CMN_CHANNEL_EMAIL, NOW, NOW + 7 * SEC, 0, path, sizeof path, &delivered),
                 2);
    cr_assert_str_eq(path, "5s,5s");
    cr_assert_eq(delivered, NOW + 7 * SEC);
}

/* ------------------------------------------------------------ pause plan */

Test(delay, pause_plan)
{
    cmn_delay_partition_t heads[5] = {
        {1, NOW + 30 * SEC}, /* not ready: pause */
        {0, 0},              /* empty: keep polling */
        {1, NOW},            /* ready exactly now: handle it */
        {1, NOW + 5 * SEC},  /* not ready, earliest */
        {1, NOW - MIN},      /* overdue: handle it */
    };
    unsigned char pause[5];
    memset(pause, 9, sizeof pause);
    cmn_delay_pause_plan_t plan;
    cr_assert_eq(cmn_delay_pause_plan(heads, 5, NOW, pause, &plan), 0);
    cr_assert_eq(pause[0], 1);
    cr_assert_eq(pause[1], 0);
    cr_assert_eq(pause[2], 0);
    cr_assert_eq(pause[3], 1);
    cr_assert_eq(pause[4], 0);
    cr_assert_eq(plan.n_paused, 2);
    cr_assert_eq(plan.resume_at_ms, NOW + 5 * SEC);
    cr_assert_eq(cmn_delay_poll_timeout_ms(&plan, NOW, 1000), 1000, "capped by max");
    cr_assert_eq(cmn_delay_poll_timeout_ms(&plan, NOW, 60000), 5000, "sleeps until the earliest head");
    cr_assert_eq(cmn_delay_poll_timeout_ms(&plan, NOW + 5 * SEC, 60000), 0);
    cr_assert_eq(cmn_delay_poll_timeout_ms(&plan, NOW + 6 * SEC, 60000), 0);

    /* Everything caught up: nothing paused, poll with the full timeout. */
    cmn_delay_partition_t idle[2] = {{0, 0}, {0, NOW + HOUR}};
    cr_assert_eq(cmn_delay_pause_plan(idle, 2, NOW, pause, &plan), 0);
    cr_assert_eq(plan.n_paused, 0);
    cr_assert_eq(plan.resume_at_ms, 0);
    cr_assert_eq(pause[0] + pause[1], 0);
    cr_assert_eq(cmn_delay_poll_timeout_ms(&plan, NOW, 500), 500);
    cr_assert_eq(cmn_delay_poll_timeout_ms(NULL, NOW, 500), 500);
    cr_assert_eq(cmn_delay_poll_timeout_ms(&plan, NOW, -3), 0);

    /* Every partition waiting: all paused, one wake-up at the earliest. */
    cmn_delay_partition_t waiting[3] = {{1, NOW + HOUR}, {1, NOW + MIN}, {1, NOW + 10 * MIN}};
    cr_assert_eq(cmn_delay_pause_plan(waiting, 3, NOW, pause, &plan), 0);
    cr_assert_eq(plan.n_paused, 3);
    cr_assert_eq(plan.resume_at_ms, NOW + MIN);
    cr_assert_eq(cmn_delay_poll_timeout_ms(&plan, NOW, INT64_MAX), MIN);

    cr_assert_eq(cmn_delay_pause_plan(NULL, 0, NOW, NULL, &plan), 0);
    cr_assert_eq(plan.n_paused, 0);
    cr_assert_eq(cmn_delay_pause_plan(NULL, 1, NOW, pause, &plan), CMN_ERR_INVALID);
    cr_assert_eq(cmn_delay_pause_plan(heads, 5, NOW, NULL, &plan), CMN_ERR_INVALID);
    cr_assert_eq(cmn_delay_pause_plan(heads, 5, NOW, pause, NULL), CMN_ERR_INVALID);
}

Test(delay, pause_plan_with_next_step_keeps_order)
{
    /* Records entering one tier partition in order are released in order, so
     * pausing on the head never delays a later record: each head's release
     * is no later than the next record's. */
    cmn_delay_topic_t t = topic("crm.defer.10m");
    int64_t prev_release = 0;
    for (int i = 0; i < 200; i++) {
        int64_t entered = NOW + i * 1234;
        int64_t wait = 10 * MIN - CMN_DELAY_SLACK_MS + (i * 7919) % (50 * MIN); /* any wait given the 10m tier */
        cr_assert_eq(tier_for(CMN_DELAY_DEFER, wait), 1);
        cmn_delay_step_t s;
        cr_assert_eq(cmn_delay_next_step(&t, entered, entered + wait, entered, &s), 0);
        cr_assert_eq(s.action, CMN_DELAY_PAUSE);
        /* Released up to the slack early when chosen by the slack, never later
         * than entered + tier. */
        cr_assert_geq(s.resume_at_ms, entered + 10 * MIN - CMN_DELAY_SLACK_MS);
        cr_assert_leq(s.resume_at_ms, entered + 10 * MIN);
        cr_assert_geq(s.resume_at_ms + CMN_DELAY_SLACK_MS, prev_release, "record %d", i);
        prev_release = s.resume_at_ms;
    }
}
