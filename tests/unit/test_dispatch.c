/* test_dispatch.c - Dispatch v1 (de)serialisation and the recipient helpers
 * (crm/dispatch.h). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/buf.h"
#include "crm/dispatch.h"
#include "crm/err.h"
#include "crm/json.h"
#include "crm/time.h"
#include "crm/uuid.h"

static const char *VALID =
    "{\"v\":1,\"communication_id\":\"0b7c6d1e-2f3a-5b4c-8d9e-0f1a2b3c4d5e\",\"request_id\":\"r-1\","
    "\"tenant_id\":\"acme\",\"client_id\":\"c-1\",\"message_type\":\"appointment_reminder\",\"urgency\":\"high\","
    "\"channel\":\"email\",\"attempt\":2,\"hop\":1,\"to\":\"ana@example.com\","
    "\"recipient\":{\"name\":\"Ana\",\"email\":\"ana@example.com\",\"phone\":\"+14155550100\",\"locale\":\"fr-CA\","
    "\"timezone\":\"America/Toronto\",\"preferred_channels\":[\"sms\"]},"
    "\"template\":\"reminder\",\"locale\":\"fr-ca\",\"context\":{\"when\":\"demain\"},"
    "\"attachments\":[{\"filename\":\"a.txt\",\"content_type\":\"text/plain\",\"content_base64\":\"YQ==\"}],"
    "\"fallback\":[\"sms\",\"whatsapp\"],\"deadline\":\"2026-11-22T10:00:00Z\",\"created_at\":\"2026-11-22T09:00:00.5Z\"}";

static json_object *parse(const char *s)
{
    char err[256];
    json_object *o = cmn_json_parse(s, strlen(s), err, sizeof err);
    cr_assert_not_null(o, "%s", err);
    return o;
}

/* VALID with key replaced by value_json (NULL deletes it); parses it into d. */
static int parse_with(const char *key, const char *value_json, cmn_dispatch_t *d, char *errstr, size_t errlen)
{
    json_object *o = parse(VALID);
    if (key != NULL && value_json == NULL)
        json_object_object_del(o, key);
    else if (key != NULL)
        json_object_object_add(o, key, parse(value_json));
    memset(d, 0, sizeof *d);
    errstr[0] = '\0';
    int rc = cmn_dispatch_from_json(o, d, errstr, errlen);
    json_object_put(o);
    return rc;
}

static void expect_error(const char *key, const char *value_json, const char *field)
{
    cmn_dispatch_t d;
    char err[256];
    int rc = parse_with(key, value_json, &d, err, sizeof err);
    cr_expect_eq(rc, CMN_ERR_INVALID, "%s=%s should be rejected", key, value_json ? value_json : "(absent)");
    cr_expect_eq(strncmp(err, field, strlen(field)), 0, "%s=%s: errstr '%s' should name %s", key,
                 value_json ? value_json : "(absent)", err, field);
    cr_expect(strlen(err) > strlen(field) + 2, "errstr has a reason: '%s'", err);
    cmn_dispatch_clear(&d);
}

Test(dispatch, parses_every_field)
{
    cmn_dispatch_t d;
    char err[256];
    cr_assert_eq(parse_with(NULL, NULL, &d, err, sizeof err), 0, "%s", err);
    cr_expect_eq(d.v, 1);
    cr_expect_str_eq(d.communication_id, "0b7c6d1e-2f3a-5b4c-8d9e-0f1a2b3c4d5e");
    cr_expect_str_eq(d.request_id, "r-1");
    cr_expect_str_eq(d.tenant_id, "acme");
    cr_expect_str_eq(d.client_id, "c-1");
    cr_expect_str_eq(d.message_type, "appointment_reminder");
    cr_expect_eq(d.urgency, CMN_URGENCY_HIGH);
    cr_expect_eq(d.channel, CMN_CHANNEL_EMAIL);
    cr_expect_eq(d.attempt, 2);
    cr_expect_eq(d.hop, 1);
    cr_expect_str_eq(d.to, "ana@example.com");
    cr_expect_str_eq(d.recipient.name, "Ana");
    cr_expect_str_eq(d.recipient.phone, "+14155550100");
    cr_expect_str_eq(d.recipient.timezone, "America/Toronto");
    cr_expect_eq(d.recipient.n_preferred, 1);
    cr_expect_str_eq(d.template_name, "reminder");
    cr_expect_str_eq(d.locale, "fr-CA");
    cr_expect_str_eq(json_object_get_string(json_object_object_get(d.context, "when")), "demain");
    cr_expect_eq(json_object_array_length(d.attachments), 1);
    cr_assert_eq(d.n_fallback, 2);
    cr_expect_eq(d.fallback[0], CMN_CHANNEL_SMS);
    cr_expect_eq(d.fallback[1], CMN_CHANNEL_WHATSAPP);
    int64_t dl = 0, ca = 0;
    cmn_time_parse_rfc3339("2026-11-22T10:00:00Z", &dl);
    cmn_time_parse_rfc3339("2026-11-22T09:00:00.500Z", &ca);
    cr_expect_eq(d.deadline_ms, dl);
    cr_expect_eq(d.created_at_ms, ca);
    cmn_dispatch_clear(&d);
}

