/* outcome.c - the planner of retries, fallback and dead letters. See
 * crm/outcome.h for the rules and why they are what they are. */
#include "crm/outcome.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "crm/err.h"

const char *cmn_outcome_action_name(cmn_outcome_action_t a)
{
    switch (a) {
    case CMN_OUTCOME_SENT:
        return "sent";
    case CMN_OUTCOME_RETRY:
        return "retry";
    case CMN_OUTCOME_FALLBACK:
        return "fallback";
    case CMN_OUTCOME_FAILED:
        return "failed";
    case CMN_OUTCOME_DEAD:
        return "dead";
    }
    return "unknown";
}

const char *cmn_outcome_why_name(cmn_outcome_why_t w)
{
    switch (w) {
    case CMN_OUTCOME_WHY_NONE:
        return "";
    case CMN_OUTCOME_WHY_PERMANENT:
        return "permanent";
    case CMN_OUTCOME_WHY_ATTEMPTS:
        return "attempts_exhausted";
    case CMN_OUTCOME_WHY_DEADLINE:
        return "deadline_exceeded";
    }
    return "";
}

void cmn_outcome_policy_default(cmn_backoff_t *p)
{
    if (p == NULL)
        return;
    p->max_attempts = CMN_OUTCOME_DEFAULT_MAX_ATTEMPTS;
    p->base_ms = CMN_OUTCOME_DEFAULT_BASE_MS;
    p->cap_ms = CMN_OUTCOME_DEFAULT_CAP_MS;
}

int cmn_outcome_policy_check(const cmn_backoff_t *p, char *errstr, size_t errlen)
{
    const char *why = NULL;
    if (p == NULL)
        why = "no retry policy";
    else if (p->max_attempts < CMN_OUTCOME_MAX_ATTEMPTS_MIN || p->max_attempts > CMN_OUTCOME_MAX_ATTEMPTS_MAX)
        why = "max_attempts must be 1..50";
    else if (p->base_ms <= 0)
        why = "base_ms must be positive";
    else if (p->cap_ms < p->base_ms)
        why = "cap_ms must not be below base_ms";
    if (why == NULL)
        return 0;
    if (errstr != NULL && errlen > 0)
        snprintf(errstr, errlen, "%s", why);
    return CMN_ERR_INVALID;
}

static int real_channel(cmn_channel_t c)
{
    return (int)c >= 0 && c < CMN_CHANNEL__COUNT;
}

int cmn_outcome_next_channel(const cmn_dispatch_t *d, cmn_channel_t *next, const char **to, cmn_channel_t *rest,
                             size_t *n_rest, cmn_channel_t *skipped, size_t *n_skipped)
{
    *next = CMN_CHANNEL_NONE;
    *to = NULL;
    *n_rest = 0;
    if (n_skipped != NULL)
        *n_skipped = 0;
    if (d == NULL)
        return 0;
    size_t n = d->n_fallback <= CMN_CHANNEL__COUNT ? d->n_fallback : CMN_CHANNEL__COUNT;
    for (size_t i = 0; i < n; i++) {
        cmn_channel_t c = d->fallback[i];
        const char *addr = real_channel(c) && c != d->channel ? cmn_recipient_address(&d->recipient, c) : NULL;
        if (addr == NULL || addr[0] == '\0') {
            if (skipped != NULL && n_skipped != NULL && real_channel(c))
                skipped[(*n_skipped)++] = c;
            continue;
        }
        *next = c;
        *to = addr;
        for (size_t k = i + 1; k < n; k++)
            rest[(*n_rest)++] = d->fallback[k];
        return 1;
    }
    return 0;
}

/* "20500: Internal Server Error", or whichever half exists, or "unknown". */
static void last_error(const cmn_worker_result_t *res, char *out, size_t outlen)
{
    int has_code = res->error_code[0] != '\0';
    int has_msg = res->error_message[0] != '\0';
    if (has_code && has_msg)
        snprintf(out, outlen, "%s: %s", res->error_code, res->error_message);
    else if (has_code || has_msg)
        snprintf(out, outlen, "%s", has_code ? res->error_code : res->error_message);
    else
        snprintf(out, outlen, "unknown");
}

/* Appends to the NUL-terminated text in buf; a reason line that does not
 * fit is cut, which only shortens the provider's message. */
