/* test_status.c - StatusEvent v1: names, rank table, event ids,
 * (de)serialisation (crm/status.h). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "crm/buf.h"
#include "crm/err.h"
#include "crm/json.h"
#include "crm/status.h"
#include "crm/time.h"
#include "crm/uuid.h"

static json_object *parse(const char *s)
{
    char err[256];
    json_object *o = cmn_json_parse(s, strlen(s), err, sizeof err);
    cr_assert_not_null(o, "%s", err);
    return o;
}

Test(status, names_round_trip)
{
    const char *names[] = {"accepted", "rejected", "routed",  "deferred",        "suppressed",
                           "sending",  "sent",     "delivered", "read",          "opened",
                           "clicked",  "retry_scheduled", "fallback", "failed",   "dead"};
    cr_assert_eq(sizeof names / sizeof names[0], CMN_STATUS__COUNT);
    for (int i = 0; i < CMN_STATUS__COUNT; i++) {
        cr_expect_str_eq(cmn_status_name((cmn_status_t)i), names[i]);
        cmn_status_t s = CMN_STATUS__COUNT;
        cr_expect_eq(cmn_status_parse(names[i], &s), 0);
        cr_expect_eq(s, (cmn_status_t)i);
    }
    cmn_status_t s;
    cr_expect_eq(cmn_status_parse("Sent", &s), CMN_ERR_INVALID);
    cr_expect_eq(cmn_status_parse("", &s), CMN_ERR_INVALID);
    cr_expect_eq(cmn_status_parse(NULL, &s), CMN_ERR_INVALID);
    cr_expect_str_eq(cmn_status_name(CMN_STATUS__COUNT), "");
    cr_expect_str_eq(cmn_status_name((cmn_status_t)-1), "");
}

Test(status, rank_table_is_exact)
{
    struct {
        cmn_status_t s;
        int rank;
    } want[] = {
        {CMN_STATUS_ACCEPTED, 10},  {CMN_STATUS_DEFERRED, 15},        {CMN_STATUS_ROUTED, 20},
        {CMN_STATUS_SENDING, 30},   {CMN_STATUS_RETRY_SCHEDULED, 35}, {CMN_STATUS_SENT, 40},
        {CMN_STATUS_DELIVERED, 50}, {CMN_STATUS_OPENED, 55},          {CMN_STATUS_READ, 60},
        {CMN_STATUS_CLICKED, 65},   {CMN_STATUS_FALLBACK, 80},        {CMN_STATUS_FAILED, 90},
        {CMN_STATUS_SUPPRESSED, 90}, {CMN_STATUS_REJECTED, 90},       {CMN_STATUS_DEAD, 95},
    };
    cr_assert_eq(sizeof want / sizeof want[0], CMN_STATUS__COUNT);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        cr_expect_eq(cmn_status_rank(want[i].s), want[i].rank, "%s", cmn_status_name(want[i].s));
    cr_expect_eq(cmn_status_rank(CMN_STATUS__COUNT), -1);
}

Test(status, rank_ordering)
{
    /* The order the projector depends on: a late event never regresses. */
    cmn_status_t order[] = {CMN_STATUS_ACCEPTED, CMN_STATUS_DEFERRED,  CMN_STATUS_ROUTED, CMN_STATUS_SENDING,
                            CMN_STATUS_RETRY_SCHEDULED, CMN_STATUS_SENT, CMN_STATUS_DELIVERED, CMN_STATUS_OPENED,
                            CMN_STATUS_READ, CMN_STATUS_CLICKED, CMN_STATUS_FALLBACK, CMN_STATUS_FAILED,
                            CMN_STATUS_DEAD};
    for (size_t i = 1; i < sizeof order / sizeof order[0]; i++)
        cr_expect_lt(cmn_status_rank(order[i - 1]), cmn_status_rank(order[i]), "%s < %s",
                     cmn_status_name(order[i - 1]), cmn_status_name(order[i]));
    cr_expect_lt(cmn_status_rank(CMN_STATUS_SENT), cmn_status_rank(CMN_STATUS_DELIVERED),
                 "a late sent never overwrites delivered");
    cr_expect_eq(cmn_status_rank(CMN_STATUS_FAILED), cmn_status_rank(CMN_STATUS_SUPPRESSED));
    cr_expect_eq(cmn_status_rank(CMN_STATUS_FAILED), cmn_status_rank(CMN_STATUS_REJECTED));
}

Test(status, terminal_states)
{
    const cmn_status_t terminal[] = {CMN_STATUS_REJECTED, CMN_STATUS_SUPPRESSED, CMN_STATUS_SENT,
                                     CMN_STATUS_DELIVERED, CMN_STATUS_READ,      CMN_STATUS_OPENED,
                                     CMN_STATUS_CLICKED,  CMN_STATUS_FAILED,     CMN_STATUS_DEAD};
    int is_terminal[CMN_STATUS__COUNT] = {0};
    for (size_t i = 0; i < sizeof terminal / sizeof terminal[0]; i++)
        is_terminal[terminal[i]] = 1;
    for (int i = 0; i < CMN_STATUS__COUNT; i++)
        cr_expect_eq(cmn_status_is_terminal((cmn_status_t)i), is_terminal[i], "%s",
                     cmn_status_name((cmn_status_t)i));
    cr_expect_eq(cmn_status_is_terminal(CMN_STATUS__COUNT), 0);
}

