/* delay.c - delay tiers: tier choice, topic names, headers and the tier
 * consumer's decisions. The reasoning behind the rules is in delay.h. */
#include "crm/delay.h"

#include <stdio.h>
#include <string.h>

#include "crm/err.h"

#define MAX_DUE_AT_DIGITS 15 /* CMN_DELAY_MAX_DUE_AT_MS has 15 digits */

static const cmn_delay_tier_t retry_tiers[] = {
    {"5s", INT64_C(5000)},
    {"30s", INT64_C(30000)},
    {"5m", INT64_C(300000)},
    {"30m", INT64_C(1800000)},
};

static const cmn_delay_tier_t defer_tiers[] = {
    {"1m", INT64_C(60000)},
    {"10m", INT64_C(600000)},
    {"1h", INT64_C(3600000)},
};

#define N_RETRY (sizeof retry_tiers / sizeof retry_tiers[0])
#define N_DEFER (sizeof defer_tiers / sizeof defer_tiers[0])

const cmn_delay_tier_t *cmn_delay_tiers(cmn_delay_kind_t kind, size_t *n)
{
    const cmn_delay_tier_t *t = NULL;
    size_t count = 0;
    if (kind == CMN_DELAY_RETRY) {
        t = retry_tiers;
        count = N_RETRY;
    } else if (kind == CMN_DELAY_DEFER) {
        t = defer_tiers;
        count = N_DEFER;
    }
    if (n != NULL) {
        *n = count;
    }
    return t;
}

int cmn_delay_choose_tier(cmn_delay_kind_t kind, int64_t wait_ms, size_t *tier)
{
    size_t n = 0;
    const cmn_delay_tier_t *t = cmn_delay_tiers(kind, &n);
    if (t == NULL || tier == NULL) {
        return CMN_ERR_INVALID;
    }
    /* Comparing T - slack <= W rather than T <= W + slack keeps a huge wait
     * from overflowing. */
    size_t best = 0;
    for (size_t i = 0; i < n; i++) {
        if (t[i].ms - CMN_DELAY_SLACK_MS <= wait_ms) {
            best = i;
        }
    }
    *tier = best;
    return 0;
}

static int valid_channel(cmn_channel_t c)
{
    return (int)c >= 0 && (int)c < CMN_CHANNEL__COUNT;
}

/* snprintf into out, mapping truncation to CMN_ERR_OVERFLOW. */
static int put_name(char *out, size_t outlen, int len)
{
    if (len < 0) {
        return CMN_ERR_INVALID;
    }
    if ((size_t)len >= outlen) {
        out[0] = '\0';
        return CMN_ERR_OVERFLOW;
    }
    return 0;
}

int cmn_delay_topic_name(cmn_delay_kind_t kind, cmn_channel_t channel, size_t tier, char *out, size_t outlen)
{
    size_t n = 0;
    const cmn_delay_tier_t *t = cmn_delay_tiers(kind, &n);
    if (out == NULL || outlen == 0 || t == NULL || tier >= n) {
        return CMN_ERR_INVALID;
    }
    if (kind == CMN_DELAY_DEFER) {
        return put_name(out, outlen, snprintf(out, outlen, "crm.defer.%s", t[tier].name));
    }
    if (!valid_channel(channel)) {
        return CMN_ERR_INVALID;
    }
    return put_name(out, outlen,
                    snprintf(out, outlen, "crm.retry.%s.%s", cmn_channel_name(channel), t[tier].name));
}

int cmn_delay_target_name(cmn_delay_kind_t kind, cmn_channel_t channel, char *out, size_t outlen)
{
    if (out == NULL || outlen == 0) {
        return CMN_ERR_INVALID;
    }
    if (kind == CMN_DELAY_DEFER) {
        /* A deferred request goes back through the router, which evaluates
         * it afresh: the client may have opted out while it waited. */
        return put_name(out, outlen, snprintf(out, outlen, "crm.requests"));
    }
    if (kind != CMN_DELAY_RETRY || !valid_channel(channel)) {
        return CMN_ERR_INVALID;
    }
    return put_name(out, outlen, snprintf(out, outlen, "crm.send.%s", cmn_channel_name(channel)));
}

