/* Unit tests of the receipt watches' guard mapping (router_receipts.h):
 * guard header + parked Dispatch + what PostgreSQL knows -> the delay
 * queue's verdict, and the `fallback` StatusEvent of a delivery. */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <string.h>

#include "crm/buf.h"
#include "crm/dispatch.h"
#include "crm/err.h"
#include "crm/json.h"
#include "crm/receipt.h"
#include "crm/status.h"
#include "router_receipts.h"

#define CID "0b7c6d1e-2f3a-5b4c-8d9e-0f1a2b3c4d5e"
#define SENT_AT INT64_C(1795309323000)
#define SEC INT64_C(1000)

/* The watch of hop 0 (SMS) parks this Dispatch: email, hop 1. */
static const char DISPATCH[] =
    "{\"v\":1,\"communication_id\":\"" CID "\",\"request_id\":\"r-1\","
    "\"tenant_id\":\"acme\",\"client_id\":\"c-1\",\"message_type\":\"appointment_reminder\",\"urgency\":\"critical\","
    "\"channel\":\"email\",\"attempt\":1,\"hop\":1,\"to\":\"ana@example.com\","
    "\"recipient\":{\"name\":\"Ana\",\"email\":\"ana@example.com\",\"phone\":\"+14155550100\",\"locale\":\"en\"},"
    "\"template\":\"appointment_reminder\",\"locale\":\"en\",\"context\":{},"
    "\"fallback\":[],\"created_at\":\"2026-11-22T10:00:00Z\"}";

typedef struct fx {
    cmn_receipt_policy_t p;
    cmn_dispatch_t d;
    json_object *obj;
    char guard[CMN_RECEIPT_GUARD_MAX];
    cmn_buf_t json;
} fx_t;

static void fx_init(fx_t *f, int64_t deadline_ms)
{
    char why[256] = "";
    memset(f, 0, sizeof *f);
    cmn_receipt_policy_default(&f->p);
    f->obj = cmn_json_parse(DISPATCH, strlen(DISPATCH), why, sizeof why);
    cr_assert_not_null(f->obj, "%s", why);
    cr_assert_eq(cmn_dispatch_from_json(f->obj, &f->d, why, sizeof why), 0, "%s", why);
    cmn_receipt_guard_t g = {.hop = 0, .sent_at_ms = SENT_AT, .deadline_at_ms = deadline_ms ? SENT_AT + deadline_ms : 0};
    memcpy(g.communication_id, CID, sizeof g.communication_id);
    cr_assert_eq(cmn_receipt_guard_format(&g, f->guard, sizeof f->guard), 0);
}

static void fx_free(fx_t *f)
{
    cmn_dispatch_clear(&f->d);
    json_object_put(f->obj);
    cmn_buf_free(&f->json);
}

static router_receipt_facts_t facts(int found, int hop, int delivered, int failed, cmn_channel_t ch, int attempt)
{
    router_receipt_facts_t r = {.facts = {.found = found, .current_hop = hop, .delivered = delivered, .failed = failed},
                                .channel = ch,
                                .sent_attempt = attempt};
    return r;
}

static router_receipt_answer_t decide(fx_t *f, const router_receipt_facts_t *rf, int64_t now)
{
    router_receipt_answer_t a;
    cr_assert_eq(router_receipts_decide(&f->p, f->guard, strlen(f->guard), &f->d, NULL, rf, now, &a, &f->json), 0);
    return a;
}

