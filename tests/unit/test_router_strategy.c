/* test_router_strategy.c - the routing decision as a decision table:
 * candidates, urgency, addresses, providers, expiry. Preferences, consent,
 * mobile numbers, send_after and quiet hours have their own table in
 * test_router_strategy_prefs.c.
 *
 * Each row is a validated CommunicationRequest (built from JSON through the
 * real validator), the enabled channels and the expected plan, written as
 * "email>sms" (first channel, then the fallbacks in order) or
 * "suppressed:<reason>". The routing file of every row is ROUTING below.
 * These rows have no client preferences, and WhatsApp consent is made
 * optional (ROUTER_WHATSAPP_REQUIRE_CONSENT=false) so that they isolate the
 * ordering rules; the consent rule is tested in the other table. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "crm/buf.h"
#include "crm/dispatch.h"
#include "crm/json.h"
#include "crm/request.h"
#include "crm/time.h"
#include "router_config.h"
#include "router_strategy.h"

static const char ROUTING[] =
    "{\"default\":[\"email\",\"sms\",\"whatsapp\"],"
    " \"message_types\":{\"appointment_reminder\":[\"sms\",\"email\"],"
    "                    \"payment_receipt\":[\"email\"],"
    "                    \"promo\":[\"whatsapp\",\"email\",\"sms\"]}}";

/* Every row is decided at this instant. */
#define NOW_RFC3339 "2030-01-01T00:00:00Z"

#define ALL "email,sms,whatsapp"
#define EMAIL "ana@example.com"
#define PHONE "+14155550100"
#define WA "+14155550111"

typedef struct row {
    const char *name;
    const char *message_type;
    const char *urgency;    /* NULL: normal (the default) */
    const char *channels;   /* JSON array or NULL */
    const char *preferred;  /* JSON array or NULL */
    const char *email, *phone, *whatsapp;
    const char *expires_at; /* RFC 3339 or NULL */
    const char *enabled;    /* ROUTER_ENABLED_CHANNELS */
    const char *expect;
    router_source_t source;
} row_t;

