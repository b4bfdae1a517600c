/* quiet_hours.h - quiet hours in the client's own time zone, and which
 * messages they hold back.
 *
 * A quiet-hours window is a pair of local wall-clock times "HH:MM" (24-hour,
 * exactly two digits each, 00:00-23:59). The window is [start, end): start
 * inclusive, end exclusive, compared on the client's local wall clock in its
 * IANA time zone (through ICU, so DST and half-hour offsets are right).
 *   - start < end  ("13:00"-"14:00"): quiet between them on every day;
 *   - start > end  ("21:00"-"08:00"): the window crosses local midnight;
 *   - start == end: no quiet hours at all (not "quiet all day": a client who
 *     wants no messages opts out instead).
 *
 * When now is inside, the evaluator also says when the window ends, as an
 * epoch instant, so the router can defer the message to exactly that time:
 *   - Spring forward: an end time that does not exist on that day (02:30 in
 *     Paris on 2026-03-29) resolves to the first valid instant after the gap
 *     (03:00 CEST), which is the first moment the local clock reads past it.
 *   - Fall back: an end time that happens twice (02:30 in Paris on
 *     2026-10-25) resolves to its first occurrence (02:30 CEST). If now is
 *     already in the repeated hour past that first occurrence (the clock has
 *     been turned back and reads 02:10 again), the window is judged on the
 *     wall clock like any other time, so it is quiet again and ends at the
 *     second occurrence (02:30 CET): the client experiences the clock reading
 *     02:10, and quiet hours follow the clock on the wall. The same rule
 *     means that a window *starting* inside the repeated hour (02:30-07:00)
 *     is briefly not quiet when the clock jumps back to 02:00 CET; a message
 *     already deferred keeps its deferral, and the gap is at most the part
 *     of the repeated hour before the start.
 *
 * Thread safety: every evaluation opens its own ICU UCalendar and closes it
 * before returning, so the functions may be called from any number of threads
 * at once. There is no handle to share and no global state; ICU caches the
 * zone rules internally (thread-safe), so opening a calendar per call costs
 * microseconds.
 */
#ifndef CRM_QUIET_HOURS_H
#define CRM_QUIET_HOURS_H

#include <stdint.h>

#include "crm/channel.h"

/* Length of "HH:MM" plus its NUL. */
#define CMN_QUIET_HHMM_SIZE 6

/* A parsed window: minutes after local midnight, each 0..1439. */
typedef struct cmn_quiet_window {
    int start_min;
    int end_min;
} cmn_quiet_window_t;

/* The answer of cmn_quiet_hours_eval(). */
typedef struct cmn_quiet_eval {
    int inside;          /* 1 when now is inside the window */
    int64_t ends_at_ms;  /* when inside: epoch ms at which the window ends (> now); else 0 */
} cmn_quiet_eval_t;

/* Parses "HH:MM" (exactly five characters, 00-23 and 00-59) into minutes
 * after midnight. Returns 0, or CMN_ERR_INVALID for anything else ("8:00",
 * "24:00", "08:00:00", " 08:00", NULL). */
int cmn_quiet_parse_hhmm(const char *s, int *minutes);

/* Writes minutes (0..1439) as "HH:MM" into out (CMN_QUIET_HHMM_SIZE bytes).
 * Returns 0 or CMN_ERR_INVALID. */
int cmn_quiet_format_hhmm(int minutes, char out[CMN_QUIET_HHMM_SIZE]);

/* Parses both ends of a window. Returns 0 or CMN_ERR_INVALID (out is left
 * untouched on error). Strings are borrowed. */
int cmn_quiet_window_parse(const char *start, const char *end, cmn_quiet_window_t *out);

/* 1 when the window holds no time at all (start == end). */
int cmn_quiet_window_is_empty(const cmn_quiet_window_t *w);

/* Evaluates window w at now_ms (epoch ms) in time zone tz (an IANA id known
 * to ICU, see cmn_valid_timezone) and fills *out. All arguments are
 * borrowed. Returns 0; CMN_ERR_INVALID for a NULL argument, a window with
 * minutes out of range, or a time zone ICU does not know (ICU itself would
 * silently fall back to GMT, which would send at the wrong hour); or
 * CMN_ERR_UNAVAILABLE when ICU fails (out of memory, missing data). On error
 * *out is zeroed. */
int cmn_quiet_hours_eval(int64_t now_ms, const char *tz, const cmn_quiet_window_t *w, cmn_quiet_eval_t *out);

/* The same with the window given as "HH:MM" strings; CMN_ERR_INVALID when
 * either string is not HH:MM. */
int cmn_quiet_hours_eval_str(int64_t now_ms, const char *tz, const char *start, const char *end,
                             cmn_quiet_eval_t *out);

/* Which messages quiet hours hold back. Quiet hours protect people from
 * their phone buzzing at night; an email waits silently in an inbox, so by
 * default it is not held back. A critical message (a security code, a
 * same-day cancellation) is worth waking someone for, so it ignores quiet
 * hours on every channel. */
typedef struct cmn_quiet_policy {
    unsigned char applies[CMN_CHANNEL__COUNT]; /* 1: quiet hours hold this channel back */
} cmn_quiet_policy_t;

/* The default policy: sms and whatsapp held back, email not. */
void cmn_quiet_policy_default(cmn_quiet_policy_t *p);

/* Parses a comma-separated channel list ("sms,whatsapp", "" for none; no
 * spaces, no duplicates) into a policy that applies to exactly those
 * channels. Meant for a configuration variable. Returns 0 or
 * CMN_ERR_INVALID (p untouched). */
int cmn_quiet_policy_parse(const char *list, cmn_quiet_policy_t *p);

/* 1 when quiet hours hold back a message on channel c with urgency u: the
 * policy applies to c and u is not critical. 0 for a NULL policy or an
 * unknown channel. */
int cmn_quiet_policy_applies(const cmn_quiet_policy_t *p, cmn_channel_t c, cmn_urgency_t u);

#endif
