/* test_quiet_hours.c - quiet hours in the client's time zone (crm/quiet_hours.h).
 *
 * Expected instants are written in UTC and were worked out from the zones'
 * 2026 rules: Europe/Paris CET (+1) / CEST (+2), switching 2026-03-29 01:00Z
 * and 2026-10-25 01:00Z; America/New_York EST (-5) / EDT (-4), switching
 * 2026-03-08 07:00Z and 2026-11-01 06:00Z; Australia/Sydney AEST (+10) /
 * AEDT (+11), summer time ending 2026-04-04 16:00Z and starting 2026-10-03
 * 16:00Z; Asia/Kolkata +05:30 all year. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "crm/channel.h"
#include "crm/err.h"
#include "crm/quiet_hours.h"
#include "crm/time.h"

static int64_t at(const char *rfc3339)
{
    int64_t ms = 0;
    cr_assert_eq(cmn_time_parse_rfc3339(rfc3339, &ms), 0, "bad test timestamp %s", rfc3339);
    return ms;
}

/* Asserts that now (UTC) is inside start-end in tz and that the window ends
 * at want_end (UTC). */
static void expect_inside(const char *tz, const char *start, const char *end, const char *now, const char *want_end)
{
    cmn_quiet_eval_t r;
    int rc = cmn_quiet_hours_eval_str(at(now), tz, start, end, &r);
    cr_assert_eq(rc, 0, "%s %s-%s at %s: rc %d", tz, start, end, now, rc);
    cr_expect_eq(r.inside, 1, "%s %s-%s at %s should be inside", tz, start, end, now);
    char got[40] = "";
    cmn_time_format_rfc3339(r.ends_at_ms, got, sizeof got);
    cr_expect_eq(r.ends_at_ms, at(want_end), "%s %s-%s at %s: ends at %s, want %s", tz, start, end, now, got,
                 want_end);
}

static void expect_outside(const char *tz, const char *start, const char *end, const char *now)
{
    cmn_quiet_eval_t r;
    int rc = cmn_quiet_hours_eval_str(at(now), tz, start, end, &r);
    cr_assert_eq(rc, 0, "%s %s-%s at %s: rc %d", tz, start, end, now, rc);
    cr_expect_eq(r.inside, 0, "%s %s-%s at %s should be outside", tz, start, end, now);
    cr_expect_eq(r.ends_at_ms, 0);
}

/* ------------------------------------------------------------- parsing */

Test(quiet_hours, parse_hhmm)
{
    int m = -1;
    cr_assert_eq(cmn_quiet_parse_hhmm("00:00", &m), 0);
    cr_assert_eq(m, 0);
    cr_assert_eq(cmn_quiet_parse_hhmm("08:05", &m), 0);
    cr_assert_eq(m, 485);
    cr_assert_eq(cmn_quiet_parse_hhmm("23:59", &m), 0);
    cr_assert_eq(m, 1439);
    const char *bad[] = {"24:00", "23:60", "8:00", "08:0", "08:000", "08-00", " 08:00", "08:00 ", "0a:00",
                         "08:00:00", "", "+8:00", "-1:00", "08h00", "12:3\xc2"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        m = -1;
        cr_expect_eq(cmn_quiet_parse_hhmm(bad[i], &m), CMN_ERR_INVALID, "\"%s\" should be refused", bad[i]);
        cr_expect_eq(m, -1, "\"%s\" must not write the output", bad[i]);
    }
    cr_assert_eq(cmn_quiet_parse_hhmm(NULL, &m), CMN_ERR_INVALID);
    cr_assert_eq(cmn_quiet_parse_hhmm("08:00", NULL), CMN_ERR_INVALID);
}

Test(quiet_hours, format_round_trip)
{
    char buf[CMN_QUIET_HHMM_SIZE];
    for (int m = 0; m < 1440; m++) {
        int back = -1;
        cr_assert_eq(cmn_quiet_format_hhmm(m, buf), 0);
        cr_assert_eq(cmn_quiet_parse_hhmm(buf, &back), 0, "%s", buf);
        cr_assert_eq(back, m);
    }
    cr_assert_eq(cmn_quiet_format_hhmm(1440, buf), CMN_ERR_INVALID);
    cr_assert_eq(cmn_quiet_format_hhmm(-1, buf), CMN_ERR_INVALID);
}

