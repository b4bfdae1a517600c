/* test_router_strategy_prefs.c - the routing decision with client
 * preferences: opt-outs, WhatsApp consent, mobile numbers, the reason
 * precedence, send_after, and quiet hours across midnight and across the DST
 * changes of three zones (Europe/Paris, America/New_York and
 * Australia/Sydney, both hemispheres), with urgency.
 *
 * Each row is a request and a preferences snapshot, both built from JSON
 * through the real validators, decided at the row's fixed instant. Expected
 * plans read "email>sms", "suppressed:<reason>", or
 * "deferred:<reason>@<until> <plan it would use>". */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/buf.h"
#include "crm/dispatch.h"
#include "crm/json.h"
#include "crm/preferences.h"
#include "crm/quiet_hours.h"
#include "crm/request.h"
#include "crm/time.h"
#include "router_config.h"
#include "router_strategy.h"

static const char ROUTING[] = "{\"default\":[\"email\",\"sms\",\"whatsapp\"],"
                              " \"message_types\":{\"reminder\":[\"sms\",\"whatsapp\",\"email\"],"
                              "                    \"promo\":[\"whatsapp\",\"email\",\"sms\"]}}";

#define ALL "email,sms,whatsapp"
#define EMAIL "ana@example.com"
#define MOBILE "+33612345678"   /* French mobile range */
#define MOBILE2 "+33687654321"
#define LANDLINE "+33142345678" /* Paris fixed line */
#define US "+14155550100"       /* fixed_line_or_mobile: messageable */

#define CONSENT ",\"whatsapp_consent\":{\"granted\":true,\"at\":\"2025-01-01T00:00:00Z\",\"source\":\"web_form\"}"
#define NO_CONSENT ",\"whatsapp_consent\":{\"granted\":false}"
#define QH(tz, start, end) ",\"timezone\":\"" tz "\",\"quiet_hours\":{\"start\":\"" start "\",\"end\":\"" end "\"}"
#define NIGHT_PARIS QH("Europe/Paris", "21:00", "08:00") CONSENT

/* A winter instant: 23:00 in Paris, inside 21:00-08:00. */
#define PARIS_NIGHT "2026-01-15T22:00:00Z"
/* 11:00 in Paris. */
#define PARIS_DAY "2026-01-15T10:00:00Z"

typedef struct prow {
    const char *name;
    const char *now;
    const char *message_type;
    const char *urgency;    /* NULL: normal */
    const char *channels;   /* JSON array or NULL */
    const char *email, *phone, *whatsapp;
    const char *tz;         /* recipient.timezone or NULL */
    const char *send_after, *expires_at;
    const char *prefs;      /* snapshot members after client_id/updated_at ("" for an empty snapshot), NULL: none */
    const char *enabled;
    const char *quiet;      /* ROUTER_QUIET_HOURS_CHANNELS, NULL: the default sms,whatsapp */
    int consent_optional;
    const char *expect;
} prow_t;