Test(dispatch, optional_fields_default)
{
    const char *min =
        "{\"communication_id\":\"0b7c6d1e-2f3a-5b4c-8d9e-0f1a2b3c4d5e\",\"request_id\":\"r\",\"tenant_id\":\"t\","
        "\"client_id\":\"c\",\"message_type\":\"m\",\"channel\":\"sms\",\"attempt\":1,\"to\":\"+14155550100\","
        "\"recipient\":{\"phone\":\"+14155550100\"},\"created_at\":\"2026-11-22T09:00:00Z\"}";
    json_object *o = parse(min);
    cmn_dispatch_t d;
    memset(&d, 0, sizeof d);
    char err[256] = "";
    cr_assert_eq(cmn_dispatch_from_json(o, &d, err, sizeof err), 0, "%s", err);
    cr_expect_eq(d.v, 1);
    cr_expect_eq(d.urgency, CMN_URGENCY_NORMAL);
    cr_expect_eq(d.hop, 0);
    cr_expect_eq(d.n_fallback, 0);
    cr_expect_eq(d.deadline_ms, 0);
    cr_expect_null(d.template_name);
    cr_expect_null(d.locale);
    cr_expect_null(d.context);
    cr_expect_null(d.attachments);
    cmn_dispatch_clear(&d);
    json_object_put(o);
}

Test(dispatch, required_fields)
{
    const char *required[] = {"communication_id", "request_id", "tenant_id", "client_id", "message_type",
                              "channel",          "attempt",    "to",        "recipient", "created_at"};
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++)
        expect_error(required[i], NULL, required[i]);
}

Test(dispatch, bad_values)
{
    expect_error("v", "2", "v");
    expect_error("communication_id", "\"nope\"", "communication_id");
    expect_error("communication_id", "7", "communication_id");
    expect_error("request_id", "\"a b\"", "request_id");
    expect_error("message_type", "\"Bad\"", "message_type");
    expect_error("urgency", "\"asap\"", "urgency");
    expect_error("channel", "\"fax\"", "channel");
    expect_error("attempt", "0", "attempt");
    expect_error("attempt", "\"1\"", "attempt");
    expect_error("hop", "-1", "hop");
    expect_error("to", "\"+14155550100\"", "to"); /* a phone number on the email channel */
    expect_error("to", "\"ana@example.com\\r\\nBcc: x@example.net\"", "to");
    expect_error("recipient", "{\"phone\":\"555\"}", "recipient.phone");
    expect_error("recipient", "[]", "recipient");
    expect_error("template", "\"../x\"", "template");
    expect_error("locale", "\"fr_CA\"", "locale");
    expect_error("context", "[]", "context");
    expect_error("attachments", "{}", "attachments");
    expect_error("fallback", "\"sms\"", "fallback");
    expect_error("fallback", "[\"fax\"]", "fallback");
    expect_error("fallback", "[\"sms\",\"sms\"]", "fallback");
    expect_error("fallback", "[\"email\"]", "fallback"); /* the current channel is not a fallback */
    expect_error("deadline", "\"soon\"", "deadline");
    expect_error("created_at", "\"2026-11-22\"", "created_at");
}