Test(quiet_hours, window_parse)
{
    cmn_quiet_window_t w = {-1, -1};
    cr_assert_eq(cmn_quiet_window_parse("21:00", "08:00", &w), 0);
    cr_assert_eq(w.start_min, 21 * 60);
    cr_assert_eq(w.end_min, 8 * 60);
    cr_assert_not(cmn_quiet_window_is_empty(&w));
    cr_assert_eq(cmn_quiet_window_parse("21:00", "8:00", &w), CMN_ERR_INVALID);
    cr_assert_eq(w.start_min, 21 * 60, "a failed parse leaves the window untouched");
    cr_assert_eq(cmn_quiet_window_parse("25:00", "08:00", &w), CMN_ERR_INVALID);
    cr_assert_eq(cmn_quiet_window_parse("10:00", "10:00", &w), 0);
    cr_assert(cmn_quiet_window_is_empty(&w));
    cr_assert_not(cmn_quiet_window_is_empty(NULL));
}

/* ---------------------------------------------------- ordinary windows */

Test(quiet_hours, window_across_midnight)
{
    /* Paris in June is UTC+2: 21:00 local = 19:00Z, 08:00 local = 06:00Z. */
    const char *tz = "Europe/Paris";
    expect_outside(tz, "21:00", "08:00", "2026-06-10T18:59:59.999Z");
    /* Start is inclusive: exactly 21:00:00.000 local is quiet. */
    expect_inside(tz, "21:00", "08:00", "2026-06-10T19:00:00Z", "2026-06-11T06:00:00Z");
    expect_inside(tz, "21:00", "08:00", "2026-06-10T21:59:00Z", "2026-06-11T06:00:00Z");
    /* Just before and just after local midnight: the end is on the next
     * local date in the first case and the same local date in the second. */
    expect_inside(tz, "21:00", "08:00", "2026-06-10T21:59:59.999Z", "2026-06-11T06:00:00Z");
    expect_inside(tz, "21:00", "08:00", "2026-06-10T22:00:00Z", "2026-06-11T06:00:00Z");
    expect_inside(tz, "21:00", "08:00", "2026-06-11T05:59:59.999Z", "2026-06-11T06:00:00Z");
    /* End is exclusive: 08:00:00.000 local is no longer quiet. */
    expect_outside(tz, "21:00", "08:00", "2026-06-11T06:00:00Z");
    expect_outside(tz, "21:00", "08:00", "2026-06-11T12:00:00Z");
}

Test(quiet_hours, window_within_one_day)
{
    /* New York in July is UTC-4. A lunch-time window 12:30-14:00. */
    const char *tz = "America/New_York";
    expect_outside(tz, "12:30", "14:00", "2026-07-01T16:29:59Z");
    expect_inside(tz, "12:30", "14:00", "2026-07-01T16:30:00Z", "2026-07-01T18:00:00Z");
    expect_inside(tz, "12:30", "14:00", "2026-07-01T17:59:59.999Z", "2026-07-01T18:00:00Z");
    expect_outside(tz, "12:30", "14:00", "2026-07-01T18:00:00Z");
    /* Late evening is outside a daytime window. */
    expect_outside(tz, "12:30", "14:00", "2026-07-02T03:00:00Z");
}

Test(quiet_hours, window_ending_at_midnight_and_starting_at_midnight)
{
    const char *tz = "Europe/Paris";
    /* 22:00-00:00: ends at the next local midnight. */
    expect_inside(tz, "22:00", "00:00", "2026-06-10T21:30:00Z", "2026-06-10T22:00:00Z");
    expect_outside(tz, "22:00", "00:00", "2026-06-10T22:00:00Z");
    /* 00:00-06:00: a same-day window starting at midnight. */
    expect_inside(tz, "00:00", "06:00", "2026-06-10T22:00:00Z", "2026-06-11T04:00:00Z");
    expect_outside(tz, "00:00", "06:00", "2026-06-10T21:59:59Z");
}

Test(quiet_hours, month_and_year_rollover)
{
    /* The day after local 31 December is 1 January of the next year. Paris
     * in winter is UTC+1. */
    expect_inside("Europe/Paris", "21:00", "08:00", "2026-12-31T22:30:00Z", "2027-01-01T07:00:00Z");
    /* 30 April 23:00 in New York (UTC-4) is 1 May 03:00Z. */
    expect_inside("America/New_York", "21:00", "08:00", "2026-05-01T03:00:00Z", "2026-05-01T12:00:00Z");
}

