/* backoff.c - exponential backoff with full jitter.
 *
 * Full jitter (a uniformly random delay in [0, ceiling]) spreads the retries
 * of many failed sends over the whole window, so a provider that recovers is
 * not hit by a synchronised wave. The functions are pure: randomness and the
 * clock come from the caller. */
#include "crm/backoff.h"

#include <stddef.h>

int64_t cmn_backoff_ceiling_ms(const cmn_backoff_t *b, int attempt)
{
    if (b == NULL || b->base_ms <= 0) {
        return 0;
    }
    /* A non-positive cap means "no cap"; the ceiling then saturates at
     * INT64_MAX instead of overflowing. */
    int64_t cap = b->cap_ms > 0 ? b->cap_ms : INT64_MAX;
    if (b->base_ms >= cap) {
        return cap;
    }
    int shift = attempt > 1 ? attempt - 1 : 0;
    /* base * 2^shift > cap  <=>  base > floor(cap / 2^shift), which needs no
     * multiplication, so huge attempt numbers cannot overflow. */
    if (shift >= 63 || b->base_ms > (cap >> shift)) {
        return cap;
    }
    return b->base_ms << shift;
}

int64_t cmn_backoff_delay_ms(const cmn_backoff_t *b, int attempt, uint64_t rnd, int64_t retry_after_ms)
{
    int64_t ceiling = cmn_backoff_ceiling_ms(b, attempt);
    /* The window is inclusive; ceiling + 1 fits in uint64_t even at INT64_MAX.
     * The modulo bias is negligible for 64-bit random input. */
    int64_t delay = (int64_t)(rnd % ((uint64_t)ceiling + 1));
    if (retry_after_ms > delay) {
        delay = retry_after_ms;
    }
    return delay;
}

int cmn_backoff_should_retry(const cmn_backoff_t *b, int attempt, int64_t now_ms, int64_t delay_ms,
                             int64_t deadline_ms)
{
    if (b == NULL) {
        return 0;
    }
    /* max_attempts counts the first attempt, so after attempt k there is
     * another only when k < max_attempts. */
    if (attempt >= b->max_attempts) {
        return 0;
    }
    if (delay_ms < 0) {
        delay_ms = 0;
    }
    /* The next attempt must be due no later than the deadline. Written as a
     * subtraction so now + delay cannot overflow. */
    if (deadline_ms > 0 && (now_ms > deadline_ms || delay_ms > deadline_ms - now_ms)) {
        return 0;
    }
    return 1;
}
