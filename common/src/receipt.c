/* receipt.c - receipt-driven fallback rules. See crm/receipt.h. */
#include "crm/receipt.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "crm/err.h"

void cmn_receipt_policy_default(cmn_receipt_policy_t *p)
{
    memset(p, 0, sizeof *p);
    p->deadline_ms[CMN_URGENCY_CRITICAL] = 120 * 1000;
    p->deadline_ms[CMN_URGENCY_HIGH] = 10 * 60 * 1000;
    p->check_interval_ms = 15 * 1000;
    p->max_wait_ms = 24LL * 3600 * 1000;
}

int cmn_receipt_channel_has_receipts(cmn_channel_t c)
{
    return c == CMN_CHANNEL_SMS || c == CMN_CHANNEL_WHATSAPP;
}

static int policy_ok(const cmn_receipt_policy_t *p)
{
    if (p == NULL || p->check_interval_ms <= 0 || p->max_wait_ms <= 0)
        return 0;
    for (size_t i = 0; i < sizeof p->deadline_ms / sizeof p->deadline_ms[0]; i++) {
        if (p->deadline_ms[i] < 0)
            return 0;
    }
    return 1;
}

int cmn_receipt_watch(const cmn_receipt_policy_t *p, const char *communication_id, int hop, cmn_urgency_t u,
                      int64_t sent_at_ms, cmn_receipt_guard_t *guard, int64_t *first_check_at_ms)
{
    if (!policy_ok(p) || communication_id == NULL || !cmn_uuid_is_valid(communication_id) || hop < 0 ||
        (int)u < 0 || (int)u > CMN_URGENCY_CRITICAL || sent_at_ms <= 0 || guard == NULL ||
        first_check_at_ms == NULL)
        return CMN_ERR_INVALID;
    memset(guard, 0, sizeof *guard);
    memcpy(guard->communication_id, communication_id, CMN_UUID_STR_LEN);
    guard->hop = hop;
    guard->sent_at_ms = sent_at_ms;
    int64_t deadline = p->deadline_ms[u];
    guard->deadline_at_ms = deadline > 0 ? sent_at_ms + deadline : 0;
    int64_t first = sent_at_ms + p->check_interval_ms;
    if (guard->deadline_at_ms > 0 && guard->deadline_at_ms < first)
        first = guard->deadline_at_ms;
    *first_check_at_ms = first;
    return 0;
}

int cmn_receipt_guard_format(const cmn_receipt_guard_t *g, char *out, size_t outlen)
{
    if (g == NULL || out == NULL || outlen == 0 || g->hop < 0 || g->sent_at_ms <= 0 || g->deadline_at_ms < 0 ||
        !cmn_uuid_is_valid(g->communication_id))
        return CMN_ERR_INVALID;
    int n = snprintf(out, outlen, "r1:%s:%d:%" PRId64 ":%" PRId64, g->communication_id, g->hop, g->sent_at_ms,
                     g->deadline_at_ms);
    if (n < 0 || (size_t)n >= outlen)
        return CMN_ERR_OVERFLOW;
    return 0;
}

/* Reads a decimal integer field of s[0..len) up to ':' or the end: digits
 * only, no leading zero unless the value is 0, at most 18 digits (no
 * overflow). Advances *pos past the separator. */
static int read_number(const char *s, size_t len, size_t *pos, int last, int64_t *out)
{
    size_t start = *pos;
    size_t i = start;
    int64_t v = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9') {
        if (i - start >= 18)
            return CMN_ERR_INVALID;
        v = v * 10 + (s[i] - '0');
        i++;
    }
    if (i == start || (s[start] == '0' && i - start > 1))
        return CMN_ERR_INVALID;
    if (last) {
        if (i != len)
            return CMN_ERR_INVALID;
    } else {
        if (i >= len || s[i] != ':')
            return CMN_ERR_INVALID;
        i++;
    }
    *pos = i;
    *out = v;
    return 0;
}