static const row_t ROWS[] = {
    /* Where the order comes from. */
    {"global default for an unlisted type", "newsletter", NULL, NULL, NULL, EMAIL, PHONE, WA, NULL, ALL,
     "email>sms>whatsapp", ROUTER_SOURCE_DEFAULT},
    {"message type order", "appointment_reminder", NULL, NULL, NULL, EMAIL, PHONE, WA, NULL, ALL, "sms>email",
     ROUTER_SOURCE_MESSAGE_TYPE},
    {"single-channel type order", "payment_receipt", NULL, NULL, NULL, EMAIL, PHONE, WA, NULL, ALL, "email",
     ROUTER_SOURCE_MESSAGE_TYPE},
    {"preferred beats the type order", "appointment_reminder", NULL, NULL, "[\"whatsapp\",\"email\"]", EMAIL,
     PHONE, WA, NULL, ALL, "whatsapp>email", ROUTER_SOURCE_PREFERRED},
    {"explicit beats preferred", "appointment_reminder", NULL, "[\"email\"]", "[\"sms\"]", EMAIL, PHONE, WA, NULL,
     ALL, "email", ROUTER_SOURCE_EXPLICIT},
    {"explicit order kept as given", "newsletter", NULL, "[\"whatsapp\",\"email\",\"sms\"]", NULL, EMAIL, PHONE, WA,
     NULL, ALL, "whatsapp>email>sms", ROUTER_SOURCE_EXPLICIT},
    {"empty preferred falls through to the type", "appointment_reminder", NULL, NULL, "[]", EMAIL, PHONE, WA, NULL,
     ALL, "sms>email", ROUTER_SOURCE_MESSAGE_TYPE},
    {"preferred subset only", "newsletter", NULL, NULL, "[\"sms\"]", EMAIL, PHONE, WA, NULL, ALL, "sms",
     ROUTER_SOURCE_PREFERRED},

    /* Missing addresses. */
    {"no phone: sms dropped from the default", "newsletter", NULL, NULL, NULL, EMAIL, NULL, WA, NULL, ALL,
     "email>whatsapp", ROUTER_SOURCE_DEFAULT},
    {"only whatsapp address", "newsletter", NULL, NULL, NULL, NULL, NULL, WA, NULL, ALL, "whatsapp",
     ROUTER_SOURCE_DEFAULT},
    {"whatsapp never falls back to the phone number", "promo", NULL, NULL, NULL, EMAIL, PHONE, NULL, NULL, ALL,
     "email>sms", ROUTER_SOURCE_MESSAGE_TYPE},
    {"explicit sms without phone falls to email", "newsletter", NULL, "[\"sms\",\"email\"]", NULL, EMAIL, NULL,
     NULL, NULL, ALL, "email", ROUTER_SOURCE_EXPLICIT},
    {"explicit whatsapp without address", "newsletter", NULL, "[\"whatsapp\"]", NULL, EMAIL, PHONE, NULL, NULL, ALL,
     "suppressed:no_address", ROUTER_SOURCE_EXPLICIT},
    {"every candidate lacks an address", "newsletter", NULL, "[\"sms\",\"whatsapp\"]", NULL, EMAIL, NULL, NULL,
     NULL, ALL, "suppressed:no_address", ROUTER_SOURCE_EXPLICIT},
    {"type order all unaddressed", "payment_receipt", NULL, NULL, NULL, NULL, PHONE, WA, NULL, ALL,
     "suppressed:no_address", ROUTER_SOURCE_MESSAGE_TYPE},
    {"unaddressed and disabled counts as unaddressed", "newsletter", NULL, "[\"whatsapp\",\"sms\"]", NULL, EMAIL,
     NULL, NULL, NULL, "email", "suppressed:no_address", ROUTER_SOURCE_EXPLICIT},

    /* Disabled channels (no provider). */
    {"only email enabled", "newsletter", NULL, NULL, NULL, EMAIL, PHONE, WA, NULL, "email", "email",
     ROUTER_SOURCE_DEFAULT},
    {"disabled channel leaves the fallback plan", "newsletter", NULL, NULL, NULL, EMAIL, PHONE, WA, NULL,
     "email,whatsapp", "email>whatsapp", ROUTER_SOURCE_DEFAULT},
    {"first choice disabled", "appointment_reminder", NULL, NULL, NULL, EMAIL, PHONE, WA, NULL, "email", "email",
     ROUTER_SOURCE_MESSAGE_TYPE},
    {"phone only, email only enabled", "newsletter", NULL, NULL, NULL, NULL, PHONE, NULL, NULL, "email",
     "suppressed:no_channel", ROUTER_SOURCE_DEFAULT},
    {"email only, sms only enabled", "newsletter", NULL, NULL, NULL, EMAIL, NULL, NULL, NULL, "sms",
     "suppressed:no_channel", ROUTER_SOURCE_DEFAULT},
    {"every candidate disabled", "payment_receipt", NULL, NULL, NULL, EMAIL, PHONE, WA, NULL, "sms,whatsapp",
     "suppressed:no_channel", ROUTER_SOURCE_MESSAGE_TYPE},
    {"explicit channel disabled", "newsletter", NULL, "[\"sms\"]", NULL, EMAIL, PHONE, WA, NULL, "email",
     "suppressed:no_channel", ROUTER_SOURCE_EXPLICIT},

    /* Urgency. */
    {"normal keeps the order", "newsletter", "normal", NULL, NULL, EMAIL, PHONE, WA, NULL, ALL,
     "email>sms>whatsapp", ROUTER_SOURCE_DEFAULT},
    {"critical puts instant channels first", "newsletter", "critical", NULL, NULL, EMAIL, PHONE, WA, NULL, ALL,
     "sms>whatsapp>email", ROUTER_SOURCE_DEFAULT},
    {"critical keeps the instant channels' relative order", "promo", "critical", NULL, NULL, EMAIL, PHONE, WA, NULL,
     ALL, "whatsapp>sms>email", ROUTER_SOURCE_MESSAGE_TYPE},
    {"high puts instant channels first", "newsletter", "high", NULL, NULL, EMAIL, PHONE, WA, NULL, ALL,
     "sms>whatsapp>email", ROUTER_SOURCE_DEFAULT},
    {"high reorders preferred channels", "newsletter", "high", NULL, "[\"email\",\"whatsapp\"]", EMAIL, PHONE, WA,
     NULL, ALL, "whatsapp>email", ROUTER_SOURCE_PREFERRED},
    {"low puts email first", "appointment_reminder", "low", NULL, NULL, EMAIL, PHONE, WA, NULL, ALL, "email>sms",
     ROUTER_SOURCE_MESSAGE_TYPE},
    {"low keeps the rest in order", "promo", "low", NULL, NULL, EMAIL, PHONE, WA, NULL, ALL, "email>whatsapp>sms",
     ROUTER_SOURCE_MESSAGE_TYPE},
    {"low reorders preferred channels", "newsletter", "low", NULL, "[\"whatsapp\",\"sms\",\"email\"]", EMAIL, PHONE,
     WA, NULL, ALL, "email>whatsapp>sms", ROUTER_SOURCE_PREFERRED},
    {"critical with explicit channels is not reordered", "newsletter", "critical", "[\"email\",\"sms\"]", NULL,
     EMAIL, PHONE, WA, NULL, ALL, "email>sms", ROUTER_SOURCE_EXPLICIT},
    {"high with explicit channels is not reordered", "newsletter", "high", "[\"email\",\"whatsapp\"]", NULL, EMAIL,
     PHONE, WA, NULL, ALL, "email>whatsapp", ROUTER_SOURCE_EXPLICIT},
    {"low with explicit channels is not reordered", "newsletter", "low", "[\"sms\",\"email\"]", NULL, EMAIL, PHONE,
     WA, NULL, ALL, "sms>email", ROUTER_SOURCE_EXPLICIT},
    {"critical without instant addresses still goes by email", "newsletter", "critical", NULL, NULL, EMAIL, NULL,
     NULL, NULL, ALL, "email", ROUTER_SOURCE_DEFAULT},
    {"critical with instant channels disabled", "newsletter", "critical", NULL, NULL, EMAIL, PHONE, WA, NULL,
     "email", "email", ROUTER_SOURCE_DEFAULT},
    {"urgency and filters combine", "promo", "critical", NULL, NULL, EMAIL, PHONE, NULL, NULL, "email,sms",
     "sms>email", ROUTER_SOURCE_MESSAGE_TYPE},

    /* Expiry. */
    {"expired an hour ago", "newsletter", NULL, NULL, NULL, EMAIL, PHONE, WA, "2029-12-31T23:00:00Z", ALL,
     "suppressed:expired", ROUTER_SOURCE_DEFAULT},
    {"expiring exactly now is expired", "newsletter", NULL, NULL, NULL, EMAIL, PHONE, WA, NOW_RFC3339, ALL,
     "suppressed:expired", ROUTER_SOURCE_DEFAULT},
    {"expiring a second from now is routed", "newsletter", NULL, NULL, NULL, EMAIL, PHONE, WA,
     "2030-01-01T00:00:01Z", ALL, "email>sms>whatsapp", ROUTER_SOURCE_DEFAULT},
    {"expired wins over no_channel", "newsletter", NULL, "[\"sms\"]", NULL, EMAIL, PHONE, WA,
     "2029-01-01T00:00:00Z", "email", "suppressed:expired", ROUTER_SOURCE_EXPLICIT},
    {"expired wins over critical", "newsletter", "critical", NULL, NULL, EMAIL, PHONE, WA, "2029-12-31T23:59:59Z",
     ALL, "suppressed:expired", ROUTER_SOURCE_DEFAULT},
};