Test(quiet_hours, start_equals_end_means_none)
{
    cmn_quiet_eval_t r;
    const char *times[] = {"2026-06-10T00:00:00Z", "2026-06-10T08:00:00Z", "2026-06-10T19:00:00Z"};
    for (size_t i = 0; i < 3; i++) {
        r.inside = 7;
        cr_assert_eq(cmn_quiet_hours_eval_str(at(times[i]), "Europe/Paris", "08:00", "08:00", &r), 0);
        cr_expect_eq(r.inside, 0);
        cr_expect_eq(r.ends_at_ms, 0);
    }
}

/* ------------------------------------------------------ half-hour zone */

Test(quiet_hours, kolkata_half_hour_offset)
{
    /* IST is UTC+05:30: 21:00 IST = 15:30Z, 08:00 IST = 02:30Z. */
    const char *tz = "Asia/Kolkata";
    expect_outside(tz, "21:00", "08:00", "2026-06-01T15:29:59.999Z");
    expect_inside(tz, "21:00", "08:00", "2026-06-01T15:30:00Z", "2026-06-02T02:30:00Z");
    expect_inside(tz, "21:00", "08:00", "2026-06-01T20:00:00Z", "2026-06-02T02:30:00Z");
    expect_outside(tz, "21:00", "08:00", "2026-06-02T02:30:00Z");
    /* A window with odd minutes in a half-hour zone: 22:45-06:15 IST. */
    expect_inside(tz, "22:45", "06:15", "2026-06-01T17:15:00Z", "2026-06-02T00:45:00Z");
    expect_outside(tz, "22:45", "06:15", "2026-06-01T17:14:59Z");
    /* The alias Asia/Calcutta is the same zone. */
    expect_inside("Asia/Calcutta", "21:00", "08:00", "2026-06-01T15:30:00Z", "2026-06-02T02:30:00Z");
}

/* --------------------------------------------------------- Europe/Paris */

Test(quiet_hours, paris_spring_forward)
{
    /* 2026-03-29: 02:00 CET jumps to 03:00 CEST at 01:00Z. */
    const char *tz = "Europe/Paris";
    /* The night before starts in CET (21:00 CET = 20:00Z) and ends in CEST
     * (08:00 CEST = 06:00Z): a 10-hour window. */
    expect_inside(tz, "21:00", "08:00", "2026-03-28T20:00:00Z", "2026-03-29T06:00:00Z");
    expect_outside(tz, "21:00", "08:00", "2026-03-28T19:59:59Z");
    expect_outside(tz, "21:00", "08:00", "2026-03-29T06:00:00Z");
    /* An end inside the gap (02:30 does not exist) resolves to the first
     * valid instant after it: 03:00 CEST = 01:00Z. */
    expect_inside(tz, "21:00", "02:30", "2026-03-28T23:00:00Z", "2026-03-29T01:00:00Z");
    expect_inside(tz, "21:00", "02:30", "2026-03-29T00:59:59.999Z", "2026-03-29T01:00:00Z");
    /* One millisecond later the clock reads 03:00: outside. */
    expect_outside(tz, "21:00", "02:30", "2026-03-29T01:00:00Z");
    /* A start inside the gap: quiet from the moment the clock passes it. */
    expect_outside(tz, "02:30", "06:00", "2026-03-29T00:59:59Z");
    expect_inside(tz, "02:30", "06:00", "2026-03-29T01:00:00Z", "2026-03-29T04:00:00Z");
}

Test(quiet_hours, paris_fall_back)
{
    /* 2026-10-25: 03:00 CEST goes back to 02:00 CET at 01:00Z; 02:00-02:59
     * local happens twice (00:00Z-00:59Z CEST, 01:00Z-01:59Z CET). */
    const char *tz = "Europe/Paris";
    expect_inside(tz, "21:00", "08:00", "2026-10-24T19:00:00Z", "2026-10-25T07:00:00Z");
    expect_outside(tz, "21:00", "08:00", "2026-10-25T07:00:00Z");
    /* An ambiguous end resolves to its first occurrence: 02:30 CEST = 00:30Z. */
    expect_inside(tz, "21:00", "02:30", "2026-10-24T20:00:00Z", "2026-10-25T00:30:00Z");
    expect_inside(tz, "21:00", "02:30", "2026-10-25T00:29:59Z", "2026-10-25T00:30:00Z");
    expect_outside(tz, "21:00", "02:30", "2026-10-25T00:30:00Z");
    expect_outside(tz, "21:00", "02:30", "2026-10-25T00:59:59Z");
    /* The clock is turned back and reads 02:00-02:29 again: quiet again on
     * the wall clock, ending at the second occurrence, 02:30 CET = 01:30Z. */
    expect_inside(tz, "21:00", "02:30", "2026-10-25T01:00:00Z", "2026-10-25T01:30:00Z");
    expect_inside(tz, "21:00", "02:30", "2026-10-25T01:10:00Z", "2026-10-25T01:30:00Z");
    expect_outside(tz, "21:00", "02:30", "2026-10-25T01:30:00Z");
}

