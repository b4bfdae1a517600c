/* test_inbound.c - InboundMessage v1 (crm/inbound.h): keyword recognition,
 * event ids, the key, and the JSON round trip with its validation. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "crm/buf.h"
#include "crm/err.h"
#include "crm/inbound.h"
#include "crm/json.h"
#include "crm/uuid.h"

Test(inbound, keywords_like_carriers)
{
    struct {
        const char *body;
        cmn_inbound_keyword_t kw;
    } cases[] = {
        {"STOP", CMN_KEYWORD_STOP},        {"stop", CMN_KEYWORD_STOP},          {" Stop. ", CMN_KEYWORD_STOP},
        {"STOPALL", CMN_KEYWORD_STOP},     {"Unsubscribe!", CMN_KEYWORD_STOP},  {"cancel", CMN_KEYWORD_STOP},
        {"END", CMN_KEYWORD_STOP},         {"quit\n", CMN_KEYWORD_STOP},        {"START", CMN_KEYWORD_START},
        {"yes", CMN_KEYWORD_START},        {"UNSTOP", CMN_KEYWORD_START},       {"HELP", CMN_KEYWORD_HELP},
        {"info?", CMN_KEYWORD_HELP},       {"stop sending me this", CMN_KEYWORD_NONE},
        {"stopp", CMN_KEYWORD_NONE},       {"", CMN_KEYWORD_NONE},              {"...", CMN_KEYWORD_NONE},
        {"s t o p", CMN_KEYWORD_NONE},     {"Does it come in another color?", CMN_KEYWORD_NONE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        cr_expect_eq(cmn_inbound_keyword_parse(cases[i].body), cases[i].kw, "%s", cases[i].body);
    cr_expect_eq(cmn_inbound_keyword_parse(NULL), CMN_KEYWORD_NONE);
    cr_expect_str_eq(cmn_inbound_keyword_name(CMN_KEYWORD_STOP), "stop");
    cr_expect_str_eq(cmn_inbound_keyword_name(CMN_KEYWORD_START), "start");
    cr_expect_str_eq(cmn_inbound_keyword_name(CMN_KEYWORD_HELP), "help");
    cr_expect_null(cmn_inbound_keyword_name(CMN_KEYWORD_NONE));
}

static void fill(cmn_inbound_t *m)
{
    memset(m, 0, sizeof *m);
    m->v = 1;
    m->tenant_id = strdup("acme");
    m->provider = strdup("twilio");
    m->provider_message_id = strdup("SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    m->from = strdup("+14155559876");
    m->to = strdup("+14155552345");
    m->body = strdup("Stop \"now\"");
    m->profile_name = strdup("Jane");
    m->channel = CMN_CHANNEL_WHATSAPP;
    m->keyword = CMN_KEYWORD_STOP;
    m->media[0].url = strdup("https://api.twilio.com/m/ME1");
    m->media[0].content_type = strdup("image/jpeg");
    m->media[1].url = strdup("https://api.twilio.com/m/ME2");
    m->n_media = 2;
    m->received_at_ms = 1750000000123;
}

Test(inbound, event_id_depends_on_provider_and_message_id_only)
{
    cmn_inbound_t a, b;
    fill(&a);
    fill(&b);
    cr_assert_eq(cmn_inbound_set_event_id(&a), 0);
    b.received_at_ms += 60000; /* a retry arrives later */
    cr_assert_eq(cmn_inbound_set_event_id(&b), 0);
    cr_expect(cmn_uuid_is_valid(a.event_id));
    cr_expect_str_eq(a.event_id, b.event_id);
    free(b.provider_message_id);
    b.provider_message_id = strdup("SMbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
    cr_assert_eq(cmn_inbound_set_event_id(&b), 0);
    cr_expect_str_neq(a.event_id, b.event_id);
    free(b.provider);
    b.provider = NULL;
    cr_expect_eq(cmn_inbound_set_event_id(&b), CMN_ERR_INVALID);
    cmn_inbound_clear(&a);
    cmn_inbound_clear(&b);
}

