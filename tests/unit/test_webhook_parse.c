/* test_webhook_parse.c - the receiver's pure modules: Twilio and Meta
 * webhook parsing (every webhook example of ../shared/oracles), the status
 * mapping and event ids, opt-out snapshots, TwiML, the Meta subscription
 * check and the email tracking events. */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/buf.h"
#include "crm/err.h"
#include "crm/json.h"
#include "crm/preferences.h"
#include "crm/track.h"
#include "wh_form.h"
#include "wh_meta.h"
#include "wh_optout.h"
#include "wh_status.h"
#include "wh_track.h"
#include "wh_twilio.h"

#define TWILIO_ORACLE CRM_SHARED_DIR "/oracles/twilio/webhook_and_error_examples.json"
#define META_ORACLE CRM_SHARED_DIR "/oracles/meta/cloud_api_examples.json"
#define CID "0b0f5a3e-8f0e-5a7c-9d1b-2a3b4c5d6e7f"

static json_object *load(const char *path)
{
    json_object *o = json_object_from_file(path);
    cr_assert_not_null(o, "cannot read %s", path);
    return o;
}

static const char *twilio_example(json_object *root, const char *section, const char *name)
{
    json_object *s = cmn_json_get_object(root, section);
    json_object *ex = s != NULL ? cmn_json_get_object(s, "constructed_examples") : NULL;
    const char *v = ex != NULL ? cmn_json_get_string(ex, name) : NULL;
    cr_assert_not_null(v, "%s.%s missing from the oracle", section, name);
    return v;
}

static void form(wh_form_t *f, const char *body)
{
    memset(f, 0, sizeof *f);
    cr_assert_eq(wh_form_parse(body, strlen(body), f), 0, "%s", body);
}