static cmn_status_event_t sample(void)
{
    cmn_status_event_t ev;
    memset(&ev, 0, sizeof ev);
    cmn_uuid_communication_id("acme", "r-1", ev.communication_id);
    ev.request_id = "r-1";
    ev.tenant_id = "acme";
    ev.client_id = "c-1";
    ev.message_type = "appointment_reminder";
    ev.channel = CMN_CHANNEL_SMS;
    ev.status = CMN_STATUS_DELIVERED;
    ev.attempt = 2;
    ev.hop = 1;
    ev.provider = "twilio";
    ev.provider_message_id = "SM123";
    ev.discriminator = "evt-9";
    ev.occurred_at_ms = 1763802000123;
    return ev;
}

Test(status, event_id_is_deterministic_and_documented)
{
    cmn_status_event_t a = sample(), b = sample();
    cr_assert_eq(cmn_status_event_finalize(&a), 0);
    cr_assert_eq(cmn_status_event_finalize(&b), 0);
    cr_expect(cmn_uuid_is_valid(a.event_id));
    cr_expect_str_eq(a.event_id, b.event_id);

    /* The id input is communication_id|status|channel|hop|attempt|discriminator. */
    char name[256], want[CMN_UUID_STR_LEN + 1];
    snprintf(name, sizeof name, "%s|delivered|sms|1|2|evt-9", a.communication_id);
    cr_assert_eq(cmn_uuid_v5(CMN_UUID_NS_EVENT, name, strlen(name), want), 0);
    cr_expect_str_eq(a.event_id, want);

    /* Fields outside the id (provider data, time) do not change it. */
    b.provider_message_id = "SM999";
    b.occurred_at_ms += 5000;
    cr_assert_eq(cmn_status_event_finalize(&b), 0);
    cr_expect_str_eq(a.event_id, b.event_id);
}

Test(status, event_id_changes_with_each_input)
{
    cmn_status_event_t base = sample();
    cr_assert_eq(cmn_status_event_finalize(&base), 0);
    for (int k = 0; k < 5; k++) {
        cmn_status_event_t ev = sample();
        switch (k) {
        case 0: ev.status = CMN_STATUS_READ; break;
        case 1: ev.channel = CMN_CHANNEL_WHATSAPP; break;
        case 2: ev.hop = 2; break;
        case 3: ev.attempt = 3; break;
        default: ev.discriminator = "evt-10"; break;
        }
        cr_assert_eq(cmn_status_event_finalize(&ev), 0);
        cr_expect_str_neq(ev.event_id, base.event_id, "input %d must change the id", k);
    }
}

Test(status, null_channel_and_discriminator_are_empty_strings)
{
    cmn_status_event_t ev;
    memset(&ev, 0, sizeof ev);
    cmn_uuid_communication_id("default", "r", ev.communication_id);
    ev.channel = CMN_CHANNEL_NONE;
    ev.status = CMN_STATUS_ACCEPTED;
    cr_assert_eq(cmn_status_event_finalize(&ev), 0);
    char name[128], want[CMN_UUID_STR_LEN + 1];
    snprintf(name, sizeof name, "%s|accepted||0|0|", ev.communication_id);
    cmn_uuid_v5(CMN_UUID_NS_EVENT, name, strlen(name), want);
    cr_expect_str_eq(ev.event_id, want);

    cmn_status_event_t ev2 = ev;
    ev2.discriminator = "";
    cr_assert_eq(cmn_status_event_finalize(&ev2), 0);
    cr_expect_str_eq(ev2.event_id, ev.event_id);

    ev2.status = CMN_STATUS__COUNT;
    cr_expect_eq(cmn_status_event_finalize(&ev2), CMN_ERR_INVALID);
}