/* ----------------------------------------------------- America/New_York */

Test(quiet_hours, new_york_spring_forward)
{
    /* 2026-03-08: 02:00 EST jumps to 03:00 EDT at 07:00Z. */
    const char *tz = "America/New_York";
    /* 21:00 EST = 02:00Z; 08:00 EDT = 12:00Z. */
    expect_inside(tz, "21:00", "08:00", "2026-03-08T02:00:00Z", "2026-03-08T12:00:00Z");
    expect_outside(tz, "21:00", "08:00", "2026-03-08T01:59:59Z");
    /* 02:15 does not exist that day: 03:00 EDT = 07:00Z. */
    expect_inside(tz, "22:00", "02:15", "2026-03-08T04:00:00Z", "2026-03-08T07:00:00Z");
    expect_inside(tz, "22:00", "02:15", "2026-03-08T06:59:00Z", "2026-03-08T07:00:00Z");
    expect_outside(tz, "22:00", "02:15", "2026-03-08T07:00:00Z");
    /* The day after is ordinary EDT: 08:00 EDT = 12:00Z. */
    expect_inside(tz, "21:00", "08:00", "2026-03-09T01:00:00Z", "2026-03-09T12:00:00Z");
}

Test(quiet_hours, new_york_fall_back)
{
    /* 2026-11-01: 02:00 EDT goes back to 01:00 EST at 06:00Z; 01:00-01:59
     * local happens twice (05:00Z-05:59Z EDT, 06:00Z-06:59Z EST). */
    const char *tz = "America/New_York";
    /* 21:00 EDT = 01:00Z; 08:00 EST = 13:00Z: an 12-hour night. */
    expect_inside(tz, "21:00", "08:00", "2026-11-01T01:00:00Z", "2026-11-01T13:00:00Z");
    expect_outside(tz, "21:00", "08:00", "2026-11-01T13:00:00Z");
    expect_inside(tz, "21:00", "08:00", "2026-11-01T12:59:59Z", "2026-11-01T13:00:00Z");
    /* Ambiguous end 01:30: first occurrence, 01:30 EDT = 05:30Z. */
    expect_inside(tz, "22:00", "01:30", "2026-11-01T03:00:00Z", "2026-11-01T05:30:00Z");
    expect_outside(tz, "22:00", "01:30", "2026-11-01T05:30:00Z");
    /* Second pass through 01:00-01:29 (EST): quiet until 01:30 EST = 06:30Z. */
    expect_inside(tz, "22:00", "01:30", "2026-11-01T06:00:00Z", "2026-11-01T06:30:00Z");
    expect_outside(tz, "22:00", "01:30", "2026-11-01T06:30:00Z");
}

/* ------------------------------------------------------ Australia/Sydney */

Test(quiet_hours, sydney_summer_time_ends_in_april)
{
    /* Southern hemisphere: 2026-04-05 03:00 AEDT goes back to 02:00 AEST
     * at 2026-04-04T16:00Z. */
    const char *tz = "Australia/Sydney";
    /* 21:00 AEDT on the 4th = 10:00Z; 08:00 AEST on the 5th = 22:00Z. */
    expect_inside(tz, "21:00", "08:00", "2026-04-04T10:00:00Z", "2026-04-04T22:00:00Z");
    expect_outside(tz, "21:00", "08:00", "2026-04-04T09:59:59Z");
    expect_outside(tz, "21:00", "08:00", "2026-04-04T22:00:00Z");
    /* Ambiguous end 02:30: first occurrence 02:30 AEDT = 15:30Z. */
    expect_inside(tz, "21:00", "02:30", "2026-04-04T12:00:00Z", "2026-04-04T15:30:00Z");
    expect_outside(tz, "21:00", "02:30", "2026-04-04T15:45:00Z");
    /* Second pass (AEST): 02:10 AEST = 16:10Z, ends 02:30 AEST = 16:30Z. */
    expect_inside(tz, "21:00", "02:30", "2026-04-04T16:10:00Z", "2026-04-04T16:30:00Z");
}

