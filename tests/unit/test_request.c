/* test_request.c - CommunicationRequest v1 validation, normalisation and
 * serialisation (crm/request.h). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/buf.h"
#include "crm/err.h"
#include "crm/json.h"
#include "crm/request.h"
#include "crm/time.h"
#include "crm/uuid.h"

static const char *BASE = "{\"request_id\":\"r-1\",\"client_id\":\"c-1\",\"message_type\":\"appointment_reminder\","
                          "\"recipient\":{\"email\":\"ana@example.com\"}}";

static json_object *parse(const char *s)
{
    char err[256];
    json_object *o = cmn_json_parse(s, strlen(s), err, sizeof err);
    cr_assert_not_null(o, "test JSON does not parse: %s: %s", err, s);
    return o;
}

/* BASE with key set to the JSON value (NULL removes the key). A key of the
 * form "recipient.x" sets it inside the recipient. */
static json_object *with(const char *key, const char *value_json)
{
    json_object *o = parse(BASE);
    json_object *target = o;
    const char *k = key;
    if (strncmp(key, "recipient.", 10) == 0) {
        target = json_object_object_get(o, "recipient");
        k = key + 10;
    }
    if (value_json == NULL)
        json_object_object_del(target, k);
    else if (strcmp(value_json, "null") == 0)
        json_object_object_add(target, k, NULL); /* json-c's JSON null */
    else
        json_object_object_add(target, k, parse(value_json));
    return o;
}

/* Runs validation; returns rc and leaves the errors array in *errs (caller puts). */
static int validate(json_object *o, const char *prefix, cmn_request_t *r, json_object **errs)
{
    *errs = json_object_new_array();
    memset(r, 0, sizeof *r);
    return cmn_request_from_json(o, prefix, r, *errs);
}

static int count_field(json_object *errs, const char *field)
{
    int n = 0;
    for (size_t i = 0; i < json_object_array_length(errs); i++) {
        json_object *e = json_object_array_get_idx(errs, i);
        if (strcmp(json_object_get_string(json_object_object_get(e, "field")), field) == 0)
            n++;
    }
    return n;
}

/* Asserts that BASE with key=value is rejected with exactly one error, on field. */
static void expect_invalid(const char *key, const char *value_json, const char *field)
{
    cmn_request_t r;
    json_object *errs = NULL;
    json_object *o = with(key, value_json);
    int rc = validate(o, "", &r, &errs);
    cr_expect_eq(rc, CMN_ERR_INVALID, "%s=%s should be invalid", key, value_json ? value_json : "(absent)");
    cr_expect_eq(count_field(errs, field), 1, "%s=%s: expected one error on %s, got %s", key,
                 value_json ? value_json : "(absent)", field, json_object_to_json_string(errs));
    cr_expect_eq(json_object_array_length(errs), 1, "%s=%s: expected exactly one error, got %s", key,
                 value_json ? value_json : "(absent)", json_object_to_json_string(errs));
    cmn_request_clear(&r);
    json_object_put(errs);
    json_object_put(o);
}

static void expect_valid(const char *key, const char *value_json)
{
    cmn_request_t r;
    json_object *errs = NULL;
    json_object *o = with(key, value_json);
    int rc = validate(o, "", &r, &errs);
    cr_expect_eq(rc, 0, "%s=%s should be valid, errors: %s", key, value_json ? value_json : "(absent)",
                 json_object_to_json_string(errs));
    cmn_request_clear(&r);
    json_object_put(errs);
    json_object_put(o);
}

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    cr_assert_not_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* ------------------------------------------------------------ happy path */

Test(request, minimal_request_gets_defaults)
{
    cmn_request_t r;
    json_object *errs = NULL;
    json_object *o = parse(BASE);
    cr_assert_eq(validate(o, "", &r, &errs), 0, "%s", json_object_to_json_string(errs));
    cr_expect_eq(r.v, 1);
    cr_expect_str_eq(r.request_id, "r-1");
    cr_expect_str_eq(r.tenant_id, "default");
    cr_expect_str_eq(r.client_id, "c-1");
    cr_expect_null(r.plan_id);
    cr_expect_str_eq(r.message_type, "appointment_reminder");
    cr_expect_eq(r.urgency, CMN_URGENCY_NORMAL);
    cr_expect_str_eq(r.recipient.email, "ana@example.com");
    cr_expect_null(r.recipient.phone);
    cr_expect_eq(r.n_channels, 0);
    cr_expect_null(r.context);
    cr_expect_null(r.attachments);
    cr_expect_eq(r.send_after_ms, 0);
    cr_expect_eq(r.expires_at_ms, 0);
    cr_expect_eq(r.received_at_ms, 0);
    char expect_id[CMN_UUID_STR_LEN + 1];
    cr_assert_eq(cmn_uuid_communication_id("default", "r-1", expect_id), 0);
    cr_expect_str_eq(r.communication_id, expect_id);
    cr_expect_eq(json_object_array_length(errs), 0);
    cmn_request_clear(&r);
    json_object_put(errs);
    json_object_put(o);
}

