/* sbx_storm.c - provider storms for the sandboxes. See sbx_storm.h. */
#include "sbx_storm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/err.h"

#define SPEC_MAX 256

void sbx_storm_cfg_init(sbx_storm_cfg_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->retry_after_s = 1;
    cfg->timeout_ms = 3000;
    cfg->seed = 1;
}

/* Reads a decimal share in [0, 1] spanning all of s. 0 or -1. */
static int parse_share(const char *s, double *out)
{
    char *end = NULL;
    if (s[0] == '\0' || s[0] == '+' || s[0] == '-' || s[0] == ' ')
        return -1;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= 0.0 && v <= 1.0))
        return -1;
    *out = v;
    return 0;
}

int sbx_storm_parse(const char *spec, sbx_storm_cfg_t *cfg, char *errstr, size_t errlen)
{
    char copy[SPEC_MAX];
    double shares[3] = {0.0, 0.0, 0.0};
    int seen[3] = {0, 0, 0};
    static const char *const KEYS[3] = {"500", "429", "timeout"};
    if (spec == NULL || cfg == NULL) {
        snprintf(errstr, errlen, "no storm given");
        return CMN_ERR_INVALID;
    }
    if (strlen(spec) >= sizeof copy) {
        snprintf(errstr, errlen, "longer than %d characters", SPEC_MAX - 1);
        return CMN_ERR_INVALID;
    }
    memcpy(copy, spec, strlen(spec) + 1);
    char *p = copy;
    while (*p != '\0') {
        char *item = p;
        size_t len = strcspn(p, ",");
        p += len;
        if (*p == ',') {
            *p++ = '\0';
            if (*p == '\0') {
                snprintf(errstr, errlen, "ends with a comma");
                return CMN_ERR_INVALID;
            }
        }
        char *eq = strchr(item, '=');
        if (eq == NULL) {
            snprintf(errstr, errlen, "'%s' is not KEY=SHARE", item);
            return CMN_ERR_INVALID;
        }
        *eq = '\0';
        int k = -1;
        for (int i = 0; i < 3; i++) {
            if (strcmp(item, KEYS[i]) == 0)
                k = i;
        }
        if (k < 0) {
            snprintf(errstr, errlen, "unknown key '%s' (500, 429 or timeout)", item);
            return CMN_ERR_INVALID;
        }
        if (seen[k]) {
            snprintf(errstr, errlen, "key '%s' given twice", item);
            return CMN_ERR_INVALID;
        }
        if (parse_share(eq + 1, &shares[k]) != 0) {
            snprintf(errstr, errlen, "%s: '%s' is not a share between 0 and 1", item, eq + 1);
            return CMN_ERR_INVALID;
        }
        seen[k] = 1;
    }
    double sum = shares[0] + shares[1] + shares[2];
    /* A little slack for decimal rounding: 0.7+0.2+0.1 is 1.0000000000000002. */
    if (sum > 1.0 + 1e-9) {
        snprintf(errstr, errlen, "shares add up to %g, more than 1", sum);
        return CMN_ERR_INVALID;
    }
    cfg->p500 = shares[0];
    cfg->p429 = shares[1];
    cfg->ptimeout = shares[2];
    return 0;
}

/* Reads a decimal integer in [min, max] spanning all of s. 0 or -1. */
static int parse_long(const char *s, long min, long max, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max || s[0] == ' ' || s[0] == '+')
        return -1;
    *out = v;
    return 0;
}

int sbx_storm_configure(sbx_storm_cfg_t *cfg, const char *spec, const char *retry_after_s, const char *timeout_ms,
                        const char *seed, char *errstr, size_t errlen)
{
    char why[160];
    long v = 0;
    sbx_storm_cfg_init(cfg);
    if (spec != NULL && spec[0] != '\0' && sbx_storm_parse(spec, cfg, why, sizeof why) != 0) {
        snprintf(errstr, errlen, "storm: %s", why);
        return CMN_ERR_INVALID;
    }
    if (retry_after_s != NULL && retry_after_s[0] != '\0') {
        if (parse_long(retry_after_s, 0, 3600, &v) != 0) {
            snprintf(errstr, errlen, "storm retry-after: must be 0..3600 seconds");
            return CMN_ERR_INVALID;
        }
        cfg->retry_after_s = (int)v;
    }
    if (timeout_ms != NULL && timeout_ms[0] != '\0') {
        if (parse_long(timeout_ms, 1, 600000, &v) != 0) {
            snprintf(errstr, errlen, "storm timeout: must be 1..600000 ms");
            return CMN_ERR_INVALID;
        }
        cfg->timeout_ms = (int)v;
    }
    if (seed != NULL && seed[0] != '\0') {
        if (parse_long(seed, 0, 2147483647L, &v) != 0) {
            snprintf(errstr, errlen, "storm seed: must be 0..2147483647");
            return CMN_ERR_INVALID;
        }
        cfg->seed = (uint64_t)v;
    }
    return 0;
}

int sbx_storm_active(const sbx_storm_cfg_t *cfg)
{
    return cfg != NULL && (cfg->p500 > 0.0 || cfg->p429 > 0.0 || cfg->ptimeout > 0.0);
}

/* splitmix64: small, fast, and every seed (0 included) gives a good stream. */
static uint64_t next_u64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

sbx_storm_kind_t sbx_storm_draw(const sbx_storm_cfg_t *cfg, uint64_t *state)
{
    if (!sbx_storm_active(cfg) || state == NULL)
        return SBX_STORM_NONE;
    /* The top 53 bits give a double uniform in [0, 1). */
    double u = (double)(next_u64(state) >> 11) * (1.0 / 9007199254740992.0);
    if (u < cfg->p500)
        return SBX_STORM_500;
    if (u < cfg->p500 + cfg->p429)
        return SBX_STORM_429;
    if (u < cfg->p500 + cfg->p429 + cfg->ptimeout)
        return SBX_STORM_TIMEOUT;
    return SBX_STORM_NONE;
}

const char *sbx_storm_name(sbx_storm_kind_t kind)
{
    switch (kind) {
    case SBX_STORM_500:
        return "500";
    case SBX_STORM_429:
        return "429";
    case SBX_STORM_TIMEOUT:
        return "timeout";
    case SBX_STORM_NONE:
    default:
        return "";
    }
}