static const prow_t ROWS[] = {
    /* Where the order comes from, with a snapshot. */
    {"snapshot's preferred channels", PARIS_DAY, "reminder", NULL, NULL, EMAIL, MOBILE, MOBILE2, NULL, NULL, NULL,
     ",\"preferred_channels\":[\"whatsapp\",\"email\"]" CONSENT, ALL, NULL, 0, "whatsapp>email"},
    {"explicit channels beat the snapshot", PARIS_DAY, "reminder", NULL, "[\"email\",\"sms\"]", EMAIL, MOBILE,
     MOBILE2, NULL, NULL, NULL, ",\"preferred_channels\":[\"whatsapp\"]" CONSENT, ALL, NULL, 0, "email>sms"},
    {"empty preferred list falls to the type", PARIS_DAY, "reminder", NULL, NULL, EMAIL, MOBILE, MOBILE2, NULL, NULL,
     NULL, ",\"preferred_channels\":[]" CONSENT, ALL, NULL, 0, "sms>whatsapp>email"},
    {"high reorders the snapshot's order", PARIS_DAY, "newsletter", "high", NULL, EMAIL, MOBILE, MOBILE2, NULL, NULL,
     NULL, ",\"preferred_channels\":[\"email\",\"whatsapp\"]" CONSENT, ALL, NULL, 0, "whatsapp>email"},
    {"low reorders the snapshot's order", PARIS_DAY, "newsletter", "low", NULL, EMAIL, MOBILE, MOBILE2, NULL, NULL,
     NULL, ",\"preferred_channels\":[\"sms\",\"email\"]", ALL, NULL, 0, "email>sms"},

    /* Opt-outs. */
    {"opted out of email", PARIS_DAY, "newsletter", NULL, NULL, EMAIL, MOBILE, MOBILE2, NULL, NULL, NULL,
     ",\"opt_out\":{\"email\":true}" CONSENT, ALL, NULL, 0, "sms>whatsapp"},
    {"opt-out beats explicit channels", PARIS_DAY, "newsletter", NULL, "[\"sms\",\"email\"]", EMAIL, MOBILE, NULL,
     NULL, NULL, NULL, ",\"opt_out\":{\"sms\":true}", ALL, NULL, 0, "email"},
    {"opted out of the only explicit channel", PARIS_DAY, "newsletter", NULL, "[\"sms\"]", EMAIL, MOBILE, NULL, NULL,
     NULL, NULL, ",\"opt_out\":{\"sms\":true}", ALL, NULL, 0, "suppressed:opted_out"},
    {"opted out of everything", PARIS_DAY, "newsletter", NULL, NULL, EMAIL, MOBILE, MOBILE2, NULL, NULL, NULL,
     ",\"opt_out\":{\"email\":true,\"sms\":true,\"whatsapp\":true}" CONSENT, ALL, NULL, 0, "suppressed:opted_out"},
    {"opt-out of other channels changes nothing", PARIS_DAY, "newsletter", NULL, NULL, EMAIL, NULL, NULL, NULL, NULL,
     NULL, ",\"opt_out\":{\"email\":false,\"sms\":true}", ALL, NULL, 0, "email"},

    /* WhatsApp consent. */
    {"no snapshot: WhatsApp needs consent", PARIS_DAY, "promo", NULL, NULL, EMAIL, MOBILE, MOBILE2, NULL, NULL, NULL,
     NULL, ALL, NULL, 0, "email>sms"},
    {"no snapshot, consent optional", PARIS_DAY, "promo", NULL, NULL, EMAIL, MOBILE, MOBILE2, NULL, NULL, NULL, NULL,
     ALL, NULL, 1, "whatsapp>email>sms"},
    {"snapshot without a consent record", PARIS_DAY, "promo", NULL, NULL, EMAIL, MOBILE, MOBILE2, NULL, NULL, NULL,
     "", ALL, NULL, 0, "email>sms"},
    {"consent refused", PARIS_DAY, "promo", NULL, NULL, EMAIL, MOBILE, MOBILE2, NULL, NULL, NULL, NO_CONSENT, ALL,
     NULL, 0, "email>sms"},
    {"consent granted", PARIS_DAY, "promo", NULL, NULL, EMAIL, MOBILE, MOBILE2, NULL, NULL, NULL, CONSENT, ALL, NULL,
     0, "whatsapp>email>sms"},
    {"only WhatsApp, no consent", PARIS_DAY, "newsletter", NULL, "[\"whatsapp\"]", EMAIL, MOBILE, MOBILE2, NULL,
     NULL, NULL, NULL, ALL, NULL, 0, "suppressed:no_consent"},
    {"opt-out wins over granted consent", PARIS_DAY, "promo", NULL, NULL, EMAIL, MOBILE, MOBILE2, NULL, NULL, NULL,
     ",\"opt_out\":{\"whatsapp\":true}" CONSENT, ALL, NULL, 0, "email>sms"},

    /* Numbers that cannot take SMS or WhatsApp. */
    {"landline: SMS dropped", PARIS_DAY, "reminder", NULL, NULL, EMAIL, LANDLINE, NULL, NULL, NULL, NULL, NULL, ALL,
     NULL, 0, "email"},
    {"landline WhatsApp dropped", PARIS_DAY, "promo", NULL, NULL, EMAIL, MOBILE, LANDLINE, NULL, NULL, NULL, CONSENT,
     ALL, NULL, 0, "email>sms"},
    {"only a landline for SMS", PARIS_DAY, "newsletter", NULL, "[\"sms\"]", EMAIL, LANDLINE, NULL, NULL, NULL, NULL,
     NULL, ALL, NULL, 0, "suppressed:not_mobile"},
    {"North American numbers are messageable", PARIS_DAY, "newsletter", NULL, "[\"sms\"]", EMAIL, US, NULL, NULL,
     NULL, NULL, NULL, ALL, NULL, 0, "sms"},

    /* One reason for a request whose every candidate was dropped. */
    {"opted_out beats no_address and no_consent", PARIS_DAY, "newsletter", NULL, NULL, EMAIL, NULL, MOBILE2, NULL,
     NULL, NULL, ",\"opt_out\":{\"email\":true}", ALL, NULL, 0, "suppressed:opted_out"},
    {"no_consent beats not_mobile", PARIS_DAY, "newsletter", NULL, "[\"sms\",\"whatsapp\"]", EMAIL, LANDLINE,
     MOBILE2, NULL, NULL, NULL, NULL, ALL, NULL, 0, "suppressed:no_consent"},
    {"not_mobile beats no_channel", PARIS_DAY, "newsletter", NULL, "[\"sms\",\"email\"]", EMAIL, LANDLINE, NULL,
     NULL, NULL, NULL, NULL, "sms", NULL, 0, "suppressed:not_mobile"},
    {"no_channel beats no_address", PARIS_DAY, "newsletter", NULL, NULL, NULL, MOBILE, NULL, NULL, NULL, NULL, NULL,
     "email", NULL, 0, "suppressed:no_channel"},

    /* send_after. */
    {"send_after in the future", PARIS_DAY, "newsletter", NULL, NULL, EMAIL, NULL, NULL, NULL,
     "2026-01-15T12:00:00Z", NULL, NULL, ALL, NULL, 0, "deferred:send_after@2026-01-15T12:00:00.000Z email"},
    {"send_after in the past", PARIS_DAY, "newsletter", NULL, NULL, EMAIL, NULL, NULL, NULL, "2026-01-15T09:00:00Z",
     NULL, NULL, ALL, NULL, 0, "email"},
    {"send_after now is not a deferral", PARIS_DAY, "newsletter", NULL, NULL, EMAIL, NULL, NULL, NULL, PARIS_DAY,
     NULL, NULL, ALL, NULL, 0, "email"},
    {"expiring after send_after", PARIS_DAY, "newsletter", NULL, NULL, EMAIL, NULL, NULL, NULL,
     "2026-01-15T12:00:00Z", "2026-01-15T12:00:01Z", NULL, ALL, NULL, 0,
     "deferred:send_after@2026-01-15T12:00:00.000Z email"},
    {"critical still waits for send_after", PARIS_DAY, "newsletter", "critical", NULL, EMAIL, MOBILE, NULL, NULL,
     "2026-01-15T12:00:00Z", NULL, NULL, ALL, NULL, 0, "deferred:send_after@2026-01-15T12:00:00.000Z sms>email"},
    {"nothing to send: suppressed now, not deferred", PARIS_DAY, "newsletter", NULL, NULL, EMAIL, NULL, NULL, NULL,
     "2026-01-15T12:00:00Z", NULL, ",\"opt_out\":{\"email\":true}", ALL, NULL, 0, "suppressed:opted_out"},

    /* Quiet hours, winter, across midnight (Paris 21:00-08:00). */
    {"SMS first at night: deferred to 08:00 local", PARIS_NIGHT, "reminder", NULL, NULL, EMAIL, MOBILE, MOBILE2,
     NULL, NULL, NULL, NIGHT_PARIS, ALL, NULL, 0,
     "deferred:quiet_hours@2026-01-16T07:00:00.000Z sms>whatsapp>email"},
    {"after midnight, same window", "2026-01-16T02:00:00Z", "reminder", NULL, NULL, EMAIL, MOBILE, MOBILE2, NULL,
     NULL, NULL, NIGHT_PARIS, ALL, NULL, 0, "deferred:quiet_hours@2026-01-16T07:00:00.000Z sms>whatsapp>email"},
    {"daytime: goes now", PARIS_DAY, "reminder", NULL, NULL, EMAIL, MOBILE, MOBILE2, NULL, NULL, NULL, NIGHT_PARIS,
     ALL, NULL, 0, "sms>whatsapp>email"},
    {"the window's end itself is not quiet", "2026-01-16T07:00:00Z", "reminder", NULL, NULL, EMAIL, MOBILE, MOBILE2,
     NULL, NULL, NULL, NIGHT_PARIS, ALL, NULL, 0, "sms>whatsapp>email"},
    {"the window's start is quiet", "2026-01-15T20:00:00Z", "reminder", NULL, NULL, EMAIL, MOBILE, MOBILE2, NULL,
     NULL, NULL, NIGHT_PARIS, ALL, NULL, 0, "deferred:quiet_hours@2026-01-16T07:00:00.000Z sms>whatsapp>email"},
    {"email first is not held back", PARIS_NIGHT, "newsletter", NULL, NULL, EMAIL, MOBILE, MOBILE2, NULL, NULL, NULL,
     NIGHT_PARIS, ALL, NULL, 0, "email>sms>whatsapp"},
    {"low urgency puts email first: goes now", PARIS_NIGHT, "reminder", "low", NULL, EMAIL, MOBILE, MOBILE2, NULL,
     NULL, NULL, NIGHT_PARIS, ALL, NULL, 0, "email>sms>whatsapp"},
    {"high urgency: instant first, so deferred", PARIS_NIGHT, "newsletter", "high", NULL, EMAIL, MOBILE, MOBILE2,
     NULL, NULL, NULL, NIGHT_PARIS, ALL, NULL, 0,
     "deferred:quiet_hours@2026-01-16T07:00:00.000Z sms>whatsapp>email"},
    {"critical ignores quiet hours", PARIS_NIGHT, "newsletter", "critical", NULL, EMAIL, MOBILE, MOBILE2, NULL, NULL,
     NULL, NIGHT_PARIS, ALL, NULL, 0, "sms>whatsapp>email"},
    {"an email-first plan still defers when email is held back", PARIS_NIGHT, "newsletter", NULL, NULL, EMAIL, MOBILE,
     NULL, NULL, NULL, NULL, NIGHT_PARIS, ALL, "email,sms,whatsapp", 0,
     "deferred:quiet_hours@2026-01-16T07:00:00.000Z email>sms"},
    {"no channel held back by configuration", PARIS_NIGHT, "reminder", NULL, NULL, EMAIL, MOBILE, NULL, NULL, NULL,
     NULL, NIGHT_PARIS, ALL, "", 0, "sms>email"},
    {"explicit SMS at night is deferred too", PARIS_NIGHT, "newsletter", NULL, "[\"sms\",\"email\"]", EMAIL, MOBILE,
     NULL, NULL, NULL, NULL, NIGHT_PARIS, ALL, NULL, 0, "deferred:quiet_hours@2026-01-16T07:00:00.000Z sms>email"},
    {"expiring before the window ends", PARIS_NIGHT, "reminder", NULL, NULL, EMAIL, MOBILE, NULL, NULL, NULL,
     "2026-01-16T06:59:59Z", NIGHT_PARIS, ALL, NULL, 0, "suppressed:quiet_hours_expired"},
    {"expiring as the window ends", PARIS_NIGHT, "reminder", NULL, NULL, EMAIL, MOBILE, NULL, NULL, NULL,
     "2026-01-16T07:00:00Z", NIGHT_PARIS, ALL, NULL, 0, "suppressed:quiet_hours_expired"},
    {"expiring after the window ends", PARIS_NIGHT, "reminder", NULL, NULL, EMAIL, MOBILE, NULL, NULL, NULL,
     "2026-01-16T07:00:01Z", NIGHT_PARIS, ALL, NULL, 0, "deferred:quiet_hours@2026-01-16T07:00:00.000Z sms>email"},
    {"empty window is no quiet hours", PARIS_NIGHT, "reminder", NULL, NULL, EMAIL, MOBILE, NULL, NULL, NULL, NULL,
     QH("Europe/Paris", "08:00", "08:00"), ALL, NULL, 0, "sms>email"},
    {"daytime window (13:00-14:00)", "2026-01-15T12:30:00Z", "reminder", NULL, NULL, EMAIL, MOBILE, NULL, NULL, NULL,
     NULL, QH("Europe/Paris", "13:00", "14:00"), ALL, NULL, 0,
     "deferred:quiet_hours@2026-01-15T13:00:00.000Z sms>email"},
    {"the snapshot's zone beats the recipient's", PARIS_NIGHT, "reminder", NULL, NULL, EMAIL, MOBILE, NULL,
     "America/New_York", NULL, NULL, NIGHT_PARIS, ALL, NULL, 0,
     "deferred:quiet_hours@2026-01-16T07:00:00.000Z sms>email"},
    {"summer time in Paris (CEST)", "2026-07-01T20:30:00Z", "reminder", NULL, NULL, EMAIL, MOBILE, NULL, NULL, NULL,
     NULL, NIGHT_PARIS, ALL, NULL, 0, "deferred:quiet_hours@2026-07-02T06:00:00.000Z sms>email"},
    {"the same instant is daytime in Sydney", PARIS_NIGHT, "reminder", NULL, NULL, EMAIL, MOBILE, NULL, NULL, NULL,
     NULL, QH("Australia/Sydney", "21:00", "08:00"), ALL, NULL, 0, "sms>email"},

    /* Across DST changes. */
    {"Paris spring forward: end in the gap resolves to 03:00 CEST", "2026-03-29T00:30:00Z", "reminder", NULL, NULL,
     EMAIL, MOBILE, NULL, NULL, NULL, NULL, QH("Europe/Paris", "22:00", "02:30"), ALL, NULL, 0,
     "deferred:quiet_hours@2026-03-29T01:00:00.000Z sms>email"},
    {"Paris fall back: first 02:30 (CEST)", "2026-10-24T23:00:00Z", "reminder", NULL, NULL, EMAIL, MOBILE, NULL, NULL,
     NULL, NULL, QH("Europe/Paris", "22:00", "02:30"), ALL, NULL, 0,
     "deferred:quiet_hours@2026-10-25T00:30:00.000Z sms>email"},
    {"Paris fall back: night spans the change, ends 08:00 CET", "2026-10-24T20:00:00Z", "reminder", NULL, NULL, EMAIL,
     MOBILE, NULL, NULL, NULL, NULL, NIGHT_PARIS, ALL, NULL, 0,
     "deferred:quiet_hours@2026-10-25T07:00:00.000Z sms>email"},
    {"New York spring forward: 07:00 EDT", "2026-03-08T05:00:00Z", "reminder", NULL, NULL, EMAIL, MOBILE, NULL, NULL,
     NULL, NULL, QH("America/New_York", "21:00", "07:00"), ALL, NULL, 0,
     "deferred:quiet_hours@2026-03-08T11:00:00.000Z sms>email"},
    {"New York fall back: 07:00 EST", "2026-11-01T03:00:00Z", "reminder", NULL, NULL, EMAIL, MOBILE, NULL, NULL, NULL,
     NULL, QH("America/New_York", "21:00", "07:00"), ALL, NULL, 0,
     "deferred:quiet_hours@2026-11-01T12:00:00.000Z sms>email"},
    {"New York evening before the window", "2026-03-08T01:00:00Z", "reminder", NULL, NULL, EMAIL, MOBILE, NULL, NULL,
     NULL, NULL, QH("America/New_York", "21:00", "07:00"), ALL, NULL, 0, "sms>email"},
    {"Sydney DST ends: 07:00 AEST", "2026-04-04T11:00:00Z", "reminder", NULL, NULL, EMAIL, MOBILE, NULL, NULL, NULL,
     NULL, QH("Australia/Sydney", "21:00", "07:00"), ALL, NULL, 0,
     "deferred:quiet_hours@2026-04-04T21:00:00.000Z sms>email"},
    {"Sydney DST starts: 07:00 AEDT", "2026-10-03T12:00:00Z", "reminder", NULL, NULL, EMAIL, MOBILE, NULL, NULL, NULL,
     NULL, QH("Australia/Sydney", "21:00", "07:00"), ALL, NULL, 0,
     "deferred:quiet_hours@2026-10-03T20:00:00.000Z sms>email"},

    /* Filters come before quiet hours: the plan that waits is a real one. */
    {"opted out of SMS at night: WhatsApp first, still quiet", PARIS_NIGHT, "reminder", NULL, NULL, EMAIL, MOBILE,
     MOBILE2, NULL, NULL, NULL, ",\"opt_out\":{\"sms\":true}" NIGHT_PARIS, ALL, NULL, 0,
     "deferred:quiet_hours@2026-01-16T07:00:00.000Z whatsapp>email"},
    {"no consent and a landline at night: email goes now", PARIS_NIGHT, "reminder", NULL, NULL, EMAIL, LANDLINE,
     MOBILE2, NULL, NULL, NULL, QH("Europe/Paris", "21:00", "08:00"), ALL, NULL, 0, "email"},
    {"send_after first, quiet hours when it comes back", PARIS_NIGHT, "reminder", NULL, NULL, EMAIL, MOBILE, NULL,
     NULL, "2026-01-15T23:00:00Z", NULL, NIGHT_PARIS, ALL, NULL, 0,
     "deferred:send_after@2026-01-15T23:00:00.000Z sms>email"},
};

