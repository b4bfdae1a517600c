/* test_wa_channel.c - the WhatsApp channel driven in process against a real
 * PostgreSQL: the batched window query (wa_conversations_lookup) with
 * duplicates, other tenants, other channels and unknown numbers, and the
 * channel's per-batch path (wa_channel_prepare_batch, then prepare for each
 * dispatch) - one conversations query for the whole batch, whatever the
 * number of dispatches - which the worker core will call once it has a
 * per-batch hook (docs/whatsapp.md, "Open points"). The end-to-end path
 * through the real binary is tests/integration/test_whatsapp_worker.c. */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm/buf.h"
#include "crm/dispatch.h"
#include "crm/err.h"
#include "crm/json.h"
#include "crm/log.h"
#include "crm/metrics.h"
#include "crm/pg.h"
#include "crm/time.h"
#include "crm/uuid.h"
#include "crm/worker.h"
#include "th_pg.h"
#include "wa_conversations.h"
#include "wa_worker.h"

#define DATA_KEY "wa-channel-test-key-5e0c1f3b7a9d2c4e"

/* Inserts a conversation row for number (hashed here) with last_inbound
 * hours_ago hours ago (negative: no inbound message). */
static void insert(const char *url, const char *tenant, const char *channel, const char *number, int hours_ago)
{
    unsigned char hash[WA_PHONE_HASH_LEN];
    char hex[2 * WA_PHONE_HASH_LEN + 1], sql[512], val[16];
    cr_assert_eq(wa_phone_hash(DATA_KEY, number, hash), 0);
    wa_phone_hash_hex(hash, hex);
    if (hours_ago >= 0)
        snprintf(sql, sizeof sql,
                 "INSERT INTO conversations (tenant_id, channel, phone_hash, last_inbound_at)"
                 " VALUES ('%s', '%s', decode('%s', 'hex'), now() - interval '%d hours') RETURNING 1",
                 tenant, channel, hex, hours_ago);
    else
        snprintf(sql, sizeof sql,
                 "INSERT INTO conversations (tenant_id, channel, phone_hash) VALUES ('%s', '%s', decode('%s', 'hex'))"
                 " RETURNING 1",
                 tenant, channel, hex);
    cr_assert_eq(th_pg_query_value(url, sql, val, sizeof val), 0, "%s", sql);
}

static PGconn *connect_or_fail(const char *url)
{
    char err[256];
    PGconn *c = cmn_pg_connect(url, 10000, err, sizeof err);
    cr_assert_not_null(c, "%s", err);
    return c;
}

Test(wa_channel, hash_is_hmac_sha256_of_the_number)
{
    unsigned char h[WA_PHONE_HASH_LEN];
    char hex[2 * WA_PHONE_HASH_LEN + 1];
    /* The reference comes from another implementation:
     * printf %s +14155550100 | openssl dgst -sha256 -hmac <DATA_KEY> */
    cr_assert_eq(wa_phone_hash(DATA_KEY, "+14155550100", h), 0);
    wa_phone_hash_hex(h, hex);
    cr_expect_str_eq(hex, "36db9e53209a47ce51202e7fcf54e52715d18d4d4a24648befc12f554029b026");
    unsigned char h2[WA_PHONE_HASH_LEN];
    cr_assert_eq(wa_phone_hash(DATA_KEY, "+14155550101", h2), 0);
    cr_expect_neq(memcmp(h, h2, sizeof h), 0);
    cr_expect_eq(wa_phone_hash("short key", "+14155550100", h), CMN_ERR_INVALID);
    cr_expect_eq(wa_phone_hash(NULL, "+14155550100", h), CMN_ERR_INVALID);
}