static const char *FULL =
    "{\"v\":1,\"request_id\":\"req-42\",\"tenant_id\":\"acme\",\"client_id\":\"client-7\",\"plan_id\":\"plan-3\","
    "\"message_type\":\"event.reminder-v2\",\"urgency\":\"high\","
    "\"recipient\":{\"name\":\"Ana Lu\\u00eds\",\"email\":\"ana.luis+crm@mail.example.com\",\"phone\":\"+351912345678\","
    "\"whatsapp\":\"+351912345679\",\"timezone\":\"Europe/Lisbon\",\"locale\":\"pt-pt\","
    "\"preferred_channels\":[\"whatsapp\",\"email\"]},"
    "\"channels\":[\"sms\",\"email\"],\"template\":\"reminder_v2\",\"context\":{\"event\":{\"name\":\"Gala\",\"seats\":2}},"
    "\"attachments\":[{\"filename\":\"ticket.pdf\",\"content_type\":\"application/pdf\",\"content_base64\":\"JVBERi0=\"}],"
    "\"send_after\":\"2026-11-22T09:30:00Z\",\"expires_at\":\"2026-11-23T09:30:00+01:00\"}";

Test(request, full_request_is_parsed)
{
    cmn_request_t r;
    json_object *errs = NULL;
    json_object *o = parse(FULL);
    cr_assert_eq(validate(o, "", &r, &errs), 0, "%s", json_object_to_json_string(errs));
    cr_expect_str_eq(r.tenant_id, "acme");
    cr_expect_str_eq(r.plan_id, "plan-3");
    cr_expect_str_eq(r.message_type, "event.reminder-v2");
    cr_expect_eq(r.urgency, CMN_URGENCY_HIGH);
    cr_expect_str_eq(r.recipient.name, "Ana Lu\xc3\xads");
    cr_expect_str_eq(r.recipient.phone, "+351912345678");
    cr_expect_str_eq(r.recipient.whatsapp, "+351912345679");
    cr_expect_str_eq(r.recipient.timezone, "Europe/Lisbon");
    cr_expect_str_eq(r.recipient.locale, "pt-PT", "locale is stored in canonical case");
    cr_assert_eq(r.recipient.n_preferred, 2);
    cr_expect_eq(r.recipient.preferred[0], CMN_CHANNEL_WHATSAPP);
    cr_expect_eq(r.recipient.preferred[1], CMN_CHANNEL_EMAIL);
    cr_assert_eq(r.n_channels, 2);
    cr_expect_eq(r.channels[0], CMN_CHANNEL_SMS);
    cr_expect_eq(r.channels[1], CMN_CHANNEL_EMAIL);
    cr_expect_str_eq(r.template_name, "reminder_v2");
    cr_assert_not_null(r.context);
    cr_expect_eq(json_object_get_int(json_object_object_get(json_object_object_get(r.context, "event"), "seats")), 2);
    cr_assert_not_null(r.attachments);
    cr_expect_eq(json_object_array_length(r.attachments), 1);
    int64_t sa = 0, ea = 0;
    cr_assert_eq(cmn_time_parse_rfc3339("2026-11-22T09:30:00Z", &sa), 0);
    cr_assert_eq(cmn_time_parse_rfc3339("2026-11-23T08:30:00Z", &ea), 0);
    cr_expect_eq(r.send_after_ms, sa);
    cr_expect_eq(r.expires_at_ms, ea);
    char expect_id[CMN_UUID_STR_LEN + 1];
    cr_assert_eq(cmn_uuid_communication_id("acme", "req-42", expect_id), 0);
    cr_expect_str_eq(r.communication_id, expect_id);
    cmn_request_clear(&r);
    json_object_put(errs);
    json_object_put(o);
}

Test(request, null_optional_fields_are_absent)
{
    expect_valid("plan_id", "null");
    expect_valid("template", "null");
    expect_valid("context", "null");
    expect_valid("channels", "null");
    expect_valid("send_after", "null");
    expect_valid("recipient.phone", "null");

    cmn_request_t r;
    json_object *errs = NULL;
    json_object *o = with("tenant_id", "null");
    cr_assert_eq(validate(o, "", &r, &errs), 0);
    cr_expect_str_eq(r.tenant_id, "default");
    cmn_request_clear(&r);
    json_object_put(errs);
    json_object_put(o);
}

/* --------------------------------------------------------- field by field */

Test(request, version)
{
    expect_valid("v", "1");
    expect_invalid("v", "2", "v");
    expect_invalid("v", "0", "v");
    expect_invalid("v", "\"1\"", "v");
    expect_invalid("v", "1.0", "v");
}

Test(request, request_id)
{
    expect_invalid("request_id", NULL, "request_id");
    expect_invalid("request_id", "null", "request_id");
    expect_invalid("request_id", "\"\"", "request_id");
    expect_invalid("request_id", "\"has space\"", "request_id");
    expect_invalid("request_id", "\"tab\\there\"", "request_id");
    expect_invalid("request_id", "\"caf\\u00e9\"", "request_id");
    expect_invalid("request_id", "\"nul\\u0000byte\"", "request_id");
    expect_invalid("request_id", "42", "request_id");
    expect_valid("request_id", "\"order:123/retry#1\"");

    char *max = repeat('a', CMN_REQ_MAX_ID);
    char *over = repeat('a', CMN_REQ_MAX_ID + 1);
    char buf[300];
    snprintf(buf, sizeof buf, "\"%s\"", max);
    expect_valid("request_id", buf);
    snprintf(buf, sizeof buf, "\"%s\"", over);
    expect_invalid("request_id", buf, "request_id");
    free(max);
    free(over);
}