static int64_t at(const char *rfc3339)
{
    int64_t t = 0;
    cr_assert_eq(cmn_time_parse_rfc3339(rfc3339, &t), 0, "bad instant %s", rfc3339);
    return t;
}

static void add_str(cmn_buf_t *b, const char *key, const char *value)
{
    if (value == NULL)
        return;
    cmn_buf_printf(b, ",\"%s\":", key);
    cmn_buf_put_json_string(b, value);
}

static void build_request(const prow_t *r, cmn_request_t *req)
{
    cmn_buf_t b = CMN_BUF_INIT;
    char err[256];
    cmn_buf_printf(&b, "{\"request_id\":\"r-1\",\"client_id\":\"c-1\",\"message_type\":\"%s\"", r->message_type);
    add_str(&b, "urgency", r->urgency);
    add_str(&b, "send_after", r->send_after);
    add_str(&b, "expires_at", r->expires_at);
    if (r->channels != NULL)
        cmn_buf_printf(&b, ",\"channels\":%s", r->channels);
    cmn_buf_puts(&b, ",\"recipient\":{\"name\":\"Ana\"");
    add_str(&b, "email", r->email);
    add_str(&b, "phone", r->phone);
    add_str(&b, "whatsapp", r->whatsapp);
    add_str(&b, "timezone", r->tz);
    cmn_buf_puts(&b, "}}");
    json_object *obj = cmn_json_parse(b.data, b.len, err, sizeof err);
    cr_assert_not_null(obj, "%s: %s", r->name, err);
    json_object *errors = json_object_new_array();
    memset(req, 0, sizeof *req);
    cr_assert_eq(cmn_request_from_json(obj, "", req, errors), 0, "%s: %s", r->name,
                 json_object_to_json_string(errors));
    json_object_put(errors);
    json_object_put(obj);
    cmn_buf_free(&b);
}