/* Finds tier name s among kind's tiers. */
static int find_tier(cmn_delay_kind_t kind, const char *s, size_t *tier)
{
    size_t n = 0;
    const cmn_delay_tier_t *t = cmn_delay_tiers(kind, &n);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s, t[i].name) == 0) {
            *tier = i;
            return 0;
        }
    }
    return CMN_ERR_INVALID;
}

int cmn_delay_topic_parse(const char *topic, cmn_delay_topic_t *out)
{
    static const char defer_prefix[] = "crm.defer.";
    static const char retry_prefix[] = "crm.retry.";
    cmn_delay_topic_t t = {CMN_DELAY_DEFER, CMN_CHANNEL_NONE, 0, 0};
    if (topic == NULL || out == NULL) {
        return CMN_ERR_INVALID;
    }
    if (strncmp(topic, defer_prefix, sizeof defer_prefix - 1) == 0) {
        if (find_tier(CMN_DELAY_DEFER, topic + sizeof defer_prefix - 1, &t.tier) != 0) {
            return CMN_ERR_INVALID;
        }
    } else if (strncmp(topic, retry_prefix, sizeof retry_prefix - 1) == 0) {
        const char *ch = topic + sizeof retry_prefix - 1;
        const char *dot = strchr(ch, '.');
        char name[16];
        if (dot == NULL || (size_t)(dot - ch) >= sizeof name) {
            return CMN_ERR_INVALID;
        }
        memcpy(name, ch, (size_t)(dot - ch));
        name[dot - ch] = '\0';
        t.kind = CMN_DELAY_RETRY;
        t.channel = cmn_channel_parse(name);
        if (t.channel == CMN_CHANNEL_NONE || find_tier(CMN_DELAY_RETRY, dot + 1, &t.tier) != 0) {
            return CMN_ERR_INVALID;
        }
    } else {
        return CMN_ERR_INVALID;
    }
    t.tier_ms = cmn_delay_tiers(t.kind, NULL)[t.tier].ms;
    *out = t;
    return 0;
}

int cmn_delay_plan_hop(cmn_delay_kind_t kind, cmn_channel_t channel, int64_t now_ms, int64_t due_at_ms,
                       cmn_delay_hop_t *out)
{
    int rc = 0;
    if (out == NULL) {
        return CMN_ERR_INVALID;
    }
    memset(out, 0, sizeof *out);
    if (due_at_ms <= 0 || due_at_ms > CMN_DELAY_MAX_DUE_AT_MS) {
        rc = CMN_ERR_INVALID;
        goto cleanup;
    }
    rc = cmn_delay_target_name(kind, channel, out->target, sizeof out->target);
    if (rc != 0) {
        goto cleanup;
    }
    snprintf(out->due_at, sizeof out->due_at, "%lld", (long long)due_at_ms);
    /* Written as a comparison, not a subtraction, so no pair of int64 values
     * can overflow. */
    if (due_at_ms <= now_ms) {
        out->direct = 1;
        memcpy(out->topic, out->target, sizeof out->topic);
        goto cleanup;
    }
    rc = cmn_delay_choose_tier(kind, due_at_ms - now_ms, &out->tier);
    if (rc != 0) {
        goto cleanup;
    }
    rc = cmn_delay_topic_name(kind, channel, out->tier, out->topic, sizeof out->topic);

cleanup:
    if (rc != 0) {
        memset(out, 0, sizeof *out);
    }
    return rc;
}