Test(status, json_round_trip)
{
    cmn_status_event_t a = sample();
    a.error_code = "30003";
    a.error_message = "Unreachable \"handset\"";
    a.reason = "no_address";
    cr_assert_eq(cmn_status_event_finalize(&a), 0);
    cmn_buf_t t = CMN_BUF_INIT;
    cr_assert_eq(cmn_status_event_to_json(&a, &t), 0);
    json_object *o = parse(t.data);
    cr_expect_eq(json_object_get_int(json_object_object_get(o, "v")), 1);
    cr_expect_str_eq(json_object_get_string(json_object_object_get(o, "occurred_at")), "2025-11-22T09:00:00.123Z");

    cmn_status_event_t b;
    char err[128] = "";
    cr_assert_eq(cmn_status_event_from_json(o, &b, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(b.event_id, a.event_id);
    cr_expect_str_eq(b.communication_id, a.communication_id);
    cr_expect_str_eq(b.request_id, a.request_id);
    cr_expect_str_eq(b.tenant_id, a.tenant_id);
    cr_expect_str_eq(b.client_id, a.client_id);
    cr_expect_str_eq(b.message_type, a.message_type);
    cr_expect_eq(b.channel, a.channel);
    cr_expect_eq(b.status, a.status);
    cr_expect_eq(b.attempt, a.attempt);
    cr_expect_eq(b.hop, a.hop);
    cr_expect_str_eq(b.provider, a.provider);
    cr_expect_str_eq(b.provider_message_id, a.provider_message_id);
    cr_expect_str_eq(b.error_code, a.error_code);
    cr_expect_str_eq(b.error_message, a.error_message);
    cr_expect_str_eq(b.reason, a.reason);
    cr_expect_eq(b.occurred_at_ms, a.occurred_at_ms);
    cr_expect_null(b.discriminator);

    cmn_buf_t t2 = CMN_BUF_INIT;
    cr_assert_eq(cmn_status_event_to_json(&b, &t2), 0);
    cr_expect_str_eq(t2.data, t.data);
    cmn_buf_free(&t);
    cmn_buf_free(&t2);
    json_object_put(o);
}

Test(status, no_channel_is_omitted_and_parsed_back)
{
    cmn_status_event_t a;
    memset(&a, 0, sizeof a);
    cmn_uuid_communication_id("default", "r", a.communication_id);
    a.channel = CMN_CHANNEL_NONE;
    a.status = CMN_STATUS_REJECTED;
    a.reason = "invalid request";
    a.occurred_at_ms = 1763802000000;
    cr_assert_eq(cmn_status_event_finalize(&a), 0);
    cmn_buf_t t = CMN_BUF_INIT;
    cr_assert_eq(cmn_status_event_to_json(&a, &t), 0);
    cr_expect_null(strstr(t.data, "\"channel\""), "%s", t.data);
    cr_expect_null(strstr(t.data, "provider"), "absent strings are left out: %s", t.data);
    json_object *o = parse(t.data);
    cmn_status_event_t b;
    char err[128] = "";
    cr_assert_eq(cmn_status_event_from_json(o, &b, err, sizeof err), 0, "%s", err);
    cr_expect_eq(b.channel, CMN_CHANNEL_NONE);
    cr_expect_null(b.provider);
    cmn_buf_free(&t);
    json_object_put(o);
}

static void expect_parse_error(const char *json, const char *field)
{
    json_object *o = parse(json);
    cmn_status_event_t ev;
    char err[256] = "";
    cr_expect_eq(cmn_status_event_from_json(o, &ev, err, sizeof err), CMN_ERR_INVALID, "%s", json);
    cr_expect_eq(strncmp(err, field, strlen(field)), 0, "'%s' should name %s", err, field);
    json_object_put(o);
}

#define EID "\"event_id\":\"3b0c2d1e-2f3a-5b4c-8d9e-0f1a2b3c4d5e\""
#define CID "\"communication_id\":\"0b7c6d1e-2f3a-5b4c-8d9e-0f1a2b3c4d5e\""
#define AT "\"occurred_at\":\"2026-11-22T09:00:00Z\""

Test(status, parse_errors)
{
    expect_parse_error("{" CID ",\"status\":\"sent\"," AT "}", "event_id");
    expect_parse_error("{\"event_id\":\"x\"," CID ",\"status\":\"sent\"," AT "}", "event_id");
    expect_parse_error("{" EID ",\"status\":\"sent\"," AT "}", "communication_id");
    expect_parse_error("{" EID "," CID "," AT "}", "status");
    expect_parse_error("{" EID "," CID ",\"status\":\"bounced\"," AT "}", "status");
    expect_parse_error("{" EID "," CID ",\"status\":5," AT "}", "status");
    expect_parse_error("{" EID "," CID ",\"status\":\"sent\"}", "occurred_at");
    expect_parse_error("{" EID "," CID ",\"status\":\"sent\",\"occurred_at\":\"now\"}", "occurred_at");
    expect_parse_error("{" EID "," CID ",\"status\":\"sent\",\"channel\":\"fax\"," AT "}", "channel");
    expect_parse_error("{" EID "," CID ",\"status\":\"sent\",\"attempt\":\"1\"," AT "}", "attempt");
    expect_parse_error("{" EID "," CID ",\"status\":\"sent\",\"hop\":-1," AT "}", "hop");
    expect_parse_error("{" EID "," CID ",\"status\":\"sent\",\"provider\":{}," AT "}", "provider");
    expect_parse_error("{\"v\":2," EID "," CID ",\"status\":\"sent\"," AT "}", "v");
    expect_parse_error("[]", "event");

    /* The minimal valid event. */
    json_object *o = parse("{" EID "," CID ",\"status\":\"sent\"," AT "}");
    cmn_status_event_t ev;
    char err[128] = "";
    cr_expect_eq(cmn_status_event_from_json(o, &ev, err, sizeof err), 0, "%s", err);
    cr_expect_eq(ev.status, CMN_STATUS_SENT);
    cr_expect_eq(ev.channel, CMN_CHANNEL_NONE);
    cr_expect_eq(ev.attempt, 0);
    json_object_put(o);
}