Test(router_receipts, failed_receipt_delivers_with_a_fallback_event)
{
    fx_t f;
    fx_init(&f, 120 * SEC);
    router_receipt_facts_t rf = facts(1, 0, 0, 1, CMN_CHANNEL_SMS, 2);
    router_receipt_answer_t a = decide(&f, &rf, SENT_AT + 15 * SEC);
    cr_assert_eq(a.verdict, CMN_DELAYQ_DELIVER);
    cr_assert_eq(a.why, CMN_RECEIPT_WHY_FAILED);

    json_object *ev = cmn_json_parse(f.json.data, f.json.len, NULL, 0);
    cr_assert_not_null(ev, "%s", f.json.data);
    cmn_status_event_t se;
    char why[256] = "";
    cr_assert_eq(cmn_status_event_from_json(ev, &se, why, sizeof why), 0, "%s", why);
    cr_assert_eq(se.status, CMN_STATUS_FALLBACK);
    cr_assert_str_eq(se.communication_id, CID);
    cr_assert_eq(se.hop, 0, "the watched hop, not the next");
    cr_assert_eq(se.channel, CMN_CHANNEL_SMS, "the watched hop's channel");
    cr_assert_eq(se.attempt, 2, "the attempt that was sent");
    cr_assert_str_eq(se.reason, "receipt_failed");
    cr_assert_str_eq(se.tenant_id, "acme");
    cr_assert_str_eq(se.request_id, "r-1");
    cr_assert_str_eq(se.client_id, "c-1");
    cr_assert_str_eq(se.message_type, "appointment_reminder");
    json_object *det = cmn_json_parse(se.details_json, strlen(se.details_json), NULL, 0);
    cr_assert_str_eq(cmn_json_get_string(det, "from"), "sms");
    cr_assert_str_eq(cmn_json_get_string(det, "to"), "email");
    cr_assert_str_eq(cmn_json_get_string(det, "why"), "receipt_failed");
    char first_id[CMN_UUID_STR_LEN + 1];
    memcpy(first_id, se.event_id, sizeof first_id);
    json_object_put(det);
    json_object_put(ev);

    /* Decided again later (a watch handled twice): the same event id. */
    a = decide(&f, &rf, SENT_AT + 45 * SEC);
    cr_assert_eq(a.verdict, CMN_DELAYQ_DELIVER);
    ev = cmn_json_parse(f.json.data, f.json.len, NULL, 0);
    cr_assert_eq(cmn_status_event_from_json(ev, &se, why, sizeof why), 0, "%s", why);
    cr_assert_str_eq(se.event_id, first_id);
    json_object_put(ev);
    fx_free(&f);
}

Test(router_receipts, delivered_moved_on_and_gave_up_drop)
{
    fx_t f;
    fx_init(&f, 0);
    router_receipt_facts_t rf = facts(1, 0, 1, 0, CMN_CHANNEL_SMS, 1);
    router_receipt_answer_t a = decide(&f, &rf, SENT_AT + 15 * SEC);
    cr_assert_eq(a.verdict, CMN_DELAYQ_DROP);
    cr_assert_eq(a.why, CMN_RECEIPT_WHY_DELIVERED);
    /* Delivered wins over a failure at the same hop. */
    rf = facts(1, 0, 1, 1, CMN_CHANNEL_WHATSAPP, 1);
    cr_assert_eq(decide(&f, &rf, SENT_AT + 15 * SEC).verdict, CMN_DELAYQ_DROP);
    /* Already at a later hop: dropped, even with a failed receipt. */
    rf = facts(1, 1, 0, 1, CMN_CHANNEL_SMS, 1);
    a = decide(&f, &rf, SENT_AT + 15 * SEC);
    cr_assert_eq(a.verdict, CMN_DELAYQ_DROP);
    cr_assert_eq(a.why, CMN_RECEIPT_WHY_MOVED_ON);
    /* No deadline, no receipt for max_wait: the watch ends. */
    rf = facts(1, 0, 0, 0, CMN_CHANNEL_SMS, 1);
    a = decide(&f, &rf, SENT_AT + f.p.max_wait_ms);
    cr_assert_eq(a.verdict, CMN_DELAYQ_DROP);
    cr_assert_eq(a.why, CMN_RECEIPT_WHY_GAVE_UP);
    fx_free(&f);
}

