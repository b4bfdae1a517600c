/* test_preferences.c - ClientPreferences v1 (crm/preferences.h): validation
 * with every bad field reported, normalisation, serialisation, keys. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "crm/buf.h"
#include "crm/err.h"
#include "crm/json.h"
#include "crm/preferences.h"
#include "crm/time.h"

static const char *FULL =
    "{\"v\":1,\"tenant_id\":\"acme\",\"client_id\":\"c-42\",\"preferred_channels\":[\"whatsapp\",\"email\"],"
    "\"timezone\":\"Europe/Paris\",\"quiet_hours\":{\"start\":\"21:00\",\"end\":\"08:00\"},"
    "\"opt_out\":{\"email\":false,\"sms\":true,\"whatsapp\":false},"
    "\"whatsapp_consent\":{\"granted\":true,\"at\":\"2026-03-01T10:00:00.000Z\",\"source\":\"web_form\"},"
    "\"locale\":\"fr-FR\",\"updated_at\":\"2026-03-02T11:00:00.000Z\"}";

static const char *MINIMAL = "{\"client_id\":\"c-1\",\"updated_at\":\"2026-03-02T11:00:00Z\"}";

static json_object *parse(const char *s)
{
    char err[256];
    json_object *o = cmn_json_parse(s, strlen(s), err, sizeof err);
    cr_assert_not_null(o, "test JSON does not parse: %s: %s", err, s);
    return o;
}

/* base with the member at path ("a" or "a.b") set to value_json; NULL removes it. */
static json_object *with(const char *base, const char *path, const char *value_json)
{
    json_object *o = parse(base);
    json_object *target = o;
    const char *k = path;
    const char *dot = strchr(path, '.');
    if (dot != NULL) {
        char head[64];
        snprintf(head, sizeof head, "%.*s", (int)(dot - path), path);
        target = json_object_object_get(o, head);
        cr_assert_not_null(target, "no %s in base", head);
        k = dot + 1;
    }
    if (value_json == NULL)
        json_object_object_del(target, k);
    else if (strcmp(value_json, "null") == 0)
        json_object_object_add(target, k, NULL);
    else
        json_object_object_add(target, k, parse(value_json));
    return o;
}