Test(request, client_tenant_plan_ids)
{
    expect_invalid("client_id", NULL, "client_id");
    expect_invalid("client_id", "\"\"", "client_id");
    expect_invalid("client_id", "{}", "client_id");
    expect_valid("tenant_id", "\"acme-eu\"");
    expect_invalid("tenant_id", "\"\"", "tenant_id");
    expect_invalid("tenant_id", "\"a:b\"", "tenant_id");
    expect_invalid("tenant_id", "7", "tenant_id");
    expect_valid("plan_id", "\"p-1\"");
    expect_invalid("plan_id", "\"p 1\"", "plan_id");
    expect_invalid("plan_id", "[]", "plan_id");
}

Test(request, message_type)
{
    expect_invalid("message_type", NULL, "message_type");
    expect_invalid("message_type", "\"\"", "message_type");
    expect_invalid("message_type", "\"Reminder\"", "message_type");
    expect_invalid("message_type", "\"with space\"", "message_type");
    expect_invalid("message_type", "\"a/b\"", "message_type");
    expect_invalid("message_type", "\"..\"", "message_type");
    expect_invalid("message_type", "\".hidden\"", "message_type");
    expect_invalid("message_type", "true", "message_type");
    expect_valid("message_type", "\"invoice.paid_v2-eu\"");

    char *max = repeat('m', 64);
    char *over = repeat('m', 65);
    char buf[100];
    snprintf(buf, sizeof buf, "\"%s\"", max);
    expect_valid("message_type", buf);
    snprintf(buf, sizeof buf, "\"%s\"", over);
    expect_invalid("message_type", buf, "message_type");
    free(max);
    free(over);
}

Test(request, urgency)
{
    const char *ok[] = {"low", "normal", "high", "critical"};
    const cmn_urgency_t want[] = {CMN_URGENCY_LOW, CMN_URGENCY_NORMAL, CMN_URGENCY_HIGH, CMN_URGENCY_CRITICAL};
    for (size_t i = 0; i < 4; i++) {
        char buf[32];
        snprintf(buf, sizeof buf, "\"%s\"", ok[i]);
        json_object *o = with("urgency", buf);
        cmn_request_t r;
        json_object *errs = NULL;
        cr_assert_eq(validate(o, "", &r, &errs), 0);
        cr_expect_eq(r.urgency, want[i]);
        cmn_request_clear(&r);
        json_object_put(errs);
        json_object_put(o);
    }
    expect_invalid("urgency", "\"urgent\"", "urgency");
    expect_invalid("urgency", "\"HIGH\"", "urgency");
    expect_invalid("urgency", "3", "urgency");
}

Test(request, recipient_shape)
{
    expect_invalid("recipient", NULL, "recipient");
    expect_invalid("recipient", "\"ana@example.com\"", "recipient");
    expect_invalid("recipient", "{}", "recipient");
    expect_invalid("recipient", "{\"name\":\"Ana\",\"timezone\":\"Europe/Paris\"}", "recipient");
    expect_valid("recipient", "{\"phone\":\"+14155550100\"}");
    expect_valid("recipient", "{\"whatsapp\":\"+14155550100\"}");

    /* A typo is reported as an unknown field, next to the missing address. */
    cmn_request_t r;
    json_object *errs = NULL;
    json_object *o = with("recipient", "{\"phon\":\"+14155550100\"}");
    cr_assert_eq(validate(o, "", &r, &errs), CMN_ERR_INVALID);
    cr_expect_eq(count_field(errs, "recipient.phon"), 1, "%s", json_object_to_json_string(errs));
    cr_expect_eq(count_field(errs, "recipient"), 1, "%s", json_object_to_json_string(errs));
    cmn_request_clear(&r);
    json_object_put(errs);
    json_object_put(o);
}

Test(request, phone_and_whatsapp_e164)
{
    const char *fields[] = {"recipient.phone", "recipient.whatsapp"};
    for (size_t f = 0; f < 2; f++) {
        expect_valid(fields[f], "\"+14155550100\"");
        expect_valid(fields[f], "\"+447911123456\"");
        expect_valid(fields[f], "\"+123456789012345\"");
        expect_invalid(fields[f], "\"14155550100\"", fields[f]);
        expect_invalid(fields[f], "\"+04155550100\"", fields[f]);
        expect_invalid(fields[f], "\"+1\"", fields[f]);
        expect_invalid(fields[f], "\"+1234567890123456\"", fields[f]);
        expect_invalid(fields[f], "\"+1 415 555 0100\"", fields[f]);
        expect_invalid(fields[f], "\"+1-415-555-0100\"", fields[f]);
        expect_invalid(fields[f], "\"\"", fields[f]);
        expect_invalid(fields[f], "14155550100", fields[f]);
    }
    cr_expect(cmn_valid_e164("+12"));
    cr_expect_not(cmn_valid_e164(NULL));
    cr_expect_not(cmn_valid_e164("+"));
}