Test(inbound, json_round_trip_and_key)
{
    cmn_inbound_t a, b;
    cmn_buf_t out = CMN_BUF_INIT, again = CMN_BUF_INIT;
    char err[256] = "", key[128];
    fill(&a);
    cr_assert_eq(cmn_inbound_set_event_id(&a), 0);
    cr_assert_eq(cmn_inbound_to_json(&a, &out), 0);
    cr_expect_not_null(strstr(out.data, "\"keyword\":\"stop\""));
    cr_expect_not_null(strstr(out.data, "\"received_at\":\"2025-06-15T15:06:40.123Z\""), "%s", out.data);
    json_object *o = cmn_json_parse(out.data, out.len, err, sizeof err);
    cr_assert_not_null(o, "%s", err);
    cr_assert_eq(cmn_inbound_from_json(o, &b, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(b.event_id, a.event_id);
    cr_expect_str_eq(b.tenant_id, "acme");
    cr_expect_eq(b.channel, CMN_CHANNEL_WHATSAPP);
    cr_expect_str_eq(b.body, "Stop \"now\"");
    cr_expect_eq(b.keyword, CMN_KEYWORD_STOP);
    cr_expect_eq(b.n_media, 2);
    cr_expect_str_eq(b.media[0].content_type, "image/jpeg");
    cr_expect_null(b.media[1].content_type);
    cr_expect_eq(b.received_at_ms, a.received_at_ms);
    cr_assert_eq(cmn_inbound_to_json(&b, &again), 0);
    cr_expect_str_eq(again.data, out.data);
    cr_assert_eq(cmn_inbound_key(&b, key, sizeof key), 0);
    cr_expect_str_eq(key, "acme:+14155559876");
    cr_expect_eq(cmn_inbound_key(&b, key, 8), CMN_ERR_OVERFLOW);
    json_object_put(o);
    cmn_buf_free(&out);
    cmn_buf_free(&again);
    cmn_inbound_clear(&a);
    cmn_inbound_clear(&b);
}

static void refused(const char *json, const char *field)
{
    cmn_inbound_t m;
    char err[256] = "";
    json_object *o = cmn_json_parse(json, strlen(json), err, sizeof err);
    cr_assert_not_null(o, "%s", err);
    cr_expect_eq(cmn_inbound_from_json(o, &m, err, sizeof err), CMN_ERR_INVALID, "%s", json);
    cr_expect_eq(strncmp(err, field, strlen(field)), 0, "want %s, got %s", field, err);
    cr_expect_null(m.from);
    json_object_put(o);
}

#define EV "\"event_id\":\"6f1c3f0e-5b7a-4d0e-9a51-2c8e7d4b1a01\""
#define BASE EV ",\"channel\":\"sms\",\"provider\":\"twilio\",\"provider_message_id\":\"SM1\",\"from\":\"+1415\""
#define AT ",\"received_at\":\"2026-11-22T10:00:00Z\""

Test(inbound, validation_names_the_field)
{
    refused("{\"v\":2," BASE AT "}", "v");
    refused("{\"channel\":\"sms\"}", "event_id");
    refused("{" EV ",\"channel\":\"email\"}", "channel");
    refused("{" EV ",\"channel\":\"sms\",\"provider_message_id\":\"x\",\"from\":\"+1\"" AT "}", "provider");
    refused("{" BASE "}", "received_at");
    refused("{" BASE ",\"received_at\":\"yesterday\"}", "received_at");
    refused("{" BASE AT ",\"keyword\":\"maybe\"}", "keyword");
    refused("{" BASE AT ",\"media\":[{\"content_type\":\"image/png\"}]}", "url");
    refused("{" BASE AT ",\"body\":7}", "body");

    cmn_inbound_t m;
    char err[256] = "";
    const char *ok = "{" BASE AT "}";
    json_object *o = cmn_json_parse(ok, strlen(ok), err, sizeof err);
    cr_assert_eq(cmn_inbound_from_json(o, &m, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(m.tenant_id, "default");
    cr_expect_eq(m.keyword, CMN_KEYWORD_NONE);
    cr_expect_null(m.body);
    cmn_inbound_clear(&m);
    json_object_put(o);
}