Test(webhook_parse, twilio_status_oracle_delivered_sms)
{
    json_object *root = load(TWILIO_ORACLE);
    wh_form_t f, q;
    wh_receipt_t r;
    cmn_status_event_t ev;
    cmn_buf_t details = CMN_BUF_INIT, json = CMN_BUF_INIT;
    char err[128] = "";
    form(&f, twilio_example(root, "status_callback", "delivered_sms"));
    form(&q, "communication_id=" CID "&hop=1&attempt=2");
    cr_assert_eq(wh_twilio_status_parse(&f, &q, 1750000000000, &r, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(r.provider_message_id, "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    cr_expect_eq(r.channel, CMN_CHANNEL_SMS);
    cr_expect_str_eq(r.communication_id, CID);
    cr_expect_eq(r.hop, 1);
    cr_expect_eq(r.attempt, 2);
    cr_assert_eq(wh_status_build(&r, "default", &ev, &details), 1);
    cr_expect_eq(ev.status, CMN_STATUS_DELIVERED);
    cr_expect_str_eq(wh_status_key(&ev), CID);
    cr_assert_eq(cmn_status_event_to_json(&ev, &json), 0);
    cr_expect_not_null(strstr(json.data, "\"provider_status\":\"delivered\""), "%s", json.data);
    cr_expect_not_null(strstr(json.data, "\"hop\":1"));
    cmn_buf_free(&details);
    cmn_buf_free(&json);
    wh_form_clear(&f);
    wh_form_clear(&q);
    json_object_put(root);
}

Test(webhook_parse, twilio_status_oracle_failed_whatsapp_without_ids)
{
    json_object *root = load(TWILIO_ORACLE);
    wh_form_t f, q = {0};
    wh_receipt_t r;
    cmn_status_event_t ev;
    cmn_buf_t details = CMN_BUF_INIT;
    char err[128] = "";
    form(&f, twilio_example(root, "status_callback", "failed_whatsapp_63016"));
    cr_assert_eq(wh_twilio_status_parse(&f, &q, 1750000000000, &r, err, sizeof err), 0, "%s", err);
    cr_expect_eq(r.channel, CMN_CHANNEL_WHATSAPP);
    cr_expect_str_eq(r.error_code, "63016");
    cr_expect_str_eq(r.communication_id, "");
    cr_expect_eq(r.hop, -1);
    cr_assert_eq(wh_status_build(&r, "default", &ev, &details), 1);
    cr_expect_eq(ev.status, CMN_STATUS_FAILED);
    cr_expect_str_eq(ev.error_code, "63016");
    /* No id of ours: keyed by the provider message id. */
    cr_expect_str_eq(wh_status_key(&ev), "SMbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
    cmn_buf_free(&details);
    wh_form_clear(&f);
    json_object_put(root);
}

Test(webhook_parse, twilio_status_refusals_name_the_field)
{
    struct {
        const char *body, *query, *field;
    } cases[] = {
        {"MessageStatus=sent", "", "MessageSid"},
        {"MessageSid=SM1&MessageStatus=sent", "", "MessageSid"},
        {"MessageSid=SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "", "MessageStatus"},
        {"MessageSid=SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa&MessageStatus=failed&ErrorCode=x1", "", "ErrorCode"},
        {"MessageSid=SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa&MessageStatus=sent", "communication_id=nope", "communication_id"},
        {"MessageSid=SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa&MessageStatus=sent", "hop=-1", "hop"},
        {"MessageSid=SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa&MessageStatus=sent", "attempt=1x", "attempt"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        wh_form_t f = {0}, q = {0};
        wh_receipt_t r;
        char err[128] = "";
        wh_form_parse(cases[i].body, strlen(cases[i].body), &f);
        wh_form_parse(cases[i].query, strlen(cases[i].query), &q);
        cr_expect_eq(wh_twilio_status_parse(&f, &q, 1, &r, err, sizeof err), CMN_ERR_INVALID, "%s", cases[i].body);
        cr_expect_eq(strncmp(err, cases[i].field, strlen(cases[i].field)), 0, "want %s, got %s", cases[i].field, err);
        wh_form_clear(&f);
        wh_form_clear(&q);
    }
}

Test(webhook_parse, status_mapping_and_event_ids)
{
    struct {
        const char *word;
        int event;
        cmn_status_t status;
        const char *reason;
    } cases[] = {
        {"queued", 0, 0, NULL},
        {"accepted", 0, 0, NULL},
        {"sending", 0, 0, NULL},
        {"sent", 1, CMN_STATUS_SENT, NULL},
        {"delivered", 1, CMN_STATUS_DELIVERED, NULL},
        {"read", 1, CMN_STATUS_READ, NULL},
        {"undelivered", 1, CMN_STATUS_FAILED, "undelivered"},
        {"failed", 1, CMN_STATUS_FAILED, NULL},
        {"canceled", 1, CMN_STATUS_FAILED, "canceled"},
        {"deleted", 0, 0, NULL},
        {"receiving", 0, 0, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cmn_status_t st = CMN_STATUS__COUNT;
        const char *reason = "unset";
        cr_expect_eq(wh_status_map(cases[i].word, &st, &reason), cases[i].event, "%s", cases[i].word);
        if (cases[i].event) {
            cr_expect_eq(st, cases[i].status, "%s", cases[i].word);
            if (cases[i].reason == NULL)
                cr_expect_null(reason, "%s", cases[i].word);
            else
                cr_expect_str_eq(reason, cases[i].reason);
        }
    }
    wh_receipt_t a, b;
    char ida[40], idb[40];
    wh_receipt_init(&a);
    a.provider = WH_PROVIDER_TWILIO;
    a.provider_message_id = "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    a.provider_status = "undelivered";
    a.error_code = "30003";
    b = a;
    memcpy(b.communication_id, CID, sizeof b.communication_id);
    b.hop = 2;
    b.occurred_at_ms = 99;
    cr_assert_eq(wh_status_event_id(&a, ida), 0);
    cr_assert_eq(wh_status_event_id(&b, idb), 0);
    cr_expect_str_eq(ida, idb, "what the receiver resolved must not change the id");
    b.error_code = "30005";
    cr_assert_eq(wh_status_event_id(&b, idb), 0);
    cr_expect_str_neq(ida, idb);
    b.error_code = "30003";
    b.provider = WH_PROVIDER_META;
    cr_assert_eq(wh_status_event_id(&b, idb), 0);
    cr_expect_str_neq(ida, idb);
}

Test(webhook_parse, twilio_inbound_oracle_examples)
{
    json_object *root = load(TWILIO_ORACLE);
    wh_form_t f;
    cmn_inbound_t m;
    char err[128] = "";

    form(&f, twilio_example(root, "inbound_message_webhook", "whatsapp_text"));
    cr_assert_eq(wh_twilio_inbound_parse(&f, "acme", 1750000000000, &m, err, sizeof err), 0, "%s", err);
    cr_expect_eq(m.channel, CMN_CHANNEL_WHATSAPP);
    cr_expect_str_eq(m.from, "+14155559876");
    cr_expect_str_eq(m.to, "+14155552345");
    cr_expect_str_eq(m.body, "STOP");
    cr_expect_eq(m.keyword, CMN_KEYWORD_STOP);
    cr_expect_str_eq(m.profile_name, "Jane");
    cr_expect_str_eq(m.provider_message_id, "SMcccccccccccccccccccccccccccccccc");
    cr_expect_str_eq(m.tenant_id, "acme");
    cmn_inbound_clear(&m);
    wh_form_clear(&f);

    form(&f, twilio_example(root, "inbound_message_webhook", "sms_with_media"));
    cr_assert_eq(wh_twilio_inbound_parse(&f, "default", 1750000000000, &m, err, sizeof err), 0, "%s", err);
    cr_expect_eq(m.channel, CMN_CHANNEL_SMS);
    cr_expect_str_eq(m.body, "hi");
    cr_expect_eq(m.keyword, CMN_KEYWORD_NONE);
    cr_assert_eq(m.n_media, 1);
    cr_expect_str_eq(m.media[0].content_type, "image/jpeg");
    cr_expect_not_null(strstr(m.media[0].url, "/Media/MEeeee"));
    cmn_inbound_clear(&m);
    wh_form_clear(&f);
    json_object_put(root);

    form(&f, "MessageSid=SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa&From=14155550100&Body=hi");
    cr_expect_eq(wh_twilio_inbound_parse(&f, "default", 1, &m, err, sizeof err), CMN_ERR_INVALID);
    cr_expect_eq(strncmp(err, "From", 4), 0, "%s", err);
    wh_form_clear(&f);
    form(&f, "MessageSid=SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa&From=%2B14155550100&NumMedia=2&MediaUrl0=https://x/1");
    cr_expect_eq(wh_twilio_inbound_parse(&f, "default", 1, &m, err, sizeof err), CMN_ERR_INVALID);
    cr_expect_eq(strncmp(err, "MediaUrl1", 9), 0, "%s", err);
    wh_form_clear(&f);
    /* A quick reply's payload is the keyword, not its label. */
    form(&f, "MessageSid=SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa&From=whatsapp%3A%2B14155550100&Body=No+more+offers"
             "&ButtonText=No+more+offers&ButtonPayload=STOP");
    cr_assert_eq(wh_twilio_inbound_parse(&f, "default", 1, &m, err, sizeof err), 0, "%s", err);
    cr_expect_eq(m.keyword, CMN_KEYWORD_STOP);
    cmn_inbound_clear(&m);
    wh_form_clear(&f);
}

Test(webhook_parse, twiml_answers)
{
    cmn_buf_t out = CMN_BUF_INIT;
    cr_assert_eq(wh_twilio_twiml(NULL, &out), 0);
    cr_expect_str_eq(out.data, "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>");
    cmn_buf_reset(&out);
    cr_assert_eq(wh_twilio_twiml("Help: call <555> & \"ask\"", &out), 0);
    cr_expect_str_eq(out.data, "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>Help: call &lt;555&gt; "
                               "&amp; &quot;ask&quot;</Message></Response>");
    cmn_buf_free(&out);
}

/* ------------------------------------------------------------------ Meta */

static void meta_parse(json_object *payload, wh_meta_batch_t *b)
{
    const char *text = json_object_to_json_string_ext(payload, JSON_C_TO_STRING_PLAIN);
    char err[256] = "";
    cr_assert_eq(wh_meta_parse(text, strlen(text), "default", b, err, sizeof err), 0, "%s", err);
}

Test(webhook_parse, meta_every_inbound_oracle_example)
{
    json_object *root = load(META_ORACLE);
    json_object *ex = cmn_json_get_object(cmn_json_get_object(root, "verbatim_from_spec"), "inbound_webhook_examples");
    cr_assert_not_null(ex);
    struct {
        const char *name;
        size_t messages;
        const char *body;
        cmn_inbound_keyword_t kw;
        size_t media;
    } want[] = {
        {"Text Message", 1, "Does it come in another color?", CMN_KEYWORD_NONE, 0},
        {"Image Message", 1, "Taj Mahal", CMN_KEYWORD_NONE, 1},
        {"Interactive Button Reply Message", 1, "Cancel", CMN_KEYWORD_NONE, 0},
        {"Button Message", 1, "Unsubscribe", CMN_KEYWORD_STOP, 0},
        {"Unsupported Message", 1, NULL, CMN_KEYWORD_NONE, 0},
        {"System Message", 0, NULL, CMN_KEYWORD_NONE, 0},
    };
    cr_assert_eq(json_object_object_length(ex), sizeof want / sizeof want[0], "the oracle has new examples");
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        wh_meta_batch_t b;
        json_object *payload = cmn_json_get_object(ex, want[i].name);
        cr_assert_not_null(payload, "%s", want[i].name);
        meta_parse(payload, &b);
        cr_expect_eq(b.n_receipts, 0);
        cr_assert_eq(b.n_messages, want[i].messages, "%s", want[i].name);
        if (want[i].messages == 0) {
            cr_expect_eq(b.n_ignored, 1, "%s", want[i].name);
        } else {
            cmn_inbound_t *m = &b.messages[0];
            cr_expect_eq(m->channel, CMN_CHANNEL_WHATSAPP);
            cr_expect_str_eq(m->provider, "meta");
            cr_expect_str_eq(m->from, "+16505551234");
            cr_expect_str_eq(m->to, "+15550783881");
            cr_expect_str_eq(m->profile_name, "Sheena Nelson");
            cr_expect_eq(strncmp(m->provider_message_id, "wamid.", 6), 0);
            cr_expect_gt(m->received_at_ms, 1700000000000);
            if (want[i].body == NULL)
                cr_expect_null(m->body, "%s", want[i].name);
            else
                cr_expect_str_eq(m->body, want[i].body, "%s", want[i].name);
            cr_expect_eq(m->keyword, want[i].kw, "%s", want[i].name);
            cr_expect_eq(m->n_media, want[i].media, "%s", want[i].name);
        }
        wh_meta_batch_clear(&b);
    }
    json_object_put(root);
}

Test(webhook_parse, meta_every_status_oracle_example)
{
    json_object *root = load(META_ORACLE);
    json_object *c = cmn_json_get_object(root, "constructed");
    struct {
        const char *name;
        cmn_status_t status;
        const char *code;
    } want[] = {
        {"status_sent", CMN_STATUS_SENT, NULL},
        {"status_delivered", CMN_STATUS_DELIVERED, NULL},
        {"status_read", CMN_STATUS_READ, NULL},
        {"status_failed_131047", CMN_STATUS_FAILED, "131047"},
        {"status_failed_131026", CMN_STATUS_FAILED, "131026"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        wh_meta_batch_t b;
        cmn_status_event_t ev;
        cmn_buf_t details = CMN_BUF_INIT;
        json_object *payload = cmn_json_get_object(c, want[i].name);
        cr_assert_not_null(payload, "%s", want[i].name);
        meta_parse(payload, &b);
        cr_assert_eq(b.n_receipts, 1, "%s", want[i].name);
        cr_expect_eq(b.n_messages, 0);
        wh_receipt_t *r = &b.receipts[0];
        cr_expect_eq(r->channel, CMN_CHANNEL_WHATSAPP);
        cr_expect_eq(r->occurred_at_ms, 1750263773000);
        cr_assert_eq(wh_status_build(r, "default", &ev, &details), 1);
        cr_expect_eq(ev.status, want[i].status, "%s", want[i].name);
        if (want[i].code == NULL) {
            cr_expect_null(ev.error_code);
        } else {
            cr_expect_str_eq(ev.error_code, want[i].code);
            cr_expect_not_null(ev.error_message);
        }
        cmn_buf_free(&details);
        wh_meta_batch_clear(&b);
    }
    json_object_put(root);
}

Test(webhook_parse, meta_refusals_name_the_member)
{
    struct {
        const char *body, *field;
    } cases[] = {
        {"not json", "body"},
        {"[]", "body"},
        {"{\"object\":\"page\",\"entry\":[]}", "object"},
        {"{\"object\":\"whatsapp_business_account\"}", "entry"},
        {"{\"object\":\"whatsapp_business_account\",\"entry\":[{\"changes\":[{\"field\":\"messages\",\"value\":"
         "{\"statuses\":[{\"status\":\"sent\",\"timestamp\":\"1\"}]}}]}]}",
         "entry[0].changes[0].value.statuses[0].id"},
        {"{\"object\":\"whatsapp_business_account\",\"entry\":[{\"changes\":[{\"field\":\"messages\",\"value\":"
         "{\"messages\":[{\"from\":\"1650\",\"id\":\"w\",\"timestamp\":\"1\",\"type\":\"text\",\"text\":{}}]}}]}]}",
         "entry[0].changes[0].value.messages[0].from"},
        {"{\"object\":\"whatsapp_business_account\",\"entry\":[{\"changes\":[{\"field\":\"messages\",\"value\":"
         "{\"messages\":[{\"from\":\"16505551234\",\"id\":\"w\",\"timestamp\":\"x\",\"type\":\"text\"}]}}]}]}",
         "entry[0].changes[0].value.messages[0].timestamp"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        wh_meta_batch_t b;
        char err[256] = "";
        cr_expect_eq(wh_meta_parse(cases[i].body, strlen(cases[i].body), "default", &b, err, sizeof err),
                     CMN_ERR_INVALID, "%s", cases[i].body);
        cr_expect_eq(strncmp(err, cases[i].field, strlen(cases[i].field)), 0, "want %s, got %s", cases[i].field, err);
        cr_expect_null(b.root);
    }
}

Test(webhook_parse, meta_opaque_and_verification)
{
    wh_receipt_t r;
    wh_receipt_init(&r);
    cr_expect_eq(wh_meta_opaque_parse(CID, &r), 0);
    cr_expect_str_eq(r.communication_id, CID);
    cr_expect_eq(r.hop, -1);
    cr_expect_eq(wh_meta_opaque_parse(CID ":2:3", &r), 0);
    cr_expect_eq(r.hop, 2);
    cr_expect_eq(r.attempt, 3);
    wh_receipt_init(&r);
    cr_expect_eq(wh_meta_opaque_parse(CID ":2", &r), CMN_ERR_INVALID);
    cr_expect_eq(wh_meta_opaque_parse("order-42", &r), CMN_ERR_INVALID);
    cr_expect_str_eq(r.communication_id, "");

    const char *challenge = NULL, *field = NULL;
    cr_expect_eq(wh_meta_verify("subscribe", "tok", "1158201444", "tok", &challenge, &field), 200);
    cr_expect_str_eq(challenge, "1158201444");
    cr_expect_eq(wh_meta_verify("subscribe", "bad", "1158201444", "tok", &challenge, &field), 403);
    cr_expect_null(challenge);
    cr_expect_eq(wh_meta_verify("unsubscribe", "tok", "1", "tok", &challenge, &field), 403);
    cr_expect_eq(wh_meta_verify("subscribe", "", "1", "", &challenge, &field), 403, "no token configured");
    cr_expect_eq(wh_meta_verify(NULL, "tok", "1", "tok", &challenge, &field), 400);
    cr_expect_str_eq(field, "hub.mode");
    cr_expect_eq(wh_meta_verify("subscribe", "tok", "<script>", "tok", &challenge, &field), 200);
    cr_expect_eq(wh_meta_verify("subscribe", "tok", "a b", "tok", &challenge, &field), 400);
    cr_expect_str_eq(field, "hub.challenge");
}

/* --------------------------------------------------------------- opt-out */

static json_object *snapshot(const char *text, cmn_preferences_t *p)
{
    json_object *o = cmn_json_parse(text, strlen(text), NULL, 0);
    cr_assert_not_null(o, "%s", text);
    memset(p, 0, sizeof *p);
    cr_assert_eq(cmn_preferences_from_json(o, "", p, NULL), 0, "%s", text);
    return o;
}

Test(webhook_parse, optout_keeps_the_rest_of_the_snapshot)
{
    const char *stored = "{\"v\":1,\"tenant_id\":\"default\",\"client_id\":\"c-42\",\"preferred_channels\":[\"sms\"],"
                         "\"timezone\":\"Europe/Paris\",\"quiet_hours\":{\"start\":\"21:00\",\"end\":\"08:00\"},"
                         "\"opt_out\":{\"email\":false,\"sms\":false,\"whatsapp\":false},"
                         "\"updated_at\":\"2026-03-01T10:00:00Z\"}";
    cmn_buf_t out = CMN_BUF_INIT;
    cmn_preferences_t p;
    int used = 0;
    wh_optout_change_t stop = {1, 0, CMN_CHANNEL_SMS};
    cr_assert_eq(wh_optout_apply(stored, "default", "c-42", &stop, 1780000000000, &out, &used), 0);
    cr_expect_eq(used, 1);
    json_object *o = snapshot(out.data, &p);
    cr_expect(cmn_preferences_opted_out(&p, CMN_CHANNEL_SMS));
    cr_expect_not(cmn_preferences_opted_out(&p, CMN_CHANNEL_WHATSAPP));
    cr_expect_not(cmn_preferences_opted_out(&p, CMN_CHANNEL_EMAIL));
    cr_expect_str_eq(p.timezone, "Europe/Paris");
    cr_expect_eq(p.has_quiet_hours, 1);
    cr_expect_eq(p.updated_at_ms, 1780000000000);
    cmn_preferences_clear(&p);
    json_object_put(o);

    /* A stored snapshot newer than the clock: the change still wins. */
    cmn_buf_reset(&out);
    wh_optout_change_t start = {0, 0, CMN_CHANNEL_SMS};
    cr_assert_eq(wh_optout_apply(stored, "default", "c-42", &start, 1000, &out, &used), 0);
    o = snapshot(out.data, &p);
    cr_expect_eq(p.updated_at_ms, 1772359200000 + 1);
    cr_expect_not(cmn_preferences_opted_out(&p, CMN_CHANNEL_SMS));
    cmn_preferences_clear(&p);
    json_object_put(o);

    /* STOPALL from nothing stored: every channel. */
    cmn_buf_reset(&out);
    wh_optout_change_t all = {1, 1, CMN_CHANNEL_WHATSAPP};
    cr_assert_eq(wh_optout_apply(NULL, "acme", "c-7", &all, 1780000000000, &out, &used), 0);
    cr_expect_eq(used, 0);
    o = snapshot(out.data, &p);
    cr_expect_str_eq(p.tenant_id, "acme");
    for (int c = 0; c < CMN_CHANNEL__COUNT; c++)
        cr_expect(cmn_preferences_opted_out(&p, (cmn_channel_t)c));
    cmn_preferences_clear(&p);
    json_object_put(o);

    cr_expect_eq(wh_optout_is_all(" StopAll! "), 1);
    cr_expect_eq(wh_optout_is_all("STOP"), 0);
    cr_expect_eq(wh_optout_apply(NULL, "a:b", "c", &all, 1, &out, NULL), CMN_ERR_INVALID);
    cmn_buf_free(&out);
}

/* ------------------------------------------------------- email tracking */

#define TRACK_KEY "tracking-key-for-tests-0123456789abcdef"

Test(webhook_parse, tracking_events_and_page)
{
    cmn_track_token_t t, parsed;
    cmn_buf_t tok = CMN_BUF_INIT, details = CMN_BUF_INIT, page = CMN_BUF_INIT;
    cmn_status_event_t a, b;
    cmn_track_reason_t reason;

    cmn_track_token_init(&t);
    t.kind = CMN_TRACK_CLICK;
    snprintf(t.tenant_id, sizeof t.tenant_id, "default");
    snprintf(t.client_id, sizeof t.client_id, "c-42");
    snprintf(t.communication_id, sizeof t.communication_id, CID);
    t.hop = 1;
    t.link_index = 3;
    snprintf(t.target, sizeof t.target, "https://example.com/offer?a=1&b=2");
    cr_assert_eq(cmn_track_token_make(TRACK_KEY, &t, &tok), 0);
    cr_assert_eq(cmn_track_token_parse(TRACK_KEY, tok.data, CMN_TRACK_CLICK, 0, &parsed, &reason), 0);
    cr_assert_eq(wh_track_event(&parsed, 1, &a, &details), 0);
    cr_expect_eq(a.status, CMN_STATUS_CLICKED);
    cr_expect_eq(a.hop, 1);
    cr_expect_str_eq(a.client_id, "c-42");
    cr_expect_str_eq(details.data, "{\"url\":\"https://example.com/offer?a=1&b=2\",\"link_index\":3}");
    cr_assert_eq(wh_track_event(&parsed, 999, &b, &details), 0);
    cr_expect_str_eq(a.event_id, b.event_id, "the same link clicked twice is one event");
    parsed.link_index = 4;
    cr_assert_eq(wh_track_event(&parsed, 1, &b, &details), 0);
    cr_expect_str_neq(a.event_id, b.event_id);
    parsed.kind = CMN_TRACK_OPEN;
    cr_assert_eq(wh_track_event(&parsed, 1, &b, &details), 0);
    cr_expect_eq(b.status, CMN_STATUS_OPENED);
    cr_expect_null(b.details_json);
    parsed.kind = CMN_TRACK_UNSUBSCRIBE;
    cr_expect_eq(wh_track_event(&parsed, 1, &b, &details), CMN_ERR_INVALID);

    cr_expect_eq(wh_track_refusal_status(CMN_TRACK_R_SIGNATURE), 403);
    cr_expect_eq(wh_track_refusal_status(CMN_TRACK_R_EXPIRED), 403);
    cr_expect_eq(wh_track_refusal_status(CMN_TRACK_R_MALFORMED), 400);
    cr_expect_eq(wh_track_refusal_status(CMN_TRACK_R_KIND), 400);

    cr_assert_eq(wh_track_page("abc_-", 0, &page), 0);
    cr_expect_not_null(strstr(page.data, "<form method=\"post\" action=\"abc_-\">"));
    cr_expect_not_null(strstr(page.data, "name=\"List-Unsubscribe\" value=\"One-Click\""));
    cmn_buf_reset(&page);
    cr_assert_eq(wh_track_page("abc", 1, &page), 0);
    cr_expect_not_null(strstr(page.data, "You are unsubscribed"));
    cr_expect_null(strstr(page.data, "<form"));
    cmn_buf_free(&tok);
    cmn_buf_free(&details);
    cmn_buf_free(&page);
}

/* crm/status.h: a receipt tied to no communication travels with an empty
 * communication_id and its provider message id, and parses back. */
Test(webhook_parse, status_event_without_communication_id_round_trips)
{
    wh_receipt_t r;
    cmn_status_event_t ev, back;
    cmn_buf_t details = CMN_BUF_INIT, json = CMN_BUF_INIT;
    char err[128] = "";
    wh_receipt_init(&r);
    r.provider = WH_PROVIDER_META;
    r.provider_message_id = "wamid.X";
    r.provider_status = "read";
    r.channel = CMN_CHANNEL_WHATSAPP;
    r.occurred_at_ms = 1750263773000;
    cr_assert_eq(wh_status_build(&r, "default", &ev, &details), 1);
    cr_assert_eq(cmn_status_event_to_json(&ev, &json), 0);
    json_object *o = cmn_json_parse(json.data, json.len, err, sizeof err);
    cr_assert_eq(cmn_status_event_from_json(o, &back, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(back.communication_id, "");
    cr_expect_str_eq(back.provider_message_id, "wamid.X");
    cr_expect_str_eq(back.event_id, ev.event_id);
    json_object_put(o);

    const char *orphan = "{\"v\":1,\"event_id\":\"" CID "\",\"communication_id\":\"\",\"status\":\"read\","
                         "\"occurred_at\":\"2026-01-01T00:00:00Z\"}";
    o = cmn_json_parse(orphan, strlen(orphan), err, sizeof err);
    cr_expect_eq(cmn_status_event_from_json(o, &back, err, sizeof err), CMN_ERR_INVALID);
    cr_expect_eq(strncmp(err, "communication_id", 16), 0, "%s", err);
    json_object_put(o);
    cmn_buf_free(&details);
    cmn_buf_free(&json);
}
