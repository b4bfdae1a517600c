/* quiet_hours.c - quiet hours evaluated on the client's local wall clock.
 *
 * The evaluation is done in two steps: read the local wall-clock time of now
 * in the client's zone and compare it with the window (pure arithmetic on
 * minutes), then, when inside, turn the local end time back into an instant.
 * Only the second step can meet DST gaps and overlaps, and ICU resolves them
 * through the calendar's skipped/repeated wall-time attributes, which are set
 * explicitly below rather than relying on ICU's defaults. */
#include "crm/quiet_hours.h"

#include <stdio.h>
#include <string.h>
#include <unicode/ucal.h>
#include <unicode/utypes.h>

#include "crm/err.h"
#include "crm/request.h"

#define MINUTES_PER_DAY (24 * 60)
#define MAX_TZ_ID 64

int cmn_quiet_parse_hhmm(const char *s, int *minutes)
{
    if (s == NULL || minutes == NULL || strlen(s) != 5 || s[2] != ':') {
        return CMN_ERR_INVALID;
    }
    const int positions[4] = {0, 1, 3, 4};
    for (size_t i = 0; i < 4; i++) {
        char c = s[positions[i]];
        if (c < '0' || c > '9') {
            return CMN_ERR_INVALID;
        }
    }
    int h = (s[0] - '0') * 10 + (s[1] - '0');
    int m = (s[3] - '0') * 10 + (s[4] - '0');
    if (h > 23 || m > 59) {
        return CMN_ERR_INVALID;
    }
    *minutes = h * 60 + m;
    return 0;
}

int cmn_quiet_format_hhmm(int minutes, char out[CMN_QUIET_HHMM_SIZE])
{
    if (out == NULL || minutes < 0 || minutes >= MINUTES_PER_DAY) {
        return CMN_ERR_INVALID;
    }
    snprintf(out, CMN_QUIET_HHMM_SIZE, "%02d:%02d", minutes / 60, minutes % 60);
    return 0;
}

int cmn_quiet_window_parse(const char *start, const char *end, cmn_quiet_window_t *out)
{
    int s = 0;
    int e = 0;
    if (out == NULL || cmn_quiet_parse_hhmm(start, &s) != 0 || cmn_quiet_parse_hhmm(end, &e) != 0) {
        return CMN_ERR_INVALID;
    }
    out->start_min = s;
    out->end_min = e;
    return 0;
}

int cmn_quiet_window_is_empty(const cmn_quiet_window_t *w)
{
    return w != NULL && w->start_min == w->end_min;
}

static int window_in_range(const cmn_quiet_window_t *w)
{
    return w->start_min >= 0 && w->start_min < MINUTES_PER_DAY && w->end_min >= 0 &&
           w->end_min < MINUTES_PER_DAY;
}

/* The instant at which the local wall clock of cal's zone reads end_min on
 * the local date (year, month, day + add_days), with cal's wall-time
 * resolution attributes applied. Day overflow (the 31st + 1) is normalised by
 * the calendar, which is lenient by default. Returns 0 or
 * CMN_ERR_UNAVAILABLE. */
static int local_instant(UCalendar *cal, int32_t year, int32_t month, int32_t day, int add_days, int end_min,
                         int64_t *out_ms)
{
    UErrorCode st = U_ZERO_ERROR;
    /* Clearing first drops the fields computed from the previous setMillis
     * (including the zone and DST offsets), so the instant is computed from
     * the wall-clock fields alone and the DST attributes decide. */
    ucal_clear(cal);
    ucal_setDateTime(cal, year, month, day + add_days, end_min / 60, end_min % 60, 0, &st);
    UDate d = ucal_getMillis(cal, &st);
    if (U_FAILURE(st)) {
        return CMN_ERR_UNAVAILABLE;
    }
    *out_ms = (int64_t)d;
    return 0;
}