Test(wa_channel, one_query_answers_a_whole_batch, .timeout = 120)
{
    char url[512];
    cr_assert_eq(th_pg_database("wa_lookup", url, sizeof url), 0);
    insert(url, "acme", "whatsapp", "+14155550101", 1);
    insert(url, "acme", "whatsapp", "+14155550102", 30);
    insert(url, "acme", "whatsapp", "+14155550104", -1);
    insert(url, "beta", "whatsapp", "+14155550103", 1); /* another tenant */
    insert(url, "acme", "sms", "+14155550103", 1);      /* another channel */

    const char *numbers[] = {"+14155550101", "+14155550102", "+14155550103", "+14155550101", "+14155550104",
                             "+19999999999"};
    wa_conv_key_t keys[6];
    memset(keys, 0, sizeof keys);
    for (size_t i = 0; i < 6; i++) {
        keys[i].tenant_id = "acme";
        cr_assert_eq(wa_phone_hash(DATA_KEY, numbers[i], keys[i].hash), 0);
        keys[i].found = 7; /* must be overwritten */
    }
    PGconn *conn = connect_or_fail(url);
    char err[256] = "";
    cr_assert_eq(wa_conversations_lookup(conn, keys, 6, err, sizeof err), 0, "%s", err);
    int64_t now = cmn_now_ms();
    cr_expect_eq(keys[0].found, 1);
    cr_expect(keys[0].last_inbound_ms > now - 2 * 3600 * 1000 && keys[0].last_inbound_ms < now - 3500 * 1000);
    cr_expect_eq(keys[1].found, 1);
    cr_expect_eq(keys[2].found, 0, "beta's and the SMS row are not acme's WhatsApp window");
    cr_expect_eq(keys[3].found, 1, "a duplicate in the batch gets the same answer");
    cr_expect_eq(keys[3].last_inbound_ms, keys[0].last_inbound_ms);
    cr_expect_eq(keys[4].found, 0, "a row without an inbound message is no window");
    cr_expect_eq(keys[5].found, 0);
    cr_expect_eq(wa_conversations_lookup(conn, keys, 0, err, sizeof err), 0, "an empty batch");
    /* A tenant id with quotes and backslashes survives the array literal. */
    keys[0].tenant_id = "we\"ird\\tenant";
    cr_expect_eq(wa_conversations_lookup(conn, keys, 1, err, sizeof err), 0, "%s", err);
    cr_expect_eq(keys[0].found, 0);
    PQfinish(conn);
    cr_expect_eq(wa_conversations_lookup(NULL, keys, 1, err, sizeof err), CMN_ERR_UNAVAILABLE);
}

/* A Dispatch of the given fields, parsed as the core parses records. */
static void make_dispatch(cmn_dispatch_t *d, const char *request_id, const char *to, const char *type,
                          const char *context)
{
    char cid[CMN_UUID_STR_LEN + 1], err[256], text[1024];
    cr_assert_eq(cmn_uuid_communication_id("acme", request_id, cid), 0);
    snprintf(text, sizeof text,
             "{\"v\":1,\"communication_id\":\"%s\",\"request_id\":\"%s\",\"tenant_id\":\"acme\",\"client_id\":\"c1\","
             "\"message_type\":\"%s\",\"urgency\":\"normal\",\"channel\":\"whatsapp\",\"attempt\":1,\"hop\":0,"
             "\"to\":\"%s\",\"recipient\":{\"whatsapp\":\"%s\",\"locale\":\"en\"},\"locale\":\"en\","
             "\"context\":%s,\"fallback\":[],\"created_at\":\"2026-11-22T00:00:00Z\"}",
             cid, request_id, type, to, to, context);
    json_object *o = cmn_json_parse(text, strlen(text), err, sizeof err);
    cr_assert_not_null(o, "%s", err);
    memset(d, 0, sizeof *d);
    cr_assert_eq(cmn_dispatch_from_json(o, d, err, sizeof err), 0, "%s", err);
    json_object_put(o);
}

