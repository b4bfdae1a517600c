/* Unit tests for crm/time.h. */
#include <criterion/criterion.h>
#include <string.h>
#include <time.h>

#include "crm/err.h"
#include "crm/time.h"

static int64_t parse_ok(const char *s)
{
    int64_t ms = -12345;
    int rc = cmn_time_parse_rfc3339(s, &ms);
    cr_assert_eq(rc, CMN_OK, "'%s' rejected", s);
    return ms;
}

static void parse_bad(const char *s)
{
    int64_t ms = 777;
    cr_assert_neq(cmn_time_parse_rfc3339(s, &ms), CMN_OK, "'%s' accepted", s);
    cr_assert_eq(ms, 777, "output written for '%s'", s);
}

/* 2026-11-22T01:02:03Z, computed independently of the code under test. */
#define T_2026_11_22 INT64_C(1795309323000)

Test(time, clocks_advance)
{
    int64_t wall = cmn_now_ms();
    /* Sanity: after 2024-01-01 and before 2100-01-01. */
    cr_assert_gt(wall, INT64_C(1704067200000));
    cr_assert_lt(wall, INT64_C(4102444800000));
    cr_assert_leq(wall - (int64_t)time(NULL) * 1000, 1000);
    int64_t m1 = cmn_monotonic_ms();
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    int64_t m2 = cmn_monotonic_ms();
    cr_assert_geq(m2 - m1, 19);
    cr_assert_lt(m2 - m1, 5000);
}

Test(time, format)
{
    char out[32];
    cr_assert_eq(cmn_time_format_rfc3339(T_2026_11_22 + 456, out, sizeof out), CMN_OK);
    cr_assert_str_eq(out, "2026-11-22T01:02:03.456Z");
    cr_assert_eq(cmn_time_format_rfc3339(0, out, sizeof out), CMN_OK);
    cr_assert_str_eq(out, "1970-01-01T00:00:00.000Z");
    cr_assert_eq(cmn_time_format_rfc3339(7, out, sizeof out), CMN_OK);
    cr_assert_str_eq(out, "1970-01-01T00:00:00.007Z");
    /* Before the epoch the millisecond part stays positive. */
    cr_assert_eq(cmn_time_format_rfc3339(-1, out, sizeof out), CMN_OK);
    cr_assert_str_eq(out, "1969-12-31T23:59:59.999Z");
    /* Leap day. */
    cr_assert_eq(cmn_time_format_rfc3339(INT64_C(1709164800000), out, sizeof out), CMN_OK);
    cr_assert_str_eq(out, "2024-02-29T00:00:00.000Z");
}

Test(time, format_buffer_size)
{
    char out[25];
    cr_assert_eq(cmn_time_format_rfc3339(T_2026_11_22, out, sizeof out), CMN_OK, "25 bytes suffice");
    cr_assert_eq(strlen(out), 24);
    char small[24];
    cr_assert_eq(cmn_time_format_rfc3339(T_2026_11_22, small, sizeof small), CMN_ERR_OVERFLOW);
    cr_assert_str_eq(small, "");
    cr_assert_eq(cmn_time_format_rfc3339(0, NULL, 30), CMN_ERR_INVALID);
    cr_assert_eq(cmn_time_format_rfc3339(0, out, 0), CMN_ERR_INVALID);
}

Test(time, format_out_of_range_years)
{
    char out[64];
    /* Year 10000 cannot be written with four digits. */
    cr_assert_neq(cmn_time_format_rfc3339(INT64_C(253402300800000), out, sizeof out), CMN_OK);
    cr_assert_eq(cmn_time_format_rfc3339(INT64_C(253402300799999), out, sizeof out), CMN_OK);
    cr_assert_str_eq(out, "9999-12-31T23:59:59.999Z");
}

Test(time, parse_utc)
{
    cr_assert_eq(parse_ok("2026-11-22T01:02:03Z"), T_2026_11_22);
    cr_assert_eq(parse_ok("2026-11-22T01:02:03.456Z"), T_2026_11_22 + 456);
    cr_assert_eq(parse_ok("2026-11-22t01:02:03z"), T_2026_11_22);
    cr_assert_eq(parse_ok("1970-01-01T00:00:00Z"), 0);
    cr_assert_eq(parse_ok("1969-12-31T23:59:59.999Z"), -1);
    cr_assert_eq(parse_ok("2024-02-29T00:00:00Z"), INT64_C(1709164800000));
    cr_assert_eq(parse_ok("2000-02-29T00:00:00Z"), INT64_C(951782400000));
}