Test(dispatch, not_an_object)
{
    json_object *o = parse("[1]");
    cmn_dispatch_t d;
    memset(&d, 0, sizeof d);
    char err[128] = "";
    cr_expect_eq(cmn_dispatch_from_json(o, &d, err, sizeof err), CMN_ERR_INVALID);
    cr_expect_neq(err[0], '\0');
    cmn_dispatch_clear(&d);
    memset(&d, 0, sizeof d);
    cr_expect_eq(cmn_dispatch_from_json(NULL, &d, NULL, 0), CMN_ERR_INVALID);
    cmn_dispatch_clear(&d);
    json_object_put(o);
}

Test(dispatch, round_trip)
{
    cmn_dispatch_t a, b;
    char err[256];
    cr_assert_eq(parse_with(NULL, NULL, &a, err, sizeof err), 0, "%s", err);
    cmn_buf_t t1 = CMN_BUF_INIT, t2 = CMN_BUF_INIT;
    cr_assert_eq(cmn_dispatch_to_json(&a, &t1), 0);
    json_object *o = parse(t1.data);
    memset(&b, 0, sizeof b);
    cr_assert_eq(cmn_dispatch_from_json(o, &b, err, sizeof err), 0, "%s: %s", err, t1.data);
    cr_expect_str_eq(b.communication_id, a.communication_id);
    cr_expect_str_eq(b.request_id, a.request_id);
    cr_expect_str_eq(b.tenant_id, a.tenant_id);
    cr_expect_str_eq(b.client_id, a.client_id);
    cr_expect_str_eq(b.message_type, a.message_type);
    cr_expect_eq(b.urgency, a.urgency);
    cr_expect_eq(b.channel, a.channel);
    cr_expect_eq(b.attempt, a.attempt);
    cr_expect_eq(b.hop, a.hop);
    cr_expect_str_eq(b.to, a.to);
    cr_expect_str_eq(b.recipient.email, a.recipient.email);
    cr_expect_str_eq(b.recipient.locale, a.recipient.locale);
    cr_expect_str_eq(b.template_name, a.template_name);
    cr_expect_str_eq(b.locale, a.locale);
    cr_expect(json_object_equal(b.context, a.context));
    cr_expect(json_object_equal(b.attachments, a.attachments));
    cr_expect_eq(b.n_fallback, a.n_fallback);
    cr_expect_arr_eq(b.fallback, a.fallback, sizeof a.fallback);
    cr_expect_eq(b.deadline_ms, a.deadline_ms);
    cr_expect_eq(b.created_at_ms, a.created_at_ms);
    cr_assert_eq(cmn_dispatch_to_json(&b, &t2), 0);
    cr_expect_str_eq(t2.data, t1.data);
    /* The fallback plan keeps its order. */
    cr_expect_not_null(strstr(t1.data, "\"fallback\":[\"sms\",\"whatsapp\"]"), "%s", t1.data);
    cmn_buf_free(&t1);
    cmn_buf_free(&t2);
    cmn_dispatch_clear(&a);
    cmn_dispatch_clear(&b);
    json_object_put(o);
}

Test(dispatch, built_in_code_serialises)
{
    /* The router builds dispatches in code, not from JSON. */
    cmn_dispatch_t d;
    memset(&d, 0, sizeof d);
    cr_assert_eq(cmn_uuid_communication_id("t", "r", d.communication_id), 0);
    d.request_id = strdup("r");
    d.tenant_id = strdup("t");
    d.client_id = strdup("c");
    d.message_type = strdup("m");
    d.to = strdup("+14155550100");
    d.recipient.whatsapp = strdup("+14155550100");
    d.channel = CMN_CHANNEL_WHATSAPP;
    d.attempt = 1;
    d.urgency = CMN_URGENCY_CRITICAL;
    d.created_at_ms = 1763802000000;
    cmn_buf_t t = CMN_BUF_INIT;
    cr_assert_eq(cmn_dispatch_to_json(&d, &t), 0);
    cr_expect_not_null(strstr(t.data, "\"fallback\":[]"), "%s", t.data);
    cr_expect_null(strstr(t.data, "deadline"), "no deadline when 0: %s", t.data);
    json_object *o = parse(t.data);
    cmn_dispatch_t back;
    memset(&back, 0, sizeof back);
    char err[256] = "";
    cr_assert_eq(cmn_dispatch_from_json(o, &back, err, sizeof err), 0, "%s", err);
    cr_expect_eq(back.channel, CMN_CHANNEL_WHATSAPP);
    cr_expect_eq(back.urgency, CMN_URGENCY_CRITICAL);
    cr_expect_eq(back.created_at_ms, 1763802000000);
    cmn_buf_free(&t);
    cmn_dispatch_clear(&d);
    cmn_dispatch_clear(&back);
    json_object_put(o);
}

