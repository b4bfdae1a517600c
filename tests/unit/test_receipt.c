/* test_receipt.c - receipt-driven fallback rules (crm/receipt.h). */
#include <criterion/criterion.h>
#include <string.h>

#include "crm/err.h"
#include "crm/receipt.h"

static const char ID[] = "0f8fad5b-d9cb-469f-a165-70867728950e";
static const int64_t SENT = 1795309330000LL;

static cmn_receipt_policy_t policy(void)
{
    cmn_receipt_policy_t p;
    cmn_receipt_policy_default(&p);
    return p;
}

Test(receipt, defaults_and_channels)
{
    cmn_receipt_policy_t p = policy();
    cr_assert_eq(p.deadline_ms[CMN_URGENCY_CRITICAL], 120000);
    cr_assert_eq(p.deadline_ms[CMN_URGENCY_HIGH], 600000);
    cr_assert_eq(p.deadline_ms[CMN_URGENCY_NORMAL], 0);
    cr_assert_eq(p.deadline_ms[CMN_URGENCY_LOW], 0);
    cr_assert(cmn_receipt_channel_has_receipts(CMN_CHANNEL_SMS));
    cr_assert(cmn_receipt_channel_has_receipts(CMN_CHANNEL_WHATSAPP));
    cr_assert_not(cmn_receipt_channel_has_receipts(CMN_CHANNEL_EMAIL));
}

Test(receipt, watch_first_check_is_interval_or_deadline)
{
    cmn_receipt_policy_t p = policy();
    cmn_receipt_guard_t g;
    int64_t first = 0;
    cr_assert_eq(cmn_receipt_watch(&p, ID, 0, CMN_URGENCY_CRITICAL, SENT, &g, &first), 0);
    cr_assert_eq(g.deadline_at_ms, SENT + 120000);
    cr_assert_eq(first, SENT + 15000);
    cr_assert_eq(cmn_receipt_watch(&p, ID, 1, CMN_URGENCY_NORMAL, SENT, &g, &first), 0);
    cr_assert_eq(g.deadline_at_ms, 0);
    cr_assert_eq(g.hop, 1);
    cr_assert_eq(first, SENT + 15000);
    p.deadline_ms[CMN_URGENCY_CRITICAL] = 5000; /* shorter than the interval */
    cr_assert_eq(cmn_receipt_watch(&p, ID, 0, CMN_URGENCY_CRITICAL, SENT, &g, &first), 0);
    cr_assert_eq(first, SENT + 5000);
    cr_assert_eq(cmn_receipt_watch(&p, "not-a-uuid", 0, CMN_URGENCY_LOW, SENT, &g, &first), CMN_ERR_INVALID);
    cr_assert_eq(cmn_receipt_watch(&p, ID, -1, CMN_URGENCY_LOW, SENT, &g, &first), CMN_ERR_INVALID);
    p.check_interval_ms = 0;
    cr_assert_eq(cmn_receipt_watch(&p, ID, 0, CMN_URGENCY_LOW, SENT, &g, &first), CMN_ERR_INVALID);
}

Test(receipt, guard_round_trip)
{
    cmn_receipt_policy_t p = policy();
    cmn_receipt_guard_t g, back;
    int64_t first = 0;
    char text[CMN_RECEIPT_GUARD_MAX];
    cr_assert_eq(cmn_receipt_watch(&p, ID, 2, CMN_URGENCY_CRITICAL, SENT, &g, &first), 0);
    cr_assert_eq(cmn_receipt_guard_format(&g, text, sizeof text), 0);
    cr_assert_str_eq(text, "r1:0f8fad5b-d9cb-469f-a165-70867728950e:2:1795309330000:1795309450000");
    cr_assert_eq(cmn_receipt_guard_parse(text, strlen(text), &back), 0);
    cr_assert_str_eq(back.communication_id, ID);
    cr_assert_eq(back.hop, 2);
    cr_assert_eq(back.sent_at_ms, SENT);
    cr_assert_eq(back.deadline_at_ms, SENT + 120000);
    char small[20];
    cr_assert_eq(cmn_receipt_guard_format(&g, small, sizeof small), CMN_ERR_OVERFLOW);
}

