/* sbx_storm.h - provider storms for the sandboxes: a share of the sends is
 * answered with a server error, a rate limit or no timely answer at all, so
 * the chaos tests (docs/chaos.md) can drive the workers' retry paths the way
 * a bad hour at Twilio or Meta would.
 *
 * A storm is written "500=0.30,429=0.10,timeout=0.05": each send draws one
 * number in [0, 1) and gets, in that order of the ranges, an HTTP 500, an
 * HTTP 429 (with Retry-After), a held answer (longer than the worker's HTTP
 * time limit, then a 503), or the normal answer. The shares add up to at
 * most 1. The draws come from a seeded generator (splitmix64), so a seed
 * gives the same sequence of outcomes on every run; which request gets
 * which outcome still depends on arrival order.
 *
 * Shared by the Twilio and the Meta sandbox (each answers with its own
 * provider's error body). Pure: the caller owns the generator state and
 * serialises draws. */
#ifndef SBX_STORM_H
#define SBX_STORM_H

#include <stddef.h>
#include <stdint.h>

typedef enum sbx_storm_kind {
    SBX_STORM_NONE = 0, /* answer normally */
    SBX_STORM_500,      /* a server error */
    SBX_STORM_429,      /* a rate limit, with Retry-After */
    SBX_STORM_TIMEOUT   /* hold the answer for timeout_ms, then a 503 */
} sbx_storm_kind_t;

typedef struct sbx_storm_cfg {
    double p500, p429, ptimeout; /* shares in [0, 1], summing to at most 1 */
    int retry_after_s;           /* Retry-After of a storm 429 (0: no header) */
    int timeout_ms;              /* how long a held answer is held */
    uint64_t seed;
} sbx_storm_cfg_t;

/* The defaults: no storm, Retry-After 1 s, a 3 s hold, seed 1. */
void sbx_storm_cfg_init(sbx_storm_cfg_t *cfg);

/* Parses a spec like "500=0.30,429=0.10,timeout=0.05" into cfg's shares
 * (the other members are left alone). Keys: 500, 429, timeout; each at
 * most once; values are decimals in [0, 1]; spaces are not allowed; ""
 * means no storm. Returns 0, or CMN_ERR_INVALID with the reason in errstr
 * ("unknown key '404'", "shares add up to 1.2, more than 1"). */
int sbx_storm_parse(const char *spec, sbx_storm_cfg_t *cfg, char *errstr, size_t errlen);

/* Sets up cfg from option texts, each NULL or "" for its default: the
 * spec (sbx_storm_parse), the Retry-After in seconds (0..3600), the hold
 * in milliseconds (1..600000) and the seed (0..2^31-1). The sandboxes pass
 * their --storm* flags, else the SANDBOX_STORM* variables. Returns 0, or
 * CMN_ERR_INVALID with "<option>: <why>" in errstr. */
int sbx_storm_configure(sbx_storm_cfg_t *cfg, const char *spec, const char *retry_after_s, const char *timeout_ms,
                        const char *seed, char *errstr, size_t errlen);

/* 1 when any share is above 0. */
int sbx_storm_active(const sbx_storm_cfg_t *cfg);

/* The next outcome; *state is the generator (start it at cfg->seed). */
sbx_storm_kind_t sbx_storm_draw(const sbx_storm_cfg_t *cfg, uint64_t *state);

/* "500", "429", "timeout" or "" for SBX_STORM_NONE. */
const char *sbx_storm_name(sbx_storm_kind_t kind);

#endif