Test(request, email_addr_spec)
{
    const char *ok[] = {"a@b.co", "first.last+tag@sub.example.com", "o'brien@example.ie",
                        "x_y-z!#$%&*/=?^`{|}~@example.org", "user@xn--bcher-kva.example", "u@123.example.com"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        cr_expect(cmn_valid_email(ok[i]), "%s should be valid", ok[i]);
    const char *bad[] = {"",
                         "plain",
                         "a@b",
                         "@example.com",
                         "a@",
                         "a..b@example.com",
                         ".a@example.com",
                         "a.@example.com",
                         "a@-b.com",
                         "a@b-.com",
                         "a@example..com",
                         "a@.example.com",
                         "a@example.com.",
                         "a@1.2.3.4",
                         "a b@example.com",
                         "a@exa_mple.com",
                         "a@b@example.com",
                         "\"quoted\"@example.com",
                         "a@example.com\r\nBcc: x@example.net",
                         "a@[192.0.2.1]",
                         "j\xc3\xb6rg@example.com"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_not(cmn_valid_email(bad[i]), "%s should be invalid", bad[i]);

    /* Length limits: local part 64, whole address 254, label 63. */
    char addr[400];
    char *l64 = repeat('l', 64), *l65 = repeat('l', 65), *lab63 = repeat('d', 63), *lab64 = repeat('d', 64);
    snprintf(addr, sizeof addr, "%s@example.com", l64);
    cr_expect(cmn_valid_email(addr));
    snprintf(addr, sizeof addr, "%s@example.com", l65);
    cr_expect_not(cmn_valid_email(addr));
    snprintf(addr, sizeof addr, "a@%s.com", lab63);
    cr_expect(cmn_valid_email(addr));
    snprintf(addr, sizeof addr, "a@%s.com", lab64);
    cr_expect_not(cmn_valid_email(addr));
    /* 64 + 1 + 63 + 1 + 63 + 1 + 61 = 254 */
    char *lab61 = repeat('e', 61), *lab62 = repeat('e', 62);
    snprintf(addr, sizeof addr, "%s@%s.%s.%s", l64, lab63, lab63, lab61);
    cr_expect_eq(strlen(addr), 254);
    cr_expect(cmn_valid_email(addr));
    snprintf(addr, sizeof addr, "%s@%s.%s.%s", l64, lab63, lab63, lab62);
    cr_expect_eq(strlen(addr), 255);
    cr_expect_not(cmn_valid_email(addr));
    free(l64);
    free(l65);
    free(lab63);
    free(lab64);
    free(lab61);
    free(lab62);

    expect_invalid("recipient.email", "\"ana@example\"", "recipient.email");
    expect_invalid("recipient.email", "\"ana@example.com\\r\\nBcc: eve@example.net\"", "recipient.email");
    expect_invalid("recipient.email", "[\"ana@example.com\"]", "recipient.email");
}

Test(request, timezone_iana_via_icu)
{
    const char *ok[] = {"Europe/Paris", "America/New_York", "UTC", "Asia/Kolkata", "US/Eastern", "Etc/GMT+5"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        cr_expect(cmn_valid_timezone(ok[i]), "%s should be valid", ok[i]);
    const char *bad[] = {"", "Mars/Olympus_Mons", "Etc/Unknown", "GMT+05:00", "Europe/Paris ", "europe/nowhere",
                         "+02:00"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_not(cmn_valid_timezone(bad[i]), "%s should be invalid", bad[i]);
    cr_expect_not(cmn_valid_timezone(NULL));
    expect_valid("recipient.timezone", "\"Europe/Paris\"");
    expect_invalid("recipient.timezone", "\"Paris\"", "recipient.timezone");
    expect_invalid("recipient.timezone", "1", "recipient.timezone");
}

Test(request, locale_bcp47)
{
    const char *ok[] = {"en", "fr-CA", "pt-BR", "zh-Hant-TW", "es-419", "de-DE-1996", "sl-rozaj", "fil"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        cr_expect(cmn_valid_locale(ok[i]), "%s should be valid", ok[i]);
    const char *bad[] = {"", "english", "en_US", "e", "en-", "-en", "en--US", "en-US-x-private", "12",
                         "en-u-ca-gregory", "fr-CA-CA", "en-US-Latn", "é"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_not(cmn_valid_locale(bad[i]), "%s should be invalid", bad[i]);

    char out[64];
    cr_assert_eq(cmn_locale_normalize("pt-br", out, sizeof out), 0);
    cr_expect_str_eq(out, "pt-BR");
    cr_assert_eq(cmn_locale_normalize("ZH-hant-tw", out, sizeof out), 0);
    cr_expect_str_eq(out, "zh-Hant-TW");
    cr_assert_eq(cmn_locale_normalize("EN", out, sizeof out), 0);
    cr_expect_str_eq(out, "en");
    cr_expect_eq(cmn_locale_normalize("fr-CA", out, 3), CMN_ERR_INVALID, "too small an output buffer");

    expect_invalid("recipient.locale", "\"fr_FR\"", "recipient.locale");
}

Test(request, recipient_name)
{
    expect_valid("recipient.name", "\"Zo\\u00eb O'Neil \\ud83d\\ude00\"");
    expect_invalid("recipient.name", "\"\"", "recipient.name");
    expect_invalid("recipient.name", "\"Ana\\r\\nBcc: x@example.net\"", "recipient.name");
    expect_invalid("recipient.name", "\"tab\\tname\"", "recipient.name");
    expect_invalid("recipient.name", "\"c1\\u0085control\"", "recipient.name");
    expect_invalid("recipient.name", "{\"first\":\"Ana\"}", "recipient.name");
    char *n257 = repeat('n', 257);
    char buf[300];
    snprintf(buf, sizeof buf, "\"%s\"", n257);
    expect_invalid("recipient.name", buf, "recipient.name");
    free(n257);
}

Test(request, preferred_channels)
{
    expect_valid("recipient.preferred_channels", "[]");
    expect_valid("recipient.preferred_channels", "[\"sms\",\"email\",\"whatsapp\"]");
    expect_invalid("recipient.preferred_channels", "[\"sms\",\"sms\"]", "recipient.preferred_channels[1]");
    expect_invalid("recipient.preferred_channels", "[\"pigeon\"]", "recipient.preferred_channels[0]");
    expect_invalid("recipient.preferred_channels", "\"sms\"", "recipient.preferred_channels");
}

Test(request, channels)
{
    json_object *o = with("channels", "[\"whatsapp\",\"sms\",\"email\"]");
    cmn_request_t r;
    json_object *errs = NULL;
    cr_assert_eq(validate(o, "", &r, &errs), 0);
    cr_assert_eq(r.n_channels, 3);
    cr_expect_eq(r.channels[0], CMN_CHANNEL_WHATSAPP);
    cr_expect_eq(r.channels[1], CMN_CHANNEL_SMS);
    cr_expect_eq(r.channels[2], CMN_CHANNEL_EMAIL);
    cmn_request_clear(&r);
    json_object_put(errs);
    json_object_put(o);

    expect_invalid("channels", "[]", "channels");
    expect_invalid("channels", "\"email\"", "channels");
    expect_invalid("channels", "[\"email\",\"email\"]", "channels[1]");
    expect_invalid("channels", "[\"fax\"]", "channels[0]");
    expect_invalid("channels", "[\"Email\"]", "channels[0]");
    expect_invalid("channels", "[1]", "channels[0]");
    expect_invalid("channels", "[\"sms\",\"email\",\"sms\"]", "channels[2]");
}

Test(request, template_name)
{
    expect_valid("template", "\"HXb5b62575e6e4ff6129ad7c8efe1f983e\"");
    expect_valid("template", "\"appointment_reminder.v2\"");
    expect_invalid("template", "\"../../etc/passwd\"", "template");
    expect_invalid("template", "\"a b\"", "template");
    expect_invalid("template", "\"\"", "template");
    expect_invalid("template", "5", "template");
}

Test(request, context)
{
    expect_valid("context", "{}");
    expect_valid("context", "{\"a\":[1,2,{\"b\":null}]}");
    expect_invalid("context", "[1,2]", "context");
    expect_invalid("context", "\"text\"", "context");

    /* {"k":"xxx..."} is 8 bytes of framing plus the string. */
    char *fits = repeat('x', CMN_REQ_MAX_CONTEXT_BYTES - 8);
    char *over = repeat('x', CMN_REQ_MAX_CONTEXT_BYTES - 7);
    size_t cap = CMN_REQ_MAX_CONTEXT_BYTES + 64;
    char *buf = malloc(cap);
    cr_assert_not_null(buf);
    snprintf(buf, cap, "{\"k\":\"%s\"}", fits);
    cr_assert_eq(strlen(buf), CMN_REQ_MAX_CONTEXT_BYTES);
    expect_valid("context", buf);
    snprintf(buf, cap, "{\"k\":\"%s\"}", over);
    expect_invalid("context", buf, "context");
    free(buf);
    free(fits);
    free(over);
}

Test(request, attachments)
{
    const char *one = "[{\"filename\":\"report Q3.pdf\",\"content_type\":\"application/pdf\",\"content_base64\":\"YWJj\"}]";
    expect_valid("attachments", one);
    expect_valid("attachments", "[]");
    expect_valid("attachments",
                 "[{\"filename\":\"a.txt\",\"content_type\":\"text/plain\",\"content_base64\":\"YQ==\"},"
                 "{\"filename\":\"b.txt\",\"content_type\":\"text/plain\",\"content_base64\":\"\"}]");
    expect_invalid("attachments", "{}", "attachments");
    expect_invalid("attachments", "[\"file\"]", "attachments[0]");
    expect_invalid("attachments", "[{\"content_type\":\"text/plain\",\"content_base64\":\"YQ==\"}]",
                   "attachments[0].filename");
    expect_invalid("attachments", "[{\"filename\":\"a\",\"content_base64\":\"YQ==\"}]", "attachments[0].content_type");
    expect_invalid("attachments", "[{\"filename\":\"a\",\"content_type\":\"text/plain\"}]",
                   "attachments[0].content_base64");

    const char *bad_names[] = {"\"../x.pdf\"", "\"dir/x.pdf\"", "\"C:\\\\x.pdf\"", "\"a\\r\\nb.pdf\"", "\"\"",
                               "\"..\"", "7"};
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        char buf[256];
        snprintf(buf, sizeof buf, "[{\"filename\":%s,\"content_type\":\"text/plain\",\"content_base64\":\"YQ==\"}]",
                 bad_names[i]);
        expect_invalid("attachments", buf, "attachments[0].filename");
    }
    const char *bad_types[] = {"\"pdf\"", "\"application/\"", "\"/pdf\"", "\"application/pdf; name=x\"",
                               "\"text/plain\\r\\nX: y\"", "\"a/b/c\""};
    for (size_t i = 0; i < sizeof bad_types / sizeof bad_types[0]; i++) {
        char buf[256];
        snprintf(buf, sizeof buf, "[{\"filename\":\"a\",\"content_type\":%s,\"content_base64\":\"YQ==\"}]",
                 bad_types[i]);
        expect_invalid("attachments", buf, "attachments[0].content_type");
    }
    const char *bad_b64[] = {"\"YQ\"", "\"Y===\"", "\"ab=c\"", "\"YW Jj\"", "\"YWJj\\n\"", "\"YW-j\"", "\"=YWJ\""};
    for (size_t i = 0; i < sizeof bad_b64 / sizeof bad_b64[0]; i++) {
        char buf[256];
        snprintf(buf, sizeof buf, "[{\"filename\":\"a\",\"content_type\":\"text/plain\",\"content_base64\":%s}]",
                 bad_b64[i]);
        expect_invalid("attachments", buf, "attachments[0].content_base64");
    }
    expect_invalid("attachments",
                   "[{\"filename\":\"a\",\"content_type\":\"text/plain\",\"content_base64\":\"YQ==\",\"data\":1}]",
                   "attachments[0].data");

    /* The second attachment is the bad one: its index is named. */
    expect_invalid("attachments",
                   "[{\"filename\":\"a\",\"content_type\":\"text/plain\",\"content_base64\":\"YQ==\"},"
                   "{\"filename\":\"b\",\"content_type\":\"text\",\"content_base64\":\"YQ==\"}]",
                   "attachments[1].content_type");
}

Test(request, attachment_count_limit)
{
    cmn_buf_t b = CMN_BUF_INIT;
    for (int n = 10; n <= 11; n++) {
        cmn_buf_reset(&b);
        cmn_buf_putc(&b, '[');
        for (int i = 0; i < n; i++)
            cmn_buf_printf(&b, "%s{\"filename\":\"f%d\",\"content_type\":\"text/plain\",\"content_base64\":\"YQ==\"}",
                           i > 0 ? "," : "", i);
        cmn_buf_putc(&b, ']');
        if (n == 10)
            expect_valid("attachments", b.data);
        else
            expect_invalid("attachments", b.data, "attachments");
    }
    cmn_buf_free(&b);
}

Test(request, attachment_size_limit)
{
    /* 10 MiB decoded is accepted, one byte more is not. */
    size_t sizes[2] = {CMN_REQ_MAX_ATTACHMENT_BYTES, CMN_REQ_MAX_ATTACHMENT_BYTES + 1};
    for (int k = 0; k < 2; k++) {
        size_t decoded = sizes[k];
        size_t enc = (decoded + 2) / 3 * 4;
        size_t pad = (3 - decoded % 3) % 3;
        char *b64 = repeat('A', enc);
        for (size_t i = 0; i < pad; i++)
            b64[enc - 1 - i] = '=';
        size_t cap = enc + 128;
        char *buf = malloc(cap);
        cr_assert_not_null(buf);
        snprintf(buf, cap, "[{\"filename\":\"big.bin\",\"content_type\":\"application/octet-stream\",\"content_base64\":\"%s\"}]",
                 b64);
        if (k == 0)
            expect_valid("attachments", buf);
        else
            expect_invalid("attachments", buf, "attachments[0].content_base64");
        free(buf);
        free(b64);
    }
}

Test(request, times)
{
    expect_valid("send_after", "\"2026-11-22T09:30:00Z\"");
    expect_valid("expires_at", "\"2026-11-22T09:30:00.250+05:30\"");
    expect_invalid("send_after", "\"2026-11-22 09:30\"", "send_after");
    expect_invalid("send_after", "\"tomorrow\"", "send_after");
    expect_invalid("send_after", "1763803800000", "send_after");
    expect_invalid("expires_at", "\"2026-13-01T00:00:00Z\"", "expires_at");

    json_object *o = with("send_after", "\"2026-11-22T10:00:00Z\"");
    json_object_object_add(o, "expires_at", json_object_new_string("2026-11-22T09:00:00Z"));
    cmn_request_t r;
    json_object *errs = NULL;
    cr_expect_eq(validate(o, "", &r, &errs), CMN_ERR_INVALID);
    cr_expect_eq(count_field(errs, "expires_at"), 1, "%s", json_object_to_json_string(errs));
    cmn_request_clear(&r);
    json_object_put(errs);

    /* Equal is not "after". */
    json_object_object_add(o, "expires_at", json_object_new_string("2026-11-22T11:00:00+01:00"));
    cr_expect_eq(validate(o, "", &r, &errs), CMN_ERR_INVALID);
    cr_expect_eq(count_field(errs, "expires_at"), 1);
    cmn_request_clear(&r);
    json_object_put(errs);

    json_object_object_add(o, "expires_at", json_object_new_string("2026-11-22T10:00:01Z"));
    cr_expect_eq(validate(o, "", &r, &errs), 0);
    cmn_request_clear(&r);
    json_object_put(errs);
    json_object_put(o);
}

Test(request, received_at_and_communication_id_members)
{
    char id[CMN_UUID_STR_LEN + 1], buf[64];
    cr_assert_eq(cmn_uuid_communication_id("default", "r-1", id), 0);
    snprintf(buf, sizeof buf, "\"%s\"", id);
    expect_valid("communication_id", buf);
    expect_invalid("communication_id", "\"6f1c3f0e-5b7a-4d0e-9a51-2c8e7d4b1a01\"", "communication_id");
    expect_invalid("communication_id", "\"not-a-uuid\"", "communication_id");
    expect_valid("received_at", "\"2026-11-22T09:30:00Z\"");
    expect_invalid("received_at", "\"yesterday\"", "received_at");

    json_object *o = with("received_at", "\"2026-11-22T09:30:00.123Z\"");
    cmn_request_t r;
    json_object *errs = NULL;
    cr_assert_eq(validate(o, "", &r, &errs), 0);
    int64_t want = 0;
    cmn_time_parse_rfc3339("2026-11-22T09:30:00.123Z", &want);
    cr_expect_eq(r.received_at_ms, want);
    cmn_request_clear(&r);
    json_object_put(errs);
    json_object_put(o);
}

Test(request, unknown_top_level_fields_are_rejected)
{
    expect_invalid("recipeint", "{}", "recipeint");
    expect_invalid("priority", "\"high\"", "priority");
}

Test(request, not_an_object)
{
    const char *docs[] = {"[]", "\"x\"", "1", "null"};
    for (size_t i = 0; i < 4; i++) {
        json_object *o = strcmp(docs[i], "null") == 0 ? NULL : parse(docs[i]);
        cmn_request_t r;
        json_object *errs = NULL;
        cr_expect_eq(validate(o, "requests[2].", &r, &errs), CMN_ERR_INVALID);
        cr_expect_eq(count_field(errs, "requests[2]"), 1, "%s", json_object_to_json_string(errs));
        cmn_request_clear(&r);
        json_object_put(errs);
        json_object_put(o);
    }
}

/* ------------------------------------------------- collecting every error */

Test(request, every_bad_field_is_reported_with_prefix)
{
    json_object *o = parse("{\"request_id\":\"r 1\",\"message_type\":\"Bad Type\",\"urgency\":\"asap\","
                           "\"recipient\":{\"email\":\"nope\",\"phone\":\"555-0100\",\"timezone\":\"Nowhere/City\"},"
                           "\"channels\":[\"email\",\"fax\"],\"extra\":true,"
                           "\"attachments\":[{\"filename\":\"a/b\",\"content_type\":\"x\",\"content_base64\":\"!\"}]}");
    cmn_request_t r;
    json_object *errs = NULL;
    cr_assert_eq(validate(o, "requests[2].", &r, &errs), CMN_ERR_INVALID);
    const char *want[] = {"requests[2].request_id",
                          "requests[2].client_id",
                          "requests[2].message_type",
                          "requests[2].urgency",
                          "requests[2].recipient.email",
                          "requests[2].recipient.phone",
                          "requests[2].recipient.timezone",
                          "requests[2].channels[1]",
                          "requests[2].attachments[0].filename",
                          "requests[2].attachments[0].content_type",
                          "requests[2].attachments[0].content_base64",
                          "requests[2].extra"};
    size_t n = sizeof want / sizeof want[0];
    for (size_t i = 0; i < n; i++)
        cr_expect_eq(count_field(errs, want[i]), 1, "missing %s in %s", want[i], json_object_to_json_string(errs));
    cr_expect_eq(json_object_array_length(errs), n, "%s", json_object_to_json_string(errs));
    /* Every error has a human reason. */
    for (size_t i = 0; i < json_object_array_length(errs); i++) {
        const char *reason = json_object_get_string(json_object_object_get(json_object_array_get_idx(errs, i), "reason"));
        cr_expect(reason != NULL && strlen(reason) > 5);
    }
    /* No id can be derived without a valid request_id. */
    cr_expect_str_eq(r.communication_id, "");
    cmn_request_clear(&r);
    json_object_put(errs);
    json_object_put(o);
}

Test(request, null_errors_array_still_gives_a_verdict)
{
    json_object *o = with("urgency", "\"asap\"");
    cmn_request_t r;
    memset(&r, 0, sizeof r);
    cr_expect_eq(cmn_request_from_json(o, NULL, &r, NULL), CMN_ERR_INVALID);
    cmn_request_clear(&r);
    json_object_put(o);
}

/* ------------------------------------------------------ ids and round trip */

static void id_of(const char *tenant, const char *request_id, char out[CMN_UUID_STR_LEN + 1])
{
    char buf[512];
    snprintf(buf, sizeof buf,
             "{\"request_id\":\"%s\",%s%s%s\"client_id\":\"c\",\"message_type\":\"t\",\"recipient\":{\"phone\":\"+14155550100\"}}",
             request_id, tenant ? "\"tenant_id\":\"" : "", tenant ? tenant : "", tenant ? "\"," : "");
    json_object *o = parse(buf);
    cmn_request_t r;
    json_object *errs = NULL;
    cr_assert_eq(validate(o, "", &r, &errs), 0, "%s", json_object_to_json_string(errs));
    memcpy(out, r.communication_id, CMN_UUID_STR_LEN + 1);
    cmn_request_clear(&r);
    json_object_put(errs);
    json_object_put(o);
}

Test(request, communication_id_is_deterministic_per_tenant)
{
    char a[CMN_UUID_STR_LEN + 1], b[CMN_UUID_STR_LEN + 1], c[CMN_UUID_STR_LEN + 1], d[CMN_UUID_STR_LEN + 1],
        e[CMN_UUID_STR_LEN + 1];
    id_of("acme", "order-1", a);
    id_of("acme", "order-1", b);
    id_of("globex", "order-1", c);
    id_of(NULL, "order-1", d);
    id_of("default", "order-1", e);
    cr_expect(cmn_uuid_is_valid(a));
    cr_expect_str_eq(a, b, "the same request always gets the same id");
    cr_expect_str_neq(a, c, "tenants never share ids");
    cr_expect_str_eq(d, e, "an absent tenant is the default tenant");
    id_of("acme", "order-2", b);
    cr_expect_str_neq(a, b);
    /* Version 5 UUID. */
    cr_expect_eq(a[14], '5');
}

Test(request, to_json_writes_normalised_form)
{
    json_object *o = with("recipient", "{\"phone\":\"+14155550100\",\"locale\":\"en-us\"}");
    cmn_request_t r;
    json_object *errs = NULL;
    cr_assert_eq(validate(o, "", &r, &errs), 0);
    cr_assert_eq(cmn_time_parse_rfc3339("2026-11-22T09:30:00.456Z", &r.received_at_ms), 0);
    cmn_buf_t b = CMN_BUF_INIT;
    cr_assert_eq(cmn_request_to_json(&r, &b), 0);
    json_object *w = parse(b.data);
    cr_expect_eq(json_object_get_int(json_object_object_get(w, "v")), 1);
    cr_expect_str_eq(json_object_get_string(json_object_object_get(w, "tenant_id")), "default");
    cr_expect_str_eq(json_object_get_string(json_object_object_get(w, "urgency")), "normal");
    cr_expect_str_eq(json_object_get_string(json_object_object_get(w, "communication_id")), r.communication_id);
    cr_expect_str_eq(json_object_get_string(json_object_object_get(w, "received_at")), "2026-11-22T09:30:00.456Z");
    json_object *rc = json_object_object_get(w, "recipient");
    cr_expect_str_eq(json_object_get_string(json_object_object_get(rc, "locale")), "en-US");
    cr_expect_not(json_object_object_get_ex(rc, "email", NULL), "absent members are left out");
    cr_expect_not(json_object_object_get_ex(w, "plan_id", NULL));
    cr_expect_not(json_object_object_get_ex(w, "channels", NULL));
    cr_expect_not(json_object_object_get_ex(w, "send_after", NULL));
    cr_expect_null(strchr(b.data, ' '), "compact output: %s", b.data);
    json_object_put(w);

    /* to_json appends. */
    size_t first = b.len;
    cr_assert_eq(cmn_request_to_json(&r, &b), 0);
    cr_expect_eq(b.len, 2 * first);
    cmn_buf_free(&b);
    cmn_request_clear(&r);
    json_object_put(errs);
    json_object_put(o);
}

Test(request, round_trip)
{
    json_object *o = parse(FULL);
    cmn_request_t a, b;
    json_object *errs = NULL;
    cr_assert_eq(validate(o, "", &a, &errs), 0);
    json_object_put(errs);
    a.received_at_ms = 1763803800123;
    cmn_buf_t text = CMN_BUF_INIT;
    cr_assert_eq(cmn_request_to_json(&a, &text), 0);

    json_object *o2 = parse(text.data);
    cr_assert_eq(validate(o2, "", &b, &errs), 0, "%s -> %s", text.data, json_object_to_json_string(errs));
    cr_expect_str_eq(b.request_id, a.request_id);
    cr_expect_str_eq(b.tenant_id, a.tenant_id);
    cr_expect_str_eq(b.client_id, a.client_id);
    cr_expect_str_eq(b.plan_id, a.plan_id);
    cr_expect_str_eq(b.message_type, a.message_type);
    cr_expect_eq(b.urgency, a.urgency);
    cr_expect_str_eq(b.recipient.name, a.recipient.name);
    cr_expect_str_eq(b.recipient.email, a.recipient.email);
    cr_expect_str_eq(b.recipient.phone, a.recipient.phone);
    cr_expect_str_eq(b.recipient.whatsapp, a.recipient.whatsapp);
    cr_expect_str_eq(b.recipient.timezone, a.recipient.timezone);
    cr_expect_str_eq(b.recipient.locale, a.recipient.locale);
    cr_expect_eq(b.recipient.n_preferred, a.recipient.n_preferred);
    cr_expect_arr_eq(b.recipient.preferred, a.recipient.preferred, sizeof a.recipient.preferred);
    cr_expect_eq(b.n_channels, a.n_channels);
    cr_expect_arr_eq(b.channels, a.channels, sizeof a.channels);
    cr_expect_str_eq(b.template_name, a.template_name);
    cr_expect(json_object_equal(b.context, a.context));
    cr_expect(json_object_equal(b.attachments, a.attachments));
    cr_expect_eq(b.send_after_ms, a.send_after_ms);
    cr_expect_eq(b.expires_at_ms, a.expires_at_ms);
    cr_expect_eq(b.received_at_ms, a.received_at_ms);
    cr_expect_str_eq(b.communication_id, a.communication_id);

    /* The normalised form is a fixed point. */
    cmn_buf_t text2 = CMN_BUF_INIT;
    cr_assert_eq(cmn_request_to_json(&b, &text2), 0);
    cr_expect_str_eq(text2.data, text.data);

    cmn_buf_free(&text);
    cmn_buf_free(&text2);
    cmn_request_clear(&a);
    cmn_request_clear(&b);
    json_object_put(errs);
    json_object_put(o);
    json_object_put(o2);
}

Test(request, clear_zeroes_and_is_idempotent)
{
    json_object *o = parse(FULL);
    cmn_request_t r;
    json_object *errs = NULL;
    cr_assert_eq(validate(o, "", &r, &errs), 0);
    json_object_put(o); /* the request keeps its own references to context/attachments */
    cr_expect_eq(json_object_array_length(r.attachments), 1);
    cmn_request_clear(&r);
    cmn_request_t zero;
    memset(&zero, 0, sizeof zero);
    cr_expect_eq(memcmp(&r, &zero, sizeof r), 0);
    cmn_request_clear(&r);
    cmn_request_clear(NULL);
    json_object_put(errs);
}

Test(request, valid_id_helper)
{
    cr_expect(cmn_valid_id("a", 1));
    cr_expect_not(cmn_valid_id("ab", 1));
    cr_expect_not(cmn_valid_id("", 5));
    cr_expect_not(cmn_valid_id(NULL, 5));
    cr_expect_not(cmn_valid_id("a\x7f", 5));
    cr_expect(cmn_valid_id("!~", 5));
    cr_expect(cmn_valid_message_type("a"));
    cr_expect_not(cmn_valid_message_type(NULL));
    cr_expect(cmn_valid_template_name("Tpl_1"));
    cr_expect_not(cmn_valid_template_name(".x"));
}
