/* ratelimit.c - token buckets per sender key. See ratelimit.h. */
#include "crm/ratelimit.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/err.h"

/* The bucket is kept in its "virtual scheduling" form (GCRA, ITU-T I.371):
 * instead of a token count refilled at every call, it records tat, the time
 * at which the bucket will be full again. Taking a token pushes tat one
 * emission interval (1000 / rate ms) later; a take is allowed while tat is
 * at most (burst - 1) intervals ahead of now. This is exactly a token
 * bucket of size burst, in one double and without a refill step. Like any
 * bucket, one of size 1 cannot bank the time a caller comes back late
 * (waits are whole milliseconds, the interval at 80 msg/s is 12.5 ms), so
 * fast senders should be given a burst of a few tokens; docs/channels.md.
 * The epsilon absorbs the rounding of fractional intervals. */
#define TAT_EPSILON 1e-6
#define INITIAL_SLOTS 64u

static int params_ok(double rate, double burst)
{
    return isfinite(rate) && isfinite(burst) && rate > 0.0 && burst >= 1.0;
}

/* The wait (ms, >= 1) before b allows a take at now_ms, or 0. */
static int64_t bucket_wait_ms(const cmn_bucket_t *b, double rate, double burst, int64_t now_ms)
{
    double interval = 1000.0 / rate;
    double tolerance = (burst - 1.0) * interval;
    double tat = b->tat_ms > (double)now_ms ? b->tat_ms : (double)now_ms;
    double ahead = tat - (double)now_ms - tolerance;
    if (ahead <= TAT_EPSILON)
        return 0;
    double ms = ceil(ahead - TAT_EPSILON);
    return ms < 1.0 ? 1 : (int64_t)ms;
}

void cmn_bucket_init(cmn_bucket_t *b, double burst, int64_t now_ms)
{
    (void)burst; /* a bucket full at now_ms is the same whatever its size */
    b->tat_ms = (double)now_ms;
}

int64_t cmn_bucket_take(cmn_bucket_t *b, double rate, double burst, int64_t now_ms)
{
    if (b == NULL || !params_ok(rate, burst))
        return -1;
    int64_t wait = bucket_wait_ms(b, rate, burst, now_ms);
    if (wait == 0) {
        /* An idle bucket restarts from now: the time it was idle refills it
         * up to burst, and no further. */
        double tat = b->tat_ms > (double)now_ms ? b->tat_ms : (double)now_ms;
        b->tat_ms = tat + 1000.0 / rate;
    }
    return wait;
}

int64_t cmn_bucket_wait(const cmn_bucket_t *b, double rate, double burst, int64_t now_ms)
{
    if (b == NULL || !params_ok(rate, burst))
        return -1;
    return bucket_wait_ms(b, rate, burst, now_ms);
}

/* ------------------------------------------------------------ the map */

typedef struct entry {
    struct entry *next;
    cmn_bucket_t bucket;
    char key[]; /* NUL-terminated copy */
} entry_t;

struct cmn_ratelimit {
    pthread_mutex_t mu;
    double rate, burst;
    entry_t **slots; /* chained hash table; nslots is a power of two */
    size_t nslots;
    size_t count;
};

/* FNV-1a: sender keys are short phone numbers and ids, and this spreads
 * them well enough for a table that only needs to be fast, not hardened
 * (keys come from our own configuration and dispatches). */
static size_t hash_key(const char *key)
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)key; *p != '\0'; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    return (size_t)h;
}

cmn_ratelimit_t *cmn_ratelimit_new(double rate_per_sec, double burst, char *errstr, size_t errlen)
{
    if (!params_ok(rate_per_sec, burst)) {
        snprintf(errstr, errlen, "rate limit: rate must be > 0 and burst >= 1");
        return NULL;
    }
    cmn_ratelimit_t *rl = calloc(1, sizeof *rl);
    if (rl == NULL)
        goto nomem;
    rl->slots = calloc(INITIAL_SLOTS, sizeof *rl->slots);
    if (rl->slots == NULL)
        goto nomem;
    if (pthread_mutex_init(&rl->mu, NULL) != 0)
        goto nomem;
    rl->nslots = INITIAL_SLOTS;
    rl->rate = rate_per_sec;
    rl->burst = burst;
    return rl;
nomem:
    snprintf(errstr, errlen, "out of memory");
    if (rl != NULL)
        free(rl->slots);
    free(rl);
    return NULL;
}