static void add_str(cmn_buf_t *b, const char *key, const char *value)
{
    if (value == NULL)
        return;
    cmn_buf_printf(b, ",\"%s\":", key);
    cmn_buf_put_json_string(b, value);
}

/* Parses row into req through the real validator. */
static void build_request(const row_t *r, cmn_request_t *req)
{
    cmn_buf_t b = CMN_BUF_INIT;
    char err[256];
    cmn_buf_printf(&b, "{\"request_id\":\"r-1\",\"client_id\":\"c-1\",\"message_type\":\"%s\"", r->message_type);
    add_str(&b, "urgency", r->urgency);
    add_str(&b, "expires_at", r->expires_at);
    if (r->channels != NULL)
        cmn_buf_printf(&b, ",\"channels\":%s", r->channels);
    cmn_buf_puts(&b, ",\"recipient\":{\"name\":\"Ana\"");
    add_str(&b, "email", r->email);
    add_str(&b, "phone", r->phone);
    add_str(&b, "whatsapp", r->whatsapp);
    if (r->preferred != NULL)
        cmn_buf_printf(&b, ",\"preferred_channels\":%s", r->preferred);
    cmn_buf_puts(&b, "}}");

    json_object *obj = cmn_json_parse(b.data, b.len, err, sizeof err);
    cr_assert_not_null(obj, "%s: row JSON does not parse: %s", r->name, err);
    json_object *errors = json_object_new_array();
    memset(req, 0, sizeof *req);
    int rc = cmn_request_from_json(obj, "", req, errors);
    cr_assert_eq(rc, 0, "%s: row is not a valid request: %s", r->name, json_object_to_json_string(errors));
    json_object_put(errors);
    json_object_put(obj);
    cmn_buf_free(&b);
}