static int validate(json_object *o, const char *prefix, cmn_preferences_t *p, json_object **errs)
{
    *errs = json_object_new_array();
    memset(p, 0, sizeof *p);
    return cmn_preferences_from_json(o, prefix, p, *errs);
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

/* Asserts that base with path=value is rejected with exactly one error, on field. */
static void expect_invalid(const char *base, const char *path, const char *value_json, const char *field)
{
    cmn_preferences_t p;
    json_object *errs = NULL;
    json_object *o = with(base, path, value_json);
    int rc = validate(o, "", &p, &errs);
    const char *v = value_json != NULL ? value_json : "(absent)";
    cr_expect_eq(rc, CMN_ERR_INVALID, "%s=%s should be invalid", path, v);
    cr_expect_eq(count_field(errs, field), 1, "%s=%s: expected one error on %s, got %s", path, v, field,
                 json_object_to_json_string(errs));
    cr_expect_eq(json_object_array_length(errs), 1, "%s=%s: expected exactly one error, got %s", path, v,
                 json_object_to_json_string(errs));
    cmn_preferences_clear(&p);
    json_object_put(errs);
    json_object_put(o);
}

static void expect_valid(const char *base, const char *path, const char *value_json)
{
    cmn_preferences_t p;
    json_object *errs = NULL;
    json_object *o = with(base, path, value_json);
    int rc = validate(o, "", &p, &errs);
    cr_expect_eq(rc, 0, "%s=%s should be valid, got %s", path, value_json ? value_json : "(absent)",
                 json_object_to_json_string(errs));
    cmn_preferences_clear(&p);
    json_object_put(errs);
    json_object_put(o);
}

static int64_t at(const char *s)
{
    int64_t ms = 0;
    cr_assert_eq(cmn_time_parse_rfc3339(s, &ms), 0);
    return ms;
}

/* ----------------------------------------------------------- validation */

Test(preferences, full_snapshot)
{
    cmn_preferences_t p;
    json_object *errs = NULL;
    json_object *o = parse(FULL);
    cr_assert_eq(validate(o, "", &p, &errs), 0, "%s", json_object_to_json_string(errs));
    cr_assert_eq(p.v, 1);
    cr_assert_str_eq(p.tenant_id, "acme");
    cr_assert_str_eq(p.client_id, "c-42");
    cr_assert_eq(p.n_preferred, 2);
    cr_assert_eq(p.preferred[0], CMN_CHANNEL_WHATSAPP);
    cr_assert_eq(p.preferred[1], CMN_CHANNEL_EMAIL);
    cr_assert_str_eq(p.timezone, "Europe/Paris");
    cr_assert_eq(p.has_quiet_hours, 1);
    cr_assert_eq(p.quiet_hours.start_min, 21 * 60);
    cr_assert_eq(p.quiet_hours.end_min, 8 * 60);
    cr_assert(cmn_preferences_opted_out(&p, CMN_CHANNEL_SMS));
    cr_assert_not(cmn_preferences_opted_out(&p, CMN_CHANNEL_EMAIL));
    cr_assert_not(cmn_preferences_opted_out(&p, CMN_CHANNEL_WHATSAPP));
    cr_assert_not(cmn_preferences_opted_out(&p, CMN_CHANNEL_NONE));
    cr_assert(cmn_preferences_whatsapp_consented(&p));
    cr_assert_eq(p.whatsapp_consent.at_ms, at("2026-03-01T10:00:00Z"));
    cr_assert_str_eq(p.whatsapp_consent.source, "web_form");
    cr_assert_str_eq(p.locale, "fr-FR");
    cr_assert_eq(p.updated_at_ms, at("2026-03-02T11:00:00Z"));
    cmn_preferences_clear(&p);
    cr_assert_null(p.client_id, "clear zeroes the struct");
    cmn_preferences_clear(&p); /* twice is harmless */
    cmn_preferences_clear(NULL);
    json_object_put(errs);
    json_object_put(o);
}

Test(preferences, minimal_snapshot_and_defaults)
{
    cmn_preferences_t p;
    json_object *errs = NULL;
    json_object *o = parse(MINIMAL);
    cr_assert_eq(validate(o, "", &p, &errs), 0, "%s", json_object_to_json_string(errs));
    cr_assert_str_eq(p.tenant_id, "default");
    cr_assert_eq(p.n_preferred, 0);
    cr_assert_null(p.timezone);
    cr_assert_eq(p.has_quiet_hours, 0);
    for (int c = 0; c < CMN_CHANNEL__COUNT; c++)
        cr_assert_not(cmn_preferences_opted_out(&p, (cmn_channel_t)c));
    cr_assert_not(cmn_preferences_whatsapp_consented(&p), "no consent record: not consented");
    cr_assert_null(p.locale);
    cmn_preferences_clear(&p);
    json_object_put(errs);
    json_object_put(o);
}

Test(preferences, optional_members_accept_null_and_normalise)
{
    expect_valid(FULL, "preferred_channels", "[]");
    expect_valid(FULL, "preferred_channels", "null");
    expect_valid(FULL, "locale", "null");
    expect_valid(FULL, "opt_out", "{}");
    expect_valid(FULL, "opt_out", "{\"sms\":true}");
    expect_valid(FULL, "whatsapp_consent", "{\"granted\":false}");
    expect_valid(FULL, "whatsapp_consent",
                 "{\"granted\":false,\"at\":\"2026-04-01T00:00:00+02:00\",\"source\":\"STOP\"}");
    expect_valid(FULL, "quiet_hours", "{\"start\":\"08:00\",\"end\":\"08:00\"}");
    expect_valid(FULL, "quiet_hours", "null");
    expect_valid(FULL, "timezone", "\"Asia/Kolkata\"");
    expect_valid(FULL, "v", "null");
    expect_valid(FULL, "tenant_id", NULL);
    /* Locales are stored in canonical case. */
    cmn_preferences_t p;
    json_object *errs = NULL;
    json_object *o = with(FULL, "locale", "\"pt-br\"");
    cr_assert_eq(validate(o, "", &p, &errs), 0);
    cr_assert_str_eq(p.locale, "pt-BR");
    cmn_preferences_clear(&p);
    json_object_put(errs);
    json_object_put(o);
}

Test(preferences, each_bad_field_is_named)
{
    expect_invalid(FULL, "v", "2", "v");
    expect_invalid(FULL, "v", "\"1\"", "v");
    expect_invalid(FULL, "tenant_id", "\"a:b\"", "tenant_id");
    expect_invalid(FULL, "tenant_id", "\"\"", "tenant_id");
    expect_invalid(FULL, "tenant_id", "7", "tenant_id");
    expect_invalid(FULL, "client_id", NULL, "client_id");
    expect_invalid(FULL, "client_id", "\"has space\"", "client_id");
    expect_invalid(FULL, "preferred_channels", "\"email\"", "preferred_channels");
    expect_invalid(FULL, "preferred_channels", "[\"email\",\"fax\"]", "preferred_channels[1]");
    expect_invalid(FULL, "preferred_channels", "[\"sms\",\"sms\"]", "preferred_channels[1]");
    expect_invalid(FULL, "preferred_channels", "[1]", "preferred_channels[0]");
    expect_invalid(FULL, "timezone", "\"Mars/Base\"", "timezone");
    expect_invalid(FULL, "timezone", "\"GMT+05:00\"", "timezone");
    expect_invalid(FULL, "timezone", NULL, "timezone"); /* required by quiet_hours */
    expect_invalid(FULL, "quiet_hours", "\"21:00-08:00\"", "quiet_hours");
    expect_invalid(FULL, "quiet_hours.start", "\"9pm\"", "quiet_hours.start");
    expect_invalid(FULL, "quiet_hours.end", "\"24:00\"", "quiet_hours.end");
    expect_invalid(FULL, "quiet_hours.end", NULL, "quiet_hours.end");
    expect_invalid(FULL, "quiet_hours.end", "800", "quiet_hours.end");
    expect_invalid(FULL, "quiet_hours.days", "[1]", "quiet_hours.days");
    expect_invalid(FULL, "opt_out", "[]", "opt_out");
    expect_invalid(FULL, "opt_out.sms", "\"yes\"", "opt_out.sms");
    expect_invalid(FULL, "opt_out.sms", "1", "opt_out.sms");
    expect_invalid(FULL, "opt_out.fax", "true", "opt_out.fax");
    expect_invalid(FULL, "whatsapp_consent", "true", "whatsapp_consent");
    expect_invalid(FULL, "whatsapp_consent.granted", NULL, "whatsapp_consent.granted");
    expect_invalid(FULL, "whatsapp_consent.granted", "\"true\"", "whatsapp_consent.granted");
    expect_invalid(FULL, "whatsapp_consent.at", NULL, "whatsapp_consent.at");
    expect_invalid(FULL, "whatsapp_consent.at", "\"yesterday\"", "whatsapp_consent.at");
    expect_invalid(FULL, "whatsapp_consent.source", NULL, "whatsapp_consent.source");
    expect_invalid(FULL, "whatsapp_consent.source", "\"web form\"", "whatsapp_consent.source");
    expect_invalid(FULL, "whatsapp_consent.ip", "\"1.2.3.4\"", "whatsapp_consent.ip");
    expect_invalid(FULL, "locale", "\"french\"", "locale");
    expect_invalid(FULL, "locale", "\"en_US\"", "locale");
    expect_invalid(FULL, "updated_at", NULL, "updated_at");
    expect_invalid(FULL, "updated_at", "\"2026-03-02 11:00\"", "updated_at");
    expect_invalid(FULL, "updated_at", "1772449200000", "updated_at");
    expect_invalid(FULL, "phone", "\"+33612345678\"", "phone");
    /* A NUL inside a string would truncate it silently. */
    expect_invalid(FULL, "client_id", "\"c\\u0000x\"", "client_id");
}

Test(preferences, every_problem_is_collected_with_prefix)
{
    const char *bad = "{\"v\":3,\"tenant_id\":\"a:b\",\"preferred_channels\":[\"fax\",\"sms\",\"sms\"],"
                      "\"quiet_hours\":{\"start\":\"25:00\"},\"opt_out\":{\"sms\":\"no\",\"pigeon\":true},"
                      "\"whatsapp_consent\":{\"granted\":true},\"locale\":\"!!\",\"extra\":1}";
    cmn_preferences_t p;
    json_object *errs = NULL;
    json_object *o = parse(bad);
    cr_assert_eq(validate(o, "items[3].", &p, &errs), CMN_ERR_INVALID);
    const char *fields[] = {"items[3].v",
                            "items[3].tenant_id",
                            "items[3].client_id",
                            "items[3].preferred_channels[0]",
                            "items[3].preferred_channels[2]",
                            "items[3].timezone",
                            "items[3].quiet_hours.start",
                            "items[3].quiet_hours.end",
                            "items[3].opt_out.sms",
                            "items[3].opt_out.pigeon",
                            "items[3].whatsapp_consent.at",
                            "items[3].whatsapp_consent.source",
                            "items[3].locale",
                            "items[3].updated_at",
                            "items[3].extra"};
    size_t nf = sizeof fields / sizeof fields[0];
    for (size_t i = 0; i < nf; i++)
        cr_expect_eq(count_field(errs, fields[i]), 1, "%s missing or repeated in %s", fields[i],
                     json_object_to_json_string(errs));
    cr_expect_eq(json_object_array_length(errs), nf, "%s", json_object_to_json_string(errs));
    /* Every error carries a reason. */
    for (size_t i = 0; i < json_object_array_length(errs); i++) {
        json_object *e = json_object_array_get_idx(errs, i);
        cr_expect_gt(strlen(json_object_get_string(json_object_object_get(e, "reason"))), 5);
    }
    cmn_preferences_clear(&p);
    json_object_put(errs);
    json_object_put(o);
}

Test(preferences, not_an_object)
{
    cmn_preferences_t p;
    json_object *errs = NULL;
    json_object *o = parse("[1,2]");
    cr_assert_eq(validate(o, "", &p, &errs), CMN_ERR_INVALID);
    cr_assert_eq(count_field(errs, "preferences"), 1, "%s", json_object_to_json_string(errs));
    cmn_preferences_clear(&p);
    json_object_put(errs);
    json_object_put(o);
    cr_assert_eq(validate(NULL, "items[0].", &p, &errs), CMN_ERR_INVALID);
    cr_assert_eq(count_field(errs, "items[0]"), 1, "%s", json_object_to_json_string(errs));
    json_object_put(errs);
    /* errors may be NULL: only the verdict. */
    memset(&p, 0, sizeof p);
    o = parse("{}");
    cr_assert_eq(cmn_preferences_from_json(o, NULL, &p, NULL), CMN_ERR_INVALID);
    cmn_preferences_clear(&p);
    json_object_put(o);
    cr_assert_eq(cmn_preferences_from_json(o, NULL, NULL, NULL), CMN_ERR_INVALID);
}

/* -------------------------------------------------------- serialisation */

static char *round_trip(const char *in)
{
    cmn_preferences_t p;
    json_object *errs = NULL;
    json_object *o = parse(in);
    cr_assert_eq(validate(o, "", &p, &errs), 0, "%s", json_object_to_json_string(errs));
    cmn_buf_t b = CMN_BUF_INIT;
    cr_assert_eq(cmn_preferences_to_json(&p, &b), 0);
    cmn_preferences_clear(&p);
    json_object_put(errs);
    json_object_put(o);
    return cmn_buf_steal(&b);
}

Test(preferences, to_json_is_canonical_and_stable)
{
    char *once = round_trip(FULL);
    cr_assert_str_eq(once, FULL, "the full example is already canonical");
    char *twice = round_trip(once);
    cr_assert_str_eq(twice, once);
    free(once);
    free(twice);

    /* Defaults become explicit; absent optional members stay absent. */
    char *min = round_trip(MINIMAL);
    cr_assert_str_eq(min, "{\"v\":1,\"tenant_id\":\"default\",\"client_id\":\"c-1\",\"preferred_channels\":[],"
                          "\"opt_out\":{\"email\":false,\"sms\":false,\"whatsapp\":false},"
                          "\"updated_at\":\"2026-03-02T11:00:00.000Z\"}");
    free(min);
}

Test(preferences, to_json_normalises)
{
    const char *in = "{\"client_id\":\"c-9\",\"updated_at\":\"2026-03-02T12:00:00+01:00\",\"locale\":\"zh-hant-tw\","
                     "\"timezone\":\"Asia/Calcutta\",\"quiet_hours\":{\"end\":\"07:30\",\"start\":\"22:15\"},"
                     "\"whatsapp_consent\":{\"granted\":false},\"opt_out\":{\"whatsapp\":true}}";
    char *out = round_trip(in);
    cr_assert_str_eq(out, "{\"v\":1,\"tenant_id\":\"default\",\"client_id\":\"c-9\",\"preferred_channels\":[],"
                          "\"timezone\":\"Asia/Calcutta\",\"quiet_hours\":{\"start\":\"22:15\",\"end\":\"07:30\"},"
                          "\"opt_out\":{\"email\":false,\"sms\":false,\"whatsapp\":true},"
                          "\"whatsapp_consent\":{\"granted\":false},\"locale\":\"zh-Hant-TW\","
                          "\"updated_at\":\"2026-03-02T11:00:00.000Z\"}");
    free(out);
}

Test(preferences, to_json_refuses_a_broken_struct)
{
    cmn_preferences_t p;
    memset(&p, 0, sizeof p);
    cmn_buf_t b = CMN_BUF_INIT;
    p.client_id = "c-1";
    p.has_quiet_hours = 1;
    p.quiet_hours.start_min = 1440;
    cr_assert_eq(cmn_preferences_to_json(&p, &b), CMN_ERR_INVALID);
    cr_assert_eq(cmn_preferences_to_json(NULL, &b), CMN_ERR_INVALID);
    cr_assert_eq(cmn_preferences_to_json(&p, NULL), CMN_ERR_INVALID);
    cmn_buf_free(&b);
}

/* ----------------------------------------------------------------- keys */

Test(preferences, key_builder)
{
    char key[CMN_PREFS_KEY_MAX];
    cr_assert_eq(cmn_preferences_key("acme", "c-42", key, sizeof key), 0);
    cr_assert_str_eq(key, "acme:c-42");
    cr_assert_eq(cmn_preferences_key(NULL, "c-42", key, sizeof key), 0);
    cr_assert_str_eq(key, "default:c-42");
    /* A client id may contain ':': the key splits at the first one. */
    cr_assert_eq(cmn_preferences_key("acme", "crm:123", key, sizeof key), 0);
    cr_assert_str_eq(key, "acme:crm:123");
    cr_assert_eq(cmn_preferences_key("a:b", "c", key, sizeof key), CMN_ERR_INVALID);
    cr_assert_eq(cmn_preferences_key("acme", "", key, sizeof key), CMN_ERR_INVALID);
    cr_assert_eq(cmn_preferences_key("acme", NULL, key, sizeof key), CMN_ERR_INVALID);
    cr_assert_eq(cmn_preferences_key("ac me", "c", key, sizeof key), CMN_ERR_INVALID);
    cr_assert_eq(cmn_preferences_key("acme", "c-42", key, 9), CMN_ERR_OVERFLOW);
    cr_assert_str_eq(key, "");
    cr_assert_eq(cmn_preferences_key("acme", "c-42", key, 10), 0);
    /* The longest ids fit the documented size. */
    char id[CMN_REQ_MAX_ID + 1];
    memset(id, 'x', CMN_REQ_MAX_ID);
    id[CMN_REQ_MAX_ID] = '\0';
    cr_assert_eq(cmn_preferences_key(id, id, key, sizeof key), 0);
    cr_assert_eq(strlen(key), 2 * CMN_REQ_MAX_ID + 1);
}

Test(preferences, key_parse)
{
    char tenant[CMN_REQ_MAX_ID + 1];
    char client[CMN_REQ_MAX_ID + 1];
    cr_assert_eq(cmn_preferences_key_parse("acme:crm:123", 12, tenant, sizeof tenant, client, sizeof client), 0);
    cr_assert_str_eq(tenant, "acme");
    cr_assert_str_eq(client, "crm:123");
    /* Length, not NUL, bounds the key. */
    cr_assert_eq(cmn_preferences_key_parse("acme:c-1GARBAGE", 8, tenant, sizeof tenant, client, sizeof client), 0);
    cr_assert_str_eq(client, "c-1");
    const char *bad[] = {"acme", ":c-1", "acme:", "ac me:c", "acme:c 1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_expect_eq(cmn_preferences_key_parse(bad[i], strlen(bad[i]), tenant, sizeof tenant, client, sizeof client),
                     CMN_ERR_INVALID, "\"%s\"", bad[i]);
        cr_expect_str_eq(tenant, "");
    }
    cr_assert_eq(cmn_preferences_key_parse("acme:c\0x", 8, tenant, sizeof tenant, client, sizeof client),
                 CMN_ERR_INVALID);
    cr_assert_eq(cmn_preferences_key_parse("acme:c-1", 8, tenant, 4, client, sizeof client), CMN_ERR_OVERFLOW);
    /* Round trip through the builder. */
    char key[CMN_PREFS_KEY_MAX];
    cr_assert_eq(cmn_preferences_key("t-1", "a:b:c", key, sizeof key), 0);
    cr_assert_eq(cmn_preferences_key_parse(key, strlen(key), tenant, sizeof tenant, client, sizeof client), 0);
    cr_assert_str_eq(tenant, "t-1");
    cr_assert_str_eq(client, "a:b:c");
}