/* Returns 1 and fills p when the row has a snapshot. */
static int build_prefs(const char *members, cmn_preferences_t *p, const char *name)
{
    char err[256];
    memset(p, 0, sizeof *p);
    if (members == NULL)
        return 0;
    cmn_buf_t b = CMN_BUF_INIT;
    cmn_buf_printf(&b, "{\"v\":1,\"client_id\":\"c-1\",\"updated_at\":\"2026-01-01T00:00:00Z\"%s}", members);
    json_object *obj = cmn_json_parse(b.data, b.len, err, sizeof err);
    cr_assert_not_null(obj, "%s: snapshot JSON: %s", name, err);
    json_object *errors = json_object_new_array();
    cr_assert_eq(cmn_preferences_from_json(obj, "", p, errors), 0, "%s: snapshot invalid: %s", name,
                 json_object_to_json_string(errors));
    json_object_put(errors);
    json_object_put(obj);
    cmn_buf_free(&b);
    return 1;
}

static void describe(const router_decision_t *d, char *out, size_t outlen)
{
    size_t len = 0;
    if (d->suppressed) {
        snprintf(out, outlen, "suppressed:%s", router_reason_name(d->reason));
        return;
    }
    if (d->deferred) {
        char until[40];
        cr_assert_eq(cmn_time_format_rfc3339(d->defer_until_ms, until, sizeof until), 0);
        len = (size_t)snprintf(out, outlen, "deferred:%s@%s ", router_defer_name(d->defer_reason), until);
    }
    len += (size_t)snprintf(out + len, outlen - len, "%s", cmn_channel_name(d->channel));
    for (size_t i = 0; i < d->n_fallback && len < outlen; i++)
        len += (size_t)snprintf(out + len, outlen - len, ">%s", cmn_channel_name(d->fallback[i]));
}