static void append(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void append(char *buf, size_t cap, const char *fmt, ...)
{
    size_t len = strlen(buf);
    if (len + 1 >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + len, cap - len, fmt, ap);
    va_end(ap);
}

/* The first part of the reason line: what ended this channel. */
static void describe_end(const cmn_dispatch_t *d, const cmn_worker_result_t *res, cmn_outcome_why_t why,
                         int64_t late_by_ms, char *out, size_t outlen)
{
    char err[CMN_WORKER_CODE_MAX + CMN_WORKER_TEXT_MAX + 4];
    const char *ch = cmn_channel_name(d->channel);
    last_error(res, err, sizeof err);
    switch (why) {
    case CMN_OUTCOME_WHY_PERMANENT:
        snprintf(out, outlen, "permanent failure on %s at attempt %d, error %s", ch, d->attempt, err);
        break;
    case CMN_OUTCOME_WHY_ATTEMPTS:
        snprintf(out, outlen, "retries exhausted: %d attempts on %s, last error %s", d->attempt, ch, err);
        break;
    case CMN_OUTCOME_WHY_DEADLINE:
        if (late_by_ms > 0)
            snprintf(out, outlen,
                     "deadline exceeded: attempt %d on %s failed and the next would be due %lld ms after the "
                     "deadline, last error %s",
                     d->attempt, ch, (long long)late_by_ms, err);
        else
            snprintf(out, outlen, "deadline exceeded: attempt %d on %s failed after the deadline, last error %s",
                     d->attempt, ch, err);
        break;
    case CMN_OUTCOME_WHY_NONE:
        out[0] = '\0';
        break;
    }
}

int cmn_outcome_plan(const cmn_dispatch_t *d, const cmn_worker_result_t *res, const cmn_backoff_t *policy,
                     int64_t now_ms, uint64_t rnd, cmn_outcome_t *out)
{
    if (out == NULL)
        return CMN_ERR_INVALID;
    memset(out, 0, sizeof *out);
    out->next_channel = CMN_CHANNEL_NONE;
    if (d == NULL || res == NULL || cmn_outcome_policy_check(policy, NULL, 0) != 0 || d->attempt < 1 ||
        !real_channel(d->channel) || now_ms < 1 || now_ms > CMN_DELAY_MAX_DUE_AT_MS)
        return CMN_ERR_INVALID;

    if (res->cls == CMN_WORKER_SENT) {
        out->action = CMN_OUTCOME_SENT;
        return 0;
    }

    /* The deadline counts as passed only strictly after it, the way
     * cmn_backoff_should_retry() reads it. */
    int past_deadline = d->deadline_ms > 0 && now_ms > d->deadline_ms;
    int64_t late_by = 0;
    if (res->cls == CMN_WORKER_RETRYABLE) {
        int64_t hint = res->retry_after_ms > 0 ? res->retry_after_ms : 0;
        int64_t delay = cmn_backoff_delay_ms(policy, d->attempt, rnd, hint);
        if (cmn_backoff_should_retry(policy, d->attempt, now_ms, delay, d->deadline_ms) &&
            delay <= CMN_DELAY_MAX_DUE_AT_MS - now_ms) {
            out->action = CMN_OUTCOME_RETRY;
            out->next_attempt = d->attempt + 1;
            out->delay_ms = delay;
            out->due_at_ms = now_ms + delay;
            out->retry_after_ms = hint;
            if (cmn_delay_plan_hop(CMN_DELAY_RETRY, d->channel, now_ms, out->due_at_ms, &out->hop) != 0) {
                memset(out, 0, sizeof *out);
                return CMN_ERR_INVALID;
            }
            return 0;
        }
        /* max_attempts is checked first by should_retry, so it names the
         * cause whenever it applies; otherwise it was the deadline. */
        if (d->attempt >= policy->max_attempts) {
            out->why = CMN_OUTCOME_WHY_ATTEMPTS;
        } else {
            out->why = CMN_OUTCOME_WHY_DEADLINE;
            if (d->deadline_ms > 0 && !past_deadline)
                late_by = now_ms + delay - d->deadline_ms;
        }
    } else {
        out->why = CMN_OUTCOME_WHY_PERMANENT;
    }

    describe_end(d, res, out->why, late_by, out->reason, sizeof out->reason);

    cmn_channel_t next = CMN_CHANNEL_NONE;
    const char *to = NULL;
    int found = cmn_outcome_next_channel(d, &next, &to, out->plan, &out->n_plan, out->skipped, &out->n_skipped);
    if (found && !past_deadline) {
        out->action = CMN_OUTCOME_FALLBACK;
        out->next_channel = next;
        out->next_hop = d->hop + 1;
        out->next_to = to;
        append(out->reason, sizeof out->reason, "; falling back to %s", cmn_channel_name(next));
        return 0;
    }
    /* Nothing to fall back to, or too late to send anything at all. */
    out->action = res->cls == CMN_WORKER_PERMANENT ? CMN_OUTCOME_FAILED : CMN_OUTCOME_DEAD;
    if (found)
        append(out->reason, sizeof out->reason, "; no fallback to %s: the deadline has passed",
               cmn_channel_name(next));
    /* The plan describes a fallback that is not taken. */
    out->n_plan = 0;
    return 0;
}