int cmn_delay_plan_watch(int64_t now_ms, int64_t due_at_ms, cmn_channel_t target, cmn_delay_hop_t *out)
{
    int rc = 0;
    if (out == NULL) {
        return CMN_ERR_INVALID;
    }
    memset(out, 0, sizeof *out);
    if (!valid_channel(target) || due_at_ms <= 0 || due_at_ms > CMN_DELAY_MAX_DUE_AT_MS) {
        rc = CMN_ERR_INVALID;
        goto cleanup;
    }
    snprintf(out->due_at, sizeof out->due_at, "%lld", (long long)due_at_ms);
    rc = put_name(out->target, sizeof out->target,
                  snprintf(out->target, sizeof out->target, "crm.send.%s", cmn_channel_name(target)));
    if (rc != 0) {
        goto cleanup;
    }
    /* An already due watch still goes through a tier (the smallest, which
     * releases it at its due time, i.e. at once): only the defer consumer
     * asks the guard, and a watch that skipped it would send the fallback
     * whatever the receipt said. */
    int64_t wait = due_at_ms > now_ms ? due_at_ms - now_ms : 0;
    rc = cmn_delay_choose_tier(CMN_DELAY_DEFER, wait, &out->tier);
    if (rc != 0) {
        goto cleanup;
    }
    rc = cmn_delay_topic_name(CMN_DELAY_DEFER, CMN_CHANNEL_NONE, out->tier, out->topic, sizeof out->topic);

cleanup:
    if (rc != 0) {
        memset(out, 0, sizeof *out);
    }
    return rc;
}

/* 1 when target[0..len) is exactly crm.send.<a real channel>. */
static int is_send_topic(const char *target, size_t len)
{
    static const char prefix[] = "crm.send.";
    char name[16];
    size_t plen = sizeof prefix - 1;
    if (len <= plen || len - plen >= sizeof name || memcmp(target, prefix, plen) != 0) {
        return 0;
    }
    memcpy(name, target + plen, len - plen);
    name[len - plen] = '\0';
    /* cmn_channel_parse() is the spelling check; the round trip refuses any
     * alias or case variant it might accept. */
    cmn_channel_t c = cmn_channel_parse(name);
    return valid_channel(c) && strcmp(cmn_channel_name(c), name) == 0;
}

/* Writes "<header>: <why>" into reason (when given) and returns
 * CMN_ERR_INVALID, so every failure below is one line. */
static int bad_header(char *reason, size_t reasonlen, const char *header, const char *why)
{
    if (reason != NULL && reasonlen > 0) {
        snprintf(reason, reasonlen, "%s: %s", header, why);
    }
    return CMN_ERR_INVALID;
}

static int parse_due_at(const char *s, size_t len, int64_t *out, const char **why)
{
    if (s == NULL) {
        *why = "is missing";
        return CMN_ERR_INVALID;
    }
    if (len == 0) {
        *why = "is empty";
        return CMN_ERR_INVALID;
    }
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            *why = "must be epoch milliseconds as decimal digits";
            return CMN_ERR_INVALID;
        }
    }
    /* A leading zero is not how any of our producers writes a number; it
     * marks a record written by something else. */
    if (s[0] == '0') {
        *why = "must be a positive number without leading zeros";
        return CMN_ERR_INVALID;
    }
    if (len > MAX_DUE_AT_DIGITS) {
        *why = "is after year 9999";
        return CMN_ERR_INVALID;
    }
    for (size_t i = 0; i < len; i++) {
        v = v * 10 + (s[i] - '0');
    }
    if (v > CMN_DELAY_MAX_DUE_AT_MS) {
        *why = "is after year 9999";
        return CMN_ERR_INVALID;
    }
    *out = v;
    return 0;
}