int cmn_receipt_guard_parse(const void *value, size_t len, cmn_receipt_guard_t *out)
{
    const char *s = value;
    size_t pos = 3;
    int64_t hop = 0;
    if (out == NULL)
        return CMN_ERR_INVALID;
    memset(out, 0, sizeof *out);
    if (s == NULL || len < 3 + CMN_UUID_STR_LEN + 1 || memcmp(s, "r1:", 3) != 0)
        return CMN_ERR_INVALID;
    memcpy(out->communication_id, s + pos, CMN_UUID_STR_LEN);
    out->communication_id[CMN_UUID_STR_LEN] = '\0';
    pos += CMN_UUID_STR_LEN;
    if (!cmn_uuid_is_valid(out->communication_id) || s[pos] != ':')
        goto bad;
    pos++;
    if (read_number(s, len, &pos, 0, &hop) != 0 || hop > 1000 ||
        read_number(s, len, &pos, 0, &out->sent_at_ms) != 0 || out->sent_at_ms == 0 ||
        read_number(s, len, &pos, 1, &out->deadline_at_ms) != 0)
        goto bad;
    out->hop = (int)hop;
    return 0;
bad:
    memset(out, 0, sizeof *out);
    return CMN_ERR_INVALID;
}

const char *cmn_receipt_why_name(cmn_receipt_why_t w)
{
    switch (w) {
    case CMN_RECEIPT_WHY_DELIVERED:
        return "delivered";
    case CMN_RECEIPT_WHY_MOVED_ON:
        return "moved_on";
    case CMN_RECEIPT_WHY_GAVE_UP:
        return "gave_up";
    case CMN_RECEIPT_WHY_FAILED:
        return "receipt_failed";
    case CMN_RECEIPT_WHY_DEADLINE:
        return "receipt_deadline";
    case CMN_RECEIPT_WHY_WAITING:
        return "waiting";
    case CMN_RECEIPT_WHY_NONE:
        break;
    }
    return "";
}

int cmn_receipt_decide(const cmn_receipt_policy_t *p, const cmn_receipt_guard_t *g, const cmn_receipt_facts_t *facts,
                       int64_t now_ms, cmn_receipt_decision_t *out)
{
    if (out == NULL)
        return CMN_ERR_INVALID;
    memset(out, 0, sizeof *out);
    if (!policy_ok(p) || g == NULL || facts == NULL || g->hop < 0 || g->sent_at_ms <= 0)
        return CMN_ERR_INVALID;

    if (facts->found && facts->current_hop > g->hop) {
        out->action = CMN_RECEIPT_DROP;
        out->why = CMN_RECEIPT_WHY_MOVED_ON;
        return 0;
    }
    /* A delivery wins over a failure recorded for the same hop: WhatsApp can
     * report a failed status for one device and delivered for another, and
     * the person has the message either way. */
    if (facts->found && facts->delivered) {
        out->action = CMN_RECEIPT_DROP;
        out->why = CMN_RECEIPT_WHY_DELIVERED;
        return 0;
    }
    if (facts->found && facts->failed) {
        out->action = CMN_RECEIPT_DELIVER;
        out->why = CMN_RECEIPT_WHY_FAILED;
        return 0;
    }
    if (g->deadline_at_ms > 0 && now_ms >= g->deadline_at_ms) {
        out->action = CMN_RECEIPT_DELIVER;
        out->why = CMN_RECEIPT_WHY_DEADLINE;
        return 0;
    }
    int64_t give_up_at = g->sent_at_ms + p->max_wait_ms;
    if (g->deadline_at_ms == 0 && now_ms >= give_up_at) {
        out->action = CMN_RECEIPT_DROP;
        out->why = CMN_RECEIPT_WHY_GAVE_UP;
        return 0;
    }
    int64_t next = now_ms + p->check_interval_ms;
    if (g->deadline_at_ms > 0 && g->deadline_at_ms < next)
        next = g->deadline_at_ms;
    if (g->deadline_at_ms == 0 && give_up_at < next)
        next = give_up_at;
    out->action = CMN_RECEIPT_RECHECK;
    out->why = CMN_RECEIPT_WHY_WAITING;
    out->recheck_at_ms = next;
    return 0;
}