static router_config_t *routing(void)
{
    char err[256];
    router_config_t *cfg = router_config_parse(ROUTING, strlen(ROUTING), err, sizeof err);
    cr_assert_not_null(cfg, "routing config: %s", err);
    return cfg;
}

Test(router_strategy_prefs, decision_table)
{
    router_config_t *cfg = routing();
    for (size_t i = 0; i < sizeof ROWS / sizeof ROWS[0]; i++) {
        const prow_t *r = &ROWS[i];
        cmn_request_t req;
        cmn_preferences_t prefs;
        cmn_quiet_policy_t quiet;
        router_decision_t d;
        char got[160], err[128];
        unsigned enabled = 0;

        build_request(r, &req);
        int has_prefs = build_prefs(r->prefs, &prefs, r->name);
        if (r->quiet == NULL)
            cmn_quiet_policy_default(&quiet);
        else
            cr_assert_eq(cmn_quiet_policy_parse(r->quiet, &quiet), 0, "%s: quiet policy", r->name);
        cr_assert_eq(router_channels_parse_list(r->enabled, &enabled, err, sizeof err), 0, "%s: %s", r->name, err);
        router_input_t in = {.request = &req,
                             .config = cfg,
                             .enabled = enabled,
                             .now_ms = at(r->now),
                             .prefs = has_prefs ? &prefs : NULL,
                             .quiet = &quiet,
                             .whatsapp_consent_optional = r->consent_optional};
        cr_assert_eq(router_decide(&in, &d), 0, "%s", r->name);
        describe(&d, got, sizeof got);
        cr_expect_str_eq(got, r->expect, "row \"%s\": got %s, want %s", r->name, got, r->expect);
        if (d.deferred) {
            cr_expect_gt(d.defer_until_ms, in.now_ms, "row \"%s\": a deferral ends in the future", r->name);
            cr_expect_not_null(d.address, "row \"%s\": the waiting plan keeps its address", r->name);
        }
        if (d.suppressed) {
            cr_expect_eq(d.channel, CMN_CHANNEL_NONE, "row \"%s\"", r->name);
            cr_expect_null(d.address, "row \"%s\"", r->name);
            cr_expect_eq(d.deferred, 0, "row \"%s\"", r->name);
        }
        cmn_preferences_clear(&prefs);
        cmn_request_clear(&req);
    }
    router_config_destroy(cfg);
}