Test(receipt, guard_parse_is_strict)
{
    const char *bad[] = {
        "",
        "r1:",
        "r2:0f8fad5b-d9cb-469f-a165-70867728950e:0:1795309330000:0",
        "r1:0f8fad5b-d9cb-469f-a165-70867728950e:0:1795309330000",      /* missing deadline */
        "r1:0f8fad5b-d9cb-469f-a165-70867728950e:0:1795309330000:0:",   /* trailing separator */
        "r1:0f8fad5b-d9cb-469f-a165-70867728950e:-1:1795309330000:0",   /* sign */
        "r1:0f8fad5b-d9cb-469f-a165-70867728950e:01:1795309330000:0",   /* leading zero */
        "r1:0f8fad5b-d9cb-469f-a165-70867728950e:0:0:0",                /* no sent time */
        "r1:0f8fad5b-d9cb-469f-a165-70867728950e:0: 1795309330000:0",   /* space */
        "r1:0f8fad5b-d9cb-469f-a165-70867728950e:0:1795309330000:99999999999999999999", /* overflow */
        "r1:zf8fad5b-d9cb-469f-a165-70867728950e:0:1795309330000:0",    /* not a uuid */
        "r1:0f8fad5b-d9cb-469f-a165-70867728950e:1001:1795309330000:0", /* absurd hop */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cmn_receipt_guard_t g;
        cr_assert_eq(cmn_receipt_guard_parse(bad[i], strlen(bad[i]), &g), CMN_ERR_INVALID, "accepted %s", bad[i]);
        cr_assert_eq(g.hop, 0);
        cr_assert_eq(g.communication_id[0], '\0');
    }
    /* The value is bytes, not a C string: a valid prefix of a longer buffer. */
    const char *v = "r1:0f8fad5b-d9cb-469f-a165-70867728950e:0:1795309330000:0GARBAGE";
    cmn_receipt_guard_t g;
    cr_assert_eq(cmn_receipt_guard_parse(v, strlen(v) - 7, &g), 0);
    cr_assert_eq(cmn_receipt_guard_parse(v, strlen(v), &g), CMN_ERR_INVALID);
}

/* One row of the decision table. */
typedef struct row {
    const char *name;
    cmn_urgency_t urgency;
    cmn_receipt_facts_t facts;
    int64_t now_offset;
    cmn_receipt_action_t action;
    cmn_receipt_why_t why;
    int64_t recheck_offset; /* from SENT; only for RECHECK */
} row_t;

Test(receipt, decision_table)
{
    const row_t rows[] = {
        {"moved on wins", CMN_URGENCY_CRITICAL, {1, 1, 0, 1}, 200000, CMN_RECEIPT_DROP, CMN_RECEIPT_WHY_MOVED_ON, 0},
        {"delivered drops", CMN_URGENCY_CRITICAL, {1, 0, 1, 0}, 15000, CMN_RECEIPT_DROP, CMN_RECEIPT_WHY_DELIVERED, 0},
        {"delivered beats failed", CMN_URGENCY_NORMAL, {1, 0, 1, 1}, 15000, CMN_RECEIPT_DROP,
         CMN_RECEIPT_WHY_DELIVERED, 0},
        {"delivered after the deadline still drops", CMN_URGENCY_CRITICAL, {1, 0, 1, 0}, 500000, CMN_RECEIPT_DROP,
         CMN_RECEIPT_WHY_DELIVERED, 0},
        {"failed receipt falls back", CMN_URGENCY_NORMAL, {1, 0, 0, 1}, 15000, CMN_RECEIPT_DELIVER,
         CMN_RECEIPT_WHY_FAILED, 0},
        {"failed receipt before the deadline", CMN_URGENCY_CRITICAL, {1, 0, 0, 1}, 15000, CMN_RECEIPT_DELIVER,
         CMN_RECEIPT_WHY_FAILED, 0},
        {"deadline reached", CMN_URGENCY_CRITICAL, {1, 0, 0, 0}, 120000, CMN_RECEIPT_DELIVER,
         CMN_RECEIPT_WHY_DEADLINE, 0},
        {"deadline reached, not projected yet", CMN_URGENCY_CRITICAL, {0, 0, 0, 0}, 130000, CMN_RECEIPT_DELIVER,
         CMN_RECEIPT_WHY_DEADLINE, 0},
        {"waiting, next check by interval", CMN_URGENCY_CRITICAL, {1, 0, 0, 0}, 15000, CMN_RECEIPT_RECHECK,
         CMN_RECEIPT_WHY_WAITING, 30000},
        {"waiting, next check capped at the deadline", CMN_URGENCY_CRITICAL, {1, 0, 0, 0}, 110000,
         CMN_RECEIPT_RECHECK, CMN_RECEIPT_WHY_WAITING, 120000},
        {"not found yet is rechecked", CMN_URGENCY_NORMAL, {0, 0, 0, 0}, 15000, CMN_RECEIPT_RECHECK,
         CMN_RECEIPT_WHY_WAITING, 30000},
        {"normal has no deadline", CMN_URGENCY_NORMAL, {1, 0, 0, 0}, 3600000, CMN_RECEIPT_RECHECK,
         CMN_RECEIPT_WHY_WAITING, 3615000},
        {"gives up after max wait", CMN_URGENCY_NORMAL, {1, 0, 0, 0}, 86400000, CMN_RECEIPT_DROP,
         CMN_RECEIPT_WHY_GAVE_UP, 0},
        {"last check lands on max wait", CMN_URGENCY_LOW, {1, 0, 0, 0}, 86400000 - 5000, CMN_RECEIPT_RECHECK,
         CMN_RECEIPT_WHY_WAITING, 86400000},
        {"a failure after max wait still falls back", CMN_URGENCY_LOW, {1, 0, 0, 1}, 90000000, CMN_RECEIPT_DELIVER,
         CMN_RECEIPT_WHY_FAILED, 0},
    };
    cmn_receipt_policy_t p = policy();
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const row_t *r = &rows[i];
        cmn_receipt_guard_t g;
        int64_t first = 0;
        cmn_receipt_decision_t d;
        cr_assert_eq(cmn_receipt_watch(&p, ID, 0, r->urgency, SENT, &g, &first), 0);
        cr_assert_eq(cmn_receipt_decide(&p, &g, &r->facts, SENT + r->now_offset, &d), 0, "%s", r->name);
        cr_assert_eq(d.action, r->action, "%s: action %d", r->name, d.action);
        cr_assert_eq(d.why, r->why, "%s: why %s", r->name, cmn_receipt_why_name(d.why));
        if (r->action == CMN_RECEIPT_RECHECK) {
            cr_assert_eq(d.recheck_at_ms, SENT + r->recheck_offset, "%s: recheck at +%lld", r->name,
                         (long long)(d.recheck_at_ms - SENT));
            cr_assert_gt(d.recheck_at_ms, SENT + r->now_offset, "%s: recheck must be in the future", r->name);
        }
    }
}