Test(quiet_hours, sydney_summer_time_starts_in_october)
{
    /* 2026-10-04 02:00 AEST jumps to 03:00 AEDT at 2026-10-03T16:00Z. */
    const char *tz = "Australia/Sydney";
    /* 21:00 AEST on the 3rd = 11:00Z; 08:00 AEDT on the 4th = 21:00Z. */
    expect_inside(tz, "21:00", "08:00", "2026-10-03T11:00:00Z", "2026-10-03T21:00:00Z");
    expect_outside(tz, "21:00", "08:00", "2026-10-03T21:00:00Z");
    /* 02:30 does not exist: 03:00 AEDT = 16:00Z. */
    expect_inside(tz, "21:00", "02:30", "2026-10-03T15:59:00Z", "2026-10-03T16:00:00Z");
    expect_outside(tz, "21:00", "02:30", "2026-10-03T16:00:00Z");
}

/* -------------------------------------------------------------- errors */

Test(quiet_hours, invalid_inputs)
{
    cmn_quiet_eval_t r;
    int64_t now = at("2026-06-10T12:00:00Z");
    const char *bad_tz[] = {"Mars/Olympus_Mons", "", "Etc/Unknown", "GMT+05:00", "Europe/Paris ",
                            "Europe/\xc3\xa9", "europe/paris/x"};
    for (size_t i = 0; i < sizeof bad_tz / sizeof bad_tz[0]; i++) {
        r.inside = 5;
        cr_expect_eq(cmn_quiet_hours_eval_str(now, bad_tz[i], "21:00", "08:00", &r), CMN_ERR_INVALID,
                     "tz \"%s\" should be refused", bad_tz[i]);
        cr_expect_eq(r.inside, 0, "output is zeroed on error");
    }
    cr_expect_eq(cmn_quiet_hours_eval_str(now, NULL, "21:00", "08:00", &r), CMN_ERR_INVALID);
    cr_expect_eq(cmn_quiet_hours_eval_str(now, "Europe/Paris", "21:00", "8:00", &r), CMN_ERR_INVALID);
    cr_expect_eq(cmn_quiet_hours_eval_str(now, "Europe/Paris", "21:60", "08:00", &r), CMN_ERR_INVALID);
    cr_expect_eq(cmn_quiet_hours_eval_str(now, "Europe/Paris", NULL, "08:00", &r), CMN_ERR_INVALID);
    cr_expect_eq(cmn_quiet_hours_eval_str(now, "Europe/Paris", "21:00", "08:00", NULL), CMN_ERR_INVALID);
    cmn_quiet_window_t w = {.start_min = 1440, .end_min = 0};
    cr_expect_eq(cmn_quiet_hours_eval(now, "Europe/Paris", &w, &r), CMN_ERR_INVALID);
    w = (cmn_quiet_window_t){.start_min = -1, .end_min = 0};
    cr_expect_eq(cmn_quiet_hours_eval(now, "Europe/Paris", &w, &r), CMN_ERR_INVALID);
    cr_expect_eq(cmn_quiet_hours_eval(now, "Europe/Paris", NULL, &r), CMN_ERR_INVALID);
    /* An empty window in an unknown zone is still an error: the zone is
     * checked first, so a bad preference is reported even when harmless. */
    cr_expect_eq(cmn_quiet_hours_eval_str(now, "Nowhere/Town", "08:00", "08:00", &r), CMN_ERR_INVALID);
}

