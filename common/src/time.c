/* time.c - clocks and strict RFC 3339 timestamps. */
#include "crm/time.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "crm/err.h"

int64_t cmn_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t cmn_monotonic_ms(void)
{
    /* CLOCK_MONOTONIC never jumps with NTP or an operator's `date`, so it is
     * the clock for timeouts and rate limiting. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int cmn_time_format_rfc3339(int64_t epoch_ms, char *out, size_t outlen)
{
    if (out == NULL || outlen == 0) {
        return CMN_ERR_INVALID;
    }
    out[0] = '\0';
    /* Floor division so instants before 1970 keep a non-negative millisecond
     * part (-1 ms is 1969-12-31T23:59:59.999Z, not ...:00.-01). */
    int64_t secs = epoch_ms / 1000;
    int64_t ms = epoch_ms % 1000;
    if (ms < 0) {
        ms += 1000;
        secs -= 1;
    }
    time_t t = (time_t)secs;
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL) {
        return CMN_ERR_INVALID;
    }
    /* RFC 3339 has four-digit years only; anything else cannot be written. */
    if (tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999) {
        return CMN_ERR_INVALID;
    }
    int n = snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)ms);
    if (n < 0 || (size_t)n >= outlen) {
        out[0] = '\0';
        return CMN_ERR_OVERFLOW;
    }
    return CMN_OK;
}

/* Reads exactly `width` decimal digits at *p into *val and advances *p. */
static int read_digits(const char **p, int width, int *val)
{
    int v = 0;
    for (int i = 0; i < width; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9') {
            return CMN_ERR_PARSE;
        }
        v = v * 10 + (c - '0');
    }
    *p += width;
    *val = v;
    return CMN_OK;
}

static int expect_char(const char **p, char c)
{
    if (**p != c) {
        return CMN_ERR_PARSE;
    }
    (*p)++;
    return CMN_OK;
}

static int is_leap_year(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int year, int month)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (month == 2 && is_leap_year(year)) {
        return 29;
    }
    return days[month - 1];
}

int cmn_time_parse_rfc3339(const char *s, int64_t *epoch_ms)
{
    if (s == NULL || epoch_ms == NULL) {
        return CMN_ERR_INVALID;
    }
    const char *p = s;
    int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
    int rc = read_digits(&p, 4, &year);
    rc = rc != CMN_OK ? rc : expect_char(&p, '-');
    rc = rc != CMN_OK ? rc : read_digits(&p, 2, &month);
    rc = rc != CMN_OK ? rc : expect_char(&p, '-');
    rc = rc != CMN_OK ? rc : read_digits(&p, 2, &day);
    if (rc != CMN_OK) {
        return CMN_ERR_PARSE;
    }
    /* RFC 3339 section 5.6 allows a lower-case 't' separator. */
    if (*p != 'T' && *p != 't') {
        return CMN_ERR_PARSE;
    }
    p++;
    rc = read_digits(&p, 2, &hour);
    rc = rc != CMN_OK ? rc : expect_char(&p, ':');
    rc = rc != CMN_OK ? rc : read_digits(&p, 2, &minute);
    rc = rc != CMN_OK ? rc : expect_char(&p, ':');
    rc = rc != CMN_OK ? rc : read_digits(&p, 2, &second);
    if (rc != CMN_OK) {
        return CMN_ERR_PARSE;
    }
    /* Validate every field ourselves: timegm() would silently normalise
     * 2026-13-01 into 2027-01-01, turning garbage into a plausible date.
     * Second 60 is a leap second, which RFC 3339 permits; timegm folds it
     * into the next minute, as POSIX time has no leap seconds. */
    if (month < 1 || month > 12 || day < 1 || day > days_in_month(year, month) || hour > 23 ||
        minute > 59 || second > 60) {
        return CMN_ERR_PARSE;
    }

    int64_t frac_ms = 0;
    if (*p == '.') {
        p++;
        int digits = 0;
        int64_t scale = 100;
        while (*p >= '0' && *p <= '9') {
            /* Only milliseconds are kept; further digits are truncated
             * (never rounded, so a time never moves into the next second). */
            frac_ms += (*p - '0') * scale;
            scale /= 10;
            digits++;
            p++;
        }
        if (digits == 0 || digits > 9) {
            return CMN_ERR_PARSE;
        }
    }

    int offset_min = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1;
        p++;
        int oh = 0, om = 0;
        rc = read_digits(&p, 2, &oh);
        rc = rc != CMN_OK ? rc : expect_char(&p, ':');
        rc = rc != CMN_OK ? rc : read_digits(&p, 2, &om);
        if (rc != CMN_OK || oh > 23 || om > 59) {
            return CMN_ERR_PARSE;
        }
        offset_min = sign * (oh * 60 + om);
    } else {
        /* A local time without an offset is ambiguous; RFC 3339 requires one. */
        return CMN_ERR_PARSE;
    }
    if (*p != '\0') {
        return CMN_ERR_PARSE;
    }

    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = year - 1900;
    tm.tm_mon = month - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = minute;
    tm.tm_sec = second;
    time_t t = timegm(&tm);
    /* The local time is UTC plus the offset, so UTC is the local time minus it. */
    *epoch_ms = ((int64_t)t - (int64_t)offset_min * 60) * 1000 + frac_ms;
    return CMN_OK;
}