Test(receipt, watching_a_silent_critical_message_ends_at_the_deadline)
{
    /* Simulate the watch: each recheck happens exactly when asked. A
     * critical message with no receipt must fall back at the deadline, after
     * a bounded number of checks, never earlier. */
    cmn_receipt_policy_t p = policy();
    cmn_receipt_guard_t g;
    int64_t now = 0;
    cr_assert_eq(cmn_receipt_watch(&p, ID, 0, CMN_URGENCY_CRITICAL, SENT, &g, &now), 0);
    cmn_receipt_facts_t facts = {1, 0, 0, 0};
    int checks = 0;
    for (;;) {
        cmn_receipt_decision_t d;
        cr_assert_eq(cmn_receipt_decide(&p, &g, &facts, now, &d), 0);
        checks++;
        if (d.action != CMN_RECEIPT_RECHECK) {
            cr_assert_eq(d.action, CMN_RECEIPT_DELIVER);
            cr_assert_eq(d.why, CMN_RECEIPT_WHY_DEADLINE);
            cr_assert_eq(now, SENT + 120000);
            break;
        }
        cr_assert_lt(checks, 20);
        now = d.recheck_at_ms;
    }
    cr_assert_eq(checks, 8); /* 15, 30, ..., 105, then 120 */
    cr_assert_str_eq(cmn_receipt_why_name(CMN_RECEIPT_WHY_DEADLINE), "receipt_deadline");
    cr_assert_str_eq(cmn_receipt_why_name(CMN_RECEIPT_WHY_FAILED), "receipt_failed");
}

Test(receipt, bad_arguments)
{
    cmn_receipt_policy_t p = policy();
    cmn_receipt_guard_t g;
    int64_t first;
    cmn_receipt_decision_t d;
    cr_assert_eq(cmn_receipt_watch(&p, ID, 0, CMN_URGENCY_LOW, SENT, &g, &first), 0);
    cr_assert_eq(cmn_receipt_decide(&p, &g, NULL, SENT, &d), CMN_ERR_INVALID);
    cr_assert_eq(cmn_receipt_decide(NULL, &g, &(cmn_receipt_facts_t){0}, SENT, &d), CMN_ERR_INVALID);
    cr_assert_eq(cmn_receipt_decide(&p, &g, &(cmn_receipt_facts_t){0}, SENT, NULL), CMN_ERR_INVALID);
}