Test(time, parse_fractions)
{
    cr_assert_eq(parse_ok("2026-11-22T01:02:03.4Z"), T_2026_11_22 + 400);
    cr_assert_eq(parse_ok("2026-11-22T01:02:03.45Z"), T_2026_11_22 + 450);
    cr_assert_eq(parse_ok("2026-11-22T01:02:03.000Z"), T_2026_11_22);
    /* Digits beyond milliseconds are truncated, never rounded up. */
    cr_assert_eq(parse_ok("2026-11-22T01:02:03.9999Z"), T_2026_11_22 + 999);
    cr_assert_eq(parse_ok("2026-11-22T01:02:03.123456789Z"), T_2026_11_22 + 123);
    parse_bad("2026-11-22T01:02:03.1234567890Z");
    parse_bad("2026-11-22T01:02:03.Z");
    parse_bad("2026-11-22T01:02:03,5Z");
}

Test(time, parse_offsets)
{
    cr_assert_eq(parse_ok("2026-11-22T02:02:03+01:00"), T_2026_11_22);
    cr_assert_eq(parse_ok("2026-11-21T19:32:03-05:30"), T_2026_11_22);
    cr_assert_eq(parse_ok("2026-11-22T01:02:03+00:00"), T_2026_11_22);
    cr_assert_eq(parse_ok("2026-11-22T01:02:03-00:00"), T_2026_11_22);
    cr_assert_eq(parse_ok("2026-11-22T15:47:03.250+14:45"), T_2026_11_22 + 250);
    /* An offset can move the instant across a year boundary. */
    cr_assert_eq(parse_ok("1970-01-01T00:00:00+01:00"), -3600 * 1000);
}

Test(time, parse_leap_second)
{
    /* POSIX time has no leap seconds: :60 is folded into the next minute. */
    cr_assert_eq(parse_ok("2016-12-31T23:59:60Z"), parse_ok("2017-01-01T00:00:00Z"));
    parse_bad("2016-12-31T23:59:61Z");
}

Test(time, parse_rejects_invalid_fields)
{
    parse_bad("2026-13-01T00:00:00Z");
    parse_bad("2026-00-01T00:00:00Z");
    parse_bad("2026-01-00T00:00:00Z");
    parse_bad("2026-01-32T00:00:00Z");
    parse_bad("2026-02-29T00:00:00Z");
    parse_bad("1900-02-29T00:00:00Z");
    parse_bad("2026-04-31T00:00:00Z");
    parse_bad("2026-01-01T24:00:00Z");
    parse_bad("2026-01-01T00:60:00Z");
    parse_bad("2026-01-01T00:00:00+24:00");
    parse_bad("2026-01-01T00:00:00+01:60");
}

Test(time, parse_rejects_garbage)
{
    parse_bad("");
    parse_bad("2026-11-22T01:02:03");
    parse_bad("2026-11-22");
    parse_bad("2026-11-22 01:02:03Z");
    parse_bad("2026-11-22T01:02:03ZZ");
    parse_bad("2026-11-22T01:02:03Z ");
    parse_bad(" 2026-11-22T01:02:03Z");
    parse_bad("2026-11-22T01:02:03+0100");
    parse_bad("2026-11-22T01:02:03+01");
    parse_bad("2026-11-22T1:02:03Z");
    parse_bad("26-11-22T01:02:03Z");
    parse_bad("2026/11/22T01:02:03Z");
    parse_bad("2026-11-22T01:02:03UTC");
    parse_bad("2026-1a-22T01:02:03Z");
    parse_bad("tomorrow");
    int64_t ms = 0;
    cr_assert_eq(cmn_time_parse_rfc3339(NULL, &ms), CMN_ERR_INVALID);
    cr_assert_eq(cmn_time_parse_rfc3339("2026-11-22T01:02:03Z", NULL), CMN_ERR_INVALID);
}

Test(time, format_parse_round_trip)
{
    const int64_t samples[] = {0, 1, 999, 1000, T_2026_11_22 + 456, INT64_C(4102444799999), -86400001};
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        char out[32];
        cr_assert_eq(cmn_time_format_rfc3339(samples[i], out, sizeof out), CMN_OK);
        cr_assert_eq(parse_ok(out), samples[i], "round trip of %s", out);
    }
}