/* Drops every bucket that is full at now_ms: a full bucket behaves exactly
 * like one created on demand, so forgetting it changes no decision. */
static void sweep_full_locked(cmn_ratelimit_t *rl, int64_t now_ms)
{
    for (size_t i = 0; i < rl->nslots; i++) {
        entry_t **link = &rl->slots[i];
        while (*link != NULL) {
            entry_t *e = *link;
            if (e->bucket.tat_ms <= (double)now_ms) {
                *link = e->next;
                free(e);
                rl->count--;
                continue;
            }
            link = &e->next;
        }
    }
}

/* Doubles the table; on allocation failure keeps the old one (only slower). */
static void grow_locked(cmn_ratelimit_t *rl)
{
    size_t n = rl->nslots * 2;
    entry_t **slots = calloc(n, sizeof *slots);
    if (slots == NULL)
        return;
    for (size_t i = 0; i < rl->nslots; i++) {
        entry_t *e = rl->slots[i];
        while (e != NULL) {
            entry_t *next = e->next;
            size_t at = hash_key(e->key) & (n - 1);
            e->next = slots[at];
            slots[at] = e;
            e = next;
        }
    }
    free(rl->slots);
    rl->slots = slots;
    rl->nslots = n;
}

static entry_t *find_or_add_locked(cmn_ratelimit_t *rl, const char *key, int64_t now_ms)
{
    size_t at = hash_key(key) & (rl->nslots - 1);
    for (entry_t *e = rl->slots[at]; e != NULL; e = e->next) {
        if (strcmp(e->key, key) == 0)
            return e;
    }
    if (rl->count + 1 > rl->nslots - rl->nslots / 4) {
        sweep_full_locked(rl, now_ms);
        if (rl->count + 1 > rl->nslots - rl->nslots / 4)
            grow_locked(rl);
        at = hash_key(key) & (rl->nslots - 1);
    }
    size_t len = strlen(key);
    entry_t *e = malloc(sizeof *e + len + 1);
    if (e == NULL)
        return NULL;
    memcpy(e->key, key, len + 1);
    cmn_bucket_init(&e->bucket, rl->burst, now_ms);
    e->next = rl->slots[at];
    rl->slots[at] = e;
    rl->count++;
    return e;
}

int64_t cmn_ratelimit_take(cmn_ratelimit_t *rl, const char *key, int64_t now_ms)
{
    if (rl == NULL)
        return CMN_ERR_INVALID;
    int64_t rc;
    pthread_mutex_lock(&rl->mu);
    entry_t *e = find_or_add_locked(rl, key != NULL ? key : "", now_ms);
    if (e == NULL)
        rc = CMN_ERR_NOMEM;
    else
        rc = cmn_bucket_take(&e->bucket, rl->rate, rl->burst, now_ms);
    pthread_mutex_unlock(&rl->mu);
    return rc;
}

size_t cmn_ratelimit_size(cmn_ratelimit_t *rl)
{
    if (rl == NULL)
        return 0;
    pthread_mutex_lock(&rl->mu);
    size_t n = rl->count;
    pthread_mutex_unlock(&rl->mu);
    return n;
}

void cmn_ratelimit_destroy(cmn_ratelimit_t *rl)
{
    if (rl == NULL)
        return;
    for (size_t i = 0; i < rl->nslots; i++) {
        entry_t *e = rl->slots[i];
        while (e != NULL) {
            entry_t *next = e->next;
            free(e);
            e = next;
        }
    }
    free(rl->slots);
    pthread_mutex_destroy(&rl->mu);
    free(rl);
}