int cmn_quiet_hours_eval(int64_t now_ms, const char *tz, const cmn_quiet_window_t *w, cmn_quiet_eval_t *out)
{
    UCalendar *cal = NULL;
    UChar id[MAX_TZ_ID + 1];
    UErrorCode st = U_ZERO_ERROR;
    int rc = 0;
    int32_t year = 0, month = 0, day = 0, hour = 0, minute = 0;
    int local = 0;
    int inside = 0;
    int add_days = 0;
    int64_t end_ms = 0;

    if (out == NULL) {
        return CMN_ERR_INVALID;
    }
    memset(out, 0, sizeof *out);
    /* cmn_valid_timezone refuses ids ICU does not know: ucal_open would
     * otherwise quietly use GMT. It also guarantees a short ASCII id, so the
     * widening to UChar below is exact. */
    if (w == NULL || !window_in_range(w) || !cmn_valid_timezone(tz)) {
        return CMN_ERR_INVALID;
    }
    if (w->start_min == w->end_min) {
        return 0;
    }
    size_t n = strlen(tz);
    for (size_t i = 0; i < n; i++) {
        id[i] = (UChar)(unsigned char)tz[i];
    }

    cal = ucal_open(id, (int32_t)n, "en_US_POSIX", UCAL_GREGORIAN, &st);
    if (U_FAILURE(st)) {
        rc = CMN_ERR_UNAVAILABLE;
        goto cleanup;
    }
    /* The documented DST rules: a skipped end time means the first instant
     * after the gap, a repeated one its first occurrence. */
    ucal_setAttribute(cal, UCAL_SKIPPED_WALL_TIME, UCAL_WALLTIME_NEXT_VALID);
    ucal_setAttribute(cal, UCAL_REPEATED_WALL_TIME, UCAL_WALLTIME_FIRST);

    ucal_setMillis(cal, (UDate)now_ms, &st);
    year = ucal_get(cal, UCAL_YEAR, &st);
    month = ucal_get(cal, UCAL_MONTH, &st);
    day = ucal_get(cal, UCAL_DATE, &st);
    hour = ucal_get(cal, UCAL_HOUR_OF_DAY, &st);
    minute = ucal_get(cal, UCAL_MINUTE, &st);
    if (U_FAILURE(st)) {
        rc = CMN_ERR_UNAVAILABLE;
        goto cleanup;
    }

    /* Whole minutes are enough: the window's ends are whole minutes, so
     * "local time >= S:00.000" is exactly "floor(local minutes) >= S", and
     * likewise for "< E:00.000". */
    local = (int)(hour * 60 + minute);
    if (w->start_min < w->end_min) {
        inside = local >= w->start_min && local < w->end_min;
    } else if (local >= w->start_min) {
        /* Evening part of a window that crosses midnight: it ends tomorrow. */
        inside = 1;
        add_days = 1;
    } else {
        inside = local < w->end_min;
    }
    if (!inside) {
        goto cleanup;
    }

    rc = local_instant(cal, year, month, day, add_days, w->end_min, &end_ms);
    if (rc != 0) {
        goto cleanup;
    }
    if (end_ms <= now_ms) {
        /* Only possible in a repeated hour: the wall clock was turned back
         * and reads a time inside the window again, after the first
         * occurrence of the end time. The window then ends at the second
         * occurrence. */
        ucal_setAttribute(cal, UCAL_REPEATED_WALL_TIME, UCAL_WALLTIME_LAST);
        rc = local_instant(cal, year, month, day, add_days, w->end_min, &end_ms);
        if (rc != 0) {
            goto cleanup;
        }
    }
    if (end_ms <= now_ms) {
        /* No zone in the tz database does this, but a window end that is
         * still not in the future cannot be deferred to: treating the
         * window as already over sends the message rather than looping. */
        goto cleanup;
    }
    out->inside = 1;
    out->ends_at_ms = end_ms;

cleanup:
    if (cal != NULL) {
        ucal_close(cal);
    }
    if (rc != 0) {
        memset(out, 0, sizeof *out);
    }
    return rc;
}

int cmn_quiet_hours_eval_str(int64_t now_ms, const char *tz, const char *start, const char *end,
                             cmn_quiet_eval_t *out)
{
    cmn_quiet_window_t w;
    if (out != NULL) {
        memset(out, 0, sizeof *out);
    }
    if (cmn_quiet_window_parse(start, end, &w) != 0) {
        return CMN_ERR_INVALID;
    }
    return cmn_quiet_hours_eval(now_ms, tz, &w, out);
}

void cmn_quiet_policy_default(cmn_quiet_policy_t *p)
{
    if (p == NULL) {
        return;
    }
    memset(p, 0, sizeof *p);
    p->applies[CMN_CHANNEL_SMS] = 1;
    p->applies[CMN_CHANNEL_WHATSAPP] = 1;
}

int cmn_quiet_policy_parse(const char *list, cmn_quiet_policy_t *p)
{
    cmn_quiet_policy_t tmp;
    char name[16];
    if (list == NULL || p == NULL) {
        return CMN_ERR_INVALID;
    }
    memset(&tmp, 0, sizeof tmp);
    const char *s = list;
    while (*s != '\0') {
        size_t len = strcspn(s, ",");
        if (len == 0 || len >= sizeof name) {
            return CMN_ERR_INVALID;
        }
        memcpy(name, s, len);
        name[len] = '\0';
        cmn_channel_t c = cmn_channel_parse(name);
        if (c == CMN_CHANNEL_NONE || tmp.applies[c]) {
            return CMN_ERR_INVALID;
        }
        tmp.applies[c] = 1;
        s += len;
        if (*s == ',') {
            s++;
            /* "sms," has an empty last item: refused like ",sms". */
            if (*s == '\0') {
                return CMN_ERR_INVALID;
            }
        }
    }
    *p = tmp;
    return 0;
}

int cmn_quiet_policy_applies(const cmn_quiet_policy_t *p, cmn_channel_t c, cmn_urgency_t u)
{
    if (p == NULL || (int)c < 0 || (int)c >= CMN_CHANNEL__COUNT) {
        return 0;
    }
    if (u == CMN_URGENCY_CRITICAL) {
        return 0;
    }
    return p->applies[c] != 0;
}
