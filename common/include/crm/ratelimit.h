/* ratelimit.h - token buckets, one per sender key.
 *
 * A bucket holds up to `burst` tokens and gains `rate` tokens per second;
 * sending one message takes one token. A sender that has been idle can
 * therefore send `burst` messages at once, and then `rate` per second, which
 * is how providers state their limits (Twilio long code 1 msg/s, Meta Cloud
 * API 80 msg/s per phone number).
 *
 * Two layers:
 *   - cmn_bucket_*: the pure arithmetic on one bucket. Time is passed in
 *     (now_ms, any monotonic millisecond clock), so tests need no sleeping;
 *   - cmn_ratelimit_*: a map from sender key to bucket, behind a mutex so
 *     several threads may share one limiter. Buckets that have refilled
 *     completely are indistinguishable from new ones and are dropped when
 *     the map grows, so memory follows the number of recently active
 *     senders, not of all senders ever seen.
 *
 * A take never blocks: it returns 0 when a token was taken, else how many
 * milliseconds until one will be available (nothing is taken then). */
#ifndef CRM_RATELIMIT_H
#define CRM_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

/* Kept as the time the bucket is full again (see ratelimit.c): the same
 * limit as counting tokens, in one number. */
typedef struct cmn_bucket {
    double tat_ms; /* the bucket holds burst tokens again at this time */
} cmn_bucket_t;

/* A full bucket as of now_ms. */
void cmn_bucket_init(cmn_bucket_t *b, double burst, int64_t now_ms);

/* Takes one token as of now_ms. Returns 0 when taken, else the
 * milliseconds (>= 1) until a token is due; b is then unchanged. A clock
 * that goes backwards refills nothing. rate > 0 and burst >= 1 (else the
 * call returns -1 and changes nothing). */
int64_t cmn_bucket_take(cmn_bucket_t *b, double rate, double burst, int64_t now_ms);

/* Like take, but only looks: 0 when a token is available at now_ms, else
 * the wait in ms. b is not changed. */
int64_t cmn_bucket_wait(const cmn_bucket_t *b, double rate, double burst, int64_t now_ms);

typedef struct cmn_ratelimit cmn_ratelimit_t;

/* A limiter of rate tokens per second and burst tokens per key. NULL with
 * the reason in errstr when rate <= 0, burst < 1, or out of memory. */
cmn_ratelimit_t *cmn_ratelimit_new(double rate_per_sec, double burst, char *errstr, size_t errlen);

/* Takes a token from key's bucket (created full on first use). key is
 * copied; NULL means "". Returns 0 when taken, the wait in ms (> 0) when
 * not, or CMN_ERR_INVALID / CMN_ERR_NOMEM (< 0). Thread-safe. */
int64_t cmn_ratelimit_take(cmn_ratelimit_t *rl, const char *key, int64_t now_ms);

/* Number of buckets held (tests, metrics). Thread-safe. */
size_t cmn_ratelimit_size(cmn_ratelimit_t *rl);

/* Frees rl and its buckets. NULL is a no-op. */
void cmn_ratelimit_destroy(cmn_ratelimit_t *rl);

#endif
