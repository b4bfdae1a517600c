/* backoff.h - retry delays: exponential backoff with full jitter.
 *
 * delay(attempt) = random in [0, min(cap, base * 2^(attempt-1))], and never
 * less than a provider's Retry-After. Pure functions: the caller passes the
 * random number so the schedule is testable. */
#ifndef CRM_BACKOFF_H
#define CRM_BACKOFF_H

#include <stdint.h>

typedef struct cmn_backoff {
    int64_t base_ms;     /* first ceiling, e.g. 1000 */
    int64_t cap_ms;      /* largest ceiling, e.g. 3600000 */
    int max_attempts;    /* attempts allowed in all, first one included */
} cmn_backoff_t;

/* Upper bound of the jitter window for attempt (1-based): min(cap, base*2^(attempt-1)). */
int64_t cmn_backoff_ceiling_ms(const cmn_backoff_t *b, int attempt);
/* Full-jitter delay for attempt using random value rnd; retry_after_ms (0 if
 * none) is a floor. */
int64_t cmn_backoff_delay_ms(const cmn_backoff_t *b, int attempt, uint64_t rnd, int64_t retry_after_ms);
/* 1 if another attempt is allowed after attempt `attempt` failed at now_ms
 * with the given delay, considering max_attempts and deadline_ms (0 = none). */
int cmn_backoff_should_retry(const cmn_backoff_t *b, int attempt, int64_t now_ms, int64_t delay_ms,
                             int64_t deadline_ms);

#endif