Test(router_strategy_prefs, source_is_the_snapshot)
{
    router_config_t *cfg = routing();
    const prow_t r = {"src", PARIS_DAY, "reminder", NULL, NULL, EMAIL, MOBILE, NULL, NULL, NULL, NULL,
                      ",\"preferred_channels\":[\"email\"]", ALL, NULL, 0, ""};
    cmn_request_t req;
    cmn_preferences_t prefs;
    router_decision_t d;
    cmn_quiet_policy_t quiet;
    cmn_quiet_policy_default(&quiet);
    build_request(&r, &req);
    build_prefs(r.prefs, &prefs, r.name);
    router_input_t in = {
        .request = &req, .config = cfg, .enabled = 7u, .now_ms = at(r.now), .prefs = &prefs, .quiet = &quiet};
    cr_assert_eq(router_decide(&in, &d), 0);
    cr_expect_eq(d.source, ROUTER_SOURCE_PREFERENCES);
    cr_expect_eq(d.channel, CMN_CHANNEL_EMAIL);
    cmn_preferences_clear(&prefs);
    cmn_request_clear(&req);
    router_config_destroy(cfg);
}

/* The snapshot validator requires a zone with quiet hours, so these two cases
 * (a snapshot whose zone is missing, or unknown to ICU) are built by hand. */