int cmn_delay_headers_parse(const cmn_delay_topic_t *source, const void *due_at, size_t due_at_len,
                            const void *target, size_t target_len, cmn_delay_headers_t *out, char *reason,
                            size_t reasonlen)
{
    char want[CMN_DELAY_TOPIC_MAX];
    const char *why = NULL;
    int64_t due = 0;
    if (reason != NULL && reasonlen > 0) {
        reason[0] = '\0';
    }
    if (source == NULL || out == NULL) {
        return CMN_ERR_INVALID;
    }
    memset(out, 0, sizeof *out);
    if (parse_due_at(due_at, due_at_len, &due, &why) != 0) {
        return bad_header(reason, reasonlen, CMN_DELAY_HDR_DUE_AT, why);
    }
    if (cmn_delay_target_name(source->kind, source->channel, want, sizeof want) != 0) {
        return bad_header(reason, reasonlen, CMN_DELAY_HDR_TARGET, "the source topic has no valid target");
    }
    if (target == NULL) {
        return bad_header(reason, reasonlen, CMN_DELAY_HDR_TARGET, "is missing");
    }
    /* Exact bytes: the value must be the one target this tier feeds, so a
     * crafted header cannot move a message to another channel or topic. The
     * defer tiers also carry receipt watches bound for crm.send.<channel>;
     * those are delivered only through the consumer's guard. */
    if (target_len == strlen(want) && memcmp(target, want, target_len) == 0) {
        out->due_at_ms = due;
        memcpy(out->target, want, sizeof out->target);
        return 0;
    }
    if (source->kind == CMN_DELAY_DEFER && is_send_topic(target, target_len)) {
        out->due_at_ms = due;
        memcpy(out->target, target, target_len);
        out->target[target_len] = '\0';
        out->alternate = 1;
        return 0;
    }
    char why_buf[160]; /* "must be " + the longest target + the rest */
    if (source->kind == CMN_DELAY_DEFER) {
        snprintf(why_buf, sizeof why_buf, "must be %s or crm.send.<channel> for a record on this topic", want);
    } else {
        snprintf(why_buf, sizeof why_buf, "must be %s for a record on this topic", want);
    }
    return bad_header(reason, reasonlen, CMN_DELAY_HDR_TARGET, why_buf);
}

int cmn_delay_next_step(const cmn_delay_topic_t *source, int64_t entered_at_ms, int64_t due_at_ms,
                        int64_t now_ms, cmn_delay_step_t *out)
{
    if (source == NULL || out == NULL) {
        return CMN_ERR_INVALID;
    }
    memset(out, 0, sizeof *out);
    /* A due time is a real instant (headers_parse guarantees 1..9999-12-31),
     * which also keeps the subtractions below from overflowing. */
    if (due_at_ms <= 0 || due_at_ms > CMN_DELAY_MAX_DUE_AT_MS) {
        return CMN_ERR_INVALID;
    }
    if (now_ms >= due_at_ms) {
        out->action = CMN_DELAY_DELIVER;
        return 0;
    }
    /* release = min(due_at, entered + tier); an unknown timestamp counts as
     * released now. The addition is guarded against overflow. */
    int64_t release = now_ms;
    if (entered_at_ms > 0) {
        release = due_at_ms;
        if (entered_at_ms <= due_at_ms - source->tier_ms) {
            release = entered_at_ms + source->tier_ms;
        }
    }
    if (now_ms < release) {
        out->action = CMN_DELAY_PAUSE;
        out->resume_at_ms = release;
        return 0;
    }
    out->action = CMN_DELAY_REDELAY;
    return cmn_delay_choose_tier(source->kind, due_at_ms - now_ms, &out->tier);
}

int cmn_delay_pause_plan(const cmn_delay_partition_t *heads, size_t n, int64_t now_ms, unsigned char *pause,
                         cmn_delay_pause_plan_t *out)
{
    if (out == NULL || (n > 0 && (heads == NULL || pause == NULL))) {
        return CMN_ERR_INVALID;
    }
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < n; i++) {
        pause[i] = heads[i].has_head && heads[i].ready_at_ms > now_ms;
        if (!pause[i]) {
            continue;
        }
        if (out->n_paused == 0 || heads[i].ready_at_ms < out->resume_at_ms) {
            out->resume_at_ms = heads[i].ready_at_ms;
        }
        out->n_paused++;
    }
    return 0;
}

int64_t cmn_delay_poll_timeout_ms(const cmn_delay_pause_plan_t *plan, int64_t now_ms, int64_t max_ms)
{
    if (max_ms < 0) {
        max_ms = 0;
    }
    if (plan == NULL || plan->n_paused == 0) {
        return max_ms;
    }
    if (plan->resume_at_ms <= now_ms) {
        return 0;
    }
    /* resume_at > now, so the wait is positive; comparing resume_at - max
     * with now instead of subtracting now keeps a far-past clock value from
     * overflowing. */
    if (plan->resume_at_ms - max_ms >= now_ms) {
        return max_ms;
    }
    return plan->resume_at_ms - now_ms;
}