/* "email>sms" or "suppressed:reason". */
static void describe(const router_decision_t *d, char *out, size_t outlen)
{
    if (d->suppressed) {
        snprintf(out, outlen, "suppressed:%s", router_reason_name(d->reason));
        return;
    }
    size_t len = (size_t)snprintf(out, outlen, "%s", cmn_channel_name(d->channel));
    for (size_t i = 0; i < d->n_fallback && len < outlen; i++)
        len += (size_t)snprintf(out + len, outlen - len, ">%s", cmn_channel_name(d->fallback[i]));
}

static int64_t now_ms(void)
{
    int64_t t = 0;
    cr_assert_eq(cmn_time_parse_rfc3339(NOW_RFC3339, &t), 0);
    return t;
}

static router_config_t *routing(void)
{
    char err[256];
    router_config_t *cfg = router_config_parse(ROUTING, strlen(ROUTING), err, sizeof err);
    cr_assert_not_null(cfg, "routing config: %s", err);
    return cfg;
}

Test(router_strategy, decision_table)
{
    router_config_t *cfg = routing();
    int64_t now = now_ms();

    for (size_t i = 0; i < sizeof ROWS / sizeof ROWS[0]; i++) {
        const row_t *r = &ROWS[i];
        cmn_request_t req;
        router_decision_t d;
        char got[128];
        char err[128];
        unsigned enabled = 0;

        build_request(r, &req);
        cr_assert_eq(router_channels_parse_list(r->enabled, &enabled, err, sizeof err), 0, "%s: %s", r->name, err);
        router_input_t in = {
            .request = &req, .config = cfg, .enabled = enabled, .now_ms = now, .whatsapp_consent_optional = 1};
        cr_assert_eq(router_decide(&in, &d), 0, "%s", r->name);
        describe(&d, got, sizeof got);
        cr_expect_str_eq(got, r->expect, "row \"%s\": got %s, want %s", r->name, got, r->expect);
        cr_expect_eq(d.source, r->source, "row \"%s\": source %s, want %s", r->name, router_source_name(d.source),
                     router_source_name(r->source));
        if (!d.suppressed) {
            /* The plan carries the recipient's own address for its channel. */
            const char *want = cmn_recipient_address(&req.recipient, d.channel);
            cr_expect_not_null(d.address, "row \"%s\": no address", r->name);
            cr_expect(d.address == want, "row \"%s\": address is not the recipient's", r->name);
            cr_expect_eq(d.reason, ROUTER_REASON_NONE, "row \"%s\"", r->name);
        } else {
            cr_expect_null(d.address, "row \"%s\": suppressed with an address", r->name);
            cr_expect_eq(d.channel, CMN_CHANNEL_NONE, "row \"%s\"", r->name);
        }
        cmn_request_clear(&req);
    }
    router_config_destroy(cfg);
}

Test(router_strategy, dropped_channels_are_recorded_with_reasons)
{
    router_config_t *cfg = routing();
    const row_t r = {"phone only", "newsletter", NULL, NULL, NULL, NULL, PHONE, NULL, NULL, "email", "", 0};
    cmn_request_t req;
    router_decision_t d;

    build_request(&r, &req);
    router_input_t in = {.request = &req,
                         .config = cfg,
                         .enabled = ROUTER_CHANNEL_BIT(CMN_CHANNEL_EMAIL),
                         .now_ms = now_ms(),
                         .whatsapp_consent_optional = 1};
    cr_assert_eq(router_decide(&in, &d), 0);
    cr_assert_eq(d.n_candidates, 3);
    cr_assert_eq(d.n_dropped, 3);
    cr_expect_eq(d.dropped[0], CMN_CHANNEL_EMAIL);
    cr_expect_eq(d.dropped_reason[0], ROUTER_REASON_NO_ADDRESS);
    cr_expect_eq(d.dropped[1], CMN_CHANNEL_SMS);
    cr_expect_eq(d.dropped_reason[1], ROUTER_REASON_NO_CHANNEL);
    cr_expect_eq(d.dropped[2], CMN_CHANNEL_WHATSAPP);
    cr_expect_eq(d.dropped_reason[2], ROUTER_REASON_NO_ADDRESS);
    cr_expect_eq(d.reason, ROUTER_REASON_NO_CHANNEL);
    cmn_request_clear(&req);
    router_config_destroy(cfg);
}