Test(wa_channel, prepare_batch_reads_every_window_with_one_query, .timeout = 120)
{
    char url[512], dburl[600];
    cr_assert_eq(th_pg_database("wa_batch", url, sizeof url), 0);
    insert(url, "acme", "whatsapp", "+14155550101", 2);
    insert(url, "acme", "whatsapp", "+14155550102", 25);
    snprintf(dburl, sizeof dburl, "%s", url);

    wa_worker_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.provider = "meta";
    cfg.api_url = "http://127.0.0.1:9";
    cfg.api_version = "v23.0";
    cfg.phone_number_id = "106540352242922";
    cfg.access_token = "token";
    cfg.twilio_status_callback_url = "";
    cfg.database_url = dburl;
    cfg.data_key = DATA_KEY;
    cfg.templates_dir = CRM_SOURCE_DIR "/templates";
    cfg.templates_file = CRM_SOURCE_DIR "/config/whatsapp_templates.json";
    cfg.fallback_locale = "en";
    cfg.timeout_ms = 1000;
    cfg.window_margin_seconds = 60;
    char err[512] = "";
    cr_assert_eq(wa_worker_config_check(&cfg, err, sizeof err), 0, "%s", err);

    cmn_log_t log;
    cmn_log_init(&log, "test-wa-channel", "warn");
    cmn_metrics_t *metrics = cmn_metrics_new();
    wa_channel_t *c = wa_channel_new(&cfg, &log, metrics, err, sizeof err);
    cr_assert_not_null(c, "%s", err);
    cmn_worker_channel_t ch;
    wa_channel_bind(c, &ch);

    const char *appt = "{\"appointment\":{\"date\":\"24/11\",\"time\":\"14:30\"}}";
    cmn_dispatch_t d[4];
    make_dispatch(&d[0], "b-open", "+14155550101", "appointment_reminder", appt);
    make_dispatch(&d[1], "b-closed", "+14155550102", "appointment_reminder", appt);
    make_dispatch(&d[2], "b-none", "+14155550103", "welcome", "{}");
    make_dispatch(&d[3], "b-open-again", "+14155550101", "welcome", "{}");
    const cmn_dispatch_t *ds[4] = {&d[0], &d[1], &d[2], &d[3]};
    cr_assert_eq(wa_channel_prepare_batch(c, ds, 4), 0);

    static const struct {
        int rc_ok;
        const char *window, *kind, *code;
    } WANT[4] = {
        {1, "open", "text", NULL},
        {1, "closed", "template", NULL},
        {0, NULL, NULL, "no_template_outside_window"},
        {1, "open", "text", NULL},
    };
    for (size_t i = 0; i < 4; i++) {
        cmn_worker_result_t res;
        void *msg = NULL;
        memset(&res, 0, sizeof res);
        int rc = ch.prepare(ch.impl, &d[i], &msg, &res);
        if (WANT[i].rc_ok) {
            cr_expect_eq(rc, 0, "%zu: %s", i, res.error_message);
            char why[64];
            json_object *facts = cmn_json_parse(res.details_json, strlen(res.details_json), why, sizeof why);
            cr_assert_not_null(facts, "%zu: details %s", i, res.details_json);
            cr_expect_str_eq(cmn_json_get_string(facts, "window"), WANT[i].window, "%zu", i);
            cr_expect_str_eq(cmn_json_get_string(facts, "kind"), WANT[i].kind, "%zu", i);
            json_object_put(facts);
            cr_expect_str_eq(ch.sender(ch.impl, msg), "106540352242922");
            ch.release(ch.impl, msg);
        } else {
            cr_expect_neq(rc, 0, "%zu", i);
            cr_expect_null(msg);
            cr_expect_eq(res.cls, CMN_WORKER_PERMANENT);
            cr_expect_str_eq(res.error_code, WANT[i].code, "%zu", i);
            cr_expect_str_eq(res.reason, WANT[i].code, "%zu", i);
        }
    }
    cmn_buf_t text = CMN_BUF_INIT;
    cr_assert_eq(cmn_metrics_render(metrics, &text), 0);
    cr_expect_not_null(strstr(text.data, "whatsapp_conversation_queries_total 1\n"),
                       "four dispatches, one query: %s", text.data);
    cmn_buf_free(&text);

    /* A recipient the batch lookup did not cover: prepare asks on its own. */
    cmn_dispatch_t late;
    make_dispatch(&late, "late", "+14155550105", "welcome", "{}");
    cmn_worker_result_t res;
    void *msg = NULL;
    memset(&res, 0, sizeof res);
    cr_expect_neq(ch.prepare(ch.impl, &late, &msg, &res), 0);
    cr_expect_str_eq(res.error_code, "no_template_outside_window");
    cr_assert_eq(cmn_metrics_render(metrics, &text), 0);
    cr_expect_not_null(strstr(text.data, "whatsapp_conversation_queries_total 2\n"), "%s", text.data);
    cmn_buf_free(&text);

    cmn_dispatch_clear(&late);
    for (size_t i = 0; i < 4; i++)
        cmn_dispatch_clear(&d[i]);
    wa_channel_destroy(c);
    cmn_metrics_destroy(metrics);
}