Test(quiet_hours, end_is_always_after_now_over_a_year)
{
    /* Sweep a year in 17-minute steps across the three DST zones: whenever
     * inside, the end is in the future and no more than a day away, and the
     * instant just before it is still inside while the end itself is not. */
    const char *zones[] = {"Europe/Paris", "America/New_York", "Australia/Sydney", "Asia/Kolkata"};
    int64_t start = at("2026-01-01T00:00:00Z");
    for (size_t z = 0; z < 4; z++) {
        for (int64_t t = start; t < start + INT64_C(365) * 86400000; t += 17 * 60000) {
            cmn_quiet_eval_t r, before, after;
            cr_assert_eq(cmn_quiet_hours_eval_str(t, zones[z], "22:30", "02:30", &r), 0);
            if (!r.inside)
                continue;
            cr_assert_gt(r.ends_at_ms, t, "%s at %lld", zones[z], (long long)t);
            cr_assert_leq(r.ends_at_ms - t, INT64_C(25) * 3600000, "%s at %lld", zones[z], (long long)t);
            cr_assert_eq(cmn_quiet_hours_eval_str(r.ends_at_ms - 1, zones[z], "22:30", "02:30", &before), 0);
            cr_assert_eq(cmn_quiet_hours_eval_str(r.ends_at_ms, zones[z], "22:30", "02:30", &after), 0);
            cr_assert_eq(before.inside, 1, "%s at %lld", zones[z], (long long)t);
            cr_assert_eq(after.inside, 0, "%s at %lld", zones[z], (long long)t);
        }
    }
}

/* -------------------------------------------------------------- policy */

Test(quiet_hours, default_policy)
{
    cmn_quiet_policy_t p;
    cmn_quiet_policy_default(&p);
    cr_assert(cmn_quiet_policy_applies(&p, CMN_CHANNEL_SMS, CMN_URGENCY_NORMAL));
    cr_assert(cmn_quiet_policy_applies(&p, CMN_CHANNEL_WHATSAPP, CMN_URGENCY_LOW));
    cr_assert(cmn_quiet_policy_applies(&p, CMN_CHANNEL_WHATSAPP, CMN_URGENCY_HIGH));
    cr_assert_not(cmn_quiet_policy_applies(&p, CMN_CHANNEL_EMAIL, CMN_URGENCY_NORMAL));
    cr_assert_not(cmn_quiet_policy_applies(&p, CMN_CHANNEL_EMAIL, CMN_URGENCY_LOW));
    /* Critical ignores quiet hours on every channel. */
    for (int c = 0; c < CMN_CHANNEL__COUNT; c++) {
        cr_assert_not(cmn_quiet_policy_applies(&p, (cmn_channel_t)c, CMN_URGENCY_CRITICAL));
    }
    cr_assert_not(cmn_quiet_policy_applies(&p, CMN_CHANNEL_NONE, CMN_URGENCY_NORMAL));
    cr_assert_not(cmn_quiet_policy_applies(NULL, CMN_CHANNEL_SMS, CMN_URGENCY_NORMAL));
}

Test(quiet_hours, policy_parse)
{
    cmn_quiet_policy_t p;
    cr_assert_eq(cmn_quiet_policy_parse("email,sms,whatsapp", &p), 0);
    cr_assert(cmn_quiet_policy_applies(&p, CMN_CHANNEL_EMAIL, CMN_URGENCY_NORMAL));
    cr_assert(cmn_quiet_policy_applies(&p, CMN_CHANNEL_SMS, CMN_URGENCY_NORMAL));
    cr_assert_not(cmn_quiet_policy_applies(&p, CMN_CHANNEL_SMS, CMN_URGENCY_CRITICAL));
    cr_assert_eq(cmn_quiet_policy_parse("whatsapp", &p), 0);
    cr_assert_not(cmn_quiet_policy_applies(&p, CMN_CHANNEL_SMS, CMN_URGENCY_NORMAL));
    cr_assert(cmn_quiet_policy_applies(&p, CMN_CHANNEL_WHATSAPP, CMN_URGENCY_NORMAL));
    cr_assert_eq(cmn_quiet_policy_parse("", &p), 0);
    for (int c = 0; c < CMN_CHANNEL__COUNT; c++) {
        cr_assert_not(cmn_quiet_policy_applies(&p, (cmn_channel_t)c, CMN_URGENCY_LOW));
    }
    const char *bad[] = {"sms,", ",sms", "sms,,email", "sms,sms", "SMS", "sms ,email", "fax", "sms, email"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cmn_quiet_policy_default(&p);
        cr_expect_eq(cmn_quiet_policy_parse(bad[i], &p), CMN_ERR_INVALID, "\"%s\" should be refused", bad[i]);
        cr_expect(cmn_quiet_policy_applies(&p, CMN_CHANNEL_SMS, CMN_URGENCY_NORMAL), "untouched on error");
        cr_expect_not(cmn_quiet_policy_applies(&p, CMN_CHANNEL_EMAIL, CMN_URGENCY_NORMAL));
    }
    cr_assert_eq(cmn_quiet_policy_parse(NULL, &p), CMN_ERR_INVALID);
}