/* Validation refuses duplicate channel names, but the strategy must not
 * depend on it: a list with repeats keeps each channel's first place. */
Test(router_strategy, duplicates_in_lists_keep_the_first_occurrence)
{
    router_config_t *cfg = routing();
    const row_t r = {"dups", "newsletter", NULL, NULL, NULL, EMAIL, PHONE, WA, NULL, ALL, "", 0};
    cmn_request_t req;
    router_decision_t d;
    char got[128];

    build_request(&r, &req);
    router_input_t in = {
        .request = &req, .config = cfg, .enabled = 7u, .now_ms = now_ms(), .whatsapp_consent_optional = 1};

    req.channels[0] = CMN_CHANNEL_SMS;
    req.channels[1] = CMN_CHANNEL_SMS;
    req.channels[2] = CMN_CHANNEL_EMAIL;
    req.n_channels = 3;
    cr_assert_eq(router_decide(&in, &d), 0);
    describe(&d, got, sizeof got);
    cr_expect_str_eq(got, "sms>email");
    cr_expect_eq(d.n_candidates, 2);

    req.n_channels = 0;
    req.recipient.preferred[0] = CMN_CHANNEL_WHATSAPP;
    req.recipient.preferred[1] = CMN_CHANNEL_EMAIL;
    req.recipient.preferred[2] = CMN_CHANNEL_WHATSAPP;
    req.recipient.n_preferred = 3;
    cr_assert_eq(router_decide(&in, &d), 0);
    describe(&d, got, sizeof got);
    cr_expect_str_eq(got, "whatsapp>email");
    cr_expect_eq(d.source, ROUTER_SOURCE_PREFERRED);

    /* Out-of-range values (a corrupted enum) are ignored, never indexed. */
    req.recipient.preferred[0] = (cmn_channel_t)7;
    req.recipient.preferred[1] = CMN_CHANNEL_NONE;
    req.recipient.preferred[2] = CMN_CHANNEL_SMS;
    cr_assert_eq(router_decide(&in, &d), 0);
    describe(&d, got, sizeof got);
    cr_expect_str_eq(got, "sms");

    cmn_request_clear(&req);
    router_config_destroy(cfg);
}

Test(router_strategy, names)
{
    cr_expect_str_eq(router_reason_name(ROUTER_REASON_EXPIRED), "expired");
    cr_expect_str_eq(router_reason_name(ROUTER_REASON_NO_ADDRESS), "no_address");
    cr_expect_str_eq(router_reason_name(ROUTER_REASON_NO_CHANNEL), "no_channel");
    cr_expect_str_eq(router_reason_name(ROUTER_REASON_OPTED_OUT), "opted_out");
    cr_expect_str_eq(router_reason_name(ROUTER_REASON_NO_CONSENT), "no_consent");
    cr_expect_str_eq(router_reason_name(ROUTER_REASON_NOT_MOBILE), "not_mobile");
    cr_expect_str_eq(router_reason_name(ROUTER_REASON_QUIET_HOURS_EXPIRED), "quiet_hours_expired");
    cr_expect_str_eq(router_reason_name(ROUTER_REASON_NONE), "");
    cr_expect_str_eq(router_defer_name(ROUTER_DEFER_QUIET_HOURS), "quiet_hours");
    cr_expect_str_eq(router_defer_name(ROUTER_DEFER_SEND_AFTER), "send_after");
    cr_expect_str_eq(router_defer_name(ROUTER_DEFER_NONE), "");
    cr_expect_str_eq(router_source_name(ROUTER_SOURCE_PREFERENCES), "preferences");
    cr_expect_str_eq(router_source_name(ROUTER_SOURCE_EXPLICIT), "explicit");
    cr_expect_str_eq(router_source_name(ROUTER_SOURCE_PREFERRED), "preferred");
    cr_expect_str_eq(router_source_name(ROUTER_SOURCE_MESSAGE_TYPE), "message_type");
    cr_expect_str_eq(router_source_name(ROUTER_SOURCE_DEFAULT), "default");
}

Test(router_strategy, rejects_null_inputs)
{
    router_decision_t d;
    router_input_t in = {0};
    cr_expect_neq(router_decide(NULL, &d), 0);
    cr_expect_neq(router_decide(&in, &d), 0);
}