Test(recipient, address_per_channel)
{
    cmn_recipient_t r;
    memset(&r, 0, sizeof r);
    r.email = "ana@example.com";
    r.phone = "+14155550100";
    cr_expect_str_eq(cmn_recipient_address(&r, CMN_CHANNEL_EMAIL), "ana@example.com");
    cr_expect_str_eq(cmn_recipient_address(&r, CMN_CHANNEL_SMS), "+14155550100");
    cr_expect_null(cmn_recipient_address(&r, CMN_CHANNEL_WHATSAPP), "WhatsApp never falls back to phone");
    cr_expect_null(cmn_recipient_address(&r, CMN_CHANNEL_NONE));
    cr_expect_null(cmn_recipient_address(NULL, CMN_CHANNEL_EMAIL));
    r.whatsapp = "+14155550199";
    cr_expect_str_eq(cmn_recipient_address(&r, CMN_CHANNEL_WHATSAPP), "+14155550199");
}

Test(recipient, copy_is_deep)
{
    cmn_recipient_t src, dst;
    memset(&src, 0, sizeof src);
    memset(&dst, 0, sizeof dst);
    src.name = strdup("Ana");
    src.email = strdup("ana@example.com");
    src.locale = strdup("fr-CA");
    src.preferred[0] = CMN_CHANNEL_SMS;
    src.n_preferred = 1;
    cr_assert_eq(cmn_recipient_copy(&dst, &src), 0);
    cr_expect_str_eq(dst.name, "Ana");
    cr_expect_neq(dst.name, src.name);
    cr_expect_str_eq(dst.email, "ana@example.com");
    cr_expect_null(dst.phone);
    cr_expect_str_eq(dst.locale, "fr-CA");
    cr_expect_eq(dst.n_preferred, 1);
    cr_expect_eq(dst.preferred[0], CMN_CHANNEL_SMS);
    cmn_recipient_clear(&src);
    cr_expect_str_eq(dst.email, "ana@example.com", "the copy outlives the source");
    cmn_recipient_clear(&dst);
    cr_expect_null(dst.email);
    cr_expect_eq(dst.n_preferred, 0);
}

Test(recipient, to_and_from_json)
{
    json_object *o = parse("{\"email\":\"a@example.com\",\"whatsapp\":\"+447911123456\",\"preferred_channels\":[\"whatsapp\"]}");
    cmn_recipient_t r;
    memset(&r, 0, sizeof r);
    json_object *errs = json_object_new_array();
    cr_assert_eq(cmn_recipient_from_json(o, "recipient.", &r, errs), 0);
    json_object *w = cmn_recipient_to_json_object(&r);
    cr_assert_not_null(w);
    cr_expect(json_object_equal(w, o), "%s vs %s", json_object_to_json_string(w), json_object_to_json_string(o));
    json_object_put(w);
    cmn_recipient_clear(&r);

    json_object *bad = parse("{\"email\":\"x\",\"fax\":\"1\"}");
    cr_expect_eq(cmn_recipient_from_json(bad, "requests[4].recipient.", &r, errs), CMN_ERR_INVALID);
    cr_expect_eq(json_object_array_length(errs), 2, "%s", json_object_to_json_string(errs));
    cr_expect_str_eq(json_object_get_string(json_object_object_get(json_object_array_get_idx(errs, 0), "field")),
                     "requests[4].recipient.email");
    cr_expect_str_eq(json_object_get_string(json_object_object_get(json_object_array_get_idx(errs, 1), "field")),
                     "requests[4].recipient.fax");
    cmn_recipient_clear(&r);
    json_object_put(bad);
    json_object_put(errs);
    json_object_put(o);
}