Test(router_strategy_prefs, zone_falls_back_to_the_recipient_and_unknown_zones_are_reported)
{
    router_config_t *cfg = routing();
    const prow_t r = {"zone", PARIS_NIGHT, "reminder", NULL, NULL, EMAIL, MOBILE, NULL, "Europe/Paris", NULL, NULL,
                      NIGHT_PARIS, ALL, NULL, 0, ""};
    cmn_request_t req;
    cmn_preferences_t prefs;
    router_decision_t d;
    char got[160];
    cmn_quiet_policy_t quiet;
    cmn_quiet_policy_default(&quiet);
    build_request(&r, &req);
    build_prefs(r.prefs, &prefs, r.name);
    free(prefs.timezone);
    prefs.timezone = NULL;
    router_input_t in = {
        .request = &req, .config = cfg, .enabled = 7u, .now_ms = at(r.now), .prefs = &prefs, .quiet = &quiet};

    cr_assert_eq(router_decide(&in, &d), 0);
    describe(&d, got, sizeof got);
    cr_expect_str_eq(got, "deferred:quiet_hours@2026-01-16T07:00:00.000Z sms>email", "recipient's zone used");

    /* No zone anywhere: quiet hours cannot be placed in time, so none. */
    free(req.recipient.timezone);
    req.recipient.timezone = NULL;
    cr_assert_eq(router_decide(&in, &d), 0);
    describe(&d, got, sizeof got);
    cr_expect_str_eq(got, "sms>email");
    cr_expect_eq(d.quiet_zone_invalid, 0);

    /* A zone ICU does not know: skipped, and said so. */
    prefs.timezone = strdup("Mars/Olympus_Mons");
    cr_assert_eq(router_decide(&in, &d), 0);
    describe(&d, got, sizeof got);
    cr_expect_str_eq(got, "sms>email");
    cr_expect_eq(d.quiet_zone_invalid, 1);

    cmn_preferences_clear(&prefs);
    cmn_request_clear(&req);
    router_config_destroy(cfg);
}