Test(router_receipts, waiting_rechecks_and_the_deadline_delivers)
{
    fx_t f;
    fx_init(&f, 20 * SEC);
    router_receipt_facts_t rf = facts(1, 0, 0, 0, CMN_CHANNEL_SMS, 1);
    router_receipt_answer_t a = decide(&f, &rf, SENT_AT + 15 * SEC);
    cr_assert_eq(a.verdict, CMN_DELAYQ_RECHECK);
    cr_assert_eq(a.recheck_at_ms, SENT_AT + 20 * SEC, "the deadline comes before the next interval");
    a = decide(&f, &rf, SENT_AT + 20 * SEC - 1);
    cr_assert_eq(a.verdict, CMN_DELAYQ_RECHECK, "not before the deadline");
    a = decide(&f, &rf, SENT_AT + 20 * SEC);
    cr_assert_eq(a.verdict, CMN_DELAYQ_DELIVER);
    cr_assert_eq(a.why, CMN_RECEIPT_WHY_DEADLINE);
    cr_assert_not_null(strstr(f.json.data, "\"why\":\"receipt_deadline\""), "%s", f.json.data);
    /* The projector has not stored the communication yet: look again. */
    rf = facts(0, 0, 0, 0, CMN_CHANNEL_NONE, 0);
    a = decide(&f, &rf, SENT_AT + 15 * SEC);
    cr_assert_eq(a.verdict, CMN_DELAYQ_RECHECK);
    /* Deadline passed, but no event of the watched hop is stored, so the
     * fallback event would not know its channel: one interval more. */
    rf = facts(1, 0, 0, 0, CMN_CHANNEL_NONE, 0);
    a = decide(&f, &rf, SENT_AT + 30 * SEC);
    cr_assert_eq(a.verdict, CMN_DELAYQ_RECHECK);
    cr_assert_eq(a.recheck_at_ms, SENT_AT + 30 * SEC + f.p.check_interval_ms);
    fx_free(&f);
}

Test(router_receipts, database_down_retries)
{
    fx_t f;
    fx_init(&f, 0);
    router_receipt_answer_t a;
    cr_assert_eq(router_receipts_decide(&f.p, f.guard, strlen(f.guard), &f.d, NULL, NULL, SENT_AT, &a, &f.json), 0);
    cr_assert_eq(a.verdict, CMN_DELAYQ_RETRY);
    fx_free(&f);
}

Test(router_receipts, malformed_watches_are_rejected_with_a_reason)
{
    fx_t f;
    fx_init(&f, 0);
    router_receipt_facts_t rf = facts(1, 0, 0, 1, CMN_CHANNEL_SMS, 1);
    router_receipt_answer_t a;
    const char *bad[] = {"", "r1:", "r2:" CID ":0:1795309323000:0", "r1:" CID ":0:01795309323000:0",
                         "r1:" CID ":-1:1795309323000:0", "r1:not-a-uuid-at-all-0000-000000000000:0:1:0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(router_receipts_decide(&f.p, bad[i], strlen(bad[i]), &f.d, NULL, &rf, SENT_AT, &a, &f.json), 0);
        cr_assert_eq(a.verdict, CMN_DELAYQ_REJECT, "%s", bad[i]);
        cr_assert_str_eq(a.reason, "x-crm-guard: must be r1:<communication_id>:<hop>:<sent_at_ms>:<deadline_at_ms>");
    }
    /* A value that is not a Dispatch. */
    cr_assert_eq(router_receipts_decide(&f.p, f.guard, strlen(f.guard), NULL, "missing channel", &rf, SENT_AT, &a,
                                        &f.json),
                 0);
    cr_assert_eq(a.verdict, CMN_DELAYQ_REJECT);
    cr_assert_str_eq(a.reason, "value: not a Dispatch: missing channel");
    /* A guard for another hop than the Dispatch's previous one. */
    f.d.hop = 2;
    cr_assert_eq(router_receipts_decide(&f.p, f.guard, strlen(f.guard), &f.d, NULL, &rf, SENT_AT, &a, &f.json), 0);
    cr_assert_eq(a.verdict, CMN_DELAYQ_REJECT);
    cr_assert_not_null(strstr(a.reason, "x-crm-guard: watches hop 0"), "%s", a.reason);
    /* A guard for another communication. */
    f.d.hop = 1;
    f.d.communication_id[0] = f.d.communication_id[0] == '0' ? '1' : '0';
    cr_assert_eq(router_receipts_decide(&f.p, f.guard, strlen(f.guard), &f.d, NULL, &rf, SENT_AT, &a, &f.json), 0);
    cr_assert_eq(a.verdict, CMN_DELAYQ_REJECT);
    cr_assert_eq(router_receipts_decide(NULL, f.guard, strlen(f.guard), &f.d, NULL, &rf, SENT_AT, &a, &f.json),
                 CMN_ERR_INVALID);
    fx_free(&f);
}