/* Without a policy (NULL) nothing is held back, and without a snapshot there
 * are no quiet hours: the strategy needs both. */
Test(router_strategy_prefs, no_policy_or_no_snapshot_means_no_quiet_hours)
{
    router_config_t *cfg = routing();
    const prow_t r = {"nopolicy", PARIS_NIGHT, "reminder", NULL, NULL, EMAIL, MOBILE, NULL, "Europe/Paris", NULL, NULL,
                      NIGHT_PARIS, ALL, NULL, 0, ""};
    cmn_request_t req;
    cmn_preferences_t prefs;
    router_decision_t d;
    build_request(&r, &req);
    build_prefs(r.prefs, &prefs, r.name);
    router_input_t in = {.request = &req, .config = cfg, .enabled = 7u, .now_ms = at(r.now), .prefs = &prefs};
    cr_assert_eq(router_decide(&in, &d), 0);
    cr_expect_eq(d.deferred, 0);
    cr_expect_eq(d.channel, CMN_CHANNEL_SMS);
    in.prefs = NULL;
    cmn_quiet_policy_t quiet;
    cmn_quiet_policy_default(&quiet);
    in.quiet = &quiet;
    cr_assert_eq(router_decide(&in, &d), 0);
    cr_expect_eq(d.deferred, 0);
    cr_expect_eq(d.channel, CMN_CHANNEL_SMS);
    cmn_preferences_clear(&prefs);
    cmn_request_clear(&req);
    router_config_destroy(cfg);
}

/* Validation refuses expires_at <= send_after, but the strategy must not rely
 * on it: such a request can never be sent, so it is suppressed as expired. */
Test(router_strategy_prefs, expiring_before_send_after_is_expired)
{
    router_config_t *cfg = routing();
    const prow_t r = {"exp", PARIS_DAY, "newsletter", NULL, NULL, EMAIL, NULL, NULL, NULL, "2026-01-15T12:00:00Z",
                      NULL, NULL, ALL, NULL, 0, ""};
    cmn_request_t req;
    router_decision_t d;
    build_request(&r, &req);
    req.expires_at_ms = at("2026-01-15T12:00:00Z");
    router_input_t in = {.request = &req, .config = cfg, .enabled = 7u, .now_ms = at(r.now)};
    cr_assert_eq(router_decide(&in, &d), 0);
    cr_expect_eq(d.suppressed, 1);
    cr_expect_eq(d.reason, ROUTER_REASON_EXPIRED);
    cr_expect_eq(d.deferred, 0);
    cmn_request_clear(&req);
    router_config_destroy(cfg);
}
